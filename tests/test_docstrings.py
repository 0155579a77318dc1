"""Every public class, function and method has a numpydoc docstring with the sections users need.

Functions and methods: Parameters (when they take any; every parameter of the
signature documented, and nothing else), Returns, See Also and Examples (run
as doctests by ``python -m pytest``). Estimators: Parameters, Attributes, See
Also, Examples. Result objects: Attributes, See Also, Examples. The API
reference of the documentation is generated from these docstrings.
"""

import inspect
import re

import pytest
from sklearn.base import BaseEstimator

import sklearn_glmm
from sklearn_glmm import datasets, plot
from sklearn_glmm.results import GLMMSummary, OverdispersionResult, TestTable

ESTIMATORS = [
    obj
    for obj in map(sklearn_glmm.__dict__.get, sklearn_glmm.__all__)
    if isinstance(obj, type) and issubclass(obj, BaseEstimator)
]
FUNCTIONS = [
    *(obj for obj in map(sklearn_glmm.__dict__.get, sklearn_glmm.__all__) if inspect.isfunction(obj)),
    *(getattr(datasets, name) for name in datasets.__all__),
    *(getattr(plot, name) for name in plot.__all__),
]
RESULTS = [GLMMSummary, TestTable, OverdispersionResult]


def _own_methods(cls):
    """Public methods that sklearn_glmm defines (not scikit-learn's get_params, set_*_request, ...)."""
    for name in dir(cls):
        if name.startswith("_"):
            continue
        for klass in cls.__mro__:
            if name in vars(klass):
                attr = vars(klass)[name]
                break
        if not klass.__module__.startswith("sklearn_glmm") or isinstance(attr, property):
            continue
        func = attr.__func__ if isinstance(attr, (classmethod, staticmethod)) else attr
        if inspect.isfunction(func):
            yield func.__qualname__, getattr(cls, name)


METHODS = dict(m for cls in ESTIMATORS for m in _own_methods(cls))
CALLABLES = {
    **{f.__module__.removeprefix("sklearn_glmm.") + "." + f.__name__: f for f in FUNCTIONS},
    **METHODS,
}


def _sections(doc: str) -> dict[str, str]:
    """numpydoc sections: heading -> body."""
    parts = re.split(r"^(\w[\w ]*)\n-{3,}\n", doc, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _documented_parameters(body: str) -> set[str]:
    names = set()
    for line in body.splitlines():
        if line and not line.startswith(" "):
            head = line.split(" : ")[0]
            names.update(n.strip() for n in head.split(","))
    return names


def _signature_parameters(func) -> set[str]:
    names = set()
    for p in inspect.signature(func).parameters.values():
        if p.name in ("self", "cls"):
            continue
        names.add({p.VAR_KEYWORD: "**", p.VAR_POSITIONAL: "*"}.get(p.kind, "") + p.name)
    return names


def test_the_public_surface_is_found():
    # the collection above finds what it must check (a test that checks nothing cannot fail)
    assert len(ESTIMATORS) >= 7 and len(FUNCTIONS) >= 17
    checked = [getattr(func, "__func__", func) for func in METHODS.values()]
    for name in ("score", "summary", "residuals", "simulate", "from_formula", "fit", "predict", "confint"):
        method = getattr(sklearn_glmm.PoissonGLMMRegressor, name)
        assert getattr(method, "__func__", method) in checked, name
    for function in (
        sklearn_glmm.overdispersion,
        sklearn_glmm.plot.caterpillar,
        sklearn_glmm.datasets.load_app_engagement,
    ):
        assert function in CALLABLES.values()


@pytest.mark.parametrize("name", sorted(CALLABLES))
def test_function_docstring_sections(name):
    func = CALLABLES[name]
    sections = _sections(inspect.getdoc(func) or "")
    required = ["Returns", "See Also", "Examples"]
    if _signature_parameters(func):
        required.insert(0, "Parameters")
    missing = [s for s in required if s not in sections]
    assert not missing, f"{name} lacks {missing}"
    if "Parameters" in sections:
        documented = _documented_parameters(sections["Parameters"])
        assert documented == _signature_parameters(func), f"{name}: documented {documented}"
    assert ">>>" in sections["Examples"]


@pytest.mark.parametrize("cls", ESTIMATORS + RESULTS, ids=lambda c: c.__name__)
def test_class_docstring_sections(cls):
    sections = _sections(inspect.getdoc(cls) or "")
    required = ["Attributes", "See Also", "Examples"]
    if cls in ESTIMATORS:
        required.insert(0, "Parameters")
    missing = [s for s in required if s not in sections]
    assert not missing, f"{cls.__name__} lacks {missing}"
    if cls in ESTIMATORS:
        documented = _documented_parameters(sections["Parameters"])
        assert documented == _signature_parameters(cls), f"{cls.__name__}: documented {documented}"
