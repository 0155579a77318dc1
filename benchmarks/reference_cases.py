"""Side-by-side table: sklearn_glmm vs the lme4 / glmmTMB reference fits.

Fits every reference case in ``tests/data`` the way its R call does and prints,
per case, the fixed effects, SDs/correlations and log-likelihood next to the
reference, with our median fit time over 5 runs and the reference's R time.

Run from the repository root: ``python benchmarks/reference_cases.py``
"""

from __future__ import annotations

import importlib.util
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _load_test_helpers():
    spec = importlib.util.spec_from_file_location(
        "reference_fits", ROOT / "tests" / "test_families_reference.py"
    )
    package = type(sys)("tests")
    package.__path__ = [str(ROOT / "tests")]
    sys.modules.setdefault("tests", package)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "tests"
    spec.loader.exec_module(module)
    return module


def _seed_case(case):
    from sklearn_glmm import PoissonGLMMRegressor
    from tests.conftest import load_reference, load_reference_data

    ref = load_reference(case)
    data = load_reference_data("app_engagement.csv", factors=["user_id"])
    spec = "(1 | user_id)" if case.endswith("ri") else "(1 + day_centered | user_id)"
    model = PoissonGLMMRegressor(spec).fit(data[["day_centered"]], data["logins"], groups=data["user_id"])
    return model, ref, data


#: several grouping factors: estimator, random_effects, X columns, y, factor columns, kwargs
MULTI_FACTOR_CASES = {
    "crossed_binary_sim": (
        "BinomialGLMMClassifier",
        "(1 | subject) + (1 | item)",
        ["x"],
        "y",
        ["subject", "item"],
        {},
    ),
    "penicillin_crossed": (
        "GaussianLMMRegressor",
        "(1 | plate) + (1 | sample)",
        [],
        "diameter",
        ["plate", "sample"],
        {"reml": False},
    ),
    "nested_poisson_sim": ("PoissonGLMMRegressor", "(1 | clinic/user)", ["x"], "y", ["clinic", "user"], {}),
    "sleepstudy_uncorrelated": (
        "GaussianLMMRegressor",
        "(1 + Days || Subject)",
        ["Days"],
        "Reaction",
        ["Subject"],
        {},
    ),
}


def _multi_factor_case(case):
    import sklearn_glmm
    from tests.conftest import load_reference, load_reference_data

    name, spec, columns, response, factors, kwargs = MULTI_FACTOR_CASES[case]
    ref = load_reference(case)
    data = load_reference_data(ref["data"], factors=factors)
    groups = data[factors] if len(factors) > 1 else data[factors[0]]
    model = getattr(sklearn_glmm, name)(spec, **kwargs).fit(data[columns], data[response], groups=groups)
    return model, ref, data


def main() -> None:
    helpers = _load_test_helpers()
    cases = ["app_engagement_ri", "app_engagement_rs"] + helpers.CASES + list(MULTI_FACTOR_CASES)
    rows = []
    for case in cases:
        if case.startswith("app_engagement_r"):
            fit = lambda c=case: _seed_case(c)  # noqa: E731
        elif case in MULTI_FACTOR_CASES:
            fit = lambda c=case: _multi_factor_case(c)  # noqa: E731
        else:
            fit = lambda c=case: helpers._fit_case(c)  # noqa: E731
        times = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(5):
                start = time.perf_counter()
                model, ref, _ = fit()
                times.append(time.perf_counter() - start)
        reference_loglik = ref.get("loglik_tight_pirls") or ref["loglik"]
        fixef = pd.Series(ref["fixef"])
        sd = pd.DataFrame(ref["varcorr"])["sdcor"].to_numpy()
        rows.append(
            {
                "case": case,
                "engine": ref["engine"],
                "max |fixef diff|": float(np.max(np.abs(model.fixef_.to_numpy() - fixef.to_numpy()))),
                "max |fixef diff| / SE": float(
                    np.max(
                        np.abs(model.fixef_.to_numpy() - fixef.to_numpy())
                        / np.array(list(ref["fixef_se"].values()))
                    )
                ),
                "max rel SD/corr diff": float(
                    np.max(np.abs(model.varcorr_["sdcor"].to_numpy() - sd) / np.abs(sd))
                ),
                "logLik ours": model.loglik_,
                "logLik ref": reference_loglik,
                "ours - ref": model.loglik_ - reference_loglik,
                "fit s (ours, median of 5)": float(np.median(times)),
                "fit s (R)": ref.get("fit_seconds"),
            }
        )
        print(f"\n== {case}: {ref['call']}")
        side = pd.DataFrame({"ours": model.fixef_, "reference": fixef})
        print(side.to_string(float_format=lambda v: f"{v:.6f}"))
        vc = model.varcorr_[["group", "var1", "var2", "sdcor"]].assign(reference=sd)
        print(vc.to_string(float_format=lambda v: f"{v:.6f}"))
    table = pd.DataFrame(rows).set_index("case")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print("\n", table.drop(columns="engine").to_string(float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
