"""A fit on partitions of whole groups equals the fit on all rows at once (no Dask needed).

:class:`~sklearn_glmm._partitioned_fit.LocalSource` holds the partitions in
this process; the Dask source runs the same functions on workers
(``tests/test_dask.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm import (
    BinomialGLMMClassifier,
    GammaGLMMRegressor,
    GaussianLMMRegressor,
    NegativeBinomialGLMMRegressor,
    PoissonGLMMRegressor,
    ZeroInflatedPoissonGLMMRegressor,
)
from sklearn_glmm._core._partitioned import ResidualSummary
from sklearn_glmm._partitioned_fit import (
    _QUANTILE_GRID,
    OFFSET_COLUMN,
    WEIGHT_COLUMN,
    Y_COLUMN,
    LocalSource,
    PartitionLayout,
    _merge_quantiles,
    fit_partitioned,
    partition_key_of,
)
from sklearn_glmm.datasets import make_app_engagement

FEATURES = ["day_centered", "notifications", "weekend", "mood"]

#: the panel's slope SD and clinic SD are (close to) 0, so those fits end on the boundary;
#: beside the point here, where the partitioned fit must equal the in-memory one either way
BOUNDARY_FITS = pytest.mark.filterwarnings("ignore::sklearn_glmm.SingularFitWarning")


@pytest.fixture(scope="module")
def panel():
    data = make_app_engagement(240, 25, random_state=5)
    user = pd.factorize(data["user_id"])[0]
    data["clinic"] = "c" + pd.Series(user // 12).astype(str)  # users nested in 20 clinics
    data["weekday"] = data["day"] % 7
    return data


def _frames(data, columns, y, *, by=None, k=4, weights=None, offset=None):
    frame = data[columns].copy()
    frame[Y_COLUMN] = np.asarray(y)
    if weights is not None:
        frame[WEIGHT_COLUMN] = weights
    if offset is not None:
        frame[OFFSET_COLUMN] = offset
    if by is None:  # round robin: every group spans every partition (the source repartitions)
        return [frame.iloc[i::k].reset_index(drop=True) for i in range(k)]
    codes = pd.factorize(data[by])[0] % k
    return [frame[codes == i].reset_index(drop=True) for i in range(k)]


def _assert_same_fit(partitioned, whole, *, loglik_rtol=1e-8, fixef_atol=1e-6):
    assert partitioned.loglik_ == pytest.approx(whole.loglik_, rel=loglik_rtol)
    np.testing.assert_allclose(partitioned.fixef_, whole.fixef_, atol=fixef_atol, rtol=0)
    np.testing.assert_allclose(partitioned.theta_, whole.theta_, atol=1e-5, rtol=1e-5)
    # standard errors from differences of the gradient: PIRLS warm starts differ, so does the last digit
    np.testing.assert_allclose(partitioned.fixef_se_, whole.fixef_se_, rtol=1e-3)
    se = np.outer(whole.fixef_se_, whole.fixef_se_)
    np.testing.assert_allclose(partitioned.vcov_ / se, whole.vcov_ / se, atol=1e-3)
    for factor, frame in whole.ranef_.items():
        pd.testing.assert_index_equal(partitioned.ranef_[factor].index, frame.index)
        np.testing.assert_allclose(partitioned.ranef_[factor], frame, atol=1e-5)
        np.testing.assert_allclose(partitioned.ranef_condsd_[factor], whole.ranef_condsd_[factor], rtol=1e-4)
    assert partitioned.n_obs_ == whole.n_obs_
    assert partitioned.aic_ == pytest.approx(whole.aic_, rel=1e-8)
    # extremes exact (up to the estimates' own differences), quartiles to 1/10000 of the rank
    q_whole, q_part = whole._residual_quantiles, partitioned._residual_quantiles
    np.testing.assert_allclose(q_part[[0, -1]], q_whole[[0, -1]], rtol=1e-5)
    np.testing.assert_allclose(q_part[1:4], q_whole[1:4], atol=0.02)
    for key in ("sum", "sum_sq", "n_obs"):
        assert partitioned.response_summary_[key] == pytest.approx(whole.response_summary_[key], rel=1e-12)


CASES = [
    ("poisson intercept", lambda: PoissonGLMMRegressor("(1 | user_id)"), "count"),
    ("poisson slope", lambda: PoissonGLMMRegressor("(1 + day_centered | user_id)"), "count"),
    ("binomial", lambda: BinomialGLMMClassifier("(1 | user_id)"), "binary"),
    ("binomial quadrature", lambda: BinomialGLMMClassifier("(1 | user_id)", n_agq=5), "binary"),
    ("negative binomial", lambda: NegativeBinomialGLMMRegressor("(1 | user_id)"), "count"),
    ("gamma", lambda: GammaGLMMRegressor("(1 | user_id)"), "positive"),
    ("linear mixed model", lambda: GaussianLMMRegressor("(1 + day_centered | user_id)"), "log"),
    ("linear mixed model, ML", lambda: GaussianLMMRegressor("(1 | user_id)", reml=False), "log"),
]


def _response(data, kind):
    return {
        "count": data["logins"],
        "binary": np.where(data["logins"] > 0, "active", "idle"),
        "positive": data["logins"] + 0.5,
        "log": np.log1p(data["logins"]),
    }[kind]


@BOUNDARY_FITS
@pytest.mark.parametrize("name, make, kind", CASES, ids=[c[0] for c in CASES])
def test_a_partitioned_fit_is_the_fit_on_all_rows(panel, name, make, kind):
    y = _response(panel, kind)
    whole = make().fit(panel[FEATURES], y, groups=panel["user_id"])
    frames = _frames(panel, FEATURES + ["user_id"], y, by="user_id")
    partitioned = fit_partitioned(
        make(), LocalSource(frames), PartitionLayout(FEATURES, ["user_id"], y_name="logins")
    )
    _assert_same_fit(partitioned, whole)
    if kind == "binary":
        np.testing.assert_array_equal(partitioned.classes_, whole.classes_)


@BOUNDARY_FITS
def test_partitions_that_split_groups_are_repartitioned(panel):
    y = panel["logins"]
    whole = PoissonGLMMRegressor("(1 + day_centered | user_id)").fit(
        panel[FEATURES], y, groups=panel["user_id"]
    )
    frames = _frames(panel, FEATURES + ["user_id"], y)  # every user in every partition
    layout = PartitionLayout(FEATURES, ["user_id"])
    partitioned = fit_partitioned(
        PoissonGLMMRegressor("(1 + day_centered | user_id)"), LocalSource(frames), layout
    )
    _assert_same_fit(partitioned, whole)


@BOUNDARY_FITS
def test_nested_factors_are_partitioned_by_the_outer_one(panel):
    y = panel["logins"]
    groups = panel[["clinic", "user_id"]]
    make = lambda: PoissonGLMMRegressor("(1 | clinic/user_id)")
    whole = make().fit(panel[FEATURES], y, groups=groups)
    frames = _frames(panel, FEATURES + ["clinic", "user_id"], y)
    partitioned = fit_partitioned(
        make(), LocalSource(frames), PartitionLayout(FEATURES, ["clinic", "user_id"])
    )
    _assert_same_fit(partitioned, whole)
    assert set(partitioned.ranef_) == {"clinic", "user_id:clinic"} or set(partitioned.ranef_) == set(
        whole.ranef_
    )


def test_weights_and_offset_reach_every_partition(panel, rng):
    y = panel["logins"]
    w = rng.integers(0, 3, size=len(panel)).astype(float)  # zeros included
    offset = np.log(rng.uniform(0.5, 2.0, size=len(panel)))
    whole = PoissonGLMMRegressor("(1 | user_id)").fit(
        panel[FEATURES], y, groups=panel["user_id"], sample_weight=w, offset=offset
    )
    frames = _frames(panel, FEATURES + ["user_id"], y, by="user_id", weights=w, offset=offset)
    layout = PartitionLayout(FEATURES, ["user_id"], weights=True, offset=True)
    partitioned = fit_partitioned(PoissonGLMMRegressor("(1 | user_id)"), LocalSource(frames), layout)
    _assert_same_fit(partitioned, whole)
    assert partitioned.n_obs_ == int(np.sum(w > 0))


def test_unsupported_models_and_bad_partitions_are_refused_clearly(panel):
    y = panel["logins"]
    frames = _frames(panel, FEATURES + ["user_id", "weekday"], y, by="user_id")
    crossed = PoissonGLMMRegressor("(1 | user_id) + (1 | weekday)")
    with pytest.raises(ValueError, match="crossed grouping factors.*does not support"):
        fit_partitioned(crossed, LocalSource(frames), PartitionLayout(FEATURES, ["user_id", "weekday"]))
    with pytest.raises(ValueError, match="does not fit partitioned"):
        fit_partitioned(
            ZeroInflatedPoissonGLMMRegressor("(1 | user_id)"),
            LocalSource(frames),
            PartitionLayout(FEATURES, ["user_id"]),
        )
    bad = [f.assign(**{Y_COLUMN: -1.0}) if i == 2 else f for i, f in enumerate(frames)]
    with pytest.raises(ValueError, match="y"):
        fit_partitioned(
            PoissonGLMMRegressor("(1 | user_id)"), LocalSource(bad), PartitionLayout(FEATURES, ["user_id"])
        )
    zeros = [f.assign(**{Y_COLUMN: 0.0}) for f in frames]
    with pytest.raises(ValueError, match="y is 0 in all"):
        fit_partitioned(
            PoissonGLMMRegressor("(1 | user_id)"), LocalSource(zeros), PartitionLayout(FEATURES, ["user_id"])
        )


def test_the_partition_key_is_the_columns_every_factor_contains():
    assert partition_key_of(["user_id"], "1") == ["user_id"]
    assert partition_key_of(["clinic:user", "clinic"], "(1 | clinic/user)") == ["clinic"]
    assert partition_key_of(["a:b", "a:c"], "(1 | a:b) + (1 | a:c)") == ["a"]
    with pytest.raises(ValueError, match="crossed"):
        partition_key_of(["subject", "item"], "(1 | subject) + (1 | item)")


def test_merged_quantiles_keep_the_extremes_and_the_ranks(rng):
    pieces = [rng.normal(size=n) for n in (1000, 5000, 200)]
    stats = [ResidualSummary(p.size, np.zeros(0), np.quantile(p, _QUANTILE_GRID), 0.0) for p in pieces]
    merged = _merge_quantiles(stats)
    exact = np.quantile(np.concatenate(pieces), [0, 0.25, 0.5, 0.75, 1])
    assert merged[0] == exact[0] and merged[-1] == exact[-1]
    np.testing.assert_allclose(merged[1:4], exact[1:4], atol=0.01)
