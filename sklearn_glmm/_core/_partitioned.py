"""Problems whose rows are split into parts kept apart (on a cluster's workers).

When every level of every grouping factor lies within one part -- one grouping
factor, or factors nested in the one the data are partitioned by -- the
penalised system is block diagonal over the parts, and the Laplace deviance,
its gradient, the linear mixed model's reduced system (:class:`~._lmm.LMMSums`)
and the conditional variances are sums over them. A part is an ordinary
problem (:class:`~._laplace.LaplaceProblem` or :class:`~._lmm.LMMProblem`) on
its rows, with its levels numbered locally.

:class:`PartitionedLaplaceProblem` and :class:`PartitionedLMMProblem` implement
the problem protocol of :mod:`._problem` on parts reached through a
:class:`PartRunner` (``map(fn, *args)`` applies a module-level function of this
module to every part where the part lives: :class:`LocalParts` in this process,
or the Dask runner of ``sklearn_glmm._dask``). Per evaluation only the point
``(theta, coef, param)`` goes out and ``O(p^2)`` numbers per part come back.
Each part keeps the modes of its last finite evaluation and warm-starts PIRLS
from them, so the modes never travel; the solver holds a
:class:`PartitionedModes` (the point) in their place. The stage-1 subsample is
gathered from the parts and solved in memory. Parts are summed in their
order, so a fit on the same parts is deterministic; it differs from the fit
in memory by the order of floating-point sums (and by PIRLS warm starts, to
within its tolerance).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..families import Family
from ._controls import SolverControls
from ._laplace import LaplaceProblem, RowSelection, evenly_spaced_levels
from ._lmm import LMMResult, LMMSums, lmm_criterion, lmm_evaluation
from ._problem import Evaluation, Start
from ._system import TermsBookkeeping, ThetaMap

__all__ = [
    "LocalParts",
    "Part",
    "PartRunner",
    "PartSummary",
    "PartitionedLMMProblem",
    "PartitionedLaplaceProblem",
    "PartitionedModes",
    "ResidualSummary",
]


# -- parts -------------------------------------------------------------------------
class Part:
    """One part: a problem on its rows, its levels' positions in the whole data, its warm start.

    Parameters
    ----------
    problem : LaplaceProblem or LMMProblem
        The model on the part's rows, levels numbered ``0 .. G_k(part) - 1``.
    levels : list of ndarray
        Per term, the position among the whole data's levels of each local level.
    """

    def __init__(self, problem, levels: list[np.ndarray]):
        self.problem = problem
        self.levels = [np.asarray(lv, dtype=np.intp) for lv in levels]
        self.u = problem.zero_modes()
        #: a linear mixed model's last reduced system (its sums' round trip), reused by its gradient's
        self.lmm_reduced = None


@dataclass
class PartSummary:
    """What the driver needs of a part to set up: rows, weighted rows and the covariates' squares."""

    n_rows: int
    n_obs: int
    z_squares: list[np.ndarray]
    sum_log_w: float


class PartRunner(Protocol):
    """Runs functions on parts where the parts live; results in the parts' order.

    A part may be anything a function of the runner turns into a :class:`Part`
    (the estimator layer first holds a partition's checked rows, then the
    part built from them).
    """

    def map(self, fn: Callable[..., Any], *args) -> list:
        """``[fn(part, *args) for part in parts]``."""

    def map_each(self, fn: Callable[..., Any], per_part: list, *args) -> list:
        """``[fn(part, extra, *args) for part, extra in zip(parts, per_part)]``."""

    def transform(self, fn: Callable[..., Any], per_part: list, *args) -> PartRunner:
        """A runner of the parts ``fn(part, extra, *args)``, made and kept where the parts are."""

    def subset(self, keep: list[int]) -> PartRunner:
        """A runner of some of the parts (positions in their order)."""

    def release(self) -> None:
        """Drop the parts."""


class LocalParts:
    """Parts held in this process."""

    def __init__(self, parts: list):
        self.parts = list(parts)

    def map(self, fn, *args) -> list:
        return [fn(part, *args) for part in self.parts]

    def map_each(self, fn, per_part: list, *args) -> list:
        return [fn(part, extra, *args) for part, extra in zip(self.parts, per_part)]

    def transform(self, fn, per_part: list, *args) -> LocalParts:
        return LocalParts(self.map_each(fn, per_part, *args))

    def subset(self, keep: list[int]) -> LocalParts:
        return LocalParts([self.parts[i] for i in keep])

    def release(self) -> None:
        self.parts = []


@dataclass(frozen=True)
class PartitionedModes:
    """The modes at a point of a partitioned problem: they stay with the parts; the point is kept.

    ``coef`` is beta for the linear mixed model.
    """

    theta: np.ndarray
    coef: np.ndarray | None = None
    param: float | None = None


@dataclass
class PartEvaluation:
    """One part's deviance and gradient (``O(p^2)`` numbers)."""

    deviance: float
    grad_theta: np.ndarray | None
    grad_coef: np.ndarray | None
    grad_param: float | None
    converged: bool
    finite: bool


# -- functions run on the parts (module level: they travel by reference) ------------------
def part_summary(part: Part) -> PartSummary:
    problem = part.problem
    w = problem.weights if isinstance(problem, LaplaceProblem) else problem.w
    positive = w > 0
    squares = [np.sum(ZT**2, axis=1) for ZT in problem.ZT]
    return PartSummary(
        int(problem.n_rows), int(np.sum(positive)), squares, float(np.sum(np.log(w[positive])))
    )


def part_evaluate(part: Part, theta, coef, param, gradient: bool, theta_only: bool) -> PartEvaluation:
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        ev = part.problem.evaluate(theta, coef, param, part.u, gradient=gradient, theta_only=theta_only)
    finite = ev.finite
    if finite:
        part.u = ev.u
    return PartEvaluation(
        float(ev.deviance), ev.grad_theta, ev.grad_coef, ev.grad_param, bool(ev.converged), finite
    )


def _modes_at(part: Part, theta, coef, param) -> np.ndarray:
    """The part's modes at a point, by PIRLS from its warm start."""
    ev = part.problem.evaluate(theta, coef, param, part.u, gradient=False)
    if ev.finite:
        part.u = ev.u
    return ev.u


def part_random_effects(part: Part, theta, coef, param) -> tuple[list[np.ndarray], list[np.ndarray]]:
    u = _modes_at(part, theta, coef, param)
    return part.levels, part.problem.random_effects(theta, u)


def part_conditional_covariances(part: Part, theta, coef, param) -> tuple[list[np.ndarray], list[np.ndarray]]:
    u = _modes_at(part, theta, coef, param)
    return part.levels, part.problem.conditional_covariances_at(theta, coef, param, u)


def part_coef_information(part: Part, theta, coef, param) -> np.ndarray:
    return part.problem.coef_information(theta, coef, param, _modes_at(part, theta, coef, param))


def part_rows_of_levels(part: Part, kept: np.ndarray) -> RowSelection | None:
    """The part's rows of the kept levels of the largest factor (positions in the whole data)."""
    mask = np.isin(part.levels[0], kept)
    if not mask.any():
        return None
    return part.problem.rows_of_levels(mask, part.levels)


@dataclass
class ResidualSummary:
    """A part's fitted means' extremes (rows with positive weight) and Pearson residuals' quantiles."""

    n_rows: int
    mean_extremes: np.ndarray
    residual_quantiles: np.ndarray
    weighted_response: float


def part_residual_summary(
    part: Part, family: Family, theta, coef, param, grid: np.ndarray
) -> ResidualSummary:
    """At the estimates: the extremes of the fitted means and the residuals' quantiles at ``grid``."""
    problem = part.problem
    mu = family.link.inverse(problem.linear_predictor(theta, coef, _modes_at(part, theta, coef, param)))
    means = mu[problem.weights > 0]
    extremes = np.array([means.min(), means.max()]) if means.size else np.zeros(0)
    residuals = family.pearson_residuals(problem.y, mu, problem.weights)
    return ResidualSummary(
        problem.n_rows, extremes, np.quantile(residuals, grid), float(np.dot(problem.weights, problem.y))
    )


def part_lmm_residual_summary(part: Part, theta, beta, sigma: float, grid: np.ndarray) -> ResidualSummary:
    """:func:`part_residual_summary` of a linear mixed model (residuals ``sqrt(w) (y - fit) / sigma``)."""
    problem = part.problem
    residuals = problem.residuals(theta, beta) * np.sqrt(problem.w) / sigma
    return ResidualSummary(problem.n_rows, np.zeros(0), np.quantile(residuals, grid), 0.0)


def part_lmm_sums(part: Part, theta) -> LMMSums:
    """The part's :class:`~._lmm.LMMSums`; its reduced system is kept for :func:`part_lmm_gradient`."""
    reduced = part.problem.reduce(theta)
    part.lmm_reduced = reduced
    return reduced.sums


def part_lmm_gradient(part: Part, theta, beta, RXtRX_inv) -> np.ndarray:
    """The part's rows of the LMM gradient (:meth:`~._lmm.LMMProblem.gradient_terms`) at the whole's beta."""
    reduced = part.lmm_reduced
    if reduced is None or not np.array_equal(reduced.theta, theta):
        reduced = part.problem.reduce(theta)
    return part.problem.gradient_terms(reduced, beta, RXtRX_inv)


def part_lmm_random_effects(part: Part, theta, beta) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return part.levels, part.problem.random_effects(theta, part.problem.modes_given(theta, beta))


def part_lmm_conditional_covariances(part: Part, result) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return part.levels, part.problem.conditional_covariances(result)


# -- the driver ------------------------------------------------------------------------------
def _assemble(
    pieces: list[tuple[list[np.ndarray], list[np.ndarray]]], level_counts: list[int]
) -> list[np.ndarray]:
    """Per-level arrays of the parts, placed at their levels' positions in the whole data."""
    out = []
    for k, n_levels in enumerate(level_counts):
        first = next(values[k] for _, values in pieces)
        whole = np.zeros((n_levels,) + first.shape[1:])
        for levels, values in pieces:
            whole[levels[k]] = values[k]
        out.append(whole)
    return out


class _Partitioned(TermsBookkeeping):
    """The bookkeeping both partitioned problems share (summaries of the parts)."""

    #: each part factorises its own levels' system (``FitResult.linear_algebra``)
    linear_algebra = "partitioned: one factorisation per part"

    def __init__(
        self, runner: PartRunner, theta_map: ThetaMap, level_counts: list[int], controls: SolverControls
    ):
        self.runner = runner
        self.theta_map = theta_map
        self.level_counts = [int(g) for g in level_counts]
        self.controls = controls
        summaries = runner.map(part_summary)
        self.n_parts = len(summaries)
        self.n_rows = sum(s.n_rows for s in summaries)
        self.n_obs = sum(s.n_obs for s in summaries)
        self.sum_log_w = float(sum(s.sum_log_w for s in summaries))
        self._z_squares = [sum(s.z_squares[k] for s in summaries) for k in range(len(level_counts))]

    def covariate_mean_squares(self) -> list[np.ndarray]:
        return [squares / max(self.n_rows, 1) for squares in self._z_squares]

    def mode_derivative(self, theta, coef, param, state, dtheta, dcoef):
        """None: the modes stay with the parts (every PIRLS starts from the part's last modes)."""
        return


class PartitionedLaplaceProblem(_Partitioned):
    """The Laplace (or quadrature) GLMM on parts (see the module docstring).

    Parameters
    ----------
    runner : PartRunner
        Reaches the parts, each a :class:`Part` around a :class:`~._laplace.LaplaceProblem`.
    family : Family
    theta_map : ThetaMap
    level_counts : list of int
        Levels of each term in the whole data, the largest first.
    n_coef : int
        Coefficients (beta, then any zero-inflation coefficients).
    controls : SolverControls
    n_agq : int, default=1
    """

    #: every evaluation is a round trip to the parts: stage 1 runs on the gathered subsample
    theta_is_cheap = False

    def __init__(
        self,
        runner: PartRunner,
        family: Family,
        theta_map: ThetaMap,
        level_counts: list[int],
        n_coef: int,
        controls: SolverControls,
        *,
        n_agq: int = 1,
    ):
        super().__init__(runner, theta_map, level_counts, controls)
        self.family = family
        self.n_coef = int(n_coef)
        self.n_agq = int(n_agq)

    @property
    def param_bounds(self):
        return self.family.param_bounds if self.family.has_param else None

    def zero_modes(self) -> PartitionedModes:
        return PartitionedModes(np.zeros(self.n_theta))

    def start(self) -> Start:
        """The GLM start of the subsample (the solver asks the subsample; this is for a direct call)."""
        return self.subsample(self.controls.stage1_levels).start()

    def subsample(self, n_levels: int) -> LaplaceProblem:
        """About ``n_levels`` evenly spaced levels of the largest factor, gathered into memory.

        Always a subsample (never the parts themselves): the solver's stage 1
        and its start run in memory.
        """
        kept = evenly_spaced_levels(self.level_counts[0], min(n_levels, self.level_counts[0]))
        selections = [s for s in self.runner.map(part_rows_of_levels, kept) if s is not None]
        return RowSelection.concatenate(selections).problem(
            self.family, self.theta_map, self.controls, self.n_agq
        )

    def evaluate(
        self,
        theta,
        coef,
        param,
        u0,
        *,
        gradient: bool = True,
        predicted: bool = False,
        theta_only: bool = False,
    ) -> Evaluation:
        """The sum of the parts' evaluations; ``u0`` is not used (each part warm-starts from its own modes)."""
        theta, coef = np.asarray(theta, dtype=float), np.asarray(coef, dtype=float)
        parts = self.runner.map(part_evaluate, theta, coef, param, gradient, theta_only)
        modes = PartitionedModes(theta, coef, param)
        converged = all(p.converged for p in parts)
        if not all(p.finite for p in parts):
            return Evaluation(np.inf, None, None, modes, False)
        deviance = float(sum(p.deviance for p in parts))
        if not gradient:
            return Evaluation(deviance, None, None, modes, converged)
        grad_param = None if param is None else float(sum(p.grad_param for p in parts))
        return Evaluation(
            deviance,
            sum(p.grad_theta for p in parts),
            sum(p.grad_coef for p in parts),
            modes,
            converged,
            grad_param,
        )

    # -- inference ---------------------------------------------------------------------
    def random_effects(self, theta, u: PartitionedModes) -> list[np.ndarray]:
        """``b_k`` per term, gathered from the parts (``O(levels)``)."""
        pieces = self.runner.map(part_random_effects, np.asarray(theta, dtype=float), u.coef, u.param)
        return _assemble(pieces, self.level_counts)

    def conditional_covariances(self, result, state=None) -> list[np.ndarray]:
        pieces = self.runner.map(part_conditional_covariances, result.theta, result.coef, result.param)
        return _assemble(pieces, self.level_counts)

    def coef_information(self, theta, coef, param, u) -> np.ndarray:
        return sum(self.runner.map(part_coef_information, np.asarray(theta, dtype=float), coef, param))

    def residual_summaries(self, result, family: Family, grid: np.ndarray) -> list[ResidualSummary]:
        """Every part's :class:`ResidualSummary` at a fit's estimates (``family`` with its fitted parameter)."""
        return self.runner.map(part_residual_summary, family, result.theta, result.coef, result.param, grid)


class PartitionedLMMProblem(_Partitioned):
    """The linear mixed model's profiled criterion on parts (see :mod:`._lmm`).

    Each part reduces its block of the penalised least-squares system to the
    fixed effects (:class:`~._lmm.LMMSums`); the driver adds them and
    profiles beta and sigma as :class:`~._lmm.LMMProblem` does. The gradient
    takes a second round trip: given beta and ``(RX^T RX)^{-1}`` each part
    returns its rows of the three derivatives of eq. 10b, which add up.

    Parameters
    ----------
    runner : PartRunner
        Reaches the parts, each a :class:`Part` around an :class:`~._lmm.LMMProblem`.
    theta_map, level_counts, controls
        As :class:`PartitionedLaplaceProblem`.
    n_beta : int
        Fixed effects.
    reml : bool
    """

    theta_is_cheap = True
    param_bounds = None
    n_coef = 0

    def __init__(
        self,
        runner: PartRunner,
        theta_map: ThetaMap,
        level_counts: list[int],
        n_beta: int,
        controls: SolverControls,
        reml: bool = True,
    ):
        super().__init__(runner, theta_map, level_counts, controls)
        self.p = int(n_beta)
        self.n = self.n_obs
        self.reml = bool(reml)

    def zero_modes(self) -> np.ndarray:
        return np.zeros(0)

    def start(self) -> Start:
        return Start(np.zeros(0), None, np.zeros((0, 0)))

    def subsample(self, n_levels: int) -> PartitionedLMMProblem:
        return self

    def reduced_sums(self, theta) -> LMMSums:
        parts = self.runner.map(part_lmm_sums, np.asarray(theta, dtype=float))
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total

    def evaluate(
        self,
        theta,
        coef=None,
        param=None,
        u0=None,
        *,
        gradient: bool = True,
        predicted: bool = False,
        theta_only: bool = False,
    ) -> Evaluation:
        """The criterion from the parts' sums; with ``gradient`` a second round trip for eq. 10b."""
        theta = np.asarray(theta, dtype=float)
        return lmm_evaluation(
            self.reduced_sums(theta),
            self.n,
            self.p,
            self.sum_log_w,
            self.reml,
            lambda beta, RXtRX_inv: sum(self.runner.map(part_lmm_gradient, theta, beta, RXtRX_inv)),
            gradient,
        )

    def deviance(self, theta, reml: bool) -> float:
        return lmm_criterion(self.reduced_sums(theta), self.n, self.p, self.sum_log_w, reml)

    def solve(self, theta):
        """As :meth:`~._lmm.LMMProblem.solve`; the modes stay with the parts (a :class:`PartitionedModes`)."""
        sums = self.reduced_sums(theta)
        beta, r2 = sums.solution()
        return beta, PartitionedModes(np.asarray(theta, dtype=float), beta), r2, sums.logdet, sums.RXtRX

    def with_criterion(self, reml: bool) -> PartitionedLMMProblem:
        other = object.__new__(PartitionedLMMProblem)
        other.__dict__.update(self.__dict__)
        other.reml = bool(reml)
        return other

    def random_effects(self, theta, u: PartitionedModes) -> list[np.ndarray]:
        pieces = self.runner.map(part_lmm_random_effects, np.asarray(theta, dtype=float), u.coef)
        return _assemble(pieces, self.level_counts)

    def conditional_covariances(self, result, state=None) -> list[np.ndarray] | None:
        """As :meth:`~._lmm.LMMProblem.conditional_covariances` (None for the solver's record, which has no sigma)."""
        if not isinstance(result, LMMResult):
            return None
        pieces = self.runner.map(part_lmm_conditional_covariances, result)
        return _assemble(pieces, self.level_counts)

    def residual_summaries(self, result, family: Family, grid: np.ndarray) -> list[ResidualSummary]:
        """Every part's :class:`ResidualSummary` at a fit's estimates."""
        return self.runner.map(part_lmm_residual_summary, result.theta, result.coef, result.sigma, grid)
