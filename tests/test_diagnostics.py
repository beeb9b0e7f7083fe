"""Tests of bayes_gmm.diagnostics.

Each check is made to fire on a fit constructed to fail it (too few draws,
permuted chains, a chain at another mode, injected divergences, a random-walk
energy, saturated trees, an outlier, empty components, an overfitted EM, an
unconverged fit) and to stay quiet on a good fit. Oracles: the construction
itself, ArviZ's own R-hat / E-BFMI / PSIS on the same arrays, and the EM
start log-likelihoods.
"""

import json

import numpy as np
import pytest
import xarray as xr
from sklearn.exceptions import NotFittedError

from bayes_gmm import GaussianMixtureEM, make_mixture
from bayes_gmm.diagnostics import Check, Diagnosis, diagnose
from bayes_gmm.result import MixtureResult
from bayes_gmm.uncertainty import bootstrap_em

BAYES_CHECKS = {
    "rhat",
    "rhat_invariant",
    "ess_bulk",
    "ess_tail",
    "ess_invariant",
    "divergences",
    "bfmi",
    "tree_depth",
    "pareto_k",
    "label_switching",
    "negligible_weight",
}


@pytest.fixture(scope="module")
def good_nuts(separated_2d, nuts_fit):
    """4 chains x 500 draws of the shared model (its compile is reused)."""
    from bayes_gmm import GaussianMixtureBayes

    X, _, _ = separated_2d
    return GaussianMixtureBayes(
        2, draws=500, tune=500, chains=4, progressbar=False, random_state=1
    ).fit(X)


@pytest.fixture(scope="module")
def good_diagnosis(good_nuts):
    return diagnose(good_nuts)


def observed(result):
    return result.datatree["observed_data"].to_dataset()["x"].values


def rebuild(result, posterior=None, *, X=None, relabelled=True, stats=None, attrs=None):
    """A copy of a result with a new posterior (log-likelihood recomputed)."""
    dt = result.datatree.copy()
    dt.attrs.update(attrs or {})
    if posterior is not None:
        dt["posterior"] = xr.DataTree(posterior)
    if X is not None:
        dt["observed_data"] = xr.DataTree(
            xr.Dataset(
                {"x": (("obs", "feature"), X)}, coords={"obs": np.arange(len(X))}
            )
        )
    post = dt["posterior"].to_dataset()
    c, d = post.sizes["chain"], post.sizes["draw"]
    X = observed(MixtureResult(dt))
    ll = MixtureResult(dt).log_likelihood_draws(X).reshape(c, d, -1)
    dt["log_likelihood"] = xr.DataTree(
        xr.Dataset(
            {"x": (("chain", "draw", "obs"), ll)},
            coords={"chain": post["chain"].values, "draw": post["draw"].values},
        )
    )
    if stats is not None:
        dt["sample_stats"] = xr.DataTree(stats)
    if not relabelled:
        dt.attrs.pop("relabelling", None)
        if "relabelling" in dt.children:
            del dt["relabelling"]
    return MixtureResult(dt)


def sample_stats(result):
    return result.datatree["sample_stats"].to_dataset()


# ----------------------------------------------------------------------------
# good fits
# ----------------------------------------------------------------------------
def test_good_nuts_fit_passes_every_check(good_diagnosis):
    d = good_diagnosis
    assert isinstance(d, Diagnosis)
    assert d.kind == "nuts"
    assert {c.name for c in d.checks} == BAYES_CHECKS
    assert d.status == "ok", str(d)
    assert all(c.remedy == "" for c in d.checks)
    assert d["rhat"].value <= 1.01
    assert d["ess_bulk"].value >= 400


def test_shared_nuts_fit_has_no_failure(nuts_fit):
    # 2 chains x 300 draws: nothing fails (R-hat may be a little above 1.01
    # with so few draws, which is a warning, not a failure).
    d = diagnose(nuts_fit)
    assert not [c.name for c in d.checks if c.status == "fail"], str(d)
    assert d["label_switching"].ok
    assert d["divergences"].ok


def test_good_em_fit_passes(separated_2d):
    X, _, _ = separated_2d
    em = GaussianMixtureEM(2, n_init=5, random_state=0).fit(X)
    d = diagnose(em, X)
    assert d.kind == "em"
    assert d.ok, str(d)
    assert {c.name for c in d.checks} == {
        "em_converged",
        "em_optima",
        "negligible_weight",
        "collapsed_covariance",
    }


def test_good_bootstrap_passes(separated_2d):
    X, _, _ = separated_2d
    em = GaussianMixtureEM(2, n_init=3, random_state=0).fit(X)
    d = diagnose(bootstrap_em(em, X, n_boot=20, random_state=0))
    assert d.kind == "bootstrap"
    assert d.ok, str(d)


# ----------------------------------------------------------------------------
# MCMC checks
# ----------------------------------------------------------------------------
def test_too_few_draws_fires_ess(good_nuts):
    r = good_nuts.result_
    dt = r.datatree.copy()
    for group in ("posterior", "log_likelihood", "sample_stats", "relabelling"):
        dt[group] = xr.DataTree(dt[group].to_dataset().isel(draw=slice(0, 12)))
    record = json.loads(dt.attrs["relabelling"])
    record["draw"] = record["draw"][:12]
    dt.attrs["relabelling"] = json.dumps(record)
    d = diagnose(MixtureResult(dt))
    assert d["ess_bulk"].status == "fail"
    assert d["ess_bulk"].value < 200  # 4 chains x 12 draws
    assert d["ess_tail"].status != "ok"
    assert d["ess_invariant"].status != "ok"
    assert "Draw more" in d["ess_bulk"].remedy
    assert d.status == "fail"


def swap_chain(post, chain):
    """Swap the two components of one chain."""
    out = post.copy(deep=True)
    for var in ("weights", "means", "covariances"):
        da = out[var]
        values = da.values.copy()
        axis = da.dims.index("component")
        idx = [slice(None)] * da.ndim
        idx[0] = chain
        values[tuple(idx)] = np.flip(values[tuple(idx)], axis=axis - 1)
        out[var] = da.copy(data=values)
    return out


def test_permuted_chain_is_told_apart_from_non_convergence(good_nuts):
    import arviz_stats

    post = swap_chain(good_nuts.result_.posterior, 1)
    raw_rhat = float(
        arviz_stats.rhat(post["means"], sample_dims=["chain", "draw"]).max()
    )
    assert raw_rhat > 1.5  # precondition: the stored draws are switched
    d = diagnose(rebuild(good_nuts.result_, post, relabelled=False))
    ls = d["label_switching"]
    assert ls.status == "warn"
    assert "Chain 1 is a relabelling" in ls.message
    assert "were not relabelled" in ls.message
    assert "relabel" in ls.remedy
    assert ls.value.split(", ")[1] == "permuted"
    # everything else is fine: the diagnosis relabelled a copy
    assert d["rhat"].ok and d["rhat_invariant"].ok


def test_chain_at_another_mode_fails(good_nuts):
    post = good_nuts.result_.posterior.copy(deep=True)
    means = post["means"].values.copy()
    means[2] += 1.0  # about 15 posterior sd: chain 2 sits elsewhere
    post["means"] = post["means"].copy(data=means)
    d = diagnose(rebuild(good_nuts.result_, post))
    assert d["label_switching"].status == "fail"
    assert "Chain 2 sits at a different mode" in d["label_switching"].message
    assert d["rhat"].status == "fail"
    assert d["rhat_invariant"].status == "fail"
    assert "Label-invariant quantities disagree too" in d["rhat"].message


def test_high_rhat_from_labels_only_is_explained(good_nuts):
    # A stored posterior that claims to be relabelled but has a switched
    # chain: R-hat is high, label-invariant R-hat fine.
    post = swap_chain(good_nuts.result_.posterior, 3)
    d = diagnose(rebuild(good_nuts.result_, post))
    assert d["rhat"].status == "fail"
    assert d["rhat_invariant"].ok
    assert "in the labelling of components" in d["rhat"].message


@pytest.mark.parametrize(("n_div", "status"), [(3, "warn"), (100, "fail")])
def test_divergences(good_nuts, n_div, status):
    stats = sample_stats(good_nuts.result_).copy(deep=True)
    div = np.zeros(stats["diverging"].shape, dtype=bool)
    div.ravel()[np.linspace(0, div.size - 1, n_div).astype(int)] = True
    stats["diverging"] = stats["diverging"].copy(data=div)
    d = diagnose(rebuild(good_nuts.result_, stats=stats))
    assert d["divergences"].value == n_div
    assert d["divergences"].status == status
    assert "target_accept" in d["divergences"].remedy


def test_low_bfmi(good_nuts):
    import arviz_stats

    stats = sample_stats(good_nuts.result_).copy(deep=True)
    rng = np.random.default_rng(0)
    shape = stats["energy"].shape
    walk = np.cumsum(rng.normal(0, 0.1, shape), axis=1) + 500
    stats["energy"] = stats["energy"].copy(data=walk)
    # the hand formula of E-BFMI: mean squared step over the variance
    by_hand = np.mean(np.diff(walk, axis=1) ** 2, axis=1) / np.var(walk, axis=1, ddof=1)
    ref = np.asarray(arviz_stats.bfmi(walk))
    np.testing.assert_allclose(ref, by_hand, rtol=1e-6)
    d = diagnose(rebuild(good_nuts.result_, stats=stats))
    assert d["bfmi"].status == "fail"
    assert d["bfmi"].value == pytest.approx(by_hand.min())


@pytest.mark.parametrize("name", ["maxdepth_reached", "reached_max_treedepth"])
def test_tree_depth_saturation(good_nuts, name):
    stats = sample_stats(good_nuts.result_).copy(deep=True)
    hit = np.zeros(stats["maxdepth_reached"].shape, dtype=bool)
    hit[0, :20] = True
    stats = stats.drop_vars("maxdepth_reached")
    stats[name] = (("chain", "draw"), hit)
    d = diagnose(rebuild(good_nuts.result_, stats=stats))
    assert d["tree_depth"].status == "warn"
    assert d["tree_depth"].value == pytest.approx(20 / hit.size)


def test_outlier_fires_pareto_k(good_nuts):
    import arviz_stats

    X = observed(good_nuts.result_)
    X_out = np.vstack([X, [[2.0, 7.0]]])  # between the clusters
    r = rebuild(good_nuts.result_, X=X_out)
    loo = arviz_stats.loo(r.datatree, pointwise=True, var_name="x")
    assert float(loo.pareto_k.values[-1]) > loo.good_k  # precondition
    d = diagnose(r)
    assert d["pareto_k"].status in ("warn", "fail")
    assert d["pareto_k"].value == pytest.approx(float(loo.pareto_k.max()))
    assert str(len(X)) in d["pareto_k"].message  # names the outlier


def test_empty_components_fire_negligible_weight(good_nuts):
    # An overfitted K=4 posterior: two extra components with ~0.25% weight.
    post = good_nuts.result_.posterior
    c, s = post.sizes["chain"], post.sizes["draw"]
    rng = np.random.default_rng(0)
    extra_w = rng.uniform(0.001, 0.004, (c, s, 2))
    w = np.concatenate(
        [post["weights"].values * (1 - extra_w.sum(-1))[..., None], extra_w], -1
    )
    mu = np.concatenate(
        [
            post["means"].values,
            rng.normal([[20.0, 20.0], [-20.0, 20.0]], 1.0, (c, s, 2, 2)),
        ],
        axis=2,
    )
    cov = np.concatenate(
        [post["covariances"].values, np.broadcast_to(np.eye(2), (c, s, 2, 2, 2))], 2
    )
    new = xr.Dataset(
        {
            "weights": (("chain", "draw", "component"), w),
            "means": (("chain", "draw", "component", "feature"), mu),
            "covariances": (
                ("chain", "draw", "component", "feature", "feature_bis"),
                cov,
            ),
        },
        coords={
            "chain": post["chain"],
            "draw": post["draw"],
            "feature": post["feature"],
        },
    )
    r = rebuild(good_nuts.result_, new, relabelled=False, attrs={"n_components": 4})
    d = diagnose(r)
    check = d["negligible_weight"]
    assert check.status == "warn"
    assert check.value < 0.005
    assert "about 2" in check.remedy


# ----------------------------------------------------------------------------
# variational checks
# ----------------------------------------------------------------------------
def test_advi_checks(advi_fit):
    d = diagnose(advi_fit)
    assert d.kind == "advi"
    assert str(d).startswith("Diagnosis of an ADVI fit (full, K=2, ")
    names = {c.name for c in d.checks}
    assert {"vi_converged", "vi_khat", "pareto_k", "label_switching"} <= names
    assert not names & {"rhat", "divergences", "bfmi"}  # not for one chain of VI
    assert d["vi_converged"].ok
    # the PSIS k of the ratios p / q; ArviZ's psislw smooths exp(-x)
    fs = advi_fit.result_.datatree["fit_stats"].to_dataset()
    _, k = (fs["log_q"] - fs["log_p"]).azstats.psislw(r_eff=1.0, dim=["chain", "draw"])
    assert d["vi_khat"].value == pytest.approx(float(k))
    assert (d["vi_khat"].status == "ok") == (float(k) <= 0.7)


def test_advi_not_converged(advi_fit):
    dt = advi_fit.result_.datatree.copy()
    dt["fit_stats"].attrs["converged"] = 0
    d = diagnose(MixtureResult(dt))
    assert d["vi_converged"].status == "warn"
    assert "max_iter" in d["vi_converged"].remedy


# ----------------------------------------------------------------------------
# EM checks
# ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small2():
    X, _, _ = make_mixture(60, 2, 2, separation=6.0, random_state=4)
    return X


def test_em_not_converged(small2):
    with pytest.warns(UserWarning):
        em = GaussianMixtureEM(2, max_iter=1, random_state=0).fit(small2)
    d = diagnose(em, small2)
    assert d["em_converged"].status == "warn"
    assert "max_iter" in d["em_converged"].remedy


def test_overfitted_em_fires_optima_weight_and_collapse(small2):
    em = GaussianMixtureEM(6, n_init=5, random_state=0).fit(small2)
    # Construct the failing case: the best optimum reached by one start only,
    # the others far below (the default starts may find it more than once).
    best = em.init_lower_bounds_.max()
    em.init_lower_bounds_ = best - np.array([0.0, 0.2, 0.25, 0.3, 0.35])
    finals = em.init_lower_bounds_
    d = diagnose(em, small2)
    assert d["em_optima"].status == "warn"
    assert d["em_optima"].value == pytest.approx(finals.max() - finals.min())
    assert "n_init" in d["em_optima"].remedy
    # 1 of 60 points in a component: below (D + 1) / n = 0.05
    assert d["negligible_weight"].status == "warn"
    assert d["negligible_weight"].threshold == ">= 0.05"
    # a one-point component's covariance is reg_covar only
    assert d["collapsed_covariance"].status == "fail"


def test_em_optima_found_repeatedly_is_ok(separated_2d):
    X, _, _ = separated_2d
    em = GaussianMixtureEM(2, n_init=3, random_state=0).fit(X)
    # Constructed: one start far below, two at the best.
    best = em.init_lower_bounds_.max()
    em.init_lower_bounds_ = best - np.array([0.0, 1.45, 0.0])
    check = diagnose(em, X)["em_optima"]
    assert check.ok
    assert check.value == pytest.approx(1.45)
    assert "1 of 3 starts ended at lower optima" in check.message
    assert "2 starts reached the best" in check.message


def test_em_weight_threshold_without_data(separated_2d):
    X, _, _ = separated_2d
    em = GaussianMixtureEM(2, random_state=0).fit(X)
    em.weights_ = np.array([0.995, 0.005])
    d = diagnose(em)
    assert d["negligible_weight"].threshold == ">= 0.01"
    assert d["negligible_weight"].status == "warn"


# ----------------------------------------------------------------------------
# rendering and errors
# ----------------------------------------------------------------------------
def test_rendering(good_nuts):
    post = swap_chain(good_nuts.result_.posterior, 1)
    d = diagnose(rebuild(good_nuts.result_, post, relabelled=False))
    text = str(d)
    assert text.startswith("Diagnosis of a NUTS fit (full, K=2, 4 chains x 500 draws)")
    assert "1 warning of 11 checks" in text
    for c in d.checks:
        assert c.label in text
    assert "Remedy:" in text
    page = d._repr_html_()
    assert page.count("<tr>") == len(d.checks) + 1
    assert "&lt;= 1.01" in page  # escaped
    frame = d.to_frame()
    assert list(frame["check"]) == [c.name for c in d.checks]
    assert "rhat" in d and "nonsense" not in d
    with pytest.raises(KeyError, match="No check named"):
        d["nonsense"]
    assert d.problems == [d["label_switching"]]
    assert "status='warn'" in repr(d)


def test_check_rejects_unknown_status():
    with pytest.raises(ValueError, match="Invalid status"):
        Check("x", "x", 1, "1", "bad", "m")


def test_bad_input(separated_2d):
    from bayes_gmm import GaussianMixtureBayes

    with pytest.raises(TypeError, match="diagnose expects"):
        diagnose("fit")
    with pytest.raises(NotFittedError):
        diagnose(GaussianMixtureEM(2))
    with pytest.raises(NotFittedError):
        diagnose(GaussianMixtureBayes(2))
    X, _, _ = separated_2d
    em = GaussianMixtureEM(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="features"):
        diagnose(em, X[:, :1])


def test_record_round_trip_is_used(good_nuts):
    # The stored relabelling record is what the label-switching check uses.
    rec = json.loads(good_nuts.result_.attrs["relabelling"])
    d = diagnose(good_nuts)
    assert rec["method"] == "pivot"
    assert d["label_switching"].value == "ok, ok, ok, ok"


@pytest.mark.parametrize(
    ("method", "says", "not_says"),
    [
        ("advi", "mean-field", "full-rank Gaussian"),
        ("fullrank_advi", "full-rank", "mean-field"),
    ],
)
def test_vi_khat_message_names_the_family(advi_fit, method, says, not_says):
    # Heavy-tailed importance ratios (Pareto k about 1): the warning must
    # explain it for the family that was fitted.
    dt = advi_fit.result_.datatree.copy()
    fs = dt["fit_stats"].to_dataset()
    rng = np.random.default_rng(0)
    lw = np.log(rng.pareto(1.0, fs["log_p"].shape) + 1.0)
    dt["fit_stats"] = fs.assign(log_q=fs["log_p"] - lw)
    dt.attrs["method"] = method
    check = diagnose(MixtureResult(dt))["vi_khat"]
    assert check.status == "warn" and check.value == pytest.approx(1.0, abs=0.25)
    assert says in check.message and not_says not in check.message
    assert "NUTS" in check.remedy


def test_vi_khat_is_the_tail_of_p_over_q(advi_fit):
    # Simulated truth: ratios p / q with a Pareto(1) right tail have k = 1;
    # the same values with the sign flipped (a light right tail, a heavy
    # left one: q wide where p is not) have k < 0.5.
    dt = advi_fit.result_.datatree.copy()
    fs = dt["fit_stats"].to_dataset()
    rng = np.random.default_rng(2)
    lw = np.log(rng.pareto(1.0, fs["log_p"].shape) + 1.0)
    heavy = dt.copy()
    heavy["fit_stats"] = fs.assign(log_q=fs["log_p"] - lw)
    light = dt.copy()
    light["fit_stats"] = fs.assign(log_q=fs["log_p"] + lw)
    assert diagnose(MixtureResult(heavy))["vi_khat"].value == pytest.approx(1, abs=0.25)
    assert diagnose(MixtureResult(light))["vi_khat"].value < 0.5


def _one_chain(result):
    """The same fit cut to its first chain (every group with a chain dim)."""
    from bayes_gmm import MixtureResult

    tree = {}
    for node in result.datatree.subtree:
        ds = node.to_dataset()
        if "chain" in ds.dims:
            ds = ds.isel(chain=[0])
        tree[node.path] = ds
    dt = type(result.datatree).from_dict(tree)
    dt.attrs.update(result.datatree.attrs)
    if "relabelling" in dt.attrs:  # its per-chain record, cut the same way
        record = json.loads(dt.attrs["relabelling"])
        record["share_permuted"] = record["share_permuted"][:1]
        if record.get("chain") is not None:
            record["chain"] = record["chain"][:1]
        dt.attrs["relabelling"] = json.dumps(record)
    return MixtureResult(dt)


def test_one_chain_warns_that_convergence_cannot_be_judged(nuts_fit):
    import arviz_stats as azs

    from bayes_gmm import diagnose

    one = _one_chain(nuts_fit.result_)
    assert one.posterior.sizes["chain"] == 1
    diag = diagnose(one)
    assert diag["rhat"].status == "warn" and diag.status != "ok"
    assert "single chain" in diag["rhat"].message
    assert "rhat_invariant" not in diag
    # ESS is still reported, and it is ArviZ's one-chain ESS (the oracle)
    post = one.posterior[["weights", "means", "covariances"]]
    want = azs.ess(post, sample_dims=["chain", "draw"], method="bulk")
    lowest = min(float(want[v].min()) for v in want.data_vars)
    assert diag["ess_bulk"].value == pytest.approx(lowest, rel=1e-9)
