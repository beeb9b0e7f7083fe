"""Tests of bayes_gmm.comparison (compare_fits, mixture_divergence).

Oracles: closed-form KL divergence and Hellinger distance between Gaussians,
known permutations, posteriors constructed with known shifts, ArviZ's
equal-tailed intervals, and the Bernstein-von Mises agreement of EM's
bootstrap with the NUTS posterior on well-separated data.
"""

import copy

import numpy as np
import pytest
import xarray as xr

from bayes_gmm import GaussianMixtureEM, make_mixture
from bayes_gmm._covariance import get_covariance_type
from bayes_gmm.comparison import compare_fits, mixture_divergence
from bayes_gmm.result import MixtureResult
from bayes_gmm.uncertainty import bootstrap_em

TYPES = ("full", "tied", "diag", "spherical")


def gaussian(mean, cov):
    mean = np.atleast_1d(np.asarray(mean, float))
    return {
        "weights": [1.0],
        "means": mean[None],
        "covariances": np.asarray(cov, float)[None],
        "covariance_type": "full",
    }


def kl_gauss(m0, s0, m1, s1):
    """KL(N(m0, s0) || N(m1, s1)), closed form."""
    d = m0.size
    inv1 = np.linalg.inv(s1)
    dm = m1 - m0
    return 0.5 * (
        np.trace(inv1 @ s0)
        + dm @ inv1 @ dm
        - d
        + np.log(np.linalg.det(s1) / np.linalg.det(s0))
    )


def hellinger_gauss(m0, s0, m1, s1):
    """Hellinger distance between two Gaussians, closed form."""
    s = (s0 + s1) / 2
    dm = m1 - m0
    bc = (
        np.linalg.det(s0) ** 0.25
        * np.linalg.det(s1) ** 0.25
        / np.sqrt(np.linalg.det(s))
        * np.exp(-dm @ np.linalg.solve(s, dm) / 8)
    )
    return np.sqrt(1 - bc)


CASES = [
    (np.array([0.0]), np.array([[1.0]]), np.array([1.0]), np.array([[2.0]])),
    (
        np.array([0.0, 1.0]),
        np.array([[1.0, 0.3], [0.3, 0.5]]),
        np.array([0.5, 0.0]),
        np.array([[2.0, -0.4], [-0.4, 1.0]]),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=["1d", "2d"])
def test_kl_and_hellinger_match_closed_form_for_single_gaussians(case):
    m0, s0, m1, s1 = case
    out = mixture_divergence(
        gaussian(m0, s0), gaussian(m1, s1), n_samples=200_000, random_state=0
    )
    assert abs(out["kl"] - kl_gauss(m0, s0, m1, s1)) < 4 * out["kl_se"]
    assert abs(out["hellinger"] - hellinger_gauss(m0, s0, m1, s1)) < 4 * max(
        out["hellinger_se"], 1e-3
    )
    assert out["kl_se"] < 0.01


def test_identical_and_relabelled_mixtures_have_zero_divergence():
    p = {
        "weights": [0.3, 0.7],
        "means": [[0.0, 0.0], [3.0, 1.0]],
        "covariances": [[1.0, 0.5], [2.0, 0.3]],
        "covariance_type": "diag",
    }
    q = {
        "weights": [0.7, 0.3],
        "means": [[3.0, 1.0], [0.0, 0.0]],
        "covariances": [[2.0, 0.3], [1.0, 0.5]],
        "covariance_type": "diag",
    }
    for other in (p, q):
        out = mixture_divergence(p, other, n_samples=5000, random_state=1)
        assert abs(out["kl"]) < 1e-12
        assert out["hellinger"] < 1e-6


def test_divergence_bad_input():
    p = gaussian([0.0], [[1.0]])
    with pytest.raises(ValueError, match="lacks"):
        mixture_divergence(p, {"weights": [1.0]})
    with pytest.raises(ValueError, match="features"):
        mixture_divergence(p, gaussian([0.0, 0.0], np.eye(2)))
    with pytest.raises(ValueError, match="n_samples"):
        mixture_divergence(p, p, n_samples=1)


# ----------------------------------------------------------------------------
# alignment and layout
# ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data3():
    X, _, _ = make_mixture(300, 3, 2, separation=6.0, random_state=1)
    return X


def permuted_em(em, perm):
    """A copy of a fitted EM estimator with its components reordered."""
    out = copy.deepcopy(em)
    out.weights_ = em.weights_[perm]
    out.means_ = em.means_[perm]
    if em.covariance_type != "tied":
        out.covariances_ = em.covariances_[perm]
        out.precisions_cholesky_ = em.precisions_cholesky_[perm]
        out.precisions_ = em.precisions_[perm]
    return out


def n_scalars(ctype, k, d):
    cov = {"full": k * d * (d + 1) // 2, "tied": d * (d + 1) // 2, "diag": k * d}
    return k + k * d + cov.get(ctype, k)


@pytest.mark.parametrize("ctype", TYPES)
def test_alignment_undoes_a_permutation(ctype, data3):
    em = GaussianMixtureEM(3, covariance_type=ctype, n_init=2, random_state=0).fit(
        data3
    )
    perm = np.array([2, 0, 1])
    other = permuted_em(em, perm)
    table = compare_fits(em, other, names=["a", "b"], n_samples=2000, random_state=0)
    # relabelled component j of b is b's component argsort(perm)[j]
    assert table.attrs["alignment"]["b"] == np.argsort(perm).tolist()
    np.testing.assert_array_equal(table["a"].to_numpy(), table["b"].to_numpy())
    assert len(table) == n_scalars(ctype, 3, 2)
    assert table["a_se"].isna().all()  # a bare EM fit has no standard errors
    assert abs(table.attrs["density"]["kl"].iloc[0]) < 1e-12
    assert not table["flagged"].any()


@pytest.mark.parametrize("ctype", TYPES)
def test_one_row_per_distinct_scalar(ctype, data3):
    em = GaussianMixtureEM(2, covariance_type=ctype, random_state=0).fit(data3)
    table = compare_fits(em, n_samples=100)
    labels = table["parameter"].tolist()
    assert len(labels) == len(set(labels)) == n_scalars(ctype, 2, 2)
    assert labels[0] == "weights[0]"
    assert "means[1, x1]" in labels
    if ctype in ("full", "tied"):
        assert any(lab.startswith("covariances") and "x1, x0" in lab for lab in labels)
        assert not any("x0, x1]" in lab for lab in labels)  # upper triangle left out
    # EM estimates, in the table, are the fitted values
    w = table.loc[table["variable"] == "weights", "em"].to_numpy()
    np.testing.assert_array_equal(w, em.weights_)


def test_bayesian_posterior_is_realigned_whole(nuts_fit):
    # Swap the components of the whole posterior: compare_fits aligns them
    # back to the first fit.
    dt = nuts_fit.result_.datatree.copy()
    post = dt["posterior"].to_dataset()
    swapped = post.isel(component=[1, 0]).assign_coords(component=[0, 1])
    dt["posterior"] = xr.DataTree(swapped)
    table = compare_fits(nuts_fit, MixtureResult(dt), names=["nuts", "swapped"])
    assert table.attrs["alignment"]["swapped"] == [1, 0]
    np.testing.assert_allclose(table["nuts_mean"], table["swapped_mean"], rtol=1e-12)
    np.testing.assert_allclose(table["nuts_sd"], table["swapped_sd"], rtol=1e-12)
    assert not table["flagged"].any()


def test_accepts_estimator_result_and_datatree(nuts_fit):
    a = compare_fits(nuts_fit, n_samples=100)
    b = compare_fits(nuts_fit.result_, n_samples=100)
    c = compare_fits(nuts_fit.result_.datatree, n_samples=100)
    np.testing.assert_array_equal(a["nuts_mean"], b["nuts_mean"])
    np.testing.assert_array_equal(a["nuts_sd"], c["nuts_sd"])


def test_intervals_are_arviz_equal_tailed(nuts_fit):
    import arviz_stats

    table = compare_fits(nuts_fit, ci_prob=0.9)
    post = nuts_fit.result_.posterior
    eti = arviz_stats.eti(post["means"], prob=0.9, dim=["chain", "draw"])
    rows = table[table["variable"] == "means"]
    for _, row in rows.iterrows():
        ref = eti.sel(component=row["component"], feature=row["feature"]).values
        np.testing.assert_allclose(
            [row["nuts_lower"], row["nuts_upper"]], np.sort(ref), rtol=1e-10
        )
    draws = post["weights"].values[..., 0].ravel()
    assert table.loc[0, "nuts_mean"] == pytest.approx(draws.mean())
    assert table.loc[0, "nuts_sd"] == pytest.approx(draws.std(ddof=1))


# ----------------------------------------------------------------------------
# flags on constructed posteriors
# ----------------------------------------------------------------------------
def constructed(means, sd, n_draws, rng, method, shift=None):
    """A MixtureResult of Gaussian draws around given parameters (diag, K=2)."""
    w = np.array([0.4, 0.6])
    cov = np.array([[1.0, 1.0], [1.0, 1.0]])
    shift = shift or {}
    draws = {}
    for name, centre in (("weights", w), ("means", means), ("covariances", cov)):
        centre = centre + shift.get(name, 0.0)
        draws[name] = centre + sd * rng.standard_normal((1, n_draws, *centre.shape))
    post = xr.Dataset(
        {
            "weights": (("chain", "draw", "component"), draws["weights"]),
            "means": (("chain", "draw", "component", "feature"), draws["means"]),
            "covariances": (
                ("chain", "draw", "component", "feature"),
                draws["covariances"],
            ),
        },
        coords={"component": [0, 1], "feature": ["x0", "x1"]},
    )
    dt = xr.DataTree.from_dict({"posterior": post})
    dt.attrs.update(covariance_type="diag", n_components=2, method=method)
    return MixtureResult(dt)


def test_flags_fire_exactly_where_constructed():
    rng = np.random.default_rng(0)
    sd = 0.05
    means = np.array([[0.0, 0.0], [5.0, 5.0]])
    nuts = constructed(means, sd, 4000, rng, "nuts")
    shift = np.zeros((2, 2))
    shift[1, 0] = 2.5 * sd  # ADVI's mean of component 1, feature x0 is off
    advi = constructed(means, 0.5 * sd, 4000, rng, "advi", {"means": shift})
    em = GaussianMixtureEM(2, covariance_type="diag")
    em.weights_ = np.array([0.4, 0.6])
    em.means_ = means.copy()
    em.means_[0, 1] += 4 * sd  # EM's estimate outside both 94% intervals
    em.covariances_ = np.ones((2, 2))
    ct = get_covariance_type("diag")
    em.precisions_cholesky_ = ct.precision_cholesky(em.covariances_)
    em.precisions_ = ct.precisions(em.precisions_cholesky_)
    table = compare_fits(em, nuts, advi, n_samples=1000, random_state=0).set_index(
        "parameter"
    )
    assert table["nuts_advi_disagree"].sum() == 1
    assert table.loc["means[1, x0]", "nuts_advi_disagree"]
    assert table.loc["means[0, x1]", "em_outside_nuts"]
    assert table.loc["means[0, x1]", "em_outside_advi"]
    assert table["em_outside_nuts"].sum() == 1
    assert set(table.index[table["flagged"]]) == {"means[1, x0]", "means[0, x1]"}
    # ADVI's sds were built at half of NUTS's
    np.testing.assert_allclose(table["advi_sd_ratio"], 0.5, rtol=0.1)
    assert table.attrs["sd_ratio"]["advi"]["share_below_1"] == 1.0


def test_em_bootstrap_agrees_with_nuts_posterior(nuts_fit, separated_2d):
    # Bernstein-von Mises: with 200 points in two well-separated clusters,
    # EM's bootstrap standard errors are close to the posterior sds and the
    # EM estimate lies inside the posterior intervals.
    X, _, _ = separated_2d
    boot = bootstrap_em(nuts_fit.em_, X, n_boot=200, random_state=0)
    table = compare_fits(boot, nuts_fit, random_state=0)
    assert not table["flagged"].any()
    np.testing.assert_allclose(table["em_se"], table["nuts_sd"], rtol=0.4)
    np.testing.assert_allclose(
        table["em"], table["nuts_mean"], atol=2 * table["nuts_sd"].max()
    )
    density = table.attrs["density"]
    assert density["fit"].tolist() == ["nuts"]
    assert density["kl"].iloc[0] < 0.01


def test_shared_fits_three_way(nuts_fit, advi_fit, separated_2d):
    X, _, _ = separated_2d
    boot = bootstrap_em(nuts_fit.em_, X, n_boot=100, random_state=0)
    table = compare_fits(boot, nuts_fit, advi_fit, random_state=0)
    assert {"em", "em_se", "nuts_mean", "advi_mean", "advi_sd_ratio"} <= set(table)
    assert {"em_outside_nuts", "em_outside_advi", "nuts_advi_disagree"} <= set(table)
    assert table.attrs["density"]["fit"].tolist() == ["nuts", "advi"]
    # ADVI's means within a posterior sd of NUTS's on well-separated data
    assert not table["nuts_advi_disagree"].any()


def test_large_n_em_and_nuts_agree():
    # At N = 1000 EM and NUTS agree and nothing is flagged (the compiled
    # K=2, D=2 full model of the shared fixture is reused).
    from bayes_gmm import GaussianMixtureBayes

    X, _, _ = make_mixture(1000, 2, 2, separation=6.0, random_state=11)
    nuts = GaussianMixtureBayes(
        2, draws=300, tune=300, chains=2, progressbar=False, random_state=1
    ).fit(X)
    boot = bootstrap_em(nuts.em_, X, n_boot=100, random_state=0)
    table = compare_fits(boot, nuts, random_state=0)
    assert not table["flagged"].any()
    assert table.attrs["density"]["kl"].iloc[0] < 0.005


# ----------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------
def test_bad_input(data3):
    em2 = GaussianMixtureEM(2, random_state=0).fit(data3)
    em3 = GaussianMixtureEM(3, random_state=0).fit(data3)
    em2d = GaussianMixtureEM(2, covariance_type="diag", random_state=0).fit(data3)
    with pytest.raises(ValueError, match="at least one fit"):
        compare_fits()
    with pytest.raises(ValueError, match="same number of components"):
        compare_fits(em2, em3)
    with pytest.raises(ValueError, match="covariance type"):
        compare_fits(em2, em2d)
    with pytest.raises(ValueError, match="'names' has 1 entries"):
        compare_fits(em2, em2, names=["a"])
    with pytest.raises(ValueError, match="distinct"):
        compare_fits(em2, em2, names=["a", "a"])
    with pytest.raises(ValueError, match="ci_prob"):
        compare_fits(em2, ci_prob=1.5)
    with pytest.raises(TypeError, match="GaussianMixtureEM"):
        compare_fits(em2, "nuts")
    # duplicated default names are made unique
    table = compare_fits(em2, em2, n_samples=100)
    assert {"em", "em_2"} <= set(table.columns)


# ----------------------------------------------------------------------------
# slow: fresh ADVI fits (each compiles a model, ~1 minute here)
# ----------------------------------------------------------------------------
@pytest.mark.slow
def test_small_n_advi_sds_are_smaller_than_nuts():
    from bayes_gmm import GaussianMixtureBayes

    X, _, _ = make_mixture(40, 2, 2, separation=4.0, random_state=5)
    nuts = GaussianMixtureBayes(
        2, draws=1000, tune=1000, chains=2, progressbar=False, random_state=0
    ).fit(X)
    advi = GaussianMixtureBayes(
        2, method="advi", draws=1000, progressbar=False, random_state=0
    ).fit(X)
    table = compare_fits(nuts, advi, random_state=0)
    ratio = table.attrs["sd_ratio"]["advi"]
    assert ratio["median"] < 1.0
    assert ratio["share_below_1"] >= 0.6
    assert (table["advi_sd_ratio"] < 1).sum() >= 0.6 * len(table)


@pytest.mark.slow
def test_large_n_em_nuts_advi_agree():
    from bayes_gmm import GaussianMixtureBayes

    X, _, _ = make_mixture(2000, 2, 2, separation=6.0, random_state=12)
    nuts = GaussianMixtureBayes(
        2, draws=500, tune=500, chains=2, progressbar=False, random_state=0
    ).fit(X)
    # With the default learning rate (0.01) ADVI stops while its sds are
    # still about twice NUTS's and one mean sits 2 NUTS sds off (flagged,
    # rightly); a smaller step converges further.
    advi = GaussianMixtureBayes(
        2,
        method="advi",
        draws=500,
        learning_rate=0.003,
        progressbar=False,
        random_state=0,
    ).fit(X)
    boot = bootstrap_em(nuts.em_, X, n_boot=200, random_state=0)
    table = compare_fits(boot, nuts, advi, random_state=0)
    assert not table["flagged"].any(), table[table["flagged"]]
    assert (table.attrs["density"]["kl"] < 0.005).all()
