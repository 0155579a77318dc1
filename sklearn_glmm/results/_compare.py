"""Likelihood-ratio comparison of nested fitted models, as R's ``anova(m1, m2, ...)``.

Models are sorted by their number of parameters; each row after the first is
tested against the row above it: ``Chisq = 2 (logLik_k - logLik_{k-1})`` on
``Df = npar_k - npar_{k-1}`` degrees of freedom.

When the models differ in their random effects the null hypothesis puts a
variance on the boundary of its space (``sigma^2 = 0``); the chi-square
reference is then conservative: for one added variance the correct null
distribution is the mixture ``0.5 chi2_0 + 0.5 chi2_1`` (Self and Liang, 1987),
so the p-value may be halved. The table carries this note in
``table.attrs["note"]``.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
from scipy import stats

from ._tables import TestTable

__all__ = ["compare_models", "ANOVA_COLUMNS"]

ANOVA_COLUMNS = ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]

_BOUNDARY_NOTE = (
    "Models differ in their random effects: the null hypothesis puts a variance on "
    "the boundary (0), so the chi-square p-value is conservative (for one added "
    "variance the null distribution is 0.5*chi2_0 + 0.5*chi2_1: halve the p-value)."
)


def _describe(model) -> dict:
    """What the comparison needs, from the model's public attributes."""
    from sklearn.utils.validation import check_is_fitted

    if not hasattr(model, "fit") or not hasattr(model, "get_params"):
        raise TypeError(f"compare_models takes fitted GLMM estimators; got {type(model).__name__}.")
    check_is_fitted(model, "fixef_")
    random = {}
    for factor, frame in model.ranef_.items():
        random[factor] = set(frame.columns)
    response = model.response_summary_
    return {
        # the parameters counted in AIC = deviance + 2 npar
        "npar": int(np.rint((model.aic_ - model.deviance_) / 2.0)),
        "n_obs": int(model.n_obs_),
        "family": model.family_.name,
        "response": response["name"],
        "fixed": set(model.fixef_.index),
        "random": random,
        # an order-free fingerprint of the response values
        "y_key": (response["n_obs"], response["sum"], response["sum_sq"]),
        "loglik": float(model.loglik_),
    }


def _nested(small: dict, large: dict) -> str | None:
    """Why ``small`` is not nested in ``large`` (None when it is)."""
    if not small["fixed"] <= large["fixed"]:
        return f"fixed effects {sorted(small['fixed'] - large['fixed'])} are not in the larger model"
    for factor, terms in small["random"].items():
        if factor not in large["random"]:
            return f"grouping factor {factor!r} is not in the larger model"
        if not terms <= large["random"][factor]:
            return f"random terms {sorted(terms - large['random'][factor])} | {factor} are not in the larger model"
    return None


def compare_models(*models, names=None) -> pd.DataFrame:
    """Compare nested models fitted to the same data, as R's ``anova()``.

    Parameters
    ----------
    *models : fitted GLMM estimators
        At least two, fitted to the same rows and response.
    names : list of str, default=None
        Row labels; ``"m1", "m2", ...`` in the order given.

    Returns
    -------
    TestTable
        A DataFrame with columns npar, AIC, BIC, logLik, deviance, Chisq, Df,
        Pr(>Chisq), one row per model in increasing npar; it prints as R's
        ``anova`` (p-values to 4 digits, ``< 2.2e-16``, significance stars).
        ``attrs["note"]`` has the boundary note when the random effects differ.

    Raises
    ------
    ValueError
        Fewer than two models, different numbers of observations, families,
        responses or data, or models that are not nested.

    See Also
    --------
    drop1 : Tests of every droppable fixed term of one model.
    PoissonGLMMRegressor.summary : The Wald tests of one model.

    Examples
    --------
    >>> from sklearn_glmm import PoissonGLMMRegressor, compare_models
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> data = load_app_engagement()
    >>> X, y, g = data[["day_centered"]], data["logins"], data["user_id"]
    >>> m_ri = PoissonGLMMRegressor("(1 | user_id)").fit(X, y, groups=g)
    >>> m_rs = PoissonGLMMRegressor("(day_centered | user_id)").fit(X, y, groups=g)
    >>> table = compare_models(m_ri, m_rs, names=["m_ri", "m_rs"])
    >>> table[["npar", "AIC", "Chisq", "Df"]].round(2)
          npar      AIC  Chisq   Df
    m_ri     3  5290.26    NaN  NaN
    m_rs     5  5292.07   2.19  2.0
    """
    if len(models) == 1 and isinstance(models[0], (list, tuple)):
        models = tuple(models[0])
    if len(models) < 2:
        raise ValueError(f"compare_models needs at least two fitted models; got {len(models)}.")
    if names is None:
        names = [f"m{i + 1}" for i in range(len(models))]
    names = [str(n) for n in names]
    if len(names) != len(models) or len(set(names)) != len(names):
        raise ValueError(
            f"names must give one distinct label per model; got {names} for {len(models)} models."
        )
    info = [_describe(m) for m in models]
    for key, what in (
        ("n_obs", "numbers of observations"),
        ("family", "families"),
        ("response", "responses"),
    ):
        values = {d[key] for d in info}
        if len(values) > 1:
            raise ValueError(
                f"The models were fitted with different {what} ({dict(zip(names, [d[key] for d in info]))}); "
                "a likelihood-ratio test needs the same data and family."
            )
    keys = {d["y_key"] for d in info}
    if len(keys) > 1:
        raise ValueError("The models were fitted to different response values; refit them on the same data.")
    order = sorted(range(len(models)), key=lambda i: (info[i]["npar"], i))
    for a, b in pairwise(order):
        why = _nested(info[a], info[b])
        if why is not None or info[a]["npar"] == info[b]["npar"]:
            why = why or "they have the same number of parameters"
            raise ValueError(
                f"Models {names[a]!r} and {names[b]!r} are not nested: {why}. "
                "Compare non-nested models by AIC/BIC instead."
            )
    rows = []
    for pos, i in enumerate(order):
        m, d = models[i], info[i]
        row = [d["npar"], m.aic_, m.bic_, d["loglik"], -2.0 * d["loglik"], np.nan, np.nan, np.nan]
        if pos > 0:
            prev = info[order[pos - 1]]
            chisq = max(2.0 * (d["loglik"] - prev["loglik"]), 0.0)
            df = d["npar"] - prev["npar"]
            row[5:] = [chisq, df, float(stats.chi2.sf(chisq, df))]
        rows.append(row)
    table = TestTable(rows, index=[names[i] for i in order], columns=ANOVA_COLUMNS)
    table["npar"] = table["npar"].astype(int)
    if len({frozenset((f, frozenset(t)) for f, t in d["random"].items()) for d in info}) > 1:
        table.attrs["note"] = _BOUNDARY_NOTE
    return table
