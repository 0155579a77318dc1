"""GLMM regressors: one class per family, differing only in ``_get_family``.

The numpydoc docstrings share their parameter and attribute sections (built
once below) so that every estimator documents the same API the same way.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from typing import ClassVar

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.exceptions import ConvergenceWarning

from ._base import _BaseGLMM, _LaplaceGLMM
from ._core import CoreTerm, LMMProblem, fit_lmm
from .families import (
    BinomialFamily,
    GammaFamily,
    GaussianFamily,
    NegativeBinomialFamily,
    PoissonFamily,
)
from .results import varcorr_table
from .utils._param_validation import StrOptions
from .utils._validation import EXACT_FIT_NOTE, theta_at_upper_bound

__all__ = [
    "PoissonGLMMRegressor",
    "NegativeBinomialGLMMRegressor",
    "GammaGLMMRegressor",
    "BinomialGLMMRegressor",
    "GaussianLMMRegressor",
]

RANDOM_EFFECTS_DOC = """random_effects : str, default="1"
        The random-effects terms in lme4's bar syntax over X's column names,
        e.g. ``"(1 + day_centered | user_id)"``, or the short form
        ``"1 + day_centered"`` (``"0 + day_centered"`` drops the random
        intercept). ``"1"`` is a random intercept. Several grouping factors:
        crossed ``"(1 | subject) + (1 | item)"``, nested ``"(1 | clinic/user)"``,
        uncorrelated ``"(1 + x || user)"``; ``groups`` then holds one column per
        factor."""

FIXED_EFFECTS_DOC = """fixed_effects : list of str or None, default=None
        The columns of X that are fixed effects (the intercept always is);
        None makes every column one. A column left out enters only the
        random-effect terms that name it, with a fixed effect of 0: lme4's
        ``y ~ 1 + (x | g)`` is ``random_effects="(x | g)", fixed_effects=[]``.
        Its entry of ``coef_`` is 0."""

GROUPS_DOC = """group_column : str, int, list or None, default=None
        Take the grouping factor from this column of X (a DataFrame column
        name, or a position; a list of names for several factors) instead of
        from ``groups``; the columns are left out of the fixed effects. This makes the estimator work in any
        Pipeline, search or cross-validation without metadata routing.
    new_groups : {"population", "marginal", "error"}, default="population"
        Predictions for groups not seen in fit (every group under
        ``GroupKFold``): ``"population"`` sets their random effects to 0
        (lme4's ``allow.new.levels``); ``"marginal"`` predicts the mean
        response averaged over the random-effect distribution (closed form for
        the log link, Gauss-Hermite otherwise), the unbiased prediction for a
        new group; ``"error"`` refuses them."""

SOLVER_OPTIONS_DOC = """solver_options : dict, default=None
        Further named controls of the solver (PIRLS tolerance and halvings,
        the stage-1 subsample, boundary and singular tolerances, restarts, ...;
        the fields of ``sklearn_glmm._core.SolverControls``, e.g.
        ``{"pirls_tol": 1e-12}``). ``max_iter`` and ``tol`` win over the same
        names here. The values used are in ``fit_summary_.controls``.
    n_jobs : int, default=None
        Threads for one fit: the rows are cut into shards of whole groups
        that run in parallel (scikit-learn's meaning: None is 1, -1 all
        CPUs). The answer equals the one-thread fit up to the order of
        floating-point sums. The linear mixed model and crossed factors run
        in one thread. Dask DataFrame inputs run on the cluster instead
        (``docs/scaling_out.md``).
    verbose : int, default=0
        1 prints progress per stage, 2 per deviance evaluation."""

OPTIMISER_DOC = (
    GROUPS_DOC
    + """
    se_method : {"hessian", "pirls"}, default="hessian"
        Standard errors of the fixed effects: ``"hessian"`` inverts the
        Hessian of the Laplace deviance in (theta, beta), lme4's default;
        ``"pirls"`` uses the information with theta held fixed
        (``vcov(m, use.hessian = FALSE)``).
    n_agq : int, default=1
        Number of adaptive Gauss-Hermite quadrature points per group, in
        [1, 100]: 1 is the Laplace approximation; more (lme4's ``nAGQ``, e.g.
        25) integrate the random effect numerically, which is more accurate
        for binary data with small groups. Only for a single scalar random
        effect (``"(1 | g)"``); anything else raises ``ValueError``, as lme4.
        Unlike lme4, the log-likelihood keeps every constant, so AIC, BIC and
        likelihood-ratio tests compare across ``n_agq``.
    max_iter : int, default=500
        Iteration limit of the joint (theta, beta) optimisation; must be >= 1.
    tol : float, default=1e-10
        That optimisation stops when the predicted further decrease of the
        deviance (the Newton decrement ``g^T H^{-1} g``) is below ``tol``;
        must be > 0.

    """
    + SOLVER_OPTIONS_DOC
)

ATTRIBUTES_DOC = """fixef_ : pandas.Series
        Fixed effects, ``"(Intercept)"`` first, then X's column names.
    intercept_ : float
        ``fixef_["(Intercept)"]``.
    coef_ : ndarray of shape (n_features,)
        The other fixed effects (0 for a column dropped as collinear).
    fixef_se_ : pandas.Series
        Their standard errors.
    vcov_ : pandas.DataFrame
        Covariance matrix of the fixed effects.
    ranef_ : dict of {str: pandas.DataFrame}
        Conditional modes: grouping factor -> levels x terms.
    group_coef_ : dict of {str: pandas.DataFrame}
        Fixed plus random coefficients per level (lme4's ``coef(m)``).
    varcorr_ : pandas.DataFrame
        Variance components with columns ``group, var1, var2, vcov, sdcor``, as
        R's ``as.data.frame(VarCorr(m))``.
    theta_ : ndarray
        Relative covariance factor, lme4's order.
    loglik_, deviance_, aic_, bic_ : float
        Log-likelihood, ``-2 loglik``, AIC and BIC.
    df_resid_ : int
        Residual degrees of freedom.
    n_obs_ : int
        Number of observations with positive weight.
    n_groups_ : dict of {str: int}
        Number of levels per grouping factor (lme4's ``ngrps(m)``).
    family_ : Family
        The fitted family (name, link, variance function, estimated shape).
    n_iter_ : int
        Outer iterations.
    converged_ : bool
        Whether the optimiser met its tolerance.
    singular_ : bool
        Whether a variance is at its boundary (lme4's ``isSingular``).
    fit_summary_ : object or None
        The engine's record (deviance, gradient, Hessian, timings).
    group_levels_ : dict of {str: pandas.Index}
        Levels of each grouping factor seen in fit.
    n_features_in_ : int
        Number of columns of X.
    feature_names_in_ : ndarray of str
        Column names of X, when X was a DataFrame."""

NOTES_DOC = """Without ``groups`` the estimator fits the plain GLM. At predict time,
    rows of groups not seen in fit get population-level predictions (random
    effects 0), as lme4's ``allow.new.levels = TRUE``."""


#: the estimators of the package, for the "See Also" sections
SEE_ALSO = {
    "PoissonGLMMRegressor": "counts, log link (lme4's ``glmer(family = poisson)``).",
    "NegativeBinomialGLMMRegressor": "overdispersed counts (glmmTMB's ``nbinom2``).",
    "ZeroInflatedPoissonGLMMRegressor": "counts with structural zeros (glmmTMB's ``ziformula``).",
    "GammaGLMMRegressor": "positive, skewed responses.",
    "BinomialGLMMRegressor": "proportions with numbers of trials.",
    "BinomialGLMMClassifier": "binary labels.",
    "GaussianLMMRegressor": "linear mixed model (lme4's ``lmer``).",
}


def see_also(estimator: str, *others: str) -> str:
    """The "See Also" entries of ``estimator``: the other estimators, then ``others``."""
    lines = [f"{name} : {what}" for name, what in SEE_ALSO.items() if name != estimator]
    lines.append("sklearn_glmm.glmer : Any of them from an lme4 formula and a DataFrame.")
    return "\n    ".join(lines + list(others))


def _doc(
    summary: str, model: str, parameters: str, attributes: str, notes: str, example: str, related: str
) -> str:
    return f"""{summary}

    {model}

    Parameters
    ----------
    {RANDOM_EFFECTS_DOC}
    {FIXED_EFFECTS_DOC}
    {parameters}

    Attributes
    ----------
    {attributes}{ATTRIBUTES_DOC}

    See Also
    --------
    {related}

    Notes
    -----
    {NOTES_DOC}
    {notes}

    References
    ----------
    Bates, D., Maechler, M., Bolker, B. and Walker, S. (2015). Fitting linear
    mixed-effects models using lme4. Journal of Statistical Software 67(1).

    Examples
    --------
{example}
    """


class _GLMMRegressor(RegressorMixin, _LaplaceGLMM):
    """Regressor base: scikit-learn's regressor tags, with D^2 as the score."""

    score = _BaseGLMM.score


class PoissonGLMMRegressor(_GLMMRegressor):
    def _get_family(self):
        return PoissonFamily()


PoissonGLMMRegressor.__doc__ = _doc(
    "Poisson generalized linear mixed model (log link), fitted as lme4's ``glmer``.",
    """The model for count ``y_ij`` of row ``j`` in group ``i`` is::

        y_ij ~ Poisson(lambda_ij),
        log(lambda_ij) = offset_ij + X_ij beta + Z_ij b_i,    b_i ~ N(0, Sigma)

    with ``Sigma = Lambda(theta) Lambda(theta)^T``. ``beta`` and ``theta``
    maximise the Laplace approximation to the marginal likelihood; ``b_i`` are
    the conditional modes. This is ``glmer(y ~ X + (Z | group), family =
    poisson)`` in R.""",
    OPTIMISER_DOC,
    "",
    """``y`` may be non-integer (rates with exposures as ``sample_weight``, the
    scikit-learn idiom); the log-likelihood then uses ``gammaln(y + 1)`` as a
    continuous extension, so logLik/AIC are only comparable between models of
    the same data. ``score`` is D^2, the fraction of Poisson deviance
    explained.""",
    """    >>> from sklearn_glmm import PoissonGLMMRegressor
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> data = load_app_engagement()
    >>> model = PoissonGLMMRegressor(random_effects="(1 | user_id)")
    >>> model = model.fit(data[["day_centered"]], data["logins"], groups=data["user_id"])
    >>> model.fixef_.round(4).tolist()
    [0.7379, -0.0091]
    >>> round(model.aic_, 1)
    5290.3""",
    see_also(
        "PoissonGLMMRegressor", "sklearn.linear_model.PoissonRegressor : The GLM without random effects."
    ),
)


class NegativeBinomialGLMMRegressor(_GLMMRegressor):
    def _get_family(self):
        return NegativeBinomialFamily()

    def _set_param_attributes(self, family):
        self.nb_size_ = family.size
        if family.size >= 0.99 * np.exp(family.param_bounds[1]):
            warnings.warn(
                f"The negative-binomial size ran to its upper bound ({family.size:.3g}): the data "
                "show no overdispersion, and the fit is the Poisson GLMM's. "
                "PoissonGLMMRegressor fits the same model with one parameter less.",
                UserWarning,
                stacklevel=3,
            )


NegativeBinomialGLMMRegressor.__doc__ = _doc(
    "Negative binomial (NB2) GLMM with a log link; the size is estimated jointly.",
    """The model is ``y_ij ~ NB(mu_ij, size)`` with ``Var(y) = mu + mu^2 / size``
    and ``log(mu_ij) = offset_ij + X_ij beta + Z_ij b_i``, ``b_i ~ N(0, Sigma)``.
    ``size`` is estimated by maximum likelihood together with beta and theta
    (as glmmTMB's ``nbinom2``; lme4's ``glmer.nb`` alternates slowly between
    the two). The Laplace approximation uses the observed information, as
    glmmTMB.""",
    OPTIMISER_DOC,
    """nb_size_ : float
        The estimated size (glmmTMB's ``sigma()``; lme4's ``getME(m, "glmer.nb.theta")``).
    """,
    """On data without overdispersion the size runs off to infinity; it is
    capped at 1e8 (where the NB likelihood equals the Poisson one to ~1e-6)
    with a warning. ``score`` is D^2 of the NB deviance.""",
    """    >>> from sklearn_glmm import NegativeBinomialGLMMRegressor
    >>> from sklearn_glmm.datasets import make_app_engagement
    >>> data = make_app_engagement(n_users=30, n_days=20, random_state=0)
    >>> model = NegativeBinomialGLMMRegressor("(1 | user_id)")
    >>> model = model.fit(data[["day_centered"]], data["logins"], groups=data["user_id"])
    >>> model.nb_size_ > 1
    True""",
    see_also("NegativeBinomialGLMMRegressor"),
)


class GammaGLMMRegressor(_GLMMRegressor):
    _parameter_constraints: ClassVar[dict] = {
        **_LaplaceGLMM._parameter_constraints,
        "link": [StrOptions({"log", "identity"})],
    }

    def __init__(
        self,
        random_effects="1",
        *,
        link="log",
        fixed_effects=None,
        group_column=None,
        new_groups="population",
        se_method="hessian",
        n_agq=1,
        max_iter=500,
        tol=1e-10,
        solver_options=None,
        n_jobs=None,
        verbose=0,
    ):
        super().__init__(
            random_effects,
            fixed_effects=fixed_effects,
            group_column=group_column,
            new_groups=new_groups,
            se_method=se_method,
            n_agq=n_agq,
            max_iter=max_iter,
            tol=tol,
            solver_options=solver_options,
            n_jobs=n_jobs,
            verbose=verbose,
        )
        self.link = link

    def _get_family(self):
        return GammaFamily(link=self.link)

    def _set_param_attributes(self, family):
        self.gamma_shape_ = family.shape
        self.dispersion_ = 1.0 / family.shape


GammaGLMMRegressor.__doc__ = _doc(
    "Gamma GLMM for positive, skewed responses (session lengths); the shape is estimated jointly.",
    """The model is ``y_ij ~ Gamma(shape, mean mu_ij)`` with
    ``g(mu_ij) = offset_ij + X_ij beta + Z_ij b_i``, ``b_i ~ N(0, Sigma)`` and
    ``Var(y) = mu^2 / shape``. The shape is a maximum-likelihood estimate
    together with beta and theta, as glmmTMB's ``Gamma`` family (lme4's
    moment estimate of the dispersion is biased); the Laplace approximation
    uses the observed information.""",
    """link : {"log", "identity"}, default="log"
        Link function.
    """
    + OPTIMISER_DOC,
    """gamma_shape_ : float
        The estimated shape.
    dispersion_ : float
        ``1 / gamma_shape_``, the squared coefficient of variation.
    """,
    """``Sigma`` is on the link scale, not relative to the dispersion (lme4 reports
    Gamma variances relative to sigma). ``score`` is D^2 of the Gamma deviance.""",
    """    >>> import numpy as np
    >>> from sklearn_glmm import GammaGLMMRegressor
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(30), 20)
    >>> x = rng.normal(size=600)
    >>> mu = np.exp(1.0 + 0.3 * x + rng.normal(0, 0.4, 30)[g])
    >>> y = rng.gamma(4.0, mu / 4.0)
    >>> model = GammaGLMMRegressor().fit(x.reshape(-1, 1), y, groups=g)
    >>> bool(abs(model.coef_[0] - 0.3) < 0.1)
    True""",
    see_also("GammaGLMMRegressor", "sklearn.linear_model.GammaRegressor : The GLM without random effects."),
)


class _BinomialGLMM(_LaplaceGLMM):
    """Parameters and family shared by the binomial regressor and classifier."""

    _parameter_constraints: ClassVar[dict] = {
        **_LaplaceGLMM._parameter_constraints,
        "link": [StrOptions({"logit", "probit", "cloglog"})],
    }

    def __init__(
        self,
        random_effects="1",
        *,
        link="logit",
        fixed_effects=None,
        group_column=None,
        new_groups="population",
        se_method="hessian",
        n_agq=1,
        max_iter=500,
        tol=1e-10,
        solver_options=None,
        n_jobs=None,
        verbose=0,
    ):
        super().__init__(
            random_effects,
            fixed_effects=fixed_effects,
            group_column=group_column,
            new_groups=new_groups,
            se_method=se_method,
            n_agq=n_agq,
            max_iter=max_iter,
            tol=tol,
            solver_options=solver_options,
            n_jobs=n_jobs,
            verbose=verbose,
        )
        self.link = link

    def _get_family(self):
        return BinomialFamily(link=self.link)


class BinomialGLMMRegressor(RegressorMixin, _BinomialGLMM):
    score = _BaseGLMM.score


BINOMIAL_LINK_DOC = """link : {"logit", "probit", "cloglog"}, default="logit"
        Link function. For probit and cloglog (non-canonical) the Laplace
        approximation uses the Fisher information in its log-determinant, as
        lme4 does, so the numbers match lme4's."""

BinomialGLMMRegressor.__doc__ = _doc(
    "Binomial GLMM for proportions with known numbers of trials (lme4's ``cbind`` model).",
    """``y`` is the proportion of successes in [0, 1] and ``sample_weight`` the
    number of trials, so ``fit(X, successes / trials, sample_weight=trials)``
    is ``glmer(cbind(successes, trials - successes) ~ ..., family = binomial)``.
    The model is ``successes_ij ~ Binomial(trials_ij, p_ij)``,
    ``g(p_ij) = offset_ij + X_ij beta + Z_ij b_i``, ``b_i ~ N(0, Sigma)``.""",
    BINOMIAL_LINK_DOC + "\n    " + OPTIMISER_DOC,
    "",
    """``predict`` returns probabilities; ``score`` is D^2 of the binomial
    deviance. For a 0/1 response with labels, use
    :class:`BinomialGLMMClassifier` (same engine).""",
    """    >>> import numpy as np
    >>> from sklearn_glmm import BinomialGLMMRegressor
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(40), 5)
    >>> x = rng.normal(size=200)
    >>> trials = rng.integers(5, 20, size=200)
    >>> p = 1 / (1 + np.exp(-(-0.5 + 0.8 * x + rng.normal(0, 0.6, 40)[g])))
    >>> y = rng.binomial(trials, p) / trials
    >>> model = BinomialGLMMRegressor().fit(x.reshape(-1, 1), y, groups=g, sample_weight=trials)
    >>> bool(abs(model.coef_[0] - 0.8) < 0.2)
    True""",
    see_also("BinomialGLMMRegressor"),
)


#: a residual SD this small next to the SD of y - offset is an exact fit (rounding noise)
EXACT_FIT_RTOL = 1e-7

#: the LMM's bound on |rms * theta| when a fit reaches the default (50): theta is relative to sigma
LMM_MAX_SCALED_THETA = 1e4


def _response_scale(r: np.ndarray, w: np.ndarray) -> float:
    """The weighted SD of ``r`` over the rows with positive weight (two passes, no cancellation)."""
    positive = w > 0
    r, w = r[positive], w[positive]
    mean = np.average(r, weights=w)
    return float(np.sqrt(np.average((r - mean) ** 2, weights=w)))


class GaussianLMMRegressor(RegressorMixin, _BaseGLMM):
    _parameter_constraints: ClassVar[dict] = {**_BaseGLMM._parameter_constraints, "reml": ["boolean"]}
    _wald_statistic = "t"
    score = _BaseGLMM.score

    @property
    def _uses_reml(self) -> bool:
        return bool(self.reml)

    def _random_effect_scale(self) -> float:
        return float(self.sigma_) if self.ranef_ else 1.0

    def __init__(
        self,
        random_effects="1",
        *,
        reml=True,
        fixed_effects=None,
        group_column=None,
        new_groups="population",
        max_iter=500,
        solver_options=None,
        n_jobs=None,
        verbose=0,
    ):
        super().__init__(
            random_effects,
            fixed_effects=fixed_effects,
            group_column=group_column,
            new_groups=new_groups,
            max_iter=max_iter,
            solver_options=solver_options,
            n_jobs=n_jobs,
            verbose=verbose,
        )
        self.reml = reml

    def _get_family(self):
        return GaussianFamily()

    def _engine_options(self, design) -> dict:
        return {"exact_gaussian": True, "reml": self.reml}

    def _fit_mixed(self, design, y, w, off, controls) -> None:
        # Precision weights c * w describe the same data as w with sigma * sqrt(c)
        # and theta / sqrt(c) (the likelihood is equal): the fit runs on weights of
        # mean 1, where theta is of order 1 whatever the weights' unit, and
        # _set_result_attributes maps the estimates back
        scale = float(np.mean(w[w > 0]))
        self._weight_scale = scale
        try:
            super()._fit_mixed(design, y, w if scale == 1.0 else w / scale, off, controls)
        finally:
            del self._weight_scale

    def _solve(self, problem):
        result = fit_lmm(problem, verbose=self.verbose)
        if not isinstance(problem, LMMProblem):  # data held in parts: no rows here to compare with
            return result
        if "max_scaled_theta" not in (self.solver_options or {}) and np.any(
            theta_at_upper_bound(result.theta, problem.theta_scale, problem.theta_diagonal, result.controls)
        ):
            # theta is relative to sigma: a group SD 100 times the residual SD is a legitimate
            # estimate, beyond the solver's default bound of 50 (a wider bound from the start
            # would slow every fit: L-BFGS-B sizes its first steps by the bounds)
            wide = copy.copy(problem)
            wide.controls = dataclasses.replace(problem.controls, max_scaled_theta=LMM_MAX_SCALED_THETA)
            result = fit_lmm(wide, verbose=self.verbose)
        scale = _response_scale(problem.r, problem.w)
        if result.sigma <= EXACT_FIT_RTOL * scale:
            # y is (to rounding) a function of the fixed and random effects: the
            # likelihood grows without bound as sigma -> 0, so no estimate is final
            result.converged = False
            result.notes.append(
                f"{EXACT_FIT_NOTE}: the residual SD {result.sigma:.3g} is 0 to rounding next to the "
                f"SD {scale:.3g} of y - offset; the likelihood is unbounded"
            )
            warnings.warn(
                f"Exact fit: the residual SD ({result.sigma:.3g}) is 0 to rounding next to the SD of "
                f"y ({scale:.3g}), so y is a function of X and the groups without noise. The fixed "
                "effects and predictions are exact, but the likelihood grows without bound as sigma -> 0: "
                "loglik_, AIC, the random-effect SDs and the standard errors mean nothing (converged_ is "
                "False). Check that y is not computed from X or from the groups.",
                ConvergenceWarning,
                stacklevel=5,
            )
        return result

    def _set_result_attributes(self, problem, result, terms) -> None:
        scale = getattr(self, "_weight_scale", 1.0)
        if scale != 1.0:
            # from the weights of mean 1 back to the caller's (see _fit_mixed); b = Lambda u,
            # the deviance, vcov and the conditional covariances do not change
            result.theta = result.theta / np.sqrt(scale)
            result.u = result.u * np.sqrt(scale)
            result.sigma = result.sigma * np.sqrt(scale)
        self._family_ = GaussianFamily(sigma2=result.sigma**2)
        self._set_fixed(result.coef, result.vcov_beta)
        # b = Lambda u is on the response scale already (u ~ N(0, sigma^2 I))
        self._set_random_attributes(
            terms,
            result.theta,
            problem.random_effects(result.theta, result.u),
            scale=result.sigma**2,
            sigma=result.sigma,
        )
        self.sigma_ = result.sigma
        self.loglik_ = -0.5 * result.deviance
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.singular_ = result.singular
        self._se_method_used = "sigma^2 RX^-1, as lmer"

    def _fit_without_groups(self, design, y, w, off, controls) -> None:
        # the linear model: the LMM's least squares with one empty random effect
        Xd = design.X
        n = Xd.shape[0]
        empty = CoreTerm(np.zeros(n, dtype=np.intp), np.zeros((n, 1)), 1, np.array([0]), np.array([0]))
        problem = LMMProblem(Xd, y, w, off, [empty], controls, self.reml)
        beta, _, r2, _, RXtRX = problem.solve(np.zeros(1))
        dof = problem.n - problem.p if self.reml else problem.n
        if dof <= 0:
            raise ValueError(
                f"n_samples={problem.n} (with positive weight) leaves no residual degrees of "
                f"freedom for {problem.p} fixed effects; the residual variance cannot be estimated."
            )
        sigma2 = r2 / dof
        self._family_ = GaussianFamily(sigma2=sigma2)
        self._set_fixed(beta, sigma2 * np.linalg.inv(RXtRX))
        self._set_no_random_effects()
        self.varcorr_ = varcorr_table("", [], np.empty(0), sigma=float(np.sqrt(sigma2)))
        self.sigma_ = float(np.sqrt(sigma2))
        self.loglik_ = -0.5 * problem.deviance(np.zeros(1), self.reml)
        self.n_iter_, self.converged_ = 1, True
        self._se_method_used = "sigma^2 (X^T W X)^-1"

    def _method_description(self, mixed: bool) -> str:
        how = "REML" if self.reml else "maximum likelihood"
        return f"Linear mixed model fit by {how}" if mixed else f"Linear model fit by {how} (no groups given)"

    def _summary_family(self):
        return "", ""

    def _summary_extra(self) -> dict:
        if self.reml:
            return {"REML criterion at convergence": f"{-2 * self.loglik_:.1f}"}
        return {}


GaussianLMMRegressor.__doc__ = _doc(
    "Linear mixed model (Gaussian), fitted by REML or ML with the exact likelihood, as lme4's ``lmer``.",
    """The model is ``y_ij = offset_ij + X_ij beta + Z_ij b_i + e_ij`` with
    ``b_i ~ N(0, sigma^2 Lambda Lambda^T)`` and ``e_ij ~ N(0, sigma^2 / w_ij)``.
    beta and sigma are profiled out and the (restricted) likelihood is
    maximised over theta, which is relative to sigma as in lme4.""",
    """reml : bool, default=True
        REML (lme4's default) or maximum likelihood. Compare models that differ
        in their fixed effects with ``reml=False``.
    """
    + GROUPS_DOC
    + """
    max_iter : int, default=500
        Iteration limit of the optimisation over theta; must be >= 1.
    """
    + SOLVER_OPTIONS_DOC,
    """sigma_ : float
        Residual standard deviation.
    """,
    """For REML fits ``loglik_`` is minus half the REML criterion, as lme4's
    ``logLik``. ``varcorr_`` ends with a ``Residual`` row. The summary shows t
    values without p-values, as lme4. ``score`` is R^2 (D^2 of the squared
    error).""",
    """    >>> import numpy as np
    >>> from sklearn_glmm import GaussianLMMRegressor
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(20), 10)
    >>> x = rng.normal(size=200)
    >>> y = 1.0 + 2.0 * x + rng.normal(0, 1.0, 20)[g] + rng.normal(0, 0.5, 200)
    >>> model = GaussianLMMRegressor().fit(x.reshape(-1, 1), y, groups=g)
    >>> round(float(model.coef_[0]), 1), bool(0.3 < model.sigma_ < 0.7)
    (2.0, True)""",
    see_also(
        "GaussianLMMRegressor",
        "sklearn.linear_model.LinearRegression : The linear model without random effects.",
    ),
)
