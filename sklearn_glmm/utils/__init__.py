"""Small helpers shared by the estimators."""
