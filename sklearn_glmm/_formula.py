"""lme4 formulas: ``glmer("logins ~ day_centered + (day_centered | user_id)", data)``.

A formula is split in three parts:

- the response, a column of ``data``;
- the random-effects bars ``(terms | factor)``, which become the estimator's
  ``random_effects`` string (the columns they name must also be fixed effects);
- the rest, the fixed part, which `formulaic <https://matthewwardrop.github.io/formulaic/>`_
  turns into a model matrix with R's conventions: treatment contrasts with the
  first level as reference, interactions ``a:b`` and ``a*b``, ``I()``.

Column names are then written as R writes them: ``weekend[T.True]`` becomes
``weekendTRUE``, ``spp[T.DM]`` becomes ``sppDM`` and ``I(age ** 2)`` becomes
``I(age^2)``. In ``I()`` R's ``^`` (power) is translated to Python's ``**``.

Rows with a missing value in any variable the model uses are dropped (R's
``na.omit``) with a warning.

:data:`FAMILY_REGISTRY` maps family names to estimator classes; it is the one
place to add a family to :func:`glmer`.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["glmer", "fit_formula", "parse_formula", "ParsedFormula", "FAMILY_REGISTRY", "formula_design"]

#: family name -> name of the estimator class in :mod:`sklearn_glmm` (resolved lazily)
FAMILY_REGISTRY: dict[str, str] = {
    "poisson": "PoissonGLMMRegressor",
    "binomial": "BinomialGLMMClassifier",
    "negative_binomial": "NegativeBinomialGLMMRegressor",
    "nbinom2": "NegativeBinomialGLMMRegressor",
    "gamma": "GammaGLMMRegressor",
    "gaussian": "GaussianLMMRegressor",
}


@dataclass(frozen=True)
class ParsedFormula:
    """An lme4 formula taken apart.

    Attributes
    ----------
    response : str
        Column name of the response.
    fixed : str
        Right-hand side without the bars (``"1"`` when nothing is left).
    bars : tuple of (str, str)
        ``(terms, factor)`` of each random-effects bar, in order.
    offsets : tuple of str
        The expressions of ``offset(...)`` terms.
    """

    response: str
    fixed: str
    bars: tuple[tuple[str, str], ...]
    offsets: tuple[str, ...] = ()
    #: per bar: written with ``||`` (uncorrelated terms)
    uncorrelated: tuple[bool, ...] = ()


def _extract_offsets(text: str) -> tuple[str, list[str]]:
    """Remove top-level ``offset(expr)`` terms from ``text``; return (rest, [expr, ...])."""
    offsets = []
    while True:
        m = re.search(r"(?<![A-Za-z0-9_.])offset\s*\(", text)
        if m is None:
            return text, offsets
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[j], 0)
            j += 1
        offsets.append(text[m.end() : j - 1].strip())
        text = text[: m.start()] + text[j:]


def _bad(formula: str, why: str) -> ValueError:
    return ValueError(
        f"Cannot read the formula {formula!r}: {why}. Expected lme4 syntax, e.g. "
        "'logins ~ day_centered + weekend + (day_centered | user_id)'."
    )


def parse_formula(formula: str) -> ParsedFormula:
    """Split an lme4 formula into response, fixed part and random-effects bars.

    Examples
    --------
    >>> parse_formula("logins ~ day_centered + (day_centered | user_id)")
    ParsedFormula(response='logins', fixed='day_centered', bars=(('day_centered', 'user_id'),), offsets=(), uncorrelated=(False,))
    """
    if not isinstance(formula, str):
        raise TypeError(f"formula must be a string; got {type(formula).__name__}.")
    if formula.count("~") != 1:
        raise _bad(formula, "it needs exactly one '~' between the response and the terms")
    lhs, rhs = (part.strip() for part in formula.split("~"))
    if not re.fullmatch(r"[A-Za-z_.][A-Za-z0-9_.]*", lhs):
        raise _bad(formula, f"the response {lhs!r} must be a column name (transform it in the data first)")
    bars, rest, depth, start, pieces, uncorrelated = [], [], 0, None, [], []
    # find top-level parenthesised groups that contain a bar
    i = 0
    while i < len(rhs):
        ch = rhs[i]
        if ch == "(":
            if depth == 0:
                start = i
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise _bad(formula, "unbalanced parentheses")
            if depth == 0:
                inner = rhs[start + 1 : i]
                if "|" in inner and not rhs[:start].rstrip().endswith(("I", "C")):
                    double = "||" in inner
                    terms, factor = (p.strip() for p in inner.split("||" if double else "|", 1))
                    if not terms or not factor:
                        raise _bad(formula, f"the bar ({inner}) needs terms on the left and a factor on the right")
                    bars.append((terms, factor))
                    uncorrelated.append(double)
                    pieces.append((start, i + 1))
        i += 1
    if depth != 0:
        raise _bad(formula, "unbalanced parentheses")
    cursor = 0
    for a, b in pieces:
        rest.append(rhs[cursor:a])
        cursor = b
    rest.append(rhs[cursor:])
    fixed, offsets = _extract_offsets("".join(rest))
    # tidy the '+' left behind by removed bars
    fixed = re.sub(r"\+\s*(\+\s*)+", "+ ", fixed)
    fixed = re.sub(r"^\s*\+\s*|\s*\+\s*$", "", fixed.strip()).strip()
    return ParsedFormula(
        response=lhs, fixed=fixed or "1", bars=tuple(bars), offsets=tuple(offsets), uncorrelated=tuple(uncorrelated)
    )


def _factor_columns(factor: str) -> list[str]:
    """The data columns of a grouping factor: ``a``, ``a:b`` and nested ``a/b`` name several."""
    return [part.strip() for part in re.split(r"[/:]", factor)]


def _r_power(text: str) -> str:
    """R's ``^`` inside ``I()`` is a power; Python's is ``**``."""
    return re.sub(r"I\(([^()]*(?:\([^()]*\)[^()]*)*)\)", lambda m: "I(" + m.group(1).replace("^", "**") + ")", text)


def _r_name(name: str) -> str:
    """formulaic's column name written as R writes it."""
    if name == "Intercept":
        return "(Intercept)"

    def level(m):
        value = m.group(2)
        value = {"True": "TRUE", "False": "FALSE"}.get(value, value)
        return m.group(1) + value

    name = re.sub(r"([^\[\]:]+?)\[T\.([^\]]+)\]", level, name)
    return re.sub(r"I\((.*)\)", lambda m: "I(" + m.group(1).replace(" ** ", "^").replace("**", "^") + ")", name)


def _prepare(data: pd.DataFrame) -> pd.DataFrame:
    """R treats logical columns as factors (``weekendTRUE``); so do we."""
    out = data.copy()
    for col in out.columns:
        if out[col].dtype == bool:
            out[col] = pd.Categorical(out[col], categories=[False, True])
    return out


def _model_matrix(spec_or_formula, data: pd.DataFrame):
    try:
        from formulaic import model_matrix
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "The formula interface needs formulaic: pip install 'sklearn-glmm[formula]'."
        ) from exc
    if isinstance(spec_or_formula, str):
        return model_matrix(spec_or_formula, data, ensure_full_rank=True)
    return spec_or_formula.get_model_matrix(data)


def _fixed_matrix(parsed: ParsedFormula, data: pd.DataFrame, formula: str):
    fixed = _r_power(parsed.fixed)
    try:
        mm = _model_matrix(fixed, data)
    except Exception as exc:  # formulaic raises many types; name the problem
        raise _bad(formula, f"the fixed part {parsed.fixed!r} failed ({type(exc).__name__}: {exc})") from None
    names = [str(c) for c in mm.columns]
    if "Intercept" not in names:
        raise _bad(formula, "models without a fixed intercept ('0 +' or '- 1') are not supported yet")
    return mm


def _random_effects(parsed: ParsedFormula, data: pd.DataFrame, fixed_names: list[str], formula: str) -> str:
    specs = []
    for (terms, factor), double in zip(parsed.bars, parsed.uncorrelated or (False,) * len(parsed.bars)):
        for column in _factor_columns(factor):
            if column not in data.columns:
                raise _bad(formula, f"the grouping factor {column!r} is not a column of data")
        try:
            mm = _model_matrix(_r_power(terms), data)
        except Exception as exc:
            raise _bad(formula, f"the random terms {terms!r} failed ({type(exc).__name__}: {exc})") from None
        names = [_r_name(str(c)) for c in mm.columns]
        intercept = "(Intercept)" in names
        slopes = [n for n in names if n != "(Intercept)"]
        missing = [n for n in slopes if n not in fixed_names]
        if missing:
            raise _bad(
                formula,
                f"random slope(s) {missing} must also be fixed effects (add them to the fixed part)",
            )
        lhs = " + ".join((["1"] if intercept else ["0"]) + slopes)
        specs.append(f"({lhs} {'||' if double else '|'} {factor})")
    return " + ".join(specs)


def fit_formula(cls, formula: str, data: pd.DataFrame, *, weights=None, offset=None, **params):
    """Fit estimator class ``cls`` from an lme4 formula (see :func:`glmer`)."""
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame; got {type(data).__name__}.")
    parsed = parse_formula(formula)
    if parsed.response not in data.columns:
        raise _bad(formula, f"the response {parsed.response!r} is not a column of data (columns: {list(data.columns)})")
    for _, factor in parsed.bars:
        for column in _factor_columns(factor):
            if column not in data.columns:
                raise _bad(formula, f"the grouping factor {column!r} is not a column of data")
    frame = _prepare(data.reset_index(drop=True))
    mm = _fixed_matrix(parsed, frame, formula)
    # formulaic drops rows with missing values; drop the same rows everywhere else
    rows = pd.Index(mm.index)
    factors = list(dict.fromkeys(c for _, f in parsed.bars for c in _factor_columns(f)))
    needed = frame.loc[rows, [parsed.response] + factors]
    keep = needed.notna().all(axis=1).to_numpy()
    rows = rows[keep]
    if len(rows) < len(frame):
        warnings.warn(
            f"{len(frame) - len(rows)} row(s) with missing values were dropped (as R's na.omit).",
            UserWarning,
            stacklevel=3,
        )
    X = pd.DataFrame(np.asarray(mm)[keep], columns=[_r_name(str(c)) for c in mm.columns])
    X = X.drop(columns="(Intercept)")
    random_effects = _random_effects(parsed, frame, list(X.columns), formula) if parsed.bars else None
    if random_effects is not None:
        params.setdefault("random_effects", random_effects)
    model = cls(**params)
    formula_offset = _offset_values(parsed, frame, formula)
    if formula_offset is not None:
        offset = formula_offset + (0.0 if offset is None else _column_or_array(offset, frame, "offset"))
    y = frame.loc[rows, parsed.response].reset_index(drop=True).rename(parsed.response)
    groups = None
    if factors:
        groups = frame.loc[rows, factors].reset_index(drop=True)
        groups = groups.iloc[:, 0] if len(factors) == 1 else groups
    fit_kw = {}
    for name, value in (("sample_weight", weights), ("offset", offset)):
        if value is None:
            continue
        fit_kw[name] = _column_or_array(value, frame, name)[rows.to_numpy()]
    model.fit(X, y, groups=groups, **fit_kw)
    model.formula_ = formula
    model._formula_spec = (parsed, mm.model_spec)
    return model


def _column_or_array(value, frame: pd.DataFrame, name: str) -> np.ndarray:
    if isinstance(value, str):
        if value not in frame.columns:
            raise ValueError(f"{name} names column {value!r}, which is not in data.")
        value = frame[value]
    array = np.asarray(value, dtype=float)
    if array.shape != (len(frame),):
        raise ValueError(f"{name} must have one value per row of data ({len(frame)}); got shape {array.shape}.")
    return array


def _offset_values(parsed: ParsedFormula, frame: pd.DataFrame, formula: str) -> np.ndarray | None:
    """The sum of the formula's ``offset(expr)`` terms, per row of ``frame``."""
    if not parsed.offsets:
        return None
    total = np.zeros(len(frame))
    for expr in parsed.offsets:
        try:
            mm = _model_matrix(f"0 + I({_r_power(expr)})", frame)
        except Exception as exc:
            raise _bad(formula, f"offset({expr}) failed ({type(exc).__name__}: {exc})") from None
        values = np.full(len(frame), np.nan)
        values[np.asarray(mm.index)] = np.asarray(mm)[:, 0]
        total += values
    return total


def formula_design(model, data: pd.DataFrame):
    """``(X, y, groups, offset)`` of a formula-fitted model for ``data`` (e.g. new rows).

    ``y`` is None when the response column is absent, ``offset`` when the
    formula has no ``offset()`` term. Use them with ``predict``,
    ``residuals``, ``simulate`` or the plots.
    """
    spec = getattr(model, "_formula_spec", None)
    if spec is None:
        raise ValueError("This model was not fitted from a formula (use glmer or from_formula).")
    parsed, model_spec = spec
    frame = _prepare(data.reset_index(drop=True))
    mm = _model_matrix(model_spec, frame)
    rows = pd.Index(mm.index)
    X = pd.DataFrame(np.asarray(mm), columns=[_r_name(str(c)) for c in mm.columns]).drop(columns="(Intercept)")
    y = None
    if parsed.response in frame.columns:
        y = frame.loc[rows, parsed.response].reset_index(drop=True).rename(parsed.response)
    factors = list(dict.fromkeys(c for _, f in parsed.bars for c in _factor_columns(f)))
    groups = None
    if factors:
        groups = frame.loc[rows, factors].reset_index(drop=True)
        groups = groups.iloc[:, 0] if len(factors) == 1 else groups
    offset = _offset_values(parsed, frame, model.formula_)
    return X, y, groups, None if offset is None else offset[rows.to_numpy()]


def glmer(formula: str, data: pd.DataFrame, family: str = "poisson", **kwargs):
    """Fit a GLMM from an lme4 formula, as R's ``glmer(formula, data, family)``.

    Parameters
    ----------
    formula : str
        lme4 syntax, e.g. ``"logins ~ day_centered + weekend + (day_centered | user_id)"``.
    data : DataFrame
    family : str, default="poisson"
        A key of :data:`FAMILY_REGISTRY`.
    **kwargs
        Estimator parameters (``se_method``, ``max_iter``, ``tol``,
        ``verbose``) and ``weights`` / ``offset`` (arrays or column names).

    Returns
    -------
    fitted estimator
        With ``formula_`` set; :func:`formula_design` rebuilds its matrices.

    Examples
    --------
    >>> from sklearn_glmm import glmer
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> data = load_app_engagement()
    >>> model = glmer("logins ~ day_centered + (1 | user_id)", data, family="poisson")
    >>> model.fixef_.round(4)
    (Intercept)     0.7379
    day_centered   -0.0091
    Name: fixef, dtype: float64
    """
    import sklearn_glmm

    if not isinstance(family, str) or family.lower() not in FAMILY_REGISTRY:
        raise ValueError(f"family must be one of {sorted(FAMILY_REGISTRY)}; got {family!r}.")
    cls = getattr(sklearn_glmm, FAMILY_REGISTRY[family.lower()])
    return fit_formula(cls, formula, data, **kwargs)
