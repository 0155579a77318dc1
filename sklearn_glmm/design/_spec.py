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
=============================== ===============================================

The parser only reads the string; whether the names exist in ``X`` and
``groups`` is checked by :mod:`sklearn_glmm.design._builder`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["RandomEffectSpec", "parse_random_effects", "INTERCEPT"]

INTERCEPT = "(Intercept)"
_IDENTIFIER = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")


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
        name is taken from ``groups``.
    """

    columns: tuple[str, ...]
    intercept: bool
    factor: str | None

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
        "'(1 + x | group)', or the short form '1 + x' for a single grouping factor."
    )


def parse_random_effects(spec: object) -> RandomEffectSpec:
    """Parse ``random_effects`` into a :class:`RandomEffectSpec`.

    Parameters
    ----------
    spec : str
        See the module docstring for the accepted forms.

    Returns
    -------
    RandomEffectSpec

    Raises
    ------
    TypeError
        If ``spec`` is not a string.
    ValueError
        If the string is not valid bar syntax, names a term twice, has no term
        at all, or asks for something not supported (several bars, ``||``,
        nested factors).
    """
    if not isinstance(spec, str):
        raise TypeError(
            f"random_effects must be a string such as '1' or '(1 + x | group)'; "
            f"got {type(spec).__name__}."
        )
    text = spec.strip()
    if not text:
        raise _bad(spec, "it is empty")
    factor = None
    if "|" in text:
        if text.count("|") > 1 or text.count("(") > 1:
            if "||" in text:
                raise _bad(spec, "uncorrelated terms '||' are not supported yet")
            raise _bad(spec, "several bars (grouping factors) are not supported yet")
        if not (text.startswith("(") and text.endswith(")")):
            raise _bad(spec, "a bar must be enclosed in parentheses")
        lhs, rhs = (part.strip() for part in text[1:-1].split("|"))
        if "/" in rhs or ":" in rhs:
            raise _bad(spec, "nested or interacted grouping factors are not supported yet")
        if not _IDENTIFIER.match(rhs):
            raise _bad(spec, f"{rhs!r} is not a grouping-factor name")
        factor = rhs
    else:
        lhs = text[1:-1].strip() if text.startswith("(") and text.endswith(")") else text
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
    return RandomEffectSpec(columns=tuple(columns), intercept=intercept, factor=factor)
