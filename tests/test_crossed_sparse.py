"""Two large crossed factors: the sparse penalised system (:mod:`sklearn_glmm._core._sparse_system`).

The sparse factorisation is checked against dense linear algebra (``numpy``
on the explicit ``A``, exact to rounding), against the dense Schur path on
models both can fit (deviance to 1e-8, gradient against central finite
differences), and on a model beyond the dense path's 8,000-effect cap against
simulation truth. The paths are forced by the module's size rules
(monkeypatched), never by a slower fit.
"""

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm import GaussianLMMRegressor, PoissonGLMMRegressor
from sklearn_glmm._core import CoreTerm, LaplaceProblem, _sparse_system, make_controls
from sklearn_glmm._core._blocked import MAX_DENSE_EFFECTS, RandomEffectsLayout
from sklearn_glmm._core._lmm import LMMProblem
from sklearn_glmm.families import PoissonFamily


def _force(monkeypatch, path: str, dense_rows: int = 8):
    """Make the layout take ``path``: "dense-schur", "sparse" (levels of eliminations) or "sparse-dense-schur"."""
    if path == "dense-schur":
        monkeypatch.setattr(_sparse_system, "DENSE_COUPLING_ENTRIES", 10**12)
        return
    monkeypatch.setattr(_sparse_system, "DENSE_COUPLING_ENTRIES", 0)
    monkeypatch.setattr(_sparse_system, "DENSE_COUPLING_FILL", 2.0)
    monkeypatch.setattr(_sparse_system, "DENSE_ROWS", dense_rows)
    monkeypatch.setattr(_sparse_system, "DENSE_FRACTION", 0.9)
    if path == "sparse-dense-schur":
        monkeypatch.setattr(_sparse_system, "PAIR_BUDGET", 0)


def _layout_case(rng, levels, q, n):
    """Random crossed codes (sorted by the first factor), Z Lambda per term and weights."""
    codes = [rng.integers(0, g, n) for g in levels]
    order = np.argsort(codes[0], kind="stable")
    codes = [c[order] for c in codes]
    ZlT = []
    for qk in q:
        Z = np.vstack([np.ones(n)] + [rng.normal(size=n) for _ in range(qk - 1)])
        lam = np.eye(qk) + 0.5 * np.tril(rng.normal(size=(qk, qk)))
        ZlT.append(lam.T @ Z)
    return codes, ZlT, rng.uniform(0.2, 2.0, n)


def _explicit(layout, ZlT, W):
    """``A = I + Lambda^T Z^T W Z Lambda`` and ``Z Lambda`` as dense arrays."""
    n = W.size
    Zl = np.zeros((n, layout.size))
    for k in range(layout.n_terms):
        for j in range(layout.q[k]):
            Zl[np.arange(n), layout.starts[k] + layout.codes[k] * layout.q[k] + j] = ZlT[k][j]
    return np.eye(layout.size) + Zl.T @ (W[:, None] * Zl), Zl


@pytest.mark.parametrize("path", ["sparse", "sparse-dense-schur"])
@pytest.mark.parametrize(
    ("levels", "q", "n"),
    [
        ([300, 200], [1, 1], 900),
        ([300, 200], [2, 1], 900),
        ([200, 100], [1, 2], 900),
        ([300, 100], [2, 3], 900),
        ([300, 100, 50], [1, 1, 1], 700),
        ([50, 40], [1, 1], 3000),
    ],
)
def test_sparse_factor_matches_dense_linear_algebra(monkeypatch, path, levels, q, n):
    _force(monkeypatch, path)
    codes, ZlT, W = _layout_case(np.random.default_rng(sum(levels) + n + sum(q)), levels, q, n)
    layout = RandomEffectsLayout(codes, levels, q)
    assert layout.path == path
    if path == "sparse" and layout.m >= 100:
        # eliminations before the dense remainder (the 40-item case's Schur complement is full)
        assert len(layout.sparse.chain.levels) > 0
    A, Zl = _explicit(layout, ZlT, W)
    factor = layout.factor(W, ZlT)
    assert factor.logdet() == pytest.approx(np.linalg.slogdet(A)[1], rel=1e-12, abs=1e-9)
    r = np.random.default_rng(1).normal(size=layout.size)
    np.testing.assert_allclose(A @ factor.solve(r), r, atol=1e-10)
    Ainv = np.linalg.inv(A)
    # the part of A^{-1} zl_i on row i's own effects, for every row and term
    full = Ainv @ Zl.T
    P = factor.row_solutions(ZlT)
    for k in range(layout.n_terms):
        for j in range(layout.q[k]):
            own = layout.starts[k] + layout.codes[k] * layout.q[k] + j
            np.testing.assert_allclose(P[k][j], full[own, np.arange(n)], atol=1e-12)
    for k, blocks in enumerate(factor.inverse_blocks()):
        idx = layout.starts[k] + np.arange(layout.n_levels[k])[:, None] * layout.q[k] + np.arange(layout.q[k])
        np.testing.assert_allclose(blocks, Ainv[idx[:, :, None], idx[:, None, :]], atol=1e-12)
    # solves after the selected inverse (which recomputes the dense factor in place)
    np.testing.assert_allclose(A @ factor.solve(2.0 * r), 2.0 * r, atol=1e-10)


def _crossed_poisson(rng, n_a, n_b, n, sd_a=0.5, sd_b=0.3):
    a, b = rng.integers(0, n_a, n), rng.integers(0, n_b, n)
    x = rng.normal(size=n)
    eta = 0.3 + 0.2 * x + rng.normal(0, sd_a, n_a)[a] + rng.normal(0, sd_b, n_b)[b]
    return x, rng.poisson(np.exp(eta)).astype(float), a, b


def _problem(x, y, a, b, n_a, n_b):
    n = y.size
    ones = np.ones((n, 1))
    terms = [
        CoreTerm(a, ones, n_a, np.array([0]), np.array([0])),
        CoreTerm(b, ones, n_b, np.array([0]), np.array([0])),
    ]
    X = np.column_stack([np.ones(n), x])
    return LaplaceProblem(PoissonFamily(), X, y, np.ones(n), np.zeros(n), terms, make_controls())


@pytest.mark.parametrize("path", ["sparse", "sparse-dense-schur"])
def test_sparse_path_deviance_and_gradient_equal_the_dense_path(monkeypatch, path):
    x, y, a, b = _crossed_poisson(np.random.default_rng(7), 300, 250, 2500)
    theta, coef = np.array([0.45, 0.35]), np.array([0.25, 0.18])
    _force(monkeypatch, "dense-schur")
    dense = _problem(x, y, a, b, 300, 250)
    assert dense.layout.path == "dense-schur"
    ev_dense = dense.evaluate(theta, coef, None, dense.zero_modes())
    _force(monkeypatch, path)
    sparse = _problem(x, y, a, b, 300, 250)
    assert sparse.layout.path == path
    assert sparse.linear_algebra.startswith("sparse coupling")
    ev = sparse.evaluate(theta, coef, None, sparse.zero_modes())
    assert ev.deviance == pytest.approx(ev_dense.deviance, rel=1e-10)
    np.testing.assert_allclose(ev.grad_theta, ev_dense.grad_theta, rtol=1e-7)
    np.testing.assert_allclose(ev.grad_coef, ev_dense.grad_coef, rtol=1e-7)
    # the exact gradient against central differences of the sparse path's deviance
    h = 1e-5
    point = np.concatenate([theta, coef])
    fd = []
    for j in range(point.size):
        up, down = point.copy(), point.copy()
        up[j] += h
        down[j] -= h
        f_up = sparse.evaluate(up[:2], up[2:], None, ev.u, gradient=False).deviance
        f_down = sparse.evaluate(down[:2], down[2:], None, ev.u, gradient=False).deviance
        fd.append((f_up - f_down) / (2 * h))
    np.testing.assert_allclose(np.concatenate([ev.grad_theta, ev.grad_coef]), fd, rtol=1e-5, atol=1e-4)


def test_sparse_fit_equals_dense_fit_and_records_the_path(monkeypatch):
    x, y, a, b = _crossed_poisson(np.random.default_rng(11), 400, 300, 3000)
    X, groups = pd.DataFrame({"x": x}), pd.DataFrame({"a": a, "b": b})
    fits = {}
    for path in ("dense-schur", "sparse"):
        with monkeypatch.context() as patch:
            _force(patch, path, dense_rows=50)
            fits[path] = PoissonGLMMRegressor("(1 | a) + (1 | b)").fit(X, y, groups=groups)
    assert fits["dense-schur"].fit_summary_.linear_algebra.startswith("dense Schur complement")
    assert fits["sparse"].fit_summary_.linear_algebra.startswith("sparse coupling")
    assert fits["sparse"].loglik_ == pytest.approx(fits["dense-schur"].loglik_, rel=1e-8)
    np.testing.assert_allclose(fits["sparse"].theta_, fits["dense-schur"].theta_, rtol=1e-4)


def test_lmm_records_the_factorisation_it_uses():
    """The LMM factorises Z'WZ (``_lmm_system``): its record names that coupling, not the GLMM's path."""
    rng = np.random.default_rng(3)
    n, n_a, n_b = 2000, 250, 200
    a, b = rng.integers(0, n_a, n), rng.integers(0, n_b, n)
    ones = np.ones((n, 1))
    terms = [
        CoreTerm(a, ones, n_a, np.array([0]), np.array([0])),
        CoreTerm(b, ones, n_b, np.array([0]), np.array([0])),
    ]
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    problem = LMMProblem(X, rng.normal(size=n), np.ones(n), np.zeros(n), terms, make_controls())
    assert (
        problem.linear_algebra
        == "sparse coupling: 250 levels block diagonal, dense 200 x 200 Schur complement"
    )
    assert problem._layout.sparse is None  # the rows' layout builds no factorisation structure


def test_beyond_the_dense_cap_fits_and_recovers_the_truth():
    """8,100 item effects (the dense path's cap is 8,000): users meet items of their own community only."""
    rng = np.random.default_rng(2026)
    n_comm, users_per, items_per = 300, 40, 27
    n_users, n_items = n_comm * users_per, n_comm * items_per
    assert n_items > MAX_DENSE_EFFECTS
    comm = rng.integers(0, n_comm, 100_000)
    user = comm * users_per + rng.integers(0, users_per, comm.size)
    item = comm * items_per + rng.integers(0, items_per, comm.size)
    x = rng.normal(size=comm.size)
    eta = 0.3 + 0.2 * x + rng.normal(0, 0.5, n_users)[user] + rng.normal(0, 0.3, n_items)[item]
    y = rng.poisson(np.exp(eta)).astype(float)
    model = PoissonGLMMRegressor("(1 | user) + (1 | item)").fit(
        pd.DataFrame({"x": x}), y, groups=pd.DataFrame({"user": user, "item": item})
    )
    assert model.fit_summary_.linear_algebra.startswith("sparse coupling")
    assert model.converged_
    sd = model.varcorr_.set_index("group")["sdcor"]
    # about 8 rows per user and 12 per item: SDs within 0.05 of the truth, slopes within 3 SE
    assert abs(sd["user"] - 0.5) < 0.05 and abs(sd["item"] - 0.3) < 0.05
    assert abs(model.fixef_["x"] - 0.2) < 3 * model.fixef_se_["x"]


@pytest.mark.slow
def test_gaussian_lmm_beyond_the_cap():
    """A crossed LMM beyond 8,000 effects fits (REML) and records its sparse coupling.

    Slow: the LMM's Schur complement of the 8,100 item effects is dense (minutes).
    """
    rng = np.random.default_rng(5)
    n_comm, users_per, items_per = 300, 30, 27
    comm = rng.integers(0, n_comm, 60_000)
    user = comm * users_per + rng.integers(0, users_per, comm.size)
    item = comm * items_per + rng.integers(0, items_per, comm.size)
    y = 1.0 + rng.normal(0, 0.8, n_comm * users_per)[user] + rng.normal(0, 0.5, n_comm * items_per)[item]
    x = rng.normal(size=comm.size)
    y += 0.5 * x + rng.normal(size=comm.size)
    model = GaussianLMMRegressor("(1 | user) + (1 | item)").fit(
        pd.DataFrame({"x": x}), y, groups=pd.DataFrame({"user": user, "item": item})
    )
    assert model.fit_summary_.linear_algebra.startswith("sparse coupling")
    sd = model.varcorr_.set_index("group")["sdcor"]
    assert abs(sd["user"] - 0.8) < 0.05 and abs(sd["item"] - 0.5) < 0.05
    assert abs(model.sigma_ - 1.0) < 0.02
