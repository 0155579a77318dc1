"""Every family against lme4 / glmmTMB reference fits, simulation truth and invariances."""

import warnings
from contextlib import nullcontext

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm import (
    BinomialGLMMClassifier,
    BinomialGLMMRegressor,
    GammaGLMMRegressor,
    GaussianLMMRegressor,
    NegativeBinomialGLMMRegressor,
    NoGroupsWarning,
    PoissonGLMMRegressor,
)
from sklearn_glmm._core import CoreTerm, LMMProblem, make_controls
from sklearn_glmm.design import theta_index
from sklearn_glmm.families import GaussianFamily

from .conftest import core_problem, load_reference, load_reference_data, reference_design


def _fit_case(case):
    """Fit one reference case the way its R call does; returns (model, ref, data)."""
    ref = load_reference(case)
    factors = list(ref["design"]["group_columns"].values()) + list((ref["factor_levels"] or {}).keys())
    data = load_reference_data(ref["data"], factors=factors)
    X, groups = reference_design(ref, data)
    ((group, terms),) = ref["design"]["random"].items()
    slopes = [t for t in terms if t != "(Intercept)"]
    spec = f"({' + '.join(['1'] + slopes)} | {group})"
    kwargs = {}
    if case == "cbpp_laplace":
        model = BinomialGLMMRegressor(spec)
        y = data["incidence"] / data["size"]
        kwargs["sample_weight"] = data["size"]
    elif case == "contraception_rs":
        model = BinomialGLMMClassifier(spec)
        y = data["use"]
    elif case in ("owls_nb", "app_engagement_nb_tmb"):
        model = NegativeBinomialGLMMRegressor(spec)
        y = data[ref["response"]]
        if ref.get("offset_column"):
            kwargs["offset"] = data[ref["offset_column"]]
    else:
        model = GaussianLMMRegressor(spec, reml=ref["REML"])
        y = data[ref["response"]]
    with warnings.catch_warnings():
        # the NB size cap on data without overdispersion (app_engagement_nb_tmb) is expected
        warnings.filterwarnings("ignore", message="The negative-binomial size ran to its upper bound")
        model.fit(X, y, groups=groups, **kwargs)
    return model, ref, data


CASES = [
    "cbpp_laplace",
    "contraception_rs",
    "owls_nb",
    "app_engagement_nb_tmb",
    "sleepstudy_reml",
    "sleepstudy_ml",
]


@pytest.fixture(scope="module", params=CASES)
def case(request):
    return (request.param, *_fit_case(request.param))


def test_fixed_effects_match(case):
    _name, model, ref, _ = case
    expected = pd.Series(ref["fixef"])
    se = pd.Series(ref["fixef_se"])
    assert list(model.fixef_.index) == list(expected.index)
    tolerance = np.maximum(2e-3 * np.abs(expected), 0.02 * se)
    assert np.all(np.abs(model.fixef_ - expected) <= tolerance), (model.fixef_ - expected) / tolerance


def test_variance_components_match(case):
    _name, model, ref, _ = case
    expected = pd.DataFrame(ref["varcorr"])
    got = model.varcorr_
    assert list(got["group"]) == list(expected["group"])
    np.testing.assert_allclose(got["sdcor"], expected["sdcor"], rtol=3e-3)


def test_loglik_at_least_the_reference(case):
    _name, model, ref, _ = case
    reference = ref.get("loglik_tight_pirls") or ref["loglik"]
    assert model.loglik_ >= reference - 2e-3
    # and not implausibly far above it (the same objective)
    assert model.loglik_ <= reference + 0.05
    assert model.aic_ == pytest.approx(-2 * model.loglik_ + 2 * ref["loglik_df"], abs=1e-9)


def test_standard_errors_match(case):
    """Within 2 % of lme4, whose finite-difference Hessian is itself off by up to
    1.3 % (cbpp); within 0.1 % of glmmTMB's exact-Hessian SEs where the case has them."""
    _name, model, ref, _ = case
    np.testing.assert_allclose(model.fixef_se_, pd.Series(ref["fixef_se"]), rtol=0.02)
    crosscheck = (ref.get("crosscheck") or {}).get("fixef_se")
    if crosscheck:
        np.testing.assert_allclose(model.fixef_se_, pd.Series(crosscheck), rtol=1e-3)


def test_family_parameters_match(case):
    name, model, ref, _data = case
    if name == "owls_nb":
        assert model.nb_size_ == pytest.approx(ref["nb_size"], rel=3e-3)
    elif name == "app_engagement_nb_tmb":
        assert model.nb_size_ > 1e5  # runs off towards infinity, as glmmTMB's 4.8e6
    elif name.startswith("sleepstudy"):
        assert model.sigma_ == pytest.approx(ref["sigma"], rel=3e-3)
        assert model.varcorr_["group"].iloc[-1] == "Residual"
        assert "t value" in str(model.summary()) and "Pr(>|z|)" not in str(model.summary())


def test_fitted_values_match(case):
    _name, model, ref, data = case
    X, groups = reference_design(ref, data)
    head = slice(0, 20)
    kwargs = {"offset": data[ref["offset_column"]].iloc[head]} if ref.get("offset_column") else {}
    if isinstance(model, BinomialGLMMClassifier):
        fitted = model.predict_proba(X.iloc[head], groups=groups.iloc[head])[:, 1]
    else:
        fitted = model.predict(X.iloc[head], groups=groups.iloc[head], **kwargs)
    np.testing.assert_allclose(fitted, ref["fitted"], rtol=5e-3, atol=1e-4)


def test_classifier_api():
    model, ref, data = _fit_case("contraception_rs")
    X, groups = reference_design(ref, data)
    labels = np.where(data["use"] == 1, "yes", "no")
    clf = BinomialGLMMClassifier(model.random_effects).fit(X, labels, groups=groups)
    np.testing.assert_allclose(clf.fixef_, model.fixef_, rtol=1e-6)
    assert clf.classes_.tolist() == ["no", "yes"]
    proba = clf.predict_proba(X, groups=groups)
    assert proba.shape == (len(X), 2) and np.allclose(proba.sum(1), 1.0)
    np.testing.assert_allclose(
        clf.decision_function(X, groups=groups), np.log(proba[:, 1] / proba[:, 0]), rtol=1e-8
    )
    assert set(clf.predict(X, groups=groups)) <= {"no", "yes"}
    assert 0.6 < clf.score(X, labels, groups=groups) <= 1.0
    with pytest.raises(ValueError, match="Only binary classification is supported.*y has 3 classes"):
        BinomialGLMMClassifier().fit(X.iloc[:30], ["a", "b", "c"] * 10, groups=groups.iloc[:30])


def test_binomial_trials_equal_expanded_bernoulli_rows():
    """cbind(successes, failures) with trials as weights = one 0/1 row per trial."""
    model, ref, data = _fit_case("cbpp_laplace")
    rows = []
    for _, r in data.iterrows():
        rows += [dict(r, hit=1.0)] * int(r["incidence"]) + [dict(r, hit=0.0)] * int(
            r["size"] - r["incidence"]
        )
    long = pd.DataFrame(rows)
    X, groups = reference_design(ref, long)
    bernoulli = BinomialGLMMRegressor("(1 | herd)").fit(X, long["hit"], groups=groups)
    np.testing.assert_allclose(bernoulli.fixef_, model.fixef_, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(bernoulli.theta_, model.theta_, rtol=1e-5)
    # the likelihoods differ exactly by the binomial coefficients
    from scipy.special import gammaln

    n, k = data["size"].to_numpy(float), data["incidence"].to_numpy(float)
    log_choose = np.sum(gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1))
    assert model.loglik_ - bernoulli.loglik_ == pytest.approx(log_choose, abs=1e-6)


def _simulate_groups(rng, n_groups, per_group, sd):
    g = np.repeat(np.arange(n_groups), per_group)
    x = rng.normal(size=g.size)
    return g, x, rng.normal(0.0, sd, n_groups)[g]


def test_negative_binomial_recovers_size_and_effects(rng):
    g, x, b = _simulate_groups(rng, 200, 25, 0.5)
    mu = np.exp(1.0 + 0.4 * x + b)
    y = rng.negative_binomial(2.0, 2.0 / (2.0 + mu))
    model = NegativeBinomialGLMMRegressor().fit(x.reshape(-1, 1), y, groups=g)
    assert model.nb_size_ == pytest.approx(2.0, rel=0.15)
    assert abs(model.coef_[0] - 0.4) < 4 * model.fixef_se_.iloc[1]
    assert model.varcorr_["sdcor"].iloc[0] == pytest.approx(0.5, rel=0.15)
    assert "nb_size (estimated)" in str(model.summary())


def test_gamma_recovers_shape_and_effects(rng):
    g, x, b = _simulate_groups(rng, 200, 25, 0.4)
    mu = np.exp(0.5 - 0.3 * x + b)
    y = rng.gamma(5.0, mu / 5.0)
    model = GammaGLMMRegressor().fit(x.reshape(-1, 1), y, groups=g)
    assert model.gamma_shape_ == pytest.approx(5.0, rel=0.08)
    assert model.dispersion_ == pytest.approx(1 / model.gamma_shape_)
    assert abs(model.coef_[0] + 0.3) < 4 * model.fixef_se_.iloc[1]
    assert model.varcorr_["sdcor"].iloc[0] == pytest.approx(0.4, rel=0.15)
    with pytest.raises(ValueError, match="Gamma y must be positive"):
        GammaGLMMRegressor().fit(x.reshape(-1, 1), np.r_[0.0, y[1:]], groups=g)


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_binary_links_recover_truth(rng, link):
    from sklearn_glmm.families import get_link

    g, x, b = _simulate_groups(rng, 300, 20, 0.7)
    p = get_link(link).inverse(-0.3 + 0.8 * x + b)
    y = (rng.uniform(size=p.size) < p).astype(int)
    # cloglog's probabilities approach 1 doubly exponentially: at the largest linear
    # predictors of these data (eta > 3.5) they are within 10 eps of 1, and R's glm warns too
    expected = pytest.warns(UserWarning, match="numerically 0 or 1") if link == "cloglog" else nullcontext()
    with expected:
        clf = BinomialGLMMClassifier(link=link).fit(x.reshape(-1, 1), y, groups=g)
    assert abs(clf.coef_[0] - 0.8) < 4 * clf.fixef_se_.iloc[1]
    assert abs(clf.intercept_ + 0.3) < 4 * clf.fixef_se_.iloc[0]
    assert clf.varcorr_["sdcor"].iloc[0] == pytest.approx(0.7, rel=0.2)
    assert clf.converged_


def test_gaussian_lmm_recovers_truth_and_matches_ols_without_groups(rng):
    g, x, b = _simulate_groups(rng, 100, 10, 2.0)
    y = 3.0 + 1.5 * x + b + rng.normal(0, 1.0, g.size)
    model = GaussianLMMRegressor().fit(x.reshape(-1, 1), y, groups=g)
    assert model.sigma_ == pytest.approx(1.0, rel=0.1)
    assert model.varcorr_["sdcor"].iloc[0] == pytest.approx(2.0, rel=0.2)
    with pytest.warns(NoGroupsWarning, match="plain GLM"):
        ols = GaussianLMMRegressor().fit(x.reshape(-1, 1), y)
    coef = np.linalg.lstsq(np.column_stack([np.ones_like(x), x]), y, rcond=None)[0]
    np.testing.assert_allclose(ols.fixef_, coef, rtol=1e-10)
    assert ols.score(x.reshape(-1, 1), y) == pytest.approx(1 - np.var(y - coef[0] - coef[1] * x) / np.var(y))


def test_gaussian_laplace_path_equals_exact_lmm():
    """For a Gaussian response the Laplace approximation is exact (same theta, beta, sigma)."""
    ref = load_reference("sleepstudy_ml")
    data = load_reference_data("sleepstudy.csv", factors=["Subject"])
    codes, levels = pd.factorize(data["Subject"], sort=True)
    n = len(data)
    X = np.column_stack([np.ones(n), data["Days"]])
    y = data["Reaction"].to_numpy(float)
    term = CoreTerm(codes, X.copy(), len(levels), *theta_index(X.shape[1]))
    lmm = LMMProblem(X, y, np.ones(n), np.zeros(n), [term], make_controls(), reml=False)
    theta = np.array(ref["theta"])
    beta, _, r2, _, _ = lmm.solve(theta)
    sigma2 = r2 / n
    laplace = core_problem(GaussianFamily(sigma2=sigma2), X, y, codes, X.copy(), len(levels))
    ev = laplace.evaluate(theta * np.sqrt(sigma2), beta, sigma2, laplace.zero_modes())
    assert ev.deviance == pytest.approx(lmm.deviance(theta, reml=False), rel=1e-10)
    # and at the ML optimum the Laplace gradient vanishes in theta, beta and sigma^2
    assert np.max(np.abs(ev.grad_coef)) < 1e-6
    assert abs(ev.grad_param * sigma2) < 1e-3  # d D / d log sigma^2


@pytest.mark.parametrize("estimator", [BinomialGLMMRegressor(), PoissonGLMMRegressor()], ids=repr)
def test_integer_weights_equal_duplicated_rows_without_dispersion(estimator, rng):
    g, x, b = _simulate_groups(rng, 40, 6, 0.5)
    y = rng.binomial(1, 1 / (1 + np.exp(-(0.2 + x + b)))).astype(float)
    counts = rng.integers(1, 4, size=y.size)
    weighted = estimator.fit(x.reshape(-1, 1), y, groups=g, sample_weight=counts)
    fixef, theta, loglik = weighted.fixef_.copy(), weighted.theta_.copy(), weighted.loglik_
    repeated = estimator.fit(
        np.repeat(x, counts).reshape(-1, 1), np.repeat(y, counts), groups=np.repeat(g, counts)
    )
    np.testing.assert_allclose(repeated.fixef_, fixef, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(repeated.theta_, theta, rtol=1e-4, atol=1e-6)
    assert repeated.loglik_ == pytest.approx(loglik, abs=1e-6)


FORMULAS = {
    "cbpp_laplace": None,  # cbind() responses go through BinomialGLMMRegressor, not the formula
    "contraception_rs": ("use ~ age + I(age^2) + urban + livch + (urban | district)", "binomial"),
    "owls_nb": (
        "SiblingNegotiation ~ FoodTreatment * SexParent + offset(log(BroodSize)) + (1 | Nest)",
        "nbinom2",
    ),
    "sleepstudy_ml": ("Reaction ~ Days + (Days | Subject)", "gaussian"),
}


@pytest.mark.parametrize("name", [k for k, v in FORMULAS.items() if v])
def test_formula_interface_reproduces_each_family(name):
    pytest.importorskip("formulaic")
    from sklearn_glmm import glmer

    ref = load_reference(name)
    factors = list(ref["design"]["group_columns"].values()) + list((ref["factor_levels"] or {}).keys())
    data = load_reference_data(ref["data"], factors=factors)
    formula, family = FORMULAS[name]
    kwargs = {"reml": False} if family == "gaussian" else {}
    model = glmer(formula, data, family=family, **kwargs)
    expected = pd.Series(ref["fixef"])
    assert list(model.fixef_.index) == list(expected.index)  # lme4's names
    tolerance = np.maximum(2e-3 * np.abs(expected), 0.02 * pd.Series(ref["fixef_se"]))
    assert np.all(np.abs(model.fixef_ - expected) <= tolerance)
    assert model.loglik_ >= (ref.get("loglik_tight_pirls") or ref["loglik"]) - 2e-3


@pytest.mark.parametrize(
    "estimator",
    [NegativeBinomialGLMMRegressor(), GammaGLMMRegressor(), BinomialGLMMClassifier(), GaussianLMMRegressor()],
    ids=lambda e: type(e).__name__,
)
def test_simulate_draws_from_each_family(estimator, rng):
    g, x, b = _simulate_groups(rng, 30, 10, 0.3)
    mu = np.exp(0.5 + 0.2 * x + b)
    y = {
        "NegativeBinomialGLMMRegressor": rng.negative_binomial(3.0, 3.0 / (3.0 + mu)),
        "GammaGLMMRegressor": rng.gamma(4.0, mu / 4.0),
        "BinomialGLMMClassifier": (rng.uniform(size=mu.size) < mu / (1 + mu)).astype(int),
        "GaussianLMMRegressor": mu + rng.normal(size=mu.size),
    }[type(estimator).__name__]
    model = estimator.fit(x.reshape(-1, 1), y, groups=g)
    draws = model.simulate(x.reshape(-1, 1), groups=g, n_simulations=200, random_state=0)
    assert draws.shape == (y.size, 200) and np.all(np.isfinite(draws))
    # the simulated mean tracks the fitted mean
    fitted = (
        model.predict_proba(x.reshape(-1, 1), groups=g)[:, 1]
        if hasattr(model, "classes_")
        else (model.predict(x.reshape(-1, 1), groups=g))
    )
    assert np.mean(draws) == pytest.approx(np.mean(fitted), rel=0.05)
