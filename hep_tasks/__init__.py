"""hep-pipeline domain logic: simulated LHC events -> features -> trained trigger classifiers.

Every stage is a function with a command-line entry that ``spark-submit`` runs
(``spark-submit hep_tasks/__main__.py <stage> --flags``, or ``python -m hep_tasks <stage>`` locally).
The package imports nothing heavy at the top: pyspark, uproot, pythia8mc, great_expectations and
tensorflow are imported where they are used.

Map of the package:

- ``config``      typed pipeline settings and stage parameters (defaults < env < explicit), validation
- ``processes``   process names and class labels (0 QCD, 1 tt̄, 2 W+jets)
- ``datasets``    versioned datasets: content-derived versions, manifests, atomic commit, ``latest``
- ``sparkjob``    Spark session, small-result collection, file checksums on executors
- ``cli`` / ``__main__``  the command line shared by all stages (argument parsing, logging, run records)
- ``stages``      which function runs each stage
- ``simulate``    Pythia8 + detector response -> Delphes-like ROOT files (one Spark task per file)
- ``physics``     ARCHITECTURE §3 features: selection, isolation, particle matrix, high-level features
- ``ingest``      ROOT -> Parquet on Spark (a Python data source over file/entry-range splits)
- ``prepare``     split, balance, scale, ΔR-sort, shuffle -> train/test datasets
- ``train``       Keras classifiers trained data-parallel in a Spark barrier stage (TensorFlow workers)
- ``evaluate``    test-split predictions, ROC/AUC and trigger efficiencies, plots, HTML report
- ``score``       trained models applied to events on Spark executors; the score stage
- ``quality``     Great Expectations suites on Spark DataFrames, results and Data Docs per version
- ``localenv``    environment for running everything on one machine (Spark Python, Airflow home)
"""

__version__ = "0.1.0"
