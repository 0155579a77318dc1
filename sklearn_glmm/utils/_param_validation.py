"""The one place that touches scikit-learn's private parameter validators.

scikit-learn's ``_parameter_constraints`` machinery lives in a private module; if
it moves, only this file changes. ``validate_data`` became a public function in
scikit-learn 1.6; older versions have the ``BaseEstimator._validate_data`` method.
"""

from sklearn.utils._param_validation import Interval, StrOptions

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data
except ImportError:  # pragma: no cover - scikit-learn 1.4 / 1.5

    def validate_data(estimator, X="no_validation", y="no_validation", reset=True, **kwargs):
        """``BaseEstimator._validate_data`` under the >= 1.6 name."""
        return estimator._validate_data(X, y, reset=reset, **kwargs)


__all__ = ["Interval", "StrOptions", "validate_data"]
