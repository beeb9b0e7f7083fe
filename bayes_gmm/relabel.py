"""Label switching: detect and undo permutations of mixture components.

The likelihood of a mixture is invariant under the ``K!`` permutations of its
components, so its posterior has ``K!`` symmetric modes. A sampler that
visits more than one of them (chains started at different labellings, or a
chain that hops between labellings) makes per-component summaries and R-hat
meaningless. This module undoes such permutations after sampling (numpy,
scipy and xarray only; it never imports PyMC):

* :func:`relabel` - pivot relabelling: every draw is relabelled to the
  permutation of its components that best matches a reference mixture (the
  EM fit), the reference is refined to the posterior mean of the relabelled
  draws, and the two steps are iterated until no permutation changes;
* :func:`order_by` - the alternative that sorts the components by one
  feature's mean (what an ordering constraint imposes);
* :func:`apply_permutations` - apply stored permutations again (for example
  to another group with a ``component`` dimension);
* :func:`label_switching_check` - tell a chain that is a relabelling of the
  others from one that sits at another mode, and find switching within a
  chain that relabelling cannot undo (overlapping components).

Permutation convention
----------------------
A permutation array has shape ``(chain, draw, K)``. For every draw, the
relabelled component ``j`` is the original component ``permutations[c, s,
j]``::

    relabelled[c, s, j] = original[c, s, permutations[c, s, j]]

The identity ``(0, 1, ..., K - 1)`` leaves a draw unchanged; the inverse
permutation ``np.argsort(permutations, axis=-1)`` maps back.
"""

from __future__ import annotations

import itertools
import logging
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import xarray as xr
from scipy.optimize import linear_sum_assignment
from scipy.special import xlogy

from bayes_gmm._covariance import get_covariance_type
from bayes_gmm._validation import ConvergenceWarning, check_scalar, warn

__all__ = [
    "LabelSwitchingCheck",
    "MixturePivot",
    "RelabelRecord",
    "apply_permutations",
    "inverse_permutations",
    "label_switching_check",
    "order_by",
    "relabel",
]

logger = logging.getLogger("bayes_gmm")

COMPONENT_DIM = "component"
SAMPLE_DIMS = ("chain", "draw")
# Canonical order of the parameter dims of a covariance (the EM shape).
_COV_DIMS = ("component", "feature", "feature_bis")

# Largest K for which the optimal permutation of a hard draw is found by
# scoring all K! permutations in one matrix product (720 for K = 6) rather
# than by one linear_sum_assignment call per draw.
_ENUMERATE_MAX_K = 6
# Smallest weight used for log(weight) of the pivot (an empty pivot component
# then costs a lot to match, but not an infinite amount).
_TINY = np.finfo(np.float64).tiny

# Thresholds of label_switching_check (documented there).
ELSEWHERE_Z = 3.0
SWITCH_RATE = 0.01
AMBIGUOUS_SHARE = 0.1
UNMATCHED_SHARE = 0.01


# ---------------------------------------------------------------------------
# the pivot and the record
# ---------------------------------------------------------------------------
def _frozen_array(value, name, dtype=float):
    try:
        arr = np.array(value, dtype=dtype)  # always a copy
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numeric array-like, got {value!r}.") from None
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinity.")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class MixturePivot:
    """A reference mixture that posterior draws are relabelled to match.

    Parameters
    ----------
    weights : array-like of shape (n_components,)
        Mixture weights (normalised on use).
    means : array-like of shape (n_components, n_features)
        Component means.
    covariances : array-like
        Covariances in the EM shape of the covariance type (see
        :mod:`bayes_gmm._covariance`): ``(K, D, D)`` full, ``(D, D)`` tied,
        ``(K, D)`` diag, ``(K,)`` spherical.

    Examples
    --------
    >>> import numpy as np
    >>> pivot = MixturePivot([0.5, 0.5], [[0.0], [3.0]], [1.0, 1.0])
    >>> pivot.n_components, pivot.n_features
    (2, 1)
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray

    def __post_init__(self):
        weights = _frozen_array(self.weights, "pivot weights")
        means = _frozen_array(self.means, "pivot means")
        covariances = _frozen_array(self.covariances, "pivot covariances")
        if weights.ndim != 1 or weights.size == 0:
            raise ValueError(
                f"pivot weights must have shape (n_components,), got {weights.shape}."
            )
        if np.any(weights < 0) or not weights.sum() > 0:
            raise ValueError("pivot weights must be >= 0 with a positive sum.")
        if means.ndim != 2 or means.shape[0] != weights.size:
            raise ValueError(
                f"pivot means must have shape (n_components, n_features) = "
                f"({weights.size}, D), got {means.shape}."
            )
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "covariances", covariances)

    @property
    def n_components(self) -> int:
        """Number of components ``K``."""
        return int(self.weights.size)

    @property
    def n_features(self) -> int:
        """Number of features ``D``."""
        return int(self.means.shape[1])

    @classmethod
    def from_estimator(cls, estimator: Any) -> MixturePivot:
        """Pivot from a fitted mixture (``weights_``, ``means_``, ``covariances_``).

        Works with :class:`bayes_gmm.GaussianMixtureEM` and scikit-learn's
        ``GaussianMixture``.
        """
        try:
            return cls(estimator.weights_, estimator.means_, estimator.covariances_)
        except AttributeError:
            raise TypeError(
                f"{type(estimator).__name__} has no fitted weights_, means_ and "
                "covariances_; fit it first or pass a MixturePivot."
            ) from None

    def to_dict(self) -> dict[str, list]:
        """JSON-safe dict of nested lists."""
        return {
            "weights": self.weights.tolist(),
            "means": self.means.tolist(),
            "covariances": self.covariances.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MixturePivot:
        """Inverse of :meth:`to_dict`."""
        missing = {"weights", "means", "covariances"} - set(data)
        if missing:
            raise ValueError(f"pivot dict lacks the key(s) {sorted(missing)}.")
        return cls(data["weights"], data["means"], data["covariances"])


def _as_pivot(pivot) -> MixturePivot:
    """Accept a MixturePivot, a fitted estimator, MixtureParams or a dict."""
    if isinstance(pivot, MixturePivot):
        return pivot
    if isinstance(pivot, Mapping):
        return MixturePivot.from_dict(pivot)
    if hasattr(pivot, "weights_"):
        return MixturePivot.from_estimator(pivot)
    if all(hasattr(pivot, a) for a in ("weights", "means", "covariances")):
        return MixturePivot(pivot.weights, pivot.means, pivot.covariances)
    raise TypeError(
        "pivot must be a MixturePivot, a fitted mixture estimator (weights_, "
        "means_, covariances_), an object with weights/means/covariances, a "
        f"dict, or None; got {type(pivot).__name__}."
    )


@dataclass(frozen=True, eq=False)
class RelabelRecord:
    """What a relabelling did, to store beside the relabelled posterior.

    Attributes
    ----------
    permutations : ndarray of int of shape (n_chains, n_draws, n_components)
        For each draw, relabelled component ``j`` is original component
        ``permutations[c, s, j]`` (see the module docstring).
    share_permuted : ndarray of shape (n_chains,)
        Per chain, the fraction of draws whose permutation is not the
        identity.
    n_iter : int
        Number of assignment passes (1 for :func:`order_by`).
    converged : bool
        Whether the last pass left every permutation unchanged.
    pivot : MixturePivot
        The posterior mean of the relabelled draws (covariances in the EM
        shape of the type).
    method : str
        ``"pivot"`` (:func:`relabel`) or ``"order_by"`` (:func:`order_by`).
    covariance_type : str or None
        The covariance type of the posterior, when known.
    feature : int or None
        For ``"order_by"``, the position of the feature whose means were
        sorted.
    chain, draw : ndarray
        The coordinate values of the ``chain`` and ``draw`` dims.
    """

    permutations: np.ndarray
    share_permuted: np.ndarray
    n_iter: int
    converged: bool
    pivot: MixturePivot
    method: str = "pivot"
    covariance_type: str | None = None
    feature: int | None = None
    chain: np.ndarray | None = None
    draw: np.ndarray | None = None

    def __post_init__(self):
        perms = _check_permutation_array(np.asarray(self.permutations))
        perms.setflags(write=False)
        object.__setattr__(self, "permutations", perms)
        n_chain, n_draw, _ = perms.shape
        share = _frozen_array(self.share_permuted, "share_permuted")
        if share.shape != (n_chain,):
            raise ValueError(
                f"share_permuted must have shape ({n_chain},), got {share.shape}."
            )
        object.__setattr__(self, "share_permuted", share)
        for name, size in (("chain", n_chain), ("draw", n_draw)):
            value = getattr(self, name)
            coord = np.arange(size) if value is None else np.array(value)
            if coord.shape != (size,):
                raise ValueError(
                    f"{name} coordinates must have shape ({size},), got {coord.shape}."
                )
            coord.setflags(write=False)
            object.__setattr__(self, name, coord)
        object.__setattr__(self, "pivot", _as_pivot(self.pivot))
        object.__setattr__(self, "n_iter", int(self.n_iter))
        object.__setattr__(self, "converged", bool(self.converged))

    @property
    def n_components(self) -> int:
        """Number of components ``K``."""
        return int(self.permutations.shape[-1])

    def to_dict(self, include_permutations: bool = True) -> dict[str, Any]:
        """JSON-safe dict (lists, numbers, strings), e.g. for DataTree attrs.

        Parameters
        ----------
        include_permutations : bool, default=True
            Include the ``(chain, draw, K)`` permutations as nested lists.
            Pass False to keep attrs small and store :meth:`to_dataarray` in
            a group instead; :meth:`from_dict` then takes it back through its
            ``permutations`` argument.
        """
        out = {
            "method": self.method,
            "covariance_type": self.covariance_type,
            "feature": self.feature,
            "n_iter": self.n_iter,
            "converged": self.converged,
            "share_permuted": self.share_permuted.tolist(),
            "chain": self.chain.tolist(),
            "draw": self.draw.tolist(),
            "n_components": self.n_components,
            "pivot": self.pivot.to_dict(),
        }
        if include_permutations:
            out["permutations"] = self.permutations.tolist()
        return out

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], permutations: Any = None
    ) -> RelabelRecord:
        """Inverse of :meth:`to_dict`.

        Parameters
        ----------
        data : mapping
            What :meth:`to_dict` returned (possibly through JSON).
        permutations : array-like or xarray.DataArray, optional
            The permutations, when ``data`` was written without them (for
            example the ``permutation`` DataArray of :meth:`to_dataarray`).
        """
        if permutations is None:
            if "permutations" not in data:
                raise ValueError(
                    "The record dict has no 'permutations'; pass them with "
                    "permutations= (e.g. the DataArray from to_dataarray())."
                )
            permutations = data["permutations"]
        if isinstance(permutations, xr.DataArray):
            permutations = permutations.transpose(*SAMPLE_DIMS, COMPONENT_DIM).values
        required = {"n_iter", "converged", "share_permuted", "pivot"}
        missing = required - set(data)
        if missing:
            raise ValueError(f"The record dict lacks the key(s) {sorted(missing)}.")
        return cls(
            permutations=np.asarray(permutations, dtype=np.int64),
            share_permuted=data["share_permuted"],
            n_iter=data["n_iter"],
            converged=data["converged"],
            pivot=MixturePivot.from_dict(data["pivot"]),
            method=data.get("method", "pivot"),
            covariance_type=data.get("covariance_type"),
            feature=data.get("feature"),
            chain=data.get("chain"),
            draw=data.get("draw"),
        )

    def to_dataarray(self) -> xr.DataArray:
        """The permutations as ``permutation(chain, draw, component)``."""
        return xr.DataArray(
            np.array(self.permutations),
            dims=(*SAMPLE_DIMS, COMPONENT_DIM),
            coords={
                "chain": np.array(self.chain),
                "draw": np.array(self.draw),
                COMPONENT_DIM: np.arange(self.n_components),
            },
            name="permutation",
            attrs={
                "description": (
                    "relabelled component j of each draw is original component "
                    "permutation[chain, draw, j]"
                ),
                "method": self.method,
            },
        )


# ---------------------------------------------------------------------------
# permutations
# ---------------------------------------------------------------------------
def _check_permutation_array(perms: np.ndarray) -> np.ndarray:
    if perms.ndim != 3:
        raise ValueError(
            f"permutations must have shape (chain, draw, n_components), got "
            f"{perms.shape}."
        )
    if perms.dtype.kind not in "iu":
        if perms.dtype.kind == "f" and np.all(perms == np.round(perms)):
            perms = perms.astype(np.int64)
        else:
            raise ValueError(f"permutations must be integers, got dtype {perms.dtype}.")
    perms = np.array(perms, dtype=np.int64)
    k = perms.shape[-1]
    if not np.array_equal(
        np.sort(perms, axis=-1), np.broadcast_to(np.arange(k), perms.shape)
    ):
        bad = np.argwhere(np.any(np.sort(perms, axis=-1) != np.arange(k), axis=-1))[0]
        raise ValueError(
            f"permutations[{bad[0]}, {bad[1]}] = {perms[bad[0], bad[1]].tolist()} "
            f"is not a permutation of 0..{k - 1}."
        )
    return perms


def _take_components(arr: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """``out[s, j] = arr[s, perms[s, j]]`` for ``arr`` (S, K, ...), ``perms`` (S, K)."""
    return arr[np.arange(arr.shape[0])[:, None], perms]


def inverse_permutations(permutations: np.ndarray) -> np.ndarray:
    """Permutations that undo ``permutations`` (same shape).

    Parameters
    ----------
    permutations : ndarray of int of shape (..., n_components)
        Permutations in the module's convention.

    Returns
    -------
    ndarray of int of shape (..., n_components)
        ``inv`` with ``inv[..., permutations[..., j]] = j``.
    """
    return np.argsort(np.asarray(permutations), axis=-1, kind="stable")


def _as_dataset(posterior) -> xr.Dataset:
    if isinstance(posterior, xr.Dataset):
        return posterior
    if isinstance(posterior, xr.DataTree):
        return posterior.to_dataset()
    raise TypeError(
        "posterior must be an xarray.Dataset (or a DataTree node such as "
        f"dt['posterior']), got {type(posterior).__name__}."
    )


def _permutations_from(permutations) -> np.ndarray:
    if isinstance(permutations, RelabelRecord):
        return np.asarray(permutations.permutations)
    if isinstance(permutations, xr.DataArray):
        dims = (*SAMPLE_DIMS, COMPONENT_DIM)
        if set(permutations.dims) != set(dims):
            raise ValueError(
                f"a permutation DataArray must have dims {dims}, got "
                f"{permutations.dims}."
            )
        return permutations.transpose(*dims).values
    return np.asarray(permutations)


def apply_permutations(dataset: xr.Dataset, permutations: Any) -> xr.Dataset:
    """Permute the ``component`` dimension of every variable, draw by draw.

    Parameters
    ----------
    dataset : xarray.Dataset
        Draws with dims ``(chain, draw, ...)`` (a DataTree node is accepted).
        Every data variable with a ``component`` dimension must also have
        ``chain`` and ``draw``; variables without ``component`` are returned
        unchanged. Only the dimension named ``component`` is permuted.
    permutations : ndarray of int of shape (n_chains, n_draws, n_components), \
xarray.DataArray or RelabelRecord
        Relabelled component ``j`` of draw ``(c, s)`` is original component
        ``permutations[c, s, j]``. A DataArray must have dims ``(chain, draw,
        component)``.

    Returns
    -------
    xarray.Dataset
        A new dataset; attributes and coordinates are kept (the ``component``
        coordinate keeps its values: they now name the new labels).

    Raises
    ------
    ValueError
        If the permutations are not permutations or their shape does not
        match the dataset.
    """
    ds = _as_dataset(dataset)
    perms = _check_permutation_array(_permutations_from(permutations))
    n_chain, n_draw, k = perms.shape
    for dim, size in zip(SAMPLE_DIMS, (n_chain, n_draw), strict=True):
        if dim in ds.sizes and ds.sizes[dim] != size:
            raise ValueError(
                f"permutations have {size} {dim}(s) but the dataset has "
                f"{ds.sizes[dim]}."
            )
    if COMPONENT_DIM in ds.sizes and ds.sizes[COMPONENT_DIM] != k:
        raise ValueError(
            f"permutations are over {k} components but the dataset's "
            f"'{COMPONENT_DIM}' dimension has size {ds.sizes[COMPONENT_DIM]}."
        )
    if isinstance(permutations, xr.DataArray):
        for dim in SAMPLE_DIMS:
            if (
                dim in permutations.coords
                and dim in ds.coords
                and not np.array_equal(permutations[dim].values, ds[dim].values)
            ):
                raise ValueError(
                    f"the permutations' '{dim}' coordinates differ from the dataset's."
                )
    flat_perms = perms.reshape(n_chain * n_draw, k)
    new_vars = {}
    for name, da in ds.data_vars.items():
        if COMPONENT_DIM not in da.dims:
            continue
        missing = [d for d in SAMPLE_DIMS if d not in da.dims]
        if missing:
            raise ValueError(
                f"variable {name!r} has a '{COMPONENT_DIM}' dimension but no "
                f"{missing} dimension: it cannot be permuted draw by draw."
            )
        rest = [d for d in da.dims if d not in (*SAMPLE_DIMS, COMPONENT_DIM)]
        order = (*SAMPLE_DIMS, COMPONENT_DIM, *rest)
        arr = np.asarray(da.transpose(*order).values)
        flat = arr.reshape(n_chain * n_draw, *arr.shape[2:])
        permuted = _take_components(flat, flat_perms).reshape(arr.shape)
        back = [order.index(d) for d in da.dims]
        new_vars[name] = da.copy(data=np.transpose(permuted, back))
    return ds.assign(new_vars)


# ---------------------------------------------------------------------------
# extracting the draws
# ---------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _Draws:
    """Parameters of every draw, flattened over (chain, draw)."""

    weights: np.ndarray  # (S, K)
    means: np.ndarray  # (S, K, D)
    covariances: np.ndarray | None  # (S, *EM shape)
    cov_has_component: bool
    n_chain: int
    n_draw: int

    @property
    def n_components(self):
        return self.weights.shape[1]

    @property
    def n_features(self):
        return self.means.shape[2]

    def permuted(self, perms):
        """The draws relabelled by ``perms`` of shape (S, K)."""
        weights = _take_components(self.weights, perms)
        means = _take_components(self.means, perms)
        cov = self.covariances
        if cov is not None and self.cov_has_component:
            cov = _take_components(cov, perms)
        return _Draws(
            weights, means, cov, self.cov_has_component, self.n_chain, self.n_draw
        )

    def mean_pivot(self):
        """The posterior mean as a pivot (weights renormalised)."""
        weights = self.weights.mean(axis=0)
        return MixturePivot(
            weights / weights.sum(), self.means.mean(axis=0), self.covariances.mean(0)
        )


def _get_var(ds, name, dims, purpose):
    if name not in ds.data_vars:
        raise ValueError(
            f"the posterior has no variable {name!r}, which {purpose} needs; "
            f"its variables are {sorted(map(str, ds.data_vars))}."
        )
    da = ds[name]
    if len(da.dims) != len(dims) or set(da.dims) != set(dims):
        raise ValueError(
            f"posterior[{name!r}] has dims {da.dims}; {purpose} expects {dims} "
            "(in any order)."
        )
    arr = np.asarray(da.transpose(*dims).values, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"posterior[{name!r}] contains NaN or infinity.")
    return arr


def _extract(ds, cov_dims, purpose, *, need_covariances=True) -> _Draws:
    weights = _get_var(ds, "weights", (*SAMPLE_DIMS, COMPONENT_DIM), purpose)
    means = _get_var(ds, "means", (*SAMPLE_DIMS, COMPONENT_DIM, "feature"), purpose)
    n_chain, n_draw, k = weights.shape
    if means.shape[:3] != weights.shape:
        raise ValueError(
            f"posterior['means'] has sizes {means.shape[:3]} along (chain, draw, "
            f"component) but posterior['weights'] has {weights.shape}."
        )
    if np.any(weights < 0):
        raise ValueError("posterior['weights'] has negative values.")
    s = n_chain * n_draw
    cov = None
    if cov_dims is not None:
        if "covariances" in ds.data_vars or need_covariances:
            cov = _get_var(ds, "covariances", (*SAMPLE_DIMS, *cov_dims), purpose)
            d = means.shape[-1]
            sizes = {COMPONENT_DIM: k, "feature": d, "feature_bis": d}
            expected = tuple(sizes[dim] for dim in cov_dims)
            if cov.shape != (n_chain, n_draw, *expected):
                raise ValueError(
                    f"posterior['covariances'] has shape {cov.shape}; with "
                    f"{k} components and {d} features it should be "
                    f"{(n_chain, n_draw, *expected)}."
                )
            cov = cov.reshape(s, *expected)
    return _Draws(
        weights.reshape(s, k),
        means.reshape(s, k, -1),
        cov,
        cov_dims is not None and COMPONENT_DIM in cov_dims,
        n_chain,
        n_draw,
    )


def _check_pivot(pivot: MixturePivot, ct, k, d):
    if pivot.n_components != k:
        raise ValueError(
            f"the pivot has {pivot.n_components} components but the posterior has {k}."
        )
    if pivot.n_features != d:
        raise ValueError(
            f"the pivot has {pivot.n_features} features but the posterior has {d}."
        )
    expected = tuple(ct.shape(k, d))
    if pivot.covariances.shape != expected:
        raise ValueError(
            f"the pivot's covariances have shape {pivot.covariances.shape}; "
            f"covariance_type={ct.name!r} with K={k}, D={d} needs {expected}."
        )


# ---------------------------------------------------------------------------
# the matching cost
# ---------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _DrawFactors:
    """Draw-side terms of the cost, computed once per relabelling."""

    sigma: np.ndarray  # (S, K, D, D) covariance matrices
    log_det: np.ndarray  # (S, K) log det Sigma
    xlogx: np.ndarray  # (S, K) w log w

    def permuted(self, perms):
        """The factors of the draws relabelled by ``perms`` of shape (S, K)."""
        return _DrawFactors(
            _take_components(self.sigma, perms),
            _take_components(self.log_det, perms),
            _take_components(self.xlogx, perms),
        )


def _draw_factors(draws: _Draws, ct) -> _DrawFactors:
    s, k, d = draws.means.shape
    try:
        if draws.cov_has_component:
            chol = ct.to_cholesky(draws.covariances, k, d)
        else:
            # One covariance shared by the components: factor it once per draw.
            # With n_components=1 the single component axis has size 1, wherever
            # the type puts it, so the reshape is exact.
            chol = np.reshape(ct.to_cholesky(draws.covariances, 1, d), (s, 1, d, d))
    except ValueError:
        raise ValueError(
            "some posterior draws of 'covariances' are not positive definite "
            "(or not positive), so they cannot be matched to the pivot."
        ) from None
    chol = np.broadcast_to(chol, (s, k, d, d))
    sigma = chol @ np.swapaxes(chol, -1, -2)
    log_det = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    return _DrawFactors(sigma, log_det, xlogy(draws.weights, draws.weights))


@dataclass(frozen=True, eq=False)
class _PivotFactors:
    inv_chol: np.ndarray  # (K, D, D)  L_k^{-1}
    precision: np.ndarray  # (K, D, D)  Sigma_k^{-1} = L^{-T} L^{-1}
    log_det: np.ndarray  # (K,)
    log_weights: np.ndarray  # (K,)
    white_means: np.ndarray  # (K, D)  L_k^{-1} mu_k


def _pivot_factors(weights, means, chol) -> _PivotFactors:
    """Reference-side terms from weights (K,), means (K, D), factors (K, D, D)."""
    d = means.shape[1]
    eye = np.broadcast_to(np.eye(d), chol.shape)
    # L_k^{-1} by triangular solves against the reference's K factors only.
    inv = scipy.linalg.solve_triangular(chol, eye, lower=True, check_finite=False)
    precision = np.swapaxes(inv, -1, -2) @ inv
    log_det = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    weights = weights / weights.sum()
    return _PivotFactors(
        inv,
        precision,
        log_det,
        np.log(np.maximum(weights, _TINY)),
        np.einsum("kab,kb->ka", inv, means),
    )


def _factors_of_pivot(pivot: MixturePivot, ct) -> _PivotFactors:
    k, d = pivot.n_components, pivot.n_features
    try:
        chol = np.asarray(ct.to_cholesky(pivot.covariances, k, d))
    except ValueError:
        raise ValueError(
            "the pivot's covariances are not positive definite (or not positive)."
        ) from None
    return _pivot_factors(pivot.weights, pivot.means, chol)


def _matched_factors(draws: _Draws, dfac: _DrawFactors) -> _PivotFactors:
    """The mixture closest to the (relabelled) draws in the relabelling cost.

    Minimising ``sum_s C_s`` over the reference, with the draws' labels fixed,
    is moment matching: weights are the posterior mean weights, and each
    component is the weight-weighted average of the draws' Gaussians, i.e.
    mean ``sum_s w_sk mu_sk / W_k`` and covariance ``sum_s w_sk (Sigma_sk +
    (mu_sk - mu_k)(mu_sk - mu_k)^T) / W_k`` (a full matrix for every type).
    """
    w = draws.weights  # (S, K)
    total = np.maximum(w.sum(axis=0), _TINY)  # W_k
    means = np.einsum("sk,skd->kd", w, draws.means) / total[:, None]
    diff = draws.means - means
    scatter = np.einsum("sk,ska,skb->kab", w, diff, diff)
    cov = (np.einsum("sk,skab->kab", w, dfac.sigma) + scatter) / total[:, None, None]
    cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
    return _pivot_factors(w.mean(axis=0), means, np.linalg.cholesky(cov))


def _cost(draws: _Draws, dfac: _DrawFactors, pfac: _PivotFactors) -> np.ndarray:
    """Complete-data KL terms, shape (S, K, K): draw component i vs pivot k.

    ``cost[s, i, k] = w_i (log w_i - log w_k^p + KL(N_i^(s) || N_k^p))``, so
    that the KL divergence of the complete-data distribution of draw ``s``
    relabelled by ``p`` from the pivot's is ``sum_k cost[s, p[k], k]``.
    """
    s, k, d = draws.means.shape
    # tr(Sigma_k^{-1} Sigma_i) for all (s, i, k) in one GEMM over D*D blocks.
    trace = dfac.sigma.reshape(s * k, d * d) @ pfac.precision.reshape(k, d * d).T
    # Whiten every draw mean by every pivot factor in one GEMM:
    # W[b, k*D + a] = (L_k^{-1})[a, b], so (mu @ W)[k-block] = L_k^{-1} mu.
    w_stack = np.transpose(pfac.inv_chol, (2, 0, 1)).reshape(d, k * d)
    y = (draws.means.reshape(s * k, d) @ w_stack).reshape(s, k, k, d)
    y -= pfac.white_means
    maha = np.einsum("sikd,sikd->sik", y, y)
    # KL(N_i || N_k) = (tr(S_k^-1 S_i) + maha - D + log det S_k - log det S_i) / 2
    kl = trace.reshape(s, k, k)
    kl += maha
    kl += pfac.log_det - d
    kl -= dfac.log_det[:, :, None]
    kl *= 0.5
    kl -= pfac.log_weights
    kl *= draws.weights[:, :, None]
    kl += dfac.xlogx[:, :, None]
    return kl


def _all_permutations(k):
    perms = np.array(list(itertools.permutations(range(k))), dtype=np.int64)
    # One-hot map from the flattened (i, k) cost to each permutation's total:
    # permutation q takes cost[perms[q, k], k] for every k.
    onehot = np.zeros((k * k, len(perms)))
    onehot[perms * k + np.arange(k), np.arange(len(perms))[:, None]] = 1.0
    return perms, onehot


_PERMUTATION_TABLES: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _best_permutations(cost: np.ndarray) -> np.ndarray:
    """Optimal permutation of each draw; ``cost`` (S, K, K) rows old, cols pivot.

    Returns ``perms`` (S, K) with ``perms[s, k]`` the old component that takes
    label ``k``, minimising ``sum_k cost[s, perms[s, k], k]``.
    """
    s, k, _ = cost.shape
    # Fast path: if each draw component's cheapest pivot component is distinct,
    # that map attains the lower bound sum_i min_k cost[i, k], so it is optimal.
    nearest = np.argmin(cost, axis=2)
    perms = np.argsort(nearest, axis=1, kind="stable")
    distinct = np.all(np.sort(nearest, axis=1) == np.arange(k), axis=1)
    hard = np.flatnonzero(~distinct)
    if hard.size == 0:
        return perms
    if k <= _ENUMERATE_MAX_K:
        if k not in _PERMUTATION_TABLES:
            _PERMUTATION_TABLES[k] = _all_permutations(k)
        table, onehot = _PERMUTATION_TABLES[k]
        # Score all K! permutations of the hard draws at once (identity first,
        # so exact ties keep the draw's labels).
        chunk = max(1, 2**21 // len(table))
        for start in range(0, hard.size, chunk):
            idx = hard[start : start + chunk]
            totals = cost[idx].reshape(idx.size, k * k) @ onehot
            perms[idx] = table[np.argmin(totals, axis=1)]
    else:
        for i in hard:
            _, cols = linear_sum_assignment(cost[i].T)
            perms[i] = cols
    return perms


# ---------------------------------------------------------------------------
# relabel
# ---------------------------------------------------------------------------
def _share_permuted(perms):
    """Per chain, the fraction of draws with a non-identity permutation."""
    k = perms.shape[-1]
    return np.mean(np.any(perms != np.arange(k), axis=-1), axis=1)


def _sample_coords(ds, n_chain, n_draw):
    coords = []
    for dim, size in zip(SAMPLE_DIMS, (n_chain, n_draw), strict=True):
        coords.append(ds[dim].values if dim in ds.coords else np.arange(size))
    return coords


def relabel(
    posterior: xr.Dataset,
    covariance_type: str,
    pivot: MixturePivot | None = None,
    *,
    max_iter: int = 20,
) -> tuple[xr.Dataset, RelabelRecord]:
    r"""Undo label switching by matching every draw to a pivot mixture.

    For each draw ``s`` the permutation ``p`` of its components that
    minimises the cost below is found (an assignment problem); it is applied
    to every variable with a ``component`` dimension. The pivot is then
    refined to the posterior mean of the relabelled draws and the
    assignment repeated, until no draw's permutation changes or ``max_iter``
    passes have run. Each pass starts from the original draws.

    **Refinement.** The refined reference is the mixture closest to the
    relabelled draws in the cost below, which is moment matching: the
    posterior mean weights; for each component the weight-weighted
    posterior mean of its means, and as covariance the weight-weighted
    posterior mean of its covariances plus the posterior spread of its
    means (kept as a full matrix for every type). Both steps then lower the
    same total cost, so the passes are a coordinate descent that cannot
    cycle. (The plain posterior mean, which the record reports as
    ``pivot``, does not have that property: with it, draws near a tie could
    flip back and forth forever.)

    **Cost.** The cost of relabelling draw :math:`\theta^{(s)}` by ``p`` is
    the Kullback-Leibler divergence of its *complete-data* distribution
    :math:`p(z, x \mid \theta^{(s)})` (label ``z``, observation ``x``), with
    labels permuted, from the pivot's :math:`p(z, x \mid \hat\theta)`:

    .. math::

        C_s(p) = \sum_{k=1}^K w^{(s)}_{p_k} \Big[
            \log \frac{w^{(s)}_{p_k}}{\hat w_k}
            + \mathrm{KL}\big(N(\mu^{(s)}_{p_k}, \Sigma^{(s)}_{p_k})
                              \,\|\, N(\hat\mu_k, \hat\Sigma_k)\big) \Big],

    .. math::

        \mathrm{KL}(N_i \| \hat N_k) = \tfrac12 \big[
            \operatorname{tr}(\hat\Sigma_k^{-1}\Sigma_i)
            + (\mu_i - \hat\mu_k)^\top \hat\Sigma_k^{-1} (\mu_i - \hat\mu_k)
            - D + \log\det\hat\Sigma_k - \log\det\Sigma_i \big].

    Why this cost: it is a sum over components, so the optimum is a linear
    assignment; it contains the Mahalanobis distance of each draw mean from
    the pivot mean *under the pivot covariance*, plus terms that tell
    components apart by weight and by covariance when their means are close;
    a KL divergence is invariant under any invertible affine map of the
    features, so relabelling does not depend on feature units (multiplying
    a feature by 1000 gives the same permutations); it is measured in nats,
    so :func:`label_switching_check` can compare it with absolute
    thresholds; and it only needs the pivot's ``K`` Cholesky factors
    inverted (triangular solves), not one per draw. Up to terms that do not
    depend on ``p``, it is the expected negative complete-data log density
    of the pivot under the draw. Weighting by :math:`w^{(s)}_i` lets nearly
    empty components, whose parameters wander with the prior, barely
    influence the match.

    **Solver.** Per draw, if every component's cheapest pivot component is
    distinct, that map is optimal (it attains the row-minimum lower bound)
    and no solver runs; this covers almost every draw of a well-separated
    posterior. The remaining draws are solved by scoring all ``K!``
    permutations in one matrix product for ``K <= 6``, and by
    :func:`scipy.optimize.linear_sum_assignment` otherwise.

    Parameters
    ----------
    posterior : xarray.Dataset
        Draws with dims ``(chain, draw, ...)``: ``weights (chain, draw,
        component)``, ``means (chain, draw, component, feature)`` and
        ``covariances`` with the dims of ``covariance_type`` (see
        :mod:`bayes_gmm._covariance`). Other variables with a ``component``
        dimension are permuted too; variables without one are unchanged.
        A DataTree node (``dt["posterior"]``) is accepted.
    covariance_type : {"full", "tied", "diag", "spherical"}
        The covariance type of the posterior.
    pivot : MixturePivot, fitted mixture estimator or None, default=None
        The reference labelling, typically the EM fit the chains started
        from (``MixturePivot.from_estimator(em)`` or the estimator itself).
        If None, the draw in the middle of chain 0 is used: there is no log
        posterior here to pick the highest-density draw, and a single draw,
        unlike the mean of a chain, has consistent labels even if that chain
        switched. The iteration then moves the pivot to the posterior mean.
    max_iter : int, default=20
        Maximum number of assignment passes.

    Returns
    -------
    relabelled : xarray.Dataset
        The posterior with every ``component`` variable permuted.
    record : RelabelRecord
        The permutations (``relabelled[c, s, j] = original[c, s,
        permutations[c, s, j]]``), the share of draws permuted per chain,
        the number of passes, whether they converged, and as ``pivot`` the
        posterior mean of the relabelled draws (EM shapes).

    Raises
    ------
    ValueError
        On a missing variable, wrong dims or sizes, a pivot whose ``K``,
        ``D`` or covariance shape does not match, or non-finite draws.

    Warns
    -----
    ConvergenceWarning
        If the permutations still changed at the last of ``max_iter``
        passes (``max_iter > 1``; a single pass is never called converged
        and never warns).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> w = np.array([[[0.3, 0.7], [0.7, 0.3]]])  # draw 1 has swapped labels
    >>> mu = np.array([[[[0.0], [5.0]], [[5.0], [0.0]]]])
    >>> cov = np.ones((1, 2, 2))
    >>> post = xr.Dataset({
    ...     "weights": (("chain", "draw", "component"), w),
    ...     "means": (("chain", "draw", "component", "feature"), mu),
    ...     "covariances": (("chain", "draw", "component"), cov)})
    >>> pivot = MixturePivot([0.3, 0.7], [[0.0], [5.0]], [1.0, 1.0])
    >>> out, record = relabel(post, "spherical", pivot)
    >>> record.permutations[0].tolist()
    [[0, 1], [1, 0]]
    >>> out["means"].values[0, :, :, 0].tolist()
    [[0.0, 5.0], [0.0, 5.0]]
    """
    ct = get_covariance_type(covariance_type)
    max_iter = check_scalar("max_iter", max_iter, int, min_value=1)
    ds = _as_dataset(posterior)
    draws = _extract(ds, ct.dims, "relabel")
    k, d = draws.n_components, draws.n_features
    if pivot is None:
        mid = draws.n_draw // 2  # chain 0 comes first in the flattened draws
        cov = draws.covariances[mid]
        pivot = MixturePivot(
            draws.weights[mid] / draws.weights[mid].sum(), draws.means[mid], cov
        )
    else:
        pivot = _as_pivot(pivot)
    _check_pivot(pivot, ct, k, d)
    dfac = _draw_factors(draws, ct)

    # Coordinate descent on the total cost: assign every draw (optimal for
    # the reference), then move the reference to the mixture closest to the
    # relabelled draws (optimal for the assignment). Neither step can raise
    # the total, so the passes settle; stop when no permutation changes.
    reference = _factors_of_pivot(pivot, ct)
    rows = np.arange(draws.weights.shape[0])[:, None]
    perms = None
    previous = np.inf
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 - n_iter is reported
        cost = _cost(draws, dfac, reference)
        new = _best_permutations(cost)
        total = float(cost[rows, new, np.arange(k)].sum())
        reference = _matched_factors(draws.permuted(new), dfac.permuted(new))
        if perms is not None and (
            np.array_equal(new, perms)
            or total >= previous - 1e-12 * abs(previous)  # only ties moved
        ):
            converged = True
            break
        perms, previous = new, total
    perms = new.reshape(draws.n_chain, draws.n_draw, k)
    if not converged and max_iter > 1:
        warn(
            f"Relabelling did not converge in max_iter={max_iter} passes: some "
            "draws still changed permutation at the last pass. The components "
            "may overlap (see label_switching_check); increase max_iter or "
            "reduce n_components.",
            ConvergenceWarning,
        )
    pivot = draws.permuted(new.reshape(-1, k)).mean_pivot()
    chain, draw = _sample_coords(ds, draws.n_chain, draws.n_draw)
    record = RelabelRecord(
        permutations=perms,
        share_permuted=_share_permuted(perms),
        n_iter=n_iter,
        converged=converged,
        pivot=pivot,
        method="pivot",
        covariance_type=ct.name,
        chain=chain,
        draw=draw,
    )
    logger.info(
        "relabel: %d pass(es), converged=%s, share of draws permuted per chain %s",
        n_iter,
        converged,
        np.round(record.share_permuted, 3).tolist(),
    )
    return apply_permutations(ds, perms), record


def _feature_position(ds, feature, n_features):
    if "feature" in ds.coords and not isinstance(feature, (int, np.integer)):
        labels = [str(v) for v in ds["feature"].values]
        if str(feature) in labels:
            return labels.index(str(feature))
        raise ValueError(f"feature {feature!r} is not one of the features {labels}.")
    if isinstance(feature, bool) or not isinstance(feature, (int, np.integer)):
        raise TypeError(
            f"feature must be an int position or a feature label, got {feature!r}."
        )
    if not -n_features <= feature < n_features:
        raise ValueError(
            f"feature={feature} is out of range for {n_features} feature(s)."
        )
    return int(feature) % n_features


def order_by(
    posterior: xr.Dataset, feature: int | str = 0
) -> tuple[xr.Dataset, RelabelRecord]:
    """Relabel every draw so that one feature's means increase with the label.

    This is what an ordering constraint on the means (``order_means=``)
    imposes. It is simple but distorts the posterior where components
    overlap in that feature, which is why :func:`relabel` is the default.

    Parameters
    ----------
    posterior : xarray.Dataset
        Draws with ``means (chain, draw, component, feature)`` and
        ``weights (chain, draw, component)``; every variable with a
        ``component`` dimension is permuted.
    feature : int or str, default=0
        Position of the feature (or its label in the ``feature``
        coordinate).

    Returns
    -------
    relabelled : xarray.Dataset
        The posterior with components sorted by the chosen feature's mean.
    record : RelabelRecord
        As for :func:`relabel`, with ``method="order_by"``, ``n_iter=1``
        and the posterior mean of the sorted draws as ``pivot`` (its
        covariances are the posterior mean of ``covariances`` in its stored
        dim order, or an empty array if there is no such variable).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> mu = np.array([[[[4.0], [1.0]], [[1.0], [4.0]]]])
    >>> post = xr.Dataset({
    ...     "weights": (("chain", "draw", "component"), np.full((1, 2, 2), 0.5)),
    ...     "means": (("chain", "draw", "component", "feature"), mu)})
    >>> out, record = order_by(post)
    >>> out["means"].values[0, :, :, 0].tolist()
    [[1.0, 4.0], [1.0, 4.0]]
    """
    ds = _as_dataset(posterior)
    cov_dims = None
    if "covariances" in ds.data_vars:
        dims = [d for d in ds["covariances"].dims if d not in SAMPLE_DIMS]
        cov_dims = tuple(d for d in _COV_DIMS if d in dims)
        if len(cov_dims) != len(dims):
            raise ValueError(
                f"posterior['covariances'] has unexpected dims "
                f"{ds['covariances'].dims}."
            )
    draws = _extract(ds, cov_dims, "order_by", need_covariances=False)
    f = _feature_position(ds, feature, draws.n_features)
    perms = np.argsort(draws.means[:, :, f], axis=1, kind="stable")
    relabelled = draws.permuted(perms)
    weights = relabelled.weights.mean(axis=0)
    cov = (
        relabelled.covariances.mean(axis=0)
        if relabelled.covariances is not None
        else np.zeros((0,))
    )
    pivot = MixturePivot(weights / weights.sum(), relabelled.means.mean(axis=0), cov)
    perms = perms.reshape(draws.n_chain, draws.n_draw, draws.n_components)
    chain, draw = _sample_coords(ds, draws.n_chain, draws.n_draw)
    record = RelabelRecord(
        permutations=perms,
        share_permuted=_share_permuted(perms),
        n_iter=1,
        converged=True,
        pivot=pivot,
        method="order_by",
        feature=f,
        chain=chain,
        draw=draw,
    )
    return apply_permutations(ds, perms), record


# ---------------------------------------------------------------------------
# the diagnostic
# ---------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class LabelSwitchingCheck:
    """Result of :func:`label_switching_check`.

    Attributes
    ----------
    status : {"ok", "warn", "fail"}
        ``"fail"`` if a chain sits at another mode, ``"warn"`` if a chain
        switches labels in a way relabelling cannot undo (or the posterior
        does not match the record), else ``"ok"``.
    chain_status : tuple of str
        Per chain: ``"ok"``; ``"permuted"`` (the chain was a relabelling of
        the others, or switched cleanly within, and relabelling aligned it);
        ``"switching"`` (frequent switches between overlapping components:
        not undone); ``"elsewhere"`` (after relabelling the chain still
        differs from the others: it did not converge to the same mode).
    share_permuted : ndarray of shape (n_chains,)
        Fraction of each chain's draws that relabelling permuted.
    switch_rate : ndarray of shape (n_chains,)
        Fraction of consecutive draws whose permutation differs.
    ambiguous_share : ndarray of shape (n_chains,)
        Fraction of draws for which swapping two labels costs less than the
        draw's whole distance (KL) to the reference: the labels of such
        draws are not identified.
    distance : ndarray of shape (n_chains,)
        Largest ``|chain mean - median of chain means| / within-chain sd``
        over all relabelled scalars (weights, means, covariance entries).
    raw_distance : ndarray of shape (n_chains,)
        The same before relabelling.
    invariant_distance : ndarray of shape (n_chains,)
        The same on label-invariant quantities (sorted weights and the
        mixture mean ``sum_k w_k mu_k``).
    modal_permutation : ndarray of int of shape (n_chains, n_components)
        Each chain's most frequent permutation.
    share_unmatched : float
        Fraction of the given (relabelled) draws whose best match to the
        reference is not the identity; 0 for a converged relabelling.
    thresholds : dict
        The thresholds used.
    message : str
        The verdict in plain language, with a remedy where needed.
    """

    status: str
    chain_status: tuple[str, ...]
    share_permuted: np.ndarray
    switch_rate: np.ndarray
    ambiguous_share: np.ndarray
    distance: np.ndarray
    raw_distance: np.ndarray
    invariant_distance: np.ndarray
    modal_permutation: np.ndarray
    share_unmatched: float
    thresholds: dict
    message: str

    @property
    def ok(self) -> bool:
        """True if nothing needs attention."""
        return self.status == "ok"

    def __str__(self) -> str:
        return self.message


def _chain_distance(values: np.ndarray) -> np.ndarray:
    """Max over scalars of |chain mean - median chain mean| / median chain sd.

    ``values`` has shape (n_chain, n_draw, P). Medians make one odd chain
    stand out from the others instead of pulling the centre towards it.
    """
    n_chain, n_draw, _ = values.shape
    if n_chain < 2 or n_draw < 2:
        return np.zeros(n_chain)
    means = values.mean(axis=1)
    sds = values.std(axis=1, ddof=1)
    centre = np.median(means, axis=0)
    scale = np.median(sds, axis=0)
    floor = 1e-12 * np.maximum(np.abs(centre), 1e-300)
    z = np.abs(means - centre) / np.maximum(scale, floor)
    return np.max(z, axis=1)


def _modal_rows(perms: np.ndarray) -> np.ndarray:
    out = np.empty((perms.shape[0], perms.shape[2]), dtype=np.int64)
    for c in range(perms.shape[0]):
        rows, counts = np.unique(perms[c], axis=0, return_counts=True)
        out[c] = rows[np.argmax(counts)]
    return out


def _flat_params(draws: _Draws) -> np.ndarray:
    parts = [draws.weights, draws.means.reshape(draws.means.shape[0], -1)]
    if draws.covariances is not None:
        parts.append(draws.covariances.reshape(draws.covariances.shape[0], -1))
    return np.concatenate(parts, axis=1).reshape(draws.n_chain, draws.n_draw, -1)


def _invariant_params(draws: _Draws) -> np.ndarray:
    sorted_w = np.sort(draws.weights, axis=1)
    mixture_mean = np.einsum("sk,skd->sd", draws.weights, draws.means)
    return np.concatenate([sorted_w, mixture_mean], axis=1).reshape(
        draws.n_chain, draws.n_draw, -1
    )


def _chains(indices):
    if len(indices) == 1:
        return f"Chain {indices[0]}"
    return "Chains " + ", ".join(map(str, indices[:-1])) + f" and {indices[-1]}"


def _pct(values):
    lo, hi = float(np.min(values)), float(np.max(values))
    return f"{lo:.0%}" if round(lo, 2) == round(hi, 2) else f"{lo:.0%}-{hi:.0%}"


def _labels(perm):
    return ", ".join(str(int(i)) for i in perm)


def label_switching_check(
    posterior: xr.Dataset,
    covariance_type: str,
    record: RelabelRecord | None = None,
) -> LabelSwitchingCheck:
    """Check for label switching that relabelling did not (or could not) undo.

    Three questions, per chain:

    * **Is the chain a relabelling of the others?** Its most frequent
      permutation differs from the other chains'; after relabelling its
      posterior mean agrees with theirs. Harmless: status ``"permuted"``.
    * **Does it sit elsewhere?** After relabelling, the chain's mean of some
      scalar (weight, mean, covariance entry) is more than
      ``ELSEWHERE_Z = 3`` within-chain posterior sds from the median of the
      chain means. Relabelling cannot explain that: the chain found another
      mode (or has not converged). Status ``"elsewhere"``; the same distance
      on label-invariant quantities (sorted weights, mixture mean) is
      reported as supporting evidence. This needs at least two chains.
    * **Does it switch within the chain in a way relabelling cannot undo?**
      The permutation changes at more than ``SWITCH_RATE = 1%`` of steps
      *and* more than ``AMBIGUOUS_SHARE = 10%`` of the draws are ambiguous:
      swapping two of their labels costs less (in the KL cost of
      :func:`relabel`) than their whole distance to the reference (the
      mixture closest to the relabelled draws, which :func:`relabel`
      converges to), so the components overlap at the resolution of the
      posterior and their labels are not identified. Status
      ``"switching"``.

    Parameters
    ----------
    posterior : xarray.Dataset
        If ``record`` is given, the *relabelled* draws (``record`` already
        applied, as stored in a fit's ``/posterior``); otherwise the draws as
        sampled, which are then relabelled here with :func:`relabel` and its
        default pivot.
    covariance_type : {"full", "tied", "diag", "spherical"}
        The covariance type.
    record : RelabelRecord, optional
        The record of the relabelling that produced ``posterior``.

    Returns
    -------
    LabelSwitchingCheck
        Per-chain statistics, statuses and a plain-language ``message``.
    """
    ct = get_covariance_type(covariance_type)
    ds = _as_dataset(posterior)
    if record is None:
        ds, record = relabel(ds, covariance_type)
    elif not isinstance(record, RelabelRecord):
        raise TypeError(
            f"record must be a RelabelRecord or None, got {type(record).__name__}."
        )
    draws = _extract(ds, ct.dims, "label_switching_check")
    k = draws.n_components
    perms = np.asarray(record.permutations)
    if perms.shape != (draws.n_chain, draws.n_draw, k):
        raise ValueError(
            f"the record's permutations have shape {perms.shape} but the "
            f"posterior has (chain, draw, component) = "
            f"{(draws.n_chain, draws.n_draw, k)}."
        )
    n_chain, n_draw = draws.n_chain, draws.n_draw

    # Within-chain switching and ambiguity of the relabelled draws, against
    # the reference relabel() converges to: the mixture closest to them.
    dfac = _draw_factors(draws, ct)
    cost = _cost(draws, dfac, _matched_factors(draws, dfac))
    diag = np.diagonal(cost, axis1=1, axis2=2)  # (S, K)
    best = diag.sum(axis=1)
    if k > 1:
        # Swapping labels i, j adds cost[i, j] + cost[j, i] - cost[i, i] - cost[j, j].
        swap = cost + np.swapaxes(cost, 1, 2) - diag[:, :, None] - diag[:, None, :]
        iu = np.triu_indices(k, 1)
        cheapest_swap = swap[:, iu[0], iu[1]].min(axis=1)
        ambiguous = cheapest_swap < best
        unmatched = np.any(_best_permutations(cost) != np.arange(k), axis=1)
    else:
        ambiguous = np.zeros(best.shape, dtype=bool)
        unmatched = ambiguous
    ambiguous_share = ambiguous.reshape(n_chain, n_draw).mean(axis=1)
    share_unmatched = float(unmatched.mean())
    if n_draw > 1:
        changes = np.any(perms[:, 1:] != perms[:, :-1], axis=-1)
        switch_rate = changes.mean(axis=1)
    else:
        switch_rate = np.zeros(n_chain)

    # Between chains: relabelled, raw, and label-invariant distances.
    distance = _chain_distance(_flat_params(draws))
    raw = draws.permuted(inverse_permutations(perms).reshape(-1, k))
    raw_distance = _chain_distance(_flat_params(raw))
    invariant_distance = _chain_distance(_invariant_params(draws))
    modal = _modal_rows(perms)
    rows, counts = np.unique(modal, axis=0, return_counts=True)
    consensus = rows[np.argmax(counts)]

    chain_status = []
    lines = []
    for c in range(n_chain):
        if distance[c] > ELSEWHERE_Z:
            chain_status.append("elsewhere")
            lines.append(
                f"Chain {c} sits at a different mode: after relabelling its "
                f"posterior mean is {distance[c]:.1f} posterior sd from the other "
                f"chains' (label-invariant quantities differ by "
                f"{invariant_distance[c]:.1f} sd), so it is not a relabelling of "
                "them. Remedy: tune and draw longer, start every chain from the "
                "EM fit, or check whether fewer components fit as well."
                + (
                    " (With two chains, which of them is off cannot be told.)"
                    if n_chain == 2
                    else ""
                )
            )
        elif switch_rate[c] > SWITCH_RATE and ambiguous_share[c] > AMBIGUOUS_SHARE:
            chain_status.append("switching")
        elif not np.array_equal(modal[c], consensus) or switch_rate[c] > 0:
            chain_status.append("permuted")
            if not np.array_equal(modal[c], consensus):
                lines.append(
                    f"Chain {c} is a relabelling of the others (its components "
                    f"{_labels(modal[c])} are their {_labels(consensus)}); "
                    "relabelling aligned it, nothing to do."
                )
            else:
                lines.append(
                    f"Chain {c} switched labels at {switch_rate[c]:.1%} of steps; "
                    "the components are well separated and relabelling undid it."
                )
        else:
            chain_status.append("ok")
    switching = [c for c, st in enumerate(chain_status) if st == "switching"]
    if switching:
        lines.append(
            f"{_chains(switching)} switch{'es' if len(switching) == 1 else ''} "
            "labels in a way relabelling cannot "
            f"undo: the permutation changes at {_pct(switch_rate[switching])} of "
            f"steps and {_pct(ambiguous_share[switching])} of the draws are about "
            "as close to a relabelled reference as to the reference (components "
            "overlap). Per-component summaries are unreliable; use fewer "
            "components, an ordering constraint (order_means=), or "
            "label-invariant quantities."
        )
    if share_unmatched > UNMATCHED_SHARE:
        lines.append(
            f"{share_unmatched:.0%} of the draws still match a relabelling of the "
            "pivot better than the pivot itself: pass the relabelled posterior "
            "with its record, or relabel with a larger max_iter."
        )
    if "elsewhere" in chain_status:
        status = "fail"
    elif "switching" in chain_status or share_unmatched > UNMATCHED_SHARE:
        status = "warn"
    else:
        status = "ok"
    if status == "ok":
        n_perm = int(np.round(record.share_permuted @ np.full(n_chain, n_draw)))
        head = (
            f"Label switching: none left after relabelling ({n_perm} of "
            f"{n_chain * n_draw} draws were relabelled)."
        )
        if n_chain < 2:
            head += " With one chain, chains cannot be compared."
    else:
        head = "Label switching: problems left after relabelling."
    message = "\n".join([head, *lines])
    return LabelSwitchingCheck(
        status=status,
        chain_status=tuple(chain_status),
        share_permuted=np.asarray(record.share_permuted),
        switch_rate=switch_rate,
        ambiguous_share=ambiguous_share,
        distance=distance,
        raw_distance=raw_distance,
        invariant_distance=invariant_distance,
        modal_permutation=modal,
        share_unmatched=share_unmatched,
        thresholds={
            "elsewhere_z": ELSEWHERE_Z,
            "switch_rate": SWITCH_RATE,
            "ambiguous_share": AMBIGUOUS_SHARE,
            "unmatched_share": UNMATCHED_SHARE,
        },
        message=message,
    )


# ---------------------------------------------------------------------------
# `bayes_gmm.relabel` is both this module and its main function
# ---------------------------------------------------------------------------
class _RelabelModule(types.ModuleType):
    """This module, callable as :func:`relabel`.

    ``bayes_gmm.relabel`` names the public function, but importing this
    submodule (which fitting a Bayesian model does) binds the module to the
    same attribute of the package. Making the module callable keeps
    ``bayes_gmm.relabel(posterior, pivot)`` and ``from bayes_gmm import
    relabel`` working whichever happened first.
    """

    def __call__(self, *args, **kwargs):
        return relabel(*args, **kwargs)


sys.modules[__name__].__class__ = _RelabelModule
