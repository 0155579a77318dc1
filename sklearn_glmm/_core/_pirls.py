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
2. stop when ``max |delta|`` is below ``controls.pirls_tol`` over the units
   still moving and the stationarity residual ``Lambda^T Z^T s - u = A
   delta`` is below ``controls.stationarity_tol`` (the gradient of eq. 5
   relies on stationarity, and its error is of the order of that residual);
   when only the step is small -- the residual is ``curvature * delta`` for
   levels with thousands of large counts -- that last step is taken, and
   step 1 at the new point ends the loop. Also stop after a first
   Newton step below ``controls.predicted_step_tol`` from a start predicted to
   second order, or when quadratic convergence predicts the next Newton step
   to be below ``controls.quadratic_skip * pirls_tol`` (only the quantities at
   ``u`` are then computed);
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
    any_frozen = restart_checked = False
    converged = predicted_stop = final = False
    tol = controls.pirls_tol
    prev_size = None
    n_iter = 0
    while True:
        irls = kernel.irls(eta, mu)
        W, fallback = kernel.step_weights(irls)
        factor = None  # the previous factor is freed before the next is built (a dense block can be large)
        factor = system.factorise(W, fallback)
        T = system.term_sums(irls.score)
        if final:
            converged = converged or not any_frozen
            break
        residual = system.to_u(T) - u
        delta = factor.solve(residual)
        size = system.unit_max(delta)
        if predicted_stop:
            converged = True
            break
        moving_size = size[~frozen] if any_frozen else size
        if moving_size.size == 0 or moving_size.max() < tol:
            converged = not any_frozen or size[frozen].max() < controls.stalled_residual_tol
            if moving_size.size == 0 or system.unit_max(residual).max() < controls.stationarity_tol:
                break
            # the gradient (eq. 5) relies on stationarity, whose residual is
            # A delta: for a level with a large curvature it is not negligible
            # although the step is, and the last step is taken
            step = np.where(frozen, 0.0, 1.0) if any_frozen else None
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
        step_eta = system.row_effect(delta)
        step = np.where(frozen, 0.0, 1.0) if any_frozen else None
        u_new, eta_new, mu_new, pdev_new = _trial(kernel, system, u, eta, delta, step_eta, step)
        if step is None:
            bad = no_decrease(pdev_new, pdev, size, controls)
            step = np.ones(system.n_units)
        else:
            bad = no_decrease(pdev_new, pdev, size * step, controls) & (step > 0)
        if not restart_checked and (n_iter >= 3 or bad.any()):
            restart_checked = True
            _, ll0 = kernel.loglik_rows(eta_fixed)
            pdev0 = -2.0 * system.unit_sums(ll0)
            del ll0
            reset = ~(pdev <= pdev0) & ~frozen
            if reset.any():
                u = u * system.unit_effects(np.where(reset, 0.0, 1.0))
                eta = np.where(system.unit_rows(reset), eta_fixed, eta)
                mu, _ = kernel.loglik_rows(eta)
                pdev = np.where(reset, pdev0, pdev)
                continue
        for _ in range(controls.max_halvings):
            if not bad.any():
                break
            step[bad] *= 0.5
            del eta_new, mu_new
            u_new, eta_new, mu_new, pdev_new = _trial(kernel, system, u, eta, delta, step_eta, step)
            bad = no_decrease(pdev_new, pdev, size * step, controls) & (step > 0)
        if bad.any():
            # no decrease for these units: at their modes to rounding precision
            # (or hopeless); they keep their u from now on
            frozen |= bad
            any_frozen = True
            step[bad] = 0.0
            del eta_new, mu_new
            u_new, eta_new, mu_new, pdev_new = _trial(kernel, system, u, eta, delta, step_eta, step)
        u, eta, mu, pdev = u_new, eta_new, mu_new, pdev_new
        del eta_new, mu_new, step_eta
        full = kernel.newton and not any_frozen and bool((step == 1.0).all())
        predicted_stop = predicted and n_iter == 1 and full and size.max() < controls.predicted_step_tol
        if full and prev_size is not None and size.max() < controls.quadratic_regime:
            # Newton steps converge quadratically, |step_{k+1}| ~ K |step_k|^2
            # with K ~ |step_k| / |step_{k-1}|^2: when the predicted next step is
            # far below the tolerance, u is as exact as one more step would
            # leave it; only the quantities at u are computed
            # (a unit whose step was already below the tolerance is converged)
            next_size = size * (size / np.maximum(prev_size, 1e-150)) ** 2
            final = bool(((next_size < controls.quadratic_skip * tol) | (size < tol)).all())
        prev_size = size if full else None
    if irls.laplace_weights is not W or factor.used_fallback:
        factor = system.factorise(irls.laplace_weights)
    return Modes(u, eta, irls, factor, T, float(pdev.sum()), n_iter, bool(converged))


def _trial(kernel, system, u, eta, delta, step_eta, step):
    """The point ``u + step * delta`` (``step`` per unit; None: the full step): u, eta, mu and the units' pdev."""
    if step is None or (step == 1.0).all():
        u_new = u + delta
        eta_new = eta + step_eta
    else:
        u_new = u + system.unit_effects(step) * delta
        eta_new = eta + system.unit_rows(step) * step_eta
    mu_new, ll_new = kernel.loglik_rows(eta_new)
    pdev_new = system.unit_squares(u_new) - 2.0 * system.unit_sums(ll_new)
    return u_new, eta_new, mu_new, pdev_new
