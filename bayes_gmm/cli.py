"""The ``bayes-gmm`` command.

``bayes-gmm fit DATA.csv`` fits Gaussian mixtures by EM for a grid of
numbers of components and covariance types, prints the table of
log-likelihood, number of parameters, AIC, BIC and ICL with the model each
criterion picks, and writes to ``--out`` (default ``report``):

* ``criteria.csv`` - the table,
* ``summary.json`` - settings, picks, the BIC-chosen model's parameters,
* ``clusters.png`` - the data with the chosen model's 1/2/3-sigma ellipses
  (``density.png`` for one-column data, and ``pairs.png`` beyond two),
* ``criteria.png`` - AIC, BIC and ICL against K per covariance type,
* ``covariance_types.png`` - the best model of each type side by side,
* ``index.html`` - a self-contained report with the above.

``bayes-gmm demo`` does the same on the bundled Old Faithful data.

Everything is written to a temporary directory next to ``--out`` and moved
into place only when complete. Bad input gives one line on stderr starting
with ``error:`` and exit status 2; an unexpected failure exits with 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_gmm._covariance import COVARIANCE_TYPES
from bayes_gmm._validation import BayesGMMWarning
from bayes_gmm.selection import EM_CRITERIA, fit_em_grid, parse_components

__all__ = ["main"]

logger = logging.getLogger("bayes_gmm")

#: Marker in summary.json that identifies a directory this command wrote,
#: the only kind of existing directory ``--out`` may replace.
_MARKER = "bayes_gmm_report"

_DEFAULT_TYPES = "full,tied,diag,spherical"


class InputError(Exception):
    """Bad input: reported as one ``error:`` line and exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line ``error:`` messages and exit status 2."""

    def error(self, message):
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


# ------------------------------------------------------------------ arguments
def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bayes-gmm",
        description=(
            "Gaussian mixtures by EM across numbers of components and "
            "covariance types: criteria table, picks, figures and a report."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="{fit,demo}", required=True)

    def common(p):
        p.add_argument(
            "--components",
            default="1-6",
            metavar="SPEC",
            help="numbers of components: a range '1-6', a list '1,2,5' or both "
            "(default: 1-6)",
        )
        p.add_argument(
            "--covariance",
            default=_DEFAULT_TYPES,
            metavar="TYPES",
            help=f"comma-separated covariance types among {sorted(COVARIANCE_TYPES)} "
            f"(default: {_DEFAULT_TYPES})",
        )
        p.add_argument(
            "--n-init",
            type=int,
            default=10,
            metavar="N",
            help="EM starts per model, the best is kept (default: 10)",
        )
        p.add_argument(
            "--seed",
            type=int,
            default=0,
            metavar="S",
            help="random seed; every model's own seed is in criteria.csv (default: 0)",
        )
        p.add_argument(
            "--standardize",
            action="store_true",
            help="centre and scale every column to unit standard deviation before "
            "fitting (off by default: nothing is standardised silently)",
        )
        p.add_argument(
            "--out",
            default="report",
            metavar="DIR",
            help="output directory, replaced only when the run succeeds "
            "(default: report)",
        )
        p.add_argument(
            "--threads",
            type=int,
            default=1,
            metavar="N",
            help="BLAS/OpenMP threads during the fits (default: 1, fastest for "
            "small data on a busy machine)",
        )
        p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
        p.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            help="log EM progress, and show the traceback of unexpected failures",
        )

    fit = sub.add_parser(
        "fit",
        help="fit a CSV file",
        description="Fit Gaussian mixtures by EM to the numeric columns of a CSV file.",
    )
    fit.add_argument("data", metavar="DATA.csv", help="CSV file with a header row")
    fit.add_argument(
        "--columns",
        metavar="A,B",
        help="comma-separated columns to use (default: all; every one must be numeric)",
    )
    common(fit)
    demo = sub.add_parser(
        "demo",
        help="run on the bundled Old Faithful data",
        description="Fit Gaussian mixtures by EM to the bundled Old Faithful data "
        "(272 eruptions: eruption time and waiting time, in minutes).",
    )
    common(demo)
    return parser


# ----------------------------------------------------------------------- data
def _read_csv(path: str) -> pd.DataFrame:
    p = Path(path)
    if not p.exists():
        raise InputError(f"file not found: {path}")
    if p.is_dir():
        raise InputError(f"{path} is a directory, not a CSV file")
    try:
        df = pd.read_csv(p)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputError(f"cannot read {path} as CSV: {first}") from None
    if df.shape[1] == 0 or df.shape[0] == 0:
        raise InputError(f"{path} has no data rows")
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _select_columns(df: pd.DataFrame, spec: str | None, source: str) -> pd.DataFrame:
    if spec is not None:
        wanted = [c.strip() for c in spec.split(",") if c.strip()]
        if not wanted:
            raise InputError("--columns is empty: name at least one column")
        unknown = [c for c in wanted if c not in df.columns]
        if unknown:
            raise InputError(
                f"unknown column(s) {unknown} in {source}; its columns are "
                f"{list(df.columns)}"
            )
        if len(set(wanted)) != len(wanted):
            raise InputError(f"--columns names a column twice: {wanted}")
        df = df[wanted]
    non_numeric = [c for c in df.columns if df[c].dtype.kind not in "biuf"]
    if non_numeric:
        examples = []
        for c in non_numeric:
            bad = pd.to_numeric(df[c], errors="coerce").isna() & df[c].notna()
            if bad.any():
                examples.append(
                    f"{c!r} (e.g. {df[c][bad].iloc[0]!r} at line "
                    f"{int(np.flatnonzero(bad)[0]) + 2})"
                )
            else:
                examples.append(repr(c))
        hint = "" if spec is not None else "; choose numeric ones with --columns"
        raise InputError(
            f"non-numeric column(s) in {source}: {', '.join(examples)}{hint}"
        )
    return df.astype(float)


def _check_finite(df: pd.DataFrame, source: str) -> None:
    bad = ~np.isfinite(df.to_numpy())
    if not bad.any():
        return
    rows = np.flatnonzero(bad.any(axis=1))
    row = int(rows[0])
    col = df.columns[int(np.flatnonzero(bad[row])[0])]
    value = df.iloc[row][col]
    what = "a missing value (NaN)" if np.isnan(value) else "an infinite value"
    raise InputError(
        f"{source}: column {col!r} has {what} at data row {row} (line {row + 2} "
        f"of the file); {len(rows)} row(s) have missing or infinite values. Drop "
        "or impute them first."
    )


def _standardize(df: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    center = df.mean()
    scale = df.std(ddof=0)
    constant = [c for c in df.columns if not scale[c] > 0]
    if constant:
        raise InputError(
            f"cannot standardise constant column(s) {constant}; drop them with "
            "--columns"
        )
    info = {
        "center": {c: float(v) for c, v in center.items()},
        "scale": {c: float(v) for c, v in scale.items()},
    }
    return (df - center) / scale, info


def _load(args) -> tuple[pd.DataFrame, str]:
    if args.command == "demo":
        from bayes_gmm.datasets import load_faithful

        return load_faithful().astype(float), "Old Faithful (bundled, load_faithful)"
    df = _read_csv(args.data)
    df = _select_columns(df, args.columns, args.data)
    _check_finite(df, args.data)
    return df, args.data


def _settings(args, n_samples: int) -> dict:
    try:
        ks = parse_components(args.components)
    except ValueError as exc:
        raise InputError(f"bad --components: {exc}") from None
    types = [t.strip() for t in args.covariance.split(",") if t.strip()]
    unknown = [t for t in types if t not in COVARIANCE_TYPES]
    if unknown or not types:
        raise InputError(
            f"bad --covariance {args.covariance!r}: valid types are "
            f"{sorted(COVARIANCE_TYPES)}"
        )
    types = list(dict.fromkeys(types))
    if args.n_init < 1:
        raise InputError(f"--n-init must be >= 1, got {args.n_init}")
    if args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    if n_samples < 2:
        raise InputError(f"the data have {n_samples} row(s); at least 2 are needed")
    if max(ks) > n_samples:
        raise InputError(
            f"the data have {n_samples} rows, fewer than the {max(ks)} components "
            "asked for; lower --components"
        )
    return {
        "n_components": ks,
        "covariance_types": types,
        "n_init": args.n_init,
        "seed": args.seed,
        "standardize": bool(args.standardize),
    }


# --------------------------------------------------------------------- output
def _check_out(out: Path) -> None:
    """Refuse an --out that is a file or a directory we did not write."""
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory")
    if not any(out.iterdir()):
        return
    summary = out / "summary.json"
    ok = False
    if summary.is_file():
        try:
            ok = _MARKER in json.loads(summary.read_text())
        except (OSError, ValueError):
            ok = False
    if not ok:
        raise InputError(
            f"--out {out} exists and is not a bayes-gmm report directory; choose "
            "another directory or remove it"
        )


@contextlib.contextmanager
def _staging_dir(out: Path):
    """A temporary directory next to ``out``, moved into place on success.

    On failure the temporary directory is removed and ``out`` is untouched;
    an existing ``out`` is replaced only after the new one is complete.
    """
    parent = out.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
        os.rmdir(old)
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _format_table(table: pd.DataFrame, picks: dict) -> str:
    """Plain-text table; ``*`` marks the value of the model a criterion picks."""
    header = ["covariance", "K", "log-lik", "n_par", "AIC", "BIC", "ICL"]
    lines = []
    for _, row in table.iterrows():
        key = (row["covariance_type"], int(row["n_components"]))
        cells = [str(row["covariance_type"]), str(key[1])]
        cells.append(_num(row["log_likelihood"]))
        cells.append(
            "-" if pd.isna(row["n_parameters"]) else str(int(row["n_parameters"]))
        )
        for crit in EM_CRITERIA:
            mark = "*" if picks.get(crit) == key else " "
            cells.append(_num(row[crit]) + mark)
        if row["error"] is not None and not pd.isna(row["error"]):
            cells.append("failed (see below)")
        elif not row["converged"]:
            cells.append("not converged")
        else:
            cells.append("")
        lines.append(cells)
    header = header + [""]
    header[4:7] = [h + " " for h in header[4:7]]
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]

    def fmt(cells):
        out = [cells[0].ljust(widths[0])]
        out += [c.rjust(w) for c, w in zip(cells[1:-1], widths[1:-1], strict=True)]
        out.append(cells[-1])
        return "  ".join(out).rstrip()

    body = [fmt(header)] + [fmt(c) for c in lines]
    return "\n".join(body) + "\n* the model each criterion picks (lowest value)"


def _num(value) -> str:
    return "-" if pd.isna(value) else f"{value:.2f}"


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    return value


def _summary(args, source, df, settings, std_info, grid, picks, files, timing):
    from bayes_gmm import __version__

    table = grid.table
    pick_info = {}
    for crit, (ctype, k) in picks.items():
        row = table[(table["covariance_type"] == ctype) & (table["n_components"] == k)]
        pick_info[crit] = {
            "covariance_type": ctype,
            "n_components": k,
            "value": float(row[crit].iloc[0]),
        }
    chosen = grid.fits[picks["bic"]]
    rows = table.astype(object).where(table.notna(), None).to_dict(orient="records")
    return _jsonable(
        {
            _MARKER: True,
            "bayes_gmm_version": __version__,
            "command": args.command,
            "data": {
                "source": source,
                "n_samples": int(df.shape[0]),
                "columns": list(df.columns),
                "standardized": bool(args.standardize),
                **(std_info or {}),
            },
            "settings": settings,
            "picks": pick_info,
            "chosen_by_bic": {
                "covariance_type": chosen.covariance_type,
                "n_components": int(chosen.n_components),
                "weights": chosen.weights_,
                "means": chosen.means_,
                "covariances": chosen.covariances_,
                "converged": chosen.converged_,
                "n_iter": chosen.n_iter_,
            },
            "failed": [
                {
                    "covariance_type": r["covariance_type"],
                    "n_components": r["n_components"],
                    "error": r["error"],
                }
                for r in rows
                if r["error"] is not None
            ],
            "table": rows,
            "files": files,
            "timing_seconds": timing,
        }
    )


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)


def _write_figures(tmp: Path, df: pd.DataFrame, grid, picks, units: str) -> dict:
    """Draw every figure into ``tmp``; return name -> file name."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window
    from bayes_gmm import plots

    files = {}
    ctype, k = picks["bic"]
    chosen = grid.fits[(ctype, k)]
    title = f"BIC choice: {ctype}, K={k}{units}"
    d = df.shape[1]
    if d >= 2:
        ax = plots.plot_clusters(chosen, df)
        ax.set_title(
            title + "\nellipses: 1, 2, 3 sd; marker size: assignment certainty"
        )
        _save(ax.figure, tmp / "clusters.png")
        files["clusters"] = "clusters.png"
    else:
        ax = plots.plot_density(chosen, df)
        ax.set_title(title)
        _save(ax.figure, tmp / "density.png")
        files["density"] = "density.png"
    if d > 2:
        axes = plots.plot_pairs(chosen, df)
        axes[0, 0].figure.suptitle(title)
        _save(axes[0, 0].figure, tmp / "pairs.png")
        files["pairs"] = "pairs.png"
    axes = plots.plot_criteria(grid.table)
    axes[0].figure.suptitle(f"Information criteria{units}")
    _save(axes[0].figure, tmp / "criteria.png")
    files["criteria"] = "criteria.png"
    if d >= 2 and grid.table["covariance_type"].nunique() > 1:
        axes = plots.plot_covariance_types(df, grid)
        _save(axes[0].figure, tmp / "covariance_types.png")
        files["covariance_types"] = "covariance_types.png"
    return files


# ----------------------------------------------------------------------- main
def _run(args, out_stream, err_stream) -> int:
    t_start = time.perf_counter()
    out = Path(os.path.abspath(os.path.expanduser(args.out)))
    _check_out(out)
    df, source = _load(args)
    settings = _settings(args, df.shape[0])
    std_info = None
    if args.standardize:
        df, std_info = _standardize(df)
    units = " (standardised data)" if args.standardize else ""

    def progress(done, total, ctype, k, row):
        if args.quiet:
            return
        what = "failed" if row["error"] else f"BIC {row['bic']:.2f}"
        err_stream.write(
            f"[{done:>{len(str(total))}}/{total}] {ctype:<9} K={k:<2} {what} "
            f"({row['fit_time']:.2f} s)\n"
        )
        err_stream.flush()

    from threadpoolctl import threadpool_limits

    t_fit = time.perf_counter()
    with threadpool_limits(limits=args.threads):
        try:
            grid = fit_em_grid(
                df,
                settings["n_components"],
                settings["covariance_types"],
                n_init=args.n_init,
                random_state=args.seed,
                progress=progress,
            )
        except ValueError as exc:  # every model failed: the data cannot be fitted
            raise InputError(str(exc)) from None
    fit_seconds = time.perf_counter() - t_fit
    picks = grid.picks()

    print(
        f"Data: {source}, {df.shape[0]} rows, columns {list(df.columns)}",
        file=out_stream,
    )
    if args.standardize:
        print(
            "Standardised: every column was centred on its mean and divided by its "
            "standard deviation; parameters, criteria and figures are in those units.",
            file=out_stream,
        )
    else:
        print(
            "Not standardised: the columns are used in their own units "
            "(--standardize to change).",
            file=out_stream,
        )
    print(
        f"EM, n_init={args.n_init}, seed={args.seed}: "
        f"{len(grid.table)} models in {fit_seconds:.1f} s "
        "(lower criteria are better)\n",
        file=out_stream,
    )
    print(_format_table(grid.table, picks), file=out_stream)
    print("", file=out_stream)
    for crit, (ctype, k) in picks.items():
        value = grid.table.loc[
            (grid.table["covariance_type"] == ctype)
            & (grid.table["n_components"] == k),
            crit,
        ].iloc[0]
        print(
            f"{crit.upper()} picks {ctype}, K={k} ({crit.upper()} = {value:.2f})",
            file=out_stream,
        )
    for _, row in grid.failed.iterrows():
        print(
            f"failed: {row['covariance_type']} K={row['n_components']}: {row['error']}",
            file=out_stream,
        )

    with _staging_dir(out) as tmp:
        grid.table.to_csv(tmp / "criteria.csv", index=False)
        files = {"criteria_table": "criteria.csv"}
        files.update(_write_figures(tmp, df, grid, picks, units))
        files["summary"] = "summary.json"
        from bayes_gmm import report

        files["report"] = "index.html"
        timing = {
            "em_grid": fit_seconds,
            "total": time.perf_counter() - t_start,
        }
        summary = _summary(
            args, source, df, settings, std_info, grid, picks, files, timing
        )
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        report.write_report(tmp, summary, grid.table)

    print(f"\nWrote {out}/: " + ", ".join(sorted(set(files.values()))), file=out_stream)
    for name in ("clusters", "density", "pairs", "criteria", "covariance_types"):
        if name in files:
            print(f"  figure: {out / files[name]}", file=out_stream)
    print(f"  report: {out / 'index.html'}", file=out_stream)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bayes-gmm`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 2 for bad input, 1 for an unexpected
        failure (nothing is left in ``--out`` in either failing case).
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    if args.verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings():
            # Failed and unconverged models are flagged in the printed table.
            if not args.verbose:
                warnings.simplefilter("ignore", BayesGMMWarning)
            return _run(args, sys.stdout, sys.stderr)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the command's last line of defence
        if args.verbose:
            traceback.print_exc()
        print(
            f"error: unexpected failure ({type(exc).__name__}: {exc}); nothing was "
            f"written to {args.out}. Run with --verbose for the traceback.",
            file=sys.stderr,
        )
        return 1
    finally:
        if args.verbose:
            logger.removeHandler(handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
