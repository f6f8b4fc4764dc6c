"""The jobs' exit codes (``batch-serving --help``): which failures a retry can fix."""

from __future__ import annotations

import re

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from batch_serving.errors import exit_code_table  # the standard library only

# One table: the meanings come from the error classes, as in every command's --help.
EXIT_CODES = {row.code: "; ".join(row.meanings) for row in exit_code_table() if row.code}
# Retrying cannot change these: the same config, model, input or gate fails the same way
# (2 config, 3 model, 4 input, 8 publish refused, 10 ONNX parity/conversion, 11 promotion
# gate). An unreachable registry is exit 9, retried like the other transient failures.
NOT_RETRYABLE = frozenset({2, 3, 4, 8, 10, 11})
SPARK_SUBMIT_EXIT = re.compile(r"Error code is: (-?\d+)")


def fail_on_exit_code(code: int, what: str) -> None:
    """Raise for a failed command: AirflowFailException (the task fails now, no retries) when a
    retry cannot help, AirflowException (retried with backoff) for every other code."""
    if code == 0:
        return
    meaning = EXIT_CODES.get(code, "killed by a signal" if code < 0 else "unknown exit code")
    if code in NOT_RETRYABLE:
        raise AirflowFailException(
            f"{what} exited with {code} ({meaning}): a retry cannot fix this, so it is not "
            "retried; fix the cause, then clear the task"
        )
    raise AirflowException(f"{what} exited with {code} ({meaning}); retried if tries are left")


def spark_submit_exit_code(error: BaseException) -> int | None:
    """spark-submit's exit code from the provider's failure message ("... Error code is: N.").

    In client and local deploy modes the driver runs inside spark-submit, whose exit code is
    then the driver's (``sys.exit(main(...))`` in jobs/score.py). None when the message has no
    code (e.g. a cluster-mode status failure): then the task is retried as before.
    """
    match = SPARK_SUBMIT_EXIT.search(str(error))
    return int(match.group(1)) if match else None
