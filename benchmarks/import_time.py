"""How much ``import sklearn_glmm`` adds to ``import sklearn`` (the budget is 0.3 s).

Runs ``python -X importtime -c "import <module>"`` in fresh interpreters and
reports two measures, each as the median and the minimum over ``--repeats``
runs:

- the difference of the cumulative import times of ``sklearn_glmm`` and of
  ``sklearn`` (two processes each time; noisy on a loaded machine);
- within each ``import sklearn_glmm``, the summed own import time of the
  modules that ``import sklearn`` does not load (one process: steadier);

and the difference of the CPU time (``time.process_time``) of the two
imports, which other processes on a busy machine inflate much less than the
wall-clock times above. It then lists the added modules' own times by
package. Timings depend on the machine and its load.

Run: ``python benchmarks/import_time.py [--repeats 15]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys


def import_times(module: str) -> dict[str, tuple[int, int]]:
    """(own, cumulative) import time in microseconds of every module ``import module`` loads."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    )
    times = {}
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, cumulative, name = (part.strip() for part in line.split("|"))
        times[name] = (int(own.removeprefix("import time:")), int(cumulative))
    return times


def import_cpu_seconds(module: str) -> float:
    """CPU seconds of ``import module`` in a fresh interpreter."""
    code = f"import time; t = time.process_time(); import {module}; print(time.process_time() - t)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(result.stdout.strip())


def _package(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "sklearn_glmm" else parts[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="fresh interpreters per module (default: 15)")
    parser.add_argument("--top", type=int, default=10, help="packages to list")
    args = parser.parse_args(argv)
    sklearn_modules = set(import_times("sklearn"))
    base, ours, added, cpu_base, cpu_ours, last = [], [], [], [], [], {}
    for _ in range(args.repeats):
        base.append(import_times("sklearn")["sklearn"][1] / 1e6)
        last = import_times("sklearn_glmm")
        ours.append(last["sklearn_glmm"][1] / 1e6)
        added.append(sum(own for name, (own, _) in last.items() if name not in sklearn_modules) / 1e6)
        cpu_base.append(import_cpu_seconds("sklearn"))
        cpu_ours.append(import_cpu_seconds("sklearn_glmm"))
    print(
        f"import sklearn                        median {statistics.median(base):.3f} s, min {min(base):.3f} s"
    )
    print(
        f"import sklearn_glmm                   median {statistics.median(ours):.3f} s, min {min(ours):.3f} s"
    )
    print(
        f"difference of the two                 median {statistics.median(ours) - statistics.median(base):+.3f} s, "
        f"min {min(ours) - min(base):+.3f} s"
    )
    print(
        f"own time of the modules sklearn does not import (one process): "
        f"median {statistics.median(added):.3f} s, min {min(added):.3f} s"
    )
    print(
        f"CPU time: import sklearn median {statistics.median(cpu_base):.3f} s, import sklearn_glmm median "
        f"{statistics.median(cpu_ours):.3f} s, added {statistics.median(cpu_ours) - statistics.median(cpu_base):+.3f} s"
    )
    by_package: dict[str, int] = {}
    for name, (own, _) in last.items():
        if name not in sklearn_modules:
            by_package[_package(name)] = by_package.get(_package(name), 0) + own
    print(f"\nthose modules by package (last run, ms; {len(by_package)} packages):")
    for name, t in sorted(by_package.items(), key=lambda item: -item[1])[: args.top]:
        print(f"  {t / 1e3:8.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
