"""Build the fixed-effects matrix and the random-effects term from X and groups.

:class:`DesignBuilder` is fitted once (``fit`` remembers the column names, the
grouping factor's name and its levels) and then rebuilds the same columns for
new data (``transform``), where a level unseen in fit gets code ``-1`` and so a
random effect of zero (lme4's ``allow.new.levels = TRUE``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._spec import INTERCEPT, RandomEffectSpec, parse_random_effects
from ._terms import RandomEffectTerm
from ..utils._validation import check_group_labels, warn_on_text_label_matches

__all__ = ["DesignBuilder", "Design", "groups_to_series", "independent_columns"]

DEFAULT_GROUP_NAME = "group"


def groups_to_series(groups: object, n_samples: int) -> pd.Series:
    """Turn ``groups`` (array-like, Series or one-column DataFrame) into a Series.

    The Series keeps the factor's name (``None`` when unnamed) and is checked for
    length and missing values.

    Raises
    ------
    ValueError
        If the length differs from ``n_samples``, there are missing labels, or
        a DataFrame has more than one column.
    """
    if isinstance(groups, pd.DataFrame):
        if groups.shape[1] != 1:
            raise ValueError(
                f"groups has {groups.shape[1]} columns; this version supports one "
                "grouping factor: pass a Series or a one-column DataFrame."
            )
        series = groups.iloc[:, 0]
        series.name = groups.columns[0]
    elif isinstance(groups, pd.Series):
        series = groups
    else:
        array = np.asarray(groups)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise ValueError(
                f"groups must be one-dimensional (one label per row); got shape {array.shape}."
            )
        series = pd.Series(array, name=None)
    if len(series) != n_samples:
        raise ValueError(
            f"groups has {len(series)} labels but X has {n_samples} rows; "
            "pass one group label per row."
        )
    if series.isna().any():
        raise ValueError(
            f"groups has {int(series.isna().sum())} missing label(s); "
            "drop those rows or give them a label."
        )
    check_group_labels(series)
    return series.reset_index(drop=True)


def _sorted_levels(values: pd.Series) -> pd.Index:
    levels = pd.Index(pd.unique(values))
    try:
        return levels.sort_values()
    except TypeError:  # mixed types cannot be ordered: keep first-seen order
        return levels


def independent_columns(X: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """Mask of columns kept when dropping those dependent on earlier columns.

    Like R's ``qr(X, LAPACK = FALSE)`` (which lme4 uses), earlier columns win: a
    column is dropped when its component orthogonal to the kept earlier
    columns is below ``tol`` times its norm. One QR of the ``n x p`` matrix,
    then the sequential test runs on the small ``p x p`` factor ``R`` (the
    columns of X and of R have the same linear dependencies).
    """
    p = X.shape[1]
    keep = np.zeros(p, dtype=bool)
    if X.shape[0] == 0:
        return keep
    R = np.linalg.qr(X, mode="r")
    if R.shape[0] < p:  # fewer rows than columns
        R = np.vstack([R, np.zeros((p - R.shape[0], p))])
    for j in range(p):
        col = R[:, j]
        norm = np.linalg.norm(col)
        if norm == 0.0:
            continue
        kept = R[:, keep]
        resid = col - kept @ np.linalg.lstsq(kept, col, rcond=None)[0] if kept.shape[1] else col
        keep[j] = np.linalg.norm(resid) > tol * norm
    return keep


@dataclass
class Design:
    """Matrices for one data set.

    Attributes
    ----------
    X : ndarray of shape (n, p)
        Fixed-effects matrix, intercept column first.
    term : RandomEffectTerm or None
        The random-effects term, ``None`` when there are no groups.
    """

    X: np.ndarray
    term: RandomEffectTerm | None


class DesignBuilder:
    """Remember the fixed and random structure of a fit and rebuild it.

    Parameters
    ----------
    random_effects : str
        The ``random_effects`` parameter (see :func:`parse_random_effects`).
    """

    def __init__(self, random_effects: str):
        self.spec: RandomEffectSpec = parse_random_effects(random_effects)

    # -- fit ------------------------------------------------------------------
    def fit(
        self,
        X: np.ndarray,
        feature_names: list[str],
        groups: object | None,
        sample_weight: np.ndarray | None = None,
    ) -> Design:
        """Fix names, kept columns and levels from the training data.

        Fixed-effect columns that are linearly dependent on earlier ones
        (constant, duplicated, collinear) are dropped, as lme4 does; their
        names are in ``dropped_``.
        """
        self.feature_names_ = list(feature_names)
        all_names = [INTERCEPT] + self.feature_names_
        self.keep_ = np.ones(len(all_names), dtype=bool)
        full = self._fixed(X)
        w = np.ones(X.shape[0]) if sample_weight is None else sample_weight
        self.keep_ = independent_columns(full * np.sqrt(w)[:, None])
        self.fixef_names_ = [n for n, k in zip(all_names, self.keep_) if k]
        self.dropped_ = [n for n, k in zip(all_names, self.keep_) if not k]
        missing = [c for c in self.spec.columns if c not in self.feature_names_]
        if missing:
            raise ValueError(
                f"random_effects names column(s) {missing} that are not in X; X has "
                f"columns {self.feature_names_}. Random slopes must be columns of X."
            )
        self.slope_index_ = [self.feature_names_.index(c) for c in self.spec.columns]
        if groups is None:
            self.factor_ = self.spec.factor or DEFAULT_GROUP_NAME
            self.levels_ = None
            return Design(full[:, self.keep_], None)
        series = groups_to_series(groups, X.shape[0])
        name = None if series.name is None else str(series.name)
        if self.spec.factor is not None and name is not None and name != self.spec.factor:
            raise ValueError(
                f"random_effects groups by {self.spec.factor!r} but groups is named "
                f"{name!r}; rename one of them so they agree."
            )
        self.factor_ = self.spec.factor or name or DEFAULT_GROUP_NAME
        self.levels_ = _sorted_levels(series)
        return Design(full[:, self.keep_], self._term(X, series))

    # -- transform ------------------------------------------------------------
    def transform(self, X: np.ndarray, groups: object | None) -> Design:
        """Rebuild the design for new rows; unseen levels get code ``-1``.

        Without ``groups`` every row counts as unseen (code ``-1``): the term
        still carries the rows' random-effect covariates, which marginal
        predictions need.
        """
        if self.levels_ is None:
            return Design(self._fixed(X), None)
        series = None if groups is None else groups_to_series(groups, X.shape[0])
        warn_on_text_label_matches(self.levels_, series)  # 7 vs '7': lme4 levels are text
        return Design(self._fixed(X), self._term(X, series))

    # -- helpers --------------------------------------------------------------
    def formula(self, response: str) -> str:
        """The model in lme4's formula syntax."""
        fixed = " + ".join(self.feature_names_) if self.feature_names_ else "1"
        if self.levels_ is None:
            return f"{response} ~ {fixed}"
        return f"{response} ~ {fixed} + {self.spec.to_formula(self.factor_)}"

    def _fixed(self, X: np.ndarray) -> np.ndarray:
        full = np.column_stack([np.ones(X.shape[0]), X]) if X.shape[1] else np.ones((X.shape[0], 1))
        return full[:, self.keep_]

    def _term(self, X: np.ndarray, series: pd.Series | None) -> RandomEffectTerm:
        if series is None:
            codes = np.full(X.shape[0], -1, dtype=np.int64)
        else:
            codes = self.levels_.get_indexer(series.to_numpy()).astype(np.int64)
        columns = ([np.ones(X.shape[0])] if self.spec.intercept else []) + [
            X[:, j] for j in self.slope_index_
        ]
        Z = np.ascontiguousarray(np.column_stack(columns), dtype=float)
        return RandomEffectTerm(
            factor=self.factor_,
            term_names=self.spec.term_names,
            codes=codes,
            Z=Z,
            n_levels=len(self.levels_),
        )
