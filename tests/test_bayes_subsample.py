"""compare_models' Bayesian fits on a row subsample (``bayes_max_samples``).

Oracles: the rows themselves (the Bayesian fits' observed data must be exactly
X at the recorded rows, EM must see all rows), and the numpy run of the same
grid (dask input must give the same subsample and the same posterior).
"""

import json

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayes_gmm import compare_models, make_mixture

_KW = dict(
    methods=("em", "nuts"),
    draws=100,
    tune=100,
    chains=2,
    n_init=2,
    random_state=5,
    progressbar=False,
)


@pytest.fixture(scope="module")
def data():
    X, _, _ = make_mixture(300, 2, 2, separation=6.0, random_state=4)
    return X


@pytest.fixture(scope="module")
def numpy_run(data):
    return compare_models(data, [1, 2], bayes_max_samples=120, **_KW)


def _observed(est):
    return est.result_.datatree["observed_data"].to_dataset()["x"].values


def test_bayesian_fits_see_exactly_the_recorded_rows(numpy_run, data):
    rows = numpy_run.bayes_rows
    assert rows.shape == (120,) and np.all(np.diff(rows) > 0)
    assert rows.min() >= 0 and rows.max() < len(data)
    assert numpy_run.n_samples == 300 and numpy_run.bayes_n_samples == 120
    bayes = [v for key, v in numpy_run.fits.items() if key[0] == "nuts"]
    assert len(bayes) == 2
    for est in bayes:
        np.testing.assert_array_equal(_observed(est), data[rows])
        assert json.loads(est.result_.attrs["subsample"]) == {"rows": 120, "of": 300}
        assert est.result_.loo().n_data_points == 120
    # EM saw every row: its total log-likelihood is that of all 300 points
    em = numpy_run.fits[("em", "full", 2)]
    row = numpy_run.table.set_index("n_components").loc[2]
    assert row["log_likelihood"] == pytest.approx(em.score(data) * 300, rel=1e-9)
    assert "random subsample of 120 of the 300 rows" in numpy_run.verdict()


def test_dask_input_gets_the_same_subsample_and_posterior(numpy_run, data):
    got = compare_models(
        da.from_array(data, chunks=70), [1, 2], bayes_max_samples=120, **_KW
    )
    np.testing.assert_array_equal(got.bayes_rows, numpy_run.bayes_rows)
    for key, est in numpy_run.fits.items():
        if key[0] != "nuts":
            continue
        xr.testing.assert_allclose(
            got.fits[key].result_.posterior, est.result_.posterior, rtol=1e-8
        )


def test_dask_dataframe_keeps_its_column_names(data):
    import dask.dataframe as dd

    df = dd.from_pandas(pd.DataFrame(data, columns=["a", "b"]), npartitions=3)
    got = compare_models(df, [1], bayes_max_samples=50, **_KW)
    est = got.fits[("nuts", "full", 1)]
    assert list(est.feature_names_in_) == ["a", "b"]
    np.testing.assert_array_equal(_observed(est), data[got.bayes_rows])


def test_small_data_uses_every_row(data):
    X = data[:80]
    got = compare_models(X, [1], bayes_max_samples=120, **_KW)
    assert got.bayes_rows is None and got.bayes_n_samples == 80
    np.testing.assert_array_equal(_observed(got.fits[("nuts", "full", 1)]), X)
    assert "subsample" not in got.verdict()


def test_none_on_dask_and_bad_sizes_are_refused_before_fitting(data):
    with pytest.raises(ValueError, match="bayes_max_samples=None would load"):
        compare_models(
            da.from_array(data, chunks=100), [1], bayes_max_samples=None, **_KW
        )
    with pytest.raises(ValueError, match="bayes_max_samples"):
        compare_models(data, [1], bayes_max_samples=1, **_KW)
