"""compute_features on small hand-built events: hand-computed values for every §3 rule."""

from __future__ import annotations

import math
from typing import Any

import awkward as ak
import numpy as np
import pytest

from hep_tasks.physics import (
    HLF_FEATURES,
    OPTIONAL_FIELDS,
    PARTICLE_FEATURES,
    REQUIRED_FIELDS,
    EventFeatures,
    compute_features,
    cutflow_counts,
    delta_phi,
    delta_r,
    four_vector,
)

H = {name: i for i, name in enumerate(HLF_FEATURES)}
P = {name: i for i, name in enumerate(PARTICLE_FEATURES)}
_INTEGER_FIELDS = {"PID", "Charge"}
_DEFAULTS = {"PID": 211, "Charge": -1, "X": 0.0, "Y": 0.0, "Z": 0.0, "BTag": 0}


# --- event builders ---------------------------------------------------------------------------
def trk(pt: float, eta: float, phi: float, pid: int = 211, **vertex: float) -> dict[str, Any]:
    return {"PT": pt, "Eta": eta, "Phi": phi, "PID": pid, **vertex}


def pho(et: float, eta: float, phi: float) -> dict[str, Any]:
    return {"ET": et, "Eta": eta, "Phi": phi}


neu = pho


def lep(pt: float, eta: float, phi: float, charge: int = -1) -> dict[str, Any]:
    return {"PT": pt, "Eta": eta, "Phi": phi, "Charge": charge}


def jet(pt: float, eta: float, btag: int = 0) -> dict[str, Any]:
    return {"PT": pt, "Eta": eta, "Phi": 0.0, "BTag": btag}


def _collection(name: str, per_event: list[list[dict[str, Any]]]) -> ak.Array:
    """Typed jagged record array (works for all-empty collections too)."""
    counts = np.array([len(ev) for ev in per_event], dtype=np.int64)
    columns = {
        field: np.array(
            [rec.get(field, _DEFAULTS.get(field)) for ev in per_event for rec in ev],
            dtype=np.int32 if field in _INTEGER_FIELDS else np.float64,
        )
        for field in REQUIRED_FIELDS[name] + _optional_fields_used(name, per_event)
    }
    return ak.unflatten(ak.zip(columns), counts)


def _optional_fields_used(name: str, per_event: list[list[dict[str, Any]]]) -> tuple[str, ...]:
    """The optional fields (``EFlowTrack.Charge``) that the records give, for every record."""
    members = [rec for ev in per_event for rec in ev]
    return tuple(f for f in OPTIONAL_FIELDS.get(name, ()) if members and all(f in rec for rec in members))


def make_events(*events: dict[str, list[dict[str, Any]]]) -> dict[str, ak.Array]:
    """One dict per event: collection name -> list of records; MissingET defaults to 0."""
    batch = {}
    for name in REQUIRED_FIELDS:
        default = [{"MET": 0.0, "Phi": 0.0}] if name == "MissingET" else []
        batch[name] = _collection(name, [ev.get(name, default) for ev in events])
    return batch


def isolated_electron_event(pt: float = 50.0, **extra: list[dict[str, Any]]) -> dict[str, Any]:
    """An electron at (η, φ) = (0, 0) with its own track, plus ``extra`` collections."""
    event = {"Electron": [lep(pt, 0.0, 0.0)], "EFlowTrack": [trk(pt, 0.0, 0.0, pid=11)]}
    for name, members in extra.items():
        event[name] = event.get(name, []) + members
    return event


def rows(features: EventFeatures, k: int = 0) -> np.ndarray:
    return features.particles[features.particle_offsets[k] : features.particle_offsets[k + 1]]


def hlf_of(features: EventFeatures, *names: str, k: int = 0) -> list[float]:
    return features.hlf[k, [H[n] for n in names]].tolist()


def cols(row: np.ndarray, *names: str) -> list[float]:
    return row[[P[n] for n in names]].tolist()


# --- input checks and shapes -------------------------------------------------------------------
def test_missing_collections_are_named_with_what_exists() -> None:
    batch = make_events(isolated_electron_event())
    del batch["Electron"], batch["MuonTight"]
    expected = r"missing collections Electron, MuonTight \(found: EFlowTrack, .*Jet"
    with pytest.raises(ValueError, match=expected):
        compute_features(batch)


def test_missing_field_is_named_with_fields_that_exist() -> None:
    batch = make_events(isolated_electron_event())
    batch["Jet"] = ak.zip({"PT": batch["Jet"].PT, "Eta": batch["Jet"].Eta, "Phi": batch["Jet"].Phi})
    with pytest.raises(ValueError, match=r"Jet misses fields BTag \(found: PT, Eta, Phi\)"):
        compute_features(batch)


def test_collections_must_agree_on_event_count() -> None:
    batch = make_events(isolated_electron_event(), isolated_electron_event())
    batch["Jet"] = batch["Jet"][:1]
    with pytest.raises(ValueError, match=r"disagree on the number of events: .*Jet 1"):
        compute_features(batch)


def test_empty_batch() -> None:
    out = compute_features(make_events())
    assert list(out.cutflow) == ["valid_values", "lepton_pt23", "isolated_lepton"]
    assert all(m.shape == (0,) and m.dtype == bool for m in out.cutflow.values())
    assert out.selected.shape == (0,)
    assert out.hlf.shape == (0, 14) and out.hlf.dtype == np.float64
    assert out.particles.shape == (0, 19) and out.particles.dtype == np.float64
    assert out.particle_offsets.tolist() == [0] and out.particle_offsets.dtype == np.int64


def test_plain_ak_array_records_and_float32() -> None:
    """The reader's layout: ak.Array of records, float32 floats, integer PID and Charge."""
    batch = {
        "EFlowTrack": ak.Array([[{"PT": 41.3, "Eta": 0.7, "Phi": -1.3, "PID": -13,
                                  "X": 0.0, "Y": 0.0, "Z": 0.0}]]),
        "EFlowPhoton": ak.Array([[{"ET": 5.0, "Eta": -2.0, "Phi": 1.0}]]),
        "EFlowNeutralHadron": ak.Array([[{"ET": 6.0, "Eta": 2.0, "Phi": 1.0}]]),
        "Electron": ak.Array([[{"PT": 12.0, "Eta": 0.0, "Phi": 0.0, "Charge": 1}]]),
        "MuonTight": ak.Array([[{"PT": 41.3, "Eta": 0.7, "Phi": -1.3, "Charge": 1}]]),
        "MissingET": ak.Array([[{"MET": 20.0, "Phi": 0.5}]]),
        "Jet": ak.Array([[{"PT": 45.0, "Eta": 1.0, "Phi": 2.0, "BTag": 1}]]),
    }  # fmt: skip
    for name, array in batch.items():
        batch[name] = ak.zip({
            f: array[f] if f in _INTEGER_FIELDS else ak.values_astype(array[f], np.float32)
            for f in ak.fields(array)
        })  # fmt: skip
    assert str(ak.type(batch["MuonTight"].PT)) == "1 * var * float32"
    out = compute_features(batch)
    assert out.selected.tolist() == [True]
    assert rows(out).shape == (3, 19)  # muon (its float32 track skipped), photon, neutral hadron
    assert out.hlf[0, H["LepIsEle"]] == 0.0 and out.hlf[0, H["LepIsoCh"]] == pytest.approx(0.0)
    assert out.hlf[0, H["LepPT"]] == pytest.approx(41.3, rel=1e-6)
    assert hlf_of(out, "HT", "nJets", "nBjets", "MET") == [45.0, 1.0, 1.0, 20.0]


# --- cut-flow and pre-selection ---------------------------------------------------------------
def test_cutflow_masks_are_cumulative_and_ordered() -> None:
    no_hard_lepton = {"Electron": [lep(23.0, 0.0, 0.0)], "MuonTight": [lep(10.0, 1.0, 1.0)]}
    not_isolated = {  # IsoCh = (30 + 20) / 30 - 1 = 0.667
        "MuonTight": [lep(30.0, 0.0, 0.0)],
        "EFlowTrack": [trk(30.0, 0.0, 0.0, pid=13), trk(20.0, 0.1, 0.0)],
    }
    isolated = {"MuonTight": [lep(30.0, 0.0, 0.0)], "EFlowTrack": [trk(30.0, 0.0, 0.0, pid=13)]}
    out = compute_features(make_events(no_hard_lepton, not_isolated, isolated, {}))
    assert list(out.cutflow) == ["valid_values", "lepton_pt23", "isolated_lepton"]
    assert out.cutflow["valid_values"].tolist() == [True, True, True, True]
    assert out.cutflow["lepton_pt23"].tolist() == [False, True, True, False]
    assert out.cutflow["isolated_lepton"].tolist() == [False, False, True, False]
    assert np.array_equal(out.selected, out.cutflow["isolated_lepton"])
    assert cutflow_counts(out.cutflow) == {"valid_values": 4, "lepton_pt23": 2, "isolated_lepton": 1}
    assert out.hlf.shape == (1, 14) and out.particle_offsets.tolist() == [0, 1]
    assert out.value_problems == {}


@pytest.mark.parametrize(
    ("where", "value", "problem"),
    [
        (("MuonTight", "PT"), float("nan"), "MuonTight.PT NaN/inf"),
        (("EFlowTrack", "Eta"), float("inf"), "EFlowTrack.Eta NaN/inf"),
        (("EFlowTrack", "PT"), -5.0, "EFlowTrack.PT negative"),
        (("EFlowPhoton", "Eta"), -10.5, "EFlowPhoton.Eta beyond |10|"),
        (("MissingET", "MET"), -1.0, "MissingET.MET negative"),
        (("EFlowTrack", "Z"), float("-inf"), "EFlowTrack.Z NaN/inf"),
    ],
)
def test_an_event_with_an_invalid_value_is_rejected_and_the_others_kept(where, value, problem) -> None:
    """Two isolated-muon events; one value of the second is broken: only that event goes, named."""
    collection, field = where
    events = [
        {"MuonTight": [lep(30.0, 0.0, 0.0)], "EFlowTrack": [trk(30.0, 0.0, 0.0, pid=13)], "EFlowPhoton": [pho(3.0, 1.0, 1.0)]}
        for _ in range(2)
    ]  # fmt: skip
    clean = compute_features(make_events(*events))
    assert clean.selected.tolist() == [True, True] and clean.value_problems == {}
    broken = events[1]
    if collection == "MissingET":
        broken["MissingET"] = [{"MET": value, "Phi": 0.0}]
    else:
        broken[collection][0] = {**broken[collection][0], field: value}
    out = compute_features(make_events(*events))
    assert out.cutflow["valid_values"].tolist() == [True, False]
    assert out.selected.tolist() == [True, False] and out.value_problems == {problem: 1}
    # the kept event's features are those it had in the clean batch
    assert np.array_equal(out.hlf, clean.hlf[:1]) and np.array_equal(out.particles, rows(clean, 0))


def test_object_cuts_are_strict() -> None:
    event = isolated_electron_event(
        EFlowTrack=[trk(0.5, 2.0, 1.0), trk(0.51, 2.0, 2.0)],
        EFlowPhoton=[pho(1.0, -2.0, 1.0), pho(1.01, -2.0, 2.0)],
        EFlowNeutralHadron=[neu(1.0, -2.0, -1.0), neu(1.01, -2.0, -2.0)],
    )
    out = compute_features(make_events(event))
    r = rows(out)
    assert r[:, P["PT"]].tolist() == [50.0, 0.51, 1.01, 1.01]
    assert r[:, P["isChHad"]].tolist() == [0, 1, 0, 0]
    assert r[:, P["isGamma"]].tolist() == [0, 0, 1, 0]
    assert r[:, P["isNeuHad"]].tolist() == [0, 0, 0, 1]


# --- isolation --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def iso_event() -> EventFeatures:
    """Electron 50 GeV at (0, 0) with its track; hand-placed neighbours (ΔR in comments)."""
    event = isolated_electron_event(
        EFlowTrack=[
            trk(5.0, 0.1, 0.1, pid=-211, X=0.01, Y=-0.02, Z=3.5),  # ΔR(e) 0.141
            trk(7.0, 0.5, 0.0, pid=321),  # ΔR(e) 0.5, outside
        ],
        EFlowPhoton=[pho(2.0, 0.0, 0.2)],  # ΔR(e) 0.2
        EFlowNeutralHadron=[neu(3.0, -0.2, 0.0), neu(4.0, 0.0, 0.35)],  # ΔR(e) 0.2, 0.35
    )
    return compute_features(make_events(event))


def test_lepton_isolation_subtracts_its_own_track(iso_event: EventFeatures) -> None:
    lepton = rows(iso_event)[0]
    assert lepton[P["IsoCh"]] == pytest.approx((50.0 + 5.0) / 50.0 - 1.0)
    assert lepton[P["IsoGamma"]] == pytest.approx(2.0 / 50.0)
    assert lepton[P["IsoNeu"]] == pytest.approx(3.0 / 50.0)
    isos = hlf_of(iso_event, "LepIsoCh", "LepIsoGamma", "LepIsoNeu")
    assert isos == pytest.approx([0.1, 0.04, 0.06])


def test_track_isolation_subtracts_itself(iso_event: EventFeatures) -> None:
    track = rows(iso_event)[1]  # the 5 GeV track at (0.1, 0.1)
    assert track[P["PT"]] == 5.0
    assert track[P["IsoCh"]] == pytest.approx((5.0 + 50.0) / 5.0 - 1.0)  # 7 GeV track: ΔR 0.41
    assert track[P["IsoGamma"]] == pytest.approx(2.0 / 5.0)  # photon ΔR 0.141
    assert track[P["IsoNeu"]] == pytest.approx(4.0 / 5.0)  # ΔR 0.316 (out) and 0.269 (in)


def test_photon_and_neutral_hadron_isolation_include_themselves(iso_event: EventFeatures) -> None:
    photon, neutral_1, neutral_2 = rows(iso_event)[3:]
    assert photon[P["IsoGamma"]] == pytest.approx(1.0)  # only itself, no subtraction
    assert photon[P["IsoCh"]] == pytest.approx((50.0 + 5.0) / 2.0)  # no subtraction either
    assert photon[P["IsoNeu"]] == pytest.approx((3.0 + 4.0) / 2.0)  # ΔR 0.283 and 0.15
    assert neutral_1[P["IsoNeu"]] == pytest.approx(1.0)  # the other one is at ΔR 0.403
    assert neutral_1[P["IsoCh"]] == pytest.approx(50.0 / 3.0)  # 5 GeV track at ΔR 0.316: out
    assert neutral_2[P["IsoNeu"]] == pytest.approx(1.0)
    assert neutral_2[P["IsoGamma"]] == pytest.approx(2.0 / 4.0)


def test_particle_rows_layout(iso_event: EventFeatures) -> None:
    r = rows(iso_event)
    assert iso_event.particle_offsets.tolist() == [0, 6]
    lepton, track, far_track = r[0], r[1], r[2]
    assert cols(lepton, "isEle", "isMu", "Charge", "vtxX", "vtxY", "vtxZ") == [1, 0, -1, 0, 0, 0]
    assert cols(lepton, "E", "Px", "Py", "Pz") == pytest.approx([50.0, 50.0, 0.0, 0.0])
    assert cols(track, "vtxX", "vtxY", "vtxZ") == [0.01, -0.02, 3.5]
    assert track[P["Charge"]] == -1.0 and far_track[P["Charge"]] == 1.0  # PID -211, 321
    assert track[P["isChHad"]] == 1.0 and track[P["isEle"]] == 0.0
    four = [5.0 * math.cosh(0.1), 5.0 * math.cos(0.1), 5.0 * math.sin(0.1), 5.0 * math.sinh(0.1)]
    assert cols(track, "E", "Px", "Py", "Pz") == pytest.approx(four)
    photon = r[3]
    assert cols(photon, "PT", "isGamma", "Charge", "vtxZ") == [2.0, 1.0, 0.0, 0.0]
    assert r[4:, P["isNeuHad"]].tolist() == [1.0, 1.0] and r[4:, P["PT"]].tolist() == [3.0, 4.0]
    assert r[:, P["isChHad"]:P["isMu"] + 1].sum(axis=1).tolist() == [1.0] * 6  # one type each


# --- track charge ------------------------------------------------------------------------------
def _track_rows(features: EventFeatures) -> np.ndarray:
    r = rows(features)
    return r[r[:, P["isChHad"]] == 1]


def test_track_charge_from_pid_without_a_charge_field() -> None:
    # e-, mu+, pi+, K- tracks (not the lepton's own, which is skipped): charge -1, +1, +1, -1.
    event = isolated_electron_event(
        EFlowTrack=[trk(5.0, 2.0, 1.0, pid=11), trk(6.0, -2.0, 1.0, pid=-13), trk(7.0, 2.0, -2.0, pid=211), trk(8.0, -2.0, -2.0, pid=-321)]
    )
    batch = make_events(event)
    assert "Charge" not in ak.fields(batch["EFlowTrack"])
    tracks = _track_rows(compute_features(batch))
    assert tracks[:, P["PT"]].tolist() == [5.0, 6.0, 7.0, 8.0]
    assert tracks[:, P["Charge"]].tolist() == [-1.0, 1.0, 1.0, -1.0]  # the 2019 code's sign(PID): [1, -1, 1, -1]


def test_track_charge_field_is_used_when_present() -> None:
    event = isolated_electron_event(EFlowTrack=[trk(5.0, 2.0, 1.0, pid=11), trk(7.0, 2.0, -2.0, pid=211)])
    batch = make_events(event)
    # Values the PID rule would not give, to show that the field wins (lepton track, e-, pi+).
    charges = ak.unflatten(np.array([-1, 1, -1], dtype=np.int32), [3])
    batch["EFlowTrack"] = ak.with_field(batch["EFlowTrack"], charges, "Charge")
    tracks = _track_rows(compute_features(batch))
    assert tracks[:, P["Charge"]].tolist() == [1.0, -1.0]


def test_isolation_cone_wraps_phi() -> None:
    event = {  # track at φ = -3.1 is ΔR 0.083 from a muon at φ = 3.1
        "MuonTight": [lep(40.0, 0.0, 3.1)],
        "EFlowTrack": [trk(40.0, 0.0, 3.1, pid=13), trk(4.0, 0.0, -3.1)],
    }
    out = compute_features(make_events(event))
    assert out.hlf[0, H["LepIsoCh"]] == pytest.approx(0.1)


# --- the lepton's own track and the caps ------------------------------------------------------
def test_lepton_track_skipped_but_near_track_kept() -> None:
    event = isolated_electron_event(EFlowTrack=[trk(1.0, 2.0, 0.0), trk(1.5, 0.0002, 0.0)])
    r = rows(compute_features(make_events(event)))
    # 50 GeV lepton track (ΔR 0) is skipped; the 1.5 GeV track at ΔR 2e-4 stays
    assert r[r[:, P["isChHad"]] == 1, P["PT"]].tolist() == [1.0, 1.5]


def test_caps_keep_collection_order_and_isolate_against_uncapped() -> None:
    tracks = [trk(1.0 + 0.001 * i, 2.0 + 0.002 * i, -2.0 + 0.004 * i) for i in range(459)]
    photons = [pho(2.0 + i, -2.5, -3.0 + 0.035 * i) for i in range(160)]
    photons[155] = pho(100.0, -2.5, -3.0 + 0.05)  # beyond the cap, inside photon 0's cone
    neutrals = [neu(1.5 + i, 3.0, -3.0 + 0.028 * i) for i in range(210)]
    event = isolated_electron_event(
        EFlowTrack=tracks, EFlowPhoton=photons, EFlowNeutralHadron=neutrals
    )  # the lepton's track comes first, then 459 others
    r = rows(compute_features(make_events(event)))
    assert r.shape == (801, 19)
    assert r[1:451, P["isChHad"]].all()
    assert r[1:451, P["PT"]].tolist() == [t["PT"] for t in tracks[:450]]
    assert r[451:601, P["isGamma"]].all()
    assert r[451:601, P["PT"]].tolist() == [p["ET"] for p in photons[:150]]
    assert r[601:, P["isNeuHad"]].all()
    assert r[601:, P["PT"]].tolist() == [n["ET"] for n in neutrals[:200]]
    phi_0 = photons[0]["Phi"]
    in_cone = [p["ET"] for p in photons if abs(delta_phi(p["Phi"], phi_0)) < 0.3]
    assert len(in_cone) == 10 and 100.0 in in_cone  # photons 0-8 and the uncapped 155
    assert r[451, P["IsoGamma"]] == pytest.approx(sum(in_cone) / photons[0]["ET"])


def test_lepton_track_skip_happens_before_track_cap() -> None:
    others = [trk(1.0 + 0.001 * i, 2.0, -3.0 + 0.0125 * i) for i in range(450)]
    event = isolated_electron_event()
    event["EFlowTrack"] = others[:10] + event["EFlowTrack"] + others[10:]  # lepton track 11th
    r = rows(compute_features(make_events(event)))
    assert r.shape == (451, 19)
    assert r[1:, P["PT"]] == pytest.approx([t["PT"] for t in others])


# --- choice of the isolated lepton ------------------------------------------------------------
@pytest.mark.parametrize(("e_pt", "mu_pt", "is_ele"), [(30.0, 40.0, 0.0), (45.0, 40.0, 1.0)])
def test_higher_pt_lepton_wins(e_pt: float, mu_pt: float, is_ele: float) -> None:
    event = {
        "Electron": [lep(e_pt, 1.0, 1.0, charge=-1)],
        "MuonTight": [lep(mu_pt, -1.0, -1.0, charge=1)],
        "EFlowTrack": [trk(e_pt, 1.0, 1.0, pid=11), trk(mu_pt, -1.0, -1.0, pid=-13)],
    }
    out = compute_features(make_events(event))
    hlf, lepton = out.hlf[0], rows(out)[0]
    assert hlf[H["LepIsEle"]] == is_ele and hlf[H["LepPT"]] == max(e_pt, mu_pt)
    assert hlf[H["LepCharge"]] == (-1.0 if is_ele else 1.0)
    assert (lepton[P["isEle"]], lepton[P["isMu"]]) == (is_ele, 1.0 - is_ele)
    assert rows(out).shape == (2, 19)  # only the chosen lepton's track is skipped


def test_first_isolated_electron_in_collection_order() -> None:
    event = {
        "Electron": [lep(30.0, 1.0, 1.0, charge=1), lep(60.0, -1.0, -1.0)],
        "EFlowTrack": [trk(30.0, 1.0, 1.0, pid=-11), trk(60.0, -1.0, -1.0, pid=11)],
    }
    hlf = compute_features(make_events(event)).hlf[0]
    assert (hlf[H["LepPT"]], hlf[H["LepCharge"]], hlf[H["LepIsEle"]]) == (30.0, 1.0, 1.0)


def test_non_isolated_first_electron_falls_through_to_second() -> None:
    event = {
        "Electron": [
            lep(40.0, 0.0, 0.0),  # IsoCh = (40 + 30) / 40 - 1 = 0.75: not isolated
            lep(20.0, 1.0, 2.0),  # isolated but PT < 23: not pre-selected
            lep(35.0, 1.5, -2.0, charge=1),
        ],
        "EFlowTrack": [
            trk(40.0, 0.0, 0.0, pid=11),
            trk(30.0, 0.1, 0.0),
            trk(35.0, 1.5, -2.0, pid=-11),
        ],
    }
    out = compute_features(make_events(event))
    assert hlf_of(out, "LepPT", "LepEta", "LepPhi", "LepCharge") == [35.0, 1.5, -2.0, 1.0]


def test_isolation_threshold_sums_all_three() -> None:
    def event(neutral_et: float) -> dict[str, Any]:
        return isolated_electron_event(
            100.0,
            EFlowTrack=[trk(20.0, 0.1, 0.0)],  # IsoCh 0.2
            EFlowPhoton=[pho(15.0, 0.0, 0.1)],  # IsoGamma 0.15
            EFlowNeutralHadron=[neu(neutral_et, -0.1, 0.0)],
        )

    out = compute_features(make_events(event(11.0), event(9.0), event(0.5)))
    assert out.selected.tolist() == [False, True, True]  # 0.46, 0.44, 0.35 (ET 0.5 cut away)
    isos = hlf_of(out, "LepIsoCh", "LepIsoGamma", "LepIsoNeu")
    assert isos == pytest.approx([0.2, 0.15, 0.09])


# --- high-level features ----------------------------------------------------------------------
def test_mt_with_square_root_and_met() -> None:
    event = {
        "MuonTight": [lep(40.0, 0.0, math.pi / 2)],
        "EFlowTrack": [trk(40.0, 0.0, math.pi / 2, pid=13)],
        "MissingET": [{"MET": 40.0, "Phi": 0.0}],
    }
    hlf = compute_features(make_events(event)).hlf[0]
    assert hlf[H["MT"]] == pytest.approx(40.0 * math.sqrt(2.0))  # not 3200 (no-sqrt 2019 bug)
    assert (hlf[H["MET"]], hlf[H["PhiMET"]]) == (40.0, 0.0)


def test_ht_njets_nbjets_apply_jet_cuts() -> None:
    jets = [
        jet(50.0, 0.0, btag=1),
        jet(40.0, 2.5),
        jet(35.0, -2.7, btag=1),  # |η| > 2.6
        jet(29.0, 0.0, btag=1),  # PT < 30
        jet(30.0, 0.0, btag=1),  # PT = 30 (strict cut)
        jet(100.0, -2.59, btag=2),
    ]
    batch = make_events(isolated_electron_event(Jet=jets), isolated_electron_event())
    out = compute_features(batch)
    assert out.hlf[:, H["HT"]].tolist() == [190.0, 0.0]
    assert out.hlf[:, H["nJets"]].tolist() == [3.0, 0.0]
    assert out.hlf[:, H["nBjets"]].tolist() == [2.0, 0.0]


def test_batch_rows_line_up_with_selected_events() -> None:
    events = []
    for k in range(6):
        if k % 3 == 1:
            events.append({"Electron": [lep(10.0, 0.0, 0.0)]})  # rejected
            continue
        events.append(isolated_electron_event(
            30.0 + k,
            EFlowPhoton=[pho(2.0, 2.0, 0.0)] * k,
            MissingET=[{"MET": float(k), "Phi": 0.0}],
        ))  # fmt: skip
    out = compute_features(make_events(*events))
    kept = [k for k in range(6) if k % 3 != 1]
    assert out.selected.tolist() == [k in kept for k in range(6)]
    assert out.hlf[:, H["MET"]].tolist() == [float(k) for k in kept]
    assert np.diff(out.particle_offsets).tolist() == [1 + k for k in kept]
    assert out.particles[out.particle_offsets[:-1], P["PT"]].tolist() == [30.0 + k for k in kept]


# --- cross-check against a plain per-event reference of §3 ------------------------------------
def _reference(event: dict[str, list[dict[str, Any]]]) -> tuple[list[float], np.ndarray] | None:
    """§3 written out naively, one event at a time (slow; for testing only)."""
    tracks = [t for t in event.get("EFlowTrack", []) if t["PT"] > 0.5]
    photons = [p for p in event.get("EFlowPhoton", []) if p["ET"] > 1.0]
    neutrals = [n for n in event.get("EFlowNeutralHadron", []) if n["ET"] > 1.0]
    jets = [j for j in event.get("Jet", []) if j["PT"] > 30 and abs(j["Eta"]) < 2.6]

    def iso(p: dict[str, Any], pt: float, members: list[dict[str, Any]], key: str) -> float:
        near = [m[key] for m in members if delta_r(p["Eta"], p["Phi"], m["Eta"], m["Phi"]) < 0.3]
        return sum(near) / pt

    def isos(p: dict[str, Any], pt: float, is_track: bool) -> list[float]:
        return [
            iso(p, pt, tracks, "PT") - (1.0 if is_track else 0.0),
            iso(p, pt, photons, "ET"),
            iso(p, pt, neutrals, "ET"),
        ]

    chosen = []
    for name in ("Electron", "MuonTight"):
        for lepton in event.get(name, []):
            if lepton["PT"] > 23 and sum(isos(lepton, lepton["PT"], True)) < 0.45:
                chosen.append((lepton, name == "Electron"))
                break
    if not chosen:
        return None
    lepton, is_ele = max(chosen, key=lambda c: (c[0]["PT"], c[1]))
    met = event["MissingET"][0]
    lep_isos = isos(lepton, lepton["PT"], True)
    mt = math.sqrt(2 * met["MET"] * lepton["PT"] * (1 - math.cos(lepton["Phi"] - met["Phi"])))
    hlf = [
        sum(j["PT"] for j in jets), met["MET"], met["Phi"], mt, len(jets),
        sum(1 for j in jets if j["BTag"] > 0), lepton["PT"], lepton["Eta"], lepton["Phi"],
        *lep_isos, lepton["Charge"], float(is_ele),
    ]  # fmt: skip

    def row(p: dict[str, Any], pt: float, flag: str, charge: float, is_track: bool) -> list[float]:
        e, px, py, pz = (float(v) for v in four_vector(pt, p["Eta"], p["Phi"]))
        out = dict.fromkeys(PARTICLE_FEATURES, 0.0)
        out.update(E=e, Px=px, Py=py, Pz=pz, PT=pt, Eta=p["Eta"], Phi=p["Phi"], Charge=charge)
        if flag == "isChHad":  # the lepton row keeps vertex 0
            out.update(vtxX=p.get("X", 0.0), vtxY=p.get("Y", 0.0), vtxZ=p.get("Z", 0.0))
        out.update(zip(("IsoCh", "IsoGamma", "IsoNeu"), isos(p, pt, is_track)))
        out[flag] = 1.0
        return [out[f] for f in PARTICLE_FEATURES]

    table = [row(lepton, lepton["PT"], "isEle" if is_ele else "isMu", lepton["Charge"], True)]
    kept = [t for t in tracks if delta_r(t["Eta"], t["Phi"], lepton["Eta"], lepton["Phi"]) >= 1e-4]
    table += [row(t, t["PT"], "isChHad", _charge(t), True) for t in kept[:450]]
    table += [row(p, p["ET"], "isGamma", 0.0, False) for p in photons[:150]]
    table += [row(n, n["ET"], "isNeuHad", 0.0, False) for n in neutrals[:200]]
    return hlf, np.array(table)


def _charge(track: dict[str, Any]) -> float:
    """§3: the track's Charge field, else -sign(PID) for e, mu, tau and sign(PID) otherwise."""
    if "Charge" in track:
        return float(track["Charge"])
    sign = float(np.sign(track["PID"]))
    return -sign if abs(track["PID"]) in (11, 13, 15) else sign


#: charge of the hadrons of the random events; Σ- (3112) has a positive id and charge -1.
_HADRON_CHARGE = {-211: -1, 211: 1, 321: 1, 3112: -1}


def _random_event(rng: np.random.Generator, with_charge: bool) -> dict[str, list[dict[str, Any]]]:
    def direction() -> tuple[float, float]:
        return float(rng.uniform(-2.5, 2.5)), float(rng.uniform(-math.pi, math.pi))

    event: dict[str, list[dict[str, Any]]] = {"EFlowTrack": [], "Electron": [], "MuonTight": []}
    for name, pid in (("Electron", 11), ("MuonTight", 13)):
        for _ in range(rng.integers(0, 3)):
            eta, phi = direction()
            pt, charge = float(rng.uniform(15.0, 60.0)), int(rng.choice([-1, 1]))
            event[name].append(lep(pt, eta, phi, charge))
            event["EFlowTrack"].append(trk(pt, eta, phi, pid=-charge * pid) | {"Charge": charge})
            for _ in range(rng.integers(0, 3)):  # activity near the lepton: some fail isolation
                near = (eta + rng.normal(0, 0.15), phi + rng.normal(0, 0.15))
                event["EFlowTrack"].append(trk(float(rng.exponential(4.0)), *near) | {"Charge": 1})
    for _ in range(rng.poisson(40)):
        vertex = {f: float(rng.normal(0, w)) for f, w in (("X", 0.1), ("Y", 0.1), ("Z", 30.0))}
        pid = int(rng.choice(list(_HADRON_CHARGE)))
        track = trk(float(rng.exponential(2.0)), *direction(), pid, **vertex)
        event["EFlowTrack"].append(track | {"Charge": _HADRON_CHARGE[pid]})
    if not with_charge:
        event["EFlowTrack"] = [{k: v for k, v in t.items() if k != "Charge"} for t in event["EFlowTrack"]]
    rng.shuffle(event["EFlowTrack"])
    event["EFlowPhoton"] = [pho(rng.exponential(2.0), *direction()) for _ in range(rng.poisson(20))]
    event["EFlowNeutralHadron"] = [
        neu(rng.exponential(3.0), *direction()) for _ in range(rng.poisson(10))
    ]
    event["Jet"] = [
        jet(rng.exponential(40.0), rng.uniform(-3.0, 3.0), int(rng.integers(0, 2)))
        for _ in range(rng.poisson(4))
    ]
    event["MissingET"] = [{"MET": float(rng.exponential(30.0)), "Phi": direction()[1]}]
    return event


@pytest.mark.parametrize("with_charge", [False, True], ids=["charge-from-pid", "charge-field"])
def test_matches_per_event_reference_on_random_events(with_charge: bool) -> None:
    rng = np.random.default_rng(2024)
    events = [_random_event(rng, with_charge) for _ in range(60)]
    out = compute_features(make_events(*events))
    expected = [_reference(ev) for ev in events]
    assert out.selected.tolist() == [e is not None for e in expected]
    assert 10 < out.n_selected < 60  # both outcomes occur
    for k, (hlf, table) in enumerate(e for e in expected if e is not None):
        np.testing.assert_allclose(out.hlf[k], hlf, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(rows(out, k), table, rtol=1e-12, atol=1e-12)
