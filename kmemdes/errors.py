"""User-facing errors.

Every error caused by bad input (a file, a config key, a command-line value)
is raised as :class:`KmemdesError` with a message that names where the problem
is (``FILE:LINE: what``, ``config.toml: machine.mem: ...``).  The CLI prints it
as one line on stderr and exits with status 2; it never shows a traceback
unless ``--debug`` is given.
"""

from __future__ import annotations

__all__ = ["KmemdesError", "Interrupted", "where"]


class KmemdesError(Exception):
    """An error in the user's input, printed as one line without a traceback.

    >>> str(KmemdesError("buddyinfo:3: expected 11 counts, got 4"))
    'buddyinfo:3: expected 11 counts, got 4'
    """


class Interrupted(Exception):
    """A command stopped by a signal after cleaning up; the CLI exits with 128 + ``signum``
    (130 for SIGINT, 143 for SIGTERM, as a shell reports a process killed by it)."""

    def __init__(self, signum: int, name: str = ""):
        super().__init__(name or f"signal {signum}")
        self.signum = signum


def where(path: object, line: int | None = None) -> str:
    """Format a location prefix ``path:line`` for error messages.

    >>> where("before/buddyinfo", 2)
    'before/buddyinfo:2'
    >>> where("x.toml")
    'x.toml'
    """
    return f"{path}:{line}" if line is not None else str(path)
