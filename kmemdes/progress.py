"""Progress of a long command: a rich bar on stderr, or nothing.

Library functions that can run for seconds take ``progress`` (a
:class:`Progress`, default :data:`NO_PROGRESS`) and report what they do as
*stages* (``stage("reading trace.txt.zst", total)``), each advanced with
``update(done)``.  The command line passes a :class:`Bar` when stderr is a
terminal (:func:`progress_for`); the bar appears once the command has run for
:data:`DELAY` seconds, so quick commands print nothing, and it is erased when
the command ends (``close``).  Piped or redirected stderr never gets a bar.
"""

from __future__ import annotations

import sys
import threading

__all__ = ["Progress", "NO_PROGRESS", "Bar", "progress_for", "DELAY"]

#: seconds a command runs before its bar appears
DELAY = 1.0


class Progress:
    """Where a command is: stages, each with a total and a count done.  This
    base class shows nothing (:data:`NO_PROGRESS`)."""

    def stage(self, label: str, total: int | float | None = None) -> None:
        """Start a stage (``total``: its size in any unit; None: unknown)."""

    def update(self, done: int | float) -> None:
        """``done`` of the current stage's total are done."""

    def close(self) -> None:
        """The command is over: erase the bar."""

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: the progress that shows nothing
NO_PROGRESS = Progress()


class Bar(Progress):
    """A rich progress bar on stderr, shown :data:`DELAY` seconds after it is
    made (by a timer: a long stage without updates shows too).

    >>> bar = Bar(delay=3600)  # never shown in a doctest
    >>> bar.stage("reading", 10); bar.update(5); bar.close()
    """

    def __init__(self, delay: float = DELAY):
        self._lock = threading.Lock()
        self._rich = None
        self._task = None
        self._label = ""
        self._total: int | float | None = None
        self._done: int | float = 0
        self._closed = False
        self._timer = threading.Timer(delay, self._show)
        self._timer.daemon = True
        self._timer.start()

    def stage(self, label: str, total: int | float | None = None) -> None:
        with self._lock:
            self._label, self._total, self._done = label, total, 0
            if self._rich is not None:
                self._rich.remove_task(self._task)
                self._task = self._rich.add_task(label, total=total)

    def update(self, done: int | float) -> None:
        with self._lock:
            self._done = done
            if self._rich is not None:
                self._rich.update(self._task, completed=done)

    def _show(self) -> None:
        with self._lock:
            if self._closed or self._rich is not None:
                return
            from rich.console import Console
            from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                      TimeElapsedColumn(), console=Console(stderr=True), transient=True)
            self._task = self._rich.add_task(self._label, total=self._total, completed=self._done)
            self._rich.start()

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._closed = True
            if self._rich is not None:
                self._rich.stop()
                self._rich = None


def progress_for(show: "bool | Progress | None") -> Progress:
    """The progress of a command: ``show`` itself when it is one, a
    :class:`Bar` when ``show`` is true and stderr is a terminal, else
    :data:`NO_PROGRESS`."""
    if isinstance(show, Progress):
        return show
    if show and sys.stderr.isatty():
        return Bar()
    return NO_PROGRESS
