"""The simulate stage on Spark: one task per ROOT file, a seed per file, one version per parameter set.

Output version layout::

    <version>/<process>/<process>_<index>.root     Delphes-style tree "Delphes" (ZSTD)
    <version>/_stats/<process>_<index>.json        what each task measured (read back by the driver)
    <version>/_manifest.json                       per process: files, generated, accepted, filter
                                                   efficiency, Pythia cross-section, decay trials
                                                   (``qcd_redecays``) and event weights; file checksums
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import tempfile
from functools import partial
from typing import TYPE_CHECKING, Any

from hep_tasks.config import SimulateParams
from hep_tasks.datasets import DatasetStore, code_version, summary, version_id
from hep_tasks.processes import LABELS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

STAGE = "simulate"
#: Pythia8 accepts seeds in [0, 900_000_000].
MAX_PYTHIA_SEED = 900_000_000


def file_seed(base_seed: int, process: str, index: int) -> int:
    """The seed of file ``index`` of ``process``: stable, distinct per file, within Pythia's range.

    >>> file_seed(1, "ttbar", 0) == file_seed(1, "ttbar", 0) != file_seed(1, "ttbar", 1)
    True
    """
    digest = hashlib.sha256(f"{base_seed}:{process}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % MAX_PYTHIA_SEED + 1


def file_name(process: str, index: int) -> str:
    return f"{process}/{process}_{index:04d}.root"


def run(spark: SparkSession, store: DatasetStore, params: SimulateParams) -> dict[str, Any]:
    """Simulate ``files_per_process`` files of ``events_per_file`` accepted events per process."""
    version = version_id(STAGE, {}, _version_parameters(params), code_version(__name__))
    if store.exists(STAGE, version):
        log.info("simulate version %s already exists: nothing to do", version)
        return summary(store, store.read_manifest(STAGE, version))

    tasks = [
        (process, index, file_seed(params.seed, process, index))
        for process in params.processes
        for index in range(params.files_per_process)
    ]
    with store.begin(STAGE, version) as pending:
        log.info("simulating %d files into %s", len(tasks), pending.url)
        job = partial(
            _simulate_one, store.root, pending.path, params.events_per_file, params.isolated_leptons_only, params.qcd_redecays
        )
        spark.sparkContext.parallelize(tasks, len(tasks)).foreach(job)
        stats = [_read_stats(store, pending.path, process, index) for process, index, _ in tasks]
        manifest = pending.commit(_manifest(params, stats) | {"quality": _check(params, stats)})
    store.set_latest(STAGE, version)
    return summary(store, manifest)


def _version_parameters(params: SimulateParams) -> dict[str, Any]:
    """The parameters the version id hashes: all of them, except ``qcd_redecays`` when off, so that a
    default run keeps the version it had before that parameter existed."""
    values = params.to_dict()
    if values["qcd_redecays"] == 0:
        del values["qcd_redecays"]
    return values


def _simulate_one(
    root: str, out_path: str, n_events: int, isolated_only: bool, redecays: int, task: tuple[str, int, int]
) -> None:
    """Spark task: simulate one file, copy it into the version, write its stats next to it."""
    from hep_tasks.simulate import SimulationSettings, simulate_file

    process, index, seed = task
    store = DatasetStore(root)
    target = posixpath.join(out_path, file_name(process, index))
    with tempfile.TemporaryDirectory(prefix="hep-sim-") as tmp:
        local = os.path.join(tmp, os.path.basename(target))
        settings = SimulationSettings(isolated_leptons_only=isolated_only, qcd_redecays=redecays)
        stats = simulate_file(process, n_events, seed, local, settings).to_dict()
        store.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        store.fs.put_file(local, target)
        with open(local, "rb") as f:
            sha256 = hashlib.file_digest(f, "sha256").hexdigest()
        record = stats | {
            "index": index,
            "file": file_name(process, index),
            "size": os.path.getsize(local),
            "sha256": sha256,
        }
    stats_path = posixpath.join(out_path, "_stats", f"{process}_{index:04d}.json")
    store.fs.makedirs(posixpath.dirname(stats_path), exist_ok=True)
    with store.fs.open(stats_path, "w") as f:
        json.dump(record, f)


def _read_stats(store: DatasetStore, out_path: str, process: str, index: int) -> dict[str, Any]:
    with store.fs.open(posixpath.join(out_path, "_stats", f"{process}_{index:04d}.json"), "r") as f:
        return json.load(f)


def _check(params: SimulateParams, stats: list[dict[str, Any]]) -> dict[str, Any]:
    """The simulate output's own check: every file holds the requested events; raises otherwise."""
    short = [s["file"] for s in stats if s["accepted"] != params.events_per_file or s["size"] <= 0]
    if short:
        raise RuntimeError(f"simulated files without the requested {params.events_per_file} events: {short}")
    return {"status": "passed", "checks": ["every file holds events_per_file accepted events"]}


def _manifest(params: SimulateParams, stats: list[dict[str, Any]]) -> dict[str, Any]:
    processes: dict[str, dict[str, Any]] = {}
    for process in params.processes:
        rows = [s for s in stats if s["process"] == process]
        generated = sum(s["generated"] for s in rows)
        accepted = sum(s["accepted"] for s in rows)
        weight_sum = sum(s["event_weight_sum"] for s in rows)
        # Pythia's cross-section estimates of independent runs, combined weighted by their events.
        sigma = sum(s["sigma_pb"] * s["generated"] for s in rows) / generated
        redecays = rows[0]["redecays"] if rows else 0
        processes[process] = {
            "label": LABELS[process],
            "files": len(rows),
            "generated": generated,
            "accepted": accepted,
            "filter_efficiency": accepted / generated,
            "sigma_pb": sigma,
            "accepted_sigma_pb": sigma * weight_sum / generated,
            # Decay trials per generated event (0: off). A written event's weight relative to a
            # generated one is 1 without trials, k/N with k of N trials accepted (nominal 1/N).
            "redecays": redecays,
            "nominal_event_weight": 1.0 / redecays if redecays else 1.0,
            "event_weight_sum": weight_sum,
            "mean_event_weight": weight_sum / accepted,
            "weighted_efficiency": weight_sum / generated,
            "multi_accepted": sum(s["multi_accepted"] for s in rows),
            "seeds": [s["seed"] for s in rows],
        }
    return {
        "inputs": {},
        "parameters": params.to_dict(),
        "code_version": code_version(__name__),
        "counts": {"total": sum(p["accepted"] for p in processes.values())}
        | {p: v["accepted"] for p, v in processes.items()},
        "processes": processes,
        "files": [{"path": s["file"], "size": s["size"], "sha256": s["sha256"], "process": s["process"]} for s in stats],
        "tree": "Delphes",
    }
