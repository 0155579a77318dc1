"""Benchmark: Poisson GLMMs with two LARGE crossed factors (the sparse penalised system).

Workloads (rows assigned to (a, b) levels at random; ``y ~ Poisson(exp(0.3 +
0.2 x + b_a + b_b))`` with SDs 0.5 and 0.3), each fitted as ``y ~ x + (1 | a) +
(1 | b)``:

- ``2k``: 2,000 x 2,000 levels on 10,000 rows (target: <= 5 s);
- ``8k``: 8,000 x 8,000 levels on 40,000 rows (target: <= 1 GB peak);
- ``2m``: 20,000 users x 2,000 items on 2,000,000 rows (target: >= 10x faster than glmmTMB).

Our fit runs in a fresh subprocess per workload, which reports its wall time,
its CPU time (``time.process_time``: what the fit costs on a shared machine), its peak
resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``: the
whole process, Python, numpy and the data included; the RSS before the fit is
printed too), logLik, the SDs and the linear algebra used
(``fit_summary_.linear_algebra``). With R and glmmTMB installed, ``--peers``
fits the same data (a CSV) with glmmTMB through ``Rscript`` in the same run.
``--path dense`` forces the dense Schur complement (the previous engine, where
``m <= 8,000``) for comparison; ``--timeout`` bounds every subprocess.

    python benchmarks/crossed_sparse.py [--workloads 2k 8k 2m] [--peers] [--path dense] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

WORKLOADS = {"2k": (2000, 2000, 10_000), "8k": (8000, 8000, 40_000), "2m": (20_000, 2000, 2_000_000)}
SEED = 20261202


def simulate(n_a: int, n_b: int, n_rows: int, seed: int = SEED):
    """Rows assigned to (a, b) at random; Poisson with SDs 0.5 (a) and 0.3 (b)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n_a, n_rows)
    b = rng.integers(0, n_b, n_rows)
    x = rng.normal(size=n_rows)
    eta = 0.3 + 0.2 * x + rng.normal(0, 0.5, n_a)[a] + rng.normal(0, 0.3, n_b)[b]
    y = rng.poisson(np.exp(eta)).astype(float)
    return pd.DataFrame({"x": x}), y, pd.DataFrame({"a": a, "b": b})


CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {bench!r})
from crossed_sparse import simulate
n_a, n_b, n_rows, path = {n_a}, {n_b}, {n_rows}, {path!r}
if path == "dense":
    from sklearn_glmm._core import _sparse_system
    _sparse_system.DENSE_COUPLING_ENTRIES = 10**12
from sklearn_glmm import PoissonGLMMRegressor
X, y, groups = simulate(n_a, n_b, n_rows)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0, c0 = time.perf_counter(), time.process_time()
model = PoissonGLMMRegressor("(1 | a) + (1 | b)").fit(X, y, groups=groups)
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
sd = model.varcorr_.set_index("group")["sdcor"]
print(json.dumps({{"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_before_fit_mb": before, "loglik": float(model.loglik_), "sd_a": float(sd["a"]),
                  "sd_b": float(sd["b"]), "fixef": model.fixef_.round(6).to_dict(),
                  "n_evals": int(model.fit_summary_.n_evals), "converged": bool(model.converged_),
                  "linear_algebra": model.fit_summary_.linear_algebra}}))
"""

R_SCRIPT = r"""
args <- commandArgs(TRUE); d <- read.csv(args[1]); d$a <- factor(d$a); d$b <- factor(d$b)
suppressMessages(library(glmmTMB))
t <- system.time(m <- glmmTMB(y ~ x + (1 | a) + (1 | b), data = d, family = poisson))[["elapsed"]]
sd <- sapply(VarCorr(m)$cond, function(v) attr(v, "stddev"))
cat(sprintf('{"seconds": %.3f, "loglik": %.6f, "sd_a": %.6f, "sd_b": %.6f, "version": "%s"}\n', t,
            as.numeric(logLik(m)), sd[["a.(Intercept)"]], sd[["b.(Intercept)"]], packageVersion("glmmTMB")))
"""


def fit_ours(name: str, path: str, timeout: float) -> dict:
    n_a, n_b, n_rows = WORKLOADS[name]
    code = CHILD.format(
        bench=str(Path(__file__).resolve().parent), n_a=n_a, n_b=n_b, n_rows=n_rows, path=path
    )
    try:
        run = subprocess.run(
            [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"skipped": f"timed out after {timeout:.0f} s"}
    if run.returncode != 0:
        return {"skipped": (run.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(run.stdout.strip().splitlines()[-1])


def fit_glmmtmb(name: str, timeout: float) -> dict:
    if shutil.which("Rscript") is None:
        return {"skipped": "Rscript not found"}
    X, y, groups = simulate(*WORKLOADS[name])
    with tempfile.TemporaryDirectory() as tmp:
        csv, script = Path(tmp) / "d.csv", Path(tmp) / "fit.R"
        pd.concat([X, groups], axis=1).assign(y=y).to_csv(csv, index=False, float_format="%.17g")
        script.write_text(R_SCRIPT)
        try:
            run = subprocess.run(
                ["Rscript", str(script), str(csv)],
                check=False,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return {"skipped": f"timed out after {timeout:.0f} s"}
        if run.returncode != 0:
            return {"skipped": (run.stderr.strip().splitlines() or ["failed"])[-1]}
        return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", choices=sorted(WORKLOADS), default=["2k", "8k", "2m"])
    parser.add_argument("--peers", action="store_true", help="also fit with glmmTMB (Rscript)")
    parser.add_argument(
        "--path",
        choices=["auto", "dense"],
        default="auto",
        help="dense: force the dense Schur complement (the previous engine) where it applies",
    )
    parser.add_argument("--no-ours", action="store_true", help="run only the peer (with --peers)")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    results = {}
    for name in args.workloads:
        n_a, n_b, n_rows = WORKLOADS[name]
        print(f"[{name}] {n_a:,} x {n_b:,} levels, {n_rows:,} rows (truth: SD a 0.5, SD b 0.3)", flush=True)
        row = results[name] = {"levels": [n_a, n_b], "rows": n_rows}
        ours = row["sklearn_glmm"] = (
            {"skipped": "--no-ours"} if args.no_ours else fit_ours(name, args.path, args.timeout)
        )
        if "skipped" in ours:
            print(f"  sklearn_glmm: skipped ({ours['skipped']})", flush=True)
        else:
            print(
                f"  sklearn_glmm: {ours['seconds']:.2f} s (CPU {ours['cpu_seconds']:.2f} s), peak RSS {ours['peak_rss_mb']:.0f} MB "
                f"({ours['rss_before_fit_mb']:.0f} MB before the fit), logLik {ours['loglik']:.4f}, "
                f"SD a {ours['sd_a']:.4f}, SD b {ours['sd_b']:.4f}, {ours['n_evals']} evaluations, "
                f"converged {ours['converged']}\n  linear algebra: {ours['linear_algebra']}",
                flush=True,
            )
        if args.peers:
            peer = row["glmmTMB"] = fit_glmmtmb(name, args.timeout)
            if "skipped" in peer:
                print(f"  glmmTMB: skipped ({peer['skipped']})", flush=True)
            else:
                text = (
                    f"  glmmTMB {peer['version']}: {peer['seconds']:.2f} s, logLik {peer['loglik']:.4f}, "
                    f"SD a {peer['sd_a']:.4f}, SD b {peer['sd_b']:.4f}"
                )
                if "skipped" not in ours:
                    text += (
                        f"; glmmTMB / ours time {peer['seconds'] / ours['seconds']:.1f}x, "
                        f"logLik ours - glmmTMB {ours['loglik'] - peer['loglik']:+.6f}"
                    )
                print(text, flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
