"""The exit-code table as ``--help`` shows it (every command's epilog) and as the docs show it
(a Markdown table), both rendered from ``batch_serving.errors.exit_code_table()``: a code
or a meaning is written once, on its exception class."""

from __future__ import annotations

import argparse
import textwrap

from batch_serving.errors import exit_code_table

HEADING = "exit codes:"
WIDTH = 96
_CODE = 5  # "  10 " : the code column of the epilog


def exit_codes_epilog() -> str:
    """``exit codes:`` then one line per code (continuation lines for a code that several
    kinds of failure share), plain text: Markdown backticks dropped."""
    lines = [HEADING]
    for row in exit_code_table():
        for n, meaning in enumerate(row.meanings):
            head = f"  {row.code:<3}" if n == 0 else " " * _CODE
            lines.extend(
                textwrap.wrap(
                    meaning.replace("`", ""),
                    WIDTH,
                    initial_indent=head,
                    subsequent_indent=" " * (_CODE + 2),
                )
            )
    return "\n".join(lines) + "\n"


def exit_codes_markdown() -> str:
    """The table for the README/docs: ``| code | meaning |``, one row per code."""
    rows = ["| code | meaning |", "|---|---|"]
    rows += [f"| {row.code} | {'; '.join(row.meanings)} |" for row in exit_code_table()]
    return "\n".join(rows) + "\n"


class HelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions to the terminal as argparse does, but keeps the exit-code epilog's
    lines as they are (argparse would run them together into one paragraph)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith(HEADING):
            return text
        return super()._fill_text(text, width, indent)
