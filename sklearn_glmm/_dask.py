"""Estimators on Dask DataFrames: one fit partitioned over a ``dask.distributed`` cluster.

``fit(X, y, groups=...)`` with X a ``dask.dataframe.DataFrame`` (y, groups,
``sample_weight`` and ``offset`` Dask Series of the same partitions, or the
grouping columns in X with ``group_column=``) runs
:func:`~sklearn_glmm._partitioned_fit.fit_partitioned` on the partitions,
on the workers of the current ``distributed.Client``: each partition builds
its part of the model where it lives and keeps it for the fit, the solver
runs in this process and sends only the parameters; the random effects
(``O(levels)``) come back at the end. Partitions that do not hold whole
groups are shuffled by the grouping columns first (one pass of every row
over the network) and the result persisted for the fit.

``predict``, ``predict_proba`` and ``decision_function`` on Dask inputs
return Dask collections (``map_partitions``); ``score`` returns a number
computed on the cluster.

Nothing here imports Dask until a Dask input arrives: ``dask[dataframe,distributed]``
is an optional extra (``pip install '.[dask]'`` from a checkout). The partitioned fit
(:mod:`sklearn_glmm._partitioned_fit` and the engine's partitioned problems) is
imported then too, so ``import sklearn_glmm`` does not pay for it.
"""

from __future__ import annotations

import copy
import functools
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

if TYPE_CHECKING:
    from ._partitioned_fit import PartitionLayout

__all__ = ["is_dask_collection", "dask_aware", "fit_dask"]

_EXTRA = "pip install 'dask[dataframe,distributed]', or pip install '.[dask]' in a checkout of sklearn_glmm"


def is_dask_collection(obj: Any) -> bool:
    """Whether ``obj`` is a Dask collection (checked without importing Dask)."""
    return type(obj).__module__.split(".")[0] in ("dask", "dask_expr")


def _require_distributed():
    try:
        import dask.dataframe  # noqa: F401
        import distributed
    except ImportError as error:  # pragma: no cover - the test environment has the extra
        raise ImportError(f"Fitting Dask inputs needs dask[dataframe] and distributed: {_EXTRA}.") from error
    return distributed


def _client():
    distributed = _require_distributed()
    try:
        return distributed.get_client()
    except ValueError as error:
        raise ValueError(
            "X is a Dask DataFrame, but there is no dask.distributed Client: create one first, e.g. "
            "`from distributed import Client, LocalCluster; client = Client(LocalCluster())`."
        ) from error


# -- inputs ----------------------------------------------------------------------------
def _series_or_none(name: str, value):
    if value is None or is_dask_collection(value):
        return value
    raise TypeError(
        f"{name} must be a Dask Series (or None) when X is a Dask DataFrame; got {type(value).__name__}. "
        "Give every input in the same partitions, e.g. as columns of one Dask DataFrame."
    )


def _frame_and_layout(estimator, X, y, groups, sample_weight, offset, *, need_y: bool):
    """One Dask DataFrame with the inputs under the partition layout's names."""
    import dask.dataframe as dd

    from ._partitioned_fit import OFFSET_COLUMN, WEIGHT_COLUMN, Y_COLUMN, PartitionLayout

    if not isinstance(X, dd.DataFrame):
        raise TypeError(f"X must be a Dask DataFrame for a partitioned fit; got {type(X).__name__}.")
    columns = [str(c) for c in X.columns]
    if estimator.group_column is not None:
        if groups is not None:
            raise ValueError(
                f"groups was passed although group_column={estimator.group_column!r} takes the grouping "
                "factor from X; use one or the other."
            )
        group_columns = (
            estimator.group_column if isinstance(estimator.group_column, list) else [estimator.group_column]
        )
        missing = [c for c in group_columns if c not in columns]
        if missing:
            raise ValueError(f"group_column={missing[0]!r} is not a column of X; X has columns {columns}.")
        frame = X
    elif groups is None:
        raise ValueError(
            "A Dask fit needs groups: pass groups= as a Dask Series (or DataFrame) in X's partitions, or "
            "set group_column= to the grouping column(s) of X."
        )
    else:
        groups = _series_or_none("groups", groups)
        if isinstance(groups, dd.DataFrame):
            group_columns = [str(c) for c in groups.columns]
            frame = X.assign(**{c: groups[c] for c in group_columns})
        else:
            name = "group" if groups.name is None else str(groups.name)
            group_columns = [name]
            frame = X.assign(**{name: groups})
        clash = [c for c in group_columns if c in columns]
        if clash:
            raise ValueError(
                f"groups' column(s) {clash} are also columns of X; rename them or use group_column=."
            )
    features = [c for c in columns if c not in group_columns]
    assign = {}
    if need_y:
        if y is None:
            raise ValueError("y is required.")
        assign[Y_COLUMN] = _series_or_none("y", y)
    if sample_weight is not None:
        assign[WEIGHT_COLUMN] = _series_or_none("sample_weight", sample_weight)
    if offset is not None:
        assign[OFFSET_COLUMN] = _series_or_none("offset", offset)
    if assign:
        frame = frame.assign(**assign)
    y_name = "y" if y is None or getattr(y, "name", None) is None else str(y.name)
    layout = PartitionLayout(features, group_columns, sample_weight is not None, offset is not None, y_name)
    return frame, layout


# -- the source of partitions ----------------------------------------------------------
class DaskParts:
    """Parts kept on the workers as futures (see :class:`~sklearn_glmm._core._partitioned.PartRunner`)."""

    def __init__(self, client, futures: list):
        self.client = client
        self.futures = list(futures)

    def _submit(self, fn, per_part, args) -> list:
        extras = [()] * len(self.futures) if per_part is None else [(extra,) for extra in per_part]
        return [
            self.client.submit(fn, part, *extra, *args, pure=False)
            for part, extra in zip(self.futures, extras)
        ]

    def map(self, fn, *args) -> list:
        return _gather(self.client, self._submit(fn, None, args))

    def map_each(self, fn, per_part: list, *args) -> list:
        return _gather(self.client, self._submit(fn, per_part, args))

    def transform(self, fn, per_part: list, *args) -> DaskParts:
        futures = self._submit(fn, per_part, args)
        _gather(
            self.client, [self.client.submit(_done, f, pure=False) for f in futures]
        )  # errors surface here
        return DaskParts(self.client, futures)

    def subset(self, keep: list[int]) -> DaskParts:
        return DaskParts(self.client, [self.futures[i] for i in keep])

    def release(self) -> None:
        self.futures = []  # the futures' keys are released with their last reference


def _done(part) -> bool:
    return True


def _gather(client, futures: list) -> list:
    from distributed import KilledWorker

    try:
        return client.gather(futures)
    except KilledWorker as error:
        raise RuntimeError(
            "A Dask worker died repeatedly while running a part of the fit (out of memory?); the fit was "
            f"stopped. {error}"
        ) from error


class DaskSource:
    """The partitions of a Dask DataFrame on a ``distributed`` client (see :class:`PartitionSource`)."""

    def __init__(self, client, frame, persisted: bool = False):
        self.client = client
        self.frame = frame
        self.persisted = persisted
        self.n_partitions = frame.npartitions

    def hold(self, fn, *args) -> DaskParts:
        import dask

        shared = [dask.delayed(a, pure=True) for a in args]
        tasks = [dask.delayed(fn, pure=False)(part, *shared) for part in self.frame.to_delayed()]
        return DaskParts(self.client, self.client.compute(tasks))

    def repartition(self, columns: list[str]) -> DaskSource:
        shuffled = self.frame.shuffle(on=columns, npartitions=self.n_partitions)
        return DaskSource(self.client, self.client.persist(shuffled), persisted=True)

    def release(self) -> None:
        if self.persisted:
            self.frame = None


# -- the estimator's entry points ----------------------------------------------------------
def fit_dask(estimator, X, y, groups=None, sample_weight=None, offset=None):
    """``estimator.fit`` on Dask inputs (see the module docstring)."""
    from ._partitioned_fit import fit_partitioned

    client = _client()
    frame, layout = _frame_and_layout(estimator, X, y, groups, sample_weight, offset, need_y=True)
    return fit_partitioned(estimator, DaskSource(client, frame), layout)


def _call_on_partition(
    frame: pd.DataFrame, estimator, method, layout: PartitionLayout, kwargs: dict, meta=None
):
    from ._partitioned_fit import OFFSET_COLUMN

    if len(frame) == 0 and meta is not None:
        return meta.set_axis(frame.index[:0]) if len(meta.index) == 0 else meta
    groups = frame[layout.group_columns] if len(layout.group_columns) > 1 else frame[layout.group_columns[0]]
    offset = frame[OFFSET_COLUMN].to_numpy() if layout.offset else None
    out = method(
        _without_group_column(estimator), frame[layout.features], groups=groups, offset=offset, **kwargs
    )
    if np.ndim(out) == 2:
        return pd.DataFrame(out, index=frame.index)
    return pd.Series(out, index=frame.index)


def _without_group_column(estimator):
    """The fitted estimator taking its groups from the ``groups`` argument (partitions pass them apart)."""
    if estimator.group_column is None:
        return estimator
    clone = copy.copy(estimator)
    clone.group_column = None
    return clone


def _meta(estimator, method, layout: PartitionLayout, kwargs: dict):
    """The empty result of ``method`` with its dtypes (from one synthetic row of known levels)."""
    from ._partitioned_fit import OFFSET_COLUMN

    levels = estimator._builder.levels_
    row = {f: [0.0] for f in layout.features}
    for column in layout.group_columns:
        row[column] = [levels[column][0] if column in levels else "__meta__"]
    clone = copy.copy(estimator)
    clone.new_groups = "population"
    if layout.offset:
        row[OFFSET_COLUMN] = [0.0]
    return _call_on_partition(pd.DataFrame(row), clone, method, layout, kwargs).iloc[:0]


def dask_aware(method):
    """Run a prediction method on every partition when X is a Dask DataFrame (a Dask result)."""

    @functools.wraps(method)
    def wrapper(self, X=None, *args, **kwargs):
        if not is_dask_collection(X):
            return method(self, X, *args, **kwargs)
        if args:
            raise TypeError(f"{method.__name__} on Dask inputs takes its other arguments by keyword.")
        _require_distributed()
        check_is_fitted(self, "fixef_")
        groups, offset = kwargs.pop("groups", None), kwargs.pop("offset", None)
        frame, layout = _frame_and_layout(self, X, None, groups, None, offset, need_y=False)
        meta = _meta(self, method, layout, kwargs)
        return frame.map_partitions(_call_on_partition, self, method, layout, kwargs, meta, meta=meta)

    return wrapper


def score_dask(estimator, X, y, groups=None, sample_weight=None, offset=None) -> float:
    """``score`` on Dask inputs: the same number as on all rows at once, computed on the cluster."""
    import dask

    _client()
    frame, layout = _frame_and_layout(estimator, X, y, groups, sample_weight, offset, need_y=True)
    partitions = frame.to_delayed()
    shared = dask.delayed(estimator, pure=True)

    def on_partitions(fn, *args):
        return list(
            dask.compute(*[dask.delayed(fn, pure=False)(p, shared, layout, *args) for p in partitions])
        )

    sums = [s for s in on_partitions(_score_sums) if s is not None]
    return estimator._score_from_sums(sums, lambda mean: on_partitions(_null_deviance, mean))


def _partition_inputs(frame: pd.DataFrame, layout: PartitionLayout):
    from ._partitioned_fit import OFFSET_COLUMN, WEIGHT_COLUMN, Y_COLUMN

    groups = frame[layout.group_columns] if len(layout.group_columns) > 1 else frame[layout.group_columns[0]]
    w = frame[WEIGHT_COLUMN].to_numpy() if layout.weights else None
    offset = frame[OFFSET_COLUMN].to_numpy() if layout.offset else None
    return frame[layout.features], frame[Y_COLUMN].to_numpy(), groups, w, offset


def _score_sums(frame: pd.DataFrame, estimator, layout: PartitionLayout):
    if len(frame) == 0:
        return None
    X, y, groups, w, offset = _partition_inputs(frame, layout)
    return _without_group_column(estimator)._score_sums(X, y, groups, w, offset)


def _null_deviance(frame: pd.DataFrame, estimator, layout: PartitionLayout, mean: float) -> float:
    if len(frame) == 0:
        return 0.0
    X, y, _groups, w, _offset = _partition_inputs(frame, layout)
    return _without_group_column(estimator)._null_deviance(X, y, w, mean)
