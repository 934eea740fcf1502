"""Trace I/O: text, trace.dat, .kmt and Parquet traces -> the canonical event table.

Public entry points:

- :func:`read_trace` (any file or capture folder) -> :class:`Trace`
- :func:`write_kmt` / :func:`read_kmt`, :func:`write_parquet` / :func:`read_parquet`
- :func:`trace_stats` / :func:`format_stats`

They are imported on first use, so that a command pays only for the modules it needs
(``kmemdes convert`` never loads the statistics).
"""

from __future__ import annotations

import importlib

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

_HOME = {
    "Trace": "reader",
    "read_trace": "reader",
    "read_kmt": "kmt",
    "write_kmt": "kmt",
    "read_parquet": "kmt",
    "write_parquet": "kmt",
    "trace_stats": "stats",
    "format_stats": "stats",
    "EVENT_SCHEMA": "schema",
    "EventKind": "schema",
}


def __getattr__(name: str):
    if name in _HOME:
        value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
