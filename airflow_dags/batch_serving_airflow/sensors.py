"""The input sensors: wait for the date's partition to be complete (``inputs.partition_ready``),
at the directory the job file names (``InputPartitionSensor``) or, for an ``input.table``, at
the directory the ``resolve_input`` task found in the metastore (``TablePartitionSensor``)."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout

from batch_serving.config import JobConfig

from .inputs import awaited, partition_ready


class InputPartitionSensor(BaseSensorOperator):
    """Pokes every ``poke_interval`` seconds in reschedule mode: between pokes the task holds
    no worker slot, and neither a triggerer nor a trigger class importable by it is needed. It
    reads local paths and object stores alike (the job's ``storage:``). Fails, without
    retries, after ``timeout`` seconds, naming what it waited for."""

    template_fields = ("ds",)

    def __init__(self, *, cfg: JobConfig, ds: str = "{{ ds }}", **kwargs: Any) -> None:
        super().__init__(mode="reschedule", **kwargs)
        self.cfg, self.ds = cfg, ds
        self._partition: str | None = None

    def partition(self, context: Context) -> str | None:
        """The directory to look at; None: the one the job file names (``input.path``)."""
        return None

    def poke(self, context: Context) -> bool:
        self._partition = self.partition(context)
        ready = partition_ready(self.cfg, self.ds, self._partition)
        self.log.info(
            "%s: %s", awaited(self.cfg, self.ds, self._partition), "found" if ready else "not yet"
        )
        return ready

    def execute(self, context: Context) -> Any:
        try:
            return super().execute(context)
        except AirflowSensorTimeout as error:
            raise AirflowSensorTimeout(
                f"{awaited(self.cfg, self.ds, self._partition)} did not appear within "
                f"schedule.sensor_timeout_hours ({self.timeout / 3600:g} h): {error}"
            ) from error


class TablePartitionSensor(InputPartitionSensor):
    """The sensor of an ``input.table``: the table's date directory is the ``partition`` of
    the record that task ``resolved_by`` (``batch-serving resolve-input --json``) returned,
    read from XCom at every poke (a reschedule starts the sensor afresh)."""

    def __init__(self, *, resolved_by: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resolved_by = resolved_by

    def partition(self, context: Context) -> str | None:
        record = context["ti"].xcom_pull(task_ids=self.resolved_by)
        if not isinstance(record, dict) or not record.get("partition"):
            raise AirflowException(
                f"task {self.resolved_by} returned no partition for input.table "
                f"{self.cfg.input.table} (got {record!r})"
            )
        if record.get("run_date") != self.ds:
            raise AirflowException(
                f"task {self.resolved_by} resolved {record.get('run_date')}, not {self.ds}"
            )
        return str(record["partition"])
