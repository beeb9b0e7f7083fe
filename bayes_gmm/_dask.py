"""EM on Dask: the engine behind ``GaussianMixtureEM`` for dask input.

Each EM iteration is one pass over the row blocks of a ``dask.array.Array``:
every block runs the same fused E/M kernels as the in-memory code
(:func:`bayes_gmm._covariance._em_kernel`, chunk by chunk inside the block)
and returns its log-likelihood and M-step statistics (soft counts, first and
second moments about the data's centre, or about the previous means for the
centred kernels); the statistics of all blocks are summed by a tree of
``dask.delayed`` tasks and the M-step (:func:`bayes_gmm.em._params_from_moments`)
runs on the driver. All ``n_init`` runs are advanced in lockstep, so one
pass over the data serves every run still iterating.

The start search runs on a random sample of rows (the in-memory rule,
``max(2000, 20 K (D + 1))`` rows; all rows when there are fewer), drawn from
the dask array and brought to the driver.

Predictions are lazy dask arrays computed blockwise (``map_blocks``).

dask is imported only here, and this module only when dask input is seen.
"""

from __future__ import annotations

import logging
import numbers

import numpy as np
from sklearn.utils.validation import check_is_fitted

logger = logging.getLogger("bayes_gmm")

#: blocks summed per task of the reduction tree
_SPLIT_EVERY = 8
#: stacklevel of fit's warnings: warn, this module's fit, _fit, fit, user
_WARN_LEVEL = 5


# ----------------------------------------------------------------- validation
def _is_dataframe(X):
    return hasattr(X, "columns") and hasattr(X, "dtypes")


def as_array(X):
    """A 2-D dask array with known row chunks and one column chunk, and names.

    Raises ``ValueError`` (before any pass over the data) for a dask
    DataFrame with non-numeric columns, an array of non-numeric dtype, an
    array that is not 2-D, or unknown chunk sizes.
    """
    import dask.array as da
    import pandas as pd

    names = None
    if _is_dataframe(X):
        if not hasattr(X, "to_dask_array"):  # a dask Series
            raise ValueError(
                "Expected a 2-D dask array or dask DataFrame, got a dask Series: "
                "use series.to_frame()."
            )
        bad = [
            str(c)
            for c, t in X.dtypes.items()
            if not pd.api.types.is_numeric_dtype(t) or pd.api.types.is_complex_dtype(t)
        ]
        if bad:
            raise ValueError(
                f"Non-numeric column(s) {bad}: every feature must be numeric. "
                "Select the numeric columns or encode the others first."
            )
        cols = list(X.columns)
        if all(isinstance(c, str) for c in cols):
            names = np.asarray(cols, dtype=object)
        # The partition lengths are computed (a cheap pass) so that chunks are known.
        X = X.to_dask_array(lengths=True)
    if not isinstance(X, da.Array):
        raise TypeError(
            f"Expected a dask.array.Array or a dask DataFrame, got {type(X).__name__}."
        )
    if X.ndim != 2:
        raise ValueError(
            f"Expected a 2-D dask array of shape (n_samples, n_features), got "
            f"{X.ndim} dimension(s); reshape your data (x.reshape(-1, 1) for one "
            "feature)."
        )
    kind = np.dtype(X.dtype).kind
    if kind not in "biuf":
        raise ValueError(
            f"The dask array has the non-numeric dtype {X.dtype}: every feature "
            "must be numeric (int, unsigned, float or bool)."
        )
    if any(np.isnan(c) for c in X.chunks[0]) or any(np.isnan(c) for c in X.chunks[1]):
        raise ValueError(
            "The dask array has unknown chunk sizes (NaN in .chunks), as the "
            "'.values' of a dask DataFrame has: call x.compute_chunk_sizes() "
            "first, or use df.to_dask_array(lengths=True) (or pass the dask "
            "DataFrame itself)."
        )
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})  # each block holds whole rows
    return X, names


def _row_offsets(X):
    return np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.int64)


def _check_features(est, X, names):
    check_is_fitted(est)
    d = X.shape[1]
    if d != est.n_features_in_:
        raise ValueError(
            f"X has {d} features, but {type(est).__name__} is expecting "
            f"{est.n_features_in_} features as input."
        )
    fitted = getattr(est, "feature_names_in_", None)
    if names is not None and fitted is not None and list(names) != list(fitted):
        raise ValueError(
            "The feature names should match those that were passed during fit: "
            f"got {list(names)}, expected {list(fitted)}."
        )


def _non_finite_message(block, row, col, value):
    what = "NaN" if np.isnan(value) else "an infinite value"
    return (
        f"Input contains {what} in block {block} of the dask array, at row {row} "
        f"(global row index), column {col}. Remove or impute missing values first "
        "(e.g. x[da.isfinite(x).all(axis=1)])."
    )


# ------------------------------------------------------------ block functions
def _block_summary(x, block, offset):
    """First pass: rows, column sums, min, max; raises on a non-finite value."""
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    if not finite.all():
        r, c = (int(i) for i in np.argwhere(~finite)[0])
        raise ValueError(_non_finite_message(block, offset + r, c, x[r, c]))
    if x.shape[0] == 0:
        d = x.shape[1]
        return 0, np.zeros(d), np.full(d, np.inf), np.full(d, -np.inf)
    return x.shape[0], x.sum(axis=0), x.min(axis=0), x.max(axis=0)


def _combine_summary(*parts):
    n = sum(p[0] for p in parts)
    s = np.sum([p[1] for p in parts], axis=0)
    lo = np.min([p[2] for p in parts], axis=0)
    hi = np.max([p[3] for p in parts], axis=0)
    return n, s, lo, hi


def _block_moments(x, runs, center, chunk_size, with_constant, covariance_type):
    """One block's EM statistics for every run (the in-memory fused kernels).

    ``runs`` are parameters with means relative to ``center``. Returns a
    list, per run, of ``[total log-lik, counts, first, second, origin]``,
    and the block's ``constant_moments`` (or None).
    """
    from bayes_gmm._covariance import get_covariance_type
    from bayes_gmm.em import _chunk_size, _constant_moments, _kernel_pass

    ct = get_covariance_type(covariance_type)
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    out = []
    for params in runs:
        total, kernel, _ = _kernel_pass(x, params, center, chunk_size)
        out.append([total, *kernel.moments()])
    constant = None
    if with_constant:
        size = _chunk_size(n, runs[0].weights.shape[0], d, chunk_size)
        constant = _constant_moments(x, ct, center, size)
    return out, constant


def _add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _combine_moments(*parts):
    runs = [list(r) for r in parts[0][0]]
    constant = parts[0][1]
    for stats, const in parts[1:]:
        for acc, r in zip(runs, stats, strict=True):
            for i in range(4):
                acc[i] = _add(acc[i], r[i])
        constant = _add(constant, const)
    return runs, constant


def _tree(blocks, combine):
    """Sum delayed block results by a tree of delayed ``combine`` tasks."""
    import dask

    level = list(blocks)
    while len(level) > 1:
        level = [
            dask.delayed(combine, pure=True)(*level[i : i + _SPLIT_EVERY])
            for i in range(0, len(level), _SPLIT_EVERY)
        ]
    return level[0]


def _blocks(X):
    """The non-empty row blocks of ``X`` as delayed objects, with their index/offset."""
    offsets = _row_offsets(X)
    delayed = X.to_delayed().ravel()
    return [
        (i, int(offsets[i]), b) for i, b in enumerate(delayed) if X.chunks[0][i] > 0
    ]


def _summary_pass(X):
    import dask

    parts = [
        dask.delayed(_block_summary, pure=True)(b, i, off) for i, off, b in _blocks(X)
    ]
    return dask.compute(_tree(parts, _combine_summary))[0]


class _Summary:
    """What ``GaussianMixtureEM._check_parameters`` reads of the data."""

    def __init__(self, n, d, lo, hi):
        self.shape = (n, d)
        self._lo, self._hi = lo, hi

    def min(self, axis=0):
        return self._lo

    def max(self, axis=0):
        return self._hi


# ------------------------------------------------------------------ sampling
def sample_rows(X, size, rng):
    """``size`` random rows of ``X`` (sorted; all rows when there are fewer)."""
    n = X.shape[0]
    if n <= size:
        return np.asarray(X.compute(), dtype=np.float64)
    idx = np.sort(rng.choice(n, size=size, replace=False))
    return np.asarray(X[idx].compute(), dtype=np.float64)


def take_rows(X, rows):
    """Rows of dask input as numpy (a DataFrame with the names, if it had them)."""
    import pandas as pd

    arr, names = as_array(X)
    values = np.asarray(arr[np.asarray(rows)].compute(), dtype=np.float64)
    if names is None:
        return values
    return pd.DataFrame(values, columns=[str(c) for c in names])


def _sample_size(k, d):
    from bayes_gmm._init import _MIN_SCREEN_SAMPLES

    return max(_MIN_SCREEN_SAMPLES, 20 * k * (d + 1))


# ----------------------------------------------------------------------- fit
class _Run:
    def __init__(self, index, params, previous):
        self.index = index
        self.current = params
        self.lower_bound = float(previous)
        self.history = []
        self.n_iter = 0
        self.converged = False
        self.done = False


def run_em_dask(
    X,
    starts,
    *,
    center,
    n_samples,
    tol,
    max_iter,
    reg_covar,
    chunk_size,
    previous_lower_bound,
    callback=None,
):
    """EM from every start in lockstep, one pass over the blocks per iteration.

    The same rule as :func:`bayes_gmm.em.run_em`, run by run. Returns a list
    of :class:`bayes_gmm.em.EMRun`, in the order of ``starts``.
    """
    import dask

    from bayes_gmm._covariance import get_covariance_type
    from bayes_gmm.em import EMRun, _params_from_moments

    ct = get_covariance_type(starts[0].covariance_type)
    blocks = _blocks(X)
    runs = [
        _Run(i, s.shifted(center), previous_lower_bound) for i, s in enumerate(starts)
    ]
    needs_constant = ct.constant_moments(np.zeros((1, X.shape[1]))) is not None
    constant = None
    for n_iter in range(1, max_iter + 1):
        active = [r for r in runs if not r.done]
        if not active:
            break
        with_constant = needs_constant and constant is None
        params = dask.delayed([r.current for r in active], traverse=False)
        parts = [
            dask.delayed(_block_moments, pure=True)(
                b, params, center, chunk_size, with_constant, ct.name
            )
            for _, _, b in blocks
        ]
        stats, const = dask.compute(_tree(parts, _combine_moments))[0]
        if with_constant:
            constant = const
        for r, (total, counts, first, second, origin) in zip(
            active, stats, strict=True
        ):
            previous = r.lower_bound
            r.lower_bound = float(total / n_samples)
            r.current = _params_from_moments(
                ct, (counts, first, second, origin), reg_covar, constant
            )
            r.history.append(r.lower_bound)
            r.n_iter = n_iter
            if abs(r.lower_bound - previous) < tol:
                r.converged = True
                r.done = True
        if callback is not None:
            callback(n_iter, active)
    return [
        EMRun(
            r.current.shifted(-center),
            float(r.lower_bound),
            r.history,
            r.n_iter,
            r.converged,
        )
        for r in runs
    ]


def fit(est, X):
    """``GaussianMixtureEM.fit`` on a dask array or DataFrame; returns ``est``."""
    from bayes_gmm._validation import (
        ConvergenceWarning,
        DegenerateComponentWarning,
        check_n_components,
        check_random_state,
        warn,
    )
    from bayes_gmm.em import (
        MixtureParams,
        _degenerate_message,
        _VerboseMessages,
        degenerate_components,
    )

    do_init = not (est.warm_start and hasattr(est, "converged_"))
    X, names = as_array(X)
    n, d = X.shape
    if n < 2:
        raise ValueError(
            f"Found array with {n} sample(s) (shape=({n}, {d})) while a minimum "
            "of 2 is required by GaussianMixtureEM."
        )
    if d < 1:
        raise ValueError(
            "Found array with 0 feature(s) while a minimum of 1 is required."
        )
    if isinstance(est.n_components, numbers.Integral) and not isinstance(
        est.n_components, bool
    ):
        check_n_components(est.n_components, n)  # too few rows, before any pass
    if not do_init and d != est.n_features_in_:
        _check_features(est, X, names)
    dtype = np.float32 if X.dtype == np.float32 else np.float64
    # First pass: non-finite values (named by block and row), centre, range.
    n_rows, col_sum, lo, hi = _summary_pass(X)
    summary = _Summary(n, d, lo, hi)
    k, ct, inits = est._check_parameters(summary)
    if do_init:
        est.n_features_in_ = d
        if names is not None:
            est.feature_names_in_ = names
        elif hasattr(est, "feature_names_in_"):
            del est.feature_names_in_
    center = col_sum / n_rows
    rng = check_random_state(est.random_state)
    n_init = est.n_init if do_init else 1
    level = logging.INFO if est.verbose else logging.DEBUG

    starts = []
    Z = None
    if do_init:
        if len(inits) == 3:
            S = None
        else:
            S = sample_rows(X, _sample_size(k, d), rng)
        Z = est._start(S, None, k, ct, inits, rng)
        n_runs = n_init
        if not est.verbose:
            n_runs = min(n_init, len(getattr(Z, "starts", range(n_init))))
        starts = [est._start(S, Z, k, ct, inits, rng) for _ in range(n_runs)]
    else:
        starts = [est._current_params()]
    printers = []
    for i in range(len(starts)):
        p = _VerboseMessages(est.verbose, est.verbose_interval)
        p.start(i, -np.inf if do_init else est.lower_bound_)
        printers.append(p)

    def progress(it, active):
        text = ", ".join(
            f"init {r.index + 1}: mean log-lik {r.lower_bound:.6f}" for r in active
        )
        logger.log(level, "dask pass %d over %d blocks: %s", it, X.numblocks[0], text)
        for r in active:
            printers[r.index].iteration(it, r.lower_bound)

    results = run_em_dask(
        X,
        starts,
        center=center,
        n_samples=n,
        tol=est.tol,
        max_iter=est.max_iter,
        reg_covar=est.reg_covar,
        chunk_size=est.chunk_size,
        previous_lower_bound=-np.inf if do_init else est.lower_bound_,
        callback=progress,
    )
    best = None
    finals = []
    for i, run in enumerate(results):
        logger.log(
            level,
            "init %d of %d: %s after %d iterations, mean log-lik %.6f",
            i + 1,
            n_init,
            "converged" if run.converged else "not converged",
            run.n_iter,
            run.lower_bound,
        )
        if est.max_iter > 0:
            printers[i].end(run.lower_bound, run.converged)
        finals.append(run.lower_bound)
        if best is None or run.lower_bound > best.lower_bound:
            best = run
    if not best.converged and est.max_iter > 0:
        warn(
            "Best performing initialization did not converge. Try different "
            "init parameters, or increase max_iter, tol, or check for "
            f"degenerate data. It stopped at max_iter={est.max_iter} "
            "iterations.",
            ConvergenceWarning,
            stacklevel=_WARN_LEVEL,
        )
    assert isinstance(best.params, MixtureParams)
    est._set_params_from(best.params, dtype)
    est.converged_ = bool(best.converged)
    est.n_iter_ = int(best.n_iter)
    est.n_iter_search_ = int(getattr(Z, "n_em_iterations", 0))
    est.degenerate_ = degenerate_components(
        est.weights_, est.covariances_, ct.name, n, est.reg_covar
    )
    if est.degenerate_.any():
        warn(
            _degenerate_message(est.degenerate_, ct.name, d, est.reg_covar),
            DegenerateComponentWarning,
            stacklevel=_WARN_LEVEL,
        )
    est.lower_bound_ = float(best.lower_bound)
    est.lower_bounds_ = list(best.lower_bounds)
    est.init_lower_bounds_ = np.resize(np.asarray(finals), n_init)
    return est


# ---------------------------------------------------------------- predictions
def _block_e_step(x, params, chunk_size, what, block_info=None):
    from bayes_gmm.em import e_step

    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] == 0:
        k = params.weights.shape[0]
        return np.empty((0, k)) if what == "proba" else np.empty((0,))
    finite = np.isfinite(x)
    if not finite.all():
        r, c = (int(i) for i in np.argwhere(~finite)[0])
        info = (block_info or {}).get(0, {})
        block = info.get("chunk-location", ("?",))[0]
        offset = info.get("array-location", [(0, 0)])[0][0]
        raise ValueError(_non_finite_message(block, offset + r, c, x[r, c]))
    log_norm, log_resp = e_step(x, params, chunk_size=chunk_size)
    if what == "score":
        return log_norm
    if what == "proba":
        return np.exp(log_resp)
    if what == "label":
        return log_resp.argmax(axis=1)
    # "sums": total log-likelihood and sum of the log max responsibilities
    return np.array([[log_norm.sum(), log_resp.max(axis=1).sum()]])


def _prepared(est, X):
    X, names = as_array(X)
    _check_features(est, X, names)
    from bayes_gmm.em import _check_chunk_size

    _check_chunk_size(est.chunk_size)
    out = np.result_type(
        np.float32 if X.dtype == np.float32 else np.float64, est.means_.dtype
    )
    return X, est._current_params(), out


def score_samples(est, X):
    """Lazy ``log p(x_n)``, one task per block."""
    X, p, out = _prepared(est, X)
    res = X.map_blocks(
        _block_e_step, p, est.chunk_size, "score", drop_axis=1, dtype=np.float64
    )
    return res.astype(out) if out != np.float64 else res


def predict_proba(est, X):
    """Lazy responsibilities, shape (n, K), one task per block."""
    X, p, out = _prepared(est, X)
    k = p.weights.shape[0]
    res = X.map_blocks(
        _block_e_step,
        p,
        est.chunk_size,
        "proba",
        chunks=(X.chunks[0], (k,)),
        dtype=np.float64,
    )
    return res.astype(out) if out != np.float64 else res


def predict(est, X):
    """Lazy labels, one task per block."""
    X, p, _ = _prepared(est, X)
    return X.map_blocks(
        _block_e_step, p, est.chunk_size, "label", drop_axis=1, dtype=np.intp
    )


def _sums(est, X):
    """(n, total log-likelihood, sum_n log max_k r_nk) in one pass."""
    X, p, _ = _prepared(est, X)
    sums = X.map_blocks(
        _block_e_step,
        p,
        est.chunk_size,
        "sums",
        chunks=((1,) * X.numblocks[0], (2,)),
        dtype=np.float64,
    ).sum(axis=0, split_every=_SPLIT_EVERY)
    log_like, log_max = (float(v) for v in sums.compute())
    return X.shape[0], log_like, log_max


def score(est, X):
    n, log_like, _ = _sums(est, X)
    return log_like / n


def aic(est, X):
    _, log_like, _ = _sums(est, X)
    return -2.0 * log_like + 2.0 * est.n_parameters()


def bic(est, X):
    n, log_like, _ = _sums(est, X)
    return -2.0 * log_like + est.n_parameters() * np.log(n)


def icl(est, X):
    n, log_like, log_max = _sums(est, X)
    return -2.0 * log_like + est.n_parameters() * np.log(n) - 2.0 * log_max


# ------------------------------------------------------------------ selection
def grid_frame(X):
    """``selection._validated_frame`` for dask input: (data, array, names)."""
    arr, names = as_array(X)
    if arr.shape[0] < 2:
        raise ValueError(
            f"Found array with {arr.shape[0]} sample(s) while a minimum of 2 is "
            "required."
        )
    names = None if names is None else [str(c) for c in names]
    return (X if names is not None else arr), arr, names


def grid_sample(X, max_components, base):
    """The rows a grid's shared starts are drawn on (all rows when few)."""
    size = _sample_size(max_components, X.shape[1])
    return sample_rows(X, size, np.random.default_rng([base, 2]))
