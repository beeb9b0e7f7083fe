"""A self-contained HTML report of a ``bayes-gmm`` run.

:func:`write_report` turns the run's summary (the content of
``summary.json``), its selection table, the chosen model's parameter
comparison, the diagnoses and the PNG figures already in the output
directory into ``index.html``, with the figures embedded, so the file can be
mailed or archived on its own. Sections: data, settings, model selection
(criteria table, picks, BIC vs LOO verdict), the Bayesian fits, the chosen
model (EM estimates, then every method's estimates with EM bootstrap
standard errors and posterior intervals), diagnostics, failures and the
figures.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayes_gmm._covariance import get_covariance_type

__all__ = ["write_report", "render_report"]

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em;
     border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { padding: 0.2em 0.7em; border-bottom: 1px solid #eee; text-align: right; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
td.pick { background: #fff2a8; font-weight: bold; }
td.warn, tr.flag td { color: #b00020; }
pre { background: #f8f8f8; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #555; font-size: 0.9em; }
"""

_FIGURE_CAPTIONS = {
    "clusters": "The data coloured by component of the BIC-chosen model (EM), with "
    "its 1, 2 and 3 standard-deviation ellipses (opacity by weight; marker size by "
    "assignment certainty).",
    "pairs": "Every pair of features, with the marginal ellipses of the chosen model.",
    "criteria": "AIC, BIC and ICL against the number of components, one line per "
    "covariance type (lower is better), and elpd LOO \u00b1 1 se of the candidates "
    "each Bayesian method fitted (higher is better); the star is each criterion's "
    "pick.",
    "covariance_types": "The best model (by BIC) of each covariance type.",
    "density": "The fitted density of the chosen model: for one feature, the "
    "histogram, the posterior predictive density with its credible band and the EM "
    "density; for two or more, contours of the log posterior predictive density "
    "(dashed: EM).",
    "posterior_ellipses": "Two-sd ellipses of 50 posterior draws of the chosen model "
    "(how uncertain positions and shapes are), the EM ellipses dashed on top.",
    "uncertainty": "Where the clustering is unsure: every point coloured and sized "
    "by the posterior sd of the responsibility of its most probable component (EM "
    "only: 1 - its largest responsibility).",
    "comparison": "Every parameter of the chosen model by every method: EM "
    "estimate \u00b1 2 bootstrap se, posterior mean and credible interval of each "
    "Bayesian method (flagged rows in red).",
}


def time_detail(inference: dict) -> list[str]:
    """Where a Bayesian fit's time went: ["compile 61.0 s", "sampling 9.8 s"]."""
    detail = []
    if "compile_seconds" in inference:
        detail.append(
            "compiled model reused"
            if inference.get("compile_reused")
            else f"compile {inference['compile_seconds']:.1f} s"
        )
    if "sampling_seconds" in inference:
        detail.append(f"sampling {inference['sampling_seconds']:.1f} s")
    if "fit_seconds" in inference:
        detail.append(f"optimisation {inference['fit_seconds']:.1f} s")
    return detail


def _e(value) -> str:
    return html.escape(str(value))


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{value:.2f}"
    return _e(value)


def _bayes_methods(table: pd.DataFrame) -> list[str]:
    """Bayesian methods with elpd columns in the table (``<method>_elpd_loo``)."""
    return [
        c[: -len("_elpd_loo")]
        for c in table.columns
        if c.endswith("_elpd_loo") and f"{c}_se" in table.columns
    ]


def _method_name(method: str) -> str:
    return {
        "em": "EM",
        "nuts": "NUTS",
        "advi": "ADVI",
        "fullrank_advi": "full-rank ADVI",
    }.get(method, method)


def _criterion_name(crit: str) -> str:
    """'BIC' for 'bic', 'elpd LOO (NUTS)' for 'nuts_elpd_loo'."""
    if crit in ("aic", "bic", "icl"):
        return crit.upper()
    for base, label in (("elpd_loo", "elpd LOO"), ("elpd_waic", "elpd WAIC")):
        if crit == base:
            return label
        if crit.endswith("_" + base):
            return f"{label} ({_method_name(crit[: -len(base) - 1])})"
    return crit


def _criteria_table(table: pd.DataFrame, picks: Mapping) -> str:
    cols = [
        ("covariance_type", "covariance"),
        ("n_components", "K"),
        ("log_likelihood", "log-lik"),
        ("n_parameters", "n par"),
        ("aic", "AIC"),
        ("bic", "BIC"),
        ("icl", "ICL"),
        ("converged", "converged"),
        ("em_converged", "EM converged"),
        ("n_iter", "iterations"),
        ("em_n_iter", "EM iterations"),
    ]
    cols = [(c, label) for c, label in cols if c in table.columns]
    methods = _bayes_methods(table)
    loo_picks = {}
    for m in methods:
        values = pd.to_numeric(table[f"{m}_elpd_loo"], errors="coerce")
        if values.notna().any():
            best = table.loc[values.idxmax()]
            loo_picks[m] = (best["covariance_type"], int(best["n_components"]))
    head = "".join(
        f'<th class="{"l" if c == "covariance_type" else ""}">{_e(label)}</th>'
        for c, label in cols
    )
    for m in methods:
        head += (
            f"<th>elpd LOO ({_e(_method_name(m))})</th>"
            f"<th>p LOO</th><th>high Pareto k</th>"
            f"<th>elpd WAIC ({_e(_method_name(m))})</th>"
        )
    body = []
    for _, row in table.iterrows():
        key = (row["covariance_type"], int(row["n_components"]))
        cells = []
        for c, _label in cols:
            value = row[c]
            cls = "l" if c == "covariance_type" else ""
            pick = picks.get(c)
            if pick and (pick["covariance_type"], pick["n_components"]) == key:
                cls = "pick"
            integer = ("n_components", "n_parameters", "n_iter", "em_n_iter")
            if c in integer and pd.notna(value):
                text = str(int(value))
            else:
                text = _fmt(None if pd.isna(value) else value)
            cells.append(f'<td class="{cls}">{text}</td>')
        for m in methods:
            elpd, se = row[f"{m}_elpd_loo"], row[f"{m}_elpd_loo_se"]
            error = row.get(f"{m}_error")
            cls = "pick" if loo_picks.get(m) == key else ""
            if isinstance(error, str) and error:
                cells.append(f'<td title="{_e(error)}">failed</td>' + "<td></td>" * 3)
                continue
            if pd.isna(elpd):
                cells.append("<td>-</td>" * 4)
                continue
            bad = row.get(f"{m}_n_bad_k", row.get(f"{m}_n_bad_pareto_k"))
            waic, waic_se = row.get(f"{m}_elpd_waic"), row.get(f"{m}_elpd_waic_se")
            cells.append(
                f'<td class="{cls}">{elpd:.2f} &plusmn; {se:.2f}</td>'
                f"<td>{_fmt(row.get(f'{m}_p_loo'))}</td>"
                f'<td class="{"warn" if pd.notna(bad) and bad > 0 else ""}">'
                f"{'-' if pd.isna(bad) else int(bad)}</td>"
                f"<td>{_fmt(waic)} &plusmn; {_fmt(waic_se)}</td>"
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _array_html(values, row_labels=None, col_labels=None) -> str:
    arr = np.atleast_1d(np.asarray(values, dtype=float))
    if arr.ndim == 1:
        arr = arr[None, :]
    rows = []
    if col_labels is not None:
        rows.append(
            "<tr><th></th>" + "".join(f"<th>{_e(c)}</th>" for c in col_labels) + "</tr>"
        )
    for i, r in enumerate(arr):
        label = _e(row_labels[i]) if row_labels is not None else ""
        rows.append(
            f'<tr><th class="l">{label}</th>'
            + "".join(f"<td>{v:.4g}</td>" for v in r)
            + "</tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


def _chosen_html(chosen: Mapping, columns: Sequence[str]) -> str:
    k = chosen["n_components"]
    comps = [f"component {i}" for i in range(k)]
    parts = [
        f"<p><b>{_e(chosen['covariance_type'])}, K={k}</b> "
        f"(EM {'converged' if chosen.get('converged') else 'did not converge'} "
        f"in {chosen.get('n_iter')} iterations)</p>",
        "<h3>Weights</h3>",
        _array_html(chosen["weights"], ["weight"], comps),
        "<h3>Means</h3>",
        _array_html(chosen["means"], comps, columns),
    ]
    ctype = get_covariance_type(chosen["covariance_type"])
    means = np.asarray(chosen["means"], dtype=float)
    chol = ctype.to_cholesky(
        np.asarray(chosen["covariances"], dtype=float), *means.shape
    )
    full = chol @ np.swapaxes(chol, -1, -2)
    parts.append(
        "<h3>Covariance matrices</h3><p class='note'>Written out in full for each "
        f"component; the '{_e(ctype.name)}' type has "
        f"{ctype.n_covariance_parameters(*means.shape)} free covariance "
        "parameters.</p>"
    )
    for i in range(k):
        parts.append(f"<p>component {i}</p>" + _array_html(full[i], columns, columns))
    return "".join(parts)


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_e(path.stem)}" src="data:image/png;base64,{data}">'


def _frame_html(frame: pd.DataFrame, flag_columns: Sequence[str] = ()) -> str:
    """A DataFrame as an HTML table; rows with a true flag column are marked."""
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    body = []
    for _, row in frame.iterrows():
        flagged = any(
            bool(row[c]) for c in flag_columns if c in row and pd.notna(row[c])
        )
        cells = []
        for c in frame.columns:
            value = row[c]
            if isinstance(value, (bool, np.bool_)):
                text = "yes" if value else ""
            elif isinstance(value, (float, np.floating)):
                text = "-" if not np.isfinite(value) else f"{value:.4g}"
            elif value is None or (not isinstance(value, str) and pd.isna(value)):
                text = "-"
            else:
                text = _e(value)
            cls = "l" if isinstance(value, str) else ""
            cells.append(f'<td class="{cls}">{text}</td>')
        body.append(
            f'<tr class="{"flag" if flagged else ""}">' + "".join(cells) + "</tr>"
        )
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _flag_columns(frame: pd.DataFrame) -> list[str]:
    return [
        c
        for c in frame.columns
        if frame[c].dtype == bool and ("flag" in str(c) or "outside" in str(c))
    ]


def _diagnosis_html(diagnosis) -> str:
    html_repr = getattr(diagnosis, "_repr_html_", None)
    if callable(html_repr):
        try:
            return html_repr()
        except Exception:  # noqa: BLE001 - fall back to the plain text
            pass
    return f"<pre>{_e(str(diagnosis))}</pre>"


def _bayes_html(bayes: Mapping) -> str:
    """The Bayesian fits: which candidates, why, how long, which file."""
    parts = [
        "<p>EM ranks every model of the grid; the Bayesian methods are run only "
        "for the leading candidates by EM BIC (each costs seconds to minutes, "
        "where EM costs milliseconds):</p><ul>"
    ]
    for method, models in bayes.get("candidates", {}).items():
        names = ", ".join(
            f"{_e(m['covariance_type'])}, K={m['n_components']}" for m in models
        )
        parts.append(f"<li><b>{_e(_method_name(method))}</b>: {names}</li>")
    parts.append("</ul>")
    rows = []
    for f in bayes.get("fits", []):
        detail = time_detail(f.get("inference") or {})
        status = "failed: " + _e(f["error"]) if f.get("error") else "ok"
        seconds = f.get("seconds")
        rows.append(
            f"<tr><td class='l'>{_e(_method_name(f['method']))}</td>"
            f"<td class='l'>{_e(f['covariance_type'])}</td><td>{f['n_components']}</td>"
            f"<td>{'-' if seconds is None else f'{seconds:.1f}'}</td>"
            f"<td class='l'>{_e(', '.join(detail))}</td>"
            f"<td class='l'>{status}</td>"
            f"<td class='l'>{_e(f.get('file') or f.get('save_error') or '-')}</td>"
            "</tr>"
        )
    parts.append(
        "<table><tr><th class='l'>method</th><th class='l'>covariance</th><th>K</th>"
        "<th>seconds</th><th class='l'>where the time went</th>"
        "<th class='l'>status</th><th class='l'>posterior file (netCDF)</th></tr>"
        + "".join(rows)
        + "</table>"
    )
    return "".join(parts)


def render_report(
    summary: Mapping,
    table: pd.DataFrame,
    figures: Mapping[str, Path],
    sections: Sequence[tuple[str, str]] = (),
    *,
    comparison: pd.DataFrame | None = None,
    diagnoses: Mapping[str, Any] | None = None,
) -> str:
    """The HTML text of the report.

    Parameters
    ----------
    summary : mapping
        The run summary (what ``summary.json`` holds): ``data``,
        ``settings``, ``picks``, ``chosen_by_bic``, ``failed`` and, when
        Bayesian methods ran, ``bayesian`` (candidates, fits, verdict).
    table : pandas.DataFrame
        The selection table (EM criteria, and ``<method>_elpd_loo`` columns
        with their ``_se`` for the Bayesian fits).
    figures : mapping
        Figure name -> PNG path, embedded in this order.
    sections : sequence of (str, str)
        Extra (title, HTML body) sections, placed before the figures.
    comparison : pandas.DataFrame, optional
        The chosen model's parameters by method
        (:func:`bayes_gmm.comparison.compare_fits`).
    diagnoses : mapping, optional
        Fit label -> :class:`~bayes_gmm.diagnostics.Diagnosis`.

    Returns
    -------
    str
    """
    data = summary["data"]
    settings = summary["settings"]
    picks = summary["picks"]
    bayes = summary.get("bayesian") or {}
    out = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        "<title>bayes-gmm report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Gaussian mixture report</h1>",
        f"<p class='note'>bayes_gmm {_e(summary.get('bayes_gmm_version', ''))}</p>",
        "<h2>Data</h2>",
        f"<p>{_e(data['source'])}: {data['n_samples']} rows, columns "
        f"{_e(', '.join(data['columns']))}.</p>",
    ]
    describe = data.get("describe")
    if describe:
        stats = ("mean", "sd", "min", "max")
        out.append(
            _array_html(
                [[describe[c][s] for s in stats] for c in data["columns"]],
                data["columns"],
                stats,
            )
        )
    if data.get("standardized"):
        out.append(
            "<p><b>Standardised</b>: every column was centred on its mean and divided "
            "by its standard deviation; parameters, criteria and figures are in "
            "those units (the summary above is of the standardised data).</p>"
        )
        out.append(
            _array_html(
                [list(data["center"].values()), list(data["scale"].values())],
                ["mean", "sd"],
                list(data["center"]),
            )
        )
    else:
        out.append("<p>Not standardised: columns are used in their own units.</p>")
    ks = settings["n_components"]
    out += [
        "<h2>Settings</h2>",
        f"<p>EM with {settings['n_init']} starts per model (the best kept), seed "
        f"{settings['seed']}; K in {_e(ks)}; covariance types "
        f"{_e(', '.join(settings['covariance_types']))}.</p>",
    ]
    if "methods" in settings:
        methods = settings["methods"]
        parts = [f"Methods: {_e(', '.join(_method_name(m) for m in methods))}"]
        if "nuts" in methods:
            parts.append(
                f"NUTS: {settings['chains']} chains of {settings['draws']} draws "
                f"after {settings['tune']} warm-up iterations"
            )
        if any(m.endswith("advi") for m in methods):
            parts.append(f"ADVI: {settings['draws']} draws of the approximation")
        parts.append(
            f"EM standard errors from {settings['n_boot']} bootstrap replicates"
            if settings["n_boot"]
            else "no EM bootstrap"
        )
        parts.append(f"{settings['ci_prob']:.0%} credible intervals")
        out.append("<p>" + "; ".join(parts) + ".</p>")
    out += [
        "<h2>Model selection</h2>",
        "<p class='note'>AIC, BIC and ICL are on the deviance scale: lower is "
        "better. AIC = -2 log L + 2p, BIC = -2 log L + p log n, ICL = BIC - 2 "
        "&sum; log max<sub>k</sub> &tau;<sub>nk</sub> (BIC penalised by the "
        "uncertainty of the classification). elpd LOO (PSIS leave-one-out) and elpd "
        "WAIC are on the log scale: higher is better (-2 elpd is on the scale of "
        "the others). Each criterion's pick is highlighted.</p>",
        "<ul>",
    ]
    for crit, p in picks.items():
        name = _e(_criterion_name(crit))
        out.append(
            f"<li>{name} picks <b>{_e(p['covariance_type'])}, "
            f"K={p['n_components']}</b> ({name} = {p['value']:.2f})</li>"
        )
    out.append("</ul>")
    verdict = {
        (p["covariance_type"], p["n_components"])
        for crit, p in picks.items()
        if crit in ("aic", "bic", "icl")
    }
    if len(verdict) == 1:
        out.append("<p>AIC, BIC and ICL agree.</p>")
    else:
        out.append(
            "<p>AIC, BIC and ICL disagree: AIC penalises parameters least and tends "
            "to pick more components; ICL prefers well-separated clusters.</p>"
        )
    if bayes.get("verdict"):
        out.append("<h3>BIC vs LOO</h3><ul>")
        out += [f"<li>{_e(line)}</li>" for line in bayes["verdict"]]
        out.append("</ul>")
    out.append(_criteria_table(table, picks))
    if summary.get("failed"):
        out.append("<h2>Models that could not be fitted</h2><ul>")
        for f in summary["failed"]:
            out.append(
                f"<li>{_e(f['covariance_type'])} K={f['n_components']}: "
                f"{_e(f['error'])}</li>"
            )
        out.append("</ul>")
    if bayes.get("fits"):
        out += ["<h2>Bayesian fits</h2>", _bayes_html(bayes)]
    out += [
        "<h2>The model BIC chooses</h2>",
        _chosen_html(summary["chosen_by_bic"], data["columns"]),
    ]
    if comparison is not None and len(comparison):
        ci = settings.get("ci_prob", 0.94)
        out += [
            "<h3>Parameters by method</h3>",
            "<p class='note'>One row per scalar parameter, components aligned "
            "across methods: the EM estimate with its bootstrap standard error, and "
            f"each Bayesian method's posterior mean, sd and {ci:.0%} credible "
            "interval. Flagged rows (red): the EM estimate lies outside a posterior "
            "interval, or NUTS and ADVI disagree by more than a posterior sd.</p>",
            _frame_html(
                comparison.drop(
                    columns=["variable", "component", "feature", "feature_bis"],
                    errors="ignore",
                ),
                _flag_columns(comparison),
            ),
        ]
        density = comparison.attrs.get("density")
        if isinstance(density, pd.DataFrame) and len(density):
            out.append(
                "<p>The whole density, one number per fit: Monte Carlo KL divergence "
                "(nats) and Hellinger distance from the first fit's mixture to each "
                "other fit's (posterior-mean) mixture, with Monte Carlo standard "
                "errors.</p>"
            )
            out.append(_frame_html(density))
    if diagnoses:
        out.append("<h2>Diagnostics</h2>")
        for label, diagnosis in diagnoses.items():
            out += [f"<h3>{_e(label)}</h3>", _diagnosis_html(diagnosis)]
    for title, body in sections:
        out += [f"<h2>{_e(title)}</h2>", body]
    out.append("<h2>Figures</h2>")
    for name, path in figures.items():
        caption = _FIGURE_CAPTIONS.get(name, "")
        out += [f"<h3>{_e(name.replace('_', ' '))}</h3>", _img(Path(path))]
        if caption:
            out.append(f"<p class='note'>{_e(caption)}</p>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(
    directory,
    summary: Mapping,
    table: pd.DataFrame,
    *,
    comparison: pd.DataFrame | None = None,
    diagnoses: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``index.html`` into ``directory`` from its summary and figures.

    Parameters
    ----------
    directory : path-like
        The output directory, holding the PNG files named in
        ``summary["files"]``.
    summary : mapping
        The run summary (see :func:`render_report`).
    table : pandas.DataFrame
        The selection table.
    comparison : pandas.DataFrame, optional
        The chosen model's parameters by method.
    diagnoses : mapping, optional
        Fit label -> diagnosis.

    Returns
    -------
    pathlib.Path
        The path of ``index.html``.
    """
    directory = Path(directory)
    files = summary.get("files", {})
    figures = {
        name: directory / fname
        for name, fname in files.items()
        if str(fname).endswith(".png")
    }
    path = directory / "index.html"
    path.write_text(
        render_report(
            summary, table, figures, comparison=comparison, diagnoses=diagnoses
        ),
        encoding="utf-8",
    )
    return path
