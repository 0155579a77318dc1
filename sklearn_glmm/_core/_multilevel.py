"""The Laplace deviance and its exact gradient with several grouping factors.

The model of :mod:`._laplace` with ``K`` random-effects terms::

    eta_i = offset_i + x_i^T beta + sum_k z_ik^T Lambda_k u_{k, g_k(i)}

Crossed (``(1 | subject) + (1 | item)``), nested (``(1 | clinic) +
(1 | clinic:user)``) and uncorrelated terms (a ``Lambda_k`` with structural
zeros: ``(1 + x || user)``) all fit this form. The deviance and gradient are
those of ``docs/theory.md`` eq. 3-6 with the block-diagonal algebra replaced by
:mod:`._blocked`. For term k and entry (r, c) of ``Lambda_k`` the gradient is::

    dD/dLambda_k = (-2 T_k + C_k - R_k)^T U_k + T_k^T V_k + 2 sum_i W_i z_ik P_ik^T

with, per level of term k, ``T = sum s z``, ``C = sum c z``, ``R = sum Wo (zl . v) z``
(``c_i = W'_i zl_i^T A^{-1} zl_i``, ``v = H^{-1} Lambda^T Z^T c``), and ``P_ik`` the part
of ``A^{-1} zl_i`` on row i's own level of term k. With one term this is the
formula of :mod:`._laplace`, which stays the fast path for one grouping factor.

:class:`MultiLevelLaplaceProblem` has the interface :func:`._optimize.fit_laplace`
expects; its modes ``u`` are one flat vector (see
:class:`._blocked.RandomEffectsLayout`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from ..families import Family, IRLSQuantities
from ._blocked import BlockedFactor, RandomEffectsLayout
from ._linalg import row_order, rowdot
from ._laplace import STAGE1_LEVELS, LaplaceEvaluation, shape_gradient
from ._pirls import MAX_HALVINGS, PIRLS_MAX_ITER, PIRLS_TOL

__all__ = ["CoreTerm", "MultiLevelLaplaceProblem", "MultiLevelModes", "TermsParameters", "lambda_inverse_blocks"]


@dataclass
class CoreTerm:
    """One random-effects term as the core needs it.

    Attributes
    ----------
    codes : ndarray of shape (n,)
        Level of each row, ``0 .. n_levels - 1``.
    Z : ndarray of shape (n, q)
        Term covariates of each row.
    n_levels : int
    theta_rows, theta_cols : ndarray
        Position in ``Lambda`` of each of the term's theta elements (a full
        lower triangle, or only some entries for uncorrelated terms).
    """

    codes: np.ndarray
    Z: np.ndarray
    n_levels: int
    theta_rows: np.ndarray
    theta_cols: np.ndarray


@dataclass
class MultiLevelModes:
    """Conditional modes and the quantities at them (cf. ``PIRLSResult``)."""

    u: np.ndarray
    eta: np.ndarray
    irls: IRLSQuantities
    chol: BlockedFactor
    pdev: float
    n_iter: int
    converged: bool


def lambda_inverse_blocks(
    factor: BlockedFactor, lams: list[np.ndarray], scale: float = 1.0
) -> list[np.ndarray]:
    """``scale * Lambda_k (A^{-1})_{kg,kg} Lambda_k^T`` for every term and level.

    The diagonal blocks of ``A^{-1}`` (one per level of each term, from the
    selected inverse of ``factor``) mapped to the random-effects scale: lme4's
    ``condVar``. Returns a list of (G_k, q_k, q_k) arrays.
    """
    inv11, _, inv22 = factor.selected_inverse()
    lay = factor.layout
    blocks = [inv11]
    for k in range(1, lay.n_terms):
        G, q = lay.n_levels[k], lay.q[k]
        idx = (lay.starts[k] - lay.n_block) + np.arange(G)[:, None] * q + np.arange(q)
        blocks.append(inv22[idx[:, :, None], idx[:, None, :]])
    return [scale * np.einsum("ab,gbc,dc->gad", lam, block, lam) for lam, block in zip(lams, blocks)]


def _objective(family, y, w, eta, mu, u) -> float:
    return -2.0 * family.loglik_kernel(y, eta, mu, w) + float(np.dot(u, u))


def pirls_multilevel(family, y, w, eta_fixed, layout: RandomEffectsLayout, ZlT, u0) -> MultiLevelModes:
    """PIRLS with step halving, as :func:`._pirls.pirls`, for several terms."""
    inverse = family.link.inverse
    u = u0.copy()
    eta = eta_fixed + layout.expand_dot(ZlT, u)
    mu = inverse(eta)
    pdev = _objective(family, y, w, eta, mu, u)
    converged = False
    n_iter = 0
    irls = factor = None
    for n_iter in range(1, PIRLS_MAX_ITER + 1):
        irls = family.irls_quantities(y, eta, w, mu)
        factor = layout.factor(irls.weights, ZlT)
        delta = factor.solve(layout.cross_product(irls.score, ZlT) - u)
        if np.max(np.abs(delta)) < PIRLS_TOL:
            # u is the mode to within the tolerance: keep it, and the factor
            # at it (unlike the one-factor PIRLS, which takes the last tiny
            # step and factorises again; a factorisation is the costly part here)
            converged = True
            break
        step_eta = layout.expand_dot(ZlT, delta)
        step = 1.0
        for _ in range(MAX_HALVINGS):
            u_new = u + step * delta
            eta_new = eta + step * step_eta
            mu_new = inverse(eta_new)
            pdev_new = _objective(family, y, w, eta_new, mu_new, u_new)
            if pdev_new <= pdev + 1e-14 * abs(pdev):
                break
            step *= 0.5
        else:
            # no decrease possible: at the mode to rounding precision
            converged = bool(np.max(np.abs(delta)) < 1e-6)
            break
        u, eta, mu, pdev = u_new, eta_new, mu_new, pdev_new
        irls = None
    if irls is None:  # the loop ended on a step: quantities at the new u
        irls = family.irls_quantities(y, eta, w, mu)
        factor = None
    if factor is None or irls.laplace_weights is not irls.weights:
        factor = layout.factor(irls.laplace_weights, ZlT)
    return MultiLevelModes(u, eta, irls, factor, pdev, n_iter, converged)


class TermsParameters:
    """Theta bookkeeping shared by the several-factor problems (GLMM and LMM).

    ``_set_terms`` sets ``q``, ``layout``, ``theta_index`` (rows and columns of
    each term's theta in its ``Lambda``) and ``theta_slices`` (each term's part
    of the flat theta).
    """

    def _set_terms(self, terms: list[CoreTerm], sorted_codes: list[np.ndarray]) -> None:
        self.q = [t.Z.shape[1] for t in terms]
        self.layout = RandomEffectsLayout(sorted_codes, [int(t.n_levels) for t in terms], self.q)
        self.theta_index = [(np.asarray(t.theta_rows), np.asarray(t.theta_cols)) for t in terms]
        bounds = np.cumsum([0] + [r.size for r, _ in self.theta_index])
        self.theta_slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]

    @property
    def n_theta(self) -> int:
        return self.theta_slices[-1].stop

    @property
    def theta_diagonal(self) -> np.ndarray:
        """Which theta elements are diagonal entries of a ``Lambda_k`` (bounded below by 0)."""
        return np.concatenate([r == c for r, c in self.theta_index])

    def lambda_(self, theta: np.ndarray) -> list[np.ndarray]:
        """``Lambda_k`` of every term."""
        out = []
        for q, (rows, cols), sl in zip(self.q, self.theta_index, self.theta_slices):
            lam = np.zeros((q, q))
            lam[rows, cols] = theta[sl]
            out.append(lam)
        return out

    def random_effects(self, theta: np.ndarray, u: np.ndarray) -> list[np.ndarray]:
        """``b_k = U_k Lambda_k^T`` for every term: list of (G_k, q_k)."""
        return [U @ lam.T for U, lam in zip(self.layout.split(u), self.lambda_(theta))]


class MultiLevelLaplaceProblem(TermsParameters):
    """Data and family of a GLMM with several random-effects terms.

    Parameters
    ----------
    family : Family
    X : ndarray of shape (n, p)
    y, weights, offset : ndarray of shape (n,)
    terms : list of CoreTerm
        The first term is kept block diagonal: pass the one with most levels
        first (the others make up a dense block, see :mod:`._blocked`).
    """

    def __init__(self, family: Family, X, y, weights, offset, terms: list[CoreTerm]):
        rows = row_order(terms[0].codes)
        self.family = family
        self.XT = np.ascontiguousarray(rows(X).T)
        self.y = rows(y)
        self.weights = rows(weights)
        self.offset = rows(offset)
        self.ZT = [np.ascontiguousarray(rows(t.Z).T) for t in terms]
        self.codes = [rows(np.asarray(t.codes)) for t in terms]
        self.n_levels = [int(t.n_levels) for t in terms]
        self._set_terms(terms, self.codes)
        self._constant = family.loglik_constant(self.y, self.weights)

    @property
    def X(self) -> np.ndarray:
        return self.XT.T

    @property
    def theta_rms(self) -> np.ndarray:
        parts = []
        for ZT, (rows, _) in zip(self.ZT, self.theta_index):
            rms = np.sqrt(np.mean(ZT**2, axis=1))
            parts.append(np.where(rms > 0, rms, 1.0)[rows])
        return np.concatenate(parts)

    def zero_modes(self) -> np.ndarray:
        return np.zeros(self.layout.size)

    def stage1_problem(self, max_levels: int = STAGE1_LEVELS) -> MultiLevelLaplaceProblem:
        """The same model on ``max_levels`` evenly spaced levels of the largest factor.

        As :meth:`._laplace.LaplaceProblem.stage1_problem`: stage 1 of
        :func:`~._optimize.fit_laplace` only needs a start. The rows of the kept
        levels keep every other factor's levels they meet (those factors are
        usually the small ones: days, items), recoded to the levels present.
        Itself when the largest factor has few more levels.
        """
        G = self.n_levels[0]
        if G <= 2 * max_levels:
            return self
        keep = np.unique(np.linspace(0, G - 1, max_levels).round().astype(np.intp))
        mask = np.zeros(G, dtype=bool)
        mask[keep] = True
        rows = self.layout.groups.expand(mask)
        terms = []
        for k, (codes, ZT, (th_rows, th_cols)) in enumerate(zip(self.codes, self.ZT, self.theta_index)):
            levels, new_codes = np.unique(codes[rows], return_inverse=True)
            terms.append(CoreTerm(new_codes, ZT[:, rows].T, levels.size, th_rows, th_cols))
        return MultiLevelLaplaceProblem(
            self.family, self.XT[:, rows].T, self.y[rows], self.weights[rows], self.offset[rows], terms
        )

    def family_at(self, param: float | None) -> Family:
        return self.family if param is None else self.family.with_param(param)

    def linear_predictor(self, theta: np.ndarray, beta: np.ndarray, u: np.ndarray) -> np.ndarray:
        """``eta = offset + X beta + sum_k Z_k Lambda_k u_k`` in this problem's row order.

        With ``u ~ N(0, I)`` this draws the linear predictor of a new sample
        from the model (the parametric bootstrap's first step).
        """
        return self.offset + beta @ self.XT + self.layout.expand_dot(self._zl(self.lambda_(theta)), u)

    def with_response(self, y: np.ndarray) -> "MultiLevelLaplaceProblem":
        """The same design with another response ``y`` (in this problem's row order).

        The layout and the per-row matrices are shared, not copied.
        """
        other = copy.copy(self)
        other.y = np.asarray(y, dtype=float)
        other._constant = self.family.loglik_constant(other.y, self.weights)
        return other

    def _zl(self, lams) -> list[np.ndarray]:
        return [lam.T @ ZT for lam, ZT in zip(lams, self.ZT)]

    def modes(self, theta, beta, u0, param: float | None = None) -> MultiLevelModes:
        ZlT = self._zl(self.lambda_(theta))
        return pirls_multilevel(
            self.family_at(param), self.y, self.weights, self.offset + beta @ self.XT, self.layout, ZlT, u0
        )

    def evaluate(self, theta, beta, u0, gradient: bool = True, param: float | None = None) -> LaplaceEvaluation:
        """Laplace deviance (and gradient) at (theta, beta[, param])."""
        family = self.family_at(param)
        constant = self._constant if param is None else family.loglik_constant(self.y, self.weights)
        lams = self.lambda_(theta)
        ZlT = self._zl(lams)
        fit = pirls_multilevel(family, self.y, self.weights, self.offset + beta @ self.XT, self.layout, ZlT, u0)
        deviance = fit.pdev - 2.0 * constant + fit.chol.logdet()
        if not gradient:
            return LaplaceEvaluation(deviance, None, None, fit)
        grad_theta, grad_beta, grad_param = self._gradient(lams, ZlT, fit, family)
        return LaplaceEvaluation(deviance, grad_theta, grad_beta, fit, grad_param)

    def _gradient(self, lams, ZlT, fit: MultiLevelModes, family: Family):
        lay, ZT, irls = self.layout, self.ZT, fit.irls
        P = fit.chol.row_solutions(ZlT)
        h = sum(rowdot(zl, p) for zl, p in zip(ZlT, P))
        c = irls.laplace_weights_deriv * h
        if irls.hessian_weights is irls.laplace_weights:
            Hfac = fit.chol
        else:
            Hfac = lay.factor(irls.hessian_weights, ZlT)
        v = Hfac.solve(lay.cross_product(c, ZlT))
        zv = lay.expand_dot(ZlT, v)
        T = lay.term_sums(irls.score, ZT)
        C = lay.term_sums(c, ZT)
        R = lay.term_sums(irls.hessian_weights * zv, ZT)
        U, V = lay.split(fit.u), lay.split(v)
        grad_theta = np.empty(self.n_theta)
        for k, ((rows, cols), sl) in enumerate(zip(self.theta_index, self.theta_slices)):
            S = (ZT[k] * irls.laplace_weights) @ P[k].T  # sum_i W_i z_ik P_ik^T
            dlam = (-2.0 * T[k] + C[k] - R[k]).T @ U[k] + T[k].T @ V[k] + 2.0 * S
            grad_theta[sl] = dlam[rows, cols]
        grad_beta = self.XT @ (-2.0 * irls.score + c - irls.hessian_weights * zv)
        grad_param = None
        if family.has_param:
            grad_param = shape_gradient(family, self.y, self.weights, fit.eta, irls, h, zv)
        return grad_theta, grad_beta, grad_param

    def conditional_covariances(self, theta, beta, u, dispersion: float = 1.0, param=None) -> list[np.ndarray]:
        """``Var(b_{k,g} | y) ~= Lambda_k (A^{-1})_{kg,kg} Lambda_k^T`` per term: list of (G_k, q_k, q_k).

        lme4's ``condVar``: the diagonal blocks of ``A^{-1}`` at the modes.
        """
        modes = self.modes(theta, beta, u, param)
        return lambda_inverse_blocks(modes.chol, self.lambda_(theta), dispersion)

    def beta_information(self, theta, modes: MultiLevelModes) -> np.ndarray:
        """Fisher information of beta with theta fixed: ``X^T W X - K^T A^{-1} K``."""
        W = modes.irls.weights
        ZlT = self._zl(self.lambda_(theta))
        K = np.column_stack([self.layout.cross_product(W * x, ZlT) for x in self.XT])
        return (self.XT * W) @ self.XT.T - K.T @ modes.chol.solve_many(K)
