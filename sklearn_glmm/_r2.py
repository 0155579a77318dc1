"""R² and intraclass correlation of a fitted mixed model, as R's ``performance`` 0.10.2.

Nakagawa, Johnson & Schielzeth (2017) split the variance of the latent
(link-scale) response into

================== =============================================================
``var_fixed``      the variance of the fixed part ``X beta`` over the rows
                   (R's ``var``, denominator n - 1; no offset)
``var_random``     per random-effect group, the mean over the rows of
                   ``z_i' Sigma z_i`` (Johnson 2014: random slopes count at the
                   covariate values of the data), summed over groups
``var_distribution`` the observation-level variance of the family on the link
                   scale (below)
``var_dispersion`` the variance of observation-level random effects (a factor
                   with one level per row); 0 otherwise
================== =============================================================

and ``var_residual = var_distribution + var_dispersion``. Then

- marginal R² = ``var_fixed / (var_fixed + var_random + var_residual)``,
- conditional R² = ``(var_fixed + var_random) / (var_fixed + var_random + var_residual)``,
- adjusted ICC = ``var_random / (var_random + var_residual)``,
- unadjusted ICC = ``var_random / (var_fixed + var_random + var_residual)``.

The distribution-specific variance follows ``insight::get_variance`` 0.19
(what ``performance`` 0.10.2 uses by default):

================================ ===============================================
Gaussian (identity)              ``sigma^2``
binomial                         the theoretical variance of the latent
                                 distribution: ``pi^2 / 3`` (logit), 1 (probit),
                                 ``pi^2 / 6`` (cloglog)
Poisson (log)                    the lognormal approximation ``log(1 + 1/mu)``
negative binomial (NB2, log)     the lognormal approximation
                                 ``log(1 + 1/mu + 1/size)``, ``size`` the model's
Gamma (log, identity)            ``1 / shape`` (the squared coefficient of variation)
================================ ===============================================

For the log links ``mu = exp(beta_0)``, the intercept of the null model: the
same random effects, an intercept-only fixed part (with the model's offset and
weights), refitted to the data. That refit is why Poisson and negative-binomial
models need ``y`` and ``groups`` (formula-fitted models use their own data
frame). As ``performance``, a warning says when ``mu < 6`` makes the
approximation rough.

As ``performance``, a singular fit (a diagonal element of ``theta_`` below
``tolerance``) has no random-effect variance: the conditional R² and both ICCs
are NaN (the marginal R² then leaves ``var_random`` out), with a warning; and a
random slope that is not a fixed effect is left out of ``var_random``.

References
----------
Nakagawa, S., Johnson, P. C. D. and Schielzeth, H. (2017). The coefficient of
determination R² and intra-class correlation coefficient from generalized
linear mixed-effects models revisited and expanded. J. R. Soc. Interface 14.

Johnson, P. C. D. (2014). Extension of Nakagawa & Schielzeth's R²GLMM to random
slopes models. Methods in Ecology and Evolution 5, 944-946.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from ._model_frame import design_column, feature_frame
from ._zero_inflated import ZeroInflatedPoissonGLMMRegressor
from .results._varcorr import varcorr_matrices

__all__ = ["r2_nakagawa", "icc"]

_BINOMIAL_VARIANCE = {"logit": np.pi**2 / 3.0, "probit": 1.0, "cloglog": np.pi**2 / 6.0}


def _singular(model, groups: list, tolerance: float) -> bool:
    """lme4's rule, as ``insight``: a diagonal element of theta below ``tolerance``."""
    theta = np.asarray(model.theta_, dtype=float)
    start = 0
    for _, names, _ in groups:
        q = len(names)
        # column-major lower triangle: column j starts at its diagonal element
        diagonal = start + np.concatenate([[0], np.cumsum(np.arange(q, 1, -1))]).astype(int)
        if np.any(np.abs(theta[diagonal]) < tolerance):
            return True
        start += q * (q + 1) // 2
    return False


def _factor_of(group: str, n_groups: dict) -> str | None:
    """The grouping factor of a varcorr group (``g``, or ``g.1`` for a further bar of ``g``)."""
    if group in n_groups:
        return group
    base = re.sub(r"\.\d+$", "", group)
    return base if base in n_groups else None


def _null_intercept(model, inputs, null_model) -> float:
    """``beta_0`` of the null model: the same random effects, an intercept-only fixed part."""
    if null_model is not None:
        check_is_fitted(null_model, "fixef_")
        return float(null_model.fixef_.iloc[0])
    if inputs.y is None or (model.ranef_ and inputs.groups is None and model.group_column is None):
        raise ValueError(
            f"The {model.family_.name} family's observation-level variance needs the null model, "
            "refitted to the data: pass y and groups (a formula-fitted model uses its own data)."
        )
    null = clone(model).set_params(fixed_effects=[])
    kwargs = {
        k: v for k, v in (("sample_weight", inputs.sample_weight), ("offset", inputs.offset)) if v is not None
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the null model's own warnings are not the caller's
        null.fit(inputs.X, inputs.y, groups=inputs.groups, **kwargs)
    if not null.converged_:
        warnings.warn(
            "The null model did not converge; the observation-level variance may be off.",
            UserWarning,
            stacklevel=4,
        )
    return float(null.fixef_.iloc[0])


def _distribution_variance(model, inputs, null_model) -> float:
    family = model.family_
    name, link = family.name, family.link.name
    if name == "gaussian" and link == "identity":
        return float(model.sigma_) ** 2
    if name == "binomial" and link in _BINOMIAL_VARIANCE:
        return _BINOMIAL_VARIANCE[link]
    if name == "gamma" and link in ("log", "identity"):
        return 1.0 / float(model.gamma_shape_)
    if name in ("poisson", "negative_binomial") and link == "log":
        mu = np.exp(_null_intercept(model, inputs, null_model))
        if mu < 6:
            warnings.warn(
                f"mu of {mu:.1f} is too close to zero, estimate of random effect variances may be "
                "unreliable (the lognormal approximation of the observation-level variance is rough "
                "for small counts).",
                UserWarning,
                stacklevel=4,
            )
        cv2 = 1.0 / mu if name == "poisson" else 1.0 / mu + 1.0 / float(model.nb_size_)
        return float(np.log1p(cv2))
    raise ValueError(f"R² and ICC are not defined here for the {name} family with the {link} link.")


def _variance_components(
    model, X=None, y=None, groups=None, *, sample_weight=None, offset=None, tolerance=1e-5, null_model=None
) -> dict:
    """``insight::get_variance(model)``: var_fixed, var_random (None if singular), var_distribution, ..."""
    check_is_fitted(model, "fixef_")
    if isinstance(model, ZeroInflatedPoissonGLMMRegressor):
        # a model these functions do not cover, not an argument of the wrong type
        raise ValueError(f"R² and ICC are not covered for {type(model).__name__}.")  # noqa: TRY004
    if not model.ranef_:
        raise ValueError("The model has no random effects (it was fitted without groups).")
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative number; got {tolerance!r}.")
    inputs = model.model_inputs(X, y, groups, sample_weight, offset)
    frame = feature_frame(model, inputs.X)
    fixed_names = list(model.fixef_.index)
    F = np.column_stack([design_column(frame, name) for name in fixed_names])
    var_fixed = float(np.var(F @ model.fixef_.to_numpy(dtype=float), ddof=1))
    groups_cov = varcorr_matrices(model.varcorr_)
    n_rows = len(frame)
    n_groups = model.n_groups_
    random, dispersion, slopes_left_out = 0.0, 0.0, []
    for group, names, cov in groups_cov:
        valid = [j for j, name in enumerate(names) if name in fixed_names]
        slopes_left_out += [names[j] for j in range(len(names)) if j not in valid]
        Z = (
            np.column_stack([design_column(frame, names[j]) for j in valid])
            if valid
            else np.zeros((n_rows, 0))
        )
        sub = cov[np.ix_(valid, valid)]
        value = float(np.einsum("ij,jk,ik->", Z, sub, Z) / n_rows)
        factor = _factor_of(group, n_groups)
        if factor is not None and n_groups[factor] == n_rows:
            dispersion += value  # an observation-level random effect
        else:
            random += value
    if slopes_left_out:
        warnings.warn(
            f"Random slope(s) {sorted(set(slopes_left_out))} are not fixed effects and are left out of "
            "the random-effect variance, as performance does; respecify the fixed part.",
            UserWarning,
            stacklevel=3,
        )
    if model.family_.name == "gaussian":
        dispersion = 0.0
    singular = _singular(model, groups_cov, tolerance)
    distribution = _distribution_variance(model, inputs, null_model)
    return {
        "var_fixed": var_fixed,
        "var_random": None if singular else random,
        "var_distribution": distribution,
        "var_dispersion": dispersion,
        "var_residual": distribution + dispersion,
    }


def _warn_singular(what: str) -> None:
    warnings.warn(
        f"Can't compute {what}: some variance components equal zero (a singular fit, see "
        "singular_); respecify the random effects, or lower tolerance to force the calculation.",
        UserWarning,
        stacklevel=3,
    )


def r2_nakagawa(
    model, X=None, y=None, groups=None, *, sample_weight=None, offset=None, tolerance=1e-5, null_model=None
) -> dict[str, float]:
    """Marginal and conditional R² of a mixed model (Nakagawa et al. 2017), as R's ``performance``.

    ``performance::r2_nakagawa(m)`` 0.10.2: marginal R² is the share of the
    latent variance explained by the fixed effects, conditional R² by fixed
    and random effects together. The distribution-specific variance is
    ``sigma^2`` (Gaussian), the theoretical ``pi^2/3`` / 1 / ``pi^2/6`` of the
    logit / probit / cloglog link (binomial), the lognormal approximation
    ``log(1 + 1/mu)`` (Poisson) and ``log(1 + 1/mu + 1/size)`` (negative
    binomial) with ``mu`` from the null model's intercept, and ``1/shape``
    (Gamma); see :mod:`sklearn_glmm._r2`.

    Parameters
    ----------
    model : fitted GLMM estimator
        Not the zero-inflated one.
    X : {array-like, DataFrame} of shape (n_samples, n_features), default=None
        The data of the fit (the variances are averages over its rows). A
        formula-fitted model takes a raw data frame, or None for its own.
    y, groups : array-like, default=None
        Needed (with ``sample_weight``/``offset`` of the fit) to refit the null
        model of Poisson and negative-binomial models.
    sample_weight, offset : array-like, default=None
    tolerance : float, default=1e-5
        A diagonal element of ``theta_`` below it makes the fit singular.
    null_model : fitted estimator, default=None
        The null model if already fitted (skips the refit).

    Returns
    -------
    dict
        ``{"marginal": float, "conditional": float}``.

    See Also
    --------
    icc : the intraclass correlation from the same variances.

    Examples
    --------
    >>> import warnings
    >>> from sklearn_glmm import glmer, r2_nakagawa
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> model = glmer("logins ~ day_centered + (1 | user_id)", load_app_engagement())
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")  # mu of 2.1 is small for the lognormal approximation
    ...     r2 = r2_nakagawa(model)
    >>> {k: round(v, 4) for k, v in r2.items()}
    {'marginal': 0.0106, 'conditional': 0.332}
    """
    v = _variance_components(
        model,
        X,
        y,
        groups,
        sample_weight=sample_weight,
        offset=offset,
        tolerance=tolerance,
        null_model=null_model,
    )
    if v["var_random"] is None:
        _warn_singular("the conditional R²")
        return {
            "marginal": v["var_fixed"] / (v["var_fixed"] + v["var_residual"]),
            "conditional": float("nan"),
        }
    total = v["var_fixed"] + v["var_random"] + v["var_residual"]
    return {"marginal": v["var_fixed"] / total, "conditional": (v["var_fixed"] + v["var_random"]) / total}


def icc(
    model, X=None, y=None, groups=None, *, sample_weight=None, offset=None, tolerance=1e-5, null_model=None
) -> dict[str, float]:
    """Adjusted and unadjusted intraclass correlation, as R's ``performance::icc`` 0.10.2.

    The adjusted ICC is the share of the random effects in the latent
    variance once the fixed effects are accounted for,
    ``var_random / (var_random + var_residual)``; the unadjusted one also
    counts the fixed-effect variance in the denominator. The variances are
    those of :func:`r2_nakagawa` (same approximations).

    Parameters
    ----------
    model, X, y, groups, sample_weight, offset, tolerance, null_model
        As in :func:`r2_nakagawa`.

    Returns
    -------
    dict
        ``{"adjusted": float, "unadjusted": float}``; NaN for a singular fit.

    See Also
    --------
    r2_nakagawa : The marginal and conditional R² from the same variances.

    Examples
    --------
    >>> import warnings
    >>> from sklearn_glmm import GaussianLMMRegressor, icc
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> data = load_app_engagement()
    >>> model = GaussianLMMRegressor("(1 | user_id)").fit(
    ...     data[["day_centered"]], data["logins"], groups=data["user_id"])
    >>> {k: round(v, 4) for k, v in icc(model, data[["day_centered"]]).items()}
    {'adjusted': 0.299, 'unadjusted': 0.296}
    """
    v = _variance_components(
        model,
        X,
        y,
        groups,
        sample_weight=sample_weight,
        offset=offset,
        tolerance=tolerance,
        null_model=null_model,
    )
    if v["var_random"] is None:
        _warn_singular("the ICC")
        return {"adjusted": float("nan"), "unadjusted": float("nan")}
    return {
        "adjusted": v["var_random"] / (v["var_random"] + v["var_residual"]),
        "unadjusted": v["var_random"] / (v["var_fixed"] + v["var_random"] + v["var_residual"]),
    }
