"""Factorise, solve and take log-determinants of many small SPD blocks at once.

With one grouping factor the penalised system ``Lambda^T Z^T W Z Lambda + I`` is
block diagonal: one ``q x q`` block per level. :class:`BlockCholesky` holds the
Cholesky factors of all G blocks as one ``(G, q, q)`` array, so each operation is
a single vectorised numpy call and never a Python loop over groups. For q = 1 and
q = 2 (random intercept; intercept + slope) closed forms avoid LAPACK's per-call
overhead, which dominates for millions of tiny blocks.

Interface: ``BlockCholesky(A)`` factorises, ``solve(b)`` solves ``A x = b`` block
by block, ``inverse()`` returns ``A^{-1}`` blocks and ``logdet()`` the sum of
``log det A_g``. A sparse back end for several factors offers the same methods.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BlockCholesky", "GroupIndex", "row_order", "rowdot"]


def row_order(codes: np.ndarray):
    """A function putting per-row arrays in the (stable) order of ``codes``.

    Rows already in order (a panel stored group by group) are returned as
    they are, without copies.
    """
    codes = np.asarray(codes)
    if codes.size == 0 or bool(np.all(codes[1:] >= codes[:-1])):
        return lambda a: a
    order = np.argsort(codes, kind="stable")
    return lambda a: a[order]


class GroupIndex:
    """Row-to-group bookkeeping: sums within groups and expansion back to rows.

    Per-row vectors are stored transposed, as ``(k, n)`` arrays whose rows are
    contiguous, so every operation streams through memory once. When rows are
    sorted by group and no group is empty (the engine sorts its rows once, at
    set-up), sums are ``np.add.reduceat`` over contiguous slices and expansion
    is ``np.repeat``; both are several times faster than ``np.bincount`` and
    fancy indexing on millions of rows. Otherwise it falls back to those.

    Parameters
    ----------
    codes : ndarray of shape (n,)
        Group of each row, in ``0 .. n_levels - 1``.
    n_levels : int
    """

    def __init__(self, codes: np.ndarray, n_levels: int):
        self.codes = np.asarray(codes, dtype=np.intp)
        self.n_levels = int(n_levels)
        self.counts = np.bincount(self.codes, minlength=self.n_levels)
        ordered = self.codes.size == 0 or bool(np.all(self.codes[1:] >= self.codes[:-1]))
        self.contiguous = ordered and bool(np.all(self.counts > 0))
        #: one row per level, in order (the collapsed rows of a level-sums problem)
        self.identity = self.contiguous and self.codes.size == self.n_levels
        if self.contiguous:
            self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Sums within groups: (n,) -> (G,), or (k, n) -> (G, k) (with one row per level, (n,) is returned as it is)."""
        values = np.asarray(values)
        if self.identity:
            return values if values.ndim == 1 else values.T.copy()
        if self.contiguous:
            out = np.add.reduceat(values, self.starts, axis=-1)
        elif values.ndim == 1:
            out = np.bincount(self.codes, weights=values, minlength=self.n_levels)
        else:
            out = np.stack([np.bincount(self.codes, weights=row, minlength=self.n_levels) for row in values])
        return out if values.ndim == 1 else out.T

    def expand(self, values: np.ndarray) -> np.ndarray:
        """Each row's copy of its group's entry: (G,) -> (n,), or (G, k) -> (k, n)."""
        values = values if values.ndim == 1 else values.T
        if self.identity:
            return values.copy()
        if self.contiguous:
            return np.repeat(values, self.counts, axis=-1)
        return values[..., self.codes]

    def outer_sums(
        self, weights: np.ndarray, left: np.ndarray, right: np.ndarray | None = None
    ) -> np.ndarray:
        """``sum_{i in g} w_i left_i right_i^T`` for every group: (G, a, b).

        ``left`` is (a, n) and ``right`` (b, n). With ``right=None`` the result is
        symmetric and each pair is summed once.
        """
        symmetric = right is None
        right = left if symmetric else right
        a, b = left.shape[0], right.shape[0]
        pairs = [(j, k) for j in range(a) for k in range(b) if not (symmetric and k > j)]
        products = np.empty((len(pairs), left.shape[1]))
        for row, (j, k) in enumerate(pairs):
            np.multiply(weights * left[j], right[k], out=products[row])
        sums = self.sum(products)
        out = np.empty((self.n_levels, a, b))
        for row, (j, k) in enumerate(pairs):
            out[:, j, k] = sums[:, row]
            if symmetric:
                out[:, k, j] = sums[:, row]
        return out


def rowdot(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Per-row dot products of two transposed (q, n) arrays: (n,)."""
    out = A[0] * B[0]
    for j in range(1, A.shape[0]):
        out += A[j] * B[j]
    return out


class BlockCholesky:
    """Cholesky factors of G symmetric positive definite ``q x q`` blocks.

    Parameters
    ----------
    A : ndarray of shape (G, q, q)
        The blocks; only the lower triangle is read for q <= 2.
    """

    def __init__(self, A: np.ndarray):
        self.q = A.shape[1]
        if self.q == 1:
            self._l11 = np.sqrt(A[:, 0, 0])
        elif self.q == 2:
            l11 = np.sqrt(A[:, 0, 0])
            l21 = A[:, 1, 0] / l11
            self._l11, self._l21 = l11, l21
            self._l22 = np.sqrt(A[:, 1, 1] - l21 * l21)
        else:
            self._L = np.linalg.cholesky(A)

    def logdet(self) -> float:
        """``sum_g log det A_g``."""
        if self.q == 1:
            return 2.0 * float(np.sum(np.log(self._l11)))
        if self.q == 2:
            return 2.0 * float(np.sum(np.log(self._l11)) + np.sum(np.log(self._l22)))
        return 2.0 * float(np.sum(np.log(np.diagonal(self._L, axis1=1, axis2=2))))

    def solve(self, b: np.ndarray) -> np.ndarray:
        """Solve ``A_g x_g = b_g`` for every block; ``b`` has shape (G, q)."""
        if self.q == 1:
            return b / (self._l11 * self._l11)[:, None]
        if self.q == 2:
            z1 = b[:, 0] / self._l11
            z2 = (b[:, 1] - self._l21 * z1) / self._l22
            x2 = z2 / self._l22
            x1 = (z1 - self._l21 * x2) / self._l11
            return np.column_stack([x1, x2])
        z = np.linalg.solve(self._L, b[:, :, None])
        return np.linalg.solve(np.swapaxes(self._L, 1, 2), z)[:, :, 0]

    def inverse(self) -> np.ndarray:
        """The blocks ``A_g^{-1}`` as a (G, q, q) array."""
        if self.q == 1:
            return (1.0 / (self._l11 * self._l11))[:, None, None]
        if self.q == 2:
            a = self._l11**2
            b = self._l11 * self._l21
            c = self._l21**2 + self._l22**2
            det = a * c - b * b
            return np.stack([np.stack([c, -b], -1), np.stack([-b, a], -1)], -2) / det[:, None, None]
        eye = np.broadcast_to(np.eye(self.q), (self._L.shape[0], self.q, self.q))
        Linv = np.linalg.solve(self._L, eye)
        return np.swapaxes(Linv, 1, 2) @ Linv
