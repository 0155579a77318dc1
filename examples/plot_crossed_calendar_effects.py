"""
================================
Users crossed with calendar days
================================

A push campaign hits everyone on the same day.

Logins of one user are correlated (a user effect), and so are logins of
*different* users on the same calendar day (a campaign, an outage, a holiday).
Users enrol on different days, so the two factors are crossed. We simulate a
panel with a calendar-day effect of SD 0.3, fit the user-only model and the
crossed model ``(1 + day_centered | user_id) + (1 | calendar_day)``, test the
calendar component with a likelihood-ratio test, and check that the crossed
fit recovers the true SD and the days' effects.

Run: ``python examples/plot_crossed_calendar_effects.py``
"""

import numpy as np

from sklearn_glmm import PoissonGLMMRegressor, compare_models
from sklearn_glmm.datasets import make_app_engagement

FEATURES = ["day_centered", "notifications", "weekend", "mood"]
data, truth = make_app_engagement(n_users=200, n_days=90, calendar_sd=0.3, random_state=1, return_truth=True)
X, y = data[FEATURES], data["logins"]
groups = data[["user_id", "calendar_day"]]

users_only = PoissonGLMMRegressor("(1 + day_centered | user_id)").fit(X, y, groups=data["user_id"])
crossed = PoissonGLMMRegressor("(1 + day_centered | user_id) + (1 | calendar_day)").fit(X, y, groups=groups)
print(crossed.summary())
print()
print(compare_models(users_only, crossed, names=["users only", "users x calendar days"]).to_string())

variances = crossed.varcorr_[crossed.varcorr_["var2"].isna()]
sd = variances.set_index(["group", "var1"])["sdcor"]
print(
    f"\ncalendar-day SD: estimated {sd[('calendar_day', '(Intercept)')]:.3f}, true {truth['calendar_sd']:.3f}"
)
print(
    f"user intercept SD: estimated {sd[('user_id', '(Intercept)')]:.3f}, true {truth['sd']['(Intercept)']:.3f}"
)
effects = crossed.ranef_["calendar_day"]["(Intercept)"]
true_effects = truth["calendar_effects"].reindex(effects.index)
print(f"correlation of estimated and true day effects: {np.corrcoef(effects, true_effects)[0, 1]:.3f}")
assert abs(sd[("calendar_day", "(Intercept)")] / truth["calendar_sd"] - 1) < 0.25
assert np.corrcoef(effects, true_effects)[0, 1] > 0.9
