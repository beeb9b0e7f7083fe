"""Time bayes_gmm's EM against scikit-learn's GaussianMixture, side by side.

For every cell of the grid (N samples x D features x K components x
covariance type) both estimators get the same data and the same initial
parameters (``weights_init``, ``means_init``, ``precisions_init``), in one
process, one after the other, repeated; the medians and their ratio
(scikit-learn / ours, above 1 means we are faster) are reported.

* **Per iteration**: a fit with ``tol=0`` and ``max_iter=1 + m`` (a
  ConvergenceWarning is expected and silenced) minus the same fit with
  ``max_iter=1`` (input checks, set-up, the first iteration and the final
  E-step that both ``fit`` methods do), divided by ``m``. Medians over
  ``--repeats`` interleaved repeats. (``max_iter=0`` cannot be the baseline:
  scikit-learn 1.9 then fails when all three ``*_init`` are given.)
* **Whole fit**: ``tol=1e-3`` (both defaults) from the same start, once per
  cell (``--fit-repeats``); the iteration counts and the final mean
  log-likelihoods of both are reported, with their difference.
* **Peak memory** of a fit at N=1e6, D=10, K=10 (full) beyond the data, each
  estimator in its own subprocess that loads the saved data: how far the
  peak resident set (``VmHWM``, reset before the fit through
  ``/proc/self/clear_refs``) rises above the resident set, and the peak of
  numpy's allocations during the fit (tracemalloc).

Times are process CPU times (``time.process_time``) with one BLAS/OpenMP
thread (threadpoolctl): on a shared machine CPU time is not inflated by the
time other processes hold the core, and with a single thread it equals the
wall time of an idle machine. Wall-clock medians are recorded as well.

OpenBLAS reads ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` when it loads; on
some machines they are set to work around old OpenBLAS builds and slow down
a current numpy. Unless ``--keep-openblas-env`` is given, the script
re-executes itself once with both unset (for this command only) and records
the values it found and the kernel OpenBLAS then uses (threadpoolctl).

Usage::

    python benchmarks/em_vs_sklearn.py            # full grid (make bench)
    python benchmarks/em_vs_sklearn.py --quick    # small smoke grid
    python benchmarks/em_vs_sklearn.py --repeats 5 --out /tmp/bench

Writes ``em_vs_sklearn.md`` and ``em_vs_sklearn.json`` in ``--out``
(``benchmarks/results`` by default; ``--quick`` writes
``em_vs_sklearn_quick.*``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

_OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_FOUND_ENV = "BAYES_GMM_BENCH_OPENBLAS_ENV"


def _reexec_without_openblas_env(argv):
    """Re-run this script once with the OpenBLAS overrides unset."""
    found = {v: os.environ[v] for v in _OPENBLAS_VARS if v in os.environ}
    if not found or "--keep-openblas-env" in argv or _FOUND_ENV in os.environ:
        return
    env = {k: v for k, v in os.environ.items() if k not in _OPENBLAS_VARS}
    env[_FOUND_ENV] = json.dumps(found)
    os.execve(sys.executable, [sys.executable, *argv], env)


if __name__ == "__main__":
    _reexec_without_openblas_env(sys.argv)

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import sklearn  # noqa: E402
from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

from bayes_gmm import GaussianMixtureEM  # noqa: E402
from bayes_gmm._validation import ConvergenceWarning  # noqa: E402
from bayes_gmm.datasets import make_mixture  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

FULL_GRID = {
    "n": [10_000, 100_000, 1_000_000],
    "d": [2, 10, 50],
    "k": [3, 10],
    "cov": ["full", "diag"],
}
QUICK_GRID = {"n": [10_000, 30_000], "d": [2, 10], "k": [3], "cov": ["full", "diag"]}
# True components of the synthetic data (the fitted K is 3 or 10).
TRUE_K = 5


# --------------------------------------------------------------------- set-up
def make_data(n, d, seed=0):
    """Synthetic mixture data, the same for every K and covariance type.

    The parameters come from ``make_mixture`` (5 components with random
    full covariances, means 3 sd apart); the rows are drawn here, one
    component at a time, from their own random stream (written when
    ``make_mixture`` still built an (n, d, d) temporary; kept so that the
    committed results stay reproducible).
    """
    truth = make_mixture(
        10 * TRUE_K,
        TRUE_K,
        d,
        covariance_type="full",
        separation=3.0,
        random_state=seed,
    )[2]
    rng = np.random.default_rng(seed + 1)
    labels = rng.choice(TRUE_K, size=n, p=truth.weights)
    X = rng.standard_normal((n, d))
    chol = np.linalg.cholesky(truth.covariances)
    for j in range(TRUE_K):  # drawing data, not EM
        rows = np.flatnonzero(labels == j)
        X[rows] = X[rows] @ chol[j].T + truth.means[j]
    return X


def start_params(X, k, cov, seed=0):
    """A common start: scikit-learn's k-means start on a 10,000-row subsample.

    Returns the keyword arguments (``weights_init``, ``means_init``,
    ``precisions_init``) that both estimators get.
    """
    rng = np.random.default_rng(seed)
    rows = rng.choice(X.shape[0], size=min(X.shape[0], 10_000), replace=False)
    gm = GaussianMixture(k, covariance_type=cov, max_iter=0, random_state=seed)
    gm.fit(X[np.sort(rows)])
    return {
        "weights_init": gm.weights_,
        "means_init": gm.means_,
        "precisions_init": gm.precisions_,
    }


def estimators(k, cov, init, **kw):
    """The two estimators with the same settings."""
    common = {"covariance_type": cov, **init, **kw}
    return {
        "ours": GaussianMixtureEM(k, **common),
        "sklearn": GaussianMixture(k, **common),
    }


def timed_fit(est, X):
    """Fit once; return (cpu seconds, wall seconds, fitted estimator)."""
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", SkConvergenceWarning)
        c0, w0 = time.process_time(), time.perf_counter()
        est.fit(X)
        c1, w1 = time.process_time(), time.perf_counter()
    return c1 - c0, w1 - w0, est


def work(n, d, k, cov):
    """About a quarter of the flops of one EM iteration."""
    return n * k * (d * d if cov == "full" else d)


def iterations_for(n, d, k, cov):
    """Iterations timed per repeat: enough to dominate set-up, bounded cost."""
    work_ = work(n, d, k, cov)
    if work_ >= 5e9:
        return 1
    if work_ >= 2e8:
        return 2
    if work_ >= 2e7:
        return 4
    return 10


# ------------------------------------------------------------------- measures
def per_iteration(X, k, cov, init, repeats):
    """Median CPU and wall time of one EM iteration for both estimators."""
    n, d = X.shape
    m = iterations_for(n, d, k, cov)
    samples = {name: {"cpu": [], "wall": []} for name in ("ours", "sklearn")}
    lower = {}
    for _ in range(repeats):
        for name in ("ours", "sklearn"):
            base = estimators(k, cov, init, tol=0.0, max_iter=1)[name]
            c0, w0, _ = timed_fit(base, X)
            est = estimators(k, cov, init, tol=0.0, max_iter=1 + m)[name]
            c, w, est = timed_fit(est, X)
            samples[name]["cpu"].append((c - c0) / m)
            samples[name]["wall"].append((w - w0) / m)
            lower[name] = float(est.lower_bound_)
    out = {"iterations": m, "repeats": repeats}
    for name, s in samples.items():
        out[name] = {
            "cpu_s": float(np.median(s["cpu"])),
            "wall_s": float(np.median(s["wall"])),
            "cpu_samples": s["cpu"],
        }
    out["ratio_cpu"] = out["sklearn"]["cpu_s"] / out["ours"]["cpu_s"]
    out["ratio_wall"] = out["sklearn"]["wall_s"] / out["ours"]["wall_s"]
    out["lower_bound"] = lower
    out["lower_bound_diff"] = abs(lower["ours"] - lower["sklearn"])
    return out


def whole_fit(X, k, cov, init, repeats, max_iter):
    """Whole fits with tol=1e-3 from the same start."""
    res = {name: {"cpu": [], "wall": []} for name in ("ours", "sklearn")}
    for _ in range(repeats):
        for name in ("ours", "sklearn"):
            est = estimators(k, cov, init, tol=1e-3, max_iter=max_iter)[name]
            c, w, est = timed_fit(est, X)
            res[name]["cpu"].append(c)
            res[name]["wall"].append(w)
            res[name]["n_iter"] = int(est.n_iter_)
            res[name]["converged"] = bool(est.converged_)
            res[name]["lower_bound"] = float(est.lower_bound_)
    out = {"repeats": repeats, "max_iter": max_iter}
    for name, r in res.items():
        out[name] = {
            "cpu_s": float(np.median(r["cpu"])),
            "wall_s": float(np.median(r["wall"])),
            "n_iter": r["n_iter"],
            "converged": r["converged"],
            "lower_bound": r["lower_bound"],
        }
    out["ratio_cpu"] = out["sklearn"]["cpu_s"] / out["ours"]["cpu_s"]
    out["ratio_wall"] = out["sklearn"]["wall_s"] / out["ours"]["wall_s"]
    out["lower_bound_diff"] = abs(
        out["ours"]["lower_bound"] - out["sklearn"]["lower_bound"]
    )
    return out


def _relative(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def agreement_datasets():
    """Small data sets for the agreement check (name, X)."""
    from sklearn.datasets import load_iris, load_wine

    from bayes_gmm.datasets import load_faithful

    yield "faithful", np.asarray(load_faithful(), dtype=float)
    yield "iris", load_iris().data
    yield "wine", load_wine().data
    for name, (n, k, d, sep) in {
        "mixture D=2": (2000, 3, 2, 2.0),
        "mixture D=5": (3000, 4, 5, 4.0),
        "mixture D=30": (3000, 5, 30, 4.0),
    }.items():
        yield name, make_mixture(n, k, d, separation=sep, random_state=1)[0]


def agreement(n_iter=5, ks=(1, 3, 6)):
    """Same start, ``n_iter`` iterations: largest relative differences.

    The start is scikit-learn's own (k-means, ``max_iter=0``), passed to
    both as ``weights_init``, ``means_init`` and ``precisions_init``.
    Returns one row per covariance type with the worst relative difference
    of ``weights_``, ``means_``, ``covariances_`` and ``lower_bound_`` over
    the data sets and ``ks``.
    """
    attrs = ("weights_", "means_", "covariances_", "lower_bound_")
    out = {}
    for cov in ("full", "tied", "diag", "spherical"):
        worst = dict.fromkeys(attrs, 0.0)
        where = dict.fromkeys(attrs, "")
        for name, X in agreement_datasets():
            for k in ks:
                sk0 = GaussianMixture(
                    k, covariance_type=cov, max_iter=0, random_state=0
                ).fit(X)
                init = {
                    "weights_init": sk0.weights_,
                    "means_init": sk0.means_,
                    "precisions_init": sk0.precisions_,
                }
                fits = estimators(k, cov, init, tol=0.0, max_iter=n_iter)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    for est in fits.values():
                        est.fit(X)
                for a in attrs:
                    r = _relative(getattr(fits["ours"], a), getattr(fits["sklearn"], a))
                    if r >= worst[a]:
                        worst[a], where[a] = r, f"{name}, K={k}"
        out[cov] = {"max_relative": worst, "where": where}
        out[cov]["pass"] = max(worst.values()) <= 1e-8
    return out


_MEMORY_CHILD = r"""
import json, sys, tracemalloc, warnings
import numpy as np
from threadpoolctl import threadpool_limits
from bayes_gmm import GaussianMixtureEM
from sklearn.mixture import GaussianMixture

X = np.load({data!r})  # read straight into one array: RSS grows by the data only
init = dict(np.load({init!r}))
cls = {{"ours": GaussianMixtureEM, "sklearn": GaussianMixture}}[{which!r}]
kw = dict(covariance_type={cov!r}, tol=0.0, **init)
def status(field):  # kB from /proc/self/status (this process only)
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

with threadpool_limits(1), warnings.catch_warnings():
    warnings.simplefilter("ignore")
    cls({k}, max_iter=1, **kw).fit(X[:2000])  # warm up imports and caches
    try:  # reset the peak (VmHWM) to the current resident set
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    before_rss, before_hwm = status("VmRSS"), status("VmHWM")
    tracemalloc.start()
    cls({k}, max_iter={iters}, **kw).fit(X)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    after_hwm = status("VmHWM")
print(json.dumps({{
    "data_bytes": int(X.nbytes),
    "hwm_reset": reset,
    "rss_before_kib": before_rss, "hwm_before_kib": before_hwm,
    "hwm_after_kib": after_hwm,
    "rss_growth_bytes": 1024 * (after_hwm - (before_rss if reset else before_hwm)),
    "tracemalloc_peak_bytes": int(peak),
}}))
"""


def peak_memory(n, d, k, cov, iters=3):
    """Peak memory of a fit beyond the data, each estimator in a subprocess.

    The data are made here and saved; the child loads them, warms up, resets
    its peak resident set (``/proc/self/clear_refs``) and reports how far
    the peak (``VmHWM``) rose above the resident set during the fit, and the
    peak of numpy's allocations during the fit (tracemalloc).
    """
    out = {"n": n, "d": d, "k": k, "cov": cov, "max_iter": iters}
    X = make_data(n, d)
    init = start_params(X, k, cov)
    with tempfile.TemporaryDirectory() as tmp:
        data, init_file = str(Path(tmp) / "X.npy"), str(Path(tmp) / "init.npz")
        np.save(data, X)
        np.savez(init_file, **init)
        del X
        for which in ("ours", "sklearn"):
            code = _MEMORY_CHILD.format(
                data=data, init=init_file, k=k, cov=cov, which=which, iters=iters
            )
            env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
            proc = subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            if proc.returncode != 0:
                out[which] = {"error": proc.stderr.strip()[-2000:]}
            else:
                out[which] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


# -------------------------------------------------------------------- reports
def environment():
    """Versions, machine, BLAS library and threads, OpenBLAS overrides."""
    found = json.loads(os.environ.get(_FOUND_ENV, "null") or "null")
    still = {v: os.environ[v] for v in _OPENBLAS_VARS if v in os.environ}
    with threadpool_limits(1):
        info_limited = threadpool_info()
    import bayes_gmm

    pkg = Path(bayes_gmm.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(pkg), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "bayes_gmm": f"{pkg} ({commit or 'no git'})",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "n_cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "openblas_env_found": found or still or {},
        "openblas_env_in_effect": still,
        "threadpools_default": threadpool_info(),
        "threadpools_in_benchmark": info_limited,
    }


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _fmt_time(seconds):
    if seconds != seconds:  # nan
        return "-"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def markdown(report):
    """The report as a markdown document."""
    env = report["environment"]
    rows = report["cells"]
    lines = [
        "# EM: bayes_gmm vs scikit-learn GaussianMixture",
        "",
        f"Generated by `benchmarks/em_vs_sklearn.py{report['argv']}` on "
        f"{report['date']} ({report['runtime_s']:.0f} s wall, "
        f"{report['cpu_s']:.0f} s CPU in the main process).",
        "",
        "Same data, same initial parameters, one process; ratio = "
        "scikit-learn / ours (above 1: ours is faster). Times are process CPU "
        "times with one BLAS thread (medians; wall-clock ratio in brackets).",
        "",
    ]
    it = [r["per_iteration"]["ratio_cpu"] for r in rows]
    if it:
        worst = min(rows, key=lambda r: r["per_iteration"]["ratio_cpu"])
        lines += [
            f"**Per iteration: median ratio {np.median(it):.2f}** over "
            f"{len(it)} cells (min {min(it):.2f} at {worst['cov']}, "
            f"N={worst['n']:.0e}, D={worst['d']}, K={worst['k']}; "
            f"max {max(it):.2f}).",
            "",
        ]
    fits = [r["fit"]["ratio_cpu"] for r in rows if "fit" in r]
    if fits:
        lines += [f"Whole fit: median ratio {np.median(fits):.2f}.", ""]
    lines += [
        "| cov | N | D | K | sklearn / iter | ours / iter | ratio | "
        "sklearn fit | ours fit | fit ratio | iters sk/ours | "
        "\\|Δ mean log-lik\\| (fit) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        p = r["per_iteration"]
        f = r.get("fit")
        fit_cells = (
            [
                _fmt_time(f["sklearn"]["cpu_s"]),
                _fmt_time(f["ours"]["cpu_s"]),
                f"{f['ratio_cpu']:.2f} ({f['ratio_wall']:.2f})",
                f"{f['sklearn']['n_iter']}/{f['ours']['n_iter']}",
                f"{f['lower_bound_diff']:.1e}",
            ]
            if f
            else ["-", "-", "-", "-", f"{p['lower_bound_diff']:.1e} (iter)"]
        )
        lines.append(
            "| "
            + " | ".join(
                [
                    r["cov"],
                    f"{r['n']:.0e}",
                    str(r["d"]),
                    str(r["k"]),
                    _fmt_time(p["sklearn"]["cpu_s"]),
                    _fmt_time(p["ours"]["cpu_s"]),
                    f"**{p['ratio_cpu']:.2f}** ({p['ratio_wall']:.2f})",
                    *fit_cells,
                ]
            )
            + " |"
        )
    agree = report.get("agreement")
    if agree:
        lines += [
            "",
            "## Agreement with scikit-learn",
            "",
            "Largest relative difference (max |ours - sklearn| / max |sklearn|) "
            "after 5 iterations from scikit-learn's k-means start, over Old "
            "Faithful, iris, wine and three synthetic mixtures (D = 2, 5, 30), "
            "K = 1, 3, 6. Target: 1e-8.",
            "",
            "| cov | weights_ | means_ | covariances_ | lower_bound_ | |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for cov, a in agree.items():
            m = a["max_relative"]
            lines.append(
                f"| {cov} | "
                + " | ".join(
                    f"{m[x]:.1e}"
                    for x in ("weights_", "means_", "covariances_", "lower_bound_")
                )
                + f" | {'ok' if a['pass'] else 'FAIL'} |"
            )
    mem = report.get("memory")
    if mem:
        lines += [
            "",
            f"## Peak memory of a fit (N={mem['n']:.0e}, D={mem['d']}, "
            f"K={mem['k']}, {mem['cov']}, {mem['max_iter']} iterations)",
            "",
            "Beyond the data itself "
            f"({mem['ours'].get('data_bytes', 0) / 2**20:.0f} MiB), each in its "
            "own process.",
            "",
            "| | peak resident set growth | tracemalloc peak (numpy) |",
            "|---|---:|---:|",
        ]
        for name in ("ours", "sklearn"):
            m = mem[name]
            if "error" in m:
                lines.append(f"| {name} | error | {m['error'][-200:]} |")
                continue
            lines.append(
                f"| {name} | {m['rss_growth_bytes'] / 2**20:.1f} MiB | "
                f"{m['tracemalloc_peak_bytes'] / 2**20:.1f} MiB |"
            )
    lines += ["", "## Environment", ""]
    blas = [
        f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture', '-')}, "
        f"{p.get('num_threads')} thread(s), {Path(p.get('filepath', '')).name})"
        for p in env["threadpools_in_benchmark"]
    ]
    lines += [
        f"- bayes_gmm: {env.get('bayes_gmm', '?')}",
        f"- Python {env['python']}, numpy {env['numpy']}, scipy {env['scipy']}, "
        f"scikit-learn {env['sklearn']}",
        f"- CPU: {env['processor']} ({env['n_cpus']} cores); load average at "
        f"start {env['load_average'][0]:.2f}, at end "
        f"{report['load_average_end'][0]:.2f}",
        "- Thread pools during the benchmark: " + "; ".join(blas),
        "- OpenBLAS overrides found in the environment: "
        + (
            ", ".join(f"{k}={v}" for k, v in env["openblas_env_found"].items())
            or "none"
        )
        + "; in effect for the run: "
        + (
            ", ".join(f"{k}={v}" for k, v in env["openblas_env_in_effect"].items())
            or "none"
        ),
    ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------- main
def main(argv=None):
    """Run the benchmark and write the reports."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke grid")
    parser.add_argument(
        "--repeats", type=int, default=None, help="repeats of the per-iteration timing"
    )
    parser.add_argument(
        "--fit-repeats", type=int, default=1, help="repeats of the whole fits"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="output folder")
    parser.add_argument(
        "--fit-max-work",
        type=float,
        default=1e10,
        help="skip whole fits of cells with N K D^2 (full) or N K D (diag) above "
        "this (default 1e10: all but N=1e6, D=50, K=10, full, whose sklearn fit "
        "alone takes ~10 minutes on this machine)",
    )
    parser.add_argument(
        "--fit-max-iter", type=int, default=100, help="max_iter of the whole fits"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip memory")
    parser.add_argument(
        "--keep-openblas-env",
        action="store_true",
        help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE if set",
    )
    args = parser.parse_args(argv)

    grid = QUICK_GRID if args.quick else FULL_GRID
    repeats = args.repeats or (2 if args.quick else 3)
    t_start, c_start = time.perf_counter(), time.process_time()
    report = {
        "argv": "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "environment": environment(),
        "cells": [],
    }
    print("BLAS:", report["environment"]["threadpools_in_benchmark"], flush=True)
    with threadpool_limits(1):
        report["agreement"] = agreement()
        for cov, a in report["agreement"].items():
            print(
                f"agreement {cov:9} {'ok' if a['pass'] else 'FAIL'} "
                + " ".join(f"{k}={v:.1e}" for k, v in a["max_relative"].items()),
                flush=True,
            )
        # Warm-up: imports, caches and first-call costs out of the timings.
        Xw = make_data(2000, 3)
        for cov in grid["cov"]:
            for est in estimators(
                3, cov, start_params(Xw, 3, cov), max_iter=3
            ).values():
                timed_fit(est, Xw)
        for n in grid["n"]:
            for d in grid["d"]:
                X = make_data(n, d)
                for cov in grid["cov"]:
                    for k in grid["k"]:
                        init = start_params(X, k, cov)
                        cell = {"n": n, "d": d, "k": k, "cov": cov}
                        # Heavy cells get fewer repeats (2 shared cores).
                        heavy = work(n, d, k, cov) >= 1e9
                        reps = max(1, repeats - 2) if heavy else repeats
                        cell["per_iteration"] = per_iteration(X, k, cov, init, reps)
                        if work(n, d, k, cov) <= args.fit_max_work:
                            cell["fit"] = whole_fit(
                                X, k, cov, init, args.fit_repeats, args.fit_max_iter
                            )
                        report["cells"].append(cell)
                        p = cell["per_iteration"]
                        f = cell.get("fit", {})
                        print(
                            f"{cov:5} N={n:.0e} D={d:2} K={k:2}  per-iter "
                            f"sk {_fmt_time(p['sklearn']['cpu_s']):>10} ours "
                            f"{_fmt_time(p['ours']['cpu_s']):>10} ratio "
                            f"{p['ratio_cpu']:6.2f} (wall {p['ratio_wall']:5.2f})"
                            + (
                                f"  fit ratio {f['ratio_cpu']:5.2f} iters "
                                f"{f['sklearn']['n_iter']}/{f['ours']['n_iter']} "
                                f"dLL {f['lower_bound_diff']:.1e}"
                                if f
                                else ""
                            ),
                            flush=True,
                        )
                del X
    if not args.no_memory:
        n_mem = 100_000 if args.quick else 1_000_000
        report["memory"] = peak_memory(n_mem, 10, 10, "full")
        print("memory:", json.dumps(report["memory"]), flush=True)
    report["runtime_s"] = time.perf_counter() - t_start
    report["cpu_s"] = time.process_time() - c_start
    report["load_average_end"] = list(os.getloadavg())

    args.out.mkdir(parents=True, exist_ok=True)
    stem = "em_vs_sklearn_quick" if args.quick else "em_vs_sklearn"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(report))
    print(f"wrote {args.out / stem}.md and .json", flush=True)
    return report


if __name__ == "__main__":
    main()
