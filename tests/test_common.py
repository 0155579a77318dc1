"""scikit-learn's own estimator checks over every public estimator."""

import numpy as np
import pytest
import sklearn
from scipy.special import expit
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_glmm import (
    BinomialGLMMClassifier,
    BinomialGLMMRegressor,
    GammaGLMMRegressor,
    GaussianLMMRegressor,
    NegativeBinomialGLMMRegressor,
    PoissonGLMMRegressor,
    ZeroInflatedPoissonGLMMRegressor,
)

if tuple(int(p) for p in sklearn.__version__.split(".")[:2]) < (1, 6):  # pragma: no cover
    pytest.skip("expected_failed_checks needs scikit-learn >= 1.6", allow_module_level=True)

# The checks fit scikit-learn's own small data sets, so the warnings a user should
# see on such data are expected here; every other warning is an error (pyproject.toml).
pytestmark = [
    # no check passes groups: every fit is the plain GLM, on purpose (the estimators'
    # population-level mode is what makes them pass the common checks)
    pytest.mark.filterwarnings("ignore::sklearn_glmm.NoGroupsWarning"),
    # the checks' count data have no overdispersion: the NB size runs to its bound
    pytest.mark.filterwarnings("ignore:The negative-binomial size ran to its upper bound:UserWarning"),
    # the classification data are (quasi-)separable
    pytest.mark.filterwarnings("ignore:fitted probabilities numerically 0 or 1:UserWarning"),
    # check_sample_weight_equivalence_on_dense_data has more columns than distinct rows
    pytest.mark.filterwarnings("ignore:Fixed-effect column.*linearly dependent:UserWarning"),
    pytest.mark.filterwarnings("ignore:The information matrix of the fixed effects is singular:UserWarning"),
    # ... and is fitted exactly there: the Gamma shape's search runs off, the GLM says it did not converge
    pytest.mark.filterwarnings(
        "ignore:The GLM fit \\(no groups\\) did not converge:sklearn.exceptions.ConvergenceWarning"
    ),
    # the zero-inflated model's rounded targets may have no zero: its zero model runs off, and it says so
    pytest.mark.filterwarnings(
        "ignore:CountTargetZIPRegressor. y has no zeros:sklearn_glmm.SeparationWarning"
    ),
    # check_complex_data: numpy warns while casting, before the estimator refuses complex X
    pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning"),
]


def _to_proportion(y):
    """Real-valued check targets mapped into (0, 1); anything else passes unchanged."""
    try:
        values = np.asarray(y, dtype=float)
    except (TypeError, ValueError):
        return y
    # NaN and inf stay as they are, so the checks of bad targets still see them
    return np.where(np.isfinite(values), expit(values), values)


class ProportionTargetBinomialRegressor(BinomialGLMMRegressor):
    """BinomialGLMMRegressor fitted on expit(y).

    The common checks draw real-valued regression targets, which a binomial
    model refuses (proportions must lie in [0, 1]); this test-only subclass maps
    them through a fixed logistic transform so that every check exercises the
    estimator on valid data.
    """

    def fit(self, X, y, groups=None, sample_weight=None, offset=None):
        return super().fit(X, _to_proportion(y), groups=groups, sample_weight=sample_weight, offset=offset)

    def score(self, X, y, groups=None, sample_weight=None, offset=None):
        return super().score(X, _to_proportion(y), groups=groups, sample_weight=sample_weight, offset=offset)


def _to_counts(y):
    """Non-negative real check targets rounded to whole counts; anything else passes unchanged."""
    try:
        values = np.asarray(y)
        if values.dtype.kind == "c":  # the complex-data check must still see complex values
            return y
        values = values.astype(float)
    except (TypeError, ValueError):
        return y
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(values) & (values >= 0), np.round(values), values)


class CountTargetZIPRegressor(ZeroInflatedPoissonGLMMRegressor):
    """ZeroInflatedPoissonGLMMRegressor fitted on rounded targets.

    The zero-inflated Poisson model refuses non-integer counts, and the common
    checks draw real-valued (positive, because of the ``positive_only`` tag)
    targets; rounding them gives valid counts, so every check exercises the
    estimator on valid data. Negative, NaN and infinite targets pass unchanged,
    so the checks of bad targets still see them.
    """

    def fit(self, X, y, groups=None, sample_weight=None, offset=None):
        return super().fit(X, _to_counts(y), groups=groups, sample_weight=sample_weight, offset=offset)

    def score(self, X, y, groups=None, sample_weight=None, offset=None):
        return super().score(X, _to_counts(y), groups=groups, sample_weight=sample_weight, offset=offset)


# An intercept-only fixed part (X with zero columns, lme4's `y ~ 1 + (1 | g)`) is a
# supported model, so X with zero features is accepted rather than refused.
COMMON = {"check_estimators_empty_data_messages": "X with zero columns is the intercept-only model"}
EXPECTED_FAILED = {
    BinomialGLMMClassifier: {
        **COMMON,
        "check_sample_weight_equivalence_on_dense_data": (
            "the check's data are perfectly separable: the maximum-likelihood estimates "
            "are infinite and depend on where IRLS stops, so weighted and repeated fits differ"
        ),
    },
    GaussianLMMRegressor: {
        **COMMON,
        "check_sample_weight_equivalence_on_dense_data": (
            "sample_weight are lme4's precision weights (Var(e_i) = sigma^2 / w_i), not "
            "frequencies: the residual variance divides by the number of rows"
        ),
    },
}

ESTIMATORS = [
    PoissonGLMMRegressor(),
    NegativeBinomialGLMMRegressor(),
    GammaGLMMRegressor(),
    ProportionTargetBinomialRegressor(),
    BinomialGLMMClassifier(),
    GaussianLMMRegressor(),
    CountTargetZIPRegressor(),
]


@parametrize_with_checks(
    ESTIMATORS, expected_failed_checks=lambda est: EXPECTED_FAILED.get(type(est), COMMON)
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
