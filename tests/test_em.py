"""Tests of the EM estimator (bayes_gmm.em); sklearn's GaussianMixture is the oracle.

Most comparisons start both implementations from the *same* parameters
(``weights_init``, ``means_init`` and ``precisions_init`` taken from a short
scikit-learn fit) and run a fixed number of iterations (``tol=0``), so that
the two must agree to rounding error whatever their starting strategies.
"""

import functools
import itertools
import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp
from sklearn.base import clone
from sklearn.datasets import load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
from sklearn.exceptions import NotFittedError
from sklearn.mixture import GaussianMixture
from sklearn.mixture._gaussian_mixture import (
    _compute_precision_cholesky,
    _estimate_gaussian_parameters,
    _estimate_log_gaussian_prob,
)
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from bayes_gmm import ConvergenceWarning, GaussianMixtureEM, load_faithful, make_mixture
from bayes_gmm.em import INIT_PARAMS, MixtureParams, e_step, m_step, run_em

TYPES = ["full", "tied", "diag", "spherical"]
FITTED = ["weights_", "means_", "covariances_", "precisions_cholesky_"]


# ------------------------------------------------------------------ helpers


@functools.cache
def _dataset(name):
    """Small real and synthetic data sets (read-only arrays, cached)."""
    if name == "faithful":
        X = load_faithful().to_numpy(dtype=float)
    elif name == "iris":
        X = load_iris().data
    elif name == "wine":
        X = load_wine().data
    elif name == "mix5":
        X = make_mixture(300, 3, 5, separation=3.0, random_state=7)[0]
    elif name == "separated":  # three tight, far apart, similar-scale blobs
        X = make_mixture(240, 3, 2, separation=12.0, random_state=3)[0]
    else:  # pragma: no cover
        raise KeyError(name)
    X = np.ascontiguousarray(X, dtype=float)
    X.setflags(write=False)
    return X


_ULP = np.finfo(float).eps


def _assert_rel(actual, desired, rtol=1e-8, what=""):
    """Relative agreement entry by entry.

    Entries within 100 ulp of the array's largest entry (e.g. off-diagonal
    zeros of a precision factor) are compared on that scale instead, as no
    floating-point computation resolves them better.
    """
    actual = np.asarray(actual, dtype=float)
    desired = np.asarray(desired, dtype=float)
    assert actual.shape == desired.shape, what
    scale = np.max(np.abs(desired)) if desired.size else 0.0
    np.testing.assert_allclose(
        actual, desired, rtol=rtol, atol=100 * _ULP * scale, err_msg=what
    )


def _assert_same_fit(ours, sk, rtol=1e-8, history=True):
    for name in FITTED:
        _assert_rel(getattr(ours, name), getattr(sk, name), rtol, name)
    _assert_rel(ours.lower_bound_, sk.lower_bound_, rtol, "lower_bound_")
    if history:
        _assert_rel(ours.lower_bounds_, sk.lower_bounds_, rtol, "lower_bounds_")
    assert ours.n_iter_ == sk.n_iter_
    assert ours.converged_ == sk.converged_


def _quiet_sklearn(model, X):
    """Fit a sklearn model, ignoring its ConvergenceWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SklearnConvergenceWarning)
        return model.fit(X)


def _sklearn_start(X, n_components, covariance_type, n_iter=2, seed=0):
    """Initial parameters taken from a short scikit-learn fit."""
    sk = _quiet_sklearn(
        GaussianMixture(
            n_components,
            covariance_type=covariance_type,
            max_iter=n_iter,
            tol=0.0,
            random_state=seed,
        ),
        X,
    )
    return {
        "weights_init": sk.weights_,
        "means_init": sk.means_,
        "precisions_init": sk.precisions_,
    }


def _fit_both(X, n_components, covariance_type, init, max_iter=10, **kwargs):
    """Ours (expecting a ConvergenceWarning) and sklearn from the same start."""
    kw = dict(
        covariance_type=covariance_type, tol=0.0, max_iter=max_iter, **init, **kwargs
    )
    ours = GaussianMixtureEM(n_components, **kw)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        ours.fit(X)
    sk = _quiet_sklearn(GaussianMixture(n_components, **kw), X)
    return ours, sk


def _as_sklearn(gm):
    """A sklearn GaussianMixture holding exactly our fitted parameters."""
    sk = GaussianMixture(gm.n_components, covariance_type=gm.covariance_type)
    for name in [*FITTED, "precisions_", "converged_", "n_iter_", "lower_bound_"]:
        setattr(sk, name, getattr(gm, name))
    sk.n_features_in_ = gm.n_features_in_
    return sk


def _expand(covariance_type, cov, k, d):
    """(K, D, D) covariance matrices from the EM shape (written independently)."""
    if covariance_type == "full":
        return cov
    if covariance_type == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return cov[:, None, None] * np.eye(d)


def _faithful_fit(covariance_type, n_components=3):
    return GaussianMixtureEM(
        n_components, covariance_type=covariance_type, random_state=0
    ).fit(_dataset("faithful"))


# ------------------------------------------------ scikit-learn compatibility


@parametrize_with_checks(
    [GaussianMixtureEM(covariance_type=t) for t in TYPES]
    + [GaussianMixtureEM(n_components=2, init_params="random_from_data")]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_clone_gives_unfitted_copy_with_same_params():
    X = _dataset("faithful")
    init = _sklearn_start(X, 2, "diag")
    gm = GaussianMixtureEM(2, covariance_type="diag", tol=1e-4, **init).fit(X)
    cloned = clone(gm)
    assert not hasattr(cloned, "weights_")
    params, cloned_params = gm.get_params(), cloned.get_params()
    assert params.keys() == cloned_params.keys()
    for key, value in params.items():
        np.testing.assert_array_equal(cloned_params[key], value)
    # The clone fits to the same solution as sklearn from the same start.
    sk = GaussianMixture(2, covariance_type="diag", tol=1e-4, **init).fit(X)
    _assert_same_fit(cloned.fit(X), sk)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_pipeline_with_standard_scaler_matches_sklearn(covariance_type):
    X = _dataset("faithful")
    init = _sklearn_start(StandardScaler().fit_transform(X), 2, covariance_type)
    kw = dict(covariance_type=covariance_type, tol=0.0, max_iter=8, **init)
    ours = make_pipeline(StandardScaler(), GaussianMixtureEM(2, **kw))
    sk = make_pipeline(StandardScaler(), GaussianMixture(2, **kw))
    with pytest.warns(ConvergenceWarning):
        ours.fit(X)
    _quiet_sklearn(sk, X)
    X_new = X[::7] + 0.25
    _assert_rel(ours.score_samples(X_new), sk.score_samples(X_new))
    _assert_rel(ours.score(X_new), sk.score(X_new))
    _assert_rel(ours.predict_proba(X_new), sk.predict_proba(X_new))
    np.testing.assert_array_equal(ours.predict(X_new), sk.predict(X_new))


def test_grid_search_picks_true_k_like_sklearn():
    X = _dataset("separated")
    grid = {"n_components": [1, 2, 3, 4, 5]}
    ours = GridSearchCV(GaussianMixtureEM(random_state=0), grid, cv=3).fit(X)
    sk = GridSearchCV(GaussianMixture(random_state=0), grid, cv=3).fit(X)
    assert sk.best_params_["n_components"] == 3  # the oracle agrees with the truth
    assert ours.best_params_["n_components"] == 3
    # score is the mean held-out log-likelihood; with K = 1 and the true K
    # both reach the same optimum (K = 2 has several, one per merged pair).
    np.testing.assert_allclose(
        ours.cv_results_["mean_test_score"][[0, 2]],
        sk.cv_results_["mean_test_score"][[0, 2]],
        atol=2e-3,
    )
    np.testing.assert_allclose(ours.best_score_, sk.best_score_, atol=2e-3)


# ----------------------------------------- same start, same iterations as sklearn


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("dataset", ["faithful", "iris", "mix5"])
def test_fixed_iterations_match_sklearn(dataset, covariance_type):
    X = _dataset(dataset)
    init = _sklearn_start(X, 3, covariance_type)
    ours, sk = _fit_both(X, 3, covariance_type, init, max_iter=10)
    _assert_same_fit(ours, sk)
    assert len(ours.lower_bounds_) == 10
    _assert_rel(ours.precisions_, sk.precisions_, what="precisions_")


@pytest.mark.parametrize("covariance_type", TYPES)
def test_fixed_iterations_match_sklearn_in_chunks(covariance_type):
    # 272 rows in chunks of 50: five full chunks and a partial one.
    X = _dataset("faithful")
    init = _sklearn_start(X, 3, covariance_type)
    _, sk = _fit_both(X, 3, covariance_type, init, max_iter=6)
    chunked = GaussianMixtureEM(
        3, covariance_type=covariance_type, tol=0.0, max_iter=6, chunk_size=50, **init
    )
    with pytest.warns(ConvergenceWarning):
        chunked.fit(X)
    _assert_same_fit(chunked, sk)


def _far_apart_clusters():
    """Two tight clusters 1e4 standard deviations either side of the data mean."""
    rng = np.random.default_rng(0)
    return np.concatenate(
        [rng.normal(-1e4, 1.0, (100, 2)), rng.normal(1e4, 1.0, (100, 2))]
    )


def _as_full(covariance_type, cov, nk):
    """scikit-learn's full-type covariances reduced to ``covariance_type``.

    (K, D, D) matrices that hold ``reg_covar`` on their diagonals; the result
    keeps it (the mean of ``C_k + r I`` is the mean of ``C_k`` plus ``r I``).
    """
    if covariance_type == "full":
        return cov
    if covariance_type == "tied":
        return np.tensordot(nk / nk.sum(), cov, axes=1)
    diag = np.diagonal(cov, axis1=1, axis2=2)
    return diag if covariance_type == "diag" else diag.mean(axis=1)


def _two_pass_em(X, init, covariance_type, n_iter, reg_covar=1e-6):
    """EM by scikit-learn's full-covariance estimators, reduced to the type.

    scikit-learn's full M-step centres on each component's mean before
    squaring and its full E-step multiplies ``x - mu`` by the precision
    factor, so nothing cancels however far the components are from the
    data mean; its diag, spherical and tied M-steps use the uncentred
    ``E[x x^T] - mu mu^T``. Returns the fitted attributes and the history.
    """
    k, d = init["means_init"].shape
    weights, means = init["weights_init"], init["means_init"]
    prec = _expand(covariance_type, init["precisions_init"], k, d)
    pc = _compute_precision_cholesky(np.linalg.inv(prec), "full")  # oracle may invert
    history = []
    for _ in range(n_iter):
        log_prob = _estimate_log_gaussian_prob(X, means, pc, "full") + np.log(weights)
        log_norm = logsumexp(log_prob, axis=1)
        history.append(log_norm.mean())
        resp = np.exp(log_prob - log_norm[:, None])
        nk, means, cov = _estimate_gaussian_parameters(X, resp, reg_covar, "full")
        cov = _as_full(covariance_type, cov, nk)
        weights = nk / nk.sum()
        pc = _compute_precision_cholesky(_expand(covariance_type, cov, k, d), "full")
    return {
        "weights_": weights,
        "means_": means,
        "covariances_": cov,
        "precisions_cholesky_": _compute_precision_cholesky(cov, covariance_type),
        "lower_bounds_": np.array(history),
    }


@pytest.mark.parametrize("covariance_type", TYPES)
def test_far_apart_tight_clusters_match_sklearn(covariance_type):
    """Component spread tiny next to the distance from the data mean.

    The uncentred formula ``E[x x^T] - mu mu^T`` cancels catastrophically
    here (about ``eps (distance / sd)^2 = 2e-8`` relative error, more after
    three iterations). The oracle is EM by scikit-learn's two-pass (full)
    estimators reduced to the type; for ``full`` that is scikit-learn's
    GaussianMixture itself. For the other types GaussianMixture uses the
    uncentred formula and is itself off by 5e-8 (spherical) to 6e-7 (tied)
    on this data, so it is held only to 1e-5.
    """
    X = _far_apart_clusters()
    init = _sklearn_start(X, 2, covariance_type, n_iter=1)
    ours, sk = _fit_both(X, 2, covariance_type, init, max_iter=3)
    oracle = _two_pass_em(X, init, covariance_type, n_iter=3)
    for name, want in oracle.items():
        _assert_rel(getattr(ours, name), want, 1e-12, name)
    _assert_rel(ours.lower_bound_, oracle["lower_bounds_"][-1], 1e-12)
    _assert_same_fit(ours, sk, rtol=1e-8 if covariance_type == "full" else 1e-5)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_e_and_m_step_far_from_the_data_mean_match_two_pass(covariance_type):
    """The standalone steps do not cancel either (per-sample densities too)."""
    X = _far_apart_clusters()
    k, d = 2, X.shape[1]
    # Each cluster mostly in its own component (a share of 1e-9 of the other
    # adds up to 0.4 to the variances: both stay well conditioned).
    other = np.random.default_rng(1).uniform(0.0, 1e-9, X.shape[0])
    resp = np.column_stack([1.0 - other, other])
    resp[100:] = resp[100:, ::-1]
    p = m_step(X, resp, covariance_type, 1e-6)
    nk, means, cov = _estimate_gaussian_parameters(X, resp, 1e-6, "full")
    want = _as_full(covariance_type, cov, nk)
    _assert_rel(p.means, means, 1e-12)
    _assert_rel(p.covariances, want, 1e-12)
    # E-step under those parameters against the full form x P - mu P (which
    # has an error of about eps |x| |P| = 2e-12 here; expanding the square
    # about the data mean, as before, gave 3e-8).
    pc_full = _compute_precision_cholesky(_expand(covariance_type, want, k, d), "full")
    log_prob = _estimate_log_gaussian_prob(X, means, pc_full, "full")
    log_prob += np.log(p.weights)
    log_norm, log_resp = e_step(X, p)
    _assert_rel(log_norm, logsumexp(log_prob, axis=1), 1e-10)
    _assert_rel(np.exp(log_resp), np.exp(log_prob - log_norm[:, None]), 1e-10)


@pytest.mark.parametrize(
    ("covariance_type", "given"),
    [
        ("full", ("precisions",)),
        ("tied", ("precisions",)),
        ("diag", ("weights",)),
        ("spherical", ("weights", "precisions")),
        ("full", ("weights", "precisions")),
        ("tied", ("weights",)),
    ],
)
def test_partial_inits_match_sklearn(covariance_type, given):
    """Only some inits given, the rest from a k-means start.

    The semantics are comparable when the given inits do not depend on the
    order of the components (equal weights, the same precision for every
    component) and k-means finds the same partition for both (three far
    apart blobs): sklearn's k-means runs on raw features and ours on
    standardised ones.
    """
    X = _dataset("separated")
    k, d = 3, X.shape[1]
    prec = {
        "full": np.broadcast_to(np.diag([1.5, 0.7]), (k, d, d)),
        "tied": np.diag([1.5, 0.7]),
        "diag": np.full((k, d), 1.2),
        "spherical": np.full(k, 0.9),
    }[covariance_type]
    init = {}
    if "weights" in given:
        init["weights_init"] = np.full(k, 1 / k)
    if "precisions" in given:
        init["precisions_init"] = prec
    ours, sk = _fit_both(X, k, covariance_type, init, max_iter=5, random_state=0)
    # Components may be numbered differently: order both by the first mean.
    o, s = np.argsort(ours.means_[:, 0]), np.argsort(sk.means_[:, 0])
    for name in FITTED:
        a, b = getattr(ours, name), getattr(sk, name)
        if covariance_type != "tied" or name in ("weights_", "means_"):
            a, b = a[o], b[s]
        _assert_rel(a, b, what=name)
    _assert_rel(ours.lower_bounds_, sk.lower_bounds_, what="lower_bounds_")


@pytest.mark.parametrize("covariance_type", TYPES)
def test_m_step_matches_sklearn(covariance_type):
    X = _dataset("iris")
    resp = np.random.default_rng(0).dirichlet(np.ones(4), size=X.shape[0])
    for chunk in (None, 17):  # the same result in one block or in chunks
        p = m_step(X, resp, covariance_type, 1e-6, chunk_size=chunk)
        nk, means, cov = _estimate_gaussian_parameters(X, resp, 1e-6, covariance_type)
        _assert_rel(p.weights, nk / X.shape[0])
        _assert_rel(p.means, means)
        _assert_rel(p.covariances, cov)
        _assert_rel(
            p.precisions_cholesky, _compute_precision_cholesky(cov, covariance_type)
        )


@pytest.mark.parametrize("covariance_type", TYPES)
def test_e_step_matches_sklearn(covariance_type):
    gm = _faithful_fit(covariance_type)
    sk = _as_sklearn(gm)
    X = _dataset("faithful")
    params = MixtureParams(
        gm.weights_,
        gm.means_,
        gm.covariances_,
        gm.precisions_cholesky_,
        covariance_type,
    )
    for chunk in (None, 30):
        log_norm, log_resp = e_step(X, params, chunk_size=chunk)
        sk_norm, sk_resp = sk._estimate_log_prob_resp(X)
        _assert_rel(log_norm, sk_norm, 1e-10)
        # Compare responsibilities (log ones of ~-700 are rounding-level).
        _assert_rel(np.exp(log_resp), np.exp(sk_resp), 1e-10)


# ------------------------------------------------------- criteria and scores


@pytest.mark.parametrize("covariance_type", TYPES)
def test_scores_and_criteria_match_sklearn(covariance_type):
    gm = _faithful_fit(covariance_type)
    sk = _as_sklearn(gm)
    X = _dataset("faithful")
    rng = np.random.default_rng(1)
    X_new = X[rng.choice(len(X), 50)] + rng.normal(0, [0.2, 3.0], (50, 2))
    for data in (X, X_new):
        _assert_rel(gm.score_samples(data), sk.score_samples(data), 1e-10)
        _assert_rel(gm.score(data), sk.score(data), 1e-10)
        _assert_rel(gm.predict_proba(data), sk.predict_proba(data), 1e-10)
        np.testing.assert_array_equal(gm.predict(data), sk.predict(data))
        _assert_rel(gm.aic(data), sk.aic(data), 1e-10)
        _assert_rel(gm.bic(data), sk.bic(data), 1e-10)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_icl_is_bic_minus_twice_log_max_responsibility(covariance_type):
    gm = _faithful_fit(covariance_type)
    sk = _as_sklearn(gm)
    X = _dataset("faithful")
    # ICL = BIC - 2 sum_n log max_k tau_nk (mclust's definition, BIC's scale).
    expected = sk.bic(X) - 2.0 * np.sum(np.log(sk.predict_proba(X).max(axis=1)))
    _assert_rel(gm.icl(X), expected, 1e-10)
    assert gm.icl(X) >= gm.bic(X)


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("n_components", [1, 2, 4])
@pytest.mark.parametrize("dataset", ["faithful", "mix5"])
def test_n_parameters_matches_sklearn(dataset, covariance_type, n_components):
    X = _dataset(dataset)
    gm = GaussianMixtureEM(
        n_components, covariance_type=covariance_type, max_iter=2, tol=1e9
    ).fit(X)
    sk = _as_sklearn(gm)
    assert gm.n_parameters() == sk._n_parameters()


# ------------------------------------------------------- properties of EM


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_components=st.integers(1, 4),
    n_features=st.integers(1, 3),
    covariance_type=st.sampled_from(TYPES),
    init_params=st.sampled_from(INIT_PARAMS),
)
def test_log_likelihood_history_never_decreases(
    seed, n_components, n_features, covariance_type, init_params
):
    """EM's monotonicity theorem, for the unregularised likelihood.

    ``reg_covar=0``, because with a ridge the M-step no longer maximises the
    likelihood (scikit-learn's history then also dips by ~1e-9). A component
    that collapses onto fewer than D + 1 points makes the likelihood
    unbounded and its history rounding noise; such draws are discarded.
    """
    rng = np.random.default_rng(seed)
    d, k = n_features, n_components
    n = 10 * k * (d + 1) + int(rng.integers(0, 40))
    X = rng.standard_normal((n, d)) * rng.uniform(0.2, 3.0, d)
    X += rng.integers(0, 3, size=(n, 1)) * rng.uniform(0.0, 4.0, d)
    gm = GaussianMixtureEM(
        k,
        covariance_type=covariance_type,
        init_params=init_params,
        tol=0.0,
        max_iter=30,
        reg_covar=0.0,
        random_state=seed,
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(X)
    except ValueError:  # pragma: no cover - a collapsed component
        assume(False)
    assume(np.min(gm.weights_) * n >= d + 1)
    lb = np.asarray(gm.lower_bounds_)
    assert len(lb) == 30
    # Tolerance 1e-10 relative (absolute below |lb| = 1).
    assert np.all(np.diff(lb) >= -1e-10 * np.maximum(1.0, np.abs(lb[1:])))


@pytest.mark.parametrize("covariance_type", TYPES)
def test_row_permutation_does_not_change_the_optimum(covariance_type):
    X = _dataset("mix5")
    perm = np.random.default_rng(3).permutation(X.shape[0])
    init = _sklearn_start(X, 3, covariance_type)
    kw = dict(covariance_type=covariance_type, tol=1e-10, max_iter=500, **init)
    a = GaussianMixtureEM(3, **kw).fit(X)
    b = GaussianMixtureEM(3, **kw).fit(X[perm])
    assert a.converged_ and b.converged_
    for name in FITTED:
        _assert_rel(getattr(b, name), getattr(a, name), 1e-8, name)
    _assert_rel(b.lower_bound_, a.lower_bound_, 1e-12)
    np.testing.assert_array_equal(b.predict(X[perm]), a.predict(X)[perm])
    # And it is sklearn's optimum.
    sk = GaussianMixture(3, **kw).fit(X[perm])
    _assert_rel(b.lower_bound_, sk.lower_bound_, 1e-12)


# --------------------------------------------------------------- sampling


@pytest.mark.parametrize("covariance_type", TYPES)
def test_sample_reproduces_fitted_parameters(covariance_type):
    """Weights, means and covariances within 5 Monte Carlo standard errors."""
    gm = _faithful_fit(covariance_type)
    n = 200_000
    X, y = gm.sample(n)
    k, d = gm.means_.shape
    assert X.shape == (n, d) and y.shape == (n,)
    w = gm.weights_
    counts = np.bincount(y, minlength=k)
    assert np.all(np.abs(counts / n - w) < 5 * np.sqrt(w * (1 - w) / n))
    cov = _expand(covariance_type, gm.covariances_, k, d)
    for j in range(k):  # moments of each component's draws
        xj = X[y == j]
        nj = xj.shape[0]
        var = np.diag(cov[j])
        assert np.all(np.abs(xj.mean(axis=0) - gm.means_[j]) < 5 * np.sqrt(var / nj))
        s = np.cov(xj.T, bias=True)
        # Var of a sample covariance entry (Gaussian): (S_ii S_jj + S_ij^2) / n.
        se = np.sqrt((np.outer(var, var) + cov[j] ** 2) / nj)
        assert np.all(np.abs(s - cov[j]) < 5 * se)


def test_sample_labels_are_shuffled():
    gm = _faithful_fit("full")
    n = 5000
    _, y = gm.sample(n)
    assert np.any(np.diff(y) < 0)  # not grouped by component (as sklearn's are)
    # Random order: P(y_i == y_{i+1}) = sum_k w_k^2.
    p = np.sum(gm.weights_**2)
    same = np.mean(y[1:] == y[:-1])
    assert abs(same - p) < 5 * np.sqrt(p * (1 - p) / (n - 1))


def test_sample_reproducible_with_fixed_random_state():
    gm = _faithful_fit("diag")
    X1, y1 = gm.sample(50)
    X2, y2 = gm.sample(50)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    X3, _ = clone(gm).set_params(random_state=1).fit(_dataset("faithful")).sample(50)
    assert not np.array_equal(X1, X3)
    gm.set_params(random_state=None)
    assert not np.array_equal(gm.sample(50)[0], gm.sample(50)[0])


def test_sample_rejects_bad_n_samples():
    gm = _faithful_fit("spherical")
    with pytest.raises(ValueError, match="'n_samples' must be >= 1"):
        gm.sample(0)


# ---------------------------------------------------------------- n_init

N_INIT_DATASETS = ["faithful", "iris", "wine"]
# Cells where sklearn (k-means on raw features, random_state=0) stops in an
# optimum more than 1e-3 below ours, not a degenerate one (measured with
# benchmarks/optima.py, results/optima.md).
SKLEARN_POOR = [
    ("faithful", "full", 4),
    ("iris", "diag", 3),
    ("wine", "tied", 2),
    ("wine", "spherical", 4),
    ("faithful", "full", 3),
    ("faithful", "full", 6),
    ("faithful", "tied", 6),
    ("faithful", "spherical", 5),
    ("iris", "full", 4),
    ("iris", "full", 5),
    ("iris", "tied", 5),
    ("iris", "tied", 6),
    ("wine", "full", 2),
    ("wine", "full", 3),
    ("wine", "tied", 3),
    ("wine", "tied", 4),
    ("wine", "tied", 5),
    ("wine", "tied", 6),
    ("wine", "diag", 2),
    ("wine", "diag", 5),
    ("wine", "diag", 6),
    ("wine", "spherical", 5),
    ("wine", "spherical", 6),
]
FAST_POOR = set(SKLEARN_POOR[:4])  # run without -m slow
# Cells where our n_init=10 fit (random_state=0) ends in a worse optimum than
# sklearn's, not a degenerate one (measured as above): none.
KNOWN_SHORTFALLS: dict[tuple, str] = {
    ("faithful", "diag", 6): "the budgeted search finds the basin of "
    "-4.03758 in 3 of random_state 0..4; at 0 it ends at -4.03905 (0.0015 per "
    "sample below), where scikit-learn's best of 10 polishes to -4.03758",
}


def _polished(X, model, covariance_type):
    """The optimum a fit lies in: EM (sklearn's) from its parameters to tol 1e-10.

    Both fits are compared after polishing, so the test measures which optimum
    the starts found, not where tol=1e-3 happened to stop the iterations.
    """
    return GaussianMixture(
        model.weights_.shape[0],
        covariance_type=covariance_type,
        weights_init=model.weights_,
        means_init=model.means_,
        precisions_init=model.precisions_,
        tol=1e-10,
        max_iter=20_000,
    ).fit(X)


def _spurious(model, X):
    """A collapsed component (benchmarks/optima.py's definition of degenerate).

    Its smallest covariance eigenvalue in units of the data variances is
    below 1e-3, or it holds fewer points than its covariance needs (D + 1
    for full, 2 for diag and spherical): the unbounded likelihood's road to
    infinity, which the default starts set aside.
    """
    k, d = model.means_.shape
    cov = _expand(model.covariance_type, model.covariances_, k, d)
    sd = X.std(axis=0)
    min_eig = np.linalg.eigvalsh(cov / sd[:, None] / sd[None, :])[:, 0].min()
    floor = {"full": d + 1, "tied": 0, "diag": 2, "spherical": 2}
    min_nk = model.weights_.min() * X.shape[0]
    return bool(min_eig < 1e-3 or min_nk < floor[model.covariance_type])


def _best_of_ten(dataset, covariance_type, n_components):
    """Polished optima of ours and sklearn's n_init=10 fits, and sklearn's."""
    X = _dataset(dataset)
    ours = GaussianMixtureEM(
        n_components, covariance_type=covariance_type, n_init=10, random_state=0
    ).fit(X)
    sk = _quiet_sklearn(
        GaussianMixture(
            n_components, covariance_type=covariance_type, n_init=10, random_state=0
        ),
        X,
    )
    assert ours.init_lower_bounds_.shape == (10,)
    assert ours.lower_bound_ == pytest.approx(ours.init_lower_bounds_.max(), abs=0)
    sk = _polished(X, sk, covariance_type)
    return _polished(X, ours, covariance_type).lower_bound_, sk.lower_bound_, sk


def _n_init_cells(cells, slow):
    params = []
    for cell in cells:
        marks = [pytest.mark.slow] if slow and cell not in FAST_POOR else []
        if cell in KNOWN_SHORTFALLS:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_SHORTFALLS[cell]))
        params.append(pytest.param(*cell, marks=marks, id="-".join(map(str, cell))))
    return params


@pytest.mark.parametrize(
    ("dataset", "covariance_type", "n_components"), _n_init_cells(SKLEARN_POOR, True)
)
def test_n_init_strictly_better_where_sklearn_is_poor(
    dataset, covariance_type, n_components
):
    ours, sk, _ = _best_of_ten(dataset, covariance_type, n_components)
    assert ours > sk + 1e-3


@pytest.mark.parametrize(
    ("dataset", "covariance_type", "n_components"),
    _n_init_cells(
        [
            cell
            for cell in itertools.product(N_INIT_DATASETS, TYPES, range(1, 7))
            if cell not in SKLEARN_POOR
        ],
        slow=True,
    ),
)
def test_n_init_at_least_as_good_as_sklearn(dataset, covariance_type, n_components):
    ours, sk, sk_fit = _best_of_ten(dataset, covariance_type, n_components)
    if ours < sk - 1e-6:
        # Only where sklearn climbs to a spurious optimum (a component on a
        # handful of points), which the default starts set aside.
        assert _spurious(sk_fit, _dataset(dataset)), (ours, sk)


def test_n_init_keeps_best_start():
    X = _dataset("faithful")
    gm = GaussianMixtureEM(4, n_init=5, random_state=0).fit(X)
    assert gm.init_lower_bounds_.shape == (5,)
    assert gm.lower_bound_ == gm.init_lower_bounds_.max()
    # The kept parameters are those whose history ends at lower_bound_.
    assert gm.lower_bounds_[-1] == gm.lower_bound_
    # Starts differ (each gets its own seed).
    assert np.unique(np.round(gm.init_lower_bounds_, 8)).size > 1


# ------------------------------------------------------------- warm start


@pytest.mark.parametrize("covariance_type", TYPES)
def test_warm_start_continues_like_sklearn(covariance_type):
    X = _dataset("faithful")
    init = _sklearn_start(X, 3, covariance_type)
    kw = dict(
        covariance_type=covariance_type,
        tol=0.0,
        max_iter=4,
        warm_start=True,
        n_init=3,
        **init,
    )
    ours, sk = GaussianMixtureEM(3, **kw), GaussianMixture(3, **kw)
    for _ in range(3):
        with pytest.warns(ConvergenceWarning):
            ours.fit(X)
        _quiet_sklearn(sk, X)
        _assert_same_fit(ours, sk)
    # Three warm fits of 4 iterations are one cold run of 12.
    cold = GaussianMixtureEM(3, **{**kw, "max_iter": 12, "warm_start": False})
    with pytest.warns(ConvergenceWarning):
        cold.fit(X)
    for name in FITTED:
        _assert_rel(getattr(ours, name), getattr(cold, name), 1e-10, name)
    _assert_rel(ours.lower_bounds_, cold.lower_bounds_[-4:], 1e-10)


def test_warm_start_convergence_check_like_sklearn():
    X = _dataset("faithful")
    init = _sklearn_start(X, 2, "full")
    kw = dict(warm_start=True, **init)
    ours, sk = GaussianMixtureEM(2, **kw), GaussianMixture(2, **kw)
    for _ in range(3):
        ours.fit(X)
        sk.fit(X)
        assert ours.converged_ and sk.converged_
        _assert_same_fit(ours, sk)


def test_run_em_measures_the_first_change_from_previous_lower_bound():
    X = _dataset("faithful")
    gm = GaussianMixtureEM(2, random_state=0).fit(X)
    start = MixtureParams(
        gm.weights_, gm.means_, gm.covariances_, gm.precisions_cholesky_, "full"
    )
    cold = run_em(X, start, tol=gm.tol)
    warm = run_em(X, start, tol=gm.tol, previous_lower_bound=gm.lower_bound_)
    assert cold.converged and cold.n_iter == 2  # the first change is infinite
    assert warm.converged and warm.n_iter == 1
    assert warm.lower_bounds == cold.lower_bounds[:1]
    # No iteration: the parameters and their bound are returned unchanged.
    idle = run_em(X, start, max_iter=0, previous_lower_bound=gm.lower_bound_)
    assert idle.lower_bound == gm.lower_bound_ and idle.n_iter == 0


# ------------------------------------------------ degenerate data, errors


@pytest.mark.parametrize("covariance_type", TYPES)
def test_empty_component_does_not_crash_and_matches_sklearn(covariance_type):
    X = _dataset("faithful")
    start = _sklearn_start(X, 2, covariance_type)
    extra_prec = {
        "full": np.eye(2)[None],
        "tied": None,
        "diag": np.ones((1, 2)),
        "spherical": np.ones(1),
    }[covariance_type]
    prec = start["precisions_init"]
    if extra_prec is not None:
        prec = np.concatenate([prec, extra_prec])
    init = {
        "weights_init": np.append(0.98 * start["weights_init"], 0.02),
        # A third component far from every point: no responsibility at all.
        "means_init": np.vstack([start["means_init"], [1e3, 1e4]]),
        "precisions_init": prec,
    }
    ours, sk = _fit_both(X, 3, covariance_type, init, max_iter=8)
    # The empty component's mean is arbitrary (ours: the data mean, sklearn's:
    # the origin), and with a shared (tied) covariance that decides whether
    # its weight stays at 1e-17 or 1e-14: compare the two live components.
    for name in FITTED:
        a, b = getattr(ours, name), getattr(sk, name)
        if covariance_type != "tied" or name in ("weights_", "means_"):
            a, b = a[:2], b[:2]
        _assert_rel(a, b, what=name)
    _assert_rel(ours.lower_bounds_, sk.lower_bounds_)
    assert ours.weights_[2] < 1e-12
    if covariance_type != "tied":  # the guard gives reg_covar, as sklearn's
        _assert_rel(ours.covariances_[2], sk.covariances_[2])
    assert np.all(np.isfinite(ours.means_))
    assert np.all(np.isfinite(ours.score_samples(X)))


@pytest.mark.parametrize("covariance_type", TYPES)
def test_collapsing_component_on_duplicated_points(covariance_type):
    """30 copies of one point: a component collapses onto it (Sigma -> reg I).

    The data are centred and the spike put at the origin, where both
    implementations compute a variance of 1e-6 exactly (away from it,
    scikit-learn's one-pass diag/spherical formula and our one-pass full/tied
    one lose digits, see test_far_apart_tight_clusters_match_sklearn).
    """
    faithful = _dataset("faithful")
    X = np.vstack([faithful - faithful.mean(axis=0), np.zeros((30, 2))])
    start = _sklearn_start(X, 2, covariance_type)
    prec_extra = {
        "full": 100 * np.eye(2)[None],
        "tied": None,
        "diag": np.full((1, 2), 100.0),
        "spherical": np.full(1, 100.0),
    }[covariance_type]
    prec = start["precisions_init"]
    if prec_extra is not None:
        prec = np.concatenate([prec, prec_extra])
    init = {
        "weights_init": np.append(0.9 * start["weights_init"], 0.1),
        "means_init": np.vstack([start["means_init"], [0.0, 0.0]]),
        "precisions_init": prec,
    }
    ours, sk = _fit_both(X, 3, covariance_type, init, max_iter=15)
    _assert_same_fit(ours, sk)
    if covariance_type != "tied":
        # Analytic limit: the spike's covariance is reg_covar on the diagonal.
        spike = _expand(covariance_type, ours.covariances_, 3, 2)[2]
        np.testing.assert_allclose(spike, 1e-6 * np.eye(2), rtol=1e-8, atol=1e-20)
        # The broad components keep ~1e-7 of the spike's points.
        assert ours.weights_[2] == pytest.approx(30 / X.shape[0], rel=1e-6)


def _with_constant_column(X, value=7.0):
    return np.column_stack([X[:, 0], np.full(X.shape[0], value), X[:, 1]])


@pytest.mark.parametrize("covariance_type", TYPES)
def test_constant_column_fits_thanks_to_reg_covar(covariance_type):
    # A zero column: sklearn's one-pass diag/tied formulas are exact there too.
    X = _with_constant_column(_dataset("faithful"), 0.0)
    init = _sklearn_start(X, 2, covariance_type)
    ours, sk = _fit_both(X, 2, covariance_type, init, max_iter=6)
    _assert_same_fit(ours, sk)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag"])
def test_constant_column_variance_is_reg_covar(covariance_type):
    """Analytic oracle: the column's variance is reg_covar, its covariances 0."""
    X = _with_constant_column(_dataset("faithful"), 7.0)
    gm = GaussianMixtureEM(
        2, covariance_type=covariance_type, reg_covar=1e-4, random_state=0
    ).fit(X)
    full = _expand(covariance_type, gm.covariances_, 2, 3)
    np.testing.assert_allclose(full[:, 1, 1], 1e-4, rtol=1e-10)
    np.testing.assert_allclose(full[:, 1, [0, 2]], 0.0, atol=1e-14)
    np.testing.assert_allclose(gm.means_[:, 1], 7.0, rtol=1e-14)
    assert np.all(np.isfinite(gm.score_samples(X)))


@pytest.mark.parametrize("covariance_type", TYPES)
def test_duplicated_column_fits_thanks_to_reg_covar(covariance_type):
    X = _dataset("faithful")[:, [0, 1, 1]]
    init = _sklearn_start(X, 2, covariance_type)
    ours, sk = _fit_both(X, 2, covariance_type, init, max_iter=6)
    # The covariances are singular up to reg_covar: condition ~1e8, so the
    # precisions agree to about cond * eps relative.
    for name in ("weights_", "means_", "covariances_"):
        _assert_rel(getattr(ours, name), getattr(sk, name), 1e-8, name)
    _assert_rel(ours.precisions_cholesky_, sk.precisions_cholesky_, 1e-6)
    _assert_rel(ours.lower_bounds_, sk.lower_bounds_, 1e-8)
    gm = GaussianMixtureEM(2, covariance_type=covariance_type, random_state=0).fit(X)
    assert np.all(np.isfinite(gm.score_samples(X)))


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag"])
def test_failed_cholesky_raises_value_error_with_remedies(covariance_type):
    X = _with_constant_column(_dataset("faithful"))
    gm = GaussianMixtureEM(2, covariance_type=covariance_type, reg_covar=0.0)
    with pytest.raises(ValueError, match=r"increase reg_covar \(now 0.0\)") as err:
        gm.fit(X)
    msg = str(err.value)
    assert "fewer components" in msg
    assert "standardise the features" in msg


def test_convergence_warning_when_max_iter_reached():
    X = _dataset("faithful")
    gm = GaussianMixtureEM(2, tol=0.0, max_iter=3, random_state=0)
    with pytest.warns(ConvergenceWarning, match="max_iter=3") as rec:
        gm.fit(X)
    assert issubclass(rec[0].category, SklearnConvergenceWarning)
    assert not gm.converged_ and gm.n_iter_ == 3 and len(gm.lower_bounds_) == 3
    with pytest.warns(SklearnConvergenceWarning):  # sklearn-style filters work
        gm.fit(X)


def test_no_convergence_warning_when_converged():
    X = _dataset("faithful")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gm = GaussianMixtureEM(2, random_state=0).fit(X)
    assert gm.converged_
    assert abs(gm.lower_bounds_[-1] - gm.lower_bounds_[-2]) < gm.tol


def test_convergence_warning_from_fit_predict_points_at_user_code():
    gm = GaussianMixtureEM(2, tol=0.0, max_iter=1, random_state=0)
    with pytest.warns(ConvergenceWarning) as rec:
        gm.fit_predict(_dataset("faithful"))
    assert rec[0].filename == __file__


def test_convergence_warning_from_fit_points_at_user_code():
    gm = GaussianMixtureEM(2, tol=0.0, max_iter=1, random_state=0)
    with pytest.warns(ConvergenceWarning) as rec:
        gm.fit(_dataset("faithful"))
    assert rec[0].filename == __file__


# ------------------------------------------------- attributes and names


@pytest.mark.parametrize("covariance_type", TYPES)
def test_fitted_attribute_shapes_match_sklearn(covariance_type):
    X = _dataset("mix5")
    gm = GaussianMixtureEM(3, covariance_type=covariance_type, random_state=0).fit(X)
    sk = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    for name in [*FITTED, "precisions_"]:
        assert getattr(gm, name).shape == getattr(sk, name).shape, name
    assert gm.n_features_in_ == sk.n_features_in_ == 5
    assert isinstance(gm.converged_, bool) and isinstance(gm.n_iter_, int)
    assert len(gm.lower_bounds_) == gm.n_iter_
    assert gm.lower_bound_ == gm.lower_bounds_[-1]
    assert not hasattr(gm, "feature_names_in_")


def test_feature_names_from_dataframe():
    df = load_faithful()
    gm = GaussianMixtureEM(2, random_state=0).fit(df)
    sk = GaussianMixture(2, random_state=0).fit(df)
    np.testing.assert_array_equal(gm.feature_names_in_, ["eruptions", "waiting"])
    np.testing.assert_array_equal(gm.feature_names_in_, sk.feature_names_in_)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        from_array = gm.score_samples(df.to_numpy(float))
    _assert_rel(gm.score_samples(df), from_array)
    with pytest.raises(ValueError, match="feature names should match"):
        gm.predict(df.rename(columns={"waiting": "wait"}))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        gm.predict(df.to_numpy())


# --------------------------------------------------------------- bad input


def test_nan_names_row_and_column_of_dataframe():
    df = load_faithful()
    df.iloc[17, 1] = np.nan
    df.iloc[40, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN at row 17, column 'waiting'"):
        GaussianMixtureEM(2).fit(df)


def test_inf_names_row_and_column_of_array():
    X = _dataset("faithful").copy()
    X[5, 0] = np.inf
    with pytest.raises(ValueError, match=r"infinity at row 5, column 0"):
        GaussianMixtureEM(2).fit(X)


def test_nan_at_predict_time_is_located():
    gm = _faithful_fit("full")
    X = _dataset("faithful")[:10].copy()
    X[3, 1] = np.nan
    for method in ("predict", "predict_proba", "score_samples", "score", "bic"):
        with pytest.raises(ValueError, match=r"NaN at row 3, column 1"):
            getattr(gm, method)(X)


def test_empty_data():
    with pytest.raises(ValueError, match=r"0 sample\(s\)"):
        GaussianMixtureEM(1).fit(np.empty((0, 2)))


def test_fewer_samples_than_components():
    X = _dataset("faithful")[:4]
    with pytest.raises(
        ValueError,
        match="Expected n_samples >= n_components but got n_components = 5, "
        "n_samples = 4",
    ):
        GaussianMixtureEM(5).fit(X)


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"n_components": 0}, ValueError, "'n_components' must be >= 1, got 0"),
        ({"n_components": -2}, ValueError, "'n_components' must be >= 1, got -2"),
        ({"n_components": 2.5}, TypeError, "'n_components' must be an int"),
        ({"tol": -1.0}, ValueError, "'tol' must be >= 0.0"),
        ({"reg_covar": -1e-6}, ValueError, "'reg_covar' must be >= 0.0"),
        ({"max_iter": -1}, ValueError, "'max_iter' must be >= 0"),
        ({"n_init": 0}, ValueError, "'n_init' must be >= 1"),
        (
            {"covariance_type": "ful"},
            ValueError,
            re.escape(
                "Invalid value for 'covariance_type': 'ful'. Valid options are "
                "['diag', 'full', 'spherical', 'tied']."
            ),
        ),
        (
            {"init_params": "kmeans++"},
            ValueError,
            re.escape(
                "Invalid value for 'init_params': 'kmeans++'. Valid options are "
                "['k-means++', 'kmeans', 'random', 'random_from_data']."
            ),
        ),
        (
            {"n_components": 2, "weights_init": [0.2, 0.2]},
            ValueError,
            "'weights_init' must be non-negative and sum to 1",
        ),
        (
            {"n_components": 2, "weights_init": [1.0]},
            ValueError,
            re.escape("'weights_init' must have shape (2,), got (1,)"),
        ),
        (
            {"n_components": 2, "means_init": np.zeros((2, 3))},
            ValueError,
            re.escape("'means_init' must have shape (2, 2), got (2, 3)"),
        ),
        (
            {"n_components": 2, "precisions_init": np.ones((2, 2))},
            ValueError,
            re.escape("'precisions_init' for covariance_type='full' must have shape"),
        ),
        (
            {"n_components": 2, "precisions_init": np.stack([np.eye(2), -np.eye(2)])},
            ValueError,
            "'precisions_init' must be symmetric positive definite",
        ),
        (
            {
                "n_components": 2,
                "covariance_type": "diag",
                "precisions_init": [[1.0, 1.0], [1.0, -1.0]],
            },
            ValueError,
            "'precisions_init' must be positive",
        ),
        ({"reg_covar": np.nan}, ValueError, "'reg_covar' must be a number, got nan"),
        ({"reg_covar": np.inf}, ValueError, "'reg_covar' must be finite, got inf"),
        ({"tol": np.nan}, ValueError, "'tol' must be a number, got nan"),
        (
            {"random_state": -1},
            ValueError,
            re.escape("random_state must be None, a non-negative int (a seed)"),
        ),
        (
            {"chunk_size": "a"},
            TypeError,
            "'chunk_size' must be a positive int or None, got 'a' of type str",
        ),
        (
            {"chunk_size": 0},
            ValueError,
            "'chunk_size' must be a positive int or None, got 0",
        ),
        (
            {"chunk_size": 2.5},
            TypeError,
            "'chunk_size' must be a positive int or None, got 2.5",
        ),
        ({"verbose_interval": 0}, ValueError, "'verbose_interval' must be >= 1"),
        ({"verbose": "yes"}, TypeError, "'verbose' must be an int or a bool"),
        (
            {"n_components": 2, "weights_init": [np.nan, 0.5]},
            ValueError,
            re.escape("'weights_init' contains NaN at index 0 (1 non-finite"),
        ),
        (
            {"n_components": 2, "means_init": [[2.0, np.nan], [4.0, 80.0]]},
            ValueError,
            re.escape("'means_init' contains NaN at index (0, 1) (1 non-finite"),
        ),
        (
            {"n_components": 2, "means_init": [[2.0, 60.0], [-np.inf, 80.0]]},
            ValueError,
            re.escape("'means_init' contains infinity at index (1, 0)"),
        ),
        (
            {"n_components": 2, "means_init": [[2.0, 60.0], [4.0, 1e300]]},
            ValueError,
            # faithful's waiting spans [43, 96]: 1e300 is ~1.9e298 ranges out.
            re.escape(
                "'means_init'[1, 1] = 1e+300 lies 1.89e+298 data ranges outside "
                "the range [43, 96] of column 1"
            ),
        ),
        (
            {
                "n_components": 2,
                "covariance_type": "diag",
                "precisions_init": [[1.0, np.inf], [1.0, 1.0]],
            },
            ValueError,
            re.escape("'precisions_init' contains infinity at index (0, 1)"),
        ),
        (
            {"n_components": 2, "precisions_init": np.full((2, 2, 2), np.nan)},
            ValueError,
            re.escape("'precisions_init' contains NaN at index (0, 0, 0) (8 non-"),
        ),
    ],
)
def test_bad_parameters(params, error, match):
    with pytest.raises(error, match=match):
        GaussianMixtureEM(**params).fit(_dataset("faithful"))


@pytest.mark.parametrize(
    "params",
    [
        {"reg_covar": np.nan},
        {"random_state": -1},
        {"chunk_size": 0},
        {"n_components": 2, "means_init": [[2.0, 60.0], [4.0, 1e300]]},
        {"n_components": 2, "weights_init": [np.nan, 0.5]},
    ],
)
def test_bad_parameters_are_reported_before_any_work(params, monkeypatch):
    # No start is planned and no EM iteration runs before the error.
    def forbidden(*args, **kwargs):  # pragma: no cover - must not be called
        raise AssertionError("work started before the parameters were checked")

    monkeypatch.setattr(GaussianMixtureEM, "_start", forbidden)
    monkeypatch.setattr("bayes_gmm.em.run_em", forbidden)
    with pytest.raises((ValueError, TypeError)) as info:
        GaussianMixtureEM(**params).fit(_dataset("faithful"))
    assert "work started" not in str(info.value)


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_means_init_limit_is_one_over_sqrt_eps_data_ranges(factor):
    # Closed form: a mean more than 1/sqrt(eps) column ranges outside the
    # data is rejected; one within is kept (max_iter=0 returns the start).
    X = _dataset("faithful")
    init = _sklearn_start(X, 2, "diag")
    lo, hi = X[:, 0].min(), X[:, 0].max()
    spreads = factor / np.sqrt(np.finfo(float).eps)
    means = init["means_init"].copy()
    means[1, 0] = hi + spreads * (hi - lo)
    init["means_init"] = means
    ours = GaussianMixtureEM(2, covariance_type="diag", max_iter=0, **init)
    if factor > 1:
        msg = f"'means_init'[1, 0] = {means[1, 0]:.6g} lies {spreads:.3g} data ranges"
        with pytest.raises(ValueError, match=re.escape(msg)):
            ours.fit(X)
    else:
        np.testing.assert_array_equal(ours.fit(X).means_, means)


def test_chunk_size_checked_at_predict_time():
    gm = _faithful_fit("full")
    gm.set_params(chunk_size=0)
    with pytest.raises(ValueError, match="'chunk_size' must be a positive int"):
        gm.predict(_dataset("faithful"))


def test_data_too_large_to_square_is_named():
    X = _dataset("faithful") * 1e200
    n, d = X.shape
    limit = np.sqrt(np.finfo(np.float64).max / (n * d))  # closed form
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"too large to square in float64 (sums of {n * d} squares overflow "
            f"above {limit:.3g}). Rescale the data first"
        ),
    ):
        GaussianMixtureEM(2).fit(X)


def test_nullable_integer_column_with_missing_value_is_located():
    pd = pytest.importorskip("pandas")
    df = load_faithful()
    df["waiting"] = df["waiting"].round().astype("Int64")
    df.loc[7, "waiting"] = pd.NA
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Input X contains a missing value (NA or NaN) at row 7, column 'waiting'"
        ),
    ):
        GaussianMixtureEM(2).fit(df)
    # Without the missing value the nullable column fits as its floats do.
    df.loc[7, "waiting"] = 70
    gm = GaussianMixtureEM(2, random_state=0).fit(df)
    ref = GaussianMixtureEM(2, random_state=0).fit(df.astype(float))
    np.testing.assert_array_equal(gm.means_, ref.means_)


def test_duplicated_column_names_are_named():
    df = load_faithful()
    df.columns = ["waiting", "waiting"]
    with pytest.raises(
        ValueError, match=re.escape("Duplicated column name(s) ['waiting']")
    ):
        GaussianMixtureEM(2).fit(df)


def test_non_numeric_dataframe_columns_are_named():
    df = load_faithful().assign(kind=["long", "short"] * 136, day="mon")
    with pytest.raises(
        ValueError, match=re.escape("Non-numeric column(s) ['kind', 'day']")
    ):
        GaussianMixtureEM(2).fit(df)


def test_one_dimensional_input_gets_reshape_hint():
    x = _dataset("faithful")[:, 0]
    with pytest.raises(
        ValueError,
        match=re.escape("Reshape your data either using array.reshape(-1, 1)"),
    ):
        GaussianMixtureEM(2).fit(x)
    gm = _faithful_fit("full")
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        gm.predict(x)


def test_wrong_number_of_features_at_predict_time():
    gm = _faithful_fit("diag")
    X3 = _with_constant_column(_dataset("faithful"))
    for method in ("predict", "predict_proba", "score_samples", "score", "aic", "icl"):
        with pytest.raises(
            ValueError,
            match="X has 3 features, but GaussianMixtureEM is expecting 2 features",
        ):
            getattr(gm, method)(X3)


@pytest.mark.parametrize(
    "method",
    ["predict", "predict_proba", "score", "score_samples", "aic", "bic", "icl"],
)
def test_predicting_before_fit(method):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        getattr(GaussianMixtureEM(2), method)(_dataset("faithful"))


@pytest.mark.parametrize("method", ["sample", "n_parameters"])
def test_sampling_and_counting_before_fit(method):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        getattr(GaussianMixtureEM(2), method)()


# ------------------------------------------------------------ float32 input


@pytest.mark.parametrize("covariance_type", TYPES)
def test_float32_fit_gives_float32_parameters_like_sklearn(covariance_type):
    X32 = _dataset("iris").astype(np.float32)
    # float32 inits: sklearn promotes its fit to float64 when they are float64
    # (ours follows X alone).
    init = {
        k: v.astype(np.float32)
        for k, v in _sklearn_start(X32.astype(float), 3, covariance_type).items()
    }
    kw = dict(covariance_type=covariance_type, tol=0.0, max_iter=5, **init)
    with pytest.warns(ConvergenceWarning):
        ours = GaussianMixtureEM(3, **kw).fit(X32)
    sk = _quiet_sklearn(GaussianMixture(3, **kw), X32)
    with pytest.warns(ConvergenceWarning):
        ours64 = GaussianMixtureEM(3, **kw).fit(X32.astype(float))
    for name in [*FITTED, "precisions_"]:
        got = getattr(ours, name)
        assert got.dtype == getattr(sk, name).dtype == np.float32, name
        # float64 arithmetic, rounded once: our float64 fit, cast.
        np.testing.assert_array_equal(got, getattr(ours64, name).astype(np.float32))
        # sklearn computes in float32: equal to its rounding error (which
        # grows over the iterations; ~3e-4 relative for tied precisions).
        np.testing.assert_allclose(got, getattr(sk, name), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("fit_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("data_dtype", [np.float32, np.float64, np.int64])
def test_output_dtypes_match_sklearn(fit_dtype, data_dtype):
    X = _dataset("faithful")
    init = {k: v.astype(fit_dtype) for k, v in _sklearn_start(X, 2, "full").items()}
    kw = dict(max_iter=3, tol=0.0, random_state=0, **init)
    with pytest.warns(ConvergenceWarning):
        ours = GaussianMixtureEM(2, **kw).fit(X.astype(fit_dtype))
    sk = _quiet_sklearn(GaussianMixture(2, **kw), X.astype(fit_dtype))
    Xp = X.astype(data_dtype)
    # sklearn's log densities of int64 data are wrong (its int arithmetic;
    # ours equal scipy's): its values are taken on the float64 cast.
    Xv = Xp.astype(float) if data_dtype is np.int64 else Xp
    for method in ("score_samples", "predict_proba"):
        got = getattr(ours, method)(Xp)
        assert got.dtype == getattr(sk, method)(Xp).dtype, method
        np.testing.assert_allclose(got, getattr(sk, method)(Xv), rtol=1e-4, atol=1e-6)
    assert ours.predict(Xp).dtype == sk.predict(Xp).dtype
    Xs, ys = ours.sample(5)
    Xs_sk, ys_sk = sk.sample(5)
    assert Xs.dtype == Xs_sk.dtype == np.float64  # sklearn samples in float64
    assert ys.dtype == ys_sk.dtype


def test_float32_warm_start_continues_like_sklearn():
    X32 = _dataset("faithful").astype(np.float32)
    init = {k: v.astype(np.float32) for k, v in _sklearn_start(X32, 2, "diag").items()}
    kw = dict(covariance_type="diag", warm_start=True, max_iter=2, tol=0.0, **init)
    ours, sk = GaussianMixtureEM(2, **kw), GaussianMixture(2, **kw)
    for _ in range(2):
        with pytest.warns(ConvergenceWarning):
            ours.fit(X32)
        _quiet_sklearn(sk, X32)
    for name in FITTED:
        assert getattr(ours, name).dtype == np.float32, name
        np.testing.assert_allclose(
            getattr(ours, name), getattr(sk, name), rtol=2e-4, atol=1e-5
        )


# ------------------------------------------------------------------ verbose


def _mask_times(text):
    return re.sub(r"time lapse \d+\.\d+s", "time lapse T", text)


@pytest.mark.parametrize("verbose", [0, 1, 2])
@pytest.mark.parametrize(("max_iter", "interval"), [(25, 10), (7, 3), (0, 10)])
def test_verbose_output_matches_sklearn(verbose, max_iter, interval, capsys):
    X = _dataset("faithful")
    # All three inits make both runs the same (sklearn cannot take them with
    # max_iter=0: it has no covariances_ to return then).
    init = _sklearn_start(X, 2, "full") if max_iter else {"random_state": 0}
    kw = dict(
        tol=0.0,
        max_iter=max_iter,
        verbose=verbose,
        verbose_interval=interval,
        n_init=2,
        **init,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SklearnConvergenceWarning)
        GaussianMixture(2, **kw).fit(X)
        want = capsys.readouterr().out
        GaussianMixtureEM(2, **kw).fit(X)
        got = capsys.readouterr().out
    assert _mask_times(got) == _mask_times(want)
    if verbose and max_iter:
        assert "Initialization 1\n" in got and f"  Iteration {interval}" in got


def test_verbose_warm_start_change_measured_from_previous_bound(capsys):
    X = _dataset("faithful")
    init = _sklearn_start(X, 2, "diag")
    kw = dict(
        covariance_type="diag", tol=0.0, max_iter=3, verbose=2, verbose_interval=1
    )
    outs = []
    for cls in (GaussianMixture, GaussianMixtureEM):
        gm = cls(2, warm_start=True, **kw, **init)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SklearnConvergenceWarning)
            gm.fit(X)
            capsys.readouterr()
            gm.fit(X)
        outs.append(_mask_times(capsys.readouterr().out))
    assert outs[0] == outs[1]
    assert "ll change inf" not in outs[1]


def test_get_params_of_sklearn_accepted():
    params = GaussianMixture().get_params()
    gm = GaussianMixtureEM(**params)
    assert set(params) <= set(gm.get_params())
    assert {k: gm.get_params()[k] for k in params} == params
    assert set(gm.get_params()) - set(params) == {"chunk_size"}


def test_private_n_parameters_alias():
    gm = _faithful_fit("tied")
    sk = _as_sklearn(gm)
    assert gm._n_parameters() == gm.n_parameters() == sk._n_parameters()
