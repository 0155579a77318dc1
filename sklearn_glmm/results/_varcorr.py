"""Variance components in the layout of R's ``as.data.frame(VarCorr(m))``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..design import lambda_from_theta

__all__ = ["VARCORR_COLUMNS", "varcorr_table", "varcorr_table_bars", "varcorr_matrices"]

VARCORR_COLUMNS = ["group", "var1", "var2", "vcov", "sdcor"]


def varcorr_table(
    factor: str, term_names: list[str], theta: np.ndarray, scale: float = 1.0, sigma: float | None = None
) -> pd.DataFrame:
    """One row per variance, then one per covariance, as lme4 orders them.

    Parameters
    ----------
    factor : str
        Grouping factor's name (the ``group`` column).
    term_names : list of str
        Random-effect term names (``var1``/``var2``).
    theta : ndarray
        Relative Cholesky factor, lme4's order.
    scale : float, default=1.0
        Dispersion that multiplies ``Lambda Lambda^T`` (sigma^2 for Gaussian).
    sigma : float or None
        Residual SD; adds a ``Residual`` row when given.

    Returns
    -------
    DataFrame
        Columns ``group, var1, var2, vcov, sdcor``: variances with their SDs
        (``var2`` NaN), covariances with their correlations.
    """
    return varcorr_table_bars([(factor, list(term_names), np.asarray(theta, dtype=float))], scale, sigma)


def varcorr_table_bars(bars, scale: float = 1.0, sigma: float | None = None) -> pd.DataFrame:
    """:func:`varcorr_table` for several bars ``[(group, term_names, theta), ...]``, in order."""
    rows = []
    for factor, term_names, theta in bars:
        q = len(term_names)
        lam = lambda_from_theta(np.asarray(theta, dtype=float), q)
        cov = scale * lam @ lam.T
        sd = np.sqrt(np.diag(cov))
        rows += [(factor, term_names[j], np.nan, cov[j, j], sd[j]) for j in range(q)]
        for j in range(q):
            for k in range(j + 1, q):
                denom = sd[j] * sd[k]
                corr = cov[k, j] / denom if denom > 0 else np.nan
                rows.append((factor, term_names[j], term_names[k], cov[k, j], corr))
    if sigma is not None:
        rows.append(("Residual", np.nan, np.nan, sigma**2, sigma))
    table = pd.DataFrame(rows, columns=VARCORR_COLUMNS)
    table["var2"] = table["var2"].astype(object)
    return table


def varcorr_matrices(table: pd.DataFrame) -> list[tuple[str, list[str], np.ndarray]]:
    """The covariance matrix of each group of a varcorr table (R's ``VarCorr(m)`` as a list).

    Parameters
    ----------
    table : DataFrame
        Columns ``group, var1, var2, vcov, sdcor`` (``varcorr_``).

    Returns
    -------
    list of (group, term names, covariance matrix)
        In the table's order, without the ``Residual`` row. The uncorrelated
        bars of ``(1 + x || g)`` are separate groups (``g``, ``g.1``), as in lme4.

    Examples
    --------
    >>> table = varcorr_table("g", ["(Intercept)", "x"], np.array([1.0, 0.5, 2.0]))
    >>> [(group, names, cov.tolist()) for group, names, cov in varcorr_matrices(table)]
    [('g', ['(Intercept)', 'x'], [[1.0, 0.5], [0.5, 4.25]])]
    """
    out = []
    for group, rows in table[table["group"] != "Residual"].groupby("group", sort=False):
        variances = rows[rows["var2"].isna()]
        names = [str(n) for n in variances["var1"]]
        cov = np.diag(variances["vcov"].to_numpy(dtype=float))
        index = {name: j for j, name in enumerate(names)}
        for _, row in rows[rows["var2"].notna()].iterrows():
            j, k = index[str(row["var1"])], index[str(row["var2"])]
            cov[j, k] = cov[k, j] = float(row["vcov"])
        out.append((str(group), names, cov))
    return out
