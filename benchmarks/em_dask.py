"""EM on Dask against in-memory EM: time per iteration and peak memory against N.

The grid (issue "EM on Dask"): N in {1e6, 1e7, 1e8} rows, D = 10 features,
K = 5 components, covariance ``full`` and ``diag``, chunks of 1e6 rows.

* **Data.** A dask array made by ``da.map_blocks`` from a seeded generator:
  block ``i`` is drawn from ``np.random.default_rng([seed, i])`` (a fixed
  5-component mixture in 10-D: multinomial counts, then each component's
  rows as ``mu_k + L_k z``), so every block is reproducible and the array is
  never held whole; every pass over it generates its blocks again, as a
  pass over a store reads them again. The in-memory numpy fits get the very
  same rows (the blocks written one by one into one preallocated array).
* **Engines.** ``numpy``: ``GaussianMixtureEM.fit`` on the materialised
  array (N <= 1e7 only). ``dask``: the fit on the generated dask array.
  ``dask-mem``: the same array persisted first (its blocks held in memory,
  N <= 1e7 only), the engine's own cost without the generation of the data.
  All fits: ``n_components=5, n_init=1, random_state=0, tol=0,
  max_iter=1 + iters``, the default start search.
* **Per-iteration time.** A logging handler on logger ``"bayes_gmm"``
  (DEBUG) stamps every per-iteration record with the wall clock and the CPU
  time: ``"dask pass i over b blocks ..."`` (emitted after pass ``i`` and
  its M-step) for dask input, ``"init 1, iteration i: ..."`` for numpy. The
  interval between the records of iterations ``i`` and ``i + 1`` is exactly
  one EM iteration (E-step pass, statistics, M-step), without the first
  pass over the data, the row sample, the start search and the first
  iteration; the median of the ``iters`` intervals is reported. One fit per
  case suffices (no difference of two fits).
* **Generation cost.** For ``dask``, a pass that only generates every block
  (``map_blocks`` returning one value per block) is timed too (best of 2);
  ``net`` = s/iter minus that, the cost of the engine on data that costs
  nothing to read.
* **Time** is CPU time of the process (``time.process_time``: all its
  threads; under ``--scheduler distributed`` the driver's plus every
  worker's, read with ``client.run``), with one BLAS/OpenMP thread per
  worker (threadpoolctl, and ``OPENBLAS_NUM_THREADS=1`` in the child). The
  numpy fit runs on one thread; Dask's threaded scheduler uses
  ``--workers`` threads (default: the CPU count), so wall times (also
  recorded) favour Dask and CPU time is the fair cost. Ratio = dask / numpy
  (CPU), above 1 means Dask costs more.
* **Peak memory.** Every (N, type, engine) case runs in a fresh subprocess
  and reports its peak resident set, ``VmHWM`` of ``/proc/self/status``
  (``ru_maxrss`` is recorded too, but it is not used: a child started by
  ``subprocess`` inherits its parent's peak). With the default threaded
  scheduler the driver is the workers. ``--scheduler distributed`` starts a
  ``LocalCluster(n_workers=2, threads_per_worker=1)`` (worker processes) in
  the child and reports each worker's ``VmHWM`` too (``client.run``); the
  memory target is then checked on the sum of all peaks.

Targets (printed PASS / FAIL / SKIP):

1. At N = 1e7 a Dask iteration costs at most 1.5x the in-memory one, per
   covariance type: checked on ``dask-mem`` (engine alone), and on ``dask``
   net of generation; the raw ``dask`` ratio (generation included) is shown.
2. At N = 1e8 (8 GB) the fit completes with peak memory under 2 GB.
3. Cost grows linearly in N: for ``dask``, the CPU cost per row of an
   iteration at every N is within a factor 1.25 of that at every other N
   (the log-log slope over N is shown as well).

Usage::

    python benchmarks/em_dask.py                 # full grid, ~10 min on 2 idle cores
    python benchmarks/em_dask.py --quick         # N = 1e5, 1e6, chunks 1e5
    python benchmarks/em_dask.py --sizes 1e7 --types diag
    python benchmarks/em_dask.py --scheduler distributed

Writes ``em_dask.md`` and ``em_dask.json`` in ``--out`` (default
``benchmarks/results``; ``--quick`` writes ``em_dask_quick.*``, the
distributed scheduler ``em_dask_distributed*``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

K, D = 5, 10
SEED = 2024
RATIO_TARGET = 1.5
MEMORY_TARGET_MB = 2000.0
LINEAR_TOLERANCE = 1.25
IN_MEMORY_MAX_N = 10**7  # numpy and dask-mem cases: N <= 1e7 (the data is held)
_ITER_RE = {
    "dask": re.compile(r"^dask pass (\d+) over"),
    "numpy": re.compile(r"^init 1, iteration (\d+):"),
}


# ----------------------------------------------------------------------- data
def mixture(seed=SEED):
    """The true mixture: weights, means (K, D), covariance Cholesky factors."""
    rng = np.random.default_rng([seed, 10**9])
    weights = rng.dirichlet(np.full(K, 5.0))
    means = rng.uniform(-5.0, 5.0, (K, D))
    a = rng.normal(0.0, 0.5, (K, D, D)) + np.eye(D)
    cov = a @ a.transpose(0, 2, 1) / D + 0.2 * np.eye(D)
    return weights, means, np.linalg.cholesky(cov)


def block(seed, index, rows, weights, means, chol):
    """Rows of block ``index``: the same for the same (seed, index, rows)."""
    rng = np.random.default_rng([seed, index])
    counts = rng.multinomial(rows, weights)
    out = rng.standard_normal((rows, D))
    start = 0
    for k, c in enumerate(counts):  # in place: one block and one segment held
        part = out[start : start + c]
        part[...] = part @ chol[k].T
        part += means[k]
        start += c
    return out


def _row_chunks(n, chunk):
    full, rest = divmod(n, chunk)
    return (chunk,) * full + ((rest,) if rest else ())


def _generated_block(seed, weights, means, chol, chunks, block_id=None):
    i = block_id[0]
    return block(seed, i, chunks[i], weights, means, chol)


def dask_data(n, chunk, seed=SEED):
    """The (n, D) dask array, one generated block of ``chunk`` rows per task."""
    import dask.array as da

    rows = _row_chunks(n, chunk)
    weights, means, chol = mixture(seed)
    return da.map_blocks(
        _generated_block,
        seed,
        weights,
        means,
        chol,
        rows,
        chunks=(rows, (D,)),
        dtype=np.float64,
        meta=np.empty((0, D)),
        name=f"em-dask-data-{seed}-{n}-{chunk}",
    )


def numpy_data(n, chunk, seed=SEED):
    """The same rows in one numpy array, filled block by block."""
    weights, means, chol = mixture(seed)
    X = np.empty((n, D))
    start = 0
    for i, rows in enumerate(_row_chunks(n, chunk)):
        X[start : start + rows] = block(seed, i, rows, weights, means, chol)
        start += rows
    return X


def _first_value(x):
    return x[:1, :1].copy()


# ------------------------------------------------------------------- one case
def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def _limit_blas():
    """One BLAS thread in this (worker) process; the thread counts then."""
    from threadpoolctl import threadpool_info, threadpool_limits

    _limit_blas.keep = threadpool_limits(1)  # kept: the limit stays in force
    return sorted({i["num_threads"] for i in threadpool_info()})


def _worker_memory():
    return {"VmHWM": _status_kib("VmHWM"), "VmRSS": _status_kib("VmRSS")}


class _Stamps(logging.Handler):
    """(iteration, wall, cpu) of every per-iteration record of the fit."""

    def __init__(self, pattern, cpu):
        super().__init__(logging.DEBUG)
        self.pattern, self.cpu, self.stamps = pattern, cpu, []

    def emit(self, record):
        m = self.pattern.match(record.getMessage())
        if m:
            self.stamps.append((int(m.group(1)), time.perf_counter(), self.cpu()))


def run_case(case):
    """Fit one (N, type, engine) case in this (fresh) process; a dict."""
    import dask
    from threadpoolctl import threadpool_info, threadpool_limits

    from bayes_gmm import GaussianMixtureEM

    n, ct, engine = case["N"], case["type"], case["engine"]
    distributed = case["scheduler"] == "distributed" and engine != "numpy"
    out = dict(case)
    client = cluster = None
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["blas_threads"] = sorted({i["num_threads"] for i in threadpool_info()})
        if distributed:
            from distributed import Client, LocalCluster

            cluster = LocalCluster(
                n_workers=case["workers"],
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
            )
            client = Client(cluster)
            out["worker_blas_threads"] = sorted(
                set().union(*client.run(_limit_blas).values())
            )

            def cpu():
                workers = client.run(time.process_time)
                return time.process_time() + sum(workers.values())

            config = {}
        else:
            cpu = time.process_time
            config = {"scheduler": "threads", "num_workers": case["workers"]}
        with dask.config.set(config):
            out["rss_baseline_mib"] = _status_kib("VmRSS") / 1024
            if engine == "numpy":
                X = numpy_data(n, case["chunk"], case["seed"])
            else:
                X = dask_data(n, case["chunk"], case["seed"])
                if engine == "dask-mem":
                    X = X.persist()
                    if client is not None:
                        from distributed import wait

                        wait(X)
            out["blocks"] = len(_row_chunks(n, case["chunk"]))
            handler = _Stamps(_ITER_RE["numpy" if engine == "numpy" else "dask"], cpu)
            log = logging.getLogger("bayes_gmm")
            log.setLevel(logging.DEBUG)
            log.addHandler(handler)
            est = GaussianMixtureEM(
                K,
                covariance_type=ct,
                n_init=1,
                tol=0.0,
                max_iter=1 + case["iters"],
                random_state=0,
            )
            w0, c0 = time.perf_counter(), cpu()
            est.fit(X)
            out["fit_wall_s"] = time.perf_counter() - w0
            out["fit_cpu_s"] = cpu() - c0
            log.removeHandler(handler)
            its = [s[0] for s in handler.stamps]
            if its != list(range(1, case["iters"] + 2)):
                raise RuntimeError(f"unexpected iteration records: {its}")
            wall = np.diff([s[1] for s in handler.stamps])
            cpus = np.diff([s[2] for s in handler.stamps])
            out["iter_wall_s"] = wall.tolist()
            out["iter_cpu_s"] = cpus.tolist()
            out["s_per_iter_wall"] = float(np.median(wall))
            out["s_per_iter_cpu"] = float(np.median(cpus))
            out["n_iter"] = int(est.n_iter_)
            out["n_iter_search"] = int(est.n_iter_search_)
            out["lower_bound"] = float(est.lower_bound_)
            if engine == "dask":
                touch = X.map_blocks(
                    _first_value,
                    chunks=((1,) * X.numblocks[0], (1,)),
                    dtype=np.float64,
                )
                gen = []
                for _ in range(2):
                    w0, c0 = time.perf_counter(), cpu()
                    touch.compute()
                    gen.append((time.perf_counter() - w0, cpu() - c0))
                out["gen_wall_s"] = min(g[0] for g in gen)
                out["gen_cpu_s"] = min(g[1] for g in gen)
                out["net_s_per_iter_cpu"] = out["s_per_iter_cpu"] - out["gen_cpu_s"]
                out["net_s_per_iter_wall"] = out["s_per_iter_wall"] - out["gen_wall_s"]
            del X
        out["driver_peak_mib"] = _status_kib("VmHWM") / 1024
        out["ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if client is not None:
            mem = client.run(_worker_memory)
            out["worker_peak_mib"] = [m["VmHWM"] / 1024 for m in mem.values()]
            out["dashboard"] = client.dashboard_link
            client.close()
            cluster.close()
        out["peak_mib"] = out["driver_peak_mib"] + sum(out.get("worker_peak_mib", []))
    return out


def run_in_subprocess(case):
    """``run_case`` in a fresh interpreter (its own peak resident set)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, __file__, "--case", json.dumps(case)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {**case, "error": (proc.stderr or proc.stdout).strip()[-3000:]}
    return json.loads(lines[-1][len("RESULT ") :])


# -------------------------------------------------------------------- targets
def _find(rows, n, ct, engine):
    for r in rows:
        if (r["N"], r["type"], r["engine"]) == (n, ct, engine) and "error" not in r:
            return r
    return None


def add_ratios(rows):
    for r in rows:
        ref = _find(rows, r["N"], r["type"], "numpy")
        if "error" in r or ref is None or r["engine"] == "numpy":
            continue
        r["ratio_cpu"] = r["s_per_iter_cpu"] / ref["s_per_iter_cpu"]
        r["ratio_wall"] = r["s_per_iter_wall"] / ref["s_per_iter_wall"]
        if "net_s_per_iter_cpu" in r:
            r["net_ratio_cpu"] = r["net_s_per_iter_cpu"] / ref["s_per_iter_cpu"]


def targets(rows, types):
    out = []
    common = sorted(
        {r["N"] for r in rows if r["engine"] == "numpy" and "error" not in r}
    )
    n1 = 10**7 if 10**7 in common else (common[-1] if common else None)
    for ct in types:
        for engine, key in (("dask-mem", "ratio_cpu"), ("dask", "net_ratio_cpu")):
            r = _find(rows, n1, ct, engine) if n1 else None
            name = f"T1 N={n1:.0e} {ct} {engine}" if n1 else f"T1 {ct} {engine}"
            if r is None or key not in r:
                out.append({"target": name, "status": "SKIP", "detail": "not run"})
                continue
            v = r[key]
            what = "engine alone" if engine == "dask-mem" else "net of generation"
            detail = (
                f"dask/numpy CPU per iteration = {v:.2f} ({what}) <= {RATIO_TARGET}"
            )
            if engine == "dask":
                detail += f"; with generation {r['ratio_cpu']:.2f}"
            if n1 != 10**7:
                detail += " [at N=1e7 only in the full run]"
            out.append(
                {
                    "target": name,
                    "status": "PASS" if v <= RATIO_TARGET else "FAIL",
                    "value": v,
                    "detail": detail,
                }
            )
    for ct in types:
        done = [r for r in rows if r["engine"] == "dask" and r["type"] == ct]
        big = [r for r in done if r["N"] == 10**8]
        name = f"T2 N=1e8 {ct} peak memory"
        if not big:
            largest = max(done, key=lambda r: r["N"], default=None)
            detail = "N=1e8 not run"
            if largest is not None and "error" not in largest:
                detail += (
                    f"; at N={largest['N']:.0e}: {largest['peak_mib']:.0f} MiB peak"
                )
            out.append({"target": name, "status": "SKIP", "detail": detail})
            continue
        r = big[0]
        if "error" in r:
            out.append({"target": name, "status": "FAIL", "detail": "fit failed"})
            continue
        mb = r["peak_mib"] * 1.048576  # MB
        out.append(
            {
                "target": name,
                "status": "PASS" if mb < MEMORY_TARGET_MB else "FAIL",
                "value": mb,
                "detail": f"peak {mb:.0f} MB (< {MEMORY_TARGET_MB:.0f} MB), "
                f"fit {r['fit_wall_s']:.0f} s wall",
            }
        )
    for ct in types:
        done = sorted(
            (r for r in rows if r["engine"] == "dask" and r["type"] == ct),
            key=lambda r: r["N"],
        )
        done = [r for r in done if "error" not in r]
        name = f"T3 {ct} linear in N"
        if len(done) < 2:
            out.append({"target": name, "status": "SKIP", "detail": "< 2 sizes"})
            continue
        per_row = [r["s_per_iter_cpu"] / r["N"] for r in done]
        spread = max(per_row) / min(per_row)
        slope = np.polyfit(
            np.log([r["N"] for r in done]),
            np.log([r["s_per_iter_cpu"] for r in done]),
            1,
        )[0]
        per_row_text = ", ".join(
            f"{r['N']:.0e}: {1e9 * p:.0f}" for r, p in zip(done, per_row, strict=True)
        )
        out.append(
            {
                "target": name,
                "status": "PASS" if spread <= LINEAR_TOLERANCE else "FAIL",
                "value": spread,
                "detail": f"CPU ns per row and iteration {per_row_text}; max/min "
                f"{spread:.2f} <= {LINEAR_TOLERANCE}; log-log slope {slope:.3f}",
            }
        )
    return out


# -------------------------------------------------------------------- reports
def _f(v, fmt):
    return "" if v is None else format(v, fmt)


def table_rows(rows):
    yield (
        "N",
        "type",
        "engine",
        "blocks",
        "s/iter CPU",
        "s/iter wall",
        "gen s/pass CPU",
        "net s/iter CPU",
        "dask/numpy CPU",
        "net dask/numpy",
        "peak RSS MiB",
        "fit s wall",
    )
    for r in rows:
        if "error" in r:
            yield (f"{r['N']:.0e}", r["type"], r["engine"], "FAILED", *[""] * 8)
            continue
        peak = f"{r['peak_mib']:.0f}"
        if "worker_peak_mib" in r:
            peak += " (driver {:.0f} + workers {})".format(
                r["driver_peak_mib"],
                " + ".join(f"{m:.0f}" for m in r["worker_peak_mib"]),
            )
        yield (
            f"{r['N']:.0e}",
            r["type"],
            r["engine"],
            str(r["blocks"]),
            _f(r["s_per_iter_cpu"], ".4f"),
            _f(r["s_per_iter_wall"], ".4f"),
            _f(r.get("gen_cpu_s"), ".4f"),
            _f(r.get("net_s_per_iter_cpu"), ".4f"),
            _f(r.get("ratio_cpu"), ".2f"),
            _f(r.get("net_ratio_cpu"), ".2f"),
            peak,
            _f(r["fit_wall_s"], ".1f"),
        )


def print_table(rows):
    cells = list(table_rows(rows))
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    for c in cells:
        print("  ".join(x.rjust(w) for x, w in zip(c, widths, strict=True)))


def markdown(report):
    meta = report["meta"]
    cells = list(table_rows(report["rows"]))
    lines = [
        "# EM on Dask against in-memory EM (benchmarks/em_dask.py)",
        "",
        f"D = {D}, K = {K}, chunks of {meta['chunk']:.0e} rows, data generated "
        f"blockwise (seed {meta['seed']}), `tol=0`, median of {meta['iters']} "
        f"iterations; scheduler `{meta['scheduler']}` with {meta['workers']} "
        f"worker(s); {meta['blas_threads']} BLAS thread(s) per worker "
        "(threadpoolctl). CPU time of the process (plus the workers' under "
        "distributed); `gen` = a pass that only generates the blocks; `net` = "
        "s/iter - gen; peak RSS = VmHWM of a fresh subprocess per case.",
        "",
        f"bayes_gmm {meta['bayes_gmm']}, dask {meta['dask']}, distributed "
        f"{meta['distributed']}, numpy {meta['numpy']}, Python {meta['python']}; "
        f"{meta['processor']}, {meta['n_cpus']} CPUs, {meta['memory_gib']:.0f} GiB; "
        f"load average before {meta['load_average']}.",
        "",
        f"Command: `{meta['command']}` ({meta['date']}, {meta['total_s']:.0f} s)",
        "",
        "## Targets",
        "",
        "| target | status | detail |",
        "|---|---|---|",
    ]
    for t in report["targets"]:
        lines.append(f"| {t['target']} | {t['status']} | {t['detail']} |")
    lines += ["", "## Cases", ""]
    lines.append("| " + " | ".join(cells[0]) + " |")
    lines.append("|" + "---|" * len(cells[0]))
    for c in cells[1:]:
        lines.append("| " + " | ".join(c) + " |")
    errors = [r for r in report["rows"] if "error" in r]
    for r in errors:
        lines += ["", f"Error in N={r['N']} {r['type']} {r['engine']}:", "", "```"]
        lines += [r["error"], "```"]
    return "\n".join(lines) + "\n"


def environment(args):
    import dask
    import distributed
    from threadpoolctl import threadpool_info, threadpool_limits

    import bayes_gmm

    with threadpool_limits(1):
        info = threadpool_info()
    pkg = Path(bayes_gmm.__file__).resolve().parent
    commit = subprocess.run(
        ["git", "-C", str(pkg), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    processor = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                processor = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "bayes_gmm": f"{bayes_gmm.__version__} ({commit or 'no git'})",
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": processor,
        "n_cpus": os.cpu_count(),
        "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "blas_threads": ",".join(str(i["num_threads"]) for i in info),
        "threadpools": info,
        "scheduler": args.scheduler,
        "workers": args.workers,
        "chunk": args.chunk,
        "seed": args.seed,
        "iters": args.iters,
        "D": D,
        "K": K,
        "command": "python benchmarks/em_dask.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def _size(text):
    v = float(text)
    if v != int(v) or v < 2:
        raise argparse.ArgumentTypeError(f"not a row count: {text}")
    return int(v)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=_size, default=None)
    ap.add_argument("--types", nargs="+", default=["full", "diag"])
    ap.add_argument(
        "--engines",
        nargs="+",
        default=["numpy", "dask", "dask-mem"],
        choices=["numpy", "dask", "dask-mem"],
    )
    ap.add_argument("--iters", type=int, default=5, help="iterations timed per fit")
    ap.add_argument("--chunk", type=_size, default=None, help="rows per block")
    ap.add_argument(
        "--scheduler", choices=["threads", "distributed"], default="threads"
    )
    ap.add_argument("--workers", type=int, default=None, help="threads / workers")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--quick", action="store_true", help="N = 1e5, 1e6, chunks 1e5")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:
        print("RESULT " + json.dumps(run_case(json.loads(args.case))), flush=True)
        return
    if args.sizes is None:
        args.sizes = [10**5, 10**6] if args.quick else [10**6, 10**7, 10**8]
    if args.chunk is None:
        args.chunk = 10**5 if args.quick else 10**6
    if args.workers is None:
        args.workers = 2 if args.scheduler == "distributed" else os.cpu_count()
    t_start = time.perf_counter()
    meta = environment(args)
    rows = []
    for n in sorted(args.sizes):
        for ct in args.types:
            for engine in args.engines:
                if engine != "dask" and n > IN_MEMORY_MAX_N:
                    continue
                case = {
                    "N": n,
                    "type": ct,
                    "engine": engine,
                    "iters": args.iters,
                    "chunk": min(args.chunk, n),
                    "seed": args.seed,
                    "scheduler": args.scheduler,
                    "workers": args.workers,
                }
                t0 = time.perf_counter()
                r = run_in_subprocess(case)
                rows.append(r)
                took = time.perf_counter() - t0
                if "error" in r:
                    print(f"N={n:.0e} {ct:4} {engine:8} FAILED ({took:.0f} s)")
                    print(r["error"], flush=True)
                else:
                    print(
                        f"N={n:.0e} {ct:4} {engine:8} {r['s_per_iter_cpu']:.4f} s/iter "
                        f"CPU ({r['s_per_iter_wall']:.4f} wall), peak "
                        f"{r['peak_mib']:.0f} MiB, case {took:.0f} s",
                        flush=True,
                    )
    add_ratios(rows)
    checks = targets(rows, args.types)
    meta["total_s"] = time.perf_counter() - t_start
    report = {"meta": meta, "targets": checks, "rows": rows}
    print()
    print_table(rows)
    print()
    for t in checks:
        print(f"{t['status']:4}  {t['target']}: {t['detail']}")
    stem = "em_dask"
    if args.scheduler == "distributed":
        stem += "_distributed"
    if args.quick:
        stem += "_quick"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / f"{stem}.md").write_text(markdown(report))
    print(f"\nwrote {out / stem}.md and .json")


if __name__ == "__main__":
    main()
