"""One fit partitioned over a Dask LocalCluster equals the fit in memory."""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
import pandas as pd
import pytest

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

from sklearn_glmm import (
    BinomialGLMMClassifier,
    GaussianLMMRegressor,
    PoissonGLMMRegressor,
    ZeroInflatedPoissonGLMMRegressor,
)
from sklearn_glmm.datasets import load_app_engagement, make_app_engagement

FEATURES = ["day_centered", "notifications", "weekend", "mood"]


@pytest.fixture(scope="module")
def client():
    # ":0": the scheduler's HTTP server starts even without a dashboard, and on its fixed
    # port (8787) it clashes with any other cluster on the machine (a warning, a leaked socket)
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            worker_class=distributed.Nanny,
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def panel():
    """200,000 rows: 2,000 users x 100 days, users nested in 100 clinics."""
    data = make_app_engagement(2000, 100, random_state=11)
    data["clinic"] = "c" + pd.Series(pd.factorize(data["user_id"])[0] // 20).astype(str)
    data["active"] = (data["logins"] > 0).astype(int)
    return data


@pytest.fixture(scope="module")
def panel_files(panel, tmp_path_factory):
    """The panel as 4 Parquet files of whole clinics (so of whole users)."""
    folder = tmp_path_factory.mktemp("panel")
    clinic = pd.factorize(panel["clinic"])[0]
    for i in range(4):
        panel[clinic % 4 == i].to_parquet(folder / f"part-{i}.parquet", index=False)
    return str(folder)


def _assert_same_fit(on_dask, in_memory):
    assert on_dask.loglik_ == pytest.approx(in_memory.loglik_, rel=1e-8)
    np.testing.assert_allclose(on_dask.fixef_, in_memory.fixef_, atol=1e-6, rtol=0)
    np.testing.assert_allclose(on_dask.theta_, in_memory.theta_, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(on_dask.fixef_se_, in_memory.fixef_se_, rtol=1e-3)
    for factor, frame in in_memory.ranef_.items():
        pd.testing.assert_index_equal(on_dask.ranef_[factor].index, frame.index)
        np.testing.assert_allclose(on_dask.ranef_[factor], frame, atol=1e-5)
        np.testing.assert_allclose(on_dask.ranef_condsd_[factor], in_memory.ranef_condsd_[factor], rtol=1e-4)


MODELS = [
    ("poisson intercept", lambda: PoissonGLMMRegressor("(1 | user_id)", group_column="user_id"), "logins"),
    (
        "poisson slope",
        lambda: PoissonGLMMRegressor("(1 + day_centered | user_id)", group_column="user_id"),
        "logins",
    ),
    ("binomial", lambda: BinomialGLMMClassifier("(1 | user_id)", group_column="user_id"), "active"),
    (
        "nested",
        lambda: PoissonGLMMRegressor("(1 | clinic/user_id)", group_column=["clinic", "user_id"]),
        "logins",
    ),
]


@pytest.mark.parametrize("name, make, response", MODELS, ids=[m[0] for m in MODELS])
def test_a_dask_fit_of_parquet_partitions_is_the_fit_in_memory(
    client, panel, panel_files, name, make, response
):
    model = make()
    columns = FEATURES + (
        model.group_column if isinstance(model.group_column, list) else [model.group_column]
    )
    in_memory = make().fit(panel[columns], panel[response])
    data = dd.read_parquet(panel_files)
    on_dask = model.fit(data[columns], data[response])
    _assert_same_fit(on_dask, in_memory)
    # predictions come back as a Dask collection, row for row
    predicted = model.predict(data[columns])
    assert isinstance(predicted, dd.Series)
    expected = in_memory.predict(pd.read_parquet(panel_files)[columns])
    np.testing.assert_allclose(predicted.compute().to_numpy(), expected, rtol=1e-6)


def test_the_app_engagement_data_in_partitions_that_split_users(client):
    data = load_app_engagement()
    X, y, g = data[["day_centered"]], data["logins"], data["user_id"]
    frame = dd.from_pandas(
        data, npartitions=3, sort=False
    )  # rows in order of day: every user in every partition
    for make in (lambda: PoissonGLMMRegressor("1 + day_centered"), lambda: GaussianLMMRegressor("1")):
        in_memory = make().fit(X, np.log1p(y) if "Gaussian" in type(make()).__name__ else y, groups=g)
        response = np.log1p(frame["logins"]) if "Gaussian" in type(make()).__name__ else frame["logins"]
        on_dask = make().fit(frame[["day_centered"]], response, groups=frame["user_id"])
        _assert_same_fit(on_dask, in_memory)
        assert on_dask.score(frame[["day_centered"]], response, groups=frame["user_id"]) == pytest.approx(
            in_memory.score(X, np.log1p(y) if "Gaussian" in type(make()).__name__ else y, groups=g), rel=1e-6
        )


def test_classifier_outputs_on_dask(client, panel, panel_files):
    columns = FEATURES + ["user_id"]
    data = dd.read_parquet(panel_files)
    model = BinomialGLMMClassifier("(1 | user_id)", group_column="user_id").fit(data[columns], data["active"])
    rows = pd.read_parquet(panel_files)
    proba = model.predict_proba(data[columns])
    assert isinstance(proba, dd.DataFrame)
    np.testing.assert_allclose(proba.compute().to_numpy(), model.predict_proba(rows[columns]), rtol=1e-12)
    np.testing.assert_array_equal(
        model.predict(data[columns]).compute().to_numpy(), model.predict(rows[columns])
    )
    assert model.score(data[columns], data["active"]) == pytest.approx(
        model.score(rows[columns], rows["active"])
    )


def test_what_a_dask_fit_refuses(client, panel_files, monkeypatch):
    data = dd.read_parquet(panel_files)
    X = data[FEATURES + ["user_id", "weekend"]]
    with pytest.raises(ValueError, match="crossed grouping factors"):
        PoissonGLMMRegressor("(1 | user_id) + (1 | weekend)", group_column=["user_id", "weekend"]).fit(
            data[FEATURES + ["user_id"]].assign(weekday=data["weekend"]), data["logins"]
        )
    with pytest.raises(ValueError, match="does not fit partitioned"):
        ZeroInflatedPoissonGLMMRegressor("(1 | user_id)", group_column="user_id").fit(X, data["logins"])
    with pytest.raises(TypeError, match="y must be a Dask Series"):
        PoissonGLMMRegressor(group_column="user_id").fit(X, np.zeros(10))
    with pytest.raises(ValueError, match="needs groups"):
        PoissonGLMMRegressor().fit(data[FEATURES], data["logins"])

    def no_client():
        raise ValueError("No clients found")

    monkeypatch.setattr(distributed, "get_client", no_client)
    with pytest.raises(ValueError, match="no dask.distributed Client"):
        PoissonGLMMRegressor(group_column="user_id").fit(X, data["logins"])


def test_without_distributed_a_dask_input_names_the_extra(monkeypatch, panel_files):
    data = dd.read_parquet(panel_files)
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(
        ImportError, match=r"pip install 'dask\[dataframe,distributed\]', or pip install '\.\[dask\]'"
    ):
        PoissonGLMMRegressor(group_column="user_id").fit(data[FEATURES + ["user_id"]], data["logins"])


@pytest.mark.filterwarnings("ignore:Port 8787 is already in use")
def test_a_worker_killed_during_the_fit_changes_nothing(panel, panel_files):
    """A worker process dies mid-fit: its parts are rebuilt from the Parquet files and the fit ends as before."""
    from sklearn_glmm._core._partitioned import PartitionedLaplaceProblem

    columns = FEATURES + ["user_id"]
    in_memory = PoissonGLMMRegressor("(1 | user_id)", group_column="user_id").fit(
        panel[columns], panel["logins"]
    )
    original = PartitionedLaplaceProblem.evaluate
    calls = {"n": 0, "killed": None}

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):

        def evaluate_and_kill(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 5:
                pids = client.run(os.getpid)
                calls["killed"] = min(pids.values())
                os.kill(calls["killed"], signal.SIGKILL)
            return original(self, *args, **kwargs)

        PartitionedLaplaceProblem.evaluate = evaluate_and_kill
        try:
            data = dd.read_parquet(panel_files)
            on_dask = PoissonGLMMRegressor("(1 | user_id)", group_column="user_id").fit(
                data[columns], data["logins"]
            )
        finally:
            PartitionedLaplaceProblem.evaluate = original
    assert calls["killed"] is not None and calls["n"] > 5
    _assert_same_fit(on_dask, in_memory)
