"""The pointwise log-likelihood computed on demand, a block of observations at
a time, instead of stored (GaussianMixtureBayes(log_likelihood=...)).

Oracles: ArviZ's own ``arviz_stats.loo`` / ``loo_approximate_posterior`` on
the full stored group, and :func:`bayes_gmm.result.waic` on the full array.
PSIS is pointwise, so the blockwise numbers must agree to rounding.
"""

import arviz_stats
import numpy as np
import pytest
import xarray as xr

from bayes_gmm import GaussianMixtureBayes, diagnose
from bayes_gmm import result as result_mod
from bayes_gmm.result import MixtureResult, waic


def _on_demand(result):
    """The same fit with its log_likelihood group dropped."""
    tree = result.datatree.copy()
    del tree["log_likelihood"]
    tree.attrs["log_likelihood"] = "on_demand"
    return MixtureResult(tree)


@pytest.fixture
def tiny_blocks(monkeypatch):
    # 7 observations per block at 600 draws: many blocks, a ragged last one
    monkeypatch.setattr(result_mod, "_LOGLIK_BLOCK_VALUES", 600 * 7)


@pytest.mark.parametrize("fit", ["nuts_fit", "advi_fit"])
def test_blockwise_loo_equals_arviz_on_the_full_group(fit, request, tiny_blocks):
    full = request.getfixturevalue(fit).result_
    lazy = _on_demand(full)
    assert lazy.log_likelihood_on_demand and not full.log_likelihood_on_demand
    want = full.loo(pointwise=True)
    got = lazy.loo(pointwise=True)
    for attr in ("elpd", "se", "p", "good_k", "n_samples", "n_data_points"):
        np.testing.assert_allclose(getattr(got, attr), getattr(want, attr), rtol=1e-10)
    np.testing.assert_allclose(got.elpd_i.values, want.elpd_i.values, rtol=1e-10)
    np.testing.assert_allclose(got.pareto_k.values, want.pareto_k.values, rtol=1e-9)
    assert got.warning == want.warning
    assert got.approx_posterior == want.approx_posterior


def test_blockwise_waic_and_totals_equal_the_full_array(nuts_fit, tiny_blocks):
    full = nuts_fit.result_
    lazy = _on_demand(full)
    ll = full.datatree["log_likelihood"].to_dataset()["x"]
    want = waic(ll.transpose("chain", "draw", ...), pointwise=True)
    got = lazy.waic(pointwise=True)
    for key in ("elpd_waic", "se", "p_waic", "n_samples", "n_data_points"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-10)
    np.testing.assert_allclose(got["elpd_waic_i"], want["elpd_waic_i"], rtol=1e-10)
    np.testing.assert_allclose(
        lazy.log_likelihood_totals(), ll.sum("obs").values, rtol=1e-12
    )


def test_with_log_likelihood_restores_the_group_for_arviz(nuts_fit, tiny_blocks):
    full = nuts_fit.result_
    tree = _on_demand(full).with_log_likelihood()
    xr.testing.assert_allclose(
        tree["log_likelihood"].to_dataset()["x"],
        full.datatree["log_likelihood"].to_dataset()["x"],
        rtol=1e-12,
    )
    assert arviz_stats.loo(tree, var_name="x").elpd == pytest.approx(
        full.loo().elpd, rel=1e-12
    )


def test_diagnose_reads_the_same_invariants_on_demand(nuts_fit, tiny_blocks):
    want = diagnose(nuts_fit.result_)
    got = diagnose(_on_demand(nuts_fit.result_))
    assert [(c.name, c.status, c.value) for c in got.checks] == [
        (c.name, c.status, c.value) for c in want.checks
    ]


def test_estimator_without_the_group_scores_like_the_stored_fit(separated_2d, tmp_path):
    X, _, _ = separated_2d
    X = X[:80]
    kw = dict(draws=150, tune=150, chains=2, progressbar=False, random_state=1)
    stored = GaussianMixtureBayes(2, log_likelihood=True, **kw).fit(X)
    lazy = GaussianMixtureBayes(2, log_likelihood=False, **kw).fit(X)
    assert "log_likelihood" in stored.result_.datatree.children
    assert "log_likelihood" not in lazy.result_.datatree.children
    xr.testing.assert_allclose(
        stored.result_.posterior, lazy.result_.posterior, rtol=1e-12
    )
    want = stored.result_.loo(pointwise=True)
    # also after a netCDF round trip: the file holds no log_likelihood either
    again = MixtureResult.from_netcdf(lazy.result_.to_netcdf(tmp_path / "fit.nc"))
    for res in (lazy.result_, again):
        got = res.loo(pointwise=True)
        np.testing.assert_allclose(got.elpd_i.values, want.elpd_i.values, rtol=1e-10)
        assert got.se == pytest.approx(want.se, rel=1e-10)
        assert res.waic()["elpd_waic"] == pytest.approx(
            stored.result_.waic()["elpd_waic"], rel=1e-10
        )
    np.testing.assert_allclose(lazy.score_samples(X), stored.score_samples(X))


def test_auto_stores_up_to_the_limit(separated_2d, monkeypatch):
    from bayes_gmm import bayes

    X, _, _ = separated_2d
    X = X[:50]
    kw = dict(draws=100, tune=100, chains=2, progressbar=False, random_state=2)
    # 2 x 100 draws x 50 points = 10,000 values
    monkeypatch.setattr(bayes, "_STORED_LOG_LIKELIHOOD", 10_000)
    assert (
        GaussianMixtureBayes(2, **kw).fit(X).result_.datatree.attrs["log_likelihood"]
        == "stored"
    )
    monkeypatch.setattr(bayes, "_STORED_LOG_LIKELIHOOD", 9_999)
    fit = GaussianMixtureBayes(2, **kw).fit(X)
    assert "log_likelihood" not in fit.result_.datatree.children
    assert fit.result_.log_likelihood_on_demand


@pytest.mark.parametrize("bad", ["yes", None, 1.5])
def test_log_likelihood_parameter_is_checked_before_fitting(bad, separated_2d):
    X, _, _ = separated_2d
    with pytest.raises(ValueError, match="'log_likelihood' must be 'auto', True or"):
        GaussianMixtureBayes(2, log_likelihood=bad).fit(X)
