"""The problem protocol: what a model offers the optimiser and the inference code.

A *problem* is one model kind on one data set -- the Laplace GLMM with one or
several grouping factors (:class:`~._laplace.LaplaceProblem`, which also
covers adaptive quadrature and zero inflation) or the linear mixed model
(:class:`~._lmm.LMMProblem`). The solver (:mod:`._optimize`) and the inference
code (:mod:`._profile`, :mod:`._refit`) talk to it only through
:class:`Problem` and :class:`InferenceProblem`; no code asks a problem what it
has (``docs/theory.md``, "The problem protocol").

Parameters are ``theta`` (covariance parameters, engine order: terms by
decreasing number of levels), ``coef`` (the coefficients the optimiser moves:
``beta``, then the zero-inflation coefficients; empty for the linear mixed
model, whose ``beta`` is profiled out) and ``param`` (the family's shape, or
None). Conditional modes ``u`` are a flat vector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ._controls import SolverControls

__all__ = ["Evaluation", "Start", "Problem", "InferenceProblem"]


@dataclass
class Evaluation:
    """One evaluation of a problem's deviance at (theta, coef, param).

    Attributes
    ----------
    deviance : float
        ``-2 log L`` (Laplace, quadrature or exact); ``inf`` where the point is
        not valid (overflow, outside the family's domain).
    grad_theta, grad_coef : ndarray or None
        Its gradient, when asked for.
    grad_param : float or None
        Its derivative in the family's parameter (not its log).
    u : ndarray or PartitionedModes
        Conditional modes at the point (flat); a problem whose modes stay
        with its parts (:mod:`._partitioned`) gives the point instead, and
        checks the modes' finiteness itself.
    converged : bool
        Whether every PIRLS run converged.
    state : object
        The problem's own record of the evaluation (what
        ``mode_derivative`` needs); opaque to the solver.
    """

    deviance: float
    grad_theta: np.ndarray | None
    grad_coef: np.ndarray | None
    u: object
    converged: bool = True
    grad_param: float | None = None
    state: object = None

    @property
    def finite(self) -> bool:
        """Whether the deviance, the modes and the gradient (if any) are all finite."""
        modes_finite = not isinstance(self.u, np.ndarray) or bool(np.isfinite(self.u).all())
        if not (np.isfinite(self.deviance) and modes_finite):
            return False
        if self.grad_theta is None:
            return True
        return bool(
            np.isfinite(self.grad_theta).all()
            and np.isfinite(self.grad_coef).all()
            and (self.grad_param is None or np.isfinite(self.grad_param))
        )


@dataclass
class Start:
    """Where the optimiser starts: the model without random effects.

    Attributes
    ----------
    coef : ndarray
        Coefficients of the GLM fit (``theta = 0``).
    param : float or None
        The family's parameter at that fit.
    information : ndarray
        Fisher information of ``coef`` there, for all rows (whitens the
        optimiser's coordinates).
    notes : list of str
        What went wrong on the way, if anything (the GLM fit did not converge).
    theta : ndarray or None
        Covariance parameters to start from (a warm start from the previous
        fit of a sequence, as the boosting fit's; see :mod:`._boost`): stage 1
        is then skipped. None: stage 1 finds them.
    """

    coef: np.ndarray
    param: float | None
    information: np.ndarray
    notes: list = field(default_factory=list)
    theta: np.ndarray | None = None


class Problem(Protocol):
    """What the solver (:func:`~._optimize.fit`) needs of a problem."""

    controls: SolverControls
    #: number of covariance parameters
    n_theta: int
    #: number of coefficients the optimiser moves
    n_coef: int
    #: bounds of log(param) (None entries: unbounded), or None without a parameter
    param_bounds: tuple | None
    #: rows of data (the subsample's Hessian is scaled by the ratio)
    n_rows: int
    #: whether an evaluation that changes only theta costs O(levels)
    theta_is_cheap: bool
    #: how the penalised system is factorised (recorded as ``FitResult.linear_algebra``)
    linear_algebra: str

    @property
    def theta_diagonal(self) -> np.ndarray:
        """Which theta elements are diagonal entries of a ``Lambda_k`` (bounded below by 0)."""

    @property
    def theta_scale(self) -> np.ndarray:
        """Root-mean-square of the covariate each theta element multiplies (1 if zero)."""

    @property
    def n_levels(self) -> int:
        """Levels of the largest grouping factor."""

    def zero_modes(self) -> np.ndarray:
        """Modes ``u = 0``."""

    def start(self) -> Start:
        """The GLM fit that starts the optimiser."""

    def subsample(self, n_levels: int) -> Problem:
        """The same model on about ``n_levels`` evenly spaced levels (itself when not smaller)."""

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
        """The deviance (and gradient) at a point, PIRLS warm-started from ``u0``.

        ``predicted``: ``u0`` is a second-order prediction of the modes;
        ``theta_only``: the gradient is needed in theta alone (zeros elsewhere).
        """

    def mode_derivative(self, theta, coef, param, state, dtheta, dcoef) -> np.ndarray | None:
        """Directional derivative of the modes at an evaluation (its ``state``), or None."""


class InferenceProblem(Problem, Protocol):
    """What profiles, bootstrap refits and conditional variances need in addition."""

    def random_effects(self, theta, u) -> list[np.ndarray]:
        """``b_k = U_k Lambda_k^T`` for every term: list of (G_k, q_k)."""

    def conditional_covariances(self, result, state=None) -> list[np.ndarray]:
        """``Var(b_k | y)`` per term and level at a fit's estimates (lme4's ``condVar``);
        ``state``: the evaluation there, whose factors may be reused."""

    def coef_information(self, theta, coef, param, u) -> np.ndarray:
        """Information of ``beta`` with theta held fixed (lme4's ``RX``)."""

    def simulate_response(self, theta, coef, param, rng: np.random.Generator) -> np.ndarray:
        """A response drawn from the model with new random effects (rows in the problem's order)."""

    def with_response(self, y: np.ndarray) -> InferenceProblem:
        """The same design with another response (rows in the problem's order)."""
