"""Test tables that print as R prints them (``anova``, ``drop1``).

:class:`TestTable` is a DataFrame (the numbers stay numbers) whose text
rendering formats its p-value column as R's ``printCoefmat`` does: 4
significant digits, ``< 2.2e-16`` below the machine epsilon, significance
stars and their legend, and blanks for the missing entries of the first row.
An optional heading (``attrs["heading"]``) is printed above the table, as R's
``Single term deletions`` / ``Model:`` lines.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["TestTable", "format_pvalue", "P_VALUE_COLUMNS"]

#: p-value columns recognised when printing
P_VALUE_COLUMNS = ("Pr(>Chisq)", "Pr(Chi)")

#: R's .Machine$double.eps, below which p-values print as "< 2.2e-16"
_EPS = float(np.finfo(float).eps)

_STARS = [(0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, "."), (np.inf, " ")]
_LEGEND = "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"


def format_pvalue(p: float, digits: int = 4) -> str:
    """A p-value as R's ``format.pval(p, digits, eps = .Machine$double.eps)``.

    The shorter of fixed and scientific notation with ``digits`` significant
    digits (fixed wins ties), ``"< 2.2e-16"`` below the machine epsilon and an
    empty string for NaN.

    Examples
    --------
    >>> [format_pvalue(p) for p in (0.3339, 3.874e-06, 1e-20, 0.0001234, float("nan"))]
    ['0.3339', '3.874e-06', '< 2.2e-16', '0.0001234', '']
    """
    if p is None or not np.isfinite(p):
        return ""
    if p < _EPS:
        return "< 2.2e-16"
    fixed = np.format_float_positional(float(f"{p:.{digits}g}"), trim="-")
    mantissa, exponent = f"{p:.{digits - 1}e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    scientific = f"{mantissa}e{exponent[0]}{exponent[1:].zfill(2)}"
    return fixed if len(fixed) <= len(scientific) else scientific


def _stars(p: float) -> str:
    if p is None or not np.isfinite(p):
        return ""
    return next(mark for cut, mark in _STARS if p < cut)


class TestTable(pd.DataFrame):
    """A likelihood-ratio test table: a DataFrame that prints as R's ``anova``/``drop1``.

    The numbers stay numbers (select and compute as with any DataFrame); only
    the text rendering (``print``, ``to_string``) formats the p-values as R
    does, with significance stars and their legend.

    Attributes
    ----------
    attrs : dict
        ``attrs["heading"]`` (optional): lines printed above the table, as
        R's ``Single term deletions`` / ``Model:`` lines.

    See Also
    --------
    sklearn_glmm.compare_models : Returns one (R's ``anova``).
    sklearn_glmm.drop1 : Returns one (R's ``drop1``).

    Examples
    --------
    >>> table = TestTable([[2.19, 0.3339], [96.1, 1e-22]], index=["m2", "m3"], columns=["Chisq", "Pr(>Chisq)"])
    >>> print(table)
       Chisq Pr(>Chisq)
    m2  2.19     0.3339
    m3 96.10  < 2.2e-16  ***
    ---
    Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1
    >>> float(table.loc["m3", "Pr(>Chisq)"])
    1e-22
    """

    __test__ = False  # not a pytest test class

    @property
    def _constructor(self):
        return TestTable

    def _p_column(self) -> str | None:
        return next((c for c in P_VALUE_COLUMNS if c in self.columns), None)

    def to_string(self, *args, **kwargs) -> str:
        """The table as R prints it (p-values formatted, stars, legend); see the module docstring."""
        column = self._p_column()
        plain = pd.DataFrame(self)
        if column is None or args or kwargs:
            return plain.to_string(*args, **kwargs)
        p = plain[column].to_numpy(dtype=float)
        shown = plain.astype(object).where(plain.notna(), "")
        for name in plain.columns:
            if name != column and pd.api.types.is_float_dtype(plain[name]):
                shown[name] = _format_column(plain[name].to_numpy(dtype=float))
        shown[column] = [format_pvalue(v) for v in p]
        stars = [_stars(v) for v in p]
        if any(s.strip() for s in stars):
            shown[""] = stars
        lines = [shown.to_string()]
        if any(s.strip() for s in stars):
            lines += ["---", _LEGEND]
        heading = self.attrs.get("heading")
        if heading:
            lines = [heading, ""] + lines
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.to_string()

    def __str__(self) -> str:
        return self.to_string()


def _format_column(values: np.ndarray, digits: int = 5) -> list[str]:
    """A column as R's ``format(x, digits = 5)`` prints it in ``anova``: common decimals, blanks for NaN.

    Each value needs the fewest significant digits (at most ``digits``) that
    show it to ``digits`` significant digits; the column takes the most
    decimals any value needs, so whole numbers print as integers
    (``npar``, ``Df``).
    """
    finite = values[np.isfinite(values)]
    decimals = 0
    for v in finite:
        if v == 0:
            continue
        magnitude = int(np.floor(np.log10(abs(v))))
        target = float(f"{v:.{digits - 1}e}")
        needed = next(d for d in range(1, digits + 1) if float(f"{v:.{d - 1}e}") == target)
        decimals = max(decimals, needed - 1 - magnitude)
    return ["" if not np.isfinite(v) else f"{v:.{decimals}f}" for v in values]
