"""``TensorFlowDistributor``: TensorFlow multi-worker training inside one Spark barrier stage.

Modelled on Spark's ``TorchDistributor`` (pyspark.ml.torch.distributor) and TensorFlowOnSpark's
``TFCluster.run(..., use_barrier=True)``:

1. Before any job, the requested number of workers is checked against the application's task
   slots (a clear error instead of a barrier stage that waits forever for slots).
2. One barrier task per worker: each picks a free port on its executor's host, and
   ``BarrierTaskContext.allGather`` gives every task the ordered list of ``host:port`` peers,
   from which it builds ``TF_CONFIG`` (worker index = partition id, index 0 is the chief).
3. Each task starts a fresh Python process (``hep_tasks.train.worker``) with that ``TF_CONFIG``,
   the task's thread count and the task's ``sys.path`` (so ``--py-files`` code is found), and
   forwards the process's log lines to the driver over a small TCP log server; the process dies
   with its task (``PR_SET_PDEATHSIG``).
4. Each task returns its worker's small JSON result; the driver gets one per worker.

A failed attempt (a lost executor or worker) is relaunched up to ``max_restarts`` times; training
resumes from the last checkpoint. Only JSON crosses process boundaries, nothing is unpickled
from the data.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from typing import TYPE_CHECKING, Any

from hep_tasks.errors import PipelineError
from hep_tasks.sparkjob import task_slots

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)
worker_log = logging.getLogger("hep_tasks.train.worker")

#: How long to wait for executors of a cluster to register enough task slots.
SLOT_WAIT_S = 60
#: A forwarded line's level: Python logging's level name, or the letter of TensorFlow's C++ logs.
_LEVEL = re.compile(r"^(?:(?P<name>DEBUG|INFO|WARNING|ERROR|CRITICAL) |(?P<letter>[IWEF])\d{4} )")
_CPP_LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL}
#: TensorFlow start-up lines that say nothing about the training (dropped, not forwarded).
_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on|oneDNN supports DT_BOOL only"
)


class TrainingError(RuntimeError):
    """Training failed for a reason a rerun may not share (a lost worker, a diverged replica)."""


class _LogServer(socketserver.ThreadingTCPServer):
    """Receives worker log lines on the driver and logs them (at the level the line names)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str):
        super().__init__((host, 0), _LogHandler)
        threading.Thread(target=self.serve_forever, name="train-log-server", daemon=True).start()

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        return f"{host}:{port}"


class _LogHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for raw in self.rfile:
            line = raw.decode(errors="replace").rstrip()
            if line:
                worker_log.log(line_level(line), "%s", line)


def line_level(line: str) -> int:
    """The logging level a worker's log line carries (INFO when it names none).

    >>> line_level("WARNING [worker 1] hep_tasks.train.loop: slow"), line_level("E0000 00:00 util.cc:131] x")
    (30, 40)
    """
    match = _LEVEL.match(line)
    if not match:
        return logging.INFO
    return logging.getLevelName(match["name"]) if match["name"] else _CPP_LEVELS[match["letter"]]


class TensorFlowDistributor:
    """Run one training function per Spark task of a barrier stage, as a TensorFlow cluster.

    :param spark: the job's SparkSession.
    :param workers: number of training workers (= barrier tasks); checked against task slots.
    :param threads_per_worker: TensorFlow threads per worker; 0 = ``spark.task.cpus``.
    :param max_restarts: relaunches of the stage after a failure (resuming from checkpoints).
    """

    def __init__(self, spark: SparkSession, workers: int, threads_per_worker: int = 0, max_restarts: int = 0):
        self.spark = spark
        self.workers = workers
        conf = spark.sparkContext.getConf()
        self.threads = threads_per_worker or int(conf.get("spark.task.cpus", "1"))
        self.max_restarts = max_restarts
        self._check_slots()

    def _check_slots(self) -> None:
        master = self.spark.sparkContext.master
        deadline = time.monotonic() + (0 if master.startswith("local") else SLOT_WAIT_S)
        while (slots := task_slots(self.spark)) < self.workers and time.monotonic() < deadline:
            time.sleep(2)
        if slots < self.workers:
            raise PipelineError(
                f"train.workers={self.workers} needs {self.workers} Spark task slots at once, but the application "
                f"on master {master} has {slots}: lower workers, or give Spark more cores or executors"
            )

    def run(self, module: str, spec_json: str) -> list[dict[str, Any]]:
        """Run ``python -m <module> SPEC INDEX RESULT`` on every worker; their results, by index."""
        driver_host = self.spark.sparkContext.getConf().get("spark.driver.host", "127.0.0.1")
        server = _LogServer(driver_host)
        try:
            for attempt in range(1 + self.max_restarts):
                try:
                    return self._run_once(module, spec_json, server.address)
                except Exception as err:  # py4j wraps the task's error
                    last = _first_line(err)
                    if attempt == self.max_restarts:
                        raise TrainingError(f"training failed after {attempt + 1} attempt(s): {last}") from None
                    log.warning("training attempt %d failed (%s); relaunching, resuming from the last checkpoint", attempt + 1, last)
        finally:
            server.shutdown()
            server.server_close()
        raise AssertionError("unreachable")

    def _run_once(self, module: str, spec_json: str, log_address: str) -> list[dict[str, Any]]:
        threads = self.threads
        task = _barrier_task(module, spec_json, threads, log_address)
        rdd = self.spark.sparkContext.parallelize(range(self.workers), self.workers).barrier().mapPartitions(task)
        self.spark.sparkContext.setJobDescription(f"train: {self.workers} TensorFlow workers")
        # one small JSON string per worker; take()/limit() are not allowed in a barrier stage
        results = [json.loads(r) for r in rdd.collect()]
        return sorted(results, key=lambda r: r["worker"])


def _first_line(err: BaseException) -> str:
    text = str(err)
    for marker in ("TrainingError: ", "RuntimeError: "):
        if marker in text:
            text = text[text.rindex(marker) + len(marker):]
            break
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _barrier_task(module: str, spec_json: str, threads: int, log_address: str):
    """The function each barrier task runs (pickled by Spark with its small arguments)."""

    def run(_: Any):
        from pyspark import BarrierTaskContext

        context = BarrierTaskContext.get()
        index = context.partitionId()
        host = context.getTaskInfos()[index].address.rsplit(":", 1)[0]
        peers = context.allGather(f"{host}:{_free_port(host)}")
        env = dict(os.environ)
        env.update(
            TF_CONFIG=json.dumps({"cluster": {"worker": peers}, "task": {"type": "worker", "index": index}}),
            PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
            OMP_NUM_THREADS=str(threads),
            TF_CPP_MIN_LOG_LEVEL=env.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        )
        sink = _connect(log_address)
        tail: list[str] = []
        with tempfile.TemporaryDirectory(prefix="hep-train-task-") as tmp:
            spec_path, result_path = os.path.join(tmp, "spec.json"), os.path.join(tmp, "result.json")
            with open(spec_path, "w") as f:
                f.write(spec_json)
            process = subprocess.Popen(
                [sys.executable, "-m", module, spec_path, str(index), result_path],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=_die_with_parent,
            )  # fmt: skip
            for line in process.stdout:
                if _NOISE.search(line):
                    continue
                tail = (tail + [line.rstrip()])[-20:]
                _send(sink, line)
            code = process.wait()
            if sink is not None:
                sink.close()
            if code != 0:
                raise RuntimeError(f"training worker {index} exited with status {code}: " + " | ".join(tail[-5:]))
            with open(result_path) as f:
                result = f.read()
        yield result

    return run


def _connect(address: str) -> socket.socket | None:
    host, port = address.rsplit(":", 1)
    try:
        return socket.create_connection((host, int(port)), timeout=10)
    except OSError:
        return None  # the lines still reach the executor's stderr


def _send(sink: socket.socket | None, line: str) -> None:
    if sink is not None:
        try:
            sink.sendall(line.encode())
            return
        except OSError:
            pass
    sys.stderr.write(line)
