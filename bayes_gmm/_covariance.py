"""The one covariance parametrisation of bayes_gmm (numpy only).

This module owns the table of covariance types. No other module branches on
the ``covariance_type`` string: they look the type up here with
:func:`get_covariance_type` and call its methods.

=============  ==================  ===============================  ===============
type           EM ``covariances_``  posterior dims after draws       free parameters
=============  ==================  ===============================  ===============
``full``       (K, D, D)           component, feature, feature_bis  K D (D + 1) / 2
``tied``       (D, D)              feature, feature_bis             D (D + 1) / 2
``diag``       (K, D)              component, feature               K D
``spherical``  (K,)                component                        K
=============  ==================  ===============================  ===============

Two factorisations are used and converted between here:

* the *canonical* form, the lower Cholesky factor ``L`` of each component's
  covariance broadcast to ``(..., K, D, D)`` (what ``pm.LKJCholeskyCov``
  returns and what posterior draws are scored with), and
* the *precision Cholesky* form of scikit-learn (``precisions_cholesky_``),
  ``P = L^{-T}`` so that ``Sigma^{-1} = P P^T``, stored in the EM shape of the
  type. The E-step uses it because ``(x - mu) P`` is a matrix product.

No covariance matrix is ever inverted: ``P`` is a triangular solve against the
Cholesky factor, and log-determinants are sums of log-diagonals.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

__all__ = [
    "COVARIANCE_TYPES",
    "CovarianceType",
    "get_covariance_type",
    "n_parameters",
    "log_gaussian_prob",
    "log_gaussian_prob_cholesky",
]

COVARIANCE_TYPES = ("diag", "full", "spherical", "tied")

_LOG_2PI = np.log(2.0 * np.pi)

_CHOLESKY_REMEDIES = (
    "Remedies: use fewer components, increase reg_covar (now {reg}), "
    "standardise the features, or remove constant/duplicated columns."
)


def _cholesky(cov, reg_covar=None):
    """Batched lower Cholesky factor with an error that lists remedies."""
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise ValueError(
            "Fitting the mixture failed because some components have an "
            "ill-defined (singular or collapsed) covariance. "
            + _CHOLESKY_REMEDIES.format(reg=reg_covar)
        ) from None


def _tri_inv_t(chol):
    """Return ``L^{-T}`` for lower-triangular ``L`` of shape (..., D, D)."""
    d = chol.shape[-1]
    eye = np.broadcast_to(np.eye(d), chol.shape)
    # L X = I by forward substitution (a triangular solve, not an inverse of
    # the covariance); the transpose is the upper precision Cholesky factor.
    inv = scipy.linalg.solve_triangular(chol, eye, lower=True, check_finite=False)
    return np.swapaxes(inv, -1, -2)


def _check_positive(values, what, reg_covar=None):
    if np.any(~(values > 0.0)):
        raise ValueError(
            f"Fitting the mixture failed because some components have a "
            f"non-positive {what}. " + _CHOLESKY_REMEDIES.format(reg=reg_covar)
        )


class CovarianceType:
    """Behaviour shared by the four covariance types.

    Subclasses describe one type each; methods take ``K`` components and
    ``D`` features, and arrays in the EM shape of the type.
    """

    name: str = ""
    dims: tuple[str, ...] = ()

    # --- the table ---------------------------------------------------------
    def shape(self, n_components, n_features):
        """Shape of ``covariances_`` for this type."""
        raise NotImplementedError

    def n_covariance_parameters(self, n_components, n_features):
        """Number of free covariance parameters."""
        raise NotImplementedError

    # --- conversions -------------------------------------------------------
    def to_cholesky(self, covariances, n_components, n_features, reg_covar=None):
        """Canonical lower Cholesky factors, shape (K, D, D) (broadcast for tied)."""
        raise NotImplementedError

    def from_cholesky(self, chol):
        """Covariances in this type's EM shape from (..., K, D, D) factors."""
        raise NotImplementedError

    def precision_cholesky(self, covariances, reg_covar=None):
        """scikit-learn's ``precisions_cholesky_`` from covariances."""
        raise NotImplementedError

    def precision_cholesky_from_precisions(self, precisions):
        """``precisions_cholesky_`` from precision matrices (``precisions_init``)."""
        raise NotImplementedError

    def precisions(self, precisions_cholesky):
        """Precision matrices ``P P^T`` in this type's EM shape."""
        raise NotImplementedError

    def covariances_from_precision_cholesky(self, precisions_cholesky):
        """Covariances from ``precisions_cholesky_`` (used for warm starts)."""
        raise NotImplementedError

    # --- the density ----------------------------------------------------------
    def log_det_precision_cholesky(self, precisions_cholesky, n_features):
        """``log det P`` per component, shape (K,) (broadcastable)."""
        raise NotImplementedError

    def mahalanobis(self, X, means, precisions_cholesky):
        """Squared Mahalanobis distances, shape (n, K)."""
        raise NotImplementedError

    # --- the M-step -------------------------------------------------------------
    def second_moments(self, X, resp):
        """This type's sufficient statistic ``sum_n r_nk f(x_n)`` for a chunk."""
        raise NotImplementedError

    def constant_moments(self, X):
        """Statistic that does not depend on the responsibilities (or None)."""
        return None

    def covariances_from_moments(self, moments, nk, means, reg_covar):
        """Covariances (EM shape) from accumulated statistics.

        ``moments`` is the sum over chunks of :meth:`second_moments` (or the
        :meth:`constant_moments` for ``tied``), ``nk`` the soft counts and
        ``means`` the new means, all in the centred frame of the data.
        """
        raise NotImplementedError


class _Full(CovarianceType):
    name = "full"
    dims = ("component", "feature", "feature_bis")

    def shape(self, n_components, n_features):
        return (n_components, n_features, n_features)

    def n_covariance_parameters(self, n_components, n_features):
        return n_components * n_features * (n_features + 1) // 2

    def to_cholesky(self, covariances, n_components, n_features, reg_covar=None):
        return _cholesky(covariances, reg_covar)

    def from_cholesky(self, chol):
        return chol @ np.swapaxes(chol, -1, -2)

    def precision_cholesky(self, covariances, reg_covar=None):
        return _tri_inv_t(_cholesky(covariances, reg_covar))

    def precision_cholesky_from_precisions(self, precisions):
        # Cholesky of the precision, then the upper factor P with P P^T = Lambda
        # obtained, as in scikit-learn, by reversing the row/column order.
        flipped = np.flip(precisions, axis=(-2, -1))
        lower = _cholesky(flipped)
        return np.flip(lower, axis=(-2, -1))

    def precisions(self, precisions_cholesky):
        return precisions_cholesky @ np.swapaxes(precisions_cholesky, -1, -2)

    def covariances_from_precision_cholesky(self, precisions_cholesky):
        # Sigma = (P P^T)^{-1} = Q^T Q with Q = P^{-1} = ((P^T)^{-1})^T.
        q = _tri_inv_t(np.swapaxes(precisions_cholesky, -1, -2))
        return np.swapaxes(q, -1, -2) @ q

    def log_det_precision_cholesky(self, precisions_cholesky, n_features):
        diag = np.diagonal(precisions_cholesky, axis1=-2, axis2=-1)
        return np.sum(np.log(diag), axis=-1)

    def mahalanobis(self, X, means, precisions_cholesky):
        n, d = X.shape
        k = means.shape[0]
        # All K products (x - mu_k) P_k in one GEMM: X [P_1 ... P_K] - mu_k P_k.
        p_cat = np.swapaxes(precisions_cholesky, 0, 1).reshape(d, k * d)
        y = X @ p_cat
        y -= np.einsum("kd,kde->ke", means, precisions_cholesky).reshape(k * d)
        y *= y
        return y.reshape(n, k, d).sum(axis=2)

    def second_moments(self, X, resp):
        n, d = X.shape
        k = resp.shape[1]
        # sum_n r_nk x_n x_n^T for all k in one GEMM: (r x)^T x.
        weighted = (resp[:, :, None] * X[:, None, :]).reshape(n, k * d)
        return (weighted.T @ X).reshape(k, d, d)

    def covariances_from_moments(self, moments, nk, means, reg_covar):
        # Sigma_k = E_k[x x^T] - mu_k mu_k^T  (x centred on the data mean).
        cov = moments / nk[:, None, None] - means[:, :, None] * means[:, None, :]
        cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
        d = means.shape[1]
        cov[:, np.arange(d), np.arange(d)] += reg_covar
        return cov


class _Tied(CovarianceType):
    name = "tied"
    dims = ("feature", "feature_bis")

    def shape(self, n_components, n_features):
        return (n_features, n_features)

    def n_covariance_parameters(self, n_components, n_features):
        return n_features * (n_features + 1) // 2

    def to_cholesky(self, covariances, n_components, n_features, reg_covar=None):
        chol = _cholesky(covariances, reg_covar)
        return np.broadcast_to(chol, (n_components, *chol.shape))

    def from_cholesky(self, chol):
        # All components share it: take the first.
        return _FULL.from_cholesky(chol[..., 0, :, :])

    def precision_cholesky(self, covariances, reg_covar=None):
        return _tri_inv_t(_cholesky(covariances, reg_covar))

    def precision_cholesky_from_precisions(self, precisions):
        return _FULL.precision_cholesky_from_precisions(precisions)

    def precisions(self, precisions_cholesky):
        return _FULL.precisions(precisions_cholesky)

    def covariances_from_precision_cholesky(self, precisions_cholesky):
        return _FULL.covariances_from_precision_cholesky(precisions_cholesky)

    def log_det_precision_cholesky(self, precisions_cholesky, n_features):
        return np.sum(np.log(np.diagonal(precisions_cholesky, axis1=-2, axis2=-1)), -1)

    def mahalanobis(self, X, means, precisions_cholesky):
        # |x P - mu P|^2 = |x P|^2 - 2 (x P).(mu P) + |mu P|^2, with two GEMMs.
        y = X @ precisions_cholesky
        mu = means @ precisions_cholesky
        out = y @ (-2.0 * mu.T)
        out += np.einsum("nd,nd->n", y, y)[:, None]
        out += np.einsum("kd,kd->k", mu, mu)[None, :]
        return np.maximum(out, 0.0, out=out)

    def second_moments(self, X, resp):
        return None

    def constant_moments(self, X):
        return X.T @ X

    def covariances_from_moments(self, moments, nk, means, reg_covar):
        # Pooled within-component scatter: (sum x x^T - sum_k n_k mu_k mu_k^T) / N.
        cov = moments - (nk[:, None] * means).T @ means
        cov /= nk.sum()
        cov = 0.5 * (cov + cov.T)
        cov.flat[:: means.shape[1] + 1] += reg_covar
        return cov


class _Diag(CovarianceType):
    name = "diag"
    dims = ("component", "feature")

    def shape(self, n_components, n_features):
        return (n_components, n_features)

    def n_covariance_parameters(self, n_components, n_features):
        return n_components * n_features

    def to_cholesky(self, covariances, n_components, n_features, reg_covar=None):
        _check_positive(covariances, "variance", reg_covar)
        sd = np.sqrt(covariances)
        return sd[..., :, None] * np.eye(sd.shape[-1])

    def from_cholesky(self, chol):
        return np.diagonal(chol, axis1=-2, axis2=-1) ** 2

    def precision_cholesky(self, covariances, reg_covar=None):
        _check_positive(covariances, "variance", reg_covar)
        return 1.0 / np.sqrt(covariances)

    def precision_cholesky_from_precisions(self, precisions):
        return np.sqrt(precisions)

    def precisions(self, precisions_cholesky):
        return precisions_cholesky**2

    def covariances_from_precision_cholesky(self, precisions_cholesky):
        return 1.0 / precisions_cholesky**2

    def log_det_precision_cholesky(self, precisions_cholesky, n_features):
        return np.sum(np.log(precisions_cholesky), axis=-1)

    def mahalanobis(self, X, means, precisions_cholesky):
        # sum_d lam_d (x_d - mu_d)^2 expanded into GEMMs.
        lam = precisions_cholesky**2
        out = (X * X) @ lam.T
        out -= 2.0 * (X @ (means * lam).T)
        out += np.sum(means**2 * lam, axis=1)[None, :]
        return np.maximum(out, 0.0, out=out)

    def second_moments(self, X, resp):
        return resp.T @ (X * X)

    def covariances_from_moments(self, moments, nk, means, reg_covar):
        return moments / nk[:, None] - means**2 + reg_covar


class _Spherical(CovarianceType):
    name = "spherical"
    dims = ("component",)

    def shape(self, n_components, n_features):
        return (n_components,)

    def n_covariance_parameters(self, n_components, n_features):
        return n_components

    def to_cholesky(self, covariances, n_components, n_features, reg_covar=None):
        _check_positive(covariances, "variance", reg_covar)
        return np.sqrt(covariances)[..., None, None] * np.eye(n_features)

    def from_cholesky(self, chol):
        return np.mean(np.diagonal(chol, axis1=-2, axis2=-1) ** 2, axis=-1)

    def precision_cholesky(self, covariances, reg_covar=None):
        _check_positive(covariances, "variance", reg_covar)
        return 1.0 / np.sqrt(covariances)

    def precision_cholesky_from_precisions(self, precisions):
        return np.sqrt(precisions)

    def precisions(self, precisions_cholesky):
        return precisions_cholesky**2

    def covariances_from_precision_cholesky(self, precisions_cholesky):
        return 1.0 / precisions_cholesky**2

    def log_det_precision_cholesky(self, precisions_cholesky, n_features):
        return n_features * np.log(precisions_cholesky)

    def mahalanobis(self, X, means, precisions_cholesky):
        lam = precisions_cholesky**2
        out = X @ (-2.0 * means.T)
        out += np.einsum("nd,nd->n", X, X)[:, None]
        out += np.einsum("kd,kd->k", means, means)[None, :]
        out *= lam[None, :]
        return np.maximum(out, 0.0, out=out)

    def second_moments(self, X, resp):
        return resp.T @ np.einsum("nd,nd->n", X, X)

    def covariances_from_moments(self, moments, nk, means, reg_covar):
        d = means.shape[1]
        return (moments / nk - np.sum(means**2, axis=1)) / d + reg_covar


_FULL = _Full()
_TYPES: dict[str, CovarianceType] = {
    "full": _FULL,
    "tied": _Tied(),
    "diag": _Diag(),
    "spherical": _Spherical(),
}


def get_covariance_type(name):
    """Look up a covariance type by name.

    Parameters
    ----------
    name : {"full", "tied", "diag", "spherical"}
        The covariance type.

    Returns
    -------
    CovarianceType
        The object that implements that type.

    Raises
    ------
    ValueError
        If ``name`` is not a known type; the message lists the valid ones.
    """
    try:
        return _TYPES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Invalid value for 'covariance_type': {name!r}. "
            f"Valid options are {sorted(_TYPES)}."
        ) from None


def n_parameters(covariance_type, n_components, n_features):
    """Number of free parameters of a Gaussian mixture.

    Covariance parameters (from the type table), ``K D`` means and ``K - 1``
    weights. This is the single definition used by AIC, BIC and ICL.

    Parameters
    ----------
    covariance_type : {"full", "tied", "diag", "spherical"}
        The covariance type.
    n_components : int
        Number of components ``K``.
    n_features : int
        Number of features ``D``.

    Returns
    -------
    int
        The number of free parameters.

    Examples
    --------
    >>> n_parameters("full", 2, 2)
    11
    """
    cov = get_covariance_type(covariance_type).n_covariance_parameters(
        n_components, n_features
    )
    return int(cov + n_components * n_features + n_components - 1)


def log_gaussian_prob(X, means, precisions_cholesky, covariance_type):
    """Log density of every sample under every component.

    .. math::

        \\log N(x \\mid \\mu_k, \\Sigma_k) = -\\tfrac{D}{2}\\log 2\\pi
        + \\log\\det P_k - \\tfrac12 \\lVert (x - \\mu_k) P_k \\rVert^2

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Data (any fixed origin; ``means`` must be in the same frame).
    means : ndarray of shape (n_components, n_features)
        Component means.
    precisions_cholesky : ndarray
        Precision Cholesky factors in the EM shape of ``covariance_type``.
    covariance_type : {"full", "tied", "diag", "spherical"}
        The covariance type.

    Returns
    -------
    ndarray of shape (n_samples, n_components)
        ``log N(x_n | mu_k, Sigma_k)``.
    """
    ct = get_covariance_type(covariance_type)
    d = X.shape[1]
    maha = ct.mahalanobis(X, means, precisions_cholesky)
    log_det = ct.log_det_precision_cholesky(precisions_cholesky, d)
    # log N = -(D log 2pi + maha) / 2 + log det P   (det P = det Sigma^{-1/2})
    maha += d * _LOG_2PI
    maha *= -0.5
    maha += log_det
    return maha


def log_gaussian_prob_cholesky(X, means, chol):
    """Log densities from the canonical form, batched over leading dimensions.

    Used to score posterior draws: ``means`` has shape (..., K, D) and
    ``chol`` (the lower Cholesky factors of the covariances) (..., K, D, D).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Data.
    means : ndarray of shape (..., n_components, n_features)
        Component means.
    chol : ndarray of shape (..., n_components, n_features, n_features)
        Lower Cholesky factors of the component covariances.

    Returns
    -------
    ndarray of shape (..., n_samples, n_components)
        ``log N(x_n | mu_k, L_k L_k^T)``.
    """
    X = np.asarray(X, dtype=float)
    n, d = X.shape
    # y = L^{-1} (x - mu), by a batched triangular solve on the (D, n) block.
    diff = X[..., None, :, :] - means[..., :, None, :]  # (..., K, n, D)
    y = scipy.linalg.solve_triangular(
        chol, np.swapaxes(diff, -1, -2), lower=True, check_finite=False
    )  # (..., K, D, n)
    maha = np.sum(y * y, axis=-2)  # (..., K, n)
    log_det = np.sum(np.log(np.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    out = -0.5 * (d * _LOG_2PI + maha) - log_det[..., None]
    return np.swapaxes(out, -1, -2)
