"""Shared plumbing of the GLMM estimators: checks, design, the engine call, attributes.

``fit`` validates the inputs, builds the design (:mod:`sklearn_glmm.design`),
asks :func:`sklearn_glmm._core.build_problem` for the model's problem -- the one
place the engine is chosen, from the estimator's :meth:`_BaseGLMM._engine_options`
-- and copies the solver's record to trailing-underscore attributes. A fitted
estimator keeps estimates only, nothing that grows with the number of rows;
the methods that need the data again (:mod:`sklearn_glmm._inference`) take it
as arguments. The engine never sees scikit-learn or pandas.

Subclasses differ in :meth:`_get_family` and a few hooks: the response's
encoding (the classifier), the design (zero inflation), the engine options,
the fit without groups and the attributes set from the solver's record.
"""

from __future__ import annotations

import warnings
from itertools import pairwise
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from ._core import CoreTerm, FitResult, ShardRunner, build_problem, fit, fit_glm_ml, make_controls
from ._core._agq import MAX_AGQ
from ._dask import dask_aware, fit_dask, is_dask_collection, score_dask
from ._inference import _InferenceMixin
from ._lme4_api import _Lme4API
from .design import DesignBuilder, parse_random_effects
from .design._formula import prepare_formula_fit
from .families import Family
from .results import GLMMSummary, coefficient_table
from .results._summary import RESIDUAL_QUANTILES
from .results._varcorr import VARCORR_COLUMNS, varcorr_table_bars
from .utils._param_validation import Interval, StrOptions, validate_data
from .utils._threads import single_blas_thread
from .utils._validation import (
    EXACT_FIT_NOTE,
    UNBOUNDED_NOTE,
    check_finite_information,
    check_fit_data,
    check_numeric_inputs,
    effective_threads,
    separated_groups_note,
    theta_at_upper_bound,
    warn_about_fallbacks,
    warn_about_fit,
    warn_if_singular,
    warn_unbounded_variance,
)

__all__ = ["_BaseGLMM", "_LaplaceGLMM", "NoGroupsWarning"]


def _check_vector(name: str, value, n_samples: int) -> np.ndarray:
    """A finite float vector of length n_samples, or a clear error naming it."""
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be numeric; got {type(value).__name__} ({exc}).") from None
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional; got shape {array.shape}.")
    if array.shape[0] != n_samples:
        raise ValueError(f"{name} has {array.shape[0]} entries but X has {n_samples} rows.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinity; remove or impute those rows.")
    return array


def _empty_frame_to_array(X):
    """A DataFrame with no columns (intercept-only model) as an (n, 0) array.

    scikit-learn's ``check_array`` cannot infer a dtype from zero columns.
    """
    if isinstance(X, pd.DataFrame) and X.shape[1] == 0:
        return np.empty((X.shape[0], 0))
    return X


def inverse_information(info: np.ndarray, stacklevel: int = 4) -> np.ndarray:
    """Inverse of a Fisher information, with a warning when it is singular.

    A singular information means some fixed effects are not identified, most
    often complete separation in binary data (estimates run to +-infinity);
    the pseudo-inverse keeps the fit usable and the warning says why the
    standard errors mean little.
    """
    check_finite_information(info)  # a fit that left the family's domain: say so, not LinAlgError
    scale = np.sqrt(np.abs(np.diag(info)))
    scale = np.where(scale > 0, scale, 1.0)
    scaled = info / np.outer(scale, scale)
    if np.linalg.cond(scaled) < 1e12:
        return np.linalg.inv(info)
    warnings.warn(
        "The information matrix of the fixed effects is singular: some fixed effects "
        "are not identified (complete separation in binary data, or a predictor that "
        "is constant within the data). Their estimates and standard errors are "
        "unreliable; drop or merge the offending predictors.",
        UserWarning,
        stacklevel=stacklevel,
    )
    return np.linalg.pinv(info)


def scaled_inverse(H: np.ndarray) -> np.ndarray:
    """``H^{-1}`` computed on ``D^{-1} H D^{-1}`` with ``D = sqrt|diag H|``.

    The deviance's Hessian in (theta, beta) mixes scales (an intercept of
    counts near 1e7 has a curvature 1e7 times a variance's): equilibrating
    first keeps the inverse's rounding error at the level of the
    correlations, so a positive definite Hessian gives positive variances.
    """
    d = np.sqrt(np.abs(np.diag(H)))
    d = np.where(d > 0, d, 1.0)
    return np.linalg.inv(H / np.outer(d, d)) / np.outer(d, d)


def core_terms(terms) -> list[CoreTerm]:
    """The design's random-effect terms as the engine takes them."""
    return [CoreTerm(t.codes, t.Z, t.n_levels, *t.theta_rows_cols) for t in terms]


def split_theta(terms, theta: np.ndarray) -> list[np.ndarray]:
    """The engine's theta (terms in design order) cut into one piece per term."""
    bounds = np.cumsum([0] + [t.n_theta for t in terms])
    return [theta[a:b] for a, b in pairwise(bounds)]


class NoGroupsWarning(UserWarning):
    """A model with random effects was fitted without any grouping factor."""


class _BaseGLMM(_Lme4API, _InferenceMixin, BaseEstimator):
    """Base class of every mixed-model estimator (not public).

    Parameters common to all estimators; :class:`_LaplaceGLMM` adds those of
    the Laplace engine (``se_method``, ``n_agq``, ``tol``).
    """

    _parameter_constraints: ClassVar[dict] = {
        "random_effects": [str],
        "fixed_effects": [None, list],
        "group_column": [None, str, Integral, list],
        "new_groups": [StrOptions({"population", "marginal", "error"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "solver_options": [None, dict],
        "n_jobs": [None, Integral],
        "verbose": ["verbose"],
    }

    # Metadata routing (sklearn.set_config(enable_metadata_routing=True)):
    # ``groups`` is requested by fit, predict and score by default, so that
    # GridSearchCV(est, grid, cv=GroupKFold()).fit(X, y, groups=g) hands the
    # groups to both the splitter and the estimator with no set_*_request call.
    __metadata_request__fit: ClassVar[dict] = {"groups": True}
    __metadata_request__predict: ClassVar[dict] = {"groups": True}
    __metadata_request__score: ClassVar[dict] = {"groups": True}

    def __init__(
        self,
        random_effects="1",
        *,
        fixed_effects=None,
        group_column=None,
        new_groups="population",
        max_iter=500,
        solver_options=None,
        n_jobs=None,
        verbose=0,
    ):
        self.random_effects = random_effects
        self.fixed_effects = fixed_effects
        self.group_column = group_column
        self.new_groups = new_groups
        self.max_iter = max_iter
        self.solver_options = solver_options
        self.n_jobs = n_jobs
        self.verbose = verbose

    # -- hooks ----------------------------------------------------------------
    def _get_family(self) -> Family:  # pragma: no cover - abstract
        raise NotImplementedError

    def _prepare_y(self, y: np.ndarray) -> np.ndarray:
        """The response as the family sees it (the classifier encodes labels here)."""
        y = np.asarray(y, dtype=np.float64)
        self._family_.check_response(y)
        return y

    def _check_weighted_y(self, y: np.ndarray, w: np.ndarray) -> None:
        """Checks that need the weights (the classifier's two classes)."""

    def _design_builder(self) -> DesignBuilder:
        """The builder of this model's design (the zero-inflated model adds its own columns)."""
        return DesignBuilder(self.random_effects, self.fixed_effects)

    def _engine_options(self, design) -> dict:
        """Keyword arguments of :func:`~sklearn_glmm._core.build_problem` for this model."""
        return {}

    def _controls_overrides(self) -> dict:
        """Estimator parameters that set solver controls."""
        return {"max_iter": self.max_iter}

    def _set_param_attributes(self, family: Family) -> None:
        """Public attributes for the family's extra parameter (NB size, ...)."""

    def _n_parameters(self) -> int:
        """Estimated parameters (AIC, BIC)."""
        return self.fixef_.size + self.theta_.size + int(self._family_.has_param)

    #: whether y must be numeric (the classifier takes labels)
    _y_numeric = True

    #: whether the model fits data held in partitions (Dask DataFrames; ``sklearn_glmm._partitioned_fit``)
    _fits_partitioned = True

    #: whether the model is a linear mixed model fitted by REML (its data checks)
    _uses_reml = False

    #: the scale of the random effects relative to ``Lambda Lambda^T`` (sigma for the LMM)
    def _random_effect_scale(self) -> float:
        return 1.0

    #: the Wald ratio's name in the summary: "z" (GLMM) or "t" (LMM, no p-values)
    _wald_statistic = "z"

    def _method_description(self, mixed: bool) -> str:
        if mixed:
            return "Generalized linear mixed model fit by maximum likelihood (Laplace Approximation)"
        return "Generalized linear model fit by maximum likelihood (no groups given)"

    # -- input checks ---------------------------------------------------------
    def _feature_names(self) -> list[str]:
        if hasattr(self, "feature_names_in_"):
            return [str(c) for c in self.feature_names_in_]
        return [f"x{j}" for j in range(self.n_features_in_)]

    def _check_sample_weight(self, sample_weight, n_samples) -> np.ndarray:
        if sample_weight is None:
            # unit weights as a read-only broadcast of one scalar: no per-row
            # memory (a view of stride 0; any attempt to write to it raises)
            return np.broadcast_to(np.float64(1.0), (n_samples,))
        w = _check_vector("sample_weight", sample_weight, n_samples)
        if np.any(w < 0):
            raise ValueError("sample_weight must be non-negative; found negative weights.")
        if not np.any(w > 0):
            raise ValueError("sample_weight is zero for every row; at least one row needs a positive weight.")
        return w

    def _check_offset(self, offset, n_samples) -> np.ndarray:
        return np.zeros(n_samples) if offset is None else _check_vector("offset", offset, n_samples)

    def _check_y(self, y, n_samples) -> np.ndarray:
        y = _check_vector("y", y, n_samples)
        self._family_.check_response(y)
        return y

    def _controls(self):
        return make_controls(self.solver_options, **self._controls_overrides())

    # -- fit ------------------------------------------------------------------
    def fit(self, X, y, groups=None, sample_weight=None, offset=None):
        """Fit the model by maximum likelihood (the Laplace approximation, quadrature or the exact LMM).

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
            Fixed-effects covariates (an intercept is added). May have zero
            columns for an intercept-only fixed part. Random-slope terms name
            its columns.
        y : array-like of shape (n_samples,)
            Response.
        groups : array-like, Series or DataFrame of shape (n_samples,) or (n_samples, n_factors), default=None
            Grouping factor (e.g. user id); for several factors a DataFrame
            whose columns are named as in ``random_effects``. ``None`` fits the
            plain GLM.
        sample_weight : array-like of shape (n_samples,), default=None
            Prior weights (non-negative).
        offset : array-like of shape (n_samples,), default=None
            Known part of the linear predictor, e.g. ``log(exposure)``.

        Returns
        -------
        self : object
            The fitted estimator.

        See Also
        --------
        predict : Mean responses with the random effects of known groups.
        summary : The lme4-style report of the fit.
        from_formula : Fit from an lme4 formula and a DataFrame.

        Examples
        --------
        >>> from sklearn_glmm import PoissonGLMMRegressor
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> data = load_app_engagement()
        >>> X, y, g = data[["day_centered"]], data["logins"], data["user_id"]
        >>> model = PoissonGLMMRegressor("(1 + day_centered | user_id)").fit(X, y, groups=g)
        >>> model.converged_, model.n_groups_
        (True, {'user_id': 50})
        >>> model.fixef_.round(4).tolist()
        [0.7355, -0.0099]
        """
        # The engine's BLAS calls are matrix-vector products over the rows, which
        # are memory-bound: extra BLAS threads only add synchronisation (10x
        # slower dot products on a busy 2-core machine), so the whole fit runs
        # them on one thread; the last fit running restores the process's setting
        # (utils._threads: concurrent fits in threads leave it as they found it).
        with single_blas_thread():
            self._validate_params()
            parse_random_effects(self.random_effects)  # fail early on a bad spec
            if is_dask_collection(X):
                return fit_dask(self, X, y, groups, sample_weight, offset)
            self._clear_formula()  # a formula fit sets formula_ again after this fit
            controls = self._controls()
            X, groups = self._split_group_column(X, groups)
            if groups is None:
                warnings.warn(
                    f"{type(self).__name__} was fitted without groups, so its random effects "
                    f"({self.random_effects!r}) were dropped and it is a plain GLM. Pass "
                    "fit(X, y, groups=...); inside a Pipeline or a search, either set "
                    "group_column='<column of X>' or enable metadata routing "
                    "(sklearn.set_config(enable_metadata_routing=True)) and pass groups to "
                    "the meta-estimator's fit.",
                    NoGroupsWarning,
                    stacklevel=2,
                )
            self._family_ = self._get_family()
            y_name = str(y.name) if isinstance(y, pd.Series) and y.name is not None else "y"
            check_numeric_inputs(X, y, y_numeric=self._y_numeric)  # names the column; sklearn does not
            X, y = validate_data(
                self,
                _empty_frame_to_array(X),
                y,
                reset=True,
                dtype=np.float64,
                ensure_min_features=0,
                y_numeric=self._y_numeric,
            )
            n = X.shape[0]
            y = self._prepare_y(y)
            w = self._check_sample_weight(sample_weight, n)
            self._check_weighted_y(y, w)
            off = self._check_offset(offset, n)

            self._builder = self._design_builder()
            design = self._builder.fit(X, self._feature_names(), groups, w)
            del X  # the design holds its own column-major copy; free the validated one before the fit
            check_fit_data(type(self).__name__, self._family_, self._uses_reml, design, y, w)
            if self._builder.dropped_:
                warnings.warn(
                    f"Fixed-effect column(s) {self._builder.dropped_} are linearly dependent on "
                    "earlier columns (constant, duplicated or collinear) and were dropped, as "
                    "lme4 does; their coefficients are reported as 0.",
                    UserWarning,
                    stacklevel=2,
                )
            self.n_obs_ = int(np.sum(w > 0))
            self.response_summary_ = {
                "name": y_name,
                "n_obs": self.n_obs_,
                "sum": float(np.dot(w, y)),
                "sum_sq": float(np.dot(w, y * y)),
            }
            if not design.terms:
                self._fit_without_groups(design, y, w, off, controls)
            else:
                self._fit_mixed(design, y, w, off, controls)
            fitted = self._fitted_mu(design, off)
            residuals = self._pearson_residuals(y, fitted, w)
            self._finish_fit(
                bool(design.terms), self._fitted_means(fitted, w), np.quantile(residuals, RESIDUAL_QUANTILES)
            )
            if design.terms and UNBOUNDED_NOTE not in self.fit_summary_.notes:  # at the bound: warned already
                note = separated_groups_note(self._family_.name, design.terms, y, w, self._re_cov)
                if note is not None:
                    self.fit_summary_.notes.append(note)
            return self

    def _finish_fit(self, mixed: bool, fitted_means: np.ndarray, residual_quantiles: np.ndarray) -> None:
        """The last steps of every fit: the family's attributes, lme4's warnings, criteria.

        ``fitted_means`` are those of the rows with positive weight (or their
        extremes: only those decide the warning), ``residual_quantiles`` the
        Pearson residuals' quantiles at ``RESIDUAL_QUANTILES``.
        """
        self._set_param_attributes(self._family_)
        if mixed:
            warn_if_singular(
                self.fit_summary_.at_boundary[self._builder.theta_order_], self._builder.report_bars_
            )
        warn_about_fit(self._family_, fitted_means)
        self._set_criteria()
        self._residual_quantiles = np.asarray(residual_quantiles, dtype=float)

    def _problem(self, design, y, w, off, controls, runner: ShardRunner | None = None):
        """The engine's problem for this model on these data (its shards run on ``runner``)."""
        return build_problem(
            self._family_,
            design.X,
            y,
            w,
            off,
            core_terms(design.terms),
            controls,
            runner=runner,
            **self._engine_options(design),
        )

    def _fit_mixed(self, design, y, w, off, controls) -> None:
        with ShardRunner(effective_threads(self.n_jobs)) as runner:
            problem = self._problem(design, y, w, off, controls, runner)
            self._solve_and_adopt(problem, design.terms)

    def _solve_and_adopt(self, problem, terms) -> None:
        """Solve ``problem`` and set the fitted attributes (``terms``: the design's, rows not needed)."""
        result = self._solve(problem)
        unbounded = theta_at_upper_bound(
            result.theta, problem.theta_scale, problem.theta_diagonal, result.controls
        )
        if np.any(unbounded):
            # the optimiser stopped at its own bound on theta, not at a maximum
            result.converged = False
            result.notes.append(UNBOUNDED_NOTE)
        self._set_result_attributes(problem, result, terms)
        self.fit_summary_ = result
        exact = any(note.startswith(EXACT_FIT_NOTE) for note in result.notes)  # warned about by the LMM
        if np.any(unbounded) and not exact:
            warn_unbounded_variance(
                unbounded[self._builder.theta_order_],
                self._builder.report_bars_,
                self._family_.name,
                ConvergenceWarning,
            )
        warn_about_fallbacks(result.notes)
        covs = result.conditional_covariances
        self.ranef_condsd_ = {
            factor: pd.DataFrame(
                np.sqrt(np.maximum(np.diagonal(cov, axis1=1, axis2=2), 0.0)),
                index=frame.index,
                columns=frame.columns,
            )
            for (factor, frame), cov in zip(self.ranef_.items(), covs)
        }
        if not result.converged and not np.any(unbounded) and not exact:
            warnings.warn(
                f"The fit did not converge ({result.message}). Try rescaling "
                "the covariates, simplifying random_effects (e.g. '1' instead of a "
                "random slope) or raising max_iter.",
                ConvergenceWarning,
                stacklevel=4,
            )

    def _solve(self, problem) -> FitResult:
        return fit(problem, verbose=self.verbose)

    def _set_result_attributes(
        self, problem, result: FitResult, terms
    ) -> None:  # pragma: no cover - abstract
        """Attributes from the solver's record."""
        raise NotImplementedError

    def _fit_without_groups(self, design, y, w, off, controls) -> None:
        """The model without random effects (the plain GLM)."""
        Xd = design.X
        glm, self._family_ = fit_glm_ml(self._family_, Xd, y, w, off, controls)
        self._warn_about_glm(glm)
        eta = off + Xd @ glm.coef
        irls = self._family_.irls_quantities(y, eta, w)
        vcov = inverse_information(Xd.T @ (Xd * irls.weights[:, None]))
        self._set_fixed(glm.coef, vcov)
        self._set_no_random_effects()
        self.loglik_ = self._family_.loglik(y, irls.mu, w)
        self.n_iter_ = glm.n_iter
        self.converged_ = bool(glm.converged)
        self._se_method_used = "GLM Fisher information"

    @staticmethod
    def _warn_about_glm(glm) -> None:
        """The plain GLM's fallbacks and failures, as warnings (``converged_`` records the latter)."""
        if glm.converged:
            warn_about_fallbacks([f"GLM: {note}" for note in glm.notes])
            return
        warnings.warn(
            f"The GLM fit (no groups) did not converge ({'; '.join(glm.notes) or 'no reason recorded'}). "
            "Try rescaling the covariates or dropping collinear ones.",
            ConvergenceWarning,
            stacklevel=4,
        )

    def _set_no_random_effects(self) -> None:
        self.theta_ = np.empty(0)
        self.ranef_ = {}
        self.ranef_condsd_ = {}
        self.varcorr_ = pd.DataFrame(columns=VARCORR_COLUMNS)
        self.group_levels_ = {}
        self._b = self._re_cov = None
        self.singular_ = False
        self.fit_summary_ = None

    def _set_random_attributes(self, terms, theta, b, scale: float = 1.0, sigma: float | None = None) -> None:
        """``theta_``, ``ranef_``, ``varcorr_``, ``group_levels_`` and the covariances for prediction.

        ``theta`` is the engine's (terms in design order); ``theta_`` and
        ``varcorr_`` are in lme4's order (see ``DesignBuilder.theta_order_``).
        """
        self._b = list(b)
        # Sigma_k of each factor, for marginal predictions of new levels
        self._re_cov = [
            scale * (lam @ lam.T)
            for lam in (t.lambda_(th) for t, th in zip(terms, split_theta(terms, theta)))
        ]
        levels = self._builder.levels_
        self.group_levels_ = {t.factor: levels[t.factor] for t in terms}
        self.ranef_ = {
            t.factor: pd.DataFrame(bk, index=levels[t.factor].rename(t.factor), columns=t.term_names)
            for t, bk in zip(terms, self._b)
        }
        self.theta_ = np.asarray(theta)[self._builder.theta_order_]
        self.varcorr_ = varcorr_table_bars(
            [(group, names, self.theta_[sl]) for group, names, sl in self._builder.report_bars_], scale, sigma
        )

    def _set_fixed(self, beta, vcov) -> None:
        names = self._builder.fixef_names_
        self.fixef_ = pd.Series(beta, index=names, name="fixef")
        # scikit-learn mirrors: every column of X gets a coefficient (0 if dropped)
        full = np.zeros(self._builder.keep_.size)
        full[self._builder.keep_] = beta
        self.intercept_ = float(full[0])
        self.coef_ = full[1:]
        self.vcov_ = pd.DataFrame(vcov, index=names, columns=names)
        self.fixef_se_ = pd.Series(np.sqrt(np.diag(vcov)), index=names, name="se")

    def _set_criteria(self) -> None:
        n_params = self._n_parameters()
        self.deviance_ = -2.0 * self.loglik_
        self.aic_ = self.deviance_ + 2.0 * n_params
        self.bic_ = self.deviance_ + np.log(self.n_obs_) * n_params
        self.df_resid_ = self.n_obs_ - n_params

    # -- predict --------------------------------------------------------------
    def _fitted_mu(self, design, offset) -> np.ndarray:
        return self._family_.link.inverse(self._linear_predictor(design, offset))

    def _fitted_means(self, fitted: np.ndarray, w: np.ndarray) -> np.ndarray:
        """The means in ``fitted`` (from :meth:`_fitted_mu`) of the rows with positive weight."""
        return fitted[w > 0]

    def _linear_predictor(self, design, offset) -> np.ndarray:
        eta = design.X @ self.fixef_.to_numpy()
        if offset is not None:
            eta = eta + offset
        if self._b is not None:
            for term, b in zip(design.terms, self._b):
                eta = eta + term.linear_predictor(b)
        return eta

    def _split_group_column(self, X, groups):
        """Take the grouping factor out of X when ``group_column`` names it."""
        if self.group_column is None:
            return X, groups
        if groups is not None:
            raise ValueError(
                f"groups was passed although group_column={self.group_column!r} takes the "
                "grouping factor from X; use one or the other."
            )
        several = isinstance(self.group_column, list)
        columns = self.group_column if several else [self.group_column]
        if not columns:
            raise ValueError("group_column is an empty list; name at least one grouping column.")
        flags = [c for c in columns if isinstance(c, (bool, np.bool_))]
        if flags:
            # True == 1 in Python: a flag would silently pick the column at position (or named) 1
            raise TypeError(
                f"group_column={self.group_column!r} holds a boolean; give the grouping column's name "
                "(a DataFrame column) or its integer position, e.g. group_column='user_id'."
            )
        if isinstance(X, pd.DataFrame):
            missing = [c for c in columns if c not in X.columns]
            if missing:
                raise ValueError(
                    f"group_column={missing[0]!r} is not a column of X; X has columns {list(X.columns)}."
                )
            return X.drop(columns=columns), (X[columns] if several else X[columns[0]])
        if several:
            raise TypeError(
                f"group_column={self.group_column!r} lists several columns; pass X as a DataFrame "
                "so that the grouping columns are found by name."
            )
        column = columns[0]
        if not isinstance(column, Integral):
            raise TypeError(
                f"group_column={column!r} names a column, but X is not a DataFrame; pass a "
                "DataFrame or give the column's integer position."
            )
        array = np.asarray(X, dtype=object)
        if array.ndim != 2 or not -array.shape[1] <= column < array.shape[1]:
            raise ValueError(f"group_column={column} is not a column position of X with shape {array.shape}.")
        return np.delete(array, column, axis=1), array[:, column]

    def _design_for(self, X, groups):
        check_is_fitted(self, "fixef_")
        X, groups = self._split_group_column(X, groups)
        check_numeric_inputs(X)
        X = validate_data(
            self, _empty_frame_to_array(X), reset=False, dtype=np.float64, ensure_min_features=0
        )
        design = self._builder.transform(X, groups)
        new = np.zeros(X.shape[0], dtype=bool)
        for term in design.terms:
            new |= term.codes < 0
        if self.new_groups == "error" and np.any(new):
            unseen = np.flatnonzero(new)
            raise ValueError(
                f"{unseen.size} row(s) belong to groups not seen in fit (or no groups were "
                "given), and new_groups='error'. Use new_groups='population' or 'marginal' "
                "to predict for new groups."
            )
        return design, X.shape[0]

    def _mean(self, design, offset) -> np.ndarray:
        """Mean response; new groups follow the ``new_groups`` policy."""
        eta = self._linear_predictor(design, offset)
        link = self._family_.link
        mu = link.inverse(eta)
        if self.new_groups == "marginal" and self._b is not None:
            # E[g^-1(eta + sum_k z_k^T b_k)] over the random effects of the
            # factors whose level is new in each row: a normal of variance
            # sum over those factors of z_k^T Sigma_k z_k
            var = np.zeros(eta.shape[0])
            for term, cov in zip(design.terms, self._re_cov):
                new = term.codes < 0
                if np.any(new):
                    Z = term.Z[new]
                    var[new] += np.einsum("ij,jk,ik->i", Z, cov, Z)
            new = var > 0
            if np.any(new):
                mu[new] = link.marginal_mean(eta[new], var[new])
        return mu

    @dask_aware
    def predict(self, X=None, groups=None, offset=None, kind="mean"):
        """Predicted mean response, including the random effects of known groups.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), default=None
            For a formula-fitted model also a raw data frame (R's ``newdata``),
            or None for the rows of the fit.
        groups : array-like or DataFrame, default=None
            Group labels (one column per factor). Rows of groups seen in fit
            use their conditional modes; with several factors each factor
            counts on its own. Rows of new groups, and all rows when ``groups`` is None,
            follow ``new_groups``: population-level predictions (random
            effects 0), the mean over the random-effect distribution
            (``"marginal"``), or an error.
        offset : array-like of shape (n_samples,), default=None
        kind : {"mean", "link"}, default="mean"
            The mean response, or the linear predictor (lme4's ``type =
            "link"``: the random effects of known groups, 0 for new ones).

        Returns
        -------
        ndarray of shape (n_samples,)
            The predictions; for a raw data frame with missing values, NaN in
            their rows (R's ``na.pass``).

        See Also
        --------
        fitted : The predictions for the rows of a formula fit (lme4's ``fitted``).
        score : D^2 of these predictions.
        simulate : Responses drawn from the fitted model.

        Examples
        --------
        >>> from sklearn_glmm import PoissonGLMMRegressor
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> data = load_app_engagement()
        >>> X, y, g = data[["day_centered"]], data["logins"], data["user_id"]
        >>> model = PoissonGLMMRegressor("(1 | user_id)").fit(X, y, groups=g)

        User 1's first two days, with its random effect, then for a new user
        (random effect 0, lme4's ``re.form = NA``), then on the link scale:

        >>> model.predict(X.iloc[:2], groups=g.iloc[:2]).round(4)
        array([3.631 , 3.5981])
        >>> model.predict(X.iloc[:2]).round(4)
        array([2.3867, 2.365 ])
        >>> model.predict(X.iloc[:2], groups=g.iloc[:2], kind="link").round(4)
        array([1.2895, 1.2804])
        """
        return self._predict_on_scale(X, groups, offset, kind)

    @staticmethod
    def _offset_or_none(offset, n_samples):
        return None if offset is None else _check_vector("offset", offset, n_samples)

    def score(self, X=None, y=None, groups=None, sample_weight=None, offset=None):
        """D^2, the fraction of deviance explained (as ``PoissonRegressor.score``).

        ``1 - D(y, predict(X, groups)) / D(y, weighted mean of y)``, with the
        family's deviance. The best score is 1.0; it can be negative. Rows of
        groups not seen in fit are predicted as ``new_groups`` says, so under
        ``GroupKFold`` the score measures population-level (or marginal)
        prediction.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), default=None
            As in ``predict``; a formula-fitted model also takes a raw data
            frame with the response column, or None for the rows of its fit.
        y : array-like of shape (n_samples,), default=None
            Observed responses (required unless a formula-fitted model's data
            frame holds them).
        groups : array-like or DataFrame, default=None
            Group labels, as in ``predict``.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the deviance (and of the mean of the null model).
        offset : array-like of shape (n_samples,), default=None
            Known part of the linear predictor, as in ``fit``.

        Returns
        -------
        float
            D^2. For a constant ``y`` (null deviance 0) 1.0 when the
            predictions are exact and 0.0 otherwise, as scikit-learn's
            ``r2_score``.

        See Also
        --------
        predict : The predictions that are scored.
        residuals : Per-row (deviance, Pearson, response) residuals.
        sklearn.metrics.d2_tweedie_score : The same statistic for Tweedie families.

        Examples
        --------
        >>> from sklearn_glmm import PoissonGLMMRegressor
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> data = load_app_engagement()
        >>> X, y, g = data[["day_centered"]], data["logins"], data["user_id"]
        >>> model = PoissonGLMMRegressor("(1 | user_id)").fit(X, y, groups=g)
        >>> round(model.score(X, y, groups=g), 4)   # known users, with their random effects
        0.2922
        >>> round(model.score(X, y), 4)             # every user as a new one (random effect 0)
        -0.0026
        """
        if is_dask_collection(X):
            return score_dask(self, X, y, groups, sample_weight, offset)
        X, y, groups, sample_weight, offset, _ = self._lme4_data(
            X, y, groups, sample_weight, offset, need_y=True
        )
        sums = self._score_sums(X, y, groups, sample_weight, offset)
        return self._score_from_sums([sums], lambda mean: [self._null_deviance(X, y, sample_weight, mean)])

    # score as sums over rows, so that data held in partitions add up (sklearn_glmm._dask)
    def _score_sums(self, X, y, groups, sample_weight, offset) -> tuple[float, float, float]:
        """The model's deviance, the weights' sum and the weighted response's sum on these rows."""
        design, n = self._design_for(X, groups)
        y = self._check_y(y, n)
        w = self._check_sample_weight(sample_weight, n)
        mu = self._mean(design, self._offset_or_none(offset, n))
        return float(self._family_.deviance(y, mu, w)), float(np.sum(w)), float(np.dot(w, y))

    def _null_deviance(self, X, y, sample_weight, mean: float) -> float:
        """The deviance of the constant prediction ``mean`` on these rows."""
        n = len(y)
        y = self._check_y(y, n)
        return float(self._family_.deviance(y, np.full(n, mean), self._check_sample_weight(sample_weight, n)))

    def _score_from_sums(self, sums: list, null_deviances) -> float:
        """D^2 from the parts' :meth:`_score_sums` (``null_deviances(mean)``: the parts' null deviances)."""
        dev = sum(s[0] for s in sums)
        null = sum(null_deviances(sum(s[2] for s in sums) / sum(s[1] for s in sums)))
        if null > 1e-12 * dev and null > 0:
            return float(1.0 - dev / null)
        # a constant y (its null deviance 0, or rounding next to the model's):
        # scikit-learn's convention (r2_score with force_finite=True): 1 for a
        # perfect prediction, 0 otherwise
        return 1.0 if dev <= 0 else 0.0

    # -- report ---------------------------------------------------------------
    def _pearson_residuals(self, y, mu, w) -> np.ndarray:
        return self._family_.pearson_residuals(y, mu, w)

    def summary(self) -> GLMMSummary:
        """An lme4-style summary of the fit; ``print(model.summary())`` shows it.

        Returns
        -------
        GLMMSummary
            Its ``str()`` is lme4's ``summary(m)`` report (fit statistics,
            scaled residuals, random effects, fixed effects with standard
            errors and Wald tests, their correlations); its fields hold the
            tables as DataFrames. Notebooks render it as HTML.

        See Also
        --------
        confint : Confidence intervals (Wald, profile, bootstrap).
        sklearn_glmm.compare_models : Likelihood-ratio tests between fits (R's ``anova``).

        Examples
        --------
        >>> from sklearn_glmm import PoissonGLMMRegressor
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> data = load_app_engagement()
        >>> model = PoissonGLMMRegressor("(1 | user_id)").fit(
        ...     data[["day_centered"]], data["logins"], groups=data["user_id"])
        >>> print(model.summary())  # doctest: +ELLIPSIS
        Generalized linear mixed model fit by maximum likelihood (Laplace Approximation)
         Family: poisson  ( log )
        Formula: logins ~ day_centered + (1 | user_id)
        ...
        >>> model.summary().coefficients.round(4)
                      Estimate  Std. Error  z value  Pr(>|z|)
        (Intercept)     0.7379      0.0641  11.5180       0.0
        day_centered   -0.0091      0.0020  -4.6137       0.0
        """
        check_is_fitted(self, "fixef_")
        coefs = coefficient_table(self.fixef_, self.vcov_.to_numpy(), self._wald_statistic)
        se = np.sqrt(np.diag(self.vcov_.to_numpy()))
        corr = self.vcov_.to_numpy() / np.outer(se, se)
        names = list(self.fixef_.index)
        stats = pd.Series(
            [self.aic_, self.bic_, self.loglik_, self.deviance_, self.df_resid_],
            index=["AIC", "BIC", "logLik", "deviance", "df.resid"],
        )
        messages = []
        if self.singular_:
            messages.append("boundary (singular) fit: a random-effect variance is (close to) 0")
        if not self.converged_ and self.fit_summary_ is not None:
            messages.append(f"convergence warning: {self.fit_summary_.message}")
        mixed = bool(self.ranef_)
        family, link = self._summary_family()
        return GLMMSummary(
            family=family,
            link=link,
            formula=self._builder.formula(self.response_summary_["name"]),
            method=self._method_description(mixed),
            coefficients=coefs,
            correlation=pd.DataFrame(corr, index=names, columns=names),
            varcorr=self.varcorr_,
            fit_statistics=stats,
            residual_quantiles=pd.Series(
                self._residual_quantiles, index=["Min", "1Q", "Median", "3Q", "Max"]
            ),
            n_obs=self.n_obs_,
            n_groups={k: len(v) for k, v in self.group_levels_.items()},
            se_method=self._se_method_used,
            messages=messages,
            extra=self._summary_extra(),
        )

    def _summary_family(self) -> tuple[str, str]:
        return self._family_.name, self._family_.link.name

    def _summary_extra(self) -> dict:
        family = self._family_
        if family.has_param and family.param_name != "sigma2":
            return {f"{family.param_name} (estimated)": f"{family.param:.6g}"}
        return {}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        family = self._get_family()
        try:
            family.check_response(np.array([-1.0]))
        except ValueError:
            tags.target_tags.positive_only = True
        return tags

    @classmethod
    def from_formula(cls, formula, data, *, weights=None, offset=None, **params):
        """Fit from an lme4 formula and a DataFrame, as R's ``glmer(formula, data)``.

        Parameters
        ----------
        formula : str
            lme4 syntax, e.g. ``"logins ~ day_centered + (day_centered | user_id)"``.
        data : DataFrame
        weights, offset : array-like or str, default=None
            Prior weights and offset: arrays with one value per row of
            ``data``, or column names.
        **params
            Estimator parameters; ``random_effects`` (and ``fixed_effects``)
            come from the formula unless given.

        Returns
        -------
        fitted estimator
            With ``formula_`` set: ``predict``, ``score``, ``residuals`` and
            ``simulate`` take a raw data frame, or no data for the rows of the
            fit (``m.fitted()``). The data frame is referenced, not copied, and
            never pickled.

        See Also
        --------
        sklearn_glmm.glmer : The same with the family named by a string, as R's ``glmer``.
        sklearn_glmm.update : Refit with a changed formula (R's ``update``).
        fit : The scikit-learn way, from ``X``, ``y`` and ``groups``.

        Examples
        --------
        >>> from sklearn_glmm import PoissonGLMMRegressor
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> model = PoissonGLMMRegressor.from_formula("logins ~ day_centered + (1 | user_id)",
        ...                                           load_app_engagement())
        >>> model.fixef_.round(4).tolist()
        [0.7379, -0.0091]
        """
        spec, inputs, random_effects, fixed_effects, weights_array, offset_array = prepare_formula_fit(
            formula, data, weights, offset
        )
        if random_effects is not None:
            params.setdefault("random_effects", random_effects)
        if fixed_effects is not None:
            params.setdefault("fixed_effects", fixed_effects)
        model = cls(**params)
        fit_kw = {
            k: v
            for k, v in (("sample_weight", inputs.sample_weight), ("offset", inputs.offset))
            if v is not None
        }
        model.fit(inputs.X, inputs.y, groups=inputs.groups, **fit_kw)
        # the data frame is kept by reference for R-style calls without data; never pickled
        model._keep_formula(spec, data, weights_array, offset_array)
        return model


class _LaplaceGLMM(_BaseGLMM):
    """Base class of the GLMM estimators fitted by the Laplace engine (not public)."""

    _parameter_constraints: ClassVar[dict] = {
        **_BaseGLMM._parameter_constraints,
        "se_method": [StrOptions({"hessian", "pirls"})],
        "n_agq": [Interval(Integral, 1, MAX_AGQ, closed="both")],
        "tol": [Interval(Real, 0.0, None, closed="neither")],
    }

    def __init__(
        self,
        random_effects="1",
        *,
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
            max_iter=max_iter,
            solver_options=solver_options,
            n_jobs=n_jobs,
            verbose=verbose,
        )
        self.se_method = se_method
        self.n_agq = n_agq
        self.tol = tol

    def _controls_overrides(self) -> dict:
        return {"max_iter": self.max_iter, "tol": self.tol}

    def _engine_options(self, design) -> dict:
        if self.n_agq > 1 and (len(design.terms) != 1 or design.terms[0].q != 1):
            what = (
                "several grouping factors"
                if len(design.terms) != 1
                else f"{design.terms[0].q} random effects per group"
            )
            raise ValueError(
                f"n_agq={self.n_agq} (adaptive Gauss-Hermite quadrature) needs a single scalar "
                f"random effect, e.g. '(1 | g)'; random_effects={self.random_effects!r} has "
                f"{what}. Use n_agq=1 (Laplace), as lme4 requires too."
            )
        return {"n_agq": self.n_agq}

    def _set_result_attributes(self, problem, result: FitResult, terms) -> None:
        """Attributes from the solver's record (the Laplace GLMM's)."""
        if result.param is not None:
            self._family_ = self._family_.with_param(result.param)
        vcov, self._se_method_used = self._fixed_vcov(problem, result)
        self._set_fixed(result.coef, vcov)
        self._set_random_attributes(terms, result.theta, problem.random_effects(result.theta, result.u))
        self.loglik_ = -0.5 * result.deviance
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.singular_ = result.singular

    def _fixed_vcov(self, problem, result: FitResult):
        """lme4's default (Hessian in (theta, beta)) or the PIRLS-based vcov."""
        nt, nb = result.theta.size, result.coef.size
        if self.se_method == "hessian" and result.hessian is not None:
            try:
                vcov = 2.0 * scaled_inverse(result.hessian)[nt : nt + nb, nt : nt + nb]
            except np.linalg.LinAlgError:  # singular Hessian: use the PIRLS information below
                vcov = np.full((nb, nb), np.nan)
            if np.all(np.diag(vcov) > 0) and np.all(np.isfinite(vcov)):
                return 0.5 * (
                    vcov + vcov.T
                ), f"Hessian of the {self._deviance_name()} deviance in (theta, beta)"
            warnings.warn(
                "The Hessian of the deviance is not positive definite (a variance "
                "at its boundary?); standard errors come from the PIRLS "
                "information with theta held fixed instead.",
                UserWarning,
                stacklevel=5,
            )
            result.notes.append(
                "standard errors from the PIRLS information (the Hessian is not positive definite)"
            )
        info = problem.coef_information(result.theta, result.coef, result.param, result.u)
        vcov = inverse_information(info, stacklevel=5)
        return 0.5 * (vcov + vcov.T), "PIRLS information with theta fixed"

    def _deviance_name(self) -> str:
        return "AGQ" if self.n_agq > 1 else "Laplace"

    def _method_description(self, mixed: bool) -> str:
        if mixed and self.n_agq > 1:
            return (
                "Generalized linear mixed model fit by maximum likelihood "
                f"(Adaptive Gauss-Hermite quadrature, nAGQ = {self.n_agq})"
            )
        return super()._method_description(mixed)
