"""Tests of the EM starts (bayes_gmm._init).

Oracles: the best known optima of ``benchmarks/optima.py`` (the maximum over
a search far larger than any fit makes: scikit-learn's four ``init_params``
x 100 seeds each on the raw features, ours x 20 for each explicit
``init_params``, k-means on whitened features x 20, every start run to
``tol=1e-9``, then an independent split-and-merge refinement of the best
three optima; see ``benchmarks/results/optima.md``), scikit-learn's
``GaussianMixture(n_init=10)`` fitted live, exact invariances, and
simulated truth.

A fit "finds" an optimum when EM continued from its result (a warm start
to ``tol=1e-9``) lands on it: the default ``tol=1e-3`` stops every tool
short of the optimum it is climbing, and these tests are about which
optimum that is. An optimum is *degenerate* (spurious) when a component is
collapsing: its smallest covariance eigenvalue in standardised units is
below 1e-3, or it holds fewer than ``D + 1`` (full) or 2 (diag, spherical)
points; scikit-learn is not blamed for, nor compared on, those.
"""

import functools
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris, load_wine
from sklearn.mixture import GaussianMixture

from bayes_gmm import GaussianMixtureEM, load_faithful, load_galaxies, make_mixture
from bayes_gmm._covariance import get_covariance_type
from bayes_gmm._init import (
    INIT_PARAMS,
    StartPlan,
    _BatchEM,
    _Collapse,
    _Mixtures,
    initial_resp,
    standardise,
)
from bayes_gmm.em import MixtureParams, m_step, run_em

TYPES = ["full", "tied", "diag", "spherical"]

# Best known mean log-likelihood of a non-degenerate optimum (reg_covar=1e-6)
# from `python benchmarks/optima.py search` (scikit-learn 1.9.1, numpy 2.5),
# see the module docstring; ~480 starts per cell plus split-and-merge.
BEST_KNOWN = {
    # Old Faithful (272 x 2)
    ("faithful", "full", 1): -4.741900,
    ("faithful", "full", 2): -4.155382,
    ("faithful", "full", 3): -4.097205,
    ("faithful", "full", 4): -4.066288,
    ("faithful", "full", 5): -4.040351,
    ("faithful", "tied", 1): -4.741900,
    ("faithful", "tied", 2): -4.191863,
    ("faithful", "tied", 3): -4.140867,
    ("faithful", "tied", 4): -4.120692,
    ("faithful", "tied", 5): -4.103521,
    ("faithful", "diag", 1): -5.576124,
    ("faithful", "diag", 2): -4.219876,
    ("faithful", "diag", 3): -4.143410,
    ("faithful", "diag", 4): -4.091474,
    ("faithful", "diag", 5): -4.065350,
    ("faithful", "spherical", 1): -7.367471,
    ("faithful", "spherical", 2): -6.285034,
    ("faithful", "spherical", 3): -6.019979,
    ("faithful", "spherical", 4): -5.769889,
    ("faithful", "spherical", 5): -5.554539,
    # iris (150 x 4)
    ("iris", "full", 1): -2.532764,
    ("iris", "full", 2): -1.429031,
    ("iris", "full", 3): -1.201237,
    ("iris", "full", 4): -1.051782,
    ("iris", "full", 5): -0.906656,
    ("iris", "tied", 1): -2.532764,
    ("iris", "tied", 2): -1.976317,
    ("iris", "tied", 3): -1.709027,
    ("iris", "tied", 4): -1.486991,
    ("iris", "tied", 5): -1.418424,
    ("iris", "diag", 1): -4.940117,
    ("iris", "diag", 2): -2.574569,
    ("iris", "diag", 3): -2.045736,
    ("iris", "diag", 4): -1.765650,
    ("iris", "diag", 5): -1.601244,
    ("iris", "spherical", 1): -5.930108,
    ("iris", "spherical", 2): -3.190394,
    ("iris", "spherical", 3): -2.562094,
    ("iris", "spherical", 4): -2.228574,
    ("iris", "spherical", 5): -1.990968,
    # galaxies, 1000 km/s (82 x 1)
    ("galaxies", "full", 1): -2.930950,
    ("galaxies", "full", 2): -2.683634,
    ("galaxies", "full", 3): -2.477795,
    ("galaxies", "full", 4): -2.407973,
    ("galaxies", "full", 5): -2.389874,
    ("galaxies", "tied", 1): -2.930950,
    ("galaxies", "tied", 2): -2.809175,
    ("galaxies", "tied", 3): -2.589657,
    ("galaxies", "tied", 4): -2.533199,
    ("galaxies", "tied", 5): -2.495188,
    ("galaxies", "diag", 1): -2.930950,
    ("galaxies", "diag", 2): -2.683634,
    ("galaxies", "diag", 3): -2.477795,
    ("galaxies", "diag", 4): -2.407973,
    ("galaxies", "diag", 5): -2.389874,
    ("galaxies", "spherical", 1): -2.930950,
    ("galaxies", "spherical", 2): -2.683634,
    ("galaxies", "spherical", 3): -2.477795,
    ("galaxies", "spherical", 4): -2.407973,
    ("galaxies", "spherical", 5): -2.389874,
    # wine (178 x 13)
    ("wine", "full", 1): -18.713762,
    ("wine", "full", 2): -16.734250,
    ("wine", "full", 3): -15.563707,
    ("wine", "full", 4): -14.693075,
    ("wine", "full", 5): -13.930808,
    ("wine", "tied", 1): -18.713762,
    ("wine", "tied", 2): -18.232899,
    ("wine", "tied", 3): -17.812259,
    ("wine", "tied", 4): -17.489937,
    ("wine", "tied", 5): -17.210526,
    ("wine", "diag", 1): -22.546490,
    ("wine", "diag", 2): -20.131760,
    ("wine", "diag", 3): -18.507089,
    ("wine", "diag", 4): -17.926210,
    ("wine", "diag", 5): -17.539247,
    ("wine", "spherical", 1): -76.531753,
    ("wine", "spherical", 2): -67.828066,
    ("wine", "spherical", 3): -62.803427,
    ("wine", "spherical", 4): -59.906889,
    ("wine", "spherical", 5): -57.350404,
}

# Cells where the default fit (n_init=10) does not find the best known
# optimum for every random_state 0..4 (it is never below scikit-learn's
# non-degenerate optimum): what `benchmarks/optima.py compare` measured
# (results/optima.md). Known limitations, not bugs of the code under test.
UNRELIABLE = {
    ("iris", "full", 5): "found in 0/5 seeds (sklearn 2/5)",
    ("iris", "diag", 5): "found in 4/5 seeds (sklearn 0/5)",
    ("galaxies", "full", 4): "found in 3/5 seeds (sklearn 0/5)",
    ("galaxies", "diag", 4): "found in 3/5 seeds (sklearn 0/5)",
    ("galaxies", "spherical", 4): "found in 3/5 seeds (sklearn 0/5)",
    ("galaxies", "full", 5): "found in 3/5 seeds (sklearn 5/5, all spurious)",
    ("galaxies", "diag", 5): "found in 3/5 seeds (sklearn 5/5, all spurious)",
    ("galaxies", "spherical", 5): "found in 3/5 seeds (sklearn 5/5, all spurious)",
    ("wine", "full", 2): "found in 3/5 seeds (sklearn 0/5)",
    ("wine", "full", 4): "found in 1/5 seeds (sklearn 0/5)",
    ("wine", "full", 5): "found in 0/5 seeds (sklearn 0/5)",
    ("wine", "tied", 4): "found in 4/5 seeds (sklearn 0/5)",
}
# ... of which these miss it with random_state=0, the tests' seed: xfail,
# strict (the others pass).
MISSED_AT_SEED_0 = {
    ("iris", "full", 5),
    ("wine", "full", 2),
    ("wine", "full", 4),
    ("wine", "full", 5),
}

EIG_FLOOR = 1e-3
FOUND = 1e-4  # same optimum, up to the polish


@functools.cache
def _data(name):
    if name == "faithful":
        X = load_faithful().to_numpy(dtype=float)
    elif name == "iris":
        X = load_iris().data.astype(float)
    elif name == "wine":
        X = load_wine().data.astype(float)
    else:
        X = load_galaxies(scale=1000).to_numpy(dtype=float)
    X.setflags(write=False)
    return X


def _polish(est, X):
    """Continue EM from a fitted estimator to tol=1e-7: its basin's optimum."""
    est.set_params(warm_start=True, tol=1e-7, max_iter=3000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X)
    return est


def _full_covariances(est):
    k, d = est.means_.shape
    c = np.asarray(est.covariances_)
    if est.covariance_type == "full":
        return c
    if est.covariance_type == "tied":
        return np.broadcast_to(c, (k, d, d))
    if est.covariance_type == "diag":
        return c[:, :, None] * np.eye(d)
    return c[:, None, None] * np.eye(d)


def _degenerate(est, X):
    """The benchmark's definition of a spurious optimum (module docstring)."""
    sd = X.std(axis=0)
    cov = _full_covariances(est) / sd[:, None] / sd[None, :]
    min_eig = np.linalg.eigvalsh(cov)[:, 0].min()
    d = X.shape[1]
    floor = {"full": d + 1, "diag": 2, "spherical": 2, "tied": 0}
    min_nk = est.weights_.min() * X.shape[0]
    return bool(min_eig < EIG_FLOOR or min_nk < floor[est.covariance_type])


def _cell_param(name, ct, k, slow=False):
    marks = [pytest.mark.slow] if slow else []
    if (name, ct, k) in MISSED_AT_SEED_0:
        marks.append(pytest.mark.xfail(reason=UNRELIABLE[(name, ct, k)], strict=True))
    return pytest.param(name, ct, k, marks=marks, id=f"{name}-{ct}-{k}")


def _check_cell(name, ct, k):
    X = _data(name)
    ours = GaussianMixtureEM(k, covariance_type=ct, n_init=10, random_state=0).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = GaussianMixture(k, covariance_type=ct, n_init=10, random_state=0).fit(X)
    # Never worse than scikit-learn with the same defaults, unless it is
    # climbing to a spurious optimum (seen by continuing its EM).
    if ours.lower_bound_ < sk.lower_bound_ - 1e-6:
        assert _degenerate(_polish(sk, X), X), (ours.lower_bound_, sk.lower_bound_)
    # The best known optimum is the one ours is in (a spurious optimum above
    # it is not a miss).
    ll = _polish(ours, X).lower_bound_
    best = BEST_KNOWN[(name, ct, k)]
    assert ll >= best - FOUND, (ll, best, _degenerate(ours, X))


FAST_CELLS = [_cell_param("faithful", ct, k) for ct in TYPES for k in range(1, 6)] + [
    _cell_param("iris", ct, k) for ct in ("full", "tied") for k in range(1, 4)
]


@pytest.mark.parametrize(("name", "covariance_type", "k"), FAST_CELLS)
def test_default_reaches_best_known_optimum(name, covariance_type, k):
    _check_cell(name, covariance_type, k)


SLOW_CELLS = (
    [_cell_param("iris", ct, k) for ct in ("diag", "spherical") for k in (1, 2, 3)]
    + [_cell_param("iris", ct, k, slow=True) for ct in TYPES for k in (4, 5)]
    + [
        _cell_param(name, ct, k, slow=True)
        for name in ("galaxies", "wine")
        for ct in TYPES
        for k in range(1, 6)
    ]
)


@pytest.mark.parametrize(("name", "covariance_type", "k"), SLOW_CELLS)
def test_default_reaches_best_known_optimum_grid(name, covariance_type, k):
    _check_cell(name, covariance_type, k)


# ------------------------------------------------------------ scale invariance
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag"])
def test_fit_is_invariant_to_the_units_of_a_feature(covariance_type):
    # Minutes -> milli-minutes in one column: the same optimum, the mean
    # log-likelihood lower by exactly log(1000) (the Jacobian), the same
    # partition. (Spherical models are not equivariant to a change of one
    # column's units, so they are left out.) reg_covar=1e-12 makes the
    # regularisation negligible in both units; then the starts, and so every
    # EM iteration, are the same up to rounding, whatever tol stops them.
    X = _data("faithful")
    X2 = X.copy()
    X2[:, 0] *= 1000.0
    kw = dict(
        covariance_type=covariance_type, n_init=10, random_state=0, reg_covar=1e-12
    )
    a = GaussianMixtureEM(3, **kw).fit(X)
    b = GaussianMixtureEM(3, **kw).fit(X2)
    n = X.shape[0]
    np.testing.assert_allclose(
        n * b.lower_bound_, n * (a.lower_bound_ - np.log(1000.0)), rtol=0, atol=1e-8
    )
    np.testing.assert_array_equal(a.predict(X), b.predict(X2))
    np.testing.assert_allclose(b.means_[:, 0], 1000.0 * a.means_[:, 0], rtol=1e-6)


def test_sklearn_starts_depend_on_the_units():
    # The contrast that makes the tests above meaningful: after the same
    # change of units (here of the eruption times, which then dominate the
    # raw distances), scikit-learn's k-means starts lead to another optimum.
    X = _data("faithful")
    X2 = X.copy()
    X2[:, 0] *= 1000.0
    # (Old Faithful, diag, K = 3: optima 0.018 apart in mean log-likelihood.)
    kw = dict(
        covariance_type="diag",
        n_init=10,
        random_state=0,
        tol=1e-7,
        max_iter=1000,
        reg_covar=1e-12,
    )
    a = GaussianMixture(3, **kw).fit(X)
    b = GaussianMixture(3, **kw).fit(X2)
    assert abs((a.lower_bound_ - np.log(1000.0)) - b.lower_bound_) > 1e-2
    # ...while ours reaches the same optimum in both units.
    a = GaussianMixtureEM(3, **kw).fit(X)
    b = GaussianMixtureEM(3, **kw).fit(X2)
    assert abs((a.lower_bound_ - np.log(1000.0)) - b.lower_bound_) < 1e-6


@pytest.mark.parametrize("init_params", ["k-means++", "random_from_data", "random"])
def test_explicit_starts_are_invariant_to_units(init_params):
    X = _data("iris")
    X2 = X * np.array([1.0, 1e-3, 1e3, 7.0])
    r1 = initial_resp(X, standardise(X), 3, init_params, np.random.default_rng(5))
    r2 = initial_resp(X2, standardise(X2), 3, init_params, np.random.default_rng(5))
    np.testing.assert_allclose(r1, r2)


# ------------------------------------------------------------------ diversity
@pytest.mark.parametrize("covariance_type", TYPES)
def test_default_starts_are_distinct_optima_best_first(covariance_type):
    X = _data("faithful")
    plan = StartPlan(X, 4, covariance_type, 6, 1e-6, np.random.default_rng(0))
    assert 2 <= len(plan.starts) <= 6
    lls = [run_em(X, start, tol=0.0, max_iter=1).lower_bound for start in plan.starts]
    assert np.all(np.diff(lls) < 0)  # distinct optima, best first
    # Components by decreasing weight: the order of the fitted components
    # does not depend on which candidate found the optimum.
    for start in plan.starts:
        assert np.all(np.diff(start.weights) <= 0)
    for i in range(len(plan.starts)):
        for j in range(i):
            assert not np.allclose(plan.starts[i].means, plan.starts[j].means)
    # next() hands them out in order, best first, and starts over.
    given = [plan.next() for _ in range(len(plan.starts) + 1)]
    assert given[0] is plan.starts[0] and given[1] is plan.starts[1]
    assert given[-1] is plan.starts[0]


@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_each_start_of_a_fit_is_new(init_params):
    # Independent starts get new draws: the final values of the n_init runs
    # are not all the same one (several optima exist at K = 5).
    X = _data("faithful")
    gm = GaussianMixtureEM(
        5, init_params=init_params, n_init=4, random_state=0, max_iter=5
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X)
    assert len(set(np.round(gm.init_lower_bounds_, 10))) > 1


def test_random_state_reproduces_the_fit():
    X = _data("iris")
    a = GaussianMixtureEM(3, n_init=3, random_state=7).fit(X)
    b = GaussianMixtureEM(3, n_init=3, random_state=7).fit(X)
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(a.init_lower_bounds_, b.init_lower_bounds_)


# ------------------------------------------------------- the search's EM
def _batch_of(em, params_list):
    """A _Mixtures batch (centred frame) from MixtureParams."""
    k, d = params_list[0].means.shape
    ct = params_list[0].covariance_type
    cov = np.stack([np.asarray(p.covariances) for p in params_list])
    if ct == "tied":
        cov = cov[:, None]
    elif ct == "spherical":
        cov = cov[..., None]
    return _Mixtures(
        np.stack([p.weights for p in params_list]),
        np.stack([p.means for p in params_list]) - em.center,
        cov,
    )


def _by_weight(params):
    """Weights, means and covariances with the components by decreasing weight."""
    order = np.argsort(-params.weights, kind="stable")
    cov = np.asarray(params.covariances)
    if params.covariance_type != "tied":
        cov = cov[order]
    return params.weights[order], params.means[order], cov


def _random_starts(X, k, ct, n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        resp = rng.dirichlet(np.ones(k), size=X.shape[0])
        out.append(m_step(X, resp, ct, 1e-6))
    return out


@pytest.mark.parametrize("covariance_type", TYPES)
def test_batched_em_matches_the_em_module(covariance_type):
    # Oracle: bayes_gmm.em (itself tested against scikit-learn). Three
    # candidates at once, three iterations each, in blocks of 50 rows.
    X = _data("iris")
    starts = _random_starts(X, 3, covariance_type, 3)
    em = _BatchEM(X, covariance_type, 1e-6, chunk_size=50)
    ll, mix = em.run(_batch_of(em, starts), 3)
    for i, start in enumerate(starts):
        ref = run_em(X, start, tol=0.0, max_iter=3)
        np.testing.assert_allclose(ll[i], ref.lower_bound, rtol=1e-10)
        # (handed out with the components by decreasing weight)
        got = em.params(mix, i)
        assert np.all(np.diff(got.weights) <= 0)
        for a, b in zip(_by_weight(got), _by_weight(ref.params), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12)
    # The M-step from responsibilities too.
    resp = np.random.default_rng(1).dirichlet(np.ones(3), size=X.shape[0])
    got = em.params(em.m_step(resp.T[None]), 0)
    ref = m_step(X, resp, covariance_type, 1e-6)
    np.testing.assert_allclose(_by_weight(got)[2], _by_weight(ref)[2], rtol=1e-10)


def test_batched_em_drops_a_candidate_that_breaks_down():
    X = _data("faithful")
    em = _BatchEM(X, "full", 1e-6)
    mix = _batch_of(em, _random_starts(X, 2, "full", 2))
    mix.cov[1, 0] = np.diag([1.0, -1.0])  # not positive definite
    ll, new = em.iterate(mix)
    assert np.isfinite(ll[0]) and ll[1] == -np.inf
    np.testing.assert_array_equal(new.cov[1], mix.cov[1])  # left as it was


def test_accelerated_em_crosses_the_ridge_that_stops_plain_em():
    # Old Faithful, full, K = 5, from scikit-learn's first EM iteration
    # (random_state=0): plain EM creeps along a ridge, so tol=1e-4 stops it
    # at -4.0549 after 67 iterations, although it reaches the best known
    # optimum, -4.040351, after ~550. SQUAREM gets there in a few cycles.
    X = _data("faithful")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = GaussianMixture(5, max_iter=1, random_state=0).fit(X)
    ct = get_covariance_type("full")
    start = MixtureParams(
        sk.weights_,
        sk.means_,
        sk.covariances_,
        ct.precision_cholesky(sk.covariances_),
        "full",
    )
    stopped = run_em(X, start, tol=1e-4, max_iter=1000)
    assert stopped.lower_bound < BEST_KNOWN[("faithful", "full", 5)] - 0.01
    plain = run_em(X, start, tol=1e-10, max_iter=5000)
    em = _BatchEM(X, "full", 1e-6)
    ll, _ = em.converge(_batch_of(em, [start]))
    assert ll[0] == pytest.approx(BEST_KNOWN[("faithful", "full", 5)], abs=1e-6)
    assert ll[0] == pytest.approx(plain.lower_bound, abs=1e-6)
    assert em.n_iter < plain.n_iter / 3


# ------------------------------------------------------------------ collapse
def _params(X, labels, k, covariance_type, reg=1e-6):
    resp = np.zeros((X.shape[0], k))
    resp[np.arange(X.shape[0]), labels] = 1.0
    return m_step(X, resp, covariance_type, reg)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_collapse_flags_a_component_on_tied_points(covariance_type):
    # Old Faithful: waiting times are whole minutes; a component on the
    # eruptions that waited 78 minutes has variance reg_covar across them.
    X = _data("faithful")
    on_tie = X[:, 1] == 78.0
    assert on_tie.sum() >= 10
    labels = np.where(on_tie, 0, np.where(X[:, 0] < 3.0, 1, 2))
    collapse = _Collapse(X, 1e-6, 3)
    assert collapse(_params(X, labels, 3, covariance_type))
    # The same data split by eruption length: no collapse.
    regular = np.where(X[:, 0] < 3.0, 0, 1)
    assert not collapse(_params(X, regular, 2, covariance_type))


def test_collapse_flags_a_few_close_points():
    # Galaxies: a component on the two closest velocities (a spurious peak).
    X = _data("galaxies")
    v = X[:, 0]
    order = np.argsort(v)
    i = int(np.argmin(np.diff(v[order])[10:-10])) + 10
    labels = np.where(v < 20.0, 0, 1)
    labels[order[i : i + 2]] = 2
    assert _Collapse(X, 1e-6, 3)(_params(X, labels, 3, "full"))


def test_collapse_flags_a_full_component_with_fewer_points_than_dimensions():
    # Wine (13 features): a full covariance from 10 rows is singular, held
    # up by reg_covar alone, however spread out the rows are; a diagonal
    # one from the same rows is not.
    X = _data("wine")
    labels = np.where(np.arange(X.shape[0]) % 17 == 0, 2, X[:, 0] > 13.0)
    assert (labels == 2).sum() < X.shape[1] + 1
    collapse = _Collapse(X, 1e-6, 3)
    assert collapse(_params(X, labels, 3, "full"))
    assert not collapse(_params(X, labels, 3, "diag"))


def test_collapse_spares_tight_well_separated_clusters():
    # Three blobs 12 sd apart: each is narrower than 3% of the data's spread
    # but holds ~80 points, so it is a cluster, not a collapse; the default
    # fit finds the truth like scikit-learn.
    X, y, truth = make_mixture(240, 3, 2, separation=12.0, random_state=3)
    collapse = _Collapse(X, 1e-6, 3)
    assert not collapse(_params(X, y, 3, "full"))
    gm = GaussianMixtureEM(3, random_state=0).fit(X)
    order = np.argsort(gm.means_[:, 0])
    np.testing.assert_allclose(
        gm.means_[order], truth.means[np.argsort(truth.means[:, 0])], atol=0.5
    )


def test_collapse_check_ignores_constant_and_collinear_columns():
    rng = np.random.default_rng(0)
    X = np.c_[rng.normal(size=(200, 2)), np.zeros(200)]
    labels = (X[:, 0] > 0).astype(int)
    assert not _Collapse(X, 1e-6, 3)(_params(X, labels, 2, "full"))
    X = rng.normal(size=(200, 2))
    X = np.c_[X, X[:, 0]]  # a duplicated column
    assert not _Collapse(X, 1e-6, 3)(_params(X, labels, 2, "full"))
    # ...and the fits go through.
    assert np.isfinite(GaussianMixtureEM(2, random_state=0).fit(X).lower_bound_)


# --------------------------------------------------------------- large data
def test_search_on_large_data_uses_a_sample_and_finds_the_truth():
    X, y, truth = make_mixture(30_000, 4, 3, separation=5.0, random_state=1)
    plan = StartPlan(X, 4, "full", 2, 1e-6, np.random.default_rng(0))
    assert plan._sample().shape == (2000, 3)  # max(2000, 20 K (D + 1)) rows
    gm = GaussianMixtureEM(4, n_init=2, random_state=0).fit(X)
    order = np.lexsort(gm.means_.T)
    np.testing.assert_allclose(
        gm.means_[order], truth.means[np.lexsort(truth.means.T)], atol=0.1
    )
    np.testing.assert_allclose(np.sort(gm.weights_), np.sort(truth.weights), atol=0.02)


def test_small_data_are_ranked_by_likelihood_alone():
    # Six points, two groups with a constant first coordinate each: the
    # natural partition "collapses" in x0, but on so few rows per component
    # no candidate is set aside for that, and the fit is scikit-learn's.
    X = np.array([[1.0, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    ours = GaussianMixtureEM(2, random_state=0).fit(X)
    sk = GaussianMixture(2, random_state=0).fit(X)
    np.testing.assert_allclose(np.sort(ours.means_[:, 0]), [1.0, 10.0])
    np.testing.assert_allclose(ours.lower_bound_, sk.lower_bound_, rtol=1e-6)
