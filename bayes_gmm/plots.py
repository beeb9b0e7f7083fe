"""Figures of fitted Gaussian mixtures (matplotlib).

Every ``plot_*`` function takes ``ax=None`` (a new figure is made when it is
None), per-element ``*_kwargs`` dicts passed on to matplotlib, and returns
the Axes it drew on (an array of Axes for multi-panel figures). None of
them calls ``plt.show()``.

The functions read only the public fitted attributes shared by every
mixture estimator of the package (``weights_``, ``means_``,
``covariances_``, ``covariance_type`` and ``predict_proba``), so they work
the same for an EM fit and for the posterior-mean summary of a Bayesian
fit. Covariances are turned into full matrices through the covariance type
table of :mod:`bayes_gmm._covariance`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Ellipse
from matplotlib.ticker import MaxNLocator
from scipy.special import logsumexp

from bayes_gmm._covariance import get_covariance_type, log_gaussian_prob_cholesky

__all__ = [
    "plot_clusters",
    "plot_pairs",
    "plot_posterior_ellipses",
    "plot_uncertainty",
    "plot_comparison",
    "plot_covariance_types",
    "plot_criteria",
    "plot_density",
    "ellipse_geometry",
]

#: Display names of the inference methods.
_METHOD_LABELS = {
    "em": "EM",
    "nuts": "NUTS",
    "advi": "ADVI",
    "fullrank_advi": "full-rank ADVI",
}

#: Labels of the criteria panels of :func:`plot_criteria`.
_CRITERION_LABELS = {
    "aic": "AIC",
    "bic": "BIC",
    "icl": "ICL",
    "elpd_loo": "elpd LOO",
    "elpd_waic": "elpd WAIC",
}


# --------------------------------------------------------------------- helpers
def _new_axes(nrows=1, ncols=1, *, figsize=None, squeeze=True, **kwargs):
    import matplotlib.pyplot as plt

    if figsize is None:
        figsize = (4.8 * ncols, 4.2 * nrows) if ncols * nrows > 1 else (6.4, 4.8)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=figsize, squeeze=squeeze, layout="constrained", **kwargs
    )
    return axes


def _merge(defaults: dict, overrides: dict | None) -> dict:
    out = dict(defaults)
    if overrides:
        out.update(overrides)
    return out


def _colors(n: int) -> np.ndarray:
    """One RGBA colour per component (tab10, cycled)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return np.array([cmap(i % 10) for i in range(n)])


def _data_array(X) -> np.ndarray:
    arr = np.asarray(X, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"X must be 1-D or 2-D, got an array of shape {arr.shape}.")
    return arr


def _feature_names(model, X, n_features: int) -> list[str]:
    """Column names of X, else the model's ``feature_names_in_``, else x0..."""
    if isinstance(X, pd.DataFrame):
        return [str(c) for c in X.columns]
    if isinstance(X, pd.Series) and X.name is not None:
        return [str(X.name)]
    names = getattr(model, "feature_names_in_", None)
    if names is not None and len(names) == n_features:
        return [str(c) for c in names]
    return [f"x{i}" for i in range(n_features)]


def _feature_index(feature, names: Sequence[str]) -> int:
    if isinstance(feature, (int, np.integer)) and not isinstance(feature, bool):
        if not -len(names) <= feature < len(names):
            raise ValueError(
                f"Feature index {feature} is out of range for {len(names)} features."
            )
        return int(feature) % len(names)
    if isinstance(feature, str) and feature in names:
        return list(names).index(feature)
    raise ValueError(
        f"Unknown feature {feature!r}: give an index or one of {list(names)}."
    )


def _model_input(model, X):
    """X in the form the model expects for predict_proba (names kept)."""
    if isinstance(X, (pd.DataFrame, pd.Series)):
        return X if isinstance(X, pd.DataFrame) else X.to_frame()
    arr = _data_array(X)
    names = getattr(model, "feature_names_in_", None)
    if names is not None and len(names) == arr.shape[1]:
        return pd.DataFrame(arr, columns=list(names))
    return arr


def _component_covariances(model) -> np.ndarray:
    """Full covariance matrices of a fitted mixture, shape (K, D, D).

    Built from ``covariances_`` in the EM shape of ``covariance_type`` by way
    of the canonical Cholesky form, so no code here depends on the type.
    """
    means = np.asarray(model.means_, dtype=float)
    k, d = means.shape
    ct = get_covariance_type(model.covariance_type)
    chol = np.asarray(ct.to_cholesky(np.asarray(model.covariances_), k, d))
    return chol @ np.swapaxes(chol, -1, -2)


def ellipse_geometry(
    cov2: np.ndarray, n_std: float = 1.0
) -> tuple[float, float, float]:
    """Width, height and angle (degrees) of an n-sigma ellipse of a 2x2 covariance.

    The width lies along the eigenvector of the largest eigenvalue:

    .. math::

        w = 2 n \\sqrt{\\lambda_1},\\quad h = 2 n \\sqrt{\\lambda_2},\\quad
        \\theta = \\operatorname{atan2}(v_{1,y}, v_{1,x})

    Parameters
    ----------
    cov2 : ndarray of shape (2, 2)
        Covariance matrix.
    n_std : float, default=1.0
        Number of standard deviations.

    Returns
    -------
    width, height, angle : float
    """
    evals, evecs = np.linalg.eigh(cov2)
    evals = np.clip(evals, 0.0, None)
    major = evecs[:, 1]
    angle = float(np.degrees(np.arctan2(major[1], major[0])))
    return (
        float(2.0 * n_std * np.sqrt(evals[1])),
        float(2.0 * n_std * np.sqrt(evals[0])),
        angle,
    )


def _marginal_log_density(model, points: np.ndarray, idx: Sequence[int]) -> tuple:
    """Log density of the mixture's marginal over features ``idx``.

    Returns the total log density, shape (n,), and the weighted component
    log densities, shape (n, K). The marginal of a Gaussian mixture is the
    mixture of the marginals (sub-blocks of means and covariances).
    """
    idx = list(idx)
    weights = np.asarray(model.weights_, dtype=float)
    means = np.asarray(model.means_, dtype=float)[:, idx]
    cov = _component_covariances(model)[:, idx][:, :, idx]
    chol = np.linalg.cholesky(cov)
    with np.errstate(divide="ignore"):
        lp = log_gaussian_prob_cholesky(points, means, chol) + np.log(weights)
    return logsumexp(lp, axis=1), lp


def _axes_array(ax, n: int, nrows: int = 1, **subplots_kwargs) -> np.ndarray:
    """A flat array of ``n`` Axes: new ones, or the ones given."""
    if ax is None:
        axes = _new_axes(
            nrows, int(np.ceil(n / nrows)), squeeze=False, **subplots_kwargs
        )
        axes = np.asarray(axes).ravel()
        for spare in axes[n:]:
            spare.remove()  # an incomplete last row
        return axes[:n]
    axes = np.atleast_1d(np.asarray(ax, dtype=object)).ravel()
    if axes.size != n:
        raise ValueError(f"This figure needs {n} Axes, got {axes.size}.")
    return axes


# ------------------------------------------------------------- posterior draws
#: Floats per block when scoring many draws at many points.
_BLOCK_FLOATS = 2**22


class _PosteriorMeanFit:
    """A posterior summarised as a point fit (what ``plot_clusters`` reads).

    Wraps anything with ``draws()`` and ``posterior_mean()`` (a
    :class:`~bayes_gmm.result.MixtureResult`): ``weights_``, ``means_`` and
    ``covariances_`` are posterior means and ``predict_proba`` averages the
    responsibilities over the draws, as ``GaussianMixtureBayes`` does.
    """

    def __init__(self, result):
        mean = result.posterior_mean()
        self.result_ = result
        self.weights_ = np.asarray(mean["weights"].values, dtype=float)
        self.means_ = np.asarray(mean["means"].values, dtype=float)
        self.covariances_ = np.asarray(mean["covariances"].values, dtype=float)
        self.covariance_type = result.covariance_type
        names = _result_feature_names(result)
        if names is not None:
            self.feature_names_in_ = np.asarray(names, dtype=object)

    def predict_proba(self, X, return_std=False):
        arr = np.asarray(X, dtype=float)
        return self.result_.responsibilities(arr, return_std=return_std)


def _result_feature_names(result) -> list[str] | None:
    post = getattr(result, "posterior", None)
    if post is None or "feature" not in getattr(post, "coords", {}):
        return None
    return [str(f) for f in post["feature"].values]


def _as_result(fit):
    """The object holding posterior draws of ``fit``, or None for a point fit.

    Accepts a fitted ``GaussianMixtureBayes`` (its ``result_``), anything
    with ``draws()`` (``MixtureResult``, EM bootstrap replicates in the same
    form), or an xarray DataTree / Dataset with ``weights``, ``means`` and
    ``covariances`` over (chain, draw) and a ``covariance_type`` attribute.
    """
    import xarray as xr

    result = getattr(fit, "result_", fit)
    if callable(getattr(result, "draws", None)):
        return result
    if isinstance(result, (xr.Dataset, xr.DataTree)):
        from bayes_gmm.result import MixtureResult

        if isinstance(result, xr.Dataset):
            if "covariance_type" not in result.attrs:
                raise ValueError(
                    "A Dataset of draws needs a 'covariance_type' attribute."
                )
            tree = xr.DataTree.from_dict({"posterior": result})
            tree.attrs.update(
                covariance_type=result.attrs["covariance_type"],
                n_components=int(result.sizes["component"]),
            )
            return MixtureResult(tree)
        return MixtureResult(result)
    return None


def _point_fit(model):
    """``model`` itself when it has point estimates, else its posterior mean."""
    if hasattr(model, "weights_"):
        return model
    result = _as_result(model)
    if result is None:
        raise TypeError(
            f"Expected a fitted mixture (weights_, means_, covariances_) or "
            f"posterior draws, got {type(model).__name__}."
        )
    return _PosteriorMeanFit(result)


def _require_draws(fit, what: str):
    result = _as_result(fit)
    if result is None:
        raise TypeError(
            f"{what} needs posterior draws: pass a fitted GaussianMixtureBayes, "
            f"a MixtureResult or bootstrap replicates, got {type(fit).__name__}."
        )
    return result


def _em_of(fit, em):
    """The EM fit to overlay: ``em`` if given, else ``fit.em_``; False for none."""
    if em is False:
        return None
    if em is None or em is True:
        return getattr(fit, "em_", None)
    return em


def _subsample(n_total: int, n_draws: int | None, random_state) -> np.ndarray:
    """Sorted indices of at most ``n_draws`` of ``n_total`` draws."""
    if n_draws is None or n_draws >= n_total:
        return np.arange(n_total)
    if n_draws < 1:
        raise ValueError(f"'n_draws' must be >= 1, got {n_draws}.")
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n_total, size=int(n_draws), replace=False))


def _marginal_draws(weights, means, chol, idx):
    """Draws of the mixture's marginal over features ``idx`` (canonical form)."""
    idx = list(idx)
    cov = chol @ np.swapaxes(chol, -1, -2)
    sub = cov[..., idx, :][..., :, idx]
    return weights, means[..., idx], np.linalg.cholesky(sub)


def _draws_log_density(weights, means, chol, points):
    """Log density of every draw at every point, and its weighted components.

    Returns ``total`` of shape (S, n) and ``parts`` of shape (S, n, K) with
    ``parts[s, i, k] = log w_sk + log N(x_i | mu_sk, Sigma_sk)``, computed
    in blocks of draws.
    """
    s, k, d = means.shape
    n = points.shape[0]
    size = max(1, _BLOCK_FLOATS // max(1, n * k * d))
    parts = np.empty((s, n, k))
    for start in range(0, s, size):
        sl = slice(start, min(s, start + size))
        with np.errstate(divide="ignore"):
            log_w = np.log(weights[sl])[:, None, :]
        parts[sl] = log_gaussian_prob_cholesky(points, means[sl], chol[sl]) + log_w
    return logsumexp(parts, axis=-1), parts


def _predictive_log_density(weights, means, chol, points):
    """``log mean_s p(x_i | theta_s)`` at every point, a block of draws at a time.

    The same numbers as ``logsumexp`` over draws of :func:`_draws_log_density`'s
    total, without its (S, n, K) array and temporaries (1.5 GB of peak
    memory for 500 draws on the 100 x 100 grid, K = 3, D = 5).
    """
    s, k, d = means.shape
    n = points.shape[0]
    size = max(1, _BLOCK_FLOATS // max(1, n * k * d))
    acc = np.full(n, -np.inf)
    for start in range(0, s, size):
        sl = slice(start, min(s, start + size))
        with np.errstate(divide="ignore"):
            log_w = np.log(weights[sl])[:, None, :]
        parts = log_gaussian_prob_cholesky(points, means[sl], chol[sl]) + log_w
        acc = np.logaddexp(acc, logsumexp(logsumexp(parts, axis=-1), axis=0))
    return acc - np.log(s)


def _ellipse(center, cov2, n_std, **style) -> Ellipse:
    width, height, angle = ellipse_geometry(cov2, n_std)
    return Ellipse(tuple(center), width, height, angle=angle, **style)


# --------------------------------------------------------------- plot_clusters
def plot_clusters(
    model,
    X,
    *,
    features: tuple = (0, 1),
    ax: Axes | None = None,
    n_std: float | Sequence[float] = (1, 2, 3),
    scatter_kwargs: dict[str, Any] | None = None,
    ellipse_kwargs: dict[str, Any] | None = None,
    mean_kwargs: dict[str, Any] | None = None,
) -> Axes:
    """Data coloured by component with the n-sigma ellipses of each component.

    Points are coloured by their most probable component, their size grows
    with the certainty of the assignment (the largest responsibility), and
    each component gets one ellipse per entry of ``n_std``, more opaque for
    heavier components. With more than two features the two ``features``
    are shown, with the ellipses of the marginal covariances; see
    :func:`plot_pairs` for all pairs.

    Parameters
    ----------
    model : fitted mixture
        Anything with ``weights_``, ``means_``, ``covariances_``,
        ``covariance_type`` and ``predict_proba`` (``GaussianMixtureEM``,
        ``GaussianMixtureBayes``).
    X : array-like of shape (n_samples, n_features)
        Data, with at least two features.
    features : tuple of two int or str, default=(0, 1)
        The features on the x and y axes (indices or column names).
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure if None.
    n_std : float or sequence of float, default=(1, 2, 3)
        The ellipses drawn, in standard deviations.
    scatter_kwargs : dict, optional
        Passed to ``ax.scatter`` (e.g. ``s`` to fix the marker size).
    ellipse_kwargs : dict, optional
        Passed to every :class:`matplotlib.patches.Ellipse`.
    mean_kwargs : dict, optional
        Passed to ``ax.plot`` for the component means.

    Returns
    -------
    matplotlib.axes.Axes
        The scatter is ``ax.collections[0]``; the ellipses are
        ``ax.patches`` (K times ``len(n_std)`` of them).

    Examples
    --------
    >>> from bayes_gmm import GaussianMixtureEM, make_mixture
    >>> from bayes_gmm.plots import plot_clusters
    >>> X, _, _ = make_mixture(100, 2, 2, random_state=0)
    >>> em = GaussianMixtureEM(2, random_state=0).fit(X)
    >>> ax = plot_clusters(em, X, n_std=(1, 2))
    >>> len(ax.patches), ax.collections[0].get_offsets().shape
    (4, (100, 2))
    """
    model = _point_fit(model)
    arr = _data_array(X)
    n, d = arr.shape
    if d < 2:
        raise ValueError(
            "plot_clusters needs at least 2 features; for 1-D data use plot_density."
        )
    names = _feature_names(model, X, d)
    if len(features) != 2:
        raise ValueError(f"'features' must name two features, got {features!r}.")
    i, j = (_feature_index(f, names) for f in features)
    if ax is None:
        ax = _new_axes()
    n_std = np.atleast_1d(np.asarray(n_std, dtype=float))

    resp = np.asarray(model.predict_proba(_model_input(model, X)))
    labels = resp.argmax(axis=1)
    certainty = resp.max(axis=1)
    weights = np.asarray(model.weights_, dtype=float)
    k = weights.shape[0]
    colors = _colors(k)

    scatter = _merge(
        {
            "c": colors[labels],
            "s": 4.0 + 36.0 * certainty**2,
            "linewidths": 0,
            "alpha": 0.85,
            "zorder": 2,
        },
        scatter_kwargs,
    )
    ax.scatter(arr[:, i], arr[:, j], **scatter)

    means = np.asarray(model.means_, dtype=float)
    cov = _component_covariances(model)[:, [i, j]][:, :, [i, j]]
    share = weights / weights.max()
    for c in range(k):
        opacity = 0.2 + 0.8 * share[c]
        for ns in n_std:
            width, height, angle = ellipse_geometry(cov[c], ns)
            style = _merge(
                {
                    "facecolor": (*colors[c][:3], 0.12 * opacity),
                    "edgecolor": (*colors[c][:3], opacity),
                    "linewidth": 1.5,
                    "zorder": 3,
                },
                ellipse_kwargs,
            )
            ax.add_patch(
                Ellipse((means[c, i], means[c, j]), width, height, angle=angle, **style)
            )
    ax.plot(
        means[:, i],
        means[:, j],
        **_merge(
            {"linestyle": "none", "marker": "x", "color": "black", "zorder": 4},
            mean_kwargs,
        ),
    )
    ax.set_xlabel(names[i])
    ax.set_ylabel(names[j])
    ax.autoscale_view()
    return ax


def plot_pairs(
    model,
    X,
    *,
    features: Sequence | None = None,
    ax=None,
    n_std: float | Sequence[float] = (1, 2, 3),
    scatter_kwargs: dict[str, Any] | None = None,
    ellipse_kwargs: dict[str, Any] | None = None,
    hist_kwargs: dict[str, Any] | None = None,
    line_kwargs: dict[str, Any] | None = None,
) -> np.ndarray:
    """A pairs grid: :func:`plot_clusters` for every pair of features.

    Off the diagonal, panel ``(r, c)`` shows feature ``c`` against feature
    ``r``; on the diagonal, the histogram of the feature with the fitted
    marginal density.

    Parameters
    ----------
    model : fitted mixture
        As for :func:`plot_clusters`.
    X : array-like of shape (n_samples, n_features)
        Data.
    features : sequence of int or str, optional
        The features to show (all by default).
    ax : array of Axes of shape (m, m), optional
        Where to draw; a new figure if None.
    n_std, scatter_kwargs, ellipse_kwargs
        As for :func:`plot_clusters`.
    hist_kwargs, line_kwargs : dict, optional
        As for :func:`plot_density` (diagonal panels).

    Returns
    -------
    ndarray of Axes, shape (m, m)

    Examples
    --------
    >>> from bayes_gmm import GaussianMixtureEM, make_mixture
    >>> from bayes_gmm.plots import plot_pairs
    >>> X, _, _ = make_mixture(100, 2, 3, random_state=0)
    >>> em = GaussianMixtureEM(2, random_state=0).fit(X)
    >>> plot_pairs(em, X).shape
    (3, 3)
    """
    arr = _data_array(X)
    d = arr.shape[1]
    names = _feature_names(_point_fit(model), X, d)
    idx = (
        list(range(d))
        if features is None
        else [_feature_index(f, names) for f in features]
    )
    m = len(idx)
    if m < 2:
        raise ValueError("plot_pairs needs at least two features.")
    if ax is None:
        axes = _new_axes(m, m, squeeze=False, figsize=(2.8 * m, 2.8 * m))
    else:
        axes = np.asarray(ax, dtype=object)
        if axes.shape != (m, m):
            raise ValueError(
                f"'ax' must be a ({m}, {m}) array of Axes, got {axes.shape}."
            )
    for r in range(m):
        for c in range(m):
            a = axes[r, c]
            if r == c:
                plot_density(
                    model,
                    X,
                    features=idx[r],
                    ax=a,
                    show_components=False,
                    hist_kwargs=hist_kwargs,
                    line_kwargs=line_kwargs,
                )
                if a.get_legend() is not None:
                    a.get_legend().remove()
                a.set_ylabel("density" if c == 0 else "")
            else:
                plot_clusters(
                    model,
                    X,
                    features=(idx[c], idx[r]),
                    ax=a,
                    n_std=n_std,
                    scatter_kwargs=scatter_kwargs,
                    ellipse_kwargs=ellipse_kwargs,
                )
            if r < m - 1:
                a.set_xlabel("")
            if c > 0 and r != c:
                a.set_ylabel("")
    return axes


# ----------------------------------------------------- plot_posterior_ellipses
def plot_posterior_ellipses(
    fit,
    X,
    n_draws: int = 50,
    *,
    features: tuple = (0, 1),
    n_std: float = 2.0,
    em=None,
    random_state=0,
    ax: Axes | None = None,
    scatter_kwargs: dict[str, Any] | None = None,
    ellipse_kwargs: dict[str, Any] | None = None,
    em_kwargs: dict[str, Any] | None = None,
) -> Axes:
    """Ellipses of many posterior draws over the data, the EM ellipses on top.

    Each of ``n_draws`` posterior draws (a random subset, the same for
    every component) contributes one ``n_std`` ellipse per component, drawn
    thin and translucent in the component's colour, so that the spread of
    the ellipses shows how uncertain the positions and shapes are. The EM
    estimate is drawn over them as black dashed ellipses.

    Parameters
    ----------
    fit : GaussianMixtureBayes, MixtureResult or draws
        A fitted ``GaussianMixtureBayes`` (its ``result_`` and ``em_``), a
        :class:`~bayes_gmm.result.MixtureResult`, EM bootstrap replicates in
        the same form, or an xarray Dataset / DataTree of draws.
    X : array-like of shape (n_samples, n_features)
        Data, with at least two features.
    n_draws : int, default=50
        Number of posterior draws to show (all of them if there are fewer).
    features : tuple of two int or str, default=(0, 1)
        The features on the x and y axes; the ellipses are those of the
        marginal covariances of these two.
    n_std : float, default=2.0
        Size of the ellipses, in standard deviations.
    em : GaussianMixtureEM, bool or None, default=None
        The EM fit drawn on top. None or True: ``fit.em_`` when the fit has
        one (a ``MixtureResult`` has none); False: no EM ellipses.
    random_state : int, Generator or None, default=0
        Chooses the subset of draws.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure if None.
    scatter_kwargs : dict, optional
        Passed to ``ax.scatter`` for the data.
    ellipse_kwargs : dict, optional
        Passed to every posterior :class:`~matplotlib.patches.Ellipse`.
    em_kwargs : dict, optional
        Passed to every EM ellipse.

    Returns
    -------
    matplotlib.axes.Axes
        The posterior ellipses are the patches with gid ``"posterior"``
        (``n_draws * K`` of them, draw by draw, components in order) and
        the EM ellipses those with gid ``"em"`` (K).

    Examples
    --------
    EM bootstrap replicates have the layout of posterior draws:

    >>> from bayes_gmm import GaussianMixtureEM, make_mixture
    >>> from bayes_gmm.plots import plot_posterior_ellipses
    >>> from bayes_gmm.uncertainty import bootstrap_em
    >>> X, _, _ = make_mixture(150, 2, 2, separation=5.0, random_state=0)
    >>> em = GaussianMixtureEM(2, random_state=0).fit(X)
    >>> boot = bootstrap_em(em, X, n_boot=20, random_state=0)
    >>> ax = plot_posterior_ellipses(boot, X, n_draws=10, em=em)
    >>> [len([p for p in ax.patches if p.get_gid() == g]) for g in ("posterior", "em")]
    [20, 2]
    """
    result = _require_draws(fit, "plot_posterior_ellipses")
    arr = _data_array(X)
    d = arr.shape[1]
    if d < 2:
        raise ValueError(
            "plot_posterior_ellipses needs at least 2 features; for 1-D data use "
            "plot_density, which shows a credible band."
        )
    if len(features) != 2:
        raise ValueError(f"'features' must name two features, got {features!r}.")
    names = _feature_names(_point_fit(fit), X, d)
    i, j = (_feature_index(f, names) for f in features)
    weights, means, chol = result.draws()
    if means.shape[-1] != d:
        raise ValueError(f"X has {d} features but the fit has {means.shape[-1]}.")
    keep = _subsample(weights.shape[0], n_draws, random_state)
    _, means2, chol2 = _marginal_draws(weights[keep], means[keep], chol[keep], [i, j])
    cov2 = chol2 @ np.swapaxes(chol2, -1, -2)
    k = means.shape[1]
    colors = _colors(k)
    if ax is None:
        ax = _new_axes()
    ax.scatter(
        arr[:, i],
        arr[:, j],
        **_merge(
            {"s": 8, "color": "0.55", "linewidths": 0, "zorder": 1, "label": "data"},
            scatter_kwargs,
        ),
    )
    for s in range(len(keep)):
        for c in range(k):
            style = _merge(
                {
                    "facecolor": "none",
                    "edgecolor": (*colors[c][:3], 0.25),
                    "linewidth": 0.8,
                    "zorder": 2,
                    "gid": "posterior",
                    "label": f"component {c}: {len(keep)} posterior draws"
                    if s == 0
                    else None,
                },
                ellipse_kwargs,
            )
            ax.add_patch(_ellipse(means2[s, c], cov2[s, c], n_std, **style))
    em_fit = _em_of(fit, em)
    if em_fit is not None:
        em_means = np.asarray(em_fit.means_, dtype=float)[:, [i, j]]
        em_cov = _component_covariances(em_fit)[:, [i, j]][:, :, [i, j]]
        for c in range(em_means.shape[0]):
            style = _merge(
                {
                    "facecolor": "none",
                    "edgecolor": "black",
                    "linewidth": 1.8,
                    "linestyle": "--",
                    "zorder": 4,
                    "gid": "em",
                    "label": "EM estimate" if c == 0 else None,
                },
                em_kwargs,
            )
            ax.add_patch(_ellipse(em_means[c], em_cov[c], n_std, **style))
    ax.set_xlabel(names[i])
    ax.set_ylabel(names[j])
    ax.set_title(f"{n_std:g}-sd ellipses of {len(keep)} posterior draws")
    ax.autoscale_view()
    ax.legend(fontsize="small", loc="best")
    return ax


# ------------------------------------------------------------ plot_uncertainty
_UNCERTAINTY = {
    "sd": "posterior sd of the responsibility\nof the most probable component",
    "entropy": "entropy of the responsibilities (nats)",
    "1-max": "1 - max responsibility",
}


def _uncertainty(fit, X, kind):
    """Per-sample uncertainty of the assignment, and its largest possible value."""
    arr = _data_array(X)
    result = _as_result(fit)
    if kind is None:
        kind = "sd" if result is not None else "1-max"
    if kind not in _UNCERTAINTY:
        raise ValueError(
            f"Invalid value for 'kind': {kind!r}. Valid options are "
            f"{sorted(_UNCERTAINTY)}."
        )
    if result is not None:
        mean, sd = result.responsibilities(arr, return_std=True)
    elif kind == "sd":
        raise ValueError(
            "kind='sd' needs posterior draws (a Bayesian fit); for an EM fit use "
            "kind='1-max' or kind='entropy'."
        )
    else:
        mean = np.asarray(fit.predict_proba(_model_input(fit, X)), dtype=float)
        sd = None
    k = mean.shape[1]
    top = mean.argmax(axis=1)
    if kind == "sd":
        values = sd[np.arange(len(top)), top]
        vmax = 0.5  # a probability in [0, 1] has sd at most 1/2
    elif kind == "1-max":
        values = 1.0 - mean.max(axis=1)
        vmax = (k - 1) / k
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            values = -np.sum(np.where(mean > 0, mean * np.log(mean), 0.0), axis=1)
        vmax = np.log(k)
    return kind, values, float(vmax) if vmax > 0 else 1.0


def plot_uncertainty(
    fit,
    X,
    kind: str | None = None,
    *,
    features=(0, 1),
    ax: Axes | None = None,
    colorbar: bool = True,
    scatter_kwargs: dict[str, Any] | None = None,
    colorbar_kwargs: dict[str, Any] | None = None,
) -> Axes:
    """Where the clustering is unsure: points coloured and sized by uncertainty.

    Three measures of how unsure each sample's assignment is:

    * ``"sd"`` - the posterior standard deviation of the responsibility of
      the sample's most probable component (needs posterior draws): high
      where the fitted components themselves are uncertain;
    * ``"1-max"`` - one minus the largest (posterior mean) responsibility:
      high where components overlap, for EM and Bayesian fits alike;
    * ``"entropy"`` - the entropy of the (posterior mean) responsibilities,
      :math:`-\\sum_k \\tau_k \\log \\tau_k`.

    Colour and marker size both grow with the measure (sizes relative to
    its largest possible value: 1/2 for ``sd``, (K-1)/K for ``1-max``,
    log K for ``entropy``).

    Parameters
    ----------
    fit : fitted mixture or draws
        A ``GaussianMixtureEM``, a ``GaussianMixtureBayes``, a
        ``MixtureResult`` or draws in the same form.
    X : array-like of shape (n_samples, n_features)
        Data.
    kind : {"sd", "1-max", "entropy"}, optional
        The measure; default ``"sd"`` for fits with draws, ``"1-max"`` for
        EM.
    features : tuple of two int or str, or int or str, default=(0, 1)
        The two features on the axes. With one feature (or 1-D data) the
        x axis is that feature and the y axis is the measure.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure if None.
    colorbar : bool, default=True
        Add a colour bar labelled with the measure.
    scatter_kwargs : dict, optional
        Passed to ``ax.scatter``.
    colorbar_kwargs : dict, optional
        Passed to ``Figure.colorbar``.

    Returns
    -------
    matplotlib.axes.Axes
        The scatter is ``ax.collections[0]``; its ``get_array()`` holds the
        measure for every sample.

    Examples
    --------
    >>> from bayes_gmm import GaussianMixtureEM, make_mixture
    >>> from bayes_gmm.plots import plot_uncertainty
    >>> X, _, _ = make_mixture(100, 2, 2, separation=2.0, random_state=0)
    >>> em = GaussianMixtureEM(2, random_state=0).fit(X)
    >>> ax = plot_uncertainty(em, X)  # EM: 1 - max responsibility
    >>> values = ax.collections[0].get_array()
    >>> bool(values.min() >= 0 and values.max() <= 0.5)
    True
    """
    arr = _data_array(X)
    d = arr.shape[1]
    names = _feature_names(_point_fit(fit), X, d)
    if isinstance(features, (int, np.integer, str)) or d == 1:
        features = (features if d > 1 else 0,)
    idx = [_feature_index(f, names) for f in features]
    if len(idx) not in (1, 2):
        raise ValueError(f"'features' must name one or two features, got {features!r}.")
    kind, values, vmax = _uncertainty(fit, X, kind)
    if ax is None:
        ax = _new_axes()
    x = arr[:, idx[0]]
    y = arr[:, idx[1]] if len(idx) == 2 else values
    sc = ax.scatter(
        x,
        y,
        **_merge(
            {
                "c": values,
                "s": 6.0 + 60.0 * np.clip(values / vmax, 0.0, 1.0),
                "cmap": "plasma",
                "vmin": 0.0,
                "vmax": float(values.max()) if values.max() > 0 else vmax,
                "linewidths": 0,
                "zorder": 2,
            },
            scatter_kwargs,
        ),
    )
    label = _UNCERTAINTY[kind]
    if colorbar:
        ax.figure.colorbar(sc, ax=ax, **_merge({"label": label}, colorbar_kwargs))
    ax.set_xlabel(names[idx[0]])
    ax.set_ylabel(names[idx[1]] if len(idx) == 2 else label)
    ax.set_title("assignment uncertainty")
    return ax


# ------------------------------------------------------- plot_covariance_types
def _models_by_type(fits_or_grid, n_components, criterion):
    """[(covariance_type, model, title)] from a grid, dict or sequence."""
    table = getattr(fits_or_grid, "table", None)
    fits = getattr(fits_or_grid, "fits", None)
    out = []
    if table is not None and fits is not None:
        from bayes_gmm.selection import best_row

        for ctype in pd.unique(table["covariance_type"]):
            sub = table[table["covariance_type"] == ctype]
            if n_components is None:
                if sub[criterion].notna().sum() == 0:
                    continue
                _, k = best_row(sub, criterion)
                how = f"best {criterion.upper()}"
            else:
                k = int(n_components)
                how = None
            if (ctype, k) not in fits:
                continue
            value = sub.loc[sub["n_components"] == k, criterion]
            title = f"{ctype}, K={k}"
            if len(value) and np.isfinite(value.iloc[0]):
                title += f"\n{criterion.upper()} {value.iloc[0]:.1f}"
                if how:
                    title += f" ({how})"
            out.append((ctype, fits[(ctype, k)], title))
        if not out:
            raise ValueError("No fitted model in the grid to show.")
        return out
    if isinstance(fits_or_grid, Mapping):
        items = list(fits_or_grid.items())
        if items and isinstance(items[0][0], tuple):
            if n_components is None:
                raise ValueError(
                    "With a dict keyed by (covariance_type, K), pass n_components."
                )
            items = [
                (key[0], model) for key, model in items if key[1] == int(n_components)
            ]
        models = [model for _, model in items]
    else:
        models = list(fits_or_grid)
    if not models:
        raise ValueError("No fitted model to show.")
    for model in models:
        k = np.asarray(model.weights_).shape[0]
        out.append((model.covariance_type, model, f"{model.covariance_type}, K={k}"))
    return out


def plot_covariance_types(
    X,
    fits_or_grid,
    *,
    n_components: int | None = None,
    criterion: str = "bic",
    features: tuple = (0, 1),
    ax=None,
    n_std: float | Sequence[float] = (1, 2, 3),
    scatter_kwargs: dict[str, Any] | None = None,
    ellipse_kwargs: dict[str, Any] | None = None,
) -> np.ndarray:
    """The covariance types fitted to one data set, side by side.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Data.
    fits_or_grid : EMGrid, dict or sequence of fitted mixtures
        An :class:`~bayes_gmm.selection.EMGrid` (one panel per covariance
        type: the model with ``n_components`` components, or the one
        ``criterion`` picks within the type), a dict ``covariance_type ->
        model`` or ``(covariance_type, K) -> model`` (then give
        ``n_components``), or a sequence of fitted models.
    n_components : int, optional
        Show this K for every type (default: the best per type).
    criterion : str, default="bic"
        The criterion that picks K within each type of a grid.
    features : tuple of two int or str, default=(0, 1)
        The features shown.
    ax : array of Axes, optional
        One Axes per panel; a new 1 x n figure if None.
    n_std, scatter_kwargs, ellipse_kwargs
        As for :func:`plot_clusters`.

    Returns
    -------
    ndarray of Axes
        One per covariance type, in the order of the grid.

    Examples
    --------
    >>> from bayes_gmm import make_mixture
    >>> from bayes_gmm.plots import plot_covariance_types
    >>> from bayes_gmm.selection import fit_em_grid
    >>> X, _, _ = make_mixture(100, 2, 2, random_state=0)
    >>> grid = fit_em_grid(X, [1, 2], ("full", "spherical"), n_init=1,
    ...                    random_state=0)
    >>> [ax.get_title().splitlines()[0] for ax in plot_covariance_types(X, grid)]
    ['full, K=2', 'spherical, K=2']
    """
    panels = _models_by_type(fits_or_grid, n_components, criterion)
    axes = _axes_array(ax, len(panels), sharex=True, sharey=True)
    for a, (_, model, title) in zip(axes, panels, strict=True):
        plot_clusters(
            model,
            X,
            features=features,
            ax=a,
            n_std=n_std,
            scatter_kwargs=scatter_kwargs,
            ellipse_kwargs=ellipse_kwargs,
        )
        a.set_title(title)
    # One frame for all panels: the data, padded (wide ellipses may leave it).
    arr = _data_array(X)
    names = _feature_names(panels[0][1], X, arr.shape[1])
    i, j = (_feature_index(f, names) for f in features)
    for a in axes:
        a.set_xlim(*_padded_range(arr[:, i]))
        a.set_ylim(*_padded_range(arr[:, j]))
    for a in axes[1:]:
        a.set_ylabel("")
    return axes


def _padded_range(values, frac=0.1):
    lo, hi = float(np.min(values)), float(np.max(values))
    pad = frac * (hi - lo) if hi > lo else 1.0
    return lo - pad, hi + pad


# --------------------------------------------------------------- plot_criteria
def plot_criteria(
    table: pd.DataFrame,
    *,
    criteria: Sequence[str] = ("aic", "bic", "icl"),
    elpd: Sequence[str] | None = None,
    ax=None,
    line_kwargs: dict[str, Any] | None = None,
    pick_kwargs: dict[str, Any] | None = None,
    errorbar_kwargs: dict[str, Any] | None = None,
    focus: bool = True,
) -> np.ndarray:
    """Information criteria against K, one line per covariance type.

    One panel per criterion of ``criteria`` found in the table, and one
    panel per elpd column of ``elpd`` whose standard error column
    (``<name>_se``) is also in the table, drawn as points with +- 1 se
    bars. In each panel the model the criterion picks (lowest AIC, BIC,
    ICL; highest elpd) is marked with a star.

    Parameters
    ----------
    table : pandas.DataFrame
        A selection table (``EMGrid.table``) with ``covariance_type`` and
        ``n_components`` columns.
    criteria : sequence of str, default=("aic", "bic", "icl")
        Deviance-scale criteria to draw (lower is better).
    elpd : sequence of str, optional
        elpd-scale columns to draw with their ``_se`` (higher is better).
        Default: ``elpd_loo`` and every ``<method>_elpd_loo`` column (one
        per Bayesian method, e.g. ``nuts_elpd_loo``) that has its ``_se``;
        rows where the column is NaN (models a method did not fit) are
        left out of that panel.
    ax : Axes or array of Axes, optional
        One Axes per panel; a new figure if None (one row of panels, two
        rows beyond three panels).
    line_kwargs : dict, optional
        Passed to ``ax.plot`` for every type's line.
    pick_kwargs : dict, optional
        Passed to ``ax.plot`` for the picked-model marker (``gid="pick"``).
    errorbar_kwargs : dict, optional
        Passed to ``ax.errorbar`` in the elpd panels.
    focus : bool, default=True
        Limit the y axis to the envelope of the best type at each K, so
        that a type far behind the others (often ``spherical``) does not
        squash the differences that matter; its line leaves the panel.

    Returns
    -------
    ndarray of Axes
        One per panel, criteria first.

    Examples
    --------
    >>> from bayes_gmm import make_mixture
    >>> from bayes_gmm.plots import plot_criteria
    >>> from bayes_gmm.selection import fit_em_grid
    >>> X, _, _ = make_mixture(100, 2, 2, random_state=0)
    >>> grid = fit_em_grid(X, [1, 2, 3], ("full",), n_init=1, random_state=0)
    >>> [ax.get_title() for ax in plot_criteria(grid.table)]
    ['AIC', 'BIC', 'ICL']
    """
    for col in ("covariance_type", "n_components"):
        if col not in table.columns:
            raise ValueError(f"The table has no {col!r} column.")
    if elpd is None:
        elpd = [
            c
            for c in table.columns
            if (c == "elpd_loo" or str(c).endswith("_elpd_loo"))
            and f"{c}_se" in table.columns
        ]
    panels = [(c, None) for c in criteria if c in table.columns]
    panels += [
        (e, f"{e}_se")
        for e in elpd
        if e in table.columns
        and f"{e}_se" in table.columns
        and pd.to_numeric(table[e], errors="coerce").notna().any()
    ]
    if not panels:
        raise ValueError(
            f"The table has none of the criteria {list(criteria) + list(elpd)}."
        )
    axes = _axes_array(ax, len(panels), nrows=1 if len(panels) <= 3 else 2)
    types = list(pd.unique(table["covariance_type"]))
    colors = dict(zip(types, _colors(len(types)), strict=True))
    n_types = len(types)
    k_min = float(table["n_components"].min())
    k_max = float(table["n_components"].max())
    for a, (name, se_col) in zip(axes, panels, strict=True):
        for t_i, ctype in enumerate(types):
            sub = table[table["covariance_type"] == ctype].sort_values("n_components")
            sub = sub[np.isfinite(pd.to_numeric(sub[name], errors="coerce"))]
            ks = sub["n_components"].to_numpy(dtype=float)
            values = sub[name].to_numpy(dtype=float)
            if se_col is not None and len(values) == 0:
                continue  # no Bayesian fit of this type
            if se_col is None:
                a.plot(
                    ks,
                    values,
                    **_merge(
                        {"marker": "o", "color": colors[ctype], "label": ctype},
                        line_kwargs,
                    ),
                )
            else:
                # small horizontal offsets keep the bars of the types apart
                offset = 0.08 * (t_i - (n_types - 1) / 2)
                a.errorbar(
                    ks + offset,
                    values,
                    yerr=sub[se_col].to_numpy(dtype=float),
                    **_merge(
                        {
                            "marker": "o",
                            "color": colors[ctype],
                            "label": ctype,
                            "capsize": 3,
                        },
                        errorbar_kwargs,
                    ),
                )
        try:
            ctype, k = _pick(table, name, se_col is not None)
        except ValueError:
            pass  # no finite value: nothing to mark
        else:
            row = table[
                (table["covariance_type"] == ctype) & (table["n_components"] == k)
            ]
            a.plot(
                [k],
                [float(row[name].iloc[0])],
                **_merge(
                    {
                        "linestyle": "none",
                        "marker": "*",
                        "markersize": 16,
                        "markerfacecolor": "gold",
                        "markeredgecolor": "black",
                        "zorder": 5,
                        "gid": "pick",
                        "label": f"picked: {ctype}, K={k}",
                    },
                    pick_kwargs,
                ),
            )
        if focus:
            _focus_ylim(a, table, name, se_col)
        better = "lower" if se_col is None else "higher"
        label = _criterion_label(name)
        a.set_ylabel(f"{label} ({better} is better)")
        a.set_xlabel("number of components K")
        a.set_title(label if se_col is None else f"{label} (± 1 se)")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.set_xlim(k_min - 0.3, k_max + 0.3)  # every panel on the grid's K range
        a.legend(fontsize="small")
    return axes


def _criterion_label(name: str) -> str:
    """'BIC', 'elpd LOO', 'elpd LOO (NUTS)' for 'bic', 'elpd_loo', 'nuts_elpd_loo'."""
    if name in _CRITERION_LABELS:
        return _CRITERION_LABELS[name]
    for base, label in _CRITERION_LABELS.items():
        if name.endswith("_" + base):
            method = name[: -len(base) - 1]
            return f"{label} ({_METHOD_LABELS.get(method, method)})"
    return name


def _pick(table: pd.DataFrame, name: str, higher: bool) -> tuple[str, int]:
    """The model a column picks (selection's rule: ties go to fewer parameters)."""
    from bayes_gmm.selection import best_row

    if name in ("aic", "bic", "icl", "elpd_loo", "elpd_waic"):
        return best_row(table, name)
    # a per-method column: apply the rule of the criterion it holds
    proxy = "elpd_loo" if higher else "bic"
    renamed = table.drop(columns=[proxy], errors="ignore").rename(columns={name: proxy})
    return best_row(renamed, proxy)


def _focus_ylim(ax, table, name, se_col):
    """Y limits spanning the best value at each K (over covariance types)."""
    values = pd.to_numeric(table[name], errors="coerce")
    if se_col is None:
        env = values.groupby(table["n_components"]).min().dropna()
        lo, hi = env.min(), env.max()
    else:
        se = pd.to_numeric(table[se_col], errors="coerce").fillna(0.0)
        env_lo = (values - se).groupby(table["n_components"]).max().dropna()
        env_hi = (values + se).groupby(table["n_components"]).max().dropna()
        lo, hi = env_lo.min(), env_hi.max()
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return
    pad = 0.08 * (hi - lo) if hi > lo else 1.0
    ax.set_ylim(lo - pad, hi + pad)


# ------------------------------------------------------------- plot_comparison
#: Suffixes of the interval bounds a comparison table may use, in order.
_INTERVAL_SUFFIXES = (
    ("lower", "upper"),
    ("ci_lower", "ci_upper"),
    ("eti_lower", "eti_upper"),
    ("hdi_lower", "hdi_upper"),
    ("low", "high"),
    ("lo", "hi"),
)


def _comparison_layout(table: pd.DataFrame, methods) -> tuple[list, list[str]]:
    """[(method, estimate, spread, lower, upper)] columns and the row labels.

    Reads the tidy layout of :func:`bayes_gmm.comparison.compare_fits`: an
    EM estimate (``em`` or ``em_estimate``/``em_mean``) with its bootstrap
    standard error ``em_se``, and per Bayesian method ``<m>_mean``,
    ``<m>_sd`` and interval bounds (``<m>_lower``/``<m>_upper`` or
    ``<m>_ci_lower``/``<m>_ci_upper``, ...). A missing interval is taken as
    estimate +- 2 sd (or se).
    """
    cols = set(map(str, table.columns))
    if methods is None:
        methods = []
        if cols & {"em", "em_estimate", "em_mean"}:
            methods.append("em")
        for c in table.columns:
            c = str(c)
            if c.endswith("_mean") and not c.startswith("em_"):
                methods.append(c[: -len("_mean")])
        methods = list(dict.fromkeys(methods))
    layout = []
    for m in methods:
        est = next((c for c in (f"{m}_mean", f"{m}_estimate", m) if c in cols), None)
        if est is None:
            raise ValueError(
                f"The table has no estimate column for {m!r} ({m}_mean, "
                f"{m}_estimate or {m}); its columns are {list(table.columns)}."
            )
        spread = next((c for c in (f"{m}_sd", f"{m}_se") if c in cols), None)
        bounds = next(
            (
                (f"{m}_{a}", f"{m}_{b}")
                for a, b in _INTERVAL_SUFFIXES
                if f"{m}_{a}" in cols and f"{m}_{b}" in cols
            ),
            (None, None),
        )
        layout.append((m, est, spread, *bounds))
    if not layout:
        raise ValueError(
            "The table has no estimates to compare (expected columns such as "
            "'em', 'em_se', 'nuts_mean', 'nuts_sd', 'nuts_lower', 'nuts_upper')."
        )
    label_col = next((c for c in ("parameter", "name", "label") if c in cols), None)
    if label_col is not None:
        labels = [str(v) for v in table[label_col]]
    else:
        parts = [
            c for c in ("variable", "component", "feature", "feature_bis") if c in cols
        ]
        if not parts:
            labels = [str(i) for i in table.index]
        else:
            labels = [
                " ".join(str(row[c]) for c in parts if pd.notna(row[c]))
                for _, row in table.iterrows()
            ]
    return layout, labels


def plot_comparison(
    table: pd.DataFrame,
    *,
    methods: Sequence[str] | None = None,
    scale: str = "sd",
    clip: float | None = 6.0,
    ax: Axes | None = None,
    errorbar_kwargs: dict[str, Any] | None = None,
    flag_kwargs: dict[str, Any] | None = None,
) -> Axes:
    """EM vs NUTS vs ADVI, parameter by parameter, as a forest plot.

    One row per scalar parameter of the comparison table
    (:func:`~bayes_gmm.comparison.compare_fits`), one marker per method with
    its interval: the EM estimate +- 2 bootstrap standard errors, and each
    Bayesian method's posterior mean with its credible interval. Rows the
    table flags (a boolean column whose name contains ``flag`` or
    ``outside``) get a red label.

    Parameters have different units (weights, means, covariances), so by
    default every row is standardised by a reference: the first Bayesian
    method's posterior mean and sd (EM's estimate and se when there is no
    Bayesian method). The x axis then reads "how many posterior sds away",
    the reference sits at 0 with its interval, and the reference mean and
    sd are written at the right of each row.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per parameter, with a ``parameter`` (or ``name``) column and,
        per method, an estimate (``em``/``<m>_mean``), a spread (``em_se``/
        ``<m>_sd``) and interval bounds (``<m>_lower``/``<m>_upper``).
    methods : sequence of str, optional
        Methods to draw, in this order (default: every method found, EM
        first).
    scale : {"sd", "raw"}, default="sd"
        ``"sd"``: standardise each row by the reference; ``"raw"``: the
        parameters in their own units (useful for one kind of parameter).
    clip : float or None, default=6.0
        With ``scale="sd"``, the x axis stops at +- ``clip`` reference sds,
        so that one far-off fit (a diverged ADVI, say) does not squash the
        others; an estimate beyond is drawn as an arrow at the edge (gid
        ``"offscale"``) and listed in the title. None: no limit.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure (its height grows with the rows) if
        None.
    errorbar_kwargs : dict, optional
        Passed to every ``ax.errorbar`` (one per method, labelled by method).
    flag_kwargs : dict, optional
        Text properties of the labels of flagged rows.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax.containers`` holds one ``ErrorbarContainer`` per method; rows
        run from the top (first table row) down.

    Examples
    --------
    >>> import pandas as pd
    >>> from bayes_gmm.plots import plot_comparison
    >>> table = pd.DataFrame({
    ...     "parameter": ["weights[0]", "weights[1]"],
    ...     "em": [0.35, 0.65], "em_se": [0.03, 0.03],
    ...     "nuts_mean": [0.36, 0.64], "nuts_sd": [0.03, 0.03],
    ...     "nuts_lower": [0.30, 0.58], "nuts_upper": [0.42, 0.70]})
    >>> ax = plot_comparison(table, scale="raw")
    >>> [c.get_label() for c in ax.containers]
    ['EM', 'NUTS']
    """
    if scale not in ("sd", "raw"):
        raise ValueError(
            f"Invalid value for 'scale': {scale!r}. Valid options are ['raw', 'sd']."
        )
    if len(table) == 0:
        raise ValueError("The comparison table is empty.")
    layout, labels = _comparison_layout(table, methods)
    n = len(table)
    if ax is None:
        ax = _new_axes(figsize=(7.5, 1.2 + 0.32 * n))
    ref = next((item for item in layout if item[0] != "em"), layout[0])
    if scale == "sd":
        center = table[ref[1]].to_numpy(dtype=float)
        spread = (
            table[ref[2]].to_numpy(dtype=float) if ref[2] is not None else np.ones(n)
        )
        spread = np.where(np.isfinite(spread) & (spread > 0), spread, np.nan)
    else:
        center, spread = np.zeros(n), np.ones(n)
    y = np.arange(n)[::-1].astype(float)
    width = 0.6
    offsets = (
        np.linspace(-width / 2, width / 2, len(layout)) if len(layout) > 1 else [0.0]
    )
    colors = {"em": "black", "nuts": "tab:blue", "advi": "tab:orange"}
    markers = {"em": "s", "nuts": "o", "advi": "D", "fullrank_advi": "^"}
    offscale = []
    for (m, est, sd_col, lo_col, hi_col), dy in zip(layout, offsets, strict=True):
        value = table[est].to_numpy(dtype=float)
        if lo_col is not None:
            lo = table[lo_col].to_numpy(dtype=float)
            hi = table[hi_col].to_numpy(dtype=float)
        elif sd_col is not None:
            sd = table[sd_col].to_numpy(dtype=float)
            lo, hi = value - 2 * sd, value + 2 * sd
        else:
            lo = hi = value
        z, zlo, zhi = ((v - center) / spread for v in (value, lo, hi))
        xerr = np.vstack([np.clip(z - zlo, 0, None), np.clip(zhi - z, 0, None)])
        ax.errorbar(
            z,
            y - dy,
            xerr=np.nan_to_num(xerr),
            **_merge(
                {
                    "fmt": markers.get(m, "o"),
                    "color": colors.get(m, None),
                    "capsize": 2,
                    "markersize": 5,
                    "linewidth": 1.2,
                    "label": _METHOD_LABELS.get(m, m),
                },
                errorbar_kwargs,
            ),
        )
        if scale == "sd" and clip is not None:
            beyond = np.abs(z) > clip
            if beyond.any():
                offscale.append(f"{_METHOD_LABELS.get(m, m)}: {int(beyond.sum())}")
            for side, marker in ((1, ">"), (-1, "<")):
                heads = beyond & (np.sign(z) == side)
                if heads.any():
                    ax.plot(
                        np.full(int(heads.sum()), side * clip * 0.97),
                        (y - dy)[heads],
                        linestyle="none",
                        marker=marker,
                        markersize=7,
                        color=colors.get(m, None),
                        gid="offscale",
                    )
    flags = [
        c
        for c in table.columns
        if table[c].dtype == bool and ("flag" in str(c) or "outside" in str(c))
    ]
    flagged = table[flags].any(axis=1).to_numpy() if flags else np.zeros(n, bool)
    ax.set_yticks(y, labels)
    for tick, bad in zip(ax.get_yticklabels(), flagged, strict=True):
        if bad:
            tick.update(_merge({"color": "#b00020", "fontweight": "bold"}, flag_kwargs))
    ax.set_ylim(-0.8, n - 0.2)
    if scale == "sd":
        if clip is not None:
            lo_x, hi_x = ax.get_xlim()
            ax.set_xlim(max(lo_x, -clip), min(hi_x, clip))
        ax.axvline(0.0, color="0.6", linewidth=0.8, zorder=0)
        name = _METHOD_LABELS.get(ref[0], ref[0])
        what = "se" if ref[0] == "em" else "posterior sd"
        ax.set_xlabel(f"difference from the {name} estimate, in {name} {what}s")
        for yi, c, s in zip(y, center, spread, strict=True):
            ax.annotate(
                f"{c:.4g} \u00b1 {s:.2g}",
                xy=(1.0, yi),
                xycoords=("axes fraction", "data"),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize="x-small",
                color="0.35",
            )
    else:
        ax.set_xlabel("value")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(
        fontsize="small",
        loc="upper center",
        bbox_to_anchor=(0.5, -0.7 / (1.2 + 0.32 * n) - 0.06),
        ncol=len(layout),
        frameon=False,
    )
    title = "parameters by method (bars: EM \u00b1 2 se, posterior intervals)"
    if offscale:
        title += f"\nbeyond \u00b1{clip:g} sd (arrows): " + ", ".join(offscale)
    ax.set_title(title)
    return ax


# ---------------------------------------------------------------- plot_density
def plot_density(
    model,
    X,
    *,
    features=None,
    ax: Axes | None = None,
    bins: int | str = "auto",
    show_components: bool = True,
    grid_size: int | None = None,
    ci_prob: float = 0.94,
    n_draws: int | None = 500,
    em=None,
    random_state=0,
    hist_kwargs: dict[str, Any] | None = None,
    line_kwargs: dict[str, Any] | None = None,
    component_kwargs: dict[str, Any] | None = None,
    band_kwargs: dict[str, Any] | None = None,
    em_kwargs: dict[str, Any] | None = None,
    contour_kwargs: dict[str, Any] | None = None,
    scatter_kwargs: dict[str, Any] | None = None,
) -> Axes:
    """The fitted density over the data.

    For one feature: a histogram (as a density) and the fitted mixture
    density; with ``show_components``, each weighted component. For a
    fit with posterior draws the line is the posterior predictive density
    (the mean over draws of each draw's mixture density), with the
    equal-tailed ``ci_prob`` credible band of the density across draws, and
    the EM density beside it. For two features: the contours of the log
    density (log posterior predictive for draws) over a scatter of the
    data, with the EM contours dashed. With more features, the marginal
    density of the chosen one or two.

    Parameters
    ----------
    model : fitted mixture or draws
        A ``GaussianMixtureEM`` (anything with ``weights_``, ``means_``,
        ``covariances_`` and ``covariance_type``), a
        ``GaussianMixtureBayes``, a ``MixtureResult`` or draws in the same
        form.
    X : array-like of shape (n_samples,) or (n_samples, n_features)
        Data.
    features : int, str or tuple of two, optional
        One feature (1-D view) or two (contours). Default: the only feature
        of 1-D data, else the first two.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure if None.
    bins : int or str, default="auto"
        Histogram bins (1-D).
    show_components : bool, default=True
        Draw the weighted component densities (1-D; for draws, their
        posterior means).
    grid_size : int, optional
        Points per axis of the evaluation grid (default 200 in 1-D, 100 in
        2-D).
    ci_prob : float, default=0.94
        Probability of the credible band (1-D, draws only).
    n_draws : int or None, default=500
        At most this many posterior draws are evaluated (a random subset
        fixed by ``random_state``); None for all.
    em : GaussianMixtureEM, bool or None, default=None
        The EM fit shown beside the posterior: ``model.em_`` by default,
        False for none. Ignored for an EM ``model``.
    random_state : int, Generator or None, default=0
        Chooses the subset of draws.
    hist_kwargs, line_kwargs, component_kwargs : dict, optional
        Passed to ``ax.hist``, and to ``ax.plot`` for the (posterior
        predictive) mixture density and for the components (1-D).
    band_kwargs : dict, optional
        Passed to ``ax.fill_between`` for the credible band (gid ``"band"``).
    em_kwargs : dict, optional
        Passed to ``ax.plot`` (1-D) or ``ax.contour`` (2-D) for the EM fit
        (gid ``"em"``).
    contour_kwargs, scatter_kwargs : dict, optional
        Passed to ``ax.contour`` and ``ax.scatter`` (2-D).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np
    >>> from bayes_gmm import GaussianMixtureEM
    >>> from bayes_gmm.plots import plot_density
    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.normal(-2, 1, 60), rng.normal(3, 1, 40)])
    >>> em = GaussianMixtureEM(2, random_state=0).fit(x[:, None])
    >>> ax = plot_density(em, x)
    >>> [line.get_label() for line in ax.get_lines()][-1]
    'mixture density'
    """
    arr = _data_array(X)
    d = arr.shape[1]
    result = _as_result(model)
    point = _point_fit(model)
    names = _feature_names(point, X, d)
    if features is None:
        features = (0,) if d == 1 else (0, 1)
    elif isinstance(features, (int, np.integer, str)):
        features = (features,)
    idx = [_feature_index(f, names) for f in features]
    if len(idx) not in (1, 2):
        raise ValueError(f"'features' must name one or two features, got {features!r}.")
    if not 0 < ci_prob < 1:
        raise ValueError(f"'ci_prob' must be in (0, 1), got {ci_prob}.")
    em_fit = _em_of(model, em) if result is not None else None
    if grid_size is None:
        grid_size = 200 if len(idx) == 1 else 100
    if ax is None:
        ax = _new_axes()
    lo = arr[:, idx].min(axis=0)
    hi = arr[:, idx].max(axis=0)
    pad = 0.1 * np.where(hi > lo, hi - lo, 1.0)
    lo, hi = lo - pad, hi + pad

    draws = None
    if result is not None:
        weights, means, chol = result.draws()
        keep = _subsample(weights.shape[0], n_draws, random_state)
        draws = _marginal_draws(weights[keep], means[keep], chol[keep], idx)

    if len(idx) == 1:
        x = arr[:, idx[0]]
        ax.hist(
            x,
            **_merge(
                {
                    "bins": bins,
                    "density": True,
                    "color": "0.8",
                    "edgecolor": "white",
                    "label": "data",
                },
                hist_kwargs,
            ),
        )
        grid = np.linspace(lo[0], hi[0], grid_size)
        if draws is None:
            total, parts = _marginal_log_density(point, grid[:, None], idx)
            density, components = np.exp(total), np.exp(parts)
            label = "mixture density"
        else:
            total_s, parts_s = _draws_log_density(*draws, grid[:, None])
            dens_s = np.exp(total_s)
            density = dens_s.mean(axis=0)
            components = np.exp(parts_s).mean(axis=0)
            label = "posterior predictive"
            tail = (1.0 - ci_prob) / 2.0
            band_lo, band_hi = np.quantile(dens_s, [tail, 1.0 - tail], axis=0)
            ax.fill_between(
                grid,
                band_lo,
                band_hi,
                **_merge(
                    {
                        "color": "tab:blue",
                        "alpha": 0.3,
                        "linewidth": 0,
                        "gid": "band",
                        "label": f"{ci_prob:.0%} credible band",
                    },
                    band_kwargs,
                ),
            )
        if show_components:
            colors = _colors(components.shape[1])
            for c in range(components.shape[1]):
                ax.plot(
                    grid,
                    components[:, c],
                    **_merge(
                        {"color": colors[c], "linestyle": "--", "linewidth": 1.2},
                        component_kwargs,
                    ),
                )
        ax.plot(
            grid,
            density,
            **_merge(
                {"color": "black", "linewidth": 2, "label": label, "gid": "density"},
                line_kwargs,
            ),
        )
        if em_fit is not None:
            em_total, _ = _marginal_log_density(em_fit, grid[:, None], idx)
            ax.plot(
                grid,
                np.exp(em_total),
                **_merge(
                    {
                        "color": "tab:red",
                        "linestyle": "-.",
                        "linewidth": 1.5,
                        "label": "EM",
                        "gid": "em",
                    },
                    em_kwargs,
                ),
            )
        ax.set_xlabel(names[idx[0]])
        ax.set_ylabel("density")
        if draws is not None or em_fit is not None:
            ax.legend(fontsize="small")
        return ax

    gx = np.linspace(lo[0], hi[0], grid_size)
    gy = np.linspace(lo[1], hi[1], grid_size)
    xx, yy = np.meshgrid(gx, gy)
    points = np.column_stack([xx.ravel(), yy.ravel()])
    if draws is None:
        total, _ = _marginal_log_density(point, points, idx)
    else:
        total = _predictive_log_density(*draws, points)
    zz = total.reshape(xx.shape)
    ax.scatter(
        arr[:, idx[0]],
        arr[:, idx[1]],
        **_merge(
            {"s": 6, "color": "0.4", "linewidths": 0, "zorder": 1}, scatter_kwargs
        ),
    )
    top = zz.max()
    levels = np.linspace(top - 12.0, top, 13)
    style = _merge(
        {"levels": levels, "cmap": "viridis", "linewidths": 1.0}, contour_kwargs
    )
    ax.contour(xx, yy, zz, **style)
    if em_fit is not None:
        em_total, _ = _marginal_log_density(em_fit, points, idx)
        em_cs = ax.contour(
            xx,
            yy,
            em_total.reshape(xx.shape),
            **_merge(
                {
                    "levels": style["levels"],
                    "colors": "black",
                    "linewidths": 0.7,
                    "linestyles": "--",
                },
                em_kwargs,
            ),
        )
        em_cs.set_gid("em")
    ax.set_xlabel(names[idx[0]])
    ax.set_ylabel(names[idx[1]])
    ax.set_title(
        "log density"
        if draws is None
        else "log posterior predictive density" + (" (dashed: EM)" if em_fit else "")
    )
    return ax
