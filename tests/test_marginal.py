"""marginal_predictions: delta-method SEs against a parametric bootstrap, intervals, averages."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from sklearn_glmm import BinomialGLMMClassifier, PoissonGLMMRegressor, marginal_predictions
from sklearn_glmm.datasets import make_app_engagement

GRID = pd.DataFrame({"day_centered": [-4.5, 0.0, 4.5]})


@pytest.fixture(scope="module")
def panel():
    data = make_app_engagement(n_users=40, n_days=10, random_state=3)
    return data[["day_centered"]], data["logins"], data["user_id"]


def _estimates(model, X):
    """Grid predictions, the average over the data, and integrated grid predictions."""
    return np.concatenate(
        [
            marginal_predictions(model, GRID)["estimate"],
            marginal_predictions(model, X, average=True)["estimate"],
            marginal_predictions(model, GRID, integrate=True)["estimate"],
        ]
    )


def test_delta_method_standard_errors_match_a_parametric_bootstrap(panel):
    # simulate from the fit (new random effects), refit, predict: the spread of the
    # predictions is their sampling SD. With B = 200 replicates the bootstrap SD has a
    # Monte-Carlo error of about 1/sqrt(2 B) = 5 %; the delta method also leaves out
    # the variance of theta (a few % for the integrated predictions). Tolerance: 15 %.
    X, y, g = panel
    model = PoissonGLMMRegressor("(1 | user_id)").fit(X, y, groups=g)
    se = np.concatenate(
        [
            marginal_predictions(model, GRID)["std_error"],
            marginal_predictions(model, X, average=True)["std_error"],
            marginal_predictions(model, GRID, integrate=True)["std_error"],
        ]
    )
    B = 200
    sims = model.simulate(X, g, n_simulations=B, random_state=1, conditional=False)
    boot = np.array([_estimates(clone(model).fit(X, sims[:, b], groups=g), X) for b in range(B)])
    ratio = se / boot.std(axis=0, ddof=1)
    assert np.all((ratio > 0.85) & (ratio < 1.15)), ratio
    # and the bootstrap is centred on the estimates (no bias beyond 2 bootstrap SEs)
    centre = (boot.mean(axis=0) - _estimates(model, X)) / (boot.std(axis=0, ddof=1) / np.sqrt(B))
    assert np.all(np.abs(centre) < 4), centre


@pytest.mark.slow
def test_delta_method_binomial_against_a_parametric_bootstrap(panel):
    # the quadrature path (logit link, integrate=True); same tolerance as above
    X, y, g = panel
    model = BinomialGLMMClassifier("(1 | user_id)").fit(X, (y > 2).astype(int), groups=g)
    se = np.concatenate(
        [
            marginal_predictions(model, GRID)["std_error"],
            marginal_predictions(model, X, average=True)["std_error"],
            marginal_predictions(model, GRID, integrate=True)["std_error"],
        ]
    )
    B = 250
    sims = model.simulate(X, g, n_simulations=B, random_state=2, conditional=False)
    boot = np.array([_estimates(clone(model).fit(X, sims[:, b], groups=g), X) for b in range(B)])
    ratio = se / boot.std(axis=0, ddof=1)
    assert np.all((ratio > 0.85) & (ratio < 1.15)), ratio


def test_gradients_match_finite_differences(panel):
    # the delta method's dp/dbeta, through the predictions' own code, for each link path
    X, y, g = panel
    models = [
        PoissonGLMMRegressor("(1 | user_id)").fit(X, y, groups=g),
        BinomialGLMMClassifier("(1 | user_id)").fit(X, (y > 2).astype(int), groups=g),
        BinomialGLMMClassifier("(1 | user_id)", link="probit").fit(X, (y > 2).astype(int), groups=g),
    ]
    for model in models:
        for integrate in (False, True):
            for average in (False, True):
                out = marginal_predictions(
                    model, X if average else GRID, average=average, integrate=integrate
                )
                V = model.vcov_.to_numpy()
                grads = []
                for j in range(V.shape[0]):
                    step = 1e-6 * max(1.0, abs(model.fixef_.iloc[j]))
                    shifted = []
                    for sign in (1, -1):
                        m = clone(model)
                        m.__dict__.update(model.__dict__)
                        m.fixef_ = model.fixef_.copy()
                        m.fixef_.iloc[j] += sign * step
                        kw = {"average": average, "integrate": integrate}
                        shifted.append(
                            marginal_predictions(m, X if average else GRID, **kw)["estimate"].to_numpy()
                        )
                    grads.append((shifted[0] - shifted[1]) / (2 * step))
                G = np.column_stack(grads)
                expected = np.sqrt(np.einsum("ij,jk,ik->i", G, V, G))
                np.testing.assert_allclose(out["std_error"], expected, rtol=1e-5)


def test_population_predictions_are_predict_without_groups(panel):
    X, y, g = panel
    model = PoissonGLMMRegressor("(1 | user_id)").fit(X, y, groups=g)
    out = marginal_predictions(model, X)
    np.testing.assert_allclose(out["estimate"], model.predict(X), rtol=1e-12)
    marginal = clone(model).set_params(new_groups="marginal").fit(X, y, groups=g)
    np.testing.assert_allclose(
        marginal_predictions(model, X, integrate=True)["estimate"], marginal.predict(X), rtol=1e-9
    )
    # the interval of a single row is the back-transformed Wald interval of eta
    row = marginal_predictions(model, GRID.iloc[[2]], level=0.9)
    x = np.array([1.0, 4.5])
    eta, se = x @ model.fixef_.to_numpy(), np.sqrt(x @ model.vcov_.to_numpy() @ x)
    assert row["conf_low"].iloc[0] == pytest.approx(np.exp(eta - 1.6448536269514722 * se), rel=1e-10)
    assert row["conf_high"].iloc[0] == pytest.approx(np.exp(eta + 1.6448536269514722 * se), rel=1e-10)
    assert row["std_error"].iloc[0] == pytest.approx(np.exp(eta) * se, rel=1e-10)
    symmetric = marginal_predictions(model, GRID, ci_scale="response")
    np.testing.assert_allclose(
        symmetric["conf_high"] - symmetric["estimate"], 1.959963984540054 * symmetric["std_error"]
    )


def test_averages_by_group_and_weights(panel):
    X, y, g = panel
    model = PoissonGLMMRegressor("(1 | user_id)").fit(X, y, groups=g)
    data = X.assign(half=np.where(X["day_centered"] < 0, "early", "late"))
    by = marginal_predictions(model, data[["day_centered"]], by=data["half"].to_numpy())
    rows = marginal_predictions(model, X)
    early = rows["estimate"][data["half"] == "early"].mean()
    assert list(by["by"]) == ["early", "late"] and by["estimate"].iloc[0] == pytest.approx(early, rel=1e-12)
    w = np.linspace(1, 2, len(X))
    weighted = marginal_predictions(model, X, average=True, weights=w)
    assert weighted["estimate"].iloc[0] == pytest.approx(np.average(rows["estimate"], weights=w), rel=1e-12)
    with pytest.raises(ValueError, match="level must be"):
        marginal_predictions(model, GRID, level=95)
    with pytest.raises(ValueError, match="weights are used only"):
        marginal_predictions(model, GRID, weights=[1, 2, 3])
    with pytest.raises(ValueError, match="by names column"):
        marginal_predictions(model, GRID, by="nope")
    with pytest.raises(TypeError, match="X is required"):
        marginal_predictions(model)


def test_formula_models_take_a_raw_grid():
    pytest.importorskip("formulaic")
    from sklearn_glmm import glmer

    data = make_app_engagement(n_users=40, n_days=10, random_state=3)
    model = glmer("logins ~ day_centered + weekend + (1 | user_id)", data.assign(weekend=data["weekend"] > 0))
    grid = pd.DataFrame({"day_centered": [0.0, 0.0], "weekend": [False, True]})
    out = marginal_predictions(model, grid)
    assert list(out.columns) == ["day_centered", "weekend", "estimate", "std_error", "conf_low", "conf_high"]
    beta = model.fixef_
    assert out["estimate"].iloc[1] == pytest.approx(
        np.exp(beta["(Intercept)"] + beta["weekendTRUE"]), rel=1e-12
    )
    overall = marginal_predictions(model, average=True)  # the model's own rows
    assert overall["estimate"].iloc[0] == pytest.approx(
        model.predict(data.assign(weekend=data["weekend"] > 0).drop(columns="user_id")).mean(), rel=1e-12
    )
    with pytest.raises(ValueError, match="missing values"):
        marginal_predictions(model, grid.assign(day_centered=[0.0, np.nan]))


def test_grid_predictions_match_emmeans():
    # emmeans(m, ~ day_centered, at = ..., type = "response") on lme4's fit
    # (tests/data/emmeans_references.R); our estimates differ from lme4's by ~3e-6 and our
    # vcov_ (the exact Hessian) from lme4's finite-difference one by ~6e-4 relative
    pytest.importorskip("formulaic")
    from sklearn_glmm import glmer

    from .conftest import load_reference, load_reference_data

    ref = load_reference("emmeans_references")
    model = glmer(
        "logins ~ day_centered + (1 | user_id)",
        load_reference_data("app_engagement.csv", factors=["user_id"]),
    )
    out = marginal_predictions(model, pd.DataFrame({"day_centered": ref["day_centered"]}))
    np.testing.assert_allclose(out["estimate"], ref["rate"], rtol=2e-5)
    np.testing.assert_allclose(out["std_error"], ref["SE"], rtol=1e-3)
    np.testing.assert_allclose(out["conf_low"], ref["lower"], rtol=2e-4)
    np.testing.assert_allclose(out["conf_high"], ref["upper"], rtol=2e-4)
