"""Confidence intervals of a fitted GLMM: Wald, profile likelihood, parametric bootstrap.

The table has lme4's layout (``confint(m)``): one row per variance component on
the SD / correlation scale, named ``.sig01, .sig02, ...`` in the order of the
reported ``theta_`` (lme4's: bars by decreasing number of levels; within a bar
the SD of the first effect, its correlations with the later ones, the SD of
the second effect, ...), then one row per fixed effect; columns are the lower
and upper percentages (``"2.5 %"``, ``"97.5 %"``). The uncorrelated bars of
``(1 + x || g)`` have SD rows only (their correlations are fixed at 0, not
parameters, as in lme4). A linear mixed model (``GaussianLMMRegressor``) has,
as ``lmer``, the SDs on the response scale and a ``.sigma`` row (the residual
SD) before the fixed effects.

The engine orders theta by term (terms by number of levels, the bars of a
factor together); ``order`` (the design's ``theta_order_``) maps it to the
reported order: reported row ``j`` is engine element ``order[j]``.

- ``"wald"``: ``estimate +- z * SE`` for the fixed effects; variance components
  get NaN, as in lme4 (a Wald interval for an SD is poor near 0).
- ``"profile"``: the profile likelihood (see :mod:`sklearn_glmm._core._profile`).
- ``"bootstrap"``: percentile intervals of ``n_boot`` refits to responses
  simulated from the fitted model with new random effects (lme4's ``bootMer``
  with ``use.u = FALSE``, ``type = "perc"``).

This module lays the tables out; the estimators' ``confint`` computes the
intervals (``sklearn_glmm._inference``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

__all__ = [
    "CONFINT_METHODS",
    "check_level",
    "conf_columns",
    "engine_positions",
    "interval_names",
    "percentile_intervals",
    "select_rows",
    "wald_intervals",
]

CONFINT_METHODS = ("wald", "profile", "bootstrap")


def conf_columns(level: float) -> list[str]:
    """Column labels as R prints them, e.g. ``["2.5 %", "97.5 %"]``."""
    tail = 100 * (1 - level) / 2
    return [f"{_fmt_pct(tail)} %", f"{_fmt_pct(100 - tail)} %"]


def _fmt_pct(x: float) -> str:
    return f"{x:.3g}" if abs(x - round(x, 1)) > 1e-9 else f"{round(x, 1):g}"


def interval_names(n_theta: int, fixef_names: list[str], sigma: bool = False) -> list[str]:
    """``.sig01 ... .sigNN`` (lme4's ``oldNames = TRUE``), ``.sigma`` for an LMM, then the fixed effects."""
    return [f".sig{k + 1:02d}" for k in range(n_theta)] + ([".sigma"] if sigma else []) + list(fixef_names)


def check_level(level) -> float:
    """``level`` as a float strictly between 0 and 1, or a ValueError."""
    try:
        level = float(level)
    except (TypeError, ValueError):
        raise TypeError(f"level must be a number between 0 and 1; got {level!r}.") from None
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be strictly between 0 and 1 (e.g. 0.95); got {level}.")
    return level


def select_rows(names: list[str], parm) -> list[int]:
    """Positions of the rows named by ``parm`` (all when None), or a ValueError."""
    if parm is None:
        return list(range(len(names)))
    parm = [parm] if isinstance(parm, str) else list(parm)
    unknown = [p for p in parm if p not in names]
    if unknown:
        raise ValueError(f"parm names unknown parameter(s) {unknown}; the model's parameters are {names}.")
    return [names.index(p) for p in parm]


def wald_intervals(
    fixef: pd.Series, se: pd.Series, n_theta: int, level: float = 0.95, parm=None, sigma: bool = False
) -> pd.DataFrame:
    """Wald intervals; NaN for the variance components (as lme4), ``.sigma`` included when ``sigma``.

    Examples
    --------
    >>> import pandas as pd
    >>> fixef = pd.Series([1.0, -0.5], index=["(Intercept)", "x"])
    >>> se = pd.Series([0.1, 0.2], index=fixef.index)
    >>> wald_intervals(fixef, se, n_theta=1).round(4)
                 2.5 %  97.5 %
    .sig01         NaN     NaN
    (Intercept)  0.804   1.196
    x           -0.892  -0.108
    """
    level = check_level(level)
    z = norm.ppf(0.5 + level / 2)
    names = interval_names(n_theta, list(fixef.index), sigma)
    n_var = n_theta + int(sigma)
    lower = np.concatenate([np.full(n_var, np.nan), fixef.to_numpy() - z * se.to_numpy()])
    upper = np.concatenate([np.full(n_var, np.nan), fixef.to_numpy() + z * se.to_numpy()])
    table = pd.DataFrame(np.column_stack([lower, upper]), index=names, columns=conf_columns(level))
    return table.iloc[select_rows(names, parm)]


def engine_positions(n_theta: int, n_beta: int, order, sigma: bool = False) -> np.ndarray:
    """Engine position of each reported parameter (``.sigNN`` rows, ``.sigma``, then beta)."""
    order = np.arange(n_theta) if order is None else np.asarray(order, dtype=int)
    if order.size != n_theta:
        raise ValueError(f"order has {order.size} entries for {n_theta} covariance parameters.")
    n_var = n_theta + int(sigma)
    return np.concatenate([order, np.arange(n_theta, n_var), n_var + np.arange(n_beta)]).astype(int)


def percentile_intervals(replicates: pd.DataFrame, level: float) -> pd.DataFrame:
    """Percentile intervals of bootstrap replicates (rows: replicates; NaN rows, failed refits, left out)."""
    tail = (1 - check_level(level)) / 2
    quant = replicates.dropna().quantile([tail, 1 - tail]).T
    quant.columns = conf_columns(level)
    return quant
