"""Object pre-selection of ARCHITECTURE §3, as boolean masks over flat members.

Tracks PT > 0.5 GeV; photons and neutral hadrons ET > 1.0 GeV; jets PT > 30 GeV and |η| < 2.6;
electrons and muons PT > 23 GeV. All cuts are strict. ``MissingET`` is not cut (one entry per
event).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import awkward as ak
import numpy as np
from numpy.typing import NDArray

from . import constants as C
from .columnar import FlatCollection

__all__ = ["PreselectedEvents", "preselect"]


@dataclass(frozen=True)
class PreselectedEvents:
    """The pre-selected collections of one batch, all over the same events (flat + offsets).

    ``photons`` and ``neutral_hadrons`` keep their Delphes field name ``ET`` (GeV).
    """

    tracks: FlatCollection
    photons: FlatCollection
    neutral_hadrons: FlatCollection
    electrons: FlatCollection
    muons: FlatCollection
    jets: FlatCollection
    missing_et: FlatCollection

    @property
    def n_events(self) -> int:
        return self.missing_et.n_events

    def take_events(self, event_mask: NDArray[np.bool_]) -> PreselectedEvents:
        """The same collections restricted to the events where ``event_mask`` is true."""
        return PreselectedEvents(
            *(getattr(self, f).take_events(event_mask) for f in self.__dataclass_fields__)
        )


def flatten_collections(events: Mapping[str, ak.Array]) -> dict[str, FlatCollection]:
    """The required fields of every collection (and the optional ones it has, see
    :data:`~.constants.OPTIONAL_FIELDS`) as flat columns.

    ``events`` must already have passed :func:`~.validation.check_events`.
    """
    return {
        name: FlatCollection.from_awkward(events[name], fields + _optional_fields(events[name], name))
        for name, fields in C.REQUIRED_FIELDS.items()
    }


def preselect(flat: Mapping[str, FlatCollection]) -> PreselectedEvents:
    """Apply the §3 object cuts to the collections of :func:`flatten_collections`."""
    tracks = flat[C.TRACKS]
    photons = flat[C.PHOTONS]
    neutral = flat[C.NEUTRAL_HADRONS]
    electrons = flat[C.ELECTRONS]
    muons = flat[C.MUONS]
    jets = flat[C.JETS]
    return PreselectedEvents(
        tracks=tracks.filter(tracks["PT"] > C.TRACK_MIN_PT),
        photons=photons.filter(photons["ET"] > C.PHOTON_MIN_ET),
        neutral_hadrons=neutral.filter(neutral["ET"] > C.NEUTRAL_HADRON_MIN_ET),
        electrons=electrons.filter(electrons["PT"] > C.LEPTON_MIN_PT),
        muons=muons.filter(muons["PT"] > C.LEPTON_MIN_PT),
        jets=jets.filter((jets["PT"] > C.JET_MIN_PT) & (np.abs(jets["Eta"]) < C.JET_MAX_ABS_ETA)),
        missing_et=flat[C.MISSING_ET],
    )


def _optional_fields(collection: ak.Array, name: str) -> tuple[str, ...]:
    """The fields of :data:`~.constants.OPTIONAL_FIELDS` that ``collection`` has."""
    present = ak.fields(collection)
    return tuple(f for f in C.OPTIONAL_FIELDS.get(name, ()) if f in present)
