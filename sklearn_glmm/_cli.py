"""Command-line interface: ``sklearn-glmm demo`` (also ``python -m sklearn_glmm``)."""

from __future__ import annotations

import argparse
import sys
import time

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from . import PoissonGLMMRegressor
    from .datasets import load_app_engagement

    data = load_app_engagement()
    spec = "(1 + day_centered | user_id)" if args.random_slope else "(1 | user_id)"
    model = PoissonGLMMRegressor(random_effects=spec, verbose=args.verbose)
    start = time.perf_counter()
    model.fit(data[["day_centered"]], data["logins"], groups=data["user_id"])
    elapsed = time.perf_counter() - start
    print(model.summary())
    print(f"\nFitted {len(data)} rows, {data['user_id'].nunique()} users in {elapsed:.3f} s.")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="sklearn-glmm", description="Generalized linear mixed models for scikit-learn."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="fit the built-in app-engagement data (Poisson GLMM) and print the summary",
    )
    demo.add_argument(
        "--random-slope", action="store_true", help="fit (1 + day_centered | user_id) instead of (1 | user_id)"
    )
    demo.add_argument("--verbose", "-v", action="count", default=0, help="show optimiser progress")
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
