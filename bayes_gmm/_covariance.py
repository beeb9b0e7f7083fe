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

No covariance matrix is ever inverted: ``P`` is the inverse of the triangular
Cholesky factor (LAPACK ``trtri``), and log-determinants are sums of
log-diagonals. Quadratic forms and second moments are computed on
``x - mu_k`` wherever expanding them about another origin would cancel
(see ``_expansion_error``).
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.linalg.lapack import dtrtri

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
    """Return ``L^{-T}`` for lower-triangular ``L`` of shape (..., D, D).

    The inverse of a triangular factor (LAPACK ``dtrtri``), never of a
    covariance; exactly triangular. One call per matrix: measured 5-20x
    faster than a batched ``solve_triangular`` against the identity and
    from as fast (D = 2, K = 10) to 10x faster (D = 50) than
    ``np.linalg.inv`` or ``np.linalg.solve`` of the batch (D = 2-50,
    K = 3-10, one thread).
    """
    d = chol.shape[-1]
    flat = np.reshape(chol, (-1, d, d))
    out = np.empty(flat.shape)
    for i, lower in enumerate(flat):
        # (L^T)^{-1} = L^{-T}: L^T is the upper factor in Fortran order (no copy).
        inv, info = dtrtri(lower.T, lower=0)
        if info != 0:
            raise ValueError(
                "Fitting the mixture failed because a Cholesky factor is "
                "singular. " + _CHOLESKY_REMEDIES.format(reg=None)
            )
        out[i] = inv
    return np.triu(out).reshape(chol.shape)


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
    #: whether the Cholesky factors are diagonal (diag, spherical)
    diagonal: bool = False

    def standardising_scale(self, sd):
        """Per-feature scale that standardises data without changing the type.

        Per-feature standard deviations for every type but ``spherical``,
        whose covariance must stay a multiple of the identity in data units
        and so gets one common scale (the geometric mean).
        """
        return np.asarray(sd, dtype=float)

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
        """Squared Mahalanobis distances, shape (n, K).

        Computed on ``x - mu_k``, never by expanding the square (which
        cancels when a component lies far from the origin of ``X``).
        """
        raise NotImplementedError

    # --- the M-step -------------------------------------------------------------
    def second_moments(self, X, resp, origin):
        """This type's statistic ``sum_n r_nk f(x_n - o_k)`` for a chunk.

        ``origin`` (K, D) holds one origin ``o_k`` per component; ``f`` is
        the outer product (``full``; summed over components for ``tied``),
        its diagonal (``diag``) or trace (``spherical``).
        """
        raise NotImplementedError

    def constant_moments(self, X):
        """Statistic that does not depend on the responsibilities (or None)."""
        return None

    def covariances_from_moments(self, second, first, counts, shift, nk, reg_covar):
        """Covariances (EM shape) from statistics about per-component origins.

        With an origin ``o_k`` per component, ``second`` the sum over chunks
        of :meth:`second_moments` (for ``tied`` with zero origins, the
        :meth:`constant_moments`), ``first`` ``u_k = sum_n r_nk (x_n - o_k)``,
        ``counts`` ``n_k = sum_n r_nk``, ``shift`` ``delta_k = mu_k - o_k``
        (the new mean minus the origin) and ``nk`` the denominators (the counts
        plus ``10 eps``), the scatter about the new mean is exactly

        .. math::

            \\sum_n r_{nk} (x_n - \\mu_k)(x_n - \\mu_k)^T
            = S_k - u_k \\delta_k^T - \\delta_k u_k^T + n_k \\delta_k \\delta_k^T

        (reduced to the type's form). It cancels only as far as
        ``delta_k`` is large next to the component's spread, so statistics
        about the previous iteration's means (``delta_k`` = one EM step) or
        about the new means themselves (``delta_k = 0``) lose no digits.
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
        # |(x - mu_k) P_k|^2: one batched product over the (K, n, D) differences.
        y = np.matmul(X[None, :, :] - means[:, None, :], precisions_cholesky)
        return np.einsum("knd,knd->nk", y, y)

    def second_moments(self, X, resp, origin):
        # sum_n r_nk (x_n - o_k)(x_n - o_k)^T: a batched (D, n) (n, D) product.
        diff = X[None, :, :] - origin[:, None, :]
        weighted = diff * resp.T[:, :, None]
        return np.matmul(np.swapaxes(weighted, 1, 2), diff)

    def covariances_from_moments(self, second, first, counts, shift, nk, reg_covar):
        # Scatter about the new mean: S - u d^T - d u^T + n d d^T, then / n_k.
        cross = first[:, :, None] * shift[:, None, :]
        cov = second - cross - np.swapaxes(cross, -1, -2)
        cov += counts[:, None, None] * shift[:, :, None] * shift[:, None, :]
        cov /= nk[:, None, None]
        cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
        d = shift.shape[1]
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
        chol = _cholesky(covariances, reg_covar)  # (..., D, D) -> (..., K, D, D)
        shape = (*chol.shape[:-2], n_components, *chol.shape[-2:])
        return np.broadcast_to(chol[..., None, :, :], shape)

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
        # |(x - mu_k) P|^2: the (K n, D) differences times P in one GEMM.
        y = np.matmul(X[None, :, :] - means[:, None, :], precisions_cholesky)
        return np.einsum("knd,knd->nk", y, y)

    def second_moments(self, X, resp, origin):
        # sum_k sum_n r_nk (x_n - o_k)(x_n - o_k)^T in one GEMM over (K n) rows.
        d = X.shape[1]
        diff = (X[None, :, :] - origin[:, None, :]).reshape(-1, d)
        return (diff * resp.T.reshape(-1, 1)).T @ diff

    def constant_moments(self, X):
        return X.T @ X

    def covariances_from_moments(self, second, first, counts, shift, nk, reg_covar):
        # Pooled scatter: sum_k (S_k - u_k d_k^T - d_k u_k^T + n_k d_k d_k^T) / N.
        cross = first.T @ shift
        cov = second - cross - cross.T + (counts[:, None] * shift).T @ shift
        cov /= nk.sum()
        cov = 0.5 * (cov + cov.T)
        cov.flat[:: shift.shape[1] + 1] += reg_covar
        return cov


class _Diag(CovarianceType):
    name = "diag"
    dims = ("component", "feature")
    diagonal = True

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
        # sum_d (p_kd (x_d - mu_kd))^2 on the (K, n, D) differences.
        y = (X[None, :, :] - means[:, None, :]) * precisions_cholesky[:, None, :]
        return np.einsum("knd,knd->nk", y, y)

    def second_moments(self, X, resp, origin):
        diff = X[None, :, :] - origin[:, None, :]
        return np.einsum("nk,knd->kd", resp, diff * diff)

    def covariances_from_moments(self, second, first, counts, shift, nk, reg_covar):
        # Scatter about the new mean (the diagonal of the full form) / n_k:
        # S - 2 u d + n d^2 = S + d (n d - 2 u).
        cov = counts[:, None] * shift
        cov -= 2.0 * first
        cov *= shift
        cov += second
        cov /= nk[:, None]
        cov += reg_covar
        return cov


class _Spherical(CovarianceType):
    name = "spherical"
    dims = ("component",)
    diagonal = True

    def standardising_scale(self, sd):
        sd = np.asarray(sd, dtype=float)
        return np.full_like(sd, np.exp(np.mean(np.log(sd))))

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
        # lam_k |x - mu_k|^2 on the (K, n, D) differences.
        diff = X[None, :, :] - means[:, None, :]
        out = np.einsum("knd,knd->nk", diff, diff)
        out *= precisions_cholesky**2
        return out

    def second_moments(self, X, resp, origin):
        diff = X[None, :, :] - origin[:, None, :]
        return np.einsum("nk,kn->k", resp, np.einsum("knd,knd->kn", diff, diff))

    def covariances_from_moments(self, second, first, counts, shift, nk, reg_covar):
        # Trace of the scatter about the new mean, / (D n_k).
        d = shift.shape[1]
        cov = counts[:, None] * shift
        cov -= 2.0 * first
        cov *= shift
        cov = cov.sum(axis=1)
        cov += second
        cov /= d * nk
        cov += reg_covar
        return cov


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
    means = np.asarray(means, dtype=float)
    chol = np.asarray(chol, dtype=float)
    n, d = X.shape
    # y = L^{-1} (x - mu) by forward substitution, one feature at a time and
    # vectorised over draws, components and samples: scipy's batched
    # solve_triangular pays a call per (draw, component), which made scoring
    # 4000 draws of a small mixture take seconds.
    y = X[..., None, :, :] - means[..., :, None, :]  # (..., K, n, D)
    diag = np.diagonal(chol, axis1=-2, axis2=-1)  # (..., K, D)
    for i in range(d):
        if i:
            y[..., i] -= (y[..., :i] @ chol[..., i, :i, None])[..., 0]
        y[..., i] /= diag[..., i, None]
    maha = np.sum(y * y, axis=-1)  # (..., K, n)
    log_det = np.sum(np.log(diag), axis=-1)
    out = -0.5 * (d * _LOG_2PI + maha) - log_det[..., None]
    return np.swapaxes(out, -1, -2)


# --- fused EM kernels ----------------------------------------------------------
# Private machinery of bayes_gmm.em: one object per EM iteration that turns a
# chunk of rows into weighted log densities and adds that chunk's M-step
# statistics. Arrays are kept transposed, (K, m) and (features, m), so that
# the log-sum-exp over components runs along contiguous rows and every product
# over components is one GEMM (never a Python loop over components).


class _DesignKernel:
    """``log w_k + log N(x | k) = W_k . f(x)`` with the design ``f = (q(x), x, 1)``.

    ``q(x)`` are the quadratic features of the type (``x x^T`` upper triangle
    for ``full``, ``x^2`` for ``diag``, ``|x|^2`` for ``spherical``, none for
    ``tied``, whose ``-|x P|^2 / 2`` is common to all components and enters only
    the normaliser). The same design matrix then gives every M-step statistic
    (soft counts, first and second moments) in one GEMM with the
    responsibilities.
    """

    #: whether the type's M-step needs statistics that do not depend on the
    #: responsibilities (``constant_moments``, for ``tied``)
    needs_constant = False

    def __init__(self, weights_matrix, n_quad, n_features):
        self.w = weights_matrix  # (K, M)
        self.t = n_quad
        self.d = n_features
        k, m = weights_matrix.shape
        self.stats = np.zeros((k, m))
        # The design is read by two GEMMs (and packed by each): count it twice.
        self.row_floats = 2 * m + k

    def allocate(self, rows):
        m_cols = self.w.shape[1]
        self.f = np.empty((m_cols, rows))
        self.f[-1] = 1.0
        self.lp = np.empty((self.w.shape[0], rows))

    def quadratic(self, xt, out):
        """Fill ``out`` (t, m) with the quadratic features of ``xt`` (d, m)."""

    def row_term(self, xt):
        """Per-row log-density term common to all components (or None)."""
        return None

    def log_prob(self, X, center):
        """Weighted log densities of rows ``X`` (transposed) and the row term."""
        m = X.shape[0]
        f = self.f[:, :m]
        xt = f[self.t : self.t + self.d]
        np.subtract(X.T, center[:, None], out=xt)
        self.quadratic(xt, f[: self.t])
        self._f = f
        lp = self.lp[:, :m]
        np.matmul(self.w, f, out=lp)
        return lp, self.row_term(xt)

    def accumulate(self, resp_t):
        """Add ``sum_n r_nk f(x_n)`` for the chunk of the last :meth:`log_prob`."""
        self.stats += resp_t @ self._f.T

    def moments(self):
        """Soft counts, first and second moments, and their origins.

        The design's moments are about the centre, so the origins are None
        (zero); see :meth:`CovarianceType.covariances_from_moments`.
        """
        s = self.stats
        t, d = self.t, self.d
        return s[:, -1].copy(), s[:, t : t + d].copy(), self.second(s[:, :t]), None

    def second(self, quad):
        return quad.copy()


@functools.lru_cache(maxsize=64)
def _upper_triangle(d):
    """Indices of the upper triangle of a (d, d) matrix, row by row.

    Also the weights of ``-x^T Lam x / 2`` on the products ``x_i x_j``
    (``-1/2`` on the diagonal, ``-1`` off it) and the offset of row ``i``
    (the products ``x_i x[i:]``) in that order.
    """
    iu, ju = np.triu_indices(d)
    scale = np.where(iu == ju, -0.5, -1.0)
    offsets = np.concatenate([[0], np.cumsum(np.arange(d, 0, -1))]).tolist()
    return iu, ju, scale, offsets


class _FullDesign(_DesignKernel):
    # -(x - mu)^T Lam (x - mu) / 2 = -x^T Lam x / 2 + x^T Lam mu - mu^T Lam mu / 2,
    # with Lam = P P^T from the precision Cholesky factors (no inverse taken).
    def __init__(self, means, precisions_cholesky, log_weights):
        k, d = means.shape
        iu, ju, scale, offsets = _upper_triangle(d)
        lam = precisions_cholesky @ np.swapaxes(precisions_cholesky, -1, -2)
        wq = lam[:, iu, ju]
        wq *= scale
        mp = np.einsum("kd,kde->ke", means, precisions_cholesky)  # P^T mu
        wx = np.einsum("kde,ke->kd", precisions_cholesky, mp)  # Lam mu
        dist2 = np.einsum("ke,ke->k", mp, mp)  # mu^T Lam mu
        const = (
            log_weights
            + _FULL.log_det_precision_cholesky(precisions_cholesky, d)
            - 0.5 * d * _LOG_2PI
            - 0.5 * dist2
        )
        super().__init__(np.hstack([wq, wx, const[:, None]]), iu.size, d)
        self.iu, self.ju, self.offsets = iu, ju, offsets

    def quadratic(self, xt, out):
        off = self.offsets
        for i in range(self.d):  # over features, not components
            np.multiply(xt[i], xt[i:], out=out[off[i] : off[i + 1]])

    def second(self, quad):
        k = quad.shape[0]
        out = np.empty((k, self.d, self.d))
        out[:, self.iu, self.ju] = quad
        out[:, self.ju, self.iu] = quad
        return out


class _FullExact:
    """``full`` for many features: ``(x - mu_k) P_k`` for all k in one GEMM.

    The design of :class:`_FullDesign` grows as ``D^2 / 2`` per row, so for
    large ``D`` the Mahalanobis form (scikit-learn's, without its loop) is
    cheaper: ``[x, 1] [P_1 ... P_K; -mu_1 P_1 ... -mu_K P_K] / sqrt(2)`` is
    one well-shaped GEMM whose squared blocks sum to half the distances, and
    the second moments ``sum_n r_nk x_n x_n^T`` are ``(r x)^T x``, another.
    """

    needs_constant = False

    def __init__(self, means, precisions_cholesky, log_weights):
        k, d = means.shape
        self.k, self.d = k, d
        mp = np.einsum("kd,kde->ke", means, precisions_cholesky)  # mu_k^T P_k
        self.p_aug = np.empty((d + 1, k * d))
        self.p_aug[:d] = np.swapaxes(precisions_cholesky, 0, 1).reshape(d, k * d)
        self.p_aug[d] = -mp.reshape(k * d)
        self.p_aug *= np.sqrt(0.5)
        self.const = (
            log_weights
            + _FULL.log_det_precision_cholesky(precisions_cholesky, d)
            - 0.5 * d * _LOG_2PI
        )[:, None]
        self.s1 = np.zeros((k, d + 1))  # first moments and soft counts
        self.sxx = np.zeros((k * d, d))
        # y is written by the E-step GEMM, then rewritten as r x for the M-step.
        self.row_floats = 2 * k * d + d + k

    def allocate(self, rows):
        self.xa = np.empty((rows, self.d + 1))
        self.xa[:, self.d] = 1.0
        self.y = np.empty((rows, self.k * self.d))
        self.lp = np.empty((self.k, rows))

    def log_prob(self, X, center):
        m = X.shape[0]
        xa = self.xa[:m]
        np.subtract(X, center, out=xa[:, : self.d])
        y = self.y[:m]
        np.matmul(xa, self.p_aug, out=y)
        y3 = y.reshape(m, self.k, self.d)
        lp = self.lp[:, :m]
        np.einsum("nkd,nkd->kn", y3, y3, out=lp)  # half the distances
        np.subtract(self.const, lp, out=lp)
        self._m = m
        return lp, None

    def accumulate(self, resp_t):
        m = self._m
        xa = self.xa[:m]
        xc = xa[:, : self.d]
        self.s1 += resp_t @ xa
        z = self.y[:m].reshape(m, self.k, self.d)
        np.multiply(resp_t.T[:, :, None], xc[:, None, :], out=z)
        self.sxx += self.y[:m].T @ xc

    def moments(self):
        second = self.sxx.reshape(self.k, self.d, self.d)
        return self.s1[:, -1].copy(), self.s1[:, : self.d].copy(), second, None


class _DiagDesign(_DesignKernel):
    def __init__(self, means, precisions_cholesky, log_weights):
        k, d = means.shape
        lam = precisions_cholesky**2
        const = (
            log_weights
            + np.sum(np.log(precisions_cholesky), axis=1)
            - 0.5 * d * _LOG_2PI
            - 0.5 * np.sum(means**2 * lam, axis=1)
        )
        super().__init__(np.hstack([-0.5 * lam, lam * means, const[:, None]]), d, d)

    def quadratic(self, xt, out):
        np.multiply(xt, xt, out=out)


class _SphericalDesign(_DesignKernel):
    def __init__(self, means, precisions_cholesky, log_weights):
        k, d = means.shape
        lam = precisions_cholesky**2
        const = (
            log_weights
            + d * np.log(precisions_cholesky)
            - 0.5 * d * _LOG_2PI
            - 0.5 * lam * np.sum(means**2, axis=1)
        )
        w = np.hstack([-0.5 * lam[:, None], lam[:, None] * means, const[:, None]])
        super().__init__(w, 1, d)

    def quadratic(self, xt, out):
        np.einsum("dn,dn->n", xt, xt, out=out[0])

    def second(self, quad):
        return quad[:, 0].copy()


class _TiedDesign(_DesignKernel):
    needs_constant = True

    def __init__(self, means, precisions_cholesky, log_weights):
        k, d = means.shape
        mp = means @ precisions_cholesky  # rows mu_k^T P
        const = (
            log_weights
            + _FULL.log_det_precision_cholesky(precisions_cholesky, d)
            - 0.5 * d * _LOG_2PI
            - 0.5 * np.einsum("kd,kd->k", mp, mp)
        )
        super().__init__(np.hstack([mp @ precisions_cholesky.T, const[:, None]]), 0, d)
        self.pt = np.ascontiguousarray(precisions_cholesky.T)
        self.row_floats += d

    def allocate(self, rows):
        super().allocate(rows)
        self.y = np.empty((self.d, rows))

    def row_term(self, xt):
        # -|x P|^2 / 2, the same for every component.
        y = self.y[:, : xt.shape[1]]
        np.matmul(self.pt, xt, out=y)
        return -0.5 * np.einsum("dn,dn->n", y, y)

    def second(self, quad):
        return None


class _CentredKernel:
    """Kernels that centre every row on every component's mean.

    The design kernels expand the quadratic forms about the centre of the
    data, which cancels when a component lies many of its standard
    deviations away from it or its features are nearly collinear (see
    :func:`_expansion_error`). These kernels work on the differences
    ``x - mu_k`` (shape (K, m, D)) instead: the E-step multiplies them by
    the precision factor and the M-step adds the second moments about the
    same means, the previous iteration's (the shift form of
    :meth:`CovarianceType.covariances_from_moments`), so nothing cancels
    beyond one EM step of the means, still in one pass over the data. They
    move K times more data than the designs (measured 3-9x slower per
    iteration), so they are used only where the designs would lose digits.
    """

    needs_constant = False

    def __init__(self, means, log_weights, log_det):
        k, d = means.shape
        self.k, self.d = k, d
        # Sums over the feature axis are products with this column: numpy's
        # reductions and einsum along a short last axis are 5-20x slower.
        self.ones = np.ones((d, 1))
        self.origin = means
        self.mu = means[:, None, :]
        self.const = (log_weights + log_det - 0.5 * d * _LOG_2PI)[:, None]
        self.s1 = np.zeros((k, d + 1))  # first moments about the centre, counts
        # differences, a work array of the same size, the row and lp
        self.row_floats = 2 * k * d + d + k

    def allocate(self, rows):
        k, d = self.k, self.d
        self.xa = np.empty((rows, d + 1))
        self.xa[:, d] = 1.0
        self.buf = np.empty((2, k * rows * d))
        self.lp = np.empty((k, rows))

    def _views(self, m):
        """Contiguous (K, m, D) differences and work array for m rows."""
        size = self.k * m * self.d
        shape = (self.k, m, self.d)
        return self.buf[0, :size].reshape(shape), self.buf[1, :size].reshape(shape)

    def log_prob(self, X, center):
        m = X.shape[0]
        xc = self.xa[:m, : self.d]
        np.subtract(X, center, out=xc)
        diff, work = self._views(m)
        np.subtract(xc, self.mu, out=diff)
        lp = self.lp[:, :m]
        self.half_distances(diff, work, lp)
        np.subtract(self.const, lp, out=lp)
        self._m = m
        return lp, None

    def accumulate(self, resp_t):
        m = self._m
        self.s1 += resp_t @ self.xa[:m]
        diff, work = self._views(m)
        self.add_second(resp_t, diff, work)

    def moments(self):
        d = self.d
        return self.s1[:, d].copy(), self.s1[:, :d].copy(), self.second, self.origin

    def half_distances(self, diff, work, out):
        """Fill ``out`` (K, m) with half the squared Mahalanobis distances."""
        raise NotImplementedError

    def add_second(self, resp_t, diff, work):
        """Add the chunk's second moments about the origins to ``self.second``."""
        raise NotImplementedError


class _FullCentred(_CentredKernel):
    def __init__(self, means, precisions_cholesky, log_weights):
        k, d = means.shape
        log_det = _FULL.log_det_precision_cholesky(precisions_cholesky, d)
        super().__init__(means, log_weights, log_det)
        self.p = precisions_cholesky * np.sqrt(0.5)  # squares sum to half
        self.second = np.zeros((k, d, d))

    def half_distances(self, diff, work, out):
        np.matmul(diff, self.p, out=work)  # (x - mu_k) P_k, K GEMMs
        np.multiply(work, work, out=work)
        np.matmul(work, self.ones, out=out[:, :, None])

    def add_second(self, resp_t, diff, work):
        # sum_n r_nk (x_n - mu_k)(x_n - mu_k)^T: K (D, m) (m, D) GEMMs.
        np.multiply(diff, resp_t[:, :, None], out=work)
        self.second += np.matmul(np.swapaxes(work, 1, 2), diff)


class _TiedCentred(_CentredKernel):
    def __init__(self, means, precisions_cholesky, log_weights):
        k, d = means.shape
        log_det = _FULL.log_det_precision_cholesky(precisions_cholesky, d)
        super().__init__(means, log_weights, log_det)
        self.p = precisions_cholesky * np.sqrt(0.5)
        self.second = np.zeros((d, d))

    def half_distances(self, diff, work, out):
        d = self.d
        np.matmul(diff.reshape(-1, d), self.p, out=work.reshape(-1, d))  # one GEMM
        np.multiply(work, work, out=work)
        np.matmul(work, self.ones, out=out[:, :, None])

    def add_second(self, resp_t, diff, work):
        # Pooled over components: one (D, K m) (K m, D) GEMM.
        d = self.d
        np.multiply(diff, resp_t[:, :, None], out=work)
        self.second += work.reshape(-1, d).T @ diff.reshape(-1, d)


class _DiagCentred(_CentredKernel):
    def __init__(self, means, precisions_cholesky, log_weights):
        k, d = means.shape
        log_det = np.sum(np.log(precisions_cholesky), axis=1)
        super().__init__(means, log_weights, log_det)
        self.half_lam = (0.5 * precisions_cholesky**2)[:, :, None]  # (K, D, 1)
        self.second = np.zeros((k, d))

    def half_distances(self, diff, work, out):
        np.multiply(diff, diff, out=work)  # kept for the M-step
        np.matmul(work, self.half_lam, out=out[:, :, None])

    def add_second(self, resp_t, diff, work):
        # sum_n r_nk (x_nd - mu_kd)^2: K (1, m) (m, D) products.
        self.second += np.matmul(resp_t[:, None, :], work)[:, 0, :]


class _SphericalCentred(_CentredKernel):
    def __init__(self, means, precisions_cholesky, log_weights):
        k, d = means.shape
        super().__init__(means, log_weights, d * np.log(precisions_cholesky))
        self.half_lam = (0.5 * precisions_cholesky**2)[:, None]  # (K, 1)
        self.second = np.zeros(k)
        self.row_floats += k  # the distances, kept for the M-step

    def allocate(self, rows):
        super().allocate(rows)
        self.dist2 = np.empty((self.k, rows))

    def half_distances(self, diff, work, out):
        dist2 = self.dist2[:, : diff.shape[1]]
        np.multiply(diff, diff, out=work)
        np.matmul(work, self.ones, out=dist2[:, :, None])  # |x - mu_k|^2, kept
        np.multiply(dist2, self.half_lam, out=out)

    def add_second(self, resp_t, diff, work):
        dist2 = self.dist2[:, : resp_t.shape[1]]
        self.second += np.matmul(resp_t[:, None, :], dist2[:, :, None])[:, 0, 0]


#: ``full`` uses the design (D^2 / 2 products per row, shared by the E- and
#: M-step) up to max(this, 2 K) features, beyond that the GEMM over
#: [P_1 ... P_K] (2 K D products per row); measured crossover on 1 core.
_FULL_DESIGN_MAX_FEATURES = 12
#: Largest :func:`_expansion_error` for which the design kernels (and the
#: GEMM over [P_1 ... P_K]) are used (rounding errors ~1e4 eps = 2e-12);
#: beyond it every row is centred on every component's mean instead.
_DESIGN_MAX_ERROR = 1e4

_DESIGNS = {"full": _FullDesign, "tied": _TiedDesign, "diag": _DiagDesign}
_DESIGNS["spherical"] = _SphericalDesign
_CENTRED = {"full": _FullCentred, "tied": _TiedCentred, "diag": _DiagCentred}
_CENTRED["spherical"] = _SphericalCentred


def _expansion_error(name, means, precisions_cholesky, covariances):
    """How many ``eps`` the expanded quadratic forms lose, at most over components.

    The design kernels expand ``(x - mu)^T Lam (x - mu)`` about the centre
    of the data (``means`` are relative to it) and accumulate the second
    moments ``sum r x x^T`` about it too. For rows of component ``k`` their
    terms are as large as ``| |P_k|^T (|mu_k| + s_k) |^2`` (``s_k`` the
    standard deviations, ``|.|`` entrywise), while the result is of order
    ``D``: so that is the relative rounding error in units of ``eps``, of
    the log densities and of the covariances alike. It grows with the
    squared distance of the mean from the centre (in the component's own
    metric) and, for ``full`` and ``tied``, with the correlation of the
    features (nearly collinear columns make ``|P|`` large).
    """
    # (in-place ufuncs: this runs once per EM iteration, on small arrays)
    v = np.abs(means)
    if name in ("diag", "spherical"):
        v *= precisions_cholesky if name == "diag" else precisions_cholesky[:, None]
        v += 1.0  # |P| (|mu| + s) with s = 1 / p
    else:
        v += np.sqrt(np.diagonal(covariances, axis1=-2, axis2=-1))
        v = np.matmul(v[:, None, :], np.abs(precisions_cholesky))
    v *= v
    return float(v.sum(axis=-1).max())


def _em_kernel(covariance_type, means, precisions_cholesky, log_weights, covariances):
    """The fused E/M kernel of one EM iteration (see :mod:`bayes_gmm.em`).

    ``means`` are relative to the centre of the data. Designs (or the GEMM
    over [P_1 ... P_K] for ``full`` with many features) when expanding about
    the centre loses at most ~1e4 eps (:func:`_expansion_error`), else the
    kernels that centre every row on every component's mean.
    """
    name = get_covariance_type(covariance_type).name
    k, d = means.shape
    error = _expansion_error(name, means, precisions_cholesky, covariances)
    if np.isfinite(error) and error > _DESIGN_MAX_ERROR:
        return _CENTRED[name](means, precisions_cholesky, log_weights)
    if name == "full" and d > max(_FULL_DESIGN_MAX_FEATURES, 2 * k):
        return _FullExact(means, precisions_cholesky, log_weights)
    return _DESIGNS[name](means, precisions_cholesky, log_weights)
