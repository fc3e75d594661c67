"""Names, caps and cut values of the ARCHITECTURE §3 physics definitions.

Units: GeV for momenta and energies, radians for angles; η is dimensionless.

>>> len(HLF_FEATURES), len(PARTICLE_FEATURES)
(14, 19)
>>> MAX_PARTICLES == 1 + MAX_TRACKS + MAX_PHOTONS + MAX_NEUTRAL_HADRONS
True
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

#: The 14 high-level features, in §3 order (columns of ``EventFeatures.hlf``).
HLF_FEATURES: tuple[str, ...] = (
    "HT",
    "MET",
    "PhiMET",
    "MT",
    "nJets",
    "nBjets",
    "LepPT",
    "LepEta",
    "LepPhi",
    "LepIsoCh",
    "LepIsoGamma",
    "LepIsoNeu",
    "LepCharge",
    "LepIsEle",
)

#: The 19 per-particle features, in §3 order (columns of ``EventFeatures.particles``).
PARTICLE_FEATURES: tuple[str, ...] = (
    "E",
    "Px",
    "Py",
    "Pz",
    "PT",
    "Eta",
    "Phi",
    "vtxX",
    "vtxY",
    "vtxZ",
    "IsoCh",
    "IsoGamma",
    "IsoNeu",
    "isChHad",
    "isNeuHad",
    "isGamma",
    "isEle",
    "isMu",
    "Charge",
)

#: Column index of each high-level feature.
HLF_INDEX: Mapping[str, int] = MappingProxyType({n: i for i, n in enumerate(HLF_FEATURES)})
#: Column index of each particle feature.
PARTICLE_INDEX: Mapping[str, int] = MappingProxyType(
    {n: i for i, n in enumerate(PARTICLE_FEATURES)}
)

# --- caps on the particle matrix (rows per event) -------------------------------------------
MAX_TRACKS: int = 450
MAX_PHOTONS: int = 150
MAX_NEUTRAL_HADRONS: int = 200
#: lepton + tracks + photons + neutral hadrons.
MAX_PARTICLES: int = 1 + MAX_TRACKS + MAX_PHOTONS + MAX_NEUTRAL_HADRONS

# --- object pre-selection (strict ">" / "<" cuts) --------------------------------------------
TRACK_MIN_PT: float = 0.5  # GeV
PHOTON_MIN_ET: float = 1.0  # GeV
NEUTRAL_HADRON_MIN_ET: float = 1.0  # GeV
JET_MIN_PT: float = 30.0  # GeV
JET_MAX_ABS_ETA: float = 2.6
LEPTON_MIN_PT: float = 23.0  # GeV, electrons and muons

# --- isolation and lepton choice -------------------------------------------------------------
#: Isolation cone radius in ΔR (members with ΔR < cone count).
ISOLATION_CONE: float = 0.3
#: A lepton is isolated when IsoCh + IsoGamma + IsoNeu < this value.
ISOLATED_LEPTON_MAX_ISO: float = 0.45
#: A track within ΔR < this of the chosen lepton is the lepton's own track and is skipped.
LEPTON_TRACK_MATCH_DR: float = 1e-4

# --- input schema ----------------------------------------------------------------------------
TRACKS = "EFlowTrack"
PHOTONS = "EFlowPhoton"
NEUTRAL_HADRONS = "EFlowNeutralHadron"
ELECTRONS = "Electron"
MUONS = "MuonTight"
MISSING_ET = "MissingET"
JETS = "Jet"

#: Delphes collection -> the fields the physics needs (the reader reads only these branches).
REQUIRED_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        TRACKS: ("PT", "Eta", "Phi", "PID", "X", "Y", "Z"),
        PHOTONS: ("ET", "Eta", "Phi"),
        NEUTRAL_HADRONS: ("ET", "Eta", "Phi"),
        ELECTRONS: ("PT", "Eta", "Phi", "Charge"),
        MUONS: ("PT", "Eta", "Phi", "Charge"),
        MISSING_ET: ("MET", "Phi"),
        JETS: ("PT", "Eta", "Phi", "BTag"),
    }
)

#: Delphes collection -> fields read when the file has them (real Delphes files do; older files of
#: ours do not). Without ``EFlowTrack.Charge`` a track's charge comes from its PDG id
#: (:func:`~.particles.charge_from_pid`).
OPTIONAL_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType({TRACKS: ("Charge",)})

#: Largest |Eta| of a readable, physical object: no detector reaches it (tracks |η| < 2.5,
#: calorimeters < 5); a larger value is a corrupt or mis-written record.
MAX_ABS_ETA = 10.0
#: Fields that are transverse momenta or energies, in any collection (must be >= 0).
MOMENTUM_FIELDS: frozenset[str] = frozenset({"PT", "ET", "MET"})

#: Names of the cut-flow masks, in order (each mask includes the previous ones). ``valid_values``:
#: every value the features read is finite, momenta are >= 0 and |Eta| <= :data:`MAX_ABS_ETA`.
CUTFLOW_STEPS: tuple[str, ...] = ("valid_values", "lepton_pt23", "isolated_lepton")
