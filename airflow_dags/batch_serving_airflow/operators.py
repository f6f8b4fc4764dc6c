"""The two kinds of work task: a ``batch-serving`` command and the spark-submit of the score
job; both fail per ``exits.fail_on_exit_code`` and then announce their asset events."""

from __future__ import annotations

import os
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
