"""The penalised system of the random effects: one interface, two back ends.

Notation of ``docs/theory.md``: ``K`` random-effects terms (one per grouping
factor), term ``k`` with ``q_k`` effects per level and covariates ``z_ik``,
``Lambda = blockdiag(Lambda_k)`` and the spherical modes ``u``. For row weights
``W`` the penalised system is (eq. 2)::

    A(W) = I + Lambda^T Z^T diag(W) Z Lambda

PIRLS (:mod:`._pirls`), the Laplace gradient (:mod:`._gradient`) and the linear
mixed model (:mod:`._lmm`) use it only through the methods of
:class:`PenalisedSystem`; a system is bound to one ``theta`` (its ``Lambda``)
and one block of rows. Two back ends implement it:

- :class:`TermSystem` -- one term: ``A`` is block diagonal (one ``q x q``
  block per level, :class:`~._linalg.BlockCholesky`), and every row sum is
  taken in *Z coordinates* (``sum W z z^T``, ``sum s z``), which do not depend
  on theta: ``Lambda`` enters only through ``(G, q, q)`` algebra.
- :class:`BlockedSystem` -- several terms: the largest factor block diagonal,
  the others in a dense block eliminated through its Schur complement
  (:class:`~._blocked.BlockedFactor`, eq. 14).

Sums over rows are returned per term in Z coordinates (``term_sums``) and
mapped to the ``u`` scale by ``to_u`` (``sum_i v_i zl_i = Lambda_k^T sum_i v_i
z_i``). PIRLS halves its steps *unit by unit*: the penalised deviance is a sum
of independent terms over the levels of a single factor (``TermSystem``: one
unit per level), and one whole term otherwise (``BlockedSystem``: one unit).

:class:`ThetaMap` turns the flat theta into the terms' ``Lambda_k`` (with
:func:`~sklearn_glmm.design.lambda_from_theta`) for both back ends.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Protocol

import numpy as np

from ..design import lambda_from_theta, theta_index
from ._blocked import RandomEffectsLayout
from ._linalg import BlockCholesky, GroupIndex, rowdot

__all__ = [
    "PenalisedSystem",
    "TermRows",
    "TermSystem",
    "BlockedSystem",
    "ThetaMap",
    "TermsBookkeeping",
    "min_eigenvalues",
]


class ThetaMap:
    """Where each theta element sits: term by term, position in ``Lambda_k``.

    Parameters
    ----------
    q : list of int
        Effects per level of each term.
    positions : list of (ndarray, ndarray) or None
        Rows and columns of each term's theta elements in its ``Lambda_k``;
        None for full lower triangles in lme4's order.
    """

    def __init__(self, q: list[int], positions=None):
        self.q = [int(k) for k in q]
        if positions is None:
            positions = [theta_index(k) for k in self.q]
        self.positions = [(np.asarray(r, dtype=np.intp), np.asarray(c, dtype=np.intp)) for r, c in positions]
        bounds = np.cumsum([0] + [r.size for r, _ in self.positions])
        self.slices = [slice(int(a), int(b)) for a, b in pairwise(bounds)]

    @property
    def n_theta(self) -> int:
        return self.slices[-1].stop

    @property
    def diagonal(self) -> np.ndarray:
        """Which theta elements are diagonal entries of a ``Lambda_k`` (bounded below by 0)."""
        return np.concatenate([r == c for r, c in self.positions])

    def lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        """``Lambda_k`` of every term."""
        theta = np.asarray(theta, dtype=float)
        return [
            lambda_from_theta(theta[sl], q, r, c)
            for q, (r, c), sl in zip(self.q, self.positions, self.slices)
        ]

    def entries(self, dlams: list[np.ndarray]) -> np.ndarray:
        """The theta-position entries of per-term ``(q_k, q_k)`` matrices, as one flat vector."""
        return np.concatenate([d[r, c] for d, (r, c) in zip(dlams, self.positions)])


class TermsBookkeeping:
    """What a problem with random-effects terms tells the solver about theta.

    Needs ``theta_map`` (:class:`ThetaMap`), ``level_counts`` (levels of each
    term, the largest first) and ``ZT`` (each term's covariates, (q_k, n)), or
    its own :meth:`covariate_mean_squares` (a problem whose rows are elsewhere).
    """

    def covariate_mean_squares(self) -> list[np.ndarray]:
        """Mean over the rows of each term's squared covariates: one (q_k,) array per term."""
        return [np.mean(ZT**2, axis=1) for ZT in self.ZT]

    @property
    def n_theta(self) -> int:
        return self.theta_map.n_theta

    @property
    def n_levels(self) -> int:
        """Levels of the largest grouping factor."""
        return self.level_counts[0]

    @property
    def theta_diagonal(self) -> np.ndarray:
        return self.theta_map.diagonal

    @property
    def theta_scale(self) -> np.ndarray:
        """Root-mean-square of the covariate each theta element multiplies (1 if zero).

        The solver scales theta by it, so that a slope on a covariate of scale
        1e8 is as well conditioned as an intercept.
        """
        parts = []
        for mean_squares, (rows, _) in zip(self.covariate_mean_squares(), self.theta_map.positions):
            rms = np.sqrt(mean_squares)
            parts.append(np.where(rms > 0, rms, 1.0)[rows])
        return np.concatenate(parts)


def min_eigenvalues(A: np.ndarray) -> np.ndarray:
    """Smallest eigenvalue of each symmetric block of a (G, q, q) stack."""
    q = A.shape[1]
    if q == 1:
        return A[:, 0, 0].copy()
    if q == 2:
        a, b, c = A[:, 0, 0], A[:, 1, 0], A[:, 1, 1]
        return 0.5 * (a + c) - np.sqrt(0.25 * (a - c) ** 2 + b * b)
    return np.linalg.eigvalsh(A)[:, 0]


class PenalisedSystem(Protocol):
    """What PIRLS, the Laplace gradient and the LMM need of the random effects.

    ``u``-shaped arrays are ``(G, q)`` for :class:`TermSystem` and flat for
    :class:`BlockedSystem`; "sums" are lists with one ``(G_k, q_k)`` array of
    Z-coordinate level sums per term.
    """

    lambdas: list[np.ndarray]
    n_units: int

    def zero_modes(self) -> np.ndarray: ...
    def row_effect(self, u: np.ndarray) -> np.ndarray: ...
    def row_effect_with(self, lambdas: list[np.ndarray], u: np.ndarray) -> np.ndarray: ...
    def term_sums(self, values: np.ndarray) -> list[np.ndarray]: ...
    def to_u(self, sums: list[np.ndarray], lambdas: list[np.ndarray] | None = None) -> np.ndarray: ...
    def split(self, u: np.ndarray) -> list[np.ndarray]: ...
    def factorise(self, W: np.ndarray, fallback: np.ndarray | None = None): ...
    def inverse_terms(self, factor, W: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]: ...
    def weighted_effect_sums(self, W, zv, factor, v: np.ndarray, lambdas=None) -> list[np.ndarray]: ...
    def unit_sums(self, values: np.ndarray) -> np.ndarray: ...
    def unit_squares(self, u: np.ndarray) -> np.ndarray: ...
    def unit_max(self, u: np.ndarray) -> np.ndarray: ...
    def unit_effects(self, values: np.ndarray) -> np.ndarray: ...
    def unit_rows(self, values: np.ndarray) -> np.ndarray: ...
    def inverse_blocks(self, factor) -> list[np.ndarray]: ...


class TermRows:
    """The per-row covariates ``z_i`` of one random-effects term, in Z coordinates.

    Group sums ``sum W z z^T`` and ``sum s z`` do not depend on theta, and a
    column of ones (the random intercept) needs no multiplication at all.
    Products ``z_j z_k`` of two non-constant columns are formed once.

    Parameters
    ----------
    ZT : ndarray of shape (q, n)
    groups : GroupIndex
    """

    def __init__(self, ZT: np.ndarray, groups: GroupIndex):
        self.ZT = ZT
        self.groups = groups
        self.q = ZT.shape[0]
        self.ones = [bool(np.all(ZT[j] == 1.0)) for j in range(self.q)]
        self.pairs = [(j, k) for j in range(self.q) for k in range(j + 1)]
        self._pair_rows = []
        for j, k in self.pairs:
            if self.ones[j] and self.ones[k]:
                self._pair_rows.append(None)
            elif self.ones[j] or self.ones[k]:
                self._pair_rows.append(ZT[k] if self.ones[j] else ZT[j])
            else:
                self._pair_rows.append(ZT[j] * ZT[k])
        #: one row per level and z = 1 (the level sums of a random intercept):
        #: every sum is the row itself
        self.trivial = groups.identity and self.intercept_only

    @property
    def intercept_only(self) -> bool:
        return self.q == 1 and self.ones[0]

    def sums(self, v: np.ndarray) -> np.ndarray:
        """``sum_{i in g} v_i z_i`` for every group: (G, q)."""
        if self.trivial:
            return v[:, None]
        out = np.empty((self.groups.n_levels, self.q))
        for j in range(self.q):
            out[:, j] = self.groups.sum(v if self.ones[j] else v * self.ZT[j])
        return out

    def outer(self, W: np.ndarray) -> np.ndarray:
        """``sum_{i in g} W_i z_i z_i^T`` for every group: (G, q, q)."""
        if self.trivial:
            return W[:, None, None]
        out = np.empty((self.groups.n_levels, self.q, self.q))
        for (j, k), row in zip(self.pairs, self._pair_rows):
            out[:, j, k] = self.groups.sum(W if row is None else W * row)
            out[:, k, j] = out[:, j, k]
        return out

    def quadratic(self, B: np.ndarray) -> np.ndarray:
        """``z_i^T B_g z_i`` per row for symmetric (G, q, q) blocks ``B``: (n,)."""
        if self.trivial:
            return B[:, 0, 0].copy()
        expand = self.groups.expand
        out = None
        for (j, k), row in zip(self.pairs, self._pair_rows):
            term = expand(B[:, j, k] if j == k else 2.0 * B[:, j, k])
            if row is not None:
                term *= row
            if out is None:
                out = term
            else:
                out += term
        return out

    def dot(self, b: np.ndarray) -> np.ndarray:
        """``z_i^T b_g`` per row for (G, q) ``b``: (n,)."""
        if self.trivial:
            return b[:, 0].copy()
        expand = self.groups.expand
        out = expand(b[:, 0])
        if not self.ones[0]:
            out *= self.ZT[0]
        for j in range(1, self.q):
            term = expand(b[:, j])
            if not self.ones[j]:
                term *= self.ZT[j]
            out += term
            del term
        return out


class _TermFactor(BlockCholesky):
    """:class:`~._linalg.BlockCholesky` of ``A(W)``, with the Z-coordinate sums it was built from."""

    def __init__(self, A: np.ndarray, weight_sums: np.ndarray, used_fallback: bool = False):
        super().__init__(A)
        self.weight_sums = weight_sums
        self.used_fallback = used_fallback


class TermSystem:
    """The penalised system of one term: ``A`` block diagonal, sums in Z coordinates.

    Parameters
    ----------
    rows : TermRows
    lam : ndarray of shape (q, q)
        ``Lambda(theta)``.
    """

    def __init__(self, rows: TermRows, lam: np.ndarray):
        self.rows = rows
        self.lam = lam
        self.lambdas = [lam]
        self.q = rows.q
        self.n_units = rows.groups.n_levels
        self._eye = None if self.q == 1 else np.eye(self.q)

    def zero_modes(self) -> np.ndarray:
        return np.zeros((self.n_units, self.q))

    def row_effect(self, u: np.ndarray) -> np.ndarray:
        """``zl_i^T u_g`` per row: (n,)."""
        if self.q == 1:
            return self.rows.dot(u * self.lam[0, 0])
        return self.rows.dot(u @ self.lam.T)

    def row_effect_with(self, lambdas: list[np.ndarray], u: np.ndarray) -> np.ndarray:
        """``z_i^T D u_g`` per row for another lower-triangular ``D`` (a direction in theta)."""
        return self.rows.dot(u @ lambdas[0].T)

    def term_sums(self, values: np.ndarray) -> list[np.ndarray]:
        return [self.rows.sums(values)]

    def to_u(self, sums: list[np.ndarray], lambdas: list[np.ndarray] | None = None) -> np.ndarray:
        lam = self.lam if lambdas is None else lambdas[0]
        if self.q == 1:
            return sums[0] * lam[0, 0]
        return sums[0] @ lam

    def split(self, u: np.ndarray) -> list[np.ndarray]:
        return [u]

    def factor_from_sums(self, M: np.ndarray) -> _TermFactor:
        """The factor of ``I + Lambda^T M_g Lambda`` from precomputed Z-coordinate sums ``M``."""
        return _TermFactor(self._blocks(M), M)

    def _blocks(self, M: np.ndarray) -> np.ndarray:
        """``I + Lambda^T M_g Lambda`` for every level."""
        if self.q == 1:
            return 1.0 + (self.lam[0, 0] * self.lam[0, 0]) * M
        lam = self.lam
        return self._eye + lam.T @ M @ lam

    def factorise(self, W: np.ndarray, fallback: np.ndarray | None = None) -> _TermFactor:
        """Factor of ``A(W)``; with ``fallback``, levels whose block is not positive
        definite use the weights ``fallback`` instead."""
        M = self.rows.outer(W)
        A = self._blocks(M)
        if fallback is None:
            return _TermFactor(A, M)
        ok = min_eigenvalues(A) > 1e-8
        if np.all(ok):
            return _TermFactor(A, M)
        M_fb = self.rows.outer(fallback)
        M = np.where(ok[:, None, None], M, M_fb)
        return _TermFactor(np.where(ok[:, None, None], A, self._blocks(M_fb)), M, True)

    def inverse_terms(self, factor: _TermFactor, W: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """``h_i = zl_i^T A^{-1} zl_i`` per row and ``S = sum_i W_i z_i P_i^T`` (eq. 5).

        ``P_i = A_g^{-1} zl_i``, so ``S = sum_g M_g Lambda A_g^{-1}`` with the
        factor's own sums ``M_g`` (``W`` must be the weights it was built from).
        """
        lam = self.lam
        Ainv = factor.inverse()
        h = self.rows.quadratic(lam @ Ainv @ lam.T)
        S = (factor.weight_sums @ lam @ Ainv).sum(axis=0)
        return h, [S]

    def weighted_effect_sums(
        self, W, zv, factor: _TermFactor, v: np.ndarray, lambdas=None
    ) -> list[np.ndarray]:
        """``sum_{i in g} W_i (zl_i . v_g) z_i`` as ``M_g Lambda v_g`` from the factor's own
        sums (``W`` must be its weights; ``zv`` is not needed). ``lambdas`` replaces ``Lambda``."""
        lam = self.lam if lambdas is None else lambdas[0]
        return [(factor.weight_sums @ (v @ lam.T)[:, :, None])[:, :, 0]]

    def inverse_blocks(self, factor: _TermFactor) -> list[np.ndarray]:
        """The diagonal blocks of ``A^{-1}``: one (G, q, q) array."""
        return [factor.inverse()]

    # -- units: one per level ------------------------------------------------
    def unit_sums(self, values: np.ndarray) -> np.ndarray:
        return self.rows.groups.sum(values)

    def unit_squares(self, u: np.ndarray) -> np.ndarray:
        if self.q == 1:
            return u[:, 0] * u[:, 0]
        return np.einsum("gq,gq->g", u, u)

    def unit_max(self, u: np.ndarray) -> np.ndarray:
        if self.q == 1:
            return np.abs(u[:, 0])
        return np.abs(u).max(axis=1)

    def unit_effects(self, values: np.ndarray) -> np.ndarray:
        return values[:, None]

    def unit_rows(self, values: np.ndarray) -> np.ndarray:
        return self.rows.groups.expand(values)


class BlockedSystem:
    """The penalised system of several terms (see :mod:`._blocked`); one PIRLS unit.

    Parameters
    ----------
    layout : RandomEffectsLayout
    ZT : list of ndarray of shape (q_k, n)
        Each term's covariates, rows sorted by the first term's levels.
    lambdas : list of ndarray
        ``Lambda_k`` of every term.
    """

    n_units = 1

    def __init__(self, layout: RandomEffectsLayout, ZT: list[np.ndarray], lambdas: list[np.ndarray]):
        self.layout = layout
        self.ZT = ZT
        self.lambdas = lambdas
        self.ZlT = [lam.T @ z for lam, z in zip(lambdas, ZT)]

    def zero_modes(self) -> np.ndarray:
        return np.zeros(self.layout.size)

    def row_effect(self, u: np.ndarray) -> np.ndarray:
        return self.layout.expand_dot(self.ZlT, u)

    def row_effect_with(self, lambdas: list[np.ndarray], u: np.ndarray) -> np.ndarray:
        return self.layout.expand_dot([lam.T @ z for lam, z in zip(lambdas, self.ZT)], u)

    def term_sums(self, values: np.ndarray) -> list[np.ndarray]:
        return self.layout.term_sums(values, self.ZT)

    def to_u(self, sums: list[np.ndarray], lambdas: list[np.ndarray] | None = None) -> np.ndarray:
        lambdas = self.lambdas if lambdas is None else lambdas
        return np.concatenate([(s @ lam).ravel() for s, lam in zip(sums, lambdas)])

    def split(self, u: np.ndarray) -> list[np.ndarray]:
        return self.layout.split(u)

    def factorise(self, W: np.ndarray, fallback: np.ndarray | None = None):
        factor = self.layout.factor(W, self.ZlT)
        factor.used_fallback = False
        if fallback is not None and not np.isfinite(factor.logdet()):
            factor = self.layout.factor(fallback, self.ZlT)
            factor.used_fallback = True
        return factor

    def inverse_terms(self, factor, W: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """``h_i`` and ``S_k = sum_i W_i z_ik P_ik^T`` from the selected inverse (eq. 14)."""
        P = factor.row_solutions(self.ZlT)
        h = sum(rowdot(zl, p) for zl, p in zip(self.ZlT, P))
        S = [(z * W) @ p.T for z, p in zip(self.ZT, P)]
        return h, S

    def weighted_effect_sums(self, W, zv, factor, v, lambdas=None) -> list[np.ndarray]:
        """``sum_{i in level} W_i (zl_i . v) z_i`` per term, from the rows (``zv`` when known)."""
        if zv is None:
            zv = self.row_effect(v) if lambdas is None else self.row_effect_with(lambdas, v)
        return self.term_sums(W * zv)

    def inverse_blocks(self, factor) -> list[np.ndarray]:
        """The diagonal blocks of ``A^{-1}`` of every term: list of (G_k, q_k, q_k)."""
        return factor.inverse_blocks()

    # -- units: the whole system is one --------------------------------------
    def unit_sums(self, values: np.ndarray) -> np.ndarray:
        return np.array([np.sum(values)])

    def unit_squares(self, u: np.ndarray) -> np.ndarray:
        return np.array([np.dot(u, u)])

    def unit_max(self, u: np.ndarray) -> np.ndarray:
        return np.array([np.max(np.abs(u)) if u.size else 0.0])

    def unit_effects(self, values: np.ndarray) -> np.ndarray:
        return values[0]

    def unit_rows(self, values: np.ndarray) -> np.ndarray:
        return values[0]
