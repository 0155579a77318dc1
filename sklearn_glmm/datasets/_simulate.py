"""Simulators with known truth, for examples, tests and benchmarks."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["make_app_engagement"]

#: true parameters of :func:`make_app_engagement`
APP_ENGAGEMENT_TRUTH = {
    "fixef": {
        "(Intercept)": 0.6,
        "day_centered": -0.004,
        "notifications": 0.08,
        "weekend": -0.25,
        "mood": 0.15,
    },
    "sd": {"(Intercept)": 0.5, "day_centered": 0.008},
    "corr": -0.3,
}


def make_app_engagement(
    n_users: int = 50,
    n_days: int = 180,
    *,
    random_state: int | np.random.Generator | None = None,
    return_truth: bool = False,
    calendar_sd: float = 0.0,
):
    """Simulate a daily app-engagement panel with a correlated random slope.

    Each user is followed for ``n_days`` days. The number of logins on day ``t``
    of user ``i`` is Poisson with::

        log(lambda_it) = 0.6 - 0.004 day_c + 0.08 notifications - 0.25 weekend
                         + 0.15 mood + b0_i + b1_i day_c

    where ``(b0_i, b1_i)`` is normal with SDs 0.5 and 0.008 and correlation
    -0.3. ``notifications`` (push messages that day) is Poisson(2), ``weekend``
    marks Saturdays and Sundays (each user starts on a random weekday), and
    ``mood`` is a standardised daily self-report following an AR(1) process
    (autocorrelation 0.6) around a user-specific level.

    With ``calendar_sd > 0`` users enrol on different calendar days (uniform
    over the first 60) and every calendar day has its own effect, normal with
    SD ``calendar_sd``, shared by all users active that day (a push campaign,
    an outage): a factor crossed with users, ``(1 | calendar_day)``.

    Parameters
    ----------
    n_users : int, default=50
        Number of users (>= 1).
    n_days : int, default=180
        Days per user (>= 1).
    random_state : int, Generator or None, default=None
        Seed for reproducible panels.
    return_truth : bool, default=False
        Also return the true parameters and random effects.
    calendar_sd : float, default=0.0
        SD of the calendar-day effects; 0 (the default) leaves them out and
        the panel is exactly what earlier versions produced.

    Returns
    -------
    data : pandas.DataFrame of shape (n_users * n_days, 7)
        ``user_id`` (str), ``day``, ``day_centered``, ``notifications``,
        ``weekend``, ``mood``, ``logins``; with ``calendar_sd > 0`` also
        ``calendar_day`` (int).
    truth : dict
        Only when ``return_truth``: ``fixef``, ``sd``, ``corr`` and ``ranef``
        (a DataFrame of the users' true random effects); with
        ``calendar_sd > 0`` also ``calendar_sd`` and ``calendar_effects`` (a
        Series by calendar day).

    See Also
    --------
    load_app_engagement : The bundled 50 users x 30 days (the case study's data).

    Examples
    --------
    >>> from sklearn_glmm.datasets import make_app_engagement
    >>> make_app_engagement(n_users=10, n_days=20, random_state=0).shape
    (200, 7)
    """
    if int(n_users) < 1 or int(n_days) < 1:
        raise ValueError(f"n_users and n_days must be >= 1; got {n_users} and {n_days}.")
    if not np.isfinite(calendar_sd) or calendar_sd < 0:
        raise ValueError(f"calendar_sd must be a finite number >= 0; got {calendar_sd!r}.")
    rng = np.random.default_rng(random_state)
    truth = APP_ENGAGEMENT_TRUTH
    n = n_users * n_days
    user = np.repeat(np.arange(n_users), n_days)
    day = np.tile(np.arange(1, n_days + 1), n_users)
    day_c = day - (n_days + 1) / 2.0
    start = rng.integers(0, 7, size=n_users)
    weekend = (((day - 1 + start[user]) % 7) >= 5).astype(float)
    notifications = rng.poisson(2.0, size=n).astype(float)
    # AR(1) mood around a user-specific level, standardised to unit variance
    level = rng.normal(0.0, 0.5, size=n_users)
    innov = rng.normal(0.0, 1.0, size=(n_users, n_days))
    ar = np.empty_like(innov)
    ar[:, 0] = innov[:, 0]
    for t in range(1, n_days):
        ar[:, t] = 0.6 * ar[:, t - 1] + np.sqrt(1 - 0.36) * innov[:, t]
    mood = (level[:, None] + ar).ravel() / np.sqrt(1.25)

    sd0, sd1 = truth["sd"]["(Intercept)"], truth["sd"]["day_centered"]
    cov = np.array([[sd0**2, truth["corr"] * sd0 * sd1], [truth["corr"] * sd0 * sd1, sd1**2]])
    b = rng.multivariate_normal(np.zeros(2), cov, size=n_users)
    f = truth["fixef"]
    eta = (
        f["(Intercept)"]
        + f["day_centered"] * day_c
        + f["notifications"] * notifications
        + f["weekend"] * weekend
        + f["mood"] * mood
        + b[user, 0]
        + b[user, 1] * day_c
    )
    if calendar_sd > 0:
        # drawn only here, so that calendar_sd=0 leaves the random stream unchanged
        enrol = rng.integers(0, 60, size=n_users)
        calendar_day = enrol[user] + day
        calendar_effects = rng.normal(0.0, calendar_sd, size=int(calendar_day.max()) + 1)
        eta = eta + calendar_effects[calendar_day]
    logins = rng.poisson(np.exp(eta))
    width = len(str(n_users))
    labels = np.array([f"u{i + 1:0{width}d}" for i in range(n_users)])
    data = pd.DataFrame(
        {
            "user_id": labels[user],
            "day": day,
            "day_centered": day_c,
            "notifications": notifications,
            "weekend": weekend,
            "mood": mood,
            "logins": logins,
        }
    )
    if calendar_sd > 0:
        data["calendar_day"] = calendar_day
    if not return_truth:
        return data
    ranef = pd.DataFrame(b, index=pd.Index(labels, name="user_id"), columns=["(Intercept)", "day_centered"])
    out = {"fixef": dict(f), "sd": dict(truth["sd"]), "corr": truth["corr"], "ranef": ranef}
    if calendar_sd > 0:
        seen = np.unique(calendar_day)
        out["calendar_sd"] = float(calendar_sd)
        out["calendar_effects"] = pd.Series(calendar_effects[seen], index=pd.Index(seen, name="calendar_day"))
    return data, out
