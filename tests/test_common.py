"""scikit-learn's own estimator checks over every public estimator."""

import pytest
import sklearn
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_glmm import PoissonGLMMRegressor

if tuple(int(p) for p in sklearn.__version__.split(".")[:2]) < (1, 6):  # pragma: no cover
    pytest.skip("expected_failed_checks needs scikit-learn >= 1.6", allow_module_level=True)

# An intercept-only fixed part (X with zero columns, lme4's `y ~ 1 + (1 | g)`) is a
# supported model, so X with zero features is accepted rather than refused.
EXPECTED_FAILED = {
    "check_estimators_empty_data_messages": "X with zero columns is the intercept-only model",
}


@parametrize_with_checks(
    [PoissonGLMMRegressor()], expected_failed_checks=lambda est: EXPECTED_FAILED
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
