"""The zero-inflated Poisson (ZIP) model: its rows' likelihood, PIRLS kernel and GLM.

Model (glmmTMB's ``ziformula`` with ``family = poisson``)::

    y_i = 0                          with probability p_i       (a structural zero)
    y_i ~ Poisson(mu_i)              with probability 1 - p_i
    log mu_i   = eta_i  = offset_i + x_i^T beta + z_i^T Lambda(theta) u_{g(i)},  u_g ~ N(0, I_q)
    logit p_i  = zeta_i = xz_i^T gamma

The zero-inflation part has its own coefficients ``gamma`` and no random
effects. Per row (prior weight ``w_i``)::

    log p(0)     = log(p + (1 - p) e^{-mu}) = log_expit(zeta) - log_expit(zeta + mu)
    log p(y > 0) = log_expit(-zeta) + y eta - mu - log(y!)

written with ``log_expit`` so that nothing overflows or cancels (eq. 13 of
``docs/theory.md``). Derivatives are simplest in terms of
``omega = P(structural zero | y) = expit(zeta + mu)`` for ``y = 0`` (0 for
``y > 0``) and ``kappa = omega (1 - omega)``::

    d loglik / d eta   = y - mu (1 - omega)
    d loglik / d zeta  = omega - p
    H_ee = -d2/deta2   = mu (1 - omega) - mu^2 kappa
    H_ez = -d2/deta dzeta = -mu kappa
    H_zz = -d2/dzeta2  = p (1 - p) - kappa

The Laplace approximation integrates over ``u`` with the observed information
``H_ee`` (as TMB's exact Hessian), so ``-2 log L`` matches glmmTMB's. The
model enters the engine as a row kernel, :class:`ZIPKernel`: the count
model's conditional likelihood at fixed ``zeta``, whose steps use ``H_ee`` where
a level's block is positive definite and ``max(H_ee, 0)`` where it is not
(``H_ee`` is negative for a zero with a large ``mu``). The gradient in gamma is a
row derivative of eq. 6 (:mod:`._gradient`) with ``dll = s_zeta``,
``dW = dH_ee/dzeta`` and ``ds = -H_ez``. Without random effects the model is
:class:`ZIPLikelihood`, for the one GLM fitter (:mod:`._glm`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, gammaln, log_expit

from ..families import IRLSQuantities
from ..families._family import RowKernel

__all__ = ["ZIPKernel", "ZIPLikelihood", "zip_rows", "zip_row_loglik", "zip_loglik", "MAX_ETA"]

#: linear predictors are clipped here so that exp() stays finite (as the families do)
MAX_ETA = 700.0


@dataclass
class ZIPRows:
    """Per-row ZIP quantities at one (eta, zeta); weights not applied."""

    mu: np.ndarray
    p: np.ndarray
    loglik: np.ndarray  # without -log(y!)
    s_eta: np.ndarray
    s_zeta: np.ndarray
    h_ee: np.ndarray
    h_ez: np.ndarray
    h_zz: np.ndarray
    em_eta: np.ndarray  # mu (1 - omega) >= H_ee: a positive curvature for scoring steps
    dh_ee_deta: np.ndarray
    dh_ee_dzeta: np.ndarray


def _row_loglik(y, eta, zeta, mu, zero) -> np.ndarray:
    return np.where(zero, log_expit(zeta) - log_expit(zeta + mu), log_expit(-zeta) + y * eta - mu)


def zip_row_loglik(y: np.ndarray, eta: np.ndarray, zeta: np.ndarray) -> np.ndarray:
    """Each row's log-likelihood without ``-log(y!)`` (PIRLS evaluates only this)."""
    eta = np.minimum(eta, MAX_ETA)
    zeta = np.clip(zeta, -MAX_ETA, MAX_ETA)
    return _row_loglik(y, eta, zeta, np.exp(eta), y == 0)


def zip_rows(y: np.ndarray, eta: np.ndarray, zeta: np.ndarray) -> ZIPRows:
    """Log-likelihood, scores and curvatures of each row (see the module docstring)."""
    eta = np.minimum(eta, MAX_ETA)
    zeta = np.clip(zeta, -MAX_ETA, MAX_ETA)
    mu = np.exp(eta)
    zero = y == 0
    p = expit(zeta)
    a = zeta + mu
    loglik = _row_loglik(y, eta, zeta, mu, zero)
    omega = np.where(zero, expit(a), 0.0)
    one_minus = np.where(zero, expit(-a), 1.0)  # 1 - omega without cancellation
    # mu^k kappa as exp(k eta + log kappa): mu^3 overflows where kappa underflows
    log_kappa = np.where(zero, log_expit(a) + log_expit(-a), -np.inf)
    mk1, mk2, mk3 = (np.exp(k * eta + log_kappa) for k in (1, 2, 3))
    kappa = np.exp(log_kappa)
    em = mu * one_minus
    return ZIPRows(
        mu=mu,
        p=p,
        loglik=loglik,
        s_eta=y - em,
        s_zeta=omega - p,
        h_ee=em - mk2,
        h_ez=-mk1,
        h_zz=p * (1.0 - p) - kappa,
        em_eta=em,
        dh_ee_deta=em - 3.0 * mk2 - mk3 * (1.0 - 2.0 * omega),
        dh_ee_dzeta=-mk1 - mk2 * (1.0 - 2.0 * omega),
    )


def zip_loglik(y, eta, zeta, w) -> float:
    """``sum w log p(y | eta, zeta)`` with every constant (``log y!`` included)."""
    return float(np.dot(w, zip_row_loglik(y, eta, zeta) - gammaln(y + 1.0)))


class ZIPKernel(RowKernel):
    """The count model's PIRLS kernel at fixed zero-inflation predictors ``zeta``.

    Steps use the observed information ``H_ee`` (Newton's method, quadratic
    convergence) and fall back to ``max(H_ee, 0)`` for levels whose block is
    not positive definite with it; the Laplace weights are ``H_ee``.
    """

    newton = True
    step_with_laplace_weights = True

    def __init__(self, y: np.ndarray, w: np.ndarray, zeta: np.ndarray):
        super().__init__(None, y, w)
        self.zeta = zeta

    def loglik_rows(self, eta):
        eta = np.minimum(eta, MAX_ETA)
        mu = np.exp(eta)
        ll = _row_loglik(self.y, eta, np.clip(self.zeta, -MAX_ETA, MAX_ETA), mu, self.y == 0)
        ll *= self.w
        return mu, ll

    def irls(self, eta, mu):
        r = zip_rows(self.y, eta, self.zeta)
        w = self.w
        observed = w * r.h_ee
        dobserved = w * r.dh_ee_deta
        return IRLSQuantities(
            r.mu, w * r.s_eta, w * np.maximum(r.h_ee, 0.0), dobserved, observed, observed, dobserved
        )

    def step_weights(self, irls):
        return irls.laplace_weights, irls.weights

    def zeta_row_derivatives(self, eta):
        """Row derivatives in ``zeta`` (eq. 6): ``(w s_zeta, w dH_ee/dzeta, -w H_ez)``."""
        r = zip_rows(self.y, eta, self.zeta)
        return self.w * r.s_zeta, self.w * r.dh_ee_dzeta, -self.w * r.h_ez


class ZIPLikelihood:
    """The ZIP GLM (no random effects) for :func:`~._glm.fit_glm`: coefficients ``(beta, gamma)``.

    The information is the observed one, with the complete-data (EM)
    information as fallback where it is not positive definite. The first
    coefficients: the counts' log-linear least-squares fit and ``logit p`` =
    the share of zeros in excess of the Poisson's. A coefficient running to
    -infinity (the zero-inflation intercept of data without excess zeros)
    stops with ``p`` below ~1e-12, where the Newton decrement is negligible.
    """

    def __init__(self, X, XZ, y, w, offset):
        self.X, self.XZ, self.y, self.w, self.offset = X, XZ, y, w, offset
        self.p = X.shape[1]

    def initial(self) -> np.ndarray:
        X, XZ, y, w = self.X, self.XZ, self.y, self.w
        wsum = float(np.sum(w))
        ybar = max(float(np.dot(w, y)) / wsum, 1e-3)
        zero_share = float(np.dot(w, y == 0)) / wsum
        excess = float(np.clip((zero_share - np.exp(-ybar)) / max(1.0 - np.exp(-ybar), 1e-3), 0.02, 0.9))
        beta = np.linalg.lstsq(X, np.log(y + 0.5) - self.offset, rcond=None)[0]
        gamma = np.linalg.lstsq(XZ, np.full(XZ.shape[0], np.log(excess / (1.0 - excess))), rcond=None)[0]
        return np.concatenate([beta, gamma])

    def _rows(self, coef):
        return zip_rows(self.y, self.offset + self.X @ coef[: self.p], self.XZ @ coef[self.p :])

    def loglik(self, coef) -> float:
        return float(np.dot(self.w, self._rows(coef).loglik))

    def derivatives(self, coef):
        r = self._rows(coef)
        X, XZ, w = self.X, self.XZ, self.w
        g = np.concatenate([X.T @ (w * r.s_eta), XZ.T @ (w * r.s_zeta)])
        cross = X.T @ (XZ * (w * r.h_ez)[:, None])
        observed = np.block(
            [[X.T @ (X * (w * r.h_ee)[:, None]), cross], [cross.T, XZ.T @ (XZ * (w * r.h_zz)[:, None])]]
        )
        # the complete-data information has no count / zero-inflation cross term
        em = np.block(
            [
                [X.T @ (X * (w * r.em_eta)[:, None]), np.zeros_like(cross)],
                [np.zeros_like(cross.T), XZ.T @ (XZ * (w * r.p * (1.0 - r.p))[:, None])],
            ]
        )
        return g, observed, em

    def full_loglik(self, coef) -> float:
        """The log-likelihood with every constant (``log y!`` included)."""
        return self.loglik(coef) - float(np.dot(self.w, gammaln(self.y + 1.0)))
