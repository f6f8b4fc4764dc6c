"""The kinds of work task: a ``batch-serving`` command (one whose JSON record is the task's
XCom, too) and the spark-submit of the score job; all fail per ``exits.fail_on_exit_code``,
and the first and last then announce their asset events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from typing import Any

from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.hooks.subprocess import SubprocessHook
from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from .exits import fail_on_exit_code, spark_submit_exit_code
from .submit import SubmitArguments, master_mismatch

Announcer = Callable[[Context], None]


class BatchServingCommand(BaseOperator):
    """Runs ``batch-serving <arguments>`` (an argument list, no shell) and fails the task per
    ``fail_on_exit_code``; then ``announcer`` (if any) sets the outlet events."""

    template_fields = ("arguments",)

    def __init__(
        self,
        *,
        executable: str,
        arguments: list[str],
        env: dict[str, str],
        announcer: Announcer | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.executable, self.arguments, self.env = executable, arguments, env
        self.announcer = announcer
        self._hook: SubprocessHook | None = None

    def execute(self, context: Context) -> None:
        self._hook = SubprocessHook()
        result = self._hook.run_command(
            [self.executable, *self.arguments], env={**os.environ, **self.env}
        )
        fail_on_exit_code(result.exit_code, f"batch-serving {self.arguments[0]}")
        if self.announcer is not None:
            self.announcer(context)

    def on_kill(self) -> None:
        if self._hook is not None:
            self._hook.send_sigterm()


class JsonRecordCommand(BatchServingCommand):
    """Runs ``batch-serving <arguments>`` (which include ``--json``) and returns its record,
    the one JSON object on its stdout, as the task's XCom value; its stderr (the logs) is
    copied into the task log when it ends. Fails per ``fail_on_exit_code`` as the others do.
    (SubprocessHook mixes stderr into stdout and keeps only the last line.)"""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._process: subprocess.Popen[str] | None = None

    def execute(self, context: Context) -> Any:
        command = [self.executable, *self.arguments]
        self.log.info("Running command: %s", command)
        self._process = subprocess.Popen(
            command,
            env={**os.environ, **self.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own group: on_kill ends its JVM too
        )
        out, err = self._process.communicate()
        for line in err.splitlines():
            self.log.info("%s", line)
        fail_on_exit_code(self._process.returncode, f"batch-serving {self.arguments[0]}")
        try:
            return json.loads(out)
        except ValueError as error:
            raise AirflowException(
                f"batch-serving {self.arguments[0]} printed no JSON record: {out[-500:]!r}"
            ) from error

    def on_kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)


class ScoreSubmitOperator(SparkSubmitOperator):
    """SparkSubmitOperator over the job's ``spark:`` section (``submit.submit_arguments``),
    whose failures follow the score job's exit codes (read from the provider's error message,
    see ``spark_submit_exit_code``); then ``announcer`` (if any) sets the outlet events."""

    def __init__(
        self, *, submit: SubmitArguments, announcer: Announcer | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**submit.operator_kwargs(), **kwargs)
        self.submit, self.announcer = submit, announcer

    def _get_hook(self) -> SparkSubmitHook:
        hook = super()._get_hook()
        if warning := master_mismatch(self.submit, hook._connection["master"]):
            self.log.warning(warning)
        return hook

    def execute(self, context: Context) -> None:
        try:
            super().execute(context)
        except AirflowFailException:
            raise
        except AirflowException as error:
            code = spark_submit_exit_code(error)
            if code is None:
                raise
            fail_on_exit_code(code, "spark-submit jobs/score.py")
            raise
        if self.announcer is not None:
            self.announcer(context)
