"""Anti-kT jets on the energy-flow objects (FastJet, all events of a batch in one call) and b-tagging.

Jet inputs are the EFlowTrack, EFlowPhoton and EFlowNeutralHadron objects as massless four-vectors
(E = PT·cosh η, as ARCHITECTURE §3 defines them). Clustering uses scikit-hep ``fastjet``'s
multi-event Awkward interface: one C++ call for the whole batch. Jets keep PT > 20 GeV (settings).

b-tagging is Delphes-like: within |η| < 2.5 a jet is "b" if a b-hadron with pT > 5 GeV lies within
ΔR < 0.4 of its axis, else "c" if a c-hadron does, else light; it is tagged (BTag = 1) with
probability 0.70 / 0.10 / 0.01 for b / c / light (settings).
"""

from __future__ import annotations

import awkward as ak
import fastjet
import numpy as np

from hep_tasks.simulate.detector import Reconstructed
from hep_tasks.simulate.flat import FlatObjects, concatenate, delta_phi, pairs_within_events
from hep_tasks.simulate.settings import DetectorSettings
from hep_tasks.simulate.truth import eta_phi

try:  # FastJet prints a banner on its first clustering; a null stream silences it.
    fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)
except AttributeError:  # pragma: no cover - other fastjet builds
    pass


def eflow_four_vectors(reco: Reconstructed) -> FlatObjects:
    """All energy-flow objects of each event as massless ``px, py, pz, E`` [GeV], grouped by event."""
    parts = []
    for objects, key in ((reco.tracks, "PT"), (reco.photons, "ET"), (reco.neutral_hadrons, "ET")):
        pt, eta, phi = objects[key], objects["Eta"], objects["Phi"]
        parts.append(
            FlatObjects(
                objects.event,
                {"px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta), "E": pt * np.cosh(eta)},
            )
        )
    return concatenate(parts, ["px", "py", "pz", "E"])


def cluster_jets(reco: Reconstructed, settings: DetectorSettings) -> FlatObjects:
    """Anti-kT jets (radius and minimum PT from ``settings``) of every event: ``PT`` [GeV], ``Eta``,
    ``Phi`` [rad], sorted by decreasing PT within each event."""
    inputs = eflow_four_vectors(reco)
    jet_def = fastjet.JetDefinition(fastjet.antikt_algorithm, settings.jet_radius)
    events = inputs.to_awkward(reco.n_events, {"px": "float64", "py": "float64", "pz": "float64", "E": "float64"})
    jets = fastjet.ClusterSequence(events, jet_def).inclusive_jets(min_pt=settings.jet_pt_min)
    counts = ak.to_numpy(ak.num(jets, axis=1))
    px, py, pz = (ak.to_numpy(ak.flatten(jets[c], axis=1)) for c in ("px", "py", "pz"))
    pt, eta, phi = eta_phi(px, py, pz)
    event = np.repeat(np.arange(reco.n_events, dtype=np.int64), counts)
    return FlatObjects(event, {"PT": pt, "Eta": eta, "Phi": phi}).sorted_by("PT")


def jet_flavour(jets: FlatObjects, heavy: FlatObjects, n_events: int, max_dr: float) -> np.ndarray:
    """5, 4 or 0 per jet: the heaviest flavour among the ``heavy`` hadrons within ΔR < ``max_dr``."""
    i, j = pairs_within_events(jets.event, heavy.event, n_events)
    d_eta = jets["Eta"][i] - heavy["eta"][j]
    d_phi = delta_phi(jets["Phi"][i], heavy["phi"][j])
    close = d_eta * d_eta + d_phi * d_phi < max_dr * max_dr
    flavour = np.zeros(len(jets), dtype=np.int8)
    np.maximum.at(flavour, i[close], heavy["flavour"][j][close])
    return flavour


def btag(
    jets: FlatObjects, heavy: FlatObjects, n_events: int, settings: DetectorSettings, rng: np.random.Generator
) -> np.ndarray:
    """BTag (int32, 1 = tagged) per jet from its flavour and the tagging probabilities of ``settings``."""
    flavour = jet_flavour(jets, heavy, n_events, settings.btag_match_dr)
    probability = np.where(
        flavour == 5, settings.btag_efficiency_b, np.where(flavour == 4, settings.btag_mistag_c, settings.btag_mistag_light)
    )
    probability = np.where(np.abs(jets["Eta"]) < settings.btag_abs_eta, probability, 0.0)
    return (rng.random(len(jets)) < probability).astype(np.int32)
