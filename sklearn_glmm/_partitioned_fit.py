"""One fit of an estimator on data held in partitions of whole groups.

The data are a sequence of pandas partitions (a Dask DataFrame's, see
:mod:`sklearn_glmm._dask`, or a list of frames in this process); each holds
the columns of X, the grouping columns and the response (with the prior
weights and offset, if any) under the names of :class:`PartitionLayout`.
:func:`fit_partitioned` fits the estimator to all of them by the same checks,
design and solver as ``fit`` on one frame, reading the rows once; every step
on rows runs where the partitions live:

1. *hold* -- each partition checks its rows with the estimator's own checks,
   keeps them, and reports a summary: the QR factor of its fixed-effect
   columns (the whole data's is the factor of the stacked factors), its
   levels of every grouping factor, the response's range and sums;
2. *parts* -- from the whole data's levels and kept columns, each partition
   turns its rows into its part of the model
   (:class:`~sklearn_glmm._core._partitioned.Part`: the engine's problem on
   its rows, levels numbered locally); the solver runs on the driver and asks
   the parts for sums (:mod:`sklearn_glmm._core._partitioned`);
3. *statistics* -- at the estimates, each part reports its fitted means'
   extremes (the separation warning) and its Pearson residuals' quantiles,
   merged into the summary's residual quantiles (exact minimum and maximum;
   the quartiles to within 1/10000 of rank).

A partition must hold whole levels of the partitioning factor -- the
grouping factor, or for nested factors ``(1 | a/b)`` the outermost, whose
columns every factor contains. A source whose partitions do not is
repartitioned by those columns first (``PartitionSource.repartition``).
Crossed factors (no column common to all factors) couple every partition and
are refused with a ``ValueError``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.utils import check_array

from ._core._partitioned import (
    LocalParts,
    Part,
    PartitionedLaplaceProblem,
    PartitionedLMMProblem,
    PartRunner,
    ResidualSummary,
)
from ._core._system import ThetaMap
from .design import column_r_factor, encode_labels, groups_to_frame, independent_from_r
from .design._builder import factor_labels
from .results._summary import RESIDUAL_QUANTILES
from .utils._validation import check_fit_summary, check_numeric_inputs

__all__ = ["PartitionLayout", "PartitionSource", "LocalSource", "fit_partitioned"]

#: the response, prior weight and offset columns of a partition
Y_COLUMN, WEIGHT_COLUMN, OFFSET_COLUMN = "__sklearn_glmm_y__", "__sklearn_glmm_w__", "__sklearn_glmm_offset__"
#: the grid of residual quantiles each partition reports
_QUANTILE_GRID = np.linspace(0.0, 1.0, 10001)


@dataclass(frozen=True)
class PartitionLayout:
    """Where the inputs are in a partition's columns.

    Attributes
    ----------
    features : list of str
        The columns of X (without the grouping columns).
    group_columns : list of str
        The grouping columns.
    weights, offset : bool
        Whether the weight and offset columns are there.
    y_name : str
        The response's name (for the summary).
    """

    features: list[str]
    group_columns: list[str]
    weights: bool = False
    offset: bool = False
    y_name: str = "y"


class PartitionSource(Protocol):
    """Partitions of the data, and a way to run functions where they live."""

    def hold(self, fn: Callable[..., Any], *args) -> PartRunner:
        """Run ``fn(frame, *args)`` on every partition and keep the results where they were made."""

    def repartition(self, columns: list[str]) -> PartitionSource:
        """The same rows with all rows of each combination of ``columns`` in one partition."""

    def release(self) -> None:
        """Drop what the source keeps (persisted partitions)."""


class LocalSource:
    """Partitions held in this process as pandas DataFrames (tests; the reference for other sources)."""

    def __init__(self, frames: list[pd.DataFrame], n_partitions: int | None = None):
        self.frames = list(frames)
        self.n_partitions = len(self.frames) if n_partitions is None else n_partitions

    def hold(self, fn, *args) -> LocalParts:
        return LocalParts([fn(frame, *args) for frame in self.frames])

    def repartition(self, columns: list[str]) -> LocalSource:
        whole = pd.concat(self.frames, ignore_index=True)
        key = pd.util.hash_pandas_object(whole[columns], index=False).to_numpy() % self.n_partitions
        return LocalSource(
            [whole[key == i].reset_index(drop=True) for i in range(self.n_partitions)], self.n_partitions
        )

    def release(self) -> None:
        # the frames are the caller's and nothing was persisted: nothing to free
        return None


# -- what runs where the partitions are ---------------------------------------------------
@dataclass
class _Scan:
    """A partition's summary: what the driver needs to fix the design of all partitions."""

    n_rows: int
    R: np.ndarray
    levels: dict[str, pd.Index]
    sampled: dict[str, int] | None
    keys: pd.Index
    y_labels: np.ndarray | None
    y_range: tuple[float, float] | None
    sums: tuple[float, float]


@dataclass
class _Held:
    """A partition's checked rows, kept where it lives until its part is built."""

    X: np.ndarray
    groups: pd.DataFrame
    y_raw: np.ndarray
    w: np.ndarray
    offset: np.ndarray
    scan: _Scan


def _hold_partition(
    frame: pd.DataFrame, estimator, layout: PartitionLayout, factors: list[str], key: list[str]
) -> _Held | None:
    """Pass 1: a partition's rows, checked as ``fit`` checks them, and its summary."""
    if len(frame) == 0:
        return None
    X = frame[layout.features]
    check_numeric_inputs(X, frame[Y_COLUMN], y_numeric=estimator._y_numeric)
    X = check_array(X, dtype=np.float64, ensure_min_features=0, input_name="X")
    n = X.shape[0]
    groups = groups_to_frame(
        frame[layout.group_columns] if len(layout.group_columns) > 1 else frame[layout.group_columns[0]],
        n,
        estimator._builder.factor_columns,
    )
    w = estimator._check_sample_weight(frame[WEIGHT_COLUMN].to_numpy() if layout.weights else None, n)
    offset = estimator._check_offset(frame[OFFSET_COLUMN].to_numpy() if layout.offset else None, n)
    y_raw = frame[Y_COLUMN].to_numpy()
    positive = w > 0
    R = column_r_factor(estimator._builder._fixed(X), w)
    labels = {f: factor_labels(groups, f) for f in factors}
    levels = {f: encode_labels(values)[1] for f, values in labels.items()}
    sampled = None if positive.all() else {f: int(values[positive].nunique()) for f, values in labels.items()}
    keys = encode_labels(factor_labels(groups, ":".join(key)))[1]
    if estimator._y_numeric:
        y = estimator._check_y(y_raw, n)
        kept = y[positive]
        wy = w * y
        scan = _Scan(
            n,
            R,
            levels,
            sampled,
            keys,
            None,
            (float(kept.min()), float(kept.max())) if kept.size else None,
            (float(wy.sum()), float(np.dot(wy, y))),
        )
    else:
        # labels (the classifier): encoded once the classes of all partitions are known
        scan = _Scan(n, R, levels, sampled, keys, np.unique(y_raw[positive]), None, (0.0, 0.0))
    return _Held(X, groups, y_raw, w, offset, scan)


def _scan_of(held: _Held | None) -> _Scan | None:
    return None if held is None else held.scan


def _build_part(held: _Held, local, estimator, controls) -> Part:
    """Pass 2, on the held rows: the partition's part of the model, levels numbered locally."""
    levels, positions = local
    y = estimator._response_for(held.y_raw, held.X.shape[0])
    design = estimator._builder.with_levels(levels).transform(held.X, held.groups)
    problem = estimator._problem(design, y, held.w, held.offset, controls)
    return Part(problem, [positions[t.factor] for t in design.terms])


# -- the driver --------------------------------------------------------------------
def _union_levels(pieces: list[pd.Index]) -> pd.Index:
    """The sorted union of the partitions' levels (the order ``fit`` gives one frame's)."""
    whole = pd.Index(np.concatenate([p.to_numpy() for p in pieces])).unique()
    try:
        return whole.sort_values()
    except TypeError:  # mixed types cannot be ordered: first-seen order
        return whole


def _merge_quantiles(summaries: list[ResidualSummary]) -> np.ndarray:
    """The residuals' quantiles from the parts' grids (each grid point stands for its share of rows)."""
    values = np.concatenate([s.residual_quantiles for s in summaries])
    weights = np.concatenate(
        [np.full(_QUANTILE_GRID.size, s.n_rows / _QUANTILE_GRID.size) for s in summaries]
    )
    order = np.argsort(values, kind="stable")
    values, cumulative = values[order], np.cumsum(weights[order])
    cumulative /= cumulative[-1]
    out = np.interp(RESIDUAL_QUANTILES, cumulative, values)
    out[0], out[-1] = values[0], values[-1]
    return out


def partition_key_of(factors: list[str], random_effects: str) -> list[str]:
    """The columns every grouping factor contains (see the module docstring); ValueError when crossed."""
    column_sets = [factor.split(":") for factor in factors]
    common = [c for c in column_sets[0] if all(c in cols for cols in column_sets[1:])]
    if not common:
        raise ValueError(
            f"random_effects={random_effects!r} has crossed grouping factors {factors}: their random "
            "effects couple every partition, which a partitioned (Dask) fit does not support. Supported: "
            "one grouping factor, or factors nested in one ('(1 | clinic/user)', partitioned by clinic). "
            "Fit crossed models in memory (pandas inputs)."
        )
    return common


def fit_partitioned(estimator, source: PartitionSource, layout: PartitionLayout):
    """Fit ``estimator`` (its parameters validated) to the partitions of ``source``.

    See the module docstring. Returns the estimator, fitted as by ``fit``
    on all rows at once (the same optimum; sums in another order).
    """
    if not estimator._fits_partitioned:
        raise ValueError(
            f"{type(estimator).__name__} does not fit partitioned (Dask) data yet; fit it in memory "
            "(pandas inputs)."
        )
    estimator._clear_formula()
    controls = estimator._controls()
    estimator._family_ = estimator._get_family()
    builder = estimator._builder = estimator._design_builder()
    builder.begin_fit(layout.features)
    factors = builder.name_factors(layout.group_columns)
    key = partition_key_of(factors, estimator.random_effects)
    estimator.n_features_in_ = len(layout.features)
    estimator.feature_names_in_ = np.asarray(layout.features, dtype=object)
    held = source.hold(_hold_partition, estimator, layout, factors, key)
    try:
        scans = held.map(_scan_of)
        keys = [s.keys.to_numpy() for s in scans if s is not None]
        if keys and sum(k.size for k in keys) != pd.Index(np.concatenate(keys)).nunique():
            # some groups span partitions: shuffle the rows so that each group is whole in one
            held.release()
            source = source.repartition(key)
            held = source.hold(_hold_partition, estimator, layout, factors, key)
            scans = held.map(_scan_of)
        present = [i for i, scan in enumerate(scans) if scan is not None]
        if not present:
            raise ValueError("The data have no rows: every partition is empty.")
        held = held.subset(present)
        return _fit_held(estimator, held, [scans[i] for i in present], layout, controls, factors)
    finally:
        held.release()
        source.release()


def _fit_held(
    estimator, held: PartRunner, scans: list[_Scan], layout: PartitionLayout, controls, factors: list[str]
):
    builder = estimator._builder
    independent = independent_from_r(column_r_factor(np.vstack([s.R for s in scans])))
    levels = {f: _union_levels([s.levels[f] for s in scans]) for f in factors}
    for f in factors:
        if sum(len(s.levels[f]) for s in scans) != len(levels[f]):
            raise ValueError(
                f"The levels of the grouping factor {f!r} appear in more than one partition after partitioning "
                "by the columns all factors share; fit this model in memory."
            )
    builder.finish_fit(independent, levels)
    if estimator._y_numeric:
        ranges = [s.y_range for s in scans if s.y_range is not None]
        y_range = (min(r[0] for r in ranges), max(r[1] for r in ranges)) if ranges else (0.0, 0.0)
    else:
        encoded = estimator._prepare_y(
            np.unique(np.concatenate([s.y_labels for s in scans]))
        )  # sets classes_
        estimator._check_weighted_y(encoded, np.ones(encoded.size))
        y_range = (float(encoded.min()), float(encoded.max()))
    template = builder.transform(
        np.zeros((0, len(layout.features))),
        pd.DataFrame({c: pd.Series([], dtype=object) for c in layout.group_columns}),
    )
    local = [
        ({f: s.levels[f] for f in factors}, {f: levels[f].get_indexer(s.levels[f]) for f in factors})
        for s in scans
    ]
    parts = held.transform(_build_part, local, estimator, controls)
    held.release()
    try:
        theta_map = ThetaMap([t.q for t in template.terms], [t.theta_rows_cols for t in template.terms])
        level_counts = [t.n_levels for t in template.terms]
        options = estimator._engine_options(template)
        p = template.X.shape[1]
        if options.get("exact_gaussian"):
            problem = PartitionedLMMProblem(parts, theta_map, level_counts, p, controls, options["reml"])
        else:
            problem = PartitionedLaplaceProblem(
                parts, estimator._family_, theta_map, level_counts, p, controls, n_agq=options.get("n_agq", 1)
            )
        sampled = [
            sum(len(s.levels[t.factor]) if s.sampled is None else s.sampled[t.factor] for s in scans)
            for t in template.terms
        ]
        check_fit_summary(
            type(estimator).__name__,
            estimator._family_,
            estimator._uses_reml,
            problem.n_obs,
            y_range,
            p,
            [(t.factor, t.q, g) for t, g in zip(template.terms, sampled)],
        )
        if builder.dropped_:
            warnings.warn(
                f"Fixed-effect column(s) {builder.dropped_} are linearly dependent on "
                "earlier columns (constant, duplicated or collinear) and were dropped, as "
                "lme4 does; their coefficients are reported as 0.",
                UserWarning,
                stacklevel=4,
            )
        estimator.n_obs_ = int(problem.n_obs)
        estimator._solve_and_adopt(problem, template.terms)
        summaries = problem.residual_summaries(estimator.fit_summary_, estimator._family_, _QUANTILE_GRID)
    finally:
        parts.release()
    if estimator._y_numeric:
        total, total_sq = sum(s.sums[0] for s in scans), sum(s.sums[1] for s in scans)
    else:  # 0/1: the weighted count of classes_[1] is both sums
        total = total_sq = sum(s.weighted_response for s in summaries)
    estimator.response_summary_ = {
        "name": layout.y_name,
        "n_obs": estimator.n_obs_,
        "sum": total,
        "sum_sq": total_sq,
    }
    extremes = np.concatenate([s.mean_extremes for s in summaries])
    estimator._finish_fit(True, extremes, _merge_quantiles(summaries))
    return estimator
