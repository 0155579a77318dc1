"""compare_models against lme4's anova(m_ri, m_rs) and its refusals."""

import numpy as np
import pytest

from sklearn_glmm import PoissonGLMMRegressor, compare_models

from .conftest import load_reference, load_reference_data


@pytest.fixture(scope="module")
def data():
    return load_reference_data("app_engagement.csv", factors=["user_id"])


def _fit(data, spec, columns=("day_centered",), rows=slice(None)):
    d = data.iloc[rows]
    return PoissonGLMMRegressor(spec).fit(d[list(columns)], d["logins"], groups=d["user_id"])


@pytest.fixture(scope="module")
def models(data):
    return _fit(data, "(1 | user_id)"), _fit(data, "(day_centered | user_id)")


def test_anova_matches_lme4(models):
    ref = load_reference("app_engagement_intervals")["anova"]
    table = compare_models(*models, names=ref["models"])
    assert list(table.columns) == ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]
    assert list(table.index) == ref["models"]
    assert table["npar"].tolist() == ref["npar"]
    # our optimum is at least as good as lme4's, so allow ~1e-3 in the likelihoods
    for col in ("AIC", "BIC", "logLik", "deviance"):
        np.testing.assert_allclose(table[col], ref[col], atol=5e-3)
    assert table["Chisq"].iloc[1] == pytest.approx(ref["Chisq"][1], abs=5e-3)
    assert table["Df"].iloc[1] == 2
    assert table["Pr(>Chisq)"].iloc[1] == pytest.approx(ref["p"][1], abs=1e-3)
    assert np.isnan(table["Chisq"].iloc[0])
    assert f"{table['Chisq'].iloc[1]:.2f}" == "2.19"
    assert [f"{a:.1f}" for a in table["AIC"]] == ["5290.3", "5292.1"]
    assert "boundary" in table.attrs["note"]


def test_order_and_default_names(models):
    table = compare_models(models[1], models[0])
    assert list(table.index) == ["m2", "m1"]  # sorted by npar, as R
    assert table["Df"].iloc[1] == 2


def test_refusals(data, models):
    m_ri, m_rs = models
    with pytest.raises(ValueError, match="at least two"):
        compare_models(m_ri)
    with pytest.raises(ValueError, match="numbers of observations"):
        compare_models(m_ri, _fit(data, "(day_centered | user_id)", rows=slice(0, 900)))
    with pytest.raises(ValueError, match="not nested"):
        compare_models(_fit(data, "(1 | user_id)", columns=("day",)), m_rs)
    with pytest.raises(ValueError, match="same number of parameters|not nested"):
        compare_models(m_ri, _fit(data, "(1 | user_id)", columns=("day",)))
    different = data.assign(logins=data["logins"] + (data["day"] == 1))
    other = PoissonGLMMRegressor("(day_centered | user_id)").fit(
        different[["day_centered"]], different["logins"], groups=different["user_id"]
    )
    with pytest.raises(ValueError, match="different response values"):
        compare_models(m_ri, other)
    with pytest.raises(TypeError, match="fitted GLMM estimators"):
        compare_models(m_ri, "m2")
    with pytest.raises(ValueError, match="names"):
        compare_models(m_ri, m_rs, names=["a", "a"])
