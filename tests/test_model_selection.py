"""scikit-learn integration: routing of groups, group_column, searches, CV, new groups."""

import pickle
import warnings

import joblib
import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    RandomizedSearchCV,
    cross_val_predict,
    cross_val_score,
    cross_validate,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_glmm import BinomialGLMMClassifier, PoissonGLMMRegressor
from sklearn_glmm._base import NoGroupsWarning
from sklearn_glmm.datasets import make_app_engagement

FEATURES = ["day_centered", "notifications", "weekend", "mood"]


@pytest.fixture(scope="module")
def panel():
    data = make_app_engagement(n_users=60, n_days=40, random_state=11)
    return data[FEATURES], data["logins"], data["user_id"], data


@pytest.fixture
def routing():
    with sklearn.config_context(enable_metadata_routing=True):
        yield


def _no_groups_is_an_error():
    warnings.simplefilter("error", NoGroupsWarning)


def test_grid_search_over_random_effects_with_routing(panel, routing):
    X, y, g, _ = panel
    grid = {"random_effects": ["1", "1 + day_centered"]}
    with warnings.catch_warnings():
        _no_groups_is_an_error()  # every fit must receive the groups
        search = GridSearchCV(PoissonGLMMRegressor(), grid, cv=GroupKFold(3)).fit(X, y, groups=g)
    assert set(search.cv_results_["param_random_effects"]) == {"1", "1 + day_centered"}
    assert search.best_estimator_.ranef_  # refit got the groups too
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


def test_randomized_search_and_cross_validation_with_routing(panel, routing):
    X, y, g, _ = panel
    with warnings.catch_warnings():
        _no_groups_is_an_error()
        search = RandomizedSearchCV(
            PoissonGLMMRegressor(),
            {"random_effects": ["1", "1 + day_centered"]},
            n_iter=2,
            cv=GroupKFold(3),
            random_state=0,
        ).fit(X, y, groups=g)
        scores = cross_validate(PoissonGLMMRegressor(), X, y, params={"groups": g}, cv=GroupKFold(3))
        predictions = cross_val_predict(PoissonGLMMRegressor(), X, y, params={"groups": g}, cv=GroupKFold(3))
    assert search.best_params_["random_effects"] in ("1", "1 + day_centered")
    assert scores["test_score"].shape == (3,)
    assert predictions.shape == y.shape and np.all(predictions > 0)


def test_sample_weight_and_offset_route_when_requested(panel, routing):
    X, y, g, _ = panel
    w = np.ones(len(y))
    est = (
        PoissonGLMMRegressor()
        .set_fit_request(sample_weight=True, offset=True)
        .set_score_request(sample_weight=True, offset=True)
    )
    scores = cross_val_score(
        est, X, y, params={"groups": g, "sample_weight": w, "offset": np.zeros(len(y))}, cv=GroupKFold(3)
    )
    plain = cross_val_score(PoissonGLMMRegressor(), X, y, params={"groups": g}, cv=GroupKFold(3))
    np.testing.assert_allclose(scores, plain, rtol=1e-6)


def test_pipeline_routes_groups_and_scaled_columns_keep_their_names(panel, routing):
    X, y, g, _ = panel
    scale = ColumnTransformer(
        [("scale", StandardScaler(), ["day_centered", "mood"])],
        remainder="passthrough",
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    pipe = Pipeline([("prep", scale), ("glmm", PoissonGLMMRegressor("1 + day_centered"))])
    with warnings.catch_warnings():
        _no_groups_is_an_error()
        pipe.fit(X, y, groups=g)
        search = GridSearchCV(pipe, {"glmm__random_effects": ["1", "1 + day_centered"]}, cv=GroupKFold(3))
        search.fit(X, y, groups=g)
    model = pipe.named_steps["glmm"]
    assert list(model.ranef_["user_id"].columns) == ["(Intercept)", "day_centered"]
    assert "mood" in model.fixef_.index
    assert pipe.predict(X.iloc[:5], groups=g.iloc[:5]).shape == (5,)
    assert search.best_params_["glmm__random_effects"] in ("1", "1 + day_centered")


def test_without_routing_group_column_takes_groups_from_x(panel):
    X, y, g, data = panel
    Xg = data[FEATURES + ["user_id"]]
    est = PoissonGLMMRegressor("1 + day_centered", group_column="user_id")
    with warnings.catch_warnings():
        _no_groups_is_an_error()
        search = GridSearchCV(est, {"random_effects": ["1", "1 + day_centered"]}, cv=GroupKFold(3), n_jobs=2)
        search.fit(Xg, y, groups=g)  # groups go to the splitter only (routing is off)
        direct = PoissonGLMMRegressor("1 + day_centered").fit(X, y, groups=g)
        via_column = clone(est).fit(Xg, y)
    assert list(via_column.fixef_.index) == list(direct.fixef_.index)  # user_id is not a fixed effect
    np.testing.assert_allclose(via_column.fixef_, direct.fixef_, rtol=1e-8)
    np.testing.assert_allclose(via_column.predict(Xg), direct.predict(X, groups=g), rtol=1e-8)
    assert search.best_estimator_.ranef_
    with pytest.raises(ValueError, match="use one or the other"):
        clone(est).fit(Xg, y, groups=g)
    with pytest.raises(ValueError, match="not a column of X"):
        PoissonGLMMRegressor(group_column="user").fit(Xg, y)
    positional = PoissonGLMMRegressor("1 + x0", group_column=4).fit(Xg.to_numpy(), y)
    np.testing.assert_allclose(positional.fixef_.to_numpy(), direct.fixef_.to_numpy(), rtol=1e-8)


def test_without_routing_or_group_column_it_warns(panel):
    X, y, g, _ = panel
    with pytest.warns(NoGroupsWarning, match="group_column"):
        GridSearchCV(PoissonGLMMRegressor(), {"random_effects": ["1"]}, cv=GroupKFold(3)).fit(X, y, groups=g)


def test_marginal_predictions_for_new_groups(panel):
    X, y, g, _ = panel
    est = PoissonGLMMRegressor("1 + day_centered", new_groups="marginal").fit(X, y, groups=g)
    pop = PoissonGLMMRegressor("1 + day_centered").fit(X, y, groups=g)
    new = X.iloc[:4]
    (sigma,) = est._re_cov
    z = np.column_stack([np.ones(4), new["day_centered"]])
    expected = pop.predict(new) * np.exp(0.5 * np.einsum("ij,jk,ik->i", z, sigma, z))
    np.testing.assert_allclose(est.predict(new, groups=["x", "y", "z", "w"]), expected, rtol=1e-12)
    # known groups keep their conditional modes under every policy
    np.testing.assert_allclose(est.predict(new, groups=g.iloc[:4]), pop.predict(new, groups=g.iloc[:4]))
    with pytest.raises(ValueError, match="new_groups='error'"):
        clone(est).set_params(new_groups="error").fit(X, y, groups=g).predict(new, groups=["x"] * 4)


def test_marginal_probabilities_match_simulation(rng):
    groups = np.repeat(np.arange(150), 12)
    x = rng.normal(size=groups.size)
    p = 1 / (1 + np.exp(-(-1.0 + 0.5 * x + rng.normal(0, 1.5, 150)[groups])))
    y = (rng.uniform(size=p.size) < p).astype(int)
    clf = BinomialGLMMClassifier(new_groups="marginal").fit(x.reshape(-1, 1), y, groups=groups)
    sd = np.sqrt(clf._re_cov[0][0, 0])
    eta = clf.intercept_ + clf.coef_[0] * 0.3
    draws = 1 / (1 + np.exp(-(eta + sd * np.random.default_rng(0).normal(size=400_000))))
    marginal = clf.predict_proba(np.array([[0.3]]), groups=["new"])[0, 1]
    assert marginal == pytest.approx(draws.mean(), abs=3e-3)
    population = 1 / (1 + np.exp(-eta))
    assert abs(marginal - 0.5) < abs(population - 0.5)  # averaging pulls towards 1/2


def test_clone_params_pickle_and_joblib(panel, tmp_path):
    X, y, g, _ = panel
    est = PoissonGLMMRegressor("1 + day_centered", new_groups="marginal", max_iter=300)
    assert clone(est).get_params() == est.get_params()
    assert est.set_params(random_effects="1").random_effects == "1"
    fitted = est.fit(X, y, groups=g)
    restored = pickle.loads(pickle.dumps(fitted))
    joblib.dump(fitted, tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib")
    for other in (restored, loaded):
        np.testing.assert_array_equal(other.predict(X, groups=g), fitted.predict(X, groups=g))
        np.testing.assert_array_equal(other.fixef_, fitted.fixef_)


def test_grid_search_on_a_local_dask_cluster(panel):
    distributed = pytest.importorskip("distributed")
    _X, y, g, data = panel
    Xg = data[FEATURES + ["user_id"]]
    # the scheduler's HTTP server starts even without a dashboard; on a fixed port (8787)
    # it clashes with any other cluster on the machine and warns, so it takes a free one
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
    )
    with cluster, distributed.Client(cluster), joblib.parallel_backend("dask"):
        search = GridSearchCV(
            PoissonGLMMRegressor(group_column="user_id"),
            {"random_effects": ["1", "1 + day_centered"]},
            cv=GroupKFold(3),
            n_jobs=-1,
        ).fit(Xg, y, groups=g)
    local = GridSearchCV(
        PoissonGLMMRegressor(group_column="user_id"),
        {"random_effects": ["1", "1 + day_centered"]},
        cv=GroupKFold(3),
    ).fit(Xg, y, groups=g)
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"], rtol=1e-10
    )
