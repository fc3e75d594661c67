"""What a quality run is given (:class:`Check`) and what it gives back (:class:`QualityReport`).

This module imports neither Great Expectations nor pyspark: a report is plain data (it is read
back from JSON, put in a manifest and raised as :class:`DataQualityError`).

>>> report = QualityReport(suite="ingest", success=False,
...     failed=["events: expect_column_values_to_be_between(column=LepPT, min_value=23.0): 1 of 8 values unexpected"],
...     statistics={}, results_path="/r/ingest.json", data_docs_index="/r/data_docs/index.html")
>>> try:
...     raise_for_failures(report)
... except DataQualityError as error:
...     print(error)
data-quality suite 'ingest' failed 1 expectation(s):
  - events: expect_column_values_to_be_between(column=LepPT, min_value=23.0): 1 of 8 values unexpected
Data Docs: /r/data_docs/index.html (full results: /r/ingest.json)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hep_tasks.errors import PipelineError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

#: Expectation kwargs left out of a failure line (bookkeeping, or shown another way).
_HIDDEN_KWARGS = frozenset({"batch_id", "result_format", "catch_exceptions", "unexpected_rows_query", "mostly"})
#: How many characters of an exception message a failure line keeps.
_MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class Check:
    """One batch to validate: a Spark DataFrame and the expectations it must meet.

    ``name`` identifies the batch in the report and in Data Docs (``events``, ``train``, ...); it
    must be unique within a suite and made of letters, digits, ``_``, ``-`` and ``.``.
    ``expectations`` are Great Expectations expectation objects (``great_expectations.expectations``).
    """

    name: str
    dataframe: DataFrame
    expectations: list = field(default_factory=list)
    #: Derived columns (name -> Spark SQL expression) added to ``dataframe`` before it is cached, so
    #: that a costly row-level rule is evaluated once per row rather than by every query that
    #: reads it (see :class:`~hep_tasks.quality.sql.RowRules`).
    derived: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class QualityReport:
    """The outcome of :func:`~hep_tasks.quality.runner.run_checks` for one suite.

    ``failed`` has one line per failed expectation (see :func:`describe_failure`); ``statistics``
    counts evaluated/successful/unsuccessful expectations overall and per check;
    ``results_path`` is the JSON file with the full Great Expectations results and
    ``data_docs_index`` the ``index.html`` of the Data Docs rendered for this run.
    """

    suite: str
    success: bool
    failed: list[str]
    statistics: dict
    results_path: str
    data_docs_index: str

    def to_dict(self) -> dict[str, Any]:
        """Small JSON-able summary for a dataset manifest (``status`` is ``passed`` or ``failed``)."""
        return {
            "status": "passed" if self.success else "failed",
            "suite": self.suite,
            "success": self.success,
            "failed": list(self.failed),
            "statistics": self.statistics,
            "results_path": self.results_path,
            "data_docs_index": self.data_docs_index,
        }


class DataQualityError(PipelineError):
    """A data-quality suite failed; the message lists the failed expectations and the Data Docs."""

    def __init__(self, report: QualityReport):
        lines = [f"data-quality suite {report.suite!r} failed {len(report.failed)} expectation(s):"]
        lines += [f"  - {line}" for line in report.failed]
        lines.append(f"Data Docs: {report.data_docs_index} (full results: {report.results_path})")
        super().__init__("\n".join(lines))
        self.report = report


def raise_for_failures(report: QualityReport) -> QualityReport:
    """Raise :class:`DataQualityError` when ``report`` failed; return it unchanged otherwise."""
    if not report.success:
        raise DataQualityError(report)
    return report


def describe_failure(check: str, result: Mapping[str, Any]) -> str:
    """One readable line for a failed expectation, from its JSON validation result.

    ``<check>: <expectation type>[<description>](<key kwargs>): <what was observed>``, e.g.
    ``events: unexpected_rows_expectation[hlf elements are finite](column=hlf): 2 unexpected rows``.

    >>> print(describe_failure("metrics", {"success": False,  # doctest: +ELLIPSIS
    ...     "expectation_config": {"type": "expect_column_values_to_be_between",
    ...         "kwargs": {"column": "quarantined_fraction", "max_value": 0.1, "batch_id": "b"}},
    ...     "result": {"element_count": 1, "unexpected_count": 1, "partial_unexpected_list": [0.5]}}))
    metrics: expect_column_values_to_be_between(column=quarantined_fraction, max_value=0.1): 1 of 1 values ...
    """
    config = result.get("expectation_config") or {}
    kwargs = config.get("kwargs") or {}
    meta = config.get("meta") or {}
    head = f"{check}: {config.get('type', '?')}"
    if config.get("description"):
        head += f"[{config['description']}]"
    shown = {k: v for k, v in kwargs.items() if k not in _HIDDEN_KWARGS and v is not None}
    if "column" not in shown and meta.get("column"):
        shown = {"column": meta["column"], **shown}
    if shown:
        head += "(" + ", ".join(f"{k}={_short(v)}" for k, v in shown.items()) + ")"
    return f"{head}: {_observed(result)}"


def _observed(result: Mapping[str, Any]) -> str:
    error = _error_message(result.get("exception_info"))
    if error:
        return f"error: {error}"
    res = result.get("result") or {}
    if "unexpected_count" in res:
        text = f"{res['unexpected_count']} of {res.get('element_count', '?')} values unexpected"
        sample = res.get("partial_unexpected_list")
        if sample:
            text += f", e.g. {_short(sample[:5])}"
        return text
    parts = []
    if res.get("observed_value") is not None:
        config = result.get("expectation_config") or {}
        if config.get("type") == "unexpected_rows_expectation":
            return f"{res['observed_value']} unexpected rows"
        parts.append(f"observed {_short(res['observed_value'])}")
    # set expectations (e.g. distinct values to contain a set) report what is missing instead
    if res.get("partial_missing_list"):
        parts.append(f"missing {_short(res['partial_missing_list'])}")
    if res.get("partial_unexpected_list"):
        parts.append(f"unexpected {_short(res['partial_unexpected_list'][:5])}")
    return ", ".join(parts) or "failed (no result details)"


def _error_message(info: Any) -> str | None:
    """The first exception message in a GX ``exception_info`` (flat, or keyed by metric)."""
    if not isinstance(info, Mapping):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "exception")[:_MAX_ERROR_CHARS]
    for value in info.values():
        message = _error_message(value)
        if message:
            return message
    return None


def _short(value: Any, limit: int = 120) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
