"""Links and families: inverses, derivatives against finite differences, likelihoods."""

import numpy as np
import pytest
from scipy import stats

from sklearn_glmm.families import (
    Family,
    IdentityLink,
    LogitLink,
    LogLink,
    PoissonFamily,
    get_family,
    get_link,
)

ETA = np.linspace(-4.0, 4.0, 17)


@pytest.mark.parametrize("link", [IdentityLink(), LogLink(), LogitLink()], ids=repr)
def test_link_round_trip_and_derivatives(link):
    mu = link.inverse(ETA)
    np.testing.assert_allclose(link.link(mu), ETA, rtol=1e-12, atol=1e-12)
    h = 1e-6
    fd1 = (link.inverse(ETA + h) - link.inverse(ETA - h)) / (2 * h)
    fd2 = (link.inverse_deriv(ETA + h) - link.inverse_deriv(ETA - h)) / (2 * h)
    np.testing.assert_allclose(link.inverse_deriv(ETA), fd1, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(link.inverse_deriv2(ETA), fd2, rtol=1e-6, atol=1e-8)


def test_log_link_does_not_overflow():
    mu = LogLink().inverse(np.array([800.0, 1e6]))
    assert np.all(np.isfinite(mu))


def test_poisson_loglik_matches_scipy(rng):
    y = rng.poisson(3.0, size=50).astype(float)
    mu = rng.uniform(0.5, 6.0, size=50)
    w = rng.integers(1, 4, size=50).astype(float)
    expected = np.sum(w * stats.poisson.logpmf(y, mu))
    assert PoissonFamily().loglik(y, mu, w) == pytest.approx(expected, rel=1e-12)


def test_poisson_deviance_is_twice_loglik_gap(rng):
    y = rng.poisson(2.0, size=40).astype(float)
    mu = rng.uniform(0.5, 4.0, size=40)
    w = np.ones(40)
    fam = PoissonFamily()
    gap = 2 * (fam.loglik(y, np.where(y > 0, y, 1e-300), w) - fam.loglik(y, mu, w))
    assert fam.deviance(y, mu, w) == pytest.approx(gap, rel=1e-10)


def test_poisson_fast_path_equals_general_formulas(rng):
    """The canonical-link shortcut must agree with the general derivation."""
    y = rng.poisson(2.0, size=30).astype(float)
    eta = rng.normal(0.5, 0.7, size=30)
    w = rng.uniform(0.5, 2.0, size=30)
    fam = PoissonFamily()
    fast = fam.irls_quantities(y, eta, w)
    general = Family.irls_quantities(fam, y, eta, w)
    for name in ("mu", "score", "weights", "weights_deriv", "hessian_weights"):
        np.testing.assert_allclose(getattr(fast, name), getattr(general, name), rtol=1e-12)


def test_irls_quantities_are_derivatives_of_loglik(rng):
    y = rng.poisson(2.0, size=10).astype(float)
    eta = rng.normal(0.3, 0.5, size=10)
    w = np.ones(10)
    fam = PoissonFamily()
    q = fam.irls_quantities(y, eta, w)
    h = 1e-6
    per_row = [fam.loglik(y[i : i + 1], fam.link.inverse(eta[i : i + 1]), w[i : i + 1]) for i in range(10)]
    up = [fam.loglik(y[i : i + 1], fam.link.inverse(eta[i : i + 1] + h), w[i : i + 1]) for i in range(10)]
    down = [fam.loglik(y[i : i + 1], fam.link.inverse(eta[i : i + 1] - h), w[i : i + 1]) for i in range(10)]
    np.testing.assert_allclose(q.score, (np.array(up) - np.array(down)) / (2 * h), rtol=1e-6)
    second = (np.array(up) - 2 * np.array(per_row) + np.array(down)) / h**2
    np.testing.assert_allclose(-q.hessian_weights, second, rtol=1e-3)


def test_poisson_rejects_negative_counts():
    with pytest.raises(ValueError, match="non-negative"):
        PoissonFamily().check_response(np.array([1.0, -2.0]))


def test_unknown_family_and_link():
    with pytest.raises(ValueError, match="Unknown family 'poison'"):
        get_family("poison")
    with pytest.raises(ValueError, match="Unknown link 'logg'"):
        get_link("logg")
    assert isinstance(get_family("poisson").link, LogLink)


@pytest.mark.parametrize("kind", ["counts", "non_integer", "large", "small_sample"])
def test_weighted_log_factorial_sum_equals_the_row_sum(kind):
    from scipy.special import gammaln

    from sklearn_glmm.families._family import weighted_log_factorial_sum

    rng = np.random.default_rng(3)
    n = 50 if kind == "small_sample" else 20_000
    y = rng.poisson(4.0, n).astype(float)
    if kind == "non_integer":
        y[7] += 0.5
    if kind == "large":
        y[3] = 2.0**21
    w = rng.uniform(0.5, 2.0, n)
    expected = float(np.dot(w, gammaln(y + 1.0)))
    assert weighted_log_factorial_sum(y, w) == pytest.approx(expected, rel=1e-12)
