"""``batch-serving`` command line: thin argument parsing around the library.

Exit codes: 0 success; 1 unexpected error; 2 config/usage; 3 registry/model; 4 input
validation; 5 scoring; 6 output validation; 7 storage/I-O.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable, Sequence

from batch_serving.errors import BatchServingError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the process exit code."""
    from batch_serving.cli.parser import build_parser

    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except BatchServingError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"error: unexpected {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("py4j", "mlflow", "alembic", "urllib3", "git", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
