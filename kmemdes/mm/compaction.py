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
      subject to ``__isolate_free_page``'s min-watermark check.
      ``compaction_alloc`` takes the first isolated block of the smallest
      sufficient order and splits it as ``expand`` does.
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
    * ``fast_find_migrateblock`` and ``fast_isolate_freepages`` (5.1+
      free-list searches) are not modelled: both scanners are linear.
    * ``__reset_isolation_suitable`` clears every skip bit of the zone and
      restarts the scanners at the zone ends (the kernel samples each block
      for an LRU or buddy page first).
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
    "COMPACT_MAX_DEFER_SHIFT",
    "COMPACT_CLUSTER_MAX",
    "MIGRATE_ASYNC",
    "MIGRATE_SYNC_LIGHT",
    "MIGRATE_SYNC",
    "HPAGE_FRAG_CHECK_INTERVAL_MSEC",
    "COMPACT_VMSTAT",
    "CompactControl",
    "split_isolated_freepage",
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

#: /proc/vmstat counters kept by the model (the last two are the model's own, not in /proc/vmstat)
COMPACT_VMSTAT = (
    "compact_migrate_scanned", "compact_free_scanned", "compact_isolated",
    "compact_stall", "compact_fail", "compact_success",
    "compact_daemon_wake", "compact_daemon_migrate_scanned", "compact_daemon_free_scanned",
    "pgmigrate_success", "pgmigrate_fail",
    "compact_deferred", "compact_proactive_runs",
)


class CompactWork(NamedTuple):
    """Work done by one step of compaction (what ``DaemonCosts`` prices)."""

    migrate_scanned: int = 0
    free_scanned: int = 0
    isolated: int = 0
    migrated: int = 0
    failed: int = 0


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
        "total_migrate_scanned", "total_free_scanned", "nr_isolated", "nr_migrated", "nr_failed",
        "pending_free",
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
        self.total_free_scanned = 0
        self.nr_isolated = 0
        self.nr_migrated = 0
        self.nr_failed = 0
        self.pending_free: list[tuple[int, int]] = []  # migrated sources on the per-CPU list

    def work(self) -> CompactWork:
        return CompactWork(self.total_migrate_scanned, self.total_free_scanned, self.nr_isolated,
                           self.nr_migrated, self.nr_failed)


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

    def _reset_isolation_suitable(self, zone: Zone) -> None:
        """``__reset_isolation_suitable`` (simplified: every skip bit of the zone is cleared)."""
        zs = self._zs(zone)
        zs.blockskip_flush = False
        first = zone.start_pfn >> PAGEBLOCK_ORDER
        last = (zone.end_pfn - 1) >> PAGEBLOCK_ORDER
        self.pb_skip[first:last + 1] = bytes(last + 1 - first)
        self._reset_cached_positions(zone)
        zs.init_migrate_pfn = zone.start_pfn
        zs.init_free_pfn = _pageblock_start(zone.end_pfn - 1)

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
    def _isolate_migratepages(self, cc: CompactControl) -> int:
        """``isolate_migratepages``: isolate from the first suitable block at or after migrate_pfn."""
        zone = cc.zone
        low_pfn = cc.migrate_pfn
        block_start = max(_pageblock_start(low_pfn), zone.start_pfn)
        block_end = _pageblock_end(low_pfn)
        while block_end <= cc.free_pfn:
            if self._block_in_zone(zone, block_start, block_end):
                first = low_pfn & (PAGEBLOCK_NR_PAGES - 1) == 0 or low_pfn == zone.start_pfn
                if first and not self._isolation_suitable(cc, block_start):
                    pass
                elif not self._suitable_migration_source(cc, block_start):
                    self._update_cached_migrate(cc, block_end)
                else:
                    if self._isolate_migratepages_block(cc, low_pfn, block_end):
                        return _ISOLATE_ABORT
                    break
            cc.migrate_pfn = low_pfn = block_end
            block_start = block_end
            block_end += PAGEBLOCK_NR_PAGES
        return _ISOLATE_SUCCESS if cc.nr_migratepages else _ISOLATE_NONE

    def _isolate_migratepages_block(self, cc: CompactControl, low_pfn: int, end_pfn: int) -> int:
        """``isolate_migratepages_block``: isolate migratable folios of [low_pfn, end_pfn).

        Free buddy blocks are stepped over; allocations not in ``node.rmap``
        (slab, page tables, kernel and pcp pages) cannot be isolated; in
        async direct mode one such page abandons its order-aligned block.
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
            if owner is not None and not (
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
    def _isolate_freepages(self, cc: CompactControl) -> None:
        """``isolate_freepages`` (without the fast free-list search): scan down for target pages."""
        zone = cc.zone
        isolate_start_pfn = cc.free_pfn
        block_start = _pageblock_start(isolate_start_pfn)
        block_end = min(block_start + PAGEBLOCK_NR_PAGES, zone.end_pfn)
        low_pfn = _pageblock_end(cc.migrate_pfn)
        while block_start >= low_pfn:
            if (self._block_in_zone(zone, block_start, block_end)
                    and self._suitable_migration_target(cc, block_start)
                    and self._isolation_suitable(cc, block_start)):
                nr_isolated, isolate_start_pfn = self._isolate_freepages_block(cc, isolate_start_pfn, block_end)
                if isolate_start_pfn == block_end:
                    self._update_pageblock_skip(cc, block_start, block_start - PAGEBLOCK_NR_PAGES)
                if cc.nr_freepages >= cc.nr_migratepages:
                    if isolate_start_pfn >= block_end:
                        isolate_start_pfn = block_start - PAGEBLOCK_NR_PAGES
                    break
                if isolate_start_pfn < block_end:
                    break  # isolation failed early (watermark)
            block_end = block_start
            block_start -= PAGEBLOCK_NR_PAGES
            isolate_start_pfn = block_start
        cc.free_pfn = isolate_start_pfn

    def _isolate_freepages_block(self, cc: CompactControl, start_pfn: int, end_pfn: int) -> tuple[int, int]:
        """``isolate_freepages_block`` (non-strict): take free buddy blocks at their order.

        Returns (pages isolated, pfn reached).  Isolated pages leave the free
        lists and are marked reserved until used as targets or released.
        """
        node = self.node
        zone = cc.zone
        lid = node.lid
        lbo = node.l_buddy_order
        alloc_order = node.alloc_order
        page_mt = node.page_mt
        nr_scanned = 0
        total = 0
        pfn = start_pfn
        while pfn < end_pfn:
            nr_scanned += 1
            li = lid[pfn]
            if li != NOLIST and lbo[li] >= 0:
                order = lbo[li]
                n = 1 << order
                # __isolate_free_page: keep the zone above min + the block
                if not node._zone_watermark_ok(zone, 0, zone._watermark[0] + n, 0, ALLOC_CMA):
                    break
                node.take_block(pfn, order)
                page_mt[pfn:pfn + n] = bytes((PAGE_RESERVED,)) * n
                cc.freepages[order].append(pfn)
                cc.nr_freepages += n
                total += n
                nr_scanned += n - 1
                pfn += n
                if cc.nr_migratepages <= cc.nr_freepages:
                    break
                continue
            ao = alloc_order[pfn]
            if ao != NO_ORDER and ao > 0:  # compound page: skip it at once
                pfn += 1 << ao
                nr_scanned += (1 << ao) - 1
            else:
                pfn += 1
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

        Returns 0, the number of failed folios, or ``-ENOMEM`` when no target
        could be isolated (the rest is put back).
        """
        node = self.node
        rmap = node.rmap
        alloc_order = node.alloc_order
        page_mt = node.page_mt
        pin = self.pin_fraction
        rng = self.rng
        pages = cc.migratepages
        cc.migratepages = []
        failed = 0
        err = 0
        succeeded = 0
        for src in pages:
            order = alloc_order[src]
            n = 1 << order
            if pin and rng.random() < pin:
                failed += 1
                cc.nr_failed += n
                cc.nr_migratepages -= n
                continue
            dst = self._compaction_alloc(cc, order)
            if dst < 0:
                err = _ENOMEM
                break
            cc.nr_migratepages -= n
            page_mt[dst:dst + n] = page_mt[src:src + n]
            alloc_order[dst] = order
            owner = rmap.pop(src)
            owner.migrate_page(src, dst, order)
            rmap[dst] = owner
            page_mt[src:src + n] = bytes((PAGE_RESERVED,)) * n  # freed to the per-CPU list
            alloc_order[src] = NO_ORDER
            cc.pending_free.append((src, order))
            succeeded += n
        cc.nr_migratepages = 0
        cc.nr_migrated += succeeded
        return err if err else failed

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
        return ret

    # ------------------------------------------------- direct compaction
    def compact_zone_order(self, zone: Zone, order: int, gfp: int, prio: int, alloc_flags: int,
                           highest_zoneidx: int) -> tuple[int, int, CompactControl]:
        """``compact_zone_order``: one zone under ``capture_control``; returns (result, captured pfn, cc)."""
        full = prio == COMPACT_PRIO_SYNC_FULL
        cc = CompactControl(zone, order, gfp, MIGRATE_ASYNC if prio == COMPACT_PRIO_ASYNC else MIGRATE_SYNC_LIGHT,
                            alloc_flags, highest_zoneidx, direct_compaction=True, whole_zone=full,
                            ignore_skip_hint=full, ignore_block_suitable=full)
        capc = [order, cc.migratetype, -1]
        self.node.capc = capc
        try:
            ret = run_to_completion(self.compact_zone(cc, capc))
        finally:
            self.node.capc = None
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
        work = [0, 0, 0, 0, 0]
        rc = COMPACT_SKIPPED
        captured = -1
        if gfp & _GFP_IO:
            for zone in zonelist:
                if zone.idx > highest_zoneidx or not zone.managed:
                    continue
                if prio > COMPACT_PRIO_SYNC_FULL and compaction_deferred(zone, order):
                    self.vmstat["compact_deferred"] += 1
                    rc = max(COMPACT_DEFERRED, rc)
                    continue
                status, captured, cc = self.compact_zone_order(zone, order, gfp, prio, alloc_flags, highest_zoneidx)
                for i, v in enumerate(cc.work()):
                    work[i] += v
                rc = max(status, rc)
                if status == COMPACT_SUCCESS:
                    compaction_defer_reset(zone, order, False)
                    break
                if prio != COMPACT_PRIO_ASYNC and status in (COMPACT_COMPLETE, COMPACT_PARTIAL_SKIPPED):
                    defer_compaction(zone, order)
        self.last_work = CompactWork(*work)
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
