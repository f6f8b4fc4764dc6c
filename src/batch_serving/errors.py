"""One exception class per kind of failure; each carries the CLI exit code for its class and
a one-line ``meaning``: ``exit_code_table()`` builds the exit-code table of ``--help`` and of
the docs from these classes, so this module is the only place a code is defined.

Messages name the thing that is wrong (key, alias, column, path, date) and what was expected,
so that a nightly failure can be understood from the one-line log message alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


class BatchServingError(Exception):
    """Base class: every expected failure of a run. Unexpected errors exit with code 1."""

    exit_code: ClassVar[int] = 1
    meaning: ClassVar[str] = "unexpected error (a bug): rerun with `-v` for the traceback"


class ConfigError(BatchServingError):
    """The job configuration or the command-line arguments are invalid."""

    exit_code = 2
    meaning = "invalid config or arguments"


class QueryError(ConfigError):
    """``batch-serving sql``: the query cannot run (syntax, unknown table, view or column)."""

    meaning = "a `sql` query that cannot run (syntax error, unknown table, view or column)"


class RegistryError(BatchServingError):
    """The model/alias/version does not exist in the registry, or its registry store is missing."""

    exit_code = 3
    meaning = "model/alias/version unknown, or model not loadable"


class RegistryUnavailableError(RegistryError):
    """The registry did not answer (down, network, timeout). Unlike an unknown alias, a later
    try can succeed, so it has its own exit code that schedulers retry."""

    exit_code = 9
    meaning = (
        "model registry unreachable (down, network, timeout): transient, a later try can succeed"
    )


class ModelLoadError(RegistryError):
    """The model artifact exists but cannot be loaded (e.g. an untrusted skops type)."""


class InputValidationError(BatchServingError):
    """The input partition is missing, unreadable or does not fit the model."""

    exit_code = 4
    meaning = "input validation failed (missing partition, missing column, wrong type)"


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
    meaning = (
        "scoring failed: the model raised, or more rows could not be scored than "
        "`validation.max_bad_rows` allows"
    )


class OutputValidationError(BatchServingError):
    """The staged output does not reconcile with the input; nothing was committed."""

    exit_code = 6
    meaning = "output validation failed (row counts do not reconcile); nothing committed"


class StorageError(BatchServingError):
    """Reading or writing files failed (permissions, corrupt file, interrupted commit)."""

    exit_code = 7
    meaning = "storage error (unreadable file, failed commit, catalog registration)"


class LeaseHeldError(StorageError):
    """Another run holds the write lease of the same (table, model, partition); two writers of
    one partition would overwrite each other's commit, so the second one stops (or waits)."""

    meaning = "another run holds the date's lease (the message names it; `--wait` waits)"


class PublishError(BatchServingError):
    """A partition cannot be published (not committed, failed validation) or a rollback has no
    previous snapshot to return to; the current snapshot is left as it was."""

    exit_code = 8
    meaning = (
        "publish refused (partition not committed, failed validation, or drift over "
        "`monitoring.gates`), or nothing to roll back to"
    )


class ServingStoreError(BatchServingError):
    """A serving store (snapshot directory or Redis) is unreachable or holds a bad snapshot."""

    exit_code = 7
    meaning = "serving store (snapshot directory or Redis) unreachable or holding a bad snapshot"


class RemoteScoringError(ServingStoreError):
    """The lookup API's ``POST /v1/models/{m}:score`` endpoint could not answer a cascade's
    undecided rows (down, timed out, or refused the request); the message names the endpoint."""


class ParityGateError(BatchServingError):
    """``export-onnx``: the converted model does not decide like its source (score difference
    over the tolerance, or a row changes side of a decision threshold); nothing registered."""

    exit_code = 10
    meaning = (
        "`export-onnx` parity gate failed (score difference or decision flips); nothing registered"
    )
    report: object = None  # the ParityReport, for the CLI to print


class OnnxConversionError(BatchServingError):
    """``export-onnx``: skl2onnx cannot convert the model (a step without a converter, or a
    graph onnxruntime refuses). Exit 10 as the parity gate: the export refused, nothing
    registered; the model itself loads fine (not exit 3), so the message says what to change."""

    exit_code = 10
    meaning = "`export-onnx` cannot convert the model (unsupported step); nothing registered"


class PromotionGateError(BatchServingError):
    """``promote``: the challenger failed a gate against the champion on recent labelled data
    (metric margin, calibration, score PSI, action flips, too few rows); ``@champion`` did not
    move. The message names every failed gate with both numbers and its threshold."""

    exit_code = 11
    meaning = "`promote` refused: a gate failed (named with its numbers); `@champion` unchanged"
    report: object = None  # the GateReport, for the CLI to print


class FeatureMismatchError(BatchServingError):
    """``training-set --check``: a feature the stream scored an event with differs from the
    offline recomputation of the same event; nothing written. The message names the first such
    event by its key, the feature and both values."""

    exit_code = 12
    meaning = (
        "`training-set --check`: the stream's features differ from the offline training set "
        "(first event, feature and both values named); nothing written"
    )


SUCCESS = 0


@dataclass(frozen=True)
class ExitCode:
    """One row of the exit-code table: a code, what it means (one line per error class that
    exits with it, Markdown ``code`` spans allowed) and the classes."""

    code: int
    meanings: tuple[str, ...]
    errors: tuple[str, ...]


def exit_code_table() -> tuple[ExitCode, ...]:
    """Every exit code of the command line, in order: 0, then the code and meaning of every
    error class that defines its own ``meaning`` (a subclass that only narrows its parent, such
    as ``MissingColumnsError``, adds no line). Code 1 is also what any unexpected error exits
    with."""
    rows: dict[int, list[type[BatchServingError]]] = {}
    for cls in _error_classes(BatchServingError):
        if "meaning" in vars(cls) and cls.__module__ == __name__:  # not what a test defines
            rows.setdefault(cls.exit_code, []).append(cls)
    table = [ExitCode(SUCCESS, ("success",), ())]
    for code in sorted(rows):
        classes = rows[code]
        table.append(
            ExitCode(code, tuple(c.meaning for c in classes), tuple(c.__name__ for c in classes))
        )
    return tuple(table)


def _error_classes(root: type[BatchServingError]) -> list[type[BatchServingError]]:
    """``root`` and its subclasses, depth first in the order they are defined."""
    found = [root]
    for sub in root.__subclasses__():
        found.extend(_error_classes(sub))
    return found


def first_line(error: BaseException | str, default: str = "unknown error") -> str:
    """The first non-empty line of an error: JVM and Python tracebacks stay out of messages."""
    stripped = str(error).strip()
    return stripped.splitlines()[0] if stripped else default
