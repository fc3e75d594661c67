"""Write small constructed events as Delphes-style ROOT files (the flat layout of uproot's mktree)."""

from __future__ import annotations

import awkward as ak
import uproot

INT_FIELDS = {"PID", "Charge", "BTag"}


def collection(rows_per_event: list[list[dict]], fields: tuple[str, ...]) -> ak.Array:
    """A jagged record array with exactly ``fields`` (float32, or int32 for PID/Charge/BTag)."""
    columns = {}
    for f in fields:
        dtype = "int32" if f in INT_FIELDS else "float32"
        columns[f] = ak.values_astype(ak.Array([[r.get(f, 0) for r in ev] for ev in rows_per_event]), dtype)
    return ak.zip(columns)


def write_delphes(path, events: dict[str, ak.Array], tree: str = "Delphes") -> None:
    with uproot.recreate(path, compression=uproot.ZSTD(1)) as f:
        f.mktree(
            tree,
            {name: arr.type.content for name, arr in events.items()},
            field_name=lambda outer, inner: f"{outer}.{inner}",
            counter_name=lambda name: f"{name}_size",
        )
        f[tree].extend(events)


def simple_events(n: int = 3) -> dict[str, ak.Array]:
    """``n`` events with one isolated electron (also a track), a photon, a neutral hadron, two jets."""
    from hep_tasks.physics import REQUIRED_FIELDS

    rows = {
        "EFlowTrack": [[{"PT": 40.0 + i, "Eta": 0.5, "Phi": 1.0, "PID": 11}, {"PT": 2.0, "Eta": -1.0, "Phi": -2.0, "PID": 211, "Z": 0.1}] for i in range(n)],
        "EFlowPhoton": [[{"ET": 3.0, "Eta": 2.0, "Phi": 0.0}] for _ in range(n)],
        "EFlowNeutralHadron": [[{"ET": 5.0, "Eta": -2.0, "Phi": 3.0}] for _ in range(n)],
        "Electron": [[{"PT": 40.0 + i, "Eta": 0.5, "Phi": 1.0, "Charge": -1}] for i in range(n)],
        "MuonTight": [[] for _ in range(n)],
        "MissingET": [[{"MET": 30.0, "Phi": -1.0}] for _ in range(n)],
        "Jet": [[{"PT": 50.0, "Eta": 1.0, "Phi": 2.0, "BTag": 1}, {"PT": 35.0, "Eta": -1.5, "Phi": -2.5, "BTag": 0}] for _ in range(n)],
    }
    return {c: collection(rows[c], REQUIRED_FIELDS[c]) for c in REQUIRED_FIELDS}
