"""The search space of each model: defaults, JSON overrides, validation, sampling with Optuna.

A model's space maps some of its hyper-parameters (:mod:`hep_tasks.train.hyperparameters`) to a
dimension; the others keep their defaults in every trial:

- ``{"low": a, "high": b}``: a range, of integers when the hyper-parameter is one (``gru_units``,
  ``dense_units``, ``batch_size``, ``steps_per_call``), else of floats; ``"log": true`` samples on a
  log scale, ``"step": s`` on a grid;
- ``{"choices": [...]}``: one of the values (``units`` takes lists, e.g. ``[[50, 20, 10], [64, 32]]``);
- a plain value: the same in every trial.

The JSON parameter ``search_space`` gives spaces per model, ``{"<model>": {...}}``; a model named
there gets exactly that space (it replaces the model's default space), the others keep theirs.
Every value a space can produce is checked with the train stage's own rules before any work
starts, and a space must search at least one hyper-parameter. Imports nothing heavy.

>>> parse_space('{"hlf": {"dropout": {"low": 0.0, "high": 0.5}}}')["hlf"]
{'dropout': Range(low=0.0, high=0.5, log=False, step=None)}
>>> parse_space('{"hlf": {}}')
Traceback (most recent call last):
...
ValueError: the search space of model hlf is empty (it can search: batch_size, dropout, learning_rate, steps_per_call, units)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

from hep_tasks.train.hyperparameters import DEFAULTS, MODELS, resolve

#: Hyper-parameters that take integers (their ranges are integer ranges).
INTEGER = frozenset({"gru_units", "dense_units", "batch_size", "steps_per_call"})
#: Hyper-parameters that can only be chosen among listed values.
CHOICE_ONLY = frozenset({"units"})

#: The default spaces: layer sizes, dropout, learning rate, batch size (and GRU units).
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "hlf": {
        "units": {"choices": [[50, 20, 10], [32, 16], [64, 32, 16], [100, 50, 25], [128, 64, 32]]},
        "dropout": {"low": 0.0, "high": 0.3},
        "learning_rate": {"low": 3e-4, "high": 3e-2, "log": True},
        "batch_size": {"choices": [128, 256, 512, 1024]},
    },
    "particle_sequence": {
        "gru_units": {"low": 16, "high": 128, "log": True},
        "dropout": {"low": 0.0, "high": 0.3},
        "learning_rate": {"low": 3e-4, "high": 1e-2, "log": True},
        "batch_size": {"choices": [64, 128, 256]},
    },
    "inclusive": {
        "gru_units": {"low": 16, "high": 128, "log": True},
        "dense_units": {"low": 8, "high": 64, "log": True},
        "dropout": {"low": 0.0, "high": 0.3},
        "learning_rate": {"low": 3e-4, "high": 1e-2, "log": True},
        "batch_size": {"choices": [64, 128, 256]},
    },
}  # fmt: skip


@dataclass(frozen=True)
class Range:
    """Numbers from ``low`` to ``high`` (both included), on a log scale or a ``step`` grid."""

    low: float
    high: float
    log: bool = False
    step: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class Choice:
    """One of ``choices``; lists are passed to Optuna as their JSON text (it takes scalars only)."""

    choices: tuple[Any, ...]

    @property
    def encoded(self) -> tuple[Any, ...]:
        return tuple(json.dumps(c) if isinstance(c, list) else c for c in self.choices)

    def decode(self, value: Any) -> Any:
        return self.choices[self.encoded.index(value)]

    def to_json(self) -> dict[str, Any]:
        return {"choices": list(self.choices)}


@dataclass(frozen=True)
class Fixed:
    """The same value in every trial."""

    value: Any

    def to_json(self) -> Any:
        return self.value


Dimension = Union[Range, Choice, Fixed]
ModelSpace = dict[str, Dimension]


def parse_space(text: str | Mapping[str, Any] = "") -> dict[str, ModelSpace]:
    """Every model's space: :data:`DEFAULT_SPACE` with the models of ``text`` (JSON) replaced.

    Raises ValueError with a one-line message naming the model, the hyper-parameter and the
    problem.
    """
    overrides = _json_object(text)
    for model, space in overrides.items():
        if model not in DEFAULTS:
            raise ValueError(f"unknown model {model!r} (known: {', '.join(MODELS)})")
        if not isinstance(space, Mapping):
            raise ValueError(f"the search space of model {model} must be a JSON object of hyper-parameters")
    return {model: _model_space(model, overrides.get(model, DEFAULT_SPACE[model])) for model in MODELS}


def space_to_json(space: ModelSpace) -> dict[str, Any]:
    """A model's space as the JSON ``search_space`` takes (recorded in the manifest)."""
    return {name: dim.to_json() for name, dim in space.items()}


def searched(space: ModelSpace) -> list[str]:
    """The hyper-parameters the space varies (not the fixed ones)."""
    return [name for name, dim in space.items() if not isinstance(dim, Fixed)]


def suggest(trial: Any, space: ModelSpace) -> dict[str, Any]:
    """Ask an Optuna trial for a value of every dimension; the hyper-parameter values (lists decoded)."""
    values: dict[str, Any] = {}
    for name, dim in space.items():
        if isinstance(dim, Range):
            if name in INTEGER:
                values[name] = trial.suggest_int(name, int(dim.low), int(dim.high), log=dim.log, step=int(dim.step or 1))
            else:
                values[name] = trial.suggest_float(name, dim.low, dim.high, log=dim.log, step=dim.step)
        elif isinstance(dim, Choice):
            values[name] = dim.decode(trial.suggest_categorical(name, dim.encoded))
        else:
            values[name] = dim.value
    return values


def decode_params(space: ModelSpace, params: Mapping[str, Any]) -> dict[str, Any]:
    """Hyper-parameter values of a finished trial from its Optuna ``params`` (plus the fixed ones)."""
    values: dict[str, Any] = {}
    for name, dim in space.items():
        if isinstance(dim, Fixed):
            values[name] = dim.value
        elif name in params:
            values[name] = dim.decode(params[name]) if isinstance(dim, Choice) else params[name]
    return values


def _json_object(text: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(text, Mapping):
        return dict(text)
    text = (text or "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"not valid JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(value, dict):
        raise ValueError('must be a JSON object such as {"hlf": {"dropout": {"low": 0.0, "high": 0.3}}}')
    return value


def _model_space(model: str, raw: Mapping[str, Any]) -> ModelSpace:
    known = sorted(DEFAULTS[model])
    if not raw:
        raise ValueError(f"the search space of model {model} is empty (it can search: {', '.join(known)})")
    space: ModelSpace = {}
    for name, spec in raw.items():
        if name not in DEFAULTS[model]:
            raise ValueError(f"unknown hyper-parameter {name!r} in the search space of model {model} (known: {', '.join(known)})")
        space[name] = _dimension(model, name, spec)
    if not searched(space):
        raise ValueError(f"the search space of model {model} fixes every value ({', '.join(space)}): nothing to search")
    return space


def _dimension(model: str, name: str, spec: Any) -> Dimension:
    where = f"{model}.{name}"
    if not isinstance(spec, Mapping):
        _check_value(model, name, spec)
        return Fixed(spec)
    keys = set(spec)
    if keys == {"choices"}:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ValueError(f"search space {where}: choices must be a non-empty list")
        for choice in choices:
            _check_value(model, name, choice)
        encoded = [json.dumps(c) if isinstance(c, list) else c for c in choices]
        if len(set(map(json.dumps, encoded))) != len(encoded):
            raise ValueError(f"search space {where}: choices {choices} list a value twice")
        return Choice(tuple(choices))
    if not {"low", "high"} <= keys or keys - {"low", "high", "log", "step"}:
        raise ValueError(
            f"search space {where}: {json.dumps(spec)} is neither a range "
            '{"low": ..., "high": ..., "log": ..., "step": ...} nor {"choices": [...]}'
        )
    if name in CHOICE_ONLY:
        raise ValueError(f'search space {where}: takes {{"choices": [...]}} of lists, e.g. [[50, 20, 10], [64, 32]]')
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    integer = name in INTEGER
    for key, value in (("low", low), ("high", high), ("step", step)):
        if value is None and key == "step":
            continue
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) or value != value:
            raise ValueError(f"search space {where}: {key}={value!r} must be {'an integer' if integer else 'a number'}")
    if not isinstance(log, bool):
        raise ValueError(f"search space {where}: log={log!r} must be true or false")
    if not low < high:
        raise ValueError(f"search space {where}: low={low!r} must be below high={high!r} (a fixed value is written plainly)")
    if log and (low <= 0 or step is not None):
        raise ValueError(f"search space {where}: a log range needs low > 0 and no step")
    if step is not None and not 0 < step <= high - low:
        raise ValueError(f"search space {where}: step={step!r} must be positive and at most high - low")
    for value in (low, high):
        _check_value(model, name, value)
    if integer:
        return Range(int(low), int(high), log, None if step is None else int(step))
    return Range(float(low), float(high), log, None if step is None else float(step))


def _check_value(model: str, name: str, value: Any) -> None:
    try:
        resolve(model, {model: {name: value}})
    except ValueError as err:
        raise ValueError(f"search space {model}.{name}: {err}") from None
