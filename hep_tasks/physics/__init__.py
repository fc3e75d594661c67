"""Physics features of ARCHITECTURE §3, columnar (numpy + awkward, numba for pairwise ΔR).

Units everywhere: GeV for momenta and energies, radians for angles.

Map of the subpackage (one concern per module):

- :mod:`.constants` — feature names (``HLF_FEATURES``, ``PARTICLE_FEATURES``), caps
  (``MAX_TRACKS`` = 450, ``MAX_PHOTONS`` = 150, ``MAX_NEUTRAL_HADRONS`` = 200,
  ``MAX_PARTICLES`` = 801), cut values, ``ISOLATION_CONE``, ``ISOLATED_LEPTON_MAX_ISO`` and
  ``REQUIRED_FIELDS`` (collection -> fields, what the ROOT reader must read), ``OPTIONAL_FIELDS``
  (read when present: ``EFlowTrack.Charge``).
- :mod:`.kinematics` — ``delta_phi``, ``wrap_phi``, ``delta_r``, ``four_vector`` (numpy).
- :mod:`.isolation` — numba kernels over flat arrays + offsets: per-event η sort, cone sums,
  relative isolation, first-true-per-event, lepton-track match with cap.
- :mod:`.columnar` — ``FlatCollection``: jagged awkward array -> flat float64 columns + offsets.
- :mod:`.cones` — the η-sorted, uncapped cone collections and (IsoCh, IsoGamma, IsoNeu).
- :mod:`.validation` — ``check_events``: input collections/fields, with helpful errors.
- :mod:`.selection` — object pre-selection (``preselect``).
- :mod:`.leptons` — lepton isolation and the isolated-lepton choice.
- :mod:`.particles` — the particle matrix (≤ 801 rows x 19 per event, real rows only).
- :mod:`.hlf` — the 14 high-level features, ``transverse_mass``.
- :mod:`.features` — the entry point ``compute_features`` -> ``EventFeatures``.

Deliberate departures from the 2019 reference code (§3 "known defects"): MT has its square
root; only tracks (and the charged leptons, which are also tracks) get the IsoCh
self-subtraction, photons and neutral hadrons none; Δφ is wrapped into [-π, π]; the
electron/muon choice takes the higher PT, not the larger η; a track's charge is its electric
charge (``EFlowTrack.Charge``, or from the PDG id with −sign(PID) for e, μ, τ), not sign(PID).

>>> import awkward as ak
>>> from hep_tasks.physics import REQUIRED_FIELDS, compute_features
>>> batch = {c: ak.Array([[{f: 0.0 for f in fs}]])[:0] for c, fs in REQUIRED_FIELDS.items()}
>>> compute_features(batch).hlf.shape
(0, 14)
"""

# ruff: noqa: F401 - the TYPE_CHECKING imports name what __getattr__ re-exports
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # also what datasets.code_version's import graph sees
    from .constants import (
        CUTFLOW_STEPS,
        HLF_FEATURES,
        HLF_INDEX,
        ISOLATED_LEPTON_MAX_ISO,
        ISOLATION_CONE,
        MAX_NEUTRAL_HADRONS,
        MAX_PARTICLES,
        MAX_PHOTONS,
        MAX_TRACKS,
        OPTIONAL_FIELDS,
        PARTICLE_FEATURES,
        PARTICLE_INDEX,
        REQUIRED_FIELDS,
    )
    from .features import EventFeatures, compute_features, cutflow_counts
    from .hlf import transverse_mass
    from .kinematics import delta_phi, delta_r, four_vector, wrap_phi
    from .particles import charge_from_pid
    from .validation import check_events

#: Where each public name lives: imported on first use (PEP 562), so that code needing only the
#: constants or ΔR (prepare's Python tasks) does not load numba and awkward.
_HOME = {
    **dict.fromkeys(
        ["CUTFLOW_STEPS", "HLF_FEATURES", "HLF_INDEX", "ISOLATED_LEPTON_MAX_ISO", "ISOLATION_CONE",
         "MAX_NEUTRAL_HADRONS", "MAX_PARTICLES", "MAX_PHOTONS", "MAX_TRACKS", "OPTIONAL_FIELDS",
         "PARTICLE_FEATURES", "PARTICLE_INDEX", "REQUIRED_FIELDS"],
        "constants",
    ),
    **dict.fromkeys(["EventFeatures", "compute_features", "cutflow_counts"], "features"),
    "transverse_mass": "hlf",
    **dict.fromkeys(["delta_phi", "delta_r", "four_vector", "wrap_phi"], "kinematics"),
    "charge_from_pid": "particles",
    "check_events": "validation",
}  # fmt: skip

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])
