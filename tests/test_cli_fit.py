"""``sklearn-glmm fit data.csv --formula ...``: summary, intervals, plots, JSON and clear errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sklearn_glmm import PoissonGLMMRegressor
from sklearn_glmm._cli import main
from sklearn_glmm.results._html import summary_html

from .conftest import DATA, load_reference, load_reference_data

CSV = str(DATA / "app_engagement.csv")
RI = "logins ~ day_centered + (1 | user_id)"


def test_fit_prints_summary_intervals_and_overdispersion(capsys):
    assert main(["fit", CSV, "--formula", RI]) == 0
    captured = capsys.readouterr()
    for expected in (
        "5290.3",
        "-2642.1",
        "(1 | user_id)",
        "Confidence intervals (wald",
        "(Intercept)",
        "ratio = 0.929",
    ):
        assert expected in captured.out, expected
    assert "Fitting a poisson GLMM to 1500 rows" in captured.err and "done in" in captured.err


def test_fit_writes_plots_and_json(tmp_path, capsys):
    out = tmp_path / "result.json"
    args = [
        "fit",
        CSV,
        "--formula",
        RI,
        "--confint",
        "profile",
        "--plots",
        str(tmp_path / "figs"),
        "--json",
        str(out),
    ]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "Confidence intervals (profile" in text and "caterpillar.png" in text
    pngs = sorted(p.name for p in (tmp_path / "figs").glob("*.png"))
    assert pngs == [
        "caterpillar.png",
        "observed_vs_fitted.png",
        "qq_ranef.png",
        "residuals_vs_fitted.png",
        "trajectories.png",
    ]
    assert all((tmp_path / "figs" / p).stat().st_size > 5000 for p in pngs)
    result = json.loads(out.read_text())
    ref = load_reference("app_engagement_ri")
    intervals = load_reference("app_engagement_intervals")["profile"]
    assert result["n_obs"] == 1500 and result["n_groups"] == {"user_id": 50}
    assert result["aic"] == pytest.approx(ref["aic"], abs=4e-3)
    assert result["fixef"]["day_centered"] == pytest.approx(ref["fixef"]["day_centered"], rel=1e-3)
    assert result["confint"]["table"][".sig01"]["2.5 %"] == pytest.approx(intervals["lower"][0], abs=1e-3)
    assert result["ranef_condsd"]["user_id"]["1"]["(Intercept)"] == pytest.approx(
        ref["ranef_condsd"]["user_id"]["1"]["(Intercept)"], rel=2e-3
    )
    assert set(result["overdispersion"]) == {"chisq", "ratio", "rdf", "p"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit", "no/such/file.csv", "--formula", RI], "no such file"),
        (["fit", CSV, "--formula", "logins ~ nope + (1 | user_id)"], "does not fit the data"),
        (["fit", CSV, "--formula", "logins ~ day_centered (1 | user_id"], "Cannot read the formula"),
        (["fit", CSV, "--formula", "logins ~ day_centered + (1 | who)"], "grouping factor 'who'"),
        (["fit", CSV, "--formula", RI, "--family", "tweedie"], "--family must be one of"),
    ],
)
def test_fit_errors_are_one_line_messages(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "sklearn-glmm: error:" in err and message in err
    assert "Traceback" not in err


def test_fit_rejects_empty_and_binary_files(tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    assert main(["fit", str(empty), "--formula", RI]) == 2
    assert main(["fit", str(binary), "--formula", RI]) == 2
    err = capsys.readouterr().err
    assert err.count("sklearn-glmm: error:") == 2


@pytest.mark.slow  # tests/test_cli.py already runs python -m sklearn_glmm
def test_console_script_entry_point(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sklearn_glmm",
            "fit",
            CSV,
            "--formula",
            RI,
            "--json",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "AIC" in result.stdout and Path(tmp_path / "r.json").is_file()


def test_summary_html_has_real_tables():
    data = load_reference_data("app_engagement.csv", factors=["user_id"])
    model = PoissonGLMMRegressor("(day_centered | user_id)")
    model.fit(data[["day_centered"]], data["logins"], groups=data["user_id"])
    html = summary_html(model.summary())
    assert html.count("<table>") == 4 and "<pre>" not in html
    for expected in ("Random effects", "Fixed effects", "day_centered", "user_id", "5292.1", "***"):
        assert expected in html, expected


def test_gaussian_fit_prints_no_overdispersion_test(tmp_path, capsys):
    out = tmp_path / "result.json"
    assert (
        main(["fit", CSV, "--formula", RI, "--family", "gaussian", "--confint", "none", "--json", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "Linear mixed model fit by REML" in printed and "Overdispersion" not in printed
    assert "overdispersion" not in json.loads(out.read_text())
