"""Adaptive Gauss-Hermite quadrature (n_agq > 1) against lme4 and against exact integrals."""

import pickle

import numpy as np
import pandas as pd
import pytest
from scipy import integrate
from scipy.special import expit, gammaln
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_glmm import (
    BinomialGLMMClassifier,
    BinomialGLMMRegressor,
    NegativeBinomialGLMMRegressor,
    NoGroupsWarning,
    PoissonGLMMRegressor,
    SingularFitWarning,
)
from sklearn_glmm._core._agq import QuadratureRule
from sklearn_glmm.families import BinomialFamily, NegativeBinomialFamily, PoissonFamily

from .conftest import core_problem, load_reference, load_reference_data, reference_design, with_quadrature


def _cbpp(n_agq):
    ref = load_reference("cbpp_agq25")
    data = load_reference_data(ref["data"], factors=["herd", "period"])
    X, groups = reference_design(ref, data)
    model = BinomialGLMMRegressor("(1 | herd)", n_agq=n_agq)
    model.fit(X, data["incidence"] / data["size"], groups=groups, sample_weight=data["size"])
    model.training_data = {
        "X": X,
        "y": data["incidence"] / data["size"],
        "groups": groups,
        "sample_weight": data["size"],
    }
    return model, ref


@pytest.fixture(scope="module")
def cbpp_agq25():
    return _cbpp(25)


def test_cbpp_agq25_estimates_match_lme4(cbpp_agq25):
    model, ref = cbpp_agq25
    expected = pd.Series(ref["fixef"])
    se = pd.Series(ref["fixef_se"])
    assert list(model.fixef_.index) == list(expected.index)
    tolerance = np.maximum(2e-3 * np.abs(expected), 0.02 * se)
    assert np.all(np.abs(model.fixef_ - expected) <= tolerance), (model.fixef_ - expected) / tolerance
    np.testing.assert_allclose(model.varcorr_["sdcor"], pd.DataFrame(ref["varcorr"])["sdcor"], rtol=3e-3)
    # lme4's vcov for nAGQ > 1 is the finite-difference Hessian of the same deviance
    np.testing.assert_allclose(model.fixef_se_, se, rtol=0.02)
    assert model.converged_


def test_cbpp_agq25_loglik_is_the_true_marginal(cbpp_agq25):
    """logLik equals the integrated marginal likelihood, not lme4's reported -50.005."""
    model, ref = cbpp_agq25
    assert model.loglik_ == pytest.approx(ref["loglik_marginal_quadrature"], abs=1e-3)
    assert abs(model.loglik_ - ref["loglik"]) > 40  # lme4's value omits the saturated constant
    assert model.aic_ == pytest.approx(-2 * model.loglik_ + 2 * ref["loglik_df"], abs=1e-9)
    assert model.bic_ == pytest.approx(-2 * model.loglik_ + np.log(ref["n_obs"]) * ref["loglik_df"], abs=1e-9)
    # the same scale as the Laplace fit, so the two are comparable (the reference
    # Laplace logLik of this model is -92.03)
    laplace = load_reference("cbpp_laplace")
    assert abs(model.loglik_ - laplace["loglik"]) < 0.1


def test_cbpp_agq25_summary_names_the_method(cbpp_agq25):
    model, _ = cbpp_agq25
    text = str(model.summary())
    assert "Adaptive Gauss-Hermite quadrature, nAGQ = 25" in text
    assert "Hessian of the AGQ deviance" in text
    assert "Laplace" not in text


def test_cbpp_agq_loglik_equals_direct_integration(cbpp_agq25):
    """At our estimates, the quadrature log-likelihood equals scipy's adaptive integral."""
    model, ref = cbpp_agq25
    data = load_reference_data(ref["data"], factors=["herd", "period"])
    X, groups = reference_design(ref, data)
    eta = model.intercept_ + X.to_numpy() @ model.coef_
    sd = float(model.varcorr_["sdcor"].iloc[0])
    k, n = data["incidence"].to_numpy(float), data["size"].to_numpy(float)
    total = float(np.sum(gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)))
    for level in groups.unique():
        rows = (groups == level).to_numpy()

        def integrand(b, rows=rows):
            p = expit(eta[rows] + b)
            return (
                np.exp(np.sum(k[rows] * np.log(p) + (n[rows] - k[rows]) * np.log1p(-p)))
                * np.exp(-0.5 * (b / sd) ** 2)
                / (sd * np.sqrt(2 * np.pi))
            )

        value, _ = integrate.quad(integrand, -12 * sd, 12 * sd, epsabs=0, epsrel=1e-12, limit=200)
        total += np.log(value)
    assert model.loglik_ == pytest.approx(total, abs=1e-7)


def _laplace_problem(family, rng, n_groups=12, per_group=6, slope=False):
    g = np.repeat(np.arange(n_groups), per_group)
    n = g.size
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    b = rng.normal(0, 0.8, n_groups)[g]
    eta = 0.3 + 0.5 * x + (b * x if slope else b)
    if isinstance(family, BinomialFamily):
        y = (rng.uniform(size=n) < expit(eta)).astype(float)
    else:
        y = rng.poisson(np.exp(eta)).astype(float)
    Z = x[:, None].copy() if slope else np.ones((n, 1))
    return core_problem(family, X, y, g, Z, n_groups)


@pytest.mark.parametrize(
    "family, slope",
    [
        (BinomialFamily(), False),
        (PoissonFamily(), False),
        (PoissonFamily(), True),
        (BinomialFamily("probit"), False),
    ],
    ids=["binomial", "poisson", "poisson-scalar-slope", "probit"],
)
def test_one_point_is_laplace_and_gradient_matches_finite_differences(family, slope, rng):
    lap = _laplace_problem(family, rng, slope=slope)
    theta, beta = np.array([0.7]), np.array([0.2, 0.4])
    u0 = lap.zero_modes()
    laplace = lap.evaluate(theta, beta, None, u0)
    agq = with_quadrature(lap, 15)
    # one point is the Laplace approximation (the quadrature code with one node)
    agq1 = with_quadrature(lap, 2)
    agq1.quadrature = QuadratureRule(1)
    one = agq1.evaluate(theta, beta, None, u0)
    assert one.deviance == pytest.approx(laplace.deviance, rel=1e-12)
    np.testing.assert_allclose(one.grad_theta, laplace.grad_theta, rtol=1e-8)
    np.testing.assert_allclose(one.grad_coef, laplace.grad_coef, rtol=1e-8, atol=1e-10)

    ev = agq.evaluate(theta, beta, None, u0)

    def dev(t, b):
        return agq.evaluate(t, b, None, u0, gradient=False).deviance

    h = 1e-5
    fd_theta = (dev(theta + h, beta) - dev(theta - h, beta)) / (2 * h)
    fd_beta = [(dev(theta, beta + h * e) - dev(theta, beta - h * e)) / (2 * h) for e in np.eye(2)]
    np.testing.assert_allclose(ev.grad_theta, [fd_theta], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ev.grad_coef, fd_beta, rtol=1e-5, atol=1e-6)
    # more points change the answer less and less: 15 and 25 points agree closely
    more = with_quadrature(lap, 25).evaluate(theta, beta, None, u0, gradient=False).deviance
    assert dev(theta, beta) == pytest.approx(more, abs=1e-6)


def test_one_point_is_laplace_with_a_shape_parameter(rng):
    lap = _laplace_problem(NegativeBinomialFamily(size=3.0), rng)
    theta, beta, u0 = np.array([0.5]), np.array([0.2, 0.4]), lap.zero_modes()
    laplace = lap.evaluate(theta, beta, 3.0, u0)
    agq = with_quadrature(lap, 2)
    agq.quadrature = QuadratureRule(1)
    one = agq.evaluate(theta, beta, 3.0, u0)
    assert one.deviance == pytest.approx(laplace.deviance, rel=1e-12)
    assert one.grad_param == pytest.approx(laplace.grad_param, rel=1e-5)


def test_agq_fit_with_a_shape_parameter_converges(rng):
    g = np.repeat(np.arange(40), 8)
    x = rng.normal(size=g.size)
    mu = np.exp(0.5 + 0.3 * x + rng.normal(0, 0.5, 40)[g])
    y = rng.negative_binomial(3.0, 3.0 / (3.0 + mu))
    laplace = NegativeBinomialGLMMRegressor().fit(x.reshape(-1, 1), y, groups=g)
    agq = NegativeBinomialGLMMRegressor(n_agq=9).fit(x.reshape(-1, 1), y, groups=g)
    assert agq.converged_
    # counts of ~2 per row, 8 rows per group: Laplace is already close
    np.testing.assert_allclose(agq.fixef_, laplace.fixef_, atol=0.02)
    assert agq.loglik_ == pytest.approx(laplace.loglik_, abs=0.5)
    assert agq.nb_size_ == pytest.approx(laplace.nb_size_, rel=0.1)


def test_agq_corrects_laplace_on_small_binary_groups(rng):
    """Pairs of binary rows (the case where Laplace is known to shrink the SD):
    over 20 simulated data sets, AGQ's SD estimate is on average larger than
    Laplace's and closer to the truth 2.0."""
    sd_laplace, sd_agq = [], []
    for seed in range(20):
        r = np.random.default_rng(seed)
        g = np.repeat(np.arange(150), 2)
        x = r.normal(size=g.size)
        y = (r.uniform(size=g.size) < expit(-0.5 + 0.5 * x + r.normal(0, 2.0, 150)[g])).astype(int)
        for n_agq, out in ((1, sd_laplace), (15, sd_agq)):
            model = BinomialGLMMClassifier(n_agq=n_agq).fit(x.reshape(-1, 1), y, groups=g)
            out.append(model.varcorr_["sdcor"].iloc[0])
    assert np.mean(sd_agq) > np.mean(sd_laplace) + 0.1
    assert abs(np.mean(sd_agq) - 2.0) < abs(np.mean(sd_laplace) - 2.0)


def test_intervals_use_the_quadrature_deviance(cbpp_agq25):
    model, _ = cbpp_agq25
    data = model.training_data
    profile = model.confint("profile", parm=[".sig01", "period2"], **data)
    sd, slope = model.varcorr_["sdcor"].iloc[0], model.fixef_["period2"]
    assert profile.loc[".sig01"].iloc[0] < sd < profile.loc[".sig01"].iloc[1]
    assert profile.loc["period2"].iloc[0] < slope < profile.loc["period2"].iloc[1]
    # a fixed effect of this well-determined model: profile and Wald intervals nearly agree
    wald = model.confint("wald").loc["period2"]
    np.testing.assert_allclose(profile.loc["period2"], wald, atol=0.1)
    boot = model.confint("bootstrap", n_boot=4, random_state=0, parm="period2", **data)
    assert np.all(np.isfinite(boot.to_numpy()))
    assert np.all(np.isfinite(model.ranef_condsd_["herd"].to_numpy()))


def test_agq_needs_a_single_scalar_random_effect(rng):
    g = np.repeat(np.arange(20), 10)
    X = pd.DataFrame({"x": rng.normal(size=200)})
    y = rng.poisson(2.0, size=200)
    with pytest.raises(ValueError, match="single scalar random effect.*2 random effects"):
        PoissonGLMMRegressor("(1 + x | g)", n_agq=5).fit(X, y, groups=pd.Series(g, name="g"))
    # a scalar slope is a scalar random effect (no slope variance in these data)
    with pytest.warns(SingularFitWarning):
        PoissonGLMMRegressor("(0 + x | g)", n_agq=5).fit(X, y, groups=pd.Series(g, name="g"))
    for bad in (0, 101, 2.5):
        with pytest.raises(InvalidParameterError, match="n_agq"):
            PoissonGLMMRegressor(n_agq=bad).fit(X, y, groups=g)


def test_agq_fit_is_deterministic_and_without_groups_is_the_glm(rng):
    model, _ = _cbpp(7)
    again, _ = _cbpp(7)
    np.testing.assert_array_equal(model.fixef_, again.fixef_)
    assert model.loglik_ == again.loglik_
    # the quadrature fit survives pickling, and profiles from the data use its deviance
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.ranef_condsd_["herd"], model.ranef_condsd_["herd"])
    assert restored.n_agq == 7
    profile = restored.confint("profile", parm="period2", **model.training_data)
    assert profile.iloc[0, 0] < model.fixef_["period2"] < profile.iloc[0, 1]
    x = rng.normal(size=50).reshape(-1, 1)
    y = rng.poisson(2.0, size=50)
    # on purpose: n_agq without groups is the GLM
    with pytest.warns(NoGroupsWarning):
        glm = PoissonGLMMRegressor(n_agq=9).fit(x, y)
    with pytest.warns(NoGroupsWarning):
        plain = PoissonGLMMRegressor().fit(x, y)
    np.testing.assert_allclose(glm.fixef_, plain.fixef_)
    assert "Laplace" not in str(glm.summary()) and "Adaptive" not in str(glm.summary())
