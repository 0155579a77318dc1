"""Summaries and tables of fitted models (no fitting here)."""

from ._diagnostics import OverdispersionResult
from ._summary import GLMMSummary, coefficient_table
from ._tables import TestTable
from ._varcorr import VARCORR_COLUMNS, varcorr_table

__all__ = [
    "GLMMSummary",
    "TestTable",
    "OverdispersionResult",
    "coefficient_table",
    "VARCORR_COLUMNS",
    "varcorr_table",
]
