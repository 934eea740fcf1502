"""Memory compaction: migrate and free scanners, deferral, capture, kcompactd work (mm/compaction.c).

Read beside mm/compaction.c of Linux 6.18: the functions below carry the
kernel's names (``compact_zone``, ``isolate_migratepages``,
``isolate_migratepages_block``, ``isolate_freepages``,
``isolate_freepages_block``, ``compaction_alloc``, ``__compact_finished``,
``compaction_suitable``, ``defer_compaction``, ``compaction_deferred``,
``compaction_defer_reset``, ``try_to_compact_pages``, ``kcompactd_do_work``,
``proactive_compact_node``) and follow their rules.  Plain Python: no time,
no SimPy, no I/O.  Work is *counted* (pages scanned by each scanner,
isolated, migrated, failed); ``kmemdes.sim.daemons.DaemonCosts`` prices it.

What is modelled
    * The migrate scanner walks up from the zone start (or the cached pfn,
      separately for async and sync modes) pageblock by pageblock; async
      *direct* compaction only scans source blocks suiting the request
      (``suitable_migration_source``); it isolates at most
      ``COMPACT_CLUSTER_MAX`` (32) pages before migrating them, and in async
      direct mode gives up an order-aligned block at its first unmigratable
      page (``skip_on_failure``).  Migratable = allocations whose head pfn is
      in ``node.rmap``; folios of order >= the target order (or >= a
      pageblock) are skipped (``skip_isolation_on_order``).
    * The free scanner walks down from the zone end (cached) through MOVABLE
      pageblocks that are not already one free block of order >= 9
      (``suitable_migration_target``), isolating free buddy blocks at their
      order (6.10+) until there are as many free pages as pages to migrate,
      subject to ``__isolate_free_page``'s min-watermark check; async
      compaction samples every 32nd page until a block gives something
      (the ``stride``).
    * The free-list searches (5.1+): ``fast_isolate_freepages`` takes targets
      straight from the Movable free lists below the request's order (read
      from the tail, a block in the top quarter of the scan space at once,
      else the highest in the top half), before any linear scan;
      ``fast_find_migrateblock`` starts the migrate scanner at a Movable
      pageblock low in the zone that already has a free block of order 3 or
      more.  Both rotate the lists they read (``move_freelist_head`` /
      ``_tail``) and shrink with failures (``freelist_scan_limit``).
      ``compaction_alloc`` takes the first isolated block of the smallest
      sufficient order and splits it as ``expand`` does.
    * A large folio that gets no target of its order is split into base
      pages, moved after the rest of the batch (``migrate_pages_batch``'s
      ``-ENOMEM`` path with ``try_split_folio``); only a base page without a
      target ends the run (``COMPACT_CONTENDED``).  The owners follow the split
      (``split_folio``: the folio's identity stays on its pages).
    * A pass ends when the scanners meet; the cached positions are reset
      (``COMPACT_COMPLETE`` for a whole-zone pass, else
      ``COMPACT_PARTIAL_SKIPPED``).  ``__compact_finished`` is tested at
      pageblock boundaries (a free block >= order on the request's list, or a
      claimable fallback; proactive: zone score <= the low score mark;
      defrag_mode kcompactd: the high watermark met in whole pageblocks).
    * PB_migrate_skip bits (set when a block was scanned, honoured unless
      ``ignore_skip_hint``), the ``compact_blockskip_flush`` hand-over to
      kswapd, ``compaction_restarting``.
    * Capture during direct compaction through ``node.capc`` (the buddy
      allocator's ``compaction_capture``).
    * Deferral per zone, suitability (``compact_gap``, fragmentation index
      against ``extfrag_threshold``), priorities ASYNC -> SYNC_LIGHT ->
      SYNC_FULL, results as ``__alloc_pages_slowpath`` expects.
    * kcompactd's work (``kcompactd_do_work``), its wake-up test
      (``wakeup_kcompactd`` / ``kcompactd_node_suitable``) and proactive
      compaction (``proactive_compact_node`` until the zone score is at most
      ``fragmentation_score_wmark(low)``).

What is simplified (say so when quoting results)
    * ``__reset_isolation_suitable`` samples every 8th page of a block
      marked skip; "on the LRU" is the model's page cache or ``node.rmap``.
    * Lock contention, ``need_resched`` and fatal signals never abort a run
      (``COMPACT_CONTENDED`` only comes from ``compaction_alloc`` failing
      before the scanners met).
    * Pages freed by migration are held back (the kernel frees them to the
      local per-CPU list) and reach the buddy lists when the migrate scanner
      leaves the order-aligned block it migrated from (``check_drain``);
      the model holds only those pages, not other per-CPU pages, and sends
      what is left at the end of a run to the buddy lists without capture.
      Whole-zone runs (order -1) drain at pageblock boundaries.
    * Whether a page can be isolated or migrated is drawn at random, per
      folio and per attempt, from two rates (see :class:`Compaction`).

>>> from kmemdes.mm.mm_init import build_node, parse_size
>>> node = build_node("x86_64", parse_size("256M"), cpus=2)
>>> comp = Compaction(node)
>>> compact_gap(9), node.compaction is comp
(1024, True)
>>> zone = node.zones[1]
>>> compaction_deferred(zone, 9), zone.compact_considered    # defer_shift 0: never deferred
(False, 1)
"""

from __future__ import annotations

import random
from collections import deque
from typing import Generator, NamedTuple, Optional

from kmemdes.errors import KmemdesError
from kmemdes.mm import frag
from kmemdes.mm.gfp import (
    GFP_KERNEL,
    MIGRATE_MOVABLE,
    MIGRATE_TYPES,
    __GFP_FS as _GFP_FS,
    __GFP_IO as _GFP_IO,
    gfp_migratetype,
)
from kmemdes.mm.page_alloc import (
    ALLOC_CMA,
    ALLOC_WMARK_HIGH,
    ALLOC_WMARK_MASK,
    ALLOC_WMARK_MIN,
    COMPACT_COMPLETE,
    COMPACT_DEFERRED,
    COMPACT_PARTIAL_SKIPPED,
    COMPACT_PRIO_ASYNC,
    COMPACT_PRIO_SYNC_FULL,
    COMPACT_SKIPPED,
    COMPACT_SUCCESS,
    MAX_PAGE_ORDER,
    NOLIST,
    NO_ORDER,
    NR_PAGE_ORDERS,
    PAGE_ALLOC_COSTLY_ORDER,
    PAGE_FREE,
    PAGE_RESERVED,
    PAGEBLOCK_NR_PAGES,
    PAGEBLOCK_ORDER,
    Node,
    Zone,
)

__all__ = [
    "COMPACT_NOT_SUITABLE_ZONE",
    "COMPACT_SKIPPED",
    "COMPACT_DEFERRED",
    "COMPACT_NO_SUITABLE_PAGE",
    "COMPACT_CONTINUE",
    "COMPACT_COMPLETE",
    "COMPACT_PARTIAL_SKIPPED",
    "COMPACT_CONTENDED",
    "COMPACT_SUCCESS",
    "COMPACT_RESULT_NAMES",
    "ATTEMPT_NO_RUN",
    "ATTEMPT_DEFERRED",
    "COMPACT_MAX_DEFER_SHIFT",
    "COMPACT_CLUSTER_MAX",
    "MIGRATE_ASYNC",
    "MIGRATE_SYNC_LIGHT",
    "MIGRATE_SYNC",
    "HPAGE_FRAG_CHECK_INTERVAL_MSEC",
    "COMPACT_VMSTAT",
    "CompactControl",
    "split_isolated_freepage",
    "freelist_scan_limit",
    "move_freelist_head",
    "move_freelist_tail",
    "CompactWork",
    "Compaction",
    "compact_gap",
    "defer_compaction",
    "compaction_deferred",
    "compaction_defer_reset",
    "compaction_restarting",
    "compaction_suitable",
    "compaction_suit_allocation_order",
    "fragmentation_score_node",
    "fragmentation_score_wmark",
    "run_to_completion",
]

# enum compact_result (include/linux/compaction.h); the page allocator's five are re-used
COMPACT_NOT_SUITABLE_ZONE = 0
COMPACT_NO_SUITABLE_PAGE = 3
COMPACT_CONTINUE = 4
COMPACT_CONTENDED = 7
COMPACT_RESULT_NAMES = {
    0: "not_suitable_zone", 1: "skipped", 2: "deferred", 3: "no_suitable_page", 4: "continue",
    5: "complete", 6: "partial_skipped", 7: "contended", 8: "success",
}

#: ``Compaction.last_ended`` of a direct compaction attempt in which no ``compact_zone`` ran (no
#: ``mm_compaction_end``): every zone skipped by ``compaction_suit_allocation_order`` (a zone already at
#: its watermark returns COMPACT_SUCCESS there, silently), or one deferred (``mm_compaction_deferred``)
ATTEMPT_NO_RUN, ATTEMPT_DEFERRED = "none", "deferred"

COMPACT_MAX_DEFER_SHIFT = 6  # do not skip compaction more than 64 times
COMPACT_CLUSTER_MAX = 32  # SWAP_CLUSTER_MAX
HPAGE_FRAG_CHECK_INTERVAL_MSEC = 500  # kcompactd's proactive timer
COMPACTION_HPAGE_ORDER = frag.COMPACTION_HPAGE_ORDER

# enum migrate_mode
MIGRATE_ASYNC = 0
MIGRATE_SYNC_LIGHT = 1
MIGRATE_SYNC = 2

_ISOLATE_ABORT = 0
_ISOLATE_NONE = 1
_ISOLATE_SUCCESS = 2
_ENOMEM = -12

_PB_MASK = ~(PAGEBLOCK_NR_PAGES - 1)
_FAST_START_DONE = 1 << 62  # ULONG_MAX in cc->fast_start_pfn: reinit_migrate_pfn already used it

#: /proc/vmstat counters kept by the model (the last three are the model's own, not in /proc/vmstat;
#: ``compact_steps`` counts compact_finished checks, the kernel's mm_compaction_finished events)
COMPACT_VMSTAT = (
    "compact_migrate_scanned", "compact_free_scanned", "compact_isolated",
    "compact_stall", "compact_fail", "compact_success",
    "compact_daemon_wake", "compact_daemon_migrate_scanned", "compact_daemon_free_scanned",
    "pgmigrate_success", "pgmigrate_fail",
    "compact_deferred", "compact_proactive_runs", "compact_steps",
)


class CompactWork(NamedTuple):
    """Work done by one step of compaction (what ``DaemonCosts`` prices)."""

    migrate_scanned: int = 0
    free_scanned: int = 0
    isolated: int = 0
    migrated: int = 0
    failed: int = 0
    steps: int = 0  # compact_finished checks (one per migrate-scanner step, the last one included)
    skipped: int = 0  # pageblocks the migrate scanner passed over (marked skip, offline or unsuitable)


def compact_gap(order: int) -> int:
    """``compact_gap``: free pages compaction needs beyond the watermark (2 << order)."""
    return 2 << order


def _pageblock_start(pfn: int) -> int:
    return pfn & _PB_MASK


def _pageblock_end(pfn: int) -> int:
    """``pageblock_end_pfn``: ALIGN(pfn + 1, pageblock_nr_pages)."""
    return (pfn & _PB_MASK) + PAGEBLOCK_NR_PAGES


def _block_end_pfn(pfn: int, order: int) -> int:
    """``block_end_pfn``: ALIGN(pfn + 1, 1 << order)."""
    return ((pfn >> order) + 1) << order


# ------------------------------------------------------ free-list searches
def freelist_scan_limit(fast_search_fail: int) -> int:
    """``freelist_scan_limit``: entries a fast free-list search may look at, halved per failed search.

    >>> [freelist_scan_limit(f) for f in (0, 1, 2, 5, 6, 64)]
    [33, 17, 9, 2, 1, 1]
    """
    return (COMPACT_CLUSTER_MAX >> min(63, fast_search_fail)) + 1


def move_freelist_head(node: Node, lid: int, pfn: int) -> None:
    """``move_freelist_head``: rotate list ``lid`` so ``pfn`` comes first and the entries before it go
    to the tail (a reverse search looks at the entries it has not seen first next time).

    >>> from kmemdes.mm.mm_init import build_node, parse_size
    >>> node = build_node("x86_64", parse_size("64M"), cpus=1)
    >>> lid = node.zones[1].lid0   # DMA32 order 0 unmovable: empty at boot
    >>> for pfn in (10, 11, 12, 13):
    ...     node._list_add_tail(lid, pfn)
    >>> move_freelist_head(node, lid, 12); list(node._walk(lid)), node.ltail[lid]
    ([12, 13, 10, 11], 11)
    """
    head = node.lhead[lid]
    if head == pfn:
        return
    prv, nxt = node.prv, node.nxt
    before = prv[pfn]
    tail = node.ltail[lid]
    nxt[tail] = head
    prv[head] = tail
    prv[pfn] = -1
    nxt[before] = -1
    node.lhead[lid] = pfn
    node.ltail[lid] = before


def move_freelist_tail(node: Node, lid: int, pfn: int) -> None:
    """``move_freelist_tail``: rotate list ``lid`` so ``pfn`` comes last and the entries after it
    first (a forward search looks at the entries it has not seen first next time).

    >>> from kmemdes.mm.mm_init import build_node, parse_size
    >>> node = build_node("x86_64", parse_size("64M"), cpus=1)
    >>> lid = node.zones[1].lid0
    >>> for pfn in (10, 11, 12, 13):
    ...     node._list_add_tail(lid, pfn)
    >>> move_freelist_tail(node, lid, 11); list(node._walk(lid)), node.lhead[lid]
    ([12, 13, 10, 11], 12)
    """
    if node.ltail[lid] != pfn:
        move_freelist_head(node, lid, node.nxt[pfn])  # pfn last = its successor first


# ---------------------------------------------------------------- deferral
def split_isolated_freepage(freepages: list, start: int, order: int) -> int:
    """The ``compaction_alloc`` split (6.10+): take the first isolated block of order ``start``, keep
    its lowest ``2^order`` pages as the target and put the upper halves at the heads of the
    lower orders' lists of ``freepages`` (one deque per order).  Returns the target pfn.

    >>> from collections import deque
    >>> fp = [deque() for _ in range(11)]; fp[8].append(0x5f5900)
    >>> hex(split_isolated_freepage(fp, 8, 0)), [hex(fp[o][0]) for o in range(8)]
    ('0x5f5900', ['0x5f5901', '0x5f5902', '0x5f5904', '0x5f5908', '0x5f5910', '0x5f5920', '0x5f5940', '0x5f5980'])
    """
    pfn = freepages[start].popleft()
    size = 1 << start
    while start > order:
        start -= 1
        size >>= 1
        freepages[start].appendleft(pfn + size)
    return pfn


def defer_compaction(zone: Zone, order: int) -> None:
    """``defer_compaction``: after a failure, skip the next 1 << defer_shift attempts at >= order_failed.

    >>> from types import SimpleNamespace as Z
    >>> z = Z(compact_considered=5, compact_defer_shift=6, compact_order_failed=10)
    >>> defer_compaction(z, 9); (z.compact_considered, z.compact_defer_shift, z.compact_order_failed)
    (0, 6, 9)
    """
    zone.compact_considered = 0
    zone.compact_defer_shift += 1
    if order < zone.compact_order_failed:
        zone.compact_order_failed = order
    if zone.compact_defer_shift > COMPACT_MAX_DEFER_SHIFT:
        zone.compact_defer_shift = COMPACT_MAX_DEFER_SHIFT


def compaction_deferred(zone: Zone, order: int) -> bool:
    """``compaction_deferred``: True if this attempt at ``order`` should be skipped."""
    if order < zone.compact_order_failed:
        return False
    defer_limit = 1 << zone.compact_defer_shift
    zone.compact_considered += 1
    if zone.compact_considered >= defer_limit:
        zone.compact_considered = defer_limit
        return False
    return True


def compaction_defer_reset(zone: Zone, order: int, alloc_success: bool) -> None:
    """``compaction_defer_reset``: after a success (or an expected one) at ``order``."""
    if alloc_success:
        zone.compact_considered = 0
        zone.compact_defer_shift = 0
    if order >= zone.compact_order_failed:
        zone.compact_order_failed = order + 1


def compaction_restarting(zone: Zone, order: int) -> bool:
    """``compaction_restarting``: deferred to the maximum and the 64 skips are used up."""
    if order < zone.compact_order_failed:
        return False
    return (zone.compact_defer_shift == COMPACT_MAX_DEFER_SHIFT
            and zone.compact_considered >= 1 << zone.compact_defer_shift)


# ------------------------------------------------------------- suitability
def _compaction_suitable_wmark(node: Node, zone: Zone, order: int, highest_zoneidx: int,
                               free_pages: Optional[int] = None, watermark: Optional[int] = None) -> bool:
    """``__compaction_suitable`` (6.15+, "push watermark into compaction_suitable() callers"):
    order-0 free pages above the caller's ``watermark`` (default: min) + compact_gap, plus
    (low - min) for costly orders -- so low + gap for the direct callers, as before 6.15."""
    if watermark is None:
        watermark = zone.wmark(0)
    watermark += compact_gap(order)
    if order > PAGE_ALLOC_COSTLY_ORDER:
        watermark += zone._watermark[1] - zone._watermark[0]
    return node._zone_watermark_ok(zone, 0, watermark, highest_zoneidx, ALLOC_CMA, free_pages)


def compaction_suitable(node: Node, zone: Zone, order: int, highest_zoneidx: int,
                        extfrag_threshold: int = 500, watermark: Optional[int] = None) -> bool:
    """``compaction_suitable``: enough order-0 pages, and (costly orders) a failure due to fragmentation.

    ``watermark`` is the caller's (6.15+): min for direct reclaim
    (``should_continue_reclaim``, ``compaction_zonelist_suitable``), high for
    ``compaction_ready``, the request's for ``compaction_suit_allocation_order``.
    For order > PAGE_ALLOC_COSTLY_ORDER a fragmentation index in
    [0, extfrag_threshold] means the failure comes from a lack of memory:
    reclaim, not compaction, is what helps.
    """
    if not _compaction_suitable_wmark(node, zone, order, highest_zoneidx, None, watermark):
        return False
    if order > PAGE_ALLOC_COSTLY_ORDER:
        fragindex = frag.fragmentation_index(zone.nr_free, order)
        if 0 <= fragindex <= extfrag_threshold:
            return False
    return True


def nr_free_pages_blocks(zone: Zone) -> int:
    """NR_FREE_PAGES_BLOCKS (6.15+): free pages in free blocks of at least a pageblock."""
    return sum(c << o for o, c in enumerate(zone.nr_free) if o >= PAGEBLOCK_ORDER)


def compaction_suit_allocation_order(node: Node, zone: Zone, order: int, highest_zoneidx: int,
                                     alloc_flags: int, extfrag_threshold: int = 500,
                                     async_: bool = False, kcompactd: bool = False) -> int:
    """``compaction_suit_allocation_order``: SUCCESS if the request's watermark already passes,
    SKIPPED if compaction is unlikely to help, else CONTINUE.

    With ``defrag_mode`` kcompactd (``kcompactd``) counts only free whole pageblocks
    (NR_FREE_PAGES_BLOCKS) against the watermark ("defrag_mode kswapd/kcompactd
    watermarks", 6.15): it keeps compacting until the mark is met in pageblocks, which
    ALLOC_NOFRAGMENT allocations of every order can claim without polluting.  Costly
    async requests without ALLOC_CMA also need order-0 pages above mark + compact_gap.
    """
    watermark = zone.wmark(alloc_flags & ALLOC_WMARK_MASK)
    free = nr_free_pages_blocks(zone) if kcompactd and node.policy.defrag_mode else None
    if node._zone_watermark_ok(zone, order, watermark, highest_zoneidx, alloc_flags, free):
        return COMPACT_SUCCESS
    if order > PAGE_ALLOC_COSTLY_ORDER and async_ and not alloc_flags & ALLOC_CMA:
        if not node._zone_watermark_ok(zone, 0, watermark + compact_gap(order), highest_zoneidx, 0):
            return COMPACT_SKIPPED
    if not compaction_suitable(node, zone, order, highest_zoneidx, extfrag_threshold, watermark):
        return COMPACT_SKIPPED
    return COMPACT_CONTINUE


def fragmentation_score_node(node: Node) -> int:
    """``fragmentation_score_node``: populated zones' scores weighted by present pages (0..100)."""
    return frag.fragmentation_score_node([(z.present, z.nr_free) for z in node.zones if z.present])


def fragmentation_score_wmark(proactiveness: int, low: bool) -> int:
    """``fragmentation_score_wmark``: 80 (low) / 90 (high) with the default proactiveness 20."""
    return frag.fragmentation_score_wmark(proactiveness, low)


def run_to_completion(steps: Generator):
    """Exhaust a step generator (``compact_zone``, ``kcompactd_do_work``...) and return its result."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


# ---------------------------------------------------------- compact_control
class CompactControl:
    """``struct compact_control``: one compaction run over one zone."""

    __slots__ = (
        "order", "gfp", "zone", "mode", "alloc_flags", "highest_zoneidx", "migratetype",
        "direct_compaction", "whole_zone", "ignore_skip_hint", "ignore_block_suitable",
        "no_set_skip_hint", "proactive_compaction", "finish_pageblock",
        "migrate_pfn", "free_pfn", "migratepages", "nr_migratepages", "freepages", "nr_freepages",
        "total_migrate_scanned", "total_free_scanned", "nr_isolated", "nr_migrated", "nr_failed", "nr_skipped",
        "pending_free", "search_order", "fast_search_fail", "fast_start_pfn", "nr_steps", "ended",
    )

    def __init__(self, zone: Zone, order: int, gfp: int = GFP_KERNEL, mode: int = MIGRATE_SYNC_LIGHT,
                 alloc_flags: int = 0, highest_zoneidx: int = 0, direct_compaction: bool = False,
                 whole_zone: bool = False, ignore_skip_hint: bool = False,
                 ignore_block_suitable: bool = False, proactive_compaction: bool = False):
        self.zone = zone
        self.order = order
        self.gfp = gfp
        self.mode = mode
        self.alloc_flags = alloc_flags
        self.highest_zoneidx = highest_zoneidx
        self.migratetype = gfp_migratetype(gfp)
        self.direct_compaction = direct_compaction
        self.whole_zone = whole_zone
        self.ignore_skip_hint = ignore_skip_hint
        self.ignore_block_suitable = ignore_block_suitable
        self.no_set_skip_hint = False
        self.proactive_compaction = proactive_compaction
        self.finish_pageblock = False
        self.migrate_pfn = 0
        self.free_pfn = 0
        self.migratepages: list[int] = []  # head pfns isolated for migration
        self.nr_migratepages = 0
        self.freepages: list[deque] = [deque() for _ in range(NR_PAGE_ORDERS)]  # isolated free blocks per order
        self.nr_freepages = 0
        self.total_migrate_scanned = 0
        self.nr_skipped = 0
        self.total_free_scanned = 0
        self.nr_isolated = 0
        self.nr_migrated = 0
        self.nr_failed = 0
        self.pending_free: list[tuple[int, int]] = []  # migrated sources on the per-CPU list
        self.search_order = order  # fast_isolate_freepages: the order its next search starts at
        self.fast_search_fail = 0  # fast free-list searches that found nothing (shrinks the scan limit)
        self.fast_start_pfn = 0  # lowest pfn fast_find_migrateblock found; _FAST_START_DONE once used
        self.nr_steps = 0  # compact_finished calls (trace_mm_compaction_finished events)
        self.ended: Optional[int] = None  # how the run ended (mm_compaction_end's status); None: it did not run

    def work(self) -> CompactWork:
        return CompactWork(self.total_migrate_scanned, self.total_free_scanned, self.nr_isolated,
                           self.nr_migrated, self.nr_failed, self.nr_steps, self.nr_skipped)


class _ZoneCompactState:
    """The parts of ``struct zone`` the page-allocator model does not keep."""

    __slots__ = ("cached_migrate_pfn", "init_migrate_pfn", "init_free_pfn", "blockskip_flush")

    def __init__(self, zone: Zone):
        self.cached_migrate_pfn = [zone.start_pfn, zone.start_pfn]  # [async, sync]
        self.init_migrate_pfn = zone.start_pfn
        self.init_free_pfn = _pageblock_start(zone.end_pfn - 1)
        self.blockskip_flush = False


# ----------------------------------------------------------------- the model
class Compaction:
    """Compaction of one node; ``Compaction(node)`` attaches itself as ``node.compaction``.

    ``pin_fraction`` is the chance that an isolated movable folio fails to
    migrate in any mode (elevated refcount from GUP pins or concurrent I/O,
    page locked, racing truncation: ``migrate_pages`` gives up after its
    retries).  ``async_skip_fraction`` is the extra chance, in
    ``MIGRATE_ASYNC`` only, that a movable folio is not even isolated
    (dirty pages of mappings without ``migrate_folio``, pages under
    writeback: ``ISOLATE_ASYNC_MIGRATE``).  Both are drawn per folio and per
    attempt (these states are temporary) from a seeded generator.

    Defaults 0.002 and 0.005 are estimates, not measurements (the reference
    machine's /proc/vmstat shows no compaction at all to calibrate against):
    transient failures are rare per page, and the published
    direct-compaction success rates of a few percent (J. Weiner's 2.8-4 %
    on production hosts, quoted in the defrag_mode series) come mostly from
    pageblocks polluted by unmovable allocations, async compaction giving up
    early, skip hints and deferral — which the model produces from the
    workload — not from per-page failures.  Still, with these defaults a
    pageblock holding 128 movable pages clears in one sync pass with
    probability 0.998**128 = 77 % (384 pages: 46 %), in one async pass with
    (0.998 * 0.995)**128 = 41 %: compaction is not magically successful even
    on fully movable memory.  Set both to 0 to study the scanners alone.
    """

    def __init__(self, node: Node, *, proactiveness: int = 20, extfrag_threshold: int = 500,
                 pin_fraction: float = 0.002, async_skip_fraction: float = 0.005, seed: int = 0):
        if not 0 <= proactiveness <= 100:
            raise KmemdesError(f"compaction_proactiveness must be in 0..100, got {proactiveness}")
        if not 0 <= extfrag_threshold <= 1000:
            raise KmemdesError(f"extfrag_threshold must be in 0..1000, got {extfrag_threshold}")
        for name, v in (("pin_fraction", pin_fraction), ("async_skip_fraction", async_skip_fraction)):
            if not 0.0 <= v <= 1.0:
                raise KmemdesError(f"compaction {name} must be in [0, 1], got {v}")
        self.node = node
        self.proactiveness = proactiveness
        self.extfrag_threshold = extfrag_threshold
        self.pin_fraction = pin_fraction
        self.async_skip_fraction = async_skip_fraction
        self.rng = random.Random(seed)
        self.pb_skip = bytearray(len(node.pb_mt))  # PB_migrate_skip per pageblock
        self._zstate = {id(z): _ZoneCompactState(z) for z in node.zones}
        self.vmstat: dict[str, int] = dict.fromkeys(COMPACT_VMSTAT, 0)
        self.last_work = CompactWork()  # work of the last try_to_compact_pages call
        #: how the last try_to_compact_pages call's last compact_zone run ended (the status its
        #: mm_compaction_end would print), or ATTEMPT_NO_RUN / ATTEMPT_DEFERRED when no zone ran
        self.last_ended = ATTEMPT_NO_RUN
        #: compact_zone runs that got past the suitability check, by who ran them and how they ended
        #: (the kernel's mm_compaction_begin / mm_compaction_end pairs): ("direct" | "kcompactd", status)
        self.run_ends: dict[tuple[str, int], int] = {}
        # pglist_data's kcompactd fields
        self.kcompactd_max_order = 0
        self.kcompactd_highest_zoneidx = self._nr_zones_minus_one()
        self.proactive_compact_trigger = False
        self.kcompactd_sleeping = False  # wq_has_sleeper(&pgdat->kcompactd_wait): set by the daemon
        self.on_wakeup_kcompactd = None  # callable() set by the kcompactd daemon
        node.compaction = self

    def _nr_zones_minus_one(self) -> int:
        populated = [z.idx for z in self.node.zones if z.present]
        return max(populated) if populated else 0

    def _zs(self, zone: Zone) -> _ZoneCompactState:
        zs = self._zstate.get(id(zone))
        if zs is None:
            zs = self._zstate[id(zone)] = _ZoneCompactState(zone)
        return zs

    def kswapd_is_running(self) -> bool:
        """``kswapd_is_running``: read from the reclaim model (its kswapd sets the flag)."""
        return bool(getattr(self.node.reclaim, "kswapd_running", False))

    # ------------------------------------------------------ skip hints
    def _isolation_suitable(self, cc: CompactControl, pfn: int) -> bool:
        """``isolation_suitable``."""
        return cc.ignore_skip_hint or not self.pb_skip[pfn >> PAGEBLOCK_ORDER]

    def _reset_cached_positions(self, zone: Zone) -> None:
        """``reset_cached_positions``."""
        zs = self._zs(zone)
        zs.cached_migrate_pfn[0] = zs.cached_migrate_pfn[1] = zone.start_pfn
        zone.cached_migrate_pfn = zone.start_pfn
        zone.cached_free_pfn = _pageblock_start(zone.end_pfn - 1)

    def _reset_isolation_pfn(self, zone: Zone, pfn: int, check_source: bool, check_target: bool) -> bool:
        """``__reset_isolation_pfn``: clear the skip bit of ``pfn``'s pageblock if a sample of its pages
        (every 8th) finds a page on the LRU (source) or a free buddy head (target).

        A block an allocated folio of order >= 9 fills (a THP, a hugetlb page) keeps its bit
        (``pageblock_skip_persistent``); a non-Movable block is no target's starting point.
        """
        node = self.node
        pb = pfn >> PAGEBLOCK_ORDER
        if not node.pb_valid[pb] or node.pb_zone[pb] is not zone:
            return False
        if self._pageblock_skip_persistent(pfn & _PB_MASK):
            return False
        if check_source and check_target and not self.pb_skip[pb]:
            return True
        if not check_source and check_target and node.pb_mt[pb] != MIGRATE_MOVABLE:
            return False
        start = max(pfn & _PB_MASK, zone.start_pfn)
        end = min(_pageblock_end(pfn), zone.end_pfn)
        lid = node.lid
        lbo = node.l_buddy_order
        rmap = node.rmap
        reclaim = node.reclaim
        lru = reclaim.is_page_cache if reclaim is not None else None
        for p in range(start, end, 1 << PAGE_ALLOC_COSTLY_ORDER):
            if check_source and (p in rmap or (lru is not None and lru(p))):
                self.pb_skip[pb] = 0
                return True
            if check_target:
                li = lid[p]
                if li != NOLIST and lbo[li] >= 0:
                    self.pb_skip[pb] = 0
                    return True
        return False

    def _reset_isolation_suitable(self, zone: Zone) -> None:
        """``__reset_isolation_suitable``: after a whole-zone pass (``compact_blockskip_flush``), walk the
        zone from both ends clearing skip bits where a sample finds LRU or free pages; the lowest
        such source block and highest target block become the scanners' (and a pass's) start."""
        zs = self._zs(zone)
        if not zs.blockskip_flush:
            return
        zs.blockskip_flush = False
        migrate_pfn = zone.start_pfn
        free_pfn = zone.end_pfn - 1
        reset_migrate = free_pfn
        reset_free = migrate_pfn
        source_set = free_set = False
        while migrate_pfn < free_pfn:
            if self._reset_isolation_pfn(zone, migrate_pfn, True, source_set) and migrate_pfn < reset_migrate:
                source_set = True
                reset_migrate = migrate_pfn
                zs.init_migrate_pfn = reset_migrate
                zs.cached_migrate_pfn[0] = zs.cached_migrate_pfn[1] = reset_migrate
                zone.cached_migrate_pfn = reset_migrate
            if self._reset_isolation_pfn(zone, free_pfn, free_set, True) and free_pfn > reset_free:
                free_set = True
                reset_free = free_pfn
                zs.init_free_pfn = reset_free
                zone.cached_free_pfn = reset_free
            migrate_pfn += PAGEBLOCK_NR_PAGES
            free_pfn -= PAGEBLOCK_NR_PAGES
        if reset_migrate >= reset_free:  # no suitable block reset: leave no distance
            zs.cached_migrate_pfn[0] = zs.cached_migrate_pfn[1] = migrate_pfn
            zone.cached_migrate_pfn = migrate_pfn
            zone.cached_free_pfn = free_pfn

    def mark_persistent_skip(self) -> int:
        """Set PB_migrate_skip on every pageblock ``pageblock_skip_persistent`` holds (one allocated
        folio of order >= 9 fills it: a THP, a hugetlb page); returns how many.

        For a start state taken from a running kernel: the skip bits are not visible from user
        space, but the free scanner marks such a block the first time it passes it and
        ``__reset_isolation_pfn`` never clears it, so on a machine whose hugetlb pool grew while
        memory was in use (compaction ran for it) they are set.
        """
        pb_skip = self.pb_skip
        n = 0
        for pb in range(len(pb_skip)):
            if self.node.pb_valid[pb] and not pb_skip[pb] and self._pageblock_skip_persistent(pb << PAGEBLOCK_ORDER):
                pb_skip[pb] = 1
                n += 1
        return n

    def reset_isolation_suitable(self) -> None:
        """``reset_isolation_suitable``: called by kswapd before it sleeps."""
        for zone in self.node.zones:
            if zone.present and self._zs(zone).blockskip_flush:
                self._reset_isolation_suitable(zone)

    def _update_cached_migrate(self, cc: CompactControl, pfn: int) -> None:
        """``update_cached_migrate``: where async and sync compaction restart."""
        if cc.no_set_skip_hint:
            return
        pfn = _pageblock_end(pfn)
        zs = self._zs(cc.zone)
        if pfn > zs.cached_migrate_pfn[0]:
            zs.cached_migrate_pfn[0] = pfn
            cc.zone.cached_migrate_pfn = pfn
        if cc.mode != MIGRATE_ASYNC and pfn > zs.cached_migrate_pfn[1]:
            zs.cached_migrate_pfn[1] = pfn

    def _update_pageblock_skip(self, cc: CompactControl, block_pfn: int, pfn: int) -> None:
        """``update_pageblock_skip``: mark a fully scanned free-scanner block; pull the cached free pfn down."""
        if cc.no_set_skip_hint:
            return
        self.pb_skip[block_pfn >> PAGEBLOCK_ORDER] = 1
        if pfn < cc.zone.cached_free_pfn:
            cc.zone.cached_free_pfn = pfn

    # ------------------------------------------------- block suitability
    def _pageblock_skip_persistent(self, pfn: int) -> bool:
        """``pageblock_skip_persistent``: the block belongs to an allocated folio of order >= 9."""
        node = self.node
        ao = node.alloc_order
        if ao[pfn] != NO_ORDER and ao[pfn] >= PAGEBLOCK_ORDER:
            return True
        head = pfn & ~((1 << MAX_PAGE_ORDER) - 1)
        return head != pfn and ao[head] == MAX_PAGE_ORDER

    def _suitable_migration_source(self, cc: CompactControl, pfn: int) -> bool:
        """``suitable_migration_source``: async direct compaction only scans blocks of the request's kind."""
        if self._pageblock_skip_persistent(pfn):
            return False
        if cc.mode != MIGRATE_ASYNC or not cc.direct_compaction:
            return True
        block_mt = self.node.pb_mt[pfn >> PAGEBLOCK_ORDER]
        if cc.migratetype == MIGRATE_MOVABLE:
            return block_mt == MIGRATE_MOVABLE  # is_migrate_movable (no CMA)
        return block_mt == cc.migratetype

    def _suitable_migration_target(self, cc: CompactControl, pfn: int) -> bool:
        """``suitable_migration_target``: MOVABLE blocks not already one free block of order >= 9."""
        node = self.node
        li = node.lid[pfn]
        if li != NOLIST and node.l_buddy_order[li] >= PAGEBLOCK_ORDER:
            return False
        if cc.ignore_block_suitable:
            return True
        return node.pb_mt[pfn >> PAGEBLOCK_ORDER] == MIGRATE_MOVABLE

    def _block_in_zone(self, zone: Zone, start: int, end: int) -> bool:
        """``pageblock_pfn_to_page``: both ends inside the zone and the block online."""
        return (start >= zone.start_pfn and end <= zone.end_pfn
                and self.node.pb_valid[start >> PAGEBLOCK_ORDER] == 1)

    # --------------------------------------------------- migrate scanner
    def _fast_find_migrateblock(self, cc: CompactControl) -> int:
        """``fast_find_migrateblock``: start the migrate scanner at a MOVABLE pageblock that already
        has free pages (a block of order ``PAGE_ALLOC_COSTLY_ORDER`` .. cc->order-1 on its free
        list, low in the scan space, not marked skip), so fewer pages need moving to free it.

        Only for costly orders, a scanner at a pageblock start, no skip-hint override and no block
        to finish; direct compaction only for movable requests.  Returns the pfn to scan from.
        """
        pfn = cc.migrate_pfn
        zone = cc.zone
        if cc.ignore_skip_hint or cc.finish_pageblock:
            return pfn
        if pfn != zone.start_pfn and pfn != _pageblock_start(pfn):
            return pfn  # a scan restarted after COMPACT_CLUSTER_MAX pages
        if cc.order <= PAGE_ALLOC_COSTLY_ORDER:
            return pfn
        if cc.direct_compaction and cc.migratetype != MIGRATE_MOVABLE:
            return pfn
        node = self.node
        limit = freelist_scan_limit(cc.fast_search_fail)
        nr_scanned = 0
        # first pass: any block in the first half of the scan space, later ones the first eighth
        distance = (cc.free_pfn - cc.migrate_pfn) >> 1
        if cc.migrate_pfn != zone.start_pfn:
            distance >>= 2
        high_pfn = _pageblock_start(cc.migrate_pfn + distance)
        found = False
        nxt = node.nxt
        pb_skip = self.pb_skip
        order = cc.order - 1
        while order >= PAGE_ALLOC_COSTLY_ORDER and not found and nr_scanned < limit:
            lid = zone.lid0 + order * MIGRATE_TYPES + MIGRATE_MOVABLE
            freepage = node.lhead[lid] if zone.nr_free[order] else -1
            while freepage >= 0:  # list_for_each_entry
                nr_scanned += 1
                if nr_scanned > limit:
                    move_freelist_tail(node, lid, freepage)
                    break
                if freepage < high_pfn:
                    if pb_skip[freepage >> PAGEBLOCK_ORDER]:
                        freepage = nxt[freepage]
                        continue  # skipped recently
                    move_freelist_tail(node, lid, freepage)
                    if cc.fast_start_pfn != _FAST_START_DONE:  # update_fast_start_pfn
                        cc.fast_start_pfn = min(cc.fast_start_pfn or freepage, freepage)
                    pfn = max(_pageblock_start(freepage), zone.start_pfn)
                    cc.fast_search_fail = 0
                    found = True
                    break
                freepage = nxt[freepage]
            order -= 1
        cc.total_migrate_scanned += nr_scanned
        if not found:
            cc.fast_search_fail += 1
            # reinit_migrate_pfn: scan linearly from the lowest block a fast search found
            if cc.fast_start_pfn and cc.fast_start_pfn != _FAST_START_DONE:
                cc.migrate_pfn = cc.fast_start_pfn
                cc.fast_start_pfn = _FAST_START_DONE
            pfn = cc.migrate_pfn
        return pfn

    def _isolate_migratepages(self, cc: CompactControl) -> int:
        """``isolate_migratepages``: isolate from the first suitable block at or after the pfn
        ``fast_find_migrateblock`` gives."""
        zone = cc.zone
        low_pfn = self._fast_find_migrateblock(cc)
        block_start = max(_pageblock_start(low_pfn), zone.start_pfn)
        block_end = _pageblock_end(low_pfn)
        # the fast search already made sure the block is not marked skip
        fast_find_block = low_pfn != cc.migrate_pfn and not cc.fast_search_fail
        pb_skip, pb_valid = self.pb_skip, self.node.pb_valid
        while block_end <= cc.free_pfn:
            if low_pfn == block_start and not fast_find_block and not cc.ignore_skip_hint:
                # a run of blocks marked skip or offline, which the loop passes over, in one step
                # (hugetlb pages leave thousands marked for good)
                pb, last = block_start >> PAGEBLOCK_ORDER, cc.free_pfn >> PAGEBLOCK_ORDER
                while pb < last and (pb_skip[pb] or pb_valid[pb] != 1):
                    pb += 1
                if pb != block_start >> PAGEBLOCK_ORDER:
                    cc.nr_skipped += pb - (block_start >> PAGEBLOCK_ORDER)
                    if pb == last:
                        cc.migrate_pfn = pb << PAGEBLOCK_ORDER
                        break
                    cc.migrate_pfn = low_pfn = block_start = pb << PAGEBLOCK_ORDER
                    block_end = block_start + PAGEBLOCK_NR_PAGES
            if self._block_in_zone(zone, block_start, block_end):
                first = low_pfn & (PAGEBLOCK_NR_PAGES - 1) == 0 or low_pfn == zone.start_pfn
                if first and not fast_find_block and not self._isolation_suitable(cc, block_start):
                    cc.nr_skipped += 1
                elif not self._suitable_migration_source(cc, block_start):
                    cc.nr_skipped += 1
                    self._update_cached_migrate(cc, block_end)
                else:
                    if self._isolate_migratepages_block(cc, low_pfn, block_end):
                        return _ISOLATE_ABORT
                    break
            fast_find_block = False
            cc.migrate_pfn = low_pfn = block_end
            block_start = block_end
            block_end += PAGEBLOCK_NR_PAGES
        return _ISOLATE_SUCCESS if cc.nr_migratepages else _ISOLATE_NONE

    def _isolate_migratepages_block(self, cc: CompactControl, low_pfn: int, end_pfn: int) -> int:
        """``isolate_migratepages_block``: isolate migratable folios of [low_pfn, end_pfn).

        Free buddy blocks are stepped over; allocations not in ``node.rmap``
        (slab, page tables, kernel and pcp pages) cannot be isolated, nor can
        page cache when the request lacks ``__GFP_FS`` (readahead's GFP_NOFS);
        in async direct mode one such page abandons its order-aligned block.
        """
        node = self.node
        zone = cc.zone
        rmap = node.rmap
        lid = node.lid
        lbo = node.l_buddy_order
        alloc_order = node.alloc_order
        rng = self.rng
        async_mode = cc.mode == MIGRATE_ASYNC
        async_skip = self.async_skip_fraction if async_mode else 0.0
        order = cc.order
        # "Only allow to migrate anonymous pages in GFP_NOFS context because those do not depend on
        # fs locks": without __GFP_FS (readahead's GFP_NOFS) page-cache folios are not isolated
        file_owner = node.reclaim if not cc.gfp & _GFP_FS else None
        cc.migrate_pfn = low_pfn
        nr_scanned = 0
        nr_isolated = 0
        skip_on_failure = cc.direct_compaction and async_mode
        next_skip_pfn = _block_end_pfn(low_pfn, order) if skip_on_failure else 0
        valid = False
        skip_updated = False
        block_idx = low_pfn >> PAGEBLOCK_ORDER
        migratepages = cc.migratepages
        first_isolated = len(migratepages)
        pfn = low_pfn
        aborted = False
        while pfn < end_pfn:
            if skip_on_failure and pfn >= next_skip_pfn:
                if nr_isolated:
                    break  # migrate what the previous order-aligned block gave
                next_skip_pfn = _block_end_pfn(pfn, order)
            nr_scanned += 1
            if not valid and (pfn & (PAGEBLOCK_NR_PAGES - 1) == 0 or pfn == zone.start_pfn):
                if not self._isolation_suitable(cc, pfn):
                    pfn = end_pfn
                    aborted = True
                    break
                valid = True
            li = lid[pfn]
            if li != NOLIST and lbo[li] >= 0:  # PageBuddy: step over the free block
                n = 1 << lbo[li]
                pfn += n
                nr_scanned += n - 1
                continue
            ao = alloc_order[pfn]
            owner = rmap.get(pfn) if ao != NO_ORDER else None
            n = 1 if ao == NO_ORDER else 1 << ao
            isolated = False
            if owner is not None and owner is not file_owner and not (
                    (order != -1 and ao >= order) or ao >= PAGEBLOCK_ORDER):  # skip_isolation_on_order
                if not (async_skip and rng.random() < async_skip):
                    if not skip_updated and valid:
                        # test_and_set_skip under the lru lock: another pass already took this block
                        skip_updated = True
                        if not cc.ignore_skip_hint:
                            was = self.pb_skip[block_idx]
                            if not was and not cc.no_set_skip_hint:
                                self.pb_skip[block_idx] = 1
                            if was and not cc.finish_pageblock:
                                pfn = end_pfn
                                aborted = True
                                break
                    isolated = True
            pfn += n
            nr_scanned += n - 1
            if isolated:
                migratepages.append(pfn - n)
                cc.nr_migratepages += n
                nr_isolated += n
                if cc.nr_migratepages >= COMPACT_CLUSTER_MAX and not cc.finish_pageblock:
                    break
                continue
            # isolate_fail
            if not skip_on_failure:
                continue
            if nr_isolated:  # cannot form the cc->order block here: put the isolated pages back
                del migratepages[first_isolated:]
                cc.nr_migratepages -= nr_isolated
                nr_isolated = 0
            if pfn - 1 < next_skip_pfn:
                pfn = next_skip_pfn
                next_skip_pfn += 1 << order
        if pfn > end_pfn:
            pfn = end_pfn
        if pfn == end_pfn and (not nr_isolated or cc.finish_pageblock):
            if not aborted and not cc.no_set_skip_hint and valid and not skip_updated:
                self.pb_skip[block_idx] = 1
            self._update_cached_migrate(cc, pfn)
        cc.total_migrate_scanned += nr_scanned
        cc.nr_isolated += nr_isolated
        cc.migrate_pfn = pfn
        return 0

    # ------------------------------------------------------ free scanner
    def _next_search_order(self, cc: CompactControl, order: int) -> int:
        """``next_search_order``: orders below cc->order round-robin; -1 once the search wrapped."""
        order -= 1
        if order < 0:
            order = cc.order - 1
        if order == cc.search_order:
            cc.search_order -= 1
            if cc.search_order < 0:
                cc.search_order = cc.order - 1
            return -1
        return order

    def _isolate_free_page(self, cc: CompactControl, pfn: int, order: int) -> int:
        """``__isolate_free_page`` for the free scanner: keep the zone above min + the block, take it
        off its free list, mark it reserved and queue it on cc->freepages[order]; returns the pages
        isolated (0 when the watermark check failed)."""
        node = self.node
        zone = cc.zone
        n = 1 << order
        if not node._zone_watermark_ok(zone, 0, zone._watermark[0] + n, 0, ALLOC_CMA):
            return 0
        node.take_block(pfn, order)
        node.page_mt[pfn:pfn + n] = bytes((PAGE_RESERVED,)) * n
        cc.freepages[order].append(pfn)
        cc.nr_freepages += n
        return n

    def _fast_isolate_freepages(self, cc: CompactControl) -> None:
        """``fast_isolate_freepages``: search the MOVABLE free lists below cc->order for a target.

        Each order's list is read from its tail; the first block in the top quarter of the scan
        space (``free_pfn`` down to the migrate scanner) is taken at once, else the highest one in
        the top half; skip bits and the block's migratetype are not looked at.  Starting a pass
        (free_pfn at the zone's top), the search looks deeper and, finding nothing, moves the free
        scanner down to the highest free block seen.  A block taken here has its pageblock scanned
        around it (``fast_isolate_around``) unless this is async direct compaction.
        """
        if cc.order <= 0:
            return
        node = self.node
        zone = cc.zone
        lcount = node.lcount
        ltail = node.ltail
        prv = node.prv
        limit = max(1, freelist_scan_limit(cc.fast_search_fail) >> 1)
        nr_scanned = 0
        highest = 0
        page = -1
        scan_start = False
        if cc.free_pfn >= self._zs(zone).init_free_pfn:
            limit = PAGEBLOCK_NR_PAGES >> 1
            scan_start = True
        distance = cc.free_pfn - cc.migrate_pfn
        low_pfn = _pageblock_start(cc.free_pfn - (distance >> 2))
        min_pfn = _pageblock_start(cc.free_pfn - (distance >> 1))
        if min_pfn > low_pfn:
            low_pfn = min_pfn
        cc.search_order = min(cc.order - 1, cc.search_order)
        order = cc.search_order
        while page < 0 and order >= 0:
            lid = zone.lid0 + order * MIGRATE_TYPES + MIGRATE_MOVABLE
            if zone.nr_free[order] and lcount[lid]:
                order_scanned = 0
                high_pfn = 0
                freepage = ltail[lid]
                while freepage >= 0:  # list_for_each_entry_reverse
                    order_scanned += 1
                    nr_scanned += 1
                    pfn = freepage
                    if pfn >= highest:
                        highest = max(_pageblock_start(pfn), zone.start_pfn)
                    if pfn >= low_pfn:
                        cc.fast_search_fail = 0
                        cc.search_order = order
                        page = pfn
                        break
                    if pfn >= min_pfn and pfn > high_pfn:
                        high_pfn = pfn
                        limit >>= 1  # shorten the scan once a candidate is found
                    if order_scanned >= limit:
                        break
                    freepage = prv[freepage]
                if page < 0 and high_pfn:
                    page = freepage = high_pfn
                if freepage >= 0:
                    move_freelist_head(node, lid, freepage)
                if page >= 0:
                    n = self._isolate_free_page(cc, page, order)
                    if n:
                        nr_scanned += n - 1
                        cc.nr_isolated += n
                    else:
                        order = cc.search_order + 1  # isolation failed: abort the search
                        page = -1
                if cc.nr_freepages >= cc.nr_migratepages:
                    break
                if order_scanned >= limit:
                    limit = max(1, limit >> 1)
            order = self._next_search_order(cc, order)
        if page < 0:
            cc.fast_search_fail += 1
            if scan_start:
                # use the highest pfn seen above min; else, for direct compaction, the min mark
                if highest >= min_pfn:
                    page = cc.free_pfn = highest
                elif cc.direct_compaction and 0 <= min_pfn < node.max_pfn:
                    end = min(_pageblock_end(min_pfn), zone.end_pfn)
                    if self._block_in_zone(zone, min_pfn, end) and self._suitable_migration_target(cc, min_pfn):
                        page = min_pfn
                    cc.free_pfn = min_pfn
        if highest and highest >= zone.cached_free_pfn:
            zone.cached_free_pfn = highest - PAGEBLOCK_NR_PAGES
        cc.total_free_scanned += nr_scanned
        if page >= 0:
            self._fast_isolate_around(cc, page)

    def _fast_isolate_around(self, cc: CompactControl, pfn: int) -> None:
        """``fast_isolate_around``: scan the rest of the pageblock a fast search found a target in."""
        if cc.nr_freepages >= cc.nr_migratepages:
            return
        if cc.direct_compaction and cc.mode == MIGRATE_ASYNC:
            return  # minimise scanning during async compaction
        zone = cc.zone
        start = max(_pageblock_start(pfn), zone.start_pfn)
        end = min(_pageblock_end(pfn), zone.end_pfn)
        if not self._block_in_zone(zone, start, end):
            return
        _, reached = self._isolate_freepages_block(cc, start, end, 1)
        if reached == end and not cc.no_set_skip_hint:
            self.pb_skip[start >> PAGEBLOCK_ORDER] = 1  # full or nearly full: skip it next time

    def _isolate_freepages(self, cc: CompactControl) -> None:
        """``isolate_freepages``: a fast search of the free lists, else scan down for target pages.

        The linear scan looks at every ``stride``-th page of a block: 1 for sync compaction; for
        async it starts at ``COMPACT_CLUSTER_MAX`` and doubles after each block that gave nothing.
        """
        self._fast_isolate_freepages(cc)
        if cc.nr_freepages:
            return
        zone = cc.zone
        isolate_start_pfn = cc.free_pfn
        block_start = _pageblock_start(isolate_start_pfn)
        block_end = min(block_start + PAGEBLOCK_NR_PAGES, zone.end_pfn)
        low_pfn = _pageblock_end(cc.migrate_pfn)
        stride = COMPACT_CLUSTER_MAX if cc.mode == MIGRATE_ASYNC else 1
        while block_start >= low_pfn:
            if (self._block_in_zone(zone, block_start, block_end)
                    and self._suitable_migration_target(cc, block_start)
                    and self._isolation_suitable(cc, block_start)):
                nr_isolated, isolate_start_pfn = self._isolate_freepages_block(cc, isolate_start_pfn,
                                                                                block_end, stride)
                if isolate_start_pfn == block_end:
                    self._update_pageblock_skip(cc, block_start, block_start - PAGEBLOCK_NR_PAGES)
                if cc.nr_freepages >= cc.nr_migratepages:
                    if isolate_start_pfn >= block_end:
                        isolate_start_pfn = block_start - PAGEBLOCK_NR_PAGES
                    break
                if isolate_start_pfn < block_end:
                    break  # isolation failed early (watermark)
                stride = 1 if nr_isolated else min(COMPACT_CLUSTER_MAX, stride << 1)
            block_end = block_start
            block_start -= PAGEBLOCK_NR_PAGES
            isolate_start_pfn = block_start
        cc.free_pfn = isolate_start_pfn

    def _isolate_freepages_block(self, cc: CompactControl, start_pfn: int, end_pfn: int,
                                 stride: int = 1) -> tuple[int, int]:
        """``isolate_freepages_block`` (non-strict): take free buddy blocks at their order.

        Looks at every ``stride``-th page (a compound page is stepped over whole, an isolated
        block to its end).  Returns (pages isolated, pfn reached).  Isolated pages leave the free
        lists and are marked reserved until used as targets or released.
        """
        node = self.node
        lid = node.lid
        lbo = node.l_buddy_order
        alloc_order = node.alloc_order
        nr_scanned = 0
        total = 0
        pfn = start_pfn
        while pfn < end_pfn:
            nr_scanned += 1
            li = lid[pfn]
            if li != NOLIST and lbo[li] >= 0:
                n = self._isolate_free_page(cc, pfn, lbo[li])
                if not n:
                    break
                total += n
                nr_scanned += n - 1
                if cc.nr_migratepages <= cc.nr_freepages:
                    pfn += n
                    break
                pfn += n - 1 + stride
                continue
            ao = alloc_order[pfn]
            if ao != NO_ORDER and ao > 0 and pfn + (1 << ao) <= end_pfn:  # compound page: skip it at once
                pfn += (1 << ao) - 1
                nr_scanned += (1 << ao) - 1
            pfn += stride
        if pfn > end_pfn:
            pfn = end_pfn
        cc.total_free_scanned += nr_scanned
        cc.nr_isolated += total
        return total, pfn

    def _compaction_alloc(self, cc: CompactControl, order: int) -> int:
        """``compaction_alloc`` (6.10+): first isolated block of the smallest sufficient order, split as ``expand``."""
        freepages = cc.freepages
        for attempt in (0, 1):
            for start in range(order, NR_PAGE_ORDERS):
                if freepages[start]:
                    break
            else:
                if attempt == 0:
                    self._isolate_freepages(cc)
                    continue
                return -1
            pfn = split_isolated_freepage(freepages, start, order)
            cc.nr_freepages -= 1 << order
            return pfn
        return -1

    def _drain_pending(self, cc: CompactControl) -> None:
        """``lru_add_drain_cpu_zone`` / ``drain_local_pages``: migrated sources reach the buddy lists."""
        node = self.node
        zone = cc.zone
        page_mt = node.page_mt
        for pfn, order in cc.pending_free:
            n = 1 << order
            page_mt[pfn:pfn + n] = bytes((PAGE_FREE,)) * n
            node.free_one_page(zone, pfn, order)
        cc.pending_free.clear()

    def _release_freepages(self, cc: CompactControl) -> int:
        """``release_free_list``: unused isolated blocks go back to the buddy; returns the highest pfn."""
        node = self.node
        zone = cc.zone
        high = 0
        for order in range(NR_PAGE_ORDERS):
            q = cc.freepages[order]
            n = 1 << order
            while q:
                pfn = q.popleft()
                node.page_mt[pfn:pfn + n] = bytes((PAGE_FREE,)) * n
                node.free_one_page(zone, pfn, order)
                if pfn > high:
                    high = pfn
        cc.nr_freepages = 0
        return high

    # --------------------------------------------------------- migration
    def _migrate_pages(self, cc: CompactControl) -> int:
        """``migrate_pages`` with ``compaction_alloc``: move each isolated folio, owners follow via rmap.

        A large folio that finds no target of its order is split (``migrate_pages_batch``'s
        ``-ENOMEM`` path: ``try_split_folio``, as for every reason but NUMA balancing) and its base
        pages are moved after the rest of the list, in one asynchronous pass whose own failures
        end it quietly; the split folio counts as one failed folio unless all its pages moved.
        A folio whose owner cannot split it (:meth:`split_folio`) ends the pass as a base page does.

        Returns 0, the number of failed folios, or ``-ENOMEM`` when no target
        could be isolated (the rest, split pages included, is put back).
        """
        pin = self.pin_fraction
        rng = self.rng
        pages = cc.migratepages
        cc.migratepages = []
        failed = 0
        split: list[int] = []
        nr_split = 0
        for src in pages:
            n = 1 << self.node.alloc_order[src]
            if pin and rng.random() < pin:
                failed += 1
                cc.nr_failed += n
                cc.nr_migratepages -= n
                continue
            if self._move_folio(cc, src):
                continue
            if n > 1 and self.split_folio(src):
                split.extend(range(src, src + n))
                nr_split += 1
                cc.nr_migratepages -= n
                continue
            cc.nr_migratepages = 0
            return _ENOMEM
        cc.nr_migratepages = 0
        moved_all = True
        for src in split:  # migrate_pages: the split folios, MIGRATE_ASYNC, one pass
            if not self._move_folio(cc, src):
                cc.nr_failed += 1  # the page that found no target; the rest are put back uncounted
                moved_all = False
                break
        if failed or not moved_all:
            return failed + nr_split
        return 0

    def _move_folio(self, cc: CompactControl, src: int) -> bool:
        """One folio to a target from ``compaction_alloc`` (``migrate_folio_unmap`` +
        ``migrate_folio_move``); False when no target of its order could be had."""
        node = self.node
        alloc_order = node.alloc_order
        page_mt = node.page_mt
        order = alloc_order[src]
        n = 1 << order
        dst = self._compaction_alloc(cc, order)
        if dst < 0:
            return False
        cc.nr_migratepages -= n
        page_mt[dst:dst + n] = page_mt[src:src + n]
        alloc_order[dst] = order
        rmap = node.rmap
        owner = rmap.pop(src)
        owner.migrate_page(src, dst, order)
        rmap[dst] = owner
        page_mt[src:src + n] = bytes((PAGE_RESERVED,)) * n  # freed to the per-CPU list
        alloc_order[src] = NO_ORDER
        cc.pending_free.append((src, order))
        cc.nr_migrated += n
        return True

    def split_folio(self, pfn: int) -> bool:
        """``split_folio_to_list`` for compaction: the large folio at ``pfn`` becomes base pages,
        each of them its owner's (``rmap``) and on the LRU where the folio was.  The owner is asked
        first (its ``split_folio(pfn, order)``, which keeps the folio's identity on its pages); one
        without that method, or that refuses, leaves the folio whole and False is returned."""
        node = self.node
        order = node.alloc_order[pfn]
        owner = node.rmap.get(pfn)
        split = getattr(owner, "split_folio", None)
        if split is None or not split(pfn, order):
            return False
        n = 1 << order
        node.alloc_order[pfn:pfn + n] = bytes(n)
        rmap = node.rmap
        for p in range(pfn + 1, pfn + n):
            rmap[p] = owner
        return True

    # ------------------------------------------------------ finish test
    def _compact_scanners_met(self, cc: CompactControl) -> bool:
        """``compact_scanners_met``."""
        return (cc.free_pfn >> PAGEBLOCK_ORDER) <= (cc.migrate_pfn >> PAGEBLOCK_ORDER)

    def _compact_finished(self, cc: CompactControl) -> int:
        """``compact_finished`` / ``__compact_finished``."""
        zone = cc.zone
        node = self.node
        if self._compact_scanners_met(cc):
            self._reset_cached_positions(zone)
            if cc.direct_compaction:
                self._zs(zone).blockskip_flush = True
            return COMPACT_COMPLETE if cc.whole_zone else COMPACT_PARTIAL_SKIPPED
        if cc.proactive_compaction:
            if self.kswapd_is_running():
                return COMPACT_PARTIAL_SKIPPED
            score = frag.fragmentation_score_zone(zone.nr_free)
            wmark_low = fragmentation_score_wmark(self.proactiveness, True)
            return COMPACT_CONTINUE if score > wmark_low else COMPACT_SUCCESS
        if cc.order == -1:
            return COMPACT_CONTINUE
        if cc.migrate_pfn & (PAGEBLOCK_NR_PAGES - 1):
            return COMPACT_CONTINUE
        if node.policy.defrag_mode and not cc.direct_compaction:
            # kcompactd targets the high watermark in whole free pageblocks (6.15+)
            if node._zone_watermark_ok(zone, cc.order, zone.wmark(2), cc.highest_zoneidx,
                                       cc.alloc_flags, nr_free_pages_blocks(zone)):
                return COMPACT_SUCCESS
            return COMPACT_CONTINUE
        mt = cc.migratetype
        lcount = node.lcount
        for order in range(cc.order, NR_PAGE_ORDERS):
            if lcount[zone.lid0 + order * MIGRATE_TYPES + mt]:
                return COMPACT_SUCCESS
            if node._find_suitable_fallback(zone, order, mt, True) >= 0:
                return COMPACT_SUCCESS
        return COMPACT_CONTINUE  # COMPACT_NO_SUITABLE_PAGE is reported as CONTINUE

    # ------------------------------------------------------ compact_zone
    def compact_zone(self, cc: CompactControl, capc: Optional[list] = None) -> Generator[CompactWork, None, int]:
        """``compact_zone``: a step generator; yields the work of each isolate+migrate round.

        Returns the compact_result.  Drive it with :func:`run_to_completion`
        (direct compaction) or let a daemon advance time between steps.
        """
        node = self.node
        zone = cc.zone
        start_pfn = zone.start_pfn
        end_pfn = zone.end_pfn
        sync = cc.mode != MIGRATE_ASYNC
        zs = self._zs(zone)
        if cc.order > 0:
            ret = compaction_suit_allocation_order(node, zone, cc.order, cc.highest_zoneidx,
                                                   cc.alloc_flags, self.extfrag_threshold,
                                                   cc.mode == MIGRATE_ASYNC, not cc.direct_compaction)
            if ret != COMPACT_CONTINUE:
                return ret
        if compaction_restarting(zone, cc.order):
            self._reset_isolation_suitable(zone)
        if cc.whole_zone:
            cc.migrate_pfn = start_pfn
            cc.free_pfn = _pageblock_start(end_pfn - 1)
        else:
            cc.migrate_pfn = zs.cached_migrate_pfn[int(sync)]
            cc.free_pfn = zone.cached_free_pfn
            if cc.free_pfn < start_pfn or cc.free_pfn >= end_pfn:
                cc.free_pfn = zone.cached_free_pfn = _pageblock_start(end_pfn - 1)
            if cc.migrate_pfn < start_pfn or cc.migrate_pfn >= end_pfn:
                cc.migrate_pfn = start_pfn
                zs.cached_migrate_pfn[0] = zs.cached_migrate_pfn[1] = start_pfn
                zone.cached_migrate_pfn = start_pfn
            if cc.migrate_pfn <= zs.init_migrate_pfn:
                cc.whole_zone = True
        last_migrated_pfn = 0
        update_cached = not sync and zs.cached_migrate_pfn[0] == zs.cached_migrate_pfn[1]
        reported = CompactWork()
        ret = COMPACT_CONTINUE
        while True:
            ret = self._compact_finished(cc)
            cc.nr_steps += 1
            if ret != COMPACT_CONTINUE:
                break
            iteration_start = cc.migrate_pfn
            cc.finish_pageblock = _pageblock_start(last_migrated_pfn) == _pageblock_start(iteration_start)
            stop = False
            while True:  # rescan:
                isolated = self._isolate_migratepages(cc)
                if isolated == _ISOLATE_ABORT:
                    ret = COMPACT_CONTENDED
                    cc.migratepages = []
                    cc.nr_migratepages = 0
                    stop = True
                    break
                if isolated == _ISOLATE_NONE:
                    if update_cached:
                        zs.cached_migrate_pfn[1] = zs.cached_migrate_pfn[0]
                    break
                update_cached = False
                last_migrated_pfn = max(start_pfn, _pageblock_start(cc.migrate_pfn - 1))
                err = self._migrate_pages(cc)
                if err:
                    if err == _ENOMEM and not self._compact_scanners_met(cc):
                        ret = COMPACT_CONTENDED
                        stop = True
                        break
                    if (cc.migrate_pfn & (PAGEBLOCK_NR_PAGES - 1) and not cc.ignore_skip_hint
                            and not cc.finish_pageblock and cc.mode < MIGRATE_SYNC):
                        cc.finish_pageblock = True
                        if cc.order == COMPACTION_HPAGE_ORDER:
                            last_migrated_pfn = 0
                        continue  # goto rescan
                if capc is not None and capc[2] >= 0:
                    ret = COMPACT_SUCCESS
                    stop = True
                break
            if not stop and last_migrated_pfn:
                # check_drain: once the migrate scanner left the order-aligned block it migrated
                # from, the freed sources are drained from the per-CPU list and can merge (or be
                # captured); whole-zone runs (order -1) drain at pageblock boundaries
                drain_order = cc.order if cc.order > 0 else PAGEBLOCK_ORDER
                if last_migrated_pfn < (cc.migrate_pfn >> drain_order) << drain_order:
                    self._drain_pending(cc)
                    last_migrated_pfn = 0
            work = cc.work()
            if work != reported:
                yield CompactWork(*(a - b for a, b in zip(work, reported)))
                reported = work
            if stop:
                break
        # out: release free pages and move the cached free pfn back, never forward
        if cc.nr_freepages > 0 or any(cc.freepages):
            free_pfn = _pageblock_start(self._release_freepages(cc))
            if free_pfn > zone.cached_free_pfn:
                zone.cached_free_pfn = free_pfn
        if cc.pending_free:
            # sources still on the per-CPU list: they reach the buddy lists later, never captured
            saved, node.capc = node.capc, None
            try:
                self._drain_pending(cc)
            finally:
                node.capc = saved
        work = cc.work()
        if work != reported:
            yield CompactWork(*(a - b for a, b in zip(work, reported)))
        v = self.vmstat
        v["compact_migrate_scanned"] += cc.total_migrate_scanned
        v["compact_free_scanned"] += cc.total_free_scanned
        v["compact_isolated"] += cc.nr_isolated
        v["pgmigrate_success"] += cc.nr_migrated
        v["pgmigrate_fail"] += cc.nr_failed
        v["compact_steps"] += cc.nr_steps
        key = ("direct" if cc.direct_compaction else "kcompactd", ret)
        self.run_ends[key] = self.run_ends.get(key, 0) + 1
        cc.ended = ret
        return ret

    def run_summary(self) -> dict:
        """:attr:`run_ends` as {"direct" | "kcompactd": {status name: runs}} (``compaction_status_string``)."""
        out: dict = {"direct": {}, "kcompactd": {}}
        for (who, ret), n in sorted(self.run_ends.items()):
            out[who][COMPACT_RESULT_NAMES.get(ret, str(ret))] = n
        return out

    # ------------------------------------------------- direct compaction
    def compact_zone_order(self, zone: Zone, order: int, gfp: int, prio: int, alloc_flags: int,
                           highest_zoneidx: int) -> tuple[int, int, CompactControl]:
        """``compact_zone_order``: one zone under ``capture_control``; returns (result, captured pfn, cc)."""
        full = prio == COMPACT_PRIO_SYNC_FULL
        cc = CompactControl(zone, order, gfp, MIGRATE_ASYNC if prio == COMPACT_PRIO_ASYNC else MIGRATE_SYNC_LIGHT,
                            alloc_flags, highest_zoneidx, direct_compaction=True, whole_zone=full,
                            ignore_skip_hint=full, ignore_block_suitable=full)
        capc = [order, cc.migratetype, -1]
        node = self.node
        node.capc = capc
        try:
            steps = self.compact_zone(cc, capc)
            if node.on_stall is None:
                ret = run_to_completion(steps)
            else:
                while True:  # the other CPUs run for each step's duration (node.on_stall)
                    try:
                        work = next(steps)
                    except StopIteration as stop:
                        ret = stop.value
                        break
                    node.on_stall(work)
        finally:
            node.capc = None
        captured = capc[2]
        if captured >= 0:
            ret = COMPACT_SUCCESS
        return ret, captured, cc

    def try_to_compact_pages(self, node: Node, gfp: int, order: int, alloc_flags: int,
                             highest_zoneidx: int, prio: int, zonelist: list) -> tuple[int, int]:
        """``try_to_compact_pages`` + the stall accounting of ``__alloc_pages_direct_compact``.

        Returns (compact_result, captured pfn or -1).  compact_stall counts
        every call that was not skipped; the caller reports the outcome of its
        freelist retry to :meth:`direct_compact_outcome` (compact_success or
        compact_fail, as the kernel counts them after ``get_page_from_freelist``).
        """
        work = [0] * len(CompactWork._fields)
        rc = COMPACT_SKIPPED
        captured = -1
        ended = ATTEMPT_NO_RUN
        if gfp & _GFP_IO:
            for zone in zonelist:
                if zone.idx > highest_zoneidx or not zone.managed:
                    continue
                if prio > COMPACT_PRIO_SYNC_FULL and compaction_deferred(zone, order):
                    self.vmstat["compact_deferred"] += 1
                    rc = max(COMPACT_DEFERRED, rc)
                    if ended == ATTEMPT_NO_RUN:
                        ended = ATTEMPT_DEFERRED
                    continue
                status, captured, cc = self.compact_zone_order(zone, order, gfp, prio, alloc_flags, highest_zoneidx)
                if cc.ended is not None:
                    ended = COMPACT_RESULT_NAMES.get(cc.ended, str(cc.ended))
                for i, v in enumerate(cc.work()):
                    work[i] += v
                rc = max(status, rc)
                if status == COMPACT_SUCCESS:
                    compaction_defer_reset(zone, order, False)
                    break
                if prio != COMPACT_PRIO_ASYNC and status in (COMPACT_COMPLETE, COMPACT_PARTIAL_SKIPPED):
                    defer_compaction(zone, order)
        self.last_work = CompactWork(*work)
        self.last_ended = ended
        if node.on_stall_end is not None:
            node.on_stall_end()
        if rc == COMPACT_SKIPPED:
            return rc, captured
        self.vmstat["compact_stall"] += 1
        return rc, captured

    def direct_compact_outcome(self, node: Node, pfn: int, order: int) -> None:
        """The end of ``__alloc_pages_direct_compact`` after a compaction that ran: the request got
        ``pfn`` (captured, or from the free lists right after) -> compact_success, the zone's
        ``compact_blockskip_flush`` cleared and ``compaction_defer_reset(zone, order, true)``;
        no page (-1) -> compact_fail."""
        if pfn < 0:
            self.vmstat["compact_fail"] += 1
            return
        zone = node.zone_of(pfn)
        self._zs(zone).blockskip_flush = False
        compaction_defer_reset(zone, order, True)
        self.vmstat["compact_success"] += 1

    # ---------------------------------------------------------- kcompactd
    def _kcompactd_alloc_flags(self) -> int:
        """kcompactd's watermark: high with ``defrag_mode`` (its target is the high watermark met in
        free pageblocks), else min ("defrag_mode kswapd/kcompactd watermarks" + its fix, 6.15)."""
        return ALLOC_WMARK_HIGH if self.node.policy.defrag_mode else ALLOC_WMARK_MIN

    def kcompactd_node_suitable(self) -> bool:
        """``kcompactd_node_suitable``: some zone where ``compaction_suit_allocation_order``
        (kcompactd's watermark, free pageblocks under defrag_mode) says CONTINUE."""
        node = self.node
        order = self.kcompactd_max_order
        hz = self.kcompactd_highest_zoneidx
        flags = self._kcompactd_alloc_flags()
        for zone in node.zones:
            if zone.idx > hz or not zone.present:
                continue
            if compaction_suit_allocation_order(node, zone, order, hz, flags, self.extfrag_threshold,
                                                False, True) == COMPACT_CONTINUE:
                return True
        return False

    def wakeup_kcompactd(self, order: int, highest_zoneidx: int) -> bool:
        """``wakeup_kcompactd``: record the request; wake the daemon if it sleeps and a zone is suitable."""
        if not order:
            return False
        if self.kcompactd_max_order < order:
            self.kcompactd_max_order = order
        if self.kcompactd_highest_zoneidx > highest_zoneidx:
            self.kcompactd_highest_zoneidx = highest_zoneidx
        if not self.kcompactd_sleeping:
            return False
        if not self.kcompactd_node_suitable():
            return False
        if self.on_wakeup_kcompactd is not None:
            self.on_wakeup_kcompactd()
        return True

    def kcompactd_work_requested(self) -> bool:
        """``kcompactd_work_requested``."""
        return self.kcompactd_max_order > 0 or self.proactive_compact_trigger

    def kcompactd_do_work(self) -> Generator[CompactWork, None, None]:
        """``kcompactd_do_work``: SYNC_LIGHT compaction of each zone up to the requested index, honouring
        deferral, skipping zones ``compaction_suit_allocation_order`` finds done or unsuitable
        (kcompactd's watermark: :meth:`_kcompactd_alloc_flags`)."""
        node = self.node
        flags = self._kcompactd_alloc_flags()
        order = self.kcompactd_max_order
        hz = self.kcompactd_highest_zoneidx
        v = self.vmstat
        v["compact_daemon_wake"] += 1
        for zone in node.zones:
            if zone.idx > hz or not zone.present:
                continue
            if compaction_deferred(zone, order):
                continue
            if compaction_suit_allocation_order(node, zone, order, zone.idx, flags, self.extfrag_threshold,
                                                False, True) != COMPACT_CONTINUE:
                continue
            cc = CompactControl(zone, order, GFP_KERNEL, MIGRATE_SYNC_LIGHT, flags, hz)
            status = yield from self.compact_zone(cc, None)
            if status == COMPACT_SUCCESS:
                compaction_defer_reset(zone, order, False)
            elif status in (COMPACT_PARTIAL_SKIPPED, COMPACT_COMPLETE):
                node.drain_all_pages(zone)  # pages stranded on pcp lists
                defer_compaction(zone, order)
            v["compact_daemon_migrate_scanned"] += cc.total_migrate_scanned
            v["compact_daemon_free_scanned"] += cc.total_free_scanned
        if self.kcompactd_max_order <= order:
            self.kcompactd_max_order = 0
        if self.kcompactd_highest_zoneidx >= hz:
            self.kcompactd_highest_zoneidx = self._nr_zones_minus_one()

    def should_proactive_compact_node(self) -> bool:
        """``should_proactive_compact_node``: proactiveness on, kswapd idle, score above the high mark."""
        if not self.proactiveness or self.kswapd_is_running():
            return False
        return fragmentation_score_node(self.node) > fragmentation_score_wmark(self.proactiveness, False)

    def proactive_compact_node(self) -> Generator[CompactWork, None, None]:
        """``proactive_compact_node``: whole-zone SYNC_LIGHT passes until each zone's score <= the low mark."""
        v = self.vmstat
        v["compact_proactive_runs"] += 1
        for zone in self.node.zones:
            if not zone.present:
                continue
            cc = CompactControl(zone, -1, GFP_KERNEL, MIGRATE_SYNC_LIGHT, ALLOC_CMA, self._nr_zones_minus_one(),
                                whole_zone=True, ignore_skip_hint=True, proactive_compaction=True)
            yield from self.compact_zone(cc, None)
            v["compact_daemon_migrate_scanned"] += cc.total_migrate_scanned
            v["compact_daemon_free_scanned"] += cc.total_free_scanned

    def compact_node(self) -> Generator[CompactWork, None, None]:
        """``compact_node`` (``/proc/sys/vm/compact_memory``): MIGRATE_SYNC whole-zone passes."""
        for zone in self.node.zones:
            if not zone.present:
                continue
            cc = CompactControl(zone, -1, GFP_KERNEL, MIGRATE_SYNC, ALLOC_CMA, self._nr_zones_minus_one(),
                                whole_zone=True, ignore_skip_hint=True)
            yield from self.compact_zone(cc, None)
