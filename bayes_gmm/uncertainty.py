"""Uncertainty of an EM fit by the bootstrap, shaped like a posterior.

:func:`bootstrap_em` refits an EM estimate on resampled data sets
(nonparametric: rows drawn with replacement; parametric: data drawn from the
fitted mixture). Every replicate starts from the original fit, so its
components keep their labels; an alignment check (the assignment of
:func:`bayes_gmm.relabel.relabel` against the original fit) catches and
undoes the rare replicate that swapped components anyway. The replicates
are returned as a :class:`~bayes_gmm.MixtureResult` whose ``/posterior``
group has the dims of a posterior, ``(chain=1, draw=n_boot, component,
feature, ...)``, so summaries, plots and :func:`bayes_gmm.comparison.compare_fits`
treat a bootstrap and a posterior alike.
"""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import xarray as xr
from sklearn.utils.validation import check_is_fitted

from bayes_gmm._covariance import get_covariance_type
from bayes_gmm._validation import (
    check_choice,
    check_data,
    check_random_state,
    check_scalar,
)
from bayes_gmm.em import GaussianMixtureEM, MixtureParams, _sample_mixture, run_em
from bayes_gmm.result import MixtureResult

__all__ = ["bootstrap_em", "BOOTSTRAP_KINDS"]

logger = logging.getLogger("bayes_gmm")

#: The kinds of bootstrap :func:`bootstrap_em` offers.
BOOTSTRAP_KINDS = ("nonparametric", "parametric")
# Give up when this many replicates in a row cannot be fitted.
_MAX_FAILURES_FACTOR = 1.0


def _feature_names(em, d):
    names = getattr(em, "feature_names_in_", None)
    if names is not None:
        return [str(c) for c in names]
    return [f"x{i}" for i in range(d)]


def _version():
    from bayes_gmm import __version__

    return __version__


def bootstrap_em(
    em_fit: GaussianMixtureEM,
    X,
    n_boot: int = 200,
    *,
    kind: str = "nonparametric",
    random_state=None,
    tol: float | None = None,
    max_iter: int | None = None,
) -> MixtureResult:
    """Bootstrap standard errors of an EM fit, returned like a posterior.

    For each of ``n_boot`` replicates a data set of the same size is drawn
    and EM (:func:`bayes_gmm.em.run_em`) is run on it *from the original
    estimate*, so the replicate's components keep the original labels.

    * ``kind="nonparametric"``: rows of ``X`` drawn with replacement
      (Efron's bootstrap; no model assumption).
    * ``kind="parametric"``: a data set drawn from the fitted mixture itself
      (assumes the model is right; smoother for small data).

    Alignment check: every replicate is matched to the original fit with
    the label assignment of :func:`bayes_gmm.relabel.relabel` (a KL cost,
    invariant to feature units); replicates whose best match is a
    permutation are realigned, and their share is recorded
    (``attrs["share_realigned"]``; :func:`bayes_gmm.diagnose` warns above
    1%). A replicate whose fit fails (a collapsed component) is redrawn and
    counted in ``attrs["n_failed"]``.

    Parameters
    ----------
    em_fit : GaussianMixtureEM
        A fitted EM estimator.
    X : array-like of shape (n_samples, n_features)
        The data ``em_fit`` was fitted to.
    n_boot : int, default=200
        Number of replicates (200 gives standard errors to about 5%).
    kind : {"nonparametric", "parametric"}, default="nonparametric"
        How replicates are drawn.
    random_state : int, Generator or None, default=None
        Seed; the same seed gives identical replicates.
    tol, max_iter : optional
        EM settings of the refits; those of ``em_fit`` by default.

    Returns
    -------
    MixtureResult
        ``method="bootstrap"``. Groups: ``posterior`` (``weights``,
        ``means``, ``covariances`` with dims ``(chain, draw, ...)``, chain of
        size 1), ``point_estimate`` (the original fit, same variables without
        chain and draw), ``observed_data`` (``x``), ``bootstrap_stats``
        (per replicate: ``converged``, ``n_iter``, ``lower_bound`` and
        ``realigned``) and ``relabelling``. Root attrs: ``kind``,
        ``n_boot``, ``n_failed``, ``share_realigned``, ``covariance_type``,
        ``n_components``. ``result.posterior_sd()`` gives the bootstrap
        standard errors.

    Raises
    ------
    ValueError
        For invalid data or arguments, or if the refits fail as often as
        ``n_boot`` times.

    Examples
    --------
    >>> from bayes_gmm import GaussianMixtureEM, make_mixture
    >>> X, _, _ = make_mixture(200, 2, 2, separation=6.0, random_state=0)
    >>> em = GaussianMixtureEM(2, random_state=0).fit(X)
    >>> boot = bootstrap_em(em, X, n_boot=20, random_state=0)
    >>> boot.posterior["means"].dims
    ('chain', 'draw', 'component', 'feature')
    >>> boot.posterior_sd()["means"].shape
    (2, 2)
    """
    from bayes_gmm.relabel import relabel

    if not isinstance(em_fit, GaussianMixtureEM):
        raise TypeError(
            f"em_fit must be a fitted GaussianMixtureEM, got {type(em_fit).__name__}."
        )
    check_is_fitted(em_fit)
    X = check_data(em_fit, X, reset=False)
    n_boot = check_scalar("n_boot", n_boot, int, min_value=2)
    kind = check_choice("kind", kind, BOOTSTRAP_KINDS)
    tol = em_fit.tol if tol is None else check_scalar("tol", tol, float, min_value=0.0)
    max_iter = (
        em_fit.max_iter
        if max_iter is None
        else check_scalar("max_iter", max_iter, int, min_value=1)
    )
    rng = check_random_state(random_state)
    n, d = X.shape
    k = int(em_fit.n_components)
    ct = get_covariance_type(em_fit.covariance_type)
    start = MixtureParams(
        np.asarray(em_fit.weights_),
        np.asarray(em_fit.means_),
        np.asarray(em_fit.covariances_),
        np.asarray(em_fit.precisions_cholesky_),
        ct.name,
    )
    chol = np.asarray(ct.to_cholesky(start.covariances, k, d))

    weights, means, covs = [], [], []
    converged, n_iters, bounds = [], [], []
    n_failed = 0
    max_failures = max(1, int(_MAX_FAILURES_FACTOR * n_boot))
    while len(weights) < n_boot:
        if kind == "nonparametric":
            Xb = X[rng.integers(n, size=n)]
        else:
            Xb, _ = _sample_mixture(rng, n, start.weights, start.means, chol)
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                run = run_em(
                    Xb, start, tol=tol, max_iter=max_iter, reg_covar=em_fit.reg_covar
                )
            p = run.params
            ok = (
                np.all(np.isfinite(p.weights))
                and np.all(np.isfinite(p.means))
                and np.all(np.isfinite(p.covariances))
            )
            if not ok:
                raise FloatingPointError("non-finite parameters")
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            n_failed += 1
            logger.debug("bootstrap replicate failed (%s); redrawn", exc)
            if n_failed >= max_failures:
                raise ValueError(
                    f"{n_failed} bootstrap refits failed (last error: {exc}) "
                    f"while {len(weights)} of {n_boot} succeeded: the model "
                    "breaks down on resampled data. Use fewer components or "
                    "a larger reg_covar."
                ) from exc
            continue
        weights.append(p.weights)
        means.append(p.means)
        covs.append(p.covariances)
        converged.append(bool(run.converged))
        n_iters.append(int(run.n_iter))
        bounds.append(float(run.lower_bound))

    features = _feature_names(em_fit, d)
    coords = {
        "chain": [0],
        "draw": np.arange(n_boot),
        "component": np.arange(k),
        "feature": features,
    }
    if "feature_bis" in ct.dims:
        coords["feature_bis"] = features
    posterior = xr.Dataset(
        {
            "weights": (("chain", "draw", "component"), np.stack(weights)[None]),
            "means": (("chain", "draw", "component", "feature"), np.stack(means)[None]),
            "covariances": (("chain", "draw", *ct.dims), np.stack(covs)[None]),
        },
        coords=coords,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        posterior, record = relabel(posterior, ct.name, pivot=em_fit, max_iter=1)
    realigned = np.any(record.permutations[0] != np.arange(k), axis=-1)
    share_realigned = float(realigned.mean())
    if share_realigned > 0:
        logger.info(
            "bootstrap_em: %d of %d replicates swapped components and were "
            "realigned to the original fit",
            int(realigned.sum()),
            n_boot,
        )
    point = xr.Dataset(
        {
            "weights": (("component",), start.weights),
            "means": (("component", "feature"), start.means),
            "covariances": (ct.dims, start.covariances),
        },
        coords={c: v for c, v in coords.items() if c not in ("chain", "draw")},
    )
    stats = xr.Dataset(
        {
            "converged": (("chain", "draw"), np.asarray(converged)[None]),
            "n_iter": (("chain", "draw"), np.asarray(n_iters)[None]),
            "lower_bound": (("chain", "draw"), np.asarray(bounds)[None]),
            "realigned": (("chain", "draw"), realigned[None]),
        },
        coords={"chain": [0], "draw": np.arange(n_boot)},
    )
    observed = xr.Dataset(
        {"x": (("obs", "feature"), X)},
        coords={"obs": np.arange(n), "feature": features},
    )
    tree = xr.DataTree.from_dict(
        {
            "posterior": posterior,
            "point_estimate": point,
            "observed_data": observed,
            "bootstrap_stats": stats,
            "relabelling": record.to_dataarray().to_dataset(name="permutation"),
        }
    )
    tree.attrs.update(
        {
            "bayes_gmm_version": _version(),
            "method": "bootstrap",
            "kind": kind,
            "covariance_type": ct.name,
            "n_components": k,
            "n_boot": n_boot,
            "n_failed": int(n_failed),
            "share_realigned": share_realigned,
            "random_state": json.dumps(
                random_state if isinstance(random_state, int) else None
            ),
            "em_params": json.dumps(
                {
                    "tol": float(tol),
                    "max_iter": int(max_iter),
                    "reg_covar": float(em_fit.reg_covar),
                }
            ),
        }
    )
    logger.info(
        "bootstrap_em: %d %s replicates (%d failed and redrawn, %.1f%% realigned)",
        n_boot,
        kind,
        n_failed,
        100 * share_realigned,
    )
    return MixtureResult(tree)
