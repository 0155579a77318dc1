"""
==============================================================
Out-of-user validation: GroupKFold, GridSearchCV and new users
==============================================================

Every test fold of ``GroupKFold`` holds users the model never saw, so the score
measures how well the model predicts a *new* user. For them the random effect
is unknown: ``new_groups="population"`` sets it to 0 (lme4's default), which for
a log link predicts the median user, not the mean one, and so under-predicts;
``new_groups="marginal"`` averages over the random-effect distribution,
``exp(eta + z' Sigma z / 2)``. We compare both with scikit-learn's
``PoissonRegressor`` that ignores users, on held-out Poisson deviance and on
calibration by decile of the prediction (observed / predicted mean logins).

Run: ``python examples/plot_engagement_group_cv.py``
"""

import numpy as np
import pandas as pd
import sklearn
from sklearn.linear_model import PoissonRegressor
from sklearn.metrics import mean_poisson_deviance
from sklearn.model_selection import GridSearchCV, GroupKFold

from sklearn_glmm import PoissonGLMMRegressor
from sklearn_glmm.datasets import make_app_engagement

FEATURES = ["day_centered", "notifications", "weekend", "mood"]
data = make_app_engagement(n_users=150, n_days=60, random_state=0)
X, y, users = data[FEATURES], data["logins"].to_numpy(), data["user_id"]

# 1. Which random-effect structure? A grid search over users, groups routed to
#    both the splitter and the estimator (metadata routing).
with sklearn.config_context(enable_metadata_routing=True):
    search = GridSearchCV(
        PoissonGLMMRegressor(),
        {"random_effects": ["(1 | user_id)", "(1 + day_centered | user_id)"]},
        cv=GroupKFold(n_splits=5),
    ).fit(X, y, groups=users)
print("GroupKFold D^2 by random-effect structure (new users, population predictions):")
for spec, score in zip(search.cv_results_["param_random_effects"], search.cv_results_["mean_test_score"]):
    print(f"  {spec:32s} {score:.4f}")
print("best:", search.best_params_["random_effects"])


def calibration(y_true, y_pred, bins=10):
    """Observed / predicted mean count in each decile of the prediction."""
    deciles = pd.qcut(y_pred, bins, labels=False, duplicates="drop")
    frame = pd.DataFrame({"y": y_true, "pred": y_pred, "decile": deciles}).groupby("decile")
    return (frame["y"].mean() / frame["pred"].mean()).to_numpy()


# 2. Held-out predictions for new users: plain GLM vs GLMM population vs marginal.
models = {
    "PoissonRegressor (ignores users)": lambda: PoissonRegressor(alpha=0.0, max_iter=1000),
    "GLMM, new_groups='population'": lambda: PoissonGLMMRegressor(search.best_params_["random_effects"]),
    "GLMM, new_groups='marginal'": lambda: PoissonGLMMRegressor(
        search.best_params_["random_effects"], new_groups="marginal"
    ),
}
predictions = {name: np.empty(len(y)) for name in models}
for train, test in GroupKFold(n_splits=5).split(X, y, users):
    for name, make in models.items():
        model = make()
        if isinstance(model, PoissonGLMMRegressor):
            model.fit(X.iloc[train], y[train], groups=users.iloc[train])
            predictions[name][test] = model.predict(X.iloc[test], groups=users.iloc[test])
        else:
            model.fit(X.iloc[train], y[train])
            predictions[name][test] = model.predict(X.iloc[test])

rows = []
for name, pred in predictions.items():
    ratios = calibration(y, pred)
    rows.append(
        {
            "model": name,
            "held-out mean Poisson deviance": mean_poisson_deviance(y, pred),
            "observed / predicted (all)": y.mean() / pred.mean(),
            "worst decile |log(obs/pred)|": float(np.max(np.abs(np.log(ratios)))),
        }
    )
table = pd.DataFrame(rows).set_index("model")
print("\nNew users (5-fold GroupKFold):")
print(table.to_string(float_format=lambda v: f"{v:.4f}"))
