"""The Optuna side of the search, on the Spark driver only: storage, study, pruning, ask/tell.

- One journal file (Optuna's ``JournalStorage`` on a ``JournalFileBackend``) per tune version holds
  one study per model (``study_name`` = the model). It lives in the version's scratch directory
  while the search runs (``tune/_tmp/<version>.scratch/study.journal``), so a rerun of the same
  version loads the studies and continues; the committed version keeps a copy. On a data root
  that is not a local file system the journal is worked on in a local copy, uploaded after
  every round (:class:`JournalFile`).
- Sampler: TPE, seeded per model, with ``constant_liar`` so that the trials asked together for a
  round do not all land on the same point; the first trials are random (startup).
- Pruning: the rule of Optuna's ``MedianPruner`` (``n_startup_trials`` completed trials, no
  pruning before epoch ``n_warmup_steps``): a trial stops after epoch k when its best validation
  loss so far is above the median of the completed trials' losses at epoch k. Trials run in Spark
  tasks that cannot call back into the study, so the driver computes those medians before each
  round (:func:`pruning_thresholds`) and ships them with the trials; the study carries the same
  ``MedianPruner``, and its ``should_prune`` agrees on the trials that stopped.
- Every told trial carries the user attribute ``outcome``; a trial left ``RUNNING`` by an
  interrupted attempt is told failed without one (it does not count towards ``trials``) and its
  parameters are queued again, so the rerun evaluates them.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from hep_tasks.datasets import DatasetStore

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

JOURNAL = "study.journal"
#: Completed trials before pruning starts, and the first epoch (0-based) that can be pruned.
PRUNER_STARTUP_TRIALS = 2
PRUNER_WARMUP_EPOCHS = 1
#: Upper limit of the random startup trials of the TPE sampler.
MAX_STARTUP_TRIALS = 10


class JournalFile:
    """The journal file on the local disk: the store's own file when the data root is local, else a
    copy downloaded at the start (if the store has one) and uploaded by :meth:`sync`."""

    def __init__(self, store: DatasetStore, path: str):
        self.store = store
        self.remote = path
        self._tmp: str | None = None
        if store.is_local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self.local = path
        else:
            self._tmp = tempfile.mkdtemp(prefix="hep-tune-")
            self.local = os.path.join(self._tmp, JOURNAL)
            if store.fs.exists(path):
                store.fs.get(path, self.local)

    def sync(self) -> None:
        if self._tmp is not None and os.path.exists(self.local):
            self.store.fs.put(self.local, self.remote)

    def close(self) -> None:
        self.sync()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


@contextmanager
def journal(store: DatasetStore, path: str) -> Iterator[JournalFile]:
    """The :class:`JournalFile` at ``path`` (a store path), synced back when the block ends."""
    file = JournalFile(store, path)
    try:
        yield file
    finally:
        file.close()


def storage(path: str) -> optuna.storages.BaseStorage:
    """Optuna's journal storage on a local file (created if missing)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(path))


def open_study(store: Any, model: str, *, seed: int, trials: int, parallel: int) -> optuna.Study:
    """The model's study in ``store`` (an Optuna storage): loaded when it exists, else created."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own log lines say what happens
    startup = min(MAX_STARTUP_TRIALS, max(parallel, trials // 2))
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_EPOCHS)
    return optuna.create_study(
        storage=store, study_name=model, direction="minimize", sampler=sampler, pruner=pruner, load_if_exists=True
    )


def recover_interrupted(study: optuna.Study) -> list[int]:
    """Fail the trials an interrupted attempt left running and queue their parameters again."""
    from optuna.trial import TrialState

    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)
        recovered.append(trial.number)
    if recovered:
        log.info("%s: trials %s were interrupted by an earlier attempt: marked failed, their parameters queued again",
                 study.study_name, recovered)
    return recovered


def interrupted(trial: optuna.trial.FrozenTrial) -> bool:
    """A trial that an earlier attempt asked for but never told (its outcome was never recorded)."""
    from optuna.trial import TrialState

    return trial.state == TrialState.FAIL and "outcome" not in trial.user_attrs


def counted(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The trials that count towards ``trials``: finished (complete, pruned, failed), not interrupted."""
    from optuna.trial import TrialState

    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return [t for t in trials if t.state in done and not interrupted(t)]


def pruning_thresholds(study: optuna.Study, epochs: int) -> list[float | None]:
    """Per epoch k (0-based): the validation loss above which a trial's best loss so far stops it,
    the median of the completed trials' losses at epoch k, as ``MedianPruner`` computes it; None
    where it would not prune (too few completed trials, the warm-up epochs, no values)."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    out: list[float | None] = []
    for epoch in range(epochs):
        values = [t.intermediate_values[epoch] for t in complete if epoch in t.intermediate_values]
        usable = len(complete) >= PRUNER_STARTUP_TRIALS and epoch >= PRUNER_WARMUP_EPOCHS and values
        median = float(np.nanpercentile(np.array(values, dtype=float), 50.0)) if usable else math.nan
        out.append(median if math.isfinite(median) else None)
    return out


def tell(study: optuna.Study, trial: optuna.Trial, result: Mapping[str, Any], attrs: Mapping[str, Any]) -> str:
    """Report a trial's per-epoch validation losses and its outcome to the study; its final state."""
    from optuna.trial import TrialState

    for epoch, value in enumerate(result.get("history", {}).get("val_loss", [])):
        if math.isfinite(value):
            trial.report(float(value), epoch)
    state = result["state"]
    for key, value in {**attrs, "outcome": state}.items():
        trial.set_user_attr(key, value)
    if state == "complete":
        study.tell(trial, float(result["value"]))
    elif state == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, state=TrialState.FAIL)
    return state
