"""The documentation builds offline with warnings as errors, and documents
exactly the public API.

The build runs on a copy of ``docs/`` (the notebooks symlink followed), so it
writes nothing into the source tree; every proxy points at a closed local
port, so a build step that tried to download something would fail.
"""

import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import bayes_gmm

pytest.importorskip("sphinx")
pytest.importorskip("numpydoc")
pytest.importorskip("myst_nb")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
INVENTORIES = DOCS / "_intersphinx"
BUILD_TIMEOUT = 600


# ------------------------------------------------------- offline intersphinx
def _read_inventory(path):
    from sphinx.util.inventory import InventoryFile

    with path.open("rb") as fh:
        inv = InventoryFile.load(fh, "https://example.invalid/", lambda a, b: b + a)
    data = getattr(inv, "data", inv)
    return {role: set(entries) for role, entries in data.items()}


def _conf():
    """The Sphinx configuration module, loaded as Sphinx does."""
    spec = importlib.util.spec_from_file_location("docs_conf", DOCS / "conf.py")
    module = importlib.util.module_from_spec(spec)
    cwd = os.getcwd()
    try:
        spec.loader.exec_module(module)
    finally:
        os.chdir(cwd)
    return module


# Names the documentation links to, and the package that really has them
# (the oracle: importing them from the installed package).
LINKED = {
    "python": [("py:class", "int"), ("std:term", "sequence")],
    "numpy": [("py:class", "numpy.ndarray"), ("py:function", "numpy.mean")],
    "scipy": [("py:function", "scipy.special.logsumexp")],
    "sklearn": [
        ("py:class", "sklearn.mixture.GaussianMixture"),
        ("py:method", "sklearn.mixture.GaussianMixture.bic"),
        ("py:function", "sklearn.datasets.make_blobs"),
    ],
    "pymc": [
        ("py:function", "pymc.sample"),
        ("py:function", "pymc.fit"),
        ("py:class", "pymc.Model"),
        ("py:class", "pymc.LKJCholeskyCov"),
    ],
    "xarray": [("py:class", "xarray.DataTree"), ("py:class", "xarray.Dataset")],
    "arviz": [("py:function", "arviz.loo"), ("py:function", "arviz.compare")],
}


@pytest.mark.parametrize("project", sorted(LINKED))
def test_inventory_holds_the_linked_names(project):
    inv = _read_inventory(INVENTORIES / f"{project}.inv")
    for role, name in LINKED[project]:
        assert name in inv.get(role, set()), f"{project}: {role} {name}"
        if role.startswith("py:") and name.count(".") and project != "python":
            module, _, attr = name.rpartition(".")
            try:
                owner = importlib.import_module(module)
            except ImportError:  # a method: module.Class.method
                module, _, cls = module.rpartition(".")
                owner = getattr(importlib.import_module(module), cls)
            assert hasattr(owner, attr), f"{name} is not in the installed package"


def test_intersphinx_reads_only_local_files():
    conf = _conf()
    assert set(conf.intersphinx_mapping) == set(LINKED)
    for name, (url, location) in conf.intersphinx_mapping.items():
        assert url.startswith("https://"), name
        path = Path(location)
        assert path.is_file(), f"{name}: {location} is not a local file"
        assert path.parent == INVENTORIES


def test_inventories_name_project_and_version():
    """Each inventory says which project and version it was generated from
    (a newer installed version is fine: the linked names are checked above
    against the installed packages; regenerate with make_inventories.py)."""
    for key in LINKED:
        lines = (INVENTORIES / f"{key}.inv").read_bytes().split(b"\n", 4)
        assert lines[1].startswith(b"# Project: "), key
        assert re.fullmatch(rb"# Version: \d+(\.\d+)*\S*", lines[2]), key


def test_inventory_format_is_sphinx_v2():
    raw = (INVENTORIES / "numpy.inv").read_bytes()
    lines = raw.split(b"\n", 4)
    assert lines[0] == b"# Sphinx inventory version 2"
    body = zlib.decompress(lines[4]).decode()
    assert re.search(r"^numpy\.mean py:function 1 \S+ -$", body, re.M)


# --------------------------------------------------------- the API page text
def test_api_page_lists_exactly_all():
    conf = _conf()
    text = conf.api_page()
    listed = re.findall(r"^   (\w+)$", text, re.M)
    assert sorted(listed) == sorted(bayes_gmm.__all__)
    assert len(listed) == len(set(listed))


def test_public_objects_resolve_past_submodule_shadowing():
    """``bayes_gmm.relabel`` the submodule must not replace the function."""
    import bayes_gmm.relabel  # noqa: F401  (binds the submodule on the package)

    objects = _conf().public_objects()
    for name, obj in objects.items():
        assert not isinstance(obj, type(bayes_gmm)), f"{name} resolved to a module"


# -------------------------------------------------------------- the build
@pytest.fixture(scope="module")
def built_docs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("docs")
    src = tmp / "src"
    shutil.copytree(
        DOCS,
        src,
        symlinks=False,  # the notebooks link is copied as files
        ignore=shutil.ignore_patterns(
            "_build", "generated", "api.rst", "jupyter_execute"
        ),
    )
    out = tmp / "html"
    env = dict(os.environ)
    dead = "http://127.0.0.1:9"  # discard port: nothing listens, nothing downloads
    env.update(http_proxy=dead, https_proxy=dead, HTTP_PROXY=dead, HTTPS_PROXY=dead)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env["MPLBACKEND"] = "Agg"
    cmd = [
        sys.executable,
        "-m",
        "sphinx",
        "-W",
        "--keep-going",
        "-b",
        "html",
        "-d",
        str(tmp / "doctrees"),
        str(src),
        str(out),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=BUILD_TIMEOUT
    )
    return proc, out


def test_docs_build_without_warnings(built_docs):
    proc, out = built_docs
    assert proc.returncode == 0, proc.stderr[-5000:] or proc.stdout[-5000:]
    assert (out / "index.html").is_file()


def test_api_reference_documents_exactly_all(built_docs):
    proc, out = built_docs
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (out / "api.html").read_text()
    linked = set(re.findall(r'href="generated/bayes_gmm\.(\w+)\.html', html))
    assert linked == set(bayes_gmm.__all__)
    for name in bayes_gmm.__all__:
        page = out / "generated" / f"bayes_gmm.{name}.html"
        assert page.is_file(), name
        # autodoc rendered the object, not an empty stub
        assert f'id="bayes_gmm.{name}"' in page.read_text(), name


def test_notebooks_and_user_guide_are_pages(built_docs):
    proc, out = built_docs
    assert proc.returncode == 0, proc.stderr[-3000:]
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        page = out / "notebooks" / f"{nb.stem}.html"
        assert page.is_file(), nb.name
    for md in sorted((DOCS / "user_guide").glob("*.md")):
        assert (out / "user_guide" / f"{md.stem}.html").is_file(), md.name
    # the equations are rendered as math, and intersphinx links resolved
    em = (out / "user_guide" / "em.html").read_text()
    assert 'class="math' in em
    assert "scikit-learn.org/stable/modules/generated/sklearn.mixture" in em
