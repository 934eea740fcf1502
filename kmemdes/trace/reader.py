"""One entry point for every trace format: :func:`read_trace` -> :class:`Trace`.

Detects the format of a file by its first bytes (compression by magic bytes,
never by name), or finds the trace inside a capture folder, and dispatches to
the parser of that format:

============================  ==================================================
first bytes                   reader
============================  ==================================================
``28 b5 2f fd`` (zstd)        decompressed as a stream, then detected again
``1f 8b`` (gzip)              idem
``fd 37 7a 58 5a 00`` (xz)    idem
``17 08 44 tracing``          :func:`kmemdes.trace.tracedat.read_tracedat`
``KMT`` magic                 :func:`kmemdes.trace.kmt.read_kmt`
``PAR1``                      Parquet written by :func:`kmemdes.trace.kmt.write_parquet`
anything else                 text: :mod:`kmemdes.trace.text`
============================  ==================================================

Text is decompressed in a background thread and parsed in chunks of whole
lines, so memory stays bounded by a few chunks plus the event table.  A
compressed stream that ends early is parsed up to the cut and counted as a
``truncated_file`` problem.
"""

from __future__ import annotations

import lzma
import queue
import threading
import zlib
from collections import deque
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

import polars as pl

from kmemdes.errors import KmemdesError
from kmemdes.progress import NO_PROGRESS, Progress
from kmemdes.trace._trace import KMT_MAGIC, Trace
from kmemdes.trace.schema import EVENT_SCHEMA

__all__ = [
    "Trace",
    "read_trace",
    "detect_file",
    "find_capture_trace",
    "read_capture_meta",
    "iter_text_chunks",
    "CHUNK_BYTES",
]

#: text parsed per chunk (whole lines); bounded memory = a few of these
CHUNK_BYTES = 32 << 20
_READ_BLOCK = 64 << 10

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
TRACEDAT_MAGIC = b"\x17\x08\x44tracing"
PARQUET_MAGIC = b"PAR1"

# capture folder: candidate trace files, in order of preference
_TEXT_NAMES = ("trace.txt.zst", "trace.txt", "trace.txt.gz", "trace.txt.xz")
_DAT_NAMES = ("trace.dat",)
_REPORT_NAMES = ("report.txt.zst", "report.txt", "report.txt.gz", "report.txt.xz", "report_head.txt.zst")
_LATE_NAMES = ("trace.v6.dat.zst", "trace.v6.dat", "trace.kmt", "trace.parquet")


# --------------------------------------------------------------------------- detection


def _head(path: Path, n: int = 16) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise KmemdesError(f"{path}: cannot read: {e.strerror or e}") from None


def detect_file(path: Path) -> str:
    """Container of a file from its first bytes: ``zstd``, ``gzip``, ``xz``,
    ``trace.dat``, ``kmt``, ``parquet`` or ``text``.

    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile(delete=False) as f:
    ...     _ = f.write(b"\\x28\\xb5\\x2f\\xfd rest")
    >>> detect_file(Path(f.name)); os.unlink(f.name)
    'zstd'
    """
    head = _head(path)
    for magic, kind in (
        (ZSTD_MAGIC, "zstd"),
        (GZIP_MAGIC, "gzip"),
        (XZ_MAGIC, "xz"),
        (TRACEDAT_MAGIC, "trace.dat"),
        (KMT_MAGIC, "kmt"),
        (PARQUET_MAGIC, "parquet"),
    ):
        if head.startswith(magic):
            return kind
    return "text"


def find_capture_trace(folder: Path) -> Path:
    """The trace file of a capture folder (``trace.txt.zst``, ``trace.dat``,
    ``report.txt.zst``, ...), preferring the ftrace text, then trace.dat."""
    for name in _TEXT_NAMES + _DAT_NAMES + _REPORT_NAMES + _LATE_NAMES:
        p = folder / name
        if p.is_file():
            return p
    raise KmemdesError(
        f"{folder}: no trace in this folder (looked for {', '.join(_TEXT_NAMES + _DAT_NAMES + _REPORT_NAMES)})"
    )


def read_capture_meta(folder: Path) -> dict:
    """Capture folder facts: ``meta.txt`` as ``capture`` (key -> value) and the
    texts of ``before/`` and ``after/`` snapshot files (name -> text)."""
    out: dict = {}
    meta_txt = folder / "meta.txt"
    if meta_txt.is_file():
        cap = {}
        for ln in meta_txt.read_text(errors="replace").splitlines():
            if "=" in ln:
                k, v = ln.split("=", 1)
                cap[k.strip()] = v.strip()
        out["capture"] = cap
        if "uname" in cap:
            out["uname"] = cap["uname"]
        if cap.get("nproc", "").isdigit():
            out["cpus"] = int(cap["nproc"])
    for side in ("before", "after"):
        d = folder / side
        if d.is_dir():
            texts = {}
            for p in sorted(d.iterdir()):
                if p.is_file():
                    try:
                        texts[p.name] = p.read_text(errors="replace")
                    except OSError:
                        continue
            out[side] = texts
    snap = out.get("before", {})
    if "uname" not in out and snap.get("uname"):
        out["uname"] = snap["uname"].strip()
    if "cpus" not in out and snap.get("nproc", "").strip().isdigit():
        out["cpus"] = int(snap["nproc"].strip())
    return out


# --------------------------------------------------------------------------- streams


class _Truncated(Exception):
    """A compressed stream ended early or is corrupt (bytes so far are valid)."""


def _decompressed_blocks(f: BinaryIO, kind: str) -> Iterator[bytes]:
    """Yield decompressed blocks; raise :class:`_Truncated` at a cut or corrupt
    stream after yielding everything before it.  Concatenated frames/members
    are followed."""
    if kind == "text":
        while True:
            b = f.read(_READ_BLOCK * 16)
            if not b:
                return
            yield b

    def new():
        if kind == "zstd":
            import zstandard

            return zstandard.ZstdDecompressor(max_window_size=1 << 31).decompressobj()
        if kind == "gzip":
            return zlib.decompressobj(wbits=31)
        return lzma.LZMADecompressor()

    errors: tuple = (zlib.error, lzma.LZMAError, EOFError)
    if kind == "zstd":
        import zstandard

        errors = errors + (zstandard.ZstdError,)
    dec = new()
    pending = b""
    while True:
        data = pending or f.read(_READ_BLOCK)
        pending = b""
        if not data:
            if not dec.eof:
                raise _Truncated(f"{kind} stream ends before its end marker (file cut short)")
            return
        try:
            out = dec.decompress(data)
        except errors as e:
            raise _Truncated(f"corrupt {kind} data ({e})") from None
        if out:
            yield out
        if dec.eof:
            rest = dec.unused_data
            if rest.strip(b"\x00"):
                dec = new()
                pending = rest
            elif not rest:
                nxt = f.read(_READ_BLOCK)
                if not nxt:
                    return
                dec = new()
                pending = nxt


def iter_text_chunks(path: Path, kind: str, chunk_bytes: int = CHUNK_BYTES, depth: int = 1,
                     offsets: list | None = None) -> Iterator[bytes | _Truncated]:
    """Whole-line chunks of a (possibly compressed) text file, produced by a
    background thread up to ``depth`` chunks ahead; a :class:`_Truncated`
    item reports a cut stream.  ``offsets``: the file offset read up to is
    appended for each chunk before it is handed over (for a progress bar)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            with open(path, "rb") as f:
                blocks: list[bytes] = []  # decompressed, not handed over yet
                size = 0
                try:
                    for block in _decompressed_blocks(f, kind):
                        blocks.append(block)
                        size += len(block)
                        if size < chunk_bytes:
                            continue
                        # cut after the last newline; each byte is copied once, by the join
                        i = len(blocks) - 1
                        while i >= 0 and (j := blocks[i].rfind(b"\n")) < 0:
                            i -= 1
                        if i < 0:
                            if size < 4 * chunk_bytes:
                                continue
                            # no newline in 4 chunks: not a text trace; hand it over
                            # in pieces (they become problem lines) to keep memory bounded
                            data = b"".join(blocks)
                            i, j, blocks = 0, chunk_bytes - 1, [data]
                        if offsets is not None:
                            offsets.append(f.tell())
                        _put(b"".join([*blocks[:i], memoryview(blocks[i])[: j + 1]]))
                        blocks = [blocks[i][j + 1:], *blocks[i + 1:]]
                        size = sum(map(len, blocks))
                        if stop.is_set():
                            return
                    if size:
                        if offsets is not None:
                            offsets.append(f.tell())
                        _put(b"".join(blocks))
                except _Truncated as e:
                    if size:
                        if offsets is not None:
                            offsets.append(f.tell())
                        _put(b"".join(blocks))
                    _put(e)
        except OSError as e:
            _put(KmemdesError(f"{path}: cannot read: {e.strerror or e}"))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            _put(e)
        finally:
            _put(None)

    def _put(item) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    t = threading.Thread(target=produce, name="kmemdes-decompress", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException) and not isinstance(item, _Truncated):
                raise item
            yield item
    finally:
        stop.set()
        t.join(timeout=5)


# --------------------------------------------------------------------------- readers


def _read_text(path: Path, kind: str, strict: bool, columns: tuple[str, ...] | None = None,
               progress: Progress | None = None, sink: Callable[[pl.DataFrame], None] | None = None) -> Trace:
    """A text trace on the parsing threads (:mod:`kmemdes.trace._parallel`);
    ``sink``: each chunk's rows are handed to it, in file order, instead of
    being kept (the trace's table is then empty)."""
    from kmemdes.trace._parallel import default_workers, parse_chunks
    from kmemdes.trace.text import TextParser

    parser = TextParser(path, strict=strict, columns=columns)
    nbytes = 0
    offsets: deque = deque()
    progress = progress or NO_PROGRESS
    progress.stage(f"reading {path.name}", path.stat().st_size)

    def done(size: int) -> None:
        nonlocal nbytes
        nbytes += size
        progress.update(offsets.popleft())
        if sink is not None:
            for frame in parser._frames:
                sink(frame)
            parser._frames.clear()

    workers = default_workers()
    # (chunks of one size whatever the workers: what the parser learns comes from the first chunk
    # where it can, so the chunk boundaries must not move)
    chunks = iter_text_chunks(path, kind, offsets=offsets)
    end = parse_chunks(parser, chunks, workers, done)
    if isinstance(end, _Truncated):
        line = parser.line_counts["total"]
        parser.problems.add("truncated_file", [line], str(end), f"truncated file: {end}", 1)
        parser.problems.check_strict()
    events, meta, problems = parser.finish()
    counts = meta["lines"]
    if not events.height and counts["dropped"] and counts["dropped"] == counts["total"] - counts["blank"] - counts["header"]:
        first = min((p for p in problems.values() if p["lines"]), key=lambda p: p["lines"][0], default=None)
        n = counts["dropped"]
        where = f", the first at line {first['lines'][0]}: {first['example'][:60]!r}" if first else ""
        raise KmemdesError(f"{path}: not a kernel trace: no event line, {n} unparsed line{'s' if n != 1 else ''}{where}")
    meta["text_bytes"] = nbytes
    if kind != "text":
        meta["compression"] = kind
    return Trace(events=events, meta=meta, problems=problems)


def _decompressed_head(path: Path, kind: str, n: int = 16) -> bytes:
    with open(path, "rb") as f:
        out = b""
        try:
            for block in _decompressed_blocks(f, kind):
                out += block
                if len(out) >= n:
                    break
        except _Truncated:
            pass
    return out[:n]


def _read_file(path: Path, strict: bool, columns: tuple[str, ...] | None = None,
               progress: Progress | None = None, sink: Callable[[pl.DataFrame], None] | None = None) -> Trace:
    kind = detect_file(path)
    if kind in ("zstd", "gzip", "xz"):
        head = _decompressed_head(path, kind)
        if head.startswith(TRACEDAT_MAGIC):
            kind_inner = "trace.dat"
        elif head.startswith(KMT_MAGIC) or head.startswith(PARQUET_MAGIC):
            raise KmemdesError(f"{path}: compressed .kmt/.parquet files are not supported; decompress first")
        else:
            kind_inner = "text"
        if kind_inner == "trace.dat":
            return _read_tracedat(path, strict, sink)
        return _read_text_cached(path, kind, strict, columns, progress, sink)
    if kind == "trace.dat":
        return _read_tracedat(path, strict, sink)
    if kind == "kmt":
        from kmemdes.trace.kmt import read_kmt

        return read_kmt(path, columns)
    if kind == "parquet":
        from kmemdes.trace.kmt import read_parquet

        return read_parquet(path, columns)
    return _read_text_cached(path, "text", strict, columns, progress, sink)


def _read_text_cached(path: Path, kind: str, strict: bool, columns: tuple[str, ...] | None = None,
                      progress: Progress | None = None, sink: Callable[[pl.DataFrame], None] | None = None) -> Trace:
    """:func:`_read_text` through the cache of parsed text traces (:mod:`kmemdes.trace.cache`: a big
    trace parsed once is loaded from a ``.kmt`` of its table afterwards); a ``sink`` reads the text."""
    if sink is not None:
        return _read_text(path, kind, strict, columns, progress, sink)
    from kmemdes.trace import cache

    trace = cache.load(path, columns, strict)
    if trace is not None:
        (progress or NO_PROGRESS).stage(f"reading {path.name} (parsed before: {cache.cache_dir()})")
        return trace
    trace = _read_text(path, kind, strict, columns, progress, sink)
    cache.store(path, columns, strict, trace)
    return trace


def _read_tracedat(path: Path, strict: bool, sink: Callable[[pl.DataFrame], None] | None = None) -> Trace:
    try:
        from kmemdes.trace.tracedat import read_tracedat
    except ImportError:  # pragma: no cover - the module ships with kmemdes
        raise KmemdesError(f"{path}: trace.dat files need kmemdes.trace.tracedat, which is not installed") from None
    return read_tracedat(path, strict, sink)


def read_trace(path, strict: bool = False, columns: Iterable[str] | None = None,
               progress: Progress | None = None, sink: Callable[[pl.DataFrame], None] | None = None) -> Trace:
    """Read any trace: a file (plain or zstd/gzip/xz-compressed text, trace.dat,
    .kmt, Parquet) or a capture folder.

    For a capture folder, or a file inside one (a folder with ``meta.txt``),
    ``meta`` also holds the capture facts and the before/after snapshot texts.
    ``strict`` raises :class:`KmemdesError` (``FILE:LINE: what``) at the first
    problem instead of counting it.  ``columns``: keep only these columns of
    the event table (a .kmt or Parquet file then decodes no others, which
    keeps a big trace's string columns out of memory).  ``progress``: where
    the reading is (:mod:`kmemdes.progress`).  ``sink``: a text trace's rows
    are handed to it chunk by chunk, in file order, instead of being kept, and a
    trace.dat's table as a :class:`~kmemdes.trace._columns.Table` (numpy columns, as
    :class:`kmemdes.trace.kmt.KmtWriter` takes them without building a Polars frame);
    the returned table is then empty (.kmt and Parquet files are read whole, as without).

    >>> from pathlib import Path
    >>> t = read_trace(Path(__file__).resolve().parents[2] / "traces" / "a_idle_stream")
    >>> t.meta["format"], t.events.height, t.meta["capture"]["name"], t.problems
    ('ftrace', 16177, 'a_idle_stream', {})
    """
    path = Path(path)
    if not path.exists():
        raise KmemdesError(f"{path}: no such file or directory")
    folder = None
    if path.is_dir():
        folder = path
        path = find_capture_trace(folder)
    elif (path.parent / "meta.txt").is_file():
        folder = path.parent
    cols = None
    if columns is not None:
        cols = tuple(columns)
        unknown = [c for c in cols if c not in EVENT_SCHEMA]
        if unknown:
            raise ValueError(f"not event table columns: {', '.join(unknown)}")
    trace = _read_file(path, strict, cols, progress, sink)
    if cols is not None and trace.events.columns != list(cols):
        trace.events = trace.events.select(cols)
    meta = dict(trace.meta)
    meta.setdefault("source", str(path))
    meta["source"] = str(path)
    if folder is not None:
        cap = read_capture_meta(folder)
        meta["capture_dir"] = str(folder)
        for k, v in cap.items():
            if k in ("cpus", "uname") and k in meta:
                continue
            meta[k] = v
    trace.meta = meta
    return trace
