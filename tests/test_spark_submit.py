"""The stages as Airflow runs them: `spark-submit hep_tasks/__main__.py <stage>`, in order,
ingest -> quality -> prepare -> quality, on simulated files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import hep_tasks
from hep_tasks import sparkjob

pytestmark = pytest.mark.slow
ENTRY = str(Path(hep_tasks.__file__).parent / "__main__.py")


def _submit(data_root, *args) -> dict:
    cmd = ["spark-submit", "--master", "local[2]", ENTRY, *args, "--data-root", str(data_root)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=os.environ)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_ingest_prepare_and_their_checks_through_spark_submit(tmp_path, input_dir):
    data = tmp_path / "data"
    ingested = _submit(data, "ingest", "--input", f"{input_dir}/*.root", "--input-roots", str(input_dir), "--entries-per-split", "40")
    assert ingested["stage"] == "ingest" and ingested["rows"]["total"] > 0
    checked = _submit(data, "quality", "--stage", "ingest", "--version", ingested["version"])
    assert checked["quality"] == "passed"
    again = _submit(data, "ingest", "--input", f"{input_dir}/*.root", "--input-roots", str(input_dir), "--entries-per-split", "40")
    assert again["version"] == ingested["version"] and again["spark_work"] is False  # nothing new: no Spark job

    prepared = _submit(data, "prepare", "--input", ingested["version"], "--files-per-split", "2")
    rows = prepared["rows"]
    assert rows["train"]["qcd"] == rows["train"]["ttbar"] == rows["train"]["wjets"] > 0
    assert rows["test"]["qcd"] == rows["test"]["ttbar"] == rows["test"]["wjets"] > 0
    checked = _submit(data, "quality", "--stage", "prepare", "--version", prepared["version"])
    assert checked["quality"] == "passed"
    assert not (data / "prepare" / "latest").exists()  # moved by publish only

    published = _submit(data, "publish", "--ingest", ingested["version"], "--prepare", prepared["version"])
    assert published["prepare"]["version"] == prepared["version"] and (data / "index.html").exists()
    assert (data / "prepare" / "latest").read_text().strip() == prepared["version"]


def test_the_master_given_to_spark_submit_is_the_one_used(tmp_path):
    """The Airflow connection reaches jobs as `spark-submit --master`; HEP_SPARK_MASTER must not override it."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from hep_tasks.sparkjob import spark_session, task_slots\n"
        "spark = spark_session('probe', 'local[2]')\n"
        "print('MASTER', spark.sparkContext.master, task_slots(spark))\n"
        "spark.stop()\n"
    )
    env = os.environ | {"HEP_SPARK_MASTER": "local[2]"}
    run = subprocess.run(["spark-submit", "--master", "local[1]", str(probe)], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "MASTER local[1] 1" in run.stdout


def test_a_stage_stops_spark_without_waiting_for_the_accumulator_server(tmp_path, request):
    """PySpark's SparkContext.stop() waits up to 1 s for its accumulator server after a Python job;
    sparkjob.stop_session stops the JVM as usual and leaves that wait to a daemon thread, and a new
    session works right after. Python workers and the accumulator server use Unix sockets (no
    ~40 ms TCP wait per Python task), no socket file outlives the job, and the Python workers have
    ended before Spark closes their sockets (else one may print a BrokenPipeError traceback)."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os, time\n"
        "from hep_tasks.sparkjob import spark_session, stop_session\n"
        "for i in range(2):\n"
        "    spark = spark_session('probe', 'local[1]')\n"
        "    total = spark.sparkContext.parallelize(range(10), 2).map(lambda x: x + i).sum()\n"
        "    workers = set(spark.sparkContext.parallelize(range(2), 2).map(lambda _: os.getpid()).collect())\n"
        "    unix = isinstance(spark.sparkContext._accumulatorServer.server_address, str)\n"
        "    started = time.perf_counter()\n"
        "    stop_session(spark)\n"
        "    print('STOP', i, total, round(time.perf_counter() - started, 3), spark.sparkContext._jsc is None, unix,\n"
        "          not any(os.path.exists(f'/proc/{pid}') for pid in workers))\n"
    )
    sockets = Path(tempfile.mkdtemp(prefix="hep-", dir="/tmp"))  # a Unix socket's path has at most 107 bytes
    request.addfinalizer(lambda: shutil.rmtree(sockets))
    too_long = sockets / ("d" * (sparkjob.UNIX_SOCKET_PATH_MAX - 43 - len(str(sockets))))  # sockets of 108 bytes
    for directory, conf, unix in ((sockets, [], "True"), (sockets, ["--conf", "spark.python.unix.domain.socket.enabled=false"], "False"),
                                  (too_long, [], "False")):  # fmt: skip
        run = subprocess.run(["spark-submit", "--master", "local[1]", "--conf", f"spark.python.unix.domain.socket.dir={directory}",
                              *conf, str(probe)], capture_output=True, text=True, timeout=300, env=os.environ)  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        stops = [line.split() for line in run.stdout.splitlines() if line.startswith("STOP")]
        assert [(s[1], s[2], s[4], s[5], s[6]) for s in stops] == [("0", "45", "True", unix, "True"), ("1", "55", "True", unix, "True")]
        assert all(float(s[3]) < 0.5 for s in stops), stops  # PySpark's own stop: 0.9-1 s here
        assert "Traceback" not in run.stderr and "Exception in thread" not in run.stderr
        assert list(sockets.iterdir()) == []
        assert ("would have a 108-byte path" in run.stdout + run.stderr) == (directory == too_long), run.stdout[-2000:]
