"""Progress of long commands (backfill dates, ids written to Redis): a tqdm bar on stderr
while stderr is a terminal, and nothing at all otherwise (Airflow logs, pipes, tests).

While a bar is shown, log records and result lines are written through tqdm, so they appear
above the bar instead of breaking it.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from types import TracebackType
from typing import TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm


class Progress:
    """``with Progress("backfill", "date", total=3) as bar: ... bar.advance()``.

    ``total=None`` makes the bar on first use (``reached`` gives the total then): a publish
    that never writes to Redis shows none.
    """

    def __init__(
        self, desc: str, unit: str, total: int | None = None, stream: TextIO | None = None
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._desc, self._unit, self._total = desc, unit, total
        self.enabled = _is_terminal(self._stream)
        self._bar: tqdm[object] | None = None
        self._stack = ExitStack()

    def __enter__(self) -> Progress:
        if self._total is not None:
            self._start(self._total)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()
        self._stack.close()

    def advance(self, n: int = 1) -> None:
        """``n`` more units done."""
        bar = self._start(self._total)
        if bar is not None:
            bar.update(n)

    def reached(self, done: int, total: int) -> None:
        """``done`` of ``total`` units: the shape of ``publish``'s progress callback."""
        bar = self._start(total)
        if bar is not None:
            bar.total = total
            bar.update(done - bar.n)

    def echo(self, line: str, file: TextIO | None = None) -> None:
        """A line on stdout (or ``file``), written above the bar when there is one."""
        out = file if file is not None else sys.stdout
        if self._bar is not None:
            tqdm.write(line, file=out)
        else:
            print(line, file=out)

    def _start(self, total: int | None) -> tqdm[object] | None:
        if not self.enabled or self._bar is not None:
            return self._bar
        self._stack.enter_context(logging_redirect_tqdm())
        self._bar = tqdm(
            total=total, desc=self._desc, unit=self._unit, file=self._stream, dynamic_ncols=True
        )
        return self._bar


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
