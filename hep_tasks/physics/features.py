"""Entry point: §3 features (cut-flow, HLF, particle matrix) for one batch of events.

>>> import awkward as ak
>>> from hep_tasks.physics.constants import REQUIRED_FIELDS
>>> empty = {c: ak.Array([[{f: 0.0 for f in fs}]])[:0] for c, fs in REQUIRED_FIELDS.items()}
>>> out = compute_features(empty)
>>> out.hlf.shape, out.particles.shape, out.particle_offsets.tolist()
((0, 14), (0, 19), [0])
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Mapping

import awkward as ak
import numpy as np
from numpy.typing import NDArray

from .cones import IsolationCollections
from .constants import CUTFLOW_STEPS
from .hlf import high_level_features
from .leptons import choose_isolated_lepton
from .particles import build_particles
from .selection import flatten_collections, preselect
from .validation import check_events, invalid_values

__all__ = ["EventFeatures", "compute_features", "cutflow_counts"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventFeatures:
    """The §3 features of one batch.

    Attributes:
        cutflow: ordered, cumulative boolean masks over the input events: ``"valid_values"``
            (no NaN/inf, negative momentum or |Eta| > 10 in what is read), ``"lepton_pt23"`` (at
            least one electron or muon with PT > 23 GeV) and ``"isolated_lepton"``.
        selected: bool mask over the input events; equal to the last cut-flow mask.
        hlf: float64 ``(n_selected, 14)``, columns :data:`~.constants.HLF_FEATURES`.
        particle_offsets: int64 ``(n_selected + 1,)``; event ``k``'s rows are
            ``particles[particle_offsets[k]:particle_offsets[k + 1]]``.
        particles: float64 ``(total_rows, 19)``, columns :data:`~.constants.PARTICLE_FEATURES`;
            row 0 of each event is the isolated lepton; at most 801 rows per event.
        value_problems: ``"<Collection>.<Field> <problem>"`` -> events rejected for it
            (:func:`~.validation.invalid_values`); empty for a clean batch.
    """

    cutflow: dict[str, NDArray[np.bool_]]
    selected: NDArray[np.bool_]
    hlf: NDArray[np.float64]
    particle_offsets: NDArray[np.int64]
    particles: NDArray[np.float64]
    value_problems: dict[str, int] = field(default_factory=dict)

    @property
    def n_selected(self) -> int:
        return len(self.hlf)


def compute_features(events: Mapping[str, ak.Array]) -> EventFeatures:
    """Compute cut-flow, HLF and particle matrix (ARCHITECTURE §3) for a batch of events.

    ``events`` maps Delphes collection names to jagged record arrays (one list per event) with
    at least the fields of :data:`~.constants.REQUIRED_FIELDS`; placeholder entries must
    already be dropped. Units: GeV, rad. Raises ``ValueError`` naming any missing collection or
    field. Columnar: the pairwise ΔR work runs in numba kernels, nothing loops over events in
    Python.
    """
    n_events = check_events(events)
    flat = flatten_collections(events)
    bad, value_problems = invalid_values(flat)
    valid = ~bad
    pre = preselect(flat)

    has_lepton = valid & ((pre.electrons.counts + pre.muons.counts) > 0)
    cones = IsolationCollections.from_preselected(pre)
    lepton = choose_isolated_lepton(pre, cones).only(valid)
    selected = lepton.found  # implies has_lepton: isolated leptons are pre-selected ones
    masks = (valid, has_lepton, selected)
    cutflow = dict(zip(CUTFLOW_STEPS, masks, strict=True))

    kept = pre.take_events(selected)
    hlf = high_level_features(lepton, kept)
    particle_offsets, particles = build_particles(lepton, kept, cones.take_events(selected))
    log.debug(
        "physics features: %d events, cut-flow %s, %d particle rows",
        n_events,
        cutflow_counts(cutflow),
        len(particles),
    )
    return EventFeatures(
        cutflow=cutflow,
        selected=selected,
        hlf=hlf,
        particle_offsets=particle_offsets,
        particles=particles,
        value_problems=value_problems,
    )


def cutflow_counts(cutflow: Mapping[str, NDArray[np.bool_]]) -> dict[str, int]:
    """Number of events passing each cut-flow step, in order.

    >>> cutflow_counts({"lepton_pt23": np.array([True, False]),
    ...                 "isolated_lepton": np.array([False, False])})
    {'lepton_pt23': 1, 'isolated_lepton': 0}
    """
    return {name: int(np.count_nonzero(mask)) for name, mask in cutflow.items()}
