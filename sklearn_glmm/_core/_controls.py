"""Every tolerance and limit of the engine, by name, in one settings object.

The engine's counterpart of lme4's ``glmerControl`` and MixedModels.jl's
``OptSummary``: :class:`SolverControls` holds the numbers that PIRLS (eq. 2 of
``docs/theory.md``), the GLM start and the two-stage optimiser (eq. 7) use, so
that no module repeats a literal. A fit records the controls it ran with
(``FitResult.controls``); users change them through an estimator's
``solver_options`` dictionary (:func:`make_controls` checks the names and
values). The defaults are the values every reference comparison was made with.

Boundary and singular fits have one meaning throughout: a diagonal element of
``Lambda`` is judged on the optimiser's scaled coordinate ``theta * rms`` (the
standard deviation of that random effect's contribution to the linear
predictor, relative to the residual SD for the linear mixed model), so a
covariate's units do not decide whether a variance counts as zero.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from numbers import Integral, Real

__all__ = ["SolverControls", "make_controls"]


@dataclass(frozen=True)
class SolverControls:
    """Named tolerances and limits of PIRLS, the GLM start and the outer optimiser.

    Attributes
    ----------
    pirls_tol : float
        PIRLS (eq. 2) stops when the largest Newton step in ``u`` is below it ...
    pirls_max_iter : int
        PIRLS iteration limit.
    max_halvings : int
        Step halvings per PIRLS or IRLS step before a unit counts as stuck.
    decrease_slack : float
        Relative rise of a penalised deviance accepted as rounding noise.
    stationarity_tol : float
        ... and the stationarity residual ``Lambda^T Z^T s - u`` (whose size
        is the error of the Laplace gradient) is below this; otherwise the
        last step is taken.
    noise_step : float
        Steps in ``u`` below this are Newton steps next to the mode: a rise
        of the penalised deviance there is rounding noise and not tested.
    predicted_step_tol : float
        When PIRLS starts from modes predicted to second order (the Hessian's
        points, eq. 7 step 5) and its first Newton step is below this, that
        step is the last.
    quadratic_regime, quadratic_skip : float
        Once full Newton steps are below ``quadratic_regime``, PIRLS predicts
        the next step from quadratic convergence and stops when it is below
        ``quadratic_skip * pirls_tol``.
    stalled_residual_tol : float
        A PIRLS whose steps no longer decrease the penalised deviance still
        counts as converged when its Newton step is below this.
    glm_tol, glm_max_iter : float, int
        The GLM fitter (the start, and fits without groups) stops when the
        Newton decrement ``g^T H^{-1} g`` is below ``glm_tol``.
    stage1_levels : int
        Stage 1 runs on about this many evenly spaced levels of the largest
        grouping factor (when it has more than twice as many).
    stage1_gtol, stage1_ftol, stage1_max_iter : float, float, int
        L-BFGS-B settings of stage 1 (theta alone; a start only).
    subsample_decrement : float
        Newton decrement at which the joint fit on the stage-1 subsample stops.
    max_iter : int
        Iteration limit of stage 2.
    tol : float
        Stage 2 stops when the Newton decrement is below it.
    max_scaled_theta : float
        Bound on ``|theta * rms|``: beyond it the random effects would move
        the linear predictor by ``exp(50)``, and nothing is estimable.
    boundary_tol : float
        A diagonal theta (scaled) at or below this sits on the boundary: the
        fit tries to leave it (restart).
    active_bound_tol : float
        A coordinate this close to a bound, with its gradient pointing out,
        is held at the bound by the quasi-Newton steps.
    restart_trials : tuple of float
        Scaled values tried for a variance stuck at 0 (eq. 7 step 4).
    max_restarts : int
        Restarts of stage 2 away from the boundary.
    restart_min_decrease : float
        Deviance decrease that makes a restart point worth taking.
    singular_tol : float
        A diagonal theta (scaled) below this is a singular (boundary) fit, as
        lme4's ``isSingular``.
    hessian_step : float
        Absolute step, in the scaled coordinates, of the finite-difference
        Hessian of the exact gradient.
    converged_decrement : float
        A fit is converged when the final Newton decrement is below this ...
    converged_gradient : float
        ... or, without a positive definite Hessian, its largest free
        gradient element (scaled coordinates) is below this.
    shard_rows : int or None
        Rows per shard of a problem's evaluation (shards hold whole levels of
        the outermost grouping factor); None evaluates all rows as one shard.
    """

    pirls_tol: float = 1e-10
    stationarity_tol: float = 1e-8
    pirls_max_iter: int = 200
    max_halvings: int = 30
    decrease_slack: float = 1e-14
    noise_step: float = 1e-8
    predicted_step_tol: float = 1e-7
    quadratic_regime: float = 1e-5
    quadratic_skip: float = 1e-3
    stalled_residual_tol: float = 1e-6
    glm_tol: float = 1e-20
    glm_max_iter: int = 100
    stage1_levels: int = 150
    stage1_gtol: float = 1e-3
    stage1_ftol: float = 1e-10
    stage1_max_iter: int = 200
    subsample_decrement: float = 1e-2
    max_iter: int = 500
    tol: float = 1e-10
    max_scaled_theta: float = 50.0
    boundary_tol: float = 1e-8
    active_bound_tol: float = 1e-10
    restart_trials: tuple = (0.3, 0.1, 0.03, 0.01, 0.003)
    max_restarts: int = 3
    restart_min_decrease: float = 1e-8
    singular_tol: float = 1e-4
    hessian_step: float = 1e-4
    converged_decrement: float = 1e-6
    converged_gradient: float = 1e-3
    shard_rows: int | None = None

    def as_dict(self) -> dict:
        """The controls as a plain dictionary (what a fit records)."""
        return dataclasses.asdict(self)


_INTEGER_FIELDS = {
    "pirls_max_iter",
    "max_halvings",
    "glm_max_iter",
    "stage1_levels",
    "stage1_max_iter",
    "max_iter",
    "max_restarts",
}


def make_controls(options: dict | None = None, **overrides) -> SolverControls:
    """:class:`SolverControls` from the defaults, a user's dictionary and explicit overrides.

    Parameters
    ----------
    options : dict or None
        ``{name: value}`` for any field of :class:`SolverControls` (an
        estimator's ``solver_options``).
    **overrides
        Values that win over ``options`` (an estimator's ``max_iter`` and
        ``tol``), skipped when None.

    Raises
    ------
    TypeError
        If ``options`` is not a dictionary or a value has the wrong type.
    ValueError
        If a name is unknown or a value is out of range.
    """
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise TypeError(
            f"solver_options must be a dict of control names to values; got {type(options).__name__}."
        )
    fields = {f.name for f in dataclasses.fields(SolverControls)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(f"solver_options has unknown name(s) {unknown}; known names are {sorted(fields)}.")
    values = dict(options)
    values.update({k: v for k, v in overrides.items() if v is not None})
    for name, value in values.items():
        values[name] = _checked(name, value)
    return SolverControls(**values)


def _checked(name: str, value):
    if name == "restart_trials":
        try:
            trials = tuple(float(t) for t in value)
        except TypeError:
            raise TypeError(
                f"solver_options['restart_trials'] must be a sequence of numbers; got {value!r}."
            ) from None
        if not trials or any(not t > 0 for t in trials):
            raise ValueError(f"solver_options['restart_trials'] must hold positive numbers; got {value!r}.")
        return trials
    if name == "shard_rows":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ValueError(
                f"solver_options['shard_rows'] must be None or a positive integer; got {value!r}."
            )
        return int(value)
    if name in _INTEGER_FIELDS:
        if isinstance(value, bool) or not isinstance(value, Integral):
            raise TypeError(f"solver_options[{name!r}] must be an integer; got {value!r}.")
        if value < 1:
            raise ValueError(f"solver_options[{name!r}] must be >= 1; got {value}.")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"solver_options[{name!r}] must be a number; got {value!r}.")
    if not value > 0:
        raise ValueError(f"solver_options[{name!r}] must be > 0; got {value}.")
    return float(value)
