"""Sphinx configuration of parml's documentation.

Build: ``sphinx-build -W docs docs/_build/html``.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import parml  # noqa: E402

project = "parml"
copyright = "The parml developers"
version = release = parml.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.md5", "**.codeobj.json"]
autosummary_generate = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
myst_heading_anchors = 3
suppress_warnings = ["myst.xref_missing"]

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_|/seed_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "plot_gallery": True,
    # The gallery links the classes an example's globals belong to, walking
    # their bases; for parml's halving searches that reaches scikit-learn's
    # experimental classes, whose attribute lookup raises without
    # enable_halving_search_cv. parml does not need that import: skip the walk.
    "inspect_global_variables": False,
}

html_theme = "alabaster"
html_static_path = []
