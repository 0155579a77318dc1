"""The Laplace engine: PIRLS, the Laplace deviance and the outer optimiser.

This package never imports scikit-learn, so it can be tested and reused alone.
"""
