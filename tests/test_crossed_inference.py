"""Inference with several grouping factors and '||' terms: profile and bootstrap
intervals, simulate, and the LMM's conditional SDs.

References: ``tests/data/multi_inference.json``, made with lme4 (version in the
file) by ``tests/data/multi_inference_references.R`` on this project's machine;
the GLMMs there are refitted with a tight optimiser tolerance so that lme4's
profile starts from the optimum. Tolerances:

- profile intervals: 1e-3 absolute, as the one-factor case in
  ``tests/test_intervals.py`` (lme4 interpolates a spline through its profile,
  we find the crossing on the exact profile);
- conditional SDs of the LMM: 2e-3 relative, as ``test_ranef_condsd_matches_lme4``;
- bootstrap: Monte Carlo quantities, checked by determinism and against the
  profile intervals with a tolerance of a quarter of the interval's width.
"""

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm import BinomialGLMMClassifier, GaussianLMMRegressor, PoissonGLMMRegressor

from .conftest import load_reference, load_reference_data, reference_design


@pytest.fixture(scope="module")
def refs():
    return load_reference("multi_inference")


@pytest.fixture(scope="module")
def crossed():
    ref = load_reference("crossed_binary_sim")
    data = load_reference_data(ref["data"], factors=["subject", "item"])
    X, groups = reference_design(ref, data)
    model = BinomialGLMMClassifier("(1 | subject) + (1 | item)").fit(X, data["y"], groups=groups)
    return model, X, groups, data["y"]


@pytest.fixture(scope="module")
def nested():
    data = load_reference_data("nested_poisson_sim.csv", factors=["clinic", "user"])
    groups = data[["clinic", "user"]]
    model = PoissonGLMMRegressor("(1 | clinic/user)").fit(data[["x"]], data["y"], groups=groups)
    return model, data


@pytest.fixture(scope="module")
def uncorrelated(app_engagement):
    data = app_engagement
    model = PoissonGLMMRegressor("(1 + day_centered || user_id)")
    return model.fit(data[["day_centered"]], data["logins"], groups=data["user_id"])


@pytest.fixture(scope="module")
def penicillin():
    data = load_reference_data("penicillin.csv", factors=["plate", "sample"])
    X = pd.DataFrame(index=data.index)
    groups = data[["plate", "sample"]]
    model = GaussianLMMRegressor("(1 | plate) + (1 | sample)", reml=False)
    model.fit(X, data["diameter"], groups=groups)
    return model, X, groups, data["diameter"]


def _assert_profile(table, ref, atol=1e-3):
    assert list(table.index) == ref["profile"]["rows"]
    np.testing.assert_allclose(table["2.5 %"], ref["profile"]["lower"], atol=atol)
    np.testing.assert_allclose(table["97.5 %"], ref["profile"]["upper"], atol=atol)


# -- profile ------------------------------------------------------------------
def test_crossed_profile_matches_lme4(crossed, refs):
    model, *_ = crossed
    ref = refs["crossed_binary"]
    # the same optimum: lme4's PIRLS tolerance costs it 1.3e-3 in logLik (see test_crossed.py)
    np.testing.assert_allclose(model.theta_, ref["theta"], rtol=5e-4)
    assert model.loglik_ >= ref["loglik"] - 1e-6
    _, X, groups, y = crossed
    table = model.confint(method="profile", X=X, y=y, groups=groups)
    _assert_profile(table, ref)
    # .sig01 is the subject SD (60 levels), .sig02 the item SD (40 levels), as lme4
    sd = model.varcorr_.set_index("group")["sdcor"]
    assert table.loc[".sig01", "2.5 %"] < sd["subject"] < table.loc[".sig01", "97.5 %"]
    assert table.loc[".sig02", "2.5 %"] < sd["item"] < table.loc[".sig02", "97.5 %"]
    prof = table.attrs["profiles"][".sig02"]
    assert np.all(np.diff(prof["zeta"]) > 0)
    assert prof.loc[prof["zeta"].abs().idxmin(), "value"] == pytest.approx(sd["item"], rel=1e-6)


@pytest.fixture(scope="module")
def crossed_slopes():
    data = load_reference_data("crossed_slopes_sim.csv", factors=["subject", "item"])
    model = PoissonGLMMRegressor("(1 + x || item) + (1 | subject)")
    return model.fit(data[["x"]], data["y"], groups=data[["subject", "item"]]), data


def test_profile_rows_follow_lme4_bar_order(crossed_slopes, refs):
    # (x || item) + (1 | subject): item (20 levels) has fewer levels than subject (50), so lme4
    # reorders the bars to subject, item slope, item intercept -- the engine has subject, then
    # item's two bars in the written order; .sig02 must be the slope's SD
    model, data = crossed_slopes
    ref = refs["crossed_slopes"]
    assert model.loglik_ == pytest.approx(ref["loglik"], abs=1e-4)
    assert list(model._builder.theta_order_) == [0, 2, 1]
    np.testing.assert_allclose(model.theta_, ref["theta"], rtol=2e-3)
    table = model.confint(method="profile", X=data[["x"]], y=data["y"], groups=data[["subject", "item"]])
    _assert_profile(table, ref)
    sdcor = model.varcorr_["sdcor"].to_numpy()
    assert list(model.varcorr_["var1"]) == ["(Intercept)", "x", "(Intercept)"]
    # lme4 names the groups in its own order: the item slope is "item", the intercept "item.1"
    assert list(model.varcorr_["group"]) == [row["grp"] for row in ref["varcorr"]]
    np.testing.assert_allclose(sdcor, [row["sdcor"] for row in ref["varcorr"]], rtol=3e-3)
    assert np.all(table["2.5 %"].to_numpy()[:3] < sdcor) and np.all(sdcor < table["97.5 %"].to_numpy()[:3])


@pytest.mark.slow  # ~10 s: two more profiles
def test_profile_rows_follow_the_written_order_when_lme4_keeps_it(crossed_slopes, refs):
    # (1 | subject) + (x || item): levels already decreasing, lme4 keeps the written order,
    # so the slope's SD is .sig03 now
    _model, data = crossed_slopes
    other = PoissonGLMMRegressor("(1 | subject) + (1 + x || item)").fit(
        data[["x"]], data["y"], groups=data[["subject", "item"]]
    )
    table = other.confint(
        method="profile",
        parm=[".sig02", ".sig03"],
        X=data[["x"]],
        y=data["y"],
        groups=data[["subject", "item"]],
    )
    ref = refs["crossed_slopes"]["profile"]
    np.testing.assert_allclose(table["2.5 %"], [ref["lower"][2], ref["lower"][1]], atol=1e-3)
    np.testing.assert_allclose(table["97.5 %"], [ref["upper"][2], ref["upper"][1]], atol=1e-3)


@pytest.fixture(scope="module")
def crossed_correlated(crossed_slopes):
    _, data = crossed_slopes
    model = PoissonGLMMRegressor("(1 + x | item) + (1 | subject)")
    model.fit(data[["x"]], data["y"], groups=data[["subject", "item"]])
    return model, {"X": data[["x"]], "y": data["y"], "groups": data[["subject", "item"]]}


def test_correlation_row_with_several_factors_matches_lme4(crossed_correlated, refs):
    # .sig01 subject SD; item's bar: .sig02 intercept SD, .sig03 correlation, .sig04 slope SD
    ref = refs["crossed_slopes_correlated"]
    model, train = crossed_correlated
    assert model.loglik_ >= ref["loglik"] - 1e-6
    np.testing.assert_allclose(model.theta_, ref["theta"], rtol=2e-3, atol=1e-3)
    table = model.confint(method="profile", parm=[".sig02", ".sig03"], **train)
    rows = [1, 2]
    np.testing.assert_allclose(table["2.5 %"], np.asarray(ref["profile"]["lower"])[rows], atol=1e-3)
    np.testing.assert_allclose(table["97.5 %"], np.asarray(ref["profile"]["upper"])[rows], atol=1e-3)
    cor = model.varcorr_.dropna(subset=["var2"])["sdcor"].item()
    assert -1 < table.loc[".sig03", "2.5 %"] < cor < table.loc[".sig03", "97.5 %"] < 1


@pytest.mark.slow  # ~20 s: six profiles
def test_correlated_several_factors_all_rows_match_lme4(crossed_correlated, refs):
    model, train = crossed_correlated
    table = model.confint(method="profile", **train)
    _assert_profile(table, refs["crossed_slopes_correlated"])


def test_nested_profile_matches_lme4(nested, refs):
    model, data = nested
    ref = refs["nested_poisson"]
    assert model.loglik_ == pytest.approx(ref["loglik"], abs=1e-4)
    _assert_profile(
        model.confint(method="profile", X=data[["x"]], y=data["y"], groups=data[["clinic", "user"]]), ref
    )


def _app_data(app_engagement):
    return {
        "X": app_engagement[["day_centered"]],
        "y": app_engagement["logins"],
        "groups": app_engagement["user_id"],
    }


def test_uncorrelated_profile_has_no_correlation_row_and_matches_lme4(uncorrelated, refs, app_engagement):
    ref = refs["app_uncorrelated"]
    assert uncorrelated.loglik_ == pytest.approx(ref["loglik"], abs=1e-4)
    table = uncorrelated.confint(method="profile", **_app_data(app_engagement))
    assert list(table.index) == [".sig01", ".sig02", "(Intercept)", "day_centered"]
    _assert_profile(table, ref)
    # the slope's SD is small (per day): its upper end relative to lme4's, its lower end at 0
    assert table.loc[".sig02", "97.5 %"] == pytest.approx(ref["profile"]["upper"][1], rel=1e-3)
    assert table.loc[".sig02", "2.5 %"] == 0.0 == ref["profile"]["lower"][1]


# -- bootstrap ----------------------------------------------------------------
def test_crossed_bootstrap_is_reproducible_and_in_lme4_layout(crossed):
    model, X, groups, y = crossed
    train = {"X": X, "y": y, "groups": groups}
    a = model.confint(method="bootstrap", n_boot=3, random_state=7, **train)
    b = model.confint(method="bootstrap", n_boot=3, random_state=7, **train)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a.attrs["replicates"], b.attrs["replicates"])
    assert list(a.index) == [".sig01", ".sig02", "(Intercept)", "x"]
    reps = a.attrs["replicates"]
    assert reps.shape == (3, 4) and np.all(reps[[".sig01", ".sig02"]] >= 0)
    c = model.confint(method="bootstrap", n_boot=3, random_state=8, **train)
    assert not np.allclose(c.to_numpy(), a.to_numpy())


def test_uncorrelated_bootstrap_rows(uncorrelated, app_engagement):
    parm = [".sig02", "day_centered"]
    table = uncorrelated.confint(
        method="bootstrap", n_boot=3, random_state=0, parm=parm, **_app_data(app_engagement)
    )
    assert list(table.index) == [".sig02", "day_centered"]
    assert list(table.attrs["replicates"].columns) == [".sig01", ".sig02", "(Intercept)", "day_centered"]


@pytest.mark.slow  # ~1 min: 80 refits of the crossed model
def test_crossed_bootstrap_agrees_with_profile(crossed, refs):
    model, X, groups, y = crossed
    train = {"X": X, "y": y, "groups": groups}
    table = model.confint(method="bootstrap", n_boot=80, random_state=11, n_jobs=2, **train)
    reps = table.attrs["replicates"]
    # replicate i has its own seed: a serial run of 3 gives the parallel run's first 3
    serial = model.confint(method="bootstrap", n_boot=3, random_state=11, **train).attrs["replicates"]
    pd.testing.assert_frame_equal(serial, reps.iloc[:3])
    # the replicates centre on the estimates (parametric bootstrap of a well-identified model)
    estimates = np.concatenate([model.theta_, model.fixef_.to_numpy()])
    spread = reps.std().to_numpy()
    assert np.all(np.abs(reps.mean().to_numpy() - estimates) < 0.5 * spread)
    # and the percentile intervals are close to lme4's (bootMer, 500 replicates) and to the
    # profile intervals: within a quarter of the interval's width (Monte Carlo error of an
    # 80-replicate 2.5 % quantile is about a tenth of it)
    for key in ("bootstrap", "profile"):
        ref = refs["crossed_binary"][key]
        width = np.asarray(ref["upper"]) - np.asarray(ref["lower"])
        np.testing.assert_array_less(np.abs(table["2.5 %"].to_numpy() - ref["lower"]), 0.25 * width)
        np.testing.assert_array_less(np.abs(table["97.5 %"].to_numpy() - ref["upper"]), 0.25 * width)


# -- simulate -----------------------------------------------------------------
def test_crossed_simulate_shape_determinism_and_conditional_mean(crossed):
    model, X, groups, _ = crossed
    sims = model.simulate(X, groups, n_simulations=1000, random_state=0)
    assert sims.shape == (len(X), 1000) and set(np.unique(sims)) <= {0.0, 1.0}
    np.testing.assert_array_equal(sims, model.simulate(X, groups, n_simulations=1000, random_state=0))
    # conditional draws keep the modes: the mean of each row is its fitted probability
    p = model.predict_proba(X, groups)[:, 1]
    z = (sims.mean(axis=1) - p) / np.sqrt(p * (1 - p) / 1000)
    assert np.max(np.abs(z)) < 4.5 and abs(z.mean()) < 0.1
    # unconditional draws do not: a subject with a large mode is not more likely than the rest
    subject = model.ranef_["subject"]["(Intercept)"]
    top = groups["subject"].isin(subject.nlargest(5).index).to_numpy()
    uncond = model.simulate(X, groups, n_simulations=200, random_state=1, conditional=False)
    assert sims[top].mean() > uncond[top].mean() + 0.2


def test_lmm_crossed_simulate_draws_each_factor_independently(penicillin):
    model, _X, _groups, _ = penicillin
    var = model.varcorr_.set_index("group")["vcov"]
    fixed = model.intercept_
    bp = model.ranef_["plate"].loc["a", "(Intercept)"]
    bs = model.ranef_["sample"].loc["A", "(Intercept)"]
    rows = pd.DataFrame({"plate": ["a", "a", "new", "new"], "sample": ["A", "new", "A", "new"]})
    Xn = pd.DataFrame(index=range(4))
    n_sim = 20000
    sims = model.simulate(Xn, rows, n_simulations=n_sim, random_state=3)
    mean = np.array([fixed + bp + bs, fixed + bp, fixed + bs, fixed])
    sd = np.sqrt(var["Residual"] + np.array([0, var["sample"], var["plate"], var["plate"] + var["sample"]]))
    np.testing.assert_array_less(np.abs(sims.mean(axis=1) - mean), 4 * sd / np.sqrt(n_sim))
    np.testing.assert_allclose(sims.std(axis=1), sd, rtol=0.03)
    # rows of the same new level share its draw: correlation of rows 2 and 3 is var_plate / (sd2 sd3)
    same_plate = np.corrcoef(sims[2], sims[3])[0, 1]
    assert same_plate == pytest.approx(var["plate"] / (sd[2] * sd[3]), abs=0.03)
    # unconditional: every row draws both factors
    uncond = model.simulate(Xn, rows, n_simulations=n_sim, random_state=4, conditional=False)
    np.testing.assert_allclose(uncond.std(axis=1), sd[3], rtol=0.03)
    np.testing.assert_array_less(np.abs(uncond.mean(axis=1) - fixed), 4 * sd[3] / np.sqrt(n_sim))


def test_nested_and_uncorrelated_simulate(nested, uncorrelated, app_engagement):
    model, data = nested
    sims = model.simulate(data[["x"]], data[["clinic", "user"]], n_simulations=300, random_state=5)
    assert sims.shape == (len(data), 300)
    fitted = model.predict(data[["x"]], data[["clinic", "user"]])
    np.testing.assert_allclose(sims.mean(axis=1).mean(), fitted.mean(), rtol=0.02)
    X, g = app_engagement[["day_centered"]], app_engagement["user_id"]
    a = uncorrelated.simulate(X, g, n_simulations=2, random_state=9, conditional=False)
    b = uncorrelated.simulate(X, g, n_simulations=2, random_state=9, conditional=False)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="needs groups"):
        model.simulate(data[["x"]])


# -- linear mixed models: conditional SDs, profile, bootstrap ---------------------
LMM_CASES = [
    ("sleepstudy_rs_reml", "(Days | Subject)", True),
    ("sleepstudy_uncorrelated_reml", "(Days || Subject)", True),
    ("penicillin_crossed_ml", "(1 | plate) + (1 | sample)", False),
]


def _lmm(case, spec, reml):
    if case.startswith("sleep"):
        data = load_reference_data("sleepstudy.csv", factors=["Subject"])
        X, groups, y = data[["Days"]], data["Subject"], data["Reaction"]
    else:
        data = load_reference_data("penicillin.csv", factors=["plate", "sample"])
        X, groups, y = pd.DataFrame(index=data.index), data[["plate", "sample"]], data["diameter"]
    model = GaussianLMMRegressor(spec, reml=reml).fit(X, y, groups=groups)
    model.training_data = {"X": X, "y": y, "groups": groups}
    return model


@pytest.mark.parametrize("case, spec, reml", LMM_CASES)
def test_lmm_ranef_condsd_matches_lme4(refs, case, spec, reml):
    ref = refs[case]
    model = _lmm(case, spec, reml)
    assert model.loglik_ == pytest.approx(ref["loglik"], abs=1e-5)
    condsd = model.ranef_condsd_
    assert list(condsd) == list(model.ranef_)
    for factor, levels in ref["ranef_condsd"].items():
        expected = pd.DataFrame(levels).T
        got = condsd[factor]
        assert got.shape == model.ranef_[factor].shape and list(got.columns) == list(expected.columns)
        want = expected.to_numpy(dtype=float)
        np.testing.assert_allclose(got.loc[expected.index].to_numpy(), want, rtol=2e-3)


@pytest.mark.parametrize(
    "case, spec, reml",
    [pytest.param(*LMM_CASES[0], marks=pytest.mark.slow), *LMM_CASES[1:]],  # the first takes ~10 s
)
def test_lmm_profile_matches_lme4(refs, case, spec, reml):
    # lme4 profiles the ML deviance (a REML fit is refitted by ML first), SDs on the response scale
    model = _lmm(case, spec, reml)
    table = model.confint(method="profile", **model.training_data)
    assert ".sigma" in table.index
    _assert_profile(table, refs[case])


def test_lmm_wald_and_bootstrap_rows(penicillin):
    model, X, groups, y = penicillin
    train = {"X": X, "y": y, "groups": groups}
    rows = [".sig01", ".sig02", ".sigma", "(Intercept)"]
    wald = model.confint()
    assert list(wald.index) == rows and wald.iloc[:3].isna().all().all()
    a = model.confint(method="bootstrap", n_boot=5, random_state=2, **train)
    pd.testing.assert_frame_equal(a, model.confint(method="bootstrap", n_boot=5, random_state=2, **train))
    assert list(a.index) == rows and a.attrs["replicates"].shape == (5, 4)
    assert np.all(a.attrs["replicates"][".sigma"] > 0)


@pytest.mark.slow  # ~40 s: 200 LMM refits
def test_lmm_bootstrap_agrees_with_lme4_profile(refs, penicillin):
    model, X, groups, y = penicillin
    table = model.confint(method="bootstrap", n_boot=200, random_state=5, X=X, y=y, groups=groups)
    reps = table.attrs["replicates"]
    # the fixed effect and sigma are well determined: close to the profile interval (a quarter
    # of its width); the SD of 6 samples is not (the ML estimates of the replicates are biased
    # low, so the percentile interval is far narrower than the profile's) -- it must only
    # cover the estimate
    prof = refs["penicillin_crossed_ml"]["profile"]
    well = [2, 3]  # .sigma, (Intercept)
    lower, upper = np.asarray(prof["lower"])[well], np.asarray(prof["upper"])[well]
    np.testing.assert_array_less(np.abs(table["2.5 %"].to_numpy()[well] - lower), 0.25 * (upper - lower))
    np.testing.assert_array_less(np.abs(table["97.5 %"].to_numpy()[well] - upper), 0.25 * (upper - lower))
    sd = model.varcorr_["sdcor"].to_numpy()[:2]
    assert np.all(table["2.5 %"].to_numpy()[:2] < sd) and np.all(sd < table["97.5 %"].to_numpy()[:2])
    assert reps["(Intercept)"].mean() == pytest.approx(model.intercept_, abs=0.2 * reps["(Intercept)"].std())


# -- the family's extra parameter in the bootstrap ---------------------------------
@pytest.mark.parametrize("random_effects", ["1", "(1 | a) + (1 | b)"])
def test_bootstrap_draws_with_the_fitted_nb_size(random_effects, monkeypatch):
    # the replicates must be drawn from the fitted model: NB with the estimated size
    from sklearn_glmm import NegativeBinomialGLMMRegressor
    from sklearn_glmm.families import NegativeBinomialFamily

    rng = np.random.default_rng(8)
    a, b = np.repeat(np.arange(30), 12), np.tile(np.arange(12), 30)
    mu = np.exp(1.0 + rng.normal(0, 0.5, 30)[a] + rng.normal(0, 0.3, 12)[b])
    y = rng.negative_binomial(4.0, 4.0 / (4.0 + mu))
    groups = pd.DataFrame({"a": a, "b": b}) if "|" in random_effects else pd.Series(a, name="a")
    X = np.empty((a.size, 0))
    model = NegativeBinomialGLMMRegressor(random_effects).fit(X, y, groups=groups)
    used = []
    sample = NegativeBinomialFamily.sample

    def recording(family, mu, weights, rng):
        used.append(family.param)
        return sample(family, mu, weights, rng)

    monkeypatch.setattr(NegativeBinomialFamily, "sample", recording)
    model.confint(method="bootstrap", n_boot=2, random_state=0, X=X, y=y, groups=groups)
    assert used == [pytest.approx(model.fit_summary_.param)] * 2
    assert 2 < model.nb_size_ < 8
