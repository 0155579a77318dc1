"""
============================================================
Choosing the random effects with GroupKFold and GridSearchCV
============================================================

``random_effects`` is a constructor parameter, so scikit-learn's searches can
vary it. With metadata routing switched on, ``groups`` goes both to the
splitter (``GroupKFold``: every test fold holds users the model never saw) and
to the estimator's ``fit``. The score is D^2 (the fraction of deviance
explained) on the held-out users: it measures prediction for *new* users,
whose random effects are unknown, so it says how well the fixed part
generalises, not how much the random effects explain.

Run: ``python examples/plot_grid_search_random_effects.py``
"""

# %%
# A simulated panel: 80 users x 45 days, four predictors.
import matplotlib.pyplot as plt
import pandas as pd
import sklearn
from sklearn.model_selection import GridSearchCV, GroupKFold

from sklearn_glmm import PoissonGLMMRegressor
from sklearn_glmm.datasets import make_app_engagement

FEATURES = ["day_centered", "notifications", "weekend", "mood"]
data = make_app_engagement(n_users=80, n_days=45, random_state=0)
X, y, users = data[FEATURES], data["logins"], data["user_id"]

# %%
# The grid: a random intercept, or an intercept and a slope on the trend per
# user. ``new_groups`` is searched too: ``"population"`` predicts a new user
# with random effects 0 (the median user, for a log link), ``"marginal"`` with
# the mean over the random-effect distribution.
grid = {
    "random_effects": ["(1 | user_id)", "(1 + day_centered | user_id)"],
    "new_groups": ["population", "marginal"],
}
with sklearn.config_context(enable_metadata_routing=True):
    search = GridSearchCV(PoissonGLMMRegressor(), grid, cv=GroupKFold(n_splits=5)).fit(X, y, groups=users)

results = pd.DataFrame(search.cv_results_)[
    ["param_random_effects", "param_new_groups", "mean_test_score", "std_test_score"]
]
print(results.round(4).to_string(index=False))
print("best:", search.best_params_)

# %%
# The held-out D^2 of each candidate, by how new users are predicted.
table = results.pivot(index="param_random_effects", columns="param_new_groups", values="mean_test_score")
ax = table.plot.barh(figsize=(7, 3.2))
ax.set_xlabel("GroupKFold D^2 (held-out users)")
ax.set_ylabel("")
ax.legend(title="new_groups")
ax.set_xlim(table.to_numpy().min() - 0.01, table.to_numpy().max() + 0.01)
plt.tight_layout()

# %%
# The refitted best model (on all users) reports as lme4 would.
print(search.best_estimator_.summary())
