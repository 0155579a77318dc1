"""Figures of a GLMM fit (needs matplotlib: ``pip install matplotlib``, the ``plot`` extra).

Each function draws one figure of the seed tutorial and returns the matplotlib
``Axes`` (single panel) or ``Figure`` (facets):

=========================== ===================================================
:func:`trajectories`        spaghetti plot of each group's series + mean trend
:func:`observed_vs_fitted`  per-group facets: observed, conditional and
                            population-level fitted values
:func:`residuals_vs_fitted` Pearson (or other) residuals against fitted means
:func:`qq_ranef`            normal Q-Q plot of the conditional modes
:func:`caterpillar`         conditional modes with intervals from the
                            conditional SDs, sorted (lme4's ``dotplot(ranef)``)
:func:`profile_zeta`        the profile ``zeta`` of a ``confint(method="profile")``
=========================== ===================================================

matplotlib is imported when a function is called, so ``import sklearn_glmm``
works without it (``sklearn_glmm.plot`` itself is imported on first use).
A formula-fitted model may leave out ``X, y, groups``: its own data are used.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ._model_frame import feature_frame

__all__ = [
    "trajectories",
    "observed_vs_fitted",
    "residuals_vs_fitted",
    "qq_ranef",
    "caterpillar",
    "profile_zeta",
]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Plots need the optional package matplotlib (the 'plot' extra): pip install matplotlib, "
            "or pip install '.[plot]' in a checkout of sklearn_glmm."
        ) from exc
    return plt


def _axes(ax, figsize=(6.4, 4.4)):
    if ax is not None:
        return ax
    return _pyplot().subplots(figsize=figsize)[1]


def _check_columns(data: pd.DataFrame, *columns: str) -> None:
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame; got {type(data).__name__}.")
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise ValueError(f"column(s) {missing} are not in data (columns: {list(data.columns)}).")


def _mixed(model) -> str:
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model, "fixef_")
    if not model.ranef_:
        raise ValueError("This plot needs a mixed model; the model was fitted without groups.")
    return next(iter(model.ranef_))


def trajectories(data: pd.DataFrame, x: str, y: str, group: str, *, n_groups=None, random_state=0, ax=None):
    """Spaghetti plot: one line per group, the mean of ``y`` at each ``x`` on top.

    Parameters
    ----------
    data : DataFrame
        The data, one row per observation.
    x, y, group : str
        Column names (time, response, grouping factor).
    n_groups : int, default=None
        Draw only this many randomly chosen groups (all when None).
    random_state : int, default=0
        Seed of that choice.
    ax : matplotlib Axes, default=None
        Axes to draw on (a new figure when None).

    Returns
    -------
    matplotlib Axes

    See Also
    --------
    observed_vs_fitted : The groups' data with the fitted curves.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> from sklearn_glmm.plot import trajectories
    >>> ax = trajectories(load_app_engagement(), "day", "logins", "user_id")
    >>> ax.get_ylabel()
    'logins'
    """
    _check_columns(data, x, y, group)
    ax = _axes(ax)
    labels = pd.unique(data[group])
    if n_groups is not None and n_groups < len(labels):
        labels = np.random.default_rng(random_state).choice(labels, size=n_groups, replace=False)
    for label in labels:
        part = data[data[group] == label].sort_values(x)
        ax.plot(part[x], part[y], color="0.55", alpha=0.35, linewidth=0.8)
    mean = data.groupby(x)[y].mean()
    ax.plot(mean.index, mean.to_numpy(), color="C3", linewidth=2.5, label=f"mean {y}")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{y} per {group} ({len(labels)} shown) and the mean trend")
    ax.legend(loc="upper right")
    return ax


def _data(model, X, y, groups):
    """The plotted data: as given, or a formula-fitted model's own (``X`` None or a raw data frame)."""
    inputs = model.model_inputs(X, y, groups)
    if inputs.y is None:
        raise ValueError("This plot needs the response: pass y (or a data frame with the response column).")
    return inputs.X, inputs.y, inputs.groups


def observed_vs_fitted(model, X=None, y=None, groups=None, *, x=None, n_groups=12, ncols=4, random_state=0):
    """Facets per group: observed ``y``, the conditional fit and the population fit.

    Each panel is titled with the grouping factor and the level (``user_id 34``).

    Parameters
    ----------
    model : fitted mixed model
    X, y, groups
        The data (usually the training data); a formula-fitted model uses its
        own when they are None.
    x : str, default=None
        Column of X on the horizontal axis (X's first column when None).
    n_groups : int, default=12
        Number of groups shown (chosen at random with ``random_state``).
    ncols : int, default=4
        Panels per row.
    random_state : int, default=0
        Seed of the choice of groups.

    Returns
    -------
    matplotlib Figure

    See Also
    --------
    trajectories : The raw data of every group.
    sklearn_glmm.marginal_predictions : Population-level predictions with standard errors.

    Examples
    --------
    >>> from sklearn_glmm import glmer
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> from sklearn_glmm.plot import observed_vs_fitted
    >>> model = glmer("logins ~ day_centered + (1 | user_id)", load_app_engagement())
    >>> fig = observed_vs_fitted(model, n_groups=4)    # a formula model plots its own data
    >>> [ax.get_title() for ax in fig.axes][:2]
    ['user_id 14', 'user_id 26']
    """
    plt = _pyplot()
    factor = _mixed(model)
    X, y, groups = _data(model, X, y, groups)
    facets = groups
    if isinstance(groups, pd.DataFrame):
        if factor not in groups.columns:
            raise ValueError(f"observed_vs_fitted facets by {factor!r}, which is not a column of groups.")
        facets = groups[factor]
    Xf = feature_frame(model, X)
    if Xf.shape[1] == 0:
        raise ValueError("X has no column to put on the horizontal axis.")
    x = Xf.columns[0] if x is None else x
    if x not in Xf.columns:
        raise ValueError(f"x={x!r} is not a column of X ({list(Xf.columns)}).")
    name = facets.name if isinstance(facets, pd.Series) and facets.name is not None else factor
    g = pd.Series(np.asarray(facets).ravel())
    yv = np.asarray(y, dtype=float)
    conditional = model.predict(X, groups=groups)
    population = model.predict(X)
    labels = pd.unique(g)
    if n_groups < len(labels):
        labels = np.random.default_rng(random_state).choice(labels, size=n_groups, replace=False)
    nrows = int(np.ceil(len(labels) / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.0 * ncols, 2.4 * nrows), sharex=True, sharey=True, squeeze=False
    )
    xv = Xf[x].to_numpy()
    for ax, label in zip(axes.flat, labels):
        rows = (g == label).to_numpy()
        order = np.argsort(xv[rows], kind="stable")
        ax.scatter(xv[rows], yv[rows], s=8, color="0.3", label="observed")
        ax.plot(xv[rows][order], conditional[rows][order], color="C0", label="fitted (group)")
        ax.plot(xv[rows][order], population[rows][order], color="C3", linestyle="--", label="population")
        ax.set_title(f"{name} {label}", fontsize=9)
    for ax in list(axes.flat)[len(labels) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.supxlabel(str(x))
    fig.supylabel(getattr(y, "name", None) or "y")
    fig.suptitle("Observed vs fitted per group")
    fig.tight_layout()
    return fig


def residuals_vs_fitted(model, X=None, y=None, groups=None, *, kind="pearson", ax=None):
    """Residuals against fitted means, with a binned mean to show trends.

    Parameters
    ----------
    model : fitted mixed model
    X, y, groups
        The data (usually the training data); a formula-fitted model uses its
        own when they are None.
    kind : {"pearson", "deviance", "response"}, default="pearson"
        The residuals, as in the model's ``residuals``.
    ax : matplotlib Axes, default=None
        Axes to draw on (a new figure when None).

    Returns
    -------
    matplotlib Axes

    See Also
    --------
    sklearn_glmm.PoissonGLMMRegressor.residuals : The residuals themselves.
    sklearn_glmm.overdispersion : The Pearson chi-square check.

    Examples
    --------
    >>> from sklearn_glmm import PoissonGLMMRegressor
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> data = load_app_engagement()
    >>> X, y, g = data[["day_centered"]], data["logins"], data["user_id"]
    >>> from sklearn_glmm.plot import residuals_vs_fitted
    >>> model = PoissonGLMMRegressor("(1 | user_id)").fit(X, y, groups=g)
    >>> residuals_vs_fitted(model, X, y, g).get_ylabel()
    'pearson residual'
    """
    X, y, groups = _data(model, X, y, groups)
    ax = _axes(ax)
    fitted = model.predict(X, groups=groups)
    resid = model.residuals(X, y, groups, kind=kind)
    ax.scatter(fitted, resid, s=6, alpha=0.4, color="C0")
    ax.axhline(0.0, color="0.3", linewidth=1)
    # mean residual in fitted-value deciles: a smoother that needs no extra package
    edges = np.unique(np.quantile(fitted, np.linspace(0, 1, 11)))
    if edges.size > 2:
        which = np.clip(np.searchsorted(edges, fitted, side="right") - 1, 0, edges.size - 2)
        centres = [fitted[which == k].mean() for k in range(edges.size - 1) if np.any(which == k)]
        means = [resid[which == k].mean() for k in range(edges.size - 1) if np.any(which == k)]
        ax.plot(centres, means, color="C3", marker="o", linewidth=2, label="binned mean")
        ax.legend(loc="upper right")
    ax.set_xlabel("fitted mean")
    ax.set_ylabel(f"{kind} residual")
    ax.set_title("Residuals vs fitted")
    return ax


def qq_ranef(model):
    """Normal Q-Q plot of the conditional modes, one panel per random-effect term.

    Parameters
    ----------
    model : fitted mixed model
        Its first grouping factor's modes (``ranef_``) are drawn.

    Returns
    -------
    matplotlib Figure

    See Also
    --------
    caterpillar : The modes with their intervals, sorted.

    Examples
    --------
    >>> from sklearn_glmm import PoissonGLMMRegressor
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> data = load_app_engagement()
    >>> X, y, g = data[["day_centered"]], data["logins"], data["user_id"]
    >>> from sklearn_glmm.plot import qq_ranef
    >>> model = PoissonGLMMRegressor("(1 + day_centered | user_id)").fit(X, y, groups=g)
    >>> [ax.get_title() for ax in qq_ranef(model).axes]
    ['Q-Q: (Intercept)', 'Q-Q: day_centered']
    """
    plt = _pyplot()
    factor = _mixed(model)
    modes = model.ranef_[factor]
    fig, axes = plt.subplots(1, modes.shape[1], figsize=(4.2 * modes.shape[1], 4.0), squeeze=False)
    for ax, term in zip(axes.flat, modes.columns):
        values = np.sort(modes[term].to_numpy())
        n = values.size
        theoretical = stats.norm.ppf((np.arange(1, n + 1) - 0.5) / n)
        ax.scatter(theoretical, values, s=12, color="C0")
        slope, intercept = np.std(values, ddof=1), np.mean(values)
        ax.plot(theoretical, intercept + slope * theoretical, color="C3")
        ax.set_xlabel("standard normal quantiles")
        ax.set_ylabel(f"{term} | {factor}")
        ax.set_title(f"Q-Q: {term}")
    fig.tight_layout()
    return fig


def caterpillar(model, *, level=0.95):
    """Sorted conditional modes with ``+- z * condSD`` intervals (``dotplot(ranef(m, condVar = TRUE))``).

    Parameters
    ----------
    model : fitted mixed model
        Its first grouping factor's modes (``ranef_``) and conditional SDs
        (``ranef_condsd_``) are drawn, one panel per random-effect term.
    level : float, default=0.95
        Coverage of the intervals (normal quantiles of the conditional SDs).

    Returns
    -------
    matplotlib Figure

    See Also
    --------
    qq_ranef : Whether the modes look normal.

    Examples
    --------
    >>> from sklearn_glmm import PoissonGLMMRegressor
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> data = load_app_engagement()
    >>> X, y, g = data[["day_centered"]], data["logins"], data["user_id"]
    >>> from sklearn_glmm.plot import caterpillar
    >>> model = PoissonGLMMRegressor("(1 + day_centered | user_id)").fit(X, y, groups=g)
    >>> [ax.get_title() for ax in caterpillar(model).axes]
    ['user_id: (Intercept)', 'user_id: day_centered']
    """
    from .results._intervals import check_level

    plt = _pyplot()
    level = check_level(level)
    factor = _mixed(model)
    modes = model.ranef_[factor]
    sds = model.ranef_condsd_[factor]
    z = stats.norm.ppf(0.5 + level / 2)
    n = modes.shape[0]
    # a row of 0.2 inch per level keeps 8-point labels legible; past 80 levels
    # only every k-th level is labelled so that the figure stays printable
    step = max(1, int(np.ceil(n / 80)))
    height = max(3.0, 0.2 * min(n, 80 * step) / step + 1.2)
    fig, axes = plt.subplots(1, modes.shape[1], figsize=(4.4 * modes.shape[1], height), squeeze=False)
    for ax, term in zip(axes.flat, modes.columns):
        order = np.argsort(modes[term].to_numpy(), kind="stable")
        values = modes[term].to_numpy()[order]
        err = z * sds[term].to_numpy()[order]
        pos = np.arange(n)
        ax.errorbar(values, pos, xerr=err, fmt="o", markersize=3, color="C0", ecolor="0.6", elinewidth=1)
        ax.axvline(0.0, color="C3", linewidth=1)
        ax.set_yticks(pos[::step])
        ax.set_yticklabels([str(v) for v in modes.index[order][::step]], fontsize=8)
        ax.set_ylim(-1, n)
        ax.set_ylabel(factor)
        ax.set_xlabel(f"{term} (mode +- {level:.0%} interval)")
        ax.set_title(f"{factor}: {term}")
    fig.tight_layout()
    return fig


def profile_zeta(table: pd.DataFrame):
    """The profile ``zeta`` of each parameter of ``model.confint(method="profile")``.

    ``zeta`` is the signed square root of the deviance's increase over its
    minimum; a straight line means a quadratic profile (Wald intervals would
    do). The dashed lines are the interval's ends.

    Parameters
    ----------
    table : DataFrame
        The result of ``confint(method="profile")`` (its ``attrs["profiles"]``).

    Returns
    -------
    matplotlib Figure

    See Also
    --------
    sklearn_glmm.PoissonGLMMRegressor.confint : The profile intervals.

    Examples
    --------
    >>> from sklearn_glmm import PoissonGLMMRegressor
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> data = load_app_engagement()
    >>> X, y, g = data[["day_centered"]], data["logins"], data["user_id"]
    >>> from sklearn_glmm.plot import profile_zeta
    >>> model = PoissonGLMMRegressor("(1 | user_id)").fit(X, y, groups=g)
    >>> fig = profile_zeta(model.confint("profile", X=X, y=y, groups=g))
    >>> [ax.get_xlabel() for ax in fig.axes]
    ['.sig01', '(Intercept)', 'day_centered']
    """
    plt = _pyplot()
    profiles = getattr(table, "attrs", {}).get("profiles")
    if not profiles:
        raise ValueError("table has no profiles: pass the result of confint(method='profile').")
    fig, axes = plt.subplots(1, len(profiles), figsize=(3.6 * len(profiles), 3.4), squeeze=False)
    for ax, (name, prof) in zip(axes.flat, profiles.items()):
        ax.plot(prof["value"], prof["zeta"], marker="o", markersize=3, color="C0")
        for end in table.loc[name]:
            ax.axvline(end, color="C3", linestyle="--", linewidth=1)
        ax.axhline(0.0, color="0.5", linewidth=0.8)
        ax.set_xlabel(name)
        ax.set_ylabel("zeta")
    fig.tight_layout()
    return fig
