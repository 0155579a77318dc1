"""The package version: the one place it is written.

``pyproject.toml`` reads it from here (``[tool.setuptools.dynamic]``), so the
installed metadata (``importlib.metadata.version("sklearn-glmm")``),
``sklearn_glmm.__version__`` and ``sklearn-glmm --version`` agree.
"""

__version__ = "0.1.0"
