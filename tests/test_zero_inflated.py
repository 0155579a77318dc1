"""ZeroInflatedPoissonGLMMRegressor: glmmTMB reference, simulation truth, numerics and API."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from scipy.special import expit, gammaln
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_glmm import PoissonGLMMRegressor, ZeroInflatedPoissonGLMMRegressor
from sklearn_glmm._base import NoGroupsWarning
from sklearn_glmm._core import make_controls
from sklearn_glmm._core._linalg import GroupIndex
from sklearn_glmm._core._pirls import pirls
from sklearn_glmm._core._system import TermRows, TermSystem
from sklearn_glmm._core._zip import ZIPKernel, zip_loglik, zip_rows
from sklearn_glmm.families import PoissonFamily

from .conftest import core_problem, load_reference, load_reference_data, reference_design


@pytest.fixture(scope="module")
def salamanders():
    ref = load_reference("salamanders_zip")
    data = load_reference_data(ref["data"], factors=["site", "spp", "mined"])
    X, groups = reference_design(ref, data)
    # the reference's design puts the same columns in both parts
    assert list(ref["design"]["fixef_zi"]) == list(ref["design"]["fixef"])
    model = ZeroInflatedPoissonGLMMRegressor("(1 | site)").fit(X, data[ref["response"]], groups=groups)
    return model, ref, X, groups, data


def _close_to(got: pd.Series, expected: dict, se: dict):
    expected, se = pd.Series(expected), pd.Series(se)
    assert list(got.index) == list(expected.index)
    tolerance = np.maximum(2e-3 * np.abs(expected), 0.02 * se)
    assert np.all(np.abs(got - expected) <= tolerance), (got - expected) / tolerance


def test_salamanders_matches_glmmtmb(salamanders):
    model, ref, *_ = salamanders
    _close_to(model.fixef_, ref["fixef"], ref["fixef_se"])
    _close_to(model.fixef_zi_, ref["fixef_zi"], ref["fixef_zi_se"])
    np.testing.assert_allclose(model.varcorr_["sdcor"], pd.DataFrame(ref["varcorr"])["sdcor"], rtol=3e-3)
    assert model.loglik_ == pytest.approx(ref["loglik"], abs=2e-3)
    assert model.aic_ == pytest.approx(ref["aic"], abs=4e-3)  # 17 parameters, as glmmTMB counts
    assert model.bic_ == pytest.approx(ref["bic"], abs=4e-3)
    assert model.df_resid_ == ref["df_resid"]
    assert model.converged_


def test_salamanders_standard_errors_match_sdreport(salamanders):
    """glmmTMB's SEs come from the exact Hessian; ours from central differences of the
    exact gradient: agreement to 0.1 %."""
    model, ref, *_ = salamanders
    np.testing.assert_allclose(model.fixef_se_, pd.Series(ref["fixef_se"]), rtol=1e-3)
    np.testing.assert_allclose(model.fixef_zi_se_, pd.Series(ref["fixef_zi_se"]), rtol=1e-3)
    np.testing.assert_allclose(model.vcov_zi_, np.array(ref["vcov_fixef_zi"]), rtol=5e-3, atol=1e-4)


def test_salamanders_predictions_match(salamanders):
    model, ref, X, groups, data = salamanders
    head = slice(0, 20)
    fitted = model.predict(X.iloc[head], groups=groups.iloc[head])
    np.testing.assert_allclose(fitted, ref["fitted"], rtol=5e-3)
    np.testing.assert_allclose(model.predict(X.iloc[head]), ref["predict_population"], rtol=5e-3)
    np.testing.assert_allclose(model.predict_zero_proba(X.iloc[head]), ref["predict_zprob"], rtol=5e-3)
    pearson = model.residuals(X.iloc[head], data["count"].iloc[head], groups=groups.iloc[head])
    np.testing.assert_allclose(pearson, ref["pearson_resid"], rtol=5e-3, atol=1e-4)
    # P(y = 0) = p + (1 - p) exp(-mu)
    p = model.predict_zero_proba(X.iloc[head])
    mu = model.predict(X.iloc[head], groups=groups.iloc[head]) / (1 - p)
    np.testing.assert_allclose(
        model.predict_zero_proba(X.iloc[head], groups=groups.iloc[head], kind="total"),
        p + (1 - p) * np.exp(-mu),
    )


def test_salamanders_summary_shows_both_parts(salamanders):
    model, ref, *_ = salamanders
    text = str(model.summary())
    assert "Zero-inflated Poisson GLMM fit by maximum likelihood (Laplace Approximation)" in text
    assert "Zero-inflation model: ~sppPR" in text and "minedno" in text
    assert text.count("Pr(>|z|)") == 2
    assert f"{ref['aic']:.1f}" in text
    assert "Zero-inflation model" in model.summary()._repr_html_()
    ci = model.confint()
    assert "zi~minedno" in ci.index and ci.loc["zi~minedno"].iloc[1] < 0
    with pytest.raises(NotImplementedError, match="method='wald'"):
        model.confint("profile")


def _simulate_zip(rng, n_groups=150, per_group=20, p_logit=(-0.8, 0.0), sd=0.5):
    g = np.repeat(np.arange(n_groups), per_group)
    n = g.size
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    mu = np.exp(0.7 + 0.4 * x1 + rng.normal(0, sd, n_groups)[g])
    p = expit(p_logit[0] + p_logit[1] * x2)
    y = np.where(rng.uniform(size=n) < p, 0, rng.poisson(mu))
    return pd.DataFrame({"x1": x1, "x2": x2}), y, g


def test_simulation_recovers_the_zero_inflation_probability(rng):
    X, y, g = _simulate_zip(rng, p_logit=(-0.8, 1.0))
    model = ZeroInflatedPoissonGLMMRegressor(zero_inflation=["x2"]).fit(X, y, groups=g)
    truth_zi = pd.Series([-0.8, 1.0], index=["(Intercept)", "x2"])
    assert np.all(np.abs(model.fixef_zi_ - truth_zi) < 3.5 * model.fixef_zi_se_), model.fixef_zi_
    assert abs(model.fixef_["x1"] - 0.4) < 3.5 * model.fixef_se_["x1"]
    assert model.varcorr_["sdcor"].iloc[0] == pytest.approx(0.5, rel=0.2)
    # the probability at x2 = 0 is expit(-0.8) = 0.31
    p0 = model.predict_zero_proba(pd.DataFrame({"x1": [0.0], "x2": [0.0]}))[0]
    assert p0 == pytest.approx(expit(-0.8), abs=0.04)
    # and the Poisson GLMM, which cannot see the structural zeros, fits far worse
    poisson = PoissonGLMMRegressor().fit(X, y, groups=g)
    assert model.aic_ < poisson.aic_ - 100


def test_without_excess_zeros_it_is_the_poisson_glmm(rng):
    g = np.repeat(np.arange(40), 15)
    x = rng.normal(size=g.size).reshape(-1, 1)
    y = rng.poisson(np.exp(0.5 + 0.3 * x[:, 0] + rng.normal(0, 0.4, 40)[g]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the zero-inflation intercept runs to -infinity
        zip_model = ZeroInflatedPoissonGLMMRegressor(zero_inflation=[]).fit(x, y, groups=g)
    poisson = PoissonGLMMRegressor().fit(x, y, groups=g)
    # p = 0 is inside the ZIP model: its likelihood is at least the Poisson one,
    # and on Poisson data no better than chance allows (LRT statistic < 3.84)
    assert zip_model.loglik_ >= poisson.loglik_ - 1e-6
    assert 2 * (zip_model.loglik_ - poisson.loglik_) < 3.84
    assert zip_model.predict_zero_proba(x[:1])[0] < 0.05
    np.testing.assert_allclose(zip_model.fixef_, poisson.fixef_, atol=0.05)


@pytest.mark.parametrize("slope", [False, True], ids=["intercept", "slope"])
def test_gradient_matches_finite_differences(rng, slope):
    X, y, g = _simulate_zip(rng, n_groups=15, per_group=12, p_logit=(-0.5, 0.8))
    n = len(y)
    Xd = np.column_stack([np.ones(n), X.to_numpy()])
    Z = Xd[:, :2] if slope else np.ones((n, 1))
    w = rng.integers(1, 3, size=n).astype(float)
    problem = core_problem(
        PoissonFamily(), Xd, y, g, Z, 15, weights=w, offset=0.1 * X["x1"].to_numpy(), X_zi=Xd[:, [0, 2]]
    )
    theta = np.array([0.6, 0.1, 0.3]) if slope else np.array([0.6])
    coef = np.array([0.5, 0.3, -0.1, -0.4, 0.6])
    u0 = problem.zero_modes()
    ev = problem.evaluate(theta, coef, None, u0)

    def dev(t, c):
        return problem.evaluate(t, c, None, u0, gradient=False).deviance

    h = 1e-6
    fd_theta = [(dev(theta + h * e, coef) - dev(theta - h * e, coef)) / (2 * h) for e in np.eye(theta.size)]
    fd_coef = [(dev(theta, coef + h * e) - dev(theta, coef - h * e)) / (2 * h) for e in np.eye(coef.size)]
    np.testing.assert_allclose(ev.grad_theta, fd_theta, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ev.grad_coef, fd_coef, rtol=1e-5, atol=1e-5)


class _ClippedZIPKernel(ZIPKernel):
    """Steps with the row-clipped curvature max(H_ee, 0) everywhere."""

    newton = False

    def step_weights(self, irls):
        return irls.weights, None


def test_newton_modes_equal_the_clipped_pirls_modes(rng):
    """Zeros with large means (negative observed curvature) in every group: the
    per-group Newton steps (with the clipped curvature as fallback) and steps with
    the row-clipped curvature find the same modes, Newton in fewer steps."""
    g = np.repeat(np.arange(8), 10)
    y = np.where(rng.uniform(size=80) < 0.5, 0.0, rng.poisson(6.0, size=80).astype(float))
    eta_fixed = np.full(80, np.log(6.0)) + rng.normal(0, 0.2, size=80)
    zeta = np.full(80, -0.2)
    system = TermSystem(TermRows(np.ones((1, 80)), GroupIndex(g, 8)), np.array([[0.8]]))
    assert np.any(zip_rows(y, eta_fixed, zeta).h_ee < 0)
    controls = make_controls()
    newton = pirls(ZIPKernel(y, np.ones(80), zeta), system, eta_fixed, np.zeros((8, 1)), controls)
    generic = pirls(_ClippedZIPKernel(y, np.ones(80), zeta), system, eta_fixed, np.zeros((8, 1)), controls)
    assert newton.converged and generic.converged
    np.testing.assert_allclose(newton.u, generic.u, atol=1e-9)
    assert newton.n_iter < generic.n_iter


def test_row_likelihood_is_stable_and_exact():
    y = np.array([0.0, 0.0, 3.0, 0.0, 7.0, 0.0, 2.0])
    eta = np.array([0.3, -2.0, 1.1, 800.0, 750.0, -800.0, -3.0])
    zeta = np.array([-0.4, 2.0, 0.5, 800.0, -800.0, -800.0, 900.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow, no invalid value
        r = zip_rows(y, eta, zeta)
    for field in ("loglik", "s_eta", "s_zeta", "h_ee", "h_ez", "h_zz", "dh_ee_deta", "dh_ee_dzeta"):
        assert np.all(np.isfinite(getattr(r, field))), field
    # the moderate rows against the textbook formula
    mu, p = np.exp(eta[:3]), expit(zeta[:3])
    naive = np.where(y[:3] == 0, np.log(p + (1 - p) * np.exp(-mu)), np.log1p(-p) + y[:3] * eta[:3] - mu)
    np.testing.assert_allclose(r.loglik[:3], naive, rtol=1e-12)
    expected = np.sum(naive - gammaln(y[:3] + 1))
    assert zip_loglik(y[:3], eta[:3], zeta[:3], np.ones(3)) == pytest.approx(expected, rel=1e-12)
    # derivatives against central differences of the log-likelihood
    e, z, yy = eta[:3], zeta[:3], y[:3]
    h = 1e-6
    rr = zip_rows(yy, e, z)

    def ll(de=0.0, dz=0.0):
        return zip_rows(yy, e + de, z + dz).loglik

    def s_eta(de=0.0, dz=0.0):
        return zip_rows(yy, e + de, z + dz).s_eta

    np.testing.assert_allclose(rr.s_eta, (ll(h) - ll(-h)) / (2 * h), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(rr.s_zeta, (ll(0, h) - ll(0, -h)) / (2 * h), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(rr.h_ee, -(s_eta(h) - s_eta(-h)) / (2 * h), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(rr.h_ez, -(s_eta(0, h) - s_eta(0, -h)) / (2 * h), rtol=1e-6, atol=1e-9)
    sz = [zip_rows(yy, e, z + d).s_zeta for d in (h, -h)]
    np.testing.assert_allclose(rr.h_zz, -(sz[0] - sz[1]) / (2 * h), rtol=1e-6, atol=1e-9)
    he = [zip_rows(yy, e + d, z).h_ee for d in (h, -h)]
    np.testing.assert_allclose(rr.dh_ee_deta, (he[0] - he[1]) / (2 * h), rtol=1e-6, atol=1e-9)
    he = [zip_rows(yy, e, z + d).h_ee for d in (h, -h)]
    np.testing.assert_allclose(rr.dh_ee_dzeta, (he[0] - he[1]) / (2 * h), rtol=1e-6, atol=1e-9)


def test_bad_input_is_refused(rng):
    X, y, g = _simulate_zip(rng, n_groups=10, per_group=10)
    model = ZeroInflatedPoissonGLMMRegressor()
    with pytest.raises(ValueError, match="must be non-negative"):
        model.fit(X, np.r_[-1, y[1:]], groups=g)
    with pytest.raises(ValueError, match="whole counts.*non-integer value"):
        model.fit(X, np.r_[1.5, y[1:]], groups=g)
    with pytest.raises(ValueError, match="zero_inflation names column 'x9'"):
        ZeroInflatedPoissonGLMMRegressor(zero_inflation=["x9"]).fit(X, y, groups=g)
    with pytest.raises(ValueError, match="lists a column twice"):
        ZeroInflatedPoissonGLMMRegressor(zero_inflation=["x1", 0]).fit(X, y, groups=g)
    with pytest.raises(InvalidParameterError, match="zero_inflation"):
        ZeroInflatedPoissonGLMMRegressor(zero_inflation="x1").fit(X, y, groups=g)
    with pytest.raises(ValueError, match="Invalid parameter 'n_agq'"):  # Laplace only, as glmmTMB
        ZeroInflatedPoissonGLMMRegressor().set_params(n_agq=5)
    fitted = ZeroInflatedPoissonGLMMRegressor(zero_inflation=[1]).fit(X, y, groups=g)
    assert list(fitted.fixef_zi_.index) == ["(Intercept)", "x2"]
    with pytest.raises(ValueError, match="whole counts"):
        fitted.score(X, y + 0.5, groups=g)
    with pytest.raises(ValueError, match="Deviance residuals|'response' or 'pearson'"):
        fitted.residuals(X, y, groups=g, kind="deviance")


def test_new_groups_follow_the_policy(rng):
    X, y, g = _simulate_zip(rng, n_groups=30, per_group=15)
    new = np.full(5, 999)
    rows = X.iloc[:5]
    population = ZeroInflatedPoissonGLMMRegressor().fit(X, y, groups=g)
    p = population.predict_zero_proba(rows)
    eta = population.intercept_ + rows.to_numpy() @ population.coef_
    np.testing.assert_allclose(population.predict(rows, groups=new), (1 - p) * np.exp(eta))
    marginal = clone(population).set_params(new_groups="marginal").fit(X, y, groups=g)
    var = marginal.varcorr_["vcov"].iloc[0]
    np.testing.assert_allclose(marginal.predict(rows, groups=new), (1 - p) * np.exp(eta + var / 2), rtol=1e-6)
    with pytest.raises(ValueError, match="new_groups='error'"):
        clone(population).set_params(new_groups="error").fit(X, y, groups=g).predict(rows, groups=new)


@pytest.mark.parametrize("routing", [True, False], ids=["routing", "group_column"])
def test_grid_search_with_group_kfold(rng, routing):
    X, y, g = _simulate_zip(rng, n_groups=30, per_group=10, p_logit=(-0.5, 0.8))
    grid = {"zero_inflation": [None, ["x2"]]}
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoGroupsWarning)  # every fit must receive the groups
        if routing:
            with sklearn.config_context(enable_metadata_routing=True):
                search = GridSearchCV(ZeroInflatedPoissonGLMMRegressor(), grid, cv=GroupKFold(3))
                search.fit(X, y, groups=g)
        else:
            data = X.assign(site=g)
            model = ZeroInflatedPoissonGLMMRegressor(group_column="site")
            search = GridSearchCV(model, grid, cv=GroupKFold(3)).fit(data, y, groups=g)
    assert search.best_estimator_.ranef_
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


def test_weights_simulate_clone_and_pickle(rng):
    X, y, g = _simulate_zip(rng, n_groups=20, per_group=8, p_logit=(-0.5, 0.8))
    counts = rng.integers(1, 3, size=len(y))
    weighted = ZeroInflatedPoissonGLMMRegressor().fit(X, y, groups=g, sample_weight=counts)
    repeated = ZeroInflatedPoissonGLMMRegressor().fit(
        X.loc[X.index.repeat(counts)], np.repeat(y, counts), groups=np.repeat(g, counts)
    )
    np.testing.assert_allclose(repeated.fixef_, weighted.fixef_, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(repeated.fixef_zi_, weighted.fixef_zi_, rtol=1e-4, atol=1e-6)
    assert repeated.loglik_ == pytest.approx(weighted.loglik_, abs=1e-6)
    draws = weighted.simulate(X, groups=g, n_simulations=400, random_state=0)
    assert np.mean(draws) == pytest.approx(np.mean(weighted.predict(X, groups=g)), rel=0.03)
    p0 = weighted.predict_zero_proba(X, groups=g, kind="total")
    assert np.mean(draws == 0) == pytest.approx(np.mean(p0), abs=0.02)
    again = pickle.loads(pickle.dumps(weighted))
    np.testing.assert_array_equal(again.predict(X, groups=g), weighted.predict(X, groups=g))
    assert clone(weighted).get_params()["zero_inflation"] is None
    assert len(pickle.dumps(weighted)) < 50_000  # estimates only, not the training data
