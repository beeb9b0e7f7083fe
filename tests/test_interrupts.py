"""Interrupts (Ctrl-C) in every inference method, in compare_models, and joblib.

The rule under test (``GaussianMixtureBayes``, parameter ``keep_partial``):
an interrupt during sampling or ADVI stops the whole fit, which raises
``KeyboardInterrupt``, in every inference method and in callers such as
:func:`bayes_gmm.compare_models`; with ``keep_partial=True`` the draws
finished so far are kept instead (NUTS: the first draws every chain
completed, with a ``BayesGMMWarning``; ADVI: the approximation reached,
marked not converged), and an interrupt before the first draw still raises.

Every interrupt is a real SIGINT sent to the main thread by a
``threading.Timer``, while a fit runs that would take minutes to finish: the
oracle is the documented outcome, reached within seconds of the signal. The
timers are started once the inference itself runs (a warm-up fit first,
or a hook at the start of PyMC's sampling loop, of ADVI's iterations, or
compare_models' ``callback``), so the signal lands in the sampling or
optimisation loop, not in a compile.

The last test checks that the estimator survives joblib's process pool in
:func:`sklearn.model_selection.cross_validate`: the reported test scores are
the returned estimators' own ``score``, and a refit in this process with
the same seed predicts the same.
"""

import contextlib
import json
import re
import signal
import threading
import time
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import KFold, cross_validate

import bayes_gmm.bayes as bayes_module
from bayes_gmm import (
    BayesGMMWarning,
    GaussianMixtureBayes,
    compare_models,
    make_mixture,
)

_PARAMS = ("weights", "means", "covariances")
_QUIET = {"progressbar": False, "random_state": 0}


# --------------------------------------------------------------------- helpers
class _Sigint:
    """Send SIGINT to the main thread ``delay`` seconds after :meth:`arm`.

    ``fired`` is the ``perf_counter`` time the signal was sent (None before).
    :meth:`close` cancels a timer that has not fired, so that no stray
    signal outlives the test.
    """

    def __init__(self, delay):
        self.delay = delay
        self.fired = None
        self.armed = 0
        self._timers = []

    def _send(self):
        self.fired = time.perf_counter()
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    def arm(self):
        self.armed += 1
        timer = threading.Timer(self.delay, self._send)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def close(self):
        for timer in self._timers:
            timer.cancel()

    def since(self):
        """Seconds from the signal to now."""
        assert self.fired is not None, "the SIGINT was never sent"
        return time.perf_counter() - self.fired


@contextlib.contextmanager
def _sigint(delay, *, armed=True):
    sig = _Sigint(delay)
    if armed:
        sig.arm()
    try:
        yield sig
    finally:
        sig.close()


def _assert_handler_restored():
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _assert_finite_posterior(result):
    for name in _PARAMS:
        values = result.posterior[name].values
        assert np.all(np.isfinite(values)), f"non-finite draws in {name}"
    if "log_likelihood" in result.datatree.children:  # stored for small fits
        ll = result.datatree["log_likelihood"]["x"]
        assert ll.sizes["draw"] == result.posterior.sizes["draw"]
        assert np.all(np.isfinite(ll.values)), "non-finite log-likelihood draws"


def _assert_predicts(est, X, y):
    proba = est.predict_proba(X)
    assert proba.shape == (len(X), 2)
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-10)
    labels = est.predict(X)
    assert set(np.unique(labels)) <= {0, 1}
    # two well-separated components: even a short chain finds them
    assert adjusted_rand_score(y, labels) > 0.9
    assert np.all(np.isfinite(est.score_samples(X)))


@pytest.fixture(scope="module")
def data():
    """Two well-separated 2-D components, 120 points: (X, y)."""
    X, y, _ = make_mixture(120, 2, 2, separation=6.0, random_state=3)
    return X, y


@pytest.fixture(scope="module")
def warm(data):
    """A tiny nutpie fit: loads the kernel compiled on disk (numba) once."""
    X, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        GaussianMixtureBayes(2, draws=20, tune=20, chains=2, **_QUIET).fit(X)
    return X


@pytest.fixture
def on_pymc_chain_start(monkeypatch):
    """Call ``hook()`` whenever PyMC's sequential sampler starts a chain.

    ``pymc.sampling.mcmc._sample`` samples one chain (after the model's
    functions are compiled and NUTS is initialised); wrapping it times the
    interrupt from the start of the sampling loop.
    """
    import pymc.sampling.mcmc as mcmc

    real = mcmc._sample
    hooks = []

    def wrapped(**kwargs):
        for hook in hooks:
            hook()
        return real(**kwargs)

    monkeypatch.setattr(mcmc, "_sample", wrapped)
    return hooks.append


@pytest.fixture
def on_advi_start(monkeypatch):
    """Call ``hook()`` at ADVI's first iteration, and never stop on convergence.

    The estimator's convergence callback (``bayes_gmm.bayes.LossConvergence``,
    called after every iteration) is replaced by one whose window is longer
    than any run here, so ADVI runs to ``max_iter`` unless interrupted.
    """
    hooks = []

    class Hooked(bayes_module.LossConvergence):
        def __init__(self, window=10**9, rel_tol=1e-4):
            super().__init__(window=window, rel_tol=rel_tol)
            self.calls = 0

        def __call__(self, approx, loss, i):
            self.calls += 1
            if self.calls == 1:
                for hook in hooks:
                    hook()
            return super().__call__(approx, loss, i)

    monkeypatch.setattr(bayes_module, "LossConvergence", Hooked)
    return hooks.append


# ------------------------------------------------------------- NUTS (nutpie)
def test_nutpie_keep_partial_keeps_the_complete_draws(warm, data):
    """keep_partial=True: the first draws both chains finished, no NaN, a warning.

    200,000 draws per chain take minutes; the SIGINT comes 3 s in (the
    100 warm-up iterations take well under a second).
    """
    X, y = data
    draws = 200_000
    est = GaussianMixtureBayes(
        2, draws=draws, tune=100, chains=2, keep_partial=True, **_QUIET
    )
    with _sigint(3.0) as sig, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X)
    assert sig.since() < 30
    _assert_handler_restored()
    messages = [
        str(w.message) for w in caught if issubclass(w.category, BayesGMMWarning)
    ]
    kept = [re.search(r"kept the first (\d+) of (\d+) draws", m) for m in messages]
    kept = [m for m in kept if m]
    assert len(kept) == 1, messages
    n_kept, n_asked = map(int, kept[0].groups())
    post = est.result_.posterior
    assert post.sizes["chain"] == 2
    assert n_asked == draws
    assert 0 < post.sizes["draw"] == n_kept < draws
    np.testing.assert_array_equal(post["draw"].values, np.arange(n_kept))
    _assert_finite_posterior(est.result_)
    inference = json.loads(est.result_.attrs["inference"])
    assert inference["interrupted"] is True
    assert inference["draws_kept"] == n_kept
    _assert_predicts(est, X, y)
    for name in ("weights_", "means_", "covariances_"):
        assert np.all(np.isfinite(getattr(est, name)))


def test_nutpie_keep_partial_interrupted_in_warmup_raises(warm, data):
    """keep_partial=True, SIGINT before the first draw: KeyboardInterrupt."""
    X, _ = data
    est = GaussianMixtureBayes(
        2, draws=100, tune=1_000_000, chains=2, keep_partial=True, **_QUIET
    )
    with _sigint(2.0) as sig, pytest.raises(KeyboardInterrupt, match="before any"):
        est.fit(X)
    assert sig.since() < 30
    assert not hasattr(est, "result_")
    _assert_handler_restored()


# ------------------------------------------------------------ NUTS (PyMC's)
def test_pymc_sampler_interrupt_raises_keyboard_interrupt(data, on_pymc_chain_start):
    """sampler='pymc': PyMC's loop swallows KeyboardInterrupt; the fit must not.

    One chain of 100,000 draws takes minutes; the SIGINT comes 1 s after
    the sampling loop starts.
    """
    X, _ = data
    est = GaussianMixtureBayes(
        2, sampler="pymc", draws=100_000, tune=100, chains=1, **_QUIET
    )
    with _sigint(1.0, armed=False) as sig:
        on_pymc_chain_start(sig.arm)
        with pytest.raises(KeyboardInterrupt):
            est.fit(X)
    assert sig.armed == 1
    assert sig.since() < 20
    assert not hasattr(est, "result_")
    _assert_handler_restored()


def test_pymc_sampler_keep_partial_stops_every_chain(data, on_pymc_chain_start):
    """keep_partial=True, two sequential chains, SIGINT in the first.

    The interrupt must stop the fit (not just the first chain): what comes
    back holds fewer draws than asked, none NaN, soon after the signal.
    """
    X, y = data
    # about 3 s per chain here, the SIGINT 1 s into chain 0: if chain 1 runs
    # in full, PyMC keeps it alone (3000 draws > 2 x the ~900 of chain 0)
    draws = 3_000
    est = GaussianMixtureBayes(
        2, sampler="pymc", draws=draws, tune=100, chains=2, keep_partial=True, **_QUIET
    )
    with _sigint(1.0, armed=False) as sig:
        on_pymc_chain_start(lambda: sig.armed or sig.arm())
        with pytest.warns(BayesGMMWarning, match="Sampling was interrupted"):
            est.fit(X)
    after = sig.since()
    _assert_handler_restored()
    post = est.result_.posterior
    assert 0 < post.sizes["draw"] < draws, dict(post.sizes)
    _assert_finite_posterior(est.result_)
    _assert_predicts(est, X, y)
    # the interrupt did not leave the second chain running (seconds) to its end
    assert after < 5


def test_pymc_sampler_keep_partial_interrupted_in_warmup_raises(
    data, on_pymc_chain_start
):
    """keep_partial=True, SIGINT in PyMC's warm-up: KeyboardInterrupt (documented)."""
    X, _ = data
    est = GaussianMixtureBayes(
        2,
        sampler="pymc",
        draws=100,
        tune=1_000_000,
        chains=1,
        keep_partial=True,
        **_QUIET,
    )
    with _sigint(1.0, armed=False) as sig:
        on_pymc_chain_start(sig.arm)
        with pytest.raises(KeyboardInterrupt):
            est.fit(X)
    assert sig.since() < 20
    assert not hasattr(est, "result_")
    _assert_handler_restored()


# ----------------------------------------------------------------------- ADVI
def test_advi_interrupt_raises_keyboard_interrupt(data, on_advi_start):
    """ADVI: PyMC's loop swallows KeyboardInterrupt; the fit must not."""
    X, _ = data
    est = GaussianMixtureBayes(2, method="advi", draws=30, max_iter=10**6, **_QUIET)
    with _sigint(0.5, armed=False) as sig:
        on_advi_start(sig.arm)
        with pytest.raises(KeyboardInterrupt):
            est.fit(X)
    assert sig.armed == 1
    assert sig.since() < 20
    assert not hasattr(est, "result_")
    _assert_handler_restored()


def test_advi_keep_partial_keeps_the_approximation(data, on_advi_start):
    """keep_partial=True: the approximation reached, not converged, interrupted=1."""
    X, y = data
    max_iter = 10**6
    est = GaussianMixtureBayes(
        2, method="advi", draws=30, max_iter=max_iter, keep_partial=True, **_QUIET
    )
    with _sigint(1.0, armed=False) as sig:
        on_advi_start(sig.arm)
        with pytest.warns(BayesGMMWarning, match=r"advi was interrupted after (\d+)"):
            est.fit(X)
    assert sig.since() < 20
    _assert_handler_restored()
    stats = est.result_.datatree["fit_stats"].to_dataset()
    assert stats.attrs["interrupted"] == 1
    assert stats.attrs["converged"] == 0
    n_iter = stats.attrs["n_iter"]
    assert 0 < n_iter < max_iter
    assert stats["loss"].sizes["iteration"] == n_iter
    assert np.all(np.isfinite(stats["loss"].values))
    assert est.result_.posterior.sizes["draw"] == 30
    _assert_finite_posterior(est.result_)
    _assert_predicts(est, X, y)


# ------------------------------------------------------------- compare_models
def test_compare_models_lets_the_interrupt_through(warm, data):
    """An interrupt in a NUTS fit stops compare_models, not just that row.

    The SIGINT comes 2 s after each NUTS fit starts (200,000 draws each,
    minutes): the first must end the whole comparison.
    """
    X, _ = data
    events = []
    with _sigint(2.0, armed=False) as sig:

        def callback(event, method, covariance_type, n_components, info):
            events.append((event, method, n_components))
            if event == "start":
                sig.arm()

        with pytest.raises(KeyboardInterrupt):
            compare_models(
                X,
                [1, 2],
                methods=("em", "nuts"),
                n_init=2,
                draws=200_000,
                tune=100,
                chains=2,
                random_state=0,
                progressbar=False,
                callback=callback,
            )
    assert sig.since() < 30
    # the interrupted fit was not recorded (no "done"), and nothing followed it
    assert events == [("start", "nuts", 1)]
    _assert_handler_restored()


# ---------------------------------------------------------- joblib processes
def test_cross_validate_in_two_processes(warm, data):
    """cross_validate(n_jobs=2): scores are the estimators' own; refits agree."""
    X, _ = data
    est = GaussianMixtureBayes(2, draws=100, tune=100, chains=2, **_QUIET)
    cv = KFold(2, shuffle=True, random_state=0)
    out = cross_validate(
        est, X, cv=cv, n_jobs=2, return_estimator=True, return_indices=True
    )
    fitted = out["estimator"]
    assert len(fitted) == 2
    for i, (train, test) in enumerate(
        zip(out["indices"]["train"], out["indices"]["test"], strict=True)
    ):
        got = fitted[i]
        assert got is not est and got.result_.posterior.sizes["draw"] == 100
        # default scoring is est.score: the mean log predictive density
        assert got.score(X[test]) == pytest.approx(out["test_score"][i], rel=1e-12)
        # the same seed gives identical draws, in a worker or here
        again = clone(est).fit(X[train])
        np.testing.assert_array_equal(
            got.result_.posterior["means"].values,
            again.result_.posterior["means"].values,
        )
        np.testing.assert_array_equal(got.predict_proba(X), again.predict_proba(X))
    assert not hasattr(est, "result_")
