"""Exponential-family distributions for GLMMs.

Interface (informal)
--------------------
A :class:`Family` couples a distribution with a :class:`~sklearn_glmm.families.Link`
and offers, element-wise on float64 arrays (``w`` are prior weights):

``variance(mu)``, ``variance_deriv(mu)``  Var(y | mu) / w-free, and its d/dmu; for
                                          families with a shape (NB size, Gamma
                                          shape, Gaussian sigma^2) it includes it
``unit_variance(mu)``                     V(mu) without the dispersion (Pearson
                                          residuals as lme4 defines them)
``unit_deviance(y, mu)``                  d(y, mu) >= 0, with d(y, y) = 0
``loglik(y, mu, w)``                      sum of w * log p(y | mu), all constants kept
``loglik_kernel(y, eta, mu, w)``          the part of ``loglik`` that depends on mu;
``loglik_constant(y, w)``                 the rest (once per fit, or per value of
                                          the shape), so ``loglik = kernel + constant``
``check_response(y)``                     raises ``ValueError`` for impossible y
``sample(mu, w, rng)``                    draws a response (for ``simulate`` and the
                                          parametric bootstrap)
``irls_quantities(y, eta, w)``            everything PIRLS and the Laplace gradient
                                          need, computed once per evaluation
``row_kernel(y, w)``                      a :class:`RowKernel` bound to (y, w): the
                                          per-row log-likelihood kernel and the IRLS
                                          quantities in as few passes over the rows
                                          as the family allows (PIRLS's hot path)

Families with one extra parameter (``has_param``; NB size, Gamma shape, Gaussian
variance) also give ``param``, ``with_param(value)``, ``starting_param(...)``,
``param_bounds`` (on the log scale), ``loglik_param_rows(y, mu, w)`` (each row's
w d loglik / d param) and ``variance_param_deriv(mu)`` (d variance / d param). The
Laplace engine estimates the parameter jointly with the others, as glmmTMB does.

The log-likelihood keeps every normalising constant (``gammaln``) so that the
Laplace deviance is on lme4's scale: ``-2 * loglik`` is what ``glmer`` reports.
"""

from __future__ import annotations

import numpy as np
from scipy.special import betaln, digamma, gammaln, xlogy

from ._link import _MAX_ETA, Link, LogitLink, LogLink, get_link

__all__ = [
    "Family",
    "PoissonFamily",
    "BinomialFamily",
    "NegativeBinomialFamily",
    "GammaFamily",
    "GaussianFamily",
    "IRLSQuantities",
    "get_family",
]

# keeps V(mu) away from 0 where mu rounds to a boundary (lme4 clamps mu likewise)
_TINY = 1e-300


def weighted_log_factorial_sum(y: np.ndarray, w: np.ndarray) -> float:
    """``sum_i w_i log(y_i!)``, through the counts of each value when ``y`` holds small integers.

    Counts take one pass of ``bincount`` instead of a log-gamma per row; other
    ``y`` (non-integers, values above 2**20) take the log-gamma per row.
    """
    y = np.asarray(y, dtype=float)
    if y.size >= 4096:
        top = float(np.max(y))
        if 0.0 <= top < 2.0**20:
            values = y.astype(np.int64)
            if float(np.min(values)) >= 0 and np.array_equal(values, y):
                weight_sums = np.bincount(values, weights=w)
                return float(np.dot(weight_sums, gammaln(np.arange(weight_sums.size) + 1.0)))
    return float(np.dot(w, gammaln(y + 1.0)))


class IRLSQuantities:
    """Per-observation quantities at one linear predictor ``eta``.

    Attributes
    ----------
    mu : ndarray
        Mean ``g^{-1}(eta)``.
    score : ndarray
        ``d loglik_i / d eta_i = w (y - mu) mu_eta / V``.
    weights : ndarray
        Fisher (IRLS) weights ``w mu_eta^2 / V``; lme4 uses these in the
        log-determinant of the Laplace approximation.
    weights_deriv : ndarray
        ``d weights / d eta``.
    hessian_weights : ndarray
        Observed information ``-d score / d eta``; the same array as
        ``weights`` for canonical links.
    laplace_weights, laplace_weights_deriv : ndarray
        The weights in the log-determinant of the Laplace approximation and
        their d/deta: ``weights`` (Fisher, lme4's choice) or
        ``hessian_weights`` (observed, the exact Laplace of glmmTMB), as the
        family's ``laplace`` attribute says (default: ``weights``).
    """

    # a plain class with slots: PIRLS makes one per iteration, and a frozen
    # dataclass costs several times as much to build for small problems
    __slots__ = (
        "mu",
        "score",
        "weights",
        "weights_deriv",
        "hessian_weights",
        "laplace_weights",
        "laplace_weights_deriv",
    )

    def __init__(
        self,
        mu,
        score,
        weights,
        weights_deriv,
        hessian_weights,
        laplace_weights=None,
        laplace_weights_deriv=None,
    ):
        self.mu, self.score, self.weights, self.weights_deriv = mu, score, weights, weights_deriv
        self.hessian_weights = hessian_weights
        if laplace_weights is None:
            laplace_weights, laplace_weights_deriv = weights, weights_deriv
        self.laplace_weights, self.laplace_weights_deriv = laplace_weights, laplace_weights_deriv


class RowKernel:
    """Per-row pieces of PIRLS for one family, bound to ``y`` and ``w``.

    ``loglik_rows(eta)`` returns ``(mu, ll)`` with ``ll_i`` the row's share of
    ``loglik_kernel`` (so ``ll.sum() == loglik_kernel(y, eta, mu, w)``), and
    ``irls(eta, mu)`` the :class:`IRLSQuantities` at ``eta``. This generic
    version calls the family's own methods; the canonical Poisson and logit
    kernels below fuse them, and skip the multiplications by ``w`` when all
    prior weights are 1 (every row of the hot path is touched once per pass,
    so each pass saved is a few per cent of a fit).
    """

    #: whether PIRLS's steps are Newton steps (canonical link: Fisher = observed
    #: information; or steps taken with the observed weights), so that PIRLS
    #: converges quadratically
    newton = False
    #: whether PIRLS steps with the Laplace weights (observed information,
    #: when it is positive) instead of the Fisher weights
    step_with_laplace_weights = False

    def __init__(self, family, y, w):
        self.family, self.y, self.w = family, y, w

    def loglik_rows(self, eta):
        mu = self.family.link.inverse(eta)
        ll = self.family.kernel_terms(self.y, eta, mu)
        ll *= self.w
        return mu, ll

    def irls(self, eta, mu):
        return self.family.irls_quantities(self.y, eta, self.w, mu)

    def weights_deriv(self, irls):
        """``d laplace_weights / d eta`` when ``irls`` left it out (None)."""
        return irls.laplace_weights_deriv

    def step_weights(self, irls):
        """The weights of PIRLS's steps, and fallback weights for levels whose
        block is not positive definite with them (None: always definite)."""
        return (irls.laplace_weights if self.step_with_laplace_weights else irls.weights), None

    def param_row_derivatives(self, irls, eta):
        """Per-row derivatives in the family's extra parameter at fixed eta (eq. 6b).

        Returns ``(dll, dL, ds)``: of the log-likelihood, of the Laplace weights
        and of the score. The shape enters the score and the weights through
        V: ``d s / d phi = -s V_phi / V``.
        """
        family, mu = self.family, irls.mu
        rel = family.variance_param_deriv(mu) / np.maximum(family.variance(mu), _TINY)
        dll = family.loglik_param_rows(self.y, mu, self.w)
        dL = family.laplace_weights_param_deriv(self.y, eta, self.w, irls)
        return dll, dL, -irls.score * rel


class _PoissonKernel(RowKernel):
    """Canonical log link: ``ll = w (y eta - mu)``, every weight ``w mu``."""

    newton = True

    def __init__(self, family, y, w):
        super().__init__(family, y, w)
        self.unit = bool(np.all(w == 1.0))
        self.wy = y if self.unit else w * y

    def loglik_rows(self, eta):
        if eta.size and float(eta.max()) > _MAX_ETA:
            eta = np.minimum(eta, _MAX_ETA)
        mu = np.exp(eta)
        ll = self.wy * eta
        ll -= mu if self.unit else self.w * mu
        return mu, ll

    def irls(self, eta, mu):
        wmu = mu if self.unit else self.w * mu
        return IRLSQuantities(mu, self.wy - wmu, wmu, wmu, wmu)


class _LogitKernel(RowKernel):
    """Canonical logit link: ``mu = 1 / (1 + exp(-eta))`` (relatively accurate in
    both tails) and ``ll = (y - 1) eta + log(mu)`` (= ``y eta - log(1 + e^eta)``),
    one ``exp`` and one ``log`` per row, no branches; eta is clipped to +-700
    only when it gets there, so neither overflows."""

    newton = True

    def __init__(self, family, y, w):
        super().__init__(family, y, w)
        self.unit = bool(np.all(w == 1.0))
        self.ym1 = y - 1.0

    def loglik_rows(self, eta):
        if eta.size and max(float(eta.max()), -float(eta.min())) > _MAX_ETA:
            eta = np.clip(eta, -_MAX_ETA, _MAX_ETA)
        mu = np.negative(eta)
        np.exp(mu, out=mu)
        mu += 1.0
        np.reciprocal(mu, out=mu)
        ll = np.log(mu)
        ll += self.ym1 * eta
        if not self.unit:
            ll *= self.w
        return mu, ll

    def irls(self, eta, mu):
        v = 1.0 - mu
        v *= mu
        resid = self.y - mu
        if not self.unit:
            v *= self.w
            resid *= self.w
        # d W / d eta = W (1 - 2 mu) is only needed by the gradient: formed there
        return IRLSQuantities(mu, resid, v, None, v)

    def weights_deriv(self, irls):
        return irls.weights * (1.0 - 2.0 * irls.mu)


class _NegBinKernel(RowKernel):
    """NB2 with the log link, in closed form (no finite differences per row).

    With ``r = k / (k + mu)``: score ``w (y - mu) r``, Fisher weights
    ``w mu r``, observed weights ``w mu r (k + y) / (k + mu)`` (positive, so
    PIRLS takes Newton steps with them and converges quadratically) and their
    d/deta ``Wobs (k - mu) / (k + mu)``. The observed weights are the Laplace
    weights (the exact Laplace of glmmTMB, see ``NegativeBinomialFamily``).
    """

    newton = True
    step_with_laplace_weights = True

    def __init__(self, family, y, w):
        super().__init__(family, y, w)
        self.unit = bool(np.all(w == 1.0))
        self.k = family.size

    def loglik_rows(self, eta):
        if eta.size and float(eta.max()) > _MAX_ETA:
            eta = np.minimum(eta, _MAX_ETA)
        k = self.k
        mu = np.exp(eta)
        # y log(mu / (k + mu)) + k log(k / (k + mu)) = y (eta - log(k + mu)) - k log1p(mu / k)
        ll = np.log(k + mu)
        np.subtract(eta, ll, out=ll)
        ll *= self.y
        t = mu / k
        np.log1p(t, out=t)
        t *= k
        ll -= t
        if not self.unit:
            ll *= self.w
        return mu, ll

    def irls(self, eta, mu):
        k = self.k
        kpm = k + mu
        r = k / kpm
        wr = r if self.unit else self.w * r
        score = (self.y - mu) * wr
        fisher = mu * wr
        observed = (k + self.y) / kpm
        observed *= fisher
        return IRLSQuantities(mu, score, fisher, None, observed, observed, None)

    def weights_deriv(self, irls):
        k = self.k
        return irls.laplace_weights * (k - irls.mu) / (k + irls.mu)


class Family:
    """Base class of GLM families (see the module docstring for the interface)."""

    name: str = "family"
    default_link: str = "identity"
    links: tuple[str, ...] = ("identity",)
    #: whether the family has one extra parameter estimated with the others
    has_param: bool = False
    #: its name, e.g. "nb_size"
    param_name: str | None = None
    #: bounds of log(param) for the optimiser
    param_bounds: tuple[float | None, float | None] = (None, None)
    #: information in the Laplace log-determinant: "fisher" (expected, lme4's
    #: glmer) or "observed" (the exact second derivative, glmmTMB); the two
    #: agree for canonical links
    laplace: str = "fisher"
    #: whether ``loglik_constant(y, w)`` is ``sum_i w_i f(y_i)`` (then it may be
    #: summed over the distinct values of y)
    constant_linear_in_weights: bool = False

    def __init__(self, link: str | Link | None = None):
        link = self.default_link if link is None else link
        name = link.name if isinstance(link, Link) else link
        if name not in self.links:
            raise ValueError(f"The {self.name} family supports the links {list(self.links)}; got {name!r}.")
        self.link = get_link(link)

    # -- distribution ---------------------------------------------------------
    def variance(self, mu):  # pragma: no cover - abstract
        raise NotImplementedError

    def pearson_residuals(self, y, mu, w) -> np.ndarray:
        """``(y - mu) sqrt(w / V(mu))`` with the full variance (NB size, Gamma shape, sigma^2 included).

        lme4's "scaled residuals"; the variance is floored where ``mu`` sits
        on a boundary of the support.
        """
        return (y - mu) * np.sqrt(w / np.maximum(self.variance(mu), 1e-300))

    def variance_deriv(self, mu):  # pragma: no cover - abstract
        raise NotImplementedError

    def unit_variance(self, mu):
        """V(mu) without a dispersion parameter (for Pearson residuals)."""
        return self.variance(mu)

    def unit_deviance(self, y, mu):  # pragma: no cover - abstract
        raise NotImplementedError

    def loglik(self, y, mu, w) -> float:
        """``sum w log p(y | mu)`` with every constant.

        A mean that rounds to a boundary of the link's range (``exp(eta)``
        underflowing to 0 where the fitted rate runs off to 0) has an infinite
        ``eta``: it is taken at the links' clipping point, where the kernels
        give ``0 * eta = 0`` for ``y = 0`` instead of ``0 * inf``.
        """
        with np.errstate(divide="ignore"):
            eta = self.link.link(mu)
        eta = np.clip(eta, -_MAX_ETA, _MAX_ETA) if np.any(np.isinf(eta)) else eta
        return self.loglik_kernel(y, eta, mu, w) + self.loglik_constant(y, w)

    def loglik_constant(self, y, w) -> float:
        """The part of ``loglik`` that does not depend on mu."""
        return 0.0

    def loglik_kernel(self, y, eta, mu, w) -> float:
        """The part of ``loglik`` that depends on mu; PIRLS minimises ``-2`` times it."""
        return float(np.dot(w, self.kernel_terms(y, eta, mu)))

    def kernel_terms(self, y, eta, mu):  # pragma: no cover - abstract
        """Per-row ``loglik_kernel`` without the prior weights (a fresh array)."""
        raise NotImplementedError

    def row_kernel(self, y, w) -> RowKernel:
        """The per-row PIRLS kernel bound to ``y`` and ``w`` (see :class:`RowKernel`)."""
        return RowKernel(self, y, w)

    def check_response(self, y: np.ndarray) -> None:
        """Raise ``ValueError`` when ``y`` is outside the family's support."""

    def starting_mu(self, y: np.ndarray) -> np.ndarray:
        """A safe first guess of ``mu`` from ``y`` (as R's ``mustart``)."""
        return np.asarray(y, dtype=float)

    def sample(
        self, mu: np.ndarray, w: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:  # pragma: no cover
        """Draw one response per row with mean ``mu`` (prior weights ``w``)."""
        raise NotImplementedError

    # -- extra parameter (NB size, Gamma shape, Gaussian variance) -------------
    @property
    def param(self) -> float | None:
        return None

    def with_param(self, value: float) -> Family:  # pragma: no cover - only with has_param
        raise NotImplementedError

    def starting_param(self, y, mu, w, df_resid) -> float:  # pragma: no cover
        raise NotImplementedError

    def loglik_param_rows(self, y, mu, w) -> np.ndarray:  # pragma: no cover - only with has_param
        """Each row's ``w d log p(y | mu) / d param``."""
        raise NotImplementedError

    def loglik_param_deriv(self, y, mu, w) -> float:
        """``d loglik / d param``, summed over rows."""
        return float(np.sum(self.loglik_param_rows(y, mu, w)))

    def variance_param_deriv(self, mu):  # pragma: no cover
        raise NotImplementedError

    def laplace_weights_param_deriv(self, y, eta, w, irls: IRLSQuantities) -> np.ndarray:
        """d(laplace weights)/d param at fixed eta, per row."""
        mu = irls.mu
        rel = self.variance_param_deriv(mu) / np.maximum(self.variance(mu), _TINY)
        if self.laplace == "fisher":
            return -irls.weights * rel  # W = w mu_eta^2 / V
        # observed information: a central difference in the parameter, row by
        # row at fixed eta (cheap: no PIRLS), exact to ~1e-10 relative
        h = 1e-5 * self.param
        up = self.with_param(self.param + h)._hessian_weights(y, eta, w)
        down = self.with_param(self.param - h)._hessian_weights(y, eta, w)
        return (up - down) / (2.0 * h)

    def _variance_at(self, eta, mu):
        """V(mu) evaluated as accurately as eta allows (see BinomialFamily)."""
        return self.variance(mu)

    def _hessian_weights(self, y, eta, w) -> np.ndarray:
        return Family._observed_weights(self, y, eta, w)

    # -- derived --------------------------------------------------------------
    def deviance(self, y, mu, w) -> float:
        """Weighted sum of unit deviances."""
        return float(np.dot(w, self.unit_deviance(y, mu)))

    def irls_quantities(self, y, eta, w, mu=None) -> IRLSQuantities:
        """Quantities used by PIRLS and the Laplace gradient at ``eta``.

        ``mu`` may be passed when the caller already has ``g^{-1}(eta)``.
        """
        link = self.link
        mu = link.inverse(eta) if mu is None else mu
        mu_eta = link.inverse_deriv(eta)
        mu_eta2 = link.inverse_deriv2(eta)
        var = np.maximum(self._variance_at(eta, mu), _TINY)
        dvar = self.variance_deriv(mu)
        resid = y - mu
        # r = mu_eta / V first: where mu saturates both vanish, and squaring
        # them separately would give 0 / 0
        r = mu_eta / var
        score = w * resid * r
        weights = w * mu_eta * r
        # d/deta of w mu_eta^2 / V(mu(eta))
        weights_deriv = w * (2.0 * mu_eta2 * r - mu_eta * r * r * dvar)
        # -d score / d eta
        hessian_weights = weights - w * resid * (mu_eta2 / var - r * r * dvar)
        if self.laplace == "fisher":
            return IRLSQuantities(mu, score, weights, weights_deriv, hessian_weights)
        # observed information in the log-determinant: its d/deta by a central
        # difference on each row (exact to ~1e-10; spares every link a third
        # derivative)
        step = 1e-5 * np.maximum(1.0, np.abs(eta))
        up = Family._observed_weights(self, y, eta + step, w)
        down = Family._observed_weights(self, y, eta - step, w)
        return IRLSQuantities(
            mu, score, weights, weights_deriv, hessian_weights, hessian_weights, (up - down) / (2.0 * step)
        )

    def _observed_weights(self, y, eta, w):
        link = self.link
        mu = link.inverse(eta)
        mu_eta = link.inverse_deriv(eta)
        mu_eta2 = link.inverse_deriv2(eta)
        var = np.maximum(self._variance_at(eta, mu), _TINY)
        r = mu_eta / var
        return w * mu_eta * r - w * (y - mu) * (mu_eta2 / var - r * r * self.variance_deriv(mu))

    def __repr__(self) -> str:
        extra = f", {self.param_name}={self.param!r}" if self.has_param else ""
        return f"{type(self).__name__}(link={self.link.name!r}{extra})"


class PoissonFamily(Family):
    """Poisson counts: ``V(mu) = mu``, canonical log link."""

    name = "poisson"
    default_link = "log"
    links = ("log",)

    def variance(self, mu):
        return mu

    def variance_deriv(self, mu):
        return np.ones_like(mu)

    def unit_deviance(self, y, mu):
        # 2 * (y log(y / mu) - (y - mu)), with 0 log 0 = 0
        return 2.0 * (xlogy(y, y) - xlogy(y, mu) - (y - mu))

    def loglik(self, y, mu, w) -> float:
        return float(np.dot(w, xlogy(y, mu) - mu - gammaln(y + 1.0)))

    def loglik_constant(self, y, w) -> float:
        return -weighted_log_factorial_sum(y, w)

    def kernel_terms(self, y, eta, mu):
        # y log(mu) - mu with log(mu) = eta: no logarithm, no 0 * log(0)
        return y * np.minimum(eta, _MAX_ETA) - mu

    def row_kernel(self, y, w):
        return _PoissonKernel(self, y, w)

    def check_response(self, y):
        if np.any(y < 0):
            raise ValueError(
                "Poisson counts y must be non-negative; found "
                f"{int(np.sum(y < 0))} negative value(s), e.g. {y[y < 0][0]!r}."
            )

    def starting_mu(self, y):
        # As R's poisson()$initialize: y + 0.1 keeps log(mu) finite for zeros.
        return y + 0.1

    def sample(self, mu, w, rng):
        # prior weights are ignored, as lme4's simulate() does for the Poisson
        return rng.poisson(mu).astype(float)

    def irls_quantities(self, y, eta, w, mu=None):
        # Canonical log link: every weight is w * mu (faster than the general form).
        mu = self.link.inverse(eta) if mu is None else mu
        wmu = w * mu
        return IRLSQuantities(mu, w * (y - mu), wmu, wmu, wmu)


class BinomialFamily(Family):
    """Binomial proportions: ``y`` in [0, 1] with ``w`` trials; V(mu) = mu (1 - mu).

    With ``w = 1`` and ``y`` in {0, 1} this is the Bernoulli model of a binary
    response; with ``y = successes / trials`` and ``w = trials`` it is lme4's
    ``cbind(successes, trials - successes)``.
    """

    name = "binomial"
    default_link = "logit"
    links = ("logit", "probit", "cloglog")

    def variance(self, mu):
        return mu * (1.0 - mu)

    def variance_deriv(self, mu):
        return 1.0 - 2.0 * mu

    def _variance_at(self, eta, mu):
        # 1 - mu from the link directly: it underflows gracefully where mu rounds
        # to 1, instead of cancelling to 0
        return mu * np.exp(self.link.log1m_inverse(eta))

    def unit_deviance(self, y, mu):
        mu = np.clip(mu, _TINY, 1.0 - 1e-16)
        return 2.0 * (xlogy(y, y) - xlogy(y, mu) + xlogy(1.0 - y, 1.0 - y) - xlogy(1.0 - y, 1.0 - mu))

    def kernel_terms(self, y, eta, mu):
        if isinstance(self.link, LogitLink):
            # y log(mu) + (1 - y) log(1 - mu) = y eta - log(1 + e^eta), with the
            # softplus written stably; one exp and one log per row (PIRLS calls
            # this at every step, and logaddexp twice costs four times as much)
            # eta is clipped: loglik(y, mu) passes eta = link(mu) = +-inf where mu rounds
            # to 0 or 1 (separation), and inf - inf would be NaN
            eta = np.clip(eta, -_MAX_ETA, _MAX_ETA)
            softplus = np.maximum(eta, 0.0) + np.log(1.0 + np.exp(-np.abs(eta)))
            return y * eta - softplus
        # log(mu) and log(1 - mu) straight from eta: finite when mu rounds to 0 or 1
        log_mu = self.link.log_inverse(eta)
        log1m_mu = self.link.log1m_inverse(eta)
        # 0 * log(0) = 0 where a probability rounds to 0 (separation)
        return np.where(y > 0, y * log_mu, 0.0) + np.where(y < 1, (1.0 - y) * log1m_mu, 0.0)

    def row_kernel(self, y, w):
        return _LogitKernel(self, y, w) if isinstance(self.link, LogitLink) else RowKernel(self, y, w)

    def loglik_constant(self, y, w) -> float:
        # log choose(trials, successes); zero for binary data (checked first: two
        # comparisons per row instead of three log-gammas)
        if np.all(w == 1.0) and np.all((y == 0.0) | (y == 1.0)):
            return 0.0
        successes = w * y
        return float(np.sum(gammaln(w + 1.0) - gammaln(successes + 1.0) - gammaln(w - successes + 1.0)))

    def check_response(self, y):
        bad = (y < 0) | (y > 1)
        if np.any(bad):
            raise ValueError(
                "Binomial y must be a proportion in [0, 1] (successes / trials, with the "
                f"trials as sample_weight); found {int(bad.sum())} value(s) outside, e.g. {y[bad][0]!r}."
            )

    def starting_mu(self, y):
        # As R's binomial()$initialize with one trial: (y + 0.5) / 2
        return (y + 0.5) / 2.0

    def sample(self, mu, w, rng):
        # the weights are the numbers of trials; the response is a proportion
        trials = np.maximum(np.rint(w), 1).astype(np.int64)
        return rng.binomial(trials, np.clip(mu, 0.0, 1.0)) / trials

    def irls_quantities(self, y, eta, w, mu=None):
        if not isinstance(self.link, LogitLink):
            return super().irls_quantities(y, eta, w, mu)
        mu = self.link.inverse(eta) if mu is None else mu
        weights = w * mu * (1.0 - mu)
        return IRLSQuantities(mu, w * (y - mu), weights, weights * (1.0 - 2.0 * mu), weights)


class NegativeBinomialFamily(Family):
    """Negative binomial NB2: ``V(mu) = mu + mu^2 / size``, log link.

    ``size`` (glmmTMB's ``sigma()``, lme4's ``theta`` of ``glmer.nb``) is the
    extra parameter; as ``size`` grows the family tends to the Poisson.
    """

    name = "negative_binomial"
    default_link = "log"
    links = ("log",)
    has_param = True
    laplace = "observed"
    param_name = "nb_size"
    #: loglik_constant(y, w) is sum_i w_i f(y_i): it may be summed over distinct y
    constant_linear_in_weights = True
    # size <= 1e8: beyond it the NB log-likelihood equals the Poisson one to ~1e-6
    param_bounds = (np.log(1e-6), np.log(1e8))

    def __init__(self, link=None, size: float = 1.0):
        super().__init__(link)
        self.size = float(size)

    @property
    def param(self):
        return self.size

    def with_param(self, value):
        return type(self)(self.link, size=value)

    def variance(self, mu):
        return mu + mu * mu / self.size

    def variance_deriv(self, mu):
        return 1.0 + 2.0 * mu / self.size

    def variance_param_deriv(self, mu):
        return -((mu / self.size) ** 2)

    def unit_deviance(self, y, mu):
        k = self.size
        return 2.0 * (xlogy(y, y) - xlogy(y, mu) - (y + k) * (np.log1p(y / k) - np.log1p(mu / k)))

    def kernel_terms(self, y, eta, mu):
        k = self.size
        # y log(mu / (k + mu)) + k log(k / (k + mu)), written to stay exact for huge k
        return y * (np.minimum(eta, _MAX_ETA) - np.log(k + mu)) - k * np.log1p(mu / k)

    def loglik_constant(self, y, w) -> float:
        k = self.size
        # log Gamma(y + k) - log Gamma(k) = log Gamma(y) - log B(k, y) for y > 0: betaln
        # stays accurate where the two gammas cancel (k of 1e6 and more)
        positive = y > 0
        lg = np.zeros(np.shape(y))
        lg[positive] = gammaln(y[positive]) - betaln(k, y[positive])
        return float(np.dot(w, lg - gammaln(y + 1.0)))

    def loglik_param_rows(self, y, mu, w) -> np.ndarray:
        k = self.size
        return w * (digamma(y + k) - digamma(k) - np.log1p(mu / k) + (mu - y) / (k + mu))

    def row_kernel(self, y, w):
        return _NegBinKernel(self, y, w) if isinstance(self.link, LogLink) else RowKernel(self, y, w)

    def laplace_weights_param_deriv(self, y, eta, w, irls):
        if not isinstance(self.link, LogLink):
            return super().laplace_weights_param_deriv(y, eta, w, irls)
        # d/dk of the observed weights w k mu (k + y) / (k + mu)^2 at fixed eta
        k, mu = self.size, irls.mu
        kpm = k + mu
        return w * mu * (2.0 * k * mu + y * mu - k * y) / (kpm * kpm * kpm)

    def check_response(self, y):
        PoissonFamily.check_response(self, y)

    def starting_mu(self, y):
        return y + 0.1

    def sample(self, mu, w, rng):
        return rng.negative_binomial(self.size, self.size / (self.size + mu)).astype(float)

    def starting_param(self, y, mu, w, df_resid):
        # method of moments on the Poisson GLM fit: E(y - mu)^2 = mu + mu^2 / k
        excess = float(np.dot(w, (y - mu) ** 2 - mu))
        if excess <= 0:
            return 1e4  # no overdispersion visible: start near the Poisson limit
        return float(np.clip(np.dot(w, mu**2) / excess, 1e-3, 1e6))


class GammaFamily(Family):
    """Gamma with mean mu and shape ``shape``: ``Var(y) = mu^2 / shape``, log link.

    The shape is estimated by maximum likelihood with the other parameters (as
    glmmTMB), not by lme4's moment estimate of the dispersion.
    """

    name = "gamma"
    default_link = "log"
    links = ("log", "identity")
    has_param = True
    laplace = "observed"
    param_name = "gamma_shape"
    constant_linear_in_weights = True
    param_bounds = (np.log(1e-6), np.log(1e10))

    def __init__(self, link=None, shape: float = 1.0):
        super().__init__(link)
        self.shape = float(shape)

    @property
    def param(self):
        return self.shape

    def with_param(self, value):
        return type(self)(self.link, shape=value)

    def variance(self, mu):
        return mu * mu / self.shape

    def variance_deriv(self, mu):
        return 2.0 * mu / self.shape

    def variance_param_deriv(self, mu):
        return -mu * mu / self.shape**2

    def unit_variance(self, mu):
        return mu * mu

    def unit_deviance(self, y, mu):
        return 2.0 * (-np.log(y / mu) + (y - mu) / mu)

    def kernel_terms(self, y, eta, mu):
        log_mu = np.minimum(eta, _MAX_ETA) if isinstance(self.link, LogLink) else np.log(mu)
        return -self.shape * (log_mu + y / mu)

    def loglik_constant(self, y, w) -> float:
        nu = self.shape
        return float(np.dot(w, nu * np.log(nu) + (nu - 1.0) * np.log(y) - gammaln(nu)))

    def loglik_param_rows(self, y, mu, w) -> np.ndarray:
        nu = self.shape
        return w * (np.log(nu) + 1.0 + np.log(y / mu) - y / mu - digamma(nu))

    def check_response(self, y):
        if np.any(y <= 0):
            raise ValueError(
                f"Gamma y must be positive; found {int(np.sum(y <= 0))} value(s) <= 0, e.g. {y[y <= 0][0]!r}."
            )

    def sample(self, mu, w, rng):
        return rng.gamma(self.shape, mu / self.shape)

    def starting_param(self, y, mu, w, df_resid):
        # moment estimate of 1 / dispersion from the Pearson statistic of the GLM
        pearson = float(np.dot(w, ((y - mu) / mu) ** 2)) / max(df_resid, 1)
        return float(np.clip(1.0 / max(pearson, 1e-8), 1e-3, 1e8))


class GaussianFamily(Family):
    """Gaussian with variance ``variance_``: identity link.

    The Gaussian LMM is fitted with its exact profiled likelihood
    (:mod:`sklearn_glmm._core._lmm`); this family serves the Laplace path, where
    the approximation is exact, and checks of it.
    """

    name = "gaussian"
    default_link = "identity"
    links = ("identity", "log")
    has_param = True
    param_name = "sigma2"
    param_bounds = (None, None)

    def __init__(self, link=None, sigma2: float = 1.0):
        super().__init__(link)
        self.sigma2 = float(sigma2)

    @property
    def param(self):
        return self.sigma2

    def with_param(self, value):
        return type(self)(self.link, sigma2=value)

    def variance(self, mu):
        return np.full_like(mu, self.sigma2)

    def variance_deriv(self, mu):
        return np.zeros_like(mu)

    def variance_param_deriv(self, mu):
        return np.ones_like(mu)

    def unit_variance(self, mu):
        return np.ones_like(mu)

    def unit_deviance(self, y, mu):
        return (y - mu) ** 2

    def kernel_terms(self, y, eta, mu):
        return -0.5 * (y - mu) ** 2 / self.sigma2

    def loglik_constant(self, y, w) -> float:
        positive = w > 0
        return -0.5 * float(np.sum(np.log(2.0 * np.pi * self.sigma2 / w[positive])))

    def loglik_param_rows(self, y, mu, w) -> np.ndarray:
        s2 = self.sigma2
        return np.where(w > 0, -0.5 / s2, 0.0) + 0.5 * w * (y - mu) ** 2 / s2**2

    def starting_param(self, y, mu, w, df_resid):
        return float(max(np.dot(w, (y - mu) ** 2) / max(df_resid, 1), 1e-12))

    def sample(self, mu, w, rng):
        return rng.normal(mu, np.sqrt(self.sigma2 / np.where(w > 0, w, 1.0)))


_FAMILIES = {
    cls.name: cls
    for cls in (PoissonFamily, BinomialFamily, NegativeBinomialFamily, GammaFamily, GaussianFamily)
}


def get_family(family: str | Family, link: str | Link | None = None) -> Family:
    """Return a :class:`Family` instance for a name, or pass an instance through.

    Raises
    ------
    ValueError
        If ``family`` names no known family, or the link does not fit it.
    """
    if isinstance(family, Family):
        return family
    if isinstance(family, str) and family in _FAMILIES:
        return _FAMILIES[family](link=link)
    raise ValueError(f"Unknown family {family!r}; expected one of {sorted(_FAMILIES)} or a Family instance.")
