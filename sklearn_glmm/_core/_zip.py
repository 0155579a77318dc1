"""The zero-inflated Poisson (ZIP) GLMM: likelihood, Laplace deviance and exact gradient.

Model (one grouping factor; glmmTMB's ``ziformula`` with ``family = poisson``)::

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
``A_g = I + sum_{i in g} H_ee,i zl_i zl_i^T`` (``zl_i = Lambda^T z_i``), as
TMB's exact Hessian does, so ``-2 log L`` matches glmmTMB's::

    D(theta, beta, gamma) = -2 sum_i w_i log p(y_i | eta_i*, zeta_i) + ||u*||^2 + sum_g log det A_g

The modes ``u*`` come from :func:`zip_pirls`, PIRLS on :class:`ZIPCountFamily`
(the count model's conditional likelihood at fixed ``zeta``) with Newton steps
per group where the observed block is positive definite and ``max(H_ee, 0)``
weights where it is not (``H_ee`` is negative for a zero with a large ``mu``);
step halving guarantees descent. The gradient in (theta, beta) is eq. 4-6 of :mod:`._laplace` with
the observed weights; in gamma, by the same envelope and implicit-derivative
argument (``du_g / dzeta_i = -A_g^{-1} zl_i H_ez,i``)::

    dD/dgamma = XZ^T (-2 w s_zeta + w dH_ee/dzeta h - w H_ez (zl . v))

with ``h_i = zl_i^T A_g^{-1} zl_i`` and ``v_g = A_g^{-1} sum_i c_i zl_i``.

Interface for :func:`~._optimize.fit_laplace`. :class:`ZIPProblem` has the
attributes the optimiser reads. Its "beta" is ``(beta, gamma)`` stacked, and
the optimiser's plain-GLM start sees the model as a GLM on stacked rows
(``X = blockdiag(X, XZ)``, one count row and one zero-inflation row per
observation) through :class:`_StackedZIPGLM`, whose start is the ZIP GLM that
:func:`fit_zip_glm` has already fitted by Newton's method; the optimiser's
first IRLS step therefore returns it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, gammaln, log_expit

from ..design import theta_index
from ..families import IRLSQuantities, get_link
from ..families._family import RowKernel
from ._laplace import LaplaceEvaluation, OneTermTheta
from ._linalg import BlockCholesky, GroupIndex, rowdot
from ._pirls import MAX_HALVINGS, PIRLS_MAX_ITER, PIRLS_TOL, PIRLSResult

__all__ = [
    "ZIPProblem",
    "ZIPCountFamily",
    "zip_pirls",
    "zip_rows",
    "zip_row_loglik",
    "zip_loglik",
    "fit_zip_glm",
    "ZIPGLMResult",
]

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


class ZIPCountFamily:
    """The count model's likelihood at fixed zero-inflation predictors ``zeta``.

    Duck-types the parts of :class:`~sklearn_glmm.families.Family` that
    PIRLS uses (``link``, ``irls_quantities``,
    ``loglik_kernel``) for rows in the problem's order.
    """

    name = "zip_count"
    has_param = False
    laplace = "observed"

    def __init__(self, zeta: np.ndarray):
        self.zeta = zeta
        self.link = get_link("log")

    def irls_quantities(self, y, eta, w, mu=None) -> IRLSQuantities:
        r = zip_rows(y, eta, self.zeta)
        observed = w * r.h_ee
        # "weights": a curvature that is never negative, for the groups whose
        # observed block is not positive definite (see zip_pirls)
        step = w * np.maximum(r.h_ee, 0.0)
        return IRLSQuantities(r.mu, w * r.s_eta, step, w * r.dh_ee_deta, observed, observed, w * r.dh_ee_deta)

    def loglik_kernel(self, y, eta, mu, w) -> float:
        return float(np.dot(w, zip_row_loglik(y, eta, self.zeta)))

    def kernel_terms(self, y, eta, mu) -> np.ndarray:
        """Each row's log-likelihood (unweighted), for the generic :class:`RowKernel`."""
        return zip_row_loglik(y, eta, self.zeta)

    def row_kernel(self, y, w) -> RowKernel:
        return RowKernel(self, y, w)


def zip_pirls(
    zeta: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    eta_fixed: np.ndarray,
    groups: GroupIndex,
    ZlT: np.ndarray,
    u0: np.ndarray,
    tol: float = PIRLS_TOL,
    max_iter: int = PIRLS_MAX_ITER,
) -> PIRLSResult:
    """Conditional modes of the count model's random effects at fixed ``zeta``.

    :func:`~._pirls.pirls` with one change: a row's observed curvature
    ``H_ee`` is negative for a zero with a large ``mu``, so the row-wise
    weights cannot always be Newton's. Each group takes the Newton step
    (observed information) when its block ``I + sum H_ee zl zl^T`` is
    positive definite, which it is near the mode, and the step with
    ``max(H_ee, 0)`` otherwise; step halving on the penalised deviance keeps
    every step a descent step. Newton steps make the modes converge in a few
    iterations from a warm start (row-wise clipping alone converges linearly).
    Arguments and result are those of :func:`~._pirls.pirls`.
    """
    family = ZIPCountFamily(zeta)
    q = u0.shape[1]
    eye = np.eye(q)
    u = u0.copy()
    eta = eta_fixed + rowdot(ZlT, groups.expand(u))
    pdev = -2.0 * family.loglik_kernel(y, eta, None, w) + float(np.sum(u * u))
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        irls = family.irls_quantities(y, eta, w)
        observed = eye + groups.outer_sums(irls.hessian_weights, ZlT)
        newton = np.linalg.eigvalsh(observed)[:, 0] > 1e-8
        blocks = np.where(newton[:, None, None], observed, eye + groups.outer_sums(irls.weights, ZlT))
        delta = BlockCholesky(blocks).solve(groups.sum(ZlT * irls.score) - u)
        step_eta = rowdot(ZlT, groups.expand(delta))
        step = 1.0
        for _ in range(MAX_HALVINGS):
            u_new = u + step * delta
            eta_new = eta + step * step_eta
            pdev_new = -2.0 * family.loglik_kernel(y, eta_new, None, w) + float(np.sum(u_new * u_new))
            if pdev_new <= pdev + 1e-14 * abs(pdev):
                break
            step *= 0.5
        else:
            break  # no decrease possible: u is at the mode to rounding precision
        u, eta, pdev = u_new, eta_new, pdev_new
        if np.max(np.abs(step * delta)) < tol:
            converged = True
            break
    irls = family.irls_quantities(y, eta, w)
    chol = BlockCholesky(eye + groups.outer_sums(irls.laplace_weights, ZlT))
    if not converged:
        residual = chol.solve(groups.sum(ZlT * irls.score) - u)
        converged = bool(np.all(np.isfinite(residual)) and np.max(np.abs(residual)) < 1e-6)
    return PIRLSResult(u, eta, irls, chol, pdev, n_iter, converged)


class _StackedZIPGLM:
    """The ZIP GLM as a family on stacked rows, for the optimiser's GLM start only.

    Rows ``0 .. n-1`` carry the count linear predictor, rows ``n .. 2n-1`` the
    zero-inflation one; the "link" is the identity, so "mu" is the stacked
    linear predictor itself. ``starting_mu`` returns the ZIP GLM fitted by
    :func:`fit_zip_glm`, so ``fit_glm`` stops at it after one step.
    """

    name = "zip_stacked"
    has_param = False

    def __init__(self, n: int, start: np.ndarray):
        self.n = n
        self.start = start
        self.link = get_link("identity")

    def starting_mu(self, y):
        return self.start.copy()

    def _split(self, eta):
        return eta[: self.n], eta[self.n :]

    def irls_quantities(self, y, eta, w, mu=None) -> IRLSQuantities:
        e, z = self._split(eta)
        r = zip_rows(y[: self.n], e, z)
        w1 = w[: self.n]
        score = np.concatenate([w1 * r.s_eta, w1 * r.s_zeta])
        # complete-data (EM) information: positive, so every step is a descent step
        weights = np.concatenate([w1 * r.em_eta, w1 * r.p * (1.0 - r.p)])
        zeros = np.zeros_like(score)
        return IRLSQuantities(eta, score, weights, zeros, weights)

    def deviance(self, y, mu, w) -> float:
        e, z = self._split(mu)
        return -2.0 * float(np.dot(w[: self.n], zip_row_loglik(y[: self.n], e, z)))

    def kernel_terms(self, y, eta, mu) -> np.ndarray:
        """Per stacked row log-likelihood (all of it on the count rows), for ``fit_glm``."""
        e, z = self._split(eta)
        return np.concatenate([zip_row_loglik(y[: self.n], e, z), np.zeros(self.n)])

    def row_kernel(self, y, w) -> RowKernel:
        return RowKernel(self, y, w)


@dataclass
class ZIPGLMResult:
    """The ZIP GLM (no random effects) at its maximum likelihood."""

    beta: np.ndarray
    gamma: np.ndarray
    loglik: float
    information: np.ndarray  # observed, (p + pz) square, in (beta, gamma) order
    converged: bool
    n_iter: int


def _information(X, XZ, r: ZIPRows, w, observed=True):
    he = r.h_ee if observed else r.em_eta
    hz = r.h_zz if observed else r.p * (1.0 - r.p)
    # the complete-data information has no count / zero-inflation cross term
    cross = X.T @ (XZ * (w * r.h_ez)[:, None]) if observed else np.zeros((X.shape[1], XZ.shape[1]))
    return np.block([[X.T @ (X * (w * he)[:, None]), cross], [cross.T, XZ.T @ (XZ * (w * hz)[:, None])]])


def fit_zip_glm(X, XZ, y, w, offset, tol: float = 1e-12, max_iter: int = 200) -> ZIPGLMResult:
    """Maximum likelihood of the ZIP GLM by Newton's method with step halving.

    Starts from the Poisson GLM for the counts and ``logit p = logit(excess
    zeros)``. Each step uses the observed information when it is positive
    definite and the complete-data (EM) information otherwise; it stops when
    the Newton decrement ``g^T H^{-1} g`` is below ``tol`` (a coefficient
    running to -infinity, as the zero-inflation intercept of data without
    excess zeros, stops there too, with ``p`` below ~1e-12).
    """
    p, pz = X.shape[1], XZ.shape[1]
    wsum = float(np.sum(w))
    ybar = max(float(np.dot(w, y)) / wsum, 1e-3)  # for the share of excess zeros
    zero_share = float(np.dot(w, y == 0)) / wsum
    excess = float(np.clip((zero_share - np.exp(-ybar)) / max(1.0 - np.exp(-ybar), 1e-3), 0.02, 0.9))
    beta = np.linalg.lstsq(X, np.log(y + 0.5) - offset, rcond=None)[0]
    gamma = np.linalg.lstsq(XZ, np.full(XZ.shape[0], np.log(excess / (1.0 - excess))), rcond=None)[0]
    theta = np.concatenate([beta, gamma])

    def state(t):
        eta, zeta = offset + X @ t[:p], XZ @ t[p:]
        r = zip_rows(y, eta, zeta)
        return r, float(np.dot(w, r.loglik))

    r, ll = state(theta)
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        g = np.concatenate([X.T @ (w * r.s_eta), XZ.T @ (w * r.s_zeta)])
        step = None
        for observed in (True, False):
            H = _information(X, XZ, r, w, observed)
            try:
                ridge = 1e-12 * max(1.0, float(np.max(np.abs(np.diag(H)))))
                L = np.linalg.cholesky(H + ridge * np.eye(p + pz))
            except np.linalg.LinAlgError:
                continue
            step = np.linalg.solve(L.T, np.linalg.solve(L, g))
            break
        if step is None:  # pragma: no cover - the EM information is positive semi-definite
            step = np.linalg.lstsq(H, g, rcond=None)[0]
        decrement = float(g @ step)
        if decrement < tol:
            converged = True
            break
        t = 1.0
        for _ in range(40):
            trial = theta + t * step
            r_new, ll_new = state(trial)
            if ll_new >= ll - 1e-12 * abs(ll):
                break
            t *= 0.5
        else:
            converged = decrement < 1e-6
            break
        theta, r, ll = trial, r_new, ll_new
    info = _information(X, XZ, r, w, True)
    return ZIPGLMResult(theta[:p], theta[p:], ll - float(np.dot(w, gammaln(y + 1.0))), info, converged, it)


class ZIPProblem(OneTermTheta):
    """Data of one ZIP GLMM with a single random-effects term (see the module docstring).

    Parameters
    ----------
    X : ndarray of shape (n, p)
        Count design, intercept included.
    XZ : ndarray of shape (n, pz)
        Zero-inflation design, intercept included.
    y, weights, offset : ndarray of shape (n,)
        Counts, prior weights and the count model's offset.
    codes : ndarray of shape (n,)
        Level of each row, ``0 .. n_levels - 1``.
    Z : ndarray of shape (n, q)
        Term covariates of each row.
    n_levels : int
    """

    def __init__(self, X, XZ, y, weights, offset, codes, Z, n_levels: int):
        # rows sorted by group once, as in LaplaceProblem (contiguous group sums)
        order = np.argsort(codes, kind="stable")
        self.Xc = np.ascontiguousarray(X[order])
        self.XZ = np.ascontiguousarray(XZ[order])
        self.XT = np.ascontiguousarray(self.Xc.T)
        self.XZT = np.ascontiguousarray(self.XZ.T)
        self.yc = y[order]
        self.wc = weights[order]
        self.offc = offset[order]
        self.codes = codes[order]
        self.ZT = np.ascontiguousarray(Z[order].T)
        self.n_levels = n_levels
        self.groups = GroupIndex(self.codes, n_levels)
        self.q = Z.shape[1]
        self.p, self.pz = X.shape[1], XZ.shape[1]
        self.theta_rows, self.theta_cols = theta_index(self.q)
        self._constant = -float(np.dot(self.wc, gammaln(self.yc + 1.0)))
        self.glm = fit_zip_glm(self.Xc, self.XZ, self.yc, self.wc, self.offc)
        n = self.yc.size
        start = np.concatenate([self.offc + self.Xc @ self.glm.beta, self.XZ @ self.glm.gamma])
        self.family = _StackedZIPGLM(n, start)

    # -- what fit_laplace reads -----------------------------------------------
    @property
    def X(self) -> np.ndarray:
        """``blockdiag(X, XZ)`` over the stacked rows (the GLM start's view)."""
        n = self.yc.size
        out = np.zeros((2 * n, self.p + self.pz))
        out[:n, : self.p] = self.Xc
        out[n:, self.p :] = self.XZ
        return out

    @property
    def y(self) -> np.ndarray:
        return np.concatenate([self.yc, self.yc])

    @property
    def weights(self) -> np.ndarray:
        return np.concatenate([self.wc, self.wc])

    @property
    def offset(self) -> np.ndarray:
        return np.concatenate([self.offc, np.zeros_like(self.offc)])

    def family_at(self, param=None):
        return self.family



    # -- the deviance -----------------------------------------------------------
    def split(self, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(beta, gamma)`` from the stacked coefficients."""
        return coef[: self.p], coef[self.p :]

    def modes(self, theta, coef, u0, param=None):
        """Conditional modes at (theta, beta, gamma), warm-started from ``u0``."""
        beta, gamma = self.split(coef)
        ZlT = self.lambda_(theta).T @ self.ZT
        return zip_pirls(gamma @ self.XZT, self.yc, self.wc, self.offc + beta @ self.XT, self.groups, ZlT, u0)

    def evaluate(self, theta, coef, u0, gradient: bool = True, param=None) -> LaplaceEvaluation:
        """Laplace deviance (and gradient) at (theta, (beta, gamma))."""
        beta, gamma = self.split(coef)
        zeta = gamma @ self.XZT
        lam = self.lambda_(theta)
        ZlT = lam.T @ self.ZT
        fit = zip_pirls(zeta, self.yc, self.wc, self.offc + beta @ self.XT, self.groups, ZlT, u0)
        deviance = fit.pdev - 2.0 * self._constant + fit.chol.logdet()
        if not gradient:
            return LaplaceEvaluation(deviance, None, None, fit)
        grad_theta, grad_coef = self._gradient(lam, ZlT, zeta, fit)
        return LaplaceEvaluation(deviance, grad_theta, grad_coef, fit)

    def _gradient(self, lam, ZlT, zeta, fit):
        groups, ZT, q, w = self.groups, self.ZT, self.q, self.wc
        irls, U = fit.irls, fit.u
        r = zip_rows(self.yc, fit.eta, zeta)
        Ainv = fit.chol.inverse()
        h = np.zeros(ZlT.shape[1])
        for j in range(q):
            for k in range(q):
                h += ZlT[j] * ZlT[k] * groups.expand(Ainv[:, j, k])
        c = irls.laplace_weights_deriv * h
        # eq. 4-6 of _laplace with the observed information in A (H = A)
        T = groups.sum(ZT * irls.score)
        C = groups.sum(ZT * c)
        M = groups.outer_sums(irls.laplace_weights, ZT)
        V = fit.chol.solve(C @ lam)
        R = np.einsum("gab,bc,gc->ga", M, lam, V)
        S = np.einsum("gab,cb,gcd->ad", Ainv, lam, M)
        dlam = -2.0 * T.T @ U + 2.0 * S.T + C.T @ U + T.T @ V - R.T @ U
        grad_theta = dlam[self.theta_rows, self.theta_cols]
        zv = rowdot(ZlT, groups.expand(V))
        grad_beta = self.XT @ (-2.0 * irls.score + c - irls.hessian_weights * zv)
        grad_gamma = self.XZT @ (w * (-2.0 * r.s_zeta + r.dh_ee_dzeta * h - r.h_ez * zv))
        return grad_theta, np.concatenate([grad_beta, grad_gamma])
