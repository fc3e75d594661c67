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

Steps 1-2 read only the lineage keys (Spark SQL); only keys pass through Spark's shuffle, the
particle payload is read once per step 3 and 4 by pyarrow and never enters the JVM.

Spark SQL for the relational part, Arrow batches + NumPy for the per-event arrays; no row UDFs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import posixpath
from typing import TYPE_CHECKING, Any

from hep_tasks.config import PrepareParams
from hep_tasks.datasets import DatasetError, DatasetStore, code_version, summary, version_id
from hep_tasks.ingest.schema import spark_ddl
from hep_tasks.ingest.stage import EVENTS
from hep_tasks.partfiles import drop_attempts
from hep_tasks.prepare.scalers import ARTIFACT, FeatureScalers
from hep_tasks.prepare.shuffle import SCATTERED, fit, gather, scatter
from hep_tasks.processes import LABELS, PROCESS_OF_LABEL
from hep_tasks.sparkjob import collect_small

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

STAGE = "prepare"
SOURCE = "ingest"
SPLITS = ("train", "test")
#: Scratch directory of a pending version: the pieces between scatter and gather.
SCRATCH = "_shuffle"
#: Events per bucket of an output file (the most a task holds in memory while writing one).
BUCKET_ROWS = 8192
REQUIRED_COLUMNS = {
    "label": "int",
    "hlf": "array<float>",
    "particles": "array<array<float>>",
    "source_file": "string",
    "entry": "bigint",
}
_BUCKETS = 1 << 24  # resolution of the hash -> [0, 1) mapping of the split


def run(spark: SparkSession, store: DatasetStore, params: PrepareParams) -> dict[str, Any]:
    """Prepare balanced, scaled, shuffled train/test datasets from checked ingest versions."""
    sources = checked_sources(store, params.input)
    version = planned_version(sources, params)
    if store.exists(STAGE, version):
        log.info("prepare version %s already exists: nothing to do", version)
        return summary(store, store.read_manifest(STAGE, version))

    from pyspark.sql import functions as F

    what = f"{SOURCE} version{'s' if len(sources) > 1 else ''} {', '.join(sources)}"
    log.info("preparing %s", what)
    events = spark.read.parquet(*(store.url(SOURCE, s, EVENTS) for s in sources))
    check_schema(events, what)
    located = events.select("source_file", "entry", "label", F.col("_metadata.file_path").alias("_file"))
    keys = assign_split(located, params.test_fraction, params.seed)
    before = class_counts(keys)
    for split in SPLITS:
        missing = [p for p, n in before[split].items() if n == 0]
        if missing:
            raise DatasetError(
                f"{what}: the {split} split has no {', '.join(missing)} events "
                f"({before[split]}); more events are needed for a {params.test_fraction:.0%} test fraction"
            )
    targets = {split: min(before[split].values()) for split in SPLITS}
    log.info("events per class before balancing %s; keeping %s per class", before, targets)
    kept = output_files(balance(keys, targets, cutoffs(keys, targets)), params, targets).persist()  # keys: small
    try:
        with store.begin(STAGE, version) as pending:
            scratch = posixpath.join(pending.url, SCRATCH)
            n_files = sum(len(store.read_manifest(SOURCE, s)["files"]) for s in sources)
            scattered = scatter_events(kept, scratch, n_files)
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
    finally:
        kept.unpersist()
    return summary(store, manifest)


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
    counts = {p: sum(store.read_manifest(SOURCE, v)["counts"].get(p, 0) for v in chosen) for p in LABELS}
    missing = [p for p, n in counts.items() if not n]
    if missing:
        raise DatasetError(f"{SOURCE} version{'s' if len(chosen) > 1 else ''} {', '.join(chosen)} "
                           f"lack{'' if len(chosen) > 1 else 's'} class {', '.join(missing)} (counts: {counts})")  # fmt: skip
    return sorted(chosen)


def _batch(store: DatasetStore, version: str) -> str:
    """What an ingest version read: its simulate version or the digest of its file list."""
    return json.dumps(store.read_manifest(SOURCE, version).get("inputs", {}), sort_keys=True)


def check_schema(df: DataFrame, what: str) -> None:
    found = dict(df.dtypes)
    wrong = [f"{c} ({found.get(c, 'missing')}, expected {t})" for c, t in REQUIRED_COLUMNS.items() if found.get(c) != t]
    if wrong:
        raise DatasetError(f"{what} has the wrong schema: {', '.join(wrong)} (columns: {', '.join(found)})")


def _lineage_hash(seed: int, salt: str):
    from pyspark.sql import functions as F

    return F.xxhash64(F.col("source_file"), F.col("entry"), F.lit(seed), F.lit(salt))


def assign_split(events: DataFrame, test_fraction: float, seed: int) -> DataFrame:
    """Add ``split`` ('train'/'test') from a seeded hash of the lineage, and the ranking key ``_rank``."""
    from pyspark.sql import functions as F

    u = F.pmod(_lineage_hash(seed, "split"), F.lit(_BUCKETS)) / F.lit(_BUCKETS)
    return events.withColumn("split", F.when(u < F.lit(test_fraction), "test").otherwise("train")).withColumn(
        "_rank", _lineage_hash(seed, "balance")
    )


def class_counts(df: DataFrame) -> dict[str, dict[str, int]]:
    counts = {split: dict.fromkeys(LABELS, 0) for split in SPLITS}
    for row in collect_small(df.groupBy("split", "label").count(), len(SPLITS) * len(LABELS)):
        counts[row["split"]][PROCESS_OF_LABEL[row["label"]]] = row["count"]
    return counts


def cutoffs(keyed: DataFrame, targets: dict[str, int]) -> dict[tuple[str, int], tuple[int, str, int]]:
    """Per (split, label): the ``(_rank, source_file, entry)`` of the ``targets[split]``-th event in
    seeded order, the last one balancing keeps. Reads the keys only; six small rows come back."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = keyed.select("source_file", "entry", "split", "label", "_rank")
    window = Window.partitionBy("split", "label").orderBy("_rank", "source_file", "entry")
    target = F.when(F.col("split") == "train", targets["train"]).otherwise(targets["test"])
    last = keys.withColumn("_n", F.row_number().over(window)).filter(F.col("_n") == target)
    rows = collect_small(last, len(SPLITS) * len(LABELS))
    return {(r["split"], r["label"]): (r["_rank"], r["source_file"], r["entry"]) for r in rows}


def balance(keyed: DataFrame, targets: dict[str, int], last: dict[tuple[str, int], tuple[int, str, int]] | None = None) -> DataFrame:
    """Keep exactly ``targets[split]`` events of every class in each split: those up to the class's
    cutoff (:func:`cutoffs`, computed here unless given) in seeded order. A filter, not a join, so the
    events' payload is read where it lies and never shuffled for balancing."""
    from functools import reduce

    from pyspark.sql import functions as F

    last = last if last is not None else cutoffs(keyed, targets)
    order = F.struct("_rank", "source_file", "entry")
    keep = [
        (F.col("split") == split) & (F.col("label") == label) & (order <= _key_struct(r, f, e))
        for (split, label), (r, f, e) in last.items()
    ]
    return keyed.filter(reduce(lambda a, b: a | b, keep))


def _key_struct(rank: int, source_file: str, entry: int):
    from pyspark.sql import functions as F

    return F.struct(F.lit(rank).cast("bigint").alias("_rank"), F.lit(source_file).alias("source_file"),
                    F.lit(entry).cast("bigint").alias("entry"))


def output_files(kept: DataFrame, params: PrepareParams, targets: dict[str, int]) -> DataFrame:
    """Add each event's output file ``_part`` (``files_per_split`` per split, chosen by a seeded
    hash of its lineage), its bucket in that file ``_bucket`` and its place in the bucket
    ``_shuffle``: a file is its buckets in turn, each in random order, and a bucket holds about
    :data:`BUCKET_ROWS` events, so that writing a file never holds more than one bucket in memory
    however large the files grow."""
    from pyspark.sql import functions as F

    n = params.files_per_split
    buckets = {split: max(1, math.ceil(targets[split] * len(LABELS) / n / BUCKET_ROWS)) for split in SPLITS}
    is_train = F.col("split") == SPLITS[0]
    shuffle = _lineage_hash(params.seed, "shuffle")
    bucket = F.pmod(_lineage_hash(params.seed, "bucket"), F.when(is_train, buckets[SPLITS[0]]).otherwise(buckets[SPLITS[1]]))
    part = F.when(is_train, 0).otherwise(n) + F.pmod(F.col("_shuffle"), F.lit(n))
    return kept.withColumn("_shuffle", shuffle).withColumn("_part", part).withColumn("_bucket", bucket.cast("int"))


def scatter_events(kept: DataFrame, scratch: str, n_files: int) -> list[dict[str, Any]]:
    """Scatter the kept events to pieces per output file, in Python tasks, one ingest file at a time
    (``shuffle.scatter``); one row per ingest file. The keys are grouped by ingest file over one
    task per file, up to four per task slot (adaptive execution would coalesce such a small
    shuffle into one task)."""
    from hep_tasks.sparkjob import task_slots

    tasks = max(1, min(n_files, 4 * task_slots(kept.sparkSession)))
    grouped = kept.select("_file", "source_file", "entry", "split", "_part", "_bucket", "_shuffle").repartition(tasks, "_file")
    scattered = grouped.groupBy("_file").applyInArrow(lambda keys: scatter(keys, scratch), spark_ddl(SCATTERED))
    return [row.asDict() for row in collect_small(scattered, n_files)]


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
