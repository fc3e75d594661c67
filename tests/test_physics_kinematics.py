"""Kinematics helpers, constants and the low-level numba kernels of hep_tasks.physics (§3)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hep_tasks.physics import (
    HLF_FEATURES,
    MAX_NEUTRAL_HADRONS,
    MAX_PARTICLES,
    MAX_PHOTONS,
    MAX_TRACKS,
    PARTICLE_FEATURES,
    REQUIRED_FIELDS,
    delta_phi,
    delta_r,
    four_vector,
    transverse_mass,
)
from hep_tasks.physics.kinematics import wrap_phi
from hep_tasks.physics.isolation import (
    cone_sums,
    first_index_per_event,
    isolation,
    keep_unmatched_capped,
    sort_within_events,
)


def test_delta_phi_wraps_across_pi() -> None:
    assert delta_phi(3.1, -3.1) == pytest.approx(6.2 - 2 * math.pi)
    assert delta_phi(3.1, -3.1) == pytest.approx(-0.0832, abs=1e-4)
    assert delta_phi(-3.1, 3.1) == pytest.approx(0.0832, abs=1e-4)


def test_delta_phi_inside_range_unchanged_and_far_outside_wrapped() -> None:
    got = delta_phi([0.5, -1.0, math.pi], [0.25, 1.0, 0.0])
    np.testing.assert_allclose(got, [0.25, -2.0, math.pi])
    assert delta_phi(10.0, 0.0) == pytest.approx(10.0 - 4 * math.pi)  # beyond 2π: the 2019 bug
    assert delta_phi(-7.0, 0.0) == pytest.approx(-7.0 + 2 * math.pi)
    d = delta_phi(np.linspace(-20, 20, 101), 0.3)
    assert np.all((d >= -math.pi) & (d <= math.pi))


def test_delta_r() -> None:
    assert delta_r(0.0, 0.0, 0.3, 0.4) == pytest.approx(0.5)
    assert delta_r(1.0, 3.1, 1.0, -3.1) == pytest.approx(2 * math.pi - 6.2)
    np.testing.assert_allclose(delta_r([0.0, 1.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.1]), [0.0, 0.1])


def test_four_vector_is_massless() -> None:
    e, px, py, pz = four_vector(2.0, math.log(2.0), math.pi / 2)  # cosh = 1.25, sinh = 0.75
    assert (e, px, py, pz) == pytest.approx((2.5, 0.0, 2.0, 1.5), abs=1e-12)
    pt = np.array([10.0, 3.0]); eta = np.array([-1.2, 2.0]); phi = np.array([0.3, -2.0])
    e, px, py, pz = four_vector(pt, eta, phi)
    np.testing.assert_allclose(e**2 - px**2 - py**2 - pz**2, 0.0, atol=1e-9)
    np.testing.assert_allclose(np.hypot(px, py), pt)


def test_transverse_mass_has_square_root() -> None:
    assert transverse_mass(40.0, 0.0, 40.0, math.pi / 2) == pytest.approx(40.0 * math.sqrt(2.0))
    assert transverse_mass(40.0, 0.0, 40.0, math.pi) == pytest.approx(80.0)
    assert transverse_mass(40.0, 1.0, 40.0, 1.0) == pytest.approx(0.0)


def test_constants() -> None:
    assert HLF_FEATURES == (
        "HT", "MET", "PhiMET", "MT", "nJets", "nBjets", "LepPT", "LepEta", "LepPhi",
        "LepIsoCh", "LepIsoGamma", "LepIsoNeu", "LepCharge", "LepIsEle",
    )  # fmt: skip
    assert PARTICLE_FEATURES == (
        "E", "Px", "Py", "Pz", "PT", "Eta", "Phi", "vtxX", "vtxY", "vtxZ", "IsoCh",
        "IsoGamma", "IsoNeu", "isChHad", "isNeuHad", "isGamma", "isEle", "isMu", "Charge",
    )  # fmt: skip
    assert (MAX_TRACKS, MAX_PHOTONS, MAX_NEUTRAL_HADRONS, MAX_PARTICLES) == (450, 150, 200, 801)
    assert REQUIRED_FIELDS["EFlowTrack"] == ("PT", "Eta", "Phi", "PID", "X", "Y", "Z")
    assert REQUIRED_FIELDS["MissingET"] == ("MET", "Phi")
    assert set(REQUIRED_FIELDS) == {
        "EFlowTrack", "EFlowPhoton", "EFlowNeutralHadron", "Electron", "MuonTight",
        "MissingET", "Jet",
    }  # fmt: skip


def test_sort_within_events_keeps_events_apart() -> None:
    offsets = np.array([0, 3, 3, 5], dtype=np.int64)
    eta = np.array([0.2, -1.0, 0.1, 5.0, 4.0])
    assert sort_within_events(offsets, eta).tolist() == [1, 2, 0, 4, 3]


@pytest.mark.parametrize("queries_sorted", [False, True])
def test_cone_sums_matches_brute_force(queries_sorted: bool) -> None:
    rng = np.random.default_rng(7)
    counts = np.array([0, 5, 40, 1, 60])
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    n = int(offsets[-1])
    eta = rng.uniform(-1.0, 1.0, n)
    phi = rng.uniform(-math.pi, math.pi, n)
    pt = rng.exponential(2.0, n)
    perm = sort_within_events(offsets, eta)
    q = perm if queries_sorted else np.arange(n)  # sorted queries: the sliding window
    got = cone_sums(offsets, eta[q], phi[q], offsets, eta[perm], phi[perm], pt[perm], 0.3)
    event = np.repeat(np.arange(len(counts)), counts)
    dr = delta_r(eta[:, None], phi[:, None], eta[None, :], phi[None, :])
    same_event = event[:, None] == event[None, :]
    expected = ((dr < 0.3) & same_event) @ pt
    np.testing.assert_allclose(got, expected[q], rtol=1e-12)


def test_isolation_wraps_angles_outside_pi() -> None:
    offsets = np.array([0, 1], dtype=np.int64)
    iso = isolation(
        offsets, np.array([10.0]), np.array([0.0]), np.array([3.1 + 4 * math.pi]),
        offsets, np.array([4.0]), np.array([0.0]), np.array([-3.1]), 0.3,
        self_in_collection=False,
    )  # fmt: skip
    assert iso.tolist() == pytest.approx([0.4])
    assert wrap_phi([0.5, 3.5, -7.0, math.pi]).tolist() == pytest.approx(
        [0.5, 3.5 - 2 * math.pi, -7.0 + 2 * math.pi, math.pi]
    )


def test_cone_sums_wraps_phi() -> None:
    offsets = np.array([0, 1], dtype=np.int64)
    got = cone_sums(
        offsets, np.array([0.0]), np.array([3.1]),
        offsets, np.array([0.0]), np.array([-3.1]), np.array([7.0]), 0.3,
    )  # fmt: skip
    assert got.tolist() == [7.0]


def test_first_index_per_event() -> None:
    offsets = np.array([0, 3, 3, 5], dtype=np.int64)
    mask = np.array([False, True, True, True, False])
    assert first_index_per_event(offsets, mask).tolist() == [1, -1, 3]


def test_keep_unmatched_capped_skips_before_cap() -> None:
    offsets = np.array([0, 4], dtype=np.int64)
    eta = np.array([0.50005, 0.0, 0.5002, 2.0])  # ΔR to the reference: 5e-5, 0.5, 2e-4, 1.5
    phi = np.zeros(4)
    keep = keep_unmatched_capped(offsets, eta, phi, np.array([0.5]), np.array([0.0]), 1e-4, 2)
    assert keep.tolist() == [False, True, True, False]  # the match takes no place in the cap
