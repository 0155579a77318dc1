"""The penalised system of several large grouping factors, in memory O(non-zeros).

:mod:`._blocked` eliminates the largest factor (block diagonal) and keeps the
other factors' ``m`` random effects in a dense ``m x m`` Schur complement,
with a dense ``(G0 q0) x m`` coupling block. With two large crossed factors
(20,000 users x 2,000 items, or 8,000 x 8,000 levels) both dense blocks are
gigabytes and their products ``O(G0 m^2)`` flops, although each level of the
largest factor meets few levels of the others. This module keeps everything
sparse (``docs/theory.md``, "Two large crossed factors"):

1. The coupling ``A12`` is stored on its pattern: one ``(q0,)`` column per
   pair (level ``a`` of the largest factor, effect ``c`` of the others) that
   share a row. Eliminating the largest factor gives the Schur complement
   ``S = A22 - A21 A11^{-1} A12``, whose pattern is the pairs ``(c, c')`` that
   meet a common level ``a``: it is assembled from those pairs (``sum_a
   deg(a)^2`` products, not ``G0 m^2``).
2. ``S`` is factorised by *multiple elimination* (:class:`SymmetricChain`):
   repeatedly, an independent set of effects of near-minimum degree (no two
   share an entry of the current matrix, so their block is diagonal) is
   eliminated at once -- the multiple-minimum-degree ordering of sparse
   Cholesky, applied a whole level at a time with vectorised scatters. The
   remainder, once small or dense (random crossed designs fill in), is
   factorised densely by LAPACK.
3. The gradient needs ``A^{-1}`` only where effects share a row. The
   selected inverse on every level's pattern follows back through the
   levels (Takahashi's recurrences, one level at a time): for an eliminated
   set ``I`` with remainder ``R``, ``Z_IR = -D_I^{-1} M_IR Z_RR`` and ``Z_ii =
   1/d_i - Z_iR M_Ri / d_i`` read ``Z_RR`` only on pairs that meet ``i``, which
   lie in the next level's pattern.

The pattern -- and so every index map of the elimination -- depends only on
the grouping codes: it is computed once per problem (:class:`SparseCoupling`);
a factorisation is a chain of ``np.bincount`` scatters and one dense Cholesky.
When the pairs ``sum_a deg(a)^2`` are too many to hold as index maps (each
level of the largest factor meets hundreds of the others, so ``S`` is dense
anyway), ``S`` is assembled densely by a sparse product instead.
"""

from __future__ import annotations

import weakref

import numpy as np
from scipy import sparse
from scipy.linalg import LinAlgError, cho_solve
from scipy.linalg.lapack import dpotrf, dpotri

from ._linalg import BlockCholesky

__all__ = ["SparseCoupling", "SparseFactor", "SymmetricChain", "PAIR_BUDGET", "sparse_coupling"]

#: most pairs (level a; effects c, c' meeting a) held as index maps; beyond,
#: the Schur complement is assembled densely (it is then dense anyway)
PAIR_BUDGET = 4_000_000
#: a level whose matrix has at most this many rows, or is this dense, is factorised densely
DENSE_ROWS = 200
DENSE_FRACTION = 0.03
#: ... or while its pattern has fewer entries than this and is under a quarter full (small
#: patterns cost little memory, and each elimination shrinks the dense remainder)
SMALL_PATTERN = 500_000
#: largest dense block (Schur complement or remainder) allowed: 12,000^2 doubles are 1.1 GB
MAX_DENSE_ROWS = 12_000


def _cholesky_in_place(dense: np.ndarray):
    """Lower Cholesky factor of a symmetric Fortran-ordered array, in place; None if not positive definite."""
    factor, info = dpotrf(dense, lower=1, clean=0, overwrite_a=1)
    return factor if info == 0 else None


def _inverse_lower(L: np.ndarray) -> np.ndarray:
    """``(L L^T)^{-1}`` from a lower Cholesky factor, lower triangle filled (a Fortran-ordered copy)."""
    inv, info = dpotri(np.array(L, order="F", copy=True), lower=1, overwrite_c=1)
    if info != 0:
        raise LinAlgError("the dense block of the penalised system is singular")
    return inv


def _pairs_within(ptr: np.ndarray):
    """All ordered pairs of positions inside each segment ``ptr[g] .. ptr[g+1]``.

    Returns the segment and the two positions of every pair: three (sum_g n_g^2,) arrays.
    """
    counts = np.diff(ptr)
    sq = counts * counts
    seg = np.repeat(np.arange(counts.size), sq)
    offset = np.arange(seg.size) - np.repeat(np.cumsum(sq) - sq, sq)
    c = counts[seg]
    first = ptr[seg] + offset // c
    second = ptr[seg] + offset % c
    return seg, first, second


class _Pattern:
    """A symmetric sparsity pattern on ``N`` nodes (diagonal included), row-major."""

    def __init__(self, keys: np.ndarray, N: int):
        self.N = int(N)
        self.keys = keys  # sorted row * N + col
        self.rows = keys // max(N, 1)
        self.cols = keys % max(N, 1)
        self.ptr = np.searchsorted(self.rows, np.arange(N + 1))

    @property
    def nnz(self) -> int:
        return int(self.keys.size)

    def positions(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Positions of entries known to be in the pattern."""
        return np.searchsorted(self.keys, rows * self.N + cols)


class _Level:
    """One elimination: an independent set ``I`` of the current matrix and the maps to the next.

    Attributes hold positions in the current matrix's data (``diag``,
    ``off``, ``off_t``, ``rr_src``), the eliminated node ``off_i`` (0 ..
    |I|-1) and remaining node ``off_r`` (new numbering) of every off-diagonal
    entry of ``I``'s rows, and the pairs ``(i; r1, r2)`` of those entries
    (``p1``, ``p2`` index the off-diagonal list) with their position ``dst`` in
    the next matrix.
    """

    def __init__(self, pat: _Pattern, I: np.ndarray):
        N = pat.N
        eliminated = np.zeros(N, dtype=bool)
        eliminated[I] = True
        R = np.flatnonzero(~eliminated)
        newid = np.full(N, -1, dtype=np.intp)
        newid[R] = np.arange(R.size)
        self.I, self.R, self.N = I, R, N
        rows, cols = pat.rows, pat.cols
        self.diag = pat.positions(I, I)
        # off-diagonal entries of I's rows, grouped by row (all their columns are in R)
        starts, ends = pat.ptr[I], pat.ptr[I + 1]
        lengths = ends - starts
        pos = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        pos = pos[cols[pos] != rows[pos]]
        self.off = pos
        local = np.zeros(N, dtype=np.intp)
        local[I] = np.arange(I.size)
        self.off_i = local[rows[pos]]
        self.off_r = newid[cols[pos]]
        self.off_t = pat.positions(cols[pos], rows[pos])
        off_ptr = np.searchsorted(self.off_i, np.arange(I.size + 1))
        _, self.p1, self.p2 = _pairs_within(off_ptr)
        keep = ~eliminated[rows] & ~eliminated[cols]
        self.rr_src = np.flatnonzero(keep)
        NR = R.size
        rr_keys = newid[rows[keep]] * NR + newid[cols[keep]]
        pair_keys = self.off_r[self.p1] * NR + self.off_r[self.p2]
        keys, inverse = np.unique(np.concatenate([rr_keys, pair_keys]), return_inverse=True)
        inverse = inverse.ravel()
        self.rr_dst = inverse[: rr_keys.size]
        self.dst = inverse[rr_keys.size :]
        self.pair_i = self.off_i[self.p1]
        self.next = _Pattern(keys, NR)
        self.n_next = self.next.nnz
        # the maps in 32 bits where they fit (they are the chain's memory)
        small = np.int32 if max(pat.nnz, self.n_next) < 2**31 else np.intp
        for name in (
            "diag",
            "off",
            "off_i",
            "off_r",
            "off_t",
            "p1",
            "p2",
            "rr_src",
            "rr_dst",
            "dst",
            "pair_i",
        ):
            setattr(self, name, getattr(self, name).astype(small))


class SymmetricChain:
    """Symbolic multiple-elimination Cholesky of a symmetric pattern (see the module docstring).

    Parameters
    ----------
    pattern : _Pattern
        The matrix's pattern (full, symmetric, diagonal included).
    """

    def __init__(self, pattern: _Pattern):
        self.pattern = pattern
        self.levels: list[_Level] = []
        pat = pattern
        while pat.N > DENSE_ROWS and (
            pat.nnz < DENSE_FRACTION * pat.N * pat.N
            or (pat.nnz < SMALL_PATTERN and pat.nnz < 0.25 * pat.N * pat.N)
        ):
            I = _independent_low_degree(pat)
            level = _Level(pat, I)
            self.levels.append(level)
            pat = level.next
            del level.next  # only the final pattern is kept
        self.final = pat
        #: a weak reference to the factor holding the dense block (see ``_ChainFactor._dense_factor``)
        self.holder = None

    @property
    def dense_size(self) -> int:
        """Rows of the dense remainder."""
        return self.final.N

    def factor(self, data: np.ndarray) -> _ChainFactor:
        """Factorise the matrix with values ``data`` on :attr:`pattern`."""
        return _ChainFactor(self, data)


def _independent_low_degree(pat: _Pattern) -> np.ndarray:
    """Nodes of near-minimum degree no two of which are adjacent (local minima of (degree, index))."""
    N = pat.N
    degree = np.diff(pat.ptr) - 1
    low = degree.min()
    candidate = degree <= max(low + 2, int(1.5 * low))
    key = degree.astype(np.int64) * N + np.arange(N)
    rows, cols = pat.rows, pat.cols
    beaten = (rows != cols) & candidate[cols] & (key[cols] < key[rows])
    blocked = np.zeros(N, dtype=bool)
    blocked[rows[beaten]] = True
    return np.flatnonzero(candidate & ~blocked)


class _ChainFactor:
    """The numeric factorisation along a :class:`SymmetricChain`: log-det, solves, selected inverse."""

    def __init__(self, chain: SymmetricChain, data: np.ndarray):
        self.chain = chain
        self.ok = True
        self._inverse = self._L = None
        self.pivots = []
        logdet = 0.0
        for level in chain.levels:
            d = data[level.diag]
            if not np.all(d > 0):
                self.ok = False
                self.logdet = np.nan
                return
            self.pivots.append((d, data))
            logdet += float(np.sum(np.log(d)))
            nxt = level.n_next
            vals = data[level.off]
            data = np.bincount(level.rr_dst, weights=data[level.rr_src], minlength=nxt) - np.bincount(
                level.dst,
                weights=vals[level.p1] * vals[level.p2] / d[level.pair_i],
                minlength=nxt,
            )
        self._inverse = None
        self.final_data = data  # the dense remainder's entries (on the final pattern)
        self._L = None
        if chain.final.N == 0:  # every effect was eliminated
            self.logdet = logdet
            return
        L = self._dense_factor()
        if L is None:
            self.ok = False
            self.logdet = np.nan
            return
        self.logdet = logdet + 2.0 * float(np.sum(np.log(np.diag(L))))

    def _dense_factor(self):
        """The dense remainder's Cholesky factor, (re)computed on demand.

        A problem holds at most one such dense block: building one drops the
        block of the factor that held it last (which recomputes its own from
        its entries if it is used again; an optimiser keeps earlier
        evaluations' factors, rarely used).
        """
        if self._L is None:
            chain = self.chain
            holder = chain.holder() if chain.holder is not None else None
            if holder is not None and holder is not self:
                holder._L = None
            chain.holder = weakref.ref(self)
            n = chain.final.N
            dense = np.zeros((n, n), order="F")
            # the pattern is symmetric: row-major positions fill the Fortran array as well
            dense.reshape(-1, order="A")[chain.final.keys] = self.final_data
            self._L = _cholesky_in_place(dense)
        return self._L

    def solve(self, b: np.ndarray) -> np.ndarray:
        """Solve ``M x = b``."""
        if not self.ok:
            return np.full_like(b, np.nan)
        stack = []
        for level, (d, data) in zip(self.chain.levels, self.pivots):
            y = b[level.I] / d
            vals = data[level.off]
            b = b[level.R] - np.bincount(level.off_r, weights=vals * y[level.off_i], minlength=level.R.size)
            stack.append((y, vals))
        x = b if self.chain.final.N == 0 else cho_solve((self._dense_factor(), True), b, check_finite=False)
        for level, (d, _), (y, vals) in zip(
            reversed(self.chain.levels), reversed(self.pivots), reversed(stack)
        ):
            out = np.empty(level.N)
            out[level.R] = x
            out[level.I] = (
                y - np.bincount(level.off_i, weights=vals * x[level.off_r], minlength=level.I.size) / d
            )
            x = out
        return x

    def inverse(self) -> np.ndarray:
        """``M^{-1}`` on the chain's pattern (Takahashi's recurrences, level by level)."""
        if self._inverse is None:
            Z = np.empty(0)
            if self.chain.final.N > 0:
                # the inverse overwrites the factor (one dense block in memory, not
                # two), which a later solve recomputes
                inv, info = dpotri(self._dense_factor(), lower=1, overwrite_c=1)
                self._L = None
                if info != 0:
                    raise LinAlgError("the dense remainder of the penalised system is singular")
                final = self.chain.final
                # the lower triangle (row >= col) sits at row + n col of the Fortran array
                Z = inv.reshape(-1, order="A")[
                    np.maximum(final.rows, final.cols) + final.N * np.minimum(final.rows, final.cols)
                ]
                del inv
            for level, (d, data) in zip(reversed(self.chain.levels), reversed(self.pivots)):
                out = np.empty(data.size)
                out[level.rr_src] = Z[level.rr_dst]
                vals = data[level.off]
                zir = -np.bincount(level.p2, weights=vals[level.p1] * Z[level.dst], minlength=level.off.size)
                zir = zir / d[level.off_i]
                out[level.off] = zir
                out[level.off_t] = zir
                out[level.diag] = (
                    1.0 - np.bincount(level.off_i, weights=vals * zir, minlength=level.I.size)
                ) / d
                Z = out
            self._inverse = Z
        return self._inverse


class SparseCoupling:
    """The fixed sparse structure of ``A`` for several terms (see the module docstring).

    Parameters
    ----------
    layout : RandomEffectsLayout
        Codes, levels and the positions of the effects of the factors other
        than the largest (``layout.dense_components``).
    dense_columns : list of ndarray of shape (n,)
        For every such component, the effect (0 .. m-1) of every row.
    pairs : int
        ``sum_a deg(a)^2`` (computed by :func:`coupling_pairs`).
    keys12 : ndarray
        The sorted pairs ``a * m + c`` sharing a row, and ``inverse12`` each
        row-component's index into them.
    """

    def __init__(self, layout, dense_columns: list[np.ndarray], keys12: np.ndarray, inverse12: np.ndarray):
        m = layout.m
        G0, q0 = layout.n_levels[0], layout.q[0]
        n = layout.codes[0].size
        self.m, self.G0, self.q0 = m, G0, q0
        self.n_components = len(dense_columns)
        self.columns = dense_columns
        self.level12 = keys12 // m  # the level a of every pair (sorted)
        self.col12 = keys12 % m
        self.n12 = keys12.size
        self.ptr12 = np.searchsorted(self.level12, np.arange(G0 + 1))
        self.pos12 = [inverse12[s * n : (s + 1) * n] for s in range(self.n_components)]
        self.n_pairs = int(np.sum(np.diff(self.ptr12) ** 2))
        #: the blocks (c, c') of every level of each further term (diagonal blocks of A22)
        blocks = []
        for k in range(1, layout.n_terms):
            G, q = layout.n_levels[k], layout.q[k]
            idx = (layout.starts[k] - layout.n_block) + np.arange(G)[:, None] * q + np.arange(q)
            blocks.append(idx)
        self.block_index = blocks
        block_rows = np.concatenate([np.repeat(b, b.shape[1], axis=1).ravel() for b in blocks])
        block_cols = np.concatenate([np.tile(b, (1, b.shape[1])).ravel() for b in blocks])
        comps = range(self.n_components)
        self._csr = None
        if self.n_pairs <= PAIR_BUDGET:
            self.dense = False
            _, p1, p2 = _pairs_within(self.ptr12)
            pair_keys = self.col12[p1] * m + self.col12[p2]
            row_keys = np.concatenate([dense_columns[s] * m + dense_columns[t] for s in comps for t in comps])
            keys, inverse = np.unique(
                np.concatenate([pair_keys, block_rows * m + block_cols, row_keys]), return_inverse=True
            )
            inverse = inverse.ravel()
            self.pair1, self.pair2 = p1, p2
            self.pair_dst = inverse[: pair_keys.size]
            rows22 = inverse[pair_keys.size + block_rows.size :]
            self.pattern = _Pattern(keys, m)
            self.chain = SymmetricChain(self.pattern)
        else:
            self.dense = True
            rows22 = np.concatenate([dense_columns[s] * m + dense_columns[t] for s in comps for t in comps])
            self.pattern = None
            self.chain = None
        dense_rows = self.m if self.dense else self.chain.dense_size
        if dense_rows > MAX_DENSE_ROWS:
            raise ValueError(
                f"The grouping factors other than the largest have {self.m} random effects, and "
                f"{self.n_pairs} pairs of them meet a common level of the largest factor: the "
                f"penalised system would need a dense {dense_rows} x {dense_rows} block "
                f"({dense_rows**2 * 8 / 2**30:.1f} GB; at most {MAX_DENSE_ROWS} rows are supported). "
                "Reduce the levels of those factors (e.g. by grouping rare levels) or drop a term."
            )
        self.pos22 = [
            [rows22[(s * self.n_components + t) * n : (s * self.n_components + t + 1) * n] for t in comps]
            for s in comps
        ]
        self.block_pos = [self._entry_positions(b[:, :, None], b[:, None, :]) for b in blocks]
        self.diag_pos = self._entry_positions(np.arange(m), np.arange(m))

    def _entry_positions(self, rows, cols) -> np.ndarray:
        rows, cols = np.broadcast_arrays(rows, cols)
        if self.dense:
            return rows * self.m + cols
        return self.pattern.positions(rows, cols)

    @property
    def path(self) -> str:
        """How the Schur complement is factorised (see :meth:`describe`)."""
        return "sparse-dense-schur" if self.dense else "sparse"

    def describe(self) -> str:
        """A one-line account of the structure (recorded on the fit)."""
        if self.dense:
            return (
                f"sparse coupling ({self.n12} level pairs), dense {self.m} x {self.m} Schur complement "
                f"({self.n_pairs} products)"
            )
        chain = self.chain
        return (
            f"sparse coupling ({self.n12} level pairs), sparse Schur complement ({self.pattern.nnz} entries) "
            f"eliminated in {len(chain.levels)} levels, dense remainder {chain.dense_size} x {chain.dense_size}"
        )

    def factor(self, W: np.ndarray, ZlT: list[np.ndarray], layout) -> SparseFactor:
        """Factorise ``A = I + Lambda^T Z^T diag(W) Z Lambda``; ``ZlT[k]`` is (q_k, n)."""
        q0 = self.q0
        comps = [ZlT[k][j] for k, j in layout.dense_components]
        A11 = layout.groups.outer_sums(W, ZlT[0])
        A11[:, np.arange(q0), np.arange(q0)] += 1.0
        chol11 = BlockCholesky(A11)
        inv11 = chol11.inverse()
        A12 = np.zeros((q0, self.n12))
        for a in range(q0):
            wz = W * ZlT[0][a]
            for pos, zl in zip(self.pos12, comps):
                A12[a] += np.bincount(pos, weights=wz * zl, minlength=self.n12)
        # B = A11^{-1} A12, level by level
        inv_at = inv11[self.level12]  # (n12, q0, q0)
        B = np.einsum("pab,bp->ap", inv_at, A12) if q0 > 1 else A12 * inv_at[:, 0, 0]
        del inv_at
        size = self.m * self.m if self.dense else self.pattern.nnz
        S = np.zeros(size)
        for s, zs in enumerate(comps):
            wz = W * zs
            for t, zt in enumerate(comps):
                S += np.bincount(self.pos22[s][t], weights=wz * zt, minlength=size)
        S[self.diag_pos] += 1.0
        if self.dense:
            coupling = self._matrix(A12, transpose=True) @ self._matrix(B)
            S = S.reshape(self.m, self.m) - coupling.toarray()
            schur = _DenseFactor(S)
        else:
            for a in range(q0):
                S -= np.bincount(self.pair_dst, weights=B[a, self.pair1] * A12[a, self.pair2], minlength=size)
            schur = self.chain.factor(S)
        return SparseFactor(layout, self, chol11, A12, B, schur)

    def _matrix(self, values: np.ndarray, transpose: bool = False):
        """The (G0 q0, m) CSR matrix with the pairs' values (``values`` is (q0, n12)), or its
        transpose as a CSR matrix; the index structure is built once."""
        if self._csr is None:
            q0 = self.q0
            rows = (self.level12[None, :] * q0 + np.arange(q0)[:, None]).ravel()
            cols = np.broadcast_to(self.col12, (q0, self.n12)).ravel()
            order = np.lexsort((cols, rows))
            ptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=self.G0 * q0))])
            order_t = np.lexsort((rows, cols))
            ptr_t = np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=self.m))])
            self._csr = ((order, cols[order], ptr), (order_t, rows[order_t], ptr_t))
        take, indices, ptr = self._csr[1 if transpose else 0]
        shape = (self.m, self.G0 * self.q0) if transpose else (self.G0 * self.q0, self.m)
        return sparse.csr_matrix((values.ravel()[take], indices, ptr), shape=shape)


class _DenseFactor:
    """The Schur complement factorised densely: same methods as :class:`_ChainFactor`, flat inverse."""

    def __init__(self, S: np.ndarray):
        self.ok = True
        self._inverse = None
        # S is symmetric: its transpose is the Fortran-ordered array LAPACK factorises in place
        L = _cholesky_in_place(S.T)
        if L is None:
            self.ok = False
            self.logdet = np.nan
            return
        self.final = (L, True)
        self.logdet = 2.0 * float(np.sum(np.log(np.diag(L))))

    def solve(self, b):
        if not self.ok:
            return np.full_like(b, np.nan)
        return cho_solve(self.final, b, check_finite=False)

    def inverse_matrix(self) -> np.ndarray:
        """``S^{-1}`` as a full symmetric (Fortran-ordered) array."""
        if self._inverse is None:
            inv = _inverse_lower(self.final[0])
            m = inv.shape[0]
            for j0 in range(0, m, 1024):  # the upper triangle from the lower, a block of columns at a time
                j1 = min(j0 + 1024, m)
                block = inv[j0:j1, j0:j1]
                upper = np.triu_indices(j1 - j0, 1)
                block[upper] = block.T[upper]
                inv[j0:j1, j1:] = inv[j1:, j0:j1].T
            self._inverse = inv
        return self._inverse

    def inverse(self) -> np.ndarray:
        """``S^{-1}`` flat: entry ``(r, c)`` at ``r m + c`` (symmetric)."""
        return self.inverse_matrix().reshape(-1, order="A")


class SparseFactor:
    """One factorisation of ``A`` on the sparse structure (the methods of :class:`~._blocked.BlockedFactor`)."""

    def __init__(self, layout, coupling: SparseCoupling, chol11: BlockCholesky, A12, B, schur):
        self.layout = layout
        self.coupling = coupling
        self.chol11 = chol11
        self.A12 = A12
        self.B = B
        self.schur = schur
        self.used_fallback = False
        self._selected = None

    def logdet(self) -> float:
        """``log det A``."""
        return self.chol11.logdet() + self.schur.logdet

    def solve(self, r: np.ndarray) -> np.ndarray:
        """Solve ``A x = r`` for a flat vector ``r`` of length ``layout.size``."""
        lay, cp = self.layout, self.coupling
        nb, q0 = lay.n_block, lay.q[0]
        y1 = self.chol11.solve(r[:nb].reshape(lay.n_levels[0], q0))  # (G0, q0)
        at = y1[cp.level12]  # (n12, q0)
        r2 = r[nb:] - sum(
            np.bincount(cp.col12, weights=self.A12[a] * at[:, a], minlength=cp.m) for a in range(q0)
        )
        x2 = self.schur.solve(r2)
        xc = x2[cp.col12]
        x1 = y1 - np.stack(
            [np.bincount(cp.level12, weights=self.B[a] * xc, minlength=cp.G0) for a in range(q0)], axis=1
        )
        return np.concatenate([x1.ravel(), x2])

    def solve_many(self, R: np.ndarray) -> np.ndarray:
        """Solve ``A X = R`` for a (size, k) right-hand side."""
        return np.column_stack([self.solve(R[:, j]) for j in range(R.shape[1])])

    def selected_inverse(self):
        """``A^{-1}`` where it is needed: the first term's diagonal blocks ``(G0, q0, q0)``, its
        coupling ``(q0, n12)`` on the pairs that share a row, and the Schur part on its pattern
        (flat positions of the dense ``m x m`` array on the dense path)."""
        if self._selected is None:
            cp = self.coupling
            Z = self.schur.inverse()
            q0 = cp.q0
            if cp.dense:
                E = self._dense_product(self.schur.inverse_matrix())
            else:
                E = np.stack(
                    [
                        np.bincount(cp.pair2, weights=self.B[a, cp.pair1] * Z[cp.pair_dst], minlength=cp.n12)
                        for a in range(q0)
                    ]
                )
            # A^{-1}_11 = A11^{-1} + B S^{-1} B^T on the diagonal blocks
            inv11 = self.chol11.inverse().copy()
            for a in range(q0):
                for b in range(q0):
                    inv11[:, a, b] += np.bincount(cp.level12, weights=E[a] * self.B[b], minlength=cp.G0)
            self._selected = (inv11, -E, Z)
        return self._selected

    def _dense_product(self, Z: np.ndarray) -> np.ndarray:
        """``(B S^{-1})`` on the pairs only, from a dense ``S^{-1}``.

        Entry ``(a, c)`` is ``sum_{c' meeting a} B[a, c'] S^{-1}[c', c]``: per level
        a ``deg(a) x deg(a)`` block of ``S^{-1}``. Levels of equal degree are
        gathered together (a few million entries at a time) and multiplied at
        once, so the cost is ``sum_a deg(a)^2``, not ``nnz(B) m``.
        """
        cp = self.coupling
        q0 = cp.q0
        out = np.empty((q0, cp.n12))
        degree = np.diff(cp.ptr12)
        order = np.argsort(degree, kind="stable")
        ends = np.concatenate([np.flatnonzero(np.diff(degree[order])) + 1, [order.size]])
        flat = Z.reshape(-1, order="A")  # S^{-1} is symmetric: either flat order serves
        start = 0
        for end in ends:
            levels, d = order[start:end], int(degree[order[start]])
            start = end
            if d == 0:
                continue
            step = max(1, 2_000_000 // (d * d))
            for k in range(0, levels.size, step):
                pos = cp.ptr12[levels[k : k + step]][:, None] + np.arange(d)  # (k, d) pairs
                cols = cp.col12[pos]
                block = np.take(flat, cols[:, :, None] * cp.m + cols[:, None, :])  # (k, d, d)
                for a in range(q0):
                    out[a, pos] = (self.B[a, pos][:, None, :] @ block)[:, 0, :]
        return out

    def row_solutions(self, ZlT: list[np.ndarray]) -> list[np.ndarray]:
        """``P_ik``: the part of ``A^{-1} zl_i`` on row i's own effects of term k (one (q_k, n) array per term)."""
        lay, cp = self.layout, self.coupling
        inv11, inv12, Z = self.selected_inverse()
        q0 = lay.q[0]
        P0 = np.zeros_like(ZlT[0])
        for a in range(q0):
            for b in range(q0):
                P0[a] += lay.groups.expand(inv11[:, a, b]) * ZlT[0][b]
        out = [P0] + [np.zeros_like(z) for z in ZlT[1:]]
        for s, (k, j) in enumerate(lay.dense_components):
            zl = ZlT[k][j]
            for a in range(q0):
                coupling = inv12[a][cp.pos12[s]]
                P0[a] += coupling * zl
                out[k][j] += coupling * ZlT[0][a]
            for t, (k2, j2) in enumerate(lay.dense_components):
                out[k][j] += Z[cp.pos22[s][t]] * ZlT[k2][j2]
        return out

    def inverse_blocks(self) -> list[np.ndarray]:
        """The diagonal blocks of ``A^{-1}`` of every term: list of (G_k, q_k, q_k)."""
        inv11, _, Z = self.selected_inverse()
        return [inv11] + [Z[pos] for pos in self.coupling.block_pos]


def coupling_keys(layout) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Every row's effect of each further component, and the sorted pairs ``a * m + c`` that share a row.

    Returns the columns, the unique keys and each row-component's index into them.
    """
    m = layout.m
    columns = [
        (layout.starts[k] - layout.n_block) + layout.codes[k] * layout.q[k] + j
        for k, j in layout.dense_components
    ]
    a = layout.codes[0]
    keys, inverse = np.unique(np.concatenate([a * m + c for c in columns]), return_inverse=True)
    return columns, keys, inverse.ravel()


#: the dense coupling block is kept (:class:`~._blocked.BlockedFactor`) while it
#: has at most this many entries and at least this fraction of them share a row
DENSE_COUPLING_ENTRIES = 1_000_000
DENSE_COUPLING_FILL = 0.1


def sparse_coupling(layout, max_dense: int) -> SparseCoupling | None:
    """The sparse structure of a layout, or None where the dense blocks are small and better.

    The dense path (one ``(G0 q0) x m`` coupling block, one dense ``m x m``
    Schur complement) is kept when ``m <= max_dense`` and the coupling block
    is small (at most ``DENSE_COUPLING_ENTRIES``) or well filled (at least
    ``DENSE_COUPLING_FILL`` of its entries share a row, as in a complete grid).
    """
    columns, keys, inverse = coupling_keys(layout)
    entries = layout.n_block * layout.m
    if layout.m <= max_dense and (
        entries <= DENSE_COUPLING_ENTRIES or keys.size >= DENSE_COUPLING_FILL * layout.n_levels[0] * layout.m
    ):
        return None
    return SparseCoupling(layout, columns, keys, inverse)
