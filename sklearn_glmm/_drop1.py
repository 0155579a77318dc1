"""Likelihood-ratio tests of single fixed terms, as R's ``drop1(m, test = "Chisq")``.

Each term of the fixed part is dropped in turn and the model refitted to the
same rows; the table compares each reduced model with the full one:
``LRT = 2 (logLik_full - logLik_reduced)`` on ``npar`` (the number of
coefficients dropped) degrees of freedom.

A term is a column of X for models fitted with the estimator API (``terms``
groups several columns, e.g. the dummies of one factor), and a term of the
formula for formula-fitted models: a factor such as ``livch`` is dropped as a
whole, and, as R's ``drop.scope``, a term is not dropped while a higher-order
term contains it (``a`` and ``b`` stay while ``a:b`` is in the model). The
random effects stay as they are: a dropped covariate that has a random slope
keeps it (``fixed_effects`` leaves the column out of the fixed part only), as
``drop1`` of a ``glmer`` fit does.

Models fitted by REML (``GaussianLMMRegressor(reml=True)``) are compared after
refitting the full and the reduced models by maximum likelihood, as lme4's
``anova`` does (REML likelihoods of different fixed parts are not
comparable); the table's heading says so.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from ._zero_inflated import ZeroInflatedPoissonGLMMRegressor
from .results._tables import TestTable

__all__ = ["drop1"]

DROP1_COLUMNS = ["npar", "AIC", "LRT", "Pr(Chi)"]


def _n_params(model) -> float:
    """The model's number of parameters, from its AIC."""
    return (model.aic_ - model.deviance_) / 2.0


def _candidate_terms(model, scope) -> dict[str, list[str]]:
    """Droppable terms -> their columns of X."""
    fixed_effects = model.get_params().get("fixed_effects")
    spec = getattr(model, "formula_", None)
    if spec is not None and isinstance(getattr(spec, "terms", None), dict):
        current = set(fixed_effects) if fixed_effects is not None else set(spec.columns)
        terms = {t: list(cols) for t, cols in spec.terms.items() if set(cols) & current}
        factors = {t: set(spec.term_factors.get(t, (t,))) for t in terms}
        # R's drop.scope: a term contained in a higher-order term stays
        droppable = {
            t: c for t, c in terms.items() if not any(factors[t] < factors[o] for o in terms if o != t)
        }
    else:
        names = [str(n) for n in model.fixef_.index if n != "(Intercept)"]
        droppable = {name: [name] for name in names}
    if scope is None:
        return droppable
    if isinstance(scope, dict):
        known = set(model.fixef_.index)
        out = {}
        for term, columns in scope.items():
            columns = [columns] if isinstance(columns, str) else list(columns)
            unknown = [c for c in columns if c not in known]
            if unknown:
                raise ValueError(
                    f"scope term {term!r} names column(s) {unknown} that are not fixed effects of the model."
                )
            out[str(term)] = columns
        return out
    scope = [scope] if isinstance(scope, str) else list(scope)
    unknown = [t for t in scope if t not in droppable]
    if unknown:
        raise ValueError(
            f"scope names term(s) {unknown} that cannot be dropped; droppable terms: {list(droppable)}."
        )
    return {t: droppable[t] for t in scope}


def drop1(model, X=None, y=None, groups=None, *, sample_weight=None, offset=None, scope=None) -> TestTable:
    """Drop each fixed term in turn and test it by likelihood ratio, as R's ``drop1(m, test = "Chisq")``.

    Parameters
    ----------
    model : fitted GLMM estimator
        Not the zero-inflated one.
    X, y, groups : default=None
        The data of the fit (the same rows). A formula-fitted model uses its
        own data frame when they are None, or takes a raw data frame as ``X``.
    sample_weight, offset : array-like of shape (n_samples,), default=None
        As given to ``fit``.
    scope : list of str or dict, default=None
        The terms to test (a subset of the droppable ones), or, for any
        model, a dict ``{term: [columns]}`` of columns to drop together (e.g.
        the one-hot columns of a factor). All droppable terms when None.

    Returns
    -------
    TestTable
        A DataFrame with rows ``"<none>"`` then one per term and columns
        ``npar`` (coefficients dropped), ``AIC``, ``LRT`` and ``Pr(Chi)``; it
        prints as R's table (heading in ``attrs["heading"]``).

    Raises
    ------
    ValueError
        If the data do not have the fit's number of observations, or the
        model cannot be refitted with terms left out.

    See Also
    --------
    compare_models : Likelihood-ratio tests between any nested fits (R's ``anova``).
    update : Refit a formula model without a term (R's ``update(m, . ~ . - x)``).

    Examples
    --------
    >>> from sklearn_glmm import drop1, glmer
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> model = glmer("logins ~ day_centered + (1 | user_id)", load_app_engagement())
    >>> table = drop1(model)
    >>> print(table)
    Single term deletions
    <BLANKLINE>
    Model:
    logins ~ day_centered + (1 | user_id)
    <BLANKLINE>
                 npar     AIC     LRT    Pr(Chi)
    <none>             5290.3
    day_centered    1  5309.6  21.326  3.874e-06  ***
    ---
    Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1
    """
    check_is_fitted(model, "fixef_")
    if isinstance(model, ZeroInflatedPoissonGLMMRegressor):
        # a model this function does not cover, not an argument of the wrong type
        raise ValueError(  # noqa: TRY004
            f"drop1 cannot leave terms out of a {type(model).__name__}; refit the reduced models by hand."
        )
    inputs = model.model_inputs(X, y, groups, sample_weight, offset)
    if inputs.y is None:
        raise ValueError("drop1 refits the model: pass X, y and groups (the data of the fit).")
    w = None if inputs.sample_weight is None else np.asarray(inputs.sample_weight, dtype=float)
    n_used = int(np.sum(w > 0)) if w is not None else len(inputs.y)
    if n_used != model.n_obs_:
        raise ValueError(
            f"The data have {n_used} observations but the model was fitted to {model.n_obs_}; "
            "drop1 compares fits to the same rows: pass the data of the fit."
        )
    terms = _candidate_terms(model, scope)
    kwargs = {
        k: v for k, v in (("sample_weight", inputs.sample_weight), ("offset", inputs.offset)) if v is not None
    }
    refit_ml = bool(model.get_params().get("reml", False))
    full = model
    if refit_ml:
        full = clone(model).set_params(reml=False).fit(inputs.X, inputs.y, groups=inputs.groups, **kwargs)
    names = getattr(model, "feature_names_in_", None)
    columns = [str(c) for c in names] if names is not None else [f"x{j}" for j in range(model.n_features_in_)]
    current = model.get_params()["fixed_effects"]
    current = list(current) if current is not None else columns
    rows = [[np.nan, full.aic_, np.nan, np.nan]]
    for dropped in terms.values():
        reduced = clone(full).set_params(fixed_effects=[c for c in current if c not in set(dropped)])
        reduced.fit(inputs.X, inputs.y, groups=inputs.groups, **kwargs)
        npar = _n_params(full) - _n_params(reduced)
        lrt = 2.0 * (full.loglik_ - reduced.loglik_)
        rows.append([npar, reduced.aic_, lrt, float(stats.chi2.sf(lrt, npar)) if npar > 0 else np.nan])
    table = TestTable(rows, index=["<none>", *terms], columns=DROP1_COLUMNS)
    spec = getattr(model, "formula_", None)
    formula = str(spec) if spec is not None else model.summary().formula
    heading = f"Single term deletions\n\nModel:\n{formula}"
    if refit_ml:
        heading += "\nModels refitted by ML (instead of REML)"
    table.attrs["heading"] = heading
    return table
