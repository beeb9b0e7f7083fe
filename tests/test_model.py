"""Tests of bayes_gmm.model: the PyMC model, its priors and its likelihood.

Oracles: EM's ``score_samples`` (the same mixture density computed by numpy),
scipy's multivariate normal, the free-parameter count of the covariance table,
and exact invariances (rescaling the data). No test here samples with NUTS;
logp functions run on PyTensor's Python linker (no numba, no C compile).
"""

import dataclasses
import inspect

import numpy as np
import pymc as pm
import pytensor
import pytest
from pymc.initial_point import make_initial_point_fn
from pytensor.graph.traversal import applys_between
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from bayes_gmm import GaussianMixtureBayes, GaussianMixtureEM, make_mixture
from bayes_gmm._covariance import COVARIANCE_TYPES, get_covariance_type, n_parameters
from bayes_gmm.model import (
    Priors,
    build_model,
    initial_point,
    mixture_logp,
    standardisation,
)

TYPES = sorted(COVARIANCE_TYPES)
# PyTensor's Python linker: no C compilation (each C-compiled graph costs
# seconds on a loaded machine); the tiny graphs here run fast either way.
MODE = "FAST_COMPILE"


@pytest.fixture(scope="module")
def data3d():
    """Three features, two components, 120 points."""
    X, _, _ = make_mixture(120, 2, 3, separation=4.0, random_state=7)
    return X


def transformed(model, point):
    """Constrained values -> the model's value variables (unconstrained)."""
    fn = make_initial_point_fn(
        model=model, overrides=point, jitter_rvs=set(), return_transformed=True
    )
    return fn(0)


def random_points(model, n, seed):
    """``n`` random points in the model's unconstrained space."""
    rng = np.random.default_rng(seed)
    ip = model.initial_point()
    return [
        {k: v + rng.normal(0, 0.5, size=np.shape(v)) for k, v in ip.items()}
        for _ in range(n)
    ]


def deterministics(model):
    """Compiled function: unconstrained point -> (weights, means, covariances)."""
    outs = model.replace_rvs_by_values(
        [model["weights"], model["means"], model["covariances"]]
    )
    fn = pytensor.function(model.value_vars, outs, on_unused_input="ignore", mode=MODE)
    names = [v.name for v in model.value_vars]
    return lambda point: fn(*[point[n] for n in names])


# ------------------------------------------------------------------ likelihood
@pytest.mark.parametrize("covariance_type", TYPES)
def test_loglik_at_em_solution_equals_em_score_samples(data3d, covariance_type):
    X = data3d
    em = GaussianMixtureEM(2, covariance_type=covariance_type, random_state=0).fit(X)
    model = build_model(X, 2, covariance_type=covariance_type)
    point = transformed(
        model, initial_point(model, em.weights_, em.means_, em.covariances_)
    )
    (ll,) = model.logp(vars=[model["x"]], jacobian=False, sum=False)
    fn = model.compile_fn(
        ll, inputs=model.value_vars, on_unused_input="ignore", mode=MODE
    )
    pointwise = fn(point)
    assert pointwise.shape == (X.shape[0],)
    np.testing.assert_allclose(pointwise, em.score_samples(X), rtol=1e-10, atol=1e-10)
    total = model.compile_logp(vars=[model["x"]], jacobian=False, mode=MODE)(point)
    np.testing.assert_allclose(total, em.score_samples(X).sum(), rtol=1e-12)


def test_mixture_logp_against_scipy():
    rng = np.random.default_rng(0)
    k, d, n = 3, 2, 25
    x = rng.normal(size=(n, d))
    w = np.array([0.2, 0.5, 0.3])
    mu = rng.normal(size=(k, d))
    a = rng.normal(size=(k, d, d))
    cov = a @ a.transpose(0, 2, 1) + np.eye(d)
    chol = np.linalg.cholesky(cov)
    got = mixture_logp(
        pytensor.shared(x), pytensor.shared(w), pytensor.shared(mu), chol
    ).eval(mode=MODE)
    comp = np.stack(
        [np.log(w[j]) + multivariate_normal(mu[j], cov[j]).logpdf(x) for j in range(k)]
    )
    np.testing.assert_allclose(got, logsumexp(comp, axis=0), rtol=1e-12)
    # the diagonal shortcut equals the general solve on diagonal factors
    sd = rng.uniform(0.5, 2, size=(k, d))
    dchol = sd[:, :, None] * np.eye(d)
    fast = mixture_logp(x, w, mu, dchol, diagonal=True).eval(mode=MODE)
    comp = np.stack(
        [
            np.log(w[j]) + multivariate_normal(mu[j], np.diag(sd[j] ** 2)).logpdf(x)
            for j in range(k)
        ]
    )
    np.testing.assert_allclose(fast, logsumexp(comp, axis=0), rtol=1e-12)


def _graph_ops(inputs, output):
    return sorted(
        type(node.op).__name__ + str(node.op)
        for node in applys_between(inputs, [output])
    )


@pytest.mark.parametrize("covariance_type", TYPES)
def test_likelihood_is_vectorised_no_mvnormal_list(covariance_type):
    """No pm.Mixture of K MvNormal: one marginal density, the same graph for any K."""
    X, _, _ = make_mixture(40, 2, 2, random_state=0)
    lik, full = {}, {}
    for k in (2, 5):
        model = build_model(X, k, covariance_type=covariance_type)
        x = model["x"]
        # the observed variable is our marginalised density, not pm.Mixture
        assert "Mixture" not in type(x.owner.op).__name__
        # its log density as a function of (weights, means, Cholesky factors)
        params = x.owner.inputs[-3:]
        lik[k] = _graph_ops(params, pm.logp(x, model["X"]))
        (ll,) = model.logp(vars=[x], jacobian=False, sum=False)
        full[k] = _graph_ops(model.value_vars, ll)
        assert not any("MvNormal" in s or "Mixture" in s for s in full[k])
        solves = [s for s in lik[k] if "SolveTriangular" in s]
        # one batched triangular solve (full, tied) or none (diag, spherical)
        diagonal = get_covariance_type(covariance_type).diagonal
        assert len(solves) == (0 if diagonal else 1)
    # the likelihood graph does not grow with K: no Python loop over components
    assert lik[2] == lik[5]
    if covariance_type != "full":
        # nor does the whole graph from the free variables (full builds one
        # LKJ-Cholesky prior per component, as the design allows)
        assert full[2] == full[5]


# ---------------------------------------------------------------------- priors
@pytest.mark.parametrize("covariance_type", TYPES)
def test_priors_scale_with_the_data(data3d, covariance_type):
    """Fitting a*X + b gives the same posterior in the scaled units.

    The log posterior of the free variables differs by a constant (the
    Jacobian of the change of units, -N D log a), and the parameters in data
    units scale exactly.
    """
    X = data3d[:60]
    a, b = 1000.0, np.array([5.0, -3.0, 1e4])
    m1 = build_model(X, 2, covariance_type=covariance_type)
    m2 = build_model(a * X + b, 2, covariance_type=covariance_type)
    lp1, lp2 = m1.compile_logp(mode=MODE), m2.compile_logp(mode=MODE)
    det1, det2 = deterministics(m1), deterministics(m2)
    n, d = X.shape
    for point in random_points(m1, 4, seed=1):
        np.testing.assert_allclose(
            lp2(point), lp1(point) - n * d * np.log(a), rtol=1e-9
        )
        (w1, mu1, c1), (w2, mu2, c2) = det1(point), det2(point)
        np.testing.assert_allclose(w2, w1, rtol=1e-12)
        np.testing.assert_allclose(mu2, a * mu1 + b, rtol=1e-9)
        np.testing.assert_allclose(c2, a**2 * c1, rtol=1e-9)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_initial_point_round_trips_to_em_parameters(data3d, covariance_type):
    X = data3d
    em = GaussianMixtureEM(2, covariance_type=covariance_type, random_state=0).fit(X)
    model = build_model(X, 2, covariance_type=covariance_type)
    point = transformed(
        model, initial_point(model, em.weights_, em.means_, em.covariances_)
    )
    w, mu, cov = deterministics(model)(point)
    np.testing.assert_allclose(w, em.weights_, rtol=1e-10)
    np.testing.assert_allclose(mu, em.means_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cov, em.covariances_, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("d", [1, 3])
def test_free_parameter_count_matches_the_table(covariance_type, d):
    X, _, _ = make_mixture(30, 3, d, random_state=0)
    model = build_model(X, 3, covariance_type=covariance_type)
    size = sum(np.size(v) for v in model.initial_point().values())
    assert size == n_parameters(covariance_type, 3, d)
    # a finite log density at PyMC's own default start (init="prior")
    assert np.isfinite(model.compile_logp(mode=MODE)(model.initial_point()))


@pytest.mark.parametrize("covariance_type", TYPES)
def test_prior_logp_against_scipy_for_diagonal_types(covariance_type):
    """The prior density in data units, checked where scipy has it in closed form.

    For diag and spherical the prior of the standardised sds is HalfNormal and
    of the standardised means Normal, so the log prior of the free variables
    (constrained space, no Jacobian) equals scipy's sum.
    """
    from scipy import stats

    if covariance_type in ("full", "tied"):
        pytest.skip("LKJ has no scipy oracle; see test_lkj_prior_matches_pymc")
    X, _, _ = make_mixture(50, 2, 2, random_state=1)
    pri = Priors(weights_concentration=1.5, mean_scale=1.7, sd_scale=0.8)
    model = build_model(X, 2, covariance_type=covariance_type, priors=pri)
    rng = np.random.default_rng(3)
    w = np.array([0.3, 0.7])
    mz = rng.normal(size=(2, 2))
    sz = rng.uniform(0.2, 1.5, size=(2, 2) if covariance_type == "diag" else 2)
    loc, scale = standardisation(X, covariance_type)
    chol = (sz[..., None] if covariance_type == "diag" else sz[:, None, None]) * np.eye(
        2
    )
    cov = get_covariance_type(covariance_type).from_cholesky(
        chol * scale[None, :, None]
    )
    point = initial_point(model, w, mz * scale + loc, cov)
    prior_vars = [rv for rv in model.free_RVs]
    lp = model.compile_logp(vars=prior_vars, jacobian=False, mode=MODE)(
        transformed(model, point)
    )
    expected = (
        stats.dirichlet([1.5, 1.5]).logpdf(w)
        + stats.norm(0, 1.7).logpdf(mz).sum()
        + stats.halfnorm(scale=0.8).logpdf(sz).sum()
    )
    np.testing.assert_allclose(lp, expected, rtol=1e-9)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_lkj_prior_matches_pymc(d):
    """The batched LKJ-Cholesky prior equals K separate pm.LKJCholeskyCov."""
    k = 3
    X, _, _ = make_mixture(30, 2, d, random_state=0)
    pri = Priors(lkj_eta=2.5, sd_scale=0.7)
    model = build_model(X, k, covariance_type="full", priors=pri)
    chol_rvs = [
        rv
        for rv in model.free_RVs
        if rv.name not in ("weights", "means_z", "means_z_ordered", "means_z_rest")
    ]
    ours = model.compile_logp(vars=chol_rvs, jacobian=False, mode=MODE)
    with pm.Model() as ref:
        for j in range(k):
            if d == 1:
                pm.HalfNormal(f"c{j}", 0.7, shape=1)
            else:
                pm.LKJCholeskyCov(
                    f"c{j}",
                    eta=2.5,
                    n=d,
                    sd_dist=pm.HalfNormal.dist(0.7, shape=d),
                    compute_corr=False,
                )
    theirs = ref.compile_logp(jacobian=False, mode=MODE)
    rng = np.random.default_rng(0)
    tril = np.tril_indices(d)
    for _ in range(3):
        a = rng.normal(size=(k, d, d))
        cov = a @ a.transpose(0, 2, 1) + 0.5 * np.eye(d)
        chol = np.linalg.cholesky(cov)
        point = initial_point(model, np.full(k, 1 / k), np.zeros((k, d)), cov)
        got = ours(transformed(model, point))
        loc, scale = standardisation(X, "full")
        cz = chol / scale[None, :, None]
        ref_point = transformed(
            ref,
            {f"c{j}": (cz[j][tril] if d > 1 else cz[j][0]) for j in range(k)},
        )
        np.testing.assert_allclose(got, theirs(ref_point), rtol=1e-10)


def test_priors_validation_and_round_trip():
    p = Priors(weights_concentration=0.5, mean_scale=3, sd_scale=1.5, lkj_eta=1.0)
    assert Priors.from_dict(p.to_dict()) == p
    assert Priors.from_dict(p.to_json()) == p
    assert p.to_dict() == {
        "weights_concentration": 0.5,
        "mean_scale": 3.0,
        "sd_scale": 1.5,
        "lkj_eta": 1.0,
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.lkj_eta = 3.0
    for bad in (0, -1.0, np.nan, np.inf, True, "2", None):
        with pytest.raises(ValueError, match="Priors.sd_scale must be a positive"):
            Priors(sd_scale=bad)
    with pytest.raises(ValueError, match=r"Unknown prior\(s\) \['eta'\]; valid: \["):
        Priors.from_dict({"eta": 2.0})
    X, _, _ = make_mixture(20, 2, 2, random_state=0)
    with pytest.raises(TypeError, match="'priors' must be a Priors instance"):
        build_model(X, 2, priors={"lkj_eta": 2.0})


def test_docstrings_state_defaults_and_formulas():
    doc = inspect.getdoc(Priors)
    for f in dataclasses.fields(Priors):
        assert f"{f.name} : float, default={f.default}" in doc
    import bayes_gmm.model as model_module

    text = inspect.getdoc(build_model) + inspect.getdoc(model_module)
    for needle in (".. math::", "Dirichlet", "HalfNormal", "LKJ", "mean_scale"):
        assert needle in text
    # the data-unit form of the defaults is stated: mean prior sd = 2 data sd
    assert "2.0" in doc and "data standard deviation" in doc


# ------------------------------------------------------------------ build_model
@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("d", [1, 2])
def test_build_model_is_pure(monkeypatch, covariance_type, d):
    def forbidden(*args, **kwargs):
        raise AssertionError("build_model must not sample or fit")

    for name in (
        "sample",
        "fit",
        "sample_prior_predictive",
        "sample_posterior_predictive",
    ):
        monkeypatch.setattr(pm, name, forbidden)
    X, _, _ = make_mixture(25, 2, d, random_state=0)
    X.setflags(write=False)
    before = X.copy()
    model = build_model(X, 2, covariance_type=covariance_type)
    np.testing.assert_array_equal(X, before)
    assert {"weights", "means", "covariances", "x"} <= set(model.named_vars)
    ct = get_covariance_type(covariance_type)
    assert model.named_vars_to_dims["covariances"] == ct.dims
    assert model.named_vars_to_dims["x"] == ("obs", "feature")
    # no model-level initial values (they break log-likelihood computation)
    assert all(v is None for v in model.rvs_to_initial_values.values())
    # observed data is the data, and the feature coordinate is there
    np.testing.assert_array_equal(model["X"].get_value(), X)
    assert list(model.coords["feature"]) == [f"x{j}" for j in range(d)]


def test_build_model_feature_names_and_order_means():
    X, _, _ = make_mixture(40, 3, 2, random_state=2)
    model = build_model(X, 3, order_means=1, feature_names=["a", "b"])
    assert list(model.coords["feature"]) == ["a", "b"]
    assert all(v is None for v in model.rvs_to_initial_values.values())
    # prior draws respect the constraint (sorted Normal draws, not pm.Normal's)
    draws = pm.draw(model["means"], draws=50, random_seed=1)
    assert np.all(np.diff(draws[:, :, 1], axis=1) > 0)
    # and the log density of a sorted vector is the Normal one
    lp = model.compile_logp(vars=[model["means_z_ordered"]], jacobian=False, mode=MODE)
    point = model.initial_point()
    z = np.array([-0.3, 0.2, 1.1])
    point["means_z_ordered_ordered__"] = np.r_[z[0], np.log(np.diff(z))]
    from scipy.stats import norm

    np.testing.assert_allclose(lp(point), norm(0, 2.0).logpdf(z).sum(), rtol=1e-12)
    with pytest.raises(ValueError, match=r"'order_means' must be a feature index"):
        build_model(X, 3, order_means=2)


def test_initial_point_sorts_components_under_order_means(data3d):
    X = data3d
    em = GaussianMixtureEM(2, random_state=0).fit(X)
    model = build_model(X, 2, order_means=0)
    point = transformed(
        model, initial_point(model, em.weights_, em.means_, em.covariances_)
    )
    w, mu, cov = deterministics(model)(point)
    order = np.argsort(em.means_[:, 0])
    np.testing.assert_allclose(w, em.weights_[order], rtol=1e-9)
    np.testing.assert_allclose(mu, em.means_[order], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cov, em.covariances_[order], rtol=1e-9)


def test_standardisation():
    X = np.array([[1.0, 5.0, 10.0], [3.0, 5.0, 30.0], [5.0, 5.0, 20.0]])
    loc, scale = standardisation(X, "full")
    np.testing.assert_allclose(loc, [3.0, 5.0, 20.0])
    sd = X.std(axis=0)
    fallback = np.exp(np.mean(np.log(sd[[0, 2]])))
    np.testing.assert_allclose(scale, [sd[0], fallback, sd[2]])
    _, sph = standardisation(X[:, [0, 2]], "spherical")
    np.testing.assert_allclose(sph, np.full(2, np.sqrt(sd[0] * sd[2])))


# --------------------------------------------------------- prior predictive
@pytest.fixture(scope="module")
def prior_predictive_pair():
    X, _, _ = make_mixture(80, 2, 2, random_state=4)
    a, b = 1000.0, np.array([50.0, -7.0])
    est = GaussianMixtureBayes(2, covariance_type="diag", random_state=11)
    return (
        X,
        a,
        b,
        est.sample_prior_predictive(X, draws=100),
        est.sample_prior_predictive(a * X + b, draws=100),
    )


def test_sample_prior_predictive_has_the_data_scale(prior_predictive_pair):
    X, a, b, pp1, pp2 = prior_predictive_pair
    x1 = pp1["prior_predictive"]["x"].values
    x2 = pp2["prior_predictive"]["x"].values
    assert x1.shape == (1, 100, *X.shape)
    assert {"weights", "means", "covariances"} <= set(pp1["prior"].data_vars)
    # same seed, data in other units: the same draws in those units
    np.testing.assert_allclose(x2, a * x1 + b, rtol=1e-9, atol=1e-9 * a)
    # and on the data's scale: per-draw sds within a factor of the data's
    sd_ratio = np.median(x1.std(axis=2), axis=(0, 1)) / X.std(axis=0)
    assert np.all((sd_ratio > 0.3) & (sd_ratio < 5)), sd_ratio
    centre = np.median(x1.mean(axis=2), axis=(0, 1))
    assert np.all(np.abs(centre - X.mean(axis=0)) < X.std(axis=0)), centre
