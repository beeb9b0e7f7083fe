"""Can I trust this fit? Convergence checks and a plain-language diagnosis.

:func:`diagnose` takes an EM fit (:class:`~bayes_gmm.GaussianMixtureEM`), a
Bayesian fit (:class:`~bayes_gmm.GaussianMixtureBayes`, NUTS or ADVI), its
:class:`~bayes_gmm.MixtureResult` or DataTree, or an EM bootstrap
(:func:`bayes_gmm.uncertainty.bootstrap_em`), runs the checks that apply to
that kind of fit and returns a :class:`Diagnosis`: one :class:`Check` per
question, with its value, threshold, status (``"ok"``, ``"warn"``,
``"fail"``) and, where needed, a remedy in plain language.

Checks and thresholds (module constants, documented in :func:`diagnose`):

========================  =====================================================
MCMC (NUTS)               max R-hat and min ESS bulk / tail on the relabelled
                          draws, the same on label-invariant quantities (the
                          log-likelihood of the data per draw, sorted
                          weights), divergences, E-BFMI, tree-depth saturation
variational (ADVI)        loss converged, Pareto k of the importance ratios
                          ``log p - log q`` (how far the approximation is from
                          the posterior)
every Bayesian fit        Pareto k of PSIS-LOO, label switching left after
                          relabelling, components with negligible weight
EM                        converged, far-apart optima across ``n_init``
                          starts, components with negligible weight,
                          collapsed covariances
========================  =====================================================
"""

from __future__ import annotations

import html
import json
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayes_gmm._covariance import get_covariance_type
from bayes_gmm._validation import check_data
from bayes_gmm.result import MixtureResult, as_mixture_result

__all__ = ["Check", "Diagnosis", "diagnose", "STATUSES"]

logger = logging.getLogger("bayes_gmm")

#: Statuses, from best to worst.
STATUSES = ("ok", "warn", "fail")

# R-hat: <= RHAT_OK is fine (Vehtari et al. 2021), up to RHAT_FAIL a warning.
RHAT_OK = 1.01
RHAT_FAIL = 1.05
# ESS (bulk and tail): at least ESS_PER_CHAIN per chain (ArviZ's default
# threshold, 100 x chains); below half of that the estimates are not usable.
ESS_PER_CHAIN = 100
ESS_FAIL_SHARE = 0.5
# Divergences: any is a warning, more than this share of draws a failure.
DIVERGENCE_FAIL_SHARE = 0.01
# E-BFMI (Betancourt 2016): below 0.3 is a warning, below 0.2 a failure.
BFMI_OK = 0.3
BFMI_FAIL = 0.2
# Tree depth: saturation costs efficiency, not validity; warn above 0.
# Pareto k: above ArviZ's good_k = min(1 - 1/log10(S), 0.7) a warning, above
# 1 a failure (the importance-sampling estimate has no finite mean).
PARETO_K_FAIL = 1.0
# Variational approximation: Pareto k of log p - log q above 0.7 (Yao et al.
# 2018) means the approximation is far from the posterior.
VI_KHAT_OK = 0.7
# A component is negligible if its (posterior mean) weight is below
# max(MIN_WEIGHT, (D + 1) / n): fewer expected points than a covariance needs.
MIN_WEIGHT = 0.01
# EM starts whose final mean log-likelihood is more than
# max(OPTIMA_TOL_FACTOR * tol, OPTIMA_TOL_MIN) per sample below the best
# ended at another optimum.
OPTIMA_TOL_FACTOR = 10.0
OPTIMA_TOL_MIN = 1e-3
# A covariance whose smallest eigenvalue is below COLLAPSE_RATIO times the
# largest feature variance has collapsed onto a point or a line.
COLLAPSE_RATIO = 1e-6

_PARAMS = ("weights", "means", "covariances")
_VI_METHODS = ("advi", "fullrank_advi")
_WORST = {s: i for i, s in enumerate(STATUSES)}


# ---------------------------------------------------------------------------
# Result objects
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """One diagnostic check.

    Attributes
    ----------
    name : str
        Short key, e.g. ``"rhat"`` (``Diagnosis[name]`` looks it up).
    label : str
        What was checked, for people.
    value : float, int or str
        The measured value.
    threshold : str
        The threshold, in words (e.g. ``"<= 1.01"``).
    status : {"ok", "warn", "fail"}
        The verdict.
    message : str
        What was found, in plain language.
    remedy : str
        What to do about it ("" when the status is ``"ok"``).
    """

    name: str
    label: str
    value: Any
    threshold: str
    status: str
    message: str
    remedy: str = ""

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(
                f"Invalid status {self.status!r}; valid options are {list(STATUSES)}."
            )

    @property
    def ok(self) -> bool:
        """True if the status is ``"ok"``."""
        return self.status == "ok"

    def formatted_value(self) -> str:
        """The value as short text."""
        return _fmt(self.value)


@dataclass(frozen=True)
class Diagnosis:
    """The checks run on one fit.

    Attributes
    ----------
    kind : str
        ``"em"``, ``"nuts"``, ``"advi"``, ``"fullrank_advi"`` or
        ``"bootstrap"``.
    description : str
        The fit in a few words (type, K, chains and draws).
    checks : tuple of Check
        The checks, in the order they were run.

    Examples
    --------
    >>> from bayes_gmm import GaussianMixtureEM, diagnose, make_mixture
    >>> X, _, _ = make_mixture(200, 2, 2, separation=6.0, random_state=0)
    >>> d = diagnose(GaussianMixtureEM(2, n_init=3, random_state=0).fit(X), X)
    >>> d.kind, d.status, d.problems
    ('em', 'ok', [])
    >>> [c.name for c in d.checks]
    ['em_converged', 'em_optima', 'negligible_weight', 'collapsed_covariance']
    >>> d["negligible_weight"].status
    'ok'
    """

    kind: str
    description: str
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def status(self) -> str:
        """The worst status of all checks (``"ok"`` if there are none)."""
        if not self.checks:
            return "ok"
        return max((c.status for c in self.checks), key=_WORST.__getitem__)

    @property
    def ok(self) -> bool:
        """True if every check is ``"ok"``."""
        return self.status == "ok"

    @property
    def problems(self) -> list[Check]:
        """The checks whose status is not ``"ok"``."""
        return [c for c in self.checks if c.status != "ok"]

    def __getitem__(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(
            f"No check named {name!r}; this diagnosis has "
            f"{sorted(c.name for c in self.checks)}."
        )

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.checks)

    def to_frame(self) -> pd.DataFrame:
        """The checks as a DataFrame (one row per check)."""
        return pd.DataFrame(
            {
                "check": [c.name for c in self.checks],
                "label": [c.label for c in self.checks],
                "value": [c.value for c in self.checks],
                "threshold": [c.threshold for c in self.checks],
                "status": [c.status for c in self.checks],
                "message": [c.message for c in self.checks],
                "remedy": [c.remedy for c in self.checks],
            }
        )

    def _headline(self) -> str:
        n = len(self.checks)
        problems = self.problems
        if not problems:
            verdict = f"all {n} checks ok."
        else:
            n_fail = sum(c.status == "fail" for c in problems)
            n_warn = len(problems) - n_fail
            parts = []
            if n_fail:
                parts.append(f"{n_fail} failed")
            if n_warn:
                parts.append(f"{n_warn} warning{'s' if n_warn > 1 else ''}")
            verdict = f"{' and '.join(parts)} of {n} checks."
        return f"Diagnosis of {self.description}: {verdict}"

    def __str__(self) -> str:
        lines = [self._headline()]
        width = max((len(c.label) for c in self.checks), default=0)
        for c in self.checks:
            lines.append(
                f"  [{c.status:>4}] {c.label:<{width}}  {c.formatted_value():>10}"
                f"  (ok: {c.threshold})"
            )
        for c in self.problems:
            lines.append("")
            lines.append(f"{c.status.upper()}: {c.message}")
            if c.remedy:
                lines.append(f"  Remedy: {c.remedy}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"Diagnosis(kind={self.kind!r}, status={self.status!r}, "
            f"checks={[c.name for c in self.checks]})"
        )

    def _repr_html_(self) -> str:
        colours = {"ok": "#1a7f37", "warn": "#9a6700", "fail": "#cf222e"}
        rows = []
        for c in self.checks:
            rows.append(
                "<tr>"
                f"<td>{html.escape(c.label)}</td>"
                f"<td style='text-align:right'>{html.escape(c.formatted_value())}</td>"
                f"<td>{html.escape(c.threshold)}</td>"
                f"<td style='color:{colours[c.status]};font-weight:bold'>"
                f"{c.status}</td>"
                f"<td>{html.escape(c.message)}</td>"
                f"<td>{html.escape(c.remedy)}</td>"
                "</tr>"
            )
        return (
            f"<p><b>{html.escape(self._headline())}</b></p>"
            "<table><thead><tr><th>check</th><th>value</th><th>ok if</th>"
            "<th>status</th><th>finding</th><th>remedy</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )


def _fmt(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not np.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:.4g}" if abs(v) < 10 else f"{v:.1f}"
    return str(value)


def _status(value, ok, fail, *, higher_is_better):
    """Three-level status of a value against an ok and a fail threshold."""
    if value is None or not np.isfinite(value):
        return "ok"
    if higher_is_better:
        return "ok" if value >= ok else ("warn" if value >= fail else "fail")
    return "ok" if value <= ok else ("warn" if value <= fail else "fail")


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------
def diagnose(fit, X=None) -> Diagnosis:
    """Check a fitted mixture and say in plain language whether to trust it.

    Parameters
    ----------
    fit : GaussianMixtureEM, GaussianMixtureBayes, MixtureResult or DataTree
        A fitted EM estimator, a fitted Bayesian estimator (NUTS or
        variational), its ``result_``, the DataTree of such a result, or the
        result of :func:`bayes_gmm.uncertainty.bootstrap_em`.
    X : array-like of shape (n_samples, n_features), optional
        The data an EM fit was fitted to. Only EM fits use it (to count the
        samples behind each component); Bayesian results carry their data.

    Returns
    -------
    Diagnosis
        ``str(diagnosis)`` is a plain-language report, ``diagnosis.to_frame()``
        a table, ``diagnosis[name]`` one :class:`Check`; in a notebook the
        diagnosis shows as an HTML table.

    Raises
    ------
    TypeError
        If ``fit`` is none of the accepted types.
    sklearn.exceptions.NotFittedError
        If an estimator is not fitted.

    Notes
    -----
    Statuses: ``"ok"``; ``"warn"`` (usable with care); ``"fail"`` (do not
    trust the numbers). Thresholds:

    * **R-hat** (``rhat``, ``rhat_invariant``): ok <= 1.01, warn <= 1.05,
      else fail; computed by :func:`arviz_stats.rhat` (rank-normalised split
      R-hat) on the relabelled weights, means and covariances, and on
      label-invariant quantities (the total log-likelihood of the data per
      draw and the sorted weights). A high R-hat on the relabelled draws
      with a fine label-invariant R-hat points at labelling, not at the
      sampler. Needs at least two chains: with one, the ``rhat`` check
      warns that convergence cannot be judged (not run for ADVI).
    * **ESS** (``ess_bulk``, ``ess_tail``, ``ess_invariant``): ok >= 100 x
      chains (ArviZ's default), warn down to half of that, else fail.
    * **Divergences**: ok if none, warn up to 1% of the draws, else fail.
    * **E-BFMI** (min over chains): ok >= 0.3, warn >= 0.2, else fail.
    * **Tree depth**: share of draws that hit the sampler's maximum depth;
      warn if any (an efficiency problem, not a validity one).
    * **Pareto k** (PSIS-LOO; for ADVI its importance-corrected version):
      ok if no observation has k above ArviZ's ``good_k = min(1 -
      1/log10(S), 0.7)`` for S draws, fail if any k > 1, else warn.
    * **Label switching** (:func:`bayes_gmm.relabel.label_switching_check`):
      fail if a chain sits at another mode after relabelling (it did not
      converge), warn if labels switch in a way relabelling cannot undo or if
      the stored draws were never relabelled although chains are permuted
      (a chain that is a relabelling of another is otherwise harmless).
    * **Negligible weight**: warn if a component's weight (posterior mean)
      is below ``max(0.01, (D + 1) / n)``, fewer expected points than a
      covariance needs.
    * **ADVI converged** (``vi_converged``): warn if the loss was still
      falling at the iteration cap; **VI Pareto k** (``vi_khat``): warn if
      the Pareto k of ``log p - log q`` over the draws exceeds 0.7 (Yao et
      al. 2018): the approximation is far from the posterior, so its sds
      and intervals should not be trusted (its means may still be fine).
    * **EM converged**: warn if the best start stopped at ``max_iter``.
      **EM optima**: warn if starts ended more than ``max(10 tol, 1e-3)``
      (mean log-likelihood per sample) below the best *and* only one start
      reached the best: the likelihood has several optima and more starts
      may find a better one (other optima are mentioned, but fine, when
      several starts agree on the best). **Collapsed covariance**: fail if
      a covariance's smallest eigenvalue is below 1e-6 times the largest
      variance of the fitted mixture.

    Examples
    --------
    >>> from bayes_gmm import GaussianMixtureEM, make_mixture
    >>> X, _, _ = make_mixture(200, 2, 2, separation=6.0, random_state=0)
    >>> em = GaussianMixtureEM(2, n_init=3, random_state=0).fit(X)
    >>> d = diagnose(em, X)
    >>> d.status
    'ok'
    >>> d["em_converged"].value
    True
    """
    from sklearn.utils.validation import check_is_fitted

    from bayes_gmm.em import GaussianMixtureEM

    if isinstance(fit, GaussianMixtureEM):
        check_is_fitted(fit)
        return _diagnose_em(fit, X)
    fit = as_mixture_result(fit, "diagnose expects")
    if fit.method == "bootstrap":
        return _diagnose_bootstrap(fit)
    return _diagnose_bayes(fit)


# ---------------------------------------------------------------------------
# EM
# ---------------------------------------------------------------------------
def _diagnose_em(em, X) -> Diagnosis:
    k = int(em.n_components)
    d = int(em.means_.shape[1])
    n = None
    if X is not None:
        Xv = check_data(em, X, reset=False)
        n = Xv.shape[0]
    checks = [
        _em_converged(em),
        _em_optima(em),
        _negligible_weight(np.asarray(em.weights_), n, d, posterior=False),
        _collapsed(em),
    ]
    desc = f"an EM fit ({em.covariance_type}, K={k}, n_init={em.n_init})"
    return Diagnosis("em", desc, tuple(checks))


def _em_converged(em) -> Check:
    ok = bool(em.converged_)
    return Check(
        "em_converged",
        "EM converged",
        ok,
        "True",
        "ok" if ok else "warn",
        (
            f"The best start converged after {em.n_iter_} iterations."
            if ok
            else (
                f"The best start stopped at max_iter={em.max_iter} before the "
                f"log-likelihood settled (change still above tol={em.tol})."
            )
        ),
        "" if ok else "Increase max_iter (or tol), or standardise the data.",
    )


def _em_optima(em) -> Check:
    finals = np.asarray(getattr(em, "init_lower_bounds_", [em.lower_bound_]), float)
    finals = finals[np.isfinite(finals)]
    tol = max(OPTIMA_TOL_FACTOR * float(em.tol), OPTIMA_TOL_MIN)
    threshold = f"spread <= {tol:.3g}"
    if finals.size < 2:
        return Check(
            "em_optima",
            "EM optima across starts (mean log-lik spread)",
            0.0,
            threshold,
            "ok",
            "Only one start was run, so other optima were not looked for (n_init=1).",
        )
    best = finals.max()
    spread = float(best - finals.min())
    n_best = int(np.sum(finals >= best - tol))
    n_other = finals.size - n_best
    if spread <= tol:
        return Check(
            "em_optima",
            "EM optima across starts (mean log-lik spread)",
            spread,
            threshold,
            "ok",
            f"All {finals.size} starts reached the same optimum.",
        )
    message = (
        f"{n_other} of {finals.size} starts ended at lower optima (mean "
        f"log-likelihood per sample down to {finals.min():.4f}, best "
        f"{best:.4f}): the likelihood has several local optima. "
    )
    if n_best == 1:
        message += (
            "Only one start reached the best, so a better optimum may exist "
            "that no start found."
        )
        status = "warn"
        remedy = (
            "Increase n_init until several starts reach the best optimum; "
            "also consider fewer components (overfitted mixtures have many "
            "optima)."
        )
    else:
        message += f"{n_best} starts reached the best, which is kept."
        status = "ok"
        remedy = ""
    return Check(
        "em_optima",
        "EM optima across starts (mean log-lik spread)",
        spread,
        f"{threshold}, or best reached by >= 2 starts",
        status,
        message,
        remedy,
    )


def _collapsed(em) -> Check:
    ct = get_covariance_type(em.covariance_type)
    k, d = em.means_.shape
    chol = np.asarray(ct.to_cholesky(np.asarray(em.covariances_), k, d))
    cov = chol @ np.swapaxes(chol, -1, -2)
    eig_min = np.linalg.eigvalsh(cov)[:, 0]
    # The spread of the mixture itself sets the scale.
    mix_var = _mixture_feature_variance(np.asarray(em.weights_), em.means_, cov)
    scale = float(np.max(mix_var))
    ratio = eig_min / scale
    worst = int(np.argmin(ratio))
    thin = ratio < COLLAPSE_RATIO
    # degenerate_: held up by reg_covar, or too few points (see the estimator).
    held = np.asarray(getattr(em, "degenerate_", np.zeros(k, bool)), dtype=bool)
    bad = np.flatnonzero(thin | held)
    ok = bad.size == 0
    if ok:
        message = "No component covariance has collapsed."
    else:
        message = (
            f"{bad.size} of {k} components ({_join(bad)}) are degenerate: "
            "covariance collapsed onto a point or a line, held up by reg_covar"
            + (
                f", or fewer than D + 1 = {d + 1} effective points"
                if ct.name == "full"
                else ""
            )
            + ": the likelihood is degenerate there and the fit is not a "
            "meaningful optimum."
        )
    return Check(
        "collapsed_covariance",
        "Smallest covariance eigenvalue / data variance",
        float(ratio[worst]),
        f">= {COLLAPSE_RATIO:g}",
        "ok" if ok else "fail",
        message,
        ""
        if ok
        else (
            "Use fewer components, another covariance_type, a larger "
            "reg_covar, or remove duplicated points / constant features."
        ),
    )


def _mixture_feature_variance(weights, means, cov):
    mean = weights @ means
    second = np.einsum("k,kdd->d", weights, cov) + weights @ (means**2)
    return np.maximum(second - mean**2, np.finfo(float).tiny)


def _join(indices, most=6) -> str:
    """Indices as text, the first ``most`` of them and how many more."""
    indices = [int(i) for i in indices]
    shown = ", ".join(map(str, indices[:most]))
    return shown if len(indices) <= most else f"{shown}, ... ({len(indices)} in all)"


def _negligible_weight(weights, n, d, *, posterior) -> Check:
    weights = np.asarray(weights, dtype=float)
    threshold = MIN_WEIGHT if n is None else max(MIN_WEIGHT, (d + 1) / n)
    small = np.flatnonzero(weights < threshold)
    what = "posterior mean weight" if posterior else "weight"
    ok = small.size == 0
    if ok:
        message = f"Every component has a {what} of at least {threshold:.3g}."
        remedy = ""
    else:
        values = ", ".join(f"{weights[i]:.3g}" for i in small[:6])
        values += ", ..." if small.size > 6 else ""
        k_sup = weights.size - small.size
        message = (
            f"Component(s) {_join(small)} have {what} {values} (below "
            f"{threshold:.3g}"
            + (f", i.e. fewer than D + 1 = {d + 1} expected points" if n else "")
            + "): the data hardly support them, so their means and "
            "covariances are driven by "
            + ("the prior." if posterior else "a handful of points.")
        )
        remedy = (
            f"Try fewer components (about {k_sup}) and compare with "
            "bayes_gmm.compare_models; a mixture with empty components "
            "predicts like the smaller one."
        )
    return Check(
        "negligible_weight",
        "Smallest component weight",
        float(weights.min()),
        f">= {threshold:.3g}",
        "ok" if ok else "warn",
        message,
        remedy,
    )


# ---------------------------------------------------------------------------
# Bayesian fits
# ---------------------------------------------------------------------------
def _relabelling_record(result):
    from bayes_gmm.relabel import RelabelRecord

    raw = result.attrs.get("relabelling")
    if not raw or "relabelling" not in result.datatree.children:
        return None
    perms = result.datatree["relabelling"].to_dataset()["permutation"]
    return RelabelRecord.from_dict(json.loads(raw), permutations=perms)


def _diagnose_bayes(result: MixtureResult) -> Diagnosis:
    from bayes_gmm.relabel import label_switching_check, relabel

    method = result.method
    post = result.posterior
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    ctype = result.covariance_type
    k = result.n_components
    record = _relabelling_record(result)
    stored_relabelled = record is not None or result.attrs.get("order_means") not in (
        None,
        "null",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if stored_relabelled:
            relabelled = post
            switching = label_switching_check(post, ctype, record)
            n_relabelled_now = 0
        else:
            relabelled, own = relabel(post, ctype)
            switching = label_switching_check(relabelled, ctype, own)
            n_relabelled_now = int(np.sum(np.any(own.permutations != np.arange(k), -1)))

    checks = []
    is_vi = method in _VI_METHODS
    if not is_vi:
        checks += _mcmc_convergence_checks(result, relabelled, n_chain)
    stats = (
        result.datatree["sample_stats"].to_dataset()
        if "sample_stats" in result.datatree.children
        else None
    )
    if stats is not None:
        checks += _sampler_checks(result, stats, n_chain * n_draw)
    if is_vi:
        checks += _vi_checks(result)
    checks.append(_pareto_k_check(result))
    checks.append(_label_switching(switching, n_relabelled_now, n_chain, n_draw))
    n = _n_obs(result)
    d = post.sizes["feature"]
    mean_w = relabelled["weights"].mean(("chain", "draw")).values
    checks.append(_negligible_weight(mean_w, n, d, posterior=True))
    name = {"nuts": "NUTS", "advi": "ADVI", "fullrank_advi": "full-rank ADVI"}.get(
        method, method
    )
    if is_vi:
        shape = f"{n_draw} draws of the approximation"
    else:
        shape = f"{n_chain} chain{'s' if n_chain > 1 else ''} x {n_draw} draws"
    article = "an" if name[:1] in "AEIOU" else "a"
    desc = f"{article} {name} fit ({ctype}, K={k}, {shape})"
    return Diagnosis(method, desc, tuple(checks))


def _n_obs(result):
    tree = result.datatree
    if "observed_data" in tree.children:
        return int(tree["observed_data"].to_dataset()["x"].shape[0])
    if "log_likelihood" in tree.children:
        return int(tree["log_likelihood"].to_dataset()["x"].sizes["obs"])
    return None


def _invariant_dataset(result, relabelled):
    """Label-invariant quantities per draw: log-likelihood sum, sorted weights."""
    data = {}
    tree = result.datatree
    if "log_likelihood" in tree.children or result.log_likelihood_on_demand:
        # stored group summed, or computed in blocks: the same totals
        data["log_likelihood"] = xr.DataArray(
            result.log_likelihood_totals(), dims=("chain", "draw")
        )
    w = relabelled["weights"].transpose("chain", "draw", "component").values
    if w.shape[-1] > 1:
        data["sorted_weights"] = xr.DataArray(
            np.sort(w, axis=-1), dims=("chain", "draw", "rank")
        )
    return xr.Dataset(
        data, coords={"chain": relabelled["chain"], "draw": relabelled["draw"]}
    )


def _extreme(ds, reduce):
    """Max or min over every scalar of a Dataset, with its parameter name."""
    best_val, best_name = np.nan, ""
    for name, da in ds.data_vars.items():
        values = np.asarray(da.values, dtype=float)
        if values.size == 0 or not np.any(np.isfinite(values)):
            continue
        flat = np.where(np.isfinite(values), values, np.nan)
        idx = int(np.nanargmax(flat) if reduce == "max" else np.nanargmin(flat))
        val = float(flat.ravel()[idx])
        better = (
            np.isnan(best_val)
            or (reduce == "max" and val > best_val)
            or (reduce == "min" and val < best_val)
        )
        if better:
            best_val = val
            best_name = _param_name(name, da, idx)
    return best_val, best_name


def _param_name(name, da, flat_index):
    if da.ndim == 0:
        return name
    pos = np.unravel_index(flat_index, da.shape)
    labels = []
    for dim, i in zip(da.dims, pos, strict=True):
        coord = da.coords[dim].values[i] if dim in da.coords else i
        labels.append(str(coord))
    return f"{name}[{', '.join(labels)}]"


def _mcmc_convergence_checks(result, relabelled, n_chain):
    import arviz_stats as azs

    params = relabelled[[v for v in _PARAMS if v in relabelled]]
    invariant = _invariant_dataset(result, relabelled)
    dims = ["chain", "draw"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if n_chain >= 2:
            rhat = azs.rhat(params, sample_dims=dims)
            rhat_inv = azs.rhat(invariant, sample_dims=dims)
        ess_bulk = azs.ess(params, sample_dims=dims, method="bulk")
        ess_tail = azs.ess(params, sample_dims=dims, method="tail")
        ess_inv = xr.merge(
            [
                azs.ess(invariant, sample_dims=dims, method="bulk").rename(
                    {v: f"{v} (bulk)" for v in invariant.data_vars}
                ),
                azs.ess(invariant, sample_dims=dims, method="tail").rename(
                    {v: f"{v} (tail)" for v in invariant.data_vars}
                ),
            ]
        )
    ess_ok = ESS_PER_CHAIN * n_chain
    ess_fail = ESS_FAIL_SHARE * ess_ok
    checks = []
    if n_chain >= 2:
        r_val, r_name = _extreme(rhat, "max")
        ri_val, ri_name = _extreme(rhat_inv, "max")
        checks.append(
            _rhat_check(
                "rhat", "R-hat (max, relabelled parameters)", r_val, r_name, ri_val
            )
        )
        checks.append(
            _rhat_check(
                "rhat_invariant",
                "R-hat (max, label-invariant quantities)",
                ri_val,
                ri_name,
                None,
            )
        )
    else:
        checks.append(_one_chain_check())
    for name, label, ds in (
        ("ess_bulk", "ESS bulk (min, relabelled parameters)", ess_bulk),
        ("ess_tail", "ESS tail (min, relabelled parameters)", ess_tail),
        ("ess_invariant", "ESS (min, label-invariant quantities)", ess_inv),
    ):
        val, where = _extreme(ds, "min")
        status = _status(val, ess_ok, ess_fail, higher_is_better=True)
        checks.append(
            Check(
                name,
                label,
                val,
                f">= {ess_ok:g} (100 per chain)",
                status,
                (
                    f"The smallest effective sample size is {val:.0f} "
                    f"({where}); at least {ess_ok:g} are needed for reliable "
                    "means, intervals and R-hat."
                    if status != "ok"
                    else f"The smallest effective sample size is {val:.0f} ({where})."
                ),
                ""
                if status == "ok"
                else "Draw more (increase draws and tune) or run more chains.",
            )
        )
    return checks


def _one_chain_check():
    """The R-hat check of a single chain: convergence cannot be judged."""
    return Check(
        "rhat",
        "R-hat (needs two or more chains)",
        float("nan"),
        f"<= {RHAT_OK} (2+ chains)",
        "warn",
        "Convergence cannot be judged from a single chain: R-hat compares "
        "chains, and one chain stuck in one mode or region looks converged on "
        "its own. The effective sample sizes below are from that one chain.",
        "Run two or more chains (chains=4, the default), started apart.",
    )


def _rhat_check(name, label, value, where, invariant_value):
    status = _status(value, RHAT_OK, RHAT_FAIL, higher_is_better=False)
    if status == "ok":
        message = f"The chains agree (largest R-hat {value:.3f}, {where})."
        remedy = ""
    else:
        message = (
            f"The chains disagree: R-hat reaches {value:.3f} for {where} "
            f"(ok <= {RHAT_OK})."
        )
        remedy = "Run longer chains (more tune and draws)."
        inv = invariant_value
        if inv is not None and np.isfinite(inv) and status == "fail" and inv <= RHAT_OK:
            message += (
                " Label-invariant quantities agree across chains "
                f"(R-hat {inv:.3f}), so the disagreement is in the labelling "
                "of components, not in the fit."
            )
            remedy = (
                "Relabel the draws (relabel=True, the default) or use "
                "label-invariant summaries; see the label-switching check."
            )
        elif inv is not None and np.isfinite(inv) and inv > RHAT_OK:
            message += (
                " Label-invariant quantities disagree too "
                f"(R-hat {inv:.3f}): the chains have not converged to the "
                "same distribution."
            )
        elif status == "warn":
            message += (
                " A mild excess like this usually means too few draws for "
                "R-hat to settle."
            )
    return Check(name, label, value, f"<= {RHAT_OK}", status, message, remedy)


def _sampler_checks(result, stats, n_total):
    import arviz_stats as azs

    checks = []
    if "diverging" in stats:
        n_div = int(np.asarray(stats["diverging"].values, dtype=bool).sum())
        share = n_div / max(n_total, 1)
        status = (
            "ok"
            if n_div == 0
            else ("warn" if share <= DIVERGENCE_FAIL_SHARE else "fail")
        )
        checks.append(
            Check(
                "divergences",
                "Divergent transitions",
                n_div,
                "0",
                status,
                (
                    "No divergent transitions."
                    if n_div == 0
                    else (
                        f"{n_div} of {n_total} transitions ({share:.1%}) diverged: "
                        "the sampler met curvature it could not follow, so parts "
                        "of the posterior may be missed and estimates biased."
                    )
                ),
                ""
                if n_div == 0
                else (
                    "Raise target_accept (e.g. 0.95 or 0.99); if divergences "
                    "remain, the model is too flexible for the data: use fewer "
                    "components or a simpler covariance type."
                ),
            )
        )
    if "energy" in stats:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bfmi = np.asarray(
                azs.bfmi(stats["energy"].transpose("chain", "draw").values), dtype=float
            ).ravel()
        low = np.flatnonzero(bfmi < BFMI_OK)
        value = float(np.nanmin(bfmi))
        status = _status(value, BFMI_OK, BFMI_FAIL, higher_is_better=True)
        checks.append(
            Check(
                "bfmi",
                "E-BFMI (min over chains)",
                value,
                f">= {BFMI_OK}",
                status,
                (
                    "Energy transitions are efficient (E-BFMI >= "
                    f"{value:.2f} in every chain)."
                    if status == "ok"
                    else (
                        f"Chain(s) {_join(low)} have E-BFMI {value:.2f} < {BFMI_OK}: "
                        "momentum resampling explores the energy distribution "
                        "poorly, so tails may be missed."
                    )
                ),
                ""
                if status == "ok"
                else (
                    "Run longer warm-up (tune); if it persists, the posterior "
                    "has heavy tails or strong funnels: use fewer components or "
                    "stronger priors."
                ),
            )
        )
    depth_var = next(
        (v for v in ("maxdepth_reached", "reached_max_treedepth") if v in stats), None
    )
    if depth_var is not None:
        n_max = int(np.asarray(stats[depth_var].values, dtype=bool).sum())
        share = n_max / max(n_total, 1)
        checks.append(
            Check(
                "tree_depth",
                "Share of draws at maximum tree depth",
                share,
                "0",
                "ok" if n_max == 0 else "warn",
                (
                    "No trajectory hit the maximum tree depth."
                    if n_max == 0
                    else (
                        f"{n_max} of {n_total} trajectories ({share:.1%}) were cut "
                        "at the maximum tree depth: sampling is inefficient and "
                        "mixing may be slow."
                    )
                ),
                ""
                if n_max == 0
                else (
                    "Run longer warm-up; strongly correlated or badly scaled "
                    "parameters cause this (fewer components often help)."
                ),
            )
        )
    return checks


def _vi_checks(result):
    import arviz_stats  # noqa: F401 - registers the .azstats accessor

    checks = []
    tree = result.datatree
    if "fit_stats" not in tree.children:
        return checks
    fs = tree["fit_stats"].to_dataset()
    attrs = tree["fit_stats"].attrs
    if "converged" in attrs:
        conv = bool(int(attrs["converged"]))
        n_iter = int(attrs.get("n_iter", fs.sizes.get("iteration", 0)))
        checks.append(
            Check(
                "vi_converged",
                "Variational loss converged",
                conv,
                "True",
                "ok" if conv else "warn",
                (
                    f"The loss settled after {n_iter} iterations."
                    if conv
                    else (
                        f"The loss was still falling when fitting stopped at "
                        f"{n_iter} iterations: the approximation is not yet at "
                        "its optimum."
                    )
                ),
                "" if conv else "Increase max_iter, lower learning_rate, or use NUTS.",
            )
        )
    if "log_p" in fs and "log_q" in fs:
        # The importance ratios are p / q. ArviZ's psislw smooths exp(-x)
        # (it is written for LOO, whose ratios are 1 / likelihood), so it is
        # given log q - log p to fit the right tail of p / q.
        neg_lw = (fs["log_q"] - fs["log_p"]).transpose("chain", "draw")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, khat = neg_lw.azstats.psislw(r_eff=1.0, dim=["chain", "draw"])
        khat = float(np.asarray(khat))
        ok = khat <= VI_KHAT_OK
        fullrank = result.method == "fullrank_advi"
        if fullrank:
            why = (
                "even a full-rank Gaussian does not capture the posterior's "
                "shape (skewed or multimodal directions), so its intervals "
                "are unreliable"
            )
            remedy = (
                "Use NUTS (method='nuts') for uncertainty; use this fit for "
                "point estimates only."
            )
        else:
            why = (
                "mean-field ADVI typically under-states posterior spread, so "
                "its sds and intervals are too narrow; its means may still be "
                "fine"
            )
            remedy = (
                "Use NUTS (method='nuts') for uncertainty, or full-rank ADVI; "
                "use this fit for point estimates only."
            )
        checks.append(
            Check(
                "vi_khat",
                "Pareto k of the approximation (log p - log q)",
                khat,
                f"<= {VI_KHAT_OK}",
                "ok" if ok else "warn",
                (
                    f"The approximation is close to the posterior (k = {khat:.2f})."
                    if ok
                    else (
                        f"The approximation is far from the posterior (k = "
                        f"{khat:.2f} > {VI_KHAT_OK}): {why}."
                    )
                ),
                "" if ok else remedy,
            )
        )
    return checks


def _pareto_k_check(result) -> Check:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loo = result.loo(pointwise=True)
    except Exception as exc:  # noqa: BLE001 - reported as a check
        return Check(
            "pareto_k",
            "Pareto k (PSIS-LOO, max)",
            float("nan"),
            "good_k",
            "warn",
            f"PSIS-LOO could not be computed: {type(exc).__name__}: {exc}",
            "Check that the result has a log_likelihood group.",
        )
    k = np.asarray(loo.pareto_k.values, dtype=float).ravel()
    # A NaN k (importance ratios that overflow) is as bad as it gets.
    k = np.where(np.isnan(k), np.inf, k)
    good = float(loo.good_k)
    n_bad = int(np.sum(k > good))
    n_very = int(np.sum(k > PARETO_K_FAIL))
    kmax = float(np.max(k))
    status = "ok" if n_bad == 0 else ("fail" if n_very else "warn")
    if status == "ok":
        message = (
            f"Every observation has Pareto k <= {good:.2f}: the LOO estimate "
            f"(elpd_loo {loo.elpd:.1f}) is reliable."
        )
        remedy = ""
    else:
        worst = np.argsort(k)[::-1][: min(5, n_bad)]
        message = (
            f"{n_bad} of {k.size} observations have Pareto k > {good:.2f}"
            + (f" ({n_very} above 1)" if n_very else "")
            + f" (largest {kmax:.2f}, observations {_join(worst)}): they are "
            "influential, and elpd_loo is unreliable for them."
        )
        remedy = (
            "Look at those observations (outliers? a component of their own?); "
            "draw more, use NUTS rather than ADVI, or use K-fold cross-validation "
            "(arviz_stats.loo_kfold)."
        )
    return Check(
        "pareto_k",
        "Pareto k (PSIS-LOO, max)",
        kmax,
        f"<= {good:.2f} (ArviZ good_k)",
        status,
        message,
        remedy,
    )


def _label_switching(check, n_relabelled_now, n_chain, n_draw) -> Check:
    status = check.status
    message = check.message
    remedy = ""
    if check.status == "fail":
        remedy = (
            "Tune and draw longer, start every chain from the EM fit "
            "(init='em'), or use fewer components."
        )
    elif check.status == "warn":
        remedy = (
            "Use fewer components, an ordering constraint (order_means=), or "
            "label-invariant quantities."
        )
    if n_relabelled_now and status == "ok":
        status = "warn"
        message = (
            f"The stored draws were not relabelled, and {n_relabelled_now} of "
            f"{n_chain * n_draw} draws have switched labels, so per-component "
            "summaries of the stored posterior mix components (these checks "
            "used a relabelled copy). " + message
        )
        remedy = (
            "Fit with relabel=True (the default), or relabel the posterior with "
            "bayes_gmm.relabel.relabel before summarising it."
        )
    value = ", ".join(check.chain_status)
    return Check(
        "label_switching",
        "Label switching left after relabelling",
        value,
        "every chain ok or permuted",
        status,
        message,
        remedy,
    )


# ---------------------------------------------------------------------------
# EM bootstrap
# ---------------------------------------------------------------------------
def _diagnose_bootstrap(result: MixtureResult) -> Diagnosis:
    post = result.posterior
    n_boot = post.sizes["draw"]
    attrs = result.attrs
    checks = []
    n_failed = int(attrs.get("n_failed", 0))
    share_failed = n_failed / max(n_boot + n_failed, 1)
    checks.append(
        Check(
            "bootstrap_failures",
            "Replicates whose EM fit failed",
            n_failed,
            "0",
            "ok" if n_failed == 0 else ("warn" if share_failed < 0.1 else "fail"),
            (
                "Every replicate was fitted."
                if n_failed == 0
                else (
                    f"{n_failed} replicates failed (collapsed components) and "
                    "were redrawn; the bootstrap distribution under-represents "
                    "data sets on which the model breaks down."
                )
            ),
            "" if n_failed == 0 else "Use fewer components or a larger reg_covar.",
        )
    )
    share_aligned = float(attrs.get("share_realigned", 0.0))
    ok = share_aligned <= 0.01
    checks.append(
        Check(
            "bootstrap_alignment",
            "Replicates whose labels had to be realigned",
            share_aligned,
            "<= 0.01",
            "ok" if ok else "warn",
            (
                "Replicates kept the labels of the original fit."
                if ok
                else (
                    f"{share_aligned:.1%} of the replicates swapped components "
                    "and were realigned to the original fit: the components "
                    "are not well identified at this sample size, so "
                    "per-component standard errors are approximate."
                )
            ),
            ""
            if ok
            else "Use fewer components or interpret label-invariant quantities.",
        )
    )
    n = _n_obs(result)
    d = post.sizes["feature"]
    checks.append(
        _negligible_weight(
            result.datatree["point_estimate"].to_dataset()["weights"].values
            if "point_estimate" in result.datatree.children
            else post["weights"].mean(("chain", "draw")).values,
            n,
            d,
            posterior=False,
        )
    )
    desc = (
        f"an EM {attrs.get('kind', '')} bootstrap ({result.covariance_type}, "
        f"K={result.n_components}, {n_boot} replicates)"
    ).replace("  ", " ")
    return Diagnosis("bootstrap", desc, tuple(checks))
