"""Generate offline intersphinx inventories from the installed packages.

The documentation must build without a network, and none of numpy, scipy,
scikit-learn, PyMC, xarray or ArviZ ships its ``objects.inv`` inside the
installed package. This script writes one minimal inventory per project
(``<project>.inv`` beside it) by importing the installed packages and listing
their public names: modules, classes (with their public methods and
properties), functions and data. Every entry points at the page where the
project's own online documentation puts that object, so the links of the
built site work whenever the reader is online; nothing is fetched at build
time.

Run it again after upgrading one of the packages::

    .venv/bin/python docs/_intersphinx/make_inventories.py

The inventories are in Sphinx's version 2 format (a four-line header, then
zlib-compressed ``name domain:role priority uri dispname`` lines) and are
checked by loading them back with :mod:`sphinx.util.inventory`.
"""

from __future__ import annotations

import importlib
import inspect
import io
import sys
import types
import warnings
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent


# --------------------------------------------------------------------- walker
def _public(module: types.ModuleType) -> list[str]:
    # pymc's root ``__all__`` is a deprecated alias of ``pymc.stats.__all__``:
    # list the root namespace instead.
    names = None if module.__name__ == "pymc" else getattr(module, "__all__", None)
    if names is None:
        names = [n for n in dir(module) if not n.startswith("_")]
    return [n for n in names if not n.startswith("_")]


def _role(obj) -> str:
    if isinstance(obj, types.ModuleType):
        return "py:module"
    if inspect.isclass(obj):
        if issubclass(obj, BaseException):
            return "py:exception"
        return "py:class"
    if callable(obj):
        return "py:function"
    return "py:data"


def _members(cls) -> Iterable[tuple[str, str]]:
    """Public methods (py:method) and properties (py:attribute) of a class.

    Inherited members count when the base class comes from the same package
    (the projects document them on the class page), not from ``object``.
    """
    top = (getattr(cls, "__module__", "") or "").split(".", 1)[0]
    members = {}
    for base in reversed(inspect.getmro(cls)):
        if (getattr(base, "__module__", "") or "").split(".", 1)[0] == top:
            members.update(vars(base))
    for name, value in sorted(members.items()):
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            yield name, "py:attribute"
        elif isinstance(value, (classmethod, staticmethod)):
            yield name, "py:method"
        elif inspect.isfunction(value) or inspect.ismethoddescriptor(value):
            yield name, "py:method"


def walk(module_names: Iterable[str]) -> list[tuple[str, str, object]]:
    """``(full name, role, object)`` for every public name of the modules."""
    seen = {}
    for modname in module_names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                module = importlib.import_module(modname)
            except ImportError:
                continue
        seen.setdefault(modname, ("py:module", module))
        for name in _public(module):
            try:
                with warnings.catch_warnings():
                    # A name that warns on access is on its way out: skip it.
                    warnings.simplefilter("error", DeprecationWarning)
                    obj = getattr(module, name)
            except (AttributeError, ImportError, DeprecationWarning):
                continue
            full = f"{modname}.{name}"
            role = _role(obj)
            if role == "py:module":
                continue  # submodules are listed only when walked themselves
            seen.setdefault(full, (role, obj))
            if role in ("py:class", "py:exception"):
                for member, mrole in _members(obj):
                    seen.setdefault(f"{full}.{member}", (mrole, obj))
    return [(name, role, obj) for name, (role, obj) in sorted(seen.items())]


def write_inventory(
    path: Path,
    project: str,
    version: str,
    entries: Iterable[tuple[str, str, str]],
) -> int:
    """Write ``(name, role, uri)`` entries as a Sphinx v2 inventory."""
    body = io.StringIO()
    count = 0
    for name, role, uri in entries:
        if uri.endswith("#" + name):
            uri = uri[: -len(name)] + "$"
        body.write(f"{name} {role} 1 {uri} -\n")
        count += 1
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    path.write_bytes(
        header.encode() + zlib.compress(body.getvalue().encode("utf-8"), 9)
    )
    return count


def check_inventory(path: Path, base: str) -> int:
    """Load an inventory back with Sphinx; return its number of entries."""
    from sphinx.util.inventory import InventoryFile

    with path.open("rb") as fh:
        inv = InventoryFile.load(fh, base, lambda a, b: b + a)
    data = getattr(inv, "data", inv)
    return sum(len(v) for v in data.values())


# --------------------------------------------------------------- the projects
def _parent_class(name: str, role: str) -> bool:
    return role in ("py:method", "py:attribute")


def numpy_uri(name: str, role: str, obj) -> str:
    if role == "py:module":
        pages = {
            "numpy": "reference/index.html",
            "numpy.linalg": "reference/routines.linalg.html",
            "numpy.random": "reference/random/index.html",
            "numpy.fft": "reference/routines.fft.html",
            "numpy.testing": "reference/routines.testing.html",
        }
        return f"{pages.get(name, 'reference/index.html')}#module-{name}"
    if name.startswith("numpy.random."):
        if name in ("numpy.random.Generator", "numpy.random.default_rng"):
            return f"reference/random/generator.html#{name}"
        return f"reference/random/generated/{name}.html#{name}"
    if role == "py:class" and obj is not None:
        import numpy as np

        if isinstance(obj, type) and issubclass(obj, np.generic):
            return f"reference/arrays.scalars.html#{name}"
    return f"reference/generated/{name}.html#{name}"


def scipy_uri(name: str, role: str, obj) -> str:
    if role == "py:module":
        sub = name.split(".", 1)[1] if "." in name else "index"
        return f"reference/{sub}.html#module-{name}"
    return f"reference/generated/{name}.html#{name}"


def sklearn_uri(name: str, role: str, obj) -> str:
    if role == "py:module":
        return f"api/{name}.html#module-{name}"
    if _parent_class(name, role):
        page = name.rsplit(".", 1)[0]
        return f"modules/generated/{page}.html#{name}"
    return f"modules/generated/{name}.html#{name}"


def pymc_uri(name: str, role: str, obj) -> str:
    if role == "py:module":
        return f"api.html#module-{name}"
    if _parent_class(name, role):
        return f"api/generated/classmethods/{name}.html#{name}"
    import pymc as pm

    if inspect.isclass(obj) and issubclass(obj, pm.Distribution):
        return f"api/distributions/generated/{name}.html#{name}"
    return f"api/generated/{name}.html#{name}"


def xarray_uri(name: str, role: str, obj) -> str:
    if role == "py:module":
        return f"api.html#module-{name}"
    return f"generated/{name}.html#{name}"


_ARVIZ_SUBPROJECT = {
    "arviz_base": "base",
    "arviz_stats": "stats",
    "arviz_plots": "plots",
}


def arviz_uri(name: str, role: str, obj) -> str:
    top = name.split(".", 1)[0]
    if top == "arviz":
        # The meta package re-exports the three libraries: point at the page
        # of the library that defines the object.
        owner = getattr(obj, "__module__", "") or ""
        top = owner.split(".", 1)[0]
        if top not in _ARVIZ_SUBPROJECT:
            return "en/stable/api/index.html"
        name = top + "." + name.split(".", 1)[1]
    if role == "py:module":
        sub = _ARVIZ_SUBPROJECT.get(top)
        return f"projects/{sub}/en/stable/api/index.html#module-{name}"
    sub = _ARVIZ_SUBPROJECT[top]
    return f"projects/{sub}/en/stable/api/generated/{name}.html#{name}"


# Names of the Python standard library the docstrings use (numpydoc links
# ``bool``, ``sequence``, ``iterable`` ... to these), with their pages.
_PY_TERMS = (
    "callable",
    "file object",
    "generator",
    "hashable",
    "iterable",
    "iterator",
    "mapping",
    "path-like object",
    "sequence",
)
_PY_MODULES = {
    "collections.abc": "library/collections.abc.html",
    "contextlib": "library/contextlib.html",
    "dataclasses": "library/dataclasses.html",
    "json": "library/json.html",
    "logging": "library/logging.html",
    "os": "library/os.html",
    "pathlib": "library/pathlib.html",
    "typing": "library/typing.html",
    "warnings": "library/warnings.html",
}


def python_entries() -> list[tuple[str, str, str]]:
    """Builtins, a few standard modules, glossary terms and labels."""
    import builtins

    out = []
    for name in dir(builtins):
        if name.startswith("_"):
            continue
        obj = getattr(builtins, name)
        if name in ("None", "True", "False", "Ellipsis", "NotImplemented"):
            out.append((name, "py:data", f"library/constants.html#{name}"))
        elif inspect.isclass(obj) and issubclass(obj, BaseException):
            out.append((name, "py:exception", f"library/exceptions.html#{name}"))
        elif inspect.isclass(obj):
            out.append((name, "py:class", f"library/functions.html#{name}"))
        elif callable(obj):
            out.append((name, "py:function", f"library/functions.html#{name}"))
    for modname, page in _PY_MODULES.items():
        out.append((modname, "py:module", f"{page}#module-{modname}"))
        for name, role, _ in walk([modname]):
            if name != modname:
                out.append((name, role, f"{page}#{name}"))
    for term in _PY_TERMS:
        anchor = "term-" + term.replace(" ", "-")
        out.append((term, "std:term", f"glossary.html#{anchor}"))
    label = "bltin-boolean-values"
    out.append((label, "std:label", f"library/stdtypes.html#{label}"))
    return sorted(set(out))


# The numpy glossary terms and labels numpydoc's default aliases point at.
_NUMPY_EXTRA = (
    ("array_like", "std:term", "glossary.html#term-array_like"),
    ("array", "std:term", "glossary.html#term-array"),
    ("arrays.scalars", "std:label", "reference/arrays.scalars.html#arrays-scalars"),
)


PROJECTS: dict[str, tuple[str, str, list[str], Callable]] = {
    # key: (distribution, base url, modules, uri function)
    "numpy": (
        "numpy",
        "https://numpy.org/doc/stable/",
        ["numpy", "numpy.linalg", "numpy.random", "numpy.fft", "numpy.testing"],
        numpy_uri,
    ),
    "scipy": (
        "scipy",
        "https://docs.scipy.org/doc/scipy/",
        [
            "scipy",
            "scipy.cluster.vq",
            "scipy.integrate",
            "scipy.interpolate",
            "scipy.linalg",
            "scipy.optimize",
            "scipy.spatial",
            "scipy.spatial.distance",
            "scipy.special",
            "scipy.stats",
        ],
        scipy_uri,
    ),
    "sklearn": (
        "scikit-learn",
        "https://scikit-learn.org/stable/",
        [
            "sklearn",
            "sklearn.base",
            "sklearn.cluster",
            "sklearn.datasets",
            "sklearn.decomposition",
            "sklearn.exceptions",
            "sklearn.manifold",
            "sklearn.metrics",
            "sklearn.mixture",
            "sklearn.model_selection",
            "sklearn.neighbors",
            "sklearn.pipeline",
            "sklearn.preprocessing",
            "sklearn.utils",
            "sklearn.utils.validation",
        ],
        sklearn_uri,
    ),
    "pymc": (
        "pymc",
        "https://www.pymc.io/projects/docs/en/stable/",
        ["pymc", "pymc.math", "pymc.variational"],
        pymc_uri,
    ),
    "xarray": (
        "xarray",
        "https://docs.xarray.dev/en/stable/",
        ["xarray"],
        xarray_uri,
    ),
    "arviz": (
        "arviz",
        "https://python.arviz.org/",
        ["arviz", "arviz_base", "arviz_stats", "arviz_plots"],
        arviz_uri,
    ),
}


def main(argv: list[str] | None = None) -> int:
    from importlib.metadata import version

    argv = sys.argv[1:] if argv is None else argv
    wanted = argv or ["python", *PROJECTS]
    for key in wanted:
        path = HERE / f"{key}.inv"
        if key == "python":
            base, dist = "https://docs.python.org/3/", "Python"
            ver = ".".join(map(str, sys.version_info[:2]))
            entries = python_entries()
        else:
            dist, base, modules, uri = PROJECTS[key]
            entries = [(n, r, uri(n, r, o)) for n, r, o in walk(modules)]
            if key == "numpy":
                entries += list(_NUMPY_EXTRA)
            ver = version(dist)
        n = write_inventory(path, dist, ver, entries)
        loaded = check_inventory(path, base)
        if loaded != n:
            raise RuntimeError(f"{path.name}: wrote {n} entries, Sphinx read {loaded}")
        print(f"{path.name}: {dist} {ver}, {n} entries")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
