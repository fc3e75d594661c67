"""A parametric, Delphes-like detector response, vectorised over all particles of a batch.

Input: the visible final-state particles of a :class:`~hep_tasks.simulate.truth.TruthBatch`.
Output (:class:`Reconstructed`), every collection sorted by decreasing PT (ET) within its event:

- ``tracks`` (EFlowTrack ``PT, Eta, Phi, PID, Charge, X, Y, Z``): charged particles with |η| < 2.5 and
  pT > 0.1 GeV, kept with a pT-, |η|- and species-dependent efficiency (hadrons, electrons, muons);
  PT smeared with σ(pT)/pT = sqrt(a² + (b·pT)²); η, φ exact; ``PID`` the PDG id; ``Charge`` the true
  particle's electric charge [e] (as Delphes writes it); ``X, Y, Z`` Pythia's production vertex [mm]
  smeared with σ = sqrt(a² + (b/pT)²).
- ``electrons``/``muons`` (Electron, MuonTight ``PT, Eta, Phi, Charge``): tracked e/μ with PT > 10 GeV,
  identified with an |η|-dependent efficiency; they take their track's kinematics, so every one of
  them is also in ``tracks`` (as in Delphes). No isolation is applied here: the ingest stage does it.
- ``photons`` (EFlowPhoton ``ET, Eta, Phi``) and ``neutral_hadrons`` (EFlowNeutralHadron): calorimeter
  cells. What is not tracked and reaches a calorimeter deposits its energy in a cell: photons and
  electrons in the ECAL (|η| < 3), other hadrons in the HCAL (|η| < 3), everything in the forward
  calorimeter (3 < |η| < 5; its cells become neutral hadrons). Muons deposit nothing; charged
  particles in the barrel need pT > 0.7 GeV to reach the calorimeter. Each cell's summed energy is
  smeared (log-normal, σ(E) = stochastic ⊕ constant ⊕ noise), kept above 0.5 GeV (ECAL) or 1 GeV,
  and placed uniformly within the cell (Delphes' ``SmearTowerCenter``). Tracked particles leave no
  neutral energy: an ideal energy-flow subtraction.
- ``met`` (MissingET ``MET, Phi``): minus the vector sum of all tracks, photons and neutral hadrons,
  exactly one per event.

All randomness comes from the ``numpy.random.Generator`` given to :class:`Detector`, drawn in a fixed
order, so the same events and generator state give the same output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hep_tasks.simulate.flat import FlatObjects
from hep_tasks.simulate.settings import DetectorSettings
from hep_tasks.simulate.truth import TruthBatch

ECAL, HCAL, FORWARD = 0, 1, 2
#: upper bounds of the cell indices in η and φ, used to build one integer key per cell.
_MAX_CELLS = 4096


@dataclass
class Reconstructed:
    """Detector-level objects of ``n_events`` events (see the module docstring); ``met`` and ``met_phi``
    hold one value per event [GeV, rad]."""

    n_events: int
    tracks: FlatObjects
    photons: FlatObjects
    neutral_hadrons: FlatObjects
    electrons: FlatObjects
    muons: FlatObjects
    met: np.ndarray
    met_phi: np.ndarray

    def in_events(self, keep: np.ndarray) -> Reconstructed:
        """Only the events where ``keep`` is true, renumbered."""
        return Reconstructed(
            int(np.count_nonzero(keep)),
            self.tracks.in_events(keep),
            self.photons.in_events(keep),
            self.neutral_hadrons.in_events(keep),
            self.electrons.in_events(keep),
            self.muons.in_events(keep),
            self.met[keep],
            self.met_phi[keep],
        )


def _log_normal(rng: np.random.Generator, mean: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Positive random values with the given mean and standard deviation (Delphes' choice for energies)."""
    s2 = np.log1p((sigma / mean) ** 2)
    return mean * np.exp(np.sqrt(s2) * rng.standard_normal(len(mean)) - 0.5 * s2)


def _quadrature(a: float, b: float, x: np.ndarray) -> np.ndarray:
    return np.sqrt(a * a + (b * x) ** 2)


def _wrap_phi(phi: np.ndarray) -> np.ndarray:
    return (phi + np.pi) % (2 * np.pi) - np.pi


class Detector:
    """The detector response of ``settings``, drawing its randomness from ``rng``."""

    def __init__(self, settings: DetectorSettings, rng: np.random.Generator):
        self.settings = settings
        self.rng = rng
        # (species, region, pT bin) -> efficiency; species 0 hadron, 1 electron, 2 muon.
        self._track_efficiency = np.array(
            [settings.track_efficiency_hadron, settings.track_efficiency_electron, settings.track_efficiency_muon]
        ).reshape(3, 2, 2)
        # (calorimeter) -> η edge, Δη, number of φ cells, resolution, energy threshold.
        s = settings
        self._cells = {
            ECAL: (s.ecal_abs_eta, *s.ecal_cells, s.ecal_resolution, s.photon_energy_min),
            HCAL: (s.ecal_abs_eta, *s.hcal_cells, s.hcal_resolution, s.neutral_hadron_energy_min),
            FORWARD: (s.calo_abs_eta, *s.forward_cells, s.forward_resolution, s.neutral_hadron_energy_min),
        }
        for edge, deta, nphi, _, _ in self._cells.values():
            if 2 * edge / deta >= _MAX_CELLS or nphi >= _MAX_CELLS:
                raise ValueError(
                    f"DetectorSettings: calorimeter cells too fine, {2 * edge / deta:.0f} x {nphi} (at most {_MAX_CELLS} per axis)"
                )

    def reconstruct(self, truth: TruthBatch) -> Reconstructed:
        """The detector-level objects of ``truth``'s events (see the module docstring)."""
        s, rng = self.settings, self.rng
        particles = truth.final
        n = len(particles)
        pid, charge = particles["pid"], particles["charge"]
        pt, eta, phi = particles["pt"], particles["eta"], particles["phi"]
        abs_pid, abs_eta = np.abs(pid), np.abs(eta)
        electron, muon = abs_pid == 11, abs_pid == 13
        endcap = (abs_eta >= s.barrel_abs_eta).astype(np.int64)

        # Tracking.
        species = np.where(electron, 1, np.where(muon, 2, 0))
        efficiency = self._track_efficiency[species, endcap, (pt > s.track_low_pt).astype(np.int64)]
        in_tracker = (charge != 0) & (abs_eta < s.tracker_abs_eta) & (pt > s.track_pt_min)
        tracked = in_tracker & (rng.random(n) < efficiency)
        t = np.flatnonzero(tracked)
        t_pt, t_endcap = pt[t], endcap[t]
        a = np.where(t_endcap, s.track_pt_resolution_endcap[0], s.track_pt_resolution_barrel[0])
        b = np.where(t_endcap, s.track_pt_resolution_endcap[1], s.track_pt_resolution_barrel[1])
        t_pt_reco = _log_normal(rng, t_pt, t_pt * np.sqrt(a * a + (b * t_pt) ** 2))
        sigma_xy = _quadrature(s.vertex_resolution_xy[0], s.vertex_resolution_xy[1], 1.0 / t_pt)
        sigma_z = _quadrature(s.vertex_resolution_z[0], s.vertex_resolution_z[1], 1.0 / t_pt)
        vertex = {
            "X": particles["x"][t] + sigma_xy * rng.standard_normal(len(t)),
            "Y": particles["y"][t] + sigma_xy * rng.standard_normal(len(t)),
            "Z": particles["z"][t] + sigma_z * rng.standard_normal(len(t)),
        }
        tracks = FlatObjects(
            particles.event[t],
            {"PT": t_pt_reco, "Eta": eta[t], "Phi": phi[t], "PID": pid[t].astype(np.int32), "Charge": charge[t].astype(np.int32)}
            | vertex,
        )

        # Lepton identification (on tracks, so each lepton is also a track).
        t_abs_pid = abs_pid[t]
        id_draw = rng.random(len(t))
        leptons = {}
        for name, code, id_eff in (("electrons", 11, s.electron_id_efficiency), ("muons", 13, s.muon_id_efficiency)):
            efficiency = np.where(t_endcap, id_eff[1], id_eff[0])
            chosen = (t_abs_pid == code) & (t_pt_reco > s.lepton_pt_min) & (id_draw < efficiency)
            leptons[name] = FlatObjects(
                tracks.event[chosen],
                {
                    "PT": t_pt_reco[chosen],
                    "Eta": eta[t][chosen],
                    "Phi": phi[t][chosen],
                    "Charge": (-np.sign(pid[t][chosen])).astype(np.int32),  # e-, mu- have positive PDG ids
                },
            )

        # Calorimeters.
        reaches = (charge == 0) | endcap.astype(bool) | (pt > s.calo_reach_pt_min)
        deposit = ~tracked & ~muon & (abs_eta < s.calo_abs_eta) & reaches
        em = electron | (abs_pid == 22)
        calo = np.where(abs_eta >= s.ecal_abs_eta, FORWARD, np.where(em, ECAL, HCAL))
        photons, neutral_hadrons = self._calorimeter(particles.select(deposit), calo[deposit])

        met_x = np.zeros(truth.n_events)
        met_y = np.zeros(truth.n_events)
        for objects, key in ((tracks, "PT"), (photons, "ET"), (neutral_hadrons, "ET")):
            met_x -= np.bincount(objects.event, objects[key] * np.cos(objects["Phi"]), minlength=truth.n_events)
            met_y -= np.bincount(objects.event, objects[key] * np.sin(objects["Phi"]), minlength=truth.n_events)

        return Reconstructed(
            truth.n_events,
            tracks.sorted_by("PT"),
            photons.sorted_by("ET"),
            neutral_hadrons.sorted_by("ET"),
            leptons["electrons"].sorted_by("PT"),
            leptons["muons"].sorted_by("PT"),
            np.hypot(met_x, met_y),
            np.arctan2(met_y, met_x),
        )

    def _calorimeter(self, deposits: FlatObjects, calo: np.ndarray) -> tuple[FlatObjects, FlatObjects]:
        """Sum the deposits' energies per cell, smear, threshold; ECAL cells -> photons, others -> neutral hadrons."""
        edge = np.empty(len(calo))
        deta = np.empty(len(calo))
        nphi = np.empty(len(calo), dtype=np.int64)
        for c, (c_edge, c_deta, c_nphi, _, _) in self._cells.items():
            mask = calo == c
            edge[mask], deta[mask], nphi[mask] = c_edge, c_deta, c_nphi
        ieta = np.floor((deposits["eta"] + edge) / deta).astype(np.int64)
        iphi = np.floor((deposits["phi"] + np.pi) / (2 * np.pi) * nphi).astype(np.int64) % nphi
        key = ((deposits.event * 3 + calo) * _MAX_CELLS + ieta) * _MAX_CELLS + iphi
        cells, inverse = np.unique(key, return_inverse=True)
        energy = np.bincount(inverse, weights=deposits["e"], minlength=len(cells))
        cell_iphi = cells % _MAX_CELLS
        cell_ieta = (cells // _MAX_CELLS) % _MAX_CELLS
        cell_calo = (cells // (_MAX_CELLS * _MAX_CELLS)) % 3
        cell_event = cells // (_MAX_CELLS * _MAX_CELLS * 3)

        parts = []
        for c, (c_edge, c_deta, c_nphi, (stochastic, constant, noise), e_min) in self._cells.items():
            mask = cell_calo == c
            e_true = energy[mask]
            sigma = np.sqrt(stochastic * stochastic * e_true + (constant * e_true) ** 2 + noise * noise)
            e_reco = _log_normal(self.rng, e_true, sigma)
            u_eta, u_phi = self.rng.random(len(e_true)), self.rng.random(len(e_true))
            eta = -c_edge + (cell_ieta[mask] + u_eta) * c_deta
            phi = _wrap_phi(-np.pi + (cell_iphi[mask] + u_phi) * (2 * np.pi / c_nphi))
            keep = e_reco > e_min
            et = e_reco[keep] / np.cosh(eta[keep])
            parts.append(FlatObjects(cell_event[mask][keep], {"ET": et, "Eta": eta[keep], "Phi": phi[keep]}))
        photons = parts[ECAL]
        hadronic = FlatObjects(
            np.concatenate([parts[HCAL].event, parts[FORWARD].event]),
            {k: np.concatenate([parts[HCAL][k], parts[FORWARD][k]]) for k in ("ET", "Eta", "Phi")},
        )
        return photons, hadronic
