"""Hand-written log density and gradient of the PyMC model, for nutpie.

:func:`bayes_gmm.model.build_model` defines the model; nutpie's generic
path compiles its PyTensor graph to numba on every new process, which takes
30-70 s on a 2-core machine (much more than the sampling of a small mixture).
This module writes the same log density, in the same flat unconstrained
parameterisation (PyMC's transforms and their Jacobians, the same
constants), together with its gradient, as one numba C callback compiled
once per installation (``cache=True``) and shared by every covariance type,
shape and prior. A fit then only fills an array with the data and the
hyper-parameters.

The tests compare value and gradient with PyMC's compiled ``logp`` and
``dlogp`` of the model at random points, for every covariance type,
``order_means`` and ``D = 1``.

Layout of the flat vector (PyMC's order of free variables, each raveled):

- ``weights_simplex__`` (K - 1): PyMC's simplex transform, ``v = [y,
  -sum(y)]``, ``w = softmax(v)``, log-Jacobian ``log K + sum_k log w_k``.
- ``means_z`` (K, D); or, with ``order_means=j``, ``means_z_ordered`` (K;
  ``x_0 = y_0``, ``x_i = x_{i-1} + exp(y_i)``, log-Jacobian
  ``sum(y[1:])``) and ``means_z_rest`` (K, D - 1).
- covariance factors in standardised units: ``full`` K packed lower
  Cholesky factors (row-major, log of the diagonal; one log standard
  deviation if ``D = 1``), ``tied`` one, ``diag`` (K, D) and ``spherical``
  (K,) log standard deviations.

With ``sd_i`` the row norms of a Cholesky factor ``L``, the LKJ-Cholesky
density with HalfNormal(sigma) standard deviations and the log-diagonal
Jacobian add up, up to constants, to
``sum_i [-sd_i^2 / (2 sigma^2) + (2 eta - 1 + D - i) log L_ii
- (2 eta - 2 + D) log sd_i]``.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numba import types
from scipy.special import gammaln

__all__ = [
    "KernelModel",
    "kernel_logp",
    "laplace_covariance",
    "make_user_data",
    "mixture_log_likelihood",
    "model_user_data",
]

# Header of the user-data array (float64 throughout; counts are exact).
_H_LEN, _H_N, _H_D, _H_K, _H_CT, _H_ORD = 0, 1, 2, 3, 4, 5
_H_ALPHA, _H_TAU, _H_SIGMA, _H_ETA, _H_CONST, _H_NDIM, _H_NEXP = 6, 7, 8, 9, 10, 11, 12
_HEADER = 16
_CT_CODES = {"full": 0, "tied": 1, "diag": 2, "spherical": 3}
_LOG_2PI = math.log(2.0 * math.pi)


def _cached(decorator):
    """Compile with numba's on-disk cache where it has a writable place.

    numba raises at decoration time when neither ``__pycache__`` next to
    this file nor its user-wide cache directory is writable (a read-only
    installation): the callbacks are then compiled in memory, once per
    process, instead of failing the import.
    """

    def wrap(fn):
        try:
            return decorator(cache=True)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return decorator(cache=False)(fn)

    return wrap


def _njit(fn):
    return _cached(lambda cache: nb.njit(cache=cache, nogil=True))(fn)


def _fast_njit(fn=None, *, inline="never"):
    """``_njit`` that may reorder sums (SIMD reductions).

    It never assumes that values are finite (no ``nnan``/``ninf``).
    ``inline="always"`` inlines the function into its callers (numba IR),
    for small helpers called once per row of a hot loop.
    """
    if fn is None:
        return lambda f: _fast_njit(f, inline=inline)
    return _cached(
        lambda cache: nb.njit(
            cache=cache, nogil=True, fastmath={"reassoc", "contract"}, inline=inline
        )
    )(fn)


def _lkj_norm(eta, n):
    """Log normalising constant of the LKJ density (PyMC's formula)."""
    i = np.arange(1, n)
    return float(
        (n - 1) * gammaln(eta + 0.5 * (n - 1))
        - np.sum(0.5 * i * np.log(np.pi) + gammaln(eta + 0.5 * (n - 1 - i)))
    )


def _constant(ct, n, k, d, priors, scale):
    """Every term of the log density that does not depend on the parameters."""
    a, tau, sigma, eta = (
        priors.weights_concentration,
        priors.mean_scale,
        priors.sd_scale,
        priors.lkj_eta,
    )
    c = float(gammaln(k * a) - k * gammaln(a) + math.log(k))  # Dirichlet, simplex
    c += k * d * (-math.log(tau) - 0.5 * _LOG_2PI)  # means
    half_normal = 0.5 * math.log(2.0 / math.pi) - math.log(sigma)
    if ct in ("full", "tied"):
        blocks = k if ct == "full" else 1
        lkj = _lkj_norm(eta, d) if d > 1 else 0.0
        c += blocks * (lkj + d * half_normal)
    elif ct == "diag":
        c += k * d * half_normal
    else:
        c += k * half_normal
    c -= n * (0.5 * d * _LOG_2PI + float(np.sum(np.log(scale))))
    return c


def make_user_data(Z, loc, scale, ct, k, priors, order_means=None):
    """Pack data and hyper-parameters into the array the C callback reads.

    Parameters
    ----------
    Z : ndarray of shape (n, D)
        Standardised data ``(X - loc) / scale``.
    loc, scale : ndarray of shape (D,)
        The standardisation (for the constant and for data-unit outputs).
    ct : str
        Covariance type.
    k : int
        Number of components.
    priors : Priors
        Hyper-parameters.
    order_means : int or None
        Feature whose means are ordered, or None.

    Returns
    -------
    ndarray of float64
    """
    from bayes_gmm._covariance import get_covariance_type

    Z = np.ascontiguousarray(Z, dtype=np.float64)
    n, d = Z.shape
    cov_type = get_covariance_type(ct)
    n_dim = (k - 1) + k * d + cov_type.n_covariance_parameters(k, d)
    n_exp = n_dim + k + k * d + math.prod(cov_type.shape(k, d))
    total = _HEADER + n * d + 2 * d
    ud = np.zeros(total, dtype=np.float64)
    ud[_H_LEN] = total
    ud[_H_N], ud[_H_D], ud[_H_K] = n, d, k
    ud[_H_CT] = _CT_CODES[ct]
    ud[_H_ORD] = -1 if order_means is None else int(order_means)
    ud[_H_ALPHA] = priors.weights_concentration
    ud[_H_TAU] = priors.mean_scale
    ud[_H_SIGMA] = priors.sd_scale
    ud[_H_ETA] = priors.lkj_eta
    ud[_H_CONST] = _constant(ct, n, k, d, priors, np.asarray(scale, float))
    ud[_H_NDIM] = n_dim
    ud[_H_NEXP] = n_exp
    ud[_HEADER : _HEADER + n * d] = Z.T.ravel()  # transposed: (D, n)
    ud[_HEADER + n * d : _HEADER + n * d + d] = loc
    ud[_HEADER + n * d + d :] = scale
    ud.flags.writeable = False
    return ud


@_njit
def _decode(x, ud):
    """Parameters in standardised units from the flat unconstrained vector."""
    n, d, k = int(ud[_H_N]), int(ud[_H_D]), int(ud[_H_K])
    ct, jord = int(ud[_H_CT]), int(ud[_H_ORD])
    v = np.empty(k)
    s = 0.0
    for i in range(k - 1):
        v[i] = x[i]
        s += x[i]
    v[k - 1] = -s
    vmax = v.max()
    z = 0.0
    for i in range(k):
        z += math.exp(v[i] - vmax)
    logw = v - vmax - math.log(z)
    pos = k - 1
    mu = np.empty((k, d))
    if jord < 0:
        for i in range(k):
            for j in range(d):
                mu[i, j] = x[pos]
                pos += 1
    else:
        acc = 0.0
        for i in range(k):
            acc = x[pos] if i == 0 else acc + math.exp(x[pos])
            mu[i, jord] = acc
            pos += 1
        for i in range(k):
            for j in range(d):
                if j != jord:
                    mu[i, j] = x[pos]
                    pos += 1
    chol = np.zeros((k, d, d))
    if ct == 0 or ct == 1:
        blocks = k if ct == 0 else 1
        for b in range(blocks):
            for i in range(d):
                for j in range(i + 1):
                    chol[b, i, j] = math.exp(x[pos]) if i == j else x[pos]
                    pos += 1
        if ct == 1:
            for b in range(1, k):
                chol[b] = chol[0]
    elif ct == 2:
        for b in range(k):
            for i in range(d):
                chol[b, i, i] = math.exp(x[pos])
                pos += 1
    else:
        for b in range(k):
            sd = math.exp(x[pos])
            pos += 1
            for i in range(d):
                chol[b, i, i] = sd
    return logw, mu, chol, n, d, k, ct, jord


_BLOCK = 256
# A component whose log term is this far below the row's largest adds less
# than half an ulp to the sum of exp (exp(-40) = 4e-18): its exp is skipped
# and its responsibility is 0, which leaves the log density unchanged.
_NEGLIGIBLE = -40.0


@_fast_njit
def _solve_block(Zt, start, m, base, mu_c, chol_c, inv_diag_c, diagonal, Y, C_c):
    """One component on rows ``start .. start + m`` of the transposed data.

    Fills ``Y[:, :m]`` with ``L^{-1}(z - mu)`` (forward substitution, the
    row index innermost) and sets ``C_c[:m]`` to ``base - |y|^2 / 2``.
    """
    d = Zt.shape[0]
    for r in range(m):
        C_c[r] = base
    for i in range(d):
        mui = mu_c[i]
        for r in range(m):
            Y[i, r] = Zt[i, start + r] - mui
        if not diagonal:
            for j in range(i):
                lij = chol_c[i, j]
                if lij != 0.0:
                    for r in range(m):
                        Y[i, r] -= lij * Y[j, r]
        inv = inv_diag_c[i]
        for r in range(m):
            t = Y[i, r] * inv
            Y[i, r] = t
            C_c[r] -= 0.5 * t * t


@_fast_njit
def _factor_terms(chol, logdet, inv_diag):
    """``log det L_c`` and ``1 / diag(L_c)`` of the factors ``chol`` (K, D, D)."""
    k, d = inv_diag.shape
    for c in range(k):
        t = 0.0
        for i in range(d):
            t += math.log(chol[c, i, i])
            inv_diag[c, i] = 1.0 / chol[c, i, i]
        logdet[c] = t


@_fast_njit(inline="always")
def _column_logsumexp(C, r, softmax):
    """``log sum_c exp(C[c, r])`` of one column.

    With ``softmax``, ``C[:, r]`` becomes the responsibilities
    ``exp(C[c, r]) / sum``. A non-finite maximum is returned as it is
    (nothing to normalise).
    """
    k = C.shape[0]
    cmax = C[0, r]
    for c in range(1, k):
        if C[c, r] > cmax:
            cmax = C[c, r]
    if not math.isfinite(cmax):
        return cmax
    ssum = 0.0
    for c in range(k):
        t = C[c, r] - cmax
        e = 0.0
        if t == 0.0:
            e = 1.0
        elif t > _NEGLIGIBLE:
            e = math.exp(t)
        if softmax:
            C[c, r] = e
        ssum += e
    if ssum == 1.0:
        return cmax
    if softmax:
        inv = 1.0 / ssum
        for c in range(k):
            C[c, r] *= inv
    return cmax + math.log(ssum)


@_fast_njit
def _likelihood(Zt, logw, mu, chol, diagonal, R, B, S):
    """Sum of the marginal log densities (standardised, without constants).

    ``Zt`` is the standardised data transposed, (D, n). Accumulates, with
    responsibilities ``r_nk`` and ``y = L_k^{-1}(z - mu_k)``, ``R_k = sum r``,
    ``B_k = sum r y`` and ``S_k = sum r y y^T`` (lower triangle). Rows are
    processed in blocks with the row index innermost, so that every loop
    over rows is a vectorisable stream (the forward substitution of a single
    row is a chain of dependent divisions).
    """
    d, n = Zt.shape
    k = logw.shape[0]
    logdet = np.empty(k)
    inv_diag = np.empty((k, d))
    _factor_terms(chol, logdet, inv_diag)
    Y = np.empty((k, d, _BLOCK))
    C = np.empty((k, _BLOCK))
    ry = np.empty(_BLOCK)
    total = 0.0
    for start in range(0, n, _BLOCK):
        m = min(_BLOCK, n - start)
        for c in range(k):
            _solve_block(
                Zt,
                start,
                m,
                logw[c] - logdet[c],
                mu[c],
                chol[c],
                inv_diag[c],
                diagonal,
                Y[c],
                C[c],
            )
        for r in range(m):
            total += _column_logsumexp(C, r, True)
        for c in range(k):
            acc = 0.0
            for r in range(m):
                acc += C[c, r]
            R[c] += acc
            for i in range(d):
                acc = 0.0
                for r in range(m):
                    t = C[c, r] * Y[c, i, r]
                    ry[r] = t
                    acc += t
                B[c, i] += acc
                lo = i if diagonal else 0
                for j in range(lo, i + 1):
                    acc = 0.0
                    for r in range(m):
                        acc += ry[r] * Y[c, j, r]
                    S[c, i, j] += acc
    return total


@_fast_njit
def _pointwise(Xt, logw, mu, chol, out):
    """Pointwise log mixture density of every draw, into ``out`` (S, n).

    ``Xt`` (D, n) is the data transposed, ``logw`` (S, K), ``mu`` (S, K, D),
    ``chol`` (S, K, D, D) lower Cholesky factors; the same blocked loops as
    :func:`_likelihood`, with the constant ``-D log(2 pi) / 2``.
    """
    d, n = Xt.shape
    s, k = logw.shape
    half_log_2pi = 0.5 * d * _LOG_2PI
    logdet = np.empty(k)
    inv_diag = np.empty((k, d))
    Y = np.empty((d, _BLOCK))
    C = np.empty((k, _BLOCK))
    for draw in range(s):
        _factor_terms(chol[draw], logdet, inv_diag)
        for start in range(0, n, _BLOCK):
            m = min(_BLOCK, n - start)
            for c in range(k):
                _solve_block(
                    Xt,
                    start,
                    m,
                    logw[draw, c] - logdet[c] - half_log_2pi,
                    mu[draw, c],
                    chol[draw, c],
                    inv_diag[c],
                    False,
                    Y,
                    C[c],
                )
            for r in range(m):
                out[draw, start + r] = _column_logsumexp(C, r, False)


def mixture_log_likelihood(X, weights, means, chol):
    """Pointwise log mixture density for a stack of draws (numba).

    Parameters
    ----------
    X : ndarray of shape (n, D)
        Data.
    weights : ndarray of shape (S, K)
    means : ndarray of shape (S, K, D)
    chol : ndarray of shape (S, K, D, D)
        Lower Cholesky factors of the covariances.

    Returns
    -------
    ndarray of shape (S, n)
    """
    Xt = np.ascontiguousarray(np.asarray(X, dtype=np.float64).T)
    with np.errstate(divide="ignore"):
        logw = np.ascontiguousarray(np.log(np.asarray(weights, dtype=np.float64)))
    mu = np.ascontiguousarray(means, dtype=np.float64)
    chol = np.ascontiguousarray(chol, dtype=np.float64)
    out = np.empty((logw.shape[0], Xt.shape[1]))
    _pointwise(Xt, logw, mu, chol, out)
    return out


@_njit
def _back_solve(L, b):
    """``L^{-T} b`` for a lower-triangular ``L``."""
    d = b.shape[0]
    out = np.empty(d)
    for i in range(d - 1, -1, -1):
        t = b[i]
        for j in range(i + 1, d):
            t -= L[j, i] * out[j]
        out[i] = t / L[i, i]
    return out


@_njit
def _logp_grad(x, ud, grad):
    """Log density and its gradient (into ``grad``) at the flat vector ``x``."""
    logw, mu, chol, n, d, k, ct, jord = _decode(x, ud)
    ok = np.all(np.isfinite(logw)) and np.all(np.isfinite(mu))
    ok = ok and np.all(np.isfinite(chol))
    for c in range(k):
        for i in range(d):
            ok = ok and chol[c, i, i] > 0.0
    if not ok:
        grad[:] = 0.0
        return -np.inf  # overflowing transforms: a point the sampler rejects
    alpha, tau, sigma, eta = ud[_H_ALPHA], ud[_H_TAU], ud[_H_SIGMA], ud[_H_ETA]
    Zt = ud[_HEADER : _HEADER + n * d].reshape((d, n))
    diagonal = ct >= 2
    R = np.zeros(k)
    B = np.zeros((k, d))
    S = np.zeros((k, d, d))
    logp = ud[_H_CONST] + _likelihood(Zt, logw, mu, chol, diagonal, R, B, S)
    if not diagonal:
        for c in range(k):  # symmetric S from its lower triangle
            for i in range(d):
                for j in range(i):
                    S[c, j, i] = S[c, i, j]

    # weights: Dirichlet (alpha - 1) log w plus the simplex Jacobian sum log w
    a = np.empty(k)
    asum = 0.0
    for c in range(k):
        logp += alpha * logw[c]
        a[c] = alpha + R[c]
        asum += a[c]
    gv_last = a[k - 1] - math.exp(logw[k - 1]) * asum
    for c in range(k - 1):
        grad[c] = (a[c] - math.exp(logw[c]) * asum) - gv_last
    pos = k - 1

    # means: likelihood L^{-T} B_k, prior N(0, tau^2)
    gmu = np.empty((k, d))
    for c in range(k):
        g = _back_solve(chol[c], B[c]) if not diagonal else B[c] / np.diag(chol[c])
        for i in range(d):
            logp -= 0.5 * (mu[c, i] / tau) ** 2
            gmu[c, i] = g[i] - mu[c, i] / tau**2
    if jord < 0:
        for c in range(k):
            for i in range(d):
                grad[pos] = gmu[c, i]
                pos += 1
    else:
        tail = 0.0
        for c in range(k - 1, -1, -1):
            tail += gmu[c, jord]
            if c == 0:
                grad[pos] = tail
            else:
                step = mu[c, jord] - mu[c - 1, jord]
                logp += math.log(step)  # Jacobian of the ordered transform
                grad[pos + c] = tail * step + 1.0
        pos += k
        for c in range(k):
            for i in range(d):
                if i != jord:
                    grad[pos] = gmu[c, i]
                    pos += 1

    # covariance factors: dlogp/dL = tril(L^{-T} S) - diag(R / L_ii)
    gl = np.zeros((k, d, d))
    for c in range(k):
        for col in range(d):
            if diagonal:
                gl[c, col, col] = (S[c, col, col] - R[c]) / chol[c, col, col]
            else:
                m = _back_solve(chol[c], S[c, :, col])
                for i in range(col, d):
                    gl[c, i, col] = m[i]
                gl[c, col, col] -= R[c] / chol[c, col, col]
    inv_s2 = 1.0 / (sigma * sigma)
    if ct <= 1:
        blocks = k if ct == 0 else 1
        if ct == 1:
            for c in range(1, k):
                gl[0] += gl[c]
        for b in range(blocks):
            L = chol[b]
            for i in range(d):
                sd2 = 0.0
                for j in range(i + 1):
                    sd2 += L[i, j] * L[i, j]
                logp += (
                    -0.5 * sd2 * inv_s2
                    + (2.0 * eta - 1.0 + d - i) * math.log(L[i, i])
                    - (2.0 * eta - 2.0 + d) * 0.5 * math.log(sd2)
                )
                for j in range(i + 1):
                    g = (
                        gl[b, i, j]
                        - L[i, j] * inv_s2
                        - (2.0 * eta - 2.0 + d) * L[i, j] / sd2
                    )
                    if i == j:
                        g = (g + (2.0 * eta - 1.0 + d - i) / L[i, i]) * L[i, i]
                    grad[pos] = g
                    pos += 1
    elif ct == 2:
        for c in range(k):
            for i in range(d):
                s = chol[c, i, i]
                logp += -0.5 * s * s * inv_s2 + math.log(s)
                grad[pos] = (gl[c, i, i] - s * inv_s2) * s + 1.0
                pos += 1
    else:
        for c in range(k):
            s = chol[c, 0, 0]
            g = 0.0
            for i in range(d):
                g += gl[c, i, i]
            logp += -0.5 * s * s * inv_s2 + math.log(s)
            grad[pos] = (g - s * inv_s2) * s + 1.0
            pos += 1
    return logp


@_njit
def _expand(x, ud, out):
    """The flat vector followed by weights, means and covariances in data units."""
    logw, mu, chol, n, d, k, ct, jord = _decode(x, ud)
    base = _HEADER + n * d
    loc = ud[base : base + d]
    scale = ud[base + d : base + 2 * d]
    n_dim = x.shape[0]
    out[:n_dim] = x
    pos = n_dim
    for c in range(k):
        out[pos] = math.exp(logw[c])
        pos += 1
    for c in range(k):
        for i in range(d):
            out[pos] = mu[c, i] * scale[i] + loc[i]
            pos += 1
    blocks = 1 if ct == 1 else k
    for c in range(blocks):
        L = chol[c]
        if ct <= 1:
            for i in range(d):
                for j in range(d):
                    t = 0.0
                    for m in range(min(i, j) + 1):
                        t += L[i, m] * L[j, m]
                    out[pos] = t * scale[i] * scale[j]
                    pos += 1
        elif ct == 2:
            for i in range(d):
                out[pos] = (L[i, i] * scale[i]) ** 2
                pos += 1
        else:
            t = 0.0
            for i in range(d):
                t += (L[i, i] * scale[i]) ** 2
            out[pos] = t / d
            pos += 1


_LOGP_SIG = types.int64(
    types.uint64,
    types.CPointer(types.double),
    types.CPointer(types.double),
    types.CPointer(types.double),
    types.voidptr,
)
_EXPAND_SIG = types.int64(
    types.uint64,
    types.uint64,
    types.CPointer(types.double),
    types.CPointer(types.double),
    types.voidptr,
)


@_cached(lambda cache: nb.cfunc(_LOGP_SIG, cache=cache))
def _logp_cfunc(dim, x_, out_, logp_, ud_):
    head = nb.carray(ud_, (_HEADER,), np.float64)
    if dim != int(head[_H_NDIM]):
        return -1
    ud = nb.carray(ud_, (int(head[_H_LEN]),), np.float64)
    x = nb.carray(x_, (dim,))
    out = nb.carray(out_, (dim,))
    lp = nb.carray(logp_, (1,))
    value = _logp_grad(x, ud, out)
    lp[0] = value
    for i in range(dim):
        if not math.isfinite(out[i]):
            return 3
    if not math.isfinite(value):
        return 4
    return 0


@_cached(lambda cache: nb.cfunc(_EXPAND_SIG, cache=cache))
def _expand_cfunc(dim, expanded, x_, out_, ud_):
    head = nb.carray(ud_, (_HEADER,), np.float64)
    if dim != int(head[_H_NDIM]) or expanded != int(head[_H_NEXP]):
        return -1
    ud = nb.carray(ud_, (int(head[_H_LEN]),), np.float64)
    x = nb.carray(x_, (dim,))
    out = nb.carray(out_, (expanded,))
    _expand(x, ud, out)
    return 0


def kernel_logp(x, user_data):
    """Log density and gradient at a flat vector (numpy entry point for tests).

    Parameters
    ----------
    x : ndarray of shape (n_dim,)
        Flat unconstrained parameters, in PyMC's layout.
    user_data : ndarray
        From :func:`make_user_data`.

    Returns
    -------
    logp : float
    grad : ndarray of shape (n_dim,)
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    grad = np.empty_like(x)
    return float(_logp_grad(x, user_data, grad)), grad


def kernel_expand(x, user_data):
    """The expanded outputs at a flat vector (numpy entry point for tests)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty(int(user_data[_H_NEXP]))
    _expand(x, user_data, out)
    return out


def model_user_data(model):
    """:func:`make_user_data` for a model of :func:`bayes_gmm.build_model`."""
    info = model.bayes_gmm_info
    X = np.asarray(model["X"].get_value(), dtype=np.float64)
    loc, scale = np.asarray(info["loc"], float), np.asarray(info["scale"], float)
    return make_user_data(
        (X - loc) / scale,
        loc,
        scale,
        info["covariance_type"],
        int(info["n_components"]),
        info["priors"],
        info["order_means"],
    )


def laplace_covariance(user_data, x):
    """Inverse of the negative Hessian of the log density at ``x``.

    The Hessian is the central difference of the exact gradient (two
    gradient evaluations per coordinate, step ``1e-5 (1 + |x_i|)``),
    symmetrised. Used to start variational fits at the right scale.

    Parameters
    ----------
    user_data : ndarray
        From :func:`make_user_data`.
    x : ndarray of shape (n_dim,)
        Flat unconstrained point (near a mode).

    Returns
    -------
    ndarray of shape (n_dim, n_dim) or None
        The covariance, or None if the negative Hessian is not positive
        definite there (not near a mode).
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    hess = np.empty((n, n))
    for i in range(n):
        h = 1e-5 * (1.0 + abs(x[i]))
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        hess[i] = (kernel_logp(up, user_data)[1] - kernel_logp(down, user_data)[1]) / (
            2 * h
        )
    neg = -(hess + hess.T) / 2
    try:
        chol = np.linalg.cholesky(neg)
    except np.linalg.LinAlgError:
        return None
    inv_chol = np.linalg.solve(chol, np.eye(n))
    return inv_chol.T @ inv_chol


class KernelModel:
    """nutpie's compiled-model object for a :func:`build_model` model.

    Builds :class:`nutpie.compile_pymc.CompiledPyMCModel` around the C
    callbacks of this module instead of a compiled PyTensor graph: the flat
    layout, names, shapes, dims and coordinates are those nutpie's own
    compiler gives the model (values of the free variables, then
    ``weights``, ``means`` and ``covariances``), so ``nutpie.sample`` returns
    the same DataTree.
    """

    @staticmethod
    def build(model, initial_point_func):
        """Compiled model for ``nutpie.sample`` (no PyTensor compilation).

        Parameters
        ----------
        model : pymc.Model
            From :func:`bayes_gmm.model.build_model`.
        initial_point_func : callable
            ``seed -> flat start`` (see
            :func:`bayes_gmm.bayes.nutpie_initial_point_func`).

        Returns
        -------
        nutpie.compile_pymc.CompiledPyMCModel
        """
        import pandas as pd
        from nutpie.compile_pymc import CompiledPyMCModel

        from bayes_gmm._covariance import get_covariance_type

        info = model.bayes_gmm_info
        ct = get_covariance_type(info["covariance_type"])
        k = int(info["n_components"])
        ud = model_user_data(model)
        d = int(ud[_H_D])
        p = d * (d + 1) // 2
        by_rv = {
            "weights": (k - 1,),
            "means_z": (k, d),
            "means_z_ordered": (k,),
            "means_z_rest": (k, d - 1),
            "sds_z": (k, d),
            "sd_z": (k,),
        }
        names, shapes = [], []
        for rv in model.free_RVs:
            names.append(model.rvs_to_values[rv].name)
            shapes.append(by_rv.get(rv.name, (p,)))  # chol_cov*: packed factor
        n_dim = int(sum(int(np.prod(s)) for s in shapes))
        if n_dim != int(ud[_H_NDIM]):
            raise RuntimeError(
                f"bayes_gmm kernel: the model has {n_dim} free values, the kernel "
                f"expects {int(ud[_H_NDIM])} (a model this module does not know)."
            )
        outputs = {
            "weights": (k,),
            "means": (k, d),
            "covariances": tuple(int(s) for s in ct.shape(k, d)),
        }
        names += list(outputs)
        shapes += list(outputs.values())
        sizes = [int(np.prod(s)) for s in shapes]
        ends = np.cumsum(sizes)
        slices = [slice(int(e - s), int(e)) for s, e in zip(sizes, ends, strict=True)]
        shape_info = (names, slices, [np.array(s, dtype=int) for s in shapes])
        coords = {name: pd.Index(values) for name, values in model.coords.items()}
        coords["unconstrained_parameter"] = pd.Index(
            [
                f"{name}_{'.'.join(map(str, idx))}" if shape else name
                for name, shape in zip(
                    names[: len(model.free_RVs)], shapes, strict=False
                )
                for idx in np.ndindex(*shape)
            ]
        )
        dims = dict(model.named_vars_to_dims)
        return CompiledPyMCModel(
            _n_dim=n_dim,
            dims=dims,
            _coords=coords,
            _shapes=dict(zip(names, shapes, strict=True)),
            compiled_logp_func=_logp_cfunc,
            compiled_expand_func=_expand_cfunc,
            initial_point_func=initial_point_func,
            shared_data={"user_data": ud},
            shared_var_keys={},
            user_data=ud,
            n_expanded=int(ud[_H_NEXP]),
            shape_info=shape_info,
            logp_func=None,
            expand_func=None,
            reparameterized_names=[],
        )
