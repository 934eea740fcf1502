"""The buddy page allocator of Linux 6.18: zones, free_area, pageblocks, fallback, pcp, watermarks.

Read beside mm/page_alloc.c: every decision on the allocation and free paths is
a method named after the kernel function it follows (``__rmqueue_smallest``,
``expand``, ``__rmqueue_claim``, ``try_to_claim_block``, ``__rmqueue_steal``,
``rmqueue_pcplist``, ``rmqueue_bulk``, ``free_frozen_page_commit``,
``free_pcppages_bulk``, ``__free_one_page``, ``__zone_watermark_ok``,
``get_page_from_freelist``, ``__alloc_pages_slowpath``).

State is kept in flat pfn-indexed arrays (``array``/``bytearray``), never an
object per page.  Free lists (buddy and per-CPU) are intrusive doubly linked
lists threaded through two int32 arrays, so insertion at either end and removal
from the middle are O(1), and list order is the kernel's (allocation takes the
head, ``expand`` puts upper halves at the head, frees go to the head or tail).

Per page (12 bytes): ``nxt``/``prv`` (int32 links), ``lid`` (uint16: the list a
free block's head page is on, ``NOLIST`` otherwise), ``page_mt`` (uint8: the
migratetype an allocated page was requested with, ``PAGE_FREE`` or
``PAGE_RESERVED``), ``alloc_order`` (uint8: order of an allocated block at its
head page).  Per pageblock: ``pb_mt`` (uint8 migratetype).

>>> from kmemdes.mm.mm_init import build_node, parse_size
>>> node = build_node("x86_64", parse_size("1G"), cpus=2)
>>> [z.name for z in node.zones]
['DMA', 'DMA32']
>>> pfn = node.alloc_pages(GFP_KERNEL, 3)   # first unmovable request: every pageblock is movable
>>> PATH_NAMES[node.last_path], node.extfrag    # so it claims a whole order-10 block (two pageblocks)
('fallback_claim', {(0, 1, 'claim', 0): 1})
>>> node.free_pages(pfn, 3); node.check()
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from kmemdes.errors import KmemdesError
from kmemdes.mm import gfp as _gfp
from kmemdes.mm.gfp import (
    GFP_KERNEL,
    MIGRATE_HIGHATOMIC,
    MIGRATE_ISOLATE,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    MIGRATE_RECLAIMABLE,
    MIGRATE_TYPES,
    MIGRATE_UNMOVABLE,
    ZoneType,
    gfp_migratetype,
    gfp_zone,
)

# GFP bits used on the allocation path (single underscore: no name mangling in class bodies)
_GFP_DIRECT_RECLAIM = _gfp.__GFP_DIRECT_RECLAIM
_GFP_HIGH = _gfp.__GFP_HIGH
_GFP_KSWAPD_RECLAIM = _gfp.__GFP_KSWAPD_RECLAIM
_GFP_MEMALLOC = _gfp.__GFP_MEMALLOC
_GFP_NOFAIL = _gfp.__GFP_NOFAIL
_GFP_NOMEMALLOC = _gfp.__GFP_NOMEMALLOC
_GFP_NORETRY = _gfp.__GFP_NORETRY
_GFP_NOWARN = _gfp.__GFP_NOWARN
_GFP_RETRY_MAYFAIL = _gfp.__GFP_RETRY_MAYFAIL
_GFP_THISNODE = _gfp.__GFP_THISNODE

__all__ = [
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "MAX_PAGE_ORDER",
    "NR_PAGE_ORDERS",
    "PAGEBLOCK_ORDER",
    "PAGEBLOCK_NR_PAGES",
    "PAGE_ALLOC_COSTLY_ORDER",
    "Policy",
    "Zone",
    "PerCpuPages",
    "Node",
    "STALL_COMPACT",
    "STALL_RECLAIM",
    "build_node",
    "parse_size",
    "PATH_NAMES",
    "PATH_PCP",
    "PATH_PCP_REFILL",
    "PATH_BUDDY",
    "PATH_CLAIM",
    "PATH_STEAL",
    "PATH_HIGHATOMIC",
    "PATH_SLOWPATH",
    "PATH_RECLAIM",
    "PATH_COMPACT",
    "PATH_FAILED",
    "FALLBACKS",
    "GFP_KERNEL",
]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
MAX_PAGE_ORDER = 10
NR_PAGE_ORDERS = MAX_PAGE_ORDER + 1
PAGEBLOCK_ORDER = 9
PAGEBLOCK_NR_PAGES = 1 << PAGEBLOCK_ORDER
PAGE_ALLOC_COSTLY_ORDER = 3
PCP_BATCH_SCALE_MAX = 5  # CONFIG_PCP_BATCH_SCALE_MAX
NR_LOWORDER_PCP_LISTS = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1)  # 12
NR_PCP_LISTS = NR_LOWORDER_PCP_LISTS + 2  # + THP movable / other (6.18)

NOLIST = 0xFFFF  # lid of a page that is not the head of a free block
PAGE_FREE = 0xFF  # page_mt of a free page (buddy or pcp)
PAGE_RESERVED = 0xFE  # page_mt of a page never given to the buddy allocator
NO_ORDER = 0xFF

# ALLOC_* flags (mm/internal.h, 6.3+)
ALLOC_WMARK_MIN = 0
ALLOC_WMARK_LOW = 1
ALLOC_WMARK_HIGH = 2
ALLOC_WMARK_MASK = 3
ALLOC_NO_WATERMARKS = 0x04
ALLOC_OOM = 0x08
ALLOC_NON_BLOCK = 0x10
ALLOC_MIN_RESERVE = 0x20
ALLOC_CPUSET = 0x40
ALLOC_CMA = 0x80
ALLOC_NOFRAGMENT = 0x100
ALLOC_HIGHATOMIC = 0x200
ALLOC_KSWAPD = 0x800  # == _GFP_KSWAPD_RECLAIM
ALLOC_RESERVES = ALLOC_NON_BLOCK | ALLOC_MIN_RESERVE | ALLOC_HIGHATOMIC | ALLOC_OOM

_ZONE_BITS = _gfp.__GFP_DMA | _gfp.__GFP_HIGHMEM | _gfp.__GFP_DMA32 | _gfp.__GFP_MOVABLE
#: kernel zone index of each zone type (enum zone_type of the arch's config)
_ZONE_TYPE_INDEX = {
    "x86_64": {ZoneType.DMA: 0, ZoneType.DMA32: 1, ZoneType.NORMAL: 2, ZoneType.HIGHMEM: 2, ZoneType.MOVABLE: 3},
    "x86_32": {ZoneType.DMA: 0, ZoneType.NORMAL: 1, ZoneType.HIGHMEM: 2, ZoneType.MOVABLE: 3},
}

# zone flags
ZONE_BOOSTED_WATERMARK = 1
ZONE_BELOW_HIGH = 2
ZONE_RECLAIM_ACTIVE = 4

# pcp flags
PCPF_PREV_FREE_HIGH_ORDER = 1
PCPF_FREE_HIGH_BATCH = 2

#: fallback order per migratetype, 4.4 - 6.18 (``fallbacks[]`` in mm/page_alloc.c)
FALLBACKS = (
    (MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE),  # UNMOVABLE
    (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE),  # MOVABLE
    (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE),  # RECLAIMABLE
)

# Allocation paths, in increasing cost: an allocation's last_path is the most
# expensive thing it had to do.
PATH_PCP = 0  # popped from a per-CPU list
PATH_PCP_REFILL = 1  # per-CPU list was empty: rmqueue_bulk refilled it from the buddy lists
PATH_BUDDY = 2  # taken from the buddy lists under the zone lock (order > 3 other than THP)
PATH_CLAIM = 3  # fallback: a pageblock of another type was claimed
PATH_STEAL = 4  # fallback: a single block of another type was stolen
PATH_HIGHATOMIC = 5  # from the high-order atomic reserve
PATH_SLOWPATH = 6  # fast path failed; succeeded after waking kswapd / lower watermark
PATH_RECLAIM = 7  # succeeded after direct reclaim
PATH_COMPACT = 8  # succeeded after direct compaction
PATH_FAILED = 9  # returned NULL
PATH_NAMES = (
    "pcp",
    "pcp_refill",
    "buddy",
    "fallback_claim",
    "fallback_steal",
    "highatomic",
    "slowpath",
    "after_reclaim",
    "after_compaction",
    "failed",
)
_NR_PATHS = len(PATH_NAMES)
STALL_RECLAIM = 0  # Node.stall_log entry kinds: a direct reclaim (__perform_reclaim)
STALL_COMPACT = 1  # a direct compaction (__alloc_pages_direct_compact)

# compaction results (include/linux/compaction.h), used by the slow path
COMPACT_SKIPPED = 1
COMPACT_DEFERRED = 2
COMPACT_COMPLETE = 5
COMPACT_PARTIAL_SKIPPED = 6
COMPACT_SUCCESS = 8
# compaction priorities
COMPACT_PRIO_SYNC_FULL = 0
COMPACT_PRIO_SYNC_LIGHT = 1
COMPACT_PRIO_ASYNC = 2
DEF_COMPACT_PRIORITY = COMPACT_PRIO_SYNC_LIGHT  # the slow path's compaction after reclaim
INIT_COMPACT_PRIORITY = COMPACT_PRIO_ASYNC  # its first compaction, and every one of __GFP_NORETRY
MAX_COMPACT_RETRIES = 16
MAX_RECLAIM_RETRIES = 16

def int_sqrt(x: int) -> int:
    """``int_sqrt``: floor of the square root."""
    return math.isqrt(x)


def _rounddown_pow_of_two(n: int) -> int:
    return 1 << (n.bit_length() - 1)


@dataclass
class Policy:
    """Allocator policies: the sysctls and modes a run can change (all data, no code).

    ``defrag_mode`` is ``vm.defrag_mode`` (6.15+): ALLOC_NOFRAGMENT is kept until
    reclaim and compaction have failed, so fallbacks never fragment pageblocks
    while anything else can still be tried.  ``group_by_mobility`` False models
    ``page_group_by_mobility_disabled`` (every request is Unmovable).
    """

    watermark_scale_factor: int = 10
    watermark_boost_factor: int = 15000
    min_free_kbytes: Optional[int] = None  # None: computed as the kernel does at boot
    lowmem_reserve_ratio: tuple = (256, 256, 32, 0, 0)  # DMA, DMA32, Normal, (HighMem,) Movable
    percpu_pagelist_high_fraction: int = 0
    defrag_mode: bool = False
    group_by_mobility: bool = True
    thp_enabled: str = "madvise"  # always | madvise | never: raises min_free_kbytes, pcp order 9
    nofragment: bool = True  # ALLOC_NOFRAGMENT on the fast path (5.0+)
    fallback_version: str = "6.18"  # "6.18": __rmqueue_claim / __rmqueue_steal; "6.14": __rmqueue_fallback


@dataclass
class PerCpuPages:
    """``struct per_cpu_pages`` of one zone and CPU; its lists live in the node's list arrays."""

    lid0: int  # list id of pindex 0
    batch: int
    high_min: int
    high_max: int
    high: int = 0
    count: int = 0
    free_count: int = 0
    alloc_factor: int = 0
    flags: int = 0


class Zone:
    """``struct zone``: a pfn range with its free_area, watermarks and per-CPU lists."""

    __slots__ = (
        "name", "zone_type", "idx", "start_pfn", "spanned", "present", "managed",
        "_watermark", "watermark_boost", "lowmem_reserve", "nr_free", "free_pages",
        "free_by_mt", "nr_reserved_highatomic", "lid0", "pcp", "flags", "node",
        "compact_considered", "compact_defer_shift", "compact_order_failed",
        "reclaimable", "cached_migrate_pfn", "cached_free_pfn",
    )

    def __init__(self, node: "Node", name: str, zone_type: ZoneType, idx: int,
                 start_pfn: int, spanned: int, present: int):
        self.node = node
        self.name = name
        self.zone_type = zone_type
        self.idx = idx  # kernel zone index (zone_idx), arch dependent
        self.start_pfn = start_pfn
        self.spanned = spanned
        self.present = present
        self.managed = 0
        self._watermark = [0, 0, 0, 0]  # min, low, high, promo
        self.watermark_boost = 0
        self.lowmem_reserve: list[int] = []
        self.nr_free = [0] * NR_PAGE_ORDERS  # free blocks per order, all types
        self.free_pages = 0  # NR_FREE_PAGES: buddy pages only (pcp pages are not free)
        self.free_by_mt = [0] * MIGRATE_TYPES  # free pages per migratetype list
        self.nr_reserved_highatomic = 0
        self.lid0 = -1
        self.pcp: list[PerCpuPages] = []
        self.flags = 0
        self.compact_considered = 0
        self.compact_defer_shift = 0
        self.compact_order_failed = 0
        self.reclaimable = 0  # pages reclaim could free (page cache, reclaimable slab)
        self.cached_migrate_pfn = start_pfn
        self.cached_free_pfn = start_pfn + spanned

    # -- properties the kernel spells as helpers
    @property
    def end_pfn(self) -> int:
        """``zone_end_pfn``: first pfn after the zone."""
        return self.start_pfn + self.spanned

    @property
    def populated(self) -> bool:
        """``populated_zone``: has present pages."""
        return self.present > 0

    def wmark(self, which: int) -> int:
        """``wmark_pages``: watermark (0 min, 1 low, 2 high, 3 promo) plus the boost."""
        return self._watermark[which] + self.watermark_boost

    @property
    def min_wmark(self) -> int:
        return self._watermark[0]

    @property
    def low_wmark(self) -> int:
        return self._watermark[1]

    @property
    def high_wmark(self) -> int:
        return self._watermark[2]

    @property
    def nr_free_highatomic(self) -> int:
        return self.free_by_mt[MIGRATE_HIGHATOMIC]

    def free_list_count(self, order: int, mt: int) -> int:
        """Blocks on ``free_area[order].free_list[mt]``."""
        return self.node.lcount[self.lid0 + order * MIGRATE_TYPES + mt]

    def free_list(self, order: int, mt: int) -> list[int]:
        """Head pfns of ``free_area[order].free_list[mt]``, head first."""
        return list(self.node._walk(self.lid0 + order * MIGRATE_TYPES + mt))

    def pcp_count(self) -> int:
        return sum(p.count for p in self.pcp)

    def __repr__(self) -> str:
        return (f"Zone({self.name}, pfn {self.start_pfn:#x}-{self.end_pfn:#x}, managed {self.managed}, "
                f"free {self.free_pages})")


class Node:
    """``pglist_data``: one NUMA node with its zones, per-page arrays and free lists.

    Use :func:`build_node` (a freshly booted machine) or
    :func:`kmemdes.mm.snapshot_state.node_from_snapshot` to create one.
    """

    def __init__(self, arch: str, max_pfn: int, cpus: int, policy: Policy | None = None):
        if cpus < 1:
            raise KmemdesError(f"cpus must be >= 1, got {cpus}")
        self.arch = arch
        self.max_pfn = max_pfn
        self.cpus = cpus
        self.policy = policy or Policy()
        self.zones: list[Zone] = []
        self.nr_zone_types = 5 if arch == "x86_64" else 4  # MAX_NR_ZONES (with Movable, Device)
        n = max_pfn
        self.nxt = array("i", [-1]) * n
        self.prv = array("i", [-1]) * n
        self.lid = array("H", [NOLIST]) * n
        self.page_mt = bytearray([PAGE_RESERVED]) * n
        self.alloc_order = bytearray([NO_ORDER]) * n
        # memmap_init: every pageblock starts MIGRATE_MOVABLE (set_pageblock_migratetype forces
        # UNMOVABLE when grouping by mobility is disabled)
        boot_mt = MIGRATE_MOVABLE if self.policy.group_by_mobility else MIGRATE_UNMOVABLE
        self.pb_mt = bytearray([boot_mt]) * ((n + PAGEBLOCK_NR_PAGES - 1) >> PAGEBLOCK_ORDER)
        # list storage: head, tail, count per list id; list metadata
        self.lhead: list[int] = []
        self.ltail: list[int] = []
        self.lcount: list[int] = []
        self.l_order: list[int] = []  # order of blocks on the list
        self.l_mt: list[int] = []  # migratetype of the list
        self.l_zone: list[Zone] = []
        self.l_buddy_order: list[int] = []  # order for buddy lists, -1 for pcp lists
        self.l_pcp: list[Optional[PerCpuPages]] = []
        # statistics (read by sim/monitor.py)
        self.last_path = PATH_PCP
        self.nr_alloc = [0] * NR_PAGE_ORDERS
        self.nr_alloc_fail = [0] * NR_PAGE_ORDERS
        self.nr_path = [0] * len(PATH_NAMES)
        # every request by (order, path, atomic): index ((order * len(PATH_NAMES)) + path) * 2 + atomic
        self.nr_req = [0] * (NR_PAGE_ORDERS * len(PATH_NAMES) * 2)
        self.extfrag: dict[tuple, int] = {}  # (alloc_mt, fallback_mt, "claim"|"steal", fragmenting) -> n
        self.nr_zone_locked = 0
        self.nr_pcpu_drain = 0
        self.nr_boost = 0
        self.kswapd_wakeups = 0
        self.kswapd_order = 0
        self.kswapd_highest_zoneidx = 0
        self.nr_oom = 0
        self.nr_warn = 0
        # hooks into the reclaim and compaction models (kmemdes.mm.reclaim / compaction)
        self.reclaim: Optional[object] = None
        self.compaction: Optional[object] = None
        # capture_control of a running direct compaction: [order, migratetype, captured pfn or -1]
        self.capc: Optional[list] = None
        # rmap: head pfn of a movable (LRU-like) allocation -> owner with
        # ``migrate_page(old_pfn, new_pfn, order)``; only these pages can be migrated or reclaimed
        self.rmap: dict[int, object] = {}
        self.on_wakeup_kswapd: Optional[Callable[["Node", int, int, int], None]] = None
        # a direct compaction's duration: what runs on the other CPUs meanwhile (kswapd woken by this
        # slow path) is interleaved with its steps, ``on_stall(work)`` after each, ``on_stall_end()``
        # when try_to_compact_pages returns (set by sim.daemons)
        self.on_stall: Optional[Callable[[object], None]] = None
        self.on_stall_end: Optional[Callable[[], None]] = None
        # the slow path's direct reclaim and direct compaction stalls, for whoever times them (a list
        # set by the simulation; None: not recorded): (STALL_RECLAIM, ReclaimWork, pages reclaimed) after
        # each ``__perform_reclaim``, (STALL_COMPACT, CompactWork, compact_result, got a page, gfp, order,
        # how its last compact_zone run ended: ``Compaction.last_ended``) after each
        # ``__alloc_pages_direct_compact`` that counted a compact_stall
        self.stall_log: Optional[list] = None
        self.debug = False
        self._zonelists: dict[int, list[Zone]] = {}  # highest_zoneidx -> zones, highest first
        self._legacy_fallback = self.policy.fallback_version == "6.14"
        self._hz_cache: dict[int, int] = {}
        self._pcp_pfn = -1
        self.pb_valid = bytearray(len(self.pb_mt))  # 1: pageblock with online memory (pagetypeinfo counts it)
        self.pb_zone: list[Optional[Zone]] = [None] * len(self.pb_mt)  # page_zone by pageblock
        self.min_free_kbytes = 0

    # ------------------------------------------------------------------ lists
    def _new_list(self, zone: Zone, order: int, mt: int, pcp: Optional[PerCpuPages]) -> int:
        lid = len(self.lhead)
        if lid >= NOLIST:
            raise KmemdesError("too many free lists (CPUs x zones too large)")
        self.lhead.append(-1)
        self.ltail.append(-1)
        self.lcount.append(0)
        self.l_order.append(order)
        self.l_mt.append(mt)
        self.l_zone.append(zone)
        self.l_buddy_order.append(order if pcp is None else -1)
        self.l_pcp.append(pcp)
        return lid

    def _walk(self, lid: int) -> Iterable[int]:
        pfn = self.lhead[lid]
        nxt = self.nxt
        while pfn >= 0:
            yield pfn
            pfn = nxt[pfn]

    def _list_add(self, lid: int, pfn: int) -> None:
        """``list_add``: insert at the head."""
        h = self.lhead[lid]
        self.nxt[pfn] = h
        self.prv[pfn] = -1
        if h >= 0:
            self.prv[h] = pfn
        else:
            self.ltail[lid] = pfn
        self.lhead[lid] = pfn
        self.lcount[lid] += 1
        self.lid[pfn] = lid

    def _list_add_tail(self, lid: int, pfn: int) -> None:
        """``list_add_tail``: insert at the tail."""
        t = self.ltail[lid]
        self.prv[pfn] = t
        self.nxt[pfn] = -1
        if t >= 0:
            self.nxt[t] = pfn
        else:
            self.lhead[lid] = pfn
        self.ltail[lid] = pfn
        self.lcount[lid] += 1
        self.lid[pfn] = lid

    def _list_del(self, pfn: int) -> int:
        """``list_del``: unlink from whatever list; returns the list id."""
        lid = self.lid[pfn]
        n = self.nxt[pfn]
        p = self.prv[pfn]
        if p >= 0:
            self.nxt[p] = n
        else:
            self.lhead[lid] = n
        if n >= 0:
            self.prv[n] = p
        else:
            self.ltail[lid] = p
        self.lcount[lid] -= 1
        self.lid[pfn] = NOLIST
        return lid

    # ------------------------------------------------------------ free lists
    def _add_to_free_list(self, zone: Zone, pfn: int, order: int, mt: int, tail: bool) -> None:
        """``__add_to_free_list`` + ``account_freepages``.  The buddy allocator's busiest path (every
        split, merge and drain): ``list_add`` / ``list_add_tail`` inline."""
        lid = zone.lid0 + order * MIGRATE_TYPES + mt
        nxt, prv = self.nxt, self.prv
        if tail:
            t = self.ltail[lid]
            prv[pfn] = t
            nxt[pfn] = -1
            if t >= 0:
                nxt[t] = pfn
            else:
                self.lhead[lid] = pfn
            self.ltail[lid] = pfn
        else:
            h = self.lhead[lid]
            nxt[pfn] = h
            prv[pfn] = -1
            if h >= 0:
                prv[h] = pfn
            else:
                self.ltail[lid] = pfn
            self.lhead[lid] = pfn
        self.lcount[lid] += 1
        self.lid[pfn] = lid
        n = 1 << order
        zone.nr_free[order] += 1
        zone.free_pages += n
        zone.free_by_mt[mt] += n

    def _del_from_free_list(self, zone: Zone, pfn: int, order: int) -> int:
        """``del_page_from_free_list`` + ``account_freepages``; returns the list's migratetype.
        ``list_del`` inline, as in :meth:`_add_to_free_list`."""
        lid = self.lid[pfn]
        nxt, prv = self.nxt, self.prv
        nx = nxt[pfn]
        pv = prv[pfn]
        if pv >= 0:
            nxt[pv] = nx
        else:
            self.lhead[lid] = nx
        if nx >= 0:
            prv[nx] = pv
        else:
            self.ltail[lid] = pv
        self.lcount[lid] -= 1
        self.lid[pfn] = NOLIST
        mt = self.l_mt[lid]
        n = 1 << order
        zone.nr_free[order] -= 1
        zone.free_pages -= n
        zone.free_by_mt[mt] -= n
        return mt

    def _move_to_free_list(self, zone: Zone, pfn: int, order: int, new_mt: int) -> None:
        """``move_to_free_list``: to the tail of the new type's list (as the kernel does)."""
        self._del_from_free_list(zone, pfn, order)
        self._add_to_free_list(zone, pfn, order, new_mt, tail=True)

    def _buddy_order(self, pfn: int) -> int:
        """``buddy_order`` if the page heads a free buddy block (PageBuddy), else -1."""
        lid = self.lid[pfn]
        return -1 if lid == NOLIST else self.l_buddy_order[lid]

    # ----------------------------------------------------------------- zones
    def zone_of(self, pfn: int) -> Zone:
        """``page_zone``.  ``pb_zone`` names the lowest zone of each pageblock; zones start and end
        on pageblock boundaries on x86-64 (except DMA's pfn 0), but the x86-32 Normal/HighMem
        boundary (``max_low_pfn`` = MAXMEM_PFN, e.g. 0x36ffe) splits a pageblock between two zones."""
        z = self.pb_zone[pfn >> PAGEBLOCK_ORDER] if 0 <= pfn < self.max_pfn else None
        if z is None:
            raise KmemdesError(f"pfn {pfn:#x} is outside every zone")
        if pfn - z.start_pfn >= z.spanned:  # past the end of the pageblock's first zone
            for z2 in self.zones:
                if z2.start_pfn <= pfn < z2.start_pfn + z2.spanned:
                    return z2
            raise KmemdesError(f"pfn {pfn:#x} is outside every zone")
        return z

    def split_pageblocks(self) -> frozenset[int]:
        """Pageblocks that two zones share (the x86-32 Normal/HighMem boundary,
        ``max_low_pfn``, is not pageblock aligned); empty on x86-64.  For hot
        loops that take a page's zone from ``pb_zone`` and must ask
        :meth:`zone_of` only there."""
        out = set()
        for z in self.zones:
            end = z.start_pfn + z.spanned
            if end % (1 << PAGEBLOCK_ORDER) and end < self.max_pfn:
                out.add(end >> PAGEBLOCK_ORDER)
        return frozenset(out)

    def pageblock_migratetype(self, pfn: int) -> int:
        """``get_pageblock_migratetype``."""
        return self.pb_mt[pfn >> PAGEBLOCK_ORDER]

    def set_pageblock_migratetype(self, pfn: int, mt: int) -> None:
        """``set_pageblock_migratetype`` (forced Unmovable when grouping is disabled)."""
        if not self.policy.group_by_mobility and mt < MIGRATE_PCPTYPES:
            mt = MIGRATE_UNMOVABLE
        self.pb_mt[pfn >> PAGEBLOCK_ORDER] = mt

    def _change_pageblock_range(self, pfn: int, order: int, mt: int) -> None:
        """``change_pageblock_range``: retype every pageblock of a block >= pageblock_order."""
        for i in range(1 << (order - PAGEBLOCK_ORDER)):
            self.set_pageblock_migratetype(pfn + (i << PAGEBLOCK_ORDER), mt)

    def highest_zoneidx(self, gfp: int) -> int:
        """``gfp_zone`` as the kernel's zone index of this architecture (cached per zone bits)."""
        key = gfp & _ZONE_BITS
        hz = self._hz_cache.get(key)
        if hz is None:
            zt = gfp_zone(gfp)
            index = _ZONE_TYPE_INDEX[self.arch]
            # __GFP_DMA32 on 32-bit has no zone: the kernel maps it to NORMAL
            hz = self._hz_cache[key] = index[zt] if zt in index else index[ZoneType.NORMAL]
        return hz

    def zone_by_index(self, idx: int) -> Optional[Zone]:
        for z in self.zones:
            if z.idx == idx:
                return z
        return None

    # ------------------------------------------------------------- buddy core
    def _rmqueue_smallest(self, zone: Zone, order: int, mt: int) -> int:
        """``__rmqueue_smallest``: head of the first non-empty free_list[cur][mt], cur >= order."""
        lhead = self.lhead
        base = zone.lid0 + mt
        for cur in range(order, NR_PAGE_ORDERS):
            pfn = lhead[base + cur * MIGRATE_TYPES]
            if pfn >= 0:
                self._del_from_free_list(zone, pfn, cur)
                if cur > order:
                    self._expand(zone, pfn, order, cur, mt)
                self.nr_zone_locked += 1  # trace_mm_page_alloc_zone_locked
                return pfn
        return -1

    def _expand(self, zone: Zone, pfn: int, low: int, high: int, mt: int) -> None:
        """``expand``: split a 2^high block, put the upper halves at the list heads."""
        size = 1 << high
        while high > low:
            high -= 1
            size >>= 1
            self._add_to_free_list(zone, pfn + size, high, mt, tail=False)

    def _find_suitable_fallback(self, zone: Zone, order: int, mt: int, claimable: bool) -> int:
        """``find_suitable_fallback`` (6.15+): -2 too low to claim, -1 none, else the fallback type."""
        if claimable and not self._should_try_claim_block(order, mt):
            return -2
        if zone.nr_free[order] == 0:
            return -1
        lcount = self.lcount
        base = zone.lid0 + order * MIGRATE_TYPES
        for fmt in FALLBACKS[mt]:
            if lcount[base + fmt]:
                return fmt
        return -1

    def _should_try_claim_block(self, order: int, start_mt: int) -> bool:
        """``should_try_claim_block``."""
        if order >= PAGEBLOCK_ORDER // 2:
            return True
        if start_mt == MIGRATE_RECLAIMABLE or start_mt == MIGRATE_UNMOVABLE:
            return True
        return not self.policy.group_by_mobility

    def _rmqueue_claim(self, zone: Zone, order: int, start_mt: int, alloc_flags: int) -> int:
        """``__rmqueue_claim``: the largest fallback block, try to claim its pageblock(s)."""
        min_order = order
        if order < PAGEBLOCK_ORDER and alloc_flags & ALLOC_NOFRAGMENT:
            min_order = PAGEBLOCK_ORDER
        for cur in range(MAX_PAGE_ORDER, min_order - 1, -1):
            fmt = self._find_suitable_fallback(zone, cur, start_mt, True)
            if fmt == -1:
                continue
            if fmt == -2:
                break
            page = self.lhead[zone.lid0 + cur * MIGRATE_TYPES + fmt]
            pfn = self._try_to_claim_block(zone, page, cur, order, start_mt, fmt, alloc_flags)
            if pfn >= 0:
                self._trace_extfrag(zone, pfn, order, cur, start_mt, fmt)
                return pfn
        return -1

    def _try_to_claim_block(self, zone: Zone, page: int, cur: int, order: int,
                            start_mt: int, block_mt: int, alloc_flags: int) -> int:
        """``try_to_claim_block``: whole block if >= pageblock_order, else if enough is free or alike."""
        if cur >= PAGEBLOCK_ORDER:
            self._del_from_free_list(zone, page, cur)
            self._change_pageblock_range(page, cur, start_mt)
            self._expand(zone, page, order, cur, start_mt)
            return page
        if self._boost_watermark(zone) and alloc_flags & ALLOC_KSWAPD:
            zone.flags |= ZONE_BOOSTED_WATERMARK
        start = page & ~(PAGEBLOCK_NR_PAGES - 1)
        end = start + PAGEBLOCK_NR_PAGES
        if start < zone.start_pfn or end > zone.end_pfn:
            return -1  # prep_move_freepages_block: block crosses the zone boundary
        free_pages, movable_pages = self._count_block(start)
        if start_mt == MIGRATE_MOVABLE:
            alike = movable_pages
        elif block_mt == MIGRATE_MOVABLE:
            alike = PAGEBLOCK_NR_PAGES - (free_pages + movable_pages)
        else:
            alike = 0
        if free_pages + alike >= (1 << (PAGEBLOCK_ORDER - 1)) or not self.policy.group_by_mobility:
            self._move_freepages_block(zone, start, start_mt)
            self.set_pageblock_migratetype(start, start_mt)
            return self._rmqueue_smallest(zone, order, start_mt)
        return -1

    def _count_block(self, start: int) -> tuple[int, int]:
        """Free (PageBuddy) and movable (LRU) pages of one pageblock (``prep_move_freepages_block``)."""
        free = 0
        pfn = start
        end = start + PAGEBLOCK_NR_PAGES
        lid = self.lid
        lbo = self.l_buddy_order
        while pfn < end:
            li = lid[pfn]
            if li != NOLIST and lbo[li] >= 0:
                n = 1 << lbo[li]
                free += n
                pfn += n
            else:
                pfn += 1
        movable = self.page_mt.count(MIGRATE_MOVABLE, start, end)
        return free, movable

    def _move_freepages_block(self, zone: Zone, start: int, new_mt: int) -> int:
        """``__move_freepages_block``: move a pageblock's free buddy blocks to new_mt lists."""
        pfn = start
        end = start + PAGEBLOCK_NR_PAGES
        lid = self.lid
        lbo = self.l_buddy_order
        moved = 0
        while pfn < end:
            li = lid[pfn]
            if li != NOLIST and lbo[li] >= 0:
                o = lbo[li]
                if self.l_mt[li] != new_mt:
                    self._move_to_free_list(zone, pfn, o, new_mt)
                moved += 1 << o
                pfn += 1 << o
            else:
                pfn += 1
        return moved

    def _rmqueue_steal(self, zone: Zone, order: int, start_mt: int) -> int:
        """``__rmqueue_steal``: the smallest fallback block, no retype; remainder stays on its type."""
        for cur in range(order, NR_PAGE_ORDERS):
            fmt = self._find_suitable_fallback(zone, cur, start_mt, False)
            if fmt == -1:
                continue
            page = self.lhead[zone.lid0 + cur * MIGRATE_TYPES + fmt]
            self._del_from_free_list(zone, page, cur)
            self._expand(zone, page, order, cur, fmt)
            self._trace_extfrag(zone, page, order, cur, start_mt, fmt)
            return page
        return -1

    def _trace_extfrag(self, zone: Zone, pfn: int, order: int, cur: int, start_mt: int, fmt: int) -> None:
        """``trace_mm_page_alloc_extfrag``: count the fallback in the steal/claim matrix."""
        change_ownership = self.pb_mt[pfn >> PAGEBLOCK_ORDER] == start_mt
        key = (start_mt, fmt, "claim" if change_ownership else "steal", int(cur < PAGEBLOCK_ORDER))
        self.extfrag[key] = self.extfrag.get(key, 0) + 1

    def _rmqueue(self, zone: Zone, order: int, mt: int, alloc_flags: int, mode: list) -> int:
        """``__rmqueue`` with 6.15+ modes (NORMAL -> CLAIM -> STEAL); ``mode`` is remembered by rmqueue_bulk.

        With ``policy.fallback_version == "6.14"`` it is the 5.0-6.14 function instead: the
        preferred list, then ``__rmqueue_fallback``.
        """
        if self._legacy_fallback:
            pfn = self._rmqueue_smallest(zone, order, mt)
            if pfn < 0:
                pfn = self._rmqueue_fallback_614(zone, order, mt, alloc_flags)
            return pfn
        m = mode[0]
        if m == 0:
            pfn = self._rmqueue_smallest(zone, order, mt)
            if pfn >= 0:
                return pfn
            m = 2
        if m <= 2:
            pfn = self._rmqueue_claim(zone, order, mt, alloc_flags)
            if pfn >= 0:
                mode[0] = 0
                self._note_path(PATH_CLAIM)
                return pfn
        if not alloc_flags & ALLOC_NOFRAGMENT:
            pfn = self._rmqueue_steal(zone, order, mt)
            if pfn >= 0:
                mode[0] = 3
                self._note_path(PATH_STEAL)
                return pfn
        return -1

    def _rmqueue_fallback_614(self, zone: Zone, order: int, start_mt: int, alloc_flags: int) -> int:
        """``__rmqueue_fallback`` of 5.0-6.14: the largest fallback block; claim its pageblock when
        enough is free or alike, else steal one page from it (the pageblock keeps its type: an
        unmovable page in a movable block).  Movable requests that cannot claim take the smallest
        block instead.  ``steal_suitable_fallback`` with 6.10+ freelist hygiene."""
        min_order = PAGEBLOCK_ORDER if (order < PAGEBLOCK_ORDER and alloc_flags & ALLOC_NOFRAGMENT) else order
        cur = MAX_PAGE_ORDER
        fmt = -1
        can_steal = False
        while cur >= min_order:
            fmt = self._find_suitable_fallback(zone, cur, start_mt, False)
            if fmt >= 0:
                can_steal = self._should_try_claim_block(cur, start_mt)
                break
            cur -= 1
        if fmt < 0:
            return -1
        if not can_steal and start_mt == MIGRATE_MOVABLE and cur > order:
            for cur in range(order, NR_PAGE_ORDERS):
                fmt = self._find_suitable_fallback(zone, cur, start_mt, False)
                if fmt >= 0:
                    break
        page = self.lhead[zone.lid0 + cur * MIGRATE_TYPES + fmt]
        if cur >= PAGEBLOCK_ORDER:
            pfn = self._try_to_claim_block(zone, page, cur, order, start_mt, fmt, alloc_flags)
        else:
            if can_steal:  # boosts the watermark, claims if enough of the block is free or alike
                pfn = self._try_to_claim_block(zone, page, cur, order, start_mt, fmt, alloc_flags)
            else:
                if self._boost_watermark(zone) and alloc_flags & ALLOC_KSWAPD:
                    zone.flags |= ZONE_BOOSTED_WATERMARK
                pfn = -1
            if pfn < 0:  # single_page: steal from this block, no retype
                self._del_from_free_list(zone, page, cur)
                self._expand(zone, page, order, cur, fmt)
                pfn = page
        self._trace_extfrag(zone, pfn, order, cur, start_mt, fmt)
        self._note_path(PATH_CLAIM if self.pb_mt[pfn >> PAGEBLOCK_ORDER] == start_mt else PATH_STEAL)
        return pfn

    def _note_path(self, path: int) -> None:
        if path > self.last_path:
            self.last_path = path

    def _boost_watermark(self, zone: Zone) -> bool:
        """``boost_watermark``: raise the zone's watermarks by a pageblock after a fragmenting fallback."""
        factor = self.policy.watermark_boost_factor
        if not factor:
            return False
        if PAGEBLOCK_NR_PAGES * 4 > zone.managed:
            return False
        max_boost = zone._watermark[2] * factor // 10000
        if not max_boost:
            return False
        max_boost = max(PAGEBLOCK_NR_PAGES, max_boost)
        zone.watermark_boost = min(zone.watermark_boost + PAGEBLOCK_NR_PAGES, max_boost)
        self.nr_boost += 1
        return True

    # -------------------------------------------------------------- free path
    def _free_one_page(self, zone: Zone, pfn: int, order: int, mt: int, to_tail: bool = False) -> None:
        """``__free_one_page``: merge with free buddies, then head or tail of free_list[order][mt]."""
        lid = self.lid
        lbo = self.l_buddy_order
        l_zone = self.l_zone
        pb_mt = self.pb_mt
        buddy = pfn ^ (1 << order)
        capc = self.capc
        while order < MAX_PAGE_ORDER:
            if capc is not None and self._compaction_capture(capc, zone, pfn, order, mt):
                return
            buddy = pfn ^ (1 << order)
            li = lid[buddy] if buddy < self.max_pfn else NOLIST
            if li == NOLIST or lbo[li] != order or l_zone[li] is not zone:
                break
            bmt = mt
            if order >= PAGEBLOCK_ORDER:
                bmt = pb_mt[buddy >> PAGEBLOCK_ORDER]
                if bmt != mt and (mt >= MIGRATE_PCPTYPES or bmt >= MIGRATE_PCPTYPES):
                    break
            self._del_from_free_list(zone, buddy, order)
            if bmt != mt:
                self.set_pageblock_migratetype(buddy, mt)
            pfn &= buddy
            order += 1
        if not to_tail and order < MAX_PAGE_ORDER - 1:
            # buddy_merge_likely: is the buddy of the order+1 parent free?
            higher = pfn & buddy
            hb = higher ^ (1 << (order + 1))
            li = lid[hb] if hb < self.max_pfn else NOLIST
            to_tail = li != NOLIST and lbo[li] == order + 1 and l_zone[li] is zone
        self._add_to_free_list(zone, pfn, order, mt, to_tail)

    def _compaction_capture(self, capc: list, zone: Zone, pfn: int, order: int, mt: int) -> bool:
        """``compaction_capture``: a block of exactly the compacting order goes to the compactor."""
        if order != capc[0] or capc[2] >= 0 or mt == MIGRATE_ISOLATE:
            return False
        if order < PAGEBLOCK_ORDER and mt == MIGRATE_MOVABLE and capc[1] != MIGRATE_MOVABLE:
            return False
        if mt != capc[1]:
            key = (capc[1], mt, "steal", int(order < PAGEBLOCK_ORDER))
            self.extfrag[key] = self.extfrag.get(key, 0) + 1
        capc[2] = pfn
        return True

    def free_one_page(self, zone: Zone, pfn: int, order: int, to_tail: bool = False) -> None:
        """``free_one_page``/``split_large_buddy``: blocks above a pageblock go back one pageblock at a time."""
        if order > PAGEBLOCK_ORDER:
            step = PAGEBLOCK_NR_PAGES
            for p in range(pfn, pfn + (1 << order), step):
                self._free_one_page(zone, p, PAGEBLOCK_ORDER, self.pb_mt[p >> PAGEBLOCK_ORDER], to_tail)
        else:
            self._free_one_page(zone, pfn, order, self.pb_mt[pfn >> PAGEBLOCK_ORDER], to_tail)

    def free_pages(self, pfn: int, order: int, cpu: int = 0) -> None:
        """``__free_pages`` -> ``free_frozen_pages``: to a per-CPU list for pcp orders, else the buddy."""
        if pfn < 0 or pfn >= self.max_pfn:
            raise KmemdesError(f"free of pfn {pfn:#x} outside memory")
        page_mt = self.page_mt
        if page_mt[pfn] >= PAGE_RESERVED:
            raise KmemdesError(f"double free or free of a page never allocated: pfn {pfn:#x} order {order}")
        if order == 0:
            page_mt[pfn] = PAGE_FREE
        else:
            page_mt[pfn:pfn + (1 << order)] = b"\xff" * (1 << order)
        self.alloc_order[pfn] = NO_ORDER
        zone = self.pb_zone[pfn >> PAGEBLOCK_ORDER]
        if zone is None or pfn - zone.start_pfn >= zone.spanned:  # zone_of's own cases
            zone = self.zone_of(pfn)
        mt = self.pb_mt[pfn >> PAGEBLOCK_ORDER]
        if (order <= PAGE_ALLOC_COSTLY_ORDER or order == PAGEBLOCK_ORDER) and mt != MIGRATE_ISOLATE:
            if mt >= MIGRATE_PCPTYPES:
                mt = MIGRATE_MOVABLE  # highatomic (and CMA) pages go on the movable pcp list
            self._free_frozen_page_commit(zone, zone.pcp[cpu % self.cpus], pfn, mt, order)
        else:
            self.free_one_page(zone, pfn, order)
        if self.debug:
            self.check()

    # ------------------------------------------------------------------- pcp
    @staticmethod
    def order_to_pindex(mt: int, order: int) -> int:
        """``order_to_pindex``: 12 low-order lists (order x type) + 2 THP lists (other, movable)."""
        if order > PAGE_ALLOC_COSTLY_ORDER:
            return NR_LOWORDER_PCP_LISTS + (mt == MIGRATE_MOVABLE)
        return MIGRATE_PCPTYPES * order + mt

    def _free_frozen_page_commit(self, zone: Zone, pcp: PerCpuPages, pfn: int, mt: int, order: int) -> None:
        """``free_frozen_page_commit``: push at the head of the pcp list; flush over ``high``."""
        pcp.alloc_factor >>= 1
        pindex = self.order_to_pindex(mt, order)
        self._list_add(pcp.lid0 + pindex, pfn)
        pcp.count += 1 << order
        batch = pcp.batch
        free_high = False
        if order and order <= PAGE_ALLOC_COSTLY_ORDER:
            free_high = bool(pcp.free_count >= batch + pcp.high_min // 2
                             and pcp.flags & PCPF_PREV_FREE_HIGH_ORDER
                             and (not pcp.flags & PCPF_FREE_HIGH_BATCH or pcp.count >= batch))
            pcp.flags |= PCPF_PREV_FREE_HIGH_ORDER
        elif pcp.flags & PCPF_PREV_FREE_HIGH_ORDER:
            pcp.flags &= ~PCPF_PREV_FREE_HIGH_ORDER
        if pcp.free_count < batch << PCP_BATCH_SCALE_MAX:
            pcp.free_count += 1 << order
        high = self._nr_pcp_high(pcp, zone, batch, free_high)
        if pcp.count >= high:
            self.free_pcppages_bulk(zone, self._nr_pcp_free(pcp, batch, high, free_high), pcp, pindex)
            if zone.flags & ZONE_BELOW_HIGH and self._zone_watermark_ok(
                    zone, 0, zone.high_wmark, self.nr_zone_types - 2, 0):
                zone.flags &= ~ZONE_BELOW_HIGH

    def _nr_pcp_high(self, pcp: PerCpuPages, zone: Zone, batch: int, free_high: bool) -> int:
        """``nr_pcp_high``."""
        high_min, high_max = pcp.high_min, pcp.high_max
        high = pcp.high = min(max(pcp.high, high_min), high_max)
        if not high:
            return 0
        if free_high:
            pcp.high = max(high - (batch << PCP_BATCH_SCALE_MAX), high_min)
            return 0
        if zone.flags & ZONE_RECLAIM_ACTIVE:
            pcp.high = max(high - max(pcp.free_count, batch), high_min)
            return min(batch << 2, pcp.high)
        if high_min == high_max:
            return high
        if zone.flags & ZONE_BELOW_HIGH:
            pcp.high = max(high - max(pcp.free_count, batch), high_min)
            return max(pcp.count, high_min)
        if pcp.count >= high:
            need_high = pcp.free_count + batch
            if pcp.high < need_high:
                pcp.high = min(max(need_high, high_min), high_max)
        return high

    @staticmethod
    def _nr_pcp_free(pcp: PerCpuPages, batch: int, high: int, free_high: bool) -> int:
        """``nr_pcp_free``."""
        if free_high:
            return min(pcp.count, batch << PCP_BATCH_SCALE_MAX)
        if high < batch:
            return 1
        return min(max(pcp.free_count, batch), high - batch)

    def free_pcppages_bulk(self, zone: Zone, count: int, pcp: PerCpuPages, pindex: int) -> None:
        """``free_pcppages_bulk``: round-robin over the lists from ``pindex``, each emptied from its tail."""
        lid0 = pcp.lid0
        ltail = self.ltail
        lcount = self.lcount
        pindex -= 1
        while count > 0 and pcp.count > 0:
            while True:
                pindex += 1
                if pindex > NR_PCP_LISTS - 1:
                    pindex = 0
                if lcount[lid0 + pindex]:
                    break
            order = PAGEBLOCK_ORDER if pindex >= NR_LOWORDER_PCP_LISTS else pindex // MIGRATE_PCPTYPES
            n = 1 << order
            lid = lid0 + pindex
            while True:
                pfn = ltail[lid]
                self._list_del(pfn)
                count -= n
                pcp.count -= n
                self.nr_pcpu_drain += 1  # trace_mm_page_pcpu_drain
                self._free_one_page(zone, pfn, order, self.pb_mt[pfn >> PAGEBLOCK_ORDER])
                if count <= 0 or not lcount[lid]:
                    break

    def drain_pages_zone(self, zone: Zone, cpu: int) -> None:
        """``drain_pages_zone``: empty one CPU's lists in chunks of ``batch << 5``."""
        pcp = zone.pcp[cpu]
        while pcp.count > 0:
            self.free_pcppages_bulk(zone, min(pcp.count, pcp.batch << PCP_BATCH_SCALE_MAX), pcp, 0)

    def drain_all_pages(self, zone: Optional[Zone] = None) -> None:
        """``drain_all_pages``."""
        for z in ([zone] if zone else self.zones):
            for cpu in range(self.cpus):
                if z.pcp:
                    self.drain_pages_zone(z, cpu)

    def decay_pcp_high(self, zone: Zone, cpu: int) -> int:
        """``decay_pcp_high`` (vmstat update, ~1 s): lower ``high`` by 1/8, flush what is over it."""
        pcp = zone.pcp[cpu]
        batch = pcp.batch
        if pcp.high > pcp.high_min:
            pcp.high = max(pcp.count - (batch << PCP_BATCH_SCALE_MAX), pcp.high - (pcp.high >> 3), pcp.high_min)
        todo = pcp.count - pcp.high
        freed = 0
        while todo > 0 and pcp.count > 0:
            n = min(todo, batch)
            self.free_pcppages_bulk(zone, n, pcp, 0)
            todo -= n
            freed += n
        return freed

    def _nr_pcp_alloc(self, pcp: PerCpuPages, zone: Zone, order: int) -> int:
        """``nr_pcp_alloc`` (6.7+): how many blocks a refill takes."""
        high_min, high_max = pcp.high_min, pcp.high_max
        high = pcp.high = min(max(pcp.high, high_min), high_max)
        if high < pcp.batch:
            return 1
        batch = pcp.batch << pcp.alloc_factor if order == 0 else pcp.batch
        if high_min != high_max and not zone.flags & ZONE_BELOW_HIGH:
            high = pcp.high = min(high + batch, high_max)
        if order == 0:
            max_nr_alloc = max(high - pcp.count - pcp.batch, pcp.batch)
            if batch <= max_nr_alloc and pcp.alloc_factor < PCP_BATCH_SCALE_MAX:
                pcp.alloc_factor += 1
            batch = min(batch, max_nr_alloc)
        if batch > 1:
            batch = max(batch >> order, 2)
        return batch

    def _rmqueue_bulk(self, zone: Zone, order: int, count: int, lid: int, mt: int, alloc_flags: int) -> int:
        """``rmqueue_bulk``: take ``count`` blocks under one zone-lock hold, append to the list tail."""
        mode = [0]
        i = 0
        while i < count:
            pfn = self._rmqueue(zone, order, mt, alloc_flags, mode)
            if pfn < 0:
                break
            self._list_add_tail(lid, pfn)
            i += 1
        return i

    def rmqueue_pcplist(self, zone: Zone, order: int, mt: int, alloc_flags: int, cpu: int) -> int:
        """``rmqueue_pcplist``: pop the head of the (order, mt) list, refilling it when empty."""
        pcp = zone.pcp[cpu]
        pcp.free_count >>= 1
        lid = pcp.lid0 + self.order_to_pindex(mt, order)
        if not self.lcount[lid]:
            batch = self._nr_pcp_alloc(pcp, zone, order)
            got = self._rmqueue_bulk(zone, order, batch, lid, mt, alloc_flags)
            pcp.count += got << order
            if not got:
                return -1
            self._note_path(PATH_PCP_REFILL)
        pfn = self.lhead[lid]
        self._list_del(pfn)
        pcp.count -= 1 << order
        return pfn

    def rmqueue_buddy(self, zone: Zone, order: int, mt: int, alloc_flags: int) -> int:
        """``rmqueue_buddy``: highatomic reserve first for ALLOC_HIGHATOMIC, then ``__rmqueue``."""
        pfn = -1
        if alloc_flags & ALLOC_HIGHATOMIC:
            pfn = self._rmqueue_smallest(zone, order, MIGRATE_HIGHATOMIC)
            if pfn >= 0:
                self._note_path(PATH_HIGHATOMIC)
        if pfn < 0:
            pfn = self._rmqueue(zone, order, mt, alloc_flags, [0])
            if pfn < 0 and alloc_flags & (ALLOC_OOM | ALLOC_NON_BLOCK):
                pfn = self._rmqueue_smallest(zone, order, MIGRATE_HIGHATOMIC)
                if pfn >= 0:
                    self._note_path(PATH_HIGHATOMIC)
        if pfn >= 0:
            self._note_path(PATH_BUDDY)
        return pfn

    def rmqueue(self, zone: Zone, order: int, mt: int, alloc_flags: int, cpu: int) -> int:
        """``rmqueue``: pcp for pcp orders, else (or if the refill failed) the buddy lists."""
        pfn = -1
        if order <= PAGE_ALLOC_COSTLY_ORDER or order == PAGEBLOCK_ORDER:
            pfn = self.rmqueue_pcplist(zone, order, mt, alloc_flags, cpu)
        if pfn < 0:
            pfn = self.rmqueue_buddy(zone, order, mt, alloc_flags)
        if alloc_flags & ALLOC_KSWAPD and zone.flags & ZONE_BOOSTED_WATERMARK:
            zone.flags &= ~ZONE_BOOSTED_WATERMARK
            self.wakeup_kswapd(zone, 0, zone.idx)
        return pfn

    # ------------------------------------------------------------ watermarks
    def _zone_watermark_ok(self, z: Zone, order: int, mark: int, highest_zoneidx: int,
                           alloc_flags: int, free_pages: Optional[int] = None) -> bool:
        """``__zone_watermark_ok`` (6.x): free must be strictly above min + lowmem_reserve."""
        if free_pages is None:
            free_pages = z.free_pages
        free_pages -= (1 << order) - 1
        if not alloc_flags & ALLOC_RESERVES:
            free_pages -= z.free_by_mt[MIGRATE_HIGHATOMIC]
        m = mark
        if alloc_flags & ALLOC_RESERVES:
            if alloc_flags & ALLOC_MIN_RESERVE:
                m -= m // 2
                if alloc_flags & ALLOC_NON_BLOCK:
                    m -= m // 4
            if alloc_flags & ALLOC_OOM:
                m -= m // 2
        if free_pages <= m + z.lowmem_reserve[highest_zoneidx]:
            return False
        if order == 0:
            return True
        lcount = self.lcount
        for o in range(order, NR_PAGE_ORDERS):
            if not z.nr_free[o]:
                continue
            base = z.lid0 + o * MIGRATE_TYPES
            if lcount[base] or lcount[base + 1] or lcount[base + 2]:
                return True
            if alloc_flags & (ALLOC_HIGHATOMIC | ALLOC_OOM) and lcount[base + MIGRATE_HIGHATOMIC]:
                return True
        return False

    def zone_watermark_ok(self, z: Zone, order: int, mark: int, highest_zoneidx: int,
                          alloc_flags: int = 0) -> bool:
        """Public ``zone_watermark_ok``."""
        return self._zone_watermark_ok(z, order, mark, highest_zoneidx, alloc_flags)

    def _zone_watermark_fast(self, z: Zone, order: int, mark: int, highest_zoneidx: int,
                             alloc_flags: int) -> bool:
        """``zone_watermark_fast``: order-0 shortcut, then ``__zone_watermark_ok``, boost exception."""
        free_pages = z.free_pages
        if not order:
            reserved = 0 if alloc_flags & ALLOC_RESERVES else z.free_by_mt[MIGRATE_HIGHATOMIC]
            usable = free_pages - min(free_pages, reserved)
            if usable > mark + z.lowmem_reserve[highest_zoneidx]:
                return True
        if self._zone_watermark_ok(z, order, mark, highest_zoneidx, alloc_flags, free_pages):
            return True
        if (not order and alloc_flags & ALLOC_MIN_RESERVE and z.watermark_boost
                and (alloc_flags & ALLOC_WMARK_MASK) == ALLOC_WMARK_MIN):
            return self._zone_watermark_ok(z, order, z._watermark[0], highest_zoneidx, alloc_flags, free_pages)
        return False

    # -------------------------------------------------------------- alloc path
    def _get_page_from_freelist(self, gfp: int, order: int, mt: int, alloc_flags: int,
                                zonelist: list[Zone], highest_zoneidx: int, cpu: int) -> int:
        """``get_page_from_freelist``: first zone passing its watermark; retry without NOFRAGMENT."""
        while True:
            no_fallback = alloc_flags & ALLOC_NOFRAGMENT
            for zone in zonelist:
                if not zone.flags & ZONE_BELOW_HIGH:
                    if self._zone_watermark_fast(zone, order, zone.wmark(ALLOC_WMARK_HIGH),
                                                 highest_zoneidx, alloc_flags):
                        pfn = self._try_this_zone(zone, gfp, order, mt, alloc_flags, cpu)
                        if pfn >= 0:
                            return pfn
                        continue
                    zone.flags |= ZONE_BELOW_HIGH
                if alloc_flags & ALLOC_NO_WATERMARKS:
                    pass
                elif not self._zone_watermark_fast(zone, order, zone.wmark(alloc_flags & ALLOC_WMARK_MASK),
                                                   highest_zoneidx, alloc_flags):
                    continue
                pfn = self._try_this_zone(zone, gfp, order, mt, alloc_flags, cpu)
                if pfn >= 0:
                    return pfn
            if no_fallback and not self.policy.defrag_mode:
                alloc_flags &= ~ALLOC_NOFRAGMENT
                continue
            return -1

    def _try_this_zone(self, zone: Zone, gfp: int, order: int, mt: int, alloc_flags: int, cpu: int) -> int:
        pfn = self.rmqueue(zone, order, mt, alloc_flags, cpu)
        if pfn >= 0 and alloc_flags & ALLOC_HIGHATOMIC and order:
            self._reserve_highatomic_pageblock(zone, pfn, order)
        return pfn

    def _reserve_highatomic_pageblock(self, zone: Zone, pfn: int, order: int) -> None:
        """``reserve_highatomic_pageblock``: up to ~1% of the zone becomes MIGRATE_HIGHATOMIC."""
        if zone.managed // 100 < PAGEBLOCK_NR_PAGES:
            return
        max_managed = -(-(zone.managed // 100) // PAGEBLOCK_NR_PAGES) * PAGEBLOCK_NR_PAGES
        if zone.nr_reserved_highatomic >= max_managed:
            return
        mt = self.pb_mt[pfn >> PAGEBLOCK_ORDER]
        if mt >= MIGRATE_PCPTYPES:
            return
        if order < PAGEBLOCK_ORDER:
            start = pfn & ~(PAGEBLOCK_NR_PAGES - 1)
            if start < zone.start_pfn or start + PAGEBLOCK_NR_PAGES > zone.end_pfn:
                return
            self._move_freepages_block(zone, start, MIGRATE_HIGHATOMIC)
            self.pb_mt[pfn >> PAGEBLOCK_ORDER] = MIGRATE_HIGHATOMIC
            zone.nr_reserved_highatomic += PAGEBLOCK_NR_PAGES
        else:
            for i in range(1 << (order - PAGEBLOCK_ORDER)):
                self.pb_mt[(pfn >> PAGEBLOCK_ORDER) + i] = MIGRATE_HIGHATOMIC
            zone.nr_reserved_highatomic += 1 << order

    def unreserve_highatomic_pageblock(self, mt: int, force: bool) -> bool:
        """``unreserve_highatomic_pageblock``: give one reserved pageblock back to ``mt``.

        Keeps one pageblock per zone unless ``force``.
        """
        for zone in self.zones:
            if not force and zone.nr_reserved_highatomic <= PAGEBLOCK_NR_PAGES:
                continue
            for order in range(NR_PAGE_ORDERS):
                pfn = self.lhead[zone.lid0 + order * MIGRATE_TYPES + MIGRATE_HIGHATOMIC]
                if pfn < 0:
                    continue
                size = max(1 << order, PAGEBLOCK_NR_PAGES)
                zone.nr_reserved_highatomic -= min(size, zone.nr_reserved_highatomic)
                if order >= PAGEBLOCK_ORDER:
                    self._change_pageblock_range(pfn, order, mt)
                    self._move_to_free_list(zone, pfn, order, mt)
                else:
                    start = pfn & ~(PAGEBLOCK_NR_PAGES - 1)
                    self._move_freepages_block(zone, start, mt)
                    self.pb_mt[pfn >> PAGEBLOCK_ORDER] = mt
                return True
        return False

    def wakeup_kswapd(self, zone: Zone, order: int, highest_zoneidx: int, gfp: int = 0) -> None:
        """``wakeup_kswapd``: record the request; the simulation's kswapd acts on it (``gfp`` tells it
        whether the caller can reclaim itself, or kcompactd should be woken instead)."""
        self.kswapd_wakeups += 1
        self.kswapd_order = max(self.kswapd_order, order)
        self.kswapd_highest_zoneidx = max(self.kswapd_highest_zoneidx, highest_zoneidx)
        if self.on_wakeup_kswapd is not None:
            self.on_wakeup_kswapd(self, order, highest_zoneidx, gfp)

    def alloc_flags_nofragment(self, preferred: Zone, gfp: int) -> int:
        """``alloc_flags_nofragment``: NOFRAGMENT when the preferred zone is Normal and DMA32 exists."""
        flags = gfp & _GFP_KSWAPD_RECLAIM
        if self.policy.defrag_mode:
            return flags | ALLOC_NOFRAGMENT
        if not self.policy.nofragment:
            return flags
        if preferred.zone_type == ZoneType.NORMAL and self._has_dma32:
            flags |= ALLOC_NOFRAGMENT
        return flags

    @property
    def _has_dma32(self) -> bool:
        v = self.__dict__.get("_dma32")
        if v is None:
            v = self.__dict__["_dma32"] = any(z.zone_type == ZoneType.DMA32 for z in self.zones)
        return v

    def gfp_to_alloc_flags(self, gfp: int, order: int) -> int:
        """``gfp_to_alloc_flags`` (slow path): MIN watermark, reserves for atomic and _GFP_HIGH."""
        flags = ALLOC_WMARK_MIN | ALLOC_CPUSET | (gfp & (_GFP_HIGH | _GFP_KSWAPD_RECLAIM))
        if not gfp & _GFP_DIRECT_RECLAIM:
            if not gfp & _GFP_NOMEMALLOC:
                flags |= ALLOC_NON_BLOCK
                if order > 0 and flags & ALLOC_MIN_RESERVE:
                    flags |= ALLOC_HIGHATOMIC
            if flags & ALLOC_MIN_RESERVE:
                flags &= ~ALLOC_CPUSET
        if self.policy.defrag_mode:
            flags |= ALLOC_NOFRAGMENT
        return flags

    def alloc_pages(self, gfp: int, order: int, cpu: int = 0) -> int:
        """``__alloc_pages``: fast path at the low watermark, then the slow path. Returns pfn or -1.

        ``last_path`` tells how the request was served (``PATH_*``).
        """
        self.last_path = PATH_PCP
        if order > MAX_PAGE_ORDER or order < 0:
            self.nr_warn += not gfp & _GFP_NOWARN  # WARN unless __GFP_NOWARN
            self.last_path = PATH_FAILED
            self.nr_path[PATH_FAILED] += 1
            return -1
        self.nr_alloc[order] += 1
        mt = gfp_migratetype(gfp) if self.policy.group_by_mobility else MIGRATE_UNMOVABLE
        hz = self._hz_cache.get(gfp & _ZONE_BITS)
        if hz is None:
            hz = self.highest_zoneidx(gfp)
        zonelist = self._zonelists.get(hz) or self._zonelist_for(hz)
        cpu %= self.cpus
        if not zonelist:
            pfn = -1
        elif order == 0 and self._pcp_hit_order0(zonelist[0], mt, hz, cpu):
            pfn = self._pcp_pfn
        else:
            flags = ALLOC_WMARK_LOW | self.alloc_flags_nofragment(zonelist[0], gfp)
            pfn = self._get_page_from_freelist(gfp, order, mt, flags, zonelist, hz, cpu)
            if pfn < 0:
                pfn = self._alloc_pages_slowpath(gfp, order, mt, zonelist, hz, cpu)
        if pfn < 0:
            self.last_path = PATH_FAILED
            self.nr_alloc_fail[order] += 1
        elif order == 0:
            self.page_mt[pfn] = mt
            self.alloc_order[pfn] = 0
        else:
            n = 1 << order
            self.page_mt[pfn:pfn + n] = bytes((mt,)) * n
            self.alloc_order[pfn] = order
        path = self.last_path
        self.nr_path[path] += 1
        self.nr_req[(order * _NR_PATHS + path) * 2 + (not gfp & _GFP_DIRECT_RECLAIM)] += 1
        if self.debug:
            self.check()
        return pfn

    def _pcp_hit_order0(self, zone: Zone, mt: int, hz: int, cpu: int) -> bool:
        """The common order-0 case, inline: what ``get_page_from_freelist`` does when the preferred
        zone is above its high watermark (not ZONE_BELOW_HIGH, no pending boost) and the CPU's list
        has a page: ``rmqueue_pcplist`` pops the head.  Sets ``_pcp_pfn``; False means take the full path."""
        if zone.flags & (ZONE_BELOW_HIGH | ZONE_BOOSTED_WATERMARK):
            return False
        free = zone.free_pages
        if free - min(free, zone.free_by_mt[MIGRATE_HIGHATOMIC]) <= (
                zone._watermark[2] + zone.watermark_boost + zone.lowmem_reserve[hz]):
            return False
        pcp = zone.pcp[cpu]
        lid = pcp.lid0 + mt
        pfn = self.lhead[lid]
        if pfn < 0:
            return False
        pcp.free_count >>= 1
        # _list_del of the list's head
        nx = self.nxt[pfn]
        self.lhead[lid] = nx
        if nx >= 0:
            self.prv[nx] = -1
        else:
            self.ltail[lid] = -1
        self.lcount[lid] -= 1
        self.lid[pfn] = NOLIST
        pcp.count -= 1
        self._pcp_pfn = pfn
        return True

    def _zonelist_for(self, hz: int) -> list[Zone]:
        """The zonelist of a request whose highest zone index is ``hz``: usable zones, highest first."""
        zl = self._zonelists[hz] = [z for z in reversed(self.zones) if z.idx <= hz and z.managed > 0]
        return zl

    def reset_counters(self) -> None:
        """Zero the statistics (after an initial state was prepared: they describe the run only)."""
        self.nr_alloc = [0] * NR_PAGE_ORDERS
        self.nr_alloc_fail = [0] * NR_PAGE_ORDERS
        self.nr_path = [0] * len(PATH_NAMES)
        self.nr_req = [0] * (NR_PAGE_ORDERS * len(PATH_NAMES) * 2)
        self.extfrag = {}
        self.nr_zone_locked = self.nr_pcpu_drain = self.nr_boost = self.nr_oom = self.nr_warn = 0
        self.kswapd_wakeups = 0

    def _invalidate_zonelists(self) -> None:
        self._zonelists.clear()
        self.__dict__.pop("_dma32", None)

    def _alloc_pages_slowpath(self, gfp: int, order: int, mt: int, zonelist: list[Zone],
                              hz: int, cpu: int) -> int:
        """``__alloc_pages_slowpath``: kswapd, reserves, compaction, reclaim, retries, OOM.

        Reclaim and compaction are delegated to the ``reclaim`` / ``compaction``
        models when they are attached; without them those steps make no progress.
        """
        flags = self.gfp_to_alloc_flags(gfp, order)
        can_reclaim = bool(gfp & _GFP_DIRECT_RECLAIM)
        costly = order > PAGE_ALLOC_COSTLY_ORDER
        # wake_all_kswapds: with defrag_mode kswapd and kcompactd work toward whole free pageblocks
        reclaim_order = max(order, PAGEBLOCK_ORDER) if self.policy.defrag_mode else order
        if flags & ALLOC_KSWAPD:
            self.wakeup_kswapd(zonelist[0], reclaim_order, hz, gfp)
        if gfp & _GFP_MEMALLOC:
            flags |= ALLOC_NO_WATERMARKS
        pfn = self._get_page_from_freelist(gfp, order, mt, flags, zonelist, hz, cpu)
        if pfn >= 0:
            self._note_path(PATH_SLOWPATH)
            return pfn
        compact_prio = DEF_COMPACT_PRIORITY
        compact_result = COMPACT_SKIPPED
        pfmemalloc = bool(gfp & _GFP_MEMALLOC) and not gfp & _GFP_NOMEMALLOC  # gfp_pfmemalloc_allowed
        if can_reclaim and (costly or (order > 0 and mt != MIGRATE_MOVABLE)) and not pfmemalloc:
            pfn, compact_result = self._direct_compact(gfp, order, flags, hz, INIT_COMPACT_PRIORITY,
                                                       zonelist, cpu, mt)
            if pfn >= 0:
                return pfn
            if costly and gfp & _GFP_NORETRY:
                # a THP fault's node-local first try only compacts; otherwise give up when compaction
                # could not run, and keep later compaction async (sync "could be very expensive")
                if compact_result in (COMPACT_SKIPPED, COMPACT_DEFERRED) or gfp & _GFP_THISNODE:
                    return -1
                compact_prio = INIT_COMPACT_PRIORITY
        no_progress_loops = 0
        compaction_retries = 0
        while True:
            if flags & ALLOC_KSWAPD:
                self.wakeup_kswapd(zonelist[0], reclaim_order, hz, gfp)
            pfn = self._get_page_from_freelist(gfp, order, mt, flags, zonelist, hz, cpu)
            if pfn >= 0:
                self._note_path(PATH_SLOWPATH)
                return pfn
            if not can_reclaim:
                return -1  # GFP_ATOMIC / GFP_NOWAIT end here
            # __alloc_pages_direct_reclaim
            reclaimed = 0
            if self.reclaim is not None:
                reclaimed = self.reclaim.direct_reclaim(self, zonelist, order, gfp)
                if self.stall_log is not None:
                    self.stall_log.append((STALL_RECLAIM, self.reclaim.last_work, reclaimed))
            pfn = self._get_page_from_freelist(gfp, order, mt, flags, zonelist, hz, cpu)
            if pfn < 0 and reclaimed:
                self.unreserve_highatomic_pageblock(mt, False)
                self.drain_all_pages()
                pfn = self._get_page_from_freelist(gfp, order, mt, flags, zonelist, hz, cpu)
            if pfn >= 0:
                self._note_path(PATH_RECLAIM)
                return pfn
            pfn, compact_result = self._direct_compact(gfp, order, flags, hz, compact_prio, zonelist, cpu, mt)
            if pfn >= 0:
                return pfn
            if gfp & _GFP_NORETRY:
                return -1
            if costly and not gfp & _GFP_RETRY_MAYFAIL:
                return -1
            # should_reclaim_retry: costly orders count every loop as no progress (their order
            # may never form however much is reclaimed), so they give up after MAX_RECLAIM_RETRIES
            if reclaimed and not costly:
                no_progress_loops = 0
            else:
                no_progress_loops += 1
            if self._should_reclaim_retry(gfp, order, flags, zonelist, hz, no_progress_loops):
                continue
            # should_compact_retry: escalate the priority on failed passes, retry successes a bounded time
            if order and self.compaction is not None:
                max_retries = MAX_COMPACT_RETRIES if not costly else MAX_COMPACT_RETRIES // 4
                if compact_result == COMPACT_SUCCESS:
                    compaction_retries += 1
                    if compaction_retries <= max_retries:
                        continue
                elif compact_prio > (COMPACT_PRIO_SYNC_LIGHT if costly else COMPACT_PRIO_SYNC_FULL):
                    compact_prio -= 1
                    compaction_retries = 0
                    continue
            if self.policy.defrag_mode and flags & ALLOC_NOFRAGMENT:
                flags &= ~ALLOC_NOFRAGMENT  # reclaim/compaction failed to prevent the fallback
                continue
            if gfp & _GFP_NOFAIL:
                flags |= ALLOC_MIN_RESERVE
                pfn = self._get_page_from_freelist(gfp, order, mt, flags, zonelist, hz, cpu)
                if pfn >= 0:
                    self._note_path(PATH_SLOWPATH)
                    return pfn
            if not costly and not gfp & (_GFP_RETRY_MAYFAIL | _GFP_THISNODE):
                self.nr_oom += 1  # the OOM killer would run here; the model reports the failure
            return -1

    def _should_reclaim_retry(self, gfp: int, order: int, flags: int, zonelist: list[Zone],
                              hz: int, no_progress_loops: int) -> bool:
        """``should_reclaim_retry``: retry while a zone could pass min with its reclaimable pages."""
        if order > PAGE_ALLOC_COSTLY_ORDER and not gfp & _GFP_RETRY_MAYFAIL:
            return False
        if no_progress_loops > MAX_RECLAIM_RETRIES:
            return False
        for zone in zonelist:
            available = zone.reclaimable + zone.free_pages
            if self._zone_watermark_ok(zone, order, zone.min_wmark, hz, flags, available):
                return zone.reclaimable > 0
        return False

    def _direct_compact(self, gfp: int, order: int, flags: int, hz: int, prio: int,
                        zonelist: list[Zone], cpu: int, mt: int) -> tuple[int, int]:
        """``__alloc_pages_direct_compact``: delegate to the compaction model, then retry the lists."""
        if not order or self.compaction is None:
            return -1, COMPACT_SKIPPED
        result, captured = self.compaction.try_to_compact_pages(self, gfp, order, flags, hz, prio, zonelist)
        if captured >= 0:
            self.compaction.direct_compact_outcome(self, captured, order)
            self._note_path(PATH_COMPACT)
            if self.stall_log is not None:
                self.stall_log.append((STALL_COMPACT, self.compaction.last_work, COMPACT_SUCCESS, True, gfp, order,
                                       self.compaction.last_ended))
            return captured, COMPACT_SUCCESS
        if result == COMPACT_SKIPPED:
            return -1, result
        pfn = self._get_page_from_freelist(gfp, order, mt, flags, zonelist, hz, cpu)
        self.compaction.direct_compact_outcome(self, pfn, order)
        if pfn >= 0:
            self._note_path(PATH_COMPACT)
        if self.stall_log is not None:
            self.stall_log.append((STALL_COMPACT, self.compaction.last_work, result, pfn >= 0, gfp, order,
                                   self.compaction.last_ended))
        return pfn, result

    # ----------------------------------------------------------- mirror mode
    def take_block(self, pfn: int, order: int) -> int:
        """Remove the free block [pfn, pfn + 2^order) from the buddy or pcp lists (mirror replay).

        Returns 0 if it was a buddy block (split out of a larger one if needed,
        the other pieces going back to the heads of their lists as ``expand``
        would put them), 1 if it was on a per-CPU list, -1 if some of its pages
        were not free in the model.
        """
        lid = self.lid
        lbo = self.l_buddy_order
        li = lid[pfn]
        if li != NOLIST:
            bo = lbo[li]
            if bo < 0:  # on a pcp list
                if self.l_order[li] != order:
                    return -1
                pcp = self.l_pcp[li]
                self._list_del(pfn)
                pcp.count -= 1 << order
                return 1
        # find the free buddy block containing pfn
        for o in range(order, NR_PAGE_ORDERS):
            head = pfn & ~((1 << o) - 1)
            li = lid[head]
            if li != NOLIST and lbo[li] == o:
                zone = self.l_zone[li]
                mt = self._del_from_free_list(zone, head, o)
                while o > order:
                    o -= 1
                    half = 1 << o
                    if pfn & half:
                        self._add_to_free_list(zone, head, o, mt, tail=False)
                        head += half
                    else:
                        self._add_to_free_list(zone, head + half, o, mt, tail=False)
                return 0
        return -1

    # --------------------------------------------------------------- hotplug
    def online_pages(self, start_pfn: int, nr_pages: int, mt: int = MIGRATE_MOVABLE) -> None:
        """``__free_pages_core`` / deferred init: give a pfn range to the buddy allocator (tail, max order)."""
        pfn = start_pfn
        end = start_pfn + nr_pages
        zone = self.zone_of(start_pfn)
        for pb in range(start_pfn >> PAGEBLOCK_ORDER, ((end - 1) >> PAGEBLOCK_ORDER) + 1):
            self.pb_mt[pb] = mt
            self.pb_valid[pb] = 1
        self.free_pages_core(zone, pfn, end)
        self._invalidate_zonelists()

    def free_pages_core(self, zone: Zone, pfn: int, end: int) -> None:
        """``memblock_free_pages`` -> ``__free_pages_core``: give [pfn, end) to the buddy allocator in
        the largest aligned blocks, each to the tail of its list (FPI_TO_TAIL); they become managed."""
        while pfn < end:
            order = MAX_PAGE_ORDER if pfn == 0 else min(MAX_PAGE_ORDER, (pfn & -pfn).bit_length() - 1)
            while pfn + (1 << order) > end:
                order -= 1
            n = 1 << order
            self.page_mt[pfn:pfn + n] = b"\xff" * n
            zone.managed += n
            self.free_one_page(zone, pfn, order, to_tail=True)
            pfn += n

    # ----------------------------------------------------------- invariants
    def check(self) -> None:
        """Debug invariants: counters equal list contents, no overlap, no unmerged buddies.

        Raises AssertionError naming the first violation.
        """
        seen = bytearray(self.max_pfn)
        for zone in self.zones:
            nr_free = [0] * NR_PAGE_ORDERS
            by_mt = [0] * MIGRATE_TYPES
            for order in range(NR_PAGE_ORDERS):
                for mt in range(MIGRATE_TYPES):
                    lid = zone.lid0 + order * MIGRATE_TYPES + mt
                    n = 0
                    prev = -1
                    for pfn in self._walk(lid):
                        assert self.prv[pfn] == prev, f"broken back link at pfn {pfn:#x}"
                        prev = pfn
                        n += 1
                        assert self.lid[pfn] == lid, f"pfn {pfn:#x} on list {lid} but lid says {self.lid[pfn]}"
                        assert pfn % (1 << order) == 0, f"misaligned order-{order} block {pfn:#x}"
                        assert zone.start_pfn <= pfn and pfn + (1 << order) <= zone.end_pfn, \
                            f"block {pfn:#x} o{order} outside zone {zone.name}"
                        seg = seen[pfn:pfn + (1 << order)]
                        assert not any(seg), f"overlapping free block {pfn:#x} o{order}"
                        seen[pfn:pfn + (1 << order)] = b"\x01" * (1 << order)
                        assert self.page_mt.count(PAGE_FREE, pfn, pfn + (1 << order)) == 1 << order, \
                            f"free block {pfn:#x} o{order} has pages marked allocated"
                        assert self.pb_mt[pfn >> PAGEBLOCK_ORDER] == mt, \
                            f"free block {pfn:#x} o{order} on {mt} list in a type-{self.pb_mt[pfn >> PAGEBLOCK_ORDER]} pageblock"
                        if order < MAX_PAGE_ORDER:
                            b = pfn ^ (1 << order)
                            bl = self.lid[b] if b < self.max_pfn else NOLIST
                            if bl != NOLIST and self.l_buddy_order[bl] == order and self.l_zone[bl] is zone:
                                bmt = self.pb_mt[b >> PAGEBLOCK_ORDER]
                                assert order >= PAGEBLOCK_ORDER and bmt != mt and (
                                    mt >= MIGRATE_PCPTYPES or bmt >= MIGRATE_PCPTYPES), \
                                    f"unmerged free buddies {pfn:#x} and {b:#x} at order {order}"
                    assert self.ltail[lid] == prev, f"list {lid} tail mismatch"
                    assert n == self.lcount[lid], f"list count mismatch {zone.name} o{order} mt{mt}"
                    nr_free[order] += n
                    by_mt[mt] += n << order
            assert nr_free == zone.nr_free, f"{zone.name} nr_free {zone.nr_free} != lists {nr_free}"
            assert by_mt == zone.free_by_mt, f"{zone.name} free_by_mt {zone.free_by_mt} != lists {by_mt}"
            assert sum(c << o for o, c in enumerate(nr_free)) == zone.free_pages, f"{zone.name} free_pages"
            for pcp in zone.pcp:
                count = 0
                for pindex in range(NR_PCP_LISTS):
                    lid = pcp.lid0 + pindex
                    order = self.l_order[lid]
                    n = 0
                    for pfn in self._walk(lid):
                        n += 1
                        seg = seen[pfn:pfn + (1 << order)]
                        assert not any(seg), f"pcp block {pfn:#x} overlaps a free block"
                        seen[pfn:pfn + (1 << order)] = b"\x01" * (1 << order)
                        assert self.page_mt.count(PAGE_FREE, pfn, pfn + (1 << order)) == 1 << order
                    assert n == self.lcount[lid]
                    count += n << order
                assert count == pcp.count, f"{zone.name} pcp count {pcp.count} != lists {count}"
        free_marked = self.page_mt.count(PAGE_FREE)
        assert free_marked == sum(seen), f"{free_marked} pages marked free, {sum(seen)} on lists"

    # ------------------------------------------------------------ summaries
    def nr_free_pages(self) -> int:
        return sum(z.free_pages for z in self.zones)

    def pageblock_counts(self, zone: Zone) -> list[int]:
        """Pageblocks per migratetype (``pagetypeinfo_showblockcount_print``), valid blocks only."""
        counts = [0] * MIGRATE_TYPES
        first = zone.start_pfn >> PAGEBLOCK_ORDER
        last = (zone.end_pfn - 1) >> PAGEBLOCK_ORDER
        pb_valid = self.pb_valid
        for pb in range(first, last + 1):
            if pb_valid[pb]:
                counts[self.pb_mt[pb]] += 1
        return counts


# ---------------------------------------------------------------------------
# Machine construction
# ---------------------------------------------------------------------------

def _setup_zone_pcp(node: Node, zone: Zone) -> None:
    """``zone_batchsize`` / ``zone_highsize`` (6.7+ auto-tuned high_min/high_max) and the pcp lists."""
    b = max(min(zone.managed >> 10, (1 << 20) // PAGE_SIZE) // 4, 1)
    batch = max(1, _rounddown_pow_of_two(b + b // 2) - 1)
    frac = node.policy.percpu_pagelist_high_fraction
    cpus = node.cpus
    if frac:
        high_min = high_max = max(zone.managed // frac // cpus, batch << 2)
    else:
        high_min = max(zone.low_wmark // cpus, batch << 2)
        high_max = max(zone.managed // 8 // cpus, batch << 2)
    if not zone.pcp:
        for cpu in range(cpus):
            pcp = PerCpuPages(lid0=-1, batch=batch, high_min=high_min, high_max=high_max, high=0)  # BOOT_PAGESET_HIGH
            lid0 = -1
            for pindex in range(NR_PCP_LISTS):
                if pindex < NR_LOWORDER_PCP_LISTS:
                    order, mt = pindex // MIGRATE_PCPTYPES, pindex % MIGRATE_PCPTYPES
                else:
                    order, mt = PAGEBLOCK_ORDER, (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE)[pindex - NR_LOWORDER_PCP_LISTS]
                lid = node._new_list(zone, order, mt, pcp)
                if pindex == 0:
                    lid0 = lid
            pcp.lid0 = lid0
            zone.pcp.append(pcp)
    else:
        for pcp in zone.pcp:
            pcp.batch, pcp.high_min, pcp.high_max = batch, high_min, high_max
            pcp.high = min(max(pcp.high, high_min), high_max) if pcp.high else 0


def calculate_min_free_kbytes(node: Node) -> int:
    """``calculate_min_free_kbytes`` and THP's ``set_recommended_min_free_kbytes``."""
    if node.policy.min_free_kbytes is not None:
        return node.policy.min_free_kbytes
    lowmem = [z for z in node.zones if z.zone_type not in (ZoneType.HIGHMEM, ZoneType.MOVABLE)]
    lowmem_kbytes = sum(z.managed for z in lowmem) * (PAGE_SIZE // 1024)
    mfk = min(max(int_sqrt(lowmem_kbytes * 16), 128), 262144)
    if node.policy.thp_enabled in ("always", "madvise"):
        nr_zones = sum(1 for z in node.zones if z.populated and z.zone_type <= ZoneType.NORMAL)
        recommended = PAGEBLOCK_NR_PAGES * nr_zones * 2
        recommended += PAGEBLOCK_NR_PAGES * nr_zones * MIGRATE_PCPTYPES * MIGRATE_PCPTYPES
        recommended = min(recommended, sum(z.managed for z in lowmem) // 20)
        recommended_kb = recommended << (PAGE_SHIFT - 10)
        mfk = max(mfk, recommended_kb)
    return mfk


def setup_per_zone_wmarks(node: Node) -> None:
    """``__setup_per_zone_wmarks`` + ``setup_per_zone_lowmem_reserve`` + pcp limits."""
    min_free_kbytes = node.min_free_kbytes = calculate_min_free_kbytes(node)
    pages_min = min_free_kbytes >> (PAGE_SHIFT - 10)
    lowmem_pages = sum(z.managed for z in node.zones if z.zone_type not in (ZoneType.HIGHMEM, ZoneType.MOVABLE))
    wsf = node.policy.watermark_scale_factor
    for z in node.zones:
        if z.zone_type in (ZoneType.HIGHMEM, ZoneType.MOVABLE):
            wmin = min(max(z.managed // 1024, 32), 128)
            tmp = pages_min * z.managed // lowmem_pages if lowmem_pages else 0
        else:
            tmp = pages_min * z.managed // lowmem_pages if lowmem_pages else 0
            wmin = tmp
        delta = max(tmp >> 2, z.managed * wsf // 10000)
        z.watermark_boost = 0
        z._watermark = [wmin, wmin + delta, wmin + 2 * delta, wmin + 3 * delta]
    # lowmem_reserve over all MAX_NR_ZONES indices (unpopulated zones count 0)
    managed_by_idx = [0] * node.nr_zone_types
    for z in node.zones:
        managed_by_idx[z.idx] = z.managed
    ratios = _lowmem_reserve_ratio(node)
    for z in node.zones:
        ratio = ratios[z.idx]
        clear = not ratio or not z.managed
        res = [0] * node.nr_zone_types
        acc = 0
        for j in range(z.idx + 1, node.nr_zone_types):
            acc += managed_by_idx[j]
            res[j] = 0 if clear else acc // ratio
        z.lowmem_reserve = res
    for z in node.zones:
        if z.managed:
            _setup_zone_pcp(node, z)


def _lowmem_reserve_ratio(node: Node) -> list[int]:
    r = list(node.policy.lowmem_reserve_ratio)
    if node.arch == "x86_64":  # DMA, DMA32, Normal, Movable, Device
        names = r[:3] + [r[-2] if len(r) >= 4 else 0, r[-1] if len(r) >= 5 else 0]
    else:  # DMA, Normal, HighMem, Movable: 256, 32, 0, 0
        names = [r[0], r[2], 0, 0]
    return (names + [0] * node.nr_zone_types)[: node.nr_zone_types]


def __getattr__(name: str):
    """Machine construction lives in mm_init.py (as in the kernel); re-exported lazily."""
    if name in ("build_node", "parse_size"):
        from kmemdes.mm import mm_init

        return getattr(mm_init, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
