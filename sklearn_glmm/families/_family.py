"""Exponential-family distributions for GLMMs.

Interface (informal)
--------------------
A :class:`Family` couples a distribution with a :class:`~sklearn_glmm.families.Link`
and offers, element-wise on float64 arrays (``w`` are prior weights):

``variance(mu)``, ``variance_deriv(mu)``  V(mu) and dV/dmu
``unit_deviance(y, mu)``                  d(y, mu) >= 0, with d(y, y) = 0
``loglik(y, mu, w)``                      sum of w * log p(y | mu), all constants kept
``loglik_kernel(y, eta, mu, w)``          the part of ``loglik`` that depends on mu;
``loglik_constant(y, w)``                 the rest (computed once per fit), so
                                          ``loglik = kernel + constant``
``check_response(y)``                     raises ``ValueError`` for impossible y
``irls_quantities(y, eta, w)``            everything PIRLS and the Laplace gradient
                                          need, computed once per evaluation

The log-likelihood keeps every normalising constant (``gammaln``) so that the
Laplace deviance is on lme4's scale: ``-2 * loglik`` is what ``glmer`` reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, xlogy

from ._link import _MAX_ETA, Link, LogLink, get_link

__all__ = ["Family", "PoissonFamily", "IRLSQuantities", "get_family"]


@dataclass(frozen=True)
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
        Observed information ``-d score / d eta``; equals ``weights`` for
        canonical links.
    """

    mu: np.ndarray
    score: np.ndarray
    weights: np.ndarray
    weights_deriv: np.ndarray
    hessian_weights: np.ndarray


class Family:
    """Base class of GLM families (see the module docstring for the interface)."""

    name: str = "family"
    default_link: str = "identity"
    #: whether the family has a free dispersion parameter (Gaussian, Gamma, ...)
    has_dispersion: bool = False

    def __init__(self, link: str | Link | None = None):
        self.link = get_link(self.default_link if link is None else link)

    # -- distribution ---------------------------------------------------------
    def variance(self, mu):  # pragma: no cover - abstract
        raise NotImplementedError

    def variance_deriv(self, mu):  # pragma: no cover - abstract
        raise NotImplementedError

    def unit_deviance(self, y, mu):  # pragma: no cover - abstract
        raise NotImplementedError

    def loglik(self, y, mu, w):  # pragma: no cover - abstract
        raise NotImplementedError

    def loglik_constant(self, y, w) -> float:
        """The part of ``loglik`` that does not depend on mu (0 unless overridden)."""
        return 0.0

    def loglik_kernel(self, y, eta, mu, w) -> float:
        """``loglik(y, mu, w) - loglik_constant(y, w)``; PIRLS minimises ``-2`` times it."""
        return self.loglik(y, mu, w) - self.loglik_constant(y, w)

    def check_response(self, y: np.ndarray) -> None:
        """Raise ``ValueError`` when ``y`` is outside the family's support."""

    def starting_mu(self, y: np.ndarray) -> np.ndarray:
        """A safe first guess of ``mu`` from ``y`` (as R's ``mustart``)."""
        return np.asarray(y, dtype=float)

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
        var = self.variance(mu)
        dvar = self.variance_deriv(mu)
        resid = y - mu
        score = w * resid * mu_eta / var
        weights = w * mu_eta**2 / var
        # d/deta of w mu_eta^2 / V(mu(eta))
        weights_deriv = w * (2.0 * mu_eta * mu_eta2 / var - mu_eta**3 * dvar / var**2)
        # -d score / d eta
        hessian_weights = weights - w * resid * (mu_eta2 / var - mu_eta**2 * dvar / var**2)
        return IRLSQuantities(mu, score, weights, weights_deriv, hessian_weights)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(link={self.link.name!r})"


class PoissonFamily(Family):
    """Poisson counts: ``V(mu) = mu``, canonical log link."""

    name = "poisson"
    default_link = "log"

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
        return -float(np.dot(w, gammaln(y + 1.0)))

    def loglik_kernel(self, y, eta, mu, w) -> float:
        if isinstance(self.link, LogLink):
            # y log(mu) - mu with log(mu) = eta: no logarithm, no 0 * log(0)
            return float(np.dot(w, y * np.minimum(eta, _MAX_ETA) - mu))
        return float(np.dot(w, xlogy(y, mu) - mu))

    def check_response(self, y):
        if np.any(y < 0):
            raise ValueError(
                "Poisson counts y must be non-negative; found "
                f"{int(np.sum(y < 0))} negative value(s), e.g. {y[y < 0][0]!r}."
            )

    def starting_mu(self, y):
        # As R's poisson()$initialize: y + 0.1 keeps log(mu) finite for zeros.
        return y + 0.1

    def irls_quantities(self, y, eta, w, mu=None):
        # Canonical log link: every weight is w * mu (faster than the general form).
        if not isinstance(self.link, LogLink):
            return super().irls_quantities(y, eta, w, mu)
        mu = self.link.inverse(eta) if mu is None else mu
        wmu = w * mu
        return IRLSQuantities(mu, w * (y - mu), wmu, wmu, wmu)


_FAMILIES = {cls.name: cls for cls in (PoissonFamily,)}


def get_family(family: str | Family, link: str | Link | None = None) -> Family:
    """Return a :class:`Family` instance for a name, or pass an instance through.

    Raises
    ------
    ValueError
        If ``family`` names no known family.
    """
    if isinstance(family, Family):
        return family
    if isinstance(family, str) and family in _FAMILIES:
        return _FAMILIES[family](link=link)
    raise ValueError(
        f"Unknown family {family!r}; expected one of {sorted(_FAMILIES)} or a Family instance."
    )
