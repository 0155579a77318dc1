"""A panel simulator whose covariates act non-linearly (issue 18: trees + random effects)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["engagement_nonlinear_effect", "make_engagement_nonlinear"]

#: random-intercept SD of :func:`make_engagement_nonlinear` (link scale)
NONLINEAR_USER_SD = 0.5


def engagement_nonlinear_effect(data: pd.DataFrame, n_days: int | None = None) -> np.ndarray:
    """The true fixed part ``F(x)`` (log scale) of :func:`make_engagement_nonlinear`.

    Parameters
    ----------
    data : DataFrame
        Columns ``day``, ``weekday``, ``notifications``, ``mood``, ``age``.
    n_days : int or None
        Length of the panel (the trend's scale); None takes ``data["day"].max()``.

    Returns
    -------
    ndarray of shape (n_rows,)
    """
    day = data["day"].to_numpy(dtype=float)
    n_days = float(day.max() if n_days is None else n_days)
    weekday = data["weekday"].to_numpy()
    notifications = data["notifications"].to_numpy(dtype=float)
    mood = data["mood"].to_numpy(dtype=float)
    age = data["age"].to_numpy(dtype=float)
    weekend = (weekday >= 5).astype(float)
    tenure = day / n_days
    return (
        -0.2
        # saturating: the first pushes of a day help, later ones hardly
        + 0.7 * (1.0 - np.exp(-notifications / 1.5))
        # thresholds: a good mood lifts engagement, a bad one lowers it
        + 0.4 * (mood > 0.5)
        - 0.25 * (mood < -1.0)
        # weekday x trend: the weekend dip deepens with tenure, Mondays recover
        - 0.6 * weekend * tenure
        + 0.15 * (weekday == 0)
        + 0.25 * np.sin(np.pi * tenure)
        # a user-level covariate with a peak: users around 30 are most engaged
        + 0.35 * np.exp(-(((age - 30.0) / 10.0) ** 2))
    )


def make_engagement_nonlinear(
    n_users: int = 2000,
    n_days: int = 180,
    *,
    user_sd: float = NONLINEAR_USER_SD,
    random_state: int | np.random.Generator | None = None,
    return_truth: bool = False,
):
    """Simulate a daily engagement panel with non-linear covariate effects.

    The number of logins of user ``i`` on day ``t`` is Poisson with::

        log(lambda_it) = F(x_it) + b_i,    b_i ~ N(0, user_sd^2)

    where ``F`` (:func:`engagement_nonlinear_effect`) has a saturating effect
    of ``notifications``, threshold effects of ``mood``, a weekend dip that
    deepens over the panel (a weekday x trend interaction), a seasonal trend
    and a peaked effect of the user's ``age``. A linear GLMM on these columns
    is misspecified; gradient-boosted trees with a random intercept are not.

    ``notifications`` is Poisson(2) per day, ``mood`` a standardised AR(1)
    process (autocorrelation 0.6) around a user-specific level, ``weekday``
    0-6 (0 = Monday; each user starts on a random weekday), ``age`` uniform
    on 18-65 per user.

    Parameters
    ----------
    n_users : int, default=2000
        Number of users (>= 1).
    n_days : int, default=180
        Days per user (>= 1).
    user_sd : float, default=0.5
        SD of the users' random intercepts (>= 0).
    random_state : int, Generator or None, default=None
        Seed for reproducible panels.
    return_truth : bool, default=False
        Also return the truth.

    Returns
    -------
    data : pandas.DataFrame of shape (n_users * n_days, 7)
        ``user_id`` (str), ``day``, ``weekday``, ``notifications``, ``mood``,
        ``age``, ``logins``.
    truth : dict
        Only when ``return_truth``: ``user_sd``, ``ranef`` (Series of the
        users' intercepts) and ``fixed_part`` (``F`` per row, log scale).

    See Also
    --------
    make_app_engagement : The panel with a linear fixed part.
    sklearn_glmm.GLMMBoostingRegressor : Trees for ``F`` with the random intercepts.

    Examples
    --------
    >>> from sklearn_glmm.datasets import make_engagement_nonlinear
    >>> make_engagement_nonlinear(n_users=10, n_days=20, random_state=0).shape
    (200, 7)
    """
    if int(n_users) < 1 or int(n_days) < 1:
        raise ValueError(f"n_users and n_days must be >= 1; got {n_users} and {n_days}.")
    if not np.isfinite(user_sd) or user_sd < 0:
        raise ValueError(f"user_sd must be a finite number >= 0; got {user_sd!r}.")
    rng = np.random.default_rng(random_state)
    n_users, n_days = int(n_users), int(n_days)
    n = n_users * n_days
    user = np.repeat(np.arange(n_users), n_days)
    day = np.tile(np.arange(1, n_days + 1), n_users)
    start = rng.integers(0, 7, size=n_users)
    weekday = (day - 1 + start[user]) % 7
    notifications = rng.poisson(2.0, size=n).astype(float)
    level = rng.normal(0.0, 0.5, size=n_users)
    innov = rng.normal(0.0, 1.0, size=(n_users, n_days))
    ar = np.empty_like(innov)
    ar[:, 0] = innov[:, 0]
    for t in range(1, n_days):
        ar[:, t] = 0.6 * ar[:, t - 1] + np.sqrt(1 - 0.36) * innov[:, t]
    mood = (level[:, None] + ar).ravel() / np.sqrt(1.25)
    age = rng.uniform(18.0, 65.0, size=n_users).round()
    b = rng.normal(0.0, user_sd, size=n_users)
    width = len(str(n_users))
    labels = np.array([f"u{i + 1:0{width}d}" for i in range(n_users)])
    data = pd.DataFrame(
        {
            "user_id": labels[user],
            "day": day,
            "weekday": weekday,
            "notifications": notifications,
            "mood": mood,
            "age": age[user],
        }
    )
    fixed_part = engagement_nonlinear_effect(data, n_days)
    data["logins"] = rng.poisson(np.exp(fixed_part + b[user]))
    if not return_truth:
        return data
    ranef = pd.Series(b, index=pd.Index(labels, name="user_id"), name="(Intercept)")
    return data, {"user_sd": float(user_sd), "ranef": ranef, "fixed_part": fixed_part}
