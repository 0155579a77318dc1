#!/usr/bin/env python
"""Before/after timing of two copies of sklearn_glmm on the same data, interleaved.

An engine change is judged by the ratio of its fit time to the previous
version's, measured in the same run: each round fits every model once with
version A and once with version B, each in its own fresh subprocess (same
data file, one warm-up fit first), alternating which goes first. On a shared,
noisy machine the ratio of the medians is far steadier than either time.

Usage::

    git archive <commit> sklearn_glmm | tar -x -C /tmp/before     # the old version
    python benchmarks/compare_versions.py --a /tmp/before --b . --sizes S M --rounds 5

``--a`` / ``--b`` are directories holding a ``sklearn_glmm`` package. The panel is
``run_benchmarks.make_panel`` (``make_app_engagement(n_users, 180)``), the models
those of ``run_benchmarks.py`` (ri, rs, binomial_ri by default). Printed: median
seconds of each version, the ratio B / A (below 1: B is faster), and the
log-likelihoods of both (they must agree). Not a unit test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run_benchmarks as rb  # noqa: E402

_CHILD = r"""
import json, sys, time, warnings
sys.path.insert(0, {package!r})
sys.path.insert(0, {here!r})
import numpy as np
import run_benchmarks as rb
data = rb.load_npz({npz!r})
model = {model!r}
cls = rb.our_estimator_class(model)
spec = rb.MODELS[model]["random_effects"]
warm = data[data["user_id"].isin(data["user_id"].unique()[:10])]
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    cls(random_effects=spec).fit(warm[rb.FEATURES], rb.response(warm, model), groups=warm["user_id"])
    start = time.perf_counter()
    est = cls(random_effects=spec).fit(data[rb.FEATURES], rb.response(data, model), groups=data["user_id"])
    seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "loglik": float(est.loglik_)}}))
"""


def _fit_once(package: str, npz: str, model: str) -> dict:
    code = _CHILD.format(package=os.path.abspath(package), here=HERE, npz=npz, model=model)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="directory holding the old sklearn_glmm")
    ap.add_argument("--b", required=True, help="directory holding the new sklearn_glmm")
    ap.add_argument("--sizes", nargs="+", default=["S", "M"], choices=list(rb.SIZES))
    ap.add_argument("--models", nargs="+", default=list(rb.DEFAULT_MODELS), choices=list(rb.MODELS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            npz = os.path.join(tmp, f"{size}.npz")
            rb.save_npz(rb.make_panel(size, args.seed), npz)
            for model in args.models:
                times = {"A": [], "B": []}
                logliks = {}
                for r in range(args.rounds):
                    order = ("A", "B") if r % 2 == 0 else ("B", "A")
                    for version in order:
                        result = _fit_once(args.a if version == "A" else args.b, npz, model)
                        times[version].append(result["seconds"])
                        logliks[version] = result["loglik"]
                a, b = statistics.median(times["A"]), statistics.median(times["B"])
                rows.append((size, model, a, b, b / a, logliks["A"], logliks["B"]))
                print(
                    f"[compare] {size} {model}: A {a:.3f} s, B {b:.3f} s, B/A {b / a:.3f}; "
                    f"logLik A {logliks['A']:.4f}, B {logliks['B']:.4f}",
                    file=sys.stderr,
                    flush=True,
                )
    print(f"\nA = {args.a}, B = {args.b}; median of {args.rounds} interleaved fresh-process fits each\n")
    print(f"{'size':4}  {'model':11}  {'A s':>7}  {'B s':>7}  {'B/A':>5}  {'logLik A':>14}  {'logLik B':>14}")
    for size, model, a, b, ratio, la, lb in rows:
        print(f"{size:4}  {model:11}  {a:7.3f}  {b:7.3f}  {ratio:5.2f}  {la:14.4f}  {lb:14.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
