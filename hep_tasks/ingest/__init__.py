"""The ingest stage: Delphes-like ROOT files -> Parquet events with the ARCHITECTURE §3 features.

- ``rootfile``    uproot reading of both branch layouts, placeholder removal, errors naming file/tree
- ``inputs``      what to ingest: a simulate version or ``[process=]path-or-glob`` items
- ``datasource``  the ``delphes`` PySpark Python data source: (file, entry range) splits -> Arrow batches
- ``schema``      the ingested table's Arrow/Spark schema and the conversion from physics features
- ``stage``       the Spark stage: inspect, read, write, cut-flow, quarantine, manifest, commit
"""
