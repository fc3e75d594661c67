"""Apply saved classifiers to events on Spark executors, one Arrow batch at a time.

Used by ``evaluate`` (on the prepared test split) and ``score`` (on ingested events, which first
get the model's own scalers and the ΔR sort, :func:`hep_tasks.prepare.transform.transform_batch`).

- Each Python worker loads a model once (``.keras``, Keras safe mode on: a model holding Python
  code, such as a ``Lambda`` layer, is refused with :class:`UnsafeModelError`) and keeps it for
  every later batch and task; TensorFlow runs with one thread per Spark task.
- Inside an Arrow batch the events are ordered by length and cut into calls of
  ``rows_per_batch`` events, each padded only to its own longest sequence (pre-padding, masked,
  so the result does not depend on the padding); the output keeps the input order.
- The output has, per event and model, the softmax ``probabilities`` and the exact ``log_odds``
  log(p_k / (1 - p_k)) = z_k - log Σ_{j≠k} exp(z_j), computed in float64 from the logits, so the
  ROC scan is not limited by float32 probabilities saturating at 1.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from hep_tasks.errors import PipelineError
from hep_tasks.ingest.schema import fixed_rows, spark_ddl
from hep_tasks.train.inputs import BatchSpec, block_from_table
from hep_tasks.train.models import N_CLASSES, model_inputs

PREDICTIONS_SCHEMA = pa.schema(
    [
        pa.field("model", pa.string()),
        pa.field("label", pa.int32()),
        pa.field("source_file", pa.string()),
        pa.field("entry", pa.int64()),
        pa.field("probabilities", pa.list_(pa.float32())),
        pa.field("log_odds", pa.list_(pa.float32())),
    ]
)
PREDICTIONS_DDL = spark_ddl(PREDICTIONS_SCHEMA)


class UnsafeModelError(PipelineError):
    """A saved model holds Python code (a ``Lambda`` layer, a pickled function) that Keras safe mode
    refuses to deserialize; the message names the model."""


#: Loaded models of this Python worker: (data root, model path) -> a callable giving logits.
_LOADED: dict[tuple[str, str], Any] = {}


def probabilities_and_log_odds(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Softmax and per-class log-odds of (events, classes) logits, in float64.

    >>> p, lo = probabilities_and_log_odds(np.array([[0.0, 0.0, np.log(2.0)]]))
    >>> np.round(p, 3).tolist(), np.round(lo, 3).tolist()
    ([[0.25, 0.25, 0.5]], [[-1.099, -1.099, 0.0]])
    """
    z = np.asarray(logits, dtype=np.float64)
    shifted = z - z.max(axis=1, keepdims=True)
    expz = np.exp(shifted)
    p = expz / expz.sum(axis=1, keepdims=True)
    log_odds = np.empty_like(z)
    for k in range(z.shape[1]):  # over the 3 classes, not over events
        others = np.delete(z, k, axis=1)
        top = others.max(axis=1)
        log_odds[:, k] = z[:, k] - (top + np.log(np.exp(others - top[:, None]).sum(axis=1)))
    return p, log_odds


def _one_thread_per_task(tf: Any) -> None:
    """One TensorFlow thread per Spark task, unless TensorFlow is already running in this process
    (then its threads can no longer change)."""
    if tf.config.threading.get_intra_op_parallelism_threads():
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass


def load_model_safely(local: str, name: str) -> Any:
    """The ``.keras`` model at ``local`` loaded in Keras safe mode; ``name`` is how messages call it."""
    import keras

    try:
        return keras.saving.load_model(local, safe_mode=True)
    except ValueError as err:
        if "safe_mode" not in str(err):
            raise
        reason = str(err).split(". ", 1)[0]
        raise UnsafeModelError(f"model {name} refused: it holds Python code that Keras safe mode does not load ({reason})") from None


def load_logits_function(data_root: str, path: str) -> Any:
    """A traced function features -> logits for the model at ``path`` in the store (cached per process)."""
    key = (data_root, path)
    if key not in _LOADED:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        _one_thread_per_task(tf)
        from hep_tasks.datasets import DatasetStore
        from hep_tasks.train.models import logits_model

        store = DatasetStore(data_root)
        with tempfile.TemporaryDirectory(prefix="hep-model-") as tmp:
            local = os.path.join(tmp, posixpath.basename(path))
            store.fs.get(path, local)
            model = load_model_safely(local, path)
        network = logits_model(model)
        specs = {
            name: tf.TensorSpec((None, None, 19) if name == "particles" else (None, 14), tf.float32)
            for name in model_inputs(model.name)
        }
        _LOADED[key] = (model.name, tf.function(lambda features: network(features, training=False), input_signature=[specs]))
    return _LOADED[key]


def predict_table(
    table: pa.Table | pa.RecordBatch, models: Mapping[str, Any], *, max_particles: int, rows_per_batch: int
) -> Iterator[pa.RecordBatch]:
    """Predictions (:data:`PREDICTIONS_SCHEMA`) of every model for a prepared-schema batch.

    ``models`` maps a model name to the ``(name, logits function)`` of :func:`load_logits_function`.
    """
    needs = sorted({i for name in models for i in model_inputs(name)})
    block = block_from_table(pa.Table.from_batches([table]) if isinstance(table, pa.RecordBatch) else table, needs)
    n = len(block)
    lineage = [table.column("label"), table.column("source_file"), table.column("entry")]
    for name, (_, logits_of) in models.items():
        spec = BatchSpec(model_inputs(name), rows_per_batch, max_particles, "batch", bucketing=True)
        logits = np.zeros((n, N_CLASSES), dtype=np.float64)
        for index in spec.order(block, None):
            features = spec.features(block.take(index))
            logits[index] = logits_of(features).numpy()
        p, log_odds = probabilities_and_log_odds(logits)
        yield pa.RecordBatch.from_arrays(
            [pa.array([name] * n, pa.string()), *lineage, fixed_rows(p, N_CLASSES), fixed_rows(log_odds, N_CLASSES)],
            schema=PREDICTIONS_SCHEMA,
        )


def predict_partition(
    batches: Iterator[pa.RecordBatch],
    *,
    data_root: str,
    model_paths: Mapping[str, str],
    max_particles: int,
    rows_per_batch: int,
    scalers_json: str | None = None,
) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body: (optionally ΔR-sort and scale ingested batches, then) predict."""
    models = {name: load_logits_function(data_root, path) for name, path in model_paths.items()}
    scalers = None
    if scalers_json is not None:
        from hep_tasks.prepare.scalers import FeatureScalers

        scalers = FeatureScalers.loads(scalers_json)
    for batch in batches:
        if scalers is not None:
            from hep_tasks.prepare.transform import transform_batch

            batch = transform_batch(batch, scalers)
        yield from predict_table(batch, models, max_particles=max_particles, rows_per_batch=rows_per_batch)


def predict_dataframe(df: Any, *, data_root: str, model_paths: Mapping[str, str], max_particles: int,
                      rows_per_batch: int, scalers_json: str | None = None) -> Any:
    """Spark DataFrame of predictions (:data:`PREDICTIONS_DDL`) of ``df`` by every model."""
    kwargs = dict(data_root=data_root, model_paths=dict(model_paths), max_particles=max_particles,
                  rows_per_batch=rows_per_batch, scalers_json=scalers_json)  # fmt: skip
    return df.mapInArrow(lambda batches: predict_partition(batches, **kwargs), PREDICTIONS_DDL)
