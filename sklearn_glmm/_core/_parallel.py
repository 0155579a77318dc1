"""Shards evaluated on a pool of threads.

An evaluation of a problem with one grouping factor is a sum over shards of
whole levels (:mod:`._laplace`); the shards share nothing while they are
evaluated, so they can run at the same time. numpy releases the GIL inside its
large array operations (the passes over a shard's rows), so threads of one
process run them on several cores without copying the data.

:class:`ShardRunner` maps a function over shards, in the calling thread or on
its pool. The results come back in the shards' order and are summed in that
order by the caller, so a fit on ``n`` threads equals the fit on one thread
with the same shards exactly; it differs from a fit on one shard only by the
order of floating-point sums.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # typing.Self is Python >= 3.11
    from typing_extensions import Self

__all__ = ["ShardRunner"]

T = TypeVar("T")
R = TypeVar("R")


class ShardRunner:
    """Runs a function over shards on up to ``n_threads`` threads.

    The pool is started at the first call that has more than one shard to
    run and stopped by :meth:`close`; a runner with one thread never starts
    one.

    Parameters
    ----------
    n_threads : int, default=1
    """

    def __init__(self, n_threads: int = 1):
        if int(n_threads) < 1:
            raise ValueError(f"n_threads must be a positive integer; got {n_threads!r}.")
        self.n_threads = int(n_threads)
        self._pool: ThreadPoolExecutor | None = None

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``[fn(item) for item in items]``, on the pool when there is more than one item."""
        items = list(items)
        if self.n_threads == 1 or len(items) < 2:
            return [fn(item) for item in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self.n_threads, thread_name_prefix="sklearn_glmm-shard"
            )
        return list(self._pool.map(fn, items))

    def close(self) -> None:
        """Stop the pool's threads (the runner still works, in the calling thread or a new pool)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        # a pool's threads do not travel; the copy starts its own when needed
        return {"n_threads": self.n_threads, "_pool": None}
