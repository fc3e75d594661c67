"""PNG figures of an evaluation: ROC curves, confusion matrices, training curves.

Figures are drawn on matplotlib's Agg canvas through :class:`matplotlib.figure.Figure`, never
through ``pyplot``: no global backend or figure state, nothing imported at package import.

Inputs are the dicts of :func:`hep_tasks.evaluate.metrics.model_metrics` (one per model) and the
training histories (model -> {"loss", "val_loss", "accuracy", "val_accuracy", ...}, one value per
epoch). ROC convention (HEP): x = signal efficiency, y = background acceptance on a log axis.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Dots per inch of every PNG.
DPI = 110
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_TEX = {"qcd": "QCD", "ttbar": r"$t\bar{t}$", "wjets": "W+jets"}


def write_plots(
    metrics: Mapping[str, Mapping[str, Any]],
    histories: Mapping[str, Mapping[str, Sequence[float]]],
    out_dir: str | os.PathLike[str],
) -> dict[str, Path]:
    """Write every figure of a run into ``out_dir`` (created if missing).

    Returns:
        name -> path: ``roc_ttbar_vs_qcd``, ``roc_one_vs_rest``, then ``confusion/<model>`` per
        model of ``metrics`` and ``history/<model>`` per model of ``histories``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "roc_ttbar_vs_qcd": plot_ttbar_vs_qcd_roc(metrics, out / "roc_ttbar_vs_qcd.png"),
        "roc_one_vs_rest": plot_one_vs_rest_roc(metrics, out / "roc_one_vs_rest.png"),
    }
    names: dict[str, str] = {}  # model -> file-name part, unique even when names differ only in odd characters
    for model in [*metrics, *histories]:
        if model not in names:
            base = _safe(model)
            names[model] = base if base not in names.values() else f"{base}_{len(names)}"
    for model, m in metrics.items():
        paths[f"confusion/{model}"] = plot_confusion(model, m, out / f"confusion_{names[model]}.png")
    for model, history in histories.items():
        paths[f"history/{model}"] = plot_history(model, history, out / f"history_{names[model]}.png")
    log.info("wrote %d plots to %s", len(paths), out)
    return paths


def plot_ttbar_vs_qcd_roc(metrics: Mapping[str, Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """All models' tt̄-vs-QCD ROC curves: tt̄ efficiency vs QCD acceptance (log), AUC in the legend.

    The quoted QCD acceptances (the keys of ``ttbar_efficiency_at_qcd_acceptance``) are drawn
    as dotted lines.
    """
    fig = _figure(6.4, 5.0)
    ax = fig.add_subplot()
    rates: set[float] = set()
    for model, m in metrics.items():
        _roc_line(ax, m["roc"].get("ttbar_vs_qcd"), f"{model} (AUC {_auc_text(m.get('auc_ttbar_vs_qcd'))})")
        rates.update(float(r) for r in (m.get("ttbar_efficiency_at_qcd_acceptance") or {}))
    for rate in sorted(rates):
        ax.axhline(rate, color="grey", lw=0.6, ls=":")
    _roc_axes(ax, signal=_TEX["ttbar"], background=_TEX["qcd"])
    ax.set_title(r"$t\bar{t}$ vs QCD (test split)")
    return _save(fig, path)


def plot_one_vs_rest_roc(metrics: Mapping[str, Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """One panel per class: that class against the two others, all models, AUC in the legend."""
    classes = _classes(metrics)
    fig = _figure(5.0 * max(len(classes), 1), 4.6)
    for i, name in enumerate(classes):
        ax = fig.add_subplot(1, len(classes), i + 1)
        for model, m in metrics.items():
            auc = (m.get("auc_one_vs_rest") or {}).get(name)
            _roc_line(ax, m["roc"]["one_vs_rest"].get(name), f"{model} (AUC {_auc_text(auc)})")
        _roc_axes(ax, signal=_TEX.get(name, name), background="rest")
        ax.set_title(f"{_TEX.get(name, name)} vs rest")
    return _save(fig, path)


def plot_confusion(model: str, metrics: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Row-normalised confusion matrix of one model (colour = fraction of the true class), counts annotated."""
    import numpy as np

    confusion = metrics["confusion"]
    names = [_TEX.get(c, c) for c in confusion["classes"]]
    fractions = np.array([[np.nan if v is None else v for v in row] for row in confusion["normalised"]], dtype=float)
    counts = confusion["counts"]
    fig = _figure(5.4, 4.6)
    ax = fig.add_subplot()
    image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="fraction of true class")
    for (i, j), value in np.ndenumerate(fractions):
        text = "–" if np.isnan(value) else f"{value:.3f}"
        ax.text(j, i, f"{text}\n({counts[i][j]})", ha="center", va="center",
                color="white" if value > 0.6 else "black", fontsize=9)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted class (argmax)")
    ax.set_ylabel("true class")
    ax.set_title(f"{model}: confusion matrix (test split)")
    return _save(fig, path)


def plot_history(model: str, history: Mapping[str, Sequence[float]], path: str | os.PathLike[str]) -> Path:
    """Loss (categorical cross-entropy) and accuracy per epoch, training and validation, of one model."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure(10.0, 4.0)
    for i, (key, label) in enumerate((("loss", "loss (cross-entropy)"), ("accuracy", "accuracy"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for prefix, name, style in (("", "training", "-"), ("val_", "validation", "--")):
            values = list(history.get(prefix + key) or [])
            if values:
                ax.plot(range(1, len(values) + 1), values, style, marker=".", label=name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.suptitle(f"{model}: training history")
    return _save(fig, path)


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=DPI)
    return out


def _roc_line(ax: Any, curve: Mapping[str, Sequence[float]] | None, label: str) -> None:
    if not curve:
        log.warning("no ROC curve to draw for %s", label)
        return
    ax.plot(curve["tpr"], curve["fpr"], label=label)


def _roc_axes(ax: Any, *, signal: str, background: str) -> None:
    import numpy as np

    x = np.linspace(0.0, 1.0, 201)
    ax.plot(x, x, color="grey", lw=0.8, ls="--", label="random")
    ax.set_yscale("log")
    ax.set_ylim(1e-4, 1.0)
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel(f"{signal} efficiency")
    ax.set_ylabel(f"{background} acceptance")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)


def _classes(metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    for m in metrics.values():
        return list(m["confusion"]["classes"])
    return []


def _auc_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name) or "model"
