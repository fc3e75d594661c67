"""Flat per-object columns with an event index: the working format of the detector simulation.

A batch of events is held as one numpy array per quantity over all objects of all events, plus
``event`` (the index of each object's event in the batch). Selections are boolean masks, sorting is
one ``lexsort`` for the whole batch, and :meth:`FlatObjects.to_awkward` turns the result into the
jagged records that the ROOT writer extends the tree with.

>>> import numpy as np
>>> objs = FlatObjects(np.array([1, 0, 1]), {"PT": np.array([5.0, 7.0, 9.0])})
>>> objs.sorted_by("PT").to_awkward(2, {"PT": "float32"}).PT.tolist()
[[7.0], [9.0, 5.0]]
"""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np


@dataclass
class FlatObjects:
    """Objects of many events: ``event[i]`` is the event of object ``i``; ``columns`` hold its quantities."""

    event: np.ndarray
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.event)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def select(self, mask: np.ndarray) -> FlatObjects:
        """The objects where ``mask`` (boolean, or an index array) selects them."""
        return FlatObjects(self.event[mask], {k: v[mask] for k, v in self.columns.items()})

    def sorted_by(self, key: str) -> FlatObjects:
        """Grouped by event (ascending) and, within an event, by decreasing ``key``; ties keep their order."""
        order = np.lexsort((-self.columns[key], self.event))
        return self.select(order)

    def in_events(self, keep: np.ndarray) -> FlatObjects:
        """Only the objects of events where ``keep`` (one boolean per event) is true, with the events
        renumbered 0, 1, ... in their original order."""
        new_index = np.cumsum(keep) - 1
        selected = self.select(keep[self.event])
        selected.event = new_index[selected.event]
        return selected

    def counts(self, n_events: int) -> np.ndarray:
        """Number of objects in each of ``n_events`` events."""
        return np.bincount(self.event, minlength=n_events)

    def to_awkward(self, n_events: int, fields: dict[str, str]) -> ak.Array:
        """A jagged record array (one list per event) of ``fields`` (name -> numpy dtype), in the
        objects' current order, which must be grouped by event (see :meth:`sorted_by`)."""
        if len(self.event) > 1 and np.any(np.diff(self.event) < 0):
            raise ValueError("FlatObjects.to_awkward needs the objects grouped by event; call sorted_by() first")
        offsets = np.zeros(n_events + 1, dtype=np.int64)
        np.cumsum(self.counts(n_events), out=offsets[1:])
        contents = [
            ak.contents.NumpyArray(np.ascontiguousarray(self.columns[f], dtype=dtype)) for f, dtype in fields.items()
        ]
        record = ak.contents.RecordArray(contents, list(fields), length=len(self.event))
        return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets), record))


def concatenate(parts: list[FlatObjects], names: list[str]) -> FlatObjects:
    """The objects of ``parts`` together (columns ``names``, which every part must have), grouped by event."""
    event = np.concatenate([p.event for p in parts])
    columns = {n: np.concatenate([p.columns[n] for p in parts]) for n in names}
    order = np.argsort(event, kind="stable")
    return FlatObjects(event[order], {n: c[order] for n, c in columns.items()})


def delta_phi(phi1: np.ndarray, phi2: np.ndarray) -> np.ndarray:
    """φ1 − φ2 wrapped into [−π, π) [rad]."""
    return (phi1 - phi2 + np.pi) % (2 * np.pi) - np.pi


def pairs_within_events(event_a: np.ndarray, event_b: np.ndarray, n_events: int) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j) index pairs with ``event_a[i] == event_b[j]`` (``event_b`` grouped by event): the
    per-event Cartesian product of two flat collections, without a loop over events.

    >>> pairs_within_events(np.array([0, 0, 1]), np.array([0, 1, 1]), 2)
    (array([0, 1, 2, 2]), array([0, 0, 1, 2]))
    """
    count_b = np.bincount(event_b, minlength=n_events)
    start_b = np.zeros(n_events, dtype=np.int64)
    np.cumsum(count_b[:-1], out=start_b[1:])
    per_a = count_b[event_a]  # partners of each object of a
    i = np.repeat(np.arange(len(event_a)), per_a)
    first_pair_of_a = np.repeat(np.cumsum(per_a) - per_a, per_a)
    j = start_b[event_a[i]] + (np.arange(len(i)) - first_pair_of_a)
    return i, j
