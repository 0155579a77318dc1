"""``glmer(formula, data, family)`` and ``update(model, formula)``, as in R.

The formula machinery is :mod:`sklearn_glmm.design._formula`; estimators fit
from a formula through their ``from_formula``. :data:`FAMILY_REGISTRY` maps
family names to estimator classes; it is the one place to add a family to
:func:`glmer`.
"""

from __future__ import annotations

import pandas as pd

from ._classifier import BinomialGLMMClassifier
from ._regressors import (
    GammaGLMMRegressor,
    GaussianLMMRegressor,
    NegativeBinomialGLMMRegressor,
    PoissonGLMMRegressor,
)
from .design._formula import FormulaSpec, ParsedFormula, parse_formula, require_formulaic, update_formula

__all__ = [
    "FAMILY_REGISTRY",
    "FormulaSpec",
    "ParsedFormula",
    "formula_design",
    "glmer",
    "parse_formula",
    "require_formulaic",
    "update",
    "update_formula",
]

#: family name -> estimator class
FAMILY_REGISTRY: dict[str, type] = {
    "poisson": PoissonGLMMRegressor,
    "binomial": BinomialGLMMClassifier,
    "negative_binomial": NegativeBinomialGLMMRegressor,
    "nbinom2": NegativeBinomialGLMMRegressor,
    "gamma": GammaGLMMRegressor,
    "gaussian": GaussianLMMRegressor,
}


def formula_design(model, data: pd.DataFrame):
    """``(X, y, groups, offset)`` of a formula-fitted model for ``data`` (e.g. new rows).

    ``y`` is None when the response column is absent, ``groups`` when the
    grouping columns are, ``offset`` when the formula has no ``offset()``
    term. Rows with missing values are left out. The estimator's methods take
    ``data`` directly (``model.predict(data)``); this is for code that wants
    the arrays.

    Examples
    --------
    >>> from sklearn_glmm import glmer
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> data = load_app_engagement()
    >>> model = glmer("logins ~ day_centered + (1 | user_id)", data)
    >>> X, y, groups, offset = formula_design(model, data.head(3))
    >>> list(X.columns), y.name, groups.name, offset
    (['day_centered'], 'logins', 'user_id', None)
    """
    spec = getattr(model, "formula_", None)
    if spec is None:
        raise ValueError("This model was not fitted from a formula (use glmer or from_formula).")
    frame = spec.transform(data)
    return frame.X, frame.y, frame.groups, frame.offset


def update(model, formula: str | None = None, data: pd.DataFrame | None = None, **params):
    """Refit a formula-fitted model with a changed formula, data or parameters, as R's ``update``.

    Parameters
    ----------
    model : fitted estimator from :func:`glmer` or ``from_formula``
    formula : str, default=None
        The new formula; ``.`` stands for the old side (``". ~ . - weekend"``,
        ``". ~ . + (1 | calendar_day)"``). The old formula when None.
    data : DataFrame, default=None
        The data of the refit; the model's own data frame when None.
    **params
        Estimator parameters to change (``new_groups="marginal"``,
        ``reml=False``, ...) and ``weights``/``offset`` (arrays or column
        names; the fit's when not given).

    Returns
    -------
    fitted estimator
        Of the same class; the model itself is left unchanged.

    See Also
    --------
    glmer : The first fit from a formula.
    drop1 : Test every droppable fixed term at once.
    compare_models : The likelihood-ratio test of the two fits.

    Examples
    --------
    >>> from sklearn_glmm import glmer
    >>> from sklearn_glmm._formula import update
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> m = glmer("logins ~ day_centered + (1 | user_id)", load_app_engagement())
    >>> m0 = update(m, ". ~ . - day_centered")
    >>> str(m0.formula_), list(m0.fixef_.index)
    ('logins ~ 1 + (1 | user_id)', ['(Intercept)'])
    """
    spec = getattr(model, "formula_", None)
    if spec is None:
        raise TypeError(
            "update needs a model fitted from a formula (glmer, from_formula); refit others with "
            "sklearn.base.clone(model).set_params(...).fit(X, y, groups=...)."
        )
    new_formula = spec.formula if formula is None else update_formula(spec.formula, formula)
    stored = model.formula_data()
    if data is None:
        if stored is None:
            raise ValueError("This model has no data frame attached (it was pickled or copied); pass data=.")
        data = stored[0]
    weights = params.pop("weights", spec.weights_column or (stored[1] if stored is not None else None))
    offset = params.pop("offset", spec.offset_column or (stored[2] if stored is not None else None))
    settings = {k: v for k, v in model.get_params().items() if k not in ("random_effects", "fixed_effects")}
    settings.update(params)
    return type(model).from_formula(new_formula, data, weights=weights, offset=offset, **settings)


def glmer(formula: str, data: pd.DataFrame, family: str = "poisson", **kwargs):
    """Fit a GLMM from an lme4 formula, as R's ``glmer(formula, data, family)``.

    Parameters
    ----------
    formula : str
        lme4 syntax, e.g. ``"logins ~ day_centered + weekend + (day_centered | user_id)"``.
    data : DataFrame
    family : str, default="poisson"
        A key of :data:`FAMILY_REGISTRY`.
    **kwargs
        Estimator parameters (``se_method``, ``max_iter``, ``tol``,
        ``verbose``) and ``weights`` / ``offset`` (arrays or column names).

    Returns
    -------
    fitted estimator
        With ``formula_`` set (a :class:`FormulaSpec`): ``predict``,
        ``score``, ``residuals`` and ``simulate`` take a raw data frame, or no
        data for the rows of the fit (``m.fitted()``).

    Raises
    ------
    ImportError
        Without the optional package formulaic.

    See Also
    --------
    PoissonGLMMRegressor.from_formula : The same on a chosen estimator class.
    update : Refit with a changed formula.

    Examples
    --------
    >>> from sklearn_glmm import glmer
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> data = load_app_engagement()
    >>> model = glmer("logins ~ day_centered + (1 | user_id)", data, family="poisson")
    >>> model.fixef_.round(4)
    (Intercept)     0.7379
    day_centered   -0.0091
    Name: fixef, dtype: float64
    >>> model.predict(data.head(2)).round(4)  # R's predict(model, newdata)
    array([3.631 , 3.5981])
    """
    require_formulaic()
    if not isinstance(family, str) or family.lower() not in FAMILY_REGISTRY:
        raise ValueError(f"family must be one of {sorted(FAMILY_REGISTRY)}; got {family!r}.")
    return FAMILY_REGISTRY[family.lower()].from_formula(formula, data, **kwargs)
