"""r2_nakagawa and icc against R's performance 0.10.2 (tests/data/r2_icc_references.R).

Two kinds of check:

- the formula: the estimates R fitted (fixed effects, variance components,
  sigma / NB size / Gamma shape, the null model's intercept) put into a fitted
  model give performance's R², ICC and variance components to 1e-9 for every
  family covered (they agree to ~1e-15);
- end to end: our own fits. Our optimum is not lme4's: on the app-engagement
  models our log-likelihood is 4.5e-6 (random intercept) and 8.1e-6 (random
  slope) higher, the SD of the user intercepts differs by 3e-6 / 6e-6, and the
  rs null model ``logins ~ (day_centered | user_id)`` has a flat intercept
  (lme4 stops 1.1e-5 log-likelihood units short, 1.5e-5 away in the
  intercept). That moves the R² by up to 6e-6, so the end-to-end tolerance
  is 1e-5; from lme4's own estimates the values of
  ``app_engagement_r2_icc.json`` are reproduced to 1e-9.
"""

import copy
import warnings

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("formulaic")

from sklearn_glmm import (
    BinomialGLMMRegressor,
    GammaGLMMRegressor,
    GaussianLMMRegressor,
    PoissonGLMMRegressor,
    SingularFitWarning,
    ZeroInflatedPoissonGLMMRegressor,
    glmer,
    icc,
    r2_nakagawa,
)
from sklearn_glmm._r2 import _variance_components
from sklearn_glmm.results._varcorr import VARCORR_COLUMNS, varcorr_table

from .conftest import load_reference, load_reference_data

#: performance's warning for Poisson and NB models of small counts, reproduced by
#: r2_nakagawa and icc: expected for the app-engagement and owls data
SMALL_MEAN = "mu of .* is too close to zero"

REFERENCES = load_reference("r2_icc_references")["cases"]
COMPONENTS = ["var_fixed", "var_random", "var_distribution", "var_dispersion", "var_residual"]


def _fit(case):
    """Our fit of a reference case, from its formula."""
    read = load_reference_data
    if case.startswith("app_engagement"):
        data = read("app_engagement.csv", factors=["user_id"])
        bar = "(1 | user_id)" if case.endswith("ri") else "(day_centered | user_id)"
        return glmer(f"logins ~ day_centered + {bar}", data)
    if case == "sleepstudy_reml":
        return GaussianLMMRegressor.from_formula(
            "Reaction ~ Days + (Days | Subject)", read("sleepstudy.csv", factors=["Subject"])
        )
    if case.startswith("cbpp"):
        cbpp = read("cbpp.csv", factors=["herd", "period"]).assign(p=lambda t: t["incidence"] / t["size"])
        link = "probit" if case.endswith("probit") else "logit"
        return BinomialGLMMRegressor.from_formula("p ~ period + (1 | herd)", cbpp, weights="size", link=link)
    if case == "crossed_binary_tmb":
        data = read("crossed_binary_sim.csv", factors=["subject", "item"])
        return glmer("y ~ x + (1 | subject) + (1 | item)", data, family="binomial")
    if case == "owls_nb":
        owls = read("owls.csv", factors=["Nest", "FoodTreatment", "SexParent"])
        formula = "SiblingNegotiation ~ FoodTreatment * SexParent + offset(log(BroodSize)) + (1 | Nest)"
        return glmer(formula, owls, family="nbinom2")
    if case == "gamma_sessions_tmb":
        return GammaGLMMRegressor.from_formula(
            "y ~ x + (1 | user)", read("gamma_sessions_sim.csv", factors=["user"])
        )
    raise KeyError(case)


@pytest.fixture(scope="module")
def fits():
    return {case: _fit(case) for case in REFERENCES}


def _with_r_estimates(model, ref):
    """The fitted model with R's estimates in its public attributes, and R's null model."""
    model = copy.deepcopy(model)  # (without its data frame: the tests pass the data)
    model.fixef_ = pd.Series(ref["fixef"], dtype=float)
    model.varcorr_ = pd.DataFrame(
        [(r["group"], r["var1"], r.get("var2") or np.nan, r["vcov"], np.nan) for r in ref["varcorr"]],
        columns=VARCORR_COLUMNS,
    )
    model.theta_ = np.atleast_1d(np.asarray(ref["theta"], dtype=float))
    family = model.family_.name
    if family == "gaussian":
        model.sigma_ = ref["sigma"]
    elif family == "negative_binomial":
        model.nb_size_ = ref["sigma"]  # glmmTMB's sigma() of nbinom2 is the size
    elif family == "gamma":
        model.gamma_shape_ = 1.0 / ref["sigma"] ** 2  # glmmTMB's sigma() of Gamma is the CV
    null = copy.deepcopy(model)
    null.fixef_ = pd.Series([ref["null_intercept"]], index=["(Intercept)"])
    return model, null


@pytest.mark.parametrize("case", sorted(REFERENCES))
def test_formula_reproduces_performance_from_r_estimates(fits, case):
    ref = REFERENCES[case]
    model, null = _with_r_estimates(fits[case], ref)
    X, y, groups, weights, offset = fits[case].model_inputs()
    kwargs = {"sample_weight": weights, "offset": offset, "null_model": null}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=SMALL_MEAN)
        v = _variance_components(model, X, y, groups, **kwargs)
        r2 = r2_nakagawa(model, X, y, groups, **kwargs)
        coefficient = icc(model, X, y, groups, **kwargs)
    for name in COMPONENTS:
        assert v[name] == pytest.approx(ref[name], rel=1e-9, abs=1e-12), name
    assert r2["marginal"] == pytest.approx(ref["r2_marginal"], rel=1e-9)
    assert r2["conditional"] == pytest.approx(ref["r2_conditional"], rel=1e-9)
    assert coefficient["adjusted"] == pytest.approx(ref["icc_adjusted"], rel=1e-9)
    assert coefficient["unadjusted"] == pytest.approx(ref["icc_unadjusted"], rel=1e-9)


def test_app_engagement_reference_from_lme4_estimates(fits):
    # the values of app_engagement_r2_icc.json are performance's on the estimates of
    # app_engagement_ri.json (lme4's run) with lme4's null model: reproduced to 1e-9
    values = load_reference("app_engagement_r2_icc")["values"]["ri"]
    fit = load_reference("app_engagement_ri")
    ref = {
        "fixef": fit["fixef"],
        "theta": fit["theta"],
        "varcorr": [{"group": "user_id", "var1": "(Intercept)", "vcov": fit["theta"][0] ** 2}],
        "sigma": None,
        "null_intercept": REFERENCES["app_engagement_ri"]["null_intercept"],
    }
    model, null = _with_r_estimates(fits["app_engagement_ri"], ref)
    X, y, groups, _, _ = fits["app_engagement_ri"].model_inputs()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=SMALL_MEAN)
        r2 = r2_nakagawa(model, X, y, groups, null_model=null)
        coefficient = icc(model, X, y, groups, null_model=null)
    assert r2["marginal"] == pytest.approx(values["r2_marginal"], abs=1e-9)
    assert r2["conditional"] == pytest.approx(values["r2_conditional"], abs=1e-9)
    assert coefficient["adjusted"] == pytest.approx(values["icc_adjusted"], abs=1e-9)
    assert coefficient["unadjusted"] == pytest.approx(values["icc_unadjusted"], abs=1e-9)


@pytest.mark.parametrize("case", ["ri", "rs"])
def test_app_engagement_reference_end_to_end(fits, case):
    values = load_reference("app_engagement_r2_icc")["values"][case]
    model = fits[f"app_engagement_{case}"]
    with pytest.warns(UserWarning, match="mu of 2.1 is too close to zero"):
        r2 = r2_nakagawa(model)
    with pytest.warns(UserWarning, match="mu of 2.1"):
        coefficient = icc(model)
    # 1e-5: the distance between lme4's estimates and the optimum (module docstring)
    assert r2["marginal"] == pytest.approx(values["r2_marginal"], abs=1e-6)
    assert r2["conditional"] == pytest.approx(values["r2_conditional"], abs=1e-5)
    assert coefficient["adjusted"] == pytest.approx(values["icc_adjusted"], abs=1e-5)
    assert coefficient["unadjusted"] == pytest.approx(values["icc_unadjusted"], abs=1e-5)


@pytest.mark.parametrize(
    ("case", "tol"),
    [
        ("sleepstudy_reml", 1e-5),  # lmer and ours agree to ~1e-6 relative in the variances
        ("cbpp_tmb", 1e-6),
        ("crossed_binary_tmb", 1e-5),
        ("owls_nb", 1e-5),
        ("gamma_sessions_tmb", 1e-6),
    ],
)
def test_other_families_end_to_end(fits, case, tol):
    # (the probit case is not here: our probit Laplace is lme4's Fisher form, glmmTMB's is exact)
    ref = REFERENCES[case]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=SMALL_MEAN)
        r2 = r2_nakagawa(fits[case])
        coefficient = icc(fits[case])
    assert r2["marginal"] == pytest.approx(ref["r2_marginal"], abs=tol)
    assert r2["conditional"] == pytest.approx(ref["r2_conditional"], abs=tol)
    assert coefficient["adjusted"] == pytest.approx(ref["icc_adjusted"], abs=tol)
    assert coefficient["unadjusted"] == pytest.approx(ref["icc_unadjusted"], abs=tol)


def test_estimator_api_needs_the_data_and_refits_the_null_model(fits):
    data = load_reference_data("app_engagement.csv", factors=["user_id"])
    X, y, g = data[["day_centered"]], data["logins"], data["user_id"]
    model = PoissonGLMMRegressor("(day_centered | user_id)").fit(X, y, groups=g)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=SMALL_MEAN)
        assert r2_nakagawa(model, X, y, g) == pytest.approx(r2_nakagawa(fits["app_engagement_rs"]), rel=1e-8)
        with pytest.raises(ValueError, match="needs the null model"):
            r2_nakagawa(model, X)
    with pytest.raises(TypeError, match="X is required"):
        r2_nakagawa(model)
    with pytest.raises(ValueError, match="not covered"):
        zi = ZeroInflatedPoissonGLMMRegressor("(1 | user_id)", zero_inflation=[]).fit(X, y, groups=g)
        r2_nakagawa(zi, X, y, g)
    with pytest.warns(UserWarning, match="without groups"):
        glm = PoissonGLMMRegressor().fit(X, y)
    with pytest.raises(ValueError, match="no random effects"):
        icc(glm, X, y)


def test_singular_fit_gives_nan_with_a_warning():
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(30), 10)
    x = rng.normal(size=300)
    e = rng.normal(size=300)
    e -= np.bincount(g, weights=e)[g] / 10  # equal group means: the group variance is 0
    y = 1.0 + 0.5 * x + e
    with pytest.warns(SingularFitWarning):
        model = GaussianLMMRegressor().fit(x.reshape(-1, 1), y, groups=g)
    assert model.singular_
    with pytest.warns(UserWarning, match="Can't compute the ICC"):
        assert np.isnan(icc(model, x.reshape(-1, 1))["adjusted"])
    with pytest.warns(UserWarning, match="conditional R"):
        r2 = r2_nakagawa(model, x.reshape(-1, 1))
    assert np.isnan(r2["conditional"])
    # the marginal R² without var_random: var_fixed / (var_fixed + sigma^2)
    var_fixed = np.var(model.intercept_ + model.coef_[0] * x, ddof=1)
    assert r2["marginal"] == pytest.approx(var_fixed / (var_fixed + model.sigma_**2), rel=1e-12)


def test_varcorr_tables_of_uncorrelated_terms_count_every_term():
    # (1 + x || g) gives the groups g and g.1 in varcorr_, as lme4: both enter var_random
    rng = np.random.default_rng(8)
    g = np.repeat(np.arange(40), 15)
    x = rng.normal(size=600)
    y = 1 + x + rng.normal(0, 0.8, 40)[g] + rng.normal(0, 0.5, 40)[g] * x + rng.normal(size=600)
    X = pd.DataFrame({"x": x})
    model = GaussianLMMRegressor("(1 + x || g)").fit(X, y, groups=pd.Series(g, name="g"))
    v = _variance_components(model, X)
    table = varcorr_table("g", ["(Intercept)"], np.array([1.0]))  # the helper's own layout
    assert list(table.columns) == VARCORR_COLUMNS
    var = model.varcorr_.set_index("group")["vcov"]
    assert v["var_random"] == pytest.approx(var["g"] + var["g.1"] * np.mean(x**2), rel=1e-12)
