"""The random_effects parser, theta -> Lambda, and the design builder."""

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm.design import (
    DesignBuilder,
    independent_columns,
    lambda_from_theta,
    parse_random_effects,
    theta_index,
)
from sklearn_glmm.design._builder import groups_to_series


@pytest.mark.parametrize(
    "spec, columns, intercept, factor",
    [
        ("1", (), True, None),
        ("1 + day_centered", ("day_centered",), True, None),
        ("0 + day_centered", ("day_centered",), False, None),
        ("day_centered - 1", ("day_centered",), False, None),
        ("(1 | user_id)", (), True, "user_id"),
        ("(day_centered | user_id)", ("day_centered",), True, "user_id"),
        ("( 1 + a + b | g )", ("a", "b"), True, "g"),
        ("(0 + a | g)", ("a",), False, "g"),
    ],
)
def test_parse_accepts_lme4_syntax(spec, columns, intercept, factor):
    (parsed,) = parse_random_effects(spec)
    assert parsed.columns == columns
    assert parsed.intercept is intercept
    assert parsed.factor == factor


@pytest.mark.parametrize(
    "spec, match",
    [
        ("", "empty"),
        ("0", "no random-effect term"),
        ("(1 | g) (1 | h)", "joined by"),
        ("(1 | g) + (0 + x | g) + (0 + z + x | g)", "'x' appears twice for the factor 'g'"),
        ("(1 | a/)", "not a grouping-factor name"),
        ("((1 | g)", "unbalanced"),
        ("1 + x + x", "appears twice"),
        ("1 + log(x)", "not a column name"),
        ("1 | g", "parentheses"),
        ("( | g)", "empty"),
    ],
)
def test_parse_rejects_garbage(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_random_effects(spec)


def test_parse_rejects_non_string():
    with pytest.raises(TypeError, match="random_effects must be a string"):
        parse_random_effects(["1"])


def test_formula_round_trip():
    assert parse_random_effects("1 + x")[0].to_formula("g") == "(x | g)"
    assert parse_random_effects("1")[0].to_formula("g") == "(1 | g)"
    assert parse_random_effects("0 + x")[0].to_formula("g") == "(0 + x | g)"


def test_theta_order_is_lme4s():
    rows, cols = theta_index(3)
    assert list(zip(rows, cols)) == [(0, 0), (1, 0), (2, 0), (1, 1), (2, 1), (2, 2)]
    lam = lambda_from_theta(np.array([1.0, 2.0, 3.0]), 2)
    np.testing.assert_array_equal(lam, [[1.0, 0.0], [2.0, 3.0]])


def test_builder_levels_codes_and_unseen_levels():
    X = np.array([[0.5], [1.0], [2.0], [3.0]])
    builder = DesignBuilder("1 + x0")
    design = builder.fit(X, ["x0"], pd.Series(["b", "a", "b", "c"], name="user"))
    assert list(builder.levels_["user"]) == ["a", "b", "c"]
    assert builder.factors_ == ["user"]
    np.testing.assert_array_equal(design.term.codes, [1, 0, 1, 2])
    np.testing.assert_array_equal(design.term.Z, [[1, 0.5], [1, 1.0], [1, 2.0], [1, 3.0]])
    new = builder.transform(X[:2], ["zz", "c"])
    np.testing.assert_array_equal(new.term.codes, [-1, 2])
    b = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 1.0]])
    np.testing.assert_allclose(new.term.linear_predictor(b), [0.0, 3.0 + 1.0])


def test_builder_factor_names():
    X = np.zeros((3, 1))
    b = DesignBuilder("1")
    b.fit(X, ["x0"], [1, 2, 1])
    assert b.factors_ == ["group"]
    b = DesignBuilder("(1 | user_id)")
    b.fit(X, ["x0"], np.array([1, 2, 1]))
    assert b.factors_ == ["user_id"]
    b.fit(X, ["x0"], pd.DataFrame({"user_id": [1, 2, 1]}))
    with pytest.raises(ValueError, match="groups by 'user_id' but groups is named 'clinic'"):
        DesignBuilder("(1 | user_id)").fit(X, ["x0"], pd.Series([1, 2, 1], name="clinic"))


def test_builder_rejects_unknown_slope_column():
    with pytest.raises(ValueError, match=r"column\(s\) \['dayz'\] that are not in X"):
        DesignBuilder("1 + dayz").fit(np.zeros((3, 1)), ["day"], [1, 2, 3])


@pytest.mark.parametrize(
    "groups, match",
    [
        ([1, 2], "2 labels but X has 3 rows"),
        ([1, None, 2], "missing label"),
        (np.zeros((3, 2)), "one-dimensional"),
    ],
)
def test_groups_checks(groups, match):
    with pytest.raises(ValueError, match=match):
        groups_to_series(groups, 3)


def test_independent_columns_keeps_earlier_columns(rng):
    x = rng.normal(size=(20, 2))
    X = np.column_stack([np.ones(20), x, x[:, 0] * 2.0, np.full(20, 3.0), x[:, 1] - x[:, 0]])
    np.testing.assert_array_equal(independent_columns(X), [True, True, True, False, False, False])
