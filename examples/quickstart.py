"""Quick start: a Poisson GLMM of daily app logins, as lme4's glmer.

Fits ``logins ~ day_centered + (1 | user_id)`` and the random-slope model on the
built-in data, prints the lme4-style summary, compares the two models, and
predicts for a known and a new user.

Run: ``python examples/quickstart.py``
"""

import pandas as pd

from sklearn_glmm import PoissonGLMMRegressor
from sklearn_glmm.datasets import load_app_engagement

data = load_app_engagement()
X, y, users = data[["day_centered"]], data["logins"], data["user_id"]

intercept = PoissonGLMMRegressor(random_effects="(1 | user_id)").fit(X, y, groups=users)
slope = PoissonGLMMRegressor(random_effects="(1 + day_centered | user_id)").fit(X, y, groups=users)
print(intercept.summary())

print("\nAIC: random intercept {:.1f}, random slope {:.1f}".format(intercept.aic_, slope.aic_))
print(slope.varcorr_)

new_days = pd.DataFrame({"day_centered": [0.0, 0.0]})
print("\nExpected logins at mid-study, user '2' vs a new user:",
      intercept.predict(new_days, groups=["2", "someone-new"]).round(3))
