"""The penalised system of several grouping factors, factorised block-wise.

With several grouping factors (crossed ``(1 | subject) + (1 | item)`` or nested
``(1 | clinic/user)``) the matrix ``A = I + Lambda^T Z^T W Z Lambda`` is no
longer block diagonal. Following MixedModels.jl, the terms are ordered by
their number of levels and ``A`` is partitioned as::

    A = [ A11  A12 ]     A11: the largest factor, block diagonal (G0 blocks q0 x q0)
        [ A21  A22 ]     A22: every other factor, dense m x m (m = sum G_k q_k, k >= 1)

The largest factor (users, often thousands of levels) keeps the cheap
``(G0, q0, q0)`` algebra of :class:`~._linalg.BlockCholesky`; the rest is
eliminated through the dense Schur complement ``S = A22 - A21 A11^{-1} A12``,
whose size is set by the *smaller* factors (days, items, clinics), so a
5,000 x 200 crossed design costs one 200 x 200 Cholesky per factorisation.
No fill-reducing order is needed: the only fill is in the dense block.
When the other factors are large and sparsely crossed with the largest, the
layout hands the factorisation to :mod:`._sparse_system` instead (memory
O(non-zeros), a fill-reducing elimination of the Schur complement); the
factor it returns has the same methods. ``RandomEffectsLayout.path`` and
``describe`` say which is used.

:class:`RandomEffectsLayout` holds where every random effect lives (computed
once per problem); :class:`BlockedFactor` is one factorisation of ``A`` with
``logdet``, ``solve`` and the selected inverse entries that the gradient needs
(``A^{-1}`` restricted to pairs of effects that share a row).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.linalg.blas import dsyrk

from ._linalg import BlockCholesky, GroupIndex, rowdot
from ._sparse_system import sparse_coupling

__all__ = ["RandomEffectsLayout", "BlockedFactor", "MAX_DENSE_EFFECTS", "ONE_TERM"]

#: the linear algebra of one grouping factor (``FitResult.linear_algebra``)
ONE_TERM = "one grouping factor: block-diagonal Cholesky"

#: largest size of the dense block (the random effects of every factor but the
#: largest) on this path; beyond it the factors take the sparse path
MAX_DENSE_EFFECTS = 8000


class RandomEffectsLayout:
    """Positions of the random effects of several terms in the vector ``u``.

    ``u`` is one flat vector: the first term's ``(G0, q0)`` effects row by
    row, then each further term's ``(G_k, q_k)`` effects (the dense part, of
    length ``m``).

    Parameters
    ----------
    codes : list of ndarray of shape (n,)
        Level of every row for each term (all ``>= 0``). Rows must be sorted
        by the first term's codes (see :class:`~._linalg.GroupIndex`).
    n_levels, q : list of int
        Levels and effects per level of each term.
    factorised : bool, default=True
        Whether :meth:`factor` will be called: False keeps only the positions
        (term sums, row effects) and skips the factorisation's index maps and
        sparse structure.
    """

    def __init__(
        self, codes: list[np.ndarray], n_levels: list[int], q: list[int], *, factorised: bool = True
    ):
        self.n_terms = len(codes)
        self.codes = [np.asarray(c, dtype=np.intp) for c in codes]
        self.n_levels = list(n_levels)
        self.q = list(q)
        self.groups = GroupIndex(self.codes[0], self.n_levels[0])
        self.n_block = self.n_levels[0] * self.q[0]
        sizes = [g * k for g, k in zip(self.n_levels, self.q)]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.m = int(sum(sizes[1:]))
        # the dense-block effects: (term k >= 1, component j), in u's order
        self.dense_components = [(k, j) for k in range(1, self.n_terms) for j in range(self.q[k])]
        #: the sparse structure of large, sparsely coupled factors (:mod:`._sparse_system`), or None
        self.sparse = sparse_coupling(self, MAX_DENSE_EFFECTS) if self.n_terms > 1 and factorised else None
        if self.sparse is not None or not factorised:
            return
        # flat positions in A12 (G0 q0 x m) and A22 (m x m) of every row's
        # entries: fixed by the codes, so computed once (not per factorisation)
        # and shared by the factorisation's scatters and the selected inverse's
        # gathers; A22's only for the lower triangle (t <= s)
        m = self.m
        dense = [
            (self.starts[k] - self.n_block) + self.codes[k] * self.q[k] + j for k, j in self.dense_components
        ]
        block = [self.codes[0] * self.q[0] + a for a in range(self.q[0])]
        self._a12_index = [[rows * m + idx for idx in dense] for rows in block]
        self._a22_index = [[idx_s * m + idx_t for idx_t in dense[: s + 1]] for s, idx_s in enumerate(dense)]

    @property
    def path(self) -> str:
        """How ``A`` is factorised: ``"dense-schur"`` (:class:`BlockedFactor`) or the sparse
        structure's path (``"sparse"``, ``"sparse-dense-schur"``, :mod:`._sparse_system`)."""
        return "dense-schur" if self.sparse is None else self.sparse.path

    def describe(self) -> str:
        """How ``A`` is factorised, in one line (``FitResult.linear_algebra``)."""
        if self.sparse is not None:
            return self.sparse.describe()
        return (
            f"dense Schur complement: {self.n_levels[0]} levels block diagonal, "
            f"dense {self.m} x {self.m} block"
        )

    @property
    def size(self) -> int:
        """Length of ``u``."""
        return int(self.starts[-1])

    def split(self, u: np.ndarray) -> list[np.ndarray]:
        """``u`` as one ``(G_k, q_k)`` array per term (views)."""
        return [
            u[self.starts[k] : self.starts[k + 1]].reshape(self.n_levels[k], self.q[k])
            for k in range(self.n_terms)
        ]

    def expand_dot(self, ZlT: list[np.ndarray], u: np.ndarray) -> np.ndarray:
        """Row contributions ``sum_k zl_ik^T u_{k, g_k(i)}``: (n,)."""
        parts = self.split(u)
        out = rowdot(ZlT[0], self.groups.expand(parts[0]))
        for k in range(1, self.n_terms):
            out += rowdot(ZlT[k], parts[k][self.codes[k]].T)
        return out

    def term_sums(self, values: np.ndarray, ZT: list[np.ndarray]) -> list[np.ndarray]:
        """``sum_{i in level g} values_i z_ik`` for every term: list of (G_k, q_k)."""
        out = [self.groups.sum(ZT[0] * values)]
        for k in range(1, self.n_terms):
            G = self.n_levels[k]
            out.append(
                np.stack([np.bincount(self.codes[k], weights=values * z, minlength=G) for z in ZT[k]], axis=1)
            )
        return out

    def cross_product(self, values: np.ndarray, ZT: list[np.ndarray]) -> np.ndarray:
        """``Lambda^T Z^T values`` as a flat vector (``ZT`` already multiplied by Lambda)."""
        return np.concatenate([s.ravel() for s in self.term_sums(values, ZT)])

    def factor(self, W: np.ndarray, ZlT: list[np.ndarray]) -> BlockedFactor:
        """Factorise ``A = I + Lambda^T Z^T diag(W) Z Lambda``; ``ZlT[k]`` is (q_k, n)."""
        if self.sparse is not None:
            return self.sparse.factor(W, ZlT, self)
        q0, G0, m = self.q[0], self.n_levels[0], self.m
        A11 = self.groups.outer_sums(W, ZlT[0])
        A11[:, np.arange(q0), np.arange(q0)] += 1.0
        if m == 0:
            return BlockedFactor(self, BlockCholesky(A11), None, None, None)
        dense = [ZlT[k][j] for k, j in self.dense_components]
        A12 = np.zeros(G0 * q0 * m)
        for a in range(q0):
            wz = W * ZlT[0][a]
            for flat, zl in zip(self._a12_index[a], dense):
                A12 += np.bincount(flat, weights=wz * zl, minlength=G0 * q0 * m)
        A12 = A12.reshape(G0 * q0, m)
        A22 = np.zeros(m * m)
        for s, zl_s in enumerate(dense):
            wz = W * zl_s
            for flat, zl_t in zip(self._a22_index[s], dense[: s + 1]):
                A22 += np.bincount(flat, weights=wz * zl_t, minlength=m * m)
        A22 = A22.reshape(m, m)
        A22 = np.tril(A22) + np.tril(A22, -1).T  # the loop filled one triangle per pair of components
        A22[np.diag_indices(m)] = np.diag(A22) + 1.0
        chol11 = BlockCholesky(A11)
        inv11 = chol11.inverse()
        B = _block_apply(inv11, A12, q0)  # A11^{-1} A12
        if q0 == 1:
            # S = A22 - A12^T D A12 with D > 0 diagonal: a symmetric rank-k
            # update (half the flops of the general product; it dominates the
            # cost of a factorisation for a large first factor)
            half = A12 * np.sqrt(inv11[:, 0, 0])[:, None]
            S = dsyrk(-1.0, half.T, beta=1.0, c=np.asfortranarray(A22), lower=1)
        else:
            S = A22 - A12.T @ B
        return BlockedFactor(self, chol11, A12, B, cho_factor(S, lower=True))


class BlockedFactor:
    """One factorisation of ``A`` (see the module docstring)."""

    def __init__(self, layout: RandomEffectsLayout, chol11: BlockCholesky, A12, B, S_factor):
        self.layout = layout
        self.chol11 = chol11
        self.A12 = A12
        self.B = B
        self.S_factor = S_factor
        self._selected = None

    def logdet(self) -> float:
        """``log det A``."""
        out = self.chol11.logdet()
        if self.S_factor is not None:
            out += 2.0 * float(np.sum(np.log(np.diag(self.S_factor[0]))))
        return out

    def solve(self, r: np.ndarray) -> np.ndarray:
        """Solve ``A x = r`` for a flat vector ``r`` of length ``layout.size``."""
        lay = self.layout
        nb = lay.n_block
        y1 = self.chol11.solve(r[:nb].reshape(lay.n_levels[0], lay.q[0])).ravel()
        if self.S_factor is None:
            return y1
        x2 = cho_solve(self.S_factor, r[nb:] - self.A12.T @ y1)
        return np.concatenate([y1 - self.B @ x2, x2])

    def solve_many(self, R: np.ndarray) -> np.ndarray:
        """Solve ``A X = R`` for a (size, k) right-hand side."""
        return np.column_stack([self.solve(R[:, j]) for j in range(R.shape[1])])

    def selected_inverse(self):
        """``A^{-1}`` where it is needed: the first term's diagonal blocks
        ``(G0, q0, q0)``, its coupling to the dense part ``(G0 q0, m)`` and the
        dense part ``(m, m)``."""
        if self._selected is None:
            inv11 = self.chol11.inverse()
            if self.S_factor is None:
                self._selected = (inv11, None, None)
            else:
                lay = self.layout
                Sinv = cho_solve(self.S_factor, np.eye(lay.m))
                C = self.B @ Sinv  # A11^{-1} A12 S^{-1}
                q0 = lay.q[0]
                G0 = lay.n_levels[0]
                inv11 = inv11 + np.einsum("gam,gbm->gab", C.reshape(G0, q0, -1), self.B.reshape(G0, q0, -1))
                self._selected = (inv11, -C, Sinv)
        return self._selected

    def inverse_blocks(self) -> list[np.ndarray]:
        """The diagonal blocks of ``A^{-1}`` of every term: list of (G_k, q_k, q_k)."""
        inv11, _, inv22 = self.selected_inverse()
        lay = self.layout
        blocks = [inv11]
        for k in range(1, lay.n_terms):
            G, q = lay.n_levels[k], lay.q[k]
            idx = (lay.starts[k] - lay.n_block) + np.arange(G)[:, None] * q + np.arange(q)
            blocks.append(inv22[idx[:, :, None], idx[:, None, :]])
        return blocks

    def row_solutions(self, ZlT: list[np.ndarray]) -> list[np.ndarray]:
        """``P_ik``: the part of ``A^{-1} zl_i`` on row i's own effects of term k.

        ``zl_i`` is row i of ``Z Lambda`` (nonzero only on the row's own levels),
        so only the selected inverse entries are read. Returns one (q_k, n)
        array per term.
        """
        lay = self.layout
        inv11, inv12, inv22 = self.selected_inverse()
        q0 = lay.q[0]
        P0 = np.zeros_like(ZlT[0])
        for a in range(q0):
            for b in range(q0):
                P0[a] += lay.groups.expand(inv11[:, a, b]) * ZlT[0][b]
        out = [P0] + [np.zeros_like(z) for z in ZlT[1:]]
        if inv12 is None:
            return out
        flat12, flat22 = inv12.ravel(), inv22.ravel()
        for s, (k, j) in enumerate(lay.dense_components):
            zl = ZlT[k][j]
            for a in range(q0):
                coupling = flat12[lay._a12_index[a][s]]
                P0[a] += coupling * zl
                out[k][j] += coupling * ZlT[0][a]
            for t, (k2, j2) in enumerate(lay.dense_components):
                # S^{-1} is symmetric: the (s, t) entry is stored at the lower-triangle position
                flat = lay._a22_index[s][t] if t <= s else lay._a22_index[t][s]
                out[k][j] += flat22[flat] * ZlT[k2][j2]
        return out


def _block_apply(blocks: np.ndarray, M: np.ndarray, q: int) -> np.ndarray:
    """``blockdiag(blocks) @ M`` for (G, q, q) blocks and a (G q, m) matrix."""
    G = blocks.shape[0]
    if q == 1:
        return M * blocks[:, 0, 0][:, None]
    return np.einsum("gab,gbm->gam", blocks, M.reshape(G, q, -1)).reshape(G * q, -1)
