"""Boosting the fixed part of a GLMM: GPBoost's algorithm on the Laplace engine (issue 18).

Model (``docs/theory.md`` eq. 1, "Boosted fixed part") with the linear fixed part
replaced by a function ``F`` of the covariates::

    eta_i = offset_i + F(x_i) + sum_k z_ik^T Lambda_k(theta) u_{k, g_k(i)},    u ~ N(0, I)

``F = F_0 + nu (f_1 + ... + f_M)`` is a sum of regression trees ``f_m`` shrunk by
the learning rate ``nu``. Seen from the engine, ``F``'s values at the rows are
an offset: the Laplace deviance ``D(theta, F)`` (eq. 3; the exact likelihood
for the Gaussian) is :class:`~._laplace.LaplaceProblem`'s with an empty fixed
design and offset ``offset + F``. The algorithm is the GPBoost algorithm
(Sigrist 2022, "Gaussian Process Boosting", JMLR 23(232), Algorithm 1; for
non-Gaussian likelihoods "Latent Gaussian Model Boosting", IEEE TPAMI 45(2),
2023), with Newton steps:

0. **Start** -- the intercept-only GLMM (``F`` constant) by the solver
   (:func:`~._optimize.fit`): ``F_0 = beta_0`` and ``theta_0`` (GPBoost's
   initial score for non-Gaussian likelihoods, ``FindInitialValueBoosting``).
1. **Covariance parameters** -- ``theta_m = argmin_theta D(theta, F_{m-1})``
   (with the family's shape, if any): the solver on the problem with offset
   ``offset + F_{m-1}``, warm-started at ``theta_{m-1}`` (``Start.theta``), to
   ``controls.tol``. GPBoost also re-optimises them at every iteration.
2. **Derivatives** -- per row, ``g_i = 1/2 dD/dF_i`` (the negative gradient of
   the Laplace log marginal likelihood in ``F``, exact: eq. 6's row derivative,
   :meth:`~._laplace.LaplaceProblem.row_derivatives`) and ``h_i = 1/2
   d^2D/dF_i^2`` (its penalised part, the diagonal of ``(Wobs^{-1} + Z Sigma
   Z^T)^{-1}``), both at ``(theta_m, F_{m-1})``.
3. **Tree** -- the base learner grows one tree on ``(g, h)`` (second-order
   split gain ``(sum g)^2 / sum h``; GPBoost fits the gradient with ``h = 1``).
   **3b. Leaf values** -- one Newton step in the leaf values ``c`` with the
   leaves' full Hessian, ``c = -(L^T H L + l2 I)^{-1} L^T g`` (``L`` the leaf
   indicators, ``H`` the Hessian of ``D``'s penalised part in ``F``, which
   couples the rows of a level through its random effect; GPBoost's
   ``leaves_newton_update`` option does this for the Gaussian likelihood).
   The diagonal values ``-sum g / sum h`` would barely move ``F`` on a leaf of
   whole groups, whose shift the random effects absorb. Then
   ``F_m = F_{m-1} + nu f_m``.
4. **Early stopping** (with validation rows: groups not in training) -- the
   family's deviance of the validation rows' marginal means at ``(theta_m,
   F_m)``, ``E[g^{-1}(offset + F + z^T b)]`` over the random effects: the
   prediction for a new group and what it is judged by. (The Laplace
   deviance of the held-out groups, their joint marginal likelihood, bottoms
   out after far fewer trees than the mean predictions stop improving: at 50
   rather than 150 trees on 200 new users of a 1,000-user panel.) Boosting
   stops when it has not improved by ``tol``
   (relative) for ``n_iter_no_change`` iterations; the trees after the best
   iteration are dropped.
5. **Final fit** -- step 1 at the kept ``F`` on every row (validation rows
   included): ``theta``, the family's shape, the modes ``u`` and the deviance
   reported by the estimator.

Without groups the same loop boosts the family's log-likelihood
(:class:`GLMBoostingObjective`: ``g = -score``, ``h`` the observed
information, the shape re-estimated in step 1).

Interfaces (informal):

- an *objective* (:class:`LaplaceBoostingObjective`, :class:`GLMBoostingObjective`)
  has ``initial() -> (F_0, CovarianceFit)``, ``covariance(F, previous) ->
  CovarianceFit``, ``derivatives(F, fit) -> Derivatives`` and
  ``held_out_deviance(F, fit)``;
  every per-row array is in the caller's row order;
- a *learner* (:class:`TreeLearner`) owns the trees and the features:
  ``grow(g, h)`` grows one tree and returns each training row's leaf and the
  tree's own leaf values; ``commit(values)`` appends it with the leaf values
  step 3b chose (shrunk) and returns its values at the validation rows;
  ``truncate(n_trees)`` drops the trees after the first ``n_trees``. The
  estimators implement it with scikit-learn's trees
  (``sklearn_glmm.utils._hist_trees``); this module never imports them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..families import Family
from ._controls import SolverControls
from ._glm import fit_glm_ml
from ._laplace import CoreTerm, LaplaceProblem
from ._optimize import FitResult, fit
from ._parallel import ShardRunner
from ._problem import Start

__all__ = [
    "BoostResult",
    "CovarianceFit",
    "Derivatives",
    "GLMBoostingObjective",
    "LaplaceBoostingObjective",
    "TreeLearner",
    "boost",
]


@dataclass
class CovarianceFit:
    """The covariance parameters (and the family's shape) given ``F``.

    Attributes
    ----------
    theta : ndarray
        Covariance parameters (engine order; empty without groups).
    param : float or None
        The family's shape (NB size, Gamma shape, Gaussian variance).
    u : ndarray
        Spherical conditional modes (flat; empty without groups).
    deviance : float
        ``D(theta, F)``: ``-2 log L`` (Laplace) of the objective's rows.
    result : FitResult or None
        The solver's record (None without groups).
    """

    theta: np.ndarray
    param: float | None
    u: np.ndarray
    deviance: float
    result: FitResult | None = None


@dataclass
class Derivatives:
    """Step 2's derivatives at one ``F`` (rows in the caller's order).

    Attributes
    ----------
    gradient, hessian : ndarray of shape (n,)
        ``g = 1/2 dD/dF`` and the diagonal ``h = 1/2 d^2D/dF^2`` (penalised part).
    leaf_information : callable
        ``(labels, n_labels) -> (n_labels, n_labels)``: ``1/2`` the Hessian of
        ``D``'s penalised part in one shift per leaf, couplings through the
        random effects included
        (:meth:`~._laplace.RowCurvature.partition_information`).
    """

    gradient: np.ndarray
    hessian: np.ndarray
    leaf_information: Callable


class TreeLearner(Protocol):
    """The base learner: one tree per iteration, bound to the training (and validation) features."""

    def grow(self, gradient: np.ndarray, hessian: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grow one tree on the rows' derivatives (second-order gain).

        Returns each training row's leaf (``0 .. n_leaves - 1``) and the
        tree's own leaf values ``-sum g / (sum h + l2)`` (not shrunk).
        """

    def l2_regularization(self) -> float:
        """The ridge ``l2`` added to each leaf's curvature."""

    def commit(self, values: np.ndarray) -> np.ndarray | None:
        """Append the last grown tree with these leaf values; its values on the validation rows (None without)."""

    def truncate(self, n_trees: int) -> None:
        """Keep the first ``n_trees`` trees."""


#: trees with more leaves keep their diagonal leaf values: the leaves' Hessian costs
#: O(levels x leaves) memory and O(leaves^3) to solve
NEWTON_MAX_LEAVES = 256


def _sorting(codes: np.ndarray):
    """The stable order of ``codes`` (None when already sorted): the order the problem keeps."""
    codes = np.asarray(codes)
    if codes.size == 0 or bool(np.all(codes[1:] >= codes[:-1])):
        return None
    return np.argsort(codes, kind="stable")


class LaplaceBoostingObjective:
    """``D(theta, F)`` of a GLMM whose fixed part is the free vector ``F`` (see the module docstring).

    The rows are put in the order of the largest factor's levels once, the
    order :class:`~._laplace.LaplaceProblem` keeps, so that a new offset is a
    copy of one vector (:meth:`~._laplace.LaplaceProblem.with_offset`); every
    array given or returned is in the caller's order.

    Parameters
    ----------
    family : Family
    y, weights, offset : ndarray of shape (n,)
    terms : list of CoreTerm
        Most levels first.
    controls : SolverControls
        For the solver's fits of step 1 (``controls.tol`` their tolerance).
    runner : ShardRunner or None
        Runs the problem's shards (None: one thread).
    """

    def __init__(
        self,
        family: Family,
        y,
        weights,
        offset,
        terms: list[CoreTerm],
        controls: SolverControls,
        runner: ShardRunner | None = None,
    ):
        self.order = _sorting(terms[0].codes)
        rows = (lambda a: a) if self.order is None else (lambda a: a[self.order])
        n = np.asarray(y).shape[0]
        self.n_rows = n
        self.controls = controls
        self.offset = np.asarray(rows(np.asarray(offset, dtype=float)), dtype=float)
        self.terms = [
            CoreTerm(rows(np.asarray(t.codes)), rows(np.asarray(t.Z)), t.n_levels, t.theta_rows, t.theta_cols)
            for t in terms
        ]
        self.y = rows(np.asarray(y, dtype=float))
        self.weights = rows(np.asarray(weights, dtype=float))
        self.family = family
        self.runner = runner
        self.problem = LaplaceProblem(
            family, np.empty((n, 0)), self.y, self.weights, self.offset, self.terms, controls, runner=runner
        )

    # -- row order -------------------------------------------------------------
    def _to_problem(self, values: np.ndarray) -> np.ndarray:
        return values if self.order is None else values[self.order]

    def _to_caller(self, values: np.ndarray) -> np.ndarray:
        if self.order is None:
            return values
        out = np.empty_like(values)
        out[self.order] = values
        return out

    def _at(self, F: np.ndarray) -> LaplaceProblem:
        return self.problem.with_offset(self.offset + self._to_problem(np.asarray(F, dtype=float)))

    # -- the steps ---------------------------------------------------------------
    def initial(self) -> tuple[float, CovarianceFit]:
        """Step 0: the intercept-only GLMM; ``F_0`` is its intercept."""
        problem = LaplaceProblem(
            self.family,
            np.ones((self.n_rows, 1)),
            self.y,
            self.weights,
            self.offset,
            self.terms,
            self.controls,
            runner=self.runner,
        )
        result = fit(problem, compute_hessian=False)
        return float(result.coef[0]), CovarianceFit(
            result.theta, result.param, result.u, result.deviance, result
        )

    def covariance(self, F: np.ndarray, previous: CovarianceFit) -> CovarianceFit:
        """Step 1: theta (and the shape) given ``F``, warm-started at ``previous``."""
        start = Start(
            np.empty(0), previous.param, np.empty((0, 0)), theta=np.asarray(previous.theta, dtype=float)
        )
        result = fit(self._at(F), start=start, compute_hessian=False)
        return CovarianceFit(result.theta, result.param, result.u, result.deviance, result)

    def derivatives(self, F: np.ndarray, at: CovarianceFit) -> Derivatives:
        """Step 2: ``g = 1/2 dD/dF`` and ``h = 1/2 d^2D/dF^2`` per row (caller order)."""
        curvature = self._at(F).row_derivatives(at.theta, np.empty(0), at.param, at.u)
        g = self._to_caller(0.5 * curvature.gradient)
        h = self._to_caller(0.5 * curvature.hessian)

        def leaf_information(labels, n_labels):
            return 0.5 * curvature.partition_information(self._to_problem(labels), n_labels)

        return Derivatives(g, h, leaf_information)

    def held_out_deviance(self, F: np.ndarray, at: CovarianceFit) -> float:
        """Step 4: the family's deviance of the marginal means at ``at`` (rows of groups held out).

        ``mu_i = E[g^{-1}(offset_i + F_i + z_i^T b)]`` over ``b ~ N(0, Sigma)``
        (``Link.marginal_mean``: ``exp(eta + z^T Sigma z / 2)`` for the log
        link): the prediction for a new group, as the estimators'
        ``new_groups="marginal"``.
        """
        eta = self.offset + self._to_problem(np.asarray(F, dtype=float))
        var = np.zeros_like(eta)
        for term, lam in zip(self.terms, self.problem.theta_map.lambdas(at.theta)):
            zl = np.asarray(term.Z) @ lam
            var += np.einsum("ij,ij->i", zl, zl)
        family = self.problem.family_at(at.param)
        return family.deviance(self.y, family.link.marginal_mean(eta, var), self.weights)


class GLMBoostingObjective:
    """The same steps without random effects: boosting the family's log-likelihood.

    ``D(F) = -2 sum_i w_i log p(y_i | F_i)``; step 1 re-estimates only the
    family's shape (profiled, :func:`~._glm.fit_glm_ml`).
    """

    def __init__(self, family: Family, y, weights, offset, controls: SolverControls):
        self.family = family
        self.y = np.asarray(y, dtype=float)
        self.weights = np.asarray(weights, dtype=float)
        self.offset = np.asarray(offset, dtype=float)
        self.controls = controls
        self.n_rows = self.y.shape[0]

    def _family(self, param):
        return self.family if param is None else self.family.with_param(param)

    def _fit(self, X, offset) -> tuple[np.ndarray, CovarianceFit]:
        glm, family = fit_glm_ml(self.family, X, self.y, self.weights, offset, self.controls)
        mu = family.link.inverse(offset + X @ glm.coef)
        deviance = -2.0 * family.loglik(self.y, mu, self.weights)
        return glm.coef, CovarianceFit(np.empty(0), family.param, np.empty(0), deviance)

    def initial(self) -> tuple[float, CovarianceFit]:
        coef, at = self._fit(np.ones((self.n_rows, 1)), self.offset)
        return float(coef[0]), at

    def covariance(self, F: np.ndarray, previous: CovarianceFit) -> CovarianceFit:
        if not self.family.has_param:
            mu = self.family.link.inverse(self.offset + F)
            return CovarianceFit(
                np.empty(0), None, np.empty(0), -2.0 * self.family.loglik(self.y, mu, self.weights)
            )
        return self._fit(np.empty((self.n_rows, 0)), self.offset + F)[1]

    def derivatives(self, F: np.ndarray, at: CovarianceFit) -> Derivatives:
        family = self._family(at.param)
        irls = family.irls_quantities(self.y, self.offset + F, self.weights)
        h = np.array(irls.hessian_weights, dtype=float, copy=True)

        def leaf_information(labels, n_labels):
            # without random effects the rows do not couple: the Hessian is diagonal
            return np.diag(np.bincount(labels, weights=h, minlength=n_labels))

        return Derivatives(-irls.score, h, leaf_information)

    def held_out_deviance(self, F: np.ndarray, at: CovarianceFit) -> float:
        family = self._family(at.param)
        return family.deviance(self.y, family.link.inverse(self.offset + F), self.weights)


@dataclass
class BoostResult:
    """What :func:`boost` returns.

    Attributes
    ----------
    init_score : float
        ``F_0``.
    n_trees : int
        Trees kept (the best iteration's under early stopping).
    F : ndarray
        ``F`` at the training rows with the kept trees (caller order).
    F_valid : ndarray or None
        The same at the validation rows.
    covariance : CovarianceFit
        Step 1 at the last iteration (before the final fit, which the caller runs).
    train_deviance : ndarray
        ``D(theta_m, F_{m-1})`` of the training rows, per iteration (``m = 1..``).
    validation_deviance : ndarray or None
        The validation rows' deviance (step 4) at ``(theta_m, F_m)``, from ``m = 0``.
    theta_path : ndarray of shape (n_iter + 1, n_theta)
        ``theta_0, theta_1, ...``.
    timings : dict
        Seconds spent in steps 1, 2, 3 and 4 over all iterations.
    """

    init_score: float
    n_trees: int
    F: np.ndarray
    F_valid: np.ndarray | None
    covariance: CovarianceFit
    train_deviance: np.ndarray
    validation_deviance: np.ndarray | None
    theta_path: np.ndarray
    timings: dict = field(default_factory=dict)


def boost(
    objective,
    learner: TreeLearner,
    n_estimators: int,
    learning_rate: float,
    *,
    leaf_newton: bool = True,
    validation=None,
    n_iter_no_change: int = 10,
    tol: float = 1e-7,
    verbose: int = 0,
) -> BoostResult:
    """Steps 0-4 of the module docstring (the caller runs step 5 on the rows it chooses).

    Parameters
    ----------
    objective : LaplaceBoostingObjective or GLMBoostingObjective
        The training rows.
    learner : TreeLearner
    n_estimators : int
        Boosting iterations (trees) at most.
    learning_rate : float
        ``nu``: each tree's leaf values are multiplied by it.
    leaf_newton : bool, default=True
        Step 3b: leaf values by the Newton step with the leaves' full
        Hessian (:func:`_newton_leaf_values`) for trees of at most
        ``NEWTON_MAX_LEAVES`` leaves; False keeps the tree's own (diagonal)
        ones.
    validation : objective or None
        The validation rows (step 4); None: no early stopping.
    n_iter_no_change : int
        Iterations without an improvement of the validation deviance larger
        than ``tol * |best|`` after which boosting stops.
    tol : float
        Relative improvement that counts.
    verbose : int
        1 prints one line per iteration.
    """
    t0 = time.perf_counter()
    timings = {"covariance": 0.0, "derivatives": 0.0, "tree": 0.0, "leaves": 0.0, "validation": 0.0}
    f0, at = objective.initial()
    F = np.full(objective.n_rows, f0)
    thetas = [np.asarray(at.theta, dtype=float)]
    train_dev: list[float] = []
    valid_dev: list[float] = []
    F_valid = None
    if validation is not None:
        F_valid = np.full(validation.n_rows, f0)
        valid_dev.append(validation.held_out_deviance(F_valid, at))
    best, best_iter = (valid_dev[0] if valid_dev else np.inf), 0
    # the increments since the best iteration, to step back to it
    recent: deque = deque()
    n_trees = 0
    for m in range(1, n_estimators + 1):
        t = time.perf_counter()
        at = objective.covariance(F, at)
        timings["covariance"] += time.perf_counter() - t
        thetas.append(np.asarray(at.theta, dtype=float))
        train_dev.append(at.deviance)
        t = time.perf_counter()
        derivatives = objective.derivatives(F, at)
        timings["derivatives"] += time.perf_counter() - t
        t = time.perf_counter()
        leaves, values = learner.grow(derivatives.gradient, derivatives.hessian)
        timings["tree"] += time.perf_counter() - t
        t = time.perf_counter()
        if leaf_newton and values.size <= NEWTON_MAX_LEAVES:
            values = _newton_leaf_values(
                derivatives, leaves, values.size, learner.l2_regularization(), values
            )
        timings["leaves"] += time.perf_counter() - t
        del derivatives
        values = learning_rate * values
        t = time.perf_counter()
        step_valid = learner.commit(values)
        step = values[leaves]
        timings["tree"] += time.perf_counter() - t
        F += step
        n_trees = m
        if validation is None:
            if verbose:
                print(f"[boost] {m:4d}  train deviance {at.deviance:.6f}  ({time.perf_counter() - t0:.2f}s)")
            continue
        t = time.perf_counter()
        F_valid += step_valid
        dev = validation.held_out_deviance(F_valid, at)
        timings["validation"] += time.perf_counter() - t
        valid_dev.append(dev)
        recent.append((step, step_valid))
        if verbose:
            print(
                f"[boost] {m:4d}  train deviance {at.deviance:.6f}  validation {dev:.6f}  "
                f"({time.perf_counter() - t0:.2f}s)"
            )
        if dev < best - tol * abs(best):
            best, best_iter = dev, m
            recent.clear()
        elif m - best_iter >= n_iter_no_change:
            # back to the best iteration
            for s, sv in recent:
                F -= s
                F_valid -= sv
            n_trees = best_iter
            learner.truncate(best_iter)
            break
    return BoostResult(
        init_score=f0,
        n_trees=n_trees,
        F=F,
        F_valid=F_valid,
        covariance=at,
        train_deviance=np.asarray(train_dev),
        validation_deviance=np.asarray(valid_dev) if valid_dev else None,
        theta_path=np.vstack(thetas),
        timings=timings,
    )


def _newton_leaf_values(
    derivatives: Derivatives, leaves: np.ndarray, n_leaves: int, l2: float, fallback: np.ndarray
) -> np.ndarray:
    """Step 3b: the leaf values ``c = -(H_L + l2 I)^{-1} L^T g`` with the leaves' full Hessian ``H_L``.

    ``H_L`` (``Derivatives.leaf_information``) couples the leaves through the
    random effects: a leaf that holds whole levels (a split on a user-level
    covariate) moves ``F`` where the modes used to absorb the difference, and
    its curvature is far below the sum of the rows' diagonal ``h``. The
    tree's own values (``fallback``) are kept when ``H_L`` is not positive
    definite (it is, up to rounding, whenever every leaf has curvature).
    """
    info = derivatives.leaf_information(leaves, n_leaves)
    info[np.diag_indices(n_leaves)] += l2
    grad = np.bincount(leaves, weights=derivatives.gradient, minlength=n_leaves)
    try:
        L = np.linalg.cholesky(info)
    except np.linalg.LinAlgError:
        return fallback
    values = -np.linalg.solve(L.T, np.linalg.solve(L, grad))
    return values if np.all(np.isfinite(values)) else fallback
