"""The detector response, jets, b-tagging and the writer on constructed particles (no Pythia)."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

from hep_tasks.simulate import DetectorSettings
from hep_tasks.simulate.detector import Detector
from hep_tasks.simulate.flat import FlatObjects, pairs_within_events
from hep_tasks.simulate.jets import btag, cluster_jets, jet_flavour
from hep_tasks.simulate.rootfile import DELPHES_SCHEMA, DelphesWriter
from hep_tasks.simulate.truth import TruthBatch, eta_phi, generator_filter, hadron_flavour

#: a detector without inefficiencies, so that constructed events give a known answer.
PERFECT = DetectorSettings(
    track_efficiency_hadron=(1.0, 1.0, 1.0, 1.0),
    track_efficiency_electron=(1.0, 1.0, 1.0, 1.0),
    track_efficiency_muon=(1.0, 1.0, 1.0, 1.0),
    electron_id_efficiency=(1.0, 1.0),
    muon_id_efficiency=(1.0, 1.0),
)


def particles(rows: list[tuple[int, int, float, float, float, int]]) -> TruthBatch:
    """Truth from rows (event, pid, pt [GeV], eta, phi [rad], charge), n_events = max event + 1."""
    event, pid, pt, eta, phi, charge = (np.array(c) for c in zip(*rows))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    zeros = np.zeros(len(rows))
    columns = {
        "pid": pid, "charge": charge.astype(np.int8), "px": px, "py": py, "pz": pz, "e": pt * np.cosh(eta),
        "pt": pt, "eta": eta, "phi": phi, "x": zeros, "y": zeros, "z": zeros + 1.0,
    }
    heavy = FlatObjects(np.zeros(0, dtype=np.int64), {"flavour": np.zeros(0, np.int8), "eta": zeros[:0], "phi": zeros[:0]})
    return TruthBatch(int(event.max()) + 1, FlatObjects(event.astype(np.int64), columns), heavy)


def test_hadron_flavour_and_eta_phi():
    assert hadron_flavour(np.array([521, -511, 5122, 421, -4122, 111, 2212, 5, -5203, 21])).tolist() == [5, 5, 5, 4, 4, 0, 0, 0, 0, 0]
    pt, eta, phi = eta_phi(np.array([3.0, 0.0]), np.array([4.0, 0.0]), np.array([0.0, 7.0]))
    assert pt.tolist() == [5.0, 0.0] and eta[0] == 0.0 and eta[1] == np.inf
    assert phi[0] == pytest.approx(np.arctan2(4, 3))


def test_pairs_within_events_is_the_cartesian_product_per_event():
    i, j = pairs_within_events(np.array([0, 1, 1, 3]), np.array([1, 1, 2, 3]), 4)
    assert list(zip(i.tolist(), j.tolist())) == [(1, 0), (1, 1), (2, 0), (2, 1), (3, 3)]


def test_generator_filter_needs_a_central_hard_electron_or_muon():
    truth = particles([(0, 11, 25.0, 1.0, 0.0, -1), (1, 13, 19.0, 0.0, 0.0, -1), (2, -13, 40.0, 2.7, 0.0, 1), (3, 211, 50.0, 0.0, 0.0, 1)])
    assert generator_filter(truth, 20.0, 2.5).tolist() == [True, False, False, False]


def test_leptons_are_tracks_and_neutrals_go_to_the_calorimeter():
    truth = particles(
        [
            (0, 11, 50.0, 0.5, 1.0, -1),  # electron: track + Electron
            (0, -13, 30.0, -1.0, -2.0, 1),  # mu+: track + MuonTight, no calorimeter energy
            (0, 22, 10.0, 0.1, 0.0, 0),  # two photons in one ECAL cell -> one EFlowPhoton
            (0, 22, 5.0, 0.1001, 0.0001, 0),
            (0, 2112, 20.0, -0.3, 2.0, 0),  # neutron -> EFlowNeutralHadron
            (0, 22, 30.0, 3.5, 0.5, 0),  # forward photon -> forward calorimeter -> neutral hadron
            (0, 211, 5.0, 3.2, 0.0, 1),  # charged pion beyond the tracker -> neutral hadron
            (1, 211, 0.05, 0.0, 0.0, 1),  # too soft to be tracked or to reach the calorimeter
        ]
    )
    reco = Detector(PERFECT, np.random.default_rng(1)).reconstruct(truth)
    assert reco.n_events == 2
    assert reco.tracks.counts(2).tolist() == [2, 0]
    assert sorted(reco.tracks["PID"].tolist()) == [-13, 11]
    assert reco.electrons["Charge"].tolist() == [-1] and reco.muons["Charge"].tolist() == [1]
    electron_track = reco.tracks.select(reco.tracks["PID"] == 11)
    assert electron_track["PT"][0] == reco.electrons["PT"][0] == pytest.approx(50.0, rel=0.05)
    assert reco.electrons["Eta"][0] == electron_track["Eta"][0] == 0.5
    assert reco.photons.counts(2).tolist() == [1, 0]
    assert reco.photons["ET"][0] == pytest.approx(15.0, rel=0.2)
    assert reco.neutral_hadrons.counts(2).tolist() == [3, 0]
    assert np.all(np.abs(reco.neutral_hadrons["Eta"]) < 5.0)
    assert reco.tracks["Z"][0] == pytest.approx(1.0, abs=0.5)  # the vertex, smeared by tens of microns
    # MET balances the visible objects; an empty event has none.
    assert reco.met[1] == 0.0 and reco.met[0] > 0
    assert np.all(np.diff(reco.neutral_hadrons["ET"]) <= 0)


def test_jets_cluster_eflow_objects_and_btag_follows_the_flavour():
    rows = [(0, 211, 30.0, 0.0, 0.0, 1), (0, 211, 20.0, 0.1, 0.1, -1), (0, 211, 40.0, -1.0, 3.0, 1), (1, 2112, 15.0, 1.0, 1.0, 0)]
    truth = particles(rows)
    truth.heavy = FlatObjects(np.array([0]), {"flavour": np.array([5], np.int8), "eta": np.array([0.05]), "phi": np.array([0.05])})
    reco = Detector(PERFECT, np.random.default_rng(2)).reconstruct(truth)
    jets = cluster_jets(reco, PERFECT)
    assert jets.counts(2).tolist() == [2, 0]  # the neutron's 15 GeV jet is below 20 GeV
    assert jets["PT"][0] == pytest.approx(50.0, rel=0.05) and jets["PT"][1] == pytest.approx(40.0, rel=0.05)
    assert jet_flavour(jets, truth.heavy, 2, 0.4).tolist() == [5, 0]
    always = DetectorSettings(btag_efficiency_b=1.0, btag_mistag_light=0.0)
    assert btag(jets, truth.heavy, 2, always, np.random.default_rng(0)).tolist() == [1, 0]


def test_flat_objects_to_awkward_needs_grouped_events():
    objects = FlatObjects(np.array([1, 0]), {"PT": np.array([1.0, 2.0])})
    with pytest.raises(ValueError, match="grouped by event"):
        objects.to_awkward(2, {"PT": "float32"})
    assert objects.sorted_by("PT").to_awkward(3, {"PT": "float32"}).PT.tolist() == [[2.0], [1.0], []]


def test_writer_round_trip_and_missing_collections(tmp_path):
    events = {
        name: FlatObjects(np.array([0, 2]), {f: np.array([2.0, 1.0]) for f in fields}).to_awkward(3, fields)
        for name, fields in DELPHES_SCHEMA.items()
    }
    path = tmp_path / "out.root"
    with DelphesWriter(path) as writer:
        writer.extend(events)
        writer.extend(events)
        with pytest.raises(ValueError, match=r"missing collections Jet, MuonTight \(found: EFlowNeutralHadron"):
            writer.extend({k: v for k, v in events.items() if k not in ("Jet", "MuonTight")})
    assert writer.entries == 6 and not (tmp_path / "out.root.partial").exists()
    with uproot.open(path) as f:
        tree = f["Delphes"]
        assert tree.num_entries == 6
        assert tree["Jet_size"].array(library="np").tolist() == [1, 0, 1] * 2
        assert ak.to_list(tree["EFlowTrack.PID"].array()) == [[2], [], [1]] * 2
        assert tree["EFlowTrack.PID"].interpretation.content.from_dtype == np.dtype(">i4")


def test_an_empty_batch_gives_empty_collections():
    truth = particles([(0, 211, 10.0, 0.0, 0.0, 1)]).in_events(np.array([False]))
    reco = Detector(DetectorSettings(), np.random.default_rng(0)).reconstruct(truth)
    assert reco.n_events == 0 and reco.met.shape == (0,)
    assert len(reco.tracks) == len(reco.photons) == len(reco.neutral_hadrons) == len(reco.electrons) == 0


def test_isolation_follows_the_architecture_definition():
    from hep_tasks.simulate import SimulationSettings
    from hep_tasks.simulate.selection import accepted_events, hard_leptons, relative_isolation

    truth = particles(
        [
            (0, 11, 40.0, 0.0, 0.0, -1),  # isolated electron: 2 GeV of tracks in the cone -> 0.05
            (0, 211, 2.0, 0.1, 0.1, 1),
            (0, 211, 50.0, 1.0, 2.0, 1),  # far away
            (1, 13, 30.0, 0.0, 1.0, -1),  # muon inside a 30 GeV jet of tracks -> 1.0
            (1, 211, 20.0, 0.05, 1.05, 1),
            (1, -211, 10.0, -0.05, 0.95, -1),
            (2, 11, 15.0, 0.0, 0.0, -1),  # below 23 GeV: no lepton
        ]
    )
    reco = Detector(PERFECT, np.random.default_rng(3)).reconstruct(truth)
    leptons = hard_leptons(reco, 23.0)
    assert leptons.event.tolist() == [0, 1]
    iso = relative_isolation(leptons, reco, 0.3)
    assert iso[0] == pytest.approx(2.0 / 40.0, rel=0.1) and iso[1] == pytest.approx(1.0, rel=0.1)
    assert accepted_events(reco, SimulationSettings()).tolist() == [True, True, False]
    assert accepted_events(reco, SimulationSettings(isolated_leptons_only=True)).tolist() == [True, False, False]
