"""Tests of bayes_gmm.bayes: GaussianMixtureBayes fitted by NUTS or ADVI.

nutpie samples the hand-written kernel of bayes_gmm._kernel, which compiles
nothing per fit, so real NUTS runs are cheap (seconds): recovery of
simulated truth for every covariance type, agreement with EM at N=2000 and
the Old Faithful convergence check run in the default suite. PyMC's own
sampler and ADVI compile PyTensor graphs (tens of seconds each): they are
exercised with sampling mocked (only the plumbing is under test there), on
the shared fixtures of tests/conftest.py, or under ``slow``.

Oracles: EM fits, scipy densities, simulated truth, the starts we gave.
"""

import dataclasses
import json
import logging
import warnings

import arviz_stats
import numpy as np
import pymc as pm
import pytest
import xarray as xr
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp
from scipy.stats import multivariate_normal, norm

import bayes_gmm.bayes as bayes_module
from bayes_gmm import (
    BayesGMMWarning,
    ConvergenceWarning,
    GaussianMixtureBayes,
    GaussianMixtureEM,
    Priors,
    load_faithful,
    make_mixture,
)
from bayes_gmm._covariance import COVARIANCE_TYPES, get_covariance_type
from bayes_gmm.bayes import (
    LossConvergence,
    _flat_transformed,
    nutpie_initial_point_func,
)
from bayes_gmm.model import build_model, initial_point
from bayes_gmm.relabel import inverse_permutations

TYPES = sorted(COVARIANCE_TYPES)
PARAMS = ("weights", "means", "covariances")
FAST = dict(progressbar=False, random_state=0)


def em_fit(X, k=2, covariance_type="full"):
    return GaussianMixtureEM(k, covariance_type=covariance_type, random_state=0).fit(X)


def match_components(means, reference):
    """Permutation of ``means`` rows that best matches ``reference`` rows."""
    cost = ((means[:, None, :] - reference[None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(len(rows), dtype=int)
    perm[cols] = rows
    return perm


def max_rhat(posterior):
    dt = xr.DataTree.from_dict({"posterior": posterior[list(PARAMS)]})
    r = arviz_stats.rhat(dt).to_dataset()
    return float(max(np.nanmax(r[v].values) for v in PARAMS))


def unpermuted(result):
    """The draws as sampled (undo the stored relabelling permutations)."""
    post = result.posterior
    if "relabelling" not in result.datatree.children:
        return post
    perms = result.datatree["relabelling"].to_dataset()["permutation"].values
    inv = inverse_permutations(perms)
    out = {}
    for name in PARAMS:
        v = post[name].values
        if "component" in post[name].dims:
            v = np.take_along_axis(
                v, inv.reshape(inv.shape + (1,) * (v.ndim - 3)), axis=2
            )
        out[name] = (post[name].dims, v)
    return xr.Dataset(out, coords=post.coords)


def flat_unconstrained(model, draw):
    """A posterior draw -> the model's flat unconstrained vector (approx order)."""
    point = initial_point(model, *draw)
    return _flat_transformed(model, {k: v for k, v in point.items()})


# ----------------------------------------------------------------- defaults
def test_defaults_follow_the_design():
    est = GaussianMixtureBayes()
    params = est.get_params()
    assert params["n_components"] == 2
    assert params["method"] == "nuts"
    assert params["sampler"] == "nutpie"
    assert params["init"] == "em"
    assert params["relabel"] is True
    assert params["progressbar"] is True
    assert params["order_means"] is None
    assert (params["draws"], params["tune"], params["chains"]) == (1000, 1000, 4)


def test_nuts_fit_layout(nuts_fit, separated_2d):
    X, _, _ = separated_2d
    res = nuts_fit.result_
    dt = res.datatree
    assert {"posterior", "log_likelihood", "observed_data", "sample_stats"} <= set(
        dt.children
    )
    post = res.posterior
    assert dict(post["weights"].sizes) == {"chain": 2, "draw": 300, "component": 2}
    assert post["means"].dims == ("chain", "draw", "component", "feature")
    assert post["covariances"].dims == (
        "chain",
        "draw",
        "component",
        "feature",
        "feature_bis",
    )
    ll = dt["log_likelihood"].to_dataset()["x"]
    assert ll.dims == ("chain", "draw", "obs") and ll.shape == (2, 300, 200)
    np.testing.assert_array_equal(dt["observed_data"].to_dataset()["x"].values, X)
    assert "diverging" in dt["sample_stats"].to_dataset()
    attrs = dt.attrs
    assert attrs["method"] == "nuts" and attrs["covariance_type"] == "full"
    assert attrs["n_components"] == 2
    assert Priors.from_dict(attrs["priors"]) == Priors()
    assert json.loads(attrs["random_state"]) == 0
    inference = json.loads(attrs["inference"])
    assert inference["sampler"] == "nutpie" and nuts_fit.sampler_used_ == "nutpie"
    assert {"compile_seconds", "sampling_seconds", "compile_reused"} <= set(inference)
    # the model carries no model-level initial values
    assert all(v is None for v in nuts_fit.model_.rvs_to_initial_values.values())
    # point estimates are the posterior means, in EM's shapes
    np.testing.assert_allclose(nuts_fit.means_, post["means"].mean(("chain", "draw")))
    assert nuts_fit.covariances_.shape == (2, 2, 2)


def test_log_likelihood_is_the_marginal_density(nuts_fit, separated_2d):
    """/log_likelihood = log sum_k w_k N(x | mu_k, Sigma_k), by scipy, per draw."""
    X, _, _ = separated_2d
    post = nuts_fit.result_.posterior
    ll = nuts_fit.result_.datatree["log_likelihood"].to_dataset()["x"].values
    for c, d in [(0, 0), (1, 137), (0, 299)]:
        w = post["weights"].values[c, d]
        mu = post["means"].values[c, d]
        cov = post["covariances"].values[c, d]
        comp = [
            np.log(w[j]) + multivariate_normal(mu[j], cov[j]).logpdf(X) for j in (0, 1)
        ]
        np.testing.assert_allclose(ll[c, d], logsumexp(comp, axis=0), rtol=1e-10)


def test_nuts_posterior_is_centred_on_the_truth(nuts_fit, separated_2d):
    X, _, truth = separated_2d
    mean = nuts_fit.means_
    perm = match_components(mean, truth.means)
    sd = nuts_fit.result_.posterior_sd()["means"].values[perm]
    assert np.all(np.abs(mean[perm] - truth.means) < 4 * sd + 0.05)
    assert np.all(nuts_fit.result_.datatree["sample_stats"]["diverging"].values == 0)


def test_advi_means_close_to_nuts(nuts_fit, advi_fit, separated_2d):
    """ADVI posterior means within 0.1 data-sd of NUTS on well-separated data."""
    X, _, _ = separated_2d
    perm = match_components(advi_fit.means_, nuts_fit.means_)
    diff = np.abs(advi_fit.means_[perm] - nuts_fit.means_) / X.std(axis=0)
    assert np.all(diff < 0.1), diff
    np.testing.assert_allclose(advi_fit.weights_[perm], nuts_fit.weights_, atol=0.05)


# ------------------------------------------------------- reuse and seeds
@pytest.fixture(scope="module")
def nuts_refit(separated_2d):
    """The conftest NUTS fit, repeated: same data, same parameters, same seed."""
    X, _, _ = separated_2d
    return GaussianMixtureBayes(
        2, draws=300, tune=300, chains=2, progressbar=False, random_state=0
    ).fit(X)


def test_same_random_state_gives_identical_nuts_draws(nuts_fit, nuts_refit):
    for name in PARAMS:
        np.testing.assert_array_equal(
            nuts_refit.result_.posterior[name].values,
            nuts_fit.result_.posterior[name].values,
        )


def test_second_fit_reuses_the_compiled_model(nuts_fit, nuts_refit):
    inference = json.loads(nuts_refit.result_.attrs["inference"])
    assert inference["compile_reused"] is True
    assert inference["compile_seconds"] < 5.0


def test_new_data_of_the_same_shape_reuse_the_compiled_model(monkeypatch, nuts_fit):
    """Other data (other N, other units) reuse the compiled model, and it is
    really the new data that are sampled; the progress bar setting is passed."""
    import nutpie

    calls = []
    real = nutpie.sample

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(nutpie, "sample", spy)
    X, _, truth = make_mixture(150, 2, 2, separation=6.0, random_state=21)
    X = X * 100 + 5000
    fit = GaussianMixtureBayes(
        2, draws=150, tune=150, chains=2, progressbar=True, random_state=1
    ).fit(X)
    assert json.loads(fit.result_.attrs["inference"])["compile_reused"] is True
    assert calls[-1]["progress_bar"] is True and calls[-1]["chains"] == 2
    perm = match_components(fit.means_, truth.means * 100 + 5000)
    np.testing.assert_allclose(fit.means_[perm], truth.means * 100 + 5000, atol=40)


# ---------------------------------------------------------------- starts
@pytest.fixture(scope="module")
def model_and_em(separated_2d):
    X, _, _ = separated_2d
    em = em_fit(X)
    return build_model(X, 2), em


def _weights_means(model, flat):
    """Constrained weights and means of a flat unconstrained vector."""
    from pytensor.compile.mode import Mode

    names, pos, point = [], 0, {}
    for rv in model.free_RVs:
        value = model.rvs_to_values[rv]
        shape = model.initial_point()[value.name].shape
        size = int(np.prod(shape))
        point[value.name] = flat[pos : pos + size].reshape(shape)
        pos += size
        names.append(value.name)
    fn = model.compile_fn(
        model.replace_rvs_by_values([model["weights"], model["means"]]),
        inputs=model.value_vars,
        point_fn=False,
        on_unused_input="ignore",
        mode=Mode(linker="py", optimizer="fast_compile"),
    )
    return fn(*[point[v.name] for v in model.value_vars])


def test_chains_start_at_em_jittered_differently(model_and_em):
    model, em = model_and_em
    start = initial_point(model, em.weights_, em.means_, em.covariances_)
    centre = _flat_transformed(model, start)
    func = nutpie_initial_point_func(model, [start, start], jitter_seed=7)
    seeds = [12345678901234567890, 42]  # nutpie passes u64 seeds
    points = [func(s) for s in seeds]
    for p in points:
        assert p.shape == centre.shape
        jitter = p - centre
        assert 0 < np.abs(jitter).max() < 0.25 and 0.02 < jitter.std() < 0.1
    assert not np.allclose(points[0], points[1])  # different per chain
    # the same seed gives the same start (reproducible)
    again = nutpie_initial_point_func(model, [start, start], jitter_seed=7)
    np.testing.assert_array_equal(again(seeds[0]), points[0])
    # in data units the start is the EM fit, up to the small jitter
    w, mu = _weights_means(model, points[0])
    np.testing.assert_allclose(w, em.weights_, atol=0.03)
    np.testing.assert_allclose(mu, em.means_, atol=0.1 * em.means_.std())


def test_per_chain_starts_reach_chains_in_call_order(model_and_em):
    model, em = model_and_em
    a = initial_point(model, em.weights_, em.means_, em.covariances_)
    b = initial_point(model, em.weights_[::-1], em.means_[::-1], em.covariances_[::-1])
    func = nutpie_initial_point_func(model, [a, b], jitter_seed=0)
    p0, p1 = func(111), func(222)
    assert np.abs(p0 - _flat_transformed(model, a)).max() < 0.25
    assert np.abs(p1 - _flat_transformed(model, b)).max() < 0.25
    np.testing.assert_array_equal(func(111), p0)  # a seed keeps its chain


def test_per_chain_starts_follow_the_chain_seeds_not_the_call_order(model_and_em):
    # nutpie's worker threads call in an order that depends on timing: with
    # the chains' seeds known, chain i gets start i whatever the order.
    model, em = model_and_em
    a = initial_point(model, em.weights_, em.means_, em.covariances_)
    b = initial_point(model, em.weights_[::-1], em.means_[::-1], em.covariances_[::-1])
    fa, fb = _flat_transformed(model, a), _flat_transformed(model, b)
    seeds = [111, 222, 333, 444]
    func = nutpie_initial_point_func(model, [a, b], jitter_seed=0, chain_seeds=seeds)
    got = {s: func(s) for s in reversed(seeds)}
    for i, s in enumerate(seeds):
        want, other = (fa, fb) if i % 2 == 0 else (fb, fa)
        assert np.abs(got[s] - want).max() < 0.25
        assert np.abs(got[s] - other).max() > 0.25


def test_chain_seeds_are_those_nutpie_gives_each_chain(model_and_em):
    # Oracle: nutpie itself, chain i's first draw in a tiny run starting
    # each chain at a point of its own, tagged by the probed seeds.
    import nutpie

    from bayes_gmm.bayes import _chain_seeds, _nutpie_model

    model, em = model_and_em
    a = initial_point(model, em.weights_, em.means_, em.covariances_)
    compiled, _ = _nutpie_model(model, nutpie_initial_point_func(model, [a], 0))
    seeds = _chain_seeds(compiled, 4, seed=5)
    assert len(set(seeds)) == 4
    seen = []

    def record(seed):
        seen.append(int(seed))
        return compiled.initial_point_func(seed)

    nutpie.sample(
        dataclasses.replace(compiled, initial_point_func=record),
        draws=1,
        tune=1,
        chains=4,
        cores=2,
        seed=5,
        progress_bar=False,
    )
    assert sorted(seen[:4]) == sorted(seeds)


def test_init_prior_jitters_the_support_point(model_and_em):
    """nutpie rejects a start whose gradient has an exact zero, which the
    symmetric support point of a mixture has: init="prior" jitters it."""
    model, _ = model_and_em
    centre = _flat_transformed(model, {})
    func = nutpie_initial_point_func(model, None, jitter_seed=0)
    p0, p1 = func(1), func(2)
    assert np.all(np.abs(p0 - centre) <= 1) and np.all(np.abs(p1 - centre) <= 1)
    assert np.abs(p0 - centre).min() > 0 and not np.allclose(p0, p1)


# ------------------------------------------------- mocked PyMC sampling
def fake_posterior(est, X, chains, draws, rng):
    """Posterior draws around the EM fit, in the layout pm.sample returns."""
    ct = get_covariance_type(est.covariance_type)
    em = em_fit(X, est.n_components, ct.name)
    k, d = em.means_.shape
    w = np.broadcast_to(em.weights_, (chains, draws, k))
    mu = em.means_ + 0.01 * rng.standard_normal((chains, draws, k, d))
    cov = np.broadcast_to(em.covariances_, (chains, draws, *np.shape(em.covariances_)))
    names = [f"x{j}" for j in range(d)]
    post = xr.Dataset(
        {
            "weights": (("chain", "draw", "component"), w.copy()),
            "means": (("chain", "draw", "component", "feature"), mu),
            "covariances": (("chain", "draw", *ct.dims), cov.copy()),
        },
        coords={"chain": np.arange(chains), "draw": np.arange(draws), "feature": names},
    )
    stats = xr.Dataset(
        {"diverging": (("chain", "draw"), np.zeros((chains, draws), bool))},
        coords={"chain": np.arange(chains), "draw": np.arange(draws)},
    )
    return xr.DataTree.from_dict({"posterior": post, "sample_stats": stats})


@pytest.fixture
def mock_pm_sample(monkeypatch):
    """Replace pm.sample by a recorder returning draws around the EM fit."""
    calls = []

    def fake_sample(**kwargs):
        calls.append(kwargs)
        est = calls_owner[0]
        return fake_posterior(
            est, est._X, kwargs["chains"], kwargs["draws"], np.random.default_rng(0)
        )

    calls_owner = []
    monkeypatch.setattr(pm, "sample", fake_sample)
    return calls, calls_owner


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("sampler", ["numpyro", "blackjax"])
def test_missing_sampler_falls_back_to_pymc_with_a_log(
    mock_pm_sample, caplog, sampler, covariance_type
):
    calls, owner = mock_pm_sample
    X, _, _ = make_mixture(60, 2, 2, random_state=5)
    est = GaussianMixtureBayes(
        2,
        covariance_type=covariance_type,
        sampler=sampler,
        chains=3,
        draws=20,
        tune=10,
        progressbar=False,
        random_state=3,
    )
    est._X = X
    owner.append(est)
    with (
        caplog.at_level(logging.WARNING, logger="bayes_gmm"),
        pytest.warns(BayesGMMWarning, match=f"sampler={sampler!r} is not available"),
    ):
        est.fit(X)
    assert est.sampler_used_ == "pymc"
    assert any(
        f"sampler={sampler!r} is not available: {sampler} is not installed"
        in r.getMessage()
        and "Sampling with sampler='pymc'" in r.getMessage()
        for r in caplog.records
    )
    (kwargs,) = calls
    assert kwargs["nuts_sampler"] == "pymc"
    assert kwargs["progressbar"] is False
    # starts go to pm.sample(initvals=), one jittered EM start per chain
    assert kwargs["init"] == "adapt_diag"
    initvals = kwargs["initvals"]
    assert isinstance(initvals, list) and len(initvals) == 3
    em = est.em_
    ref = initial_point(est.model_, em.weights_, em.means_, em.covariances_)
    for iv in initvals:
        assert set(iv) == set(ref)
        for name in ref:
            assert np.allclose(iv[name], ref[name], atol=0.3, rtol=0.3)
    assert not np.allclose(initvals[0]["means_z"], initvals[1]["means_z"])
    assert all(v is None for v in est.model_.rvs_to_initial_values.values())
    # the result is assembled for this covariance type
    res = est.result_
    ct = get_covariance_type(covariance_type)
    assert res.posterior["covariances"].dims == ("chain", "draw", *ct.dims)
    assert res.datatree["log_likelihood"]["x"].shape == (3, 20, 60)
    assert json.loads(res.attrs["inference"])["sampler"] == "pymc"


def test_installed_pymc_sampler_logs_no_fallback(mock_pm_sample, caplog):
    calls, owner = mock_pm_sample
    X, _, _ = make_mixture(40, 2, 2, random_state=5)
    est = GaussianMixtureBayes(
        2, sampler="pymc", chains=2, draws=10, tune=5, progressbar=True, random_state=0
    )
    est._X = X
    owner.append(est)
    with caplog.at_level(logging.WARNING, logger="bayes_gmm"):
        est.fit(X)
    assert not [r for r in caplog.records if "falling back" in r.message]
    assert calls[0]["progressbar"] is True and calls[0]["chains"] == 2


def test_missing_nutpie_falls_back(mock_pm_sample, monkeypatch, caplog):
    calls, owner = mock_pm_sample
    monkeypatch.setattr(bayes_module, "_has", lambda module: module != "nutpie")
    X, _, _ = make_mixture(40, 2, 2, random_state=5)
    est = GaussianMixtureBayes(2, chains=2, draws=10, tune=5, **FAST)
    est._X = X
    owner.append(est)
    with (
        caplog.at_level(logging.WARNING, logger="bayes_gmm"),
        pytest.warns(BayesGMMWarning, match="nutpie is not installed"),
    ):
        est.fit(X)
    assert est.sampler_used_ == "pymc"
    assert any(
        "sampler='nutpie' is not available: nutpie is not installed" in r.getMessage()
        for r in caplog.records
    )


def test_init_prior_with_pymc_lets_pymc_jitter(mock_pm_sample):
    calls, owner = mock_pm_sample
    X, _, _ = make_mixture(40, 2, 2, random_state=5)
    est = GaussianMixtureBayes(
        2, sampler="pymc", init="prior", chains=2, draws=10, tune=5, **FAST
    )
    est._X = X
    owner.append(est)
    est.fit(X)
    assert calls[0]["initvals"] is None and calls[0]["init"] == "jitter+adapt_diag"


def test_user_starts_per_chain_go_to_pymc(mock_pm_sample):
    calls, owner = mock_pm_sample
    X, _, _ = make_mixture(60, 2, 2, random_state=5)
    em = em_fit(X)
    a = {"weights": em.weights_, "means": em.means_, "covariances": em.covariances_}
    b = {k: v[::-1] for k, v in a.items()}
    est = GaussianMixtureBayes(
        2, sampler="pymc", init=[a, b], chains=2, draws=10, tune=5, **FAST
    )
    est._X = X
    owner.append(est)
    est.fit(X)
    iv = calls[0]["initvals"]
    model = est.model_
    loc, scale = model.bayes_gmm_info["loc"], model.bayes_gmm_info["scale"]
    np.testing.assert_allclose(iv[0]["means_z"], (a["means"] - loc) / scale, atol=0.3)
    np.testing.assert_allclose(iv[1]["means_z"], (b["means"] - loc) / scale, atol=0.3)
    # the estimator's parameters are stored as JSON (arrays as lists)
    params = json.loads(est.result_.attrs["estimator_params"])
    np.testing.assert_allclose(params["init"][1]["means"], b["means"])


# ------------------------------------------------------------ label switching
@pytest.fixture(scope="module")
def permuted_start_fits(separated_2d):
    """4 chains, two started at the EM labelling and two at the swapped one."""
    X, _, _ = separated_2d
    em = em_fit(X)
    a = {"weights": em.weights_, "means": em.means_, "covariances": em.covariances_}
    b = {k: v[::-1].copy() for k, v in a.items()}
    kw = dict(draws=400, tune=300, chains=4, init=[a, b, a, b], **FAST)
    raw = GaussianMixtureBayes(2, relabel=False, **kw).fit(X)
    fixed = GaussianMixtureBayes(2, relabel=True, **kw).fit(X)
    return raw, fixed


def test_relabelling_fixes_chains_started_at_permuted_labels(permuted_start_fits):
    raw, fixed = permuted_start_fits
    # the same seed: identical draws before relabelling
    for name in PARAMS:
        np.testing.assert_array_equal(
            unpermuted(fixed.result_)[name].values, raw.result_.posterior[name].values
        )
    before = max_rhat(raw.result_.posterior)
    after = max_rhat(fixed.result_.posterior)
    assert before > 1.5, before
    assert after < 1.01, after
    # the chains stayed in their modes: chains 1 and 3 were relabelled wholesale
    record = fixed.result_.relabelling
    np.testing.assert_allclose(record["share_permuted"], [0, 1, 0, 1], atol=0.01)
    perms = fixed.result_.datatree["relabelling"].to_dataset()["permutation"]
    assert perms.dims == ("chain", "draw", "component")
    assert (perms.values[1] == [1, 0]).mean() > 0.99
    assert "relabelling" not in raw.result_.datatree.children
    assert raw.result_.relabelling is None


def test_relabelling_record_is_stored(nuts_fit):
    rec = nuts_fit.result_.relabelling
    assert rec["method"] == "pivot" and rec["covariance_type"] == "full"
    assert len(rec["share_permuted"]) == 2
    assert rec["n_components"] == 2 and rec["converged"] is True
    perms = nuts_fit.result_.datatree["relabelling"].to_dataset()["permutation"]
    assert perms.shape == (2, 300, 2)
    np.testing.assert_allclose(
        (perms.values != np.arange(2)).any(-1).mean(-1), rec["share_permuted"]
    )


# ----------------------------------------------------------------- ADVI
def test_advi_layout_and_loss_history(advi_fit):
    dt = advi_fit.result_.datatree
    assert advi_fit.result_.method == "advi"
    post = advi_fit.result_.posterior
    assert dict(post.sizes) == {
        "chain": 1,
        "draw": 300,
        "component": 2,
        "feature": 2,
        "feature_bis": 2,
    }
    assert dt["log_likelihood"]["x"].shape == (1, 300, 200)
    stats = dt["fit_stats"].to_dataset()
    assert stats.attrs["converged"] == 1
    n_iter = stats.attrs["n_iter"]
    assert stats["loss"].shape == (n_iter,) and n_iter < advi_fit.max_iter
    # the loss went down: the last window is well below the first
    loss = stats["loss"].values
    assert loss[-500:].mean() < loss[:100].mean()
    assert stats["log_p"].dims == ("chain", "draw") == stats["log_q"].dims
    # started at the Laplace approximation around EM, hence the small step
    assert stats.attrs["laplace_start"] == 1
    assert stats.attrs["learning_rate"] == 0.001


def test_advi_log_q_against_scipy(advi_fit):
    """log_q of each draw = the Gaussian approximation's density (scipy) at it."""
    model = advi_fit.model_
    post = unpermuted(advi_fit.result_)
    approx = advi_fit.approx_
    mean = approx.mean.eval()
    sd = approx.std.eval()
    log_q = advi_fit.result_.datatree["fit_stats"]["log_q"].values[0]
    for i in (0, 150, 299):
        draw = [post[n].values[0, i] for n in PARAMS]
        flat = flat_unconstrained(model, draw)
        np.testing.assert_allclose(
            norm(mean, sd).logpdf(flat).sum(), log_q[i], rtol=1e-7
        )


def test_advi_log_p_is_prior_plus_marginal_likelihood(advi_fit):
    """log_p - sum_n /log_likelihood = the log prior (with Jacobian) of the draw."""
    from pytensor.compile.mode import Mode

    model = advi_fit.model_
    post = unpermuted(advi_fit.result_)
    stats = advi_fit.result_.datatree["fit_stats"]
    # the stored log-likelihood is label-invariant, so relabelled draws give it
    ll = advi_fit.result_.datatree["log_likelihood"]["x"].values[0].sum(-1)
    prior = model.compile_logp(
        vars=model.free_RVs, mode=Mode(linker="py", optimizer="fast_compile")
    )
    for i in (3, 200):
        draw = [post[n].values[0, i] for n in PARAMS]
        point = initial_point(model, *draw)
        from pymc.initial_point import make_initial_point_fn

        tp = make_initial_point_fn(
            model=model, overrides=point, jitter_rvs=set(), return_transformed=True
        )(0)
        np.testing.assert_allclose(
            stats["log_p"].values[0, i] - ll[i], prior(tp), rtol=1e-7
        )


def test_advi_loo_works_and_agrees_with_nuts(advi_fit, nuts_fit):
    loo_advi = advi_fit.result_.loo()
    loo_nuts = nuts_fit.result_.loo()
    assert loo_advi.approx_posterior is True
    assert np.isfinite(loo_advi.elpd)
    assert abs(loo_advi.elpd - loo_nuts.elpd) < loo_nuts.se


@pytest.fixture(scope="module")
def advi_refit(separated_2d):
    X, _, _ = separated_2d
    return GaussianMixtureBayes(
        2, method="advi", draws=300, progressbar=False, random_state=0
    ).fit(X)


def test_same_random_state_gives_identical_advi_draws(advi_fit, advi_refit):
    for name in PARAMS:
        np.testing.assert_array_equal(
            advi_refit.result_.posterior[name].values,
            advi_fit.result_.posterior[name].values,
        )
    np.testing.assert_array_equal(
        advi_refit.result_.datatree["fit_stats"]["loss"].values,
        advi_fit.result_.datatree["fit_stats"]["loss"].values,
    )


def test_advi_capped_with_order_means(separated_2d, monkeypatch):
    """Iteration cap -> ConvergenceWarning; ordered means in every draw.

    PyTensor's Python linker replaces the numba compile of the ADVI step
    (tens of seconds for this new graph) by no compile; 100 steps are cheap.
    """
    from pytensor.compile.mode import Mode

    real_fit = pm.fit

    def fit_python_linker(*args, **kwargs):
        kwargs["compile_kwargs"] = {"mode": Mode(linker="py", optimizer="fast_run")}
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(pm, "fit", fit_python_linker)
    X, _, _ = separated_2d
    with pytest.warns(ConvergenceWarning, match="did not converge within max_iter=100"):
        fit = GaussianMixtureBayes(
            2, method="advi", order_means=1, max_iter=100, draws=200, **FAST
        ).fit(X)
    stats = fit.result_.datatree["fit_stats"].to_dataset()
    assert stats.attrs["converged"] == 0 and stats.attrs["n_iter"] == 100
    post = fit.result_.posterior
    assert post.sizes["chain"] == 1 and post.sizes["draw"] == 200
    # the ordering constraint holds in every draw; no relabelling with it
    assert np.all(np.diff(post["means"].values[..., 1], axis=-1) > 0)
    assert "relabelling" not in fit.result_.datatree.children
    assert json.loads(fit.result_.attrs["order_means"]) == 1
    # a mean-field approximation: diagonal q_cov
    cov = stats["q_cov"].values
    np.testing.assert_array_equal(cov, np.diag(np.diag(cov)))


@pytest.mark.slow
def test_fullrank_advi(separated_2d):
    """Full-rank q: log_q is scipy's multivariate normal density; capped run."""
    X, _, _ = separated_2d
    with pytest.warns(ConvergenceWarning, match="did not converge within max_iter=300"):
        fit = GaussianMixtureBayes(
            2, method="fullrank_advi", max_iter=300, draws=200, **FAST
        ).fit(X)
    stats = fit.result_.datatree["fit_stats"].to_dataset()
    assert stats.attrs["learning_rate"] == 0.001
    cov = stats["q_cov"].values
    assert np.abs(cov - np.diag(np.diag(cov))).max() > 0
    post = unpermuted(fit.result_)
    for i in (0, 7, 199):
        draw = [post[n].values[0, i] for n in PARAMS]
        flat = flat_unconstrained(fit.model_, draw)
        np.testing.assert_allclose(
            multivariate_normal(stats["q_mean"].values, cov).logpdf(flat),
            stats["log_q"].values[0, i],
            rtol=1e-7,
        )


def test_loss_convergence_criterion():
    rng = np.random.default_rng(0)
    flat = 100 + rng.normal(0, 1, 3000)
    cb = LossConvergence(window=500, rel_tol=1e-3)
    with pytest.raises(StopIteration, match="converged at iteration 1000"):
        for i in range(1, 3001):
            cb(None, flat[:i], i)
    assert cb.converged
    falling = 1000 - np.arange(3000) * 0.5 + rng.normal(0, 1, 3000)
    cb = LossConvergence(window=500, rel_tol=1e-3)
    for i in range(1, 3001):
        cb(None, falling[:i], i)
    assert not cb.converged
    # non-finite losses never count as converged
    cb = LossConvergence(window=10)
    cb(None, np.full(30, np.nan), 20)
    assert not cb.converged


def test_loss_convergence_default_stops_near_the_optimum():
    # A loss still decaying like ADVI's (time constant 3000 iterations, noise
    # sd 5) above its optimum of 1000: the default rule must not stop while
    # more than 3 nats are left (the former 500/1e-3 rule left about 10).
    rng = np.random.default_rng(1)
    t = np.arange(20000)
    excess = 50 * np.exp(-t / 3000)
    loss = 1000 + excess + rng.normal(0, 5, t.size)
    cb = LossConvergence()
    stop = None
    for i in range(1, t.size + 1):
        try:
            cb(None, loss[:i], i)
        except StopIteration:
            stop = i
            break
    assert cb.converged and stop is not None
    assert excess[stop - 1] < 3.0


# ------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"method": "mcmc"},
            ValueError,
            r"'method'.*\['advi', 'fullrank_advi', 'nuts'\]",
        ),
        (
            {"sampler": "stan"},
            ValueError,
            r"'sampler'.*\['blackjax', 'numpyro', 'nutpie', 'pymc'\]",
        ),
        (
            {"covariance_type": "banded"},
            ValueError,
            r"'diag', 'full', 'spherical', 'tied'",
        ),
        ({"priors": {"lkj_eta": 2}}, TypeError, "'priors' must be a Priors instance"),
        ({"init": "kmeans"}, ValueError, r"'init'.*\['em', 'prior'\]"),
        ({"init": 3}, TypeError, "'init' must be 'em', 'prior', a dict"),
        ({"n_components": 0}, ValueError, "'n_components' must be >= 1"),
        ({"draws": 0}, ValueError, "'draws' must be >= 1"),
        ({"chains": 1.5}, TypeError, "'chains' must be an int"),
        ({"target_accept": 1.0}, ValueError, r"'target_accept' must be in \(0, 1\)"),
        ({"learning_rate": -0.1}, ValueError, "'learning_rate' must be > 0"),
        ({"order_means": -1}, ValueError, "'order_means' must be >= 0"),
        ({"order_means": 5}, ValueError, r"'order_means' must be a feature index"),
    ],
)
def test_bad_parameters_raise_before_sampling(monkeypatch, kwargs, error, match):
    monkeypatch.setattr(pm, "sample", lambda **kw: pytest.fail("sampled"))
    monkeypatch.setattr(pm, "fit", lambda **kw: pytest.fail("fitted"))
    X, _, _ = make_mixture(30, 2, 2, random_state=0)
    with pytest.raises(error, match=match):
        GaussianMixtureBayes(**{"n_components": 2, **kwargs}, progressbar=False).fit(X)


def test_bad_data_raise_like_em(monkeypatch):
    monkeypatch.setattr(pm, "sample", lambda **kw: pytest.fail("sampled"))
    X, _, _ = make_mixture(30, 2, 2, random_state=0)
    bad = X.copy()
    bad[3, 1] = np.nan
    est = GaussianMixtureBayes(2, progressbar=False)
    with pytest.raises(ValueError, match="NaN at row 3, column 1"):
        est.fit(bad)
    with pytest.raises(ValueError, match="Expected 2D array"):
        est.fit(X[:, 0])
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        GaussianMixtureBayes(5, progressbar=False).fit(X[:4])
    # a constant feature: a clear error instead of an improper posterior
    const = X.copy()
    const[:, 1] = 7.0
    with pytest.raises(ValueError, match=r"Feature\(s\) \['1'\] are constant"):
        est.fit(const)
    import pandas as pd

    df = pd.DataFrame(const, columns=["a", "b"])
    with pytest.raises(ValueError, match=r"Feature\(s\) \['b'\] are constant"):
        est.fit(df)


@pytest.mark.parametrize(
    ("init", "match"),
    [
        ([{}], "'init' is a list of 1 starts but chains=2"),
        (
            [{"weights": [0.5, 0.5], "means": np.zeros((2, 2))}] * 2,
            r"'init\[0\]' must have exactly the keys .* missing \['covariances'\]",
        ),
        (
            {
                "weights": [0.5, 0.5],
                "means": np.zeros((3, 2)),
                "covariances": np.ones((2, 2, 2)),
            },
            r"'init'\['means'\] must have shape \(2, 2\)",
        ),
        (
            [
                {
                    "weights": [0.5, np.nan],
                    "means": np.zeros((2, 2)),
                    "covariances": np.tile(np.eye(2), (2, 1, 1)),
                }
            ]
            * 2,
            r"'init\[0\]'\['weights'\] contains NaN",
        ),
    ],
)
def test_bad_init_is_reported(monkeypatch, init, match):
    monkeypatch.setattr(pm, "sample", lambda **kw: pytest.fail("sampled"))
    X, _, _ = make_mixture(30, 2, 2, random_state=0)
    with pytest.raises(ValueError, match=match):
        GaussianMixtureBayes(2, init=init, chains=2, progressbar=False).fit(X)


def test_prediction_before_fit_raises():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        GaussianMixtureBayes().predict(np.zeros((3, 2)))


def test_sample_prior_predictive_does_not_reset_a_fitted_estimator(nuts_fit):
    before = nuts_fit.n_features_in_
    pp = nuts_fit.sample_prior_predictive(
        np.random.default_rng(0).normal(size=(20, 3)), draws=5
    )
    assert pp["prior_predictive"]["x"].shape == (1, 5, 20, 3)
    assert nuts_fit.n_features_in_ == before == 2


# =============================================================== slow tests
def interval_coverage(fit, truth, prob=0.94):
    """Share of true scalars inside the equal-tailed posterior interval."""
    post = fit.result_.posterior
    perm = match_components(fit.means_, truth.means)
    hits = []
    ct = get_covariance_type(fit.covariance_type)
    true_cov = truth.covariances
    for name, true in (
        ("weights", truth.weights),
        ("means", truth.means),
        ("covariances", true_cov),
    ):
        draws = post[name].values.reshape(-1, *post[name].shape[2:])
        if "component" in post[name].dims:
            draws = draws[:, perm]
        lo, hi = np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
        inside = (lo <= true) & (true <= hi)
        if name == "covariances" and ct.name in ("full", "tied"):
            d = true.shape[-1]
            inside = inside[..., *np.tril_indices(d)]  # unique entries only
        hits.append(np.ravel(inside))
    return np.concatenate(hits)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_recovery_of_simulated_truth(covariance_type):
    """True parameters inside the 94% interval for >= 90% of scalars over seeds."""
    hits = []
    for seed in (1, 2, 3):
        X, _, truth = make_mixture(
            200,
            2,
            2,
            covariance_type=covariance_type,
            separation=5.0,
            random_state=seed,
        )
        fit = GaussianMixtureBayes(
            2,
            covariance_type=covariance_type,
            draws=500,
            tune=500,
            chains=2,
            progressbar=False,
            random_state=seed,
        ).fit(X)
        assert fit.result_.datatree["sample_stats"]["diverging"].values.sum() == 0
        hits.append(interval_coverage(fit, truth))
    share = np.concatenate(hits).mean()
    assert share >= 0.9, share


def test_large_n_nuts_agrees_with_em():
    X, _, _ = make_mixture(2000, 2, 2, separation=4.0, random_state=8)
    fit = GaussianMixtureBayes(2, draws=500, tune=500, chains=2, **FAST).fit(X)
    em = em_fit(X)
    perm = match_components(fit.means_, em.means_)
    sd = fit.result_.posterior_sd()
    for name, est_value in (
        ("weights", fit.weights_),
        ("means", fit.means_),
        ("covariances", fit.covariances_),
    ):
        z = np.abs(est_value[perm] - getattr(em, f"{name}_")) / sd[name].values[perm]
        assert np.all(z < 3), (name, z)


def test_old_faithful_converges():
    X = load_faithful().to_numpy(dtype=float)
    fit = GaussianMixtureBayes(2, draws=1000, tune=1000, chains=4, **FAST).fit(X)
    dt = fit.result_.datatree
    rhat = max_rhat(fit.result_.posterior)
    ess = arviz_stats.ess(
        xr.DataTree.from_dict({"posterior": fit.result_.posterior[list(PARAMS)]})
    ).to_dataset()
    min_ess = float(min(np.nanmin(ess[v].values) for v in PARAMS))
    assert rhat < 1.01, rhat
    assert min_ess > 400, min_ess
    assert int(dt["sample_stats"]["diverging"].values.sum()) == 0


@pytest.mark.slow
def test_pymc_sampler_runs_for_real(separated_2d):
    X, _, _ = separated_2d
    fit = GaussianMixtureBayes(
        2, sampler="pymc", draws=200, tune=200, chains=2, **FAST
    ).fit(X)
    nuts = GaussianMixtureBayes(2, draws=200, tune=200, chains=2, **FAST).fit(X)
    perm = match_components(fit.means_, nuts.means_)
    np.testing.assert_allclose(fit.means_[perm], nuts.means_, atol=0.1 * X.std())


@pytest.mark.slow
def test_collinear_features_do_not_hang():
    """A degenerate (exactly collinear) feature: ADVI with a cap finishes."""
    X, _, _ = make_mixture(80, 2, 2, random_state=0)
    X = np.column_stack([X, X[:, 0] * 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = GaussianMixtureBayes(
            2, method="advi", max_iter=300, draws=50, **FAST
        ).fit(X)
    assert fit.result_.posterior.sizes["draw"] == 50
