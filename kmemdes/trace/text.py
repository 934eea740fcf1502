"""Text traces -> the canonical event table: ftrace ``trace``/``trace_pipe``,
``trace-cmd report`` and ``perf script`` output, any kernel era.

The formats (KERNEL.md section 14, traces/README.md section 4)::

    ftrace     <comm %16s>-<pid %-7d> [<cpu %03d>] <flags> <secs>.<usecs>: <event>: <fields>
    trace-cmd  [<instance>: ]<comm>-<pid> [<cpu>] <secs>.<usecs>: <event>: [(func+off)] <fields>
    perf       <comm %16s> <pid> [<cpu>] <secs>.<usecs>: <group>:<event>: <fields>

Parsing is vectorised over chunks of lines (Polars string kernels, never a
Python loop over lines on the normal path):

1. *header*: the kernel prints everything before the timestamp at fixed
   widths (``%16s-%-7d [%03d] <flags>``, ``trace_print_context`` in
   kernel/trace/trace_output.c), so that prefix is cut at a position learnt
   from the first lines and parsed once per *distinct* prefix (a few hundred
   per chunk: task, CPU, flags repeat); the timestamp, event name and body
   come from literal ``find``/``slice`` passes -- at constant offsets in an
   ASCII chunk whose timestamps have one width (``%5lu.%06lu``), the lines
   where that does not hold taking the general passes.  Lines that do not fit
   (exotic comms or layouts, headers, ``[LOST n EVENTS]`` markers, garbage)
   go through a regular-expression path, then are classified.
2. *body*: rows are grouped by event name; every event prints its fields in a
   fixed order (the ``print fmt`` of ``include/trace/events/kmem.h``,
   ``vmalloc.h``), so each group is split at single spaces and field *i* is
   taken by position, after checking that it carries the expected ``key=``.
   The key order of each event is learnt once per file from the first rows
   (older kernels lack ``node=``/``accounted=``/``name=``, have ``cold=``, ...).
   The repeating fields after the pointers (``name= bytes_req= ...``) are
   parsed once per distinct tail string.  Rows that deviate are parsed key
   by key and counted as problems.
3. GFP strings are decoded with :func:`kmemdes.mm.gfp.parse_gfp` once per
   distinct string.

In an ASCII ftrace chunk, the ordinary lines of the common events (whose
layout is learnt) skip steps 1-2: :mod:`kmemdes.trace._express` parses them
in one query per chunk, in line order, and hands every other line to the
path above, which gives the same row for any line both can take.  Line
prefixes and repeating tails are kept from chunk to chunk (:class:`_Interned`),
so each is parsed once per file.

Problems (bad input) never stop the parse unless ``strict``; each is counted by
kind with its first line numbers (:class:`ProblemLog`).  Every input line ends
up as a row, as a blank/header line, or as a *dropping* problem
(:data:`DROPPING_PROBLEMS`); :attr:`TextParser.line_counts` keeps the tally.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

import numpy as np
import polars as pl

from kmemdes.errors import KmemdesError, where
from kmemdes.mm.gfp import parse_gfp
from kmemdes.trace.schema import EVENT_SCHEMA, KIND_BY_NAME, EventKind, conform

__all__ = [
    "TEXT_FORMATS",
    "DROPPING_PROBLEMS",
    "ProblemLog",
    "TextParser",
    "detect_text_format",
    "parse_text",
]

TEXT_FORMATS = ("ftrace", "trace-cmd-report", "perf-script")

#: problem kinds whose line does not become a row (the others keep the row)
DROPPING_PROBLEMS = frozenset({"unparsed_line", "binary_garbage"})

_MAX_LINES = 5  # line numbers kept per problem kind


# --------------------------------------------------------------------------- problems


class ProblemLog:
    """Bad-input accounting: kind -> count, first line numbers, an example.

    With ``strict`` the first problem (lowest line once a chunk is done) is
    raised as ``KmemdesError("FILE:LINE: what")``.

    >>> log = ProblemLog("t.txt")
    >>> log.add("bad_field", [7, 9], "order=abc", "mm_page_alloc: order=abc is not a number")
    >>> log.add("bad_field", [3], "pfn=0xzz", "mm_page_free: pfn=0xzz is not a number")
    >>> log.as_dict()
    {'bad_field': {'count': 3, 'lines': [3, 7, 9], 'example': 'pfn=0xzz'}}
    """

    def __init__(self, source: object, strict: bool = False):
        self.source = source
        self.strict = strict
        self.kinds: dict[str, dict] = {}
        self._example_line: dict[str, int] = {}  # kind -> line of its example
        self._first: tuple[int, str] | None = None

    def add(self, kind: str, lines: list[int], example: str, message: str, count: int | None = None) -> None:
        """Record ``count`` (default ``len(lines)``) problems of ``kind``."""
        n = len(lines) if count is None else count
        if n <= 0:
            return
        lines = sorted(int(x) for x in lines if x is not None)
        first = lines[0] if lines else 0
        entry = self.kinds.setdefault(kind, {"count": 0, "lines": [], "example": example[:300]})
        if first < self._example_line.setdefault(kind, first):  # the example is of the first line
            entry["example"], self._example_line[kind] = example[:300], first
        entry["count"] += n
        entry["lines"] = sorted(set(entry["lines"]) | set(lines[:_MAX_LINES]))[:_MAX_LINES]
        if self._first is None or first < self._first[0]:
            self._first = (first, message)

    def merge(self, later: "ProblemLog") -> None:
        """Add the problems of ``later`` (a log of later lines), as if each had
        been added here.

        >>> a, b = ProblemLog("t"), ProblemLog("t")
        >>> a.add("bad_field", [3], "x", "m3"); b.add("bad_field", [9, 7], "y", "m7", 5)
        >>> a.merge(b); a.as_dict()
        {'bad_field': {'count': 6, 'lines': [3, 7, 9], 'example': 'x'}}
        """
        for kind, theirs in later.kinds.items():
            line = later._example_line[kind]
            entry = self.kinds.setdefault(kind, {"count": 0, "lines": [], "example": theirs["example"]})
            if line < self._example_line.setdefault(kind, line):
                entry["example"], self._example_line[kind] = theirs["example"], line
            entry["count"] += theirs["count"]
            entry["lines"] = sorted(set(entry["lines"]) | set(theirs["lines"]))[:_MAX_LINES]
        if later._first is not None and (self._first is None or later._first[0] < self._first[0]):
            self._first = later._first

    def check_strict(self) -> None:
        """Raise the first recorded problem when strict."""
        if self.strict and self._first is not None:
            line, message = self._first
            raise KmemdesError(f"{where(self.source, line or None)}: {message}")

    def as_dict(self) -> dict:
        return {k: dict(v) for k, v in sorted(self.kinds.items())}


# --------------------------------------------------------------------------- formats


_PERF_PROBE = re.compile(r"\]\s+\d+\.\d+:\s+[\w-]+:\w+:")
_FTRACE_PROBE = re.compile(r"-\d+\s+(?:\(\s*[-\d]+\)\s+)?\[\d+\]\s+(?:\S{2,6}\s+)?\d+\.\d+:\s+\w+:")


def detect_text_format(head: str) -> str:
    """Which text format a trace is, from its first lines.

    >>> detect_text_format("cpus=2\\ninst:  bash-1 [001]  1.000001: kfree: call_site=x ptr=(nil)")
    'trace-cmd-report'
    >>> detect_text_format("  perf 17091 [000]  3023.261361:  kmem:kmalloc: call_site=x")
    'perf-script'
    >>> detect_text_format("  bash-12948   [001] .....  1968.174897: kfree: call_site=x ptr=0")
    'ftrace'
    """
    lines = [ln for ln in head.splitlines()[:400] if ln.strip()]
    if lines and lines[0].startswith("cpus="):
        return "trace-cmd-report"
    perf = ftrace = tcmd = 0
    for ln in lines:
        if _PERF_PROBE.search(ln):
            perf += 1
        elif _FTRACE_PROBE.search(ln):
            if re.match(r"^[^\s:]+:\s", ln):
                tcmd += 1
            else:
                ftrace += 1
    if perf > ftrace + tcmd:
        return "perf-script"
    if tcmd > ftrace:
        return "trace-cmd-report"
    return "ftrace"


# Generic header expressions (the slow path; also used to learn the fast layout).
_RE_FTRACE = (
    r"^\s*(?P<comm>.*)-(?P<pid>\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<flags>\S{2,6})\s+)?(?P<secs>\d+)\.(?P<frac>\d+):\s+(?P<ev>[\w:-]+):(?: (?P<body>.*))?$"
)
_RE_TRACECMD = r"^(?:[^\s:]+:\s+)?" + _RE_FTRACE[1:]
_RE_PERF = (
    r"^\s*(?P<comm>.*?)\s+(?P<pid>-?\d+)(?:/-?\d+)?\s+\[(?P<cpu>\d+)\]\s+"
    r"(?P<flags>)(?P<secs>\d+)\.(?P<frac>\d+):\s+(?P<ev>[\w:-]+):(?: (?P<body>.*))?$"
)
_HEADER_RE = {"ftrace": _RE_FTRACE, "trace-cmd-report": _RE_TRACECMD, "perf-script": _RE_PERF}
_LOST_RE = r"^\s*CPU:\s*(\d+)\s+\[(?:LOST (\d+) EVENTS|(\d+) EVENTS DROPPED|LOST EVENTS)\]\s*$"
_GARBAGE_RE = "[\x00-\x08\x0b-\x1f\x7f\ufffd]"


class _Layout:
    """Fast-path header layout learnt from the first lines of a file.

    The kernel prints the part before the timestamp at fixed widths
    (``%16s-%-7d [%03d] <flags> `` in kernel/trace/trace_output.c; trace-cmd
    and perf print their own fixed-width forms), so ``ts_start`` -- where the
    timestamp field begins -- is the same on (nearly) every line.  The prefix
    before it (comm, pid, cpu, flags) repeats a lot and is parsed once per
    distinct value with ``prefix_re``.
    """

    __slots__ = ("ts_start", "flags_len", "prefix_re")

    def __init__(self, ts_start: int, flags_len: int, fmt: str):
        self.ts_start = ts_start
        self.flags_len = flags_len
        if fmt == "perf-script":
            rx = r"^\s*(?P<comm>.*?)\s+(?P<pid>-?\d+)(?:/-?\d+)?\s+\[(?P<cpu>\d+)\] $"
        else:
            inst = r"(?:[^\s:]+: )?" if fmt == "trace-cmd-report" else ""
            flags = rf"(?P<flags>\S{{{flags_len}}}) " if flags_len else ""
            rx = rf"^{inst}\s*(?P<comm>.*)-(?P<pid>\d+)\s*\[(?P<cpu>\d+)\] {flags}$"
        self.prefix_re = re.compile(rx)

    def key(self) -> tuple:
        return (self.ts_start, self.flags_len, self.prefix_re.pattern)


def _learn_layout(lines: list[str], fmt: str) -> _Layout | None:
    """The most common fast-path layout among sample lines (None if none fits)."""
    rx = re.compile(_HEADER_RE[fmt])
    votes: Counter = Counter()
    for ln in lines:
        m = rx.match(ln)
        if not m or ln[m.end("cpu")] != "]":
            continue
        flags = m.group("flags") or ""
        ts_start = m.end("flags") + 1 if flags else m.end("cpu") + 2
        votes[(ts_start, len(flags))] += 1
    if not votes:
        return None
    (ts_start, flags_len), _ = votes.most_common(1)[0]
    return _Layout(ts_start, flags_len, fmt)


# --------------------------------------------------------------------------- event bodies

# Column converters
_STR, _PTR, _NUM, _INT, _BOOL = "str", "ptr", "num", "int", "bool"

_CONV = {
    "call_site": _STR,
    "cache": _STR,
    "gfp_flags": _STR,
    "ptr": _PTR,
    "page": _PTR,
    "pfn": _NUM,
    "va_start": _NUM,
    "va_end": _NUM,
    "vstart": _NUM,
    "vend": _NUM,
    "accounted": _BOOL,
}

# Event families: canonical key order (print fmt order; older kernels print a
# subsequence), required keys, and key -> column.  None: no column (the raw
# body is then kept in ``args``).
_SLAB_ALLOC = (
    ("call_site", "ptr", "name", "bytes_req", "bytes_alloc", "gfp_flags", "node", "accounted"),
    {"call_site", "ptr", "bytes_req", "bytes_alloc", "gfp_flags"},
    {"name": "cache"},
)
_SLAB_FREE = (("call_site", "ptr", "name"), {"call_site", "ptr"}, {"name": "cache"})
_PAGE_ALLOC = (("page", "pfn", "order", "migratetype", "gfp_flags"), {"pfn", "order", "migratetype", "gfp_flags"}, {})
_PAGE_FREE = (("page", "pfn", "order"), {"pfn", "order"}, {})
_PAGE_BATCHED = (("page", "pfn", "order", "cold"), {"pfn", "order"}, {"cold": None})
_ZONE_LOCKED = (("page", "pfn", "order", "migratetype", "percpu_refill"), {"pfn", "order", "migratetype"}, {})
_PCPU_DRAIN = (("page", "pfn", "order", "migratetype"), {"pfn", "order", "migratetype"}, {})
_EXTFRAG = (
    (
        "page",
        "pfn",
        "alloc_order",
        "fallback_order",
        "pageblock_order",
        "alloc_migratetype",
        "fallback_migratetype",
        "fragmenting",
        "change_ownership",
    ),
    {"pfn", "alloc_order", "fallback_order", "alloc_migratetype", "fallback_migratetype"},
    {"alloc_order": "order", "alloc_migratetype": "migratetype", "pageblock_order": None},
)
_ALLOC_VMAP = (("va_start", "size", "align", "vstart", "vend", "failed"), {"va_start", "size"}, {})
_FREE_VMAP = (("va_start", "nr_lazy", "nr_lazy_max"), {"va_start"}, {})
_PURGE_VMAP = (("start", "end", "num_purged"), {"start", "end", "num_purged"}, {"start": "va_start", "end": "va_end", "num_purged": "npurged"})

_FAMILY = {
    "kmalloc": _SLAB_ALLOC,
    "kmalloc_node": _SLAB_ALLOC,
    "kmem_cache_alloc": _SLAB_ALLOC,
    "kmem_cache_alloc_node": _SLAB_ALLOC,
    "kfree": _SLAB_FREE,
    "kmem_cache_free": _SLAB_FREE,
    "mm_page_alloc": _PAGE_ALLOC,
    "mm_page_free": _PAGE_FREE,
    "mm_page_free_direct": _PAGE_FREE,
    "mm_page_free_batched": _PAGE_BATCHED,
    "mm_pagevec_free": _PAGE_BATCHED,
    "mm_page_alloc_zone_locked": _ZONE_LOCKED,
    "mm_page_pcpu_drain": _PCPU_DRAIN,
    "mm_page_alloc_extfrag": _EXTFRAG,
    "alloc_vmap_area": _ALLOC_VMAP,
    "free_vmap_area_noflush": _FREE_VMAP,
    "purge_vmap_area_lazy": _PURGE_VMAP,
}
_SLAB_EVENTS = {"kmalloc", "kmalloc_node", "kmem_cache_alloc", "kmem_cache_alloc_node", "kfree", "kmem_cache_free"}
_NULL_PTRS = ("(nil)", "(null)")

_HEADER_COLS = ["line", "ts", "cpu", "pid", "comm", "flags", "ev", "body"]
_PREFIX_SCHEMA = {"comm": pl.String, "pid": pl.Int32, "cpu": pl.Int16, "flags": pl.String, "_pok": pl.Boolean}


#: distinct strings an interned column keeps; past it, it starts again (a trace
#: whose "repeating" values do not repeat must not cost more per chunk as it goes)
_INTERN_MAX = 1 << 14


class _Interned:
    """The distinct strings of a column met so far in a file, each with an
    id (its index in :attr:`strings`), kept from chunk to chunk: what
    repeats (line prefixes, field tails) is parsed once per file.  Its
    owner starts a new one when :attr:`full`.

    >>> i = _Interned()
    >>> i.ids(pl.Series(["b", "a", None, "b"])).to_list(), i.ids(pl.Series(["c", "a"])).to_list(), i.strings
    ([0, 1, None, 0], [2, 1], ['b', 'a', 'c'])
    """

    def __init__(self) -> None:
        self.strings: list[str] = []
        self._enum = pl.Enum([])

    @property
    def full(self) -> bool:
        return len(self.strings) > _INTERN_MAX

    def ids(self, column: pl.Series) -> pl.Series:
        """The id of each value (UInt32, null where the value is null)."""
        ids = column.cast(self._enum, strict=False).to_physical().cast(pl.UInt32)
        missing = ids.is_null() & column.is_not_null()
        if missing.any():  # new strings: appended, and the ids of their rows filled in
            rows = column.filter(missing)
            self.strings += rows.unique(maintain_order=True).to_list()
            self._enum = pl.Enum(self.strings)
            ids = ids.scatter(missing.arg_true(), rows.cast(self._enum).to_physical().cast(pl.UInt32))
        return ids


#: rows of an event from which its layout is learnt
_LAYOUT_SAMPLE = 256


def _collapse(body: pl.Expr) -> pl.Expr:
    """A body with runs of spaces (old ``(null)`` pointers, padded values)
    collapsed to single spaces."""
    return (
        pl.when(body.str.contains("  ", literal=True))
        .then(body.str.replace_all(r"= +", "=").str.replace_all(r" {2,}", " ").str.strip_chars(" "))
        .otherwise(body)
    )


def _column_of(key: str, family: tuple) -> str | None:
    mapping = family[2]
    if key in mapping:
        return mapping[key]
    return key


def _convert(raw: pl.Expr, column: str) -> pl.Expr:
    """Typed value of a field's text, null where it does not convert."""
    dtype = EVENT_SCHEMA[column]
    conv = _CONV.get(column, _INT)
    if conv == _STR:
        return raw
    if conv == _BOOL:
        return pl.when(raw == "true").then(True).when(raw == "false").then(False).otherwise(None)
    if conv == _PTR:
        hexval = raw.str.strip_prefix("0x").str.to_integer(base=16, dtype=pl.UInt64, strict=False)
        return pl.when(raw.is_in(_NULL_PTRS)).then(pl.lit(0, pl.UInt64)).otherwise(hexval).cast(dtype)
    if conv == _NUM:
        hexval = raw.str.slice(2).str.to_integer(base=16, dtype=pl.UInt64, strict=False)
        decval = raw.str.to_integer(base=10, dtype=pl.UInt64, strict=False)
        val = pl.when(raw.str.starts_with("0x")).then(hexval).otherwise(decval)
        return val.cast(dtype, strict=False)
    return raw.str.to_integer(base=10, dtype=dtype, strict=False)


def _first_lines(frame: pl.DataFrame, mask: pl.Expr | None = None) -> tuple[list[int], str, int]:
    """(first line numbers, example text, count) of the rows selected by mask."""
    sel = frame if mask is None else frame.filter(mask)
    n = sel.height
    if n == 0:
        return [], "", 0
    head = sel.head(_MAX_LINES)
    lines = head["line"].to_list()
    ex_col = "l" if "l" in sel.columns else "body"
    example = head[ex_col][0] if ex_col in sel.columns else ""
    return lines, example or "", n


#: columns whose values repeat from row to row (per cache, call site, size class)
_REPEATING = frozenset({"cache", "bytes_req", "bytes_alloc", "gfp_flags", "node", "accounted",
                        "order", "migratetype", "percpu_refill"})


_TAIL_MIN_ROWS = 16384

#: parse the ordinary lines of known events in one pass (see :mod:`kmemdes.trace._express`)
_EXPRESS = True


def _tail_start(family: tuple, keys: tuple) -> int:
    """Index of the first of the fields that all repeat to the end of the
    layout, when there are at least three of them after at least one other
    field (otherwise ``len(keys)``: no tail)."""
    h = len(keys)
    while h > 0 and _column_of(keys[h - 1], family) in _REPEATING:
        h -= 1
    return h if 0 < h <= len(keys) - 3 else len(keys)


_TS_MAX_S = 9_000_000_000  # timestamps in ns must fit an Int64 (9.2e18 ns): later ones are bad fields


def _ts_seconds(field: pl.Expr) -> pl.Expr:
    """The timestamp text ``secs.usecs`` (right-aligned, ``%5lu.%06lu``) as float seconds."""
    return field.str.strip_chars_start(" ").cast(pl.Float64, strict=False)


def _ts_ns(secs: pl.Expr) -> pl.Expr:
    """Float seconds to integer ns, rounded to whole microseconds (exact below 10^9 s)."""
    return (secs * 1e6).round().cast(pl.Int64, strict=False) * 1000


def _base(prefix: str, conv: str) -> int:
    """The base of a number field: hex for pointers and ``key=0x`` prefixes, else decimal."""
    return 16 if (prefix.endswith("0x") or conv == _PTR) else 10


def _failed_alloc_pfn(pfn: pl.Expr, is_alloc: pl.Expr | None = None) -> pl.Expr:
    """``mm_page_alloc`` prints ``page=NULL pfn=0`` for a failed allocation: stored as -1."""
    zero = pfn == 0 if is_alloc is None else is_alloc & (pfn == 0)
    return pl.when(zero).then(-1).otherwise(pfn)


def _fields_table(family: tuple, keys: tuple, prefixes: tuple, strings: list) -> pl.DataFrame:
    """Typed columns and ``_ok`` of strings that each hold exactly the fields
    ``keys`` (a None string: no row, ``_ok`` False): repeating field tails,
    parsed once per distinct string."""
    f = pl.col("_f").struct
    exprs, checks, converted, ptrs = _positional(family, keys, prefixes, f)
    checks.append(f.field(f"field_{len(keys)}").is_null())
    converted += [pl.col(c).is_not_null() for c, _, _ in ptrs]  # a NULL pointer: the row-wise path
    return (
        pl.LazyFrame({"t": strings}, schema={"t": pl.String})
        .select(_f=pl.col("t").str.split_exact(" ", len(keys)))
        .select(*exprs, _ok=pl.all_horizontal(checks))
        .with_columns(_ok=pl.all_horizontal([pl.col("_ok"), *converted]).fill_null(False))
        .collect()
    )


def _positional(family: tuple, keys: tuple, prefixes: tuple, f) -> tuple[list, list, list, list]:
    """Expressions for fields ``field_0..`` of the struct ``f`` holding the
    given keys: (typed columns, checks, not-null checks of converted columns,
    pointer fields ``(column, field, key)`` whose NULL may print as
    ``(nil)``/``(null)``).  Every field must start with its ``key=``; numeric
    and flag fields must also convert."""
    exprs: list = []
    checks: list = []
    converted: list = []
    ptrs: list = []
    for i, (key, prefix) in enumerate(zip(keys, prefixes)):
        col = _column_of(key, family)
        fi = f.field(f"field_{i}")
        raw = fi.str.slice(len(prefix))
        conv = _CONV.get(col or "", _INT) if col else None
        if conv != _BOOL:  # a flag field compares its whole text below
            checks.append(fi.str.starts_with(prefix))
        if col is None:
            continue
        if conv == _STR:
            val = raw
        elif conv == _BOOL:
            val = pl.when(fi == prefix + "true").then(True).when(fi == prefix + "false").then(False)
        elif conv in (_PTR, _NUM):
            val = raw.str.to_integer(base=_base(prefix, conv), dtype=pl.UInt64, strict=False).cast(EVENT_SCHEMA[col], strict=False)
            if conv == _PTR:
                ptrs.append((col, f"field_{i}", key))
        else:
            val = raw.str.to_integer(dtype=EVENT_SCHEMA[col], strict=False)
        exprs.append(val.alias(col))
        if conv not in (_STR, _PTR):
            converted.append(pl.col(col).is_not_null())
    return exprs, checks, converted, ptrs


# --------------------------------------------------------------------------- the parser


class TextParser:
    """Incremental parser: :meth:`feed` chunks of text (bytes, whole lines),
    then :meth:`finish` returns ``(events, meta, problems)``.

    Memory stays bounded by the chunk size plus the typed output frames;
    ``columns`` keeps only those columns of each chunk's frame.
    """

    def __init__(self, source: object, strict: bool = False, fmt: str | None = None,
                 columns: tuple[str, ...] | None = None):
        if fmt is not None and fmt not in TEXT_FORMATS:
            raise ValueError(f"unknown text format {fmt!r}")
        self.source = source
        self.fmt = fmt
        self.columns = columns
        self.problems = ProblemLog(source, strict)
        self.meta: dict = {}
        # rows + blank + header + dropped == total; slow_path: event lines that
        # needed the regular-expression header parse (a diagnostic)
        self.line_counts = {"total": 0, "rows": 0, "blank": 0, "header": 0, "dropped": 0, "slow_path": 0}
        self._layout: _Layout | None = None
        self._layout_tried = False
        self._body_layouts: dict[str, tuple[str, ...] | None] = {}
        self._gfp: dict[str, int | None] = {}
        self._frames: list[pl.DataFrame] = []
        self._last_ts: int | None = None
        self._event_names: dict[str, str | None] = {}
        self._cmp: np.ndarray | None = None
        self._ascii = False  # the chunk being parsed is pure ASCII (bytes are characters)
        self._ts_width: int | None = None  # timestamp width in this chunk, for _express_query
        self._express_tails = None  # the express path's parsed tails (kmemdes.trace._express._Tails)
        self._prefixes = _Interned()  # distinct line prefixes (comm, pid, cpu, flags) of the file
        self._prefix_table = pl.DataFrame(schema=_PREFIX_SCHEMA)  # their fields, one row per id

    # ------------------------------------------------------------------ input

    def feed(self, chunk: bytes) -> None:
        """Parse a chunk of whole lines (the last may lack its newline)."""
        if not chunk:
            return
        self.accept(self.parse_chunk(chunk, self.line_counts["total"]))

    def parse_chunk(self, chunk: bytes, base: int) -> pl.DataFrame | None:
        """The rows of a non-empty chunk whose first line is line ``base + 1``
        (None if no line is a row), before :meth:`accept` -- which takes
        chunks in file order -- checks them against the chunk before.

        What this learns (the format, the header layout, each event's field
        layout) is learnt from the first chunk where it can be, as
        :meth:`feed` does; :mod:`kmemdes.trace._parallel` runs this on forks
        of the parser (:meth:`fork`), one chunk each."""
        frame, garbage = self._lines(chunk)
        n = frame.height
        self.line_counts["total"] += n
        frame = frame.with_columns(line=pl.int_range(base + 1, base + 1 + n, dtype=pl.Int64))
        if garbage:
            gl = [base + 1 + i for i in garbage]
            self.problems.add(
                "binary_garbage",
                gl,
                repr(chunk.split(b"\n")[garbage[0]][:120]),
                "binary garbage (control bytes or invalid UTF-8) in a text trace",
            )
            self.line_counts["dropped"] += len(garbage)
            frame = frame.filter(~pl.col("line").is_in(gl))
        if self.fmt is None:
            sample = frame.head(400)["l"].drop_nulls().to_list()
            self.fmt = detect_text_format("\n".join(sample))
        if not self._layout_tried:
            sample = [s for s in frame.head(2000)["l"].drop_nulls().to_list() if s.strip()][:400]
            if sample:
                self._layout = _learn_layout(sample, self.fmt)
                self._layout_tried = True
        self._ts_width = self._learn_ts_width(frame) if self._layout is not None and self._ascii else None
        return self._parse_frame(frame)

    def accept(self, chunk: pl.DataFrame | None) -> None:
        """Take the rows of the next chunk of the file (:meth:`parse_chunk`):
        LOST timestamps and the time-order check against the chunk before,
        then the strict check."""
        if chunk is not None:
            chunk = self._finish_chunk(chunk)
            self.line_counts["rows"] += chunk.height
            self._frames.append(chunk if self.columns is None else chunk.select(self.columns))
        self.problems.check_strict()

    # ------------------------------------------------------------------ forks

    def fork(self) -> "TextParser":
        """A parser for :meth:`parse_chunk` on another thread, once this one
        has learnt the file's format and header layout: it shares them and
        what never changes (parsed GFP strings, event names), and has its own
        problems, line counts, meta and caches.  Its event layouts are set
        per chunk (:attr:`_body_layouts`); :meth:`absorb` takes its results."""
        fork = TextParser(self.source, self.problems.strict, self.fmt, self.columns)
        fork._layout, fork._layout_tried = self._layout, self._layout_tried
        fork._gfp, fork._event_names = self._gfp, self._event_names
        return fork

    def tallies(self) -> tuple:
        """What this parser found since the last call -- problems, line counts,
        meta -- for :meth:`absorb`; its tallies then start again."""
        out = (self.problems, self.line_counts, self.meta)
        self.problems = ProblemLog(self.source, self.problems.strict)
        self.line_counts = dict.fromkeys(self.line_counts, 0)
        self.meta = {}
        return out

    def absorb(self, tallies: tuple, learnt: dict) -> None:
        """Take a fork's :meth:`tallies` of one chunk and the event layouts it
        ``learnt`` there, as if this parser had parsed that chunk (the chunk
        after the last one it took)."""
        problems, line_counts, meta = tallies
        self.problems.merge(problems)
        for k, v in line_counts.items():
            self.line_counts[k] += v
        for k, v in meta.items():
            if k == "cpus":  # the first header that gives it
                self.meta.setdefault(k, v)
            else:
                self.meta[k] = v
        self._body_layouts.update(learnt)

    def _learn_ts_width(self, frame: pl.DataFrame) -> int | None:
        """Width of the timestamp field (``%5lu.%06lu`` and the like: up to the
        first ``": "`` after the layout's timestamp column) on most of the
        chunk's first lines, for :meth:`_express_query`; None if there is no
        clear majority."""
        d0 = self._layout.ts_start
        votes: Counter = Counter()
        sample = frame.head(64)["l"].drop_nulls().to_list()
        for s in sample:
            i = s.find(": ")
            if i >= d0:
                votes[i - d0] += 1
        if not votes:
            return None
        w, n = votes.most_common(1)[0]
        return w if w >= 7 and n * 4 >= len(sample) * 3 else None

    def _lines(self, chunk: bytes) -> tuple[pl.DataFrame, list[int]]:
        """The chunk as one String column ``l`` (one row per line), and the
        indexes of lines with binary garbage (emptied)."""
        arr = np.frombuffer(chunk, dtype=np.uint8)
        if self._cmp is None or self._cmp.size < arr.size:
            self._cmp = np.empty(arr.size, dtype=bool)
        ctrl = int(np.count_nonzero(np.less(arr, 32, out=self._cmp[: arr.size])))
        clean = self._ascii = chunk.isascii()
        if not clean:
            try:
                chunk.decode("utf-8")
                clean = True
            except UnicodeDecodeError:
                pass
        if clean:
            try:
                frame = pl.read_csv(
                    chunk,
                    has_header=False,
                    separator="\x01",
                    quote_char=None,
                    new_columns=["l"],
                    schema={"l": pl.String},
                    comment_prefix=None,
                )
            except pl.exceptions.PolarsError:
                frame = None
            # the only control bytes allowed are the newlines, one per row
            if frame is not None and ctrl == frame.height - (0 if chunk.endswith(b"\n") else 1):
                return frame, []
        raw_lines = chunk.split(b"\n")
        if chunk.endswith(b"\n"):
            raw_lines.pop()
        bad_rx = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")
        text: list[str | None] = []
        garbage: list[int] = []
        for i, raw in enumerate(raw_lines):
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            try:
                s = raw.decode("utf-8")
            except UnicodeDecodeError:
                s = None
            if s is None or bad_rx.search(raw):
                garbage.append(i)
                text.append(None)
            else:
                text.append(s or None)
        return pl.DataFrame({"l": pl.Series("l", text, dtype=pl.String)}), garbage

    # ------------------------------------------------------------------ header

    def _parse_frame(self, frame: pl.DataFrame) -> pl.DataFrame | None:
        """The event rows of a chunk: the ordinary lines of events whose
        layout is known in one pass (:mod:`kmemdes.trace._express`), the
        other lines by :meth:`_parse_rows`, merged in line order."""
        express = None
        if self._layout is not None and self._ts_width is not None and self.fmt == "ftrace" and _EXPRESS:
            from kmemdes.trace._express import express_rows, merge_rows

            express, frame = express_rows(self, frame)
        chunk = self._parse_rows(frame) if frame.height else None
        keep = None if self.columns is None else list(dict.fromkeys((*self.columns, "line", "ts", "kind", "event")))
        if chunk is not None:
            self._unknown_gfp(chunk)
            if keep is not None:  # the columns kept and those accept needs, and no more
                chunk = chunk.select(keep)
        if express is not None:
            self._unknown_gfp(express, pl.col("_ok"))  # before the merge: cheaper on one piece
            if keep is not None:
                express = express.select(*keep, "_ok")
            chunk = merge_rows(express, chunk)
        return chunk

    def _parse_rows(self, frame: pl.DataFrame) -> pl.DataFrame | None:
        """Header fields for every line, then the body of each event type;
        the typed columns are put back in line order next to the header
        (a conformed frame, None if no line is a row)."""
        fast = self._fast_header(frame) if self._layout is not None else None
        if fast is not None:
            n_ok = int(fast["_ok"].sum())
            if n_ok == fast.height:
                ok, rest = fast.select(_HEADER_COLS), frame.clear()
            else:
                ok = fast.filter(pl.col("_ok")).select(_HEADER_COLS)
                rest = fast.filter(~pl.col("_ok")).select("l", "line")
        else:
            ok, rest = None, frame
        lost = None
        events = ok
        if rest.height:
            slow, lost = self._slow_header(rest)
            if slow.height:
                events = slow if ok is None else pl.concat([ok, slow], how="vertical_relaxed").sort("line")
        chunk = self._typed_chunk(events) if events is not None and events.height else None
        if chunk is None and (lost is None or not lost.height):
            return None
        if lost is not None and lost.height:
            chunk = lost if chunk is None else pl.concat([chunk, lost], how="diagonal_relaxed").sort("line")
        return conform(chunk)

    def _typed_chunk(self, events: pl.DataFrame) -> pl.DataFrame | None:
        """Parse each event type's bodies and scatter the typed columns back
        into the rows of ``events`` (which are in line order).

        Each group carries its row positions (``_i``), so the typed columns
        are scattered by position; ``kind`` is one small array filled per
        group and ``event`` is the printed name (renamed only where it differs).
        """
        n = events.height
        cols: dict[str, pl.Series] = {}
        kind = np.zeros(n, dtype=np.uint8)
        keep = None
        names: dict[str, str] = {}
        for (ev,), part in events.select(
            "line", "ev", "body", _i=pl.int_range(n, dtype=pl.UInt32)
        ).partition_by("ev", as_dict=True, maintain_order=True).items():
            idx = part["_i"]
            res = self._parse_event(ev, part)
            if res is None:
                if keep is None:
                    keep = np.ones(n, dtype=bool)
                keep[idx.to_numpy()] = False
                continue
            name, k, out = res
            names[ev] = name
            kind[idx.to_numpy()] = k
            for c in out.columns:
                col = cols.get(c)
                if col is None:
                    col = cols[c] = pl.Series(c, dtype=EVENT_SCHEMA[c]).extend_constant(None, n)
                vals = out[c]
                if vals.dtype != EVENT_SCHEMA[c]:
                    vals = vals.cast(EVENT_SCHEMA[c])
                col.scatter(idx, vals)
        if not names:
            return None
        ev = pl.col("ev")
        if any(raw != name for raw, name in names.items()):  # perf: "kmem:kfree", padded
            ev = ev.replace_strict(names, default=None, return_dtype=pl.String)
        chunk = events.select("line", "ts", "cpu", "pid", "comm", "flags", event=ev).with_columns(
            pl.Series("kind", kind), *cols.values()
        )
        if keep is not None:
            chunk = chunk.filter(pl.Series(keep))
        return chunk

    def _fast_header(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Header fields of the lines that fit the learnt layout; ``_ok`` marks
        lines where every check passed.

        The prefix before the timestamp is parsed once per distinct value
        (a few hundred per chunk) and joined back.  The timestamp
        ``secs.usecs`` (``%5lu.%06lu``) is parsed as one float and rounded to
        whole microseconds, exact below 10^9 s of uptime.
        """
        lay = self._layout
        assert lay is not None
        d0, w = lay.ts_start, self._ts_width
        if w is None:
            out = self._header_query(frame.lazy(), d0).collect()
        else:
            out = self._express_query(frame.lazy(), d0, w).collect()
            x = out["_x"].fill_null(False)
            if x.all():
                out = out.drop("_x")
            else:  # lines whose first ": " is elsewhere: the general query
                rest = self._header_query(out.lazy().filter(~pl.col("_x").fill_null(False)).select("l", "line"), d0)
                out = pl.concat([out.filter(x).drop("_x"), rest.collect()]).sort("line")
        out = out.with_columns(self._prefix_fields(out["_pre"]))
        return out.select("l", *_HEADER_COLS, _ok=pl.col("_ok0") & pl.col("_pok").fill_null(False))

    def _prefix_fields(self, prefixes: pl.Series) -> list[pl.Series]:
        """``comm, pid, cpu, flags, _pok`` of each line from its prefix (the
        line up to the layout's timestamp column), parsed once per distinct
        prefix of the file with the layout's ``prefix_re`` and gathered back."""
        lay = self._layout
        assert lay is not None
        if self._prefixes.full:
            self._prefixes, self._prefix_table = _Interned(), pl.DataFrame(schema=_PREFIX_SCHEMA)
        ids = self._prefixes.ids(prefixes)
        rows = []
        for pre in self._prefixes.strings[max(self._prefix_table.height - 1, 0):]:
            m = lay.prefix_re.match(pre)
            if m is None:
                rows.append((None, None, None, None, False))
                continue
            pid, cpu = int(m.group("pid")), int(m.group("cpu"))
            fl = m.groupdict().get("flags")
            ok = -(2**31) <= pid < 2**31 and cpu < 2**15
            rows.append((m.group("comm").lstrip(" ") if ok else None, pid if ok else None,
                         cpu if ok else None, fl, ok))
        if rows or self._prefix_table.height == 0:
            # the table of distinct prefixes, and a last row (null fields) for lines without one
            new = pl.DataFrame(rows + [(None, None, None, None, False)], schema=_PREFIX_SCHEMA, orient="row")
            self._prefix_table = pl.concat([self._prefix_table.head(-1), new], rechunk=True)
        codes = ids.fill_null(self._prefix_table.height - 1)
        return [self._prefix_table[c].gather(codes) for c in _PREFIX_SCHEMA]

    @staticmethod
    def _header_query(lf: pl.LazyFrame, d0: int) -> pl.LazyFrame:
        """Columns ``l, line, ts, ev, body, _pre, _ok0`` of lines cut at the
        learnt timestamp column ``d0``: the timestamp runs to the first ``": "``
        after it, the event name to the next ``": "``."""
        l = pl.col("l")
        p, q, r, tsf = pl.col("_p"), pl.col("_q"), pl.col("_r"), pl.col("_tsf")
        t = pl.col("_t")  # the line from the timestamp on
        return (
            lf.with_columns(_pre=l.str.slice(0, d0), _t=l.str.slice(d0))
            .with_columns(_p=t.str.find(": ", literal=True))
            .with_columns(
                _tsf=_ts_seconds(t.str.slice(0, p)),
                _dot=t.str.slice(p - 7, 1) == ".",
                _r=t.str.slice(p + 2),
            )
            .with_columns(_q=r.str.find(": ", literal=True))
            .with_columns(
                ev=r.str.slice(0, q),
                body=r.str.slice(q + 2),
                ts=_ts_ns(tsf),
            )
            .select("l", "line", "ts", "ev", "body", "_pre",
                    _ok0=(pl.col("_dot") & (tsf >= 0) & (tsf < _TS_MAX_S) & (q > 0) & (p >= 7)).fill_null(False))
        )

    @staticmethod
    def _express_query(lf: pl.LazyFrame, d0: int, w: int) -> pl.LazyFrame:
        """:meth:`_header_query` for an ASCII chunk whose timestamps are ``w``
        characters wide: every slice is at a constant offset.  Column ``_x``
        marks the lines where the line's first ``": "`` is at ``d0 + w``; for
        those the timestamp field is exactly ``[d0, d0 + w)`` (bytes are
        characters), so every column equals :meth:`_header_query`'s.  The
        other lines must go through :meth:`_header_query`."""
        assert w >= 7
        l = pl.col("l")
        q, r, tsf = pl.col("_q"), pl.col("_r"), pl.col("_tsf")
        return (
            lf.with_columns(
                _x=l.str.find(": ", literal=True) == d0 + w,
                _pre=l.str.slice(0, d0),
                _tsf=_ts_seconds(l.str.slice(d0, w)),
                _dot=l.str.slice(d0 + w - 7, 1) == ".",
                _r=l.str.slice(d0 + w + 2),
            )
            .with_columns(_q=r.str.find(": ", literal=True))
            .select("l", "line", ts=_ts_ns(tsf),
                    ev=r.str.slice(0, q), body=r.str.slice(q + 2), _pre=pl.col("_pre"),
                    _ok0=(pl.col("_dot") & (tsf >= 0) & (tsf < _TS_MAX_S) & (q > 0)).fill_null(False),
                    _x=pl.col("_x"))
        )

    def _slow_header(self, rest: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        """Classify the lines the fast path left: blank, header, LOST marker,
        event (by regular expression), or a problem."""
        l = pl.col("l")
        rest = rest.with_columns(_s=l.str.strip_chars())
        s = pl.col("_s")
        blank = rest.filter(s.is_null() | (s == ""))
        self.line_counts["blank"] += blank.height
        rest = rest.filter(s.is_not_null() & (s != ""))
        is_head = s.str.starts_with("#") | s.str.contains(r"^cpus=\d+$")
        heads = rest.filter(is_head)
        if heads.height:
            self.line_counts["header"] += heads.height
            for text in heads["_s"].to_list():
                m = re.match(r"^cpus=(\d+)$", text) or re.search(r"#P:(\d+)", text)
                if m and "cpus" not in self.meta:
                    self.meta["cpus"] = int(m.group(1))
                m = re.match(r"^#\s*tracer:\s*(\S+)", text)
                if m:
                    self.meta["tracer"] = m.group(1)
            rest = rest.filter(~is_head)
        if not rest.height:
            return rest.clear().select([]), None
        rest = rest.with_columns(
            _lost=l.str.extract_groups(_LOST_RE),
            _h=l.str.extract_groups(_HEADER_RE[self.fmt or "ftrace"]),
        )
        lost_mask = pl.col("_lost").struct.field("1").is_not_null()
        lost_rows = rest.filter(lost_mask)
        lost = None
        if lost_rows.height:
            lost = lost_rows.select(
                "line",
                cpu=pl.col("_lost").struct.field("1").cast(pl.Int16),
                npurged=pl.coalesce(
                    pl.col("_lost").struct.field("2"), pl.col("_lost").struct.field("3")
                ).cast(pl.Int64),
                kind=pl.lit(int(EventKind.LOST), pl.UInt8),
                event=pl.lit("LOST"),
            )
        rest = rest.filter(~lost_mask)
        h = pl.col("_h").struct
        ev_ok = h.field("ev").is_not_null()
        bad = rest.filter(~ev_ok)
        if bad.height:
            garbage = bad.filter(l.str.contains(_GARBAGE_RE))
            if garbage.height:
                lines, ex, n = _first_lines(garbage)
                self.problems.add("binary_garbage", lines, ex, "binary garbage in a text line", n)
            other = bad.filter(~l.str.contains(_GARBAGE_RE))
            if other.height:
                lines, ex, n = _first_lines(other)
                self.problems.add("unparsed_line", lines, ex, f"not a {self.fmt} event line: {ex[:80]!r}", n)
            self.line_counts["dropped"] += bad.height
        good = rest.filter(ev_ok)
        self.line_counts["slow_path"] += good.height
        frac = h.field("frac")
        scale = pl.lit(10, pl.Int64).pow(9 - frac.str.len_chars().clip(1, 9).cast(pl.Int64))
        slow = good.select(
            "line",
            ts=pl.when(h.field("secs").str.to_integer(strict=False) < _TS_MAX_S).then(
                h.field("secs").str.to_integer(strict=False) * 1_000_000_000
                + frac.str.slice(0, 9).str.to_integer(strict=False) * scale),
            cpu=h.field("cpu").str.to_integer(dtype=pl.Int16, strict=False),
            pid=h.field("pid").str.to_integer(dtype=pl.Int32, strict=False),
            comm=h.field("comm").str.strip_chars_start(" "),
            flags=pl.when(h.field("flags") == "").then(None).otherwise(h.field("flags")),
            ev=h.field("ev"),
            body=h.field("body").fill_null(""),
        )
        bad_num = slow.filter(pl.col("ts").is_null() | pl.col("cpu").is_null() | pl.col("pid").is_null())
        if bad_num.height:
            lines, ex, n = _first_lines(bad_num)
            self.problems.add("bad_field", lines, ex, "timestamp, cpu or pid out of range", n)
        return slow, lost

    # ------------------------------------------------------------------ bodies

    def _event_name(self, raw: str) -> str | None:
        """Event name from the printed one (perf: ``kmem:kmalloc``, padded)."""
        name = self._event_names.get(raw, ...)
        if name is ...:
            s = raw.strip()
            if ":" in s:
                s = s.rsplit(":", 1)[1]
            name = s if re.fullmatch(r"[A-Za-z_]\w*", s) else None
            self._event_names[raw] = name
        return name

    def _parse_event(self, raw_ev: str, part: pl.DataFrame) -> tuple[str, int, pl.DataFrame] | None:
        """``(event name, kind, typed columns)`` of one event's rows (columns
        ``line`` and ``body``), or None when the name is not an event name
        (the rows are then dropped and counted)."""
        name = self._event_name(raw_ev)
        if name is None:
            lines, _, n = _first_lines(part)
            ex = part["body"][0] if part.height else ""
            self.problems.add("unparsed_line", lines, f"{raw_ev}: {ex}", f"bad event name {raw_ev!r}", n)
            self.line_counts["dropped"] += n
            return None
        kind = EventKind.from_name(name)
        body = pl.col("body")
        if self.fmt == "trace-cmd-report":
            body = body.str.strip_chars_start(" ")
            if name in _SLAB_EVENTS:
                body = pl.when(body.str.starts_with("(")).then(
                    body.str.slice(body.str.find(") ", literal=True) + 2)
                ).otherwise(body)
        part = part.select("line", body.alias("body"))
        if name not in KIND_BY_NAME and kind not in (EventKind.COMPACTION, EventKind.VMSCAN, EventKind.LRU):
            lines, _, n = _first_lines(part)
            self.problems.add(
                "unknown_event", lines, f"{name}: {part['body'][0]}", f"unknown event {name!r} (kept as kind OTHER)", n
            )
        family = _FAMILY.get(name)
        if family is None:
            b = pl.col("body")
            has = part.select(o=b.str.contains("order=", literal=True).any(),
                              n=b.str.contains(r"(?:nid|node|node_id)=").any()).row(0)
            cols = part.select(
                args=b,
                order=b.str.extract(r"(?:^|[\s,(])order=(-?\d+)").str.to_integer(dtype=pl.Int8, strict=False)
                if has[0] else pl.lit(None, pl.Int8),
                nid=b.str.extract(r"(?:^|\s)(?:nid|node|node_id)=(-?\d+)").str.to_integer(dtype=pl.Int16, strict=False)
                if has[1] else pl.lit(None, pl.Int16),
            )
            return name, int(kind), cols
        return name, int(kind), self._typed_fields(name, family, part)

    def _learn_from(self, name: str, family: tuple, part: pl.DataFrame) -> None:
        """Learn the layout of event ``name`` from its first rows (``body``)."""
        sample = part.head(_LAYOUT_SAMPLE).select(_collapse(pl.col("body")))["body"].drop_nulls().to_list()
        self._body_layouts[name] = self._learn_body_layout(name, family, sample)

    def _learn_body_layout(self, name: str, family: tuple, bodies: list[str]) -> tuple | None:
        """The key order of an event in this file (most common among sample
        bodies, a subsequence of the family's print order with all required
        keys) and, per key, whether its values carry a ``0x`` prefix."""
        canon, required, _ = family
        votes: Counter = Counter()
        hexp: Counter = Counter()
        for body in bodies:
            keys = []
            for tok in body.split(" "):
                k, eq, v = tok.partition("=")
                if not eq:
                    keys = None
                    break
                keys.append(k)
                if v.startswith("0x"):
                    hexp[k] += 1
                elif v not in _NULL_PTRS:
                    hexp[k] -= 1
            if not keys:
                continue
            it = iter(canon)
            if all(k in it for k in keys) and required <= set(keys):  # subsequence of canon
                votes[tuple(keys)] += 1
        if not votes:
            return None
        keys, n = votes.most_common(1)[0]
        prefixes = tuple(k + "=0x" if hexp[k] > 0 and _CONV.get(_column_of(k, family) or "", _INT) in (_PTR, _NUM) else k + "=" for k in keys)
        return keys, prefixes

    def _typed_fields(self, name: str, family: tuple, part: pl.DataFrame) -> pl.DataFrame:
        """Typed columns of one event's rows, by position (fast) or by key.

        Fast path: split at single spaces, field *i* must start with the
        learnt ``key=`` (checked for text fields; numeric fields must convert).
        Rows that fail go to :meth:`_by_key` and are counted as problems.
        """
        body = pl.col("body")
        if name == "alloc_vmap_area":
            part = part.with_columns(body.str.replace(r"^va_start: *", "va_start="))
        collapse = _collapse(body)
        if name not in self._body_layouts:
            self._learn_from(name, family, part)
        layout = self._body_layouts[name]
        # A body with a run of spaces has an empty field, which fails every
        # positional check; so the positional pass can run on the raw bodies
        # and only the rows it rejects need collapsing (and a second pass).
        # Events whose raw body is kept in ``args`` collapse every row first.
        late = layout is not None and all(_column_of(k, family) is not None for k in layout[0])
        if not late and part.select(body.str.contains("  ", literal=True).any()).item():
            part = part.with_columns(collapse)
        canon = family[0]
        good = None
        bad = part
        if layout is not None:
            vals = self._by_position(family, layout, part)
            n_ok = int(vals["_ok"].sum())
            if n_ok < vals.height and late:
                # from here on ``part`` holds only the rejected rows (collapsed)
                part = part.join(vals.filter(~pl.col("_ok")).select("line"), on="line", how="semi")
                if part.select(body.str.contains("  ", literal=True).any()).item():
                    part = part.with_columns(collapse)
                    vals = pl.concat([vals.filter(pl.col("_ok")), self._by_position(family, layout, part)]).sort("line")
                    n_ok = int(vals["_ok"].sum())
            if n_ok == vals.height:
                good, bad = vals.drop("_ok"), None
            else:
                good = vals.filter(pl.col("_ok")).drop("_ok") if n_ok else None
                bad = part.join(vals.filter(~pl.col("_ok")).select("line"), on="line", how="semi")
        if bad is not None and bad.height:
            deviant = self._by_key(name, family, layout[0] if layout else None, bad)
            exprs = []
            bad_exprs = []
            for key in canon:
                col = _column_of(key, family)
                if col is None or "_k_" + key not in deviant.columns:
                    continue
                rawc = pl.col("_k_" + key)
                conv = _convert(rawc, col)
                exprs.append(conv.alias(col))
                if _CONV.get(col, _INT) != _STR:
                    bad_exprs.append((rawc.is_not_null() & conv.is_null()).alias("_bad_" + key))
            dv = deviant.select("line", *exprs, *bad_exprs, *[pl.col(c) for c in deviant.columns if c.startswith("_k_")])
            for be in bad_exprs:
                bname = be.meta.output_name()
                key = bname[5:]
                if not dv[bname].any():
                    continue
                badrows = dv.filter(pl.col(bname))
                lines = badrows.head(_MAX_LINES)["line"].to_list()
                val = badrows["_k_" + key][0]
                self.problems.add(
                    "bad_field", lines, f"{name}: {key}={val}", f"{name}: bad value {key}={val!r}", badrows.height
                )
            dv = dv.select("line", *[e.meta.output_name() for e in exprs])
            out = dv if good is None else pl.concat([good, dv], how="diagonal_relaxed").sort("line")
        else:
            out = good
        if name == "mm_page_alloc" and "pfn" in out.columns:
            # a failed allocation prints page=NULL pfn=0: store -1
            out = out.with_columns(pfn=_failed_alloc_pfn(pl.col("pfn")))
        if "gfp_flags" in out.columns:
            out = out.with_columns(gfp=self._gfp_bits(out["gfp_flags"]))
        if any(_column_of(k, family) is None for k in (layout[0] if layout else ())):
            out = out.with_columns(args=part["body"])
        return out.drop("line")

    @staticmethod
    def _by_position(family: tuple, layout: tuple, part: pl.DataFrame) -> pl.DataFrame:
        """``line``, the typed columns and ``_ok`` of rows split at single
        spaces, field *i* taken by position (see :meth:`_typed_fields`).

        The fields after the pointers (``name= bytes_req= ... accounted=``,
        ``order= migratetype= gfp_flags=``) repeat a lot: that tail of the
        body is parsed once per distinct string (a few dozen per chunk) and
        gathered back; splitting a string at its first spaces and the rest
        at its spaces gives the same fields as splitting it at once.
        """
        keys, prefixes = layout
        k = len(keys)
        # (small groups: the second query costs more than it saves)
        h = _tail_start(family, keys) if part.height >= _TAIL_MIN_ROWS else k
        f = pl.col("_f").struct
        exprs, checks, converted, ptrs = _positional(family, keys[:h], prefixes[:h], f)
        if h == k:
            checks.append(f.field(f"field_{k}").is_null())
            vals = (
                part.lazy()
                .select("line", _f=pl.col("body").str.split_exact(" ", k))
                .select("line", *exprs, *[f.field(fn) for _, fn, _ in ptrs], _ok=pl.all_horizontal(checks))
                .with_columns(_ok=pl.all_horizontal([pl.col("_ok"), *converted]).fill_null(False))
                .collect()
            )
        else:
            # the body from field h on (null where it has fewer than h fields)
            start = sum(f.field(f"field_{i}").str.len_chars() for i in range(h)) + h
            head = (
                part.lazy()
                .select("line", "body", _f=pl.col("body").str.split_exact(" ", h - 1))
                .select("line", *exprs, *[f.field(fn) for _, fn, _ in ptrs],
                        _ok=pl.all_horizontal(checks) if checks else pl.lit(True),
                        _tail=pl.when(f.field(f"field_{h - 1}").is_not_null()).then(pl.col("body").str.slice(start)))
                .with_columns(_ok=pl.all_horizontal([pl.col("_ok"), *converted]))
                .collect()
            )
            tails = [t for t in head["_tail"].unique().to_list() if t is not None]
            table = _fields_table(family, keys[h:], prefixes[h:], tails + [None])
            codes = head["_tail"].cast(pl.Enum(tails)).to_physical().fill_null(len(tails))
            tail = table.select(pl.all().gather(codes))
            vals = pl.concat([head.drop("_tail", "_ok"), tail.drop("_ok")], how="horizontal").select(
                "line", *[_column_of(key, family) for key in keys if _column_of(key, family) is not None],
                *[fn for _, fn, _ in ptrs],
                _ok=pl.all_horizontal(head["_ok"], tail["_ok"]).fill_null(False),
            )
        fix = [
            pl.when(pl.col(f).is_in([key + "=" + z for z in _NULL_PTRS]))
            .then(pl.lit(0, EVENT_SCHEMA[c])).otherwise(pl.col(c)).alias(c)
            for c, f, key in ptrs
            if vals[c].null_count()
        ]
        if fix:
            vals = vals.with_columns(fix)
        if ptrs:
            vals = vals.with_columns(_ok=pl.all_horizontal([pl.col("_ok")] + [pl.col(c).is_not_null() for c, _, _ in ptrs]))
            vals = vals.drop([f for _, f, _ in ptrs])
        return vals

    def _gfp_bits(self, flags: pl.Series) -> pl.Series:
        """Decoded GFP bits of printed masks, parsing each distinct string once."""
        uniq = flags.drop_nulls().unique().to_list()
        for g in uniq:
            if g not in self._gfp:
                try:
                    bits = parse_gfp(g)
                except ValueError:
                    bits = None
                # gfp_t is 32 bits: a wider number is not a mask (an unknown_gfp problem)
                self._gfp[g] = bits if bits is not None and 0 <= bits < 1 << 32 else None
        # each row's mask as an index into the distinct masks (null rows: the last entry, null)
        codes = flags.cast(pl.Enum(uniq)).to_physical().fill_null(len(uniq))
        table = pl.Series(flags.name, [self._gfp[g] for g in uniq] + [None], dtype=pl.UInt32)
        return table.gather(codes)

    def _by_key(self, name: str, family: tuple, keys: tuple | None, bad: pl.DataFrame) -> pl.DataFrame:
        """Rows that do not fit the event's layout: take fields by key, and
        count each row as a ``truncated_line`` (fields missing at the end) or
        a ``bad_field``."""
        canon, required, _ = family
        body = pl.col("body")
        vals = bad.select(
            "line",
            "body",
            **{"_k_" + key: body.str.extract(rf"(?:^| ){re.escape(key)}=(\S*)") for key in canon},
        )
        expect = list(keys) if keys is not None else [k for k in canon if k in required]
        present = [pl.col("_k_" + k).is_not_null() & (pl.col("_k_" + k) != "") for k in expect]
        prefix = pl.lit(0)
        run = pl.lit(True)
        for pr in present:
            run = run & pr
            prefix = prefix + run.cast(pl.Int32)
        count = pl.sum_horizontal([pr.cast(pl.Int32) for pr in present]) if present else pl.lit(0)
        # same keys as the layout, nothing more: only the values may be bad (counted later)
        same = (count == len(expect)) & (body.str.count_matches("=", literal=True) == len(expect))
        trunc = (count == prefix) & (count < len(expect))
        vals = vals.with_columns(_same=same.fill_null(False))
        structural = vals.filter(~pl.col("_same"))
        cls = structural.with_columns(_trunc=trunc)
        t = cls.filter(pl.col("_trunc"))
        if t.height:
            lines, ex, n = _first_lines(t)
            self.problems.add(
                "truncated_line", lines, f"{name}: {ex}", f"{name}: line cut short, fields missing: {ex[:100]!r}", n
            )
        o = cls.filter(~pl.col("_trunc"))
        if o.height:
            lines, ex, n = _first_lines(o)
            want = " ".join(k + "=" for k in expect)
            self.problems.add(
                "bad_field", lines, f"{name}: {ex}", f"{name}: fields do not match '{want}': {ex[:100]!r}", n
            )
        return vals.drop("body", "_same")

    # ------------------------------------------------------------------ chunk end

    def _unknown_gfp(self, rows: pl.DataFrame, among: pl.Expr | None = None) -> None:
        """Count the rows (``among`` those selected) whose GFP string did not decode."""
        unknown = pl.col("gfp").is_null() & pl.col("gfp_flags").is_not_null()
        mask = rows.select(unknown if among is None else unknown & among).to_series()
        if mask.any():
            bad = rows.filter(mask)
            lines = bad.head(_MAX_LINES)["line"].to_list()
            g0 = bad["gfp_flags"][0]
            self.problems.add("unknown_gfp", lines, g0, f"unknown GFP flag in gfp_flags={g0!r}", bad.height)

    def _finish_chunk(self, chunk: pl.DataFrame) -> pl.DataFrame:
        """LOST timestamps and the time-order check."""
        lost = chunk["kind"] == int(EventKind.LOST)
        if lost.any():
            first = pl.lit(self._last_ts, pl.Int64) if self._last_ts is not None else pl.lit(None, pl.Int64)
            chunk = chunk.with_columns(ts=pl.col("ts").forward_fill().fill_null(first))
        ts = chunk["ts"]
        prev = ts.shift(1, fill_value=self._last_ts) if self._last_ts is not None else ts.shift(1)
        back = (ts < prev).fill_null(False)
        nback = int(back.sum())
        if nback:
            rows = chunk.with_columns(_prev=prev).filter(back)
            lines = rows.head(_MAX_LINES)["line"].to_list()
            t1, t0 = rows["ts"][0], rows["_prev"][0]
            what = f"{rows['event'][0]} at {t1 / 1e9:.6f} s, {(t0 - t1) / 1e3:.0f} us before the previous line"
            self.problems.add(
                "time_backwards", lines, what, f"timestamp goes backwards: {what}", nback
            )
        last = ts.drop_nulls()
        if last.len():
            self._last_ts = int(last[-1])
        return chunk

    # ------------------------------------------------------------------ output

    def finish(self) -> tuple[pl.DataFrame, dict, dict]:
        """The event table (file order), meta and problems."""
        if self._frames:
            events = pl.concat(self._frames, how="vertical", rechunk=False)
        else:
            events = pl.DataFrame(schema=EVENT_SCHEMA)
            if self.columns is not None:
                events = events.select(self.columns)
        self._frames = []
        meta = dict(self.meta)
        meta["format"] = self.fmt or "ftrace"
        meta["lines"] = dict(self.line_counts)
        return events, meta, self.problems.as_dict()




def parse_text(
    chunks: Iterable[bytes], source: object = "<text>", strict: bool = False, fmt: str | None = None
) -> tuple[pl.DataFrame, dict, dict]:
    """Parse text chunks (each a run of whole lines) into ``(events, meta, problems)``.

    >>> line = b"bash-12948   [001] .....  1968.174923: mm_page_alloc: page=ffffea00053e27c0 pfn=0x14f89f order=0 migratetype=0 gfp_flags=GFP_KERNEL\\n"
    >>> ev, meta, problems = parse_text([b"            " + line])
    >>> ev.select("line", "ts", "cpu", "pid", "comm", "event", "pfn", "order", "gfp").row(0)
    (1, 1968174923000, 1, 12948, 'bash', 'mm_page_alloc', 1374367, 0, 3264)
    >>> meta["format"], problems
    ('ftrace', {})
    """
    parser = TextParser(source, strict=strict, fmt=fmt)
    for chunk in chunks:
        parser.feed(chunk)
    return parser.finish()
