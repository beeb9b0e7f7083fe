"""EM vs NUTS vs ADVI, parameter by parameter and as whole densities.

:func:`compare_fits` lines up any number of fits of the same mixture (EM
estimates, EM bootstraps from :func:`bayes_gmm.uncertainty.bootstrap_em`,
NUTS and variational posteriors) after aligning their component labels, and
returns one tidy row per scalar parameter with flags where they disagree.
:func:`mixture_divergence` measures how far two fitted mixtures are apart as
densities (Monte Carlo KL divergence and Hellinger distance, with their
Monte Carlo standard errors).
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from bayes_gmm._covariance import get_covariance_type, log_gaussian_prob_cholesky
from bayes_gmm._validation import check_random_state, check_scalar
from bayes_gmm.result import as_mixture_result

__all__ = ["compare_fits", "mixture_divergence"]

logger = logging.getLogger("bayes_gmm")

_PARAMS = ("weights", "means", "covariances")
_DEFAULT_NAMES = {
    "em": "em",
    "bootstrap": "em",
    "nuts": "nuts",
    "advi": "advi",
    "fullrank_advi": "fullrank_advi",
}


@dataclass
class _Fit:
    """One fit, normalised: point estimate and (optionally) draws."""

    name: str
    kind: str  # "estimate" (EM, with optional bootstrap draws) or "posterior"
    method: str
    covariance_type: str
    point: xr.Dataset  # weights, means, covariances without chain/draw
    draws: xr.Dataset | None  # (chain, draw, ...) or None

    @property
    def n_components(self) -> int:
        return int(self.point.sizes["component"])

    @property
    def n_features(self) -> int:
        return int(self.point.sizes["feature"])

    def chol(self):
        ct = get_covariance_type(self.covariance_type)
        return np.asarray(
            ct.to_cholesky(
                np.asarray(self.point["covariances"].values),
                self.n_components,
                self.n_features,
            )
        )

    def mixture(self):
        return (
            np.asarray(self.point["weights"].values, dtype=float),
            np.asarray(self.point["means"].values, dtype=float),
            self.chol(),
        )

    def permuted(self, perm):
        perm = np.asarray(perm)
        k = self.n_components

        def take(ds):
            if ds is None:
                return None
            out = ds.isel(component=perm)
            return out.assign_coords(component=np.arange(k))

        return _Fit(
            self.name,
            self.kind,
            self.method,
            self.covariance_type,
            take(self.point),
            take(self.draws),
        )


def _em_point(em) -> xr.Dataset:
    ct = get_covariance_type(em.covariance_type)
    k, d = em.means_.shape
    names = getattr(em, "feature_names_in_", None)
    features = (
        [str(c) for c in names] if names is not None else [f"x{i}" for i in range(d)]
    )
    coords = {"component": np.arange(k), "feature": features}
    if "feature_bis" in ct.dims:
        coords["feature_bis"] = features
    return xr.Dataset(
        {
            "weights": (("component",), np.asarray(em.weights_, dtype=float)),
            "means": (("component", "feature"), np.asarray(em.means_, dtype=float)),
            "covariances": (ct.dims, np.asarray(em.covariances_, dtype=float)),
        },
        coords=coords,
    )


def _as_fit(fit, name=None) -> _Fit:
    from sklearn.utils.validation import check_is_fitted

    from bayes_gmm.em import GaussianMixtureEM

    if isinstance(fit, GaussianMixtureEM):
        check_is_fitted(fit)
        return _Fit(
            name or "em", "estimate", "em", fit.covariance_type, _em_point(fit), None
        )
    fit = as_mixture_result(fit, "Each fit must be")
    method = fit.method
    post = fit.posterior[list(_PARAMS)]
    default = _DEFAULT_NAMES.get(method, method)
    if method == "bootstrap":
        point = fit.datatree["point_estimate"].to_dataset()[list(_PARAMS)]
        return _Fit(
            name or default, "estimate", method, fit.covariance_type, point, post
        )
    point = post.mean(("chain", "draw"))
    return _Fit(name or default, "posterior", method, fit.covariance_type, point, post)


def _unique_names(fits: list[_Fit], names) -> list[_Fit]:
    if names is not None:
        names = list(names)
        if len(names) != len(fits):
            raise ValueError(
                f"'names' has {len(names)} entries but {len(fits)} fits were given."
            )
        if len(set(names)) != len(names):
            raise ValueError(f"'names' must be distinct, got {names}.")
        for f, n in zip(fits, names, strict=True):
            if not isinstance(n, str) or not n:
                raise ValueError(f"Every name must be a non-empty string, got {n!r}.")
            f.name = n
        return fits
    seen: dict[str, int] = {}
    for f in fits:
        seen[f.name] = seen.get(f.name, 0) + 1
        if seen[f.name] > 1:
            f.name = f"{f.name}_{seen[f.name]}"
    return fits


def _check_compatible(fits: list[_Fit]):
    ref = fits[0]
    for f in fits[1:]:
        if f.covariance_type != ref.covariance_type:
            raise ValueError(
                f"Fits must share the covariance type: {ref.name!r} is "
                f"{ref.covariance_type!r} but {f.name!r} is {f.covariance_type!r}."
            )
        if f.n_components != ref.n_components or f.n_features != ref.n_features:
            raise ValueError(
                f"Fits must have the same number of components and features: "
                f"{ref.name!r} has K={ref.n_components}, D={ref.n_features} but "
                f"{f.name!r} has K={f.n_components}, D={f.n_features}."
            )


def _alignment(fit: _Fit, ref: _Fit) -> np.ndarray:
    """Permutation of ``fit``'s components that best matches ``ref``.

    The assignment minimises the KL cost of :func:`bayes_gmm.relabel.relabel`
    between the two point estimates (weights, means, covariances).
    """
    from bayes_gmm.relabel import MixturePivot, relabel

    k = fit.n_components
    if k == 1:
        return np.zeros(1, dtype=int)
    single = fit.point.expand_dims(chain=[0], draw=[0])
    pivot = MixturePivot(
        ref.point["weights"].values,
        ref.point["means"].values,
        ref.point["covariances"].values,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, record = relabel(single, fit.covariance_type, pivot=pivot, max_iter=1)
    return np.asarray(record.permutations[0, 0])


# ---------------------------------------------------------------------------
# densities
# ---------------------------------------------------------------------------
def _as_mixture(obj):
    """(weights, means, chol) of a fit or of a dict with the EM parameters."""
    if isinstance(obj, dict):
        missing = {"weights", "means", "covariances", "covariance_type"} - set(obj)
        if missing:
            raise ValueError(f"The mixture dict lacks {sorted(missing)}.")
        w = np.asarray(obj["weights"], dtype=float)
        mu = np.atleast_2d(np.asarray(obj["means"], dtype=float))
        ct = get_covariance_type(obj["covariance_type"])
        k, d = mu.shape
        chol = np.asarray(ct.to_cholesky(np.asarray(obj["covariances"], float), k, d))
        if w.shape != (k,):
            raise ValueError(f"weights must have shape ({k},), got {w.shape}.")
        return w / w.sum(), mu, chol
    return _as_fit(obj).mixture()


def _log_density(X, mixture):
    w, mu, chol = mixture
    with np.errstate(divide="ignore"):
        lp = log_gaussian_prob_cholesky(X, mu, chol) + np.log(w)
    top = lp.max(axis=1, keepdims=True)
    return (np.log(np.exp(lp - top).sum(axis=1, keepdims=True)) + top)[:, 0]


def _sample(mixture, n, rng):
    w, mu, chol = mixture
    labels = rng.choice(w.size, size=n, p=w / w.sum())
    z = rng.standard_normal((n, mu.shape[1]))
    return mu[labels] + np.einsum("nij,nj->ni", chol[labels], z)


def mixture_divergence(p, q, *, n_samples: int = 20000, random_state=None) -> dict:
    """Monte Carlo KL divergence and Hellinger distance between two mixtures.

    With :math:`x_i \\sim p`, :math:`i = 1..M`:

    .. math::

        \\mathrm{KL}(p\\,\\|\\,q) \\approx \\frac1M \\sum_i
        \\log\\frac{p(x_i)}{q(x_i)}, \\qquad
        H(p, q) = \\sqrt{1 - \\mathrm{BC}}, \\quad
        \\mathrm{BC} \\approx \\frac1M \\sum_i \\sqrt{\\frac{q(x_i)}{p(x_i)}}

    with Monte Carlo standard errors ``sd / sqrt(M)`` (delta method for
    ``H``). KL is in nats, not symmetric and unbounded; ``H`` is a metric in
    [0, 1]. Posteriors are represented by their posterior-mean mixture
    (plug-in parameters), as EM is by its estimate.

    Parameters
    ----------
    p, q : fit or dict
        Fitted mixtures (``GaussianMixtureEM``, ``GaussianMixtureBayes``,
        ``MixtureResult``, DataTree) or dicts with ``weights``, ``means``,
        ``covariances`` (EM shapes) and ``covariance_type``. ``p`` is the
        reference the points are drawn from.
    n_samples : int, default=20000
        Monte Carlo sample size ``M``.
    random_state : int, Generator or None, default=None
        Seed.

    Returns
    -------
    dict
        ``kl``, ``kl_se``, ``hellinger``, ``hellinger_se``, ``n_samples``.

    Examples
    --------
    >>> import numpy as np
    >>> p = dict(weights=[1.0], means=[[0.0]], covariances=[1.0],
    ...          covariance_type="spherical")
    >>> q = dict(weights=[1.0], means=[[1.0]], covariances=[1.0],
    ...          covariance_type="spherical")
    >>> out = mixture_divergence(p, q, n_samples=100000, random_state=0)
    >>> abs(out["kl"] - 0.5) < 4 * out["kl_se"]  # closed form: 0.5
    True
    """
    n_samples = check_scalar("n_samples", n_samples, int, min_value=2)
    rng = check_random_state(random_state)
    mp, mq = _as_mixture(p), _as_mixture(q)
    if mp[1].shape[1] != mq[1].shape[1]:
        raise ValueError(
            f"The mixtures have {mp[1].shape[1]} and {mq[1].shape[1]} features."
        )
    x = _sample(mp, n_samples, rng)
    log_ratio = _log_density(x, mp) - _log_density(x, mq)
    kl = float(log_ratio.mean())
    kl_se = float(log_ratio.std(ddof=1) / np.sqrt(n_samples))
    bc_i = np.exp(-0.5 * log_ratio)
    bc = float(bc_i.mean())
    bc_se = float(bc_i.std(ddof=1) / np.sqrt(n_samples))
    h2 = max(1.0 - bc, 0.0)
    h = float(np.sqrt(h2))
    h_se = float(bc_se / (2 * h)) if h > 0 else 0.0
    return {
        "kl": kl,
        "kl_se": kl_se,
        "hellinger": h,
        "hellinger_se": h_se,
        "n_samples": n_samples,
    }


# ---------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------
def _scalars(point: xr.Dataset, covariance_type: str):
    """(parameter label, variable, index dict) for every distinct scalar."""
    out = []
    for var in _PARAMS:
        da = point[var]
        for idx in itertools.product(*(range(n) for n in da.shape)):
            sel = dict(zip(da.dims, idx, strict=True))
            if var == "covariances" and "feature_bis" in sel:
                if sel["feature_bis"] > sel["feature"]:
                    continue  # symmetric: lower triangle only
            labels = [str(da.coords[d].values[i]) for d, i in sel.items()]
            label = f"{var}[{', '.join(labels)}]" if labels else var
            out.append((label, var, sel))
    return out


def _values(ds: xr.Dataset, var: str, sel: dict):
    da = ds[var].isel(sel)
    return np.asarray(da.values, dtype=float)


def compare_fits(
    *fits,
    ci_prob: float = 0.94,
    names: Sequence[str] | None = None,
    n_samples: int = 20000,
    random_state=None,
) -> pd.DataFrame:
    """EM vs NUTS vs ADVI, one row per scalar parameter, labels aligned.

    Every fit's components are first aligned to those of the first fit (a
    linear assignment on the KL cost of :func:`bayes_gmm.relabel.relabel`
    between point estimates, so the alignment does not depend on feature
    units). Then for every distinct scalar (each weight, each mean, each
    covariance entry on or below the diagonal):

    * an EM fit gives its estimate (column ``<name>``) and, if it is a
      bootstrap (:func:`bayes_gmm.uncertainty.bootstrap_em`), its bootstrap
      standard error (``<name>_se``; NaN for a bare EM fit);
    * a Bayesian fit (NUTS or variational) gives its posterior mean, sd and
      equal-tailed ``ci_prob`` interval (``<name>_mean``, ``<name>_sd``,
      ``<name>_lower``, ``<name>_upper``), and ``<name>_sd_ratio``, its sd
      over that of the first Bayesian fit (below 1: narrower, as mean-field
      ADVI typically is).

    Flags (boolean columns):

    * ``<em>_outside_<bayes>``: the EM estimate lies outside the Bayesian
      fit's interval;
    * ``<a>_<b>_disagree``: two Bayesian fits' means differ by more than a
      posterior sd (the larger of their two sds);
    * ``flagged``: any of the above.

    Parameters
    ----------
    *fits : GaussianMixtureEM, GaussianMixtureBayes, MixtureResult or DataTree
        Fits of the same covariance type, K and features (bootstrap results
        count as EM fits).
    ci_prob : float, default=0.94
        Probability of the equal-tailed intervals.
    names : sequence of str, optional
        Column prefixes; by default the method (``em``, ``nuts``, ``advi``,
        ``fullrank_advi``), made unique with ``_2``, ``_3``.
    n_samples : int, default=20000
        Monte Carlo size of the density comparison.
    random_state : int, Generator or None, default=None
        Seed of the density comparison.

    Returns
    -------
    pandas.DataFrame
        One row per scalar, with columns ``parameter`` (e.g. ``"means[1,
        x0]"``), ``variable``, ``component``, ``feature``, ``feature_bis``,
        then the fits' columns and the flags. ``df.attrs["density"]`` is a
        DataFrame with one row per fit after the first: the Monte Carlo KL
        divergence KL(first || fit) in nats and the Hellinger distance between
        the two point-estimate (posterior-mean) mixtures, with Monte Carlo
        standard errors (:func:`mixture_divergence`).
        ``df.attrs["alignment"]`` gives each fit's permutation (relabelled
        component j is the fit's component ``perm[j]``);
        ``df.attrs["sd_ratio"]`` gives, for every Bayesian fit after the
        first, the median of ``<name>_sd_ratio`` and the share of parameters
        whose sd is smaller than the first Bayesian fit's (the
        under-dispersion of mean-field ADVI shows as values below 1 and
        above 0.5).

    Raises
    ------
    ValueError
        If no fit is given, fits differ in covariance type, K or number of
        features, or ``ci_prob`` is not in (0, 1).

    Examples
    --------
    >>> from bayes_gmm import GaussianMixtureEM, make_mixture
    >>> from bayes_gmm.uncertainty import bootstrap_em
    >>> X, _, _ = make_mixture(300, 2, 2, separation=6.0, random_state=0)
    >>> em = GaussianMixtureEM(2, random_state=0).fit(X)
    >>> boot = bootstrap_em(em, X, n_boot=30, random_state=0)
    >>> em_swapped = GaussianMixtureEM(2, random_state=0,
    ...     means_init=em.means_[::-1]).fit(X)
    >>> table = compare_fits(boot, em_swapped, names=["boot", "em"],
    ...                      n_samples=2000, random_state=0)
    >>> bool(abs(table["boot"] - table["em"]).max() < 1e-2)  # aligned
    True
    >>> bool(table.attrs["density"]["kl"].iloc[0] < 1e-3)
    True
    """
    if not fits:
        raise ValueError("compare_fits needs at least one fit.")
    ci = check_scalar("ci_prob", ci_prob, float, min_value=0.0, include_min=False)
    if ci >= 1:
        raise ValueError(f"'ci_prob' must be in (0, 1), got {ci_prob}.")
    n_samples = check_scalar("n_samples", n_samples, int, min_value=2)
    rng = check_random_state(random_state)
    normal = _unique_names([_as_fit(f) for f in fits], names)
    _check_compatible(normal)
    ref = normal[0]
    aligned = [ref]
    alignment = {ref.name: list(range(ref.n_components))}
    for f in normal[1:]:
        perm = _alignment(f, ref)
        alignment[f.name] = [int(i) for i in perm]
        aligned.append(f.permuted(perm))
    estimates = [f for f in aligned if f.kind == "estimate"]
    posteriors = [f for f in aligned if f.kind == "posterior"]

    rows = []
    lo_q, hi_q = (1 - ci) / 2, 1 - (1 - ci) / 2
    for label, var, sel in _scalars(ref.point, ref.covariance_type):
        row = {
            "parameter": label,
            "variable": var,
            "component": sel.get("component", np.nan),
            "feature": (
                str(ref.point.coords["feature"].values[sel["feature"]])
                if "feature" in sel
                else None
            ),
            "feature_bis": (
                str(ref.point.coords["feature_bis"].values[sel["feature_bis"]])
                if "feature_bis" in sel
                else None
            ),
        }
        for f in estimates:
            row[f.name] = float(_values(f.point, var, sel))
            if f.draws is not None:
                draws = _values(f.draws, var, sel).ravel()
                row[f"{f.name}_se"] = float(draws.std(ddof=1))
            else:
                row[f"{f.name}_se"] = np.nan
        first_sd = None
        for f in posteriors:
            draws = _values(f.draws, var, sel).ravel()
            mean = float(draws.mean())
            sd = float(draws.std(ddof=1)) if draws.size > 1 else np.nan
            row[f"{f.name}_mean"] = mean
            row[f"{f.name}_sd"] = sd
            row[f"{f.name}_lower"] = float(np.quantile(draws, lo_q))
            row[f"{f.name}_upper"] = float(np.quantile(draws, hi_q))
            if first_sd is None:
                first_sd = sd
            with np.errstate(divide="ignore", invalid="ignore"):
                row[f"{f.name}_sd_ratio"] = sd / first_sd if first_sd else np.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    if "component" in table:
        table["component"] = table["component"].astype("Int64")
    flag_cols = []
    for e in estimates:
        for b in posteriors:
            col = f"{e.name}_outside_{b.name}"
            table[col] = (table[e.name] < table[f"{b.name}_lower"]) | (
                table[e.name] > table[f"{b.name}_upper"]
            )
            flag_cols.append(col)
    for a, b in itertools.combinations(posteriors, 2):
        col = f"{a.name}_{b.name}_disagree"
        scale = np.maximum(table[f"{a.name}_sd"], table[f"{b.name}_sd"])
        table[col] = (table[f"{a.name}_mean"] - table[f"{b.name}_mean"]).abs() > scale
        flag_cols.append(col)
    table["flagged"] = table[flag_cols].any(axis=1) if flag_cols else False

    density = []
    for f in aligned[1:]:
        out = mixture_divergence(
            _mixture_dict(ref), _mixture_dict(f), n_samples=n_samples, random_state=rng
        )
        density.append({"reference": ref.name, "fit": f.name, **out})
    table.attrs["density"] = pd.DataFrame(
        density,
        columns=[
            "reference",
            "fit",
            "kl",
            "kl_se",
            "hellinger",
            "hellinger_se",
            "n_samples",
        ],
    )
    table.attrs["alignment"] = alignment
    table.attrs["ci_prob"] = ci
    table.attrs["sd_ratio"] = {
        f.name: {
            "median": float(table[f"{f.name}_sd_ratio"].median()),
            "share_below_1": float((table[f"{f.name}_sd_ratio"] < 1).mean()),
        }
        for f in posteriors[1:]
    }
    n_flagged = int(table["flagged"].sum())
    logger.info(
        "compare_fits: %d parameters, %d flagged, fits %s",
        len(table),
        n_flagged,
        [f.name for f in aligned],
    )
    return table


def _mixture_dict(f: _Fit) -> dict:
    return {
        "weights": f.point["weights"].values,
        "means": f.point["means"].values,
        "covariances": f.point["covariances"].values,
        "covariance_type": f.covariance_type,
    }
