"""Options several commands share: ``--version`` on the program, ``--json`` on a command."""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import batch_serving

# What a bug report needs besides our own version (read from the installed metadata, so
# --version imports neither pyspark nor mlflow).
REPORTED = ("pyspark", "mlflow")


def version_lines() -> list[str]:
    """``batch-serving <version>``, then the engines it runs on, one ``name version`` a line."""
    lines = [f"batch-serving {batch_serving.__version__}"]
    for name in REPORTED:
        try:
            lines.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            lines.append(f"{name} not installed")
    return [*lines, f"python {platform.python_version()}"]


class _Version(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print versions and exit", **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        sys.stdout.write("\n".join(version_lines()) + "\n")
        parser.exit(0)


def add_version_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action=_Version, default=argparse.SUPPRESS)


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object on stdout instead of the text summary (logs stay on stderr)",
    )
