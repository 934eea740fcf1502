"""trace.dat file layout (versions 6 and 7): header, sections, options, event formats.

Follows trace-cmd's ``lib/trace-cmd/trace-input.c`` and the file-format documents
``Documentation/trace-cmd/trace-cmd.dat.v6.5.txt`` and ``.v7.5.txt``: the header (magic
``17 08 44 "tracing"``, version, endianness, long size, page size), version 7's
compressed sections and option chains, ``header_page`` / ``header_event``, the event
``format`` files, kallsyms, saved cmdlines and the options.  :mod:`kmemdes.trace.tracedat`
turns the parsed file into the event table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from kmemdes.errors import KmemdesError

TRACEDAT_MAGIC = b"\x17\x08\x44tracing"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# option / section ids (trace-cmd lib/trace-cmd/include/trace-cmd.h, enum tracecmd_option_id)
_OPT_DONE, _OPT_DATE, _OPT_CPUSTAT, _OPT_BUFFER, _OPT_TRACECLOCK, _OPT_UNAME = 0, 1, 2, 3, 4, 5
_OPT_OFFSET, _OPT_CPUCOUNT, _OPT_VERSION, _OPT_TRACEID, _OPT_TSC2NSEC = 7, 8, 9, 11, 14
_OPT_STRINGS, _OPT_HEADER_INFO, _OPT_FTRACE_EVENTS, _OPT_EVENT_FORMATS = 15, 16, 17, 18
_OPT_KALLSYMS, _OPT_PRINTK, _OPT_CMDLINES, _OPT_BUFFER_TEXT = 19, 20, 21, 22
_SEC_FL_COMPRESS = 1

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
    cpus: list = field(default_factory=list)  # [(cpu, [bytes-like pieces of its data, in order])]


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
    zstd: object = None  # the decompressor of version-7 sections and data, made on first use


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

    if tf.zstd is None:
        tf.zstd = zstandard.ZstdDecompressor()
    try:
        out = tf.zstd.decompress(blob, max_output_size=max(size, 1))
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
        out.append((cpu, [memoryview(data)[off : off + size]]))
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
                pages.append((cpu, []))
                continue
            if off + size > len(data):
                raise _Bad(off, f"buffer {b['name']!r} cpu{cpu} data ({size} bytes) runs past the end of the file")
            if flags & _SEC_FL_COMPRESS:
                c = _Cursor(data, off, tf.big)
                n = c.num(4, "chunk count")
                parts = []
                for _ in range(n):
                    parts.append(_read_block(tf, c, f"cpu{cpu} data chunk"))
                pages.append((cpu, parts))
            else:
                pages.append((cpu, [memoryview(data)[off : off + size]]))
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
