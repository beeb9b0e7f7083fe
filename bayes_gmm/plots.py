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
    "plot_covariance_types",
    "plot_criteria",
    "plot_density",
    "ellipse_geometry",
]

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
        return np.asarray(axes).ravel()
    axes = np.atleast_1d(np.asarray(ax, dtype=object)).ravel()
    if axes.size != n:
        raise ValueError(f"This figure needs {n} Axes, got {axes.size}.")
    return axes


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
    """
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
    """
    arr = _data_array(X)
    d = arr.shape[1]
    names = _feature_names(model, X, d)
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
    elpd: Sequence[str] = ("elpd_loo",),
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
    elpd : sequence of str, default=("elpd_loo",)
        elpd-scale columns to draw with their ``_se`` (higher is better).
    ax : Axes or array of Axes, optional
        One Axes per panel; a new 1 x n figure if None.
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
    """
    from bayes_gmm.selection import best_row

    for col in ("covariance_type", "n_components"):
        if col not in table.columns:
            raise ValueError(f"The table has no {col!r} column.")
    panels = [(c, None) for c in criteria if c in table.columns]
    panels += [
        (e, f"{e}_se")
        for e in elpd
        if e in table.columns and f"{e}_se" in table.columns
    ]
    if not panels:
        raise ValueError(
            f"The table has none of the criteria {list(criteria) + list(elpd)}."
        )
    axes = _axes_array(ax, len(panels))
    types = list(pd.unique(table["covariance_type"]))
    colors = dict(zip(types, _colors(len(types)), strict=True))
    n_types = len(types)
    for a, (name, se_col) in zip(axes, panels, strict=True):
        for t_i, ctype in enumerate(types):
            sub = table[table["covariance_type"] == ctype].sort_values("n_components")
            sub = sub[np.isfinite(pd.to_numeric(sub[name], errors="coerce"))]
            ks = sub["n_components"].to_numpy(dtype=float)
            values = sub[name].to_numpy(dtype=float)
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
            ctype, k = best_row(table, name)
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
        label = _CRITERION_LABELS.get(name, name)
        a.set_ylabel(f"{label} ({better} is better)")
        a.set_xlabel("number of components K")
        a.set_title(label if se_col is None else f"{label} (± 1 se)")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.legend(fontsize="small")
    return axes


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


# ---------------------------------------------------------------- plot_density
def plot_density(
    model,
    X,
    *,
    features=None,
    ax: Axes | None = None,
    bins: int | str = "auto",
    show_components: bool = True,
    grid_size: int = 200,
    hist_kwargs: dict[str, Any] | None = None,
    line_kwargs: dict[str, Any] | None = None,
    component_kwargs: dict[str, Any] | None = None,
    contour_kwargs: dict[str, Any] | None = None,
    scatter_kwargs: dict[str, Any] | None = None,
) -> Axes:
    """The fitted density over the data.

    For one feature: a histogram (as a density), the fitted mixture density
    and, with ``show_components``, each weighted component. For two: the
    contours of the log density over a scatter of the data. With more
    features, the marginal density of the chosen one or two.

    Parameters
    ----------
    model : fitted mixture
        Anything with ``weights_``, ``means_``, ``covariances_`` and
        ``covariance_type``.
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
        Draw the weighted component densities (1-D).
    grid_size : int, default=200
        Points per axis of the evaluation grid.
    hist_kwargs, line_kwargs, component_kwargs : dict, optional
        Passed to ``ax.hist``, and to ``ax.plot`` for the mixture density
        and for the components (1-D).
    contour_kwargs, scatter_kwargs : dict, optional
        Passed to ``ax.contour`` and ``ax.scatter`` (2-D).

    Returns
    -------
    matplotlib.axes.Axes
    """
    arr = _data_array(X)
    d = arr.shape[1]
    names = _feature_names(model, X, d)
    if features is None:
        features = (0,) if d == 1 else (0, 1)
    elif isinstance(features, (int, np.integer, str)):
        features = (features,)
    idx = [_feature_index(f, names) for f in features]
    if len(idx) not in (1, 2):
        raise ValueError(f"'features' must name one or two features, got {features!r}.")
    if ax is None:
        ax = _new_axes()
    lo = arr[:, idx].min(axis=0)
    hi = arr[:, idx].max(axis=0)
    pad = 0.1 * np.where(hi > lo, hi - lo, 1.0)
    lo, hi = lo - pad, hi + pad

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
        total, parts = _marginal_log_density(model, grid[:, None], idx)
        if show_components:
            colors = _colors(parts.shape[1])
            for c in range(parts.shape[1]):
                ax.plot(
                    grid,
                    np.exp(parts[:, c]),
                    **_merge(
                        {"color": colors[c], "linestyle": "--", "linewidth": 1.2},
                        component_kwargs,
                    ),
                )
        ax.plot(
            grid,
            np.exp(total),
            **_merge(
                {"color": "black", "linewidth": 2, "label": "mixture density"},
                line_kwargs,
            ),
        )
        ax.set_xlabel(names[idx[0]])
        ax.set_ylabel("density")
        return ax

    gx = np.linspace(lo[0], hi[0], grid_size)
    gy = np.linspace(lo[1], hi[1], grid_size)
    xx, yy = np.meshgrid(gx, gy)
    total, _ = _marginal_log_density(
        model, np.column_stack([xx.ravel(), yy.ravel()]), idx
    )
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
    ax.contour(
        xx,
        yy,
        zz,
        **_merge(
            {"levels": levels, "cmap": "viridis", "linewidths": 1.0}, contour_kwargs
        ),
    )
    ax.set_xlabel(names[idx[0]])
    ax.set_ylabel(names[idx[1]])
    ax.set_title("log density")
    return ax
