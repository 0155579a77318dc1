"""Profile likelihood, conditional variances and refits of a Laplace problem.

Model and notation as in ``docs/theory.md``: ``D(theta, beta)`` is the Laplace
deviance (eq. 3), ``b_g = Lambda(theta) u_g``, and ``A_g`` the PIRLS block at the
conditional modes (eq. 2).

Conditional covariance of the random effects (lme4's ``condVar``)::

    Var(b_g | y) ~= Lambda A_g^{-1} Lambda^T          (times the dispersion)

Profile parameters. As lme4's ``profile.merMod`` the variance components are
profiled on the standard-deviation / correlation scale, ``s``: for each
theta element, at position (r, c) of its term's ``Lambda`` (theta's order), ``s``
holds the SD of effect r when r == c and the correlation of effects r and c
otherwise. So the vector ``p = (s, beta)`` lines up with lme4's ``.sig01,
.sig02, ...`` followed by the fixed effects (in the engine's order of the
terms; the caller maps it to lme4's order of the bars).

Several terms. theta is cut into one block per random-effects term, each
``(q_k, rows_k, cols_k)``: the term's size and the positions of its theta
elements in ``Lambda_k`` (a full lower triangle for one correlated bar; only
the bars' own lower triangles for the uncorrelated bars of ``(1 + x || g)``,
whose cross-bar entries are structural zeros and so no parameters, as in
lme4). The SD/correlation map works block by block; ``Sigma_k = Lambda_k
Lambda_k^T`` is block diagonal over the bars, so ``chol(R)`` keeps the zeros.

The profile of parameter k is ``D_k(v) = min D(p)`` subject to ``p_k = v``; its
signed square root ``zeta(v) = sign(v - p_k_hat) sqrt(D_k(v) - D_min)`` is close
to linear in ``v``, and the ends of a profile interval are where it crosses
``+-z_{(1+level)/2}``. lme4 tabulates zeta on a grid and interpolates a spline;
here the crossing is found by root finding on the exact profile, each
evaluation warm-started from the previous one.

Interface: :class:`ProfileProblem` takes any problem of the protocol
(:mod:`._problem`) and its maximum-likelihood estimates; it evaluates the
deviance through ``problem.evaluate`` and reads the terms' theta positions from
``problem.theta_map``. :class:`LMMProfileProblem` does the same for the linear
mixed model's penalised least squares (``problem.solve``).

No scikit-learn here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq, minimize
from scipy.stats import norm

from ..design import lambda_from_theta, theta_index

__all__ = [
    "LMMProfileProblem",
    "ProfileProblem",
    "ProfileInterval",
    "sdcor_from_theta",
    "theta_blocks",
    "theta_from_sdcor",
]


def theta_blocks(problem) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """The problem's theta as blocks ``(q_k, rows_k, cols_k)``, one per term."""
    tmap = problem.theta_map
    return [(q, rows, cols) for q, (rows, cols) in zip(tmap.q, tmap.positions)]


def _as_blocks(q) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``q`` as a list of blocks: an int is one term with a full lower triangle."""
    if isinstance(q, (int, np.integer)):
        return [(int(q), *theta_index(int(q)))]
    return list(q)


def _block_sdcor(theta: np.ndarray, q: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    lam = lambda_from_theta(theta, q, rows, cols)
    cov = lam @ lam.T
    sd = np.sqrt(np.diag(cov))
    out = np.empty(rows.size)
    for k, (r, c) in enumerate(zip(rows, cols)):
        if r == c:
            out[k] = sd[r]
        else:
            denom = sd[r] * sd[c]
            out[k] = cov[r, c] / denom if denom > 0 else 0.0
    return out


def _block_theta(s: np.ndarray, q: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray | None:
    sd = np.zeros(q)
    R = np.eye(q)
    for k, (r, c) in enumerate(zip(rows, cols)):
        if r == c:
            sd[r] = s[k]
        else:
            R[r, c] = R[c, r] = s[k]
    if np.any(sd < 0):
        return None
    L = _semidefinite_cholesky(R) if q > 1 else np.ones((1, 1))
    if L is None:
        return None
    lam = sd[:, None] * L
    return lam[rows, cols]


def _semidefinite_cholesky(R: np.ndarray, tol: float = 1e-12) -> np.ndarray | None:
    """Lower-triangular ``L`` with ``L L^T = R`` for a positive *semi*-definite correlation matrix.

    LAPACK's Cholesky refuses a correlation of exactly +-1 (a singular fit's
    estimate, where profiles start); a zero pivot here gets a zero column
    instead, as the limit of the positive definite case. None when ``R`` is
    not positive semi-definite (a correlation outside [-1, 1]).
    """
    try:
        return np.linalg.cholesky(R)
    except np.linalg.LinAlgError:
        pass
    q = R.shape[0]
    L = np.zeros((q, q))
    for j in range(q):
        pivot = R[j, j] - float(L[j, :j] @ L[j, :j])
        if pivot < -tol:
            return None
        if pivot <= tol:
            # a zero pivot: the rest of column j must vanish too, or R is indefinite
            rest = R[j + 1 :, j] - L[j + 1 :, :j] @ L[j, :j]
            if np.any(np.abs(rest) > 1e-8):
                return None
            continue
        L[j, j] = np.sqrt(pivot)
        L[j + 1 :, j] = (R[j + 1 :, j] - L[j + 1 :, :j] @ L[j, :j]) / L[j, j]
    return L


def _scale_and_se(hessian_p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step scales (root curvatures) and Wald SEs from the deviance Hessian in ``p``.

    A parameter without a usable SE (a non-invertible Hessian or a negative
    variance) gets ``1 / scale`` instead, so the profile's first step is sized
    by the curvature alone.
    """
    diag = np.diag(hessian_p)
    scale = np.sqrt(np.where(diag > 1e-8, diag, 1.0))
    try:
        cov = 2.0 * np.linalg.inv(hessian_p)
        se = np.sqrt(np.where(np.diag(cov) > 0, np.diag(cov), np.nan))
    except np.linalg.LinAlgError:
        se = np.full(diag.size, np.nan)
    return scale, np.where(np.isfinite(se) & (se > 0), se, 1.0 / scale)


def sdcor_from_theta(theta: np.ndarray, q) -> np.ndarray:
    """SDs and correlations at theta's positions (see the module docstring).

    Parameters
    ----------
    theta : ndarray
    q : int or list of (int, ndarray, ndarray)
        One term's size (full lower triangle), or the blocks of
        :func:`theta_blocks`.
    """
    out, start = [], 0
    for size, rows, cols in _as_blocks(q):
        out.append(_block_sdcor(np.asarray(theta[start : start + rows.size], dtype=float), size, rows, cols))
        start += rows.size
    return np.concatenate(out) if out else np.empty(0)


def theta_from_sdcor(s: np.ndarray, q) -> np.ndarray | None:
    """Inverse of :func:`sdcor_from_theta`; ``None`` if the correlations are not valid.

    ``Lambda = chol(diag(sd) R diag(sd))`` computed as ``diag(sd) chol(R)``, so a
    zero SD is allowed (its row of ``Lambda`` is then 0).
    """
    out, start = [], 0
    for size, rows, cols in _as_blocks(q):
        theta = _block_theta(np.asarray(s[start : start + rows.size], dtype=float), size, rows, cols)
        if theta is None:
            return None
        out.append(theta)
        start += rows.size
    return np.concatenate(out) if out else np.empty(0)


@dataclass
class ProfileInterval:
    """One profile-likelihood interval.

    Attributes
    ----------
    index : int
        Position in ``p = (sdcor, beta)``.
    estimate, lower, upper : float
    path : ndarray of shape (m, 2)
        Every evaluated ``(value, zeta)`` pair, sorted by value (for plots).
    """

    index: int
    estimate: float
    lower: float
    upper: float
    path: np.ndarray


class ProfileProblem:
    """The Laplace deviance as a function of ``p = (sdcor, beta)``.

    Parameters
    ----------
    problem : Problem
        Any problem of the protocol (:mod:`._problem`) with an exact gradient.
    theta, beta : ndarray
        Maximum-likelihood estimates (theta in the problem's order of terms).
    u : ndarray
        Conditional modes at them (flat).
    deviance : float
        ``D`` at the estimates.
    hessian : ndarray or None
        Hessian of ``D`` in (theta, beta[, param]) at the estimates; scales
        the optimiser and gives the first trial points. ``None``: finite
        differences of the exact gradient.
    param : float or None
        The family's extra parameter (NB size, ...), held at its estimate
        while profiling (as lme4 does for ``glmer.nb``).
    """

    def __init__(self, problem, theta, beta, u, deviance: float, hessian=None, param=None):
        self.problem = problem
        self.param = param
        self.blocks = theta_blocks(problem)
        self.nt = problem.n_theta
        self.theta_hat = np.asarray(theta, dtype=float)
        self.beta_hat = np.asarray(beta, dtype=float)
        self.p_hat = np.concatenate([sdcor_from_theta(self.theta_hat, self.blocks), self.beta_hat])
        self.u_hat = np.array(u, dtype=float)
        self.u = self.u_hat.copy()
        self.deviance_hat = float(deviance)
        diagonal = np.concatenate([rows == cols for _, rows, cols in self.blocks])
        self.is_sd = np.concatenate([diagonal, np.zeros(self.beta_hat.size, dtype=bool)])
        self.is_cor = np.concatenate([~diagonal, np.zeros(self.beta_hat.size, dtype=bool)])
        J = self._jacobian(self.p_hat)
        k = J.shape[0]
        H = np.asarray(hessian)[:k, :k] if hessian is not None else self._fd_hessian()
        # Hessian in p (the gradient is zero at the optimum, so only the chain rule's first term)
        self.hessian_p = J.T @ np.asarray(H) @ J
        self.scale, self.se = _scale_and_se(self.hessian_p)
        self.n_evals = 0

    # -- the deviance in p ------------------------------------------------------
    def _jacobian(self, p: np.ndarray) -> np.ndarray:
        """d(theta, beta)/dp: central differences for the small sdcor block."""
        nt, nb = self.nt, self.beta_hat.size
        J = np.zeros((nt + nb, nt + nb))
        J[nt:, nt:] = np.eye(nb)
        if not np.any(self.is_cor):
            # diagonal Lambda_k only (scalar or '||' terms): the SDs are theta itself
            J[:nt, :nt] = np.eye(nt)
            return J
        s = p[:nt]
        for k in range(nt):
            h = 1e-7 * max(1.0, abs(s[k]))
            up, down = s.copy(), s.copy()
            up[k] += h
            down[k] -= h
            tu, td = theta_from_sdcor(up, self.blocks), theta_from_sdcor(down, self.blocks)
            if tu is None or td is None:  # at a correlation of +-1: one-sided
                t0 = theta_from_sdcor(s, self.blocks)
                if t0 is None or (tu is None and td is None):
                    continue  # no valid neighbour: this column of the Jacobian stays 0
                tu = t0 if tu is None else tu
                td = t0 if td is None else td
                J[:nt, k] = (tu - td) / h
            else:
                J[:nt, k] = (tu - td) / (2 * h)
        return J

    def _fd_hessian(self) -> np.ndarray:
        x = np.concatenate([self.theta_hat, self.beta_hat])
        k = x.size
        H = np.empty((k, k))
        for j in range(k):
            e = np.zeros(k)
            e[j] = 1e-4 * max(1.0, abs(x[j]))
            gp = self._grad_theta_beta(x + e)
            gm = self._grad_theta_beta(x - e)
            H[:, j] = (gp - gm) / (2 * e[j])
        return 0.5 * (H + H.T)

    def _grad_theta_beta(self, x):
        ev = self.problem.evaluate(x[: self.nt], x[self.nt :], self.param, self.u_hat)
        return np.concatenate([ev.grad_theta, ev.grad_coef])

    def deviance(self, p: np.ndarray, gradient: bool = True):
        """``D(p)`` and its gradient in p (``inf`` where p is not valid)."""
        theta = theta_from_sdcor(p[: self.nt], self.blocks)
        if theta is None:
            return np.inf, np.zeros_like(p)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            ev = self.problem.evaluate(theta, p[self.nt :], self.param, self.u, gradient=gradient)
        self.n_evals += 1
        if not ev.finite:
            return np.inf, np.zeros_like(p)
        self.u = ev.u
        if not gradient:
            return ev.deviance, None
        g = np.concatenate([ev.grad_theta, ev.grad_coef])
        return ev.deviance, self._jacobian(p).T @ g

    # -- profiles --------------------------------------------------------------
    def _bounds(self, k: int):
        if self.is_sd[k]:
            return 0.0, np.inf
        if self.is_cor[k]:
            return -1.0, 1.0
        return -np.inf, np.inf

    def profile_deviance(self, k: int, value: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        """``min D(p)`` with ``p_k = value``, from ``start``; returns (D, argmin)."""
        free = np.ones(self.p_hat.size, dtype=bool)
        free[k] = False
        scale = self.scale[free]
        base = start.copy()
        base[k] = value
        if not np.any(free):
            return self.deviance(base, gradient=False)[0], base

        def fun(x):
            p = base.copy()
            p[free] = x / scale
            f, g = self.deviance(p)
            return f, g[free] / scale

        bounds = []
        for j in np.flatnonzero(free):
            lo, hi = self._bounds(j)
            bounds.append(
                (
                    lo * self.scale[j] if np.isfinite(lo) else None,
                    hi * self.scale[j] if np.isfinite(hi) else None,
                )
            )
        res = minimize(
            fun,
            base[free] * scale,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 500, "gtol": 1e-9, "ftol": 1e-15, "maxcor": 20},
        )
        p = base.copy()
        p[free] = res.x / scale
        f = self.deviance(p, gradient=False)[0]
        return float(f), p

    def interval(self, k: int, level: float = 0.95, xtol: float = 1e-7) -> ProfileInterval:
        """The profile-likelihood interval of parameter ``k`` at ``level``."""
        z = float(norm.ppf(0.5 + level / 2.0))
        est, se = self.p_hat[k], self.se[k]
        lo_bound, hi_bound = self._bounds(k)
        path = {est: 0.0}
        ends = []
        for sign in (-1.0, 1.0):
            start = self.p_hat.copy()
            self.u = self.u_hat.copy()
            bound = lo_bound if sign < 0 else hi_bound

            def zeta(v, _sign=sign):
                nonlocal start
                f, start = self.profile_deviance(k, v, start)
                value = _sign * np.sqrt(max(f - self.deviance_hat, 0.0))
                path[v] = value
                return value

            # walk outward in steps of about one standard error until zeta passes +-z
            inside, step, outside = est, z * se, None
            for _ in range(40):
                trial = est + sign * step
                if np.isfinite(bound) and sign * (trial - bound) >= 0:
                    trial = bound
                value = zeta(trial)
                if abs(value) >= z:
                    outside = trial
                    break
                inside = trial
                if trial == bound:
                    break
                step *= 1.5
            if outside is None:  # the profile never reaches z before the bound
                ends.append(bound if np.isfinite(bound) else np.nan)
                continue
            ends.append(
                brentq(
                    lambda v, sign=sign: zeta(v) - sign * z,
                    inside,
                    outside,
                    xtol=xtol * max(se, 1e-12),
                    rtol=1e-12,
                )
            )
        values = np.array(sorted(path))
        return ProfileInterval(
            index=k,
            estimate=float(est),
            lower=float(ends[0]),
            upper=float(ends[1]),
            path=np.column_stack([values, [path[v] for v in values]]),
        )


class LMMProfileProblem(ProfileProblem):
    """The ML deviance of a linear mixed model in ``p = (sdcor, sigma, beta)``, as lme4.

    lme4's ``profile`` of an ``lmer`` fit (``devfun2``) refits a REML model by
    ML and profiles the ML deviance in the SDs and correlations of the random
    effects *on the response scale* (``.sig01, ...``), the residual SD
    (``.sigma``) and the fixed effects. With ``theta`` relative to sigma
    (``sd_rel = sd / sigma``) and the penalised least squares of
    :class:`._lmm.LMMProblem` at theta (minimum ``r2``, ``beta_hat``,
    ``M = RX^T RX``)::

        D(p) = log|A(theta)| + (r2 + (beta - beta_hat)^T M (beta - beta_hat)) / sigma^2
               + n log(2 pi sigma^2) - sum log w

    The fixed effects enter through a quadratic, so they are profiled in
    closed form: for a variance parameter ``beta = beta_hat(theta)``; for
    ``beta_j = v`` the others follow ``beta - beta_hat = M^{-1} e_j (v -
    beta_hat_j) / (M^{-1})_jj``. Only the ``n_theta + 1`` variance parameters
    are optimised numerically (central-difference gradients: each evaluation
    is one penalised least-squares solve).

    Parameters
    ----------
    problem : LMMProblem
    theta : ndarray
        Maximum-likelihood (not REML) estimate, relative to sigma.
    sigma : float
        Its residual SD.
    """

    def __init__(self, problem, theta, sigma: float):
        self.problem = problem
        self.param = None
        self.blocks = theta_blocks(problem)
        self.nt = problem.n_theta
        theta = np.asarray(theta, dtype=float)
        beta, _, _, _, _ = problem.solve(theta)
        self.nb = beta.size
        diagonal = np.concatenate([rows == cols for _, rows, cols in self.blocks])
        self._sd = diagonal
        s = sdcor_from_theta(theta, self.blocks)
        s[diagonal] *= sigma
        self.p_hat = np.concatenate([s, [sigma], beta])
        self.is_sd = np.concatenate([diagonal, [True], np.zeros(self.nb, dtype=bool)])
        self.is_cor = np.concatenate([~diagonal, [False], np.zeros(self.nb, dtype=bool)])
        self.u_hat = np.zeros(0)
        self.u = self.u_hat
        self.n_evals = 0
        self.deviance_hat = self.deviance(self.p_hat)[0]
        self.hessian_p = self._fd_hessian_p()
        self.scale, self.se = _scale_and_se(self.hessian_p)

    def _solve(self, variance: np.ndarray):
        """Penalised least squares at the variance parameters ``(sdcor, sigma)``, or None."""
        sigma = variance[self.nt]
        if not sigma > 0:
            return None
        s = variance[: self.nt].copy()
        s[self._sd] /= sigma
        theta = theta_from_sdcor(s, self.blocks)
        if theta is None:
            return None
        self.n_evals += 1
        beta_hat, _, r2, logdet, M = self.problem.solve(theta)
        return sigma, beta_hat, r2, logdet, M

    def _value(self, sigma, r2, logdet, quad) -> float:
        n = self.problem.n
        value = logdet + (r2 + quad) / sigma**2 + n * np.log(2.0 * np.pi * sigma**2)
        return float(value - self.problem.sum_log_w)

    def deviance(self, p: np.ndarray, gradient: bool = False):
        """``D(p)`` (``inf`` where p is not valid); no gradient (``None``)."""
        parts = self._solve(p[: self.nt + 1])
        if parts is None:
            return np.inf, None
        sigma, beta_hat, r2, logdet, M = parts
        d = p[self.nt + 1 :] - beta_hat
        return self._value(sigma, r2, logdet, float(d @ M @ d)), None

    def _fd_hessian_p(self) -> np.ndarray:
        p0 = self.p_hat
        k = p0.size
        h = 1e-4 * np.maximum(np.abs(p0), 1e-2)
        f0 = self.deviance(p0)[0]

        def f(p):
            value = self.deviance(p)[0]
            return value if np.isfinite(value) else f0

        H = np.empty((k, k))
        for i in range(k):
            for j in range(i, k):
                ei, ej = np.zeros(k), np.zeros(k)
                ei[i], ej[j] = h[i], h[j]
                second = f(p0 + ei + ej) - f(p0 + ei - ej) - f(p0 - ei + ej) + f(p0 - ei - ej)
                H[i, j] = H[j, i] = second / (4 * h[i] * h[j])
        return H

    def profile_deviance(self, k: int, value: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        """``min D(p)`` with ``p_k = value``; beta in closed form, the rest by L-BFGS-B."""
        nv = self.nt + 1
        fixed_beta = k >= nv
        free = np.ones(nv, dtype=bool)
        if not fixed_beta:
            free[k] = False
        scale = self.scale[:nv][free]
        base = start[:nv].copy()
        if not fixed_beta:
            base[k] = value
        j = k - nv

        def evaluate(variance):
            parts = self._solve(variance)
            if parts is None:
                return np.inf, None
            sigma, beta_hat, r2, logdet, M = parts
            if not fixed_beta:
                return self._value(sigma, r2, logdet, 0.0), beta_hat
            Minv = np.linalg.inv(M)
            shift = value - beta_hat[j]
            beta = beta_hat + Minv[:, j] * shift / Minv[j, j]
            return self._value(sigma, r2, logdet, shift * shift / Minv[j, j]), beta

        def fun(x):
            v = base.copy()
            v[free] = x / scale
            f = evaluate(v)[0]
            if not np.isfinite(f):
                return 1e300, np.zeros_like(x)
            g = np.empty_like(x)
            for i in range(x.size):
                step = 1e-6 * max(1.0, abs(x[i]))
                up, down = x.copy(), x.copy()
                up[i] += step
                down[i] -= step
                fu = evaluate(_with(base, free, up / scale))[0]
                fd = evaluate(_with(base, free, down / scale))[0]
                if np.isfinite(fu) and np.isfinite(fd):
                    g[i] = (fu - fd) / (2 * step)
                elif np.isfinite(fu):
                    g[i] = (fu - f) / step
                else:
                    g[i] = (f - fd) / step
            return f, g

        bounds = []
        for i in np.flatnonzero(free):
            lo, hi = self._bounds(i)
            if i == self.nt:  # sigma > 0
                lo = 1e-8 * self.p_hat[self.nt]
            lo = lo * self.scale[i] if np.isfinite(lo) else None
            bounds.append((lo, hi * self.scale[i] if np.isfinite(hi) else None))
        if np.any(free):
            res = minimize(
                fun,
                base[free] * scale,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": 500, "gtol": 1e-6, "ftol": 1e-13, "maxcor": 20},
            )
            base[free] = res.x / scale
        f, beta = evaluate(base)
        p = np.concatenate([base, beta if beta is not None else start[nv:]])
        if fixed_beta:
            p[k] = value
        return float(f), p


def _with(base: np.ndarray, free: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = base.copy()
    out[free] = values
    return out
