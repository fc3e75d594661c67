"""Data quality: Great Expectations 1.x suites run on Spark DataFrames (ARCHITECTURE §4 "quality").

Importing this package is cheap: great_expectations and pyspark are imported inside the functions
that need them.

Map of the package (one concern per module):

- :mod:`.gx`            ``gx``, ``gxe``: Great Expectations, imported with scipy.stats, altair and
  jsonschema deferred until something reads them (no suite here does).
- :mod:`.report`        ``Check`` (a DataFrame + expectations), ``QualityReport`` (result summary,
  ``to_dict()`` for manifests), ``DataQualityError`` and ``raise_for_failures``.
- :mod:`.runner`        ``run_checks(suite, checks, results_dir)``: caches each check's batch (with
  its derived columns) in one pass, validates it through GX's Spark datasource in an ephemeral
  context, writes ``<suite>.json`` and ``data_docs/index.html``.
- :mod:`.sql`           expectations written as Spark SQL: ``finite_expectations`` (NaN/±inf in
  scalars and inside arrays, the §4 pitfall), ``schema_expectations``, unique keys, class balance;
  ``RowRules``, row-level rules evaluated once per row into derived columns of the check.
- :mod:`.ingest_suite`  ``ingest_checks(events_df, metrics_df, max_quarantined_fraction=...)``.
- :mod:`.prepare_suite` ``prepared_checks(train_df, test_df, eta_mean=..., eta_std=..., ...)``.
- :mod:`.model_suite`   ``model_checks(predictions_df, metrics_df, auc_floors={"*": 0.9, ...})``:
  scored test split (finite, normalised probabilities; every class predicted by every model)
  and per-model AUC floors.

Typical use, in a stage::

    report = run_checks("ingest", ingest_checks(events, metrics, max_quarantined_fraction=0.1), out_dir)
    manifest["quality"] = report.to_dict()
    raise_for_failures(report)      # DataQualityError listing the failed expectations

Great Expectations 1.24 on Spark, worth knowing:

- NaN passes ``ExpectColumnValuesToNotBeNull`` and ``ExpectColumnValuesToBeBetween``, and array
  elements are never inspected: use :func:`finite_expectations`.
- ``ExpectColumnValuesToBeOfType`` compares only the outer type class on Spark (``ArrayType``
  for any array): nested types are checked with ``typeof`` (:func:`schema_expectations`).
- ``UnexpectedRowsExpectation`` on Spark registers the batch as the *session-global* temporary
  view ``tmp_view`` and runs each query twice (count, then up to 200 rows collected): keep
  queries' selected columns small, and do not validate concurrently in one SparkSession.
- Literal braces in an unexpected-rows query must be doubled (``{{``); only ``{batch}`` is
  substituted.
"""

from __future__ import annotations

from hep_tasks.quality.ingest_suite import ingest_checks
from hep_tasks.quality.model_suite import model_checks
from hep_tasks.quality.prepare_suite import prepared_checks
from hep_tasks.quality.report import Check, DataQualityError, QualityReport, describe_failure, raise_for_failures
from hep_tasks.quality.runner import run_checks
from hep_tasks.quality.sql import finite_expectations, rows_expectation, schema_expectations

__all__ = [
    "Check",
    "DataQualityError",
    "QualityReport",
    "describe_failure",
    "finite_expectations",
    "ingest_checks",
    "model_checks",
    "prepared_checks",
    "raise_for_failures",
    "rows_expectation",
    "run_checks",
    "schema_expectations",
]
