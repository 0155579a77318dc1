"""Reliability: clear errors for bad input, honest warnings for hard fits.

One test per row of ``docs/bad_inputs.md``: each bad input gets a ``ValueError``
or ``TypeError`` naming the argument and the fix; degenerate but legal data is
fitted correctly or refused clearly; hard fits say so (``singular_``,
``converged_`` and their warnings); fits are deterministic, invariant to row
order and labels, thread-safe and survive pickle/joblib.
"""

from __future__ import annotations

import pickle
import threading
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from sklearn_glmm import (
    BinomialGLMMClassifier,
    BinomialGLMMRegressor,
    GammaGLMMRegressor,
    GaussianLMMRegressor,
    NegativeBinomialGLMMRegressor,
    PoissonGLMMRegressor,
)
from sklearn_glmm.families import PoissonFamily
from sklearn_glmm.utils._validation import SingularFitWarning

from .conftest import core_problem

N_GROUPS, PER_GROUP = 12, 6
N = N_GROUPS * PER_GROUP


def _poisson_data(seed=0, sd=0.7, slope_sd=0.0):
    """Simulated Poisson GLMM data: X (DataFrame), y, groups with a real variance."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(N_GROUPS), PER_GROUP)
    x = rng.normal(size=N)
    eta = 0.4 + 0.3 * x + rng.normal(0, sd, N_GROUPS)[g] + rng.normal(0, slope_sd, N_GROUPS)[g] * x
    return pd.DataFrame({"x": x}), rng.poisson(np.exp(eta)).astype(float), g


def _quiet_fit(model, X, y, **kwargs):
    """Fit where a boundary (singular) fit is expected and beside the point."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)
        return model.fit(X, y, **kwargs)


# -- bad input: a clear error naming the argument and the fix ------------------

X0, Y0, G0 = _poisson_data()
OBJ = np.array([["a"]] * N, dtype=object)

BAD_FIT_INPUTS = {
    # name: (estimator, overrides of X/y/groups/sample_weight/offset, error, message)
    "nan in X": (PoissonGLMMRegressor, {"X": X0.assign(x=np.r_[np.nan, X0.x[1:]])}, ValueError, "X contains NaN"),
    "inf in X": (PoissonGLMMRegressor, {"X": X0.assign(x=np.r_[np.inf, X0.x[1:]])}, ValueError, "infinity"),
    "nan in y": (PoissonGLMMRegressor, {"y": np.r_[np.nan, Y0[1:]]}, ValueError, "y contains NaN"),
    "inf in y": (PoissonGLMMRegressor, {"y": np.r_[np.inf, Y0[1:]]}, ValueError, "y contains infinity"),
    "nan in groups": (PoissonGLMMRegressor, {"groups": np.r_[np.nan, G0[1:]]}, ValueError, "missing label"),
    "None in groups": (PoissonGLMMRegressor, {"groups": [None] + list(G0[1:])}, ValueError, "missing label"),
    "inf in groups": (PoissonGLMMRegressor, {"groups": np.r_[np.inf, G0[1:]]}, ValueError, "infinite label"),
    "nan in sample_weight": (PoissonGLMMRegressor, {"sample_weight": np.r_[np.nan, np.ones(N - 1)]}, ValueError,
                             "sample_weight contains NaN"),
    "inf in sample_weight": (PoissonGLMMRegressor, {"sample_weight": np.r_[np.inf, np.ones(N - 1)]}, ValueError,
                             "sample_weight contains NaN or infinity"),
    "nan in offset": (PoissonGLMMRegressor, {"offset": np.r_[np.nan, np.zeros(N - 1)]}, ValueError,
                      "offset contains NaN"),
    "negative counts": (PoissonGLMMRegressor, {"y": np.r_[-1.0, Y0[1:]]}, ValueError, "non-negative"),
    "negative NB counts": (NegativeBinomialGLMMRegressor, {"y": np.r_[-1.0, Y0[1:]]}, ValueError, "non-negative"),
    "gamma y <= 0": (GammaGLMMRegressor, {"y": np.r_[0.0, Y0[1:] + 1]}, ValueError, "Gamma y must be positive"),
    "binomial y > 1": (BinomialGLMMRegressor, {"y": Y0}, ValueError, r"proportion in \[0, 1\]"),
    "binomial y < 0": (BinomialGLMMRegressor, {"y": np.r_[-0.5, np.full(N - 1, 0.5)]}, ValueError, r"\[0, 1\]"),
    "classifier 3 classes": (BinomialGLMMClassifier, {"y": np.arange(N) % 3}, ValueError, "binary"),
    "classifier proportions": (BinomialGLMMClassifier, {"y": np.linspace(0, 1, N)}, ValueError, "continuous"),
    "classifier 1 class": (BinomialGLMMClassifier, {"y": np.ones(N)}, ValueError, "two classes"),
    "y length": (PoissonGLMMRegressor, {"y": Y0[:-1]}, ValueError, "inconsistent numbers of samples"),
    "groups length": (PoissonGLMMRegressor, {"groups": G0[:-1]}, ValueError, f"{N - 1} labels but X has {N} rows"),
    "sample_weight length": (PoissonGLMMRegressor, {"sample_weight": np.ones(N - 1)}, ValueError,
                             f"sample_weight has {N - 1} entries"),
    "offset length": (PoissonGLMMRegressor, {"offset": np.zeros(N - 1)}, ValueError, f"offset has {N - 1} entries"),
    "groups 2-D": (PoissonGLMMRegressor, {"groups": np.c_[G0, G0]}, ValueError, "one-dimensional"),
    "empty data": (PoissonGLMMRegressor, {"X": X0.iloc[:0], "y": Y0[:0], "groups": G0[:0]}, ValueError,
                   "0 sample"),
    "string column in DataFrame X": (PoissonGLMMRegressor, {"X": X0.assign(city="Paris")}, ValueError,
                                     r"non-numeric column\(s\) \{'city'.*OneHotEncoder"),
    "string array X": (PoissonGLMMRegressor, {"X": OBJ}, ValueError, "X holds text.*could not convert"),
    "duplicated column names": (PoissonGLMMRegressor, {"X": pd.concat([X0, X0], axis=1)}, ValueError,
                                r"duplicated column name\(s\) \['x'\]"),
    "text y for a regressor": (PoissonGLMMRegressor, {"y": np.array(["a"] * N)}, ValueError,
                               "y holds text.*BinomialGLMMClassifier"),
    "sparse X": (PoissonGLMMRegressor, {"X": "sparse"}, TypeError, "dense data is required"),
    "negative sample_weight": (PoissonGLMMRegressor, {"sample_weight": -np.ones(N)}, ValueError, "non-negative"),
    "all-zero sample_weight": (PoissonGLMMRegressor, {"sample_weight": np.zeros(N)}, ValueError,
                               "zero for every row"),
    "text sample_weight": (PoissonGLMMRegressor, {"sample_weight": ["a"] * N}, TypeError,
                           "sample_weight must be numeric"),
    # degenerate data refused: the estimate does not exist or is not identified
    "all-zero counts": (PoissonGLMMRegressor, {"y": np.zeros(N)}, ValueError, "y is 0 in all n_samples=72.*-infinity"),
    "all-zero NB counts": (NegativeBinomialGLMMRegressor, {"y": np.zeros(N)}, ValueError, "y is 0 in all"),
    "binomial all 0": (BinomialGLMMRegressor, {"y": np.zeros(N)}, ValueError, "y is 0 in all.*infinite"),
    "binomial all 1": (BinomialGLMMRegressor, {"y": np.ones(N)}, ValueError, "y is 1 in all"),
    "constant gaussian y": (GaussianLMMRegressor, {"y": np.full(N, 2.0)}, ValueError, "y is 2 in all.*dispersion is 0"),
    "constant gamma y": (GammaGLMMRegressor, {"y": np.full(N, 2.0)}, ValueError, "dispersion is 0"),
    "single group": (PoissonGLMMRegressor, {"groups": np.zeros(N)}, ValueError, "single level.*at least two"),
    "single group (LMM)": (GaussianLMMRegressor, {"y": X0.x.to_numpy(), "groups": np.zeros(N)}, ValueError,
                           "single level"),
    "LMM one row per group": (GaussianLMMRegressor, {"y": X0.x.to_numpy() * 2, "groups": np.arange(N)}, ValueError,
                              "not identifiable"),
}


@pytest.mark.parametrize("case", list(BAD_FIT_INPUTS), ids=list(BAD_FIT_INPUTS))
def test_bad_fit_input_gets_a_clear_error(case):
    cls, override, error, match = BAD_FIT_INPUTS[case]
    args = {"X": X0, "y": Y0, "groups": G0}
    args.update(override)
    if isinstance(args["X"], str):
        import scipy.sparse

        args["X"] = scipy.sparse.csr_matrix(X0.to_numpy())
    X, y = args.pop("X"), args.pop("y")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. NoGroupsWarning; the error is what counts
        with pytest.raises(error, match=match):
            cls().fit(X, y, **args)


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"random_effects": "1 + nope"}, ValueError, r"\['nope'\] that are not in X"),
        ({"random_effects": "(1 | user)"}, ValueError, "groups by 'user' but groups is named 'g'"),
        ({"random_effects": "((1 | g)"}, ValueError, "Cannot parse random_effects"),
        ({"random_effects": "1 +"}, ValueError, "Cannot parse random_effects"),
        ({"random_effects": "(1 | g/h)"}, ValueError, r"factors \['g', 'g:h'\] but groups has one column|\['g', 'h'\]"),
        ({"random_effects": "(nope || g)"}, ValueError, "not in X"),
        ({"random_effects": "(1 | g) + (1 | g)"}, ValueError, "appears twice for the factor 'g'"),
        ({"random_effects": ""}, ValueError, "empty"),
        ({"random_effects": 1}, ValueError, "random_effects"),
        ({"random_effects": None}, ValueError, "random_effects"),
        ({"random_effects": ["1"]}, ValueError, "random_effects"),
        ({"link": "inverse"}, ValueError, "'link' parameter"),
        ({"se_method": "sandwich"}, ValueError, "se_method"),
        ({"max_iter": 0}, ValueError, "max_iter"),
        ({"tol": -1.0}, ValueError, "tol"),
    ],
)
def test_bad_parameters_get_a_clear_error(params, error, match):
    cls = GammaGLMMRegressor if "link" in params else PoissonGLMMRegressor
    y = Y0 + 1.0 if cls is GammaGLMMRegressor else Y0
    with pytest.raises(error, match=match):
        cls(**params).fit(X0, y, groups=pd.Series(G0, name="g"))


def test_unknown_family_link_of_the_binomial_is_refused():
    with pytest.raises(ValueError, match="'link' parameter of BinomialGLMMClassifier"):
        BinomialGLMMClassifier(link="log").fit(X0, Y0 > 1, groups=G0)


@pytest.fixture(scope="module")
def fitted():
    return _quiet_fit(PoissonGLMMRegressor("1 + x"), X0, Y0, groups=G0)


def test_predict_before_fit_is_refused():
    for method in ("predict", "score", "summary"):
        with pytest.raises(NotFittedError):
            args = () if method == "summary" else (X0,) if method == "predict" else (X0, Y0)
            getattr(PoissonGLMMRegressor(), method)(*args)


@pytest.mark.parametrize(
    "X, groups, error, match",
    [
        (pd.DataFrame({"z": X0.x}), None, ValueError, "feature names should match"),
        (np.zeros((3, 2)), None, ValueError, "features"),
        (X0.assign(x=np.r_[np.nan, X0.x[1:]]), None, ValueError, "NaN"),
        (X0.assign(x="a"), None, ValueError, "non-numeric column"),
        (X0, G0[:-1], ValueError, "labels but X has"),
        (X0, np.r_[np.inf, G0[1:]], ValueError, "infinite label"),
        (X0, [None] * N, ValueError, "missing label"),
    ],
)
# scikit-learn's warning for an array X given to a model fitted on a DataFrame, before the error
@pytest.mark.filterwarnings("ignore:X does not have valid feature names:UserWarning")
def test_bad_predict_input_gets_a_clear_error(fitted, X, groups, error, match):
    with pytest.raises(error, match=match):
        fitted.predict(X, groups=groups)


def test_bad_predict_offset_and_score_input(fitted):
    with pytest.raises(TypeError, match="offset must be numeric"):
        fitted.predict(X0, offset=["a"] * N)
    with pytest.raises(ValueError, match="offset has 3 entries"):
        fitted.predict(X0, offset=np.zeros(3))
    with pytest.raises(ValueError, match="non-negative"):
        fitted.score(X0, -Y0 - 1, groups=G0)


# -- documented choices ----------------------------------------------------------


def test_non_integer_counts_are_accepted_silently_as_rates():
    # decision (documented in PoissonGLMMRegressor): rates with exposure weights,
    # scikit-learn's idiom; the fit equals the count fit with an offset up to
    # the constant of the likelihood
    exposure = np.repeat([1.0, 2.0, 4.0], N // 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rate = PoissonGLMMRegressor().fit(X0, Y0 / exposure, groups=G0, sample_weight=exposure)
    counts = PoissonGLMMRegressor().fit(X0, Y0, groups=G0, offset=np.log(exposure))
    np.testing.assert_allclose(rate.fixef_, counts.fixef_, rtol=1e-6)
    np.testing.assert_allclose(rate.theta_, counts.theta_, rtol=1e-5)


def test_new_group_labels_of_another_dtype_warn_and_get_population_predictions(fitted):
    X3 = X0.iloc[:3]
    population = fitted.predict(X3)
    with pytest.warns(UserWarning, match=r"equal groups seen in fit only as text \(fit labels have dtype int64"):
        as_text = fitted.predict(X3, groups=["0", "1", "2"])
    np.testing.assert_allclose(as_text, population)
    # the right dtype uses the conditional modes; unrelated new labels of any type are silent
    assert not np.allclose(fitted.predict(X3, groups=[0, 1, 2]), population)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(fitted.predict(X3, groups=["new", 3.5, -1]), population)


# -- degenerate but legal data: fitted correctly ----------------------------------


def test_one_row_per_group_is_an_observation_level_random_effect():
    # legal for GLMMs (overdispersion), as lme4's glmer allows; refused for the LMM above
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    y = rng.poisson(np.exp(0.5 + 0.3 * x + rng.normal(0, 0.6, 200))).astype(float)
    model = PoissonGLMMRegressor().fit(x[:, None], y, groups=np.arange(200))
    assert model.converged_ and not model.singular_
    assert 0.3 < model.varcorr_["sdcor"].iloc[0] < 1.0


def test_groups_of_very_different_sizes():
    rng = np.random.default_rng(2)
    sizes = [1, 1, 2, 3, 200, 500, 1, 40]
    g = np.repeat(np.arange(len(sizes)), sizes)
    b = np.array([0.5, -0.5, 0.2, 0.0, 0.8, -0.8, 0.1, 0.3])
    y = rng.poisson(np.exp(1.0 + b[g])).astype(float)
    model = PoissonGLMMRegressor().fit(np.empty((g.size, 0)), y, groups=g)
    assert model.converged_
    # the big groups' modes are close to their observed log-means; singletons shrink
    assert model.ranef_["group"].loc[5].iloc[0] + model.intercept_ == pytest.approx(np.log(y[g == 5].mean()), abs=0.01)


def test_collinear_and_constant_columns_are_dropped_with_a_warning():
    X = X0.assign(copy=X0.x, const=1.0, combo=2 * X0.x + 1.0)
    with pytest.warns(UserWarning, match=r"\['copy', 'const', 'combo'\] are linearly dependent"):
        model = PoissonGLMMRegressor().fit(X, Y0, groups=G0)
    base = PoissonGLMMRegressor().fit(X0, Y0, groups=G0)
    assert list(model.fixef_.index) == ["(Intercept)", "x"]
    assert model.loglik_ == pytest.approx(base.loglik_, abs=1e-8)


def test_users_who_never_log_in_are_fitted():
    y = Y0.copy()
    y[G0 < 3] = 0  # three users with no login at all
    model = PoissonGLMMRegressor().fit(X0, y, groups=G0)
    assert model.converged_ and np.all(np.isfinite(model.ranef_["group"]))
    assert np.all(model.ranef_["group"].loc[[0, 1, 2]] < model.ranef_["group"].loc[3:].min())


def test_complete_separation_warns_and_stays_finite():
    y = (X0.x > 0).to_numpy().astype(int)
    with pytest.warns(UserWarning, match="fitted probabilities numerically 0 or 1"), pytest.warns(
        UserWarning, match="Hessian of the deviance is not positive definite"
    ):
        model = BinomialGLMMClassifier().fit(X0, y, groups=G0)
    assert np.all(np.isfinite(model.fixef_)) and model.fixef_["x"] > 10
    assert np.all((model.predict_proba(X0) >= 0) & (model.predict_proba(X0) <= 1))


@pytest.mark.parametrize("scale", [1e5, 1e7])
def test_bot_sized_counts(scale):
    # counts of 1e5 and more: the intercept moves by log(scale), nothing else
    base = PoissonGLMMRegressor().fit(X0, Y0 + 1, groups=G0)
    rng = np.random.default_rng(3)
    big = rng.poisson(scale * base.predict(X0, groups=G0)).astype(float)
    model = PoissonGLMMRegressor().fit(X0, big, groups=G0)
    assert model.converged_
    assert model.intercept_ == pytest.approx(base.intercept_ + np.log(scale), abs=0.05)
    assert model.coef_[0] == pytest.approx(base.coef_[0], abs=0.02)


def test_huge_predictors_give_the_rescaled_fit():
    # predictors of magnitude 1e8: the optimiser whitens internally, so the fit
    # is the one on the rescaled column (coefficients scale, logLik is equal)
    base = PoissonGLMMRegressor("1 + x").fit(X0, Y0, groups=G0)
    big = _quiet_fit(PoissonGLMMRegressor("1 + x"), X0 * 1e8 + 3e8, Y0, groups=G0)
    assert big.converged_
    assert big.loglik_ == pytest.approx(base.loglik_, abs=1e-5)
    assert big.coef_[0] * 1e8 == pytest.approx(base.coef_[0], rel=1e-4)


def test_float32_input_gives_the_float64_fit():
    base = PoissonGLMMRegressor().fit(X0.to_numpy(np.float32).astype(float), Y0, groups=G0)
    f32 = PoissonGLMMRegressor().fit(X0.to_numpy(np.float32), Y0.astype(np.float32), groups=G0,
                                     sample_weight=np.ones(N, np.float32), offset=np.zeros(N, np.float32))
    np.testing.assert_allclose(f32.fixef_, base.fixef_, rtol=1e-10)
    assert f32.predict(X0.to_numpy(np.float32)).dtype == np.float64


@pytest.mark.parametrize(
    "labels",
    [
        lambda g: g.astype(np.int32),
        lambda g: np.array([f"user-{i:02d}" for i in g]),
        lambda g: pd.Categorical([f"u{i}" for i in g], categories=[f"u{i}" for i in range(20)]),
        lambda g: np.array([i if i % 2 else f"s{i}" for i in g], dtype=object),  # mixed types
        lambda g: g + 0.5,
        lambda g: pd.Series(pd.to_datetime(g, unit="D"), name="day"),
    ],
    ids=["int32", "str", "categorical-with-unused", "mixed", "float", "datetime"],
)
def test_group_label_types_give_the_same_fit(fitted, labels):
    groups = labels(G0)
    model = _quiet_fit(PoissonGLMMRegressor("1 + x"), X0, Y0, groups=groups)
    assert model.loglik_ == pytest.approx(fitted.loglik_, abs=1e-8)
    assert len(next(iter(model.group_levels_.values()))) == N_GROUPS  # unused categories are not levels
    np.testing.assert_allclose(model.predict(X0, groups=groups), fitted.predict(X0, groups=G0), rtol=1e-7)


# -- fit diagnostics --------------------------------------------------------------


def test_boundary_fit_warns_and_sets_singular():
    X, y, g = _poisson_data(seed=4, sd=0.0)
    with pytest.warns(SingularFitWarning, match=r"boundary \(singular\) fit.*\['\(Intercept\)'\]"):
        model = PoissonGLMMRegressor().fit(X, y, groups=g)
    assert model.singular_ and model.theta_[0] < 1e-4 and model.converged_
    assert "boundary (singular) fit" in str(model.summary())


def test_singular_slope_is_named():
    X, y, g = _poisson_data(seed=5, sd=0.8, slope_sd=0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PoissonGLMMRegressor("1 + x").fit(X, y, groups=g)
    singular = [w for w in caught if issubclass(w.category, SingularFitWarning)]
    assert model.singular_ == bool(singular)
    if model.singular_:
        assert "'x'" in str(singular[0].message)


def test_lmm_boundary_fit_warns():
    rng = np.random.default_rng(6)
    y = 1.0 + rng.normal(size=N)  # no group effect at all
    with pytest.warns(SingularFitWarning):
        model = GaussianLMMRegressor().fit(X0, y, groups=G0)
    assert model.singular_


def test_a_clear_variance_is_not_singular_and_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = PoissonGLMMRegressor().fit(X0, Y0, groups=G0)
    assert not model.singular_ and model.converged_


def test_failed_optimisation_says_so_with_advice():
    X, y, g = _poisson_data(seed=7, sd=0.8, slope_sd=0.3)
    # the unfinished fit also has the slope's SD at (close to) 0: flagged singular as well
    with pytest.warns(ConvergenceWarning, match="rescaling.*simplifying random_effects.*raising max_iter"), pytest.warns(
        SingularFitWarning
    ):
        model = PoissonGLMMRegressor("1 + x", max_iter=1).fit(X, y, groups=g)
    assert model.converged_ is False
    assert "gradient" in model.fit_summary_.message
    assert "convergence warning" in str(model.summary())


def test_gradient_at_the_optimum_is_small():
    # lme4's check: the scaled gradient at the optimum; here the Newton
    # decrement g^T H^-1 g, the predicted further decrease of the deviance
    model = PoissonGLMMRegressor("1 + x").fit(X0, Y0, groups=G0)
    g, H = model.fit_summary_.gradient, model.fit_summary_.hessian
    assert model.converged_
    assert float(g @ np.linalg.solve(H, g)) < 1e-6


def test_restart_leaves_a_boundary_start():
    # stage 1 from a tiny start (Lambda = I) cannot reach the optimum of a
    # slope variance that starts out flat; the boundary restart finds it: the
    # fit beats every interior point on a coarse grid of theta
    X, y, g = _poisson_data(seed=8, sd=0.5, slope_sd=0.4)
    model = PoissonGLMMRegressor("1 + x").fit(X, y, groups=g)
    assert not model.singular_ and model.converged_
    Xd = np.column_stack([np.ones(len(y)), X["x"]])
    problem = core_problem(PoissonFamily(), Xd, y, g, Xd, N_GROUPS)
    for t in ([0.5, 0.0, 0.4], [0.4, 0.1, 0.0], [0.6, -0.1, 0.5]):
        ev = problem.evaluate(np.array(t), model.fixef_.to_numpy(), None, problem.zero_modes(), gradient=False)
        assert -0.5 * ev.deviance <= model.loglik_ + 1e-8


# -- determinism, invariance, threads, persistence --------------------------------


def _fit_slope(X, y, g):
    return PoissonGLMMRegressor("1 + x").fit(X, y, groups=g)


def test_same_data_same_numbers_bit_for_bit(fitted):
    again = _fit_slope(X0, Y0, G0)
    assert np.array_equal(again.fixef_, fitted.fixef_) and np.array_equal(again.theta_, fitted.theta_)
    assert again.loglik_ == fitted.loglik_
    assert np.array_equal(again.vcov_, fitted.vcov_)
    assert np.array_equal(again.ranef_["group"], fitted.ranef_["group"])


def test_row_order_and_labels_do_not_matter(fitted):
    order = np.random.default_rng(9).permutation(N)
    shuffled = _fit_slope(X0.iloc[order], Y0[order], G0[order])
    mapping = {i: f"z{(7 * i) % N_GROUPS:03d}" for i in range(N_GROUPS)}  # reorders the levels too
    relabelled = _fit_slope(X0, Y0, np.array([mapping[i] for i in G0]))
    for model in (shuffled, relabelled):
        np.testing.assert_allclose(model.fixef_, fitted.fixef_, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(model.theta_, fitted.theta_, rtol=1e-5, atol=1e-8)
        assert model.loglik_ == pytest.approx(fitted.loglik_, abs=1e-8)
    ranef = relabelled.ranef_["group"].loc[[mapping[i] for i in range(N_GROUPS)]].to_numpy()
    np.testing.assert_allclose(ranef, fitted.ranef_["group"].to_numpy(), atol=1e-6)


def test_two_fits_in_threads_match_the_serial_fit(fitted):
    results = {}

    def work(k):
        results[k] = _fit_slope(X0, Y0, G0)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for model in results.values():
        assert np.array_equal(model.fixef_, fitted.fixef_) and np.array_equal(model.theta_, fitted.theta_)


@pytest.mark.parametrize("cls", [PoissonGLMMRegressor, BinomialGLMMClassifier, GaussianLMMRegressor])
def test_pickle_and_joblib_round_trip(cls, tmp_path):
    y = {PoissonGLMMRegressor: Y0, BinomialGLMMClassifier: np.where(Y0 > 1, "yes", "no"),
         GaussianLMMRegressor: np.log1p(Y0)}[cls]
    model = _quiet_fit(cls("1 + x"), X0, y, groups=G0)
    joblib.dump(model, tmp_path / "model.joblib")
    for restored in (pickle.loads(pickle.dumps(model)), joblib.load(tmp_path / "model.joblib")):
        assert np.array_equal(restored.predict(X0, groups=G0), model.predict(X0, groups=G0))
        assert str(restored.summary()) == str(model.summary())


def test_pirls_never_accepts_a_trial_point_outside_the_domain():
    # Found by the fuzz test (hypothesis): a Gamma identity-link fit whose PIRLS
    # steps left the domain (negative means) kept a NaN penalised deviance once
    # the halved step fell below the 1e-8 "rounding" threshold, and the whole fit
    # ended at logLik -inf. A non-finite trial point is now always halved.
    from .test_fuzz import Case

    case = Case(family="gamma", link="identity", sizes=[4, 8, 10], n_features=1, slope=False,
                weights="with_zeros", offset=False, seed=7002)
    X, y, groups, w, offset = case.data()
    with pytest.warns(SingularFitWarning):  # these few tiny groups show no group variance
        model = case.estimator("1").fit(X, y, groups=groups, sample_weight=w, offset=offset)
    assert model.converged_
    # the value before the regression, from the earlier engine
    assert model.loglik_ == pytest.approx(-27.91010614376836, abs=1e-8)
