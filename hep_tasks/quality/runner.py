"""Run expectation suites on Spark DataFrames with Great Expectations 1.x; write results and Data Docs.

:func:`run_checks` validates each :class:`~hep_tasks.quality.report.Check` through GX's Spark
datasource (the DataFrame stays on the cluster; only GX's metrics and at most a few sample rows
come to the driver), then writes into ``results_dir``:

- ``<suite>.json``          the full GX validation results of every check, plus the summary;
- ``data_docs/index.html``  Data Docs rendered for this run only (one page per check).

The GX context is ephemeral (in-memory stores; nothing written to the home directory or the
working directory) with analytics off; its only Data Docs site is ``results_dir/data_docs``.

GX 1.24 behaviours this module works around (see also the package docstring):

- A Spark dataframe asset takes its DataFrame from the ``batch_parameters`` of a run, so each check
  gets its own asset, suite and validation definition, run directly (no Checkpoint: it would add
  nothing, and its result format is fixed when it is saved), all sharing one run id.
- Each expectation costs GX several Spark actions (an aggregate, up to 20 sample values, for an
  unexpected-rows query a count and then up to 200 rows), dozens per check, each with Python and
  JVM planning overhead. So the runner stores every batch itself, in one pass that also computes
  the check's derived columns (costly row-level rules, evaluated once per row), as a *local
  checkpoint*: GX's queries then plan against a scan of stored rows, not against the derived
  columns' expressions over cached columns (a cold quality check on demo data: about 0.8 s less
  than with ``persist``); coalesced to one partition (a ``limit`` over several partitions may take
  one job per partition); GX's own persisting is off. The next check's batch is stored while GX
  validates the current one. A local checkpoint has no lineage: an executor lost during the
  check fails the check's query (the task's retry runs it again).
  Checks are first validated without sample values (:data:`_FIRST_PASS_FORMAT`), which spares a
  Spark job per column expectation; a check that fails is validated again with
  :data:`_RESULT_FORMAT`, whose samples its failure lines show, and those results replace the
  first ones. GX's unexpected-rows expectations count their rows only, and a check's counts
  share one Spark query (:func:`_count_unexpected_rows_only`,
  :func:`_resolve_metrics_with_fewer_queries`).
- Data Docs are built once, after all checks (a full build of the ephemeral context, which holds
  this run's suites and results only), rather than by an ``UpdateDataDocsAction`` per checkpoint:
  every build compiles GX's Jinja templates anew (about a second each), and an incremental build
  of validation results alone leaves the index linking to suite pages that were never rendered.
- Caching is left as the caller had it: a DataFrame the caller cached is validated as it is, and
  only what the runner stored is released.
- An expectation object can belong to one suite only (``add_expectation`` refuses one that has an
  id) and a suite silently drops "equal-ish" duplicates; the runner adds copies and warns about
  duplicates.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hep_tasks.quality.report import Check, QualityReport, describe_failure

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.data_context import AbstractDataContext

log = logging.getLogger(__name__)

#: Sub-directory of ``results_dir`` holding the Data Docs site.
DATA_DOCS_DIR = "data_docs"
_SITE_NAME = "hep_quality"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: GX result format of a failing check: unexpected counts plus up to 20 sample values per column
#: expectation (BOOLEAN_ONLY would drop the counts that failure lines show).
_RESULT_FORMAT = "BASIC"
#: GX result format of the first pass: BASIC without sample values (a limit of 0 needs no Spark
#: job); for an expectation that passes, the same result as :data:`_RESULT_FORMAT`.
_FIRST_PASS_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0}


def run_checks(suite: str, checks: Sequence[Check], results_dir: str | os.PathLike[str]) -> QualityReport:
    """Validate every check with Great Expectations on Spark; write results and Data Docs.

    Args:
        suite: name of the suite (``ingest``, ``prepare``, ...); names the JSON file and prefixes
            the GX suite of each check (``<suite>.<check>``).
        checks: the batches and their expectations; names must be unique.
        results_dir: local directory for ``<suite>.json`` and ``data_docs/`` (created if missing;
            an existing ``data_docs/`` is replaced so the site shows this run only).

    Returns:
        The :class:`QualityReport`; ``success`` is false when any expectation failed (or raised).
    """
    _check_arguments(suite, checks)
    out = Path(results_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    docs_dir = out / DATA_DOCS_DIR
    if docs_dir.exists():
        shutil.rmtree(docs_dir)

    from hep_tasks.quality.gx import gx

    _count_unexpected_rows_only()
    _resolve_metrics_with_fewer_queries()
    context = _ephemeral_context(docs_dir)
    source = context.data_sources.add_spark(name="spark", persist=False)  # the runner caches each batch
    run_id = gx.RunIdentifier(run_name=suite, run_time=dt.datetime.now(dt.timezone.utc))
    results: dict[str, ExpectationSuiteValidationResult] = {}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hep-quality-store") as storing:
        upcoming = storing.submit(_stored_batch, checks[0])
        for i, check in enumerate(checks):
            batch, release = upcoming.result()
            started = time.perf_counter()
            # the next check's batch is stored while GX validates this one (its many small
            # queries leave the other core mostly idle): at most two batches are held at a time
            upcoming = storing.submit(_stored_batch, checks[i + 1]) if i + 1 < len(checks) else None
            try:
                results[check.name] = _validate(context, source, suite, check, run_id, batch)
            except BaseException:
                if upcoming is not None:
                    upcoming.add_done_callback(_release_when_stored)
                raise
            finally:
                release()
            log.info(
                "quality %s: %s validated, %d expectations in %.1f s",
                suite, check.name, len(check.expectations), time.perf_counter() - started,
            )
    context.build_data_docs(site_names=[_SITE_NAME])  # the context holds this run only

    as_json = {name: result.to_json_dict() for name, result in results.items()}
    failed = [
        describe_failure(name, expectation)
        for name, result in as_json.items()
        for expectation in result.get("results", [])
        if not expectation.get("success")
    ]
    statistics = _statistics(as_json)
    index = docs_dir / "index.html"
    report = QualityReport(
        suite=suite,
        success=all(r.get("success") for r in as_json.values()),
        failed=failed,
        statistics=statistics,
        results_path=str(out / f"{suite}.json"),
        data_docs_index=str(index),
    )
    _write_json(Path(report.results_path), {**report.to_dict(), "checks": as_json})
    if not index.exists():
        log.warning("quality %s: Great Expectations wrote no Data Docs index at %s", suite, index)
    log.info(
        "quality %s: %s, %d of %d expectations failed; Data Docs %s",
        suite,
        "passed" if report.success else "FAILED",
        statistics["unsuccessful_expectations"],
        statistics["evaluated_expectations"],
        index,
    )
    return report


#: What GX 1.x's ``UnexpectedRowsExpectation`` computes: the count of the query's rows and up to
#: 200 of the rows themselves, which its result shows only in the COMPLETE format.
_UNEXPECTED_ROWS_METRICS = ("unexpected_rows_query.table", "unexpected_rows_query.row_count")


def _count_unexpected_rows_only() -> None:
    """Have GX's ``UnexpectedRowsExpectation`` count its query's rows without also fetching them.

    GX computes both metrics of :data:`_UNEXPECTED_ROWS_METRICS` whatever the result format, two
    Spark jobs per expectation, and drops the rows unless the format is COMPLETE, which the runner
    never asks for (failure lines show the count). Counting only is 11 of the ingest suite's 37
    Spark jobs and 19 of prepare's 59 (0.5-1 s per demo check). The class is patched once per
    process, and only while it declares exactly those metrics (a GX that changes them is left as
    it is); results are the same (the count, ``success``), Data Docs too.
    """
    from great_expectations.expectations.core.unexpected_rows_expectation import UnexpectedRowsExpectation

    if UnexpectedRowsExpectation.metric_dependencies != _UNEXPECTED_ROWS_METRICS:
        return
    validate = UnexpectedRowsExpectation._validate

    def _validate(self: Any, metrics: dict, runtime_configuration: dict | None = None, execution_engine: Any = None) -> Any:
        return validate(self, {_UNEXPECTED_ROWS_METRICS[0]: None, **metrics}, runtime_configuration, execution_engine)

    UnexpectedRowsExpectation.metric_dependencies = _UNEXPECTED_ROWS_METRICS[1:]
    UnexpectedRowsExpectation._validate = _validate


def _resolve_metrics_with_fewer_queries() -> None:
    """Have GX's Spark engine skip the queries whose answer is known and count rows together.

    GX's Spark engine bundles a check's column aggregates into one Spark job but resolves every
    other metric with queries of its own. Its ``resolve_metrics`` is wrapped once per process:

    - a ``*.unexpected_values`` metric asked for no values (the first pass's
      ``partial_unexpected_count: 0``, any format but COMPLETE) is ``[]`` without a query (GX builds
      a filtered DataFrame, ``limit(0)``, and collects it: about 80 py4j calls per column
      expectation, 18 of them in a prepare check, 0.4-0.6 s);
    - the ``unexpected_rows_query.row_count`` metrics it is asked for together over the same batch
      are counted in one Spark query (:func:`_row_counts`), not with a temporary view, a query and
      a ``count()`` apiece (19 of a prepare check's 40 Spark jobs).

    Every other metric, and any group of counts whose bundled query fails (a query that does not
    analyse, say), goes through GX's own path, metric by metric, so an error still belongs to its
    own expectation. The values are the ones GX computes, so are results and Data Docs. A GX
    without the query helpers used here (``UnexpectedRowsQueryRowCount``'s) is left as it is.
    """
    from great_expectations.execution_engine import SparkDFExecutionEngine
    from great_expectations.expectations.metrics.query_metrics import UnexpectedRowsQueryRowCount

    resolve = SparkDFExecutionEngine.resolve_metrics
    needs = ("_format_query", "_get_query_from_metric_value_kwargs")
    if getattr(resolve, "_hep_fewer_queries", False) or not all(hasattr(UnexpectedRowsQueryRowCount, n) for n in needs):
        return

    failed: set[frozenset[Any]] = set()  # groups whose bundled count failed: GX retries them one by one

    def resolve_metrics(self: Any, metrics_to_resolve: Any, metrics: Any = None, runtime_configuration: Any = None) -> Any:
        pending = list(metrics_to_resolve)
        known: dict[Any, Any] = {m.id: [] for m in pending if _asks_for_no_values(m)}
        counts: dict[Any, list[Any]] = {}
        for metric in pending:
            if metric.metric_name == _UNEXPECTED_ROWS_METRICS[1]:
                counts.setdefault(metric.metric_domain_kwargs_id, []).append(metric)
        for group in counts.values():
            ids = frozenset(metric.id for metric in group)
            if len(group) > 1 and ids not in failed:
                counted = _row_counts(self, group)
                known.update(counted)
                if not counted:
                    failed.add(ids)
        if getattr(self, "_caching", False):
            self._metric_cache.update(known)
        rest = [metric for metric in pending if metric.id not in known]
        return {**known, **resolve(self, rest, metrics, runtime_configuration)} if rest else known

    resolve_metrics._hep_fewer_queries = True  # type: ignore[attr-defined]
    SparkDFExecutionEngine.resolve_metrics = resolve_metrics


def _asks_for_no_values(metric: Any) -> bool:
    """Whether ``metric`` is a map metric's unexpected values, limited to none."""
    result_format = (metric.metric_value_kwargs or {}).get("result_format")
    return (
        metric.metric_name.endswith(".unexpected_values")
        and isinstance(result_format, dict)
        and result_format.get("result_format") != "COMPLETE"
        and result_format.get("partial_unexpected_count") == 0
    )


def _row_counts(engine: Any, group: Sequence[Any]) -> dict[Any, int]:
    """{metric id: rows its query returns} for ``unexpected_rows_query.row_count`` metrics over one
    batch, in one Spark query; {} when that query fails.

    The query selects one scalar subquery per metric, ``(SELECT count(*) FROM (<query>))``: Spark
    plans them together and runs their jobs concurrently (on a one-partition batch, each a single
    task without a shuffle). The 19 counts of a demo prepare check: 2.0-2.2 s cold and 0.9-1.2 s
    warm, against 2.7-3.0 and 1.4-1.8 s one by one.
    """
    from great_expectations.core.metric_domain_types import MetricDomainTypes
    from great_expectations.expectations.metrics.query_metrics import UnexpectedRowsQueryRowCount as provider

    df, _, _ = engine.get_compute_domain(group[0].metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE)
    view = f"hep_quality_batch_{uuid.uuid4().hex}"
    df.createOrReplaceTempView(view)
    try:
        queries = [provider._format_query(provider._get_query_from_metric_value_kwargs(m.metric_value_kwargs), batch=view)
                   for m in group]  # fmt: skip
        row = engine.spark.sql("SELECT " + ", ".join(f"(SELECT count(*) FROM ({q})) AS n{i}" for i, q in enumerate(queries))).first()
    except Exception as err:  # noqa: BLE001 (GX then counts each query on its own and reports its error)
        log.debug("unexpected-rows queries counted one by one: %s", err)
        return {}
    finally:
        engine.spark.catalog.dropTempView(view)
    return {metric.id: int(row[i]) for i, metric in enumerate(group)}


def _check_arguments(suite: str, checks: Sequence[Check]) -> None:
    if not _NAME_RE.match(suite or ""):
        raise ValueError(f"suite name {suite!r} must be letters, digits, '_', '-' or '.'")
    if not checks:
        raise ValueError(f"suite {suite!r} has no checks to run")
    names = [c.name for c in checks]
    bad = [n for n in names if not _NAME_RE.match(n or "")]
    if bad:
        raise ValueError(f"check names {bad} in suite {suite!r} must be letters, digits, '_', '-' or '.'")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"check names {duplicates} appear more than once in suite {suite!r} (names: {names})")
    empty = [c.name for c in checks if not c.expectations]
    if empty:
        raise ValueError(f"checks {empty} of suite {suite!r} have no expectations")


def _ephemeral_context(docs_dir: Path) -> AbstractDataContext:
    """An in-memory GX context, analytics and progress bars off, one Data Docs site at ``docs_dir``."""
    from hep_tasks.quality.gx import gx
    from great_expectations.data_context.types.base import DataContextConfig, InMemoryStoreBackendDefaults

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars={"globally": False},
        data_docs_sites={
            _SITE_NAME: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _validate(context: Any, source: Any, suite: str, check: Check, run_id: Any, batch: Any) -> ExpectationSuiteValidationResult:
    """Validate one check, on its ``batch`` (see :func:`_stored_batch`), through its own asset,
    suite and validation definition."""
    from hep_tasks.quality.gx import gx

    name = f"{suite}.{check.name}"
    batch_definition = source.add_dataframe_asset(name=check.name).add_batch_definition_whole_dataframe(check.name)
    # filled before it joins the context: each expectation added to a stored suite re-reads and
    # re-writes the whole suite (quadratic: 0.4-0.6 s of a 50-expectation check)
    unsaved = gx.ExpectationSuite(name=name)
    for expectation in check.expectations:
        before = len(unsaved.expectations)
        unsaved.add_expectation(expectation.copy(deep=True, update={"id": None}))
        if len(unsaved.expectations) == before:
            log.warning("quality %s: duplicate expectation dropped by GX: %r", name, expectation)
    gx_suite = context.suites.add(unsaved)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch_definition, suite=gx_suite)
    )
    result = definition.run(batch_parameters={"dataframe": batch}, result_format=_FIRST_PASS_FORMAT, run_id=run_id)
    if not result.success:
        # again with sample values for the failure lines; same run id and batch, so these
        # results replace the first ones in the context's store (and in Data Docs)
        result = definition.run(batch_parameters={"dataframe": batch}, result_format=_RESULT_FORMAT, run_id=run_id)
    return result


def _stored_batch(check: Check) -> tuple[Any, Callable[[], None]]:
    """(the DataFrame GX validates, a function that releases what this run stored).

    The batch is ``check.dataframe`` with the check's derived columns, computed in one Spark job
    into a local checkpoint (unless the caller had cached it), then coalesced to one partition.
    """
    df = _with_derived(check)
    if _is_cached(df):
        return df.coalesce(1), lambda: None
    stored = df.localCheckpoint(eager=True)  # computes every derived column once, in parallel
    return stored.coalesce(1), lambda: _release_checkpoint(stored)


def _release_when_stored(future: Future[tuple[Any, Callable[[], None]]]) -> None:
    """Release the batch a finished :func:`_stored_batch` future holds (nothing if it failed)."""
    if future.exception() is None:
        _, release = future.result()
        release()


def _release_checkpoint(stored: Any) -> None:
    """Drop the blocks of a local checkpoint now, rather than when the JVM collects its RDD."""
    plan = stored._jdf.queryExecution().analyzed()
    if plan.getClass().getSimpleName() == "LogicalRDD":
        plan.rdd().unpersist(False)
    else:  # another Spark's plan shape: the context cleaner drops the blocks later
        log.debug("local checkpoint not released: plan is %s", plan.getClass().getName())


def _with_derived(check: Check) -> Any:
    """``check.dataframe`` plus the derived columns of ``check``.

    A derived column that does not analyse (a rule on a missing column) is left out with a
    warning: the query of its expectation then fails with that error, as the rule itself would.
    """
    from pyspark.errors import AnalysisException

    from hep_tasks.quality.sql import quote

    df = check.dataframe
    columns = {name: f"{expression} AS {quote(name)}" for name, expression in check.derived.items()}
    if not columns:
        return df
    try:
        return df.selectExpr("*", *columns.values())
    except AnalysisException:
        valid = []
        for name, column in columns.items():
            try:
                df.selectExpr(column)
                valid.append(column)
            except AnalysisException as err:
                log.warning("quality %s: derived column %s left out: %s", check.name, name, str(err).splitlines()[0])
        return df.selectExpr("*", *valid)


def _is_cached(df: Any) -> bool:
    """Whether Spark's cache manager holds ``df`` (however it was cached)."""
    level = df.storageLevel
    return bool(level.useMemory or level.useDisk or level.useOffHeap)


def _statistics(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    per_check = {}
    for name, result in results.items():
        stats = result.get("statistics", {})
        per_check[name] = {
            "success": bool(result.get("success")),
            "evaluated_expectations": int(stats.get("evaluated_expectations", 0)),
            "unsuccessful_expectations": int(stats.get("unsuccessful_expectations", 0)),
        }
    evaluated = sum(c["evaluated_expectations"] for c in per_check.values())
    unsuccessful = sum(c["unsuccessful_expectations"] for c in per_check.values())
    return {
        "evaluated_expectations": evaluated,
        "successful_expectations": evaluated - unsuccessful,
        "unsuccessful_expectations": unsuccessful,
        "success_percent": 100.0 * (evaluated - unsuccessful) / evaluated if evaluated else 100.0,
        "checks": per_check,
    }


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (temporary file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
