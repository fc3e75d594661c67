"""The ingest stage on Spark: simulated files -> Parquet, cut-flow, quarantine, quality suite."""

from __future__ import annotations

import math
import re
from pathlib import Path

import awkward as ak
import pytest
import uproot

from hep_tasks.config import IngestParams, QualityParams
from hep_tasks.datasets import DatasetStore
from hep_tasks.errors import PipelineError
from hep_tasks.ingest import stage as ingest
from hep_tasks.ingest.schema import SPARK_DDL
from hep_tasks.quality import stage as quality
from hep_tasks.quality.report import DataQualityError

pytestmark = pytest.mark.slow


def _params(**values) -> IngestParams:
    return IngestParams.from_values(values, env={})


def test_ingest_skips_a_corrupt_file_and_records_it(spark, tmp_path, input_dir, sample_files):
    truncated = (input_dir / "qcd_sample.root").read_bytes()[:20_000]
    (input_dir / "qcd_broken.root").write_bytes(truncated)
    store = DatasetStore(str(tmp_path / "data"))
    result = ingest.run(spark, store, _params(input=f"{input_dir}/*.root", entries_per_split=25, max_quarantined_fraction=0.3))
    manifest = store.read_manifest("ingest", result["version"])

    [bad] = manifest["quarantine"]
    assert bad["url"].endswith("qcd_broken.root")
    assert re.match(r"(not a readable ROOT file|unreadable TTree 'Delphes') \(", bad["reason"]), bad["reason"]
    assert manifest["input_files"] == {"total": 4, "readable": 3, "splits": 9}
    for process, path in sample_files.items():
        flow = manifest["cutflow"][process]
        assert flow["read"] == uproot.open(path)["Delphes"].num_entries
        assert flow["read"] == flow["valid_values"] >= flow["lepton_pt23"] >= flow["isolated_lepton"] == flow["written"] > 0
        assert manifest["counts"][process] == flow["written"]
    events = spark.read.parquet(store.url("ingest", result["version"], "events"))
    assert events.schema.simpleString() == spark.createDataFrame([], SPARK_DDL).schema.simpleString()
    assert events.count() == manifest["counts"]["total"]
    assert all(f["sha256"] and f["size"] > 0 for f in manifest["files"])

    # a rerun with the same inputs and parameters is a no-op returning the same version
    again = ingest.run(spark, store, _params(input=f"{input_dir}/*.root", entries_per_split=25, max_quarantined_fraction=0.3))
    assert again["version"] == result["version"] and again["created_at"] == result["created_at"]

    # the quality suite passes on real simulated data and records the result; publish moves `latest`
    checked = quality.run(spark, store, QualityParams.from_values({"stage": "ingest", "version": result["version"]}, env={}))
    assert checked["quality"] == "passed" and store.latest("ingest") is None
    from hep_tasks.catalog import publish

    publish(store, {"ingest": result["version"]})
    assert store.latest("ingest") == result["version"]
    record = store.read_manifest("ingest", result["version"])["quality"]
    assert record["status"] == "passed" and record["data_docs_index"] == "_quality/data_docs/index.html"
    assert (tmp_path / "data" / "ingest" / result["version"] / "_quality" / "data_docs" / "index.html").exists()


def test_tasks_of_several_files_write_what_one_file_per_task_writes(spark, tmp_path, input_dir, monkeypatch):
    """With many files each task ingests an interleaved share of them, a corrupt one among them:
    the same event files (names and checksums), cut-flow and quarantine as one task per file."""
    import os

    for path in sorted(input_dir.glob("*_sample.root")):
        for copy in range(2):
            os.link(path, input_dir / f"{path.stem}_{copy}.root")
    (input_dir / "qcd_broken.root").write_bytes((input_dir / "qcd_sample.root").read_bytes()[:20_000])
    records = {}
    for tasks_per_slot in (ingest.TASKS_PER_SLOT, 5):  # 10 files on 2 slots: 8 tasks (some with 2 files), 10 tasks
        monkeypatch.setattr(ingest, "TASKS_PER_SLOT", tasks_per_slot)
        store = DatasetStore(str(tmp_path / f"data{tasks_per_slot}"))
        params = _params(input=f"{input_dir}/*.root", max_quarantined_fraction=0.2, on_bad_file="skip")
        manifest = store.read_manifest("ingest", ingest.run(spark, store, params)["version"])
        records[tasks_per_slot] = {k: manifest[k] for k in ("files", "cutflow", "quarantine", "input_files", "counts")}
    assert records[ingest.TASKS_PER_SLOT] == records[5]
    assert [q["url"].rsplit("/", 1)[-1] for q in records[5]["quarantine"]] == ["qcd_broken.root"]
    assert records[5]["input_files"]["readable"] == 9


def test_fail_policy_stops_with_the_file_named_and_writes_nothing(spark, tmp_path, input_dir):
    (input_dir / "wjets_truncated.root").write_bytes((input_dir / "wjets_sample.root").read_bytes()[:3000])
    store = DatasetStore(str(tmp_path / "data"))
    with pytest.raises(PipelineError, match=r"in file .*wjets_truncated\.root"):
        ingest.run(spark, store, _params(input=f"{input_dir}/*.root", on_bad_file="fail"))
    assert store.versions("ingest") == []


def test_too_many_quarantined_files_fail_the_quality_suite(spark, tmp_path, input_dir):
    for i in range(2):
        (input_dir / f"ttbar_junk{i}.root").write_text("not root")
    store = DatasetStore(str(tmp_path / "data"))
    result = ingest.run(spark, store, _params(input=f"{input_dir}/*.root", max_quarantined_fraction=0.2))
    assert len(store.read_manifest("ingest", result["version"])["quarantine"]) == 2
    with pytest.raises(DataQualityError, match=r"quarantined_fraction"):
        quality.run(spark, store, QualityParams.from_values({"stage": "ingest", "version": result["version"]}, env={}))
    assert store.latest("ingest") is None
    assert store.read_manifest("ingest", result["version"])["quality"]["status"] == "failed"


def test_the_data_source_reads_paths_on_its_own(spark, sample_files):
    from hep_tasks.ingest.datasource import DelphesDataSource

    spark.dataSource.register(DelphesDataSource)
    spec = ",".join(f"{p}={path}" for p, path in sample_files.items())
    events = spark.read.format("delphes").option("entriesPerSplit", 25).load(spec)
    assert events.rdd.getNumPartitions() == 9  # 3 files x ceil(60 / 25)
    counts = {r["process"]: r["count"] for r in events.groupBy("process").count().collect()}
    assert set(counts) == {"qcd", "ttbar", "wjets"} and all(n > 40 for n in counts.values())
    assert events.filter("n_particles < 1 or n_particles > 801").count() == 0


def _copy_with_invalid_values(source: Path, target: Path) -> dict[int, str]:
    """``source``'s events written to ``target`` with one broken value in each of five events;
    returns entry -> the problem the manifest must name."""
    from rootfiles import collection, write_delphes

    from hep_tasks.physics import REQUIRED_FIELDS

    tree = uproot.open(source)["Delphes"]
    rows = {}
    for name in REQUIRED_FIELDS:
        fields = tuple(k.split(".", 1)[1] for k in tree.keys() if k.startswith(f"{name}."))
        arrays = tree.arrays([f"{name}.{f}" for f in fields])
        rows[name] = (fields, ak.to_list(ak.zip({f: arrays[f"{name}.{f}"] for f in fields})))
    broken = {
        1: ("EFlowTrack", "PT", math.nan, "EFlowTrack.PT NaN/inf"),
        2: ("EFlowTrack", "Eta", math.inf, "EFlowTrack.Eta NaN/inf"),
        3: ("EFlowTrack", "PT", -3.0, "EFlowTrack.PT negative"),
        4: ("EFlowTrack", "Eta", 12.0, "EFlowTrack.Eta beyond |10|"),
        5: ("MissingET", "MET", -1.0, "MissingET.MET negative"),
    }
    for entry, (name, field, value, _) in broken.items():
        rows[name][1][entry][0][field] = value
    write_delphes(target, {name: collection(per_event, fields) for name, (fields, per_event) in rows.items()})
    return {entry: problem for entry, (*_, problem) in broken.items()}


def test_events_with_invalid_values_are_rejected_and_the_rest_is_published(spark, tmp_path, input_dir):
    """A file with NaN, inf, negative PT/MET and |Eta| > 10 beside good files: only its five broken
    events go (counted in the cut-flow, named per file and problem); everything else is ingested,
    the ingest check passes and the version can be published."""
    broken = _copy_with_invalid_values(input_dir / "ttbar_sample.root", input_dir / "ttbar_broken.root")
    store = DatasetStore(str(tmp_path / "data"))
    result = ingest.run(spark, store, _params(input=f"{input_dir}/*.root"))
    manifest = store.read_manifest("ingest", result["version"])

    assert manifest["quarantine"] == []
    [(url, record)] = manifest["invalid_values"].items()
    assert url.endswith("ttbar_broken.root")
    assert record == {"process": "ttbar", "events": 5, "problems": dict.fromkeys(broken.values(), 1)}
    flow = manifest["cutflow"]
    assert flow["ttbar"]["read"] == 2 * 60 and flow["ttbar"]["valid_values"] == 2 * 60 - 5
    assert all(flow[p]["read"] == flow[p]["valid_values"] == 60 for p in ("qcd", "wjets"))

    events = spark.read.parquet(store.url("ingest", result["version"], "events")).select("source_file", "entry")
    entries = {}
    for row in events.collect():  # 3 x 60 sample events at most
        entries.setdefault(row["source_file"].rsplit("/", 1)[-1], set()).add(row["entry"])
    # the broken copy keeps exactly the good file's events but the five broken ones, no duplicates
    assert entries["ttbar_broken.root"] == entries["ttbar_sample.root"] - set(broken)
    assert events.count() == events.distinct().count() == manifest["counts"]["total"]
    checked = quality.run(spark, store, QualityParams.from_values({"stage": "ingest", "version": result["version"]}, env={}))
    assert checked["quality"] == "passed"


def test_when_no_input_is_readable_the_error_names_each_file(spark, tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "ttbar_text.root").write_text("not root")
    (folder / "qcd_empty.root").write_bytes(b"")
    store = DatasetStore(str(tmp_path / "data"))
    with pytest.raises(PipelineError, match=r"none of the 2 input files is readable: ") as failure:
        ingest.run(spark, store, _params(input=f"{folder}/*.root"))
    message = str(failure.value)
    assert re.search(r"qcd_empty\.root: \S", message) and re.search(r"ttbar_text\.root: \S", message), message
    assert store.versions("ingest") == []
