"""Several grouping factors: crossed, nested and uncorrelated terms.

References: lme4 1.1.31 (``crossed_binary_sim``, ``penicillin_crossed``) from the
shared reference set, and ``nested_poisson_sim`` / ``sleepstudy_uncorrelated``
made with ``tests/data/extra_references.R`` on this project's machine.
Tolerances: fixed effects within max(2e-3 relative, 2 % of
their SE), SDs within 3e-3 relative, logLik >= the reference's tight value - 2e-3.
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GroupKFold, cross_val_score

from sklearn_glmm import (
    BinomialGLMMClassifier,
    BinomialGLMMRegressor,
    GaussianLMMRegressor,
    PoissonGLMMRegressor,
)
from sklearn_glmm._core import CoreTerm, fit, make_controls
from sklearn_glmm.families import BinomialFamily, PoissonFamily

from .conftest import core_problem, load_reference, load_reference_data, reference_design


def _assert_fixef(model, ref, se_key="fixef_se"):
    for name, value in ref["fixef"].items():
        tol = max(2e-3 * abs(value), 0.02 * ref[se_key][name])
        assert abs(model.fixef_[name] - value) <= tol, (name, model.fixef_[name], value)


def _assert_sd(model, ref):
    ours = model.varcorr_.set_index(["group", "var1"])["sdcor"]
    for row in ref["varcorr"]:
        if row["var2"] is None and row["group"] != "Residual":
            want = row["sdcor"]
            got = ours.loc[(row["group"], row["var1"])]
            assert abs(got - want) <= 3e-3 * want, (row["group"], got, want)


def test_crossed_binary_matches_lme4_and_glmmtmb():
    ref = load_reference("crossed_binary_sim")
    data = load_reference_data(ref["data"], factors=["subject", "item"])
    X, groups = reference_design(ref, data)
    model = BinomialGLMMClassifier("(1 | subject) + (1 | item)").fit(X, data["y"], groups=groups)
    _assert_fixef(model, ref)
    _assert_sd(model, ref)
    tight = ref["loglik_tight_pirls"]
    assert model.loglik_ >= tight - 2e-3
    # our optimum is glmmTMB's (a better likelihood than lme4's stopping point)
    cross = ref["crosscheck"]
    assert model.loglik_ == pytest.approx(cross["loglik"], abs=2e-6)
    np.testing.assert_allclose(model.fixef_se_.to_numpy(), list(cross["fixef_se"].values()), rtol=2e-3)
    np.testing.assert_allclose(model.theta_, cross["theta"], rtol=1e-3)
    assert list(model.ranef_) == ["subject", "item"]
    assert model.ranef_["subject"].shape == (60, 1) and model.ranef_["item"].shape == (40, 1)
    for factor in ("subject", "item"):
        want = pd.Series({level: row["(Intercept)"] for level, row in ref["ranef"][factor].items()})
        got = model.ranef_[factor]["(Intercept)"].reindex(want.index)
        np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), atol=2e-3)
    assert list(model.varcorr_["group"]) == ["subject", "item"]
    text = str(model.summary())
    assert (
        "subject" in text and "item" in text and "Number of obs: 2400, groups:  subject, 60; item, 40" in text
    )


def test_penicillin_crossed_gaussian_ml_matches_lme4():
    ref = load_reference("penicillin_crossed")
    data = load_reference_data(ref["data"], factors=["plate", "sample"])
    X, groups = reference_design(ref, data)
    model = GaussianLMMRegressor("(1 | plate) + (1 | sample)", reml=False).fit(
        X, data["diameter"], groups=groups
    )
    _assert_fixef(model, ref)
    _assert_sd(model, ref)
    assert model.loglik_ >= ref["loglik"] - 2e-3
    assert model.loglik_ == pytest.approx(ref["loglik"], abs=1e-6)
    np.testing.assert_allclose(model.theta_, ref["theta"], rtol=1e-4)
    assert model.sigma_ == pytest.approx(ref["sigma"], rel=1e-4)
    np.testing.assert_allclose(model.fixef_se_.to_numpy(), list(ref["fixef_se"].values()), rtol=1e-4)
    # the written order of the bars does not matter: plate (24 levels) comes first, as in lme4
    swapped = GaussianLMMRegressor("(1 | sample) + (1 | plate)", reml=False).fit(
        X, data["diameter"], groups=groups
    )
    np.testing.assert_allclose(swapped.theta_, model.theta_, rtol=1e-8)
    assert list(swapped.varcorr_["group"]) == ["plate", "sample", "Residual"]


def test_nested_poisson_matches_lme4():
    ref = load_reference("nested_poisson_sim")
    data = load_reference_data(ref["data"], factors=["clinic", "user"])
    groups = data[["clinic", "user"]]
    model = PoissonGLMMRegressor("(1 | clinic/user)").fit(data[["x"]], data["y"], groups=groups)
    _assert_fixef(model, ref)
    _assert_sd(model, ref)
    assert model.loglik_ >= ref["loglik"] - 2e-3
    assert model.loglik_ == pytest.approx(ref["loglik"], abs=1e-3)
    assert {k: len(v) for k, v in model.group_levels_.items()} == ref["n_groups"]
    # lme4's names: the inner factor is "user:clinic", its levels "u1:c01"
    assert list(model.varcorr_["group"]) == ["user:clinic", "clinic"]
    ref_modes = pd.Series(ref["ranef"]["user:clinic"]["(Intercept)"])
    ours = model.ranef_["user:clinic"]["(Intercept)"]
    assert ours.index[0] == "u1:c01"
    np.testing.assert_allclose(np.sort(ours.to_numpy()), np.sort(ref_modes.to_numpy()), atol=2e-3)
    # "u1" of clinic c01 and "u1" of clinic c02 are different users
    explicit = PoissonGLMMRegressor("(1 | clinic) + (1 | user:clinic)").fit(
        data[["x"]], data["y"], groups=groups
    )
    assert explicit.loglik_ == pytest.approx(model.loglik_, abs=1e-8)
    crossed_wrongly = PoissonGLMMRegressor("(1 | clinic) + (1 | user)").fit(
        data[["x"]], data["y"], groups=groups
    )
    assert crossed_wrongly.group_levels_["user"].size == 8
    assert crossed_wrongly.loglik_ < model.loglik_ - 1.0


def test_uncorrelated_terms_match_lme4():
    ref = load_reference("sleepstudy_uncorrelated")
    data = load_reference_data(ref["data"], factors=["Subject"])
    model = GaussianLMMRegressor("(1 + Days || Subject)").fit(
        data[["Days"]], data["Reaction"], groups=data["Subject"]
    )
    _assert_fixef(model, ref)
    _assert_sd(model, ref)
    assert model.loglik_ == pytest.approx(ref["loglik"], abs=1e-6)
    np.testing.assert_allclose(model.theta_, ref["theta"], rtol=1e-4)
    assert list(model.varcorr_["group"]) == ["Subject", "Subject.1", "Residual"]
    assert model.varcorr_["var2"].isna().all()  # no covariance row
    assert list(model.ranef_["Subject"].columns) == ["(Intercept)", "Days"]
    # the same model written as two bars
    two = GaussianLMMRegressor("(1 | Subject) + (0 + Days | Subject)").fit(
        data[["Days"]], data["Reaction"], groups=data["Subject"]
    )
    assert two.loglik_ == pytest.approx(model.loglik_, abs=1e-9)


def test_uncorrelated_poisson_slope_is_between_intercept_and_correlated_fits(app_engagement):
    X, y, g = app_engagement[["day_centered"]], app_engagement["logins"], app_engagement["user_id"]
    ri = PoissonGLMMRegressor("1").fit(X, y, groups=g)
    unc = PoissonGLMMRegressor("(1 + day_centered || user_id)").fit(X, y, groups=g)
    full = PoissonGLMMRegressor("(1 + day_centered | user_id)").fit(X, y, groups=g)
    assert ri.loglik_ - 1e-6 <= unc.loglik_ <= full.loglik_ + 1e-6
    assert unc.theta_.size == 2 and full.theta_.size == 3


def _crossed_poisson(rng, n_a=80, n_b=30, sd_a=0.6, sd_b=0.4):
    a = np.repeat(np.arange(n_a), n_b)
    b = np.tile(np.arange(n_b), n_a)
    keep = rng.random(a.size) < 0.7  # unbalanced
    a, b = a[keep], b[keep]
    x = rng.normal(size=a.size)
    eta = 0.5 + 0.3 * x + rng.normal(0, sd_a, n_a)[a] + rng.normal(0, sd_b, n_b)[b]
    y = rng.poisson(np.exp(eta))
    groups = pd.DataFrame({"user": [f"u{i}" for i in a], "day": b})
    return pd.DataFrame({"x": x}), y, groups


def test_crossed_poisson_recovers_simulation_truth():
    # 8 independent replicates: the SDs are within 30 % of the truth in every one
    # (SE of the SD estimate is ~10 % for 80 levels and ~15 % for 30)
    rng = np.random.default_rng(4)
    estimates = []
    for _ in range(8):
        X, y, groups = _crossed_poisson(rng)
        model = PoissonGLMMRegressor("(1 | user) + (1 | day)").fit(X, y, groups=groups)
        sd = model.varcorr_.set_index("group")["sdcor"]
        estimates.append([sd["user"], sd["day"], model.coef_[0]])
    estimates = np.array(estimates)
    assert np.all(np.abs(estimates[:, 0] / 0.6 - 1) < 0.3)
    assert np.all(np.abs(estimates[:, 1] / 0.4 - 1) < 0.3)
    assert abs(estimates[:, 2].mean() - 0.3) < 0.02
    assert abs(estimates[:, 0].mean() / 0.6 - 1) < 0.1 and abs(estimates[:, 1].mean() / 0.4 - 1) < 0.15


@pytest.mark.parametrize("family", [PoissonFamily(), BinomialFamily()])
def test_multilevel_gradient_equals_finite_differences(family):
    rng = np.random.default_rng(1)
    n = 400
    a, b = rng.integers(0, 25, n), rng.integers(0, 7, n)
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    eta = 0.2 + 0.4 * x + rng.normal(0, 0.5, 25)[a] + rng.normal(0, 0.5, 7)[b] * x
    y = rng.poisson(np.exp(eta)) if family.name == "poisson" else rng.binomial(1, 1 / (1 + np.exp(-eta)))
    # a correlated intercept and slope on a, an uncorrelated intercept and slope on b
    terms = [
        CoreTerm(a, X, 25, np.array([0, 1, 1]), np.array([0, 0, 1])),
        CoreTerm(b, X, 7, np.array([0, 1]), np.array([0, 1])),
    ]
    problem = core_problem(family, X, y.astype(float), None, None, None, terms=terms)
    theta, beta = np.array([0.6, 0.1, 0.3, 0.4, 0.5]), np.array([0.1, 0.3])
    u0 = problem.zero_modes()
    ev = problem.evaluate(theta, beta, None, u0)

    def dev(t, b):
        return problem.evaluate(t, b, None, u0, gradient=False).deviance

    h = 1e-6
    for j in range(theta.size):
        e = np.zeros(theta.size)
        e[j] = h
        fd = (dev(theta + e, beta) - dev(theta - e, beta)) / (2 * h)
        assert ev.grad_theta[j] == pytest.approx(fd, rel=1e-5, abs=1e-5)
    for j in range(beta.size):
        e = np.zeros(beta.size)
        e[j] = h
        fd = (dev(theta, beta + e) - dev(theta, beta - e)) / (2 * h)
        assert ev.grad_coef[j] == pytest.approx(fd, rel=1e-5, abs=1e-5)


def test_one_factor_through_the_blocked_engine_equals_the_fast_path(app_engagement):
    X, y, g = app_engagement[["day_centered"]], app_engagement["logins"], app_engagement["user_id"]
    fast = PoissonGLMMRegressor("(1 + day_centered | user_id)").fit(X, y, groups=g)
    codes = pd.factorize(g, sort=True)[0]
    n = len(y)
    Z = np.column_stack([np.ones(n), X["day_centered"]])
    # a second term with one level and an empty covariate: the blocked system, same model
    terms = [
        CoreTerm(codes, Z, 50, np.array([0, 1, 1]), np.array([0, 0, 1])),
        CoreTerm(np.zeros(n, dtype=int), np.zeros((n, 1)), 1, np.array([0]), np.array([0])),
    ]
    problem = core_problem(PoissonFamily(), Z, y.to_numpy(float), None, None, None, terms=terms)
    assert problem.layout is not None
    ev = problem.evaluate(np.append(fast.theta_, 0.0), fast.fixef_.to_numpy(), None, problem.zero_modes())
    assert -0.5 * ev.deviance == pytest.approx(fast.loglik_, abs=1e-8)


def test_predictions_with_one_unseen_factor_use_the_other_factors_modes():
    rng = np.random.default_rng(2)
    X, y, groups = _crossed_poisson(rng, n_a=40, n_b=20)
    model = PoissonGLMMRegressor("(1 | user) + (1 | day)").fit(X, y, groups=groups)
    Xn = pd.DataFrame({"x": [0.5, 0.5, 0.5, 0.5]})
    new = pd.DataFrame({"user": ["u3", "u3", "new", "new"], "day": [4, 999, 4, 999]})
    pred = model.predict(Xn, groups=new)
    fixed = model.intercept_ + 0.5 * model.coef_[0]
    bu = model.ranef_["user"].loc["u3", "(Intercept)"]
    bd = model.ranef_["day"].loc[4, "(Intercept)"]
    np.testing.assert_allclose(pred, np.exp([fixed + bu + bd, fixed + bu, fixed + bd, fixed]), rtol=1e-12)
    # marginal: integrate only over the factors whose level is new
    marginal = clone(model).set_params(new_groups="marginal").fit(X, y, groups=groups).predict(Xn, groups=new)
    var_u, var_d = model.varcorr_.set_index("group")["vcov"][["user", "day"]]
    np.testing.assert_allclose(
        marginal,
        np.exp(
            [fixed + bu + bd, fixed + bu + var_d / 2, fixed + bd + var_u / 2, fixed + (var_u + var_d) / 2]
        ),
        rtol=1e-9,
    )
    with pytest.raises(ValueError, match="not seen in fit"):
        clone(model).set_params(new_groups="error").fit(X, y, groups=groups).predict(Xn, groups=new)


def test_group_column_list_and_cross_validation():
    rng = np.random.default_rng(3)
    X, y, groups = _crossed_poisson(rng, n_a=40, n_b=20)
    data = pd.concat([X, groups], axis=1)
    by_column = PoissonGLMMRegressor("(1 | user) + (1 | day)", group_column=["user", "day"]).fit(data, y)
    direct = PoissonGLMMRegressor("(1 | user) + (1 | day)").fit(X, y, groups=groups)
    assert by_column.loglik_ == pytest.approx(direct.loglik_, abs=1e-10)
    np.testing.assert_allclose(by_column.predict(data), direct.predict(X, groups=groups))
    scores = cross_val_score(by_column, data, y, groups=groups["user"], cv=GroupKFold(3))
    assert np.all(np.isfinite(scores)) and np.all(scores > 0)
    # a 2-D array maps its columns to the factors in the order written
    array = PoissonGLMMRegressor("(1 | user) + (1 | day)").fit(X, y, groups=groups.to_numpy())
    assert array.loglik_ == pytest.approx(direct.loglik_, abs=1e-10)


@pytest.mark.parametrize(
    "groups, match",
    [
        (lambda g: g[["user"]], r"factors \['user', 'day'\] but groups has one column"),
        (lambda g: g.rename(columns={"day": "week"}), r"needs \['day'\]"),
        (lambda g: g.to_numpy()[:, :1].repeat(3, axis=1), "3 columns but random_effects uses"),
        (lambda g: g.iloc[:-1], "labels but X has"),
    ],
)
def test_bad_groups_for_several_factors(groups, match):
    rng = np.random.default_rng(3)
    X, y, g = _crossed_poisson(rng, n_a=10, n_b=5)
    with pytest.raises(ValueError, match=match):
        PoissonGLMMRegressor("(1 | user) + (1 | day)").fit(X, y, groups=groups(g))


def test_binomial_regressor_with_trials_and_crossed_factors():
    # the weighted (trials) form equals the expanded Bernoulli rows, with two factors
    rng = np.random.default_rng(5)
    a, b = np.repeat(np.arange(15), 6), np.tile(np.arange(6), 15)
    trials = rng.integers(1, 5, a.size)
    p = 1 / (1 + np.exp(-(0.2 + rng.normal(0, 0.7, 15)[a] + rng.normal(0, 0.5, 6)[b])))
    succ = rng.binomial(trials, p)
    groups = pd.DataFrame({"a": a, "b": b})
    agg = BinomialGLMMRegressor("(1 | a) + (1 | b)").fit(
        np.empty((a.size, 0)), succ / trials, groups=groups, sample_weight=trials
    )
    rows = np.repeat(np.arange(a.size), trials)
    yy = np.concatenate([np.r_[np.ones(s), np.zeros(t - s)] for s, t in zip(succ, trials)])
    long = BinomialGLMMRegressor("(1 | a) + (1 | b)").fit(
        np.empty((rows.size, 0)), yy, groups=groups.iloc[rows]
    )
    np.testing.assert_allclose(agg.theta_, long.theta_, rtol=1e-5)
    np.testing.assert_allclose(agg.fixef_, long.fixef_, rtol=1e-6)


def test_crossed_conditional_sds_and_residuals_match_lme4():
    ref = load_reference("crossed_binary_sim")
    data = load_reference_data(ref["data"], factors=["subject", "item"])
    X, groups = reference_design(ref, data)
    model = BinomialGLMMClassifier("(1 | subject) + (1 | item)").fit(X, data["y"], groups=groups)
    condsd = model.ranef_condsd_
    for factor in ("subject", "item"):
        want = pd.Series({level: row["(Intercept)"] for level, row in ref["ranef_condsd"][factor].items()})
        got = condsd[factor]["(Intercept)"].reindex(want.index)
        np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=3e-3)
    # Pearson residuals of the classifier use the fitted probabilities (not the labels)
    pearson = model.residuals(X, data["y"], groups, kind="pearson")
    np.testing.assert_allclose(pearson[:20], ref["pearson_resid"][:20], atol=2e-3)
    wald = model.confint("wald")
    assert list(wald.index) == [".sig01", ".sig02", "(Intercept)", "x"]


def test_quadrature_and_zero_inflation_refuse_several_factors():
    from sklearn_glmm import ZeroInflatedPoissonGLMMRegressor

    rng = np.random.default_rng(3)
    X, y, groups = _crossed_poisson(rng, n_a=10, n_b=5)
    with pytest.raises(ValueError, match="n_agq=5 .* single scalar random effect"):
        PoissonGLMMRegressor("(1 | user) + (1 | day)", n_agq=5).fit(X, y, groups=groups)
    with pytest.raises(ValueError, match="one grouping factor"):
        ZeroInflatedPoissonGLMMRegressor("(1 | user) + (1 | day)").fit(X, y, groups=groups)


def test_formula_interface_with_several_bars():
    pytest.importorskip("formulaic")
    from sklearn_glmm import glmer

    ref = load_reference("crossed_binary_sim")
    data = load_reference_data(ref["data"], factors=["subject", "item"])
    model = glmer("y ~ x + (1 | subject) + (1 | item)", data, family="binomial")
    assert model.loglik_ == pytest.approx(ref["crosscheck"]["loglik"], abs=2e-6)
    nested_ref = load_reference("nested_poisson_sim")
    nested = load_reference_data(nested_ref["data"], factors=["clinic", "user"])
    fit = glmer("y ~ x + (1 | clinic/user)", nested, family="poisson")
    assert fit.loglik_ == pytest.approx(nested_ref["loglik"], abs=1e-3)
    sleep_ref = load_reference("sleepstudy_uncorrelated")
    sleep = load_reference_data(sleep_ref["data"], factors=["Subject"])
    lmm = GaussianLMMRegressor.from_formula("Reaction ~ Days + (Days || Subject)", sleep)
    assert lmm.loglik_ == pytest.approx(sleep_ref["loglik"], abs=1e-6)


@pytest.mark.parametrize("family_name", ["negative_binomial", "gamma"])
def test_multilevel_gradient_with_a_shape_parameter(family_name):
    # NB size and Gamma shape use the observed-information Laplace form: the
    # gradient in (theta, beta, param) must still equal finite differences
    from sklearn_glmm.families import GammaFamily, NegativeBinomialFamily

    rng = np.random.default_rng(7)
    n = 300
    a, b = rng.integers(0, 20, n), rng.integers(0, 6, n)
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    mu = np.exp(0.5 + 0.3 * x + rng.normal(0, 0.4, 20)[a] + rng.normal(0, 0.3, 6)[b])
    if family_name == "negative_binomial":
        family, param = NegativeBinomialFamily(), 3.0
        y = rng.negative_binomial(param, param / (param + mu)).astype(float)
    else:
        family, param = GammaFamily(link="log"), 4.0
        y = rng.gamma(param, mu / param)
    one = lambda codes, G: CoreTerm(codes, np.ones((n, 1)), G, np.array([0]), np.array([0]))
    problem = core_problem(family, X, y, None, None, None, terms=[one(a, 20), one(b, 6)])
    theta, beta = np.array([0.4, 0.3]), np.array([0.4, 0.25])
    u0 = problem.zero_modes()
    ev = problem.evaluate(theta, beta, param, u0)
    h = 1e-6
    dev = lambda t, bb, p: problem.evaluate(t, bb, p, u0, gradient=False).deviance
    fd_param = (dev(theta, beta, param + h) - dev(theta, beta, param - h)) / (2 * h)
    assert ev.grad_param == pytest.approx(fd_param, rel=1e-5, abs=1e-6)
    e = np.array([h, 0.0])
    assert ev.grad_theta[0] == pytest.approx(
        (dev(theta + e, beta, param) - dev(theta - e, beta, param)) / (2 * h), rel=1e-5
    )
    assert ev.grad_coef[1] == pytest.approx(
        (dev(theta, beta + e[::-1], param) - dev(theta, beta - e[::-1], param)) / (2 * h), rel=1e-5
    )


def test_negative_binomial_with_crossed_factors_recovers_size():
    from sklearn_glmm import NegativeBinomialGLMMRegressor

    rng = np.random.default_rng(8)
    X, _, groups = _crossed_poisson(rng, n_a=60, n_b=25)
    codes_a = pd.factorize(groups["user"])[0]
    mu = np.exp(
        0.8
        + 0.3 * X["x"].to_numpy()
        + rng.normal(0, 0.5, 60)[codes_a]
        + rng.normal(0, 0.3, 25)[groups["day"]]
    )
    y = rng.negative_binomial(4.0, 4.0 / (4.0 + mu))
    model = NegativeBinomialGLMMRegressor("(1 | user) + (1 | day)").fit(X, y, groups=groups)
    assert model.converged_
    assert 2.5 < model.nb_size_ < 6.5  # truth 4 (SE of the size about 0.6 here)
    sd = model.varcorr_.set_index("group")["sdcor"]
    assert abs(sd["user"] / 0.5 - 1) < 0.35 and abs(sd["day"] / 0.3 - 1) < 0.5


def test_calendar_day_simulator_adds_a_crossed_factor_and_leaves_the_default_unchanged():
    from sklearn_glmm.datasets import make_app_engagement

    plain = make_app_engagement(20, 30, random_state=5)
    with_calendar, truth = make_app_engagement(20, 30, random_state=5, calendar_sd=0.4, return_truth=True)
    pd.testing.assert_frame_equal(plain, make_app_engagement(20, 30, random_state=5))
    assert list(with_calendar.columns) == list(plain.columns) + ["calendar_day"]
    # everything drawn before the calendar effects is the same panel
    pd.testing.assert_frame_equal(
        with_calendar[["user_id", "day", "mood"]], plain[["user_id", "day", "mood"]]
    )
    assert truth["calendar_sd"] == 0.4
    assert set(truth["calendar_effects"].index) == set(with_calendar["calendar_day"])
    with pytest.raises(ValueError, match="calendar_sd"):
        make_app_engagement(5, 5, calendar_sd=-1.0)


def test_a_dense_block_beyond_the_limit_is_refused_before_any_work(monkeypatch):
    # two crossed 9,000-level factors (beyond the dense path's 8,000) take the sparse path; its
    # dense remainder is refused when above the limit (for the test: no eliminations, so all
    # 9,000 rows remain, and a limit of 100); on 9,000 rows they would group the rows
    # identically, which is refused first, hence 18,000 rows
    from sklearn_glmm._core import _sparse_system

    monkeypatch.setattr(_sparse_system, "MAX_DENSE_ROWS", 100)
    monkeypatch.setattr(_sparse_system, "DENSE_ROWS", 10**6)
    n = 18000
    groups = pd.DataFrame({"a": np.arange(n) % 9000, "b": np.arange(n) // 2})
    y = np.random.default_rng(0).poisson(1.0, n)
    with pytest.raises(ValueError, match=r"9000 random effects, and \d+ pairs .* dense 9000 x 9000 block"):
        PoissonGLMMRegressor("(1 | a) + (1 | b)").fit(np.empty((n, 0)), y, groups=groups)


def test_stage_one_on_a_subsample_of_the_largest_factor_reaches_the_same_optimum():
    # 400 users x 25 days: stage 1 runs on 150 users (all their days), stage 2 on all rows;
    # the optimum equals a fit whose stage 1 used every row
    rng = np.random.default_rng(11)
    X, y, groups = _crossed_poisson(rng, n_a=400, n_b=25)
    n = y.size
    codes_u = pd.factorize(groups["user"], sort=True)[0]
    one = lambda codes, G: CoreTerm(codes, np.ones((n, 1)), G, np.array([0]), np.array([0]))
    terms = [one(codes_u, 400), one(groups["day"].to_numpy(), 25)]
    problem = core_problem(
        PoissonFamily(), np.column_stack([np.ones(n), X["x"]]), y, None, None, None, terms=terms
    )
    sub = problem.subsample(150)
    assert sub.level_counts == [150, 25] and sub.n_rows < n / 2
    a = fit(problem)
    b = fit(problem, make_controls({"stage1_levels": 10_000}))  # no subsample
    assert b.start.coef.size == 2 and a.n_evals != b.n_evals
    assert a.converged and b.converged
    assert a.deviance == pytest.approx(b.deviance, abs=1e-7)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-5)
