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


def simulate(
    model, X, groups=None, n_simulations: int = 1, random_state=None, conditional: bool = True, offset=None
):
    """Responses simulated from a fitted GLMM: ``model.simulate(...)``, R's ``simulate(m)``.

    Parameters
    ----------
    model : fitted estimator
        Any estimator of the package.
    X : {array-like, DataFrame} of shape (n_samples, n_features)
        Covariates, as in ``predict``; for a formula-fitted model also a raw
        data frame, or None for the rows of its fit.
    groups : array-like or DataFrame, default=None
        Group labels; required for a mixed model.
    n_simulations : int, default=1
        Number of simulated responses per row.
    random_state : int, Generator or None, default=None
        Seed of the draws.
    conditional : bool, default=True
        Keep the conditional modes of the levels seen in fit (lme4's
        ``re.form = NULL``), or draw new random effects for every level
        (``re.form = NA``).
    offset : array-like of shape (n_samples,), default=None
        Known part of the linear predictor.

    Returns
    -------
    ndarray of shape (n_samples, n_simulations)

    See Also
    --------
    sklearn_glmm.PoissonGLMMRegressor.simulate : The method this calls.

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

    See Also
    --------
    overdispersion : The function that returns it.

    Examples
    --------
    >>> from sklearn_glmm import PoissonGLMMRegressor, overdispersion
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> data = load_app_engagement()
    >>> X, y, g = data[["day_centered"]], data["logins"], data["user_id"]
    >>> model = PoissonGLMMRegressor("(1 | user_id)").fit(X, y, groups=g)
    >>> overdispersion(model, X, y, g).to_series().round(3)
    chisq    1390.715
    ratio       0.929
    rdf      1497.000
    p           0.976
    dtype: float64
    """

    chisq: float
    ratio: float
    df: int
    p_value: float

    def to_series(self) -> pd.Series:
        """The result as a Series named as the seed tutorial's ``overdisp_fun`` (chisq, ratio, rdf, p)."""
        return pd.Series({"chisq": self.chisq, "ratio": self.ratio, "rdf": self.df, "p": self.p_value})


def overdispersion(model, X, y, groups=None, sample_weight=None, offset=None) -> OverdispersionResult:
    """The seed tutorial's overdispersion ratio (Pearson chi-square / residual df).

    Parameters
    ----------
    model : fitted estimator
        A Poisson or binomial GLMM (families with a fixed dispersion; the
        others estimate theirs, so the ratio is about 1 by construction).
    X, y, groups : array-like
        The data of the fit.
    sample_weight, offset : array-like of shape (n_samples,), default=None
        As given to ``fit``.

    Returns
    -------
    OverdispersionResult
        ``chisq``, ``ratio`` (about 1 without overdispersion), ``df`` and
        ``p_value``.

    See Also
    --------
    sklearn_glmm.NegativeBinomialGLMMRegressor : The model to try when the ratio is well above 1.
    sklearn_glmm.PoissonGLMMRegressor.residuals : The Pearson residuals it sums.

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
