"""Which reconstructed events a file accepts: a lepton above the analysis cut, optionally isolated.

An event is accepted when it has an Electron or MuonTight with PT > ``accept_lepton_pt_min`` (23 GeV).
With ``SimulationSettings.isolated_leptons_only`` that lepton must also be isolated as ARCHITECTURE §3
defines it, which is the ingest stage's event selection: relative isolation IsoCh + IsoGamma + IsoNeu
< 0.45 in a cone ΔR < 0.3, summing tracks with PT > 0.5 GeV (the lepton's own track subtracted),
photons and neutral hadrons with ET > 1 GeV. Everything is vectorised over the batch.
"""

from __future__ import annotations

import numpy as np

from hep_tasks.simulate.detector import Reconstructed
from hep_tasks.simulate.flat import FlatObjects, concatenate, delta_phi, pairs_within_events
from hep_tasks.simulate.settings import SimulationSettings

#: ARCHITECTURE §3 pre-selection of the isolation collections [GeV].
ISOLATION_TRACK_PT_MIN = 0.5
ISOLATION_PHOTON_ET_MIN = 1.0
ISOLATION_NEUTRAL_HADRON_ET_MIN = 1.0


def hard_leptons(reco: Reconstructed, pt_min: float) -> FlatObjects:
    """Electrons and muons with PT > ``pt_min`` [GeV] (``PT``, ``Eta``, ``Phi``), grouped by event."""
    parts = [leptons.select(leptons["PT"] > pt_min) for leptons in (reco.electrons, reco.muons)]
    return concatenate(parts, ["PT", "Eta", "Phi"])


def _as_written(values: np.ndarray) -> np.ndarray:
    """The values as the file stores them (float32), so the selection agrees with a reader's."""
    return values.astype(np.float32).astype(np.float64)


def _cone_sum(leptons: FlatObjects, others: FlatObjects, key: str, n_events: int, cone: float) -> np.ndarray:
    """Σ ``others[key]`` within ΔR < ``cone`` of each lepton."""
    i, j = pairs_within_events(leptons.event, others.event, n_events)
    d_eta = _as_written(leptons["Eta"])[i] - _as_written(others["Eta"])[j]
    d_phi = delta_phi(_as_written(leptons["Phi"])[i], _as_written(others["Phi"])[j])
    inside = np.sqrt(d_eta * d_eta + d_phi * d_phi) < cone
    return np.bincount(i[inside], weights=_as_written(others[key])[j][inside], minlength=len(leptons))


def relative_isolation(leptons: FlatObjects, reco: Reconstructed, cone: float) -> np.ndarray:
    """IsoCh + IsoGamma + IsoNeu of each lepton (each lepton is also a track, so IsoCh subtracts 1)."""
    tracks = reco.tracks.select(reco.tracks["PT"] > ISOLATION_TRACK_PT_MIN)
    photons = reco.photons.select(reco.photons["ET"] > ISOLATION_PHOTON_ET_MIN)
    neutral = reco.neutral_hadrons.select(reco.neutral_hadrons["ET"] > ISOLATION_NEUTRAL_HADRON_ET_MIN)
    n = reco.n_events
    total = (
        _cone_sum(leptons, tracks, "PT", n, cone)
        + _cone_sum(leptons, photons, "ET", n, cone)
        + _cone_sum(leptons, neutral, "ET", n, cone)
    )
    return total / _as_written(leptons["PT"]) - 1.0


def accepted_events(reco: Reconstructed, settings: SimulationSettings) -> np.ndarray:
    """One boolean per event of ``reco``: it has a (possibly required isolated) lepton above the cut."""
    leptons = hard_leptons(reco, settings.accept_lepton_pt_min)
    if settings.isolated_leptons_only:
        leptons = leptons.select(relative_isolation(leptons, reco, settings.isolation_cone) < settings.isolation_max)
    return np.bincount(leptons.event, minlength=reco.n_events) > 0
