"""GaussianMixtureBayes: the Bayesian mixture fitted by NUTS or variational inference.

``fit`` validates the data, fits EM (the start of every chain and the pivot
of relabelling), builds the PyMC model (:func:`bayes_gmm.model.build_model`),
runs inference, relabels the draws and wraps everything in one DataTree
(:class:`bayes_gmm.result.MixtureResult`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import logging
import signal
import threading
import time
import warnings
from collections import OrderedDict

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, DensityMixin, clone
from sklearn.utils.validation import check_is_fitted

from bayes_gmm._covariance import get_covariance_type
from bayes_gmm._validation import (
    BayesGMMWarning,
    ConvergenceWarning,
    check_choice,
    check_data,
    check_n_components,
    check_random_state,
    check_scalar,
    seed_from,
    warn,
)
from bayes_gmm.em import GaussianMixtureEM
from bayes_gmm.model import Priors, build_model, initial_point
from bayes_gmm.result import MixtureResult, _log_likelihood_dataset

__all__ = ["GaussianMixtureBayes", "METHODS", "SAMPLERS"]

logger = logging.getLogger("bayes_gmm")

METHODS = ("advi", "fullrank_advi", "nuts")
SAMPLERS = ("blackjax", "numpyro", "nutpie", "pymc")
_PARAMS = ("weights", "means", "covariances")
# Pointwise log-likelihood values stored with log_likelihood="auto" (256 MB).
_STORED_LOG_LIKELIHOOD = 2**25
# Jitter of the EM start, in the model's standardised unconstrained space.
_JITTER_SD = 0.05
# Compiled nutpie models, reused across fits whose shapes and priors agree.
_COMPILED = OrderedDict()
_COMPILED_MAX = 8
# nutpie runs the hand-written log density of bayes_gmm._kernel (True) or
# compiles the model's PyTensor graph (False; kept for the benchmark).
_NUTPIE_KERNEL = True
# Variational fits start at the Laplace approximation's scale (_vi_inference).
_VI_LAPLACE_START = True


def _version():
    from bayes_gmm import __version__

    return __version__


def _has(module):
    return importlib.util.find_spec(module) is not None


class GaussianMixtureBayes(DensityMixin, BaseEstimator):
    """Bayesian Gaussian mixture: PyMC model fitted by NUTS or ADVI.

    The model (see :func:`bayes_gmm.build_model` for the priors and their
    formulas) has Dirichlet weights, Normal means and LKJ-Cholesky (``full``,
    ``tied``) or HalfNormal-scale (``diag``, ``spherical``) covariances,
    scaled to the data; the assignments are marginalised out. Chains start
    at an EM fit (jittered), and draws are relabelled to undo label
    switching, so R-hat and summaries are meaningful.

    Parameters
    ----------
    n_components : int, default=2
        Number of components.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        Covariance structure.
    priors : Priors, optional
        Prior hyper-parameters; :class:`Priors` defaults if None.
    method : {"nuts", "advi", "fullrank_advi"}, default="nuts"
        Inference: MCMC with NUTS, or mean-field / full-rank ADVI.
    draws : int, default=1000
        Posterior draws per chain (for ADVI: draws from the approximation).
    tune : int, default=1000
        NUTS warm-up iterations per chain.
    chains : int, default=4
        NUTS chains.
    target_accept : float, default=0.9
        NUTS target acceptance rate.
    sampler : {"nutpie", "pymc", "numpyro", "blackjax"}, default="nutpie"
        NUTS implementation. ``nutpie`` (the default) samples the model's
        log density and gradient as written by hand in numba
        (:mod:`bayes_gmm._kernel`, equal to PyMC's for this model), compiled
        once when the package is first used and cached on disk, so a fit
        compiles nothing: on a 2-core machine a first fit takes seconds
        where compiling the model's PyTensor graph took 30-70 s. The other
        samplers compile the PyTensor graph of the model (``pymc`` caches
        its C code on disk). One that is not installed falls back to PyMC's
        own sampler, with a logged message.
    init : {"em", "prior"}, dict or list of dict, default="em"
        Chain starts. ``"em"``: the EM fit, jittered per chain
        (recommended). ``"prior"``: PyMC's default start (the prior's
        support point) jittered by ``U(-1, 1)`` in the unconstrained space.
        A dict ``{"weights": (K,), "means": (K, D), "covariances": EM shape
        of the covariance type}``: that mixture, jittered per chain. A list
        of ``chains`` such dicts: chain ``i`` starts at ``init[i]`` (jittered),
        e.g. at different label permutations to test relabelling. Starts
        always go to the sampler (``pm.sample(initvals=...)`` or nutpie's
        initial-point function), never to model-level ``initval``. Variational
        methods start at the first (unjittered) start.
    relabel : bool, default=True
        Relabel draws to undo label switching (:func:`bayes_gmm.relabel.relabel`).
    order_means : int or None, default=None
        Feature whose means are constrained to increase with the component
        index (an alternative to relabelling; distorts overlapping
        components). Off by default.
    random_state : int, Generator or None, default=None
        Seed of everything random in the fit; the same seed gives identical
        draws.
    progressbar : bool, default=True
        Show progress bars.
    max_iter : int, default=20000
        ADVI iteration cap.
    learning_rate : float or None, default=None
        ADVI step size (Adam). None: 0.001 when the approximation starts at
        the Laplace approximation around the EM fit (``init="em"`` or a
        given start near a mode; see below), 0.01 when it starts at PyMC's
        default (``init="prior"``, or a start where the Hessian is not
        negative definite). ADVI's approximation starts at the Laplace
        approximation (the inverse negative Hessian of the log density at
        the start) rather than at PyMC's unit scale, which the optimiser
        would otherwise spend most iterations shrinking. Measured (D=5, K=4,
        N=2000): PyMC's start stopped at the 20000-iteration cap 1900 nats
        above the optimum with a component's weight collapsed; the Laplace
        start converges in 2000 iterations. From there 0.01 moves too far:
        full-rank ADVI drifts to a worse optimum (a component emptied) and
        mean-field ends 17 nats worse than at 0.001.
    em_n_init : int, default=5
        Starts of the EM fit used to initialise.
    keep_partial : bool, default=False
        What an interrupt (Ctrl-C, SIGINT) during sampling or ADVI does. By
        default it stops the whole fit: ``fit`` raises ``KeyboardInterrupt``
        (nutpie, PyMC's sampler and PyMC's ADVI would otherwise swallow it
        and return a partial trace or approximation as if nothing had
        happened), and so does any caller such as
        :func:`bayes_gmm.compare_models`. With ``keep_partial=True`` the
        draws finished so far are kept instead: NUTS keeps the first draws
        that every chain completed (a ``BayesGMMWarning`` says how many;
        ``sampler="pymc"`` runs the chains one after another, and keeps
        those that have draws),
        ADVI keeps the approximation reached (marked not converged); an
        interrupt before the first draw (or the first ADVI iteration)
        still raises ``KeyboardInterrupt``.
    log_likelihood : {"auto", True, False}, default="auto"
        Whether ``result_`` stores the pointwise log-likelihood of every
        draw (group ``log_likelihood``, chains x draws x observations
        doubles: 16 GB for the default 4000 draws at N = 500,000). With
        ``"auto"`` it is stored up to 2**25 values (256 MB; N = 8,388 at
        the default draws) and above that computed on demand, a block of
        observations at a time, by ``result_.loo()``, ``.waic()`` and
        ``.log_likelihood_totals()``: the same numbers with memory bounded
        by the block (64 MB). ``result_.with_log_likelihood()`` adds the
        group for ArviZ's own functions. ``True`` always stores it,
        ``False`` never does.

    Attributes
    ----------
    result_ : MixtureResult
        The draws and everything derived from them.
    em_ : GaussianMixtureEM
        The EM fit used to start.
    model_ : pymc.Model
        The model. Not pickled: an unpickled estimator rebuilds it from
        ``result_`` when first asked for it (predictions never need it).
    sampler_used_ : str
        The NUTS implementation that ran (after any fallback); NUTS only.
    approx_ : pymc.variational.Approximation
        The fitted approximation; variational methods only. Not pickled:
        rebuilt on first access from the mean and covariance stored in
        ``result_`` (group ``fit_stats``).
    weights_, means_, covariances_ : ndarray
        Posterior means, in the shapes of :class:`GaussianMixtureEM`.
    n_features_in_ : int
        Number of features.
    feature_names_in_ : ndarray
        Feature names, when fitted on a DataFrame with string columns.

    Examples
    --------
    >>> from bayes_gmm import GaussianMixtureBayes, make_mixture
    >>> X, _, _ = make_mixture(60, 2, 1, random_state=0)
    >>> gm = GaussianMixtureBayes(2, method="advi", draws=50, max_iter=500,
    ...                           progressbar=False, random_state=0).fit(X)
    >>> gm.predict_proba(X).shape
    (60, 2)
    """

    def __init__(
        self,
        n_components=2,
        *,
        covariance_type="full",
        priors=None,
        method="nuts",
        draws=1000,
        tune=1000,
        chains=4,
        target_accept=0.9,
        sampler="nutpie",
        init="em",
        relabel=True,
        order_means=None,
        random_state=None,
        progressbar=True,
        max_iter=20000,
        learning_rate=None,
        em_n_init=5,
        keep_partial=False,
        log_likelihood="auto",
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.priors = priors
        self.method = method
        self.draws = draws
        self.tune = tune
        self.chains = chains
        self.target_accept = target_accept
        self.sampler = sampler
        self.init = init
        self.relabel = relabel
        self.order_means = order_means
        self.random_state = random_state
        self.progressbar = progressbar
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.em_n_init = em_n_init
        self.keep_partial = keep_partial
        self.log_likelihood = log_likelihood

    # ------------------------------------------------------------------ checks
    def _check_parameters(self, n_samples):
        get_covariance_type(self.covariance_type)
        check_choice("method", self.method, METHODS)
        check_choice("sampler", self.sampler, SAMPLERS)
        if isinstance(self.init, str):
            check_choice("init", self.init, ("em", "prior"))
        elif not isinstance(self.init, (dict, list, tuple)):
            raise TypeError(
                "'init' must be 'em', 'prior', a dict of mixture parameters or a "
                f"list of such dicts (one per chain), got {type(self.init).__name__}."
            )
        check_n_components(self.n_components, n_samples)
        check_scalar("draws", self.draws, int, min_value=1)
        check_scalar("chains", self.chains, int, min_value=1)
        tune = check_scalar("tune", self.tune, int, min_value=0)
        if self.method == "nuts" and tune < 1:
            # nutpie panics (a Rust PanicException) on tune=0, and NUTS
            # without warm-up has no adapted step size or mass matrix
            raise ValueError(
                f"'tune' must be >= 1 for method='nuts', got {tune}: NUTS needs "
                "warm-up iterations to adapt its step size and mass matrix "
                "(the default is 1000)."
            )
        if not isinstance(self.keep_partial, (bool, np.bool_)):
            raise TypeError(
                f"'keep_partial' must be True or False, got {self.keep_partial!r}."
            )
        if not (
            isinstance(self.log_likelihood, (bool, np.bool_))
            or self.log_likelihood == "auto"
        ):
            raise ValueError(
                "'log_likelihood' must be 'auto', True or False, got "
                f"{self.log_likelihood!r}."
            )
        check_scalar("max_iter", self.max_iter, int, min_value=1)
        check_scalar("em_n_init", self.em_n_init, int, min_value=1)
        if self.order_means is not None:
            check_scalar("order_means", self.order_means, int, min_value=0)
        if self.learning_rate is not None:
            check_scalar(
                "learning_rate",
                self.learning_rate,
                float,
                min_value=0.0,
                include_min=False,
            )
        ta = check_scalar(
            "target_accept", self.target_accept, float, min_value=0.0, include_min=False
        )
        if ta >= 1:
            raise ValueError(f"'target_accept' must be in (0, 1), got {ta}.")
        priors = Priors() if self.priors is None else self.priors
        if not isinstance(priors, Priors):
            raise TypeError(f"'priors' must be a Priors instance, got {type(priors)}.")
        return priors

    # --------------------------------------------------------------------- fit
    def fit(self, X, y=None):
        """Fit by EM, then NUTS or ADVI from the EM solution.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data; a DataFrame's column names become feature coordinates.
        y : None
            Ignored.

        Returns
        -------
        self : GaussianMixtureBayes
        """
        X = check_data(self, X, reset=True, min_samples=2)
        n, d = X.shape
        priors = self._check_parameters(n)
        names = getattr(self, "feature_names_in_", None)
        _check_not_constant(X, names)
        _check_not_collinear(X, names, self.covariance_type)
        rng = check_random_state(self.random_state)
        em_seed, inference_seed, jitter_seed = (seed_from(rng) for _ in range(3))
        k = int(self.n_components)
        em = GaussianMixtureEM(
            k,
            covariance_type=self.covariance_type,
            n_init=self.em_n_init,
            random_state=em_seed,
        ).fit(X)
        model = build_model(
            X,
            k,
            covariance_type=self.covariance_type,
            priors=priors,
            order_means=self.order_means,
            feature_names=names,
        )
        starts = self._starts(model, em, d)
        t0 = time.perf_counter()
        with _interrupt_guard(bool(self.keep_partial)) as interrupt:
            if self.method == "nuts":
                posterior, stats_group, extra = self._run_nuts(
                    model, starts, inference_seed, jitter_seed, interrupt
                )
            else:
                posterior, stats_group, extra = self._run_vi(
                    model,
                    None if starts is None else starts[0],
                    inference_seed,
                    interrupt,
                )
        if interrupt.interrupted and not self.keep_partial:
            # a library swallowed even the guard's exception
            raise KeyboardInterrupt("bayes_gmm: the fit was interrupted")
        if self.method == "nuts" and interrupt.interrupted:
            posterior, stats_group, extra = _keep_complete_draws(
                posterior, stats_group, extra, self.draws, self.chains
            )
        elapsed = time.perf_counter() - t0
        dt = self._assemble(X, model, posterior, stats_group, priors, extra, elapsed)
        result = MixtureResult(dt)
        if self.relabel and self.order_means is None:
            result = _relabel_result(result, em)
        self.result_ = result
        self.em_ = em
        self.model_ = model
        self._set_point_estimates()
        return self

    def _starts(self, model, em, n_features):
        """Per-chain starting points (constrained space), or None for "prior"."""
        if isinstance(self.init, str):
            if self.init == "prior":
                return None
            point = initial_point(model, em.weights_, em.means_, em.covariances_)
            return [point] * self.chains
        inits = [self.init] if isinstance(self.init, dict) else list(self.init)
        if not isinstance(self.init, dict) and len(inits) != self.chains:
            raise ValueError(
                f"'init' is a list of {len(inits)} starts but chains={self.chains}: "
                "give one start per chain (or a single dict for all chains)."
            )
        single = isinstance(self.init, dict)
        points = [
            _init_point(
                model, start, None if single else i, self.n_components, n_features
            )
            for i, start in enumerate(inits)
        ]
        return points * self.chains if single else points

    def _set_point_estimates(self):
        mean = self.result_.posterior_mean()
        self.weights_ = mean["weights"].values
        self.means_ = mean["means"].values
        self.covariances_ = mean["covariances"].values

    # ------------------------------------------------------------ inference
    def _resolve_sampler(self):
        """The sampler to run; a missing one falls back to PyMC's, with a warning."""
        wanted = self.sampler
        needs = {"nutpie": "nutpie", "numpyro": "numpyro", "blackjax": "blackjax"}
        why = None
        if wanted in needs and not _has(needs[wanted]):
            why = f"{needs[wanted]} is not installed (install it to use it)"
        elif wanted in ("numpyro", "blackjax") and not _has("jax"):
            why = "it needs jax, which is not installed (install jax to use it)"
        if why is None:
            return wanted
        message = (
            f"sampler={wanted!r} is not available: {why}. Sampling with "
            "sampler='pymc' (PyMC's own NUTS) instead, which compiles the "
            "model's PyTensor graph first (tens of seconds)."
        )
        logger.warning(message)
        warn(message, BayesGMMWarning, stacklevel=4)
        return "pymc"

    def _run_nuts(self, model, starts, seed, jitter_seed, interrupt=None):
        import pymc as pm

        sampler = self._resolve_sampler()
        self.sampler_used_ = sampler
        if sampler == "nutpie":
            return _sample_nutpie(self, model, starts, seed, jitter_seed)
        rng = np.random.default_rng(jitter_seed)
        initvals = None
        init = "jitter+adapt_diag"
        if starts is not None:
            initvals = [_jittered(start, rng) for start in starts]
            init = "adapt_diag"
            if sampler != "pymc":
                initvals = initvals[0]
        callback = None
        if sampler == "pymc" and interrupt is not None:
            # PyMC samples the chains one after another and each chain
            # swallows the KeyboardInterrupt (keep_partial) that stops it:
            # stop the chains after it as well.
            def callback(trace, draw):
                if interrupt.interrupted:
                    raise KeyboardInterrupt

        with model, _no_draw_is_an_interrupt(interrupt):
            t0 = time.perf_counter()
            dt = pm.sample(
                draws=self.draws,
                tune=self.tune,
                chains=self.chains,
                cores=1,
                random_seed=seed,
                target_accept=self.target_accept,
                nuts_sampler=sampler,
                initvals=initvals,
                init=init,
                progressbar=self.progressbar,
                var_names=list(_PARAMS),
                compute_convergence_checks=False,
                **({} if callback is None else {"callback": callback}),
            )
        stats = dt["sample_stats"].to_dataset()
        return (
            dt["posterior"].to_dataset()[list(_PARAMS)],
            ("sample_stats", stats),
            {"sampler": sampler, "sampling_seconds": time.perf_counter() - t0},
        )

    def _run_vi(self, model, start, seed, interrupt=None):
        import pymc as pm

        method = self.method
        t0 = time.perf_counter()
        with model:
            callback = LossConvergence()
            inference, laplace = _vi_inference(model, method, start, seed)
            learning_rate = self.learning_rate
            if learning_rate is None:
                learning_rate = 0.001 if laplace else 0.01
            learning_rate = float(learning_rate)
            approx = inference.fit(
                n=self.max_iter,
                progressbar=self.progressbar,
                callbacks=[callback],
                obj_optimizer=pm.variational.adam(learning_rate=learning_rate),
            )
        fit_seconds = time.perf_counter() - t0
        hist = np.asarray(approx.hist, dtype=float)
        interrupted = interrupt is not None and interrupt.interrupted
        converged = (
            callback.converged and bool(np.all(np.isfinite(hist))) and not interrupted
        )
        if interrupted:  # keep_partial; otherwise the guard has raised
            if hist.size == 0:
                raise KeyboardInterrupt(
                    f"bayes_gmm: {method} was interrupted before its first iteration"
                )
            warn(
                f"{method} was interrupted after {hist.size} of at most "
                f"{self.max_iter} iterations: kept the approximation reached "
                "(keep_partial=True; not converged).",
                BayesGMMWarning,
            )
        elif not converged:
            warn(
                f"{method} did not converge within max_iter={self.max_iter} "
                "iterations (the mean loss was still falling between windows of "
                f"{callback.window} iterations). "
                "Increase max_iter, lower learning_rate, or use method='nuts'.",
                ConvergenceWarning,
            )
        self.approx_ = approx
        t1 = time.perf_counter()
        posterior, q = _draw_approximation(
            model, approx, self.draws, np.random.default_rng(seed)
        )
        fit_stats = xr.Dataset(
            {
                "loss": ("iteration", hist),
                "log_p": (("chain", "draw"), q["log_p"][None, :]),
                "log_q": (("chain", "draw"), q["log_q"][None, :]),
                "q_mean": ("q_param", q["mean"]),
                "q_cov": (("q_param", "q_param_bis"), q["cov"]),
            },
            coords={
                "chain": [0],
                "draw": np.arange(self.draws),
                "iteration": np.arange(len(hist)),
                "q_param": q["labels"],
                "q_param_bis": q["labels"],
            },
            attrs={
                "converged": int(converged),
                "n_iter": int(len(hist)),
                "learning_rate": float(learning_rate),
                "laplace_start": int(laplace),
                "max_iter": int(self.max_iter),
                "interrupted": int(interrupted),
                "description": (
                    "loss: negative ELBO per iteration; q_mean, q_cov: the "
                    "Gaussian approximation in the unconstrained space of the "
                    "model's free variables (q_param labels them); log_p: joint "
                    "log density and log_q: approximation log density of each "
                    "draw, both in that space (Jacobians included)"
                ),
            },
        )
        extra = {
            "fit_seconds": fit_seconds,
            "draw_seconds": time.perf_counter() - t1,
            "learning_rate": float(learning_rate),
        }
        return posterior, ("fit_stats", fit_stats), extra

    def _assemble(self, X, model, posterior, stats_group, priors, extra, elapsed):
        info = model.bayes_gmm_info
        ct = get_covariance_type(info["covariance_type"])
        features = list(model.coords["feature"])
        posterior = posterior[list(_PARAMS)]
        posterior = posterior.assign_coords(
            component=np.arange(info["n_components"]),
            feature=features,
            **({"feature_bis": features} if "feature_bis" in ct.dims else {}),
        )
        c, dr = posterior.sizes["chain"], posterior.sizes["draw"]
        store = self.log_likelihood
        if store == "auto":
            store = c * dr * X.shape[0] <= _STORED_LOG_LIKELIHOOD
        log_lik = None
        if store:
            tmp = xr.DataTree.from_dict({"posterior": posterior})
            tmp.attrs.update(covariance_type=ct.name, n_components=info["n_components"])
            ll = MixtureResult(tmp).log_likelihood_draws(X)
            log_lik = _log_likelihood_dataset(posterior, ll.reshape(c, dr, -1))
        observed = xr.Dataset(
            {"x": (("obs", "feature"), X)},
            coords={"obs": np.arange(X.shape[0]), "feature": features},
        )
        group, stats = stats_group
        attrs = {
            "bayes_gmm_version": _version(),
            "covariance_type": ct.name,
            "n_components": int(info["n_components"]),
            "method": self.method,
            "priors": priors.to_json(),
            "random_state": json.dumps(
                self.random_state if isinstance(self.random_state, int) else None
            ),
            "estimator_params": json.dumps(_json_params(self)),
            "order_means": json.dumps(self.order_means),
            "feature_names_in": json.dumps(
                None
                if getattr(self, "feature_names_in_", None) is None
                else [str(f) for f in self.feature_names_in_]
            ),
            "elapsed_seconds": float(elapsed),
            "inference": json.dumps(extra),
            "log_likelihood": "stored" if store else "on_demand",
        }
        tree = {
            "posterior": posterior,
            **({"log_likelihood": log_lik} if store else {}),
            "observed_data": observed,
            group: _netcdf_safe(stats),
        }
        dt = xr.DataTree.from_dict(tree)
        dt.attrs.update(attrs)
        return dt

    # ------------------------------------------------------------- pickling
    # The PyMC model and the variational approximation hold compiled
    # functions and closures that do not pickle; everything that predicts
    # lives in result_ (a DataTree). They are dropped from the pickled state
    # and rebuilt from result_ on first access (__getattr__).
    _REBUILT = ("model_", "approx_")

    def __getstate__(self):
        state = super().__getstate__()
        for name in self._REBUILT:
            state.pop(name, None)
        return state

    def __getattr__(self, name):
        # only called for attributes that are missing
        if name in GaussianMixtureBayes._REBUILT and "result_" in self.__dict__:
            value = self._rebuild(name)
            if value is not None:
                self.__dict__[name] = value
                return value
        raise AttributeError(
            f"{type(self).__name__!r} object has no attribute {name!r}"
        )

    def _rebuild(self, name):
        """The PyMC model (or the approximation) of a fit, rebuilt from result_."""
        result = self.__dict__["result_"]
        if name == "approx_":
            if "fit_stats" not in result.datatree.children:
                return None  # not a variational fit
            return _approximation_from_stats(
                self.model_, result.method, result.datatree["fit_stats"].to_dataset()
            )
        if "observed_data" not in result.datatree.children:
            return None
        X = result.datatree["observed_data"].to_dataset()["x"].values
        priors = Priors.from_dict(result.attrs["priors"])
        order = json.loads(result.attrs.get("order_means", "null"))
        return build_model(
            X,
            result.n_components,
            covariance_type=result.covariance_type,
            priors=priors,
            order_means=order,
            feature_names=getattr(self, "feature_names_in_", None),
        )

    # -------------------------------------------------------------- rebuild
    @classmethod
    def from_result(cls, result):
        """Rebuild a fitted estimator from a saved result (no refitting).

        Parameters
        ----------
        result : MixtureResult or str or path-like
            A result, or the path of one saved with ``to_netcdf``.

        Returns
        -------
        GaussianMixtureBayes
            Predicts exactly as the estimator that produced the result.
        """
        if not isinstance(result, MixtureResult):
            result = MixtureResult.from_netcdf(result)
        params = json.loads(result.attrs.get("estimator_params", "{}"))
        if "priors" in params and params["priors"] is not None:
            params["priors"] = Priors.from_dict(params["priors"])
        est = cls(**params)
        est.result_ = result
        features = result.posterior["feature"].values
        est.n_features_in_ = len(features)
        names = json.loads(result.attrs.get("feature_names_in", "null"))
        if names is not None:
            est.feature_names_in_ = np.asarray(names, dtype=object)
        est._set_point_estimates()
        return est

    # ----------------------------------------------------------------- predict
    def _validated(self, X):
        check_is_fitted(self, "result_")
        return check_data(self, X, reset=False)

    def predict_proba(self, X, return_std=False):
        """Posterior mean of the responsibilities (and their posterior sd).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.
        return_std : bool, default=False
            Also return the posterior standard deviation of each
            responsibility (how unsure the assignment itself is).

        Returns
        -------
        proba : ndarray of shape (n_samples, n_components)
        std : ndarray of shape (n_samples, n_components)
            Only with ``return_std``.
        """
        X = self._validated(X)
        return self.result_.responsibilities(X, return_std=return_std)

    def predict(self, X):
        """Component with the highest posterior mean responsibility.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return self.predict_proba(X).argmax(axis=1)

    def score_samples(self, X):
        """Log posterior predictive density of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.

        Returns
        -------
        ndarray of shape (n_samples,)
            ``log mean_s p(x_n | theta_s)``.
        """
        X = self._validated(X)
        return self.result_.log_predictive_density(X)

    def score(self, X, y=None):
        """Mean log posterior predictive density per sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.
        y : None
            Ignored.

        Returns
        -------
        float
        """
        return float(self.score_samples(X).mean())

    def sample(self, n_samples=1):
        """Draw from the posterior predictive distribution.

        Each point comes from a random posterior draw; labels are shuffled.

        Parameters
        ----------
        n_samples : int, default=1
            Number of points.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        labels : ndarray of shape (n_samples,)
        """
        check_is_fitted(self, "result_")
        n_samples = check_scalar("n_samples", n_samples, int, min_value=1)
        return self.result_.sample(n_samples, check_random_state(self.random_state))

    def sample_prior_predictive(self, X, draws=500):
        """Draws of the prior predictive distribution for data shaped like X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data that set the scale of the priors.
        draws : int, default=500
            Number of prior draws.

        Returns
        -------
        xarray.DataTree
            PyMC's ``prior`` and ``prior_predictive`` groups.
        """
        import pymc as pm

        probe = clone(self)  # validating X must not reset a fitted estimator
        X = check_data(probe, X, reset=True, min_samples=2)
        priors = self._check_parameters(X.shape[0])
        model = build_model(
            X,
            self.n_components,
            covariance_type=self.covariance_type,
            priors=priors,
            order_means=self.order_means,
            feature_names=getattr(probe, "feature_names_in_", None),
        )
        draws = check_scalar("draws", draws, int, min_value=1)
        seed = seed_from(check_random_state(self.random_state))
        with model:
            # Python linker: a forward-sampling graph this small is not worth
            # a numba or C compile (tens of seconds on a busy machine).
            return pm.sample_prior_predictive(
                draws=draws, random_seed=seed, compile_kwargs={"mode": "FAST_COMPILE"}
            )


# ------------------------------------------------------------------ helpers
def _vi_inference(model, method, start, seed):
    """PyMC's ADVI / FullRankADVI at ``start``, scaled by a Laplace approximation.

    PyMC starts the approximation's standard deviations at ``log 2`` in
    every unconstrained coordinate, while the posterior's are often ~0.01
    (a few thousand points): the optimiser then spends most iterations
    shrinking them. Here the approximation starts at the Laplace
    approximation at the start (inverse negative Hessian of the log density,
    by central differences of the exact gradient of
    :mod:`bayes_gmm._kernel`): its standard deviations (mean-field) or its
    Cholesky factor (full-rank). Where the Hessian is not negative definite
    (a start far from a mode), PyMC's default.

    Returns
    -------
    inference : pymc.ADVI or pymc.FullRankADVI
    laplace : bool
        Whether the Laplace start was applied.
    """
    import pymc as pm

    from bayes_gmm._kernel import laplace_covariance, model_user_data

    cls = pm.ADVI if method == "advi" else pm.FullRankADVI
    inference = cls(start=start, random_seed=seed)
    if start is None or not _VI_LAPLACE_START:
        return inference, False
    cov = laplace_covariance(model_user_data(model), _flat_transformed(model, start))
    if cov is None:
        return inference, False
    group = inference.approx.groups[0]
    # our flat layout (free variables in model order) -> the approximation's
    sizes = {name: int(np.prod(shape)) for name, _, shape, _ in group.ordering.values()}
    pos, ours = 0, {}
    for rv in model.free_RVs:
        name = model.rvs_to_values[rv].name
        ours[name] = np.arange(pos, pos + sizes[name])
        pos += sizes[name]
    order = np.empty(pos, dtype=int)
    for name, slc, _, _ in group.ordering.values():
        order[slc] = ours[name]
    cov = cov[np.ix_(order, order)]
    if method == "advi":
        sd = np.sqrt(np.diag(cov))
        group.params_dict["rho"].set_value(np.log(np.expm1(sd)))
    else:
        chol = np.linalg.cholesky(cov)
        # PyMC's factor has its diagonal through softplus (rho2sigma)
        idx = np.arange(pos)
        chol[idx, idx] = np.log(np.expm1(chol[idx, idx]))
        group.params_dict["L_tril"].set_value(chol[np.tril_indices(pos)])
    return inference, True


def _approximation_from_stats(model, method, stats):
    """PyMC's approximation with the fitted parameters stored in ``fit_stats``.

    ``q_mean`` and ``q_cov`` are in the approximation's own flat order (its
    ``ordering``, which ``q_param`` labels); mean-field ADVI stores its
    standard deviations as ``softplus(rho)``, full-rank ADVI its Cholesky
    factor with a softplus diagonal (``L_tril``).
    """
    import pymc as pm

    cls = pm.ADVI if method == "advi" else pm.FullRankADVI
    with model:
        approx = cls().approx
    group = approx.groups[0]
    mean = np.asarray(stats["q_mean"].values, dtype=float)
    cov = np.asarray(stats["q_cov"].values, dtype=float)
    group.params_dict["mu"].set_value(mean)
    if method == "advi":
        group.params_dict["rho"].set_value(np.log(np.expm1(np.sqrt(np.diag(cov)))))
    else:
        chol = np.linalg.cholesky(cov)
        idx = np.arange(mean.size)
        chol[idx, idx] = np.log(np.expm1(chol[idx, idx]))
        group.params_dict["L_tril"].set_value(chol[np.tril_indices(mean.size)])
    hist = stats["loss"].values if "loss" in stats else np.empty(0)
    approx.hist = np.asarray(hist, dtype=float)
    return approx


class LossConvergence:
    """Stop variational fitting once the loss has settled (a ``pm.fit`` callback).

    Every ``window`` iterations the mean loss of the last window is compared
    with the window before; the fit has converged when the change is below
    ``rel_tol`` times the loss plus twice the Monte Carlo standard error of
    the difference (the loss of ADVI is noisy, so a change within its noise
    is no evidence of further progress).

    Parameters
    ----------
    window : int, default=1000
        Iterations per window.
    rel_tol : float, default=1e-4
        Relative tolerance on the mean loss.

    Notes
    -----
    For a loss that still decays like ``exp(-t / tau)``, the fit stops when
    the excess left is about ``threshold * tau / window``: a short window
    or a loose tolerance stops far from the optimum. The defaults were set
    on Old Faithful (K=2, full): ``window=500, rel_tol=1e-3`` stopped at
    6000 iterations with the loss 4.4 nats above its optimum and the
    posterior sds up to 50% too large; the defaults stop at 10000
    iterations within 0.1 nats of a 20000-iteration run.
    """

    def __init__(self, window=1000, rel_tol=1e-4):
        self.window = window
        self.rel_tol = rel_tol
        self.converged = False

    def __call__(self, approx, loss, i):
        w = self.window
        if loss is None or i % w or i < 2 * w:
            return
        a = np.asarray(loss[i - 2 * w : i - w], dtype=float)
        b = np.asarray(loss[i - w : i], dtype=float)
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            return
        change = abs(b.mean() - a.mean())
        se = np.sqrt(a.var(ddof=1) / w + b.var(ddof=1) / w)
        if change < self.rel_tol * abs(b.mean()) + 2 * se:
            self.converged = True
            raise StopIteration(f"loss converged at iteration {i}")


def _json_safe(value):
    """Arrays (e.g. in user-given starts) as nested lists, for JSON attrs."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _json_params(est):
    params = est.get_params()
    if isinstance(params.get("priors"), Priors):
        params["priors"] = params["priors"].to_dict()
    params["init"] = _json_safe(params.get("init"))
    if not isinstance(params.get("random_state"), (int, type(None))):
        params["random_state"] = None
    return params


def _netcdf_safe(ds):
    """Drop object-dtype variables (e.g. divergence messages) netCDF can't store."""
    keep = [v for v in ds.data_vars if ds[v].dtype != object]
    out = ds[keep]
    out.attrs = {
        k: v
        for k, v in ds.attrs.items()
        if isinstance(v, (int, float, str, np.integer, np.floating))
    }
    return out


def _jittered(point, rng):
    """Start point with small multiplicative/additive noise (constrained space)."""
    out = {}
    for name, value in point.items():
        value = np.asarray(value, dtype=float)
        if name == "weights":
            v = value * np.exp(rng.normal(0, _JITTER_SD, value.shape))
            out[name] = v / v.sum()
        elif name.startswith(("sd", "chol_cov")) and name != "means_z":
            out[name] = (
                value * np.exp(rng.normal(0, _JITTER_SD, value.shape))
                if (name.startswith("sd"))
                else value
                + rng.normal(0, _JITTER_SD, value.shape) * (np.abs(value) > 0)
            )
        elif name == "means_z_ordered":
            out[name] = np.sort(value + rng.normal(0, _JITTER_SD, value.shape))
        else:
            out[name] = value + rng.normal(0, _JITTER_SD, value.shape)
    return out


def nutpie_initial_point_func(model, starts, jitter_seed, chain_seeds=None):
    """The function nutpie calls for each chain's start (flat, unconstrained).

    nutpie calls it once per chain, with a seed drawn from that chain's own
    random stream (a function of the sampler's seed and the chain), from its
    worker threads: with ``cores > 1`` the calls come in an order that
    depends on thread timing. ``chain_seeds`` (from :func:`_chain_seeds`)
    lists the seed of each chain, so chain ``i`` gets ``starts[i]`` (cycling
    if there are fewer starts than chains) whatever the order; without it
    the ``i``-th distinct seed seen gets ``starts[i]``. The jitter is a
    function of ``(jitter_seed, seed)``: the same ``random_state`` gives the
    same starts.

    Parameters
    ----------
    model : pymc.Model
        The model (its free variables define the flat layout).
    starts : list of dict or None
        Per-chain starting points in constrained space (from
        :func:`bayes_gmm.model.initial_point`), jittered by
        ``N(0, 0.05^2)`` in the unconstrained space; or None for PyMC's
        support point jittered by ``U(-1, 1)`` (as ``init="jitter+..."``;
        nutpie rejects a start whose gradient has an exact zero, which the
        symmetric support point of a mixture has).
    jitter_seed : int
        Seed of the jitter.
    chain_seeds : sequence of int, optional
        The seed nutpie gives each chain, in chain order.

    Returns
    -------
    callable
        ``seed -> ndarray`` of the model's flat unconstrained size.
    """
    if starts is None:
        bases = [_flat_transformed(model, {})]

        def noise(rng, shape):
            return rng.uniform(-1.0, 1.0, shape)

    else:
        bases = [_flat_transformed(model, start) for start in starts]

        def noise(rng, shape):
            return rng.normal(0.0, _JITTER_SD, shape)

    order = {int(seed): i for i, seed in enumerate(chain_seeds or ())}
    lock = threading.Lock()

    def initial_point_func(seed):
        seed = int(seed or 0)
        with lock:
            i = order.setdefault(seed, len(order))
        base = bases[i % len(bases)]
        return base + noise(np.random.default_rng([jitter_seed, seed]), base.shape)

    return initial_point_func


def _init_point(model, start, index, k, d):
    """Validate one user-given start and turn it into model values."""
    where = "'init'" if index is None else f"'init[{index}]'"
    if not isinstance(start, dict):
        raise TypeError(
            f"{where} must be a dict with keys 'weights', 'means', 'covariances', "
            f"got {type(start).__name__}."
        )
    missing = sorted({"weights", "means", "covariances"} - set(start))
    unknown = sorted(set(start) - {"weights", "means", "covariances"})
    if missing or unknown:
        raise ValueError(
            f"{where} must have exactly the keys ['covariances', 'means', 'weights']; "
            f"missing {missing}, unknown {unknown}."
        )
    ct = get_covariance_type(model.bayes_gmm_info["covariance_type"])
    shapes = {
        "weights": (k,),
        "means": (k, d),
        "covariances": tuple(ct.shape(k, d)),
    }
    values = {}
    for name, shape in shapes.items():
        value = np.asarray(start[name], dtype=float)
        if value.shape != shape:
            raise ValueError(
                f"{where}['{name}'] must have shape {shape} for K={k}, D={d}, "
                f"covariance_type={ct.name!r}; got {value.shape}."
            )
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{where}['{name}'] contains NaN or infinity.")
        values[name] = value
    if np.any(values["weights"] < 0) or values["weights"].sum() <= 0:
        raise ValueError(
            f"{where}['weights'] must be non-negative with a positive sum."
        )
    return initial_point(
        model, values["weights"], values["means"], values["covariances"]
    )


def _check_not_constant(X, names=None):
    """A constant feature makes the posterior improper: say so instead of sampling."""
    constant = np.flatnonzero(np.ptp(X, axis=0) == 0)
    if constant.size:
        cols = [str(names[j]) if names is not None else str(j) for j in constant]
        raise ValueError(
            f"Feature(s) {cols} are constant (every sample has the same value). "
            "A Gaussian component then has no spread along them and the posterior "
            "of its variance is improper. Drop those columns before fitting."
        )


# Standardised data whose smallest singular value is below this share of
# the largest (correlation matrix condition number above 1e10) hold a
# near-exact linear relation between columns. Measured (two separated
# components, one column added as x_0 + eps * noise, 2 x 200 draws): at a
# share of 1e-5 and below 20-50% of the NUTS transitions diverged; at 1e-4
# none did.
_COLLINEAR_RATIO = 1e-5


def _check_not_collinear(X, names, covariance_type):
    """Near-collinear columns make full / tied covariances nearly singular: say so.

    Raised before sampling, naming the columns of the relation and the
    remedies the estimator offers (drop or combine columns, or a diagonal
    covariance, under which collinear columns are harmless).
    """
    if covariance_type not in ("full", "tied") or X.shape[1] < 2:
        return
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    _, sv, vt = np.linalg.svd(Z, full_matrices=False)
    ratio = sv / sv[0]
    bad = np.flatnonzero(ratio < _COLLINEAR_RATIO)
    if bad.size == 0:
        return
    loading = np.abs(vt[bad]).max(axis=0)  # columns in any near-null direction
    cols = np.flatnonzero(loading >= 0.1 * loading.max())
    label = [str(names[j]) if names is not None else str(j) for j in cols]
    v = vt[bad[-1]]
    terms = " ".join(
        f"{'+' if v[j] >= 0 else '-'} {abs(v[j]):.2f} z[{lab}]"
        for j, lab in zip(cols, label, strict=True)
    ).lstrip("+ ")
    raise ValueError(
        f"Features {label} are (nearly) collinear: in standardised units "
        f"(z = (x - mean) / sd) the combination {terms} is constant up to "
        f"{ratio[bad[-1]]:.2g} of the data's largest spread (ok: >= "
        f"{_COLLINEAR_RATIO:g}). A full or tied covariance is then nearly "
        "singular and NUTS or ADVI cannot explore it (most transitions "
        "diverge). Remedies: drop one of these columns, or replace them by "
        "a combination (e.g. their mean, or principal components); or use "
        "covariance_type='diag' or 'spherical', which do not model the "
        "correlation."
    )


def _flat_transformed(model, point):
    """The start point in nutpie's flat unconstrained layout.

    A point that gives every free variable is transformed in numpy (PyMC's
    forward transforms of this model's variables, by the suffix of their
    value variables), which saves compiling a PyTensor function per start;
    otherwise (PyMC's support point fills the gaps) PyMC does it.
    """
    parts = []
    for rv in model.free_RVs:
        name = model.rvs_to_values[rv].name
        if rv.name not in point:
            return _flat_transformed_pymc(model, point)
        value = np.asarray(point[rv.name], dtype=np.float64)
        if name.endswith("_simplex__"):
            log_w = np.log(value)
            part = (log_w - log_w.mean(axis=-1, keepdims=True))[..., :-1]
        elif name.endswith("_log__"):
            part = np.log(value)
        elif name.endswith("_ordered__"):
            part = np.concatenate([value[..., :1], np.log(np.diff(value, axis=-1))], -1)
        elif name.endswith("_cholesky-cov-packed__"):
            n = int(round((np.sqrt(8 * value.shape[-1] + 1) - 1) / 2))
            diag = np.cumsum(np.arange(1, n + 1)) - 1
            part = value.copy()
            part[..., diag] = np.log(value[..., diag])
        elif name == rv.name:
            part = value
        else:
            return _flat_transformed_pymc(model, point)
        parts.append(np.ravel(part))
    return np.concatenate(parts).astype(np.float64)


def _flat_transformed_pymc(model, point):
    """:func:`_flat_transformed` by PyMC's initial-point function."""
    from pymc.initial_point import make_initial_point_fn

    fn = make_initial_point_fn(
        model=model, overrides=point, jitter_rvs=set(), return_transformed=True
    )
    values = fn(0)
    parts = [np.ravel(values[model.rvs_to_values[rv].name]) for rv in model.free_RVs]
    return np.concatenate(parts).astype(np.float64)


def _compile_key(model):
    info = model.bayes_gmm_info
    return (
        info["covariance_type"],
        info["n_components"],
        model["X"].get_value().shape[1],
        info["priors"],
        info["order_means"],
    )


def _nutpie_model(model, initial_point_func):
    """Nutpie's compiled model and whether compiled work was reused.

    By default the hand-written numba callbacks of :mod:`bayes_gmm._kernel`
    (compiled once per installation, so a fit in a new process compiles
    nothing); with ``_NUTPIE_KERNEL = False`` nutpie's own compilation of
    the PyTensor graph, cached in this process by shapes and priors.
    """
    if _NUTPIE_KERNEL:
        from bayes_gmm._kernel import KernelModel

        return KernelModel.build(model, initial_point_func), True
    import nutpie

    key = _compile_key(model)
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = nutpie.compile_pymc_model(
            model, var_names=list(_PARAMS), jitter_rvs=set()
        )
        _COMPILED[key] = compiled
        while len(_COMPILED) > _COMPILED_MAX:
            _COMPILED.popitem(last=False)
        reused = False
    else:
        _COMPILED.move_to_end(key)
        compiled = compiled.with_data(
            X=model["X"].get_value(),
            loc=model["loc"].get_value(),
            scale=model["scale"].get_value(),
        )
        reused = True
    compiled = dataclasses.replace(compiled, initial_point_func=initial_point_func)
    return compiled, reused


def _chain_seeds(compiled, chains, seed):
    """The seed nutpie passes to each chain's initial-point call, in chain order.

    nutpie derives a chain's seed from the sampler's seed and the chain
    alone; one draw on a single core (one worker, chains in order) reads
    them. Costs a few gradient evaluations per chain.
    """
    import nutpie

    seen = []
    point = compiled.initial_point_func

    def record(chain_seed):
        seen.append(int(chain_seed or 0))
        return point(chain_seed)

    with warnings.catch_warnings():
        # ArviZ warns that 1 draw is fewer than the chains: true, and meant
        warnings.filterwarnings("ignore", message="Found chain dimension")
        nutpie.sample(
            dataclasses.replace(compiled, initial_point_func=record),
            draws=1,
            tune=1,
            chains=chains,
            cores=1,
            seed=seed,
            progress_bar=False,
            save_warmup=False,
        )
    return seen[:chains]


def _sample_nutpie(est, model, starts, seed, jitter_seed):
    import nutpie
    from pymc.backends.arviz import patch_nutpie_idata

    t0 = time.perf_counter()
    compiled, reused = _nutpie_model(
        model, nutpie_initial_point_func(model, starts, jitter_seed)
    )
    if starts is not None and len(starts) > 1 and est.chains > 1:
        # per-chain starts: bind them to the chains, not to the call order
        seeds = _chain_seeds(compiled, est.chains, int(seed))
        compiled = dataclasses.replace(
            compiled,
            initial_point_func=nutpie_initial_point_func(
                model, starts, jitter_seed, chain_seeds=seeds
            ),
        )
    compile_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    background = nutpie.sample(
        compiled,
        draws=est.draws,
        tune=est.tune,
        chains=est.chains,
        cores=min(est.chains, 2),
        seed=int(seed),
        progress_bar=bool(est.progressbar),
        target_accept=est.target_accept,
        save_warmup=False,
        blocking=False,
    )
    # Waiting here rather than in nutpie.sample, which answers an interrupt
    # with the partial trace (NaN-padded) as if sampling had ended.
    try:
        dt = background.wait()
    except KeyboardInterrupt:
        if not est.keep_partial:
            background.cancel()
            raise
        dt = background.abort()
    except BaseException:
        background.cancel()
        raise
    sampling_seconds = time.perf_counter() - t1
    patch_nutpie_idata(dt, model, sampling_time=sampling_seconds)
    extra = {
        "sampler": "nutpie",
        "compile_seconds": compile_seconds,
        "compile_reused": reused,
        "sampling_seconds": sampling_seconds,
    }
    logger.info(
        "nutpie: compile %.1f s (reused=%s), sampling %.1f s",
        compile_seconds,
        reused,
        sampling_seconds,
    )
    return (
        dt["posterior"].to_dataset()[list(_PARAMS)],
        ("sample_stats", dt["sample_stats"].to_dataset()),
        extra,
    )


class _Interrupted(BaseException):
    """An interrupt during inference, raised by :func:`_interrupt_guard`'s handler.

    Not a ``KeyboardInterrupt``: nutpie, PyMC's sampler and PyMC's ADVI each
    catch ``KeyboardInterrupt`` and return what they have, so the interrupt
    travels through them as this and becomes a ``KeyboardInterrupt`` again
    when it leaves the guard.
    """


class _InterruptState:
    interrupted = False


@contextlib.contextmanager
def _interrupt_guard(keep_partial):
    """Make SIGINT during inference stop the fit, or record it (``keep_partial``).

    In the main thread, while Python's default SIGINT handler (or another
    Python handler) is installed, SIGINT is handled here: the state records
    it, and the previous handler runs. If that raises ``KeyboardInterrupt``
    (the default handler does), the guard raises :class:`_Interrupted`
    instead, which the libraries let through, and re-raises it as
    ``KeyboardInterrupt`` on the way out; with ``keep_partial`` it raises the
    ``KeyboardInterrupt`` itself, so the libraries stop and return their
    partial results. An ignored or default-action SIGINT (``SIG_IGN``,
    ``SIG_DFL``) and other threads are left alone.
    """
    state = _InterruptState()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):
        yield state
        return

    def handler(signum, frame):
        state.interrupted = True
        try:
            previous(signum, frame)
        except KeyboardInterrupt:
            if keep_partial:
                raise
            raise _Interrupted from None

    signal.signal(signal.SIGINT, handler)
    try:
        yield state
    except _Interrupted:
        raise KeyboardInterrupt("bayes_gmm: the fit was interrupted") from None
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _no_draw_is_an_interrupt(interrupt):
    """PyMC's "Not enough samples" after an interrupt in warm-up: an interrupt."""
    try:
        yield
    except ValueError:
        if interrupt is None or not interrupt.interrupted:
            raise
        raise KeyboardInterrupt(
            "bayes_gmm: the fit was interrupted before any draw was complete "
            "(keep_partial=True keeps only complete draws)"
        ) from None


def _keep_complete_draws(posterior, stats_group, extra, draws, chains=None):
    """After an interrupt (``keep_partial``): the draws every chain completed.

    An interrupted sampler pads unfinished chains with NaN; the leading
    draws that are finite in every chain are kept. None at all (stopped in
    warm-up) re-raises the interrupt.
    """
    finite = np.ones((posterior.sizes["chain"], posterior.sizes["draw"]), bool)
    for name in _PARAMS:
        da = posterior[name]
        other = [dim for dim in da.dims if dim not in ("chain", "draw")]
        ok = np.isfinite(da.transpose("chain", "draw", *other).values)
        # explicit trailing size: no draw at all (stopped in warm-up) has
        # size 0, which reshape(..., -1) cannot infer
        finite &= ok.reshape(*finite.shape, int(np.prod(ok.shape[2:]))).all(axis=-1)
    # leading run of finite draws per chain, then the shortest chain
    n_keep = int(np.min(np.cumprod(finite, axis=1).sum(axis=1)))
    if n_keep == 0:
        raise KeyboardInterrupt(
            "bayes_gmm: the fit was interrupted before any draw was complete "
            "(keep_partial=True keeps only complete draws)"
        )
    group, stats = stats_group
    keep = {"draw": slice(0, n_keep)}
    posterior = posterior.isel(keep)
    if "draw" in stats.dims:
        stats = stats.isel(keep)
    n_chains = posterior.sizes["chain"]
    dropped = ""
    if chains is not None and n_chains < chains:
        # PyMC's sequential sampler returns only the chains with draws
        dropped = f" in {n_chains} of {chains} chains (the others had none)"
    warn(
        f"Sampling was interrupted: kept the first {n_keep} of {draws} draws "
        f"per chain{dropped} (keep_partial=True). Diagnose the fit before "
        "using it.",
        BayesGMMWarning,
        stacklevel=4,
    )
    extra = {
        **extra,
        "interrupted": True,
        "draws_kept": n_keep,
        "chains_kept": int(n_chains),
    }
    return posterior, (group, stats), extra


def _draw_approximation(model, approx, draws, rng):
    """Draws of a Gaussian approximation with log p and log q per draw.

    Draws are taken in the unconstrained space where the approximation is
    Gaussian; ``log_q`` is its density there and ``log_p`` the model's joint
    log density in the same space (Jacobians included), as PSIS-LOO for
    approximate posteriors needs. The per-draw functions run on PyTensor's
    Python linker: for a few thousand draws that is faster than compiling
    them.

    Returns
    -------
    posterior : xarray.Dataset
        ``weights``, ``means``, ``covariances`` with ``chain=1``.
    q : dict
        ``log_p``, ``log_q`` (draws,), the approximation's ``mean`` and
        ``cov`` and the ``labels`` of its flat coordinates.
    """
    from pytensor.compile.mode import Mode
    from scipy.stats import norm

    mode = Mode(linker="py", optimizer="fast_compile")
    group = approx.groups[0]
    mean = np.asarray(group.mean.eval(mode=mode), dtype=float)
    # The approximation's own factor (full-rank: L with a softplus diagonal;
    # mean-field: its standard deviations): refactoring L L^T would fail
    # where the posterior scales span many orders of magnitude.
    if hasattr(group, "L"):
        chol = np.asarray(group.L.eval(mode=mode), dtype=float)
    else:
        chol = np.diag(np.asarray(group.std.eval(mode=mode), dtype=float))
    cov = chol @ chol.T
    eps = rng.standard_normal((draws, mean.size))
    flat = mean + eps @ chol.T
    # log q(x) with x = mean + L eps: log N(eps | 0, I) - log |det L|
    log_q = np.atleast_1d(
        norm.logpdf(eps).sum(axis=1) - np.sum(np.log(np.abs(np.diag(chol))))
    )
    ordering = group.ordering
    value_vars = model.value_vars
    # One function per draw: the log prior with the transforms' Jacobians and
    # the parameters in data units, as functions of the value variables (not
    # of the random variables, which would be drawn afresh). The likelihood
    # part of log p is added below from numpy (the same marginal density as
    # /log_likelihood), which is much faster than a per-draw PyTensor call.
    outputs = model.replace_rvs_by_values([model[name] for name in _PARAMS])
    fn = model.compile_fn(
        [model.logp(vars=model.free_RVs), *outputs],
        inputs=value_vars,
        point_fn=False,
        on_unused_input="ignore",
        mode=mode,
    )
    names = [v.name for v in value_vars]
    collected = {name: [] for name in _PARAMS}
    log_prior = np.empty(draws)
    labels = np.empty(mean.size, dtype=object)
    for name, slc, shape, _dtype in ordering.values():
        labels[slc] = [
            f"{name}[{','.join(map(str, idx))}]" for idx in np.ndindex(*shape)
        ] or [name]
    for i in range(draws):
        point = {}
        for name, slc, shape, _dtype in ordering.values():
            point[name] = flat[i, slc].reshape(shape)
        lp, *values = fn(*[point[n] for n in names])
        log_prior[i] = lp
        for name, value in zip(_PARAMS, values, strict=True):
            collected[name].append(value)
    info = model.bayes_gmm_info
    ct = get_covariance_type(info["covariance_type"])
    dims = {
        "weights": ("component",),
        "means": ("component", "feature"),
        "covariances": ct.dims,
    }
    posterior = xr.Dataset(
        {
            name: (("chain", "draw", *dims[name]), np.stack(collected[name])[None])
            for name in _PARAMS
        },
        coords={"chain": [0], "draw": np.arange(draws)},
    )
    tmp = xr.DataTree.from_dict({"posterior": posterior})
    tmp.attrs.update(covariance_type=ct.name, n_components=info["n_components"])
    totals = MixtureResult(tmp).log_likelihood_totals(model["X"].get_value())
    log_p = log_prior + totals.ravel()
    q = {
        "log_p": log_p,
        "log_q": log_q,
        "mean": mean,
        "cov": cov,
        "labels": labels.astype(str),
    }
    return posterior, q


def _relabel_result(result, em):
    """Relabel the posterior against the EM fit and record what was done."""
    from bayes_gmm.relabel import relabel

    dt = result.datatree.copy()
    posterior, record = relabel(result.posterior, result.covariance_type, pivot=em)
    dt["posterior"] = xr.DataTree(posterior)
    dt["relabelling"] = xr.DataTree(
        record.to_dataarray().to_dataset(name="permutation")
    )
    dt.attrs["relabelling"] = json.dumps(record.to_dict(include_permutations=False))
    return MixtureResult(dt)
