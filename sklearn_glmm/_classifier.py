"""BinomialGLMMClassifier: a binary response with labels, on the binomial engine."""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted

from ._base import _BaseGLMM
from ._dask import dask_aware, is_dask_collection, score_dask
from ._regressors import BINOMIAL_LINK_DOC, OPTIMISER_DOC, _BinomialGLMM, _doc, see_also

__all__ = ["BinomialGLMMClassifier"]


class BinomialGLMMClassifier(ClassifierMixin, _BinomialGLMM):
    # labels may be strings: the classifier encodes them itself
    _y_numeric = False

    def _prepare_y(self, y):
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if self.classes_.size > 2:
            raise ValueError(
                f"Only binary classification is supported. The type of the target is "
                f"{type_of_target(y)}: y has {self.classes_.size} classes {self.classes_[:5].tolist()}. "
                "Encode the event of interest as one class."
            )
        if self.classes_.size < 2:
            raise ValueError(
                f"BinomialGLMMClassifier needs two classes in y; it has one class {self.classes_.tolist()}."
            )
        return (y == self.classes_[1]).astype(float)

    def _check_weighted_y(self, y, w):
        kept = y[w > 0]  # y is 0/1 here
        if kept.size == 0 or np.all(kept == kept[0]):
            raise ValueError(
                "BinomialGLMMClassifier needs two classes with positive sample_weight; "
                "only one class is left after zero weights."
            )

    def _response_for(self, y, n_samples):
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != n_samples:
            raise ValueError(f"y must hold one label per row of X ({n_samples}); got shape {y.shape}.")
        unknown = ~np.isin(y, self.classes_)
        if np.any(unknown):
            raise ValueError(
                f"y has labels {np.unique(y[unknown])[:5].tolist()} not in classes_ {self.classes_.tolist()}."
            )
        return (y == self.classes_[1]).astype(float)

    @dask_aware
    def decision_function(self, X=None, groups=None, offset=None):
        """The linear predictor (log-odds for the logit link) of ``classes_[1]``.

        The link scale, lme4's ``predict(m, type = "link")``: the random
        effects of known groups, 0 for new ones.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), default=None
            As in ``fit``; a formula-fitted model also takes a raw data frame,
            or None for the rows of its fit.
        groups : array-like or DataFrame, default=None
            Group labels; rows of groups not seen in fit follow ``new_groups``.
        offset : array-like of shape (n_samples,), default=None
            Known part of the linear predictor.

        Returns
        -------
        ndarray of shape (n_samples,)
            Positive where ``classes_[1]`` is the more probable label.

        See Also
        --------
        predict_proba : The same on the probability scale.

        Examples
        --------
        >>> from sklearn_glmm import BinomialGLMMClassifier
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> data = load_app_engagement()
        >>> X, g, busy = data[["day_centered"]], data["user_id"], data["logins"] >= 3
        >>> clf = BinomialGLMMClassifier("(1 | user_id)").fit(X, busy, groups=g)
        >>> clf.decision_function(X.iloc[:2], groups=g.iloc[:2]).round(4)
        array([0.6841, 0.6672])
        """
        return _BaseGLMM.predict(self, X, groups=groups, offset=offset, kind="link")

    @dask_aware
    def predict_proba(self, X=None, groups=None, offset=None):
        """Probabilities of ``classes_[0]`` and ``classes_[1]``.

        Column 1 is lme4's ``predict(m, type = "response")``: with the random
        effects of known groups; rows of new groups follow ``new_groups``.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), default=None
            As in ``fit``; a formula-fitted model also takes a raw data frame,
            or None for the rows of its fit.
        groups : array-like or DataFrame, default=None
            Group labels; rows of groups not seen in fit follow ``new_groups``.
        offset : array-like of shape (n_samples,), default=None
            Known part of the linear predictor.

        Returns
        -------
        ndarray of shape (n_samples, 2)
            Each row sums to 1.

        See Also
        --------
        predict : The more probable label.
        decision_function : The linear predictor.

        Examples
        --------
        >>> from sklearn_glmm import BinomialGLMMClassifier
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> data = load_app_engagement()
        >>> X, g, busy = data[["day_centered"]], data["user_id"], data["logins"] >= 3
        >>> clf = BinomialGLMMClassifier("(1 | user_id)").fit(X, busy, groups=g)
        >>> clf.classes_
        array([False,  True])
        >>> clf.predict_proba(X.iloc[:2], groups=g.iloc[:2]).round(4)
        array([[0.3353, 0.6647],
               [0.3391, 0.6609]])
        """
        p = _BaseGLMM.predict(self, X, groups=groups, offset=offset)
        return np.column_stack([1.0 - p, p])

    @dask_aware
    def predict(self, X=None, groups=None, offset=None):
        """The more probable label of each row.

        Probabilities are ``predict_proba(X)[:, 1]`` (or ``fitted()``), the
        linear predictor ``decision_function(X)``.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), default=None
            As in ``fit``; a formula-fitted model also takes a raw data frame,
            or None for the rows of its fit.
        groups : array-like or DataFrame, default=None
            Group labels; rows of groups not seen in fit follow ``new_groups``.
        offset : array-like of shape (n_samples,), default=None
            Known part of the linear predictor.

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels from ``classes_`` (None in the rows of a raw data frame with
            missing values).

        See Also
        --------
        predict_proba : The probabilities behind the labels.

        Examples
        --------
        >>> from sklearn_glmm import BinomialGLMMClassifier
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> data = load_app_engagement()
        >>> X, g, busy = data[["day_centered"]], data["user_id"], data["logins"] >= 3
        >>> clf = BinomialGLMMClassifier("(1 | user_id)").fit(X, busy, groups=g)
        >>> clf.predict(X.iloc[:2], groups=g.iloc[:2])
        array([ True,  True])
        """
        check_is_fitted(self, "classes_")
        p = self.predict_proba(X, groups=groups, offset=offset)[:, 1]
        labels = self.classes_[(p > 0.5).astype(int)]
        if np.isnan(p).any():  # rows of a data frame with missing values (R's na.pass)
            labels = np.where(np.isnan(p), None, labels.astype(object))
        return labels

    def score(self, X=None, y=None, groups=None, sample_weight=None, offset=None):
        """Accuracy of ``predict(X, groups)``.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), default=None
            As in ``predict``; a formula-fitted model also takes a raw data
            frame with the response column, or None for the rows of its fit.
        y : array-like of shape (n_samples,), default=None
            True labels.
        groups : array-like or DataFrame, default=None
            Group labels, as in ``predict``.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows in the accuracy.
        offset : array-like of shape (n_samples,), default=None
            Known part of the linear predictor.

        Returns
        -------
        float
            The (weighted) fraction of rows whose label is predicted correctly.

        See Also
        --------
        predict : The labels that are scored.
        sklearn.metrics.accuracy_score : The metric.

        Examples
        --------
        >>> from sklearn_glmm import BinomialGLMMClassifier
        >>> from sklearn_glmm.datasets import load_app_engagement
        >>> data = load_app_engagement()
        >>> X, g, busy = data[["day_centered"]], data["user_id"], data["logins"] >= 3
        >>> clf = BinomialGLMMClassifier("(1 | user_id)").fit(X, busy, groups=g)
        >>> round(clf.score(X, busy, groups=g), 4)
        0.7287
        """
        if is_dask_collection(X):
            return score_dask(self, X, y, groups, sample_weight, offset)
        # imported here: sklearn.metrics would add about 50 ms to ``import sklearn_glmm``
        from sklearn.metrics import accuracy_score

        X, y, groups, sample_weight, offset, _ = self._lme4_data(
            X, y, groups, sample_weight, offset, need_y=True
        )
        return float(
            accuracy_score(y, self.predict(X, groups=groups, offset=offset), sample_weight=sample_weight)
        )

    def _score_sums(self, X, y, groups, sample_weight, offset) -> tuple[float, float]:
        """The weight of the correctly predicted rows and of all rows."""
        correct = np.asarray(self.predict(X, groups=groups, offset=offset) == np.asarray(y), dtype=float)
        w = np.ones(correct.size) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        return float(np.dot(w, correct)), float(np.sum(w))

    def _score_from_sums(self, sums: list, null_deviances=None) -> float:
        return float(sum(s[0] for s in sums) / sum(s[1] for s in sums))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = False
        tags.classifier_tags.multi_class = False
        return tags


BinomialGLMMClassifier.__doc__ = _doc(
    "Binary GLMM classifier (logistic mixed model), fitted as lme4's ``glmer(family = binomial)``.",
    """For a binary response (0/1, bool or any two labels; ``classes_[1]`` is the
    event) the model is ``P(y_ij = classes_[1]) = g^{-1}(offset_ij + X_ij beta
    + Z_ij b_i)`` with ``b_i ~ N(0, Sigma)``, maximised under the Laplace
    approximation.""",
    BINOMIAL_LINK_DOC + "\n    " + OPTIMISER_DOC,
    """classes_ : ndarray of shape (2,)
        The two labels; ``classes_[1]`` is modelled.
    """,
    """``predict_proba`` includes the random effects of known groups;
    ``decision_function`` is the linear predictor; ``score`` is accuracy. For
    proportions with numbers of trials use :class:`BinomialGLMMRegressor`.""",
    """    >>> import numpy as np
    >>> from sklearn_glmm import BinomialGLMMClassifier
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(50), 20)
    >>> x = rng.normal(size=1000)
    >>> p = 1 / (1 + np.exp(-(0.2 + 1.0 * x + rng.normal(0, 0.8, 50)[g])))
    >>> y = np.where(rng.uniform(size=1000) < p, "login", "none")
    >>> clf = BinomialGLMMClassifier().fit(x.reshape(-1, 1), y, groups=g)
    >>> clf.classes_.tolist(), clf.predict_proba(x[:2].reshape(-1, 1)).shape
    (['login', 'none'], (2, 2))""",
    see_also("BinomialGLMMClassifier", "sklearn.linear_model.LogisticRegression : Without random effects."),
)
