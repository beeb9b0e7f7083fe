"""Model selection by BIC: bayes_gmm's grid against R's mclust, side by side.

On the bundled Old Faithful data and on iris, ``bayes_gmm.compare_models(X,
range(1, 10), the four covariance types, methods=("em",))`` (its defaults,
``n_init=10``, ``random_state`` fixed) is timed against R's whole
``mclustBIC(X, G=1:9)`` (all fourteen models) on the same data, each
repeated; both are CPU times measured inside their own process (Python's
``time.process_time`` with one BLAS thread, R's ``proc.time()``), run one
after the other, and the medians are reported.

The four models both packages have are compared cell by cell: mclust's VVV,
EEE, VVI and VII are ``full``, ``tied``, ``diag`` and ``spherical``. mclust
reports ``BIC = 2 log L - p log n`` (higher is better), bayes_gmm ``-2 log L
+ p log n`` (lower is better); the table shows the log-likelihood each
reached (recovered from mclust's BIC and the shared parameter count) and
their difference (positive: bayes_gmm reached the higher optimum), and the
BIC pick of each (mclust's over its 14 models and over the 4 shared ones).

Needs R with mclust (``apt-get install r-cran-mclust``); ``make test`` does
not. Usage::

    python benchmarks/selection_vs_mclust.py [--repeats 3] [--out DIR]

Writes ``selection_vs_mclust.md`` and ``.json`` in ``--out`` (default
``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_iris
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bayes_gmm  # noqa: E402
from bayes_gmm import compare_models, load_faithful  # noqa: E402

TYPES = ("full", "tied", "diag", "spherical")
MCLUST = {"full": "VVV", "tied": "EEE", "diag": "VVI", "spherical": "VII"}
KS = range(1, 10)

_R = r"""
suppressPackageStartupMessages(library(mclust))
args <- commandArgs(trailingOnly = TRUE)
X <- as.matrix(read.csv(args[1]))
reps <- as.integer(args[2])
times <- numeric(reps)
for (i in seq_len(reps)) {
  t0 <- proc.time()
  b <- mclustBIC(X, G = 1:9, verbose = FALSE)
  t <- proc.time() - t0
  times[i] <- t[["user.self"]] + t[["sys.self"]]
}
cat(sprintf("TIME %.6f\n", times))
cat(sprintf("VERSION %s\n", as.character(packageVersion("mclust"))))
for (m in colnames(b)) for (g in rownames(b)) {
  cat(sprintf("BIC %s %s %.10g\n", m, g, b[g, m]))
}
"""


def run_mclust(X, repeats):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.csv"
        pd.DataFrame(X).to_csv(path, index=False)
        script = Path(tmp) / "bic.R"
        script.write_text(_R)
        out = subprocess.run(
            ["Rscript", str(script), str(path), str(repeats)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    times, bic, version = [], {}, None
    for line in out.splitlines():
        parts = line.split()
        if parts[0] == "TIME":
            times.append(float(parts[1]))
        elif parts[0] == "VERSION":
            version = parts[1]
        elif parts[0] == "BIC" and parts[3] != "NA":
            bic[(parts[1], int(parts[2]))] = float(parts[3])
    return times, bic, version


def run_ours(X, repeats, seed):
    times, last = [], None
    for _ in range(repeats):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.process_time()
            last = compare_models(
                X, KS, TYPES, methods=("em",), random_state=seed, progressbar=False
            )
            times.append(time.process_time() - t0)
    return times, last


def compare(name, X, repeats, seed):
    ours_t, cmp = run_ours(X, repeats, seed)
    r_t, bic, version = run_mclust(X, repeats)
    n = X.shape[0]
    table = cmp.table
    cells = []
    for ct in TYPES:
        for k in KS:
            row = table[(table.covariance_type == ct) & (table.n_components == k)].iloc[
                0
            ]
            p = int(row.n_parameters)
            r_bic = bic.get((MCLUST[ct], k))
            r_ll = None if r_bic is None else (r_bic + p * np.log(n)) / 2
            cells.append(
                {
                    "covariance_type": ct,
                    "mclust_model": MCLUST[ct],
                    "K": k,
                    "n_parameters": p,
                    "ours_loglik": float(row.log_likelihood),
                    "mclust_loglik": r_ll,
                    "loglik_diff": None
                    if r_ll is None
                    else float(row.log_likelihood - r_ll),
                    "ours_bic": float(row.bic),
                    "ours_collapsed": bool(row.em_collapsed),
                }
            )
    shared = {(MCLUST[c["covariance_type"]], c["K"]): -c["ours_bic"] for c in cells}
    best_r_all = max(bic, key=bic.get)
    best_r_shared = max((key for key in bic if key in shared), key=bic.get)
    return {
        "data": name,
        "n": n,
        "d": X.shape[1],
        "ours_cpu_s": ours_t,
        "mclust_cpu_s": r_t,
        "ours_median_s": float(np.median(ours_t)),
        "mclust_median_s": float(np.median(r_t)),
        "ratio": float(np.median(ours_t) / np.median(r_t)),
        "ours_bic_pick": list(cmp.picks()["bic"]),
        "mclust_pick_14": list(best_r_all),
        "mclust_pick_shared4": list(best_r_shared),
        "mclust_version": version,
        "cells": cells,
    }


def markdown(results, meta):
    lines = [
        "# BIC model selection: bayes_gmm against R's mclust "
        "(benchmarks/selection_vs_mclust.py)",
        "",
        f"bayes_gmm {meta['bayes_gmm']}, mclust {meta['mclust']}, Python "
        f"{meta['python']}; {meta['blas_threads']} BLAS thread(s) (threadpoolctl). "
        "ours: `compare_models(X, range(1, 10), 4 types, methods=('em',), "
        "random_state=0)` (n_init=10); mclust: `mclustBIC(X, G=1:9)` (14 models). "
        "CPU seconds, medians of the repeats.",
        "",
        "| data | N | D | ours s | mclust s | ratio | ours BIC pick | mclust pick (14) "
        "| mclust pick (4 shared) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['data']} | {r['n']} | {r['d']} | {r['ours_median_s']:.2f} "
            f"| {r['mclust_median_s']:.2f} | {r['ratio']:.2f} | "
            f"{r['ours_bic_pick'][0]} K={r['ours_bic_pick'][1]} | "
            f"{r['mclust_pick_14'][0]} K={r['mclust_pick_14'][1]} | "
            f"{r['mclust_pick_shared4'][0]} K={r['mclust_pick_shared4'][1]} |"
        )
    for r in results:
        lines += [
            "",
            f"## {r['data']}: log-likelihood per model "
            "(ours - mclust; + means ours higher)",
            "",
            "| type | K | ours | mclust | diff | ours collapsed |",
            "|---|---|---|---|---|---|",
        ]
        for c in r["cells"]:
            m = "NA" if c["mclust_loglik"] is None else f"{c['mclust_loglik']:.3f}"
            dd = "" if c["loglik_diff"] is None else f"{c['loglik_diff']:+.3f}"
            lines.append(
                f"| {c['covariance_type']} ({c['mclust_model']}) | {c['K']} "
                f"| {c['ours_loglik']:.3f} | {m} | {dd} | {c['ours_collapsed']} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    if shutil.which("Rscript") is None:
        sys.exit("Rscript not found: apt-get install r-cran-mclust")
    data = {
        "faithful": load_faithful().to_numpy(float),
        "iris": load_iris().data.astype(float),
    }
    with threadpool_limits(1):
        threads = sorted({i["num_threads"] for i in threadpool_info()})
        results = [
            compare(name, X, args.repeats, args.seed) for name, X in data.items()
        ]
    meta = {
        "bayes_gmm": bayes_gmm.__version__,
        "mclust": results[0]["mclust_version"],
        "python": platform.python_version(),
        "blas_threads": ",".join(map(str, threads)),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "selection_vs_mclust.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=1) + "\n"
    )
    text = markdown(results, meta)
    (out / "selection_vs_mclust.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
