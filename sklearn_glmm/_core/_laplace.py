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
from ._linalg import BlockCholesky, GroupIndex, rowdot
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
    grad_param : float or None
        Its derivative in the family's extra parameter (NB size, Gamma
        shape), when the family has one and the gradient was asked for.
    modes : PIRLSResult
        The conditional modes and quantities at them.
    """

    deviance: float
    grad_theta: np.ndarray | None
    grad_beta: np.ndarray | None
    modes: PIRLSResult
    grad_param: float | None = None


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
        # Sort rows by group once, so that every group sum is a contiguous
        # reduction (see GroupIndex); nothing returned is per row, so the
        # order never leaks out.
        # Per-row matrices are stored transposed (XT is p x n, ZT is q x n) so
        # that each covariate is one contiguous row.
        order = np.argsort(codes, kind="stable")
        self.family = family
        self.XT = np.ascontiguousarray(X[order].T)
        self.y = y[order]
        self.weights = weights[order]
        self.offset = offset[order]
        self.codes = codes[order]
        self.ZT = np.ascontiguousarray(Z[order].T)
        self.n_levels = n_levels
        self.groups = GroupIndex(self.codes, n_levels)
        self.q = Z.shape[1]
        self.theta_rows, self.theta_cols = theta_index(self.q)
        self._constant = family.loglik_constant(self.y, self.weights)

    @property
    def X(self) -> np.ndarray:
        """Fixed-effects design in row order of the sorted data, (n, p)."""
        return self.XT.T

    @property
    def Z(self) -> np.ndarray:
        """Term covariates in row order of the sorted data, (n, q)."""
        return self.ZT.T

    @property
    def n_theta(self) -> int:
        return self.theta_rows.size

    @property
    def theta_diagonal(self) -> np.ndarray:
        """Which theta elements are diagonal entries of Lambda (bounded below by 0)."""
        return self.theta_rows == self.theta_cols

    @property
    def theta_rms(self) -> np.ndarray:
        """Root-mean-square of the covariate each theta element multiplies (1 if zero).

        The optimiser scales theta by it, so that a slope on a covariate of
        scale 1e8 is as well conditioned as an intercept.
        """
        rms = np.sqrt(np.mean(self.ZT**2, axis=1))
        return np.where(rms > 0, rms, 1.0)[self.theta_rows]

    def lambda_(self, theta: np.ndarray) -> np.ndarray:
        return lambda_from_theta(theta, self.q)

    def random_effects(self, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Conditional modes on the link scale, ``b_g = Lambda u_g``: (G, q)."""
        return u @ self.lambda_(theta).T

    def zero_modes(self) -> np.ndarray:
        return np.zeros((self.n_levels, self.q))

    def family_at(self, param: float | None) -> Family:
        """The family with its extra parameter set (itself when ``param`` is None)."""
        return self.family if param is None else self.family.with_param(param)

    def modes(self, theta, beta, u0, param: float | None = None) -> PIRLSResult:
        """Conditional modes at (theta, beta[, param]), warm-started from ``u0``."""
        ZlT = self.lambda_(theta).T @ self.ZT
        family = self.family_at(param)
        return pirls(family, self.y, self.weights, self.offset + beta @ self.XT, self.groups, ZlT, u0)

    def evaluate(self, theta, beta, u0, gradient: bool = True, param: float | None = None) -> LaplaceEvaluation:
        """Laplace deviance (and gradient) at (theta, beta[, param])."""
        family = self.family_at(param)
        constant = self._constant if param is None else family.loglik_constant(self.y, self.weights)
        lam = self.lambda_(theta)
        ZlT = lam.T @ self.ZT
        fit = pirls(family, self.y, self.weights, self.offset + beta @ self.XT, self.groups, ZlT, u0)
        # pdev = -2 loglik kernel + ||u||^2; add the constant back for the full scale
        deviance = fit.pdev - 2.0 * constant + fit.chol.logdet()
        if not gradient:
            return LaplaceEvaluation(deviance, None, None, fit)
        grad_theta, grad_beta, grad_param = self._gradient(lam, ZlT, fit, family)
        return LaplaceEvaluation(deviance, grad_theta, grad_beta, fit, grad_param)

    def _gradient(self, lam, ZlT, fit: PIRLSResult, family: Family):
        groups, ZT, q = self.groups, self.ZT, self.q
        irls, U = fit.irls, fit.u
        Ainv = fit.chol.inverse()  # (G, q, q)
        # h_i = zl_i^T A_g^{-1} zl_i = rowdot(zl_i, (A_g^{-1} zl_i)); expanding the
        # (G, q, q) blocks pair by pair avoids an (n, q, q) array
        if q == 1:
            h = ZlT[0] ** 2 * groups.expand(Ainv[:, 0, 0])
        else:
            h = np.zeros(ZlT.shape[1])
            for j in range(q):
                for k in range(q):
                    h += ZlT[j] * ZlT[k] * groups.expand(Ainv[:, j, k])
        c = irls.laplace_weights_deriv * h
        T = groups.sum(ZT * irls.score)
        C = groups.sum(ZT * c)
        M = groups.outer_sums(irls.laplace_weights, ZT)
        if irls.hessian_weights is irls.laplace_weights:
            # the log-determinant uses the observed information (canonical link,
            # or an exact Laplace): the implicit-derivative system is A itself
            Mo, Hchol = M, fit.chol
        else:
            Mo = groups.outer_sums(irls.hessian_weights, ZT)
            Hchol = BlockCholesky(np.eye(q) + np.einsum("ba,gbc,cd->gad", lam, Mo, lam))
        V = Hchol.solve(C @ lam)  # rows: H_g^{-1} Lambda^T C_g
        R = np.einsum("gab,bc,gc->ga", Mo, lam, V)
        S = np.einsum("gab,cb,gcd->ad", Ainv, lam, M)
        dlam = -2.0 * T.T @ U + 2.0 * S.T + C.T @ U + T.T @ V - R.T @ U
        grad_theta = dlam[self.theta_rows, self.theta_cols]
        zv = rowdot(ZlT, groups.expand(V))
        grad_beta = self.XT @ (-2.0 * irls.score + c - irls.hessian_weights * zv)
        grad_param = None
        if family.has_param:
            # eq. 6b: the shape enters the likelihood directly, and the score and
            # weights through V: d s / d phi = -s V_phi / V, d W / d phi = -W V_phi / V
            mu = irls.mu
            rel = family.variance_param_deriv(mu) / np.maximum(family.variance(mu), 1e-300)
            dlaplace = family.laplace_weights_param_deriv(self.y, fit.eta, self.weights, irls)
            grad_param = (
                -2.0 * family.loglik_param_deriv(self.y, mu, self.weights)
                + float(np.dot(dlaplace, h))
                - float(np.dot(irls.score * rel, zv))
            )
        return grad_theta, grad_beta, grad_param

    def beta_information(self, theta, modes: PIRLSResult) -> np.ndarray:
        """Fisher information of beta with theta held fixed, at the modes.

        The Schur complement ``X^T W X - sum_g K_g^T A_g^{-1} K_g`` with
        ``K_g = sum_{i in g} W_i zl_i x_i^T``: the inverse is lme4's
        ``vcov(m, use.hessian = FALSE)`` (the ``RX`` factor of PIRLS).
        """
        W = modes.irls.weights
        ZlT = self.lambda_(theta).T @ self.ZT
        info = (self.XT * W) @ self.XT.T
        K = self.groups.outer_sums(W, ZlT, self.XT)  # (G, q, p)
        AinvK = np.stack([modes.chol.solve(K[:, :, j]) for j in range(K.shape[2])], axis=2)
        return info - np.einsum("gqa,gqb->ab", K, AinvK)
