"""Parse the plain-data ``random_effects`` parameter into a term specification.

The syntax is lme4's "bar" notation over X's column names and the grouping
factor's name:

=============================== ===============================================
``"(1 + day_centered | user_id)"`` correlated random intercept and slope
``"(day_centered | user_id)"``     the same: an intercept is implied, as in lme4
``"(0 + day_centered | user_id)"`` random slope only (``-1`` works too)
``"1 + day_centered"``             short form for a single grouping factor whose
                                   name comes from ``groups``
``"1"``                            random intercept (the default)
``"(1 | subject) + (1 | item)"``   crossed factors (several bars)
``"(1 | clinic/user)"``            nested: ``(1 | clinic) + (1 | user:clinic)``
``"(1 + x || user)"``              uncorrelated: ``(1 | user) + (0 + x | user)``
=============================== ===============================================

A factor written ``a:b`` is the interaction of two grouping columns (one level
per observed pair), which is what nesting expands to.

The parser only reads the string; whether the names exist in ``X`` and
``groups`` is checked by :mod:`sklearn_glmm.design._builder`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["RandomEffectSpec", "parse_random_effects", "INTERCEPT"]

INTERCEPT = "(Intercept)"
_IDENTIFIER = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")
_FACTOR = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*(:[A-Za-z_.][A-Za-z0-9_.]*)*$")


@dataclass(frozen=True)
class RandomEffectSpec:
    """One random-effects bar ``(terms | factor)``.

    Attributes
    ----------
    columns : tuple of str
        X columns with a random slope, in the order written.
    intercept : bool
        Whether the bar has a random intercept.
    factor : str or None
        Name of the grouping factor; ``None`` for the short form, in which the
        name is taken from ``groups``. ``"a:b"`` is the interaction of the
        grouping columns ``a`` and ``b``.
    correlated : bool
        False for the bars that ``||`` expands into (only changes how the
        model is written back as a formula).
    whole_name : bool
        The factor is one grouping column whose name may contain ``:`` (the
        short form takes it from ``groups``), not an interaction.
    """

    columns: tuple[str, ...]
    intercept: bool
    factor: str | None
    correlated: bool = True
    whole_name: bool = False

    @property
    def factor_columns(self) -> tuple[str, ...]:
        """The grouping columns the factor is made of (``"a:b"`` -> ``("a", "b")``).

        A factor named after the one column of ``groups`` (the short form,
        ``whole_name``) is that column, even when its name contains ``:``.
        """
        if self.factor is None:
            return ()
        return (self.factor,) if self.whole_name else tuple(self.factor.split(":"))

    @property
    def term_names(self) -> list[str]:
        """Names of the random-effect terms, lme4 style (intercept first)."""
        return ([INTERCEPT] if self.intercept else []) + list(self.columns)

    def to_formula(self, factor: str) -> str:
        """The bar in lme4 syntax, e.g. ``"(1 + day_centered | user_id)"``."""
        parts = (["1"] if self.intercept else ["0"]) + list(self.columns)
        if self.intercept and self.columns:
            parts = parts[1:]  # lme4 prints "(day_centered | g)" for 1 + day_centered
        return f"({' + '.join(parts)} | {factor})"


def _bad(spec: str, why: str) -> ValueError:
    return ValueError(
        f"Cannot parse random_effects={spec!r}: {why}. Use lme4's bar syntax, e.g. "
        "'(1 + x | group)' or '(1 | subject) + (1 | item)', or the short form '1 + x' "
        "for a single grouping factor."
    )


def _split_bars(spec: str, text: str) -> list[str]:
    """The parenthesised bars of ``(a | g) + (b || h)``, without their parentheses."""
    bars, depth, start, between = [], 0, 0, []
    last = 0
    for i, ch in enumerate(text):
        if ch == "(":
            if depth == 0:
                between.append(text[last:i])
                start = i + 1
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise _bad(spec, "unbalanced parentheses")
            if depth == 0:
                bars.append(text[start:i])
                last = i + 1
    if depth != 0:
        raise _bad(spec, "unbalanced parentheses")
    between.append(text[last:])
    if not bars:
        raise _bad(spec, "a bar must be enclosed in parentheses")
    if between[0].strip() or between[-1].strip() or any(sep.strip() != "+" for sep in between[1:-1]):
        raise _bad(spec, "bars must be enclosed in parentheses and joined by '+'")
    return bars


def _parse_terms(spec: str, lhs: str) -> tuple[bool, list[str]]:
    """The left of a bar: (random intercept?, slope columns)."""
    if not lhs:
        raise _bad(spec, "the left of the bar is empty")
    intercept = True
    columns: list[str] = []
    tokens = [tok.strip() for tok in re.split(r"(?=[+-])", lhs) if tok.strip()]
    for token in tokens:
        sign, name = ("-", token[1:].strip()) if token.startswith("-") else ("+", token.lstrip("+").strip())
        if name == "1":
            intercept = sign == "+"
        elif name == "0":
            if sign == "-":
                raise _bad(spec, "'- 0' has no meaning")
            intercept = False
        elif sign == "-":
            raise _bad(spec, f"removing a term ('- {name}') is not supported")
        elif not _IDENTIFIER.match(name):
            raise _bad(spec, f"{name!r} is not a column name")
        elif name in columns:
            raise _bad(spec, f"term {name!r} appears twice")
        else:
            columns.append(name)
    if not intercept and not columns:
        raise _bad(spec, "it has no random-effect term")
    return intercept, columns


def _parse_bar(spec: str, inner: str) -> list[RandomEffectSpec]:
    """One bar, expanded: nesting ``a/b`` into ``a`` and ``a:b``, ``||`` into one bar per term."""
    uncorrelated = "||" in inner
    parts = inner.split("||") if uncorrelated else inner.split("|")
    if len(parts) != 2:
        raise _bad(spec, f"({inner}) must have exactly one bar '|' or '||'")
    lhs, rhs = (part.strip() for part in parts)
    intercept, columns = _parse_terms(spec, lhs)
    nested = [part.strip() for part in rhs.split("/")]
    for part in nested:
        if not _FACTOR.match(part):
            raise _bad(spec, f"{rhs!r} is not a grouping-factor name (or 'a/b' for b nested in a)")
    # lme4 names the inner factor of a/b "b:a" (its levels "b-label:a-label")
    factors = [":".join(reversed(nested[: k + 1])) for k in range(len(nested))]
    if uncorrelated:
        pieces = ([(True, ())] if intercept else []) + [(False, (c,)) for c in columns]
    else:
        pieces = [(intercept, tuple(columns))]
    return [
        RandomEffectSpec(columns=cols, intercept=icpt, factor=f, correlated=not uncorrelated)
        for f in factors
        for icpt, cols in pieces
    ]


def parse_random_effects(spec: object) -> tuple[RandomEffectSpec, ...]:
    """Parse ``random_effects`` into its bars.

    Parameters
    ----------
    spec : str
        See the module docstring for the accepted forms.

    Returns
    -------
    tuple of RandomEffectSpec
        One per bar after expansion of nesting (``a/b``) and ``||``, in the
        order written.

    Raises
    ------
    TypeError
        If ``spec`` is not a string.
    ValueError
        If the string is not valid bar syntax, names a term twice (in one
        bar, or in two bars of the same factor), or has no term at all.
    """
    if not isinstance(spec, str):
        raise TypeError(
            f"random_effects must be a string such as '1' or '(1 + x | group)'; got {type(spec).__name__}."
        )
    text = spec.strip()
    if not text:
        raise _bad(spec, "it is empty")
    if "|" not in text:
        lhs = text[1:-1].strip() if text.startswith("(") and text.endswith(")") else text
        intercept, columns = _parse_terms(spec, lhs)
        return (RandomEffectSpec(columns=tuple(columns), intercept=intercept, factor=None),)
    bars = [bar for inner in _split_bars(spec, text) for bar in _parse_bar(spec, inner)]
    seen: dict[str, set] = {}
    for bar in bars:
        names = seen.setdefault(bar.factor, set())
        repeated = names.intersection(bar.term_names)
        if repeated:
            raise _bad(spec, f"term {min(repeated)!r} appears twice for the factor {bar.factor!r}")
        names.update(bar.term_names)
    return tuple(bars)
