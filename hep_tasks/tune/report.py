"""What a search leaves to read: the trials table, importances, plots and one HTML page.

- :func:`trial_records`: every trial of a study as a plain dict (parameters, hyper-parameters,
  state, validation loss and AUC, epochs, duration, start/end times, executor, error);
- :func:`importances`: Optuna's PED-ANOVA parameter importances (no scikit-learn needed), or None
  when too few trials completed to say anything;
- :func:`plot_history` / :func:`plot_importances`: PNGs on matplotlib's Agg canvas (no pyplot);
- :func:`render_report`: a self-contained page (images embedded, every text escaped).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hep_tasks.htmlpage import PAGE_END, escape, figure, numeric, page_start, table
from hep_tasks.tune.space import ModelSpace, decode_params

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

DPI = 110
#: Fewest completed trials for parameter importances.
MIN_TRIALS_FOR_IMPORTANCE = 4
_ATTRS = (
    "val_auc", "best_epoch", "epochs_run", "batch_size_used", "steps_per_epoch", "validation_events", "parameters",
    "started_at", "ended_at", "duration_s", "cpu_s", "executor", "host", "pid", "partition", "task_attempt_id", "attempt",
    "round", "retry_of", "error", "history",
)  # fmt: skip


def trial_records(study: optuna.Study, space: ModelSpace) -> list[dict[str, Any]]:
    """Every trial of ``study``, oldest first, as JSON-able dicts."""
    from hep_tasks.tune.study import interrupted

    out = []
    for t in study.get_trials(deepcopy=False):
        state = "interrupted" if interrupted(t) else t.user_attrs.get("outcome") or t.state.name.lower()
        record = {
            "number": t.number,
            "state": state,
            "params": decode_params(space, t.params),
            "hyperparameters": t.user_attrs.get("hyperparameters"),
            # a pruned trial's value in Optuna is its last reported loss: record its best, as for the others
            "val_loss": t.value if state == "complete" else _best(t.intermediate_values.values()),
        }
        record |= {k: t.user_attrs.get(k) for k in _ATTRS}
        out.append(record)
    return out


def _best(values: Any) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return min(finite) if finite else None


def importances(study: optuna.Study) -> dict[str, float] | None:
    """PED-ANOVA importance of each searched parameter for the best quarter of the trials."""
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(
                study, evaluator=PedAnovaImportanceEvaluator(target_quantile=0.25), normalize=True
            )
    except (ValueError, RuntimeError, ZeroDivisionError) as err:
        log.warning("%s: no parameter importances (%s)", study.study_name, err)
        return None
    return {k: float(v) for k, v in found.items()}


def plot_history(model: str, records: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Validation loss and AUC per trial, the best loss so far as a line; failed trials marked."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 5.5))
    loss_ax, auc_ax = fig.subplots(2, 1, sharex=True)
    styles = {"complete": ("o", "C0"), "pruned": ("x", "C1")}
    best, best_so_far = math.inf, []
    for r in records:
        if r["state"] == "complete" and r["val_loss"] is not None:
            best = min(best, r["val_loss"])
        best_so_far.append((r["number"], best if math.isfinite(best) else None))
    for state, (marker, color) in styles.items():
        chosen = [r for r in records if r["state"] == state and r["val_loss"] is not None]
        loss_ax.scatter([r["number"] for r in chosen], [r["val_loss"] for r in chosen], marker=marker, color=color, label=state)
        with_auc = [r for r in chosen if r.get("val_auc") is not None]
        auc_ax.scatter([r["number"] for r in with_auc], [r["val_auc"] for r in with_auc], marker=marker, color=color, label=state)
    points = [(n, b) for n, b in best_so_far if b is not None]
    if points:
        loss_ax.step(*zip(*points), where="post", color="C2", label="best so far")
    failed = [r["number"] for r in records if r["state"] in ("fail", "interrupted")]
    for number in failed:
        loss_ax.axvline(number, color="C3", alpha=0.3, linewidth=3)
    if failed:
        loss_ax.plot([], [], color="C3", alpha=0.3, linewidth=3, label="failed / interrupted")
    loss_ax.set_ylabel("validation loss (best epoch)")
    loss_ax.set_title(f"{model}: search history")
    loss_ax.legend(fontsize="small")
    auc_ax.set_ylabel("validation AUC tt̄ vs QCD")
    auc_ax.set_xlabel("trial")
    auc_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (loss_ax, auc_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return Path(path)


def plot_importances(model: str, found: Mapping[str, float] | None, path: str | Path) -> Path:
    """Horizontal bars of the parameter importances (or a note that there are too few trials)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    if found:
        names = list(found)[::-1]
        ax.barh(names, [found[n] for n in names], color="C0")
        ax.set_xlabel("importance (PED-ANOVA, normalised)")
    else:
        ax.text(0.5, 0.5, f"fewer than {MIN_TRIALS_FOR_IMPORTANCE} completed trials:\nno importances",
                ha="center", va="center", transform=ax.transAxes)  # fmt: skip
        ax.set_axis_off()
    ax.set_title(f"{model}: parameter importances")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return Path(path)


_STYLE = "tr.best td { background: #e8f5e9; } tr.fail td, tr.interrupted td { color: #a33; }"


def render_report(
    *,
    title: str,
    run_info: Mapping[str, Any],
    models: Mapping[str, Mapping[str, Any]],
    trials: Mapping[str, Sequence[Mapping[str, Any]]],
    plots: Mapping[str, Sequence[str | Path]],
) -> str:
    """The page: run information, then per model its best parameters, its trials and its plots."""
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        *page_start(title, f"Generated {generated}. Trials are validated on a held-out part of the train split's "
                    "subsample; the test split is not read.", style=_STYLE),
        "<h2>Run</h2>",
        table(["key", "value"], [[k, _text(v)] for k, v in run_info.items()]),
    ]
    for model, info in models.items():
        parts.append(f"<h2>Model: {escape(model)}</h2>")
        best = info.get("best") or {}
        if best:
            rows = [["best trial", best.get("trial")], ["validation loss", _fmt(best.get("val_loss"))],
                    ["validation AUC tt̄ vs QCD", _fmt(best.get("val_auc"))]]
            rows += [[f"hyper-parameter {k}", _text(v)] for k, v in (info.get("best_hyperparameters") or {}).items()]
            parts.append(table(["best", "value"], rows))
        summary = {k: v for k, v in info.items() if k not in ("best", "best_hyperparameters", "search_space", "importances")}
        parts.append(table(["search", "value"], [[k, _text(v)] for k, v in summary.items()]))
        parts.append(_trials_table(trials.get(model, []), best.get("trial")))
        parts += [figure(p) for p in plots.get(model, [])]
    parts.append(PAGE_END)
    return "\n".join(parts) + "\n"


def _trials_table(records: Sequence[Mapping[str, Any]], best: int | None) -> str:
    head = ["trial", "state", "parameters", "val loss", "val AUC", "epochs", "duration", "executor", "error"]
    rows = [
        [
            numeric(r["number"]), r["state"], _text(r["params"]), numeric(_fmt(r.get("val_loss"))),
            numeric(_fmt(r.get("val_auc"))), numeric(r.get("epochs_run") or "–"),
            numeric("–" if r.get("duration_s") is None else f"{r['duration_s']:.1f} s"),
            r.get("executor") or "–", r.get("error") or "",
        ]  # fmt: skip
        for r in records
    ]
    return table(head, rows, row_classes=["best" if r["number"] == best else r["state"] for r in records])


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.6g}"
    return json.dumps(value, default=str) if isinstance(value, (dict, list, tuple)) else str(value)


