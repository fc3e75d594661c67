"""Airflow glue for hep-pipeline: the Assets every DAG shares and the stage operator.

Airflow puts ``plugins/`` on the import path, so DAG files import ``hep_airflow.assets`` and
``hep_airflow.operators``. Nothing here imports pyspark or the stage code at parse time.
"""
