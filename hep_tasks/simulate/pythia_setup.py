"""Pythia8 configuration per process, the process-level lepton pre-filter, and batch generation.

Each process is a list of Pythia settings strings (:func:`process_commands`) on top of common ones
(:func:`common_commands`): 13 TeV pp, Monash tune (Pythia's default), MPI, showers, hadronisation and
decays all on; particles with cτ > 10 mm stay undecayed, as a detector sees them. tt̄ and W+jets get
a process-level pre-filter (:class:`LeptonicWPrefilter`) that rejects hard processes without a
leptonic W before the expensive showers and hadronisation; Pythia then lowers its cross-section
estimate ``sigmaGen`` by the rejected fraction, so ``sigmaGen`` is the cross-section of the events
that reach the generator-level filter.

:class:`EventSource` wraps one initialised Pythia and hands out batches of events as the Awkward
arrays of ``Pythia.nextBatch`` (the whole event record, filled in C++: no Python loop over particles).
"""

from __future__ import annotations

import logging

import pythia8mc

from hep_tasks.processes import PROCESSES
from hep_tasks.simulate.redecay import undecayed_commands
from hep_tasks.simulate.settings import SimulationSettings

log = logging.getLogger(__name__)

#: Pythia accepts ``Random:seed`` in [1, 900_000_000] (0 would mean "seed from the clock").
PYTHIA_SEED_MAX = 900_000_000

MB_TO_PB = 1e9

_QCD_PROCESSES = {"bbbar": "HardQCD:hardbbbar = on", "ccbar": "HardQCD:hardccbar = on"}


def pythia_seed(seed: int) -> int:
    """The ``Random:seed`` for a file seed: the seed itself within [1, 900_000_000], else wrapped into it.

    >>> pythia_seed(1), pythia_seed(900_000_000), pythia_seed(0), pythia_seed(900_000_001)
    (1, 900000000, 900000000, 1)
    """
    return (seed - 1) % PYTHIA_SEED_MAX + 1


def common_commands(seed: int, settings: SimulationSettings) -> list[str]:
    """Settings shared by all processes (beams, seed, quiet output, detector-stable particles)."""
    return [
        f"Beams:eCM = {settings.ecm!r}",
        "Random:setSeed = on",
        f"Random:seed = {pythia_seed(seed)}",
        "Print:quiet = on",
        # Decay only what decays before reaching the detector (cτ <= 10 mm, as CMS does): K0S, Λ, ...
        # stay stable and reach the calorimeter as neutral hadrons.
        "ParticleDecays:limitTau0 = on",
        f"ParticleDecays:tau0Max = {settings.tau0_max!r}",
    ]


def process_commands(process: str, settings: SimulationSettings) -> list[str]:
    """The hard process of ``process`` ("ttbar", "wjets" or "qcd") as Pythia settings strings."""
    if process == "ttbar":
        return ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on"]
    if process == "wjets":
        return [
            "WeakBosonAndParton:qqbar2Wg = on",
            "WeakBosonAndParton:qg2Wq = on",
            f"PhaseSpace:pTHatMin = {settings.wjets_pthat_min!r}",
            # W -> e nu, mu nu only; Pythia scales sigmaGen by the open branching ratio.
            "24:onMode = off",
            "24:onIfAny = 11 13",
        ]
    if process == "qcd":
        # With re-decays, b- and c-hadrons stay undecayed here; redecay.HadronDecayer decays them.
        return (
            [_QCD_PROCESSES[f] for f in settings.qcd_heavy_flavours]
            + [f"PhaseSpace:pTHatMin = {settings.qcd_pthat_min!r}"]
            + (undecayed_commands() if settings.qcd_redecays else [])
        )
    raise ValueError(f"unknown process {process!r}; known: {', '.join(PROCESSES)}")


def make_prefilter(process: str, settings: SimulationSettings) -> LeptonicWPrefilter | None:
    """The process-level pre-filter of ``process``, or None (QCD: its leptons come from hadron decays;
    or switched off in ``settings``)."""
    if process == "qcd" or not settings.use_prefilter:
        return None
    return LeptonicWPrefilter(
        pt_min=settings.prefilter_lepton_pt_min,
        abs_eta_max=settings.prefilter_lepton_abs_eta,
        accept_tau=(process == "ttbar"),
    )


class LeptonicWPrefilter(pythia8mc.UserHooks):
    """A Pythia ``UserHooks`` that vetoes, at process level (after resonance decays, before showers),
    hard processes without a final e or μ of pT > ``pt_min`` [GeV] and |η| < ``abs_eta_max``
    (or any τ when ``accept_tau``). In tt̄ and W+jets these leptons can only come from W decays.

    ``seen``/``vetoed`` count the hard processes it looked at and rejected; :attr:`efficiency` is the
    kept fraction. A vetoed hard process costs microseconds instead of the ~8 ms of a full event.
    """

    def __init__(self, pt_min: float, abs_eta_max: float, accept_tau: bool):
        super().__init__()
        self.pt_min = pt_min
        self.abs_eta_max = abs_eta_max
        self.accept_tau = accept_tau
        self.seen = 0
        self.vetoed = 0

    def canVetoProcessLevel(self) -> bool:  # noqa: N802 (Pythia's name)
        return True

    def doVetoProcessLevel(self, process) -> bool:  # noqa: N802 (Pythia's name)
        self.seen += 1
        for i in range(3, process.size()):  # 0 is the system, 1 and 2 the beams
            particle = process[i]
            id_abs = particle.idAbs()
            if id_abs not in (11, 13, 15) or not particle.isFinal():
                continue
            if id_abs == 15:
                if self.accept_tau:
                    return False
            elif particle.pT() > self.pt_min and abs(particle.eta()) < self.abs_eta_max:
                return False
        self.vetoed += 1
        return True

    @property
    def efficiency(self) -> float:
        return 1.0 if self.seen == 0 else (self.seen - self.vetoed) / self.seen


class EventSource:
    """One initialised Pythia for ``process`` with seed ``seed``; :meth:`next_batch` generates events.

    The Python hook object is kept referenced here: Pythia only holds its C++ side.
    """

    def __init__(self, process: str, seed: int, settings: SimulationSettings):
        self.process = process
        self.seed = seed
        self.pythia = pythia8mc.Pythia("", False)
        self.prefilter = make_prefilter(process, settings)
        if self.prefilter is not None:
            self.pythia.setUserHooksPtr(self.prefilter)
        commands = common_commands(seed, settings) + process_commands(process, settings) + list(settings.pythia_commands)
        for command in commands:
            if not self.pythia.readString(command):
                raise ValueError(f"Pythia rejected the setting {command!r} (process {process!r})")
        if not self.pythia.init():
            raise RuntimeError(f"Pythia initialisation failed for process {process!r} with settings {commands}")
        self.particle_data = self.pythia.particleData
        log.debug("Pythia initialised for %s (seed %d): %s", process, seed, commands)

    def next_batch(self, n: int):
        """Generate ``n`` events; an Awkward array of records ``{prt: [particles], info}`` (failed
        events are skipped by Pythia, so it may hold fewer)."""
        return self.pythia.nextBatch(n, "skip")

    @property
    def sigma_pb(self) -> float:
        """Pythia's cross-section estimate of the events generated so far [pb] (after the pre-filter)."""
        return self.pythia.infoPython().sigmaGen() * MB_TO_PB

    @property
    def sigma_err_pb(self) -> float:
        """Statistical error of :attr:`sigma_pb` [pb]."""
        return self.pythia.infoPython().sigmaErr() * MB_TO_PB

    @property
    def prefilter_efficiency(self) -> float:
        """Fraction of hard processes kept by the process-level pre-filter (1.0 without one)."""
        return 1.0 if self.prefilter is None else self.prefilter.efficiency
