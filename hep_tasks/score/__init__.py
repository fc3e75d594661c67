"""Scoring: trained classifiers applied to events on Spark.

- ``predict``  per Arrow batch on executors: load a model once per Python worker, pad per call,
  probabilities and exact log-odds (used by ``evaluate`` on the test split too)
- ``stage``    the score stage: an ingested version scored by a model version -> a scores version
"""
