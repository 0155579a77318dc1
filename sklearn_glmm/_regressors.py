"""GLMM regressors: one class per family, differing only in ``_get_family``."""

from __future__ import annotations

from ._base import _BaseGLMM
from .families import PoissonFamily

__all__ = ["PoissonGLMMRegressor"]


class PoissonGLMMRegressor(_BaseGLMM):
    """Poisson generalized linear mixed model (log link), fitted as lme4's ``glmer``.

    The model for count ``y_ij`` of row ``j`` in group ``i`` is::

        y_ij ~ Poisson(lambda_ij),
        log(lambda_ij) = offset_ij + X_ij beta + Z_ij b_i,    b_i ~ N(0, Sigma)

    with ``Sigma = Lambda(theta) Lambda(theta)^T``. ``beta`` and ``theta``
    maximise the Laplace approximation to the marginal likelihood; ``b_i`` are
    the conditional modes. This is ``glmer(y ~ X + (Z | group), family =
    poisson)`` in R.

    Parameters
    ----------
    random_effects : str, default="1"
        The random-effects terms in lme4's bar syntax over X's column names,
        e.g. ``"(1 + day_centered | user_id)"``, or the short form
        ``"1 + day_centered"`` (``"0 + day_centered"`` drops the random
        intercept). ``"1"`` is a random intercept.
    se_method : {"hessian", "pirls"}, default="hessian"
        Standard errors of the fixed effects: ``"hessian"`` inverts the
        Hessian of the Laplace deviance in (theta, beta), lme4's default;
        ``"pirls"`` uses the information with theta held fixed
        (``vcov(m, use.hessian = FALSE)``).
    max_iter : int, default=500
        Iteration limit of the joint (theta, beta) optimisation; must be >= 1.
    tol : float, default=1e-10
        That optimisation stops when the predicted further decrease of the
        deviance (the Newton decrement ``g^T H^{-1} g``) is below ``tol``;
        must be > 0.
    verbose : int, default=0
        1 prints progress per stage, 2 per deviance evaluation.

    Attributes
    ----------
    fixef_ : pandas.Series
        Fixed effects, ``"(Intercept)"`` first, then X's column names.
    intercept_ : float
        ``fixef_["(Intercept)"]``.
    coef_ : ndarray of shape (n_features,)
        The other fixed effects.
    fixef_se_ : pandas.Series
        Their standard errors.
    vcov_ : pandas.DataFrame
        Covariance matrix of the fixed effects.
    ranef_ : dict of {str: pandas.DataFrame}
        Conditional modes: grouping factor -> levels x terms.
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
    n_iter_ : int
        Outer iterations.
    converged_ : bool
        Whether the optimiser met its gradient tolerance.
    singular_ : bool
        Whether a variance is at its boundary (lme4's ``isSingular``).
    fit_summary_ : FitResult or None
        The engine's record (deviance, gradient, Hessian, timings).
    group_levels_ : dict of {str: pandas.Index}
        Levels of each grouping factor seen in fit.
    n_features_in_ : int
        Number of columns of X.
    feature_names_in_ : ndarray of str
        Column names of X, when X was a DataFrame.

    See Also
    --------
    sklearn.linear_model.PoissonRegressor : the plain Poisson GLM.

    Notes
    -----
    Without ``groups`` the estimator fits the plain Poisson GLM. At predict
    time, rows of groups not seen in fit get population-level predictions.
    ``y`` may be non-integer (rates with exposures as ``sample_weight``, the
    scikit-learn idiom); the log-likelihood then uses ``gammaln(y + 1)`` as a
    continuous extension, so logLik/AIC are only comparable between models of
    the same data.

    References
    ----------
    Bates, D., Maechler, M., Bolker, B. and Walker, S. (2015). Fitting linear
    mixed-effects models using lme4. Journal of Statistical Software 67(1).

    Examples
    --------
    >>> from sklearn_glmm import PoissonGLMMRegressor
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> data = load_app_engagement()
    >>> model = PoissonGLMMRegressor(random_effects="(1 | user_id)")
    >>> model = model.fit(data[["day_centered"]], data["logins"], groups=data["user_id"])
    >>> model.fixef_.round(4).tolist()
    [0.7379, -0.0091]
    >>> round(model.aic_, 1)
    5290.3
    """

    def _get_family(self):
        return PoissonFamily()
