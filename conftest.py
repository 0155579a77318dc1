"""pytest configuration shared by ``tests/`` and the doctests of ``sklearn_glmm/``."""

import os
import sys

import pytest

# figures are drawn off screen (set before matplotlib is imported by anything)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _close_figures():
    """Close the figures a test or doctest drew: matplotlib warns past 20 open figures."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
