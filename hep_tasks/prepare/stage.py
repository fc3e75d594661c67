"""The prepare stage: split, balance, fit scalers on train, ΔR-sort, scale, shuffle, write.

Order matters (ARCHITECTURE §3-4, fixing the 2019 leak where scalers saw the test data):

1. **Split first**, seeded and reproducible: an event's split follows from a hash of its lineage
   (source file, entry) and the seed, so it does not depend on partitioning or executor count.
2. **Balance** each split by undersampling every class to the smallest class, with exact counts:
   events are ranked within (split, class) by a second seeded hash and the first N are kept.
3. **Fit** MinMax (HLF) and standardisation (particle features, real particles only) on the
   balanced training split; saved as ``scalers.json``.
4. **Transform** per Arrow batch (``transform.py``) and **shuffle** (random file assignment and
   random order within each file), then write ``train/`` and ``test/`` Parquet with row groups of
   ``rows_per_row_group`` events, the unit streamed into training.

Spark SQL for the relational part, Arrow batches + NumPy for the per-event arrays; no row UDFs.
"""

from __future__ import annotations

import json
import logging
import posixpath
from typing import TYPE_CHECKING, Any

from hep_tasks.config import PrepareParams
from hep_tasks.datasets import DatasetError, DatasetStore, code_version, summary, version_id
from hep_tasks.ingest.schema import N_HLF, N_PARTICLE_FEATURES
from hep_tasks.ingest.stage import EVENTS
from hep_tasks.physics import HLF_FEATURES, PARTICLE_FEATURES
from hep_tasks.prepare.scalers import ARTIFACT, FeatureScalers, MinMaxScaler, StandardScaler
from hep_tasks.prepare.transform import OUTPUT_DDL, transform_batch
from hep_tasks.processes import LABELS, PROCESS_OF_LABEL
from hep_tasks.sparkjob import collect_small, file_checksums

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
    keyed = assign_split(events, params.test_fraction, params.seed)
    before = class_counts(keyed)
    for split in SPLITS:
        missing = [p for p, n in before[split].items() if n == 0]
        if missing:
            raise DatasetError(
                f"{what}: the {split} split has no {', '.join(missing)} events "
                f"({before[split]}); more events are needed for a {params.test_fraction:.0%} test fraction"
            )
    targets = {split: min(before[split].values()) for split in SPLITS}
    log.info("events per class before balancing %s; keeping %s per class", before, targets)
    balanced = balance(keyed, targets, params.seed).persist()
    try:
        scalers = fit_scalers(balanced.filter("split = 'train'"), targets["train"] * len(LABELS))
        log.info("scalers fitted on %d training events (%d particles)", scalers.fitted_on["events"], scalers.fitted_on["particles"])
        with store.begin(STAGE, version) as pending:
            with store.fs.open(posixpath.join(pending.path, ARTIFACT), "w") as f:
                f.write(scalers.dumps())
            for split in SPLITS:
                write_split(balanced.filter(f"split = '{split}'"), scalers, posixpath.join(pending.url, split), params)
            manifest = pending.commit(
                {
                    "inputs": {SOURCE: sources},
                    "parameters": params.to_dict(),
                    "code_version": code_version(__name__),
                    "counts": {split: {p: targets[split] for p in LABELS} for split in SPLITS}
                    | {"total": sum(targets.values()) * len(LABELS)},
                    "counts_before_balancing": before,
                    "scalers": ARTIFACT,
                    "files": file_checksums(spark, pending.url),
                }
            )
    finally:
        balanced.unpersist()
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


def balance(keyed: DataFrame, targets: dict[str, int], seed: int) -> DataFrame:
    """Keep exactly ``targets[split]`` events of every class in each split (seeded choice)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = keyed.select("source_file", "entry", "split", "label", "_rank")
    window = Window.partitionBy("split", "label").orderBy("_rank", "source_file", "entry")
    target = F.when(F.col("split") == "train", targets["train"]).otherwise(targets["test"])
    keep = keys.withColumn("_n", F.row_number().over(window)).filter(F.col("_n") <= target)
    return keyed.join(keep.select("source_file", "entry"), ["source_file", "entry"], "left_semi")


def fit_scalers(train: DataFrame, n_train: int) -> FeatureScalers:
    """MinMax of the 14 HLF and mean/std of the 19 particle features over real training particles."""
    from pyspark.sql import functions as F

    import numpy as np

    hlf = collect_small(
        train.select(
            *[F.min(F.col("hlf")[i]).alias(f"min{i}") for i in range(N_HLF)],
            *[F.max(F.col("hlf")[i]).alias(f"max{i}") for i in range(N_HLF)],
        ),
        1,
    )[0]
    p = F.col("p")
    particles = collect_small(
        train.select(F.explode("particles").alias("p")).select(
            F.count(F.lit(1)).alias("n"),
            *[F.avg(p[j].cast("double")).alias(f"mean{j}") for j in range(N_PARTICLE_FEATURES)],
            *[F.stddev_pop(p[j].cast("double")).alias(f"std{j}") for j in range(N_PARTICLE_FEATURES)],
        ),
        1,
    )[0]
    return FeatureScalers(
        hlf=MinMaxScaler(
            HLF_FEATURES,
            np.array([hlf[f"min{i}"] for i in range(N_HLF)], dtype=np.float64),
            np.array([hlf[f"max{i}"] for i in range(N_HLF)], dtype=np.float64),
        ),
        particles=StandardScaler(
            PARTICLE_FEATURES,
            np.array([particles[f"mean{j}"] for j in range(N_PARTICLE_FEATURES)], dtype=np.float64),
            np.array([particles[f"std{j}"] for j in range(N_PARTICLE_FEATURES)], dtype=np.float64),
        ),
        fitted_on={"split": "train", "events": n_train, "particles": int(particles["n"])},
    )


def write_split(df: DataFrame, scalers: FeatureScalers, url: str, params: PrepareParams) -> None:
    """Transform, shuffle and write one split as ``files_per_split`` Parquet files."""
    shuffle = _lineage_hash(params.seed, "shuffle")
    shuffled = df.withColumn("_shuffle", shuffle).repartition(params.files_per_split, "_shuffle")
    ordered = shuffled.sortWithinPartitions("_shuffle").drop("_shuffle", "_rank", "split")
    prepared = ordered.mapInArrow(lambda batches: (transform_batch(b, scalers) for b in batches), OUTPUT_DDL)
    (
        prepared.write.option("parquet.block.row.count.limit", params.rows_per_row_group)
        .option("parquet.block.size", 256 * 1024 * 1024)
        .parquet(url)
    )
    log.info("wrote %s: %d files", url, params.files_per_split)
