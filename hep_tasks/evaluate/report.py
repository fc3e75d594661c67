"""The HTML report of an evaluation run: one self-contained page (no external CSS, JS or images).

:func:`render_report` returns the page as a string; the caller writes it. Images are embedded as
base64 ``data:`` URIs, and every piece of text from the inputs is escaped with :func:`html.escape`.

Inputs: ``metrics`` maps model -> the dict of :func:`hep_tasks.evaluate.metrics.model_metrics`;
``histories`` model -> training history (one value per epoch); ``plots`` name -> PNG path as
:func:`hep_tasks.evaluate.plots.write_plots` returns them (``confusion/<model>`` and
``history/<model>`` go into that model's section, the others into "ROC curves"); ``run_info``
section -> free-form values (dataset versions, parameters, timings). Keys ending in ``_s`` or
``_seconds`` are shown in seconds, ``_gev`` in GeV.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from hep_tasks.htmlpage import PAGE_END, Html, escape, figure, numeric, page_start, table

_CLASS_NAMES = {"qcd": "QCD", "ttbar": "tt̄", "wjets": "W+jets"}
_CAPTIONS = {
    "roc_ttbar_vs_qcd": "tt̄ vs QCD ROC curves of all models: tt̄ efficiency against QCD acceptance (log scale).",
    "roc_one_vs_rest": "One-vs-rest ROC curves per class: each class against the two others, on its own log-odds.",
    "confusion": "Confusion matrix, rows normalised to the true class; event counts in brackets.",
    "history": "Loss and accuracy per epoch, training and validation.",
}


def render_report(
    *,
    title: str,
    metrics: Mapping[str, Mapping[str, Any]],
    histories: Mapping[str, Mapping[str, Sequence[float]]],
    plots: Mapping[str, str | os.PathLike[str]],
    run_info: Mapping[str, Any],
) -> str:
    """The report page (see the module docstring for the inputs)."""
    models = list(dict.fromkeys([*metrics, *histories]))
    per_model = {f"{kind}/{m}" for kind in ("confusion", "history") for m in models}
    general = {name: path for name, path in plots.items() if name not in per_model}
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        *page_start(title, f"Generated {generated}. Scores are evaluated on the test split."),
        "<h2>Summary</h2>",
        _summary_table(metrics),
        "<h2>Run</h2>",
        _run_info(run_info),
    ]
    if general:
        parts.append("<h2>ROC curves</h2>")
        parts += [figure(path, _caption(name)) for name, path in general.items()]
    for model in models:
        parts.append(f"<h2>Model: {escape(model)}</h2>")
        if model in metrics:
            parts.append(_model_tables(metrics[model]))
        if model in histories:
            parts.append(_history_table(histories[model]))
        keys = (f"confusion/{model}", f"history/{model}")
        parts += [figure(plots[key], _caption(key)) for key in keys if key in plots]
    parts += ["<h2>Conventions</h2>", _conventions(metrics), PAGE_END]
    return "\n".join(parts) + "\n"


def _summary_table(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    if not metrics:
        return '<p class="note">No model metrics.</p>'
    classes = _classes(metrics)
    rates = _rates(metrics)
    head = (["model", "AUC tt̄ vs QCD"] + [f"AUC {_CLASS_NAMES.get(c, c)} vs rest" for c in classes]
            + [f"ε(tt̄) at {_percent(float(r))} QCD" for r in rates] + ["accuracy", "test events"])
    rows = []
    for model, m in metrics.items():
        one_vs_rest = m.get("auc_one_vs_rest") or {}
        eff = m.get("ttbar_efficiency_at_qcd_acceptance") or {}
        rows.append([model, numeric(_auc(m.get("auc_ttbar_vs_qcd")))]
                    + [numeric(_auc(one_vs_rest.get(c))) for c in classes]
                    + [numeric(_pct(eff.get(r))) for r in rates]
                    + [numeric(_pct(m.get("accuracy"))), numeric(_count(m.get("events")))])
    return table(head, rows)


def _model_tables(m: Mapping[str, Any]) -> str:
    classes = list(m["confusion"]["classes"])
    separation = [["AUC tt̄ vs QCD", numeric(_auc(m.get("auc_ttbar_vs_qcd")))]]
    separation += [[f"AUC {_CLASS_NAMES.get(c, c)} vs rest", numeric(_auc((m.get("auc_one_vs_rest") or {}).get(c)))]
                   for c in classes]
    separation.append(["accuracy (argmax = true class)", numeric(_pct(m.get("accuracy")))])
    separation += [[f"test events, {_CLASS_NAMES.get(c, c)}", numeric(_count(n))]
                   for c, n in (m.get("events_per_class") or {}).items()]
    eff = m.get("ttbar_efficiency_at_qcd_acceptance") or {}
    efficiencies = [[numeric(_percent(float(r))), numeric(_pct(eff[r]))] for r in sorted(eff, key=float)]
    counts, fractions = m["confusion"]["counts"], m["confusion"]["normalised"]
    confusion = [
        [Html(f"<th>{escape(_CLASS_NAMES.get(c, c))}</th>")]
        + [numeric(f"{_count(counts[i][j])} ({_pct(fractions[i][j])})") for j in range(len(classes))]
        for i, c in enumerate(classes)
    ]
    return "\n".join([
        table(["quantity", "value"], separation),
        "<h3>tt̄ selection efficiency at fixed QCD acceptance</h3>",
        table(["QCD acceptance", "tt̄ efficiency"], efficiencies),
        "<h3>Confusion matrix (rows: true class, columns: predicted class; events and fraction of the row)</h3>",
        table(["true \\ predicted"] + [_CLASS_NAMES.get(c, c) for c in classes], confusion),
    ])


def _history_table(history: Mapping[str, Sequence[float]]) -> str:
    epochs = max((len(v) for v in history.values()), default=0)
    rows = [["epochs", numeric(str(epochs))]]
    for key in ("loss", "val_loss", "accuracy", "val_accuracy", "learning_rate"):
        values = list(history.get(key) or [])
        if values:
            rows.append([f"final {key}", numeric(_float(values[-1]))])
    val_loss = list(history.get("val_loss") or [])
    if val_loss:
        best = min(range(len(val_loss)), key=lambda i: val_loss[i])
        rows.append(["lowest val_loss (epoch)", numeric(f"{_float(val_loss[best])} ({best + 1})")])
    return "<h3>Training (loss: categorical cross-entropy)</h3>\n" + table(["quantity", "value"], rows)


def _run_info(run_info: Mapping[str, Any]) -> str:
    if not run_info:
        return '<p class="note">No run information.</p>'
    parts = []
    for section, value in run_info.items():
        parts.append(f"<h3>{escape(str(section))}</h3>")
        items = _flatten(value) if isinstance(value, Mapping) else [("", value)]
        parts.append(table(["key", "value"], [[k or str(section), _value(k or str(section), v)] for k, v in items]))
    return "\n".join(parts)


def _conventions(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    binning = next((m.get("score_binning") for m in metrics.values() if m.get("score_binning")), None)
    resolution = ""
    if binning:
        resolution = (
            f" AUCs and efficiencies are computed from histograms of the log-odds ({binning['bins']} bins over "
            f"[{binning['low']:g}, {binning['high']:g}]): they are exact up to the bin width, "
            f"{binning['width']:.3g} in log-odds; events sharing a bin count as ties (half)."
        )
    text = (
        "Labels: 0 = QCD, 1 = tt̄, 2 = W+jets. The score of class k is its log-odds log(p_k / (1 − p_k)). "
        "tt̄ vs QCD: signal = true tt̄ events, background = true QCD events, score = tt̄ log-odds; "
        "W+jets events are not used. One-vs-rest: the class against the two others. "
        "QCD acceptance = fraction of QCD events passing the threshold, tt̄ efficiency = fraction of tt̄ events "
        "passing it (linear interpolation on the ROC curve)." + resolution
    )
    return f'<p class="note">{escape(text)}</p>'


def _caption(name: str) -> str:
    kind, _, model = name.partition("/")
    text = _CAPTIONS.get(kind, name)
    return f"{model}: {text}" if model else text


def _flatten(value: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, v in value.items():
        name = f"{prefix}{key}"
        if isinstance(v, Mapping) and v:
            items += _flatten(v, name + ".")
        else:
            items.append((name, v))
    return items


def _value(key: str, value: Any) -> str:
    """A run-info value as a table cell (text, or a numeric cell with its unit when the key names one)."""
    unit = " s" if key.endswith(("_s", "_seconds")) else " GeV" if key.lower().endswith("_gev") else ""
    if value is None:
        return "–"
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if isinstance(value, (int, float)):
        return numeric(f"{value:.6g}{unit}" if isinstance(value, float) else f"{value}{unit}")
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        return ", ".join(str(v) for v in value)
    return json.dumps(value, default=str, sort_keys=True)


def _auc(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _percent(rate: float) -> str:
    return f"{100 * rate:g} %"


def _float(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _count(value: int | None) -> str:
    return "n/a" if value is None else f"{int(value):,}".replace(",", "\u2009")


def _classes(metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    for m in metrics.values():
        return list(m["confusion"]["classes"])
    return []


def _rates(metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    keys = {k for m in metrics.values() for k in (m.get("ttbar_efficiency_at_qcd_acceptance") or {})}
    return sorted(keys, key=float)
