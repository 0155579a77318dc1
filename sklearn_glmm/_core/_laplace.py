"""The Laplace deviance of a GLMM and its exact gradient in (theta, beta).

Model (one grouping factor, q random effects per level)::

    eta_i = offset_i + x_i^T beta + z_i^T Lambda(theta) u_{g(i)},   u_g ~ N(0, I_q)

The Laplace approximation to ``-2 log L(theta, beta)`` is (eq. 3 of
``docs/theory.md``; lme4's ``laplace()`` in ``predModule``)::

    D(theta, beta) = -2 sum_i w_i log p(y_i | mu_i*) + ||u*||^2 + sum_g log det A_g

with ``u*`` the conditional modes from :func:`~._pirls.pirls` and
``A_g = I + sum_{i in g} W_i zl_i zl_i^T`` built from the Fisher weights ``W``
at the modes (lme4's choice, also for non-canonical links).

Gradient (eq. 4-6). The first two terms are minimised over ``u`` at ``u*``, so
only their partial derivatives count (envelope theorem). The log-determinant
depends on ``theta`` directly and on ``eta`` through ``W``; ``eta`` moves with
``u*(theta, beta)``, whose derivative follows from the stationarity condition
``Lambda^T Z^T s(eta) = u`` by implicit differentiation, with the observed
information ``H_g = I + Lambda^T (sum Wobs z z^T) Lambda``. Writing

    h_i = zl_i^T A_g^{-1} zl_i,    c_i = W'_i h_i,    v_g = H_g^{-1} Lambda^T C_g

with ``C_g = sum c_i z_i``, ``T_g = sum s_i z_i``, ``M_g = sum W z z^T``,
``Mo_g = sum Wobs z z^T`` and ``R_g = Mo_g Lambda v_g``, the derivative with
respect to entry (r, c) of Lambda is::

    dD/dLambda = -2 T^T U + 2 S^T + C^T U + T^T V - R^T U,
    S = sum_g A_g^{-1} Lambda^T M_g

and with respect to beta::

    dD/dbeta = X^T (-2 s + c - Wobs * (zl . v_{g(i)}))

Everything is a handful of ``bincount`` passes over the rows plus ``(G, q, q)``
array algebra, so a gradient costs about as much as one PIRLS step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..design import lambda_from_theta, theta_index
from ..families import Family
from ._linalg import BlockCholesky, group_outer_sums, group_sums
from ._pirls import PIRLSResult, pirls

__all__ = ["LaplaceProblem", "LaplaceEvaluation"]


@dataclass
class LaplaceEvaluation:
    """One evaluation of the Laplace deviance.

    Attributes
    ----------
    deviance : float
        ``-2 log L`` under the Laplace approximation.
    grad_theta, grad_beta : ndarray or None
        Its gradient, when asked for.
    modes : PIRLSResult
        The conditional modes and quantities at them.
    """

    deviance: float
    grad_theta: np.ndarray | None
    grad_beta: np.ndarray | None
    modes: PIRLSResult


class LaplaceProblem:
    """Data and family of one GLMM with a single random-effects term.

    Parameters
    ----------
    family : Family
    X : ndarray of shape (n, p)
        Fixed-effects design, intercept included.
    y, weights, offset : ndarray of shape (n,)
    codes : ndarray of shape (n,)
        Level of each row, ``0 .. n_levels - 1``.
    Z : ndarray of shape (n, q)
        Term covariates of each row.
    n_levels : int
    """

    def __init__(self, family: Family, X, y, weights, offset, codes, Z, n_levels: int):
        self.family = family
        self.X = X
        self.y = y
        self.weights = weights
        self.offset = offset
        self.codes = codes
        self.Z = Z
        self.n_levels = n_levels
        self.q = Z.shape[1]
        self.theta_rows, self.theta_cols = theta_index(self.q)

    @property
    def n_theta(self) -> int:
        return self.theta_rows.size

    def lambda_(self, theta: np.ndarray) -> np.ndarray:
        return lambda_from_theta(theta, self.q)

    def zero_modes(self) -> np.ndarray:
        return np.zeros((self.n_levels, self.q))

    def modes(self, theta, beta, u0) -> PIRLSResult:
        """Conditional modes at (theta, beta), warm-started from ``u0``."""
        Zl = self.Z @ self.lambda_(theta)
        return pirls(self.family, self.y, self.weights, self.offset + self.X @ beta, self.codes, Zl, u0)

    def evaluate(self, theta, beta, u0, gradient: bool = True) -> LaplaceEvaluation:
        """Laplace deviance (and gradient) at (theta, beta)."""
        lam = self.lambda_(theta)
        Zl = self.Z @ lam
        fit = pirls(self.family, self.y, self.weights, self.offset + self.X @ beta, self.codes, Zl, u0)
        irls = fit.irls
        deviance = (
            -2.0 * self.family.loglik(self.y, irls.mu, self.weights)
            + float(np.sum(fit.u * fit.u))
            + fit.chol.logdet()
        )
        if not gradient:
            return LaplaceEvaluation(deviance, None, None, fit)
        grad_theta, grad_beta = self._gradient(lam, Zl, fit)
        return LaplaceEvaluation(deviance, grad_theta, grad_beta, fit)

    def _gradient(self, lam, Zl, fit: PIRLSResult):
        codes, Z, G, q = self.codes, self.Z, self.n_levels, self.q
        irls, U = fit.irls, fit.u
        Ainv = fit.chol.inverse()  # (G, q, q)
        # h_i = zl_i^T A_g^{-1} zl_i, accumulated pair by pair so no (n, q, q) array is formed
        h = np.zeros(codes.shape[0])
        for j in range(q):
            for k in range(q):
                h += Zl[:, j] * Zl[:, k] * Ainv[codes, j, k]
        c = irls.weights_deriv * h
        T = group_sums(codes, Z * irls.score[:, None], G)
        C = group_sums(codes, Z * c[:, None], G)
        M = group_outer_sums(codes, irls.weights, Z, None, G)
        if irls.hessian_weights is irls.weights:
            Mo, Hchol = M, fit.chol  # canonical link: observed = Fisher information
        else:
            Mo = group_outer_sums(codes, irls.hessian_weights, Z, None, G)
            Hchol = BlockCholesky(np.eye(q) + np.einsum("ba,gbc,cd->gad", lam, Mo, lam))
        V = Hchol.solve(C @ lam)  # rows: H_g^{-1} Lambda^T C_g
        R = np.einsum("gab,bc,gc->ga", Mo, lam, V)
        S = np.einsum("gab,cb,gcd->ad", Ainv, lam, M)
        dlam = -2.0 * T.T @ U + 2.0 * S.T + C.T @ U + T.T @ V - R.T @ U
        grad_theta = dlam[self.theta_rows, self.theta_cols]
        zv = np.einsum("ij,ij->i", Zl, V[codes])
        grad_beta = self.X.T @ (-2.0 * irls.score + c - irls.hessian_weights * zv)
        return grad_theta, grad_beta

    def beta_information(self, theta, modes: PIRLSResult) -> np.ndarray:
        """Fisher information of beta with theta held fixed, at the modes.

        The Schur complement ``X^T W X - sum_g K_g^T A_g^{-1} K_g`` with
        ``K_g = sum_{i in g} W_i zl_i x_i^T``: the inverse is lme4's
        ``vcov(m, use.hessian = FALSE)`` (the ``RX`` factor of PIRLS).
        """
        W = modes.irls.weights
        Zl = self.Z @ self.lambda_(theta)
        info = self.X.T @ (self.X * W[:, None])
        K = group_outer_sums(self.codes, W, Zl, self.X, self.n_levels)  # (G, q, p)
        AinvK = np.stack([modes.chol.solve(K[:, :, j]) for j in range(K.shape[2])], axis=2)
        return info - np.einsum("gqa,gqb->ab", K, AinvK)
