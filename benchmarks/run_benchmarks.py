#!/usr/bin/env python
"""Side-by-side fit benchmarks for sklearn_glmm against lme4, glmmTMB and GPBoost.

Generates the app-engagement panel (``make_app_engagement(n_users, 180)``) once per size,
times our fits (median of repeats, wall clock), measures the peak memory of our fit in a
fresh subprocess, fits the same data with the installed peers (R through ``Rscript
benchmarks/peers.R``, GPBoost through Python, each in its own subprocess), and prints a
table of median seconds, time ratios, log-likelihood differences and peak memory; ``--json``
writes everything as JSON. See ``benchmarks/README.md``.

Examples::

    python benchmarks/run_benchmarks.py --sizes S                       # all models, all peers
    python benchmarks/run_benchmarks.py --sizes M --models ri rs --peer-repeats 1 --json m.json
    python benchmarks/run_benchmarks.py --sizes L --models ri --peers-at-L
    python benchmarks/run_benchmarks.py --workload                      # 5-fold GroupKFold at M
    python benchmarks/run_benchmarks.py --profile --sizes M --models ri  # cProfile, top 25

Not a unit test: nothing here runs under pytest.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PEERS_R = os.path.join(HERE, "peers.R")

N_DAYS = 180
SIZES = {"S": 50, "M": 2_000, "L": 20_000}
FEATURES = ["day_centered", "notifications", "weekend", "mood"]
_RHS = "day_centered + notifications + weekend + mood"
MODELS = {
    "ri": {
        "family": "poisson",
        "random_effects": "(1 | user_id)",
        "formula": f"logins ~ {_RHS} + (1 | user_id)",
    },
    "rs": {
        "family": "poisson",
        "random_effects": "(1 + day_centered | user_id)",
        "formula": f"logins ~ {_RHS} + (1 + day_centered | user_id)",
    },
    "binomial_ri": {
        "family": "binomial",
        "random_effects": "(1 | user_id)",
        "formula": f"I(logins > 0) ~ {_RHS} + (1 | user_id)",
    },
    # negative binomial (NB2) random intercept: glmmTMB nbinom2, lme4 glmer.nb; not in the default set
    "nb_ri": {
        "family": "negative_binomial",
        "random_effects": "(1 | user_id)",
        "formula": f"logins ~ {_RHS} + (1 | user_id), NB2",
    },
}
DEFAULT_MODELS = ("ri", "rs", "binomial_ri")
R_PEERS = ("lme4", "lme4_nagq0", "glmmtmb")
PY_PEERS = ("gpboost", "gpboost_default")
ALL_PEERS = R_PEERS + PY_PEERS
DEFAULT_PEERS = ("lme4", "lme4_nagq0", "glmmtmb", "gpboost")
#: GPBoost with tight tolerances (its default stopping rule stops short of the optimum)
GPBOOST_TIGHT = {"delta_rel_conv": 1e-12, "maxit": 10_000}
OUR_ESTIMATOR = {
    "poisson": "PoissonGLMMRegressor",
    "binomial": "BinomialGLMMClassifier",
    "negative_binomial": "NegativeBinomialGLMMRegressor",
}
#: rows of the warm-up fit run before the memory baseline (triggers lazy imports and caches)
WARMUP_USERS = 10


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------
def make_panel(size: str, seed: int) -> pd.DataFrame:
    from sklearn_glmm.datasets import make_app_engagement

    return make_app_engagement(SIZES[size], N_DAYS, random_state=seed)


def response(data: pd.DataFrame, model: str) -> pd.Series:
    if MODELS[model]["family"] == "binomial":
        return (data["logins"] > 0).astype(np.int64).rename("logins_gt_0")
    return data["logins"]


def input_nbytes(n_rows: int) -> int:
    """Size of the input arrays: X (n x 4 float64), y (float64) and int64 group codes."""
    return n_rows * (len(FEATURES) + 2) * 8


def save_npz(data: pd.DataFrame, path: str) -> None:
    codes, labels = pd.factorize(data["user_id"], sort=False)
    np.savez(
        path,
        X=data[FEATURES].to_numpy(np.float64),
        logins=data["logins"].to_numpy(np.int64),
        codes=codes.astype(np.int64),
        labels=np.asarray(labels, dtype=str),
    )


def load_npz(path: str) -> pd.DataFrame:
    z = np.load(path)
    labels = z["labels"].astype(object)
    data = pd.DataFrame(z["X"], columns=FEATURES)
    data.insert(0, "user_id", labels[z["codes"]])
    data["logins"] = z["logins"]
    return data


def save_csv(data: pd.DataFrame, path: str) -> None:
    # floats are written with round-trip precision (pandas uses repr), so R reads identical data
    data[["user_id"] + FEATURES + ["logins"]].to_csv(path, index=False)


# --------------------------------------------------------------------------------------
# our fit
# --------------------------------------------------------------------------------------
def our_estimator_class(model: str):
    """The estimator class of the model's family, or None when this sklearn_glmm lacks it."""
    import sklearn_glmm

    return getattr(sklearn_glmm, OUR_ESTIMATOR[MODELS[model]["family"]], None)


def our_fit(data: pd.DataFrame, model: str):
    cls = our_estimator_class(model)
    est = cls(random_effects=MODELS[model]["random_effects"])
    return est.fit(data[FEATURES], response(data, model), groups=data["user_id"])


def time_ours(data: pd.DataFrame, model: str, repeats: int) -> dict:
    import warnings

    times, cpu, est, caught = [], [], None, []
    warm = data.iloc[: WARMUP_USERS * N_DAYS]  # untimed warm-up: lazy imports, first-call costs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        our_fit(warm, model)
    for _ in range(repeats):
        gc.collect()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            t0, c0 = time.perf_counter(), time.process_time()
            est = our_fit(data, model)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        caught += [f"{x.category.__name__}: {x.message}" for x in w]
    fs = getattr(est, "fit_summary_", None)
    notes = sorted(set(caught))
    if len(notes) > 5:
        notes = notes[:5] + [f"... {len(notes) - 5} more distinct warnings"]
    return {
        "times": times,
        "median_s": statistics.median(times),
        # CPU seconds of this process (all threads): on a shared machine, wall-clock time also
        # counts the time other processes held the cores
        "cpu_times": cpu,
        "median_cpu_s": statistics.median(cpu),
        "loglik": float(est.loglik_),
        "fixef": {str(k): float(v) for k, v in est.fixef_.items()},
        "theta": [float(t) for t in np.ravel(getattr(est, "theta_", []))],
        "converged": bool(getattr(est, "converged_", True)),
        "n_iter": int(getattr(est, "n_iter_", -1)),
        "n_evals": int(getattr(fs, "n_evals", -1)) if fs is not None else None,
        "stage_timings_cumulative_s": dict(getattr(fs, "timings", {}) or {}) if fs is not None else None,
        "warnings": notes,
    }


def _proc_status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def child_ours_memory(npz: str, model: str) -> dict:
    """Run in a fresh process: peak RSS of one fit above the RSS after loading the data."""
    import resource

    import sklearn_glmm  # noqa: F401  (imports count towards the baseline, not the fit)

    data = load_npz(npz)
    X, y, groups = data[FEATURES], response(data, model), data["user_id"]
    cls = our_estimator_class(model)
    warm = data.iloc[: WARMUP_USERS * N_DAYS]
    cls(random_effects=MODELS[model]["random_effects"]).fit(
        warm[FEATURES], response(warm, model), groups=warm["user_id"]
    )
    del warm
    est = cls(random_effects=MODELS[model]["random_effects"])
    gc.collect()
    method = "VmHWM"
    try:  # reset the peak-RSS high-water mark (Linux >= 4.0) so data loading does not count
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        baseline_kb = _proc_status_kb("VmRSS")
    except OSError:
        baseline_kb = None
    if baseline_kb is None:  # fallback: ru_maxrss so far (includes loading transients)
        method = "ru_maxrss"
        baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    est.fit(X, y, groups=groups)
    elapsed = time.perf_counter() - t0
    peak_kb = _proc_status_kb("VmHWM") if method == "VmHWM" else None
    if peak_kb is None:
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "method": method,
        "baseline_mb": baseline_kb / 1024,
        "fit_peak_process_mb": peak_kb / 1024,
        "fit_increment_mb": (peak_kb - baseline_kb) / 1024,
        "time_s": elapsed,
    }


# --------------------------------------------------------------------------------------
# GPBoost (run in a child process, single-threaded)
# --------------------------------------------------------------------------------------
def child_gpboost(npz: str, model: str, repeats: int, tight: bool) -> dict:
    import gpboost as gpb

    data = load_npz(npz)
    X = np.column_stack([np.ones(len(data)), data[FEATURES].to_numpy()])
    y = response(data, model).to_numpy(np.float64)
    group = data["user_id"].to_numpy()
    likelihood = "bernoulli_logit" if MODELS[model]["family"] == "binomial" else "poisson"
    params = dict(GPBOOST_TIGHT) if tight else {}
    times, m = [], None
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        m = gpb.GPModel(group_data=group, likelihood=likelihood, num_parallel_threads=1)
        m.fit(y=y, X=X, params=params)
        times.append(time.perf_counter() - t0)
    coef = np.ravel(m.get_coef())
    names = ["(Intercept)"] + FEATURES
    return {
        "times": times,
        "loglik": -float(m.get_current_neg_log_likelihood()),
        "fixef": dict(zip(names, map(float, coef))),
        "params": params,
        "cov_pars": [float(c) for c in np.ravel(m.get_cov_pars())],
    }


# --------------------------------------------------------------------------------------
# subprocesses with per-child max RSS (os.wait4, same number as /usr/bin/time -v)
# --------------------------------------------------------------------------------------
def run_child(cmd, env=None, timeout=None):
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=REPO)
        timer = None
        if timeout:
            timer = threading.Timer(timeout, p.kill)
            timer.start()
        _, status, ru = os.wait4(p.pid, 0)
        if timer is not None:
            timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return p.returncode, out.read(), err.read(), ru.ru_maxrss / 1024.0


def _child_cmd(kind: str, npz: str, model: str, repeats: int = 1) -> list[str]:
    return [
        sys.executable,
        os.path.abspath(__file__),
        "--_child",
        kind,
        "--_npz",
        npz,
        "--_model",
        model,
        "--_repeats",
        str(repeats),
    ]


def _parse_json_result(stdout: str) -> dict | None:
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    return None


def measure_ours_memory(npz: str, model: str, timeout) -> dict:
    rc, out, err, maxrss = run_child(_child_cmd("ours_memory", npz, model), timeout=timeout)
    res = _parse_json_result(out)
    if rc != 0 or res is None:
        return {"error": f"exit {rc}: {err.strip()[-400:]}"}
    res["process_max_rss_mb"] = maxrss
    return res


def run_gpboost(npz: str, model: str, repeats: int, tight: bool, timeout) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    kind = "gpboost" if tight else "gpboost_default"
    rc, out, err, maxrss = run_child(_child_cmd(kind, npz, model, repeats), env=env, timeout=timeout)
    res = _parse_json_result(out)
    if rc != 0 or res is None:
        return {"error": f"exit {rc}: {(err or out).strip()[-400:]}"}
    res["peak_mb"] = maxrss
    res["median_s"] = statistics.median(res["times"])
    return res


def run_r_peer(csv: str, model: str, tool: str, repeats: int, timeout) -> dict:
    cmd = ["Rscript", "--vanilla", PEERS_R, csv, model, tool, str(repeats)]
    rc, out, err, maxrss = run_child(cmd, timeout=timeout)
    if rc == 3:
        return {"skipped": out.strip() or "R package missing"}
    times, fixef, warns, loglik = [], {}, [], None
    for line in out.splitlines():
        parts = line.rstrip("\n").split("\t")
        if parts[0] != "RESULT" or len(parts) < 3:
            continue
        if parts[1] == "time":
            times.append(float(parts[2]))
        elif parts[1] == "loglik":
            loglik = float(parts[2])
        elif parts[1] == "fixef" and len(parts) >= 4:
            fixef[parts[2]] = float(parts[3])
        elif parts[1] == "warning":
            warns.append(parts[2])
    if rc != 0 or not times or loglik is None:
        return {"error": f"exit {rc}: {(err or out).strip()[-400:]}"}
    return {
        "times": times,
        "median_s": statistics.median(times),
        "loglik": loglik,
        "fixef": fixef,
        "warnings": warns,
        "peak_mb": maxrss,
    }


def available_peers() -> tuple[dict, dict]:
    """Which peers can run here: {peer: True} and {peer: reason} for the missing ones."""
    ok, why = {}, {}
    try:
        import importlib.util

        has_gpb = importlib.util.find_spec("gpboost") is not None
    except Exception:  # pragma: no cover
        has_gpb = False
    for p in PY_PEERS:
        if has_gpb:
            ok[p] = True
        else:
            why[p] = "Python package gpboost is not installed (pip install gpboost)"
    if shutil.which("Rscript") is None:
        for p in R_PEERS:
            why[p] = "Rscript not found (apt-get install r-cran-lme4 r-cran-glmmtmb)"
        return ok, why
    probe = 'cat(requireNamespace("lme4", quietly=TRUE), requireNamespace("glmmTMB", quietly=TRUE))'
    try:
        out = subprocess.run(
            ["Rscript", "--vanilla", "-e", probe], capture_output=True, text=True, timeout=120
        ).stdout.split()
        has_lme4, has_tmb = (out + ["FALSE", "FALSE"])[:2]
    except Exception as exc:  # pragma: no cover
        has_lme4 = has_tmb = "FALSE"
        print(f"[bench] probing R failed: {exc}")
    for p in ("lme4", "lme4_nagq0"):
        if has_lme4 == "TRUE":
            ok[p] = True
        else:
            why[p] = "R package lme4 is not installed (apt-get install r-cran-lme4)"
    if has_tmb == "TRUE":
        ok["glmmtmb"] = True
    else:
        why["glmmtmb"] = "R package glmmTMB is not installed (apt-get install r-cran-glmmtmb)"
    return ok, why


# --------------------------------------------------------------------------------------
# workload and profile
# --------------------------------------------------------------------------------------
def run_workload(data: pd.DataFrame, n_splits: int = 5) -> dict:
    """5-fold GroupKFold over users: fit ri and rs on the training users, predict held-out users."""
    from sklearn.metrics import mean_poisson_deviance
    from sklearn.model_selection import GroupKFold

    X, y, g = data[FEATURES], data["logins"], data["user_id"]
    folds = list(GroupKFold(n_splits=n_splits).split(X, y, g))
    out = {"n_splits": n_splits, "models": {}}
    t_all, c_all = time.perf_counter(), time.process_time()
    for model in ("ri", "rs"):
        cls = our_estimator_class(model)
        fit_s, pred_s, dev = [], [], []
        for tr, te in folds:
            est = cls(random_effects=MODELS[model]["random_effects"])
            t0 = time.perf_counter()
            est.fit(X.iloc[tr], y.iloc[tr], groups=g.iloc[tr])
            t1 = time.perf_counter()
            mu = est.predict(X.iloc[te], groups=g.iloc[te])  # held-out users: population level
            dev.append(float(mean_poisson_deviance(y.iloc[te], mu)))
            pred_s.append(time.perf_counter() - t1)
            fit_s.append(t1 - t0)
        out["models"][model] = {
            "fit_s": fit_s,
            "predict_s": pred_s,
            "total_s": sum(fit_s) + sum(pred_s),
            "mean_poisson_deviance": dev,
        }
    out["total_s"] = time.perf_counter() - t_all
    out["total_cpu_s"] = time.process_time() - c_all
    return out


def run_profile(data: pd.DataFrame, model: str, top: int = 25, dump: str | None = None) -> str:
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    our_fit(data, model)
    prof.disable()
    elapsed = time.perf_counter() - t0
    if dump:
        prof.dump_stats(dump)
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return f"wall clock under cProfile: {elapsed:.2f} s\n" + buf.getvalue()


# --------------------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------------------
def _fmt(x, spec, missing="-"):
    return missing if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def format_table(rows: list[dict]) -> str:
    head = ["size", "model", "tool", "median s", "ratio", "logLik", "logLik-ours", "peak MB", "notes"]
    lines = []
    for r in rows:
        lines.append(
            [
                r["size"],
                r["model"],
                r["tool"],
                _fmt(r.get("median_s"), ".3f"),
                _fmt(r.get("ratio"), ".2f"),
                _fmt(r.get("loglik"), ".4f"),
                _fmt(r.get("loglik_minus_ours"), "+.2e"),
                _fmt(r.get("peak_mb"), ".0f"),
                r.get("note", ""),
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)] if lines else [len(h) for h in head]
    widths[-1] = 0
    fmt_row = lambda cells: "  ".join(
        str(c).rjust(w) if 3 <= i <= 7 else str(c).ljust(w)  # noqa: E731
        for i, (c, w) in enumerate(zip(cells, widths))
    ).rstrip()
    sep = "  ".join("-" * w for w in widths[:-1]) + "  -----"
    return "\n".join([fmt_row(head), sep] + [fmt_row(c) for c in lines])


def target_checks(rows: list[dict], workload: dict | None) -> list[dict]:
    """The performance targets that can be judged from this run."""
    by = {(r["size"], r["model"], r["tool"]): r for r in rows if r.get("median_s") is not None}
    checks = []

    def ours(size, model):
        return by.get((size, model, "ours"))

    def add(name, value, limit, ok):
        checks.append({"target": name, "value": value, "limit": limit, "pass": ok})

    for size, model, limit in (
        ("M", "ri", 0.9),
        ("M", "binomial_ri", 0.9),
        ("L", "ri", 10.0),
        ("L", "rs", 40.0),
        ("M", "rs", 3.8),
    ):
        o = ours(size, model)
        if o:
            add(f"{model} at {size}: seconds <= {limit}", o["median_s"], limit, o["median_s"] <= limit)
    o, g = ours("S", "ri"), by.get(("S", "ri", "gpboost"))
    if o and g:
        add(
            "ri at S: seconds <= GPBoost (tight)",
            o["median_s"],
            g["median_s"],
            o["median_s"] <= g["median_s"],
        )
    o, t = ours("M", "rs"), by.get(("M", "rs", "glmmtmb"))
    if o and t:
        add(
            "rs at M: >= 10x faster than glmmTMB",
            t["median_s"] / o["median_s"],
            10.0,
            t["median_s"] / o["median_s"] >= 10.0,
        )
    for size in SIZES:
        o, t = ours(size, "nb_ri"), by.get((size, "nb_ri", "glmmtmb"))
        if o and t:
            add(
                f"nb_ri at {size}: >= 5x faster than glmmTMB",
                t["median_s"] / o["median_s"],
                5.0,
                t["median_s"] / o["median_s"] >= 5.0,
            )
    for (size, model, tool), r in by.items():
        if tool != "ours":
            continue
        peers = [
            p
            for (s, m, tl), p in by.items()
            if s == size and m == model and tl != "ours" and p.get("loglik") is not None
        ]
        if peers:
            best = max(p["loglik"] for p in peers)
            add(
                f"{model} at {size}: logLik >= best peer - 1e-3",
                r["loglik"] - best,
                -1e-3,
                r["loglik"] - best >= -1e-3,
            )
        if r.get("mem_ratio") is not None:
            add(
                f"{model} at {size}: fit memory <= 3x input arrays",
                r["mem_ratio"],
                3.0,
                r["mem_ratio"] <= 3.0,
            )
    for model in MODELS:
        m, l = ours("M", model), ours("L", model)
        if m and l:
            add(
                f"{model}: L/M time ratio (rows x10; linear = 10)",
                l["median_s"] / m["median_s"],
                10.0,
                l["median_s"] / m["median_s"] <= 12.0,
            )
    if workload:
        add(
            "GroupKFold workload at M (10 fits + predict): seconds <= 10",
            workload["total_s"],
            10.0,
            workload["total_s"] <= 10.0,
        )
    return checks


def meta(args) -> dict:
    import scipy
    import sklearn

    import sklearn_glmm

    try:
        commit = subprocess.run(
            ["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", REPO, "status", "--porcelain", "--", "sklearn_glmm"],
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
    except Exception:  # pragma: no cover
        commit = dirty = None
    if args.package_path:  # an exported copy: the repo's HEAD/dirty state says nothing about it
        dirty = None
        commit = f"(package from {os.path.abspath(args.package_path)}; repo HEAD {commit})"
    info = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "sklearn_glmm": getattr(sklearn_glmm, "__version__", None),
        "sklearn_glmm_path": os.path.dirname(os.path.abspath(sklearn_glmm.__file__)),
        "git_commit": commit,
        "sklearn_glmm_uncommitted_changes": dirty,
        "seed": args.seed,
        "n_days": N_DAYS,
        "memory_method": "ours: peak RSS (VmHWM after /proc/self/clear_refs reset) minus RSS after "
        "loading "
        "data, in a fresh process; peers and 'peak MB': whole-process max RSS (wait4)",
        "env_threads": {
            k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        },
    }
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: d.get(k) for k in ("internal_api", "num_threads", "version")} for d in threadpool_info()
        ]
    except Exception:  # pragma: no cover
        pass
    try:
        import gpboost

        info["gpboost"] = gpboost.__version__
    except Exception:
        pass
    if shutil.which("Rscript"):
        expr = (
            'v <- function(p) tryCatch(format(packageVersion(p)), error = function(e) "-"); '
            'cat(R.version.string, "| lme4", v("lme4"), "| glmmTMB", v("glmmTMB"))'
        )
        try:
            info["R"] = subprocess.run(
                ["Rscript", "--vanilla", "-e", expr], capture_output=True, text=True, timeout=120
            ).stdout.strip()
        except Exception:  # pragma: no cover
            pass
    return info


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------
def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--sizes",
        nargs="+",
        choices=list(SIZES),
        default=["S", "M"],
        help="panel sizes: S=50, M=2000, L=20000 users x 180 days (default: S M)",
    )
    ap.add_argument(
        "--models",
        nargs="+",
        choices=list(MODELS),
        default=list(DEFAULT_MODELS),
        help="ri, rs (correlated random slope), binomial_ri (default: these three), "
        "nb_ri (negative binomial random intercept; lme4 = glmer.nb)",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="fits per measurement, median reported (default: 3 at S/M, 1 at L)",
    )
    ap.add_argument("--peer-repeats", type=int, default=None, help="repeats for peers (default: --repeats)")
    ap.add_argument(
        "--peers",
        nargs="*",
        choices=list(ALL_PEERS),
        default=None,
        help="peers to run (default: lme4 lme4_nagq0 glmmtmb gpboost, those installed; "
        "'--peers' with no name runs none; gpboost_default = GPBoost's default tolerances)",
    )
    ap.add_argument("--peers-at-L", action="store_true", help="also run peers at size L (5-15 min per R fit)")
    ap.add_argument(
        "--no-memory", action="store_true", help="skip the subprocess memory measurement of our fit"
    )
    ap.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds per subprocess before it is killed"
    )
    ap.add_argument(
        "--workload",
        action="store_true",
        help="also run the 5-fold GroupKFold workload at M (ri and rs: 10 fits + predict)",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="only cProfile our fit for each --sizes x --models; print top 25 by tottime",
    )
    ap.add_argument("--profile-dump", default=None, help="directory for .prof files of --profile")
    ap.add_argument("--json", default=None, help="write all results as JSON to this path")
    ap.add_argument("--seed", type=int, default=0, help="random_state of make_app_engagement (default 0)")
    ap.add_argument(
        "--package-path",
        default=None,
        help="import sklearn_glmm from this directory (e.g. an exported commit: "
        "git archive HEAD sklearn_glmm | tar -x -C DIR) instead of the installed one",
    )
    ap.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="limit numpy's BLAS/OpenMP threads for our fits (threadpoolctl; default: "
        "library default). On a loaded 2-core machine 1 thread can be much faster",
    )
    ap.add_argument("--keep-data", default=None, help="write the panels (npz/csv) here and keep them")
    # internal: child processes
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_npz", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_model", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_repeats", type=int, default=1, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def child_main(args) -> int:
    if args._child == "ours_memory":
        res = child_ours_memory(args._npz, args._model)
    elif args._child in ("gpboost", "gpboost_default"):
        res = child_gpboost(args._npz, args._model, args._repeats, tight=args._child == "gpboost")
    else:
        raise SystemExit(f"unknown child {args._child}")
    print("RESULT " + json.dumps(res), flush=True)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.package_path:
        path = os.path.abspath(args.package_path)
        sys.path.insert(0, path)
        # children (memory measurement, GPBoost) import the same copy
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [path, os.environ.get("PYTHONPATH")]))
    if args.blas_threads:
        # our children inherit the environment; in this process threadpoolctl applies it
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.blas_threads)
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.blas_threads)
    if args._child:
        return child_main(args)
    say = lambda *a: print("[bench]", *a, flush=True)  # noqa: E731

    if args.profile:
        for size in args.sizes:
            data = make_panel(size, args.seed)
            for model in args.models:
                if our_estimator_class(model) is None:
                    say(f"skip profile {model}: sklearn_glmm has no {OUR_ESTIMATOR[MODELS[model]['family']]}")
                    continue
                dump = None
                if args.profile_dump:
                    os.makedirs(args.profile_dump, exist_ok=True)
                    dump = os.path.join(args.profile_dump, f"{size}_{model}.prof")
                print(
                    f"\n=== cProfile: size {size} ({len(data):,} rows), model {model}, top 25 by tottime ==="
                )
                print(run_profile(data, model, dump=dump))
        return 0

    if args.peers is None:
        wanted = list(DEFAULT_PEERS)
    else:
        wanted = list(dict.fromkeys(args.peers))
    ok, why = available_peers() if wanted else ({}, {})
    peers = [p for p in wanted if ok.get(p)]
    for p in wanted:
        if p not in peers:
            say(f"peer {p} skipped: {why.get(p, 'not available')}")

    workdir = args.keep_data or tempfile.mkdtemp(prefix="sklearn_glmm_bench_")
    os.makedirs(workdir, exist_ok=True)
    info = meta(args)
    dirty = " + uncommitted changes" if info.get("sklearn_glmm_uncommitted_changes") else ""
    say(
        f"sklearn_glmm {info.get('sklearn_glmm')} from {info.get('sklearn_glmm_path')} "
        f"@ {info.get('git_commit')}{dirty}, python {info['python']}, "
        f"{info['cpu_count']} CPUs; peers: {', '.join(peers) or 'none'}; data in {workdir}"
    )

    rows, panels_rows = [], {}
    workload = None
    try:
        for size in args.sizes:
            repeats = args.repeats or (1 if size == "L" else 3)
            peer_repeats = args.peer_repeats or repeats
            t0 = time.perf_counter()
            data = make_panel(size, args.seed)
            panels_rows[size] = len(data)
            npz = os.path.join(workdir, f"panel_{size}_seed{args.seed}.npz")
            save_npz(data, npz)
            size_peers = peers if (size != "L" or args.peers_at_L) else []
            if size == "L" and peers and not args.peers_at_L:
                say("size L: peers skipped (pass --peers-at-L to run them; R takes 5-15 min per fit)")
            csv = None
            if any(p in R_PEERS for p in size_peers):
                csv = os.path.join(workdir, f"panel_{size}_seed{args.seed}.csv")
                save_csv(data, csv)
            say(
                f"size {size}: {SIZES[size]} users x {N_DAYS} days = {len(data):,} rows "
                f"(generated and written in {time.perf_counter() - t0:.1f} s); input arrays "
                f"{input_nbytes(len(data)) / 2**20:.1f} MB"
            )
            for model in args.models:
                base = {
                    "size": size,
                    "model": model,
                    "n_rows": len(data),
                    "formula": MODELS[model]["formula"],
                }
                ours = None
                if our_estimator_class(model) is None:
                    name = OUR_ESTIMATOR[MODELS[model]["family"]]
                    say(
                        f"{size} {model}: ours skipped: sklearn_glmm has no {name} yet "
                        f"(hasattr(sklearn_glmm, {name!r}) is False)"
                    )
                    rows.append(dict(base, tool="ours", note=f"skipped: no {name}"))
                else:
                    ours = time_ours(data, model, repeats)
                    row = dict(base, tool="ours", repeats=repeats, ratio=1.0, loglik_minus_ours=0.0, **ours)
                    notes = [f"CPU {ours['median_cpu_s']:.3f} s"] + (
                        [] if ours["converged"] else ["NOT converged"]
                    )
                    if ours["warnings"]:
                        notes.append(f"{len(ours['warnings'])} warning type(s), see JSON")
                    if not args.no_memory:
                        mem = measure_ours_memory(npz, model, args.timeout)
                        row["memory"] = mem
                        if "error" not in mem:
                            row["peak_mb"] = mem["process_max_rss_mb"]
                            row["fit_mb"] = mem["fit_increment_mb"]
                            row["mem_ratio"] = mem["fit_increment_mb"] * 2**20 / input_nbytes(len(data))
                            notes.insert(0, f"fit +{row['fit_mb']:.0f} MB = {row['mem_ratio']:.1f}x input")
                        else:
                            notes.append("memory child failed")
                    row["note"] = "; ".join(notes)
                    rows.append(row)
                    say(
                        f"{size} {model} ours: median {ours['median_s']:.3f} s (CPU {ours['median_cpu_s']:.3f} s) "
                        f"of {[round(t, 3) for t in ours['times']]}, "
                        f"logLik {ours['loglik']:.4f}, {row['note']}"
                    )
                for peer in size_peers:
                    if peer.startswith("gpboost") and model == "rs":
                        rows.append(
                            dict(base, tool=peer, note="skipped: GPBoost cannot fit correlated random slopes")
                        )
                        continue
                    if model == "nb_ri" and peer in ("lme4_nagq0",) + PY_PEERS:
                        rows.append(dict(base, tool=peer, note="skipped: not run for the NB model"))
                        continue
                    say(f"{size} {model} {peer}: running ({peer_repeats} repeat(s)) ...")
                    if peer in R_PEERS:
                        res = run_r_peer(csv, model, peer, peer_repeats, args.timeout)
                    else:
                        res = run_gpboost(npz, model, peer_repeats, peer == "gpboost", args.timeout)
                    row = dict(base, tool=peer, repeats=peer_repeats, **res)
                    if "skipped" in res or "error" in res:
                        row["note"] = (
                            ("skipped: " + res["skipped"]) if "skipped" in res else "ERROR " + res["error"]
                        )
                        say(f"{size} {model} {peer}: {row['note']}")
                        rows.append(row)
                        continue
                    notes = []
                    if ours:
                        row["ratio"] = res["median_s"] / ours["median_s"]
                        row["loglik_minus_ours"] = res["loglik"] - ours["loglik"]
                    if res.get("warnings"):
                        notes.append("R warn: " + " | ".join(w[:48] for w in res["warnings"][:2]))
                    if peer == "gpboost":
                        notes.append("delta_rel_conv=1e-12, 1 thread")
                    elif peer == "gpboost_default":
                        notes.append("default tolerances, 1 thread")
                    row["note"] = "; ".join(notes)
                    rows.append(row)
                    say(
                        f"{size} {model} {peer}: median {res['median_s']:.3f} s, logLik {res['loglik']:.4f}, "
                        f"peak {res['peak_mb']:.0f} MB"
                    )
            del data
            gc.collect()
        if args.workload:
            say("workload: 5-fold GroupKFold over users at M, ri and rs ...")
            data = make_panel("M", args.seed)
            workload = run_workload(data)
            say(
                "workload: "
                + ", ".join(
                    f"{m} {v['total_s']:.2f} s (fits {sum(v['fit_s']):.2f} s)"
                    for m, v in workload["models"].items()
                )
                + f"; total {workload['total_s']:.2f} s (CPU {workload['total_cpu_s']:.2f} s)"
            )
    finally:
        if not args.keep_data:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(format_table(rows))
    print(
        "ratio = peer median seconds / our median seconds (>1: we are faster); logLik-ours > 0: peer higher;"
    )
    print("peak MB = max RSS of the whole fitting process (interpreter, data, fit); 'fit +X MB' = our fit's")
    print("peak RSS above the RSS just before fit, and its multiple of the input arrays (X, y, codes).")
    checks = target_checks(rows, workload)
    if workload:
        print(
            f"\nGroupKFold workload at M: total {workload['total_s']:.2f} s "
            f"(CPU {workload['total_cpu_s']:.2f} s); "
            + "; ".join(
                f"{m}: fits {sum(v['fit_s']):.2f} s, predict {sum(v['predict_s']):.3f} s"
                for m, v in workload["models"].items()
            )
        )
    if checks:
        print("\nPerformance targets judged from this run:")
        for c in checks:
            verdict = "PASS" if c["pass"] else "FAIL"
            print(f"  [{verdict}] {c['target']}: {c['value']:.4g} (limit {c['limit']:.4g})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "meta": info,
                    "rows_per_size": panels_rows,
                    "results": rows,
                    "workload": workload,
                    "targets": checks,
                },
                fh,
                indent=2,
                default=float,
            )
        print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
