"""Refits for the parametric bootstrap: simulate from a fitted problem, fit again.

A replicate draws new random effects ``u ~ N(0, I)`` (and, for the linear
mixed model, new residuals) at the estimates, a response from the family at
the resulting means, and refits the same model to it by the solver
(:mod:`._optimize`), as lme4's ``bootMer`` with ``use.u = FALSE``. Replicates
are independent given their seeds, so they can run in any order or in
parallel. A refit that fails is reported, not dropped: it returns NaN
estimates and the reason (``Replicate``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ._lmm import LMMResult, fit_lmm
from ._optimize import FitResult, fit
from ._profile import sdcor_from_theta, theta_blocks

__all__ = ["Replicate", "bootstrap_replicate"]


@dataclass
class Replicate:
    """One bootstrap refit.

    Attributes
    ----------
    estimates : ndarray
        ``(sdcor, beta)`` in the engine's order; for the linear mixed model
        ``(sdcor on the response scale, sigma, beta)``. NaN when the refit failed.
    converged : bool
    error : str or None
        Why the refit failed (an exception's message), if it did.
    """

    estimates: np.ndarray
    converged: bool
    error: str | None = None


def bootstrap_replicate(problem, result: FitResult, seed) -> Replicate:
    """Simulate a response from ``problem`` at ``result``'s estimates with ``seed`` and refit."""
    rng = np.random.default_rng(seed)
    blocks = theta_blocks(problem)
    lmm = isinstance(result, LMMResult)
    size = problem.n_theta + int(lmm) + np.size(result.coef)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if lmm:
                boot = problem.with_response(
                    problem.simulate_response(result.theta, result.coef, result.sigma, rng)
                )
                refit = fit_lmm(boot)
                s = sdcor_from_theta(refit.theta, blocks)
                s[problem.theta_diagonal] *= refit.sigma
                return Replicate(np.concatenate([s, [refit.sigma], refit.coef]), refit.converged)
            y = problem.simulate_response(result.theta, result.coef, result.param, rng)
            refit = fit(problem.with_response(y), compute_hessian=False)
            return Replicate(
                np.concatenate([sdcor_from_theta(refit.theta, blocks), refit.coef]), refit.converged
            )
    except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
        return Replicate(np.full(size, np.nan), False, f"{type(exc).__name__}: {exc}")
