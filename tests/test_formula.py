"""glmer(formula, data): lme4 syntax, R's column names, and the same fits as the estimator API."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("formulaic")

from sklearn_glmm import PoissonGLMMRegressor, glmer
from sklearn_glmm._formula import FAMILY_REGISTRY, formula_design, parse_formula

from .conftest import load_reference, load_reference_data


@pytest.fixture(scope="module")
def data():
    return load_reference_data("app_engagement.csv", factors=["user_id"])


@pytest.mark.parametrize("case", ["app_engagement_ri", "app_engagement_rs"])
def test_reference_formulas_reproduce_lme4(data, case):
    ref = load_reference(case)
    model = glmer(ref["formula"], data, family=ref["family"])
    assert isinstance(model, PoissonGLMMRegressor)
    assert list(model.fixef_.index) == list(ref["fixef"])
    np.testing.assert_allclose(model.fixef_, list(ref["fixef"].values()), rtol=1e-3)
    assert model.loglik_ == pytest.approx(ref["loglik"], abs=2e-3)
    summary = str(model.summary())
    assert ref["formula"].split("~")[1].split("+")[-1].strip() in summary  # the bar, as lme4 prints it
    assert str(model.formula_) == ref["formula"] and model.formula_.response == "logins"


def test_from_formula_classmethod_equals_estimator_api(data):
    a = PoissonGLMMRegressor.from_formula("logins ~ day_centered + (1 | user_id)", data)
    b = PoissonGLMMRegressor("(1 | user_id)").fit(
        data[["day_centered"]], data["logins"], groups=data["user_id"]
    )
    np.testing.assert_allclose(a.fixef_, b.fixef_, rtol=1e-10)
    np.testing.assert_allclose(a.theta_, b.theta_, rtol=1e-10)


def test_r_column_names_for_factors_interactions_and_I():
    # names as lme4 gives them for contraception_rs and owls_nb (fitted here as Poisson GLMMs:
    # only the design is compared)
    contra = load_reference_data("contraception.csv", factors=["district", "livch", "urban", "woman"])
    ref = load_reference("contraception_rs")
    m = glmer(
        "use ~ age + I(age^2) + urban + livch + (urban | district)", contra, family="poisson", max_iter=50
    )
    assert list(m.fixef_.index) == list(ref["fixef"])
    assert list(m.ranef_["district"].columns) == ["(Intercept)", "urbanY"]
    X, y, groups, offset = formula_design(m, contra)
    np.testing.assert_allclose(X["I(age^2)"], contra["age2"], rtol=1e-12)
    assert offset is None and y.name == "use" and groups.name == "district"

    owls = load_reference_data("owls.csv", factors=["Nest", "FoodTreatment", "SexParent"])
    ref = load_reference("owls_nb")
    m = glmer(
        "SiblingNegotiation ~ FoodTreatment * SexParent + offset(log(BroodSize)) + (1 | Nest)",
        owls,
        family="poisson",
    )
    assert list(m.fixef_.index) == list(ref["fixef"])
    same = glmer(
        "SiblingNegotiation ~ FoodTreatment * SexParent + (1 | Nest)", owls, offset=np.log(owls["BroodSize"])
    )
    np.testing.assert_allclose(m.fixef_, same.fixef_, rtol=1e-8)


def test_logical_columns_are_factors_and_missing_rows_are_dropped(data):
    d = data.assign(weekend=(data["day"] % 7).isin([6, 0]))
    d.loc[3, "day_centered"] = np.nan
    with pytest.warns(UserWarning, match="1 row"):
        m = glmer("logins ~ day_centered + weekend + (day_centered | user_id)", d)
    assert list(m.fixef_.index) == ["(Intercept)", "day_centered", "weekendTRUE"]
    assert m.n_obs_ == len(d) - 1


def test_parse_formula():
    p = parse_formula("y ~ a * b + offset(log(t)) + (1 + x | g)")
    assert (
        p.response == "y" and p.fixed == "a * b" and p.bars == (("1 + x", "g"),) and p.offsets == ("log(t)",)
    )
    assert parse_formula("y ~ (1 | g)").fixed == "1"
    assert FAMILY_REGISTRY["poisson"].__name__ == "PoissonGLMMRegressor"


@pytest.mark.parametrize(
    ("formula", "error", "match"),
    [
        ("logins day_centered", ValueError, "exactly one '~'"),
        (
            "log(logins) ~ day_centered",
            ValueError,
            "valid lme4, but .* a transformed response 'log\\(logins\\)'",
        ),
        ("cbind(a, b) ~ day_centered", ValueError, "valid lme4, but .* two-column binomial response"),
        ("nope ~ day_centered + (1 | user_id)", ValueError, "not a column of data"),
        ("logins ~ day_centered + (1 | nobody)", ValueError, "grouping factor 'nobody'"),
        ("logins ~ day_centered + (1 | nope_column)", ValueError, "nope_column"),
        ("logins ~ 0 + day_centered + (1 | user_id)", ValueError, "valid lme4, but .* without an intercept"),
        ("logins ~ day + (I(day^2) | user_id)", ValueError, "valid lme4, but .* random slope"),
        ("logins ~ missing_column + (1 | user_id)", ValueError, "fixed part"),
        ("logins ~ (day_centered + (1 | user_id)", ValueError, "unbalanced"),
        (3, TypeError, "must be a string"),
    ],
)
def test_bad_formulas(data, formula, error, match):
    with pytest.raises(error, match=match):
        glmer(formula, data)


def test_bad_family_and_data(data):
    with pytest.raises(ValueError, match="family must be one of"):
        glmer("logins ~ day_centered + (1 | user_id)", data, family="tweedie")
    with pytest.raises(TypeError, match="DataFrame"):
        glmer("logins ~ day_centered + (1 | user_id)", data.to_numpy())


def test_full_dummy_coding_is_named_as_r():
    # an interaction without its main effect codes every level: R's urbanN:age, urbanY:age
    contra = load_reference_data("contraception.csv", factors=["district", "livch", "urban", "woman"])
    m = glmer("use ~ livch + urban:age + (1 | district)", contra, family="binomial")
    assert list(m.fixef_.index) == ["(Intercept)", "livch1", "livch2", "livch3+", "urbanN:age", "urbanY:age"]


@pytest.mark.parametrize(
    "formula",
    ["logins ~ 0 + day_centered + (1 | user_id)", "log(logins) ~ day_centered + (1 | user_id)"],
)
def test_unsupported_lme4_says_what_is_unsupported(data, formula):
    with pytest.raises(ValueError) as info:
        glmer(formula, data)
    assert "is valid lme4, but sklearn_glmm does not support" in str(info.value)
    assert "Expected lme4 syntax" not in str(info.value) and "Cannot read" not in str(info.value)


def test_without_formulaic_the_error_names_the_extra(data, monkeypatch, capsys):
    import sys

    from sklearn_glmm._cli import main

    monkeypatch.setitem(sys.modules, "formulaic", None)  # import formulaic now raises ImportError
    for call in (
        lambda: glmer("logins ~ day_centered + (1 | user_id)", data),
        lambda: PoissonGLMMRegressor.from_formula("logins ~ day_centered + (1 | user_id)", data),
    ):
        with pytest.raises(ImportError) as info:
            call()
        message = str(info.value)
        assert "formulaic" in message and "pip install '.[formula]'" in message
        assert "formula '" not in message and "Cannot read" not in message
    csv = str(Path(__file__).parent / "data" / "app_engagement.csv")
    assert main(["fit", csv, "--formula", "logins ~ day_centered + (1 | user_id)"]) == 2
    err = capsys.readouterr().err
    assert "pip install '.[formula]'" in err and "Cannot read" not in err
