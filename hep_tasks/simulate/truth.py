"""From Pythia's event records to flat generator-level arrays, and the generator-level lepton filter.

``Pythia.nextBatch`` returns the full event records of a batch as one Awkward array (filled in C++).
:func:`read_batch` flattens the few fields we need into numpy columns over all particles of the
batch (see ``flat.py``) and keeps two sets:

- ``final``: visible final-state particles (status > 0, neutrinos dropped) with PDG ``pid``,
  ``charge`` [e], ``px``, ``py``, ``pz``, ``e``, ``pt`` [GeV], ``eta``, ``phi`` [rad] and production
  vertex ``x``, ``y``, ``z`` [mm] (0 for particles Pythia gives no vertex, i.e. prompt ones);
- ``heavy``: b- and c-hadrons (any status, so also those that decayed) with pT above a threshold,
  with ``flavour`` (5 or 4), ``eta``, ``phi``: the truth that jet b-tagging matches to.

Particle charges come from Pythia's particle data through :class:`ChargeTable` (one lookup per
distinct PDG id, cached).
"""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np

from hep_tasks.simulate.flat import FlatObjects

NEUTRINOS = (12, 14, 16)


class ChargeTable:
    """Charge [e] of a PDG id from Pythia's ``ParticleData``, vectorised over arrays of ids."""

    def __init__(self, particle_data):
        self._particle_data = particle_data
        self._cache: dict[int, int] = {}

    def __call__(self, pid: np.ndarray) -> np.ndarray:
        unique, inverse = np.unique(pid, return_inverse=True)
        values = np.empty(len(unique), dtype=np.int8)
        for k, code in enumerate(unique.tolist()):
            charge = self._cache.get(code)
            if charge is None:
                charge = self._cache[code] = int(round(self._particle_data.charge(code)))
            values[k] = charge
        return values[inverse]


@dataclass
class TruthBatch:
    """The generator-level content of ``n_events`` events (see the module docstring)."""

    n_events: int
    final: FlatObjects
    heavy: FlatObjects

    def in_events(self, keep: np.ndarray) -> TruthBatch:
        """Only the events where ``keep`` is true, renumbered."""
        return TruthBatch(int(np.count_nonzero(keep)), self.final.in_events(keep), self.heavy.in_events(keep))


def _flat(array: ak.Array) -> np.ndarray:
    return ak.to_numpy(ak.flatten(array, axis=1))


def _vertices(vertex: ak.Array, index: np.ndarray) -> dict[str, np.ndarray]:
    """Production vertices ``x, y, z`` [mm] of the particles at ``index``; Pythia's vertex is an option
    type, None for particles without one (prompt ones), which get the origin."""
    layout = vertex.layout
    if isinstance(layout, ak.contents.IndexedOptionArray):  # what nextBatch builds: read its buffers
        where = np.asarray(layout.index)[index]
        present = where >= 0
        content = layout.content
        out = {}
        for name, field in (("x", "px"), ("y", "py"), ("z", "pz")):
            values = np.asarray(content.content(field).data)
            out[name] = np.where(present, values[np.where(present, where, 0)], 0.0)
        return out
    return {
        name: ak.to_numpy(ak.fill_none(vertex[field], 0.0))[index] for name, field in (("x", "px"), ("y", "py"), ("z", "pz"))
    }


def eta_phi(px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pT [GeV], pseudorapidity and φ [rad] of momenta; η = ±inf along the beam (pT = 0)."""
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(pt > 0, np.arcsinh(pz / np.where(pt > 0, pt, 1.0)), np.copysign(np.inf, pz))
    return pt, eta, np.arctan2(py, px)


def hadron_flavour(pid: np.ndarray) -> np.ndarray:
    """5 for hadrons with a b quark, 4 for hadrons with a c (and no b) quark, 0 otherwise.

    Uses the quark digits n_q1 n_q2 n_q3 of the PDG numbering scheme; diquarks (n_q3 = 0), quarks,
    leptons and bosons are not hadrons.

    >>> hadron_flavour(np.array([511, -5122, 421, 4122, 541, 211, 5, 5101, 553, 10513])).tolist()
    [5, 5, 4, 4, 5, 0, 0, 0, 5, 5]
    """
    code = np.abs(pid)
    q1, q2, q3 = (code // 1000) % 10, (code // 100) % 10, (code // 10) % 10
    hadron = (code > 100) & (q3 != 0)
    has_b = hadron & ((q1 == 5) | (q2 == 5) | (q3 == 5))
    has_c = hadron & ((q1 == 4) | (q2 == 4) | (q3 == 4))
    return np.where(has_b, 5, np.where(has_c, 4, 0)).astype(np.int8)


def read_batch(batch: ak.Array, charges: ChargeTable, heavy_pt_min: float) -> TruthBatch:
    """Flatten a ``nextBatch`` result into a :class:`TruthBatch`; ``heavy_pt_min`` [GeV] is the
    minimum pT of the kept b/c hadrons."""
    particles = batch["prt"]
    n_events = len(particles)
    counts = ak.to_numpy(ak.num(particles, axis=1))
    event = np.repeat(np.arange(n_events, dtype=np.int64), counts)
    pid = _flat(particles["id"])
    status = _flat(particles["status"])
    flavour = hadron_flavour(pid)
    final = (status > 0) & ~np.isin(np.abs(pid), NEUTRINOS)
    # Kinematics only for the particles we keep: final-state ones and heavy-flavour hadrons.
    needed = np.flatnonzero(final | (flavour > 0))
    momentum = particles["p"]
    px, py, pz, e = (_flat(momentum[c])[needed] for c in ("px", "py", "pz", "e"))
    pt, eta, phi = eta_phi(px, py, pz)

    heavy_mask = (flavour[needed] > 0) & (pt > heavy_pt_min)
    heavy = FlatObjects(
        event[needed][heavy_mask], {"flavour": flavour[needed][heavy_mask], "eta": eta[heavy_mask], "phi": phi[heavy_mask]}
    )

    is_final = final[needed]
    final_idx = needed[is_final]
    columns = {"pid": pid[final_idx]}
    columns.update(px=px[is_final], py=py[is_final], pz=pz[is_final], e=e[is_final])
    columns.update(pt=pt[is_final], eta=eta[is_final], phi=phi[is_final])
    columns.update(_vertices(ak.flatten(particles["vProd"], axis=1), final_idx))
    columns["charge"] = charges(columns["pid"])
    return TruthBatch(n_events, FlatObjects(event[final_idx], columns), heavy)


def generator_filter(truth: TruthBatch, pt_min: float, abs_eta_max: float) -> np.ndarray:
    """One boolean per event: has a final-state e or μ with pT > ``pt_min`` [GeV] and |η| < ``abs_eta_max``."""
    final = truth.final
    lepton = np.isin(np.abs(final["pid"]), (11, 13)) & (final["pt"] > pt_min) & (np.abs(final["eta"]) < abs_eta_max)
    return np.bincount(final.event[lepton], minlength=truth.n_events) > 0
