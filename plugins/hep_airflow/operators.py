"""``HepStageOperator``: spark-submit one ``hep_tasks`` stage and publish the version it produced.

One idea on top of the Spark provider's ``SparkSubmitOperator``: the application is always
``hep_tasks/__main__.py <stage>``; the stage parameters are checked before ``spark-submit`` starts
(a bad value fails the task at once, without retries, naming the parameter); after the job the
operator reads the run record the stage wrote, returns it as XCom and attaches it to the ``extra``
of every outlet Asset event. A stage that failed on its input or data (bad file, failed quality
suite) says so in its run record, and the task then fails at once instead of retrying.

The job's output reaches the task log at the level each line carries (Spark's log4j ``WARN`` and
``ERROR``, Python logging's ``WARNING`` and ``ERROR``, the stage's ``error:`` line; continuation
lines such as a traceback keep the level of the line they continue), instead of all at INFO.

On a cluster (any master but ``local[...]``) executors cannot rely on the code being installed
where they run: the operator ships ``hep_tasks`` as a zip with ``--py-files``, and, when
``HEP_SPARK_ENV_ARCHIVE`` names a packed environment (``venv-pack -o env.tar.gz``; a local path or
a URL the cluster can read), ships it with ``--archives <it>#environment`` and runs the executors'
Python from it, as Spark's Python packaging guide describes.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk.exceptions import AirflowFailException


def _entry_file() -> str:
    spec = importlib.util.find_spec("hep_tasks.__main__")
    if spec is None or spec.origin is None:
        raise AirflowFailException("the hep_tasks package is not installed in Airflow's environment")
    return spec.origin


class HepStageOperator(SparkSubmitOperator):
    """Run ``hep_tasks <stage>`` through spark-submit and return the produced version's summary.

    :param stage: the stage to run (``simulate``, ``ingest``, ``prepare``, ``train``, ``evaluate``,
        ``score``, ``quality``).
    :param stage_params: the stage's parameters (templated); names as in ``hep_tasks.config``,
        values may be rendered strings. Parameters left out take their environment or default value.
    :param data_root: data root for this task (templated); default ``HEP_DATA_ROOT`` or ``./data``.
    :param conn_id: the Spark connection (master, deploy mode), ``hep_spark`` by default (templated,
        so a DAG param can name another one).
    """

    template_fields: Sequence[str] = (*SparkSubmitOperator.template_fields, "stage_params", "data_root", "_conn_id")
    ui_color = "#e8d5f5"

    def __init__(
        self,
        *,
        stage: str,
        stage_params: Mapping[str, Any] | None = None,
        data_root: str | None = None,
        conn_id: str = "hep_spark",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("name", f"hep-{stage}")
        super().__init__(application="", conn_id=conn_id, **kwargs)
        self.stage = stage
        self.stage_params = dict(stage_params or {})
        self.data_root = data_root

    def execute(self, context: Any) -> dict[str, Any]:
        from hep_tasks.cli import check_locations
        from hep_tasks.config import ConfigError, PipelineSettings
        from hep_tasks.datasets import DatasetStore
        from hep_tasks.stages import STAGES

        try:
            params = STAGES[self.stage].params.from_values(self.stage_params)
            settings = PipelineSettings.from_values({"data_root": self.data_root or None})
            check_locations(params, settings)  # ROOT files named by the run: refused without retries
        except ConfigError as err:
            raise AirflowFailException(f"{self.task_id}: {err}") from None
        run_key = _run_key(context)
        self.application = _entry_file()
        self.application_args = [
            self.stage,
            "--data-root",
            settings.data_root,
            "--run-key",
            run_key,
            *params.to_args(),
        ]
        self.log.info("hep_tasks %s with %s", self.stage, params.to_dict())
        self._ship_code_to_cluster()
        store = DatasetStore(settings.data_root)
        try:
            super().execute(context)
        except Exception:
            record = store.find_run_record(run_key)
            if record and record.get("retryable") is False:  # bad data or input: fail without retries
                raise AirflowFailException(f"{self.task_id}: {record['error']}") from None
            raise
        summary = store.read_run_record(run_key)
        self.log.info("%s produced %s version %s at %s", self.task_id, summary["stage"], summary["version"], summary["path"])
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = summary
        return summary

    def _get_hook(self) -> Any:
        hook = super()._get_hook()
        hook._log = LineLevels(hook.log)  # the hook logs every output line with log.info
        return hook

    def _ship_code_to_cluster(self) -> None:
        """Add ``--py-files hep_tasks.zip`` (and the packed environment, if any) when the master is a cluster."""
        from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

        from hep_tasks.services import pack_code

        master = SparkSubmitHook(conn_id=self._conn_id)._connection["master"]
        if master.startswith("local"):
            return
        code = str(pack_code())
        self.py_files = ",".join(p for p in (self.py_files, code) if p)
        archive = os.environ.get("HEP_SPARK_ENV_ARCHIVE", "").strip()
        if archive:
            self._archives = ",".join(a for a in (self._archives, f"{archive}#environment") if a)
            self.conf = {**(self.conf or {}), "spark.pyspark.python": "./environment/bin/python"}
        self.log.info("master %s: shipping %s%s", master, code, f" and environment {archive}" if archive else "")


#: The level a line of spark-submit's output names: Python logging (``2026-11-25 10:00:00,123 WARNING
#: name: ...``), Spark's log4j (``26/11/25 10:00:00 WARN Utils: ...``) or our command line's errors.
_LEVEL = re.compile(
    r"^(?:\d{4}-\d\d-\d\d [\d:,.]+ (?P<py>DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"|\d\d/\d\d/\d\d [\d:]+ (?P<j>TRACE|DEBUG|INFO|WARN|ERROR|FATAL) "
    r"|hep_tasks \w+: (?P<cli>error):)"
)
_LEVEL_NAMES = {"WARN": "warning", "FATAL": "critical", "TRACE": "debug", "error": "error"}


class LineLevels:
    """A logger wrapper for the Spark hook: ``info(line)`` logs each output line at its own level.

    >>> levels = LineLevels(None)
    >>> [levels.level_of(x) for x in ("26/11/25 21:52:02 WARN Utils: port 4040", "  at org.apache...",
    ...  "2026-11-25 21:53:44,295 INFO hep_tasks.ingest.stage: cut-flow", "hep_tasks train: error: no slots")]
    ['warning', 'warning', 'info', 'error']
    """

    def __init__(self, log: Any):
        self._log = log
        self._last = "info"

    def level_of(self, line: str) -> str:
        match = _LEVEL.match(line)
        if match:
            name = match["py"] or match["j"] or match["cli"]
            self._last = _LEVEL_NAMES.get(name, name.lower())
        elif not line.startswith((" ", "\t", "Traceback", "Caused by")) and self._last != "info":
            self._last = "info"  # a new, unprefixed message (the job's JSON summary, for instance)
        return self._last

    def info(self, message: Any, *args: Any, **kwargs: Any) -> None:
        level = self.level_of(message) if isinstance(message, str) and not args else "info"
        getattr(self._log, level)(message, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


def _run_key(context: Any) -> str:
    ti = context["ti"]
    mapped = f"__{ti.map_index}" if getattr(ti, "map_index", -1) >= 0 else ""  # one record per mapped instance
    raw = f"{ti.dag_id}__{ti.run_id}__{ti.task_id}{mapped}__{ti.try_number}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw)
