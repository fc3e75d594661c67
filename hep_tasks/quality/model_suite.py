"""The data-quality suite of the evaluate stage: predictions and model metrics (ARCHITECTURE §4).

:func:`model_checks` returns four checks for :func:`~hep_tasks.quality.runner.run_checks`:

``predictions`` (the test split scored by every model, one row per model and event)
    schema and types (:data:`PREDICTIONS_SCHEMA`); no NULL; (model, source_file, entry) unique;
    the models are exactly those of ``metrics``.
``prediction_values`` (one flag column per defect, derived from the predictions row by row)
    labels in {0, 1, 2}; no NaN/±inf/NULL element in ``probabilities`` or ``log_odds`` (the
    explicit check of the §4 pitfall: NaN passes null and range expectations); 3 values in each;
    each probability within [0, 1] and their sum within :data:`SUM_TOLERANCE` of 1; ``log_odds``
    agree with the probabilities (|sigmoid(log_odds) − p| ≤ :data:`LOG_ODDS_TOLERANCE`). A flag
    holds ``"<model> <source_file>#<entry>"`` where the row has the defect, so the failure line
    names the model and the event. The range, sum and log-odds flags skip rows with a non-finite
    element, which the finite flags report, so one defect fails one expectation.
``predicted_classes`` (per model, the classes its argmax predicts, aggregated from the predictions)
    every model predicts every class at least once (the missing ones are named
    ``"<model> predicts <process>"``).
``metrics`` (one row per model: ``model``, ``auc_ttbar_vs_qcd`` and optionally more ``auc_*``
    columns, all double)
    schema; ``model`` not NULL and unique; per model (named in the expectation): every AUC finite
    and within [0, 1]; ``auc_ttbar_vs_qcd`` ≥ the model's floor.

The failure lines of the value, class and AUC expectations name the model: per row through the
flags' sample values, per model in the expectation's description. Building the checks reads the
model names from ``metrics`` (a small DataFrame, one Spark job).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hep_tasks.processes import PROCESS_OF_LABEL
from hep_tasks.quality.report import Check
from hep_tasks.quality.sql import (
    finite_predicate,
    not_null_expectations,
    quote,
    rows_expectation,
    schema_expectations,
    select_rows,
    unique_keys_expectation,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

#: Columns and Spark SQL types of the scored test split.
PREDICTIONS_SCHEMA: dict[str, str] = {
    "model": "string",
    "label": "int",
    "source_file": "string",
    "entry": "bigint",
    "probabilities": "array<float>",
    "log_odds": "array<float>",
}
#: Columns and types every metrics row needs (more ``auc_*`` double columns are checked too).
METRICS_SCHEMA: dict[str, str] = {"model": "string", "auc_ttbar_vs_qcd": "double"}
#: Columns identifying a prediction (unique).
KEYS: tuple[str, ...] = ("model", "source_file", "entry")
#: Largest accepted |Σ probabilities − 1| (float32 softmax).
SUM_TOLERANCE = 1e-4
#: Largest accepted |sigmoid(log_odds) − probability|.
LOG_ODDS_TOLERANCE = 1e-4
#: Floor of the tt̄-vs-QCD AUC for models without one in ``auc_floors`` (nor a ``"*"`` entry).
DEFAULT_AUC_FLOOR = 0.5
#: Most models read from the metrics DataFrame.
MAX_MODELS = 100


def model_checks(predictions: DataFrame, metrics: DataFrame, *, auc_floors: Mapping[str, float]) -> list[Check]:
    """Checks of an evaluation: ``predictions``, ``prediction_values``, ``predicted_classes`` and
    ``metrics`` (see the module docstring).

    The two checks derived from the predictions are left out (and logged) when the predictions
    lack the columns or types they need, which the ``predictions`` schema expectations report.

    Args:
        predictions: the scored test split (:data:`PREDICTIONS_SCHEMA`).
        metrics: one row per model (:data:`METRICS_SCHEMA`, plus optional ``auc_*`` doubles).
        auc_floors: model -> lowest accepted tt̄-vs-QCD AUC; models not listed take the floor
            under ``"*"`` if present, else :data:`DEFAULT_AUC_FLOOR`.
    """
    bad = {k: v for k, v in auc_floors.items() if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0)}
    if bad:
        raise ValueError(f"AUC floors must be numbers in [0, 1], got {bad}")
    models = _models(metrics)
    unknown = sorted(set(auc_floors) - {"*"} - set(models))
    if unknown:
        log.warning("model quality: AUC floors for models without metrics: %s (models: %s)", unknown, models)
    checks = [Check("predictions", predictions, prediction_expectations(models))]
    types = dict(predictions.dtypes)
    wrong = {c: types.get(c, "missing") for c, t in PREDICTIONS_SCHEMA.items() if types.get(c) != t}
    if wrong:
        log.warning("model quality: no 'prediction_values' and 'predicted_classes' checks, the predictions have "
                    "%s (expected: %s)", wrong, PREDICTIONS_SCHEMA)
    else:
        checks.append(Check("prediction_values", prediction_values(predictions), prediction_value_expectations()))
        if models:
            checks.append(Check("predicted_classes", predicted_classes(predictions),
                                predicted_class_expectations(models)))
    auc_columns = list(dict.fromkeys(["auc_ttbar_vs_qcd", *(c for c in metrics.columns if c.startswith("auc_"))]))
    floors = {m: float(auc_floors.get(m, auc_floors.get("*", DEFAULT_AUC_FLOOR))) for m in models}
    checks.append(Check("metrics", metrics, metrics_expectations(floors, auc_columns)))
    return checks


def prediction_expectations(models: list[str]) -> list[Any]:
    """Expectations on the scored events as written: schema, no NULL, unique keys, the models."""
    from hep_tasks.quality.gx import gxe

    out = [
        *schema_expectations(PREDICTIONS_SCHEMA),
        *not_null_expectations(list(PREDICTIONS_SCHEMA)),
        unique_keys_expectation(KEYS),
    ]
    if models:
        out.append(gxe.ExpectColumnDistinctValuesToEqualSet(
            column="model", value_set=models, description="the models are those of the metrics"))
    return out


def value_flags() -> dict[str, tuple[str, str]]:
    """Flag column -> (description, SQL condition on a predictions row) of each per-row defect.

    A condition is true only for a defect it owns: NULL arrays are left to the not-null
    expectations, and the range, sum and log-odds conditions skip rows with a non-finite
    element, which the ``*_not_finite`` flags report.
    """
    n = len(PROCESS_OF_LABEL)
    labels = ", ".join(str(k) for k in sorted(PROCESS_OF_LABEL))

    def non_finite(column: str) -> str:
        return f"exists({column}, x -> NOT {finite_predicate('x')})"

    finite_rows = f"NOT {non_finite('probabilities')} AND NOT {non_finite('log_odds')}"
    total = "aggregate(probabilities, 0D, (a, x) -> a + x)"
    distance = "zip_with(probabilities, log_odds, (p, z) -> abs(1 / (1 + exp(-z)) - p))"
    return {
        "label_not_a_class": (f"label in {{{labels}}}", f"label NOT IN ({labels})"),
        "probabilities_not_finite": (
            "probabilities: elements are finite (no NaN, no ±inf, no NULL)", non_finite("probabilities")),
        "log_odds_not_finite": ("log_odds: elements are finite (no NaN, no ±inf, no NULL)", non_finite("log_odds")),
        "wrong_sizes": (f"probabilities and log_odds have {n} values (one per class)",
                        f"NOT (size(probabilities) = {n} AND size(log_odds) = {n})"),
        "probabilities_outside_0_1": ("probabilities within [0, 1]",
                                      f"{finite_rows} AND NOT forall(probabilities, x -> x BETWEEN 0 AND 1)"),
        "probabilities_sum_not_1": (f"probabilities sum to 1 within {SUM_TOLERANCE:g}",
                                    f"{finite_rows} AND NOT abs({total} - 1) <= {SUM_TOLERANCE!r}"),
        "log_odds_disagree": (
            f"log_odds agree with probabilities: |sigmoid(log_odds) - p| within {LOG_ODDS_TOLERANCE:g}",
            f"{finite_rows} AND size(probabilities) = size(log_odds) "
            f"AND exists({distance}, d -> d > {LOG_ODDS_TOLERANCE!r})",
        ),
    }


def prediction_values(predictions: DataFrame) -> DataFrame:
    """One row per prediction, one string column per defect of :func:`value_flags`: NULL when the
    row is fine, ``"<model> <source_file>#<entry>"`` when it has the defect (so failure lines
    name the model and the event)."""
    from pyspark.sql import functions as F

    ident = "concat_ws(' ', model, concat(coalesce(source_file, '?'), '#', coalesce(CAST(entry AS STRING), '?')))"
    return predictions.select(
        *(F.expr(f"CASE WHEN {condition} THEN {ident} END").alias(flag)
          for flag, (_, condition) in value_flags().items())
    )


def prediction_value_expectations() -> list[Any]:
    """Every flag column of :func:`prediction_values` is NULL."""
    from hep_tasks.quality.gx import gxe

    return [gxe.ExpectColumnValuesToBeNull(column=flag, description=description)
            for flag, (description, _) in value_flags().items()]


def predicted_classes(predictions: DataFrame) -> DataFrame:
    """Per model, the distinct predicted classes (argmax of ``probabilities``) as
    ``prediction = "<model> predicts <process>"``, with their event counts ``n``."""
    from pyspark.sql import functions as F

    names = " ".join(f"WHEN {label} THEN '{name}'" for label, name in sorted(PROCESS_OF_LABEL.items()))
    argmax = "array_position(probabilities, array_max(probabilities)) - 1"
    process = F.expr(f"coalesce(CASE {argmax} {names} END, 'class ' || ({argmax}))")
    return (
        predictions.select("model", process.alias("process"))
        .groupBy("model", "process")
        .agg(F.count(F.lit(1)).alias("n"))
        .select(F.concat_ws(" predicts ", "model", "process").alias("prediction"), "n")
    )


def predicted_class_expectations(models: list[str]) -> list[Any]:
    """Every model of ``models`` predicts every class at least once."""
    from hep_tasks.quality.gx import gxe

    wanted = [f"{m} predicts {p}" for m in models for _, p in sorted(PROCESS_OF_LABEL.items())]
    return [gxe.ExpectColumnDistinctValuesToContainSet(
        column="prediction", value_set=wanted, description="every model predicts every class (argmax) at least once")]


def metrics_expectations(floors: Mapping[str, float], auc_columns: list[str]) -> list[Any]:
    """Per-model AUC range and floor; ``floors`` maps every model of the metrics to its floor."""
    from hep_tasks.quality.gx import gxe

    out = [
        *schema_expectations({**METRICS_SCHEMA, **{c: "double" for c in auc_columns}}),
        *not_null_expectations(["model"]),
        gxe.ExpectColumnValuesToBeUnique(column="model"),
        gxe.ExpectTableRowCountToBeBetween(min_value=1, description="metrics of at least one model"),
    ]
    finite = " AND ".join(f"{finite_predicate(quote(c))} AND {quote(c)} BETWEEN 0 AND 1" for c in auc_columns)
    aucs = ", ".join(quote(c) for c in auc_columns)
    for model, floor in floors.items():
        is_model = f"model = {_sql_string(model)}"
        shown = _shown(model)
        out.append(rows_expectation(
            f"model {shown}: {', '.join(auc_columns)} finite and within [0, 1]",
            select_rows(f"{is_model} AND NOT coalesce({finite}, false)", keys=("model",), show=aucs),
            column="auc_ttbar_vs_qcd",
        ))
        out.append(rows_expectation(
            f"model {shown}: auc_ttbar_vs_qcd at least its floor {floor:g}",
            select_rows(f"{is_model} AND {finite_predicate('auc_ttbar_vs_qcd')} AND auc_ttbar_vs_qcd < {floor!r}",
                        keys=("model",), show="auc_ttbar_vs_qcd"),
            column="auc_ttbar_vs_qcd",
        ))
    return out


def _models(metrics: DataFrame) -> list[str]:
    """The model names of ``metrics`` (sorted; none when it has no ``model`` column)."""
    if "model" not in metrics.columns:
        log.warning("model quality: metrics have no 'model' column (columns: %s)", metrics.columns)
        return []
    from hep_tasks.sparkjob import collect_small

    rows = collect_small(metrics.select("model").where("model IS NOT NULL").distinct(), MAX_MODELS)
    return sorted(row["model"] for row in rows)


def _sql_string(value: str) -> str:
    """``value`` as a Spark SQL string literal, braces doubled for GX's query template."""
    text = value.replace("\\", "\\\\").replace("'", "\\'")
    return "'" + text.replace("{", "{{").replace("}", "}}") + "'"


def _shown(model: str) -> str:
    """A model name fit for a description (Data Docs insert descriptions into HTML unescaped)."""
    return model.replace("<", "(").replace(">", ")")

