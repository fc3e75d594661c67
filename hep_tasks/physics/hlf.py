"""The 14 high-level features of ARCHITECTURE §3, one row per selected event.

Columns, in order (see :data:`~.constants.HLF_FEATURES`): HT (Σ PT of pre-selected jets, GeV),
MET (GeV), PhiMET (rad), MT = sqrt(2·MET·LepPT·(1 − cos(LepPhi − PhiMET))) (GeV; the 2019 code
forgot the square root), nJets, nBjets (pre-selected jets with BTag > 0), LepPT (GeV), LepEta,
LepPhi (rad), LepIsoCh, LepIsoGamma, LepIsoNeu, LepCharge, LepIsEle (1 electron, 0 muon).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .constants import HLF_FEATURES, HLF_INDEX
from .leptons import ChosenLeptons
from .selection import PreselectedEvents

__all__ = ["transverse_mass", "high_level_features"]


def transverse_mass(
    met: NDArray[np.float64] | float,
    phi_met: NDArray[np.float64] | float,
    lep_pt: NDArray[np.float64] | float,
    lep_phi: NDArray[np.float64] | float,
) -> NDArray[np.float64]:
    """MT = sqrt(2·MET·LepPT·(1 − cos(LepPhi − PhiMET))) in GeV (MET, PT in GeV; φ in rad).

    >>> float(transverse_mass(40.0, 0.0, 40.0, np.pi))  # back to back: 2·sqrt(MET·PT)
    80.0
    """
    mt2 = 2.0 * np.asarray(met) * np.asarray(lep_pt) * (1.0 - np.cos(np.subtract(lep_phi, phi_met)))
    return np.sqrt(np.maximum(mt2, 0.0))


def high_level_features(lepton: ChosenLeptons, events: PreselectedEvents) -> NDArray[np.float64]:
    """HLF matrix float64 ``(n_events, 14)`` for ``events``, the selected events only.

    ``events.jets`` must be pre-selected (PT > 30 GeV, |η| < 2.6).
    """
    jets = events.jets
    n = events.n_events
    jet_event = jets.event_index()
    met = events.missing_et["MET"]
    phi_met = events.missing_et["Phi"]

    hlf = np.empty((n, len(HLF_FEATURES)), dtype=np.float64)
    hlf[:, HLF_INDEX["HT"]] = np.bincount(jet_event, weights=jets["PT"], minlength=n)
    hlf[:, HLF_INDEX["MET"]] = met
    hlf[:, HLF_INDEX["PhiMET"]] = phi_met
    hlf[:, HLF_INDEX["MT"]] = transverse_mass(met, phi_met, lepton.pt, lepton.phi)
    hlf[:, HLF_INDEX["nJets"]] = jets.counts
    hlf[:, HLF_INDEX["nBjets"]] = np.bincount(jet_event[jets["BTag"] > 0], minlength=n)
    hlf[:, HLF_INDEX["LepPT"]] = lepton.pt
    hlf[:, HLF_INDEX["LepEta"]] = lepton.eta
    hlf[:, HLF_INDEX["LepPhi"]] = lepton.phi
    hlf[:, HLF_INDEX["LepIsoCh"]] = lepton.iso_ch
    hlf[:, HLF_INDEX["LepIsoGamma"]] = lepton.iso_gamma
    hlf[:, HLF_INDEX["LepIsoNeu"]] = lepton.iso_neu
    hlf[:, HLF_INDEX["LepCharge"]] = lepton.charge
    hlf[:, HLF_INDEX["LepIsEle"]] = lepton.is_electron
    return hlf
