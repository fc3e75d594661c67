"""Reading Delphes-like ROOT files with uproot: both branch layouts, only the needed branches.

Two layouts are accepted (ARCHITECTURE §3):

- what Delphes writes: split TClonesArray branches ``Jet/Jet.PT`` with counters ``Jet_size``;
- what uproot's ``mktree`` writes (our simulate stage): flat jagged branches ``Jet.PT``, ``Jet_size``.

Optional fields (:data:`~hep_tasks.physics.OPTIONAL_FIELDS`, e.g. ``EFlowTrack.Charge``) are read
when the file has them, in either layout, and silently left out when it does not.

Placeholder entries of real Delphes EFlow collections (PT or ET = 0 and |Eta| = 999.9) are dropped.
Every problem raises :class:`~hep_tasks.errors.InputFileError` naming the file, the tree, and what
is missing next to what exists.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import awkward as ak
import numpy as np

from hep_tasks.errors import InputFileError
from hep_tasks.physics import OPTIONAL_FIELDS, REQUIRED_FIELDS

log = logging.getLogger(__name__)

TREE = "Delphes"
#: |Eta| at or above this marks a Delphes placeholder entry.
PLACEHOLDER_ABS_ETA = 999.0


@dataclass(frozen=True)
class TreeLayout:
    """Where each needed (collection, field) lives in one file's tree."""

    path: str
    entries: int
    branches: Mapping[str, Mapping[str, str]]  # collection -> field -> branch path

    def branch_list(self) -> list[str]:
        return [b for fields in self.branches.values() for b in fields.values()]


def _open_tree(path: str):
    import uproot

    try:
        file = uproot.open(path)
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except Exception as err:  # uproot raises many kinds for a damaged or non-ROOT file
        raise InputFileError(path, f"not a readable ROOT file ({type(err).__name__}: {_short(err)})") from None
    try:
        keys = file.keys(cycle=False)
        if TREE not in keys:
            raise InputFileError(path, f"no TTree {TREE!r} (found: {', '.join(keys) or 'nothing'})")
        tree = file[TREE]
        if not hasattr(tree, "num_entries"):
            raise InputFileError(path, f"{TREE!r} is a {type(tree).__name__}, not a TTree")
        return tree
    except InputFileError:
        raise
    except Exception as err:
        raise InputFileError(path, f"unreadable TTree {TREE!r} ({type(err).__name__}: {_short(err)})") from None


def inspect_file(path: str) -> TreeLayout:
    """Open ``path``, find the tree and the branches of every needed field; raises InputFileError."""
    tree = _open_tree(path)
    branches = branch_map(tree.keys(recursive=True), path)
    check_branch_types(tree, branches, path)
    if tree.num_entries == 0:
        raise InputFileError(path, f"empty tree {TREE!r} (0 entries)")
    return TreeLayout(path=path, entries=int(tree.num_entries), branches=branches)


def branch_map(keys: list[str], path: str) -> dict[str, dict[str, str]]:
    """collection -> field -> branch path for both layouts; InputFileError names what is missing.

    Every field of ``REQUIRED_FIELDS`` must exist; those of ``OPTIONAL_FIELDS`` are added when they do.
    """
    available: dict[str, str] = {}
    for key in keys:
        available.setdefault(key.rsplit("/", 1)[-1], key)  # "Jet/Jet.PT" and "Jet.PT" -> "Jet.PT"
    missing_collections = [c for c in REQUIRED_FIELDS if not any(f"{c}.{f}" in available for f in REQUIRED_FIELDS[c])]
    if missing_collections:
        found = sorted({name.split(".")[0] for name in available if "." in name})
        raise InputFileError(
            path,
            f"missing collections {', '.join(missing_collections)} (found: {', '.join(found) or 'none'}) "
            f"in tree {TREE!r}",
        )
    branches: dict[str, dict[str, str]] = {}
    for collection, fields in REQUIRED_FIELDS.items():
        missing = [f"{collection}.{f}" for f in fields if f"{collection}.{f}" not in available]
        if missing:
            near = difflib.get_close_matches(missing[0], list(available), n=4, cutoff=0.6)
            raise InputFileError(
                path,
                f"missing branches {', '.join(missing)} (nearest existing: {', '.join(near) or 'none'}) "
                f"in tree {TREE!r}",
            )
        branches[collection] = {f: available[f"{collection}.{f}"] for f in fields}
    for collection, fields in OPTIONAL_FIELDS.items():
        branches[collection].update(
            {f: available[f"{collection}.{f}"] for f in fields if f"{collection}.{f}" in available}
        )
    return branches


def check_branch_types(tree, branches: Mapping[str, Mapping[str, str]], path: str) -> None:
    """Every needed branch must hold a list of numbers per event (one per object of its collection);
    a scalar per event, or booleans or strings, would be broadcast or misread silently."""
    import uproot

    for fields in branches.values():
        for name in fields.values():
            interpretation = tree[name].interpretation
            dtype = getattr(getattr(interpretation, "content", None), "from_dtype", None)
            if not isinstance(interpretation, uproot.AsJagged) or dtype is None or dtype.kind not in "iuf":
                raise InputFileError(
                    path, f"branch {name} holds {tree[name].typename}, not a list of numbers per event, in tree {TREE!r}"
                )


def iterate_events(
    layout: TreeLayout, entry_start: int, entry_stop: int, step: int = 2000
) -> Iterator[tuple[int, dict[str, ak.Array]]]:
    """Yield ``(first entry, events)`` chunks of at most ``step`` entries from ``[start, stop)``.

    ``events`` maps each collection to a jagged record array of the needed fields (placeholders
    dropped), the input :func:`hep_tasks.physics.compute_features` expects.
    """
    tree = _open_tree(layout.path)
    names = layout.branch_list()
    start = entry_start
    try:
        for arrays in tree.iterate(names, entry_start=entry_start, entry_stop=entry_stop, step_size=step, library="ak"):
            events = {
                collection: _drop_placeholders(ak.zip({f: arrays[b] for f, b in fields.items()}))
                for collection, fields in layout.branches.items()
            }
            yield start, events
            start += len(arrays)
    except InputFileError:
        raise
    except Exception as err:
        raise InputFileError(
            layout.path,
            f"unreadable entries {start}-{entry_stop} of tree {TREE!r} ({type(err).__name__}: {_short(err)})",
        ) from None


def _drop_placeholders(collection: ak.Array) -> ak.Array:
    fields = ak.fields(collection)
    if "Eta" not in fields:
        return collection
    momentum = collection["PT"] if "PT" in fields else collection["ET"] if "ET" in fields else None
    if momentum is None:
        return collection
    placeholder = (momentum == 0) & (np.abs(collection["Eta"]) >= PLACEHOLDER_ABS_ETA)
    if not ak.any(placeholder):
        return collection
    return collection[~placeholder]


def _short(err: Exception, limit: int = 200) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
