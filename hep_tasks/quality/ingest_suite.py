"""The data-quality suite of the ingest stage's output (ARCHITECTURE §3 and §4).

:func:`ingest_checks` returns three checks for :func:`~hep_tasks.quality.runner.run_checks`:

``events`` (the ingested Parquet as written)
    schema and types (:data:`EVENTS_SCHEMA`); no NULL; no NaN/±inf in ``hlf`` or in any particle
    element; 14 HLF values and ``n_particles`` rows of 19 features (one "shapes" expectation);
    1 ≤ ``n_particles`` ≤ 801; particle |Phi| ≤ π (+1e-6); type flags (isChHad, isNeuHad, isGamma,
    isEle, isMu) each 0 or 1 and one-hot per row; row 0, and only row 0, flagged as electron or
    muon, and its PT, Eta, Phi, Charge and isEle equal to the HLF lepton's; labels in {0, 1, 2},
    every class present, ``process`` matching ``label``; (source_file, entry) unique.
``hlf`` (the 14 high-level features as named columns)
    LepPT > 23 GeV; |LepEta| ≤ 2.5 (``lepton_max_abs_eta``: the tracker acceptance within which
    leptons are reconstructed); |PhiMET|, |LepPhi| ≤ π (+1e-6); HT, MET, MT ≥ 0;
    0 ≤ nBjets ≤ nJets; LepCharge ∈ {-1, 1}; LepIsEle ∈ {0, 1}; lepton isolations ≥ 0 and
    their sum < 0.45 (+1e-6), the isolation cut of §3.
``metrics`` (one row built by the caller from the ingest manifest)
    exactly one row; ``quarantined_fraction`` finite and within [0, ``max_quarantined_fraction``].

The ``hlf`` check is a projection of the events DataFrame; it is left out (and logged) when the
events lack the columns it needs, which the ``events`` schema expectations then report.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from hep_tasks.processes import PROCESS_OF_LABEL
from hep_tasks.quality.report import Check
from hep_tasks.quality.sql import (
    RowRules,
    finite_expectations,
    not_null_expectations,
    quote,
    schema_expectations,
    shapes_expectation,
    unique_keys_expectation,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

#: Columns and Spark SQL types the ingest stage writes.
EVENTS_SCHEMA: dict[str, str] = {
    "label": "int",
    "process": "string",
    "hlf": "array<float>",
    "particles": "array<array<float>>",
    "n_particles": "int",
    "source_file": "string",
    "entry": "bigint",
}
#: Columns identifying an event in failure samples.
KEYS: tuple[str, ...] = ("source_file", "entry")
#: Tolerance on angle bounds (rad): float32 storage may round π up.
ANGLE_TOLERANCE = 1e-6
#: Default |η| bound of the selected lepton (tracker acceptance).
LEPTON_MAX_ABS_ETA = 2.5
#: Absolute tolerance on the isolation-sum cut (float32 sums may round up).
ISOLATION_TOLERANCE = 1e-6
#: Relative tolerance between the lepton's row-0 features and its HLF copies.
LEPTON_MATCH_TOLERANCE = 1e-5
#: Particle-matrix columns holding the type flags, in §3 order.
TYPE_FLAGS: tuple[str, ...] = ("isChHad", "isNeuHad", "isGamma", "isEle", "isMu")


def ingest_checks(
    events_df: DataFrame,
    metrics_df: DataFrame,
    *,
    max_quarantined_fraction: float,
    lepton_max_abs_eta: float = LEPTON_MAX_ABS_ETA,
) -> list[Check]:
    """Checks of an ingested dataset: ``events``, ``hlf`` (derived from the events) and ``metrics``.

    Args:
        events_df: the ingest output (:data:`EVENTS_SCHEMA`; momenta in GeV, angles in rad).
        metrics_df: one row with at least ``quarantined_fraction`` (and, for the record,
            ``files_total``, ``files_quarantined``), built from the ingest manifest.
        max_quarantined_fraction: largest accepted fraction of quarantined input files.
        lepton_max_abs_eta: bound on the selected lepton's |η|.
    """
    if not 0.0 <= max_quarantined_fraction <= 1.0:
        raise ValueError(f"max_quarantined_fraction must be in [0, 1], got {max_quarantined_fraction}")
    events_rules, hlf_rules = RowRules(), RowRules()
    checks = [Check("events", events_df, events_expectations(events_rules), events_rules.columns)]
    missing = [c for c in ("hlf", *KEYS) if c not in events_df.columns]
    if missing or not dict(events_df.dtypes)["hlf"].startswith("array<"):
        log.warning(
            "ingest quality: no 'hlf' check, the events lack %s (columns: %s)",
            missing or "an array column hlf",
            ", ".join(f"{n} {t}" for n, t in events_df.dtypes),
        )
    else:
        expectations = hlf_expectations(hlf_rules, lepton_max_abs_eta=lepton_max_abs_eta)
        checks.append(Check("hlf", hlf_view(events_df), expectations, hlf_rules.columns))
    checks.append(Check("metrics", metrics_df, metrics_expectations(max_quarantined_fraction)))
    return checks


def hlf_view(events_df: DataFrame) -> DataFrame:
    """``source_file, entry`` and the 14 high-level features as named float columns."""
    from pyspark.sql import functions as F

    from hep_tasks.physics.constants import HLF_FEATURES

    return events_df.select(*KEYS, *(F.get("hlf", i).alias(name) for i, name in enumerate(HLF_FEATURES)))


def events_expectations(rules: RowRules) -> list[Any]:
    """Expectations on the ingested events as written (see the module docstring); the row-level
    ones are rules of ``rules``, whose columns the check derives."""
    from hep_tasks.physics.constants import HLF_FEATURES, HLF_INDEX, MAX_PARTICLES, PARTICLE_FEATURES, PARTICLE_INDEX
    from hep_tasks.quality.gx import gxe

    n_hlf, n_feat = len(HLF_FEATURES), len(PARTICLE_FEATURES)
    p = PARTICLE_INDEX
    labels = sorted(PROCESS_OF_LABEL)
    flags = [f"get(r, {p[f]})" for f in TYPE_FLAGS]
    one_hot = " AND ".join(f"{f} IN (0, 1)" for f in flags) + f" AND {' + '.join(flags)} = 1"
    lepton_flag = f"get(r, {p['isEle']}) + get(r, {p['isMu']})"
    process_of_label = " ".join(f"WHEN {label} THEN '{name}'" for label, name in sorted(PROCESS_OF_LABEL.items()))
    phi_max = math.pi + ANGLE_TOLERANCE

    def lepton(feature: str) -> str:
        return f"get(get(particles, 0), {p[feature]})"

    def hlf(feature: str) -> str:
        return f"get(hlf, {HLF_INDEX[feature]})"

    def close(a: str, b: str) -> str:
        return f"abs({a} - {b}) <= {LEPTON_MATCH_TOLERANCE!r} * greatest(1.0, abs({b}))"

    lepton_matches = " AND ".join(
        [close(lepton("PT"), hlf("LepPT")), close(lepton("Eta"), hlf("LepEta")), close(lepton("Phi"), hlf("LepPhi")),
         f"{lepton('Charge')} = {hlf('LepCharge')}", f"{lepton('isEle')} = {hlf('LepIsEle')}"]
    )
    return [
        *schema_expectations(EVENTS_SCHEMA),
        *not_null_expectations(list(EVENTS_SCHEMA)),
        *finite_expectations("hlf", "array", keys=KEYS, rules=rules),
        *finite_expectations("particles", "matrix", keys=KEYS, rules=rules),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=labels),
        gxe.ExpectColumnDistinctValuesToContainSet(column="label", value_set=labels),
        rules.expectation(
            "process",
            "process matches label (" + ", ".join(f"{k}={v}" for k, v in sorted(PROCESS_OF_LABEL.items())) + ")",
            f"NOT coalesce(process = CASE label {process_of_label} END, false)",
            keys=KEYS, show="label, process", column="process",
        ),
        unique_keys_expectation(KEYS),
        shapes_expectation(arrays={"hlf": n_hlf}, matrix="particles", matrix_rows="n_particles",
                           matrix_width=n_feat, keys=KEYS, rules=rules),
        gxe.ExpectColumnValuesToBeBetween(column="n_particles", min_value=1, max_value=MAX_PARTICLES),
        rules.expectation(
            "phi",
            f"particle Phi within [-pi, pi] (+{ANGLE_TOLERANCE:g})",
            f"exists(particles, r -> NOT coalesce(abs(get(r, {p['Phi']})) <= {phi_max!r}, false))",
            keys=KEYS, column="particles",
        ),
        rules.expectation(
            "type_flags",
            "particle type flags (isChHad, isNeuHad, isGamma, isEle, isMu) are 0/1 and one-hot per row",
            f"exists(particles, r -> NOT coalesce({one_hot}, false))",
            keys=KEYS, show=f"size(filter(particles, r -> NOT coalesce({one_hot}, false))) AS n_bad_rows",
            column="particles",
        ),
        rules.expectation(
            "lepton_row",
            "row 0, and only row 0, is the lepton (isEle + isMu = 1)",
            f"size(filter(particles, (r, i) -> NOT coalesce(({lepton_flag} = 1) = (i = 0), false))) > 0",
            keys=KEYS, column="particles",
        ),
        rules.expectation(
            "lepton_matches_hlf",
            "lepton row 0 agrees with the HLF lepton (PT, Eta, Phi, Charge, isEle)",
            f"NOT coalesce({lepton_matches}, false)",
            keys=KEYS, show=f"{lepton('PT')} AS row0_pt, {hlf('LepPT')} AS lep_pt", column="particles",
        ),
    ]


def hlf_expectations(rules: RowRules, *, lepton_max_abs_eta: float = LEPTON_MAX_ABS_ETA) -> list[Any]:
    """Physical ranges of the named high-level features (see the module docstring); the
    isolation-sum rule is one of ``rules``."""
    from hep_tasks.physics.constants import ISOLATED_LEPTON_MAX_ISO, LEPTON_MIN_PT
    from hep_tasks.quality.gx import gxe

    phi_max = math.pi + ANGLE_TOLERANCE
    between = gxe.ExpectColumnValuesToBeBetween
    iso = ("LepIsoCh", "LepIsoGamma", "LepIsoNeu")
    iso_sum = " + ".join(quote(c) for c in iso)
    return [
        between(column="LepPT", min_value=LEPTON_MIN_PT, strict_min=True),
        between(column="LepEta", min_value=-lepton_max_abs_eta, max_value=lepton_max_abs_eta),
        between(column="PhiMET", min_value=-phi_max, max_value=phi_max),
        between(column="LepPhi", min_value=-phi_max, max_value=phi_max),
        *(between(column=c, min_value=0) for c in ("HT", "MET", "MT", "nJets", "nBjets", *iso)),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="nJets", column_B="nBjets", or_equal=True),
        gxe.ExpectColumnValuesToBeInSet(column="LepCharge", value_set=[-1, 1]),
        gxe.ExpectColumnValuesToBeInSet(column="LepIsEle", value_set=[0, 1]),
        rules.expectation(
            "isolated",
            f"lepton is isolated: LepIsoCh + LepIsoGamma + LepIsoNeu < {ISOLATED_LEPTON_MAX_ISO}"
            f" (+{ISOLATION_TOLERANCE:g})",
            f"NOT coalesce({iso_sum} < {ISOLATED_LEPTON_MAX_ISO + ISOLATION_TOLERANCE!r}, false)",
            keys=KEYS, show=f"{iso_sum} AS iso_sum", column="LepIsoCh",
        ),
    ]


def metrics_expectations(max_quarantined_fraction: float) -> list[Any]:
    """The ingest run's file counts: quarantined fraction within bounds."""
    from hep_tasks.quality.gx import gxe

    return [
        gxe.ExpectTableRowCountToEqual(value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="quarantined_fraction"),
        *finite_expectations("quarantined_fraction", "scalar"),
        gxe.ExpectColumnValuesToBeBetween(
            column="quarantined_fraction", min_value=0, max_value=max_quarantined_fraction
        ),
    ]
