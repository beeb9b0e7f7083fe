"""The tutorial notebooks run top to bottom, use only the public API, and are
committed with the outputs of a full run.

The fast suite executes every notebook with ``BAYES_GMM_FAST=1`` (smaller
draws and grids); the slow suite executes them in full mode. Execution uses
a kernel of the Python running the tests (a kernelspec written to a
temporary ``JUPYTER_PATH``), so the notebooks see the same environment.
"""

import ast
import json
import os
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

import bayes_gmm  # noqa: E402

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
# The five tutorials the documentation promises (issue 6).
EXPECTED = {
    "01_quickstart",
    "02_density_and_generation",
    "03_em_vs_mcmc_vs_advi",
    "04_model_selection",
    "05_label_switching",
}
KERNEL_NAME = "bayes-gmm-tests"
CELL_TIMEOUT = 900  # seconds; an ADVI compile is tens of seconds on 2 cores


def _ids(paths):
    return [p.stem for p in paths]


def _read(path):
    return nbformat.read(path, as_version=4)


def _code(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """Kernel environment; a kernelspec running this interpreter is found
    through ``JUPYTER_PATH`` while the module's tests run."""
    root = tmp_path_factory.mktemp("jupyter")
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "bayes_gmm tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    paths = [str(root), *filter(None, [os.environ.get("JUPYTER_PATH")])]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", os.pathsep.join(paths))
        env = dict(os.environ)
        # Figures are drawn by the inline backend, as for a user: a figure
        # that fails to render fails the test.
        env.pop("MPLBACKEND", None)
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        env.setdefault("OMP_NUM_THREADS", "1")
        env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
        yield env


def _execute(path, env, fast):
    nb = _read(path)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute(env=dict(env, BAYES_GMM_FAST="1" if fast else "0"))
    return nb


def _problems(nb):
    """Error outputs (also those raised by display hooks, which nbclient does
    not turn into exceptions) and tracebacks printed on stderr."""
    found = []
    for i, cell in enumerate(_code(nb)):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"code cell {i}: {out['ename']}: {out['evalue']}")
            elif out.get("output_type") == "stream" and out.get("name") == "stderr":
                if "Traceback" in out["text"] or "Error in callback" in out["text"]:
                    found.append(f"code cell {i} stderr: {out['text'][:300]}")
    return found


# ----------------------------------------------------------- static checks
def test_the_five_tutorials_exist():
    assert set(_ids(NOTEBOOKS)) == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_reads_fast_mode_variable(path):
    source = "\n".join(c.source for c in _code(_read(path)))
    assert "BAYES_GMM_FAST" in source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_uses_only_the_public_api(path):
    public = set(bayes_gmm.__all__)
    for cell in _code(_read(path)):
        source = "\n".join(
            line for line in cell.source.splitlines() if not line.startswith(("%", "!"))
        )
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not re.search(r"(^|\.)_", node.module), node.module
                if node.module == "bayes_gmm":
                    names = {a.name for a in node.names}
                    assert names <= public, f"not in __all__: {names - public}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not re.search(r"(^|\.)_", alias.name), alias.name
            elif isinstance(node, ast.Attribute):
                # no private attributes of our objects (``gm._e_step``)
                private = node.attr.startswith("_") and not node.attr.startswith("__")
                assert not private, f"private attribute {node.attr!r} used"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_with_outputs_of_a_full_run(path):
    nb = _read(path)
    cells = _code(nb)
    assert all(c.execution_count is not None for c in cells), "not executed"
    counts = [c.execution_count for c in cells]
    assert counts == list(range(1, len(cells) + 1)), "not run top to bottom"
    assert not _problems(nb)
    # The first code cell prints the mode it ran in.
    first = "".join(o.get("text", "") for o in cells[0].outputs)
    assert "full mode" in first, "the saved outputs are not from a full run"
    images = sum(
        "image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", [])
    )
    assert images >= 3, "a tutorial without figures?"


# ---------------------------------------------------------------- execution
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs_in_fast_mode(path, kernel_env):
    nb = _execute(path, kernel_env, fast=True)
    assert not _problems(nb)
    first = "".join(o.get("text", "") for o in _code(nb)[0].outputs)
    assert "fast mode" in first


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs_in_full_mode(path, kernel_env):
    nb = _execute(path, kernel_env, fast=False)
    assert not _problems(nb)
