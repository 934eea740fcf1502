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
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from kmemdes.errors import KmemdesError
from kmemdes.mm.gfp import format_gfp
from kmemdes.trace._columns import Columns, Table, factorize, string_codes
from kmemdes.trace._kallsyms import Kallsyms
from kmemdes.trace._datfile import (
    TRACEDAT_MAGIC,
    _Bad,
    _File,
    _load_bytes,
    _parse_file,
    _parse_format,
    _problem,
    is_tracedat,
)
from kmemdes.trace._ringbuf import _page_layout, _read_field, _read_strings, _Records, _walk_pages
from kmemdes.trace.printfmt import render_print_fmt
from kmemdes.trace._trace import Trace
from kmemdes.trace.schema import EventKind, empty_events

__all__ = ["TRACEDAT_MAGIC", "is_tracedat", "read_tracedat"]

_U64_MAX = (1 << 64) - 1
_BLOCK_ROWS = 1 << 19  # rows handed to a sink at a time: a .kmt chunk (kmemdes.trace.kmt's _CHUNK_ROWS)
_GFP_ACCOUNT = 0x400000


# --------------------------------------------------------------------------- symbols and comms


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
    for pid, comm in _CMDLINE_RE.findall(raw.decode("utf-8", "replace")):  # one match per line
        out.setdefault(int(pid), comm)
    return out


_CMDLINE_RE = re.compile(r"^[^\S\n]*(-?\d+)[^\S\n]+(.+)$", re.M)


# --------------------------------------------------------------------------- records -> columns


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
_ARGS_KINDS = {EventKind.OTHER, EventKind.MARKER, EventKind.KMEM_OTHER, EventKind.COMPACTION, EventKind.VMSCAN,
               EventKind.LRU}
_NID_FIELDS = ("nid", "node_id", "node")


def _decode(tf: _File, buf: np.ndarray, rec: _Records, problems: dict, emit: Callable[[Table], None] | None = None,
            block_rows: int = 0) -> tuple[Columns, np.ndarray, dict]:
    """Typed columns of every record, event type by event type: (columns, rows to keep, counts).

    ``emit``: handed the rows as Tables of ``block_rows`` kept rows (the last one fewer),
    each as soon as its columns are filled, so that a writer encodes it while later rows
    are decoded.  The checks that count problems, and the string fields that may, run
    over all rows first (the problems are those of one pass), then the other fields block
    by block."""
    n = len(rec.off)
    big = tf.big
    cols = Columns(n)
    cols.put_all("line", np.arange(1, n + 1, dtype=np.int64))
    cols.put_all("ts", rec.ts.view(np.int64))
    cols.put_all("cpu", rec.cpu)
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
    roff = rec.off[real]
    etype = _read_field(buf, roff, tsize, big)
    pid = _read_field(buf, roff, common["common_pid"], big)
    cols.put("pid", real, pid)
    if "common_flags" in common and "common_preempt_count" in common:
        ctx = _read_field(buf, roff, common["common_flags"], big).astype(np.int64)
        ctx |= _read_field(buf, roff, common["common_preempt_count"], big).astype(np.int64) << 8
        uctx, cinv = factorize(ctx)
        cols.put_str("flags", real, cinv, [_lat_flags(c & 0xFF, c >> 8) for c in uctx.tolist()])
    comms = _cmdline_map(tf.cmdlines)
    upid, pinv = factorize(pid)
    names = ["<idle>" if p == 0 else comms.get(p, "<...>") for p in upid.tolist()]
    cols.put_str("comm", real, pinv, names)
    # LOST rows (kbuffer_missed_events): report prints "CPU:N [n EVENTS DROPPED]"
    if lost.size:
        cols.put("kind", lost, int(EventKind.LOST))
        cols.put_str("event", lost, 0, ["LOST"])
        nl = rec.lost[lost]
        known = nl > 0
        if known.any():
            cols.put("npurged", lost[known], nl[known])
        _problem(problems, "lost_events", int(lost[0]) + 1, f"cpu{int(rec.cpu[lost[0]])} dropped events", lost.size)
    keep = np.zeros(n, np.bool_)
    keep[lost] = True
    kallsyms = None
    groups = []  # (event, kind, rows, string columns read for all its rows), by event id
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
        strings = {}  # formatted once per distinct value: per block, that would be repeated
        if kind in (EventKind.KMALLOC, EventKind.KMEM_CACHE_ALLOC, EventKind.MM_PAGE_ALLOC) and _int_field(ev, "gfp_flags"):
            ug, ginv = factorize(_read_field(buf, rec.off[idx], ev.fields["gfp_flags"], big))
            strings["gfp_flags"] = (ginv, [format_gfp(int(x) & _U64_MAX) for x in ug.tolist()])
        if kind in _CALL_SITE_KINDS and _int_field(ev, "call_site"):
            if kallsyms is None:
                kallsyms = Kallsyms(tf.kallsyms)
            ucs, cinv = factorize(_read_field(buf, rec.off[idx], ev.fields["call_site"], big))
            strings["call_site"] = (cinv, kallsyms.format(ucs.astype(np.uint64)))
        if kind in _CACHE_KINDS and "name" in ev.fields:
            strings["cache"] = _read_strings(buf, rec.off[idx], rec.size[idx], ev.fields["name"], big, problems)
        if kind in _ARGS_KINDS or kind not in _FIELD_MAP:
            if kallsyms is None:
                kallsyms = Kallsyms(tf.kallsyms)
            strings["args"] = string_codes(render_print_fmt(ev, buf, rec.off[idx], rec.size[idx], big, kallsyms, problems))
        groups.append((ev, kind, idx, strings))
    # every problem is counted by now: the fields of each block of rows, which count none
    cuts = _blocks(keep, block_rows) if emit is not None else [0, n]
    for start, stop in zip(cuts[:-1], cuts[1:]):
        for ev, kind, idx, strings in groups:
            lo, hi = np.searchsorted(idx, (start, stop))
            if lo == hi:
                continue
            _fields(cols, big, buf, ev, kind, idx[lo:hi], rec.off[idx[lo:hi]])
            for col, (codes, values) in strings.items():
                cols.put_str(col, idx[lo:hi], codes[lo:hi], values)
        if emit is not None:
            emit(cols.table(keep, start, stop))
    return cols, keep, counts


def _blocks(keep: np.ndarray, rows: int) -> list:
    """Row numbers cutting the records into blocks of ``rows`` kept rows (the last one fewer).

    >>> _blocks(np.array([1, 0, 1, 1, 0, 1, 1], bool), 2)
    [0, 3, 6, 7]
    """
    cum = np.cumsum(keep)
    kept = int(cum[-1]) if len(cum) else 0
    return [0, *(np.searchsorted(cum, np.arange(rows, kept, rows), side="left") + 1).tolist(), len(keep)]


def _fields(cols: Columns, big: bool, buf: np.ndarray, ev, kind: EventKind, idx: np.ndarray, off: np.ndarray) -> None:
    """The numeric columns of records ``idx`` (payloads at ``off``) of one event type, and
    its name (the other string columns are read beforehand, for all its records)."""
    cols.put("kind", idx, int(kind))
    cols.put_str("event", idx, 0, [ev.name])
    vals: dict = {}

    def fv(name: str):
        if name not in vals:
            vals[name] = _read_field(buf, off, ev.fields[name], big) if _int_field(ev, name) else None
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
    if kind == EventKind.KMALLOC and "accounted" not in ev.fields:
        g = fv("gfp_flags")
        if g is not None:
            cols.put("accounted", idx, (g.astype(np.uint64) & np.uint64(_GFP_ACCOUNT)) != 0)
    if kind in _ARGS_KINDS or kind not in _FIELD_MAP:
        for nf in _NID_FIELDS:
            v = fv(nf)
            if v is not None:
                cols.put("nid", idx, v)
                break
        if kind in (EventKind.COMPACTION, EventKind.VMSCAN) and fv("order") is not None:
            cols.put("order", idx, fv("order"))


def _int_field(ev, name: str) -> bool:
    """Is ``name`` a plain integer field of the event (what ``_fields`` reads)?"""
    f = ev.fields.get(name)
    return f is not None and not (f.elem or f.data_loc or f.rel_loc) and f.size in (1, 2, 4, 8)


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


def read_tracedat(path, strict: bool = False, sink: Callable[[Table], None] | None = None) -> Trace:
    """Read a trace-cmd ``trace.dat`` (version 6 or 7, optionally zstd-compressed as a whole).

    Structural errors in the metadata (header, formats, options, section and
    CPU-data offsets) raise :class:`KmemdesError` naming the file and byte
    offset.  Damaged ring-buffer pages and records are skipped and counted in
    ``problems`` (kind -> count, first byte offsets, example); with
    ``strict=True`` the first such problem raises instead.  ``sink``: the
    table is handed to it as :class:`~kmemdes.trace._columns.Table` blocks of
    rows (numpy columns, string columns as codes into their distinct strings,
    which :class:`kmemdes.trace.kmt.KmtWriter` encodes without building a Polars
    frame), each as soon as it is decoded, instead of being returned (the
    returned table is then empty).

    >>> from pathlib import Path
    >>> p = Path(__file__).resolve().parents[2] / "traces" / "tracedat_small" / "trace.dat"
    >>> t = read_tracedat(p) if p.exists() else None
    >>> t is None or (t.meta["format"].startswith("trace.dat-v") and t.events.height > 0)
    True
    """
    path = Path(path)
    data = _load_bytes(path)
    problems: dict = {}

    def check() -> None:
        if strict and problems:
            kind, p = next(iter(problems.items()))
            raise KmemdesError(f"{path}: byte {p['lines'][0] if p['lines'] else 0}: {kind} ({p['count']}x): {p['example']}")

    def emit(table: Table) -> None:  # every problem is counted before the first block
        check()
        sink(table)

    try:
        tf = _parse_file(path, data)
        problems = tf.problems
        cols, keep, counts, meta = _read_data(tf, data, problems, emit if sink is not None else None)
    except _Bad as e:
        raise KmemdesError(f"{path}: byte {e.offset}: {e.what}") from None
    check()
    meta["event_counts"] = counts
    frame = cols.frame(keep) if sink is None else empty_events()
    return Trace(events=frame, meta=meta, problems=problems)


def _read_data(tf: _File, data: bytes, problems: dict, emit: Callable[[Table], None] | None = None):
    lay = _page_layout(tf)
    # one big byte buffer: every stream's pages at page-aligned offsets
    streams = []  # (buffer name, cpu, offset in big, npages)
    parts = []
    total = 0
    for b in tf.buffers:
        ps = b.page_size or tf.page_size
        if ps != tf.page_size:
            raise _Bad(0, f"buffer {b.name!r}: sub-buffer size {ps} differs from the file page size {tf.page_size}")
        for cpu, pieces in b.cpus:
            npg, rest = divmod(sum(len(x) for x in pieces), ps)
            if rest:
                _problem(problems, "partial_page", 0, f"buffer {b.name!r} cpu{cpu}: {rest} bytes after the last whole page")
            streams.append((b.name, cpu, total, npg))
            parts.append((pieces, npg * ps))
            total += npg * ps
    buf = np.empty(total + 16, np.uint8)
    buf[total:] = 0
    at = 0
    for pieces, want in parts:  # each stream's whole pages, copied once
        for x in pieces:
            n = min(len(x), want)
            buf[at : at + n] = np.frombuffer(x, np.uint8, n)
            at += n
            want -= n
    for b in tf.buffers:  # the pieces are in buf now
        b.cpus = [(cpu, []) for cpu, _ in b.cpus]
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
    del off, ln, ts, pg, lostcol, stream, order  # page-order copies: not needed from here on
    cols, keep, counts = _decode(tf, buf, rec, problems, emit, _BLOCK_ROWS)
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
    return cols, keep, counts, meta
