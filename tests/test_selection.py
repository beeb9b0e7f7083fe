"""Tests of bayes_gmm.selection: EM grid, compare_models, WAIC, n_init stability.

Oracles: scikit-learn (criteria), hand computations (WAIC, paired elpd
differences), ArviZ's own loo and stacking on the same draws, independent
grid fits, simulated truth (BIC and LOO pick the true K).
"""

import logging
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture

import bayes_gmm.selection as selection
from bayes_gmm import BayesGMMWarning, ConvergenceWarning, make_mixture
from bayes_gmm.em import GaussianMixtureEM
from bayes_gmm.result import MixtureResult, waic
from bayes_gmm.selection import (
    CRITERIA,
    EMGrid,
    ModelComparison,
    best_row,
    bic_pick_stability,
    compare_models,
    fit_em_grid,
    parse_components,
)
from bayes_gmm.uncertainty import bootstrap_em

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


# ============================================================================
# compare_models, ModelComparison, WAIC, bic_pick_stability
# ============================================================================


def waic_by_hand(ll):
    """WAIC from a (draws, obs) pointwise log-likelihood, written out."""
    s = ll.shape[0]
    lppd = logsumexp(ll, axis=0) - np.log(s)
    p = ll.var(axis=0, ddof=1)
    elpd_i = lppd - p
    return elpd_i.sum(), np.sqrt(len(elpd_i) * elpd_i.var()), p.sum()


@pytest.mark.parametrize("shape", [(4, 50, 30), (200, 7)])
def test_waic_equals_hand_computation(shape):
    rng = np.random.default_rng(0)
    ll = rng.normal(-2.0, 0.7, size=shape)
    flat = ll.reshape(-1, shape[-1])
    elpd, se, p = waic_by_hand(flat)
    out = waic(ll, pointwise=True)
    assert out["elpd_waic"] == pytest.approx(elpd, rel=1e-12)
    assert out["se"] == pytest.approx(se, rel=1e-12)
    assert out["p_waic"] == pytest.approx(p, rel=1e-12)
    assert out["warning"] == bool(np.any(flat.var(axis=0, ddof=1) > 0.4))
    np.testing.assert_allclose(
        out["elpd_waic_i"],
        logsumexp(flat, axis=0) - np.log(flat.shape[0]) - flat.var(axis=0, ddof=1),
    )
    dev = waic(ll, scale="deviance")
    assert dev["elpd_waic"] == pytest.approx(-2 * elpd, rel=1e-12)
    assert dev["se"] == pytest.approx(2 * se, rel=1e-12)


class BootstrapPosterior:
    """Stand-in for GaussianMixtureBayes in fast tests: a parametric EM
    bootstrap with its pointwise log-likelihood, so LOO, WAIC and stacking
    run on real draws without compiling a PyMC model."""

    fail_for = ()

    def __init__(self, k, ctype, method, seed, settings):
        self.k, self.ctype, self.seed = k, ctype, seed
        self.draws = settings["draws"]

    def fit(self, X):
        if self.k in self.fail_for:
            raise RuntimeError(f"sampler crashed for K={self.k}")
        em = GaussianMixtureEM(
            self.k, covariance_type=self.ctype, n_init=2, random_state=self.seed
        ).fit(X)
        boot = bootstrap_em(
            em, X, n_boot=self.draws, kind="parametric", random_state=self.seed
        )
        ll = boot.log_likelihood_draws(np.asarray(X))[None]
        dt = boot.datatree.copy()
        dt["log_likelihood"] = xr.DataTree(
            xr.Dataset(
                {"x": (("chain", "draw", "obs"), ll)},
                coords={"chain": [0], "draw": np.arange(ll.shape[1])},
            )
        )
        self.result_ = MixtureResult(dt)
        return self


@pytest.fixture
def fake_bayes(monkeypatch):
    made = []

    def make(k, ctype, method, seed, settings):
        est = BootstrapPosterior(k, ctype, method, seed, settings)
        made.append(est)
        return est

    monkeypatch.setattr(selection, "_make_bayes", make)
    return made


@pytest.fixture(scope="module")
def fake_comparison(data3):
    mp = pytest.MonkeyPatch()
    mp.setattr(
        selection,
        "_make_bayes",
        lambda k, c, m, s, st: BootstrapPosterior(k, c, m, s, st),
    )
    try:
        return compare_models(
            data3,
            KS,
            ("full", "diag"),
            methods=("em", "nuts"),
            n_init=2,
            draws=200,
            random_state=0,
            progressbar=False,
        )
    finally:
        mp.undo()


def test_compare_models_bic_and_loo_pick_the_true_k(fake_comparison):
    picks = fake_comparison.picks()
    assert picks["bic"][1] == 3
    assert picks["nuts_elpd_loo"][1] == 3
    assert picks["nuts_elpd_waic"][1] == 3
    text = fake_comparison.verdict()
    assert "BIC and LOO agree" in text
    assert str(fake_comparison) == text


def test_compare_models_table_against_oracles(fake_comparison, data3):
    import arviz_stats

    t = fake_comparison.table
    assert len(t) == 2 * len(KS)
    assert list(t["n_components"]) == list(KS) * 2
    for _, row in t.iterrows():
        key = (row["covariance_type"], int(row["n_components"]))
        em = fake_comparison.fits[("em", *key)]
        np.testing.assert_allclose(row["bic"], sklearn_copy(em).bic(data3), rtol=1e-10)
        fit = fake_comparison.fits[("nuts", *key)]
        ll = fit.result_.datatree["log_likelihood"].to_dataset()["x"].values[0]
        elpd, se, p = waic_by_hand(ll)
        assert row["nuts_elpd_waic"] == pytest.approx(elpd, rel=1e-10)
        assert row["nuts_elpd_waic_se"] == pytest.approx(se, rel=1e-10)
        assert row["nuts_p_waic"] == pytest.approx(p, rel=1e-10)
        assert row["nuts_waic"] == pytest.approx(-2 * elpd, rel=1e-10)
        loo = arviz_stats.loo(fit.result_.datatree, pointwise=True, var_name="x")
        assert row["nuts_elpd_loo"] == pytest.approx(loo.elpd, rel=1e-10)
        assert row["nuts_looic"] == pytest.approx(-2 * loo.elpd, rel=1e-10)
        assert row["nuts_looic_se"] == pytest.approx(2 * loo.se, rel=1e-10)
        assert row["nuts_p_loo"] == pytest.approx(loo.p, rel=1e-10)
        # ArviZ's threshold for S = 200 draws
        assert row["nuts_good_k"] == pytest.approx(min(1 - 1 / np.log10(200), 0.7))
        assert row["nuts_n_bad_k"] == int((loo.pareto_k.values > loo.good_k).sum())
    weights = t["nuts_weight"].to_numpy()
    assert weights.sum() == pytest.approx(1.0, abs=1e-6)
    stack = fake_comparison.stacking["nuts"]
    assert stack.loc["full K=3", "weight"] == pytest.approx(
        t.loc[
            (t.covariance_type == "full") & (t.n_components == 3), "nuts_weight"
        ].iloc[0]
    )
    # direction of every criterion column
    for col in ("nuts_elpd_loo", "nuts_elpd_waic"):
        assert CRITERIA[col] == "max"
    for col in ("nuts_looic", "nuts_waic", "bic"):
        assert CRITERIA[col] == "min"
    picked = t[t["picked_by"].str.contains("bic")]
    assert len(picked) == 1 and picked["n_components"].iloc[0] == 3


def stacking_by_hand(pointwise, n_iter=20000):
    """Stacking weights (Yao et al. 2018): maximise the concave
    sum_i log sum_k w_k exp(elpd_loo_ik) over the simplex, by the EM
    fixed point for mixture weights (w_k <- mean_i of w_k's share)."""
    lp = np.asarray(pointwise)  # (n_obs, n_models)
    dens = np.exp(lp - lp.max(axis=1, keepdims=True))
    w = np.full(lp.shape[1], 1.0 / lp.shape[1])
    for _ in range(n_iter):
        share = dens * w
        w = (share / share.sum(axis=1, keepdims=True)).mean(axis=0)
    return w


def test_stacking_weights_against_a_hand_optimisation(fake_comparison, data3):
    import arviz_stats

    t = fake_comparison.table
    keys = [(r.covariance_type, int(r.n_components)) for r in t.itertuples()]
    pointwise = np.column_stack(
        [
            arviz_stats.loo(
                fake_comparison.fits[("nuts", *key)].result_.datatree,
                pointwise=True,
                var_name="x",
            ).elpd_i.values
            for key in keys
        ]
    )
    expected = stacking_by_hand(pointwise)
    weights = t["nuts_weight"].to_numpy()

    def score(w):
        return logsumexp(pointwise + np.log(np.maximum(w, 1e-300)), axis=1).sum()

    # Weights of models with near-identical predictions are not identified,
    # so compare the objective: ours reaches the hand optimum (in nats).
    assert weights.sum() == pytest.approx(1.0, abs=1e-6)
    assert score(weights) == pytest.approx(score(expected), abs=1e-2)
    # and the weight goes to the true K (3), of one type or the other
    assert weights[t["n_components"].to_numpy() == 3].sum() > 0.5


def test_compare_models_plot(fake_comparison):
    axes = fake_comparison.plot()
    assert len(axes) == 4  # AIC, BIC, ICL and the NUTS elpd_loo panel
    assert "NUTS" in axes[-1].get_title()


def test_compare_models_html(fake_comparison):
    page = fake_comparison._repr_html_()
    assert "<table" in page and "BIC picks" in page


def test_compare_models_failing_bayes_row_is_recorded(data3, fake_bayes, monkeypatch):
    monkeypatch.setattr(BootstrapPosterior, "fail_for", (2,))
    with pytest.warns(BayesGMMWarning, match="1 of 3 NUTS fits failed"):
        cmp = compare_models(
            data3,
            [1, 2, 3],
            methods=("em", "nuts"),
            n_init=1,
            draws=50,
            random_state=0,
            progressbar=False,
        )
    t = cmp.table.set_index("n_components")
    assert "sampler crashed for K=2" in t.loc[2, "nuts_error"]
    assert np.isnan(t.loc[2, "nuts_elpd_loo"])
    assert np.isfinite(t.loc[[1, 3], "nuts_elpd_loo"]).all()
    assert t["nuts_weight"].sum() == pytest.approx(1.0, abs=1e-6)
    assert np.isfinite(t.loc[2, "bic"])  # EM of that row is fine
    assert ("nuts", "full", 2) not in cmp.fits
    assert any("full K=2 NUTS: failed" in u for u in cmp.untrusted())
    assert "Do not trust" in cmp.verdict()


def test_compare_models_em_only_and_progress(data3, caplog):
    with caplog.at_level(logging.INFO, logger="bayes_gmm"):
        cmp = compare_models(
            data3,
            [2, 3],
            ("tied",),
            methods="em",
            n_init=1,
            random_state=0,
            progressbar=True,
        )
    assert cmp.methods == ("em",)
    assert not any(c.startswith("nuts_") for c in cmp.table.columns)
    assert cmp.picks() == {"aic": ("tied", 3), "bic": ("tied", 3), "icl": ("tied", 3)}
    assert sum("EM grid" in r.getMessage() for r in caplog.records) >= 2
    assert cmp.best_model("bic") is cmp.fits[("em", "tied", 3)]


def paired(elpd_i):
    return SimpleNamespace(elpd_i=np.asarray(elpd_i, float))


def hand_table(elpd, bic, **extra):
    n = len(elpd)
    table = pd.DataFrame(
        {
            "covariance_type": ["full"] * n,
            "n_components": list(range(1, n + 1)),
            "n_parameters": [5 * k for k in range(1, n + 1)],
            "aic": bic,
            "bic": bic,
            "icl": bic,
            "em_converged": [True] * n,
            "em_error": [None] * n,
            "nuts_elpd_loo": elpd,
            "nuts_elpd_loo_se": [5.0] * n,
            "nuts_elpd_waic": elpd,
            "nuts_weight": [1.0 / n] * n,
            "nuts_error": [None] * n,
            "nuts_divergences": [0] * n,
            "nuts_n_bad_k": [0] * n,
            "nuts_good_k": [0.7] * n,
            "nuts_pareto_k_max": [0.3] * n,
            "nuts_max_rhat": [1.0] * n,
            "nuts_converged": [True] * n,
        }
    )
    for key, value in extra.items():
        table[key] = value
    return table


def test_verdict_when_loo_difference_is_within_two_se():
    rng = np.random.default_rng(0)
    base = rng.normal(-2, 1, 100)
    noise = rng.normal(0, 0.3, 100)
    noise += 0.02 - noise.mean()  # K=2 better by 2.0 in total, se about 3
    loo = {
        ("nuts", "full", 1): paired(base),
        ("nuts", "full", 2): paired(base + noise),
    }
    elpd = [base.sum(), (base + noise).sum()]
    cmp = ModelComparison(
        table=hand_table(elpd, [10.0, 20.0]),
        loo=loo,
        methods=("em", "nuts"),
        n_samples=100,
    )
    diff = noise
    se = np.sqrt(100 * diff.var())
    assert diff.sum() < 2 * se  # precondition
    text = cmp.verdict()
    assert "BIC picks full K=1" in text
    assert "NUTS LOO picks full K=2" in text
    assert f"only {diff.sum():.1f} above" in text
    assert f"se of the difference {se:.1f}" in text
    assert "the simpler full K=1 is a reasonable choice" in text
    assert "Within 2 se of the NUTS LOO best: full K=1" in text


def test_verdict_when_loo_clearly_prefers_another_model():
    rng = np.random.default_rng(1)
    base = rng.normal(-2, 1, 100)
    better = base + 0.5 + rng.normal(0, 0.1, 100)
    loo = {("nuts", "full", 1): paired(base), ("nuts", "full", 2): paired(better)}
    cmp = ModelComparison(
        table=hand_table(
            [base.sum(), better.sum()],
            [10.0, 20.0],
            nuts_divergences=[0, 7],
            nuts_n_bad_k=[3, 0],
        ),
        loo=loo,
        methods=("em", "nuts"),
        n_samples=100,
    )
    text = cmp.verdict()
    assert "more than 2 se" in text and "LOO clearly prefers it" in text
    assert "full K=2 NUTS: 7 divergences" in text
    assert "full K=1 NUTS: 3 Pareto k > 0.70" in text


def test_degenerate_em_fits_are_left_out_of_the_picks():
    elpd = [-300.0, -290.0]
    loo = {
        ("nuts", "full", 1): paired(np.full(100, -3.0)),
        ("nuts", "full", 2): paired(np.full(100, -2.9)),
    }
    cmp = ModelComparison(
        table=hand_table(elpd, [30.0, 20.0], em_collapsed=[False, True]),
        loo=loo,
        methods=("em", "nuts"),
        n_samples=100,
    )
    text = cmp.verdict()
    # full K=2 has the lower BIC but is degenerate: left out of the picks
    assert cmp.picks()["bic"] == ("full", 1)
    assert "BIC picks full K=1" in text
    assert "Left out of the AIC, BIC and ICL picks: full K=2" in text
    assert any("full K=2 EM: a covariance collapsed" in u for u in cmp.untrusted())


def test_compare_models_marks_collapsed_em_fits(monkeypatch, data3):
    # A row whose EM fit has a collapsed covariance is marked, whatever the
    # fit: here the diagnostics helper is made to report one.
    from bayes_gmm import diagnostics

    real = diagnostics._collapsed

    def fake(model):
        check = real(model)
        if model.n_components == 3:
            from dataclasses import replace

            return replace(check, status="fail")
        return check

    monkeypatch.setattr(diagnostics, "_collapsed", fake)
    cmp = compare_models(data3, [2, 3], methods="em", n_init=1, random_state=0)
    assert cmp.table["em_collapsed"].tolist() == [False, True]
    assert cmp.picks()["bic"] == ("full", 2)  # K=3 left out
    assert "Left out of the AIC, BIC and ICL picks: full K=3" in cmp.verdict()
    # the EM grid marks and skips it too
    assert cmp.em_grid.table["collapsed"].tolist() == [False, True]
    assert cmp.em_grid.best("bic") == ("full", 2)
    assert cmp.em_grid.leading(5) == [("full", 2)]


def test_leading_models_skip_failed_collapsed_and_ties():
    table = pd.DataFrame(
        {
            "covariance_type": ["full", "full", "full", "diag", "spherical", "tied"],
            "n_components": [1, 2, 3, 1, 1, 4],
            "bic": [10.0, 5.0, np.nan, 10.0, 10.0 + 1e-12, 1.0],
            "n_parameters": [5, 11, 17, 4, 3, 20],
            "error": [None, None, "boom", None, None, None],
            "collapsed": [False, False, False, False, False, True],
        }
    )
    grid = EMGrid(table=table)
    # tied K=4 is degenerate, full K=3 failed; K=1 of three types ties
    # (one-dimensional data): it counts once, as the type with fewest
    # parameters
    assert grid.leading(3) == [("full", 2), ("spherical", 1)]
    assert grid.leading(1) == [("full", 2)]
    assert grid.leading(0) == []
    assert grid.best("bic") == ("full", 2)
    with pytest.raises(ValueError, match="'n' must be >= 0"):
        grid.leading(-1)


def test_compare_models_candidates_em_grid_and_callback(fake_bayes, data3):
    grid = fit_em_grid(data3, [1, 2, 3, 4], ("full", "diag"), n_init=2, random_state=0)
    events = []
    cmp = compare_models(
        data3,
        methods=("em", "nuts", "advi"),
        em_grid=grid,
        candidates={"nuts": 2, "advi": [("diag", 3)]},
        draws=50,
        random_state=0,
        progressbar=False,
        callback=lambda *a: events.append(a),
    )
    assert cmp.em_grid is grid  # reused, not refitted
    leading = grid.leading(2)
    assert leading[0] == grid.best("bic")
    fitted = [(e[1], e[2], e[3]) for e in events if e[0] == "done"]
    assert fitted == [("nuts", *p) for p in leading] + [("advi", "diag", 3)]
    assert [e[0] for e in events] == ["start", "done"] * 3
    done = [e[4] for e in events if e[0] == "done"]
    assert all(d["estimator"] is not None and d["seconds"] >= 0 for d in done)
    t = cmp.table.set_index(["covariance_type", "n_components"])
    assert t["nuts_elpd_loo"].notna().sum() == 2
    assert t.loc[leading, "nuts_elpd_loo"].notna().all()
    assert t["advi_elpd_loo"].notna().sum() == 1
    assert np.isfinite(t.loc[("diag", 3), "advi_elpd_loo"])
    assert t.loc[("diag", 3), "advi_weight"] == 1.0  # the only ADVI fit
    assert len(fake_bayes) == 1 + 3  # one made to check the settings


def test_compare_models_bad_candidates(data3):
    kw = dict(methods=("em", "nuts"), progressbar=False, n_init=1)
    with pytest.raises(ValueError, match="not in 'methods'"):
        compare_models(data3, [1, 2], candidates={"advi": 1}, **kw)
    with pytest.raises(ValueError, match="outside the grid: full K=5"):
        compare_models(data3, [1, 2], candidates={"nuts": [("full", 5)]}, **kw)
    with pytest.raises(ValueError, match="'candidates' must be >= 0"):
        compare_models(data3, [1, 2], candidates=-1, **kw)
    with pytest.raises(TypeError, match="EMGrid"):
        compare_models(data3, em_grid="grid", **kw)
    grid = fit_em_grid(data3[:50], [1], ("full",), n_init=1)
    with pytest.raises(ValueError, match="fitted to 50 samples, but X has 300"):
        compare_models(data3, em_grid=grid, **kw)


def test_compare_models_bad_input(data3):
    X = data3.copy()
    X[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN at row 3, column 0"):
        compare_models(X, [1, 2], methods="em", progressbar=False)
    with pytest.raises(ValueError, match=r"Valid options are \['advi', 'em'"):
        compare_models(data3, [1], methods=("em", "mcmc"), progressbar=False)
    with pytest.raises(TypeError, match="method"):
        compare_models(
            data3, [1], methods=("em", "nuts"), bayes_kwargs={"method": "advi"}
        )
    with pytest.raises(TypeError):
        compare_models(
            data3, [1], methods=("em", "nuts"), bayes_kwargs={"not_a_parameter": 1}
        )
    with pytest.raises(ValueError, match="'draws' must be >= 1"):
        compare_models(data3, [1], methods=("em", "nuts"), draws=0)
    with pytest.raises(ValueError, match="covariance_type"):
        compare_models(data3, [1], ("fulll",), methods="em")


def test_compare_models_with_nuts_reuses_the_shared_model(separated_2d, nuts_fit):
    # K = 2 reuses the compiled model of the shared fixture; K = 250 > N
    # fails in both EM and NUTS and is recorded, the grid goes on.
    import arviz_stats

    X, _, _ = separated_2d
    with pytest.warns(BayesGMMWarning):
        cmp = compare_models(
            X,
            [2, 250],
            methods=("em", "nuts"),
            n_init=2,
            draws=300,
            tune=300,
            chains=2,
            random_state=0,
            progressbar=False,
        )
    t = cmp.table.set_index("n_components")
    assert "n_samples = 200" in t.loc[250, "em_error"]
    assert "n_samples = 200" in t.loc[250, "nuts_error"]
    fit = cmp.fits[("nuts", "full", 2)]
    loo = arviz_stats.loo(fit.result_.datatree, pointwise=True, var_name="x")
    assert t.loc[2, "nuts_elpd_loo"] == pytest.approx(loo.elpd, rel=1e-12)
    ll = (
        fit.result_.datatree["log_likelihood"].to_dataset()["x"].values.reshape(600, -1)
    )
    assert t.loc[2, "nuts_elpd_waic"] == pytest.approx(waic_by_hand(ll)[0], rel=1e-10)
    assert t.loc[2, "nuts_weight"] == 1.0
    assert t.loc[2, "nuts_divergences"] == int(
        fit.result_.datatree["sample_stats"].to_dataset()["diverging"].sum()
    )
    assert cmp.picks()["nuts_elpd_loo"] == ("full", 2)
    assert "NUTS LOO picks full K=2" in cmp.verdict()


def test_bic_pick_stability_against_independent_grids():
    X, _, _ = make_mixture(90, 3, 2, separation=5.0, random_state=3)
    kw = dict(n_components=[1, 2, 3], covariance_types=("full", "spherical"))
    table = bic_pick_stability(
        X, n_inits=(2, 1), seeds=range(3), init_params="random_from_data", **kw
    )
    assert table["n_init"].tolist() == [1, 2]
    for n_init, row in zip((1, 2), table.itertuples(), strict=True):
        picks = []
        for seed in range(3):
            grid = fit_em_grid(
                X,
                [1, 2, 3],
                ("full", "spherical"),
                n_init=n_init,
                random_state=seed,
                init_params="random_from_data",
            )
            ctype, k = grid.best("bic")
            picks.append(f"{ctype} K={k}")
        assert row.picks == ", ".join(picks)
        counts = pd.Series(picks).value_counts()
        assert row.agreement == pytest.approx(counts.iloc[0] / 3)
        assert row.n_distinct == counts.size
    ref = table.attrs["reference"]
    assert ref == pd.Series(table["picks"].iloc[-1].split(", ")).value_counts().index[0]
    expected = None
    for row in table[::-1].itertuples():
        if not all(p == ref for p in row.picks.split(", ")):
            break
        expected = row.n_init
    assert table.attrs["stable_n_init"] == expected


def test_bic_pick_stability_skips_collapsed_fits(monkeypatch, data3):
    # Mark every K=3 fit as degenerate: the pick is the best of the rest.
    monkeypatch.setattr(selection, "_is_collapsed", lambda m: m.n_components == 3)
    kw = dict(n_components=[1, 2, 3], covariance_types=("full", "tied"))
    table = bic_pick_stability(data3, n_inits=(1,), seeds=range(2), **kw)
    grid = fit_em_grid(data3, [1, 2, 3], ("full", "tied"), n_init=1, random_state=0)
    rest = grid.table[grid.table["n_components"] != 3]
    assert table["picks"].iloc[0].split(", ")[0] == "{} K={}".format(
        *best_row(rest, "bic")
    )
    raw = bic_pick_stability(
        data3, n_inits=(1,), seeds=range(2), skip_collapsed=False, **kw
    )
    assert raw["picks"].iloc[0].split(", ")[0] == "{} K={}".format(
        *best_row(grid.table, "bic")
    )


def test_bic_pick_stability_bad_input(data3):
    with pytest.raises(ValueError, match="must not be empty"):
        bic_pick_stability(data3, n_inits=(), seeds=range(2))
    with pytest.raises(ValueError, match="'n_init' must be >= 1"):
        bic_pick_stability(data3, n_inits=(0,), seeds=range(2))


# ----------------------------------------------------------------------------
# slow: real Bayesian grids (each new (type, K) compiles a model) and the Old
# Faithful seeds study (about ten minutes on two busy cores)
# ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("method", ["nuts", "advi"])
def test_bic_and_loo_pick_three_components(data3, method):
    cmp = compare_models(
        data3,
        KS,
        methods=("em", method),
        n_init=3,
        draws=500,
        tune=500,
        chains=2,
        random_state=0,
        progressbar=False,
    )
    picks = cmp.picks()
    assert picks["bic"] == ("full", 3)
    assert picks[f"{method}_elpd_loo"] == ("full", 3)
    assert "BIC and LOO agree" in cmp.verdict()


@pytest.mark.slow
def test_old_faithful_bic_pick_is_seed_independent(faithful):
    table = bic_pick_stability(faithful, n_inits=(1, 2, 5, 10), seeds=range(10))
    # Measured: tied K=3 for all 10 seeds at every n_init with k-means starts.
    assert table.attrs["reference"] == "tied K=3"
    assert table.attrs["stable_n_init"] is not None
    assert table.attrs["stable_n_init"] <= 10
    assert table["all_agree"].iloc[-1]


@pytest.mark.slow
def test_old_faithful_random_starts_need_more_n_init(faithful):
    table = bic_pick_stability(
        faithful, n_inits=(1, 2, 5, 10), seeds=range(10), init_params="random_from_data"
    )
    # Measured: 6, 9, 10, 10 of 10 seeds pick tied K=3.
    assert table.attrs["reference"] == "tied K=3"
    assert table["agreement"].iloc[0] < 1.0
    assert table.attrs["stable_n_init"] is not None
    assert table.attrs["stable_n_init"] > 1


def test_loo_pick_leaves_out_fits_whose_pareto_k_fail():
    # K=4 has the highest elpd_loo, but 296 of 300 Pareto k above good_k
    # (an ADVI fit far from its posterior): its LOO estimate is not a basis
    # for a pick, so K=3 is picked; WAIC, without a k diagnostic, still
    # sees every row. Numbers as measured on make_mixture(300, 3, 2).
    from bayes_gmm.selection import ModelComparison

    table = pd.DataFrame(
        {
            "covariance_type": ["full"] * 4,
            "n_components": [1, 2, 3, 4],
            "n_parameters": [5, 11, 17, 23],
            "bic": [4311.4, 2823.3, 2224.5, 2247.8],
            "advi_elpd_loo": [-2145.5, -1391.1, -1080.2, -1079.5],
            "advi_looic": [4291.0, 2782.2, 2160.4, 2159.0],
            "advi_elpd_waic": [-2145.4, -1391.0, -1080.1, -1079.0],
            "advi_n_bad_k": [0, 0, 7, 296],
        }
    )
    cmp = ModelComparison(table=table, methods=("em", "advi"), n_samples=300)
    assert cmp.best("advi_elpd_loo") == ("full", 3)
    assert cmp.best("advi_looic") == ("full", 3)
    assert cmp.best("advi_elpd_waic") == ("full", 4)
    # every fit unreliable: the criterion still picks among all of them
    table["advi_n_bad_k"] = 300
    assert cmp.best("advi_elpd_loo") == ("full", 4)
