"""Benchmark: linear mixed models with crossed factors and many random-effect terms, against lme4.

Two workloads (issue 15), each fitted by ML with ``GaussianLMMRegressor`` and,
in the same run when ``Rscript`` and lme4 are installed, with ``lme4::lmer``
(default control: ``nloptwrap``):

- ``insteval``: lme4's ``InstEval`` (73,421 ratings), ``y ~ service + (1 | s)
  + (1 | d) + (1 | dept:service)``. The data come from lme4 itself: exported
  to CSV by ``Rscript`` into ``--cache-dir`` (default: a directory under the
  system's temp dir). Without R the workload is skipped, with the reason.
- ``kb07``: a kb07-like maximal model simulated from a fixed seed: 56
  subjects x 32 items (1,792 rows), three +-0.5 coded two-level predictors,
  ``rt ~ spkr + prec + load + (1 + spkr + prec + load | subj) + (1 + spkr +
  prec + load | item)``.

Printed per workload: median seconds of ours and lme4's (``system.time``
around ``lmer``, reading the CSV excluded), the ratio lme4 / ours, both
log-likelihoods and our deviance evaluations, with the median seconds of our
set-up (``LMMProblem`` construction: the theta-free cross-products) and per
evaluation (``LMMProblem.evaluate``, with its gradient when asked). Not a
unit test.

    python benchmarks/crossed_speed.py [--workloads insteval kb07] [--repeats 3] [--no-peers]
        [--package-path DIR] [--blas-threads N] [--json out.json]

``--package-path DIR`` imports ``sklearn_glmm`` from DIR (e.g. ``git archive
<commit> sklearn_glmm | tar -x -C DIR``) to time another version in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

FORMULAS = {
    "insteval": "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)",
    "kb07": "rt ~ spkr + prec + load + (1 + spkr + prec + load | subj) + (1 + spkr + prec + load | item)",
}

EXPORT_INSTEVAL = r"""
suppressMessages(library(lme4))
d <- InstEval
d$service <- as.integer(d$service == "1")
write.csv(d[, c("s", "d", "dept", "service", "y")], commandArgs(TRUE)[1], row.names = FALSE)
"""

R_FIT = r"""
args <- commandArgs(TRUE); suppressMessages(library(lme4))
d <- read.csv(args[1])
for (f in strsplit(args[3], ",")[[1]]) d[[f]] <- factor(d[[f]])
t <- system.time(m <- lmer(as.formula(args[2]), data = d, REML = FALSE))[["elapsed"]]
cat(sprintf('{"seconds": %.4f, "loglik": %.8f, "n_evals": %d, "lme4": "%s"}\n', t, as.numeric(logLik(m)),
            as.integer(m@optinfo$feval), as.character(packageVersion("lme4"))))
"""


def simulate_kb07(seed: int = 20261202) -> pd.DataFrame:
    """56 subjects x 32 items, every pair once; correlated random intercepts and slopes on both."""
    rng = np.random.default_rng(seed)
    n_subj, n_item = 56, 32
    subj = np.repeat(np.arange(n_subj), n_item)
    item = np.tile(np.arange(n_item), n_subj)
    # within-subject, between-item conditions in a balanced design
    spkr = np.where(item % 2 == 0, -0.5, 0.5)
    prec = np.where((item // 2) % 2 == 0, -0.5, 0.5)
    load = np.where((item + subj) % 2 == 0, -0.5, 0.5)
    Z = np.column_stack([np.ones(subj.size), spkr, prec, load])

    def effects(n, sds, corr):
        cov = np.outer(sds, sds) * (corr + (1 - corr) * np.eye(4))
        return rng.multivariate_normal(np.zeros(4), cov, size=n)

    b_subj = effects(n_subj, np.array([300.0, 60.0, 40.0, 30.0]), 0.3)
    b_item = effects(n_item, np.array([350.0, 80.0, 200.0, 20.0]), -0.2)
    rt = (
        2180
        + 70 * spkr
        - 330 * prec
        + 80 * load
        + np.sum(Z * b_subj[subj], axis=1)
        + np.sum(Z * b_item[item], axis=1)
        + rng.normal(0, 600, subj.size)
    )
    return pd.DataFrame(
        {
            "subj": "S" + pd.Series(subj).astype(str),
            "item": "I" + pd.Series(item).astype(str),
            "spkr": spkr,
            "prec": prec,
            "load": load,
            "rt": rt,
        }
    )


def load_insteval(cache_dir: Path) -> tuple[pd.DataFrame | None, str]:
    """lme4's InstEval (exported once by Rscript into ``cache_dir``), or None and the reason."""
    path = cache_dir / "InstEval.csv"
    if not path.exists():
        if shutil.which("Rscript") is None:
            return None, "Rscript not found: InstEval comes from lme4"
        cache_dir.mkdir(parents=True, exist_ok=True)
        script = cache_dir / "export_insteval.R"
        script.write_text(EXPORT_INSTEVAL)
        done = subprocess.run(
            ["Rscript", str(script), str(path)], check=False, capture_output=True, text=True
        )
        if done.returncode != 0 or not path.exists():
            return None, f"exporting lme4::InstEval failed: {done.stderr.strip()[-300:]}"
    data = pd.read_csv(path)
    for column in ("s", "d", "dept"):
        data[column] = data[column].astype(str)
    return data, ""


class _Stopwatch:
    """Seconds spent in ``LMMProblem.__init__`` (the set-up) and ``LMMProblem.evaluate`` during a fit.

    Wraps the two methods for the duration of a ``with`` block (nested calls
    counted once); both exist in every version this script times.
    """

    def __init__(self):
        from sklearn_glmm._core import _lmm

        self.cls, self.setup, self.evaluations, self.n_evaluations, self._depth = (
            _lmm.LMMProblem,
            0.0,
            0.0,
            0,
            0,
        )

    def _wrap(self, method, field):
        def timed(*args, **kwargs):
            self._depth += 1
            t0 = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    setattr(self, field, getattr(self, field) + time.perf_counter() - t0)
                    if field == "evaluations":
                        self.n_evaluations += 1

        return timed

    def __enter__(self):
        self._saved = (self.cls.__init__, self.cls.evaluate)
        self.cls.__init__ = self._wrap(self._saved[0], "setup")
        self.cls.evaluate = self._wrap(self._saved[1], "evaluations")
        return self

    def __exit__(self, *exc):
        self.cls.__init__, self.cls.evaluate = self._saved


def fit_ours(formula: str, data: pd.DataFrame, repeats: int):
    from sklearn_glmm import GaussianLMMRegressor

    times, setups, per_evaluation, model = [], [], [], None
    for _ in range(repeats):
        with warnings.catch_warnings(record=True) as caught, _Stopwatch() as watch:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            model = GaussianLMMRegressor.from_formula(formula, data, reml=False)
            times.append(time.perf_counter() - t0)
        setups.append(watch.setup)
        per_evaluation.append(watch.evaluations / max(watch.n_evaluations, 1))
    summary = model.fit_summary_
    return {
        "seconds": statistics.median(times),
        "all_seconds": [round(t, 4) for t in times],
        "setup_seconds": statistics.median(setups),
        "seconds_per_evaluation": statistics.median(per_evaluation),
        "loglik": float(model.loglik_),
        "n_evals": int(summary.n_evals),
        "warnings": sorted({f"{w.category.__name__}: {w.message}" for w in caught}),
    }


def fit_lme4(formula: str, data: pd.DataFrame, factors: list[str], repeats: int):
    if shutil.which("Rscript") is None:
        return {"skipped": "Rscript not found"}
    with tempfile.TemporaryDirectory() as tmp:
        csv, script = Path(tmp) / "d.csv", Path(tmp) / "fit.R"
        data.to_csv(csv, index=False, float_format="%.17g")
        script.write_text(R_FIT)
        runs = []
        for _ in range(repeats):
            done = subprocess.run(
                ["Rscript", str(script), str(csv), formula, ",".join(factors)],
                check=False,
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                return {"skipped": f"lme4 failed: {done.stderr.strip()[-300:]}"}
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    out = dict(runs[-1])
    out["all_seconds"] = [r["seconds"] for r in runs]
    out["seconds"] = statistics.median(out["all_seconds"])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["insteval", "kb07"], choices=sorted(FORMULAS))
    parser.add_argument("--repeats", type=int, default=3, help="fits per measurement (median reported)")
    parser.add_argument("--peer-repeats", type=int, default=1)
    parser.add_argument("--no-peers", action="store_true", help="do not run lme4")
    parser.add_argument("--package-path", help="import sklearn_glmm from this directory")
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "sklearn_glmm_bench"))
    parser.add_argument("--json", help="write the rows as JSON")
    parser.add_argument(
        "--blas-threads",
        type=int,
        help="limit BLAS threads for our fits (threadpoolctl) and R's "
        "(OMP/OPENBLAS/MKL_NUM_THREADS); on a busy 2-core machine 1 is often faster",
    )
    args = parser.parse_args(argv)
    if args.blas_threads:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(args.blas_threads)
        import scipy.linalg  # noqa: F401  (scipy's own BLAS is loaded with it: limit that one too)
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.blas_threads)
    if args.package_path:
        sys.path.insert(0, str(Path(args.package_path).resolve()))
    import sklearn_glmm

    print(f"sklearn_glmm from {Path(sklearn_glmm.__file__).parent}")
    rows = {}
    for name in args.workloads:
        if name == "insteval":
            data, reason = load_insteval(Path(args.cache_dir))
            factors = ["s", "d", "dept", "service"]
        else:
            data, reason = simulate_kb07(), ""
            factors = ["subj", "item"]
        if data is None:
            rows[name] = {"skipped": reason}
            print(f"{name}: skipped ({reason})")
            continue
        # one untimed warm-up fit (lazy imports, first-call overheads)
        fit_ours(FORMULAS[name], data.iloc[: min(len(data), 2000)], 1)
        ours = fit_ours(FORMULAS[name], data, args.repeats)
        peer = (
            {"skipped": "--no-peers"}
            if args.no_peers
            else fit_lme4(FORMULAS[name], data, factors, args.peer_repeats)
        )
        row = {"rows": len(data), "formula": FORMULAS[name], "ours": ours, "lme4": peer}
        if "seconds" in peer:
            row["ratio"] = peer["seconds"] / ours["seconds"]
            row["loglik_gap_relative"] = (ours["loglik"] - peer["loglik"]) / abs(peer["loglik"])
        rows[name] = row
        line = (
            f"{name} ({len(data):,} rows): ours {ours['seconds']:.3f} s, {ours['n_evals']} evaluations "
            f"({ours['seconds_per_evaluation']:.4f} s each), set-up {ours['setup_seconds']:.3f} s, "
            f"logLik {ours['loglik']:.6f}"
        )
        if "seconds" in peer:
            line += (
                f"; lme4 {peer['seconds']:.3f} s ({peer['n_evals']} evaluations), logLik {peer['loglik']:.6f};"
                f" ratio lme4/ours {row['ratio']:.1f}x; (ours - lme4)/|lme4| logLik "
                f"{row['loglik_gap_relative']:.2e}"
            )
        else:
            line += f"; lme4 skipped ({peer['skipped']})"
        print(line)
        for w in ours["warnings"]:
            print(f"  our warning: {w}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
