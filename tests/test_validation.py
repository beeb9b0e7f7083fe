"""Tests of bayes_gmm._validation: random states, choices, scalars, NaN location."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning

from bayes_gmm import BayesGMMWarning, ConvergenceWarning
from bayes_gmm._validation import (
    check_choice,
    check_data,
    check_finite_located,
    check_finite_param,
    check_n_components,
    check_random_state,
    check_scalar,
    warn,
)

# ------------------------------------------------------------- random states


def test_check_random_state_int_is_numpy_default_rng():
    # Oracle: numpy's own seeding of a Generator from the same int.
    got = check_random_state(42).standard_normal(5)
    np.testing.assert_array_equal(got, np.random.default_rng(42).standard_normal(5))


def test_check_random_state_seed_sequence():
    ss = np.random.SeedSequence(7)
    got = check_random_state(ss).integers(1000, size=5)
    want = np.random.default_rng(np.random.SeedSequence(7)).integers(1000, size=5)
    np.testing.assert_array_equal(got, want)


def test_check_random_state_generator_returned_as_is():
    gen = np.random.default_rng(0)
    assert check_random_state(gen) is gen


def test_check_random_state_none_gives_fresh_generators():
    a = check_random_state(None)
    b = check_random_state(None)
    assert isinstance(a, np.random.Generator)
    assert not np.array_equal(a.integers(2**62, size=4), b.integers(2**62, size=4))


def test_check_random_state_numpy_integer():
    got = check_random_state(np.int64(3)).integers(1000, size=3)
    np.testing.assert_array_equal(got, np.random.default_rng(3).integers(1000, size=3))


def test_check_random_state_legacy_random_state_is_deterministic_and_consumed():
    a = check_random_state(np.random.RandomState(5)).standard_normal(3)
    b = check_random_state(np.random.RandomState(5)).standard_normal(3)
    np.testing.assert_array_equal(a, b)
    # The legacy state is advanced, so two draws from the same one differ.
    rs = np.random.RandomState(5)
    c = check_random_state(rs).standard_normal(3)
    d = check_random_state(rs).standard_normal(3)
    assert not np.array_equal(c, d)


@pytest.mark.parametrize("bad", [-1, np.int64(-7)])
def test_check_random_state_rejects_negative_seeds(bad):
    # numpy's own refusal names no parameter; ours names random_state.
    with pytest.raises(ValueError, match="expected non-negative integer"):
        np.random.default_rng(int(bad))
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"random_state must be None, a non-negative int (a seed), a numpy "
            f"Generator or RandomState; got {bad!r}."
        ),
    ):
        check_random_state(bad)


@pytest.mark.parametrize("bad", ["seed", 1.5, [1, 2], object()])
def test_check_random_state_rejects_other_types(bad):
    with pytest.raises(ValueError, match="random_state must be None, an int"):
        check_random_state(bad)


# ------------------------------------------------------------------ choices


def test_check_choice_returns_valid_value():
    assert check_choice("init_params", "random", ("kmeans", "random")) == "random"


@pytest.mark.parametrize("bad", ["Full", "", None, 3])
def test_check_choice_message_lists_sorted_options(bad):
    valid = ("tied", "full", "spherical", "diag")
    expected = (
        f"Invalid value for 'covariance_type': {bad!r}. Valid options are "
        "['diag', 'full', 'spherical', 'tied']."
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        check_choice("covariance_type", bad, valid)


# ------------------------------------------------------------------ scalars


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [(3, int, 3), (np.int32(4), int, 4), (2, float, 2.0), (0.5, float, 0.5)],
)
def test_check_scalar_converts(value, kind, expected):
    got = check_scalar("x", value, kind)
    assert got == expected
    assert type(got) is kind


@pytest.mark.parametrize(
    ("value", "kind", "message"),
    [
        (True, int, "'x' must be an int, got True of type bool"),
        (2.0, int, "'x' must be an int, got 2.0 of type float"),
        ("3", int, "'x' must be an int, got '3' of type str"),
        (None, float, "'x' must be a number, got None of type NoneType"),
        (False, float, "'x' must be a number, got False of type bool"),
    ],
)
def test_check_scalar_type_errors(value, kind, message):
    with pytest.raises(TypeError, match=re.escape(message)):
        check_scalar("x", value, kind)


def test_check_scalar_min_inclusive():
    assert check_scalar("tol", 0.0, float, min_value=0.0) == 0.0
    with pytest.raises(ValueError, match=re.escape("'tol' must be >= 0.0, got -1e-09")):
        check_scalar("tol", -1e-9, float, min_value=0.0)


def test_check_scalar_min_exclusive():
    assert check_scalar("scale", 1e-12, float, min_value=0.0, include_min=False)
    with pytest.raises(ValueError, match=re.escape("'scale' must be > 0.0, got 0.0")):
        check_scalar("scale", 0.0, float, min_value=0.0, include_min=False)


@pytest.mark.parametrize("kind", [float, int])
def test_check_scalar_never_accepts_nan(kind):
    if kind is int:  # NaN is no int: the type check catches it
        with pytest.raises(TypeError, match="'x' must be an int, got nan"):
            check_scalar("x", np.nan, kind)
        return
    with pytest.raises(ValueError, match=re.escape("'x' must be a number, got nan")):
        check_scalar("x", np.nan, kind, min_value=0.0)


def test_check_scalar_infinity_only_when_allowed():
    assert check_scalar("tol", np.inf, float, min_value=0.0) == np.inf
    with pytest.raises(ValueError, match=re.escape("'reg' must be finite, got inf")):
        check_scalar("reg", np.inf, float, min_value=0.0, finite=True)
    with pytest.raises(ValueError, match=re.escape("'reg' must be finite, got -inf")):
        check_scalar("reg", -np.inf, float, finite=True)


def test_check_finite_param_names_first_entry():
    check_finite_param("w", np.array([0.5, 0.5]))
    value = np.zeros((2, 3))
    value[1, 2] = np.inf
    value[1, 0] = np.nan  # earlier in C order: reported
    with pytest.raises(
        ValueError,
        match=re.escape(
            "'means_init' contains NaN at index (1, 0) (2 non-finite value(s)): "
            "every entry must be finite."
        ),
    ):
        check_finite_param("means_init", value)
    with pytest.raises(ValueError, match=re.escape("'w' contains infinity at index 1")):
        check_finite_param("w", np.array([1.0, -np.inf]))


def test_check_n_components_messages():
    assert check_n_components(3, 3) == 3
    with pytest.raises(ValueError, match=re.escape("'n_components' must be >= 1")):
        check_n_components(0, 10)
    with pytest.raises(ValueError, match="Expected n_samples >= n_components"):
        check_n_components(5, 4)


# ------------------------------------------------------- non-finite location


def test_check_finite_located_passes_finite():
    check_finite_located(np.arange(6.0).reshape(3, 2))


def test_check_finite_located_names_first_nan_row_and_column():
    X = np.zeros((30, 3))
    X[17, 2] = np.nan
    X[20, 0] = np.inf
    X[25, 1] = np.nan
    msg = "Input X contains NaN at row 17, column 2 (3 non-finite value(s) in 3 row(s)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        check_finite_located(X)


def test_check_finite_located_infinity_and_column_names():
    X = np.zeros((5, 2))
    X[3, 1] = -np.inf
    X[3, 0] = np.inf  # same row, earlier column: this one is first
    with pytest.raises(
        ValueError, match=re.escape("infinity at row 3, column 'a' (2 non-finite")
    ):
        check_finite_located(X, ["a", "b"])


def test_check_data_non_numeric_columns_named():
    class Dummy:
        pass

    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "name": list("abc"), "when": ["1"] * 3})
    with pytest.raises(
        ValueError, match=re.escape("Non-numeric column(s) ['name', 'when']")
    ):
        check_data(Dummy(), df, reset=True)


class _Probe(BaseEstimator):
    """Stands for an estimator: validate_data sets n_features_in_ on it."""


def test_check_data_missing_value_of_nullable_column_located():
    df = pd.DataFrame(
        {
            "x": np.arange(6.0),
            "n": pd.array([1, 2, 3, pd.NA, 5, pd.NA], dtype="Int64"),
        }
    )
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Input X contains a missing value (NA or NaN) at row 3, column 'n' "
            "(2 non-finite value(s) in 2 row(s)"
        ),
    ):
        check_data(_Probe(), df, reset=True)
    # Without NA, a nullable column converts to the floats of its values.
    full = df.fillna(0)
    np.testing.assert_array_equal(
        check_data(_Probe(), full, reset=True), full.to_numpy(dtype=float)
    )


def test_check_data_duplicated_columns_named():
    df = pd.DataFrame(np.zeros((3, 4)), columns=["a", "b", "a", "b"])
    with pytest.raises(
        ValueError, match=re.escape("Duplicated column name(s) ['a', 'b']")
    ):
        check_data(_Probe(), df, reset=True)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reset", [True, False])
def test_check_data_values_too_large_to_square(dtype, reset):
    n, d = 50, 2
    # Closed form: sums of n d squares (fit) or d squares (one row) overflow
    # the dtype's largest value above sqrt(max / terms).
    terms = n * d if reset else d
    limit = np.sqrt(np.finfo(dtype).max / terms)
    probe = _Probe()
    ok = np.full((n, d), 0.5 * limit, dtype=dtype)
    if not reset:  # fitted first on small values
        check_data(probe, np.zeros((n, d), dtype), reset=True)
    got = check_data(probe, ok, reset=reset, dtype=[np.float64, np.float32])
    assert got.dtype == dtype
    bad = ok.copy()
    bad[4, 1] = 2 * limit
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"(row 4, column 1): too large to square in {np.dtype(dtype).name} "
            f"(sums of {terms} squares overflow above {limit:.3g}). Rescale"
        ),
    ):
        check_data(probe, bad, reset=reset, dtype=[np.float64, np.float32])


def test_check_data_keeps_float32_only_when_asked():
    X = np.ones((3, 2), dtype=np.float32)
    assert check_data(_Probe(), X, reset=True).dtype == np.float64
    kept = check_data(_Probe(), X, reset=True, dtype=[np.float64, np.float32])
    assert kept.dtype == np.float32
    ints = np.ones((3, 2), dtype=np.int64)
    assert (
        check_data(_Probe(), ints, reset=True, dtype=[np.float64, np.float32]).dtype
        == np.float64
    )


def test_bayesian_estimator_gets_the_same_data_checks():
    from bayes_gmm import GaussianMixtureBayes

    df = pd.DataFrame(
        {"a": [1.0, 2.0, 3.0, 4.0], "b": pd.array([1, pd.NA, 3, 4], dtype="Int64")}
    )
    with pytest.raises(
        ValueError, match=r"missing value \(NA or NaN\) at row 1, column 'b'"
    ):
        GaussianMixtureBayes(2).fit(df)
    with pytest.raises(ValueError, match="Duplicated column name"):
        GaussianMixtureBayes(2).fit(df.fillna(2).set_axis(["a", "a"], axis=1))
    with pytest.raises(ValueError, match="too large to square in float64"):
        GaussianMixtureBayes(2).fit(np.arange(8.0).reshape(4, 2) * 1e200)


# ----------------------------------------------------------------- warnings


def test_convergence_warning_hierarchy():
    assert issubclass(ConvergenceWarning, SklearnConvergenceWarning)
    assert issubclass(ConvergenceWarning, BayesGMMWarning)
    assert issubclass(BayesGMMWarning, UserWarning)


def test_warn_is_attributed_to_the_caller_of_the_public_function():
    def public():
        warn("careful", ConvergenceWarning)

    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        public()
    assert len(rec) == 1
    assert rec[0].category is ConvergenceWarning
    assert rec[0].filename == __file__
