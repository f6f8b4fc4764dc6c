"""One exception class per kind of failure; each carries the CLI exit code for its class.

Messages name the thing that is wrong (key, alias, column, path, date) and what was expected,
so that a nightly failure can be understood from the one-line log message alone.
"""

from __future__ import annotations


class BatchServingError(Exception):
    """Base class: every expected failure of a run. Unexpected errors exit with code 1."""

    exit_code = 1


class ConfigError(BatchServingError):
    """The job configuration or the command-line arguments are invalid."""

    exit_code = 2


class RegistryError(BatchServingError):
    """The model/alias/version does not exist in the registry, or its registry store is missing."""

    exit_code = 3


class RegistryUnavailableError(RegistryError):
    """The registry did not answer (down, network, timeout). Unlike an unknown alias, a later
    try can succeed, so it has its own exit code that schedulers retry."""

    exit_code = 9


class ModelLoadError(RegistryError):
    """The model artifact exists but cannot be loaded (e.g. an untrusted skops type)."""


class InputValidationError(BatchServingError):
    """The input partition is missing, unreadable or does not fit the model."""

    exit_code = 4


class MissingColumnsError(InputValidationError):
    """Columns the job needs are absent from the input."""

    def __init__(self, missing: list[str], present: list[str], where: str) -> None:
        self.missing = missing
        self.present = present
        super().__init__(f"missing columns {missing} in {where}; present: {present}")


class ColumnTypeError(InputValidationError):
    """A column has a type that cannot be converted to what the model expects."""


class InputNotFoundError(InputValidationError):
    """The input partition for the run date does not exist."""


class ScoringError(BatchServingError):
    """Scoring failed (the model raised, or more rows failed than allowed)."""

    exit_code = 5


class OutputValidationError(BatchServingError):
    """The staged output does not reconcile with the input; nothing was committed."""

    exit_code = 6


class StorageError(BatchServingError):
    """Reading or writing files failed (permissions, corrupt file, interrupted commit)."""

    exit_code = 7


class LeaseHeldError(StorageError):
    """Another run holds the write lease of the same (table, model, partition); two writers of
    one partition would overwrite each other's commit, so the second one stops (or waits)."""


class PublishError(BatchServingError):
    """A partition cannot be published (not committed, failed validation) or a rollback has no
    previous snapshot to return to; the current snapshot is left as it was."""

    exit_code = 8


class ServingStoreError(BatchServingError):
    """A serving store (snapshot directory or Redis) is unreachable or holds a bad snapshot."""

    exit_code = 7


def first_line(error: BaseException | str, default: str = "unknown error") -> str:
    """The first non-empty line of an error: JVM and Python tracebacks stay out of messages."""
    stripped = str(error).strip()
    return stripped.splitlines()[0] if stripped else default
