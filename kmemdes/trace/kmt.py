"""``.kmt``: kmemdes's own trace container, and the Parquet export.

A ``.kmt`` file is the 8-byte magic ``\\x89KMT\\r\\n\\x1a\\n`` followed by a
stream of msgpack objects:

1. a *header* map: ``kmt`` (container version), ``schema`` (event schema
   version), ``columns`` ([name, dtype] in schema order), ``rows``,
   ``chunks``, ``source``, ``source_format``, ``meta`` (kernel and machine
   facts, capture ``meta.txt`` values, before/after snapshot texts) and
   ``problems`` of the original parse;
2. one map per *chunk* of rows: ``rows`` and ``z``, the zstd-compressed
   msgpack map of its columns.  Each column is compact bytes:

   - numbers and booleans: the little-endian array of all rows (0 where
     null) in the narrowest integer type that holds them (``t``, a numpy
     type string), or one constant ``k``; a mostly-null column (``s``) keeps
     the values of its non-null rows only; ``line`` and ``ts`` as the first
     value ``f`` and the differences; a validity bitmap (``numpy.packbits``,
     little bit order) when the column has nulls;
   - strings: a dictionary (the distinct values) and codes (uint8/16/32),
     plus the validity bitmap;
   - a column with no value in the chunk is left out (all null);
3. an *end* map ``{"end": true, "rows": n, "crc32": c}``, ``c`` being the CRC-32
   of every byte before it: a file without it was cut short, a file whose
   CRC differs was damaged.

Files are written to a temporary name and renamed when complete.  Loading
does no text parsing at all, so it is many times faster than reading the
source text (``benchmarks/bench_parse.py`` measures the ratio), and the
round trip is exact: same values, nulls and dtypes.

Parquet (``write_parquet`` / ``read_parquet``) holds the same event table,
with the header (meta, problems) as JSON under the key ``kmemdes`` of the
file's key-value metadata.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import sys
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgpack
import numpy as np
import polars as pl

from kmemdes import __version__
from kmemdes.errors import KmemdesError
from kmemdes.progress import Progress
from kmemdes.outpath import atomic_write
from kmemdes.trace._columns import Table, join_tables
from kmemdes.trace._trace import KMT_MAGIC, Trace
from kmemdes.trace.schema import EVENT_SCHEMA, SCHEMA_VERSION

__all__ = ["KMT_VERSION", "KmtWriter", "write_kmt", "convert_trace", "read_kmt", "write_parquet", "read_parquet",
           "header_of"]

KMT_VERSION = 2
_CHUNK_ROWS = 1 << 19
_ZSTD_LEVEL = 3
_DELTA = ("line", "ts")

_NP = {
    pl.Int8(): np.int8,
    pl.Int16(): np.int16,
    pl.Int32(): np.int32,
    pl.Int64(): np.int64,
    pl.UInt8(): np.uint8,
    pl.UInt16(): np.uint16,
    pl.UInt32(): np.uint32,
    pl.UInt64(): np.uint64,
    pl.Boolean(): np.uint8,
}


def _plain(obj):
    """A msgpack/JSON-safe copy (tuples -> lists, numpy/Path -> Python)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


def header_of(trace: Trace) -> dict:
    """The container header of a trace (meta and problems, schema facts)."""
    meta = _plain(trace.meta)
    return {
        "kmt": KMT_VERSION,
        "schema": SCHEMA_VERSION,
        "columns": [[name, str(dtype)] for name, dtype in EVENT_SCHEMA.items()],
        "rows": trace.events.height,
        "source": meta.get("source"),
        "source_format": meta.get("format"),
        "created_by": f"kmemdes {__version__}",
        "meta": meta,
        "problems": _plain(trace.problems),
    }


def _check_schema(events: pl.DataFrame, what: object) -> None:
    if events.schema != pl.Schema(EVENT_SCHEMA):
        raise KmemdesError(f"{what}: the event table does not have the canonical schema")


def _check_rows_schema(events: pl.DataFrame, what: object) -> None:
    """The canonical schema, where a String column may come dictionary-encoded (an ``Enum``)."""
    if events.schema == pl.Schema(EVENT_SCHEMA):
        return
    if events.columns != list(EVENT_SCHEMA) or any(
            dtype != EVENT_SCHEMA[c] and not (EVENT_SCHEMA[c] == pl.String and isinstance(dtype, pl.Enum))
            for c, dtype in events.schema.items()):
        raise KmemdesError(f"{what}: the event table does not have the canonical schema")


# --------------------------------------------------------------------------- columns


def _code_type(k: int) -> type:
    return np.uint8 if k <= 1 << 8 else np.uint16 if k <= 1 << 16 else np.uint32


def _encode_column(s: pl.Series) -> dict | None:
    """One column of a chunk as its msgpack map (byte arrays as buffers, packed as they are)."""
    n = s.len()
    nulls = s.null_count()
    if nulls == n:
        return None
    valid = s.is_not_null().to_numpy() if nulls else None
    if isinstance(s.dtype, pl.Enum):  # a String column, dictionary-encoded: the same bytes, no hashing of strings
        phys = s.to_physical()
        first = phys.drop_nulls().unique(maintain_order=True).to_numpy()
        return _encode_codes(valid, first, phys.fill_null(int(first[0])).to_numpy(), s.dtype.categories.len(),
                             s.dtype.categories.gather(first).to_list())
    if s.dtype == pl.String:
        uniq = s.drop_nulls().unique(maintain_order=True)
        codes = s.cast(pl.Enum(uniq.to_list())).to_physical()
        out = _mask(valid)
        ctype = _code_type(uniq.len())
        out["d"] = uniq.to_list()
        out["c"] = np.ascontiguousarray(codes.fill_null(0).to_numpy().astype(ctype, copy=False)).data
        out["w"] = np.dtype(ctype).itemsize
        return out
    return _encode_numbers(s.name, _NP[s.dtype], s.fill_null(0).to_numpy() if nulls else s.to_numpy(), valid, nulls)


def _mask(valid: np.ndarray | None) -> dict:
    """A column's map, begun with its validity bitmap when it has nulls."""
    return {} if valid is None else {"m": np.packbits(valid, bitorder="little").data}


def _encode_codes(valid: np.ndarray | None, first: np.ndarray, codes: np.ndarray, ncats: int, names: list) -> dict:
    """A string column's map from dictionary codes: ``first``, the codes present in order of
    first appearance (the chunk's dictionary, ``names``), ``codes`` those of every row (any
    present code where null), out of ``ncats``."""
    out = _mask(valid)
    ctype = _code_type(len(first))
    remap = np.zeros(ncats, ctype)
    remap[first] = np.arange(len(first), dtype=ctype)
    out["d"] = names
    out["c"] = remap[codes].data
    out["w"] = np.dtype(ctype).itemsize
    return out


def _encode_numbers(name: str, npt: type, arr: np.ndarray, valid: np.ndarray | None, nulls: int) -> dict:
    """A number or boolean column's map from the values of every row (0 where null)."""
    n = len(arr)
    out = _mask(valid)
    arr = arr.astype(npt, copy=False)
    if nulls * 2 > n and name not in _DELTA:  # sparse: keep the values of the non-null rows only
        arr = arr[valid]
        out["s"] = 1
        small = _narrowest(arr)
        out["t"] = small.str
        out["v"] = np.ascontiguousarray(arr.astype(small, copy=False)).data
        return out
    if name in _DELTA:
        out["f"] = int(arr[0])
        arr = np.diff(arr)
    lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    if not nulls and "f" not in out and n and lo == hi:
        out["k"] = int(arr[0])
        return out
    if nulls * 2 > n:
        arr = arr[valid]
        out["s"] = 1
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    small = _narrowest(arr, lo, hi)
    out["t"] = small.str
    out["v"] = np.ascontiguousarray(arr.astype(small, copy=False)).data
    return out


def _encode_table_column(table: Table, name: str, dtype: pl.DataType, start: int, stop: int) -> dict | None:
    """Rows ``start:stop`` of a :class:`Table` column as :func:`_encode_column` encodes them
    from a frame of the same rows (the same bytes)."""
    if dtype == pl.String:
        part = table.strings(name, start, stop)
        if part is None:
            return None
        codes, names = part
        valid = codes >= 0
        nulls = len(codes) - int(np.count_nonzero(valid))
        if nulls == len(codes):
            return None
        present = pl.Series(codes)
        if nulls:
            present = present.filter(pl.Series(valid))
            codes = np.where(valid, codes, codes[np.argmax(valid)])
        first = present.unique(maintain_order=True).to_numpy()
        return _encode_codes(valid if nulls else None, first, codes, len(names), [names[i] for i in first.tolist()])
    part = table.numbers(name, start, stop)
    if part is None:
        return None
    arr, valid = part
    nulls = 0 if valid is None else len(arr) - int(np.count_nonzero(valid))
    if nulls == len(arr):
        return None
    return _encode_numbers(name, _NP[dtype], arr, valid if nulls else None, nulls)


def _narrowest(arr: np.ndarray, lo: int | None = None, hi: int | None = None) -> np.dtype:
    """The smallest little-endian integer type that holds every value of ``arr`` (whose
    minimum and maximum are ``lo`` and ``hi`` when given)."""
    if arr.size == 0:
        return np.dtype("<u1")
    if lo is None or hi is None:
        lo, hi = int(arr.min()), int(arr.max())
    kinds = "u" if lo >= 0 else "i"
    for size in (1, 2, 4, 8):
        t = np.dtype(f"<{kinds}{size}")
        info = np.iinfo(t)
        if info.min <= lo and hi <= info.max:
            return t
    return arr.dtype.newbyteorder("<")


def _decode_column(name: str, dtype: pl.DataType, col: dict | None, n: int) -> pl.Series:
    if col is None:
        return pl.Series(name, dtype=dtype).extend_constant(None, n)
    mask = None
    if "m" in col:
        mask = np.unpackbits(np.frombuffer(col["m"], np.uint8), count=n, bitorder="little").view(bool)
    if dtype == pl.String:
        ctype = {1: np.uint8, 2: np.uint16, 4: np.uint32}[col["w"]]
        codes = np.frombuffer(col["c"], dtype=np.dtype(ctype).newbyteorder("<"))
        idx = pl.Series(np.ma.masked_array(codes, ~mask) if mask is not None else codes)
        return pl.Series(name, col["d"], dtype=pl.String).gather(idx).alias(name)
    npt = np.dtype(_NP[dtype])
    if "k" in col:
        arr = np.full(n, col["k"], dtype=npt)
    elif "s" in col:
        arr = np.zeros(n, dtype=npt)
        arr[mask] = np.frombuffer(col["v"], dtype=np.dtype(col["t"]))
    else:
        arr = np.frombuffer(col["v"], dtype=np.dtype(col["t"])).astype(npt)
    if "f" in col:
        full = np.empty(n, dtype=npt)
        full[0] = col["f"]
        np.cumsum(arr, dtype=npt, out=full[1:])
        full[1:] += full[0]
        arr = full
    if dtype == pl.Boolean:
        arr = arr.astype(bool)
    if mask is not None:
        arr = np.ma.masked_array(arr, ~mask)
    return pl.Series(name, arr, dtype=dtype)


# --------------------------------------------------------------------------- .kmt


def _encode_chunk(part: pl.DataFrame | list, cctx) -> bytes:
    """One chunk of rows (a frame, or a list of ``(table, start, stop)``: rows
    ``start:stop`` of each :class:`Table` in turn) as its msgpack map (``rows``, ``z``)."""
    if isinstance(part, list):
        table = join_tables(part)
        rows = table.height
        encs = ((name, _encode_table_column(table, name, dtype, 0, rows)) for name, dtype in EVENT_SCHEMA.items())
    else:
        rows = part.height
        encs = ((name, _encode_column(part[name])) for name in EVENT_SCHEMA)
    cols = {name: enc for name, enc in encs if enc is not None}
    blob = cctx.compress(msgpack.packb(cols, use_bin_type=True))
    return msgpack.packb({"rows": rows, "z": blob}, use_bin_type=True)


class KmtWriter:
    """A ``.kmt`` file written from the event table's rows as they come:
    :meth:`add` frames in row order (any sizes), :meth:`close` with the
    trace's header.  Each chunk of ``chunk_rows`` rows is encoded on a thread
    as soon as its rows are there (zstd and most of the encoding run without
    the GIL); only the compressed chunks are kept, and the file is written at
    :meth:`close`, to a temporary name renamed when complete, so the bytes are
    those :func:`write_kmt` of the whole table gives.  A writer that is not
    closed (an error, an interrupt) writes nothing."""

    def __init__(self, path, chunk_rows: int = _CHUNK_ROWS, workers: int = 2):
        import zstandard

        self.path = Path(path)
        self.rows = 0
        self._chunk_rows = chunk_rows
        self._cctx = threading.local()
        self._zstd = zstandard
        self._pending: list[pl.DataFrame] = []  # rows not encoded yet
        self._npending = 0
        self._blobs: list = []  # futures of encoded chunks, in order
        self._tables: list = []  # Table rows not encoded yet: (table, start, stop)
        self._kind = None  # "frame" or "table": what the rows came as
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="kmemdes-kmt")

    def _encode(self, part: pl.DataFrame | list) -> bytes:
        cctx = getattr(self._cctx, "c", None)
        if cctx is None:
            cctx = self._cctx.c = self._zstd.ZstdCompressor(level=_ZSTD_LEVEL)
        return _encode_chunk(part, cctx)

    def add(self, frame: pl.DataFrame | Table) -> None:
        """The next rows of the table (the canonical schema; a String column may come
        dictionary-encoded as an ``Enum`` of its strings, which encodes faster), or a
        :class:`~kmemdes.trace._columns.Table` (numpy columns, encoded as they are: no
        Polars frame is built); frames and Tables do not mix in one file."""
        if isinstance(frame, Table):
            self._add_table(frame)
            return
        _check_rows_schema(frame, self.path)
        if not frame.height:
            return
        if self._kind == "table":
            raise ValueError(f"{self.path}: a frame's rows added after a Table's")
        self._kind = "frame"
        self.rows += frame.height
        self._pending.append(frame)
        self._npending += frame.height
        while self._npending >= self._chunk_rows:
            self._submit(self._chunk_rows)

    def _add_table(self, table: Table) -> None:
        if self._kind == "frame":
            raise ValueError(f"{self.path}: a Table's rows added after a frame's")
        self._kind = "table"
        if not table.height:
            return
        self.rows += table.height
        self._tables.append((table, 0, table.height))
        self._npending += table.height
        while self._npending >= self._chunk_rows:
            self._submit(self._chunk_rows)

    def _submit_table(self, n: int) -> None:
        """The first ``n`` pending Table rows as one chunk."""
        pieces, left = [], n
        while left:
            table, start, stop = self._tables[0]
            take = min(left, stop - start)
            pieces.append((table, start, start + take))
            left -= take
            if start + take == stop:
                self._tables.pop(0)
            else:
                self._tables[0] = (table, start + take, stop)
        self._npending -= n
        self._blobs.append(self._pool.submit(self._encode, pieces))

    def _submit(self, n: int) -> None:
        if self._kind == "table":
            self._submit_table(n)
            return
        part = pl.concat(self._pending, how="vertical", rechunk=False) if len(self._pending) > 1 else self._pending[0]
        self._blobs.append(self._pool.submit(self._encode, part.slice(0, n)))
        rest = part.slice(n)
        self._pending = [rest] if rest.height else []
        self._npending = rest.height

    def close(self, header: dict) -> Path:
        """Encode the last rows, write the file (``header``: :func:`header_of`
        of the trace, whose row count is set here) and return its path."""
        try:
            if self._npending:
                self._submit(self._npending)
            header = dict(header, rows=self.rows, chunks=len(self._blobs))

            def write(f) -> None:
                crc = 0
                for blob in (KMT_MAGIC, msgpack.packb(header, use_bin_type=True)):
                    f.write(blob)
                    crc = zlib.crc32(blob, crc)
                for fut in self._blobs:
                    blob = fut.result()
                    f.write(blob)
                    crc = zlib.crc32(blob, crc)
                f.write(msgpack.packb({"end": True, "rows": self.rows, "crc32": crc}, use_bin_type=True))

            atomic_write(self.path, write)  # an OSError is a one-line KmemdesError naming the path
            return self.path
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop what was encoded; nothing is written."""
        for fut in self._blobs:
            fut.cancel()
        self._pool.shutdown(wait=True)
        self._blobs, self._pending, self._tables = [], [], []


def write_kmt(trace: Trace, path, chunk_rows: int = _CHUNK_ROWS) -> Path:
    """Write a trace as ``.kmt`` (atomically).  Returns the path.

    >>> import tempfile, os
    >>> from kmemdes.trace.reader import read_trace
    >>> t = read_trace(Path(__file__).resolve().parents[2] / "traces" / "a_idle_stream")
    >>> d = tempfile.mkdtemp(); p = write_kmt(t, os.path.join(d, "a.kmt"))
    >>> u = read_kmt(p)
    >>> u.events.equals(t.events), u.meta["format"], u.meta["source_format"], u.meta["capture"]["name"]
    (True, 'kmt', 'ftrace', 'a_idle_stream')
    """
    writer = KmtWriter(path, chunk_rows)
    try:
        writer.add(trace.events)
    except BaseException:
        writer.abort()
        raise
    return writer.close(header_of(trace))


def convert_trace(source, path, strict: bool = False, progress: Progress | None = None) -> tuple[Path, Trace, int]:
    """``kmemdes convert``: any trace :func:`~kmemdes.trace.reader.read_trace`
    reads, written as ``.kmt`` or Parquet (by ``path``'s extension).  Returns
    ``(path, trace, rows)``; a text trace is written as it is parsed (its
    rows are not kept: the trace's table is then empty)."""
    from kmemdes.trace.reader import read_trace

    path = Path(path)
    if path.suffix.lower() != ".kmt":
        t = read_trace(source, strict=strict, progress=progress)
        return write_parquet(t, path), t, t.events.height
    writer = KmtWriter(path)
    try:
        t = read_trace(source, strict=strict, progress=progress, sink=writer.add)
        writer.add(t.events)  # formats read whole (empty for text, handed over chunk by chunk)
    except BaseException:
        writer.abort()
        raise
    if progress is not None:
        progress.stage(f"writing {path.name}")
    return writer.close(header_of(t)), t, writer.rows


def read_kmt(path, columns: tuple[str, ...] | None = None) -> Trace:
    """Load a ``.kmt`` file (see the module docstring for the layout).

    ``columns``: decode only these columns of the event table (in this order).
    """
    import zstandard

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise KmemdesError(f"{path}: cannot read: {e.strerror or e}") from None
    if not data.startswith(KMT_MAGIC):
        raise KmemdesError(f"{path}: not a .kmt file (bad magic)")
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=len(data) + 1, strict_map_key=False)
    unpacker.feed(memoryview(data)[len(KMT_MAGIC):])
    try:
        header = next(unpacker)
    except (StopIteration, ValueError, TypeError, msgpack.UnpackException) as e:
        raise KmemdesError(f"{path}: cannot read the .kmt header ({e or 'file cut short'})") from None
    blobs = []
    end = None
    end_at = 0
    try:
        while True:
            end_at = len(KMT_MAGIC) + unpacker.tell()
            obj = next(unpacker, None)
            if obj is None:
                break
            if isinstance(obj, dict) and obj.get("end"):
                end = obj
                break
            blobs.append((obj["rows"], obj["z"]))
    except (ValueError, KeyError, TypeError, msgpack.UnpackException) as e:
        raise KmemdesError(f"{path}: corrupt .kmt chunk {len(blobs) + 1} ({e})") from None
    if end is None:
        raise KmemdesError(f"{path}: .kmt file cut short after {len(blobs)} of {header.get('chunks')} chunks")
    if end.get("crc32") != zlib.crc32(memoryview(data)[:end_at]):
        raise KmemdesError(f"{path}: .kmt file damaged (CRC-32 mismatch)")
    # the header is read only once the CRC (which covers it) says it is what was written
    if not isinstance(header, dict) or not isinstance(header.get("kmt"), int):
        raise KmemdesError(f"{path}: bad .kmt header")
    if header["kmt"] > KMT_VERSION:
        raise KmemdesError(f"{path}: .kmt version {header['kmt']} is newer than this kmemdes reads ({KMT_VERSION})")
    if header.get("schema") != SCHEMA_VERSION:
        raise KmemdesError(f"{path}: event schema version {header.get('schema')} (this kmemdes: {SCHEMA_VERSION})")
    want = [[name, str(dtype)] for name, dtype in EVENT_SCHEMA.items()]
    if header.get("columns") != want:
        raise KmemdesError(f"{path}: .kmt columns differ from this kmemdes's event schema")
    if not isinstance(header.get("meta") or {}, dict) or not isinstance(header.get("problems") or {}, dict):
        raise KmemdesError(f"{path}: bad .kmt header")
    total = sum(r for r, _ in blobs)
    if total != end.get("rows") or total != header.get("rows"):
        raise KmemdesError(f"{path}: .kmt row count mismatch ({total} rows in chunks, {end.get('rows')} expected)")

    schema = EVENT_SCHEMA if columns is None else {c: EVENT_SCHEMA[c] for c in columns}

    def decode(item) -> pl.DataFrame:
        rows, blob = item
        try:
            cols = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(blob), raw=False, strict_map_key=False)
            return pl.DataFrame([_decode_column(name, dtype, cols.get(name), rows) for name, dtype in schema.items()],
                                schema=schema)
        except Exception as e:  # noqa: BLE001 - any decoding failure of a chunk the CRC accepted
            raise KmemdesError(f"{path}: corrupt .kmt chunk ({type(e).__name__}: {e})") from None

    if len(blobs) > 1:
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            frames = list(pool.map(decode, blobs))
    else:
        frames = [decode(b) for b in blobs]
    events = pl.concat(frames, how="vertical", rechunk=False) if frames else pl.DataFrame(schema=schema)
    meta = dict(header.get("meta") or {})
    meta["source_format"] = header.get("source_format")
    meta["converted_from"] = header.get("source")
    meta["format"] = "kmt"
    meta["source"] = str(path)
    return Trace(events=events, meta=meta, problems=dict(header.get("problems") or {}))


# --------------------------------------------------------------------------- Parquet


def _first_line(e: BaseException) -> str:
    return " ".join(str(e).split("\n")[0].split())[:200]


@contextlib.contextmanager
def _native_stderr_captured():
    """Send what native code writes to file descriptor 2 (a Rust panic message and backtrace of the
    Parquet reader, which Python then sees as a ``PanicException``) to a temporary file for the
    duration, so an error stays one line; what was written there is kept only on success."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        ok = False
        try:
            yield
            ok = True
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if ok:  # not a failure: pass on what native code wrote (warnings)
                tmp.seek(0)
                text = tmp.read()
                if text:
                    os.write(2, text)


_DIGEST_SEED = 0x6B6D656D64657331


def column_digests(events: pl.DataFrame) -> dict[str, str]:
    """Per column, the XOR of Polars' hash of every value (nulls included): what ``read_parquet``
    compares to find flipped bytes Parquet itself does not check.  Polars' hash is stable within a
    Polars version only, so the digests are compared only when the reader's version is the writer's.

    >>> column_digests(pl.DataFrame({"a": [1, 2]})) == column_digests(pl.DataFrame({"a": [2, 1]}))
    True
    >>> column_digests(pl.DataFrame({"a": [1, 2]})) == column_digests(pl.DataFrame({"a": [1, 3]}))
    False
    """
    h = events.select(pl.all().hash(seed=_DIGEST_SEED))
    return {c: f"{int(np.bitwise_xor.reduce(h[c].to_numpy())) if h.height else 0:016x}" for c in h.columns}


def write_parquet(trace: Trace, path) -> Path:
    """Write the event table as Parquet (atomically), the header as JSON in
    the key-value metadata under ``kmemdes``, and :func:`column_digests` with the
    Polars version under ``kmemdes_digest``."""
    path = Path(path)
    _check_schema(trace.events, path)
    header = header_of(trace)
    text = json.dumps(header, sort_keys=True)
    digest = json.dumps({"polars": pl.__version__, "rows": trace.events.height,
                         "columns": column_digests(trace.events)}, sort_keys=True)

    def write(f) -> None:
        trace.events.write_parquet(f, compression="zstd", metadata={"kmemdes": text, "kmemdes_digest": digest})

    atomic_write(path, write)  # an OSError is a one-line KmemdesError naming the path
    return path


def read_parquet(path, columns: tuple[str, ...] | None = None) -> Trace:
    """Load a Parquet event table written by :func:`write_parquet` (or any
    Parquet file with the canonical columns); ``columns``: read only these."""
    path = Path(path)
    try:
        with _native_stderr_captured():
            kv = pl.read_parquet_metadata(path)
            names = pl.read_parquet_schema(path)
    except BaseException as e:  # noqa: BLE001 - polars raises several types for bad files, and Rust panics
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise KmemdesError(f"{path}: cannot read Parquet ({type(e).__name__}: {_first_line(e)})") from None
    missing = [c for c in EVENT_SCHEMA if c not in names]
    if missing:
        raise KmemdesError(f"{path}: not a kmemdes event table (missing columns: {', '.join(missing[:5])})")
    try:
        with _native_stderr_captured():
            events = pl.read_parquet(path, columns=list(columns) if columns is not None else None)
    except BaseException as e:  # noqa: BLE001 - a damaged page can make the reader panic
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise KmemdesError(f"{path}: cannot read Parquet ({type(e).__name__}: {_first_line(e)})") from None
    header = {}
    try:
        if "kmemdes" in kv:
            header = json.loads(kv["kmemdes"])
        digest = json.loads(kv["kmemdes_digest"]) if "kmemdes_digest" in kv else None
        if not isinstance(header, dict) or not isinstance(digest, (dict, type(None))):
            raise ValueError
    except ValueError:
        raise KmemdesError(f"{path}: bad kmemdes metadata in the Parquet file") from None
    if digest is not None and digest.get("polars") == pl.__version__:
        want = digest.get("columns") or {}
        if digest.get("rows") != events.height or any(
                want.get(c) != v for c, v in column_digests(events).items()):
            raise KmemdesError(f"{path}: Parquet file damaged (its values differ from the digest written "
                               "with them)")
    schema = EVENT_SCHEMA if columns is None else {c: EVENT_SCHEMA[c] for c in columns}
    if events.schema != pl.Schema(schema):
        events = events.select([pl.col(c).cast(t) for c, t in schema.items()])
    meta = dict(header.get("meta") or {})
    meta["source_format"] = header.get("source_format")
    meta["converted_from"] = header.get("source")
    meta["format"] = "parquet"
    meta["source"] = str(path)
    return Trace(events=events, meta=meta, problems=dict(header.get("problems") or {}))
