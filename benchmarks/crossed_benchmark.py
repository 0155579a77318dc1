"""Benchmark: a Poisson GLMM with two crossed factors, 5,000 x 200 levels, 1M rows.

Simulates ``y ~ Poisson(exp(0.3 + 0.2 x + b_user + b_day))`` with user SD 0.5
and day SD 0.3 on a complete 5,000 users x 200 days grid (1M rows), fits
``(1 | user) + (1 | day)`` and reports fit time, peak memory (tracemalloc,
numpy allocations included) and the recovered SDs. With ``--peers`` and R
installed it fits the same data with glmmTMB (and lme4 with ``--lme4``,
which takes long) through ``Rscript``; a missing peer is skipped.

    python benchmarks/crossed_benchmark.py [--users 5000 --days 200] [--peers] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd


def simulate(n_users: int, n_days: int, seed: int = 20261130):
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(n_users), n_days)
    day = np.tile(np.arange(n_days), n_users)
    x = rng.normal(size=user.size)
    eta = 0.3 + 0.2 * x + rng.normal(0, 0.5, n_users)[user] + rng.normal(0, 0.3, n_days)[day]
    y = rng.poisson(np.exp(eta)).astype(float)
    return pd.DataFrame({"x": x}), y, pd.DataFrame({"user": user, "day": day})


def fit_ours(X, y, groups, verbose=0):
    from sklearn_glmm import PoissonGLMMRegressor

    tracemalloc.start()
    t0 = time.perf_counter()
    model = PoissonGLMMRegressor("(1 | user) + (1 | day)", verbose=verbose).fit(X, y, groups=groups)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    sd = model.varcorr_.set_index("group")["sdcor"]
    return {
        "seconds": seconds,
        "peak_mb": peak / 2**20,
        "loglik": model.loglik_,
        "sd_user": float(sd["user"]),
        "sd_day": float(sd["day"]),
        "fixef": model.fixef_.round(6).to_dict(),
        "n_evals": model.fit_summary_.n_evals,
        "timings": {k: round(v, 3) for k, v in model.fit_summary_.timings.items()},
    }


R_SCRIPT = r"""
args <- commandArgs(TRUE); d <- read.csv(args[1]); d$user <- factor(d$user); d$day <- factor(d$day)
out <- list()
if (args[2] == "glmmTMB") { suppressMessages(library(glmmTMB))
  t <- system.time(m <- glmmTMB(y ~ x + (1 | user) + (1 | day), data = d, family = poisson))[["elapsed"]]
  sd <- sapply(VarCorr(m)$cond, function(v) attr(v, "stddev"))
} else { suppressMessages(library(lme4))
  t <- system.time(m <- glmer(y ~ x + (1 | user) + (1 | day), data = d, family = poisson))[["elapsed"]]
  sd <- sapply(VarCorr(m), function(v) attr(v, "stddev"))
}
cat(sprintf('{"seconds": %.3f, "loglik": %.6f, "sd_user": %.6f, "sd_day": %.6f}\n', t, as.numeric(logLik(m)), sd[["user.(Intercept)"]], sd[["day.(Intercept)"]]))
"""


def fit_peer(engine: str, X, y, groups):
    if shutil.which("Rscript") is None:
        return {"skipped": "Rscript not found"}
    with tempfile.TemporaryDirectory() as tmp:
        csv, script = Path(tmp) / "d.csv", Path(tmp) / "fit.R"
        pd.concat([X, groups], axis=1).assign(y=y).to_csv(csv, index=False)
        script.write_text(R_SCRIPT)
        run = subprocess.run(["Rscript", str(script), str(csv), engine], capture_output=True, text=True)
        if run.returncode != 0:
            return {"skipped": run.stderr.strip().splitlines()[-1] if run.stderr.strip() else "failed"}
        return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--days", type=int, default=200)
    parser.add_argument("--peers", action="store_true", help="also fit with glmmTMB through Rscript")
    parser.add_argument("--lme4", action="store_true", help="also fit with lme4 (slow)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--verbose", type=int, default=0)
    args = parser.parse_args(argv)
    X, y, groups = simulate(args.users, args.days)
    input_mb = (X.to_numpy().nbytes + y.nbytes + groups.to_numpy().nbytes) / 2**20
    print(f"{y.size:,} rows, {args.users} users x {args.days} days; input arrays {input_mb:.1f} MB")
    results = {"rows": int(y.size), "input_mb": input_mb, "truth": {"sd_user": 0.5, "sd_day": 0.3}}
    results["sklearn_glmm"] = ours = fit_ours(X, y, groups, args.verbose)
    print(
        f"sklearn_glmm: {ours['seconds']:.1f} s, peak {ours['peak_mb']:.0f} MB ({ours['peak_mb'] / input_mb:.1f}x input), "
        f"logLik {ours['loglik']:.4f}, SD user {ours['sd_user']:.4f} (true 0.5), SD day {ours['sd_day']:.4f} (true 0.3), "
        f"{ours['n_evals']} evaluations"
    )
    peers = (["glmmTMB"] if args.peers else []) + (["lme4"] if args.lme4 else [])
    for engine in peers:
        res = results[engine] = fit_peer(engine, X, y, groups)
        if "skipped" in res:
            print(f"{engine}: skipped ({res['skipped']})")
        else:
            print(
                f"{engine}: {res['seconds']:.1f} s ({res['seconds'] / ours['seconds']:.1f}x ours), logLik {res['loglik']:.4f} "
                f"(ours - theirs {ours['loglik'] - res['loglik']:+.4f}), SD user {res['sd_user']:.4f}, SD day {res['sd_day']:.4f}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
