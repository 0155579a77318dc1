"""One random-effects term: group codes, a small per-row matrix and its theta.

A term ``(z_1 + ... + z_q | g)`` contributes ``z_i^T b_{g(i)}`` to row ``i``'s
linear predictor, with ``b_g = Lambda u_g``, ``u_g ~ N(0, I_q)`` and
``Lambda`` lower triangular. The term is stored compactly:

``codes``     (n,) int64, the level index ``g(i)`` of every row (``-1`` = a level
              unseen in fit, which contributes nothing)
``Z``         (n, q) float64, the row's term covariates (a column of ones for
              the intercept)
``n_levels``  number of levels G

``theta`` holds the lower triangle of ``Lambda`` column by column, which is
lme4's order: for q = 2, ``[L11, L21, L22]``. The diagonal is bounded below by
0; off-diagonal entries are free. ``Sigma = Lambda Lambda^T`` (times the
dispersion for families that have one).

Several grouping factors are a list of such terms, one per factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RandomEffectTerm", "theta_index", "lambda_from_theta"]


def theta_index(q: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each theta element in ``Lambda`` (lme4's order)."""
    rows, cols = [], []
    for c in range(q):
        for r in range(c, q):
            rows.append(r)
            cols.append(c)
    return np.array(rows, dtype=np.intp), np.array(cols, dtype=np.intp)


def lambda_from_theta(
    theta: np.ndarray, q: int, rows: np.ndarray | None = None, cols: np.ndarray | None = None
) -> np.ndarray:
    """The ``q x q`` lower-triangular relative Cholesky factor ``Lambda``.

    ``rows``, ``cols`` place each theta element (default: the full lower
    triangle in lme4's order, :func:`theta_index`); uncorrelated terms
    (``(1 + x || g)``) give only the diagonal blocks of their bars.
    """
    if rows is None:
        rows, cols = theta_index(q)
    lam = np.zeros((q, q))
    lam[rows, cols] = theta
    return lam


@dataclass
class RandomEffectTerm:
    """The random effects of one grouping factor (see the module docstring).

    All bars on the same factor are one term: ``(1 + x || g)`` is a term with
    ``q = 2`` whose ``Lambda`` is diagonal, so the factor's levels stay one
    block each.

    Attributes
    ----------
    factor : str
        Name of the grouping factor (``"a:b"`` for an interaction).
    term_names : list of str
        ``"(Intercept)"`` and/or X column names, one per column of ``Z``.
    codes : ndarray of shape (n,)
        Level index of each row; ``-1`` for levels unseen in fit.
    Z : ndarray of shape (n, q)
        Term covariates of each row.
    n_levels : int
        Number of levels seen in fit.
    bar_sizes : tuple of int or None
        Number of columns of each bar on this factor, in order; ``None`` for
        one bar (a full lower-triangular ``Lambda``).
    """

    factor: str
    term_names: list[str]
    codes: np.ndarray
    Z: np.ndarray
    n_levels: int
    bar_sizes: tuple[int, ...] | None = None

    @property
    def q(self) -> int:
        """Number of random effects per level."""
        return self.Z.shape[1]

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.q,) if self.bar_sizes is None else tuple(self.bar_sizes)

    @property
    def theta_rows_cols(self) -> tuple[np.ndarray, np.ndarray]:
        """Position in ``Lambda`` of each theta element: bar by bar, lme4's order within a bar."""
        rows, cols, start = [], [], 0
        for size in self.sizes:
            r, c = theta_index(size)
            rows.append(r + start)
            cols.append(c + start)
            start += size
        return np.concatenate(rows), np.concatenate(cols)

    @property
    def n_theta(self) -> int:
        """Number of covariance parameters."""
        return sum(size * (size + 1) // 2 for size in self.sizes)

    @property
    def theta_start(self) -> np.ndarray:
        """lme4's start: ``Lambda = I``."""
        rows, cols = self.theta_rows_cols
        return np.where(rows == cols, 1.0, 0.0)

    @property
    def bar_names(self) -> list[str]:
        """lme4's group name of each bar: the factor, then ``factor.1``, ``factor.2`` ..."""
        return [self.factor if j == 0 else f"{self.factor}.{j}" for j in range(len(self.sizes))]

    @property
    def theta_names(self) -> list[str]:
        """lme4's names, e.g. ``"user_id.day_centered.(Intercept)"``."""
        names, start, f = [], 0, self.factor
        for size in self.sizes:
            terms = self.term_names[start : start + size]
            rows, cols = theta_index(size)
            for r, c in zip(rows, cols):
                names.append(f"{f}.{terms[r]}" if r == c else f"{f}.{terms[r]}.{terms[c]}")
            start += size
        return names

    def lambda_(self, theta: np.ndarray) -> np.ndarray:
        """``Lambda(theta)``, the relative Cholesky factor."""
        return lambda_from_theta(theta, self.q, *self.theta_rows_cols)

    def linear_predictor(self, b: np.ndarray) -> np.ndarray:
        """Row contributions ``z_i^T b_{g(i)}``; rows of unseen levels get 0.

        Parameters
        ----------
        b : ndarray of shape (n_levels, q)
            Random effects on the response's link scale.
        """
        known = self.codes >= 0
        out = np.zeros(self.codes.shape[0])
        if np.all(known):
            out = np.einsum("ij,ij->i", self.Z, b[self.codes])
        else:
            out[known] = np.einsum("ij,ij->i", self.Z[known], b[self.codes[known]])
        return out
