"""One training worker: ``MultiWorkerMirroredStrategy`` with a custom step (``strategy.run``).

Keras 3's ``Model.fit`` fails under this strategy (keras-team/keras#20585), so the loop follows
TensorFlow's "custom training loop with MultiWorkerMirroredStrategy" guide:

- every worker builds the same model in ``strategy.scope()`` (the chief's initial values are
  broadcast), reads its own shard through ``distribute_datasets_from_function``, and runs
  ``steps_per_call`` steps per ``tf.function`` call; Keras' optimizer all-reduces (sums) the
  gradients of every replica, so all workers hold identical weights after every step;
- the loss is the cross-entropy on logits divided by the *global* batch; the Adam rate is
  ``learning_rate x sqrt(global batch / 256)`` with one epoch of linear warm-up and cosine decay;
- after each epoch each worker evaluates its shard's validation events locally and one all-reduce
  sums (loss, events, correct) over workers; the early-stopping decision is therefore the same on
  every worker; the chief writes the checkpoint (``checkpoints.py``), the others write nothing;
- at the end the best weights (lowest validation loss) are restored and the chief saves the model.

Every worker takes the same number of steps per epoch (``steps_per_epoch``, from the smallest
shard), since every step is a collective; a shard's reader cycles, so no worker runs dry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hep_tasks.datasets import DatasetStore
from hep_tasks.train.checkpoints import CheckpointStore, TrainingState
from hep_tasks.train.hyperparameters import REFERENCE_BATCH
from hep_tasks.train.inputs import BatchSpec, RowGroup, ShardReader, training_batches, validation_batches

log = logging.getLogger(__name__)

#: Seconds a collective may wait for a peer before the worker fails (a lost peer becomes an error,
#: not a hung barrier stage).
COLLECTIVE_TIMEOUT_S = 600
#: The smallest improvement of the validation loss that resets early stopping's patience.
MIN_DELTA = 1e-4


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a training worker needs, as JSON (no pickling between processes)."""

    model: str
    hyperparameters: dict[str, Any]
    data_root: str
    scratch: str  # checkpoint directory (store path)
    shards: list[list[dict[str, Any]]]  # RowGroup dicts per worker
    workers: int
    threads: int
    epochs: int
    steps_per_epoch: int
    patience: int
    validation_fraction: float
    max_particles: int
    padding: str
    bucketing: bool
    seed: int

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        return cls(**json.loads(text))

    @property
    def batch_size(self) -> int:
        return int(self.hyperparameters["batch_size"])

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.workers

    @property
    def learning_rate(self) -> float:
        return float(self.hyperparameters["learning_rate"]) * math.sqrt(self.global_batch / REFERENCE_BATCH)


def configure_threads(threads: int) -> None:
    """Pin TensorFlow's thread pools (call before TensorFlow runs anything)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def weights_digest(arrays: list[np.ndarray]) -> str:
    """SHA-256 of the arrays' bytes: equal on every worker when gradients were all-reduced."""
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


def train_worker(spec: WorkerSpec, index: int) -> dict[str, Any]:
    """Train ``spec.model`` as worker ``index`` of ``spec.workers``; returns this worker's result."""
    configure_threads(spec.threads)
    import keras
    import tensorflow as tf

    from hep_tasks.train.models import build_model, logits_model, model_inputs

    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING,
        timeout_seconds=COLLECTIVE_TIMEOUT_S,
    )
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    chief = index == 0
    store = DatasetStore(spec.data_root)
    checkpoints = CheckpointStore(store.fs, spec.scratch)
    inputs = model_inputs(spec.model)
    batch_spec = BatchSpec(inputs, spec.batch_size, spec.max_particles, spec.padding, spec.bucketing)
    my_groups = [RowGroup.from_dict(g) for g in spec.shards[index]]

    steps_total = spec.steps_per_epoch * spec.epochs
    warmup = spec.steps_per_epoch if spec.epochs > 1 else 0
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=spec.learning_rate / 10 if warmup else spec.learning_rate,
        decay_steps=max(1, steps_total - warmup),
        alpha=0.01,
        warmup_target=spec.learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    with strategy.scope():
        model = build_model(spec.model, spec.hyperparameters, seed=spec.seed)
        logits = logits_model(model)
        optimizer = keras.optimizers.Adam(learning_rate=schedule)
        optimizer.build(model.trainable_variables)
    shapes = {"weights": [list(v.shape) for v in model.weights], "optimizer": [list(v.shape) for v in optimizer.variables]}
    state = checkpoints.load(shapes) or TrainingState()
    start_epoch = state.epoch
    if start_epoch:
        for v, value in zip(model.weights, state.weights):
            v.assign(value)
        for v, value in zip(optimizer.variables, state.optimizer):
            v.assign(value)
        log.info("worker %d: resumed %s from the checkpoint after epoch %d", index, spec.model, start_epoch)

    specs = {
        name: tf.TensorSpec((None, None, 19) if name == "particles" else (None, 14), tf.float32) for name in inputs
    }
    signature = (specs, tf.TensorSpec((None, 3), tf.float32))

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        reader = ShardReader(store.fs, [RowGroup.from_dict(g) for g in spec.shards[context.input_pipeline_id]], inputs)
        seed = spec.seed + 7919 * start_epoch + context.input_pipeline_id
        return tf.data.Dataset.from_generator(
            lambda: training_batches(reader, batch_spec, seed=seed, validation_fraction=spec.validation_fraction),
            output_signature=signature,
        ).prefetch(2)

    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True, reduction="none")

    def sums(y: tf.Tensor, z: tf.Tensor, per_event: tf.Tensor) -> tf.Tensor:
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(z, 1), tf.argmax(y, 1)), tf.float32))
        return tf.stack([tf.reduce_sum(per_event), tf.cast(tf.shape(y)[0], tf.float32), correct])

    def replica_step(features: dict[str, tf.Tensor], y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            z = logits(features, training=True)
            per_event = loss_fn(y, z)
            loss = tf.nn.compute_average_loss(per_event, global_batch_size=spec.global_batch)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return sums(y, z, per_event)

    @tf.function
    def train_steps(iterator: Any, steps: tf.Tensor) -> tf.Tensor:
        totals = tf.zeros(3)
        for _ in tf.range(steps):
            features, y = next(iterator)
            totals += strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_step, args=(features, y)), axis=None)
        return totals

    @tf.function(input_signature=signature)
    def evaluate_batch(features: dict[str, tf.Tensor], y: tf.Tensor) -> tf.Tensor:
        z = logits(features, training=False)
        return sums(y, z, loss_fn(y, z))

    @tf.function
    def all_workers_sum(local: tf.Tensor) -> tf.Tensor:
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(tf.identity, args=(local,)), axis=None)

    per_call = int(spec.hyperparameters.get("steps_per_call", 1))
    calls = [per_call] * (spec.steps_per_epoch // per_call) + ([spec.steps_per_epoch % per_call] if spec.steps_per_epoch % per_call else [])
    train_seconds = 0.0
    stopped_early = False
    for epoch in range(start_epoch, spec.epochs):
        started = time.perf_counter()
        totals = np.zeros(3)
        for steps in calls:
            totals += train_steps(iterator, tf.constant(steps)).numpy()
        epoch_seconds = time.perf_counter() - started
        train_seconds += epoch_seconds
        local = np.zeros(3, dtype=np.float32)
        reader = ShardReader(store.fs, my_groups, inputs)
        for features, y in validation_batches(reader, batch_spec, seed=spec.seed, validation_fraction=spec.validation_fraction):
            local += evaluate_batch(features, y).numpy()
        reader.close()
        val = all_workers_sum(tf.constant(local)).numpy()
        record = {
            "loss": totals[0] / max(totals[1], 1.0),
            "accuracy": totals[2] / max(totals[1], 1.0),
            "val_loss": val[0] / val[1] if val[1] else float("nan"),
            "val_accuracy": val[2] / val[1] if val[1] else float("nan"),
            "learning_rate": float(schedule(optimizer.iterations)),
            "train_events": float(totals[1]),
            "validation_events": float(val[1]),
            "seconds": epoch_seconds,
            "events_per_second": totals[1] / epoch_seconds,
        }
        for key, value in record.items():
            state.history.setdefault(key, []).append(float(value))
        state.epoch = epoch + 1
        monitored = record["val_loss"] if val[1] else record["loss"]
        if monitored < state.best_val_loss - MIN_DELTA or not state.best_weights:
            state.best_val_loss, state.best_epoch, state.wait = float(monitored), epoch + 1, 0
            state.best_weights = [v.numpy() for v in model.weights]
        else:
            state.wait += 1
        log.info(
            "worker %d: %s epoch %d/%d: loss %.4f acc %.3f val_loss %.4f val_acc %.3f lr %.2e, %.0f events/s",
            index, spec.model, epoch + 1, spec.epochs, record["loss"], record["accuracy"], record["val_loss"],
            record["val_accuracy"], record["learning_rate"], record["events_per_second"],
        )
        if chief:
            state.weights = [v.numpy() for v in model.weights]
            state.optimizer = [v.numpy() for v in optimizer.variables]
            checkpoints.save(state)
        if spec.patience and state.wait >= spec.patience and epoch + 1 < spec.epochs:
            log.info("worker %d: early stop after epoch %d (best epoch %d)", index, epoch + 1, state.best_epoch)
            stopped_early = True
            break

    last_weights = [v.numpy() for v in model.weights]
    result = {
        "worker": index,
        "weights_sha256": weights_digest(last_weights),
        "start_epoch": start_epoch,
        "epochs_run": state.epoch - start_epoch,
        "train_seconds": train_seconds,
    }
    if chief:
        best = state.best_weights or last_weights
        final = build_model(spec.model, spec.hyperparameters, seed=spec.seed)
        final.set_weights(best)
        with tempfile.TemporaryDirectory(prefix="hep-train-") as tmp:
            path = os.path.join(tmp, "model.keras")
            final.save(path)
            checkpoints.save_model(path)
        result |= {
            "history": state.history,
            "best_epoch": state.best_epoch,
            "best_val_loss": state.best_val_loss if math.isfinite(state.best_val_loss) else None,
            "epochs": state.epoch,
            "stopped_early": stopped_early,
            "parameters": int(final.count_params()),
            "best_weights_sha256": weights_digest(best),
        }
    # leave together: the chief hosts TensorFlow's coordination service, and a worker still running
    # when the chief's process ends reports a lost leader
    all_workers_sum(tf.zeros(3))
    return result
