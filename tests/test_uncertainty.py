"""Tests of bayes_gmm.uncertainty (EM bootstrap).

Oracles: the analytic standard errors of a component mean (sd / sqrt(n_k))
and of a weight (sqrt(w (1 - w) / n)) on well-separated simulated data,
known injected label swaps and failures.
"""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import bayes_gmm.uncertainty as unc
from bayes_gmm import GaussianMixtureEM, make_mixture
from bayes_gmm._covariance import get_covariance_type
from bayes_gmm.em import run_em as real_run_em
from bayes_gmm.result import MixtureResult
from bayes_gmm.uncertainty import bootstrap_em

TYPES = ("full", "tied", "diag", "spherical")
N = 400


@pytest.fixture(scope="module")
def data():
    X, y, truth = make_mixture(N, 2, 2, separation=8.0, random_state=2)
    return X


@pytest.fixture(scope="module")
def em(data):
    return GaussianMixtureEM(2, n_init=3, random_state=0).fit(data)


@pytest.fixture(scope="module")
def boot_np(em, data):
    return bootstrap_em(em, data, n_boot=200, random_state=0)


@pytest.fixture(scope="module")
def boot_p(em, data):
    return bootstrap_em(em, data, n_boot=200, kind="parametric", random_state=0)


def analytic_se(em):
    """se of each component mean (sd / sqrt(n_k)) and of each weight."""
    nk = N * em.weights_
    var = np.diagonal(em.covariances_, axis1=1, axis2=2)
    return np.sqrt(var / nk[:, None]), np.sqrt(em.weights_ * (1 - em.weights_) / N)


@pytest.mark.parametrize("fixture", ["boot_np", "boot_p"])
def test_se_of_means_and_weights_match_analytic(request, fixture, em):
    boot = request.getfixturevalue(fixture)
    se_mean, se_w = analytic_se(em)
    sd = boot.posterior_sd()
    # 200 replicates estimate an sd to about 5%: 20% is 4 of those.
    np.testing.assert_allclose(sd["means"].values, se_mean, rtol=0.2)
    np.testing.assert_allclose(sd["weights"].values, se_w, rtol=0.2)


def test_parametric_and_nonparametric_agree(boot_np, boot_p):
    a = boot_np.posterior_sd()
    b = boot_p.posterior_sd()
    for var in ("weights", "means", "covariances"):
        ratio = b[var].values / a[var].values
        ratio = ratio[np.isfinite(ratio)]
        assert np.all((ratio > 0.7) & (ratio < 1.4)), (var, ratio)


def test_bootstrap_centred_on_estimate_and_labels_kept(boot_np, em):
    # Labels stay aligned: every replicate's means sit near the estimate's
    # own component (the components are 8 sd apart).
    means = boot_np.posterior["means"].values[0]  # (draw, K, D)
    se_mean, _ = analytic_se(em)
    dev = np.abs(means - em.means_) / se_mean
    assert dev.max() < 6
    centre = means.mean(axis=0)
    assert np.all(np.abs(centre - em.means_) < 0.5 * se_mean)
    assert boot_np.attrs["share_realigned"] == 0.0
    assert boot_np.attrs["n_failed"] == 0


def test_reproducible(em, data):
    a = bootstrap_em(em, data, n_boot=20, random_state=7)
    b = bootstrap_em(em, data, n_boot=20, random_state=7)
    c = bootstrap_em(em, data, n_boot=20, random_state=8)
    np.testing.assert_array_equal(
        a.posterior["means"].values, b.posterior["means"].values
    )
    assert not np.array_equal(a.posterior["means"].values, c.posterior["means"].values)


@pytest.mark.parametrize("ctype", TYPES)
def test_layout_is_that_of_a_posterior(ctype, data):
    em = GaussianMixtureEM(2, covariance_type=ctype, random_state=0).fit(data)
    boot = bootstrap_em(em, data, n_boot=10, random_state=0)
    assert isinstance(boot, MixtureResult)
    assert boot.method == "bootstrap"
    post = boot.posterior
    ct = get_covariance_type(ctype)
    assert post["weights"].dims == ("chain", "draw", "component")
    assert post["means"].dims == ("chain", "draw", "component", "feature")
    assert post["covariances"].dims == ("chain", "draw", *ct.dims)
    assert post.sizes["chain"] == 1 and post.sizes["draw"] == 10
    point = boot.datatree["point_estimate"].to_dataset()
    np.testing.assert_array_equal(point["covariances"].values, em.covariances_)
    np.testing.assert_array_equal(point["means"].values, em.means_)
    # the shared machinery works on it: draws() in canonical Cholesky form
    w, mu, chol = boot.draws()
    cov = chol @ np.swapaxes(chol, -1, -2)
    full = np.asarray(ct.to_cholesky(post["covariances"].values[0], 2, 2))
    np.testing.assert_allclose(cov, full @ np.swapaxes(full, -1, -2), rtol=1e-12)
    summary = boot.summary(ci_prob=0.9)
    assert "eti90_lb" in summary.columns


def test_dataframe_feature_names(em, data):
    import pandas as pd

    df = pd.DataFrame(data, columns=["a", "b"])
    em_df = GaussianMixtureEM(2, random_state=0).fit(df)
    boot = bootstrap_em(em_df, df, n_boot=5, random_state=0)
    assert list(boot.posterior["feature"].values) == ["a", "b"]


def test_swapped_replicates_are_realigned(monkeypatch, em, data):
    # Every third refit comes back with its components swapped; the
    # alignment check must undo exactly those.
    calls = {"n": 0}

    def swapping_run_em(X, params, **kw):
        run = real_run_em(X, params, **kw)
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            p = run.params
            run.params = type(p)(
                p.weights[::-1],
                p.means[::-1],
                p.covariances[::-1],
                p.precisions_cholesky[::-1],
                p.covariance_type,
            )
        return run

    monkeypatch.setattr(unc, "run_em", swapping_run_em)
    boot = bootstrap_em(em, data, n_boot=30, random_state=0)
    realigned = boot.datatree["bootstrap_stats"].to_dataset()["realigned"].values[0]
    np.testing.assert_array_equal(np.flatnonzero(realigned), np.arange(2, 30, 3))
    assert boot.attrs["share_realigned"] == pytest.approx(10 / 30)
    means = boot.posterior["means"].values[0]
    assert np.abs(means - em.means_).max() < 1.0  # all aligned to the estimate


def test_failed_replicates_are_redrawn(monkeypatch, em, data):
    calls = {"n": 0}

    def flaky_run_em(X, params, **kw):
        calls["n"] += 1
        if calls["n"] <= 3:
            raise ValueError("Fitting the mixture model failed (collapsed)")
        return real_run_em(X, params, **kw)

    monkeypatch.setattr(unc, "run_em", flaky_run_em)
    boot = bootstrap_em(em, data, n_boot=10, random_state=0)
    assert boot.attrs["n_failed"] == 3
    assert boot.posterior.sizes["draw"] == 10


def test_all_failing_raises(monkeypatch, em, data):
    def broken(X, params, **kw):
        raise np.linalg.LinAlgError("not positive definite")

    monkeypatch.setattr(unc, "run_em", broken)
    with pytest.raises(ValueError, match="bootstrap refits failed"):
        bootstrap_em(em, data, n_boot=5, random_state=0)


def test_bad_input(em, data):
    X = data.copy()
    X[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN at row 5, column 1"):
        bootstrap_em(em, X, n_boot=5)
    with pytest.raises(ValueError, match=r"\['nonparametric', 'parametric'\]"):
        bootstrap_em(em, data, n_boot=5, kind="smooth")
    with pytest.raises(ValueError, match="'n_boot' must be >= 2"):
        bootstrap_em(em, data, n_boot=1)
    with pytest.raises(ValueError, match="features"):
        bootstrap_em(em, data[:, :1], n_boot=5)
    with pytest.raises(NotFittedError):
        bootstrap_em(GaussianMixtureEM(2), data, n_boot=5)
    with pytest.raises(TypeError, match="GaussianMixtureEM"):
        bootstrap_em("em", data, n_boot=5)
