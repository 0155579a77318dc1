"""Residuals, simulation from a fitted model and the overdispersion check.

Residuals follow lme4's ``residuals.merMod`` for GLMMs, with ``mu`` the fitted
mean including the conditional modes:

============ =========================================================
``response`` ``y - mu``
``pearson``  ``(y - mu) * sqrt(w / V(mu))``
``deviance`` ``sign(y - mu) * sqrt(w * d(y, mu))`` (lme4's default type)
============ =========================================================

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

from ..design import groups_to_frame, groups_to_series
from ..design._builder import _factor_labels

__all__ = [
    "RESIDUAL_KINDS",
    "residuals",
    "simulate",
    "sample_response",
    "overdispersion",
    "OverdispersionResult",
]

RESIDUAL_KINDS = ("response", "pearson", "deviance")


def _response(model, X, y, groups, sample_weight, offset):
    """Checked ``y``, weights and the fitted mean at (X, groups)."""
    # the fitted mean (a probability for the classifier, whose predict gives labels)
    design, n = model._design_for(X, groups)
    mu = model._mean(design, model._offset_or_none(offset, n))
    y = model._check_y(y, n)
    w = model._check_sample_weight(sample_weight, n)
    return y, w, mu


def residuals(model, X, y, groups=None, kind: str = "deviance", sample_weight=None, offset=None) -> np.ndarray:
    """Residuals of a fitted GLMM on (X, y, groups), as lme4's ``residuals()``.

    Parameters
    ----------
    model : fitted GLMM estimator
    X, y, groups, sample_weight, offset
        As in ``fit``; usually the training data.
    kind : {"response", "pearson", "deviance"}, default="deviance"
        See the module docstring.

    Returns
    -------
    ndarray of shape (n_samples,)

    Examples
    --------
    >>> from sklearn_glmm import PoissonGLMMRegressor
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> data = load_app_engagement()
    >>> X, y, g = data[["day_centered"]], data["logins"], data["user_id"]
    >>> model = PoissonGLMMRegressor("(1 | user_id)").fit(X, y, groups=g)
    >>> residuals(model, X, y, g, kind="pearson")[:3].round(4)
    array([-0.3312, -0.8425, -1.3587])
    """
    if kind not in RESIDUAL_KINDS:
        raise ValueError(f"kind must be one of {list(RESIDUAL_KINDS)}; got {kind!r}.")
    y, w, mu = _response(model, X, y, groups, sample_weight, offset)
    family = model._family_
    if kind == "response":
        return y - mu
    if kind == "pearson":
        variance = getattr(family, "unit_variance", family.variance)(mu)
        return (y - mu) * np.sqrt(w / np.maximum(variance, 1e-300))
    return np.sign(y - mu) * np.sqrt(np.maximum(w * family.unit_deviance(y, mu), 0.0))


def sample_response(family, mu: np.ndarray, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw a response with mean ``mu`` from ``family``.

    Every family draws through its ``sample(mu, weights, rng)`` (binomial
    weights are numbers of trials; Poisson draws ignore prior weights, as
    lme4's ``simulate``).
    """
    return np.asarray(family.sample(mu, weights, rng), dtype=float)


def _check_n_simulations(n_simulations) -> int:
    if isinstance(n_simulations, bool) or not isinstance(n_simulations, (int, np.integer)):
        raise TypeError(f"n_simulations must be a positive integer; got {n_simulations!r}.")
    if n_simulations < 1:
        raise ValueError(f"n_simulations must be >= 1; got {n_simulations}.")
    return int(n_simulations)


def simulate(model, X, groups=None, n_simulations: int = 1, random_state=None, conditional: bool = True, offset=None):
    """Responses simulated from a fitted GLMM.

    With several grouping factors (crossed, nested) each factor's random
    effects are drawn independently, ``b_{k,g} ~ N(0, Sigma_k)``, one draw per
    distinct level of factor k in ``groups`` (rows sharing a level share it).
    For the uncorrelated bars of ``(1 + x || g)``, ``Sigma_k`` is diagonal.

    Parameters
    ----------
    model : fitted GLMM estimator
    X : {array-like, DataFrame} of shape (n_samples, n_features)
    groups : array-like or DataFrame of shape (n_samples,) or (n_samples, n_factors), default=None
        Group labels, as in ``fit``; required for a mixed model.
    n_simulations : int, default=1
    random_state : int, Generator or None, default=None
    conditional : bool, default=True
        True keeps the conditional modes of the levels seen in fit (lme4's
        ``simulate(m, re.form = NULL)``); levels not seen in fit draw fresh
        effects, factor by factor (a row with a known user and a new day keeps
        the user's mode and draws the day's effect). False draws new random
        effects for every level of every factor (``re.form = NA``, the
        parametric-bootstrap scheme).
    offset : array-like of shape (n_samples,), default=None

    Returns
    -------
    ndarray of shape (n_samples, n_simulations)

    Notes
    -----
    Per simulation the draws are taken factor by factor in the model's order of
    the terms (most levels first), then the response; so a one-factor model
    gives the same numbers as before several factors were supported.

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
    n_simulations = _check_n_simulations(n_simulations)
    if not isinstance(conditional, (bool, np.bool_)):
        raise TypeError(f"conditional must be True or False; got {conditional!r}.")
    rng = np.random.default_rng(random_state)
    design, n = model._design_for(X, groups)
    eta_fixed = design.X @ model.fixef_.to_numpy()
    if offset is not None:
        eta_fixed = eta_fixed + np.asarray(offset, dtype=float)
    mixed = bool(model.ranef_)
    if mixed and groups is None:
        raise ValueError(
            "simulate needs groups for a mixed model (the random effects are drawn per group); "
            "pass the group label of every row."
        )
    weights = np.ones(n)
    family = model._family_
    out = np.empty((n, n_simulations))
    if not mixed:
        mu = family.link.inverse(eta_fixed)
        for s in range(n_simulations):
            out[:, s] = sample_response(family, mu, weights, rng)
        return out
    draws = _level_draws(model, design, groups, n)
    for s in range(n_simulations):
        eta = eta_fixed.copy()
        for term, (labels, known, lam, b_fit) in zip(design.terms, draws):
            b = rng.standard_normal((known.size, term.q)) @ lam.T
            if conditional:
                seen = known >= 0
                b[seen] = b_fit[known[seen]]
            eta += np.einsum("nq,nq->n", term.Z, b[labels])
        out[:, s] = sample_response(family, family.link.inverse(eta), weights, rng)
    return out


def _level_draws(model, design, groups, n: int) -> list[tuple]:
    """Per term: each row's distinct-level index, the fitted code of each distinct
    level (-1 = new), the scaled ``Lambda_k`` and the fitted modes ``b_k``."""
    builder = model._builder
    columns = builder.factor_columns
    if len(columns) == 1 and not (isinstance(groups, pd.DataFrame) and groups.shape[1] > 1):
        frame = groups_to_series(groups, n).rename(columns[0]).to_frame()  # as DesignBuilder.transform
    else:
        frame = groups_to_frame(groups, n, columns)
    # the engine's theta (terms in design order) from the reported one
    theta = np.empty(model.theta_.size)
    theta[builder.theta_order_] = model.theta_
    scale = np.sqrt(_dispersion(model))
    out, start = [], 0
    for term, b_fit in zip(design.terms, model._b):
        lam = term.lambda_(theta[start : start + term.n_theta]) * scale
        start += term.n_theta
        labels, uniques = pd.factorize(_factor_labels(frame, term.factor))
        known = np.full(len(uniques), -1)
        known[labels] = term.codes  # the fitted level of each distinct label (-1 = new)
        out.append((labels, known, lam, np.asarray(b_fit)))
    return out


def _dispersion(model) -> float:
    """Scale of ``Lambda Lambda^T`` (sigma^2 for Gaussian models, 1 otherwise)."""
    sigma = getattr(model, "sigma_", None)
    return 1.0 if sigma is None else float(sigma) ** 2


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
    r = residuals(model, X, y, groups, kind="pearson", sample_weight=sample_weight, offset=offset)
    chisq = float(np.sum(r**2))
    df = int(model.df_resid_)
    return OverdispersionResult(chisq, chisq / df, df, float(stats.chi2.sf(chisq, df)))
