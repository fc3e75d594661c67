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

:class:`TrainingProgram` (model, optimizer, schedule, step functions) does not depend on the
strategy: the tune stage runs the same program under TensorFlow's default strategy for its
single-process trials (``hep_tasks.tune.trial``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hep_tasks.datasets import DatasetStore
from hep_tasks.train.checkpoints import CheckpointStore, TrainingState
from hep_tasks.train.hyperparameters import MIN_STEPS_PER_EPOCH, REFERENCE_BATCH
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
        return scaled_learning_rate(self.hyperparameters["learning_rate"], self.global_batch)


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


def fitted_batch(batch_size: int, events: int) -> tuple[int, int]:
    """(batch, steps per epoch) for ``events`` training events per worker: ``batch_size`` lowered
    so that an epoch has at least :data:`MIN_STEPS_PER_EPOCH` steps.

    >>> fitted_batch(512, 100_000), fitted_batch(512, 800), fitted_batch(512, 3)
    ((512, 195), (100, 8), (1, 3))
    """
    batch = max(1, min(batch_size, events // MIN_STEPS_PER_EPOCH))
    return batch, max(1, events // batch)


def scaled_learning_rate(learning_rate: float, global_batch: int) -> float:
    """Adam rate for ``global_batch``: ``learning_rate`` (at :data:`REFERENCE_BATCH`) x sqrt(ratio)."""
    return float(learning_rate) * math.sqrt(global_batch / REFERENCE_BATCH)


class TrainingProgram:
    """The model, optimizer, schedule and compiled step functions of one training, under a strategy.

    The same code serves the train stage's workers (``MultiWorkerMirroredStrategy``, one per barrier
    task) and the tune stage's single-process trials (TensorFlow's default strategy, where
    ``strategy.run`` calls the step directly and every reduce is the identity):

    - :meth:`iterator`: the training batches through ``distribute_datasets_from_function``;
    - :meth:`train_epoch`: ``steps_per_epoch`` steps, ``steps_per_call`` per ``tf.function`` call,
      returning the summed (loss, events, correct) over all replicas;
    - :meth:`evaluate_batch` / :meth:`predict_logits`: sums and logits of one validation batch;
    - :meth:`all_workers_sum`: an all-reduce of a small vector (identity on one worker).

    The rate schedule: one epoch of linear warm-up from a tenth of ``learning_rate`` (when there
    is more than one epoch), then cosine decay to 1 % of it.
    """

    def __init__(
        self,
        strategy: Any,
        model: str,
        hyperparameters: dict[str, Any],
        *,
        global_batch: int,
        learning_rate: float,
        steps_per_epoch: int,
        epochs: int,
        seed: int,
    ):
        import keras
        import tensorflow as tf

        from hep_tasks.train.models import build_model, logits_model, model_inputs

        self.strategy = strategy
        self.name = model
        self.hyperparameters = hyperparameters
        self.inputs = model_inputs(model)
        self.global_batch = global_batch
        self.steps_per_epoch = steps_per_epoch
        steps_total = steps_per_epoch * epochs
        warmup = steps_per_epoch if epochs > 1 else 0
        self.schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=learning_rate / 10 if warmup else learning_rate,
            decay_steps=max(1, steps_total - warmup),
            alpha=0.01,
            warmup_target=learning_rate if warmup else None,
            warmup_steps=warmup,
        )
        with strategy.scope():
            self.model = build_model(model, hyperparameters, seed=seed)
            self.logits = logits_model(self.model)
            self.optimizer = keras.optimizers.Adam(learning_rate=self.schedule)
            self.optimizer.build(self.model.trainable_variables)

        specs = {
            name: tf.TensorSpec((None, None, 19) if name == "particles" else (None, 14), tf.float32) for name in self.inputs
        }
        self.signature = (specs, tf.TensorSpec((None, 3), tf.float32))
        model_, logits, optimizer = self.model, self.logits, self.optimizer
        loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True, reduction="none")

        def sums(y: tf.Tensor, z: tf.Tensor, per_event: tf.Tensor) -> tf.Tensor:
            correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(z, 1), tf.argmax(y, 1)), tf.float32))
            return tf.stack([tf.reduce_sum(per_event), tf.cast(tf.shape(y)[0], tf.float32), correct])

        def replica_step(features: dict[str, tf.Tensor], y: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                z = logits(features, training=True)
                per_event = loss_fn(y, z)
                loss = tf.nn.compute_average_loss(per_event, global_batch_size=global_batch)
            grads = tape.gradient(loss, model_.trainable_variables)
            optimizer.apply_gradients(zip(grads, model_.trainable_variables))
            return sums(y, z, per_event)

        @tf.function
        def train_steps(iterator: Any, steps: tf.Tensor) -> tf.Tensor:
            totals = tf.zeros(3)
            for _ in tf.range(steps):
                features, y = next(iterator)
                totals += strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_step, args=(features, y)), axis=None)
            return totals

        @tf.function(input_signature=self.signature)
        def evaluate_batch(features: dict[str, tf.Tensor], y: tf.Tensor) -> tf.Tensor:
            z = logits(features, training=False)
            return sums(y, z, loss_fn(y, z))

        @tf.function(input_signature=(specs,))
        def predict_logits(features: dict[str, tf.Tensor]) -> tf.Tensor:
            return logits(features, training=False)

        @tf.function
        def all_workers_sum(local: tf.Tensor) -> tf.Tensor:
            return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(tf.identity, args=(local,)), axis=None)

        self._train_steps = train_steps
        self._evaluate_batch = evaluate_batch
        self._predict_logits = predict_logits
        self._all_workers_sum = all_workers_sum
        per_call = int(hyperparameters.get("steps_per_call", 1))
        self.calls = [per_call] * (steps_per_epoch // per_call) + ([steps_per_epoch % per_call] if steps_per_epoch % per_call else [])

    def iterator(self, batches: Callable[[int], Iterator[tuple[dict[str, np.ndarray], np.ndarray]]]) -> Any:
        """The distributed iterator over ``batches(input_pipeline_id)`` (one pipeline per worker)."""
        import tensorflow as tf

        def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
            pipeline = context.input_pipeline_id
            return tf.data.Dataset.from_generator(lambda: batches(pipeline), output_signature=self.signature).prefetch(2)

        return iter(self.strategy.distribute_datasets_from_function(dataset_fn))

    def train_epoch(self, iterator: Any) -> np.ndarray:
        """One epoch of steps; (loss sum, events, correct) over every replica."""
        import tensorflow as tf

        totals = np.zeros(3)
        for steps in self.calls:
            totals += self._train_steps(iterator, tf.constant(steps)).numpy()
        return totals

    def evaluate_batch(self, features: dict[str, np.ndarray], y: np.ndarray) -> np.ndarray:
        """(loss sum, events, correct) of one batch on this worker."""
        return self._evaluate_batch(features, y).numpy()

    def predict_logits(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """The logits of one batch on this worker, (events, 3)."""
        return self._predict_logits(features).numpy()

    def all_workers_sum(self, local: np.ndarray) -> np.ndarray:
        """``local`` summed over every worker (a collective: every worker must call it)."""
        import tensorflow as tf

        return self._all_workers_sum(tf.constant(local, dtype=tf.float32)).numpy()


def train_worker(spec: WorkerSpec, index: int) -> dict[str, Any]:
    """Train ``spec.model`` as worker ``index`` of ``spec.workers``; returns this worker's result."""
    configure_threads(spec.threads)
    import tensorflow as tf

    from hep_tasks.train.models import build_model

    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING,
        timeout_seconds=COLLECTIVE_TIMEOUT_S,
    )
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    chief = index == 0
    store = DatasetStore(spec.data_root)
    checkpoints = CheckpointStore(store.fs, spec.scratch)
    program = TrainingProgram(
        strategy, spec.model, spec.hyperparameters, global_batch=spec.global_batch, learning_rate=spec.learning_rate,
        steps_per_epoch=spec.steps_per_epoch, epochs=spec.epochs, seed=spec.seed,
    )  # fmt: skip
    model, optimizer, schedule, inputs = program.model, program.optimizer, program.schedule, program.inputs
    batch_spec = BatchSpec(inputs, spec.batch_size, spec.max_particles, spec.padding, spec.bucketing)
    my_groups = [RowGroup.from_dict(g) for g in spec.shards[index]]

    shapes = {"weights": [list(v.shape) for v in model.weights], "optimizer": [list(v.shape) for v in optimizer.variables]}
    state = checkpoints.load(shapes) or TrainingState()
    start_epoch = state.epoch
    if start_epoch:
        for v, value in zip(model.weights, state.weights):
            v.assign(value)
        for v, value in zip(optimizer.variables, state.optimizer):
            v.assign(value)
        log.info("worker %d: resumed %s from the checkpoint after epoch %d", index, spec.model, start_epoch)

    def batches(pipeline: int) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
        reader = ShardReader(store.fs, [RowGroup.from_dict(g) for g in spec.shards[pipeline]], inputs)
        order = spec.seed + 7919 * start_epoch + pipeline  # another order per worker and resumed attempt
        return training_batches(reader, batch_spec, seed=spec.seed, order_seed=order, validation_fraction=spec.validation_fraction)

    iterator = program.iterator(batches)

    train_seconds = 0.0
    stopped_early = False
    for epoch in range(start_epoch, spec.epochs):
        started = time.perf_counter()
        totals = program.train_epoch(iterator)
        epoch_seconds = time.perf_counter() - started
        train_seconds += epoch_seconds
        local = np.zeros(3, dtype=np.float32)
        reader = ShardReader(store.fs, my_groups, inputs)
        for features, y in validation_batches(reader, batch_spec, seed=spec.seed, validation_fraction=spec.validation_fraction):
            local += program.evaluate_batch(features, y)
        reader.close()
        val = program.all_workers_sum(local)
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
    program.all_workers_sum(np.zeros(3, dtype=np.float32))
    return result
