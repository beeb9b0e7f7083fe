"""GaussianMixtureBayes results that can be kept, and fits that can be stopped.

Oracles: the estimator's own predictions *before* pickling, compared in a
fresh Python process after unpickling; a real SIGINT sent to the main
thread while nutpie samples (the fit must raise KeyboardInterrupt, well
before the sampling could have ended); parameter errors raised before any
work.
"""

import pickle
import signal
import subprocess
import sys
import threading
import time

import joblib
import numpy as np
import pytest

from bayes_gmm import GaussianMixtureBayes, make_mixture

_LOAD = """
import sys, pickle, joblib, numpy as np
path, kind, data, out = sys.argv[1:]
est = joblib.load(path) if kind == "joblib" else pickle.load(open(path, "rb"))
X = np.load(data)
np.savez(out, predict=est.predict(X), proba=est.predict_proba(X),
         score_samples=est.score_samples(X), score=est.score(X))
"""


def _predictions(est, X):
    return {
        "predict": est.predict(X),
        "proba": est.predict_proba(X),
        "score_samples": est.score_samples(X),
        "score": est.score(X),
    }


@pytest.mark.parametrize("kind", ["pickle", "joblib"])
@pytest.mark.parametrize("fit", ["nuts_fit", "advi_fit"])
def test_round_trip_in_a_fresh_process_predicts_the_same(
    fit, kind, request, separated_2d, tmp_path
):
    est = request.getfixturevalue(fit)
    X, _, _ = separated_2d
    want = _predictions(est, X)
    path = tmp_path / "est.bin"
    if kind == "joblib":
        joblib.dump(est, path)
    else:
        path.write_bytes(pickle.dumps(est))
    np.save(tmp_path / "X.npy", X)
    subprocess.run(
        [
            sys.executable,
            "-c",
            _LOAD,
            str(path),
            kind,
            str(tmp_path / "X.npy"),
            str(tmp_path / "out.npz"),
        ],
        check=True,
        timeout=300,
    )
    got = np.load(tmp_path / "out.npz")
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_unpickled_model_is_rebuilt_with_the_same_log_density(nuts_fit):
    again = pickle.loads(pickle.dumps(nuts_fit))
    assert "model_" not in again.__dict__  # dropped from the pickle
    point = nuts_fit.model_.initial_point()
    want = nuts_fit.model_.compile_logp()(point)
    got = again.model_.compile_logp()(point)  # rebuilt from result_
    assert got == pytest.approx(float(want), rel=1e-12)


def test_tune_zero_is_refused_before_any_work():
    X, _, _ = make_mixture(50, 2, 2, random_state=0)
    with pytest.raises(ValueError, match="'tune' must be >= 1"):
        GaussianMixtureBayes(2, tune=0, progressbar=False).fit(X)


def test_near_collinear_columns_are_named_before_sampling():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(120, 2))
    X = np.column_stack([a, a[:, 0] + 1e-9 * rng.normal(size=120)])
    with pytest.raises(
        ValueError, match=r"Features \['0', '2'\] are \(nearly\) collinear"
    ):
        GaussianMixtureBayes(2, progressbar=False).fit(X)


def test_ctrl_c_during_nuts_raises_keyboard_interrupt(separated_2d):
    X, _, _ = separated_2d
    est = GaussianMixtureBayes(
        2, draws=200_000, tune=200, chains=2, progressbar=False, random_state=0
    )
    main = threading.main_thread().ident
    timer = threading.Timer(4.0, signal.pthread_kill, (main, signal.SIGINT))
    t0 = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            est.fit(X)
    finally:
        timer.cancel()
    # 200,000 draws take minutes; the interrupt stopped it within seconds
    assert time.perf_counter() - t0 < 60
    assert not hasattr(est, "result_")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
