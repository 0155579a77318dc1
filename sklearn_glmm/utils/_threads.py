"""One BLAS thread while fits run, and the process's own setting back when the last one ends.

The engine's BLAS calls are matrix-vector products over the rows, which are
memory-bound: extra BLAS threads only add synchronisation, so every fit runs
them on one thread. The BLAS thread limit is a setting of the whole process,
and threadpoolctl's ``threadpool_limits`` context restores, on exit, the value
it saw on entry. Two fits in threads that overlap would then leave the
process at one thread: the second saw the first one's limit of 1 on entry and
restores it after the first has restored the original. :class:`BlasLimiter`
counts the fits that run: the first one in records each BLAS library's
threads and lowers them, the last one out restores what the first one
recorded, through the same library handles, so concurrent fits leave the
process as they found it. (threadpoolctl's own restore pairs libraries found
anew with the values recorded by position: a library loaded while the fits
ran -- scipy's OpenBLAS on first use -- shifted the pairs.)
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager

from threadpoolctl import ThreadpoolController

__all__ = ["BlasLimiter", "single_blas_thread"]


class BlasLimiter:
    """A reference-counted BLAS thread limit shared by every fit of the process.

    Parameters
    ----------
    limit : int, default=1
        BLAS threads while at least one fit runs.
    """

    def __init__(self, limit: int = 1):
        self.limit = limit
        self._lock = threading.Lock()
        self._active = 0
        self._found: list = []
        self._scanned: tuple[int, list] | None = None

    @property
    def active(self) -> int:
        """Number of fits inside the limit now."""
        return self._active

    def _blas_libraries(self):
        # Finding the loaded libraries walks every shared object of the process
        # (milliseconds, as long as a small fit); a BLAS library arrives with an
        # extension module, so the last scan holds while no module was imported.
        n_modules = len(sys.modules)
        if self._scanned is None or self._scanned[0] != n_modules:
            libraries = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
            self._scanned = (n_modules, libraries)
        return self._scanned[1]

    @contextmanager
    def __call__(self):
        with self._lock:
            if self._active == 0:
                # the libraries' controllers are kept: the last one out restores through them
                self._found = [(lib, lib.num_threads) for lib in self._blas_libraries()]
                for lib, _ in self._found:
                    lib.set_num_threads(self.limit)
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    for lib, threads in self._found:  # one loaded during the fits keeps its own
                        lib.set_num_threads(threads)
                    self._found = []


#: the process's limiter: ``with single_blas_thread(): ...`` around every fit
single_blas_thread = BlasLimiter(1)
