"""Sphinx configuration for txlibxl's documentation (built with -W in CI)."""
import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "txlibxl"
author = "the txlibxl developers"
copyright = "2026, the txlibxl developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.intersphinx", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
intersphinx_mapping = {}
exclude_patterns = ["_build"]
html_theme = "alabaster"
nitpicky = False
