"""Sphinx configuration of the bayes_gmm documentation.

Build with ``make docs`` (``sphinx-build -W -b html docs docs/_build/html``):
warnings are errors, the notebooks are rendered from their saved outputs
(never re-executed here) and intersphinx reads the inventories shipped in
``docs/_intersphinx`` so that nothing is downloaded.

The API reference (``api.rst``) is written by this file when the build starts,
from ``bayes_gmm.__all__``: one autosummary entry per exported name, grouped by the
module that defines it, so the reference lists exactly the public API.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import bayes_gmm

HERE = Path(__file__).resolve().parent

# -- Project -----------------------------------------------------------------
project = "bayes_gmm"
author = "bayes_gmm developers"
copyright = "2026, bayes_gmm developers"
release = bayes_gmm.__version__
version = ".".join(release.split(".")[:2])

# -- General -----------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_nb",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "_intersphinx",
    "_templates",
    "Thumbs.db",
    ".DS_Store",
    "**.ipynb_checkpoints",
    "notebooks/README.md",
]
default_role = "py:obj"

# -- autodoc / autosummary / numpydoc ----------------------------------------
autosummary_generate = True
autodoc_typehints = "none"  # numpydoc sections carry the types
autodoc_member_order = "bysource"
numpydoc_show_class_members = False  # the class template lists members
numpydoc_class_members_toctree = False
# Type cross-references stay off: numpydoc would split types such as
# "ndarray of shape (n_features_in_,)" into bare reST tokens.
numpydoc_xref_param_type = False

# -- MyST and notebooks --------------------------------------------------------
nb_execution_mode = "off"  # notebooks are committed with outputs
nb_merge_streams = True
myst_enable_extensions = ["amsmath", "dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

# -- Intersphinx: offline inventories ------------------------------------------
_INV = HERE / "_intersphinx"
intersphinx_mapping = {
    "python": ("https://docs.python.org/3/", str(_INV / "python.inv")),
    "numpy": ("https://numpy.org/doc/stable/", str(_INV / "numpy.inv")),
    "scipy": ("https://docs.scipy.org/doc/scipy/", str(_INV / "scipy.inv")),
    "sklearn": ("https://scikit-learn.org/stable/", str(_INV / "sklearn.inv")),
    "pymc": (
        "https://www.pymc.io/projects/docs/en/stable/",
        str(_INV / "pymc.inv"),
    ),
    "xarray": ("https://docs.xarray.dev/en/stable/", str(_INV / "xarray.inv")),
    "arviz": ("https://python.arviz.org/", str(_INV / "arviz.inv")),
}
intersphinx_timeout = 1  # the files are local; never wait on a network

# -- HTML ----------------------------------------------------------------------
html_theme = "sphinx_rtd_theme"
html_title = f"bayes_gmm {release}"
html_show_sourcelink = False

# -- API page from __all__ -----------------------------------------------------
# Sections of the API reference: the module that defines an object -> title.
API_SECTIONS = {
    "bayes_gmm.em": "EM estimator",
    "bayes_gmm.bayes": "Bayesian mixture",
    "bayes_gmm.model": "Bayesian mixture",
    "bayes_gmm.result": "Bayesian mixture",
    "bayes_gmm.relabel": "Label switching",
    "bayes_gmm.selection": "Model selection",
    "bayes_gmm.diagnostics": "Diagnostics",
    "bayes_gmm.comparison": "EM versus MCMC versus ADVI",
    "bayes_gmm.uncertainty": "EM versus MCMC versus ADVI",
    "bayes_gmm.plots": "Figures",
    "bayes_gmm.datasets": "Data sets",
    "bayes_gmm._validation": "Warnings",
}
API_INTRO = """\
API reference
=============

Everything listed here is importable from the top-level package
(``from bayes_gmm import ...``); this page lists exactly
``bayes_gmm.__all__``.

.. currentmodule:: bayes_gmm
"""


def public_objects() -> dict[str, object]:
    """Every name of ``bayes_gmm.__all__`` with the object it exports.

    The lazily exported names are resolved through the module that defines
    them: a name equal to a submodule's (``relabel``) would otherwise be
    shadowed by that submodule once it is imported.
    """
    lazy = getattr(bayes_gmm, "_LAZY", {})
    out = {}
    for name in bayes_gmm.__all__:
        if name in lazy:
            out[name] = getattr(importlib.import_module(lazy[name]), name)
        else:
            out[name] = getattr(bayes_gmm, name)
    return out


def api_page() -> str:
    """The text of ``api.rst``: one autosummary entry per public name."""
    objects = public_objects()
    sections: dict[str, list[str]] = {}
    for name, obj in objects.items():
        module = getattr(obj, "__module__", "bayes_gmm")
        title = API_SECTIONS.get(module, module.removeprefix("bayes_gmm."))
        sections.setdefault(title, []).append(name)
    order = list(dict.fromkeys(API_SECTIONS.values()))
    titles = sorted(sections, key=lambda t: (order.index(t) if t in order else 99, t))
    parts = [API_INTRO]
    for title in titles:
        entries = "\n".join(f"   {name}" for name in sections[title])
        parts.append(
            f"{title}\n{'-' * len(title)}\n\n"
            f".. autosummary::\n   :toctree: generated/\n   :nosignatures:\n\n"
            f"{entries}\n"
        )
    return "\n".join(parts)


def _write_api_page(app, config=None) -> None:
    """Write ``api.rst`` into the source directory before Sphinx looks for
    documents (``config-inited``), so autosummary generates its stubs.

    Also make every exported name resolve to the object the page documents
    (see :func:`public_objects`) while autodoc imports ``bayes_gmm.<name>``.
    Both happen only in a Sphinx build, never when this file is imported.
    """
    path = Path(app.srcdir) / "api.rst"
    text = api_page()
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    for name, obj in public_objects().items():
        setattr(bayes_gmm, name, obj)


def _skip_member(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated metadata-routing setters."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


# A word ending in "_" is a reST hyperlink reference: in a numpydoc type such
# as "ndarray of shape (n_features_in_,)" it breaks the build. Escape it in the
# type part of "**name** : type" lines, after numpydoc has rendered them.
_PARAM_LINE = re.compile(r"^(\s*\*\*[^*]+\*\* : )(.*)$")
_TRAILING_UNDERSCORE = re.compile(r"(?<![`\\])\b([A-Za-z]\w*)_(?=[\s,)\]]|$)")


def _escape_type_references(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        match = _PARAM_LINE.match(line)
        if match:
            head, types = match.groups()
            lines[i] = head + _TRAILING_UNDERSCORE.sub(r"\1\\_", types)


def setup(app):
    # before the source files are listed and autosummary generates stubs
    app.connect("config-inited", _write_api_page)
    app.connect("autodoc-skip-member", _skip_member)
    # after numpydoc's own autodoc-process-docstring handler (priority 500)
    app.connect("autodoc-process-docstring", _escape_type_references, priority=900)
