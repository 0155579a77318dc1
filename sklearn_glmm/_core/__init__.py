"""The engine: penalised systems, PIRLS, the deviances of the models, the solver.

This package never imports scikit-learn or pandas, so it can be tested and
reused alone. What the estimators use:

- :func:`build_problem` -- the one place that chooses the engine for a model:
  the Laplace GLMM (one or several grouping factors, quadrature, zero
  inflation) or the exact linear mixed model;
- :func:`fit` (any problem) and :func:`fit_lmm` (the linear mixed model, with
  its profiled estimates); :func:`fit_glm` / :func:`fit_glm_ml` without random
  effects;
- :func:`make_controls` / :class:`SolverControls`: every tolerance by name;
- profiles (:class:`ProfileProblem`, :class:`LMMProfileProblem`) and bootstrap
  refits (:func:`bootstrap_replicate`).

The layout of the modules follows ``docs/theory.md``: ``_system`` (the
penalised system, eq. 2 and 14), ``_pirls`` (eq. 2), ``_gradient`` (eq. 4-6),
``_laplace`` (eq. 3), ``_agq`` (eq. 11-12), ``_zip`` (eq. 13), ``_lmm``
(eq. 8-10), ``_glm`` and ``_optimize`` (eq. 7), ``_problem`` (the protocol).
"""

from __future__ import annotations

import numpy as np

from ..families import Family
from ._controls import SolverControls, make_controls
from ._glm import FamilyGLM, GLMFit, fit_glm, fit_glm_ml
from ._laplace import CoreTerm, LaplaceProblem
from ._lmm import LMMProblem, LMMResult, fit_lmm
from ._optimize import FitResult, fit
from ._parallel import ShardRunner
from ._problem import Evaluation, InferenceProblem, Problem, Start
from ._profile import LMMProfileProblem, ProfileProblem, sdcor_from_theta, theta_blocks
from ._refit import Replicate, bootstrap_replicate
from ._zip import ZIPLikelihood

__all__ = [
    "CoreTerm",
    "Evaluation",
    "FamilyGLM",
    "FitResult",
    "GLMFit",
    "InferenceProblem",
    "LMMProblem",
    "LMMProfileProblem",
    "LMMResult",
    "LaplaceProblem",
    "Problem",
    "ProfileProblem",
    "Replicate",
    "ShardRunner",
    "SolverControls",
    "Start",
    "ZIPLikelihood",
    "bootstrap_replicate",
    "build_problem",
    "fit",
    "fit_glm",
    "fit_glm_ml",
    "fit_lmm",
    "make_controls",
    "sdcor_from_theta",
    "theta_blocks",
]


def build_problem(
    family: Family,
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    offset: np.ndarray,
    terms: list[CoreTerm],
    controls: SolverControls,
    *,
    exact_gaussian: bool = False,
    reml: bool = True,
    n_agq: int = 1,
    X_zi: np.ndarray | None = None,
    runner: ShardRunner | None = None,
):
    """The problem of a model with random effects: the one place the engine is chosen.

    Parameters
    ----------
    family : Family
    X, y, weights, offset
        Fixed design (intercept included), response, prior weights, offset.
    terms : list of CoreTerm
        The random-effects terms, most levels first.
    controls : SolverControls
    exact_gaussian : bool, default=False
        The linear mixed model's exact profiled likelihood (``reml`` or ML)
        instead of the Laplace deviance.
    n_agq : int, default=1
        Adaptive Gauss-Hermite quadrature points (1: Laplace).
    X_zi : ndarray or None
        Zero-inflation design of a zero-inflated Poisson model.
    runner : ShardRunner or None
        The threads that evaluate the Laplace problem's shards (None: the
        calling thread). The linear mixed model's evaluations cost
        ``O(levels)`` after one pass over the rows and run in the calling
        thread.
    """
    if exact_gaussian:
        return LMMProblem(X, y, weights, offset, terms, controls, reml)
    return LaplaceProblem(
        family, X, y, weights, offset, terms, controls, n_agq=n_agq, X_zi=X_zi, runner=runner
    )
