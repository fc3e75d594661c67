"""Building blocks for expectations written as Spark SQL, and the explicit NaN/±inf checks.

ARCHITECTURE §4 pitfall (GX 1.24 on Spark 4.3): a NaN passes ``ExpectColumnValuesToNotBeNull``
and ``ExpectColumnValuesToBeBetween`` (Spark orders NaN above every number and does not count it
as null), and array columns are never looked inside. :func:`finite_expectations` makes
"a real, finite number" explicit, for scalar columns and for every element of ``array<float>``
and ``array<array<float>>`` columns, with Spark SQL higher-order functions.

Every query here selects from ``{batch}`` (GX substitutes the batch's temporary view) and returns
the *offending* rows, identified by ``keys`` (small columns such as ``source_file, entry``) and a
small diagnostic column, never a whole array: GX collects up to 200 of these rows to the driver.

Conventions for the predicates: ``x`` is an element, ``r`` a row of an ``array<array<...>>``;
indices are 0-based through ``get(array, i)``, which returns NULL outside the array instead of
failing under ANSI mode; a row-level rule is written as "ok" and a row is flagged when the rule is
false *or NULL* (``NOT coalesce(ok, false)``), so a missing element is never silently accepted.

>>> finite_predicate("x")
"(x IS NOT NULL AND NOT isnan(x) AND abs(x) <> double('inf'))"
>>> select_rows("size(hlf) <> 14", keys=("source_file", "entry"), show="size(hlf) AS n")
'SELECT `source_file`, `entry`, size(hlf) AS n FROM {batch} WHERE size(hlf) <> 14'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

#: The placeholder GX replaces with the batch's temporary view.
BATCH = "{batch}"
#: Spark SQL literal for +infinity.
INF = "double('inf')"
#: Column kinds understood by :func:`finite_expectations`.
Kind = Literal["scalar", "array", "matrix"]

#: Spark SQL type name (as ``typeof``/``DataFrame.dtypes`` spell it) -> pyspark type class name,
#: for the types :func:`schema_expectations` checks with ``ExpectColumnValuesToBeOfType``.
_SCALAR_TYPES: Mapping[str, str] = {
    "int": "IntegerType",
    "bigint": "LongType",
    "float": "FloatType",
    "double": "DoubleType",
    "string": "StringType",
    "boolean": "BooleanType",
}


def quote(column: str) -> str:
    """``column`` as a Spark SQL identifier (backquoted)."""
    return "`" + column.replace("`", "``") + "`"


def finite_predicate(x: str) -> str:
    """SQL predicate: ``x`` is a real, finite number (not NULL, not NaN, not ±inf)."""
    return f"({x} IS NOT NULL AND NOT isnan({x}) AND abs({x}) <> {INF})"


def select_rows(where: str, *, keys: Sequence[str] = (), show: str = "") -> str:
    """``SELECT <keys>, <show> FROM {batch} WHERE <where>``: the query of an unexpected-rows check."""
    columns = [quote(k) for k in keys] + ([show] if show else [])
    return f"SELECT {', '.join(columns) or '1 AS unexpected'} FROM {BATCH} WHERE {where}"


class RowRules:
    """Row-level rules of one check, each evaluated once per row into a derived boolean column.

    GX runs an unexpected-rows query twice (count, then sample), and a check has several: with
    predicates over every particle, each query would rescan the arrays. A rule is instead a
    derived column of the check (:attr:`~hep_tasks.quality.report.Check.derived`), computed once
    while the runner caches the batch: true where the row breaks the rule. Its expectation selects
    the rows whose flag is true, so only the offending rows evaluate the ``show`` columns.
    (Booleans, not the shown values: a projection of many conditional structs built from
    higher-order functions ran ten times slower on Spark 4 than the same predicates as flags.)

    >>> rules = RowRules()
    >>> rules.expectation("hlf_size", "hlf has 14 values", "size(hlf) <> 14", keys=("entry",)).unexpected_rows_query
    'SELECT `entry` FROM {batch} WHERE `_rule_hlf_size`'
    >>> rules.columns
    {'_rule_hlf_size': '(size(hlf) <> 14)'}
    """

    PREFIX = "_rule_"

    def __init__(self) -> None:
        #: derived column -> SQL expression, for :attr:`~hep_tasks.quality.report.Check.derived`.
        self.columns: dict[str, str] = {}

    def expectation(
        self, name: str, description: str, where: str, *, keys: Sequence[str] = (), show: str = "",
        column: str | None = None,
    ) -> Any:
        """The unexpected-rows expectation "no row satisfies ``where``", as a rule named ``name``.

        ``keys`` and ``show`` are the columns an offending row shows, as in :func:`select_rows`;
        ``description`` and ``column`` as in :func:`rows_expectation`.
        """
        derived = self.PREFIX + name
        if derived in self.columns:
            raise ValueError(f"row rule {name!r} is defined twice")
        self.columns[derived] = f"({where})"
        return rows_expectation(description, select_rows(quote(derived), keys=keys, show=show), column=column)


def rule_expectation(
    rules: RowRules | None, name: str, description: str, where: str, *, keys: Sequence[str] = (), show: str = "",
    column: str | None = None,
) -> Any:
    """"No row satisfies ``where``": a rule of ``rules`` when given, else a self-contained query."""
    if rules is not None:
        return rules.expectation(name, description, where, keys=keys, show=show, column=column)
    return rows_expectation(description, select_rows(where, keys=keys, show=show), column=column)


def rows_expectation(description: str, query: str, *, column: str | None = None) -> Any:
    """An ``UnexpectedRowsExpectation``: the batch fails when ``query`` returns any row.

    ``description`` is what Data Docs and failure lines show (Data Docs insert it into HTML
    unescaped, so no ``<word>``); ``column`` (optional) is recorded in ``meta`` so failure lines
    name it. Exceptions in the query (a missing column, a type error)
    make the expectation fail instead of aborting the run.
    """
    from hep_tasks.quality.gx import gxe

    if BATCH not in query:
        raise ValueError(f"query of {description!r} must select from {BATCH}: {query}")
    return gxe.UnexpectedRowsExpectation(
        unexpected_rows_query=query,
        description=description,
        meta={"column": column} if column else None,
        catch_exceptions=True,
    )


def finite_expectations(
    column: str, kind: Kind = "scalar", *, keys: Sequence[str] = (), rules: RowRules | None = None
) -> list[Any]:
    """Expectations that every value of ``column`` is a real, finite number.

    Args:
        column: the column to check.
        kind: ``scalar`` (a numeric column; NaN and ±inf are flagged, NULL is left to
            ``ExpectColumnValuesToNotBeNull``), ``array`` (``array<float|double>``: NULL, NaN and
            ±inf *elements* are flagged) or ``matrix`` (``array<array<float|double>>``: a NULL
            row or a NULL, NaN or ±inf element is flagged). A NULL array itself is left to
            ``ExpectColumnValuesToNotBeNull``.
        keys: columns identifying an offending row in the results (e.g. ``source_file, entry``).
        rules: the check's :class:`RowRules`, to evaluate the rule once per row (the check then
            needs ``rules.columns`` as its derived columns); without, a self-contained query.

    Returns:
        A list with one ``UnexpectedRowsExpectation`` (a list, so callers can splice it into a
        check's expectations).
    """
    col = quote(column)
    if kind == "scalar":
        where = f"{col} IS NOT NULL AND NOT {finite_predicate(col)}"
        show = f"{col} AS value"
        what = "values"
    elif kind == "array":
        bad = f"x -> NOT {finite_predicate('x')}"
        where = f"exists({col}, {bad})"
        show = f"size(filter({col}, {bad})) AS n_bad_elements"
        what = "elements"
    elif kind == "matrix":
        bad = f"r -> r IS NULL OR exists(r, x -> NOT {finite_predicate('x')})"
        where = f"exists({col}, {bad})"
        show = f"size(filter({col}, {bad})) AS n_bad_rows"
        what = "elements of every row"
    else:
        raise ValueError(f"kind must be 'scalar', 'array' or 'matrix', not {kind!r} (column {column})")
    description = f"{column}: {what} are finite (no NaN, no ±inf{'' if kind == 'scalar' else ', no NULL'})"
    return [rule_expectation(rules, f"{column}_finite", description, where, keys=keys, show=show, column=column)]


def schema_expectations(schema: Mapping[str, str]) -> list[Any]:
    """Expectations that the columns of ``schema`` exist with these Spark SQL types.

    ``schema`` maps column -> type as Spark's ``typeof`` spells it (``int``, ``bigint``,
    ``string``, ``array<float>``, ``array<array<float>>``, ...). Extra columns are allowed.
    Scalar types use ``ExpectColumnValuesToBeOfType``; nested types, whose element type that
    expectation cannot see on Spark (it compares only the outer class, ``ArrayType``), share one
    ``typeof`` query on the first row (one expectation, to spare Spark jobs).
    """
    from hep_tasks.quality.gx import gxe

    out: list[Any] = [gxe.ExpectTableColumnsToMatchSet(column_set=list(schema), exact_match=False)]
    nested = {c: t for c, t in schema.items() if t not in _SCALAR_TYPES}
    for column, sql_type in schema.items():
        if column not in nested:
            out.append(gxe.ExpectColumnValuesToBeOfType(column=column, type_=_SCALAR_TYPES[sql_type]))
    if nested:
        observed = ", ".join(f"typeof({quote(c)}) AS {quote(c)}" for c in nested)
        differs = " OR ".join(f"typeof({quote(c)}) <> '{t}'" for c, t in nested.items())
        query = f"SELECT {observed} FROM (SELECT * FROM {BATCH} LIMIT 1) WHERE {differs}"
        # Data Docs put descriptions into HTML unescaped: "array<float>" would vanish as a tag
        description = "types of " + ", ".join(f"{c} {t.replace('<', '(').replace('>', ')')}" for c, t in nested.items())
        out.append(rows_expectation(description, query, column=", ".join(nested)))
    return out


def shapes_expectation(
    *,
    arrays: Mapping[str, int],
    matrix: str,
    matrix_rows: str,
    matrix_width: int,
    keys: Sequence[str] = (),
    rules: RowRules | None = None,
) -> Any:
    """One expectation on array sizes: each of ``arrays`` (column -> length) has exactly that many
    elements, and ``matrix`` has ``matrix_rows`` (a column) rows of ``matrix_width`` elements.

    One rule for all the sizes, to spare Spark jobs (of ``rules`` when given, see
    :func:`rule_expectation`); the offending rows show every size.
    """
    m, rows = quote(matrix), quote(matrix_rows)
    bad_row = f"r -> NOT coalesce(size(r) = {matrix_width}, false)"
    ok = [f"size({quote(c)}) = {n}" for c, n in arrays.items()]
    ok += [f"size({m}) = {rows}", f"NOT exists({m}, {bad_row})"]
    show = [f"size({quote(c)}) AS {quote('size_' + c)}" for c in arrays]
    show += [rows, f"size({m}) AS {quote('size_' + matrix)}", f"size(filter({m}, {bad_row})) AS bad_rows"]
    description = "; ".join(
        [f"{c} has {n} values" for c, n in arrays.items()]
        + [f"{matrix} has {matrix_rows} rows of {matrix_width} features"]
    )
    return rule_expectation(rules, "shapes", description, f"NOT coalesce({' AND '.join(ok)}, false)", keys=keys,
                            show=", ".join(show), column=", ".join([*arrays, matrix]))


def not_null_expectations(columns: Sequence[str]) -> list[Any]:
    """``ExpectColumnValuesToNotBeNull`` for each column."""
    from hep_tasks.quality.gx import gxe

    return [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in columns]


def unique_keys_expectation(keys: Sequence[str]) -> Any:
    """Each combination of ``keys`` appears at most once in the batch."""
    cols = ", ".join(quote(k) for k in keys)
    query = f"SELECT {cols}, count(*) AS n FROM {BATCH} GROUP BY {cols} HAVING count(*) > 1"
    return rows_expectation(f"({', '.join(keys)}) is unique", query)


def equal_class_counts_expectation(label: str, *, max_imbalance: float = 0.0) -> Any:
    """Every class of ``label`` has the same number of rows, within ``max_imbalance``.

    A class is flagged when its count is below ``(1 - max_imbalance) * largest count``; with the
    default 0 the counts must be exactly equal. (Classes absent altogether are not seen here:
    pair this with ``ExpectColumnDistinctValuesToEqualSet``.)
    """
    if not 0.0 <= max_imbalance < 1.0:
        raise ValueError(f"max_imbalance must be in [0, 1), got {max_imbalance}")
    col = quote(label)
    query = (
        f"WITH counts AS (SELECT {col} AS class, count(*) AS n FROM {BATCH} GROUP BY {col}) "
        f"SELECT class, n, (SELECT max(n) FROM counts) AS largest FROM counts "
        f"WHERE n < (SELECT max(n) FROM counts) * {1.0 - max_imbalance!r}"
    )
    text = "equal" if max_imbalance == 0 else f"equal within {max_imbalance:.1%}"
    return rows_expectation(f"class counts of {label} are {text}", query, column=label)
