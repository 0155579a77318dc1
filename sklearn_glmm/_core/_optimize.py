"""The solver: maximum likelihood in (theta, coef[, param]) for any problem.

:class:`Solver` runs the numbered steps of ``docs/theory.md`` (eq. 7); each
step sets the attributes it names, and every tolerance is a field of
:class:`~._controls.SolverControls` (``controls.<name>`` below). It talks to
the problem only through the protocol of :mod:`._problem`.

1. **Start** (``start``, ``sub``) -- the GLM fit (``theta = 0``) on the stage-1
   subsample (``problem.subsample(controls.stage1_levels)``: about 150 evenly
   spaced levels of the largest factor, or the problem itself), unless the
   caller passed a start. Its Fisher information, scaled from the subsample's
   rows to all rows, whitens the coefficients.
2. **Scaling** (``objective``, ``lower``, ``upper``) -- the optimiser works in
   ``x = (rms * theta, R coef[, log param])`` with ``R^T R`` that information and
   ``rms`` the root-mean-square of each random-effect covariate, where the
   deviance's curvature is close to the identity. Bounds: diagonal theta
   ``>= 0``, ``|rms * theta| <= controls.max_scaled_theta``, the family's bounds
   on ``log param``.
3. **Stage 1** (``x``, ``n_iter``) -- skipped when the start carries theta
   (``Start.theta``, a warm start: stage 2 starts there). Otherwise theta alone, coef at the start, by
   L-BFGS-B to a loose tolerance (``controls.stage1_*``), from ``rms * theta =
   1`` on the diagonal: a start for the covariance parameters. It runs on the
   subsample, or on all levels when the problem's theta-only evaluations are
   cheap (``problem.theta_is_cheap``).
   **3b.** With a subsample: theta and coef jointly on
   it, by the quasi-Newton steps of stage 2 to ``controls.subsample_decrement``;
   its BFGS Hessian, scaled to all rows, seeds stage 2.
4. **Stage 2** (``x``, ``hessian``, ``n_iter``) -- all parameters on all rows.
   Projected quasi-Newton (BFGS) steps from that Hessian (or a
   forward-difference one of the exact gradient) until the Newton decrement
   ``g^T H^{-1} g`` is below ``controls.tol`` (floored at 16 ulps of the
   deviance, its own resolution); L-BFGS-B takes over if they stall, then a
   fresh Hessian polishes. Then the
   boundary restart: the deviance is even in each column of ``Lambda``, so a
   diagonal element at 0 is a stationary point no descent method leaves; when
   one of ``controls.restart_trials`` away from it lowers the deviance by more
   than ``controls.restart_min_decrease``, stage 2 restarts there (at most
   ``controls.max_restarts`` times).
5. **Hessian** (``hessian``) -- central differences of the exact gradient at the
   optimum (absolute step ``controls.hessian_step`` in the scaled coordinates;
   each point's PIRLS starts from the modes moved along their implicit
   derivative, ``problem.mode_derivative``, so one Newton step suffices).
   lme4's ``vcov`` uses the same matrix. Skipped when not asked for.
6. **Result** (:class:`FitResult`) -- converged when the Newton decrement is
   below ``controls.converged_decrement`` (or, without a positive definite
   Hessian, the largest free gradient element below
   ``controls.converged_gradient``) and every PIRLS converged; singular when a
   diagonal ``rms * theta`` is below ``controls.singular_tol``.

Every evaluation warm-starts PIRLS from the previous modes. The sequence of
evaluations depends only on the data, so results are deterministic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from ._controls import SolverControls
from ._problem import Evaluation, Problem, Start

__all__ = ["FitResult", "Solver", "fit"]


@dataclass
class FitResult:
    """Plain record of a fit (no scikit-learn, no pandas).

    Attributes
    ----------
    theta, coef : ndarray
        Estimates (theta in the engine's order of terms; coef as the problem's).
    param : float or None
        The family's parameter (NB size, Gamma shape), if it has one.
        ``gradient`` and ``hessian`` then end with its log.
    u : ndarray
        Spherical conditional modes (flat).
    deviance : float
        ``-2 log L`` (the problem's criterion) at the estimates.
    gradient : ndarray
        Its gradient in (theta, coef[, log param]) at the estimates.
    hessian : ndarray or None
        Its Hessian in (theta, coef[, log param]), or None when not computed.
    n_iter : int
        Outer iterations (both stages and the polish).
    n_evals : int
        Deviance evaluations.
    converged : bool
    message : str
    singular : bool
        Whether a variance is at its boundary: a diagonal ``rms * theta``
        below ``controls.singular_tol``.
    at_boundary : ndarray of bool
        Which theta elements are such diagonal elements.
    start : Start
        The GLM start (on the stage-1 subsample when there is one).
    controls : dict
        The :class:`~._controls.SolverControls` the fit ran with.
    notes : list of str
        Fallbacks taken on the way (a stalled quasi-Newton, a GLM start that
        did not converge, a Hessian that is not positive definite).
    timings : dict
        Seconds at the end of each step.
    conditional_covariances : list of ndarray or None
        ``Var(b_k | y)`` per term and level at the estimates (lme4's
        ``condVar``), relative to the dispersion.
    linear_algebra : str
        How the penalised system was factorised (the problem's
        ``linear_algebra``: block diagonal, dense or sparse Schur complement).
    """

    theta: np.ndarray
    coef: np.ndarray
    param: float | None
    u: np.ndarray
    deviance: float
    gradient: np.ndarray
    hessian: np.ndarray | None
    n_iter: int
    n_evals: int
    converged: bool
    message: str
    singular: bool
    at_boundary: np.ndarray
    start: Start
    controls: dict
    notes: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    conditional_covariances: list | None = None
    linear_algebra: str = ""

    @property
    def beta(self) -> np.ndarray:
        """The coefficients (an alias of ``coef`` for problems whose coef is beta)."""
        return self.coef


class _Objective:
    """The deviance in the solver's scaled coordinates, with warm starts.

    ``x = (theta * theta_scale, R coef[, log param])``.
    """

    def __init__(self, problem: Problem, theta_scale, R, verbose: int, start_time: float):
        self.problem = problem
        self.theta_scale = theta_scale
        self.R = R
        self.Rinv = np.linalg.inv(R) if R.size else R
        self.n_theta = problem.n_theta
        self.n_coef = R.shape[0]
        self.has_param = problem.param_bounds is not None
        self.u = problem.zero_modes()
        self.n_evals = 0
        #: the last finite evaluation's state and point: the Hessian predicts modes from them
        self.last_state, self.last_x = None, None
        #: the last finite evaluation with a gradient: (x, Evaluation)
        self.last_result = None
        #: set while the warm start is a second-order prediction of the modes
        self.predicted = False
        #: set while only the gradient in theta is needed (stage 1)
        self.theta_only = False
        self.verbose = verbose
        self.start_time = start_time

    def set_scaling(self, R) -> None:
        """New whitening of the coefficients; what was recorded in the old coordinates is dropped."""
        self.R, self.Rinv = R, np.linalg.inv(R)
        self.last_state = self.last_x = self.last_result = None

    def params(self, x):
        nt, nc = self.n_theta, self.n_coef
        param = float(np.exp(x[nt + nc])) if self.has_param else None
        return x[:nt] / self.theta_scale, self.Rinv @ x[nt : nt + nc], param

    def to_x(self, theta, coef, param=None):
        tail = [np.log([param])] if self.has_param else []
        return np.concatenate([theta * self.theta_scale, self.R @ coef, *tail])

    def evaluate(self, x, gradient: bool = True) -> Evaluation:
        theta, coef, param = self.params(x)
        # Line searches try far-out points where exp() overflows; such a point
        # gets an infinite deviance (rejected by every line search) instead of
        # floating-point warnings, and the warm start is not moved there.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            ev = self.problem.evaluate(
                theta,
                coef,
                param,
                self.u,
                gradient=gradient,
                predicted=self.predicted,
                theta_only=self.theta_only,
            )
        self.n_evals += 1
        if not ev.finite:
            ev.deviance = np.inf
            return ev
        self.u = ev.u
        if gradient and not self.theta_only:
            self.last_result = (np.array(x, copy=True), ev)
        self.last_state, self.last_x = ev.state, np.array(x, copy=True)
        if self.verbose >= 2:
            print(
                f"  eval {self.n_evals:4d}  deviance {ev.deviance:.8f}  "
                f"({time.perf_counter() - self.start_time:.2f}s)"
            )
        return ev

    def gradient(self, ev: Evaluation, x) -> np.ndarray:
        """The gradient in scaled coordinates (chain rule from (theta, coef, param))."""
        parts = [ev.grad_theta / self.theta_scale, self.Rinv.T @ ev.grad_coef]
        if self.has_param:
            parts.append([ev.grad_param * float(np.exp(x[-1]))])
        return np.concatenate(parts)

    def __call__(self, x):
        ev = self.evaluate(x)
        if not np.isfinite(ev.deviance):
            return ev.deviance, np.zeros_like(x)
        return ev.deviance, self.gradient(ev, x)


class Solver:
    """Maximum likelihood for ``problem`` by the steps of the module docstring.

    Parameters
    ----------
    problem : Problem
    controls : SolverControls
    start : Start or None
        Where to start (the GLM fit on the stage-1 subsample when None).
    compute_hessian : bool
        Whether to run step 5.
    verbose : int
        1 prints one line per step, 2 one line per evaluation.
    """

    def __init__(
        self,
        problem: Problem,
        controls: SolverControls,
        start: Start | None = None,
        compute_hessian: bool = True,
        verbose: int = 0,
    ):
        self.problem = problem
        self.controls = controls
        self.start = start
        self.compute_hessian = compute_hessian
        self.verbose = verbose
        self.notes: list[str] = []
        self.timings: dict = {}
        self.n_iter = 0
        self.hessian = None
        #: whether the coefficients are whitened by their information with theta fixed
        self.whitened = False

    def fit(self) -> FitResult:
        self._t0 = time.perf_counter()
        self.step_start()
        self.step_scaling()
        self.step_stage1()
        self.step_stage2()
        self.step_hessian()
        return self.step_result()

    # -- 1. start ----------------------------------------------------------------
    def step_start(self) -> None:
        """Sets ``sub`` (the stage-1 problem) and ``start`` (the GLM fit, information for all rows)."""
        problem = self.problem
        warm = self.start is not None and self.start.theta is not None
        self.sub = problem if warm else problem.subsample(self.controls.stage1_levels)
        if self.start is None:
            start = self.sub.start()
            scale = problem.n_rows / max(self.sub.n_rows, 1)
            self.start = Start(start.coef, start.param, start.information * scale, list(start.notes))
        self.notes += [f"GLM start: {note}" for note in self.start.notes]
        self._record(
            "glm",
            f"start: {problem.n_rows:,} rows, {problem.n_theta} theta + {problem.n_coef} coef"
            f"{' + 1 family' if problem.param_bounds is not None else ''} parameters; "
            f"GLM start on {self.sub.n_rows:,} rows",
        )

    # -- 2. scaling --------------------------------------------------------------
    def step_scaling(self) -> None:
        """Sets ``objective`` (scaled coordinates) and the bounds ``lower``, ``upper``, ``bounds``."""
        problem, c = self.problem, self.controls
        R = _cholesky_upper(self.start.information, self.notes)
        self.theta_scale = problem.theta_scale
        self.objective = self._make_objective(problem, R)
        nt, nc = problem.n_theta, problem.n_coef
        self.diag = problem.theta_diagonal
        lower = np.concatenate([np.where(self.diag, 0.0, -c.max_scaled_theta), np.full(nc, -np.inf)])
        upper = np.concatenate([np.full(nt, c.max_scaled_theta), np.full(nc, np.inf)])
        if problem.param_bounds is not None:
            lo, hi = problem.param_bounds
            lower = np.append(lower, -np.inf if lo is None else lo)
            upper = np.append(upper, np.inf if hi is None else hi)
        self.lower, self.upper = lower, upper
        self.bounds = [
            (lo if np.isfinite(lo) else None, hi if np.isfinite(hi) else None) for lo, hi in zip(lower, upper)
        ]

    def _make_objective(self, problem, R):
        return _Objective(problem, self.theta_scale, R, self.verbose, self._t0)

    # -- 3. stage 1 --------------------------------------------------------------
    def step_stage1(self) -> None:
        """Sets ``x`` (the start of stage 2), ``stage2_hessian`` (from 3b, or None) and ``n_iter``."""
        problem, c, obj = self.problem, self.controls, self.objective
        nt = problem.n_theta
        if self.start.theta is not None:
            # a warm start (Start.theta): stage 2 starts there
            self.x = obj.to_x(np.asarray(self.start.theta, dtype=float), self.start.coef, self.start.param)
            self.stage2_hessian = None
            return
        sub = problem if problem.theta_is_cheap else self.sub
        obj1 = obj if sub is problem else self._make_objective(sub, obj.R)
        rest = obj.to_x(np.zeros(nt), self.start.coef, self.start.param)[nt:]

        def stage1(xt):
            f, g = obj1(np.concatenate([xt, rest]))
            return f, g[:nt]

        # from Lambda = I in the scaled coordinates (a link-scale SD of 1 per
        # covariate rms): lme4's theta = I would give a covariate of scale 1e8 an SD of 1e8
        theta0 = np.where(self.diag, 1.0, 0.0)
        obj1.theta_only = True
        xt, it1, res1 = _lbfgsb(
            stage1, theta0, self.bounds[:nt], c.stage1_gtol, c.stage1_max_iter, c.stage1_ftol
        )
        obj1.theta_only = False
        self.n_iter += it1
        levels = "" if sub is problem else f" on {sub.n_levels} of {problem.n_levels} levels"
        self._record(
            "stage1",
            f"stage 1 (theta only{levels}): {it1} iterations, {obj1.n_evals} evaluations, "
            f"deviance {float(res1.fun):.6f}",
        )
        self._rescale(xt / self.theta_scale, obj1 if sub is self.sub else None, (obj, obj1))
        rest = obj.to_x(np.zeros(nt), self.start.coef, self.start.param)[nt:]
        self.x = np.concatenate([xt, rest])
        self.stage2_hessian = None
        if obj1 is not obj:
            # 3b: theta and coef jointly on the subsample to a loose tolerance:
            # within its sampling error of the optimum, where the deviance is
            # close to quadratic, while the GLM's coef can be far off (a random
            # intercept shifts the fixed intercept). Its BFGS Hessian, scaled to
            # all rows (the deviance is a sum over rows), seeds stage 2.
            H_sub = _seed_hessian(obj1, self.x, c.hessian_step, self._coef_curvature(sub))
            x_sub, nit, ok = _quasi_newton(
                obj1,
                self.x,
                self.lower,
                self.upper,
                H_sub,
                c.max_iter,
                c.subsample_decrement,
                c,
                update_hessian=True,
            )
            self.n_iter += nit
            if ok and np.all(np.isfinite(H_sub)):
                self.x = x_sub
                self.stage2_hessian = H_sub * (problem.n_rows / sub.n_rows)
            self._record("stage1", f"stage 1b (theta, coef on {sub.n_levels} levels): {nit} iterations")
        if obj1 is not obj:
            obj.n_evals += obj1.n_evals

    def _rescale(self, theta, sub_objective, objectives) -> None:
        """Whiten the coefficients by their information with theta held at stage 1's value.

        The GLM's information ignores the random effects: for a fixed
        intercept next to a random one it is too large by the ratio of the
        level variance to the residual one (a factor of 1e8 for counts of
        1e7), and the Hessian in those coordinates cannot be resolved. The
        information with theta fixed (lme4's ``RX``) on the stage-1 subsample,
        scaled to all rows, is the curvature stage 2 will meet.
        """
        problem, sub, start = self.problem, self.sub, self.start
        if problem.n_coef == 0:
            return
        u = sub_objective.u if sub_objective is not None else sub.zero_modes()
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            info = sub.coef_information(theta, start.coef, start.param, u)
        if info is None or info.shape != (problem.n_coef, problem.n_coef) or not np.all(np.isfinite(info)):
            return
        try:
            R = np.linalg.cholesky(info * (problem.n_rows / max(sub.n_rows, 1))).T
        except np.linalg.LinAlgError:
            return
        for obj in objectives:
            obj.set_scaling(R)
        self.whitened = True

    def _coef_curvature(self, objective_problem) -> float | None:
        """The coefficients' block of the Hessian of ``objective_problem``'s deviance,
        ``2 n_rows / N I`` in coordinates whitened by the information (None: unknown)."""
        if not self.whitened:
            return None
        return 2.0 * objective_problem.n_rows / self.problem.n_rows

    # -- 4. stage 2 --------------------------------------------------------------
    def step_stage2(self) -> None:
        """Sets ``x`` (the optimum), ``hessian`` (the last quasi-Newton one) and ``n_iter``."""
        c, obj = self.controls, self.objective
        x = self.x
        for attempt in range(1 + c.max_restarts):
            x = self._quasi_newton_stage(x, first=attempt == 0)
            f, _ = obj(x)
            escape = _escape_boundary(obj, x, f, self.diag, c)
            if escape is None:
                break
            self._say(f"restart: leaving a boundary at deviance {f:.6f}")
            self.notes.append(f"restarted away from a variance at its boundary (deviance {f:.6f})")
            x = escape
        self.x = x
        self._record("stage2", f"stage 2: deviance {f:.8f}, {obj.n_evals} evaluations so far")

    def _quasi_newton_stage(self, x, first: bool):
        c, obj = self.controls, self.objective
        H = (
            self.stage2_hessian
            if first and self.stage2_hessian is not None
            else _seed_hessian(obj, x, c.hessian_step, self._coef_curvature(self.problem))
        )
        x, nit, ok = _quasi_newton(obj, x, self.lower, self.upper, H, c.max_iter, c.tol, c)
        self.n_iter += nit
        if not ok:
            # far from the optimum the Hessian can be indefinite: L-BFGS-B gets
            # close, then a fresh Hessian polishes
            self._say("quasi-Newton stalled; continuing with L-BFGS-B")
            self.notes.append("quasi-Newton stalled; L-BFGS-B took over")
            x, nit, _ = _lbfgsb(obj, x, self.bounds, 1e-6, c.max_iter)
            H = _hessian(obj, x, c.hessian_step, central=False)
            x, nit2, _ = _quasi_newton(obj, x, self.lower, self.upper, H, c.max_iter, c.tol, c)
            self.n_iter += nit + nit2
        self.hessian = H
        return x

    # -- 5. Hessian ----------------------------------------------------------------
    def step_hessian(self) -> None:
        """Sets ``hessian`` (central differences at the optimum, scaled coordinates) and ``at_optimum``."""
        obj = self.objective
        # the optimum's deviance, gradient and modes come from stage 2's last
        # evaluation there (the Hessian's points move the warm start)
        self.at_optimum = obj.last_result
        if self.compute_hessian:
            self.hessian = _hessian(obj, self.x, self.controls.hessian_step, central=True)
            self._record(
                "hessian", f"Hessian for standard errors: central differences, {2 * self.x.size} evaluations"
            )
        if self.at_optimum is None or not np.array_equal(self.at_optimum[0], self.x):
            # (also when the point is not finite: then that evaluation itself is reported)
            self.at_optimum = (self.x, obj.evaluate(self.x, gradient=True))

    # -- 6. result -----------------------------------------------------------------
    def step_result(self) -> FitResult:
        c, obj, problem = self.controls, self.objective, self.problem
        x, ev = self.at_optimum
        g_x = obj.gradient(ev, x)
        free = _free_mask(x, g_x, self.lower, self.upper, c)
        max_grad = float(np.max(np.abs(g_x[free]))) if np.any(free) else 0.0
        direction = _newton_step(self.hessian, g_x, free) if self.hessian is not None else None
        if direction is not None:
            decrement = -float(g_x @ direction)
            converged = decrement < c.converged_decrement
            detail = f"Newton decrement {decrement:.2e}, max|gradient| {max_grad:.2e}"
        else:
            converged = max_grad < c.converged_gradient
            detail = f"max|gradient| {max_grad:.2e}" + (
                " (the Hessian is not positive definite)" if self.hessian is not None else ""
            )
        converged = bool(converged and ev.converged)
        message = detail + ("" if ev.converged else "; PIRLS did not converge at the optimum")
        theta, coef, param = obj.params(x)
        hessian = None
        if self.hessian is not None:
            # back from x = D p to p = (theta, coef[, log param]): H_p = D^T H_x D
            nt, nc = theta.size, coef.size
            D = np.eye(x.size)
            D[:nt, :nt] = np.diag(self.theta_scale)
            D[nt : nt + nc, nt : nt + nc] = obj.R
            hessian = D.T @ self.hessian @ D
        gradient = np.concatenate(
            [ev.grad_theta, ev.grad_coef] + ([[ev.grad_param]] if param is not None else [])
        )
        at_boundary = self.diag & (np.abs(theta * self.theta_scale) < c.singular_tol)
        self._record("total", f"done: deviance {ev.deviance:.8f}, {obj.n_evals} evaluations, {detail}")
        result = FitResult(
            theta=theta,
            coef=coef,
            param=param,
            u=ev.u,
            deviance=float(ev.deviance),
            gradient=gradient,
            hessian=hessian,
            n_iter=self.n_iter,
            n_evals=obj.n_evals,
            converged=converged,
            message=message,
            singular=bool(np.any(at_boundary)),
            at_boundary=at_boundary,
            start=self.start,
            controls=c.as_dict(),
            notes=list(self.notes),
            timings=dict(self.timings),
            linear_algebra=problem.linear_algebra,
        )
        result.conditional_covariances = problem.conditional_covariances(result, ev.state)
        return result

    # -- reporting -------------------------------------------------------------------
    def _record(self, step: str, text: str) -> None:
        self.timings[step] = time.perf_counter() - self._t0
        self._say(text)

    def _say(self, text: str) -> None:
        if self.verbose:
            print(f"[sklearn_glmm] {text} ({time.perf_counter() - self._t0:.2f}s)")


def fit(
    problem: Problem,
    controls: SolverControls | None = None,
    *,
    start: Start | None = None,
    compute_hessian: bool = True,
    verbose: int = 0,
) -> FitResult:
    """Maximise the likelihood of ``problem`` (see :class:`Solver`); controls default to the problem's."""
    controls = problem.controls if controls is None else controls
    return Solver(problem, controls, start, compute_hessian, verbose).fit()


def _lbfgsb(fun, x0, bounds, gtol, max_iter, ftol=1e-15):
    res = minimize(
        fun,
        x0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": max_iter, "gtol": gtol, "ftol": ftol, "maxcor": 20},
    )
    return res.x, int(res.nit), res


def _hessian(obj: _Objective, x, step: float, central: bool):
    """Finite differences of the exact gradient (symmetrised).

    Central differences (2k gradients, error O(step^2)) for the Hessian that
    gives standard errors; forward differences (k + 1 gradients) where it only
    seeds the quasi-Newton iterations. The step is absolute: in the whitened
    coordinates one unit is about one standard error whatever the
    parameter's size. Every point starts PIRLS from the modes at ``x``, moved
    along their derivative when the problem offers it (then PIRLS needs a
    single Newton step); the warm start at ``x`` is restored on exit.
    """
    H = _difference_columns(obj, x, step, central, list(range(x.size)))
    return 0.5 * (H + H.T)


def _seed_hessian(obj: _Objective, x, step: float, coef_curvature: float | None):
    """The Hessian that seeds the quasi-Newton steps.

    When the coefficients are whitened by their information with theta fixed
    (``coef_curvature`` given: 2 times the ratio of the objective's rows to all
    rows), their block of the deviance's Hessian is ``coef_curvature * I`` and
    only the columns of theta (and the family's parameter) are differenced:
    ``n_theta + 1`` gradients instead of ``k + 1``. Otherwise every column is.
    """
    if coef_curvature is None:
        return _hessian(obj, x, step, central=False)
    nt, nc = obj.n_theta, obj.n_coef
    cols = [j for j in range(x.size) if not nt <= j < nt + nc]
    C = _difference_columns(obj, x, step, False, cols)
    H = coef_curvature * np.eye(x.size)
    H[:, cols] = C
    H[cols, :] = C.T
    H[np.ix_(cols, cols)] = 0.5 * (C[cols] + C[cols].T)
    return H


def _difference_columns(obj: _Objective, x, step: float, central: bool, cols: list[int]) -> np.ndarray:
    """Columns ``cols`` of the Hessian by differences of the gradient: (k, len(cols))."""
    k = x.size
    H = np.empty((k, len(cols)))
    g0 = None if central else obj(x)[1]
    u0 = obj.u
    derivative = _mode_derivative_at(obj, x)
    for i, j in enumerate(cols):
        e = np.zeros(k)
        e[j] = step
        du = None if derivative is None else derivative(e / step)
        obj.u, obj.predicted = (u0, False) if du is None else (u0 + step * du, True)
        gp = obj(x + e)[1]
        if central:
            obj.u = u0 if du is None else u0 - step * du
            H[:, i] = (gp - obj(x - e)[1]) / (2.0 * step)
        else:
            H[:, i] = (gp - g0) / step
    obj.u, obj.predicted = u0, False
    return H


def _mode_derivative_at(obj: _Objective, x):
    """``d -> du*`` along a direction of the scaled coordinates at x, or None."""
    if obj.last_x is None or not np.array_equal(obj.last_x, x):
        return None
    problem = obj.problem
    theta, coef, param = obj.params(x)
    state = obj.last_state
    nt, nc = obj.n_theta, obj.n_coef
    if problem.mode_derivative(theta, coef, param, state, np.zeros(nt), np.zeros(nc)) is None:
        return None

    def derivative(d):
        return problem.mode_derivative(
            theta, coef, param, state, d[:nt] / obj.theta_scale, obj.Rinv @ d[nt : nt + nc]
        )

    return derivative


def _free_mask(x, g, lower, upper, controls: SolverControls):
    """Coordinates not pinned at a bound by a gradient pushing outward."""
    tol = controls.active_bound_tol
    return ~(((x <= lower + tol) & (g > 0)) | ((x >= upper - tol) & (g < 0)))


def _escape_boundary(obj, x, f, diag, controls: SolverControls):
    """An interior point near x with a lower deviance, for diagonal thetas at 0.

    Trial values are in scaled coordinates, where 1 means a random-effect SD
    equal to the covariate's root-mean-square on the link scale.
    """
    best = None
    for k in np.flatnonzero(diag):
        if x[k] > controls.boundary_tol:
            continue
        for t in controls.restart_trials:
            trial = x.copy()
            trial[k] = t
            f_trial = obj(trial)[0]
            if f_trial < f - controls.restart_min_decrease and (best is None or f_trial < best[0]):
                best = (f_trial, trial)
    obj(x)  # restore the warm start at x
    return None if best is None else best[1]


def _quasi_newton(
    obj: _Objective,
    x,
    lower,
    upper,
    H,
    max_iter,
    decrement_tol,
    controls: SolverControls,
    update_hessian: bool = False,
):
    """Projected quasi-Newton descent with BFGS updates, starting from Hessian ``H``.

    Coordinates at a bound whose gradient points outward are held fixed.
    Returns ``(x, n_iter, ok)``; ``ok`` is False when a step cannot be made
    (an indefinite Hessian, or no decrease along a descent direction before
    the gradient is small). With ``update_hessian`` the BFGS updates are made
    to ``H`` itself, so the caller keeps the final approximation.
    """
    f, g = obj(x)
    H = H if update_hessian else H.copy()
    for it in range(1, max_iter + 1):
        free = _free_mask(x, g, lower, upper, controls)
        if not np.any(free):
            return x, it - 1, True
        direction = _newton_step(H, g, free)
        if direction is None:
            return x, it - 1, False
        # the Newton decrement g^T H^{-1} g is twice the predicted decrease of
        # the deviance: a scale-free rule that rounding noise in the gradient of
        # a deviance of 1e6 cannot defeat. It is floored at 16 ulps of the
        # deviance: a decrease below the deviance's own rounding cannot be
        # verified, and chasing it only stalls the line search
        if -float(g @ direction) < max(decrement_tol, 16.0 * np.spacing(abs(f))):
            return x, it - 1, True
        t = 1.0
        for _ in range(controls.max_halvings):
            x_new = np.clip(x + t * direction, lower, upper)
            f_new, g_new = obj(x_new)
            if f_new <= f + 1e-4 * float(g @ (x_new - x)):
                break
            t *= 0.5
        else:
            obj(x)  # restore the warm start at x
            # no decrease: at the optimum to rounding noise, or a bad model
            return x, it, bool(np.max(np.abs(g[free])) < controls.converged_gradient)
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


def _cholesky_upper(info, notes: list):
    """Upper factor R with R^T R = info; a scaled identity (noted) when singular."""
    if info.size == 0:
        return np.zeros((0, 0))
    try:
        return np.linalg.cholesky(info).T
    except np.linalg.LinAlgError:
        notes.append("the GLM start's information is singular; the coefficients are scaled by its diagonal")
        return np.diag(np.sqrt(np.maximum(np.diag(info), 1e-12)))
