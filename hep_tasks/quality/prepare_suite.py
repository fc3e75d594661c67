"""The data-quality suite of the prepare stage's output: ``train`` and ``test`` (ARCHITECTURE §4).

:func:`prepared_checks` returns three checks for :func:`~hep_tasks.quality.runner.run_checks`:

``train`` and ``test`` (each split as written)
    schema and types (:data:`PREPARED_SCHEMA`); no NULL; no NaN/±inf in ``label_onehot``, ``hlf``
    or any particle element; labels in {0, 1, 2}, all three present, and *equal class counts*
    (an unexpected-rows query grouping by label; ``max_class_imbalance`` relaxes it); one-hot
    rows of values in {0, 1} summing to 1 and set at ``label``; 3 one-hot values, 14 HLF values
    and ``n_particles`` rows of 19 features (one "shapes" expectation); train HLF within [0, 1]
    (±1e-6), since the MinMax scaler was fitted on train (test values may fall outside and are
    only required to be finite); 1 ≤ ``n_particles`` ≤ 801; (source_file, entry) unique;
    particle rows sorted by decreasing ΔR from the lepton, which is the last row.
``overlap`` (the (source_file, entry) pairs found in both splits)
    no rows: the splits are disjoint.

The ΔR ordering is checked on un-scaled coordinates: η = z·``eta_std`` + ``eta_mean`` and
φ = z·``phi_std`` + ``phi_mean`` for the standardised particle Eta (index 5) and Phi (index 6);
Δφ is wrapped into [-π, π] and ΔR = sqrt(Δη² + Δφ²) is measured from the last row; a row may
exceed the one before it by at most :data:`DELTA_R_TOLERANCE`. That the last row *is* the
lepton cannot be checked here (its type flags are standardised too).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from hep_tasks.processes import PROCESS_OF_LABEL
from hep_tasks.quality.report import Check
from hep_tasks.quality.sql import (
    RowRules,
    equal_class_counts_expectation,
    finite_expectations,
    not_null_expectations,
    schema_expectations,
    shapes_expectation,
    unique_keys_expectation,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

#: Columns and Spark SQL types of each prepared split.
PREPARED_SCHEMA: dict[str, str] = {
    "label": "int",
    "label_onehot": "array<float>",
    "hlf": "array<float>",
    "particles": "array<array<float>>",
    "n_particles": "int",
    "source_file": "string",
    "entry": "bigint",
}
#: Columns identifying an event (and the split-disjointness key).
KEYS: tuple[str, ...] = ("source_file", "entry")
#: Tolerance on the [0, 1] range of MinMax-scaled train HLF.
SCALED_RANGE_TOLERANCE = 1e-6
#: How much a particle's ΔR may exceed the previous row's (float32 round trip of the scaling).
DELTA_R_TOLERANCE = 1e-3


def prepared_checks(
    train_df: DataFrame,
    test_df: DataFrame,
    *,
    eta_mean: float,
    eta_std: float,
    phi_mean: float,
    phi_std: float,
    max_class_imbalance: float = 0.0,
) -> list[Check]:
    """Checks of a prepared dataset: ``train``, ``test`` and ``overlap`` (see the module docstring).

    Args:
        train_df, test_df: the two splits (:data:`PREPARED_SCHEMA`).
        eta_mean, eta_std: the particle-Eta standardisation fitted on train (η is dimensionless).
        phi_mean, phi_std: the particle-Phi standardisation fitted on train (rad).
        max_class_imbalance: allowed relative shortfall of a class count against the largest
            class of the same split; 0 (default) demands exactly equal counts.
    """
    scaling = {"eta_mean": eta_mean, "eta_std": eta_std, "phi_mean": phi_mean, "phi_std": phi_std}
    bad = {k: v for k, v in scaling.items() if not math.isfinite(float(v))}
    if bad or float(eta_std) <= 0 or float(phi_std) <= 0:
        raise ValueError(f"scaler parameters must be finite with positive std, got {scaling}")
    checks = []
    for name, df in (("train", train_df), ("test", test_df)):
        rules = RowRules()
        expectations = split_expectations(rules, train=name == "train", max_class_imbalance=max_class_imbalance, **scaling)
        checks.append(Check(name, df, expectations, rules.columns))
    if all(k in df.columns for k in KEYS for df in (train_df, test_df)):
        overlap = train_df.select(*KEYS).intersect(test_df.select(*KEYS))
        checks.append(Check("overlap", overlap, overlap_expectations()))
    return checks


def overlap_expectations() -> list[Any]:
    """The (source_file, entry) pairs present in both splits: there must be none."""
    from hep_tasks.quality.gx import gxe

    return [
        gxe.ExpectTableRowCountToEqual(
            value=0, description="train and test are disjoint on (source_file, entry): no common event"
        )
    ]


def split_expectations(
    rules: RowRules,
    *,
    train: bool,
    eta_mean: float,
    eta_std: float,
    phi_mean: float,
    phi_std: float,
    max_class_imbalance: float = 0.0,
) -> list[Any]:
    """Expectations on one prepared split (``train=True`` adds the scaled-range check on HLF); the
    row-level ones are rules of ``rules``, whose columns the check derives."""
    from hep_tasks.physics.constants import HLF_FEATURES, MAX_PARTICLES, PARTICLE_FEATURES
    from hep_tasks.quality.gx import gxe

    labels = sorted(PROCESS_OF_LABEL)
    n_hlf, n_feat, n_classes = len(HLF_FEATURES), len(PARTICLE_FEATURES), len(labels)
    low, high = -SCALED_RANGE_TOLERANCE, 1.0 + SCALED_RANGE_TOLERANCE
    one_hot = (
        "forall(label_onehot, x -> x IN (0, 1)) AND aggregate(label_onehot, 0D, (a, x) -> a + x) = 1 "
        "AND get(label_onehot, label) = 1"
    )
    unsorted, unsorted_shows = delta_r_order_rule(eta_mean=eta_mean, eta_std=eta_std, phi_mean=phi_mean, phi_std=phi_std)
    out = [
        *schema_expectations(PREPARED_SCHEMA),
        *not_null_expectations(list(PREPARED_SCHEMA)),
        *finite_expectations("label_onehot", "array", keys=KEYS, rules=rules),
        *finite_expectations("hlf", "array", keys=KEYS, rules=rules),
        *finite_expectations("particles", "matrix", keys=KEYS, rules=rules),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=labels),
        gxe.ExpectColumnDistinctValuesToEqualSet(column="label", value_set=labels),
        equal_class_counts_expectation("label", max_imbalance=max_class_imbalance),
        rules.expectation(
            "one_hot",
            "label_onehot is the one-hot code of label (values in {0, 1}, sum 1, 1 at index label)",
            f"NOT coalesce({one_hot}, false)",
            keys=KEYS, show="label", column="label_onehot",
        ),
        shapes_expectation(arrays={"label_onehot": n_classes, "hlf": n_hlf}, matrix="particles",
                           matrix_rows="n_particles", matrix_width=n_feat, keys=KEYS, rules=rules),
        gxe.ExpectColumnValuesToBeBetween(column="n_particles", min_value=1, max_value=MAX_PARTICLES),
        unique_keys_expectation(KEYS),
        rules.expectation(
            "delta_r_order",
            f"particle rows sorted by decreasing ΔR from the lepton (last row), tolerance {DELTA_R_TOLERANCE:g}",
            unsorted, keys=KEYS, show=unsorted_shows, column="particles",
        ),
    ]
    if train:
        outside = f"x -> NOT coalesce(x BETWEEN {low!r} AND {high!r}, false)"
        out.append(
            rules.expectation(
                "scaled_hlf",
                f"train hlf elements within [0, 1] (±{SCALED_RANGE_TOLERANCE:g}), MinMax fitted on train",
                f"exists(hlf, {outside})",
                keys=KEYS, show=f"filter(hlf, {outside}) AS outside", column="hlf",
            )
        )
    return out


def delta_r_order_rule(*, eta_mean: float, eta_std: float, phi_mean: float, phi_std: float) -> tuple[str, str]:
    """``(SQL predicate "the particles are not sorted by decreasing ΔR from the last row", the
    columns an offending row shows)``: the 0-based index of the first particle further from the
    lepton than the one before it, and the number of such particles (see the module docstring).

    Linear in the number of particles: no lambda indexes into a computed array (Spark inlines
    such arrays into the lambda and recomputes them for every element, which made an earlier,
    index-based version cubic and minutes slow on real events); each pair of neighbouring rows
    computes its two distances from the lepton, an element access.
    """
    from hep_tasks.physics.constants import PARTICLE_INDEX

    eta_i, phi_i = PARTICLE_INDEX["Eta"], PARTICLE_INDEX["Phi"]

    def eta(row: str) -> str:
        return f"(get({row}, {eta_i}) * {_num(eta_std)} + {_num(eta_mean)})"

    def phi(row: str) -> str:
        return f"(get({row}, {phi_i}) * {_num(phi_std)} + {_num(phi_mean)})"

    lepton = "try_element_at(particles, -1)"

    def delta_r(row: str) -> str:
        dphi = f"pmod({phi(row)} - {phi(lepton)} + pi(), 2 * pi()) - pi()"
        return f"sqrt(pow({eta(row)} - {eta(lepton)}, 2) + pow({dphi}, 2))"

    pairs = "greatest(size(particles) - 1, 0)"
    rising = (f"zip_with(slice(particles, 1, {pairs}), slice(particles, 2, {pairs}), "
              f"(a, b) -> {delta_r('a')} + {DELTA_R_TOLERANCE!r} < {delta_r('b')})")
    return (f"exists({rising}, x -> x)",
            f"array_position({rising}, true) AS first_rising_row, size(filter({rising}, x -> x)) AS n_rising")


def _num(value: float) -> str:
    """A float as a Spark SQL double literal."""
    return f"CAST({float(value)!r} AS DOUBLE)"
