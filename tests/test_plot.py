"""Every figure of sklearn_glmm.plot renders to a PNG with the Agg back end."""

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from sklearn_glmm import PoissonGLMMRegressor  # noqa: E402
from sklearn_glmm import plot  # noqa: E402

from .conftest import load_reference_data  # noqa: E402


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
    fig = plot.observed_vs_fitted(model, data[["day_centered"]], data["logins"], data["user_id"], n_groups=6, ncols=3)
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
    m = PoissonGLMMRegressor("(1 | user_id)").fit(data[["day_centered"]], data["logins"], groups=data["user_id"])
    table = m.confint(method="profile", parm=["day_centered"], X=data[["day_centered"]], y=data["logins"],
                      groups=data["user_id"])
    fig = plot.profile_zeta(table)
    _save(fig, tmp_path / "profile.png")
    with pytest.raises(ValueError, match="no profiles"):
        plot.profile_zeta(m.confint())


def test_errors(data):
    glm = PoissonGLMMRegressor().fit(data[["day_centered"]], data["logins"])
    with pytest.raises(ValueError, match="needs a mixed model"):
        plot.caterpillar(glm)
    with pytest.raises(ValueError, match="not in data"):
        plot.trajectories(data, "week", "logins", "user_id")
    with pytest.raises(TypeError, match="DataFrame"):
        plot.trajectories(data.to_numpy(), "day", "logins", "user_id")
