"""The prepare stage: balanced, scaled, ΔR-sorted, shuffled train/test datasets.

- ``scalers``    MinMax (HLF) and standardisation (particles), fitted on train, saved as JSON
- ``transform``  per Arrow batch: ΔR sort, scaling, one-hot labels (NumPy, no per-row Python)
- ``stage``      the Spark stage: split by lineage hash, exact balancing, fit, transform, write
"""
