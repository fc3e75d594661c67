"""The command line every stage shares: ``python -m hep_tasks <stage> [--param value ...]``.

Parses and validates everything before Spark starts (a bad value exits with status 2 and a one-line
message naming the parameter; ROOT files given to ``ingest --input`` must pass the input-location
policy of a ``hep_pipeline`` run, :func:`hep_tasks.ingest.inputs.check_input_locations`), sets up
logging, creates the Spark session, runs the stage, and, when ``--run-key`` is given, records the
result under ``<data_root>/_runs/`` for the launcher (Airflow).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import threading
from collections.abc import Sequence

from hep_tasks.config import ConfigError, IngestParams, PipelineSettings, _Params
from hep_tasks.datasets import DatasetStore
from hep_tasks.errors import PipelineError
from hep_tasks.ingest.inputs import check_input_locations, names_files
from hep_tasks.stages import STAGES

log = logging.getLogger("hep_tasks")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hep_tasks", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for stage in STAGES.values():
        p = sub.add_parser(stage.name, help=stage.description, description=stage.description)
        common = p.add_argument_group("pipeline")
        for f in PipelineSettings.fields():
            common.add_argument(f"--{f.name.replace('_', '-')}", help=f"{f.metadata['help']} Env: {PipelineSettings.env_name(f.name)}.")
        common.add_argument("--run-key", help="Record the result as <data_root>/_runs/<run-key>.json.")
        common.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
        _add_param_flags(p.add_argument_group(f"{stage.name} parameters"), stage.params)
    return parser


def _add_param_flags(group: argparse._ArgumentGroup, params: type[_Params]) -> None:
    for f in params.fields():
        group.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f"param_{f.name}",
            metavar=f.name.upper(),
            help=f"{f.metadata['help']} Default: {f.default!r}; env: {params.env_name(f.name)}.",
        )


def check_locations(params: _Params, settings: PipelineSettings) -> None:
    """Refuse ROOT files named as ingest input outside the allowed locations, as a hep_pipeline run
    does in its ``new_inputs`` task and with the same message; raises ConfigError."""
    if isinstance(params, IngestParams) and names_files(params.input):
        try:
            check_input_locations(params.input, settings.input_locations())
        except PipelineError as err:
            raise ConfigError(str(err)) from None


def prefetch(modules: Sequence[str]) -> None:
    """Import ``modules`` in a background thread: a stage that starts Spark first then finds them
    imported (Great Expectations: ≈ 2.5 s, hidden behind the JVM's start). An import that fails
    here fails again, with its message, where the stage imports the module."""

    def load() -> None:
        for module in modules:
            try:
                importlib.import_module(module)
            except Exception:  # noqa: BLE001 - reported by the stage's own import
                log.debug("prefetching %s failed", module, exc_info=True)

    if modules:
        threading.Thread(target=load, name="hep-prefetch", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for noisy in ("great_expectations", "py4j", "numba"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    stage = STAGES[args.stage]
    try:
        settings = PipelineSettings.from_values({f.name: getattr(args, f.name) for f in PipelineSettings.fields()})
        params = stage.params.from_values(
            {k[len("param_"):]: v for k, v in vars(args).items() if k.startswith("param_")}
        )
        check_locations(params, settings)
        store = DatasetStore(settings.data_root)
        try:
            store.check_writable()
        except OSError as err:
            raise ConfigError(f"invalid parameter data_root={settings.data_root!r}: not writable ({err.strerror or err})") from None
    except ConfigError as err:
        print(f"hep_tasks {stage.name}: error: {err}", file=sys.stderr)
        return 2

    from hep_tasks.sparkjob import LazySession

    prefetch(stage.prefetch)
    spark = LazySession(f"hep-{stage.name}", settings.spark_master) if stage.uses_spark else None
    try:
        summary = stage.function()(spark, store, params)
        if spark is not None and not spark.started:
            log.info("nothing new: %s version %s already exists, no Spark work done", stage.name, summary.get("version"))
            summary["spark_work"] = False
    except PipelineError as err:  # bad input or data: rerunning cannot help, so say so to the launcher
        log.error("%s failed: %s", stage.name, err)
        print(f"hep_tasks {stage.name}: error: {err}", file=sys.stderr)
        if args.run_key:
            store.write_run_record(args.run_key, {"stage": stage.name, "error": str(err), "retryable": False})
        return 1
    finally:
        if spark is not None:
            spark.stop()  # only if it was started
    if args.run_key:
        store.write_run_record(args.run_key, summary)
    print(json.dumps(summary, sort_keys=True, default=str))
    return 0
