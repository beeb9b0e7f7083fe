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
log-diagonals.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.linalg
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
        """Soft counts, first moments and the type's second moments."""
        s = self.stats
        t, d = self.t, self.d
        return s[:, -1].copy(), s[:, t : t + d].copy(), self.second(s[:, :t])

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
        self.max_distance2 = float(dist2.max())

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
        return self.s1[:, -1].copy(), self.s1[:, : self.d].copy(), second


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


#: ``full`` uses the design (D^2 / 2 products per row, shared by the E- and
#: M-step) up to max(this, 2 K) features, beyond that the GEMM over
#: [P_1 ... P_K] (2 K D products per row); measured crossover on 1 core.
_FULL_DESIGN_MAX_FEATURES = 12
#: The design expands the quadratic form about the data centre, so its log
#: densities carry an absolute rounding error of about
#: ``4 eps mu_k^T Lam_k mu_k``; beyond this squared Mahalanobis distance of a
#: component mean from the centre (error ~1e-11) the exact form is used.
_FULL_DESIGN_MAX_DISTANCE2 = 1e4


def _em_kernel(covariance_type, means, precisions_cholesky, log_weights):
    """The fused E/M kernel of one EM iteration (see :mod:`bayes_gmm.em`)."""
    name = get_covariance_type(covariance_type).name
    if name == "full":
        k, d = means.shape
        if d <= max(_FULL_DESIGN_MAX_FEATURES, 2 * k):
            kernel = _FullDesign(means, precisions_cholesky, log_weights)
            if kernel.max_distance2 <= _FULL_DESIGN_MAX_DISTANCE2:
                return kernel
        return _FullExact(means, precisions_cholesky, log_weights)
    kind = {"diag": _DiagDesign, "spherical": _SphericalDesign, "tied": _TiedDesign}
    return kind[name](means, precisions_cholesky, log_weights)
