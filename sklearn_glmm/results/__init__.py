"""Summaries and tables of fitted models (no fitting here)."""

from ._summary import GLMMSummary, coefficient_table
from ._varcorr import VARCORR_COLUMNS, varcorr_table

__all__ = ["GLMMSummary", "coefficient_table", "VARCORR_COLUMNS", "varcorr_table"]
