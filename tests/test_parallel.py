"""n_jobs: one fit's shards on several threads, the same answer as on one."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_glmm import (
    BinomialGLMMClassifier,
    GaussianLMMRegressor,
    NegativeBinomialGLMMRegressor,
    PoissonGLMMRegressor,
    ZeroInflatedPoissonGLMMRegressor,
)
from sklearn_glmm._core import ShardRunner, make_controls
from sklearn_glmm.datasets import make_app_engagement
from sklearn_glmm.utils._validation import effective_threads

from .conftest import core_problem


@pytest.fixture(scope="module")
def panel():
    return make_app_engagement(300, 30, random_state=3)


FEATURES = ["day_centered", "notifications", "weekend", "mood"]

CASES = [
    ("poisson intercept", lambda **kw: PoissonGLMMRegressor("1", **kw), "count"),
    ("poisson slope", lambda **kw: PoissonGLMMRegressor("1 + day_centered", **kw), "count"),
    ("binomial", lambda **kw: BinomialGLMMClassifier("1", **kw), "binary"),
    ("binomial quadrature", lambda **kw: BinomialGLMMClassifier("1", n_agq=5, **kw), "binary"),
    ("negative binomial", lambda **kw: NegativeBinomialGLMMRegressor("1", **kw), "count"),
    ("zero-inflated", lambda **kw: ZeroInflatedPoissonGLMMRegressor("1", zero_inflation=[], **kw), "count"),
    ("linear mixed model", lambda **kw: GaussianLMMRegressor("1 + day_centered", **kw), "log"),
]


def _response(panel, kind):
    if kind == "binary":
        return (panel["logins"] > 0).astype(int)
    if kind == "log":
        return np.log1p(panel["logins"])
    return panel["logins"]


@pytest.mark.parametrize("name, make, kind", CASES, ids=[c[0] for c in CASES])
def test_two_threads_give_the_fit_of_one(panel, name, make, kind):
    X, y, g = panel[FEATURES], _response(panel, kind), panel["user_id"]
    one = make(n_jobs=1).fit(X, y, groups=g)
    threads_before = threading.active_count()
    two = make(n_jobs=2).fit(X, y, groups=g)
    # the pool is stopped when the fit returns
    assert threading.active_count() == threads_before
    # the shards are summed in another order than one shard: rounding only
    assert two.loglik_ == pytest.approx(one.loglik_, rel=1e-9)
    np.testing.assert_allclose(two.fixef_, one.fixef_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(two.theta_, one.theta_, rtol=1e-5, atol=1e-7)
    factor = "user_id"
    np.testing.assert_allclose(two.ranef_[factor], one.ranef_[factor], atol=1e-6)
    np.testing.assert_allclose(two.ranef_condsd_[factor], one.ranef_condsd_[factor], rtol=1e-6, atol=1e-9)


def test_n_jobs_follows_scikit_learns_meaning(panel):
    assert effective_threads(None) == 1
    assert effective_threads(3) == 3
    assert effective_threads(-1) >= 1
    assert effective_threads(-1000) == 1
    X, y, g = panel[FEATURES], panel["logins"], panel["user_id"]
    with pytest.raises(ValueError, match="n_jobs must be None, a positive number"):
        PoissonGLMMRegressor(n_jobs=0).fit(X, y, groups=g)
    with pytest.raises(InvalidParameterError, match="n_jobs"):
        PoissonGLMMRegressor(n_jobs="all").fit(X, y, groups=g)
    assert PoissonGLMMRegressor(n_jobs=-1).fit(X, y, groups=g).converged_


def test_threads_cut_the_rows_into_shards_of_whole_levels_and_about_equal_rows(rng):
    sizes = rng.integers(1, 40, size=200)
    codes = np.repeat(np.arange(200), sizes)
    n = codes.size
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = rng.poisson(1.0, size=n).astype(float)
    from sklearn_glmm.families import PoissonFamily

    with ShardRunner(3) as runner:
        problem = core_problem(PoissonFamily(), X, y, codes, X[:, :1], 200)
        threaded = type(problem)(
            PoissonFamily(),
            X,
            y,
            np.ones(n),
            np.zeros(n),
            [_term(codes, X[:, :1], 200)],
            make_controls(),
            runner=runner,
        )
        rows = [s.y.size for s in threaded.shards]
        assert len(rows) == 3 and sum(rows) == n
        assert max(rows) - min(rows) <= 2 * sizes.max()
        # every level in one shard
        levels = np.concatenate([np.unique(s.codes[0]) + s.u_slice.start for s in threaded.shards])
        np.testing.assert_array_equal(levels, np.arange(200))
        theta, coef = np.array([0.7]), np.array([0.1, 0.2])
        a = problem.evaluate(theta, coef, None, problem.zero_modes())
        b = threaded.evaluate(theta, coef, None, threaded.zero_modes())
        assert b.deviance == pytest.approx(a.deviance, rel=1e-12)
        np.testing.assert_allclose(b.grad_coef, a.grad_coef, rtol=1e-10)
        np.testing.assert_allclose(b.u, a.u, atol=1e-10)


def _term(codes, Z, n_levels):
    from sklearn_glmm._core import CoreTerm
    from sklearn_glmm.design import theta_index

    return CoreTerm(codes, Z, n_levels, *theta_index(Z.shape[1]))


def test_a_shard_runner_returns_results_in_order_and_restarts_after_close():
    runner = ShardRunner(2)
    assert runner.map(lambda x: x * x, range(10)) == [x * x for x in range(10)]
    runner.close()
    assert runner.map(lambda x: -x, [1, 2, 3]) == [-1, -2, -3]
    runner.close()
    with pytest.raises(ValueError, match="n_threads must be a positive integer"):
        ShardRunner(0)
