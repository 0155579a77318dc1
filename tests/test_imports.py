"""``import sklearn_glmm`` stays light: no optional or heavy package is imported with it.

Each check runs in a fresh interpreter (this test session has imported
everything already). The optional parts import their packages on first use:
``sklearn_glmm.plot`` (matplotlib), the formula interface (formulaic), the
Dask and boosting back ends.
"""

import json
import subprocess
import sys

import pytest

#: packages that only optional parts of sklearn_glmm may import
OPTIONAL = ("matplotlib", "formulaic", "dask", "distributed", "lightgbm")


#: the package's own modules for optional parts, imported with their first use
OPTIONAL_PARTS = ("sklearn_glmm._partitioned_fit", "sklearn_glmm._core._partitioned", "sklearn_glmm.plot")


def _loaded_after(code: str, modules=OPTIONAL) -> list[str]:
    """The ``modules`` in sys.modules after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {tuple(modules)!r} if m in sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_sklearn_glmm_loads_no_optional_package():
    assert _loaded_after("import sklearn_glmm") == []


def test_import_sklearn_glmm_leaves_the_optional_parts_for_their_first_use():
    # the partitioned (Dask) fit and the figures are imported when a Dask input or a plot arrives
    assert _loaded_after("import sklearn_glmm", OPTIONAL_PARTS) == []


def test_public_names_load_no_optional_package():
    # touching every public name (estimators, functions, lazy datasets) keeps them out too
    code = "import sklearn_glmm\nfor name in sklearn_glmm.__all__: getattr(sklearn_glmm, name)\nsklearn_glmm.datasets"
    assert _loaded_after(code) == []


def test_a_plot_is_what_loads_matplotlib():
    # the probe sees an import when one happens: drawing a figure brings matplotlib
    pytest.importorskip("matplotlib")
    code = (
        "import os\nos.environ['MPLBACKEND'] = 'Agg'\nimport pandas as pd\nimport sklearn_glmm\n"
        "sklearn_glmm.plot.trajectories(pd.DataFrame({'x': [0, 1], 'y': [1, 2], 'g': ['a', 'a']}), 'x', 'y', 'g')"
    )
    assert "matplotlib" in _loaded_after(code)
