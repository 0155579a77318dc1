"""
==========================
The lme4 formula interface
==========================

With the ``formula`` extra (formulaic), models are written as in R:
``glmer("logins ~ day_centered + (1 | user_id)", data, family="poisson")``.
A formula-fitted model takes raw data frames (R's ``newdata``) and, without
data, uses its own (``fitted()``, ``residuals()``); ``update`` changes the
formula as R's ``update``, ``drop1`` tests each fixed term, and
``marginal_predictions`` gives emmeans-style predictions with standard errors.

Run: ``python examples/plot_formula_interface.py``
"""

# %%
# Fit from a formula on a simulated panel of 80 users x 60 days.
import matplotlib.pyplot as plt
import pandas as pd

from sklearn_glmm import compare_models, drop1, glmer, marginal_predictions, update
from sklearn_glmm.datasets import make_app_engagement

data = make_app_engagement(n_users=80, n_days=60, random_state=3)
model = glmer("logins ~ day_centered + notifications + weekend + (1 | user_id)", data, family="poisson")
print(model.summary())

# %%
# Likelihood-ratio tests of every fixed term (R's ``drop1(m, test = "Chisq")``),
# and of a random slope added with ``update``.
print(drop1(model))
slope = update(model, ". ~ . - (1 | user_id) + (1 + day_centered | user_id)")
print(compare_models(model, slope, names=["intercept", "slope"]))

# %%
# Population-level predictions for new rows of a raw data frame:
# ``marginal_predictions`` gives each with a 95 % interval (the bands), for the
# median user (random effect 0) or, with ``integrate=True``, averaged over the
# random-effect distribution (for a log link, higher by ``exp(sigma^2 / 2)``).
grid = pd.DataFrame({"day_centered": range(-29, 31), "notifications": 1.0, "weekend": 0})
median_user = marginal_predictions(model, grid)
average_user = marginal_predictions(model, grid, integrate=True)

fig, ax = plt.subplots(figsize=(6.4, 3.8))
for frame, label, style in (
    (median_user, "median user (random effect 0)", "-"),
    (average_user, "average over users", "--"),
):
    (line,) = ax.plot(grid["day_centered"], frame["estimate"], linestyle=style, label=label)
    ax.fill_between(
        grid["day_centered"], frame["conf_low"], frame["conf_high"], color=line.get_color(), alpha=0.2
    )
ax.set_xlabel("day_centered")
ax.set_ylabel("expected logins (1 notification, weekday)")
ax.legend()
plt.tight_layout()
print(median_user[["day_centered", "estimate", "std_error", "conf_low", "conf_high"]].head(3).round(3))
