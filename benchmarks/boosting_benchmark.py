"""Trees + random effects on a non-linear engagement panel (issue 18): ours vs GPBoost vs the rest.

One simulated panel, ``make_engagement_nonlinear(2000 users, 180 days, seed)``:
Poisson logins whose log-mean is a non-linear ``F(x)`` (saturating, threshold,
weekday x trend, a peaked user-level age effect) plus a user random intercept
of SD 0.5. Every model sees the same five covariates (``day``, ``weekday``,
``notifications``, ``mood``, ``age``) and is scored, in one run, on

(a) new users -- ``GroupKFold(5)`` over users, all their rows predicted as
    new groups (the GLMM-type models predict the marginal mean, integrating
    over a new user's random effect; GPBoost its ``response_mean``);
(b) known users' last 30 days -- fitted on days 1-150 of every user,
    predicted on days 151-180 with each user's estimated effect.

Models: ``GLMMBoostingRegressor`` (ours), GPBoost (``gpb.train`` with a
Poisson ``GPModel``; skipped with the reason when ``gpboost`` is not
installed), ``PoissonGLMMRegressor`` (our linear GLMM, random intercept),
``HistGradientBoostingRegressor(loss="poisson")`` without the user, and with
the user id as a feature. HGB's categorical support stops at 255 levels (the
panel has 2,000 users), so the user id enters target-encoded
(``TargetEncoder``, cross-fitted; unseen users get the overall mean). The
three boosting libraries use the same rounds, learning rate, leaves and
minimum leaf size (no early stopping). Everything runs on one thread
(``OMP_NUM_THREADS=1`` and friends are set before numpy is imported, and
``threadpoolctl`` limits the rest). Our estimator and HGB get ``random_state=seed``:
above 200,000 rows both bin the features from a random subsample, and the
known-users split, which extrapolates in ``day``, moves with the bins (ours:
mean deviance 1.144-1.157 over five subsamples).

Reported per model and split: the mean Poisson deviance over all held-out rows
(pooled over folds), the median wall-clock fit time per fit, the median CPU
seconds of fit and prediction (on one thread, what the fit would take on an
idle core; less sensitive to other jobs on a shared machine), and the ratios
to GPBoost's.
The models take turns within each fold (ours, GPBoost, ...), so that the
machine's load affects them alike.

    python benchmarks/boosting_benchmark.py                      # the issue's setting (~10 min)
    python benchmarks/boosting_benchmark.py --users 500 --rounds 100 --json out.json
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import platform
import sys
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

FEATURES = ["day", "weekday", "notifications", "mood", "age"]
MODELS = ("ours", "gpboost", "glmm", "hgb", "hgb_user")
LABELS = {
    "ours": "GLMMBoostingRegressor (ours)",
    "gpboost": "GPBoost",
    "glmm": "PoissonGLMMRegressor (linear)",
    "hgb": "HGB Poisson",
    "hgb_user": "HGB Poisson + user id (target-encoded)",
}


def splits(data, n_folds: int, last_days: int):
    """(name, train rows, test rows) of both splits."""
    from sklearn.model_selection import GroupKFold

    g = data["user_id"].to_numpy()
    out = [("new users", tr, te) for tr, te in GroupKFold(n_folds).split(data, groups=g)]
    late = (data["day"] > data["day"].max() - last_days).to_numpy()
    out.append(("known users", np.flatnonzero(~late), np.flatnonzero(late)))
    return out


def fit_predict(model: str, data, train, test, args):
    """Fit on ``train``, predict ``test``; returns (predictions, fit seconds, extra info)."""
    X = data[FEATURES].to_numpy(dtype=float)
    y = data["logins"].to_numpy(dtype=float)
    g = data["user_id"].to_numpy()
    info = {}
    if model == "ours":
        from sklearn_glmm import GLMMBoostingRegressor

        est = GLMMBoostingRegressor(
            "poisson",
            n_estimators=args.rounds,
            learning_rate=args.learning_rate,
            max_leaf_nodes=args.leaves,
            min_samples_leaf=args.min_leaf,
            early_stopping=False,
            new_groups="marginal",
            random_state=args.seed,
        )
        t = time.perf_counter()
        est.fit(X[train], y[train], groups=g[train])
        seconds = time.perf_counter() - t
        info = {"variance": float(est.varcorr_["vcov"].iloc[0]), "timings": est.timings_}
        return est.predict(X[test], groups=g[test]), seconds, info
    if model == "gpboost":
        import gpboost as gpb

        t = time.perf_counter()
        gp_model = gpb.GPModel(group_data=g[train], likelihood="poisson", num_parallel_threads=1)
        booster = gpb.train(
            params={
                "learning_rate": args.learning_rate,
                "num_leaves": args.leaves,
                "min_data_in_leaf": args.min_leaf,
                "max_bin": 255,
                "num_threads": 1,
                "verbose": -1,
            },
            train_set=gpb.Dataset(X[train], y[train]),
            gp_model=gp_model,
            num_boost_round=args.rounds,
        )
        seconds = time.perf_counter() - t
        pred = booster.predict(data=X[test], group_data_pred=g[test], predict_var=True, pred_latent=False)
        info = {"variance": float(np.asarray(gp_model.get_cov_pars()).ravel()[0])}
        return np.asarray(pred["response_mean"]), seconds, info
    if model == "glmm":
        from sklearn_glmm import PoissonGLMMRegressor

        est = PoissonGLMMRegressor("1", new_groups="marginal")
        t = time.perf_counter()
        est.fit(X[train], y[train], groups=g[train])
        seconds = time.perf_counter() - t
        info = {"variance": float(est.varcorr_["vcov"].iloc[0])}
        return est.predict(X[test], groups=g[test]), seconds, info
    from sklearn.ensemble import HistGradientBoostingRegressor

    hgb = HistGradientBoostingRegressor(
        loss="poisson",
        max_iter=args.rounds,
        learning_rate=args.learning_rate,
        max_leaf_nodes=args.leaves,
        min_samples_leaf=args.min_leaf,
        early_stopping=False,
        random_state=args.seed,
    )
    if model == "hgb":
        t = time.perf_counter()
        hgb.fit(X[train], y[train])
        return hgb.predict(X[test]), time.perf_counter() - t, info
    # the user id as a feature: target-encoded (HGB's categorical features allow at most 255 levels)
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import TargetEncoder

    Xu = np.column_stack([X, g]).astype(object)
    encode = ColumnTransformer(
        [("user", TargetEncoder(target_type="continuous", random_state=args.seed), [len(FEATURES)])],
        remainder="passthrough",
    )
    pipe = make_pipeline(encode, hgb)
    t = time.perf_counter()
    pipe.fit(Xu[train], y[train])
    return pipe.predict(Xu[test]), time.perf_counter() - t, info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=300, help="boosting rounds of every boosting model")
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--leaves", type=int, default=31)
    parser.add_argument("--min-leaf", type=int, default=20)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--last-days", type=int, default=30)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--json", help="write every number to this file")
    args = parser.parse_args(argv)
    if args.days <= args.last_days:
        parser.error(
            f"--days ({args.days}) must exceed --last-days ({args.last_days}): known users need earlier days"
        )

    from sklearn.metrics import mean_poisson_deviance

    from sklearn_glmm.datasets import make_engagement_nonlinear

    skipped = {}
    models = list(args.models)
    if "gpboost" in models:
        try:
            import gpboost
        except ImportError:
            skipped["gpboost"] = "Python package gpboost is not installed (pip install gpboost)"
            models.remove("gpboost")
    data, truth = make_engagement_nonlinear(args.users, args.days, random_state=args.seed, return_truth=True)
    y = data["logins"].to_numpy(dtype=float)
    print(
        f"panel: {args.users} users x {args.days} days = {len(data):,} rows, seed {args.seed}; "
        f"{args.rounds} rounds, learning rate {args.learning_rate}, {args.leaves} leaves, "
        f"min leaf {args.min_leaf}; one thread"
    )
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    oracle = {}
    rows = []
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = splits(data, args.folds, args.last_days)
        for split in ("new users", "known users"):
            folds = [(tr, te) for name, tr, te in parts if name == split]
            test_all = np.concatenate([te for _, te in folds])
            # the true model's own marginal (new users) and conditional (known users) means
            F = truth["fixed_part"][test_all]
            if split == "new users":
                mu = np.exp(F + truth["user_sd"] ** 2 / 2)
            else:
                mu = np.exp(F + truth["ranef"].loc[data["user_id"].to_numpy()[test_all]].to_numpy())
            oracle[split] = float(mean_poisson_deviance(y[test_all], mu))
            # the models take turns within each fold, so that a change of the
            # machine's load during the run falls on all of them alike
            results = {model: ([], [], []) for model in models}
            for k, (tr, te) in enumerate(folds):
                for model in models:
                    cpu = time.process_time()
                    p, s, info = fit_predict(model, data, tr, te, args)
                    # CPU seconds of fit + predict (one thread: what the wall clock would be on an idle core)
                    info["cpu_s"] = time.process_time() - cpu
                    for store, value in zip(results[model], (p, s, info)):
                        store.append(value)
                    print(
                        f"  {split:12s} fold {k + 1}  {model:9s} fit {s:7.2f}s  (fit + predict CPU "
                        f"{info['cpu_s']:.2f}s)",
                        flush=True,
                    )
            for model in models:
                preds, times, infos = results[model]
                deviance = float(mean_poisson_deviance(y[test_all], np.concatenate(preds)))
                variance = [i["variance"] for i in infos if "variance" in i]
                rows.append(
                    {
                        "split": split,
                        "model": model,
                        "deviance": deviance,
                        "median_fit_s": float(np.median(times)),
                        "fit_s": times,
                        "median_cpu_s": float(np.median([i["cpu_s"] for i in infos])),
                        "cpu_s": [i["cpu_s"] for i in infos],
                        "variance": float(np.mean(variance)) if variance else None,
                        "timings": [i.get("timings") for i in infos],
                    }
                )

    def ref(split, key):
        for r in rows:
            if r["split"] == split and r["model"] == "gpboost":
                return r[key]
        return None

    print()
    print(
        "| split | model | mean Poisson deviance | vs GPBoost | median fit (s) | time vs GPBoost "
        "| median CPU (s) | CPU vs GPBoost | user variance |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        d0, t0, c0 = (ref(r["split"], key) for key in ("deviance", "median_fit_s", "median_cpu_s"))
        dr = f"{r['deviance'] / d0 - 1:+.2%}" if d0 else ""
        tr = f"{r['median_fit_s'] / t0:.2f}x" if t0 else ""
        cr = f"{r['median_cpu_s'] / c0:.2f}x" if c0 else ""
        var = f"{r['variance']:.4f}" if r["variance"] is not None else ""
        print(
            f"| {r['split']} | {LABELS[r['model']]} | {r['deviance']:.5f} | {dr} | {r['median_fit_s']:.2f} | {tr} "
            f"| {r['median_cpu_s']:.2f} | {cr} | {var} |"
        )
    for split, value in oracle.items():
        print(f"| {split} | true model (oracle) | {value:.5f} | | | | | | {truth['user_sd'] ** 2:.4f} |")
    checks = []
    for split in ("new users", "known users"):
        ours = next((r for r in rows if r["split"] == split and r["model"] == "ours"), None)
        d0, t0 = ref(split, "deviance"), ref(split, "median_fit_s")
        if ours and d0:
            checks.append((f"{split}: deviance <= GPBoost's + 0.5 %", ours["deviance"] <= 1.005 * d0))
            checks.append((f"{split}: fit time <= GPBoost's", ours["median_fit_s"] <= t0))
    if checks:
        print()
        for text, ok in checks:
            print(f"{'PASS' if ok else 'FAIL'}  {text}")
    if args.json:
        import sklearn

        import sklearn_glmm

        meta = {
            "args": vars(args),
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "numpy": np.__version__,
            "sklearn": sklearn.__version__,
            "sklearn_glmm": sklearn_glmm.__version__,
            "skipped": skipped,
        }
        try:
            import gpboost

            meta["gpboost"] = gpboost.__version__
        except ImportError:
            pass
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "meta": meta,
                    "rows": rows,
                    "oracle": oracle,
                    "checks": [{"check": t, "pass": bool(ok)} for t, ok in checks],
                },
                fh,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
