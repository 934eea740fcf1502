"""Trace I/O: text, trace.dat, .kmt and Parquet traces -> the canonical event table.

Public entry points:

- :func:`read_trace` (any file or capture folder) -> :class:`Trace`
- :func:`write_kmt` / :func:`read_kmt`, :func:`write_parquet` / :func:`read_parquet`
- :func:`trace_stats` / :func:`format_stats`
"""

from kmemdes.trace.kmt import read_kmt, read_parquet, write_kmt, write_parquet
from kmemdes.trace.reader import Trace, read_trace
from kmemdes.trace.schema import EVENT_SCHEMA, EventKind
from kmemdes.trace.stats import format_stats, trace_stats

__all__ = [
    "Trace",
    "read_trace",
    "read_kmt",
    "write_kmt",
    "read_parquet",
    "write_parquet",
    "trace_stats",
    "format_stats",
    "EVENT_SCHEMA",
    "EventKind",
]
