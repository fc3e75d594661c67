"""The simulate stage on Spark: one file per task, a seed per file, a version per parameter set."""

from __future__ import annotations

import os

import numpy as np
import pytest
import uproot

from hep_tasks.config import SimulateParams
from hep_tasks.datasets import DatasetStore
from hep_tasks.simulate import stage as simulate

pytestmark = pytest.mark.slow


def test_simulate_writes_versioned_files_and_a_rerun_is_a_no_op(spark, tmp_path):
    store = DatasetStore(str(tmp_path / "data"))
    params = SimulateParams.from_values({"processes": "ttbar,wjets", "events_per_file": 6, "files_per_process": 2}, env={})
    result = simulate.run(spark, store, params)
    manifest = store.read_manifest("simulate", result["version"])
    assert store.latest("simulate") == result["version"] and manifest["quality"]["status"] == "passed"
    assert manifest["counts"] == {"total": 24, "ttbar": 12, "wjets": 12}
    for process in ("ttbar", "wjets"):
        info = manifest["processes"][process]
        assert info["files"] == 2 and info["accepted"] == 12 and info["generated"] >= 12
        assert 0 < info["filter_efficiency"] <= 1 and info["sigma_pb"] > 0
        assert len(set(info["seeds"])) == 2
    paths = [store.path("simulate", result["version"], f["path"]) for f in manifest["files"]]
    assert [os.path.basename(p) for p in paths] == ["ttbar_0000.root", "ttbar_0001.root", "wjets_0000.root", "wjets_0001.root"]
    first, second = (uproot.open(p)["Delphes"]["EFlowTrack.PT"].array(library="np") for p in paths[:2])
    assert not all(len(a) == len(b) and np.array_equal(a, b) for a, b in zip(first, second)), "files share events"

    mtimes = [os.path.getmtime(p) for p in paths]
    again = simulate.run(spark, store, params)
    assert again == result
    assert [os.path.getmtime(p) for p in paths] == mtimes  # nothing was regenerated

    changed = simulate.run(spark, store, SimulateParams.from_values({"processes": "ttbar", "events_per_file": 3, "files_per_process": 1}, env={}))
    assert changed["version"] != result["version"] and store.latest("simulate") == changed["version"]


def test_file_seeds_are_stable_and_distinct():
    seeds = {simulate.file_seed(7, p, i) for p in ("ttbar", "wjets", "qcd") for i in range(100)}
    assert len(seeds) == 300 and all(1 <= s <= simulate.MAX_PYTHIA_SEED for s in seeds)
    assert simulate.file_seed(7, "qcd", 3) == simulate.file_seed(7, "qcd", 3)


def test_qcd_decay_trials_and_weights_are_in_the_manifest(spark, tmp_path):
    store = DatasetStore(str(tmp_path / "data"))
    values = {"processes": "qcd", "events_per_file": 3, "files_per_process": 1, "qcd_redecays": 20}
    result = simulate.run(spark, store, SimulateParams.from_values(values, env={}))
    manifest = store.read_manifest("simulate", result["version"])
    assert manifest["parameters"]["qcd_redecays"] == 20 and manifest["counts"] == {"total": 3, "qcd": 3}
    qcd = manifest["processes"]["qcd"]
    assert (qcd["redecays"], qcd["nominal_event_weight"], qcd["accepted"]) == (20, 0.05, 3)
    assert 3 * 0.05 <= qcd["event_weight_sum"] <= 3 and qcd["mean_event_weight"] == qcd["event_weight_sum"] / 3
    assert qcd["weighted_efficiency"] == qcd["event_weight_sum"] / qcd["generated"] <= qcd["filter_efficiency"]
    assert qcd["accepted_sigma_pb"] == pytest.approx(qcd["sigma_pb"] * qcd["weighted_efficiency"])
    assert 0 <= qcd["multi_accepted"] <= 3
