"""How much ``import sklearn_glmm`` adds to ``import sklearn`` (the budget is 0.3 s).

Runs ``python -X importtime -c "import <module>"`` in fresh interpreters,
alternating the two modules, and prints the median cumulative import time of
each and their difference, with the slowest modules ``sklearn_glmm`` adds.
Timings depend on the machine and its load; compare medians of several runs.

Run: ``python benchmarks/import_time.py [--repeats 9]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys


def import_times(module: str) -> dict[str, tuple[int, int]]:
    """(self, cumulative) import time in microseconds of every module ``import module`` loads."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True, text=True, check=True,
    )
    times = {}
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, cumulative, name = (part.strip() for part in line.split("|"))
        times[name.strip()] = (int(own.removeprefix("import time:")), int(cumulative))
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="fresh interpreters per module (default: 9)")
    parser.add_argument("--top", type=int, default=10, help="modules of sklearn_glmm's own imports to list")
    args = parser.parse_args(argv)
    base, ours, last = [], [], {}
    for _ in range(args.repeats):
        base.append(import_times("sklearn")["sklearn"][1])
        last = import_times("sklearn_glmm")
        ours.append(last["sklearn_glmm"][1])
    base_s, ours_s = statistics.median(base) / 1e6, statistics.median(ours) / 1e6
    print(f"import sklearn       median {base_s:.3f} s  (min {min(base) / 1e6:.3f})")
    print(f"import sklearn_glmm  median {ours_s:.3f} s  (min {min(ours) / 1e6:.3f})")
    print(f"added by sklearn_glmm: {ours_s - base_s:+.3f} s (medians), {(min(ours) - min(base)) / 1e6:+.3f} s (minima)")
    # the modules sklearn does not load, their own times summed by top-level package
    sklearn_modules = set(import_times("sklearn"))
    added: dict[str, int] = {}
    for name, (own, _) in last.items():
        if name not in sklearn_modules:
            top = name.split(".")[0] if not name.startswith("sklearn_glmm") else ".".join(name.split(".")[:2])
            added[top] = added.get(top, 0) + own
    print(f"\nmodules that sklearn_glmm adds, own import time by package (last run, ms; {len(added)} packages):")
    for name, t in sorted(added.items(), key=lambda item: -item[1])[: args.top]:
        print(f"  {t / 1e3:8.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
