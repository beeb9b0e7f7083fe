"""Model selection: how many components, which covariance type.

* :func:`fit_em_grid` fits :class:`~bayes_gmm.GaussianMixtureEM` for every
  (covariance type, number of components) pair and tabulates the
  log-likelihood, the number of free parameters, AIC, BIC and ICL.
* :func:`compare_models` adds Bayesian fits (NUTS, ADVI) of the same grid
  with PSIS-LOO, WAIC and stacking weights, and returns a
  :class:`ModelComparison` that says in words which model each criterion
  picks, whether they agree, and which fits should not be trusted.
* :func:`bic_pick_stability` measures how many EM starts (``n_init``) the
  BIC pick needs before it no longer depends on the seed.

Sign conventions: every criterion has a direction (:data:`CRITERIA`). The
information criteria AIC, BIC, ICL, and ``looic`` / ``waic`` are on the
deviance scale (``-2 x`` a log score: lower is better); ``elpd_loo`` and
``elpd_waic`` are on the elpd scale (expected log predictive density: higher
is better). ``looic = -2 elpd_loo``.

A model whose fit fails (for example more components than samples) is
recorded in its row, with the error message and NaN criteria, and the grid
goes on, so one bad model does not lose the others.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bayes_gmm._covariance import get_covariance_type
from bayes_gmm._init import GridStarts
from bayes_gmm._validation import (
    BayesGMMWarning,
    ConvergenceWarning,
    DegenerateComponentWarning,
    check_data,
    check_n_components,
    check_random_state,
    check_scalar,
    seed_from,
    warn,
)
from bayes_gmm.em import GaussianMixtureEM, _is_dask

__all__ = [
    "BAYES_METHODS",
    "CRITERIA",
    "EMGrid",
    "ModelComparison",
    "bic_pick_stability",
    "compare_models",
    "em_criteria",
    "fit_em_grid",
    "parse_components",
]

logger = logging.getLogger("bayes_gmm")

#: Direction of every criterion a selection table may hold: ``"min"`` when
#: lower is better (deviance scale), ``"max"`` when higher is better (elpd
#: scale).
#: Bayesian methods :func:`compare_models` can fit besides EM.
BAYES_METHODS = ("nuts", "advi", "fullrank_advi")

CRITERIA: dict[str, str] = {
    "aic": "min",
    "bic": "min",
    "icl": "min",
    "elpd_loo": "max",
    "elpd_waic": "max",
    "looic": "min",
    "waic": "min",
}
# The per-method columns of a ModelComparison table, e.g. "nuts_elpd_loo".
for _m in BAYES_METHODS:
    CRITERIA.update(
        {
            f"{_m}_elpd_loo": "max",
            f"{_m}_elpd_waic": "max",
            f"{_m}_looic": "min",
            f"{_m}_waic": "min",
        }
    )
del _m

#: Relative tolerance under which two criterion values are a tie.
_TIE_RTOL = 1e-9

#: The criteria an EM grid computes, in the order they are reported.
EM_CRITERIA = ("aic", "bic", "icl")

#: Columns of :attr:`EMGrid.table`, in order.
EM_COLUMNS = (
    "covariance_type",
    "n_components",
    "log_likelihood",
    "n_parameters",
    "aic",
    "bic",
    "icl",
    "converged",
    "n_iter",
    "random_state",
    "fit_time",
    "error",
    "collapsed",
)


def best_row(table: pd.DataFrame, criterion: str) -> tuple[str, int]:
    """The (covariance_type, n_components) of the row that optimises a column.

    Parameters
    ----------
    table : pandas.DataFrame
        A selection table with ``covariance_type`` and ``n_components``
        columns and a column named ``criterion``.
    criterion : str
        One of :data:`CRITERIA`.

    Returns
    -------
    tuple of (str, int)
        The picked model. Values equal up to a relative 1e-9 (such as the
        identical full, diag and spherical fits of one-dimensional data)
        are ties, resolved in favour of fewer parameters, then of the first
        row.

    Raises
    ------
    ValueError
        If the criterion is unknown, not a column, or NaN in every row.
    """
    if criterion not in CRITERIA:
        raise ValueError(
            f"Invalid value for 'criterion': {criterion!r}. "
            f"Valid options are {sorted(CRITERIA)}."
        )
    if criterion not in table.columns:
        raise ValueError(
            f"The table has no {criterion!r} column; its criteria are "
            f"{sorted(c for c in table.columns if c in CRITERIA)}."
        )
    values = pd.to_numeric(table[criterion], errors="coerce").to_numpy(dtype=float)
    finite = np.isfinite(values)
    if not finite.any():
        raise ValueError(f"No model in the table has a finite {criterion!r}.")
    sign = 1.0 if CRITERIA[criterion] == "min" else -1.0
    score = np.where(finite, sign * values, np.inf)
    best = score.min()
    # Equal up to rounding (e.g. full, diag and spherical in one dimension):
    # the model with fewer parameters, then the first in the table.
    tied = np.flatnonzero(score <= best + _TIE_RTOL * max(1.0, abs(best)))
    if "n_parameters" in table.columns and len(tied) > 1:
        n_par = pd.to_numeric(table["n_parameters"], errors="coerce").to_numpy()
        tied = tied[np.argsort(n_par[tied], kind="stable")]
    row = table.iloc[tied[0]]
    return str(row["covariance_type"]), int(row["n_components"])


def _sound(table: pd.DataFrame, criterion: str, collapsed: str) -> pd.DataFrame:
    """The rows whose EM fit is not degenerate, for an EM criterion.

    All rows if the criterion is not an EM one, the table has no
    ``collapsed`` column, or no sound row has a value (mclust's NA).
    """
    if criterion not in EM_CRITERIA or collapsed not in table.columns:
        return table
    sound = table[~table[collapsed].fillna(False).astype(bool)]
    return sound if sound[criterion].notna().any() else table


#: A PSIS-LOO estimate with more than this share of observations above
#: ArviZ's good_k is not used to pick a model.
_BAD_K_SHARE = 0.1


def _reliable_loo(table: pd.DataFrame, criterion: str, n_samples: int) -> pd.DataFrame:
    """The rows whose PSIS-LOO estimate is usable, for a LOO criterion."""
    for suffix in ("_elpd_loo", "_looic"):
        if criterion.endswith(suffix):
            bad = f"{criterion[: -len(suffix)]}_n_bad_k"
            break
    else:
        return table
    if bad not in table.columns or n_samples <= 0:
        return table
    share = pd.to_numeric(table[bad], errors="coerce").astype(float) / n_samples
    ok = table[~(share > _BAD_K_SHARE)]
    return ok if ok[criterion].notna().any() else table


def _leading(table, n, criterion, error, collapsed) -> list[tuple[str, int]]:
    n = check_scalar("n", n, int, min_value=0)
    ok = table[table[error].isna()]
    if collapsed in ok.columns:
        ok = ok[~ok[collapsed].fillna(False).astype(bool)]
    values = pd.to_numeric(ok[criterion], errors="coerce").astype(float)
    ok = ok[np.isfinite(values)]
    ok = ok.assign(_v=values[np.isfinite(values)]).sort_values("_v", kind="stable")
    # groups of values equal up to rounding, each one model: the fewest
    # parameters, then the first row
    groups: list[list] = []
    for _, row in ok.iterrows():
        value = float(row["_v"])
        first = groups[-1][0]["_v"] if groups else None
        if first is not None and value - first <= _TIE_RTOL * max(1.0, abs(first)):
            groups[-1].append(row)
        else:
            groups.append([row])
    out = []
    for group in groups[:n]:
        row = min(group, key=lambda r: r["n_parameters"])
        out.append((str(row["covariance_type"]), int(row["n_components"])))
    return out


@dataclass
class EMGrid:
    """EM fits over a grid of covariance types and numbers of components.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (covariance_type, n_components), in grid order (types
        as given, K ascending), with columns ``log_likelihood`` (total over
        the samples), ``n_parameters``, ``aic``, ``bic``, ``icl`` (all three
        lower is better), ``converged``, ``n_iter``, ``random_state`` (the
        seed that refits that row exactly), ``fit_time`` (seconds),
        ``error`` (None, or the message of a fit that failed, whose
        criteria are then NaN) and ``collapsed`` (a covariance collapsed
        onto a point or a line: a degenerate optimum, left out of the
        picks; see :func:`bayes_gmm.diagnose`).
    fits : dict
        ``(covariance_type, n_components) -> GaussianMixtureEM`` for every
        model that was fitted.
    n_samples : int
        Number of samples the grid was fitted to.
    feature_names : list of str or None
        Column names of the data, when it had them.

    Examples
    --------
    >>> from bayes_gmm import fit_em_grid, make_mixture
    >>> X, _, _ = make_mixture(200, 2, 2, separation=6.0, random_state=0)
    >>> grid = fit_em_grid(X, range(1, 4), ("full", "spherical"), n_init=2,
    ...                    random_state=0)
    >>> grid.picks()["bic"]
    ('spherical', 2)
    >>> grid.best_model("bic").n_components
    2
    >>> grid.failed.empty
    True
    """

    table: pd.DataFrame
    fits: dict[tuple[str, int], GaussianMixtureEM] = field(default_factory=dict)
    n_samples: int = 0
    feature_names: list[str] | None = None

    def best(self, criterion: str = "bic") -> tuple[str, int]:
        """The (covariance_type, n_components) that optimises ``criterion``.

        Degenerate fits (``collapsed``) are left out unless every fit is.

        Parameters
        ----------
        criterion : {"aic", "bic", "icl"}, default="bic"
            The criterion (lower is better for all three).

        Returns
        -------
        tuple of (str, int)
        """
        return best_row(_sound(self.table, criterion, "collapsed"), criterion)

    def leading(self, n: int, criterion: str = "bic") -> list[tuple[str, int]]:
        """The ``n`` best distinct models by an EM criterion, best first.

        Failed and degenerate (``collapsed``) fits are skipped. Rows whose
        value ties the previous one within a relative 1e-9 (the full, diag
        and spherical fits of one-dimensional data are one model) count
        once, as the type with fewer parameters.

        Parameters
        ----------
        n : int
            How many models (fewer if the grid has fewer distinct ones).
        criterion : {"aic", "bic", "icl"}, default="bic"
            The criterion.

        Returns
        -------
        list of (str, int)
        """
        return _leading(self.table, n, criterion, "error", "collapsed")

    def picks(self) -> dict[str, tuple[str, int]]:
        """The model each criterion of the table picks.

        Returns
        -------
        dict
            ``criterion -> (covariance_type, n_components)`` for every
            criterion column with at least one finite value.
        """
        out = {}
        for name in CRITERIA:
            if name in self.table.columns and self.table[name].notna().any():
                out[name] = self.best(name)
        return out

    def best_model(self, criterion: str = "bic") -> GaussianMixtureEM:
        """The fitted estimator :meth:`best` picks."""
        return self.fits[self.best(criterion)]

    @property
    def failed(self) -> pd.DataFrame:
        """Rows whose fit raised, with their error messages."""
        return self.table[self.table["error"].notna()]


def parse_components(spec: str | int | Iterable[int]) -> list[int]:
    """Turn a components specification into a sorted list of distinct K.

    Parameters
    ----------
    spec : str, int or iterable of int
        ``"1-6"``, ``"3"``, ``"1,2,5"``, ``"2-4,8"``, an int or an iterable
        of ints.

    Returns
    -------
    list of int

    Raises
    ------
    ValueError
        If the specification cannot be read or holds a K < 1.

    Examples
    --------
    >>> parse_components("1-3,6")
    [1, 2, 3, 6]
    """
    if isinstance(spec, str):
        out = []
        parts = [p.strip() for p in spec.split(",")]
        for part in parts:
            bounds = [b.strip() for b in part.split("-")]
            try:
                if len(bounds) == 1:
                    out.append(int(bounds[0]))
                elif len(bounds) == 2:
                    lo, hi = int(bounds[0]), int(bounds[1])
                    if hi < lo:
                        raise ValueError
                    out.extend(range(lo, hi + 1))
                else:
                    raise ValueError
            except ValueError:
                raise ValueError(
                    f"Invalid components specification {spec!r}: expected "
                    "positive integers or ranges such as '1-6', '3' or '1,2,5'."
                ) from None
        values = out
    elif isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        values = [int(spec)]
    else:
        try:
            values = [int(k) for k in spec]
        except (TypeError, ValueError):
            raise ValueError(
                f"Invalid value for 'n_components': {spec!r}; expected an int, "
                "an iterable of ints or a string such as '1-6'."
            ) from None
    if not values:
        raise ValueError("'n_components' is empty: give at least one K.")
    if min(values) < 1:
        raise ValueError(
            f"Every number of components must be >= 1, got {min(values)} in {spec!r}."
        )
    return sorted(set(values))


def _check_types(covariance_types):
    if isinstance(covariance_types, str):
        covariance_types = [covariance_types]
    names = []
    for name in covariance_types:
        get_covariance_type(name)  # raises with the sorted valid options
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError("'covariance_types' is empty: give at least one type.")
    return names


def _validated_frame(X):
    """Validate X once for the whole grid; keep its column names.

    Returns the data as a float array, or as a float DataFrame when X had
    string column names (so every fit records ``feature_names_in_``).
    """
    if _is_dask(X):  # EM on Dask (see bayes_gmm._dask)
        from bayes_gmm._dask import grid_frame

        return grid_frame(X)
    probe = GaussianMixtureEM()
    arr = check_data(probe, X, reset=True, min_samples=2)
    names = getattr(probe, "feature_names_in_", None)
    if names is not None:
        names = [str(c) for c in names]
        return pd.DataFrame(arr, columns=names), arr, names
    return arr, arr, None


def _model_seed(base: int, covariance_type: str, n_components: int) -> int:
    """Seed of one model of the grid, independent of the rest of the grid.

    The same (base, type, K) always gets the same seed, whichever other
    models are in the grid and in whichever order they are fitted.
    """
    key = [base, zlib.crc32(covariance_type.encode()), n_components]
    return int(np.random.SeedSequence(key).generate_state(1)[0] >> 1)


def em_criteria(model: GaussianMixtureEM, X: np.ndarray) -> dict[str, float]:
    """Log-likelihood, number of parameters, AIC, BIC and ICL of an EM fit.

    One E-step gives all of them:

    .. math::

        \\mathrm{AIC} = -2\\log L + 2p,\\quad
        \\mathrm{BIC} = -2\\log L + p\\log n,\\quad
        \\mathrm{ICL} = \\mathrm{BIC} - 2\\sum_n \\log \\max_k \\tau_{nk}

    with :math:`p` from :func:`bayes_gmm._covariance.n_parameters`.

    Parameters
    ----------
    model : GaussianMixtureEM
        A fitted estimator.
    X : array-like of shape (n_samples, n_features)
        The data it was fitted to.

    Returns
    -------
    dict
        ``log_likelihood`` (total), ``n_parameters``, ``aic``, ``bic``,
        ``icl``.
    """
    if _is_dask(X):  # the same sums, in one pass over the blocks
        from bayes_gmm._dask import _sums

        n, log_like, entropy_term = _sums(model, X)
    else:
        log_prob = model.score_samples(X)
        resp = model.predict_proba(X)
        n = log_prob.shape[0]
        log_like = float(log_prob.sum())
        with np.errstate(divide="ignore"):
            entropy_term = float(np.log(resp.max(axis=1)).sum())
    p = int(model.n_parameters())
    bic = -2.0 * log_like + p * math.log(n)
    return {
        "log_likelihood": log_like,
        "n_parameters": p,
        "aic": -2.0 * log_like + 2.0 * p,
        "bic": bic,
        "icl": bic - 2.0 * entropy_term,
    }


def _fit_one_em(
    X, covariance_type, n_components, n_samples, seed, n_init, kwargs, grid=None
):
    """Fit one model of the grid; return (row, fitted model or None).

    ``grid``: the grid's shared candidate partitions
    (:class:`bayes_gmm._init.GridStarts`), or None for a search of its own.
    """
    row: dict[str, Any] = {
        "covariance_type": covariance_type,
        "n_components": n_components,
        "log_likelihood": np.nan,
        "n_parameters": np.nan,
        "aic": np.nan,
        "bic": np.nan,
        "icl": np.nan,
        "converged": False,
        "n_iter": np.nan,
        "random_state": seed,
        "fit_time": np.nan,
        "error": None,
    }
    start = time.perf_counter()
    try:
        check_n_components(n_components, n_samples)
        model = GaussianMixtureEM(
            n_components,
            covariance_type=covariance_type,
            n_init=n_init,
            random_state=seed,
            **kwargs,
        )
        model._grid_starts = grid
        with warnings.catch_warnings():
            # Non-convergence and degenerate fits are reported once for the
            # grid (and per row).
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", DegenerateComponentWarning)
            try:
                model.fit(X)
            finally:
                del model._grid_starts  # the fitted model does not keep it
        row.update(em_criteria(model, X))
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
        row["fit_time"] = time.perf_counter() - start
        logger.info("EM fit of %s K=%d failed: %s", covariance_type, n_components, exc)
        return row, None
    row["converged"] = bool(model.converged_)
    row["n_iter"] = int(model.n_iter_)
    row["collapsed"] = _is_collapsed(model)
    row["fit_time"] = time.perf_counter() - start
    return row, model


def _grid_starts(X, ks, base, em_kwargs):
    """The grid's shared candidate partitions (default starts only), or None."""
    if em_kwargs.get("init_params", "kmeans") != "kmeans" or any(
        em_kwargs.get(f"{p}_init") is not None
        for p in ("weights", "means", "precisions")
    ):
        return None
    fitted = [k for k in ks if k <= X.shape[0]]
    if fitted and _is_dask(X):  # the shared starts are drawn on a sample of rows
        from bayes_gmm._dask import grid_sample

        X = grid_sample(X, max(fitted), base)
    if not fitted or not np.all(np.isfinite(X)):
        return None  # the fits themselves say what is wrong
    rng = np.random.default_rng([base, 1])
    return GridStarts(np.asarray(X, dtype=float), max(fitted), rng)


def _model_list(rows):
    pairs = zip(rows["covariance_type"], rows["n_components"], strict=True)
    return ", ".join(f"{t} K={k}" for t, k in pairs)


def fit_em_grid(
    X,
    n_components: Iterable[int] | int | str = range(1, 7),
    covariance_types: Iterable[str] | str = ("full", "tied", "diag", "spherical"),
    *,
    n_init: int = 10,
    random_state=None,
    progress: Callable[[int, int, str, int, Mapping[str, Any]], None] | None = None,
    **em_kwargs,
) -> EMGrid:
    """Fit a Gaussian mixture by EM for every covariance type and K.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Data; a DataFrame's column names are kept by every fit.
    n_components : iterable of int, int or str, default=range(1, 7)
        The numbers of components (a string such as ``"1-6"`` is read by
        :func:`parse_components`).
    covariance_types : iterable of str, default=("full", "tied", "diag", \
"spherical")
        The covariance types.
    n_init : int, default=10
        EM starts per model (the best is kept).
    random_state : int, Generator or None, default=None
        Turned into one base seed, from which each model gets its own seed
        (recorded in the ``random_state`` column), independent of the other
        models in the grid.
    progress : callable, optional
        Called after each model as ``progress(done, total, covariance_type,
        n_components, row)`` where ``row`` is that model's table row.
    **em_kwargs
        Other :class:`~bayes_gmm.GaussianMixtureEM` parameters (``tol``,
        ``max_iter``, ``reg_covar``, ``init_params``, ...).

    Returns
    -------
    EMGrid
        ``.table`` (one row per model), ``.fits``, ``.best(criterion)`` and
        ``.picks()``.

    Raises
    ------
    ValueError
        For invalid data (with the location of the first NaN or inf), an
        unknown covariance type, an invalid K, or when every model fails
        (the message gives the first error).
    TypeError
        For an unknown EM parameter in ``em_kwargs``.

    Notes
    -----
    A model that cannot be fitted (for example K larger than the number of
    samples, or a covariance that collapses) is recorded with its error
    message and NaN criteria; the other models are still fitted. Models
    that hit ``max_iter`` have ``converged=False`` and one
    :class:`~bayes_gmm.ConvergenceWarning` lists them all.

    Examples
    --------
    >>> from bayes_gmm import make_mixture
    >>> X, _, _ = make_mixture(200, 2, random_state=0)
    >>> grid = fit_em_grid(X, range(1, 4), ("full", "spherical"), n_init=2,
    ...                    random_state=0)
    >>> grid.table.shape[0]
    6
    >>> grid.best("bic")[1]
    2
    """
    ks = parse_components(n_components)
    types = _check_types(covariance_types)
    for key in ("n_components", "covariance_type", "random_state"):
        if key in em_kwargs:
            raise TypeError(
                f"fit_em_grid sets {key!r} per model; do not pass it in em_kwargs."
            )
    GaussianMixtureEM(**em_kwargs)  # an unknown parameter raises TypeError here
    data, arr, names = _validated_frame(X)
    n_samples = arr.shape[0]
    base = seed_from(check_random_state(random_state))

    rows = []
    fits = {}
    total = len(types) * len(ks)
    logger.info(
        "EM grid: %d models (%s; K = %s), n_init=%d, %d samples",
        total,
        ", ".join(types),
        ", ".join(map(str, ks)),
        n_init,
        n_samples,
    )
    grid = _grid_starts(arr, ks, base, em_kwargs)
    done = 0
    for ctype in types:
        for k in ks:
            seed = _model_seed(base, ctype, k)
            row, model = _fit_one_em(
                data, ctype, k, n_samples, seed, n_init, em_kwargs, grid
            )
            rows.append(row)
            if model is not None:
                fits[(ctype, k)] = model
            done += 1
            logger.info(
                "EM grid %d/%d: %s K=%d %s (%.2f s)",
                done,
                total,
                ctype,
                k,
                "failed" if row["error"] else f"BIC {row['bic']:.2f}",
                row["fit_time"],
            )
            if progress is not None:
                progress(done, total, ctype, k, row)

    table = pd.DataFrame(rows, columns=list(EM_COLUMNS))
    table["n_components"] = table["n_components"].astype(int)
    table["converged"] = table["converged"].astype(bool)
    table["collapsed"] = table["collapsed"].fillna(False).astype(bool)
    if table["error"].notna().all():
        raise ValueError(
            f"Every model of the grid failed; the first error was: "
            f"{table['error'].iloc[0]}"
        )
    fitted = table[table["error"].isna()]
    if len(fitted) and fitted["collapsed"].all():
        warn(
            f"Every fitted model of the grid is degenerate ({_model_list(fitted)}: "
            "a component held up by reg_covar or with too few points, see "
            "GaussianMixtureEM.degenerate_), so the AIC/BIC/ICL picks are among "
            "degenerate fits and their criteria are artefacts. Use fewer "
            "components, other covariance types or a larger reg_covar.",
            DegenerateComponentWarning,
        )
    failed = table[table["error"].notna()]
    if len(failed):
        warn(
            f"{len(failed)} of {total} models could not be fitted "
            f"({_model_list(failed)}); their rows hold the error message and "
            f"NaN criteria. First error: {failed['error'].iloc[0]}",
            BayesGMMWarning,
        )
    not_converged = table[table["error"].isna() & ~table["converged"]]
    if len(not_converged):
        warn(
            f"EM did not converge within max_iter for: "
            f"{_model_list(not_converged)}. Their criteria may be off; increase "
            "max_iter or tol.",
            ConvergenceWarning,
        )
    return EMGrid(table=table, fits=fits, n_samples=n_samples, feature_names=names)


# ---------------------------------------------------------------------------
# compare_models: EM and Bayesian fits over a grid
# ---------------------------------------------------------------------------
#: Columns a Bayesian method adds to the table, each prefixed ``<method>_``.
BAYES_COLUMNS = (
    "elpd_loo",
    "elpd_loo_se",
    "p_loo",
    "n_bad_k",
    "good_k",
    "pareto_k_max",
    "elpd_waic",
    "elpd_waic_se",
    "p_waic",
    "looic",
    "looic_se",
    "waic",
    "waic_se",
    "weight",
    "divergences",
    "max_rhat",
    "converged",
    "fit_time",
    "error",
)
_EM_RENAMES = {
    "converged": "em_converged",
    "n_iter": "em_n_iter",
    "random_state": "em_random_state",
    "fit_time": "em_fit_time",
    "error": "em_error",
    "collapsed": "em_collapsed",
}
_METHOD_NAMES = {
    "em": "EM",
    "nuts": "NUTS",
    "advi": "ADVI",
    "fullrank_advi": "full-rank ADVI",
}


def _label(ctype: str, k: int) -> str:
    return f"{ctype} K={k}"


@dataclass
class ModelComparison:
    """EM and Bayesian fits of a grid of mixtures, with criteria and a verdict.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (covariance_type, n_components); see
        :func:`compare_models` for the columns.
    fits : dict
        ``(method, covariance_type, n_components) -> fitted estimator`` for
        every fit that succeeded (method ``"em"`` for the EM fits).
    loo : dict
        ``(method, covariance_type, n_components) -> arviz_stats.ELPDData``
        (pointwise PSIS-LOO) of every Bayesian fit.
    stacking : dict
        ``method -> DataFrame`` returned by :func:`arviz_stats.compare`
        (stacking weights, elpd differences and their se) across the fits
        of that method.
    methods : tuple of str
        The methods fitted (``"em"`` first).
    n_samples : int
        Number of samples.
    em_grid : EMGrid
        The EM part.
    bayes_rows : ndarray of int or None
        The rows (sorted indices into X) that every Bayesian fit used when
        ``compare_models`` subsampled them (``bayes_max_samples``); None
        when they used all rows.

    Examples
    --------
    >>> from bayes_gmm import compare_models, make_mixture
    >>> X, _, _ = make_mixture(200, 2, 2, separation=6.0, random_state=0)
    >>> cmp = compare_models(X, range(1, 4), methods=("em",), n_init=2,
    ...                      random_state=0, progressbar=False)
    >>> cmp.best("bic")
    ('full', 2)
    >>> cmp.table.set_index("n_components")["picked_by"].loc[2]
    'aic, bic, icl'
    """

    table: pd.DataFrame
    fits: dict = field(default_factory=dict)
    loo: dict = field(default_factory=dict)
    stacking: dict = field(default_factory=dict)
    methods: tuple = ("em",)
    n_samples: int = 0
    em_grid: EMGrid | None = None
    bayes_rows: np.ndarray | None = None

    @property
    def bayes_n_samples(self) -> int:
        """Rows the Bayesian fits saw (fewer than ``n_samples`` if subsampled)."""
        return self.n_samples if self.bayes_rows is None else len(self.bayes_rows)

    @property
    def bayes_methods(self) -> tuple:
        """The Bayesian methods of the comparison."""
        return tuple(m for m in self.methods if m != "em")

    def best(self, criterion: str = "bic") -> tuple[str, int]:
        """The (covariance_type, n_components) that optimises ``criterion``.

        EM criteria (AIC, BIC, ICL) leave out degenerate fits, whose
        covariance collapsed onto a point or a line (``em_collapsed``): their
        likelihood is an artefact of ``reg_covar`` (mclust reports NA for
        such fits). PSIS-LOO (``<method>_elpd_loo``, ``<method>_looic``)
        leaves out fits whose estimate is unreliable: more than
        ``_BAD_K_SHARE`` (10%) of the observations with a Pareto k above
        ArviZ's ``good_k`` (e.g. an ADVI fit whose approximation is far from
        the posterior). Either falls back to every row when no other has a
        value.

        Parameters
        ----------
        criterion : str, default="bic"
            ``"aic"``, ``"bic"``, ``"icl"`` or a Bayesian column such as
            ``"nuts_elpd_loo"`` or ``"advi_elpd_waic"``.
        """
        table = _sound(self.table, criterion, "em_collapsed")
        return best_row(
            _reliable_loo(table, criterion, self.bayes_n_samples), criterion
        )

    def picks(self) -> dict[str, tuple[str, int]]:
        """The model each criterion picks.

        Returns
        -------
        dict
            ``criterion -> (covariance_type, n_components)`` for AIC, BIC,
            ICL and every Bayesian method's ``elpd_loo`` and ``elpd_waic``
            (the deviance-scale ``looic`` and ``waic`` pick the same models
            and are left out).
        """
        names = ["aic", "bic", "icl"]
        for m in self.bayes_methods:
            names += [f"{m}_elpd_loo", f"{m}_elpd_waic"]
        out = {}
        for name in names:
            if name in self.table.columns and self.table[name].notna().any():
                out[name] = self.best(name)
        return out

    def best_model(self, criterion: str = "bic"):
        """The fitted estimator :meth:`best` picks (of the criterion's method)."""
        method = "em"
        for m in self.bayes_methods:
            if criterion.startswith(f"{m}_"):
                method = m
        return self.fits[(method, *self.best(criterion))]

    def _row(self, ctype, k):
        t = self.table
        return t[(t["covariance_type"] == ctype) & (t["n_components"] == k)].iloc[0]

    def _paired_difference(self, method, a, b):
        """elpd_loo(a) - elpd_loo(b) and the se of the paired difference."""
        la, lb = self.loo.get((method, *a)), self.loo.get((method, *b))
        if la is None or lb is None or la.elpd_i is None or lb.elpd_i is None:
            return np.nan, np.nan
        diff = np.asarray(la.elpd_i).ravel() - np.asarray(lb.elpd_i).ravel()
        return float(diff.sum()), float(np.sqrt(diff.size * np.var(diff)))

    def untrusted(self) -> list[str]:
        """Plain-language reasons not to trust some fits' numbers.

        Returns
        -------
        list of str
            One entry per fit with divergences, Pareto k above ArviZ's
            threshold, an unconverged fit (EM, ADVI loss, or NUTS R-hat above
            1.01) or an error.
        """
        out = []
        t = self.table
        for _, row in t.iterrows():
            name = _label(row["covariance_type"], int(row["n_components"]))
            if isinstance(row.get("em_error"), str):
                out.append(f"{name} EM: failed ({row['em_error']})")
            elif not bool(row.get("em_converged", True)):
                out.append(f"{name} EM: did not converge within max_iter")
            if bool(row.get("em_collapsed", False)):
                out.append(
                    f"{name} EM: a covariance collapsed onto a point or a line "
                    "(a degenerate optimum; its AIC/BIC/ICL are meaningless)"
                )
            for m in self.bayes_methods:
                err = row.get(f"{m}_error")
                label = f"{name} {_METHOD_NAMES[m]}"
                if isinstance(err, str):
                    out.append(f"{label}: failed ({err})")
                    continue
                reasons = []
                div = row.get(f"{m}_divergences")
                if div is not None and np.isfinite(div) and div > 0:
                    reasons.append(f"{int(div)} divergences")
                bad = row.get(f"{m}_n_bad_k")
                if bad is not None and np.isfinite(bad) and bad > 0:
                    reasons.append(
                        f"{int(bad)} Pareto k > {row[f'{m}_good_k']:.2f} "
                        f"(max {row[f'{m}_pareto_k_max']:.2f})"
                    )
                rhat = row.get(f"{m}_max_rhat")
                if rhat is not None and np.isfinite(rhat) and rhat > 1.01:
                    reasons.append(f"R-hat {rhat:.3f}")
                conv = row.get(f"{m}_converged")
                if m != "nuts" and conv is not None and conv is not pd.NA:
                    if not bool(conv):
                        reasons.append("loss not converged")
                if reasons:
                    out.append(f"{label}: " + "; ".join(reasons))
        return out

    def verdict(self) -> str:
        """Which model each criterion picks, whether they agree, what to distrust.

        Returns
        -------
        str
            A few sentences: the BIC pick; for each Bayesian method its LOO
            pick, whether it agrees with BIC and, if not, whether the LOO
            difference between the two is within 2 standard errors of the
            paired difference (then the data do not tell them apart); the
            models within 2 se of the LOO best; and the fits whose numbers
            should not be trusted (divergences, high Pareto k, not
            converged, failed).
        """
        t = self.table
        types = ", ".join(pd.unique(t["covariance_type"]))
        ks = sorted(set(int(k) for k in t["n_components"]))
        lines = [
            f"Compared {len(t)} models ({types}; K = {_k_range(ks)}) on "
            f"{self.n_samples} samples with "
            f"{', '.join(_METHOD_NAMES[m] for m in self.methods)}."
        ]
        if self.bayes_rows is not None and self.bayes_methods:
            lines.append(
                f"The Bayesian fits used a random subsample of "
                f"{self.bayes_n_samples:,} of the {self.n_samples:,} rows (the same "
                "rows for every fit, so their LOO and WAIC compare with each other, "
                "on that subsample); EM used all rows."
            )
        picks = self.picks()
        if "bic" not in picks:
            lines.append("No EM fit succeeded, so BIC picks nothing.")
            return "\n".join(lines)
        bic = picks["bic"]
        others = ", ".join(
            f"{c.upper()} picks {_label(*picks[c])}"
            for c in ("aic", "icl")
            if c in picks
        )
        lines.append(f"BIC picks {_label(*bic)} ({others}).")
        if "em_collapsed" in t.columns and t["em_collapsed"].astype(bool).any():
            bad = t[t["em_collapsed"].astype(bool)]
            lines.append(
                f"Left out of the AIC, BIC and ICL picks: {_model_list(bad)}, "
                "whose EM fit is degenerate (a covariance collapsed onto a point "
                "or a line, so its likelihood and criteria are artefacts)."
            )
        for m in self.bayes_methods:
            name = _METHOD_NAMES[m]
            key = f"{m}_elpd_loo"
            if key not in picks:
                lines.append(f"{name}: no fit gave a LOO estimate.")
                continue
            loo = picks[key]
            row = self._row(*loo)
            weight = row.get(f"{m}_weight")
            wtxt = f", stacking weight {weight:.2f}" if np.isfinite(weight) else ""
            if loo == bic:
                lines.append(
                    f"{name} LOO picks {_label(*loo)} (elpd_loo "
                    f"{row[key]:.1f} ± {row[f'{m}_elpd_loo_se']:.1f}{wtxt}): "
                    "BIC and LOO agree."
                )
            else:
                diff, se = self._paired_difference(m, loo, bic)
                if not np.isfinite(diff):
                    lines.append(
                        f"{name} LOO picks {_label(*loo)}{wtxt}, BIC picks "
                        f"{_label(*bic)}, which has no {name} LOO estimate."
                    )
                elif diff <= 2 * se:
                    simpler = min(
                        (loo, bic), key=lambda p: self._row(*p)["n_parameters"]
                    )
                    lines.append(
                        f"{name} LOO picks {_label(*loo)}{wtxt}, but its elpd is "
                        f"only {diff:.1f} above BIC's {_label(*bic)} (se of the "
                        f"difference {se:.1f}): within 2 se, so the data do not "
                        f"tell them apart; the simpler {_label(*simpler)} is a "
                        "reasonable choice."
                    )
                else:
                    lines.append(
                        f"{name} LOO picks {_label(*loo)}{wtxt}, and its elpd is "
                        f"{diff:.1f} above BIC's {_label(*bic)} (se of the "
                        f"difference {se:.1f}, more than 2 se): LOO clearly "
                        "prefers it for prediction; BIC, which penalises "
                        "parameters more, prefers the smaller model."
                    )
            close = []
            for _, r in t.iterrows():
                pair = (r["covariance_type"], int(r["n_components"]))
                if pair == loo or not np.isfinite(r.get(key, np.nan)):
                    continue
                diff, se = self._paired_difference(m, loo, pair)
                if np.isfinite(diff) and diff <= 2 * se:
                    close.append(_label(*pair))
            if close:
                lines.append(f"Within 2 se of the {name} LOO best: {', '.join(close)}.")
        bad = self.untrusted()
        if bad:
            lines.append("Do not trust the numbers of: " + "; ".join(bad) + ".")
        elif self.bayes_methods:
            lines.append(
                "No fit has divergences, Pareto k above ArviZ's threshold or "
                "convergence problems."
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.verdict()

    def __repr__(self) -> str:
        return (
            f"ModelComparison({len(self.table)} models, methods={self.methods}, "
            f"picks={self.picks()})"
        )

    def _repr_html_(self) -> str:
        import html

        verdict = "<br>".join(html.escape(line) for line in self.verdict().splitlines())
        return f"<p>{verdict}</p>" + self.table.to_html(
            float_format=lambda v: f"{v:.4g}"
        )

    def plot(self, **kwargs):
        """Criteria against K (:func:`bayes_gmm.plots.plot_criteria`).

        Parameters
        ----------
        **kwargs
            Passed to :func:`~bayes_gmm.plots.plot_criteria`; by default the
            AIC, BIC and ICL panels and one ``elpd_loo`` panel per Bayesian
            method.

        Returns
        -------
        ndarray of Axes
        """
        from bayes_gmm.plots import plot_criteria

        kwargs.setdefault(
            "elpd",
            tuple(
                f"{m}_elpd_loo"
                for m in self.bayes_methods
                if f"{m}_elpd_loo" in self.table.columns
                and self.table[f"{m}_elpd_loo"].notna().any()
            ),
        )
        return plot_criteria(self.table, **kwargs)


def _k_range(ks):
    if len(ks) > 2 and ks == list(range(ks[0], ks[-1] + 1)):
        return f"{ks[0]}-{ks[-1]}"
    return ", ".join(map(str, ks))


class _Progress:
    """A rich progress bar over the models, or nothing (progressbar=False)."""

    def __init__(self, total, enabled):
        self.total = total
        self._bar = None
        self._task = None
        if enabled:
            try:
                from rich.progress import Progress
            except ImportError:  # pragma: no cover - rich comes with PyMC
                logger.info("rich is not installed; progress is logged instead")
            else:
                self._bar = Progress(transient=False)

    def __enter__(self):
        if self._bar is not None:
            self._bar.__enter__()
            self._task = self._bar.add_task("compare_models", total=self.total)
        return self

    def advance(self, text):
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=text)

    def extend(self, n):
        """Add ``n`` steps (the Bayesian fits, known once EM has ranked)."""
        self.total += n
        if self._bar is not None:
            self._bar.update(self._task, total=self.total)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False


def _is_collapsed(model) -> bool:
    """True if an EM fit is degenerate.

    A covariance collapsed onto a point or a line (relative to the data's
    spread), or a component in ``degenerate_`` (held up by ``reg_covar``, or
    too few points for its covariance).
    """
    from bayes_gmm.diagnostics import _collapsed

    return bool(np.any(getattr(model, "degenerate_", False))) or (
        _collapsed(model).status == "fail"
    )


def _check_candidates(candidates, bayes_methods):
    """Validate ``candidates`` of :func:`compare_models` before any fitting."""
    if candidates is None:
        return
    if isinstance(candidates, Mapping):
        for m, spec in candidates.items():
            if m not in BAYES_METHODS:
                raise ValueError(
                    f"Invalid method in 'candidates': {m!r}. Valid options are "
                    f"{sorted(BAYES_METHODS)}."
                )
            if m not in bayes_methods:
                raise ValueError(
                    f"'candidates' names {m!r}, which is not in 'methods'."
                )
            if not isinstance(spec, int | np.integer):
                for pair in spec:
                    if not (
                        isinstance(pair, tuple | list)
                        and len(pair) == 2
                        and isinstance(pair[1], int | np.integer)
                    ):
                        raise ValueError(
                            f"'candidates' for {m!r} must be a count or a list of "
                            f"(covariance_type, K) pairs; got {pair!r}."
                        )
            else:
                check_scalar(f"candidates[{m!r}]", int(spec), int, min_value=0)
    else:
        check_scalar("candidates", candidates, int, min_value=0)


def _plan(candidates, bayes_methods, grid, types, ks) -> dict[str, list]:
    """Map each method to the (covariance_type, K) it fits, in order."""
    everything = [(c, k) for c in types for k in ks]
    plan = {}
    for m in bayes_methods:
        if candidates is None:
            plan[m] = everything
            continue
        spec = candidates.get(m, 0) if isinstance(candidates, Mapping) else candidates
        if isinstance(spec, int | np.integer):
            plan[m] = grid.leading(int(spec))
            continue
        chosen = [(str(c), int(k)) for c, k in spec]
        unknown = [p for p in chosen if p not in everything]
        if unknown:
            raise ValueError(
                f"'candidates' for {m!r} lists models outside the grid: "
                f"{', '.join(_label(*p) for p in unknown)}."
            )
        plan[m] = list(dict.fromkeys(chosen))
    return plan


def _bayes_subsample(data, n, max_samples, base):
    """The data of the Bayesian fits: (data or a row subsample, rows or None)."""
    if max_samples is None or (n <= max_samples and not _is_dask(data)):
        return data, None
    rows = None
    if n > max_samples:
        rng = np.random.default_rng([base, 3])
        rows = np.sort(rng.choice(n, size=max_samples, replace=False))
    if _is_dask(data):  # few rows: all of them, in memory
        from bayes_gmm._dask import take_rows

        return take_rows(data, np.arange(n) if rows is None else rows), rows
    if isinstance(data, pd.DataFrame):
        return data.iloc[rows].reset_index(drop=True), rows
    return data[rows], rows


def _make_bayes(k, ctype, method, seed, settings):
    """The Bayesian estimator of one model (a seam for tests)."""
    from bayes_gmm.bayes import GaussianMixtureBayes

    return GaussianMixtureBayes(
        k, covariance_type=ctype, method=method, random_state=seed, **settings
    )


def _bayes_row(method):
    row = {f"{method}_{c}": np.nan for c in BAYES_COLUMNS}
    row[f"{method}_error"] = None
    row[f"{method}_converged"] = pd.NA
    return row


def _fit_one_bayes(data, ctype, k, method, seed, settings):
    """Fit one Bayesian model; return (row, estimator or None, ELPDData or None)."""
    row = _bayes_row(method)
    start = time.perf_counter()
    try:
        est = _make_bayes(k, ctype, method, seed, settings)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(data)
    except Exception as exc:  # noqa: BLE001 - any failure is recorded in its row
        row[f"{method}_error"] = f"{type(exc).__name__}: {exc}"
        row[f"{method}_fit_time"] = time.perf_counter() - start
        logger.info("%s fit of %s K=%d failed: %s", method, ctype, k, exc)
        return row, None, None
    row[f"{method}_fit_time"] = time.perf_counter() - start
    result = est.result_
    elpd = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            elpd = result.loo(pointwise=True)
            w = result.waic()
    except Exception as exc:  # noqa: BLE001
        row[f"{method}_error"] = f"LOO/WAIC failed: {type(exc).__name__}: {exc}"
        return row, est, None
    k_values = np.asarray(elpd.pareto_k.values, dtype=float).ravel()
    k_values = np.where(np.isnan(k_values), np.inf, k_values)  # NaN k: worst
    row.update(
        {
            f"{method}_elpd_loo": float(elpd.elpd),
            f"{method}_elpd_loo_se": float(elpd.se),
            f"{method}_p_loo": float(elpd.p),
            f"{method}_good_k": float(elpd.good_k),
            f"{method}_n_bad_k": int(np.sum(k_values > elpd.good_k)),
            f"{method}_pareto_k_max": float(np.max(k_values)),
            f"{method}_elpd_waic": w["elpd_waic"],
            f"{method}_elpd_waic_se": w["se"],
            f"{method}_p_waic": w["p_waic"],
            f"{method}_looic": -2.0 * float(elpd.elpd),
            f"{method}_looic_se": 2.0 * float(elpd.se),
            f"{method}_waic": -2.0 * w["elpd_waic"],
            f"{method}_waic_se": 2.0 * w["se"],
        }
    )
    tree = result.datatree
    if "sample_stats" in tree.children and "diverging" in tree["sample_stats"].dataset:
        row[f"{method}_divergences"] = int(
            np.asarray(tree["sample_stats"].dataset["diverging"].values, bool).sum()
        )
    if "fit_stats" in tree.children and "converged" in tree["fit_stats"].attrs:
        row[f"{method}_converged"] = bool(int(tree["fit_stats"].attrs["converged"]))
    post = result.posterior
    if post.sizes.get("chain", 1) > 1:
        import arviz_stats

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rhat = arviz_stats.rhat(
                post[["weights", "means", "covariances"]], sample_dims=["chain", "draw"]
            )
        values = np.concatenate([np.ravel(v.values) for v in rhat.data_vars.values()])
        if np.any(np.isfinite(values)):
            row[f"{method}_max_rhat"] = float(np.nanmax(values))
            row[f"{method}_converged"] = bool(np.nanmax(values) <= 1.01)
    return row, est, elpd


def _stacking(method, elpds, rows):
    """Stacking weights across the fits of one method (arviz_stats.compare)."""
    import arviz_stats

    if not elpds:
        return None
    if len(elpds) == 1:
        (key,) = elpds
        rows[key][f"{method}_weight"] = 1.0
        return None
    names = {_label(*key): key for key in elpds}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cmp = arviz_stats.compare(
                {name: elpds[key] for name, key in names.items()},
                method="stacking",
                round_to="none",
            )
    except Exception as exc:  # noqa: BLE001 - weights stay NaN
        logger.warning("stacking weights for %s could not be computed: %s", method, exc)
        return None
    for name, key in names.items():
        rows[key][f"{method}_weight"] = float(cmp.loc[name, "weight"])
    return cmp


def compare_models(
    X,
    n_components: Iterable[int] | int | str = range(1, 7),
    covariance_types: Iterable[str] | str = ("full",),
    methods: Iterable[str] | str = ("em", "nuts"),
    *,
    n_init: int = 10,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    random_state=None,
    progressbar: bool = True,
    bayes_kwargs: Mapping[str, Any] | None = None,
    em_kwargs: Mapping[str, Any] | None = None,
    candidates: int | Mapping[str, Any] | None = None,
    em_grid: EMGrid | None = None,
    callback: Callable[..., None] | None = None,
    bayes_max_samples: int | None = 20_000,
) -> ModelComparison:
    """Fit a grid of mixtures by EM and Bayesian methods, and compare them.

    EM is always fitted (:func:`fit_em_grid`); each Bayesian method in
    ``methods`` fits :class:`~bayes_gmm.GaussianMixtureBayes` for every
    (covariance type, K). For each Bayesian fit the table gets PSIS-LOO
    (:func:`arviz_stats.loo`; for ADVI its importance-corrected version),
    WAIC (:func:`bayes_gmm.result.waic`; ArviZ 1 has none) and the stacking
    weight of :func:`arviz_stats.compare` across that method's fits.

    **Sign convention.** ``elpd_loo`` and ``elpd_waic`` are expected log
    predictive densities: *higher is better*. Beside them, ``looic = -2
    elpd_loo`` and ``waic = -2 elpd_waic`` are on the deviance scale of AIC,
    BIC and ICL as scikit-learn reports them: *lower is better* (mclust
    reports BIC with the opposite sign, higher is better). :data:`CRITERIA`
    records each direction.

    **Pareto k threshold.** ``<method>_n_bad_k`` counts the observations
    whose PSIS Pareto k exceeds ArviZ's ``good_k = min(1 - 1/log10(S),
    0.7)`` for S posterior draws (0.7 from S = 2154 draws on; 0.64 for 600
    draws); their elpd estimates are unreliable.

    **How many EM starts.** On Old Faithful the BIC pick over the four
    covariance types and K = 1..6 is tied K=3 for all 10 seeds tried at
    every n_init from 1 to 20 with the default starts (and every seed
    reaches the same best BIC, 2314.30, from n_init = 1). With
    ``init_params="random_from_data"`` it takes n_init >= 5: 6, 9, 10, 10
    and 10 of 10 seeds agree at n_init = 1, 2, 5, 10, 20 (see
    :func:`bic_pick_stability`). At n_init = 20 one seed finds a degenerate
    diag K=6 optimum (a component collapsed onto seven points that share
    one waiting time) whose BIC, 2304.3, is below tied K=3's 2314.5: such
    fits are marked in ``em_collapsed`` and left out of the picks. The
    default ``n_init=10`` is on the safe side.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Data; validated as for EM (non-numeric columns and the location of
        the first NaN or inf are reported).
    n_components : iterable of int, int or str, default=range(1, 7)
        The numbers of components (``"1-6"`` is read by
        :func:`parse_components`).
    covariance_types : iterable of str, default=("full",)
        The covariance types.
    methods : iterable of str, default=("em", "nuts")
        ``"em"`` (always fitted) and any of ``"nuts"``, ``"advi"``,
        ``"fullrank_advi"``. A NUTS fit (nutpie) compiles nothing and takes
        seconds on small data; an ADVI fit compiles a PyTensor graph first
        (tens of seconds).
    n_init : int, default=10
        EM starts per model.
    draws, tune, chains : int, default=1000, 1000, 4
        Passed to every Bayesian fit (for ADVI, ``draws`` is the number of
        draws of the approximation).
    random_state : int, Generator or None, default=None
        One base seed; each (method, type, K) gets its own seed (in the
        ``em_random_state`` column for EM), independent of the rest of the
        grid.
    progressbar : bool, default=True
        Show a progress bar over the models (rich); progress is also
        logged (logger ``"bayes_gmm"``, INFO).
    bayes_kwargs : mapping, optional
        Other :class:`~bayes_gmm.GaussianMixtureBayes` parameters
        (``priors``, ``target_accept``, ``sampler``, ``max_iter``, ...).
    em_kwargs : mapping, optional
        Other :class:`~bayes_gmm.GaussianMixtureEM` parameters.
    candidates : int or mapping, optional
        Which models get Bayesian fits. None (default): every model of the
        grid. An int ``n``: the ``n`` best distinct models by EM BIC
        (:meth:`EMGrid.leading`; failed and degenerate fits skipped), for
        every Bayesian method. A mapping ``method -> n`` or ``method ->
        [(covariance_type, K), ...]`` chooses per method (a method left out
        gets no fits). The other rows hold NaN in that method's columns.
    em_grid : EMGrid, optional
        EM fits to reuse (from :func:`fit_em_grid` on the same data)
        instead of fitting them again; its models then define the grid, and
        ``n_components``, ``covariance_types``, ``n_init`` and
        ``em_kwargs`` are not used.
    bayes_max_samples : int or None, default=20_000
        The Bayesian fits use a random subsample of this many rows when X
        has more (drawn once from ``random_state``, the same rows for every
        Bayesian fit, so their LOO, WAIC and stacking weights compare with
        each other); EM always uses all rows. The comparison records the
        rows (``bayes_rows``), its verdict says so, and each Bayesian fit's
        ``result_.attrs["subsample"]`` holds ``{"rows": n, "of": N}``. A
        NUTS fit costs time in proportion to the rows: 20,000 rows keep the
        default grid to minutes. None: all rows (numpy input only; a dask
        array is always subsampled, as it may not fit in memory).
    callback : callable, optional
        Called around every Bayesian fit as ``callback(event, method,
        covariance_type, n_components, info)``: ``event="start"`` with
        ``info={"random_state": seed}``, then ``event="done"`` with
        ``info`` holding ``random_state``, ``row`` (the method's columns of
        the table row), ``estimator`` (None if the fit failed) and
        ``seconds``.

    Returns
    -------
    ModelComparison
        ``.table`` has one row per (covariance_type, n_components):
        ``log_likelihood`` (EM, total), ``n_parameters``, ``aic``, ``bic``,
        ``icl``, ``em_converged``, ``em_n_iter``, ``em_random_state``,
        ``em_fit_time``, ``em_error``, ``em_collapsed`` (a covariance
        collapsed onto a point or a line: a degenerate optimum whose
        criteria mean nothing, see :func:`bayes_gmm.diagnose`); for each
        Bayesian method ``m``:
        ``m_elpd_loo``, ``m_elpd_loo_se``, ``m_p_loo``, ``m_n_bad_k``,
        ``m_good_k``, ``m_pareto_k_max``, ``m_elpd_waic``,
        ``m_elpd_waic_se``, ``m_p_waic``, ``m_looic``, ``m_looic_se``,
        ``m_waic``, ``m_waic_se``, ``m_weight`` (stacking), ``m_divergences``
        (NUTS), ``m_max_rhat`` (NUTS, relabelled draws), ``m_converged``,
        ``m_fit_time``, ``m_error``; and ``picked_by`` (the criteria that
        pick the row). ``.picks()``, ``.verdict()`` (also ``str()``),
        ``.plot()``, ``.fits``, ``.loo``, ``.stacking``.

    Raises
    ------
    ValueError
        For invalid data or arguments, or if every EM fit fails.
    TypeError
        For an unknown parameter in ``bayes_kwargs`` or ``em_kwargs``.

    Notes
    -----
    A model whose fit fails is recorded in its row (``em_error`` or
    ``<method>_error``, with NaN criteria) and the others are still fitted.

    Examples
    --------
    >>> from bayes_gmm import make_mixture
    >>> X, _, _ = make_mixture(150, 2, 2, separation=6.0, random_state=0)
    >>> cmp = compare_models(X, range(1, 4), methods=("em",), n_init=2,
    ...                      random_state=0, progressbar=False)
    >>> cmp.picks()["bic"]
    ('full', 2)
    >>> print(cmp.verdict().splitlines()[1])
    BIC picks full K=2 (AIC picks full K=2, ICL picks full K=2).
    """
    if isinstance(methods, str):
        methods = [methods]
    methods = list(methods)
    valid = ("em", *BAYES_METHODS)
    for m in methods:
        if not isinstance(m, str) or m not in valid:
            raise ValueError(
                f"Invalid value in 'methods': {m!r}. Valid options are {sorted(valid)}."
            )
    bayes_methods = [m for m in BAYES_METHODS if m in methods]
    if em_grid is not None:
        if not isinstance(em_grid, EMGrid):
            raise TypeError(
                f"'em_grid' must be an EMGrid (from fit_em_grid), got "
                f"{type(em_grid).__name__}."
            )
        types = list(dict.fromkeys(em_grid.table["covariance_type"]))
        ks = sorted(set(int(k) for k in em_grid.table["n_components"]))
    else:
        ks = parse_components(n_components)
        types = _check_types(covariance_types)
    n_init = check_scalar("n_init", n_init, int, min_value=1)
    settings = {
        "draws": check_scalar("draws", draws, int, min_value=1),
        "tune": check_scalar("tune", tune, int, min_value=0),
        "chains": check_scalar("chains", chains, int, min_value=1),
        "progressbar": False,
    }
    bayes_kwargs = dict(bayes_kwargs or {})
    for key in ("n_components", "covariance_type", "method", "random_state"):
        if key in bayes_kwargs:
            raise TypeError(
                f"compare_models sets {key!r} per model; do not pass it in "
                "bayes_kwargs."
            )
    settings.update(bayes_kwargs)
    em_kwargs = dict(em_kwargs or {})
    data, arr, names = _validated_frame(X)
    if em_grid is not None and em_grid.n_samples != arr.shape[0]:
        raise ValueError(
            f"'em_grid' was fitted to {em_grid.n_samples} samples, but X has "
            f"{arr.shape[0]}: pass the data the grid was fitted to."
        )
    if bayes_max_samples is not None:
        bayes_max_samples = check_scalar(
            "bayes_max_samples", bayes_max_samples, int, min_value=2
        )
    elif _is_dask(arr) and bayes_methods:
        raise ValueError(
            "bayes_max_samples=None would load the whole dask array into memory "
            "for the Bayesian fits; give the number of rows to subsample."
        )
    if bayes_methods:
        # An unknown parameter raises TypeError here, before any fitting.
        _make_bayes(1, types[0], bayes_methods[0], 0, settings)
    _check_candidates(candidates, bayes_methods)
    base = seed_from(check_random_state(random_state))
    bayes_data, bayes_rows = data, None
    if bayes_methods:
        bayes_data, bayes_rows = _bayes_subsample(
            data, arr.shape[0], bayes_max_samples, base
        )
    n_models = len(types) * len(ks)

    with _Progress(n_models if em_grid is None else 0, progressbar) as bar:

        def em_progress(done, _total, ctype, k, row):
            bar.advance(f"EM {_label(ctype, k)}")

        grid = em_grid
        if grid is None:
            grid = fit_em_grid(
                data,
                ks,
                types,
                n_init=n_init,
                random_state=base,
                progress=em_progress,
                **em_kwargs,
            )
        plan = _plan(candidates, bayes_methods, grid, types, ks)
        total = sum(len(v) for v in plan.values())
        bar.extend(total)
        rows = {
            (r["covariance_type"], int(r["n_components"])): {
                ("em_" + c if c in _EM_RENAMES else c): v
                for c, v in r.items()
                if c not in _EM_RENAMES
            }
            | {_EM_RENAMES[c]: r[c] for c in _EM_RENAMES}
            for r in grid.table.to_dict("records")
        }
        fits = {("em", *key): model for key, model in grid.fits.items()}
        for row in rows.values():
            row["em_collapsed"] = bool(row.get("em_collapsed", False))
            for m in bayes_methods:
                row.update(_bayes_row(m))
        elpds_all = {}
        stacking = {}
        done = 0
        for m in bayes_methods:
            elpds = {}
            for ctype, k in plan[m]:
                seed = _model_seed(base, f"{m}:{ctype}", k)
                if callback is not None:
                    callback("start", m, ctype, k, {"random_state": seed})
                start = time.perf_counter()
                row, est, elpd = _fit_one_bayes(bayes_data, ctype, k, m, seed, settings)
                if est is not None and bayes_rows is not None:
                    est.result_.attrs["subsample"] = json.dumps(
                        {"rows": len(bayes_rows), "of": int(arr.shape[0])}
                    )
                rows[(ctype, k)].update(row)
                if est is not None:
                    fits[(m, ctype, k)] = est
                if elpd is not None:
                    elpds[(ctype, k)] = elpd
                    elpds_all[(m, ctype, k)] = elpd
                done += 1
                logger.info(
                    "compare_models %d/%d: %s %s %s",
                    done,
                    total,
                    _METHOD_NAMES[m],
                    _label(ctype, k),
                    "failed"
                    if row[f"{m}_error"]
                    else f"elpd_loo {row[f'{m}_elpd_loo']:.2f}",
                )
                bar.advance(f"{_METHOD_NAMES[m]} {_label(ctype, k)}")
                if callback is not None:
                    callback(
                        "done",
                        m,
                        ctype,
                        k,
                        {
                            "random_state": seed,
                            "row": row,
                            "estimator": est,
                            "seconds": time.perf_counter() - start,
                        },
                    )
            stacking[m] = _stacking(m, elpds, rows)
    order = [(c, k) for c in types for k in ks]
    table = pd.DataFrame([rows[key] for key in order])
    em_cols = [
        "covariance_type",
        "n_components",
        "log_likelihood",
        "n_parameters",
        "aic",
        "bic",
        "icl",
        *_EM_RENAMES.values(),
    ]
    bayes_cols = [f"{m}_{c}" for m in bayes_methods for c in BAYES_COLUMNS]
    table = table[em_cols + bayes_cols]
    comparison = ModelComparison(
        table=table,
        fits=fits,
        loo=elpds_all,
        stacking={m: v for m, v in stacking.items() if v is not None},
        methods=("em", *bayes_methods),
        n_samples=arr.shape[0],
        em_grid=grid,
        bayes_rows=bayes_rows,
    )
    picked = {key: [] for key in order}
    for crit, pair in comparison.picks().items():
        picked[pair].append(crit)
    table["picked_by"] = [", ".join(picked[key]) for key in order]
    for m in bayes_methods:
        failed = table[table[f"{m}_error"].notna()]
        if len(failed):
            warn(
                f"{len(failed)} of {len(plan[m])} {_METHOD_NAMES[m]} fits failed "
                f"({_model_list(failed)}); their rows hold the error message. "
                f"First error: {failed[f'{m}_error'].iloc[0]}",
                BayesGMMWarning,
            )
    return comparison


# ---------------------------------------------------------------------------
# How many EM starts does the BIC pick need?
# ---------------------------------------------------------------------------
def bic_pick_stability(
    X,
    n_inits: Iterable[int] = (1, 2, 5, 10, 20),
    seeds: Iterable[int] = range(10),
    *,
    n_components: Iterable[int] | int | str = range(1, 7),
    covariance_types: Iterable[str] | str = ("full", "tied", "diag", "spherical"),
    skip_collapsed: bool = True,
    **em_kwargs,
) -> pd.DataFrame:
    """How often the BIC pick is the same across seeds, for each n_init.

    For every ``n_init`` and seed, :func:`fit_em_grid` is run over the grid
    and its BIC pick recorded. The pick that most seeds agree on at the
    largest ``n_init`` is the reference.

    On Old Faithful (four types, K = 1..6, 10 seeds; measured with this
    package's starts of November 2026): with ``init_params=
    "random_from_data"``, 6, 9, 10, 10 and 10 of 10 seeds pick tied K=3 at
    n_init = 1, 2, 5, 10, 20 (so ``stable_n_init = 5``); at n_init = 20 one
    seed's best diag K=6 fit is degenerate (a component collapsed onto
    seven points sharing one waiting time) with BIC 2304.3 below tied K=3's
    2314.5, and would be picked with ``skip_collapsed=False``. With the
    default starts every seed picks tied K=3 from n_init = 1 on.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Data.
    n_inits : iterable of int, default=(1, 2, 5, 10, 20)
        Numbers of EM starts to try.
    seeds : iterable of int, default=range(10)
        ``random_state`` values of the grid fits.
    n_components : iterable of int, int or str, default=range(1, 7)
        The numbers of components.
    covariance_types : iterable of str, default=("full", "tied", "diag", \
"spherical")
        The covariance types.
    skip_collapsed : bool, default=True
        Leave degenerate fits (a covariance collapsed onto a point or a
        line, see :func:`bayes_gmm.diagnose`) out of the pick, as
        :meth:`ModelComparison.best` does.
    **em_kwargs
        Other :class:`~bayes_gmm.GaussianMixtureEM` parameters (for example
        ``init_params``).

    Returns
    -------
    pandas.DataFrame
        One row per ``n_init``: ``n_seeds``, ``modal_pick`` (e.g. ``"tied
        K=3"``), ``agreement`` (share of seeds whose pick is the modal one),
        ``n_distinct`` (different picks), ``agrees_with_reference`` (share of
        seeds picking the reference), ``all_agree`` (every seed picks the
        reference), ``picks`` (each seed's pick, in seed order),
        ``best_bic`` (the lowest BIC over seeds) and ``seconds``.
        ``attrs["reference"]`` is the reference pick and
        ``attrs["stable_n_init"]`` the smallest ``n_init`` from which every
        larger one tried also has every seed agree with it (None if the
        largest does not).

    Examples
    --------
    >>> from bayes_gmm import make_mixture
    >>> X, _, _ = make_mixture(90, 3, 2, separation=8.0, random_state=0)
    >>> table = bic_pick_stability(X, n_inits=(1, 2), seeds=range(2),
    ...                            n_components=range(1, 4),
    ...                            covariance_types=("full",))
    >>> table["all_agree"].tolist()
    [True, True]
    >>> table.attrs["stable_n_init"]
    1
    """
    inits = sorted({check_scalar("n_init", int(v), int, min_value=1) for v in n_inits})
    seed_list = list(seeds)
    if not inits or not seed_list:
        raise ValueError("'n_inits' and 'seeds' must not be empty.")
    data, _arr, _names = _validated_frame(X)
    ks = parse_components(n_components)
    types = _check_types(covariance_types)
    results = []
    for n_init in inits:
        start = time.perf_counter()
        picks, bics = [], []
        for seed in seed_list:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", BayesGMMWarning)
                grid = fit_em_grid(
                    data, ks, types, n_init=n_init, random_state=seed, **em_kwargs
                )
            table = grid.table
            if skip_collapsed:
                table = _sound(table, "bic", "collapsed")
            picks.append(_label(*best_row(table, "bic")))
            bics.append(float(table["bic"].min()))
        results.append((n_init, picks, bics, time.perf_counter() - start))
        logger.info("bic_pick_stability n_init=%d: %s", n_init, picks)
    last = pd.Series(results[-1][1]).value_counts()
    reference = str(last.index[0])
    rows = []
    for n_init, picks, bics, seconds in results:
        counts = pd.Series(picks).value_counts()
        rows.append(
            {
                "n_init": n_init,
                "n_seeds": len(picks),
                "modal_pick": str(counts.index[0]),
                "agreement": float(counts.iloc[0] / len(picks)),
                "n_distinct": int(counts.size),
                "agrees_with_reference": float(
                    np.mean([p == reference for p in picks])
                ),
                "all_agree": bool(all(p == reference for p in picks)),
                "picks": ", ".join(picks),
                "best_bic": float(min(bics)),
                "seconds": seconds,
            }
        )
    table = pd.DataFrame(rows)
    stable = None
    for i in range(len(table) - 1, -1, -1):
        if not table["all_agree"].iloc[i]:
            break
        stable = int(table["n_init"].iloc[i])
    table.attrs["reference"] = reference
    table.attrs["stable_n_init"] = stable
    return table
