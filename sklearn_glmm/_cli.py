"""Command-line interface (also ``python -m sklearn_glmm``).

``sklearn-glmm --version``
    prints the package version.
``sklearn-glmm demo``
    fits the built-in app-engagement data and prints the summary.
``sklearn-glmm fit data.csv --formula "y ~ x + (x | g)" [--family poisson]
[--confint wald|profile|none] [--plots DIR] [--json FILE] [-v]``
    fits a model from a CSV file: prints the lme4-style summary, confidence
    intervals and, for Poisson models, the overdispersion check (the other
    families estimate their dispersion or have none to test), writes the figures of
    :mod:`sklearn_glmm.plot` as PNG files and a machine-readable JSON result.
    Bad files or formulas give a one-line ``error:`` message and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

from ._version import __version__

__all__ = ["main"]

#: families whose Pearson overdispersion check means something: a fixed unit
#: dispersion (the Gaussian, Gamma and negative binomial estimate theirs, so
#: the ratio is about 1 by construction; 0/1 data cannot be overdispersed)
OVERDISPERSION_FAMILIES = ("poisson",)


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


class _Heartbeat:
    """Prints a line to stderr every ``every`` seconds while a long fit runs."""

    def __init__(self, what: str, every: float = 10.0):
        self.what, self.every = what, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = time.perf_counter()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            print(
                f"  ... still {self.what} ({time.perf_counter() - self._start:.0f} s)",
                file=sys.stderr,
                flush=True,
            )

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _error(message: str) -> int:
    print(f"sklearn-glmm: error: {message}", file=sys.stderr)
    return 2


def _read_csv(path: str):
    import pandas as pd

    file = Path(path)
    if not file.is_file():
        raise ValueError(f"no such file: {path}")
    try:
        data = pd.read_csv(file)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path} as CSV ({type(exc).__name__}: {exc})") from None
    if data.empty:
        raise ValueError(f"{path} has no data rows")
    return data


def _jsonable(value):
    """Numbers, lists and dicts that json can write (NaN becomes null)."""
    import numpy as np
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return {str(k): _jsonable(v) for k, v in value.to_dict(orient="index").items()}
    if isinstance(value, pd.Series):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    return None if value is None else str(value)


def _write_plots(model, X, y, groups, directory: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from . import plot

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    figures = {"residuals_vs_fitted.png": lambda: plot.residuals_vs_fitted(model, X, y, groups)}
    if model.ranef_:
        factor = groups.name if isinstance(groups, pd.Series) else "group"
        if X.shape[1]:
            frame = pd.DataFrame({X.columns[0]: X.iloc[:, 0], y.name: y, factor: groups})
            figures["trajectories.png"] = lambda: plot.trajectories(frame, X.columns[0], y.name, factor)
            figures["observed_vs_fitted.png"] = lambda: plot.observed_vs_fitted(model, X, y, groups)
        figures["qq_ranef.png"] = lambda: plot.qq_ranef(model)
        figures["caterpillar.png"] = lambda: plot.caterpillar(model)
    written = []
    for name, draw in figures.items():
        result = draw()
        fig = result if isinstance(result, matplotlib.figure.Figure) else result.figure
        fig.savefig(out / name, dpi=80)
        plt.close(fig)
        written.append(str(out / name))
    return written


def _fit(args: argparse.Namespace) -> int:
    from ._formula import FAMILY_REGISTRY, formula_design, glmer
    from .results._diagnostics import overdispersion

    try:
        data = _read_csv(args.data)
    except ValueError as exc:
        return _error(str(exc))
    if args.family not in FAMILY_REGISTRY:
        return _error(f"--family must be one of {sorted(FAMILY_REGISTRY)}; got {args.family!r}")
    print(f"Fitting a {args.family} GLMM to {len(data)} rows of {args.data} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        with _Heartbeat("fitting"):
            model = glmer(args.formula, data, family=args.family, verbose=args.verbose)
    except ImportError as exc:
        return _error(str(exc))
    except (ValueError, TypeError) as exc:
        return _error(str(exc))
    elapsed = time.perf_counter() - start
    print(f"... done in {elapsed:.2f} s.", file=sys.stderr, flush=True)
    X, y, groups, offset = formula_design(model, data)

    print(model.summary())
    result = {
        "formula": args.formula,
        "family": args.family,
        "data": str(args.data),
        "n_obs": model.n_obs_,
        "n_groups": {k: len(v) for k, v in model.group_levels_.items()},
        "fixef": model.fixef_,
        "fixef_se": model.fixef_se_,
        "coefficients": model.summary().coefficients,
        "vcov": model.vcov_.to_numpy(),
        "theta": model.theta_,
        "varcorr": model.varcorr_.to_dict(orient="records"),
        "loglik": model.loglik_,
        "aic": model.aic_,
        "bic": model.bic_,
        "deviance": model.deviance_,
        "df_resid": model.df_resid_,
        "converged": model.converged_,
        "singular": model.singular_,
        "fit_seconds": elapsed,
        "ranef": {k: v.to_dict(orient="index") for k, v in model.ranef_.items()},
        "ranef_condsd": {k: v.to_dict(orient="index") for k, v in model.ranef_condsd_.items()},
    }
    if args.confint != "none":
        method = args.confint if model.ranef_ else "wald"
        with _Heartbeat("computing profile intervals"):
            table = model.confint(method=method, X=X, y=y, groups=groups, offset=offset)
        print(f"\nConfidence intervals ({method}, 95 %):")
        print(table.to_string(float_format=lambda v: f"{v:.6g}"))
        result["confint"] = {"method": method, "table": table}
    if model.family_.name in OVERDISPERSION_FAMILIES:
        od = overdispersion(model, X, y, groups, offset=offset)
        print(
            f"\nOverdispersion: Pearson chi2 = {od.chisq:.1f} on {od.df} df, ratio = {od.ratio:.3f}, "
            f"p = {od.p_value:.3g}"
        )
        result["overdispersion"] = od.to_series()
    if args.plots:
        try:
            written = _write_plots(model, X, y, groups, args.plots)
        except ImportError:
            return _error(
                "--plots needs the optional package matplotlib (the 'plot' extra): pip install matplotlib, "
                "or pip install '.[plot]' in a checkout of sklearn_glmm"
            )
        print("\nPlots: " + ", ".join(written))
        result["plots"] = written
    if args.json:
        Path(args.json).write_text(json.dumps(_jsonable(result), indent=2))
        print(f"Result written to {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="sklearn-glmm", description="Generalized linear mixed models for scikit-learn."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="fit the built-in app-engagement data (Poisson GLMM) and print the summary",
    )
    demo.add_argument(
        "--random-slope",
        action="store_true",
        help="fit (1 + day_centered | user_id) instead of (1 | user_id)",
    )
    demo.add_argument("--verbose", "-v", action="count", default=0, help="show optimiser progress")
    demo.set_defaults(run=_demo)
    fit = sub.add_parser(
        "fit",
        help="fit a GLMM to a CSV file from an lme4 formula",
        description=(
            "Fit a GLMM to a CSV file: prints the summary, intervals and (Poisson) the overdispersion check."
        ),
    )
    fit.add_argument("data", help="CSV file with a header row")
    fit.add_argument(
        "--formula",
        "-f",
        required=True,
        help='lme4 formula, e.g. "logins ~ day_centered + (day_centered | user_id)"',
    )
    fit.add_argument("--family", default="poisson", help="model family (default: poisson)")
    fit.add_argument(
        "--confint",
        choices=["wald", "profile", "none"],
        default="wald",
        help="confidence intervals (default: wald)",
    )
    fit.add_argument("--plots", metavar="DIR", help="write the diagnostic figures as PNG files into DIR")
    fit.add_argument("--json", metavar="FILE", help="write a machine-readable result to FILE")
    fit.add_argument("--verbose", "-v", action="count", default=0, help="show optimiser progress")
    fit.set_defaults(run=_fit)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
