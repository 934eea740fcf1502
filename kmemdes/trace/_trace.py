"""The parsed trace (:class:`Trace`) and the ``.kmt`` magic: what the reader returns and every
format module builds, kept apart so that they need not import the reader (which picks among them)."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

__all__ = ["KMT_MAGIC", "Trace"]

KMT_MAGIC = b"\x89KMT\r\n\x1a\n"


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
