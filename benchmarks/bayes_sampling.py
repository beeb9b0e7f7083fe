"""Time-to-result of the Bayesian mixture: our model vs the naive PyMC model.

Side by side, in one run, on two synthetic data sets (D=2, K=3, N=600 and
D=5, K=4, N=2000, full covariances, ``make_mixture`` with separation 4):

* ``ours/*``   our model (:func:`bayes_gmm.build_model`: the marginal
  likelihood by one vectorised log-sum-exp over components) sampled by
  nutpie on the hand-written numba log density and gradient of
  :mod:`bayes_gmm._kernel` (``ours/nutpie``, the package default: compiled
  once per installation and cached on disk, nothing compiled per fit), by
  nutpie on the model's PyTensor graph compiled to numba
  (``ours/nutpie-pytensor``, the previous default), and by PyMC's own NUTS
  on PyTensor's numba backend (``pymc-numba``, what ``pm.sample()`` uses by
  default) or its C backend (``pymc-c``);
* ``naive/*``  the textbook formulation: ``pm.Mixture`` over a list of K
  ``pm.MvNormal.dist``, one ``pm.LKJCholeskyCov`` per component, the same
  priors (on the standardised data), the same free variables and the same
  starts, with the same three samplers;
* ``ours/estimator``  ``GaussianMixtureBayes(K).fit(X)`` with the package
  defaults, end to end, twice in one process (the second fit reuses the
  compiled model);
* ``ours/advi``  ``GaussianMixtureBayes(method="advi")``, the whole fit
  (EM start, compile, optimisation to convergence, 1000 draws).

Every NUTS run gets the same budget (4 chains, ``--tune`` warm-up and
``--draws`` kept draws, 2 chains at a time, ``--target-accept``, default
0.9 as ``GaussianMixtureBayes``), starts at the EM fit jittered, and runs
in its own subprocess (fresh in-memory caches) with a timeout. The on-disk
PyTensor caches (C modules and numba functions, ``~/.pytensor``) are the
machine's, filled for that very model and shape by a tiny run of the same
method just before ("warm": a later process on the same machine), or, with
``--cold``, a fresh empty directory per run (a first fit on a new machine).
nutpie's own wrapper functions for a PyTensor graph are numba ``cfunc``
functions that numba cannot cache ("uses dynamic globals"): they are
compiled in every new process, warm or cold. The kernel of
``ours/nutpie`` is in numba's on-disk cache (``--cold`` empties that too:
``NUMBA_CACHE_DIR`` in the fresh directory); its "compile" is importing it
and packing the data. ``ours/nutpie*`` are also re-timed as a **repeat
fit**: a second sampling run in the same process (the kernel model rebuilt
around the data, the PyTensor one reused through ``with_data``).

Measured per run: compile seconds (building the logp/gradient functions:
``nutpie.compile_pymc_model``, or PyMC's ``NUTS`` step; PyMC compiles the
function of the deterministics for the trace inside ``pm.sample``, so that
bit lands in its sampling time), sampling seconds, min ESS_bulk over all
parameters in data units (weights, means, covariances, after relabelling to
the EM fit), ESS_bulk per second of kept draws (no compile) and per second
of compile + warm-up + draws (with compile), and the **time-to-result**:
compile + warm-up + the kept-draw time scaled to reach min ESS_bulk = 400,

    TTR = compile + t_tune + t_draws * 400 / min_ESS_bulk,

with the sampling time split into warm-up and kept draws in proportion to
their leapfrog steps (``n_steps`` of every iteration, warm-up included). The
warm-up is a fixed cost: it is not scaled.

Times are CPU seconds of the process and its children (``resource``),
which a loaded shared machine inflates much less than wall time, plus wall
seconds as measured. Two chains run at a time, so on an idle 2-core machine
the sampling wall time is about half its CPU time; the table gives TTR in
CPU seconds, as measured wall seconds, and the idle-machine estimate
``compile CPU + (TTR CPU - compile CPU) / 2`` (compiling is serial). BLAS is
limited to one thread (``OPENBLAS_NUM_THREADS=1`` and threadpoolctl); the
libraries, their thread counts and the load average before and after every
run are recorded.

``--commit REV`` benchmarks ``bayes_gmm`` as of a git revision (extracted
with ``git archive`` to a temp directory and put first on the workers'
``PYTHONPATH``) instead of the working tree; the commit is recorded.

Usage::

    python benchmarks/bayes_sampling.py             # full run (about an hour)
    python benchmarks/bayes_sampling.py --cold      # the same, empty caches
    python benchmarks/bayes_sampling.py --quick     # smaller budget, case A only
    python benchmarks/bayes_sampling.py --commit HEAD --timeout 3600 --out /tmp/b

Writes ``bayes_sampling.md`` and ``bayes_sampling.json`` (``--quick``:
``bayes_sampling_quick.*``; ``--cold``: ``*_cold.*``) in ``--out``
(``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

RESULTS = Path(__file__).resolve().parent / "results"
CASES = {
    "A": {"d": 2, "k": 3, "n": 600},
    "B": {"d": 5, "k": 4, "n": 2000},
}
METHODS = (
    "ours/nutpie",
    "ours/nutpie-pytensor",
    "ours/pymc-numba",
    "ours/pymc-c",
    "naive/nutpie",
    "naive/pymc-numba",
    "naive/pymc-c",
    "ours/estimator",
    "ours/advi",
)
TARGET_ESS = 400
PARAMS = ("weights", "means", "covariances")


# --------------------------------------------------------------------- timing
def cpu_seconds():
    """CPU seconds of this process and its reaped children (user + system)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Timer:
    """Context manager recording wall and CPU seconds."""

    def __enter__(self):
        self.wall0, self.cpu0 = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall0
        self.cpu = cpu_seconds() - self.cpu0


# ------------------------------------------------------------------- models
def make_data(case, seed=0):
    from bayes_gmm import make_mixture

    c = CASES[case]
    X, _, _ = make_mixture(c["n"], c["k"], c["d"], separation=4.0, random_state=seed)
    return X


def naive_model(X, k):
    """pm.Mixture over K pm.MvNormal.dist, one LKJCholeskyCov each.

    Same priors as :func:`bayes_gmm.build_model` with default
    :class:`~bayes_gmm.Priors` (on the standardised data), and the same
    free-variable names and transforms, so the same starts apply.
    """
    import numpy as np
    import pymc as pm

    from bayes_gmm.model import standardisation

    n, d = X.shape
    loc, scale = standardisation(X, "full")
    Z = (X - loc) / scale
    names = [f"x{j}" for j in range(d)]
    coords = {"component": np.arange(k), "feature": names, "feature_bis": names}
    with pm.Model(coords=coords) as m:
        w = pm.Dirichlet("weights", a=np.ones(k), dims="component")
        mu = pm.Normal("means_z", 0.0, 2.0, dims=("component", "feature"))
        chols = []
        for j in range(k):
            packed = pm.LKJCholeskyCov(
                f"chol_cov_{j}",
                eta=2.0,
                n=d,
                sd_dist=pm.HalfNormal.dist(1.0, shape=d),
                compute_corr=False,
            )
            chols.append(pm.math.expand_packed_triangular(d, packed, lower=True))
        comps = [pm.MvNormal.dist(mu=mu[j], chol=chols[j]) for j in range(k)]
        pm.Mixture("x", w=w, comp_dists=comps, observed=Z)
        chol = pm.math.stack(chols) * scale[None, :, None]
        pm.Deterministic("means", mu * scale + loc, dims=("component", "feature"))
        pm.Deterministic(
            "covariances",
            chol @ chol.transpose(0, 2, 1),
            dims=("component", "feature", "feature_bis"),
        )
    m.bayes_gmm_info = {"loc": loc, "scale": scale}
    return m


def starts(model, X, k, chains, seed):
    """EM fit, as constrained values of the free variables, one per chain."""
    from bayes_gmm import GaussianMixtureEM
    from bayes_gmm.model import build_model, initial_point

    em = GaussianMixtureEM(k, n_init=5, random_state=seed).fit(X)
    ours = build_model(X, k)  # same standardisation and free variables
    point = initial_point(ours, em.weights_, em.means_, em.covariances_)
    return em, [point] * chains


def min_ess(posterior, em):
    """Min ESS_bulk over weights, means, covariances after relabelling to EM."""
    import arviz_stats
    import numpy as np
    import xarray as xr

    from bayes_gmm.relabel import relabel

    post = posterior[list(PARAMS)]
    post, record = relabel(post, "full", pivot=em)
    ess = arviz_stats.ess(xr.DataTree.from_dict({"posterior": post})).to_dataset()
    value = float(min(np.nanmin(ess[v].values) for v in PARAMS))
    return value, [float(s) for s in record.share_permuted]


def leapfrog_split(dt):
    """Leapfrog steps of warm-up and of the kept draws (from sample stats)."""
    import numpy as np

    tune = (
        dt["warmup_sample_stats"].to_dataset() if "warmup_sample_stats" in dt else None
    )
    keep = dt["sample_stats"].to_dataset()
    key = "n_steps" if "n_steps" in keep else "tree_size"
    steps_keep = float(np.sum(keep[key].values))
    steps_tune = float(np.sum(tune[key].values)) if tune is not None else 0.0
    return steps_tune, steps_keep, int(np.sum(keep["diverging"].values))


# ------------------------------------------------------------------- workers
def run_nuts(method, case, tune, draws, chains, seed, target_accept=0.9):
    import dataclasses

    import numpy as np

    from bayes_gmm.bayes import nutpie_initial_point_func
    from bayes_gmm.model import build_model

    X = make_data(case, seed)
    k = CASES[case]["k"]
    family, sampler = method.split("/")
    model = naive_model(X, k) if family == "naive" else build_model(X, k)
    with Timer() as t_em:
        em, points = starts(model, X, k, chains, seed)
    var_names = list(PARAMS)
    out = {
        "method": method,
        "case": case,
        "tune": tune,
        "draws": draws,
        "chains": chains,
        "target_accept": target_accept,
    }
    kernel = method == "ours/nutpie"

    def sample_nutpie(compiled, run_seed):
        """Start at the EM points (jittered by ``run_seed``) and sample."""
        compiled = dataclasses.replace(
            compiled,
            initial_point_func=nutpie_initial_point_func(model, points, run_seed),
        )
        with Timer() as t_sampling:
            dt = nutpie.sample(
                compiled,
                draws=draws,
                tune=tune,
                chains=chains,
                cores=2,
                seed=run_seed,
                progress_bar=False,
                save_warmup=True,
                target_accept=target_accept,
            )
        return dt, t_sampling

    if sampler.startswith("nutpie"):
        import nutpie

        with Timer() as tc:
            if kernel:
                # the package default: the hand-written log density and
                # gradient of bayes_gmm._kernel, a numba C callback compiled
                # once per installation (importing the module loads it from
                # numba's on-disk cache, so the import is timed here)
                from bayes_gmm._kernel import KernelModel

                compiled = KernelModel.build(model, None)
            else:
                compiled = nutpie.compile_pymc_model(
                    model, var_names=var_names, jitter_rvs=set()
                )
        dt, ts = sample_nutpie(compiled, seed)
    else:
        import pymc as pm

        from bayes_gmm.bayes import _jittered

        backend = sampler.split("-")[1]
        rng = np.random.default_rng(seed)
        initvals = [_jittered(p, rng) for p in points]
        from pymc.step_methods.hmc.quadpotential import QuadPotentialDiagAdapt

        from bayes_gmm.bayes import _flat_transformed

        # the potential of init="adapt_diag" (what GaussianMixtureBayes uses
        # with sampler="pymc"): mean of the starts, unit variances, weight 10
        mean = np.mean([_flat_transformed(model, p) for p in initvals], axis=0)
        potential = QuadPotentialDiagAdapt(mean.size, mean, np.ones_like(mean), 10)
        mode = _mode(backend)
        with model, Timer() as tc:
            step = pm.NUTS(target_accept=target_accept, potential=potential, mode=mode)
            # numba compiles lazily, at the first call: make that call here,
            # before pm.sample forks the chain processes (which would each
            # compile it again, inside the sampling time)
            step._logp_dlogp_func(_flat_transformed(model, initvals[0]))
        with model, Timer() as ts:
            dt = pm.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                cores=2,
                step=step,
                initvals=initvals,
                random_seed=seed,
                progressbar=False,
                discard_tuned_samples=False,
                compute_convergence_checks=False,
                var_names=var_names,
                compile_kwargs={"mode": mode},
            )
    if method.startswith("ours/nutpie"):
        # A second fit in the same process, as GaussianMixtureBayes does it:
        # the kernel model is rebuilt around the new data, the PyTensor one
        # reused with new data (``with_data``) instead of compiled again.
        with Timer() as tr:
            if kernel:
                again = KernelModel.build(model, None)
            else:
                again = compiled.with_data(
                    X=model["X"].get_value(),
                    loc=model["loc"].get_value(),
                    scale=model["scale"].get_value(),
                )
        dt_again, tr_s = sample_nutpie(again, seed + 1)
        out["repeat"] = metrics(tr, tr_s, dt_again, em)
    out["em_cpu"], out["em_wall"] = t_em.cpu, t_em.wall
    out.update(metrics(tc, ts, dt, em))
    return out


def metrics(tc, ts, dt, em):
    """Compile/sampling times, min ESS_bulk, ESS/s and time-to-result."""
    ess, share = min_ess(dt["posterior"].to_dataset(), em)
    steps_tune, steps_keep, divergences = leapfrog_split(dt)
    frac_keep = steps_keep / (steps_tune + steps_keep)
    out = dict(
        compile_cpu=tc.cpu,
        compile_wall=tc.wall,
        sampling_cpu=ts.cpu,
        sampling_wall=ts.wall,
        min_ess_bulk=ess,
        share_permuted=share,
        divergences=divergences,
        leapfrog_tune=steps_tune,
        leapfrog_draws=steps_keep,
    )
    for unit in ("cpu", "wall"):
        sampling = out[f"sampling_{unit}"]
        compile_ = out[f"compile_{unit}"]
        t_keep = sampling * frac_keep
        out[f"ess_per_s_{unit}"] = ess / t_keep
        out[f"ess_per_s_with_compile_{unit}"] = ess / (compile_ + sampling)
        out[f"ttr_{unit}"] = (
            compile_ + sampling * (1 - frac_keep) + t_keep * (TARGET_ESS / ess)
        )
    # idle 2-core estimate: compiling is serial, two chains run at a time
    out["ttr_idle_estimate"] = (
        out["compile_cpu"] + (out["ttr_cpu"] - out["compile_cpu"]) / 2
    )
    return out


def _mode(backend):
    from pytensor.compile.mode import get_mode

    return get_mode("cvm" if backend == "c" else "NUMBA")


def run_estimator(case, seed, target_accept, prepass=False):
    """``GaussianMixtureBayes().fit`` twice in one process (package defaults).

    The second fit reuses the compiled model (the estimator's in-process
    cache); both are timed end to end: EM start, compile, sampling,
    relabelling, assembling the result.
    """
    from bayes_gmm import GaussianMixtureBayes

    X = make_data(case, seed)
    k = CASES[case]["k"]
    out = {"method": "ours/estimator", "case": case, "fits": []}
    budget = {"draws": 20, "tune": 20, "chains": 2} if prepass else {}
    for i in range(1 if prepass else 2):
        est = GaussianMixtureBayes(
            k,
            target_accept=target_accept,
            progressbar=False,
            random_state=seed + i,
            **budget,
        )
        with Timer() as t:
            est.fit(X)
        info = json.loads(est.result_.attrs["inference"])
        ess, _ = min_ess(est.result_.datatree["posterior"].to_dataset(), est.em_)
        out["fits"].append(
            {
                "wall": t.wall,
                "cpu": t.cpu,
                "min_ess_bulk": ess,
                "compile_seconds_wall": info.get("compile_seconds"),
                "compile_reused": info.get("compile_reused"),
                "sampling_seconds_wall": info.get("sampling_seconds"),
                "draws": est.draws,
                "tune": est.tune,
                "chains": est.chains,
            }
        )
    return out


def run_advi(case, seed, prepass=False):
    import warnings

    from bayes_gmm import GaussianMixtureBayes

    X = make_data(case, seed)
    k = CASES[case]["k"]
    with warnings.catch_warnings(record=True) as caught, Timer() as t:
        warnings.simplefilter("always")
        fit = GaussianMixtureBayes(
            k,
            method="advi",
            draws=20 if prepass else 1000,
            max_iter=100 if prepass else 20000,
            progressbar=False,
            random_state=seed,
        ).fit(X)
    stats = fit.result_.datatree["fit_stats"]
    info = json.loads(fit.result_.attrs["inference"])
    return {
        "method": "ours/advi",
        "case": case,
        "wall": t.wall,
        "cpu": t.cpu,
        "n_iter": int(stats.attrs["n_iter"]),
        "converged": bool(stats.attrs["converged"]),
        "fit_seconds_wall": info["fit_seconds"],
        "draw_seconds_wall": info["draw_seconds"],
        "warnings": [str(w.message)[:120] for w in caught],
    }


def worker(spec):
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        prepass = spec.get("prepass", False)
        if spec["method"] == "ours/advi":
            out = run_advi(spec["case"], spec["seed"], prepass)
        elif spec["method"] == "ours/estimator":
            out = run_estimator(
                spec["case"], spec["seed"], spec["target_accept"], prepass
            )
        else:
            out = run_nuts(
                spec["method"],
                spec["case"],
                spec["tune"],
                spec["draws"],
                spec["chains"],
                spec["seed"],
                spec["target_accept"],
            )
        import bayes_gmm

        out["bayes_gmm_path"] = bayes_gmm.__file__
        out["blas"] = [
            {k: i.get(k) for k in ("internal_api", "num_threads", "version")}
            for i in threadpool_info()
            if i.get("user_api") == "blas"
        ]
    return out


# ------------------------------------------------------------------ driver
def package_snapshot(rev):
    """Extract ``bayes_gmm`` as of git revision ``rev`` into a temp directory.

    Returns ``(directory for PYTHONPATH, full commit hash)``. The workers then
    import that snapshot instead of the working tree (which may be in the
    middle of an edit).
    """
    import tarfile
    import tempfile

    repo = Path(__file__).resolve().parent.parent
    commit = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", rev],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    tmp = tempfile.mkdtemp(prefix="bayes_gmm_bench_src_")
    archive = Path(tmp) / "src.tar"
    subprocess.run(
        ["git", "-C", str(repo), "archive", "-o", str(archive), commit, "bayes_gmm"],
        check=True,
    )
    with tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
    archive.unlink()
    return tmp, commit


def versions(env=None):
    """Versions of the packages that matter, and where bayes_gmm came from."""
    code = (
        "import json, importlib.metadata as md, bayes_gmm;"
        "print(json.dumps({**{p: md.version(p) for p in "
        "('pymc', 'pytensor', 'nutpie', 'numba', 'arviz', 'arviz-stats', 'numpy')},"
        "'bayes_gmm_path': bayes_gmm.__file__}))"
    )
    proc = subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, env=env
    )
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": proc.stderr[-500:]}


def run_in_subprocess(spec, timeout, cold=False, pythonpath=None):
    """Run one worker; ``cold``: in a fresh PyTensor compile directory."""
    import tempfile

    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (pythonpath, env.get("PYTHONPATH")) if p
        )
    tmp = None
    if cold:
        tmp = tempfile.mkdtemp(prefix="bayes_gmm_bench_pytensor_")
        flags = env.get("PYTENSOR_FLAGS", "")
        env["PYTENSOR_FLAGS"] = f"{flags},base_compiledir={tmp}".lstrip(",")
        # numba's on-disk cache too (bayes_gmm._kernel caches its callbacks)
        env["NUMBA_CACHE_DIR"] = os.path.join(tmp, "numba")
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env
        )
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timeout after {timeout} s", "wall_total": timeout}
    finally:
        if tmp is not None:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    wall = time.perf_counter() - t0
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            load = [round(load0, 2), round(os.getloadavg()[0], 2)]
            return {**json.loads(line[7:]), "wall_total": wall, "load": load}
    return {**spec, "error": proc.stderr[-2000:], "wall_total": wall}


def fmt(value, digits=1):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _cell(cpu, wall):
    return f"{fmt(cpu)} ({fmt(wall)})"


def _row(label, method, r):
    load = r.get("load")
    load = f"{load[0]:.1f}-{load[1]:.1f}" if load else "-"
    return (
        f"| {label} | {method} | {_cell(r['compile_cpu'], r['compile_wall'])} | "
        f"{_cell(r['sampling_cpu'], r['sampling_wall'])} | "
        f"{fmt(r['min_ess_bulk'], 0)} | {fmt(r['ess_per_s_cpu'])} | "
        f"{fmt(r['ess_per_s_with_compile_cpu'], 2)} | {fmt(r['ttr_cpu'])} | "
        f"**{fmt(r['ttr_idle_estimate'])}** | {fmt(r['ttr_wall'])} | "
        f"{r['divergences']} | {load} |"
    )


def _label(case):
    c = CASES[case]
    return f"{case}: D={c['d']}, K={c['k']}, N={c['n']}"


def markdown(results, meta):
    lines = [
        "# Bayesian mixture: time-to-result, our model vs the naive PyMC model",
        "",
        f"Run {meta['date']} on {meta['machine']}, shared with other jobs: "
        f"load average (1, 5, 15 min) {meta['load_start']} at the start and "
        f"{meta['load_end']} at the end; BLAS {meta['blas']}. bayes_gmm "
        f"{meta['bayes_gmm_commit']}; "
        + ", ".join(
            f"{k} {v}" for k, v in meta["versions"].items() if k != "bayes_gmm_path"
        )
        + ". PyTensor compile "
        f"cache: {meta['pytensor_cache']}. Budget per NUTS run: "
        f"{meta['chains']} chains x ({meta['tune']} warm-up + {meta['draws']} "
        "draws), 2 chains at a time, started at the EM fit (jittered).",
        "",
        "Times are CPU seconds (wall seconds in brackets). "
        f"TTR (time-to-result) = compile + warm-up + kept-draw time scaled to "
        f"min ESS_bulk = {TARGET_ESS}; 'TTR idle' = compile CPU + (rest of the "
        "TTR CPU) / 2, the estimate for an idle 2-core machine (compiling is "
        "serial, two chains run in parallel); 'TTR wall' is as measured on "
        "the loaded machine. ESS/s: min ESS_bulk over weights, means, "
        "covariances (relabelled) per second of kept draws (no compile), and "
        "per second of compile + warm-up + draws (with compile). 'repeat fit': "
        "a second fit in the same process with the compiled model reused "
        "(`with_data`), as `GaussianMixtureBayes` does. Load: 1-min load "
        "average at the start and end of the run.",
        "",
        "| case | method | compile s | sampling s | min ESS_bulk | "
        "ESS/s (no compile) | ESS/s (with compile) | TTR CPU s | "
        "TTR idle s | TTR wall s | divergences | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        if r["method"] in ("ours/advi", "ours/estimator"):
            continue
        label = _label(r["case"])
        if "error" in r:
            err = " ".join(r["error"].split())[-100:].replace("|", "/")
            lines.append(f"| {label} | {r['method']} | failed: {err} |" + " |" * 9)
            continue
        lines.append(_row(label, r["method"], r))
        if "repeat" in r:
            lines.append(
                _row(
                    label, f"{r['method']} (repeat fit)", {**r["repeat"], "load": None}
                )
            )
    est = [r for r in results if r["method"] == "ours/estimator"]
    if est:
        lines += [
            "",
            "The package as a user calls it, `GaussianMixtureBayes(K).fit(X)` "
            "with its defaults (nutpie, 4 chains, 1000 warm-up + 1000 draws, "
            "target_accept 0.9), end to end (EM start, compile, sampling, "
            "relabelling, result), twice in one process: the second fit "
            "reuses the compiled model.",
            "",
            "| case | fit | wall s | CPU s | compile wall s | sampling wall s | "
            "min ESS_bulk |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in est:
            if "error" in r:
                err = " ".join(r["error"].split())[-100:].replace("|", "/")
                lines.append(f"| {_label(r['case'])} | failed: {err} |" + " |" * 5)
                continue
            for name, f in zip(("first", "second"), r["fits"], strict=True):
                lines.append(
                    f"| {_label(r['case'])} | {name} | {fmt(f['wall'])} | "
                    f"{fmt(f['cpu'])} | {fmt(f['compile_seconds_wall'])} | "
                    f"{fmt(f['sampling_seconds_wall'])} | "
                    f"{fmt(f['min_ess_bulk'], 0)} |"
                )
    lines += [
        "",
        "ADVI, the whole `GaussianMixtureBayes(method='advi').fit` (EM start, "
        "compile, optimisation to convergence, 1000 draws):",
        "",
        "| case | wall s | CPU s | of which optimisation (wall s) | iterations | "
        "converged |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        if r["method"] != "ours/advi":
            continue
        if "error" in r:
            err = " ".join(r["error"].split())[-100:].replace("|", "/")
            lines.append(f"| {_label(r['case'])} | failed: {err} | | | | |")
            continue
        lines.append(
            f"| {_label(r['case'])} | {fmt(r['wall'])} | {fmt(r['cpu'])} | "
            f"{fmt(r['fit_seconds_wall'])} | {r['n_iter']} | {r['converged']} |"
        )
    lines += ["", "## Targets", ""]
    lines += targets(results)
    lines.append("")
    return "\n".join(lines)


def _ratio_line(case, what, naive, ours, naive_name, ours_name):
    idle = naive["ttr_idle_estimate"] / ours["ttr_idle_estimate"]
    cpu = naive["ttr_cpu"] / ours["ttr_cpu"]
    wall = naive["ttr_wall"] / ours["ttr_wall"]
    ok = "met" if min(idle, cpu) >= 5 else "NOT met"
    return (
        f"- case {case}, {what}: {ok} - {naive_name} / {ours_name} TTR "
        f"{idle:.1f}x idle estimate ({fmt(naive['ttr_idle_estimate'])} s vs "
        f"{fmt(ours['ttr_idle_estimate'])} s), {cpu:.1f}x CPU, {wall:.1f}x "
        "measured wall."
    )


def targets(results):
    """Pass/fail lines: >= 5x faster TTR than naive; case A under 60 s."""
    out = [
        "Target 1: TTR >= 5x shorter than the naive model's. Compared per "
        "sampler, package default vs PyMC default (`pm.sample()` is PyMC's "
        "NUTS on the numba backend), and best vs best; 'repeat fit' is our "
        "second fit in one process (compiled model reused) against the "
        "naive model's first fit.",
        "",
    ]
    for case in sorted({r["case"] for r in results}):
        by = {
            r["method"]: r
            for r in results
            if r["case"] == case and "ttr_cpu" in r and r["method"] != "ours/advi"
        }
        for sampler in ("nutpie", "pymc-numba", "pymc-c"):
            ours, naive = by.get(f"ours/{sampler}"), by.get(f"naive/{sampler}")
            if ours and naive:
                out.append(
                    _ratio_line(
                        case,
                        f"same sampler ({sampler}), first fit",
                        naive,
                        ours,
                        f"naive/{sampler}",
                        f"ours/{sampler}",
                    )
                )
        ours, naive = by.get("ours/nutpie"), by.get("naive/pymc-numba")
        if ours and naive:
            out.append(
                _ratio_line(
                    case,
                    "defaults, first fit",
                    naive,
                    ours,
                    "naive/pymc-numba",
                    "ours/nutpie",
                )
            )
            if "repeat" in ours:
                out.append(
                    _ratio_line(
                        case,
                        "defaults, our repeat fit",
                        naive,
                        ours["repeat"],
                        "naive/pymc-numba",
                        "ours/nutpie (repeat fit)",
                    )
                )
        ours_all = {m: r for m, r in by.items() if m.startswith("ours/")}
        naive_all = {m: r for m, r in by.items() if m.startswith("naive/")}
        if ours_all and naive_all:
            mo = min(ours_all, key=lambda m: ours_all[m]["ttr_idle_estimate"])
            mn = min(naive_all, key=lambda m: naive_all[m]["ttr_idle_estimate"])
            out.append(
                _ratio_line(
                    case, "best vs best, first fit", naive_all[mn], ours_all[mo], mn, mo
                )
            )
        missing = [
            r["method"]
            for r in results
            if r["case"] == case and "error" in r and r["method"] != "ours/advi"
        ]
        if missing:
            out.append(f"- case {case}: did not finish: {', '.join(missing)}.")
    out += ["", "Target 2: case A time-to-result under 60 s.", ""]
    a = {r["method"]: r for r in results if r["case"] == "A" and "ttr_cpu" in r}
    rows = []
    if "ours/nutpie" in a:
        rows.append(("ours/nutpie, first fit", a["ours/nutpie"]))
        if "repeat" in a["ours/nutpie"]:
            rows.append(("ours/nutpie, repeat fit", a["ours/nutpie"]["repeat"]))
    ours_a = {m: r for m, r in a.items() if m.startswith("ours/")}
    if ours_a:
        best = min(ours_a, key=lambda m: ours_a[m]["ttr_idle_estimate"])
        if best != "ours/nutpie":
            rows.append((f"{best}, first fit", a[best]))
    for name, r in rows:
        ok = "met" if r["ttr_idle_estimate"] < 60 else "NOT met"
        out.append(
            f"- {name}: {ok} on the idle estimate "
            f"({fmt(r['ttr_idle_estimate'])} s); measured {fmt(r['ttr_wall'])} s "
            f"wall on the loaded machine ({'under' if r['ttr_wall'] < 60 else 'over'}"
            " 60 s)."
        )
    for r in results:
        if r["method"] == "ours/estimator" and r["case"] == "A" and "fits" in r:
            first, second = r["fits"]
            out.append(
                f"- `GaussianMixtureBayes(3).fit` end to end (1000 + 1000 draws, "
                f"min ESS_bulk {fmt(first['min_ess_bulk'], 0)}): first fit "
                f"{fmt(first['wall'])} s wall ({fmt(first['cpu'])} CPU s), second "
                f"fit {fmt(second['wall'])} s wall ({fmt(second['cpu'])} CPU s)."
            )
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--tune", type=int, default=None)
    parser.add_argument("--draws", type=int, default=None)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--cases", nargs="+", default=None, choices=sorted(CASES))
    parser.add_argument("--methods", nargs="+", default=None, choices=METHODS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--target-accept",
        type=float,
        default=0.9,
        help="NUTS target acceptance of every run (0.9: GaussianMixtureBayes's "
        "default)",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="every run in a fresh PyTensor compile directory (no on-disk "
        "numba or C cache: a first-time user)",
    )
    parser.add_argument(
        "--commit",
        default=None,
        help="benchmark bayes_gmm as of this git revision (e.g. HEAD), "
        "extracted to a temp directory, instead of the working tree",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.worker:
        out = worker(json.loads(args.worker))
        sys.stdout.write("RESULT " + json.dumps(out) + "\n")
        return 0
    tune = args.tune or (300 if args.quick else 1000)
    draws = args.draws or (300 if args.quick else 1000)
    cases = args.cases or (["A"] if args.quick else ["A", "B"])
    methods = args.methods or list(METHODS)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": (
            f"{platform.node()} ({os.cpu_count()} CPUs, "
            f"Python {platform.python_version()})"
        ),
        "load_start": [round(x, 2) for x in os.getloadavg()],
        "tune": tune,
        "draws": draws,
        "chains": args.chains,
        "target_accept": args.target_accept,
        "timeout": args.timeout,
        "pytensor_cache": "cold (fresh compile directory per run)"
        if args.cold
        else "warm (the machine's ~/.pytensor numba and C caches, filled for "
        "each model and shape by a tiny run of the same method just before)",
    }
    snapshot = None
    if args.commit:
        snapshot, meta["bayes_gmm_commit"] = package_snapshot(args.commit)
    else:
        repo = Path(__file__).resolve().parent.parent
        meta["bayes_gmm_commit"] = (
            subprocess.run(
                ["git", "-C", str(repo), "describe", "--always", "--dirty"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            + " (working tree)"
        )
    env = dict(os.environ)
    if snapshot:
        env["PYTHONPATH"] = snapshot
    meta["versions"] = versions(env)
    results = []
    for case in cases:
        for method in methods:
            spec = {
                "method": method,
                "case": case,
                "tune": tune,
                "draws": draws,
                "chains": args.chains,
                "seed": args.seed,
                "target_accept": args.target_accept,
            }
            prepass = None
            if not args.cold:
                # fill the on-disk caches with this model's functions first,
                # so that "warm" means warm for every model and shape
                tiny = {**spec, "tune": 20, "draws": 20, "chains": 2, "prepass": True}
                pre = run_in_subprocess(tiny, args.timeout, pythonpath=snapshot)
                prepass = {"wall_total": pre["wall_total"], "error": pre.get("error")}
            r = run_in_subprocess(
                spec, args.timeout, cold=args.cold, pythonpath=snapshot
            )
            r["prepass"] = prepass
            results.append(r)
            print(json.dumps(r)[:300], flush=True)  # noqa: T201 - progress of a script
    meta["load_end"] = [round(x, 2) for x in os.getloadavg()]
    if snapshot:
        import shutil

        shutil.rmtree(snapshot, ignore_errors=True)
    blas = next((r["blas"] for r in results if "blas" in r), [])
    meta["blas_libraries"] = blas
    meta["blas"] = (
        "; ".join(
            f"{b['internal_api']} {b['version']}: {b['num_threads']} thread(s)"
            for b in blas
        )
        + f" (OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, "
        "threadpoolctl limit 1)"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "bayes_sampling_quick" if args.quick else "bayes_sampling"
    if args.cold:
        stem += "_cold"
    (args.out / f"{stem}.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2)
    )
    (args.out / f"{stem}.md").write_text(markdown(results, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
