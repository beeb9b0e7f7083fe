"""``bayes-gmm fit --bayes-max-samples``: the Bayesian fits on a row subsample.

Oracle: the CSV itself (the saved posterior's observed data must be rows of
it, as many as asked for, and EM's table must be that of all rows).
"""

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

from bayes_gmm.cli import main
from bayes_gmm.result import MixtureResult

ARGS = ["--components", "1-2", "--covariance", "full", "--methods", "em,nuts"]
ARGS += ["--candidates", "1", "--draws", "100", "--tune", "100", "--chains", "2"]
ARGS += ["--n-boot", "0", "--seed", "0"]


def test_bayesian_fits_run_on_the_subsample_and_say_so(separated_2d, tmp_path):
    X, _, _ = separated_2d
    path = tmp_path / "two.csv"
    pd.DataFrame(X, columns=["u", "v"]).to_csv(path, index=False)
    out = tmp_path / "report"
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        status = main(
            ["fit", str(path), "--out", str(out), "--bayes-max-samples", "80", *ARGS]
        )
    assert status == 0, err.getvalue()
    assert "random subsample of 80 of the 200 rows" in err.getvalue()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["bayes_max_samples"] == 80
    assert any(
        "random subsample of 80 of the 200 rows" in line
        for line in summary["bayesian"]["verdict"]
    )
    result = MixtureResult.from_netcdf(out / "posterior_nuts_full_K2.nc")
    seen = result.datatree["observed_data"].to_dataset()["x"].values
    assert seen.shape == (80, 2)
    # every row seen is a distinct row of the CSV (read back as written)
    data = pd.read_csv(path).to_numpy()
    idx = [int(np.flatnonzero((data == row).all(axis=1))[0]) for row in seen]
    assert len(set(idx)) == 80
    # EM used every row: K=1's log-likelihood is the closed form on all 200
    table = pd.read_csv(out / "criteria.csv").set_index("n_components")
    cov = np.cov(data.T, bias=True) + 1e-6 * np.eye(2)
    want = multivariate_normal(data.mean(axis=0), cov).logpdf(data).sum()
    assert table.loc[1, "log_likelihood"] == pytest.approx(want, rel=1e-9)


def test_negative_value_is_refused(separated_2d, tmp_path):
    X, _, _ = separated_2d
    path = tmp_path / "two.csv"
    pd.DataFrame(X, columns=["u", "v"]).to_csv(path, index=False)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        status = main(
            [
                "fit",
                str(path),
                "--out",
                str(tmp_path / "r"),
                "--bayes-max-samples",
                "-1",
                *ARGS,
            ]
        )
    assert status == 2
    assert "--bayes-max-samples must be >= 0" in err.getvalue()
    assert not (tmp_path / "r").exists()


def test_figures_draw_a_random_subset_of_rows_and_say_so(
    separated_2d, tmp_path, monkeypatch
):
    from bayes_gmm import cli

    X, _, _ = separated_2d
    df = pd.DataFrame(X, columns=["u", "v"])
    monkeypatch.setattr(cli, "_PLOT_MAX_POINTS", 50)
    shown, note = cli._plot_rows(df, 3)
    assert note == " (50 of 200 points shown)"
    assert len(shown) == 50 and shown.index.is_unique
    pd.testing.assert_frame_equal(shown, df.loc[shown.index])
    few, note = cli._plot_rows(df.iloc[:50], 3)
    assert note == "" and few is not None and len(few) == 50
    path = tmp_path / "two.csv"
    df.to_csv(path, index=False)
    err = io.StringIO()
    cheap = ["--components", "1-2", "--covariance", "full", "--methods", "em"]
    cheap += ["--n-init", "1", "--n-boot", "0"]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        status = main(["fit", str(path), "--out", str(tmp_path / "r"), *cheap])
    assert status == 0, err.getvalue()
    assert "[figures] drawing the report's figures (50 of 200 points shown)" in (
        err.getvalue()
    )
    import matplotlib.image

    assert matplotlib.image.imread(tmp_path / "r" / "clusters.png").ndim == 3
