"""Profile likelihood, conditional variances and refits of a Laplace problem.

Model and notation as in ``docs/theory.md``: ``D(theta, beta)`` is the Laplace
deviance (eq. 3), ``b_g = Lambda(theta) u_g``, and ``A_g`` the PIRLS block at the
conditional modes (eq. 2).

Conditional covariance of the random effects (lme4's ``condVar``)::

    Var(b_g | y) ~= Lambda A_g^{-1} Lambda^T          (times the dispersion)

Profile parameters. As lme4's ``profile.merMod`` the variance components are
profiled on the standard-deviation / correlation scale, ``s``: for each
lower-triangle position (r, c) of ``Lambda`` (theta's order), ``s`` holds the
SD of term r when r == c and the correlation of terms r and c otherwise. So the
vector ``p = (s, beta)`` lines up with lme4's ``.sig01, .sig02, ...`` followed
by the fixed effects.

The profile of parameter k is ``D_k(v) = min D(p)`` subject to ``p_k = v``; its
signed square root ``zeta(v) = sign(v - p_k_hat) sqrt(D_k(v) - D_min)`` is close
to linear in ``v``, and the ends of a profile interval are where it crosses
``+-z_{(1+level)/2}``. lme4 tabulates zeta on a grid and interpolates a spline;
here the crossing is found by root finding on the exact profile, each
evaluation warm-started from the previous one.

Interface: :class:`ProfileProblem` wraps a ``LaplaceProblem`` (it needs only
``evaluate(theta, beta, u0)``, ``modes``, ``q``, ``theta_rows``/``theta_cols``
and ``n_theta``) and the maximum-likelihood estimates.

No scikit-learn here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq, minimize
from scipy.stats import norm

from ..design import theta_index

__all__ = [
    "ProfileProblem",
    "ProfileInterval",
    "conditional_covariance",
    "sdcor_from_theta",
    "theta_from_sdcor",
]


def conditional_covariance(problem, theta, beta, u, dispersion: float = 1.0, param=None) -> np.ndarray:
    """``Var(b_g | y)`` for every level: a (G, q, q) array (lme4's ``condVar``).

    The modes are recomputed at ``(theta, beta)`` from ``u`` (one PIRLS step
    when ``u`` is already the mode) so that ``A_g`` is exactly the block at
    the optimum.
    """
    modes = problem.modes(theta, beta, u) if param is None else problem.modes(theta, beta, u, param=param)
    lam = problem.lambda_(theta)
    Ainv = modes.chol.inverse()
    return dispersion * np.einsum("ab,gbc,dc->gad", lam, Ainv, lam)


def sdcor_from_theta(theta: np.ndarray, q: int) -> np.ndarray:
    """SDs and correlations at theta's positions (see the module docstring)."""
    rows, cols = theta_index(q)
    lam = np.zeros((q, q))
    lam[rows, cols] = theta
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


def theta_from_sdcor(s: np.ndarray, q: int) -> np.ndarray | None:
    """Inverse of :func:`sdcor_from_theta`; ``None`` if the correlations are not valid.

    ``Lambda = chol(diag(sd) R diag(sd))`` computed as ``diag(sd) chol(R)``, so a
    zero SD is allowed (its row of ``Lambda`` is then 0).
    """
    rows, cols = theta_index(q)
    sd = np.zeros(q)
    R = np.eye(q)
    for k, (r, c) in enumerate(zip(rows, cols)):
        if r == c:
            sd[r] = s[k]
        else:
            R[r, c] = R[c, r] = s[k]
    if np.any(sd < 0):
        return None
    try:
        L = np.linalg.cholesky(R) if q > 1 else np.ones((1, 1))
    except np.linalg.LinAlgError:
        return None
    lam = sd[:, None] * L
    return lam[rows, cols]


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
    problem : LaplaceProblem
    theta, beta : ndarray
        Maximum-likelihood estimates.
    u : ndarray of shape (G, q)
        Conditional modes at them.
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
        # only pass ``param`` on when there is one, so plain families need no support for it
        self._extra = {} if param is None else {"param": param}
        self.q = problem.q
        self.nt = problem.n_theta
        self.theta_hat = np.asarray(theta, dtype=float)
        self.beta_hat = np.asarray(beta, dtype=float)
        self.p_hat = np.concatenate([sdcor_from_theta(self.theta_hat, self.q), self.beta_hat])
        self.u_hat = np.array(u, dtype=float)
        self.u = self.u_hat.copy()
        self.deviance_hat = float(deviance)
        rows, cols = theta_index(self.q)
        self.is_sd = np.concatenate([rows == cols, np.zeros(self.beta_hat.size, dtype=bool)])
        self.is_cor = np.concatenate([rows != cols, np.zeros(self.beta_hat.size, dtype=bool)])
        J = self._jacobian(self.p_hat)
        k = J.shape[0]
        H = np.asarray(hessian)[:k, :k] if hessian is not None else self._fd_hessian()
        # Hessian in p (the gradient is zero at the optimum, so only the chain rule's first term)
        self.hessian_p = J.T @ np.asarray(H) @ J
        diag = np.diag(self.hessian_p)
        self.scale = np.sqrt(np.where(diag > 1e-8, diag, 1.0))
        try:
            cov = 2.0 * np.linalg.inv(self.hessian_p)
            self.se = np.sqrt(np.where(np.diag(cov) > 0, np.diag(cov), np.nan))
        except np.linalg.LinAlgError:
            self.se = np.full(self.p_hat.size, np.nan)
        self.se = np.where(np.isfinite(self.se) & (self.se > 0), self.se, 1.0 / self.scale)
        self.n_evals = 0

    # -- the deviance in p ------------------------------------------------------
    def _jacobian(self, p: np.ndarray) -> np.ndarray:
        """d(theta, beta)/dp: central differences for the small sdcor block."""
        nt, nb = self.nt, self.beta_hat.size
        J = np.zeros((nt + nb, nt + nb))
        J[nt:, nt:] = np.eye(nb)
        if self.q == 1:
            J[0, 0] = 1.0
            return J
        s = p[:nt]
        for k in range(nt):
            h = 1e-7 * max(1.0, abs(s[k]))
            up, down = s.copy(), s.copy()
            up[k] += h
            down[k] -= h
            tu, td = theta_from_sdcor(up, self.q), theta_from_sdcor(down, self.q)
            if tu is None or td is None:  # at a correlation of +-1: one-sided
                t0 = theta_from_sdcor(s, self.q)
                tu = t0 if tu is None else tu
                td = t0 if td is None else td
                h = h if (tu is t0) != (td is t0) else 2 * h
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
        ev = self.problem.evaluate(x[: self.nt], x[self.nt :], self.u_hat, **self._extra)
        return np.concatenate([ev.grad_theta, ev.grad_beta])

    def deviance(self, p: np.ndarray, gradient: bool = True):
        """``D(p)`` and its gradient in p (``inf`` where p is not valid)."""
        theta = theta_from_sdcor(p[: self.nt], self.q)
        if theta is None:
            return np.inf, np.zeros_like(p)
        ev = self.problem.evaluate(theta, p[self.nt :], self.u, gradient=gradient, **self._extra)
        self.n_evals += 1
        if not np.isfinite(ev.deviance):
            return np.inf, np.zeros_like(p)
        self.u = ev.modes.u
        if not gradient:
            return ev.deviance, None
        g = np.concatenate([ev.grad_theta, ev.grad_beta])
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
            bounds.append((lo * self.scale[j] if np.isfinite(lo) else None, hi * self.scale[j] if np.isfinite(hi) else None))
        res = minimize(
            fun, base[free] * scale, jac=True, method="L-BFGS-B", bounds=bounds,
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
                brentq(lambda v: zeta(v) - sign * z, inside, outside, xtol=xtol * max(se, 1e-12), rtol=1e-12)
            )
        values = np.array(sorted(path))
        return ProfileInterval(
            index=k,
            estimate=float(est),
            lower=float(ends[0]),
            upper=float(ends[1]),
            path=np.column_stack([values, [path[v] for v in values]]),
        )
