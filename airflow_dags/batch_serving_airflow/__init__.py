"""Two Airflow DAGs per scoring job file ``conf/jobs/<name>.yaml``, built by ``airflow_dags/
<name>_dags.py`` (one DAG file per job file; ``generate.py`` writes it).

Runs in Airflow's own virtualenv (``.venv-airflow``), which has the project installed without
its dependencies (``pip install --no-deps -e .``): this package imports Airflow and the light
parts of ``batch_serving`` (config, storage, output layout, manifest, serving pointer:
pydantic, PyYAML and pyarrow only), so a job file is read with the jobs' own rules and a bad
one is the import error of its own DAG file, naming the key; the other jobs' DAGs still load.
The tasks call the jobs environment's executables (``.venv/bin/spark-submit``,
``.venv/bin/batch-serving``), so Airflow's dependencies never meet Spark's.

``score_<job>``, on ``schedule.cron`` (UTC; a run's ``{{ ds }}`` is the day it is scheduled)::

    wait_for_input  until <the date's input directory>/<schedule.input_marker> exists
                    (``_SUCCESS`` by default; local or object store), poking in reschedule
                    mode: no worker slot between pokes
    validate_input  batch-serving check-input: registry/alias, columns, row count (a local
                    Spark session only for a Spark ML model or an input.table)
    score           spark-submit jobs/score.py --run-date {{ ds }} with the job's whole
                    ``spark.conf`` (executors, archives, queue ...) and the connector jars,
                    on connection ``schedule.spark_conn_id``, in pool ``schedule.pool``, time
                    limit ``schedule.execution_timeout_minutes``; outlet: Asset
                    predictions.<model>, partition key {{ ds }}
    validate_output batch-serving check-output: committed, reconciled, gates passed
    publish         batch-serving publish (if schedule.publish); outlet: Asset
                    serving.<model>, partition key {{ ds }}

``backfill_<job>``, on demand only: params ``date_from`` / ``date_to`` (YYYY-MM-DD, checked
when the run is triggered); one task (pool ``schedule.pool``) runs ``batch-serving backfill
--from --to``, which replaces each date's partition, so running a range again is idempotent.
Outlet: Asset predictions.<model>, one partition key per date of the range.

Failures: the commands' exit codes say whether a retry can help. 2 (config), 3 (registry,
model, alias or version), 4 (input validation) and 8 (publish refused) fail the task at once
(AirflowFailException, no retries); anything else (1 unexpected, 5 scoring, 6 output
validation, 7 storage or lease held, 9 registry unreachable, a signal, the time limit) is
retried ``schedule.retries`` times with exponential backoff. Every failure calls
``schedule.on_failure_callback`` (a dotted path; default: one structured log line).

Settings per job come from the YAML's ``schedule:`` section (defaults in
``batch_serving.config.ScheduleConfig``); the environment is read in ``settings.py``
(``BATCH_SERVING_HOME``, ``BATCH_SERVING_CONF_DIR``, ``BATCH_SERVING_VENV``,
``BATCH_SERVING_ENV``: an overlay name passed as ``--env``).
"""
