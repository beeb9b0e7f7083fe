"""Tests of bayes_gmm.result (MixtureResult, waic) and the predictions of
GaussianMixtureBayes, which average over the posterior draws.

Oracles are computed by hand from the stored draws with scipy
(multivariate normal densities, log-sum-exp), numpy quantiles and the WAIC
formula of Vehtari, Gelman and Gabry (2017). The fits are the session
fixtures of tests/conftest.py.
"""

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from bayes_gmm import GaussianMixtureBayes, GaussianMixtureEM, MixtureResult, waic

FITS = ["nuts_fit", "advi_fit"]


@pytest.fixture(params=FITS)
def fit(request):
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def grid():
    """New points around and between the two components."""
    rng = np.random.default_rng(5)
    return rng.uniform(-10, 20, size=(40, 2))


def component_log_probs(result, X):
    """log w_k + log N(x | mu_k, Sigma_k) per draw, by scipy: (S, N, K)."""
    post = result.posterior
    w = post["weights"].values.reshape(-1, result.n_components)
    mu = post["means"].values.reshape(w.shape[0], result.n_components, -1)
    cov = post["covariances"].values.reshape(w.shape[0], *post["covariances"].shape[2:])
    out = np.empty((w.shape[0], X.shape[0], result.n_components))
    for s in range(w.shape[0]):
        for k in range(result.n_components):
            out[s, :, k] = np.log(w[s, k]) + multivariate_normal(
                mu[s, k], cov[s, k]
            ).logpdf(X)
    return out


@pytest.fixture(scope="module")
def oracle_cache():
    return {}


@pytest.fixture
def oracle(fit, grid, oracle_cache):
    key = id(fit)
    if key not in oracle_cache:
        oracle_cache[key] = component_log_probs(fit.result_, grid)
    return oracle_cache[key]


# ---------------------------------------------------------------- predictions
@pytest.mark.parametrize("block_floats", [None, 2**9])
def test_predict_proba_is_posterior_mean_responsibility(
    fit, grid, oracle, block_floats, monkeypatch
):
    if block_floats is not None:  # many blocks of draws: the streamed moments
        import bayes_gmm.result as result_module

        monkeypatch.setattr(result_module, "_BLOCK_FLOATS", block_floats)
    resp = np.exp(oracle - logsumexp(oracle, axis=-1, keepdims=True))
    proba, std = fit.predict_proba(grid, return_std=True)
    np.testing.assert_allclose(proba, resp.mean(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(std, resp.std(0, ddof=1), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(fit.predict_proba(grid), proba)
    np.testing.assert_array_equal(fit.predict(grid), proba.argmax(1))
    np.testing.assert_allclose(proba.sum(1), 1.0)
    # points between the components are uncertain, near a centre they are not
    assert std.max() > 0.01


@pytest.mark.parametrize("block_floats", [None, 2**9])
def test_score_samples_is_log_mean_exp_over_draws(
    fit, grid, oracle, block_floats, monkeypatch
):
    if block_floats is not None:
        import bayes_gmm.result as result_module

        monkeypatch.setattr(result_module, "_BLOCK_FLOATS", block_floats)
    per_draw = logsumexp(oracle, axis=-1)  # (S, N)
    expected = logsumexp(per_draw, axis=0) - np.log(per_draw.shape[0])
    np.testing.assert_allclose(fit.score_samples(grid), expected, rtol=1e-10)
    np.testing.assert_allclose(fit.score(grid), expected.mean(), rtol=1e-10)


def test_sample_is_the_posterior_predictive(nuts_fit):
    X, labels = nuts_fit.sample(20000)
    assert X.shape == (20000, 2) and labels.shape == (20000,)
    # labels are shuffled, not grouped by component as scikit-learn does
    assert np.mean(labels[1:] != labels[:-1]) > 0.3
    # moments of the posterior-mean mixture
    w, mu, cov = nuts_fit.weights_, nuts_fit.means_, nuts_fit.covariances_
    mean = w @ mu
    second = sum(w[k] * (cov[k] + np.outer(mu[k], mu[k])) for k in range(2))
    total_cov = second - np.outer(mean, mean)
    se = np.sqrt(np.diag(total_cov) / 20000)
    np.testing.assert_array_less(np.abs(X.mean(0) - mean), 4 * se)
    np.testing.assert_allclose(np.cov(X.T), total_cov, rtol=0.05, atol=0.05)
    np.testing.assert_allclose(np.bincount(labels) / 20000, w, atol=0.015)
    # per component: the points labelled k follow component k
    for k in range(2):
        np.testing.assert_allclose(X[labels == k].mean(0), mu[k], atol=0.1)
    # the same random_state gives the same draws
    np.testing.assert_array_equal(nuts_fit.sample(50)[0], nuts_fit.sample(50)[0])


def test_predictions_validate_input(nuts_fit):
    with pytest.raises(ValueError, match="NaN at row 0, column 0"):
        nuts_fit.predict(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="features"):
        nuts_fit.predict_proba(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="'n_samples' must be >= 1"):
        nuts_fit.sample(0)


# ------------------------------------------------------------------ summaries
def test_posterior_mean_and_draws(fit):
    res = fit.result_
    post = res.posterior
    mean = res.posterior_mean()
    for name in ("weights", "means", "covariances"):
        np.testing.assert_allclose(mean[name].values, post[name].values.mean((0, 1)))
    w, mu, chol = res.draws()
    cov = post["covariances"].values.reshape(-1, 2, 2, 2)
    np.testing.assert_allclose(chol @ np.swapaxes(chol, -1, -2), cov, rtol=1e-10)
    np.testing.assert_array_equal(np.triu(chol[0, 0], 1), 0)


@pytest.mark.parametrize("ci_prob", [0.8, 0.94])
def test_summary_intervals_follow_ci_prob(nuts_fit, ci_prob):
    table = nuts_fit.result_.summary(ci_prob=ci_prob, round_to="none")
    pct = round(ci_prob * 100)
    lo_col, hi_col = f"eti{pct}_lb", f"eti{pct}_ub"
    assert {"mean", "sd", lo_col, hi_col, "ess_bulk", "r_hat"} <= set(table.columns)
    draws = nuts_fit.result_.posterior["means"].values.reshape(-1, 2, 2)
    lo, hi = np.quantile(draws, [(1 - ci_prob) / 2, (1 + ci_prob) / 2], axis=0)
    row = table.loc["means[0, x1]"]
    np.testing.assert_allclose(float(row[lo_col]), lo[0, 1], rtol=1e-6)
    np.testing.assert_allclose(float(row[hi_col]), hi[0, 1], rtol=1e-6)
    np.testing.assert_allclose(float(row["mean"]), draws[:, 0, 1].mean(), rtol=1e-9)


def test_summary_of_independent_draws_has_no_chain_diagnostics(advi_fit, nuts_fit):
    """ADVI and bootstrap draws are independent: no ESS / R-hat columns by
    default (they are asked for explicitly); NUTS keeps them."""
    from bayes_gmm import bootstrap_em

    X = advi_fit.result_.datatree["observed_data"]["x"].values
    boot = bootstrap_em(
        GaussianMixtureEM(2, random_state=0).fit(X), X, n_boot=20, random_state=0
    )
    for res in (advi_fit.result_, boot):
        table = res.summary(round_to="none")
        assert {"mean", "sd"} <= set(table.columns)
        assert not {"ess_bulk", "r_hat", "mcse_mean"} & set(table.columns)
        forced = res.summary(kind="all", round_to="none")
        assert "ess_bulk" in forced.columns
        draws = res.posterior["weights"].values.reshape(-1, 2)
        np.testing.assert_allclose(
            table.loc["weights[0]", "mean"], draws[:, 0].mean(), rtol=1e-9
        )
    assert "r_hat" in nuts_fit.result_.summary().columns


def test_waic_against_hand_computation(fit):
    ll = fit.result_.datatree["log_likelihood"]["x"].values
    flat = ll.reshape(-1, ll.shape[-1])
    s = flat.shape[0]
    lppd = logsumexp(flat, axis=0) - np.log(s)
    p = flat.var(axis=0, ddof=1)
    elpd_i = lppd - p
    got = fit.result_.waic(pointwise=True)
    np.testing.assert_allclose(got["elpd_waic"], elpd_i.sum(), rtol=1e-10)
    np.testing.assert_allclose(got["p_waic"], p.sum(), rtol=1e-10)
    np.testing.assert_allclose(
        got["se"], np.sqrt(len(elpd_i) * elpd_i.var()), rtol=1e-10
    )
    np.testing.assert_allclose(got["elpd_waic_i"], elpd_i, rtol=1e-10)
    assert got["n_samples"] == s and got["n_data_points"] == 200
    dev = waic(ll, scale="deviance")
    np.testing.assert_allclose(dev["elpd_waic"], -2 * elpd_i.sum(), rtol=1e-10)
    if fit.result_.method == "nuts":
        # WAIC and PSIS-LOO agree closely on a well-specified, well-separated
        # fit (for ADVI, LOO is importance-corrected towards the posterior
        # and WAIC is not, so they differ)
        assert abs(got["elpd_waic"] - fit.result_.loo().elpd) < 1.0


def test_waic_closed_form_and_errors():
    # every draw gives density 1/2 everywhere: elpd = N log(1/2), p_waic = 0
    ll = np.log(np.full((2, 50, 7), 0.5))
    out = waic(ll)
    np.testing.assert_allclose(out["elpd_waic"], 7 * np.log(0.5))
    assert abs(out["p_waic"]) < 1e-20 and out["warning"] is False
    with pytest.raises(ValueError, match="draw and observation dims"):
        waic(np.zeros(5))
    with pytest.raises(ValueError, match=r"Valid: \['deviance', 'log'\]"):
        waic(ll, scale="aic")


def test_result_validation(tmp_path):
    with pytest.raises(TypeError, match="Expected an xarray.DataTree"):
        MixtureResult({"posterior": 1})
    with pytest.raises(ValueError, match="no 'posterior' group"):
        MixtureResult(xr.DataTree())
    with pytest.raises(FileNotFoundError, match="No such result file"):
        MixtureResult.from_netcdf(tmp_path / "missing.nc")


# ------------------------------------------------------------------------ I/O
def assert_trees_identical(a, b):
    assert sorted(a.children) == sorted(b.children)
    assert dict(a.attrs) == dict(b.attrs)
    for group in a.children:
        da, db = a[group].to_dataset(), b[group].to_dataset()
        assert dict(da.attrs) == dict(db.attrs), group
        assert sorted(da.variables) == sorted(db.variables), group
        for name in da.variables:
            va, vb = da[name], db[name]
            assert va.dims == vb.dims, (group, name)
            assert va.dtype == vb.dtype, (group, name, va.dtype, vb.dtype)
            np.testing.assert_array_equal(va.values, vb.values)
            assert dict(va.attrs) == dict(vb.attrs), (group, name)


def test_netcdf_round_trip_is_identical(fit, tmp_path):
    path = fit.result_.to_netcdf(tmp_path / "sub" / "fit.nc")
    assert path == tmp_path / "sub" / "fit.nc" and path.exists()
    loaded = MixtureResult.from_netcdf(path)
    assert_trees_identical(fit.result_.datatree, loaded.datatree)
    assert loaded.relabelling == fit.result_.relabelling
    assert repr(loaded) == repr(fit.result_)
    assert [p.name for p in path.parent.iterdir()] == ["fit.nc"]  # no temp files


def test_failed_write_keeps_the_previous_file(nuts_fit, tmp_path, monkeypatch):
    path = tmp_path / "fit.nc"
    nuts_fit.result_.to_netcdf(path)
    before = path.read_bytes()

    def broken(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as fh:
            fh.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(xr.DataTree, "to_netcdf", broken)
    with pytest.raises(OSError, match="disk full"):
        nuts_fit.result_.to_netcdf(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["fit.nc"]


def test_rebuilt_estimator_predicts_the_same(fit, grid, tmp_path):
    path = fit.result_.to_netcdf(tmp_path / "fit.nc")
    rebuilt = GaussianMixtureBayes.from_result(path)
    assert rebuilt.get_params() == fit.get_params()
    np.testing.assert_array_equal(rebuilt.predict_proba(grid), fit.predict_proba(grid))
    np.testing.assert_array_equal(rebuilt.score_samples(grid), fit.score_samples(grid))
    np.testing.assert_array_equal(rebuilt.means_, fit.means_)
    np.testing.assert_array_equal(rebuilt.sample(30)[0], fit.sample(30)[0])
    assert rebuilt.n_features_in_ == 2
    assert not hasattr(rebuilt, "feature_names_in_")


def test_rebuilt_estimator_keeps_feature_names(separated_2d, tmp_path):
    """A DataFrame fit: names become coordinates and survive save and load."""
    X, _, _ = separated_2d
    df = pd.DataFrame(X, columns=["x0", "height"])  # 'x0' alone looks generic
    fit = GaussianMixtureBayes(
        2, draws=100, tune=100, chains=2, progressbar=False, random_state=2
    ).fit(df)
    assert list(fit.result_.posterior["feature"].values) == ["x0", "height"]
    path = fit.result_.to_netcdf(tmp_path / "df.nc")
    rebuilt = GaussianMixtureBayes.from_result(path)
    assert list(rebuilt.feature_names_in_) == ["x0", "height"]
    np.testing.assert_array_equal(rebuilt.predict(df), fit.predict(df))
    assert json.loads(rebuilt.result_.attrs["feature_names_in"]) == ["x0", "height"]


def test_loo_for_both_methods(fit):
    loo = fit.result_.loo(pointwise=True)
    assert np.isfinite(loo.elpd) and loo.n_data_points == 200
    assert loo.pareto_k.shape == (200,)
    if fit.result_.method == "nuts":
        # with well-separated components the Pareto k of NUTS are small
        assert float(np.max(loo.pareto_k)) < 0.7
    else:
        # for ADVI the ratios p/q of the mean-field approximation enter every
        # observation's weights, so k is larger; the estimate is corrected
        assert loo.approx_posterior is True
