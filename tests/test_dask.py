"""EM on Dask (bayes_gmm._dask): every result is checked against the numpy fit
of the same data (the in-memory estimator is the oracle) or a closed form."""

import logging
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from bayes_gmm import GaussianMixtureEM, fit_em_grid

TYPES = ["full", "tied", "diag", "spherical"]
ATTRS = ["weights_", "means_", "covariances_", "precisions_cholesky_"]


def _data(n=600, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 1.0, (n // 2, 3))
    b = rng.normal(0.0, 0.5, (n - n // 2, 3)) @ np.array(
        [[1.0, 0.3, 0.0], [0.0, 1.0, 0.2], [0.0, 0.0, 1.0]]
    ) + [4.0, 6.0, -2.0]
    X = np.vstack([a, b]) + offset
    return X[rng.permutation(n)]


def _close(a, b, rtol=1e-10):
    """Same parameters to ``rtol`` relative (to the array's scale)."""
    for name in ATTRS:
        x, y = getattr(a, name), getattr(b, name)
        scale = np.max(np.abs(x))
        assert np.max(np.abs(x - y)) <= rtol * scale, name


def _given_start(X, ct, k=2):
    """A start from a fixed partition (half the rows each), closed form."""
    lab = (X[:, 0] > X[:, 0].mean()).astype(int)
    w = np.bincount(lab, minlength=k) / len(lab)
    means = np.array([X[lab == j].mean(axis=0) for j in range(k)])
    covs = np.array([np.cov(X[lab == j].T) for j in range(k)])
    if ct == "full":
        prec = np.linalg.inv(covs)
    elif ct == "tied":
        prec = np.linalg.inv(covs.mean(axis=0))
    elif ct == "diag":
        prec = 1.0 / np.diagonal(covs, axis1=1, axis2=2)
    else:
        prec = 1.0 / np.diagonal(covs, axis1=1, axis2=2).mean(axis=1)
    return {"weights_init": w, "means_init": means, "precisions_init": prec}


@pytest.mark.parametrize("ct", TYPES)
def test_same_start_equals_numpy(ct):
    # Far from the origin, so that the centring matters.
    X = _data(offset=1e4)
    kw = dict(covariance_type=ct, tol=1e-8, max_iter=200, **_given_start(X, ct))
    ref = GaussianMixtureEM(2, **kw).fit(X)
    got = GaussianMixtureEM(2, **kw).fit(da.from_array(X, chunks=97))
    _close(ref, got)
    assert got.n_iter_ == ref.n_iter_
    assert got.converged_ == ref.converged_
    np.testing.assert_allclose(got.lower_bounds_, ref.lower_bounds_, rtol=1e-12)


@pytest.mark.parametrize("ct", TYPES)
def test_default_start_equals_numpy(ct):
    # 600 rows < max(2000, 20 K (D + 1)): the start search sees all rows.
    X = _data()
    kw = dict(covariance_type=ct, n_init=2, random_state=3)
    ref = GaussianMixtureEM(2, **kw).fit(X)
    got = GaussianMixtureEM(2, **kw).fit(da.from_array(X, chunks=150))
    _close(ref, got)
    np.testing.assert_allclose(
        got.init_lower_bounds_, ref.init_lower_bounds_, rtol=1e-12
    )
    assert got.n_iter_search_ == ref.n_iter_search_


def test_more_rows_than_the_sample_reaches_numpy_optimum():
    # 5000 rows > 2000: the search runs on a sample, EM on all rows, and
    # ends at the optimum of the numpy fit.
    X = _data(5000, seed=1)
    kw = dict(covariance_type="full", tol=1e-10, max_iter=500, random_state=0)
    ref = GaussianMixtureEM(2, **kw).fit(X)
    got = GaussianMixtureEM(2, **kw).fit(da.from_array(X, chunks=1000))
    order = np.argsort(got.means_[:, 0])
    ref_order = np.argsort(ref.means_[:, 0])
    np.testing.assert_allclose(got.means_[order], ref.means_[ref_order], rtol=1e-6)
    np.testing.assert_allclose(got.lower_bound_, ref.lower_bound_, rtol=1e-9)


def test_sample_size_rule(monkeypatch):
    from bayes_gmm import _dask

    seen = []
    real = _dask.sample_rows

    def spy(X, size, rng):
        seen.append(size)
        return real(X, size, rng)

    monkeypatch.setattr(_dask, "sample_rows", spy)
    X = _data(3000)
    GaussianMixtureEM(3, covariance_type="diag", random_state=0, max_iter=5).fit(
        da.from_array(X, chunks=1000)
    )
    assert seen == [max(2000, 20 * 3 * (3 + 1))]


def test_predictions_lazy_blockwise_and_equal_numpy():
    X = _data()
    Xd = da.from_array(X, chunks=128)
    gm = GaussianMixtureEM(2, random_state=0).fit(X)
    proba = gm.predict_proba(Xd)
    assert isinstance(proba, da.Array)
    assert proba.chunks == (Xd.chunks[0], (2,))  # one block per input block
    np.testing.assert_allclose(
        proba.compute(), gm.predict_proba(X), rtol=1e-10, atol=1e-14
    )
    lab = gm.predict(Xd)
    assert isinstance(lab, da.Array)
    np.testing.assert_array_equal(lab.compute(), gm.predict(X))
    ss = gm.score_samples(Xd)
    assert isinstance(ss, da.Array)
    np.testing.assert_allclose(ss.compute(), gm.score_samples(X), rtol=1e-12)
    for name in ("score", "bic", "aic", "icl"):
        np.testing.assert_allclose(
            getattr(gm, name)(Xd), getattr(gm, name)(X), rtol=1e-12
        )
    # closed form: BIC = -2 log L + p log n
    ll = gm.score_samples(X).sum()
    np.testing.assert_allclose(
        gm.bic(Xd), -2 * ll + gm.n_parameters() * np.log(len(X)), rtol=1e-12
    )


def test_fit_predict_and_float32():
    X = _data().astype(np.float32)
    kw = _given_start(X.astype(float), "diag")
    ref = GaussianMixtureEM(2, covariance_type="diag", **kw)
    got = GaussianMixtureEM(2, covariance_type="diag", **kw)
    lab_ref = ref.fit_predict(X)
    lab = got.fit_predict(da.from_array(X, chunks=100))
    assert got.means_.dtype == np.float32
    np.testing.assert_array_equal(lab.compute(), lab_ref)
    _close(ref, got, rtol=1e-6)


def test_dask_dataframe():
    X = _data()
    pdf = pd.DataFrame(X, columns=["a", "b", "c"])
    ddf = dd.from_pandas(pdf, npartitions=4)
    kw = dict(covariance_type="full", random_state=0)
    ref = GaussianMixtureEM(2, **kw).fit(pdf)
    got = GaussianMixtureEM(2, **kw).fit(ddf)
    _close(ref, got)
    assert list(got.feature_names_in_) == ["a", "b", "c"]
    np.testing.assert_allclose(got.score_samples(ddf).compute(), ref.score_samples(pdf))


def test_processes_scheduler():
    X = _data()
    kw = dict(covariance_type="tied", **_given_start(X, "tied"))
    ref = GaussianMixtureEM(2, **kw).fit(X)
    with dask.config.set(scheduler="processes", num_workers=2):
        got = GaussianMixtureEM(2, **kw).fit(da.from_array(X, chunks=300))
        lab = got.predict(da.from_array(X, chunks=300)).compute()
    _close(ref, got)
    np.testing.assert_array_equal(lab, ref.predict(X))


def test_threads_scheduler_with_pool():
    X = _data()
    kw = dict(covariance_type="spherical", **_given_start(X, "spherical"))
    ref = GaussianMixtureEM(2, **kw).fit(X)
    with ThreadPoolExecutor(2) as pool, dask.config.set(scheduler="threads", pool=pool):
        got = GaussianMixtureEM(2, **kw).fit(da.from_array(X, chunks=50))
    _close(ref, got)


@pytest.fixture(scope="module", params=[False, True], ids=["threads", "processes"])
def client(request):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=request.param,
        dashboard_address=None,
    )
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_distributed(client):
    from distributed import get_task_stream

    X = _data(offset=50.0)
    Xd = da.from_array(X, chunks=150)
    kw = dict(covariance_type="full", n_init=2, random_state=1)
    ref = GaussianMixtureEM(2, **kw).fit(X)
    with get_task_stream(client) as ts:
        got = GaussianMixtureEM(2, **kw).fit(Xd)
    # the work ran as tasks on the cluster's workers (what the dashboard shows)
    assert {t["worker"] for t in ts.data} == set(client.scheduler_info()["workers"])
    assert any("block_moments" in t["key"] for t in ts.data)
    _close(ref, got)
    np.testing.assert_allclose(
        got.predict_proba(Xd).compute(), ref.predict_proba(X), atol=1e-12
    )
    np.testing.assert_allclose(got.bic(Xd), ref.bic(X), rtol=1e-12)


def _fit_pair(Xd, X, ct="diag"):
    kw = dict(covariance_type=ct, **_given_start(X, ct))
    ref = GaussianMixtureEM(2, **kw).fit(X)
    got = GaussianMixtureEM(2, **kw).fit(Xd)
    _close(ref, got)


def test_zarr_store(tmp_path):
    import zarr

    X = _data()
    z = zarr.open_array(
        str(tmp_path / "x.zarr"), mode="w", shape=X.shape, chunks=(100, 3), dtype="f8"
    )
    z[:] = X
    _fit_pair(da.from_zarr(str(tmp_path / "x.zarr")), X)


def test_hdf5_dataset(tmp_path):
    import h5py

    X = _data()
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=X, chunks=(100, 3))
    with h5py.File(path, "r") as f:
        _fit_pair(da.from_array(f["x"], chunks=(100, 3)), X, "full")


def test_memmap(tmp_path):
    X = _data()
    path = tmp_path / "x.dat"
    m = np.memmap(path, dtype="f8", mode="w+", shape=X.shape)
    m[:] = X
    m.flush()
    mm = np.memmap(path, dtype="f8", mode="r", shape=X.shape)
    _fit_pair(da.from_array(mm, chunks=(120, 3)), X, "tied")


def test_n_init_runs_share_passes(caplog):
    from dask.callbacks import Callback

    X = _data()
    computes = []

    class Count(Callback):
        def _start(self, dsk):
            computes.append(1)

    kw = dict(n_init=3, init_params="random", random_state=0)
    gm = GaussianMixtureEM(2, **kw)
    # (local callbacks: the threaded scheduler even while a Client is alive)
    with (
        dask.config.set(scheduler="threads"),
        Count(),
        caplog.at_level(logging.DEBUG, logger="bayes_gmm"),
    ):
        gm.fit(da.from_array(X, chunks=100))
    passes = [r.getMessage() for r in caplog.records if "dask pass" in r.getMessage()]
    # one summary pass, one sample, then one pass per iteration of the
    # longest run: the first pass evaluates all three runs
    assert len(computes) == 2 + len(passes)
    assert passes[0].count("init ") == 3
    ends = [r.getMessage() for r in caplog.records if " of 3: " in r.getMessage()]
    n_iters = [int(m.split(" after ")[1].split()[0]) for m in ends]
    assert len(passes) == max(n_iters) < sum(n_iters)
    ref = GaussianMixtureEM(2, **kw).fit(X)
    _close(ref, gm)


def test_one_log_line_per_iteration(caplog):
    X = _data()
    kw = dict(covariance_type="diag", verbose=1, **_given_start(X, "diag"))
    with caplog.at_level(logging.INFO, logger="bayes_gmm"):
        gm = GaussianMixtureEM(2, **kw).fit(da.from_array(X, chunks=200))
    lines = [r for r in caplog.records if "dask pass" in r.getMessage()]
    assert len(lines) == gm.n_iter_


def test_fit_em_grid_on_dask():
    X = _data(300)
    kw = dict(n_init=2, random_state=0)
    ref = fit_em_grid(X, [1, 2], ["full", "diag"], **kw)
    got = fit_em_grid(da.from_array(X, chunks=100), [1, 2], ["full", "diag"], **kw)
    np.testing.assert_allclose(got.table["bic"], ref.table["bic"], rtol=1e-10)
    np.testing.assert_allclose(got.table["icl"], ref.table["icl"], rtol=1e-10)
    assert got.best("bic") == ref.best("bic")


# ---------------------------------------------------------------------- errors
def test_unknown_chunks():
    ddf = dd.from_pandas(pd.DataFrame(_data()), npartitions=3)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        GaussianMixtureEM(2).fit(ddf.values)


def test_non_numeric_dtype():
    x = da.from_array(np.array([["a", "b"]] * 10), chunks=5)
    with pytest.raises(ValueError, match="non-numeric dtype"):
        GaussianMixtureEM(2).fit(x)
    ddf = dd.from_pandas(
        pd.DataFrame({"a": np.arange(10.0), "s": list("abcdefghij")}), npartitions=2
    )
    with pytest.raises(ValueError, match=r"Non-numeric column\(s\) \['s'\]"):
        GaussianMixtureEM(2).fit(ddf)


def test_nan_in_late_block_named_before_em():
    X = _data()
    X[523, 1] = np.nan
    calls = []
    import bayes_gmm._dask as eng

    real = eng.run_em_dask
    eng.run_em_dask = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        with pytest.raises(
            ValueError, match=r"NaN in block 5 .*row 523 \(global row index\), column 1"
        ):
            GaussianMixtureEM(2).fit(da.from_array(X, chunks=100))
    finally:
        eng.run_em_dask = real
    assert not calls  # found in the first pass, before any EM iteration


def test_too_few_rows():
    with pytest.raises(ValueError, match="n_components"):
        GaussianMixtureEM(5).fit(da.from_array(_data(4), chunks=2))


def test_import_does_not_import_dask():
    code = "import sys, bayes_gmm; print('dask' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_compare_models_em_on_dask():
    from bayes_gmm import compare_models

    X = _data(300)
    kw = dict(methods=("em",), n_init=2, random_state=0, progressbar=False)
    ref = compare_models(X, [1, 2], **kw)
    got = compare_models(da.from_array(X, chunks=100), [1, 2], **kw)
    cols = [c for c in ref.table.columns if c.endswith(("bic", "aic", "icl"))]
    np.testing.assert_allclose(
        got.table[cols].to_numpy(float), ref.table[cols].to_numpy(float), rtol=1e-10
    )
    assert got.picks() == ref.picks()


@pytest.mark.filterwarnings("ignore::bayes_gmm.ConvergenceWarning")
def test_warm_start_continues_as_numpy():
    X = _data()
    kw = dict(covariance_type="full", warm_start=True, max_iter=2, random_state=0)
    ref, got = GaussianMixtureEM(2, **kw), GaussianMixtureEM(2, **kw)
    Xd = da.from_array(X, chunks=200)
    ref.fit(X)
    got.fit(Xd)
    ref.set_params(max_iter=100).fit(X)
    got.set_params(max_iter=100).fit(Xd)
    _close(ref, got)
    assert got.n_iter_ == ref.n_iter_
