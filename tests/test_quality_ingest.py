"""The ingested-data suite on hand-made events: a good batch passes; each defect is caught by name.

Great Expectations on Spark costs seconds per run, so the defects are batched: one run on a
good batch, one on a batch carrying every defect (each in its own event, chosen so that no
defect trips another expectation); the test asserts the exact set of failed expectations.
Uses the session ``spark`` fixture of ``conftest.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from quality_helpers import assert_single_failure

from hep_tasks.quality import (
    Check,
    DataQualityError,
    QualityReport,
    finite_expectations,
    ingest_checks,
    raise_for_failures,
    run_checks,
)

PROCESS = {0: "qcd", 1: "ttbar", 2: "wjets"}
SCHEMA = (
    "label int, process string, hlf array<float>, particles array<array<float>>, "
    "n_particles int, source_file string, entry bigint"
)
# particle-row feature indices (ARCHITECTURE §3)
E, PT, ETA, PHI, IS_CH_HAD, IS_GAMMA, IS_ELE, IS_MU, CHARGE = 0, 4, 5, 6, 13, 15, 16, 17, 18
# HLF indices
HT, MET, LEP_PT = 0, 1, 6


def particle(pt: float, eta: float, phi: float, flag: int, charge: float = 0.0, iso: float = 0.0) -> list[float]:
    """One 19-feature row; ``flag`` is the index of the type flag to set."""
    row = [
        pt * math.cosh(eta), pt * math.cos(phi), pt * math.sin(phi), pt * math.sinh(eta), pt, eta, phi,
        0.01, -0.02, 0.5, iso, iso / 2, iso / 4, 0.0, 0.0, 0.0, 0.0, 0.0, charge,
    ]
    row[flag] = 1.0
    return row


def event(label: int, entry: int) -> dict:
    """A physically valid event: an isolated lepton, two tracks, a photon, a neutral hadron."""
    is_ele = entry % 2 == 0
    lep_pt, lep_eta, lep_phi, charge = 30.0 + entry, 0.4 - 0.1 * entry, 0.3 * entry - 1.0, (-1.0) ** entry
    met, phi_met = 40.0 + label, -2.0 + 0.1 * entry
    mt = math.sqrt(2 * met * lep_pt * (1 - math.cos(lep_phi - phi_met)))
    lepton = particle(lep_pt, lep_eta, lep_phi, IS_ELE if is_ele else IS_MU, charge, iso=0.05)
    lepton[7:10] = [0.0, 0.0, 0.0]
    particles = [
        lepton,
        particle(5.0, 1.1, 2.9, IS_CH_HAD, 1.0),
        particle(2.5, -0.7, -3.1, IS_CH_HAD, -1.0),
        particle(3.0, 0.2, 0.1, IS_GAMMA),
        particle(4.0, -2.2, 1.7, 14),  # isNeuHad
    ]
    hlf = [120.0 + entry, met, phi_met, mt, 3.0, 1.0, lep_pt, lep_eta, lep_phi,
           lepton[10], lepton[11], lepton[12], charge, float(is_ele)]
    return {
        "label": label, "process": PROCESS[label], "hlf": hlf, "particles": particles,
        "n_particles": len(particles), "source_file": f"{PROCESS[label]}/file0.root", "entry": entry,
    }


def good_events() -> list[dict]:
    return [event(label, entry) for label in (0, 1, 2) for entry in (0, 1)]


def bad_events() -> list[dict]:
    """Every defect in its own event; no W+jets event at all (missing class)."""
    nan_hlf, nan_particle, inf_met, low_pt, not_one_hot = (event(label, e) for label, e in
                                                            ((0, 0), (0, 1), (1, 0), (1, 1), (1, 2)))
    nan_hlf["hlf"][HT] = math.nan  # passes HT >= 0 (NaN sorts above numbers): only the finite check sees it
    nan_particle["particles"][2][E] = math.nan
    inf_met["hlf"][MET] = math.inf
    low_pt["hlf"][LEP_PT] = 10.0
    low_pt["particles"][0][PT] = 10.0  # keep row 0 consistent with the HLF lepton
    not_one_hot["particles"][3][IS_CH_HAD] = 1.0  # a photon that is also a charged hadron
    return [nan_hlf, nan_particle, inf_met, low_pt, not_one_hot]


def frames(spark, events: list[dict], quarantined: int):
    """(events, metrics) DataFrames; one partition each, which halves the Spark jobs GX starts."""
    events_df = spark.createDataFrame([tuple(e.values()) for e in events], SCHEMA).coalesce(1)
    metrics_df = spark.createDataFrame(
        [(10, quarantined, quarantined / 10)], "files_total int, files_quarantined int, quarantined_fraction double"
    ).coalesce(1)
    return events_df, metrics_df


@pytest.fixture(scope="module")
def good_report(spark, tmp_path_factory) -> QualityReport:
    events_df, metrics_df = frames(spark, good_events(), quarantined=1)
    checks = ingest_checks(events_df, metrics_df, max_quarantined_fraction=0.1)
    return run_checks("ingest", checks, tmp_path_factory.mktemp("ingest-good"))


@pytest.fixture(scope="module")
def bad_report(spark, tmp_path_factory) -> QualityReport:
    events_df, metrics_df = frames(spark, bad_events(), quarantined=5)
    checks = ingest_checks(events_df, metrics_df, max_quarantined_fraction=0.1)
    return run_checks("ingest", checks, tmp_path_factory.mktemp("ingest-bad"))


def test_good_batch_passes(good_report):
    assert good_report.success, good_report.failed
    assert good_report.failed == []
    stats = good_report.statistics
    assert set(stats["checks"]) == {"events", "hlf", "metrics"}
    assert stats["evaluated_expectations"] > 40 and stats["unsuccessful_expectations"] == 0
    assert raise_for_failures(good_report) is good_report
    assert good_report.to_dict()["status"] == "passed"


@pytest.mark.parametrize("which", ["good", "bad"])
def test_results_json_and_data_docs_are_written(request, which):
    report = request.getfixturevalue(f"{which}_report")
    results = json.loads(Path(report.results_path).read_text())
    assert Path(report.results_path).name == "ingest.json"
    assert results["suite"] == "ingest" and results["success"] is report.success
    assert results["failed"] == report.failed
    assert set(results["checks"]) == {"events", "hlf", "metrics"}
    assert all(len(c["results"]) == report.statistics["checks"][n]["evaluated_expectations"]
               for n, c in results["checks"].items())
    index = Path(report.data_docs_index)
    assert index.name == "index.html" and index.is_file() and index.parent.name == "data_docs"
    html = index.read_text()
    assert all(f"ingest.{name}" in html for name in ("events", "hlf", "metrics"))
    json.dumps(report.to_dict())


# defect -> (text identifying its failure line, what the line ends with)
DEFECTS = {
    "nan_in_hlf_and_inf_met": ("events: unexpected_rows_expectation[hlf: elements are finite", "2 unexpected rows"),
    "nan_in_particle_row": ("events: unexpected_rows_expectation[particles: elements of every row are finite", "1 unexpected rows"),
    "lep_pt_10": ("hlf: expect_column_values_to_be_between(column=LepPT, min_value=23.0", "1 of 5 values unexpected, e.g. [10.0]"),
    "missing_class": ("events: expect_column_distinct_values_to_contain_set(column=label, value_set=[0, 1, 2]", "missing [2]"),
    "not_one_hot": ("events: unexpected_rows_expectation[particle type flags", "1 unexpected rows"),
    "quarantined_fraction": ("metrics: expect_column_values_to_be_between(column=quarantined_fraction", "e.g. [0.5]"),
}


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_each_defect_fails_its_expectation(bad_report, defect):
    assert_single_failure(bad_report, *DEFECTS[defect])


def test_bad_batch_fails_exactly_the_defects(bad_report):
    assert not bad_report.success
    assert len(bad_report.failed) == len(DEFECTS), "\n".join(bad_report.failed)


def test_nan_passes_the_native_range_check(bad_report):
    """The §4 pitfall: NaN HT satisfies ExpectColumnValuesToBeBetween(HT, min 0); only the finite check fails."""
    assert not any("column=HT" in line for line in bad_report.failed)


def test_failure_raises_with_the_expectations_named(bad_report):
    pattern = r"(?s)suite 'ingest' failed 6 expectation\(s\):\n  - events: .*column=LepPT.*quarantined_fraction.*Data Docs: "
    with pytest.raises(DataQualityError, match=pattern) as info:
        raise_for_failures(bad_report)
    assert bad_report.data_docs_index in str(info.value)
    assert info.value.report is bad_report
    assert bad_report.to_dict()["status"] == "failed"


def test_missing_column_fails_without_crashing(spark, tmp_path):
    """A missing column makes its expectations fail (GX errors caught), not the run crash.

    Only a few expectations are run: GX retries a failed metric bundle metric by metric, which
    makes a whole suite on a broken schema slow (about 40 s here).
    """
    import great_expectations.expectations as gxe

    events_df, metrics_df = frames(spark, good_events(), quarantined=0)
    checks = ingest_checks(events_df.drop("hlf"), metrics_df, max_quarantined_fraction=0.1)
    assert [c.name for c in checks] == ["events", "metrics"]
    expectations = [
        gxe.ExpectTableColumnsToMatchSet(column_set=["hlf", "label"], exact_match=False),
        gxe.ExpectColumnValuesToNotBeNull(column="hlf"),
        *finite_expectations("hlf", "array"),
    ]
    report = run_checks("broken", [Check("events", checks[0].dataframe, expectations)], tmp_path)
    assert not report.success and len(report.failed) == 3, report.failed
    errors = [line for line in report.failed if ": error: " in line]
    assert len(errors) == 2, report.failed
    assert any(line.startswith("events: expect_column_values_to_not_be_null(column=hlf): error: ") for line in errors)
    assert any(line.startswith("events: unexpected_rows_expectation[hlf: elements are finite") for line in errors)
