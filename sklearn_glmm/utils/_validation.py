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
from collections.abc import Hashable

import numpy as np
import pandas as pd
from joblib import cpu_count

__all__ = [
    "SingularFitWarning",
    "SeparationWarning",
    "EXACT_FIT_NOTE",
    "UNBOUNDED_NOTE",
    "FallbackWarning",
    "theta_at_upper_bound",
    "warn_unbounded_variance",
    "warn_about_fallbacks",
    "separated_groups_note",
    "check_numeric_inputs",
    "check_group_labels",
    "check_fit_data",
    "check_fit_summary",
    "check_term_columns",
    "warn_if_singular",
    "warn_about_fit",
    "check_finite_information",
    "warn_on_text_label_matches",
    "effective_threads",
]


class SingularFitWarning(UserWarning):
    """A random-effect variance is at its boundary (0), as lme4's ``isSingular``."""


#: the note of a linear mixed model whose residual SD is 0 to rounding (``GaussianLMMRegressor``;
#: the recorded note starts with it)
EXACT_FIT_NOTE = "exact fit"

#: the note of a fit whose random-effect SD ran to the optimiser's bound
UNBOUNDED_NOTE = (
    "a random-effect SD ran to the optimiser's bound (max_scaled_theta): the likelihood "
    "still rises there (groups without variation in y: separation by group, or y constant "
    "within groups); the fit did not converge"
)


class SeparationWarning(UserWarning):
    """The data are separated: some estimates run off towards infinity.

    Fitted probabilities (or rates) numerically 0 or 1, as R's ``glm`` warns,
    or a random-effect variance that grows without bound because some groups'
    responses are all 0 (or all 1): separation by group.
    """


class FallbackWarning(UserWarning):
    """A numerical fallback was taken during the fit (listed in ``fit_summary_.notes``)."""


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
        If a DataFrame ``X`` has duplicated column names, ``X`` holds text,
        ``y`` has missing values (``None``, ``pd.NA``), or a numeric ``y``
        holds text.
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
        if array is not None and (
            array.dtype.kind in "US" or (array.dtype.kind == "O" and any(_is_text(v) for v in array.ravel()))
        ):
            example = next(v for v in array.ravel() if _is_text(v) or array.dtype.kind in "US")
            raise ValueError(
                f"X holds text such as {str(example)!r} (could not convert string to float). "
                "X must hold numbers: encode categorical predictors first (e.g. "
                "OneHotEncoder), and pass the grouping factor as groups=...."
            )
    if y is not None:
        _check_missing_y(y)
    if y_numeric and y is not None:
        values = y.to_numpy() if isinstance(y, (pd.Series, pd.DataFrame)) else np.asarray(y)
        if values.dtype.kind in "US" or (
            values.dtype.kind == "O" and any(_is_text(v) for v in values.ravel())
        ):
            example = next(v for v in values.ravel() if _is_text(v) or values.dtype.kind in "US")
            raise ValueError(
                f"y holds text such as {str(example)!r} (could not convert string to float); this "
                "regressor needs a numeric response. For a binary response given as labels, "
                "use BinomialGLMMClassifier."
            )


def _check_missing_y(y) -> None:
    """Refuse ``None``/``pd.NA`` in a ``y`` of objects (a list, an object or nullable array).

    scikit-learn's NaN check does not see ``None`` in an object array, which
    then becomes NaN on conversion to float and fails deep in the fit
    (``LinAlgError: SVD did not converge``) or gives a NaN fit. Numeric arrays
    are left to scikit-learn's check.
    """
    values = y.to_numpy() if isinstance(y, (pd.Series, pd.DataFrame)) else y
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return
    missing = pd.isna(np.asarray(values, dtype=object))
    if np.any(missing):
        raise ValueError(
            f"y has {int(np.sum(missing))} missing value(s) (None, NaN or pd.NA), e.g. at position "
            f"{int(np.flatnonzero(np.ravel(missing))[0])}; drop those rows or impute y first."
        )


def check_group_labels(series: pd.Series) -> None:
    """Refuse infinite and unhashable group labels (NaN is refused as a missing label upstream).

    ``inf`` is a legal float but almost always a failed computation (a
    division by zero while building an id); grouping by it would silently
    pool unrelated rows. A label that is a list, dict, set or array cannot be
    a level (levels are looked up by hash), and pandas would fail with
    ``unhashable type`` deep in its factorisation.
    """
    if series.dtype.kind == "f":
        values = series.to_numpy()
    elif series.dtype.kind == "O":
        if pd.api.types.infer_dtype(series, skipna=True) in ("string", "bytes", "integer", "boolean"):
            return  # no float among the labels (one pass in C, not a Python loop over rows)
        objects = series.to_numpy()
        unhashable = next((v for v in objects if not isinstance(v, Hashable)), None)
        if unhashable is not None:
            name = "groups" if series.name is None else f"groups (column {series.name!r})"
            raise TypeError(
                f"{name} holds unhashable labels such as {unhashable!r} "
                f"({type(unhashable).__name__}); group labels must be hashable values "
                "(numbers, strings or tuples). Convert them, e.g. with tuple(label) or str(label)."
            )
        values = np.array([v for v in objects if isinstance(v, (float, np.floating))], dtype=float)
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
    sampled = [
        int(np.count_nonzero(np.bincount(t.codes[positive], minlength=t.n_levels))) for t in design.terms
    ]
    check_fit_summary(
        name,
        family,
        reml,
        int(np.sum(positive)),
        y_range,
        design.X.shape[1],
        [(t.factor, t.q, g) for t, g in zip(design.terms, sampled)],
    )
    for term in design.terms:
        check_term_columns(name, term.factor, term.term_names, _weighted_cross_products(term.Z, w))
    _check_distinct_partitions(name, design.terms, sampled, positive)


def _weighted_cross_products(Z: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``Z^T W Z`` (q x q), one pass over the rows per pair of columns (no weighted copy of Z)."""
    q = Z.shape[1]
    out = np.empty((q, q))
    unit = bool(np.all(w == w.flat[0])) and w.size > 0
    for j in range(q):
        zw = Z[:, j] if unit else Z[:, j] * w
        for k in range(j, q):
            out[j, k] = out[k, j] = float(np.dot(zw, Z[:, k]))
    return out * (float(w.flat[0]) if unit else 1.0)


def check_term_columns(name: str, factor: str, term_names: list[str], cross: np.ndarray) -> None:
    """Refuse random-effect columns whose variances are not identified.

    ``cross`` is ``Z^T W Z`` of one term (its columns over the rows with
    positive weight). A column that is 0 in every row contributes nothing to
    the likelihood, so its variance stays wherever the optimiser started; a
    column that is a linear combination of the term's others (a constant
    slope next to the intercept, a column listed twice) makes the split of
    the variance between them arbitrary. lme4 fits both and reports an SD that
    means nothing; here they are refused, naming the columns.

    Raises
    ------
    ValueError
        Naming the factor, the columns and the fix.
    """
    diag = np.diag(cross)
    zero = [str(n) for n, d in zip(term_names, diag) if not d > 0]
    if zero:
        raise ValueError(
            f"{name}: the random-effect column(s) {zero} of the grouping factor {factor!r} are 0 in "
            "every row with positive weight, so their variance is not identified (the data say "
            "nothing about it). Drop them from random_effects."
        )
    if len(term_names) < 2:
        return
    scale = np.sqrt(diag)
    corr = cross / np.outer(scale, scale)
    eigenvalues, vectors = np.linalg.eigh(corr)
    if eigenvalues[0] > 1e-10 * len(term_names):
        return
    involved = [str(n) for n, v in zip(term_names, vectors[:, 0]) if abs(v) > 1e-6]
    raise ValueError(
        f"{name}: the random-effect columns {involved} of the grouping factor {factor!r} are "
        "linearly dependent (a constant column next to the intercept, or a column listed twice), so "
        "the variance cannot be split between them and their SDs are not identified. Keep only "
        "one of them in random_effects (a constant column's random slope is the random intercept), "
        "or center a column whose spread is tiny next to its mean."
    )


def _check_distinct_partitions(name: str, terms, sampled: list[int], positive: np.ndarray) -> None:
    """Refuse two grouping factors that group the rows identically (``(1 | g/g)``).

    Two random intercepts on the same partition of the rows add up to one: the
    split of the variance between them is not identified.
    """
    for a in range(len(terms)):
        for b in range(a + 1, len(terms)):
            if sampled[a] != sampled[b]:
                continue
            ca, cb = terms[a].codes[positive], terms[b].codes[positive]
            pairs = ca.astype(np.int64) * int(terms[b].n_levels) + cb
            if pd.unique(pairs).size != sampled[a]:
                continue
            fa, fb = terms[a].factor, terms[b].factor
            raise ValueError(
                f"{name}: the grouping factors {fa!r} and {fb!r} group the rows identically (every "
                f"level of one is exactly one level of the other), so the variances of their random "
                f"effects are not separately identified. Keep one of them in random_effects (e.g. "
                f"'(1 | g)' instead of '(1 | g/g)')."
            )


def check_fit_summary(
    name: str,
    family,
    reml: bool,
    n_obs: int,
    y_range: tuple[float, float],
    p: int,
    terms: list[tuple[str, int, int]],
) -> None:
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
    """A factor with one level, or more random effects than observations (lme4's checks)."""
    if n_sampled == 1:
        raise ValueError(
            f"{name}: the grouping factor {factor!r} has a single level among the rows with "
            "positive weight, and a random-effect variance cannot be estimated from one group "
            "(lme4 refuses this too: 'grouping factors must have > 1 sampled level'). Pass "
            "groups with at least two levels, or fit without groups for the plain GLM."
        )
    if family.name != "gaussian" and n_sampled * q > n_obs:
        # glmer's check.nobs.vs.nRE (allow.n = TRUE: one effect per observation is allowed)
        raise ValueError(
            f"{name}: the grouping factor {factor!r} has {n_sampled} levels x {q} random effect(s) = "
            f"{n_sampled * q} random effects for n_samples={n_obs} observations; there are more "
            "random effects than observations, so they are not identified (glmer refuses this too). "
            "Use fewer random slopes, or groups with more rows each."
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
    what = (
        f"the random-effect SD of {which} is (close to) 0"
        if at_zero
        else ("a random-effect covariance matrix is singular (a correlation of +-1)")
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
                SeparationWarning,
                stacklevel=4,
            )
        return
    if np.any(mu < eps) or np.any(mu > 1 - eps):
        warnings.warn(
            "fitted probabilities numerically 0 or 1 occurred (as R's glm warns): the data "
            "are completely or quasi-completely separated by the predictors, so some fixed "
            "effects are not identified and run towards +-infinity; their estimates and "
            "standard errors are unreliable. Drop or merge the separating predictors.",
            SeparationWarning,
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
        raise ValueError(
            "n_jobs must be None, a positive number of threads or a negative count from the CPUs "
            "(-1: all); got 0."
        )
    if n_jobs > 0:
        return int(n_jobs)
    return max(cpu_count() + 1 + int(n_jobs), 1)


def theta_at_upper_bound(
    theta: np.ndarray, theta_scale: np.ndarray, diagonal: np.ndarray, controls: dict
) -> np.ndarray:
    """Which theta elements stopped at the optimiser's bound ``|theta_scale * theta| = max_scaled_theta``.

    That bound is the solver's, not the model's: a variance there would have
    grown further (its maximum-likelihood estimate is infinite).
    """
    bound = float(controls["max_scaled_theta"])
    return np.abs(np.asarray(theta) * np.asarray(theta_scale)) >= (1.0 - 1e-6) * bound


def warn_unbounded_variance(at_bound: np.ndarray, report_bars, family_name: str, convergence_warning) -> None:
    """Warn that random-effect SDs ran to the optimiser's bound (their estimates are infinite).

    ``at_bound`` is per reported theta element (lme4's order), ``report_bars``
    as in :func:`warn_if_singular`. Binary and count data get a
    :class:`SeparationWarning` (groups whose responses are all 0 or all 1),
    the other families ``convergence_warning``.
    """
    names = []
    for group, terms, where in report_bars:
        lower = [(r, c) for c in range(len(terms)) for r in range(c, len(terms))]
        names += [
            f"{terms[r]} by {group!r}" for flag, (r, c) in zip(at_bound[where], lower) if flag and r == c
        ]
    which = ", ".join(names) if names else "a random-effect correlation"
    if family_name in ("binomial", "poisson", "negative_binomial"):
        why = (
            "some groups' responses are all 0 (or all 1): the data are separated by group, and "
            "those groups' random effects run off to infinity"
        )
        category = SeparationWarning
    else:
        why = (
            "the random effects explain y (almost) exactly, e.g. y constant within groups: the "
            "residual variance is (almost) 0"
        )
        category = convergence_warning
    warnings.warn(
        f"The random-effect SD of {which} ran to the optimiser's bound (solver_options "
        f"'max_scaled_theta') and would grow further: {why}. The fit did not converge "
        "(converged_ is False) and the SD is a lower bound. Drop the groups without variation "
        "in y, or model them with a fixed effect.",
        category,
        stacklevel=5,
    )


#: what the notes of a numerical fallback say (``fit_summary_.notes``). Not warned about: a
#: start that merely did not converge (the optimiser goes on from it) and Fisher scoring
#: where the observed information is not positive definite (the zero-inflated model's
#: planned step, ``_core._zip``)
_FALLBACK_NOTES = (
    "the step used least squares",
    "the line search failed",
    "the GLM start's information is singular",
)


def warn_about_fallbacks(notes: list[str]) -> None:
    """One :class:`FallbackWarning` per fit listing the numerical fallbacks among ``notes``.

    A fallback (least squares for a singular information, a line search that
    found no ascent, a diagonal scaling for a singular start) keeps the fit
    going where the planned step fails; the estimates may still be right, but
    the user must be able to see that it happened.
    """
    taken = [note for note in notes if any(marker in note for marker in _FALLBACK_NOTES)]
    if taken:
        warnings.warn(
            f"The fit took {len(taken)} numerical fallback(s): {'; '.join(taken)}. This happens with "
            "separated data or (nearly) collinear predictors; check the estimates and standard "
            "errors, and rescale or drop predictors. They are listed in fit_summary_.notes.",
            FallbackWarning,
            stacklevel=5,
        )


#: a random-intercept SD (link scale) above this, with groups whose responses are all 0 (or all 1),
#: is read as separation by group
SEPARATION_SD = 5.0


def separated_groups_note(family_name: str, terms, y: np.ndarray, w: np.ndarray, covariances) -> str | None:
    """Warn when a large random-intercept SD comes from groups whose responses are all 0 (or all 1).

    Binary and count data in which some groups never (or, binary, always)
    have an event pull those groups' random intercepts towards infinity: the
    SD estimate is then driven by separation, not by variation between
    groups (lme4 reports such fits without comment). ``terms`` are the
    design's, ``covariances`` each term's ``Sigma`` in the same order.
    Returns the note recorded in ``fit_summary_.notes`` (None: no warning).
    """
    if family_name not in ("binomial", "poisson", "negative_binomial"):
        return None
    positive = w > 0
    for term, cov in zip(terms, covariances):
        if term.term_names[0] != "(Intercept)" or not np.sqrt(cov[0, 0]) > SEPARATION_SD:
            continue
        codes = term.codes[positive]
        rows = np.bincount(codes, minlength=term.n_levels)
        events = np.bincount(codes, weights=(y[positive] > 0).astype(float), minlength=term.n_levels)
        separated = (rows > 0) & (events == 0)
        if family_name == "binomial":
            full = np.bincount(codes, weights=(y[positive] < 1).astype(float), minlength=term.n_levels)
            separated |= (rows > 0) & (full == 0)
        if not np.any(separated):
            continue
        note = (
            f"separation by group: {int(np.sum(separated))} of {term.n_levels} levels of {term.factor!r} "
            f"have responses all 0{' or all 1' if family_name == 'binomial' else ''}, and the random-"
            f"intercept SD is {np.sqrt(cov[0, 0]):.3g} on the link scale"
        )
        warnings.warn(
            f"The fit shows {note}: those groups' random effects run towards infinity and the SD "
            "estimate reflects the separation, not variation between groups. Drop those groups or "
            "model them with a fixed effect (or a fixed-effect indicator of 'never/always').",
            SeparationWarning,
            stacklevel=3,
        )
        return note
    return None
