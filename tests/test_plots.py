"""Tests of bayes_gmm.plots on the returned structure (Agg backend).

Oracles: the covariance matrices built here from each type's EM shape and
their eigen-decomposition (numpy.linalg.eigh), scikit-learn's
predict_proba and score_samples on the same parameters, scipy's normal
density, and the criteria table itself for the picked markers.
"""

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.patches import Ellipse
from scipy.stats import norm
from sklearn.mixture import GaussianMixture

from bayes_gmm import GaussianMixtureEM, make_mixture
from bayes_gmm.plots import (
    ellipse_geometry,
    plot_clusters,
    plot_comparison,
    plot_covariance_types,
    plot_criteria,
    plot_density,
    plot_pairs,
    plot_posterior_ellipses,
    plot_uncertainty,
)
from bayes_gmm.selection import fit_em_grid

matplotlib.use("Agg")

TYPES = ("full", "tied", "diag", "spherical")
N = 150
K = 3


@pytest.fixture(scope="module")
def data():
    X, _, _ = make_mixture(
        N, K, 2, separation=5.0, weights=[0.6, 0.3, 0.1], random_state=2
    )
    return X


@pytest.fixture(scope="module")
def fits(data):
    return {
        t: GaussianMixtureEM(K, covariance_type=t, n_init=2, random_state=0).fit(data)
        for t in TYPES
    }


@pytest.fixture(scope="module")
def grid(data):
    return fit_em_grid(data, [1, 2, 3], TYPES, n_init=1, random_state=0)


def full_covariances(model):
    """Oracle: (K, D, D) covariances written out per type, independently."""
    cov = np.asarray(model.covariances_)
    k, d = model.means_.shape
    if model.covariance_type == "full":
        return cov
    if model.covariance_type == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if model.covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return cov[:, None, None] * np.eye(d)


def sklearn_copy(model):
    k, d = model.means_.shape
    sk = GaussianMixture(k, covariance_type=model.covariance_type)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        setattr(sk, name, getattr(model, name))
    sk.n_features_in_ = d
    return sk


def render(ax, tmp_path, name="fig.png"):
    """Draw the figure to a PNG once, so a broken figure fails the test."""
    fig = np.ravel(ax)[0].figure
    path = tmp_path / name
    fig.savefig(path, dpi=40)
    assert path.stat().st_size > 1000


def ellipse_to_cov(e: Ellipse, n_std: float) -> np.ndarray:
    """The covariance an ellipse encodes: R diag(a^2, b^2) R^T."""
    a = e.width / (2 * n_std)
    b = e.height / (2 * n_std)
    th = np.radians(e.angle)
    r = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    return r @ np.diag([a**2, b**2]) @ r.T


def ellipses(ax):
    return [p for p in ax.patches if isinstance(p, Ellipse)]


# ---------------------------------------------------------------- plot_clusters
@pytest.mark.parametrize("ctype", TYPES)
def test_plot_clusters_structure(fits, data, ctype):
    model = fits[ctype]
    ax = plot_clusters(model, data)
    assert isinstance(ax, Axes)
    assert len(ellipses(ax)) == K * 3
    scatter = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(scatter) == 1
    assert scatter[0].get_offsets().shape == (N, 2)
    np.testing.assert_allclose(scatter[0].get_offsets(), data)


def test_plot_clusters_renders(fits, data, tmp_path):
    render(plot_clusters(fits["full"], data), tmp_path)


@pytest.mark.parametrize("ctype", TYPES)
def test_ellipses_encode_covariances(fits, data, ctype):
    model = fits[ctype]
    n_std = (1, 2.5)
    ax = plot_clusters(model, data, n_std=n_std)
    cov = full_covariances(model)
    es = ellipses(ax)
    assert len(es) == K * len(n_std)
    for idx, e in enumerate(es):
        c, s = divmod(idx, len(n_std))
        np.testing.assert_allclose(e.center, model.means_[c], rtol=1e-12)
        np.testing.assert_allclose(ellipse_to_cov(e, n_std[s]), cov[c], atol=1e-10)


def test_ellipse_geometry_full_vs_eigh(fits):
    model = fits["full"]
    for c in range(K):
        cov = model.covariances_[c]
        evals, evecs = np.linalg.eigh(cov)
        for n_std in (1, 2, 3):
            w, h, angle = ellipse_geometry(cov, n_std)
            np.testing.assert_allclose(w, 2 * n_std * np.sqrt(evals.max()), rtol=1e-12)
            np.testing.assert_allclose(h, 2 * n_std * np.sqrt(evals.min()), rtol=1e-12)
            major = evecs[:, np.argmax(evals)]
            direction = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
            # same axis up to sign
            np.testing.assert_allclose(abs(direction @ major), 1.0, atol=1e-12)


def test_points_coloured_by_label_and_sized_by_certainty():
    # overlapping components, so that certainty varies
    data, _, _ = make_mixture(200, K, 2, separation=2.0, random_state=3)
    model = GaussianMixtureEM(K, n_init=1, random_state=0).fit(data)
    ax = plot_clusters(model, data)
    sc = ax.collections[0]
    colors = sc.get_facecolors()
    sizes = sc.get_sizes()
    resp = sklearn_copy(model).predict_proba(data)
    labels = resp.argmax(axis=1)
    for lab in range(K):
        same = colors[labels == lab]
        assert np.allclose(same, same[0])
    firsts = [tuple(colors[labels == lab][0]) for lab in range(K)]
    assert len(set(firsts)) == K
    # larger certainty -> larger marker (monotone)
    order = np.argsort(resp.max(axis=1))
    assert np.all(np.diff(sizes[order]) >= -1e-12)
    assert sizes[order[-1]] > sizes[order[0]]


def test_opacity_grows_with_weight(fits, data):
    model = fits["full"]
    ax = plot_clusters(model, data, n_std=1)
    alphas = np.array([e.get_edgecolor()[3] for e in ellipses(ax)])
    heaviest, lightest = np.argmax(model.weights_), np.argmin(model.weights_)
    assert alphas[heaviest] > alphas[lightest]


def test_plot_clusters_on_given_axes_and_kwargs(fits, data):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    out = plot_clusters(
        fits["diag"],
        data,
        ax=ax,
        n_std=2,
        scatter_kwargs={"s": 5.0},
        ellipse_kwargs={"linestyle": "--"},
    )
    assert out is ax
    assert np.all(ax.collections[0].get_sizes() == 5.0)
    assert all(e.get_linestyle() == "--" for e in ellipses(ax))
    assert len(ellipses(ax)) == K


def test_plot_clusters_dataframe_names_and_feature_choice():
    X, _, _ = make_mixture(120, 2, 3, random_state=4)
    df = pd.DataFrame(X, columns=["alpha", "beta", "gamma"])
    model = GaussianMixtureEM(2, n_init=1, random_state=0).fit(df)
    ax = plot_clusters(model, df, features=("gamma", "alpha"))
    assert ax.get_xlabel() == "gamma"
    assert ax.get_ylabel() == "alpha"
    np.testing.assert_allclose(ax.collections[0].get_offsets(), X[:, [2, 0]])
    # ellipses are the marginal covariances of (gamma, alpha)
    cov = model.covariances_[:, [2, 0]][:, :, [2, 0]]
    for c, e in enumerate(ellipses(ax)[::3]):
        np.testing.assert_allclose(ellipse_to_cov(e, 1), cov[c], atol=1e-10)
    # names also come from the fitted model when X is an array
    ax2 = plot_clusters(model, X, features=(1, 2))
    assert (ax2.get_xlabel(), ax2.get_ylabel()) == ("beta", "gamma")


def test_plot_clusters_rejects_bad_input(fits, data):
    one_d = GaussianMixtureEM(2, random_state=0).fit(data[:, :1])
    with pytest.raises(ValueError, match="plot_density"):
        plot_clusters(one_d, data[:, :1])
    with pytest.raises(ValueError, match="Unknown feature"):
        plot_clusters(fits["full"], data, features=("a", "b"))
    with pytest.raises(ValueError, match="out of range"):
        plot_clusters(fits["full"], data, features=(0, 5))


# ------------------------------------------------------------------- plot_pairs
def test_plot_pairs(tmp_path):
    X, _, _ = make_mixture(120, 2, 3, random_state=5)
    model = GaussianMixtureEM(2, n_init=1, random_state=0).fit(X)
    axes = plot_pairs(model, X)
    assert axes.shape == (3, 3)
    for r in range(3):
        for c in range(3):
            if r == c:
                assert len(ellipses(axes[r, c])) == 0
                assert len(axes[r, c].patches) > 0  # histogram bars
            else:
                assert len(ellipses(axes[r, c])) == 2 * 3
                np.testing.assert_allclose(
                    axes[r, c].collections[0].get_offsets(), X[:, [c, r]]
                )
    assert axes[2, 0].get_xlabel() == "x0"
    assert axes[1, 0].get_ylabel() == "x1"
    render(axes, tmp_path)


# -------------------------------------------------------- plot_covariance_types
def test_plot_covariance_types_from_grid(grid, data, tmp_path):
    axes = plot_covariance_types(data, grid)
    assert len(axes) == 4
    t = grid.table
    for a, ctype in zip(axes, TYPES, strict=True):
        sub = t[t["covariance_type"] == ctype]
        k_best = int(sub.loc[sub["bic"].idxmin(), "n_components"])
        assert a.get_title().startswith(f"{ctype}, K={k_best}")
        assert len(ellipses(a)) == k_best * 3
        assert a.collections[0].get_offsets().shape == (N, 2)
    render(axes, tmp_path)


def test_plot_covariance_types_fixed_k_and_dict(grid, fits, data):
    axes = plot_covariance_types(data, grid, n_components=2)
    assert [len(ellipses(a)) for a in axes] == [2 * 3] * 4
    axes = plot_covariance_types(data, fits, n_std=1)
    assert [a.get_title() for a in axes] == [f"{t}, K={K}" for t in TYPES]
    assert [len(ellipses(a)) for a in axes] == [K] * 4
    with pytest.raises(ValueError, match="pass n_components"):
        plot_covariance_types(data, grid.fits)


# ---------------------------------------------------------------- plot_criteria
def lines_by_label(ax):
    return {ln.get_label(): ln for ln in ax.get_lines() if ln.get_gid() != "pick"}


def test_plot_criteria(grid):
    t = grid.table
    axes = plot_criteria(t)
    assert len(axes) == 3
    for a, crit in zip(axes, ("aic", "bic", "icl"), strict=True):
        lines = lines_by_label(a)
        assert set(lines) == set(TYPES)
        for ctype, ln in lines.items():
            sub = t[t["covariance_type"] == ctype].sort_values("n_components")
            np.testing.assert_allclose(ln.get_xdata(), sub["n_components"])
            np.testing.assert_allclose(ln.get_ydata(), sub[crit])
        picks = [ln for ln in a.get_lines() if ln.get_gid() == "pick"]
        assert len(picks) == 1
        best = t.loc[t[crit].idxmin()]
        assert picks[0].get_xdata()[0] == best["n_components"]
        assert picks[0].get_ydata()[0] == best[crit]
        assert best["covariance_type"] in picks[0].get_label()
        assert a.get_xlabel() == "number of components K"
        assert crit.upper() in a.get_ylabel()


def test_plot_criteria_skips_failed_rows():
    table = pd.DataFrame(
        {
            "covariance_type": ["full"] * 3 + ["diag"] * 3,
            "n_components": [1, 2, 3] * 2,
            "aic": [5.0, 3.0, np.nan, 6.0, 4.0, 2.0],
            "bic": [5.0, 3.0, np.nan, 6.0, 4.0, 4.5],
            "icl": [5.0, 3.0, np.nan, 6.0, 4.0, 4.5],
        }
    )
    axes = plot_criteria(table)
    full = lines_by_label(axes[1])["full"]
    np.testing.assert_allclose(full.get_xdata(), [1, 2])
    pick = [ln for ln in axes[0].get_lines() if ln.get_gid() == "pick"][0]
    assert (pick.get_xdata()[0], pick.get_ydata()[0]) == (3, 2.0)


def test_plot_criteria_elpd_panel(grid, tmp_path):
    t = grid.table.copy()
    rng = np.random.default_rng(0)
    t["elpd_loo"] = -t["bic"] / 2 + rng.normal(size=len(t))
    t["elpd_loo_se"] = rng.uniform(1, 3, size=len(t))
    axes = plot_criteria(t)
    assert len(axes) == 4
    elpd_ax = axes[3]
    containers = [c for c in elpd_ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(containers) == len(TYPES)
    pick = [ln for ln in elpd_ax.get_lines() if ln.get_gid() == "pick"][0]
    best = t.loc[t["elpd_loo"].idxmax()]
    assert pick.get_ydata()[0] == best["elpd_loo"]
    assert "higher" in elpd_ax.get_ylabel()
    # without the se column there is no elpd panel
    assert len(plot_criteria(t.drop(columns="elpd_loo_se"))) == 3
    render(axes, tmp_path)


def test_plot_criteria_one_elpd_panel_per_method(grid, tmp_path):
    t = grid.table.copy()
    rng = np.random.default_rng(1)
    nuts_rows = (t["n_components"] >= 2) & t["covariance_type"].isin(["full", "tied"])
    advi_rows = (t["n_components"] == 3) & (t["covariance_type"] == "full")
    for method, rows in (("nuts", nuts_rows), ("advi", advi_rows)):
        t[f"{method}_elpd_loo"] = np.where(
            rows, -t["bic"] / 2 + rng.normal(size=len(t)), np.nan
        )
        t[f"{method}_elpd_loo_se"] = np.where(rows, 2.0, np.nan)
    axes = plot_criteria(t)
    assert axes.shape == (5,)  # 3 criteria + 2 elpd panels, in 2 rows
    assert len(axes[0].figure.axes) == 5  # the spare sixth Axes is removed
    nuts_ax, advi_ax = axes[3], axes[4]
    assert nuts_ax.get_title() == "elpd LOO (NUTS) (± 1 se)"
    assert advi_ax.get_title() == "elpd LOO (ADVI) (± 1 se)"
    # one error bar per covariance type the method fitted, only its rows
    nuts_bars = [c for c in nuts_ax.containers if isinstance(c, ErrorbarContainer)]
    assert sorted(c.get_label() for c in nuts_bars) == ["full", "tied"]
    for c in nuts_bars:
        sub = t[nuts_rows & (t["covariance_type"] == c.get_label())]
        np.testing.assert_allclose(c.lines[0].get_ydata(), sub["nuts_elpd_loo"])
    pick = [ln for ln in nuts_ax.get_lines() if ln.get_gid() == "pick"][0]
    best = t.loc[t["nuts_elpd_loo"].idxmax()]
    assert (pick.get_xdata()[0], pick.get_ydata()[0]) == (
        best["n_components"],
        best["nuts_elpd_loo"],
    )
    assert len([c for c in advi_ax.containers if isinstance(c, ErrorbarContainer)]) == 1
    # every panel spans the K of the grid, even with one Bayesian point
    for a in axes[:5]:
        lo, hi = a.get_xlim()
        assert lo < 1 and hi > 3
    render(axes, tmp_path)


def test_plot_criteria_errors(grid):
    with pytest.raises(ValueError, match="none of the criteria"):
        plot_criteria(grid.table[["covariance_type", "n_components"]])
    with pytest.raises(ValueError, match="needs 3 Axes"):
        import matplotlib.pyplot as plt

        plot_criteria(grid.table, ax=plt.subplots(1, 2)[1])


# ----------------------------------------------------------------- plot_density
def test_plot_density_1d_against_scipy(tmp_path):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-2, 0.5, 100), rng.normal(3, 1.0, 150)])
    model = GaussianMixtureEM(2, n_init=2, random_state=0).fit(x[:, None])
    ax = plot_density(model, x, grid_size=50)
    lines = ax.get_lines()
    assert len(lines) == 2 + 1  # components + mixture
    mixture = [ln for ln in lines if ln.get_label() == "mixture density"][0]
    grid = mixture.get_xdata()
    sd = np.sqrt(model.covariances_[:, 0, 0])
    comps = model.weights_ * norm.pdf(grid[:, None], model.means_[:, 0], sd)
    np.testing.assert_allclose(mixture.get_ydata(), comps.sum(axis=1), rtol=1e-10)
    for c, ln in enumerate(lines[:2]):
        np.testing.assert_allclose(ln.get_ydata(), comps[:, c], rtol=1e-10)
    # the histogram is a density: bar areas sum to one
    bars = ax.patches
    assert np.isclose(sum(b.get_width() * b.get_height() for b in bars), 1.0)
    assert ax.get_ylabel() == "density"
    render(ax, tmp_path)


@pytest.mark.parametrize("ctype", TYPES)
def test_plot_density_marginal_1d_of_2d_model(fits, data, ctype):
    model = fits[ctype]
    ax = plot_density(model, data, features=1, show_components=False, grid_size=40)
    (line,) = ax.get_lines()
    var = full_covariances(model)[:, 1, 1]
    expect = (
        model.weights_
        * norm.pdf(line.get_xdata()[:, None], model.means_[:, 1], np.sqrt(var))
    ).sum(axis=1)
    np.testing.assert_allclose(line.get_ydata(), expect, rtol=1e-10)
    assert ax.get_xlabel() == "x1"


@pytest.mark.parametrize("ctype", ["full", "spherical"])
def test_plot_density_2d_contours(fits, data, ctype, tmp_path):
    model = fits[ctype]
    df = pd.DataFrame(data, columns=["u", "v"])
    ax = plot_density(model, df, grid_size=30)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("u", "v")
    if ctype == "full":
        render(ax, tmp_path)
    contours = [c for c in ax.collections if hasattr(c, "levels")]
    assert len(contours) == 1
    # top level = max of sklearn's log density over the same grid
    lo, hi = data.min(axis=0), data.max(axis=0)
    pad = 0.1 * (hi - lo)
    gx = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 30)
    gy = np.linspace(lo[1] - pad[1], hi[1] + pad[1], 30)
    xx, yy = np.meshgrid(gx, gy)
    sk = sklearn_copy(model).score_samples(np.column_stack([xx.ravel(), yy.ravel()]))
    np.testing.assert_allclose(max(contours[0].levels), sk.max(), rtol=1e-10)


# ================================================================ posterior draws
# Synthetic "posteriors": EM estimates perturbed draw by draw, wrapped in the
# DataTree layout of a Bayesian fit. No inference is run, and every figure can
# be checked against densities computed here with scipy from the same draws.
S_CHAINS, S_DRAWS = 2, 15


def fake_result(model, n_chains=S_CHAINS, n_draws=S_DRAWS, seed=0):
    """A MixtureResult whose draws scatter around an EM fit."""
    import xarray as xr

    from bayes_gmm.result import MixtureResult

    rng = np.random.default_rng(seed)
    k, d = model.means_.shape
    shape = (n_chains, n_draws)
    weights = rng.dirichlet(200 * model.weights_, size=shape)
    means = model.means_ + 0.1 * rng.standard_normal((*shape, k, d))
    cov = np.asarray(model.covariances_)
    factor = np.exp(0.1 * rng.standard_normal(shape))
    covs = cov * factor.reshape(*shape, *([1] * cov.ndim))
    dims = {
        "full": ("component", "feature", "feature_bis"),
        "tied": ("feature", "feature_bis"),
        "diag": ("component", "feature"),
        "spherical": ("component",),
    }[model.covariance_type]
    features = [f"x{j}" for j in range(d)]
    post = xr.Dataset(
        {
            "weights": (("chain", "draw", "component"), weights),
            "means": (("chain", "draw", "component", "feature"), means),
            "covariances": (("chain", "draw", *dims), covs),
        },
        coords={
            "component": np.arange(k),
            "feature": features,
            "feature_bis": features,
        },
    )
    tree = xr.DataTree.from_dict({"posterior": post})
    tree.attrs.update(covariance_type=model.covariance_type, n_components=k)
    return MixtureResult(tree)


def draws_full(result):
    """Oracle: (S, K) weights, (S, K, D) means, (S, K, D, D) covariances."""
    post = result.posterior
    w = post["weights"].values.reshape(-1, result.n_components)
    s, k = w.shape
    mu = post["means"].values.reshape(s, k, -1)
    d = mu.shape[-1]
    cov = post["covariances"].values.reshape(s, *post["covariances"].shape[2:])
    ctype = result.covariance_type
    if ctype == "full":
        full = cov
    elif ctype == "tied":
        full = np.broadcast_to(cov[:, None], (s, k, d, d))
    elif ctype == "diag":
        full = cov[..., :, None] * np.eye(d)
    else:
        full = cov[..., None, None] * np.eye(d)
    return w, mu, full


def resp_draws(result, X):
    """Oracle: responsibilities of every draw, (S, N, K), with scipy."""
    from scipy.stats import multivariate_normal

    w, mu, cov = draws_full(result)
    dens = np.stack(
        [
            np.column_stack(
                [
                    w[s, c] * multivariate_normal(mu[s, c], cov[s, c]).pdf(X)
                    for c in range(w.shape[1])
                ]
            )
            for s in range(w.shape[0])
        ]
    )
    return dens / dens.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def fakes(fits):
    return {t: fake_result(fits[t]) for t in TYPES}


def by_gid(ax, gid):
    return [p for p in ax.patches if p.get_gid() == gid]


# ------------------------------------------------------- plot_posterior_ellipses
@pytest.mark.parametrize("ctype", TYPES)
def test_posterior_ellipses_encode_every_draw(fakes, fits, data, ctype):
    result = fakes[ctype]
    ax = plot_posterior_ellipses(result, data, n_draws=None, n_std=1.5, em=fits[ctype])
    w, mu, cov = draws_full(result)
    post = by_gid(ax, "posterior")
    assert len(post) == S_CHAINS * S_DRAWS * K
    for idx, e in enumerate(post):
        s, c = divmod(idx, K)
        np.testing.assert_allclose(e.center, mu[s, c], rtol=1e-12)
        np.testing.assert_allclose(ellipse_to_cov(e, 1.5), cov[s, c], atol=1e-10)
    em = by_gid(ax, "em")
    assert len(em) == K
    em_cov = full_covariances(fits[ctype])
    for c, e in enumerate(em):
        np.testing.assert_allclose(e.center, fits[ctype].means_[c], rtol=1e-12)
        np.testing.assert_allclose(ellipse_to_cov(e, 1.5), em_cov[c], atol=1e-10)
        assert e.zorder > post[0].zorder  # EM on top
    np.testing.assert_allclose(ax.collections[0].get_offsets(), data)


def test_posterior_ellipses_subset_of_draws(fakes, data, tmp_path):
    result = fakes["full"]
    ax = plot_posterior_ellipses(result, data, n_draws=7, random_state=1)
    post = by_gid(ax, "posterior")
    assert len(post) == 7 * K
    assert by_gid(ax, "em") == []  # a MixtureResult carries no EM fit
    _, mu, _ = draws_full(result)
    # every ellipse is centred on a draw of its component, 7 distinct draws
    chosen = []
    for idx, e in enumerate(post):
        s_idx, c = divmod(idx, K)
        dist = np.linalg.norm(mu[:, c] - e.center, axis=1)
        assert dist.min() < 1e-12
        if c == 0:
            chosen.append(int(dist.argmin()))
        else:
            assert int(dist.argmin()) == chosen[s_idx]
    assert len(set(chosen)) == 7
    # same seed, same subset
    again = by_gid(
        plot_posterior_ellipses(result, data, n_draws=7, random_state=1), "posterior"
    )
    assert [e.center for e in again] == [e.center for e in post]
    render(ax, tmp_path)


def test_posterior_ellipses_rejects_point_fits(fits, data):
    with pytest.raises(TypeError, match="needs posterior draws"):
        plot_posterior_ellipses(fits["full"], data)


def test_posterior_ellipses_of_a_nuts_fit(nuts_fit, separated_2d, tmp_path):
    X, _, _ = separated_2d
    ax = plot_posterior_ellipses(
        nuts_fit, X, n_draws=20, ellipse_kwargs={"linewidth": 2}
    )
    assert len(by_gid(ax, "posterior")) == 20 * 2
    assert all(e.get_linewidth() == 2 for e in by_gid(ax, "posterior"))
    em = by_gid(ax, "em")  # nuts_fit.em_ by default
    assert len(em) == 2
    np.testing.assert_allclose(
        sorted(e.center[0] for e in em), np.sort(nuts_fit.em_.means_[:, 0])
    )
    assert by_gid(plot_posterior_ellipses(nuts_fit, X, em=False), "em") == []
    with pytest.raises(ValueError, match="at least 2 features"):
        plot_posterior_ellipses(nuts_fit, X[:, :1])
    render(ax, tmp_path)


# ------------------------------------------------------------- plot_uncertainty
def scatter_of(ax):
    return [c for c in ax.collections if isinstance(c, PathCollection)][0]


@pytest.mark.parametrize("ctype", ["full", "diag"])
def test_uncertainty_sd_against_scipy(fakes, data, ctype):
    result = fakes[ctype]
    ax = plot_uncertainty(result, data)
    r = resp_draws(result, data)
    mean, sd = r.mean(axis=0), r.std(axis=0, ddof=1)
    expect = sd[np.arange(N), mean.argmax(axis=1)]
    sc = scatter_of(ax)
    np.testing.assert_allclose(sc.get_array(), expect, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(sc.get_offsets(), data)
    # larger sd, larger marker
    order = np.argsort(expect)
    assert np.all(np.diff(sc.get_sizes()[order]) >= -1e-9)
    assert "posterior sd" in ax.figure.axes[-1].get_ylabel()  # the colour bar


@pytest.mark.parametrize("kind", ["1-max", "entropy"])
def test_uncertainty_point_measures(fakes, fits, data, kind):
    # EM: from sklearn's responsibilities; draws: from their posterior mean
    em_resp = sklearn_copy(fits["tied"]).predict_proba(data)
    bayes_resp = resp_draws(fakes["tied"], data).mean(axis=0)
    for fit, resp in ((fits["tied"], em_resp), (fakes["tied"], bayes_resp)):
        ax = plot_uncertainty(fit, data, kind, colorbar=False)
        if kind == "1-max":
            expect = 1 - resp.max(axis=1)
        else:
            expect = -(resp * np.log(np.clip(resp, 1e-300, None))).sum(axis=1)
        np.testing.assert_allclose(
            scatter_of(ax).get_array(), expect, rtol=1e-6, atol=1e-10
        )


def test_uncertainty_defaults_errors_and_1d(fits, data, tmp_path):
    ax = plot_uncertainty(fits["full"], data)  # EM: 1 - max by default
    assert ax.figure.axes[-1].get_ylabel() == "1 - max responsibility"
    with pytest.raises(ValueError, match="needs posterior draws"):
        plot_uncertainty(fits["full"], data, "sd")
    with pytest.raises(ValueError, match="Valid options"):
        plot_uncertainty(fits["full"], data, "variance")
    render(ax, tmp_path)
    x = data[:, :1]
    model = GaussianMixtureEM(2, random_state=0).fit(x)
    ax = plot_uncertainty(model, x, scatter_kwargs={"marker": "s"})
    offsets = scatter_of(ax).get_offsets()
    np.testing.assert_allclose(offsets[:, 0], x[:, 0])
    np.testing.assert_allclose(
        offsets[:, 1], 1 - sklearn_copy(model).predict_proba(x).max(axis=1)
    )
    assert ax.get_ylabel() == "1 - max responsibility"


def test_uncertainty_of_a_nuts_fit(nuts_fit, separated_2d, tmp_path):
    X, _, _ = separated_2d
    ax = plot_uncertainty(nuts_fit, X)
    r = resp_draws(nuts_fit.result_, X)
    expect = r.std(axis=0, ddof=1)[np.arange(len(X)), r.mean(axis=0).argmax(axis=1)]
    np.testing.assert_allclose(
        scatter_of(ax).get_array(), expect, rtol=1e-6, atol=1e-12
    )
    render(ax, tmp_path)


# ---------------------------------------------------- plot_density with draws
def band_bounds(ax):
    """Lower and upper edge of the credible band, by x."""
    (band,) = [c for c in ax.collections if c.get_gid() == "band"]
    v = band.get_paths()[0].vertices
    xs = np.unique(v[:, 0])
    lo = np.array([v[v[:, 0] == x, 1].min() for x in xs])
    hi = np.array([v[v[:, 0] == x, 1].max() for x in xs])
    return xs, lo, hi


@pytest.mark.parametrize("ctype", TYPES)
def test_density_band_1d_against_scipy(ctype):
    x = np.concatenate(
        [
            np.random.default_rng(1).normal(-2, 0.6, 80),
            np.random.default_rng(2).normal(2, 1, 120),
        ]
    )
    em = GaussianMixtureEM(2, covariance_type=ctype, random_state=0).fit(x[:, None])
    result = fake_result(em)
    ax = plot_density(result, x, em=em, n_draws=None, grid_size=40, ci_prob=0.8)
    w, mu, cov = draws_full(result)
    density = lines_by_label(ax)["posterior predictive"]
    grid = density.get_xdata()
    comps = w[:, None, :] * norm.pdf(
        grid[None, :, None], mu[:, None, :, 0], np.sqrt(cov[:, None, :, 0, 0])
    )
    per_draw = comps.sum(axis=-1)  # (S, G)
    np.testing.assert_allclose(density.get_ydata(), per_draw.mean(axis=0), rtol=1e-10)
    xs, lo, hi = band_bounds(ax)
    np.testing.assert_allclose(xs, grid)
    np.testing.assert_allclose(
        lo, np.quantile(per_draw, 0.1, axis=0), rtol=1e-10, atol=1e-300
    )
    np.testing.assert_allclose(
        hi, np.quantile(per_draw, 0.9, axis=0), rtol=1e-10, atol=1e-300
    )
    assert np.all(lo <= density.get_ydata() + 1e-15)
    # components: posterior means of the weighted component densities
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 2
    for c, ln in enumerate(dashed):
        np.testing.assert_allclose(
            ln.get_ydata(), comps[..., c].mean(axis=0), rtol=1e-10
        )
    (em_line,) = [ln for ln in ax.get_lines() if ln.get_gid() == "em"]
    sd = np.sqrt(full_covariances(em)[:, 0, 0])
    np.testing.assert_allclose(
        em_line.get_ydata(),
        (em.weights_ * norm.pdf(grid[:, None], em.means_[:, 0], sd)).sum(axis=1),
        rtol=1e-10,
    )
    assert "80% credible band" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_density_band_of_a_nuts_fit_marginal(nuts_fit, separated_2d, tmp_path):
    X, _, _ = separated_2d
    ax = plot_density(nuts_fit, X, features=1, n_draws=None, grid_size=30)
    w, mu, cov = draws_full(nuts_fit.result_)
    grid = lines_by_label(ax)["posterior predictive"].get_xdata()
    per_draw = (
        w[:, None, :]
        * norm.pdf(
            grid[None, :, None], mu[:, None, :, 1], np.sqrt(cov[:, None, :, 1, 1])
        )
    ).sum(axis=-1)
    _, lo, hi = band_bounds(ax)
    np.testing.assert_allclose(
        lo, np.quantile(per_draw, 0.03, axis=0), rtol=1e-8, atol=1e-300
    )
    np.testing.assert_allclose(
        hi, np.quantile(per_draw, 0.97, axis=0), rtol=1e-8, atol=1e-300
    )
    assert len([ln for ln in ax.get_lines() if ln.get_gid() == "em"]) == 1
    render(ax, tmp_path)


def test_density_2d_posterior_predictive_contours(fakes, fits, data, tmp_path):
    from scipy.stats import multivariate_normal

    result = fakes["full"]
    ax = plot_density(result, data, em=fits["full"], grid_size=25, n_draws=None)
    contours = [c for c in ax.collections if hasattr(c, "levels")]
    assert len(contours) == 2
    posterior = [c for c in contours if c.get_gid() != "em"][0]
    lo, hi = data.min(axis=0), data.max(axis=0)
    pad = 0.1 * (hi - lo)
    gx = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 25)
    gy = np.linspace(lo[1] - pad[1], hi[1] + pad[1], 25)
    pts = np.column_stack([a.ravel() for a in np.meshgrid(gx, gy)])
    w, mu, cov = draws_full(result)
    dens = sum(
        w[s, c] * multivariate_normal(mu[s, c], cov[s, c]).pdf(pts)
        for s in range(len(w))
        for c in range(K)
    ) / len(w)
    np.testing.assert_allclose(max(posterior.levels), np.log(dens).max(), rtol=1e-10)
    assert "posterior predictive" in ax.get_title()
    render(ax, tmp_path)


def test_clusters_of_a_result_use_posterior_means(fakes, data):
    result = fakes["diag"]
    ax = plot_clusters(result, data, n_std=1)
    _, _, cov = draws_full(result)
    mean_cov = result.posterior["covariances"].mean(("chain", "draw")).values
    for c, e in enumerate(ellipses(ax)):
        np.testing.assert_allclose(
            ellipse_to_cov(e, 1), np.diag(mean_cov[c]), atol=1e-10
        )


# -------------------------------------------------------------- plot_comparison
def comparison_table():
    """A table in compare_fits' layout, with values chosen here."""
    rng = np.random.default_rng(3)
    value = np.array([0.4, 0.6, -1.0, 2.5, 30.0, 0.7])
    sd = np.array([0.03, 0.03, 0.1, 0.2, 2.0, 0.05])
    t = pd.DataFrame(
        {
            "parameter": [f"p{i}" for i in range(6)],
            "em": value + rng.normal(0, 1, 6) * sd,
            "em_se": 0.9 * sd,
            "nuts_mean": value,
            "nuts_sd": sd,
            "nuts_lower": value - 1.8 * sd,
            "nuts_upper": value + 2.1 * sd,
            "advi_mean": value + 0.3 * sd,
            "advi_sd": 0.5 * sd,
            "advi_lower": value - 0.5 * sd,
            "advi_upper": value + 1.1 * sd,
        }
    )
    t["flag_em_outside"] = [False, False, True, False, False, False]
    return t


def bars(container):
    """x of the markers and the (left, right) ends of the horizontal bars."""
    x = container.lines[0].get_xdata()
    segs = container.lines[2][0].get_segments()
    return np.asarray(x), np.array([[s[0][0], s[1][0]] for s in segs])


def test_plot_comparison_standardised_against_hand_values(tmp_path):
    t = comparison_table()
    ax = plot_comparison(t)
    em, nuts, advi = ax.containers
    assert [c.get_label() for c in ax.containers] == ["EM", "NUTS", "ADVI"]
    mu, sd = t["nuts_mean"].to_numpy(), t["nuts_sd"].to_numpy()
    x, ends = bars(em)
    np.testing.assert_allclose(x, (t["em"] - mu) / sd, rtol=1e-12)
    np.testing.assert_allclose(ends[:, 0], (t["em"] - 2 * t["em_se"] - mu) / sd)
    np.testing.assert_allclose(ends[:, 1], (t["em"] + 2 * t["em_se"] - mu) / sd)
    x, ends = bars(nuts)
    np.testing.assert_allclose(x, 0.0, atol=1e-12)
    np.testing.assert_allclose(ends, np.tile([-1.8, 2.1], (6, 1)), rtol=1e-10)
    x, ends = bars(advi)
    np.testing.assert_allclose(x, 0.3, rtol=1e-10)
    np.testing.assert_allclose(ends, np.tile([-0.5, 1.1], (6, 1)), rtol=1e-10)
    # rows from the top down, the flagged one in red
    labels = [lab.get_text() for lab in ax.get_yticklabels()]
    ys = ax.get_yticks()
    assert [lab for _, lab in sorted(zip(-ys, labels, strict=True))] == list(
        t["parameter"]
    )
    red = [lab.get_text() for lab in ax.get_yticklabels() if lab.get_color() != "black"]
    assert red == ["p2"]
    assert "NUTS posterior sds" in ax.get_xlabel()
    render(ax, tmp_path)


def test_plot_comparison_raw_and_choice_of_methods():
    t = comparison_table()
    ax = plot_comparison(t, scale="raw", methods=["em", "advi"])
    em, advi = ax.containers
    np.testing.assert_allclose(bars(em)[0], t["em"])
    np.testing.assert_allclose(bars(advi)[1], t[["advi_lower", "advi_upper"]])
    # without interval columns, +- 2 sd
    ax = plot_comparison(t.drop(columns=["advi_lower", "advi_upper"]), scale="raw")
    ends = bars(ax.containers[2])[1]
    np.testing.assert_allclose(ends[:, 0], t["advi_mean"] - 2 * t["advi_sd"])
    # EM alone: standardised by its own se
    ax = plot_comparison(t[["parameter", "em", "em_se"]])
    np.testing.assert_allclose(bars(ax.containers[0])[1], np.tile([-2, 2], (6, 1)))


def test_plot_comparison_clips_a_far_off_fit():
    t = comparison_table()
    t.loc[[1, 4], "advi_mean"] = (
        t.loc[[1, 4], "nuts_mean"] + [50, -80] * t.loc[[1, 4], "nuts_sd"]
    )
    ax = plot_comparison(t, clip=5)
    assert ax.get_xlim() == (-5, 5)
    arrows = [ln for ln in ax.get_lines() if ln.get_gid() == "offscale"]
    assert sorted((ln.get_marker(), len(ln.get_xdata())) for ln in arrows) == [
        ("<", 1),
        (">", 1),
    ]
    assert "ADVI: 2" in ax.get_title()
    # no clipping asked: the axis reaches the far estimate
    assert plot_comparison(t, clip=None).get_xlim()[0] < -80


def test_plot_comparison_errors():
    t = comparison_table()
    with pytest.raises(ValueError, match="Valid options are"):
        plot_comparison(t, scale="log")
    with pytest.raises(ValueError, match="empty"):
        plot_comparison(t.iloc[:0])
    with pytest.raises(ValueError, match="no estimate column for 'pathfinder'"):
        plot_comparison(t, methods=["pathfinder"])
    with pytest.raises(ValueError, match="no estimates to compare"):
        plot_comparison(t[["parameter"]])


def test_plot_comparison_of_compare_fits_table(nuts_fit, separated_2d, tmp_path):
    from bayes_gmm.comparison import compare_fits
    from bayes_gmm.uncertainty import bootstrap_em

    X, _, _ = separated_2d
    boot = bootstrap_em(nuts_fit.em_, X, n_boot=40, random_state=0)
    table = compare_fits(boot, nuts_fit, n_samples=500, random_state=0)
    ax = plot_comparison(table)
    assert [c.get_label() for c in ax.containers] == ["EM", "NUTS"]
    assert len(ax.get_yticks()) == len(table)
    # EM marker: (estimate - posterior mean) / posterior sd, from the table
    x, ends = bars(ax.containers[0])
    z = (table["em"] - table["nuts_mean"]) / table["nuts_sd"]
    np.testing.assert_allclose(x, z, rtol=1e-10)
    half = 2 * table["em_se"] / table["nuts_sd"]
    np.testing.assert_allclose(ends[:, 1] - ends[:, 0], 2 * half, rtol=1e-10)
    flagged = set(table.loc[table["flagged"], "parameter"])
    red = {lab.get_text() for lab in ax.get_yticklabels() if lab.get_color() != "black"}
    assert red == flagged
    render(ax, tmp_path)


def test_posterior_ellipses_of_a_bootstrap(fits, data):
    from bayes_gmm.uncertainty import bootstrap_em

    boot = bootstrap_em(fits["spherical"], data, n_boot=12, random_state=0)
    ax = plot_posterior_ellipses(boot, data, n_draws=None, em=fits["spherical"])
    assert len(by_gid(ax, "posterior")) == 12 * K
    assert len(by_gid(ax, "em")) == K
    _, mu, cov = draws_full(boot)
    for idx, e in enumerate(by_gid(ax, "posterior")):
        s, c = divmod(idx, K)
        np.testing.assert_allclose(ellipse_to_cov(e, 2.0), cov[s, c], atol=1e-10)


# ----------------------------------------------- the contract of every plot_*
# Each case: how many Axes the figure needs, the call (given the Axes), and
# a per-element kwargs override with the artist kind it must reach.
def _contract_cases(fits, data, grid, fakes):
    em = fits["full"]
    em_1d = GaussianMixtureEM(2, random_state=0).fit(data[:, :1])
    return {
        "plot_clusters": (
            1,
            lambda ax: plot_clusters(em, data, ax=ax, scatter_kwargs={"gid": "user"}),
        ),
        "plot_pairs": (
            (2, 2),
            lambda ax: plot_pairs(em, data, ax=ax, scatter_kwargs={"gid": "user"}),
        ),
        "plot_posterior_ellipses": (
            1,
            lambda ax: plot_posterior_ellipses(
                fakes["full"], data, ax=ax, scatter_kwargs={"gid": "user"}
            ),
        ),
        "plot_uncertainty": (
            1,
            lambda ax: plot_uncertainty(
                fakes["full"], data, ax=ax, scatter_kwargs={"gid": "user"}
            ),
        ),
        "plot_density": (
            1,
            lambda ax: plot_density(
                em_1d, data[:, :1], ax=ax, hist_kwargs={"gid": "user"}
            ),
        ),
        "plot_criteria": (
            (1, 3),
            lambda ax: plot_criteria(grid.table, ax=ax, line_kwargs={"gid": "user"}),
        ),
        "plot_comparison": (
            1,
            lambda ax: plot_comparison(
                comparison_table(), ax=ax, errorbar_kwargs={"gid": "user"}
            ),
        ),
        "plot_covariance_types": (
            (1, 4),
            lambda ax: plot_covariance_types(
                data, grid, ax=ax, scatter_kwargs={"gid": "user"}
            ),
        ),
    }


def _gids(fig):
    """gids of every artist of a figure, containers included."""
    out = set()
    for ax in fig.axes:
        for artist in ax.get_children():
            out.add(artist.get_gid())
        for container in ax.containers:
            for child in container.get_children():
                out.add(child.get_gid())
    return out


CONTRACT = [
    "plot_clusters",
    "plot_pairs",
    "plot_posterior_ellipses",
    "plot_uncertainty",
    "plot_density",
    "plot_criteria",
    "plot_comparison",
    "plot_covariance_types",
]


@pytest.mark.parametrize("name", CONTRACT)
def test_every_plot_draws_on_given_axes_and_never_shows(
    name, fits, data, grid, fakes, monkeypatch, tmp_path
):
    import matplotlib.pyplot as plt

    import bayes_gmm.plots

    def no_show(*args, **kwargs):
        raise AssertionError(f"{name} called plt.show()")

    monkeypatch.setattr(plt, "show", no_show)
    monkeypatch.setattr(matplotlib.figure.Figure, "show", no_show)
    shape, call = _contract_cases(fits, data, grid, fakes)[name]
    fig, given = plt.subplots(*((1, 1) if shape == 1 else shape))
    before = plt.get_fignums()
    out = call(given)
    # the Axes given come back, on the figure given; no other figure opens
    if shape != 1:
        assert list(np.ravel(out)) == list(np.ravel(given))
    else:
        assert out is given
    assert plt.get_fignums() == before
    assert "user" in _gids(fig), f"{name} dropped the user's *_kwargs"
    assert getattr(bayes_gmm, name) is getattr(bayes_gmm.plots, name)
    render(np.ravel(given)[0], tmp_path)
