"""The exact gradient of the Laplace deviance (eq. 4-6 of ``docs/theory.md``), once.

With the modes ``u*`` from :func:`~._pirls.pirls` and the factor of
``A = I + Lambda^T Z^T W Z Lambda`` (Laplace weights ``W``) at them, the
derivative of ``D(theta, beta)`` follows from the envelope theorem (the
penalised deviance is stationary in ``u`` at ``u*``) and the implicit
derivative of the modes (stationarity ``Lambda^T Z^T s = u``, observed
information ``H = I + Lambda^T Z^T Wobs Z Lambda``). Per row::

    h_i = zl_i^T A^{-1} zl_i,     c_i = W'_i h_i,     v = H^{-1} Lambda^T Z^T c,
    zv_i = zl_i . v

and for term ``k`` with level sums ``T_k = sum s z``, ``C_k = sum c z``,
``R_k = sum Wobs zv z`` (Z coordinates) and ``S_k = sum_i W_i z_ik P_ik^T``
(``P_ik`` the part of ``A^{-1} zl_i`` on row i's own level of term k)::

    dD/dLambda_k = (-2 T_k + C_k - R_k)^T U_k + T_k^T V_k + 2 S_k          (eq. 5, 14)

Every other derivative is a *row derivative*: for anything that moves row i's
log-likelihood ``ll_i``, score ``s_i`` and Laplace weight ``W_i`` by ``dll_i``,
``ds_i``, ``dW_i`` at fixed ``eta`` (eq. 6, 6b)::

    dD = sum_i (-2 dll_i + dW_i h_i + ds_i zv_i)

The fixed linear predictor ``eta_i`` itself (``dll = s``, ``dW = W'``,
``ds = -Wobs``) gives ``dD/deta_fixed_i`` and so ``dD/dbeta = X^T (dD/deta_fixed)``;
a family's shape parameter and the zero-inflation predictor use the same
formula with their own derivatives (:class:`RowSensitivities`).

:func:`mode_derivative` is the directional derivative of ``u*`` itself, from
the same implicit system.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..families._family import RowKernel
from ._pirls import Modes
from ._system import PenalisedSystem, ThetaMap

__all__ = ["RowSensitivities", "laplace_gradient", "mode_derivative"]


@dataclass
class RowSensitivities:
    """The per-row quantities every row derivative of ``D`` needs.

    Attributes
    ----------
    h : ndarray of shape (n,)
        ``zl_i^T A^{-1} zl_i``.
    zv : ndarray of shape (n,)
        ``zl_i . v`` with ``v = H^{-1} Lambda^T Z^T c``.
    """

    h: np.ndarray
    zv: np.ndarray

    def derivative(self, dll: np.ndarray, dW: np.ndarray, ds: np.ndarray) -> np.ndarray:
        """``dD`` per row for row derivatives of the log-likelihood, Laplace weight and score."""
        out = dll * -2.0
        out += dW * self.h
        out += ds * self.zv
        return out


def laplace_gradient(
    kernel: RowKernel, system: PenalisedSystem, modes: Modes, theta_map: ThetaMap
) -> tuple[np.ndarray, np.ndarray, RowSensitivities]:
    """Gradient of the Laplace deviance at the modes (eq. 4-6).

    Returns
    -------
    grad_theta : ndarray of shape (n_theta,)
    eta_derivative : ndarray of shape (n,)
        ``dD / d eta_fixed`` per row (``dD/dbeta = X^T eta_derivative``).
    sensitivities : RowSensitivities
        For the row derivatives of further parameters.
    """
    irls = modes.irls
    h, S = system.inverse_terms(modes.factor, irls.laplace_weights)
    dW = irls.laplace_weights_deriv
    c = (kernel.weights_deriv(irls) if dW is None else dW) * h
    del dW
    T = modes.score_sums
    C = system.term_sums(c)
    if irls.hessian_weights is irls.laplace_weights:
        # the log-determinant uses the observed information (canonical link,
        # or an exact Laplace): the implicit-derivative system is A itself
        H = modes.factor
    else:
        H = system.factorise(irls.hessian_weights)
    v = H.solve(system.to_u(C))
    zv = system.row_effect(v)
    R = system.weighted_effect_sums(irls.hessian_weights, zv, H, v)
    U, V = system.split(modes.u), system.split(v)
    dlams = [(-2.0 * t + cc - r).T @ uu + t.T @ vv + 2.0 * s for t, cc, r, uu, vv, s in zip(T, C, R, U, V, S)]
    grad_theta = theta_map.entries(dlams)
    # dD/deta_fixed = -2 s + c - Wobs zv, accumulated in place
    eta_derivative = irls.score * -2.0
    eta_derivative += c
    del c
    eta_derivative -= irls.hessian_weights * zv
    return grad_theta, eta_derivative, RowSensitivities(h, zv)


def mode_derivative(
    system: PenalisedSystem, modes: Modes, dlams: list[np.ndarray], deta_fixed: np.ndarray | None
) -> np.ndarray | None:
    """Directional derivative of the modes ``u*`` along ``(dLambda, deta_fixed)``.

    From the stationarity condition ``Lambda^T Z^T s = u``:
    ``H du = dLambda^T Z^T s - Lambda^T Z^T Wobs (Z dLambda u + deta_fixed)``.
    ``u + t du`` is then the modes at the point ``t`` away to O(t^2). None when
    the modes' factor is not ``H`` (Fisher weights in the log-determinant).
    """
    irls = modes.irls
    if irls is None or irls.hessian_weights is not irls.laplace_weights:
        return None
    Wobs = irls.hessian_weights
    rhs = system.to_u(modes.score_sums, dlams)
    rhs -= system.to_u(system.weighted_effect_sums(Wobs, None, modes.factor, modes.u, dlams))
    if deta_fixed is not None:
        rhs -= system.to_u(system.term_sums(Wobs * deta_fixed))
    return modes.factor.solve(rhs)
