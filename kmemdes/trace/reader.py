"""One entry point for every trace format: :func:`read_trace` -> :class:`Trace`.

Detects the format of a file by its first bytes (compression by magic bytes,
never by name), or finds the trace inside a capture folder, and dispatches to
the parser of that format.  The result type :class:`Trace` is shared by all
readers (text, ``.kmt``, Parquet, trace.dat).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

__all__ = ["Trace"]


@dataclass
class Trace:
    """A parsed trace.

    ``events``: the canonical event table (:data:`kmemdes.trace.schema.EVENT_SCHEMA`),
    rows in file order.  ``meta``: where it came from (``source``, ``format``:
    ``ftrace`` | ``trace-cmd-report`` | ``perf-script`` | ``trace.dat-v6`` |
    ``trace.dat-v7`` | ``kmt`` | ``parquet``), machine facts found (``cpus``,
    ``uname``), capture folder facts (``capture``: meta.txt key/values,
    ``before`` / ``after``: snapshot file name -> text).  ``problems``: kind ->
    ``{"count": n, "lines": [first line numbers], "example": "..."}``.
    """

    events: pl.DataFrame
    meta: dict = field(default_factory=dict)
    problems: dict = field(default_factory=dict)
