"""The prepare stage: split, balance, fit scalers on train, ΔR-sort, scale, shuffle, write.

Order matters (ARCHITECTURE §3-4, fixing the 2019 leak where scalers saw the test data):

1. **Split first**, seeded and reproducible: an event's split follows from a hash of its lineage
   (source file, entry) and the seed, so it does not depend on partitioning or executor count.
2. **Balance** each split by undersampling every class to the smallest class, with exact counts:
   events are ranked within (split, class) by a second seeded hash and the first N are kept.
3. **Fit** MinMax (HLF) and standardisation (particle features, real particles only) on the
   balanced training split: per ingest file in Python tasks (moments merged exactly on the
   driver); saved as ``scalers.json``.
4. **Transform** (``transform.py``) and **shuffle**: a seeded hash of the lineage picks each
   event's output file and its place in it; Python tasks scatter each ingest file's kept events to
   pieces per output file, then one task per output file orders and writes it with pyarrow
   (``shuffle.py``, ``hep_tasks.partfiles``), in row groups of ``rows_per_row_group`` events, the
   unit streamed into training. Both splits in one pass.

Every step runs in Spark's Python tasks with pyarrow and NumPy (no row UDFs), one ingest file at a
time: the hashes are Spark SQL's ``xxhash64``, computed from the lineage by the task that reads
the event (``lineage.py``), so no key travels from task to task and nothing enters the JVM.
Balancing reads the key columns once: a rank histogram, with the keys of a window of rank bins
around each class's cut-off as the ingest manifests' counts predict it (a second read of the keys
only if a cut-off falls outside its window); the payload is read once from the ingest files and
once from the pieces. Three Spark jobs, and no Spark SQL: a fresh application's first SQL query
costs seconds of JVM warm-up, which on the batch sizes of a reprocessing run is most of the stage.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import posixpath
from typing import TYPE_CHECKING, Any

import fsspec
import numpy as np

from hep_tasks.config import PrepareParams
from hep_tasks.datasets import DatasetError, DatasetStore, code_version, summary, version_id
from hep_tasks.ingest.stage import EVENTS
from hep_tasks.partfiles import drop_attempts
from hep_tasks.prepare.lineage import (
    GROUPS,
    RANK_BINS,
    SPLITS,
    Assignment,
    Cutoff,
    Key,
    boundaries,
    census,
    cutoffs,
    expected_windows,
)
from hep_tasks.prepare.scalers import ARTIFACT, FeatureScalers
from hep_tasks.prepare.shuffle import events_file, fit, gather, read_keys, scatter
from hep_tasks.processes import LABELS, PROCESS_OF_LABEL
from hep_tasks.sparkjob import collect_small, task_slots

if TYPE_CHECKING:
    from pyspark import RDD
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

STAGE = "prepare"
SOURCE = "ingest"
#: Scratch directory of a pending version: the pieces between scatter and gather.
SCRATCH = "_shuffle"
#: Events per bucket of an output file (the most a task holds in memory while writing one).
BUCKET_ROWS = 8192


def run(spark: SparkSession, store: DatasetStore, params: PrepareParams) -> dict[str, Any]:
    """Prepare balanced, scaled, shuffled train/test datasets from checked ingest versions."""
    sources = checked_sources(store, params.input)
    version = planned_version(sources, params)
    if store.exists(STAGE, version):
        log.info("prepare version %s already exists: nothing to do", version)
        return summary(store, store.read_manifest(STAGE, version))

    what = f"{SOURCE} version{'s' if len(sources) > 1 else ''} {', '.join(sources)}"
    log.info("preparing %s", what)
    inputs = input_files(store, sources)
    check_schema(sources, inputs)
    files = [f for listed in inputs.values() for f in listed]
    windows = expected_windows(class_counts(store, sources), params.test_fraction)
    counts, keys = rank_census(spark, files, params, windows)
    before = {split: {PROCESS_OF_LABEL[label]: int(counts[g].sum()) for g, (s, label) in enumerate(GROUPS) if s == split}
              for split in SPLITS}  # fmt: skip
    for split in SPLITS:
        missing = [p for p, n in before[split].items() if n == 0]
        if missing:
            raise DatasetError(
                f"{what}: the {split} split has no {', '.join(missing)} events "
                f"({before[split]}); more events are needed for a {params.test_fraction:.0%} test fraction"
            )
    targets = {split: min(before[split].values()) for split in SPLITS}
    log.info("events per class before balancing %s; keeping %s per class", before, targets)
    last = balancing_cutoffs(spark, files, params, counts, targets, windows, keys)
    assignment = Assignment.plan(params.seed, params.test_fraction, params.files_per_split, targets, last, BUCKET_ROWS)
    with store.begin(STAGE, version) as pending:
        scratch = posixpath.join(pending.url, SCRATCH)
        scattered = scatter_files(spark, files, assignment, scratch)
        check_kept(scattered, targets)
        scalers = fit(scattered, targets["train"] * len(LABELS))
        log.info("scalers fitted on %d training events (%d particles)", scalers.fitted_on["events"],
                 scalers.fitted_on["particles"])
        text = scalers.dumps()
        with store.fs.open(posixpath.join(pending.path, ARTIFACT), "w") as f:
            f.write(text)
        parts = sorted({p for row in scattered for p in row["parts"]})
        written = write_splits(spark, parts, scalers, scratch, pending.url, params)
        store.fs.rm(posixpath.join(pending.path, SCRATCH), recursive=True)
        artifact = {"path": ARTIFACT, "size": len(text.encode()), "sha256": hashlib.sha256(text.encode()).hexdigest()}
        manifest = pending.commit(
            {
                "inputs": {SOURCE: sources},
                "parameters": params.to_dict(),
                "code_version": code_version(__name__),
                "counts": {split: {p: targets[split] for p in LABELS} for split in SPLITS}
                | {"total": sum(targets.values()) * len(LABELS)},
                "counts_before_balancing": before,
                "scalers": ARTIFACT,
                "files": sorted([artifact, *written], key=lambda f: f["path"]),
            }
        )
    return summary(store, manifest)


def input_files(store: DatasetStore, sources: list[str]) -> dict[str, list[tuple[str, int]]]:
    """The events files of each ingest version as its manifest lists them: (URL, size in bytes)."""
    prefix = EVENTS + "/"
    return {s: [(store.url(SOURCE, s, f["path"]), f["size"]) for f in store.read_manifest(SOURCE, s)["files"]
                if f["path"].startswith(prefix)] for s in sources}  # fmt: skip


def planned_version(sources: list[str], params: PrepareParams) -> str:
    """The version id a prepare of ``sources`` with ``params`` gets (no Spark needed)."""
    return version_id(STAGE, {SOURCE: sorted(sources)}, params.to_dict(), code_version(__name__))


def checked_source(store: DatasetStore, version: str) -> str:
    """One ingest version (named, or the latest/newest checked one); it must exist, have passed its
    quality check and hold events."""
    version = store.resolve(SOURCE, version)
    manifest = store.read_manifest(SOURCE, version)
    status = manifest.get("quality", {}).get("status", "pending")
    if status != "passed":
        raise DatasetError(f"{SOURCE} version {version} has not passed its quality check (status: {status})")
    if not manifest.get("counts", {}).get("total"):
        raise DatasetError(f"{SOURCE} version {version} is empty (0 events)")
    return version


def checked_sources(store: DatasetStore, spec: str) -> list[str]:
    """The ingest versions to prepare together, checked; together they must hold every class.

    ``spec`` names versions (comma separated); empty means every ingest version that passed its
    check, the newest one per input batch (a simulate version or a file set), so that a batch
    ingested again by newer code is not counted twice. Two named versions of the same batch are
    refused (their events would be duplicates).
    """
    named = [v.strip() for v in spec.split(",") if v.strip()]
    if named:
        chosen = [checked_source(store, v) for v in dict.fromkeys(named)]
    else:
        newest: dict[str, str] = {}
        for version in store.passed(SOURCE):  # oldest first: a newer one replaces an older one
            newest[_batch(store, version)] = version
        chosen = [checked_source(store, v) for v in newest.values()]
        if not chosen:
            checked_source(store, "")  # raises: nothing has passed its checks
    batches: dict[str, str] = {}
    for version in chosen:
        other = batches.setdefault(_batch(store, version), version)
        if other != version:
            raise DatasetError(
                f"{SOURCE} versions {other} and {version} hold the same input batch ({_batch(store, version)}): "
                "name only one of them"
            )
    by_label = class_counts(store, chosen)
    counts = {p: by_label[label] for p, label in LABELS.items()}
    missing = [p for p, n in counts.items() if not n]
    if missing:
        raise DatasetError(f"{SOURCE} version{'s' if len(chosen) > 1 else ''} {', '.join(chosen)} "
                           f"lack{'' if len(chosen) > 1 else 's'} class {', '.join(missing)} (counts: {counts})")  # fmt: skip
    return sorted(chosen)


def _batch(store: DatasetStore, version: str) -> str:
    """What an ingest version read: its simulate version or the digest of its file list."""
    return json.dumps(store.read_manifest(SOURCE, version).get("inputs", {}), sort_keys=True)


def check_schema(sources: list[str], inputs: dict[str, list[tuple[str, int]]]) -> None:
    """Refuse an ingest version whose events do not have the ingested schema (one file's footer per
    version: a version is written by one code version; each task checks its own file again)."""
    for source in sources:
        if not inputs[source]:
            raise DatasetError(f"{SOURCE} version {source} lists no events files")
        fs, path = fsspec.core.url_to_fs(inputs[source][0][0])
        with fs.open(path, "rb") as f:
            events_file(f, f"{SOURCE} version {source}")


def file_tasks(spark: SparkSession, files: list[tuple[str, int]]) -> RDD:
    """The ingest files' URLs as an RDD of up to four tasks per task slot, each given files of about
    the same total size."""
    groups = balanced_groups(files, max(1, min(len(files), 4 * task_slots(spark))))
    return spark.sparkContext.parallelize(groups, len(groups)).flatMap(lambda urls: urls)


def class_counts(store: DatasetStore, sources: list[str]) -> dict[int, int]:
    """Events of each class (label -> count) in the ingest versions, as their manifests count them."""
    manifests = [store.read_manifest(SOURCE, v)["counts"] for v in sources]
    return {label: sum(m.get(process, 0) for m in manifests) for process, label in LABELS.items()}


def rank_census(spark: SparkSession, files: list[tuple[str, int]], params: PrepareParams,
                windows: np.ndarray) -> tuple[np.ndarray, list[Key]]:
    """Events per (split, class) group and balancing-rank bin over every file, and the keys of the
    events in each group's window of bins (``lineage.census``), summed on the executors."""
    seed, fraction = params.seed, params.test_fraction

    def add(total: tuple[np.ndarray, list[Key]], url: str) -> tuple[np.ndarray, list[Key]]:
        lineage, label = read_keys(url)
        counts, keys = census(lineage, label, seed, fraction, windows)
        return total[0] + counts, total[1] + keys

    def merge(a: tuple[np.ndarray, list[Key]], b: tuple[np.ndarray, list[Key]]) -> tuple[np.ndarray, list[Key]]:
        return a[0] + b[0], a[1] + b[1]

    zero = (np.zeros((len(GROUPS), RANK_BINS), dtype=np.int64), [])
    tasks = file_tasks(spark, files)  # a census per task reaches the driver, or with many tasks one per tree node
    return tasks.treeAggregate(zero, add, merge, depth=1 if tasks.getNumPartitions() <= 32 else 2)


def balancing_cutoffs(spark: SparkSession, files: list[tuple[str, int]], params: PrepareParams, counts: np.ndarray,
                      targets: dict[str, int], windows: np.ndarray, keys: list[Key]) -> dict[tuple[str, int], Cutoff]:
    """Each group's cut-off: the ``(rank, source_file, entry)`` of its ``targets[split]``-th event in
    rank order, from the keys of its boundary bin (``lineage.boundaries``): those the census brought
    with its windows, or, if a boundary bin lies outside its group's window, those of the boundary
    bins alone, read in a second pass."""
    bins, places = boundaries(counts, targets)
    if ((bins < windows[:, 0]) | (bins > windows[:, 1])).any():
        log.info("a balancing cut-off lies outside its expected window (bins %s, windows %s): reading its keys again",
                 bins.tolist(), windows.tolist())
        keys = rank_census(spark, files, params, np.stack([bins, bins], axis=1))[1]
    return cutoffs(keys, bins, places)


def scatter_files(spark: SparkSession, files: list[tuple[str, int]], assignment: Assignment, scratch: str) -> list[dict[str, Any]]:
    """Scatter the kept events of every ingest file to pieces per output file (``shuffle.scatter``);
    one record per ingest file."""
    return collect_small(file_tasks(spark, files).map(lambda url: scatter(url, assignment, scratch)), len(files))


def balanced_groups(items: list[tuple[str, int]], n: int) -> list[list[str]]:
    """``n`` groups of ``(name, size)`` items with about equal total sizes (largest first, each to the
    lightest group), so that one task does not get all the large files.

    >>> balanced_groups([("a", 5), ("b", 1), ("c", 4), ("d", 2)], 2)
    [['a', 'b'], ['c', 'd']]
    """
    groups: list[tuple[int, int, list[str]]] = [(0, i, []) for i in range(n)]
    for name, size in sorted(items, key=lambda item: -item[1]):
        total, i, names = heapq.heappop(groups)
        names.append(name)
        heapq.heappush(groups, (total + size, i, names))
    return [names for _, _, names in sorted(groups, key=lambda g: g[1]) if names]


def check_kept(scattered: list[dict[str, Any]], targets: dict[str, int]) -> None:
    """The tasks kept exactly ``targets[split]`` events of every class (their hashes agree with Spark's)."""
    kept = np.sum([row["kept"] for row in scattered], axis=0).tolist() if scattered else [0] * len(GROUPS)
    expected = [targets[split] for split, _ in GROUPS]
    if kept != expected:
        raise RuntimeError(f"balancing kept {kept} events per (split, label) {GROUPS}, expected {expected}")


def write_splits(spark: SparkSession, parts: list[int], scalers: FeatureScalers, scratch: str, url: str,
                 params: PrepareParams) -> list[dict[str, Any]]:
    """Gather, transform and write every output file in its own task (``shuffle.gather``; row
    groups of ``rows_per_row_group``), both splits in one job. Returns the manifest's file records."""
    n, row_group = params.files_per_split, params.rows_per_row_group

    def gather_part(part: int) -> dict[str, Any]:
        split, name = SPLITS[part // n], f"part-{part % n:05d}.parquet"
        return gather(part, scratch, scalers, posixpath.join(url, split), name, row_group) | {"name": posixpath.join(split, name)}

    files = collect_small(spark.sparkContext.parallelize(parts, max(1, len(parts))).map(gather_part), 2 * n)
    for split in SPLITS:
        drop_attempts(posixpath.join(url, split))
    log.info("wrote %d files, %d events", len(files), sum(f["rows"] for f in files))
    return [{"path": f["name"], "size": f["size"], "sha256": f["sha256"]} for f in sorted(files, key=lambda f: f["name"])]
