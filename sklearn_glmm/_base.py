"""Shared plumbing of the GLMM estimators: checks, design, core call, attributes.

Subclasses differ only in :meth:`_BaseGLMM._get_family`. The solve itself lives
in :mod:`sklearn_glmm._core`, which never sees scikit-learn or pandas.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from ._core._agq import MAX_AGQ, AGQProblem
from ._core._laplace import LaplaceProblem
from ._core._multilevel import CoreTerm, MultiLevelLaplaceProblem
from ._core._optimize import FitResult, fit_glm_ml, fit_laplace
from ._lme4_api import _Lme4API
from .design import DesignBuilder, parse_random_effects
from .families import Family
from .results import GLMMSummary, coefficient_table
from .results._varcorr import varcorr_table_bars
from .results._varcorr import VARCORR_COLUMNS
from .utils._param_validation import Interval, StrOptions, validate_data
from .utils._validation import check_finite_information, check_fit_data, check_numeric_inputs, warn_about_fit

__all__ = ["_BaseGLMM"]


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


def _inverse_information(info: np.ndarray) -> np.ndarray:
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
        stacklevel=4,
    )
    return np.linalg.pinv(info)


def core_terms(terms) -> list[CoreTerm]:
    """The design's random-effect terms as the engine takes them."""
    return [CoreTerm(t.codes, t.Z, t.n_levels, *t.theta_rows_cols) for t in terms]


def split_theta(terms, theta: np.ndarray) -> list[np.ndarray]:
    """The engine's theta (terms in design order) cut into one piece per term."""
    bounds = np.cumsum([0] + [t.n_theta for t in terms])
    return [theta[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


class NoGroupsWarning(UserWarning):
    """A model with random effects was fitted without any grouping factor."""


class _BaseGLMM(_Lme4API, BaseEstimator):
    """Base class of GLMM estimators (not public).

    Subclasses implement ``_get_family()`` and may extend
    ``_parameter_constraints``.
    """

    _parameter_constraints: dict = {
        "random_effects": [str],
        "fixed_effects": [None, list],
        "group_column": [None, str, Integral, list],
        "new_groups": [StrOptions({"population", "marginal", "error"})],
        "se_method": [StrOptions({"hessian", "pirls"})],
        "n_agq": [Interval(Integral, 1, MAX_AGQ, closed="both")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0.0, None, closed="neither")],
        "verbose": ["verbose"],
    }

    # Metadata routing (sklearn.set_config(enable_metadata_routing=True)):
    # ``groups`` is requested by fit, predict and score by default, so that
    # GridSearchCV(est, grid, cv=GroupKFold()).fit(X, y, groups=g) hands the
    # groups to both the splitter and the estimator with no set_*_request call.
    __metadata_request__fit = {"groups": True}
    __metadata_request__predict = {"groups": True}
    __metadata_request__score = {"groups": True}

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
        verbose=0,
    ):
        self.random_effects = random_effects
        self.fixed_effects = fixed_effects
        self.group_column = group_column
        self.new_groups = new_groups
        self.se_method = se_method
        self.n_agq = n_agq
        self.max_iter = max_iter
        self.tol = tol
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

    def _set_param_attributes(self, family: Family) -> None:
        """Public attributes for the family's extra parameter (NB size, ...)."""

    #: whether y must be numeric (the classifier takes labels)
    _y_numeric = True

    #: the Wald ratio's name in the summary: "z" (GLMM) or "t" (LMM, no p-values)
    _wald_statistic = "z"

    def _method_description(self, mixed: bool) -> str:
        if mixed and getattr(self, "n_agq", 1) > 1:
            return (
                "Generalized linear mixed model fit by maximum likelihood "
                f"(Adaptive Gauss-Hermite quadrature, nAGQ = {self.n_agq})"
            )
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

    # -- fit ------------------------------------------------------------------
    def fit(self, X, y, groups=None, sample_weight=None, offset=None):
        """Fit the GLMM by maximum likelihood (Laplace approximation, or quadrature with ``n_agq > 1``).

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
        """
        self._validate_params()
        self._clear_formula()  # a formula fit sets formula_ again after this fit
        parse_random_effects(self.random_effects)  # fail early on a bad spec
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
        self._y_name = str(y.name) if isinstance(y, pd.Series) and y.name is not None else "y"
        check_numeric_inputs(X, y, y_numeric=self._y_numeric)  # names the column; sklearn does not
        X, y = validate_data(
            self, _empty_frame_to_array(X), y, reset=True, dtype=np.float64, ensure_min_features=0,
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
        check_fit_data(self, design, y, w)  # estimates that do not exist or are not identified
        if self._builder.dropped_:
            warnings.warn(
                f"Fixed-effect column(s) {self._builder.dropped_} are linearly dependent on "
                "earlier columns (constant, duplicated or collinear) and were dropped, as "
                "lme4 does; their coefficients are reported as 0.",
                UserWarning,
                stacklevel=2,
            )
        self.n_obs_ = int(np.sum(w > 0))
        # The engine's BLAS calls are matrix-vector products over the rows, which
        # are memory-bound: extra BLAS threads only add synchronisation (10x
        # slower dot products on a busy 2-core machine), so the fit runs them on
        # one thread; the setting is restored afterwards.
        with threadpool_limits(limits=1, user_api="blas"):
            if not design.terms:
                self._fit_glm(design.X, y, w, off)
            else:
                self._fit_mixed(design, y, w, off)
        self._set_param_attributes(self._family_)
        warn_about_fit(self, design, off, w)  # singular fit, separation
        self._set_criteria()
        self._residuals = self._pearson_residuals(y, self._fitted_mu(design, off), w)
        return self

    def _fit_mixed(self, design, y, w, off) -> None:
        problem = self._laplace_problem_for(design, y, w, off)
        if getattr(self, "n_agq", 1) > 1:
            # issue 7: the same problem with the quadrature deviance (true marginal
            # scale); refuses anything but one scalar random effect, as lme4
            if not isinstance(problem, LaplaceProblem):
                raise ValueError(
                    f"n_agq={self.n_agq} (adaptive Gauss-Hermite quadrature) needs a single scalar "
                    f"random effect, e.g. '(1 | g)'; random_effects={self.random_effects!r} has "
                    "several terms. Use n_agq=1 (Laplace), as lme4 requires too."
                )
            problem = AGQProblem(problem, self.n_agq)
        result = fit_laplace(problem, max_iter=self.max_iter, tol=self.tol, verbose=self.verbose)
        if result.param is not None:
            self._family_ = self._family_.with_param(result.param)
        self._set_mixed_attributes(problem, result, design.terms)

    def _laplace_problem_for(self, design, y, w, off):
        """The one-factor engine when it applies (fastest), the blocked one otherwise."""
        terms = design.terms
        if len(terms) == 1 and terms[0].bar_sizes is None:
            term = terms[0]
            return LaplaceProblem(self._family_, design.X, y, w, off, term.codes, term.Z, term.n_levels)
        return MultiLevelLaplaceProblem(self._family_, design.X, y, w, off, core_terms(terms))

    def _fit_glm(self, Xd, y, w, off) -> None:
        beta, self._family_, converged, n_iter = fit_glm_ml(self._family_, Xd, y, w, off)
        eta = off + Xd @ beta
        irls = self._family_.irls_quantities(y, eta, w)
        vcov = _inverse_information(Xd.T @ (Xd * irls.weights[:, None]))
        self._set_fixed(beta, vcov)
        self.theta_ = np.empty(0)
        self.ranef_ = {}
        self.varcorr_ = pd.DataFrame(columns=VARCORR_COLUMNS)
        self.group_levels_ = {}
        self._b = self._re_cov = None
        self.loglik_ = self._family_.loglik(y, irls.mu, w)
        self.n_iter_ = n_iter
        self.converged_ = bool(converged)
        self.singular_ = False
        self.fit_summary_ = None
        self._se_method_used = "GLM Fisher information"

    def _set_random_attributes(self, terms, theta, b, scale: float = 1.0, sigma: float | None = None) -> None:
        """``theta_``, ``ranef_``, ``varcorr_``, ``group_levels_`` and the covariances for prediction.

        ``theta`` is the engine's (terms in design order); ``theta_`` and
        ``varcorr_`` are in lme4's order (see ``DesignBuilder.theta_order_``).
        """
        b = list(b) if isinstance(b, list) else [b]
        self._b = b
        # Sigma_k of each factor, for marginal predictions of new levels
        self._re_cov = [scale * (lam @ lam.T) for lam in (t.lambda_(th) for t, th in zip(terms, split_theta(terms, theta)))]
        levels = self._builder.levels_
        self.group_levels_ = {t.factor: levels[t.factor] for t in terms}
        self.ranef_ = {
            t.factor: pd.DataFrame(bk, index=levels[t.factor].rename(t.factor), columns=t.term_names)
            for t, bk in zip(terms, b)
        }
        self.theta_ = np.asarray(theta)[self._builder.theta_order_]
        self.varcorr_ = varcorr_table_bars(
            [(group, names, self.theta_[sl]) for group, names, sl in self._builder.report_bars_], scale, sigma
        )

    def _set_mixed_attributes(self, problem, result: FitResult, terms) -> None:
        vcov, self._se_method_used = self._fixed_vcov(problem, result)
        self._set_fixed(result.beta, vcov)
        self._set_random_attributes(terms, result.theta, result.b)
        self.loglik_ = -0.5 * result.deviance
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.singular_ = result.singular
        self.fit_summary_ = result
        self._laplace_problem = problem  # issue 8: profiles, bootstrap and condVar reuse it
        if not result.converged:
            warnings.warn(
                f"The GLMM fit did not converge ({result.message}). Try rescaling "
                "the covariates, simplifying random_effects (e.g. '1' instead of a "
                "random slope) or raising max_iter.",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _fixed_vcov(self, problem: LaplaceProblem, result: FitResult):
        """lme4's default (Hessian in (theta, beta)) or the PIRLS-based vcov."""
        nt, nb = result.theta.size, result.beta.size
        if self.se_method == "hessian" and result.hessian is not None:
            try:
                vcov = 2.0 * np.linalg.inv(result.hessian)[nt : nt + nb, nt : nt + nb]
            except np.linalg.LinAlgError:  # singular Hessian: use the PIRLS information below
                vcov = np.full((nb, nb), np.nan)
            if np.all(np.diag(vcov) > 0) and np.all(np.isfinite(vcov)):
                deviance = "AGQ" if getattr(self, "n_agq", 1) > 1 else "Laplace"
                return 0.5 * (vcov + vcov.T), f"Hessian of the {deviance} deviance in (theta, beta)"
            warnings.warn(
                "The Hessian of the deviance is not positive definite (a variance "
                "at its boundary?); standard errors come from the PIRLS "
                "information with theta held fixed instead.",
                UserWarning,
                stacklevel=4,
            )
        modes = problem.modes(result.theta, result.beta, result.u, result.param)
        vcov = _inverse_information(problem.beta_information(result.theta, modes))
        return 0.5 * (vcov + vcov.T), "PIRLS information with theta fixed"

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
        n_params = self.fixef_.size + self.theta_.size + int(self._family_.has_param)
        self.deviance_ = -2.0 * self.loglik_
        self.aic_ = self.deviance_ + 2.0 * n_params
        self.bic_ = self.deviance_ + np.log(self.n_obs_) * n_params
        self.df_resid_ = self.n_obs_ - n_params

    # -- predict --------------------------------------------------------------
    def _fitted_mu(self, design, offset) -> np.ndarray:
        return self._family_.link.inverse(self._linear_predictor(design, offset))

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
        X = validate_data(self, _empty_frame_to_array(X), reset=False, dtype=np.float64, ensure_min_features=0)
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
        """
        return self._predict_on_scale(X, groups, offset, kind)

    @staticmethod
    def _offset_or_none(offset, n_samples):
        return None if offset is None else _check_vector("offset", offset, n_samples)

    def score(self, X=None, y=None, groups=None, sample_weight=None, offset=None):
        """D^2, the fraction of deviance explained (as ``PoissonRegressor.score``).

        ``1 - D(y, predict(X, groups)) / D(y, weighted mean of y)``, with the
        family's deviance. The best score is 1.0; it can be negative. A
        formula-fitted model also takes a raw data frame with the response
        column, or nothing for the rows of the fit.
        """
        X, y, groups, sample_weight, offset, _ = self._lme4_data(
            X, y, groups, sample_weight, offset, need_y=True
        )
        design, n = self._design_for(X, groups)
        y = self._check_y(y, n)
        w = self._check_sample_weight(sample_weight, n)
        mu = self._mean(design, self._offset_or_none(offset, n))
        family = self._family_
        dev = family.deviance(y, mu, w)
        null = family.deviance(y, np.full(n, np.average(y, weights=w)), w)
        return float(1.0 - dev / null) if null > 0 else float("nan")

    # -- report ---------------------------------------------------------------
    def _pearson_residuals(self, y, mu, w) -> np.ndarray:
        # the full variance (with the NB size, Gamma shape or sigma^2): lme4's
        # "scaled residuals"; floored where mu sits on a boundary of the support
        return (y - mu) * np.sqrt(w / np.maximum(self._family_.variance(mu), 1e-300))

    def summary(self) -> GLMMSummary:
        """An lme4-style summary; ``print(model.summary())`` shows it."""
        check_is_fitted(self, "fixef_")
        coefs = coefficient_table(self.fixef_, self.vcov_.to_numpy(), self._wald_statistic)
        se = np.sqrt(np.diag(self.vcov_.to_numpy()))
        corr = self.vcov_.to_numpy() / np.outer(se, se)
        names = list(self.fixef_.index)
        q = np.quantile(self._residuals, [0, 0.25, 0.5, 0.75, 1.0])
        stats = pd.Series(
            [self.aic_, self.bic_, self.loglik_, self.deviance_, self.df_resid_],
            index=["AIC", "BIC", "logLik", "deviance", "df.resid"],
        )
        messages = []
        if self.singular_:
            messages.append("boundary (singular) fit: a random-effect variance is (close to) zero")
        if not self.converged_:
            messages.append(f"convergence warning: {self.fit_summary_.message}")
        mixed = bool(self.ranef_)
        family, link = self._summary_family()
        return GLMMSummary(
            family=family,
            link=link,
            formula=self._builder.formula(self._y_name),
            method=self._method_description(mixed),
            coefficients=coefs,
            correlation=pd.DataFrame(corr, index=names, columns=names),
            varcorr=self.varcorr_,
            fit_statistics=stats,
            residual_quantiles=pd.Series(q, index=["Min", "1Q", "Median", "3Q", "Max"]),
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

    # -- inference (issue 8) --
    @property
    def ranef_condsd_(self) -> dict:
        """Conditional SDs of the random effects (lme4's ``condVar``), shaped like ``ranef_``."""
        from .results._intervals import ranef_condsd

        check_is_fitted(self, "fixef_")
        return ranef_condsd(self)

    def confint(
        self, method="wald", level=0.95, *, parm=None, n_boot=200, random_state=None, n_jobs=None, progress=False
    ) -> pd.DataFrame:
        """Confidence intervals, as lme4's ``confint`` (see :mod:`sklearn_glmm.results._intervals`).

        Parameters
        ----------
        method : {"wald", "profile", "bootstrap"}, default="wald"
        level : float, default=0.95
        parm : str or list of str, default=None
            Rows to compute (``".sig01"``, fixed-effect names); all when None.
        n_boot, random_state, n_jobs, progress
            Parametric bootstrap: replicates, seed, joblib workers, a progress bar on stderr.

        Returns
        -------
        DataFrame
            Rows ``.sig01 ...`` (SDs and correlations) then the fixed effects;
            columns ``"2.5 %"``, ``"97.5 %"``.
        """
        from .results._intervals import confint

        return confint(self, method, level, parm, n_boot, random_state, n_jobs, progress)

    def residuals(self, X=None, y=None, groups=None, kind="deviance", sample_weight=None, offset=None) -> np.ndarray:
        """Residuals ``"response"``, ``"pearson"`` or ``"deviance"`` (lme4's default), as lme4.

        A formula-fitted model also takes a raw data frame with the response
        column, or nothing for the rows of the fit (``residuals(m, type = "pearson")``
        is ``m.residuals(kind="pearson")``).
        """
        from .results._diagnostics import residuals

        X, y, groups, sample_weight, offset, _ = self._lme4_data(
            X, y, groups, sample_weight, offset, need_y=True
        )
        return residuals(self, X, y, groups, kind, sample_weight, offset)

    def simulate(self, X=None, groups=None, n_simulations=1, random_state=None, conditional=True, offset=None):
        """Simulated responses, shape (n_samples, n_simulations); see :func:`sklearn_glmm.simulate`.

        A formula-fitted model also takes a raw data frame, or nothing for the
        rows of the fit (R's ``simulate(m)``).
        """
        from .results._diagnostics import simulate

        X, _, groups, _, offset, _ = self._lme4_data(X, None, groups, None, offset, need_y=False)
        return simulate(self, X, groups, n_simulations, random_state, conditional, offset)

    @classmethod
    def from_formula(cls, formula, data, **params):
        """Fit from an lme4 formula and a DataFrame; see :func:`sklearn_glmm.glmer`."""
        from ._formula import fit_formula

        return fit_formula(cls, formula, data, **params)
