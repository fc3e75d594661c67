"""Writing Delphes-style ROOT files with uproot: tree ``Delphes``, branches ``Jet.PT``, counters ``Jet_size``.

The layout is the flat jagged one of uproot's ``mktree`` (ARCHITECTURE §3): for every collection a
counter branch ``<Collection>_size`` (int32) and one jagged branch ``<Collection>.<Field>`` per field,
float32 except the int32 ``PID``, ``Charge`` and ``BTag``. ``MissingET`` is a collection with exactly
one entry per event, as in Delphes. The file is written in chunks (one ``extend`` per batch), ZSTD
compressed, into ``<path>.partial`` and renamed to ``path`` only when complete.

>>> list(DELPHES_SCHEMA["Jet"])
['PT', 'Eta', 'Phi', 'BTag']
"""

from __future__ import annotations

import os

import awkward as ak
import uproot

TREE_NAME = "Delphes"

#: collection -> field -> numpy dtype, in branch order.
DELPHES_SCHEMA: dict[str, dict[str, str]] = {
    "EFlowTrack": {
        "PT": "float32", "Eta": "float32", "Phi": "float32", "PID": "int32", "Charge": "int32",
        "X": "float32", "Y": "float32", "Z": "float32",
    },
    "EFlowPhoton": {"ET": "float32", "Eta": "float32", "Phi": "float32"},
    "EFlowNeutralHadron": {"ET": "float32", "Eta": "float32", "Phi": "float32"},
    "Electron": {"PT": "float32", "Eta": "float32", "Phi": "float32", "Charge": "int32"},
    "MuonTight": {"PT": "float32", "Eta": "float32", "Phi": "float32", "Charge": "int32"},
    "Jet": {"PT": "float32", "Eta": "float32", "Phi": "float32", "BTag": "int32"},
    "MissingET": {"MET": "float32", "Phi": "float32"},
}


def branch_name(collection: str, field: str) -> str:
    """``Jet.PT``: the branch of ``field`` in ``collection``."""
    return f"{collection}.{field}"


def counter_name(collection: str) -> str:
    """``Jet_size``: the branch counting the entries of ``collection`` per event."""
    return f"{collection}_size"


def _branch_types() -> dict[str, ak.types.Type]:
    """``var * {PT: float32, ...}`` per collection: the jagged record type ``mktree`` needs."""
    return {
        collection: ak.types.ListType(
            ak.types.RecordType([ak.types.NumpyType(dtype) for dtype in fields.values()], list(fields))
        )
        for collection, fields in DELPHES_SCHEMA.items()
    }


class DelphesWriter:
    """Writes events into a new ROOT file at ``path`` (a local path); use as a context manager.

    :meth:`extend` takes one jagged record array per collection of :data:`DELPHES_SCHEMA`, all with
    the same number of events. On an exception inside the ``with`` block the partial file is removed.
    """

    def __init__(self, path: str | os.PathLike, compression_level: int = 5):
        self.path = os.fspath(path)
        self._partial = self.path + ".partial"
        self._compression_level = compression_level
        self._file = None
        self._tree = None
        self.entries = 0

    def __enter__(self) -> DelphesWriter:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        self._file = uproot.recreate(self._partial, compression=uproot.ZSTD(self._compression_level))
        self._tree = self._file.mktree(
            TREE_NAME,
            _branch_types(),
            title="Delphes-like events (hep_tasks.simulate)",
            counter_name=counter_name,
            field_name=branch_name,
        )
        return self

    def extend(self, collections: dict[str, ak.Array]) -> None:
        """Append the events of ``collections`` (collection name -> jagged records)."""
        missing = sorted(set(DELPHES_SCHEMA) - set(collections))
        if missing:
            found = ", ".join(sorted(collections))
            raise ValueError(f"missing collections {', '.join(missing)} (found: {found}) for {self.path}")
        lengths = {name: len(collections[name]) for name in DELPHES_SCHEMA}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"collections with different numbers of events {lengths} for {self.path}")
        n = next(iter(lengths.values()))
        if n == 0:
            return
        self._tree.extend({name: collections[name] for name in DELPHES_SCHEMA})
        self.entries += n

    def __exit__(self, exc_type, exc, tb) -> None:
        self._file.close()
        if exc_type is None:
            os.replace(self._partial, self.path)
        elif os.path.exists(self._partial):
            os.remove(self._partial)
