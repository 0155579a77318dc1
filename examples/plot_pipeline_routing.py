"""
============================================================
A Pipeline with preprocessing, the groups routed to the GLMM
============================================================

Two ways to get ``groups`` to the estimator inside a Pipeline:

1. metadata routing: ``sklearn.set_config(enable_metadata_routing=True)``; the
   GLMM estimators request ``groups`` by default, so ``pipe.fit(X, y, groups=g)``
   and ``cross_validate(pipe, X, y, params={"groups": g}, cv=GroupKFold())``
   just work;
2. without routing: ``group_column="user_id"`` takes the factor from X itself
   (the preprocessing passes the column through).

Run: ``python examples/plot_pipeline_routing.py``
"""

import numpy as np
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GroupKFold, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_glmm import PoissonGLMMRegressor
from sklearn_glmm.datasets import make_app_engagement

data = make_app_engagement(n_users=80, n_days=40, random_state=1)
features = ["day_centered", "notifications", "weekend", "mood"]


def preprocessing():
    # scaled columns keep their names, so the random slope can name "day_centered"
    return ColumnTransformer(
        [("scale", StandardScaler(), ["day_centered", "mood"])],
        remainder="passthrough",
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")


# 1. metadata routing
with sklearn.config_context(enable_metadata_routing=True):
    pipe = Pipeline([("prep", preprocessing()), ("glmm", PoissonGLMMRegressor("1 + day_centered"))])
    cv = cross_validate(
        pipe, data[features], data["logins"], params={"groups": data["user_id"]}, cv=GroupKFold(n_splits=4)
    )
    pipe.fit(data[features], data["logins"], groups=data["user_id"])
print("routed groups: GroupKFold D^2 per fold", np.round(cv["test_score"], 4))
print(pipe.named_steps["glmm"].varcorr_)

# 2. group_column, no routing needed
pipe2 = Pipeline(
    [("prep", preprocessing()), ("glmm", PoissonGLMMRegressor("1 + day_centered", group_column="user_id"))]
)
cv2 = cross_validate(
    pipe2, data[features + ["user_id"]], data["logins"], groups=data["user_id"], cv=GroupKFold(n_splits=4)
)
print("group_column: GroupKFold D^2 per fold", np.round(cv2["test_score"], 4))
assert np.allclose(cv["test_score"], cv2["test_score"])  # the same model either way
