"""A self-contained HTML report of a ``bayes-gmm`` run.

:func:`write_report` turns the run's summary (the content of
``summary.json``), its criteria table and the PNG figures already in the
output directory into ``index.html``, with the figures embedded, so the
file can be mailed or archived on its own. Sections: data, settings, the
criteria table with each criterion's pick, the chosen model's parameters,
failures, and the figures. Later sections (posterior intervals,
diagnostics, LOO) are added by passing more ``sections``.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path

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
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #555; font-size: 0.9em; }
"""

_FIGURE_CAPTIONS = {
    "clusters": "The data coloured by component of the BIC-chosen model, with its "
    "1, 2 and 3 standard-deviation ellipses (opacity by weight; marker size by "
    "assignment certainty).",
    "density": "Histogram of the data and the fitted density of the BIC-chosen "
    "model (dashed: its weighted components).",
    "pairs": "Every pair of features, with the marginal ellipses of the chosen model.",
    "criteria": "AIC, BIC and ICL against the number of components, one line per "
    "covariance type; the star is each criterion's pick.",
    "covariance_types": "The best model (by BIC) of each covariance type.",
}


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
        ("n_iter", "iterations"),
    ]
    cols = [(c, label) for c, label in cols if c in table.columns]
    head = "".join(
        f'<th class="{"l" if c == "covariance_type" else ""}">{_e(label)}</th>'
        for c, label in cols
    )
    body = []
    for _, row in table.iterrows():
        cells = []
        for c, _label in cols:
            value = row[c]
            cls = "l" if c == "covariance_type" else ""
            pick = picks.get(c)
            if pick and (pick["covariance_type"], pick["n_components"]) == (
                row["covariance_type"],
                int(row["n_components"]),
            ):
                cls = "pick"
            if c in ("n_components", "n_parameters", "n_iter") and pd.notna(value):
                text = str(int(value))
            else:
                text = _fmt(None if pd.isna(value) else value)
            cells.append(f'<td class="{cls}">{text}</td>')
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


def render_report(
    summary: Mapping,
    table: pd.DataFrame,
    figures: Mapping[str, Path],
    sections: Sequence[tuple[str, str]] = (),
) -> str:
    """The HTML text of the report.

    Parameters
    ----------
    summary : mapping
        The run summary (what ``summary.json`` holds): ``data``,
        ``settings``, ``picks``, ``chosen_by_bic``, ``failed``.
    table : pandas.DataFrame
        The criteria table.
    figures : mapping
        Figure name -> PNG path, embedded in this order.
    sections : sequence of (str, str)
        Extra (title, HTML body) sections, placed before the figures.

    Returns
    -------
    str
    """
    data = summary["data"]
    settings = summary["settings"]
    picks = summary["picks"]
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
    if data.get("standardized"):
        out.append(
            "<p><b>Standardised</b>: every column was centred on its mean and divided "
            "by its standard deviation; parameters, criteria and figures are in "
            "those units.</p>"
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
        "<h2>Model selection</h2>",
        "<p class='note'>All three criteria are on the deviance scale: lower is "
        "better. AIC = -2 log L + 2p, BIC = -2 log L + p log n, ICL = BIC - 2 "
        "&sum; log max<sub>k</sub> &tau;<sub>nk</sub> (BIC penalised by the "
        "uncertainty of the classification). Each criterion's pick is "
        "highlighted.</p>",
        "<ul>",
    ]
    for crit, p in picks.items():
        out.append(
            f"<li>{_e(crit.upper())} picks <b>{_e(p['covariance_type'])}, "
            f"K={p['n_components']}</b> ({_e(crit.upper())} = {p['value']:.2f})</li>"
        )
    out.append("</ul>")
    verdict = {(p["covariance_type"], p["n_components"]) for p in picks.values()}
    if len(verdict) == 1:
        out.append("<p>The criteria agree.</p>")
    else:
        out.append(
            "<p>The criteria disagree: AIC penalises parameters least and tends to "
            "pick more components; ICL prefers well-separated clusters.</p>"
        )
    out.append(_criteria_table(table, picks))
    if summary.get("failed"):
        out.append("<h2>Models that could not be fitted</h2><ul>")
        for f in summary["failed"]:
            out.append(
                f"<li>{_e(f['covariance_type'])} K={f['n_components']}: "
                f"{_e(f['error'])}</li>"
            )
        out.append("</ul>")
    out += [
        "<h2>The model BIC chooses</h2>",
        _chosen_html(summary["chosen_by_bic"], data["columns"]),
    ]
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


def write_report(directory, summary: Mapping, table: pd.DataFrame) -> Path:
    """Write ``index.html`` into ``directory`` from its summary and figures.

    Parameters
    ----------
    directory : path-like
        The output directory, holding the PNG files named in
        ``summary["files"]``.
    summary : mapping
        The run summary (see :func:`render_report`).
    table : pandas.DataFrame
        The criteria table.

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
    path.write_text(render_report(summary, table, figures), encoding="utf-8")
    return path
