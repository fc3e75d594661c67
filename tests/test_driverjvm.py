"""The Spark driver JVM's options and its class-data sharing archive (hep_tasks/driverjvm.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hep_tasks.driverjvm import LOG4J_CONFIG, archive_path, build_archive, java_options, local_java_options
from hep_tasks.localenv import local_environment

#: A driver that runs a small SQL query and prints its result.
JOB = """
from pyspark.sql import SparkSession
spark = SparkSession.builder.master("local[1]").getOrCreate()
print("RESULT", spark.range(10).selectExpr("sum(id) AS s").collect()[0].s)
spark.stop()
"""


def test_java_options_name_the_archive_only_when_there_is_one(tmp_path):
    plain = java_options(None)
    assert plain.split() == ["-XX:TieredStopAtLevel=1", f"-Dlog4j2.configurationFile={LOG4J_CONFIG}"]
    archive = tmp_path / "a.jsa"
    shared = java_options(archive).split()
    assert shared[:2] == plain.split() and f"-XX:SharedArchiveFile={archive}" in shared
    assert {"-Xlog:cds=off", "-Xlog:cds+dynamic=off"} <= set(shared)  # a stale archive is silently unused
    assert archive_path("/opt/venv") == Path("/opt/venv/share/hep-pipeline/spark-driver.jsa")


def test_the_local_environment_passes_the_driver_options_and_no_configuration_directory():
    env = local_environment(base={"PATH": os.environ["PATH"]})
    assert env["SPARK_SUBMIT_OPTS"] == local_java_options()
    assert "SPARK_CONF_DIR" not in env  # on the class path, a non-empty directory disables the archive
    assert local_environment(base={"SPARK_SUBMIT_OPTS": "-Xmx2g"})["SPARK_SUBMIT_OPTS"] == "-Xmx2g"  # set values win


def _submit(job: Path, options: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPARK_SUBMIT_OPTS": options}
    spark_submit = str(Path(sys.executable).parent / "spark-submit")
    return subprocess.run([spark_submit, *args, str(job)], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_built_archive_serves_the_driver_jvm_its_classes_and_a_mismatch_is_silent(tmp_path):
    archive = build_archive(dict(os.environ), tmp_path / "spark-driver.jsa")
    assert archive.is_file() and not list(tmp_path.glob(".*.tmp"))
    job = tmp_path / "job.py"
    job.write_text(JOB)
    classes = tmp_path / "classes.log"
    run = _submit(job, f"{java_options(archive)} -Xlog:class+load=info:file={classes}")
    assert run.returncode == 0 and "RESULT 45" in run.stdout, run.stderr[-2000:]
    shared = [line for line in classes.read_text().splitlines() if "shared objects file (top)" in line]
    assert sum("org.apache.spark.sql" in line for line in shared) > 1000, f"{len(shared)} classes from the archive"
    # Spark logged through our log4j configuration (warnings only), not its INFO default
    assert "log4j2-defaults.properties" not in run.stderr and " INFO " not in run.stderr
    # another class path (a jar directory in front): the archive does not match; the job runs, says nothing of it
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "x.txt").write_text("x")
    run = _submit(job, java_options(archive), "--driver-class-path", str(extra))
    assert run.returncode == 0 and "RESULT 45" in run.stdout, run.stderr[-2000:]
    assert "cds" not in (run.stdout + run.stderr).lower() and "shared archive" not in run.stderr.lower()


def test_a_failed_archive_build_says_why_and_leaves_no_file(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # spark-submit is found by its full path; java is not
    env.pop("JAVA_HOME", None)
    with pytest.raises(RuntimeError, match="class-data archive failed"):
        build_archive(env, tmp_path / "spark-driver.jsa")
    assert not list(tmp_path.iterdir())
