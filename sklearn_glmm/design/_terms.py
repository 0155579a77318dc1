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

Several grouping factors will be a list of such terms; nothing here assumes
there is only one.
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


def lambda_from_theta(theta: np.ndarray, q: int) -> np.ndarray:
    """The ``q x q`` lower-triangular relative Cholesky factor ``Lambda``."""
    rows, cols = theta_index(q)
    lam = np.zeros((q, q))
    lam[rows, cols] = theta
    return lam


@dataclass
class RandomEffectTerm:
    """A random-effects term for one grouping factor (see the module docstring).

    Attributes
    ----------
    factor : str
        Name of the grouping factor.
    term_names : list of str
        ``"(Intercept)"`` and/or X column names, one per column of ``Z``.
    codes : ndarray of shape (n,)
        Level index of each row; ``-1`` for levels unseen in fit.
    Z : ndarray of shape (n, q)
        Term covariates of each row.
    n_levels : int
        Number of levels seen in fit.
    """

    factor: str
    term_names: list[str]
    codes: np.ndarray
    Z: np.ndarray
    n_levels: int

    @property
    def q(self) -> int:
        """Number of random effects per level."""
        return self.Z.shape[1]

    @property
    def n_theta(self) -> int:
        """Number of covariance parameters, ``q (q + 1) / 2``."""
        return self.q * (self.q + 1) // 2

    @property
    def theta_lower(self) -> np.ndarray:
        """Lower bounds of theta: 0 on the diagonal of Lambda, -inf elsewhere."""
        rows, cols = theta_index(self.q)
        return np.where(rows == cols, 0.0, -np.inf)

    @property
    def theta_start(self) -> np.ndarray:
        """lme4's start: ``Lambda = I``."""
        rows, cols = theta_index(self.q)
        return np.where(rows == cols, 1.0, 0.0)

    @property
    def theta_names(self) -> list[str]:
        """lme4's names, e.g. ``"user_id.day_centered.(Intercept)"``."""
        rows, cols = theta_index(self.q)
        names = []
        for r, c in zip(rows, cols):
            if r == c:
                names.append(f"{self.factor}.{self.term_names[r]}")
            else:
                names.append(f"{self.factor}.{self.term_names[r]}.{self.term_names[c]}")
        return names

    def lambda_(self, theta: np.ndarray) -> np.ndarray:
        """``Lambda(theta)``, the relative Cholesky factor."""
        return lambda_from_theta(theta, self.q)

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
