"""Input and parameter validation shared by every entry point (numpy only)."""

from __future__ import annotations

import numbers
import warnings
from collections import Counter

import numpy as np
from sklearn.exceptions import ConvergenceWarning as _SklearnConvergenceWarning
from sklearn.utils.validation import validate_data

__all__ = [
    "BayesGMMWarning",
    "ConvergenceWarning",
    "check_data",
    "check_finite_located",
    "check_finite_param",
    "check_choice",
    "check_n_components",
    "check_random_state",
    "check_scalar",
    "warn",
    "DegenerateComponentWarning",
]


class BayesGMMWarning(UserWarning):
    """Base class of the warnings bayes_gmm emits."""


class ConvergenceWarning(BayesGMMWarning, _SklearnConvergenceWarning):
    """An iterative fit stopped before its convergence criterion was met.

    It subclasses scikit-learn's ``ConvergenceWarning`` so that filters
    written for scikit-learn keep working.
    """


class DegenerateComponentWarning(BayesGMMWarning):
    """A fitted component is degenerate (see ``GaussianMixtureEM.degenerate_``).

    Its covariance is held up by ``reg_covar`` alone, or (``full``) it has
    fewer effective points than ``D + 1``: its likelihood, and criteria
    computed from it (AIC, BIC, ICL), are artefacts of the regularisation.
    """


def warn(message, category=BayesGMMWarning, stacklevel=3):
    """Emit a warning attributed to the caller of the public function."""
    warnings.warn(message, category, stacklevel=stacklevel)


def check_choice(name, value, valid):
    """Return ``value`` if it is one of ``valid``, else raise a ValueError.

    The message lists the valid options, sorted.
    """
    if isinstance(value, str) and value in valid:
        return value
    raise ValueError(
        f"Invalid value for '{name}': {value!r}. Valid options are {sorted(valid)}."
    )


def check_scalar(name, value, kind, *, min_value=None, include_min=True, finite=False):
    """Check a numeric hyper-parameter and return it converted to ``kind``.

    NaN is never accepted; with ``finite=True`` neither is an infinity.
    """
    ok_type = numbers.Integral if kind is int else numbers.Real
    if isinstance(value, bool) or not isinstance(value, ok_type):
        raise TypeError(
            f"'{name}' must be {'an int' if kind is int else 'a number'}, "
            f"got {value!r} of type {type(value).__name__}."
        )
    if kind is not int and np.isnan(value):
        raise ValueError(f"'{name}' must be a number, got {value!r}.")
    if finite and kind is not int and np.isinf(value):
        raise ValueError(f"'{name}' must be finite, got {value!r}.")
    if min_value is not None:
        if value < min_value or (not include_min and value == min_value):
            rel = ">=" if include_min else ">"
            raise ValueError(f"'{name}' must be {rel} {min_value}, got {value!r}.")
    return kind(value)


def check_finite_param(name, value):
    """Raise a ValueError naming the first non-finite entry of ``value``.

    For array-valued parameters such as ``means_init``; ``value`` is a
    float ndarray.
    """
    finite = np.isfinite(value)
    if finite.all():
        return
    index = tuple(int(i) for i in np.argwhere(~finite)[0])
    bad = value[index]
    what = "NaN" if np.isnan(bad) else "infinity"
    where = f" at index {index[0] if len(index) == 1 else index}" if index else ""
    raise ValueError(
        f"'{name}' contains {what}{where} ({int((~finite).sum())} non-finite "
        f"value(s)): every entry must be finite."
    )


def check_n_components(n_components, n_samples):
    """Check ``n_components`` against the number of samples."""
    n_components = check_scalar("n_components", n_components, int, min_value=1)
    if n_samples < n_components:
        raise ValueError(
            f"Expected n_samples >= n_components but got n_components = "
            f"{n_components}, n_samples = {n_samples}: {n_samples} points cannot "
            f"be split into {n_components} components. Use fewer components or "
            f"more data."
        )
    return n_components


def _non_numeric_columns(X):
    """Names of the non-numeric columns of a DataFrame-like ``X`` (or [])."""
    dtypes = getattr(X, "dtypes", None)
    if dtypes is None or not hasattr(X, "columns"):
        return []
    bad = []
    for col, dtype in zip(X.columns, dtypes, strict=True):
        kind = getattr(dtype, "kind", "O")
        if kind not in "biuf":
            bad.append(str(col))
    return bad


def check_finite_located(X, columns=None, *, missing=False):
    """Raise a ValueError naming the first non-finite entry of ``X``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Numeric data.
    columns : sequence of str, optional
        Column names used in the message.
    missing : bool, default=False
        Whether NaN entries stand for missing values of the input (a
        DataFrame's ``pd.NA``), which the message then says.
    """
    finite = np.isfinite(X)
    if finite.all():
        return
    bad = np.argwhere(~finite)
    row, col = (int(i) for i in bad[0])
    value = X[row, col]
    if np.isnan(value):
        what = "a missing value (NA or NaN)" if missing else "NaN"
    else:
        what = "infinity"
    col_name = f"column {columns[col]!r}" if columns is not None else f"column {col}"
    n_rows = len(np.unique(bad[:, 0]))
    raise ValueError(
        f"Input X contains {what} at row {row}, {col_name} "
        f"({len(bad)} non-finite value(s) in {n_rows} row(s); NaN, NA and inf "
        f"are not allowed). Drop or impute those rows first."
    )


def _duplicated_columns(X):
    """Column names of a DataFrame-like ``X`` that occur more than once."""
    columns = getattr(X, "columns", None)
    if columns is None:
        return []
    try:
        counts = Counter(columns)
    except TypeError:  # unhashable names: validate_data reports them
        return []
    return [str(c) for c, n in counts.items() if n > 1]


def _as_float64(X):
    """``X`` as a float64 ndarray for the friendly checks, or None.

    The second value tells whether missing values (``pd.NA`` of nullable
    columns, which numpy cannot convert) were turned into NaN.
    """
    try:
        return np.asarray(X, dtype=np.float64), False
    except (TypeError, ValueError):
        pass
    to_numpy = getattr(X, "to_numpy", None)
    if to_numpy is not None:
        try:
            return np.asarray(to_numpy(dtype=np.float64, na_value=np.nan)), True
        except (TypeError, ValueError):
            pass
    return None, False  # let validate_data produce its message


def _check_squarable(X, columns, *, n_summed):
    """Raise a ValueError if squares of ``X`` would overflow its dtype.

    EM and the likelihood sum squares of the data over ``n_summed`` terms
    (second moments over samples and features at fit time; Mahalanobis
    distances over the features of a row at prediction time).
    """
    top = np.max(np.abs(X), initial=0.0)
    info = np.finfo(X.dtype)
    limit = np.sqrt(info.max / n_summed)
    if top <= limit:
        return
    row, col = (int(i) for i in np.unravel_index(np.argmax(np.abs(X)), X.shape))
    col_name = f"column {columns[col]!r}" if columns is not None else f"column {col}"
    raise ValueError(
        f"Input X has values up to {top:.3g} (row {row}, {col_name}): too large "
        f"to square in {X.dtype.name} (sums of {n_summed} squares overflow above "
        f"{limit:.3g}). Rescale the data first, e.g. divide it by a power of ten "
        "or use sklearn.preprocessing.StandardScaler."
    )


def check_data(estimator, X, *, reset, min_samples=1, dtype=np.float64):
    """Validate ``X`` for ``fit`` (``reset=True``) or prediction.

    Friendly checks first (non-numeric and duplicated DataFrame columns, the
    location of the first NaN, missing value or inf), then scikit-learn's
    ``validate_data``, which handles 1-D input, empty data, feature names and
    ``n_features_in_``; last, values too large to square.

    Parameters
    ----------
    estimator : estimator
        Gets ``n_features_in_`` (and ``feature_names_in_``) when ``reset``.
    X : array-like of shape (n_samples, n_features)
        Data.
    reset : bool
        True in ``fit``, False at prediction time.
    min_samples : int, default=1
        Fewest samples accepted.
    dtype : dtype or list of dtypes, default=np.float64
        As ``validate_data``'s: a list keeps an input of one of its dtypes
        (``[np.float64, np.float32]`` keeps float32) and converts others to
        the first.

    Returns
    -------
    ndarray of shape (n_samples, n_features)
        Of ``dtype`` (float64 by default).
    """
    bad = _non_numeric_columns(X)
    if bad:
        raise ValueError(
            f"Non-numeric column(s) {bad}: every feature must be numeric. "
            "Select the numeric columns or encode the others first."
        )
    dup = _duplicated_columns(X)
    if dup:
        raise ValueError(
            f"Duplicated column name(s) {dup}: every feature needs its own name. "
            "Rename or drop the duplicates first."
        )
    cols = [str(c) for c in X.columns] if hasattr(X, "columns") else None
    arr, missing = _as_float64(X)
    if arr is not None and arr.ndim == 2 and arr.size:
        check_finite_located(arr, cols, missing=missing)
    out = validate_data(
        estimator,
        X,
        reset=reset,
        dtype=dtype,
        ensure_min_samples=min_samples,
    )
    n_summed = out.shape[1] * (out.shape[0] if reset else 1)
    _check_squarable(out, cols, n_summed=max(n_summed, 1))
    return out


def check_random_state(random_state):
    """Turn ``random_state`` into a ``numpy.random.Generator`` (once).

    Accepts None, an int, a ``SeedSequence``, a ``Generator`` (returned as
    is) or a legacy ``RandomState`` (a seed is drawn from it).
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, numbers.Integral) and not isinstance(
        random_state, bool
    ):
        if random_state < 0:
            raise ValueError(
                "random_state must be None, a non-negative int (a seed), a numpy "
                f"Generator or RandomState; got {random_state!r}."
            )
        return np.random.default_rng(int(random_state))
    if random_state is None or isinstance(random_state, np.random.SeedSequence):
        return np.random.default_rng(random_state)
    raise ValueError(
        f"random_state must be None, an int, a numpy Generator or RandomState; "
        f"got {random_state!r}."
    )


def seed_from(rng):
    """Draw an int seed for a library that wants one (e.g. KMeans)."""
    return int(rng.integers(np.iinfo(np.int32).max))
