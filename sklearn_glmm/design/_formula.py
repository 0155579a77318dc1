"""lme4 formulas turned into the estimators' inputs (``X``, ``y``, ``groups``, weights, offset).

A formula is split in three parts:

- the response, a column of ``data``;
- the random-effects bars ``(terms | factor)``, which become the estimator's
  ``random_effects`` string;
- the rest, the fixed part, which `formulaic <https://matthewwardrop.github.io/formulaic/>`_
  turns into a model matrix with R's conventions: treatment contrasts with the
  first level as reference, interactions ``a:b`` and ``a*b``, ``I()``.

Column names are then written as R writes them: ``weekend[T.True]`` becomes
``weekendTRUE``, ``spp[T.DM]`` becomes ``sppDM``, ``urban[N]:age`` (an
interaction without its main effect) becomes ``urbanN:age`` and ``I(age ** 2)``
becomes ``I(age^2)``. In ``I()`` R's ``^`` (power) is translated to Python's ``**``.
A random slope that is not a fixed effect (``y ~ 1 + (x | g)``) enters X with
the estimator's ``fixed_effects`` leaving it out of the fixed part.

Rows with a missing value in any variable the model uses are dropped (R's
``na.omit``) with a warning.

A fitted model keeps the transformation as ``formula_`` (a :class:`FormulaSpec`)
and an in-memory reference to ``data`` (never pickled), so that
``m.predict(newdata)``, ``m.fitted()`` and ``m.residuals(kind=...)`` work as in
R (see :mod:`sklearn_glmm._lme4_api`). This module knows nothing of the
estimators: their ``from_formula`` fits from :func:`prepare_formula_fit`, and
:mod:`sklearn_glmm._formula` adds ``glmer`` and ``update``.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "FormulaFrame",
    "FormulaSpec",
    "ParsedFormula",
    "parse_formula",
    "prepare_formula_fit",
    "require_formulaic",
    "update_formula",
]

INTERCEPT = "(Intercept)"

FORMULAIC_HINT = (
    "The formula interface needs the optional package formulaic (the 'formula' extra): "
    "pip install formulaic, or pip install '.[formula]' in a checkout of sklearn_glmm."
)


def require_formulaic() -> None:
    """Raise an ``ImportError`` that names the extra to install when formulaic is missing.

    Examples
    --------
    >>> require_formulaic()  # formulaic is installed: nothing happens
    """
    try:
        import formulaic  # noqa: F401
    except ImportError:
        raise ImportError(FORMULAIC_HINT) from None


@dataclass(frozen=True)
class FormulaFrame:
    """The estimator's inputs for the rows of a data frame.

    Attributes
    ----------
    X : DataFrame
        The fixed design (intercept excluded), columns as in fit.
    y : Series or None
        The response; None when the data have no response column.
    groups : Series, DataFrame or None
        The grouping column(s); None when the data have none of them.
    offset, sample_weight : ndarray or None
    rows : ndarray of int
        Positions in the data of the rows above (rows with a missing value in
        a column the model uses are left out).
    n_rows : int
        Number of rows of the data.
    """

    X: pd.DataFrame
    y: pd.Series | None
    groups: pd.Series | pd.DataFrame | None
    offset: np.ndarray | None
    sample_weight: np.ndarray | None
    rows: np.ndarray
    n_rows: int


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

    @property
    def factor_columns(self) -> list[str]:
        """The data columns of the grouping factors, in order of first appearance."""
        return list(dict.fromkeys(c for _, f in self.bars for c in _factor_columns(f)))


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
    """A formula that is not lme4 syntax."""
    return ValueError(
        f"Cannot read the formula {formula!r}: {why}. Expected lme4 syntax, e.g. "
        "'logins ~ day_centered + weekend + (day_centered | user_id)'."
    )


def _unsupported(formula: str, what: str) -> ValueError:
    """A valid lme4 formula with a feature this package does not have."""
    return ValueError(f"The formula {formula!r} is valid lme4, but sklearn_glmm does not support {what}.")


def _mismatch(formula: str, why: str) -> ValueError:
    """A formula that does not fit the data."""
    return ValueError(f"The formula {formula!r} does not fit the data: {why}.")


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
    if re.fullmatch(r"cbind\s*\(.*\)", lhs):
        raise _unsupported(
            formula,
            f"a two-column binomial response {lhs}: give the proportion of successes as the "
            "response and the number of trials as weights, e.g. "
            "BinomialGLMMRegressor.from_formula('p ~ x + (1 | g)', data, weights='n')",
        )
    if not re.fullmatch(r"[A-Za-z_.][A-Za-z0-9_.]*", lhs):
        if not lhs:
            raise _bad(formula, "the response (left of '~') is missing")
        raise _unsupported(
            formula, f"a transformed response {lhs!r}: add the transformed column to data and name it"
        )
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
                        raise _bad(
                            formula, f"the bar ({inner}) needs terms on the left and a factor on the right"
                        )
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
        response=lhs,
        fixed=fixed or "1",
        bars=tuple(bars),
        offsets=tuple(offsets),
        uncorrelated=tuple(uncorrelated),
    )


def _factor_columns(factor: str) -> list[str]:
    """The data columns of a grouping factor: ``a``, ``a:b`` and nested ``a/b`` name several."""
    return [part.strip() for part in re.split(r"[/:]", factor)]


def _r_power(text: str) -> str:
    """R's ``^`` inside ``I()`` is a power; Python's is ``**``."""
    return re.sub(
        r"I\(([^()]*(?:\([^()]*\)[^()]*)*)\)", lambda m: "I(" + m.group(1).replace("^", "**") + ")", text
    )


def _r_name(name: str) -> str:
    """formulaic's column (or term) name written as R writes it.

    ``a[T.x]`` (treatment contrast) and ``a[x]`` (full dummy coding, e.g. in an
    interaction without its main effect) both become ``ax``.
    """
    if name == "Intercept":
        return INTERCEPT

    def level(m):
        value = m.group(2)
        value = {"True": "TRUE", "False": "FALSE"}.get(value, value)
        return m.group(1) + value

    name = re.sub(r"([^\[\]:]+?)\[(?:T\.)?([^\]]+)\]", level, name)
    return re.sub(
        r"I\((.*)\)", lambda m: "I(" + m.group(1).replace(" ** ", "^").replace("**", "^") + ")", name
    )


def _prepare(data: pd.DataFrame) -> pd.DataFrame:
    """R treats logical columns as factors (``weekendTRUE``); so do we."""
    out = data.copy()
    for col in out.columns:
        if out[col].dtype == bool:
            out[col] = pd.Categorical(out[col], categories=[False, True])
    return out


def _model_matrix(spec_or_formula, data: pd.DataFrame):
    from formulaic import model_matrix

    if isinstance(spec_or_formula, str):
        return model_matrix(spec_or_formula, data, ensure_full_rank=True)
    return spec_or_formula.get_model_matrix(data)


@dataclass(frozen=True)
class FormulaSpec:
    """The transformation of a formula-fitted model: its ``formula_``.

    Rebuilds the estimator's inputs ``(X, y, groups, offset, sample_weight)``
    from any data frame with the columns the formula uses (see
    :meth:`transform`); ``str(spec)`` is the formula.

    Attributes
    ----------
    formula : str
        The formula as given.
    parsed : ParsedFormula
        Its parts (response, fixed part, bars, offsets).
    fixed_spec : formulaic.ModelSpec
        The fixed part's model spec (levels and contrasts of the fit).
    random_specs : tuple of formulaic.ModelSpec
        Model specs of the bars whose slopes are not fixed effects (their
        columns join X, left out of the fixed part).
    columns : tuple of str
        The columns of X, in R's names.
    fixed_effects : tuple of str or None
        The estimator's ``fixed_effects`` (None: every column of X).
    terms : dict of {str: tuple of str}
        Each term of the fixed part (R's spelling, e.g. ``"livch"``,
        ``"urban:age"``) and its columns of X.
    term_factors : dict of {str: tuple of str}
        The variables of each term (for the marginality of :func:`drop1`).
    weights_column, offset_column : str or None
        The data columns given as ``weights=``/``offset=`` to :func:`glmer`.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_glmm import glmer
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> model = glmer("logins ~ day_centered + (1 | user_id)", load_app_engagement())
    >>> spec = model.formula_
    >>> str(spec), spec.response, spec.group_columns, spec.terms
    ('logins ~ day_centered + (1 | user_id)', 'logins', ['user_id'], {'day_centered': ('day_centered',)})
    >>> spec.transform(pd.DataFrame({"day_centered": [0.5]})).X
       day_centered
    0           0.5
    """

    formula: str
    parsed: ParsedFormula
    fixed_spec: object
    random_specs: tuple = ()
    columns: tuple[str, ...] = ()
    fixed_effects: tuple[str, ...] | None = None
    terms: dict = field(default_factory=dict)
    term_factors: dict = field(default_factory=dict)
    weights_column: str | None = None
    offset_column: str | None = None

    def __str__(self) -> str:
        return self.formula

    def __repr__(self) -> str:
        return f"FormulaSpec({self.formula!r})"

    @property
    def response(self) -> str:
        """The response column."""
        return self.parsed.response

    @property
    def group_columns(self) -> list[str]:
        """The grouping columns, in order of first appearance."""
        return self.parsed.factor_columns

    def reads(self, data) -> bool:
        """Whether ``data`` has every variable of the fixed part, the bars and the offsets (raw data)."""
        if not isinstance(data, pd.DataFrame):
            return False
        needed = {self.offset_column} if self.offset_column is not None else set()
        for spec in (self.fixed_spec, *self.random_specs):
            needed |= {str(v) for v in getattr(spec, "required_variables", ())}
        return needed <= set(map(str, data.columns))

    def transform(
        self, data: pd.DataFrame, weights=None, offset=None, *, response: bool = False
    ) -> FormulaFrame:
        """The estimator's inputs for the rows of ``data``.

        Parameters
        ----------
        data : DataFrame
            Needs the columns of the fixed part and of the offsets; the
            grouping columns are optional (without all of them every row is
            predicted at population level); the response column is needed
            only with ``response=True``.
        weights, offset : array-like of shape (len(data),), default=None
            Arrays of the fit call (column names are read from ``data``).
        response : bool, default=False
            Whether the response is required.

        Returns
        -------
        FormulaFrame
            Rows with a missing value in a column the model uses are left out
            (``rows`` says which were kept).

        Raises
        ------
        ValueError
            If a column is missing, or a fixed-effect factor has a level the
            fit did not see (R's ``predict`` refuses those too).
        """
        require_formulaic()
        if not isinstance(data, pd.DataFrame):
            raise TypeError(f"data must be a pandas DataFrame; got {type(data).__name__}.")
        n = len(data)
        frame = _prepare(data.reset_index(drop=True))
        _check_new_levels(self.fixed_spec, frame)
        mm = _matrix_for(self, self.fixed_spec, frame, "the fixed part")
        matrices = [(mm, [c for c in mm.columns if c != "Intercept"])]
        for spec in self.random_specs:
            extra = _matrix_for(self, spec, frame, "a random-effects term")
            taken = _names(matrices)
            matrices.append(
                (extra, [c for c in extra.columns if str(c) != "Intercept" and _r_name(str(c)) not in taken])
            )
        keep = np.ones(n, dtype=bool)
        for matrix, _ in matrices:
            kept = np.zeros(n, dtype=bool)
            kept[np.asarray(matrix.index)] = True
            keep &= kept
        factors = self.group_columns
        present = [c for c in factors if c in frame.columns]
        if present and len(present) < len(factors):
            raise ValueError(
                f"data has the grouping column(s) {present} but not {[c for c in factors if c not in present]}; "
                "give all of them (levels not seen in fit follow new_groups), or none for "
                "population-level predictions."
            )
        has_groups = bool(present)
        if has_groups:
            keep &= frame[factors].notna().all(axis=1).to_numpy()
        has_y = self.response in frame.columns
        if response and not has_y:
            raise ValueError(f"data has no response column {self.response!r}.")
        if response:
            keep &= frame[self.response].notna().to_numpy()
        formula_offset = _offset_values(self.parsed, frame, self.formula)
        if formula_offset is not None:
            keep &= np.isfinite(formula_offset)
        rows = np.flatnonzero(keep)
        X = (
            pd.concat([_kept(matrix, columns, keep) for matrix, columns in matrices], axis=1)
            if matrices
            else pd.DataFrame(index=range(rows.size))
        )
        X.columns = [_r_name(str(c)) for c in X.columns]
        X = X[list(self.columns)]
        y = frame[self.response].to_numpy()[rows] if has_y else None
        y = None if y is None else pd.Series(y, name=self.response)
        groups = None
        if has_groups:
            groups = frame.loc[rows, factors].reset_index(drop=True)
            groups = groups.iloc[:, 0] if len(factors) == 1 else groups
        total_offset = None if formula_offset is None else formula_offset[rows]
        extra_offset = _column_or_array(self.offset_column or offset, frame, "offset")
        if extra_offset is not None:
            total_offset = extra_offset[rows] + (0.0 if total_offset is None else total_offset)
        # prior weights matter to score and residuals only: new data may leave their column out
        has_weights = self.weights_column is None or self.weights_column in frame.columns
        w = _column_or_array(self.weights_column or weights, frame, "weights") if has_weights else None
        return FormulaFrame(
            X=X,
            y=y,
            groups=groups,
            offset=total_offset,
            sample_weight=None if w is None else w[rows],
            rows=rows,
            n_rows=n,
        )


def _names(matrices) -> set[str]:
    return {_r_name(str(c)) for matrix, columns in matrices for c in columns}


def _kept(matrix, columns, keep: np.ndarray) -> pd.DataFrame:
    """The rows of ``keep`` of a model matrix (indexed by data row), as a fresh frame."""
    position = pd.Index(matrix.index).get_indexer(np.flatnonzero(keep))
    values = np.asarray(matrix[columns], dtype=float)[position] if columns else np.empty((position.size, 0))
    return pd.DataFrame(values, columns=[str(c) for c in columns])


def _matrix_for(spec: FormulaSpec, model_spec, frame: pd.DataFrame, what: str):
    """``model_spec`` applied to ``frame``, a missing column named plainly."""
    required = sorted(str(v) for v in getattr(model_spec, "required_variables", ()))
    missing = [v for v in required if v not in frame.columns]
    if missing:
        raise ValueError(
            f"data lacks the column(s) {missing} that {what} of {spec.formula!r} uses "
            f"(data has {list(frame.columns)})."
        )
    from formulaic.errors import DataMismatchWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DataMismatchWarning)
            return _model_matrix(model_spec, frame)
    except DataMismatchWarning as exc:
        raise ValueError(f"data does not match {what} of {spec.formula!r}: {exc}") from None


def _check_new_levels(model_spec, frame: pd.DataFrame) -> None:
    """Refuse levels of fixed-effect factors that the fit did not see (as R's ``predict``)."""
    for name, (kind, state) in getattr(model_spec, "encoder_state", {}).items():
        if getattr(kind, "value", kind) != "categorical" or name not in frame.columns:
            continue
        seen = pd.Index(state.get("categories", []))
        values = pd.Series(frame[name]).dropna()
        new = pd.unique(values[~values.isin(seen)])
        if len(new):
            raise ValueError(
                f"The fixed-effect factor {name!r} has level(s) {list(new)[:5]} that the fit did not "
                f"see (its levels: {list(seen)[:10]}); a fixed effect cannot be predicted for them. "
                "Drop those rows or map them to a known level."
            )


def _fixed_matrix(parsed: ParsedFormula, data: pd.DataFrame, formula: str):
    fixed = _r_power(parsed.fixed)
    try:
        mm = _model_matrix(fixed, data)
    except Exception as exc:  # noqa: BLE001 - formulaic raises many types; name the problem
        raise _mismatch(
            formula, f"the fixed part {parsed.fixed!r} failed ({type(exc).__name__}: {exc})"
        ) from None
    names = [str(c) for c in mm.columns]
    if "Intercept" not in names:
        raise _unsupported(formula, "a fixed part without an intercept ('0 +' or '- 1')")
    return mm


def _random_part(parsed: ParsedFormula, data: pd.DataFrame, fixed_names: list[str], formula: str):
    """The ``random_effects`` string and the model matrices of bars with slopes outside the fixed part."""
    specs, extra = [], []
    for (terms, factor), double in zip(parsed.bars, parsed.uncorrelated or (False,) * len(parsed.bars)):
        try:
            mm = _model_matrix(_r_power(terms), data)
        except Exception as exc:  # noqa: BLE001 - as in _fixed_matrix
            raise _mismatch(
                formula, f"the random terms {terms!r} failed ({type(exc).__name__}: {exc})"
            ) from None
        names = [_r_name(str(c)) for c in mm.columns]
        intercept = INTERCEPT in names
        slopes = [n for n in names if n != INTERCEPT]
        unusable = [n for n in slopes if not re.fullmatch(r"[A-Za-z_.][A-Za-z0-9_.]*", n)]
        if unusable:
            raise _unsupported(
                formula,
                f"the random slope(s) {unusable} (only plain columns and factor levels, not "
                "expressions or interactions, can have a random slope): add the column to data",
            )
        if any(n not in fixed_names for n in slopes):
            extra.append(mm)
        lhs = " + ".join((["1"] if intercept else ["0"]) + slopes)
        specs.append(f"({lhs} {'||' if double else '|'} {factor})")
    return " + ".join(specs), extra


def _term_structure(model_spec) -> tuple[dict, dict]:
    """The fixed part's terms (R's spelling) -> their X columns and their variables."""
    terms, factors = {}, {}
    for item in getattr(model_spec, "structure", ()):
        label = _r_name(str(item.term))
        if label in ("1", INTERCEPT) or not item.columns:
            continue
        terms[label] = tuple(_r_name(str(c)) for c in item.columns)
        factors[label] = tuple(str(f) for f in item.term.factors)
    return terms, factors


def prepare_formula_fit(formula: str, data: pd.DataFrame, weights=None, offset=None):
    """Everything a fit from an lme4 formula needs, before the estimator exists.

    Returns ``(spec, inputs, random_effects, fixed_effects, weights_array,
    offset_array)``: the :class:`FormulaSpec`, the estimator's inputs for the
    rows of ``data`` (a :class:`FormulaFrame`; rows with missing values left
    out, with a warning, as R's ``na.omit``), the ``random_effects`` and
    ``fixed_effects`` parameters the formula implies (None: not set by it),
    and the ``weights``/``offset`` arrays given (None when absent or given as
    column names). Estimators' ``from_formula`` fits from these.
    """
    require_formulaic()
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame; got {type(data).__name__}.")
    parsed = parse_formula(formula)
    if parsed.response not in data.columns:
        raise _mismatch(
            formula,
            f"the response {parsed.response!r} is not a column of data (columns: {list(data.columns)})",
        )
    for column in parsed.factor_columns:
        if column not in data.columns:
            raise _mismatch(formula, f"the grouping factor {column!r} is not a column of data")
    frame = _prepare(data.reset_index(drop=True))
    mm = _fixed_matrix(parsed, frame, formula)
    fixed_names = [_r_name(str(c)) for c in mm.columns if str(c) != "Intercept"]
    random_effects, extra = _random_part(parsed, frame, fixed_names, formula) if parsed.bars else (None, [])
    random_only = list(
        dict.fromkeys(
            _r_name(str(c))
            for m in extra
            for c in m.columns
            if _r_name(str(c)) not in fixed_names + [INTERCEPT]
        )
    )
    terms, term_factors = _term_structure(mm.model_spec)
    spec = FormulaSpec(
        formula=formula,
        parsed=parsed,
        fixed_spec=mm.model_spec,
        random_specs=tuple(m.model_spec for m in extra),
        columns=tuple(fixed_names + random_only),
        fixed_effects=tuple(fixed_names) if random_only else None,
        terms=terms,
        term_factors=term_factors,
        weights_column=weights if isinstance(weights, str) else None,
        offset_column=offset if isinstance(offset, str) else None,
    )
    weights_array = None if weights is None or isinstance(weights, str) else weights
    offset_array = None if offset is None or isinstance(offset, str) else offset
    for name, value in (("weights", weights), ("offset", offset)):
        _column_or_array(value, frame, name)  # a clear error before any work
    inputs = spec.transform(data, weights_array, offset_array, response=True)
    if inputs.rows.size < len(frame):
        warnings.warn(
            f"{len(frame) - inputs.rows.size} row(s) with missing values were dropped (as R's na.omit).",
            UserWarning,
            stacklevel=4,
        )
    fixed_effects = list(spec.fixed_effects) if spec.fixed_effects is not None else None
    return spec, inputs, random_effects, fixed_effects, weights_array, offset_array


def _column_or_array(value, frame: pd.DataFrame, name: str) -> np.ndarray | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value not in frame.columns:
            raise ValueError(f"{name} names column {value!r}, which is not in data.")
        value = frame[value]
    array = np.asarray(value, dtype=float)
    if array.shape != (len(frame),):
        raise ValueError(
            f"{name} must have one value per row of data ({len(frame)}); got shape {array.shape}."
        )
    return array


def _offset_values(parsed: ParsedFormula, frame: pd.DataFrame, formula: str) -> np.ndarray | None:
    """The sum of the formula's ``offset(expr)`` terms, per row of ``frame`` (NaN where missing)."""
    if not parsed.offsets:
        return None
    total = np.zeros(len(frame))
    for expr in parsed.offsets:
        try:
            mm = _model_matrix(f"0 + I({_r_power(expr)})", frame)
        except Exception as exc:  # noqa: BLE001 - as in _fixed_matrix
            raise _mismatch(formula, f"offset({expr}) failed ({type(exc).__name__}: {exc})") from None
        values = np.full(len(frame), np.nan)
        values[np.asarray(mm.index)] = np.asarray(mm)[:, 0]
        total += values
    return total


def _split_rhs(formula: str, rhs: str) -> tuple[str, list[tuple[str, str]], list[str]]:
    """The right of an update formula: (fixed text, [(sign, bar)], [offset expressions])."""
    bars, rest, depth, start = [], [], 0, 0
    cursor = 0
    for i, ch in enumerate(rhs):
        if ch == "(":
            if depth == 0:
                start = i
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise _bad(formula, "unbalanced parentheses")
            if depth == 0 and "|" in rhs[start:i] and not rhs[:start].rstrip().endswith(("I", "C")):
                before = rhs[cursor:start].rstrip()
                sign = "-" if before.endswith("-") else "+"
                rest.append(before[:-1] if before.endswith(("-", "+")) else before)
                bars.append((sign, " ".join(rhs[start : i + 1].split())))
                cursor = i + 1
    if depth != 0:
        raise _bad(formula, "unbalanced parentheses")
    rest.append(rhs[cursor:])
    fixed, offsets = _extract_offsets(" ".join(rest))
    fixed = re.sub(r"\+\s*(\+\s*)+", "+ ", fixed)
    fixed = re.sub(r"^\s*\+\s*|\s*[+-]\s*$", "", fixed.strip()).strip()
    return fixed, bars, offsets


def update_formula(old: str, new: str) -> str:
    """R's ``update.formula``: ``.`` in ``new`` stands for the same side of ``old``.

    Fixed terms are added with ``+`` and removed with ``-`` (formulaic
    simplifies the result); random-effects bars likewise, written as in the
    old formula (``- (1 | g)``).

    Examples
    --------
    >>> update_formula("y ~ x + z + (1 | g)", ". ~ . - z")
    'y ~ x + (1 | g)'
    >>> update_formula("y ~ x + (1 | g)", ". ~ . + (1 | h)")
    'y ~ x + (1 | g) + (1 | h)'
    """
    require_formulaic()
    from formulaic import Formula

    before = parse_formula(old)
    if not isinstance(new, str) or new.count("~") != 1:
        raise _bad(str(new), "an update formula needs one '~', e.g. '. ~ . - x'")
    lhs, rhs = (part.strip() for part in new.split("~"))
    response = before.response if lhs in ("", ".") else lhs
    fixed, bars, offsets = _split_rhs(new, rhs)
    old_bars = [
        f"({terms} {'||' if double else '|'} {factor})"
        for (terms, factor), double in zip(before.bars, before.uncorrelated)
    ]
    has_dot = re.search(r"(?<![A-Za-z0-9_.])\.(?![A-Za-z0-9_.])", fixed) is not None
    keep = list(old_bars) if has_dot else []
    if has_dot:
        offsets = list(before.offsets) + list(offsets)
        fixed = re.sub(r"(?<![A-Za-z0-9_.])\.(?![A-Za-z0-9_.])", f"({_r_power(before.fixed)})", fixed)

    def key(bar: str) -> str:
        return re.sub(r"\s+", "", bar)

    for sign, bar in bars:
        found = [b for b in keep if key(b) == key(bar)]
        if sign == "-":
            if not found:
                raise ValueError(
                    f"update: {bar} is not a random-effects term of {old!r} (its terms: {keep})."
                )
            keep.remove(found[0])
        elif not found:
            keep.append(bar)
    simplified = [str(t) for t in Formula(_r_power(fixed or "1"))] if fixed else ["1"]
    intercept = "1" in simplified
    terms = [_r_name(t) for t in simplified if t not in ("1", "0")]
    if not intercept:
        terms = ["0"] + terms
    parts = (terms or ["1"]) + keep + [f"offset({o})" for o in offsets]
    if parts[0] != "1" and not terms and keep:
        parts = ["1"] + parts
    return f"{response} ~ " + " + ".join(parts)
