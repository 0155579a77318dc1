"""Penalised iteratively reweighted least squares (PIRLS) for the modes ``u``.

Model and notation (see ``docs/theory.md``)::

    eta = offset + X beta + Z Lambda(theta) u,     u ~ N(0, I)

For fixed ``theta`` and ``beta``, the conditional mode ``u*`` minimises the
penalised deviance (eq. 2 of the theory page)::

    pdev(u) = sum_i w_i d(y_i, mu_i) + ||u||^2

(computed as ``-2 * loglik kernel + ||u||^2``, which differs by a constant in y
and avoids the logarithms of the unit deviance).

Each PIRLS step is a Fisher-scoring step on this objective. With one grouping
factor the system is block diagonal, one ``q x q`` block per level::

    A_g = I + sum_{i in g} W_i zl_i zl_i^T,      zl_i = Lambda^T z_i
    A_g delta_g = sum_{i in g} zl_i s_i - u_g    (s_i = d loglik_i / d eta_i)

and the step is halved until ``pdev`` does not increase (lme4's
``pwrssUpdate``). The loop runs to a tight tolerance on the step, far tighter
than lme4's default 1e-7 on the relative change in pdev, because the Laplace
deviance and its gradient are only as precise as ``u*``.

:func:`fit_glm` is the same loop without random effects: IRLS for the plain
GLM, used for starting values and for ``theta = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..families import Family, IRLSQuantities
from ._linalg import BlockCholesky, GroupIndex, rowdot

__all__ = ["PIRLSResult", "pirls", "fit_glm"]

# Step size below which the modes count as converged (max abs change in u).
PIRLS_TOL = 1e-10
PIRLS_MAX_ITER = 200
MAX_HALVINGS = 30


@dataclass
class PIRLSResult:
    """Conditional modes and everything evaluated at them.

    Attributes
    ----------
    u : ndarray of shape (G, q)
        Spherical conditional modes.
    eta : ndarray of shape (n,)
        Linear predictor at the modes.
    irls : IRLSQuantities
        Family quantities at ``eta``.
    chol : BlockCholesky
        Factor of ``A_g = I + sum W zl zl^T`` at the modes, with the family's
        Laplace weights (Fisher, or observed for an exact Laplace).
    pdev : float
        Penalised deviance at the modes, up to a constant in y.
    n_iter : int
        Number of PIRLS steps taken.
    converged : bool
        Whether the step fell below the tolerance.
    """

    u: np.ndarray
    eta: np.ndarray
    irls: IRLSQuantities
    chol: BlockCholesky
    pdev: float
    n_iter: int
    converged: bool


def _objective(family, y, w, eta, mu, u) -> float:
    """``pdev`` up to a constant in y: -2 * loglik kernel + ||u||^2 (eq. 2)."""
    return -2.0 * family.loglik_kernel(y, eta, mu, w) + float(np.sum(u * u))


def pirls(
    family: Family,
    y: np.ndarray,
    w: np.ndarray,
    eta_fixed: np.ndarray,
    groups: GroupIndex,
    ZlT: np.ndarray,
    u0: np.ndarray,
    tol: float = PIRLS_TOL,
    max_iter: int = PIRLS_MAX_ITER,
) -> PIRLSResult:
    """Find the conditional modes ``u*`` for fixed ``theta`` and ``beta``.

    Parameters
    ----------
    family : Family
    y, w : ndarray of shape (n,)
        Response and prior weights.
    eta_fixed : ndarray of shape (n,)
        ``offset + X beta``.
    groups : GroupIndex
        Level of each row (all in ``0 .. G-1``).
    ZlT : ndarray of shape (q, n)
        Columns ``zl_i = Lambda^T z_i`` (stored transposed, see GroupIndex).
    u0 : ndarray of shape (G, q)
        Starting modes (a warm start from the previous evaluation).
    tol, max_iter : float, int
        Stop when ``max |u_new - u| < tol`` or after ``max_iter`` steps.

    Returns
    -------
    PIRLSResult
    """
    q = u0.shape[1]
    eye = np.eye(q)
    inverse = family.link.inverse
    u = u0.copy()
    eta = eta_fixed + rowdot(ZlT, groups.expand(u))
    mu = inverse(eta)
    pdev = _objective(family, y, w, eta, mu, u)
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        irls = family.irls_quantities(y, eta, w, mu)
        chol = BlockCholesky(eye + groups.outer_sums(irls.weights, ZlT))
        delta = chol.solve(groups.sum(ZlT * irls.score) - u)
        step_eta = rowdot(ZlT, groups.expand(delta))
        step = 1.0
        for _ in range(MAX_HALVINGS):
            u_new = u + step * delta
            eta_new = eta + step * step_eta
            mu_new = inverse(eta_new)
            pdev_new = _objective(family, y, w, eta_new, mu_new, u_new)
            # a relative slack of 1e-14 lets rounding noise pass at the optimum
            if pdev_new <= pdev + 1e-14 * abs(pdev):
                break
            step *= 0.5
        else:
            break  # no decrease possible: u is at the mode to rounding precision
        u, eta, mu, pdev = u_new, eta_new, mu_new, pdev_new
        if np.max(np.abs(step * delta)) < tol:
            converged = True
            break
    irls = family.irls_quantities(y, eta, w, mu)
    chol = BlockCholesky(eye + groups.outer_sums(irls.laplace_weights, ZlT))
    if not converged:
        # the halving loop gave up because no step decreased pdev: that only
        # happens at the mode, where rounding noise dominates the decrease
        step_chol = BlockCholesky(eye + groups.outer_sums(irls.weights, ZlT))
        residual = step_chol.solve(groups.sum(ZlT * irls.score) - u)
        converged = bool(np.max(np.abs(residual)) < 1e-6)
    return PIRLSResult(u, eta, irls, chol, pdev, n_iter, converged)


def fit_glm(
    family: Family,
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    offset: np.ndarray,
    tol: float = 1e-12,
    max_iter: int = 100,
) -> tuple[np.ndarray, bool, int]:
    """Maximum-likelihood fit of the plain GLM by IRLS with step halving.

    Returns
    -------
    beta : ndarray of shape (p,)
    converged : bool
    n_iter : int
        IRLS iterations, the first weighted least-squares solve included.
    """
    mu = family.starting_mu(y)
    eta = family.link.link(mu)
    # first step from the working response at mustart (as R's glm.fit)
    irls = family.irls_quantities(y, eta, w)
    z = eta - offset + irls.score / np.where(irls.weights > 0, irls.weights, 1.0)
    beta = _weighted_lstsq(X, z, irls.weights)
    eta = offset + X @ beta
    dev = family.deviance(y, family.link.inverse(eta), w)
    if not np.isfinite(dev):
        # The first step left the family's domain (a negative mean under the
        # Gamma identity link): restart from the constant fit, which is valid,
        # so that step halving (a NaN deviance never passes the test below)
        # keeps every later iterate valid. R's glm.fit stops here instead.
        beta = _weighted_lstsq(X, family.link.link(np.full_like(y, np.average(y, weights=w))) - offset, w)
        eta = offset + X @ beta
        dev = family.deviance(y, family.link.inverse(eta), w)
    for it in range(1, max_iter + 1):
        irls = family.irls_quantities(y, eta, w)
        grad = X.T @ irls.score
        info = X.T @ (X * irls.weights[:, None])
        delta = _solve_spd(info, grad)
        step = 1.0
        for _ in range(MAX_HALVINGS):
            eta_new = eta + step * (X @ delta)
            dev_new = family.deviance(y, family.link.inverse(eta_new), w)
            if dev_new <= dev + 1e-14 * abs(dev):
                break
            step *= 0.5
        else:
            return beta, True, it
        beta = beta + step * delta
        eta, dev = eta_new, dev_new
        if np.max(np.abs(step * delta)) < tol * (1.0 + np.max(np.abs(beta))):
            return beta, True, it + 1
    return beta, False, max_iter + 1


def _weighted_lstsq(X, z, weights):
    sw = np.sqrt(weights)
    return np.linalg.lstsq(X * sw[:, None], z * sw, rcond=None)[0]


def _solve_spd(A, b):
    try:
        return np.linalg.solve(A, b)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(A, b, rcond=None)[0]
