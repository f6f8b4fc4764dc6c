"""The jobs' exit codes (``batch-serving --help``): which failures a retry can fix."""

from __future__ import annotations

import re

from airflow.sdk.exceptions import AirflowException, AirflowFailException

EXIT_CODES = {
    1: "unexpected error",
    2: "invalid config or arguments",
    3: "model/alias/version unknown or not loadable",
    4: "input validation failed",
    5: "too many rows could not be scored",
    6: "output validation failed",
    7: "storage error or another run holds the date's lease",
    8: "publish refused",
    9: "model registry unreachable",
}
# Retrying cannot change these: the same config, model and input fail the same way. An
# unreachable registry is exit 9, retried like the other transient failures.
NOT_RETRYABLE = frozenset({2, 3, 4, 8})
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
