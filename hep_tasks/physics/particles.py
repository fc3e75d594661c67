"""The particle matrix of ARCHITECTURE §3: up to 801 rows x 19 features per selected event.

Row 0 is the isolated lepton; then up to 450 pre-selected tracks in collection order (the
lepton's own track, ΔR < 1e-4 from it, skipped before the cap), up to 150 photons and up to
200 neutral hadrons. A track's ``Charge`` is its electric charge: ``EFlowTrack.Charge`` when the
input has that field, otherwise :func:`charge_from_pid` (not the 2019 code's sign(PID), which is
wrong for e, μ, τ). Only real rows are stored; ``offsets`` gives each event's row range.
Isolations of every row are computed against the full (uncapped) pre-selected collections.
Units: GeV, rad; vertices in the units of Delphes' ``EFlowTrack.X/Y/Z`` (mm).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numpy.typing import NDArray

from .columnar import FlatCollection, offsets_from_counts
from .constants import (
    LEPTON_TRACK_MATCH_DR,
    MAX_NEUTRAL_HADRONS,
    MAX_PHOTONS,
    MAX_TRACKS,
    PARTICLE_FEATURES,
    PARTICLE_INDEX,
)
from .cones import IsolationCollections, member_isolations
from .isolation import keep_unmatched_capped
from .leptons import ChosenLeptons
from .selection import PreselectedEvents

__all__ = ["build_particles", "charge_from_pid"]

_N_FEATURES = len(PARTICLE_FEATURES)
_COL = PARTICLE_INDEX
_NO_VALUES = np.zeros(0, dtype=np.float64)


@numba.njit(cache=True, nogil=True)
def _fill_rows(
    out: NDArray[np.float64],
    dest: NDArray[np.int64],
    pt: NDArray[np.float64],
    eta: NDArray[np.float64],
    phi: NDArray[np.float64],
    iso_ch: NDArray[np.float64],
    iso_gamma: NDArray[np.float64],
    iso_neu: NDArray[np.float64],
    flag_column: int,
    vtx_x: NDArray[np.float64],
    vtx_y: NDArray[np.float64],
    vtx_z: NDArray[np.float64],
    charge: NDArray[np.float64],
) -> None:
    """Write all 19 features of row ``dest[i]`` of ``out`` for every particle ``i``.

    The massless four-vector comes from (PT, η, φ); ``flag_column`` is set to 1, the other type
    flags to 0. Empty ``vtx_*`` / ``charge`` arrays mean 0 for every row.
    """
    has_vertex = vtx_x.shape[0] > 0
    has_charge = charge.shape[0] > 0
    for i in range(dest.shape[0]):
        row = out[dest[i]]
        p = pt[i]
        h = eta[i]
        f = phi[i]
        row[:] = 0.0
        row[0] = p * math.cosh(h)  # E
        row[1] = p * math.cos(f)  # Px
        row[2] = p * math.sin(f)  # Py
        row[3] = p * math.sinh(h)  # Pz
        row[4] = p  # PT
        row[5] = h  # Eta
        row[6] = f  # Phi
        if has_vertex:
            row[7] = vtx_x[i]
            row[8] = vtx_y[i]
            row[9] = vtx_z[i]
        row[10] = iso_ch[i]
        row[11] = iso_gamma[i]
        row[12] = iso_neu[i]
        row[flag_column] = 1.0
        if has_charge:
            row[18] = charge[i]


def charge_from_pid(pid: NDArray[np.floating] | NDArray[np.integer]) -> NDArray[np.float64]:
    """Electric charge [e] of tracks from their PDG ids, the ARCHITECTURE §3 rule for files without
    ``EFlowTrack.Charge``: −sign(PID) for e, μ, τ (|PID| 11, 13, 15: the positive ids are the
    negative leptons), sign(PID) for everything else.

    For hadrons this is right for π, K, p and most others, but not for the few with a positive id
    and a negative charge (Σ⁻ 3112, Ξ⁻ 3312, Ω⁻ 3334, and their antiparticles): only the branch
    knows those.

    >>> charge_from_pid(np.array([11, -11, 13, -13, -15, 211, -321, 2212])).tolist()
    [-1.0, 1.0, -1.0, 1.0, 1.0, 1.0, -1.0, 1.0]
    """
    pid = np.asarray(pid, dtype=np.float64)
    sign = np.sign(pid)
    lepton = np.isin(np.abs(pid), (11.0, 13.0, 15.0))
    return np.where(lepton, -sign, sign)


def _destinations(offsets: NDArray[np.int64], event_start: NDArray[np.int64]) -> NDArray[np.int64]:
    """Output row of each member (``offsets`` per event): its event's ``event_start`` + its
    index inside the event."""
    counts = np.diff(offsets)
    shift = event_start - offsets[:-1]
    return np.arange(int(offsets[-1]), dtype=np.int64) + np.repeat(shift, counts)


def _fill_block(
    out: NDArray[np.float64],
    dest: NDArray[np.int64],
    members: FlatCollection,
    keep: NDArray[np.bool_],
    isolations: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]],
    pt_field: str,
    flag: str,
    *,
    is_track: bool,
) -> None:
    """Fill the kept members of one collection (tracks, photons or neutral hadrons) into
    ``out``; ``isolations`` are over all members (collection order)."""
    pt, eta, phi = members[pt_field][keep], members["Eta"][keep], members["Phi"][keep]
    iso = tuple(i[keep] for i in isolations)
    if is_track:
        vertex = (members["X"][keep], members["Y"][keep], members["Z"][keep])
        if "Charge" in members.columns:
            charge = members["Charge"][keep]
        else:
            charge = charge_from_pid(members["PID"][keep])
    else:
        vertex = (_NO_VALUES, _NO_VALUES, _NO_VALUES)
        charge = _NO_VALUES
    _fill_rows(out, dest, pt, eta, phi, *iso, _COL[flag], *vertex, charge)


def build_particles(
    lepton: ChosenLeptons, events: PreselectedEvents, cones: IsolationCollections
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Particle rows of the selected events: ``(offsets (n+1,), particles (rows, 19))``.

    ``events`` and ``cones`` hold the pre-selected collections of the selected events only,
    in the order of ``lepton``'s arrays.
    """
    tracks, photons, neutral = events.tracks, events.photons, events.neutral_hadrons
    keep_tracks = keep_unmatched_capped(
        tracks.offsets, tracks["Eta"], tracks["Phi"], lepton.eta, lepton.phi,
        LEPTON_TRACK_MATCH_DR, MAX_TRACKS,
    )  # fmt: skip
    keep_photons = photons.local_index() < MAX_PHOTONS
    keep_neutral = neutral.local_index() < MAX_NEUTRAL_HADRONS
    n_tracks = tracks.filtered_offsets(keep_tracks)
    n_photons = photons.filtered_offsets(keep_photons)
    n_neutral = neutral.filtered_offsets(keep_neutral)

    counts = 1 + np.diff(n_tracks) + np.diff(n_photons) + np.diff(n_neutral)
    offsets = offsets_from_counts(counts)
    particles = np.empty((int(offsets[-1]), _N_FEATURES), dtype=np.float64)

    lepton_rows = offsets[:-1]
    _fill_rows(
        particles, lepton_rows, lepton.pt, lepton.eta, lepton.phi,
        lepton.iso_ch, lepton.iso_gamma, lepton.iso_neu, _COL["isEle"],
        _NO_VALUES, _NO_VALUES, _NO_VALUES, lepton.charge,
    )  # fmt: skip
    particles[lepton_rows, _COL["isEle"]] = lepton.is_electron
    particles[lepton_rows, _COL["isMu"]] = 1.0 - lepton.is_electron

    first_track = offsets[:-1] + 1
    first_photon = first_track + np.diff(n_tracks)
    first_neutral = first_photon + np.diff(n_photons)
    blocks = (
        (tracks, cones.tracks, keep_tracks, n_tracks, first_track, "PT", "isChHad"),
        (photons, cones.photons, keep_photons, n_photons, first_photon, "ET", "isGamma"),
        (neutral, cones.neutral_hadrons, keep_neutral, n_neutral, first_neutral, "ET", "isNeuHad"),
    )
    for members, cone, keep, kept_offsets, first, pt_field, flag in blocks:
        is_track = flag == "isChHad"
        isolations = member_isolations(cone, cones, is_track=is_track)
        dest = _destinations(kept_offsets, first)
        _fill_block(particles, dest, members, keep, isolations, pt_field, flag, is_track=is_track)
    return offsets, particles
