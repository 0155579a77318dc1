"""Link functions and exponential-family distributions (no matrices, no groups)."""

from ._family import Family, IRLSQuantities, PoissonFamily, get_family
from ._link import IdentityLink, Link, LogitLink, LogLink, get_link

__all__ = [
    "Family",
    "IRLSQuantities",
    "PoissonFamily",
    "get_family",
    "Link",
    "IdentityLink",
    "LogLink",
    "LogitLink",
    "get_link",
]
