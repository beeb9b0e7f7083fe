"""Tests of bayes_gmm.datasets against simulated truth and published summaries."""

import itertools
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayes_gmm import load_faithful, load_galaxies, make_mixture

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _full_covariances(truth, k, d):
    """Expand the truth's covariances to (K, D, D), independently of the package."""
    cov = np.asarray(truth.covariances)
    if truth.covariance_type == "full":
        return cov
    if truth.covariance_type == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if truth.covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return cov[:, None, None] * np.eye(d)


# --------------------------------------------------------------- make_mixture


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_make_mixture_shapes(covariance_type):
    n, k, d = 50, 4, 3
    X, y, truth = make_mixture(n, k, d, covariance_type=covariance_type, random_state=0)
    expected_cov = {
        "full": (k, d, d),
        "tied": (d, d),
        "diag": (k, d),
        "spherical": (k,),
    }
    assert X.shape == (n, d)
    assert y.shape == (n,)
    assert set(np.unique(y)) <= set(range(k))
    assert truth.weights.shape == (k,)
    assert truth.means.shape == (k, d)
    assert truth.covariances.shape == expected_cov[covariance_type]
    assert truth.covariance_type == covariance_type
    np.testing.assert_allclose(truth.weights, np.full(k, 1 / k))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_make_mixture_reproducible(covariance_type):
    a = make_mixture(30, 2, 2, covariance_type=covariance_type, random_state=3)
    b = make_mixture(30, 2, 2, covariance_type=covariance_type, random_state=3)
    c = make_mixture(30, 2, 2, covariance_type=covariance_type, random_state=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2].means, b[2].means)
    np.testing.assert_array_equal(a[2].covariances, b[2].covariances)
    assert not np.array_equal(a[0], c[0])
    # A Generator is accepted and gives the same draws as its seed.
    g = make_mixture(
        30,
        2,
        2,
        covariance_type=covariance_type,
        random_state=np.random.default_rng(3),
    )
    np.testing.assert_array_equal(a[0], g[0])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_make_mixture_true_covariances_have_documented_scales(covariance_type):
    # Docstring: standard deviations between 0.5 and 1, so eigenvalues of each
    # covariance in [0.25, 1].
    k, d = 3, 3
    _, _, truth = make_mixture(
        10, k, d, covariance_type=covariance_type, random_state=11
    )
    cov = _full_covariances(truth, k, d)
    np.testing.assert_allclose(cov, np.swapaxes(cov, -1, -2), atol=1e-12)
    eig = np.linalg.eigvalsh(cov)
    assert eig.min() >= 0.25 - 1e-12
    assert eig.max() <= 1.0 + 1e-12


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_make_mixture_sample_moments_match_truth(covariance_type):
    """Weights, means and covariances of the sample within 5 standard errors."""
    n, k, d = 20_000, 3, 3
    weights = np.array([0.5, 0.3, 0.2])
    X, y, truth = make_mixture(
        n,
        k,
        d,
        covariance_type=covariance_type,
        weights=weights,
        random_state=2024,
    )
    np.testing.assert_allclose(truth.weights, weights)
    counts = np.bincount(y, minlength=k)
    se_w = np.sqrt(weights * (1 - weights) / n)
    assert np.all(np.abs(counts / n - weights) < 5 * se_w)

    cov = _full_covariances(truth, k, d)
    for j in range(k):  # checking each component's moments, not looping EM
        xj = X[y == j]
        nj = xj.shape[0]
        se_mean = np.sqrt(np.diag(cov[j]) / nj)
        assert np.all(np.abs(xj.mean(axis=0) - truth.means[j]) < 5 * se_mean)
        s = np.cov(xj.T, bias=True)
        var = np.diag(cov[j])
        # Var of a sample covariance entry (Gaussian): (S_ii S_jj + S_ij^2) / n.
        se_cov = np.sqrt((np.outer(var, var) + cov[j] ** 2) / nj)
        assert np.all(np.abs(s - cov[j]) < 5 * se_cov)


def test_make_mixture_rows_are_in_random_order():
    n = 3000
    _, y, truth = make_mixture(n, 3, 2, random_state=5)
    # Under random order, P(y_i == y_{i+1}) = sum_k w_k^2.
    same = np.mean(y[1:] == y[:-1])
    p = np.sum(truth.weights**2)
    assert abs(same - p) < 5 * np.sqrt(p * (1 - p) / (n - 1))


def test_make_mixture_memory_is_linear_in_the_data():
    """No (n, d, d) temporary: the peak stays a few times the data's size."""
    tracemalloc.start()
    try:
        X, _, _ = make_mixture(20_000, 3, 40, random_state=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 * X.nbytes  # an (n, d, d) array alone is d = 40 times X


@pytest.mark.parametrize(
    ("covariance_type", "separation", "seed"),
    list(itertools.product(COVARIANCE_TYPES, [2.0, 4.0, 8.0], [0, 1])),
)
def test_make_mixture_separation_respected(covariance_type, separation, seed):
    k, d = 5, 2
    _, _, truth = make_mixture(
        20,
        k,
        d,
        covariance_type=covariance_type,
        separation=separation,
        random_state=seed,
    )
    max_sd = np.sqrt(np.linalg.eigvalsh(_full_covariances(truth, k, d)).max())
    dist = np.linalg.norm(truth.means[:, None, :] - truth.means[None, :, :], axis=-1)
    min_dist = dist[np.triu_indices(k, 1)].min()
    assert min_dist / max_sd >= separation


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"weights": [0.5, 0.5]}, ValueError, "'weights' must be 3 non-negative"),
        ({"weights": [0.5, -0.1, 0.6]}, ValueError, "'weights' must be 3"),
        ({"covariance_type": "banana"}, ValueError, "Valid options are"),
        ({"n_components": 0}, ValueError, "'n_components' must be >= 1"),
        ({"n_samples": 2.5}, TypeError, "'n_samples' must be an int"),
    ],
)
def test_make_mixture_bad_arguments(kwargs, error, match):
    args = {"n_samples": 10, "n_components": 3, "n_features": 2, **kwargs}
    with pytest.raises(error, match=match):
        make_mixture(**args, random_state=0)


# --------------------------------------------------------------- real data


def test_load_faithful_matches_r_datasets_faithful():
    df = load_faithful()
    assert isinstance(df, pd.DataFrame)
    assert df.shape == (272, 2)
    assert list(df.columns) == ["eruptions", "waiting"]
    # Published summaries of R's datasets::faithful.
    np.testing.assert_allclose(df.mean().to_numpy(), [3.487783, 70.89706], rtol=1e-6)
    np.testing.assert_allclose(
        df.var(ddof=1).to_numpy(), [1.302728, 184.8233], rtol=1e-6
    )
    assert df.iloc[0].tolist() == [3.6, 79.0]


def test_load_faithful_equals_shared_source_copy():
    source = SHARED_DATA / "faithful.csv"
    if not source.exists():  # pragma: no cover - only outside the project tree
        pytest.skip("shared source data not available")
    np.testing.assert_array_equal(
        load_faithful().to_numpy(float), pd.read_csv(source).to_numpy(float)
    )


def test_load_galaxies_matches_mass_galaxies():
    df = load_galaxies()
    assert df.shape == (82, 1)
    assert list(df.columns) == ["velocity"]
    v = df["velocity"].to_numpy()
    assert v.min() == 9172 and v.max() == 34279
    assert v[77] == 26690  # as MASS records it (see the docstring)
    np.testing.assert_allclose(v.mean(), 20828.17, rtol=1e-6)
    source = SHARED_DATA / "galaxies.csv"
    if source.exists():
        np.testing.assert_array_equal(v, pd.read_csv(source)["velocity"].to_numpy())


def test_load_galaxies_scale():
    v = load_galaxies()["velocity"].to_numpy()
    scaled = load_galaxies(scale=1000)["velocity"].to_numpy()
    np.testing.assert_allclose(scaled, v / 1000, rtol=1e-15)
    assert scaled.min() == pytest.approx(9.172)
    # A second call is unaffected by the first (no shared mutable state).
    np.testing.assert_array_equal(load_galaxies()["velocity"].to_numpy(), v)
