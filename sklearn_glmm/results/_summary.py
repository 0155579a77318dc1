"""An lme4-style summary of a fitted GLMM.

:class:`GLMMSummary` is plain data (numbers and DataFrames) plus rendering;
it knows nothing about how the fit was computed. ``str(summary)`` prints the
layout of ``summary(glmer(...))`` in R.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["GLMMSummary", "RESIDUAL_QUANTILES", "coefficient_table"]

#: the quantiles of the Pearson residuals a summary shows (Min, 1Q, Median, 3Q, Max)
RESIDUAL_QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)

_STARS = [(0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, "."), (1.0 + 1e-12, " ")]


def coefficient_table(estimates: pd.Series, vcov: np.ndarray, statistic: str = "z") -> pd.DataFrame:
    """Wald table: Estimate, Std. Error, z value, Pr(>|z|).

    With ``statistic="t"`` (linear mixed models, as lme4's ``lmer``) the ratio
    is a "t value" and, as in lme4, no p-value is given: its degrees of
    freedom are not well defined.
    """
    se = np.sqrt(np.maximum(np.diag(vcov), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = estimates.to_numpy() / se
    if statistic == "t":
        return pd.DataFrame(
            {"Estimate": estimates.to_numpy(), "Std. Error": se, "t value": z}, index=estimates.index
        )
    p = 2.0 * stats.norm.sf(np.abs(z))
    return pd.DataFrame(
        {"Estimate": estimates.to_numpy(), "Std. Error": se, "z value": z, "Pr(>|z|)": p},
        index=estimates.index,
    )


def _stars(p: float) -> str:
    if not np.isfinite(p):
        return ""
    return next(s for cut, s in _STARS if p < cut)


def _format_p(p: float) -> str:
    if not np.isfinite(p):
        return "NA"
    if p < 2.2e-16:
        return "< 2e-16"
    return f"{p:.3g}" if p >= 1e-4 else f"{p:.2e}"


def _abbreviate(name: str, width: int = 6) -> str:
    if name == "(Intercept)":
        return "(Intr)"
    return name if len(name) <= width else name[:width]


def _table(rows: list[list[str]], align: list[str]) -> list[str]:
    widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align)]
        out.append(" " + " ".join(cells).rstrip())
    return out


@dataclass
class GLMMSummary:
    """Summary of a fitted GLMM (see ``str()`` for the lme4-style report).

    Attributes
    ----------
    coefficients : DataFrame
        Fixed effects: Estimate, Std. Error, z value, Pr(>|z|).
    varcorr : DataFrame
        Variance components as ``as.data.frame(VarCorr(m))``.
    fit_statistics : Series
        AIC, BIC, logLik, deviance, df.resid.
    correlation : DataFrame
        Correlations of the fixed-effect estimates.
    residual_quantiles : Series
        Quantiles of the scaled (Pearson) residuals.
    n_obs : int
        Number of observations.
    n_groups : dict of {str: int}
        Levels per grouping factor.
    family, link, formula, method, se_method : str
        The header lines of the report, and how the standard errors were computed.
    messages : list of str
        Warnings printed at the end (singular fit, convergence).

    See Also
    --------
    sklearn_glmm.PoissonGLMMRegressor.summary : Returns one (every estimator has the method).

    Examples
    --------
    >>> from sklearn_glmm import PoissonGLMMRegressor
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> data = load_app_engagement()
    >>> model = PoissonGLMMRegressor("(1 | user_id)").fit(
    ...     data[["day_centered"]], data["logins"], groups=data["user_id"])
    >>> summary = model.summary()
    >>> summary.fit_statistics.round(1)
    AIC         5290.3
    BIC         5306.2
    logLik     -2642.1
    deviance    5284.3
    df.resid    1497.0
    dtype: float64
    >>> summary.varcorr.round(4)
         group         var1 var2    vcov   sdcor
    0  user_id  (Intercept)  NaN  0.1875  0.433
    """

    family: str
    link: str
    formula: str
    method: str
    coefficients: pd.DataFrame
    correlation: pd.DataFrame
    varcorr: pd.DataFrame
    fit_statistics: pd.Series
    residual_quantiles: pd.Series
    n_obs: int
    n_groups: dict
    se_method: str
    messages: list = field(default_factory=list)
    #: further lines such as "Dispersion parameter for nbinom2 family: 0.842"
    extra: dict = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [self.method]
        if self.family:
            lines.append(f" Family: {self.family}  ( {self.link} )")
        lines += [f"Formula: {self.formula}", ""]
        stats_rows = [list(self.fit_statistics.index)]
        stats_rows.append(
            [f"{v:.1f}" for v in self.fit_statistics.iloc[:-1]] + [f"{int(self.fit_statistics.iloc[-1])}"]
        )
        if self.extra:
            lines += [f" {key}: {value}" for key, value in self.extra.items()] + [""]
        lines += _table(stats_rows, ["r"] * len(stats_rows[0])) + [""]
        lines.append("Scaled residuals:")
        q = self.residual_quantiles
        lines += _table([list(q.index), [f"{v:.4f}" for v in q]], ["r"] * len(q)) + [""]
        lines += self._random_effects_lines()
        lines.append("")
        lines += self._fixed_effects_lines()
        if len(self.coefficients) > 1:
            lines.append("")
            lines.append("Correlation of Fixed Effects:")
            names = list(self.correlation.index)
            rows = [[""] + [_abbreviate(n) for n in names[:-1]]]
            for i in range(1, len(names)):
                rows.append(
                    [names[i][:11]]
                    + [f"{self.correlation.iloc[i, j]:.3f}" for j in range(i)]
                    + [""] * (len(names) - 1 - i)
                )
            lines += _table(rows, ["l"] + ["r"] * (len(names) - 1))
        for message in self.messages:
            lines += ["", message]
        return "\n".join(lines)

    def _random_effects_lines(self) -> list[str]:
        vc = self.varcorr
        if vc.empty:
            return ["Random effects: none (plain GLM: fitted without groups)"]
        variances = vc[vc["var2"].isna()]
        covariances = vc[vc["var2"].notna()]
        has_corr = not covariances.empty
        header = ["Groups", "Name", "Variance", "Std.Dev."] + (["Corr"] if has_corr else [])
        rows = [header]
        previous = None
        terms_seen: list[str] = []
        for _, r in variances.iterrows():
            group = r["group"] if r["group"] != previous else ""
            previous = r["group"]
            row = [
                str(group),
                str(r["var1"]) if pd.notna(r["var1"]) else "",
                f"{r['vcov']:.4g}",
                f"{r['sdcor']:.4g}",
            ]
            if has_corr:
                corr = covariances[(covariances["group"] == r["group"]) & (covariances["var2"] == r["var1"])]
                row.append(" ".join(f"{c:.2f}" for c in corr["sdcor"]))
            terms_seen.append(r["var1"])
            rows.append(row)
        lines = ["Random effects:"] + _table(rows, ["l", "l", "r", "r"] + (["l"] if has_corr else []))
        groups = "; ".join(f"{k}, {v}" for k, v in self.n_groups.items())
        lines.append(f"Number of obs: {self.n_obs}, groups:  {groups}")
        return lines

    def _fixed_effects_lines(self) -> list[str]:
        c = self.coefficients
        se = c["Std. Error"].to_numpy()
        finite = se[np.isfinite(se) & (se > 0)]
        # as R's printCoefmat: the smallest SE gets 4 significant digits
        decimals = int(np.clip(3 - np.floor(np.log10(finite.min())), 0, 10)) if finite.size else 4
        has_p = "Pr(>|z|)" in c.columns
        ratio = "z value" if has_p else "t value"
        rows = [["", "Estimate", "Std. Error", ratio] + (["Pr(>|z|)", ""] if has_p else [])]
        for name, r in c.iterrows():
            row = [
                str(name),
                f"{r['Estimate']:.{decimals}f}",
                f"{r['Std. Error']:.{decimals}f}",
                f"{r[ratio]:.3f}",
            ]
            if has_p:
                row += [_format_p(r["Pr(>|z|)"]), _stars(r["Pr(>|z|)"])]
            rows.append(row)
        lines = [f"Fixed effects (standard errors: {self.se_method}):"]
        lines += _table(rows, ["l", "r", "r", "r"] + (["r", "l"] if has_p else []))
        if has_p:
            lines.append("---")
            lines.append("Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1")
        return lines

    def _repr_html_(self) -> str:
        """Notebook display: HTML tables (see :mod:`._html`)."""
        from ._html import summary_html

        return summary_html(self)
