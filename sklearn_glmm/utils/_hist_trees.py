"""The base learners of the boosting estimators: scikit-learn's regression trees, one per iteration.

The boosting loop (:func:`sklearn_glmm._core._boost.boost`) asks a learner to
grow one tree on per-row gradients and Hessians, gets each training row's leaf,
sets the leaf values itself (a Newton step that knows about the random
effects) and appends the tree (the ``TreeLearner`` protocol of that module).

:class:`HistTrees` is the default: the histogram-tree grower behind
``HistGradientBoostingRegressor``. Its public estimator bins the features
anew at every ``fit`` (about 80 % of a one-tree fit on 300k rows), so the
learner bins once and calls the grower directly -- scikit-learn's private
``_BinMapper``, ``TreeGrower`` and ``TreePredictor``. This module is the one
place that touches them; if they change, :func:`hist_trees_available` turns
False and :class:`ExactTrees` (``DecisionTreeRegressor``, public API, about 10x
slower per tree) takes over, with the same results up to the splits' bins.

Why these trees (measured on 288k rows x 5 features, 100 rounds, 31 leaves, one
thread, the diagonal leaf values, in one session): the grower binned once took
2.5 s for the trees of a 6.5 s fit; LightGBM through its custom-objective
interface 2.3 s of 6.7 s (the same held-out deviance to 0.03 %), which does
not pay for a dependency -- and LightGBM's trees cannot take leaf values set
from outside (step 3b of :mod:`sklearn_glmm._core._boost`) without its
private training-score buffer; one ``HistGradientBoostingRegressor`` fit per
tree 28.9 s of 34.1 s.

Both grow trees with the second-order gain ``(sum g)^2 / (sum h + l2)``; the
exact trees get it as a weighted least-squares fit of ``-g / h`` with weights
``h`` (the same split criterion). Rows are those given at construction, in
that order.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ExactTrees", "HistTrees", "hist_trees_available", "make_tree_learner"]

#: the histogram grower's arguments this module passes (checked once: the internals are private)
_GROWER_ARGUMENTS = (
    "X_binned",
    "gradients",
    "hessians",
    "max_leaf_nodes",
    "max_depth",
    "min_samples_leaf",
    "n_bins",
    "n_bins_non_missing",
    "has_missing_values",
    "l2_regularization",
    "shrinkage",
    "n_threads",
)

#: (_BinMapper, TreeGrower, G_H_DTYPE), or None when they cannot be used; imported on first use
#: (``import sklearn_glmm`` does not load scikit-learn's ensemble package)
_INTERNALS: list = []


def _internals():
    if not _INTERNALS:
        try:
            import inspect

            from sklearn.ensemble._hist_gradient_boosting.binning import _BinMapper
            from sklearn.ensemble._hist_gradient_boosting.common import G_H_DTYPE
            from sklearn.ensemble._hist_gradient_boosting.grower import TreeGrower

            names = inspect.signature(TreeGrower.__init__).parameters
            usable = all(name in names for name in _GROWER_ARGUMENTS) and hasattr(
                TreeGrower, "make_predictor"
            )
            _INTERNALS.append((_BinMapper, TreeGrower, G_H_DTYPE) if usable else None)
        except (
            ImportError,
            TypeError,
            ValueError,
        ):  # pragma: no cover - a scikit-learn whose internals moved
            _INTERNALS.append(None)
    return _INTERNALS[0]


def hist_trees_available() -> bool:
    """Whether scikit-learn's histogram-tree internals have the interface :class:`HistTrees` uses."""
    return _internals() is not None


class HistTrees:
    """Histogram trees (scikit-learn's grower) on features binned once.

    Parameters
    ----------
    X : ndarray of shape (n, p)
        Training features (float, finite).
    X_valid : ndarray of shape (n_valid, p) or None
        Validation features (early stopping).
    max_leaf_nodes, max_depth, min_samples_leaf, l2_regularization, max_bins
        As ``HistGradientBoostingRegressor``'s.
    random_state : int
        Seeds the bins' subsample (more than 200,000 rows).
    n_threads : int, default=1
        OpenMP threads of the binning, the histograms and the predictions.
    """

    def __init__(
        self,
        X,
        X_valid,
        *,
        max_leaf_nodes,
        max_depth,
        min_samples_leaf,
        l2_regularization,
        max_bins,
        random_state,
        n_threads=1,
    ):
        bin_mapper, self._TreeGrower, self._dtype = _internals()
        self.n_threads = int(n_threads)
        self.mapper = bin_mapper(n_bins=max_bins + 1, random_state=random_state, n_threads=self.n_threads)
        self.X_binned = self.mapper.fit_transform(X)
        self.X_valid_binned = None if X_valid is None else self.mapper.transform(X_valid)
        self.options = {
            "max_leaf_nodes": max_leaf_nodes,
            "max_depth": max_depth,
            "min_samples_leaf": min_samples_leaf,
            "l2_regularization": l2_regularization,
        }
        self.predictors: list = []
        self._grower = None

    def l2_regularization(self) -> float:
        return float(self.options["l2_regularization"])

    def grow(self, gradient: np.ndarray, hessian: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One tree; each training row's leaf and the leaf values ``-sum g / (sum h + l2)``."""
        mapper = self.mapper
        grower = self._TreeGrower(
            X_binned=self.X_binned,
            gradients=np.asarray(gradient, dtype=self._dtype),
            hessians=np.asarray(hessian, dtype=self._dtype),
            n_bins=mapper.n_bins,
            n_bins_non_missing=mapper.n_bins_non_missing_,
            has_missing_values=np.zeros(self.X_binned.shape[1], dtype=bool),
            shrinkage=1.0,
            n_threads=self.n_threads,
            **self.options,
        )
        grower.grow()
        leaves = np.empty(self.X_binned.shape[0], dtype=np.intp)
        values = np.empty(len(grower.finalized_leaves))
        for j, leaf in enumerate(grower.finalized_leaves):
            leaves[leaf.sample_indices] = j
            values[j] = leaf.value
        self._grower = grower
        return leaves, values

    def commit(self, values: np.ndarray) -> np.ndarray | None:
        """Append the last tree with these leaf values; its values at the validation rows."""
        for leaf, value in zip(self._grower.finalized_leaves, values):
            leaf.value = float(value)
        predictor = self._grower.make_predictor(binning_thresholds=self.mapper.bin_thresholds_)
        self._grower = None
        self.predictors.append(predictor)
        if self.X_valid_binned is None:
            return None
        return predictor.predict_binned(
            self.X_valid_binned, self.mapper.missing_values_bin_idx_, self.n_threads
        )

    def truncate(self, n_trees: int) -> None:
        del self.predictors[n_trees:]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The sum of the trees at ``X``."""
        out = np.zeros(X.shape[0])
        if not self.predictors:
            return out
        X_binned = self.mapper.transform(X)
        for predictor in self.predictors:
            _writable(predictor)
            out += predictor.predict_binned(X_binned, self.mapper.missing_values_bin_idx_, self.n_threads)
        return out

    def feature_importances(self, n_features: int) -> np.ndarray:
        """Total split gain per feature."""
        out = np.zeros(n_features)
        for predictor in self.predictors:
            nodes = predictor.nodes
            split = nodes["is_leaf"] == 0
            np.add.at(out, nodes["feature_idx"][split], nodes["gain"][split])
        return out

    def n_leaves(self) -> list[int]:
        return [int(np.sum(p.nodes["is_leaf"])) for p in self.predictors]

    def slim(self) -> None:
        """Drop the binned training and validation features (a fitted model keeps only its trees)."""
        self.X_binned = self.X_valid_binned = None
        self._TreeGrower = self._dtype = None


def _writable(predictor) -> None:
    """Copy a tree's arrays that are read-only (a model loaded from a memory map):
    the grower's prediction routine takes them as writable buffers."""
    for name, value in vars(predictor).items():
        if isinstance(value, np.ndarray) and not value.flags.writeable:
            setattr(predictor, name, value.copy())


class ExactTrees:
    """``DecisionTreeRegressor`` trees (public API): the fallback of :class:`HistTrees`.

    Each tree is a weighted least-squares fit of ``-g / h`` with weights
    ``h`` (the second-order split gain), best-first when ``max_leaf_nodes`` is
    set; the leaf values are then overwritten in ``tree_.value``, as
    scikit-learn's ``GradientBoostingRegressor`` does for its own leaf updates.
    ``l2_regularization`` enters only the Newton leaf values (the split
    criterion has no ridge).
    """

    def __init__(
        self,
        X,
        X_valid,
        *,
        max_leaf_nodes,
        max_depth,
        min_samples_leaf,
        l2_regularization,
        max_bins,
        random_state,
        n_threads=1,
    ):
        self.X = X
        self.X_valid = X_valid
        self.options = {
            "max_leaf_nodes": max_leaf_nodes,
            "max_depth": max_depth,
            "min_samples_leaf": min_samples_leaf,
            "random_state": random_state,
        }
        self.l2 = float(l2_regularization)
        self.trees: list = []
        self._tree = None
        self._leaf_nodes = None

    def l2_regularization(self) -> float:
        return self.l2

    def grow(self, gradient: np.ndarray, hessian: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.tree import DecisionTreeRegressor

        h = np.asarray(hessian, dtype=float)
        positive = h > 0
        target = np.divide(-np.asarray(gradient, dtype=float), h, out=np.zeros_like(h), where=positive)
        tree = DecisionTreeRegressor(**self.options).fit(
            self.X, target, sample_weight=np.where(positive, h, 0.0)
        )
        nodes = tree.apply(self.X)
        self._leaf_nodes, leaves = np.unique(nodes, return_inverse=True)
        leaves = leaves.ravel()
        J = self._leaf_nodes.size
        G = np.bincount(leaves, weights=gradient, minlength=J)
        H = np.bincount(leaves, weights=h, minlength=J)
        self._tree = tree
        return leaves, -G / (H + self.l2 + 1e-300)

    def commit(self, values: np.ndarray) -> np.ndarray | None:
        tree = self._tree
        tree.tree_.value[self._leaf_nodes, 0, 0] = values
        self.trees.append(tree)
        self._tree = None
        return None if self.X_valid is None else tree.predict(self.X_valid)

    def truncate(self, n_trees: int) -> None:
        del self.trees[n_trees:]

    def predict(self, X: np.ndarray) -> np.ndarray:
        out = np.zeros(X.shape[0])
        for tree in self.trees:
            out += tree.predict(X)
        return out

    def feature_importances(self, n_features: int) -> np.ndarray:
        out = np.zeros(n_features)
        for tree in self.trees:
            t = tree.tree_
            split = t.children_left >= 0
            left, right = t.children_left[split], t.children_right[split]
            w = t.weighted_n_node_samples
            gain = w[split] * t.impurity[split] - w[left] * t.impurity[left] - w[right] * t.impurity[right]
            np.add.at(out, t.feature[split], gain)
        return out

    def n_leaves(self) -> list[int]:
        return [int(tree.get_n_leaves()) for tree in self.trees]

    def slim(self) -> None:
        self.X = self.X_valid = None


def make_tree_learner(X, X_valid, *, exact: bool = False, **options):
    """:class:`HistTrees` when scikit-learn's internals allow it (and ``exact`` is False), else :class:`ExactTrees`."""
    if not exact and hist_trees_available():
        return HistTrees(X, X_valid, **options)
    return ExactTrees(X, X_valid, **options)
