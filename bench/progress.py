"""Progress on stderr: a rich progress display on a terminal, plain lines otherwise.

Results go to files and stdout; progress never does, so piping a suite's output or
running it under pytest stays clean.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Progress"]


class Phase:
    def __init__(self, owner: Progress, task: Any) -> None:
        self._owner = owner
        self._task = task

    def advance(self, steps: float = 1.0) -> None:
        if self._owner._rich is not None and self._task is not None:
            self._owner._rich.advance(self._task, steps)

    def note(self, text: str) -> None:
        """Change the phase's description (a live count, the current case)."""
        if self._owner._rich is not None and self._task is not None:
            self._owner._rich.update(self._task, description=text)


class Progress:
    """``with Progress(enabled) as p: with p.phase("warm start", total=40) as ph: ...``"""

    def __init__(self, enabled: bool | None = None, *, title: str = "") -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.title = title
        self._rich: Any = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(
                SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                MofNCompleteColumn(), TimeElapsedColumn(),
                console=Console(stderr=True), transient=False)
            self._rich.__enter__()
        if self.title:
            self.log(self.title)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)
            self._rich = None

    def log(self, text: str) -> None:
        if self._rich is not None:
            self._rich.console.print(text, highlight=False, markup=False)
        else:
            print(text, file=sys.stderr, flush=True)

    @contextmanager
    def phase(self, description: str, total: float | None = None) -> Iterator[Phase]:
        started = time.monotonic()
        task = None
        if self._rich is not None:
            task = self._rich.add_task(description, total=total)
        else:
            print(f"  {description} ...", file=sys.stderr, flush=True)
        try:
            yield Phase(self, task)
        finally:
            elapsed = time.monotonic() - started
            if self._rich is not None and task is not None:
                self._rich.update(task, completed=total if total is not None else 1,
                                  total=total if total is not None else 1)
            else:
                print(f"  {description}: {elapsed:.1f} s", file=sys.stderr, flush=True)
