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
    FallbackWarning,
    GammaGLMMRegressor,
    GaussianLMMRegressor,
    NegativeBinomialGLMMRegressor,
    NoGroupsWarning,
    PoissonGLMMRegressor,
    SeparationWarning,
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
    "nan in X": (
        PoissonGLMMRegressor,
        {"X": X0.assign(x=np.r_[np.nan, X0.x[1:]])},
        ValueError,
        "X contains NaN",
    ),
    "inf in X": (PoissonGLMMRegressor, {"X": X0.assign(x=np.r_[np.inf, X0.x[1:]])}, ValueError, "infinity"),
    "nan in y": (PoissonGLMMRegressor, {"y": np.r_[np.nan, Y0[1:]]}, ValueError, "y contains NaN"),
    "inf in y": (PoissonGLMMRegressor, {"y": np.r_[np.inf, Y0[1:]]}, ValueError, "y contains infinity"),
    "nan in groups": (PoissonGLMMRegressor, {"groups": np.r_[np.nan, G0[1:]]}, ValueError, "missing label"),
    "None in groups": (PoissonGLMMRegressor, {"groups": [None] + list(G0[1:])}, ValueError, "missing label"),
    "inf in groups": (PoissonGLMMRegressor, {"groups": np.r_[np.inf, G0[1:]]}, ValueError, "infinite label"),
    "nan in sample_weight": (
        PoissonGLMMRegressor,
        {"sample_weight": np.r_[np.nan, np.ones(N - 1)]},
        ValueError,
        "sample_weight contains NaN",
    ),
    "inf in sample_weight": (
        PoissonGLMMRegressor,
        {"sample_weight": np.r_[np.inf, np.ones(N - 1)]},
        ValueError,
        "sample_weight contains NaN or infinity",
    ),
    "nan in offset": (
        PoissonGLMMRegressor,
        {"offset": np.r_[np.nan, np.zeros(N - 1)]},
        ValueError,
        "offset contains NaN",
    ),
    "negative counts": (PoissonGLMMRegressor, {"y": np.r_[-1.0, Y0[1:]]}, ValueError, "non-negative"),
    "negative NB counts": (
        NegativeBinomialGLMMRegressor,
        {"y": np.r_[-1.0, Y0[1:]]},
        ValueError,
        "non-negative",
    ),
    "gamma y <= 0": (
        GammaGLMMRegressor,
        {"y": np.r_[0.0, Y0[1:] + 1]},
        ValueError,
        "Gamma y must be positive",
    ),
    "binomial y > 1": (BinomialGLMMRegressor, {"y": Y0}, ValueError, r"proportion in \[0, 1\]"),
    "binomial y < 0": (
        BinomialGLMMRegressor,
        {"y": np.r_[-0.5, np.full(N - 1, 0.5)]},
        ValueError,
        r"\[0, 1\]",
    ),
    "classifier 3 classes": (BinomialGLMMClassifier, {"y": np.arange(N) % 3}, ValueError, "binary"),
    "classifier proportions": (BinomialGLMMClassifier, {"y": np.linspace(0, 1, N)}, ValueError, "continuous"),
    "classifier 1 class": (BinomialGLMMClassifier, {"y": np.ones(N)}, ValueError, "two classes"),
    "y length": (PoissonGLMMRegressor, {"y": Y0[:-1]}, ValueError, "inconsistent numbers of samples"),
    "groups length": (
        PoissonGLMMRegressor,
        {"groups": G0[:-1]},
        ValueError,
        f"{N - 1} labels but X has {N} rows",
    ),
    "sample_weight length": (
        PoissonGLMMRegressor,
        {"sample_weight": np.ones(N - 1)},
        ValueError,
        f"sample_weight has {N - 1} entries",
    ),
    "offset length": (
        PoissonGLMMRegressor,
        {"offset": np.zeros(N - 1)},
        ValueError,
        f"offset has {N - 1} entries",
    ),
    "groups 2-D": (PoissonGLMMRegressor, {"groups": np.c_[G0, G0]}, ValueError, "one-dimensional"),
    "empty data": (
        PoissonGLMMRegressor,
        {"X": X0.iloc[:0], "y": Y0[:0], "groups": G0[:0]},
        ValueError,
        "0 sample",
    ),
    "string column in DataFrame X": (
        PoissonGLMMRegressor,
        {"X": X0.assign(city="Paris")},
        ValueError,
        r"non-numeric column\(s\) \{'city'.*OneHotEncoder",
    ),
    "string array X": (PoissonGLMMRegressor, {"X": OBJ}, ValueError, "X holds text.*could not convert"),
    "duplicated column names": (
        PoissonGLMMRegressor,
        {"X": pd.concat([X0, X0], axis=1)},
        ValueError,
        r"duplicated column name\(s\) \['x'\]",
    ),
    "text y for a regressor": (
        PoissonGLMMRegressor,
        {"y": np.array(["a"] * N)},
        ValueError,
        "y holds text.*BinomialGLMMClassifier",
    ),
    "sparse X": (PoissonGLMMRegressor, {"X": "sparse"}, TypeError, "dense data is required"),
    "negative sample_weight": (
        PoissonGLMMRegressor,
        {"sample_weight": -np.ones(N)},
        ValueError,
        "non-negative",
    ),
    "all-zero sample_weight": (
        PoissonGLMMRegressor,
        {"sample_weight": np.zeros(N)},
        ValueError,
        "zero for every row",
    ),
    "text sample_weight": (
        PoissonGLMMRegressor,
        {"sample_weight": ["a"] * N},
        TypeError,
        "sample_weight must be numeric",
    ),
    # degenerate data refused: the estimate does not exist or is not identified
    "all-zero counts": (
        PoissonGLMMRegressor,
        {"y": np.zeros(N)},
        ValueError,
        "y is 0 in all n_samples=72.*-infinity",
    ),
    "all-zero NB counts": (NegativeBinomialGLMMRegressor, {"y": np.zeros(N)}, ValueError, "y is 0 in all"),
    "binomial all 0": (BinomialGLMMRegressor, {"y": np.zeros(N)}, ValueError, "y is 0 in all.*infinite"),
    "binomial all 1": (BinomialGLMMRegressor, {"y": np.ones(N)}, ValueError, "y is 1 in all"),
    "constant gaussian y": (
        GaussianLMMRegressor,
        {"y": np.full(N, 2.0)},
        ValueError,
        "y is 2 in all.*dispersion is 0",
    ),
    "constant gamma y": (GammaGLMMRegressor, {"y": np.full(N, 2.0)}, ValueError, "dispersion is 0"),
    "single group": (PoissonGLMMRegressor, {"groups": np.zeros(N)}, ValueError, "single level.*at least two"),
    "single group (LMM)": (
        GaussianLMMRegressor,
        {"y": X0.x.to_numpy(), "groups": np.zeros(N)},
        ValueError,
        "single level",
    ),
    "LMM one row per group": (
        GaussianLMMRegressor,
        {"y": X0.x.to_numpy() * 2, "groups": np.arange(N)},
        ValueError,
        "not identifiable",
    ),
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
        (
            {"random_effects": "(1 | g/h)"},
            ValueError,
            r"factors \['g', 'g:h'\] but groups has one column|\['g', 'h'\]",
        ),
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
    with pytest.warns(
        UserWarning, match=r"equal groups seen in fit only as text \(fit labels have dtype int64"
    ):
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
    assert model.ranef_["group"].loc[5].iloc[0] + model.intercept_ == pytest.approx(
        np.log(y[g == 5].mean()), abs=0.01
    )


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
    with (
        pytest.warns(SeparationWarning, match="fitted probabilities numerically 0 or 1"),
        pytest.warns(UserWarning, match="Hessian of the deviance is not positive definite"),
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
    f32 = PoissonGLMMRegressor().fit(
        X0.to_numpy(np.float32),
        Y0.astype(np.float32),
        groups=G0,
        sample_weight=np.ones(N, np.float32),
        offset=np.zeros(N, np.float32),
    )
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
    with (
        pytest.warns(ConvergenceWarning, match="rescaling.*simplifying random_effects.*raising max_iter"),
        pytest.warns(SingularFitWarning),
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
        ev = problem.evaluate(
            np.array(t), model.fixef_.to_numpy(), None, problem.zero_modes(), gradient=False
        )
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
    y = {
        PoissonGLMMRegressor: Y0,
        BinomialGLMMClassifier: np.where(Y0 > 1, "yes", "no"),
        GaussianLMMRegressor: np.log1p(Y0),
    }[cls]
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

    case = Case(
        family="gamma",
        link="identity",
        sizes=[4, 8, 10],
        n_features=1,
        slope=False,
        weights="with_zeros",
        offset=False,
        seed=7002,
    )
    X, y, groups, w, offset = case.data()
    with pytest.warns(SingularFitWarning):  # these few tiny groups show no group variance
        model = case.estimator("1").fit(X, y, groups=groups, sample_weight=w, offset=offset)
    assert model.converged_
    # the value before the regression, from the earlier engine
    assert model.loglik_ == pytest.approx(-27.91010614376836, abs=1e-8)


# -- issue 16: the classes of an adversarial probe -----------------------------------
# (input shapes and labels users really have; degenerate data whose answer was
# silently wrong; more random effects than rows; BLAS threads; inference on
# hard fits; fallbacks that must be seen)


@pytest.mark.parametrize(
    "groups",
    [pd.Series(G0, name=0), pd.DataFrame({0: G0}), pd.Series(G0, name="site:a"), pd.Series(G0, name="a\\b")],
    ids=["series-named-0", "frame-column-0", "name-with-colon", "name-with-backslash"],
)
def test_group_names_that_are_integers_or_hold_a_colon_give_the_same_fit(fitted, groups):
    model = _quiet_fit(PoissonGLMMRegressor("1 + x"), X0, Y0, groups=groups)
    assert model.loglik_ == pytest.approx(fitted.loglik_, abs=1e-8)
    assert list(model.n_groups_.values()) == [N_GROUPS]
    np.testing.assert_allclose(model.predict(X0, groups=groups), fitted.predict(X0, groups=G0), rtol=1e-7)


def test_group_column_by_position_on_a_numpy_built_frame(fitted):
    # a frame built from an array has the integer column labels 0, 1: group_column=1 is the label
    frame = pd.DataFrame(np.column_stack([X0.x, G0]))
    model = _quiet_fit(PoissonGLMMRegressor("1 + x0", group_column=1), frame, Y0)  # unnamed columns: x0, ...
    assert model.loglik_ == pytest.approx(fitted.loglik_, abs=1e-8)
    np.testing.assert_allclose(model.predict(frame), fitted.predict(X0, groups=G0), rtol=1e-7)


@pytest.mark.parametrize(
    "X", [X0.assign(g=G0), pd.DataFrame(np.column_stack([X0.x, G0]))], ids=["names", "ints"]
)
def test_a_boolean_group_column_is_refused(X):
    # True == 1: it used to pick the column labelled 1 without a word
    with pytest.raises(TypeError, match="group_column=True holds a boolean.*name.*or its integer position"):
        PoissonGLMMRegressor(group_column=True).fit(X, Y0)


@pytest.mark.parametrize(
    "groups",
    [pd.Series([[int(i)] for i in G0]), np.array([{"id": int(i)} for i in G0], dtype=object)],
    ids=["lists", "dicts"],
)
def test_unhashable_group_labels_are_refused(groups):
    with pytest.raises(TypeError, match=r"groups holds unhashable labels such as .* must be hashable"):
        PoissonGLMMRegressor().fit(X0, Y0, groups=groups)


def test_an_x_column_named_like_the_intercept_is_refused():
    with pytest.raises(ValueError, match=r"X has a column named '\(Intercept\)'.*rename it"):
        PoissonGLMMRegressor().fit(X0.assign(**{"(Intercept)": X0.x**2}), Y0, groups=G0)


def test_nested_labels_that_collide_when_joined_stay_distinct():
    # (a='q:r', b='p') and (a='r', b='p:q') used to be one level 'p:q:r' of b:a
    rng = np.random.default_rng(16)
    pair = np.tile(np.arange(6), 20)
    a = np.array(["q:r", "r", "q:r", "r", "q:r", "r"])[pair]
    b = np.array(["p", "p:q", "x", "y", "z", "w"])[pair]
    y = rng.poisson(np.exp(0.3 + 0.3 * pair)).astype(float)
    X = pd.DataFrame({"x": rng.normal(size=pair.size)})
    model = _quiet_fit(PoissonGLMMRegressor("(1 | a/b)"), X, y, groups=pd.DataFrame({"a": a, "b": b}))
    assert model.n_groups_ == {"b:a": 6, "a": 2}
    # the same fit as with labels that need no escaping
    plain = _quiet_fit(
        PoissonGLMMRegressor("(1 | a/b)"),
        X,
        y,
        groups=pd.DataFrame({"a": np.where(pair % 2, "A1", "A0"), "b": [f"B{i}" for i in pair]}),
    )
    assert model.loglik_ == pytest.approx(plain.loglik_, abs=1e-8)
    assert {"p:q\\:r", "p\\:q:r"} <= set(model.group_levels_["b:a"])


@pytest.mark.parametrize("cls", [PoissonGLMMRegressor, GaussianLMMRegressor, BinomialGLMMClassifier])
def test_y_given_as_a_list_with_none_is_refused(cls):
    y = list(
        np.log1p(Y0) if cls is GaussianLMMRegressor else (Y0 > 1) if cls is BinomialGLMMClassifier else Y0
    )
    y[3] = None
    with pytest.raises(ValueError, match="y"):
        cls().fit(X0, y, groups=G0)


# degenerate data: a correct answer with a specific warning, or a clear error


def test_lmm_exact_fit_warns_and_records_it():
    # y is a function of x and the groups without noise: the likelihood is unbounded
    # as sigma -> 0 (it was sigma 1e-151, logLik +24204, converged_ False, no warning)
    b = np.random.default_rng(1).normal(size=N_GROUPS)
    y = 1.0 + 2.0 * X0.x.to_numpy() + b[G0]
    # theta (relative to sigma) runs to the solver's bound of 1e4: sigma is 1e-4 of the groups' SD
    with pytest.warns(
        ConvergenceWarning, match=r"ran to the optimiser's bound .* the random effects explain y"
    ):
        model = GaussianLMMRegressor().fit(X0, y, groups=G0)
    assert model.converged_ is False and model.sigma_ < 1e-3 * np.std(b)
    assert "optimiser's bound" in model.fit_summary_.notes[-1]
    np.testing.assert_allclose(model.fixef_["x"], 2.0, atol=1e-8)
    np.testing.assert_allclose(model.predict(X0, groups=G0), y, atol=1e-6)


def test_intervals_around_an_exact_fit_are_refused():
    # the likelihood has no maximum: the profile used to fail with LinAlgError: Singular matrix
    y = 1.0 + 2.0 * X0.x.to_numpy()
    # no variation between groups either: the group SD is 0 (singular) as well
    with pytest.warns(ConvergenceWarning, match="Exact fit"), pytest.warns(SingularFitWarning):
        model = GaussianLMMRegressor().fit(X0, y, groups=G0)
    for method in ("profile", "bootstrap"):
        with pytest.raises(
            ValueError, match=rf"confint\(method='{method}'\) needs the maximum of the likelihood"
        ):
            model.confint(method, X=X0, y=y, groups=G0)
    assert np.all(
        np.isfinite(model.confint().loc[["(Intercept)", "x"]].to_numpy())
    )  # Wald: the fixed effects


def test_lmm_y_exactly_linear_in_x_warns():
    y = 1.0 + 2.0 * X0.x.to_numpy()
    with (
        pytest.warns(
            ConvergenceWarning, match=r"Exact fit: the residual SD .* likelihood grows without bound"
        ),
        pytest.warns(SingularFitWarning),
    ):
        model = GaussianLMMRegressor().fit(X0, y, groups=G0)
    assert model.converged_ is False and model.sigma_ < 1e-7
    assert model.fit_summary_.notes[-1].startswith("exact fit")
    np.testing.assert_allclose(model.fixef_, [1.0, 2.0], atol=1e-8)


@pytest.mark.parametrize("c", [1e6, 1e-10])
def test_lmm_precision_weights_scaled_by_a_constant(c):
    # Var(e_i) = sigma^2 / w_i and b ~ N(0, sigma^2 Lambda Lambda^T), as lmer: weights c w
    # describe the same data with sigma * sqrt(c) and theta / sqrt(c); the fixed
    # effects and the random effects' SD do not move
    y = np.log1p(Y0) + 0.3 * np.random.default_rng(3).normal(size=N)
    w = np.random.default_rng(4).uniform(0.5, 2.0, N)
    base = GaussianLMMRegressor().fit(X0, y, groups=G0, sample_weight=w)
    scaled = GaussianLMMRegressor().fit(X0, y, groups=G0, sample_weight=c * w)
    np.testing.assert_allclose(scaled.fixef_, base.fixef_, rtol=1e-6)
    assert scaled.sigma_ == pytest.approx(base.sigma_ * np.sqrt(c), rel=1e-5)
    np.testing.assert_allclose(scaled.theta_ * np.sqrt(c), base.theta_, rtol=1e-4)
    assert scaled.varcorr_["sdcor"].iloc[0] == pytest.approx(base.varcorr_["sdcor"].iloc[0], rel=1e-4)


def test_lmm_group_sd_beyond_the_default_theta_bound_matches_lmer():
    # a group SD 95 times the residual SD: theta 94.9 is past the solver's default bound of 50
    # (theta is relative to sigma); it stopped at sd 53.6 with converged_ True
    from .conftest import load_reference, load_reference_data

    data = load_reference_data("lmm_large_variance_ratio.csv")
    ref = load_reference("lmm_large_variance_ratio")
    model = GaussianLMMRegressor().fit(
        np.empty((len(data), 0)), data["y"].to_numpy(), groups=data["g"].to_numpy()
    )
    assert model.converged_
    assert model.theta_[0] == pytest.approx(ref["theta"], rel=1e-4)
    assert model.sigma_ == pytest.approx(ref["sigma"], rel=1e-5)
    assert model.intercept_ == pytest.approx(ref["fixef"], rel=1e-6)
    assert -2 * model.loglik_ == pytest.approx(ref["REMLcrit"], abs=1e-6)


@pytest.mark.parametrize("value, match", [(0.0, "are 0 in every row"), (2.0, "linearly dependent")])
@pytest.mark.parametrize("cls", [PoissonGLMMRegressor, GaussianLMMRegressor])
def test_a_random_slope_on_a_zero_or_constant_column_is_refused(cls, value, match):
    # its SD was reported as identified (it stayed at the optimiser's start)
    y = np.log1p(Y0) if cls is GaussianLMMRegressor else Y0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the constant fixed-effect column is dropped
        with pytest.raises(ValueError, match=rf"random-effect column.*'z'.*{match}"):
            cls("1 + z").fit(X0.assign(z=value), y, groups=G0)


def test_a_random_slope_on_a_column_zero_where_the_weights_are_positive_is_refused():
    w = np.where(np.arange(N) % 2 == 0, 1.0, 0.0)
    z = np.where(w > 0, 0.0, 1.0)
    with pytest.raises(ValueError, match="are 0 in every row with positive weight"):
        PoissonGLMMRegressor("0 + z").fit(X0.assign(z=z), Y0, groups=G0, sample_weight=w)


@pytest.mark.parametrize("spec", ["(1 | g/g)", "(1 | g) + (1 | g:g)"])
def test_two_factors_on_one_partition_are_refused(spec):
    with pytest.raises(
        ValueError, match="'g:g' and 'g'.*group the rows identically|'g' and 'g:g'.*identically"
    ):
        GaussianLMMRegressor(spec).fit(X0, np.log1p(Y0), groups=pd.Series(G0, name="g"))


def test_more_random_effects_than_observations_is_refused_for_glmms():
    # glmer's check.nobs.vs.nRE (one per observation is allowed: an observation-level effect)
    rng = np.random.default_rng(5)
    X = pd.DataFrame(rng.normal(size=(N, 20)) * 0.05, columns=[f"x{j}" for j in range(20)])
    spec = "(1 + " + " + ".join(X.columns) + " | g)"
    with pytest.raises(
        ValueError,
        match=r"12 levels x 21 random effect\(s\) = 252 random effects for "
        r"n_samples=72.*more random effects than observations",
    ):
        PoissonGLMMRegressor(spec, max_iter=1).fit(X, Y0, groups=pd.Series(G0, name="g"))


def test_binary_outcome_separated_by_group_warns_and_does_not_claim_convergence():
    # half the groups all 0, half all 1: the random-intercept SD's estimate is infinite;
    # it stopped at the optimiser's bound with converged_ True
    y = (G0 % 2 == 0).astype(int)
    with pytest.warns(SeparationWarning, match="ran to the optimiser's bound.*separated by group"):
        model = BinomialGLMMClassifier().fit(X0, y, groups=G0)
    assert model.converged_ is False
    assert any("optimiser's bound" in note for note in model.fit_summary_.notes)
    assert model.varcorr_["sdcor"].iloc[0] == pytest.approx(50.0, rel=1e-5)


def test_binary_outcome_nearly_separated_by_group_warns():
    # one exception: the Laplace optimum is finite (SD 29 on the logit scale), reached and
    # converged, but it measures the separation, not variation between groups
    y = (G0 % 2 == 0).astype(int)
    y[0] = 0
    with pytest.warns(
        SeparationWarning,
        match=r"separation by group: 11 of 12 levels of 'group' have responses all "
        r"0 or all 1, and the random-intercept SD is 29",
    ):
        model = BinomialGLMMClassifier().fit(X0, y, groups=G0)
    assert model.converged_ and model.fit_summary_.notes[-1].startswith("separation by group")


def test_zero_inflated_poisson_without_zeros_warns_and_records_it():
    # the zero model's SE was 7.7e10 without a word
    from sklearn_glmm import ZeroInflatedPoissonGLMMRegressor

    with pytest.warns(
        SeparationWarning,
        match="y has no zeros: the zero-inflation probability's estimate is 0.*"
        "fit PoissonGLMMRegressor instead",
    ):
        model = ZeroInflatedPoissonGLMMRegressor().fit(X0, Y0 + 1, groups=G0)
    assert model.fit_summary_.notes[-1].startswith("y has no zeros")
    assert model.predict_zero_proba(X0, groups=G0).max() < 1e-6  # the estimate, 0


def test_lmm_stopped_by_max_iter_warns():
    rng = np.random.default_rng(0)
    y = (
        1
        + rng.normal(0, 1, N_GROUPS)[G0]
        + rng.normal(0, 0.8, N_GROUPS)[G0] * X0.x.to_numpy()
        + rng.normal(0, 0.3, N)
    )
    # (with its default stage 1, one stage-2 iteration is enough here: converged)
    with pytest.warns(ConvergenceWarning, match=r"did not converge \(.*max\|gradient\| \d"):
        model = GaussianLMMRegressor("1 + x", max_iter=1, solver_options={"stage1_max_iter": 1}).fit(
            X0, y, groups=G0
        )
    assert model.converged_ is False


@pytest.mark.parametrize("cls", [GaussianLMMRegressor, PoissonGLMMRegressor])
def test_score_on_a_constant_y_is_finite_as_scikit_learn(cls):
    from sklearn.metrics import r2_score

    y = np.log1p(Y0) if cls is GaussianLMMRegressor else Y0
    model = _quiet_fit(cls(), X0, y, groups=G0)
    constant = np.full(N, 2.0)
    assert model.score(X0, constant, groups=G0) == 0.0  # imperfect predictions of a constant
    if cls is GaussianLMMRegressor:
        assert model.score(X0, constant, groups=G0) == r2_score(constant, model.predict(X0, groups=G0))


def test_separation_without_groups_is_a_separation_warning():
    y = (X0.x > 0).to_numpy().astype(int)
    # as R's glm: "algorithm did not converge" and "fitted probabilities numerically 0 or 1"
    with (
        pytest.warns(SeparationWarning, match="fitted probabilities numerically 0 or 1"),
        pytest.warns(
            ConvergenceWarning,
            match=r"The GLM fit \(no groups\) did not converge \(no convergence in 100 Newton",
        ),
    ):
        model = _quiet_fit_no_groups(BinomialGLMMClassifier(), X0, y)
    assert model.coef_[0] > 5 and model.converged_ is False


def _quiet_fit_no_groups(model, X, y):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=NoGroupsWarning)
        warnings.filterwarnings("ignore", category=FallbackWarning)
        warnings.filterwarnings("ignore", message="The information matrix")
        return model.fit(X, y)


def test_a_glm_that_does_not_converge_warns():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoGroupsWarning)
        with pytest.warns(ConvergenceWarning, match=r"The GLM fit \(no groups\) did not converge"):
            model = PoissonGLMMRegressor(solver_options={"glm_max_iter": 1}).fit(X0, Y0)
    assert model.converged_ is False


def test_fallback_notes_warn_once_listing_them():
    from sklearn_glmm.utils._validation import warn_about_fallbacks

    notes = [
        "quasi-Newton stalled; L-BFGS-B took over",
        "GLM start: the information was singular; the step used least squares",
        "the GLM start's information is singular; the coefficients are scaled",
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_about_fallbacks(notes)
    assert len(caught) == 1 and issubclass(caught[0].category, FallbackWarning)
    assert "took 2 numerical fallback(s)" in str(caught[0].message) and "least squares" in str(
        caught[0].message
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_about_fallbacks(notes[:1])  # an algorithmic switch, not a fallback: silent


# threads: the BLAS limit is scoped to the fits that run


def _blas_threads():
    from threadpoolctl import threadpool_info

    return sorted((i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas")


def test_overlapping_limits_restore_the_setting_found_by_the_first():
    from threadpoolctl import threadpool_limits

    from sklearn_glmm.utils._threads import BlasLimiter

    limiter = BlasLimiter(1)
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        first, second = limiter(), limiter()
        first.__enter__()
        second.__enter__()
        assert limiter.active == 2 and all(n == 1 for _, n in _blas_threads())
        first.__exit__(None, None, None)  # the first out: the second still runs on one thread
        assert limiter.active == 1 and all(n == 1 for _, n in _blas_threads())
        second.__exit__(None, None, None)  # the last out restores what the first one found
        assert limiter.active == 0 and _blas_threads() == before


def test_concurrent_fits_in_threads_leave_the_blas_limit_as_found():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        barrier = threading.Barrier(4)
        errors = []

        def work(k):
            try:
                barrier.wait()
                for _ in range(2):
                    _quiet_fit(
                        PoissonGLMMRegressor() if k % 2 else GaussianLMMRegressor(),
                        X0,
                        Y0 if k % 2 else np.log1p(Y0),
                        groups=G0,
                    )
            except Exception as exc:  # noqa: BLE001 - any failure in a thread is reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert _blas_threads() == before


# inference on hard fits


def test_profile_of_a_singular_slope_fit_gives_limits_not_a_type_error():
    # the slope's SD at 0 and the correlation at +-1: theta_from_sdcor used to fail there
    # (TypeError: unsupported operand type(s) for -: 'NoneType' and 'NoneType')
    X, y, g = _poisson_data(seed=5, sd=0.8, slope_sd=0.0)
    model = _quiet_fit(PoissonGLMMRegressor("1 + x"), X, y, groups=g)
    assert model.singular_
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = model.confint("profile", X=X, y=y, groups=g)
    # (lme4 1.1.31's profile stops on these data with "Profiling over both the residual variance
    # and fixed effects is not numerically consistent ...")
    # the fixed effects' limits bracket the estimates, where the profile's zeta is -+1.96
    for name in ("(Intercept)", "x"):
        lo, hi = table.loc[name]
        assert lo < model.fixef_[name] < hi
        path = table.attrs["profiles"][name]
        assert np.interp(lo, path["value"], path["zeta"]) == pytest.approx(-1.959964, abs=1e-3)
        assert np.interp(hi, path["value"], path["zeta"]) == pytest.approx(1.959964, abs=1e-3)
    # the theta of lme4 (0.7041, -0.2637, 0): the correlation at -1, its lower limit the bound
    np.testing.assert_allclose(model.theta_, [0.7041030, -0.2637226, 0.0], atol=5e-5)
    assert table.loc[".sig02"].iloc[0] == -1.0 and -1.0 < table.loc[".sig02"].iloc[1] < 0.0
    assert np.all(np.isfinite(table.to_numpy())) and not caught


def test_semidefinite_correlations_map_to_theta():
    from sklearn_glmm._core._profile import sdcor_from_theta, theta_from_sdcor

    theta = theta_from_sdcor(np.array([1.0, 1.0, 2.0]), 2)  # SDs 1 and 2, correlation exactly 1
    lam = np.array([[theta[0], 0.0], [theta[1], theta[2]]])
    np.testing.assert_allclose(lam @ lam.T, [[1.0, 2.0], [2.0, 4.0]], atol=1e-12)
    np.testing.assert_allclose(sdcor_from_theta(theta, 2), [1.0, 1.0, 2.0], atol=1e-12)
    assert theta_from_sdcor(np.array([1.0, 1.0 + 1e-6, 2.0]), 2) is None  # a correlation above 1
