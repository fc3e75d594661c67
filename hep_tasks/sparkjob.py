"""Spark plumbing shared by every stage: the session, small results, file checksums.

When ``spark-submit`` starts a job it sets the master; otherwise (tests, benchmarks, a plain
``python -m hep_tasks``) the master comes from ``HEP_SPARK_MASTER`` (default ``local[*]``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import posixpath
import sys
import threading
import uuid
from collections.abc import Iterator
from urllib.parse import urlparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark import RDD
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


def spark_session(app_name: str, master: str | None = None) -> SparkSession:
    """The job's SparkSession; ``master`` applies only when spark-submit did not set one."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    if "PYSPARK_GATEWAY_PORT" in os.environ:
        # Started by spark-submit: join its JVM first, since only then does SparkConf() see the
        # properties spark-submit set (--master, --conf); before, SparkConf is an empty dict.
        SparkContext._ensure_initialized()
    conf = SparkConf()
    builder = SparkSession.builder.appName(app_name)
    if not conf.contains("spark.master"):
        builder = builder.master(master or os.environ.get("HEP_SPARK_MASTER", "local[*]"))
    defaults = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.shuffle.partitions": os.environ.get("HEP_SHUFFLE_PARTITIONS", "8"),
        "spark.ui.showConsoleProgress": "false",
        # Python workers talk to their JVM over a Unix socket, not loopback TCP: on TCP each Python
        # task waited ~40 ms (Nagle's algorithm against delayed ACKs) for its input's last bytes.
        "spark.python.unix.domain.socket.enabled": str(_unix_sockets_fit(conf)).lower(),
    }
    for key, value in defaults.items():
        if not conf.contains(key):
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    log.info("Spark %s, master %s, %d task slots", spark.version, spark.sparkContext.master, task_slots(spark))
    return spark


#: The longest path of a Unix socket on Linux (``sun_path`` holds 108 bytes, the last one NUL).
UNIX_SOCKET_PATH_MAX = 107


def _unix_sockets_fit(conf: Any) -> bool:
    """Whether PySpark's Unix sockets (``<dir>/.<uuid4>.sock``, ``dir`` the configured
    ``spark.python.unix.domain.socket.dir`` or the driver JVM's ``java.io.tmpdir``) have short enough
    paths; if not, the job keeps loopback TCP and says why."""
    from pyspark import SparkContext

    directory = conf.get("spark.python.unix.domain.socket.dir", None)
    if not directory:
        jvm = SparkContext._jvm  # the JVM is up under spark-submit; otherwise Java's default applies
        directory = jvm.java.lang.System.getProperty("java.io.tmpdir") if jvm is not None else "/tmp"
    longest = len(os.path.join(directory, f".{uuid.uuid4()}.sock").encode())
    if longest > UNIX_SOCKET_PATH_MAX:
        log.warning("Python workers use loopback TCP (about 40 ms more per Python task): a Unix socket in %s "
                    "would have a %d-byte path, over the %d bytes allowed", directory, longest, UNIX_SOCKET_PATH_MAX)
        return False
    return True


class LazySession:
    """Stands for the job's SparkSession and creates it on first use, so a stage that finds its
    version already committed (nothing new to do) finishes without starting any Spark work."""

    def __init__(self, app_name: str, master: str | None = None):
        self._args = (app_name, master)
        self._session: SparkSession | None = None

    @property
    def started(self) -> bool:
        return self._session is not None

    def __getattr__(self, name: str) -> Any:
        if self._session is None:
            self._session = spark_session(*self._args)
        return getattr(self._session, name)

    def stop(self) -> None:
        if self._session is not None:
            stop_session(self._session)


def stop_session(spark: SparkSession) -> None:
    """``spark.stop()``, without waiting up to a second for PySpark's accumulator server.

    That server (a socketserver thread in this process) handles the JVM's connection in a loop
    that looks for a shutdown every second, so ``SparkContext.stop()`` blocks in its ``shutdown()``
    for up to 1 s after the JVM has stopped: about 1 s at the end of every stage, since a stage
    stops right after its last job. Here the JVM side stops as usual and the server is shut down
    by a daemon thread, which ends within that second or with the process. A server on a Unix
    socket (``spark.python.unix.domain.socket.enabled``) has its socket file removed here, since
    the process may end before that thread does.
    """
    sc = spark.sparkContext
    server = getattr(sc, "_accumulatorServer", None)
    if server is not None:
        sc._accumulatorServer = None  # SparkContext.stop() below skips the blocking shutdown
    _end_python_daemons(sc)
    spark.stop()
    if server is not None:
        if isinstance(server.server_address, str):  # a Unix socket's path (the server keeps its open socket)
            with contextlib.suppress(FileNotFoundError):
                os.remove(server.server_address)
        threading.Thread(target=server.shutdown, name="hep-accumulator-server-shutdown", daemon=True).start()


def _end_python_daemons(sc: Any) -> None:
    """End the PySpark daemons of this JVM's executor (local masters) and their idle workers before
    Spark stops: SIGTERM to a daemon makes it send its workers SIGHUP, which ends them silently.
    Otherwise Spark first closes the idle workers' sockets, and a worker that sees its socket close
    prints a ``BrokenPipeError`` traceback into the task log as it exits (on Unix sockets a write to
    a closed peer fails at once; on TCP the first one is buffered). A cluster's executors run their
    daemons elsewhere: nothing to do here."""
    jvm = sc._jvm
    for daemon in jvm.java.lang.ProcessHandle.current().children().toArray():
        if "pyspark.daemon" not in daemon.info().commandLine().orElse(""):
            continue
        workers = list(daemon.descendants().toArray())
        daemon.destroy()
        for process in [daemon, *workers]:
            with contextlib.suppress(Exception):  # ended already, or still ending after 2 s: Spark's stop carries on
                process.onExit().get(2, jvm.java.util.concurrent.TimeUnit.SECONDS)


def task_slots(spark: SparkSession) -> int:
    """Tasks the application can run at once now (executor cores / ``spark.task.cpus``)."""
    sc = spark.sparkContext
    return max(1, sc.defaultParallelism // int(sc.getConf().get("spark.task.cpus", "1")))


def collect_small(data: DataFrame | RDD, max_rows: int) -> list[Any]:
    """Bring a small result (aggregates, per-file metadata) to the driver, refusing a large one.

    Datasets never come to the driver; this guard makes the intent checkable.
    """
    if hasattr(data, "limit"):
        # A limit is collected like take(): one partition first, then 4x more per job, so tasks that
        # do real work (a Python stage) would run one job after another; scan them all in one job.
        with sql_conf(data.sparkSession, {"spark.sql.limit.initialNumPartitions": str(2**31 - 1)}):
            rows = data.limit(max_rows + 1).collect()
    else:  # one job over every partition at once (RDD.take would scan them a few at a time)
        bound = max_rows + 1
        rows = data.mapPartitions(lambda it: itertools.islice(it, bound)).collect()
    if len(rows) > max_rows:
        raise RuntimeError(f"refusing to collect more than {max_rows} rows to the driver")
    return rows


@contextlib.contextmanager
def sql_conf(spark: SparkSession, values: dict[str, str]) -> Iterator[None]:
    """Set runtime SQL properties of ``spark`` for the duration of the block, then restore them."""
    before = {key: spark.conf.get(key, None) for key in values}
    for key, value in values.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def file_checksums(spark: SparkSession, url: str, max_files: int = 100_000) -> list[dict[str, Any]]:
    """(path relative to ``url``, size, sha256) of every data file below ``url``, hashed on executors."""
    from pyspark.sql import functions as F

    files = (
        spark.read.format("binaryFile")
        .option("recursiveFileLookup", "true")
        .option("pathGlobFilter", "[!_.]*")
        .load(url)
        .select("path", F.col("length").alias("size"), F.sha2("content", 256).alias("sha256"))
    )
    base = urlparse(url).path
    out = [
        {"path": posixpath.relpath(urlparse(row["path"]).path, base), "size": int(row["size"]), "sha256": row["sha256"]}
        for row in collect_small(files, max_files)
    ]
    return sorted(out, key=lambda f: f["path"])
