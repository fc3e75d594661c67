"""The train stage: the three Keras classifiers, trained data-parallel inside a Spark barrier stage.

Map of the package (TensorFlow is imported only by ``models``, ``loop`` and ``worker``, inside
functions or when they run):

- ``hyperparameters``  model names, default hyper-parameters, JSON overrides (no heavy imports)
- ``models``           Keras 3 models: HLF dense net, particle-sequence GRU, inclusive (GRU ⊕ HLF)
- ``inputs``           Parquet row groups -> padded NumPy batches, per worker shard, streaming
- ``checkpoints``      per-epoch checkpoints under the version's scratch directory; resume
- ``loop``             one worker's training: MultiWorkerMirroredStrategy, custom step, validation
- ``worker``           the process a barrier task starts (``python -m hep_tasks.train.worker``)
- ``distributor``      ``TensorFlowDistributor``: barrier stage, address exchange, TF_CONFIG, logs
- ``stage``            the Spark stage: check the prepared version, train each model, commit
"""
