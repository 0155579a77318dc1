"""Bundled data and simulators (see ``data/README.md`` for provenance)."""

from ._base import load_app_engagement
from ._nonlinear import make_engagement_nonlinear  # issue 18
from ._simulate import make_app_engagement

__all__ = ["load_app_engagement", "make_app_engagement", "make_engagement_nonlinear"]
