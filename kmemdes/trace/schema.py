"""The canonical event table: one Polars row per trace event, whatever the source format.

Every parser (:mod:`kmemdes.trace.text`, :mod:`kmemdes.trace.tracedat`) and the
``.kmt`` container produce exactly :data:`EVENT_SCHEMA`; replay and statistics
read only this table.  Columns that an event does not have are null.

Columns
-------
=====================  =========  ============================================================
column                 dtype      meaning
=====================  =========  ============================================================
``line``               Int64      1-based line (text) or record number (binary) in the source
``ts``                 Int64      timestamp in ns (``secs.usecs`` x 1e9, or the ring-buffer ns)
``cpu``                Int16      CPU that recorded the event
``pid``                Int32      task pid (``-1`` as perf prints it for unknown tasks)
``comm``               String     task name as printed (``<...>`` when unknown)
``flags``              String     latency flags column (``d..3.``); null when the format has none
``kind``               UInt8      :class:`EventKind` code (integer, for fast dispatch)
``event``              String     event name without group (``mm_page_alloc``), exactly as printed
``pfn``                Int64      page frame number (``-1``: failed allocation, printed as 0/NULL)
``order``              Int8       ``order`` / ``alloc_order`` (compaction events: ``order``)
``migratetype``        Int8       ``migratetype`` / ``alloc_migratetype`` (as printed, 4.4+ numbering)
``gfp``                UInt32     decoded GFP bits (:func:`kmemdes.mm.gfp.parse_gfp`); null if unknown
``gfp_flags``          String     GFP mask as printed
``page``               UInt64     ``page=`` value (struct page pointer, hashed id, or pfn in
                                  trace-cmd/perf output)
``percpu_refill``      Int8       ``mm_page_alloc_zone_locked`` percpu_refill
``fallback_order``     Int8       ``mm_page_alloc_extfrag`` fallback_order
``fallback_migratetype`` Int8     ``mm_page_alloc_extfrag`` fallback_migratetype
``fragmenting``        Int8       ``mm_page_alloc_extfrag`` fragmenting
``change_ownership``   Int8       ``mm_page_alloc_extfrag`` change_ownership
``ptr``                UInt64     slab object pointer (raw address or hashed id; NULL is 0)
``call_site``          String     call site as printed (``func+0xoff/0xsize`` or raw hex)
``bytes_req``          Int64      kmalloc / kmem_cache_alloc bytes_req
``bytes_alloc``        Int64      kmalloc / kmem_cache_alloc bytes_alloc
``cache``              String     ``name=`` of kmem_cache_alloc / kmem_cache_free
``node``               Int16      ``node=`` (-1: any)
``accounted``          Boolean    ``accounted=`` (memcg)
``va_start``           UInt64     vmalloc area start (alloc_vmap_area prints it in decimal)
``va_end``             UInt64     purge_vmap_area_lazy ``end``
``size``               Int64      alloc_vmap_area size (with guard page)
``align``              Int64      alloc_vmap_area align
``vstart``             UInt64     alloc_vmap_area vstart
``vend``               UInt64     alloc_vmap_area vend
``failed``             Int8       alloc_vmap_area failed
``nr_lazy``            Int64      free_vmap_area_noflush nr_lazy
``nr_lazy_max``        Int64      free_vmap_area_noflush nr_lazy_max
``npurged``            Int64      purge_vmap_area_lazy num_purged; LOST rows: events lost
``nid``                Int16      node id (compaction / vmscan events)
``args``               String     the raw field text for events without typed columns
                                  (compaction details, rss_stat, tracing_mark_write, unknown)
=====================  =========  ============================================================

>>> import polars as pl
>>> empty_events().schema == pl.Schema(EVENT_SCHEMA)
True
>>> EventKind.from_name("mm_page_free_direct") is EventKind.MM_PAGE_FREE
True
"""

from __future__ import annotations

import enum

import polars as pl


__all__ = ["EVENT_SCHEMA", "EventKind", "KIND_BY_NAME", "conform", "empty_events", "SCHEMA_VERSION", "PAGE_KINDS",
           "bad_page_event", "bad_object_event", "KMALLOC_MAX_SIZE"]

SCHEMA_VERSION = 1
# include/linux/mmzone.h, as kmemdes.mm.page_alloc (and slub) has it: not imported from there, since
# reading a trace needs no allocator model and compiling page_alloc costs a convert ~20 ms
MAX_PAGE_ORDER = 10


class EventKind(enum.IntEnum):
    """Integer codes of event kinds; replay dispatches on these."""

    OTHER = 0  # any event outside kmem/vmalloc/compaction (rss_stat, sched_*, ...)
    MARKER = 1  # tracing_mark_write / ftrace print
    LOST = 2  # "CPU:N [LOST n EVENTS]": npurged holds n, cpu the CPU
    KMALLOC = 10
    KMEM_CACHE_ALLOC = 11
    KFREE = 12
    KMEM_CACHE_FREE = 13
    MM_PAGE_ALLOC = 20
    MM_PAGE_FREE = 21
    MM_PAGE_FREE_BATCHED = 22
    MM_PAGE_ALLOC_ZONE_LOCKED = 23
    MM_PAGE_PCPU_DRAIN = 24
    MM_PAGE_ALLOC_EXTFRAG = 25
    KMEM_OTHER = 29  # other kmem events (mm_setup_per_zone_wmarks, ...)
    ALLOC_VMAP_AREA = 30
    FREE_VMAP_AREA_NOFLUSH = 31
    PURGE_VMAP_AREA_LAZY = 32
    COMPACTION = 40  # mm_compaction_* (details in args)
    VMSCAN = 41  # mm_vmscan_* (details in args)
    LRU = 42  # pagemap's mm_lru_* (mm_lru_activate: a folio moved to the active LRU; pfn in args)

    @classmethod
    def from_name(cls, name: str) -> "EventKind":
        """Kind of an event name, any kernel era (``mm_page_free_direct`` is a free)."""
        kind = KIND_BY_NAME.get(name)
        if kind is not None:
            return kind
        if name.startswith("mm_compaction_"):
            return cls.COMPACTION
        if name.startswith(("mm_vmscan_", "mm_shrink_slab")):
            return cls.VMSCAN
        if name.startswith("mm_lru_"):
            return cls.LRU
        return cls.OTHER


KIND_BY_NAME: dict[str, EventKind] = {
    "kmalloc": EventKind.KMALLOC,
    "kmalloc_node": EventKind.KMALLOC,
    "kmem_cache_alloc": EventKind.KMEM_CACHE_ALLOC,
    "kmem_cache_alloc_node": EventKind.KMEM_CACHE_ALLOC,
    "kfree": EventKind.KFREE,
    "kmem_cache_free": EventKind.KMEM_CACHE_FREE,
    "mm_page_alloc": EventKind.MM_PAGE_ALLOC,
    "mm_page_free": EventKind.MM_PAGE_FREE,
    "mm_page_free_direct": EventKind.MM_PAGE_FREE,  # before 3.3
    "mm_page_free_batched": EventKind.MM_PAGE_FREE_BATCHED,
    "mm_pagevec_free": EventKind.MM_PAGE_FREE_BATCHED,  # before 3.3
    "mm_page_alloc_zone_locked": EventKind.MM_PAGE_ALLOC_ZONE_LOCKED,
    "mm_page_pcpu_drain": EventKind.MM_PAGE_PCPU_DRAIN,
    "mm_page_alloc_extfrag": EventKind.MM_PAGE_ALLOC_EXTFRAG,
    "rss_stat": EventKind.OTHER,
    "mm_setup_per_zone_wmarks": EventKind.KMEM_OTHER,
    "mm_setup_per_zone_lowmem_reserve": EventKind.KMEM_OTHER,
    "mm_calculate_totalreserve_pages": EventKind.KMEM_OTHER,
    "alloc_vmap_area": EventKind.ALLOC_VMAP_AREA,
    "free_vmap_area_noflush": EventKind.FREE_VMAP_AREA_NOFLUSH,
    "purge_vmap_area_lazy": EventKind.PURGE_VMAP_AREA_LAZY,
    "tracing_mark_write": EventKind.MARKER,
    "print": EventKind.MARKER,
}

EVENT_SCHEMA: dict[str, pl.DataType] = {
    "line": pl.Int64(),
    "ts": pl.Int64(),
    "cpu": pl.Int16(),
    "pid": pl.Int32(),
    "comm": pl.String(),
    "flags": pl.String(),
    "kind": pl.UInt8(),
    "event": pl.String(),
    "pfn": pl.Int64(),
    "order": pl.Int8(),
    "migratetype": pl.Int8(),
    "gfp": pl.UInt32(),
    "gfp_flags": pl.String(),
    "page": pl.UInt64(),
    "percpu_refill": pl.Int8(),
    "fallback_order": pl.Int8(),
    "fallback_migratetype": pl.Int8(),
    "fragmenting": pl.Int8(),
    "change_ownership": pl.Int8(),
    "ptr": pl.UInt64(),
    "call_site": pl.String(),
    "bytes_req": pl.Int64(),
    "bytes_alloc": pl.Int64(),
    "cache": pl.String(),
    "node": pl.Int16(),
    "accounted": pl.Boolean(),
    "va_start": pl.UInt64(),
    "va_end": pl.UInt64(),
    "size": pl.Int64(),
    "align": pl.Int64(),
    "vstart": pl.UInt64(),
    "vend": pl.UInt64(),
    "failed": pl.Int8(),
    "nr_lazy": pl.Int64(),
    "nr_lazy_max": pl.Int64(),
    "npurged": pl.Int64(),
    "nid": pl.Int16(),
    "args": pl.String(),
}


def empty_events() -> pl.DataFrame:
    """An event table with no rows and the canonical schema."""
    return pl.DataFrame(schema=EVENT_SCHEMA)


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """Give a parser's frame the canonical schema: missing columns become nulls,
    present ones are cast to their canonical dtype, columns come in schema order.

    >>> conform(pl.DataFrame({"event": ["kfree"], "ptr": [0]})).select("event", "ptr", "pfn").row(0)
    ('kfree', 0, None)
    """
    cols = []
    for name, dtype in EVENT_SCHEMA.items():
        if name in frame.columns:
            cols.append(pl.col(name).cast(dtype))
        else:
            cols.append(pl.lit(None, dtype=dtype).alias(name))
    return frame.select(cols)


PFN_LIMIT = 1 << (52 - 12)  # MAX_PHYSMEM_BITS (x86-64, 5-level paging) over 4 KiB pages
PAGE_KINDS = tuple(int(k) for k in (EventKind.MM_PAGE_ALLOC, EventKind.MM_PAGE_FREE, EventKind.MM_PAGE_FREE_BATCHED,
                                    EventKind.MM_PAGE_ALLOC_ZONE_LOCKED, EventKind.MM_PAGE_PCPU_DRAIN,
                                    EventKind.MM_PAGE_ALLOC_EXTFRAG))


def _valid_order(name: str) -> pl.Expr:
    return pl.col(name).is_not_null() & (pl.col(name) >= 0) & (pl.col(name) <= MAX_PAGE_ORDER)


def bad_page_event(columns) -> pl.Expr:
    """True for a page event with a field no kernel prints: ``order`` (or an extfrag's
    ``fallback_order``) outside 0..MAX_PAGE_ORDER, a missing or negative pfn (-1 is a failed
    ``mm_page_alloc`` only) or one beyond 52-bit physical addresses, a negative migratetype.  ``columns``: the frame's columns (``kind``,
    ``pfn`` and ``order`` are needed, the others are checked when present).  Compaction events are
    not page events: their ``order=-1`` (proactive compaction) is the kernel's.

    >>> ev = pl.DataFrame({"kind": [20, 20, 21, 40, 20, 20], "pfn": [5, -1, -1, None, 9, 2**63 - 1],
    ...                    "order": [0, 0, 0, -1, 11, 0]})
    >>> ev.select(bad_page_event(ev.columns))["kind"].to_list()
    [False, False, True, False, True, True]
    """
    kind = pl.col("kind")
    alloc, extfrag = int(EventKind.MM_PAGE_ALLOC), int(EventKind.MM_PAGE_ALLOC_EXTFRAG)
    ok = _valid_order("order")
    ok &= pl.col("pfn").is_not_null() & ((pl.col("pfn") >= 0) | ((pl.col("pfn") == -1) & (kind == alloc)))
    ok &= pl.col("pfn") < PFN_LIMIT
    if "migratetype" in columns:
        ok &= pl.col("migratetype").fill_null(0) >= 0
    if "fallback_order" in columns:
        ok &= (kind != extfrag) | _valid_order("fallback_order")
    if "fallback_migratetype" in columns:
        ok &= pl.col("fallback_migratetype").fill_null(0) >= 0
    return (kind.is_in(list(PAGE_KINDS)) & ~ok).fill_null(False)


KMALLOC_MAX_SIZE = 1 << (MAX_PAGE_ORDER + 12)  # include/linux/slab.h: the largest kmalloc (4 MiB)
OBJECT_KINDS = tuple(int(k) for k in (EventKind.KMALLOC, EventKind.KMEM_CACHE_ALLOC))


def bad_object_event(columns) -> pl.Expr:
    """True for a slab allocation (``kmalloc`` / ``kmem_cache_alloc``) that succeeded with a
    ``bytes_req`` or ``bytes_alloc`` outside 0..KMALLOC_MAX_SIZE: no kernel prints it (a failed
    allocation, ``ptr=0``, may print any requested size).

    >>> ev = pl.DataFrame({"kind": [10, 10, 11, 12], "ptr": [8, 0, 8, 8], "bytes_req": [64, 1 << 40, -1, None],
    ...                    "bytes_alloc": [64, 0, 64, None]})
    >>> ev.select(bad_object_event(ev.columns))["kind"].to_list()
    [False, False, True, False]
    """
    def bad(c: str) -> pl.Expr:
        return (pl.col(c) < 0) | (pl.col(c) > KMALLOC_MAX_SIZE) if c in columns else pl.lit(False)

    ok_ptr = pl.col("ptr").fill_null(0) != 0 if "ptr" in columns else pl.lit(True)
    return (pl.col("kind").is_in(list(OBJECT_KINDS)) & ok_ptr & (bad("bytes_req") | bad("bytes_alloc"))).fill_null(False)
