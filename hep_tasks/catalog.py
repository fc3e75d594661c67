"""Publishing a pipeline run, and the index page of every published model.

:func:`publish` is the last step of a ``hep_pipeline`` run: given the versions the run produced,
it checks that every one of them passed its quality check, moves each stage's ``latest`` pointer
to it and rewrites ``<data_root>/index.html``. A run whose checks did not all pass publishes
nothing, so ``latest`` never points at a version a check rejected.

The index lists every published model version (a train version whose ``check_model`` passed),
newest first, with the dataset versions it was trained on, the training events per class and the
test AUCs of each model, and plots the tt̄-vs-QCD AUC against the training-set size, so a
physicist sees what each new simulation batch bought.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Mapping
from typing import Any

from hep_tasks.config import PublishParams
from hep_tasks.datasets import DatasetError, DatasetStore, summary
from hep_tasks.htmlpage import PAGE_END, Html, escape, numeric, page_start, table

log = logging.getLogger(__name__)

INDEX = "index.html"
#: The stages a run publishes, in pipeline order (each must have passed its check).
PUBLISHED_STAGES = ("ingest", "prepare", "train", "evaluate")


def run(spark: Any, store: DatasetStore, params: PublishParams) -> dict[str, Any]:
    """The ``publish`` stage of the command line (no Spark work)."""
    if not params.versions():
        raise DatasetError("publish needs at least one version (--ingest, --prepare, --train, --evaluate)")
    return publish(store, params.versions())


def publish(store: DatasetStore, versions: Mapping[str, str | list[str]]) -> dict[str, Any]:
    """Move ``latest`` of every stage in ``versions`` to its version, if all passed; returns the
    summaries (stage -> summary, or a list of them for several ingest versions) and the index path.

    Raises DatasetError naming every version that has not passed, and then moves nothing.
    """
    unknown = sorted(set(versions) - set(PUBLISHED_STAGES))
    if unknown:
        raise DatasetError(f"cannot publish stage {', '.join(unknown)} (published stages: {', '.join(PUBLISHED_STAGES)})")
    named = {stage: [v] if isinstance(v, str) else list(v) for stage, v in versions.items() if v}
    manifests = {(stage, v): store.read_manifest(stage, v) for stage, vs in named.items() for v in vs}
    failed = [
        f"{stage} {v} ({m.get('quality', {}).get('status', 'pending')})"
        for (stage, v), m in manifests.items()
        if m.get("quality", {}).get("status") != "passed"
    ]
    if failed:
        raise DatasetError(f"not published, since not every check passed: {', '.join(failed)}")
    out: dict[str, Any] = {}
    with store.exclusive("publish"):  # two publishes at once never leave the stages' latest mixed
        for stage in PUBLISHED_STAGES:
            if stage not in named:
                continue
            newest = max(named[stage], key=lambda v: manifests[(stage, v)]["created_at"])
            store.set_latest(stage, newest)
            summaries = [summary(store, manifests[(stage, v)]) for v in named[stage]]
            out[stage] = summaries[0] if isinstance(versions[stage], str) else summaries
        out["index"] = write_index(store)
    return out


def publish_run(store: DatasetStore, *, prepare: str, train: str, evaluate: str) -> dict[str, Any]:
    """Publish a pipeline run: its prepared version, the ingest versions that went into it, its
    model and evaluation versions (see :func:`publish`)."""
    ingest = list(store.read_manifest("prepare", prepare)["inputs"]["ingest"])
    return publish(store, {"ingest": ingest, "prepare": prepare, "train": train, "evaluate": evaluate})


def ingest_inputs(*, input_path: str | None, simulation_versions: list[str] | None, triggered: list[str]) -> list[str]:
    """What a ``hep_pipeline`` run has to ingest: ROOT files named by hand, simulate versions
    named by hand, and the simulate versions of the Asset events that triggered it; each once.

    >>> ingest_inputs(input_path=" ", simulation_versions=["sim-1"], triggered=["sim-2", "sim-1"])
    ['sim-1', 'sim-2']
    """
    items = [(input_path or "").strip(), *(v.strip() for v in simulation_versions or []), *triggered]
    return list(dict.fromkeys(i for i in items if i))


def published_models(store: DatasetStore) -> list[dict[str, Any]]:
    """One row per published model version, newest first: versions, training events, AUCs."""
    rows = []
    for version in reversed(store.passed("train")):
        train = store.read_manifest("train", version)
        evaluation = train.get("quality", {}).get("evaluate")
        if not evaluation or not store.exists("evaluate", evaluation):
            continue
        metrics = store.read_manifest("evaluate", evaluation).get("metrics", {})
        prepared = train["inputs"]["prepare"]
        prep = store.read_manifest("prepare", prepared)
        rows.append(
            {
                "train": version,
                "created_at": train["created_at"],
                "evaluate": evaluation,
                "prepare": prepared,
                "ingest": prep["inputs"]["ingest"],
                "train_events": prep["counts"]["train"],
                "test_events": prep["counts"]["test"],
                "auc_ttbar_vs_qcd": {m: v.get("auc_ttbar_vs_qcd") for m, v in metrics.items()},
                "ttbar_efficiency_1pct_qcd": {
                    m: v.get("ttbar_efficiency_at_qcd_acceptance", {}).get("0.01") for m, v in metrics.items()
                },
            }
        )
    return rows


def write_index(store: DatasetStore) -> str:
    """Rewrite ``<data_root>/index.html`` (atomically); returns its path."""
    rows = published_models(store)
    page = render_index(rows, store.root)
    path = store.path(INDEX)
    store.write_text_atomic(path, page)
    log.info("index of %d published model versions: %s", len(rows), path)
    return path


def render_index(rows: list[dict[str, Any]], root: str) -> str:
    """The index page (self-contained HTML) of ``rows`` from :func:`published_models`."""
    models = sorted({m for r in rows for m in r["auc_ttbar_vs_qcd"]})
    head = ["published", "model version", "prepared", "ingested", "train events / class", "test events / class",
            *[f"{m} AUC tt̄-QCD" for m in models], "report"]  # fmt: skip
    body = [
        [
            r["created_at"], r["train"], r["prepare"], ", ".join(r["ingest"]),
            ", ".join(f"{p} {n:,}" for p, n in r["train_events"].items()),
            ", ".join(f"{p} {n:,}" for p, n in r["test_events"].items()),
            *[numeric(_auc(r["auc_ttbar_vs_qcd"].get(m))) for m in models],
            Html(f'<td><a href="evaluate/{escape(r["evaluate"])}/report.html">report</a></td>'),
        ]  # fmt: skip
        for r in rows
    ]
    plot = _auc_plot(rows, models)
    return "\n".join([
        *page_start("hep-pipeline: published models",
                    f"Data root: {root}. Newest first; AUC on each version's test split (tt̄ signal, QCD background)."),
        table(head, body) if rows else "<p>No published model yet.</p>",
        "<h2>tt̄-vs-QCD AUC against training-set size</h2>",
        f'<img alt="AUC against training-set size" src="data:image/png;base64,{plot}">' if plot else "",
        PAGE_END,
    ]) + "\n"  # fmt: skip


def _auc(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _auc_plot(rows: list[dict[str, Any]], models: list[str]) -> str:
    """Base64 PNG: test AUC of each model against the number of training events (all classes)."""
    if not rows:
        return ""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for model in models:
        points = sorted(
            (sum(r["train_events"].values()), r["auc_ttbar_vs_qcd"][model])
            for r in rows if r["auc_ttbar_vs_qcd"].get(model) is not None
        )  # fmt: skip
        if points:
            ax.plot(*zip(*points), marker="o", label=model)
    ax.set_xscale("log")
    ax.set_xlabel("training events (all classes)")
    ax.set_ylabel("test AUC, tt̄ vs QCD")
    ax.grid(alpha=0.3)
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()
