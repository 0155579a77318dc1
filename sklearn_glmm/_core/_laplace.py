"""The GLMM as a problem: the Laplace (or quadrature) deviance and its gradient, by shards.

Model (``docs/theory.md`` eq. 1), with ``K`` random-effects terms::

    eta_i = offset_i + x_i^T beta + sum_k z_ik^T Lambda_k(theta) u_{k, g_k(i)},   u ~ N(0, I)

The Laplace approximation to ``-2 log L(theta, beta)`` is (eq. 3; lme4's
``laplace()``)::

    D(theta, beta) = -2 sum_i w_i log p(y_i | mu_i*) + ||u*||^2 + log det A

with the modes ``u*`` from :func:`~._pirls.pirls` and ``A`` factorised at them
(:mod:`._system`); its gradient is :func:`~._gradient.laplace_gradient`.
:class:`LaplaceProblem` implements the problem protocol (:mod:`._problem`) for
one grouping factor or several, for adaptive Gauss-Hermite quadrature
(``n_agq > 1``, :mod:`._agq`) and for the zero-inflated Poisson model (a
zero-inflation design ``X_zi``: the row kernel is :class:`~._zip.ZIPKernel`
and the coefficients are ``(beta, gamma)``).

Shards. Rows are sorted once by the levels of the largest factor, and cut into
*shards* that each hold whole levels of it (``controls.shard_rows`` rows or so;
one shard by default). With one grouping factor the penalised deviance and its
gradient are sums over levels, so an evaluation is a sum over shards of
:meth:`LaplaceProblem.evaluate_shard` -- the same code for one shard or many;
only ``(theta, coef, param)`` goes in and a deviance, a gradient and the
shard's modes come out. The shards run on a :class:`~._parallel.ShardRunner`'s
threads (an estimator's ``n_jobs``), at least one shard per thread. Several crossed factors couple every level, and their
evaluation is one shard (the reduced system of eq. 14 lives inside it).

Group sums. For a Poisson random intercept the rows of a level enter the
penalised deviance only through ``Y_g = sum w_i y_i`` and ``E_g = sum w_i
exp(offset_i + x_i^T beta)``: ``sum_{i in g} loglik_i = K_g + Y_g b_g - E_g exp(b_g)``
with ``K_g`` free of ``b``. A Poisson "row" per level with prior weight
``E_g``, response ``Y_g / E_g`` and no offset has exactly the kernel
``Y_g b - E_g exp(b)``, so the same modes, log-determinant and theta gradient;
the beta gradient is the row derivative (:mod:`._gradient`) in ``E_g`` times
``dE_g / dbeta = sum_{i in g} w_i exp(eta_i) x_i``. The shard runs the same
PIRLS and gradient on those ``G`` collapsed rows (a choice of rows, not a
second algorithm), so an evaluation that moves only theta costs O(G).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from ..families import Family, IRLSQuantities, LogLink, PoissonFamily
from ._agq import QuadratureRule, agq_deviance
from ._blocked import ONE_TERM, RandomEffectsLayout
from ._controls import SolverControls
from ._glm import FamilyGLM, fit_glm
from ._gradient import laplace_gradient, mode_derivative
from ._linalg import GroupIndex, row_order
from ._parallel import ShardRunner
from ._pirls import Modes, pirls
from ._problem import Evaluation, Start
from ._system import BlockedSystem, TermRows, TermsBookkeeping, TermSystem, ThetaMap
from ._zip import ZIPKernel, ZIPLikelihood

__all__ = [
    "CoreTerm",
    "LaplaceProblem",
    "RowCurvature",
    "RowSelection",
    "ShardResult",
    "evenly_spaced_levels",
]


@dataclass
class CoreTerm:
    """One random-effects term as the core needs it.

    Attributes
    ----------
    codes : ndarray of shape (n,)
        Level of each row, ``0 .. n_levels - 1``.
    Z : ndarray of shape (n, q)
        Term covariates of each row.
    n_levels : int
    theta_rows, theta_cols : ndarray
        Position in ``Lambda`` of each of the term's theta elements (a full
        lower triangle, or only some entries for uncorrelated terms).
    """

    codes: np.ndarray
    Z: np.ndarray
    n_levels: int
    theta_rows: np.ndarray
    theta_cols: np.ndarray


@dataclass
class ShardResult:
    """What one shard's evaluation returns (all of it O(levels), but ``state``)."""

    deviance: float
    grad_theta: np.ndarray | None
    grad_coef: np.ndarray | None
    grad_param: float | None
    u: np.ndarray
    converged: bool
    state: Modes | None


#: rows per level of the factors other than the largest that a stage-1 subsample keeps on average
SUBSAMPLE_ROWS_PER_LEVEL = 5


def evenly_spaced_levels(n_levels: int, n_kept: int) -> np.ndarray:
    """About ``n_kept`` level positions spread evenly over ``0 .. n_levels - 1`` (the stage-1 subsample)."""
    return np.unique(np.linspace(0, n_levels - 1, n_kept).round().astype(np.intp))


@dataclass
class RowSelection:
    """Rows of some levels (transposed, as a problem stores them), with each term's level codes."""

    XT: np.ndarray
    y: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    ZT: list[np.ndarray]
    codes: list[np.ndarray]
    XZT: np.ndarray | None

    @staticmethod
    def concatenate(parts: list[RowSelection]) -> RowSelection:
        """The rows of several selections, one after the other."""

        def cat(arrays, axis=0):
            return np.concatenate(arrays, axis=axis)

        first = parts[0]
        return RowSelection(
            cat([p.XT for p in parts], 1),
            cat([p.y for p in parts]),
            cat([p.weights for p in parts]),
            cat([p.offset for p in parts]),
            [cat([p.ZT[k] for p in parts], 1) for k in range(len(first.ZT))],
            [cat([p.codes[k] for p in parts]) for k in range(len(first.codes))],
            None if first.XZT is None else cat([p.XZT for p in parts], 1),
        )

    def problem(
        self, family: Family, theta_map: ThetaMap, controls: SolverControls, n_agq: int = 1
    ) -> LaplaceProblem:
        """The model on these rows, each term's levels recoded to those present."""
        terms = []
        for k, codes in enumerate(self.codes):
            levels, local = np.unique(codes, return_inverse=True)
            terms.append(CoreTerm(local.ravel(), self.ZT[k].T, levels.size, *theta_map.positions[k]))
        return LaplaceProblem(
            family,
            self.XT.T,
            self.y,
            self.weights,
            self.offset,
            terms,
            controls,
            n_agq=n_agq,
            X_zi=None if self.XZT is None else self.XZT.T,
        )


class _Shard:
    """Whole levels of the largest factor: their rows and penalised-system structure."""

    def __init__(self, XT, y, w, offset, ZT, codes, n_levels, XZT, u_slice, layout=None, groups=None):
        self.XT, self.y, self.w, self.offset, self.XZT = XT, y, w, offset, XZT
        self.ZT, self.codes, self.n_levels = ZT, codes, n_levels
        self.u_slice = u_slice
        self.layout = layout
        if layout is None:
            self.groups = GroupIndex(codes[0], n_levels[0]) if groups is None else groups
            self.rows = TermRows(ZT[0], self.groups)
            self.u_shape = (n_levels[0], ZT[0].shape[0])
        else:
            self.groups = layout.groups
            self.rows = None
            self.u_shape = (layout.size,)
        self._collapsed = None
        self.kernel = None

    def system(self, lambdas):
        if self.rows is not None:
            return TermSystem(self.rows, lambdas[0])
        return BlockedSystem(self.layout, self.ZT, lambdas)

    def collapsed(self, beta: np.ndarray) -> _CollapsedRows:
        """The level sums of a Poisson random intercept at ``beta`` (the last beta's are kept)."""
        cached = self._collapsed
        if cached is None or not np.array_equal(cached.beta, beta):
            cached = self._collapsed = _CollapsedRows(self, beta, None if cached is None else cached)
        return cached


class _CollapsedRows:
    """One Poisson "row" per level: weight ``E_g``, response ``Y_g / E_g`` (see the module docstring)."""

    def __init__(self, shard: _Shard, beta: np.ndarray, previous: _CollapsedRows | None):
        G = shard.n_levels[0]
        if previous is None:
            w, y = shard.w, shard.y
            self.unit = bool(np.all(w == 1.0))
            self.wy = y if self.unit else w * y
            self.Y = shard.groups.sum(self.wy)
            self.XTwy = shard.XT @ self.wy
            self.rows = TermRows(np.ones((1, G)), GroupIndex(np.arange(G), G))
            self.family = PoissonFamily()
            self.zeros = np.zeros(G)
        else:
            self.unit, self.wy, self.Y, self.XTwy = previous.unit, previous.wy, previous.Y, previous.XTwy
            self.rows, self.family, self.zeros = previous.rows, previous.family, previous.zeros
        self.beta = np.array(beta, copy=True)
        eta_fixed = shard.offset + beta @ shard.XT
        self.K = float(np.dot(self.wy, eta_fixed))
        m = np.exp(eta_fixed, out=eta_fixed)
        if not self.unit:
            m *= shard.w
        self.m = m
        self.E = shard.groups.sum(m)
        # levels without a positive weight have E = 0 and Y = 0: a row of weight 0
        y = np.divide(self.Y, self.E, out=np.zeros_like(self.Y), where=self.E > 0)
        self.kernel = self.family.row_kernel(y, self.E)


class RowCurvature:
    """Derivatives of ``D`` in the rows' fixed linear predictor at one point.

    With ``eta_fixed_i = offset_i + x_i^T beta`` treated as a free value per
    row (the boosted fixed part ``F(x_i)`` of :mod:`._boost`),
    :meth:`LaplaceProblem.row_derivatives` returns this record. Rows are in
    the problem's order.

    Attributes
    ----------
    gradient : ndarray of shape (n,)
        ``dD/deta_fixed_i``: the row derivative of eq. 6 (exact; the
        gradient's ``eta_derivative``).
    hessian : ndarray of shape (n,)
        ``d^2 pdev(u*) / deta_fixed_i^2 = 2 Wobs_i (1 - Wobs_i h_i)`` with
        ``h_i = zl_i^T A^{-1} zl_i``: the diagonal of the Hessian of the
        penalised part of ``D`` (eq. 3 without the log-determinant), ``2
        (Wobs^{-1} + Z Lambda Lambda^T Z^T)^{-1}``; the modes absorb part of
        a change of ``eta_fixed_i``. It is exact for the penalised part when
        the log-determinant uses the observed information (canonical links,
        the exact Laplace of NB and Gamma); the log-determinant's second
        derivative, O(1) per level rather than per row, is left out.
    u : ndarray
        The modes (flat).
    """

    def __init__(self, gradient, hessian, u, parts):
        self.gradient, self.hessian, self.u = gradient, hessian, u
        self._parts = parts

    def partition_information(self, labels: np.ndarray, n_labels: int) -> np.ndarray:
        """Hessian of the penalised part of ``D`` in one shift per part of a partition of the rows.

        For ``eta_fixed_i + c_{labels_i}`` (the leaves of a tree) it is the
        full Hessian of :attr:`hessian` summed over the parts, off-diagonal
        couplings included::

            d^2 pdev / dc^2 = 2 (L^T Wobs L - K^T A^{-1} K),   K = Lambda^T Z^T Wobs L

        with ``L`` the rows' indicator matrix of the parts: a shift common to
        all rows of a level is mostly absorbed by its random effect, which the
        diagonal alone does not see. With one grouping factor ``K`` is formed
        per level and part in one pass per column of Z; with several, one
        pass per part.

        Parameters
        ----------
        labels : ndarray of int of shape (n,)
            The part of each row, ``0 .. n_labels - 1`` (problem's row order).
        n_labels : int

        Returns
        -------
        ndarray of shape (n_labels, n_labels)
        """
        J = int(n_labels)
        info = np.zeros((J, J))
        start = 0
        for shard, system, modes in self._parts:
            wobs = modes.irls.hessian_weights
            lab = np.asarray(labels[start : start + wobs.size], dtype=np.intp)
            start += wobs.size
            info[np.diag_indices(J)] += np.bincount(lab, weights=wobs, minlength=J)
            if isinstance(system, TermSystem):
                # K_g in Z coordinates, (G, J, q): sums over (level, part) pairs
                G, q = system.n_units, system.q
                key = shard.groups.codes * J + lab
                Kz = np.empty((G, J, q))
                for k in range(q):
                    z = system.rows.ZT[k]
                    Kz[:, :, k] = np.bincount(
                        key, weights=wobs if system.rows.ones[k] else wobs * z, minlength=G * J
                    ).reshape(G, J)
                Ku = Kz @ system.lam  # rows zl^T: (G, J, q)
                Ainv = modes.factor.inverse()
                if q == 1:
                    Ku = Ku[:, :, 0]
                    info -= (Ku * Ainv[:, 0, :]).T @ Ku
                else:
                    info -= np.einsum("gjq,gqr,gkr->jk", Ku, Ainv, Ku)
            else:
                K = np.stack([system.to_u(system.term_sums(np.where(lab == j, wobs, 0.0))) for j in range(J)])
                solved = np.stack([modes.factor.solve(k) for k in K])
                coupling = K @ solved.T
                info -= 0.5 * (coupling + coupling.T)
        return 2.0 * info


class LaplaceProblem(TermsBookkeeping):
    """A GLMM with one or several random-effects terms (see the module docstring).

    Parameters
    ----------
    family : Family
    X : ndarray of shape (n, p)
        Fixed-effects design, intercept included.
    y, weights, offset : ndarray of shape (n,)
    terms : list of CoreTerm
        The first term is kept block diagonal: pass the one with most levels
        first (the others make up a dense or sparse Schur complement, see
        :mod:`._blocked` and :mod:`._sparse_system`).
    controls : SolverControls
    n_agq : int, default=1
        Quadrature points (1: the Laplace approximation); more need one term
        with one random effect per level.
    X_zi : ndarray of shape (n, pz) or None
        Zero-inflation design (intercept included) of a zero-inflated Poisson
        model; ``family`` must then be Poisson.
    runner : ShardRunner or None
        Runs the shards (on its threads); with ``n`` threads and one grouping
        factor the rows are cut into at least ``n`` shards of about equal
        rows. None: one thread.
    """

    def __init__(
        self,
        family: Family,
        X,
        y,
        weights,
        offset,
        terms: list[CoreTerm],
        controls: SolverControls,
        *,
        n_agq: int = 1,
        X_zi: np.ndarray | None = None,
        runner: ShardRunner | None = None,
    ):
        if n_agq > 1 and (len(terms) != 1 or terms[0].Z.shape[1] != 1):
            raise ValueError(
                "Adaptive Gauss-Hermite quadrature (n_agq > 1) needs a single scalar random effect per "
                "group, as lme4's nAGQ; use n_agq=1 (Laplace)."
            )
        # Rows sorted by the first term's levels once, so that every level sum
        # is a contiguous reduction (see GroupIndex); nothing returned is per
        # row, so the order never leaks out. Sorted data is used without copies.
        # Per-row matrices are stored transposed (XT is p x n, ZT q x n): each
        # covariate is one contiguous row (an F-ordered X is that already).
        rows = row_order(terms[0].codes)
        self.family = family
        self.controls = controls
        self.XT = np.ascontiguousarray(rows(X).T)
        self.y = rows(np.asarray(y, dtype=float))
        self.weights = rows(weights)
        self.offset = rows(offset)
        self.ZT = [np.ascontiguousarray(rows(t.Z).T) for t in terms]
        self.codes = [np.asarray(rows(np.asarray(t.codes)), dtype=np.intp) for t in terms]
        self.level_counts = [int(t.n_levels) for t in terms]
        self.XZT = None if X_zi is None else np.ascontiguousarray(rows(X_zi).T)
        self.theta_map = ThetaMap(
            [t.Z.shape[1] for t in terms], [(t.theta_rows, t.theta_cols) for t in terms]
        )
        self.n_agq = int(n_agq)
        self.quadrature = QuadratureRule(self.n_agq) if self.n_agq > 1 else None
        self.n_beta = self.XT.shape[0]
        self.n_coef = self.n_beta + (0 if self.XZT is None else self.XZT.shape[0])
        self.n_rows = self.y.size
        self._constant = family.loglik_constant(self.y, self.weights)
        self._y_values = None
        self.layout = (
            None if len(terms) == 1 else RandomEffectsLayout(self.codes, self.level_counts, self.theta_map.q)
        )
        #: the levels of the largest factor over all rows
        self.groups = (
            self.layout.groups if self.layout is not None else GroupIndex(self.codes[0], self.level_counts[0])
        )
        self.runner = ShardRunner() if runner is None else runner
        self.shards = self._make_shards(controls.shard_rows, self.runner.n_threads)
        self._collapsible = (
            isinstance(family, PoissonFamily)
            and isinstance(family.link, LogLink)
            and self.XZT is None
            and self.n_agq == 1
            and self.layout is None
            and self.shards[0].rows.intercept_only
        )

    # -- shards --------------------------------------------------------------
    def _make_shards(self, shard_rows: int | None, n_threads: int) -> list[_Shard]:
        G0, q0 = self.level_counts[0], self.theta_map.q[0]
        n_shards = max(1 if shard_rows is None else -(-self.n_rows // shard_rows), n_threads)
        if self.layout is not None or n_shards == 1:
            return [
                _Shard(
                    self.XT,
                    self.y,
                    self.weights,
                    self.offset,
                    self.ZT,
                    self.codes,
                    self.level_counts,
                    self.XZT,
                    slice(0, self.u_size),
                    self.layout,
                    self.groups,
                )
            ]
        # cut after the levels where the rows reach k / n_shards of the total:
        # n_shards shards (fewer when levels are larger) of about equal rows
        ends = np.cumsum(self.groups.counts)
        targets = np.arange(1, n_shards) * (self.n_rows / n_shards)
        cuts = np.unique(np.searchsorted(ends, targets, side="left") + 1)
        bounds = [0, *[int(c) for c in cuts if 0 < c < G0], G0]
        level_ends = np.concatenate([[0], ends])
        shards = []
        for g0, g1 in pairwise(bounds):
            rows = slice(int(level_ends[g0]), int(level_ends[g1]))
            shards.append(
                _Shard(
                    self.XT[:, rows],
                    self.y[rows],
                    self.weights[rows],
                    self.offset[rows],
                    [z[:, rows] for z in self.ZT],
                    [self.codes[0][rows] - g0],
                    [g1 - g0],
                    None if self.XZT is None else self.XZT[:, rows],
                    slice(g0 * q0, g1 * q0),
                )
            )
        return shards

    # -- what the solver reads -----------------------------------------------
    @property
    def u_size(self) -> int:
        return self.layout.size if self.layout is not None else self.level_counts[0] * self.theta_map.q[0]

    @property
    def param_bounds(self):
        return self.family.param_bounds if self.family.has_param else None

    @property
    def linear_algebra(self) -> str:
        """How ``A`` is factorised (see :meth:`~._blocked.RandomEffectsLayout.describe`)."""
        return ONE_TERM if self.layout is None else self.layout.describe()

    @property
    def theta_is_cheap(self) -> bool:
        """Whether evaluations that change only theta cost O(levels) (a Poisson random intercept)."""
        return self._collapsible

    def zero_modes(self) -> np.ndarray:
        return np.zeros(self.u_size)

    def family_at(self, param: float | None) -> Family:
        """The family with its extra parameter set (itself when ``param`` is None)."""
        return self.family if param is None else self.family.with_param(param)

    def _point(self, theta, coef, param, u0):
        """The family, ``Lambda_k``, ``(beta, gamma)`` and modes of a point."""
        beta, gamma = self.split_coef(coef)
        return self.family_at(param), self.theta_map.lambdas(theta), beta, gamma, np.asarray(u0, dtype=float)

    def split_coef(self, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(beta, gamma)``: the count model's and the zero-inflation coefficients."""
        coef = np.asarray(coef, dtype=float)
        if self.XZT is None:
            return coef, None
        return coef[: self.n_beta], coef[self.n_beta :]

    def start(self) -> Start:
        """The GLM fit (theta = 0) on this problem's rows, by :func:`~._glm.fit_glm`."""
        X, y, w, offset = self.XT.T, self.y, self.weights, self.offset
        controls = self.controls
        if self.XZT is not None:
            fit = fit_glm(ZIPLikelihood(X, self.XZT.T, y, w, offset), controls)
            return Start(fit.coef, None, fit.information, fit.notes)
        family = self.family
        fit = fit_glm(FamilyGLM(family, X, y, w, offset), controls)
        param = None
        if family.has_param:
            # the parameter's start from the GLM fit, then the GLM at that value
            mu = family.link.inverse(offset + X @ fit.coef)
            param = family.starting_param(y, mu, w, max(int(np.sum(w > 0)) - X.shape[1], 1))
            fit = fit_glm(FamilyGLM(family.with_param(param), X, y, w, offset), controls)
        eta = offset + X @ fit.coef
        W = self.family_at(param).irls_quantities(y, eta, w).weights
        return Start(fit.coef, param, (self.XT * W) @ X, fit.notes)

    def subsample(self, n_levels: int) -> LaplaceProblem:
        """The same model on ``n_levels`` evenly spaced levels of the largest factor.

        Stage 1 of the solver only needs a start; on a few hundred levels that
        start is within the sampling error of the optimum. The rows of the kept
        levels keep every other factor's levels they meet, recoded to those
        present. Itself when the largest factor has at most twice as many
        levels, and for quadrature (its shortcuts are the Laplace deviance's).
        With several factors the subsample keeps enough levels of the largest
        that the other factors' levels keep ``SUBSAMPLE_ROWS_PER_LEVEL`` rows
        on average: two large crossed factors (each level of the other meeting
        a few of the largest) leave no subsample, as a subsample would hold a
        row or none per level of the other factor and no information on its
        variance.
        """
        G = self.level_counts[0]
        if self.layout is not None:
            rows_per_level = min(self.n_rows / g for g in self.level_counts[1:])
            n_levels = max(n_levels, int(np.ceil(SUBSAMPLE_ROWS_PER_LEVEL * G / rows_per_level)))
        if G <= 2 * n_levels or self.n_agq > 1:
            return self
        mask = np.zeros(G, dtype=bool)
        mask[evenly_spaced_levels(G, n_levels)] = True
        return self.rows_of_levels(mask).problem(self.family, self.theta_map, self.controls)

    def rows_of_levels(self, mask: np.ndarray, levels: list[np.ndarray] | None = None) -> RowSelection:
        """The rows of the levels of the largest factor where ``mask`` is True.

        ``levels`` maps each term's codes to other labels (a part's local
        levels to the whole data's); None keeps the codes.
        """
        rows = self.groups.expand(np.asarray(mask, dtype=bool))
        codes = [c[rows] for c in self.codes]
        if levels is not None:
            codes = [np.asarray(lv)[c] for lv, c in zip(levels, codes)]
        return RowSelection(
            self.XT[:, rows],
            self.y[rows],
            self.weights[rows],
            self.offset[rows],
            [z[:, rows] for z in self.ZT],
            codes,
            None if self.XZT is None else self.XZT[:, rows],
        )

    # -- the deviance ----------------------------------------------------------
    def _constant_at(self, family: Family) -> float:
        """``loglik_constant`` at the family's parameter.

        When it is a weighted sum over rows of a function of y alone (NB,
        Gamma), it is summed over the distinct values of y with their summed
        weights: counts take few values, so the gammas cost O(distinct y), not
        O(n), for each new parameter value.
        """
        if family is self.family:
            return self._constant
        if not family.constant_linear_in_weights:
            return family.loglik_constant(self.y, self.weights)
        if self._y_values is None:
            values, inverse = np.unique(self.y, return_inverse=True)
            self._y_values = (
                values,
                np.bincount(inverse.ravel(), weights=self.weights, minlength=values.size),
            )
        values, weight_sums = self._y_values
        if 4 * values.size > self.y.size:
            return family.loglik_constant(self.y, self.weights)
        return family.loglik_constant(values, weight_sums)

    def _kernel(self, shard: _Shard, family: Family, gamma):
        """The shard's row kernel for the family (the last family's is kept: it costs a pass)."""
        if gamma is not None:
            return ZIPKernel(shard.y, shard.w, gamma @ shard.XZT)
        cached = shard.kernel
        if cached is None or cached[0] is not family:
            cached = shard.kernel = (family, family.row_kernel(shard.y, shard.w))
        return cached[1]

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
        """Deviance (and gradient) at (theta, coef, param), PIRLS warm-started from ``u0``.

        The sum over shards of :meth:`evaluate_shard`, plus the family's
        constant. ``predicted=True`` says that ``u0`` is accurate to second
        order (see :func:`~._pirls.pirls`); ``theta_only=True`` computes the
        gradient in theta alone (the others are returned as zeros).
        """
        family, lambdas, beta, gamma, u0 = self._point(theta, coef, param, u0)
        parts = self.runner.map(
            lambda s: self.evaluate_shard(
                s, lambdas, beta, gamma, family, u0[s.u_slice], gradient, predicted, theta_only
            ),
            self.shards,
        )
        deviance = float(sum(p.deviance for p in parts))
        if self.quadrature is None:
            deviance -= 2.0 * self._constant_at(family)
        u = np.concatenate([p.u for p in parts]) if len(parts) > 1 else parts[0].u
        converged = all(p.converged for p in parts)
        state = [p.state for p in parts]
        if not gradient:
            return Evaluation(deviance, None, None, u, converged, None, state)
        grad_theta = sum(p.grad_theta for p in parts)
        grad_coef = sum(p.grad_coef for p in parts)
        grad_param = None
        if family.has_param and theta_only:
            grad_param = 0.0
        elif family.has_param:
            if self.quadrature is None:
                grad_param = float(sum(p.grad_param for p in parts))
            else:
                # a central difference in the parameter (deviance scale)
                h = 1e-6 * param
                up = self.evaluate(theta, coef, param + h, u, gradient=False).deviance
                down = self.evaluate(theta, coef, param - h, u, gradient=False).deviance
                grad_param = (up - down) / (2.0 * h)
        return Evaluation(deviance, grad_theta, grad_coef, u, converged, grad_param, state)

    def evaluate_shard(
        self,
        shard: _Shard,
        lambdas,
        beta,
        gamma,
        family: Family,
        u0,
        gradient: bool,
        predicted: bool,
        theta_only: bool = False,
    ) -> ShardResult:
        """One shard's part of the deviance and gradient (without the family's constant)."""
        if self._collapsible:
            return self._evaluate_collapsed(shard, lambdas, beta, u0, gradient, theta_only)
        kernel = self._kernel(shard, family, gamma)
        system = shard.system(lambdas)
        eta_fixed = shard.offset + beta @ shard.XT
        modes = pirls(kernel, system, eta_fixed, u0.reshape(shard.u_shape), self.controls, predicted)
        del eta_fixed
        if self.quadrature is not None:
            deviance, grads = agq_deviance(
                shard, family, kernel, float(lambdas[0][0, 0]), modes, self.quadrature, gradient
            )
            if not gradient:
                return ShardResult(deviance, None, None, None, modes.u.ravel(), modes.converged, None)
            return ShardResult(
                deviance, np.array([grads[0]]), grads[1], None, modes.u.ravel(), modes.converged, None
            )
        deviance = modes.pdev + modes.factor.logdet()
        if not gradient:
            return ShardResult(deviance, None, None, None, modes.u.ravel(), modes.converged, _slim(modes))
        grad_theta, eta_derivative, sens = laplace_gradient(kernel, system, modes, self.theta_map)
        if theta_only:
            return ShardResult(
                deviance,
                grad_theta,
                np.zeros(self.n_coef),
                None,
                modes.u.ravel(),
                modes.converged,
                _slim(modes),
            )
        grad_coef = shard.XT @ eta_derivative
        del eta_derivative
        if gamma is not None:
            grad_coef = np.concatenate(
                [grad_coef, shard.XZT @ sens.derivative(*kernel.zeta_row_derivatives(modes.eta))]
            )
        grad_param = None
        if family.has_param:
            grad_param = float(np.sum(sens.derivative(*kernel.param_row_derivatives(modes.irls, modes.eta))))
        return ShardResult(
            deviance, grad_theta, grad_coef, grad_param, modes.u.ravel(), modes.converged, _slim(modes)
        )

    def _evaluate_collapsed(
        self, shard: _Shard, lambdas, beta, u0, gradient: bool, theta_only: bool
    ) -> ShardResult:
        """A Poisson random intercept on its level sums (see the module docstring)."""
        rows = shard.collapsed(beta)
        system = TermSystem(rows.rows, lambdas[0])
        modes = pirls(rows.kernel, system, rows.zeros, u0.reshape(shard.u_shape), self.controls)
        # the collapsed rows' kernel lacks the levels' K_g
        deviance = modes.pdev - 2.0 * rows.K + modes.factor.logdet()
        if not gradient:
            return ShardResult(deviance, None, None, None, modes.u.ravel(), modes.converged, None)
        grad_theta, _, sens = laplace_gradient(rows.kernel, system, modes, self.theta_map)
        if theta_only:
            return ShardResult(
                deviance, grad_theta, np.zeros(self.n_coef), None, modes.u.ravel(), modes.converged, None
            )
        # d/dE_g: dll = -exp(b), dW = exp(b), ds = -exp(b); then dE_g/dbeta = sum m_i x_i
        eb = modes.irls.mu
        per_level = sens.derivative(-eb, eb, -eb)
        grad_beta = shard.XT @ (rows.m * shard.groups.expand(per_level)) - 2.0 * rows.XTwy
        return ShardResult(deviance, grad_theta, grad_beta, None, modes.u.ravel(), modes.converged, None)

    def mode_derivative(self, theta, coef, param, state, dtheta, dcoef) -> np.ndarray | None:
        """Directional derivative of the modes at an evaluation (see :func:`~._gradient.mode_derivative`).

        None for the group-sums path (PIRLS costs O(levels) there anyway), for
        quadrature and zero inflation, and where the log-determinant uses the
        Fisher information.
        """
        if self._collapsible or self.quadrature is not None or self.XZT is not None or state is None:
            return None
        if any(s is None for s in state):
            return None
        lambdas = self.theta_map.lambdas(theta)
        dlams = self.theta_map.lambdas(dtheta)
        dbeta = np.asarray(dcoef, dtype=float)

        def shard_derivative(item):
            shard, modes = item
            deta = dbeta @ shard.XT if np.any(dbeta) else None
            return mode_derivative(shard.system(lambdas), modes, dlams, deta)

        out = self.runner.map(shard_derivative, zip(self.shards, state))
        if any(du is None for du in out):
            return None
        return np.concatenate([du.ravel() for du in out])

    # -- the fixed part as a function (boosting, :mod:`._boost`) ------------------
    def with_offset(self, offset: np.ndarray) -> LaplaceProblem:
        """The same model with another offset (rows in this problem's order); nothing else is recomputed.

        The boosting fit (:mod:`._boost`) moves its fixed part ``F`` into the
        offset at every iteration; the rows' order, the levels and the
        family's constant stay.
        """
        new = copy.copy(self)
        new.offset = np.asarray(offset, dtype=float)
        new.shards = new._make_shards(self.controls.shard_rows, self.runner.n_threads)
        return new

    def row_derivatives(self, theta, coef, param, u0) -> RowCurvature:
        """Derivatives of ``D`` in each row's fixed linear predictor (see :class:`RowCurvature`).

        Parameters
        ----------
        theta, coef, param, u0
            As :meth:`evaluate` (``u0``: warm start of PIRLS).
        """
        if self.quadrature is not None or self.XZT is not None:
            raise ValueError("row_derivatives is the Laplace deviance's (n_agq = 1, no zero inflation).")
        parts, gradients, hessians, us = [], [], [], []
        for shard, kernel, system, modes in self.modes(theta, coef, param, u0, rows=True):
            _, eta_derivative, sens = laplace_gradient(kernel, system, modes, self.theta_map)
            wobs = modes.irls.hessian_weights
            gradients.append(eta_derivative)
            hessians.append(2.0 * wobs * (1.0 - wobs * sens.h))
            us.append(modes.u.ravel())
            parts.append((shard, system, modes))
        if len(gradients) == 1:
            return RowCurvature(gradients[0], hessians[0], us[0], parts)
        return RowCurvature(np.concatenate(gradients), np.concatenate(hessians), np.concatenate(us), parts)

    # -- inference ---------------------------------------------------------------
    def random_effects(self, theta, u) -> list[np.ndarray]:
        """``b_k = U_k Lambda_k^T`` for every term: list of (G_k, q_k)."""
        return [U @ lam.T for U, lam in zip(self._split_u(u), self.theta_map.lambdas(theta))]

    def _split_u(self, u) -> list[np.ndarray]:
        u = np.asarray(u, dtype=float)
        if self.layout is not None:
            return self.layout.split(u)
        return [u.reshape(self.level_counts[0], self.theta_map.q[0])]

    def modes(self, theta, coef, param, u0, rows: bool = True) -> list[tuple[_Shard, object, object, Modes]]:
        """PIRLS at (theta, coef, param) from ``u0``, per shard: (shard, kernel, system, modes).

        ``rows=False`` allows the level sums of a Poisson random intercept (the
        same modes and factor; no per-row quantities).
        """
        family, lambdas, beta, gamma, u0 = self._point(theta, coef, param, u0)

        def shard_modes(shard):
            start = u0[shard.u_slice].reshape(shard.u_shape)
            if self._collapsible and not rows:
                collapsed = shard.collapsed(beta)
                kernel, system = collapsed.kernel, TermSystem(collapsed.rows, lambdas[0])
                modes = pirls(kernel, system, collapsed.zeros, start, self.controls)
            else:
                kernel, system = self._kernel(shard, family, gamma), shard.system(lambdas)
                modes = pirls(kernel, system, shard.offset + beta @ shard.XT, start, self.controls)
            return shard, kernel, system, modes

        return self.runner.map(shard_modes, self.shards)

    def conditional_covariances(self, result, state=None) -> list[np.ndarray]:
        """``Lambda_k (A^{-1})_{kg,kg} Lambda_k^T`` per term at a fit's estimates (lme4's ``condVar``).

        A list of (G_k, q_k, q_k) arrays, from the factors of ``state`` (the
        evaluation at the estimates) when it has them; otherwise the modes are
        recomputed from the fit's ``u`` (one PIRLS step when ``u`` is the mode).
        """
        return self.conditional_covariances_at(result.theta, result.coef, result.param, result.u, state)

    def conditional_covariances_at(self, theta, coef, param, u, state=None) -> list[np.ndarray]:
        """:meth:`conditional_covariances` at a point, with the modes ``u`` there (or near)."""
        lambdas = self.theta_map.lambdas(theta)
        if state is not None and all(m is not None for m in state):
            systems = [shard.system(lambdas) for shard in self.shards]
            per_shard = [system.inverse_blocks(m.factor) for system, m in zip(systems, state)]
        else:
            modes = self.modes(theta, coef, param, u, rows=False)
            per_shard = [system.inverse_blocks(m.factor) for _, _, system, m in modes]
        blocks = [np.concatenate(parts) for parts in zip(*per_shard)]
        return [np.einsum("ab,gbc,dc->gad", lam, block, lam) for lam, block in zip(lambdas, blocks)]

    def coef_information(self, theta, coef, param, u) -> np.ndarray:
        """Information of beta with theta fixed: ``X^T W X - K^T A^{-1} K`` (lme4's ``RX``).

        ``K = Lambda^T Z^T W X`` with the Fisher weights at the modes.
        """

        def shard_information(item):
            shard, _, system, modes = item
            W = modes.irls.weights
            K = np.stack([system.to_u(system.term_sums(W * x)).ravel() for x in shard.XT], axis=1)
            AinvK = np.stack([modes.factor.solve(k.reshape(shard.u_shape)).ravel() for k in K.T], axis=1)
            return (shard.XT * W) @ shard.XT.T - K.T @ AinvK

        return sum(self.runner.map(shard_information, self.modes(theta, coef, param, u)))

    def linear_predictor(self, theta, coef, u) -> np.ndarray:
        """``eta = offset + X beta + Z Lambda u`` in this problem's row order."""
        lambdas = self.theta_map.lambdas(theta)
        beta, _ = self.split_coef(coef)
        u = np.asarray(u, dtype=float)
        return np.concatenate(
            [
                s.offset + beta @ s.XT + s.system(lambdas).row_effect(u[s.u_slice].reshape(s.u_shape))
                for s in self.shards
            ]
        )

    def simulate_response(self, theta, coef, param, rng: np.random.Generator) -> np.ndarray:
        """``y`` drawn from the model with new random effects ``u ~ N(0, I)`` (drawn first)."""
        family = self.family_at(param)
        eta = self.linear_predictor(theta, coef, rng.standard_normal(self.u_size))
        return np.asarray(family.sample(family.link.inverse(eta), self.weights, rng), dtype=float)

    def with_response(self, y: np.ndarray) -> LaplaceProblem:
        """The same design with another response (rows in this problem's order); nothing is copied."""
        terms = [
            CoreTerm(c, z.T, g, *pos)
            for c, z, g, pos in zip(self.codes, self.ZT, self.level_counts, self.theta_map.positions)
        ]
        return LaplaceProblem(
            self.family,
            self.XT.T,
            y,
            self.weights,
            self.offset,
            terms,
            self.controls,
            n_agq=self.n_agq,
            X_zi=None if self.XZT is None else self.XZT.T,
            runner=self.runner,
        )


def _slim(modes: Modes) -> Modes:
    """The modes without the per-row arrays ``mode_derivative`` does not need.

    The optimiser keeps the last evaluation's state between evaluations; of
    the rows' quantities only the observed and Laplace weights are kept.
    """
    irls = modes.irls
    hw = irls.hessian_weights
    lw = hw if irls.laplace_weights is hw else irls.laplace_weights
    slim = IRLSQuantities(None, None, None, None, hw, lw, None)
    return Modes(
        modes.u, None, slim, modes.factor, modes.score_sums, modes.pdev, modes.n_iter, modes.converged
    )
