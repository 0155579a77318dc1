"""The one GLM fitter: Newton's method with step halving for models without random effects.

It fits the optimiser's start (``theta = 0``, eq. 7 step 1), the estimators'
models without groups, and the zero-inflated Poisson GLM. A model is a
:class:`GLMLikelihood`: its log-likelihood kernel at a coefficient vector and
the gradient and information there. :class:`FamilyGLM` is one linear predictor
``eta = offset + X beta`` with a family's row kernel (Fisher scoring, which is
Newton's method for canonical links); the zero-inflated Poisson GLM
(:class:`~._zip.ZIPLikelihood`) has two.

Each step solves ``I delta = g`` with the information ``I`` (or the model's
fallback information where ``I`` is not positive definite), halves it until the
log-likelihood does not decrease, and the fit stops when the Newton decrement
``g^T I^{-1} g`` is below ``controls.glm_tol``. A step that cannot be solved or
that no halving makes an ascent step ends the fit with a note (never silently).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy.optimize import minimize_scalar

from ..families import Family
from ._controls import SolverControls

__all__ = ["GLMLikelihood", "FamilyGLM", "GLMFit", "fit_glm", "fit_glm_ml", "newton_direction"]


class GLMLikelihood(Protocol):
    """A model without random effects, for :func:`fit_glm`."""

    def initial(self) -> np.ndarray:
        """A first coefficient vector."""

    def loglik(self, coef: np.ndarray) -> float:
        """The log-likelihood up to a constant in the data (``nan`` outside the domain)."""

    def derivatives(self, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Gradient, information and a fallback information (or None) at ``coef``."""


@dataclass
class GLMFit:
    """A GLM at its maximum likelihood.

    Attributes
    ----------
    coef : ndarray
    information : ndarray
        The information the last step used, at ``coef``.
    converged : bool
    n_iter : int
        Newton steps, the first included.
    notes : list of str
        Fallbacks taken (a singular information, a stalled line search).
    """

    coef: np.ndarray
    information: np.ndarray
    converged: bool
    n_iter: int
    notes: list = field(default_factory=list)


class FamilyGLM:
    """One linear predictor ``eta = offset + X beta`` with a family's likelihood.

    The first coefficients are R's ``glm.fit`` start: a weighted least-squares
    fit of the working response at the family's ``starting_mu``; when that
    leaves the family's domain (a negative mean under the Gamma identity link),
    the constant fit, which is valid, so that step halving (a NaN
    log-likelihood never passes) keeps every later iterate valid.
    """

    def __init__(self, family: Family, X: np.ndarray, y: np.ndarray, w: np.ndarray, offset: np.ndarray):
        self.family, self.X, self.y, self.w, self.offset = family, X, y, w, offset
        self.kernel = family.row_kernel(y, w)

    def initial(self) -> np.ndarray:
        family, X, y, w, offset = self.family, self.X, self.y, self.w, self.offset
        eta0 = family.link.link(family.starting_mu(y))
        irls = family.irls_quantities(y, eta0, w)
        z = eta0 - offset + irls.score / np.where(irls.weights > 0, irls.weights, 1.0)
        beta = _weighted_lstsq(X, z, irls.weights)
        if not np.isfinite(self.loglik(beta)):
            constant = family.link.link(np.full_like(y, np.average(y, weights=w)))
            beta = _weighted_lstsq(X, constant - offset, w)
        return beta

    def loglik(self, coef: np.ndarray) -> float:
        return float(np.sum(self.kernel.loglik_rows(self.offset + self.X @ coef)[1]))

    def derivatives(self, coef: np.ndarray):
        eta = self.offset + self.X @ coef
        irls = self.kernel.irls(eta, self.family.link.inverse(eta))
        return self.X.T @ irls.score, (self.X.T * irls.weights) @ self.X, None


def newton_direction(information, gradient, fallback=None) -> tuple[np.ndarray, str | None]:
    """``information^{-1} gradient`` by Cholesky; the fallback information, then least
    squares, where it is not positive definite. Returns the direction and a note
    naming the fallback taken (None without one)."""
    for info, note in (
        (information, None),
        (fallback, ("the information was not positive definite; the step used the fallback information")),
    ):
        if info is None:
            continue
        ridge = 1e-12 * max(1.0, float(np.max(np.abs(np.diag(info))))) if info.size else 0.0
        try:
            L = np.linalg.cholesky(info + ridge * np.eye(info.shape[0]))
        except np.linalg.LinAlgError:
            continue
        return np.linalg.solve(L.T, np.linalg.solve(L, gradient)), note
    direction = np.linalg.lstsq(information, gradient, rcond=None)[0]
    return direction, "the information was singular; the step used least squares"


def fit_glm(likelihood: GLMLikelihood, controls: SolverControls, start: np.ndarray | None = None) -> GLMFit:
    """Maximise ``likelihood`` by Newton's method with step halving (see the module docstring)."""
    coef = likelihood.initial() if start is None else np.asarray(start, dtype=float)
    ll = likelihood.loglik(coef)
    notes: list[str] = []
    converged = False
    n_iter = 0
    info = None
    for n_iter in range(1, controls.glm_max_iter + 1):
        g, info, fallback = likelihood.derivatives(coef)
        direction, note = newton_direction(info, g, fallback)
        if note is not None and note not in notes:
            notes.append(note)
        decrement = float(g @ direction)
        if decrement < controls.glm_tol:
            converged = True
            break
        t = 1.0
        for _ in range(controls.max_halvings):
            ll_new = likelihood.loglik(coef + t * direction)
            if ll_new >= ll - controls.decrease_slack * abs(ll):
                break
            t *= 0.5
        else:
            # no ascent along the Newton direction: at the maximum to rounding
            # precision when the decrement is tiny, otherwise a failed fit
            converged = decrement < controls.converged_decrement
            if not converged:
                notes.append(f"the line search failed with Newton decrement {decrement:.2e}")
            else:
                # recorded, not warned about: the predicted gain is below rounding
                notes.append(
                    f"the line search stalled at Newton decrement {decrement:.2e}, below "
                    "converged_decrement: at the maximum to rounding precision"
                )
            break
        coef = coef + t * direction
        ll = ll_new
    else:
        notes.append(f"no convergence in {controls.glm_max_iter} Newton steps")
    return GLMFit(coef, info, converged, n_iter, notes)


def fit_glm_ml(family: Family, X, y, w, offset, controls: SolverControls) -> tuple[GLMFit, Family]:
    """Maximum likelihood of a GLM with its family's shape, if it has one.

    The shape (NB size, Gamma shape, Gaussian variance) is profiled: a bounded
    one-dimensional search over its log, beta refitted at each value.
    """
    fit = fit_glm(FamilyGLM(family, X, y, w, offset), controls)
    if not family.has_param:
        return fit, family
    mu = family.link.inverse(offset + X @ fit.coef)
    start = np.log(family.starting_param(y, mu, w, max(int(np.sum(w > 0)) - X.shape[1], 1)))
    lo, hi = family.param_bounds
    lo = start - 15.0 if lo is None else lo
    hi = start + 15.0 if hi is None else hi

    def negloglik(log_param):
        fam = family.with_param(float(np.exp(log_param)))
        coef = fit_glm(FamilyGLM(fam, X, y, w, offset), controls).coef
        return -fam.loglik(y, fam.link.inverse(offset + X @ coef), w)

    res = minimize_scalar(negloglik, bounds=(lo, hi), method="bounded", options={"xatol": 1e-9})
    fitted = family.with_param(float(np.exp(res.x)))
    final = fit_glm(FamilyGLM(fitted, X, y, w, offset), controls)
    if not res.success:
        final.notes.append(f"the search for {family.param_name} did not converge")
    final.converged = bool(final.converged and res.success)
    final.n_iter += int(res.nfev)
    return final, fitted


def _weighted_lstsq(X, z, weights):
    sw = np.sqrt(weights)
    return np.linalg.lstsq(X * sw[:, None], z * sw, rcond=None)[0]
