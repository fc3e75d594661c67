"""Files written by ``simulate_file``, read back with plain uproot: names, types, physical values,
the lepton guarantee, sorting, tt̄ vs W+jets, and the returned statistics."""

from __future__ import annotations

import json
import math

import awkward as ak
import numpy as np
import pytest
import uproot

from hep_tasks.simulate import SimulationStats, simulate_file

#: ARCHITECTURE §3 collections and fields, with the numpy dtype each branch must have.
SCHEMA = {
    "EFlowTrack": {"PT": "f4", "Eta": "f4", "Phi": "f4", "PID": "i4", "Charge": "i4", "X": "f4", "Y": "f4", "Z": "f4"},
    "EFlowPhoton": {"ET": "f4", "Eta": "f4", "Phi": "f4"},
    "EFlowNeutralHadron": {"ET": "f4", "Eta": "f4", "Phi": "f4"},
    "Electron": {"PT": "f4", "Eta": "f4", "Phi": "f4", "Charge": "i4"},
    "MuonTight": {"PT": "f4", "Eta": "f4", "Phi": "f4", "Charge": "i4"},
    "MissingET": {"MET": "f4", "Phi": "f4"},
    "Jet": {"PT": "f4", "Eta": "f4", "Phi": "f4", "BTag": "i4"},
}
N_EVENTS = {"ttbar": 40, "wjets": 40, "qcd": 10}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """process -> (stats, arrays of the file) for one small file per process."""
    directory = tmp_path_factory.mktemp("simulate")
    out = {}
    for process, n in N_EVENTS.items():
        path = directory / f"{process}.root"
        stats = simulate_file(process, n, seed=11, path=str(path))
        with uproot.open(path) as f:
            tree = f["Delphes"]
            out[process] = (stats, tree.arrays(library="ak"), {k: tree[k].interpretation for k in tree.keys()})
    return out


def _collection(arrays: ak.Array, name: str) -> ak.Array:
    return ak.zip({field: arrays[f"{name}.{field}"] for field in SCHEMA[name]})


@pytest.mark.parametrize("process", list(N_EVENTS))
def test_every_collection_and_field_has_its_delphes_branch_and_type(simulated, process):
    stats, arrays, interpretations = simulated[process]
    assert len(arrays) == N_EVENTS[process] == stats.accepted
    for name, fields in SCHEMA.items():
        assert f"{name}_size" in interpretations, f"missing counter {name}_size"
        for field, dtype in fields.items():
            branch = f"{name}.{field}"
            assert branch in interpretations, f"missing branch {branch}"
            assert ak.flatten(arrays[branch]).to_numpy().dtype == np.dtype(dtype), branch
        assert ak.all(arrays[f"{name}_size"] == ak.num(arrays[f"{name}.{next(iter(fields))}"]))


@pytest.mark.parametrize("process", list(N_EVENTS))
def test_values_are_physical(simulated, process):
    _, arrays, _ = simulated[process]
    eta_max = {"EFlowTrack": 2.5, "Electron": 2.5, "MuonTight": 2.5, "EFlowPhoton": 3.0, "EFlowNeutralHadron": 5.0, "Jet": 6.0}
    for name, fields in SCHEMA.items():
        for field in fields:
            values = ak.flatten(arrays[f"{name}.{field}"]).to_numpy()
            assert np.all(np.isfinite(values)), f"{name}.{field} has NaN/inf"
        pt_field = "ET" if "ET" in fields else "MET" if name == "MissingET" else "PT"
        pts = ak.flatten(arrays[f"{name}.{pt_field}"]).to_numpy()
        assert np.all(pts >= 0) if name == "MissingET" else np.all(pts > 0), name
        phi = ak.flatten(arrays[f"{name}.Phi"]).to_numpy()
        assert np.all(np.abs(phi) <= np.pi), name
        if name in eta_max:
            assert np.all(np.abs(ak.flatten(arrays[f"{name}.Eta"]).to_numpy()) < eta_max[name]), name
    assert ak.all(arrays["MissingET_size"] == 1)
    assert ak.all(ak.flatten(arrays["Jet.PT"]) > 20)
    assert set(np.unique(ak.flatten(arrays["Jet.BTag"]).to_numpy())) <= {0, 1}
    for name in ("Electron", "MuonTight"):
        assert set(np.unique(ak.flatten(arrays[f"{name}.Charge"]).to_numpy())) <= {-1, 1}
    assert np.all(ak.flatten(arrays["EFlowTrack.PID"]).to_numpy() != 0)


@pytest.mark.parametrize("process", list(N_EVENTS))
def test_track_charge_is_the_electric_charge(simulated, process):
    _, arrays, _ = simulated[process]
    pid = ak.flatten(arrays["EFlowTrack.PID"]).to_numpy()
    charge = ak.flatten(arrays["EFlowTrack.Charge"]).to_numpy()
    assert set(np.unique(charge)) <= {-1, 1}
    lepton = np.isin(np.abs(pid), (11, 13))
    assert lepton.any() and np.array_equal(charge[lepton], -np.sign(pid[lepton]))  # e-, mu- have positive ids
    common = np.isin(np.abs(pid), (211, 321, 2212))
    assert np.array_equal(charge[common], np.sign(pid[common]))


@pytest.mark.parametrize("process", list(N_EVENTS))
def test_collections_are_sorted_by_decreasing_pt(simulated, process):
    _, arrays, _ = simulated[process]
    for name, fields in SCHEMA.items():
        pt = arrays[f"{name}.{'ET' if 'ET' in fields else 'MET' if name == 'MissingET' else 'PT'}"]
        assert ak.all(ak.all(pt[:, 1:] <= pt[:, :-1], axis=1)), name


@pytest.mark.parametrize("process", list(N_EVENTS))
def test_every_event_has_a_lepton_above_23_gev_that_is_also_a_track(simulated, process):
    _, arrays, _ = simulated[process]
    tracks = _collection(arrays, "EFlowTrack")
    leading = ak.max(ak.concatenate([arrays["Electron.PT"], arrays["MuonTight.PT"]], axis=1), axis=1)
    assert ak.all(leading > 23)
    for name, code in (("Electron", 11), ("MuonTight", 13)):
        leptons = _collection(arrays, name)
        pairs = ak.cartesian({"lep": leptons, "trk": tracks}, nested=True)
        dphi = (pairs.lep.Phi - pairs.trk.Phi + np.pi) % (2 * np.pi) - np.pi
        match = (np.hypot(pairs.lep.Eta - pairs.trk.Eta, dphi) < 1e-4) & (abs(pairs.trk.PID) == code)
        assert ak.all(ak.any(match, axis=2)), f"a {name} without its track"
        # Same kinematics as the track, and the charge of the PDG id (e-, mu- have positive ids).
        assert ak.all(ak.any(match & (pairs.lep.PT == pairs.trk.PT) & (pairs.lep.Charge == -np.sign(pairs.trk.PID)), axis=2))


def test_ttbar_has_more_jets_and_btags_than_wjets(simulated):
    def means(process):
        arrays = simulated[process][1]
        return ak.mean(arrays["Jet_size"]), ak.mean(ak.sum(arrays["Jet.BTag"], axis=1))

    (tt_jets, tt_b), (w_jets, w_b) = means("ttbar"), means("wjets")
    assert tt_jets > w_jets + 1.5
    assert tt_b > w_b + 0.5


@pytest.mark.parametrize("process", list(N_EVENTS))
def test_stats_are_consistent(simulated, process):
    stats, _, _ = simulated[process]
    assert isinstance(stats, SimulationStats)
    assert stats.process == process and stats.seed == 11
    assert stats.generated >= stats.passed_generator_filter >= stats.accepted == N_EVENTS[process]
    assert 0 < stats.filter_efficiency <= 1
    assert math.isclose(stats.filter_efficiency, stats.accepted / stats.generated)
    assert 0 < stats.prefilter_efficiency <= 1
    assert stats.sigma_pb > 0 and stats.sigma_err_pb >= 0
    assert math.isclose(stats.accepted_sigma_pb, stats.sigma_pb * stats.filter_efficiency)
    assert stats.wall_seconds > 0
    record = json.loads(json.dumps(stats.to_dict()))
    assert record["accepted"] == N_EVENTS[process] and record["process"] == process


def test_qcd_is_heavy_flavour_with_a_low_filter_efficiency(simulated):
    stats, arrays, _ = simulated["qcd"]
    assert stats.prefilter_efficiency == 1.0
    assert stats.filter_efficiency < simulated["wjets"][0].filter_efficiency
    # b/c dijets: most events have a b-tagged jet.
    assert ak.mean(ak.sum(arrays["Jet.BTag"], axis=1) > 0) > 0.3


def _features(arrays: ak.Array):
    physics = pytest.importorskip("hep_tasks.physics")
    events = {name: ak.zip({f: arrays[f"{name}.{f}"] for f in fields}) for name, fields in physics.REQUIRED_FIELDS.items()}
    return physics.compute_features(events)


@pytest.mark.parametrize("process", list(N_EVENTS))
def test_every_event_passes_the_ingest_lepton_preselection(simulated, process):
    cutflow = _features(simulated[process][1]).cutflow
    assert np.all(cutflow["lepton_pt23"])


def test_isolated_leptons_only_writes_events_that_pass_the_ingest_isolation(tmp_path):
    from hep_tasks.simulate import SimulationSettings

    settings = SimulationSettings(isolated_leptons_only=True)
    stats = simulate_file("qcd", 2, seed=5, path=tmp_path / "qcd_iso.root", settings=settings)
    with uproot.open(tmp_path / "qcd_iso.root") as f:
        arrays = f["Delphes"].arrays(library="ak")
    assert stats.accepted == len(arrays) == 2
    assert stats.filter_efficiency < 0.02  # ~11 % of the ~4 % accepted QCD events are isolated
    assert np.all(_features(arrays).cutflow["isolated_lepton"])
