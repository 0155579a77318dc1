"""sklearn_glmm: generalized linear mixed models for scikit-learn.

Estimators fitted by maximum likelihood under the Laplace approximation, as
lme4's ``glmer``, with the scikit-learn API (``fit(X, y, groups=...)``).
"""

from ._regressors import PoissonGLMMRegressor

__version__ = "0.1.0"

__all__ = ["PoissonGLMMRegressor", "__version__"]
