"""The simulate stage: Pythia8 events -> parametric detector -> Delphes-like ROOT files.

One call of :func:`simulate_file` writes one file (one Spark task, see ``stage.py``):

>>> from hep_tasks.simulate import simulate_file                      # doctest: +SKIP
>>> stats = simulate_file("ttbar", 200, seed=1, path="ttbar_0000.root")  # doctest: +SKIP
>>> stats.accepted, round(stats.filter_efficiency, 2)                  # doctest: +SKIP
(200, 0.58)

Map of the subpackage (data flows top to bottom):

- ``settings``      :class:`SimulationSettings` (generator, filters, output) and :class:`DetectorSettings`
- ``pythia_setup``  Pythia8 settings per process, the process-level lepton pre-filter, batch generation
- ``truth``         event records (``Pythia.nextBatch`` Awkward arrays) -> flat final-state particles and
                    b/c hadrons; the generator-level lepton filter
- ``detector``      tracks, calorimeter cells (EFlowPhoton, EFlowNeutralHadron), electrons, muons, MET
- ``jets``          anti-kT R = 0.4 with FastJet (all events of a batch at once) and b-tagging
- ``redecay``       QCD option ``qcd_redecays``: N decay trials of the b/c hadrons per generated event
- ``selection``     which events a file accepts (a lepton above 23 GeV, optionally isolated as in §3)
- ``flat``          flat per-object columns with an event index: select, sort, to Awkward
- ``rootfile``      the uproot writer: tree ``Delphes``, branches ``Jet.PT``, counters ``Jet_size``, ZSTD
- ``generate``      :func:`simulate_file` and :class:`SimulationStats`
- ``stage``         the Spark stage: one task per file, manifest

Processes and their generator-level choices (units GeV, mm):

- **tt̄** (label 1): ``Top:gg2ttbar``, ``Top:qqbar2ttbar``, W decays inclusive. A process-level
  pre-filter keeps hard processes with a W -> e/μ (pT > 10, |η| < 3) or W -> τ, so ~46 % of the hard
  processes (mostly all-hadronic tt̄) are rejected before showering. Of the tt̄ events that would pass
  the generator-level filter this removes ≈ 15 %, those whose only lepton comes from a b/c-hadron
  decay; ≈ 95 % of those leptons are not isolated (generator-level relative isolation > 0.45), so the
  isolated-lepton sample loses < 1 %. ``sigma_pb`` is the cross-section after the pre-filter
  (≈ 0.54 × σ(tt̄) ≈ 280 pb at LO).
- **W+jets** (label 2): ``WeakBosonAndParton:qqbar2Wg`` and ``qg2Wq`` with pTHatMin = 20, W forced to
  e ν or μ ν (Pythia includes the branching ratio in ``sigma_pb``), and the same pre-filter without τ
  (it removes ≈ 0.2 % of the accepted events, those whose lepton is not the W's).
- **QCD** (label 0): QCD with a hard lepton is rare (≈ 3e-3 of ``HardQCD:all`` at pTHatMin = 50 pass
  the lepton filter, and few of those leptons are isolated). We generate *heavy-flavour production
  only*, ``HardQCD:hardbbbar`` and ``HardQCD:hardccbar`` (gg, qq̄ -> bb̄, cc̄) at pTHatMin = 50 GeV,
  with unit event weights (no phase-space bias): ≈ 6 % of these events pass the generator-level
  filter (20 times inclusive QCD), mostly through semileptonic b/c decays, and ≈ 4 % are accepted.
  Only ≈ 11 % of the accepted events have an isolated lepton (§3), which the ingest stage requires:
  ≈ 0.5 such events per CPU-second. Of 40, 50, 60 and 80 GeV, pTHatMin = 50 gives the most of them
  per generated event (80 GeV accepts twice as many events, but half as many isolated ones). ``isolated_leptons_only`` writes only those.
  Consequences: the QCD class is "heavy-flavour dijets with a (mostly non-prompt) lepton"; it lacks
  light-flavour QCD (fake leptons, π/K decays in flight, photon conversions in the detector, none of
  which the detector model produces anyway), b quarks from flavour excitation and gluon splitting,
  and events below pTHat = 50 GeV; ``sigma_pb`` is that of gg/qq̄ -> bb̄ + cc̄ above 50 GeV, not of
  QCD. It is a training sample for a demo, not a background estimate.
  Faster option, ``qcd_redecays = N`` (``redecay.py``): Pythia leaves the weakly decaying b/c hadrons
  undecayed and a decay-only Pythia decays them N times per generated event; the first of the N
  trials that is accepted is written, with weight k/N (k accepted trials). Each trial is an exact
  sample of the event's heavy-hadron decays, so every lepton source keeps its share; written events
  are independent; the unweighted sample under-represents the events with k > 1 (``multi_accepted``).

Common to all: 13 TeV pp, Pythia's default tune (Monash), MPI, ISR/FSR (QED included), colour
reconnection, hadronisation and decays on; particles with cτ > 10 mm (K0S, Λ, ...) left undecayed.
Generator-level filter: a final-state e/μ with pT > 20 and |η| < 2.5. An event is written only if it
has a reconstructed Electron or MuonTight with PT > 23 (the analysis cut; optionally also isolated),
so every event of a file has one, also present in EFlowTrack. The seed fixes Pythia (``Random:seed``)
and the detector (``numpy.random.default_rng(seed)``): a file's arrays are reproducible for the same
seed and settings (``batch_size`` included).

Performance: Pythia's showers and MPI take > 90 % of the time (≈ 8 ms per tt̄ or W+jets event on one
core); the event records come out of Pythia as Awkward arrays (``nextBatch``, filled in C++), and
everything after that is numpy over whole batches, FastJet's multi-event interface and one uproot
``extend`` per batch, ≈ 0.5 ms per event. The process-level pre-filter is what makes tt̄ and W+jets
reach ≈ 50-65 accepted events per second and core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hep_tasks.simulate.settings import DetectorSettings, SimulationSettings

if TYPE_CHECKING:
    from hep_tasks.simulate.generate import SimulationStats, simulate_file

__all__ = ["DetectorSettings", "SimulationSettings", "SimulationStats", "simulate_file"]


def __getattr__(name: str):
    # simulate_file needs pythia8mc, fastjet, uproot and awkward: import them only when it is used.
    if name in ("simulate_file", "SimulationStats"):
        from hep_tasks.simulate import generate

        return getattr(generate, name)
    raise AttributeError(f"module 'hep_tasks.simulate' has no attribute {name!r}")
