"""Options of the Spark driver JVM that our jobs start, and its class-data sharing archive.

Every stage is its own ``spark-submit``, so every DAG task pays a fresh JVM: loading and verifying
about 12,000 Spark, Scala and Hadoop classes, and compiling hot code while the first queries run.
:func:`java_options` is what the environment passes to that JVM (``SPARK_SUBMIT_OPTS``, set by
:func:`hep_tasks.localenv.local_environment` and by the image):

- ``-XX:TieredStopAtLevel=1``: C1 only. In these jobs the driver schedules Python tasks and runs
  small SQL queries; on 2 cores C2's compile threads compete with that work (BENCHMARKS.md).
- ``-Dlog4j2.configurationFile``: Spark logs warnings and errors only (``sparkconf/log4j2.properties``).
- ``-XX:SharedArchiveFile``: when :func:`archive_path` exists, a dynamic class-data sharing (AppCDS)
  archive of the classes a representative job loads, built once per environment by
  :func:`build_archive` (``make venv``, the image): those classes are mapped from it instead of
  being read from jars, parsed and verified. The JVM checks that the archive matches its class path
  (the same jars, sizes and times) and silently runs without it when it does not (a reinstalled
  pyspark, an ``spark.driver.extraClassPath``, or a ``SPARK_CONF_DIR``: a directory on the class
  path must be empty for CDS, which is why our log4j configuration is a system property and not a
  configuration directory).

Executors of a cluster are started by their workers and keep their defaults.

``python -m hep_tasks.driverjvm`` (which ``build_archive`` runs through ``spark-submit``) is the
archive's workload: the Spark operations of our stages on a few synthetic events.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: Spark's log4j configuration for our jobs.
LOG4J_CONFIG = Path(__file__).resolve().parent / "sparkconf" / "log4j2.properties"
#: C1 only (see the module docstring).
C1_ONLY = "-XX:TieredStopAtLevel=1"
#: Silence the JVM's CDS messages: a missing or mismatched archive is not an error (the JVM loads
#: classes from the jars as without it), and building one lists every class it skips.
QUIET_CDS = ("-Xlog:cds=off", "-Xlog:cds+dynamic=off")


def archive_path(prefix: str | os.PathLike[str] = sys.prefix) -> Path:
    """Where the archive of the Python environment at ``prefix`` lives (it matches that
    environment's pyspark jars)."""
    return Path(prefix) / "share" / "hep-pipeline" / "spark-driver.jsa"


def java_options(archive: Path | None, log4j_config: Path = LOG4J_CONFIG) -> str:
    """``SPARK_SUBMIT_OPTS`` for our driver JVMs, with the class-data ``archive`` unless None."""
    shared = (f"-XX:SharedArchiveFile={archive}", *QUIET_CDS) if archive is not None else ()
    return " ".join((C1_ONLY, f"-Dlog4j2.configurationFile={log4j_config}", *shared))


def local_java_options() -> str:
    """:func:`java_options` of this environment: its archive if it was built."""
    archive = archive_path()
    return java_options(archive if archive.is_file() else None)


def build_archive(env: dict[str, str], archive: Path | None = None) -> Path:
    """Run the workload of this module under ``spark-submit`` and archive the classes it loaded.

    ``env`` is the job environment (:func:`hep_tasks.localenv.local_environment`); the JVM writes
    the archive when it exits, to a temporary file that replaces ``archive`` only when complete.
    Raises ``RuntimeError`` with the job's output when no archive was written.
    """
    archive = archive_path() if archive is None else archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(f".{archive.name}.{os.getpid()}.tmp")
    job_env = dict(env)
    job_env.pop("SPARK_CONF_DIR", None)  # a non-empty directory on the class path disables CDS
    job_env["SPARK_SUBMIT_OPTS"] = " ".join((java_options(None), *QUIET_CDS, f"-XX:ArchiveClassesAtExit={tmp}"))
    spark_submit = str(Path(sys.executable).parent / "spark-submit")
    try:
        result = subprocess.run(
            [spark_submit, "--master", "local[2]", __file__], env=job_env, capture_output=True, text=True
        )
        if result.returncode or not tmp.is_file():
            raise RuntimeError(
                f"building the Spark driver's class-data archive failed (exit {result.returncode}, "
                f"{'no' if not tmp.is_file() else 'an'} archive written):\n{(result.stdout + result.stderr)[-3000:]}"
            )
        os.replace(tmp, archive)
    finally:
        tmp.unlink(missing_ok=True)
    return archive


def exercise(spark: SparkSession, scratch: str) -> None:
    """The Spark operations of our stages, on 200 synthetic events: Parquet written and read,
    arrays of particle rows, higher-order functions, a local checkpoint, aggregates, SQL on a view
    (scalar subqueries too, as the quality runner counts), a Python RDD with ``treeAggregate``,
    ``mapInArrow``, local rows to a DataFrame."""
    from pyspark.sql import functions as F

    from hep_tasks.sparkjob import collect_small

    url = Path(scratch, "events").as_uri()
    events = spark.range(200, numPartitions=2).selectExpr(
        "CAST(id % 3 AS INT) AS label",
        "CASE CAST(id % 3 AS INT) WHEN 0 THEN 'qcd' WHEN 1 THEN 'ttbar' ELSE 'wjets' END AS process",
        "transform(sequence(0, 13), i -> CAST(id * 0.5 + i AS FLOAT)) AS hlf",
        "transform(sequence(0, CAST(id % 7 AS INT)), r -> transform(sequence(0, 18), c -> CAST(r + c AS FLOAT))) AS particles",
        "CAST(id % 7 + 1 AS INT) AS n_particles",
        "concat('file', CAST(id % 4 AS STRING), '.root') AS source_file",
        "id AS entry",
    )
    events.write.mode("overwrite").parquet(url)
    df = spark.read.parquet(url)
    flagged = df.selectExpr(
        "*",
        "exists(hlf, x -> x IS NULL OR isnan(x) OR abs(x) = double('inf')) AS _rule_hlf",
        "exists(particles, r -> r IS NULL OR NOT forall(r, x -> x IS NOT NULL)) AS _rule_particles",
        "size(filter(particles, (r, i) -> get(r, 0) > i)) > 0 AS _rule_order",
        "exists(zip_with(slice(particles, 1, 2), slice(particles, 2, 2), (a, b) -> get(a, 5) < get(b, 5)), x -> x) AS _rule_zip",
        "aggregate(hlf, 0D, (a, x) -> a + x) AS hlf_sum",
    ).localCheckpoint(eager=True)
    batch = flagged.coalesce(1)
    batch.createOrReplaceTempView("batch")
    collect_small(spark.sql("SELECT source_file, entry FROM batch WHERE _rule_hlf OR _rule_particles"), 200)
    collect_small(spark.sql(  # the quality runner's row counts: scalar subqueries, run concurrently
        "SELECT (SELECT count(*) FROM (SELECT * FROM batch WHERE _rule_order)) AS n0, "
        "(SELECT count(*) FROM (SELECT entry FROM batch WHERE _rule_zip)) AS n1"
    ), 1)
    collect_small(spark.sql(
        "WITH counts AS (SELECT label, count(*) AS n FROM batch GROUP BY label) "
        "SELECT label, n FROM counts WHERE n < (SELECT max(n) FROM counts)"
    ), 3)
    collect_small(batch.agg(
        F.count(F.when(F.col("label").isNull(), 1)), F.min("n_particles"), F.max("n_particles"),
        F.sum(F.when(~F.col("label").isin(0, 1, 2), 1).otherwise(0)), F.countDistinct("label"),
        F.stddev(F.col("hlf_sum")), F.avg("entry"),
    ), 1)
    collect_small(batch.select("label").distinct(), 3)
    collect_small(batch.groupBy("source_file", "entry").count().where("count > 1"), 200)
    collect_small(batch.select(F.get("hlf", 0).alias("LepPT"), F.typeof("particles")).limit(1), 1)
    df.select("source_file", "entry").intersect(df.where("label = 0").select("source_file", "entry")).count()
    collect_small(spark.createDataFrame([(1, 0, 0.0)], "files_total long, files_quarantined long, fraction double"), 1)

    def per_partition(rows):
        yield sum(1 for _ in rows)

    spark.sparkContext.parallelize(range(100), 4).mapPartitions(per_partition).treeAggregate(0, lambda a, b: a + b, lambda a, b: a + b)
    df.select("hlf", "n_particles").mapInArrow(lambda batches: batches, "hlf array<float>, n_particles int").count()
    df.orderBy("entry").write.mode("overwrite").parquet(Path(scratch, "sorted").as_uri())


def main() -> None:
    from hep_tasks.sparkjob import spark_session, stop_session

    spark = spark_session("hep-driver-jvm-archive")
    try:
        with tempfile.TemporaryDirectory(prefix="hep-jvm-archive-") as scratch:
            exercise(spark, scratch)
    finally:
        stop_session(spark)  # as a stage's end (its classes archived too)


if __name__ == "__main__":
    main()
