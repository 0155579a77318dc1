"""
========================================
Random slopes and their caterpillar plot
========================================

Each user gets an intercept and a trend of their own: the model
``logins ~ day_centered + (1 + day_centered | user_id)``. The conditional
modes (``ranef_``, lme4's ``ranef(m)``) with their conditional SDs
(``ranef_condsd_``) are drawn sorted, with 95 % intervals, as lme4's
``dotplot(ranef(m, condVar = TRUE))``; a normal Q-Q plot checks the
assumption ``b_i ~ N(0, Sigma)``.

Run: ``python examples/plot_random_slope_caterpillar.py``
"""

# %%
# Fit the random-slope model on the bundled data (50 users x 30 days).
from sklearn_glmm import PoissonGLMMRegressor, plot
from sklearn_glmm.datasets import load_app_engagement

data = load_app_engagement()
model = PoissonGLMMRegressor("(1 + day_centered | user_id)")
model.fit(data[["day_centered"]], data["logins"], groups=data["user_id"])
print(model.varcorr_.round(4))

# %%
# The users' intercepts and slopes, sorted, with 95 % intervals from the
# conditional SDs. Intervals that cross 0 are users indistinguishable from the
# average user in that term.
fig = plot.caterpillar(model)

# %%
# The modes against normal quantiles: roughly a straight line.
fig = plot.qq_ranef(model)

# %%
# Each user's coefficients (fixed + random, lme4's ``coef(m)``): the users
# with the steepest decline.
coefficients = model.group_coef_["user_id"]
print(coefficients.sort_values("day_centered").head().round(4))
