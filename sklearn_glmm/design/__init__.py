"""Turn X, groups and the ``random_effects`` spec into model matrices."""

from ._builder import (
    Design,
    DesignBuilder,
    column_r_factor,
    encode_labels,
    groups_to_frame,
    groups_to_series,
    independent_columns,
    independent_from_r,
)
from ._spec import INTERCEPT, RandomEffectSpec, parse_random_effects
from ._terms import RandomEffectTerm, lambda_from_theta, theta_index

__all__ = [
    "Design",
    "DesignBuilder",
    "groups_to_frame",
    "groups_to_series",
    "independent_columns",
    "independent_from_r",
    "column_r_factor",
    "encode_labels",
    "INTERCEPT",
    "RandomEffectSpec",
    "parse_random_effects",
    "RandomEffectTerm",
    "lambda_from_theta",
    "theta_index",
]
