"""drop1 against R's drop1(m, test = "Chisq") (tests/data/drop1_references.R), update, R-style tables."""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("formulaic")

from sklearn_glmm import (
    BinomialGLMMRegressor,
    GaussianLMMRegressor,
    PoissonGLMMRegressor,
    compare_models,
    drop1,
    glmer,
    update,
)
from sklearn_glmm._formula import update_formula
from sklearn_glmm.results._tables import TestTable, format_pvalue

from .conftest import load_reference, load_reference_data

REFERENCES = load_reference("drop1_references")["cases"]


def _model(case):
    read = load_reference_data
    if case == "app_engagement_ri":
        return glmer("logins ~ day_centered + (1 | user_id)", read("app_engagement.csv", factors=["user_id"]))
    if case == "sleepstudy_ml":
        sleep = read("sleepstudy.csv", factors=["Subject"])
        return GaussianLMMRegressor.from_formula("Reaction ~ Days + (Days | Subject)", sleep, reml=False)
    if case == "cbpp_tmb":
        cbpp = read("cbpp.csv", factors=["herd", "period"]).assign(p=lambda t: t["incidence"] / t["size"])
        return BinomialGLMMRegressor.from_formula("p ~ period + (1 | herd)", cbpp, weights="size")
    owls = read("owls.csv", factors=["Nest", "FoodTreatment", "SexParent"])
    fixed = "FoodTreatment * SexParent" if case == "owls_nb" else "FoodTreatment + SexParent"
    return glmer(
        f"SiblingNegotiation ~ {fixed} + offset(log(BroodSize)) + (1 | Nest)", owls, family="nbinom2"
    )


@pytest.mark.parametrize("case", sorted(REFERENCES))
def test_drop1_matches_r(case):
    ref = REFERENCES[case]
    table = drop1(_model(case))
    # R's drop.scope: factor terms as a whole (period: 3 df), FoodTreatment:SexParent alone
    assert list(table.index) == ref["terms"]
    assert table["npar"].iloc[1:].tolist() == ref["npar"][1:]
    # the LRT is a difference of two tight optima (lme4's ri fit is 9e-6 short on both)
    np.testing.assert_allclose(table["LRT"].iloc[1:], ref["LRT"][1:], rtol=2e-6)
    np.testing.assert_allclose(table["Pr(Chi)"].iloc[1:], ref["p"][1:], rtol=2e-5)
    np.testing.assert_allclose(table["AIC"], ref["AIC"], atol=2e-5)
    assert np.isnan(table.loc["<none>", "LRT"])


def test_drop1_prints_as_r():
    text = str(drop1(_model("owls_nb_additive")))
    assert text.startswith("Single term deletions\n\nModel:\nSiblingNegotiation ~ FoodTreatment + SexParent")
    lines = text.splitlines()
    # R: "FoodTreatment    1 3527.9 35.6678 2.34e-09 ***" and "SexParent 1 3492.4 0.2047 0.651"
    assert lines[-4].split() == ["FoodTreatment", "1", "3527.9", "35.6678", "2.34e-09", "***"]
    assert lines[-3].split() == ["SexParent", "1", "3492.4", "0.2047", "0.651"]
    assert lines[-1].startswith("Signif. codes:")


def test_drop1_keeps_a_random_slope_and_refits_reml_by_ml():
    data = load_reference_data("sleepstudy.csv", factors=["Subject"])
    reml = GaussianLMMRegressor.from_formula("Reaction ~ Days + (Days | Subject)", data)
    table = drop1(reml)
    ml = drop1(_model("sleepstudy_ml"))
    np.testing.assert_allclose(table["LRT"], ml["LRT"], rtol=1e-8)  # both refitted by ML
    assert "Models refitted by ML" in str(table)
    # the reduced model keeps the random slope of Days: Reaction ~ 1 + (Days | Subject)
    reduced = GaussianLMMRegressor("(Days | Subject)", fixed_effects=[], reml=False)
    reduced.fit(data[["Days"]], data["Reaction"], groups=data["Subject"])
    assert table.loc["Days", "AIC"] == pytest.approx(reduced.aic_, rel=1e-10)


def test_drop1_estimator_api_with_scope():
    data = load_reference_data("app_engagement.csv", factors=["user_id"])
    X = data[["day_centered"]].assign(weekend=(data["day"] % 7 < 2).astype(float), noise=np.cos(data["day"]))
    y, g = data["logins"], data["user_id"]
    model = PoissonGLMMRegressor("(1 | user_id)").fit(X, y, groups=g)
    table = drop1(model, X, y, g)
    assert list(table.index) == ["<none>", "day_centered", "weekend", "noise"]
    # each row is the likelihood ratio with the model refitted without that column
    small = PoissonGLMMRegressor("(1 | user_id)").fit(X[["day_centered", "noise"]], y, groups=g)
    assert table.loc["weekend", "LRT"] == pytest.approx(2 * (model.loglik_ - small.loglik_), rel=1e-7)
    grouped = drop1(model, X, y, g, scope={"calendar": ["weekend", "noise"]})
    assert list(grouped.index) == ["<none>", "calendar"] and grouped.loc["calendar", "npar"] == 2
    with pytest.raises(ValueError, match="observations"):
        drop1(model, X[:100], y[:100], g[:100])
    with pytest.raises(ValueError, match="cannot be dropped"):
        drop1(model, X, y, g, scope=["nope"])
    with pytest.raises(TypeError, match="X is required"):
        drop1(model)


def test_update_refits_formula_models():
    data = load_reference_data("app_engagement.csv", factors=["user_id"]).assign(
        weekend=lambda d: d["day"] % 7 < 2
    )
    m = glmer("logins ~ day_centered + weekend + (1 | user_id)", data)
    smaller = update(m, ". ~ . - weekend")
    direct = glmer("logins ~ day_centered + (1 | user_id)", data)
    assert str(smaller.formula_) == "logins ~ day_centered + (1 | user_id)"
    np.testing.assert_allclose(smaller.fixef_, direct.fixef_, rtol=1e-10)
    slope = update(m, ". ~ . - (1 | user_id) + (day_centered | user_id)")
    assert list(slope.ranef_["user_id"].columns) == ["(Intercept)", "day_centered"]
    marginal = update(m, new_groups="marginal")
    assert marginal.new_groups == "marginal" and m.new_groups == "population"
    np.testing.assert_allclose(marginal.fixef_, m.fixef_, rtol=1e-12)
    table = compare_models(smaller, m)
    assert table.loc["m2", "Df"] == 1
    with pytest.raises(TypeError, match="formula"):
        update(PoissonGLMMRegressor().fit(data[["day_centered"]], data["logins"], groups=data["user_id"]))
    assert update_formula("y ~ a * b + (1 | g)", ". ~ . - a:b") == "y ~ a + b + (1 | g)"
    assert update_formula("y ~ x + (1 | g)", "log_y ~ .") == "log_y ~ x + (1 | g)"
    with pytest.raises(ValueError, match="not a random-effects term"):
        update_formula("y ~ x + (1 | g)", ". ~ . - (1 | h)")


def test_p_values_print_as_r():
    assert [format_pvalue(p) for p in (0.3339, 3.874e-06, 1e-300, 0.0, 0.05, np.nan)] == [
        "0.3339",
        "3.874e-06",
        "< 2.2e-16",
        "< 2.2e-16",
        "0.05",
        "",
    ]
    table = TestTable(
        [[1.0, np.nan], [2.0, 1e-20], [3.0, 0.3339]], index=["a", "b", "c"], columns=["Chisq", "Pr(>Chisq)"]
    )
    lines = str(table).splitlines()
    assert lines[1].split() == ["a", "1"]  # the missing p-value is blank, as R's anova
    assert lines[2].split() == ["b", "2", "<", "2.2e-16", "***"]
    assert lines[3].split() == ["c", "3", "0.3339"]
    assert table.loc["b", "Pr(>Chisq)"] == 1e-20  # the numbers stay numbers


def test_anova_prints_tiny_p_values_as_r():
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(30), 20)
    x = rng.normal(size=600)
    y = rng.poisson(np.exp(0.5 + 1.0 * x + rng.normal(0, 0.3, 30)[g]))
    small = PoissonGLMMRegressor().fit(np.empty((600, 0)), y, groups=g)
    large = PoissonGLMMRegressor().fit(pd.DataFrame({"x": x}), y, groups=g)
    table = compare_models(small, large)
    assert table.loc["m2", "Pr(>Chisq)"] < 1e-100
    assert str(table).splitlines()[2].split()[-3:] == ["<", "2.2e-16", "***"]
