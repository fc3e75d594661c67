"""Re-decaying heavy-flavour hadrons: many decay trials per generated QCD event (``qcd_redecays``).

Why: a QCD event with an isolated lepton is rare (≈ 0.4 % of the generated bb̄/cc̄ events) and its
lepton comes from the weak decay of a b- or c-hadron, while ≈ 98 % of the generation time goes into
what comes before those decays (hard process, MPI, showers, hadronisation). So, with
``SimulationSettings.qcd_redecays = N``, the main Pythia leaves the weakly decaying b- and c-hadrons
of :data:`HEAVY_HADRONS` undecayed (``mayDecay = off``) and a second Pythia that only decays
(:class:`HadronDecayer`, ``ProcessLevel:all = off``, same decay settings) decays them N times: N
*trials* of one generated event, each a complete event whose heavy-hadron decays (lifetimes, B⁰/B_s
mixing, cascades b → c → s, τ and J/ψ from B decays, their vertices) are drawn afresh. This is
LHCb's "ReDecay" idea (D. Müller, M. Clemencic, G. Corti, M. Gersabeck, Eur. Phys. J. C 78 (2018) 1009).

Per generated event (vectorised over a batch, except the decays themselves):

1. the heavy hadrons that can give a lepton above the generator filter's pT threshold
   (:func:`lepton_pt_bound`) are decayed in every trial; a trial is a *candidate* if it has a
   generator-level e/μ (pT > 20 GeV, |η| < 2.5) among their products or elsewhere in the event;
2. candidates get the other heavy hadrons decayed too and are returned as events
   (:class:`Trials`); the caller runs the detector and the acceptance on them as on ordinary events;
3. the caller writes the *first* accepted trial of a generated event; with k of the N trials
   accepted its weight, relative to an ordinary generated event, is k/N.

Physics: each trial is an exact sample of the event given everything but its heavy-hadron decays,
so no lepton source is left out or forced (direct b → ℓ, cascade b → c → ℓ, c → ℓ, τ and J/ψ from
B decays) and the weights Σ k/N give the accepted cross-section without bias. The costs: trials of
one event share everything else (jets, underlying event, other decays), so at most one of them is
written and written events stay independent; writing one trial where k were accepted
under-represents the events with k > 1 (configurations where a hard b-hadron is likely to give an
isolated lepton), which their weight k/N would restore. ``SimulationStats`` counts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np

from hep_tasks.simulate.flat import FlatObjects
from hep_tasks.simulate.settings import SimulationSettings
from hep_tasks.simulate.truth import NEUTRINOS, ChargeTable, TruthBatch, eta_phi, generator_filter, hadron_flavour

#: Weakly decaying b- and c-hadrons (and their antiparticles), re-decayed in every trial.
HEAVY_HADRONS = (511, 521, 531, 541, 5122, 5132, 5232, 5332, 411, 421, 431, 4122, 4132, 4232, 4332)
#: [GeV] slack on :func:`lepton_pt_bound`: a lepton's mass makes its largest momentum slightly higher.
_BOUND_SLACK = 0.1
#: an offset between the main Pythia's seed and the decayer's, so that the two streams differ.
_DECAYER_SEED_OFFSET = 450_000_000
#: columns of the rows :meth:`HadronDecayer.decay` appends.
_TRIAL, _HADRON, _ID, _FINAL, _PX, _PY, _PZ, _E, _X, _Y, _Z = range(11)


def undecayed_commands() -> list[str]:
    """Pythia settings that leave every hadron of :data:`HEAVY_HADRONS` undecayed."""
    return [f"{pid}:mayDecay = off" for pid in HEAVY_HADRONS]


class HadronDecayer:
    """A Pythia that only decays (``ProcessLevel:all = off``), one hadron at a time, with the decay
    settings of the main generator (``common_commands`` and ``settings.pythia_commands``).

    :meth:`state` and :meth:`restore` save and set its random-number state, so that a decay can be
    replayed exactly: :meth:`has_lepton` looks only for a lepton (cheap), :meth:`decay` replays it and
    reads every product.
    """

    def __init__(self, seed: int, settings: SimulationSettings):
        import pythia8mc

        from hep_tasks.simulate.pythia_setup import common_commands

        self.pythia = pythia8mc.Pythia("", False)
        commands = common_commands(seed + _DECAYER_SEED_OFFSET, settings) + ["ProcessLevel:all = off"]
        for command in commands + list(settings.pythia_commands):
            if not self.pythia.readString(command):
                raise ValueError(f"Pythia (hadron decayer) rejected the setting {command!r}")
        if not self.pythia.init():
            raise RuntimeError(f"Pythia initialisation failed for the hadron decayer with settings {commands}")
        self._event = self.pythia.event
        self._rndm = self.pythia.rndm
        self._tau0 = {pid: self.pythia.particleData.tau0(pid) for pid in HEAVY_HADRONS}
        self._lepton_pt_min = settings.filter_lepton_pt_min
        self._lepton_abs_eta = settings.filter_lepton_abs_eta

    def state(self):
        """The random-number state (to :meth:`restore` later)."""
        return self._rndm.getState()

    def restore(self, state) -> None:
        self._rndm.setState(state)

    def _decay(self, pid: int, momentum: tuple[float, float, float, float], mass: float) -> None:
        """Decay one hadron ``pid`` of four-momentum ``(px, py, pz, e)`` and ``mass`` [GeV], produced at
        the origin, with a fresh lifetime; the whole chain ends up in the event record from entry 2."""
        event = self._event
        for _ in range(10):
            event.reset()  # keeps entry 0, the system
            event.append(pid, 91, 0, 0, *momentum, mass)
            event[1].tau(self._tau0[abs(pid)] * self._rndm.exp())
            if self.pythia.next():
                return
        raise RuntimeError(f"Pythia (hadron decayer) failed 10 times to decay a {pid} of momentum {momentum}")

    def has_lepton(self, pid: int, momentum: tuple[float, float, float, float], mass: float) -> bool:
        """Decay the hadron (see :meth:`_decay`); whether the products hold a final e/μ passing the
        generator-level filter's pT and |η| cuts."""
        self._decay(pid, momentum, mass)
        pt_min, abs_eta = self._lepton_pt_min, self._lepton_abs_eta
        return any(
            p.idAbs() in (11, 13) and p.isFinal() and p.pT() > pt_min and abs(p.eta()) < abs_eta
            for p in islice(self._event, 2, None)
        )

    def decay(self, pid: int, momentum: tuple[float, float, float, float], mass: float, tags: tuple[int, int], rows: list) -> None:
        """Decay the hadron (see :meth:`_decay`) and append one row per product (whole chain):
        ``(*tags, id, is_final, px, py, pz, e, x, y, z)``, production vertices [mm] relative to the hadron's."""
        self._decay(pid, momentum, mass)
        trial, hadron = tags
        rows.extend(
            (trial, hadron, p.id(), p.isFinal(), p.px(), p.py(), p.pz(), p.e(), p.xProd(), p.yProd(), p.zProd())
            for p in islice(self._event, 2, None)
        )


@dataclass
class Trials:
    """Events to reconstruct, each a trial of one generated event: ``truth`` holds them,
    ``hard_event[i]`` is the generated event (within the batch) of trial ``i``; ``n_generated`` is
    the number of generated events. Trials are ordered by generated event."""

    truth: TruthBatch
    hard_event: np.ndarray
    n_generated: int

    @classmethod
    def one_per_event(cls, truth: TruthBatch) -> Trials:
        """Each generated event is its own single trial (no re-decays)."""
        return cls(truth, np.arange(truth.n_events, dtype=np.int64), truth.n_events)


def expand(base: TruthBatch, decayer: HadronDecayer, charges: ChargeTable, settings: SimulationSettings) -> Trials:
    """The candidate trials (see the module docstring) of the generated events of ``base``, whose
    final state holds the undecayed :data:`HEAVY_HADRONS`.

    Random numbers: pass 1 looks for leptons trial after trial, decaying the capable hadrons of each
    until one gives a lepton and remembering the decayer's state at the start of the trial; pass 2
    replays those decays of the candidate trials exactly, then decays their remaining hadrons with
    random numbers that pass 1 has not used, so that no two trials share any.
    """
    final = base.final
    is_heavy = np.isin(np.abs(final["pid"]), HEAVY_HADRONS)
    rest, hadrons = final.select(~is_heavy), final.select(is_heavy)
    four = np.stack([hadrons["px"], hadrons["py"], hadrons["pz"], hadrons["e"]], axis=1).tolist()
    momentum = np.sqrt(hadrons["px"] ** 2 + hadrons["py"] ** 2 + hadrons["pz"] ** 2)
    mass = np.sqrt(np.maximum(hadrons["e"] ** 2 - momentum**2, 0.0))
    pid = hadrons["pid"].tolist()
    capable = lepton_pt_bound(hadrons["e"], momentum, hadrons["pt"], mass) > settings.filter_lepton_pt_min
    lepton_elsewhere = generator_filter(
        TruthBatch(base.n_events, rest, base.heavy), settings.filter_lepton_pt_min, settings.filter_lepton_abs_eta
    )
    by_event = np.split(np.arange(len(hadrons)), np.cumsum(hadrons.counts(base.n_events))[:-1])
    # capable hadrons first, in record order, then the others
    order = [np.concatenate([h[capable[h]], h[~capable[h]]]).tolist() for h in by_event]
    n_capable = [int(np.count_nonzero(capable[h])) for h in by_event]

    # Pass 1: which trials have a generator-level lepton.
    trial_event: list[int] = []
    candidates: list[tuple[int, Any, int]] = []  # (trial, decayer state at its start, decays to replay)
    for event in range(base.n_events):
        if n_capable[event] == 0 and not lepton_elsewhere[event]:
            continue  # no trial can pass the generator-level filter
        for _ in range(settings.qcd_redecays):
            trial = len(trial_event)
            trial_event.append(event)
            if lepton_elsewhere[event]:
                candidates.append((trial, None, 0))
                continue
            state = decayer.state()
            for n, h in enumerate(order[event][: n_capable[event]]):
                if decayer.has_lepton(pid[h], four[h], float(mass[h])):
                    candidates.append((trial, state, n + 1))
                    break

    # Pass 2: the candidates' products, every hadron of their event decayed.
    fresh = decayer.state()
    rows: list[tuple] = []
    for number, (trial, state, n_replayed) in enumerate(candidates):
        hadrons_of_trial = order[trial_event[trial]]
        if n_replayed:
            decayer.restore(state)
            for h in hadrons_of_trial[:n_replayed]:
                decayer.decay(pid[h], four[h], float(mass[h]), (number, h), rows)
            decayer.restore(fresh)
        for h in hadrons_of_trial[n_replayed:]:
            decayer.decay(pid[h], four[h], float(mass[h]), (number, h), rows)
        fresh = decayer.state()
    decayer.restore(fresh)

    hard_event = np.asarray(trial_event, dtype=np.int64)[[c[0] for c in candidates]].astype(np.int64)
    truth = _assemble(rest, base.heavy, hadrons, _as_array(rows), hard_event, base.n_events, charges, settings)
    return Trials(truth, hard_event, base.n_events)


def lepton_pt_bound(energy: np.ndarray, momentum: np.ndarray, pt: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """The largest pT [GeV] a (nearly) massless descendant of a hadron of ``energy``, ``momentum``,
    transverse momentum ``pt`` and ``mass`` can have, with 0.1 GeV to spare for the lepton's mass.

    In the hadron's rest frame such a descendant has at most mass/2; boosted, its momentum along the
    hadron's direction is at most (E + p)/2 and across it at most mass/2, so its pT is at most
    (E + p)/2 · pT/p + mass/2.

    >>> lepton_pt_bound(np.array([50.0]), np.array([40.0]), np.array([30.0]), np.array([30.0])).round(2).tolist()
    [48.85]
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        sin_theta = np.where(momentum > 0, pt / momentum, 0.0)
    return 0.5 * (energy + momentum) * sin_theta + 0.5 * mass + _BOUND_SLACK


def _as_array(rows: list[tuple]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), 11)


def _assemble(
    rest: FlatObjects,
    heavy: FlatObjects,
    hadrons: FlatObjects,
    products: np.ndarray,
    hard_event: np.ndarray,
    n_generated: int,
    charges: ChargeTable,
    settings: SimulationSettings,
) -> TruthBatch:
    """The candidate trials as a :class:`TruthBatch`: the generated event's other particles and
    b/c hadrons, plus the decay products (vertices moved to their hadron's production vertex)."""
    n = len(hard_event)
    trial = products[:, _TRIAL].astype(np.int64)
    hadron = products[:, _HADRON].astype(np.int64)
    pid = products[:, _ID].astype(rest["pid"].dtype)
    px, py, pz = products[:, _PX], products[:, _PY], products[:, _PZ]
    pt, eta, phi = eta_phi(px, py, pz)
    decayed = {
        "pid": pid, "px": px, "py": py, "pz": pz, "e": products[:, _E], "pt": pt, "eta": eta, "phi": phi,
        "x": hadrons["x"][hadron] + products[:, _X],
        "y": hadrons["y"][hadron] + products[:, _Y],
        "z": hadrons["z"][hadron] + products[:, _Z],
    }  # fmt: skip
    decayed["charge"] = charges(pid)
    visible = (products[:, _FINAL] > 0) & ~np.isin(np.abs(pid), NEUTRINOS)
    flavour = hadron_flavour(pid)
    new_heavy = (flavour > 0) & (pt > settings.detector.btag_hadron_pt_min)

    visible_products = FlatObjects(trial[visible], {k: v[visible] for k, v in decayed.items()})
    final = _concatenate(_repeat_events(rest, hard_event, n_generated), visible_products)
    heavy_products = FlatObjects(trial[new_heavy], {"flavour": flavour[new_heavy], "eta": eta[new_heavy], "phi": phi[new_heavy]})
    return TruthBatch(n, final, _concatenate(_repeat_events(heavy, hard_event, n_generated), heavy_products))


def _repeat_events(objects: FlatObjects, source_event: np.ndarray, n_source: int) -> FlatObjects:
    """New events ``i`` holding copies of the objects of event ``source_event[i]`` (``objects``
    grouped by event, over ``n_source`` events).

    >>> objs = FlatObjects(np.array([0, 0, 2]), {"pt": np.array([1.0, 2.0, 3.0])})
    >>> out = _repeat_events(objs, np.array([2, 0, 2]), 3)
    >>> out.event.tolist(), out["pt"].tolist()
    ([0, 1, 1, 2], [3.0, 1.0, 2.0, 3.0])
    """
    counts = np.bincount(objects.event, minlength=n_source)
    starts = np.cumsum(counts) - counts
    per_new = counts[source_event]
    new_event = np.repeat(np.arange(len(source_event), dtype=np.int64), per_new)
    position = np.arange(len(new_event), dtype=np.int64) - np.repeat(np.cumsum(per_new) - per_new, per_new)
    index = np.repeat(starts[source_event], per_new) + position
    return FlatObjects(new_event, {k: v[index] for k, v in objects.columns.items()})


def _concatenate(first: FlatObjects, second: FlatObjects) -> FlatObjects:
    """The objects of both, grouped by event (stable: ``first``'s before ``second``'s)."""
    event = np.concatenate([first.event, second.event])
    order = np.argsort(event, kind="stable")
    columns = {k: np.concatenate([first[k], second[k].astype(first[k].dtype)])[order] for k in first.columns}
    return FlatObjects(event[order], columns)
