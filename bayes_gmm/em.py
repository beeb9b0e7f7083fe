"""The classic EM estimator for Gaussian mixtures (numpy only, no PyMC).

The algorithm is kept in small pure functions:

* :func:`e_step` - log responsibilities and per-sample log densities,
* :func:`m_step` - parameters from responsibilities,
* :func:`em_iteration` - one fused pass over the data that does both, and
* :func:`run_em` - iterate until the mean log-likelihood stops changing,

and :class:`GaussianMixtureEM` only validates, initialises and loops over
``n_init`` starts. Rows are processed in chunks, so the temporaries of an
iteration take ``O(chunk x K x D)`` memory whatever the number of samples.
"""

from __future__ import annotations

import logging
import numbers
from dataclasses import dataclass, field
from time import time

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import check_is_fitted

from bayes_gmm._covariance import _em_kernel, get_covariance_type, n_parameters
from bayes_gmm._init import INIT_PARAMS, initial_resp, standardise
from bayes_gmm._validation import (
    ConvergenceWarning,
    DegenerateComponentWarning,
    check_choice,
    check_data,
    check_finite_param,
    check_n_components,
    check_random_state,
    check_scalar,
    warn,
)

__all__ = [
    "INIT_PARAMS",
    "GaussianMixtureEM",
    "MixtureParams",
    "EMRun",
    "e_step",
    "m_step",
    "em_iteration",
    "run_em",
    "degenerate_components",
]

logger = logging.getLogger("bayes_gmm")


_EPS = np.finfo(np.float64).eps
_FLOAT_MAX = np.finfo(np.float64).max
# Budget for a chunk's temporaries, in floats (1 MiB; kernels count what they
# touch per row, see ``row_floats``): a chunk then stays in a core's L2 cache
# (measured: chunks that spill to L3 make the fused pass up to 2x slower),
# while each chunk's ~25 numpy calls (~50 us) stay a small part of its time.
_CHUNK_FLOATS = 2**17
# Fewest rows per chunk whatever the temporaries (per-chunk overhead).
_MIN_CHUNK = 128
# log(1e-200): smaller responsibilities are set to zero (see _normalise_columns).
_LOG_TINY = -460.5
# Frames from validation.warn to the user: warn, _fit, fit or fit_predict, user.
_WARN_LEVEL = 4
# A covariance whose smallest eigenvalue is at most this times reg_covar (in
# the data's own units) is held up by the regularisation (see degenerate_).
_DEGENERATE_FACTOR = 10.0


def degenerate_components(weights, covariances, covariance_type, n_samples, reg_covar):
    """Which components of a fit are degenerate (boolean mask over components).

    A component is degenerate when its covariance is held up by ``reg_covar``:
    its smallest eigenvalue, in the data's own units, is at most
    ``10 reg_covar`` (with ``reg_covar=0``, at most ``1e-12`` of the largest
    eigenvalue of the fit), the component then sits on a lower-dimensional
    set of points; or, for ``full``, when it has fewer effective points
    (``weight x n_samples``) than ``D + 1``, too few for a covariance of
    full rank. The likelihood of a Gaussian mixture is unbounded, and such
    components are where it runs off: their likelihood, and AIC, BIC and
    ICL computed from it, are artefacts of the regularisation.

    Parameters
    ----------
    weights : ndarray of shape (n_components,)
    covariances : ndarray
        In the shape of ``covariance_type``.
    covariance_type : str
    n_samples : int
        Rows the fit saw.
    reg_covar : float
        Its regularisation.

    Returns
    -------
    ndarray of bool, shape (n_components,)
    """
    weights = np.asarray(weights, dtype=float)
    cov = np.asarray(covariances, dtype=float)
    k = weights.shape[0]
    if covariance_type == "full":
        lam = np.linalg.eigvalsh(cov)
    elif covariance_type == "tied":
        lam = np.broadcast_to(np.linalg.eigvalsh(cov), (k, cov.shape[0]))
    elif covariance_type == "diag":
        lam = np.sort(cov, axis=1)
    else:
        lam = np.broadcast_to(cov[:, None], (k, 1))
    floor = _DEGENERATE_FACTOR * reg_covar if reg_covar > 0 else 1e-12 * lam.max()
    bad = lam[:, 0] <= floor
    if covariance_type == "full":
        bad |= weights * n_samples < lam.shape[1] + 1
    return bad


def _degenerate_message(mask, covariance_type, n_features, reg_covar):
    """One sentence for a DegenerateComponentWarning."""
    n_bad, k = int(mask.sum()), mask.size
    why = f"a covariance held up by reg_covar={reg_covar:g} alone"
    if covariance_type == "full":
        why += f", or fewer than D + 1 = {n_features + 1} effective points"
    return (
        f"{n_bad} of {k} components are degenerate ({why}): their likelihood, "
        "and AIC/BIC/ICL, are artefacts of the regularisation (see "
        "degenerate_). Use fewer components, another covariance_type "
        "(diag, spherical or tied need fewer points), or a larger reg_covar."
    )


# Input dtypes kept as they are (others become the first), as scikit-learn.
_DTYPES = [np.float64, np.float32]
# means_init farther from the data than this many data spreads is rejected:
# beyond 1/sqrt(eps) spreads, squared distances to the data points no longer
# differ in float64, so such a component's densities carry no information.
_MAX_MEAN_SPREADS = 1.0 / np.sqrt(_EPS)


@dataclass(frozen=True)
class MixtureParams:
    """Parameters of a Gaussian mixture in scikit-learn's conventions.

    ``covariances`` and ``precisions_cholesky`` have the EM shape of
    ``covariance_type`` (see :mod:`bayes_gmm._covariance`).
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    covariance_type: str

    def shifted(self, center):
        """The same mixture with means expressed relative to ``center``."""
        return MixtureParams(
            self.weights,
            self.means - center,
            self.covariances,
            self.precisions_cholesky,
            self.covariance_type,
        )


@dataclass
class EMRun:
    """What :func:`run_em` returns."""

    params: MixtureParams
    lower_bound: float
    lower_bounds: list[float] = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False


def _chunk_size(n_samples, n_components, n_features, chunk_size=None, row_floats=None):
    """Rows per chunk: ``chunk_size`` if given, else what keeps temporaries small.

    ``row_floats`` is the number of floats the temporaries take per row (by
    default ``K max(D, 4)``); a chunk then takes about ``_CHUNK_FLOATS``.
    """
    if chunk_size is not None:
        return max(1, int(chunk_size))
    per_row = row_floats or n_components * max(n_features, 4)
    return int(max(1, min(n_samples, max(_MIN_CHUNK, _CHUNK_FLOATS // per_row))))


def _chunks(n_samples, size):
    for start in range(0, n_samples, size):
        yield slice(start, min(start + size, n_samples))


def _sklearn_seed(random_state):
    """The user's int seed (scikit-learn's start is then reproduced), or None."""
    if isinstance(random_state, numbers.Integral) and not isinstance(
        random_state, bool | np.bool_
    ):
        return int(random_state)
    return None


def _check_chunk_size(chunk_size):
    """``chunk_size`` must be None or a positive int."""
    if chunk_size is None:
        return
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral):
        raise TypeError(
            f"'chunk_size' must be a positive int or None, got {chunk_size!r} of "
            f"type {type(chunk_size).__name__}."
        )
    if chunk_size < 1:
        raise ValueError(
            f"'chunk_size' must be a positive int or None, got {chunk_size!r}."
        )


def _check_means_near_data(name, means, X):
    """Reject means that lie absurdly far outside the range of the data.

    A mean more than ``_MAX_MEAN_SPREADS`` (1/sqrt(eps), about 6.7e7) times
    a column's range outside that range is an error: at that distance the
    squared distances of all data points to it are equal in float64.
    """
    lo, hi = X.min(axis=0), X.max(axis=0)
    spread = hi - lo
    # A constant column has no range: measure on its value's scale instead.
    spread = np.where(spread > 0, spread, np.maximum(np.abs(hi), 1.0))
    outside = np.maximum(lo - means, means - hi) / spread
    far = outside > _MAX_MEAN_SPREADS
    if not far.any():
        return
    j, c = (int(i) for i in np.argwhere(far)[0])
    raise ValueError(
        f"'{name}'[{j}, {c}] = {means[j, c]:.6g} lies {outside[j, c]:.3g} data "
        f"ranges outside the range [{lo[c]:.6g}, {hi[c]:.6g}] of column {c}: at "
        "that distance the squared distances to the data lose all precision. "
        "Give means within (or near) the range of the data, in its units."
    )


class _VerboseMessages:
    """scikit-learn's progress lines on stdout (``BaseMixture._print_verbose_msg_*``).

    ``verbose == 1`` prints each start and every ``interval``-th iteration;
    ``verbose >= 2`` adds the time taken and the change of the lower bound.
    """

    def __init__(self, verbose, interval):
        self.verbose = verbose
        self.interval = interval

    def start(self, init, previous_lower_bound):
        """A start begins (``init`` counts from 0, as scikit-learn's)."""
        self._previous = previous_lower_bound
        if self.verbose >= 1:
            print(f"Initialization {init:d}")
        if self.verbose >= 2:
            self._init_time = self._iter_time = time()

    def iteration(self, n_iter, lower_bound):
        """Iteration ``n_iter`` (from 1) ended with ``lower_bound``."""
        change = lower_bound - self._previous
        self._previous = lower_bound
        if n_iter % self.interval:
            return
        if self.verbose == 1:
            print(f"  Iteration {n_iter:d}")
        elif self.verbose >= 2:
            now = time()
            lapse = now - self._iter_time
            print(
                f"  Iteration {n_iter:d}\t time lapse {lapse:.5f}s\t "
                f"ll change {change:.5f}"
            )
            self._iter_time = now

    def end(self, lower_bound, converged):
        """The start's EM run ended."""
        msg = "converged" if converged else "did not converge"
        if self.verbose == 1:
            print(f"Initialization {msg}.")
        elif self.verbose >= 2:
            t = time() - self._init_time
            print(
                f"Initialization {msg}. time lapse {t:.5f}s\t lower bound"
                f" {lower_bound:.5f}."
            )


def _normalise_columns(lp):
    """Log-sum-exp over components of ``lp`` (K, m); ``lp`` becomes the resp.

    Works along contiguous rows of the transposed layout, so each step is a
    vectorised pass over the m samples whatever K is.
    """
    # (ufunc reductions directly: a chunk makes ~25 numpy calls, each counts)
    top = np.maximum.reduce(lp, axis=0)
    # A row with no finite density keeps -inf - top = -inf (not nan).
    np.maximum(top, -_FLOAT_MAX, out=top)
    lp -= top
    if np.minimum.reduce(lp, axis=None) < _LOG_TINY:
        # Responsibilities below 1e-200 become exact zeros: the statistics
        # change by less than 1e-200 per sample, and the subnormal numbers
        # exp() would produce slow every later product down ~10-fold.
        lp[lp < _LOG_TINY] = -np.inf
    np.exp(lp, out=lp)
    total = np.add.reduce(lp, axis=0)
    lp /= total
    np.log(total, out=total)
    total += top
    return total


def _params_from_moments(ct, moments, reg_covar, constant=None):
    """New parameters from M-step statistics (means relative to the centre).

    ``moments`` is ``(counts, first, second, origin)``: soft counts, first
    moments about the centre, the type's second moments about ``origin``
    (one per component; None for the centre) and that origin. ``constant``
    replaces a missing ``second`` (``tied`` designs: ``sum_n x_n x_n^T``).
    """
    counts, first, second, origin = moments
    nk = counts + 10 * _EPS  # empty components keep a finite mean
    means = first / nk[:, None]
    if second is None:
        second = constant
    if origin is None:
        shift = means
    else:
        first = first - counts[:, None] * origin  # sum_n r_nk (x_n - o_k)
        shift = means - origin
    cov = ct.covariances_from_moments(second, first, counts, shift, nk, reg_covar)
    pc = ct.precision_cholesky(cov, reg_covar)
    return MixtureParams(nk / nk.sum(), means, cov, pc, ct.name)


def _center(X):
    return np.mean(X, axis=0) if X.shape[0] else np.zeros(X.shape[1])


def _constant_moments(X, ct, center, size):
    total = None
    for s in _chunks(X.shape[0], size):
        m = ct.constant_moments(X[s] - center)
        if m is None:
            return None
        total = m if total is None else total + m
    return total


def e_step(X, params, *, chunk_size=None):
    """Expectation step.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Data.
    params : MixtureParams
        Current parameters.
    chunk_size : int, optional
        Rows per chunk; by default chosen to keep temporaries near 4 MB.

    Returns
    -------
    log_norm : ndarray of shape (n_samples,)
        ``log p(x_n)``, the log mixture density of each sample.
    log_resp : ndarray of shape (n_samples, n_components)
        Log responsibilities ``log p(z_n = k | x_n)``.
    """
    n, d = X.shape
    k = params.weights.shape[0]
    with np.errstate(divide="ignore"):
        log_weights = np.log(params.weights)
    center = _center(X[: min(n, 1024)])
    kernel = _em_kernel(
        params.covariance_type,
        params.means - center,
        params.precisions_cholesky,
        log_weights,
        params.covariances,
    )
    size = _chunk_size(n, k, d, chunk_size, kernel.row_floats + k)
    kernel.allocate(min(n, size))
    log_norm = np.empty(n)
    log_resp = np.empty((n, k))
    for s in _chunks(n, size):
        lp, row_term = kernel.log_prob(X[s], center)
        # log r_nk = log w_k N_k(x_n) - log sum_j w_j N_j(x_n), as scikit-learn.
        lse = _normalise_columns(lp.copy())
        np.subtract(lp, lse, out=lp)
        log_resp[s] = lp.T
        log_norm[s] = lse if row_term is None else lse + row_term
    return log_norm, log_resp


def m_step(X, resp, covariance_type, reg_covar, *, chunk_size=None):
    """Maximisation step: weights, means and covariances from responsibilities.

    .. math::

        n_k = \\sum_n r_{nk},\\quad \\mu_k = \\frac{1}{n_k}\\sum_n r_{nk} x_n,\\quad
        \\Sigma_k = \\frac{1}{n_k}\\sum_n r_{nk} (x_n - \\mu_k)(x_n - \\mu_k)^T
        + \\text{reg\\_covar}\\, I

    (pooled over components for ``tied``, the diagonal for ``diag``, its
    mean for ``spherical``).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Data.
    resp : ndarray of shape (n_samples, n_components)
        Responsibilities (rows summing to one).
    covariance_type : {"full", "tied", "diag", "spherical"}
        The covariance type.
    reg_covar : float
        Added to the diagonal of every covariance.
    chunk_size : int, optional
        Rows per chunk.

    Returns
    -------
    MixtureParams
    """
    ct = get_covariance_type(covariance_type)
    n, d = X.shape
    k = resp.shape[1]
    size = _chunk_size(n, k, d, chunk_size)
    center = _center(X)
    # Two passes, as scikit-learn's full covariances: the counts and means,
    # then the second moments about the new means (nothing cancels).
    counts = np.zeros(k)
    first = np.zeros((k, d))
    for s in _chunks(n, size):
        counts += resp[s].sum(axis=0)
        first += resp[s].T @ (X[s] - center)
    origin = first / (counts + 10 * _EPS)[:, None]
    second = 0.0
    for s in _chunks(n, size):
        second = second + ct.second_moments(X[s] - center, resp[s], origin)
    p = _params_from_moments(ct, (counts, first, second, origin), reg_covar)
    return MixtureParams(
        p.weights,
        p.means + center,
        p.covariances,
        p.precisions_cholesky,
        p.covariance_type,
    )


def em_iteration(X, params, reg_covar, *, center, constant=None, chunk_size=None):
    """One EM iteration as a single pass over the data.

    The E-step under ``params`` and the accumulation of the M-step statistics
    happen chunk by chunk, so the data are read once per iteration.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Data.
    params : MixtureParams
        Parameters with means relative to ``center``.
    reg_covar : float
        Covariance regularisation.
    center : ndarray of shape (n_features,)
        Origin of the working frame (the data mean, for accuracy).
    constant : ndarray, optional
        Precomputed statistics that do not change between iterations.
    chunk_size : int, optional
        Rows per chunk.

    Returns
    -------
    mean_log_likelihood : float
        Mean log-likelihood of ``X`` under ``params``.
    new_params : MixtureParams
        Parameters after the M-step (means relative to ``center``).
    """
    ct = get_covariance_type(params.covariance_type)
    total, kernel, size = _kernel_pass(X, params, center, chunk_size)
    if constant is None and kernel.needs_constant:
        constant = _constant_moments(X, ct, center, size)
    return (
        total / X.shape[0],
        _params_from_moments(ct, kernel.moments(), reg_covar, constant),
    )


def _kernel_pass(X, params, center, chunk_size):
    """One pass of the fused E-step and M-step statistics over ``X``'s rows.

    Returns the total log-likelihood, the kernel (its ``moments()`` are the
    pass's sufficient statistics) and the chunk size used. Shared by
    :func:`em_iteration` and the per-block pass of :mod:`bayes_gmm._dask`.
    """
    n, d = X.shape
    k = params.weights.shape[0]
    with np.errstate(divide="ignore"):
        log_weights = np.log(params.weights)
    kernel = _em_kernel(
        params.covariance_type,
        params.means,
        params.precisions_cholesky,
        log_weights,
        params.covariances,
    )
    size = _chunk_size(n, k, d, chunk_size, kernel.row_floats)
    kernel.allocate(min(n, size))
    total = 0.0
    for s in _chunks(n, size):
        # E-step on the chunk (transposed: components x rows), then its
        # M-step statistics from the same design, while it is in cache.
        lp, row_term = kernel.log_prob(X[s], center)
        total += _normalise_columns(lp).sum()
        if row_term is not None:
            total += row_term.sum()
        kernel.accumulate(lp)
    return total, kernel, size


def run_em(
    X,
    params,
    *,
    tol=1e-3,
    max_iter=100,
    reg_covar=1e-6,
    chunk_size=None,
    callback=None,
    previous_lower_bound=-np.inf,
):
    """Iterate EM from ``params`` until the mean log-likelihood settles.

    Stops when the change of the mean log-likelihood between iterations is
    below ``tol`` or after ``max_iter`` iterations (scikit-learn's rule: the
    bound recorded at iteration ``t`` is that of the parameters going into
    it, and the parameters returned are those after its M-step). The first
    change is measured from ``previous_lower_bound``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Data.
    params : MixtureParams
        Starting parameters.
    tol : float, default=1e-3
        Convergence threshold on the change of the mean log-likelihood.
    max_iter : int, default=100
        Maximum number of iterations.
    reg_covar : float, default=1e-6
        Covariance regularisation.
    chunk_size : int, optional
        Rows per chunk.
    callback : callable, optional
        Called as ``callback(n_iter, lower_bound)`` after every iteration.
    previous_lower_bound : float, default=-inf
        The bound the first iteration's change is measured from. A warm start
        passes the previous fit's ``lower_bound_`` (as scikit-learn does), so
        a fit that is resumed at its optimum stops after one iteration.
        Returned as the bound when ``max_iter=0``.

    Returns
    -------
    EMRun
        Final parameters, last lower bound, its history, iterations and
        whether it converged.
    """
    ct = get_covariance_type(params.covariance_type)
    n, d = X.shape
    center = _center(X)
    constant = _constant_moments(
        X, ct, center, _chunk_size(n, params.weights.shape[0], d, chunk_size)
    )
    current = params.shifted(center)
    lower_bound = float(previous_lower_bound)
    history = []
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        previous = lower_bound
        lower_bound, current = em_iteration(
            X,
            current,
            reg_covar,
            center=center,
            constant=constant,
            chunk_size=chunk_size,
        )
        history.append(float(lower_bound))
        if callback is not None:
            callback(n_iter, lower_bound)
        if abs(lower_bound - previous) < tol:
            converged = True
            break
    return EMRun(
        current.shifted(-center), float(lower_bound), history, n_iter, converged
    )


class GaussianMixtureEM(DensityMixin, BaseEstimator):
    """Gaussian mixture fitted by expectation-maximisation.

    A drop-in for :class:`sklearn.mixture.GaussianMixture` with the same
    parameters and fitted attributes, plus ICL, a history of the
    log-likelihood, scale-free starts and chunked, batched numerics.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components ``K``.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        ``full``: each component its own covariance; ``tied``: one shared
        covariance; ``diag``: each its own diagonal covariance;
        ``spherical``: each its own single variance.
    tol : float, default=1e-3
        Convergence threshold on the change of the mean log-likelihood.
    reg_covar : float, default=1e-6
        Non-negative value added to the diagonal of every covariance, which
        keeps collapsing components and constant columns positive definite.
    max_iter : int, default=100
        EM iterations per start.
    n_init : int, default=1
        Number of starts; the one with the highest final mean log-likelihood
        is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, \
default="kmeans"
        How the starts are chosen. All but one candidate of the default
        search work on the standardised data, so the units of the features
        hardly matter. ``kmeans`` (the default) searches for good starts:
        ``4 n_init`` candidate partitions (scikit-learn's own k-means start
        on the raw features; k-means, k-means++ seeds and random data
        points, most on views of the standardised data with random column
        weights; Ward's clustering of a subsample) are screened by a few EM
        iterations and run to convergence by an accelerated (SQUAREM) EM;
        collapsing (spurious) solutions are set aside, and the best optima
        are refined by split-and-merge moves. The ``n_init`` starts are the
        distinct optima found, best first, their components by decreasing
        weight (see :mod:`bayes_gmm._init`); EM runs once from each. With
        an int ``random_state``, the k-means candidates on the raw features
        are those of ``GaussianMixture(n_init=..., random_state=
        random_state)``, in its order, and the first (its default start)
        always runs to convergence: the default fit then reaches at least
        the optimum scikit-learn's default fit does from the same seed,
        unless that optimum is a collapsing one set aside.
        **Budget rule:** the search spends at most about what scikit-learn
        spends on ``n_init`` starts (per start a k-means and 15 EM
        iterations on all the data, fewer when scikit-learn's start settles
        within its ``tol`` sooner, counted in multiply-adds, rows x K x
        D^2 for ``full`` and rows x K x D otherwise, plus per-iteration
        overhead) plus a fixed allowance (~0.2 s). On small problems that
        covers the whole search; as K x D grows its stages shrink smoothly
        (fewer candidates and iterations, as many split-and-merge moves as
        the rest pays for, most promising first), so a fit costs at most a
        few times scikit-learn's. The search works on a random sample of
        ``max(2000, 20 K (D + 1))`` rows when there are more. It does not
        depend on ``max_iter`` and ``tol`` (as in scikit-learn, a fit with
        ``max_iter=2`` equals one with ``max_iter=1`` continued by a warm
        start), which bound the final EM runs only. The
        other options make ``n_init`` independent starts, as scikit-learn
        but on the standardised data: ``k-means++`` and ``random_from_data``
        assign each point to the nearest of ``K`` centres (k-means++ seeds
        or data points drawn uniformly), ``random`` draws random soft
        responsibilities. Every start gets its own draws from
        ``random_state``, so starts differ.
    weights_init : array-like of shape (n_components,), default=None
        Initial weights (overrides those of ``init_params``).
    means_init : array-like of shape (n_components, n_features), default=None
        Initial means.
    precisions_init : array-like, default=None
        Initial precision matrices (inverse covariances), in the shape of
        ``covariance_type``: (K,), (D, D), (K, D) or (K, D, D).
    random_state : int, Generator, RandomState or None, default=None
        Seeds the starts and :meth:`sample`; an int must be non-negative.
    warm_start : bool, default=False
        Reuse the fitted parameters as the start of the next ``fit`` (and
        then only one start is made).
    verbose : int, default=0
        As scikit-learn's: ``1`` prints each start and every
        ``verbose_interval``-th iteration to stdout, ``2`` also the time
        taken and the change of the mean log-likelihood. Progress is also
        logged (logger ``"bayes_gmm"``) at INFO level when ``verbose >= 1``,
        otherwise at DEBUG level.
    verbose_interval : int, default=10
        Iterations between two printed progress lines.
    chunk_size : int, default=None
        Rows processed at once (a positive int); by default chosen to keep
        temporaries near 4 MB.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        Mixture weights. The fitted arrays are float32 when ``X`` was
        float32 and float64 otherwise, as scikit-learn's (the arithmetic is
        float64 either way); predictions are float32 for float32 data under
        a float32 fit.
    means_ : ndarray of shape (n_components, n_features)
        Component means.
    covariances_ : ndarray
        Covariances in the shape of ``covariance_type``.
    precisions_ : ndarray
        Inverse covariances, same shape.
    precisions_cholesky_ : ndarray
        Cholesky factors of the precisions (``P`` with ``P P^T`` the
        precision), same shape.
    converged_ : bool
        Whether the final EM run of the best start converged (within
        ``max_iter`` iterations, as in scikit-learn).
    n_iter_ : int
        EM iterations of the final run of the best start (at most
        ``max_iter``); the search before it is counted in
        ``n_iter_search_``.
    n_iter_search_ : int
        EM iterations the default start search spent, summed over all its
        candidates, on its sample of rows (0 for the other
        ``init_params``, given starts and warm starts).
    degenerate_ : ndarray of bool, shape (n_components,)
        Components held up by ``reg_covar`` (smallest covariance
        eigenvalue at most ``10 reg_covar``, in the data's units) or, for
        ``full``, with fewer effective points than ``D + 1`` (see
        :func:`degenerate_components`); ``fit`` warns with a
        :class:`~bayes_gmm.DegenerateComponentWarning` when any is.
    lower_bound_ : float
        Mean log-likelihood of the best start at its last iteration.
    lower_bounds_ : list of float
        History of the mean log-likelihood of the best start.
    init_lower_bounds_ : ndarray of shape (n_init,)
        Final mean log-likelihood of every start (far-apart values mean
        several local optima).
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features, when ``X`` had string column names.

    See Also
    --------
    GaussianMixtureBayes : the same model fitted by MCMC or ADVI.

    Examples
    --------
    >>> import numpy as np
    >>> from bayes_gmm import GaussianMixtureEM
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> gm = GaussianMixtureEM(n_components=2, random_state=0).fit(X)
    >>> np.sort(gm.means_[:, 0]).round(3).tolist()
    [1.0, 10.0]
    >>> gm.predict([[0, 0], [12, 3]]).tolist() == gm.predict(X[[0, 3]]).tolist()
    True
    """

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        chunk_size=None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.chunk_size = chunk_size

    # ------------------------------------------------------------------ checks
    def _check_parameters(self, X):
        """Validate hyper-parameters; return checked copies of the inits."""
        n_samples, n_features = X.shape
        ct = get_covariance_type(self.covariance_type)
        check_choice("init_params", self.init_params, INIT_PARAMS)
        k = check_n_components(self.n_components, n_samples)
        check_scalar("tol", self.tol, float, min_value=0.0)
        check_scalar("reg_covar", self.reg_covar, float, min_value=0.0, finite=True)
        check_scalar("max_iter", self.max_iter, int, min_value=0)
        check_scalar("n_init", self.n_init, int, min_value=1)
        if not isinstance(self.verbose, numbers.Integral | np.bool_):
            raise TypeError(
                f"'verbose' must be an int or a bool, got {self.verbose!r} of type "
                f"{type(self.verbose).__name__}."
            )
        check_scalar("verbose_interval", self.verbose_interval, int, min_value=1)
        _check_chunk_size(self.chunk_size)
        inits = {}
        if self.weights_init is not None:
            w = np.asarray(self.weights_init, dtype=float)
            if w.shape != (k,):
                raise ValueError(
                    f"'weights_init' must have shape ({k},), got {w.shape}."
                )
            check_finite_param("weights_init", w)
            if np.any(w < 0) or not np.isclose(w.sum(), 1.0):
                raise ValueError(
                    "'weights_init' must be non-negative and sum to 1, got "
                    f"sum {w.sum():.6g}, min {w.min():.6g}."
                )
            inits["weights"] = w
        if self.means_init is not None:
            m = np.asarray(self.means_init, dtype=float)
            if m.shape != (k, n_features):
                raise ValueError(
                    f"'means_init' must have shape ({k}, {n_features}), got {m.shape}."
                )
            check_finite_param("means_init", m)
            _check_means_near_data("means_init", m, X)
            inits["means"] = m
        if self.precisions_init is not None:
            p = np.asarray(self.precisions_init, dtype=float)
            shape = ct.shape(k, n_features)
            if p.shape != shape:
                raise ValueError(
                    f"'precisions_init' for covariance_type={ct.name!r} must "
                    f"have shape {shape}, got {p.shape}."
                )
            check_finite_param("precisions_init", p)
            try:
                inits["precisions_cholesky"] = ct.precision_cholesky_from_precisions(p)
            except ValueError:
                raise ValueError(
                    "'precisions_init' must be symmetric positive definite."
                ) from None
            if not np.all(np.isfinite(inits["precisions_cholesky"])) or np.any(
                p <= 0 if ct.name in ("diag", "spherical") else False
            ):
                raise ValueError("'precisions_init' must be positive.")
        return k, ct, inits

    # ------------------------------------------------------------------ starts
    def _start(self, X, Z, k, ct, inits, rng):
        """Parameters that begin one EM run.

        Called once with ``Z=None`` before the runs, it plans this fit's
        starts: for the default ``init_params="kmeans"`` (and no partial
        ``*_init``) a :class:`bayes_gmm._init.StartPlan` that searches for
        them, otherwise the standardised data the independent starts are
        drawn on (or, when all three ``*_init`` are given, the start they
        make, for every run). Then it is called once per run with that as
        ``Z``.
        """
        if len(inits) == 3:  # every run starts from the given parameters
            pc = inits["precisions_cholesky"]
            cov = ct.covariances_from_precision_cholesky(pc)
            return MixtureParams(inits["weights"], inits["means"], cov, pc, ct.name)
        if Z is None:
            if self.init_params != "kmeans" or inits:
                return standardise(X)
            from bayes_gmm._init import StartPlan

            # A model of a grid (see selection.fit_em_grid) shares the grid's
            # candidate partitions; its search has the grid's budget.
            grid = getattr(self, "_grid_starts", None)
            return StartPlan(
                X,
                k,
                ct.name,
                1 if grid else self.n_init,
                self.reg_covar,
                rng,
                chunk_size=self.chunk_size,
                budget=grid and grid.budget(k, ct.name, self.n_init),
                partitions=grid,
                kmeans_seed=_sklearn_seed(self.random_state),
            )
        if isinstance(Z, np.ndarray):
            resp = initial_resp(X, Z, k, self.init_params, rng)
            p = m_step(X, resp, ct.name, self.reg_covar, chunk_size=self.chunk_size)
        else:
            p = Z.next()
        weights = inits.get("weights", p.weights)
        means = inits.get("means", p.means)
        if "precisions_cholesky" in inits:
            pc = inits["precisions_cholesky"]
            cov = ct.covariances_from_precision_cholesky(pc)
        else:
            pc, cov = p.precisions_cholesky, p.covariances
        return MixtureParams(weights, means, cov, pc, ct.name)

    def _current_params(self):
        """The fitted parameters in float64 (whatever their stored dtype)."""
        return MixtureParams(
            *(
                np.asarray(a, dtype=np.float64)
                for a in (
                    self.weights_,
                    self.means_,
                    self.covariances_,
                    self.precisions_cholesky_,
                )
            ),
            self.covariance_type,
        )

    # --------------------------------------------------------------------- fit
    def fit(self, X, y=None):
        """Estimate the parameters by EM (``n_init`` starts, best kept).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data; a DataFrame's column names are kept.
        y : None
            Ignored.

        Returns
        -------
        self : GaussianMixtureEM
            The fitted estimator.
        """
        self._fit(X, labels=False)
        return self

    def fit_predict(self, X, y=None):
        """Fit, then return the most probable component of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.
        y : None
            Ignored.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Component labels.
        """
        return self._fit(X)

    def _fit(self, X, labels=True):
        """Fit and return the labels; called directly by ``fit`` and ``fit_predict``.

        Both public methods are one frame above this one, so a warning
        raised here with ``stacklevel=_WARN_LEVEL`` names the user's line.
        """
        if _is_dask(X):  # dask array or DataFrame: the Dask engine
            from bayes_gmm import _dask

            _dask.fit(self, X)
            # fit() wants no labels: preparing them reads a DataFrame once more
            return _dask.predict(self, X) if labels else None
        do_init = not (self.warm_start and hasattr(self, "converged_"))
        X = check_data(self, X, reset=do_init, min_samples=2, dtype=_DTYPES)
        # float64 arithmetic whatever the input; fitted arrays in its dtype.
        dtype, X = X.dtype, X.astype(np.float64, copy=False)
        k, ct, inits = self._check_parameters(X)
        rng = check_random_state(self.random_state)
        n_init = self.n_init if do_init else 1
        level = logging.INFO if self.verbose else logging.DEBUG
        Z = self._start(X, None, k, ct, inits, rng) if do_init else None
        printer = _VerboseMessages(self.verbose, self.verbose_interval)

        best = None
        finals = []
        # EM from a start is deterministic: a search that found fewer distinct
        # optima than n_init runs each once (init_lower_bounds_ repeats them),
        # unless verbose output asks to see every run, as scikit-learn's.
        n_runs = n_init
        if not self.verbose:
            n_runs = min(n_init, len(getattr(Z, "starts", range(n_init))))
        for init in range(n_runs):
            printer.start(init, -np.inf if do_init else self.lower_bound_)
            if do_init:
                start = self._start(X, Z, k, ct, inits, rng)
            else:
                start = self._current_params()

            def progress(it, lb, init=init):
                logger.log(
                    level, "init %d, iteration %d: mean log-lik %.6f", init + 1, it, lb
                )
                printer.iteration(it, lb)

            run = run_em(
                X,
                start,
                tol=self.tol,
                max_iter=self.max_iter,
                reg_covar=self.reg_covar,
                chunk_size=self.chunk_size,
                callback=progress,
                # A warm start continues the previous fit's convergence check.
                previous_lower_bound=-np.inf if do_init else self.lower_bound_,
            )
            logger.log(
                level,
                "init %d of %d: %s after %d iterations, mean log-lik %.6f",
                init + 1,
                n_init,
                "converged" if run.converged else "not converged",
                run.n_iter,
                run.lower_bound,
            )
            if self.max_iter > 0:  # scikit-learn prints no end for max_iter=0
                printer.end(run.lower_bound, run.converged)
            finals.append(run.lower_bound)
            if best is None or run.lower_bound > best.lower_bound:
                best = run
        if not best.converged and self.max_iter > 0:
            warn(
                # scikit-learn's wording (filters written for it match),
                # then the iterations spent.
                "Best performing initialization did not converge. Try different "
                "init parameters, or increase max_iter, tol, or check for "
                f"degenerate data. It stopped at max_iter={self.max_iter} "
                "iterations.",
                ConvergenceWarning,
                stacklevel=_WARN_LEVEL,
            )
        self._set_params_from(best.params, dtype)
        self.converged_ = bool(best.converged)
        self.n_iter_ = int(best.n_iter)
        self.n_iter_search_ = int(getattr(Z, "n_em_iterations", 0))
        self.degenerate_ = degenerate_components(
            self.weights_, self.covariances_, ct.name, X.shape[0], self.reg_covar
        )
        if self.degenerate_.any():
            warn(
                _degenerate_message(
                    self.degenerate_, ct.name, X.shape[1], self.reg_covar
                ),
                DegenerateComponentWarning,
                stacklevel=_WARN_LEVEL,
            )
        self.lower_bound_ = float(best.lower_bound)
        self.lower_bounds_ = list(best.lower_bounds)
        self.init_lower_bounds_ = np.resize(np.asarray(finals), n_init)
        # Final E-step, so that fit_predict(X) == fit(X).predict(X).
        _, log_resp = e_step(X, best.params, chunk_size=self.chunk_size)
        return log_resp.argmax(axis=1)

    def _set_params_from(self, params, dtype=np.float64):
        ct = get_covariance_type(params.covariance_type)
        self.weights_ = params.weights.astype(dtype, copy=False)
        self.means_ = params.means.astype(dtype, copy=False)
        self.covariances_ = params.covariances.astype(dtype, copy=False)
        self.precisions_cholesky_ = params.precisions_cholesky.astype(dtype, copy=False)
        self.precisions_ = ct.precisions(params.precisions_cholesky).astype(
            dtype, copy=False
        )

    # ----------------------------------------------------------------- predict
    def _validated(self, X):
        """``X`` checked for prediction: float32 is kept, others become float64."""
        check_is_fitted(self)
        _check_chunk_size(self.chunk_size)
        return check_data(self, X, reset=False, dtype=_DTYPES)

    def _out_dtype(self, X):
        """Dtype of per-sample outputs: float32 only for float32 data and fit."""
        return np.result_type(X.dtype, self.means_.dtype)

    def _e_step(self, X):
        X = np.asarray(X, dtype=np.float64)
        return e_step(X, self._current_params(), chunk_size=self.chunk_size)

    def score_samples(self, X):
        """Log mixture density of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
            ``log p(x_n)`` (float32 for float32 data under a float32 fit).
        """
        if _is_dask(X):
            from bayes_gmm import _dask

            return _dask.score_samples(self, X)
        X = self._validated(X)
        return self._e_step(X)[0].astype(self._out_dtype(X), copy=False)

    def score(self, X, y=None):
        """Mean log-likelihood per sample (higher is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.
        y : None
            Ignored.

        Returns
        -------
        float
            ``mean_n log p(x_n)``.
        """
        if _is_dask(X):
            from bayes_gmm import _dask

            return _dask.score(self, X)
        return float(self.score_samples(X).mean())

    def predict_proba(self, X):
        """Responsibilities: probability of each component for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.

        Returns
        -------
        ndarray of shape (n_samples, n_components)
            ``p(z_n = k | x_n)`` (float32 for float32 data under a float32 fit).
        """
        if _is_dask(X):
            from bayes_gmm import _dask

            return _dask.predict_proba(self, X)
        X = self._validated(X)
        return np.exp(self._e_step(X)[1]).astype(self._out_dtype(X), copy=False)

    def predict(self, X):
        """Most probable component of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels.
        """
        if _is_dask(X):
            from bayes_gmm import _dask

            return _dask.predict(self, X)
        return self._e_step(self._validated(X))[1].argmax(axis=1)

    def sample(self, n_samples=1):
        """Draw samples from the fitted mixture.

        Labels are shuffled (scikit-learn returns them grouped by component).

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            Samples, float64 whatever the fit's dtype (as scikit-learn).
        y : ndarray of shape (n_samples,)
            Component of each sample.
        """
        check_is_fitted(self)
        n_samples = check_scalar("n_samples", n_samples, int, min_value=1)
        rng = check_random_state(self.random_state)
        p = self._current_params()
        return _sample_mixture(rng, n_samples, p.weights, p.means, self._cholesky())

    def _cholesky(self):
        ct = get_covariance_type(self.covariance_type)
        k, d = self.means_.shape
        cov = np.asarray(self.covariances_, dtype=np.float64)
        return ct.to_cholesky(cov, k, d, self.reg_covar)

    # -------------------------------------------------------------- criteria
    def n_parameters(self):
        """Number of free parameters of the fitted model.

        Returns
        -------
        int
            Covariance parameters + ``K D`` means + ``K - 1`` weights.
        """
        check_is_fitted(self)
        k, d = self.means_.shape
        return n_parameters(self.covariance_type, k, d)

    def _n_parameters(self):
        """scikit-learn's (private) name of :meth:`n_parameters`."""
        return self.n_parameters()

    def aic(self, X):
        """Akaike information criterion (lower is better).

        .. math:: \\mathrm{AIC} = -2 \\log L + 2 p

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.

        Returns
        -------
        float
        """
        if _is_dask(X):
            from bayes_gmm import _dask

            return _dask.aic(self, X)
        X = self._validated(X)
        return -2.0 * self._e_step(X)[0].sum() + 2.0 * self.n_parameters()

    def bic(self, X):
        """Bayesian information criterion (lower is better).

        .. math:: \\mathrm{BIC} = -2 \\log L + p \\log n

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.

        Returns
        -------
        float
        """
        if _is_dask(X):
            from bayes_gmm import _dask

            return _dask.bic(self, X)
        X = self._validated(X)
        log_like = self._e_step(X)[0].sum()
        return -2.0 * log_like + self.n_parameters() * np.log(X.shape[0])

    def icl(self, X):
        """Integrated completed likelihood (lower is better, BIC's scale).

        BIC penalised by the entropy of the hard classification
        (Biernacki, Celeux and Govaert, 2000; the definition of mclust):

        .. math:: \\mathrm{ICL} = \\mathrm{BIC} - 2 \\sum_n \\log \\tau_{n,\\hat z_n}

        where :math:`\\tau_{nk}` are the responsibilities and
        :math:`\\hat z_n` the most probable component. mclust reports
        ``-ICL`` (higher is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.

        Returns
        -------
        float
        """
        if _is_dask(X):
            from bayes_gmm import _dask

            return _dask.icl(self, X)
        X = self._validated(X)
        log_norm, log_resp = self._e_step(X)
        n = X.shape[0]
        bic = -2.0 * log_norm.sum() + self.n_parameters() * np.log(n)
        return bic - 2.0 * log_resp.max(axis=1).sum()


def _is_dask(X):
    """Whether ``X`` is a dask collection (checked without importing dask)."""
    return (type(X).__module__ or "").split(".")[0] in ("dask", "dask_expr")


def _sample_mixture(rng, n_samples, weights, means, chol):
    """Draw (X, labels) from a mixture given canonical Cholesky factors."""
    k, d = means.shape
    labels = rng.choice(k, size=n_samples, p=weights / weights.sum())
    z = rng.standard_normal((n_samples, d))
    X = np.empty((n_samples, d))
    for j in range(k):  # sampling, not EM: one matrix product per component
        idx = np.flatnonzero(labels == j)
        X[idx] = means[j] + z[idx] @ chol[j].T
    return X, labels
