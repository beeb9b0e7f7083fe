"""Input and parameter validation shared by every entry point (numpy only)."""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning as _SklearnConvergenceWarning
from sklearn.utils.validation import validate_data

__all__ = [
    "BayesGMMWarning",
    "ConvergenceWarning",
    "check_data",
    "check_finite_located",
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


def check_scalar(name, value, kind, *, min_value=None, include_min=True):
    """Check a numeric hyper-parameter and return it converted to ``kind``."""
    ok_type = numbers.Integral if kind is int else numbers.Real
    if isinstance(value, bool) or not isinstance(value, ok_type):
        raise TypeError(
            f"'{name}' must be {'an int' if kind is int else 'a number'}, "
            f"got {value!r} of type {type(value).__name__}."
        )
    if min_value is not None:
        if value < min_value or (not include_min and value == min_value):
            rel = ">=" if include_min else ">"
            raise ValueError(f"'{name}' must be {rel} {min_value}, got {value!r}.")
    return kind(value)


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


def check_finite_located(X, columns=None):
    """Raise a ValueError naming the first non-finite entry of ``X``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Numeric data.
    columns : sequence of str, optional
        Column names used in the message.
    """
    finite = np.isfinite(X)
    if finite.all():
        return
    bad = np.argwhere(~finite)
    row, col = (int(i) for i in bad[0])
    value = X[row, col]
    what = "NaN" if np.isnan(value) else "infinity"
    col_name = f"column {columns[col]!r}" if columns is not None else f"column {col}"
    n_rows = len(np.unique(bad[:, 0]))
    raise ValueError(
        f"Input X contains {what} at row {row}, {col_name} "
        f"({len(bad)} non-finite value(s) in {n_rows} row(s); NaN and inf are "
        f"not allowed). Drop or impute those rows first."
    )


def check_data(estimator, X, *, reset, min_samples=1):
    """Validate ``X`` for ``fit`` (``reset=True``) or prediction.

    Friendly checks first (non-numeric DataFrame columns, the location of the
    first NaN or inf), then scikit-learn's ``validate_data``, which handles
    1-D input, empty data, feature names and ``n_features_in_``.

    Returns
    -------
    ndarray of shape (n_samples, n_features), float64
    """
    bad = _non_numeric_columns(X)
    if bad:
        raise ValueError(
            f"Non-numeric column(s) {bad}: every feature must be numeric. "
            "Select the numeric columns or encode the others first."
        )
    arr = None
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None  # let validate_data produce its message
    if arr is not None and arr.ndim == 2 and arr.size:
        cols = [str(c) for c in X.columns] if hasattr(X, "columns") else None
        check_finite_located(arr, cols)
    return validate_data(
        estimator,
        X,
        reset=reset,
        dtype=np.float64,
        ensure_min_samples=min_samples,
    )


def check_random_state(random_state):
    """Turn ``random_state`` into a ``numpy.random.Generator`` (once).

    Accepts None, an int, a ``SeedSequence``, a ``Generator`` (returned as
    is) or a legacy ``RandomState`` (a seed is drawn from it).
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    if random_state is None or isinstance(
        random_state, (numbers.Integral, np.random.SeedSequence)
    ):
        return np.random.default_rng(random_state)
    raise ValueError(
        f"random_state must be None, an int, a numpy Generator or RandomState; "
        f"got {random_state!r}."
    )


def seed_from(rng):
    """Draw an int seed for a library that wants one (e.g. KMeans)."""
    return int(rng.integers(np.iinfo(np.int32).max))
