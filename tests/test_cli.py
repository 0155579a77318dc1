"""The main job: ``sklearn-glmm demo`` prints the seed model's summary."""

import subprocess
import sys

from sklearn_glmm._cli import main


def test_demo_prints_the_seed_fit(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    for expected in (
        "5290.3",
        "5306.2",
        "-2642.1",
        "0.433",
        "0.1875",
        "0.73794",
        "-0.009100",
        "(1 | user_id)",
    ):
        assert expected in out, expected


def test_demo_random_slope(capsys):
    assert main(["demo", "--random-slope"]) == 0
    out = capsys.readouterr().out
    assert "5292.1" in out and "(day_centered | user_id)" in out and "0.27" in out


def test_python_dash_m_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "sklearn_glmm", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "AIC" in result.stdout and "5290.3" in result.stdout
