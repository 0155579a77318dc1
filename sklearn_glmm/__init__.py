"""sklearn_glmm: generalized linear mixed models for scikit-learn.

Estimators fitted by maximum likelihood under the Laplace approximation, as
lme4's ``glmer``, with the scikit-learn API (``fit(X, y, groups=...)``).
"""

from ._classifier import BinomialGLMMClassifier
from ._regressors import (
    BinomialGLMMRegressor,
    GammaGLMMRegressor,
    GaussianLMMRegressor,
    NegativeBinomialGLMMRegressor,
    PoissonGLMMRegressor,
)
from ._drop1 import drop1
from ._formula import glmer  # issue 8
from ._r2 import icc, r2_nakagawa
from ._zero_inflated import ZeroInflatedPoissonGLMMRegressor  # issue 7
from .results._compare import compare_models  # issue 8
from .results._diagnostics import overdispersion, simulate  # issue 8

__version__ = "0.1.0"

__all__ = [
    "PoissonGLMMRegressor",
    "NegativeBinomialGLMMRegressor",
    "GammaGLMMRegressor",
    "BinomialGLMMRegressor",
    "BinomialGLMMClassifier",
    "GaussianLMMRegressor",
    "ZeroInflatedPoissonGLMMRegressor",
    "compare_models",
    "drop1",
    "glmer",
    "icc",
    "r2_nakagawa",
    "overdispersion",
    "simulate",
    "__version__",
]
