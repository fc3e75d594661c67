"""The collections isolation cones sum over, and the (IsoCh, IsoGamma, IsoNeu) of any particles.

The pre-selected, uncapped tracks, photons and neutral hadrons of a batch are copied once,
sorted by η inside each event, so that every isolation query only visits its η window.
PT / ET in GeV, angles in rad; isolations are dimensionless.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .columnar import FlatCollection, offsets_from_counts
from .constants import ISOLATION_CONE
from .isolation import isolation, sort_within_events
from .selection import PreselectedEvents

__all__ = [
    "ConeCollection",
    "IsolationCollections",
    "relative_isolations",
    "member_isolations",
]


@dataclass(frozen=True)
class ConeCollection:
    """One cone collection: PT (GeV), η, φ (rad), sorted by ascending η inside each event.

    ``order`` holds, for each sorted member, its flat index in the collection it was made from
    (collection order), so that results computed in η order can be put back.
    """

    offsets: NDArray[np.int64]
    pt: NDArray[np.float64]
    eta: NDArray[np.float64]
    phi: NDArray[np.float64]
    order: NDArray[np.int64]

    @classmethod
    def from_flat(cls, flat: FlatCollection, pt_field: str) -> ConeCollection:
        """Sort ``flat`` by η inside each event; ``pt_field`` is ``"PT"`` or ``"ET"``."""
        perm = sort_within_events(flat.offsets, flat["Eta"])
        return cls(flat.offsets, flat[pt_field][perm], flat["Eta"][perm], flat["Phi"][perm], perm)

    def take_events(self, event_mask: NDArray[np.bool_]) -> ConeCollection:
        """Keep whole events where ``event_mask`` is true (order inside events unchanged).

        ``order`` then refers to the source collection restricted to the same events.
        """
        counts = np.diff(self.offsets)
        keep = np.repeat(event_mask, counts)  # same membership in η order and collection order
        new_index = np.cumsum(keep) - 1
        return ConeCollection(
            offsets_from_counts(counts[event_mask]),
            self.pt[keep],
            self.eta[keep],
            self.phi[keep],
            new_index[self.order[keep]],
        )


@dataclass(frozen=True)
class IsolationCollections:
    """Cone collections of IsoCh (tracks), IsoGamma (photons) and IsoNeu (neutral hadrons)."""

    tracks: ConeCollection
    photons: ConeCollection
    neutral_hadrons: ConeCollection

    @classmethod
    def from_preselected(cls, events: PreselectedEvents) -> IsolationCollections:
        return cls(
            ConeCollection.from_flat(events.tracks, "PT"),
            ConeCollection.from_flat(events.photons, "ET"),
            ConeCollection.from_flat(events.neutral_hadrons, "ET"),
        )

    def take_events(self, event_mask: NDArray[np.bool_]) -> IsolationCollections:
        return IsolationCollections(
            self.tracks.take_events(event_mask),
            self.photons.take_events(event_mask),
            self.neutral_hadrons.take_events(event_mask),
        )


def relative_isolations(
    offsets: NDArray[np.int64],
    pt: NDArray[np.float64],
    eta: NDArray[np.float64],
    phi: NDArray[np.float64],
    cones: IsolationCollections,
    *,
    is_track: bool,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(IsoCh, IsoGamma, IsoNeu) of particles (flat, ``offsets`` over the events of ``cones``).

    ``pt`` is each particle's PT (or ET) in GeV. ``is_track`` subtracts 1 from IsoCh, the
    particle's own PT being in the track sum: true for tracks and for electrons and muons (which
    also appear in ``EFlowTrack``), false for photons and neutral hadrons, whose IsoGamma /
    IsoNeu include themselves (the 2019 code subtracted 1 for them too; we do not).
    """
    out = []
    for cone, self_in in (
        (cones.tracks, is_track),
        (cones.photons, False),
        (cones.neutral_hadrons, False),
    ):
        out.append(
            isolation(
                offsets, pt, eta, phi, cone.offsets, cone.pt, cone.eta, cone.phi,
                ISOLATION_CONE, self_in_collection=self_in,
            )  # fmt: skip
        )
    return out[0], out[1], out[2]


def member_isolations(
    members: ConeCollection, cones: IsolationCollections, *, is_track: bool
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(IsoCh, IsoGamma, IsoNeu) of every member of one of the ``cones`` collections.

    Computed in η order (the cheapest order: every cone window slides forward) and returned in
    collection order, i.e. aligned with the :class:`FlatCollection` ``members`` was made from.
    """
    in_eta_order = relative_isolations(
        members.offsets, members.pt, members.eta, members.phi, cones, is_track=is_track
    )
    out = []
    for iso in in_eta_order:
        restored = np.empty_like(iso)
        restored[members.order] = iso
        out.append(restored)
    return out[0], out[1], out[2]
