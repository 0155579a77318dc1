"""Link functions ``eta = g(mu)`` and the derivatives the Laplace engine needs.

Interface (informal)
--------------------
Every link implements, element-wise on float64 arrays:

``link(mu)``               eta = g(mu)
``inverse(eta)``           mu = g^{-1}(eta)
``inverse_deriv(eta)``     d mu / d eta
``inverse_deriv2(eta)``    d^2 mu / d eta^2 (used by the analytic gradient of the
                           Laplace deviance, which differentiates the IRLS weights)

Links for probabilities also give ``log_inverse(eta)`` = log(mu) and
``log1m_inverse(eta)`` = log(1 - mu), computed without forming mu, so that the
binomial log-likelihood stays finite when mu rounds to 0 or 1.

Inverses clip ``eta`` where ``exp`` would overflow so that no ``inf`` or ``nan``
leaves this module (lme4 clamps in the same places, ``src/glmFamily.cpp``).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log_ndtr, logit, ndtr, ndtri

__all__ = ["Link", "IdentityLink", "LogLink", "LogitLink", "ProbitLink", "CloglogLink", "get_link"]

# exp(709) is the largest finite double power of e; stay a little below so that
# products such as mu * mu_eta stay finite as well.
_MAX_ETA = 700.0


class Link:
    """Base class of link functions (see the module docstring for the interface)."""

    name: str = "link"

    def link(self, mu: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse(self, eta: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse_deriv(self, eta: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def inverse_deriv2(self, eta: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def marginal_mean(self, eta: np.ndarray, var: np.ndarray) -> np.ndarray:
        """``E[g^{-1}(eta + e)]`` for ``e ~ N(0, var)``, row by row.

        The mean response of a new group, integrated over its random effect.
        Gauss-Hermite quadrature with 40 nodes (exact for polynomials of
        degree 79; far below 1e-10 error for these smooth inverses); the log
        and identity links override it with closed forms.
        """
        nodes, weights = np.polynomial.hermite_e.hermegauss(40)
        sd = np.sqrt(np.maximum(var, 0.0))
        values = self.inverse(eta[:, None] + sd[:, None] * nodes[None, :])
        return values @ (weights / np.sqrt(2.0 * np.pi))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class IdentityLink(Link):
    """``g(mu) = mu``."""

    name = "identity"

    def link(self, mu):
        return np.asarray(mu, dtype=float)

    def inverse(self, eta):
        return np.asarray(eta, dtype=float)

    def inverse_deriv(self, eta):
        return np.ones_like(eta, dtype=float)

    def inverse_deriv2(self, eta):
        return np.zeros_like(eta, dtype=float)

    def marginal_mean(self, eta, var):
        return np.asarray(eta, dtype=float)


class LogLink(Link):
    """``g(mu) = log(mu)``; the canonical link of the Poisson family."""

    name = "log"

    def link(self, mu):
        return np.log(mu)

    def inverse(self, eta):
        return np.exp(np.minimum(eta, _MAX_ETA))

    inverse_deriv = inverse
    inverse_deriv2 = inverse

    def marginal_mean(self, eta, var):
        # the log-normal mean: E exp(eta + e) = exp(eta + var / 2)
        return self.inverse(eta + 0.5 * var)


class LogitLink(Link):
    """``g(mu) = log(mu / (1 - mu))``; the canonical link of the binomial family."""

    name = "logit"

    def link(self, mu):
        return logit(mu)

    def inverse(self, eta):
        return expit(eta)

    def inverse_deriv(self, eta):
        p = expit(eta)
        return p * (1.0 - p)

    def inverse_deriv2(self, eta):
        p = expit(eta)
        return p * (1.0 - p) * (1.0 - 2.0 * p)

    def log_inverse(self, eta):
        return -np.logaddexp(0.0, -eta)

    def log1m_inverse(self, eta):
        return -np.logaddexp(0.0, eta)


class ProbitLink(Link):
    """``g(mu) = Phi^{-1}(mu)``, the standard normal quantile function."""

    name = "probit"

    def link(self, mu):
        return ndtri(mu)

    def inverse(self, eta):
        return ndtr(eta)

    def inverse_deriv(self, eta):
        return np.exp(-0.5 * eta**2) / np.sqrt(2.0 * np.pi)

    def inverse_deriv2(self, eta):
        return -eta * self.inverse_deriv(eta)

    def log_inverse(self, eta):
        return log_ndtr(eta)

    def log1m_inverse(self, eta):
        return log_ndtr(-eta)


class CloglogLink(Link):
    """``g(mu) = log(-log(1 - mu))``, the complementary log-log link."""

    name = "cloglog"

    def link(self, mu):
        return np.log(-np.log1p(-mu))

    def inverse(self, eta):
        return -np.expm1(-np.exp(np.minimum(eta, _MAX_CLOGLOG_ETA)))

    def inverse_deriv(self, eta):
        eta = np.minimum(eta, _MAX_CLOGLOG_ETA)
        return np.exp(eta - np.exp(eta))

    def inverse_deriv2(self, eta):
        eta = np.minimum(eta, _MAX_CLOGLOG_ETA)
        return np.exp(eta - np.exp(eta)) * (1.0 - np.exp(eta))

    def log_inverse(self, eta):
        return np.log(-np.expm1(-np.exp(np.minimum(eta, _MAX_CLOGLOG_ETA))))

    def log1m_inverse(self, eta):
        return -np.exp(np.minimum(eta, _MAX_CLOGLOG_ETA))


# exp(exp(6.5)) overflows nothing, and 1 - mu < 1e-290 beyond it anyway
_MAX_CLOGLOG_ETA = 6.5

_LINKS = {cls.name: cls for cls in (IdentityLink, LogLink, LogitLink, ProbitLink, CloglogLink)}


def get_link(link: str | Link) -> Link:
    """Return a :class:`Link` instance for a name or pass an instance through.

    Raises
    ------
    ValueError
        If ``link`` names no known link.
    """
    if isinstance(link, Link):
        return link
    if isinstance(link, str) and link in _LINKS:
        return _LINKS[link]()
    raise ValueError(f"Unknown link {link!r}; expected one of {sorted(_LINKS)} or a Link instance.")
