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

__all__ = ["BlockCholesky", "group_sums", "group_outer_sums"]


def group_sums(codes: np.ndarray, values: np.ndarray, n_levels: int) -> np.ndarray:
    """Sum rows of ``values`` (n, k) within groups: returns (n_levels, k).

    ``np.bincount`` is linear in n and needs no sorting, which keeps fits on
    millions of rows cheap.
    """
    values = np.asarray(values)
    if values.ndim == 1:
        return np.bincount(codes, weights=values, minlength=n_levels)
    out = np.empty((n_levels, values.shape[1]))
    for j in range(values.shape[1]):
        out[:, j] = np.bincount(codes, weights=values[:, j], minlength=n_levels)
    return out


def group_outer_sums(
    codes: np.ndarray, weights: np.ndarray, left: np.ndarray, right: np.ndarray | None, n_levels: int
) -> np.ndarray:
    """``sum_{i in g} w_i left_i right_i^T`` for every group g: (n_levels, a, b).

    When ``right`` is None the result is symmetric and only the lower triangle is
    accumulated.
    """
    symmetric = right is None
    right = left if symmetric else right
    a, b = left.shape[1], right.shape[1]
    out = np.empty((n_levels, a, b))
    for j in range(a):
        wl = weights * left[:, j]
        for k in range(b):
            if symmetric and k > j:
                continue
            out[:, j, k] = np.bincount(codes, weights=wl * right[:, k], minlength=n_levels)
            if symmetric:
                out[:, k, j] = out[:, j, k]
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
