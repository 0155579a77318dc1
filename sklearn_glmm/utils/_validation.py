"""Input checks at the estimator boundary that scikit-learn's ``validate_data`` lacks.

scikit-learn's checks catch NaN, infinity, wrong shapes and wrong feature
counts, but some bad inputs reach them as ``could not convert string to
float`` with no hint of which argument or column is at fault, and some legal
but degenerate data (an all-zero count response, a single group) pass every
check and then yield an estimate that does not exist (an intercept of
``-inf``) or is not identified (a variance from one group). The helpers here
refuse those with a message that names the argument and the fix, or warn where
lme4 warns. ``docs/bad_inputs.md`` lists every case and its outcome.

This module never imports scikit-learn, so ``design`` may use it too.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from joblib import cpu_count

__all__ = [
    "SingularFitWarning",
    "check_numeric_inputs",
    "check_group_labels",
    "check_fit_data",
    "check_fit_summary",
    "warn_if_singular",
    "warn_about_fit",
    "check_finite_information",
    "warn_on_text_label_matches",
    "effective_threads",
]

class SingularFitWarning(UserWarning):
    """A random-effect variance is at its boundary (0), as lme4's ``isSingular``."""


def _is_text(value) -> bool:
    return isinstance(value, (str, bytes))


def _non_numeric_columns(X: pd.DataFrame) -> list:
    return [
        col
        for col, dtype in X.dtypes.items()
        if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype))
    ]


def check_numeric_inputs(X, y=None, *, y_numeric: bool = True) -> None:
    """Refuse text in ``X`` (and in ``y`` for regressors) with a message naming it.

    scikit-learn's own error (``could not convert string to float: 'x'``)
    names neither the argument nor the column. Only text is caught here; other
    non-numbers fall through to scikit-learn's ``TypeError``.

    Parameters
    ----------
    X : array-like or DataFrame
    y : array-like, default=None
        Checked only when ``y_numeric`` is True.
    y_numeric : bool, default=True
        False for the classifier, which takes labels.

    Raises
    ------
    ValueError
        If a DataFrame ``X`` has duplicated column names, ``X`` holds text, or
        a numeric ``y`` holds text.
    """
    if isinstance(X, pd.DataFrame):
        duplicated = X.columns[X.columns.duplicated()].unique().tolist()
        if duplicated:
            raise ValueError(
                f"X has duplicated column name(s) {duplicated}; give every column a unique "
                "name (random_effects and fixef_ refer to columns by name)."
            )
        bad = _non_numeric_columns(X)
        if bad:
            dtypes = {str(c): str(X[c].dtype) for c in bad}
            raise ValueError(
                f"X has non-numeric column(s) {dtypes} (could not convert string to float). "
                "X must hold numbers: encode categorical predictors first (e.g. "
                "OneHotEncoder in a Pipeline), and pass the grouping factor as groups=... "
                "instead of a column of X."
            )
    else:
        array = np.asarray(X) if not hasattr(X, "toarray") else None
        if array is not None and (array.dtype.kind in "US" or (
            array.dtype.kind == "O" and any(_is_text(v) for v in array.ravel())
        )):
            example = next(v for v in array.ravel() if _is_text(v) or array.dtype.kind in "US")
            raise ValueError(
                f"X holds text such as {str(example)!r} (could not convert string to float). "
                "X must hold numbers: encode categorical predictors first (e.g. "
                "OneHotEncoder), and pass the grouping factor as groups=...."
            )
    if y_numeric and y is not None:
        values = y.to_numpy() if isinstance(y, (pd.Series, pd.DataFrame)) else np.asarray(y)
        if values.dtype.kind in "US" or (values.dtype.kind == "O" and any(_is_text(v) for v in values.ravel())):
            example = next(v for v in values.ravel() if _is_text(v) or values.dtype.kind in "US")
            raise ValueError(
                f"y holds text such as {str(example)!r} (could not convert string to float); this "
                "regressor needs a numeric response. For a binary response given as labels, "
                "use BinomialGLMMClassifier."
            )


def check_group_labels(series: pd.Series) -> None:
    """Refuse infinite group labels (NaN is refused as a missing label upstream).

    ``inf`` is a legal float but almost always a failed computation (a
    division by zero while building an id); grouping by it would silently
    pool unrelated rows.
    """
    if series.dtype.kind == "f":
        values = series.to_numpy()
    elif series.dtype.kind == "O":
        if pd.api.types.infer_dtype(series, skipna=True) in ("string", "bytes", "integer", "boolean"):
            return  # no float among the labels (one pass in C, not a Python loop over rows)
        values = np.array([v for v in series.to_numpy() if isinstance(v, (float, np.floating))], dtype=float)
    else:
        return
    n_inf = int(np.sum(np.isinf(values)))
    if n_inf:
        raise ValueError(
            f"groups has {n_inf} infinite label(s); group labels must be finite. "
            "Fix the ids of those rows or drop them."
        )


def _degenerate_response(family, y: np.ndarray, n_obs: int) -> str | None:
    """Why the maximum-likelihood estimate does not exist for this ``y``, or None."""
    name = family.name
    if name in ("poisson", "negative_binomial") and np.all(y == 0):
        return (
            f"y is 0 in all n_samples={n_obs} rows with positive weight: the maximum-likelihood "
            "intercept is -infinity (every predicted count 0), so there is nothing to fit. "
            "Check the response column, or drop units that never have an event"
        )
    if name == "binomial" and (np.all(y == 0) or np.all(y == 1)):
        return (
            f"y is {y[0]:g} in all n_samples={n_obs} rows with positive weight: the "
            "maximum-likelihood intercept is infinite (every predicted probability "
            f"{y[0]:g}), so there is nothing to fit. Check the response column"
        )
    if name in ("gaussian", "gamma") and np.all(y == y[0]):
        return (
            f"y is {y[0]:g} in all n_samples={n_obs} rows with positive weight: the "
            "dispersion is 0 and the likelihood unbounded, so there is nothing to fit. "
            "Check the response column"
        )
    return None


def check_fit_data(name: str, family, reml: bool, design, y: np.ndarray, w: np.ndarray) -> None:
    """Refuse data for which the model's estimates do not exist or are not identified.

    Called in ``fit`` after the design is built. lme4 refuses the same cases
    (``check.nlev.gtr.1``, ``check.nobs.vs.nlev`` and ``check.nobs.vs.nRE`` of
    ``lmerControl``) or returns estimates that are infinite.

    Parameters
    ----------
    name : str
        The estimator's class name (for the messages).
    family : Family
        The model's family.
    reml : bool
        Whether a linear mixed model is fitted by REML.
    design : Design
        From :class:`~sklearn_glmm.design.DesignBuilder`.
    y, w : ndarray of shape (n_samples,)
        The response as the family sees it, and the prior weights.

    Raises
    ------
    ValueError
        With a message naming the problem and the fix.
    """
    positive = w > 0
    y_kept = y[positive]
    y_range = (float(np.min(y_kept)), float(np.max(y_kept))) if y_kept.size else (0.0, 0.0)
    # levels present among the weighted rows (a count per level: O(n), no sort)
    sampled = [int(np.count_nonzero(np.bincount(t.codes[positive], minlength=t.n_levels))) for t in design.terms]
    check_fit_summary(name, family, reml, int(np.sum(positive)), y_range, design.X.shape[1],
                      [(t.factor, t.q, g) for t, g in zip(design.terms, sampled)])


def check_fit_summary(name: str, family, reml: bool, n_obs: int, y_range: tuple[float, float], p: int,
                      terms: list[tuple[str, int, int]]) -> None:
    """:func:`check_fit_data` on a summary of the data (what data held in parts report).

    ``y_range`` is the smallest and largest response among the rows with
    positive weight, ``p`` the fixed effects, and ``terms`` holds, per
    random-effects term, (factor, effects per level, levels among the rows
    with positive weight).
    """
    why = _degenerate_response(family, np.asarray(y_range), n_obs)
    if why is not None:
        raise ValueError(f"{name}: {why}.")
    for factor, q, n_sampled in terms:
        _check_term_data(name, family, reml, factor, q, n_sampled, n_obs, p)


def _check_term_data(name, family, reml, factor, q, n_sampled, n_obs, p) -> None:
    """A factor with one level, or (Gaussian) more random effects than observations."""
    if n_sampled == 1:
        raise ValueError(
            f"{name}: the grouping factor {factor!r} has a single level among the rows with "
            "positive weight, and a random-effect variance cannot be estimated from one group "
            "(lme4 refuses this too: 'grouping factors must have > 1 sampled level'). Pass "
            "groups with at least two levels, or fit without groups for the plain GLM."
        )
    if family.name == "gaussian":
        # the residual and the random effects are confounded (lmer's check.nobs.vs.nRE)
        n_re = n_sampled * q
        if n_re >= n_obs:
            raise ValueError(
                f"{name}: {n_sampled} groups x {q} random effect(s) = {n_re} random "
                f"effects for n_samples={n_obs} observations; the random effects and the "
                "residual variance are not identifiable (lmer refuses this too). Use groups "
                "with several rows each, or fewer random-effect terms."
            )
        if reml and n_obs - p <= 0:
            raise ValueError(
                f"{name}: n_samples={n_obs} leaves no residual degrees of freedom for {p} "
                "fixed effects under REML; add data or drop fixed-effect columns."
            )


def warn_if_singular(at_boundary: np.ndarray | None, report_bars) -> None:
    """Warn about a boundary (singular) fit, as lme4's ``boundary (singular) fit`` message.

    Names the random-effect terms whose standard deviation is (close to) 0
    and says what to do, so a researcher does not read a variance of 0 as a
    finding about the data without knowing the fit sits on the boundary.

    Parameters
    ----------
    at_boundary : ndarray of bool or None
        Per reported theta element, whether it is a diagonal element of
        ``Lambda`` at the boundary (the solver's ``singular_tol``, on the
        covariate's scale); None or all False: no warning.
    report_bars : list of (str, list of str, slice)
        Per bar in lme4's order: group name, term names, slice of theta.
    """
    if at_boundary is None or not np.any(at_boundary):
        return
    at_zero: dict[str, list[str]] = {}
    for group, names, where in report_bars:
        lower = [(r, c) for c in range(len(names)) for r in range(c, len(names))]  # lme4's theta order
        for flag, (r, c) in zip(at_boundary[where], lower):
            if flag and r == c:
                at_zero.setdefault(group, []).append(str(names[r]))
    which = " and ".join(f"{names} by {group!r}" for group, names in at_zero.items())
    what = f"the random-effect SD of {which} is (close to) 0" if at_zero else (
        "a random-effect covariance matrix is singular (a correlation of +-1)"
    )
    warnings.warn(
        f"boundary (singular) fit: {what}, as lme4's isSingular. The data show no "
        "variation between groups in that term beyond what the fixed effects explain; "
        "estimates are valid but consider a simpler random_effects (drop the random "
        "slope, or the random effects altogether).",
        SingularFitWarning,
        stacklevel=4,
    )


def check_finite_information(info: np.ndarray) -> None:
    """Refuse a fit whose information matrix is not finite.

    It happens when the fitted means leave the family's domain (a negative
    Gamma mean under the identity link), where R's ``glm`` stops with "no
    valid set of coefficients has been found". Without this check numpy
    fails later with ``LinAlgError: SVD did not converge``.
    """
    if not np.all(np.isfinite(info)):
        raise ValueError(
            "The fit left the family's domain (non-finite information matrix; e.g. a negative "
            "mean under the identity link), as R's 'no valid set of coefficients has been "
            "found'. Use link='log', or rescale or center the predictors."
        )


def warn_about_fit(family, mu: np.ndarray) -> None:
    """The warning R's ``glm`` gives after a fit: fitted values on the boundary (separation).

    ``mu`` are the fitted means of the rows with positive weight. Binomial fits
    whose fitted probabilities are numerically 0 or 1 (R's ``glm.fit``
    threshold, ``10 * .Machine$double.eps``) get R's warning: the data are
    (quasi-)completely separated, some estimates run off towards infinity and
    their standard errors mean little; count models with fitted rates
    numerically 0 the corresponding one.
    """
    name = family.name
    if name not in ("binomial", "poisson", "negative_binomial"):
        return
    eps = 10 * np.finfo(float).eps
    if name != "binomial":
        if np.any(mu < eps):
            warnings.warn(
                "fitted rates numerically 0 occurred (as R's glm warns): some rows with y = 0 "
                "are fitted exactly, so some fixed effects run towards -infinity and are not "
                "identified (a saturated model, or a predictor that is nonzero only where y is 0). "
                "Drop or merge those predictors.",
                UserWarning,
                stacklevel=4,
            )
        return
    if np.any(mu < eps) or np.any(mu > 1 - eps):
        warnings.warn(
            "fitted probabilities numerically 0 or 1 occurred (as R's glm warns): the data "
            "are completely or quasi-completely separated by the predictors, so some fixed "
            "effects are not identified and run towards +-infinity; their estimates and "
            "standard errors are unreliable. Drop or merge the separating predictors.",
            UserWarning,
            stacklevel=4,
        )


def warn_on_text_label_matches(levels: pd.Index, series: pd.Series | None) -> None:
    """Warn when unseen predict labels equal fit levels only as text (``"7"`` vs ``7``).

    lme4 keeps factor levels as strings, so such labels would match there;
    here a label of another type is a new group and gets a population-level
    prediction, which is correct but rarely what the caller meant.
    """
    if series is None:
        return
    values = series.to_numpy()
    unseen = levels.get_indexer(values) < 0
    if not np.any(unseen):
        return
    as_text = set(map(str, levels))
    matches = [v for v in pd.unique(values[unseen]) if str(v) in as_text]
    if matches:
        warnings.warn(
            f"{len(matches)} group label(s) at predict, e.g. {matches[0]!r} "
            f"({type(matches[0]).__name__}), equal groups seen in fit only as text (fit "
            f"labels have dtype {levels.dtype}); they are treated as new groups and get "
            "population-level predictions. Pass labels of the type used in fit.",
            UserWarning,
            stacklevel=4,
        )


def effective_threads(n_jobs: int | None) -> int:
    """Threads for an estimator's ``n_jobs``, with scikit-learn's meaning.

    None is 1; a negative value counts back from the CPUs this process may use
    (-1: all of them, -2: all but one; never fewer than 1).
    """
    if n_jobs is None:
        return 1
    if n_jobs == 0:
        raise ValueError("n_jobs must be None, a positive number of threads or a negative count from the CPUs "
                         "(-1: all); got 0.")
    if n_jobs > 0:
        return int(n_jobs)
    return max(cpu_count() + 1 + int(n_jobs), 1)
