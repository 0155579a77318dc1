"""confint (Wald, profile, bootstrap) and conditional SDs against lme4 1.1.31."""

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm import NoGroupsWarning, PoissonGLMMRegressor

from .conftest import load_reference, load_reference_data

ROWS = [".sig01", "(Intercept)", "day_centered"]


@pytest.fixture(scope="module")
def data():
    return load_reference_data("app_engagement.csv", factors=["user_id"])


@pytest.fixture(scope="module")
def train(data):
    return {"X": data[["day_centered"]], "y": data["logins"], "groups": data["user_id"]}


@pytest.fixture(scope="module")
def m_ri(data):
    return PoissonGLMMRegressor("(1 | user_id)").fit(
        data[["day_centered"]], data["logins"], groups=data["user_id"]
    )


@pytest.fixture(scope="module")
def m_rs(data):
    model = PoissonGLMMRegressor("(day_centered | user_id)")
    return model.fit(data[["day_centered"]], data["logins"], groups=data["user_id"])


@pytest.fixture(scope="module")
def ref():
    return load_reference("app_engagement_intervals")


def test_wald_matches_lme4(m_ri, ref):
    table = m_ri.confint(method="wald")
    assert list(table.index) == ref["wald_rows"] == ROWS
    assert list(table.columns) == ["2.5 %", "97.5 %"]
    assert table.loc[".sig01"].isna().all()  # lme4 gives no Wald interval for an SD
    np.testing.assert_allclose(table["2.5 %"].iloc[1:], ref["wald_lower"][1:], atol=1e-3)
    np.testing.assert_allclose(table["97.5 %"].iloc[1:], ref["wald_upper"][1:], atol=1e-3)


def test_profile_matches_lme4(m_ri, ref, train):
    table = m_ri.confint(method="profile", **train)
    assert list(table.index) == ref["profile"]["rows"]
    np.testing.assert_allclose(table["2.5 %"], ref["profile"]["lower"], atol=1e-3)
    np.testing.assert_allclose(table["97.5 %"], ref["profile"]["upper"], atol=1e-3)
    # the profiles themselves: zeta is 0 at the estimate and increasing
    prof = table.attrs["profiles"]["(Intercept)"]
    assert np.all(np.diff(prof["zeta"]) > 0)
    assert prof.loc[prof["zeta"].abs().idxmin(), "value"] == pytest.approx(m_ri.fixef_["(Intercept)"])


def test_profile_subset_and_level(m_ri, train):
    narrow = m_ri.confint(method="profile", parm="day_centered", level=0.5, **train)
    wide = m_ri.confint(method="profile", parm=["day_centered"], level=0.99, **train)
    assert list(narrow.columns) == ["25 %", "75 %"] and list(wide.columns) == ["0.5 %", "99.5 %"]
    assert (
        wide.iloc[0, 0]
        < narrow.iloc[0, 0]
        < m_ri.fixef_["day_centered"]
        < narrow.iloc[0, 1]
        < wide.iloc[0, 1]
    )


@pytest.mark.slow  # ~2 s: three profiles of a q = 2 model
def test_profile_random_slope_model(m_rs, train):
    table = m_rs.confint(method="profile", parm=[".sig01", ".sig02", ".sig03"], **train)
    sdcor = m_rs.varcorr_["sdcor"].to_numpy()[[0, 2, 1]]  # sd1, cor, sd2 (theta's order)
    assert np.all(table["2.5 %"].to_numpy() <= sdcor) and np.all(sdcor <= table["97.5 %"].to_numpy())
    assert -1 <= table.loc[".sig02", "2.5 %"] and table.loc[".sig02", "97.5 %"] <= 1


@pytest.mark.parametrize("case", ["app_engagement_ri", "app_engagement_rs"])
def test_ranef_condsd_matches_lme4(data, case, m_ri, m_rs):
    model = m_ri if case.endswith("ri") else m_rs
    expected = pd.DataFrame(load_reference(case)["ranef_condsd"]["user_id"]).T
    got = model.ranef_condsd_["user_id"]
    assert got.shape == model.ranef_["user_id"].shape
    assert list(got.columns) == list(expected.columns)
    np.testing.assert_allclose(got.loc[expected.index], expected, rtol=2e-3)


def test_bootstrap_is_reproducible(m_ri, train):
    a = m_ri.confint(method="bootstrap", n_boot=4, random_state=3, **train)
    b = m_ri.confint(method="bootstrap", n_boot=4, random_state=3, **train)
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs["replicates"].shape == (4, 3)
    assert list(a.index) == ROWS
    assert np.all(a["2.5 %"] <= a["97.5 %"])


@pytest.mark.slow
def test_bootstrap_parallel_equals_serial_and_covers(m_ri, train):
    a = m_ri.confint(method="bootstrap", n_boot=100, random_state=3, **train)
    b = m_ri.confint(method="bootstrap", n_boot=100, random_state=3, n_jobs=2, **train)
    pd.testing.assert_frame_equal(a, b)
    estimates = np.concatenate([[m_ri.theta_[0]], m_ri.fixef_.to_numpy()])
    assert np.all(a["2.5 %"].to_numpy() < estimates) and np.all(estimates < a["97.5 %"].to_numpy())


def test_bad_arguments(m_ri, data):
    with pytest.raises(ValueError, match="method must be one of"):
        m_ri.confint(method="exact")
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        m_ri.confint(level=95)
    with pytest.raises(ValueError, match="unknown parameter"):
        m_ri.confint(parm="weekday")
    with pytest.raises(ValueError, match="n_boot"):
        m_ri.confint(method="bootstrap", n_boot=1)
    with pytest.warns(NoGroupsWarning):
        glm = PoissonGLMMRegressor().fit(data[["day_centered"]], data["logins"])
    assert glm.ranef_condsd_ == {}
    with pytest.raises(ValueError, match="needs a mixed model"):
        glm.confint(method="profile")
    assert list(glm.confint().index) == ["(Intercept)", "day_centered"]


def test_intervals_that_refit_need_the_training_data(m_ri, data, train):
    """A fitted model keeps estimates only: profile and bootstrap take the data, and
    refuse data that do not reproduce the fitted deviance."""
    with pytest.raises(TypeError, match="keeps estimates, not data: pass the data it was fitted on"):
        m_ri.confint(method="profile")
    with pytest.raises(ValueError, match="not the fitted .*pass the data the model was fitted on"):
        m_ri.confint(method="profile", X=train["X"], y=train["y"] + 1, groups=train["groups"])
    half = data.iloc[::2]
    with pytest.raises(ValueError, match="pass the data the model was fitted on"):
        m_ri.confint(
            method="bootstrap", n_boot=2, X=half[["day_centered"]], y=half["logins"], groups=half["user_id"]
        )
