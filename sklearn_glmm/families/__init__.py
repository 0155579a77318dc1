"""Link functions and exponential-family distributions (no matrices, no groups)."""

from ._family import (
    BinomialFamily,
    Family,
    GammaFamily,
    GaussianFamily,
    IRLSQuantities,
    NegativeBinomialFamily,
    PoissonFamily,
    get_family,
)
from ._link import CloglogLink, IdentityLink, Link, LogitLink, LogLink, ProbitLink, get_link

__all__ = [
    "Family",
    "IRLSQuantities",
    "PoissonFamily",
    "BinomialFamily",
    "NegativeBinomialFamily",
    "GammaFamily",
    "GaussianFamily",
    "get_family",
    "Link",
    "IdentityLink",
    "LogLink",
    "LogitLink",
    "ProbitLink",
    "CloglogLink",
    "get_link",
]
