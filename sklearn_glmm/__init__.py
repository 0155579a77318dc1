"""sklearn_glmm: generalized linear mixed models for scikit-learn.

Estimators fitted by maximum likelihood under the Laplace approximation, as
lme4's ``glmer``, with the scikit-learn API (``fit(X, y, groups=...)``).

``sklearn_glmm.plot`` (figures, needs matplotlib) and ``sklearn_glmm.datasets``
are imported on first use, and the optional packages (formulaic, matplotlib)
only by the functions that need them, so ``import sklearn_glmm`` loads none of
them and adds little to ``import sklearn`` (``benchmarks/import_time.py``
measures it; ``tests/test_imports.py`` keeps the optional packages out).
"""

import importlib

from ._base import NoGroupsWarning
from ._boosting import GLMMBoostingClassifier, GLMMBoostingRegressor
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
from ._version import __version__
from ._zero_inflated import ZeroInflatedPoissonGLMMRegressor
from .results._compare import compare_models
from .results._diagnostics import overdispersion, simulate
from .utils._validation import FallbackWarning, SeparationWarning, SingularFitWarning

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
    "NoGroupsWarning",
    "SingularFitWarning",
    "SeparationWarning",
    "FallbackWarning",
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
