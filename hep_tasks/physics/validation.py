"""Input checks for the physics features: every required collection and field, one event count
(:func:`check_events`, an error for the whole batch), and readable but unphysical values
(:func:`invalid_values`, per event, so that the other events of a file are kept).

Errors name what is missing and what exists, so a reader bug shows at once:

>>> import awkward as ak
>>> check_events({"Jet": ak.Array([[{"PT": 40.0}]])})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: missing collections EFlowTrack, EFlowPhoton, ..., MissingET (found: Jet)
"""

from __future__ import annotations

from typing import Mapping

import awkward as ak
import numpy as np
from numpy.typing import NDArray

from .columnar import FlatCollection
from .constants import MAX_ABS_ETA, MISSING_ET, MOMENTUM_FIELDS, REQUIRED_FIELDS

__all__ = ["check_events", "invalid_values"]


def check_events(events: Mapping[str, ak.Array]) -> int:
    """Check the batch against :data:`~.constants.REQUIRED_FIELDS`; return its number of events.

    Raises ``ValueError`` for a missing collection, a missing field (listing the fields that
    exist), collections that disagree on the number of events, or a ``MissingET`` collection
    without exactly one entry per event.
    """
    missing = [name for name in REQUIRED_FIELDS if name not in events]
    if missing:
        found = ", ".join(map(str, events)) or "none"
        raise ValueError(f"missing collections {', '.join(missing)} (found: {found})")
    problems = []
    for name, fields in REQUIRED_FIELDS.items():
        present = ak.fields(events[name])
        absent = [f for f in fields if f not in present]
        if absent:
            problems.append(
                f"collection {name} misses fields {', '.join(absent)} "
                f"(found: {', '.join(present) or 'none'})"
            )
    if problems:
        raise ValueError("; ".join(problems))

    lengths = {name: len(events[name]) for name in REQUIRED_FIELDS}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} {n}" for name, n in lengths.items())
        raise ValueError(f"collections disagree on the number of events: {listed}")

    met = events[MISSING_ET]
    if met.ndim > 1:
        counts = np.asarray(ak.to_numpy(ak.num(met, axis=1)))
        bad = np.flatnonzero(counts != 1)
        if bad.size:
            raise ValueError(
                f"{MISSING_ET} must have exactly one entry per event; event {int(bad[0])} "
                f"has {int(counts[bad[0]])} ({bad.size} such events)"
            )
    return next(iter(lengths.values()))


def invalid_values(collections: Mapping[str, FlatCollection]) -> tuple[NDArray[np.bool_], dict[str, int]]:
    """Events holding a value the features must not use: NaN or ±inf in any field read (required or
    optional), a negative PT/ET/MET, or |Eta| > :data:`~.constants.MAX_ABS_ETA`.

    ``collections`` are those of :func:`~.selection.flatten_collections`. Returns (``bad``, a bool
    mask over the events; ``problems``, ``"<Collection>.<Field> <problem>"`` -> number of events
    with it, only those that occur).

    >>> from hep_tasks.physics.selection import flatten_collections
    >>> events = {c: ak.Array([[dict.fromkeys(fs, 0.0)]] * 2) for c, fs in REQUIRED_FIELDS.items()}
    >>> events["Jet"] = ak.Array([[{"PT": 40.0, "Eta": 0.1, "Phi": 0.0, "BTag": 0}],
    ...                           [{"PT": -1.0, "Eta": 11.0, "Phi": float("nan"), "BTag": 0}]])
    >>> bad, problems = invalid_values(flatten_collections(events))
    >>> bad.tolist(), problems
    ([False, True], {'Jet.PT negative': 1, 'Jet.Eta beyond |10|': 1, 'Jet.Phi NaN/inf': 1})
    """
    n_events = len(collections[MISSING_ET].offsets) - 1
    bad = np.zeros(n_events, dtype=bool)
    problems: dict[str, int] = {}
    for name, collection in collections.items():
        event_of_member = None
        for field, values in collection.columns.items():
            finite = np.isfinite(values)
            checks = [("NaN/inf", ~finite)]  # the range checks below count finite values only
            if field in MOMENTUM_FIELDS:
                checks.append(("negative", finite & (values < 0)))
            if field == "Eta":
                checks.append((f"beyond |{MAX_ABS_ETA:g}|", finite & (np.abs(values) > MAX_ABS_ETA)))
            for problem, flags in checks:
                if not flags.any():  # the common case: one pass over the column, nothing more
                    continue
                if event_of_member is None:
                    event_of_member = collection.event_index()
                hit = np.zeros(n_events, dtype=bool)
                hit[event_of_member[flags]] = True
                problems[f"{name}.{field} {problem}"] = int(np.count_nonzero(hit))
                bad |= hit
    return bad, problems
