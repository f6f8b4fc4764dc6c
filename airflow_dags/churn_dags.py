"""Airflow DAGs score_<job> (nightly) and backfill_<job> of job file churn.yaml.

One DAG file per job file, so a broken job file hides only its own DAGs. Written by
batch_serving_airflow/generate.py; the DAGs are built in batch_serving_airflow/dags.py.
"""

from batch_serving_airflow.dags import job_dags

globals().update(job_dags("churn.yaml"))
