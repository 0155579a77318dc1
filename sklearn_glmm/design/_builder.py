"""Build the fixed-effects matrix and the random-effects terms from X and groups.

:class:`DesignBuilder` is fitted once (``fit`` remembers the column names, the
grouping factors' names and their levels) and then rebuilds the same columns
for new data (``transform``), where a level unseen in fit gets code ``-1`` and
so a random effect of zero for that factor only (lme4's
``allow.new.levels = TRUE``).

``groups`` holds the grouping columns: a Series or 1-D array for one factor,
a DataFrame whose columns are named as in ``random_effects`` for several (a
2-D array's columns are taken in the order the factors first appear in
``random_effects``). A factor ``a:b`` (from nesting, ``(1 | a/b)``) is built
from the columns ``a`` and ``b``: one level per observed pair.

Bars on the same factor become one :class:`RandomEffectTerm` (``||`` gives a
diagonal ``Lambda``), and terms are ordered by decreasing number of levels,
the order the engine needs (largest factor block diagonal). ``theta_order_``
maps the engine's theta to lme4's order (bars by decreasing number of levels),
in which ``theta_``, ``varcorr_`` and intervals are reported.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..utils._validation import check_group_labels, warn_on_text_label_matches
from ._spec import INTERCEPT, RandomEffectSpec, parse_random_effects
from ._terms import RandomEffectTerm

__all__ = [
    "DesignBuilder",
    "Design",
    "column_r_factor",
    "groups_to_series",
    "groups_to_frame",
    "independent_columns",
    "independent_from_r",
    "encode_labels",
]

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
            raise ValueError(f"groups must be one-dimensional (one label per row); got shape {array.shape}.")
        series = pd.Series(array, name=None)
    if len(series) != n_samples:
        raise ValueError(
            f"groups has {len(series)} labels but X has {n_samples} rows; pass one group label per row."
        )
    if series.isna().any():
        raise ValueError(
            f"groups has {int(series.isna().sum())} missing label(s); drop those rows or give them a label."
        )
    check_group_labels(series)
    return series.reset_index(drop=True)


def groups_to_frame(groups: object, n_samples: int, factor_columns: list[str]) -> pd.DataFrame:
    """The grouping columns as a DataFrame with one column per name in ``factor_columns``.

    ``factor_columns`` are the grouping columns ``random_effects`` names, in
    order of first appearance (empty for the short form ``"1 + x"``, which
    takes the one column of ``groups`` whatever its name).

    Raises
    ------
    ValueError
        If a needed column is missing, the shape does not fit, labels are
        missing, or the length differs from ``n_samples``.
    """
    several = (isinstance(groups, pd.DataFrame) and groups.shape[1] > 1) or (
        not isinstance(groups, (pd.DataFrame, pd.Series)) and np.ndim(groups) == 2 and np.shape(groups)[1] > 1
    )
    if several and not factor_columns:
        raise ValueError(
            f"groups has {np.shape(groups)[1]} columns, but random_effects does not name its "
            "grouping factors, so groups must be one-dimensional (one label per row). For "
            "several factors name them, e.g. '(1 | subject) + (1 | item)'."
        )
    if isinstance(groups, pd.DataFrame) and groups.shape[1] > 1:
        missing = [c for c in factor_columns if c not in groups.columns]
        if missing:
            raise ValueError(
                f"groups has columns {list(map(str, groups.columns))} but random_effects "
                f"needs {missing}; pass groups with a column per grouping factor."
            )
        frame = groups[factor_columns]
    elif (
        not isinstance(groups, (pd.DataFrame, pd.Series)) and np.ndim(groups) == 2 and np.shape(groups)[1] > 1
    ):
        array = np.asarray(groups)
        if array.shape[1] != len(factor_columns):
            raise ValueError(
                f"groups has {array.shape[1]} columns but random_effects uses the grouping "
                f"factors {factor_columns}; pass one column per factor (a DataFrame with those "
                "column names is safest)."
            )
        frame = pd.DataFrame(array, columns=factor_columns)
    else:
        series = groups_to_series(groups, n_samples)
        if len(factor_columns) > 1:
            raise ValueError(
                f"random_effects uses the grouping factors {factor_columns} but groups has one "
                "column; pass groups as a DataFrame with those columns (or set group_column "
                "to a list of column names of X)."
            )
        name = factor_columns[0] if factor_columns else None
        if name is not None and series.name is not None and str(series.name) != name:
            raise ValueError(
                f"random_effects groups by {name!r} but groups is named "
                f"{str(series.name)!r}; rename one of them so they agree."
            )
        # column names are text: a factor named 0 (a numpy-built frame's column) is "0"
        return series.to_frame(
            str(
                name if name is not None else (series.name if series.name is not None else DEFAULT_GROUP_NAME)
            )
        )
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    for column in frame.columns:
        groups_to_series(frame[column].rename(column), n_samples)  # length, missing and infinite labels
    return frame


def factor_labels(frame: pd.DataFrame, factor: str) -> pd.Series:
    """The labels of one factor; ``a:b`` joins the columns' labels as text, as R's ``a:b``.

    A column named ``factor`` itself (a grouping column whose name contains
    ``:``) is taken as it is. In a joined label a ``:`` (or ``\\``) inside a
    column's label is escaped with a backslash, so that distinct pairs never
    share a label: ``('q:r', 'p')`` gives ``q\\:r:p`` and ``('q', 'r:p')``
    gives ``q:r\\:p``. Labels without ``:`` read as R's.
    """
    if factor in frame.columns:
        return frame[factor]
    columns = factor.split(":")
    labels = _escaped_text(frame[columns[0]])
    for column in columns[1:]:
        labels = labels + ":" + _escaped_text(frame[column])
    return labels.rename(factor)


def _escaped_text(values: pd.Series) -> pd.Series:
    """Labels as text with ``\\`` and ``:`` escaped; labels holding neither are left as they are."""
    text = values.astype(str)
    if text.str.contains(":", regex=False).any() or text.str.contains("\\", regex=False).any():
        text = text.str.replace("\\", "\\\\", regex=False).str.replace(":", "\\:", regex=False)
    return text


def encode_labels(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Codes ``0 .. G-1`` of every row and the sorted levels (first-seen order if unsortable)."""
    try:
        codes, levels = pd.factorize(values, sort=True)
    except TypeError:  # mixed types cannot be ordered
        levels = _sorted_levels(values)
        codes = levels.get_indexer(values.to_numpy())
    return codes.astype(np.int64, copy=False), pd.Index(levels)


def _sorted_levels(values: pd.Series) -> pd.Index:
    levels = pd.Index(pd.unique(values))
    try:
        return levels.sort_values()
    except TypeError:  # mixed types cannot be ordered: keep first-seen order
        return levels


def independent_columns(
    X: np.ndarray, tol: float = 1e-7, weights: np.ndarray | None = None, chunk_rows: int = 65536
) -> np.ndarray:
    """Mask of columns kept when dropping those dependent on earlier columns.

    Like R's ``qr(X, LAPACK = FALSE)`` (which lme4 uses), earlier columns win: a
    column is dropped when its component orthogonal to the kept earlier
    columns is below ``tol`` times its norm. The columns of ``diag(sqrt(w)) X``
    and of its QR factor ``R`` (:func:`column_r_factor`) have the same linear
    dependencies, so the sequential test runs on the small ``p x p`` factor
    (:func:`independent_from_r`).
    """
    return independent_from_r(column_r_factor(X, weights, chunk_rows), tol)


def column_r_factor(X: np.ndarray, weights: np.ndarray | None = None, chunk_rows: int = 65536) -> np.ndarray:
    """The ``p x p`` factor ``R`` of the QR decomposition of ``diag(sqrt(w)) X``.

    Accumulated over blocks of ``chunk_rows`` rows (a tall-skinny QR: ``R`` of
    ``[R_previous; block]``), so the working memory is one block, not a copy
    of the ``n x p`` matrix. The factors of parts of the rows, stacked, have
    the factor of all rows: data held apart are reduced the same way.
    """
    n, p = X.shape
    if weights is not None and bool(np.all(weights == 1.0)):
        weights = None  # unit weights: no scaled copy of each block
    R = np.zeros((0, p))
    for start in range(0, n, chunk_rows):
        block = X[start : start + chunk_rows]
        if weights is not None:
            block = block * np.sqrt(weights[start : start + chunk_rows])[:, None]
        R = np.linalg.qr(np.vstack([R, block]), mode="r")
    if R.shape[0] < p:  # fewer rows than columns
        R = np.vstack([R, np.zeros((p - R.shape[0], p))])
    return R


def independent_from_r(R: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """The columns of ``R`` independent of earlier ones (see :func:`independent_columns`)."""
    p = R.shape[1]
    keep = np.zeros(p, dtype=bool)
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
    terms : list of RandomEffectTerm
        One per grouping factor, most levels first; empty when there are no
        groups.
    """

    X: np.ndarray
    terms: list[RandomEffectTerm]

    @property
    def term(self) -> RandomEffectTerm | None:
        """The single term of a one-factor model (None without groups)."""
        if not self.terms:
            return None
        if len(self.terms) > 1:
            raise AttributeError("this design has several grouping factors; use Design.terms")
        return self.terms[0]


class DesignBuilder:
    """Remember the fixed and random structure of a fit and rebuild it.

    Parameters
    ----------
    random_effects : str
        The ``random_effects`` parameter (see :func:`parse_random_effects`).
    fixed_effects : list of str or None, default=None
        The columns of X that are fixed effects (the intercept always is);
        None makes every column one. A column left out serves only the
        random-effect terms that name it, as lme4's ``y ~ 1 + (x | g)``; its
        fixed effect is 0.
    """

    def __init__(self, random_effects: str, fixed_effects=None):
        self.bars: tuple[RandomEffectSpec, ...] = parse_random_effects(random_effects)
        self.fixed_effects = fixed_effects

    @property
    def factor_columns(self) -> list[str]:
        """Grouping columns named in ``random_effects``, in order of first appearance."""
        out: list[str] = []
        for bar in self.bars:
            out += [c for c in bar.factor_columns if c not in out]
        return out

    # -- fit ------------------------------------------------------------------
    def fit(
        self,
        X: np.ndarray,
        feature_names: list[str],
        groups: object | None,
        sample_weight: np.ndarray | None = None,
    ) -> Design:
        """Fix names, kept columns, factors and levels from the training data.

        Fixed-effect columns that are linearly dependent on earlier ones
        (constant, duplicated, collinear) are dropped, as lme4 does; their
        names are in ``dropped_``.
        """
        self.begin_fit(feature_names)
        full = self._fixed(X)
        independent = independent_columns(full, weights=sample_weight)
        if groups is None:
            self.finish_fit(independent, None)
            return Design(full[:, independent] if not np.all(independent) else full, [])
        frame = groups_to_frame(groups, X.shape[0], self.factor_columns)
        # one hash pass per factor gives the sorted levels and every row's code
        coded = {f: encode_labels(factor_labels(frame, f)) for f in self.name_factors(list(frame.columns))}
        self.finish_fit(independent, {f: levels for f, (_, levels) in coded.items()})
        if not np.all(independent):
            full = full[:, independent]
        return Design(full, self._terms(X, full, frame, {f: codes for f, (codes, _) in coded.items()}))

    # The steps of fit, for data held in parts (``sklearn_glmm._partitioned_fit``):
    # begin_fit and name_factors on the names, the parts' column_r_factor and
    # levels, then finish_fit with what they add up to.
    def begin_fit(self, feature_names: list[str]) -> None:
        """Fix the column names and the candidate fixed-effect columns (``keep_``, before dependence)."""
        self.feature_names_ = list(feature_names)
        if INTERCEPT in self.feature_names_:
            raise ValueError(
                f"X has a column named {INTERCEPT!r}, the name of the intercept the model always "
                "adds; the two would share one name in fixef_ and random_effects. Drop the column "
                "(a column of ones is the intercept already) or rename it."
            )
        self.keep_ = self._fixed_candidates([INTERCEPT] + self.feature_names_)
        missing = sorted({c for bar in self.bars for c in bar.columns if c not in self.feature_names_})
        if missing:
            raise ValueError(
                f"random_effects names column(s) {missing} that are not in X; X has "
                f"columns {self.feature_names_}. Random slopes must be columns of X."
            )

    def name_factors(self, group_columns: list[str]) -> list[str]:
        """The grouping factors in order of first appearance (the short form takes the one column's name)."""
        if self.bars[0].factor is None:  # short form: the factor is groups' one column, whatever its name
            self.bars = (
                RandomEffectSpec(
                    self.bars[0].columns, self.bars[0].intercept, str(group_columns[0]), whole_name=True
                ),
            )
        factors: list[str] = []
        for bar in self.bars:
            if bar.factor not in factors:
                factors.append(bar.factor)
        return factors

    def finish_fit(self, independent: np.ndarray, levels: dict[str, pd.Index] | None) -> None:
        """Drop the dependent candidate columns and fix the factors' levels (None: no groups)."""
        all_names = [INTERCEPT] + self.feature_names_
        candidates = self.keep_
        self.keep_ = candidates.copy()
        self.keep_[candidates] = independent
        self.fixef_names_ = [n for n, k in zip(all_names, self.keep_) if k]
        self.dropped_ = [n for n, c, k in zip(all_names, candidates, self.keep_) if c and not k]
        #: columns that enter only random-effect terms (``fixed_effects``)
        self.random_only_ = [n for n, c in zip(all_names, candidates) if not c]
        if levels is None:
            self.factors_, self.levels_ = [], {}
            return
        self.levels_ = dict(levels)
        # one term per factor, most levels first
        self.factors_ = sorted(self.levels_, key=lambda f: -len(self.levels_[f]))
        self._set_theta_order()

    def with_levels(self, levels: dict[str, pd.Index]) -> DesignBuilder:
        """A copy of the fitted builder that codes rows by other levels (a part's own)."""
        other = copy.copy(self)
        other.levels_ = dict(levels)
        return other

    def _set_theta_order(self) -> None:
        """Engine theta (terms by levels, bars of a factor together) -> lme4's order.

        lme4 orders bars by decreasing number of levels when they are not
        already in that order (``mkReTrms``: ``rev(order(nl))``).
        """
        n_levels = np.array([len(self.levels_[bar.factor]) for bar in self.bars])
        bar_order = np.arange(len(self.bars))
        if np.any(np.diff(n_levels) > 0):
            bar_order = np.argsort(n_levels, kind="stable")[::-1]
        position, start = {}, 0
        for factor in self.factors_:
            for j, bar in enumerate(self.bars):
                if bar.factor == factor:
                    size = len(bar.term_names)
                    position[j] = np.arange(start, start + size * (size + 1) // 2)
                    start += size * (size + 1) // 2
        # lme4's group names, given in its order: "g" for a factor's first bar, then "g.1", ...
        display, seen = {}, {}
        for j in bar_order:
            factor = self.bars[j].factor
            rank = seen[factor] = seen.get(factor, -1) + 1
            display[j] = factor if rank == 0 else f"{factor}.{rank}"
        self.theta_order_ = np.concatenate([position[j] for j in bar_order])
        #: per bar in lme4's order: (group name, term names, slice of the reported theta)
        self.report_bars_ = []
        start = 0
        for j in bar_order:
            k = position[j].size
            self.report_bars_.append((display[j], self.bars[j].term_names, slice(start, start + k)))
            start += k

    # -- transform ------------------------------------------------------------
    def transform(self, X: np.ndarray, groups: object | None) -> Design:
        """Rebuild the design for new rows; unseen levels get code ``-1``.

        Without ``groups`` every row counts as unseen (code ``-1``): the terms
        still carry the rows' random-effect covariates, which marginal
        predictions need.
        """
        if not self.levels_:
            return Design(self._fixed(X), [])
        frame = None
        columns = self.factor_columns
        if (
            groups is not None
            and len(columns) == 1
            and not (isinstance(groups, pd.DataFrame) and groups.shape[1] > 1)
        ):
            # one grouping column: its name at predict time does not matter
            frame = groups_to_series(groups, X.shape[0]).rename(columns[0]).to_frame()
        elif groups is not None:
            frame = groups_to_frame(groups, X.shape[0], columns)
        fixed = self._fixed(X)
        return Design(fixed, self._terms(X, fixed, frame))

    # -- helpers --------------------------------------------------------------
    def formula(self, response: str) -> str:
        """The model in lme4's formula syntax."""
        names = [n for n in self.feature_names_ if n not in self.random_only_]
        fixed = " + ".join(names) if names else "1"
        if not self.levels_:
            return f"{response} ~ {fixed}"
        return f"{response} ~ {fixed} + " + " + ".join(bar.to_formula(bar.factor) for bar in self.bars)

    def _fixed_candidates(self, all_names: list[str]) -> np.ndarray:
        """Mask over ``[intercept] + columns``: the intercept and the columns ``fixed_effects`` names."""
        if self.fixed_effects is None:
            return np.ones(len(all_names), dtype=bool)
        names = list(self.fixed_effects)
        unknown = [n for n in names if n not in all_names[1:]]
        if unknown:
            raise ValueError(
                f"fixed_effects names column(s) {unknown} that are not in X; X has columns {all_names[1:]}."
            )
        if len(set(names)) != len(names):
            raise ValueError(f"fixed_effects lists a column twice: {names}.")
        return np.array([True] + [n in names for n in all_names[1:]])

    def _fixed(self, X: np.ndarray) -> np.ndarray:
        """``[1, X]`` restricted to the kept columns, built in one allocation."""
        keep = self.keep_
        # column-major: each column contiguous, so the engine's transposed
        # (p, n) view of it needs no copy
        full = np.empty((int(np.sum(keep)), X.shape[0])).T
        column = 0
        if keep[0]:
            full[:, 0] = 1.0
            column = 1
        kept = np.flatnonzero(keep[1:])
        if kept.size == X.shape[1]:
            full[:, column:] = X
        elif kept.size:
            full[:, column:] = X[:, kept]
        return full

    def _term_matrix(self, X: np.ndarray, fixed: np.ndarray, names: list[str]) -> np.ndarray:
        """A term's Z, column-major; a view of the fixed design when its columns are there in order.

        ``(1 | g)`` is column 0 of the fixed design, ``(1 + x | g)`` often
        columns 0-1: a slice of the column-major design shares its memory (a
        large fit then holds no second column of ones).
        """
        position = {name: j for j, name in enumerate(self.fixef_names_)}
        columns = [position.get(name) for name in names]
        if None not in columns and columns == list(range(columns[0], columns[0] + len(columns))):
            return fixed[:, columns[0] : columns[0] + len(columns)]
        Z = np.empty((len(names), X.shape[0])).T  # column-major, as the fixed part
        for j, name in enumerate(names):
            Z[:, j] = 1.0 if name == INTERCEPT else X[:, self.feature_names_.index(name)]
        return Z

    def _terms(
        self, X: np.ndarray, fixed: np.ndarray, frame: pd.DataFrame | None, fit_codes: dict | None = None
    ) -> list[RandomEffectTerm]:
        terms = []
        for factor in self.factors_:
            levels = self.levels_[factor]
            if fit_codes is not None:
                codes = fit_codes[factor]
            elif frame is None:
                codes = np.full(X.shape[0], -1, dtype=np.int64)
            else:
                labels = factor_labels(frame, factor)
                warn_on_text_label_matches(levels, labels)  # 7 vs '7': lme4 levels are text
                codes = levels.get_indexer(labels.to_numpy()).astype(np.int64)
            bars = [bar for bar in self.bars if bar.factor == factor]
            names = [name for bar in bars for name in bar.term_names]
            Z = self._term_matrix(X, fixed, names)
            terms.append(
                RandomEffectTerm(
                    factor=factor,
                    term_names=names,
                    codes=codes,
                    Z=Z,
                    n_levels=len(levels),
                    bar_sizes=None if len(bars) == 1 else tuple(len(bar.term_names) for bar in bars),
                )
            )
        return terms
