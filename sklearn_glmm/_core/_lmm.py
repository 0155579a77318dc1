"""The linear mixed model: exact profiled (RE)ML deviance, as lme4's ``lmer``.

Model (eq. 8 of ``docs/theory.md``), one or several random-effects terms::

    y_i = offset_i + x_i^T beta + sum_k z_ik^T Lambda_k(theta) u_{k, g_k(i)} + e_i,
    u ~ N(0, sigma^2 I),   e_i ~ N(0, sigma^2 / w_i)

Here ``theta`` is *relative* to the residual SD, as in lme4. For a given
``theta`` the penalised least-squares problem (eq. 9)::

    min_{u, beta}  sum_i w_i (y_i - offset_i - x_i^T beta - zl_i^T u)^2 + ||u||^2

is solved exactly through the penalised system ``A = I + Lambda^T Z^T W Z
Lambda``, built per theta from ``Z^T W Z`` (:mod:`._lmm_system`):
``K = Lambda^T Z^T W X``, the Schur complement ``RX^T RX = X^T W X - K^T A^{-1} K``
gives beta, then ``u``. With the penalised residual sum of squares ``r2``,
``sigma`` and beta profile out (eq. 10)::

    ML:   d(theta) = log|A| + n (1 + log(2 pi r2 / n)) - sum log w
    REML: d(theta) = log|A| + log|RX^T RX| + (n - p) (1 + log(2 pi r2 / (n - p))) - sum log w

The level sums ``Z^T W X``, ``Z^T W y`` and ``Z^T W Z`` do not depend on
theta and are formed once, so an evaluation never touches the rows: with one
grouping factor it costs ``O(G q^2 p)`` whatever the number of rows.

Its gradient (eq. 10b) is exact: by the envelope theorem ``r2`` moves only
through ``Lambda`` at the solution ``(u, beta)``, and ``log|A|``, ``log|RX^T
RX|`` are differentiated through the selected inverse of ``A``; with
``T_k``, ``TX_k`` the level sums (Z coordinates) of the weighted residuals of
``y`` and of the columns of ``X``, ``V = A^{-1} K`` and ``N = A^{-1}
Lambda^T Z^T W Z``::

    d r2 / dLambda_k          = -2 T_k^T U_k
    d log|A| / dLambda_k      = 2 sum_g N_kg^T
    d log|RX^T RX| / dLambda_k = -2 sum_g TX_kg (RX^T RX)^{-1} V_kg^T

:class:`LMMProblem` implements the problem protocol
(:mod:`._problem`) with no coefficients to optimise (beta is profiled), so
the solver runs its quasi-Newton stage 2 on theta; :func:`fit_lmm` adds the
profiled estimates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._blocked import ONE_TERM, RandomEffectsLayout
from ._controls import SolverControls
from ._laplace import CoreTerm
from ._linalg import GroupIndex, row_order
from ._lmm_system import BlockedGram, OneTermGram, TermBlocks
from ._optimize import FitResult, fit
from ._problem import Evaluation, Start
from ._system import BlockedSystem, TermRows, TermsBookkeeping, TermSystem, ThetaMap

__all__ = [
    "LMMProblem",
    "LMMReduced",
    "LMMResult",
    "LMMSums",
    "fit_lmm",
    "lmm_criterion",
    "lmm_evaluation",
    "lmm_gradient",
]


@dataclass
class LMMResult(FitResult):
    """:class:`~._optimize.FitResult` of a linear mixed model, with its profiled estimates.

    ``coef`` is beta, ``deviance`` the criterion (``-2 logLik`` for ML, the
    REML criterion for REML) and ``u`` the spherical modes on the response
    scale relative to sigma.

    Attributes
    ----------
    sigma : float
        Residual SD.
    vcov_beta : ndarray
        ``sigma^2 (RX^T RX)^{-1}``.
    reml : bool
    deviance_ml : float
        ``-2 logLik`` under ML at the estimates (for REML fits, lme4's
        ``deviance(m, REML = FALSE)``).
    """

    sigma: float = 1.0
    vcov_beta: np.ndarray | None = None
    reml: bool = True
    deviance_ml: float = 0.0


@dataclass
class LMMSums:
    """The penalised least-squares system at theta, reduced to the fixed effects.

    With ``K = Lambda^T Z^T W X`` and ``c = Lambda^T Z^T W r`` (``r = y -
    offset``): ``logdet = log|A|``, ``RXtRX = X^T W X - K^T A^{-1} K``, ``rhs =
    X^T W r - K^T A^{-1} c`` and ``S = r^T W r - c^T A^{-1} c``. When ``A`` is
    block diagonal over parts of the data (whole levels of every factor), each
    is a sum over the parts, so parts held apart add up to the whole.
    """

    logdet: float
    RXtRX: np.ndarray
    rhs: np.ndarray
    S: float

    def __add__(self, other: LMMSums) -> LMMSums:
        return LMMSums(
            self.logdet + other.logdet, self.RXtRX + other.RXtRX, self.rhs + other.rhs, self.S + other.S
        )

    def solution(self) -> tuple[np.ndarray, float]:
        """``beta = RXtRX^{-1} rhs`` and the penalised residual sum of squares ``r2 = S - rhs^T beta``."""
        beta = np.linalg.solve(self.RXtRX, self.rhs)
        return beta, max(self.S - float(self.rhs @ beta), 1e-300)


def lmm_criterion(sums: LMMSums, n: int, p: int, sum_log_w: float, reml: bool) -> float:
    """Profiled deviance (ML) or REML criterion (eq. 10) from the reduced system."""
    _, r2 = sums.solution()
    if reml:
        dof = n - p
        return float(
            sums.logdet
            + np.linalg.slogdet(sums.RXtRX)[1]
            + dof * (1.0 + np.log(2.0 * np.pi * r2 / dof))
            - sum_log_w
        )
    return float(sums.logdet + n * (1.0 + np.log(2.0 * np.pi * r2 / n)) - sum_log_w)


@dataclass
class LMMReduced:
    """The penalised least-squares system at theta: its factor and the solves the gradient reuses."""

    theta: np.ndarray
    lambdas: list
    factor: object
    sums: LMMSums
    AinvK: np.ndarray
    Ainvc: np.ndarray


def lmm_gradient(terms: np.ndarray, r2: float, n: int, p: int, reml: bool) -> np.ndarray:
    """The gradient of eq. 10 in theta from its three parts (eq. 10b).

    ``terms`` holds, row by row, the derivatives of ``log|A|``, of ``r2`` and of
    ``log|RX^T RX|`` (:meth:`LMMProblem.gradient_terms`, additive over parts).
    """
    dof = n - p if reml else n
    out = terms[0] + (dof / r2) * terms[1]
    if reml:
        out = out + terms[2]
    return out


def lmm_evaluation(
    sums: LMMSums,
    n: int,
    p: int,
    sum_log_w: float,
    reml: bool,
    gradient_terms: Callable[[np.ndarray, np.ndarray], np.ndarray],
    gradient: bool,
) -> Evaluation:
    """The criterion of eq. 10 from ``sums`` and, with ``gradient``, its gradient (eq. 10b).

    ``gradient_terms(beta, RXtRX_inv)`` returns the three derivatives that
    :func:`lmm_gradient` combines (in memory, or summed over parts).
    """
    deviance = lmm_criterion(sums, n, p, sum_log_w, reml)
    if not gradient or not np.isfinite(deviance):
        return Evaluation(deviance, None, None, np.zeros(0))
    beta, r2 = sums.solution()
    terms = gradient_terms(beta, np.linalg.inv(sums.RXtRX))
    return Evaluation(deviance, lmm_gradient(terms, r2, n, p, reml), np.zeros(0), np.zeros(0))


class LMMProblem(TermsBookkeeping):
    """The profiled deviance of a weighted LMM and its exact gradient (see the module docstring).

    Parameters
    ----------
    X : ndarray of shape (n, p)
    y, weights, offset : ndarray of shape (n,)
    terms : list of CoreTerm
        The one with most levels first.
    controls : SolverControls
    reml : bool
        The criterion :meth:`evaluate` returns.
    """

    theta_is_cheap = True
    param_bounds = None
    n_coef = 0
    #: the last evaluation, (key, Evaluation), returned again for the same point
    _last = None

    def __init__(
        self, X, y, weights, offset, terms: list[CoreTerm], controls: SolverControls, reml: bool = True
    ):
        rows = row_order(terms[0].codes)
        self.controls = controls
        self.reml = bool(reml)
        positive = weights > 0
        self.n = int(positive.sum())
        self.p = X.shape[1]
        self.w = rows(np.asarray(weights, dtype=float))
        self.XT = np.ascontiguousarray(rows(X).T)
        self.r = rows(np.asarray(y, dtype=float) - offset)  # y - offset
        self.ZT = [np.ascontiguousarray(rows(t.Z).T) for t in terms]
        self.codes = [np.asarray(rows(np.asarray(t.codes)), dtype=np.intp) for t in terms]
        self.level_counts = [int(t.n_levels) for t in terms]
        self.theta_map = ThetaMap(
            [t.Z.shape[1] for t in terms], [(t.theta_rows, t.theta_cols) for t in terms]
        )
        self.n_rows = self.r.size
        self.sum_log_w = float(np.sum(np.log(self.w[self.w > 0])))
        self.blocks = TermBlocks(self.level_counts, self.theta_map.q)
        if len(terms) == 1:
            self._rows = TermRows(self.ZT[0], GroupIndex(self.codes[0], self.level_counts[0]))
            self._layout = None
            self._gram = OneTermGram(self._rows.outer(self.w))  # Z^T W Z per level, Z coordinates
        else:
            self._rows = None
            # the rows' layout only (term sums, row effects): BlockedGram factorises
            self._layout = RandomEffectsLayout(
                self.codes, self.level_counts, self.theta_map.q, factorised=False
            )
            self._gram = BlockedGram(self.codes, self.level_counts, self.theta_map.q, self.ZT, self.w)
        self._set_response_sums()

    def _set_response_sums(self) -> None:
        """The theta-free sums of the response and the design (Z coordinates, flat over terms)."""
        w, XT, r = self.w, self.XT, self.r
        system = self._system_for(self.theta_map.lambdas(np.zeros(self.n_theta)))

        def flat(values):
            return np.concatenate([s.ravel() for s in system.term_sums(values)])

        self._zx = np.stack([flat(w * x) for x in XT], axis=1) if self.p else np.zeros((self.blocks.size, 0))
        self._zy = flat(w * r)
        self.XWX = (XT * w) @ XT.T
        self.XWy = XT @ (w * r)
        self.yWy = float(np.dot(w, r * r))

    def _system_for(self, lambdas):
        if self._rows is not None:
            return TermSystem(self._rows, lambdas[0])
        return BlockedSystem(self._layout, self.ZT, lambdas)

    def _u_array(self, u: np.ndarray) -> np.ndarray:
        """Flat modes in the shape the row-level system takes."""
        u = np.asarray(u, dtype=float)
        return u.reshape(self.level_counts[0], self.theta_map.q[0]) if self._rows is not None else u

    # -- what the solver reads ---------------------------------------------------
    @property
    def linear_algebra(self) -> str:
        """How ``A`` is factorised (see :meth:`~._lmm_system.BlockedGram.describe`)."""
        return ONE_TERM if self._layout is None else self._gram.describe()

    def zero_modes(self) -> np.ndarray:
        return np.zeros(0)

    def start(self) -> Start:
        return Start(np.zeros(0), None, np.zeros((0, 0)))

    def subsample(self, n_levels: int) -> LMMProblem:
        return self

    def mode_derivative(self, theta, coef, param, state, dtheta, dcoef):
        return None

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
    ):
        """The profiled criterion at theta and, with ``gradient``, its exact gradient (eq. 10b).

        The solver asks for the same point again (its seed Hessian's centre,
        the start of its quasi-Newton steps): the last evaluation is kept and
        returned for an identical theta (nothing is warm-started, so it is the
        same result).
        """
        theta = np.asarray(theta, dtype=float)
        key = (theta.tobytes(), bool(gradient), self.reml)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        red = self.reduce(theta)
        ev = lmm_evaluation(
            red.sums,
            self.n,
            self.p,
            self.sum_log_w,
            self.reml,
            lambda beta, RXtRX_inv: self.gradient_terms(red, beta, RXtRX_inv),
            gradient,
        )
        self._last = (key, ev)
        return ev

    # -- penalised least squares ---------------------------------------------------
    def reduce(self, theta) -> LMMReduced:
        """The system at theta, reduced to the fixed effects (with ``A^{-1} K`` and ``A^{-1} c``)."""
        theta = np.array(theta, dtype=float)
        lambdas = self.theta_map.lambdas(theta)
        factor = self._gram.factor(lambdas)
        K = self.blocks.left(lambdas, self._zx)
        c = self.blocks.left(lambdas, self._zy)
        AinvK = factor.solve(K)
        Ainvc = factor.solve(c)
        sums = LMMSums(
            factor.logdet(), self.XWX - K.T @ AinvK, self.XWy - K.T @ Ainvc, self.yWy - float(c @ Ainvc)
        )
        return LMMReduced(theta, lambdas, factor, sums, AinvK, Ainvc)

    def gradient_terms(self, red: LMMReduced, beta, RXtRX_inv) -> np.ndarray:
        """Derivatives in theta of ``log|A|``, ``r2`` and ``log|RX^T RX|`` at a given beta (eq. 10b).

        ``r2`` and ``log|RX^T RX|`` are differentiated at ``beta`` and
        ``(RX^T RX)^{-1}`` of the whole data: for a part of the data (levels
        held apart) the rows add up to the whole's. Returns (3, n_theta).
        """
        lambdas, bl, gram = red.lambdas, self.blocks, self._gram
        beta = np.asarray(beta, dtype=float)
        u = red.Ainvc - red.AinvK @ beta
        # Z^T W (y - X beta - Z Lambda u): the residuals' level sums, from G
        T = self._zy - self._zx @ beta - gram.apply(bl.apply(lambdas, u))
        d_r2 = [-2.0 * bl.term(T, k).T @ bl.term(u, k) for k in range(len(lambdas))]
        d_logdet = red.factor.logdet_gradient()
        out = [self.theta_map.entries(d_logdet), self.theta_map.entries(d_r2)]
        if self.reml:
            # the same for the columns of X, weighted by (RX^T RX)^{-1}
            TX = self._zx - gram.apply(bl.apply(lambdas, red.AinvK))
            VQ = red.AinvK @ RXtRX_inv
            d_rx = [
                -2.0 * np.einsum("gap,gbp->ab", bl.term(TX, k), bl.term(VQ, k)) for k in range(len(lambdas))
            ]
            out.append(self.theta_map.entries(d_rx))
        else:
            out.append(np.zeros(self.n_theta))
        return np.stack(out)

    def reduced_sums(self, theta) -> LMMSums:
        """:class:`LMMSums` at theta (additive over parts of whole levels)."""
        return self.reduce(theta).sums

    def solve(self, theta):
        """Penalised least squares at theta: (beta, u, r2, logdet A, RX^T RX); ``u`` flat."""
        red = self.reduce(theta)
        beta, r2 = red.sums.solution()
        return beta, red.Ainvc - red.AinvK @ beta, r2, red.sums.logdet, red.sums.RXtRX

    def modes_given(self, theta, beta) -> np.ndarray:
        """``u`` at theta for a given beta (flat): ``A^{-1} (c - K beta)``."""
        red = self.reduce(theta)
        return red.Ainvc - red.AinvK @ np.asarray(beta, dtype=float)

    def residuals(self, theta, beta) -> np.ndarray:
        """``y - offset - X beta - Z Lambda u`` at theta and beta, rows in this problem's order."""
        system = self._system_for(self.theta_map.lambdas(theta))
        u = self._u_array(self.modes_given(theta, beta))
        return self.r - np.asarray(beta, dtype=float) @ self.XT - system.row_effect(u)

    def deviance(self, theta, reml: bool) -> float:
        """Profiled deviance (ML) or REML criterion at theta (eq. 10)."""
        return lmm_criterion(self.reduced_sums(theta), self.n, self.p, self.sum_log_w, reml)

    # -- inference ---------------------------------------------------------------------
    def random_effects(self, theta, u) -> list[np.ndarray]:
        """``b_k = U_k Lambda_k^T`` (relative to sigma) for every term."""
        lambdas = self.theta_map.lambdas(theta)
        u = np.asarray(u, dtype=float)
        return [self.blocks.term(u, k) @ lam.T for k, lam in enumerate(lambdas)]

    def conditional_covariances(self, result: LMMResult, state=None) -> list[np.ndarray] | None:
        """``sigma^2 Lambda_k (A^{-1})_{kg,kg} Lambda_k^T`` per term at a fit (lme4's ``condVar`` for ``lmer``).

        None for the solver's own record (a :class:`~._optimize.FitResult`
        has no sigma): :func:`fit_lmm` adds them to its :class:`LMMResult`.
        """
        if not isinstance(result, LMMResult):
            return None
        sigma2 = result.sigma**2
        lambdas = self.theta_map.lambdas(result.theta)
        factor = self._gram.factor(lambdas)
        return [
            sigma2 * np.einsum("ab,gbc,dc->gad", lam, block, lam)
            for lam, block in zip(lambdas, factor.inverse_blocks())
        ]

    def simulate_response(self, theta, beta, sigma: float, rng: np.random.Generator) -> np.ndarray:
        """``y - offset`` drawn from the model at (theta, beta, sigma), rows in this problem's order.

        ``u ~ N(0, I)`` over all terms' effects (drawn first), then the
        residuals ``e_i ~ N(0, sigma^2 / w_i)``.
        """
        u = rng.standard_normal(self.blocks.size)
        system = self._system_for(self.theta_map.lambdas(theta))
        e = sigma * rng.standard_normal(self.w.size) / np.sqrt(np.where(self.w > 0, self.w, 1.0))
        return beta @ self.XT + sigma * system.row_effect(self._u_array(u)) + e

    def with_response(self, r: np.ndarray) -> LMMProblem:
        """The same design with another ``y - offset`` (rows in this problem's order); the design is shared."""
        other = object.__new__(LMMProblem)
        other.__dict__.update(self.__dict__)
        other.r = np.asarray(r, dtype=float)
        other._set_response_sums()
        other._last = None
        return other

    def with_criterion(self, reml: bool) -> LMMProblem:
        """The same problem with the other criterion (REML or ML)."""
        other = object.__new__(LMMProblem)
        other.__dict__.update(self.__dict__)
        other.reml = bool(reml)
        other._last = None
        return other


def fit_lmm(problem: LMMProblem, *, verbose: int = 0) -> LMMResult:
    """Maximise the (restricted) likelihood of ``problem`` over theta, then profile beta and sigma."""
    result = fit(problem, compute_hessian=False, verbose=verbose)
    beta, u, r2, _, RXtRX = problem.solve(result.theta)
    dof = problem.n - problem.p if problem.reml else problem.n
    sigma2 = r2 / dof
    # -2 logLik under ML at these estimates, sigma and beta profiled (lme4's
    # deviance(m, REML = FALSE) for a REML fit)
    deviance_ml = problem.deviance(result.theta, reml=False) if problem.reml else result.deviance
    fields = {
        **result.__dict__,
        "coef": beta,
        "u": u,
        "message": result.message + f" of the {'REML' if problem.reml else 'ML'} criterion",
    }
    out = LMMResult(
        **fields,
        sigma=float(np.sqrt(sigma2)),
        vcov_beta=sigma2 * np.linalg.inv(RXtRX),
        reml=problem.reml,
        deviance_ml=float(deviance_ml),
    )
    out.conditional_covariances = problem.conditional_covariances(out)
    return out
