"""Tests of bayes_gmm.selection (EM grid). Oracle: scikit-learn, simulated truth."""

import numpy as np
import pandas as pd
import pytest
from sklearn.mixture import GaussianMixture

from bayes_gmm import BayesGMMWarning, ConvergenceWarning, make_mixture
from bayes_gmm.em import GaussianMixtureEM
from bayes_gmm.selection import (
    EMGrid,
    best_row,
    fit_em_grid,
    parse_components,
)

TYPES = ("full", "tied", "diag", "spherical")
KS = (1, 2, 3, 4)


@pytest.fixture(scope="module")
def data3():
    """Well-separated 2-D data with 3 true components."""
    X, y, truth = make_mixture(300, 3, 2, separation=6.0, random_state=1)
    return X


@pytest.fixture(scope="module")
def grid3(data3):
    return fit_em_grid(data3, KS, TYPES, n_init=2, random_state=0)


def sklearn_copy(model):
    """A scikit-learn GaussianMixture holding our fitted parameters."""
    k, d = model.means_.shape
    sk = GaussianMixture(n_components=k, covariance_type=model.covariance_type)
    sk.weights_ = model.weights_
    sk.means_ = model.means_
    sk.covariances_ = model.covariances_
    sk.precisions_cholesky_ = model.precisions_cholesky_
    sk.n_features_in_ = d
    sk.converged_ = True
    sk.n_iter_ = 1
    sk.lower_bound_ = 0.0
    return sk


def row_of(grid, ctype, k):
    t = grid.table
    rows = t[(t["covariance_type"] == ctype) & (t["n_components"] == k)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_table_structure(grid3):
    t = grid3.table
    assert isinstance(grid3, EMGrid)
    assert len(t) == len(TYPES) * len(KS)
    expected = [
        "covariance_type",
        "n_components",
        "log_likelihood",
        "n_parameters",
        "aic",
        "bic",
        "icl",
        "converged",
        "n_iter",
        "error",
    ]
    assert set(expected) <= set(t.columns)
    # grid order: types as given, K ascending
    assert list(t["covariance_type"]) == [c for c in TYPES for _ in KS]
    assert list(t["n_components"]) == list(KS) * len(TYPES)
    assert t["error"].isna().all()
    assert set(grid3.fits) == {(c, k) for c in TYPES for k in KS}


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("ctype", TYPES)
def test_criteria_equal_sklearn(grid3, data3, ctype, k):
    sk = sklearn_copy(grid3.fits[(ctype, k)])
    row = row_of(grid3, ctype, k)
    n = data3.shape[0]
    np.testing.assert_allclose(row["bic"], sk.bic(data3), rtol=1e-10)
    np.testing.assert_allclose(row["aic"], sk.aic(data3), rtol=1e-10)
    np.testing.assert_allclose(row["log_likelihood"], sk.score(data3) * n, rtol=1e-10)
    assert row["n_parameters"] == sk._n_parameters()


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("ctype", TYPES)
def test_icl_is_bic_minus_entropy_term(grid3, data3, ctype, k):
    sk = sklearn_copy(grid3.fits[(ctype, k)])
    resp = sk.predict_proba(data3)
    icl = sk.bic(data3) - 2.0 * np.sum(np.log(resp.max(axis=1)))
    np.testing.assert_allclose(row_of(grid3, ctype, k)["icl"], icl, rtol=1e-9)


def test_criteria_match_sklearn_own_fit(data3):
    # sklearn fitted from our final parameters for one more step converges
    # to the same optimum: its BIC equals ours.
    grid = fit_em_grid(data3, [3], ["full"], n_init=2, random_state=0)
    ours = grid.fits[("full", 3)]
    sk = GaussianMixture(
        3,
        covariance_type="full",
        weights_init=ours.weights_,
        means_init=ours.means_,
        precisions_init=ours.precisions_,
        tol=1e-10,
        max_iter=500,
    ).fit(data3)
    np.testing.assert_allclose(grid.table["bic"].iloc[0], sk.bic(data3), rtol=1e-4)


def test_bic_picks_true_number_of_components(grid3):
    ctype, k = grid3.best("bic")
    assert k == 3
    picks = grid3.picks()
    assert set(picks) == {"aic", "bic", "icl"}
    assert picks["bic"] == (ctype, k)
    assert grid3.best_model("bic") is grid3.fits[(ctype, k)]
    # the pick is the minimum of the column
    t = grid3.table
    assert row_of(grid3, ctype, k)["bic"] == t["bic"].min()


def test_failing_rows_are_recorded_and_the_grid_goes_on():
    X = np.random.default_rng(3).normal(size=(5, 2))
    with pytest.warns(BayesGMMWarning, match="2 of 7 models could not be fitted"):
        grid = fit_em_grid(X, range(1, 8), ["spherical"], n_init=1, random_state=0)
    t = grid.table
    bad = t[t["n_components"] > 5]
    good = t[t["n_components"] <= 5]
    assert len(bad) == 2
    assert bad["error"].str.contains("n_components = 6|n_components = 7").all()
    assert bad["error"].str.contains("n_samples = 5").all()
    assert bad[["log_likelihood", "aic", "bic", "icl"]].isna().all().all()
    assert good["error"].isna().all()
    assert good["bic"].notna().all()
    assert set(grid.fits) == {("spherical", k) for k in range(1, 6)}
    assert len(grid.failed) == 2
    # picks ignore the failed rows
    assert grid.best("bic")[1] <= 5


def test_every_model_failing_raises():
    X = np.random.default_rng(3).normal(size=(3, 2))
    with pytest.raises(ValueError, match="Every model of the grid failed"):
        fit_em_grid(X, [4, 5], ["full"], n_init=1)


def test_nan_gives_located_message():
    X = np.random.default_rng(0).normal(size=(20, 2))
    X[7, 1] = np.nan
    with pytest.raises(ValueError, match="NaN at row 7, column 1"):
        fit_em_grid(X, [1, 2], ["full"])
    df = pd.DataFrame(X, columns=["a", "b"])
    with pytest.raises(ValueError, match="NaN at row 7, column 'b'"):
        fit_em_grid(df, [1, 2], ["full"])


def test_bad_arguments():
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(ValueError, match=r"\['diag', 'full', 'spherical', 'tied'\]"):
        fit_em_grid(X, [1], ["fulll"])
    with pytest.raises(TypeError):
        fit_em_grid(X, [1], ["full"], not_a_parameter=3)
    with pytest.raises(TypeError, match="covariance_type"):
        fit_em_grid(X, [1], ["full"], covariance_type="diag")
    with pytest.raises(ValueError, match=">= 1"):
        fit_em_grid(X, [0, 1], ["full"])


def test_dataframe_names_kept(data3):
    df = pd.DataFrame(data3, columns=["x", "y"])
    grid = fit_em_grid(df, [2], ["diag"], n_init=1, random_state=0)
    assert grid.feature_names == ["x", "y"]
    assert list(grid.fits[("diag", 2)].feature_names_in_) == ["x", "y"]


def test_row_seed_refits_exactly(grid3, data3):
    # The recorded seed and n_init refit that row with an independent
    # estimator; sklearn scores the refit.
    row = row_of(grid3, "tied", 3)
    refit = GaussianMixtureEM(
        3, covariance_type="tied", n_init=2, random_state=int(row["random_state"])
    ).fit(data3)
    np.testing.assert_allclose(sklearn_copy(refit).bic(data3), row["bic"], rtol=1e-12)


def test_model_seed_independent_of_grid_composition(grid3, data3):
    small = fit_em_grid(data3, [3], ["tied"], n_init=2, random_state=0)
    assert (
        small.table["random_state"].iloc[0] == row_of(grid3, "tied", 3)["random_state"]
    )
    np.testing.assert_allclose(
        small.table["bic"].iloc[0], row_of(grid3, "tied", 3)["bic"], rtol=1e-12
    )


def test_progress_callback(data3):
    calls = []
    fit_em_grid(
        data3,
        [1, 2],
        ["full", "diag"],
        n_init=1,
        random_state=0,
        progress=lambda done, total, t, k, row: calls.append((done, total, t, k)),
    )
    assert calls == [
        (1, 4, "full", 1),
        (2, 4, "full", 2),
        (3, 4, "diag", 1),
        (4, 4, "diag", 2),
    ]


def test_not_converged_is_reported(data3):
    with pytest.warns(ConvergenceWarning, match="full K=3"):
        grid = fit_em_grid(data3, [3], ["full"], n_init=1, max_iter=1, random_state=0)
    assert not grid.table["converged"].iloc[0]


def test_best_row_honours_direction():
    table = pd.DataFrame(
        {
            "covariance_type": ["full", "full", "diag"],
            "n_components": [1, 2, 2],
            "bic": [10.0, 5.0, np.nan],
            "elpd_loo": [-3.0, -1.0, -0.5],
        }
    )
    assert best_row(table, "bic") == ("full", 2)
    assert best_row(table, "elpd_loo") == ("diag", 2)
    with pytest.raises(ValueError, match="no 'aic' column"):
        best_row(table, "aic")
    with pytest.raises(ValueError, match="Valid options"):
        best_row(table, "bicc")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("1-6", [1, 2, 3, 4, 5, 6]),
        ("3", [3]),
        ("1,2,5", [1, 2, 5]),
        ("2-4, 8", [2, 3, 4, 8]),
        (range(1, 4), [1, 2, 3]),
        (4, [4]),
    ],
)
def test_parse_components(spec, expected):
    assert parse_components(spec) == expected


@pytest.mark.parametrize("spec", ["", "a-b", "3-1", "1-2-3", "0-2", "1,,2", "-1"])
def test_parse_components_rejects(spec):
    with pytest.raises(ValueError, match="components|>= 1"):
        parse_components(spec)


def test_best_row_ties_go_to_fewer_parameters_then_first_row():
    table = pd.DataFrame(
        {
            "covariance_type": ["full", "diag", "spherical", "tied"],
            "n_components": [3, 3, 3, 2],
            "n_parameters": [8, 8, 8, 5],
            "bic": [100.0, 100.0 - 1e-10, 100.0, 100.0 + 1e-10],
        }
    )
    assert best_row(table, "bic") == ("tied", 2)
    assert best_row(table.iloc[:3], "bic") == ("full", 3)


def test_one_dimensional_data_pick_is_not_decided_by_rounding():
    # In 1-D, full, diag and spherical are the same model.
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(0, 1, 100), rng.normal(8, 1, 100)])[:, None]
    grid = fit_em_grid(
        x, [1, 2, 3], ("spherical", "diag", "full"), n_init=2, random_state=0
    )
    assert grid.best("bic") == ("spherical", 2)
