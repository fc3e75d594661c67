"""One trial inside a Spark task: single-process training with the train stage's own code.

A trial gets plain JSON (:class:`TrialSpec`: the model, its full hyper-parameters, the
subsample's row groups, the pruning thresholds) and returns a small JSON result; no Optuna
object crosses to the executors. It trains with :class:`hep_tasks.train.loop.TrainingProgram`
under TensorFlow's default strategy (no cluster), reads its batches with the train stage's
streaming input (``training_batches`` / ``validation_batches`` over the subsample, the
validation slice held out by the lineage hash), and uses the train stage's batch rule (at least
8 steps per epoch) and learning-rate scaling, so a tuned value means the same in training.

After each epoch: the validation loss (cross-entropy), accuracy and the tt̄-vs-QCD AUC (signal tt̄,
background QCD, score the tt̄ log-odds, exact from ranks). The objective is the lowest validation
loss over the epochs (training keeps its best epoch too). With pruning, a trial stops after
epoch k when that lowest loss so far is above ``thresholds[k]`` (see ``study.py``).

TensorFlow runs inside Spark's Python worker, which Spark reuses from task to task: its thread
pools are set once per process (``threads`` per task, ``spark.task.cpus``), and the Keras session
is cleared before every trial. An exception in a trial becomes a failed result with its error
(the Spark task itself succeeds), so the search goes on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from hep_tasks.physics.constants import MAX_PARTICLES

log = logging.getLogger(__name__)

#: Labels of the AUC's signal (tt̄) and background (QCD) classes.
SIGNAL, BACKGROUND = 1, 0
_THREADS: int | None = None  # TensorFlow's thread pools in this process, once set


@dataclass(frozen=True)
class TrialSpec:
    """Everything a trial needs, as JSON."""

    model: str
    number: int
    hyperparameters: dict[str, Any]  # the model's full hyper-parameters (defaults + suggested)
    data_root: str
    groups: list[dict[str, Any]]  # RowGroup dicts of the subsample
    train_events: int  # training events of the subsample (the batch rule needs them)
    epochs: int
    validation_fraction: float
    seed: int
    thresholds: list[float | None] = field(default_factory=list)  # per epoch; empty = no pruning
    threads: int = 1
    max_particles: int = MAX_PARTICLES

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TrialSpec:
        return cls(**json.loads(text))


def auc(signal: np.ndarray, background: np.ndarray) -> float | None:
    """Area under the ROC curve of two score samples (Mann-Whitney, ties count half); None if one is empty.

    >>> auc(np.array([0.9, 0.8]), np.array([0.1, 0.8]))
    0.875
    """
    if not len(signal) or not len(background):
        return None
    scores = np.concatenate([signal, background])
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks of ties
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    n_s, n_b = len(signal), len(background)
    return float((ranks[:n_s].sum() - n_s * (n_s + 1) / 2.0) / (n_s * n_b))


def _configure(threads: int) -> None:
    global _THREADS
    if _THREADS is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        from hep_tasks.train.loop import configure_threads

        try:
            configure_threads(threads)
        except RuntimeError:  # TensorFlow already ran in this process: its pools are fixed
            log.warning("TensorFlow's thread pools were set before this trial; keeping them")
        _THREADS = threads


def run_trial(spec: TrialSpec) -> dict[str, Any]:
    """Train and validate one trial; its result (state ``complete``, ``pruned`` or ``fail``)."""
    _configure(spec.threads)
    import keras
    import tensorflow as tf

    from hep_tasks.datasets import DatasetStore
    from hep_tasks.score.predict import probabilities_and_log_odds
    from hep_tasks.train.inputs import BatchSpec, RowGroup, ShardReader, training_batches, validation_batches
    from hep_tasks.train.loop import TrainingProgram, fitted_batch, scaled_learning_rate

    keras.backend.clear_session()
    batch, steps = fitted_batch(int(spec.hyperparameters["batch_size"]), spec.train_events)
    hp = dict(spec.hyperparameters, batch_size=batch)
    program = TrainingProgram(
        tf.distribute.get_strategy(), spec.model, hp, global_batch=batch,
        learning_rate=scaled_learning_rate(hp["learning_rate"], batch), steps_per_epoch=steps,
        epochs=spec.epochs, seed=spec.seed,
    )  # fmt: skip
    store = DatasetStore(spec.data_root)
    groups = [RowGroup.from_dict(g) for g in spec.groups]
    batch_spec = BatchSpec(program.inputs, batch, spec.max_particles)

    def batches(_: int) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
        reader = ShardReader(store.fs, groups, program.inputs)
        return training_batches(reader, batch_spec, seed=spec.seed, validation_fraction=spec.validation_fraction)

    iterator = program.iterator(batches)
    history: dict[str, list[float | None]] = {k: [] for k in ("loss", "accuracy", "val_loss", "val_accuracy", "val_auc", "seconds")}
    best_loss, best_epoch, state = math.inf, 0, "complete"
    for epoch in range(spec.epochs):
        started = time.perf_counter()
        totals = program.train_epoch(iterator)
        seconds = time.perf_counter() - started
        reader = ShardReader(store.fs, groups, program.inputs)
        logits, labels = [], []
        for features, y in validation_batches(reader, batch_spec, seed=spec.seed, validation_fraction=spec.validation_fraction):
            logits.append(program.predict_logits(features))
            labels.append(np.argmax(y, axis=1))
        reader.close()
        if not logits:
            raise ValueError(f"no validation events in the subsample ({sum(g.rows for g in groups)} events, "
                             f"validation_fraction={spec.validation_fraction})")
        z, label = np.concatenate(logits).astype(np.float64), np.concatenate(labels)
        shifted = z - z.max(axis=1, keepdims=True)
        per_event = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(z)), label]
        log_odds = probabilities_and_log_odds(z)[1][:, SIGNAL]
        val_loss = float(per_event.mean())
        history["loss"].append(float(totals[0] / max(totals[1], 1.0)))
        history["accuracy"].append(float(totals[2] / max(totals[1], 1.0)))
        history["val_loss"].append(val_loss)
        history["val_accuracy"].append(float((np.argmax(z, axis=1) == label).mean()))
        history["val_auc"].append(auc(log_odds[label == SIGNAL], log_odds[label == BACKGROUND]))
        history["seconds"].append(seconds)
        if val_loss < best_loss:
            best_loss, best_epoch = val_loss, epoch + 1
        threshold = spec.thresholds[epoch] if epoch < len(spec.thresholds) else None
        if threshold is not None and epoch + 1 < spec.epochs and not best_loss <= threshold:
            state = "pruned"
            break
    if not math.isfinite(best_loss):
        raise FloatingPointError(f"the validation loss is not finite ({history['val_loss']}): the training diverged")
    return {
        "state": state,
        "value": best_loss,
        "val_auc": history["val_auc"][best_epoch - 1],
        "best_epoch": best_epoch,
        "epochs_run": len(history["loss"]),
        "history": history,
        "batch_size_used": batch,
        "steps_per_epoch": steps,
        "validation_events": int(len(label)),
        "parameters": int(program.model.count_params()),
    }


def trial_task(function: Callable[[TrialSpec], dict[str, Any]] = run_trial) -> Callable[[Iterator[str]], Iterator[str]]:
    """The function of ``mapPartitions``: each partition's trial specs (JSON) -> results (JSON)."""

    def run(rows: Iterator[str]) -> Iterator[str]:
        from pyspark import TaskContext

        context = TaskContext.get()
        for text in rows:
            spec = TrialSpec.from_json(text)
            started, cpu = time.time(), time.process_time()
            try:
                result = function(spec)
            except Exception as err:  # noqa: BLE001 - a failed trial is a result, the search goes on
                frames = traceback.extract_tb(err.__traceback__)
                where = f" ({os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
                result = {"state": "fail", "error": f"{type(err).__name__}: {err}{where}"}
            finally:
                _release()
            ended = time.time()
            result |= {
                "model": spec.model,
                "number": spec.number,
                "started_at": started,
                "ended_at": ended,
                "duration_s": ended - started,
                "cpu_s": time.process_time() - cpu,  # every thread of the Python worker (TensorFlow's too)
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "executor": f"{socket.gethostname()}, Python worker {os.getpid()}",
                "partition": context.partitionId() if context else None,
                "task_attempt_id": context.taskAttemptId() if context else None,
            }
            yield json.dumps(result, allow_nan=True)

    return run


def _release() -> None:
    """Free the last trial's Keras graph and variables (the Python worker lives on)."""
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
