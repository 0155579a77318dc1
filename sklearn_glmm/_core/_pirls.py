"""Penalised iteratively reweighted least squares (PIRLS) for the modes ``u``.

Model and notation (see ``docs/theory.md``)::

    eta = offset + X beta + Z Lambda(theta) u,     u ~ N(0, I)

For fixed ``theta`` and ``beta``, the conditional mode ``u*`` minimises the
penalised deviance (eq. 2 of the theory page)::

    pdev(u) = sum_i w_i d(y_i, mu_i) + ||u||^2

(computed as ``-2 * loglik kernel + ||u||^2``, which differs by a constant in y
and avoids the logarithms of the unit deviance).

Each PIRLS step is a Fisher-scoring step on this objective (a Newton step for
canonical links, and for the negative binomial, which steps with its positive
observed information). With one grouping factor the system is block
diagonal, one ``q x q`` block per level::

    A_g = I + sum_{i in g} W_i zl_i zl_i^T,      zl_i = Lambda^T z_i
    A_g delta_g = sum_{i in g} zl_i s_i - u_g    (s_i = d loglik_i / d eta_i)

and, as ``pdev`` is a sum of independent per-group terms, the step is halved
group by group until that group's term does not increase (lme4's
``pwrssUpdate`` halves one global step). The loop runs to a tight tolerance on
the step, far tighter than lme4's default 1e-7 on the relative change in
pdev, because the Laplace deviance and its gradient are only as precise as
``u*``; a Newton iteration skips its last, confirming step when quadratic
convergence puts that step 1000 times below the tolerance.

The per-row work is done by the family's :class:`~sklearn_glmm.families.
_family.RowKernel` (fused passes for the Poisson, logit and NB2 kernels) on the
rows' covariates in Z coordinates (:class:`TermRows`).

:func:`fit_glm` is the same loop without random effects: IRLS for the plain
GLM, used for starting values and for ``theta = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..families import Family, IRLSQuantities
from ..families._family import RowKernel
from ._linalg import BlockCholesky, GroupIndex

__all__ = ["PIRLSResult", "TermRows", "pirls", "pirls_term", "fit_glm"]

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
    M, T : ndarray or None
        ``sum_{i in g} W_i z_i z_i^T`` (G, q, q) with the weights of ``chol`` and
        ``sum_{i in g} s_i z_i`` (G, q) at the modes, in Z coordinates.
    """

    u: np.ndarray
    eta: np.ndarray
    irls: IRLSQuantities
    chol: BlockCholesky
    pdev: float
    n_iter: int
    converged: bool
    #: ``sum W z z^T`` (the Laplace weights of ``chol``, Z coordinates) and
    #: ``sum s z`` at the modes, when the PIRLS loop has them (the gradient
    #: reuses them)
    M: np.ndarray | None = None
    T: np.ndarray | None = None

    def slim(self) -> PIRLSResult:
        """A copy that keeps, of the per-row arrays, only the observed weights.

        What ``LaplaceProblem.mode_derivative`` needs; the optimiser keeps it
        between evaluations without holding on to ``eta`` and the other
        per-row IRLS arrays (four vectors of n more at the peak).
        """
        irls = self.irls
        hw = irls.hessian_weights
        lw = hw if irls.laplace_weights is hw else irls.laplace_weights
        slim_irls = IRLSQuantities(None, None, None, None, hw, lw, None)
        return PIRLSResult(self.u, None, slim_irls, self.chol, self.pdev, self.n_iter, self.converged, self.M, self.T)


class TermRows:
    """The per-row covariates ``z_i`` of one random-effects term, in Z coordinates.

    PIRLS works with ``z_i`` rather than ``zl_i = Lambda^T z_i``: the group sums
    ``sum W z z^T`` and ``sum s z`` do not depend on theta, ``Lambda`` enters
    only through ``(G, q, q)`` algebra, and a column of ones (the random
    intercept) needs no multiplication at all. Products ``z_j z_k`` of two
    non-constant columns are formed once.

    Parameters
    ----------
    ZT : ndarray of shape (q, n)
    groups : GroupIndex
    """

    def __init__(self, ZT: np.ndarray, groups: GroupIndex):
        self.ZT = ZT
        self.groups = groups
        self.q = ZT.shape[0]
        self.ones = [bool(np.all(ZT[j] == 1.0)) for j in range(self.q)]
        self.pairs = [(j, k) for j in range(self.q) for k in range(j + 1)]
        self._pair_rows = []
        for j, k in self.pairs:
            if self.ones[j] and self.ones[k]:
                self._pair_rows.append(None)
            elif self.ones[j] or self.ones[k]:
                self._pair_rows.append(ZT[k] if self.ones[j] else ZT[j])
            else:
                self._pair_rows.append(ZT[j] * ZT[k])

    @property
    def intercept_only(self) -> bool:
        return self.q == 1 and self.ones[0]

    def _times(self, v, row):
        return v if row is None else v * row

    def sums(self, v: np.ndarray) -> np.ndarray:
        """``sum_{i in g} v_i z_i`` for every group: (G, q)."""
        out = np.empty((self.groups.n_levels, self.q))
        for j in range(self.q):
            out[:, j] = self.groups.sum(v if self.ones[j] else v * self.ZT[j])
        return out

    def outer(self, W: np.ndarray) -> np.ndarray:
        """``sum_{i in g} W_i z_i z_i^T`` for every group: (G, q, q)."""
        out = np.empty((self.groups.n_levels, self.q, self.q))
        for (j, k), row in zip(self.pairs, self._pair_rows):
            out[:, j, k] = self.groups.sum(self._times(W, row))
            out[:, k, j] = out[:, j, k]
        return out

    def quadratic(self, B: np.ndarray) -> np.ndarray:
        """``z_i^T B_g z_i`` per row for symmetric (G, q, q) blocks ``B``: (n,)."""
        expand = self.groups.expand
        out = None
        for (j, k), row in zip(self.pairs, self._pair_rows):
            term = expand(B[:, j, k] if j == k else 2.0 * B[:, j, k])
            if row is not None:
                term *= row
            if out is None:
                out = term
            else:
                out += term
        return out

    def dot(self, b: np.ndarray) -> np.ndarray:
        """``z_i^T b_g`` per row for (G, q) ``b``: (n,)."""
        expand = self.groups.expand
        out = expand(b[:, 0])
        if not self.ones[0]:
            out *= self.ZT[0]
        for j in range(1, self.q):
            term = expand(b[:, j])
            if not self.ones[j]:
                term *= self.ZT[j]
            out += term
            del term
        return out


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
    return pirls_term(family.row_kernel(y, w), eta_fixed, TermRows(ZlT, groups), np.eye(q), u0, tol, max_iter)


def pirls_term(
    kernel: RowKernel,
    eta_fixed: np.ndarray,
    rows: TermRows,
    lam: np.ndarray,
    u0: np.ndarray,
    tol: float = PIRLS_TOL,
    max_iter: int = PIRLS_MAX_ITER,
    first_step_tol: float | None = None,
) -> PIRLSResult:
    """PIRLS for one term, in Z coordinates, with step halving group by group.

    The penalised deviance is a sum of independent per-group terms (each row
    belongs to one group and ``u_g`` moves only its rows), so a step that
    fails to decrease one group's term is halved for that group alone: one
    group far from its mode does not slow every other group down (with one
    global step size, a far-out trial point of the outer line search took up
    to 177 iterations).

    Step order: at the current ``eta``, the kernel's IRLS quantities; the sums
    ``M_g = sum W z z^T`` and ``T_g = sum s z``; ``A_g = I + Lambda^T M_g
    Lambda`` and the Fisher-scoring step ``delta_g = A_g^{-1} (Lambda^T T_g -
    u_g)``; the trial point and its per-group penalised deviance; halving
    where it rose. Stops when ``max |step| < tol``, after recomputing
    everything at the last point (those are what the result carries).

    ``first_step_tol``: the caller's ``u0`` is a prediction accurate to second
    order (see ``LaplaceProblem.mode_derivative``). When the first, full
    Newton step is below it, the error left after that step is of order
    ``K step^2`` (quadratic convergence, ``K`` of order 1 on the u scale),
    below ``1e-13`` for ``first_step_tol = 1e-7``, and PIRLS stops there.
    """
    groups = rows.groups
    q = u0.shape[1]
    eye = np.eye(q)
    u = u0.copy()
    eta = eta_fixed + rows.dot(u @ lam.T)
    mu, ll = kernel.loglik_rows(eta)
    pdev_g = np.einsum("gq,gq->g", u, u) - 2.0 * groups.sum(ll)
    del ll
    checked_start = False
    converged = stuck = False
    last_step = np.inf
    prev_size = None
    n_iter = 0
    laplace_steps = kernel.step_with_laplace_weights
    while True:
        irls = kernel.irls(eta, mu)
        M = rows.outer(irls.laplace_weights if laplace_steps else irls.weights)
        T = rows.sums(irls.score)
        chol = BlockCholesky(eye + lam.T @ M @ lam)
        if last_step < tol:
            converged = not stuck
            break
        if n_iter >= max_iter:
            break
        n_iter += 1
        delta = chol.solve(T @ lam - u)
        # the rows' IRLS quantities are not needed again unless this is the
        # last step (then the top of the loop recomputes them): freeing them
        # keeps the trial point's arrays within the same memory
        del irls, mu
        step_eta = rows.dot(delta @ lam.T)
        size = np.max(np.abs(delta), axis=1)
        step = np.ones(groups.n_levels)
        u_new = u + delta
        eta_new = eta + step_eta
        mu_new, ll_new = kernel.loglik_rows(eta_new)
        pdev_new = np.einsum("gq,gq->g", u_new, u_new) - 2.0 * groups.sum(ll_new)
        del ll_new
        # a relative slack of 1e-14 lets rounding noise pass; steps below 1e-8
        # are Newton steps next to the mode, which decrease pdev in exact
        # arithmetic, so their rounding noise is not tested at all
        bad = _no_decrease(pdev_new, pdev_g, size * step)
        if not checked_start and (n_iter >= 3 or np.any(bad)):
            # A warm start can be far worse than u = 0 when theta moved a lot
            # (the outer line search tries far-out points): exp(eta) then needs
            # about one Newton step per unit of eta to come back (177 steps were
            # seen). When the first step fails somewhere, or three steps have
            # not converged, groups for which u = 0 is better restart from
            # there (checked once, and only then: it costs a pass).
            checked_start = True
            mu0, ll0 = kernel.loglik_rows(eta_fixed)
            pdev0 = -2.0 * groups.sum(ll0)
            reset = ~(pdev_g <= pdev0)
            if np.any(reset):
                u[reset] = 0.0
                rows_reset = groups.expand(reset)
                eta = np.where(rows_reset, eta_fixed, eta)
                mu, _ = kernel.loglik_rows(eta)
                pdev_g = np.where(reset, pdev0, pdev_g)
                continue
            del mu0, ll0
        for _ in range(MAX_HALVINGS):
            if not np.any(bad):
                break
            step[bad] *= 0.5
            u_new = u + step[:, None] * delta
            del eta_new, mu_new
            eta_new = eta + groups.expand(step) * step_eta
            mu_new, ll_new = kernel.loglik_rows(eta_new)
            pdev_new = np.einsum("gq,gq->g", u_new, u_new) - 2.0 * groups.sum(ll_new)
            bad = _no_decrease(pdev_new, pdev_g, size * step)
        if np.any(bad):
            # no decrease for these groups: at their modes to rounding precision
            # (or hopeless); they keep their current u
            step[bad] = 0.0
            u_new = u + step[:, None] * delta
            del eta_new, mu_new
            eta_new = eta + groups.expand(step) * step_eta
            mu_new, ll_new = kernel.loglik_rows(eta_new)
            pdev_new = np.einsum("gq,gq->g", u_new, u_new) - 2.0 * groups.sum(ll_new)
        u, eta, mu, pdev_g = u_new, eta_new, mu_new, pdev_new
        del eta_new, mu_new, step_eta
        last_step = float(np.max(size * step))
        # once only stuck groups are left, they are judged by their residual below
        stuck = bool(np.any(bad))
        full = bool(np.all(step == 1.0))
        if kernel.newton and full and n_iter == 1 and first_step_tol is not None and last_step < first_step_tol:
            last_step = 0.0
        elif kernel.newton and full and prev_size is not None and last_step < 1e-5:
            # Newton steps converge quadratically, |step_{k+1}| ~ K |step_k|^2
            # with K ~ |step_k| / |step_{k-1}|^2: when the predicted next step is
            # 1000 times below tol, u is already as exact as one more step
            # would leave it, and that step is skipped
            predicted = size * (size / np.maximum(prev_size, 1e-150)) ** 2
            if float(np.max(predicted)) < 1e-3 * tol:
                last_step = 0.0
        prev_size = size if full else None
    M_fisher = M
    if irls.laplace_weights is not irls.weights and not laplace_steps:
        M = rows.outer(irls.laplace_weights)
        chol = BlockCholesky(eye + lam.T @ M @ lam)
    if not converged:
        # the halving gave up because no step decreased pdev: that only happens
        # at the mode, where rounding noise dominates the decrease
        step_chol = BlockCholesky(eye + lam.T @ M_fisher @ lam)
        residual = step_chol.solve(T @ lam - u)
        converged = bool(np.max(np.abs(residual)) < 1e-6)
    return PIRLSResult(u, eta, irls, chol, float(np.sum(pdev_g)), n_iter, converged, M, T)


def _no_decrease(pdev_new: np.ndarray, pdev: np.ndarray, step_size: np.ndarray) -> np.ndarray:
    """Groups whose trial point must be halved: a penalised deviance that rose, or is not finite.

    A relative slack of 1e-14 lets rounding noise pass, and steps below 1e-8
    are Newton steps next to the mode, which decrease pdev in exact arithmetic,
    so their rounding noise is not tested -- but a trial point outside the
    family's domain (a negative Gamma mean under the identity link: pdev NaN)
    is refused however small the step.
    """
    rose = ~(pdev_new <= pdev + 1e-14 * np.abs(pdev)) & (step_size > 1e-8)
    return rose | ~np.isfinite(pdev_new)


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
    kernel = family.row_kernel(y, w)

    def objective(eta):
        # -2 loglik up to a constant in y: the deviance's minimiser, without
        # the logarithms of the unit deviance
        return -2.0 * float(np.sum(kernel.loglik_rows(eta)[1]))

    mu = family.starting_mu(y)
    eta = family.link.link(mu)
    # first step from the working response at mustart (as R's glm.fit)
    irls = family.irls_quantities(y, eta, w)
    z = eta - offset + irls.score / np.where(irls.weights > 0, irls.weights, 1.0)
    beta = _weighted_lstsq(X, z, irls.weights)
    eta = offset + X @ beta
    dev = objective(eta)
    if not np.isfinite(dev):
        # The first step left the family's domain (a negative mean under the
        # Gamma identity link): restart from the constant fit, which is valid,
        # so that step halving (a NaN deviance never passes the test below)
        # keeps every later iterate valid. R's glm.fit stops here instead.
        beta = _weighted_lstsq(X, family.link.link(np.full_like(y, np.average(y, weights=w))) - offset, w)
        eta = offset + X @ beta
        dev = objective(eta)
    for it in range(1, max_iter + 1):
        mu = family.link.inverse(eta)
        irls = kernel.irls(eta, mu)
        grad = X.T @ irls.score
        info = (X.T * irls.weights) @ X
        delta = _solve_spd(info, grad)
        step = 1.0
        step_eta = X @ delta
        for _ in range(MAX_HALVINGS):
            eta_new = eta + step * step_eta
            dev_new = objective(eta_new)
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
