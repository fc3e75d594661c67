"""Settings of the simulate stage: the generator (:class:`SimulationSettings`) and the parametric
detector (:class:`DetectorSettings`).

Units: energies and momenta in GeV, lengths in mm, angles in rad. Every default is chosen to be
Delphes-CMS-like; none of them needs changing for the pipeline's demo. Both classes are frozen and
check their values when built, so a bad value fails before any event is generated:

>>> SimulationSettings().qcd_pthat_min
50.0
>>> SimulationSettings(batch_size=0)
Traceback (most recent call last):
...
ValueError: SimulationSettings.batch_size must be > 0, got 0
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

#: The QCD hard processes :class:`SimulationSettings` may name in ``qcd_heavy_flavours``.
QCD_HEAVY_FLAVOURS = ("bbbar", "ccbar")
#: The largest ``SimulationSettings.qcd_redecays``.
MAX_REDECAYS = 1000


def _check_positive(owner: object, *names: str) -> None:
    for name in names:
        value = getattr(owner, name)
        if not value > 0:
            raise ValueError(f"{type(owner).__name__}.{name} must be > 0, got {value!r}")


def _check_probabilities(owner: object, *names: str) -> None:
    for name in names:
        values = getattr(owner, name)
        if not all(0.0 <= v <= 1.0 for v in (values if isinstance(values, tuple) else (values,))):
            raise ValueError(f"{type(owner).__name__}.{name} must hold probabilities in [0, 1], got {values!r}")


@dataclass(frozen=True)
class DetectorSettings:
    """Parameters of the parametric, Delphes-like detector response (see ``detector.py``).

    Efficiency tuples are ``(barrel low pT, barrel high pT, endcap low pT, endcap high pT)``: barrel is
    |η| < ``barrel_abs_eta``, endcap up to ``tracker_abs_eta``; "low pT" is ``track_pt_min`` < pT ≤
    ``track_low_pt`` GeV. Resolutions are ``(a, b)`` pairs of ``sqrt(a² + (b·x)²)`` with x as named.
    Calorimeter resolutions are ``(stochastic [√GeV], constant, noise [GeV])``:
    σ(E) = sqrt((s·√E)² + (c·E)² + n²).
    """

    #: tracker acceptance |η| and the barrel/endcap boundary.
    tracker_abs_eta: float = 2.5
    barrel_abs_eta: float = 1.5
    #: no track below this pT [GeV]; the low-pT efficiency applies up to ``track_low_pt`` [GeV].
    track_pt_min: float = 0.1
    track_low_pt: float = 1.0
    track_efficiency_hadron: tuple[float, float, float, float] = (0.70, 0.95, 0.60, 0.85)
    track_efficiency_electron: tuple[float, float, float, float] = (0.73, 0.95, 0.50, 0.83)
    track_efficiency_muon: tuple[float, float, float, float] = (0.75, 0.99, 0.70, 0.98)
    #: relative track pT resolution σ(pT)/pT = sqrt(a² + (b·pT)²), b in 1/GeV, barrel and endcap.
    track_pt_resolution_barrel: tuple[float, float] = (0.007, 1.5e-4)
    track_pt_resolution_endcap: tuple[float, float] = (0.02, 3.0e-4)
    #: track production-vertex resolution σ = sqrt(a² + (b/pT)²) [mm], b in mm·GeV; transverse (X, Y) and Z.
    vertex_resolution_xy: tuple[float, float] = (0.010, 0.030)
    vertex_resolution_z: tuple[float, float] = (0.020, 0.050)

    #: charged particles with |η| < barrel_abs_eta need this pT [GeV] to reach the calorimeter
    #: (3.8 T field, calorimeter at r = 1.29 m); below it an untracked one leaves no energy.
    calo_reach_pt_min: float = 0.7
    #: ECAL and HCAL cover |η| < ``ecal_abs_eta``; the forward calorimeter up to ``calo_abs_eta``.
    ecal_abs_eta: float = 3.0
    calo_abs_eta: float = 5.0
    #: cell sizes (Δη, number of φ cells) of ECAL, HCAL and the forward calorimeter.
    ecal_cells: tuple[float, int] = (3.0 / 170, 360)
    hcal_cells: tuple[float, int] = (3.0 / 34, 72)
    forward_cells: tuple[float, int] = (0.2, 36)
    ecal_resolution: tuple[float, float, float] = (0.07, 0.007, 0.35)
    hcal_resolution: tuple[float, float, float] = (1.5, 0.05, 0.0)
    forward_resolution: tuple[float, float, float] = (2.7, 0.13, 0.0)
    #: minimum smeared cell energy [GeV] for an EFlowPhoton (ECAL) or EFlowNeutralHadron (HCAL, forward).
    photon_energy_min: float = 0.5
    neutral_hadron_energy_min: float = 1.0

    #: identification of tracked electrons/muons with pT > ``lepton_pt_min`` [GeV]: (barrel, endcap).
    lepton_pt_min: float = 10.0
    electron_id_efficiency: tuple[float, float] = (0.95, 0.85)
    muon_id_efficiency: tuple[float, float] = (0.95, 0.95)

    #: anti-kT jets: radius, minimum PT [GeV].
    jet_radius: float = 0.4
    jet_pt_min: float = 20.0
    #: b-tagging within |η| < ``btag_abs_eta``: a jet is b (c) if a b-hadron (c-hadron) with
    #: pT > ``btag_hadron_pt_min`` [GeV] lies within ΔR < ``btag_match_dr``; tag probabilities per flavour.
    btag_abs_eta: float = 2.5
    btag_match_dr: float = 0.4
    btag_hadron_pt_min: float = 5.0
    btag_efficiency_b: float = 0.70
    btag_mistag_c: float = 0.10
    btag_mistag_light: float = 0.01

    def __post_init__(self) -> None:
        _check_positive(
            self, "tracker_abs_eta", "barrel_abs_eta", "track_low_pt", "ecal_abs_eta", "calo_abs_eta",
            "jet_radius", "btag_match_dr",
        )
        _check_probabilities(
            self, "track_efficiency_hadron", "track_efficiency_electron", "track_efficiency_muon",
            "electron_id_efficiency", "muon_id_efficiency", "btag_efficiency_b", "btag_mistag_c", "btag_mistag_light",
        )
        for name in ("ecal_cells", "hcal_cells", "forward_cells"):
            deta, nphi = getattr(self, name)
            if not (deta > 0 and isinstance(nphi, int) and nphi > 0):
                raise ValueError(f"DetectorSettings.{name} must be (Δη > 0, number of φ cells > 0), got {(deta, nphi)!r}")
        if not self.barrel_abs_eta <= self.tracker_abs_eta <= self.ecal_abs_eta <= self.calo_abs_eta:
            raise ValueError(
                "DetectorSettings needs barrel_abs_eta <= tracker_abs_eta <= ecal_abs_eta <= calo_abs_eta, got "
                f"{self.barrel_abs_eta}, {self.tracker_abs_eta}, {self.ecal_abs_eta}, {self.calo_abs_eta}"
            )


@dataclass(frozen=True)
class SimulationSettings:
    """How events are generated, filtered and written (see the ``hep_tasks.simulate`` docstring).

    Generator (Pythia8, pp collisions):

    - ``ecm``: centre-of-mass energy [GeV].
    - ``wjets_pthat_min``, ``qcd_pthat_min``: PhaseSpace:pTHatMin [GeV] of W+jets and of QCD heavy-flavour
      production (tt̄ needs none).
    - ``qcd_heavy_flavours``: QCD hard processes, a subset of ``("bbbar", "ccbar")``
      (gg → QQ̄ and qq̄ → QQ̄ each).
    - ``tau0_max``: particles with proper lifetime cτ above this [mm] are left undecayed (K0S, Λ, ...).
    - ``prefilter_lepton_pt_min`` [GeV], ``prefilter_lepton_abs_eta``: process-level pre-filter of tt̄ and
      W+jets: keep a hard process only if a W decayed to e/μ within these cuts (or, for tt̄, to τ);
      ``use_prefilter = False`` switches it off (the unfiltered sample, for validation; ~1.5-2x slower).
    - ``pythia_commands``: extra Pythia settings strings, applied last.

    Filters and output:

    - ``filter_lepton_pt_min`` [GeV], ``filter_lepton_abs_eta``: generator-level filter, at least one
      final-state e or μ within these cuts.
    - ``accept_lepton_pt_min`` [GeV]: an event is written only if it has a reconstructed Electron or
      MuonTight above this PT (the analysis cut of ARCHITECTURE §3).
    - ``isolated_leptons_only``: also require that lepton to be isolated as §3 defines it (relative
      isolation < ``isolation_max`` in a cone ΔR < ``isolation_cone``), i.e. the ingest stage's event
      selection. Off by default; it matters for QCD, where only ~11 % of the events have an isolated one
      (tt̄ ~92 %, W+jets ~99 %): with it on, every written event survives ingest, at ~8x the QCD
      generation time per file.
    - ``qcd_redecays``: QCD only; 0 (the default) decays every hadron once, as Pythia does. N > 0 leaves
      the weakly decaying b- and c-hadrons undecayed in Pythia's event and decays them N times per
      generated event (N trials, each with its own detector response), writing the first accepted
      trial, weighted k/N for k accepted trials (see ``redecay.py``): ≈ 15x more isolated-lepton QCD
      events per CPU-second at N = 25, unbiased apart from under-representing events with k > 1.
    - ``batch_size``: events generated and processed together (memory ≈ 0.25 MB per event; with
      ``qcd_redecays = N`` a QCD batch is batch_size / N generated events, at least 10).
    - ``min_filter_efficiency``: generation stops with an error once ``generated`` exceeds
      ``n_events / min_filter_efficiency`` (+ one batch) without reaching ``n_events``.
    - ``compression_level``: ZSTD level of the ROOT file.
    """

    ecm: float = 13000.0
    wjets_pthat_min: float = 20.0
    qcd_pthat_min: float = 50.0
    qcd_heavy_flavours: tuple[str, ...] = QCD_HEAVY_FLAVOURS
    tau0_max: float = 10.0
    prefilter_lepton_pt_min: float = 10.0
    prefilter_lepton_abs_eta: float = 3.0
    use_prefilter: bool = True
    filter_lepton_pt_min: float = 20.0
    filter_lepton_abs_eta: float = 2.5
    accept_lepton_pt_min: float = 23.0
    isolated_leptons_only: bool = False
    qcd_redecays: int = 0
    isolation_cone: float = 0.3
    isolation_max: float = 0.45
    batch_size: int = 200
    min_filter_efficiency: float = 1e-3
    compression_level: int = 5
    pythia_commands: tuple[str, ...] = ()
    detector: DetectorSettings = field(default_factory=DetectorSettings)

    def __post_init__(self) -> None:
        _check_positive(
            self, "ecm", "tau0_max", "prefilter_lepton_abs_eta", "filter_lepton_abs_eta", "batch_size",
            "min_filter_efficiency", "compression_level", "isolation_cone", "isolation_max",
        )
        thresholds = ("wjets_pthat_min", "qcd_pthat_min", "prefilter_lepton_pt_min", "filter_lepton_pt_min", "accept_lepton_pt_min")
        for name in thresholds:
            if getattr(self, name) < 0:
                raise ValueError(f"SimulationSettings.{name} must be >= 0, got {getattr(self, name)!r}")
        if not isinstance(self.batch_size, int):
            raise ValueError(f"SimulationSettings.batch_size must be an int, got {self.batch_size!r}")
        redecays = self.qcd_redecays
        if isinstance(redecays, bool) or not isinstance(redecays, int) or not 0 <= redecays <= MAX_REDECAYS:
            raise ValueError(
                f"SimulationSettings.qcd_redecays must be an int from 0 (off) to {MAX_REDECAYS}, got {self.qcd_redecays!r}"
            )
        if self.min_filter_efficiency > 1:
            raise ValueError(
                f"SimulationSettings.min_filter_efficiency must be in (0, 1], got {self.min_filter_efficiency!r}"
            )
        unknown = [f for f in self.qcd_heavy_flavours if f not in QCD_HEAVY_FLAVOURS]
        if unknown or not self.qcd_heavy_flavours:
            raise ValueError(
                f"SimulationSettings.qcd_heavy_flavours must be a non-empty subset of {QCD_HEAVY_FLAVOURS}, "
                f"got {self.qcd_heavy_flavours!r}"
            )
        if not isinstance(self.detector, DetectorSettings):
            raise ValueError(f"SimulationSettings.detector must be a DetectorSettings, got {type(self.detector).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """All settings as plain JSON-able values (the detector's nested under ``"detector"``)."""
        return dataclasses.asdict(self)
