"""Safety promises of the ``bayes-gmm`` command (bayes_gmm.cli.main).

1. --out: only files the command wrote itself (its manifest
   ``.bayes_gmm_manifest.json``) are replaced or removed; anything else is
   left alone, or the run refuses up front (exit 2, one ``error:`` line);
   a directory put in place of --out during the run is not replaced; an
   unwritable --out is refused before any fitting.
2. Ctrl-C: exit 130, the previous report byte-identical, one ``error:`` line.
3. CSV dialects: ';' with decimal commas detected, --sep/--decimal, joined
   numbers refused, a saved index or a missing header named in a
   ``warning:`` line and not fitted.
4. --tune 0 refused (exit 2); a BaseException (pyo3's PanicException) still
   ends in one ``error:`` line (exit 1).

Oracles: SHA-256 of every file before and after, directory inodes, the
numbers written into the CSV files (compared exactly with what the command
read), exit statuses and the exact stderr lines.
"""

import contextlib
import hashlib
import io
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayes_gmm._io import MANIFEST, read_data_csv
from bayes_gmm.cli import main

# The cheapest runs the command has: EM only, one covariance type, one start.
CHEAP = ["--covariance", "full", "--n-init", "1", "--methods", "em", "--n-boot", "0"]
ONE = ["--components", "1", *CHEAP, "-q"]  # one model: for the CSV tests
TWO = ["--components", "1-2", *CHEAP, "-q"]
# A report with the covariance_types.png figure (more than one type).
TWO_TYPES = ["--components", "1-2", "--covariance", "full,diag", "--n-init", "1"]
TWO_TYPES += ["--methods", "em", "--n-boot", "0", "-q"]


def run(argv):
    """main(argv) with stdout/stderr captured: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(root):
    """Every file and directory under ``root``: relative path -> SHA-256 / 'dir'."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = sha(Path(p))
    return out


def assert_one_error_line(stderr, *fragments):
    assert stderr.startswith("error:"), stderr
    assert stderr.count("\n") == 1 and stderr.endswith("\n"), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in stderr, stderr


def write_points(path, rows, sep=",", decimal=".", header=("a", "b")):
    """Write rows of numbers with 3 decimals; return them as parsed by float()."""
    lines = [sep.join(header)] if header else []
    expected = []
    for row in rows:
        cells = [f"{v:.3f}" for v in row]
        expected.append([float(c) for c in cells])
        lines.append(sep.join(c.replace(".", decimal) for c in cells))
    path.write_text("\n".join(lines) + "\n")
    return np.array(expected)


def points(n=80, seed=0):
    rng = np.random.default_rng(seed)
    half = n // 2
    return np.r_[rng.normal(0, 1, (half, 2)), rng.normal(6, 1, (n - half, 2))]


@pytest.fixture
def data_csv(tmp_path):
    path = tmp_path / "data" / "points.csv"
    path.parent.mkdir()
    write_points(path, points())
    return path


def make_report(data, out, options=TWO):
    status, _, stderr = run(["fit", data, "--out", out, *options])
    assert status == 0, stderr
    assert (out / MANIFEST).is_file()
    return snapshot(out)


def manifest_files(out):
    return json.loads((out / MANIFEST).read_text())["files"]


def assert_manifest_matches(out, foreign=()):
    """The manifest lists exactly the report's files, with their SHA-256."""
    listed = manifest_files(out)
    present = {p.name for p in out.iterdir()} - {MANIFEST, *foreign}
    assert set(listed) == present
    for name, digest in listed.items():
        assert sha(out / name) == digest, name


@pytest.fixture
def no_fitting(monkeypatch):
    """``no_fitting()``: from now on, fail the test if the command fits anything.

    Returns the list of attempted calls (empty when nothing was fitted).
    """
    import bayes_gmm.cli

    calls = []

    def fit_em_grid(*args, **kwargs):
        calls.append(args)
        raise AssertionError("the command started fitting")

    def forbid():
        monkeypatch.setattr(bayes_gmm.cli, "fit_em_grid", fit_em_grid)
        return calls

    return forbid


def hook_write_report(monkeypatch, action):
    """Run ``action()`` while the command writes its report (mid-run)."""
    import bayes_gmm.report

    original = bayes_gmm.report.write_report

    def write_report(*args, **kwargs):
        action()
        return original(*args, **kwargs)

    monkeypatch.setattr(bayes_gmm.report, "write_report", write_report)


# ============================================ 1. only its own files, up front
def test_manifest_lists_every_file_written_with_its_sha256(data_csv, tmp_path):
    out = tmp_path / "rep"
    make_report(data_csv, out, TWO_TYPES)
    assert_manifest_matches(out)
    assert "covariance_types.png" in manifest_files(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "rep"]


def test_rerun_replaces_only_listed_files_and_keeps_the_input_and_notes(tmp_path):
    out = tmp_path / "rep"
    out.mkdir()
    data = out / "mydata.csv"
    write_points(data, points())
    # first run into a directory holding only the input: refused or untouched
    status, _, stderr = run(["fit", data, "--out", out, *TWO_TYPES])
    if status == 2:
        assert_one_error_line(stderr, str(out))
        assert [p.name for p in out.iterdir()] == ["mydata.csv"]
        # the user starts from a report written elsewhere and moves it in
        make_report(data, tmp_path / "first", TWO_TYPES)
        for p in (tmp_path / "first").iterdir():
            shutil.move(p, out / p.name)
        (tmp_path / "first").rmdir()
    else:
        assert status == 0, stderr
    (out / "notes.txt").write_text("my notes: do not lose\n")
    mine = {name: sha(out / name) for name in ("mydata.csv", "notes.txt")}
    first = manifest_files(out)
    assert "covariance_types.png" in first

    # second run: one covariance type, so covariance_types.png is not written
    status, _, stderr = run(["fit", data, "--out", out, *TWO])
    assert status == 0, stderr
    assert {name: sha(out / name) for name in mine} == mine
    assert not (out / "covariance_types.png").exists()  # listed, not rewritten
    assert_manifest_matches(out, foreign=mine)
    assert "mydata.csv" not in manifest_files(out)
    assert "notes.txt" not in manifest_files(out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["covariance_types"] == ["full"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]  # no leftovers


def test_input_that_is_a_listed_report_file_is_refused(data_csv, tmp_path):
    out = tmp_path / "rep"
    before = make_report(data_csv, out)
    # fitting the report's own criteria.csv into the same report
    argv = ["fit", out / "criteria.csv", "--columns", "bic,aic", "--out", out, *ONE]
    status, _, stderr = run(argv)
    assert status == 2
    assert_one_error_line(stderr, "criteria.csv")
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "rep"]


@pytest.mark.parametrize("name", ["covariance_types.png", "posterior_mine.nc"])
def test_unlisted_file_with_a_report_name_is_refused_before_fitting(
    name, data_csv, tmp_path, no_fitting
):
    out = tmp_path / "rep"
    make_report(data_csv, out)  # one type: no covariance_types.png
    assert name not in manifest_files(out)
    (out / name).write_bytes(b"the user's own file")
    before = snapshot(out)
    calls = no_fitting()
    status, _, stderr = run(["fit", data_csv, "--out", out, *TWO_TYPES])
    assert status == 2
    assert_one_error_line(stderr, name, "not written by bayes-gmm")
    assert calls == []
    assert snapshot(out) == before


def test_listed_file_changed_since_is_refused_before_fitting(
    data_csv, tmp_path, no_fitting
):
    out = tmp_path / "rep"
    make_report(data_csv, out)
    (out / "criteria.csv").write_text("edited by hand\n")
    before = snapshot(out)
    calls = no_fitting()
    status, _, stderr = run(["fit", data_csv, "--out", out, *TWO])
    assert status == 2
    assert_one_error_line(stderr, "criteria.csv was changed")
    assert calls == []
    assert snapshot(out) == before


def test_foreign_directory_without_manifest_is_refused(data_csv, tmp_path, no_fitting):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    calls = no_fitting()
    status, _, stderr = run(["fit", data_csv, "--out", out, *TWO])
    assert calls == []
    assert status == 2
    assert_one_error_line(stderr, "not a bayes-gmm report directory")
    assert snapshot(out) == {"notes.txt": sha(out / "notes.txt")}
    assert (out / "notes.txt").read_text() == "precious"


# ----------------------------------------------- --out changed during the run
def _appear_foreign_dir(out):
    out.mkdir()
    (out / "notes.txt").write_text("someone else's")


def _replace_by_foreign_dir(out):
    shutil.rmtree(out)
    _appear_foreign_dir(out)


def _edit_listed(out):
    (out / "criteria.csv").write_text("edited during the run\n")


def _unlisted_report_name(out):
    (out / "covariance_types.png").write_bytes(b"not ours")


MID_RUN = {
    "directory appears in place of a missing --out": (False, _appear_foreign_dir),
    "report replaced by someone else's directory": (True, _replace_by_foreign_dir),
    "listed file edited": (True, _edit_listed),
    "file this run writes appears": (True, _unlisted_report_name),
}


@pytest.mark.parametrize("case", list(MID_RUN))
def test_out_changed_during_the_run_is_left_as_it_is(
    case, data_csv, tmp_path, monkeypatch
):
    existing, change = MID_RUN[case]
    out = tmp_path / "rep"
    if existing:
        make_report(data_csv, out)  # one type
    seen = {}

    def action():
        change(out)
        seen["out"] = snapshot(out)
        seen["inode"] = os.stat(out).st_ino

    hook_write_report(monkeypatch, action)
    status, _, stderr = run(["fit", data_csv, "--out", out, *TWO_TYPES])
    assert status == 2, stderr
    assert_one_error_line(stderr, str(out), "left as it is")
    assert snapshot(out) == seen["out"]
    assert os.stat(out).st_ino == seen["inode"]
    # the finished report was kept beside it, complete, under the name given
    (kept,) = [p for p in tmp_path.iterdir() if p.name.startswith("rep.bayes-gmm-")]
    assert str(kept) in stderr
    assert_manifest_matches(kept)
    assert "covariance_types.png" in manifest_files(kept)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["data", "rep", kept.name]
    )


@pytest.mark.parametrize("when", ["while writing the report", "at the last moment"])
def test_empty_directory_made_in_place_of_out_during_the_run_is_not_replaced(
    when, data_csv, tmp_path, monkeypatch
):
    # rename(2) silently replaces an empty directory: the directory someone
    # made (and may be about to write into) must stay the same directory.
    out = tmp_path / "rep"
    seen = {}
    original = {"rename": os.rename, "mkdir": os.mkdir}

    def make_it():
        seen["made"] = True
        original["mkdir"](out, 0o750)
        seen["inode"] = os.stat(out).st_ino

    if when == "while writing the report":
        hook_write_report(monkeypatch, make_it)
    else:
        # between the command's last look at --out and its move into place:
        # just before it renames or makes a directory at --out
        def hooked(name, target_arg):
            def call(*args, **kwargs):
                if os.fspath(args[target_arg]) == str(out) and "made" not in seen:
                    make_it()
                return original[name](*args, **kwargs)

            return call

        monkeypatch.setattr(os, "rename", hooked("rename", 1))
        monkeypatch.setattr(os, "mkdir", hooked("mkdir", 0))
    status, _, stderr = run(["fit", data_csv, "--out", out, *TWO])
    assert "inode" in seen
    assert os.stat(out).st_ino == seen["inode"]
    if status == 0:  # an empty directory may be written into
        assert_manifest_matches(out)
    else:
        assert status == 2
        assert_one_error_line(stderr, str(out))
        assert list(out.iterdir()) == []
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


# ------------------------------------------------- unwritable: refused up front
def _immutable(path):
    """Make ``path`` unwritable even for root; return an undo, or None."""
    if os.geteuid() != 0:
        path.chmod(0o500)
        return lambda: path.chmod(0o700)
    # root ignores permission bits (chmod 0o500 would not stop it); the
    # immutable attribute of ext4/xfs/btrfs stops root too.
    chattr = shutil.which("chattr")
    if chattr is None:
        return None
    done = subprocess.run([chattr, "+i", str(path)], capture_output=True)
    if done.returncode != 0:
        return None
    return lambda: subprocess.run([chattr, "-i", str(path)], check=True)


def _writable(path):
    try:
        (path / ".probe").write_text("x")
    except OSError:
        return False
    (path / ".probe").unlink()
    return True


@pytest.mark.parametrize("where", ["parent is a file", "report", "parent"])
def test_unwritable_out_is_refused_before_fitting(
    where, data_csv, tmp_path, no_fitting
):
    if where == "parent is a file":
        # unwritable for everyone, root included: a regular file cannot hold
        # a directory
        (tmp_path / "afile").write_text("not a directory")
        out = tmp_path / "afile" / "rep"
        locked = tmp_path
    elif where == "report":  # an existing report the user may not write
        out = tmp_path / "rep"
        make_report(data_csv, out)
        locked = out
    else:  # a missing --out in a directory the user may not write
        locked = tmp_path / "ro"
        locked.mkdir()
        out = locked / "rep"
    undo = None
    if where != "parent is a file":
        undo = _immutable(locked)
        if undo is None:
            pytest.skip("no way to make a directory unwritable here")
    try:
        if where != "parent is a file" and _writable(locked):
            pytest.skip("the directory is still writable")
        before = snapshot(tmp_path)
        calls = no_fitting()
        t0 = time.perf_counter()
        status, _, stderr = run(["fit", data_csv, "--out", out, *TWO])
        elapsed = time.perf_counter() - t0
        after = snapshot(tmp_path)
    finally:
        if undo is not None:
            undo()
    assert status == 2
    assert_one_error_line(stderr, "cannot write --out", str(out))
    assert calls == []
    assert elapsed < 5
    assert after == before


# ============================================================= 2. Ctrl-C
@pytest.fixture
def sigint_default():
    """Python's own SIGINT handler (the command installs its own only then)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _sigint():
    os.kill(os.getpid(), signal.SIGINT)


def _during_em(monkeypatch):
    import bayes_gmm.cli

    original = bayes_gmm.cli.fit_em_grid

    def fit_em_grid(*args, progress=None, **kwargs):
        def interrupted(*a):
            progress(*a)
            _sigint()

        return original(*args, progress=interrupted, **kwargs)

    monkeypatch.setattr(bayes_gmm.cli, "fit_em_grid", fit_em_grid)


def _during_figures(monkeypatch):
    import bayes_gmm.plots

    original = bayes_gmm.plots.plot_criteria

    def plot_criteria(*args, **kwargs):
        _sigint()
        return original(*args, **kwargs)

    monkeypatch.setattr(bayes_gmm.plots, "plot_criteria", plot_criteria)


def _during_report(monkeypatch):
    hook_write_report(monkeypatch, _sigint)


def _during_prepare(monkeypatch):
    # right after the staging directory beside --out was made
    original = os.chmod

    def chmod(path, *args, **kwargs):
        result = original(path, *args, **kwargs)
        if ".rep.tmp-" in os.fspath(path):
            _sigint()
        return result

    monkeypatch.setattr(os, "chmod", chmod)


@pytest.mark.parametrize(
    "stage",
    [_during_prepare, _during_em, _during_figures, _during_report],
    ids=lambda f: f.__name__,
)
def test_ctrl_c_keeps_the_previous_report(
    stage, data_csv, tmp_path, monkeypatch, sigint_default
):
    out = tmp_path / "rep"
    before = make_report(data_csv, out)
    stage(monkeypatch)
    status, _, stderr = run(["fit", data_csv, "--out", out, *TWO_TYPES])
    assert status == 130
    assert_one_error_line(stderr, "interrupted (Ctrl-C)", "as it was")
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "rep"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_while_moving_the_report_in_completes_it(
    data_csv, tmp_path, monkeypatch, sigint_default
):
    from bayes_gmm._io import ReportDir

    out = tmp_path / "rep"
    make_report(data_csv, out)
    original = ReportDir.commit

    def commit(self):
        _sigint()
        return original(self)

    monkeypatch.setattr(ReportDir, "commit", commit)
    status, _, stderr = run(["fit", data_csv, "--out", out, *TWO_TYPES])
    # all or nothing: the move is not cut short, and the user is told
    assert status == 0, stderr
    assert stderr.startswith("warning: Ctrl-C came while the finished report")
    assert stderr.count("\n") == 1
    assert_manifest_matches(out)
    assert "covariance_types.png" in manifest_files(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "rep"]


# Run as the console script does, with Python's SIGINT handler installed
# explicitly: a child inherits an ignored SIGINT from a test runner started in
# the background without job control, and Python would then keep ignoring it.
_CHILD = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from bayes_gmm.cli import main; sys.exit(main(sys.argv[1:]))"
)


class _Child:
    def __init__(self, argv, cwd):
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-c", _CHILD, *map(str, argv)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=env,
        )
        self.lines = []
        self._queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {text!r} in: {''.join(self.lines)}") from None
            if line is None:
                raise AssertionError(f"exited before {text!r}: {''.join(self.lines)}")
            if text in line:
                return

    def interrupt(self, timeout=60):
        self.proc.send_signal(signal.SIGINT)
        try:
            status = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(10)
        return status, "".join(self.lines)


def _assert_interrupted(status, stderr):
    assert status == 130, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert stderr.splitlines()[-1] == errors[0]
    assert "interrupted (Ctrl-C)" in errors[0] and "as it was" in errors[0]
    assert "Traceback" not in stderr


def test_ctrl_c_in_a_real_process_during_em(data_csv, tmp_path):
    out = tmp_path / "rep"
    before = make_report(data_csv, out)
    big = tmp_path / "data" / "big.csv"
    rng = np.random.default_rng(1)
    rows = np.r_[rng.normal(0, 1, (10000, 3)), rng.normal(5, 1, (10000, 3))]
    write_points(big, rows, header=("a", "b", "c"))
    # 48 models of 100 starts each: seconds of EM after the first line
    argv = ["fit", big, "--out", out, "--components", "1-12", "--n-init", "100"]
    argv += ["--covariance", "full,tied,diag,spherical", "--methods", "em"]
    argv += ["--n-boot", "0"]
    child = _Child(argv, tmp_path)
    child.wait_for("[em ", timeout=60)  # fitting has started
    status, stderr = child.interrupt()
    assert "[em 48/48]" not in stderr  # it stopped during the grid
    _assert_interrupted(status, stderr)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "rep"]


def test_ctrl_c_in_a_real_process_during_nuts(data_csv, tmp_path):
    # nutpie catches the KeyboardInterrupt and returns a partial trace: the
    # command must stop all the same.
    out = tmp_path / "rep"
    before = make_report(data_csv, out)
    big = tmp_path / "data" / "big.csv"
    write_points(big, points(2000, seed=2))
    argv = ["fit", big, "--out", out, "--components", "2", "--covariance", "full"]
    argv += ["--n-init", "1", "--methods", "em,nuts", "--candidates", "1"]
    argv += ["--draws", "10000", "--tune", "10000", "--chains", "2", "--n-boot", "0"]
    child = _Child(argv, tmp_path)
    child.wait_for("[nuts 1/1]", timeout=120)
    time.sleep(3.0)  # well into sampling (about 10 s of it on 2 cores)
    assert child.proc.poll() is None, "".join(child.lines)
    status, stderr = child.interrupt()
    assert "done in" not in stderr.split("[nuts 1/1]", 1)[1]
    _assert_interrupted(status, stderr)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "rep"]


# ========================================================= 3. CSV dialects
def fit_summary(data, tmp_path, *extra, out_name="out"):
    out = tmp_path / out_name
    status, stdout, stderr = run(["fit", data, "--out", out, *ONE, *extra])
    assert status == 0, stderr
    return json.loads((out / "summary.json").read_text()), stdout, stderr


def assert_read_exactly(summary, expected, columns=("a", "b")):
    """The command fitted exactly these numbers (min/max are exact)."""
    data = summary["data"]
    assert data["columns"] == list(columns)
    assert data["n_samples"] == len(expected)
    for j, c in enumerate(columns):
        d = data["describe"][c]
        assert d["min"] == expected[:, j].min()
        assert d["max"] == expected[:, j].max()
        assert d["mean"] == pytest.approx(expected[:, j].mean(), rel=1e-12)
        assert d["sd"] == pytest.approx(expected[:, j].std(ddof=1), rel=1e-10)


def test_semicolon_and_decimal_comma_are_detected(tmp_path):
    path = tmp_path / "eu.csv"
    expected = write_points(path, points(), sep=";", decimal=",")
    assert "," in path.read_text().splitlines()[1]  # decimal commas written
    table = read_data_csv(path)
    assert (table.sep, table.decimal, table.detected) == (";", ",", True)
    np.testing.assert_array_equal(table.frame.to_numpy(), expected)
    summary, stdout, stderr = fit_summary(path, tmp_path)
    assert stderr == ""
    assert_read_exactly(summary, expected)
    csv = summary["data"]["csv"]
    assert (csv["sep"], csv["decimal"], csv["detected"]) == (";", ",", True)
    assert "';'-separated, decimal comma, detected" in stdout


@pytest.mark.parametrize(
    "sep, decimal, options",
    [
        ("|", ",", ["--sep", "|", "--decimal", ","]),
        ("\t", ".", ["--sep", "tab"]),
        (";", ".", ["--sep", ";", "--decimal", "."]),
        (",", ".", ["--decimal", "."]),
    ],
    ids=["pipe-comma", "tab", "semicolon-point", "comma-point"],
)
def test_sep_and_decimal_options(sep, decimal, options, tmp_path):
    path = tmp_path / "given.csv"
    expected = write_points(path, points(), sep=sep, decimal=decimal)
    summary, _, stderr = fit_summary(path, tmp_path, *options)
    assert stderr == ""
    assert_read_exactly(summary, expected)
    csv = summary["data"]["csv"]
    assert (csv["sep"], csv["decimal"], csv["detected"]) == (sep, decimal, False)


def test_separator_equal_to_decimal_mark_is_refused(data_csv, tmp_path):
    argv = ["fit", data_csv, "--sep", ",", "--decimal", ",", "--out", tmp_path / "o"]
    status, _, stderr = run([*argv, *ONE])
    assert status == 2
    assert_one_error_line(stderr, "separator and the decimal mark are both ','")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "sep, decimal, options",
    [
        (" ", ".", []),  # space-separated: not a separator that is detected
        (";", ".", ["--sep", ","]),  # the wrong separator given
        (";", ",", ["--sep", ","]),
    ],
    ids=["space", "semicolon-as-comma", "semicolon-decimal-comma-as-comma"],
)
def test_one_column_of_joined_numbers_is_refused(sep, decimal, options, tmp_path):
    path = tmp_path / "joined.csv"
    write_points(path, points(), sep=sep, decimal=decimal)
    out = tmp_path / "out"
    status, _, stderr = run(["fit", path, "--out", out, *ONE, *options])
    assert status == 2
    assert_one_error_line(stderr, str(path))
    assert "joined" in stderr or "more fields than the header" in stderr
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["joined.csv"]


def test_one_genuine_numeric_column_is_fitted(tmp_path):
    # the other side of the refusal above: one column of single numbers
    path = tmp_path / "one.csv"
    expected = write_points(path, points()[:, :1], header=("x",))
    summary, _, stderr = fit_summary(path, tmp_path)
    assert stderr == ""
    assert_read_exactly(summary, expected, columns=("x",))


def _index_range(df, path):
    df.to_csv(path)  # pandas' default: the RangeIndex 0..n-1, unnamed
    return df


def _index_filtered(df, path):
    df = df[df["a"] > -1.0]  # rows dropped: the index is 0, 1, 3, 4, 7, ...
    assert not np.array_equal(df.index, np.arange(len(df)))
    df.to_csv(path)
    return df


def _index_shuffled(df, path):
    df = df.sample(frac=1.0, random_state=0)
    df.to_csv(path)
    return df


def _index_eu(df, path):
    df.to_csv(path, sep=";", decimal=",")
    return df


def _index_r(df, path):
    # R's write.csv: a quoted empty name and quoted row names "1".."n"
    lines = ['"","a","b"']
    for i, (a, b) in enumerate(df.to_numpy()):
        lines.append(f'"{i + 1}",{float(a)!r},{float(b)!r}')
    path.write_text("\n".join(lines) + "\n")
    return df


@pytest.mark.parametrize(
    "save",
    [_index_range, _index_filtered, _index_shuffled, _index_eu, _index_r],
    ids=lambda f: f.__name__,
)
def test_saved_row_index_is_named_and_not_fitted(save, tmp_path):
    df = pd.DataFrame(np.round(points(), 3), columns=["a", "b"])
    path = tmp_path / "indexed.csv"
    expected = save(df, path)[["a", "b"]].to_numpy()
    summary, _, stderr = fit_summary(path, tmp_path)
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("warning: column 'Unnamed: 0' "), stderr
    assert "left out of the fit" in lines[0]
    assert_read_exactly(summary, expected)
    assert summary["data"]["csv"]["dropped_columns"] == ["Unnamed: 0"]
    np.testing.assert_array_equal(read_data_csv(path).frame.to_numpy(), expected)


def test_unnamed_data_column_is_warned_about(tmp_path):
    # an unnamed column that is not a row index: fitted, and named in a warning
    path = tmp_path / "unnamed.csv"
    expected = write_points(path, points(), header=("a", ""))
    summary, _, stderr = fit_summary(path, tmp_path)
    assert stderr.startswith("warning: column 'Unnamed: 1' ")
    assert stderr.count("\n") == 1 and "fitted as data" in stderr
    assert_read_exactly(summary, expected, columns=("a", "Unnamed: 1"))


@pytest.mark.parametrize("sep, decimal", [(",", "."), (";", ",")])
def test_file_without_header_is_read_as_data_with_warning(sep, decimal, tmp_path):
    rows = points()
    rows[0] = [-40.125, 55.5]  # the extremes are in the first line
    path = tmp_path / "bare.csv"
    expected = write_points(path, rows, sep=sep, decimal=decimal, header=None)
    summary, _, stderr = fit_summary(path, tmp_path)
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: {path} has no header")
    assert "x1..x2" in lines[0]
    assert_read_exactly(summary, expected, columns=("x1", "x2"))
    assert summary["data"]["describe"]["x1"]["min"] == -40.125
    assert summary["data"]["describe"]["x2"]["max"] == 55.5
    assert summary["data"]["csv"]["header"] is False


# ===================================== 4. --tune 0, and panics from Rust code
@pytest.mark.parametrize("methods", ["em,nuts,advi", "em,nuts"])
def test_tune_zero_is_refused_before_fitting(methods, data_csv, tmp_path, no_fitting):
    out = tmp_path / "out"
    argv = ["fit", data_csv, "--out", out, "--methods", methods, "--tune", "0", "-q"]
    calls = no_fitting()
    status, stdout, stderr = run(argv)
    assert status == 2
    assert_one_error_line(stderr, "--tune must be >= 1, got 0")
    assert stdout == ""
    assert calls == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


class PanicException(BaseException):
    """Stand-in for pyo3's PanicException (a BaseException; not importable)."""


def _panic_in_em(monkeypatch):
    import bayes_gmm.cli

    def fit_em_grid(*args, **kwargs):
        raise PanicException("called `Option::unwrap()` on a `None` value\nat src")

    monkeypatch.setattr(bayes_gmm.cli, "fit_em_grid", fit_em_grid)


def _panic_in_nuts(monkeypatch):
    from bayes_gmm.bayes import GaussianMixtureBayes

    def fit(self, X, y=None):
        raise PanicException("called `Option::unwrap()` on a `None` value\nat src")

    monkeypatch.setattr(GaussianMixtureBayes, "fit", fit)


@pytest.mark.parametrize(
    "where", [_panic_in_em, _panic_in_nuts], ids=lambda f: f.__name__
)
def test_base_exception_is_one_error_line(where, data_csv, tmp_path, monkeypatch):
    out = tmp_path / "rep"
    before = make_report(data_csv, out)
    where(monkeypatch)
    argv = ["fit", data_csv, "--out", out, *TWO[:6]]
    argv += ["--methods", "em,nuts", "--candidates", "1", "--n-boot", "0", "-q"]
    status, stdout, stderr = run(argv)
    assert status == 1
    assert_one_error_line(
        stderr,
        "error: unexpected failure (PanicException: called `Option::unwrap()` on a "
        "`None` value)",
    )
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "rep"]
