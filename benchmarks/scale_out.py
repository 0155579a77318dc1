"""Scaling out: one fit on all cores (n_jobs) and one fit partitioned on a Dask cluster.

Three commands (each prints a table; nothing here is a test):

``generate``
    Writes a ``make_app_engagement`` panel as Parquet files of whole users
    (``--users-per-file`` users each), one file at a time, so the panel is
    never in memory: 200,000 users x 180 days = 36M rows by default.
``dask``
    Fits the Poisson random intercept (``--model``) to those files on a
    ``LocalCluster(n_workers=2, threads_per_worker=1)`` and reports the wall
    time (setup and fit), the peak resident memory of this process (the
    driver) and of each worker (sampled every 0.2 s), the logLik and the
    fixed effects.
``threads``
    In memory: ``n_jobs=2`` against ``n_jobs=1`` for the Poisson random
    intercept, correlated slope and binomial models at sizes M (2,000 users)
    and L (20,000 users) x 180 days, alternating the two in each round; the
    ratio of the medians (the machine is shared and noisy).

Run as::

    python benchmarks/scale_out.py generate /tmp/panel36m
    python benchmarks/scale_out.py dask /tmp/panel36m
    python benchmarks/scale_out.py threads --sizes M L --rounds 3
"""

from __future__ import annotations

import argparse
import gc
import os
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

FEATURES = ["day_centered", "notifications", "weekend", "mood"]
MODELS = {
    "ri": ("PoissonGLMMRegressor", "(1 | user_id)"),
    "rs": ("PoissonGLMMRegressor", "(1 + day_centered | user_id)"),
    "binomial_ri": ("BinomialGLMMClassifier", "(1 | user_id)"),
}
SIZES = {"M": 2_000, "L": 20_000}
N_DAYS = 180


# -- generate -------------------------------------------------------------------------
def generate(folder: str, n_users: int, n_days: int, users_per_file: int, seed: int) -> None:
    from sklearn_glmm.datasets import make_app_engagement

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    n_files = -(-n_users // users_per_file)
    rows = 0
    for i in range(n_files):
        users = min(users_per_file, n_users - i * users_per_file)
        chunk = make_app_engagement(users, n_days, random_state=seed + i)
        # integer user ids, unique over the files
        chunk["user_id"] = i * users_per_file + pd.factorize(chunk["user_id"])[0]
        chunk = chunk[["user_id"] + FEATURES + ["logins"]]
        chunk.to_parquet(out / f"part-{i:05d}.parquet", index=False)
        rows += len(chunk)
        del chunk
    print(
        f"wrote {rows:,} rows ({n_users:,} users x {n_days} days) in {n_files} files to {out} "
        f"in {time.perf_counter() - t0:.1f} s"
    )


# -- dask ---------------------------------------------------------------------------------
class PeakMemory:
    """Peak resident set size of some processes, sampled on a thread."""

    def __init__(self, pids: dict[str, int], interval: float = 0.2):
        import psutil

        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak = dict.fromkeys(pids, 0)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for name, process in self.processes.items():
                try:
                    self.peak[name] = max(self.peak[name], process.memory_info().rss)
                except Exception:  # a process that restarted or ended
                    pass
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def fit_dask(folder: str, model: str, n_workers: int) -> None:
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    import sklearn_glmm

    name, random_effects = MODELS[model]
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            memory_limit="8GiB",
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(lambda: __import__("sklearn_glmm"))  # imports are not the fit's cost
        pids = {
            "driver": os.getpid(),
            **{f"worker {i}": pid for i, pid in enumerate(sorted(client.run(os.getpid).values()))},
        }
        data = dd.read_parquet(folder)
        n_rows = int(data.map_partitions(len).compute().sum())
        estimator = getattr(sklearn_glmm, name)(random_effects, group_column="user_id", verbose=1)
        response = (data["logins"] > 0).astype(int) if name == "BinomialGLMMClassifier" else data["logins"]
        gc.collect()
        with PeakMemory(pids) as memory:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                estimator.fit(data[["user_id"] + FEATURES], response)
            wall = time.perf_counter() - t0
    timings = estimator.fit_summary_.timings
    print(
        f"\n{model} on {n_rows:,} rows in {data.npartitions} partitions, LocalCluster(n_workers={n_workers}, "
        "threads_per_worker=1)"
    )
    print(
        f"  wall time of fit: {wall:.1f} s (solver {timings.get('total', float('nan')):.1f} s, "
        f"{estimator.fit_summary_.n_evals} evaluations)"
    )
    for process, peak in memory.peak.items():
        print(f"  peak RSS {process:9s}: {peak / 2**30:.2f} GiB")
    print(
        f"  logLik {estimator.loglik_:.6f}; fixef {np.round(estimator.fixef_.to_numpy(), 6).tolist()}; "
        f"theta {np.round(estimator.theta_, 6).tolist()}; converged {estimator.converged_}"
    )


# -- threads ------------------------------------------------------------------------------
def compare_threads(sizes: list[str], models: list[str], rounds: int, seed: int) -> None:
    import sklearn_glmm
    from sklearn_glmm.datasets import make_app_engagement

    print(
        f"{'size':4s} {'model':12s} {'n_jobs=1 s':>11s} {'n_jobs=2 s':>11s} {'ratio 2/1':>9s} {'|dlogLik|/|logLik|':>18s}"
    )
    for size in sizes:
        data = make_app_engagement(SIZES[size], N_DAYS, random_state=seed)
        for model in models:
            name, random_effects = MODELS[model]
            y = (data["logins"] > 0).astype(int) if name == "BinomialGLMMClassifier" else data["logins"]
            times = {1: [], 2: []}
            logliks = {}
            for _ in range(rounds):
                for n_jobs in (1, 2):
                    estimator = getattr(sklearn_glmm, name)(random_effects, n_jobs=n_jobs)
                    gc.collect()
                    t0 = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        estimator.fit(data[FEATURES], y, groups=data["user_id"])
                    times[n_jobs].append(time.perf_counter() - t0)
                    logliks[n_jobs] = estimator.loglik_
            one, two = np.median(times[1]), np.median(times[2])
            rel = abs(logliks[2] - logliks[1]) / abs(logliks[1])
            print(f"{size:4s} {model:12s} {one:11.3f} {two:11.3f} {two / one:9.2f} {rel:18.1e}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate")
    g.add_argument("folder")
    g.add_argument("--users", type=int, default=200_000)
    g.add_argument("--days", type=int, default=180)
    g.add_argument("--users-per-file", type=int, default=5_000)
    g.add_argument("--seed", type=int, default=0)
    d = sub.add_parser("dask")
    d.add_argument("folder")
    d.add_argument("--model", choices=list(MODELS), default="ri")
    d.add_argument("--workers", type=int, default=2)
    t = sub.add_parser("threads")
    t.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["M", "L"])
    t.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    t.add_argument("--rounds", type=int, default=3)
    t.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.command == "generate":
        generate(args.folder, args.users, args.days, args.users_per_file, args.seed)
    elif args.command == "dask":
        fit_dask(args.folder, args.model, args.workers)
    else:
        compare_threads(args.sizes, args.models, args.rounds, args.seed)


if __name__ == "__main__":
    main()
