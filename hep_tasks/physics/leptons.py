"""Isolation of the pre-selected charged leptons and the choice of the isolated lepton (§3).

Per flavour, the first lepton in collection order (among those with PT > 23 GeV) whose
IsoCh + IsoGamma + IsoNeu < 0.45 is the candidate; when an event has both an electron and a
muon candidate, the one with the higher PT wins (an exact tie goes to the electron). The 2019
code chose by the larger η; we do not.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray

from .columnar import FlatCollection
from .cones import IsolationCollections, relative_isolations
from .constants import ISOLATED_LEPTON_MAX_ISO
from .isolation import first_index_per_event
from .selection import PreselectedEvents

__all__ = ["ChosenLeptons", "choose_isolated_lepton"]


@dataclass(frozen=True)
class ChosenLeptons:
    """The isolated lepton of each event that has one.

    ``found`` is a bool mask over all events of the batch; every other array has one entry per
    event where ``found`` is true. PT in GeV, angles in rad, isolations dimensionless,
    ``charge`` ±1, ``is_electron`` 1.0 (electron) or 0.0 (muon).
    """

    found: NDArray[np.bool_]
    pt: NDArray[np.float64]
    eta: NDArray[np.float64]
    phi: NDArray[np.float64]
    charge: NDArray[np.float64]
    iso_ch: NDArray[np.float64]
    iso_gamma: NDArray[np.float64]
    iso_neu: NDArray[np.float64]
    is_electron: NDArray[np.float64]

    def only(self, events: NDArray[np.bool_]) -> ChosenLeptons:
        """The leptons of the events in the bool mask ``events`` (over all events) only."""
        keep = events[self.found]
        values = {f.name: getattr(self, f.name)[keep] for f in fields(self) if f.name != "found"}
        return ChosenLeptons(found=self.found & events, **values)


def _first_isolated(
    leptons: FlatCollection, cones: IsolationCollections
) -> tuple[NDArray[np.int64], tuple[NDArray[np.float64], ...]]:
    """Flat index of each event's first isolated lepton (-1: none) and all leptons' isolations.

    Leptons count as tracks (IsoCh self-subtraction): every electron and muon is also in
    ``EFlowTrack``.
    """
    isos = relative_isolations(
        leptons.offsets, leptons["PT"], leptons["Eta"], leptons["Phi"], cones, is_track=True
    )
    isolated = (isos[0] + isos[1] + isos[2]) < ISOLATED_LEPTON_MAX_ISO
    return first_index_per_event(leptons.offsets, isolated), isos


def _pick(values: NDArray[np.float64], index: NDArray[np.int64]) -> NDArray[np.float64]:
    """``values[index]`` per event, NaN where ``index`` is -1."""
    out = np.full(index.shape, np.nan)
    ok = index >= 0
    out[ok] = values[index[ok]]
    return out


def choose_isolated_lepton(
    events: PreselectedEvents, cones: IsolationCollections
) -> ChosenLeptons:
    """Choose each event's isolated lepton among the pre-selected electrons and muons.

    ``cones`` are the isolation collections of the same events.
    """
    electrons, muons = events.electrons, events.muons
    first_e, isos_e = _first_isolated(electrons, cones)
    first_m, isos_m = _first_isolated(muons, cones)
    has_e = first_e >= 0
    has_m = first_m >= 0
    pt_e = _pick(electrons["PT"], first_e)
    pt_m = _pick(muons["PT"], first_m)
    take_e = has_e & ~(has_m & (pt_m > pt_e))
    found = has_e | has_m
    take_e_sel = take_e[found]

    def choose(e_values: NDArray[np.float64], m_values: NDArray[np.float64]) -> NDArray[np.float64]:
        from_e = _pick(e_values, first_e)[found]
        from_m = _pick(m_values, first_m)[found]
        return np.where(take_e_sel, from_e, from_m)

    return ChosenLeptons(
        found=found,
        pt=choose(electrons["PT"], muons["PT"]),
        eta=choose(electrons["Eta"], muons["Eta"]),
        phi=choose(electrons["Phi"], muons["Phi"]),
        charge=choose(electrons["Charge"], muons["Charge"]),
        iso_ch=choose(isos_e[0], isos_m[0]),
        iso_gamma=choose(isos_e[1], isos_m[1]),
        iso_neu=choose(isos_e[2], isos_m[2]),
        is_electron=take_e_sel.astype(np.float64),
    )
