"""Configuration in one typed place: the pipeline settings and every stage's parameters.

Precedence, lowest first: the defaults below, environment variables, explicit values (command-line
flags of ``python -m hep_tasks <stage>``, which is what Airflow's DAG params become).

- Pipeline settings: ``HEP_DATA_ROOT`` (default ``./data``), ``HEP_SPARK_MASTER`` (default ``local[*]``,
  used only when a job is not started by ``spark-submit``, which brings its own master).
- Stage parameters: ``HEP_<STAGE>_<PARAM>``, for instance ``HEP_SIMULATE_EVENTS_PER_FILE=500``.

Every value is validated before any Spark work starts; a bad value raises :class:`ConfigError` with a
one-line message naming the parameter, the value and what is allowed. A value longer than
:data:`MAX_VALUE_CHARS` is refused without being echoed.

>>> SimulateParams.from_values({"events_per_file": "50"}, env={}).events_per_file
50
>>> SimulateParams.from_values({"processes": "ttbar,higgs"}, env={})
Traceback (most recent call last):
...
hep_tasks.config.ConfigError: invalid parameter simulate.processes='ttbar,higgs': unknown process 'higgs' (known: qcd, ttbar, wjets)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, get_type_hints

from hep_tasks.errors import PipelineError
from hep_tasks.processes import PROCESSES
from hep_tasks.train.hyperparameters import MODELS, parse_overrides
from hep_tasks.tune.space import parse_space


#: Longest value (as text) any setting or parameter may have: far above any real one (a long list of
#: input files, a JSON search space), far below what would flood a log or a manifest.
MAX_VALUE_CHARS = 65536
#: Most events per ingest split: above any real ROOT file's entries per Spark task.
MAX_ENTRIES_PER_SPLIT = 100_000_000
#: Upper bounds of counts a run can ask for: far above any real run, and checked the same way by the
#: CLI and by the DAG params (their ``maximum``), so a typo such as 10**12 epochs is refused at once.
MAX_EPOCHS = 10_000
MAX_TRIALS = 10_000
MAX_WORKERS = 1_024
MAX_TIME_BUDGET_S = 7 * 24 * 3600


class ConfigError(PipelineError, ValueError):
    """A parameter has a value the pipeline cannot use; the message names it."""


def _param(default: Any, help: str, check: Callable[[Any], str | None] | None = None) -> Any:
    """A dataclass field with its help text and a check returning an error text or None."""
    return field(default=default, metadata={"help": help, "check": check})


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be a positive integer"


def _positive_up_to(high: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return _positive(value) or (None if value <= high else f"must be at most {high}")

    return check


def _between(low: int, high: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"must be between {low} and {high}"

    return check


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be zero or positive"


def _fraction(value: Any) -> str | None:
    return None if 0.0 < value < 1.0 else "must be strictly between 0 and 1"


def _unit_interval(value: Any) -> str | None:
    return None if 0.0 <= value <= 1.0 else "must be between 0 and 1"


def _required(value: Any) -> str | None:
    return None if value else "is required"


def _one_of(*allowed: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in allowed else f"must be one of {', '.join(allowed)}"

    return check


def _processes(value: tuple[str, ...]) -> str | None:
    if not value:
        return "needs at least one process"
    for name in value:
        if name not in PROCESSES:
            return f"unknown process {name!r} (known: {', '.join(PROCESSES)})"
    if len(set(value)) != len(value):
        return "lists a process twice"
    return None


def _non_negative_number(value: Any) -> str | None:
    return None if value >= 0 and value == value else "must be zero or positive"


def _particles(value: Any) -> str | None:
    return None if 1 <= value <= 801 else "must be between 1 and 801"


def _models_or_all(value: tuple[str, ...]) -> str | None:
    unknown = [m for m in value if m not in MODELS]
    if unknown:
        return f"unknown model {unknown[0]!r} (known: {', '.join(MODELS)})"
    return "lists a model twice" if len(set(value)) != len(value) else None


def _models(value: tuple[str, ...]) -> str | None:
    return _models_or_all(value) if value else "needs at least one model"


def _hyperparameters(value: str) -> str | None:
    try:
        parse_overrides(value)
    except ValueError as err:
        return str(err)
    return None


def _search_space(value: str) -> str | None:
    try:
        parse_space(value)
    except ValueError as err:
        return str(err)
    return None


def _subsample(value: Any) -> str | None:
    return None if 0.0 < value <= 1.0 else "must be above 0 and at most 1"


def parse_auc_floors(text: str) -> dict[str, float]:
    """``'hlf=0.9,*=0.6'`` -> ``{'hlf': 0.9, '*': 0.6}``; raises ValueError naming the bad item."""
    floors: dict[str, float] = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        name, sep, number = item.partition("=")
        name = name.strip()
        if not sep or (name != "*" and name not in MODELS):
            raise ValueError(f"{item!r} is not <model>=<floor> with a model among *, {', '.join(MODELS)}")
        try:
            floor = float(number)
        except ValueError:
            raise ValueError(f"{item!r}: {number.strip()!r} is not a number") from None
        if not 0.0 <= floor <= 1.0:
            raise ValueError(f"{item!r}: an AUC floor must be between 0 and 1")
        floors[name] = floor
    return floors


def _auc_floors(value: str) -> str | None:
    try:
        parse_auc_floors(value)
    except ValueError as err:
        return str(err)
    return None


def _coerce(value: Any, kind: Any) -> Any:
    """Convert a string (environment, CLI, rendered template) or native value to ``kind``."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{value!r} is not a boolean")
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{value!r} is not an integer")
        return int(str(value).strip()) if isinstance(value, str) else int(value)
    if kind is float:
        return float(value)
    if kind == tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(str(item).strip() for item in items if str(item).strip())
    return str(value)


@dataclass(frozen=True)
class _Params:
    """Base of typed parameter sets: coercion from strings, validation, env overrides."""

    #: the name in messages and in ``HEP_<SECTION>_<PARAM>`` variables.
    section: ClassVar[str] = ""

    @classmethod
    def fields(cls) -> tuple[dataclasses.Field, ...]:
        return dataclasses.fields(cls)

    @classmethod
    def env_name(cls, name: str) -> str:
        return f"HEP_{cls.section}_{name}".upper()

    @classmethod
    def from_values(
        cls, values: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None, *, check: bool = True
    ) -> _Params:
        """Build from explicit ``values`` over environment overrides over defaults, validated.

        ``check=False`` skips the per-value checks (types are still coerced): the defaults a DAG's
        form shows, where parameters such as a version are left for the run to fill in.
        """
        env = os.environ if env is None else env
        values = {k: v for k, v in (values or {}).items() if v is not None}
        names = {f.name for f in cls.fields()}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(
                f"unknown parameter {cls.section}.{unknown[0]} (known: {', '.join(sorted(names))})"
            )
        hints = get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for f in cls.fields():
            raw = values.get(f.name, env.get(cls.env_name(f.name), f.default))
            if len(str(raw)) > MAX_VALUE_CHARS:
                raise ConfigError(f"invalid parameter {cls.section}.{f.name}: a value of {len(str(raw))} characters "
                                  f"(at most {MAX_VALUE_CHARS})")  # fmt: skip
            try:
                value = _coerce(raw, hints[f.name])
            except ValueError:
                raise ConfigError(
                    f"invalid parameter {cls.section}.{f.name}={raw!r}: not a valid {hints[f.name].__name__}"
                ) from None
            problem = f.metadata["check"](value) if check and f.metadata.get("check") else None
            if problem:
                shown = ",".join(value) if isinstance(value, tuple) else value
                raise ConfigError(f"invalid parameter {cls.section}.{f.name}={shown!r}: {problem}")
            kwargs[f.name] = value
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (tuples become lists), as recorded in manifests."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def to_args(self) -> list[str]:
        """Command-line flags that reproduce these values (``--events-per-file 200`` ...)."""
        args: list[str] = []
        for name, value in self.to_dict().items():
            text = ",".join(value) if isinstance(value, list) else str(value)
            args += [f"--{name.replace('_', '-')}", text]
        return args


@dataclass(frozen=True)
class PipelineSettings(_Params):
    """Where data lives and which Spark to use when a job is not started by spark-submit."""

    section: ClassVar[str] = ""
    data_root: str = _param("data", "Data root: a local path or an fsspec/Hadoop URL (file://, s3a://, hdfs://, root://).")
    spark_master: str = _param("local[*]", "Spark master for jobs not started by spark-submit (tests, benchmarks).")
    input_roots: str = _param(
        "", "Local directories, besides the data root, that ROOT files named in a hep_pipeline run may come from "
        "(os.pathsep separated); URLs of the allowed schemes are always accepted."
    )

    @classmethod
    def env_name(cls, name: str) -> str:
        return f"HEP_{name}".upper()

    @classmethod
    def from_values(cls, values=None, env=None) -> PipelineSettings:
        settings = super().from_values(values, env)
        if "://" not in settings.data_root:
            settings = dataclasses.replace(settings, data_root=os.path.abspath(settings.data_root))
        return settings

    def input_locations(self) -> list[str]:
        """The local directories ROOT files named as input may come from: the data root and
        ``input_roots`` (see :func:`hep_tasks.ingest.inputs.check_input_locations`)."""
        return [self.data_root, *filter(None, self.input_roots.split(os.pathsep))]


@dataclass(frozen=True)
class SimulateParams(_Params):
    """Parameters of the simulate stage (Pythia8 + detector response -> ROOT)."""

    section: ClassVar[str] = "simulate"
    processes: tuple[str, ...] = _param(PROCESSES, "Processes to simulate, comma separated (ttbar, wjets, qcd).", _processes)
    events_per_file: int = _param(100, "Accepted events written to each ROOT file.", _positive)
    files_per_process: int = _param(2, "ROOT files per process; one Spark task each.", _positive)
    seed: int = _param(20190101, "Base random seed; file i of a process gets a seed derived from it.", _non_negative)
    isolated_leptons_only: bool = _param(
        True,
        "Write only events whose lepton is isolated as ingest requires (QCD: ~8x slower per written "
        "event, about the same time per event that survives ingest); false keeps every event with a "
        "PT > 23 GeV lepton, which shows the whole cut-flow.",
    )
    qcd_redecays: int = _param(
        0,
        "QCD only: decay the b- and c-hadrons of each generated QCD event this many times (N trials, "
        "each with its own decays and detector response) and write the first accepted trial, weighted "
        "k/N for k accepted trials; 25 gives ~15x more isolated-lepton QCD events per CPU-second, at the "
        "cost of under-representing events with k > 1 (counted in the manifest). 0 = off (the default).",
        lambda value: None if 0 <= value <= 1000 else "must be 0 (off) or a number of decay trials up to 1000",
    )


@dataclass(frozen=True)
class IngestParams(_Params):
    """Parameters of the ingest stage (ROOT -> Parquet with the §3 features)."""

    section: ClassVar[str] = "ingest"
    input: str = _param("", "ROOT input: a simulate version id, or paths/globs/URLs of ROOT files (comma separated); empty = latest simulate version.")
    on_bad_file: str = _param("skip", "What to do with an unreadable file: skip (quarantine and go on) or fail.", _one_of("skip", "fail"))
    entries_per_split: int = _param(
        20000, "Events per Spark partition (file, entry range).", _between(1, MAX_ENTRIES_PER_SPLIT)
    )
    max_quarantined_fraction: float = _param(0.1, "Largest fraction of quarantined files the quality suite accepts.", _unit_interval)


@dataclass(frozen=True)
class PrepareParams(_Params):
    """Parameters of the prepare stage (split, balance, scale, sort, shuffle)."""

    section: ClassVar[str] = "prepare"
    input: str = _param(
        "", "Ingest version ids to prepare together, comma separated; empty = every ingest version that passed its "
        "check (the newest per input batch).",
    )
    test_fraction: float = _param(0.2, "Fraction of events in the test split.", _fraction)
    seed: int = _param(42, "Seed of the split and of the shuffle.", _non_negative)
    files_per_split: int = _param(4, "Parquet files per split (one per training worker is a good choice).", _positive)
    rows_per_row_group: int = _param(2048, "Rows per Parquet row group: the unit streamed into training.", _positive)


@dataclass(frozen=True)
class TrainParams(_Params):
    """Parameters of the train stage (Keras classifiers, data-parallel on Spark executors)."""

    section: ClassVar[str] = "train"
    input: str = _param("", "Prepare version id to train on; empty = latest prepare version.")
    models: tuple[str, ...] = _param(MODELS, f"Models to train, comma separated ({', '.join(MODELS)}).", _models)
    workers: int = _param(2, "Training workers: Spark tasks of one barrier stage, one TensorFlow worker each.", _positive_up_to(MAX_WORKERS))
    epochs: int = _param(10, "Most epochs per model (early stopping may end sooner).", _positive_up_to(MAX_EPOCHS))
    batch_size: int = _param(0, "Events per worker and step (lowered on small data so an epoch has 8 steps); 0 = the model's default.", _non_negative)
    learning_rate: float = _param(
        0.0, "Adam learning rate at a global batch of 256, scaled by sqrt(global batch / 256); 0 = the model's default.",
        _non_negative_number,
    )
    threads_per_worker: int = _param(0, "TensorFlow threads per worker; 0 = spark.task.cpus.", _non_negative)
    patience: int = _param(3, "Early stopping: epochs without a lower validation loss before stopping; 0 = never stop early.", _non_negative)
    validation_fraction: float = _param(0.1, "Seeded fraction of the train split held out for validation (test stays untouched).", _fraction)
    max_particles: int = _param(801, "Longest particle sequence fed to the GRU (the closest to the lepton are kept).", _particles)
    padding: str = _param(
        "batch", "batch: pad each batch to its longest sequence; full: pad every event to max_particles (the 2019 way, for benchmarks).",
        _one_of("batch", "full"),
    )
    bucketing: bool = _param(True, "Group events of similar length into batches (less padding); false = random batches.")
    hyperparameters: str = _param(
        "", 'Per-model hyper-parameters as JSON over the defaults, e.g. {"hlf": {"units": [64, 32]}}.', _hyperparameters
    )
    seed: int = _param(7, "Seed of initial weights, validation slice and batch order.", _non_negative)
    max_restarts: int = _param(1, "Relaunches of a model's barrier stage after a lost worker, each resuming from the last checkpoint.", _non_negative)
    tune: str = _param(
        "", "Tune version whose best hyper-parameters to train with (under explicit hyperparameters, batch_size and "
        "learning_rate); empty = none, the defaults.",
    )


@dataclass(frozen=True)
class TuneParams(_Params):
    """Parameters of the tune stage (Optuna search, trials in parallel Spark tasks)."""

    section: ClassVar[str] = "tune"
    input: str = _param("", "Prepare version id to tune on; empty = latest prepare version.")
    models: tuple[str, ...] = _param(MODELS, f"Models to tune, comma separated ({', '.join(MODELS)}); one study each.", _models)
    trials: int = _param(16, "Trials per model (finished ones: completed, pruned or failed).", _positive_up_to(MAX_TRIALS))
    parallel_trials: int = _param(0, "Trials per round, one Spark task each; 0 = the application's task slots.", _non_negative)
    time_budget_s: int = _param(
        1800, "Seconds for the whole search, shared equally by the models; no round starts after it "
        "(a started round finishes, and every model gets at least one).", _positive_up_to(MAX_TIME_BUDGET_S),
    )
    epochs: int = _param(4, "Training epochs per trial.", _positive_up_to(MAX_EPOCHS))
    subsample_fraction: float = _param(0.25, "Seeded fraction of the train split the trials use (1 = all of it).", _subsample)
    validation_fraction: float = _param(0.2, "Seeded fraction of that subsample held out to validate the trials (test stays untouched).", _fraction)
    search_space: str = _param(
        "", 'Per-model search spaces as JSON, replacing that model\'s default space, e.g. '
        '{"hlf": {"units": {"choices": [[64, 32], [128, 64]]}, "learning_rate": {"low": 1e-4, "high": 1e-2, "log": true}}}.',
        _search_space,
    )
    pruning: bool = _param(True, "Stop trials whose validation loss is above the median of completed trials at the same epoch.")
    seed: int = _param(7, "Seed of the subsample, the validation slice, the sampler and the trials' initial weights.", _non_negative)


@dataclass(frozen=True)
class EvaluateParams(_Params):
    """Parameters of the evaluate stage (test-split predictions, ROC/AUC, report)."""

    section: ClassVar[str] = "evaluate"
    input: str = _param("", "Train version id to evaluate; empty = the latest model version.")
    rows_per_batch: int = _param(512, "Events per model call when scoring (sorted by length, padded per call).", _positive)


@dataclass(frozen=True)
class ScoreParams(_Params):
    """Parameters of the score stage (a trained model applied to ingested events on Spark)."""

    section: ClassVar[str] = "score"
    input: str = _param("", "Ingest version id to score; empty = latest ingest version.")
    model: str = _param("", "Train version id whose models score the events; empty = the latest model version that passed check_model.")
    models: tuple[str, ...] = _param((), "Models of that version to apply, comma separated; empty = all it holds.", _models_or_all)
    rows_per_batch: int = _param(512, "Events per model call (sorted by length, padded per call).", _positive)


@dataclass(frozen=True)
class QualityParams(_Params):
    """Parameters of the quality stage (Great Expectations on a stage's output)."""

    section: ClassVar[str] = "quality"
    stage: str = _param("ingest", "Stage whose output to check.", _one_of("ingest", "prepare", "evaluate"))
    version: str = _param("", "Version to check (the stage's output version).", _required)
    auc_floors: str = _param(
        "*=0.6", "evaluate only: lowest acceptable tt̄-vs-QCD AUC per model, e.g. hlf=0.9,inclusive=0.95 (* = any model).",
        _auc_floors,
    )

    def floors(self) -> dict[str, float]:
        """``auc_floors`` as ``{model or '*': floor}``."""
        return parse_auc_floors(self.auc_floors)


@dataclass(frozen=True)
class PublishParams(_Params):
    """Parameters of publish (move ``latest`` to a run's versions once all their checks passed)."""

    section: ClassVar[str] = "publish"
    ingest: str = _param("", "Ingest version ids the run used, comma separated.")
    prepare: str = _param("", "Prepare version id.")
    train: str = _param("", "Train (model) version id.")
    evaluate: str = _param("", "Evaluate version id.")

    def versions(self) -> dict[str, str | list[str]]:
        """The named versions by stage (ingest as a list), without the empty ones."""
        named: dict[str, str | list[str]] = {"ingest": [v.strip() for v in self.ingest.split(",") if v.strip()]}
        named |= {"prepare": self.prepare, "train": self.train, "evaluate": self.evaluate}
        return {stage: v for stage, v in named.items() if v}
