"""Reading the data file and writing the report directory of ``bayes-gmm``.

Two promises of the command live here:

* :func:`read_data_csv` reads what the file holds, not what a default
  guesses: the field separator and the decimal mark are detected (or
  given), a file read as one column of joined numbers is refused, and a
  saved row index or a missing header row is named in a warning instead of
  being fitted as data.
* :class:`ReportDir` never deletes or replaces a file it did not write. A
  report directory is marked as the command's own by a manifest
  (:data:`MANIFEST`) listing its files with their SHA-256; only a missing,
  empty or manifest-marked ``--out`` is written to, only the files the
  manifest lists (unchanged since) are replaced or removed, and anything
  else in the directory is left alone.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "MANIFEST",
    "CSVError",
    "CSVTable",
    "OutputError",
    "ReportDir",
    "ReportWriteError",
    "read_data_csv",
]

#: Field separators tried, in order of preference on a tie.
SEPARATORS = (",", "\t", ";", "|")
_SEP_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "space": " "}
#: Lines of the file looked at to detect its dialect.
_SAMPLE_LINES = 200
_NUMBER_POINT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")
_NUMBER_COMMA = re.compile(r"[+-]?(\d+,\d*|,\d+)([eE][+-]?\d+)?")
_DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+([eE][+-]?\d+)?")
_DECIMAL_POINT = re.compile(r"[+-]?\d*\.\d+([eE][+-]?\d+)?")


class CSVError(ValueError):
    """The data file cannot be read as a table of numbers (one-line reason)."""


@dataclass
class CSVTable:
    """A data file as read: the table and how it was read.

    Attributes
    ----------
    frame : pandas.DataFrame
        The columns read (a saved index column left out).
    sep, decimal : str
        Field separator and decimal mark used.
    detected : bool
        Whether the dialect was detected (not given by the caller).
    header : bool
        Whether the first line was read as column names.
    dropped : list of str
        Columns left out (a saved row index).
    warnings : list of str
        One line for each guess the reader made that the user should know.
    """

    frame: pd.DataFrame
    sep: str
    decimal: str
    detected: bool
    header: bool = True
    dropped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def first_line(self) -> int:
        """Line of the file holding the first data row (1-based)."""
        return 2 if self.header else 1

    def describe(self) -> str:
        """How the file was read, e.g. "';'-separated, decimal comma"."""
        sep = "tab" if self.sep == "\t" else repr(self.sep)
        parts = [f"{sep}-separated"]
        if self.decimal == ",":
            parts.append("decimal comma")
        if not self.header:
            parts.append("no header row")
        return ", ".join(parts)


def parse_sep(value: str | None) -> str | None:
    """The separator a ``--sep`` value names (a character or 'tab')."""
    if value is None:
        return None
    sep = _SEP_NAMES.get(value.lower(), value)
    if len(sep) != 1 or sep in "\"'\r\n" or sep.isalnum() or sep in ".-+":
        raise CSVError(
            f"bad --sep {value!r}: give one character such as ',' ';' '|' or 'tab'"
        )
    return sep


def _sample(path: Path) -> list[str]:
    """The first non-blank lines of the file (text, BOM stripped)."""
    lines = []
    with open(path, encoding="utf-8-sig", newline="") as fh:
        for line in fh:
            if line.strip():
                lines.append(line.rstrip("\r\n"))
            if len(lines) >= _SAMPLE_LINES:
                break
    return lines


def _field_counts(lines: Sequence[str], sep: str) -> list[int]:
    return [len(row) for row in csv.reader(lines, delimiter=sep)]


def _detect_sep(lines: Sequence[str]) -> str:
    """The separator that splits every line into the same number (> 1) of fields.

    ``csv.Sniffer`` guesses on character frequencies and takes the decimal
    commas of a ';'-separated file for separators; counting fields per line
    does not. Of the separators that split consistently, one whose data
    fields (after the first line) are all numbers is preferred: without a
    header row, '1,5;2,5' splits into as many fields at every ',' as at every
    ';'. Then the most fields wins. No consistent separator (one column of
    data): ','.
    """
    best, best_key = ",", (False, 1)
    for sep in SEPARATORS:
        counts = set(_field_counts(lines, sep))
        if len(counts) == 1 and (n := counts.pop()) > 1:
            cells = [c for row in csv.reader(lines[1:], delimiter=sep) for c in row]
            numeric = all(_is_number(c, ".") or _is_number(c, ",") for c in cells)
            if (numeric, n) > best_key:
                best, best_key = sep, (numeric, n)
    return best


def _detect_decimal(path: str, lines: Sequence[str], sep: str) -> str:
    """',' when the numbers are written with decimal commas, else '.'."""
    if sep == ",":
        return "."
    fields = [f.strip() for row in csv.reader(lines[1:], delimiter=sep) for f in row]
    commas = [f for f in fields if _DECIMAL_COMMA.fullmatch(f)]
    points = [f for f in fields if _DECIMAL_POINT.fullmatch(f)]
    if commas and points:
        raise CSVError(
            f"{path} mixes decimal commas and decimal points (e.g. {commas[0]!r} and "
            f"{points[0]!r}); say which is the decimal mark with --decimal"
        )
    return "," if commas else "."


def _is_number(text: str, decimal: str) -> bool:
    pattern = _NUMBER_COMMA if decimal == "," else _NUMBER_POINT
    return bool(pattern.fullmatch(text.strip())) or bool(
        _NUMBER_POINT.fullmatch(text.strip())
    )


def _joined_hint(lines: Sequence[str], sep: str) -> str | None:
    """The options that split lines of joined numbers, if some separator does."""
    for other in (*SEPARATORS, " "):
        if other == sep:
            continue
        rows = list(csv.reader(lines[1:], delimiter=other))
        counts = {len(r) for r in rows}
        if len(counts) != 1 or counts.pop() < 2:
            continue
        cells = [c.strip() for r in rows for c in r]
        if all(_is_number(c, ".") or _is_number(c, ",") for c in cells):
            name = "tab" if other == "\t" else other
            hint = f"--sep '{name}'"
            if other != "," and any(_DECIMAL_COMMA.fullmatch(c) for c in cells):
                hint += " --decimal ','"
            return hint
    return None


def _read(path: Path, sep: str, decimal: str, header: bool) -> pd.DataFrame:
    return pd.read_csv(
        path,
        sep=sep,
        decimal=decimal,
        header=0 if header else None,
        encoding="utf-8-sig",
        skipinitialspace=True,
    )


def read_data_csv(
    path: str | os.PathLike,
    *,
    sep: str | None = None,
    decimal: str | None = None,
    keep: Iterable[str] = (),
) -> CSVTable:
    """Read a CSV file of numbers, detecting its dialect; refuse a misread.

    Parameters
    ----------
    path : str or path-like
        The file.
    sep : str, optional
        Field separator; detected when not given (see :func:`_detect_sep`).
    decimal : {'.', ','}, optional
        Decimal mark; detected when not given (',' only for a file not
        separated by commas, whose numbers all use decimal commas).
    keep : iterable of str, default=()
        Columns never left out as a saved index (those asked for by name).

    Returns
    -------
    CSVTable

    Raises
    ------
    CSVError
        The file is missing, empty, not text, not a table, or reads as one
        column of joined numbers or with more fields in some lines than
        its header names (a wrong separator or decimal mark).
    """
    name = str(path)
    p = Path(path)
    if not p.exists():
        raise CSVError(f"file not found: {name}")
    if p.is_dir():
        raise CSVError(f"{name} is a directory, not a CSV file")
    if decimal not in (None, ".", ","):
        raise CSVError(f"bad --decimal {decimal!r}: give '.' or ','")
    try:
        lines = _sample(p)
    except UnicodeDecodeError as exc:
        raise CSVError(
            f"cannot read {name} as CSV: not UTF-8 text "
            f"({exc.reason} at byte {exc.start})"
        ) from None
    except OSError as exc:
        raise CSVError(f"cannot read {name}: {exc.strerror}") from None
    if not lines:
        raise CSVError(f"{name} is empty")
    detected = sep is None and decimal is None
    sep = _detect_sep(lines) if sep is None else sep
    decimal = _detect_decimal(name, lines, sep) if decimal is None else decimal
    if sep == decimal:
        raise CSVError(
            f"the separator and the decimal mark are both {sep!r}: give another "
            "--sep or --decimal"
        )
    table = CSVTable(pd.DataFrame(), sep, decimal, detected)
    try:
        df = _read(p, sep, decimal, header=True)
        names = [str(c).strip() for c in df.columns]
        if len(lines) > 1 and names and all(_is_number(c, decimal) for c in names):
            # The first line is data: read it as such and say so.
            df = _read(p, sep, decimal, header=False)
            df.columns = [f"x{i + 1}" for i in range(df.shape[1])]
            table.header = False
            table.warnings.append(
                f"{name} has no header row (its first line, {lines[0][:40]!r}, "
                "holds numbers): every line is read as data and the columns are "
                f"named {_name_range(df.columns)}"
            )
        else:
            df.columns = names
    except pd.errors.EmptyDataError:
        raise CSVError(f"{name} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise CSVError(f"cannot read {name} as CSV: {first}") from None
    how = f"with separator {_show(sep)} and decimal mark {decimal!r}"
    hint = _joined_hint(lines, sep)
    if not isinstance(df.index, pd.RangeIndex):
        # pandas takes the extra leading fields of longer lines as an index.
        raise CSVError(
            f"{name}: lines have more fields than the header names "
            f"({df.shape[1]} column(s) {list(df.columns)[:4]} read {how}); "
            + (f"try {hint}" if hint else "check --sep and --decimal")
        )
    if df.shape[1] == 1 and hint is not None:
        raise CSVError(
            f"{name} was read {how} as one column {df.columns[0]!r} whose values "
            f"look like several numbers joined together; try {hint}"
        )
    if df.shape[0] == 0:
        raise CSVError(f"{name} has no data rows")
    keep = set(keep)
    for position, col in enumerate(list(df.columns)):
        if col in keep or not (col.startswith("Unnamed: ") or col == ""):
            continue
        values = pd.to_numeric(df[col], errors="coerce").to_numpy()
        n = len(values)
        held = None
        for start in (0, 1):
            if np.array_equal(values, np.arange(start, start + n)):
                held = f"the row numbers {start}..{start + n - 1}"
        if held is None and position == 0 and _row_labels(values):
            # where pandas writes the index of a frame whose rows were
            # selected or reordered (0, 2, 3, 7, ...)
            held = "distinct whole numbers (row labels)"
        if held is not None:
            df = df.drop(columns=col)
            table.dropped.append(col)
            table.warnings.append(
                f"column {col!r} of {name} has no name and holds {held} (an "
                "index saved with the data): it is left out of the fit"
            )
        else:
            table.warnings.append(
                f"column {col!r} of {name} has no name in the header (it is fitted "
                "as data; leave it out with --columns)"
            )
    if df.shape[1] == 0:
        raise CSVError(f"{name} has no columns besides a saved row index")
    table.frame = df
    return table


def _row_labels(values: np.ndarray) -> bool:
    """Whether the values are distinct whole numbers >= 0, as a saved index."""
    if values.size < 2 or not np.all(np.isfinite(values)):
        return False
    return bool(
        np.all(values >= 0)
        and np.all(values == np.round(values))
        and np.unique(values).size == values.size
    )


def _show(sep: str) -> str:
    return "tab" if sep == "\t" else repr(sep)


def _name_range(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}"


# ------------------------------------------------------------ report directory
#: The file that marks a report directory as written by ``bayes-gmm``.
MANIFEST = ".bayes_gmm_manifest.json"
_MANIFEST_KIND = "bayes-gmm report"


class OutputError(Exception):
    """``--out`` cannot or must not be written (one-line reason)."""


class ReportWriteError(Exception):
    """Moving a finished report into ``--out`` failed part-way (one-line reason)."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_atomic(path: Path, text: str) -> None:
    """Write ``path`` by a temporary file beside it and a rename (mode by umask)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        with _suppress_os():
            os.unlink(tmp)
        raise


class _suppress_os:  # noqa: N801 - used like contextlib.suppress(OSError)
    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is not None and issubclass(kind, OSError)


class ReportDir:
    """``--out`` as the command may write it: only its own files, all or none.

    :meth:`prepare` (before any work) refuses an ``--out`` that is a file,
    that is not empty and has no manifest, whose listed files were changed
    since, or that cannot be written, and creates the staging directory
    beside it; :meth:`commit` moves the finished report in; :meth:`discard`
    removes everything :meth:`prepare` created.

    Parameters
    ----------
    out : path-like
        The report directory.
    protect : sequence of path-like, default=()
        Files that must never be replaced or removed (the input data).
    may_write : callable, optional
        ``may_write(name)`` is true for the names of files a run may write;
        such a file in ``out`` that the manifest does not list is someone
        else's, and ``out`` is refused up front instead of at the end.
    """

    def __init__(
        self,
        out: str | os.PathLike,
        protect: Sequence = (),
        may_write: Callable[[str], bool] | None = None,
    ):
        self.out = Path(os.path.abspath(os.path.expanduser(os.fspath(out))))
        self.protect = [Path(os.path.abspath(os.fspath(p))) for p in protect]
        self.may_write = may_write
        self.staging: Path | None = None
        self._created: list[Path] = []
        self._listed: dict[str, str] = {}

    # -------------------------------------------------------------- inspect
    def _inspect(self) -> dict[str, str] | None:
        """The files ``out`` lists as ours ({} if absent or empty), or None.

        None: ``out`` is a non-empty directory without a manifest. Raises
        OutputError for a file, a damaged manifest or a listed file that was
        changed since it was written.
        """
        out = self.out
        if not os.path.lexists(out):
            return {}
        if not out.is_dir():
            raise OutputError(f"--out {out} exists and is not a directory")
        entries = os.listdir(out)
        if MANIFEST not in entries:
            return {} if not entries else None
        try:
            manifest = json.loads((out / MANIFEST).read_text())
            if manifest.get("kind") != _MANIFEST_KIND:
                raise ValueError("not a bayes-gmm manifest")
            files = dict(manifest["files"])
            pending = dict(manifest.get("pending", {}))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise OutputError(
                f"--out {out} has an unreadable {MANIFEST} ({exc}); choose another "
                "directory"
            ) from None
        listed = {}
        for name in set(files) | set(pending):
            if os.path.basename(name) != name or name in ("", ".", "..", MANIFEST):
                raise OutputError(
                    f"--out {out} has a damaged {MANIFEST} (it lists {name!r}); "
                    "choose another directory"
                )
            path = out / name
            if not os.path.lexists(path):
                continue
            if path.is_symlink() or not path.is_file():
                raise OutputError(self._changed(name, "is no longer a plain file"))
            digest = _sha256(path)
            if digest not in (files.get(name), pending.get(name)):
                raise OutputError(self._changed(name, "was changed"))
            listed[name] = digest
        return listed

    def _changed(self, name: str, what: str) -> str:
        return (
            f"{self.out / name} {what} after bayes-gmm wrote it, and this run would "
            "replace or remove it: move it away, or choose another --out"
        )

    def _foreign(self) -> str:
        legacy = ""
        if (self.out / "summary.json").is_file():
            legacy = " (reports of earlier versions have none: move it away yourself)"
        return (
            f"--out {self.out} is not empty and is not a bayes-gmm report "
            f"directory: it has no {MANIFEST}{legacy}; choose another directory or "
            "empty it"
        )

    def _check_protected(self, names: Iterable[str]) -> None:
        for name in names:
            path = self.out / name
            for p in self.protect:
                same = path == p
                if not same and os.path.exists(path) and os.path.exists(p):
                    same = os.path.samefile(path, p)
                if same:
                    raise OutputError(
                        f"the input {p} is the report file {name} in --out "
                        f"{self.out}, which this run would replace: copy the data "
                        "elsewhere, or choose another --out"
                    )

    # -------------------------------------------------------------- prepare
    def prepare(self) -> Path:
        """Check ``out`` and create the staging directory beside it.

        Returns the staging directory. Raises OutputError when ``out`` must
        not or cannot be written; nothing is left behind then.
        """
        out = self.out
        try:
            listed = self._inspect()
        except OSError as exc:
            raise OutputError(f"cannot read --out {out}: {exc.strerror}") from None
        if listed is None:
            raise OutputError(self._foreign())
        self._check_protected(listed)
        if self.may_write is not None and out.is_dir():
            for name in sorted(os.listdir(out)):
                if name not in listed and self.may_write(name):
                    raise OutputError(
                        f"{out / name} was not written by bayes-gmm (its "
                        f"{MANIFEST} does not list it), and this run may write a "
                        "file of that name: move it away, or choose another --out"
                    )
        self._listed = listed
        try:
            if out.is_dir():
                # moving files in and removing old ones needs write access
                fd, probe = tempfile.mkstemp(prefix=".bayes_gmm-probe-", dir=out)
                os.close(fd)
                os.unlink(probe)
                parent = out.resolve().parent
            else:
                parent = out.parent
                missing = []
                while not os.path.lexists(parent):
                    missing.append(parent)
                    parent = parent.parent
                if not parent.is_dir():
                    raise NotADirectoryError(20, "Not a directory", str(parent))
                for d in reversed(missing):
                    os.mkdir(d)
                    self._created.append(d)
                parent = out.parent
            self.staging = Path(
                tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent)
            )
            os.chmod(self.staging, 0o777 & ~_umask())
        except OSError as exc:
            self.discard()
            reason = exc.strerror or str(exc)
            where = f" ({exc.filename})" if exc.filename else ""
            raise OutputError(f"cannot write --out {out}: {reason}{where}") from None
        return self.staging

    def discard(self) -> None:
        """Remove the staging directory and the parents :meth:`prepare` made."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None
        for d in reversed(self._created):
            with _suppress_os():
                os.rmdir(d)  # only if still empty
        self._created = []

    # --------------------------------------------------------------- commit
    def _manifest_text(self, files: dict[str, str], pending=None) -> str:
        from bayes_gmm import __version__

        body = {
            "kind": _MANIFEST_KIND,
            "written_by": f"bayes-gmm {__version__}",
            "note": "the files bayes-gmm wrote here and may replace; it leaves "
            "every other file alone",
            "files": dict(sorted(files.items())),
        }
        if pending:
            body["pending"] = dict(sorted(pending.items()))
        return json.dumps(body, indent=2) + "\n"

    def commit(self) -> Path | None:
        """Move the staged report into ``out``; replace only our own files.

        Returns None on success. When ``out`` changed during the run so that
        it is no longer safe to write (someone else's files appeared, or a
        listed file was changed), nothing in ``out`` is touched: the staged
        report is moved to a new directory beside it, and OutputError names
        both.
        """
        tmp = self.staging
        assert tmp is not None, "prepare() first"
        new = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        _write_atomic(tmp / MANIFEST, self._manifest_text(new))
        try:
            self._check_protected(new)
            if not os.path.lexists(self.out):
                # Not os.rename(tmp, out): rename(2) silently replaces an
                # empty directory made in the meantime by someone else (who
                # may be about to write into it). mkdir fails if anything is
                # there; the new, empty directory is then filled as below.
                with contextlib.suppress(FileExistsError):
                    os.mkdir(self.out, 0o777)
            listed = self._inspect()
            if listed is None:
                raise OutputError(self._foreign())
            for name in new:
                if os.path.lexists(self.out / name) and name not in listed:
                    raise OutputError(
                        f"{self.out / name} appeared during the run and was not "
                        "written by bayes-gmm"
                    )
        except OutputError as exc:
            kept = self._keep_aside()
            raise OutputError(
                f"{exc}; --out {self.out} was left as it is, and this run's report "
                f"is in {kept}"
            ) from None
        out = self.out
        # Crash-safe order: first list old and new files, then move, then drop.
        try:
            _write_atomic(out / MANIFEST, self._manifest_text(listed, pending=new))
        except OSError as exc:
            kept = self._keep_aside()
            raise OutputError(
                f"cannot write into --out {out} ({exc.strerror}); it was left as it "
                f"is, and this run's report is in {kept}"
            ) from None
        try:
            for name in new:
                os.replace(tmp / name, out / name)
            for name in listed:
                if name not in new:
                    with _suppress_os():
                        os.unlink(out / name)
            os.replace(tmp / MANIFEST, out / MANIFEST)
        except OSError as exc:
            self.staging = None  # keep what was not moved
            self._created = []
            raise ReportWriteError(
                f"moving the report into --out {out} failed part-way ({exc}); its "
                f"{MANIFEST} lists the files of both runs, and what was not moved "
                f"is in {tmp}"
            ) from None
        shutil.rmtree(tmp, ignore_errors=True)
        self.staging = None
        self._created = []
        return None

    def _keep_aside(self) -> Path:
        """Rename the staging directory to a visible new name beside ``out``."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for i in range(1000):
            target = self.out.with_name(
                f"{self.out.name}.bayes-gmm-{stamp}" + (f"-{i}" if i else "")
            )
            if os.path.lexists(target):
                continue
            try:
                os.mkdir(target)
            except FileExistsError:
                continue
            os.rename(self.staging, target)  # onto the empty directory we made
            self.staging = None
            self._created = []
            return target
        raise OutputError(f"cannot find a free name beside {self.out}")
