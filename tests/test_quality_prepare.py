"""The prepared-data suite on hand-made train/test splits: a good pair passes; each defect is caught.

As in ``test_quality_ingest``, the defects are batched into one run (each in its own event) and
the exact set of failed expectations is asserted. Uses the session ``spark`` fixture.
"""

from __future__ import annotations

import math

import pytest
from quality_helpers import assert_single_failure

from hep_tasks.quality import DataQualityError, QualityReport, prepared_checks, raise_for_failures, run_checks
from hep_tasks.quality.prepare_suite import KEYS, delta_r_order_rule
from hep_tasks.quality.sql import select_rows

SCHEMA = (
    "label int, label_onehot array<float>, hlf array<float>, particles array<array<float>>, "
    "n_particles int, source_file string, entry bigint"
)
SCALING = {"eta_mean": 0.1, "eta_std": 1.3, "phi_mean": 0.05, "phi_std": 1.8}
ETA, PHI = 5, 6
PROCESS = {0: "qcd", 1: "ttbar", 2: "wjets"}


def delta_r(eta1: float, phi1: float, eta2: float, phi2: float) -> float:
    dphi = (phi1 - phi2 + math.pi) % (2 * math.pi) - math.pi
    return math.hypot(eta1 - eta2, dphi)


def prepared_event(label: int, entry: int) -> dict:
    """Standardised particles sorted by decreasing ΔR from the lepton (last row), scaled HLF."""
    lep_eta, lep_phi = 0.3 * entry - 0.5, 1.0 - 0.4 * entry
    others = [(2.0 + 0.05 * entry, -2.5), (-1.5, 0.5 + 0.1 * entry), (0.8, 3.0), (-0.2, -1.0 + 0.02 * entry)]
    others.sort(key=lambda p: delta_r(p[0], p[1], lep_eta, lep_phi), reverse=True)
    particles = []
    for k, (eta, phi) in enumerate([*others, (lep_eta, lep_phi)]):
        row = [0.1 * ((k + j) % 7) - 0.3 for j in range(19)]
        row[ETA] = (eta - SCALING["eta_mean"]) / SCALING["eta_std"]
        row[PHI] = (phi - SCALING["phi_mean"]) / SCALING["phi_std"]
        particles.append(row)
    return {
        "label": label,
        "label_onehot": [1.0 if i == label else 0.0 for i in range(3)],
        "hlf": [((k + entry) % 11) / 10 for k in range(14)],
        "particles": particles,
        "n_particles": len(particles),
        "source_file": f"{PROCESS[label]}/file0.root",
        "entry": entry,
    }


def good_pair() -> tuple[list[dict], list[dict]]:
    train = [prepared_event(label, entry) for label in (0, 1, 2) for entry in (0, 1, 2)]
    test = [prepared_event(label, entry) for label in (0, 1, 2) for entry in (10,)]
    return train, test


def bad_pair() -> tuple[list[dict], list[dict]]:
    train, test = good_pair()
    unsorted, too_large = train[0], train[3]
    unsorted["particles"][0], unsorted["particles"][1] = unsorted["particles"][1], unsorted["particles"][0]
    too_large["hlf"][4] = 1.5
    train.append(prepared_event(0, 3))  # a fourth QCD event: class counts 4, 3, 3
    test[1] = dict(train[4])  # the tt̄ test event is also in train
    return train, test


def frames(spark, pair):
    """(train, test) DataFrames; one partition each, which halves the Spark jobs GX starts."""
    return tuple(spark.createDataFrame([tuple(e.values()) for e in events], SCHEMA).coalesce(1) for events in pair)


@pytest.fixture(scope="module")
def good_report(spark, tmp_path_factory) -> QualityReport:
    train_df, test_df = frames(spark, good_pair())
    return run_checks("prepare", prepared_checks(train_df, test_df, **SCALING), tmp_path_factory.mktemp("prepare-good"))


@pytest.fixture(scope="module")
def bad_report(spark, tmp_path_factory) -> QualityReport:
    train_df, test_df = frames(spark, bad_pair())
    return run_checks("prepare", prepared_checks(train_df, test_df, **SCALING), tmp_path_factory.mktemp("prepare-bad"))


def test_good_pair_passes(good_report):
    assert good_report.success, good_report.failed
    assert set(good_report.statistics["checks"]) == {"train", "test", "overlap"}
    raise_for_failures(good_report)


DEFECTS = {
    "overlap": ("overlap: expect_table_row_count_to_equal[train and test are disjoint", "observed 1"),
    "unsorted_particles": ("train: unexpected_rows_expectation[particle rows sorted by decreasing ΔR", "1 unexpected rows"),
    "unequal_class_counts": ("train: unexpected_rows_expectation[class counts of label are equal", "2 unexpected rows"),
    "train_hlf_1.5": ("train: unexpected_rows_expectation[train hlf elements within [0, 1]", "1 unexpected rows"),
}


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_each_defect_fails_its_expectation(bad_report, defect):
    assert_single_failure(bad_report, *DEFECTS[defect])


def test_bad_pair_fails_exactly_the_defects(bad_report):
    assert len(bad_report.failed) == len(DEFECTS), "\n".join(bad_report.failed)
    with pytest.raises(DataQualityError, match=r"(?s)failed 4 expectation.*disjoint.*Data Docs: .*index\.html"):
        raise_for_failures(bad_report)


def test_scaler_parameters_are_checked(spark):
    train_df, test_df = frames(spark, good_pair())
    with pytest.raises(ValueError, match="positive std"):
        prepared_checks(train_df, test_df, **{**SCALING, "eta_std": 0.0})
    with pytest.raises(ValueError, match="finite"):
        prepared_checks(train_df, test_df, **{**SCALING, "phi_mean": math.nan})


def test_delta_r_query_wraps_phi(spark):
    """Δφ across ±π: a particle at φ = 3.1 is close to a lepton at φ = -3.1 (ΔR ≈ 0.083)."""
    far, near, lepton = (0.0, 0.0), (0.0, 3.1), (0.0, -3.1)
    scaled = [[0.0] * 5 + [(eta - SCALING["eta_mean"]) / SCALING["eta_std"], (phi - SCALING["phi_mean"]) / SCALING["phi_std"]]
              for eta, phi in (far, near, lepton)]
    df = spark.createDataFrame([("f", 0, scaled), ("f", 1, [scaled[1], scaled[0], scaled[2]])],
                               "source_file string, entry bigint, particles array<array<float>>")
    df.createOrReplaceTempView("dr_order_test")
    where, show = delta_r_order_rule(**SCALING)
    rows = spark.sql(select_rows(where, keys=KEYS, show=show).replace("{batch}", "dr_order_test")).collect()
    assert [(r["entry"], r["first_rising_row"], r["n_rising"]) for r in rows] == [(1, 1, 1)]
