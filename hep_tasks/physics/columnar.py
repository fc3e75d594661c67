"""Flat columns + offsets: the layout the physics code works on.

An awkward jagged record array (one list per event) becomes a :class:`FlatCollection`: one
float64 numpy column per field over all members of all events, plus ``offsets`` (int64,
``n_events + 1``). Selections are boolean masks, either over members (:meth:`filter`) or over
events (:meth:`take_events`); neither loops over events in Python.

>>> import awkward as ak
>>> arr = ak.Array([[{"PT": 1.0}, {"PT": 0.2}], [], [{"PT": 3.0}]])
>>> c = FlatCollection.from_awkward(arr, ("PT",))
>>> c.offsets.tolist(), c["PT"].tolist()
([0, 2, 2, 3], [1.0, 0.2, 3.0])
>>> c.filter(c["PT"] > 0.5).offsets.tolist()
[0, 1, 1, 2]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import awkward as ak
import numpy as np
from numpy.typing import NDArray

__all__ = ["FlatCollection", "offsets_from_counts"]


def offsets_from_counts(counts: NDArray[np.integer]) -> NDArray[np.int64]:
    """Offsets (int64, ``len(counts) + 1``) starting at 0 from per-event counts.

    >>> offsets_from_counts(np.array([2, 0, 1])).tolist()
    [0, 2, 2, 3]
    """
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


@dataclass(frozen=True)
class FlatCollection:
    """One collection of a batch as flat float64 columns over members + event offsets."""

    offsets: NDArray[np.int64]
    columns: Mapping[str, NDArray[np.float64]]

    @classmethod
    def from_awkward(cls, array: ak.Array, fields: Iterable[str]) -> FlatCollection:
        """Flatten the jagged record ``array`` (one list per event) into float64 columns.

        An array with one record per event (not a list) is read as one member per event. The
        common layout (list offsets over a record of plain numeric buffers, as uproot and
        ``ak.Array`` build it) is read straight from its buffers; any other goes through
        ``ak.flatten``.
        """
        fast = _from_list_of_records(array, tuple(fields))
        if fast is not None:
            return fast
        if array.ndim == 1:
            counts = np.ones(len(array), dtype=np.int64)
            columns = {f: _to_float64(array[f]) for f in fields}
        else:
            counts = np.asarray(ak.to_numpy(ak.num(array, axis=1)), dtype=np.int64)
            columns = {f: _to_float64(ak.flatten(array[f], axis=1)) for f in fields}
        return cls(offsets_from_counts(counts), columns)

    def __getitem__(self, field: str) -> NDArray[np.float64]:
        return self.columns[field]

    def __len__(self) -> int:
        """Number of members over all events."""
        return int(self.offsets[-1])

    @property
    def n_events(self) -> int:
        return len(self.offsets) - 1

    @property
    def counts(self) -> NDArray[np.int64]:
        """Members per event."""
        return np.diff(self.offsets)

    def event_index(self) -> NDArray[np.int64]:
        """Event number of each member."""
        return np.repeat(np.arange(self.n_events, dtype=np.int64), self.counts)

    def local_index(self) -> NDArray[np.int64]:
        """Position of each member inside its event (0, 1, ...)."""
        return np.arange(len(self), dtype=np.int64) - np.repeat(self.offsets[:-1], self.counts)

    def filtered_offsets(self, keep: NDArray[np.bool_]) -> NDArray[np.int64]:
        """Offsets the collection would have after :meth:`filter` with ``keep``."""
        cumulative = np.zeros(len(keep) + 1, dtype=np.int64)
        np.cumsum(keep, out=cumulative[1:])
        return cumulative[self.offsets]

    def filter(self, keep: NDArray[np.bool_]) -> FlatCollection:
        """Keep the members where ``keep`` (bool over members) is true; all events stay."""
        return FlatCollection(
            self.filtered_offsets(keep), {f: c[keep] for f, c in self.columns.items()}
        )

    def take_events(self, event_mask: NDArray[np.bool_]) -> FlatCollection:
        """Keep whole events where ``event_mask`` (bool over events) is true."""
        counts = self.counts
        keep = np.repeat(event_mask, counts)
        return FlatCollection(
            offsets_from_counts(counts[event_mask]),
            {f: c[keep] for f, c in self.columns.items()},
        )


def _from_list_of_records(array: ak.Array, fields: tuple[str, ...]) -> FlatCollection | None:
    """Zero-overhead path for ListOffsetArray(RecordArray(NumpyArray...)); None otherwise."""
    layout = ak.to_layout(array)
    if not isinstance(layout, ak.contents.ListOffsetArray):
        return None
    record = layout.content
    if not isinstance(record, ak.contents.RecordArray):
        return None
    buffers = []
    for field in fields:
        content = record.content(field)
        if not isinstance(content, ak.contents.NumpyArray) or content.data.ndim != 1:
            return None
        buffers.append(content.data)
    offsets = np.asarray(layout.offsets.data, dtype=np.int64)
    start, stop = int(offsets[0]), int(offsets[-1])
    columns = {
        f: np.asarray(np.asarray(b)[start:stop], dtype=np.float64) for f, b in zip(fields, buffers)
    }
    return FlatCollection(offsets - start, columns)


def _to_float64(array: ak.Array) -> NDArray[np.float64]:
    return np.asarray(ak.to_numpy(array, allow_missing=False), dtype=np.float64)
