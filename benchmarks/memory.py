"""Peak memory (resident set) of EM and NUTS fits and of the command against N.

Three cases, every run of each in a fresh Python subprocess:

* ``em``: ``GaussianMixtureEM(3, random_state=0).fit(X)`` at D = 2 and D = 5,
  N in ``--sizes`` (default 1e4, 1e5, 1e6);
* ``nuts``: ``GaussianMixtureBayes(3, random_state=0, progressbar=False)
  .fit(X)`` with the default draws, tune and chains (nutpie), D = 2, N in
  ``--nuts-sizes`` (default 1e4, 1e5, 5e5); then ``fit.result_.loo()``. Also
  recorded: whether the pointwise log-likelihood was stored or is computed
  on demand (``result_.attrs["log_likelihood"]``), the resident size of the
  result and the time and peak of ``loo()``;
* ``command``: ``bayes-gmm fit data.csv --out DIR -q`` with the default
  options on a CSV of N x 5 (``--command-sizes``, default 1e4, 1e5, 1e6),
  written by another subprocess to a temporary directory: exit code, wall
  time, peak resident set and the peak relative to the CSV file's size.

The data are ``make_mixture(N, 3, D, separation=4.0, random_state=0)``.

What is measured. An EM or NUTS subprocess reports its own numbers as JSON
on stdout: the resident set right after its imports (``VmRSS``; the import
overhead), after drawing the data, and the peak of each phase (data, fit,
``loo()``) from ``resource.getrusage(RUSAGE_SELF).ru_maxrss``. Before the fit
and before ``loo()`` the peak is reset to the current resident set (writing
``5`` to ``/proc/self/clear_refs``, where allowed), so each phase's peak is
its own; "growth" is a phase's peak minus the resident set when it began
(the data-driven part), and the process peak is the largest of them. The
driver imports only the standard library and takes every child's
``ru_maxrss`` from ``os.wait4`` as well (for the command, the only
measurement; it includes any process the command starts). A child's
``ru_maxrss`` starts from the driver's resident set at the ``exec``
(recorded as ``driver_maxrss_mb``, a few tens of MB: a floor, far below
every peak here). Wall times by ``time.perf_counter``; one BLAS/OpenMP thread
(``OPENBLAS_NUM_THREADS=1``, ``OMP_NUM_THREADS=1`` and
``threadpoolctl.threadpool_limits(1)`` around the fits; the command uses its
``--threads`` default, 1). Memory is in MB = 1e6 bytes.

For the command the driver also samples the main process's ``VmRSS`` every
0.25 s (kept: the largest of each second, ``rss_trace`` in the JSON) and,
from the phase times in the report's ``summary.json`` (``timing_seconds``,
placed back from the end of the run, so approximate to a second), names the
phase in which the sampled peak fell: ``start`` (interpreter and imports),
``read`` (reading the CSV), ``em_grid``, ``bayesian_fits``, ``chosen_model``
(bootstrap, comparison, diagnoses) or ``output`` (figures, files).

Targets (issue "memory"):

* a default NUTS fit at N = 500k, D = 2, K = 3 peaks below 2 GB (the process
  peak through the fit; the peak of ``loo()`` after it is reported beside);
* the default command on a 1e6 x 5 CSV finishes (exit code 0 within
  ``--timeout``); its peak resident set and wall time are reported.

Usage::

    python benchmarks/memory.py                      # all cases, ~1-2 h on 2 cores
    python benchmarks/memory.py --quick              # N = 1e4 only, minutes
    python benchmarks/memory.py --cases em --sizes 1e4 1e5
    python benchmarks/memory.py --timeout 7200 --command-sizes 1e6

A case that runs past ``--timeout`` seconds (default 3600) is killed with
its process group and recorded as a timeout. Results are saved after every
case. Writes ``memory.md`` and ``memory.json`` (``memory_quick.*`` with
``--quick``) in ``--out`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
K = 3
EM_DS = (2, 5)
NUTS_D = 2
COMMAND_D = 5
TARGET_NUTS_N = 500_000
TARGET_NUTS_MB = 2000.0  # 2 GB
TARGET_COMMAND_N = 1_000_000
CASES = ("em", "nuts", "command")

# ------------------------------------------------------------------ children
# Every child gets its parameters as JSON in argv[1] and prints one JSON line.
_PRELUDE = r"""
import json, os, resource, sys, time
_t0 = time.perf_counter()
P = json.loads(sys.argv[1])
sys.path.insert(0, P["repo"])


def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def _peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _data(n, d):
    from bayes_gmm import make_mixture
    t = time.perf_counter()
    X = make_mixture(n, P["K"], d, separation=4.0, random_state=0)[0]
    return X, time.perf_counter() - t
"""

_ENV_CODE = r"""
import importlib.metadata as md
import platform
from threadpoolctl import threadpool_info, threadpool_limits
import numpy
import bayes_gmm
out = {"python": platform.python_version(), "bayes_gmm": bayes_gmm.__version__}
for pkg in ("numpy", "scipy", "pandas", "scikit-learn", "pymc", "pytensor",
            "nutpie", "arviz", "arviz-stats", "xarray", "threadpoolctl"):
    try:
        out[pkg] = md.version(pkg)
    except md.PackageNotFoundError:
        out[pkg] = None
with threadpool_limits(1):
    info = threadpool_info()
out["blas"] = [
    {k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
    for i in info
]
out["blas_threads"] = ",".join(map(str, sorted({i["num_threads"] for i in info})))
print(json.dumps(out))
"""

# After the imports: the baseline, the data, then the peak reset for the fit.
_PRELUDE = r"""
out = {"import_s": time.perf_counter() - _t0, "import_rss_mb": _status("VmRSS"),
       "import_peak_mb": _peak()}
X, out["data_s"] = _data(P["N"], P["D"])
out["data_mb"] = X.nbytes / 1e6
out["data_peak_mb"] = _peak()
out["fit_start_rss_mb"] = _status("VmRSS")
out["peak_reset"] = _reset_peak()
"""

_EM_CODE = r"""
from threadpoolctl import threadpool_limits
from bayes_gmm import GaussianMixtureEM
{prelude}with threadpool_limits(1):
    t = time.perf_counter()
    est = GaussianMixtureEM(P["K"], random_state=0).fit(X)
    out["fit_s"] = time.perf_counter() - t
out["fit_peak_mb"] = _peak()
out["fit_vmhwm_mb"] = _status("VmHWM")
out["n_iter"] = int(getattr(est, "n_iter_", -1))
out["converged"] = bool(getattr(est, "converged_", False))
print(json.dumps(out))
""".replace("{prelude}", _PRELUDE)

_NUTS_CODE = r"""
from threadpoolctl import threadpool_limits
from bayes_gmm import GaussianMixtureBayes
# What a default fit imports lazily, so that the baseline includes it.
import arviz_stats  # noqa: F401
import nutpie  # noqa: F401
import pymc  # noqa: F401
import bayes_gmm._kernel  # noqa: F401
{prelude}with threadpool_limits(1):
    t = time.perf_counter()
    fit = GaussianMixtureBayes(P["K"], random_state=0, progressbar=False).fit(X)
    out["fit_s"] = time.perf_counter() - t
    out["fit_peak_mb"] = _peak()
    out["fit_vmhwm_mb"] = _status("VmHWM")
    res = fit.result_
    out["log_likelihood"] = str(res.attrs.get("log_likelihood"))
    try:
        out["result_mb"] = float(res.datatree.nbytes) / 1e6
    except Exception:
        out["result_mb"] = None
    out["loo_start_rss_mb"] = _status("VmRSS")
    _reset_peak()
    t = time.perf_counter()
    loo = res.loo()
    out["loo_s"] = time.perf_counter() - t
    out["loo_peak_mb"] = _peak()
    elpd = getattr(loo, "elpd", None)
    out["elpd_loo"] = None if elpd is None else float(elpd)
print(json.dumps(out))
""".replace("{prelude}", _PRELUDE)

_CSV_CODE = r"""
import pandas as pd
X, data_s = _data(P["N"], P["D"])
t = time.perf_counter()
cols = [f"x{j + 1}" for j in range(X.shape[1])]
pd.DataFrame(X, columns=cols).to_csv(P["path"], index=False, float_format="%.8g")
print(json.dumps({"data_s": data_s, "write_s": time.perf_counter() - t}))
"""

_CLI_IMPORT_CODE = r"""
import bayes_gmm.cli  # noqa: F401
print(json.dumps({"import_s": time.perf_counter() - _t0,
                  "import_rss_mb": _status("VmRSS"), "import_peak_mb": _peak()}))
"""


def _child_env():
    env = dict(os.environ)
    env["OPENBLAS_NUM_THREADS"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    env.setdefault("MKL_NUM_THREADS", "1")
    return env


def _vmrss(pid):
    """VmRSS of a live process in MB, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return None


def _spawn(argv, timeout, cwd=None, sample=None):
    """Run argv in its own process group and wait for it.

    Returns a dict: exit code (None on timeout: the group is then killed),
    wall s, peak MB (the child's ru_maxrss from os.wait4; it includes the
    child's waited-for descendants), stdout, stderr and, with ``sample``
    (seconds), a trace of the child's own VmRSS, sampled every 0.25 s: the
    largest sample of every ``sample`` seconds, as [seconds since start, MB].
    """
    trace = []
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=cwd,
            env=_child_env(),
            start_new_session=True,
        )
        expired = threading.Event()
        done = threading.Event()

        def _kill():
            expired.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        def _sample():
            bucket, best = 0, None  # best: [seconds, MB] of the bucket's largest
            while not done.wait(min(0.25, sample)):
                rss = _vmrss(proc.pid)
                t = time.perf_counter() - t0
                if int(t // sample) != bucket and best is not None:
                    trace.append(best)
                    best = None
                bucket = int(t // sample)
                if rss is not None and (best is None or rss > best[1]):
                    best = [round(t, 2), round(rss, 1)]
            if best is not None:
                trace.append(best)

        timer = threading.Timer(timeout, _kill)
        timer.start()
        sampler = threading.Thread(target=_sample, daemon=True) if sample else None
        if sampler is not None:
            sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            _kill()
            os.wait4(proc.pid, 0)
            raise
        finally:
            timer.cancel()
            done.set()
            if sampler is not None:
                sampler.join()
        wall = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return {
            "exit_code": None if expired.is_set() else code,
            "wall_s": wall,
            "peak_mb": usage.ru_maxrss * 1024 / 1e6,
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
            "trace": trace,
        }


def _python(code, params, timeout):
    """A child Python on _PRELUDE + code: (dict of what it printed, run info)."""
    argv = [
        sys.executable,
        "-c",
        _PRELUDE + code,
        json.dumps({"repo": str(REPO), "K": K, **params}),
    ]
    sp = _spawn(argv, timeout)
    code_, stdout, stderr = sp["exit_code"], sp["stdout"], sp["stderr"]
    run = {"exit_code": code_, "wall_s": sp["wall_s"], "wait4_peak_mb": sp["peak_mb"]}
    if code_ is None:
        run["status"] = "timeout"
    elif code_ != 0:
        run["status"] = "failed"
    else:
        run["status"] = "ok"
    reported = {}
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                reported = json.loads(line)
            except json.JSONDecodeError:
                continue
            break
    if run["status"] != "ok" or not reported:
        if run["status"] == "ok":
            run["status"] = "failed"
        run["stderr_tail"] = stderr[-2000:]
    return reported, run


# ------------------------------------------------------------------ cases
def _mb(x):
    return None if x is None else round(float(x), 1)


def _fit_fields(r):
    """Derived numbers of an EM or NUTS row (in place)."""
    if "fit_peak_mb" not in r:
        return r
    phases = [r["import_peak_mb"], r["data_peak_mb"], r["fit_peak_mb"]]
    r["fit_growth_mb"] = r["fit_peak_mb"] - r["fit_start_rss_mb"]
    r["process_peak_fit_mb"] = max(phases)
    if "loo_peak_mb" in r:
        r["loo_growth_mb"] = r["loo_peak_mb"] - r["loo_start_rss_mb"]
        phases.append(r["loo_peak_mb"])
    r["process_peak_mb"] = max(phases)
    return r


def case_em(n, d, timeout):
    rep, run = _python(_EM_CODE, {"N": n, "D": d}, timeout)
    return _fit_fields({"case": "em", "N": n, "D": d, "K": K, **run, **rep})


def case_nuts(n, timeout):
    rep, run = _python(_NUTS_CODE, {"N": n, "D": NUTS_D}, timeout)
    return _fit_fields({"case": "nuts", "N": n, "D": NUTS_D, "K": K, **run, **rep})


#: The command's phases, in order, as its summary.json times them.
_PHASES = ("em_grid", "bayesian_fits", "chosen_model", "output")


def _phase_peaks(trace, timing, wall):
    """Largest sampled VmRSS of the command's main process, overall and per
    phase. Phase windows are placed from the end of the run (the timer of
    summary.json starts after the imports): 'start' is the interpreter start
    and imports, 'read' the rest before the EM grid (reading the CSV)."""
    out = {"sampled_peak_mb": None, "sampled_peak_s": None, "peak_phase": None}
    if not trace:
        return out
    t, mb = max(trace, key=lambda x: x[1])
    out.update(sampled_peak_mb=mb, sampled_peak_s=t)
    if not timing or "total" not in timing:
        return out
    begin = wall - timing["total"]
    names = ["start", "read", *[p for p in _PHASES if p in timing]]
    ends = [begin, begin + timing["total"] - sum(timing[p] for p in names[2:])]
    for p in names[2:]:
        ends.append(ends[-1] + timing[p])
    ends[-1] = float("inf")
    peaks = dict.fromkeys(names)
    for ts, m in trace:
        name = next(n for n, e in zip(names, ends, strict=True) if ts < e)
        peaks[name] = m if peaks[name] is None else max(peaks[name], m)
    out["phase_peaks_mb"] = peaks
    out["peak_phase"] = max(
        (n for n in names if peaks[n] is not None), key=lambda n: peaks[n]
    )
    return out


def _console_script():
    script = Path(sys.executable).parent / "bayes-gmm"
    if script.exists():
        return [str(script)]
    return [
        sys.executable,
        "-c",
        "import sys; from bayes_gmm.cli import main; sys.exit(main())",
    ]


def case_command(n, timeout, tmp_root, cli_import):
    row = {"case": "command", "N": n, "D": COMMAND_D, **cli_import}
    with tempfile.TemporaryDirectory(prefix="bayes_gmm_memory_", dir=tmp_root) as tmp:
        csv = Path(tmp) / "data.csv"
        rep, run = _python(
            _CSV_CODE, {"N": n, "D": COMMAND_D, "path": str(csv)}, timeout
        )
        if run["status"] != "ok":
            row.update(status="csv failed", exit_code=run["exit_code"])
            row["stderr_tail"] = run.get("stderr_tail", "")
            return row
        row["csv_mb"] = csv.stat().st_size / 1e6
        row["csv_write_s"] = run["wall_s"]
        argv = [
            *_console_script(),
            "fit",
            str(csv),
            "--out",
            str(Path(tmp) / "rep"),
            "-q",
        ]
        row["argv"] = ["bayes-gmm", *argv[-5:]]
        sp = _spawn(argv, timeout, cwd=tmp, sample=1.0)
        code, peak = sp["exit_code"], sp["peak_mb"]
        row.update(exit_code=code, wall_s=sp["wall_s"], peak_mb=peak)
        row["status"] = "timeout" if code is None else ("ok" if code == 0 else "failed")
        row["peak_over_csv"] = peak / row["csv_mb"]
        if code != 0:
            row["stderr_tail"] = sp["stderr"][-2000:]
        summary = Path(tmp) / "rep" / "summary.json"
        if summary.exists():
            try:
                row["timing_seconds"] = json.loads(summary.read_text()).get(
                    "timing_seconds"
                )
            except (OSError, json.JSONDecodeError):
                pass
        row["rss_trace"] = sp["trace"]
        row.update(_phase_peaks(sp["trace"], row.get("timing_seconds"), sp["wall_s"]))
    return row


# ------------------------------------------------------------------ output
def _n(n):
    """1e4, 5e5, ... where exact, else the integer."""
    m, e = f"{n:.0e}".split("e")
    return f"{m}e{int(e)}" if int(m) * 10 ** int(e) == n else str(n)


def _fmt(x, spec=".1f"):
    return "-" if x is None else format(x, spec)


def _status_text(r):
    if r.get("status") == "timeout":
        return f"timeout ({r['wall_s']:.0f} s)"
    code = r.get("exit_code")
    if r.get("status") == "failed" and code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else ""
        return f"killed by signal {-code} {name}".strip()
    return r.get("status", "?")


def _em_lines(rows):
    head = [
        "| N | D | status | import RSS MB | data MB | RSS with data MB | fit peak MB "
        "| fit growth MB | process peak MB | wait4 peak MB | fit s | iterations |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    body = [
        f"| {_n(r['N'])} | {r['D']} | {_status_text(r)} "
        f"| {_fmt(r.get('import_rss_mb'))} "
        f"| {_fmt(r.get('data_mb'))} | {_fmt(r.get('fit_start_rss_mb'))} "
        f"| {_fmt(r.get('fit_peak_mb'))} | {_fmt(r.get('fit_growth_mb'))} "
        f"| {_fmt(r.get('process_peak_mb'))} | {_fmt(r.get('wait4_peak_mb'))} "
        f"| {_fmt(r.get('fit_s'), '.2f')} | {r.get('n_iter', '-')} |"
        for r in rows
    ]
    return head + body


def _nuts_lines(rows):
    head = [
        "| N | D | status | import RSS MB | data MB | fit peak MB | fit growth MB "
        "| result MB | log-lik | fit s | loo s | loo peak MB | loo growth MB "
        "| process peak MB | wait4 peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    body = [
        f"| {_n(r['N'])} | {r['D']} | {_status_text(r)} "
        f"| {_fmt(r.get('import_rss_mb'))} "
        f"| {_fmt(r.get('data_mb'))} | {_fmt(r.get('fit_peak_mb'))} "
        f"| {_fmt(r.get('fit_growth_mb'))} | {_fmt(r.get('result_mb'))} "
        f"| {r.get('log_likelihood', '-')} | {_fmt(r.get('fit_s'))} "
        f"| {_fmt(r.get('loo_s'))} | {_fmt(r.get('loo_peak_mb'))} "
        f"| {_fmt(r.get('loo_growth_mb'))} | {_fmt(r.get('process_peak_mb'))} "
        f"| {_fmt(r.get('wait4_peak_mb'))} |"
        for r in rows
    ]
    return head + body


def _timing(r, key):
    return (r.get("timing_seconds") or {}).get(key)


def _command_lines(rows):
    head = [
        "| N x D | status | exit code | CSV MB | import RSS MB | peak MB "
        "| peak / CSV | peak phase (sampled MB) | wall s | EM grid s "
        "| Bayesian fits s | chosen model s | CSV write s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    body = [
        f"| {_n(r['N'])} x {r['D']} | {_status_text(r)} | {r.get('exit_code')} "
        f"| {_fmt(r.get('csv_mb'))} | {_fmt(r.get('import_rss_mb'))} "
        f"| {_fmt(r.get('peak_mb'))} | {_fmt(r.get('peak_over_csv'), '.2f')} "
        f"| {r.get('peak_phase') or '-'} ({_fmt(r.get('sampled_peak_mb'))}) "
        f"| {_fmt(r.get('wall_s'))} | {_fmt(_timing(r, 'em_grid'))} "
        f"| {_fmt(_timing(r, 'bayesian_fits'))} | {_fmt(_timing(r, 'chosen_model'))} "
        f"| {_fmt(r.get('csv_write_s'))} |"
        for r in rows
    ]
    return head + body


def targets(rows):
    out = {}
    nuts = [r for r in rows if r["case"] == "nuts" and r["N"] == TARGET_NUTS_N]
    if not nuts:
        out["nuts_500k_below_2GB"] = {"result": "NOT RUN"}
    else:
        r = nuts[0]
        peak = r.get("process_peak_fit_mb")
        ok = r["status"] == "ok" and peak is not None and peak < TARGET_NUTS_MB
        out["nuts_500k_below_2GB"] = {
            "result": "PASS" if ok else "FAIL",
            "status": r["status"],
            "peak_fit_mb": _mb(peak),
            "peak_with_loo_mb": _mb(r.get("process_peak_mb")),
            "loo_below_2GB": (
                None
                if r.get("process_peak_mb") is None
                else bool(r["process_peak_mb"] < TARGET_NUTS_MB)
            ),
            "log_likelihood": r.get("log_likelihood"),
            "fit_s": r.get("fit_s"),
        }
    cmd = [r for r in rows if r["case"] == "command" and r["N"] == TARGET_COMMAND_N]
    if not cmd:
        out["command_1e6x5_finishes"] = {"result": "NOT RUN"}
    else:
        r = cmd[0]
        out["command_1e6x5_finishes"] = {
            "result": "PASS" if r.get("exit_code") == 0 else "FAIL",
            "status": r["status"],
            "exit_code": r.get("exit_code"),
            "wall_s": r.get("wall_s"),
            "peak_mb": _mb(r.get("peak_mb")),
            "peak_over_csv": r.get("peak_over_csv"),
        }
    return out


def _target_lines(tg):
    a, b = tg["nuts_500k_below_2GB"], tg["command_1e6x5_finishes"]
    lines = [
        "* Default NUTS fit, N = 500k, D = 2, K = 3, peak below 2 GB: "
        f"**{a['result']}**"
    ]
    if "peak_fit_mb" in a:
        lines[-1] += (
            f" ({a['status']}; peak through the fit {_fmt(a['peak_fit_mb'])} MB, "
            f"with loo() {_fmt(a['peak_with_loo_mb'])} MB; log-likelihood "
            f"{a['log_likelihood']}; fit {_fmt(a['fit_s'])} s)"
        )
    lines.append(f"* Default command on a 1e6 x 5 CSV finishes: **{b['result']}**")
    if "exit_code" in b:
        lines[-1] += (
            f" ({b['status']}; exit code {b['exit_code']}, wall "
            f"{_fmt(b['wall_s'])} s, peak {_fmt(b['peak_mb'])} MB = "
            f"{_fmt(b['peak_over_csv'], '.2f')} x the CSV)"
        )
    return lines


def markdown(rows, tg, meta):
    env = meta["env"]
    lines = [
        "# Peak memory against N (benchmarks/memory.py)",
        "",
        f"bayes_gmm {env.get('bayes_gmm')} (commit {meta['commit']}), numpy "
        f"{env.get('numpy')}, pymc {env.get('pymc')}, nutpie {env.get('nutpie')}, "
        f"arviz {env.get('arviz')}, Python {env.get('python')}; "
        f"{env.get('blas_threads')} BLAS thread(s) (threadpoolctl), "
        f"{meta['cpu_count']} CPUs ({meta['cpus_usable']} usable), "
        f"{_fmt(meta['mem_total_mb'], '.0f')} MB memory; {meta['date']}. "
        "Every run in a fresh subprocess; MB = 1e6 bytes. Peaks are "
        "`ru_maxrss`, reset (clear_refs) before the fit and before loo() so "
        "that each phase's peak is its own; growth = phase peak - resident "
        "set when the phase began; process peak = the largest phase peak; "
        "wait4 peak = the child's ru_maxrss seen by the driver (after the "
        "last reset; for the command, its peak). Peak phase: the command's "
        "phase holding the largest sampled VmRSS (every 0.25 s, main process). "
        "Data: make_mixture(N, 3, D, separation=4, random_state=0).",
        "",
        f"Command: `{meta['command']}`",
        "",
        "## Targets",
        "",
        *_target_lines(tg),
    ]
    for case, title, fn in (
        ("em", "EM: `GaussianMixtureEM(3, random_state=0).fit(X)`", _em_lines),
        (
            "nuts",
            "NUTS: `GaussianMixtureBayes(3, random_state=0, progressbar=False)"
            ".fit(X)` (defaults: nutpie, 4 chains x 1000 + 1000), then "
            "`result_.loo()`",
            _nuts_lines,
        ),
        (
            "command",
            "Command: `bayes-gmm fit data.csv --out DIR -q` (defaults); import "
            "RSS = a process that imports `bayes_gmm.cli`",
            _command_lines,
        ),
    ):
        sel = [r for r in rows if r["case"] == case]
        if sel:
            lines += ["", f"## {title}", "", *fn(sel)]
    return "\n".join(lines) + "\n"


def _say(r):
    if r["case"] == "command":
        print(
            f"command N={r['N']:<8} {_status_text(r):<16} exit {r.get('exit_code')}  "
            f"CSV {_fmt(r.get('csv_mb'))} MB  peak {_fmt(r.get('peak_mb'))} MB "
            f"({_fmt(r.get('peak_over_csv'), '.2f')} x CSV)  wall "
            f"{_fmt(r.get('wall_s'))} s",
            flush=True,
        )
        return
    extra = ""
    if r["case"] == "nuts":
        extra = (
            f"  log-lik {r.get('log_likelihood')}  loo {_fmt(r.get('loo_s'))} s "
            f"peak {_fmt(r.get('loo_peak_mb'))} MB"
        )
    print(
        f"{r['case']:>7} N={r['N']:<8} D={r['D']} {_status_text(r):<16} import "
        f"{_fmt(r.get('import_rss_mb'))} MB  data {_fmt(r.get('data_mb'))} MB  "
        f"fit peak {_fmt(r.get('fit_peak_mb'))} MB (+{_fmt(r.get('fit_growth_mb'))})  "
        f"fit {_fmt(r.get('fit_s'), '.2f')} s{extra}",
        flush=True,
    )
    if r.get("stderr_tail"):
        print(
            "   stderr: " + r["stderr_tail"].strip().splitlines()[-1][:300], flush=True
        )


def _git(*args):
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _meta(argv, env):
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    dirty = _git("status", "--porcelain", "--", "bayes_gmm")
    return {
        "env": env,
        "commit": (_git("rev-parse", "--short", "HEAD") or "?")
        + (" + uncommitted bayes_gmm changes" if dirty else ""),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "mem_total_mb": mem,
        "driver_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        * 1024
        / 1e6,
        "command": "python benchmarks/memory.py " + " ".join(argv),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def _sizes(values):
    return [int(float(v)) for v in values]


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N = 1e4 only, every case")
    ap.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    ap.add_argument("--sizes", nargs="+", default=["1e4", "1e5", "1e6"], help="EM N")
    ap.add_argument("--nuts-sizes", nargs="+", default=["1e4", "1e5", "5e5"])
    ap.add_argument("--command-sizes", nargs="+", default=["1e4", "1e5", "1e6"])
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per case")
    ap.add_argument("--tmpdir", default=None, help="where the CSV files go")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    sizes = {
        "em": _sizes(args.sizes),
        "nuts": _sizes(args.nuts_sizes),
        "command": _sizes(args.command_sizes),
    }
    if args.quick:
        sizes = {c: [10_000] for c in CASES}
    stem = "memory_quick" if args.quick else "memory"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    env, run = _python(_ENV_CODE, {}, 600)
    if run["status"] != "ok":
        sys.exit("environment probe failed:\n" + run.get("stderr_tail", ""))
    meta = _meta(argv, env)
    print(
        f"bayes_gmm {env['bayes_gmm']}, numpy {env['numpy']}, nutpie {env['nutpie']}; "
        f"BLAS threads {env['blas_threads']}; {meta['cpus_usable']} CPUs",
        flush=True,
    )
    rows = []

    def save():
        tg = targets(rows)
        (out / f"{stem}.json").write_text(
            json.dumps({"meta": meta, "targets": tg, "rows": rows}, indent=1) + "\n"
        )
        (out / f"{stem}.md").write_text(markdown(rows, tg, meta))
        return tg

    if "em" in args.cases:
        for n in sizes["em"]:
            for d in EM_DS:
                rows.append(case_em(n, d, args.timeout))
                _say(rows[-1])
                save()
    if "nuts" in args.cases:
        for n in sizes["nuts"]:
            rows.append(case_nuts(n, args.timeout))
            _say(rows[-1])
            save()
    if "command" in args.cases:
        cli, run = _python(_CLI_IMPORT_CODE, {}, 600)
        cli_import = {"import_rss_mb": cli.get("import_rss_mb")}
        for n in sizes["command"]:
            rows.append(case_command(n, args.timeout, args.tmpdir, cli_import))
            _say(rows[-1])
            save()
    tg = save()
    print()
    print(markdown(rows, tg, meta))
    print(f"wrote {out / (stem + '.md')} and {out / (stem + '.json')}")


if __name__ == "__main__":
    main()
