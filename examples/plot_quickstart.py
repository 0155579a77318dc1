"""
===========
Quick start
===========

A Poisson GLMM of daily app logins, as lme4's ``glmer``: fit
``logins ~ day_centered + (1 | user_id)`` and the random-slope model on the
bundled data (50 users x 30 days), print the lme4-style summary, compare the
two models and predict for a known and a new user.

Run: ``python examples/plot_quickstart.py``
"""

# %%
# Fit and summary
# ---------------
# ``groups`` names the user of every row; the random-effects string is lme4's
# bar syntax over the columns of ``X``.
import pandas as pd

from sklearn_glmm import PoissonGLMMRegressor, compare_models
from sklearn_glmm.datasets import load_app_engagement

data = load_app_engagement()
X, y, users = data[["day_centered"]], data["logins"], data["user_id"]

intercept = PoissonGLMMRegressor(random_effects="(1 | user_id)").fit(X, y, groups=users)
print(intercept.summary())

# %%
# A random slope per user
# -----------------------
# Do users differ in their trend? The likelihood-ratio test (R's ``anova``)
# compares the nested fits.
slope = PoissonGLMMRegressor(random_effects="(1 + day_centered | user_id)").fit(X, y, groups=users)
print(f"AIC: random intercept {intercept.aic_:.1f}, random slope {slope.aic_:.1f}")
print(slope.varcorr_)
print(compare_models(intercept, slope, names=["intercept", "slope"]))

# %%
# Predictions
# -----------
# A user seen in fit gets its own random effect; a new user gets the
# population-level prediction (random effect 0, lme4's ``allow.new.levels``).
new_days = pd.DataFrame({"day_centered": [0.0, 0.0]})
print(
    "Expected logins at mid-study, user '2' vs a new user:",
    intercept.predict(new_days, groups=["2", "someone-new"]).round(3),
)
