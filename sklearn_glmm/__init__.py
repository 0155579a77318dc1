"""sklearn_glmm: generalized linear mixed models for scikit-learn.

Estimators fitted by maximum likelihood under the Laplace approximation, as
lme4's ``glmer``, with the scikit-learn API (``fit(X, y, groups=...)``).

``sklearn_glmm.plot`` (figures, needs matplotlib) and ``sklearn_glmm.datasets``
are imported on first use, so ``import sklearn_glmm`` loads neither matplotlib
nor the bundled data.
"""

import importlib

from ._boosting import GLMMBoostingClassifier, GLMMBoostingRegressor  # issue 18
from ._classifier import BinomialGLMMClassifier
from ._drop1 import drop1
from ._formula import glmer, update
from ._marginal import marginal_predictions
from ._r2 import icc, r2_nakagawa
from ._regressors import (
    BinomialGLMMRegressor,
    GammaGLMMRegressor,
    GaussianLMMRegressor,
    NegativeBinomialGLMMRegressor,
    PoissonGLMMRegressor,
)
from ._zero_inflated import ZeroInflatedPoissonGLMMRegressor
from .results._compare import compare_models
from .results._diagnostics import overdispersion, simulate

__version__ = "0.1.0"

__all__ = [
    "PoissonGLMMRegressor",
    "NegativeBinomialGLMMRegressor",
    "GammaGLMMRegressor",
    "BinomialGLMMRegressor",
    "BinomialGLMMClassifier",
    "GaussianLMMRegressor",
    "ZeroInflatedPoissonGLMMRegressor",
    "GLMMBoostingRegressor",
    "GLMMBoostingClassifier",
    "compare_models",
    "drop1",
    "glmer",
    "icc",
    "marginal_predictions",
    "r2_nakagawa",
    "overdispersion",
    "simulate",
    "update",
    "__version__",
]

#: submodules imported on first attribute access
_LAZY_SUBMODULES = ("plot", "datasets")


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))
