"""Trace replay: the events of a real trace driven through the models over simulated time.

Two modes (DESIGN.md, "Replay modes"):

``mirror``
    apply the placements the kernel made.  ``mm_page_alloc_zone_locked`` takes a
    block off the buddy lists (onto the CPU's pcp list when ``percpu_refill``),
    ``mm_page_alloc`` takes it from the pcp or buddy lists, ``mm_page_free`` puts it
    on the CPU's pcp list (pcp orders) or merges it into the buddy lists,
    ``mm_page_pcpu_drain`` moves a block from a pcp list to the buddy lists,
    ``mm_page_alloc_extfrag`` retypes pageblocks when ownership changed.  The
    model's free lists then follow the kernel's, reconstructing the buddyinfo
    and fragmentation timeline /proc never recorded.  Traces without
    ``mm_page_pcpu_drain`` events (trace-cmd captures of kmem/* may lack them)
    let the model's own pcp high/batch logic decide the drains.
``policy``
    keep the trace's requests (order, GFP, migratetype, which free ends which
    allocation, timing) and let the model place them under the configured
    policy: the what-if mode.

Real traces start mid-stream and miss some paths (traces/README.md); every
such case is handled by a named rule and counted, never silently dropped:

=================================  =====================================================================
rule                               what happened and what the replay does
=================================  =====================================================================
batched_after_free                 ``mm_page_free_batched`` after ``mm_page_free`` of the pfn: one free (skip)
free_of_untraced_page              free of pages allocated before the trace (or by an untraced bulk
                                   allocation): they join the free pool (applied)
free_of_page_free_in_model         free of pages the model already holds free: state mismatch (skipped)
alloc_of_page_not_free_in_model    the kernel took pages the model thought in use (pre-trace pcp contents,
                                   snapshot layout guess): forced allocated (applied)
zone_locked_of_page_not_free_in_model   idem for a zone_locked take (applied)
drain_of_untraced_pcp_page         drain of a block that sat on a pcp list before the trace (applied)
drain_of_page_not_on_pcp           drain of a block the model holds free elsewhere (skipped)
free_after_untraced_bulk_alloc     free of a block the model holds on a pcp list since a refill: the
                                   bulk allocator took it without an event (applied: off the list, freed);
                                   vmalloc's bulk allocations are taken at their alloc_vmap_area instead
                                   (sim/bulk.py; pages in quirk_pages bulk_alloc_untraced)
zone_growth                        deferred init handing memory over: an ``mm_page_free`` of a block in
                                   offline pageblocks onlines that block free (sim/growth.py); another
                                   event on an offline pfn onlines its 163,840-page step (applied)
pfn_outside_memory                 (mirror mode) a page event beyond the simulated machine's memory (counted only)
bad_page_field, bad_object_field   a page event with an order, pfn or migratetype, a slab allocation with a size,
                                   that no kernel prints (skipped; timestamps out of place are repaired and
                                   counted apart: kmemdes.sim.sanitize)
end_snapshot_read                  rows a ``kmemdes capture --kpageflags`` traced after reading after/buddyinfo,
                                   while it read the rest of after/ (not replayed: kmemdes.sim.sanitize)
kfree_null                         ``kfree(NULL)`` / ``kfree(ZERO_SIZE_PTR)``: no-op (skipped)
free_of_untraced_object            slab free of an object allocated before the trace (skipped)
alloc_of_live_pointer              allocation of a still-live pointer: an untraced free first (applied)
vfree_of_untraced_area             ``free_vmap_area_noflush`` of an area allocated before the trace
lost_events                        ``[LOST n EVENTS]`` marker: state after it is unreliable (noted)
not_an_allocator_event             markers, rss_stat, other groups (counted only)
compaction_event                   (mirror) compaction events other than isolations and migrations (begin and
                                   end bound a run; suitable, finished, deferral, kcompactd: counted only)
compaction_isolate_not_free_in_model   (mirror) pages compaction isolated (free scanner) or needed as targets
                                   that the model did not hold free (counted, pages noted)
reclaim_event                      vmscan events (reclaim's frees are mm_page_free events of their own)
lru_event                          (mirror) pagemap's ``mm_lru_activate``: a folio moved to the active LRU, no
                                   page changes hands (counted only); in policy mode the model's LRU follows it
lru_activate_not_in_model          (policy mode) an activation of a folio the model does not hold as page
                                   cache on its inactive list (anonymous, reclaimed or failed in the model)
redecided_by_policy                (policy mode) zone_locked, pcpu_drain and extfrag lines: the model
                                   re-decides these itself
slab_page_by_model                 (policy mode) a slab or large-kmalloc page of the trace (and its free):
                                   the object events drive the SLUB model, which allocates its own
=================================  =====================================================================

``events_replayed`` + the sum of the quirk counts = the events in the trace.
"""

from __future__ import annotations

from bisect import bisect_left
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from kmemdes.mm import gfp as G
from kmemdes.mm.page_alloc import (
    MIGRATE_ISOLATE,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    NOLIST,
    NO_ORDER,
    PAGE_ALLOC_COSTLY_ORDER,
    PAGEBLOCK_NR_PAGES,
    PAGEBLOCK_ORDER,
    PATH_BUDDY,
    PATH_CLAIM,
    PATH_FAILED,
    PATH_PCP,
    PATH_PCP_REFILL,
    PATH_STEAL,
    Node,
)
from kmemdes.sim.cost import CostModel, LatencyHistogram
from kmemdes.sim.bulk import bulk_areas, take_pcp_pages
from kmemdes.sim.growth import online_freed_block
from kmemdes.sim.sanitize import Sanitized, sanitize_events
from kmemdes.sim.slabstats import OBJECT_KINDS, ObjectStats, object_stats
from kmemdes.sim.traced_compaction import TracedCompaction
from kmemdes.sim.policy_pages import NOT_TRIED, PolicyPages, readahead_expr
from kmemdes.trace.pressure import (
    BY_WORKLOAD,
    OP_FAST_FREE,
    OP_ISO_FREE,
    OP_ACTIVATE,
    OP_ISO_MIGRATE,
    OP_MIGRATE,
    decided_by_kernel,
    kernel_ops,
)
from kmemdes.trace.schema import EventKind

__all__ = ["ReplayStats", "Replayer", "DEFERRED_INIT_STEP", "POLICY_TICK_NS", "READ_COLUMNS", "POLICY_READ_COLUMNS",
           "slim_events", "readahead_readers"]

DEFERRED_INIT_STEP = 163840  # pages handed over per deferred-init step on the reference machine
#: policy mode's tick: the events of [t, t + 100 us) are applied at t, then kswapd and kcompactd (SimPy
#: processes) run.  The kernel's daemons work beside the workload on the other CPU: a woken kswapd starts
#: within 4-72 us in three of four wake-ups of the pressure captures (``KSWAPD_WAKE_LATENCY_NS``), and
#: its first order-9 folio is free ~30 us later.  With the mirror's 1 ms tick a burst of readahead
#: folios (a lab capture of the thp-pressure load: 8 wake-ups of kswapd in one ms) all found the
#: free lists as kswapd had left them and went to direct compaction and reclaim together.  Medians of
#: 4 seeds, 1 ms -> 100 us: same-policy targets met j 1 -> 3 of 6 (THP fallbacks 28 -> 43, kernel 77;
#: compaction successes 58 -> 83, kernel 133), k 4 -> 4 (order-9 failures 410 -> 385, kernel 176), lab
#: captures l stock 5 -> 6, m stock 3 -> 5, l defrag_mode 1 -> 1; 1-4 % more time.  25 us gives j the same.
POLICY_TICK_NS = 100_000
_ZERO_SIZE_PTR = 0x10
_GFP_ZERO = G.__GFP_ZERO
_GFP_DIRECT_RECLAIM = G.__GFP_DIRECT_RECLAIM
_GFP_ACCOUNT = G.__GFP_ACCOUNT
_GFP_KMALLOC_FAMILY = G.__GFP_ACCOUNT | G.__GFP_RECLAIMABLE | G.__GFP_DMA

K_KMALLOC = int(EventKind.KMALLOC)
K_KCACHE_ALLOC = int(EventKind.KMEM_CACHE_ALLOC)
K_KFREE = int(EventKind.KFREE)
K_KCACHE_FREE = int(EventKind.KMEM_CACHE_FREE)
_MT_BYTES = (b"\x00", b"\x01", b"\x02")
K_ALLOC = int(EventKind.MM_PAGE_ALLOC)
K_FREE = int(EventKind.MM_PAGE_FREE)
K_BATCHED = int(EventKind.MM_PAGE_FREE_BATCHED)
K_ZONE_LOCKED = int(EventKind.MM_PAGE_ALLOC_ZONE_LOCKED)
K_DRAIN = int(EventKind.MM_PAGE_PCPU_DRAIN)
K_EXTFRAG = int(EventKind.MM_PAGE_ALLOC_EXTFRAG)
K_VMAP = int(EventKind.ALLOC_VMAP_AREA)
K_VFREE = int(EventKind.FREE_VMAP_AREA_NOFLUSH)
K_PURGE = int(EventKind.PURGE_VMAP_AREA_LAZY)
K_LOST = int(EventKind.LOST)
K_COMPACTION = (int(EventKind.COMPACTION), int(EventKind.VMSCAN))
K_VMSCAN = int(EventKind.VMSCAN)
K_LRU = int(EventKind.LRU)
#: the lines policy mode re-decides (redecided_by_policy): the kernel's placements, drains, compaction, reclaim
_REDECIDED = frozenset((K_ZONE_LOCKED, K_DRAIN, K_EXTFRAG, *K_COMPACTION))


@dataclass
class ReplayStats:
    """What a replay did: counts by rule, requests, latencies, slab and vmalloc usage."""

    events: int = 0
    replayed: int = 0
    quirks: dict = field(default_factory=dict)
    quirk_pages: dict = field(default_factory=dict)
    requests: dict = field(default_factory=dict)  # (order, gfp_class, path) -> count
    failures: list = field(default_factory=list)  # (t_ns, order, gfp_flags)
    fallbacks: dict = field(default_factory=dict)  # (alloc_mt, fallback_mt, kind, fragmenting) -> count
    sizes: dict = field(default_factory=dict)  # (kind, bucket) -> count
    slab: dict = field(default_factory=dict)  # cache -> [objs, bytes_req, bytes_alloc, allocs, frees]
    vm_live: dict = field(default_factory=dict)  # va_start -> size
    vm_lazy: dict = field(default_factory=dict)  # va_start -> size
    vm_purges: int = 0
    online_pages: int = 0
    notes: list = field(default_factory=list)


def _ints(s: pl.Series) -> list:
    """An integer column as a list of Python ints (through numpy when it has no nulls: about twice as
    fast as ``Series.to_list``); nulls stay None."""
    if s.dtype.is_integer() and not s.null_count():
        return s.to_numpy().tolist()
    return s.to_list()


def _inc(d: dict, k, n: int = 1) -> None:
    d[k] = d.get(k, 0) + n


SLIM_COLUMNS = ("ts", "kind", "cpu", "pfn", "order", "migratetype", "gfp", "percpu_refill", "fallback_order",
                "fallback_migratetype", "change_ownership", "ptr", "bytes_req", "bytes_alloc", "cache", "va_start",
                "va_end", "size", "failed", "npurged")
#: the columns :func:`slim_events` reads (a .kmt or Parquet decodes no others)
READ_COLUMNS = SLIM_COLUMNS + ("event", "args", "pid")
#: policy mode also reads the task names (:func:`readahead_readers`)
POLICY_READ_COLUMNS = READ_COLUMNS + ("comm",)


def slim_events(events: pl.DataFrame, decided: bool = True) -> tuple[pl.DataFrame, dict, pl.DataFrame]:
    """The columns a replay uses (strings dropped or categorical), the event counts by name, and the
    typed compaction / vmscan ops (:func:`kmemdes.trace.pressure.kernel_ops`, keyed by row ``seq``):
    compaction moves pages without allocation events, its tracepoints say where.

    ``decided``: with the ``decided`` column (:func:`kmemdes.trace.pressure.decided_by_kernel`), which
    only policy mode reads."""
    # counted per (kind, name): grouping on the small integer first is several times faster
    by_type: dict[str, int] = {}
    for _, name, n in events.group_by("kind", "event").len().sort("event", "kind").iter_rows():
        by_type[name] = by_type.get(name, 0) + n
    ops = kernel_ops(events.lazy().with_row_index("seq").filter(pl.col("kind").is_in((*K_COMPACTION, K_LRU))), "seq")
    # narrower than the canonical schema where this trace's values allow (kmalloc sizes below 2 GiB)
    wide = ("bytes_req", "bytes_alloc", "npurged")
    lo_hi = events.select(*[pl.col(c).min().alias(c + "_lo") for c in wide],
                          *[pl.col(c).max().alias(c + "_hi") for c in wide]).row(0, named=True)
    narrow = [c for c in wide if -(2**31) <= (lo_hi[c + "_lo"] or 0) and (lo_hi[c + "_hi"] or 0) < 2**31]
    extra = {}
    if decided:
        extra["decided"] = (decided_by_kernel(events.lazy().with_row_index("seq"), ops) if "pid" in events.columns
                            else pl.lit(BY_WORKLOAD, pl.Int8))
        # the task of each request: a THP fault's retry without __GFP_THISNODE is the same task's, on
        # whichever CPU it runs by then (a compaction stall lasts long enough to migrate)
        extra["pid"] = events["pid"].cast(pl.Int32) if "pid" in events.columns else pl.lit(None, pl.Int32)
        if "comm" in events.columns:
            extra["comm"] = events["comm"].cast(pl.Categorical)
    slim = events.select(*SLIM_COLUMNS).with_columns(pl.col("cache").cast(pl.Categorical),
                                                     pl.col(narrow).cast(pl.Int32), **extra)
    return slim, by_type, ops


def readahead_readers(events: pl.DataFrame) -> dict[int, tuple[str, int]]:
    """pid -> (task name, requests) of the tasks whose page requests include readahead folios the
    kernel served (:func:`kmemdes.sim.policy_pages.is_readahead`: movable, ``__GFP_NORETRY``,
    compound, not zeroed, not a THP fault), from a slimmed policy-mode table with its ``pid`` and
    ``comm`` columns.

    >>> ra = G.parse_gfp("GFP_NOFS|__GFP_HIGHMEM|__GFP_MOVABLE|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP")
    >>> ev = pl.DataFrame({"kind": [K_ALLOC] * 4, "pfn": [1, 2, 3, 4], "pid": [7, 7, 8, 9],
    ...                    "comm": ["cat", "cat", "<...>", "cc1"], "order": [9, 0, 0, 0],
    ...                    "gfp": [ra, ra, ra, G.GFP_KERNEL]}).with_columns(pl.col("comm").cast(pl.Categorical))
    >>> readahead_readers(ev)
    {7: ('cat', 2)}
    """
    rows = (events.lazy().filter((pl.col("kind") == K_ALLOC) & (pl.col("pfn") >= 0) & pl.col("pid").is_not_null()
                                 & readahead_expr())
            .group_by("pid").agg(pl.col("comm").cast(pl.String).filter(pl.col("comm").cast(pl.String) != "<...>").first(),
                                 pl.len()).collect())
    # a task whose name the trace never printed (``<...>``) is nobody's re-reader
    return {int(p): (c, int(n)) for p, c, n in rows.iter_rows() if c is not None}


def slab_page_mask(events: pl.DataFrame) -> pl.Series:
    """Which ``mm_page_alloc`` rows are slab pages (or large-kmalloc pages): with raw pointers, the
    pages that hold a traced object (``(ptr - PAGE_OFFSET) >> 12``); with hashed pointers, the GFP
    masks SLUB uses for slab pages (``__GFP_COMP|__GFP_NOWARN|__GFP_NORETRY``, order <= 3, not movable)."""
    page_offset, span = 0xFFFF888000000000, 64 << 40
    objs = events.lazy().filter(pl.col("kind").is_in([K_KMALLOC, K_KCACHE_ALLOC]))
    in_map = (pl.col("ptr") >= page_offset) & (pl.col("ptr") < page_offset + span)
    n_obj, n_raw = objs.select(pl.len(), in_map.sum()).collect().row(0)
    is_alloc = pl.col("kind") == K_ALLOC
    if n_raw > 0.5 * n_obj > 0:
        obj_pfns = objs.filter(in_map).select(((pl.col("ptr") - page_offset) // 4096).cast(pl.Int64).alias("p"))
        pages = (events.lazy().with_row_index("i").filter(is_alloc & (pl.col("pfn") >= 0) & (pl.col("order") <= 10))
                 .select("i", pl.int_ranges(pl.col("pfn"), pl.col("pfn") + pl.lit(2, pl.Int64).pow(
                     pl.col("order").cast(pl.Int64))).alias("p")).explode("p"))
        hit = pages.join(obj_pfns.unique(), on="p", how="semi").select(pl.col("i").unique()).collect()["i"]
        mask = np.zeros(events.height, dtype=bool)
        mask[hit.to_numpy()] = True
        return pl.Series("slab_page", mask)
    slab_gfp = G.__GFP_COMP | G.__GFP_NOWARN | G.__GFP_NORETRY
    return events.select((is_alloc & ((pl.col("gfp") & slab_gfp) == slab_gfp) & (pl.col("order") <= 3)
                          & ((pl.col("gfp") & G.__GFP_MOVABLE) == 0)).fill_null(False).alias("slab_page"))["slab_page"]


def _next_page_event(ev: pl.DataFrame):
    """``(pfns, pos) -> array of 1 | 0 | -1``: for each pfn, whether the next page event naming it
    after loop position ``pos`` frees it (1), takes or drains it (0), or there is none (-1); one
    vectorised search for all of them.  Evidence for where the kernel's compaction took free pages
    without events (:mod:`kmemdes.sim.traced_compaction`)."""
    pe = (ev.lazy().select("pfn", "kind").with_row_index("pos")
          .filter(pl.col("kind").is_in([K_ALLOC, K_FREE, K_BATCHED, K_ZONE_LOCKED, K_DRAIN]) & (pl.col("pfn") >= 0))
          .select(key=pl.col("pfn").cast(pl.UInt64) * (1 << 32) + pl.col("pos").cast(pl.UInt64),
                  free=pl.col("kind").is_in([K_FREE, K_BATCHED]))
          .sort("key").collect())
    keys = pe["key"].to_numpy()
    free = np.append(pe["free"].to_numpy().astype(np.int8), np.int8(0))
    n = len(keys)
    top = np.append(keys >> np.uint64(32), np.uint64(1) << np.uint64(63))  # a sentinel that matches no pfn

    def next_events(pfns, pos: int) -> np.ndarray:
        p = np.asarray(pfns, dtype=np.uint64)
        j = np.searchsorted(keys, (p << np.uint64(32)) | np.uint64(pos), side="right")
        return np.where(top[j] == p, free[j], np.int8(-1))

    return next_events


_REF_CACHES: dict | None = None


def _reference_caches() -> dict:
    """name -> (object_size, align, reclaim) of the 6.18 reference machine's slab caches."""
    global _REF_CACHES
    if _REF_CACHES is None:
        import csv
        from importlib import resources

        data = resources.files("kmemdes") / "data"
        groups = {}
        for r in csv.DictReader(data.joinpath("slab_caches_6.18.tsv").read_text().splitlines(), delimiter="\t"):
            groups[r["cache"]] = (int(r["object_size"]), int(r["align"]), r["reclaim_account"] == "1")
        out = {k: v for k, v in groups.items() if not k.startswith(":")}
        for line in data.joinpath("slab_aliases_6.18.txt").read_text().splitlines():
            if " -> " in line:
                n, g = (x.strip() for x in line.split(" -> "))
                if g in groups:
                    out[n] = groups[g]
        _REF_CACHES = out
    return _REF_CACHES


class Replayer:
    """Applies a trace's event table to a node, tick by tick (one SimPy process drives it).

    ``tick_ns``: events inside one tick are applied in file order within one
    SimPy timeout, keeping exact event order (DESIGN.md "Time").
    ``window``: rows of the event table held as Python lists at a time (``None``: all of them, and
    the indexes of ``_mirror``/``_policy`` are then the table's own).
    """

    def __init__(self, node: Node, events: pl.DataFrame, mode: str = "mirror", cost: CostModel | None = None,
                 hist: LatencyHistogram | None = None, tick_ns: int = 1_000_000, workload: str = "replay",
                 events_by_type: dict | None = None, kernel_ops: pl.DataFrame | None = None, kernel=None,
                 window: int | None = 1 << 16, sanitized: Sanitized | None = None):
        if mode not in ("mirror", "policy"):
            raise ValueError(mode)
        self.kernel = kernel  # policy mode: the SLUB model makes the slab pages (kmemdes.mm.kernel.Kernel)
        self.node = node
        self.mode = mode
        self.cost = cost or CostModel()
        self.hist = hist or LatencyHistogram()
        self.tick_ns = tick_ns
        self.workload = workload
        self._st = ReplayStats()  # :attr:`stats` once the object matching is in
        if events_by_type is None or kernel_ops is None:
            # fields no kernel prints, timestamps out of place (kmemdes.sim.sanitize): before the rows
            # are slimmed and numbered (kernel_ops are keyed by row)
            if sanitized is None:
                events, sanitized = sanitize_events(events)
            events, events_by_type, kernel_ops = slim_events(events, decided=mode == "policy")
            for name, n in sanitized.dropped_by_event.items():
                events_by_type[name] = events_by_type.get(name, 0) + n
        if sanitized is None:  # a caller that slimmed the rows itself (its kernel_ops must come from them)
            events, sanitized = sanitize_events(events)
        self.sanitized = sanitized
        self.events_by_type = events_by_type
        self.n_total = events.height + sanitized.dropped
        self.t0 = int(events["ts"].min()) if events.height else 0
        # object events: matched per pointer, vectorised (kmemdes.sim.slabstats), on a thread while the
        # page events are prepared and replayed here (Polars runs without the GIL): :attr:`objects` and
        # :attr:`stats` wait for it
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kmemdes-objects")
        self._objects_job = pool.submit(object_stats, events, self.t0)
        pool.shutdown(wait=False)
        self._objects: ObjectStats | None = None
        self._objects_counted = False  # in :attr:`stats`
        # only the columns the loop reads (the string columns of a big trace are hundreds of MB)
        cols = ["ts", "kind", "cpu", "pfn", "order", "migratetype", "gfp", "percpu_refill", "fallback_order",
                "fallback_migratetype", "change_ownership", "va_start", "va_end", "size", "failed", "npurged"]
        if mode == "policy":
            # frees the kernel's reclaim or compaction made (trace.pressure); each request's task
            cols += ["decided", "pid"]
        self.slab_driven = mode == "policy" and kernel is not None
        if self.slab_driven:
            # object events drive the SLUB model; the trace's own slab pages are left to it
            base = events.lazy().select(*cols, "ptr", "bytes_req", "bytes_alloc", "cache",
                                        slab_page=slab_page_mask(events)).with_row_index("seq")
        else:
            # ``seq``: the row of ``events`` (kernel_ops are keyed by it)
            base = events.lazy().select(*cols).with_row_index("seq").filter(~pl.col("kind").is_in(OBJECT_KINDS))
        # mm_page_free_batched after mm_page_free of the same pfn: one free (quirk 1 of KERNEL.md 15)
        after = (base.filter(pl.col("kind").is_in([K_ALLOC, K_FREE, K_BATCHED]) & (pl.col("pfn") >= 0))
                 .select("seq", "kind", "pfn").sort("pfn", maintain_order=True)  # stable: by pfn, then seq
                 .filter((pl.col("kind") == K_BATCHED) & (pl.col("kind").shift(1) == K_FREE)
                         & (pl.col("pfn").shift(1) == pl.col("pfn"))).select("seq").collect()["seq"])
        self.n_batched_after_free = after.len()
        is_after = pl.col("seq").is_in(after.implode()) if self.n_batched_after_free else pl.lit(False)
        # mirror mode places pages at the trace's pfns: page events beyond the machine's memory (a trace
        # replayed on a smaller machine) are counted, not applied.  Policy mode places pages itself (the
        # trace's pfns only match frees to allocations), so no pfn is outside its memory there.  Every event
        # is counted by one rule: a batched free already counted as batched_after_free is not also outside.
        if mode == "mirror":
            page_kinds = [K_ALLOC, K_FREE, K_BATCHED, K_ZONE_LOCKED, K_DRAIN, K_EXTFRAG]
            outside = (pl.col("kind").is_in(page_kinds) & (pl.col("pfn") >= 0)
                       & ((pl.col("pfn") + pl.lit(2, pl.Int64).pow(pl.col("order").fill_null(0).clip(0).cast(pl.Int64)))
                          > node.max_pfn)).fill_null(False) & ~is_after
        else:
            outside = pl.lit(False)
        # in the same pass: pages the trace shows allocated and freed (validate compares them with
        # /proc/vmstat's pgalloc_* and pgfree); a batched free after mm_page_free of the same pfn is one free
        pow2 = pl.lit(2, pl.Int64).pow(pl.col("order").fill_null(0).clip(0).cast(pl.Int64))  # compaction: -1
        k, has_pfn = pl.col("kind"), pl.col("pfn") >= 0
        n_out, allocated, freed = base.select(
            n_out=outside.sum(),
            allocated=pl.when(has_pfn & (k == K_ALLOC)).then(pow2).otherwise(0).sum(),
            freed=pl.when(has_pfn & (k == K_FREE)).then(pow2)
            .when(has_pfn & (k == K_BATCHED)).then(1).otherwise(0).sum(),
        ).collect().row(0)
        n_out = int(n_out or 0)
        self.trace_pages = {"allocated": int(allocated or 0), "freed": int(freed or 0) - self.n_batched_after_free}
        # one materialisation of the loop's rows, timestamps relative to the trace's first event
        keep = ~outside & ~is_after
        ev = base.filter(keep).with_columns(ts=(pl.col("ts") - self.t0).fill_null(0)).collect()
        # the compaction / vmscan ops by loop position: (op, a, b, n1, n2, pid, cpu)
        self.ops = {r[0]: r[1:] for r in ev.select("seq").with_row_index("pos").join(
            kernel_ops.rename({"cpu": "op_cpu"}), on="seq").select(
            "pos", "op", "a", "b", "n1", "n2", "pid", "op_cpu").iter_rows()}
        ev = ev.drop("seq")
        self.traced_compaction = None
        if mode == "mirror":
            fast = any(op[0] == OP_FAST_FREE for op in self.ops.values())
            self.traced_compaction = TracedCompaction(node, _next_page_event(ev) if fast else None)
        self._mig_pos: dict[int, int] = {}  # pid -> loop position of its last isolate_migratepages
        self.n = ev.height
        self._ts = ev["ts"].to_numpy()  # for the SimPy driver
        self.t_max = int(self._ts.max()) if self.n else 0
        self._ev = ev
        # vmalloc areas whose pages alloc_pages_bulk takes off a pcp list without events (sim/bulk.py)
        self.bulk = bulk_areas(ev) if mode == "mirror" and self.n else {}
        self.bulk_pending: dict[int, int] = {}  # cpu -> pages a refill has still to bring
        if mode == "policy":
            # what the kernel did with the same requests (the trace's page allocations the models replay)
            req = ev.filter(pl.col("kind") == K_ALLOC)
            if self.slab_driven:
                req = req.filter(~pl.col("slab_page").fill_null(False))
            by = req.group_by("order").agg(n=pl.len(), failed=(pl.col("pfn") < 0).sum()).sort("order")
            self.trace_requests = {"attempts_by_order": {str(o): int(n) for o, n, _ in by.iter_rows()},
                                   "failures_by_order": {str(o): int(f) for o, _, f in by.iter_rows()}}
        # the loop reads Python lists (plain ints are its fastest path), made ``window`` rows at a time:
        # a whole trace as lists of ints costs tens of bytes per value
        if self.slab_driven:
            # the cache column's codes (a Categorical's physical values; a String column's own strings) -> names
            names = ev["cache"].unique()
            self.cache_names = dict(zip(names.to_physical().to_list(), names.cast(pl.String).to_list()))
        self.window = max(1, self.n if window is None else window)
        self.base = self.wend = 0
        self._load(0)
        self.has_drains = bool(ev["kind"].eq(K_DRAIN).any()) if self.n else False
        st = self._st
        st.events = self.n_total - self.n
        if self.slab_driven:
            self.slab_tpfns: set[int] = set()
            self.obj_map: dict[int, tuple] = {}
            self._caches: dict[int | str | None, object] = {}  # by cache_names code
        st.quirks.update(sanitized.quirks)
        st.notes.extend(sanitized.notes)
        if self.n_batched_after_free:
            st.quirks["batched_after_free"] = self.n_batched_after_free
        if n_out:
            st.quirks["pfn_outside_memory"] = n_out
            st.notes.append(f"{n_out} page events name pfns beyond this machine's memory (max pfn {node.max_pfn:#x})")
        self.pos = 0
        self.nc = max(node.cpus, (int(ev["cpu"].max() or 0) + 1) if self.n else 1)  # the trace's CPUs
        self.mirrored = 0  # loop rows the mirror loop has done (their requests are counted at finalize)
        self.pending: dict[int, int] = {}  # zone_locked non-refill takes awaiting mm_page_alloc
        self.pages = PolicyPages(node, self._quirk) if mode == "policy" else None
        if (mode == "policy" and node.reclaim is not None and "comm" in events.columns
                and not events_by_type.get("mm_lru_activate")):
            # no activation events: the hits of files read again are inferred (kmemdes.sim.reread)
            readers = readahead_readers(events)
            if readers:
                self.pages.enable_reread(readers)
        if not self.has_drains and mode == "mirror":
            self._st.notes.append("the trace has no mm_page_pcpu_drain events: pcp drains decided by the model")

    @property
    def objects(self) -> ObjectStats:
        """The trace's object events matched per pointer (:func:`kmemdes.sim.slabstats.object_stats`):
        waits for the thread that matches them."""
        if self._objects is None:
            self._objects = self._objects_job.result()
            self._objects_job = None
        return self._objects

    @property
    def stats(self) -> ReplayStats:
        """What the replay did so far, the object events included (their rules and sizes are counted
        apart, :attr:`objects`, and added here once)."""
        st = self._st
        if not self._objects_counted:
            self._objects_counted = True
            obj = self.objects
            if not self.slab_driven:  # else the SLUB model replays them (policy mode)
                st.replayed += obj.replayed
                for k, v in obj.quirks.items():
                    st.quirks[k] = st.quirks.get(k, 0) + v
            st.sizes.update(obj.sizes)
        return st

    def _load(self, start: int) -> None:
        """Rows ``[start, start + window)`` of the loop's columns as Python lists (indexes in
        ``_mirror``/``_policy`` are relative to ``self.base``)."""
        w = self._ev.slice(start, self.window)
        self.base, self.wend = start, start + w.height
        self.c_t = _ints(w["ts"])
        self.t_sorted = w["ts"].is_sorted()  # run_until then bisects the window
        self.c_kind = _ints(w["kind"])
        self.c_cpu = _ints(w["cpu"].fill_null(0))
        self.c_pfn = _ints(w["pfn"].fill_null(-1))
        self.c_order = _ints(w["order"].fill_null(0))
        self.c_mt = _ints(w["migratetype"].fill_null(0))
        self.c_gfp = _ints(w["gfp"].fill_null(0))
        if self.mode == "policy":
            self.c_dec = w["decided"].to_list()
            self.c_pid = w["pid"].to_list()
        # columns only a few event kinds use: per-row tuples keyed by position (policy mode re-decides
        # zone_locked and extfrag lines without reading them)
        rare_kinds = [K_VMAP, K_VFREE, K_PURGE, K_LOST] + ([K_ZONE_LOCKED, K_EXTFRAG] if self.mode == "mirror" else [])
        rare = w.with_row_index("i").filter(pl.col("kind").is_in(rare_kinds))
        self.rare = {r[0]: r[1:] for r in rare.select(
            "i", pl.col("percpu_refill").fill_null(0), pl.col("fallback_order").fill_null(0),
            pl.col("fallback_migratetype").fill_null(0), pl.col("change_ownership").fill_null(0),
            pl.col("va_start").fill_null(0), pl.col("va_end").fill_null(0), pl.col("size").fill_null(0),
            pl.col("failed").fill_null(0), pl.col("npurged").fill_null(0)).iter_rows()}
        if self.slab_driven:
            self.c_ptr = _ints(w["ptr"].fill_null(0))
            self.c_req = _ints(w["bytes_req"].fill_null(0))
            self.c_cache = w["cache"].to_physical().to_list()  # codes (cache_names), cheaper than strings
            self.slab_rows = set(np.nonzero(w["slab_page"].fill_null(False).to_numpy())[0].tolist())

    # ------------------------------------------------------------ quirks
    def _quirk(self, rule: str, pages: int = 0) -> None:
        q = self._st.quirks
        q[rule] = q.get(rule, 0) + 1
        if pages:
            qp = self._st.quirk_pages
            qp[rule] = qp.get(rule, 0) + pages

    # ------------------------------------------------------------- driver
    def process(self, env):
        """SimPy process: advance through the trace tick by tick, applying events inline.

        The events of tick [t, t + tick) are applied at simulated time t, in file order.
        """
        tick = self.tick_ns
        ts = self._ts
        n = self.n
        while self.pos < n:
            start = int(ts[self.pos]) // tick * tick
            if start > env.now:
                yield env.timeout(start - env.now)
            self.run_until(start + tick)

    def run_until(self, t_end: int) -> None:
        """Apply every event with a timestamp below ``t_end`` (file order; small inversions kept)."""
        step = self._mirror if self.mode == "mirror" else self._policy
        while self.pos < self.n:
            if self.pos >= self.wend:
                self._load(self.pos)
            c_t = self.c_t
            i = self.pos - self.base
            m = self.wend - self.base
            if self.t_sorted:
                j = bisect_left(c_t, t_end, i, m)
            else:
                j = i
                while j < m and c_t[j] < t_end:
                    j += 1
            if j > i:
                step(i, j)
            self.pos = self.base + j
            if j < m:
                break

    # ------------------------------------------------------------- mirror
    def _mirror(self, i0: int, i1: int) -> None:
        """Rows ``[i0, i1)`` of the window in mirror mode: ``rmqueue_pcplist`` / ``__rmqueue_smallest``
        take the traced block (:meth:`Node.take_block`), ``free_frozen_page_commit`` puts a freed
        pcp-order block at the head of its CPU's list, ``free_pcppages_bulk`` merges a drained one
        (``__free_one_page``).  The common cases (a block popped off or pushed on a pcp list) are
        inline.  Each allocation's request key (order, GFP class, path, refills) depends on the
        trace alone, so :meth:`_mirror_requests` counts them vectorised at :meth:`finalize`."""
        node = self.node
        st = self._st
        quirk = self._quirk
        c_kind, c_pfn, c_order, c_cpu = self.c_kind, self.c_pfn, self.c_order, self.c_cpu
        c_mt, rare = self.c_mt, self.rare
        page_mt = node.page_mt
        alloc_order = node.alloc_order
        lid = node.lid
        l_pcp = node.l_pcp
        pb_valid = node.pb_valid
        pending = self.pending
        # hot-path aliases: the intrusive list arrays and per-pageblock tables of the node
        nxt, prv, lhead, ltail, lcount = node.nxt, node.prv, node.lhead, node.ltail, node.lcount
        l_order = node.l_order
        pb_mt, pb_zone = node.pb_mt, node.pb_zone
        split_pbs = node.split_pageblocks()  # pageblocks of two zones (x86-32 lowmem end): ask zone_of
        max_pfn = node.max_pfn
        ncpu = node.cpus
        has_drains = self.has_drains
        bulk_pending = self.bulk_pending
        take_block = node.take_block
        replayed = other = 0
        for i, k, pfn, order in zip(range(i0, i1), c_kind[i0:i1], c_pfn[i0:i1], c_order[i0:i1]):
            if k == K_ALLOC:
                if pfn < 0:
                    st.failures.append((self.c_t[i], order, G.format_gfp(self.c_gfp[i])))
                    replayed += 1
                    continue
                if not pb_valid[pfn >> PAGEBLOCK_ORDER]:
                    self._zone_growth(pfn)
                li = lid[pfn]
                if li != NOLIST and l_order[li] == order and l_pcp[li] is not None:
                    # the common case, inline: pop the block off its per-CPU list
                    nx = nxt[pfn]
                    pv = prv[pfn]
                    if pv >= 0:
                        nxt[pv] = nx
                    else:
                        lhead[li] = nx
                    if nx >= 0:
                        prv[nx] = pv
                    else:
                        ltail[li] = pv
                    lcount[li] -= 1
                    lid[pfn] = NOLIST
                    l_pcp[li].count -= 1 << order
                    replayed += 1
                elif pending and pfn in pending:
                    del pending[pfn]
                    replayed += 1
                elif take_block(pfn, order) < 0:
                    self._force_take(pfn, order)
                    quirk("alloc_of_page_not_free_in_model", 1 << order)
                else:
                    replayed += 1
                mt = c_mt[i]
                if mt >= 3:
                    mt = 0
                if order == 0:
                    page_mt[pfn] = mt
                else:
                    page_mt[pfn:pfn + (1 << order)] = _MT_BYTES[mt] * (1 << order)
                alloc_order[pfn] = order
            elif k == K_FREE:
                n = 1 << order
                # the common case, inline: an allocated pcp-order block goes to the head of its CPU's list
                pb = pfn >> PAGEBLOCK_ORDER
                if (has_drains and 0 <= pfn and pfn + n <= max_pfn and order <= PAGE_ALLOC_COSTLY_ORDER
                        and lid[pfn] == NOLIST and pb_valid[pb]
                        and (page_mt[pfn] != 0xFF if order == 0 else not page_mt.count(0xFF, pfn, pfn + n))
                        and pb_mt[pb] != MIGRATE_ISOLATE):
                    if alloc_order[pfn] == order:
                        replayed += 1
                    else:
                        quirk("free_of_untraced_page", n)
                    if order == 0:
                        page_mt[pfn] = 0xFF
                    else:
                        page_mt[pfn:pfn + n] = b"\xff" * n
                    alloc_order[pfn] = NO_ORDER
                    mt = pb_mt[pb]
                    if mt >= MIGRATE_PCPTYPES:
                        mt = MIGRATE_MOVABLE
                    zone = pb_zone[pb]
                    if split_pbs and pb in split_pbs:
                        zone = node.zone_of(pfn)
                    pcp = zone.pcp[c_cpu[i] % ncpu]
                    li = pcp.lid0 + MIGRATE_PCPTYPES * order + mt
                    h = lhead[li]
                    nxt[pfn] = h
                    prv[pfn] = -1
                    if h >= 0:
                        prv[h] = pfn
                    else:
                        ltail[li] = pfn
                    lhead[li] = pfn
                    lcount[li] += 1
                    lid[pfn] = li
                    pcp.count += n
                else:
                    replayed += self._mirror_free(pfn, order, c_cpu[i])
            elif k < K_KMALLOC:  # EventKind.OTHER, MARKER, LOST
                if k == K_LOST:
                    quirk("lost_events")
                    st.notes.append(f"event {self.base + i}: {rare[i][8]} events lost on CPU {c_cpu[i]}: state "
                                    "after it is unreliable")
                else:
                    other += 1
            elif k == K_BATCHED:  # without a preceding mm_page_free (those were set aside): a real free
                replayed += self._mirror_free(pfn, 0, c_cpu[i])
            elif k == K_ZONE_LOCKED:
                cpu = c_cpu[i]
                if not pb_valid[pfn >> PAGEBLOCK_ORDER]:
                    self._zone_growth(pfn)
                n = 1 << order
                if take_block(pfn, order) < 0:
                    self._force_take(pfn, order)
                    quirk("zone_locked_of_page_not_free_in_model", n)
                else:
                    replayed += 1
                if rare[i][0] and (order <= PAGE_ALLOC_COSTLY_ORDER or order == PAGEBLOCK_ORDER):
                    mt = c_mt[i]
                    zone = node.zone_of(pfn)
                    pcp = zone.pcp[cpu % ncpu]
                    page_mt[pfn:pfn + n] = b"\xff" * n
                    node._list_add_tail(pcp.lid0 + node.order_to_pindex(mt if mt < 3 else MIGRATE_MOVABLE, order), pfn)
                    pcp.count += n
                    if bulk_pending and cpu in bulk_pending:
                        self._bulk_take(i, refill=True)
                else:
                    page_mt[pfn:pfn + n] = bytes((c_mt[i] if c_mt[i] < 3 else 0,)) * n
                    pending[pfn] = order
            elif k == K_DRAIN:
                n = 1 << order
                li = lid[pfn]
                if li != NOLIST and l_pcp[li] is not None and l_order[li] == order:
                    pcp = l_pcp[li]
                    node._list_del(pfn)
                    pcp.count -= n
                    node.nr_pcpu_drain += 1
                    node._free_one_page(node.zone_of(pfn), pfn, order, pb_mt[pfn >> PAGEBLOCK_ORDER])
                    replayed += 1
                elif page_mt.count(0xFF, pfn, pfn + n) == 0:
                    page_mt[pfn:pfn + n] = b"\xff" * n
                    alloc_order[pfn] = NO_ORDER
                    node._free_one_page(node.zone_of(pfn), pfn, order, pb_mt[pfn >> PAGEBLOCK_ORDER])
                    quirk("drain_of_untraced_pcp_page", n)
                else:
                    quirk("drain_of_page_not_on_pcp", n)
            elif k == K_EXTFRAG:
                self._mirror_extfrag(i)
                replayed += 1
            elif k == K_VMAP or k == K_VFREE or k == K_PURGE:
                replayed += self._vmalloc(i, k)
            elif k in K_COMPACTION:
                replayed += self._mirror_kernel_op(i, k)
            elif k == K_LRU:
                quirk("lru_event")
            else:
                other += 1
        if other:  # counted here: the most frequent rule of some traces (rss_stat lines)
            st.quirks["not_an_allocator_event"] = st.quirks.get("not_an_allocator_event", 0) + other
        st.replayed += replayed
        st.events += i1 - i0
        if self.base + i1 > self.mirrored:
            self.mirrored = self.base + i1

    def _mirror_requests(self, upto: int) -> dict:
        """The page allocations of the first ``upto`` loop rows by request key ``(order, gfp &
        __GFP_DIRECT_RECLAIM, path, gfp & __GFP_ZERO, refills)``, as counted per allocation in the order
        of the trace: the path is ``failed`` for a failed one, else the fallback an
        ``mm_page_alloc_extfrag`` of its CPU announced since that CPU's previous allocation
        (``__rmqueue_claim`` / ``__rmqueue_steal``), else ``pcp`` / ``pcp_refill`` (pcp orders: whether
        ``rmqueue_bulk`` refilled the CPU's list since its previous allocation, ``refills`` such
        ``mm_page_alloc_zone_locked`` lines) or ``buddy``.  Only the trace decides these (never the
        model's state), so one vectorised pass gives what a per-event count would."""
        if upto <= 0:
            return {}
        nc = self.nc
        k = pl.col("kind")
        order = pl.col("order").fill_null(0)
        cpu = pl.col("cpu").fill_null(0).cast(pl.Int32)
        pcp_order = (order <= PAGE_ALLOC_COSTLY_ORDER) | (order == PAGEBLOCK_ORDER)
        is_alloc = k == K_ALLOC
        rows = (self._ev.lazy().head(upto).filter(k.is_in([K_ALLOC, K_ZONE_LOCKED, K_EXTFRAG]))
                .select("kind", "order", "pfn", "gfp",
                        cpu=pl.when(cpu < 0).then(cpu + nc).otherwise(cpu),  # a Python list's index
                        refill=(k == K_ZONE_LOCKED) & (pl.col("percpu_refill").fill_null(0) != 0) & pcp_order,
                        fb=pl.when(k == K_EXTFRAG).then(pl.when(pl.col("change_ownership").fill_null(0) != 0)
                                                        .then(PATH_CLAIM).otherwise(PATH_STEAL)))
                # seg: the CPU's allocations before this row; refills and fallbacks count until the next one
                .with_columns(seg=is_alloc.cast(pl.Int32).cum_sum().over("cpu") - is_alloc.cast(pl.Int32),
                              nref=pl.col("refill").cast(pl.Int32).cum_sum().over("cpu"))
                .with_columns(pl.col("fb").forward_fill().over("cpu", "seg"))
                .filter(is_alloc)
                .with_columns(nref=pl.col("nref") - pl.col("nref").shift(1, fill_value=0).over("cpu")))
        gfp = pl.col("gfp").fill_null(0)
        path = (pl.when(pl.col("pfn").fill_null(-1) < 0).then(PATH_FAILED)
                .when(pl.col("fb").is_not_null()).then(pl.col("fb"))
                .when(pcp_order).then(pl.when(pl.col("nref") > 0).then(PATH_PCP_REFILL).otherwise(PATH_PCP))
                .otherwise(PATH_BUDDY))
        counts = (rows.group_by(order.alias("o"), (gfp & _GFP_DIRECT_RECLAIM).alias("r"), path.alias("p"),
                                (gfp & _GFP_ZERO).alias("z"), pl.col("nref").alias("n"))
                  .len().collect())
        return {(o, r, p, z, n): c for o, r, p, z, n, c in counts.iter_rows()}

    def _mirror_kernel_op(self, i: int, k: int) -> int:
        """A compaction or vmscan event: compaction's isolations and migrations applied
        (:mod:`kmemdes.sim.traced_compaction`), everything else counted."""
        pos = self.base + i
        op = self.ops.get(pos)
        if op is None or k == K_VMSCAN:
            self._quirk("reclaim_event" if k == K_VMSCAN else "compaction_event")
            return 0
        code, a, b, n1, n2, pid, cpu = op
        self.traced_compaction.pos = pos
        sources = ()
        if code == OP_ISO_MIGRATE:
            self._mig_pos[pid] = pos
        elif code == OP_MIGRATE:
            sources = self._migrated_sources(i, pid, cpu)
        elif code not in (OP_ISO_FREE, OP_FAST_FREE):
            self.traced_compaction.apply(code, a, b, n1, n2, pid)
            self._quirk("compaction_event")
            return 0
        missing = self.traced_compaction.apply(code, a, b, n1, n2, pid, sources)
        if missing:
            self._quirk("compaction_isolate_not_free_in_model", missing)
            return 0
        return 1

    def _migrated_sources(self, i: int, pid: int, cpu: int) -> list[int]:
        """Orders of the folios a ``migrate_pages`` call freed, in migration order: the frees on the
        compacting CPU since its last ``isolate_migratepages``, inside that scan's range."""
        lo, hi = self.traced_compaction.migrate_range(pid)
        start = max(self._mig_pos.get(pid, self.base + i) - self.base, 0)
        c_kind, c_pfn, c_order, c_cpu = self.c_kind, self.c_pfn, self.c_order, self.c_cpu
        return [c_order[j] if c_kind[j] == K_FREE else 0 for j in range(start + 1, i)
                if c_cpu[j] == cpu and (c_kind[j] == K_FREE or c_kind[j] == K_BATCHED) and lo <= c_pfn[j] < hi]

    def _mirror_free(self, pfn: int, order: int, cpu: int) -> int:
        """``mm_page_free``: pcp orders to the CPU's list head (or the model's pcp logic), others merge."""
        node = self.node
        page_mt = node.page_mt
        n = 1 << order
        if pfn < 0 or pfn + n > node.max_pfn:
            self._quirk("free_of_page_free_in_model", n)
            return 0
        if not node.pb_valid[pfn >> PAGEBLOCK_ORDER]:
            if online_freed_block(node, pfn, order):  # deferred init hands this block over (sim/growth.py)
                self._st.online_pages += n
                self._quirk("zone_growth", n)
                return 0
            self._zone_growth(pfn)
        li = node.lid[pfn]
        bulk = li != NOLIST and node.l_pcp[li] is not None and node.l_order[li] == order
        if bulk:
            # on a pcp list since a refill and freed without an mm_page_alloc: the bulk allocator
            # (vmalloc, page_pool) took it untraced (KERNEL.md 4); take it off, then free it below
            pcp = node.l_pcp[li]
            node._list_del(pfn)
            pcp.count -= n
            page_mt[pfn:pfn + n] = b"\x01" * n
            self._quirk("free_after_untraced_bulk_alloc", n)
        nfree = 0 if bulk else page_mt.count(0xFF, pfn, pfn + n)
        if nfree:
            if nfree == n:
                self._quirk("free_of_page_free_in_model", n)
                return 0
            # partly free in the model: free the pages it holds allocated, one by one
            self._quirk("free_of_page_free_in_model", n)
            for p in range(pfn, pfn + n):
                if page_mt[p] != 0xFF:
                    page_mt[p] = 0xFF
                    node.alloc_order[p] = NO_ORDER
                    node.free_one_page(node.zone_of(p), p, 0)
            return 0
        applied = 1
        if bulk:
            applied = 0
        elif node.alloc_order[pfn] != order:
            self._quirk("free_of_untraced_page", n)
            applied = 0
        page_mt[pfn:pfn + n] = b"\xff" * n
        node.alloc_order[pfn] = NO_ORDER
        zone = node.zone_of(pfn)
        mt = node.pb_mt[pfn >> PAGEBLOCK_ORDER]
        if (order <= PAGE_ALLOC_COSTLY_ORDER or order == PAGEBLOCK_ORDER) and mt != MIGRATE_ISOLATE:
            if mt >= MIGRATE_PCPTYPES:
                mt = MIGRATE_MOVABLE
            pcp = zone.pcp[cpu % node.cpus]
            if self.has_drains:
                node._list_add(pcp.lid0 + node.order_to_pindex(mt, order), pfn)
                pcp.count += n
            else:
                node._free_frozen_page_commit(zone, pcp, pfn, mt, order)
        else:
            node.free_one_page(zone, pfn, order)
        return applied

    def _force_take(self, pfn: int, order: int) -> None:
        """The kernel used pages the model holds otherwise: take the model's free ones out of its lists."""
        node = self.node
        page_mt = node.page_mt
        for p in range(pfn, pfn + (1 << order)):
            if page_mt[p] == 0xFF:
                li = node.lid[p]
                if li != NOLIST and node.l_pcp[li] is not None:
                    # a pcp block: take it whole, re-free the pages outside the range
                    o = node.l_order[li]
                    node.take_block(p, o)
                    for q in range(p, p + (1 << o)):
                        if not pfn <= q < pfn + (1 << order):
                            page_mt[q] = 0xFF
                            node.free_one_page(node.zone_of(q), q, 0)
                else:
                    node.take_block(p, 0)
                page_mt[p] = 0  # overwritten by the caller

    def _zone_growth(self, pfn: int) -> None:
        """Deferred init handed memory to the buddy allocator without an event: online its step."""
        node = self.node
        zone = None
        for z in node.zones:
            if z.start_pfn <= pfn < z.end_pfn:
                zone = z
        if zone is None:
            return
        rel = pfn - zone.start_pfn
        start = zone.start_pfn + rel // DEFERRED_INIT_STEP * DEFERRED_INIT_STEP
        end = min(start + DEFERRED_INIT_STEP, zone.end_pfn)
        # only the pageblocks still offline
        pb = start >> PAGEBLOCK_ORDER
        while start < end and node.pb_valid[pb]:
            start += PAGEBLOCK_NR_PAGES
            pb += 1
        if start >= end:
            return
        stop = start
        while stop < end and not node.pb_valid[stop >> PAGEBLOCK_ORDER]:
            stop += PAGEBLOCK_NR_PAGES
        node.online_pages(start, stop - start)
        self._st.online_pages += stop - start
        self._quirk("zone_growth", stop - start)

    def _mirror_extfrag(self, i: int) -> None:
        node = self.node
        pfn = self.c_pfn[i]
        _, fo, fmt, chg = self.rare[i][:4]
        amt = self.c_mt[i]
        kind = "claim" if chg else "steal"
        _inc(self._st.fallbacks, (amt, fmt, kind, fo < PAGEBLOCK_ORDER))
        _inc(node.extfrag, (amt, fmt, kind, int(fo < PAGEBLOCK_ORDER)))
        if not chg or pfn < 0:
            return
        if not node.pb_valid[pfn >> PAGEBLOCK_ORDER]:
            self._zone_growth(pfn)
        zone = node.zone_of(pfn)
        if fo >= PAGEBLOCK_ORDER:
            start = pfn & ~((1 << fo) - 1)
            for p in range(start, start + (1 << fo), PAGEBLOCK_NR_PAGES):
                node._move_freepages_block(zone, p, amt)
                node.set_pageblock_migratetype(p, amt)
        else:
            start = pfn & ~(PAGEBLOCK_NR_PAGES - 1)
            node._move_freepages_block(zone, start, amt)
            node.set_pageblock_migratetype(start, amt)

    # ---------------------------------------------------- objects, vmalloc
    def _vmalloc(self, i: int, k: int) -> int:
        st = self._st
        _, _, _, _, va, va_end, size, failed, _ = self.rare[i]
        if k == K_VMAP:
            if failed:
                return 1
            if self.bulk:
                self._bulk_take(i)
            st.vm_live[va] = size
            _inc(st.sizes, ("vmalloc", 1 << max(size - 1, 0).bit_length()))
            return 1
        if k == K_VFREE:
            size = st.vm_live.pop(va, None)
            if size is None:
                self._quirk("vfree_of_untraced_area")
                return 0
            st.vm_lazy[va] = size
            return 1
        start, end = va, va_end
        for va in [v for v in st.vm_lazy if start <= v < end]:
            del st.vm_lazy[va]
        st.vm_purges += 1
        return 1

    def _bulk_take(self, i: int, refill: bool = False) -> None:
        """vmalloc's untraced ``alloc_pages_bulk`` (sim/bulk.py): the area's pages off the CPU's pcp
        list at its ``alloc_vmap_area``; what the list lacks, after the CPU's next refills."""
        cpu = self.c_cpu[i]
        n = self.bulk_pending.pop(cpu, 0) if refill else self.bulk.pop(self.base + i, 0)
        if not refill:
            self.bulk_pending.pop(cpu, None)
        if n:
            got = len(take_pcp_pages(self.node, cpu, n))
            if got < n:
                self.bulk_pending[cpu] = n - got
            qp = self._st.quirk_pages
            qp["bulk_alloc_untraced"] = qp.get("bulk_alloc_untraced", 0) + got

    # ------------------------------------------------------------- policy
    def _policy(self, i0: int, i1: int) -> None:
        node = self.node
        st = self._st
        quirk = self._quirk
        c_kind, c_pfn, c_order, c_cpu, c_gfp = self.c_kind, self.c_pfn, self.c_order, self.c_cpu, self.c_gfp
        c_dec, c_pid, c_t = self.c_dec, self.c_pid, self.c_t
        pages_alloc, pages_free = self.pages.alloc, self.pages.free
        requests = st.requests
        slab_rows = self.slab_rows if self.slab_driven else None
        slab_tpfns = self.slab_tpfns if self.slab_driven else None
        obj_map = self.obj_map if self.slab_driven else None
        if obj_map is not None:
            c_ptr, c_cache, caches = self.c_ptr, self.c_cache, self._caches
            kmem_cache_alloc = self.kernel.slab.kmem_cache_alloc
            kmem_cache_free = self.kernel.slab.kmem_cache_free
        replayed = redecided = 0
        for i in range(i0, i1):
            k = c_kind[i]
            if k == K_ALLOC:
                tpfn = c_pfn[i]
                order = c_order[i]
                gfp = c_gfp[i]
                if slab_rows is not None and i in slab_rows:
                    slab_tpfns.add(tpfn)  # a slab (or large kmalloc) page: the SLUB model makes its own
                    quirk("slab_page_by_model", 1 << order)
                    continue
                node.last_path = PATH_FAILED
                cpu = c_cpu[i]
                pid = c_pid[i]
                pfn = pages_alloc(tpfn, order, gfp, cpu, -1 - cpu if pid is None else pid, c_t[i])
                replayed += 1
                if pfn == NOT_TRIED:  # base pages (counted as the models' own requests) or no request at all
                    continue
                path = node.last_path
                if pfn < 0:
                    st.failures.append((c_t[i], order, G.format_gfp(gfp)))
                key = (order, gfp & _GFP_DIRECT_RECLAIM, path, gfp & _GFP_ZERO, 0)
                requests[key] = requests.get(key, 0) + 1
            elif k == K_FREE or k == K_BATCHED:
                if slab_tpfns and c_pfn[i] in slab_tpfns:
                    slab_tpfns.discard(c_pfn[i])
                    quirk("slab_page_by_model", 1 << c_order[i])
                    continue
                replayed += pages_free(c_pfn[i], c_order[i] if k == K_FREE else 0, c_cpu[i], c_dec[i])
            elif k == K_KCACHE_ALLOC and obj_map is not None:
                # the common object case, inline (see _policy_object for the general one)
                ptr = c_ptr[i]
                cache = caches.get(c_cache[i])
                if ptr == 0 or cache is None or ptr in obj_map:
                    replayed += self._policy_object(i, k)
                    continue
                addr = kmem_cache_alloc(cache, c_gfp[i], c_cpu[i])
                if addr:
                    obj_map[ptr] = (cache, addr)
                    replayed += 1
                else:
                    replayed += self._policy_object_failed(i)
            elif k == K_KCACHE_FREE and obj_map is not None:
                ent = obj_map.pop(c_ptr[i], None)
                if ent is None or ent[0] is None:
                    if ent is not None:
                        obj_map[c_ptr[i]] = ent
                    replayed += self._policy_object(i, k)
                    continue
                kmem_cache_free(ent[0], ent[1], c_cpu[i])
                replayed += 1
            elif k in _REDECIDED:
                redecided += 1
            elif k == K_LRU:
                op = self.ops.get(self.base + i)
                if op is not None and op[0] == OP_ACTIVATE:
                    replayed += self.pages.activate(op[1])
                else:
                    quirk("lru_event")
            elif k in OBJECT_KINDS:
                replayed += self._policy_object(i, k)
            elif k == K_VMAP or k == K_VFREE or k == K_PURGE:
                replayed += self._vmalloc(i, k)
            elif k == K_LOST:
                quirk("lost_events")
            else:
                quirk("not_an_allocator_event")
        if redecided:  # counted here: the most frequent rule of policy mode
            st.quirks["redecided_by_policy"] = st.quirks.get("redecided_by_policy", 0) + redecided
        st.replayed += replayed
        st.events += i1 - i0
        self._st.fallbacks = {(a, f, kd, bool(fr)): c for (a, f, kd, fr), c in node.extfrag.items()}

    def _policy_object(self, i: int, k: int) -> int:
        """An object event through the SLUB model (policy mode): the model's caches, slabs and slab pages."""
        slab = self.kernel.slab
        ptr = self.c_ptr[i]
        cpu = self.c_cpu[i]
        if k == K_KFREE or k == K_KCACHE_FREE:
            if ptr == 0 or ptr == _ZERO_SIZE_PTR:
                self._quirk("kfree_null")
                return 0
            ent = self.obj_map.pop(ptr, None)
            if ent is None:
                self._quirk("free_of_untraced_object")
                return 0
            self._model_free(ent, cpu)
            return 1
        if ptr == 0:
            return 1  # the kernel's allocation failed: nothing to hold
        applied = 1
        old = self.obj_map.pop(ptr, None)
        if old is not None:
            self._model_free(old, cpu)
            self._quirk("alloc_of_live_pointer")
            applied = 0
        gfp = self.c_gfp[i]
        if k == K_KMALLOC:
            addr = slab.kmalloc(self.c_req[i], gfp, cpu)[0]
            cache = None
        else:
            cache = self._cache_for(self.c_cache[i], self.c_req[i])
            addr = slab.kmem_cache_alloc(cache, gfp, cpu)
        if addr:
            self.obj_map[ptr] = (cache, addr)
        else:
            self._policy_object_failed(i)
        return applied

    def _policy_object_failed(self, i: int) -> int:
        self._st.notes.append(f"event {self.base + i}: the SLUB model could not allocate an object the kernel did")
        return 1

    def _model_free(self, ent: tuple, cpu: int) -> None:
        cache, addr = ent
        if cache is None:
            self.kernel.slab.kfree(addr, cpu)
        else:
            self.kernel.slab.kmem_cache_free(cache, addr, cpu)

    def _cache_for(self, code: int | str | None, object_size: int):
        """The model's cache of a trace's cache (``code``: the name's code in the ``cache`` column,
        :attr:`cache_names`): created on first use with the 6.18 reference machine's geometry and
        flags where the name is known (kmemdes/data/slab_caches_6.18.tsv), else from the event's
        object size."""
        c = self._caches.get(code)
        if c is not None:
            return c
        name = self.cache_names.get(code) or "unknown_cache"
        from kmemdes.mm.slub import SLAB_RECLAIM_ACCOUNT

        slab = self.kernel.slab
        try:
            c = slab.lookup(name)
        except Exception:  # noqa: BLE001 - not created yet
            ref = _reference_caches().get(name)
            size, align, reclaim = (ref if ref else (max(object_size, 8), 8, False))
            c = slab.kmem_cache_create(name, size, align, SLAB_RECLAIM_ACCOUNT if reclaim else 0)
        self._caches[code] = c
        return c

    def finalize(self) -> None:
        """Price the aggregated requests with the cost model into the latency histogram."""
        if self.pages is not None:
            self.pages.finish()
        if self.mode == "mirror":
            self._st.requests = self._mirror_requests(self.mirrored)
        agg: dict = {}
        for (order, reclaim, path, zero, refill), c in self._st.requests.items():
            ns = self.cost.page_alloc(order, path, bool(zero), refill)
            self.hist.add_n(order, path, ns, c)
            key = (order, "reclaim" if reclaim else "atomic", path)
            agg[key] = agg.get(key, 0) + c
        self._st.requests = agg

    # ------------------------------------------------------------ samplers
    def vmalloc_row(self) -> tuple:
        st = self._st
        live = sum(st.vm_live.values())
        lazy = sum(st.vm_lazy.values())
        return (len(st.vm_live), live, live // 4096, lazy // 4096, st.vm_purges)
