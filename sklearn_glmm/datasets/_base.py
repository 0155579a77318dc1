"""Loaders of the small tables shipped in ``datasets/data``."""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["load_app_engagement", "read_exact_csv"]


def read_exact_csv(path, dtype=None) -> pd.DataFrame:
    """Read a CSV whose numbers must come back as the exact doubles written.

    pandas >= 3 parses floats exactly by default; older versions need
    ``float_precision="round_trip"`` (which pandas 3 deprecates).
    """
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    return pd.read_csv(path, dtype=dtype, **exact)


def load_app_engagement() -> pd.DataFrame:
    """Daily app logins of 50 users over 30 days (the seed tutorial's data).

    Simulated in R (``set.seed(789)``): ``log(lambda) = 0.8 - 0.01 *
    day_centered + u_user`` with ``u_user ~ N(0, 0.5^2)``; see
    ``data/README.md``. These are exactly the data of the lme4 reference fits.

    Returns
    -------
    pandas.DataFrame of shape (1500, 4)
        ``user_id`` (str, "1" ... "50"), ``day`` (1 ... 30), ``day_centered``
        (``day - 15.5``) and ``logins`` (int counts).

    See Also
    --------
    make_app_engagement : Simulated panels of any size, with the true parameters.

    Examples
    --------
    >>> from sklearn_glmm.datasets import load_app_engagement
    >>> load_app_engagement().shape
    (1500, 4)
    """
    path = resources.files("sklearn_glmm.datasets") / "data" / "app_engagement.csv"
    with resources.as_file(path) as csv:
        return read_exact_csv(csv, dtype={"user_id": str})
