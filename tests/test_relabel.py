"""Tests of bayes_gmm.relabel against simulated truth.

Synthetic "posterior draws" are built around known parameters with small
noise (the clean draws carry the true labels), then components are permuted
with known permutations. The oracle is the construction: relabelling must
return the clean draws, and the permutations it finds must undo the ones
applied. R-hat comes from arviz_stats; Gaussian KL divergences are checked
against the textbook formula with explicit inverses.
"""

import itertools
import json
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr

from bayes_gmm._covariance import COVARIANCE_TYPES, get_covariance_type
from bayes_gmm._validation import ConvergenceWarning
from bayes_gmm.relabel import (
    LabelSwitchingCheck,
    MixturePivot,
    RelabelRecord,
    _best_permutations,
    _cost,
    _draw_factors,
    _extract,
    _factors_of_pivot,
    _matched_factors,
    _pivot_factors,
    apply_permutations,
    inverse_permutations,
    label_switching_check,
    order_by,
    relabel,
)

K, D = 3, 2
N_CHAIN, N_DRAW = 4, 200
TRUE_WEIGHTS = np.array([0.5, 0.3, 0.2])
# Feature 0 orders the components as (0, 2, 1), feature 1 as (0, 1, 2).
TRUE_MEANS = np.array([[0.0, 0.0], [6.0, 1.0], [3.0, 6.0]])
TRUE_CHOL = np.array(
    [
        [[1.0, 0.0], [0.5, 1.0]],
        [[0.7, 0.0], [-0.3, 1.2]],
        [[1.5, 0.0], [0.2, 0.6]],
    ]
)
# Chain-level permutations (chain 3 gets random per-draw ones instead).
CHAIN_PERMS = [(0, 1, 2), (1, 2, 0), (2, 1, 0)]


# --------------------------------------------------------------------------
# construction of the synthetic posteriors (independent of the module)
# --------------------------------------------------------------------------
def truth_pivot(ct_name, means=TRUE_MEANS, weights=TRUE_WEIGHTS, chol=TRUE_CHOL):
    ct = get_covariance_type(ct_name)
    return MixturePivot(weights, means, ct.from_cholesky(chol))


def clean_draws(
    ct_name,
    *,
    weights=TRUE_WEIGHTS,
    means=TRUE_MEANS,
    chol=TRUE_CHOL,
    n_chain=N_CHAIN,
    n_draw=N_DRAW,
    noise=0.05,
    mean_noise=None,
    seed=0,
):
    """Draws around the truth, labels = true labels; dict of numpy arrays."""
    ct = get_covariance_type(ct_name)
    rng = np.random.default_rng(seed)
    k, d = means.shape
    shape = (n_chain, n_draw)
    w = weights * np.exp(noise * rng.normal(size=(*shape, k)))
    w /= w.sum(axis=-1, keepdims=True)
    mean_noise = noise if mean_noise is None else np.asarray(mean_noise)
    mu = means + mean_noise * rng.normal(size=(*shape, k, d))
    factor = chol * np.exp(noise * rng.normal(size=(*shape, k, 1, 1)))
    cov = ct.from_cholesky(factor)
    has_component = "component" in ct.dims
    if has_component:
        chol_cov = ct.to_cholesky(cov, k, d)
    else:
        chol_cov = np.linalg.cholesky(cov)
    return {
        "weights": w,
        "means": mu,
        "covariances": cov,
        "chol_cov": chol_cov,
        # a helper with the component dim not in third position
        "means_t": np.swapaxes(mu, -1, -2).copy(),
        # a variable without a component dim: must be left alone
        "sigma_scale": rng.normal(size=shape),
    }


def to_dataset(arrays, ct_name, feature_names=None):
    ct = get_covariance_type(ct_name)
    s = ("chain", "draw")
    has_component = "component" in ct.dims
    chol_dims = ("component", "feature", "feature_bis")
    if not has_component:
        chol_dims = chol_dims[1:]
    data_vars = {
        "weights": (s + ("component",), arrays["weights"]),
        "means": (s + ("component", "feature"), arrays["means"]),
        "covariances": (s + ct.dims, arrays["covariances"]),
        "chol_cov": (s + chol_dims, arrays["chol_cov"]),
        "means_t": (s + ("feature", "component"), arrays["means_t"]),
        "sigma_scale": (s, arrays["sigma_scale"]),
    }
    n_chain, n_draw = arrays["weights"].shape[:2]
    coords = {"chain": np.arange(n_chain), "draw": np.arange(n_draw)}
    if feature_names is not None:
        coords["feature"] = feature_names
    return xr.Dataset(data_vars, coords=coords, attrs={"note": "synthetic"})


def component_axis(name, ct_name):
    """Axis of the component dim in one draw's array (None if absent)."""
    ct = get_covariance_type(ct_name)
    if name in ("weights", "means"):
        return 0
    if name == "means_t":
        return 1
    if name in ("covariances", "chol_cov"):
        return 0 if "component" in ct.dims else None
    return None


def scramble(arrays, sigma, ct_name):
    """Draw (c, s) gets new component j = clean component sigma[c, s, j]."""
    out = {name: arr.copy() for name, arr in arrays.items()}
    for c, s in np.ndindex(sigma.shape[:2]):
        for name, arr in arrays.items():
            axis = component_axis(name, ct_name)
            if axis is not None:
                out[name][c, s] = np.take(arr[c, s], sigma[c, s], axis=axis)
    return out


def known_permutations(n_chain=N_CHAIN, n_draw=N_DRAW, share=0.3, seed=1):
    """Chains 0-2 at fixed permutations, chain 3 permuted at random draws."""
    rng = np.random.default_rng(seed)
    sigma = np.empty((n_chain, n_draw, K), dtype=int)
    for c in range(n_chain):
        sigma[c] = CHAIN_PERMS[c % len(CHAIN_PERMS)]
    picked = rng.random(n_draw) < share
    sigma[-1] = np.arange(K)
    for s in np.flatnonzero(picked):
        perm = rng.permutation(K)
        while np.array_equal(perm, np.arange(K)):
            perm = rng.permutation(K)
        sigma[-1, s] = perm
    return sigma


def invert_by_loop(sigma):
    inv = np.empty_like(sigma)
    for idx in np.ndindex(sigma.shape[:-1]):
        for j, old in enumerate(sigma[idx]):
            inv[idx][old] = j
    return inv


def assert_dataset_equals_arrays(ds, arrays):
    for name, arr in arrays.items():
        dims = ds[name].dims
        np.testing.assert_array_equal(ds[name].values, arr, err_msg=name)
        assert ds[name].dims == dims


@pytest.fixture(scope="module")
def rhat():
    arviz_stats = pytest.importorskip("arviz_stats")
    return arviz_stats.rhat


# --------------------------------------------------------------------------
# relabel recovers the truth
# --------------------------------------------------------------------------
@pytest.mark.parametrize("ct_name", COVARIANCE_TYPES)
def test_relabel_undoes_known_permutations(ct_name):
    clean = clean_draws(ct_name)
    sigma = known_permutations()
    scrambled = to_dataset(scramble(clean, sigma, ct_name), ct_name)

    out, record = relabel(scrambled, ct_name, truth_pivot(ct_name))

    # The permutations found are exactly the inverses of those applied ...
    np.testing.assert_array_equal(record.permutations, invert_by_loop(sigma))
    # ... so every variable is back to the clean draws: each covariance and
    # Cholesky factor travelled with its mean and weight.
    assert_dataset_equals_arrays(out, clean)
    assert out.attrs == scrambled.attrs
    expected_share = np.mean(np.any(sigma != np.arange(K), axis=-1), axis=1)
    np.testing.assert_allclose(record.share_permuted, expected_share)
    assert record.share_permuted[0] == 0.0 and record.share_permuted[1] == 1.0
    assert record.converged and record.n_iter == 2
    assert record.covariance_type == ct_name and record.method == "pivot"
    # The final pivot is the posterior mean of the relabelled draws.
    np.testing.assert_allclose(record.pivot.means, clean["means"].mean(axis=(0, 1)))
    np.testing.assert_allclose(
        record.pivot.covariances, clean["covariances"].mean(axis=(0, 1))
    )


@pytest.mark.parametrize("ct_name", COVARIANCE_TYPES)
def test_default_pivot_gives_one_global_relabelling(ct_name):
    clean = clean_draws(ct_name, seed=3)
    sigma = known_permutations(seed=4)
    # Make the default pivot (middle draw of chain 0) a permuted draw.
    sigma[0, N_DRAW // 2] = (2, 0, 1)
    scrambled = to_dataset(scramble(clean, sigma, ct_name), ct_name)

    out, record = relabel(scrambled, ct_name)

    # New label j of draw (c, s) is clean component sigma[c, s, perm[c, s, j]]:
    # that must be one and the same relabelling tau for every draw.
    combined = np.take_along_axis(sigma, record.permutations, axis=-1)
    tau = combined[0, 0]
    assert np.array_equal(tau, (2, 0, 1))
    assert np.all(combined == tau)
    np.testing.assert_array_equal(out["means"].values, clean["means"][:, :, tau])
    np.testing.assert_array_equal(out["weights"].values, clean["weights"][:, :, tau])
    assert record.converged


@pytest.mark.parametrize("ct_name", COVARIANCE_TYPES)
def test_rhat_high_before_and_below_1_01_after(ct_name, rhat):
    clean = clean_draws(ct_name, seed=5)
    sigma = known_permutations(seed=6)
    scrambled = to_dataset(scramble(clean, sigma, ct_name), ct_name)
    names = ["weights", "means", "covariances"]

    before = rhat(scrambled[names])
    out, _ = relabel(scrambled, ct_name, truth_pivot(ct_name))
    after = rhat(out[names])

    assert float(before["means"].max()) > 1.5
    assert float(before["weights"].max()) > 1.5
    for name in names:
        assert float(after[name].max()) < 1.01, name


@pytest.mark.parametrize(
    ("ct_name", "scale"),
    [
        ("full", (1.0, 1000.0)),
        ("tied", (1.0, 1000.0)),
        ("diag", (1.0, 1000.0)),
        # a spherical covariance stays spherical only under a common scale
        ("spherical", (1000.0, 1000.0)),
    ],
)
def test_relabelling_is_invariant_to_feature_scale(ct_name, scale):
    # Components are told apart by feature 0; feature 1 is mostly noise.
    means = np.array([[0.0, 0.0], [4.0, 0.5], [8.0, -0.5]])
    chol = np.broadcast_to(np.eye(2), (K, 2, 2))
    kw = {"means": means, "chol": chol, "mean_noise": np.array([0.05, 0.6])}
    clean = clean_draws(ct_name, seed=7, **kw)
    rng = np.random.default_rng(8)
    sigma = np.array([rng.permutation(K) for _ in range(N_CHAIN * N_DRAW)]).reshape(
        N_CHAIN, N_DRAW, K
    )
    ct = get_covariance_type(ct_name)
    s = np.asarray(scale)

    def scaled(arrays):
        out = dict(arrays)
        out["means"] = arrays["means"] * s
        out["means_t"] = arrays["means_t"] * s[:, None]
        chol_cov = arrays["chol_cov"]
        if "component" not in ct.dims:
            chol_cov = chol_cov[..., None, :, :]
        factor = s[:, None] * chol_cov  # diag(s) L
        out["covariances"] = ct.from_cholesky(
            factor if "component" in ct.dims else np.repeat(factor, K, axis=-3)
        )
        out["chol_cov"] = factor if "component" in ct.dims else factor[..., 0, :, :]
        return out

    small = to_dataset(scramble(clean, sigma, ct_name), ct_name)
    big = to_dataset(scramble(scaled(clean), sigma, ct_name), ct_name)
    pivot = truth_pivot(ct_name, means=means, chol=chol)
    pivot_big = truth_pivot(
        ct_name, means=means * s, chol=s[:, None] * np.asarray(chol)
    )

    _, rec_small = relabel(small, ct_name, pivot)
    _, rec_big = relabel(big, ct_name, pivot_big)

    truth = invert_by_loop(sigma)
    np.testing.assert_array_equal(rec_small.permutations, truth)
    np.testing.assert_array_equal(rec_big.permutations, truth)
    # The test has teeth: a Euclidean nearest-means matching (not scale
    # invariant) gets many draws wrong at the large scale.
    if s[0] != s[1]:
        big_means = big["means"].values.reshape(-1, K, D)
        perms = np.array(list(itertools.permutations(range(K))))
        dist = np.sum((big_means[:, perms, :] - means * s) ** 2, axis=(-1, -2))
        euclid = perms[np.argmin(dist, axis=1)].reshape(N_CHAIN, N_DRAW, K)
        assert np.mean(np.any(euclid != truth, axis=-1)) > 0.2


def test_relabel_iterates_from_a_poor_pivot():
    ct_name = "full"
    clean = clean_draws(ct_name, seed=9)
    sigma = known_permutations(seed=10)
    scrambled = to_dataset(scramble(clean, sigma, ct_name), ct_name)
    tau = np.array([1, 2, 0])
    # The truth in another labelling, uniform weights, means off by ~1 sd.
    rough = MixturePivot(
        np.full(K, 1 / K),
        TRUE_MEANS[tau] + np.array([0.8, -0.8]),
        get_covariance_type(ct_name).from_cholesky(TRUE_CHOL[tau]) * 2.0,
    )

    out, record = relabel(scrambled, ct_name, rough)

    np.testing.assert_array_equal(out["means"].values, clean["means"][:, :, tau])
    assert record.converged and record.n_iter >= 2
    np.testing.assert_allclose(
        record.pivot.means, clean["means"][:, :, tau].mean(axis=(0, 1))
    )
    np.testing.assert_allclose(record.pivot.means, TRUE_MEANS[tau], atol=0.02)


def test_relabel_accepts_datatree_node_and_fitted_estimator():
    ct_name = "diag"
    clean = clean_draws(ct_name, seed=11)
    sigma = known_permutations(seed=12)
    scrambled = to_dataset(scramble(clean, sigma, ct_name), ct_name)
    tree = xr.DataTree.from_dict({"posterior": scrambled})
    pivot = truth_pivot(ct_name)
    estimator = SimpleNamespace(
        weights_=pivot.weights, means_=pivot.means, covariances_=pivot.covariances
    )

    out, record = relabel(tree["posterior"], ct_name, estimator)

    np.testing.assert_array_equal(record.permutations, invert_by_loop(sigma))
    assert_dataset_equals_arrays(out, clean)


def exchangeable_pair(ct_name, seed):
    """Components 0 and 1 exchangeable (same weight and covariance, means
    0.2 apart with draw noise 0.4), their labels swapped in half the draws."""
    means = np.array([[0.0, 0.0], [0.2, 0.0], [6.0, 6.0]])
    chol = TRUE_CHOL[[0, 0, 2]]
    weights = np.array([0.4, 0.4, 0.2])
    kw = {"means": means, "chol": chol, "weights": weights, "mean_noise": 0.4}
    clean = clean_draws(ct_name, seed=seed, **kw)
    rng = np.random.default_rng(seed + 1)
    sigma = np.tile(np.arange(K), (N_CHAIN, N_DRAW, 1))
    sigma[rng.random((N_CHAIN, N_DRAW)) < 0.5] = (1, 0, 2)
    scrambled = to_dataset(scramble(clean, sigma, ct_name), ct_name)
    return scrambled, truth_pivot(ct_name, means=means, weights=weights, chol=chol)


def test_max_iter_reached_warns():
    # Overlapping components whose labels hop at random: the pivot keeps
    # moving, so one refinement pass cannot settle it.
    ct_name = "full"
    scrambled, pivot = exchangeable_pair(ct_name, seed=13)

    with pytest.warns(ConvergenceWarning, match="did not converge"):
        _, record = relabel(scrambled, ct_name, pivot, max_iter=2)
    assert not record.converged and record.n_iter == 2


# --------------------------------------------------------------------------
# the cost and the solver
# --------------------------------------------------------------------------
def textbook_complete_data_kl(w, mu, cov, wp, mup, covp):
    """KL(p(z, x | draw) || p(z, x | pivot)) with explicit inverses."""
    total = 0.0
    d = mu.shape[1]
    for k in range(len(w)):
        inv = np.linalg.inv(covp[k])
        diff = mu[k] - mup[k]
        kl = 0.5 * (
            np.trace(inv @ cov[k])
            + diff @ inv @ diff
            - d
            + np.linalg.slogdet(covp[k])[1]
            - np.linalg.slogdet(cov[k])[1]
        )
        total += w[k] * (np.log(w[k] / wp[k]) + kl)
    return total


@pytest.mark.parametrize("ct_name", COVARIANCE_TYPES)
def test_cost_is_the_complete_data_kl(ct_name):
    ct = get_covariance_type(ct_name)
    clean = clean_draws(ct_name, n_chain=1, n_draw=4, noise=0.3, seed=15)
    ds = to_dataset(clean, ct_name)
    pivot = truth_pivot(ct_name)
    draws = _extract(ds, ct.dims, "test")
    cost = _cost(draws, _draw_factors(draws, ct), _factors_of_pivot(pivot, ct))
    full_cov = get_covariance_type("full").from_cholesky(
        ct.to_cholesky(pivot.covariances, K, D)
    )
    for s in range(4):
        chol_s = ct.to_cholesky(clean["covariances"][0, s], K, D)
        cov_s = chol_s @ np.swapaxes(chol_s, -1, -2)
        for perm in itertools.permutations(range(K)):
            p = list(perm)
            expected = textbook_complete_data_kl(
                clean["weights"][0, s][p],
                clean["means"][0, s][p],
                cov_s[p],
                pivot.weights,
                pivot.means,
                full_cov,
            )
            got = cost[s, p, np.arange(K)].sum()
            np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("ct_name", COVARIANCE_TYPES)
def test_refined_reference_minimises_the_total_cost(ct_name):
    # The refinement step must be the exact minimiser of the total cost over
    # references (that is what makes the passes a descent that cannot cycle):
    # any perturbation of it, including the plain posterior mean, costs more.
    ct = get_covariance_type(ct_name)
    clean = clean_draws(ct_name, n_draw=50, noise=0.2, seed=33)
    draws = _extract(to_dataset(clean, ct_name), ct.dims, "test")
    dfac = _draw_factors(draws, ct)
    idx = np.arange(K)

    def total(ref):
        return _cost(draws, dfac, ref)[:, idx, idx].sum()

    best = total(_matched_factors(draws, dfac))
    assert best < total(_factors_of_pivot(draws.mean_pivot(), ct))
    matched = _matched_factors(draws, dfac)
    inv = matched.inv_chol
    chol = np.linalg.inv(inv)
    means = np.einsum("kab,kb->ka", chol, matched.white_means)
    weights = np.exp(matched.log_weights)
    rng = np.random.default_rng(34)
    for _ in range(10):
        w = weights * np.exp(0.05 * rng.normal(size=K))
        mu = means + 0.05 * rng.normal(size=means.shape)
        factor = chol @ (np.eye(D) + np.tril(0.05 * rng.normal(size=(K, D, D))))
        assert best < total(_pivot_factors(w, mu, factor))


@pytest.mark.parametrize("k", [1, 2, 4, 6, 7, 8])
def test_best_permutations_match_brute_force(k):
    rng = np.random.default_rng(16 + k)
    n = 40 if k < 8 else 8
    cost = rng.random((n, k, k))
    # half of the draws easy (a clear cheapest match per row), half random
    easy = rng.permutation(k)
    cost[: n // 2, easy, np.arange(k)] -= 2.0
    perms = np.array(list(itertools.permutations(range(k))))
    totals = cost[:, perms, np.arange(k)].sum(axis=-1)
    expected = perms[np.argmin(totals, axis=1)]

    got = _best_permutations(cost)

    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got[: n // 2], np.tile(easy, (n // 2, 1)))


# --------------------------------------------------------------------------
# records and apply_permutations
# --------------------------------------------------------------------------
def test_record_round_trips_through_json_and_dataarray():
    ct_name = "full"
    clean = clean_draws(ct_name, seed=17)
    sigma = known_permutations(seed=18)
    scrambled = to_dataset(scramble(clean, sigma, ct_name), ct_name)
    scrambled = scrambled.assign_coords(draw=np.arange(1000, 1000 + N_DRAW))
    out, record = relabel(scrambled, ct_name, truth_pivot(ct_name))

    back = RelabelRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    perm_da = record.to_dataarray()
    attrs_only = json.loads(json.dumps(record.to_dict(include_permutations=False)))
    back2 = RelabelRecord.from_dict(attrs_only, permutations=perm_da)

    for rec in (back, back2):
        np.testing.assert_array_equal(rec.permutations, record.permutations)
        np.testing.assert_array_equal(rec.share_permuted, record.share_permuted)
        np.testing.assert_array_equal(rec.draw, np.arange(1000, 1000 + N_DRAW))
        for field in ("weights", "means", "covariances"):
            np.testing.assert_array_equal(
                getattr(rec.pivot, field), getattr(record.pivot, field)
            )
        assert (rec.n_iter, rec.converged, rec.method, rec.covariance_type) == (
            record.n_iter,
            record.converged,
            "pivot",
            "full",
        )
    assert "permutations" not in attrs_only
    assert perm_da.dims == ("chain", "draw", "component")
    np.testing.assert_array_equal(perm_da["draw"], scrambled["draw"])
    # A stored record re-applied to the raw draws gives the relabelled ones,
    # and its inverse takes them back.
    again = apply_permutations(scrambled, back)
    xr.testing.assert_identical(again, out)
    undone = apply_permutations(out, inverse_permutations(record.permutations))
    xr.testing.assert_identical(undone, scrambled)
    with pytest.raises(ValueError, match="no 'permutations'"):
        RelabelRecord.from_dict(attrs_only)


def test_apply_permutations_on_another_group():
    # e.g. a group with per-observation responsibilities over components
    rng = np.random.default_rng(19)
    resp = rng.random((2, 5, 7, K))
    ds = xr.Dataset({"resp": (("chain", "draw", "obs", "component"), resp)})
    perms = np.array([rng.permutation(K) for _ in range(10)]).reshape(2, 5, K)
    out = apply_permutations(ds, perms)
    for c, s in np.ndindex(2, 5):
        np.testing.assert_array_equal(
            out["resp"].values[c, s], resp[c, s][:, perms[c, s]]
        )


# --------------------------------------------------------------------------
# order_by
# --------------------------------------------------------------------------
@pytest.mark.parametrize("ct_name", COVARIANCE_TYPES)
def test_order_by_sorts_one_feature_and_keeps_components_together(ct_name):
    clean = clean_draws(ct_name, seed=20)
    sigma = known_permutations(seed=21)
    scrambled = to_dataset(scramble(clean, sigma, ct_name), ct_name, ["x", "y"])

    out, record = order_by(scrambled, feature=0)

    order = np.array([0, 2, 1])  # the true components sorted by feature 0
    for name in ("weights", "means", "chol_cov"):
        axis = component_axis(name, ct_name)
        if axis is not None:
            expected = np.take(clean[name], order, axis=2 + axis)
            np.testing.assert_array_equal(out[name].values, expected, err_msg=name)
    if "component" in get_covariance_type(ct_name).dims:
        np.testing.assert_array_equal(
            out["covariances"].values, clean["covariances"][:, :, order]
        )
    assert np.all(np.diff(out["means"].values[..., 0], axis=-1) > 0)
    assert record.method == "order_by" and record.feature == 0
    np.testing.assert_allclose(record.pivot.means, TRUE_MEANS[order], atol=0.01)
    combined = np.take_along_axis(sigma, record.permutations, axis=-1)
    assert np.all(combined == order)

    # by feature label: feature "y" orders the truth as (0, 1, 2)
    out_y, rec_y = order_by(scrambled, feature="y")
    assert_dataset_equals_arrays(out_y, clean)
    assert rec_y.feature == 1


# --------------------------------------------------------------------------
# label_switching_check
# --------------------------------------------------------------------------
def chain_level_permutations(n_chain=N_CHAIN, n_draw=N_DRAW):
    sigma = np.empty((n_chain, n_draw, K), dtype=int)
    for c, perm in enumerate([(0, 1, 2), (1, 2, 0), (2, 1, 0), (0, 1, 2)]):
        sigma[c] = perm
    return sigma


@pytest.mark.parametrize("ct_name", COVARIANCE_TYPES)
def test_check_passes_chains_that_are_permutations_of_each_other(ct_name):
    clean = clean_draws(ct_name, seed=22)
    sigma = chain_level_permutations()
    scrambled = to_dataset(scramble(clean, sigma, ct_name), ct_name)

    check = label_switching_check(scrambled, ct_name)
    out, record = relabel(scrambled, ct_name, truth_pivot(ct_name))
    check_rec = label_switching_check(out, ct_name, record)

    for res in (check, check_rec):
        assert isinstance(res, LabelSwitchingCheck)
        assert res.status == "ok" and res.ok
        assert res.chain_status == ("ok", "permuted", "permuted", "ok")
        assert np.all(res.distance < 1.0)
        assert np.all(res.raw_distance[1:3] > 10.0)  # far apart before relabelling
        assert np.all(res.invariant_distance < 1.0)
        assert res.share_unmatched == 0.0
        assert "Chain 1 is a relabelling" in res.message
    np.testing.assert_array_equal(check_rec.modal_permutation[1], (2, 0, 1))


def test_check_reports_switches_that_relabelling_undid():
    ct_name = "full"
    clean = clean_draws(ct_name, seed=30)
    sigma = known_permutations(seed=31)  # chain 3: random permutations
    scrambled = to_dataset(scramble(clean, sigma, ct_name), ct_name)

    check = label_switching_check(scrambled, ct_name)

    assert check.status == "ok"
    assert check.chain_status == ("ok", "permuted", "permuted", "permuted")
    changes = np.any(sigma[3, 1:] != sigma[3, :-1], axis=-1).mean()
    np.testing.assert_allclose(check.switch_rate, [0, 0, 0, changes])
    assert np.all(check.ambiguous_share == 0)
    assert "Chain 3 switched labels" in check.message


def test_check_with_one_chain():
    ct_name = "tied"
    ds = to_dataset(clean_draws(ct_name, n_chain=1, seed=32), ct_name)
    check = label_switching_check(ds, ct_name)
    assert check.status == "ok" and check.chain_status == ("ok",)
    assert "one chain" in check.message


@pytest.mark.parametrize("ct_name", COVARIANCE_TYPES)
def test_check_passes_a_good_fit(ct_name):
    clean = clean_draws(ct_name, seed=23)
    check = label_switching_check(to_dataset(clean, ct_name), ct_name)
    assert check.status == "ok"
    assert check.chain_status == ("ok",) * N_CHAIN
    assert np.all(check.switch_rate == 0) and np.all(check.ambiguous_share == 0)
    assert "none left" in str(check)


@pytest.mark.parametrize("ct_name", COVARIANCE_TYPES)
def test_check_flags_a_chain_at_another_mode(ct_name):
    clean = clean_draws(ct_name, seed=24)
    # Chain 3 converged elsewhere: other weights, component 2 moved.
    other = clean_draws(
        ct_name,
        weights=np.array([0.3, 0.3, 0.4]),
        means=TRUE_MEANS + np.array([[0, 0], [0, 0], [1.5, -2.0]]),
        seed=25,
    )
    mixed = {name: arr.copy() for name, arr in clean.items()}
    for name in mixed:
        mixed[name][3] = other[name][3]
    sigma = chain_level_permutations()
    scrambled = to_dataset(scramble(mixed, sigma, ct_name), ct_name)

    check = label_switching_check(scrambled, ct_name)

    assert check.status == "fail"
    assert check.chain_status[3] == "elsewhere"
    assert "elsewhere" not in check.chain_status[:3]
    assert check.distance[3] > 10.0 and check.invariant_distance[3] > 10.0
    assert "Chain 3 sits at a different mode" in check.message


@pytest.mark.parametrize("ct_name", COVARIANCE_TYPES)
def test_check_flags_switching_between_overlapping_components(ct_name):
    scrambled, _ = exchangeable_pair(ct_name, seed=26)

    check = label_switching_check(scrambled, ct_name)
    _, record = relabel(scrambled, ct_name)

    assert record.converged  # the refinement descends: no endless flipping
    assert check.status == "warn"
    assert check.chain_status == ("switching",) * N_CHAIN
    assert np.all(check.switch_rate > 0.1) and np.all(check.ambiguous_share > 0.1)
    assert "cannot undo" in check.message


def test_check_rejects_a_record_of_another_shape():
    clean = clean_draws("full", seed=28)
    ds = to_dataset(clean, "full")
    _, record = relabel(ds.isel(draw=slice(0, 50)), "full")
    with pytest.raises(ValueError, match="permutations have shape"):
        label_switching_check(ds, "full", record)


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------
def _good():
    return to_dataset(clean_draws("full", n_draw=20, seed=29), "full")


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda: (_good().drop_vars("means"), "full", None),
            ValueError,
            "no variable 'means'",
        ),
        (
            lambda: (_good().isel(feature=0), "full", None),
            ValueError,
            r"posterior\['means'\] has dims",
        ),
        (lambda: (_good(), "diag", None), ValueError, r"posterior\['covariances'\]"),
        (lambda: (_good(), "fulll", None), ValueError, "Valid options"),
        (lambda: (_good().to_array(), "full", None), TypeError, "xarray.Dataset"),
        (
            lambda: (
                _good(),
                "full",
                MixturePivot(
                    TRUE_WEIGHTS[:2], TRUE_MEANS[:2], np.stack([np.eye(2)] * 2)
                ),
            ),
            ValueError,
            "pivot has 2 components but the posterior has 3",
        ),
        (
            lambda: (
                _good(),
                "full",
                MixturePivot(TRUE_WEIGHTS, np.zeros((3, 3)), np.stack([np.eye(3)] * 3)),
            ),
            ValueError,
            "pivot has 3 features but the posterior has 2",
        ),
        (
            lambda: (
                _good(),
                "full",
                MixturePivot(TRUE_WEIGHTS, TRUE_MEANS, np.ones((3, 2))),
            ),
            ValueError,
            "covariances have shape",
        ),
        (lambda: (_good(), "full", "em"), TypeError, "pivot must be"),
        (
            lambda: (_good().assign(weights=_good()["weights"] * np.nan), "full", None),
            ValueError,
            "NaN",
        ),
        (
            lambda: (_good().assign(covariances=-_good()["covariances"]), "full", None),
            ValueError,
            "not positive definite",
        ),
    ],
)
def test_relabel_rejects_bad_input(make, error, match):
    ds, ct_name, pivot = make()
    with pytest.raises(error, match=match):
        relabel(ds, ct_name, pivot)


def test_bad_permutations_and_options_are_rejected():
    ds = _good()
    perms = np.tile(np.arange(K), (N_CHAIN, 20, 1))
    bad = perms.copy()
    bad[1, 3] = (0, 0, 2)
    with pytest.raises(ValueError, match=r"permutations\[1, 3\] = \[0, 0, 2\]"):
        apply_permutations(ds, bad)
    with pytest.raises(ValueError, match="permutations have 19 draw"):
        apply_permutations(ds, perms[:, :19])
    with pytest.raises(ValueError, match="3 components but the dataset"):
        apply_permutations(ds.isel(component=slice(0, 2)), perms)
    with pytest.raises(ValueError, match="'max_iter' must be >= 1"):
        relabel(ds, "full", max_iter=0)
    with pytest.raises(ValueError, match="out of range"):
        order_by(ds, feature=5)
    with pytest.raises(ValueError, match="pivot weights"):
        MixturePivot([0.5, -0.5], [[0.0], [1.0]], [1.0, 1.0])


def test_top_level_relabel_works_after_the_submodule_is_imported():
    # Importing the submodule (fitting does) binds bayes_gmm.relabel to it;
    # the public name must still relabel draws, both ways of reaching it.
    import bayes_gmm
    import bayes_gmm.relabel  # noqa: F401
    from bayes_gmm import relabel as top_level

    clean = clean_draws("full")
    sigma = known_permutations()
    scrambled = to_dataset(scramble(clean, sigma, "full"), "full")
    for fn in (top_level, bayes_gmm.relabel):
        out, record = fn(scrambled, "full", truth_pivot("full"))
        np.testing.assert_array_equal(record.permutations, invert_by_loop(sigma))
        assert_dataset_equals_arrays(out, clean)
