"""Sphinx configuration of the sklearn_glmm documentation.

Build it with ``python -m sphinx -W -b html docs docs/_build/html`` (after
``pip install '.[docs]'``). The pages are the markdown files of this folder
(MyST), the API reference is generated from the numpydoc docstrings
(autosummary) and the gallery runs the scripts of ``examples/``
(sphinx-gallery).
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# document the package of this checkout, even when another copy is installed
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

import sklearn_glmm

project = "sklearn_glmm"
author = "the sklearn_glmm developers"
copyright = "2026, the sklearn_glmm developers"
version = release = sklearn_glmm.__version__

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = [
    "_build",
    "generated/*.examples",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "auto_examples/*.json",
    "auto_examples/*.md5",
]
templates_path = ["_templates"]

# -- MyST: the markdown pages --------------------------------------------------
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

# -- API reference ---------------------------------------------------------------
autosummary_generate = True
autodoc_typehints = "none"  # the numpydoc sections document the types
numpydoc_show_class_members = False  # the templates in _templates/ document the members
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True

# -- gallery ---------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/",  # run every example: they are small on purpose
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "abort_on_example_error": True,
    "remove_config_comments": True,
    "show_memory": False,
    "image_scrapers": ("matplotlib",),
}

# -- HTML --------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sklearn_glmm {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_prev_next": False,
    "secondary_sidebar_items": ["page-toc"],
}
html_static_path = []
html_show_sourcelink = False


def _skip_metadata_routing(app, what, name, obj, skip, options):
    """Leave out scikit-learn's metadata-routing methods (``set_*_request``,
    ``get_metadata_routing``): scikit-learn documents them, with references to
    its own user guide that this site does not have."""
    if name == "get_metadata_routing" or (name.startswith("set_") and name.endswith("_request")):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_routing)
