"""The model-quality suite on hand-made predictions and metrics: good ones pass; each defect is caught.

As in ``test_quality_prepare``, the defects are batched into one run (each in its own model or
event, chosen so that no defect trips another expectation) and the exact set of failed
expectations is asserted. Uses the session ``spark`` fixture.
"""

from __future__ import annotations

import math

import pytest
from quality_helpers import assert_single_failure

from hep_tasks.quality import DataQualityError, QualityReport, model_checks, raise_for_failures, run_checks

SCHEMA = "model string, label int, source_file string, entry bigint, probabilities array<float>, log_odds array<float>"
METRICS_SCHEMA = "model string, auc_ttbar_vs_qcd double, auc_qcd double, auc_ttbar double, auc_wjets double"
MODELS = ("hlf", "inclusive", "particle_sequence")
FLOORS = {"inclusive": 0.95, "*": 0.8}


def prediction(model: str, label: int, entry: int, probabilities: list[float]) -> tuple:
    log_odds = [math.log(p / (1 - p)) if 0 < p < 1 else math.nan for p in probabilities]
    return (model, label, f"file{label}.root", entry, probabilities, log_odds)


def events(model: str) -> list[tuple]:
    """Two events per class, each predicted as its label."""
    out = []
    for label in range(3):
        for entry in range(2):
            p = [0.1, 0.1, 0.1]
            p[label] = 0.8
            out.append(prediction(model, label, entry, p))
    return out


def good_rows() -> tuple[list[tuple], list[tuple]]:
    predictions = [row for model in MODELS for row in events(model)]
    metrics = [(m, 0.97, 0.96, 0.98, 0.95) for m in MODELS]
    return predictions, metrics


def bad_rows() -> tuple[list[tuple], list[tuple]]:
    predictions, metrics = good_rows()
    predictions[1] = prediction("hlf", 0, 1, [0.8, 0.1, 0.1])
    nan = list(predictions[1])
    nan[4] = [math.nan, 0.1, 0.1]
    predictions[1] = tuple(nan)                                                # hlf: NaN probability
    predictions[2] = prediction("hlf", 1, 0, [0.1, 0.7, 0.1])                  # hlf: sums to 0.9
    seq = [i for i, r in enumerate(predictions) if r[0] == "particle_sequence" and r[1] == 2]
    for i in seq:                                                              # particle_sequence: never W+jets
        predictions[i] = prediction("particle_sequence", 2, predictions[i][3], [0.1, 0.5, 0.4])
    metrics[MODELS.index("inclusive")] = ("inclusive", 0.93, 0.96, 0.98, 0.95)  # below its floor 0.95
    metrics[MODELS.index("hlf")] = ("hlf", 0.97, 0.96, 0.98, math.nan)              # NaN AUC
    i = next(i for i, r in enumerate(predictions) if r[0] == "inclusive" and r[1] == 0)
    predictions[i] = ("inclusive", 7, *predictions[i][2:])                            # label 7
    i = next(i for i, r in enumerate(predictions) if r[0] == "inclusive" and r[1] == 1)
    model, label, source, entry, p, z = predictions[i]
    predictions[i] = (model, label, source, entry, p, z[1:] + z[:1])                  # log-odds of the wrong classes
    return predictions, metrics


def frames(spark, rows):
    predictions, metrics = rows
    return (spark.createDataFrame(predictions, SCHEMA).coalesce(1), spark.createDataFrame(metrics, METRICS_SCHEMA))


@pytest.fixture(scope="module")
def good_report(spark, tmp_path_factory) -> QualityReport:
    predictions, metrics = frames(spark, good_rows())
    checks = model_checks(predictions, metrics, auc_floors=FLOORS)
    return run_checks("model", checks, tmp_path_factory.mktemp("model-good"))


@pytest.fixture(scope="module")
def bad_report(spark, tmp_path_factory) -> QualityReport:
    predictions, metrics = frames(spark, bad_rows())
    checks = model_checks(predictions, metrics, auc_floors=FLOORS)
    return run_checks("model", checks, tmp_path_factory.mktemp("model-bad"))


def test_good_predictions_pass(good_report):
    assert good_report.success, good_report.failed
    assert set(good_report.statistics["checks"]) == {"predictions", "prediction_values", "predicted_classes", "metrics"}
    raise_for_failures(good_report)


DEFECTS = {
    "nan_probability": (
        "prediction_values: expect_column_values_to_be_null[probabilities: elements are finite",
        "1 of 18 values unexpected, e.g. ['hlf file0.root#1']"),
    "sum_0.9": (
        "prediction_values: expect_column_values_to_be_null[probabilities sum to 1 within 0.0001]",
        "1 of 18 values unexpected, e.g. ['hlf file1.root#0']"),
    "never_predicts_wjets": (
        "predicted_classes: expect_column_distinct_values_to_contain_set[every model predicts every class",
        "particle_sequence predicts wjets']"),
    "label_7": ("prediction_values: expect_column_values_to_be_null[label in {0, 1, 2}]",
                "1 of 18 values unexpected, e.g. ['inclusive file0.root#0']"),
    "log_odds_swapped": ("prediction_values: expect_column_values_to_be_null[log_odds agree with probabilities",
                         "1 of 18 values unexpected, e.g. ['inclusive file1.root#0']"),
    "nan_auc": ("metrics: unexpected_rows_expectation[model hlf: auc_ttbar_vs_qcd, auc_qcd, auc_ttbar, auc_wjets "
                "finite and within [0, 1]]", "1 unexpected rows"),
    "auc_below_floor": (
        "metrics: unexpected_rows_expectation[model inclusive: auc_ttbar_vs_qcd at least its floor 0.95]",
        "1 unexpected rows"),
}


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_each_defect_fails_its_expectation(bad_report, defect):
    assert_single_failure(bad_report, *DEFECTS[defect])


def test_bad_predictions_fail_exactly_the_defects(bad_report):
    assert len(bad_report.failed) == len(DEFECTS), "\n".join(bad_report.failed)
    with pytest.raises(DataQualityError, match=r"(?s)failed 7 expectation.*model inclusive.*Data Docs: .*index\.html"):
        raise_for_failures(bad_report)


def test_floors_are_checked(spark):
    predictions, metrics = frames(spark, good_rows())
    with pytest.raises(ValueError, match=r"AUC floors must be numbers in \[0, 1\], got \{'hlf': 1.5\}"):
        model_checks(predictions, metrics, auc_floors={"hlf": 1.5})
