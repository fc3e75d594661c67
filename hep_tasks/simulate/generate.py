"""``simulate_file``: generate, filter, reconstruct and write one ROOT file of accepted events.

The loop, per batch of events (``SimulationSettings.batch_size``):

1. Pythia generates the batch (``nextBatch``; tt̄ and W+jets behind the process-level pre-filter);
2. the generator-level filter keeps events with a final-state e/μ of pT > 20 GeV, |η| < 2.5;
3. the detector response runs on those (``detector.py``);
4. events with a reconstructed Electron or MuonTight of PT > 23 GeV (optionally isolated, see
   ``selection.py``) are accepted: every written event has such a lepton, also present in EFlowTrack;
5. jets are clustered and b-tagged for the accepted events only, and the batch is appended to the file.

The batch size shrinks near the end (from the efficiency seen so far) so that little is generated
beyond the last needed event; the events after the ``n_events``-th accepted one are dropped and not
counted as generated. All of this depends only on the seed and the settings: a file is reproducible.

With ``SimulationSettings.qcd_redecays = N`` (QCD only), step 1 leaves the b- and c-hadrons
undecayed and ``redecay.expand`` turns each generated event into N trials with fresh heavy-hadron
decays; steps 2-4 run on the trials, and the first accepted trial of a generated event is written
(weight k/N for k accepted trials).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import awkward as ak
import numpy as np

from hep_tasks.processes import PROCESSES
from hep_tasks.simulate.detector import Detector, Reconstructed
from hep_tasks.simulate.flat import FlatObjects
from hep_tasks.simulate.jets import btag, cluster_jets
from hep_tasks.simulate.pythia_setup import EventSource
from hep_tasks.simulate.redecay import HadronDecayer, Trials, expand
from hep_tasks.simulate.rootfile import DELPHES_SCHEMA, DelphesWriter
from hep_tasks.simulate.selection import accepted_events
from hep_tasks.simulate.settings import SimulationSettings
from hep_tasks.simulate.truth import ChargeTable, generator_filter, read_batch

log = logging.getLogger(__name__)

#: rough accepted/generated fractions with the default settings, to size the first batch.
_EXPECTED_EFFICIENCY = {"ttbar": 0.55, "wjets": 0.6, "qcd": 0.04}
_MIN_BATCH = 10


@dataclass(frozen=True)
class SimulationStats:
    """What one :func:`simulate_file` call did.

    - ``generated``: events Pythia generated completely (after the process-level pre-filter), up to the
      last accepted one; ``passed_generator_filter``: those with a generator-level e/μ;
      ``accepted``: those written (a reconstructed lepton above the analysis cut, isolated when
      ``SimulationSettings.isolated_leptons_only``).
    - ``filter_efficiency`` = accepted / generated; ``generator_filter_efficiency`` =
      passed_generator_filter / generated; ``prefilter_efficiency``: hard processes kept by the
      process-level pre-filter (1.0 for QCD, which has none).
    - ``sigma_pb``, ``sigma_err_pb``: Pythia's cross-section estimate (``Info::sigmaGen``, mb -> pb) of the
      generated events, i.e. after forced decays and the pre-filter; ``accepted_sigma_pb`` =
      sigma_pb × event_weight_sum / generated, the cross-section of the written events.
    - ``redecays``: decay trials per generated event (``SimulationSettings.qcd_redecays`` for QCD, else
      0: one ordinary decay); with them ``passed_generator_filter`` counts generated events with at
      least one trial passing the generator-level filter.
    - ``event_weight_sum``: Σ of the written events' weights relative to a generated event (each 1
      without re-decays, so it equals ``accepted``; k/N with k of N trials accepted);
      ``multi_accepted``: written events whose generated event had more than one accepted trial
      (their weight k/N > 1/N; 0 without re-decays).
    - ``wall_seconds``: wall time of the call, Pythia initialisation included.
    """

    process: str
    seed: int
    generated: int
    passed_generator_filter: int
    accepted: int
    filter_efficiency: float
    generator_filter_efficiency: float
    prefilter_efficiency: float
    sigma_pb: float
    sigma_err_pb: float
    accepted_sigma_pb: float
    redecays: int
    event_weight_sum: float
    multi_accepted: int
    wall_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict."""
        return asdict(self)


def _check_arguments(process: Any, n_events: Any, seed: Any, path: Any, settings: Any) -> None:
    if process not in PROCESSES:
        raise ValueError(f"process must be one of {', '.join(PROCESSES)}; got {process!r}")
    if isinstance(n_events, bool) or not isinstance(n_events, (int, np.integer)) or n_events <= 0:
        raise ValueError(f"n_events must be a positive integer (accepted events to write); got {n_events!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    if not isinstance(path, (str, os.PathLike)) or "://" in os.fspath(path):
        raise ValueError(f"path must be a local filesystem path of the .root file to write; got {path!r}")
    if settings is not None and not isinstance(settings, SimulationSettings):
        raise ValueError(f"settings must be a SimulationSettings or None; got {type(settings).__name__}")


def _collections(reco: Reconstructed, jets: FlatObjects) -> dict[str, ak.Array]:
    n = reco.n_events
    met = FlatObjects(np.arange(n, dtype=np.int64), {"MET": reco.met, "Phi": reco.met_phi})
    objects = {
        "EFlowTrack": reco.tracks,
        "EFlowPhoton": reco.photons,
        "EFlowNeutralHadron": reco.neutral_hadrons,
        "Electron": reco.electrons,
        "MuonTight": reco.muons,
        "Jet": jets,
        "MissingET": met,
    }
    return {name: objects[name].to_awkward(n, fields) for name, fields in DELPHES_SCHEMA.items()}


def _next_batch_size(
    settings: SimulationSettings, process: str, remaining: int, generated: int, accepted: int, trials: int = 1
) -> int:
    """Events to generate next: about what ``remaining`` accepted events need at the efficiency seen so
    far, at most ``batch_size`` trials' worth (``trials`` decay trials per generated event)."""
    if generated == 0:
        efficiency = _EXPECTED_EFFICIENCY[process]
    else:
        efficiency = max((accepted + 1) / (generated + 1), settings.min_filter_efficiency)
    wanted = math.ceil(remaining / efficiency) + 2
    return max(_MIN_BATCH, min(max(settings.batch_size // trials, _MIN_BATCH), wanted))


def simulate_file(
    process: str, n_events: int, seed: int, path: str | os.PathLike, settings: SimulationSettings | None = None
) -> SimulationStats:
    """Simulate ``n_events`` accepted events of ``process`` ("ttbar", "wjets" or "qcd") with ``seed``
    and write them to the local ROOT file ``path`` (tree ``Delphes``, ARCHITECTURE §3 collections;
    GeV, rad, mm). Returns the :class:`SimulationStats` of the file.

    The Pythia seed is ``seed`` itself within [1, 900_000_000] (wrapped into it otherwise); the detector
    draws from ``numpy.random.default_rng(seed)``. Same arguments, same arrays in the file.

    Raises ``ValueError`` for a bad argument (the message names it), and ``RuntimeError`` when the
    filter efficiency is so low that ``n_events`` would need more than
    ``n_events / settings.min_filter_efficiency`` generated events. The file appears only when complete.

    >>> simulate_file("zjets", 10, 1, "out.root")
    Traceback (most recent call last):
    ...
    ValueError: process must be one of qcd, ttbar, wjets; got 'zjets'
    """
    _check_arguments(process, n_events, seed, path, settings)
    settings = settings or SimulationSettings()
    n_events, seed = int(n_events), int(seed)
    start = time.perf_counter()
    source = EventSource(process, seed, settings)
    charges = ChargeTable(source.particle_data)
    redecays = settings.qcd_redecays if process == "qcd" else 0
    decayer = HadronDecayer(seed, settings) if redecays else None
    rng = np.random.default_rng(seed)
    detector = Detector(settings.detector, rng)
    max_attempts = math.ceil(n_events / settings.min_filter_efficiency) + settings.batch_size
    attempted = generated = passed = accepted = multi_accepted = 0
    weight_sum = 0.0

    with DelphesWriter(path, settings.compression_level) as writer:
        while accepted < n_events:
            if attempted >= max_attempts:
                raise RuntimeError(
                    f"process {process!r} (seed {seed}): only {accepted} of {n_events} requested events accepted "
                    f"after {generated} generated events (filter efficiency {accepted / max(generated, 1):.2e}, below "
                    f"SimulationSettings.min_filter_efficiency={settings.min_filter_efficiency}); lower the lepton "
                    f"thresholds (filter_lepton_pt_min={settings.filter_lepton_pt_min}, accept_lepton_pt_min="
                    f"{settings.accept_lepton_pt_min}) or min_filter_efficiency"
                )
            size = _next_batch_size(settings, process, n_events - accepted, generated, accepted, max(redecays, 1))
            attempted += size
            truth = read_batch(source.next_batch(size), charges, settings.detector.btag_hadron_pt_min)
            trials = expand(truth, decayer, charges, settings) if decayer else Trials.one_per_event(truth)
            batch = _process_batch(trials, detector, settings, rng, n_events - accepted)
            generated += batch.counted
            passed += batch.passed
            if batch.collections is not None:
                writer.extend(batch.collections)
                accepted = writer.entries
                weight_sum += float(np.sum(batch.successes)) / max(redecays, 1)
                multi_accepted += int(np.count_nonzero(batch.successes > 1))
            log.debug("%s seed %d: %d generated, %d accepted", process, seed, generated, accepted)

    stats = SimulationStats(
        process=process,
        seed=seed,
        generated=generated,
        passed_generator_filter=passed,
        accepted=accepted,
        filter_efficiency=accepted / generated,
        generator_filter_efficiency=passed / generated,
        prefilter_efficiency=source.prefilter_efficiency,
        sigma_pb=source.sigma_pb,
        sigma_err_pb=source.sigma_err_pb,
        accepted_sigma_pb=source.sigma_pb * weight_sum / generated,
        redecays=redecays,
        event_weight_sum=weight_sum,
        multi_accepted=multi_accepted,
        wall_seconds=time.perf_counter() - start,
    )
    log.info(
        "simulated %s seed %d: %d accepted of %d generated (efficiency %.3f), sigma %.4g pb, %.1f s -> %s",
        process, seed, accepted, generated, stats.filter_efficiency, stats.sigma_pb, stats.wall_seconds, os.fspath(path),
    )
    return stats


@dataclass
class _BatchResult:
    """What one batch adds: ``counted`` generated events (up to the last one written), ``passed`` of
    them with a trial through the generator-level filter, the output ``collections`` (None if no
    event is written) and, per written event, ``successes``: its generated event's accepted trials."""

    counted: int
    passed: int
    collections: dict[str, ak.Array] | None
    successes: np.ndarray


def _process_batch(
    trials: Trials, detector: Detector, settings: SimulationSettings, rng: np.random.Generator, remaining: int
) -> _BatchResult:
    """Filter, reconstruct and accept the trials of one batch; write the first accepted trial of each
    generated event, for at most ``remaining`` generated events.

    Without re-decays every generated event is its own single trial, and this is: filter, reconstruct,
    accept, keep the first ``remaining`` accepted events.
    """
    truth, hard_event = trials.truth, trials.hard_event
    passed = generator_filter(truth, settings.filter_lepton_pt_min, settings.filter_lepton_abs_eta)
    selected = truth.in_events(passed)
    reco = detector.reconstruct(selected)
    accepted = np.zeros(truth.n_events, dtype=bool)
    accepted[passed] = accepted_events(reco, settings)
    successes = np.bincount(hard_event[accepted], minlength=trials.n_generated)
    # The first accepted trial of each generated event (trials are ordered by generated event).
    accepted_trials = np.flatnonzero(accepted)
    _, first = np.unique(hard_event[accepted_trials], return_index=True)
    chosen = accepted_trials[first][:remaining]
    counted = int(hard_event[chosen[-1]]) + 1 if len(chosen) == remaining else trials.n_generated
    n_passed = len(np.unique(hard_event[passed & (hard_event < counted)]))
    if len(chosen) == 0:
        return _BatchResult(counted, n_passed, None, np.zeros(0, dtype=np.int64))
    write = np.zeros(truth.n_events, dtype=bool)
    write[chosen] = True
    keep = write[passed]  # over the selected trials
    reco = reco.in_events(keep)
    jets = cluster_jets(reco, settings.detector)
    jets.columns["BTag"] = btag(jets, selected.heavy.in_events(keep), reco.n_events, settings.detector, rng)
    return _BatchResult(counted, n_passed, _collections(reco, jets), successes[hard_event[chosen]])
