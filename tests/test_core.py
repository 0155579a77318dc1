"""The Laplace engine alone: linear algebra, PIRLS, deviance and its gradient."""

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm._core import FamilyGLM, fit, fit_glm, make_controls
from sklearn_glmm._core._linalg import BlockCholesky, GroupIndex
from sklearn_glmm.families import PoissonFamily

from .conftest import core_problem

PACKAGE = Path(__file__).parents[1] / "sklearn_glmm"


def _app_problem(app_engagement, slope: bool, weights=None, offset=None, **kwargs):
    codes, levels = pd.factorize(app_engagement["user_id"], sort=True)
    n = len(app_engagement)
    X = np.column_stack([np.ones(n), app_engagement["day_centered"]])
    Z = X.copy() if slope else np.ones((n, 1))
    y = app_engagement["logins"].to_numpy(float)
    return core_problem(
        PoissonFamily(), X, y, codes, Z, len(levels), weights=weights, offset=offset, **kwargs
    )


@pytest.mark.parametrize("q", [1, 2, 3, 4])
def test_block_cholesky_matches_numpy(rng, q):
    B = rng.normal(size=(7, q, q))
    A = B @ np.swapaxes(B, 1, 2) + q * np.eye(q)
    chol = BlockCholesky(A)
    b = rng.normal(size=(7, q))
    np.testing.assert_allclose(chol.solve(b), np.linalg.solve(A, b[:, :, None])[:, :, 0], rtol=1e-10)
    np.testing.assert_allclose(chol.inverse(), np.linalg.inv(A), rtol=1e-10, atol=1e-12)
    assert chol.logdet() == pytest.approx(np.sum(np.linalg.slogdet(A)[1]), rel=1e-12)


@pytest.mark.parametrize("ordered", [True, False])
def test_group_index_matches_loops(rng, ordered):
    codes = rng.integers(0, 5, size=40)
    codes = np.sort(codes) if ordered else codes
    index = GroupIndex(codes, 5)
    assert index.contiguous is ordered
    left = rng.normal(size=(2, 40))
    right = rng.normal(size=(3, 40))
    w = rng.uniform(size=40)
    outer = index.outer_sums(w, left, right)
    sym = index.outer_sums(w, left)
    sums = index.sum(left)
    np.testing.assert_array_equal(index.expand(np.arange(5.0)), codes)
    np.testing.assert_array_equal(
        index.expand(np.column_stack([np.arange(5.0), -np.arange(5.0)])), [codes, -codes]
    )
    for g in range(5):
        rows = codes == g
        np.testing.assert_allclose(outer[g], (left[:, rows] * w[rows]) @ right[:, rows].T, atol=1e-12)
        np.testing.assert_allclose(sym[g], (left[:, rows] * w[rows]) @ left[:, rows].T, atol=1e-12)
        np.testing.assert_allclose(sums[g], left[:, rows].sum(1), atol=1e-12)
        np.testing.assert_allclose(index.sum(w)[g], w[rows].sum(), atol=1e-12)


@pytest.mark.parametrize(
    "slope, theta, beta",
    [
        (False, [0.43], [0.74, -0.0091]),
        (True, [0.43, 0.002, 0.007], [0.74, -0.0091]),
        (True, [0.3, -0.01, 0.0], [0.5, 0.0]),
    ],
)
def test_gradient_matches_finite_differences(app_engagement, slope, theta, beta):
    n = len(app_engagement)
    weights = np.random.default_rng(1).integers(1, 3, size=n).astype(float)
    offset = np.linspace(-0.2, 0.2, n)
    problem = _app_problem(app_engagement, slope, weights, offset)
    theta, beta = np.array(theta), np.array(beta)
    ev = problem.evaluate(theta, beta, None, problem.zero_modes())
    x = np.concatenate([theta, beta])
    grad = np.concatenate([ev.grad_theta, ev.grad_coef])
    nt = theta.size
    for k in range(x.size):
        h = 1e-5 * max(1.0, abs(x[k]))
        up, down = x.copy(), x.copy()
        up[k] += h
        down[k] -= h
        f_up = problem.evaluate(up[:nt], up[nt:], None, ev.u, gradient=False).deviance
        f_down = problem.evaluate(down[:nt], down[nt:], None, ev.u, gradient=False).deviance
        assert grad[k] == pytest.approx((f_up - f_down) / (2 * h), rel=1e-5, abs=1e-4)


def test_pirls_modes_are_stationary(app_engagement):
    problem = _app_problem(app_engagement, slope=True)
    theta = np.array([0.4, 0.001, 0.006])
    [(shard, _, _system, modes)] = problem.modes(theta, np.array([0.7, -0.01]), None, problem.zero_modes())
    assert modes.converged
    lam = problem.theta_map.lambdas(theta)[0]
    ZlT = lam.T @ shard.ZT[0]
    gradient = shard.groups.sum(ZlT * modes.irls.score) - modes.u
    assert np.max(np.abs(gradient)) < 1e-8


def test_theta_zero_is_the_plain_glm(app_engagement):
    problem = _app_problem(app_engagement, slope=False)
    X = problem.XT.T
    glm = fit_glm(FamilyGLM(problem.family, X, problem.y, problem.weights, problem.offset), make_controls())
    assert glm.converged
    beta = glm.coef
    ev = problem.evaluate(np.zeros(1), beta, None, problem.zero_modes())
    mu = np.exp(X @ beta)
    assert ev.deviance == pytest.approx(-2 * problem.family.loglik(problem.y, mu, problem.weights), rel=1e-13)
    np.testing.assert_allclose(ev.grad_coef, 0.0, atol=1e-6)
    info = problem.coef_information(np.zeros(1), beta, None, ev.u)
    np.testing.assert_allclose(info, X.T @ (X * mu[:, None]), rtol=1e-12)


def test_fit_reaches_a_stationary_point_and_is_deterministic(app_engagement):
    first = fit(_app_problem(app_engagement, slope=True))
    second = fit(_app_problem(app_engagement, slope=True))
    assert first.converged
    np.testing.assert_array_equal(first.theta, second.theta)
    np.testing.assert_array_equal(first.beta, second.beta)
    # the exact gradient at the optimum, relative to the curvature, is tiny
    step = np.linalg.solve(first.hessian, first.gradient)
    assert np.max(np.abs(step)) < 1e-5


#: the layers, innermost first; a module imports only from its own layer or inner ones
LAYERS = [
    ("leaves", {"families", "utils", "datasets", "_version"}),
    ("design", {"design"}),
    ("engine", {"_core"}),
    ("reports", {"results"}),
    ("partitions", {"_partitioned_fit", "_dask"}),
    (
        "estimators",
        {"_base", "_regressors", "_classifier", "_zero_inflated", "_inference", "_lme4_api", "_boosting"},
    ),
    ("outer", {"plot", "_formula", "_r2", "_drop1", "_marginal", "_model_frame"}),
    ("entry points", {"_cli", "__main__", "__init__"}),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Every module of the package and the package modules it imports (function-level imports included)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            found = []
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names if a.name.split(".")[0] == PACKAGE.name]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                elif node.module and node.module.split(".")[0] == PACKAGE.name:
                    module = node.module
                else:
                    continue
                found = [
                    f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names
                ]
            for target in found:
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def _layer(module: str) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "__init__"
    return next(rank for rank, (_, members) in enumerate(LAYERS) if key in members)


def test_the_import_graph_follows_the_layers_and_has_no_cycle():
    """families, utils -> design -> _core -> results -> estimators -> plot, formulas, toolbox -> CLI.

    ``results`` formats numbers and never imports an estimator (the estimators
    build their reports with it); nothing below the entry points imports the
    package itself; the graph, lazy imports included, is acyclic.
    """
    graph = _import_graph()
    for module, targets in graph.items():
        for target in targets:
            assert _layer(target) <= _layer(module), (
                f"{module} ({LAYERS[_layer(module)][0]}) imports {target}"
            )
            if target == PACKAGE.name:
                assert _layer(module) == len(LAYERS) - 1, f"{module} imports the package itself"
    state = {}

    def visit(module, path):
        state[module] = "open"
        for target in graph[module]:
            assert state.get(target) != "open", "import cycle: " + " -> ".join(path + [target])
            if target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_inner_layers_never_import_sklearn_and_the_engine_not_pandas():
    """_core, families and design stay usable without scikit-learn; the engine works on arrays."""
    for layer, banned in (
        ("_core", {"sklearn", "pandas"}),
        ("families", {"sklearn"}),
        ("design", {"sklearn"}),
    ):
        for path in (PACKAGE / layer).glob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                assert not any(n.split(".")[0] in banned for n in names), f"{path} imports {names}"
