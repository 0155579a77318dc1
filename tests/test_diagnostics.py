"""Residuals (lme4's definitions), simulate and the overdispersion ratio."""

import numpy as np
import pytest

from sklearn_glmm import PoissonGLMMRegressor, overdispersion, simulate
from sklearn_glmm.datasets import make_app_engagement

from .conftest import load_reference, load_reference_data


@pytest.fixture(scope="module")
def data():
    return load_reference_data("app_engagement.csv", factors=["user_id"])


@pytest.fixture(scope="module")
def model(data):
    return PoissonGLMMRegressor("(1 | user_id)").fit(
        data[["day_centered"]], data["logins"], groups=data["user_id"]
    )


def _xyg(data):
    return data[["day_centered"]], data["logins"], data["user_id"]


def test_pearson_residuals_match_lme4(data, model):
    ref = load_reference("app_engagement_ri")
    r = model.residuals(*_xyg(data), kind="pearson")
    np.testing.assert_allclose(r[:20], ref["pearson_resid"], atol=2e-4)


def test_residual_kinds(data, model):
    X, y, g = _xyg(data)
    mu = model.predict(X, groups=g)
    np.testing.assert_allclose(model.residuals(X, y, g, kind="response"), y - mu)
    dev = model.residuals(X, y, g)  # lme4's default type is "deviance"
    np.testing.assert_allclose(np.sign(dev), np.sign(y - mu))
    # squared deviance residuals add up to the conditional deviance (lme4's deviance_conditional)
    assert np.sum(dev**2) == pytest.approx(
        load_reference("app_engagement_ri")["deviance_conditional"], rel=1e-4
    )
    with pytest.raises(ValueError, match="kind must be one of"):
        model.residuals(X, y, g, kind="working")


def test_overdispersion_ratio(data, model):
    X, y, g = _xyg(data)
    result = overdispersion(model, X, y, g)
    assert result.df == 1497
    assert result.chisq == pytest.approx(np.sum(model.residuals(X, y, g, kind="pearson") ** 2))
    assert result.ratio == pytest.approx(result.chisq / 1497)
    assert 0.85 < result.ratio < 1.1 and 0 < result.p_value < 1  # simulated Poisson: no overdispersion
    assert list(result.to_series().index) == ["chisq", "ratio", "rdf", "p"]


def test_overdispersion_detected_in_overdispersed_data():
    rng = np.random.default_rng(5)
    d = make_app_engagement(n_users=30, n_days=20, random_state=1)
    y = rng.negative_binomial(1.0, 1.0 / (1.0 + d["logins"].to_numpy() + 1.0))  # extra-Poisson noise
    X, g = d[["day_centered"]], d["user_id"]
    m = PoissonGLMMRegressor("(1 | user_id)").fit(X, y, groups=g)
    assert overdispersion(m, X, y, g).ratio > 1.5


def test_simulate_shapes_and_moments(data, model):
    X, _y, g = _xyg(data)
    sims = model.simulate(X, g, n_simulations=200, random_state=0)
    assert sims.shape == (len(data), 200)
    assert np.all(sims >= 0) and np.all(sims == np.round(sims))
    # conditional simulation: per-row means follow the fitted means
    mu = model.predict(X, groups=g)
    assert np.corrcoef(sims.mean(axis=1), mu)[0, 1] > 0.95
    np.testing.assert_array_equal(sims, simulate(model, X, g, n_simulations=200, random_state=0))
    # unconditional: user means vary as much as the fitted random-intercept SD implies
    uncond = model.simulate(X, g, n_simulations=50, random_state=1, conditional=False)
    per_user = np.stack([uncond[(g == u).to_numpy()].mean(axis=0) for u in g.unique()])
    sd_log = np.std(np.log(per_user + 0.5), axis=0).mean()
    assert 0.3 < sd_log < 0.6


def test_simulate_new_groups_and_errors(data, model):
    X = data[["day_centered"]].iloc[:30]
    new = np.array(["new"] * 30)
    sims = model.simulate(X, new, n_simulations=3, random_state=2)
    assert sims.shape == (30, 3)
    with pytest.raises(ValueError, match="needs groups"):
        model.simulate(X)
    with pytest.raises(ValueError, match=">= 1"):
        model.simulate(X, new, n_simulations=0)
    with pytest.raises(TypeError, match="positive integer"):
        model.simulate(X, new, n_simulations=2.5)
