"""trace-cmd ``trace.dat`` (file versions 6 and 7) -> the canonical event table.

A pure-Python reader of the binary file that ``trace-cmd record`` / ``extract``
write, following trace-cmd's ``lib/trace-cmd/trace-input.c`` (file layout,
``Documentation/trace-cmd/trace-cmd.dat.v6.5.txt`` and ``.v7.5.txt``) and
libtraceevent's ``src/kbuffer-parse.c`` (ring-buffer sub-buffer pages) and
``src/event-parse.c`` (how ``trace-cmd report`` prints a record).  trace-cmd
itself is never called.

What is read:

- the header (magic ``17 08 44 "tracing"``, version, endianness, long size,
  page size) and, in version 7, the zstd/none compression of sections and the
  option sections chained by ``DONE`` offsets;
- ``header_page`` (where ``commit`` and ``data`` sit in a sub-buffer page),
  ``header_event`` (the 5-bit ``type_len`` / 27-bit ``time_delta`` header),
  the ftrace and event ``format`` files (field offsets, sizes, signedness),
  kallsyms (for ``call_site`` symbols), saved cmdlines (pid -> comm) and the
  options (``BUFFER`` instances, ``CPUSTAT``, ``TRACECLOCK``, ``UNAME``...);
- the flyrecord data of every buffer (top level and instances) and CPU,
  decompressing version-7 chunks.

Decoding is vectorised: every ring-buffer page is walked at once with numpy
(one step per event slot of the page, all pages in lock step), the records of
one event id are decoded field by field with gathers over the file bytes, and
strings, symbols and GFP names are formatted once per distinct value.  Rows
come out in the order ``trace-cmd report`` prints them: per-CPU streams merged
by timestamp, the lowest stream (top buffer first, then CPU number) first on
equal timestamps (``tracecmd_iterate_events_multi``).  Values are those the
report prints: ``call_site`` as ``func+0xoff`` (libtraceevent
``print_function``), ``comm`` from the saved cmdlines (``<idle>`` for pid 0,
``<...>`` when unknown), ``page`` = pfn (the tool cannot know vmemmap), GFP
masks printed with :func:`kmemdes.mm.gfp.format_gfp`.  Events without typed
columns get their printed body in ``args`` (:mod:`kmemdes.trace.printfmt`).

A ``.zst``-compressed file (zstd magic, any name) is decompressed on the fly.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from kmemdes.errors import KmemdesError
from kmemdes.mm.gfp import format_gfp
from kmemdes.trace.printfmt import render_print_fmt
from kmemdes.trace.reader import Trace
from kmemdes.trace.schema import EVENT_SCHEMA, EventKind, conform

__all__ = ["TRACEDAT_MAGIC", "is_tracedat", "read_tracedat"]

TRACEDAT_MAGIC = b"\x17\x08\x44tracing"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# option / section ids (trace-cmd lib/trace-cmd/include/trace-cmd.h, enum tracecmd_option_id)
_OPT_DONE, _OPT_DATE, _OPT_CPUSTAT, _OPT_BUFFER, _OPT_TRACECLOCK, _OPT_UNAME = 0, 1, 2, 3, 4, 5
_OPT_OFFSET, _OPT_CPUCOUNT, _OPT_VERSION, _OPT_TRACEID, _OPT_TSC2NSEC = 7, 8, 9, 11, 14
_OPT_STRINGS, _OPT_HEADER_INFO, _OPT_FTRACE_EVENTS, _OPT_EVENT_FORMATS = 15, 16, 17, 18
_OPT_KALLSYMS, _OPT_PRINTK, _OPT_CMDLINES, _OPT_BUFFER_TEXT = 19, 20, 21, 22
_SEC_FL_COMPRESS = 1

# ring-buffer event header (kernel/trace/ring_buffer.c, kbuffer-parse.c)
_TYPE_PADDING, _TYPE_TIME_EXTEND, _TYPE_TIME_STAMP = 29, 30, 31
_TS_SHIFT = 27
_TS_MSB = np.uint64(0xF8 << 56)
_MISSING_EVENTS = 1 << 31
_MISSING_STORED = 1 << 30
_COMMIT_MASK = (1 << 27) - 1
_U64_MAX = (1 << 64) - 1
_GFP_ACCOUNT = 0x400000

_MAX_PROBLEM_LINES = 10


class _Bad(Exception):
    """A structural error at a byte offset of the file (becomes KmemdesError)."""

    def __init__(self, offset: int, what: str):
        super().__init__(what)
        self.offset = offset
        self.what = what


# --------------------------------------------------------------------------- bytes


def is_tracedat(head: bytes) -> bool:
    """Do these first bytes start a trace-cmd data file?

    >>> is_tracedat(b"\\x17\\x08\\x44tracing7\\x00"), is_tracedat(b"# tracer: nop")
    (True, False)
    """
    return head.startswith(TRACEDAT_MAGIC)


def _load_bytes(path: Path) -> bytes:
    """The file's bytes, zstd-decompressed when the file starts with the zstd magic."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(0)
            if head != _ZSTD_MAGIC:
                return f.read()
            import zstandard

            dctx = zstandard.ZstdDecompressor(max_window_size=1 << 31)
            try:
                with dctx.stream_reader(f, read_across_frames=True) as r:
                    chunks = []
                    while True:
                        b = r.read(1 << 24)
                        if not b:
                            break
                        chunks.append(b)
            except zstandard.ZstdError as e:
                raise KmemdesError(f"{path}: corrupt zstd data ({e})") from None
            return b"".join(chunks)
    except OSError as e:
        raise KmemdesError(f"{path}: cannot read: {e.strerror or e}") from None


class _Cursor:
    """Sequential reads of numbers and strings in the file's byte order.

    ``base`` is the file offset of ``data[0]`` (for error messages); a
    decompressed section has ``base`` = its file offset and ``packed`` = True.
    """

    __slots__ = ("data", "pos", "big", "base", "packed")

    def __init__(self, data: bytes, pos: int = 0, big: bool = False, base: int = 0, packed: bool = False):
        self.data = data
        self.pos = pos
        self.big = big
        self.base = base
        self.packed = packed

    def where(self) -> int:
        return self.base if self.packed else self.base + self.pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _Bad(self.where(), f"truncated {what} (needs {n} bytes, {len(self.data) - self.pos} left)")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def num(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big" if self.big else "little")

    def cstr(self, what: str, limit: int = 1 << 20) -> str:
        end = self.data.find(b"\0", self.pos, self.pos + limit)
        if end < 0:
            raise _Bad(self.where(), f"unterminated {what}")
        s = self.data[self.pos : end].decode("utf-8", "replace")
        self.pos = end + 1
        return s


# --------------------------------------------------------------------------- formats


@dataclass
class _Field:
    """One ``field:`` line of an event format file."""

    name: str
    offset: int
    size: int
    signed: bool
    data_loc: bool = False  # __data_loc: u32 = (len << 16) | offset
    rel_loc: bool = False  # __rel_loc: offset relative to the end of the field
    is_string: bool = False  # char[...] (static array, or dynamic string)
    elem: int = 0  # element size of an array (0: not an array)


@dataclass
class _Event:
    """A parsed ``format`` file: id, system, name, fields, print format."""

    id: int
    system: str
    name: str
    fields: dict[str, _Field]
    common: dict[str, _Field]
    print_fmt: str

    def width(self) -> int:
        """Bytes the fixed part of a record needs."""
        return max((f.offset + f.size for f in self.fields.values()), default=8)


_FIELD_RE = re.compile(r"field:(.*?);\s*offset:(\d+);\s*size:(\d+);(?:\s*signed:(\d+);)?")
_ID_RE = re.compile(rb"\nID:\s*(\d+)")
_NAME_RE = re.compile(rb"^name:\s*(\S+)")


def _parse_format(text: str, system: str) -> _Event:
    """Parse one ``events/<system>/<event>/format`` text (libtraceevent ``tep_parse_event``)."""
    name_m = re.search(r"^name:\s*(\S+)", text, re.M)
    id_m = re.search(r"^ID:\s*(\d+)", text, re.M)
    if not name_m or not id_m:
        raise ValueError("format without name or ID")
    fields: dict[str, _Field] = {}
    common: dict[str, _Field] = {}
    for m in _FIELD_RE.finditer(text):
        decl, off, size, signed = m.group(1).strip(), int(m.group(2)), int(m.group(3)), m.group(4)
        data_loc = decl.startswith("__data_loc")
        rel_loc = decl.startswith("__rel_loc")
        arr = re.search(r"\[(\d*)\]\s*$", decl)
        base = decl[: arr.start()] if arr else decl
        ident = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", base)
        if not ident:
            continue
        fname = ident[-1]
        is_char = bool(re.search(r"\bchar\b", base)) and (arr is not None or data_loc or rel_loc)
        elem = 0
        if arr is not None and not (data_loc or rel_loc):
            n = int(arr.group(1)) if arr.group(1) else 0
            elem = size // n if n else 1
        f = _Field(fname, off, size, bool(int(signed)) if signed else False, data_loc, rel_loc, is_char, elem)
        (common if fname.startswith("common_") else fields)[fname] = f
    pm = re.search(r"^print fmt:\s*(.*)$", text, re.M | re.S)
    return _Event(int(id_m.group(1)), system, name_m.group(1), fields, common, pm.group(1).strip() if pm else "")


# --------------------------------------------------------------------------- file model


@dataclass
class _Buffer:
    """One traced buffer (the top level ``""`` or an instance): per-CPU page data."""

    name: str
    clock: str = ""
    page_size: int = 0
    cpus: list = field(default_factory=list)  # [(cpu, bytes)]


@dataclass
class _File:
    """Everything read from the metadata of a trace.dat."""

    path: Path
    version: int = 0
    big: bool = False
    long_size: int = 8
    page_size: int = 4096
    compression: str = "none"
    header_page: str = ""
    header_event: str = ""
    formats: dict = field(default_factory=dict)  # id -> (system, raw text)
    kallsyms: bytes = b""
    printk: str = ""
    cmdlines: bytes = b""
    cpus: int = 0
    options: dict = field(default_factory=dict)
    cpustats: list = field(default_factory=list)
    buffers: list = field(default_factory=list)
    ts_offset: int = 0
    tsc2nsec: tuple | None = None
    problems: dict = field(default_factory=dict)


def _problem(problems: dict, kind: str, where: int, example: str, count: int = 1) -> None:
    p = problems.setdefault(kind, {"count": 0, "lines": [], "example": example})
    p["count"] += count
    if len(p["lines"]) < _MAX_PROBLEM_LINES:
        p["lines"].append(where)


def _decompress(tf: _File, blob: bytes, where: int, what: str, size: int) -> bytes:
    """Decompress one block (``tracecmd_uncompress_block``): u32 zsize, u32 size, data."""
    if tf.compression in ("none", ""):
        return blob
    if tf.compression != "zstd":
        raise _Bad(where, f"{what}: unsupported compression {tf.compression!r}")
    import zstandard

    try:
        out = zstandard.ZstdDecompressor().decompress(blob, max_output_size=max(size, 1))
    except zstandard.ZstdError as e:
        raise _Bad(where, f"{what}: corrupt zstd block ({e})") from None
    return out


def _read_block(tf: _File, cur: _Cursor, what: str) -> bytes:
    zsize = cur.num(4, f"{what} compressed size")
    size = cur.num(4, f"{what} size")
    at = cur.where()
    blob = cur.take(zsize, what)
    out = _decompress(tf, blob, at, what, size)
    if len(out) != size:
        raise _Bad(at, f"{what}: decompressed to {len(out)} bytes, header says {size}")
    return out


def _read_header_info(tf: _File, cur: _Cursor) -> None:
    """``read_header_files``: header_page and header_event texts."""
    if cur.take(12, "header_page tag") != b"header_page\0":
        raise _Bad(cur.where() - 12, "expected 'header_page'")
    n = cur.num(8, "header_page size")
    tf.header_page = cur.take(n, "header_page").decode("utf-8", "replace")
    if cur.take(13, "header_event tag") != b"header_event\0":
        raise _Bad(cur.where() - 13, "expected 'header_event'")
    n = cur.num(8, "header_event size")
    tf.header_event = cur.take(n, "header_event").decode("utf-8", "replace")


def _read_ftrace_formats(tf: _File, cur: _Cursor) -> None:
    count = cur.num(4, "ftrace format count")
    for _ in range(count):
        n = cur.num(8, "ftrace format size")
        _add_format(tf, cur.take(n, "ftrace format"), "ftrace", cur)


def _read_event_formats(tf: _File, cur: _Cursor) -> None:
    systems = cur.num(4, "event system count")
    for _ in range(systems):
        system = cur.cstr("event system name")
        count = cur.num(4, "event count")
        for _ in range(count):
            n = cur.num(8, "event format size")
            _add_format(tf, cur.take(n, "event format"), system, cur)


def _add_format(tf: _File, raw: bytes, system: str, cur: _Cursor) -> None:
    m = _ID_RE.search(raw)
    if m is None:
        _problem(tf.problems, "format_without_id", cur.where(), raw[:60].decode("utf-8", "replace"))
        return
    tf.formats[int(m.group(1))] = (system, raw)


def _read_kallsyms(tf: _File, cur: _Cursor) -> None:
    n = cur.num(4, "kallsyms size")
    tf.kallsyms = cur.take(n, "kallsyms")


def _read_printk(tf: _File, cur: _Cursor) -> None:
    n = cur.num(4, "printk formats size")
    tf.printk = cur.take(n, "printk formats").decode("utf-8", "replace")


def _read_cmdlines(tf: _File, cur: _Cursor) -> None:
    n = cur.num(8, "saved cmdlines size")
    tf.cmdlines = cur.take(n, "saved cmdlines")


def _handle_option(tf: _File, opt: int, data: bytes, at: int, sections: dict) -> None:
    """One option (``handle_options``)."""
    c = _Cursor(data, 0, tf.big, at)
    text = data.split(b"\0", 1)[0].decode("utf-8", "replace")
    if opt == _OPT_DATE:
        tf.options["date"] = text
    elif opt == _OPT_OFFSET:
        try:
            tf.ts_offset += int(text, 0)
        except ValueError:
            _problem(tf.problems, "bad_option", at, f"OFFSET {text!r}")
        tf.options["offset"] = text
    elif opt == _OPT_CPUSTAT:
        tf.cpustats.append(text)
    elif opt in (_OPT_BUFFER, _OPT_BUFFER_TEXT):
        off = c.num(8, "buffer offset")
        name = c.cstr("buffer name")
        buf = {"name": name, "offset": off, "latency": opt == _OPT_BUFFER_TEXT, "cpus": []}
        if tf.version >= 7:
            buf["clock"] = c.cstr("buffer clock")
            if opt == _OPT_BUFFER:
                buf["page_size"] = c.num(4, "buffer page size")
                ncpu = c.num(4, "buffer cpu count")
                for _ in range(ncpu):
                    cpu = c.num(4, "buffer cpu id")
                    buf["cpus"].append((cpu, c.num(8, "cpu data offset"), c.num(8, "cpu data size")))
        tf.options.setdefault("buffers", []).append(buf)
    elif opt == _OPT_TRACECLOCK:
        tf.options["trace_clock"] = text
    elif opt == _OPT_UNAME:
        tf.options["uname"] = text
    elif opt == _OPT_VERSION:
        tf.options["version"] = text
    elif opt == _OPT_CPUCOUNT:
        tf.cpus = c.num(4, "cpu count")
    elif opt == _OPT_TRACEID:
        tf.options["trace_id"] = f"{c.num(8, 'trace id'):#x}"
    elif opt == _OPT_TSC2NSEC:
        tf.tsc2nsec = (c.num(4, "tsc mult"), c.num(4, "tsc shift"), c.num(8, "tsc offset"))
    elif opt in (_OPT_HEADER_INFO, _OPT_FTRACE_EVENTS, _OPT_EVENT_FORMATS, _OPT_KALLSYMS, _OPT_PRINTK, _OPT_CMDLINES):
        sections[opt] = c.num(8, "section offset")


def _read_options_v6(tf: _File, cur: _Cursor, sections: dict) -> None:
    while True:
        opt = cur.num(2, "option id")
        if opt == _OPT_DONE:
            return
        size = cur.num(4, "option size")
        at = cur.where()
        _handle_option(tf, opt, cur.take(size, "option data"), at, sections)


def _read_cpu_offsets(tf: _File, cur: _Cursor, ncpu: int) -> list:
    return [(cpu, cur.num(8, "cpu data offset"), cur.num(8, "cpu data size")) for cpu in range(ncpu)]


def _cpu_pages_v6(tf: _File, data: bytes, entries: list) -> list:
    out = []
    for cpu, off, size in entries:
        if size and off + size > len(data):
            raise _Bad(off, f"cpu{cpu} data ({size} bytes) runs past the end of the file ({len(data)} bytes)")
        out.append((cpu, data[off : off + size]))
    return out


def _parse_v6(tf: _File, data: bytes, cur: _Cursor) -> None:
    """Version 6: fixed order of header parts, then options and flyrecord offsets."""
    sections: dict = {}
    _read_header_info(tf, cur)
    _read_ftrace_formats(tf, cur)
    _read_event_formats(tf, cur)
    _read_kallsyms(tf, cur)
    _read_printk(tf, cur)
    _read_cmdlines(tf, cur)
    tf.cpus = cur.num(4, "cpu count")
    ncpu = tf.cpus
    tag = cur.take(10, "options/flyrecord tag")
    if tag.startswith(b"options"):
        _read_options_v6(tf, cur, sections)
        tag = cur.take(10, "flyrecord tag")
    if tag.startswith(b"latency"):
        raise _Bad(cur.where() - 10, "latency (text) trace.dat files are not supported; record with flyrecord")
    if not tag.startswith(b"flyrecord"):
        raise _Bad(cur.where() - 10, f"expected 'flyrecord', got {tag!r}")
    top = _read_cpu_offsets(tf, cur, ncpu)
    buffers = [_Buffer("", tf.options.get("trace_clock_name", ""), tf.page_size, _cpu_pages_v6(tf, data, top))]
    for b in tf.options.get("buffers", []):
        c = _Cursor(data, b["offset"], tf.big)
        tag = c.take(10, f"buffer {b['name']} tag")
        if tag.startswith(b"options"):
            _read_options_v6(tf, c, sections)
            tag = c.take(10, f"buffer {b['name']} flyrecord tag")
        if not tag.startswith(b"flyrecord"):
            raise _Bad(c.where() - 10, f"buffer {b['name']}: expected 'flyrecord', got {tag!r}")
        ent = _read_cpu_offsets(tf, c, ncpu)
        buffers.append(_Buffer(b["name"], "", tf.page_size, _cpu_pages_v6(tf, data, ent)))
    tf.buffers = buffers


def _section(tf: _File, data: bytes, offset: int, want: int, what: str) -> _Cursor:
    """Open a version-7 section: header (id, flags, string id, size), maybe a compressed block."""
    cur = _Cursor(data, offset, tf.big)
    sec_id = cur.num(2, f"{what} section id")
    flags = cur.num(2, f"{what} section flags")
    cur.num(4, f"{what} section description")
    size = cur.num(8, f"{what} section size")
    if sec_id != want:
        raise _Bad(offset, f"{what}: section id {sec_id}, expected {want}")
    if cur.pos + size > len(data):
        raise _Bad(offset, f"{what} section ({size} bytes) runs past the end of the file")
    if flags & _SEC_FL_COMPRESS:
        at = cur.where()
        return _Cursor(_read_block(tf, cur, what), 0, tf.big, at, packed=True)
    return cur


def _parse_v7(tf: _File, data: bytes, cur: _Cursor) -> None:
    """Version 7: option sections chained by DONE offsets; other parts are sections."""
    tf.compression = cur.cstr("compression name")
    tf.options["compression_version"] = cur.cstr("compression version")
    next_opts = cur.num(8, "options offset")
    sections: dict = {}
    seen = set()
    while next_opts:
        if next_opts in seen:
            raise _Bad(next_opts, "options sections form a loop")
        seen.add(next_opts)
        oc = _section(tf, data, next_opts, _OPT_DONE, "options")
        next_opts = 0
        while True:
            opt = oc.num(2, "option id")
            size = oc.num(4, "option size")
            at = oc.where()
            body = oc.take(size, "option data")
            if opt == _OPT_DONE:
                next_opts = int.from_bytes(body[:8], "big" if tf.big else "little") if size >= 8 else 0
                break
            _handle_option(tf, opt, body, at, sections)
    readers = [
        (_OPT_HEADER_INFO, _read_header_info, "header info"),
        (_OPT_FTRACE_EVENTS, _read_ftrace_formats, "ftrace formats"),
        (_OPT_EVENT_FORMATS, _read_event_formats, "event formats"),
        (_OPT_KALLSYMS, _read_kallsyms, "kallsyms"),
        (_OPT_PRINTK, _read_printk, "printk formats"),
        (_OPT_CMDLINES, _read_cmdlines, "saved cmdlines"),
    ]
    for sid, fn, what in readers:
        if sid in sections:
            fn(tf, _section(tf, data, sections[sid], sid, what))
    if _OPT_HEADER_INFO not in sections:
        raise _Bad(0, "no header info section")
    tf.buffers = []
    for b in tf.options.get("buffers", []):
        if b["latency"]:
            _problem(tf.problems, "latency_buffer_skipped", b["offset"], f"buffer {b['name']!r} holds text")
            continue
        head = _Cursor(data, b["offset"], tf.big)
        head.num(2, "buffer section id")
        flags = head.num(2, "buffer section flags")
        pages = []
        for cpu, off, size in b["cpus"]:
            if size == 0:
                pages.append((cpu, b""))
                continue
            if off + size > len(data):
                raise _Bad(off, f"buffer {b['name']!r} cpu{cpu} data ({size} bytes) runs past the end of the file")
            if flags & _SEC_FL_COMPRESS:
                c = _Cursor(data, off, tf.big)
                n = c.num(4, "chunk count")
                parts = []
                for _ in range(n):
                    parts.append(_read_block(tf, c, f"cpu{cpu} data chunk"))
                pages.append((cpu, b"".join(parts)))
            else:
                pages.append((cpu, data[off : off + size]))
        tf.buffers.append(_Buffer(b["name"], b.get("clock", ""), b.get("page_size") or tf.page_size, pages))


def _parse_file(path: Path, data: bytes) -> _File:
    tf = _File(path)
    cur = _Cursor(data)
    if not is_tracedat(data[:10]):
        raise _Bad(0, "not a trace-cmd data file (no 17 08 44 'tracing' magic)")
    cur.take(10, "magic")
    ver = cur.cstr("version", 16)
    if not ver.isdigit():
        raise _Bad(10, f"bad version string {ver!r}")
    tf.version = int(ver)
    if tf.version not in (6, 7):
        raise _Bad(10, f"trace.dat version {tf.version} not supported (6 and 7 are)")
    tf.big = cur.num(1, "endian flag") == 1
    cur.big = tf.big
    tf.long_size = cur.num(1, "long size")
    tf.page_size = cur.num(4, "page size")
    if tf.long_size not in (4, 8) or tf.page_size < 64 or tf.page_size > (1 << 24) or tf.page_size % 8:
        raise _Bad(cur.pos - 5, f"bad long size {tf.long_size} or page size {tf.page_size}")
    if tf.version == 6:
        _parse_v6(tf, data, cur)
    else:
        _parse_v7(tf, data, cur)
    clock = tf.options.get("trace_clock", "")
    m = re.search(r"\[([^\]]+)\]", clock)
    tf.options["clock"] = m.group(1) if m else ""
    return tf


# --------------------------------------------------------------------------- ring buffer pages


@dataclass
class _PageLayout:
    """Where the timestamp, commit word and data sit in a sub-buffer page (header_page)."""

    ts_off: int = 0
    commit_off: int = 8
    commit_size: int = 8
    data_off: int = 16


def _page_layout(tf: _File) -> _PageLayout:
    lay = _PageLayout(commit_size=tf.long_size, data_off=8 + tf.long_size)
    for m in _FIELD_RE.finditer(tf.header_page):
        name = m.group(1).split()[-1]
        off, size = int(m.group(2)), int(m.group(3))
        if name == "timestamp":
            lay.ts_off = off
        elif name == "commit":
            lay.commit_off, lay.commit_size = off, size
        elif name == "data":
            lay.data_off = off
    he = tf.header_event
    for key, want in (("padding", _TYPE_PADDING), ("time_extend", _TYPE_TIME_EXTEND), ("time_stamp", _TYPE_TIME_STAMP)):
        m = re.search(rf"{key}\s*:\s*type\s*==\s*(\d+)", he)
        if m and int(m.group(1)) != want:
            raise _Bad(0, f"header_event: {key} type {m.group(1)} is not the {want} this reader knows")
    m = re.search(r"type_len\s*:\s*(\d+)\s*bits", he)
    if he and (m is None or int(m.group(1)) != 5):
        raise _Bad(0, "header_event: ring-buffer event header is not the 5-bit type_len / 27-bit delta form")
    return lay


@dataclass
class _Records:
    """Decoded ring-buffer records in report order (parallel arrays)."""

    off: np.ndarray  # byte offset of the payload in the big buffer
    size: np.ndarray  # payload bytes
    ts: np.ndarray  # ns
    cpu: np.ndarray  # cpu number
    lost: np.ndarray  # >0: a LOST row (n events), -1 unknown count, 0 a real record


def _walk_pages(buf: np.ndarray, big: bool, lay: _PageLayout, pages: np.ndarray, stream: np.ndarray, problems: dict):
    """Walk every page at once (``kbuffer_load_subbuffer`` / ``kbuffer_next_event``).

    Returns per-record arrays in page order (payload offset, payload length,
    timestamp, page index, lost count): a page flagged MISSING_EVENTS gets a
    LOST entry (count, or -1 when not stored) before its first record.
    """
    u32 = buf.view(">u4" if big else "<u4")
    npg = len(pages)
    ts = _read_uint(buf, pages + lay.ts_off, 8, big)
    page_ts0 = ts.copy()
    commit = _read_uint(buf, pages + lay.commit_off, lay.commit_size, big).astype(np.int64)
    size = commit & _COMMIT_MASK
    page_size = lay.page_size_total
    data0 = pages + lay.data_off
    maxdata = page_size - lay.data_off
    over = size > maxdata
    if over.any():
        for i in np.flatnonzero(over)[:_MAX_PROBLEM_LINES]:
            pass
        _problem(problems, "page_commit_too_large", int(pages[np.argmax(over)]), f"commit {int(size[np.argmax(over)])} > {maxdata}", int(over.sum()))
        size = np.where(over, 0, size)
    end = data0 + size
    # lost events (MISSING_EVENTS, MISSING_STORED: the count is a long after the data)
    missing = (commit & _MISSING_EVENTS) != 0
    lost_pages = np.flatnonzero(missing)
    lost_n = np.full(len(lost_pages), -1, np.int64)
    stored = ((commit[lost_pages] & _MISSING_STORED) != 0) & (size[lost_pages] + lay.commit_size <= maxdata)
    if stored.any():
        lp = lost_pages[stored]
        lost_n[stored] = _read_uint(buf, end[lp], lay.commit_size, big).astype(np.int64)
    pos = data0.copy()
    act = np.flatnonzero(pos < end)
    offs, lens, tss, pgs, ranks = [], [], [], [], []
    filled = np.zeros(npg, np.int64)  # records emitted so far per page
    bad_pages = []
    while act.size:
        p = pos[act]
        k = p >> 2
        w = u32[k].astype(np.uint64)
        a0 = u32[k + 1].astype(np.int64)
        tl = (w & np.uint64(31)).astype(np.int64)
        delta = w >> np.uint64(5)
        t = ts[act]
        ext = (a0.astype(np.uint64) << np.uint64(_TS_SHIFT)) + delta
        is_stamp = tl == _TYPE_TIME_STAMP
        is_ext = tl == _TYPE_TIME_EXTEND
        t = np.where(is_stamp, ext | (t & _TS_MSB), t + np.where(is_ext, ext, delta))
        is_data = tl <= 28
        big_ev = tl == 0
        plen = np.where(big_ev, (a0 - 4 + 3) & ~3, tl * 4)
        poff = np.where(big_ev, p + 8, p + 4)
        nxt = np.where(is_data, poff + plen, np.where(tl == _TYPE_PADDING, p + 4 + a0, p + 8))
        e = end[act]
        bad = (nxt <= p) | ((nxt & 3) != 0) | (is_data & ((big_ev & (a0 < 4)) | (nxt > e)))
        bad |= (~is_data) & (tl != _TYPE_PADDING) & (p + 8 > e)
        good = is_data & ~bad
        if good.any():
            offs.append(poff[good])
            lens.append(plen[good])
            tss.append(t[good])
            gp = act[good]
            pgs.append(gp)
            ranks.append(filled[gp])
            filled[gp] += 1
        ts[act] = t
        pos[act] = np.where(bad, e, nxt)
        if bad.any():
            bad_pages.append(act[bad])
        act = act[pos[act] < e]
    if bad_pages:
        bp = np.concatenate(bad_pages)
        _problem(problems, "corrupt_ring_buffer_event", int(pages[bp[0]]), "event header points outside its page", len(bp))
    cat = (lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt))
    off, ln, rts, pg, rank = cat(offs, np.int64), cat(lens, np.int64), cat(tss, np.uint64), cat(pgs, np.int64), cat(ranks, np.int64)
    # place every record at its page-order slot; a page's LOST entry goes first
    has_lost = np.zeros(npg, np.int64)
    has_lost[lost_pages] = 1
    start = np.concatenate(([0], np.cumsum(filled + has_lost)[:-1])) if npg else np.zeros(0, np.int64)
    total = int(filled.sum() + has_lost.sum())
    o_off, o_len, o_ts = np.zeros(total, np.int64), np.zeros(total, np.int64), np.zeros(total, np.uint64)
    o_pg, o_lost = np.zeros(total, np.int64), np.zeros(total, np.int64)
    dest = start[pg] + has_lost[pg] + rank
    o_off[dest], o_len[dest], o_ts[dest], o_pg[dest] = off, ln, rts, pg
    if lost_pages.size:
        ld = start[lost_pages]
        o_ts[ld] = page_ts0[lost_pages]
        o_pg[ld] = lost_pages
        o_lost[ld] = np.where(lost_n == 0, -1, lost_n)
    return o_off, o_len, o_ts, o_pg, o_lost


def _read_uint(buf: np.ndarray, off: np.ndarray, size: int, big: bool) -> np.ndarray:
    """Unsigned integers of ``size`` bytes at byte offsets ``off`` (any alignment), as uint64.

    Ring-buffer payloads are 4-byte aligned, so most fields are read with one
    or two 32-bit gathers; odd offsets fall back to byte gathers.
    """
    off = np.asarray(off, np.int64)
    if off.size == 0:
        return np.zeros(0, np.uint64)
    if size in (1, 2, 4, 8):
        w4 = buf.view(">u4" if big else "<u4")
        sub = off & 3
        if size == 8 and not sub.any():
            k = off >> 2
            lo, hi = w4[k].astype(np.uint64), w4[k + 1].astype(np.uint64)
            if big:
                lo, hi = hi, lo
            return lo | (hi << np.uint64(32))
        if size <= 4 and not ((sub + size) > 4).any():
            word = w4[off >> 2].astype(np.uint64)
            shift = ((4 - sub - size) if big else sub).astype(np.uint64) * np.uint64(8)
            v = word >> shift
            return v if size == 4 else v & np.uint64((1 << (8 * size)) - 1)
    acc = np.zeros(off.shape, np.uint64)
    for i in range(size):
        b = buf[off + i].astype(np.uint64)
        sh = (size - 1 - i) * 8 if big else i * 8
        acc |= b << np.uint64(sh)
    return acc


def _read_field(buf: np.ndarray, off: np.ndarray, f: _Field, big: bool) -> np.ndarray:
    """Field values of the records at payload offsets ``off`` (int64 or uint64)."""
    if f.size not in (1, 2, 4, 8):
        raise ValueError(f"field {f.name} has size {f.size}")
    v = _read_uint(buf, off + f.offset, f.size, big)
    if f.signed:
        if f.size < 8:
            sign = np.uint64(1 << (8 * f.size - 1))
            v = (v ^ sign).astype(np.int64) - np.int64(1 << (8 * f.size - 1))
        else:
            v = v.view(np.int64)
    return v


def _read_strings(buf: np.ndarray, rec_off: np.ndarray, rec_size: np.ndarray, f: _Field, big: bool, problems: dict):
    """Decode a string field (``__data_loc``/``__rel_loc`` char[] or a static char array).

    Returns (codes, values): ``values[codes[i]]`` is record i's string (None
    when its location is outside the record).
    """
    n = len(rec_off)
    if f.data_loc or f.rel_loc:
        loc = _read_uint(buf, rec_off + f.offset, 4, big)
        start = (loc & np.uint64(0xFFFF)).astype(np.int64)
        length = (loc >> np.uint64(16)).astype(np.int64)
        if f.rel_loc:
            start = start + f.offset + f.size
    elif f.size == 0:  # char buf[]: the rest of the record
        start = np.full(n, f.offset, np.int64)
        length = np.maximum(rec_size - f.offset, 0)
    else:
        start = np.full(n, f.offset, np.int64)
        length = np.full(n, f.size, np.int64)
    ok = (start >= 0) & (start + length <= rec_size)
    if not ok.all():
        _problem(problems, "string_outside_record", int(rec_off[np.argmin(ok)]), f"field {f.name}", int((~ok).sum()))
        length = np.where(ok, length, 0)
    codes = np.zeros(n, np.int64)
    values: list = []
    if n == 0:
        return codes, values
    at = rec_off + start
    nw = max(1, min((int(length.max()) + 3) // 4, 1024))
    # the string bytes as 32-bit words (bytes past the length masked), grouped exactly
    words = np.zeros((n, nw), np.uint32)
    for j in range(nw):
        rem = np.clip(length - 4 * j, 0, 4)
        if not rem.any():
            break
        w = _read_uint(buf, np.where(rem > 0, at + 4 * j, 0), 4, False).astype(np.uint32)
        keep = np.where(rem >= 4, np.uint32(0xFFFFFFFF), ((np.uint64(1) << (rem.astype(np.uint64) * np.uint64(8))) - np.uint64(1)).astype(np.uint32))
        words[:, j] = w & keep
    order = np.lexsort(words.T[::-1]) if nw > 1 else np.argsort(words[:, 0], kind="stable")
    sw = words[order]
    newgrp = np.ones(n, np.bool_)
    newgrp[1:] = (sw[1:] != sw[:-1]).any(axis=1)
    grp = np.cumsum(newgrp) - 1
    codes[order] = grp
    for r in order[newgrp]:
        raw = words[r].tobytes()
        values.append(raw.split(b"\0", 1)[0].decode("utf-8", "replace"))
    if not ok.all():
        values.append(None)
        codes[~ok] = len(values) - 1
    return codes, values


# --------------------------------------------------------------------------- symbols and comms


class _Kallsyms:
    """Address -> ``func+0xoff`` as libtraceevent ``print_function`` prints ``%pS``.

    ``tep_parse_kallsyms`` drops absolute symbols (``a``/``A``) and names
    starting with ``$``; the lookup (``func_bcmp``) takes the symbol whose
    address is <= addr and whose successor is > addr; the last symbol matches
    only its exact address; a miss prints ``0x<hex>``.  Among symbols at one
    address the first in the file wins (glibc's stable qsort of a list built
    in reverse, then the bsearch rule above).
    """

    def __init__(self, text: bytes):
        if not text:
            self.addr = np.zeros(0, np.uint64)
            self.names: list = []
            return
        lines = pl.Series("l", text.decode("utf-8", "replace").split("\n"))
        df = pl.DataFrame({"l": lines}).filter(pl.col("l").str.len_bytes() > 19)
        df = df.select(
            pl.col("l").str.extract(r"^([0-9a-fA-F]+) ", 1).str.to_integer(base=16, dtype=pl.UInt64, strict=False).alias("addr"),
            pl.col("l").str.extract(r"^[0-9a-fA-F]+ (\S) ", 1).alias("t"),
            pl.col("l").str.extract(r"^[0-9a-fA-F]+ \S (\S+)", 1).alias("name"),
        ).filter(
            pl.col("addr").is_not_null()
            & pl.col("name").is_not_null()
            & ~pl.col("t").is_in(["a", "A"])
            & ~pl.col("name").str.starts_with("$")
        )
        df = df.with_row_index("i").sort(["addr", "i"], descending=[False, True])  # first-in-file last
        self.addr = df["addr"].to_numpy()
        self.names = df["name"].to_list()

    def format_one(self, addr: int, offset: bool = True) -> str:
        """One address as ``%pS`` (``offset``) or ``%ps`` prints it."""
        s = self.format(np.array([addr], np.uint64))[0]
        return s if offset or s.startswith("0x") else s.rsplit("+", 1)[0]

    def format(self, addrs: np.ndarray) -> list:
        """``func+0xoff`` (or ``0x<hex>``) of each address."""
        out = []
        n = len(self.addr)
        idx = np.searchsorted(self.addr, addrs, side="right") - 1 if n else np.full(len(addrs), -1)
        for a, i in zip(addrs.tolist(), idx.tolist()):
            if i < 0 or (i == n - 1 and a != int(self.addr[i])):
                out.append(f"0x{a:x}")
            else:
                out.append(f"{self.names[i]}+0x{a - int(self.addr[i]):x}")
        return out


# include/linux/trace_events.h (6.13+): enum trace_flag_type
_FL_IRQS_OFF, _FL_RESCHED_LAZY, _FL_RESCHED, _FL_HARDIRQ = 0x01, 0x02, 0x04, 0x08
_FL_SOFTIRQ, _FL_PREEMPT_RESCHED, _FL_NMI, _FL_BH_OFF = 0x10, 0x20, 0x40, 0x80
_RESCHED_CHAR = {
    _FL_RESCHED | _FL_RESCHED_LAZY | _FL_PREEMPT_RESCHED: "B",
    _FL_RESCHED | _FL_PREEMPT_RESCHED: "N",
    _FL_RESCHED_LAZY | _FL_PREEMPT_RESCHED: "L",
    _FL_RESCHED | _FL_RESCHED_LAZY: "b",
    _FL_RESCHED: "n",
    _FL_PREEMPT_RESCHED: "p",
    _FL_RESCHED_LAZY: "l",
}


def _lat_flags(flags: int, preempt: int) -> str:
    """The 5-character latency column the kernel prints (kernel/trace/trace_output.c
    ``trace_print_lat_fmt``): irqs-off/BH, need-resched, hard/soft irq, preempt depth,
    migrate-disable depth.

    >>> _lat_flags(0, 0), _lat_flags(0x01, 3), _lat_flags(0x24, 0), _lat_flags(0x10, 0x12)
    ('.....', 'd..3.', '.N...', '..s21')
    """
    irqs_off = flags & _FL_IRQS_OFF
    bh = flags & _FL_BH_OFF
    c1 = "D" if irqs_off and bh else "d" if irqs_off else "b" if bh else "."
    c2 = _RESCHED_CHAR.get(flags & (_FL_RESCHED | _FL_RESCHED_LAZY | _FL_PREEMPT_RESCHED), ".")
    nmi, hard, soft = flags & _FL_NMI, flags & _FL_HARDIRQ, flags & _FL_SOFTIRQ
    c3 = "Z" if nmi and hard else "z" if nmi else "H" if hard and soft else "h" if hard else "s" if soft else "."
    c4 = f"{preempt & 0xF:x}" if preempt & 0xF else "."
    c5 = f"{preempt >> 4:x}" if preempt & 0xF0 else "."
    return c1 + c2 + c3 + c4 + c5


def _cmdline_map(raw: bytes) -> dict:
    """pid -> comm from saved_cmdlines (``tep_parse_saved_cmdlines``; first entry of a pid wins)."""
    out: dict = {}
    for line in raw.decode("utf-8", "replace").split("\n"):
        m = re.match(r"\s*(-?\d+)\s+(.+)$", line)
        if m:
            out.setdefault(int(m.group(1)), m.group(2))
    return out


# --------------------------------------------------------------------------- records -> columns


def _factorize(v: np.ndarray):
    """(distinct values, code of each element); a table lookup for small non-negative ints."""
    if v.size and v.min() >= 0 and v.max() < (1 << 23):
        seen = np.zeros(int(v.max()) + 1, np.bool_)
        seen[v] = True
        uniq = np.flatnonzero(seen)
        code = np.zeros(len(seen), np.int64)
        code[uniq] = np.arange(len(uniq))
        return uniq, code[v]
    uniq, inv = np.unique(v, return_inverse=True)
    return uniq, inv.ravel().astype(np.int64)


def _merge_order(ts: np.ndarray, stream: np.ndarray) -> np.ndarray:
    """Report order of records given in per-stream order.

    ``tracecmd_iterate_events_multi`` repeatedly takes the stream whose next
    record has the smallest timestamp, the first stream on ties.  When every
    stream is monotonic that is a merge of sorted runs (done pairwise with
    ``searchsorted``, lower streams first on ties); otherwise the same greedy
    choice is run with a heap.

    >>> _merge_order(np.array([1, 5, 5, 2, 5, 9], np.uint64), np.array([0, 0, 0, 1, 1, 1])).tolist()
    [0, 3, 1, 2, 4, 5]
    """
    if len(ts) == 0:
        return np.zeros(0, np.int64)
    same = stream[1:] == stream[:-1]
    bounds = np.flatnonzero(~same) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(ts)]))
    if (same & (ts[1:] < ts[:-1])).any():
        iters = [zip(ts[s:e].tolist(), range(s, e)) for s, e in zip(starts, ends)]
        return np.fromiter((i for _, i in heapq.merge(*iters, key=lambda x: x[0])), np.int64, len(ts))
    runs = [np.arange(s, e) for s, e in zip(starts, ends)]
    while len(runs) > 1:
        nxt = []
        for i in range(0, len(runs) - 1, 2):
            a, b = runs[i], runs[i + 1]
            ta, tb = ts[a], ts[b]
            out = np.empty(len(a) + len(b), np.int64)
            pa = np.arange(len(a)) + np.searchsorted(tb, ta, side="left")
            pb = np.arange(len(b)) + np.searchsorted(ta, tb, side="right")
            out[pa], out[pb] = a, b
            nxt.append(out)
        if len(runs) % 2:
            nxt.append(runs[-1])
        runs = nxt
    return runs[0]


_PAGE_KINDS = {
    EventKind.MM_PAGE_ALLOC,
    EventKind.MM_PAGE_FREE,
    EventKind.MM_PAGE_FREE_BATCHED,
    EventKind.MM_PAGE_ALLOC_ZONE_LOCKED,
    EventKind.MM_PAGE_PCPU_DRAIN,
    EventKind.MM_PAGE_ALLOC_EXTFRAG,
}

# canonical column <- format field, per kind (first present field wins)
_FIELD_MAP = {
    EventKind.KMALLOC: {"ptr": "ptr", "bytes_req": "bytes_req", "bytes_alloc": "bytes_alloc", "gfp": "gfp_flags", "node": "node", "accounted": "accounted"},
    EventKind.KMEM_CACHE_ALLOC: {"ptr": "ptr", "bytes_req": "bytes_req", "bytes_alloc": "bytes_alloc", "gfp": "gfp_flags", "node": "node", "accounted": "accounted"},
    EventKind.KFREE: {"ptr": "ptr"},
    EventKind.KMEM_CACHE_FREE: {"ptr": "ptr"},
    EventKind.MM_PAGE_ALLOC: {"pfn": "pfn", "order": "order", "migratetype": "migratetype", "gfp": "gfp_flags"},
    EventKind.MM_PAGE_FREE: {"pfn": "pfn", "order": "order"},
    EventKind.MM_PAGE_FREE_BATCHED: {"pfn": "pfn"},
    EventKind.MM_PAGE_ALLOC_ZONE_LOCKED: {"pfn": "pfn", "order": "order", "migratetype": "migratetype", "percpu_refill": "percpu_refill"},
    EventKind.MM_PAGE_PCPU_DRAIN: {"pfn": "pfn", "order": "order", "migratetype": "migratetype"},
    EventKind.MM_PAGE_ALLOC_EXTFRAG: {
        "pfn": "pfn",
        "order": "alloc_order",
        "migratetype": "alloc_migratetype",
        "fallback_order": "fallback_order",
        "fallback_migratetype": "fallback_migratetype",
        "change_ownership": "change_ownership",
    },
    EventKind.ALLOC_VMAP_AREA: {"va_start": "addr", "size": "size", "align": "align", "vstart": "vstart", "vend": "vend", "failed": "failed"},
    EventKind.FREE_VMAP_AREA_NOFLUSH: {"va_start": "va_start", "nr_lazy": "nr_lazy", "nr_lazy_max": "nr_lazy_max"},
    EventKind.PURGE_VMAP_AREA_LAZY: {"va_start": "start", "va_end": "end", "npurged": "npurged"},
}
_CALL_SITE_KINDS = {EventKind.KMALLOC, EventKind.KMEM_CACHE_ALLOC, EventKind.KFREE, EventKind.KMEM_CACHE_FREE}
_CACHE_KINDS = {EventKind.KMEM_CACHE_ALLOC, EventKind.KMEM_CACHE_FREE}
_ARGS_KINDS = {EventKind.OTHER, EventKind.MARKER, EventKind.KMEM_OTHER, EventKind.COMPACTION, EventKind.VMSCAN}
_NID_FIELDS = ("nid", "node_id", "node")


_NP_DTYPE = {
    pl.Int8(): np.int8, pl.Int16(): np.int16, pl.Int32(): np.int32, pl.Int64(): np.int64,
    pl.UInt8(): np.uint8, pl.UInt32(): np.uint32, pl.UInt64(): np.uint64, pl.Boolean(): np.bool_,
}


class _Columns:
    """Full-length column arrays with validity masks, filled event type by event type."""

    def __init__(self, n: int):
        self.n = n
        self.num: dict = {}
        self.valid: dict = {}
        self.strcodes: dict = {}  # column -> (codes int64 with -1 = null, values list)

    def put(self, col: str, idx: np.ndarray, values: np.ndarray) -> None:
        if col not in self.num:
            self.num[col] = np.zeros(self.n, _NP_DTYPE[EVENT_SCHEMA[col]])
            self.valid[col] = np.zeros(self.n, np.bool_)
        arr = self.num[col]
        if values.dtype != arr.dtype:
            values = values.view(np.uint64) if arr.dtype == np.uint64 and values.dtype == np.int64 else values.astype(arr.dtype)
        arr[idx] = values
        self.valid[col][idx] = True

    def put_str(self, col: str, idx: np.ndarray, codes: np.ndarray, values: list) -> None:
        if col not in self.strcodes:
            self.strcodes[col] = (np.full(self.n, -1, np.int64), [])
        allc, allv = self.strcodes[col]
        base = len(allv)
        allv.extend(values)
        allc[idx] = codes + base

    def frame(self) -> pl.DataFrame:
        data = {}
        exprs = []
        for col, arr in self.num.items():
            data[col] = arr
            v = self.valid[col]
            if v.all():
                exprs.append(pl.col(col))
            else:
                data["_v_" + col] = v
                exprs.append(pl.when(pl.col("_v_" + col)).then(pl.col(col)).alias(col))
        df = pl.DataFrame(data, height=self.n).select(exprs) if data else pl.DataFrame(height=self.n)
        strs = {}
        for col, (codes, values) in self.strcodes.items():
            dictionary = pl.Series(col, values + [None], dtype=pl.String)
            codes = np.where(codes < 0, len(values), codes)
            strs[col] = dictionary.gather(pl.Series(codes.astype(np.uint32)))
        return conform(df.with_columns(**strs) if strs else df)


def _decode(tf: _File, buf: np.ndarray, rec: _Records, problems: dict) -> tuple[pl.DataFrame, dict]:
    """Typed columns of every record, event type by event type."""
    n = len(rec.off)
    big = tf.big
    cols = _Columns(n)
    cols.put("line", np.arange(n), np.arange(1, n + 1, dtype=np.int64))
    cols.put("ts", np.arange(n), rec.ts.astype(np.int64))
    cols.put("cpu", np.arange(n), rec.cpu)
    real = np.flatnonzero(rec.lost == 0)
    lost = np.flatnonzero(rec.lost != 0)
    counts: dict = {}
    # common fields: from any parsed format (they are the same for all events)
    events: dict = {}
    common = None
    for eid in sorted(tf.formats)[:1] + sorted(tf.formats):
        if eid in events:
            continue
        system, raw = tf.formats[eid]
        try:
            ev = _parse_format(raw.decode("utf-8", "replace"), system)
        except ValueError:
            continue
        events[eid] = ev
        if ev.common.get("common_type") and ev.common.get("common_pid"):
            common = ev.common
            break
    if common is None:
        raise _Bad(0, "no event format with common_type/common_pid")
    tsize = common["common_type"]
    short = rec.size[real] < max(tsize.offset + tsize.size, common["common_pid"].offset + 4)
    if short.any():
        _problem(problems, "record_too_short", int(rec.off[real][np.argmax(short)]), "record shorter than its common fields", int(short.sum()))
    real = real[~short]
    etype = _read_field(buf, rec.off[real], tsize, big).astype(np.int64)
    pid = _read_field(buf, rec.off[real], common["common_pid"], big).astype(np.int64)
    cols.put("pid", real, pid)
    if "common_flags" in common and "common_preempt_count" in common:
        ctx = _read_field(buf, rec.off[real], common["common_flags"], big).astype(np.int64)
        ctx |= _read_field(buf, rec.off[real], common["common_preempt_count"], big).astype(np.int64) << 8
        uctx, cinv = _factorize(ctx)
        cols.put_str("flags", real, cinv, [_lat_flags(c & 0xFF, c >> 8) for c in uctx.tolist()])
    comms = _cmdline_map(tf.cmdlines)
    upid, pinv = _factorize(pid)
    names = ["<idle>" if p == 0 else comms.get(p, "<...>") for p in upid.tolist()]
    cols.put_str("comm", real, pinv, names)
    # LOST rows (kbuffer_missed_events): report prints "CPU:N [n EVENTS DROPPED]"
    if lost.size:
        cols.put("kind", lost, np.full(lost.size, int(EventKind.LOST)))
        cols.put_str("event", lost, np.zeros(lost.size, np.int64), ["LOST"])
        nl = rec.lost[lost]
        known = nl > 0
        if known.any():
            cols.put("npurged", lost[known], nl[known])
        _problem(problems, "lost_events", int(lost[0]) + 1, f"cpu{int(rec.cpu[lost[0]])} dropped events", lost.size)
    keep = np.zeros(n, np.bool_)
    keep[lost] = True
    kallsyms = None
    order = np.argsort(etype, kind="stable")
    bounds = np.flatnonzero(np.diff(etype[order])) + 1
    for grp in np.split(order, bounds) if order.size else []:
        eid = int(etype[grp[0]])
        idx = real[grp]
        if eid not in events:
            if eid not in tf.formats:
                _problem(problems, "unknown_event_id", int(rec.off[idx[0]]), f"common_type {eid}", len(idx))
                continue
            system, raw = tf.formats[eid]
            try:
                events[eid] = _parse_format(raw.decode("utf-8", "replace"), system)
            except ValueError as e:
                _problem(problems, "bad_event_format", 0, f"id {eid}: {e}", len(idx))
                continue
        ev = events[eid]
        need = ev.width()
        ok = rec.size[idx] >= need
        if not ok.all():
            _problem(problems, "record_too_short", int(rec.off[idx][np.argmin(ok)]), f"{ev.name}: record shorter than its format", int((~ok).sum()))
            idx = idx[ok]
        if not idx.size:
            continue
        keep[idx] = True
        counts[ev.name] = counts.get(ev.name, 0) + len(idx)
        kind = EventKind.from_name(ev.name)
        off = rec.off[idx]
        cols.put("kind", idx, np.full(len(idx), int(kind)))
        cols.put_str("event", idx, np.zeros(len(idx), np.int64), [ev.name])
        vals: dict = {}

        def fv(name: str):
            if name not in vals:
                f = ev.fields.get(name)
                vals[name] = None if f is None or f.elem or f.data_loc or f.rel_loc or f.size not in (1, 2, 4, 8) else _read_field(buf, off, f, big)
            return vals[name]

        for col, fname in _FIELD_MAP.get(kind, {}).items():
            v = fv(fname)
            if v is not None:
                cols.put(col, idx, v)
        if kind in _PAGE_KINDS:
            pfn = fv("pfn")
            if pfn is not None:
                pfn = pfn.astype(np.uint64)
                failed = pfn == np.uint64(_U64_MAX)
                pfn_i = np.where(failed, -1, pfn.astype(np.int64))
                cols.put("pfn", idx, pfn_i)
                cols.put("page", idx, np.where(failed, np.uint64(0), pfn))
            if kind == EventKind.MM_PAGE_FREE_BATCHED:
                cols.put("order", idx, np.zeros(len(idx), np.int64))
            if kind == EventKind.MM_PAGE_ALLOC_EXTFRAG:
                fo = fv("fallback_order")
                pbo = _pageblock_order(ev.print_fmt)
                if fo is not None:
                    cols.put("fragmenting", idx, (fo < pbo).astype(np.int64))
        if kind in (EventKind.KMALLOC, EventKind.KMEM_CACHE_ALLOC, EventKind.MM_PAGE_ALLOC):
            g = fv("gfp_flags")
            if g is not None:
                ug, ginv = np.unique(g.astype(np.uint64), return_inverse=True)
                cols.put_str("gfp_flags", idx, ginv.ravel().astype(np.int64), [format_gfp(int(x)) for x in ug.tolist()])
                if kind == EventKind.KMALLOC and "accounted" not in ev.fields:
                    cols.put("accounted", idx, (g.astype(np.uint64) & np.uint64(_GFP_ACCOUNT)) != 0)
        if kind in _CALL_SITE_KINDS and "call_site" in ev.fields:
            if kallsyms is None:
                kallsyms = _Kallsyms(tf.kallsyms)
            cs = fv("call_site").astype(np.uint64)
            ucs, cinv = np.unique(cs, return_inverse=True)
            cols.put_str("call_site", idx, cinv.ravel().astype(np.int64), kallsyms.format(ucs))
        if kind in _CACHE_KINDS and "name" in ev.fields:
            codes, values = _read_strings(buf, off, rec.size[idx], ev.fields["name"], big, problems)
            cols.put_str("cache", idx, codes, values)
        if kind in _ARGS_KINDS or kind not in _FIELD_MAP:
            for nf in _NID_FIELDS:
                v = fv(nf)
                if v is not None:
                    cols.put("nid", idx, v)
                    break
            if kind in (EventKind.COMPACTION, EventKind.VMSCAN) and fv("order") is not None:
                cols.put("order", idx, fv("order"))
            if kallsyms is None:
                kallsyms = _Kallsyms(tf.kallsyms)
            text = render_print_fmt(ev, buf, off, rec.size[idx], big, kallsyms, problems)
            ut, tinv = np.unique(np.asarray(text, dtype=object), return_inverse=True) if len(text) else ([], np.zeros(0, np.int64))
            cols.put_str("args", idx, np.asarray(tinv).ravel().astype(np.int64), list(ut))
    frame = cols.frame()
    if not keep.all():
        frame = frame.filter(pl.Series(keep)).with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("line"))
    return frame, counts


def _pageblock_order(print_fmt: str) -> int:
    """``pageblock_order`` as the extfrag print format computes it (``min(HPAGE_SHIFT - PAGE_SHIFT, MAX_PAGE_ORDER)``)."""
    m = re.search(r"pageblock_order=%d.*?\),\s*REC->alloc_order,\s*REC->fallback_order,\s*(.+?),\s*REC->alloc_migratetype", print_fmt)
    if m:
        nums = [int(x) for x in re.findall(r"\b\d+\b", m.group(1))]
        if len(nums) >= 3:
            return min(nums[0] - nums[1], nums[2])
        if len(nums) == 1:
            return nums[0]
    return 9


# --------------------------------------------------------------------------- entry point


def read_tracedat(path, strict: bool = False) -> Trace:
    """Read a trace-cmd ``trace.dat`` (version 6 or 7, optionally zstd-compressed as a whole).

    Structural errors in the metadata (header, formats, options, section and
    CPU-data offsets) raise :class:`KmemdesError` naming the file and byte
    offset.  Damaged ring-buffer pages and records are skipped and counted in
    ``problems`` (kind -> count, first byte offsets, example); with
    ``strict=True`` the first such problem raises instead.

    >>> from pathlib import Path
    >>> p = Path(__file__).resolve().parents[2] / "traces" / "tracedat_small" / "trace.dat"
    >>> t = read_tracedat(p) if p.exists() else None
    >>> t is None or (t.meta["format"].startswith("trace.dat-v") and t.events.height > 0)
    True
    """
    path = Path(path)
    data = _load_bytes(path)
    try:
        tf = _parse_file(path, data)
        problems = tf.problems
        frame, counts, meta = _read_data(tf, data, problems)
    except _Bad as e:
        raise KmemdesError(f"{path}: byte {e.offset}: {e.what}") from None
    if strict and problems:
        kind, p = next(iter(problems.items()))
        raise KmemdesError(f"{path}: byte {p['lines'][0] if p['lines'] else 0}: {kind} ({p['count']}x): {p['example']}")
    meta["event_counts"] = counts
    return Trace(events=frame, meta=meta, problems=problems)


def _read_data(tf: _File, data: bytes, problems: dict):
    lay = _page_layout(tf)
    # one big byte buffer: every stream's pages at page-aligned offsets
    streams = []  # (buffer name, cpu, offset in big, npages)
    parts = []
    total = 0
    for b in tf.buffers:
        ps = b.page_size or tf.page_size
        if ps != tf.page_size:
            raise _Bad(0, f"buffer {b.name!r}: sub-buffer size {ps} differs from the file page size {tf.page_size}")
        for cpu, blob in b.cpus:
            npg, rest = divmod(len(blob), ps)
            if rest:
                _problem(problems, "partial_page", 0, f"buffer {b.name!r} cpu{cpu}: {rest} bytes after the last whole page")
            streams.append((b.name, cpu, total, npg))
            parts.append(memoryview(blob)[: npg * ps])
            total += npg * ps
    parts.append(b"\0" * 16)
    buf = np.frombuffer(b"".join(parts), np.uint8)
    lay.page_size_total = tf.page_size
    pages = np.concatenate([s[2] + np.arange(s[3], dtype=np.int64) * tf.page_size for s in streams]) if streams else np.zeros(0, np.int64)
    stream_of_page = np.concatenate([np.full(s[3], i, np.int64) for i, s in enumerate(streams)]) if streams else np.zeros(0, np.int64)
    off, ln, ts, pg, lostcol = _walk_pages(buf, tf.big, lay, pages, stream_of_page, problems)
    stream = stream_of_page[pg]
    if tf.tsc2nsec:
        mult, shift, _ = tf.tsc2nsec
        ts = ((ts.astype(object) * mult) >> shift).astype(np.uint64) if len(ts) else ts
    if tf.ts_offset:
        ts = (ts.astype(np.int64) + tf.ts_offset).astype(np.uint64)
    order = _merge_order(ts, stream)
    cpu_of_stream = np.array([s[1] for s in streams] or [0], np.int64)
    rec = _Records(off[order], ln[order], ts[order], cpu_of_stream[stream[order]], lostcol[order])
    frame, counts = _decode(tf, buf, rec, problems)
    meta = {
        "source": str(tf.path),
        "format": f"trace.dat-v{tf.version}",
        "file_version": tf.version,
        "cpus": tf.cpus or max((len(b.cpus) for b in tf.buffers), default=0),
        "uname": tf.options.get("uname", ""),
        "tracer_version": tf.options.get("version", ""),
        "trace_clock": tf.options.get("clock", "") or next((b.clock for b in tf.buffers if b.clock), ""),
        "compression": tf.compression,
        "page_size": tf.page_size,
        "long_size": tf.long_size,
        "big_endian": tf.big,
        "buffers": [b.name for b in tf.buffers],
        "cpustats": tf.cpustats,
    }
    for k in ("date", "offset", "trace_id"):
        if k in tf.options:
            meta[k] = tf.options[k]
    return frame, counts, meta
