"""One version: ``sklearn_glmm.__version__``, pyproject's metadata and ``sklearn-glmm --version``."""

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sklearn_glmm
from sklearn_glmm._cli import main

ROOT = Path(__file__).parents[1]


def test_version_is_a_pep440_release():
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", sklearn_glmm.__version__)


def test_pyproject_reads_the_version_from_the_package():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "sklearn_glmm._version.__version__"
    }


def test_installed_metadata_agrees():
    try:
        installed = importlib.metadata.version("sklearn-glmm")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout on sys.path
        pytest.skip("sklearn-glmm is not installed")
    assert installed == sklearn_glmm.__version__


def test_cli_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"sklearn-glmm {sklearn_glmm.__version__}"


def test_python_dash_m_version():
    result = subprocess.run(
        [sys.executable, "-m", "sklearn_glmm", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"sklearn-glmm {sklearn_glmm.__version__}"
