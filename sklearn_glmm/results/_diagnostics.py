"""Simulation from a fitted model and the overdispersion check, as functions.

:func:`simulate` and :func:`overdispersion` take a fitted estimator and use
its public methods only (``simulate``, ``residuals``, ``df_resid_``).

The overdispersion check is the one of the seed tutorial (Bolker's GLMM FAQ,
``overdisp_fun``): the sum of squared Pearson residuals against a chi-square
with the residual degrees of freedom ``n - (p + n_theta)``. A ratio well above
1 suggests overdispersion (try a negative binomial family or an
observation-level random effect).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["simulate", "overdispersion", "OverdispersionResult"]


def simulate(model, X, groups=None, n_simulations: int = 1, random_state=None, conditional: bool = True, offset=None):
    """Responses simulated from a fitted GLMM: ``model.simulate(...)``.

    Examples
    --------
    >>> from sklearn_glmm import PoissonGLMMRegressor
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> data = load_app_engagement()
    >>> X, y, g = data[["day_centered"]], data["logins"], data["user_id"]
    >>> model = PoissonGLMMRegressor("(1 | user_id)").fit(X, y, groups=g)
    >>> sims = simulate(model, X, g, n_simulations=5, random_state=0)
    >>> sims.shape
    (1500, 5)
    """
    return model.simulate(X, groups, n_simulations, random_state, conditional, offset)


@dataclass(frozen=True)
class OverdispersionResult:
    """Pearson chi-square check of overdispersion.

    Attributes
    ----------
    chisq : float
        Sum of squared Pearson residuals.
    ratio : float
        ``chisq / df``; about 1 without overdispersion.
    df : int
        Residual degrees of freedom.
    p_value : float
        ``P(chi2_df > chisq)``.
    """

    chisq: float
    ratio: float
    df: int
    p_value: float

    def to_series(self) -> pd.Series:
        return pd.Series({"chisq": self.chisq, "ratio": self.ratio, "rdf": self.df, "p": self.p_value})


def overdispersion(model, X, y, groups=None, sample_weight=None, offset=None) -> OverdispersionResult:
    """The seed tutorial's overdispersion ratio (Pearson chi-square / residual df).

    Examples
    --------
    >>> from sklearn_glmm import PoissonGLMMRegressor
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> data = load_app_engagement()
    >>> X, y, g = data[["day_centered"]], data["logins"], data["user_id"]
    >>> model = PoissonGLMMRegressor("(1 | user_id)").fit(X, y, groups=g)
    >>> round(overdispersion(model, X, y, g).ratio, 3)
    0.929
    """
    r = model.residuals(X, y, groups, kind="pearson", sample_weight=sample_weight, offset=offset)
    chisq = float(np.sum(r**2))
    df = int(model.df_resid_)
    return OverdispersionResult(chisq, chisq / df, df, float(stats.chi2.sf(chisq, df)))
