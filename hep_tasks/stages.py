"""Which parameters each stage takes and which function runs it (imported only when it runs).

A stage function has the signature ``run(spark, store, params) -> dict`` and returns the summary of
the version it produced (at least ``version``, ``stage``, ``path``), which becomes the Airflow XCom.
A stage without Spark work (``uses_spark=False``) gets ``None`` for ``spark``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from hep_tasks.config import (
    EvaluateParams,
    IngestParams,
    PrepareParams,
    PublishParams,
    QualityParams,
    ScoreParams,
    SimulateParams,
    TrainParams,
    TuneParams,
    _Params,
)


@dataclass(frozen=True)
class Stage:
    name: str
    params: type[_Params]
    target: str  # "module:function"
    description: str
    uses_spark: bool = True
    #: Slow imports the stage needs, started in a background thread by the CLI so that they overlap
    #: the start of its Spark application (the stage starts Spark before it uses them).
    prefetch: tuple[str, ...] = ()

    def function(self) -> Callable:
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)


STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage("simulate", SimulateParams, "hep_tasks.simulate.stage:run", "Pythia8 + detector response -> ROOT files"),
        Stage("ingest", IngestParams, "hep_tasks.ingest.stage:run", "ROOT -> Parquet with the physics features"),
        Stage("prepare", PrepareParams, "hep_tasks.prepare.stage:run", "split, balance, scale, sort -> train/test"),
        Stage("tune", TuneParams, "hep_tasks.tune.stage:run", "hyper-parameter search, trials in parallel Spark tasks"),
        Stage("train", TrainParams, "hep_tasks.train.stage:run", "Keras classifiers trained data-parallel on Spark"),
        Stage("evaluate", EvaluateParams, "hep_tasks.evaluate.stage:run", "test-split ROC/AUC, confusion, report"),
        Stage("score", ScoreParams, "hep_tasks.score.stage:run", "a trained model applied to ingested events"),
        Stage("quality", QualityParams, "hep_tasks.quality.stage:run", "Great Expectations suite on a stage's output",
              prefetch=("hep_tasks.quality.gx",)),
        Stage("publish", PublishParams, "hep_tasks.catalog:run", "move latest to a run's checked versions; index page", False),
    )
}
