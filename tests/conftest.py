"""Shared fixtures: lme4 reference answers and small data sets.

The reference JSON and CSV files in ``tests/data`` are copies of lme4 1.1.31 /
glmmTMB 1.1.5 outputs (R 4.2.2); ``tests/data/README.md`` says how they were made.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm.datasets._base import read_exact_csv

DATA = Path(__file__).parent / "data"


def load_reference(case: str) -> dict:
    """The lme4 reference answer ``tests/data/<case>.json``."""
    return json.loads((DATA / f"{case}.json").read_text())


def load_reference_data(name: str, factors=()) -> pd.DataFrame:
    """A reference CSV, factor columns read as strings and doubles read exactly."""
    return read_exact_csv(DATA / name, dtype={f: str for f in factors})


@pytest.fixture(scope="session")
def app_engagement() -> pd.DataFrame:
    return load_reference_data("app_engagement.csv", factors=["user_id"])


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261130)


def reference_design(ref: dict, data: pd.DataFrame):
    """Fixed-effect columns (intercept excluded) and the grouping factor(s) of a case.

    Builds each model-matrix column from the case's ``design`` spec: a product
    of indicators ``column == level`` and numeric columns, named as lme4 names
    them (``period2``, ``FoodTreatmentSatiated:SexParentMale``, ``I(age^2)``).
    """

    def column(components):
        values = np.ones(len(data))
        for part in components:
            values = values * (
                (data[part["column"]] == part["level"]) if "level" in part else data[part["column"]]
            )
        return values.astype(float)

    X = pd.DataFrame(
        {name: column(parts) for name, parts in ref["design"]["fixef"].items() if name != "(Intercept)"},
        index=data.index,
    )
    columns = ref["design"]["group_columns"]
    if len(columns) > 1:  # several grouping factors: a DataFrame named as in the formula
        return X, pd.DataFrame({group: data[column] for group, column in columns.items()})
    ((group, group_column),) = columns.items()
    groups = data[group_column].rename(group)
    return X, groups


def core_problem(
    family,
    X,
    y,
    codes,
    Z,
    n_levels,
    *,
    weights=None,
    offset=None,
    n_agq=1,
    X_zi=None,
    controls=None,
    terms=None,
):
    """The engine's problem of a one-factor model (or of ``terms``), with default controls."""
    from sklearn_glmm._core import CoreTerm, LaplaceProblem, make_controls
    from sklearn_glmm.design import theta_index

    n = len(y)
    if terms is None:
        q = Z.shape[1]
        terms = [CoreTerm(np.asarray(codes), np.asarray(Z, dtype=float), n_levels, *theta_index(q))]
    return LaplaceProblem(
        family,
        np.asarray(X, dtype=float),
        np.asarray(y, dtype=float),
        np.ones(n) if weights is None else weights,
        np.zeros(n) if offset is None else offset,
        terms,
        make_controls() if controls is None else controls,
        n_agq=n_agq,
        X_zi=X_zi,
    )


def with_quadrature(problem, n_agq: int):
    """The same one-factor problem with ``n_agq`` quadrature points."""
    return core_problem(
        problem.family,
        problem.XT.T,
        problem.y,
        problem.codes[0],
        problem.ZT[0].T,
        problem.level_counts[0],
        weights=problem.weights,
        offset=problem.offset,
        n_agq=n_agq,
    )
