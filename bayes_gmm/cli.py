"""The ``bayes-gmm`` command.

``bayes-gmm fit DATA.csv`` answers the questions a user brings to a
mixture model - how many components, which covariance type, how sure can I
be - for the numeric columns of a CSV file:

1. EM for every (covariance type, K) of the grid: log-likelihood, number of
   parameters, AIC, BIC, ICL and each criterion's pick;
2. the Bayesian methods asked for (NUTS, ADVI) for the *leading candidates*
   only - the best few models by EM BIC (``--candidates``, default NUTS for
   the best 2 and ADVI for the best 3), because a Bayesian fit costs
   seconds to minutes where EM costs milliseconds - with LOO and WAIC for
   each, and a verdict
   on whether BIC and LOO agree;
3. for the BIC-chosen model: EM standard errors (bootstrap), posterior
   means, sds and intervals of every method side by side, and a diagnosis
   of every fit.

It prints the data summary, the criteria table and the picks, and writes
to ``--out`` (default ``report``):

* ``index.html`` - a self-contained report (figures embedded),
* ``criteria.csv`` - the selection table (EM criteria, and elpd columns for
  the candidates fitted by Bayesian methods),
* ``parameters.csv`` - the chosen model's parameters by every method,
* ``posterior_<method>_<type>_K<k>.nc`` - every Bayesian fit
  (:meth:`bayes_gmm.result.MixtureResult.to_netcdf`; load it back with
  ``MixtureResult.from_netcdf``),
* ``summary.json`` - settings, picks, verdict, the chosen model, timings,
* the figures as PNG files.

``bayes-gmm demo`` does the same on the bundled Old Faithful data.

The CSV file's field separator and decimal mark are detected (``--sep`` and
``--decimal`` to give them); a file that reads as one column of joined
numbers is refused, and a saved row index or a missing header row is named
in a ``warning:`` line, not fitted as data.

Nothing is lost: ``--out`` is written only if it is missing, empty or a
report directory of this command, marked by ``.bayes_gmm_manifest.json``
(the files it wrote, with their SHA-256); only the files listed there are
replaced or removed, any other file in it (the input data, notes) is left
alone, and a listed file changed since is not overwritten. Whether
``--out`` may and can be written is checked before any fitting. Everything
is written to a temporary directory next to ``--out`` and moved into place
only when complete; if ``--out`` changed during the run so that it is no
longer safe to write, the new report is left beside it instead.

Exit status: 0 on success; 2 for bad input or an ``--out`` that must not or
cannot be written; 1 for an unexpected failure; 130 when interrupted
(Ctrl-C), with the previous report as it was. Every failure is one line on
stderr starting with ``error:``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayes_gmm._covariance import COVARIANCE_TYPES
from bayes_gmm._io import (
    CSVError,
    CSVTable,
    OutputError,
    ReportDir,
    ReportWriteError,
    parse_sep,
    read_data_csv,
)
from bayes_gmm._validation import BayesGMMWarning
from bayes_gmm.selection import EM_CRITERIA, fit_em_grid, parse_components

__all__ = ["main"]

logger = logging.getLogger("bayes_gmm")

#: Marker in summary.json (the directory itself is marked by the manifest of
#: bayes_gmm._io.ReportDir).
_MARKER = "bayes_gmm_report"
#: Files a run may write into --out (with posterior_*.nc): such a file there
#: that the manifest does not list is someone else's, and --out is refused.
_REPORT_FILES = frozenset(
    {"index.html", "summary.json", "criteria.csv", "parameters.csv"}
    | {
        f"{name}.png"
        for name in (
            "clusters",
            "pairs",
            "criteria",
            "covariance_types",
            "density",
            "posterior_ellipses",
            "uncertainty",
            "comparison",
        )
    }
)

_DEFAULT_TYPES = "full,tied,diag,spherical"
#: Inference methods the command knows (EM plus those of GaussianMixtureBayes).
_METHODS = ("em", "nuts", "advi", "fullrank_advi")
_DEFAULT_METHODS = "em,nuts,advi"
# Defaults chosen so that `make demo` stays well within 10 minutes on a 2-core
# machine with nothing cached: a NUTS fit compiles nothing (bayes_gmm._kernel;
# seconds per model), ADVI compiles and optimises (20-40 s each).
_DEFAULT_CANDIDATES = "nuts=2,advi=3"
_DEFAULT_DRAWS = 500
_DEFAULT_TUNE = 500
_DEFAULT_CHAINS = 4
_DEFAULT_N_BOOT = 200
_DEFAULT_BAYES_MAX_SAMPLES = 20_000
_PLOT_MAX_POINTS = 20_000
_DEFAULT_CI_PROB = 0.94


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
            "covariance types, and by NUTS and ADVI for the leading candidates: "
            "criteria table, picks, BIC vs LOO, EM vs posterior, diagnostics, "
            "figures and a self-contained HTML report."
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
            "--methods",
            default=_DEFAULT_METHODS,
            metavar="LIST",
            help="comma-separated inference methods among "
            f"{list(_METHODS)}; EM is always fitted, it ranks the candidates "
            f"(default: {_DEFAULT_METHODS})",
        )
        p.add_argument(
            "--candidates",
            default=_DEFAULT_CANDIDATES,
            metavar="SPEC",
            help="how many of the best models by EM BIC each Bayesian method "
            "fits: one number for all, or per method as 'nuts=2,advi=3' "
            f"(default: {_DEFAULT_CANDIDATES})",
        )
        p.add_argument(
            "--draws",
            type=int,
            default=_DEFAULT_DRAWS,
            metavar="N",
            help="posterior draws per chain (ADVI: draws of the approximation) "
            f"(default: {_DEFAULT_DRAWS})",
        )
        p.add_argument(
            "--tune",
            type=int,
            default=_DEFAULT_TUNE,
            metavar="N",
            help="NUTS warm-up iterations per chain, at least 1 "
            f"(default: {_DEFAULT_TUNE})",
        )
        p.add_argument(
            "--chains",
            type=int,
            default=_DEFAULT_CHAINS,
            metavar="N",
            help=f"NUTS chains (default: {_DEFAULT_CHAINS})",
        )
        p.add_argument(
            "--bayes-max-samples",
            type=int,
            default=_DEFAULT_BAYES_MAX_SAMPLES,
            metavar="N",
            help="the Bayesian fits use a random subsample of N rows when the "
            "data have more (the same rows for every fit; EM uses all rows); "
            f"0 for all rows (default: {_DEFAULT_BAYES_MAX_SAMPLES})",
        )
        p.add_argument(
            "--n-boot",
            type=int,
            default=_DEFAULT_N_BOOT,
            metavar="N",
            help="bootstrap replicates for the EM standard errors of the chosen "
            f"model; 0 for none (default: {_DEFAULT_N_BOOT})",
        )
        p.add_argument(
            "--ci-prob",
            type=float,
            default=_DEFAULT_CI_PROB,
            metavar="P",
            help="probability of the credible intervals and bands "
            f"(default: {_DEFAULT_CI_PROB})",
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
            help="output directory: written only if missing, empty or a report "
            "of this command, when the run succeeds; only the files it wrote "
            "before are replaced, others are left alone (default: report)",
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
        description="Fit Gaussian mixtures by EM (and NUTS/ADVI for the leading "
        "candidates) to the numeric columns of a CSV file.",
    )
    fit.add_argument("data", metavar="DATA.csv", help="CSV file with a header row")
    fit.add_argument(
        "--columns",
        metavar="A,B",
        help="comma-separated columns to use (default: all; every one must be numeric)",
    )
    fit.add_argument(
        "--sep",
        metavar="CHAR",
        help="field separator of DATA.csv: one character, or 'tab' (default: "
        "detected among ',' tab ';' '|')",
    )
    fit.add_argument(
        "--decimal",
        choices=[".", ","],
        help="decimal mark of DATA.csv (default: detected; ',' only in a file "
        "not separated by commas)",
    )
    common(fit)
    demo = sub.add_parser(
        "demo",
        help="run on the bundled Old Faithful data",
        description="Fit Gaussian mixtures by EM, NUTS and ADVI to the bundled Old "
        "Faithful data "
        "(272 eruptions: eruption time and waiting time, in minutes).",
    )
    common(demo)
    return parser


# ----------------------------------------------------------------------- data
def _select_columns(
    df: pd.DataFrame, spec: str | None, source: str, first_line: int = 2
) -> pd.DataFrame:
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
                    f"{int(np.flatnonzero(bad)[0]) + first_line})"
                )
            else:
                examples.append(repr(c))
        hint = "" if spec is not None else "; choose numeric ones with --columns"
        raise InputError(
            f"non-numeric column(s) in {source}: {', '.join(examples)}{hint}"
        )
    return df.astype(float)


def _check_finite(df: pd.DataFrame, source: str, first_line: int = 2) -> None:
    bad = ~np.isfinite(df.to_numpy())
    if not bad.any():
        return
    rows = np.flatnonzero(bad.any(axis=1))
    row = int(rows[0])
    col = df.columns[int(np.flatnonzero(bad[row])[0])]
    value = df.iloc[row][col]
    what = "a missing value (NaN)" if np.isnan(value) else "an infinite value"
    raise InputError(
        f"{source}: column {col!r} has {what} at data row {row} "
        f"(line {row + first_line} "
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


def _wanted_columns(spec: str | None) -> list[str]:
    return [c.strip() for c in (spec or "").split(",") if c.strip()]


def _load(args) -> tuple[pd.DataFrame, str, CSVTable | None]:
    """The data, their description and (for a file) how it was read."""
    if args.command == "demo":
        from bayes_gmm.datasets import load_faithful

        data = load_faithful().astype(float)
        return data, "Old Faithful (bundled, load_faithful)", None
    try:
        table = read_data_csv(
            args.data,
            sep=parse_sep(args.sep),
            decimal=args.decimal,
            keep=_wanted_columns(args.columns),
        )
    except CSVError as exc:
        raise InputError(str(exc)) from None
    first = table.first_line()
    df = _select_columns(table.frame, args.columns, args.data, first)
    _check_finite(df, args.data, first)
    return df, args.data, table


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
    methods = _parse_methods(args.methods)
    candidates = _parse_candidates(args.candidates, methods)
    for name, minimum in (
        ("n_init", 1),
        ("draws", 1),
        ("tune", 1),  # nutpie panics (a Rust PanicException) with tune=0
        ("chains", 1),
        ("n_boot", 0),
        ("bayes_max_samples", 0),
    ):
        value = getattr(args, name)
        if value < minimum:
            flag = "--" + name.replace("_", "-")
            raise InputError(f"{flag} must be >= {minimum}, got {value}")
    if not 0 < args.ci_prob < 1:
        raise InputError(f"--ci-prob must be between 0 and 1, got {args.ci_prob}")
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
        "methods": methods,
        "candidates": candidates,
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "n_boot": args.n_boot,
        "ci_prob": args.ci_prob,
        "bayes_max_samples": args.bayes_max_samples or None,
    }


def _parse_methods(spec: str) -> list[str]:
    """The inference methods asked for, EM first (always fitted)."""
    names = [m.strip().lower() for m in spec.split(",") if m.strip()]
    unknown = [m for m in names if m not in _METHODS]
    if unknown or not names:
        raise InputError(f"bad --methods {spec!r}: valid methods are {list(_METHODS)}")
    return ["em"] + [m for m in dict.fromkeys(names) if m != "em"]


def _parse_candidates(spec: str, methods: Sequence[str]) -> dict[str, int]:
    """Number of leading models per Bayesian method: '3' or 'nuts=2,advi=3'."""
    bayes = [m for m in methods if m != "em"]
    text = spec.strip()
    try:
        if "=" not in text:
            n = int(text)
            out = dict.fromkeys(bayes, n)
        else:
            out = {}
            for part in text.split(","):
                name, _, value = part.partition("=")
                name = name.strip().lower()
                if name not in _METHODS or name == "em":
                    raise InputError(
                        f"bad --candidates {spec!r}: {name!r} is not a Bayesian "
                        f"method; valid: {[m for m in _METHODS if m != 'em']}"
                    )
                out[name] = int(value)
            # methods asked for but not named get the largest count given
            default = max(out.values())
            out = {m: out.get(m, default) for m in bayes}
    except ValueError:
        raise InputError(
            f"bad --candidates {spec!r}: expected a number or "
            "'method=number,...' such as 'nuts=2,advi=3'"
        ) from None
    negative = {m: n for m, n in out.items() if n < 0}
    if negative:
        raise InputError(f"bad --candidates {spec!r}: counts must be >= 0")
    return out


# --------------------------------------------------------------------- output
def _may_write(name: str) -> bool:
    """Whether a run may write a file of this name into --out."""
    return name in _REPORT_FILES or bool(re.fullmatch(r"posterior_.+\.nc.*", name))


class _Interrupts:
    """Ctrl-C for the command, also where a library swallows it.

    nutpie and PyMC's ADVI catch the KeyboardInterrupt that SIGINT raises
    and return a partial result; the handler counts every SIGINT, so that
    :meth:`check` (called between fits) stops the run all the same. Inside
    :meth:`deferred` a SIGINT is only counted: moving the finished report
    into place, and cleaning up after a failure, are not cut short.
    """

    def __init__(self):
        self.count = 0
        self._defer = False
        self._previous = None

    def __enter__(self):
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        return False

    def _handle(self, signum, frame):
        self.count += 1
        if not self._defer:
            raise KeyboardInterrupt

    def check(self) -> None:
        """Raise KeyboardInterrupt if a SIGINT came (even if it was swallowed)."""
        if self.count:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self):
        before, self._defer = self._defer, True
        try:
            yield
        finally:
            self._defer = before


# ------------------------------------------------------------- bayesian fits
@dataclass
class _BayesFit:
    """One Bayesian fit of a candidate model (or the error that stopped it)."""

    method: str
    covariance_type: str
    n_components: int
    random_state: int
    fit: Any = None
    error: str | None = None
    seconds: float = float("nan")
    inference: dict = field(default_factory=dict)
    save_error: str | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.covariance_type, self.n_components)

    @property
    def label(self) -> str:
        return f"{self.method} {self.covariance_type} K={self.n_components}"

    @property
    def filename(self) -> str:
        return f"posterior_{self.method}_{self.covariance_type}_K{self.n_components}.nc"


def _fit_bayesian(df, grid, settings, plan, say, progressbar, check=None):
    """Fit every (method, candidate) of ``plan`` and compare all models.

    One call of :func:`~bayes_gmm.compare_models` on the EM grid already
    fitted, with ``plan`` as its candidates: the table, the picks and the
    verdict are those of ``compare_models`` (the Bayesian columns are NaN
    for the models not fitted), and a fit that fails is recorded in its row
    while the others go on. Returns the comparison and the list of
    Bayesian fits, in fitting order. ``progressbar`` shows the samplers'
    own progress bars. ``check()`` is called after every fit (it raises
    KeyboardInterrupt after a Ctrl-C that the sampler swallowed).
    """
    from bayes_gmm.selection import compare_models

    fits: list[_BayesFit] = []
    total = sum(len(models) for models in plan.values())

    def tag(method, ctype, k):
        return f"[{method} {len(fits) + 1}/{total}] {ctype:<9} K={k:<2}"

    def report(event, method, ctype, k, info):
        if event == "start":
            say(f"{tag(method, ctype, k)} fitting ...")
            return
        item = _BayesFit(method, ctype, k, info["random_state"])
        item.seconds = info["seconds"]
        est = info["estimator"]
        if est is None:
            item.error = str(info["row"][f"{method}_error"]).strip().splitlines()[0]
            say(
                f"{tag(method, ctype, k)} failed after {item.seconds:.1f} s: "
                f"{item.error}"
            )
        else:
            item.fit = est
            try:
                item.inference = json.loads(est.result_.attrs.get("inference", "{}"))
            except ValueError:
                item.inference = {}
            say(
                f"{tag(method, ctype, k)} done in {item.seconds:.1f} s"
                f"{_time_detail(item.inference)}"
            )
        fits.append(item)
        if check is not None:
            check()

    comparison = compare_models(
        df,
        methods=("em", *plan),
        em_grid=grid,
        candidates=plan,
        draws=settings["draws"],
        tune=settings["tune"],
        chains=settings["chains"],
        random_state=settings["seed"],
        progressbar=False,
        bayes_kwargs={"progressbar": progressbar},
        bayes_max_samples=settings["bayes_max_samples"],
        callback=report,
    )
    return comparison, fits


def _time_detail(inference: dict) -> str:
    """Where a Bayesian fit's time went, e.g. ' (compile 61.0 s, sampling 9.8 s)'."""
    from bayes_gmm.report import time_detail

    detail = time_detail(inference)
    return f" ({', '.join(detail)})" if detail else ""


def _method_column(method: str, name: str) -> str:
    """Column of the selection table holding ``name`` for one Bayesian method."""
    return f"{method}_{name}"


def _model(key: tuple[str, int]) -> str:
    return f"{key[0]}, K={key[1]}"


# ------------------------------------------------------- the chosen model
def _chosen_analysis(df, grid, chosen, fits, settings, say) -> dict:
    """EM bootstrap, parameter comparison and diagnoses of the chosen model."""
    from bayes_gmm.comparison import compare_fits
    from bayes_gmm.diagnostics import diagnose

    em = grid.fits[chosen]
    bayes = [f for f in fits if f.key == chosen and f.fit is not None]
    out: dict[str, Any] = {"em": em, "bayes": bayes, "bootstrap": None}
    if settings["n_boot"] > 0:
        from bayes_gmm.uncertainty import bootstrap_em

        say(f"[bootstrap] {_model(chosen)}: {settings['n_boot']} EM replicates ...")
        t0 = time.perf_counter()
        out["bootstrap"] = bootstrap_em(
            em, df, n_boot=settings["n_boot"], random_state=settings["seed"]
        )
        say(f"[bootstrap] done in {time.perf_counter() - t0:.1f} s")
    em_side = out["bootstrap"] if out["bootstrap"] is not None else em
    out["comparison"] = compare_fits(
        em_side,
        *[f.fit for f in bayes],
        ci_prob=settings["ci_prob"],
        random_state=settings["seed"],
    )
    diagnoses = {f"em {chosen[0]} K={chosen[1]}": diagnose(em, df)}
    if out["bootstrap"] is not None:
        diagnoses[f"bootstrap {chosen[0]} K={chosen[1]}"] = diagnose(out["bootstrap"])
    for item in fits:
        if item.fit is not None:
            diagnoses[item.label] = diagnose(item.fit)
    out["diagnoses"] = diagnoses
    return out


# --------------------------------------------------------------------- output
def _format_table(table: pd.DataFrame, picks: dict) -> str:
    """Plain-text EM table; ``*`` marks the value of the model a criterion picks."""
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
    return _columns(header + [""], lines) + (
        "\n* the model each criterion picks (lowest value)"
    )


def _columns(header, lines) -> str:
    """Left-align the first and last column, right-align the others."""
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]

    def fmt(cells):
        out = [cells[0].ljust(widths[0])]
        out += [c.rjust(w) for c, w in zip(cells[1:-1], widths[1:-1], strict=True)]
        out.append(cells[-1])
        return "  ".join(out).rstrip()

    return "\n".join([fmt(header)] + [fmt(c) for c in lines])


def _format_bayes_table(table: pd.DataFrame, fits: Sequence[_BayesFit]) -> str:
    """Plain-text table of the candidates: BIC and elpd_loo +- se per method."""
    methods = list(dict.fromkeys(f.method for f in fits))
    keys = list(dict.fromkeys(f.key for f in fits))
    header = ["covariance", "K", "BIC"] + [f"elpd_loo {m}" for m in methods] + [""]
    lines = []
    for ctype, k in keys:
        row = table[
            (table["covariance_type"] == ctype) & (table["n_components"] == k)
        ].iloc[0]
        cells = [ctype, str(k), _num(row["bic"])]
        for m in methods:
            value = row.get(_method_column(m, "elpd_loo"), np.nan)
            se = row.get(_method_column(m, "elpd_loo_se"), np.nan)
            err = row.get(_method_column(m, "error"))
            if isinstance(err, str):
                cells.append("failed")
            elif pd.isna(value):
                cells.append("-")
            else:
                cells.append(f"{value:.2f} \u00b1 {se:.2f}")
        cells.append("")
        lines.append(cells)
    return _columns(header, lines) + "\n(elpd: higher is better; BIC: lower)"


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
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _records(table: pd.DataFrame) -> list[dict]:
    return table.astype(object).where(table.notna(), None).to_dict(orient="records")


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)


def _preferred_bayes(bayes: Sequence[_BayesFit]):
    """The Bayesian fit shown in the figures: NUTS if there is one."""
    order = {m: i for i, m in enumerate(("nuts", "fullrank_advi", "advi"))}
    ranked = sorted(bayes, key=lambda f: order.get(f.method, len(order)))
    return ranked[0] if ranked else None


def _plot_rows(df, seed):
    """The rows the figures draw: all, or a random ``_PLOT_MAX_POINTS`` of them.

    A scatter of a million points costs minutes in matplotlib and shows no
    more than one of twenty thousand; the note goes into every title.
    """
    n = len(df)
    if n <= _PLOT_MAX_POINTS:
        return df, ""
    rng = np.random.default_rng([seed if isinstance(seed, int) else 0, 7])
    rows = np.sort(rng.choice(n, size=_PLOT_MAX_POINTS, replace=False))
    return df.iloc[rows], f" ({_PLOT_MAX_POINTS:,} of {n:,} points shown)"


def _write_figures(
    tmp: Path, df, grid, table, picks, chosen, units, settings, say=None
):
    """Draw every figure into ``tmp``; return name -> (file name, caption)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window
    from bayes_gmm import plots

    files: dict[str, str] = {}
    ctype, k = picks["bic"]
    em = grid.fits[(ctype, k)]
    df, shown = _plot_rows(df, settings["seed"])
    if say is not None:
        say(f"[figures] drawing the report's figures{shown} ...")
    title = f"BIC choice: {ctype}, K={k}{units}{shown}"
    d = df.shape[1]
    bayes = _preferred_bayes(chosen["bayes"])
    if d >= 2:
        ax = plots.plot_clusters(em, df)
        ax.set_title(
            title + " (EM)\nellipses: 1, 2, 3 sd; marker size: assignment certainty"
        )
        _save(ax.figure, tmp / "clusters.png")
        files["clusters"] = "clusters.png"
    if d > 2:
        axes = plots.plot_pairs(em, df)
        axes[0, 0].figure.suptitle(title + " (EM)")
        _save(axes[0, 0].figure, tmp / "pairs.png")
        files["pairs"] = "pairs.png"
    axes = plots.plot_criteria(table)
    axes[0].figure.suptitle(f"Model selection{units}")
    _save(axes[0].figure, tmp / "criteria.png")
    files["criteria"] = "criteria.png"
    if d >= 2 and grid.table["covariance_type"].nunique() > 1:
        axes = plots.plot_covariance_types(df, grid)
        _save(axes[0].figure, tmp / "covariance_types.png")
        files["covariance_types"] = "covariance_types.png"
    fit = bayes.fit if bayes is not None else em
    who = f"{bayes.method.upper()}" if bayes is not None else "EM"
    ax = plots.plot_density(fit, df, ci_prob=settings["ci_prob"])
    ax.set_title(f"{title} ({who})\n{ax.get_title() or 'density'}")
    _save(ax.figure, tmp / "density.png")
    files["density"] = "density.png"
    if bayes is not None and d >= 2:
        ax = plots.plot_posterior_ellipses(bayes.fit, df)
        ax.set_title(f"{title} ({who})\n{ax.get_title()}; dashed: EM")
        _save(ax.figure, tmp / "posterior_ellipses.png")
        files["posterior_ellipses"] = "posterior_ellipses.png"
    ax = plots.plot_uncertainty(fit, df)
    ax.set_title(f"{title} ({who})\nassignment uncertainty")
    _save(ax.figure, tmp / "uncertainty.png")
    files["uncertainty"] = "uncertainty.png"
    comparison = chosen.get("comparison")
    if comparison is not None and len(comparison):
        ax = plots.plot_comparison(comparison)
        ax.figure.suptitle(
            f"{title}: parameters by method (posterior {settings['ci_prob']:.0%} "
            "intervals)"
        )
        _save(ax.figure, tmp / "comparison.png")
        files["comparison"] = "comparison.png"
    return files


def _summary(args, source, df, settings, std_info, grid, table, picks, extra):
    """The content of summary.json (also what the HTML report is built from)."""
    from bayes_gmm import __version__

    pick_info = {}
    for crit, (ctype, k) in picks.items():
        row = table[(table["covariance_type"] == ctype) & (table["n_components"] == k)]
        pick_info[crit] = {
            "covariance_type": ctype,
            "n_components": k,
            "value": float(row[crit].iloc[0]),
        }
    chosen = grid.fits[picks["bic"]]
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
                "describe": {
                    c: {
                        "mean": float(df[c].mean()),
                        "sd": float(df[c].std()),
                        "min": float(df[c].min()),
                        "max": float(df[c].max()),
                    }
                    for c in df.columns
                },
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
                for r in _records(grid.table)
                if r["error"] is not None
            ],
            "table": _records(table),
            **extra,
        }
    )


def _bayes_summary(fits: Sequence[_BayesFit], plan, verdict, diagnoses, files):
    """The Bayesian part of summary.json."""
    return {
        "candidates": {
            m: [{"covariance_type": t, "n_components": k} for t, k in models]
            for m, models in plan.items()
        },
        "fits": [
            {
                "method": f.method,
                "covariance_type": f.covariance_type,
                "n_components": f.n_components,
                "random_state": f.random_state,
                "seconds": f.seconds,
                "inference": f.inference,
                "error": f.error,
                "file": files.get(f.label),
                "save_error": f.save_error,
                "diagnosis": _diagnosis_status(diagnoses.get(f.label)),
            }
            for f in fits
        ],
        "verdict": verdict,
    }


def _diagnosis_status(diagnosis) -> dict | None:
    """Worst status and the failing/warning checks of a Diagnosis, if any."""
    if diagnosis is None:
        return None
    checks = getattr(diagnosis, "checks", None)
    out = {"status": getattr(diagnosis, "status", None), "text": str(diagnosis)}
    if checks is not None:
        rows = []
        for check in checks:
            get = (
                check.get
                if isinstance(check, dict)
                else lambda name, c=check: getattr(c, name, None)
            )
            rows.append(
                {
                    "name": get("name"),
                    "status": get("status"),
                    "value": _jsonable(get("value")),
                }
            )
        out["checks"] = rows
    return out


#: A column with at most this many distinct values looks like a label.
FEW_VALUES = 5


def _data_warnings(df: pd.DataFrame) -> list[str]:
    """Columns a Gaussian mixture is likely to misread (one line each)."""
    lines = []
    if df.shape[0] <= 4 * FEW_VALUES:
        return lines
    for c in df.columns:
        n = int(df[c].nunique())
        if n <= FEW_VALUES:
            lines.append(
                f"column {c!r} has only {n} distinct value{'s' * (n != 1)}: a "
                "Gaussian mixture "
                "treats it as continuous, and components can collapse onto its "
                "values (such fits are marked and not picked); leave it out with "
                "--columns if it is a label or a category"
            )
    return lines


# ----------------------------------------------------------------------- main
def _run(args, out_stream, err_stream, interrupts: _Interrupts, state: dict) -> int:
    """The command, once --out is known to be writable (see :func:`_run_in`)."""
    protect = [args.data] if args.command == "fit" else []
    target = ReportDir(args.out, protect=protect, may_write=_may_write)
    state["out"] = target.out
    try:
        # before any work: refuse or fail now, not after the fits (inside the
        # try: a Ctrl-C in prepare must not leave its staging directory)
        target.prepare()
        _run_in(target, args, out_stream, err_stream, interrupts, state)
    except BaseException:
        with interrupts.deferred():
            target.discard()
        raise
    return 0


def _run_in(target: ReportDir, args, out_stream, err_stream, interrupts, state):
    """Fit, print, write into ``target.staging`` and commit it to --out."""
    t_start = time.perf_counter()
    out = target.out
    df, source, csv_table = _load(args)
    settings = _settings(args, df.shape[0])
    std_info = None
    if args.standardize:
        df, std_info = _standardize(df)
    units = " (standardised data)" if args.standardize else ""

    def say(line: str) -> None:
        if not args.quiet:
            err_stream.write(line + "\n")
            err_stream.flush()

    def progress(done, total, ctype, k, row):
        interrupts.check()
        what = "failed" if row["error"] else f"BIC {row['bic']:.2f}"
        say(
            f"[em {done:>{len(str(total))}}/{total}] {ctype:<9} K={k:<2} {what} "
            f"({row['fit_time']:.2f} s)"
        )

    for line in (csv_table.warnings if csv_table else []) + _data_warnings(df):
        err_stream.write(f"warning: {line}\n")
    if csv_table is not None and (csv_table.sep != "," or csv_table.decimal != "."):
        how = "detected" if csv_table.detected else "as given"
        source = f"{source} ({csv_table.describe()}, {how})"

    from threadpoolctl import threadpool_limits

    timing: dict[str, float] = {}
    with threadpool_limits(limits=args.threads):
        t0 = time.perf_counter()
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
        timing["em_grid"] = time.perf_counter() - t0
        plan = {m: grid.leading(n) for m, n in settings["candidates"].items() if n > 0}
        plan = {m: models for m, models in plan.items() if models}
        if plan:
            say(
                "Bayesian fits for the leading candidates by EM BIC: "
                + _plan_text(plan)
            )
            cap = settings["bayes_max_samples"]
            if cap is not None and len(df) > cap:
                say(
                    f"Bayesian fits use a random subsample of {cap:,} of the "
                    f"{len(df):,} rows (--bayes-max-samples; EM used all rows)"
                )
        t0 = time.perf_counter()
        progressbar = not args.quiet and err_stream.isatty()
        comparison, fits = _fit_bayesian(
            df, grid, settings, plan, say, progressbar, interrupts.check
        )
        interrupts.check()
        timing["bayesian_fits"] = time.perf_counter() - t0
        table = comparison.table
        picks = comparison.picks()
        verdict = []
        if fits:
            verdict = [
                "Bayesian methods were fitted for the leading candidates by EM BIC "
                f"only ({_plan_text(plan)}); elpd is NaN for the other models."
            ]
            verdict += comparison.verdict().splitlines()[1:]
        t0 = time.perf_counter()
        chosen = _chosen_analysis(df, grid, picks["bic"], fits, settings, say)
        timing["chosen_model"] = time.perf_counter() - t0
    interrupts.check()

    _print_results(
        out_stream,
        df,
        source,
        args,
        settings,
        grid,
        table,
        picks,
        fits,
        plan,
        verdict,
        timing,
    )

    t0 = time.perf_counter()
    tmp = target.staging
    table.to_csv(tmp / "criteria.csv", index=False)
    files = {"criteria_table": "criteria.csv"}
    if chosen.get("comparison") is not None:
        chosen["comparison"].to_csv(tmp / "parameters.csv", index=False)
        files["parameters_table"] = "parameters.csv"
    for item in fits:
        if item.fit is None:
            continue
        try:
            item.fit.result_.to_netcdf(tmp / item.filename)
        except ImportError as exc:
            # A missing netCDF writer (h5py) must not lose minutes of
            # sampling: the report is still written and says what to install.
            reason = str(exc).strip().rstrip(".")
            item.save_error = (
                f"posterior not saved: {reason}. Install the missing package "
                "(pip install h5py) to write netCDF files."
            )
            say(f"[{item.label}] {item.save_error}")
            for leftover in tmp.glob(f"{Path(item.filename).stem}*"):
                leftover.unlink()
            continue
        files[item.label] = item.filename
    files.update(
        _write_figures(tmp, df, grid, table, picks, chosen, units, settings, say)
    )
    files["summary"] = "summary.json"
    files["report"] = "index.html"
    timing["output"] = time.perf_counter() - t0
    timing["total"] = time.perf_counter() - t_start
    extra = {
        "bayesian": _bayes_summary(fits, plan, verdict, chosen["diagnoses"], files),
        "files": files,
        "timing_seconds": timing,
    }
    summary = _summary(args, source, df, settings, std_info, grid, table, picks, extra)
    if csv_table is not None:
        summary["data"]["csv"] = {
            "sep": csv_table.sep,
            "decimal": csv_table.decimal,
            "detected": csv_table.detected,
            "header": csv_table.header,
            "dropped_columns": csv_table.dropped,
            "warnings": csv_table.warnings,
        }
    (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    from bayes_gmm import report

    report.write_report(
        tmp,
        summary,
        table,
        comparison=chosen.get("comparison"),
        diagnoses=chosen["diagnoses"],
    )

    interrupts.check()
    with interrupts.deferred():  # all or nothing: not cut short by a Ctrl-C
        target.commit()
    state["committed"] = True
    if interrupts.count:
        err_stream.write(
            "warning: Ctrl-C came while the finished report was being moved into "
            "place; it was completed first\n"
        )
    print(f"\nWrote {out}/: " + ", ".join(sorted(set(files.values()))), file=out_stream)
    print(f"  report: {out / 'index.html'}", file=out_stream)


_METHOD_NAMES = {"nuts": "NUTS", "advi": "ADVI", "fullrank_advi": "full-rank ADVI"}


def _plan_text(plan) -> str:
    return "; ".join(
        f"{_METHOD_NAMES.get(m, m)} for "
        + ", ".join(f"{t} K={k}" for t, k in models)
        + f" (the {len(models)} best)"
        for m, models in plan.items()
    )


def _print_results(
    stream, df, source, args, settings, grid, table, picks, fits, plan, verdict, timing
):
    def p(line=""):
        print(line, file=stream)

    p(f"Data: {source}, {df.shape[0]} rows, columns {list(df.columns)}")
    if args.standardize:
        p(
            "Standardised: every column was centred on its mean and divided by its "
            "standard deviation; parameters, criteria and figures are in those units."
        )
    else:
        p(
            "Not standardised: the columns are used in their own units "
            "(--standardize to change)."
        )
    p(
        f"EM, n_init={args.n_init}, seed={args.seed}: "
        f"{len(grid.table)} models in {timing['em_grid']:.1f} s "
        "(lower criteria are better)\n"
    )
    p(_format_table(grid.table, picks))
    p()
    for crit in EM_CRITERIA:
        if crit not in picks:
            continue
        ctype, k = picks[crit]
        value = grid.table.loc[
            (grid.table["covariance_type"] == ctype)
            & (grid.table["n_components"] == k),
            crit,
        ].iloc[0]
        p(f"{crit.upper()} picks {ctype}, K={k} ({crit.upper()} = {value:.2f})")
    for _, row in grid.failed.iterrows():
        p(f"failed: {row['covariance_type']} K={row['n_components']}: {row['error']}")
    if fits:
        p()
        p(
            f"Bayesian fits ({timing['bayesian_fits']:.1f} s): {_plan_text(plan)}; "
            f"draws={settings['draws']}, tune={settings['tune']}, "
            f"chains={settings['chains']}\n"
        )
        p(_format_bayes_table(table, fits))
        p()
        for line in verdict:
            p(line)


@contextlib.contextmanager
def _quiet_loggers(quiet: bool):
    """Keep PyMC's and PyTensor's INFO chatter off the terminal (not --verbose)."""
    names = ("pymc", "pytensor", "nutpie")
    before = {name: logging.getLogger(name).level for name in names}
    if quiet:
        for name in names:
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bayes-gmm`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success; 2 for bad input or an ``--out`` that must
        not or cannot be written; 1 for an unexpected failure; 130 when
        interrupted (Ctrl-C). In every failing case ``--out`` is as it was
        and stderr ends with one line starting with ``error:``.
    """
    interrupts = _Interrupts()
    state: dict[str, Any] = {"out": None, "committed": False}
    try:
        with interrupts:
            return _main(argv, interrupts, state)
    except KeyboardInterrupt:  # a Ctrl-C outside the command proper
        print(_interrupted(state), file=sys.stderr)
        return 130


def _interrupted(state) -> str:
    if state["committed"]:
        out = state["out"]
        return f"error: interrupted (Ctrl-C) after the report was written to {out}"
    where = f" to {state['out']}, which is as it was" if state["out"] else ""
    return f"error: interrupted (Ctrl-C); nothing was written{where}"


def _main(argv, interrupts: _Interrupts, state: dict) -> int:
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    handler = None
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
                # PyTensor's C backend warns when it finds no BLAS; the numba
                # path of NUTS does not use it, and the user cannot act on it.
                warnings.filterwarnings(
                    "ignore", message="PyTensor could not link to a BLAS"
                )
            with _quiet_loggers(not args.verbose):
                return _run(args, sys.stdout, sys.stderr, interrupts, state)
    except (InputError, OutputError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(_interrupted(state), file=sys.stderr)
        return 130
    except ReportWriteError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except (SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - the command's last line of defence
        # BaseException, not Exception: a sampler's Rust panic arrives as
        # pyo3's PanicException, which derives from BaseException.
        if args.verbose:
            traceback.print_exc()
        print(
            f"error: unexpected failure ({type(exc).__name__}: {_one_line(exc)}); "
            f"nothing was written to {args.out}. Run with --verbose for the "
            "traceback.",
            file=sys.stderr,
        )
        return 1
    finally:
        if handler is not None:
            logger.removeHandler(handler)


def _one_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else ""


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
