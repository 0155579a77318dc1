"""
Engagement prediction with trees and per-user random effects
============================================================

``GLMMBoostingRegressor``, not run when the documentation is built (it fits
several models on a large panel).

Daily logins depend on the covariates non-linearly -- the first notifications
of a day help and later ones hardly, a good mood lifts engagement only above a
threshold, the weekend dip deepens with tenure, users around 30 are the most
engaged -- and every user has a level of their own. A linear GLMM gets the
users right and the covariates wrong; gradient-boosted trees get the
covariates right and, without the user, treat every user as average.
``GLMMBoostingRegressor`` fits both: trees for ``F(x)`` and a random intercept
per user, by the GPBoost algorithm on the Laplace likelihood.

Two questions, on held-out data:

1. a *new* user (never seen in fit): predicted with ``new_groups="marginal"``,
   the mean over the random-effect distribution;
2. a *known* user's next days: predicted with that user's estimated effect.

Run: ``python examples/engagement_boosting.py``
"""

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.metrics import mean_poisson_deviance
from threadpoolctl import threadpool_limits

from sklearn_glmm import GLMMBoostingRegressor, PoissonGLMMRegressor
from sklearn_glmm.datasets import make_engagement_nonlinear

FEATURES = ["day", "weekday", "notifications", "mood", "age"]
data = make_engagement_nonlinear(n_users=400, n_days=30, random_state=0)
X, y, users = data[FEATURES], data["logins"], data["user_id"]

new = users.isin(users.unique()[:80]).to_numpy()  # 80 users held out
late = (data["day"] > 25).to_numpy() & ~new  # the other users' last 5 days
train = ~new & ~late


models = {
    "trees + random intercept": GLMMBoostingRegressor(
        n_estimators=100, early_stopping=False, new_groups="marginal", random_state=0
    ),
    "linear GLMM": PoissonGLMMRegressor("1", new_groups="marginal"),
    "trees without users (HGB)": HistGradientBoostingRegressor(
        loss="poisson", max_iter=100, early_stopping=False, random_state=0
    ),
}


def predict(model, rows):
    """The model's predictions for some rows; the mixed models get the rows' users."""
    if isinstance(model, HistGradientBoostingRegressor):
        with threadpool_limits(limits=1):
            return model.predict(X[rows])
    return model.predict(X[rows], groups=users[rows])


rows = []
for name, model in models.items():
    if isinstance(model, HistGradientBoostingRegressor):
        # one OpenMP thread, as the other two fits: on a busy machine HGB's
        # default (every core) can take minutes for these 8,000 rows
        with threadpool_limits(limits=1):
            model.fit(X[train], y[train])
    else:
        model.fit(X[train], y[train], groups=users[train])
    rows.append(
        {
            "model": name,
            "new users": mean_poisson_deviance(y[new], predict(model, new)),
            "known users, next days": mean_poisson_deviance(y[late], predict(model, late)),
        }
    )

print("Mean Poisson deviance on held-out rows (lower is better):")
print(pd.DataFrame(rows).set_index("model").round(4).to_string())

boosted = models["trees + random intercept"]
print(
    f"\nUser SD on the log scale: {np.sqrt(boosted.varcorr_['vcov'].iloc[0]):.3f} (simulated: 0.5); "
    f"linear GLMM: {np.sqrt(models['linear GLMM'].varcorr_['vcov'].iloc[0]):.3f}"
)
print("Feature importances (split gain):")
print(
    pd.Series(boosted.feature_importances_, index=FEATURES).sort_values(ascending=False).round(3).to_string()
)
print("Largest user effects (conditional modes):")
print(boosted.ranef_["user_id"]["(Intercept)"].sort_values().tail(3).round(3).to_string())
