"""The tune stage: a hyper-parameter search per model, its trials run in parallel Spark tasks.

Map of the package (Optuna and TensorFlow are imported only inside functions that run them):

- ``space``    search spaces per model: defaults, JSON overrides, validation, sampling (no heavy imports)
- ``study``    the Optuna study of a model on a journal file in the version's scratch directory:
               seeded TPE sampler, median pruning thresholds, recovery of an interrupted attempt
- ``trial``    one trial inside a Spark task: single-process training with the train stage's own
               model, step and input code (``TrainingProgram``), validation loss and tt̄-vs-QCD AUC
- ``rounds``   a round of trials as one Spark job, one task per trial, results as small JSON
- ``report``   trials table, best parameters, search-history and importance plots, HTML page
- ``stage``    the Spark stage: subsample the train split, search each model, commit the version
"""
