"""The Laplace deviance of a GLMM and its exact gradient in (theta, beta).

Model (one grouping factor, q random effects per level)::

    eta_i = offset_i + x_i^T beta + z_i^T Lambda(theta) u_{g(i)},   u_g ~ N(0, I_q)

The Laplace approximation to ``-2 log L(theta, beta)`` is (eq. 3 of
``docs/theory.md``; lme4's ``laplace()`` in ``predModule``)::

    D(theta, beta) = -2 sum_i w_i log p(y_i | mu_i*) + ||u*||^2 + sum_g log det A_g

with ``u*`` the conditional modes from :func:`~._pirls.pirls` and
``A_g = I + sum_{i in g} W_i zl_i zl_i^T`` built from the Fisher weights ``W``
at the modes (lme4's choice, also for non-canonical links).

Gradient (eq. 4-6). The first two terms are minimised over ``u`` at ``u*``, so
only their partial derivatives count (envelope theorem). The log-determinant
depends on ``theta`` directly and on ``eta`` through ``W``; ``eta`` moves with
``u*(theta, beta)``, whose derivative follows from the stationarity condition
``Lambda^T Z^T s(eta) = u`` by implicit differentiation, with the observed
information ``H_g = I + Lambda^T (sum Wobs z z^T) Lambda``. Writing

    h_i = zl_i^T A_g^{-1} zl_i,    c_i = W'_i h_i,    v_g = H_g^{-1} Lambda^T C_g

with ``C_g = sum c_i z_i``, ``T_g = sum s_i z_i``, ``M_g = sum W z z^T``,
``Mo_g = sum Wobs z z^T`` and ``R_g = Mo_g Lambda v_g``, the derivative with
respect to entry (r, c) of Lambda is::

    dD/dLambda = -2 T^T U + 2 S^T + C^T U + T^T V - R^T U,
    S = sum_g A_g^{-1} Lambda^T M_g

and with respect to beta::

    dD/dbeta = X^T (-2 s + c - Wobs * (zl . v_{g(i)}))

Everything is a handful of ``reduceat`` passes over the rows plus ``(G, q, q)``
array algebra (in Z coordinates: the row sums do not depend on theta), so a
gradient costs about as much as one PIRLS step.

Fast path: for a Poisson random intercept the rows enter only through group
sums of ``y`` and ``exp(offset + X beta)`` (:class:`_GroupSums`), so PIRLS and
the theta part of the gradient cost O(G) and a new beta one pass over the rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..design import lambda_from_theta, theta_index
from ..families import Family, PoissonFamily
from ._linalg import BlockCholesky, GroupIndex, row_order
from ._pirls import MAX_HALVINGS, PIRLS_MAX_ITER, PIRLS_TOL, PIRLSResult, TermRows, pirls_term

__all__ = ["LaplaceProblem", "LaplaceEvaluation", "OneTermTheta", "STAGE1_LEVELS", "shape_gradient"]

#: levels that stage 1 of the optimiser sees (see LaplaceProblem.stage1_problem)
STAGE1_LEVELS = 150


@dataclass
class LaplaceEvaluation:
    """One evaluation of the Laplace deviance.

    Attributes
    ----------
    deviance : float
        ``-2 log L`` under the Laplace approximation.
    grad_theta, grad_beta : ndarray or None
        Its gradient, when asked for.
    grad_param : float or None
        Its derivative in the family's extra parameter (NB size, Gamma
        shape), when the family has one and the gradient was asked for.
    modes : PIRLSResult
        The conditional modes and quantities at them.
    """

    deviance: float
    grad_theta: np.ndarray | None
    grad_beta: np.ndarray | None
    modes: PIRLSResult
    grad_param: float | None = None


def shape_gradient(family: Family, y, weights, eta, irls, h, zv) -> float:
    """d D / d phi for the family's extra parameter phi (NB size, Gamma shape), eq. 6b.

    The shape enters the likelihood directly, and the score and weights
    through V: ``d s / d phi = -s V_phi / V``, ``d W / d phi = -W V_phi / V``;
    ``h_i = zl_i^T A^{-1} zl_i`` and ``zv_i = zl_i^T v`` are the gradient's
    per-row quantities (eq. 4-6).
    """
    mu = irls.mu
    rel = family.variance_param_deriv(mu) / np.maximum(family.variance(mu), 1e-300)
    dlaplace = family.laplace_weights_param_deriv(y, eta, weights, irls)
    return (
        -2.0 * family.loglik_param_deriv(y, mu, weights)
        + float(np.dot(dlaplace, h))
        - float(np.dot(irls.score * rel, zv))
    )


class OneTermTheta:
    """Theta bookkeeping of a problem with one random-effects term.

    Needs ``theta_rows``, ``theta_cols`` (lme4's order, see ``theta_index``),
    ``q``, ``n_levels`` and the transposed term covariates ``ZT`` (q, n).
    """

    @property
    def n_theta(self) -> int:
        return self.theta_rows.size

    @property
    def theta_diagonal(self) -> np.ndarray:
        """Which theta elements are diagonal entries of Lambda (bounded below by 0)."""
        return self.theta_rows == self.theta_cols

    @property
    def theta_rms(self) -> np.ndarray:
        """Root-mean-square of the covariate each theta element multiplies (1 if zero).

        The optimiser scales theta by it, so that a slope on a covariate of
        scale 1e8 is as well conditioned as an intercept.
        """
        rms = np.sqrt(np.mean(self.ZT**2, axis=1))
        return np.where(rms > 0, rms, 1.0)[self.theta_rows]

    def lambda_(self, theta: np.ndarray) -> np.ndarray:
        return lambda_from_theta(theta, self.q)

    def random_effects(self, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Conditional modes on the link scale, ``b_g = Lambda u_g``: (G, q)."""
        return u @ self.lambda_(theta).T

    def zero_modes(self) -> np.ndarray:
        return np.zeros((self.n_levels, self.q))


class LaplaceProblem(OneTermTheta):
    """Data and family of one GLMM with a single random-effects term.

    Parameters
    ----------
    family : Family
    X : ndarray of shape (n, p)
        Fixed-effects design, intercept included.
    y, weights, offset : ndarray of shape (n,)
    codes : ndarray of shape (n,)
        Level of each row, ``0 .. n_levels - 1``.
    Z : ndarray of shape (n, q)
        Term covariates of each row.
    n_levels : int
    """

    def __init__(self, family: Family, X, y, weights, offset, codes, Z, n_levels: int):
        # Sort rows by group once, so that every group sum is a contiguous
        # reduction (see GroupIndex); nothing returned is per row, so the
        # order never leaks out. Data already sorted (a panel stored user by
        # user) is used as it is, without copies.
        # Per-row matrices are stored transposed (XT is p x n, ZT is q x n) so
        # that each covariate is one contiguous row; an F-ordered X is that
        # already.
        codes = np.asarray(codes)
        rows = row_order(codes)
        self.family = family
        self.XT = np.ascontiguousarray(rows(X).T)
        self.y = rows(y)
        self.weights = rows(weights)
        self.offset = rows(offset)
        self.codes = rows(codes)
        self.ZT = np.ascontiguousarray(rows(Z).T)
        self.n_levels = n_levels
        self.groups = GroupIndex(self.codes, n_levels)
        self.q = Z.shape[1]
        self.theta_rows, self.theta_cols = theta_index(self.q)
        self._constant = family.loglik_constant(self.y, self.weights)
        self._rows = TermRows(self.ZT, self.groups)
        self._kernel = family.row_kernel(self.y, self.weights)
        self._y_values = None
        # The Poisson random intercept needs only group sums (see _GroupSums)
        self._group_sums = (
            _GroupSums(self) if isinstance(family, PoissonFamily) and self._rows.intercept_only else None
        )

    @property
    def X(self) -> np.ndarray:
        """Fixed-effects design in row order of the sorted data, (n, p)."""
        return self.XT.T

    @property
    def Z(self) -> np.ndarray:
        """Term covariates in row order of the sorted data, (n, q)."""
        return self.ZT.T

    @property
    def theta_is_cheap(self) -> bool:
        """Whether evaluations that change only theta cost O(G) (Poisson random intercept)."""
        return self._group_sums is not None

    def stage1_problem(self, max_levels: int = STAGE1_LEVELS) -> LaplaceProblem:
        """The same model on ``max_levels`` evenly spaced levels (itself when it has few more).

        Stage 1 of :func:`~._optimize.fit_laplace` only finds a start for
        theta; on a few hundred levels that start is as good to within the
        sampling error of theta (a few per cent), which stage 2's Newton steps
        on all the data remove in an iteration or two, at a small fraction of
        the cost. Rows are sorted by level, so the selected rows are gathered
        once.
        """
        G = self.n_levels
        if G <= 2 * max_levels:
            return self
        keep = np.unique(np.linspace(0, G - 1, max_levels).round().astype(np.intp))
        mask = np.zeros(G, dtype=bool)
        mask[keep] = True
        rows = self.groups.expand(mask)
        new_code = np.cumsum(mask) - 1
        return LaplaceProblem(
            self.family, self.XT[:, rows].T, self.y[rows], self.weights[rows], self.offset[rows],
            new_code[self.codes[rows]], self.ZT[:, rows].T, keep.size,
        )


    def family_at(self, param: float | None) -> Family:
        """The family with its extra parameter set (itself when ``param`` is None)."""
        return self.family if param is None else self.family.with_param(param)

    def _constant_at(self, family: Family) -> float:
        """``loglik_constant`` at the family's parameter.

        When it is a weighted sum over rows of a function of y alone (NB,
        Gamma), it is summed over the distinct values of y with their summed
        weights: counts take few values, so the gammas cost O(distinct y), not
        O(n), for each new parameter value.
        """
        if not getattr(family, "constant_linear_in_weights", False):
            return family.loglik_constant(self.y, self.weights)
        if self._y_values is None:
            values, inverse = np.unique(self.y, return_inverse=True)
            self._y_values = (values, np.bincount(inverse.ravel(), weights=self.weights, minlength=values.size))
        values, weight_sums = self._y_values
        if 4 * values.size > self.y.size:
            return family.loglik_constant(self.y, self.weights)
        return family.loglik_constant(values, weight_sums)

    def _row_kernel(self, family: Family):
        return self._kernel if family is self.family else family.row_kernel(self.y, self.weights)

    def modes(self, theta, beta, u0, param: float | None = None) -> PIRLSResult:
        """Conditional modes at (theta, beta[, param]), warm-started from ``u0``."""
        family = self.family_at(param)
        eta_fixed = self.offset + beta @ self.XT
        return pirls_term(self._row_kernel(family), eta_fixed, self._rows, self.lambda_(theta), u0)

    def evaluate(
        self, theta, beta, u0, gradient: bool = True, param: float | None = None, predicted: bool = False
    ) -> LaplaceEvaluation:
        """Laplace deviance (and gradient) at (theta, beta[, param]).

        ``predicted=True`` says that ``u0`` comes from :meth:`mode_derivative`
        (accurate to second order), so PIRLS may stop after one small Newton
        step (see :func:`~._pirls.pirls_term`).
        """
        theta, beta = np.asarray(theta, dtype=float), np.asarray(beta, dtype=float)
        if self._group_sums is not None and param is None:
            return self._group_sums.evaluate(theta, beta, u0, gradient)
        family = self.family_at(param)
        constant = self._constant if param is None else self._constant_at(family)
        lam = self.lambda_(theta)
        eta_fixed = self.offset + beta @ self.XT
        fit = pirls_term(
            self._row_kernel(family), eta_fixed, self._rows, lam, u0, first_step_tol=1e-7 if predicted else None
        )
        del eta_fixed
        # pdev = -2 loglik kernel + ||u||^2; add the constant back for the full scale
        deviance = fit.pdev - 2.0 * constant + fit.chol.logdet()
        if not gradient:
            return LaplaceEvaluation(deviance, None, None, fit)
        grad_theta, grad_beta, grad_param = self._gradient(lam, fit, family)
        return LaplaceEvaluation(deviance, grad_theta, grad_beta, fit, grad_param)

    def _gradient(self, lam, fit: PIRLSResult, family: Family):
        # eq. 4-6 in Z coordinates: zl_i = Lambda^T z_i, so the sums over rows
        # are the theta-free ones of TermRows and Lambda enters as (q, q) algebra
        rows, q = self._rows, self.q
        irls, U = fit.irls, fit.u
        Ainv = fit.chol.inverse()  # (G, q, q)
        # h_i = zl_i^T A_g^{-1} zl_i = z_i^T (Lambda A_g^{-1} Lambda^T) z_i
        h = rows.quadratic(lam @ Ainv @ lam.T)
        dW = irls.laplace_weights_deriv
        c = (self._row_kernel(family).weights_deriv(irls) if dW is None else dW) * h
        del dW
        if not family.has_param:
            del h  # (the family's parameter needs it below)
        T = rows.sums(irls.score) if fit.T is None else fit.T
        C = rows.sums(c)
        M = rows.outer(irls.laplace_weights) if fit.M is None else fit.M
        if irls.hessian_weights is irls.laplace_weights:
            # the log-determinant uses the observed information (canonical link,
            # or an exact Laplace): the implicit-derivative system is A itself
            Mo, Hchol = M, fit.chol
        else:
            Mo = rows.outer(irls.hessian_weights)
            Hchol = BlockCholesky(np.eye(q) + lam.T @ Mo @ lam)
        V = Hchol.solve(C @ lam)  # rows: H_g^{-1} Lambda^T C_g
        # (matrix products over the (G, q, q) stacks: a three-operand einsum
        # takes numpy's slow unoptimised path)
        R = (Mo @ (V @ lam.T)[:, :, None])[:, :, 0]
        S = (Ainv @ lam.T @ M).sum(axis=0)
        dlam = -2.0 * T.T @ U + 2.0 * S.T + C.T @ U + T.T @ V - R.T @ U
        grad_theta = dlam[self.theta_rows, self.theta_cols]
        # dD/dbeta = X^T (-2 s + c - Wobs zv), accumulated in place (one
        # per-row array at a time on top of the modes' own)
        r = irls.score * -2.0
        r += c
        del c
        zv = rows.dot(V @ lam.T)
        grad_param = None
        if family.has_param:
            # eq. 6b: the shape enters the likelihood directly, and the score and
            # weights through V: d s / d phi = -s V_phi / V, d W / d phi = -W V_phi / V
            grad_param = shape_gradient(family, self.y, self.weights, fit.eta, irls, h, zv)
            del h
        zv *= irls.hessian_weights
        r -= zv
        del zv
        grad_beta = self.XT @ r
        return grad_theta, grad_beta, grad_param

    def mode_derivative(self, theta, modes, dtheta, dbeta) -> np.ndarray | None:
        """Directional derivative of the modes ``u*`` at (theta, beta): (G, q).

        From the stationarity condition ``Lambda^T sum_i z_i s_i = u`` (eq. 5):
        ``H du = dLambda^T T - Lambda^T Mo dLambda u - Lambda^T sum_i Wobs_i z_i
        (x_i . dbeta)`` with ``H = I + Lambda^T Mo Lambda``. ``u + h du`` is then
        the modes at the point a step ``h`` away to O(h^2): the start that lets
        the finite-difference Hessian's PIRLS stop after one step. None when
        ``modes`` lacks the per-row quantities (the Poisson intercept's group
        sums, where PIRLS costs O(G) anyway) or the implicit system is not A.
        """
        irls = getattr(modes, "irls", None) if isinstance(modes, PIRLSResult) else None
        if irls is None or modes.M is None or modes.T is None or irls.hessian_weights is not irls.laplace_weights:
            return None
        lam = self.lambda_(theta)
        dlam = lambda_from_theta(np.asarray(dtheta, dtype=float), self.q)
        u = modes.u
        rhs = modes.T @ dlam - ((modes.M @ (u @ dlam.T)[:, :, None])[:, :, 0]) @ lam
        if np.any(dbeta):
            rhs -= self._rows.sums(irls.hessian_weights * (dbeta @ self.XT)) @ lam
        return modes.chol.solve(rhs)

    def beta_information(self, theta, modes: PIRLSResult) -> np.ndarray:
        """Fisher information of beta with theta held fixed, at the modes.

        The Schur complement ``X^T W X - sum_g K_g^T A_g^{-1} K_g`` with
        ``K_g = sum_{i in g} W_i zl_i x_i^T``: the inverse is lme4's
        ``vcov(m, use.hessian = FALSE)`` (the ``RX`` factor of PIRLS).
        """
        W = modes.irls.weights
        ZlT = self.lambda_(theta).T @ self.ZT
        info = (self.XT * W) @ self.XT.T
        K = self.groups.outer_sums(W, ZlT, self.XT)  # (G, q, p)
        AinvK = np.stack([modes.chol.solve(K[:, :, j]) for j in range(K.shape[2])], axis=2)
        return info - np.einsum("gqa,gqb->ab", K, AinvK)


class _InterceptModes:
    """Conditional modes of a Poisson random intercept, from group sums.

    Carries what :class:`~._pirls.PIRLSResult` carries; the per-row ``eta``
    and ``irls`` are formed only when asked for (``beta_information``).
    """

    def __init__(self, problem, beta, lam, u, chol, pdev, n_iter, converged):
        self._problem, self._beta, self._lam = problem, beta, lam
        self.u, self.chol, self.pdev = u, chol, pdev
        self.n_iter, self.converged = n_iter, converged
        self.M = self.T = None
        self._eta = None

    @property
    def eta(self) -> np.ndarray:
        if self._eta is None:
            p = self._problem
            self._eta = p.offset + self._beta @ p.XT + p.groups.expand(self._lam * self.u[:, 0])
        return self._eta

    @property
    def irls(self):
        p = self._problem
        return p.family.irls_quantities(p.y, self.eta, p.weights)


class _GroupSums:
    """The Laplace deviance of a Poisson random intercept in O(G) per theta.

    With the log link, ``mu_i = m_i exp(b_g)`` with ``m_i = w_i exp(offset_i +
    x_i^T beta)`` (prior weights folded in), so for fixed beta the penalised
    deviance of group g depends on the rows only through ``Y_g = sum w_i y_i``
    and ``E_g = sum m_i``::

        pdev_g(u) = u^2 - 2 (lambda u Y_g - exp(lambda u) E_g)  (+ a constant in u)

    PIRLS becomes a scalar Newton iteration per group (the same Fisher-scoring
    steps and halving as :func:`~._pirls.pirls_term`), and the gradient of
    eq. 4-6 reduces to group sums, except for ``dD/dbeta = X^T (m exp(b_g)
    (2 + h_g - lambda v_g)) - 2 X^T (w y)``. One pass over the rows per new
    beta (``exp`` and a sum) and one for the beta gradient: stage 1, which
    holds beta fixed, and the theta direction of the Hessian cost O(G).
    """

    def __init__(self, problem: LaplaceProblem):
        self.problem = problem
        w, y = problem.weights, problem.y
        self.unit = bool(np.all(w == 1.0))
        self.wy = y if self.unit else w * y
        self.Y = problem.groups.sum(self.wy)
        self.XTwy = problem.XT @ self.wy
        self._key = None

    def _beta_sums(self, beta):
        """``m``, ``E_g`` and ``sum w y (offset + X beta)`` at beta, cached for the last beta."""
        key = beta.tobytes()
        if key != self._key:
            p = self.problem
            eta_fixed = p.offset + beta @ p.XT
            K = float(np.dot(self.wy, eta_fixed))
            m = np.exp(eta_fixed, out=eta_fixed)
            if not self.unit:
                m *= p.weights
            self._key, self._m, self._E, self._K = key, m, p.groups.sum(m), K
        return self._m, self._E, self._K

    def _modes(self, lam, E, u0):
        Y = self.Y
        u = u0[:, 0].copy()

        def pdev_of(u):
            b = lam * u
            return u * u - 2.0 * (b * Y - np.exp(b) * E)

        pdev = pdev_of(u)
        pdev0 = pdev_of(np.zeros_like(u))
        reset = ~(pdev <= pdev0)  # a warm start worse than 0 (see pirls_term)
        u[reset], pdev[reset] = 0.0, pdev0[reset]
        converged = False
        n_iter = 0
        for n_iter in range(1, PIRLS_MAX_ITER + 1):
            Wg = np.exp(lam * u) * E
            delta = (lam * (Y - Wg) - u) / (1.0 + lam * lam * Wg)
            size = np.abs(delta)
            step = np.ones_like(u)
            u_new = u + delta
            pdev_new = pdev_of(u_new)
            bad = ~(pdev_new <= pdev + 1e-14 * np.abs(pdev)) & (size > 1e-8)
            for _ in range(MAX_HALVINGS):
                if not np.any(bad):
                    break
                step[bad] *= 0.5
                u_new = u + step * delta
                pdev_new = pdev_of(u_new)
                bad = ~(pdev_new <= pdev + 1e-14 * np.abs(pdev)) & (size * step > 1e-8)
            step[bad] = 0.0
            u_new = u + step * delta
            u, pdev = u_new, pdev_of(u_new)
            if np.max(size * step) < PIRLS_TOL:
                converged = not np.any(bad)
                break
        if not converged:
            Wg = np.exp(lam * u) * E
            residual = (lam * (Y - Wg) - u) / (1.0 + lam * lam * Wg)
            converged = bool(np.max(np.abs(residual)) < 1e-6)
        return u, n_iter, converged

    def evaluate(self, theta, beta, u0, gradient):
        p = self.problem
        lam = float(theta[0])
        m, E, K = self._beta_sums(beta)
        u, n_iter, converged = self._modes(lam, E, u0)
        b = lam * u
        eb = np.exp(b)
        Wg = eb * E
        A = 1.0 + lam * lam * Wg
        chol = BlockCholesky(A[:, None, None])
        pdev = float(np.dot(u, u)) - 2.0 * (K + float(np.dot(b, self.Y)) - float(np.sum(Wg)))
        deviance = pdev - 2.0 * p._constant + chol.logdet()
        modes = _InterceptModes(p, beta, lam, u[:, None], chol, pdev, n_iter, converged)
        if not gradient:
            return LaplaceEvaluation(deviance, None, None, modes)
        # eq. 4-6 with q = 1 and z = 1: T = Y - W, M = W, h = lambda^2 / A,
        # C = h W, v = lambda C / A, R = lambda W v, S = sum lambda W / A
        Ainv = 1.0 / A
        T = self.Y - Wg
        h = lam * lam * Ainv
        C = h * Wg
        V = lam * C * Ainv
        R = lam * Wg * V
        S = lam * float(np.dot(Ainv, Wg))
        dlam = float(np.dot(-2.0 * T + C - R, u)) + 2.0 * S + float(np.dot(T, V))
        factor = eb * (2.0 + h - lam * V)
        grad_beta = p.XT @ (m * p.groups.expand(factor)) - 2.0 * self.XTwy
        return LaplaceEvaluation(deviance, np.array([dlam]), grad_beta, modes)
