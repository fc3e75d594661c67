"""Input check for the physics features: every required collection and field, one event count.

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

from .constants import MISSING_ET, REQUIRED_FIELDS

__all__ = ["check_events"]


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
