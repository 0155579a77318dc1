"""Every figure of sklearn_glmm.plot renders to a PNG with the Agg back end."""

import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt

from sklearn_glmm import (
    NoGroupsWarning,
    PoissonGLMMRegressor,
    plot,
)

from .conftest import load_reference_data


@pytest.fixture(scope="module")
def data():
    return load_reference_data("app_engagement.csv", factors=["user_id"])


@pytest.fixture(scope="module")
def model(data):
    m = PoissonGLMMRegressor("(day_centered | user_id)")
    return m.fit(data[["day_centered"]], data["logins"], groups=data["user_id"])


def _save(figure_or_axes, path):
    fig = figure_or_axes if isinstance(figure_or_axes, matplotlib.figure.Figure) else figure_or_axes.figure
    fig.savefig(path, dpi=60)
    plt.close(fig)
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 5000
    image = plt.imread(path)
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert np.std(image[..., :3]) > 0.01  # not a blank canvas
    return image


def test_trajectories(data, tmp_path):
    ax = plot.trajectories(data, "day", "logins", "user_id", n_groups=20)
    assert len(ax.lines) == 21 and ax.get_xlabel() == "day"
    _save(ax, tmp_path / "trajectories.png")


def test_observed_vs_fitted(data, model, tmp_path):
    fig = plot.observed_vs_fitted(
        model, data[["day_centered"]], data["logins"], data["user_id"], n_groups=6, ncols=3
    )
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 6 and all(len(ax.lines) == 2 for ax in visible)
    _save(fig, tmp_path / "observed_vs_fitted.png")


def test_residuals_vs_fitted(data, model, tmp_path):
    ax = plot.residuals_vs_fitted(model, data[["day_centered"]], data["logins"], data["user_id"])
    assert ax.get_ylabel() == "pearson residual"
    _save(ax, tmp_path / "residuals_vs_fitted.png")


def test_qq_and_caterpillar(model, tmp_path):
    fig = plot.qq_ranef(model)
    assert len(fig.axes) == 2
    _save(fig, tmp_path / "qq_ranef.png")
    fig = plot.caterpillar(model)
    assert len(fig.axes) == 2 and len(fig.axes[0].get_yticklabels()) == 50
    _save(fig, tmp_path / "caterpillar.png")


def test_profile_zeta(data, tmp_path):
    m = PoissonGLMMRegressor("(1 | user_id)").fit(
        data[["day_centered"]], data["logins"], groups=data["user_id"]
    )
    table = m.confint(
        method="profile",
        parm=["day_centered"],
        X=data[["day_centered"]],
        y=data["logins"],
        groups=data["user_id"],
    )
    fig = plot.profile_zeta(table)
    _save(fig, tmp_path / "profile.png")
    with pytest.raises(ValueError, match="no profiles"):
        plot.profile_zeta(m.confint())


def test_errors(data):
    with pytest.warns(NoGroupsWarning):
        glm = PoissonGLMMRegressor().fit(data[["day_centered"]], data["logins"])
    with pytest.raises(ValueError, match="needs a mixed model"):
        plot.caterpillar(glm)
    with pytest.raises(ValueError, match="not in data"):
        plot.trajectories(data, "week", "logins", "user_id")
    with pytest.raises(TypeError, match="DataFrame"):
        plot.trajectories(data.to_numpy(), "day", "logins", "user_id")


def test_panel_titles_name_the_factor_and_labels_are_legible(data, model):
    fig = plot.observed_vs_fitted(model, data[["day_centered"]], data["logins"], data["user_id"], n_groups=4)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    # "user_id 34", not "34"
    assert len(titles) == 4 and all(t.split(" ", 1)[0] == "user_id" for t in titles)
    assert {t.split(" ", 1)[1] for t in titles} <= set(data["user_id"])
    plt.close(fig)
    fig = plot.caterpillar(model)
    labels = fig.axes[0].get_yticklabels()
    assert min(label.get_fontsize() for label in labels) >= 8
    # 0.2 inch per level: the label height (8 pt = 0.11 inch) fits its row
    assert fig.get_size_inches()[1] >= 0.2 * 50
    plt.close(fig)


def test_formula_models_plot_their_own_data(data):
    pytest.importorskip("formulaic")
    from sklearn_glmm import glmer

    m = glmer("logins ~ day_centered + (1 | user_id)", data)
    ax = plot.residuals_vs_fitted(m)
    assert len(ax.collections[0].get_offsets()) == len(data)
    plt.close(ax.figure)
    fig = plot.observed_vs_fitted(m, n_groups=2)
    assert [ax.get_title().split()[0] for ax in fig.axes if ax.get_visible()] == ["user_id", "user_id"]
    plt.close(fig)


def test_plot_is_an_attribute_of_the_package_without_importing_matplotlib():
    code = (
        "import sys, sklearn_glmm; assert 'matplotlib' not in sys.modules; "
        "p = sklearn_glmm.plot; assert callable(p.caterpillar); assert 'matplotlib' not in sys.modules; "
        "assert sklearn_glmm.datasets.load_app_engagement().shape == (1500, 4)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
