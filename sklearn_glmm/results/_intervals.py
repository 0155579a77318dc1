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
factor together); ``order`` (the estimator's ``DesignBuilder.theta_order_``)
maps it to the reported order: reported row ``j`` is engine element
``order[j]``.

- ``"wald"``: ``estimate +- z * SE`` for the fixed effects; variance components
  get NaN, as in lme4 (a Wald interval for an SD is poor near 0).
- ``"profile"``: the profile likelihood (see :mod:`sklearn_glmm._core._profile`).
- ``"bootstrap"``: percentile intervals of ``n_boot`` refits to responses
  simulated from the fitted model with new random effects (lme4's ``bootMer``
  with ``use.u = FALSE``, ``type = "perc"``).
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pandas as pd
from scipy.stats import norm

from .._core._profile import LMMProfileProblem, ProfileProblem, sdcor_from_theta, theta_blocks

__all__ = ["wald_intervals", "profile_intervals", "bootstrap_intervals", "interval_names", "conf_columns"]


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


def _select(names: list[str], parm) -> list[int]:
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
    return table.iloc[_select(names, parm)]


def _engine_positions(n_theta: int, n_beta: int, order, sigma: bool = False) -> np.ndarray:
    """Engine position of each reported parameter (``.sigNN`` rows, ``.sigma``, then beta)."""
    order = np.arange(n_theta) if order is None else np.asarray(order, dtype=int)
    if order.size != n_theta:
        raise ValueError(f"order has {order.size} entries for {n_theta} covariance parameters.")
    n_var = n_theta + int(sigma)
    return np.concatenate([order, np.arange(n_theta, n_var), n_var + np.arange(n_beta)]).astype(int)


def profile_intervals(
    problem, fit, fixef_names: list[str], level: float = 0.95, parm=None, order=None
) -> tuple[pd.DataFrame, dict]:
    """Profile-likelihood intervals and the evaluated profiles.

    Parameters
    ----------
    problem : LaplaceProblem or MultiLevelLaplaceProblem
        The fitted model's problem.
    fit : FitResult
        Its maximum-likelihood fit (theta in the engine's order).
    fixef_names : list of str
    level : float, default=0.95
    parm : str or list of str, default=None
        Rows to compute (all when None).
    order : array-like of int, default=None
        Engine position of each reported covariance parameter (see the
        module docstring); None is the identity.

    Returns
    -------
    table : DataFrame
    profiles : dict of {str: DataFrame}
        Per parameter, the evaluated ``(value, zeta)`` points.

    Notes
    -----
    For a linear mixed model (``problem`` an ``LMMProblem`` or
    ``MultiLevelLMMProblem``, ``fit`` an ``LMMResult``) the rows are lme4's
    for ``lmer``: the SDs on the response scale, ``.sigma``, then the fixed
    effects, profiled on the ML deviance; a REML fit is refitted by ML first,
    as lme4's ``profile`` does (so the intervals surround the ML estimates).
    """
    level = check_level(level)
    lmm = _is_lmm(problem)
    names = interval_names(problem.n_theta, fixef_names, sigma=lmm)
    engine = _engine_positions(problem.n_theta, len(fixef_names), order, sigma=lmm)
    if lmm:
        from .._core._lmm import fit_lmm

        ml = fit_lmm(problem, reml=False) if fit.reml else fit
        prof = LMMProfileProblem(problem, ml.theta, ml.sigma)
    else:
        param = getattr(fit, "param", None)
        prof = ProfileProblem(problem, fit.theta, fit.beta, fit.u, fit.deviance, fit.hessian, param)
    rows, profiles = [], {}
    for k in _select(names, parm):
        iv = prof.interval(int(engine[k]), level)
        rows.append((names[k], iv.lower, iv.upper))
        profiles[names[k]] = pd.DataFrame(iv.path, columns=["value", "zeta"])
    table = pd.DataFrame([r[1:] for r in rows], index=[r[0] for r in rows], columns=conf_columns(level))
    return table, profiles


def _one_bootstrap(problem, fit, seed, sample_response) -> np.ndarray:
    """Simulate a response from the fitted model with new random effects and refit.

    Returns the refit's ``(sdcor, beta)`` in the engine's order.
    """
    from .._core._laplace import LaplaceProblem
    from .._core._optimize import fit_laplace

    rng = np.random.default_rng(seed)
    param = getattr(fit, "param", None)
    family = problem.family if param is None else problem.family_at(param)
    if hasattr(problem, "with_response"):  # several terms: u ~ N(0, I) over all of them
        eta = problem.linear_predictor(fit.theta, fit.beta, rng.standard_normal(problem.layout.size))
        y = sample_response(family, family.link.inverse(eta), problem.weights, rng)
        boot = problem.with_response(y)
    else:
        lam = problem.lambda_(fit.theta)
        b = rng.standard_normal((problem.n_levels, problem.q)) @ lam.T
        eta = problem.offset + fit.beta @ problem.XT + np.einsum("qn,nq->n", problem.ZT, b[problem.codes])
        y = sample_response(family, family.link.inverse(eta), problem.weights, rng)
        boot = LaplaceProblem(
            problem.family, problem.X, y, problem.weights, problem.offset, problem.codes, problem.Z,
            problem.n_levels,
        )
        if getattr(problem, "n_agq", 1) > 1:  # issue 7: refit with the model's own quadrature
            from .._core._agq import AGQProblem

            boot = AGQProblem(boot, problem.n_agq)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit_laplace(boot, compute_hessian=False)
    return np.concatenate([sdcor_from_theta(res.theta, theta_blocks(problem)), res.beta])


def _is_lmm(problem) -> bool:
    """Whether ``problem`` is a linear mixed model (exact likelihood, ``sigma`` estimated)."""
    return hasattr(problem, "simulated")


def _one_lmm_bootstrap(problem, fit, seed) -> np.ndarray:
    """Simulate an LMM response (new random effects and residuals) and refit (REML or ML as the fit).

    Returns ``(sdcor on the response scale, sigma, beta)`` in the engine's order.
    """
    from .._core._lmm import fit_lmm

    boot = problem.simulated(fit.theta, fit.beta, fit.sigma, np.random.default_rng(seed))
    res = fit_lmm(boot, reml=fit.reml)
    blocks = theta_blocks(problem)
    s = sdcor_from_theta(res.theta, blocks)
    s[np.concatenate([rows == cols for _, rows, cols in blocks])] *= res.sigma
    return np.concatenate([s, [res.sigma], res.beta])


def bootstrap_intervals(
    problem,
    fit,
    fixef_names: list[str],
    sample_response,
    level: float = 0.95,
    parm=None,
    n_boot: int = 200,
    random_state=None,
    n_jobs=None,
    progress: bool = False,
    order=None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parametric-bootstrap percentile intervals and the replicates.

    Each replicate has its own seed spawned from ``random_state``, so the
    result does not depend on ``n_jobs``. ``order`` maps the engine's theta to
    the reported rows, as in :func:`profile_intervals`. For a linear mixed
    model the replicates draw new random effects and residuals and are refitted
    by the fit's own criterion (REML or ML), as lme4's ``bootMer``; the rows are
    then the SDs on the response scale, ``.sigma`` and the fixed effects.

    Returns
    -------
    table : DataFrame
    replicates : DataFrame of shape (n_boot, n_params)
    """
    from joblib import Parallel, delayed

    level = check_level(level)
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2; got {n_boot!r}.")
    lmm = _is_lmm(problem)
    names = interval_names(problem.n_theta, fixef_names, sigma=lmm)
    engine = _engine_positions(problem.n_theta, len(fixef_names), order, sigma=lmm)
    selected = _select(names, parm)
    if isinstance(random_state, np.random.RandomState):
        random_state = int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        random_state = int(random_state.integers(0, 2**63 - 1))
    seeds = np.random.SeedSequence(random_state).spawn(n_boot)
    draws = []
    parallel = Parallel(n_jobs=n_jobs, return_as="generator")
    if lmm:
        jobs = (delayed(_one_lmm_bootstrap)(problem, fit, s) for s in seeds)
    else:
        jobs = (delayed(_one_bootstrap)(problem, fit, s, sample_response) for s in seeds)
    for i, draw in enumerate(parallel(jobs), start=1):
        draws.append(draw)
        if progress:
            _progress_bar(i, n_boot)
    replicates = pd.DataFrame(np.vstack(draws)[:, engine], columns=names)
    tail = (1 - level) / 2
    quant = replicates.quantile([tail, 1 - tail]).T
    quant.columns = conf_columns(level)
    return quant.iloc[selected], replicates


def _progress_bar(i: int, total: int, width: int = 30) -> None:
    done = int(width * i / total)
    end = "\n" if i == total else ""
    print(f"\rbootstrap [{'#' * done}{'.' * (width - done)}] {i}/{total}", end=end, file=sys.stderr, flush=True)


# -- model-level entry points (the estimator's methods call these) ------------
CONFINT_METHODS = ("wald", "profile", "bootstrap")


def _mixed_fit(model, what: str):
    """The stored problem (Laplace, or the LMM's) and fit of a mixed model, or a clear error."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model, "fixef_")
    if not model.ranef_:
        raise ValueError(
            f"{what} needs a mixed model: this one was fitted without groups (a plain GLM). "
            "Use method='wald', or refit with groups=."
        )
    problem = getattr(model, "_lmm_problem", None)
    if problem is None:
        problem = getattr(model, "_laplace_problem", None)
    if getattr(model, "fit_summary_", None) is None or problem is None:
        hint = "; use method='wald'" if what.startswith("confint") else ""
        raise NotImplementedError(f"{what} is not available for {type(model).__name__} yet{hint}.")
    return problem, model.fit_summary_


def ranef_condsd(model) -> dict:
    """Conditional SDs of the random effects, shaped like ``model.ranef_``.

    ``sqrt(diag(Lambda A_g^{-1} Lambda^T))`` times the dispersion's square
    root (lme4's ``attr(ranef(m, condVar = TRUE)[[g]], "postVar")``); for a
    ``GaussianLMMRegressor`` ``sigma^2 Lambda A^{-1} Lambda^T`` with ``A`` the
    penalised least-squares matrix at the estimates, as ``lmer``. With several
    factors, the diagonal blocks of ``A^{-1}`` of each factor.
    """
    from .._core._profile import conditional_covariance
    from ._diagnostics import _dispersion

    if not model.ranef_:
        return {}
    problem, fit = _mixed_fit(model, "ranef_condsd_")
    if _is_lmm(problem):  # lmer: sigma^2 Lambda A^{-1} Lambda^T, theta relative to sigma
        covs = problem.conditional_covariances(fit.theta, _dispersion(model))
    else:
        param = getattr(fit, "param", None)
        if hasattr(problem, "conditional_covariances"):  # several grouping factors
            covs = problem.conditional_covariances(fit.theta, fit.beta, fit.u, _dispersion(model), param)
        else:
            covs = [conditional_covariance(problem, fit.theta, fit.beta, fit.u, _dispersion(model), param)]
    out = {}
    for (factor, frame), cov in zip(model.ranef_.items(), covs):
        sd = np.sqrt(np.maximum(np.diagonal(cov, axis1=1, axis2=2), 0.0))
        out[factor] = pd.DataFrame(sd, index=frame.index, columns=frame.columns)
    return out


def confint(
    model,
    method: str = "wald",
    level: float = 0.95,
    parm=None,
    n_boot: int = 200,
    random_state=None,
    n_jobs=None,
    progress: bool = False,
) -> pd.DataFrame:
    """Confidence intervals of a fitted model (see the module docstring).

    The profiles (``"profile"``) or the replicates (``"bootstrap"``) are kept
    in ``table.attrs["profiles"]`` / ``table.attrs["replicates"]``.
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model, "fixef_")
    if method not in CONFINT_METHODS:
        raise ValueError(f"method must be one of {list(CONFINT_METHODS)}; got {method!r}.")
    fixef_names = list(model.fixef_.index)
    n_theta = int(np.size(model.theta_))
    if method == "wald":
        sigma_row = bool(model.ranef_) and getattr(model, "sigma_", None) is not None  # lmer's .sigma
        return wald_intervals(model.fixef_, model.fixef_se_, n_theta, level, parm, sigma_row)
    problem, fit = _mixed_fit(model, f"confint(method={method!r})")
    order = model._builder.theta_order_
    if method == "profile":
        table, profiles = profile_intervals(problem, fit, fixef_names, level, parm, order)
        table.attrs["profiles"] = profiles
        return table
    from ._diagnostics import sample_response

    table, replicates = bootstrap_intervals(
        problem, fit, fixef_names, sample_response, level, parm, n_boot, random_state, n_jobs, progress, order
    )
    table.attrs["replicates"] = replicates
    return table
