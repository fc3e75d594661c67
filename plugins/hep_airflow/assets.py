"""The Assets of hep-pipeline, defined once. An event's ``extra`` holds the version summary
(``version``, ``path``, ``rows``, ``quality``), so an Asset-triggered DAG knows what to read."""

from __future__ import annotations

from airflow.sdk import Asset

SIMULATED_EVENTS = Asset(name="hep_simulated_events", uri="hep://simulate", group="hep-pipeline")
INGESTED_EVENTS = Asset(name="hep_ingested_events", uri="hep://ingest", group="hep-pipeline")
PREPARED_DATASETS = Asset(name="hep_prepared_datasets", uri="hep://prepare", group="hep-pipeline")
MODELS = Asset(name="hep_models", uri="hep://train", group="hep-pipeline")
EVALUATIONS = Asset(name="hep_evaluation_reports", uri="hep://evaluate", group="hep-pipeline")
SCORES = Asset(name="hep_scores", uri="hep://score", group="hep-pipeline")
