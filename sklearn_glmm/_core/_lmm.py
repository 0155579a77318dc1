"""The linear mixed model: exact profiled (RE)ML deviance, as lme4's ``lmer``.

Model (one grouping factor; eq. 8 of ``docs/theory.md``)::

    y_i = offset_i + x_i^T beta + z_i^T Lambda(theta) u_{g(i)} + e_i,
    u_g ~ N(0, sigma^2 I),   e_i ~ N(0, sigma^2 / w_i)

Here ``theta`` is *relative* to the residual SD, as in lme4. For a given
``theta`` the penalised least-squares problem (eq. 9)::

    min_{u, beta}  sum_i w_i (y_i - offset_i - x_i^T beta - zl_i^T u_g)^2 + ||u||^2

is solved exactly through the block structure: ``A_g = I + Lambda^T Z_g^T W Z_g
Lambda``, ``K_g = Lambda^T Z_g^T W X``, the Schur complement
``RX^T RX = X^T W X - sum_g K_g^T A_g^{-1} K_g`` gives beta, then ``u_g``. With
the penalised residual sum of squares ``r2``, ``sigma`` and beta profile out and
(eq. 10)::

    ML:   d(theta) = log|A| + n (1 + log(2 pi r2 / n)) - sum log w
    REML: d(theta) = log|A| + log|RX^T RX| + (n - p) (1 + log(2 pi r2 / (n - p))) - sum log w

All per-row work is done once: the group sums ``Z^T W Z``, ``Z^T W X``,
``Z^T W y`` do not depend on theta, so one evaluation costs ``O(G q^2 p)``,
independent of the number of rows. The optimiser over theta uses central
differences (theta is small) and the same boundary restarts as the GLMM.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from ..design import lambda_from_theta, theta_index
from ._linalg import BlockCholesky, GroupIndex, row_order
from ._multilevel import TermsParameters, lambda_inverse_blocks

__all__ = ["LMMProblem", "MultiLevelLMMProblem", "LMMResult", "fit_lmm"]


@dataclass
class LMMResult:
    """Plain record of an LMM fit.

    Attributes
    ----------
    theta : ndarray
        Relative covariance factor (lme4's ``theta``).
    beta : ndarray
    sigma : float
        Residual SD.
    u : ndarray of shape (G, q)
        Spherical modes on the response scale; ``b = u @ Lambda.T``.
    b : ndarray of shape (G, q)
    deviance : float
        The criterion: ``-2 logLik`` (ML) or the REML criterion.
    vcov_beta : ndarray
        ``sigma^2 (RX^T RX)^{-1}``.
    reml : bool
    n_iter, n_evals : int
    converged, singular : bool
    message : str
    deviance_ml : float
        ``-2 logLik`` under ML at the estimates (for REML fits, lme4's
        ``deviance_ml_at_reml``).
    """

    theta: np.ndarray
    beta: np.ndarray
    sigma: float
    u: np.ndarray
    b: np.ndarray
    deviance: float
    vcov_beta: np.ndarray
    reml: bool
    n_iter: int
    n_evals: int
    converged: bool
    singular: bool
    message: str
    deviance_ml: float


class LMMProblem:
    """Sufficient statistics of a weighted LMM with one random-effects term."""

    def __init__(self, X, y, weights, offset, codes, Z, n_levels: int):
        positive = weights > 0
        self.n = int(positive.sum())
        self.p = X.shape[1]
        self.q = Z.shape[1]
        self.n_levels = n_levels
        self.theta_rows, self.theta_cols = theta_index(self.q)
        groups = GroupIndex(codes, n_levels)
        r = y - offset
        XT, ZT = np.ascontiguousarray(X.T), np.ascontiguousarray(Z.T)
        self.ZWZ = groups.outer_sums(weights, ZT)  # (G, q, q)
        self.ZWX = groups.outer_sums(weights, ZT, XT)  # (G, q, p)
        self.ZWy = groups.sum(ZT * (weights * r))  # (G, q)
        self.XWX = (XT * weights) @ XT.T
        self.XWy = XT @ (weights * r)
        self.yWy = float(np.dot(weights, r * r))
        self.sum_log_w = float(np.sum(np.log(weights[positive])))
        # the rows themselves, for simulating new responses (parametric bootstrap)
        self._rows = (X, weights, offset, codes, Z)

    @property
    def n_theta(self) -> int:
        return self.theta_rows.size

    def simulated(self, theta, beta, sigma: float, rng: np.random.Generator) -> "LMMProblem":
        """The same design with ``y`` drawn from the model at (theta, beta, sigma).

        ``u_g ~ N(0, I)`` for every level (drawn first), then the residuals
        ``e_i ~ N(0, sigma^2 / w_i)``; ``y = offset + X beta + Z_g Lambda u_g sigma + e``.
        """
        X, weights, offset, codes, Z = self._rows
        u = rng.standard_normal((self.n_levels, self.q))
        b = sigma * u @ lambda_from_theta(theta, self.q).T
        e = sigma * rng.standard_normal(X.shape[0]) / np.sqrt(np.where(weights > 0, weights, 1.0))
        y = offset + X @ beta + np.einsum("nq,nq->n", Z, b[codes]) + e
        return LMMProblem(X, y, weights, offset, codes, Z, self.n_levels)

    @property
    def theta_diagonal(self) -> np.ndarray:
        return self.theta_rows == self.theta_cols

    def random_effects(self, theta, u) -> np.ndarray:
        """``b_g = Lambda u_g`` (relative to sigma): (G, q)."""
        return u @ lambda_from_theta(theta, self.q).T

    def solve(self, theta):
        """Penalised least squares at theta: (beta, u, r2, logdet A, RX^T RX)."""
        lam = lambda_from_theta(theta, self.q)
        A = np.eye(self.q) + np.einsum("ba,gbc,cd->gad", lam, self.ZWZ, lam)
        chol = BlockCholesky(A)
        K = np.einsum("ba,gbp->gap", lam, self.ZWX)  # Lambda^T Z^T W X
        c = self.ZWy @ lam  # rows Lambda^T Z_g^T W y
        AinvK = np.stack([chol.solve(K[:, :, j]) for j in range(self.p)], axis=2)
        Ainvc = chol.solve(c)
        RXtRX = self.XWX - np.einsum("gqa,gqb->ab", K, AinvK)
        rhs = self.XWy - np.einsum("gqa,gq->a", K, Ainvc)
        beta = np.linalg.solve(RXtRX, rhs)
        u = Ainvc - AinvK @ beta
        # at the solution the minimum is y'Wy - [c; X'Wy] . [u; beta]
        r2 = max(self.yWy - float(np.sum(c * u)) - float(self.XWy @ beta), 1e-300)
        return beta, u, r2, chol.logdet(), RXtRX

    def deviance(self, theta, reml: bool) -> float:
        """Profiled deviance (ML) or REML criterion at theta (eq. 10)."""
        return _profiled_deviance(self, theta, reml)

    def conditional_covariances(self, theta, sigma2: float) -> list[np.ndarray]:
        """``Var(b_g | y) = sigma^2 Lambda A_g^{-1} Lambda^T``: a list with one (G, q, q) array.

        lme4's ``condVar`` for ``lmer`` (beta and theta held at their estimates).
        """
        lam = lambda_from_theta(theta, self.q)
        A = np.eye(self.q) + np.einsum("ba,gbc,cd->gad", lam, self.ZWZ, lam)
        Ainv = BlockCholesky(A).inverse()
        return [sigma2 * np.einsum("ab,gbc,dc->gad", lam, Ainv, lam)]


def _profiled_deviance(problem, theta, reml: bool) -> float:
    _, _, r2, logdet, RXtRX = problem.solve(theta)
    if reml:
        dof = problem.n - problem.p
        return (
            logdet + np.linalg.slogdet(RXtRX)[1] + dof * (1.0 + np.log(2.0 * np.pi * r2 / dof))
            - problem.sum_log_w
        )
    return logdet + problem.n * (1.0 + np.log(2.0 * np.pi * r2 / problem.n)) - problem.sum_log_w


class MultiLevelLMMProblem(TermsParameters):
    """A weighted LMM with several random-effects terms (crossed, nested, ``||``).

    The same penalised least squares as :class:`LMMProblem`, with ``A``
    factorised by :mod:`._blocked`. ``terms`` are :class:`._multilevel.CoreTerm`
    records, the one with most levels first. Each evaluation makes one pass over
    the rows (``A`` depends on theta through every row's ``Lambda^T z_i``).
    ``random_effects`` gives ``b_k`` on the response scale (``u ~ N(0, sigma^2 I)``).
    """

    def __init__(self, X, y, weights, offset, terms):
        rows = row_order(terms[0].codes)
        positive = weights > 0
        self.n = int(positive.sum())
        self.p = X.shape[1]
        self.w = rows(weights)
        self.XT = np.ascontiguousarray(rows(X).T)
        self.r = rows(y - offset)
        self.ZT = [np.ascontiguousarray(rows(t.Z).T) for t in terms]
        self._set_terms(terms, [rows(np.asarray(t.codes)) for t in terms])
        self.XWX = (self.XT * self.w) @ self.XT.T
        self.XWy = self.XT @ (self.w * self.r)
        self.yWy = float(np.dot(self.w, self.r * self.r))
        self.sum_log_w = float(np.sum(np.log(weights[positive])))

    def simulated(self, theta, beta, sigma: float, rng: np.random.Generator) -> "MultiLevelLMMProblem":
        """The same design with ``y`` drawn from the model at (theta, beta, sigma).

        ``u ~ N(0, I)`` over all terms' effects (flat, drawn first), then the
        residuals ``e_i ~ N(0, sigma^2 / w_i)``; the design is shared, not copied.
        """
        u = rng.standard_normal(self.layout.size)
        ZlT = [lam.T @ ZT for lam, ZT in zip(self.lambda_(theta), self.ZT)]
        e = sigma * rng.standard_normal(self.w.size) / np.sqrt(np.where(self.w > 0, self.w, 1.0))
        other = copy.copy(self)
        other.r = beta @ self.XT + sigma * self.layout.expand_dot(ZlT, u) + e  # y - offset
        other.XWy = self.XT @ (self.w * other.r)
        other.yWy = float(np.dot(self.w, other.r * other.r))
        return other

    def solve(self, theta):
        """Penalised least squares at theta: (beta, u, r2, logdet A, RX^T RX)."""
        lay = self.layout
        ZlT = [lam.T @ ZT for lam, ZT in zip(self.lambda_(theta), self.ZT)]
        factor = lay.factor(self.w, ZlT)
        K = np.column_stack([lay.cross_product(self.w * x, ZlT) for x in self.XT])
        c = lay.cross_product(self.w * self.r, ZlT)
        AinvK = factor.solve_many(K)
        Ainvc = factor.solve(c)
        RXtRX = self.XWX - K.T @ AinvK
        beta = np.linalg.solve(RXtRX, self.XWy - K.T @ Ainvc)
        u = Ainvc - AinvK @ beta
        r2 = max(self.yWy - float(c @ u) - float(self.XWy @ beta), 1e-300)
        return beta, u, r2, factor.logdet(), RXtRX

    def deviance(self, theta, reml: bool) -> float:
        """Profiled deviance (ML) or REML criterion at theta (eq. 10)."""
        return _profiled_deviance(self, theta, reml)

    def conditional_covariances(self, theta, sigma2: float) -> list[np.ndarray]:
        """``Var(b_{k,g} | y) = sigma^2 Lambda_k (A^{-1})_{kg,kg} Lambda_k^T`` per term.

        lme4's ``condVar`` for ``lmer``: list of (G_k, q_k, q_k) arrays, terms in
        this problem's order.
        """
        lams = self.lambda_(theta)
        factor = self.layout.factor(self.w, [lam.T @ ZT for lam, ZT in zip(lams, self.ZT)])
        return lambda_inverse_blocks(factor, lams, sigma2)


def _central_gradient(fun, x, h=1e-6):
    g = np.empty_like(x)
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h * max(1.0, abs(x[j]))
        g[j] = (fun(x + e) - fun(x - e)) / (2.0 * e[j])
    return g


def fit_lmm(problem: LMMProblem, *, reml: bool = True, max_iter: int = 500, verbose: int = 0) -> LMMResult:
    """Maximise the (restricted) likelihood of ``problem`` over theta.

    L-BFGS-B on the profiled criterion with central-difference gradients; a
    diagonal element of Lambda stuck at 0 where the criterion decreases away
    from it is left by a restart, as in :func:`._optimize.fit_laplace`.
    """
    n_evals = 0

    def objective(theta):
        nonlocal n_evals
        n_evals += 1
        return problem.deviance(theta, reml)

    def fun(theta):
        return objective(theta), _central_gradient(objective, theta)

    diag = problem.theta_diagonal
    bounds = [(0.0, None) if d else (None, None) for d in diag]
    theta = np.where(diag, 1.0, 0.0)
    n_iter = 0
    for _ in range(4):
        res = minimize(fun, theta, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": max_iter, "ftol": 1e-15, "gtol": 1e-9})
        theta, n_iter = res.x, n_iter + int(res.nit)
        f = objective(theta)
        restart = None
        for k in np.flatnonzero(diag & (theta <= 1e-8)):
            for t in (0.3, 0.1, 0.03, 0.01):
                trial = theta.copy()
                trial[k] = t
                f_trial = objective(trial)
                if f_trial < f - 1e-8 and (restart is None or f_trial < restart[0]):
                    restart = (f_trial, trial)
        if restart is None:
            break
        theta = restart[1]
    if verbose:
        print(f"[sklearn_glmm] LMM: {n_iter} iterations, {n_evals} evaluations, criterion {f:.8f}")
    beta, u, r2, _, RXtRX = problem.solve(theta)
    dof = problem.n - problem.p if reml else problem.n
    sigma2 = r2 / dof
    grad = _central_gradient(objective, theta)
    free = ~(diag & (theta <= 1e-8) & (grad > 0))
    max_grad = float(np.max(np.abs(grad[free]))) if np.any(free) else 0.0
    # -2 logLik under ML at these estimates, sigma and beta profiled (lme4's
    # deviance(m, REML = FALSE) for a REML fit)
    deviance_ml = problem.deviance(theta, reml=False) if reml else f
    return LMMResult(
        theta=theta,
        beta=beta,
        sigma=float(np.sqrt(sigma2)),
        u=u,
        b=problem.random_effects(theta, u),
        deviance=float(f),
        vcov_beta=sigma2 * np.linalg.inv(RXtRX),
        reml=reml,
        n_iter=n_iter,
        n_evals=n_evals,
        converged=max_grad < 1e-3,
        singular=bool(np.any(theta[diag] < 1e-4)),
        message=f"max|gradient| {max_grad:.2e} of the {'REML' if reml else 'ML'} criterion",
        deviance_ml=float(deviance_ml),
    )
