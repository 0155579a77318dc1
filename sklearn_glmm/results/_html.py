"""HTML rendering of a :class:`~sklearn_glmm.results.GLMMSummary` for notebooks.

The same content as ``str(summary)`` (lme4's layout), as real tables: fit
statistics, scaled residuals, random effects, fixed effects with significance
stars, and notes. It reads the summary's public fields only, so it works for
every family.
"""

from __future__ import annotations

from html import escape

import numpy as np
import pandas as pd

__all__ = ["summary_html"]

_STYLE = (
    "<style>.glmm-summary table{border-collapse:collapse;margin:0.3em 0 0.8em 0}"
    ".glmm-summary th,.glmm-summary td{padding:0.15em 0.7em;text-align:right;"
    "border-bottom:1px solid #ddd;font-family:monospace}"
    ".glmm-summary th{background:#f3f3f3}.glmm-summary td.l,.glmm-summary th.l{text-align:left}"
    ".glmm-summary caption{text-align:left;font-weight:bold;padding:0.2em 0}</style>"
)


def _num(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    try:
        return format(float(value), fmt)
    except (TypeError, ValueError):
        return escape(str(value))


def _table(caption: str, header: list[str], rows: list[list[str]], left: int = 1) -> str:
    head = "".join(f'<th class="{"l" if j < left else ""}">{escape(h)}</th>' for j, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f'<td class="{"l" if j < left else ""}">{c}</td>' for j, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><caption>{escape(caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _stars(p) -> str:
    try:
        p = float(p)
    except (TypeError, ValueError):
        return ""
    if not np.isfinite(p):
        return ""
    for cut, mark in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p < cut:
            return mark
    return ""


def summary_html(summary) -> str:
    """The summary as an HTML fragment (``_repr_html_``).

    Examples
    --------
    >>> from sklearn_glmm import PoissonGLMMRegressor
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> data = load_app_engagement()
    >>> model = PoissonGLMMRegressor("(1 | user_id)")
    >>> model = model.fit(data[["day_centered"]], data["logins"], groups=data["user_id"])
    >>> html = summary_html(model.summary())
    >>> html.count("<table>")
    4
    >>> "day_centered" in html and "5290.3" in html
    True
    """
    parts = [_STYLE, '<div class="glmm-summary">']
    parts.append(f"<p><b>{escape(str(summary.method))}</b><br>")
    parts.append(f"Family: {escape(str(summary.family))} ( {escape(str(summary.link))} )<br>")
    parts.append(f"Formula: <code>{escape(str(summary.formula))}</code></p>")

    stats = summary.fit_statistics
    parts.append(
        _table(
            "Fit",
            [str(k) for k in stats.index],
            [[_num(v, ".1f") if k != "df.resid" else _num(v, ".0f") for k, v in stats.items()]],
            left=0,
        )
    )
    q = summary.residual_quantiles
    parts.append(_table("Scaled residuals", [str(k) for k in q.index], [[_num(v, ".4f") for v in q]], left=0))

    vc = summary.varcorr
    if vc is not None and not vc.empty:
        rows = []
        for _, r in vc.iterrows():
            var2 = r["var2"]
            is_cov = isinstance(var2, str) or (var2 is not None and not pd.isna(var2))
            rows.append(
                [
                    escape(str(r["group"])),
                    escape(str(r["var1"]) if not pd.isna(r["var1"]) else ""),
                    escape(str(var2) if is_cov else ""),
                    _num(r["vcov"], ".4g"),
                    _num(r["sdcor"], ".4g"),
                ]
            )
        groups = ", ".join(f"{escape(str(k))}: {v}" for k, v in summary.n_groups.items())
        parts.append(
            _table("Random effects", ["Groups", "Name", "with", "Variance / Cov", "Std.Dev. / Corr"], rows, 3)
        )
        parts.append(f"<p>Number of obs: {summary.n_obs}; groups: {groups}</p>")
    else:
        parts.append("<p>Random effects: none (plain GLM)</p>")

    coefs = summary.coefficients
    header = [""] + [str(c) for c in coefs.columns] + [""]
    p_col = next((c for c in coefs.columns if str(c).startswith("Pr(")), None)
    rows = []
    for name, r in coefs.iterrows():
        cells = [escape(str(name))]
        for c in coefs.columns:
            cells.append(_num(r[c], ".3g" if str(c).startswith("Pr(") else ".5g"))
        cells.append(_stars(r[p_col]) if p_col is not None else "")
        rows.append(cells)
    parts.append(_table(f"Fixed effects (standard errors: {summary.se_method})", header, rows))
    if p_col is not None:
        parts.append("<p><small>Signif. codes: 0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1</small></p>")
    for message in summary.messages:
        parts.append(f"<p><i>{escape(str(message))}</i></p>")
    parts.append("</div>")
    return "".join(parts)
