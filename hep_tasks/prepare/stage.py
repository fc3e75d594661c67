"""The prepare stage: split, balance, fit scalers on train, ΔR-sort, scale, shuffle, write.

Order matters (ARCHITECTURE §3-4, fixing the 2019 leak where scalers saw the test data):

1. **Split first**, seeded and reproducible: an event's split follows from a hash of its lineage
   (source file, entry) and the seed, so it does not depend on partitioning or executor count.
2. **Balance** each split by undersampling every class to the smallest class, with exact counts:
   events are ranked within (split, class) by a second seeded hash and the first N are kept.
   Steps 1-2 read only the lineage keys and labels, never the particle payload.
3. **Fit** MinMax (HLF) and standardisation (particle features, real particles only) on the
   balanced training split, per Arrow batch on the executors (moments merged exactly on the
   driver); saved as ``scalers.json``.
4. **Transform** per Arrow batch (``transform.py``) and **shuffle** (a seeded hash of the lineage
   picks each event's output file and its place in it), both splits in one Spark pass; each task
   writes its ``train/`` or ``test/`` Parquet files with pyarrow (``hep_tasks.partfiles``) in row
   groups of ``rows_per_row_group`` events, the unit streamed into training.

Spark SQL for the relational part, Arrow batches + NumPy for the per-event arrays; no row UDFs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import posixpath
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from hep_tasks.config import PrepareParams
from hep_tasks.datasets import DatasetError, DatasetStore, code_version, summary, version_id
from hep_tasks.ingest.schema import N_HLF, N_PARTICLE_FEATURES
from hep_tasks.ingest.stage import EVENTS
from hep_tasks.physics import HLF_FEATURES, PARTICLE_FEATURES
from hep_tasks.partfiles import drop_attempts, write_part
from hep_tasks.prepare.scalers import ARTIFACT, FeatureScalers, MinMaxScaler, Moments, StandardScaler
from hep_tasks.prepare.transform import OUTPUT_SCHEMA, particle_rows, transform_batch
from hep_tasks.processes import LABELS, PROCESS_OF_LABEL
from hep_tasks.sparkjob import collect_small

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

STAGE = "prepare"
SOURCE = "ingest"
SPLITS = ("train", "test")
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

    what = f"{SOURCE} version{'s' if len(sources) > 1 else ''} {', '.join(sources)}"
    log.info("preparing %s", what)
    events = spark.read.parquet(*(store.url(SOURCE, s, EVENTS) for s in sources))
    check_schema(events, what)
    keys = assign_split(events.select("source_file", "entry", "label"), params.test_fraction, params.seed)
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
    kept = balance(assign_split(events, params.test_fraction, params.seed), targets, cutoffs(keys, targets))
    scalers = fit_scalers(kept.filter("split = 'train'"), targets["train"] * len(LABELS))
    log.info("scalers fitted on %d training events (%d particles)", scalers.fitted_on["events"], scalers.fitted_on["particles"])
    with store.begin(STAGE, version) as pending:
        text = scalers.dumps()
        with store.fs.open(posixpath.join(pending.path, ARTIFACT), "w") as f:
            f.write(text)
        written = write_splits(output_files(kept, params), scalers, pending.url, params)
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


def output_files(kept: DataFrame, params: PrepareParams) -> DataFrame:
    """Add each event's output file ``_part`` (``files_per_split`` per split, chosen by a seeded
    hash of its lineage) and its place in that file, ``_shuffle`` (random order within the file)."""
    from pyspark.sql import functions as F

    n = params.files_per_split
    shuffle = _lineage_hash(params.seed, "shuffle")
    split_index = F.when(F.col("split") == SPLITS[0], 0).otherwise(1)
    return kept.withColumn("_shuffle", shuffle).withColumn("_part", split_index * n + F.pmod(F.col("_shuffle"), F.lit(n)))


_MOMENTS_DDL = "events bigint, hlf_min array<double>, hlf_max array<double>, particles bigint, mean array<double>, m2 array<double>"


def fit_scalers(train: DataFrame, n_train: int) -> FeatureScalers:
    """MinMax of the 14 HLF and mean/std of the 19 particle features over real training particles,
    fitted per Arrow batch on the executors and merged on the driver (one row per task)."""
    from functools import reduce

    import numpy as np

    rows = collect_small(train.select("hlf", "particles").mapInArrow(_partial_fit, _MOMENTS_DDL), 1_000_000)
    fitted = [r for r in rows if r["events"]]
    particles = reduce(Moments.merge, (Moments(r["particles"], np.array(r["mean"]), np.array(r["m2"])) for r in fitted))
    return FeatureScalers(
        hlf=MinMaxScaler(
            HLF_FEATURES, np.min([r["hlf_min"] for r in fitted], axis=0), np.max([r["hlf_max"] for r in fitted], axis=0)
        ),
        particles=StandardScaler(PARTICLE_FEATURES, particles.mean, particles.std),
        fitted_on={"split": "train", "events": n_train, "particles": int(particles.n)},
    )


def _partial_fit(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """One task's share of the scaler fit: HLF minima/maxima and particle moments of its batches."""
    import numpy as np
    import pyarrow.compute as pc

    events, hlf_min, hlf_max = 0, np.full(N_HLF, np.inf), np.full(N_HLF, -np.inf)
    moments = Moments.of(np.empty((0, N_PARTICLE_FEATURES)))
    for batch in batches:
        if not batch.num_rows:
            continue
        hlf = pc.list_flatten(batch.column("hlf")).to_numpy(zero_copy_only=False).astype(np.float64).reshape(-1, N_HLF)
        events += batch.num_rows
        hlf_min, hlf_max = np.minimum(hlf_min, hlf.min(axis=0)), np.maximum(hlf_max, hlf.max(axis=0))
        moments = moments.merge(Moments.of(particle_rows(batch.column("particles"))[1]))
    yield pa.RecordBatch.from_pylist(
        [{"events": events, "hlf_min": hlf_min.tolist(), "hlf_max": hlf_max.tolist(), "particles": moments.n,
          "mean": moments.mean.tolist(), "m2": moments.m2.tolist()}]
    )


def write_splits(rows: DataFrame, scalers: FeatureScalers, url: str, params: PrepareParams) -> list[dict[str, Any]]:
    """Transform and write both splits in one Spark pass: the events are shuffled to their output
    file (``_part``) and ordered by ``_shuffle``; each task writes its files with pyarrow (row groups
    of ``rows_per_row_group``). Returns the manifest's file records."""
    n, row_group = params.files_per_split, params.rows_per_row_group
    columns = [*(f.name for f in OUTPUT_SCHEMA if f.name != "label_onehot"), "_part"]

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for part, group in itertools.groupby(_by_part(batches), key=lambda pair: pair[0]):
            split, name = SPLITS[part // n], f"part-{part % n:05d}.parquet"
            prepared = (transform_batch(batch, scalers) for _, batch in group)
            written = write_part(prepared, posixpath.join(url, split), name, OUTPUT_SCHEMA, row_group)
            yield pa.RecordBatch.from_pylist([written | {"name": posixpath.join(split, name)}])

    ordered = rows.repartition(2 * n, "_part").sortWithinPartitions("_part", "_shuffle").select(*columns)
    files = collect_small(ordered.mapInArrow(write, "name string, size bigint, sha256 string, rows bigint"), 2 * n)
    for split in SPLITS:
        drop_attempts(posixpath.join(url, split))
    log.info("wrote %d files, %d events", len(files), sum(f["rows"] for f in files))
    return [{"path": f["name"], "size": f["size"], "sha256": f["sha256"]} for f in files]


def _by_part(batches: Iterator[pa.RecordBatch]) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(output file, slice) for each run of equal ``_part`` in batches sorted by ``_part``."""
    import numpy as np

    for batch in batches:
        parts = batch.column("_part").to_numpy()
        starts = np.flatnonzero(np.diff(parts, prepend=parts[:1] - 1)) if len(parts) else []
        for start, stop in zip(starts, [*starts[1:], len(parts)]):
            yield int(parts[start]), batch.slice(start, stop - start)
