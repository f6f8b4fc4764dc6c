"""The input sensor: waits for the date's partition to be complete (``inputs.partition_ready``)."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowSensorTimeout

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

    def poke(self, context: Context) -> bool:
        ready = partition_ready(self.cfg, self.ds)
        self.log.info("%s: %s", awaited(self.cfg, self.ds), "found" if ready else "not yet")
        return ready

    def execute(self, context: Context) -> Any:
        try:
            return super().execute(context)
        except AirflowSensorTimeout as error:
            raise AirflowSensorTimeout(
                f"{awaited(self.cfg, self.ds)} did not appear within "
                f"schedule.sensor_timeout_hours ({self.timeout / 3600:g} h): {error}"
            ) from error
