"""The exact gradient of the linear mixed model's profiled criterion (eq. 10b of ``docs/theory.md``).

Every case compares the analytic gradient in theta with central differences
of the criterion itself (step 1e-5; the truncation and rounding errors are
both near 1e-9 of the gradient's scale), for ML and REML, at a point away
from the optimum. The fits themselves are checked against lme4 in
``tests/test_crossed.py`` and the estimator tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from sklearn_glmm._core import CoreTerm, LMMProblem, make_controls
from sklearn_glmm._core._lmm_system import BlockedGram, DenseCoupling
from sklearn_glmm._core._partitioned import LocalParts, Part, PartitionedLMMProblem
from sklearn_glmm.design import theta_index


def _full(codes, Z, n_levels):
    return CoreTerm(codes, Z, n_levels, *theta_index(Z.shape[1]))


def _diagonal(codes, Z, n_levels):
    """An uncorrelated (``||``) term: only the diagonal of Lambda is free."""
    q = Z.shape[1]
    return CoreTerm(codes, Z, n_levels, np.arange(q), np.arange(q))


def _data(seed, n=600):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x, rng.normal(size=n)])
    return rng, n, x, X


def _response(rng, n, x, codes_list):
    y = 1.0 + 0.5 * x + rng.normal(size=n)
    for codes in codes_list:
        y += rng.normal(0, 0.7, codes.max() + 1)[codes] + rng.normal(0, 0.3, codes.max() + 1)[codes] * x
    return y


def _cases():
    """(name, problem inputs, theta) for every structure the gradient covers."""
    out = []
    rng, n, x, X = _data(0)
    a = rng.integers(0, 40, n)
    ones = np.ones((n, 1))
    slope = np.column_stack([np.ones(n), x])
    y = _response(rng, n, x, [a])
    out.append(("one factor, intercept", (X, y, [_full(a, ones, 40)]), np.array([0.8])))
    out.append(("one factor, correlated slope", (X, y, [_full(a, slope, 40)]), np.array([0.8, -0.3, 0.5])))
    Z3 = np.column_stack([np.ones(n), x, X[:, 2]])
    out.append(
        (
            "one factor, three correlated",
            (X, y, [_full(a, Z3, 40)]),
            np.array([0.8, -0.3, 0.2, 0.5, 0.1, 0.4]),
        )
    )
    out.append(("one factor, ||", (X, y, [_diagonal(a, slope, 40)]), np.array([0.8, 0.4])))

    # crossed: many levels against few (sparse coupling), slopes on both
    rng, n, x, X = _data(1, 1500)
    a, b = rng.integers(0, 300, n), rng.integers(0, 60, n)
    y = _response(rng, n, x, [a, b])
    slope = np.column_stack([np.ones(n), x])
    out.append(
        (
            "crossed, sparse coupling",
            (X, y, [_full(a, np.ones((n, 1)), 300), _full(b, slope, 60)]),
            np.array([0.7, 0.6, 0.2, 0.4]),
        )
    )
    out.append(
        (
            "crossed, slopes on the large factor",
            (X, y, [_full(a, slope, 300), _diagonal(b, slope, 60)]),
            np.array([0.7, 0.1, 0.3, 0.6, 0.4]),
        )
    )
    # crossed, few levels each (every pair seen: dense coupling), a third term
    rng, n, x, X = _data(2)
    a, b, c = rng.integers(0, 20, n), rng.integers(0, 9, n), rng.integers(0, 5, n)
    y = _response(rng, n, x, [a, b, c])
    slope = np.column_stack([np.ones(n), x])
    out.append(
        (
            "crossed, dense coupling, three terms",
            (X, y, [_full(a, slope, 20), _full(b, slope, 9), _full(c, np.ones((n, 1)), 5)]),
            np.array([0.7, 0.2, 0.3, 0.6, -0.2, 0.5, 0.9]),
        )
    )
    # nested: users within clinics
    rng, n, x, X = _data(3)
    clinic = rng.integers(0, 8, n)
    user = clinic * 10 + rng.integers(0, 10, n)
    y = _response(rng, n, x, [user, clinic])
    out.append(
        (
            "nested",
            (X, y, [_full(user, np.column_stack([np.ones(n), x]), 80), _full(clinic, np.ones((n, 1)), 8)]),
            np.array([0.6, 0.1, 0.3, 0.8]),
        )
    )
    return out


CASES = _cases()


def _finite_differences(problem, theta, reml, h=1e-5):
    out = np.empty(theta.size)
    for j in range(theta.size):
        e = np.zeros(theta.size)
        e[j] = h
        out[j] = (problem.deviance(theta + e, reml) - problem.deviance(theta - e, reml)) / (2 * h)
    return out


def _problem(inputs, reml, weights=None, offset=None):
    X, y, terms = inputs
    n = y.size
    weights = np.ones(n) if weights is None else weights
    offset = np.zeros(n) if offset is None else offset
    return LMMProblem(X, y, weights, offset, terms, make_controls(), reml=reml)


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize(("name", "inputs", "theta"), CASES, ids=[c[0] for c in CASES])
def test_gradient_equals_central_differences(name, inputs, theta, reml):
    problem = _problem(inputs, reml)
    ev = problem.evaluate(theta)
    assert ev.deviance == pytest.approx(problem.deviance(theta, reml), rel=1e-14)
    fd = _finite_differences(problem, theta, reml)
    np.testing.assert_allclose(ev.grad_theta, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("index", [0, 1, 4, 6, 7])
def test_gradient_with_weights_and_offset(index, reml):
    _, inputs, theta = CASES[index]
    rng = np.random.default_rng(10 + index)
    n = inputs[1].size
    weights = rng.uniform(0.2, 3.0, n)
    weights[:5] = 0.0  # rows without weight count for nothing
    problem = _problem(inputs, reml, weights=weights, offset=rng.normal(size=n))
    ev = problem.evaluate(theta)
    fd = _finite_differences(problem, theta, reml)
    np.testing.assert_allclose(ev.grad_theta, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())


@pytest.mark.parametrize("reml", [False, True])
def test_gradient_at_a_boundary_theta(reml):
    """Variances at 0 (singular Lambda_k, as at a boundary fit): the gradient needs no Lambda^{-1}."""
    _, inputs, _ = CASES[5]
    problem = _problem(inputs, reml)
    theta = np.array([0.0, 0.1, 0.3, 0.0, 0.4])
    ev = problem.evaluate(theta)
    fd = _finite_differences(problem, theta, reml)
    np.testing.assert_allclose(ev.grad_theta, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())


def test_sparse_and_dense_coupling_are_the_same_factorisation():
    _, inputs, theta = CASES[5]
    problem = _problem(inputs, True)
    gram = problem._gram
    assert isinstance(gram, BlockedGram) and not gram.dense_coupling
    sparse_coupling = gram.coupling
    dense = object.__new__(BlockedGram)
    dense.__dict__.update(gram.__dict__)
    dense.coupling = DenseCoupling(sparse_coupling.G0, sparse_coupling.q0, gram.blocks, gram.offsets)
    dense.G12 = np.zeros(sparse_coupling.shape)
    dense.G12[sparse_coupling.row, sparse_coupling.col] = sparse_coupling.values
    dense.dense_coupling = True
    lambdas = problem.theta_map.lambdas(theta)
    f_sparse, f_dense = gram.factor(lambdas), dense.factor(lambdas)
    assert f_sparse.logdet() == pytest.approx(f_dense.logdet(), rel=1e-13)
    r = np.random.default_rng(0).normal(size=problem.blocks.size)
    np.testing.assert_allclose(f_sparse.solve(r), f_dense.solve(r), rtol=1e-10, atol=1e-12)
    for a, b in zip(f_sparse.logdet_gradient(), f_dense.logdet_gradient()):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(f_sparse.inverse_blocks(), f_dense.inverse_blocks()):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("index", [4, 5, 6, 7])
def test_factor_matches_the_dense_system(index):
    """log|A|, solves and the diagonal blocks of A^{-1} against A formed densely from the rows."""
    _, inputs, theta = CASES[index]
    problem = _problem(inputs, False)
    _, y, terms = inputs
    lambdas = problem.theta_map.lambdas(theta)
    n = y.size
    cols = []
    for term, lam in zip(terms, lambdas):
        q = term.Z.shape[1]
        block = np.zeros((n, term.n_levels * q))
        zl = term.Z @ lam
        for j in range(q):
            block[np.arange(n), term.codes * q + j] = zl[:, j]
        cols.append(block)
    ZL = np.hstack(cols)
    A = np.eye(ZL.shape[1]) + ZL.T @ ZL
    factor = problem._gram.factor(lambdas)
    assert factor.logdet() == pytest.approx(np.linalg.slogdet(A)[1], rel=1e-12)
    r = np.random.default_rng(1).normal(size=A.shape[0])
    np.testing.assert_allclose(factor.solve(r), np.linalg.solve(A, r), rtol=1e-9, atol=1e-12)
    Ainv = np.linalg.inv(A)
    start = 0
    for term, block in zip(terms, factor.inverse_blocks()):
        q = term.Z.shape[1]
        for g in range(term.n_levels):
            idx = start + g * q + np.arange(q)
            np.testing.assert_allclose(block[g], Ainv[np.ix_(idx, idx)], rtol=1e-9, atol=1e-12)
        start += term.n_levels * q


@pytest.mark.parametrize("reml", [False, True])
def test_partitioned_gradient_equals_the_whole(reml):
    """Parts holding whole levels (of the outer factor, nested factors inside) add up to the whole."""
    _, inputs, theta = CASES[7]
    X, y, terms = inputs
    whole = _problem(inputs, reml)
    clinic = terms[1].codes
    parts = []
    for group in (np.arange(0, 3), np.arange(3, 8)):
        rows = np.isin(clinic, group)
        local = []
        for term in terms:
            levels, codes = np.unique(term.codes[rows], return_inverse=True)
            local.append(
                (levels, CoreTerm(codes, term.Z[rows], levels.size, term.theta_rows, term.theta_cols))
            )
        problem = LMMProblem(
            X[rows],
            y[rows],
            np.ones(rows.sum()),
            np.zeros(rows.sum()),
            [t for _, t in local],
            make_controls(),
            reml=reml,
        )
        parts.append(Part(problem, [lv for lv, _ in local]))
    partitioned = PartitionedLMMProblem(
        LocalParts(parts), whole.theta_map, whole.level_counts, X.shape[1], make_controls(), reml
    )
    ev_whole, ev_parts = whole.evaluate(theta), partitioned.evaluate(theta)
    assert ev_parts.deviance == pytest.approx(ev_whole.deviance, rel=1e-12)
    np.testing.assert_allclose(ev_parts.grad_theta, ev_whole.grad_theta, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("index", [4, 5, 6])
def test_factor_solves_after_its_inverse(index):
    """S^{-1} is formed over S's Cholesky factor (potri in place): log|A| and solves are unchanged after it."""
    _, inputs, theta = CASES[index]
    problem = _problem(inputs, False)
    factor = problem._gram.factor(problem.theta_map.lambdas(theta))
    r = np.random.default_rng(2).normal(size=(problem.blocks.size, 2))
    before, logdet = factor.solve(r), factor.logdet()
    factor.logdet_gradient()
    assert factor.logdet() == logdet
    np.testing.assert_allclose(factor.solve(r), before, rtol=1e-10, atol=1e-12)
