"""The fitted model's columns, by name, for functions outside the estimators.

:func:`r2_nakagawa`, :func:`marginal_predictions` and friends rebuild the fixed
design ``[1, X]`` and the random-effect covariates ``z`` from a model's public
attributes only: ``fixef_`` names the fixed columns (``"(Intercept)"`` first),
``varcorr_`` the random-effect terms, ``feature_names_in_`` the columns of X.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["feature_frame", "design_column"]

INTERCEPT = "(Intercept)"


def feature_frame(model, X) -> pd.DataFrame:
    """X as a DataFrame with the model's column names, grouping columns (``group_column``) left out."""
    if isinstance(X, pd.DataFrame):
        frame = X.reset_index(drop=True)
    else:
        array = np.asarray(X)
        if array.ndim != 2:
            raise ValueError(f"X must be two-dimensional; got shape {array.shape}.")
        frame = pd.DataFrame(array)
    group_column = model.get_params().get("group_column")
    if group_column is not None:
        # names for a DataFrame, positions for an array (whose frame has columns 0, 1, ...)
        frame = frame.drop(columns=group_column if isinstance(group_column, list) else [group_column])
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        names = [f"x{j}" for j in range(frame.shape[1])]
    if frame.shape[1] != len(names):
        raise ValueError(f"X has {frame.shape[1]} feature columns; the model was fitted with {len(names)}.")
    frame = frame.copy()
    frame.columns = [str(c) for c in names]
    return frame


def design_column(frame: pd.DataFrame, name: str) -> np.ndarray:
    """The column ``name`` of the design: ones for the intercept, else the column of X."""
    if name == INTERCEPT:
        return np.ones(len(frame))
    return frame[name].to_numpy(dtype=float)
