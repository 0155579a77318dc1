"""Gradient-boosted trees with random effects: GPBoost's model on the Laplace engine (issue 18).

:class:`GLMMBoostingRegressor` and :class:`GLMMBoostingClassifier` replace the
GLMM's linear fixed part ``X beta`` by a sum of regression trees ``F(x)``::

    g(E[y_ij | b_i]) = offset_ij + F(x_ij) + z_ij^T b_i,    b_i ~ N(0, Sigma)

and fit ``F`` and ``Sigma`` by the GPBoost algorithm (Sigrist 2022, 2023):
boosting steps on the gradient and Hessian of the Laplace-approximated
marginal log-likelihood in ``F``, alternating with maximum-likelihood updates
of the covariance parameters given ``F``. The algorithm is
:func:`sklearn_glmm._core._boost.boost` (steps written out there and in
``docs/theory.md``, "Boosted fixed part"); the trees are scikit-learn's
(:mod:`sklearn_glmm.utils._hist_trees`). This module does the checks, the
design, the group-wise validation split, the final fit's attributes and
prediction.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted

from ._base import NoGroupsWarning, _BaseGLMM, _check_vector, _empty_frame_to_array, core_terms
from ._core import CoreTerm, ShardRunner, make_controls
from ._core._boost import GLMBoostingObjective, LaplaceBoostingObjective, boost
from ._dask import is_dask_collection
from .design import DesignBuilder, parse_random_effects
from .families import BinomialFamily, GammaFamily, GaussianFamily, NegativeBinomialFamily, PoissonFamily
from .results._varcorr import VARCORR_COLUMNS
from .utils._hist_trees import make_tree_learner
from .utils._param_validation import Interval, StrOptions, validate_data
from .utils._threads import single_blas_thread
from .utils._validation import check_fit_data, check_numeric_inputs, effective_threads

__all__ = ["GLMMBoostingClassifier", "GLMMBoostingRegressor"]

#: early_stopping="auto" switches it on above this many rows (as HistGradientBoostingRegressor)
AUTO_EARLY_STOPPING_ROWS = 10_000

_FAMILIES = {
    "poisson": PoissonFamily,
    "gaussian": GaussianFamily,
    "gamma": lambda: GammaFamily(link="log"),
    "negative_binomial": NegativeBinomialFamily,
}


def _subset_terms(terms: list[CoreTerm], rows: np.ndarray) -> list[CoreTerm]:
    """The terms restricted to ``rows``, each factor's levels recoded to those present."""
    out = []
    for t in terms:
        levels, codes = np.unique(np.asarray(t.codes)[rows], return_inverse=True)
        out.append(CoreTerm(codes.ravel(), np.asarray(t.Z)[rows], levels.size, t.theta_rows, t.theta_cols))
    return out


_PARAMETERS_DOC = """random_effects : str, default="1"
        The random-effects terms in lme4's bar syntax, as for the GLMM
        estimators: ``"1"`` (a random intercept per group),
        ``"(1 + day | user)"``, crossed ``"(1 | user) + (1 | day)"``. Random
        slopes name columns of X (which the trees use as well).
    n_estimators : int, default=100
        Boosting iterations (trees) at most; >= 1.
    learning_rate : float, default=0.1
        Shrinkage ``nu`` of every tree; > 0.
    max_leaf_nodes : int or None, default=31
        Leaves per tree (grown best-first); >= 2, or None for no limit.
    max_depth : int or None, default=None
        Depth limit per tree.
    min_samples_leaf : int, default=20
        Rows per leaf at least.
    l2_regularization : float, default=0.0
        Ridge on the leaf values (added to each leaf's curvature).
    max_bins : int, default=255
        Histogram bins per feature, in [2, 255].
    early_stopping : "auto" or bool, default=False
        Hold out ``validation_fraction`` of the groups (of the largest
        grouping factor; of the rows without groups) and stop when the
        family's deviance of their predictions as new groups (the marginal
        means, their random effects integrated out) has not improved by
        ``tol`` (relative) for ``n_iter_no_change`` iterations; the trees
        after the best iteration are dropped. "auto": on above 10,000 rows (as
        ``HistGradientBoostingRegressor``). The final covariance fit uses all
        rows, so every group seen in fit gets its random effect. Off by
        default (as GPBoost): a new group's mean is dominated by its unknown
        random effect, so the criterion is noisy and, with the default 10 %
        of the groups, stops early (at 43-64 trees on an 800-user training
        panel whose 200 held-out users' deviance kept improving up to about
        150 trees).
    validation_fraction : float, default=0.1
        Fraction of the groups held out, in (0, 1).
    n_iter_no_change : int, default=10
        Patience of early stopping.
    tol : float, default=1e-7
        Relative improvement of the validation deviance that counts.
    group_column : str, int, list or None, default=None
        Take the grouping factor(s) from these columns of X (not used by the
        trees), so that the estimator works in any Pipeline or search without
        metadata routing.
    new_groups : {"population", "marginal", "error"}, default="population"
        Predictions for groups not seen in fit (every group under
        ``GroupKFold``): random effects 0; the mean response averaged over the
        random-effect distribution (``exp(eta + z^T Sigma z / 2)`` for the log
        link), the unbiased prediction for a new group; or an error.
    solver_options : dict, default=None
        Named controls of the covariance fits
        (``sklearn_glmm._core.SolverControls``, e.g. ``{"tol": 1e-8}``).
    n_jobs : int or None, default=None
        Threads for the trees' histograms and the engine's shards (None: 1;
        -1: every CPU), as the GLMM estimators' ``n_jobs``. The fit does not
        depend on it beyond the order of floating-point sums.
    random_state : int, RandomState instance or None, default=None
        Seeds the validation split and the bins' subsample.
    verbose : int, default=0
        1 prints one line per iteration."""

_ATTRIBUTES_DOC = """init_score_ : float
        ``F_0``: the intercept of the intercept-only GLMM the boosting starts from.
    n_trees_ : int
        Trees kept (the best iteration's under early stopping).
    n_iter_ : int
        Boosting iterations run.
    feature_importances_ : ndarray of shape (n_features,)
        Total split gain per feature, normalised to sum to 1.
    ranef_ : dict of {str: pandas.DataFrame}
        Conditional modes given ``F``: grouping factor -> levels x terms.
    varcorr_ : pandas.DataFrame
        Variance components (``grp, var1, var2, vcov, sdcor``) on the link scale.
    theta_ : ndarray
        Relative covariance factor, lme4's order.
    loglik_, deviance_ : float
        Laplace log-likelihood of the final covariance fit given ``F`` (all
        rows), and ``-2 loglik_``. ``F`` has as many parameters as leaves, so
        they compare fits, not models (no AIC).
    train_score_ : ndarray of shape ``(n_iter_,)``
        Log-likelihood of the training rows at each iteration's covariance fit.
    validation_score_ : ndarray
        Minus the mean deviance of the validation groups' marginal-mean
        predictions, from iteration 0 (empty without early stopping).
    theta_path_ : ndarray of shape ``(n_iter_ + 1, n_theta)``
        The covariance parameters after each iteration (engine order).
    singular_ : bool
        Whether a variance is at its boundary.
    family_ : Family
        The fitted family (with the estimated shape).
    fit_summary_ : FitResult or None
        The final covariance fit's record.
    timings_ : dict
        Seconds spent in each step of the loop.
    group_levels_ : dict of {str: pandas.Index}
        Levels of each grouping factor seen in fit.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        When X was a DataFrame."""

_NOTES_DOC = """The trees are scikit-learn's histogram trees (the grower of
    ``HistGradientBoostingRegressor``), binned once per fit; features must be
    numeric and finite. Without ``groups`` the estimator is plain gradient
    boosting of the family's likelihood (with a ``NoGroupsWarning``).
    Under ``GroupKFold`` every test group is new: use
    ``new_groups="marginal"`` for the mean over users.

    The algorithm (``docs/theory.md``, "Boosted fixed part"): ``F_0`` from
    the intercept-only GLMM; then per iteration (1) theta given ``F`` by
    maximum likelihood (warm-started), (2) the gradient ``g`` and diagonal
    Hessian ``h`` of ``-log L`` in ``F`` at the rows, (3) a tree grown on
    ``(g, h)`` whose leaf values are one Newton step with the leaves' full
    Hessian (which knows that the random effects absorb a shift common to a
    group), shrunk by ``learning_rate``. GPBoost takes gradient steps; the
    Newton steps here reach a given deviance in fewer trees."""

_REFERENCES_DOC = """Sigrist, F. (2022). Gaussian process boosting. Journal of Machine
    Learning Research 23(232), 1-46.

    Sigrist, F. (2023). Latent Gaussian model boosting. IEEE Transactions on
    Pattern Analysis and Machine Intelligence 45(2), 1894-1905."""


class _BaseGLMMBoosting(BaseEstimator):
    """Shared plumbing of the boosting estimators (not public)."""

    _parameter_constraints: ClassVar[dict] = {
        "random_effects": [str],
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0.0, None, closed="neither")],
        "max_leaf_nodes": [Interval(Integral, 2, None, closed="left"), None],
        "max_depth": [Interval(Integral, 1, None, closed="left"), None],
        "min_samples_leaf": [Interval(Integral, 1, None, closed="left")],
        "l2_regularization": [Interval(Real, 0.0, None, closed="left")],
        "max_bins": [Interval(Integral, 2, 255, closed="both")],
        "early_stopping": [StrOptions({"auto"}), "boolean"],
        "validation_fraction": [Interval(Real, 0.0, 1.0, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0.0, None, closed="left")],
        "group_column": [None, str, Integral, list],
        "new_groups": [StrOptions({"population", "marginal", "error"})],
        "solver_options": [None, dict],
        "n_jobs": [None, Integral],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    # groups are requested by fit, predict and score under metadata routing, as the GLMM estimators
    __metadata_request__fit: ClassVar[dict] = {"groups": True}
    __metadata_request__predict: ClassVar[dict] = {"groups": True}
    __metadata_request__score: ClassVar[dict] = {"groups": True}

    # The grouping plumbing is the GLMM estimators' own: the same parameters
    # (group_column, random_effects) behave the same way.
    _split_group_column = _BaseGLMM._split_group_column
    _set_random_attributes = _BaseGLMM._set_random_attributes

    #: whether y must be numeric (the classifier takes labels)
    _y_numeric = True

    def __init__(
        self,
        random_effects="1",
        *,
        n_estimators=100,
        learning_rate=0.1,
        max_leaf_nodes=31,
        max_depth=None,
        min_samples_leaf=20,
        l2_regularization=0.0,
        max_bins=255,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-7,
        group_column=None,
        new_groups="population",
        solver_options=None,
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        self.random_effects = random_effects
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.max_bins = max_bins
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.group_column = group_column
        self.new_groups = new_groups
        self.solver_options = solver_options
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # -- hooks ----------------------------------------------------------------
    def _get_family(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _prepare_y(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        self._family_.check_response(y)
        return y

    def _check_weighted_y(self, y: np.ndarray, w: np.ndarray) -> None:
        """Checks that need the weights (the classifier's two classes)."""

    #: trees from DecisionTreeRegressor instead of the histogram grower (tests of the fallback)
    _exact_trees = False

    # -- fit ------------------------------------------------------------------
    def fit(self, X, y, groups=None, sample_weight=None, offset=None):
        """Boost the trees and fit the random effects.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
            Covariates of the trees (and the columns random slopes name).
        y : array-like of shape (n_samples,)
        groups : array-like, Series or DataFrame, default=None
            Grouping factor(s), as for the GLMM estimators. None boosts
            without random effects (with a ``NoGroupsWarning``).
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
        predict : Predictions with the random effects of known groups.
        sklearn_glmm.PoissonGLMMRegressor.fit : The same random effects with a linear fixed part.

        Examples
        --------
        >>> from sklearn_glmm import GLMMBoostingRegressor
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> data = load_app_engagement()
        >>> X, y, g = data[["day_centered"]], data["logins"], data["user_id"]
        >>> model = GLMMBoostingRegressor(n_estimators=20, random_state=0).fit(X, y, groups=g)
        >>> model.n_trees_
        20
        """
        if is_dask_collection(X):
            raise TypeError(
                f"{type(self).__name__} does not fit Dask DataFrames; fit it on pandas or numpy data "
                "(the GLMM estimators take Dask inputs, see docs/scaling_out.md)."
            )
        self._validate_params()
        parse_random_effects(self.random_effects)
        controls = make_controls(self.solver_options)
        X, groups = self._split_group_column(X, groups)
        if groups is None:
            warnings.warn(
                f"{type(self).__name__} was fitted without groups, so its random effects "
                f"({self.random_effects!r}) were dropped and it is plain gradient boosting. Pass "
                "fit(X, y, groups=...), set group_column, or enable metadata routing.",
                NoGroupsWarning,
                stacklevel=2,
            )
        self._family_ = self._get_family()
        check_numeric_inputs(X, y, y_numeric=self._y_numeric)
        # the trees need at least one covariate (an intercept-only model is a GLMM's)
        X, y = validate_data(
            self,
            _empty_frame_to_array(X),
            y,
            reset=True,
            dtype=np.float64,
            ensure_min_features=1,
            y_numeric=self._y_numeric,
        )
        n = X.shape[0]
        y = self._prepare_y(y)
        w = self._check_sample_weight(sample_weight, n)
        self._check_weighted_y(y, w)
        off = np.zeros(n) if offset is None else _check_vector("offset", offset, n)
        self._builder = DesignBuilder(self.random_effects, fixed_effects=[])
        names = (
            list(self.feature_names_in_)
            if hasattr(self, "feature_names_in_")
            else [f"x{j}" for j in range(X.shape[1])]
        )
        design = self._builder.fit(X, [str(c) for c in names], groups, w)
        check_fit_data(type(self).__name__, self._family_, False, design, y, w)
        terms = core_terms(design.terms)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        train, valid = self._validation_split(terms, n, rng)

        n_threads = effective_threads(self.n_jobs)

        def objective(rows):
            idx = slice(None) if rows is None else rows
            if not terms:
                return GLMBoostingObjective(self._family_, y[idx], w[idx], off[idx], controls)
            sub = terms if rows is None else _subset_terms(terms, rows)
            return LaplaceBoostingObjective(
                self._family_, y[idx], w[idx], off[idx], sub, controls, runner=runner
            )

        # BLAS on one thread (the passes over the rows are memory-bound, as in
        # the GLMM estimators); the shards and the trees on n_jobs threads
        with single_blas_thread(), ShardRunner(n_threads) as runner:
            learner = make_tree_learner(
                X if train is None else X[train],
                None if valid is None else X[valid],
                exact=self._exact_trees,
                max_leaf_nodes=self.max_leaf_nodes,
                max_depth=self.max_depth,
                min_samples_leaf=self.min_samples_leaf,
                l2_regularization=self.l2_regularization,
                max_bins=self.max_bins,
                random_state=seed,
                n_threads=n_threads,
            )
            train_objective = objective(train)
            result = boost(
                train_objective,
                learner,
                self.n_estimators,
                self.learning_rate,
                validation=None if valid is None else objective(valid),
                n_iter_no_change=self.n_iter_no_change,
                tol=self.tol,
                verbose=self.verbose,
            )
            # the final fit: theta, the family's shape and the modes given F, on every row
            if train is None:
                final_objective, F = train_objective, result.F
            else:
                final_objective = objective(None)
                F = np.empty(n)
                F[train], F[valid] = result.F, result.F_valid
            final = final_objective.covariance(F, result.covariance)
        learner.slim()
        self._trees = learner
        valid_weight = 1.0 if valid is None else max(float(np.sum(w[valid])), 1e-300)
        self._set_boosting_attributes(result, final, final_objective, design.terms, X.shape[1], valid_weight)
        return self

    def _check_sample_weight(self, sample_weight, n_samples) -> np.ndarray:
        if sample_weight is None:
            return np.ones(n_samples)
        w = _check_vector("sample_weight", sample_weight, n_samples)
        if np.any(w < 0):
            raise ValueError("sample_weight must be non-negative; found negative weights.")
        if not np.any(w > 0):
            raise ValueError("sample_weight is zero for every row; at least one row needs a positive weight.")
        return w

    def _validation_split(self, terms, n, rng):
        """(train, valid) row indices, or (None, None) without early stopping.

        With groups the validation rows are whole levels of the largest
        grouping factor (``validation_fraction`` of them): new groups, as under
        ``GroupKFold``, whose random effects the validation deviance integrates
        out. Without groups, rows.
        """
        on = n > AUTO_EARLY_STOPPING_ROWS if self.early_stopping == "auto" else bool(self.early_stopping)
        if not on:
            return None, None
        if terms:
            codes, G = np.asarray(terms[0].codes), terms[0].n_levels
            if G < 2:
                raise ValueError(
                    "early stopping needs at least 2 groups to hold some out; set early_stopping=False."
                )
            n_valid = min(max(1, round(self.validation_fraction * G)), G - 1)
            held = np.zeros(G, dtype=bool)
            held[rng.permutation(G)[:n_valid]] = True
            mask = held[codes]
        else:
            if n < 2:
                raise ValueError("early stopping needs at least 2 rows; set early_stopping=False.")
            n_valid = min(max(1, round(self.validation_fraction * n)), n - 1)
            mask = np.zeros(n, dtype=bool)
            mask[rng.permutation(n)[:n_valid]] = True
        return np.flatnonzero(~mask), np.flatnonzero(mask)

    def _set_boosting_attributes(self, result, final, objective, terms, n_features, valid_weight) -> None:
        family = self._family_
        if final.param is not None:
            self._family_ = family = family.with_param(final.param)
        self.family_ = family
        self.init_score_ = float(result.init_score)
        self.n_iter_ = int(result.train_deviance.size)
        self.n_trees_ = int(result.n_trees)
        self.train_score_ = -0.5 * np.asarray(result.train_deviance)
        self.validation_score_ = (
            np.empty(0)
            if result.validation_deviance is None
            else -np.asarray(result.validation_deviance) / valid_weight
        )
        self.theta_path_ = result.theta_path
        self.loglik_ = -0.5 * float(final.deviance)
        self.deviance_ = float(final.deviance)
        self.fit_summary_ = final.result
        self.timings_ = dict(result.timings)
        importances = self._trees.feature_importances(n_features)
        total = importances.sum()
        self.feature_importances_ = importances / total if total > 0 else importances
        if not terms:
            self.theta_ = np.empty(0)
            self.ranef_, self.group_levels_ = {}, {}
            self.varcorr_ = pd.DataFrame(columns=VARCORR_COLUMNS)
            self._b = self._re_cov = None
            self.singular_ = False
            return
        problem = objective.problem
        self._set_random_attributes(terms, final.theta, problem.random_effects(final.theta, final.u))
        self.singular_ = bool(final.result.singular)

    # -- predict --------------------------------------------------------------
    def _link(self, X, groups, offset):
        """``offset + F(x) + z^T b`` per row (b of known groups) and the variance ``z^T Sigma z`` of new groups' effects."""
        check_is_fitted(self, "init_score_")
        X, groups = self._split_group_column(X, groups)
        check_numeric_inputs(X)
        X = validate_data(
            self, _empty_frame_to_array(X), reset=False, dtype=np.float64, ensure_min_features=0
        )
        n = X.shape[0]
        eta = self.init_score_ + self._trees.predict(X)
        if offset is not None:
            eta += _check_vector("offset", offset, n)
        var = np.zeros(n)
        if self._b is None:
            return eta, var
        design = self._builder.transform(X, groups)
        new = np.zeros(n, dtype=bool)
        for term, b, cov in zip(design.terms, self._b, self._re_cov):
            eta += term.linear_predictor(b)
            unseen = term.codes < 0
            if np.any(unseen):
                new |= unseen
                Z = term.Z[unseen]
                var[unseen] += np.einsum("ij,jk,ik->i", Z, cov, Z)
        if self.new_groups == "error" and np.any(new):
            raise ValueError(
                f"{int(new.sum())} row(s) belong to groups not seen in fit (or no groups were given), and "
                "new_groups='error'. Use new_groups='population' or 'marginal' to predict for new groups."
            )
        return eta, var

    def _mean(self, X, groups, offset):
        eta, var = self._link(X, groups, offset)
        link = self._family_.link
        mu = link.inverse(eta)
        if self.new_groups == "marginal":
            new = var > 0
            if np.any(new):
                mu[new] = link.marginal_mean(eta[new], var[new])
        return mu

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            self._get_family().check_response(np.array([-1.0]))
        except ValueError:
            tags.target_tags.positive_only = True
        return tags


class GLMMBoostingRegressor(RegressorMixin, _BaseGLMMBoosting):
    _parameter_constraints: ClassVar[dict] = {
        **_BaseGLMMBoosting._parameter_constraints,
        "family": [StrOptions(set(_FAMILIES))],
    }

    def __init__(
        self,
        family="poisson",
        random_effects="1",
        *,
        n_estimators=100,
        learning_rate=0.1,
        max_leaf_nodes=31,
        max_depth=None,
        min_samples_leaf=20,
        l2_regularization=0.0,
        max_bins=255,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-7,
        group_column=None,
        new_groups="population",
        solver_options=None,
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        super().__init__(
            random_effects,
            n_estimators=n_estimators,
            learning_rate=learning_rate,
            max_leaf_nodes=max_leaf_nodes,
            max_depth=max_depth,
            min_samples_leaf=min_samples_leaf,
            l2_regularization=l2_regularization,
            max_bins=max_bins,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            tol=tol,
            group_column=group_column,
            new_groups=new_groups,
            solver_options=solver_options,
            n_jobs=n_jobs,
            random_state=random_state,
            verbose=verbose,
        )
        self.family = family

    def _get_family(self):
        return _FAMILIES[self.family]()

    def predict(self, X, groups=None, offset=None, kind="mean"):
        """Predicted mean response (``kind="link"``: the linear predictor).

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
            The trees' covariates, as in fit.
        groups : array-like or DataFrame, default=None
            Group labels. Rows of groups seen in fit use their conditional
            modes; rows of new groups (all rows when None) follow
            ``new_groups``.
        offset : array-like of shape (n_samples,), default=None
        kind : {"mean", "link"}, default="mean"
            The mean response, or the linear predictor ``offset + F(x) + z^T b``.

        Returns
        -------
        ndarray of shape (n_samples,)

        See Also
        --------
        score : D^2 of these predictions.

        Examples
        --------
        >>> from sklearn_glmm import GLMMBoostingRegressor
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> data = load_app_engagement()
        >>> X, y, g = data[["day_centered"]], data["logins"], data["user_id"]
        >>> model = GLMMBoostingRegressor(n_estimators=20, random_state=0).fit(X, y, groups=g)
        >>> model.predict(X.iloc[:2], groups=g.iloc[:2]).round(4)
        array([3.49  , 3.5145])
        >>> model.predict(X.iloc[:2]).round(4)  # a new user: random effect 0
        array([2.2942, 2.3102])
        >>> model.predict(X.iloc[:2], groups=g.iloc[:2], kind="link").round(4)
        array([1.2499, 1.2569])
        """
        if kind == "link":
            return self._link(X, groups, offset)[0]
        if kind != "mean":
            raise ValueError(f"kind must be 'mean' or 'link'; got {kind!r}.")
        return self._mean(X, groups, offset)

    def score(self, X, y, groups=None, sample_weight=None, offset=None):
        """D^2, the fraction of the family's deviance explained (as ``PoissonRegressor.score``).

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        groups : array-like or DataFrame, default=None
        sample_weight : array-like of shape (n_samples,), default=None
        offset : array-like of shape (n_samples,), default=None

        Returns
        -------
        float
            ``1 - D(y, predict(X, groups)) / D(y, weighted mean of y)``.

        See Also
        --------
        predict : The predictions scored.

        Examples
        --------
        >>> from sklearn_glmm import GLMMBoostingRegressor
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> data = load_app_engagement()
        >>> X, y, g = data[["day_centered"]], data["logins"], data["user_id"]
        >>> model = GLMMBoostingRegressor(n_estimators=20, random_state=0).fit(X, y, groups=g)
        >>> round(model.score(X, y, groups=g), 4)
        0.3036
        """
        mu = self._mean(X, groups, offset)
        n = mu.shape[0]
        y = _check_vector("y", y, n)
        self._family_.check_response(y)
        w = self._check_sample_weight(sample_weight, n)
        family = self._family_
        dev = family.deviance(y, mu, w)
        null = family.deviance(y, np.full(n, np.average(y, weights=w)), w)
        return float(1.0 - dev / null) if null > 0 else float("nan")


class GLMMBoostingClassifier(ClassifierMixin, _BaseGLMMBoosting):
    _y_numeric = False

    def _get_family(self):
        return BinomialFamily(link="logit")

    def _prepare_y(self, y):
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if self.classes_.size > 2:
            raise ValueError(
                f"Only binary classification is supported. The type of the target is {type_of_target(y)}: "
                f"y has {self.classes_.size} classes {self.classes_[:5].tolist()}. Encode the event of "
                "interest as one class."
            )
        if self.classes_.size < 2:
            raise ValueError(
                f"{type(self).__name__} needs two classes in y; it has one class {self.classes_.tolist()}."
            )
        return (y == self.classes_[1]).astype(float)

    def _check_weighted_y(self, y, w):
        kept = y[w > 0]  # y is 0/1 here
        if kept.size == 0 or np.all(kept == kept[0]):
            raise ValueError(
                f"{type(self).__name__} needs two classes with positive sample_weight; only one class is left "
                "after zero weights."
            )

    def decision_function(self, X, groups=None, offset=None):
        """The log-odds of ``classes_[1]`` (random effects of known groups, 0 for new ones).

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
            The trees' covariates, as in fit.
        groups : array-like or DataFrame, default=None
            Group labels. Rows of groups seen in fit use their conditional
            modes; rows of new groups (all rows when None) follow
            ``new_groups``.
        offset : array-like of shape (n_samples,), default=None

        Returns
        -------
        ndarray of shape (n_samples,)

        See Also
        --------
        predict_proba : The probabilities.

        Examples
        --------
        >>> from sklearn_glmm import GLMMBoostingClassifier
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> data = load_app_engagement()
        >>> X, active, g = data[["day_centered"]], data["logins"] > 3, data["user_id"]
        >>> model = GLMMBoostingClassifier(n_estimators=20, random_state=0).fit(X, active, groups=g)
        >>> model.decision_function(X.iloc[:2], groups=g.iloc[:2]).round(4)
        array([-0.4999, -0.2653])
        """
        return self._link(X, groups, offset)[0]

    def predict_proba(self, X, groups=None, offset=None):
        """Probabilities of ``classes_[0]`` and ``classes_[1]``.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
            The trees' covariates, as in fit.
        groups : array-like or DataFrame, default=None
            Group labels. Rows of groups seen in fit use their conditional
            modes; rows of new groups (all rows when None) follow
            ``new_groups``.
        offset : array-like of shape (n_samples,), default=None

        Returns
        -------
        ndarray of shape (n_samples, 2)

        See Also
        --------
        decision_function : The log-odds.
        predict : The more probable labels.

        Examples
        --------
        >>> from sklearn_glmm import GLMMBoostingClassifier
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> data = load_app_engagement()
        >>> X, active, g = data[["day_centered"]], data["logins"] > 3, data["user_id"]
        >>> model = GLMMBoostingClassifier(n_estimators=20, random_state=0).fit(X, active, groups=g)
        >>> model.classes_
        array([False,  True])
        >>> model.predict_proba(X.iloc[:2], groups=g.iloc[:2]).round(4)
        array([[0.6224, 0.3776],
               [0.5659, 0.4341]])
        """
        p = self._mean(X, groups, offset)
        return np.column_stack([1.0 - p, p])

    def predict(self, X, groups=None, offset=None):
        """The more probable label of each row.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
            The trees' covariates, as in fit.
        groups : array-like or DataFrame, default=None
            Group labels. Rows of groups seen in fit use their conditional
            modes; rows of new groups (all rows when None) follow
            ``new_groups``.
        offset : array-like of shape (n_samples,), default=None

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels from ``classes_``.

        See Also
        --------
        predict_proba : The probabilities behind the labels.

        Examples
        --------
        >>> from sklearn_glmm import GLMMBoostingClassifier
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> data = load_app_engagement()
        >>> X, active, g = data[["day_centered"]], data["logins"] > 3, data["user_id"]
        >>> model = GLMMBoostingClassifier(n_estimators=20, random_state=0).fit(X, active, groups=g)
        >>> model.predict(X.iloc[:2], groups=g.iloc[:2])
        array([False, False])
        """
        p = self.predict_proba(X, groups=groups, offset=offset)[:, 1]
        return self.classes_[(p > 0.5).astype(int)]

    def score(self, X, y, groups=None, sample_weight=None, offset=None):
        """Accuracy of ``predict(X, groups)``.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        groups : array-like or DataFrame, default=None
        sample_weight : array-like of shape (n_samples,), default=None
        offset : array-like of shape (n_samples,), default=None

        Returns
        -------
        float

        See Also
        --------
        predict : The labels scored.

        Examples
        --------
        >>> from sklearn_glmm import GLMMBoostingClassifier
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> data = load_app_engagement()
        >>> X, active, g = data[["day_centered"]], data["logins"] > 3, data["user_id"]
        >>> model = GLMMBoostingClassifier(n_estimators=20, random_state=0).fit(X, active, groups=g)
        >>> round(model.score(X, active, groups=g), 4)
        0.804
        """
        return float(
            accuracy_score(y, self.predict(X, groups=groups, offset=offset), sample_weight=sample_weight)
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = False
        tags.classifier_tags.multi_class = False
        return tags


GLMMBoostingRegressor.__doc__ = f"""Gradient-boosted trees with random effects (GPBoost's model) for counts and continuous data.

    The model for row ``j`` of group ``i`` is::

        g(E[y_ij | b_i]) = offset_ij + F(x_ij) + z_ij^T b_i,    b_i ~ N(0, Sigma)

    with ``F`` a sum of regression trees and the family's link ``g`` (log for
    the Poisson, Gamma and negative binomial families, identity for the
    Gaussian). ``F`` and ``Sigma`` (with the family's shape) maximise the
    Laplace approximation of the marginal likelihood, lme4's criterion, by
    boosting steps on its gradient in ``F`` alternating with covariance
    updates (the GPBoost algorithm).

    Parameters
    ----------
    family : {{"poisson", "gaussian", "gamma", "negative_binomial"}}, default="poisson"
        Distribution of ``y`` given the random effects.
    {_PARAMETERS_DOC}

    Attributes
    ----------
    {_ATTRIBUTES_DOC}

    See Also
    --------
    PoissonGLMMRegressor : the same random effects with a linear fixed part.
    sklearn.ensemble.HistGradientBoostingRegressor : trees without random effects.

    Notes
    -----
    {_NOTES_DOC}

    References
    ----------
    {_REFERENCES_DOC}

    Examples
    --------
    >>> from sklearn_glmm import GLMMBoostingRegressor
    >>> from sklearn_glmm.datasets import make_engagement_nonlinear
    >>> data = make_engagement_nonlinear(n_users=60, n_days=20, random_state=0)
    >>> X = data[["day", "weekday", "notifications", "mood", "age"]]
    >>> model = GLMMBoostingRegressor(n_estimators=30, random_state=0)
    >>> model = model.fit(X, data["logins"], groups=data["user_id"])
    >>> model.n_trees_, model.ranef_["user_id"].shape
    (30, (60, 1))
    >>> model.predict(X.iloc[:3], groups=data["user_id"].iloc[:3]).shape
    (3,)
    """

GLMMBoostingClassifier.__doc__ = f"""Gradient-boosted trees with random effects for a binary response (logit link).

    ``P(y_ij = classes_[1] | b_i) = expit(offset_ij + F(x_ij) + z_ij^T b_i)``
    with ``b_i ~ N(0, Sigma)`` and ``F`` a sum of regression trees, fitted as
    :class:`GLMMBoostingRegressor` (the GPBoost algorithm on the Laplace
    approximation). ``predict_proba`` includes the random effects of known
    groups, ``decision_function`` is the log-odds, ``score`` the accuracy.

    Parameters
    ----------
    {_PARAMETERS_DOC}

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two labels; ``classes_[1]`` is modelled.
    {_ATTRIBUTES_DOC}

    See Also
    --------
    BinomialGLMMClassifier : the same random effects with a linear fixed part.

    Notes
    -----
    {_NOTES_DOC}

    References
    ----------
    {_REFERENCES_DOC}

    Examples
    --------
    >>> from sklearn_glmm import GLMMBoostingClassifier
    >>> from sklearn_glmm.datasets import make_engagement_nonlinear
    >>> data = make_engagement_nonlinear(n_users=60, n_days=20, random_state=0)
    >>> X = data[["day", "weekday", "notifications", "mood", "age"]]
    >>> clf = GLMMBoostingClassifier(n_estimators=30, random_state=0)
    >>> clf = clf.fit(X, data["logins"] > 0, groups=data["user_id"])
    >>> clf.classes_.tolist(), clf.predict_proba(X.iloc[:3]).shape
    ([False, True], (3, 2))
    """
