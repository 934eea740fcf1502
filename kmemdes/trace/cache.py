"""A cache of parsed text traces: the event table of a big text trace, kept as ``.kmt``.

Parsing text is most of the time it takes to read a big capture (j_pressure_stock:
6.05 M lines, ~8 s on the 2-vCPU reference VM, far more when other jobs share
it), while a ``.kmt`` of the same table loads many times faster and round-trips
it exactly (:mod:`kmemdes.trace.kmt`).  So :func:`kmemdes.trace.reader.read_trace`
keeps what it parsed from a text trace of at least :data:`MIN_BYTES` on disk in a
cache folder, and a later read of the same file loads it instead of parsing it
again (``kmemdes validate --predict`` of a capture, its what-ifs and seeds, a
``kmemdes replay`` of the same capture).

An entry is used only when nothing that decides the table changed; its name is
a digest of:

- the file: resolved path, size, modification time (ns), device and inode;
- the read: the columns asked for and ``strict``;
- the code: the kmemdes version, the source of ``kmemdes/trace/*.py`` and of
  ``kmemdes/mm/gfp.py`` (a parser edited is a new key, released or not), and the
  Polars version.

The table is stored with the columns a read did not ask for left null (a
``.kmt`` chunk leaves an all-null column out), and the parse's ``meta`` and
``problems`` beside it: a hit returns the same :class:`~kmemdes.trace.reader.Trace`
the parse did.  Entries are written atomically (two processes that parse the
same file at once both write the same bytes); at most :data:`MAX_ENTRIES` are
kept, the least recently used removed first.  A damaged entry is removed and the
text parsed; a folder that cannot be written leaves the read as it was.

``KMEMDES_CACHE``: the folder (default ``$XDG_CACHE_HOME/kmemdes/traces``, else
``~/.cache/kmemdes/traces``); ``off`` (or ``0``, or empty) reads every trace from
its text.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional

import polars as pl

from kmemdes import __version__
from kmemdes.errors import KmemdesError
from kmemdes.trace.kmt import header_of, read_kmt, write_kmt
from kmemdes.trace._trace import Trace
from kmemdes.trace.schema import EVENT_SCHEMA

__all__ = ["MIN_BYTES", "MAX_ENTRIES", "cache_dir", "entry_path", "load", "store"]

#: text traces smaller than this on disk (compressed or not) are parsed every time: they parse in a moment
MIN_BYTES = 8 << 20
#: entries kept (a big capture's entry is 10-30 MB)
MAX_ENTRIES = 8
_OFF = ("", "0", "off", "no", "false")
_CODE_DIGEST: Optional[str] = None


def cache_dir() -> Optional[Path]:
    """The cache folder, or None when ``KMEMDES_CACHE`` turns the cache off."""
    env = os.environ.get("KMEMDES_CACHE")
    if env is not None:
        return None if env.strip().lower() in _OFF else Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kmemdes" / "traces"


def _code_digest() -> str:
    """The parser's source (``kmemdes/trace/*.py``, ``kmemdes/mm/gfp.py``), the kmemdes and Polars versions."""
    global _CODE_DIGEST
    if _CODE_DIGEST is None:
        h = hashlib.sha256(f"{__version__}\0{pl.__version__}\0".encode())
        pkg = Path(__file__).resolve().parent.parent
        for p in sorted((pkg / "trace").glob("*.py")) + [pkg / "mm" / "gfp.py"]:
            h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
        _CODE_DIGEST = h.hexdigest()
    return _CODE_DIGEST


def entry_path(path: Path, columns: Optional[tuple[str, ...]], strict: bool) -> Optional[Path]:
    """The cache entry of reading ``path`` this way, or None (no cache folder, a small file, no such file)."""
    folder = cache_dir()
    if folder is None:
        return None
    try:
        real = Path(path).resolve()
        st = real.stat()
    except OSError:
        return None
    if st.st_size < MIN_BYTES:
        return None
    key = json.dumps([str(real), st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino,
                      None if columns is None else list(columns), bool(strict), _code_digest()])
    return folder / f"{real.name.split('.')[0]}-{hashlib.sha256(key.encode()).hexdigest()[:32]}.kmt"


def load(path: Path, columns: Optional[tuple[str, ...]], strict: bool) -> Optional[Trace]:
    """The trace a parse of ``path`` gave, from the cache; None on a miss."""
    entry = entry_path(path, columns, strict)
    if entry is None or not entry.is_file():
        return None
    try:
        t = read_kmt(entry, columns)
    except KmemdesError:  # damaged or cut short: parse again (and store a good one)
        entry.unlink(missing_ok=True)
        return None
    meta = t.meta.get("parse_meta")
    if not isinstance(meta, dict):
        entry.unlink(missing_ok=True)
        return None
    try:
        os.utime(entry)  # recently used
    except OSError:
        pass
    # one chunk: a dozen (one per .kmt chunk) make the replay's set-up slower (sanitize, slim, windows)
    return Trace(events=t.events.rechunk(), meta=meta, problems=t.problems)


def store(path: Path, columns: Optional[tuple[str, ...]], strict: bool, trace: Trace) -> Optional[Path]:
    """Keep the trace a parse of ``path`` gave (best effort: None when it could not be written)."""
    entry = entry_path(path, columns, strict)
    if entry is None:
        return None
    ev = trace.events
    if ev.columns != list(EVENT_SCHEMA):
        ev = ev.select(*[pl.col(c) if c in ev.columns else pl.lit(None, dtype).alias(c)
                         for c, dtype in EVENT_SCHEMA.items()])
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        # the parse's meta exactly as it was (the header's own meta says how the .kmt was made)
        header_trace = Trace(events=ev, meta=dict(trace.meta, parse_meta=trace.meta), problems=trace.problems)
        write_kmt(header_trace, entry)
        _evict(entry.parent)
    except (OSError, KmemdesError):
        return None
    return entry


def _evict(folder: Path) -> None:
    entries = []
    for p in folder.glob("*.kmt"):
        try:
            entries.append((p.stat().st_mtime_ns, p))
        except OSError:
            continue
    entries.sort(reverse=True)
    for _, p in entries[MAX_ENTRIES:]:
        p.unlink(missing_ok=True)
