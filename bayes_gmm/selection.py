"""Model selection: information criteria over a grid of mixtures.

For now this module holds the EM half of model selection:
:func:`fit_em_grid` fits :class:`~bayes_gmm.GaussianMixtureEM` for every
(covariance type, number of components) pair and tabulates the
log-likelihood, the number of free parameters, AIC, BIC and ICL. Each
criterion has a direction (:data:`CRITERIA`): the information criteria are
on the deviance scale (lower is better); criteria on the elpd scale (higher
is better, such as ``elpd_loo``) will join the table when Bayesian fits are
compared (``compare_models``), and :meth:`EMGrid.best` already honours the
direction of any column it knows.

A model whose fit fails (for example more components than samples) is
recorded in its row, with the error message and NaN criteria, and the grid
goes on, so one bad model does not lose the others.
"""

from __future__ import annotations

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
from bayes_gmm._validation import (
    BayesGMMWarning,
    ConvergenceWarning,
    check_data,
    check_n_components,
    check_random_state,
    seed_from,
    warn,
)
from bayes_gmm.em import GaussianMixtureEM

__all__ = [
    "CRITERIA",
    "EMGrid",
    "fit_em_grid",
    "em_criteria",
    "parse_components",
]

logger = logging.getLogger("bayes_gmm")

#: Direction of every criterion a selection table may hold: ``"min"`` when
#: lower is better (deviance scale), ``"max"`` when higher is better (elpd
#: scale).
CRITERIA: dict[str, str] = {
    "aic": "min",
    "bic": "min",
    "icl": "min",
    "elpd_loo": "max",
    "elpd_waic": "max",
}

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
        seed that refits that row exactly), ``fit_time`` (seconds) and
        ``error`` (None, or the message of a fit that failed, whose
        criteria are then NaN).
    fits : dict
        ``(covariance_type, n_components) -> GaussianMixtureEM`` for every
        model that was fitted.
    n_samples : int
        Number of samples the grid was fitted to.
    feature_names : list of str or None
        Column names of the data, when it had them.
    """

    table: pd.DataFrame
    fits: dict[tuple[str, int], GaussianMixtureEM] = field(default_factory=dict)
    n_samples: int = 0
    feature_names: list[str] | None = None

    def best(self, criterion: str = "bic") -> tuple[str, int]:
        """The (covariance_type, n_components) that optimises ``criterion``.

        Parameters
        ----------
        criterion : {"aic", "bic", "icl"}, default="bic"
            The criterion (lower is better for all three).

        Returns
        -------
        tuple of (str, int)
        """
        return best_row(self.table, criterion)

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
    log_prob = model.score_samples(X)
    resp = model.predict_proba(X)
    n = log_prob.shape[0]
    log_like = float(log_prob.sum())
    p = int(model.n_parameters())
    bic = -2.0 * log_like + p * math.log(n)
    with np.errstate(divide="ignore"):
        entropy_term = float(np.log(resp.max(axis=1)).sum())
    return {
        "log_likelihood": log_like,
        "n_parameters": p,
        "aic": -2.0 * log_like + 2.0 * p,
        "bic": bic,
        "icl": bic - 2.0 * entropy_term,
    }


def _fit_one_em(X, covariance_type, n_components, n_samples, seed, n_init, kwargs):
    """Fit one model of the grid; return (row, fitted model or None)."""
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
        with warnings.catch_warnings():
            # Non-convergence is reported once for the grid (and per row).
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X)
        row.update(em_criteria(model, X))
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
        row["fit_time"] = time.perf_counter() - start
        logger.info("EM fit of %s K=%d failed: %s", covariance_type, n_components, exc)
        return row, None
    row["converged"] = bool(model.converged_)
    row["n_iter"] = int(model.n_iter_)
    row["fit_time"] = time.perf_counter() - start
    return row, model


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
    done = 0
    for ctype in types:
        for k in ks:
            seed = _model_seed(base, ctype, k)
            row, model = _fit_one_em(data, ctype, k, n_samples, seed, n_init, em_kwargs)
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
    if table["error"].notna().all():
        raise ValueError(
            f"Every model of the grid failed; the first error was: "
            f"{table['error'].iloc[0]}"
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
