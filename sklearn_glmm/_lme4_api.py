"""What an lme4 user reaches for after fitting, on every estimator.

:class:`_Lme4API` is a mixin of :class:`~sklearn_glmm._base._BaseGLMM`. It adds

=============================== ===============================================
``predict(..., kind="link")``   the linear predictor (lme4's ``type = "link"``)
``fitted()``                    fitted means (lme4's ``fitted(m)``)
``group_coef_``                 fixed + random coefficients per level
                                (lme4's ``coef(m)``)
``n_groups_``                   levels per grouping factor (``ngrps(m)``)
``family_``                     the fitted family: name, link, variance, shape
``model_inputs()``              the inputs of ``fit`` behind some data
``formula_data()``              the data frame of a formula fit (``getData(m)``)
=============================== ===============================================

and the data hook of formula-fitted models. A model fitted from a formula
(``glmer``, ``from_formula``) carries

- ``formula_``: the formula transformation, an object with the
  :class:`FormulaTransform` interface below (built by :mod:`sklearn_glmm._formula`);
- ``_formula_data``: an in-memory reference to the data frame of the fit, as
  ``(data, weights, offset)`` with the ``weights``/``offset`` arrays of the fit
  call (None when absent or given as column names). It is never pickled
  (``__getstate__`` drops it): a fitted model keeps estimates, not rows.

Their public methods then take a raw data frame where the estimator API takes
``X`` (``m.predict(newdata)``, as R's ``predict(m, newdata)``), and no data at
all for the model's own rows (``m.fitted()``, ``m.residuals(kind="pearson")``).
A data frame with the formula's variables is read as raw data; one with exactly
the columns of the fitted design and not those variables, as a design. Arguments
given explicitly (``groups``, ``y``, ``offset``, ``sample_weight``) win over the
columns of the data frame. ``predict`` and ``fitted`` give NaN for rows of a
raw data frame with missing values (R's ``na.pass``); ``score``, ``residuals``
and ``simulate`` leave those rows out (``na.omit``).

Interface of ``formula_`` (informal)
------------------------------------
``columns``                      the names of the fixed-design columns (X of the fit)
``reads(data)``                  whether ``data`` has the variables the formula uses
``transform(data, weights, offset, *, response)``
                                 a :class:`FormulaFrame` for the rows of ``data``
                                 (``response=True`` requires the response column)

This module imports nothing from the formula interface: ``formula_`` is
duck-typed, so the estimator layer does not depend on the outer one.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from .design._formula import FormulaFrame

__all__ = ["_Lme4API", "FormulaTransform", "ModelInputs", "PREDICTION_KINDS"]

#: scales of ``predict``: the mean response or the linear predictor
PREDICTION_KINDS = ("mean", "link")


class ModelInputs(NamedTuple):
    """The arguments of ``fit`` for some data (see ``model_inputs``)."""

    X: object
    y: object
    groups: object
    sample_weight: object
    offset: object


class FormulaTransform(Protocol):
    """What ``formula_`` of a formula-fitted model offers the estimator."""

    columns: tuple[str, ...]

    def reads(self, data) -> bool: ...

    def transform(self, data, weights=None, offset=None, *, response: bool = False) -> FormulaFrame: ...


def _check_kind(kind) -> str:
    if kind not in PREDICTION_KINDS:
        raise ValueError(f"kind must be one of {list(PREDICTION_KINDS)}; got {kind!r}.")
    return kind


class _Lme4API:
    """lme4's accessors and the formula data hook (see the module docstring)."""

    # -- fitted attributes ----------------------------------------------------
    @property
    def family_(self):
        """The fitted family (:mod:`sklearn_glmm.families`), with its estimated shape.

        ``family_.name`` (``"poisson"``, ``"binomial"``, ``"negative_binomial"``,
        ``"gamma"``, ``"gaussian"``), ``family_.link.name``,
        ``family_.variance(mu)`` and ``family_.param`` (NB size, Gamma shape,
        Gaussian residual variance; None for Poisson and binomial).

        Examples
        --------
        >>> from sklearn_glmm import GaussianLMMRegressor
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> data = load_app_engagement()
        >>> model = GaussianLMMRegressor("(1 | user_id)").fit(
        ...     data[["day_centered"]], data["logins"], groups=data["user_id"])
        >>> model.family_.name, model.family_.link.name, round(model.family_.param, 3)
        ('gaussian', 'identity', 2.253)
        """
        check_is_fitted(self, "fixef_")
        return self._family_

    @property
    def n_groups_(self) -> dict[str, int]:
        """Number of levels of each grouping factor seen in fit (lme4's ``ngrps(m)``).

        Examples
        --------
        >>> from sklearn_glmm import PoissonGLMMRegressor
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> data = load_app_engagement()
        >>> model = PoissonGLMMRegressor("(1 | user_id)").fit(
        ...     data[["day_centered"]], data["logins"], groups=data["user_id"])
        >>> model.n_groups_, model.n_obs_
        ({'user_id': 50}, 1500)
        """
        check_is_fitted(self, "fixef_")
        return {factor: len(levels) for factor, levels in self.group_levels_.items()}

    @property
    def group_coef_(self) -> dict[str, pd.DataFrame]:
        """Fixed plus random coefficients of every level, per grouping factor (lme4's ``coef(m)``).

        One DataFrame per factor, levels x coefficients: every fixed effect
        (``fixef_``), plus the level's conditional mode where the factor has
        a random effect of that name. As lme4, a random-effect term without a
        fixed effect gets a column of its own (fixed part 0), placed first.

        Examples
        --------
        >>> from sklearn_glmm import PoissonGLMMRegressor
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> data = load_app_engagement()
        >>> model = PoissonGLMMRegressor("(1 | user_id)").fit(
        ...     data[["day_centered"]], data["logins"], groups=data["user_id"])
        >>> model.group_coef_["user_id"].head(2).round(4)
                 (Intercept)  day_centered
        user_id
        1             1.1576       -0.0091
        10            1.2611       -0.0091
        """
        check_is_fitted(self, "fixef_")
        out = {}
        for factor, modes in self.ranef_.items():
            missing = [name for name in modes.columns if name not in self.fixef_.index]
            fixed = (
                pd.concat([pd.Series(0.0, index=missing, dtype=float), self.fixef_])
                if missing
                else self.fixef_
            )
            table = pd.DataFrame(
                np.tile(fixed.to_numpy(dtype=float), (len(modes), 1)), index=modes.index, columns=fixed.index
            )
            table[list(modes.columns)] += modes.to_numpy()
            out[factor] = table
        return out

    # -- predictions ----------------------------------------------------------
    def fitted(self, X=None, groups=None, offset=None) -> np.ndarray:
        """Fitted mean responses with the random effects of known groups (lme4's ``fitted(m)``).

        ``predict(X, groups, offset)``; for the classifier the probability of
        ``classes_[1]``. A formula-fitted model called without ``X`` uses the
        rows of its own data frame that entered the fit.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), default=None
            As in ``predict``; for a formula-fitted model also a raw data
            frame, or None for the fit's own rows.
        groups : array-like or DataFrame, default=None
        offset : array-like of shape (n_samples,), default=None

        Returns
        -------
        ndarray of shape (n_samples,)

        See Also
        --------
        predict : The same on any data, and on the link scale.
        residuals : Observed minus fitted, on three scales.

        Examples
        --------
        >>> from sklearn_glmm import glmer
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> model = glmer("logins ~ day_centered + (1 | user_id)", load_app_engagement())
        >>> model.fitted()[:3].round(4)
        array([3.631 , 3.5981, 3.5656])
        """
        return self._predict_on_scale(X, groups, offset, "mean")

    def _predict_on_scale(self, X, groups, offset, kind) -> np.ndarray:
        """``predict`` on the scale ``kind``: the mean (new groups per ``new_groups``) or eta."""
        _check_kind(kind)
        X, _, groups, _, offset, where = self._lme4_data(X, None, groups, None, offset, need_y=False)
        design, n = self._design_for(X, groups)
        off = self._offset_or_none(offset, n)
        values = self._linear_predictor(design, off) if kind == "link" else self._mean(design, off)
        return _scatter(values, where)

    # -- the formula data hook ------------------------------------------------
    def model_inputs(self, X=None, y=None, groups=None, sample_weight=None, offset=None) -> ModelInputs:
        """The estimator inputs ``(X, y, groups, sample_weight, offset)`` behind some data.

        For a formula-fitted model, ``X`` may be a raw data frame (its rows
        with missing values are left out, as R's ``na.omit``) or None for the
        rows of the fit (R's ``model.frame(m)`` turned into model matrices);
        arguments given explicitly win over the frame's columns. For any
        other model, or a design ``X``, the arguments come back as given.
        Functions that refit or summarise a model (:func:`sklearn_glmm.drop1`,
        :func:`sklearn_glmm.r2_nakagawa`) take their data through this.

        Parameters
        ----------
        X : {array-like, DataFrame}, default=None
            A raw data frame (formula-fitted models), a design matrix, or None
            for the rows of a formula fit.
        y, groups, sample_weight, offset : array-like, default=None
            As in ``fit``; given explicitly, they replace what the data frame holds.

        Returns
        -------
        ModelInputs
            A named tuple ``(X, y, groups, sample_weight, offset)``; ``y`` is
            None when the data have no response column.

        See Also
        --------
        formula_data : The data frame of a formula fit itself.

        Examples
        --------
        >>> from sklearn_glmm import glmer
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> model = glmer("logins ~ day_centered + (1 | user_id)", load_app_engagement())
        >>> inputs = model.model_inputs()
        >>> inputs.X.shape, inputs.y.name, inputs.groups.name
        ((1500, 1), 'logins', 'user_id')
        """
        check_is_fitted(self, "fixef_")
        return ModelInputs(*self._lme4_data(X, y, groups, sample_weight, offset, need_y=False)[:5])

    def formula_data(self):
        """The data of a formula fit: ``(data, weights, offset)``, R's ``getData(m)``.

        ``data`` is the data frame given to ``glmer``/``from_formula`` (a
        reference, not a copy); ``weights``/``offset`` are the arrays given
        with it (None when absent or given as column names). None for a model
        not fitted from a formula, or one that was pickled or copied (the
        frame is never pickled).

        Returns
        -------
        tuple of (DataFrame, ndarray or None, ndarray or None), or None
            ``(data, weights, offset)`` of a formula fit; None otherwise.

        See Also
        --------
        model_inputs : The estimator inputs (X, y, groups, ...) behind that data frame.
        from_formula : The fit that keeps the data frame.

        Examples
        --------
        >>> from sklearn_glmm import glmer
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> data = load_app_engagement()
        >>> model = glmer("logins ~ day_centered + (1 | user_id)", data)
        >>> model.formula_data()[0] is data
        True
        """
        check_is_fitted(self, "fixef_")
        return getattr(self, "_formula_data", None)

    def _lme4_data(self, X, y, groups, sample_weight, offset, *, need_y: bool):
        """The estimator inputs behind a public method's arguments.

        Returns ``(X, y, groups, sample_weight, offset, where)``; ``where`` is
        None, or ``(rows, n_rows)`` when ``X`` was a raw data frame whose rows
        with missing values were left out (``_scatter`` puts NaN there).
        Without a formula (or with a design ``X``) the arguments pass through.
        """
        spec = getattr(self, "formula_", None)
        if X is None:
            if spec is None:
                raise TypeError(
                    "X is required: only a model fitted from a formula (glmer, from_formula) "
                    "remembers its data frame."
                )
            stored = getattr(self, "_formula_data", None)
            if stored is None:
                raise ValueError(
                    "This formula-fitted model has no data frame attached (a pickled or copied "
                    "model keeps only its estimates); pass the data, e.g. model.fitted(data) or "
                    "model.residuals(data, kind='pearson')."
                )
            frame = spec.transform(*stored, response=need_y and y is None)
            where = None
        elif (
            spec is not None
            and isinstance(X, pd.DataFrame)
            and (spec.reads(X) or [str(c) for c in X.columns] != list(spec.columns))
        ):
            frame = spec.transform(X, response=need_y and y is None)
            where = None if frame.rows.size == frame.n_rows else (frame.rows, frame.n_rows)
        else:
            return X, y, groups, sample_weight, offset, None
        if need_y and y is None and frame.y is None:
            raise ValueError("The data have no response column, which this method needs; add it, or pass y.")
        if where is not None and any(a is not None for a in (y, groups, sample_weight, offset)):
            raise ValueError(
                "The data frame has rows with missing values, which are left out, so arrays "
                "passed with it (y, groups, sample_weight, offset) no longer line up; drop those "
                "rows first."
            )
        return (
            frame.X,
            frame.y if y is None else y,
            frame.groups if groups is None else groups,
            frame.sample_weight if sample_weight is None else sample_weight,
            frame.offset if offset is None else offset,
            where,
        )

    def _keep_formula(self, spec, data, weights=None, offset=None) -> None:
        """Remember the formula transformation and (in memory only) the data of a formula fit.

        Called by ``from_formula`` after ``fit``; the
        one place that names the two attributes besides their readers here.
        """
        self.formula_ = spec
        self._formula_data = (data, weights, offset)

    def _clear_formula(self) -> None:
        """Forget a previous formula fit (``fit`` on plain arrays starts afresh)."""
        self.__dict__.pop("formula_", None)
        self.__dict__.pop("_formula_data", None)

    def __getstate__(self):
        # a fitted model keeps estimates, not rows: the data frame of a formula
        # fit stays behind when the model is pickled or copied
        state = super().__getstate__()
        if "_formula_data" in state:
            state = dict(state)
            del state["_formula_data"]
        return state


def _scatter(values: np.ndarray, where) -> np.ndarray:
    """``values`` at ``rows`` of an array of ``n_rows`` NaN (R's ``na.pass``), or as is."""
    if where is None:
        return values
    rows, n_rows = where
    out = np.full(n_rows, np.nan)
    out[rows] = values
    return out
