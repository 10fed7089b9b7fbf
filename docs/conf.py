"""Sphinx configuration for the xsignal documentation."""

import sphinx_autosummary_accessors

import xsignal

project = "xsignal"
author = "xsignal developers"
copyright = "2026, xsignal developers"
version = release = xsignal.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.doctest",
    "numpydoc",
    "sphinx_autosummary_accessors",
    "matplotlib.sphinxext.plot_directive",
]
templates_path = ["_templates", sphinx_autosummary_accessors.templates_path]
# benchmark-results.rst is included by benchmarks.rst, not a page of its own
exclude_patterns = ["_build", "benchmark-results.rst"]
autosummary_generate = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set[str] = set()
numpydoc_xref_param_type = False  # no intersphinx: the build is offline
intersphinx_mapping = {}
html_theme = "alabaster"
nitpicky = False

# figures of the user guide are drawn at build time from small synthetic data
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 90)]
plot_include_source = True
plot_rcparams = {"figure.figsize": (6, 3.5), "figure.autolayout": True}

# the files page shows a detector format only where rosettasciio is installed
doctest_global_setup = """
import importlib.util
rsciio = importlib.util.find_spec("rsciio")
"""
