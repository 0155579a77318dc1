"""Penalised iteratively reweighted least squares (PIRLS) for the modes ``u``.

Model and notation (``docs/theory.md``, eq. 1-2)::

    eta = offset + X beta + Z Lambda(theta) u,     u ~ N(0, I)

For fixed ``theta`` and ``beta`` the conditional mode ``u*`` minimises the
penalised deviance::

    pdev(u) = -2 sum_i loglik_i(eta_i) + ||u||^2

(the log-likelihood kernel of the family, which differs from the weighted unit
deviance by a constant in y). One PIRLS step solves the penalised system
(:mod:`._system`) at the current weights::

    A(W) delta = Lambda^T Z^T s - u,     s_i = d loglik_i / d eta_i

with the row kernel's step weights ``W`` (Fisher scoring; Newton steps for
canonical links and for kernels that step with the observed information).
This is the one PIRLS of the package: one grouping factor or several, the
zero-inflated model and the quadrature problem all call :func:`pirls` with
their own row kernel (``families.RowKernel``) and penalised system.

Step order of each iteration (the attributes of the result are those of the
last iteration, at the returned ``u``):

1. the kernel's IRLS quantities at ``eta``; ``A(W)`` factorised; the score's
   level sums ``T`` (Z coordinates); the Newton step ``delta``;
2. when ``max |delta|`` is below ``controls.pirls_tol`` over the units still
   moving, take that last step and stop after step 1 at the new point (the
   gradient of eq. 5 relies on stationarity: an error of the tolerance in
   ``u`` costs ``curvature * tol`` in the gradient, which is not negligible
   for levels with thousands of large counts); also stop after a first
   Newton step below ``controls.predicted_step_tol`` from a start predicted to
   second order;
3. the trial point ``u + delta``; every *unit* whose penalised deviance did not
   decrease (or is not finite) is halved, unit by unit (``TermSystem``: a unit
   is a level of the factor, so one level far from its mode does not hold the
   others back; ``BlockedSystem``: one unit). A unit that fails
   ``controls.max_halvings`` halvings is at its mode to rounding precision (or
   hopeless): it is frozen and judged at the end by its Newton step;
4. once, when the first step fails somewhere or three steps have not
   converged, units for which ``u = 0`` is better than the warm start restart
   from 0 (a warm start from a far-out trial point of the outer line search).

After the loop the factor is rebuilt with the Laplace weights if the steps
used other weights (the Laplace approximation's log-determinant, eq. 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..families import IRLSQuantities
from ..families._family import RowKernel
from ._controls import SolverControls
from ._system import PenalisedSystem

__all__ = ["Modes", "pirls", "no_decrease"]


@dataclass
class Modes:
    """Conditional modes and everything evaluated at them.

    Attributes
    ----------
    u : ndarray
        Spherical conditional modes (``(G, q)`` for one term, flat otherwise).
    eta : ndarray of shape (n,) or None
        Linear predictor at the modes.
    irls : IRLSQuantities or None
        The kernel's quantities at ``eta``.
    factor : object
        The factor of ``A`` with the Laplace weights at the modes (eq. 3).
    score_sums : list of ndarray
        ``sum_{i in g} s_i z_i`` per term (Z coordinates) at the modes.
    pdev : float
        Penalised deviance at the modes, up to a constant in y.
    n_iter : int
        PIRLS steps taken.
    converged : bool
        Whether the Newton step fell below the tolerance.
    """

    u: np.ndarray
    eta: np.ndarray | None
    irls: IRLSQuantities | None
    factor: object
    score_sums: list
    pdev: float
    n_iter: int
    converged: bool


def no_decrease(pdev_new, pdev, step_size, controls: SolverControls) -> np.ndarray:
    """Units whose trial point must be halved: a penalised deviance that rose, or is not finite.

    A relative rise of ``controls.decrease_slack`` is rounding noise, and steps
    below ``controls.noise_step`` are Newton steps next to the mode (a decrease
    in exact arithmetic), so their rounding noise is not tested -- but a trial
    point outside the family's domain (pdev NaN) is refused however small the step.
    """
    rose = ~(pdev_new <= pdev + controls.decrease_slack * np.abs(pdev)) & (step_size > controls.noise_step)
    return rose | ~np.isfinite(pdev_new)


def pirls(
    kernel: RowKernel,
    system: PenalisedSystem,
    eta_fixed: np.ndarray,
    u0: np.ndarray,
    controls: SolverControls,
    predicted: bool = False,
) -> Modes:
    """Conditional modes for fixed ``theta`` (the system's ``Lambda``) and ``beta``.

    Parameters
    ----------
    kernel : RowKernel
        The family's per-row log-likelihood and IRLS quantities, bound to (y, w).
    system : PenalisedSystem
        The random effects' penalised system at theta, for the same rows.
    eta_fixed : ndarray of shape (n,)
        ``offset + X beta``.
    u0 : ndarray
        Starting modes (a warm start), shaped as the system's ``u``.
    controls : SolverControls
    predicted : bool, default=False
        ``u0`` is a prediction of the modes accurate to second order (the
        Hessian's points): one Newton step below ``controls.predicted_step_tol``
        leaves an error of order its square, and is the last.

    Returns
    -------
    Modes
    """
    u = np.array(u0, dtype=float, copy=True)
    eta = eta_fixed + system.row_effect(u)
    mu, ll = kernel.loglik_rows(eta)
    pdev = system.unit_squares(u) - 2.0 * system.unit_sums(ll)
    del ll
    frozen = np.zeros(system.n_units, dtype=bool)
    restart_checked = False
    converged = predicted_stop = final = False
    n_iter = 0
    while True:
        irls = kernel.irls(eta, mu)
        W, fallback = kernel.step_weights(irls)
        factor = system.factorise(W, fallback)
        T = system.term_sums(irls.score)
        if final:
            break
        delta = factor.solve(system.to_u(T) - u)
        size = system.unit_max(delta)
        moving = ~frozen
        if predicted_stop:
            converged = True
            break
        if not np.any(moving) or float(np.max(size[moving])) < controls.pirls_tol:
            converged = not np.any(frozen) or float(np.max(size[frozen])) < controls.stalled_residual_tol
            if not np.any(moving):
                break
            # the last Newton step, below the tolerance, is taken: the gradient
            # (eq. 5) relies on stationarity, and for a level with a large
            # curvature an error of the tolerance in u is not negligible
            step = np.where(frozen, 0.0, 1.0)
            u, eta, mu, pdev = _trial(kernel, system, u, eta, delta, system.row_effect(delta), step)
            final = True
            continue
        if n_iter >= controls.pirls_max_iter:
            break
        n_iter += 1
        # the rows' IRLS quantities are not needed again unless this is the
        # last step (the top of the loop recomputes them): freeing them keeps
        # the trial point within the same memory
        del irls, mu
        step = np.where(frozen, 0.0, 1.0)
        step_eta = system.row_effect(delta)
        u_new, eta_new, mu_new, pdev_new = _trial(kernel, system, u, eta, delta, step_eta, step)
        bad = no_decrease(pdev_new, pdev, size * step, controls) & (step > 0)
        if not restart_checked and (n_iter >= 3 or np.any(bad)):
            restart_checked = True
            _, ll0 = kernel.loglik_rows(eta_fixed)
            pdev0 = -2.0 * system.unit_sums(ll0)
            del ll0
            reset = ~(pdev <= pdev0) & ~frozen
            if np.any(reset):
                u = u * system.unit_effects(np.where(reset, 0.0, 1.0))
                eta = np.where(system.unit_rows(reset), eta_fixed, eta)
                mu, _ = kernel.loglik_rows(eta)
                pdev = np.where(reset, pdev0, pdev)
                continue
        for _ in range(controls.max_halvings):
            if not np.any(bad):
                break
            step[bad] *= 0.5
            del eta_new, mu_new
            u_new, eta_new, mu_new, pdev_new = _trial(kernel, system, u, eta, delta, step_eta, step)
            bad = no_decrease(pdev_new, pdev, size * step, controls) & (step > 0)
        if np.any(bad):
            # no decrease for these units: at their modes to rounding precision
            # (or hopeless); they keep their u from now on
            frozen |= bad
            step[bad] = 0.0
            del eta_new, mu_new
            u_new, eta_new, mu_new, pdev_new = _trial(kernel, system, u, eta, delta, step_eta, step)
        u, eta, mu, pdev = u_new, eta_new, mu_new, pdev_new
        del eta_new, mu_new, step_eta
        predicted_stop = (
            predicted and n_iter == 1 and kernel.newton and bool(np.all(step == 1.0))
            and float(np.max(size)) < controls.predicted_step_tol
        )
    if irls.laplace_weights is not W or factor.used_fallback:
        factor = system.factorise(irls.laplace_weights)
    return Modes(u, eta, irls, factor, T, float(np.sum(pdev)), n_iter, bool(converged))


def _trial(kernel, system, u, eta, delta, step_eta, step):
    """The point ``u + step * delta`` (step per unit): u, eta, mu and the units' pdev."""
    if np.all(step == 1.0):
        u_new = u + delta
        eta_new = eta + step_eta
    else:
        u_new = u + system.unit_effects(step) * delta
        eta_new = eta + system.unit_rows(step) * step_eta
    mu_new, ll_new = kernel.loglik_rows(eta_new)
    pdev_new = system.unit_squares(u_new) - 2.0 * system.unit_sums(ll_new)
    return u_new, eta_new, mu_new, pdev_new
