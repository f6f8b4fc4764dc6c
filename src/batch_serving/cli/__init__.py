"""``batch-serving`` command line: thin argument parsing around the library.

Exit codes: those of ``batch_serving.errors.exit_code_table()`` (``batch-serving --help``).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

from batch_serving.cli.output import stdout_reserved
from batch_serving.errors import BatchServingError, first_line

__all__ = ["main", "run"]


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the process exit code."""
    from batch_serving.cli.parser import build_parser

    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        with stdout_reserved(getattr(args, "json", False)):
            return func(args)
    except BatchServingError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"error: unexpected {_described(exc)}", file=sys.stderr)
        return 1


def run(argv: Sequence[str] | None = None) -> NoReturn:
    """The process's entry point (console script, ``python -m``, ``jobs/*.py``): ``main``, then
    the exit handlers (temporary directories, logging) and flushed output, then the process
    ends without the interpreter's teardown. A job's process holds hundreds of imported
    modules and idle threads of Py4J and MLflow that the interpreter would join and collect one
    by one: 1.4 s measured after a 200k-row run, longer than most of its steps. A run's
    threads have been waited for when ``main`` returns, but for work that must not be cut off
    although nobody needs its result (the metastore's boot): waited for here."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: --help, --version, a usage error
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    context = sys.modules.get("batch_serving.runs.context")  # loaded only if a run started
    if context is not None:
        context.finish_uncut(timeout=120.0)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(code)


def _described(exc: Exception) -> str:
    """The type and first line of an unexpected error; a Py4J/PySpark one by the line that says
    what went wrong, without Py4J's wrapper or Java class names."""
    if type(exc).__module__.startswith(("py4j", "pyspark")):
        from batch_serving.spark.errors import jvm_error_line

        return f"Spark error: {jvm_error_line(str(exc))}"
    return f"{type(exc).__name__}: {first_line(exc)}"


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("py4j", "mlflow", "alembic", "urllib3", "git", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
