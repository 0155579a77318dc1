"""Adaptive Gauss-Hermite quadrature (AGQ) for a single scalar random effect.

Model (one grouping factor, one random effect per level, covariate ``z_i``;
``z_i = 1`` for a random intercept)::

    eta_i = offset_i + x_i^T beta + theta z_i u_{g(i)},     u_g ~ N(0, 1)

The marginal likelihood factorises over groups, each a one-dimensional
integral ``L_g = int prod_{i in g} p(y_i | u) phi(u) du``. Adaptive quadrature
(Liu and Pierce 1994; lme4's ``nAGQ``) centres the rule at the conditional mode
``u*_g`` (from PIRLS) and scales it by ``s_g = A_g^{-1/2}``, the Laplace
curvature ``A_g = 1 + theta^2 sum_i W_i z_i^2``: with the probabilists'
Gauss-Hermite nodes ``t_k`` and weights ``omega_k`` (normalised to sum to 1),
``u_gk = u*_g + s_g t_k`` and (eq. 11 of ``docs/theory.md``)::

    log L_g = log s_g + logsumexp_k [log omega_k + sum_{i in g} log p(y_i | u_gk)
                                     - u_gk^2 / 2 + t_k^2 / 2]

With one node (``t = 0``, ``omega = 1``) this is exactly the Laplace
approximation of :mod:`._laplace`. Unlike lme4, which reports the nAGQ > 1
log-likelihood from deviance residuals without the saturated-model constant
(lme4 issue #161), every normalising constant is kept, so ``-2 log L`` is on
the same scale as the Laplace deviance and AIC, BIC and likelihood-ratio tests
compare across ``n_agq``.

Per-row log-likelihoods at the nodes come from the unit deviance,
``log p(y_i | mu) = -w_i d(y_i, mu) / (2 phi) + c_i(y_i)``, where
``phi = V(mu) / V_unit(mu)`` is the family's dispersion (1 for Poisson,
binomial and NB2 at a fixed size); the row constants ``c_i`` sum to the
family's constant, fixed once per evaluation from the log-likelihood at the
modes, so the sum over rows is exact.

Gradient (eq. 12). ``log L_g`` depends on ``(theta, beta)`` directly, through
the centre ``u*_g`` and through the scale ``s_g``. With ``pi_gk`` the softmax
of the bracket above, ``s_ik`` the score at node ``k``, ``G_gk = sum z_i s_ik``::

    d/dtheta|_(u*, s) = sum_k pi_gk u_gk G_gk
    d/dbeta |_(u*, s) = sum_k pi_gk sum_i x_i s_ik
    d/du*             = sum_k pi_gk (theta G_gk - u_gk)
    d/ds              = 1/s + sum_k pi_gk t_k (theta G_gk - u_gk)

``u*`` moves as the implicit derivative of ``theta sum z_i s_i = u`` gives
(``Hobs_g = 1 + theta^2 sum Wobs_i z_i^2``)::

    du*/dtheta = (sum z_i s_i - theta u* sum Wobs_i z_i^2) / Hobs_g
    du*/dbeta  = -theta sum Wobs_i z_i x_i / Hobs_g

and ``ds = -s^3 dA / 2`` with ``A`` moving through theta and through the
weights' ``dW/deta`` along ``deta = z (u* + theta du*) dtheta`` and
``deta = (x + theta z du*/dbeta) dbeta``. Everything is a few sums per group
and node, so a gradient costs about ``n_agq`` Laplace gradients. For a
family's extra parameter (NB size, Gamma shape) the derivative is a central
difference of the deviance.

Interface: :func:`agq_deviance` evaluates one shard of a
:class:`~._laplace.LaplaceProblem` with ``n_agq > 1`` at the Laplace modes that
PIRLS found there; :class:`QuadratureRule` holds the nodes and log-weights.

References
----------
Liu, Q. and Pierce, D. A. (1994). A note on Gauss-Hermite quadrature.
Biometrika 81(3), 624-629.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

__all__ = ["QuadratureRule", "agq_deviance", "MAX_AGQ"]

#: largest number of quadrature points; beyond ~100 the outer Gauss-Hermite
#: weights underflow and nothing is gained (lme4's GHrule stops at 100 too)
MAX_AGQ = 100


class QuadratureRule:
    """Probabilists' Gauss-Hermite nodes and log-weights (normalised to sum to 1).

    Parameters
    ----------
    n_agq : int
        Number of points, ``1 <= n_agq <= MAX_AGQ`` (1 gives the Laplace approximation).
    """

    def __init__(self, n_agq: int):
        if not 1 <= n_agq <= MAX_AGQ:
            raise ValueError(f"n_agq must be in [1, {MAX_AGQ}]; got {n_agq}.")
        self.n_agq = int(n_agq)
        nodes, weights = np.polynomial.hermite_e.hermegauss(self.n_agq)
        self.nodes = nodes
        # a rule for the standard normal density
        self.log_weights = np.log(weights) - np.log(np.sqrt(2.0 * np.pi))


def agq_deviance(shard, family, kernel, lam: float, modes, rule: QuadratureRule, gradient: bool):
    """The quadrature deviance ``-2 sum_g log L_g`` of one shard (every constant kept), eq. 11.

    Returns ``(deviance, None)`` or, with ``gradient``, ``(deviance, (d/dtheta,
    d/dbeta))`` (eq. 12).
    """
    deviance, parts = _deviance(shard, family, lam, modes, rule, gradient)
    if not gradient:
        return deviance, None
    return deviance, _gradient(shard, kernel, lam, modes, rule, parts)


def _deviance(shard, family, lam, fit, rule, gradient):
    groups, z = shard.groups, shard.ZT[0][0]
    y, w = shard.y, shard.w
    u = fit.u[:, 0]
    # A_g = 1 + lam^2 sum W^L z^2: the Laplace curvature PIRLS factorised
    A = 1.0 / fit.factor.inverse()[:, 0, 0]
    s = 1.0 / np.sqrt(A)
    # dispersion phi = V / V_unit (constant in mu), and the row constants'
    # total from the exact log-likelihood at the modes
    mu_star = fit.irls.mu
    phi = float(np.median(family.variance(mu_star) / np.maximum(family.unit_variance(mu_star), 1e-300)))
    kernel_at_modes = -0.5 * float(np.dot(w, family.unit_deviance(y, mu_star))) / phi
    constant = family.loglik(y, mu_star, w) - kernel_at_modes
    t = rule.nodes
    U = u[:, None] + s[:, None] * t[None, :]  # (G, K) node positions
    zlam = lam * z
    a = np.empty_like(U)
    scores = [] if gradient else None
    for k in range(t.size):
        # eta at node k: the modes' eta moved by lam z s_g t_k
        eta = fit.eta + zlam * groups.expand(s * t[k])
        mu = family.link.inverse(eta)
        a[:, k] = -0.5 * groups.sum(w * family.unit_deviance(y, mu)) / phi
        if gradient:
            scores.append(family.irls_quantities(y, eta, w, mu).score)
    a += rule.log_weights[None, :] - 0.5 * U * U + 0.5 * (t * t)[None, :]
    lse = logsumexp(a, axis=1)
    deviance = -2.0 * float(np.sum(np.log(s) + lse)) - 2.0 * constant
    parts = None
    if gradient:
        parts = (A, s, U, np.exp(a - lse[:, None]), np.array(scores))
    return deviance, parts


def _gradient(shard, kernel, lam, fit, rule, parts):
    groups, z, XT = shard.groups, shard.ZT[0][0], shard.XT
    _, s, U, pi, S = parts  # S: (K, n) scores at the nodes
    t = rule.nodes
    u = fit.u[:, 0]
    irls = fit.irls
    Gk = np.stack([groups.sum(z * S[k]) for k in range(t.size)], axis=1)  # (G, K)
    resid = lam * Gk - U  # d/du of each node's bracket
    d_lam = np.sum(pi * U * Gk, axis=1)
    d_c = np.sum(pi * resid, axis=1)
    d_s = 1.0 / s + np.sum(pi * t[None, :] * resid, axis=1)
    # the direct beta part: X^T r, r_i = sum_k pi_{g(i)k} s_ik
    r = np.einsum("kn,kn->n", groups.expand(pi), S)
    d_beta = XT @ r
    # implicit derivatives of the mode (observed information Hobs)
    wobs, wl_d = irls.hessian_weights, irls.laplace_weights_deriv
    if wl_d is None:  # the fused row kernels leave it out until asked
        wl_d = kernel.weights_deriv(irls)
    T = groups.sum(z * irls.score)
    Mo = groups.sum(wobs * z * z)
    Hobs = 1.0 + lam * lam * Mo
    du_lam = (T - lam * u * Mo) / Hobs
    K = groups.sum(XT * (wobs * z))  # (G, p)
    du_beta = -lam * K / Hobs[:, None]
    # the curvature A and the scale s = A^{-1/2}
    M = groups.sum(irls.laplace_weights * z * z)
    N = groups.sum(wl_d * z**3)
    P = groups.sum(XT * (wl_d * z * z))  # (G, p)
    dA_lam = 2.0 * lam * M + lam * lam * N * (u + lam * du_lam)
    dA_beta = lam * lam * (P + lam * N[:, None] * du_beta)
    ds_dA = -0.5 * s**3
    g_lam = d_lam + d_c * du_lam + d_s * ds_dA * dA_lam
    g_beta = d_beta + np.sum(d_c[:, None] * du_beta + (d_s * ds_dA)[:, None] * dA_beta, axis=0)
    return -2.0 * float(np.sum(g_lam)), -2.0 * g_beta
