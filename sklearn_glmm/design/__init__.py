"""Turn X, groups and the ``random_effects`` spec into model matrices."""

from ._builder import Design, DesignBuilder, groups_to_frame, groups_to_series, independent_columns
from ._spec import INTERCEPT, RandomEffectSpec, parse_random_effects
from ._terms import RandomEffectTerm, lambda_from_theta, theta_index

__all__ = [
    "Design",
    "DesignBuilder",
    "groups_to_frame",
    "groups_to_series",
    "independent_columns",
    "INTERCEPT",
    "RandomEffectSpec",
    "parse_random_effects",
    "RandomEffectTerm",
    "lambda_from_theta",
    "theta_index",
]
