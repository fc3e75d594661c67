"""The classifiers' names and hyper-parameters: defaults, overrides (JSON), validation.

Imports nothing heavy, so configuration and the Airflow DAG can check a value before any Spark or
TensorFlow work starts. ``learning_rate`` is the Adam rate for a *global* batch of
:data:`REFERENCE_BATCH` events; training scales it with the square root of the actual global
batch (per-worker batch x workers) over that reference, the rule suited to Adam (Hoffer et al.,
2017; linear scaling, Goyal et al. 2017, is for SGD), with one epoch of linear warm-up.
``batch_size`` is per worker; on a small dataset it is lowered so that an epoch has at least
:data:`MIN_STEPS_PER_EPOCH` steps (the manifest records the batch used).

>>> resolve("hlf", {"hlf": {"units": [64, 32]}})["units"]
[64, 32]
>>> resolve("hlf", {"hlf": {"unit": 3}})
Traceback (most recent call last):
...
ValueError: unknown hyper-parameter 'unit' of model hlf (known: batch_size, dropout, learning_rate, steps_per_call, units)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: The three classifiers of the 2019 paper (ARCHITECTURE §4 "train").
MODELS: tuple[str, ...] = ("hlf", "particle_sequence", "inclusive")
#: Models that read the particle list (the others read only the 14 high-level features).
SEQUENCE_MODELS: frozenset[str] = frozenset({"particle_sequence", "inclusive"})
#: Global batch at which ``learning_rate`` applies unscaled.
REFERENCE_BATCH = 256
#: Fewest optimizer steps per epoch: smaller datasets get smaller batches.
MIN_STEPS_PER_EPOCH = 8

DEFAULTS: dict[str, dict[str, Any]] = {
    # dense 50-20-10 relu, softmax 3
    "hlf": {"units": [50, 20, 10], "dropout": 0.0, "learning_rate": 3e-3, "batch_size": 512, "steps_per_call": 8},
    # masked GRU(50) over the pre-padded particle list (lepton last), softmax 3
    "particle_sequence": {"gru_units": 50, "dropout": 0.0, "learning_rate": 2e-3, "batch_size": 256, "steps_per_call": 1},
    # GRU(50) branch ⊕ the 14 HLF, dense 25 relu, softmax 3
    "inclusive": {
        "gru_units": 50, "dense_units": 25, "dropout": 0.0, "learning_rate": 2e-3, "batch_size": 256, "steps_per_call": 1,
    },
}  # fmt: skip

_CHECKS = {
    "units": lambda v: isinstance(v, list) and 0 < len(v) <= 8 and all(_int_in(u, 1, 4096) for u in v),
    "gru_units": lambda v: _int_in(v, 1, 1024),
    "dense_units": lambda v: _int_in(v, 1, 4096),
    "dropout": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v < 1.0,
    "learning_rate": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 < v < 1.0,
    "batch_size": lambda v: _int_in(v, 1, 65536),
    "steps_per_call": lambda v: _int_in(v, 1, 1000),
}
_ALLOWED = {
    "units": "a list of 1-8 integers in [1, 4096]",
    "gru_units": "an integer in [1, 1024]",
    "dense_units": "an integer in [1, 4096]",
    "dropout": "a number in [0, 1)",
    "learning_rate": "a number in (0, 1)",
    "batch_size": "an integer in [1, 65536]",
    "steps_per_call": "an integer in [1, 1000]",
}


def _int_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def parse_overrides(text: str | Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"model": {"name": value}}`` from JSON text (or a mapping), validated; empty text -> ``{}``."""
    if isinstance(text, Mapping):
        overrides = dict(text)
    else:
        text = (text or "").strip()
        if not text:
            return {}
        try:
            overrides = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"not valid JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(overrides, dict):
        raise ValueError('must be a JSON object such as {"hlf": {"units": [64, 32]}}')
    for model, values in overrides.items():
        if model not in DEFAULTS:
            raise ValueError(f"unknown model {model!r} (known: {', '.join(MODELS)})")
        if not isinstance(values, dict):
            raise ValueError(f"the value for model {model} must be a JSON object of hyper-parameters")
        resolve(model, overrides)
    return overrides


def resolve(model: str, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The model's defaults with ``overrides[model]`` applied, each value checked."""
    if model not in DEFAULTS:
        raise ValueError(f"unknown model {model!r} (known: {', '.join(MODELS)})")
    values = dict(DEFAULTS[model])
    for name, value in (overrides or {}).get(model, {}).items():
        if name not in values:
            raise ValueError(f"unknown hyper-parameter {name!r} of model {model} (known: {', '.join(sorted(values))})")
        if not _CHECKS[name](value):
            raise ValueError(f"hyper-parameter {model}.{name}={value!r} must be {_ALLOWED[name]}")
        values[name] = value
    return values
