"""The quality framework without a Great Expectations run: the SQL of the NaN/±inf and schema checks
(run directly with Spark SQL), failure lines, errors, argument checks, cheap import.

The end-to-end behaviour (JSON results, Data Docs, raising) is tested on the suites' runs in
``test_quality_ingest`` and ``test_quality_prepare``. Uses the session ``spark`` fixture.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from hep_tasks.quality import (
    Check,
    QualityReport,
    describe_failure,
    finite_expectations,
    raise_for_failures,
    run_checks,
    schema_expectations,
)


@pytest.fixture(scope="module")
def values_view(spark) -> str:
    """A view with NaN/±inf/NULL in a scalar, an array and a matrix column (row 1 is clean)."""
    rows = [
        (1, 1.0, [1.0, 2.0], [[1.0], [2.0]]),
        (2, math.nan, [1.0, math.nan], [[1.0], [math.inf]]),
        (3, math.inf, [1.0, None], [[1.0], None]),
        (4, None, [-math.inf], [[math.nan, 1.0]]),
        (5, -math.inf, [3.0], [[2.0, None]]),
    ]
    df = spark.createDataFrame(rows, "id bigint, x double, v array<float>, m array<array<float>>")
    df.createOrReplaceTempView("quality_values")
    return "quality_values"


def offending_ids(spark, expectation, view: str) -> list[int]:
    """Run an unexpected-rows expectation's query on ``view`` as GX would; the ids it returns."""
    query = expectation.unexpected_rows_query.replace("{batch}", view)
    return sorted(row["id"] for row in spark.sql(query).collect())


@pytest.mark.parametrize(
    "column, kind, expected",
    [
        ("x", "scalar", [2, 3, 5]),  # NaN, +inf, -inf; NULL is left to ExpectColumnValuesToNotBeNull
        ("v", "array", [2, 3, 4]),  # NaN, NULL and -inf elements
        ("m", "matrix", [2, 3, 4, 5]),  # +inf, a NULL row, NaN, a NULL element
    ],
)
def test_finite_expectations_flag_nan_inf_and_null_elements(spark, values_view, column, kind, expected):
    (expectation,) = finite_expectations(column, kind, keys=("id",))
    assert type(expectation).__name__ == "UnexpectedRowsExpectation"
    assert expectation.description.startswith(f"{column}: ")
    assert expectation.meta == {"column": column}
    assert offending_ids(spark, expectation, values_view) == expected


def test_nan_is_what_native_range_checks_miss(spark, values_view):
    """The §4 pitfall in plain Spark SQL: NaN satisfies >= 0 and is not NULL."""
    row = spark.sql(f"SELECT x >= 0 AS in_range, x IS NULL AS is_null FROM {values_view} WHERE id = 2").first()
    assert row["in_range"] is True and row["is_null"] is False


def test_schema_expectations_check_nested_element_types(spark):
    expectations = schema_expectations({"id": "bigint", "v": "array<float>"})
    names = [type(e).__name__ for e in expectations]
    assert names == ["ExpectTableColumnsToMatchSet", "ExpectColumnValuesToBeOfType", "UnexpectedRowsExpectation"]
    nested = expectations[-1]
    spark.createDataFrame([(1, [1.0])], "id bigint, v array<float>").createOrReplaceTempView("quality_f")
    spark.createDataFrame([(1, [1.0])], "id bigint, v array<double>").createOrReplaceTempView("quality_d")
    assert spark.sql(nested.unexpected_rows_query.replace("{batch}", "quality_f")).count() == 0
    (row,) = spark.sql(nested.unexpected_rows_query.replace("{batch}", "quality_d")).collect()
    assert row["v"] == "array<double>"


def test_describe_failure_names_check_type_column_and_observation():
    rows = {
        "success": False,
        "expectation_config": {
            "type": "unexpected_rows_expectation",
            "kwargs": {"unexpected_rows_query": "SELECT ...", "batch_id": "b"},
            "meta": {"column": "hlf"},
            "description": "hlf has exactly 14 elements",
        },
        "result": {"observed_value": 3},
    }
    assert describe_failure("events", rows) == (
        "events: unexpected_rows_expectation[hlf has exactly 14 elements](column=hlf): 3 unexpected rows"
    )
    error = {
        "success": False,
        "expectation_config": {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "hlf"}},
        "result": {},
        "exception_info": {"('column_values.nonnull.unexpected_count', ...)": {
            "raised_exception": True, "exception_message": "column 'hlf' does not exist"}},
    }
    assert describe_failure("events", error).endswith("error: column 'hlf' does not exist")


def test_raise_for_failures_returns_a_passed_report():
    report = QualityReport("ok", True, [], {}, "/r/ok.json", "/r/data_docs/index.html")
    assert raise_for_failures(report) is report
    assert report.to_dict()["status"] == "passed"


def test_run_checks_refuses_bad_check_lists(tmp_path):
    with pytest.raises(ValueError, match=r"check names \['a'\] appear more than once"):
        run_checks("s", [Check("a", None, [object()]), Check("a", None, [object()])], tmp_path)
    with pytest.raises(ValueError, match="has no checks"):
        run_checks("s", [], tmp_path)
    with pytest.raises(ValueError, match=r"checks \['a'\] of suite 's' have no expectations"):
        run_checks("s", [Check("a", None, [])], tmp_path)
    with pytest.raises(ValueError, match="suite name"):
        run_checks("../s", [Check("a", None, [object()])], tmp_path)


def test_finite_expectations_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="kind must be .* not 'vector'"):
        finite_expectations("hlf", "vector")


def test_import_is_cheap():
    code = (
        "import sys, hep_tasks.quality; "
        "heavy = [m for m in ('great_expectations', 'pyspark', 'awkward') if m in sys.modules]; "
        "sys.exit(str(heavy) if heavy else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_shapes_expectation_flags_every_size_mismatch(spark):
    from hep_tasks.quality.sql import shapes_expectation

    row2 = [[1.0, 2.0]] * 2
    rows = [
        (1, [1.0] * 3, 2, row2),  # good
        (2, [1.0] * 2, 2, row2),  # short fixed array
        (3, [1.0] * 3, 3, row2),  # count disagrees with the rows
        (4, [1.0] * 3, 2, [[1.0, 2.0], [1.0]]),  # a short row
        (5, [1.0] * 3, 2, [[1.0, 2.0], None]),  # a NULL row
    ]
    spark.createDataFrame(rows, "id bigint, a array<float>, n int, m array<array<float>>").createOrReplaceTempView("quality_shapes")
    expectation = shapes_expectation(arrays={"a": 3}, matrix="m", matrix_rows="n", matrix_width=2, keys=("id",))
    assert expectation.description == "a has 3 values; m has n rows of 2 features"
    assert offending_ids(spark, expectation, "quality_shapes") == [2, 3, 4, 5]


def test_run_checks_leaves_caching_as_it_found_it(spark, tmp_path):
    """run_checks stores the batches it validates and releases them; a batch the caller had cached stays cached."""
    import great_expectations.expectations as gxe

    from hep_tasks.quality.runner import _is_cached

    plain, cached = spark.range(5).coalesce(1), spark.range(7).coalesce(1).cache()
    checks = [
        Check("plain", plain, [gxe.ExpectTableRowCountToEqual(value=5)]),
        Check("cached", cached, [gxe.ExpectTableRowCountToEqual(value=7)]),
    ]
    cached.count()  # the caller's cache, materialized
    stored_before = spark.sparkContext._jsc.sc().getPersistentRDDs().size()
    report = run_checks("caching", checks, tmp_path)
    assert report.success, report.failed
    assert not _is_cached(plain) and _is_cached(cached)
    assert spark.sparkContext._jsc.sc().getPersistentRDDs().size() == stored_before  # the plain batch's checkpoint is gone
    cached.unpersist()


def test_the_next_batch_is_stored_during_a_check_and_released_if_it_raises(spark, tmp_path, monkeypatch):
    """While a check validates, the next check's batch is stored; when a check raises, the
    batch stored ahead is released too (nothing stays in the block manager)."""
    import great_expectations.expectations as gxe

    from hep_tasks.quality import runner

    stored_rdds = spark.sparkContext._jsc.sc().getPersistentRDDs
    before = stored_rdds().size()
    held: list[int] = []
    validate = runner._validate

    def validate_then_fail(*args, **kwargs):
        held.append(stored_rdds().size() - before)
        if args[3].name == "second":
            raise RuntimeError("broken check")
        return validate(*args, **kwargs)

    monkeypatch.setattr(runner, "_validate", validate_then_fail)
    checks = [Check(name, spark.range(n).coalesce(1), [gxe.ExpectTableRowCountToEqual(value=n)])
              for name, n in (("first", 3), ("second", 4), ("third", 5))]
    with pytest.raises(RuntimeError, match="broken check"):
        run_checks("pipelined", checks, tmp_path)
    assert held[0] >= 1 and max(held) <= 2, held  # this check's batch, and at most the next one
    assert stored_rdds().size() == before


def test_an_unexpected_rows_expectation_runs_one_count_query(spark, tmp_path):
    """GX fetches up to 200 unexpected rows beside their count and shows them only in the COMPLETE
    format; the runner has it count only: one Spark job per expectation (a check's counts share
    one query, whose row of counts is one job more), and a failure still says how many rows."""
    from great_expectations.expectations.core.unexpected_rows_expectation import UnexpectedRowsExpectation

    from hep_tasks.quality.sql import rows_expectation

    df = spark.range(10).coalesce(1)
    tracker = spark.sparkContext.statusTracker()

    def jobs(n: int, limit: int) -> tuple[int, list[str]]:
        rules = [rows_expectation(f"id above {limit + i}", f"SELECT id FROM {{batch}} WHERE id > {limit + i}") for i in range(n)]
        before = len(tracker.getJobIdsForGroup(None))
        report = run_checks("counting", [Check("values", df, rules)], tmp_path)
        return len(tracker.getJobIdsForGroup(None)) - before, report.failed

    (one, _), (four, _) = jobs(1, 100), jobs(4, 100)
    assert four - one == 3 + 1
    assert UnexpectedRowsExpectation.metric_dependencies == ("unexpected_rows_query.row_count",)
    _, failed = jobs(1, 6)
    assert failed == ["values: unexpected_rows_expectation[id above 6]: 3 unexpected rows"], failed


def _views_and_limits(monkeypatch, df) -> tuple[list[str], list[int]]:
    """Record the temporary views created and the DataFrame limits taken (GX's per-query paths)."""
    views: list[str] = []
    limits: list[int] = []
    cls = type(df)
    create_view, limit = cls.createOrReplaceTempView, cls.limit
    monkeypatch.setattr(cls, "createOrReplaceTempView", lambda self, name: (views.append(name), create_view(self, name))[1])
    monkeypatch.setattr(cls, "limit", lambda self, n: (limits.append(n), limit(self, n))[1])
    return views, limits


def test_a_checks_unexpected_rows_are_counted_in_one_query(spark, tmp_path, monkeypatch):
    """The unexpected-rows queries of a check are counted together, through one view of the batch
    (GX alone makes a view and a count per query), whatever their shape (filters, a CTE, a LIMIT
    inside); the counts are the rows each query returns."""
    from hep_tasks.quality.sql import rows_expectation

    df = spark.range(10).coalesce(1)
    queries = {
        "above 6": ("SELECT id FROM {batch} WHERE id > 6", 3),
        "above 100": ("SELECT id FROM {batch} WHERE id > 100", 0),
        "even": ("SELECT id, id * 2 AS twice FROM {batch} WHERE id % 2 = 0", 5),
        "crowded residue": ("WITH t AS (SELECT id % 3 AS k FROM {batch}) SELECT k, count(*) AS n FROM t GROUP BY k HAVING count(*) > 3", 1),
        "first row zero": ("SELECT id FROM (SELECT * FROM {batch} LIMIT 1) WHERE id = 0", 1),
    }
    views, limits = _views_and_limits(monkeypatch, df)
    report = run_checks("together", [Check("values", df, [rows_expectation(n, q) for n, (q, _) in queries.items()])], tmp_path)
    assert sorted(report.failed) == sorted(
        f"values: unexpected_rows_expectation[{name}]: {count} unexpected rows" for name, (_, count) in queries.items() if count
    ), report.failed
    # one view per validation: the first pass and, as the check fails, the pass with samples
    assert len(views) == 2 and all(v.startswith("hep_quality_batch_") for v in views), views
    assert not any(spark.catalog.tableExists(v) for v in views)  # dropped after counting


def test_a_query_that_fails_is_counted_on_its_own_with_its_error(spark, tmp_path, monkeypatch):
    """When the bundled count fails (here a query on a missing column), GX counts the group's
    queries on their own: the broken one fails its own expectation with the error, the others
    keep their results."""
    from hep_tasks.quality.sql import rows_expectation

    df = spark.range(10).coalesce(1)
    expectations = [
        rows_expectation("above 6", "SELECT id FROM {batch} WHERE id > 6"),
        rows_expectation("above 100", "SELECT id FROM {batch} WHERE id > 100"),
        rows_expectation("missing column", "SELECT id FROM {batch} WHERE nope > 0", column="nope"),
    ]
    views, _ = _views_and_limits(monkeypatch, df)
    report = run_checks("fallback", [Check("values", df, expectations)], tmp_path)
    assert report.statistics["unsuccessful_expectations"] == 2, report.failed
    assert "values: unexpected_rows_expectation[above 6]: 3 unexpected rows" in report.failed, report.failed
    assert any(line.startswith("values: unexpected_rows_expectation[missing column](column=nope): error: ")
               for line in report.failed), report.failed
    # the bundle failed (once: not retried for the same queries), GX counted each query on its
    # own, and the two good ones were counted together again once GX had given up the broken one
    assert views[0].startswith("hep_quality_batch_") and views[1] == "tmp_view", views
    assert views[-1].startswith("hep_quality_batch_") and views.count("tmp_view") >= 3, views


def test_passing_column_expectations_fetch_no_sample_values(spark, tmp_path, monkeypatch):
    """The first pass asks for no sample values, so no query fetches any; a failing check's second
    pass does, and its failure line shows them."""
    import great_expectations.expectations as gxe

    df = spark.range(5).selectExpr("id", "CAST(id AS DOUBLE) AS x").coalesce(1)
    _, limits = _views_and_limits(monkeypatch, df)
    passing = [gxe.ExpectColumnValuesToBeBetween(column="x", min_value=0, max_value=4),
               gxe.ExpectColumnValuesToNotBeNull(column="id"), gxe.ExpectColumnValuesToBeInSet(column="id", value_set=list(range(5)))]
    assert run_checks("values", [Check("values", df, passing)], tmp_path).success
    assert limits == []
    failing = [gxe.ExpectColumnValuesToBeBetween(column="x", min_value=0, max_value=3)]
    report = run_checks("values", [Check("values", df, failing)], tmp_path)
    assert report.failed == ["values: expect_column_values_to_be_between(column=x, min_value=0.0, max_value=3.0): "
                             "1 of 5 values unexpected, e.g. [4.0]"], report.failed
    assert limits and set(limits) == {20}, limits


def test_a_duplicate_expectation_is_validated_once_with_a_warning(spark, tmp_path, caplog):
    import great_expectations.expectations as gxe

    same = [gxe.ExpectTableRowCountToEqual(value=3), gxe.ExpectTableRowCountToEqual(value=3), gxe.ExpectTableRowCountToEqual(value=4)]
    with caplog.at_level("WARNING", logger="hep_tasks.quality.runner"):
        report = run_checks("dupes", [Check("rows", spark.range(3).coalesce(1), same)], tmp_path)
    assert report.statistics["evaluated_expectations"] == 2 and report.failed == [
        "rows: expect_table_row_count_to_equal(value=4): observed 3"
    ], report.failed
    assert sum("duplicate expectation dropped" in r.getMessage() for r in caplog.records) == 1


def test_row_rules_are_derived_columns_evaluated_once(spark, tmp_path):
    """A rule of RowRules flags its rows through a derived column; a rule on a missing column fails
    its expectation with the error instead of aborting the run."""
    from hep_tasks.quality.sql import RowRules

    df = spark.createDataFrame([(1, [1.0, 2.0]), (2, [float("nan")]), (3, [3.0])], "id bigint, v array<float>")
    rules = RowRules()
    expectations = [
        *finite_expectations("v", "array", keys=("id",), rules=rules),
        rules.expectation("missing", "w has no negative element", "exists(w, x -> x < 0)", keys=("id",), column="w"),
    ]
    assert set(rules.columns) == {"_rule_v_finite", "_rule_missing"}
    report = run_checks("rules", [Check("values", df, expectations, rules.columns)], tmp_path)
    assert not report.success and len(report.failed) == 2, report.failed
    assert any(line.startswith("values: unexpected_rows_expectation[v: elements are finite")
               and line.endswith("1 unexpected rows") for line in report.failed), report.failed
    assert any(line.startswith("values: unexpected_rows_expectation[w has no negative element](column=w): error: ")
               for line in report.failed), report.failed
    with pytest.raises(ValueError, match="defined twice"):
        rules.expectation("missing", "again", "true")
