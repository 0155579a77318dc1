"""The linear mixed model's penalised system, rebuilt per theta from theta-free cross-products.

For the LMM the weights ``W`` never change, so ``G = Z^T W Z`` (in Z
coordinates, before ``Lambda``) is formed once, and every evaluation builds
``A = I + Lambda^T G Lambda`` from it without touching the rows (as
MixedModels.jl's ``A`` and ``L`` blocks). The terms' effects are ordered as in
:class:`~._blocked.RandomEffectsLayout`: term 0's ``(G0, q0)`` effects, then
the others (the dense part, ``m`` effects). Two grams implement it:

- :class:`OneTermGram` -- one term: ``G`` and ``A`` are block diagonal
  (``(G, q, q)`` blocks, :class:`~._linalg.BlockCholesky`).
- :class:`BlockedGram` -- several terms, partitioned as eq. 14 of
  ``docs/theory.md``: ``G11`` block diagonal, the coupling ``G12`` of term 0 to
  the others on its sparsity pattern (:class:`SparseCoupling`; dense,
  :class:`DenseCoupling`, when more than a tenth of it is filled), ``G22``
  dense (and by its nonzero entries when the other terms are scalar).
  ``S = A22 - A12^T A11^{-1} A12`` is a sparse product and the only dense
  factorisation (LAPACK ``potrf`` in place, ``potri`` for ``S^{-1}``).

A factor (:class:`OneTermFactor`, :class:`BlockedGramFactor`) gives ``log|A|``,
solves, the diagonal blocks of ``A^{-1}`` (lme4's ``condVar``) and the
derivative of ``log|A|`` in every ``Lambda_k`` (eq. 10b)::

    d log|A| / dLambda_k[a, b] = 2 sum_g N_{kg}[b, a],   N = A^{-1} Lambda^T G

where ``N_{kg}`` is the diagonal ``q_k x q_k`` block of level ``g`` of term
``k``: only the entries of ``A^{-1}`` on the pattern of ``G`` are read (the
selected inverse: term 0's diagonal blocks, its coupling on the pattern of
``G12``, and ``S^{-1}``).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.linalg import cho_solve
from scipy.linalg.lapack import dpotrf, dpotri

from ._blocked import _block_apply
from ._linalg import BlockCholesky, GroupIndex

__all__ = [
    "TermBlocks",
    "OneTermGram",
    "OneTermFactor",
    "BlockedGram",
    "BlockedGramFactor",
    "DenseCoupling",
    "SparseCoupling",
]

#: the coupling G12 is held dense above this fraction of nonzero entries (BLAS wins)
DENSE_COUPLING_FILL = 0.1
#: ... or when its entries sharing a row form more pairs than this (the sparse products, and the
#: gathers of ``V D`` on the pattern, would cost about as much as dense ones)
MAX_COUPLING_PAIRS = 10_000_000


class TermBlocks:
    """``blockdiag(Lambda)`` acting on flat vectors of all terms' effects.

    Parameters
    ----------
    n_levels, q : list of int
        Levels and effects per level of each term.
    """

    def __init__(self, n_levels: list[int], q: list[int]):
        self.n_levels = [int(g) for g in n_levels]
        self.q = [int(k) for k in q]
        self.starts = np.concatenate([[0], np.cumsum([g * k for g, k in zip(self.n_levels, self.q)])]).astype(
            int
        )

    @property
    def size(self) -> int:
        return int(self.starts[-1])

    def term(self, Y: np.ndarray, k: int) -> np.ndarray:
        """Term k's rows of a flat ``(size,)`` or ``(size, c)`` array as ``(G_k, q_k[, c])``."""
        part = Y[self.starts[k] : self.starts[k + 1]]
        return part.reshape((self.n_levels[k], self.q[k]) + Y.shape[1:])

    def _map(self, lambdas, Y: np.ndarray, transpose: bool) -> np.ndarray:
        out = np.empty_like(Y, dtype=float)
        for k, lam in enumerate(lambdas):
            Yk = self.term(Y, k).reshape(self.n_levels[k], self.q[k], -1)
            if self.q[k] == 1:
                mapped = Yk * lam[0, 0]
            else:
                mapped = np.einsum("ba,gbc->gac" if transpose else "ab,gbc->gac", lam, Yk)
            out[self.starts[k] : self.starts[k + 1]] = mapped.reshape((-1,) + Y.shape[1:])
        return out

    def left(self, lambdas, Y: np.ndarray) -> np.ndarray:
        """``Lambda^T Y`` (Z coordinates to the ``u`` scale)."""
        return self._map(lambdas, Y, True)

    def apply(self, lambdas, Y: np.ndarray) -> np.ndarray:
        """``Lambda Y`` (the ``u`` scale to Z coordinates)."""
        return self._map(lambdas, Y, False)


# -- one term ------------------------------------------------------------------------------
class OneTermGram:
    """``G`` of one term: its ``(G, q, q)`` level blocks ``M_g = sum_{i in g} W_i z_i z_i^T``."""

    def __init__(self, M: np.ndarray):
        self.M = M
        self.G, self.q = M.shape[0], M.shape[1]

    def factor(self, lambdas) -> OneTermFactor:
        return OneTermFactor(self.M, lambdas[0])

    def apply(self, V: np.ndarray) -> np.ndarray:
        """``G V`` for a flat ``(size,)`` or ``(size, c)`` array in Z coordinates."""
        if self.q == 1:
            return V * (self.M[:, 0, 0] if V.ndim == 1 else self.M[:, 0, :])
        return (self.M @ V.reshape(self.G, self.q, -1)).reshape(V.shape)


class OneTermFactor:
    """``A_g = I + Lambda^T M_g Lambda`` for every level, factorised."""

    def __init__(self, M: np.ndarray, lam: np.ndarray):
        self.M, self.lam = M, lam
        q = lam.shape[0]
        if q == 1:
            A = 1.0 + (lam[0, 0] * lam[0, 0]) * M
        else:
            A = np.eye(q) + lam.T @ M @ lam
        self.chol = BlockCholesky(A)
        self.Ainv = self.chol.inverse()

    def logdet(self) -> float:
        return self.chol.logdet()

    def solve(self, R: np.ndarray) -> np.ndarray:
        """``A^{-1} R`` for a flat ``(size,)`` or ``(size, c)`` array."""
        G, q = self.Ainv.shape[:2]
        if q == 1:
            return R * (self.Ainv[:, 0, 0] if R.ndim == 1 else self.Ainv[:, 0, :])
        return (self.Ainv @ R.reshape(G, q, -1)).reshape(R.shape)

    def inverse_blocks(self) -> list[np.ndarray]:
        """The diagonal blocks of ``A^{-1}``: one ``(G, q, q)`` array."""
        return [self.Ainv]

    def logdet_gradient(self) -> list[np.ndarray]:
        """``d log|A| / dLambda``: ``2 sum_g M_g Lambda A_g^{-1}`` (``N_g^T``, eq. 10b)."""
        return [2.0 * np.sum(self.M @ self.lam @ self.Ainv, axis=0)]


# -- several terms -------------------------------------------------------------------------
def _right_dense(blocks: TermBlocks, offsets: list[int], lambdas, Y: np.ndarray) -> np.ndarray:
    """``Y blockdiag_{k >= 1}(Lambda_k)`` for a dense Y with the dense part's columns."""
    if all(q == 1 for q in blocks.q[1:]):
        return Y * _column_scale(blocks, lambdas)
    out = np.empty_like(Y)
    for k in range(1, len(blocks.q)):
        s, e = offsets[k], offsets[k] + blocks.n_levels[k] * blocks.q[k]
        if blocks.q[k] == 1:
            out[:, s:e] = Y[:, s:e] * lambdas[k][0, 0]
            continue
        part = Y[:, s:e].reshape(Y.shape[0], blocks.n_levels[k], blocks.q[k])
        out[:, s:e] = (part @ lambdas[k]).reshape(Y.shape[0], -1)
    return out


def _column_scale(blocks: TermBlocks, lambdas) -> np.ndarray:
    """``diag(blockdiag_{k >= 1}(Lambda_k))`` when every term beyond term 0 is scalar: (m,)."""
    return np.repeat([float(lam[0, 0]) for lam in lambdas[1:]], blocks.n_levels[1:])


class DenseCoupling:
    """Operations on the coupling block (term 0's rows x the dense part's columns) held dense.

    Every method takes and returns the block's values: here a ``(n_block, m)`` array.
    """

    def __init__(self, G0: int, q0: int, blocks: TermBlocks, offsets: list[int]):
        self.G0, self.q0, self.blocks, self.offsets = G0, q0, blocks, offsets

    def left0(self, lam0, V):
        """``blockdiag_g(Lambda_0^T) V``."""
        if self.q0 == 1:
            return V * float(lam0[0, 0])
        return np.einsum("ba,gbm->gam", lam0, V.reshape(self.G0, self.q0, -1)).reshape(V.shape)

    def right2(self, lambdas, V):
        """``V blockdiag_{k >= 1}(Lambda_k)``."""
        return _right_dense(self.blocks, self.offsets, lambdas, V)

    def block_apply(self, blocks, V):
        """``blockdiag_g(blocks_g) V`` for (G0, q0, q0) blocks."""
        return _block_apply(blocks, V, self.q0)

    def matvec(self, V, x):
        return V @ x

    def rmatvec(self, V, y):
        return V.T @ y

    def subtract_cross(self, out: np.ndarray, V1, V2) -> None:
        """``out -= V1^T V2`` for a dense (m, m) ``out``."""
        out -= V1.T @ V2

    def times_dense(self, V, D: np.ndarray):
        """``V D`` for a dense symmetric (m, m) ``D`` (only where the coupling's pattern is read)."""
        return V @ D

    def row_block_dots(self, X, Y) -> np.ndarray:
        """``sum_j X[(g, a), j] Y[(g, b), j]`` for every level g: (G0, q0, q0)."""
        G0, q0 = self.G0, self.q0
        return np.einsum("gaj,gbj->gab", X.reshape(G0, q0, -1), Y.reshape(G0, q0, -1))

    def component_dot(self, X, Y, k: int, a: int, b: int) -> float:
        """``sum_rows sum_h X[row, (k, h, a)] Y[row, (k, h, b)]``."""
        bl = self.blocks
        cols = self.offsets[k] + np.arange(bl.n_levels[k]) * bl.q[k]
        return float(np.sum(X[:, cols + a] * Y[:, cols + b]))


class SparseCoupling:
    """The coupling block on its pattern: values aligned with one fixed CSR structure.

    The pattern is a union of full ``q0 x q_k`` blocks (a level of term 0
    meets a level of term k in some row), so ``Lambda`` and ``A11^{-1}`` mix
    entries within the same block only, and every product is a gather on the
    values. ``V D`` (on the pattern) is, for each level ``g`` of term 0 with
    columns ``J_g``, the small dense product ``V[g, J_g] D[J_g, J_g]``
    (levels with as many columns batched together), and ``V1^T V2`` a scipy
    sparse product: ``sum_r nnz_r^2`` products each instead of the dense
    ``n_block m^2``.

    Parameters
    ----------
    rows, cols, values : ndarray
        The entries (every entry of every block present, zeros included).
    G0, q0, blocks, offsets
        As :class:`DenseCoupling`.
    """

    def __init__(self, rows, cols, values, G0: int, q0: int, blocks: TermBlocks, offsets: list[int]):
        self.G0, self.q0, self.blocks, self.offsets = G0, q0, blocks, offsets
        nb, m = G0 * q0, blocks.size - G0 * q0
        self.shape = (nb, m)
        order = np.lexsort((cols, rows))
        self.row, self.col = rows[order], cols[order]
        self.values = values[order]
        nnz = self.row.size
        counts = np.bincount(self.row, minlength=nb)
        self.indptr = _indptr(self.row, nb)
        level, a = self.row // q0, self.row % q0
        self.level, self.a = level, a
        # the same column in row (g, c) of the level (all rows of a level share their columns)
        within = np.arange(nnz) - self.indptr[self.row]
        self.partner_rows = [self.indptr[level * q0 + c] + within for c in range(q0)]
        # the entries of each term's component: column (k, h, comp)
        term_of = np.searchsorted(np.asarray(offsets[1:]), self.col, side="right")  # k >= 1
        self.term_entries, self.component = [], np.empty(nnz, dtype=np.intp)
        for k in range(1, len(blocks.q)):
            idx = np.flatnonzero(term_of == k)
            self.component[idx] = (self.col[idx] - offsets[k]) % blocks.q[k]
            self.term_entries.append(idx)
        # V^T as CSR (m x n_block): the entries in column-major order, for V1^T V2
        t_order = np.lexsort((self.row, self.col))
        self._transposed = (t_order, self.row[t_order], _indptr(self.col, m))
        # the levels of term 0 grouped by their number n of columns (every row of a level has the
        # same columns J_g): the entries (L, q0, n) of their rows and the flat positions (L, n, n)
        # of D[J_g, J_g] in an (m, m) array
        per_level = counts.reshape(G0, q0)[:, 0]
        by_size = np.argsort(per_level, kind="stable")
        sizes, first = np.unique(per_level[by_size], return_index=True)
        flat_type = np.int32 if m * m < 2**31 else np.intp
        self._level_groups = []
        for n, levels in zip(sizes, np.split(by_size, first[1:])):
            if n == 0:
                continue
            entries = (
                self.indptr[levels * q0][:, None, None] + (np.arange(q0) * n)[:, None] + np.arange(n)
            ).astype(np.intp)
            cols = self.col[entries[:, 0, :]].astype(flat_type)
            self._level_groups.append((entries, cols[:, :, None] * flat_type(m) + cols[:, None, :]))

    def left0(self, lam0, V):
        if self.q0 == 1:
            return V * float(lam0[0, 0])
        return sum(lam0[c, self.a] * V[self.partner_rows[c]] for c in range(self.q0))

    def right2(self, lambdas, V):
        out = np.empty_like(V)
        for k, idx in enumerate(self.term_entries, start=1):
            lam = lambdas[k]
            if lam.shape[0] == 1:
                out[idx] = V[idx] * lam[0, 0]
                continue
            b = self.component[idx]
            out[idx] = sum(V[idx + d - b] * lam[d, b] for d in range(lam.shape[0]))
        return out

    def block_apply(self, blocks, V):
        if self.q0 == 1:
            return blocks[self.level, 0, 0] * V
        return sum(blocks[self.level, self.a, c] * V[self.partner_rows[c]] for c in range(self.q0))

    def _matrix(self, V):
        return sparse.csr_array((V, self.col, self.indptr), shape=self.shape)

    def matvec(self, V, x):
        return self._matrix(V) @ x

    def rmatvec(self, V, y):
        return self._matrix(V).T @ y

    def subtract_cross(self, out: np.ndarray, V1, V2) -> None:
        m = self.shape[1]
        t_order, t_cols, t_indptr = self._transposed
        product = sparse.csr_array((V1[t_order], t_cols, t_indptr), shape=(m, self.shape[0])) @ self._matrix(
            V2
        )
        # a canonical product (no repeated entries): a flat scatter into the C-ordered out
        flat = np.repeat(np.arange(0, m * m, m), np.diff(product.indptr)) + product.indices
        out.ravel()[flat] -= product.data

    def times_dense(self, V, D: np.ndarray):
        # (V D)[(g, a), J_g] = V[(g, a), J_g] D[J_g, J_g] (D symmetric: its memory order is immaterial)
        out = np.empty_like(V)
        flat_D = D.ravel(order="K")
        for entries, flat in self._level_groups:
            out[entries] = V[entries] @ np.take(flat_D, flat)
        return out

    def row_block_dots(self, X, Y) -> np.ndarray:
        out = np.empty((self.G0, self.q0, self.q0))
        for b in range(self.q0):
            out[:, :, b] = np.bincount(
                self.row, weights=X * Y[self.partner_rows[b]], minlength=self.G0 * self.q0
            ).reshape(self.G0, self.q0)
        return out

    def component_dot(self, X, Y, k: int, a: int, b: int) -> float:
        idx = self.term_entries[k - 1]
        idx = idx[self.component[idx] == a]
        return float(np.dot(X[idx], Y[idx + b - a]))


def _indptr(sorted_rows: np.ndarray, n_rows: int) -> np.ndarray:
    """CSR row pointers of entries in the order of their (sorted) rows."""
    return np.concatenate([[0], np.cumsum(np.bincount(sorted_rows, minlength=n_rows))]).astype(np.intp)


class BlockedGram:
    """``G = Z^T W Z`` of several terms in Z coordinates, partitioned as eq. 14 (formed once).

    Parameters
    ----------
    codes : list of ndarray of shape (n,)
        Level of every row for each term.
    n_levels, q : list of int
    ZT : list of ndarray of shape (q_k, n)
    w : ndarray of shape (n,)
    """

    def __init__(self, codes, n_levels, q, ZT, w):
        self.blocks = TermBlocks(n_levels, q)
        G0, q0 = self.blocks.n_levels[0], self.blocks.q[0]
        self.n_block = G0 * q0
        self.m = self.blocks.size - self.n_block
        codes = [np.asarray(c, dtype=np.intp) for c in codes]
        self.G11 = GroupIndex(codes[0], G0).outer_sums(w, ZT[0])
        #: where term k >= 1 starts in the dense part
        self.offsets = [int(s) - self.n_block for s in self.blocks.starts[:-1]]
        rows, cols, vals = [], [], []
        for k in range(1, len(codes)):
            Gk, qk = self.blocks.n_levels[k], self.blocks.q[k]
            pairs, inverse = np.unique(codes[0] * Gk + codes[k], return_inverse=True)
            g0, h = pairs // Gk, pairs % Gk
            for a in range(q0):
                wz = w * ZT[0][a]
                for b in range(qk):
                    rows.append(g0 * q0 + a)
                    cols.append(self.offsets[k] + h * qk + b)
                    vals.append(np.bincount(inverse, weights=wz * ZT[k][b], minlength=pairs.size))
        rows, cols, vals = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
        row_counts = np.bincount(rows, minlength=self.n_block)
        n_pairs = int(np.sum(row_counts.astype(float) ** 2))
        self.dense_coupling = (
            rows.size > DENSE_COUPLING_FILL * self.n_block * self.m or n_pairs > MAX_COUPLING_PAIRS
        )
        if self.dense_coupling:
            self.coupling = DenseCoupling(G0, q0, self.blocks, self.offsets)
            self.G12 = np.zeros((self.n_block, self.m))
            self.G12[rows, cols] = vals
        else:
            self.coupling = SparseCoupling(rows, cols, vals, G0, q0, self.blocks, self.offsets)
            self.G12 = self.coupling.values
        self.G22 = np.zeros((self.m, self.m))
        for k in range(1, len(codes)):
            Gk, qk = self.blocks.n_levels[k], self.blocks.q[k]
            for k2 in range(1, k + 1):
                G2, q2 = self.blocks.n_levels[k2], self.blocks.q[k2]
                for a in range(qk):
                    wz = w * ZT[k][a]
                    ia = self.offsets[k] + np.arange(Gk) * qk + a
                    for b in range(q2):
                        ib = self.offsets[k2] + np.arange(G2) * q2 + b
                        if k2 == k:
                            # one level of a term per row: the block is diagonal in the levels
                            self.G22[ia, ib] = np.bincount(codes[k], weights=wz * ZT[k][b], minlength=Gk)
                            continue
                        block = np.bincount(
                            codes[k] * G2 + codes[k2], weights=wz * ZT[k2][b], minlength=Gk * G2
                        ).reshape(Gk, G2)
                        self.G22[np.ix_(ia, ib)] = block
                        self.G22[np.ix_(ib, ia)] = block.T
        #: with scalar terms only beyond term 0, ``Lambda_2`` scales the columns: ``G22`` is also
        #: held by its nonzero entries ``(i, j, values)`` (a tenth of it or less for crossed
        #: factors: diagonal blocks and the terms' cross blocks), with the term of each column j
        self.G22_entries = None
        if all(k == 1 for k in self.blocks.q[1:]):
            i, j = np.nonzero(self.G22)
            self.G22_entries = (i, j, self.G22[i, j], self.column_terms[0][j])

    def describe(self) -> str:
        """How ``A`` is factorised, in one line (``FitResult.linear_algebra``)."""
        coupling = "dense" if self.dense_coupling else "sparse"
        return (
            f"{coupling} coupling: {self.blocks.n_levels[0]} levels block diagonal, "
            f"dense {self.m} x {self.m} Schur complement"
        )

    def factor(self, lambdas) -> BlockedGramFactor:
        return BlockedGramFactor(self, lambdas)

    def apply(self, V: np.ndarray) -> np.ndarray:
        """``G V`` for a flat ``(size,)`` or ``(size, c)`` array in Z coordinates."""
        nb, cp = self.n_block, self.coupling
        V1, V2 = V[:nb], V[nb:]
        G0, q0 = self.G11.shape[:2]
        out1 = (self.G11 @ V1.reshape(G0, q0, -1)).reshape(V1.shape) + cp.matvec(self.G12, V2)
        out2 = cp.rmatvec(self.G12, V1) + self.G22 @ V2
        return np.concatenate([out1, out2])

    @property
    def column_terms(self) -> tuple[np.ndarray, np.ndarray]:
        """The term ``k >= 1`` and the component of every column of the dense part: two (m,) arrays."""
        bl = self.blocks
        term = np.repeat(np.arange(1, len(bl.q)), [g * q for g, q in zip(bl.n_levels[1:], bl.q[1:])])
        component = np.concatenate([np.tile(np.arange(q), g) for g, q in zip(bl.n_levels[1:], bl.q[1:])])
        return term, component

    def left2(self, lambdas, Y: np.ndarray) -> np.ndarray:
        """``blockdiag_{k >= 1}(Lambda_k)^T Y`` for a dense (m, m) Y."""
        return self.right2(lambdas, Y.T).T

    def right2(self, lambdas, Y: np.ndarray) -> np.ndarray:
        """``Y blockdiag_{k >= 1}(Lambda_k)`` for a dense Y with the dense part's columns."""
        return _right_dense(self.blocks, self.offsets, lambdas, Y)

    def columns(self, k: int, a: int) -> np.ndarray:
        """Positions in the dense part of component ``a`` of every level of term ``k >= 1``."""
        return np.arange(
            self.offsets[k] + a,
            self.offsets[k] + self.blocks.n_levels[k] * self.blocks.q[k],
            self.blocks.q[k],
        )

    def column_slice(self, k: int, a: int) -> slice:
        """:meth:`columns` as a slice."""
        return slice(
            self.offsets[k] + a,
            self.offsets[k] + self.blocks.n_levels[k] * self.blocks.q[k],
            self.blocks.q[k],
        )


def _cholesky_inverse(U: np.ndarray) -> np.ndarray:
    """``S^{-1}`` from the upper Cholesky factor ``U`` (``S = U^T U``, Fortran order), in U's memory.

    LAPACK ``potri`` (a third of two solves' flops) fills the upper triangle;
    the lower is mirrored from it.
    """
    inv, info = dpotri(U, lower=0, overwrite_c=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"potri failed (info {info})")
    lower = np.tril(inv.T, -1)  # inv.T's lower triangle is inv's upper
    inv *= np.tri(*inv.shape, dtype=bool).T
    inv += lower
    return inv


def _cholesky_upper(S: np.ndarray) -> np.ndarray:
    """The upper Cholesky factor of a symmetric C-ordered ``S``, in S's memory (Fortran order, ``S.T``).

    LAPACK ``potrf`` reads and writes one triangle; the other keeps S's entries.
    """
    if not np.isfinite(S).all():
        raise ValueError("array must not contain infs or NaNs")
    U, info = dpotrf(S.T, lower=0, clean=0, overwrite_a=1)
    if info > 0:
        raise np.linalg.LinAlgError(f"{info}-th leading minor of the array is not positive definite")
    return U


class BlockedGramFactor:
    """``A = I + Lambda^T G Lambda`` of a :class:`BlockedGram`, factorised by blocks (eq. 14).

    ``A11`` by :class:`~._linalg.BlockCholesky`, ``S = A22 - A12^T A11^{-1}
    A12`` by a dense Cholesky; the selected inverse is formed on first use,
    with ``S^{-1}`` in the memory of S's factor (no copy of either): solves
    after it multiply by ``S^{-1}``.
    """

    def __init__(self, gram: BlockedGram, lambdas):
        self.gram, self.lambdas = gram, lambdas
        cp = gram.coupling
        q0 = gram.G11.shape[1]
        lam0 = lambdas[0]
        self.H11 = np.einsum("ba,gbc->gac", lam0, gram.G11)  # Lambda_0^T G11 per level
        A11 = self.H11 @ lam0
        A11[:, np.arange(q0), np.arange(q0)] += 1.0
        self.chol11 = BlockCholesky(A11)
        self.inv11 = self.chol11.inverse()
        self._selected = None
        if gram.m == 0:
            self.S_factor = None
            return
        self.R12 = cp.right2(lambdas, gram.G12)  # G12 Lambda_2
        self.H12 = cp.left0(lam0, gram.G12)  # Lambda_0^T G12
        self.A12 = cp.left0(lam0, self.R12)
        if gram.G22_entries is None:
            self.H22 = gram.left2(lambdas, gram.G22)  # Lambda_2^T G22
            A22 = gram.right2(lambdas, self.H22)
        else:
            # scalar terms: Lambda_2^T G22 on G22's entries, A22 from them
            i, j, values, _ = gram.G22_entries
            scale = _column_scale(gram.blocks, lambdas)
            self.H22 = scale[i] * values
            A22 = np.zeros((gram.m, gram.m))
            A22[i, j] = self.H22 * scale[j]
        A22[np.diag_indices(gram.m)] += 1.0
        self.B = cp.block_apply(self.inv11, self.A12)  # A11^{-1} A12
        cp.subtract_cross(A22, self.A12, self.B)
        self.S_factor = (_cholesky_upper(A22), False)  # cho_solve's (factor, lower)
        self._logdet_S = 2.0 * float(np.sum(np.log(np.diag(self.S_factor[0]))))

    def logdet(self) -> float:
        """``log det A``."""
        out = self.chol11.logdet()
        if self.S_factor is not None:
            out += self._logdet_S
        return out

    def solve(self, R: np.ndarray) -> np.ndarray:
        """``A^{-1} R`` for a flat ``(size,)`` or ``(size, c)`` array."""
        nb, cp = self.gram.n_block, self.gram.coupling
        y1 = _block_apply(self.inv11, R[:nb].reshape(nb, -1), self.inv11.shape[1])
        if self.S_factor is None:
            return y1.reshape(R.shape)
        rhs = R[nb:].reshape(R.shape[0] - nb, -1) - cp.rmatvec(self.A12, y1)
        # S's factor holds S^{-1} once the selected inverse is formed
        x2 = cho_solve(self.S_factor, rhs) if self._selected is None else self._selected[2] @ rhs
        return np.concatenate([y1 - cp.matvec(self.B, x2), x2]).reshape(R.shape)

    def selected_inverse(self):
        """``(P11, X, Sinv)``: the diagonal blocks of ``A^{-1}`` of term 0 (``A11^{-1} + (B
        S^{-1} B^T)_gg``), ``X = B S^{-1}`` on the coupling's pattern (``-X`` is the
        coupling block of ``A^{-1}`` there) and ``S^{-1}``."""
        if self._selected is None:
            if self.S_factor is None:
                self._selected = (self.inv11, None, None)
            else:
                cp = self.gram.coupling
                Sinv = _cholesky_inverse(self.S_factor[0])
                X = cp.times_dense(self.B, Sinv)
                self._selected = (self.inv11 + cp.row_block_dots(X, self.B), X, Sinv)
        return self._selected

    def inverse_blocks(self) -> list[np.ndarray]:
        """The diagonal blocks of ``A^{-1}`` of every term: list of ``(G_k, q_k, q_k)``."""
        P11, _, Sinv = self.selected_inverse()
        out = [P11]
        bl = self.gram.blocks
        for k in range(1, len(bl.q)):
            idx = self.gram.columns(k, 0)[:, None] + np.arange(bl.q[k])
            out.append(Sinv[idx[:, :, None], idx[:, None, :]])
        return out

    def logdet_gradient(self) -> list[np.ndarray]:
        """``d log|A| / dLambda_k = 2 sum_g N_{kg}^T`` for every term (eq. 10b)."""
        gram, cp = self.gram, self.gram.coupling
        P11, X, Sinv = self.selected_inverse()
        # term 0: N_g = P11_g H11_g - (X R12^T)_gg (its coupling through G21)
        N0 = P11 @ self.H11
        if X is not None:
            N0 = N0 - cp.row_block_dots(X, self.R12)
        out = [2.0 * np.sum(N0, axis=0).T]
        bl = gram.blocks
        if gram.G22_entries is not None:
            # scalar terms: sum_h (S^{-1} H22)[(k, h), (k, h)] over H22's entries (S^{-1} symmetric)
            i, j, _, term = gram.G22_entries
            sinv_h22 = np.bincount(term, weights=Sinv[i, j] * self.H22, minlength=len(bl.q))
        for k in range(1, len(bl.q)):
            qk = bl.q[k]
            if gram.G22_entries is not None:
                out.append(2.0 * np.array([[sinv_h22[k] - cp.component_dot(X, self.H12, k, 0, 0)]]))
                continue
            Nk = np.empty((qk, qk))
            for a in range(qk):
                ca = gram.column_slice(k, a)
                for b in range(qk):
                    cb = gram.column_slice(k, b)
                    # N[(k,h,a),(k,h,b)] = -(X^T H12)[..] + (S^{-1} H22)[..], summed over h (S^{-1} symmetric)
                    Nk[a, b] = np.einsum("ji,ji->", Sinv[:, ca], self.H22[:, cb]) - cp.component_dot(
                        X, self.H12, k, a, b
                    )
            out.append(2.0 * Nk.T)
        return out
