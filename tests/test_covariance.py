"""Tests of the covariance table (bayes_gmm._covariance) against sklearn and scipy."""

import re

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
from sklearn.mixture import GaussianMixture
from sklearn.mixture._gaussian_mixture import (
    _compute_precision_cholesky,
    _estimate_gaussian_parameters,
    _estimate_log_gaussian_prob,
)
from sklearn.mixture._gaussian_mixture import (
    _compute_precision_cholesky_from_precisions as _sk_from_precisions,
)
from sklearn.utils._array_api import get_namespace

from bayes_gmm._covariance import (
    _CENTRED,
    _DESIGNS,
    COVARIANCE_TYPES,
    _em_kernel,
    _tri_inv_t,
    get_covariance_type,
    log_gaussian_prob,
    log_gaussian_prob_cholesky,
    n_parameters,
)

TYPES = ["full", "tied", "diag", "spherical"]
K, D = 3, 4


def _random_spd(rng, d, batch=()):
    a = rng.standard_normal((*batch, d, d))
    return a @ np.swapaxes(a, -1, -2) + 0.5 * np.eye(d)


def _random_covariances(covariance_type, k=K, d=D, seed=0):
    """Covariances in the EM shape of the type (random, well conditioned)."""
    rng = np.random.default_rng(seed)
    if covariance_type == "full":
        return _random_spd(rng, d, (k,))
    if covariance_type == "tied":
        return _random_spd(rng, d)
    if covariance_type == "diag":
        return rng.uniform(0.2, 3.0, size=(k, d))
    return rng.uniform(0.2, 3.0, size=k)


def _expand(covariance_type, cov, k, d):
    """(K, D, D) matrices from an EM-shaped array, written independently."""
    if covariance_type == "full":
        return cov
    if covariance_type == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return cov[:, None, None] * np.eye(d)


def _precisions_em_shape(covariance_type, cov):
    """Precision matrices in the EM shape (the oracle inverts; the code must not)."""
    if covariance_type in ("full", "tied"):
        return np.linalg.inv(cov)
    return 1.0 / cov


def _compute_precision_cholesky_from_precisions(precisions, covariance_type):
    # This private sklearn helper needs the array namespace passed explicitly.
    xp, _ = get_namespace(precisions)
    return _sk_from_precisions(precisions, covariance_type, xp=xp)


def _close(actual, desired, rtol=1e-10):
    scale = np.max(np.abs(desired))
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * scale)


# ----------------------------------------------------------------- the table


def test_covariance_types_tuple_is_sorted_and_complete():
    assert COVARIANCE_TYPES == tuple(sorted(TYPES))


@pytest.mark.parametrize("covariance_type", TYPES)
def test_shape_matches_sklearn_fitted_covariances(covariance_type):
    X = np.random.default_rng(0).standard_normal((40, D))
    gm = GaussianMixture(K, covariance_type=covariance_type, random_state=0).fit(X)
    ct = get_covariance_type(covariance_type)
    assert ct.shape(K, D) == gm.covariances_.shape
    assert ct.name == covariance_type
    assert len(ct.dims) == len(ct.shape(K, D))


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize(("k", "d"), [(1, 1), (1, 3), (2, 2), (3, 5), (6, 10)])
def test_n_parameters_matches_sklearn(covariance_type, k, d):
    gm = GaussianMixture(k, covariance_type=covariance_type)
    gm.means_ = np.zeros((k, d))  # all _n_parameters() reads
    assert n_parameters(covariance_type, k, d) == gm._n_parameters()


@pytest.mark.parametrize(
    ("covariance_type", "formula"),
    [
        ("full", lambda k, d: k * d * (d + 1) // 2),
        ("tied", lambda k, d: d * (d + 1) // 2),
        ("diag", lambda k, d: k * d),
        ("spherical", lambda k, d: k),
    ],
)
def test_n_parameters_formula(covariance_type, formula):
    for k, d in [(1, 1), (2, 3), (5, 4)]:
        got = n_parameters(covariance_type, k, d)
        assert got == formula(k, d) + k * d + k - 1
        assert isinstance(got, int)
        ct = get_covariance_type(covariance_type)
        assert ct.n_covariance_parameters(k, d) == formula(k, d)


@pytest.mark.parametrize("bad", ["banana", "Full", None, ["full"]])
def test_get_covariance_type_error_lists_sorted_types(bad):
    msg = (
        f"Invalid value for 'covariance_type': {bad!r}. Valid options are "
        "['diag', 'full', 'spherical', 'tied']."
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        get_covariance_type(bad)


def test_n_parameters_unknown_type():
    with pytest.raises(ValueError, match="Valid options are"):
        n_parameters("banana", 2, 2)


# ------------------------------------------------------------- conversions


@pytest.mark.parametrize("covariance_type", TYPES)
def test_to_cholesky_is_lower_factor_of_expanded_covariance(covariance_type):
    ct = get_covariance_type(covariance_type)
    cov = _random_covariances(covariance_type)
    chol = ct.to_cholesky(cov, K, D)
    assert chol.shape == (K, D, D)
    np.testing.assert_array_equal(np.triu(chol, 1), 0.0)
    assert np.all(np.diagonal(chol, axis1=-2, axis2=-1) > 0)
    _close(chol @ np.swapaxes(chol, -1, -2), _expand(covariance_type, cov, K, D))
    np.testing.assert_allclose(
        chol,
        np.linalg.cholesky(_expand(covariance_type, cov, K, D)),
        rtol=1e-12,
        atol=1e-14,
    )


@pytest.mark.parametrize("covariance_type", TYPES)
def test_from_cholesky_round_trip(covariance_type):
    ct = get_covariance_type(covariance_type)
    cov = _random_covariances(covariance_type)
    _close(ct.from_cholesky(ct.to_cholesky(cov, K, D)), cov)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_from_cholesky_batched_over_draws(covariance_type):
    # Posterior draws: (chain, draw, K, D, D) factors -> (chain, draw, *EM shape).
    ct = get_covariance_type(covariance_type)
    covs = np.stack(
        [_random_covariances(covariance_type, seed=s) for s in range(6)]
    ).reshape(2, 3, *ct.shape(K, D))
    chols = np.stack(
        [ct.to_cholesky(c, K, D) for c in covs.reshape(6, *ct.shape(K, D))]
    ).reshape(2, 3, K, D, D)
    _close(ct.from_cholesky(chols), covs)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_precision_cholesky_matches_sklearn(covariance_type):
    ct = get_covariance_type(covariance_type)
    cov = _random_covariances(covariance_type)
    _close(
        ct.precision_cholesky(cov),
        _compute_precision_cholesky(cov, covariance_type),
    )


@pytest.mark.parametrize("covariance_type", TYPES)
def test_precision_cholesky_from_precisions_matches_sklearn(covariance_type):
    ct = get_covariance_type(covariance_type)
    prec = _precisions_em_shape(covariance_type, _random_covariances(covariance_type))
    _close(
        ct.precision_cholesky_from_precisions(prec),
        _compute_precision_cholesky_from_precisions(prec, covariance_type),
    )


@pytest.mark.parametrize("covariance_type", TYPES)
def test_precisions_are_inverse_covariances(covariance_type):
    ct = get_covariance_type(covariance_type)
    cov = _random_covariances(covariance_type)
    pc = ct.precision_cholesky(cov)
    _close(ct.precisions(pc), _precisions_em_shape(covariance_type, cov), rtol=1e-9)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_covariances_from_precision_cholesky_round_trip(covariance_type):
    ct = get_covariance_type(covariance_type)
    cov = _random_covariances(covariance_type)
    _close(
        ct.covariances_from_precision_cholesky(ct.precision_cholesky(cov)), cov, 1e-9
    )
    # And from sklearn's factor of the precisions (the precisions_init path).
    prec = _precisions_em_shape(covariance_type, cov)
    pc = _compute_precision_cholesky_from_precisions(prec, covariance_type)
    _close(ct.covariances_from_precision_cholesky(pc), cov, 1e-9)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_log_det_precision_cholesky_is_minus_half_log_det_covariance(covariance_type):
    ct = get_covariance_type(covariance_type)
    cov = _random_covariances(covariance_type)
    got = ct.log_det_precision_cholesky(ct.precision_cholesky(cov), D)
    want = -0.5 * np.linalg.slogdet(_expand(covariance_type, cov, K, D))[1]
    np.testing.assert_allclose(np.broadcast_to(got, (K,)), want, rtol=1e-12)


# --------------------------------------------------------- failed Cholesky


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_singular_matrix_raises_with_remedies(covariance_type):
    ct = get_covariance_type(covariance_type)
    singular = np.array([[1.0, 1.0], [1.0, 1.0]])  # duplicated column
    cov = singular if covariance_type == "tied" else np.stack([np.eye(2), singular])
    remedies = r"Remedies: use fewer components, increase reg_covar \(now 0.0\)"
    with pytest.raises(ValueError, match=remedies):
        ct.precision_cholesky(cov, reg_covar=0.0)
    with pytest.raises(ValueError, match="ill-defined .singular or collapsed."):
        ct.to_cholesky(cov, 2, 2, reg_covar=0.0)


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan])
def test_non_positive_variance_raises_with_remedies(covariance_type, bad):
    ct = get_covariance_type(covariance_type)
    cov = _random_covariances(covariance_type, k=2, d=2)
    cov[(1,) * cov.ndim] = bad
    with pytest.raises(ValueError, match="non-positive variance. Remedies:.*reg_covar"):
        ct.precision_cholesky(cov, reg_covar=0.0)
    with pytest.raises(ValueError, match="standardise the features"):
        ct.to_cholesky(cov, 2, 2)


# ---------------------------------------------------------------- densities


def _params(covariance_type, n=25, k=K, d=D, seed=0):
    rng = np.random.default_rng(seed + 100)
    X = rng.standard_normal((n, d)) * 2 + 5  # an origin away from zero
    means = rng.standard_normal((k, d)) * 2 + 5
    cov = _random_covariances(covariance_type, k, d, seed)
    return X, means, cov


def _scipy_logpdf(X, means, full):
    return np.stack(
        [
            scipy.stats.multivariate_normal(m, c).logpdf(X).reshape(len(X))
            for m, c in zip(means, full, strict=True)
        ],
        axis=1,
    )


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize(("k", "d"), [(1, 1), (3, 4), (2, 7)])
def test_log_gaussian_prob_matches_sklearn_and_scipy(covariance_type, k, d):
    X, means, cov = _params(covariance_type, k=k, d=d)
    pc = _compute_precision_cholesky(cov, covariance_type)
    got = log_gaussian_prob(X, means, pc, covariance_type)
    assert got.shape == (X.shape[0], k)
    _close(got, _estimate_log_gaussian_prob(X, means, pc, covariance_type))
    _close(got, _scipy_logpdf(X, means, _expand(covariance_type, cov, k, d)))


@pytest.mark.parametrize("covariance_type", TYPES)
def test_log_gaussian_prob_far_from_component(covariance_type):
    # Mahalanobis distances ~1e6: still finite and equal to scipy's.
    X, means, cov = _params(covariance_type, n=5)
    X = X + 1e3
    pc = _compute_precision_cholesky(cov, covariance_type)
    got = log_gaussian_prob(X, means, pc, covariance_type)
    assert np.all(np.isfinite(got))
    _close(got, _scipy_logpdf(X, means, _expand(covariance_type, cov, K, D)), 1e-8)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_log_gaussian_prob_cholesky_matches_scipy_batched(covariance_type):
    """(chain, draw) leading dimensions, as when scoring posterior draws."""
    ct = get_covariance_type(covariance_type)
    batch = (2, 3)
    X, _, _ = _params(covariance_type, n=15)
    rng = np.random.default_rng(1)
    means = rng.standard_normal((*batch, K, D)) * 2 + 5
    covs = [_random_covariances(covariance_type, seed=s) for s in range(6)]
    chol = np.stack([ct.to_cholesky(c, K, D) for c in covs]).reshape(*batch, K, D, D)
    got = log_gaussian_prob_cholesky(X, means, chol)
    assert got.shape == (*batch, X.shape[0], K)
    flat_means = means.reshape(6, K, D)
    want = np.stack(
        [
            _scipy_logpdf(X, flat_means[i], _expand(covariance_type, covs[i], K, D))
            for i in range(6)
        ]
    ).reshape(*batch, X.shape[0], K)
    _close(got, want)


def test_log_gaussian_prob_cholesky_unbatched_equals_em_form():
    X, means, cov = _params("full")
    chol = np.linalg.cholesky(cov)
    pc = _compute_precision_cholesky(cov, "full")
    _close(
        log_gaussian_prob_cholesky(X, means, chol),
        _estimate_log_gaussian_prob(X, means, pc, "full"),
    )


@pytest.mark.parametrize("covariance_type", TYPES)
def test_log_gaussian_prob_far_from_the_origin(covariance_type):
    """Components and data 1e6 from the origin: computed on x - mu, not expanded.

    Expanding ``|x|^2 - 2 x.mu + |mu|^2`` would cancel 12 digits here.
    """
    X, means, cov = _params(covariance_type, n=25)
    X, means = X + 1e6, means + 1e6
    pc = _compute_precision_cholesky(cov, covariance_type)
    got = log_gaussian_prob(X, means, pc, covariance_type)
    _close(got, _scipy_logpdf(X, means, _expand(covariance_type, cov, K, D)), 1e-9)


# --------------------------------------------------------- triangular inverse


@pytest.mark.parametrize("batch", [(), (3,), (2, 4)])
@pytest.mark.parametrize("d", [1, 2, 5, 12])
def test_tri_inv_t_is_the_transposed_inverse_of_the_factor(batch, d):
    rng = np.random.default_rng(d)
    chol = np.linalg.cholesky(_random_spd(rng, d, batch))
    got = _tri_inv_t(chol)
    assert got.shape == chol.shape
    np.testing.assert_array_equal(np.tril(got, -1), 0.0)  # exactly upper
    eye = np.broadcast_to(np.eye(d), chol.shape)
    want = scipy.linalg.solve_triangular(chol, eye, lower=True)
    _close(got, np.swapaxes(want, -1, -2), 1e-12)


# --------------------------------------------------------------- M-step forms


def _full_scatter(X, resp, reg_covar):
    """scikit-learn's two-pass full M-step (its diag/tied/spherical cancel)."""
    nk, means, cov = _estimate_gaussian_parameters(X, resp, reg_covar, "full")
    return nk, means, cov


def _reduce(covariance_type, nk, cov):
    if covariance_type == "full":
        return cov
    if covariance_type == "tied":
        return np.tensordot(nk / nk.sum(), cov, axes=1)
    diag = np.diagonal(cov, axis1=1, axis2=2)
    return diag if covariance_type == "diag" else diag.mean(axis=1)


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("origin", ["zero", "new means", "shifted means"])
def test_covariances_from_moments_do_not_depend_on_the_origin(covariance_type, origin):
    """The shift form gives the two-pass covariances about any origin.

    Data 1e4 from zero with unit spread: about zero the second moments cancel
    eight digits (the tolerance then allows them); about means a step of
    0.3 sd away only the step's ``eps * 1e4 * 0.3`` is lost, and about the
    new means nothing.
    """
    ct = get_covariance_type(covariance_type)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((60, D)) + 1e4 * np.array([1.0, -1.0, 0.5, 2.0])
    resp = rng.dirichlet(np.ones(K), size=60)
    nk, means, cov = _full_scatter(X, resp, 1e-6)
    counts = resp.sum(axis=0)
    first = resp.T @ X
    o = {
        "zero": np.zeros((K, D)),
        "new means": means,
        "shifted means": means + rng.normal(0.0, 0.3, (K, D)),
    }[origin]
    second = ct.second_moments(X, resp, o)
    got = ct.covariances_from_moments(
        second, first - counts[:, None] * o, counts, means - o, nk, 1e-6
    )
    want = _reduce(covariance_type, nk, cov)
    rtol = {"zero": 1e-4, "new means": 1e-12, "shifted means": 1e-10}[origin]
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())


# ----------------------------------------------------------- fused EM kernels


def _kernel_params(covariance_type, where, seed=0):
    """Centred data (rows, centre 0), means, precision factors and covariances."""
    k, d = 3, 4
    rng = np.random.default_rng(seed)
    cov = _random_covariances(covariance_type, k, d, seed)
    pc = _compute_precision_cholesky(cov, covariance_type)
    offset = {"near": 2.0, "far": 1e5}[where]
    means = rng.standard_normal((k, d)) * offset
    rows = means[rng.integers(0, k, 300)] + rng.standard_normal((300, d))
    return rows, means, pc, cov


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("where", ["near", "far"])
def test_em_kernel_chooses_design_near_and_centred_far(covariance_type, where):
    rows, means, pc, cov = _kernel_params(covariance_type, where)
    kernel = _em_kernel(covariance_type, means, pc, np.log(np.full(3, 1 / 3)), cov)
    centred = isinstance(kernel, _CENTRED[covariance_type])
    assert centred == (where == "far")


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_em_kernel_centres_nearly_collinear_features(covariance_type):
    """Means at the centre, but correlation 1 - 1e-9: the expansion would cancel."""
    k, d = 3, 2
    base = np.array([[1e4, 1e4 - 1e-5], [1e4 - 1e-5, 1e4]])
    cov = np.broadcast_to(base, (k, d, d)) if covariance_type == "full" else base
    pc = _compute_precision_cholesky(np.array(cov), covariance_type)
    means = np.zeros((k, d))
    kernel = _em_kernel(covariance_type, means, pc, np.zeros(k), np.array(cov))
    assert isinstance(kernel, _CENTRED[covariance_type])


def _run_kernel(kernel, rows, resp, chunk):
    """Weighted log densities and the M-step statistics, chunk by chunk."""
    kernel.allocate(chunk)
    out = []
    for start in range(0, rows.shape[0], chunk):
        lp, row_term = kernel.log_prob(rows[start : start + chunk], np.zeros(4))
        lp = lp.T.copy()
        out.append(lp if row_term is None else lp + row_term[:, None])
        kernel.accumulate(resp[start : start + chunk].T.copy())
    return np.concatenate(out), kernel.moments()


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("where", ["near", "far"])
@pytest.mark.parametrize("family", ["design", "centred"])
def test_em_kernels_match_log_gaussian_prob_and_two_pass_moments(
    covariance_type, where, family
):
    """Both kernel families against the direct forms, in chunks of 70 rows.

    Designs far from the centre are the one expected failure (shown by the
    tolerance they would need), so they are skipped.
    """
    if family == "design" and where == "far":
        pytest.skip("the design cancels far from the centre (why kernels switch)")
    rows, means, pc, cov = _kernel_params(covariance_type, where)
    weights = np.array([0.2, 0.3, 0.5])
    make = {"design": _DESIGNS, "centred": _CENTRED}[family][covariance_type]
    kernel = make(means, pc, np.log(weights))
    resp = np.random.default_rng(5).dirichlet(np.ones(3), size=rows.shape[0])
    lp, moments = _run_kernel(kernel, rows, resp, chunk=70)
    want = log_gaussian_prob(rows, means, pc, covariance_type) + np.log(weights)
    _close(lp, want, 1e-11)
    counts, first, second, origin = moments
    nk = counts + 10 * np.finfo(float).eps
    new_means = first / nk[:, None]
    if origin is None:
        u, shift = first, new_means
    else:
        u, shift = first - counts[:, None] * origin, new_means - origin
    ct = get_covariance_type(covariance_type)
    if second is None:  # tied design: sum x x^T, computed once per run
        second = ct.constant_moments(rows)
    got = ct.covariances_from_moments(second, u, counts, shift, nk, 1e-6)
    nk_sk, means_sk, cov_sk = _full_scatter(rows, resp, 1e-6)
    _close(new_means, means_sk, 1e-12)
    _close(got, _reduce(covariance_type, nk_sk, cov_sk), 1e-11)
