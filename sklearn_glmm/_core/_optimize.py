"""The outer optimiser: maximum likelihood in (theta, beta) under the Laplace approximation.

Step order of :func:`fit_laplace` (each step names what it sets on the result):

0. **Subsample** -- when the problem offers ``stage1_problem()`` (the
   single-factor :class:`~._laplace.LaplaceProblem` does, for more than 300
   levels), steps 1, 3 and 3b run on about 150 evenly spaced levels: they only
   find a start, and that start is within the subsample's sampling error of
   the optimum, which stage 2's Newton-like steps remove in a few iterations.
1. **GLM start** -- IRLS for the plain GLM (``theta = 0``): ``beta_glm``. Its
   Fisher information ``X^T W X = R^T R`` (scaled from the subsample to all
   rows) gives the preconditioner.
2. **Scaling** -- the optimiser works in ``x = (s * theta, R beta)`` where ``s``
   is the root-mean-square of each random-effect covariate's column. In these
   coordinates the deviance's curvature is close to the identity, so
   L-BFGS-B is not slowed by covariates on very different scales (a slope per
   day next to an intercept), and predictors of magnitude 1e8 need no care.
3. **Stage 1** -- ``theta`` alone, ``beta`` held at ``beta_glm``, loose
   tolerance: a cheap start for the covariance parameters (the role of
   ``nAGQ = 0`` in lme4's ``glmer``). On all levels when the problem says
   ``theta_is_cheap`` (the Poisson random intercept, O(G) per evaluation).
   3b. With a subsample: ``theta`` and ``beta`` jointly on it, to a loose
   tolerance; its BFGS Hessian, scaled to all rows, seeds stage 2.
4. **Stage 2** -- ``theta`` and ``beta`` jointly: projected quasi-Newton
   (BFGS) steps seeded with that Hessian (or a forward-difference one of the
   exact gradient of :mod:`._laplace`), bounds ``diag(Lambda) >= 0``, until
   the Newton decrement is below ``tol`` (floored at 16 ulps of the deviance,
   the resolution of the deviance itself); L-BFGS-B takes over if those steps
   stall. A variance stuck at 0 where the deviance decreases away from it is
   left by a restart. Sets ``theta``, ``beta``, ``n_iter``.
5. **Hessian** -- the Hessian at the optimum, by central differences of the
   exact gradient (absolute step 1e-4 in the scaled coordinates; each point's
   PIRLS starts from the modes moved along their implicit derivative when the
   problem offers ``mode_derivative``, so one Newton step suffices). Sets
   ``hessian`` (in (theta, beta), deviance scale; lme4's ``vcov`` uses the
   same matrix), ``gradient`` and ``converged``.

Every evaluation warm-starts PIRLS from the previous modes. The sequence of
evaluations depends only on the data, so results are deterministic.

Problem interface used here: ``n_theta``, ``theta_diagonal``, ``theta_rms``,
``family``, ``family_at``, ``X``, ``y``, ``weights``, ``offset``,
``zero_modes()``, ``evaluate(theta, beta, u0, gradient, param)``,
``random_effects(theta, u)``; optional: ``stage1_problem()``,
``theta_is_cheap``, ``mode_derivative(theta, modes, dtheta, dbeta)`` and
``evaluate(..., predicted=True)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from ._laplace import LaplaceEvaluation, LaplaceProblem
from ._pirls import fit_glm

__all__ = ["FitResult", "fit_laplace", "fit_glm_ml", "SINGULAR_TOL"]

#: a diagonal element of Lambda below this counts as a boundary (singular) fit, as lme4's isSingular
SINGULAR_TOL = 1e-4
#: bound on |theta| in the optimiser's scaled coordinates (see fit_laplace)
MAX_SCALED_THETA = 50.0
#: restarts of stage 2 away from a boundary where the deviance decreases
MAX_RESTARTS = 3
#: largest |gradient| (deviance scale, whitened coordinates) accepted as converged
GRADIENT_TOL = 1e-3
#: largest Newton decrement g^T H^{-1} g (deviance units) accepted as converged
DECREMENT_TOL = 1e-6
#: Newton decrement at which the joint fit on the stage-1 subsample stops (a start only)
SUBSAMPLE_DECREMENT = 1e-2


@dataclass
class FitResult:
    """Plain record of a Laplace fit (no scikit-learn, no pandas).

    Attributes
    ----------
    theta, beta : ndarray
        Estimates.
    u : ndarray of shape (G, q)
        Spherical conditional modes; ``b = u @ Lambda.T`` are the random effects.
    b : ndarray of shape (G, q)
        Conditional modes of the random effects.
    deviance : float
        ``-2 log L`` at the estimates.
    gradient : ndarray
        Gradient of the deviance in (theta, beta) at the estimates.
    hessian : ndarray or None
        Hessian of the deviance in (theta, beta), or None when not computed.
    n_iter : int
        Outer iterations (both stages and the polish).
    n_evals : int
        Deviance evaluations.
    converged : bool
    message : str
    singular : bool
        Whether a variance is at its boundary.
    glm_beta : ndarray
        The plain GLM's estimates (``theta = 0``), the start of the fit; on
        the problem's stage-1 subsample of levels when it offers one.
    param : float or None
        The family's extra parameter (NB size, Gamma shape), if it has one.
        ``gradient`` and ``hessian`` then end with its log.
    """

    theta: np.ndarray
    beta: np.ndarray
    u: np.ndarray
    b: np.ndarray
    deviance: float
    gradient: np.ndarray
    hessian: np.ndarray | None
    n_iter: int
    n_evals: int
    converged: bool
    message: str
    singular: bool
    glm_beta: np.ndarray
    param: float | None = None
    timings: dict = field(default_factory=dict)


class _Objective:
    """The deviance in the optimiser's scaled coordinates, with warm starts.

    ``x = (theta * theta_scale, R beta[, log param])``: the family's extra
    parameter (NB size, Gamma shape), if any, is optimised on the log scale.
    """

    def __init__(self, problem: LaplaceProblem, theta_scale, R, verbose, start_time):
        self.problem = problem
        self.theta_scale = theta_scale
        self.R = R
        self.Rinv = np.linalg.inv(R)
        self.n_theta = problem.n_theta
        self.n_beta = R.shape[0]
        self.has_param = problem.family.has_param
        self.u = problem.zero_modes()
        self.n_evals = 0
        #: the last finite evaluation's modes (slimmed) and its point: the
        #: Hessian predicts modes from them
        self.last_modes, self.last_x = None, None
        #: (x, deviance, grad_theta, grad_beta, grad_param, u, PIRLS converged) of
        #: the last finite evaluation with a gradient
        self.last_result = None
        #: set while the warm start is a second-order prediction of the modes
        self.predicted = False
        self.verbose = verbose
        self.start_time = start_time

    def params(self, x):
        nt, nb = self.n_theta, self.n_beta
        param = float(np.exp(x[nt + nb])) if self.has_param else None
        return x[:nt] / self.theta_scale, self.Rinv @ x[nt : nt + nb], param

    def to_x(self, theta, beta, param=None):
        tail = [np.log([param])] if self.has_param else []
        return np.concatenate([theta * self.theta_scale, self.R @ beta, *tail])

    def evaluate(self, x, gradient=True) -> LaplaceEvaluation:
        theta, beta, param = self.params(x)
        # Line searches try far-out points where exp() overflows; such a point
        # gets an infinite deviance (rejected by every line search) instead of
        # floating-point warnings, and the warm start is not moved there.
        extra = {"predicted": True} if self.predicted else {}
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            ev = self.problem.evaluate(theta, beta, self.u, gradient=gradient, param=param, **extra)
        self.n_evals += 1
        finite = np.isfinite(ev.deviance) and np.all(np.isfinite(ev.modes.u))
        if gradient:
            finite = finite and np.all(np.isfinite(ev.grad_theta)) and np.all(np.isfinite(ev.grad_beta))
        if not finite:
            ev.deviance = np.inf
            return ev
        self.u = ev.modes.u
        if gradient:
            # what the end of the fit reads (small arrays only, not the rows'):
            # the optimum is evaluated last by stage 2, so the Hessian's points
            # in between need not be followed by another evaluation there
            self.last_result = (np.array(x, copy=True), ev.deviance, ev.grad_theta, ev.grad_beta,
                                ev.grad_param, ev.modes.u, ev.modes.converged)
        slim = getattr(ev.modes, "slim", None)
        self.last_modes, self.last_x = (slim(), np.array(x, copy=True)) if slim is not None else (None, None)
        if self.verbose >= 2:
            print(f"  eval {self.n_evals:4d}  deviance {ev.deviance:.8f}  "
                  f"({time.perf_counter() - self.start_time:.2f}s)")
        return ev

    def gradient(self, ev: LaplaceEvaluation, x) -> np.ndarray:
        """The gradient in scaled coordinates (chain rule from (theta, beta, param))."""
        parts = [ev.grad_theta / self.theta_scale, self.Rinv.T @ ev.grad_beta]
        if self.has_param:
            parts.append([ev.grad_param * float(np.exp(x[-1]))])
        return np.concatenate(parts)

    def __call__(self, x):
        ev = self.evaluate(x)
        if not np.isfinite(ev.deviance):
            return ev.deviance, np.zeros_like(x)
        return ev.deviance, self.gradient(ev, x)


def _lbfgsb(fun, x0, bounds, gtol, max_iter, ftol=1e-15):
    res = minimize(
        fun, x0, jac=True, method="L-BFGS-B", bounds=bounds,
        options={"maxiter": max_iter, "gtol": gtol, "ftol": ftol, "maxcor": 20},
    )
    return res.x, int(res.nit), res


def _hessian(obj: _Objective, x, step=1e-4, central=True):
    """Finite differences of the exact gradient (symmetrised).

    Central differences (2k gradients, error O(step^2)) for the Hessian that
    gives standard errors; forward differences (k + 1 gradients) where it only
    seeds the quasi-Newton iterations. The step is absolute: in the
    optimiser's whitened coordinates one unit is about one standard error
    whatever the parameter's size (a step relative to |x| was 0.1 standard
    errors for an intercept at 3.6M rows, and cost PIRLS iterations).

    Every point starts PIRLS from the modes at ``x``, moved along their
    derivative when the problem offers ``mode_derivative`` (then PIRLS needs a
    single Newton step); the warm start at ``x`` is restored on exit.
    """
    k = x.size
    H = np.empty((k, k))
    g0 = None if central else obj(x)[1]
    u0 = obj.u
    derivative = _mode_derivative_at(obj, x)
    for j in range(k):
        e = np.zeros(k)
        e[j] = step
        du = None if derivative is None else derivative(e / step)
        obj.u, obj.predicted = (u0, False) if du is None else (u0 + step * du, True)
        gp = obj(x + e)[1]
        if central:
            obj.u = u0 if du is None else u0 - step * du
            H[:, j] = (gp - obj(x - e)[1]) / (2.0 * step)
        else:
            H[:, j] = (gp - g0) / step
    obj.u, obj.predicted = u0, False  # leave the warm start at x
    return 0.5 * (H + H.T)


def _mode_derivative_at(obj: _Objective, x):
    """``d -> du*`` along a direction of the scaled coordinates at x, or None."""
    problem = obj.problem
    if not hasattr(problem, "mode_derivative") or obj.last_x is None or not np.array_equal(obj.last_x, x):
        return None
    theta, beta, _ = obj.params(x)
    modes = obj.last_modes
    nt, nb = obj.n_theta, obj.n_beta
    if problem.mode_derivative(theta, modes, np.zeros(nt), np.zeros(nb)) is None:
        return None

    def derivative(d):
        return problem.mode_derivative(theta, modes, d[:nt] / obj.theta_scale, obj.Rinv @ d[nt : nt + nb])

    return derivative


def _free_mask(x, g, lower, upper):
    """Coordinates not pinned at a bound by a gradient pushing outward."""
    return ~(((x <= lower + 1e-10) & (g > 0)) | ((x >= upper - 1e-10) & (g < 0)))


def fit_laplace(
    problem: LaplaceProblem,
    *,
    max_iter: int = 500,
    tol: float = 1e-10,
    compute_hessian: bool = True,
    verbose: int = 0,
) -> FitResult:
    """Maximise the Laplace log-likelihood of ``problem``.

    Parameters
    ----------
    problem : LaplaceProblem
    max_iter : int, default=500
        Iteration limit of stage 2.
    tol : float, default=1e-10
        Stage 2 stops when the Newton decrement ``g^T H^{-1} g`` (twice the
        predicted further decrease of the deviance) falls below ``tol``.
    compute_hessian : bool, default=True
        Whether to compute the Hessian for standard errors and the polish.
    verbose : int, default=0
        1 prints one line per stage, 2 one line per evaluation.

    Returns
    -------
    FitResult
    """
    t0 = time.perf_counter()
    timings = {}
    family = problem.family
    # The GLM start, the whitening and stage 1 need no more than a few hundred
    # levels: the problem may offer such a subsample (see
    # LaplaceProblem.stage1_problem); its information is scaled up to all rows.
    sub = problem.stage1_problem() if hasattr(problem, "stage1_problem") else problem
    X, y, w, offset = sub.X, sub.y, sub.weights, sub.offset
    beta_glm, _, _ = fit_glm(family, X, y, w, offset)
    param0 = None
    if family.has_param:
        # the extra parameter's start from the GLM fit, then the GLM at that value
        mu = family.link.inverse(offset + X @ beta_glm)
        param0 = family.starting_param(y, mu, w, max(int(np.sum(w > 0)) - X.shape[1], 1))
        beta_glm, _, _ = fit_glm(family.with_param(param0), X, y, w, offset)
    eta = offset + X @ beta_glm
    W = problem.family_at(param0).irls_quantities(y, eta, w).weights
    XT = X.T
    R = _cholesky_upper((XT * W) @ X) * np.sqrt(problem.y.size / max(y.size, 1))
    theta_scale = problem.theta_rms
    timings["glm"] = time.perf_counter() - t0
    _say(verbose, f"start: {problem.y.size:,} rows, {problem.n_theta} theta + {beta_glm.size} beta"
         f"{' + 1 family' if family.has_param else ''} parameters; GLM start on {y.size:,} rows", t0)

    obj = _Objective(problem, theta_scale, R, verbose, t0)
    nt = problem.n_theta
    # In scaled coordinates an element of 1 means a random effect whose SD on
    # the link scale equals the covariate's spread; beyond +-MAX_SCALED_THETA
    # (exp(50) times the typical response) nothing is estimable, and line
    # searches that wander there only overflow.
    diag = problem.theta_diagonal
    theta_lower = np.where(diag, 0.0, -MAX_SCALED_THETA)
    lower = np.concatenate([theta_lower, np.full(beta_glm.size, -np.inf)])
    upper = np.concatenate([np.full(nt, MAX_SCALED_THETA), np.full(beta_glm.size, np.inf)])
    if family.has_param:
        lo, hi = family.param_bounds
        lower = np.append(lower, -np.inf if lo is None else lo)
        upper = np.append(upper, np.inf if hi is None else hi)
    bounds = [
        (lo if np.isfinite(lo) else None, hi if np.isfinite(hi) else None) for lo, hi in zip(lower, upper)
    ]

    # stage 1: theta alone, beta at the GLM estimate; on the subsample of the
    # levels, unless evaluations in theta alone are cheap on all of them
    theta0 = np.where(diag, 1.0, 0.0)
    rest = obj.to_x(np.zeros(nt), beta_glm, param0)[nt:]  # (R beta_glm[, log param0])
    if getattr(problem, "theta_is_cheap", False):
        sub = problem
    obj1 = obj if sub is problem else _Objective(sub, theta_scale, R, verbose, t0)

    def stage1(xt):
        f, g = obj1(np.concatenate([xt, rest]))
        return f, g[:nt]

    # a start only: stop once the relative decrease is below 1e-10
    # start at Lambda = I in the scaled coordinates (a link-scale SD of 1 per
    # covariate rms): lme4's theta = I would give a covariate of scale 1e8 an SD of 1e8
    xt, it1, res1 = _lbfgsb(stage1, theta0, bounds[:nt], 1e-3, 200, ftol=1e-10)
    timings["stage1"] = time.perf_counter() - t0
    levels = "" if sub is problem else f" on {sub.n_levels} of {problem.n_levels} levels"
    _say(verbose, f"stage 1 (theta only{levels}): {it1} iterations, {obj1.n_evals} evaluations, "
         f"deviance {float(res1.fun):.6f}", t0)

    # stage 2: theta and beta jointly, by quasi-Newton steps that start from
    # the finite-difference Hessian of the exact gradient (few evaluations when
    # stage 1 ended near the optimum); L-BFGS-B takes over if they stall. The
    # deviance is even in each column of Lambda, so a diagonal element at 0 is
    # a stationary point no descent method leaves: restart from the best nearby
    # interior point while one lowers the deviance.
    x = np.concatenate([xt, rest])
    it2 = 0
    H = None
    H_sub = None
    if obj1 is not obj:
        # On the subsample, theta and beta jointly to a loose tolerance: its
        # optimum is within the subsample's sampling error of the full one (a
        # few standard errors), where the deviance is close to quadratic,
        # while the GLM's beta can be far off (a random intercept shifts the
        # fixed intercept). Its BFGS Hessian, scaled up to all rows (the
        # deviance is a sum over rows), seeds stage 2: all at a fraction of
        # the cost of one finite-difference Hessian on all rows.
        H_sub = _hessian(obj1, x, central=False)
        x_sub, nit, ok_sub = _quasi_newton(obj1, x, lower, upper, H_sub, max_iter, SUBSAMPLE_DECREMENT, True)
        it1 += nit
        if ok_sub and np.all(np.isfinite(H_sub)):
            x = x_sub
            H_sub = H_sub * (problem.y.size / sub.y.size)
        else:
            H_sub = None
        _say(verbose, f"stage 1b (theta, beta on {sub.n_levels} levels): {nit} iterations", t0)
        obj.n_evals += obj1.n_evals
    for attempt in range(1 + MAX_RESTARTS):
        if attempt == 0 and H_sub is not None:
            H = H_sub
        else:
            H = _hessian(obj, x, central=False)
        x, nit, ok = _quasi_newton(obj, x, lower, upper, H, max_iter, tol)
        it2 += nit
        if not ok:
            # far from the optimum the Hessian can be indefinite: let L-BFGS-B
            # get close, then polish with a fresh Hessian
            _say(verbose, "quasi-Newton stalled; continuing with L-BFGS-B", t0)
            x, nit, _ = _lbfgsb(obj, x, bounds, 1e-6, max_iter)
            H = _hessian(obj, x, central=False)
            x, nit2, _ = _quasi_newton(obj, x, lower, upper, H, max_iter, tol)
            it2 += nit + nit2
        f, g = obj(x)
        escape = _escape_boundary(obj, x, f, diag)
        if escape is None:
            break
        _say(verbose, f"restart: leaving a boundary at deviance {f:.6f}", t0)
        x = escape
    timings["stage2"] = time.perf_counter() - t0
    _say(verbose, f"stage 2 (theta, beta): {it2} iterations, deviance {f:.8f}, "
         f"{obj.n_evals} evaluations so far", t0)

    # The Hessian for standard errors (lme4's vcov uses the same matrix), by
    # central differences at the optimum.
    # (the stage-2 Hessian came from forward differences: always take a central one here)
    at_optimum = obj.last_result
    if compute_hessian:
        H = _hessian(obj, x)
    timings["hessian"] = time.perf_counter() - t0
    if compute_hessian:
        _say(verbose, f"Hessian for standard errors: central differences, {2 * x.size} evaluations", t0)

    if at_optimum is None or not np.array_equal(at_optimum[0], x):
        # (also when the point is not finite: then the evaluation itself is reported)
        end = obj.evaluate(x, gradient=True)
        at_optimum = (x, end.deviance, end.grad_theta, end.grad_beta, end.grad_param, end.modes.u,
                      end.modes.converged)
    _, f, grad_theta, grad_beta, grad_param, u, pirls_converged = at_optimum
    ev = LaplaceEvaluation(f, grad_theta, grad_beta, None, grad_param)
    g_x = obj.gradient(ev, x)
    free = _free_mask(x, g_x, lower, upper)
    max_grad = float(np.max(np.abs(g_x[free]))) if np.any(free) else 0.0
    # converged: the deviance cannot drop by more than ~1e-6 (Newton model), or,
    # without a usable Hessian, a small gradient in the scaled coordinates
    direction = _newton_step(H, g_x, free) if compute_hessian else None
    if direction is not None:
        decrement = -float(g_x @ direction)
        converged = decrement < DECREMENT_TOL
        detail = f"Newton decrement {decrement:.2e}, max|gradient| {max_grad:.2e}"
    else:
        converged = max_grad < GRADIENT_TOL
        detail = f"max|gradient| {max_grad:.2e} (the Hessian is not positive definite)"
    converged = bool(converged and pirls_converged)
    message = detail + ("" if pirls_converged else "; PIRLS did not converge at the optimum")
    theta, beta, param = obj.params(x)
    hessian = None
    if compute_hessian:
        # back from scaled coordinates x = D p to p = (theta, beta[, log param]):
        # H_p = D^T H_x D
        nb = beta.size
        D = np.eye(x.size)
        D[:nt, :nt] = np.diag(theta_scale)
        D[nt : nt + nb, nt : nt + nb] = R
        hessian = D.T @ H @ D
    timings["total"] = time.perf_counter() - t0
    _say(verbose, f"done: deviance {f:.8f}, {obj.n_evals} evaluations, {detail}", t0)
    return FitResult(
        theta=theta,
        beta=beta,
        u=u,
        b=problem.random_effects(theta, u),
        deviance=f,
        gradient=np.concatenate([ev.grad_theta, ev.grad_beta] + ([[ev.grad_param]] if param is not None else [])),
        param=param,
        hessian=hessian,
        n_iter=it1 + it2,
        n_evals=obj.n_evals,
        converged=converged,
        message=message,
        # lme4's isSingular rule, on the covariate's scale: theta * rms (the SD of
        # the term's contribution) so that a 1e8-scale covariate is not "singular"
        singular=bool(np.any(np.abs(theta[diag] * theta_scale[diag]) < SINGULAR_TOL)),
        glm_beta=beta_glm,
        timings=timings,
    )


def fit_glm_ml(family, X, y, w, offset):
    """Maximum likelihood for a GLM without random effects, shape included.

    For a family with an extra parameter (NB size, Gamma shape, Gaussian
    variance) the parameter is profiled: a bounded one-dimensional search over
    its log, with beta refitted by IRLS at each value.

    Returns
    -------
    beta : ndarray
    family : Family
        The family at the estimated parameter (itself when it has none).
    converged : bool
    n_iter : int
    """
    beta, converged, n_iter = fit_glm(family, X, y, w, offset)
    if not family.has_param:
        return beta, family, converged, n_iter
    mu = family.link.inverse(offset + X @ beta)
    start = np.log(family.starting_param(y, mu, w, max(int(np.sum(w > 0)) - X.shape[1], 1)))
    lo, hi = family.param_bounds
    lo = start - 15.0 if lo is None else lo
    hi = start + 15.0 if hi is None else hi

    def negloglik(log_param):
        fam = family.with_param(float(np.exp(log_param)))
        b, _, _ = fit_glm(fam, X, y, w, offset)
        return -fam.loglik(y, fam.link.inverse(offset + X @ b), w)

    res = minimize_scalar(negloglik, bounds=(lo, hi), method="bounded", options={"xatol": 1e-9})
    fitted = family.with_param(float(np.exp(res.x)))
    beta, converged, n_iter = fit_glm(fitted, X, y, w, offset)
    return beta, fitted, bool(converged and res.success), n_iter + int(res.nfev)


def _escape_boundary(obj: _Objective, x, f, diag):
    """An interior point near x with a lower deviance, for diagonal thetas at 0.

    Trial values are in scaled coordinates, where 1 means a random-effect SD
    equal to the covariate's root-mean-square on the link scale.
    """
    best = None
    for k in np.flatnonzero(diag):
        if x[k] > 1e-8:
            continue
        for t in (0.3, 0.1, 0.03, 0.01, 0.003):
            trial = x.copy()
            trial[k] = t
            f_trial = obj(trial)[0]
            if f_trial < f - 1e-8 and (best is None or f_trial < best[0]):
                best = (f_trial, trial)
    obj(x)  # restore the warm start at x
    return None if best is None else best[1]


def _quasi_newton(obj: _Objective, x, lower, upper, H, max_iter, decrement_tol, update_hessian=False):
    """Projected quasi-Newton descent with BFGS updates, starting from Hessian ``H``.

    Coordinates at a lower bound whose gradient points outward are held fixed.
    Returns ``(x, n_iter, ok)``; ``ok`` is False when a step cannot be made
    (an indefinite Hessian, or no decrease along a descent direction before
    the gradient is small). With ``update_hessian`` the BFGS updates are made
    to ``H`` itself, so the caller keeps the final approximation.
    """
    f, g = obj(x)
    H = H if update_hessian else H.copy()
    for it in range(1, max_iter + 1):
        free = _free_mask(x, g, lower, upper)
        if not np.any(free):
            return x, it - 1, True
        direction = _newton_step(H, g, free)
        if direction is None:
            return x, it - 1, False
        # the Newton decrement g^T H^{-1} g is twice the predicted decrease of
        # the deviance: a scale-free stopping rule that rounding noise in the
        # gradient of a deviance of 1e6 cannot defeat. It is floored at 16 ulps
        # of the deviance: a decrease below the deviance's own rounding cannot
        # be verified (at 360k rows an ulp is 2e-10, at 3.6M rows 2e-9, above
        # the default tol), and chasing it only stalls the line search
        if -float(g @ direction) < max(decrement_tol, 16.0 * np.spacing(abs(f))):
            return x, it - 1, True
        t = 1.0
        for _ in range(30):
            x_new = np.clip(x + t * direction, lower, upper)
            f_new, g_new = obj(x_new)
            if f_new <= f + 1e-4 * float(g @ (x_new - x)):
                break
            t *= 0.5
        else:
            obj(x)  # restore the warm start at x
            # no decrease: at the optimum to rounding noise, or a bad model
            return x, it, bool(np.max(np.abs(g[free])) < GRADIENT_TOL)
        s, yk = x_new - x, g_new - g
        sy = float(s @ yk)
        if sy > 1e-12 * float(np.linalg.norm(s) * np.linalg.norm(yk)):
            Hs = H @ s
            H += np.outer(yk, yk) / sy - np.outer(Hs, Hs) / float(s @ Hs)
        x, f, g = x_new, f_new, g_new
    return x, max_iter, False


def _newton_step(H, g, free):
    Hf = H[np.ix_(free, free)]
    try:
        L = np.linalg.cholesky(Hf)
    except np.linalg.LinAlgError:
        return None
    step = np.zeros_like(g)
    step[free] = -np.linalg.solve(L.T, np.linalg.solve(L, g[free]))
    return step


def _cholesky_upper(info):
    """Upper factor R with R^T R = info; falls back to a scaled identity when singular."""
    try:
        return np.linalg.cholesky(info).T
    except np.linalg.LinAlgError:
        return np.diag(np.sqrt(np.maximum(np.diag(info), 1e-12)))


def _say(verbose, text, t0):
    if verbose:
        print(f"[sklearn_glmm] {text} ({time.perf_counter() - t0:.2f}s)")
