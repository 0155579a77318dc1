"""PoissonGLMMRegressor against lme4, simulation truth, invariances and bad input."""

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import PoissonRegressor

from sklearn_glmm import NoGroupsWarning, PoissonGLMMRegressor
from sklearn_glmm.datasets import make_app_engagement

from .conftest import load_reference

SPECS = {"app_engagement_ri": "(1 | user_id)", "app_engagement_rs": "(1 + day_centered | user_id)"}


def _fit(data, spec, **kwargs):
    model = PoissonGLMMRegressor(random_effects=spec, **kwargs)
    return model.fit(data[["day_centered"]], data["logins"], groups=data["user_id"])


@pytest.fixture(scope="module", params=sorted(SPECS))
def fitted_case(request):
    from .conftest import load_reference_data

    data = load_reference_data("app_engagement.csv", factors=["user_id"])
    return request.param, data, _fit(data, SPECS[request.param]), load_reference(request.param)


def test_fixed_effects_match_lme4(fitted_case):
    _, _, model, ref = fitted_case
    expected = pd.Series(ref["fixef"])
    assert list(model.fixef_.index) == list(expected.index)
    np.testing.assert_allclose(model.fixef_, expected, rtol=1e-3)
    assert model.intercept_ == model.fixef_["(Intercept)"]
    np.testing.assert_array_equal(model.coef_, model.fixef_.to_numpy()[1:])


def test_variance_components_match_lme4(fitted_case):
    _, _, model, ref = fitted_case
    expected = pd.DataFrame(ref["varcorr"])
    got = model.varcorr_
    assert list(got.columns) == ["group", "var1", "var2", "vcov", "sdcor"]
    assert list(got["var1"]) == list(expected["var1"])
    assert got["var2"].isna().tolist() == expected["var2"].isna().tolist()
    variances = got["var2"].isna().to_numpy()
    np.testing.assert_allclose(got["sdcor"][variances], expected["sdcor"][variances], rtol=3e-3)
    np.testing.assert_allclose(got["sdcor"][~variances], expected["sdcor"][~variances], atol=0.01)
    np.testing.assert_allclose(model.theta_, ref["theta"], rtol=3e-3, atol=1e-5)


def test_loglik_is_at_least_lme4s(fitted_case):
    _, _, model, ref = fitted_case
    assert model.loglik_ >= ref["loglik_tight_pirls"] - 1e-3
    assert model.loglik_ == pytest.approx(ref["loglik"], abs=2e-3)
    assert model.aic_ == pytest.approx(ref["aic"], abs=4e-3)
    assert model.bic_ == pytest.approx(ref["bic"], abs=4e-3)
    assert model.deviance_ == pytest.approx(ref["deviance"], abs=4e-3)
    assert model.df_resid_ == ref["df_resid"]
    assert model.converged_ and not model.singular_


def test_standard_errors_match_lme4(fitted_case):
    _, data, model, ref = fitted_case
    np.testing.assert_allclose(model.fixef_se_, pd.Series(ref["fixef_se"]), rtol=0.01)
    np.testing.assert_allclose(model.vcov_.to_numpy(), ref["vcov_fixef"], rtol=0.02, atol=2e-7)
    pirls = _fit(data, SPECS[fitted_case[0]], se_method="pirls")
    np.testing.assert_allclose(pirls.vcov_.to_numpy(), ref["vcov_fixef_rx"], rtol=0.01, atol=1e-7)


def test_random_effects_and_fitted_values_match_lme4(fitted_case):
    _, data, model, ref = fitted_case
    expected = pd.DataFrame.from_dict(ref["ranef"]["user_id"], orient="index")
    got = model.ranef_["user_id"]
    assert got.index.name == "user_id"
    assert sorted(got.index) == sorted(expected.index)
    np.testing.assert_allclose(got.loc[expected.index, expected.columns], expected, atol=2e-3)
    head = data.iloc[:20]
    np.testing.assert_allclose(
        model.predict(head[["day_centered"]], groups=head["user_id"]), ref["fitted"], rtol=2e-3
    )
    np.testing.assert_allclose(model.predict(head[["day_centered"]]), ref["predict_population"], rtol=2e-3)


def test_summary_reads_like_lme4(fitted_case):
    case, _, model, ref = fitted_case
    text = str(model.summary())
    assert f"{ref['aic']:.1f}" in text
    assert "Family: poisson  ( log )" in text
    assert f"logins ~ day_centered + {SPECS[case].replace('1 + ', '')}" in text
    for name in ("(Intercept)", "day_centered", "Std. Error", "Pr(>|z|)", "Number of obs: 1500"):
        assert name in text
    assert f"{ref['varcorr'][0]['sdcor']:.3f}" in text
    html = model.summary()._repr_html_()
    assert "<table" in html and "day_centered" in html and f"{ref['aic']:.1f}" in html


def test_recovers_simulation_truth():
    """2,000 user-days x 300 users: estimates within stated tolerances of the truth."""
    data, truth = make_app_engagement(n_users=300, n_days=60, random_state=7, return_truth=True)
    features = ["day_centered", "notifications", "weekend", "mood"]
    model = PoissonGLMMRegressor("(1 + day_centered | user_id)")
    model.fit(data[features], data["logins"], groups=data["user_id"])
    z = (model.fixef_ - pd.Series(truth["fixef"])) / model.fixef_se_
    assert np.all(np.abs(z) < 4), z  # every fixed effect within 4 standard errors
    sd_intercept, sd_slope, corr = model.varcorr_["sdcor"]
    assert sd_intercept == pytest.approx(truth["sd"]["(Intercept)"], rel=0.15)
    assert sd_slope == pytest.approx(truth["sd"]["day_centered"], rel=0.25)
    assert corr == pytest.approx(truth["corr"], abs=0.25)
    # conditional modes track the true random intercepts
    b = model.ranef_["user_id"]["(Intercept)"]
    assert np.corrcoef(b, truth["ranef"].loc[b.index, "(Intercept)"])[0, 1] > 0.9


def test_row_order_and_group_labels_do_not_matter(app_engagement):
    base = _fit(app_engagement, "(1 + day_centered | user_id)")
    shuffled = app_engagement.sample(frac=1.0, random_state=3)
    relabelled = app_engagement.assign(user_id="user-" + app_engagement["user_id"].str.zfill(3))
    for other, rename in ((shuffled, lambda s: s), (relabelled, lambda s: "user-" + s.str.zfill(3))):
        model = _fit(other, "(1 + day_centered | user_id)")
        np.testing.assert_allclose(model.fixef_, base.fixef_, rtol=1e-5)
        np.testing.assert_allclose(model.theta_, base.theta_, rtol=1e-4, atol=1e-7)
        assert model.loglik_ == pytest.approx(base.loglik_, abs=1e-6)
        ranef = base.ranef_["user_id"].set_axis(rename(base.ranef_["user_id"].index.to_series()))
        np.testing.assert_allclose(model.ranef_["user_id"].loc[ranef.index], ranef, atol=1e-5)


def test_without_groups_it_is_the_plain_poisson_glm(app_engagement):
    X, y = app_engagement[["day_centered"]], app_engagement["logins"]
    with pytest.warns(NoGroupsWarning, match="fitted without groups"):
        model = PoissonGLMMRegressor().fit(X, y)
    reference = PoissonRegressor(alpha=0.0, tol=1e-12, max_iter=1000).fit(X, y)
    assert model.intercept_ == pytest.approx(reference.intercept_, rel=1e-8)
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-7)
    assert model.ranef_ == {} and model.varcorr_.empty and model.theta_.size == 0
    assert "no groups" in str(model.summary())
    assert model.score(X, y) == pytest.approx(reference.score(X, y), rel=1e-10)


def test_integer_weights_equal_duplicated_rows(app_engagement):
    counts = np.random.default_rng(5).integers(1, 4, size=len(app_engagement))
    weighted = PoissonGLMMRegressor("1 + day_centered").fit(
        app_engagement[["day_centered"]],
        app_engagement["logins"],
        groups=app_engagement["user_id"],
        sample_weight=counts,
    )
    repeated = app_engagement.loc[app_engagement.index.repeat(counts)]
    duplicated = _fit(repeated, "1 + day_centered")
    np.testing.assert_allclose(weighted.fixef_, duplicated.fixef_, rtol=1e-5)
    np.testing.assert_allclose(weighted.theta_, duplicated.theta_, rtol=1e-4, atol=1e-7)
    assert weighted.loglik_ == pytest.approx(duplicated.loglik_, abs=1e-6)


def test_offset_shifts_the_intercept_only(app_engagement):
    base = _fit(app_engagement, "(1 | user_id)")
    shifted = PoissonGLMMRegressor("(1 | user_id)").fit(
        app_engagement[["day_centered"]],
        app_engagement["logins"],
        groups=app_engagement["user_id"],
        offset=np.full(len(app_engagement), np.log(2.0)),
    )
    assert shifted.intercept_ == pytest.approx(base.intercept_ - np.log(2.0), abs=1e-6)
    np.testing.assert_allclose(shifted.theta_, base.theta_, rtol=1e-5)
    X = app_engagement[["day_centered"]].iloc[:5]
    np.testing.assert_allclose(shifted.predict(X, offset=np.full(5, np.log(2.0))), base.predict(X), rtol=1e-5)


def test_intercept_only_fixed_part(app_engagement):
    n = len(app_engagement)
    for X in (np.empty((n, 0)), pd.DataFrame(index=app_engagement.index)):
        model = PoissonGLMMRegressor("(1 | user_id)").fit(
            X, app_engagement["logins"], groups=app_engagement["user_id"]
        )
        assert list(model.fixef_.index) == ["(Intercept)"]
        assert model.coef_.shape == (0,)
    full = _fit(app_engagement, "(1 | user_id)")
    assert model.loglik_ < full.loglik_  # day_centered matters (z = -4.6 in lme4)
    assert model.intercept_ == pytest.approx(full.intercept_, abs=0.01)  # day is centred
    assert model.predict(np.empty((3, 0)), groups=["1", "2", "new"]).shape == (3,)


def test_new_and_missing_groups_get_population_predictions(app_engagement):
    model = _fit(app_engagement, "(1 + day_centered | user_id)")
    X = pd.DataFrame({"day_centered": [-3.0, 4.0]})
    population = np.exp(model.intercept_ + model.coef_[0] * X["day_centered"].to_numpy())
    np.testing.assert_allclose(model.predict(X, groups=["never-seen", 12345]), population, rtol=1e-12)
    np.testing.assert_allclose(model.predict(X), population, rtol=1e-12)
    b = model.ranef_["user_id"].loc["7"].to_numpy()
    known = np.exp(np.log(population) + b[0] + b[1] * X["day_centered"].to_numpy())
    np.testing.assert_allclose(model.predict(X, groups=["7", "7"]), known, rtol=1e-12)


def test_score_is_d2_and_groups_help(app_engagement):
    model = _fit(app_engagement, "(1 | user_id)")
    X, y, g = (
        app_engagement[["day_centered"]],
        app_engagement["logins"].to_numpy(float),
        app_engagement["user_id"],
    )
    mu = model.predict(X, groups=g)
    fam = model._family_
    expected = 1 - fam.deviance(y, mu, np.ones_like(y)) / fam.deviance(
        y, np.full_like(y, y.mean()), np.ones_like(y)
    )
    assert model.score(X, y, groups=g) == pytest.approx(expected, rel=1e-12)
    assert model.score(X, y, groups=g) > model.score(X, y) + 0.2


def test_numpy_input_names_columns_x0(app_engagement):
    X = app_engagement[["day_centered"]].to_numpy()
    model = PoissonGLMMRegressor("1 + x0").fit(
        X, app_engagement["logins"].to_numpy(), groups=app_engagement["user_id"].to_numpy()
    )
    assert list(model.fixef_.index) == ["(Intercept)", "x0"]
    assert list(model.ranef_) == ["group"]
    assert list(model.ranef_["group"].columns) == ["(Intercept)", "x0"]
    assert not hasattr(model, "feature_names_in_") and model.n_features_in_ == 1


def test_collinear_columns_are_dropped_with_a_warning(app_engagement):
    X = app_engagement[["day_centered"]].assign(twice=2 * app_engagement["day_centered"], const=3.0)
    with pytest.warns(UserWarning, match=r"\['twice', 'const'\] are linearly dependent"):
        model = PoissonGLMMRegressor().fit(X, app_engagement["logins"], groups=app_engagement["user_id"])
    assert list(model.fixef_.index) == ["(Intercept)", "day_centered"]
    assert model.coef_.shape == (3,) and model.coef_[1] == 0.0 and model.coef_[2] == 0.0
    assert model.predict(X.iloc[:3]).shape == (3,)


BAD_INPUTS = [
    ({"y": [np.nan] + [1.0] * 9}, ValueError, "NaN"),
    ({"y": [-1.0] + [1.0] * 9}, ValueError, "non-negative"),
    ({"y": [1.0] * 9}, ValueError, "inconsistent numbers of samples"),
    ({"X": np.full((10, 1), np.inf)}, ValueError, "infinity"),
    ({"groups": [1] * 9}, ValueError, "9 labels but X has 10 rows"),
    ({"groups": [1, None] * 5}, ValueError, "missing label"),
    ({"sample_weight": [-1.0] * 10}, ValueError, "non-negative"),
    ({"sample_weight": [0.0] * 10}, ValueError, "zero for every row"),
    ({"sample_weight": [1.0] * 9}, ValueError, "sample_weight has 9 entries"),
    ({"sample_weight": [np.nan] * 10}, ValueError, "sample_weight contains NaN"),
    ({"offset": [np.nan] * 10}, ValueError, "offset contains NaN"),
    ({"X": np.array([["a"]] * 10, dtype=object)}, ValueError, "could not convert"),
]


@pytest.mark.parametrize("override, error, match", BAD_INPUTS)
def test_bad_input_gets_a_clear_error(override, error, match):
    args = {"X": np.arange(10.0).reshape(-1, 1), "y": [1.0] * 10, "groups": [1, 2] * 5}
    args.update(override)
    X, y = args.pop("X"), args.pop("y")
    with pytest.raises(error, match=match):
        PoissonGLMMRegressor().fit(X, y, **args)


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"random_effects": 1}, ValueError, "random_effects"),
        (
            {"random_effects": "(1 | g) + (1 | h)"},
            ValueError,
            r"factors \['g', 'h'\] but groups has one column",
        ),
        ({"random_effects": "(1 | g) (1 | h)"}, ValueError, r"joined by '\+'"),
        ({"random_effects": "1 + nope"}, ValueError, "not in X"),
        ({"se_method": "sandwich"}, ValueError, "se_method"),
        ({"max_iter": 0}, ValueError, "max_iter"),
    ],
)
def test_bad_parameters_get_a_clear_error(params, error, match):
    with pytest.raises(error, match=match):
        PoissonGLMMRegressor(**params).fit(np.arange(10.0).reshape(-1, 1), [1.0] * 10, groups=[1, 2] * 5)


def test_predict_checks(app_engagement):
    with pytest.raises(NotFittedError):
        PoissonGLMMRegressor().predict(np.zeros((2, 1)))
    model = _fit(app_engagement, "(1 | user_id)")
    # an array X for a model fitted on a DataFrame: scikit-learn warns, then the column count fails
    with (
        pytest.warns(UserWarning, match="X does not have valid feature names"),
        pytest.raises(ValueError, match="features"),
    ):
        model.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="2 labels but X has 3 rows"):
        model.predict(app_engagement[["day_centered"]].iloc[:3], groups=["1", "2"])


def test_summary_residuals_include_the_offset(app_engagement):
    """Scaled residuals are computed at the fitted means, offset included."""
    X, y, g = app_engagement[["day_centered"]], app_engagement["logins"], app_engagement["user_id"]
    offset = np.full(len(y), np.log(2.0))
    model = PoissonGLMMRegressor("(1 | user_id)").fit(X, y, groups=g, offset=offset)
    mu = model.predict(X, groups=g, offset=offset)
    expected = np.quantile((y - mu) / np.sqrt(mu), [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(model.summary().residual_quantiles.to_numpy(), expected, rtol=1e-10)
