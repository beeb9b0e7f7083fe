"""MixtureResult: the fitted state of a Bayesian mixture, one xarray DataTree.

The DataTree is the single source of truth: posterior draws, pointwise
log-likelihood, observed data, sampler statistics and, in its root attrs, the
configuration (as JSON) needed to rebuild the estimator. Saving and loading is
a round trip by construction.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

from bayes_gmm._covariance import get_covariance_type, log_gaussian_prob_cholesky

__all__ = ["MixtureResult", "ResultFileError", "waic"]

_SAMPLE_DIMS = ("chain", "draw")
# Floats per block of draws x samples x components x features when scoring.
_BLOCK_FLOATS = 2**22
# Log-likelihood values (draws x observations) per block when computed on demand.
_LOGLIK_BLOCK_VALUES = 2**23


def _log_likelihood_dataset(posterior, ll):
    """The ``log_likelihood`` group: ``x(chain, draw, obs)`` from an array."""
    return xr.Dataset(
        {"x": (("chain", "draw", "obs"), ll)},
        coords={
            "chain": posterior["chain"].values,
            "draw": posterior["draw"].values,
            "obs": np.arange(ll.shape[-1]),
        },
    )


def as_mixture_result(fit, who: str) -> MixtureResult:
    """The :class:`MixtureResult` of a Bayesian fit, a result or a DataTree.

    ``who`` names the caller in the error for anything else (EM fits are
    the caller's business).
    """
    import sys

    from sklearn.utils.validation import check_is_fitted

    bayes = sys.modules.get("bayes_gmm.bayes")  # loaded if such a fit exists
    if bayes is not None and isinstance(fit, bayes.GaussianMixtureBayes):
        check_is_fitted(fit, "result_")
        fit = fit.result_
    if isinstance(fit, xr.DataTree):
        fit = MixtureResult(fit)
    if not isinstance(fit, MixtureResult):
        raise TypeError(
            f"{who} a GaussianMixtureEM, a GaussianMixtureBayes, a "
            f"MixtureResult or an xarray.DataTree; got {type(fit).__name__}."
        )
    return fit


def _logsumexp(a, axis):
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    out = np.log(np.sum(np.exp(a - top), axis=axis, keepdims=True)) + top
    return np.squeeze(out, axis=axis)


def waic(log_likelihood, *, pointwise=False, scale="log"):
    """Widely applicable information criterion from a pointwise log-likelihood.

    ArviZ 1 removed WAIC; this is Watanabe's definition as in Vehtari,
    Gelman and Gabry (2017):

    .. math::

        \\widehat{\\mathrm{elpd}}_{\\mathrm{waic}} = \\sum_n \\Big[
        \\log \\tfrac1S \\sum_s p(x_n \\mid \\theta_s)
        - \\operatorname{Var}_s \\log p(x_n \\mid \\theta_s)\\Big]

    with standard error :math:`\\sqrt{N \\operatorname{Var}_n(\\cdot)}` of
    the pointwise terms.

    Parameters
    ----------
    log_likelihood : array-like or xarray.DataArray
        Pointwise log-likelihood, draws first: shape (chain, draw, obs) or
        (draws, obs).
    pointwise : bool, default=False
        Also return the pointwise elpd and p_waic.
    scale : {"log", "deviance"}, default="log"
        ``log`` gives elpd (higher is better); ``deviance`` gives
        ``-2 elpd`` (lower is better, the scale of AIC and BIC).

    Returns
    -------
    dict
        ``elpd_waic``, ``se``, ``p_waic``, ``n_samples``, ``n_data_points``,
        ``warning`` (True if any pointwise variance of the log-likelihood
        exceeds 0.4), ``scale`` and, with ``pointwise``, the arrays
        ``elpd_waic_i`` and ``p_waic_i``.

    Examples
    --------
    >>> import numpy as np
    >>> ll = np.log(np.full((4, 100, 3), 0.5))
    >>> round(waic(ll)["elpd_waic"], 6)
    -2.079442
    """
    ll = np.asarray(getattr(log_likelihood, "values", log_likelihood), dtype=float)
    if ll.ndim < 2:
        raise ValueError(
            f"log_likelihood must have draw and observation dims, got shape {ll.shape}."
        )
    if ll.ndim > 2:
        ll = (
            ll.reshape(-1, *ll.shape[-1:])
            if ll.ndim == 3
            else ll.reshape(ll.shape[0] * ll.shape[1], -1)
        )
    s, n = ll.shape
    lppd_i = _logsumexp(ll, axis=0) - np.log(s)
    p_i = np.var(ll, axis=0, ddof=1)
    elpd_i = lppd_i - p_i
    if scale not in ("log", "deviance"):
        raise ValueError(
            f"Invalid value for 'scale': {scale!r}. Valid: ['deviance', 'log']."
        )
    factor = -2.0 if scale == "deviance" else 1.0
    out = {
        "elpd_waic": float(factor * elpd_i.sum()),
        "se": float(abs(factor) * np.sqrt(n * np.var(elpd_i))),
        "p_waic": float(p_i.sum()),
        "n_samples": int(s),
        "n_data_points": int(n),
        "warning": bool(np.any(p_i > 0.4)),
        "scale": scale,
    }
    if pointwise:
        out["elpd_waic_i"] = factor * elpd_i
        out["p_waic_i"] = p_i
    return out


class ResultFileError(ValueError):
    """A result file that cannot be loaded: damaged, or not a bayes_gmm result.

    Raised by :meth:`MixtureResult.from_netcdf`, with the path and the reason.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from bayes_gmm import MixtureResult, ResultFileError
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = pathlib.Path(tmp) / "notes.nc"
    ...     _ = path.write_text("not a netCDF file")
    ...     try:
    ...         MixtureResult.from_netcdf(path)
    ...     except ResultFileError as exc:
    ...         print("damaged file" in str(exc))
    True
    """


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _netcdf_encoding(dt):
    """Fletcher-32 checksums on every numeric variable (HDF5 checks them on read).

    A flipped bit in a saved array then fails the load ("damaged file")
    instead of loading wrong numbers.
    """
    encoding = {}
    for node in dt.subtree:
        numeric = {
            name: {"fletcher32": True}
            for name, var in node.ds.data_vars.items()
            if var.dtype.kind in "biufc" and var.ndim > 0
        }
        if numeric:
            encoding[node.path] = numeric
    return encoding


def _check_result_tree(dt, path):
    """Raise ResultFileError unless ``dt`` is a bayes_gmm result, intact."""
    attrs = dt.attrs
    missing = [
        a for a in ("covariance_type", "n_components", "method") if a not in attrs
    ]
    if "posterior" not in dt.children or missing:
        what = (
            "no 'posterior' group"
            if "posterior" not in dt.children
            else (f"no root attribute(s) {missing}")
        )
        raise ResultFileError(
            f"{path} is not a bayes_gmm result ({what}); load it with "
            "xarray.open_datatree if it is another netCDF file."
        )
    post = dt["posterior"].to_dataset()
    absent = [v for v in ("weights", "means", "covariances") if v not in post]
    if absent:
        raise ResultFileError(
            f"{path} is not a bayes_gmm result: its posterior has no {absent}."
        )
    try:
        ct = get_covariance_type(str(attrs["covariance_type"]))
        k = int(attrs["n_components"])
    except (ValueError, TypeError) as exc:
        raise ResultFileError(
            f"{path}: damaged file (root attributes: {exc})"
        ) from None
    d = post["means"].shape[-1]
    want = {
        "weights": (k,),
        "means": (k, d),
        "covariances": tuple(ct.shape(k, d)),
    }
    for name, shape in want.items():
        var = post[name]
        if var.dims[:2] != ("chain", "draw") or tuple(var.shape[2:]) != shape:
            raise ResultFileError(
                f"{path}: damaged file (posterior {name!r} has dims {var.dims} and "
                f"shape {var.shape}; a {ct.name} model with K={k} has (chain, draw) "
                f"+ {shape})."
            )
        values = np.asarray(var.values)
        if not np.isfinite(values).all():
            raise ResultFileError(
                f"{path}: damaged file (posterior {name!r} holds NaN or infinite "
                "values)."
            )
    w = np.asarray(post["weights"].values)
    if (w < 0).any() or not np.allclose(w.sum(axis=-1), 1.0, atol=1e-6):
        raise ResultFileError(
            f"{path}: damaged file (posterior weights are not probabilities)."
        )


class MixtureResult:
    """Posterior (or variational) draws of a Gaussian mixture, with tools.

    Parameters
    ----------
    datatree : xarray.DataTree
        Groups ``posterior`` (``weights``, ``means``, ``covariances``),
        ``log_likelihood`` (``x(chain, draw, obs)``), ``observed_data``,
        ``sample_stats`` (MCMC) or ``fit_stats`` (variational), and root
        attrs ``covariance_type``, ``n_components``, ``method``, ``priors``.

    Examples
    --------
    A bootstrap of an EM fit has the layout of a posterior (one chain):

    >>> import tempfile, pathlib
    >>> from bayes_gmm import GaussianMixtureEM, bootstrap_em, make_mixture
    >>> X, _, _ = make_mixture(200, 2, 2, separation=6.0, random_state=0)
    >>> em = GaussianMixtureEM(2, random_state=0).fit(X)
    >>> result = bootstrap_em(em, X, n_boot=20, random_state=0)
    >>> result.method, result.covariance_type, result.n_components
    ('bootstrap', 'full', 2)
    >>> result.posterior["means"].dims
    ('chain', 'draw', 'component', 'feature')
    >>> result.posterior_mean()["weights"].values.round(2)
    array([0.54, 0.46])
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = pathlib.Path(tmp) / "fit.nc"
    ...     _ = result.to_netcdf(path)
    ...     again = MixtureResult.from_netcdf(path)
    ...     bool((again.posterior["means"] == result.posterior["means"]).all())
    True
    """

    def __init__(self, datatree):
        if not isinstance(datatree, xr.DataTree):
            raise TypeError(f"Expected an xarray.DataTree, got {type(datatree)}.")
        if "posterior" not in datatree.children:
            raise ValueError("The DataTree has no 'posterior' group.")
        self.datatree = datatree

    # ----------------------------------------------------------------- basics
    def __repr__(self):
        a = self.attrs
        post = self.posterior
        return (
            f"MixtureResult(method={a.get('method')!r}, "
            f"covariance_type={a.get('covariance_type')!r}, "
            f"n_components={a.get('n_components')}, chains={post.sizes['chain']}, "
            f"draws={post.sizes['draw']})"
        )

    @property
    def attrs(self):
        """Root attributes (configuration)."""
        return self.datatree.attrs

    @property
    def posterior(self):
        """The posterior group as an ``xarray.Dataset``."""
        return self.datatree["posterior"].to_dataset()

    @property
    def covariance_type(self):
        """The covariance type."""
        return str(self.attrs["covariance_type"])

    @property
    def n_components(self):
        """Number of components."""
        return int(self.attrs["n_components"])

    @property
    def method(self):
        """Inference method that produced the draws."""
        return str(self.attrs.get("method", "unknown"))

    @property
    def priors(self):
        """The priors as a dict."""
        return json.loads(self.attrs.get("priors", "{}"))

    @property
    def relabelling(self):
        """The relabelling record (dict), or None."""
        raw = self.attrs.get("relabelling")
        return json.loads(raw) if raw else None

    def draws(self):
        """Posterior draws stacked over (chain, draw) as numpy arrays.

        Returns
        -------
        weights : ndarray of shape (S, K)
        means : ndarray of shape (S, K, D)
        chol : ndarray of shape (S, K, D, D)
            Lower Cholesky factors of the covariances (canonical form).
        """
        post = self.posterior
        k = self.n_components
        w = post["weights"].values
        s = w.shape[0] * w.shape[1]
        means = post["means"].values
        d = means.shape[-1]
        cov = post["covariances"].values
        ct = get_covariance_type(self.covariance_type)
        cov = cov.reshape(s, *cov.shape[2:])
        chol = np.asarray(ct.to_cholesky(cov, k, d))
        return w.reshape(s, k), means.reshape(s, k, d), chol

    # ------------------------------------------------------------- summaries
    def posterior_mean(self):
        """Posterior means of weights, means and covariances.

        Returns
        -------
        xarray.Dataset
            ``weights``, ``means``, ``covariances`` averaged over draws.
        """
        post = self.posterior[["weights", "means", "covariances"]]
        return post.mean(dim=list(_SAMPLE_DIMS))

    def posterior_sd(self):
        """Posterior standard deviations of weights, means and covariances."""
        post = self.posterior[["weights", "means", "covariances"]]
        return post.std(dim=list(_SAMPLE_DIMS), ddof=1)

    def summary(
        self,
        var_names=("weights", "means", "covariances"),
        ci_prob=0.94,
        kind=None,
        **kwargs,
    ):
        """ArviZ summary table (mean, sd, interval, ESS, R-hat).

        Parameters
        ----------
        var_names : sequence of str, default=("weights", "means", "covariances")
            Variables to summarise.
        ci_prob : float, default=0.94
            Probability of the credible interval (passed explicitly: ArviZ 1
            would default to 0.89).
        kind : str, optional
            ArviZ's ``kind``. By default ``"all"`` (statistics and MCMC
            diagnostics) for NUTS, and ``"stats"`` (mean, sd, interval) for
            ADVI and bootstrap results, whose draws are independent: ESS,
            R-hat and MCSE describe Markov chains and would mean nothing
            there.
        **kwargs
            Passed to :func:`arviz_stats.summary`.

        Returns
        -------
        pandas.DataFrame
        """
        import arviz_stats

        if kind is None:
            kind = "all" if self.method == "nuts" else "stats"
        return arviz_stats.summary(
            self.datatree,
            var_names=list(var_names),
            ci_prob=ci_prob,
            kind=kind,
            **kwargs,
        )

    # ------------------------------------------------------------ prediction
    def _blocks(self, n_obs):
        w, means, chol = self.draws()
        s, k, d = means.shape
        size = max(1, _BLOCK_FLOATS // max(1, n_obs * k * d))
        for start in range(0, s, size):
            sl = slice(start, min(s, start + size))
            yield w[sl], means[sl], chol[sl]

    def _component_log_prob(self, X, w, means, chol):
        """Return log w_k + log N(x_n | ...) for a block of draws: (S_b, N, K)."""
        with np.errstate(divide="ignore"):
            return log_gaussian_prob_cholesky(X, means, chol) + np.log(w)[:, None, :]

    def log_likelihood_draws(self, X):
        """Pointwise log mixture density for every draw.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.

        Returns
        -------
        ndarray of shape (S, n_samples)
            ``log p(x_n | theta_s)``, draws stacked over (chain, draw).
        """
        from bayes_gmm._kernel import mixture_log_likelihood

        X = np.asarray(X, dtype=float)
        return mixture_log_likelihood(X, *self.draws())

    def log_predictive_density(self, X):
        """Log posterior predictive density of each sample.

        .. math:: \\log \\tfrac1S \\sum_s p(x_n \\mid \\theta_s)

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        X = np.asarray(X, dtype=float)
        out = np.empty(X.shape[0])
        for sl, ll in self.log_likelihood_blocks(X):
            ll = ll.reshape(-1, ll.shape[-1])
            out[sl] = _logsumexp(ll, axis=0) - np.log(ll.shape[0])
        return out

    def responsibilities(self, X, return_std=False):
        """Posterior mean (and sd) of each sample's component probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.
        return_std : bool, default=False
            Also return the posterior standard deviation.

        Returns
        -------
        mean : ndarray of shape (n_samples, n_components)
        std : ndarray of shape (n_samples, n_components)
            Only with ``return_std``.
        """
        X = np.asarray(X, dtype=float)
        n = X.shape[0]
        # Mean and sum of squared deviations merged block by block (Chan et
        # al.): E[r^2] - E[r]^2 would cancel catastrophically for r near 1.
        mean = np.zeros((n, self.n_components))
        m2 = np.zeros_like(mean)
        count = 0
        for block in self._blocks(n):
            lp = self._component_log_prob(X, *block)
            lp -= _logsumexp(lp, axis=-1)[..., None]
            r = np.exp(lp)
            nb = r.shape[0]
            mb = r.mean(axis=0)
            delta = mb - mean
            total = count + nb
            mean += delta * (nb / total)
            m2 += ((r - mb) ** 2).sum(axis=0) + delta**2 * (count * nb / total)
            count = total
        if not return_std:
            return mean
        var = m2 / max(count - 1, 1)
        return mean, np.sqrt(var)

    def sample(self, n_samples, rng):
        """Posterior predictive draws: a random posterior draw per new point.

        Parameters
        ----------
        n_samples : int
            Number of points.
        rng : numpy.random.Generator
            Random generator.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        labels : ndarray of shape (n_samples,)
        """
        w, means, chol = self.draws()
        s, k, d = means.shape
        pick = rng.integers(s, size=n_samples)
        u = rng.random(n_samples)[:, None]
        cw = np.cumsum(w[pick], axis=1)
        labels = np.minimum((u > cw / cw[:, -1:]).sum(axis=1), k - 1)
        z = rng.standard_normal((n_samples, d))
        X = means[pick, labels] + np.einsum("nij,nj->ni", chol[pick, labels], z)
        return X, labels

    # ----------------------------------------------------------- criteria
    def _log_likelihood(self):
        if "log_likelihood" not in self.datatree.children:
            raise ValueError("The result has no log_likelihood group.")
        return self.datatree["log_likelihood"].to_dataset()["x"]

    @property
    def log_likelihood_on_demand(self):
        """True if the pointwise log-likelihood is computed when needed.

        A fit whose chains x draws x observations exceed the estimator's
        storage limit (see ``log_likelihood`` of
        :class:`~bayes_gmm.GaussianMixtureBayes`) keeps no
        ``log_likelihood`` group: :meth:`loo`, :meth:`waic` and
        :meth:`log_likelihood_totals` compute it from the posterior and
        ``observed_data`` in blocks of observations, with the same result
        and bounded memory, and :meth:`with_log_likelihood` adds the group
        for ArviZ's own functions.
        """
        tree = self.datatree
        return (
            "log_likelihood" not in tree.children
            and "observed_data" in tree.children
            and str(tree.attrs.get("log_likelihood", "")) == "on_demand"
        )

    def _observed(self):
        return np.asarray(self.datatree["observed_data"].to_dataset()["x"].values)

    def log_likelihood_blocks(self, X=None, block_values=None):
        """Pointwise log-likelihood, a block of observations at a time.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), optional
            Data; default the observed data of the fit.
        block_values : int, optional
            At most this many values (draws x observations) per block;
            default 2**23 (64 MB).

        Yields
        ------
        slice, ndarray of shape (chain, draw, n_block)
            The observations of the block and their ``log p(x_n | theta)``.
        """
        X = self._observed() if X is None else np.asarray(X, dtype=float)
        from bayes_gmm._kernel import mixture_log_likelihood

        draws = self.draws()
        post = self.posterior
        c, dr = post.sizes["chain"], post.sizes["draw"]
        if block_values is None:
            block_values = _LOGLIK_BLOCK_VALUES
        size = max(1, int(block_values) // (c * dr))
        for start in range(0, X.shape[0], size):
            sl = slice(start, min(X.shape[0], start + size))
            ll = mixture_log_likelihood(np.ascontiguousarray(X[sl]), *draws)
            yield sl, ll.reshape(c, dr, -1)

    def log_likelihood_totals(self, X=None):
        """Total log-likelihood of every draw, ``sum_n log p(x_n | theta)``.

        Parameters
        ----------
        X : array-like, optional
            Data; default the observed data of the fit.

        Returns
        -------
        ndarray of shape (chain, draw)
        """
        if X is None and "log_likelihood" in self.datatree.children:
            return self._log_likelihood().transpose("chain", "draw", ...).values.sum(-1)
        total = 0.0
        for _sl, ll in self.log_likelihood_blocks(X):
            total = total + ll.sum(axis=-1)
        return total

    def with_log_likelihood(self):
        """The DataTree with its ``log_likelihood`` group (computed if needed).

        For ArviZ's functions that read the group themselves
        (``arviz_stats.loo``, ``loo_pit``, ...). Costs chains x draws x
        observations doubles in memory when the fit computes it on demand.

        Returns
        -------
        xarray.DataTree
        """
        tree = self.datatree
        if "log_likelihood" in tree.children:
            return tree
        if not self.log_likelihood_on_demand:
            raise ValueError("The result has no log_likelihood group.")
        ll = np.concatenate([b for _sl, b in self.log_likelihood_blocks()], axis=-1)
        out = tree.copy()
        out["log_likelihood"] = xr.DataTree(_log_likelihood_dataset(self.posterior, ll))
        out.attrs["log_likelihood"] = "stored"
        return out

    def loo(self, pointwise=False):
        """PSIS-LOO via ArviZ (importance-corrected for variational fits).

        Parameters
        ----------
        pointwise : bool, default=False
            Return pointwise values and Pareto k.

        Returns
        -------
        arviz_stats.ELPDData
        """
        if self.log_likelihood_on_demand:
            return self._loo_blockwise(pointwise)
        return self._loo_tree(self.datatree, pointwise)

    def _loo_tree(self, tree, pointwise, reff=None):
        import arviz_stats

        if self.method in ("advi", "fullrank_advi"):
            stats = self.datatree["fit_stats"].to_dataset()
            return arviz_stats.loo_approximate_posterior(
                tree,
                log_p=stats["log_p"],
                log_q=stats["log_q"],
                pointwise=pointwise,
                var_name="x",
            )
        return arviz_stats.loo(tree, pointwise=pointwise, var_name="x", reff=reff)

    def _loo_blockwise(self, pointwise):
        """PSIS-LOO a block of observations at a time (exact: PSIS is pointwise)."""
        import warnings

        from arviz_stats.utils import ELPDDataLOO

        post = self.posterior
        n_draws = post.sizes["chain"] * post.sizes["draw"]
        reff = None
        if self.method not in ("advi", "fullrank_advi"):
            reff = 1.0
            if post.sizes["chain"] > 1:  # ArviZ's rule: mean ESS over parameters
                ess = post.azstats.ess(method="mean")
                values = [np.ravel(ess[v].values) for v in ess.data_vars]
                reff = float(np.hstack(values).mean() / n_draws)
        elpd_i, pareto_k, p_total = [], [], 0.0
        for _sl, ll in self.log_likelihood_blocks():
            tree = xr.DataTree.from_dict(
                {"posterior": post, "log_likelihood": _log_likelihood_dataset(post, ll)}
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                block = self._loo_tree(tree, True, reff=reff)
            elpd_i.append(block.elpd_i.values)
            pareto_k.append(block.pareto_k.values)
            p_total += float(block.p)
        obs = np.arange(sum(e.size for e in elpd_i))
        elpd_i = xr.DataArray(np.concatenate(elpd_i), dims="obs", coords={"obs": obs})
        pareto_k = xr.DataArray(
            np.concatenate(pareto_k), dims="obs", coords={"obs": obs}
        )
        elpd, se, _, _ = elpd_i.azstats.loo_summary(xr.zeros_like(elpd_i))
        good_k = min(1 - 1 / np.log10(n_draws), 0.7) if n_draws > 1 else 0.7
        warn_mg = bool(np.any(pareto_k.values > good_k))
        if warn_mg:
            warnings.warn(
                "Estimated shape parameter of Pareto distribution is greater than "
                f"{good_k:.2f} for one or more samples.",
                UserWarning,
                stacklevel=3,
            )
        return ELPDDataLOO(
            elpd=float(elpd),
            se=float(se),
            p=p_total,
            n_samples=n_draws,
            n_data_points=obs.size,
            scale="log",
            warning=warn_mg,
            good_k=good_k,
            elpd_i=elpd_i if pointwise else None,
            pareto_k=pareto_k if pointwise else None,
            approx_posterior=self.method in ("advi", "fullrank_advi"),
        )

    def waic(self, pointwise=False):
        """WAIC from the pointwise log-likelihood (see :func:`waic`).

        Computed a block of observations at a time when the fit keeps the
        log-likelihood on demand (:attr:`log_likelihood_on_demand`).
        """
        if not self.log_likelihood_on_demand:
            return waic(
                self._log_likelihood().transpose("chain", "draw", ...),
                pointwise=pointwise,
            )
        parts = [waic(ll, pointwise=True) for _sl, ll in self.log_likelihood_blocks()]
        elpd_i = np.concatenate([p["elpd_waic_i"] for p in parts])
        p_i = np.concatenate([p["p_waic_i"] for p in parts])
        out = {
            "elpd_waic": float(elpd_i.sum()),
            "se": float(np.sqrt(elpd_i.size * np.var(elpd_i))),
            "p_waic": float(p_i.sum()),
            "n_samples": parts[0]["n_samples"],
            "n_data_points": int(elpd_i.size),
            "warning": bool(np.any(p_i > 0.4)),
            "scale": "log",
        }
        if pointwise:
            out["elpd_waic_i"] = elpd_i
            out["p_waic_i"] = p_i
        return out

    # ------------------------------------------------------------------ I/O
    def to_netcdf(self, path):
        """Save to a netCDF file, atomically.

        The file is written to a temporary name in the same folder and moved
        into place only when complete, so a failure never leaves a truncated
        file and never destroys a previous one. It gets the permissions of
        any new file of the user (``0666`` less the umask), and Fletcher-32
        checksums, so that :meth:`from_netcdf` recognises a damaged copy.

        Parameters
        ----------
        path : str or path-like
            Destination file.

        Returns
        -------
        pathlib.Path
            The path written.
        """
        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a directory; give a file name.")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".nc.tmp", dir=path.parent)
        os.close(fd)
        try:
            self.datatree.to_netcdf(
                tmp, engine="h5netcdf", encoding=_netcdf_encoding(self.datatree)
            )
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return path

    @classmethod
    def from_netcdf(cls, path):
        """Load a result saved by :meth:`to_netcdf`.

        Parameters
        ----------
        path : str or path-like
            File.

        Returns
        -------
        MixtureResult

        Raises
        ------
        FileNotFoundError
            No such file.
        ResultFileError
            A damaged file (truncated, a checksum that fails, arrays of the
            wrong shape or with non-finite values) or one that is not a
            bayes_gmm result; the message names the path. Everything is
            checked here, so a loaded result never fails later.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"No such result file: {path}")
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a directory, not a result file.")
        try:
            with xr.open_datatree(path, engine="h5netcdf") as dt:
                loaded = dt.load()
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ResultFileError(
                f"{path}: damaged file, or not a netCDF file written by bayes_gmm "
                f"(reading it failed: {reason})."
            ) from None
        _check_result_tree(loaded, path)
        return cls(loaded)
