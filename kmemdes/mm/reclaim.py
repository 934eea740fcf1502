"""Page reclaim without swap: page-cache LRU lists, shrinkers, direct reclaim and kswapd's balance_pgdat.

Follows mm/vmscan.c of Linux 6.x for a machine without swap (the reference
machine): reclaimable memory is clean page cache on the file LRU lists plus
what registered shrinkers (reclaimable slab: dentries, inodes) give back.
Anonymous memory is never reclaimed.  Plain Python: no time, no SimPy, no
I/O; the work done (pages scanned and reclaimed) is counted for
``kmemdes.sim.daemons.DaemonCosts`` to price.

What is modelled
    * One node-wide inactive and one active file list, as the kernel's
      lruvec since 4.8 ("mm, vmscan: move LRU lists to node"): reclaim takes
      the oldest folios whatever their zone, so which zone gets free pages
      (and whole free pageblocks) follows the age of the page cache, and
      ``isolate_lru_folios`` skips folios of zones above ``sc.reclaim_idx``
      (they go back to the head).  Pages per zone and list are counted for
      the scan targets (``lruvec_lru_size`` up to ``reclaim_idx``) and
      ``zone_reclaimable_pages``.  The lists are threaded through pfn-indexed
      arrays so that insertion, removal and migration are O(1).  New pages
      go to the inactive head (``lru_add``); ``mark_page_accessed`` sets
      PG_referenced, a second access activates the page.  Reclaim takes
      pages from the inactive tail: clean ones are freed whether referenced
      or not (``folio_check_references`` gives RECLAIM_CLEAN for unmapped
      page cache); dirty ones are kept — kswapd starts their writeback
      (``pageout``, counted in ``nr_vmscan_write``) and the model counts them
      clean from then on, direct reclaim only rotates them.  The active list
      is aged into the inactive one when ``inactive_is_low``.
    * ``shrink_node`` scans ``lru_size >> priority`` pages of each list in
      SWAP_CLUSTER_MAX batches until ``nr_to_reclaim`` is met, then calls the
      shrinkers with ``(freeable >> priority) * 4 / seeks`` (``do_shrink_slab``).
    * ``direct_reclaim`` (``try_to_free_pages``): 32 pages, priority 12 down
      to 0, stopping early when compaction is ready for a costly order
      (``compaction_ready``); counts ``allocstall_<zone>``.
    * ``balance_pgdat``: kswapd's loop with the watermark boost (boosted
      reclaim of ``sum(boost)`` pages when already balanced, normal reclaim
      to high + boost otherwise), ``kswapd_shrink_node``'s target and its fall
      back to order 0 after ``compact_gap(order)`` pages, priority raising,
      ``kswapd_failures``, ZONE_RECLAIM_ACTIVE, clearing the boost and waking
      kcompactd at pageblock order.
    * ``zone.reclaimable`` (file LRU pages of the zone, ``zone_reclaimable_pages``
      without swap) is kept up to date for the slow path's retry test.

Not modelled: mapped page cache (PTE references), MGLRU, refault
(workingset) activation, memcg, writeback completion time (a page kswapd
wrote back is reclaimable at its next scan), throttling.

Owners: a workload registers allocated pages with :meth:`Reclaim.add_file_pages`.
The reclaim model then sits in ``node.rmap`` for those pages and forwards
``migrate_page(old, new, order)`` to the owner; when reclaim frees a page it
calls the owner's ``reclaim_page(pfn, order)`` (if the owner has one) first.
Owners drop pages themselves with :meth:`Reclaim.remove_file_pages` (truncate,
unlink).

Shrinkers (optional hook for the SLUB model): ``register_shrinker(name,
count_objects, scan_objects, seeks=2)`` where ``count_objects()`` returns
the reclaimable slab pages and ``scan_objects(nr)`` tries to free up to
``nr`` of them and returns how many pages it freed (it frees them itself).

>>> from kmemdes.mm.mm_init import build_node, parse_size
>>> from kmemdes.mm.gfp import GFP_HIGHUSER_MOVABLE
>>> node = build_node("x86_64", parse_size("256M"), cpus=1)
>>> rec = Reclaim(node)
>>> pfns = [node.alloc_pages(GFP_HIGHUSER_MOVABLE, 0) for _ in range(100)]
>>> rec.add_file_pages(pfns, 0, owner=None)
>>> rec.nr_file_pages(), node.zones[1].reclaimable
(100, 100)
>>> rec.shrink_node(node.zones, 10, priority=0), rec.nr_file_pages()   # a whole 32-page batch
(32, 68)
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from math import isqrt
from typing import Callable, Generator, Iterable, NamedTuple, Optional

from kmemdes.errors import KmemdesError
from kmemdes.mm import gfp as G
from kmemdes.mm.compaction import compact_gap, compaction_suitable
from kmemdes.mm.page_alloc import (
    MAX_RECLAIM_RETRIES,
    NO_ORDER,
    PAGE_ALLOC_COSTLY_ORDER,
    PAGE_RESERVED,
    PAGEBLOCK_ORDER,
    ZONE_RECLAIM_ACTIVE,
    Node,
    Zone,
)

__all__ = [
    "SWAP_CLUSTER_MAX",
    "DEF_PRIORITY",
    "RECLAIM_VMSTAT",
    "ReclaimWork",
    "ScanControl",
    "Shrinker",
    "Reclaim",
    "pgdat_balanced",
    "pgdat_watermark_boosted",
]

SWAP_CLUSTER_MAX = 32
DEF_PRIORITY = 12
DEFAULT_SEEKS = 2
_GFP_IO = G.__GFP_IO

# per-page LRU flags
_PG_LRU = 1
_PG_ACTIVE = 2
_PG_REFERENCED = 4
_PG_DIRTY = 8
_PG_MAPPED = 16  # mapped into a process (page table references): folio_check_references keeps it

_ZONE_VMSTAT = {"DMA": "allocstall_dma", "DMA32": "allocstall_dma32", "Normal": "allocstall_normal",
                "HighMem": "allocstall_normal", "Movable": "allocstall_movable"}

#: /proc/vmstat counters kept by the model (names as the kernel prints them)
RECLAIM_VMSTAT = (
    "pgscan_kswapd", "pgscan_direct", "pgsteal_kswapd", "pgsteal_direct", "pgscan_file", "pgsteal_file",
    "allocstall_dma", "allocstall_dma32", "allocstall_normal", "allocstall_movable",
    "pgactivate", "pgdeactivate", "pgrefill", "pgrotated", "nr_vmscan_write", "slabs_scanned",
    "pageoutrun", "kswapd_low_wmark_hit_quickly", "kswapd_high_wmark_hit_quickly",
    "workingset_refault_file", "workingset_activate_file",
)


class ReclaimWork(NamedTuple):
    """Work done by one reclaim step (what ``DaemonCosts`` prices).

    ``folios`` is how many folios the ``reclaimed`` pages came in (0: one page
    each): ``shrink_folio_list`` works per folio, so a 512-page readahead folio
    costs about what one base page does, not 512 times as much.
    """

    scanned: int = 0
    reclaimed: int = 0
    slab_freed: int = 0
    folios: int = 0


class ScanControl:
    """``struct scan_control``."""

    __slots__ = ("nr_to_reclaim", "priority", "order", "reclaim_idx", "is_kswapd", "gfp",
                 "nr_scanned", "nr_reclaimed", "compaction_ready", "may_writepage")

    def __init__(self, nr_to_reclaim: int, order: int, reclaim_idx: int, is_kswapd: bool, gfp: int = 0):
        self.nr_to_reclaim = nr_to_reclaim
        self.priority = DEF_PRIORITY
        self.order = order
        self.reclaim_idx = reclaim_idx
        self.is_kswapd = is_kswapd
        self.gfp = gfp
        self.nr_scanned = 0
        self.nr_reclaimed = 0
        self.compaction_ready = False
        self.may_writepage = True


class Shrinker:
    """``struct shrinker`` in pages: ``count_objects() -> freeable``, ``scan_objects(nr) -> freed``."""

    __slots__ = ("name", "count_objects", "scan_objects", "seeks")

    def __init__(self, name: str, count_objects: Callable[[], int], scan_objects: Callable[[int], int],
                 seeks: int = DEFAULT_SEEKS):
        self.name = name
        self.count_objects = count_objects
        self.scan_objects = scan_objects
        self.seeks = seeks


def pgdat_balanced(node: Node, order: int, highest_zoneidx: int) -> bool:
    """``pgdat_balanced``: an eligible zone meets its high watermark (+ boost) at ``order``.

    With ``defrag_mode`` and order > 0 only free whole pageblocks count
    (NR_FREE_PAGES_BLOCKS).  A node without managed eligible zones is balanced.
    """
    mark_free = False
    for zone in node.zones:
        if zone.idx > highest_zoneidx or not zone.managed:
            continue
        free = None
        if node.policy.defrag_mode and order:
            free = sum(c << o for o, c in enumerate(zone.nr_free) if o >= PAGEBLOCK_ORDER)
        if node._zone_watermark_ok(zone, order, zone.wmark(2), highest_zoneidx, 0, free):
            return True
        mark_free = True
    return not mark_free


def pgdat_watermark_boosted(node: Node, highest_zoneidx: int) -> bool:
    """``pgdat_watermark_boosted``: some eligible zone has a watermark boost."""
    return any(z.watermark_boost for z in node.zones if z.idx <= highest_zoneidx)


class Reclaim:
    """Page-cache LRU and shrinkers of one node; ``Reclaim(node)`` attaches itself as ``node.reclaim``."""

    def __init__(self, node: Node):
        self.node = node
        self.zones = list(node.zones)
        nz = len(self.zones)
        # the node's lists: 0 inactive, 1 active (LRU_INACTIVE_FILE, LRU_ACTIVE_FILE)
        self._head = [-1, -1]
        self._tail = [-1, -1]
        self._pages = [0] * (2 * nz)  # pages (not folios) per zone and list: 2 * zone index + active
        self._zend = [z.end_pfn for z in self.zones]
        self._nxt: Optional[array] = None  # allocated on first use: 9 bytes per pfn
        self._prv: Optional[array] = None
        self._flags: Optional[bytearray] = None
        self._owner_id: Optional[array] = None
        self._owners: list = [None]
        self._owner_index: dict[int, int] = {}
        self.shrinkers: list[Shrinker] = []
        self.vmstat: dict[str, int] = dict.fromkeys(RECLAIM_VMSTAT, 0)
        self.kswapd_failures = 0  # pgdat->kswapd_failures
        self.kswapd_running = False  # set by the kswapd daemon while it reclaims
        self.last_work = ReclaimWork()  # work of the last direct_reclaim call
        # mm/workingset.c: lruvec->nonresident_age (evicted and activated pages), and the
        # WORKINGSET_ACTIVATE_FILE count the last reclaim ended at (snapshot_refaults)
        self.nonresident_age = 0
        self._refaults_snap = 0
        node.reclaim = self

    # ---------------------------------------------------------- storage
    def _ensure_arrays(self) -> None:
        if self._nxt is None:
            n = self.node.max_pfn
            self._nxt = array("i", [-1]) * n
            self._prv = array("i", [-1]) * n
            self._flags = bytearray(n)
            self._owner_id = array("H", [0]) * n

    def _zone_index(self, pfn: int) -> int:
        i = bisect_right(self._zend, pfn)
        if i < len(self.zones) and self.zones[i].start_pfn <= pfn:
            return i
        raise KmemdesError(f"pfn {pfn:#x} is outside every zone")

    def _link_head(self, lst: int, pfn: int) -> None:
        h = self._head[lst]
        self._nxt[pfn] = h
        self._prv[pfn] = -1
        if h >= 0:
            self._prv[h] = pfn
        else:
            self._tail[lst] = pfn
        self._head[lst] = pfn

    def _link_tail(self, lst: int, pfn: int) -> None:
        t = self._tail[lst]
        self._prv[pfn] = t
        self._nxt[pfn] = -1
        if t >= 0:
            self._nxt[t] = pfn
        else:
            self._head[lst] = pfn
        self._tail[lst] = pfn

    def _unlink(self, lst: int, pfn: int) -> None:
        n = self._nxt[pfn]
        p = self._prv[pfn]
        if p >= 0:
            self._nxt[p] = n
        else:
            self._head[lst] = n
        if n >= 0:
            self._prv[n] = p
        else:
            self._tail[lst] = p

    def _lst(self, pfn: int) -> int:
        return 1 if self._flags[pfn] & _PG_ACTIVE else 0

    def _account(self, zi: int, active: int, n: int) -> None:
        self._pages[2 * zi + active] += n
        self.zones[zi].reclaimable += n

    def _order(self, pfn: int) -> int:
        o = self.node.alloc_order[pfn]
        return 0 if o == NO_ORDER else o

    # ----------------------------------------------------------- owners' API
    def add_file_pages(self, pfns: Iterable[int], orders, owner, dirty: bool = False, oldest: bool = False,
                       active: bool = False, referenced: bool = False, mapped: bool = False) -> None:
        """``filemap_add_folio`` + ``folio_add_lru``: allocated pages become page cache (inactive head).

        ``orders`` is one order for all pages or a sequence parallel to ``pfns``.  ``oldest``: at
        the inactive tail instead, for page cache older than everything on the lists (a replay
        adding pages from before its trace when the kernel's own reclaim shows they were there).
        ``active`` / ``referenced`` / ``mapped``: the page's LRU state as a snapshot shows it
        (``KPF_ACTIVE``, ``KPF_REFERENCED``, ``KPF_MMAP``): at the active head, PG_referenced set,
        mapped by a process (whose page-table references ``folio_check_references`` sees).
        """
        self._ensure_arrays()
        node = self.node
        oid = 0
        if owner is not None:
            oid = self._owner_index.get(id(owner), 0)
            if not oid:
                if len(self._owners) >= 0xFFFF:
                    raise KmemdesError("too many page-cache owners (at most 65534)")
                oid = self._owner_index[id(owner)] = len(self._owners)
                self._owners.append(owner)
        pfns = list(pfns)
        orders = [orders] * len(pfns) if isinstance(orders, int) else list(orders)
        flags, owner_id = self._flags, self._owner_id
        page_mt, alloc_order, rmap = node.page_mt, node.alloc_order, node.rmap
        page_flags = (_PG_LRU | (_PG_DIRTY if dirty else 0) | (_PG_ACTIVE if active else 0)
                      | (_PG_REFERENCED if referenced else 0) | (_PG_MAPPED if mapped else 0))
        lst = 1 if active else 0
        link = self._link_tail if oldest else self._link_head
        for pfn, order in zip(pfns, orders):
            if page_mt[pfn] >= PAGE_RESERVED or alloc_order[pfn] != order:
                raise KmemdesError(f"pfn {pfn:#x} is not an allocated order-{order} block")
            if flags[pfn] & _PG_LRU:
                raise KmemdesError(f"pfn {pfn:#x} is already page cache")
            flags[pfn] = page_flags
            owner_id[pfn] = oid
            link(lst, pfn)
            self._account(self._zone_index(pfn), lst, 1 << order)
            rmap[pfn] = self

    def remove_file_pages(self, pfns: Iterable[int], free: bool = True) -> None:
        """Truncate/unlink: pages leave the page cache (and are freed unless ``free`` is False)."""
        for pfn in pfns:
            self._del(pfn)
            if free:
                self.node.free_pages(pfn, self._order(pfn))

    def _del(self, pfn: int) -> int:
        flags = self._flags
        if flags is None or not flags[pfn] & _PG_LRU:
            raise KmemdesError(f"pfn {pfn:#x} is not page cache")
        lst = self._lst(pfn)
        self._unlink(lst, pfn)
        self._account(self._zone_index(pfn), lst, -(1 << self._order(pfn)))
        flags[pfn] = 0
        self._owner_id[pfn] = 0
        self.node.rmap.pop(pfn, None)
        return lst

    def folio_nr_pages(self, pfn: int) -> int:
        """Pages of the folio at ``pfn``."""
        return 1 << self._order(pfn)

    def mark_page_accessed(self, pfn: int) -> None:
        """``folio_mark_accessed``: referenced once, activated on the second access."""
        f = self._flags[pfn]
        if not f & _PG_LRU:
            return
        if not f & _PG_ACTIVE and f & _PG_REFERENCED:
            self.folio_activate(pfn)
        else:
            self._flags[pfn] = f | _PG_REFERENCED

    def folio_activate(self, pfn: int) -> int:
        """``folio_activate`` / ``lru_activate`` as ``folio_mark_accessed`` calls it on a second access:
        a folio on the inactive list goes to the head of the active list, PG_referenced cleared, and
        PGACTIVATE counts its pages (the ``mm_lru_activate`` event).  Returns the pages moved (0 when
        the folio is not on the inactive list).

        >>> from kmemdes.mm.mm_init import build_node, parse_size
        >>> from kmemdes.mm.gfp import GFP_HIGHUSER_MOVABLE
        >>> node = build_node("x86_64", parse_size("256M"), cpus=1)
        >>> rec = Reclaim(node)
        >>> pfn = node.alloc_pages(GFP_HIGHUSER_MOVABLE, 9)
        >>> rec.add_file_pages([pfn], 9, owner=None)
        >>> rec.folio_activate(pfn), rec.folio_activate(pfn), rec.vmstat["pgactivate"]
        (512, 0, 512)
        """
        f = self._flags[pfn] if self._flags is not None else 0
        if not f & _PG_LRU or f & _PG_ACTIVE:
            return 0
        n = self._to_active(pfn, (f | _PG_ACTIVE) & ~_PG_REFERENCED)
        self.vmstat["pgactivate"] += n
        return n

    def _to_active(self, pfn: int, flags: int) -> int:
        """Move the inactive folio at ``pfn`` to the active head with ``flags``; the workingset clock
        ages by its pages (``workingset_activation`` / ``workingset_age_nonresident``).  Returns them."""
        zi, n = self._zone_index(pfn), 1 << self._order(pfn)
        self._unlink(0, pfn)
        self._account(zi, 0, -n)
        self._flags[pfn] = flags
        self._link_head(1, pfn)
        self._account(zi, 1, n)
        self.nonresident_age += n
        return n

    def workingset_refault(self, pfn: int, eviction: int) -> bool:
        """``workingset_refault`` for the page-cache folio at ``pfn`` just added in place of one evicted
        when ``nonresident_age`` was ``eviction``: counts ``workingset_refault_file``; when the refault
        distance (pages evicted or activated since) is within the active file list
        (``workingset_test_recent`` without swap: ``NR_ACTIVE_FILE``), the folio starts active
        (``folio_set_active`` before it joins the LRU: no ``pgactivate``) and counts
        ``workingset_activate_file``.  Returns whether it was activated.

        >>> from kmemdes.mm.mm_init import build_node, parse_size
        >>> from kmemdes.mm.gfp import GFP_HIGHUSER_MOVABLE
        >>> node = build_node("x86_64", parse_size("256M"), cpus=1)
        >>> rec = Reclaim(node)
        >>> a, b = (node.alloc_pages(GFP_HIGHUSER_MOVABLE, 0) for _ in range(2))
        >>> rec.add_file_pages([a, b], 0, owner=None)
        >>> rec.folio_activate(a), rec.workingset_refault(b, rec.nonresident_age - 1)   # distance 1 <= 1 active
        (1, True)
        >>> rec.vmstat["workingset_activate_file"], rec.vmstat["pgactivate"]
        (1, 1)
        """
        f = self._flags[pfn] if self._flags is not None else 0
        if not f & _PG_LRU:
            return False
        n = 1 << self._order(pfn)
        self.vmstat["workingset_refault_file"] += n
        if f & _PG_ACTIVE or self.nonresident_age - eviction > sum(self._pages[1::2]):
            return False
        self._to_active(pfn, f | _PG_ACTIVE)
        self.vmstat["workingset_activate_file"] += n
        return True

    def set_page_dirty(self, pfn: int, dirty: bool = True) -> None:
        """``folio_mark_dirty`` / writeback completion (``dirty=False``)."""
        if dirty:
            self._flags[pfn] |= _PG_DIRTY
        else:
            self._flags[pfn] &= ~_PG_DIRTY

    def is_page_cache(self, pfn: int) -> bool:
        return self._flags is not None and bool(self._flags[pfn] & _PG_LRU)

    def migrate_page(self, old: int, new: int, order: int) -> None:
        """Compaction moved a page-cache folio: it keeps its LRU position; the owner is told."""
        lst = self._lst(old)
        nxt, prv = self._nxt, self._prv
        n, p = nxt[old], prv[old]
        nxt[new], prv[new] = n, p
        if p >= 0:
            nxt[p] = new
        else:
            self._head[lst] = new
        if n >= 0:
            prv[n] = new
        else:
            self._tail[lst] = new
        self._flags[new] = self._flags[old]
        self._flags[old] = 0
        oid = self._owner_id[old]
        self._owner_id[new] = oid
        self._owner_id[old] = 0
        old_zi, new_zi = self._zone_index(old), self._zone_index(new)
        if new_zi != old_zi:  # another zone (not done by compaction): the pages count there
            self._account(old_zi, lst, -(1 << order))
            self._account(new_zi, lst, 1 << order)
        owner = self._owners[oid]
        if owner is not None:
            owner.migrate_page(old, new, order)

    def split_folio(self, pfn: int, order: int) -> bool:
        """A page-cache folio split into base pages (``__split_folio_to_order`` with
        ``lru_add_split_folio``): each tail page goes on the folio's list beside it, with its flags
        (referenced, active, dirty, mapped), and its owner is told first; False, and nothing done,
        when the owner cannot follow a split (it has no ``split_folio``, or refuses)."""
        oid = self._owner_id[pfn]
        owner = self._owners[oid]
        if owner is not None:
            split = getattr(owner, "split_folio", None)
            if split is None or not split(pfn, order):
                return False
        lst = self._lst(pfn)
        flags, owner_id = self._flags, self._owner_id
        nxt, prv = self._nxt, self._prv
        f = flags[pfn]
        for p in range(pfn + 1, pfn + (1 << order)):
            # list_add_tail(&new->lru, &folio->lru): between the folio and its neighbour on the head side
            q = prv[pfn]
            prv[p], nxt[p] = q, pfn
            prv[pfn] = p
            if q >= 0:
                nxt[q] = p
            else:
                self._head[lst] = p
            flags[p] = f
            owner_id[p] = oid
        return True

    def register_shrinker(self, name: str, count_objects: Callable[[], int],
                          scan_objects: Callable[[int], int], seeks: int = DEFAULT_SEEKS) -> Shrinker:
        """``register_shrinker``: reclaimable slab (in pages) that reclaim may shrink."""
        s = Shrinker(name, count_objects, scan_objects, seeks)
        self.shrinkers.append(s)
        return s

    # ------------------------------------------------------------- counts
    def nr_file_pages(self) -> int:
        return sum(self._pages)

    def lru_pages(self, zone: Zone, active: bool) -> int:
        """Pages of a zone on the inactive or active file list."""
        return self._pages[2 * self.zones.index(zone) + int(active)]

    # --------------------------------------------------------- shrinking
    def _inactive_is_low(self) -> bool:
        """``inactive_is_low`` of the node's file lists: inactive * ratio < active, ratio =
        int_sqrt(10 * GiB) or 1 (``lruvec_page_state``: the whole node)."""
        inactive = sum(self._pages[0::2])
        active = sum(self._pages[1::2])
        gb = (inactive + active) >> (30 - 12)
        ratio = isqrt(10 * gb) if gb else 1
        return inactive * ratio < active

    def _eligible(self, reclaim_idx: int) -> bytes:
        """Per zone index: 1 when the zone is at or below ``reclaim_idx``."""
        return bytes(int(z.idx <= reclaim_idx) for z in self.zones)

    def _shrink_active_list(self, nr_to_scan: int, reclaim_idx: int) -> int:
        """``shrink_active_list``: deactivate folios from the active tail to the inactive head;
        folios of zones above ``reclaim_idx`` are skipped (``isolate_lru_folios``)."""
        flags = self._flags
        ok = self._eligible(reclaim_idx)
        zone_index = self._zone_index
        left = sum(self._pages[1::2])  # visit each folio at most once
        scanned = 0
        skipped = []
        while scanned < nr_to_scan and left > 0:
            pfn = self._tail[1]
            if pfn < 0:
                break
            n = 1 << self._order(pfn)
            left -= n
            zi = zone_index(pfn)
            self._unlink(1, pfn)
            if not ok[zi]:
                skipped.append(pfn)
                continue
            self._account(zi, 1, -n)
            flags[pfn] &= ~(_PG_ACTIVE | _PG_REFERENCED)
            self._link_head(0, pfn)
            self._account(zi, 0, n)
            scanned += n
        for pfn in reversed(skipped):  # spliced back to the head of the list
            self._link_head(1, pfn)
        self.vmstat["pgrefill"] += scanned
        self.vmstat["pgdeactivate"] += scanned
        return scanned

    def _shrink_inactive_list(self, nr_to_scan: int, sc: ScanControl) -> tuple[int, int, int]:
        """``shrink_inactive_list`` + ``shrink_folio_list``: free clean folios from the inactive tail;
        folios of zones above ``sc.reclaim_idx`` are skipped (``isolate_lru_folios``).

        Returns (pages scanned, pages reclaimed, folios reclaimed)."""
        node = self.node
        flags = self._flags
        owner_id = self._owner_id
        owners = self._owners
        prv, nxt = self._prv, self._nxt
        alloc_order = node.alloc_order
        rmap = node.rmap
        free_pages = node.free_pages
        tail = self._tail
        zend = self._zend
        ok = self._eligible(sc.reclaim_idx)
        left = sum(self._pages[0::2])  # visit each folio at most once
        freed = [0] * len(zend)
        scanned = reclaimed = folios = 0
        rotated = []
        skipped = []
        activated = []
        while scanned < nr_to_scan and left > 0:
            pfn = tail[0]
            if pfn < 0:
                break
            p = prv[pfn]  # isolate the tail folio
            tail[0] = p
            if p >= 0:
                nxt[p] = -1
            else:
                self._head[0] = -1
            order = alloc_order[pfn]
            n = 1 << order
            left -= n
            zi = bisect_right(zend, pfn)  # _zone_index without its check: LRU folios are in a zone
            if not ok[zi]:
                skipped.append(pfn)
                continue
            scanned += n
            f = flags[pfn]
            if f & _PG_MAPPED:
                # folio_check_references with referencing page tables: kept once (marked referenced),
                # activated when it comes round again still referenced
                if f & _PG_REFERENCED:
                    flags[pfn] = (f & ~_PG_REFERENCED) | _PG_ACTIVE
                    activated.append(pfn)
                else:
                    flags[pfn] = f | _PG_REFERENCED
                    rotated.append(pfn)
                continue
            if f & _PG_DIRTY:
                # dirty file folios are never written from direct reclaim; kswapd starts writeback
                if sc.is_kswapd and sc.may_writepage:
                    flags[pfn] = f & ~_PG_DIRTY
                    self.vmstat["nr_vmscan_write"] += n
                rotated.append(pfn)
                continue
            flags[pfn] = 0
            oid = owner_id[pfn]
            owner_id[pfn] = 0
            del rmap[pfn]
            if oid:
                owner = owners[oid]
                if hasattr(owner, "reclaim_page"):
                    owner.reclaim_page(pfn, order)  # reads nonresident_age: the shadow's eviction
            self.nonresident_age += n  # workingset_eviction
            free_pages(pfn, order)
            freed[zi] += n
            reclaimed += n
            folios += 1
        for zi, n in enumerate(freed):
            if n:
                self._account(zi, 0, -n)
        for pfn in rotated:  # kept folios go back to the head
            self._link_head(0, pfn)
        nr_activate = 0
        for pfn in activated:  # FOLIOREF_ACTIVATE: to the head of the active list
            n = 1 << self._order(pfn)
            zi = bisect_right(zend, pfn)
            self._account(zi, 0, -n)
            self._link_head(1, pfn)
            self._account(zi, 1, n)
            nr_activate += n
        self.vmstat["pgactivate"] += nr_activate  # stat.nr_activate: pages
        for pfn in reversed(skipped):
            self._link_head(0, pfn)
        return scanned, reclaimed, folios

    def _shrink_slab(self, priority: int) -> int:
        """``shrink_slab`` / ``do_shrink_slab``: ask each shrinker for (freeable >> priority) * 4 / seeks."""
        freed = 0
        for s in self.shrinkers:
            freeable = s.count_objects()
            if freeable <= 0:
                continue
            delta = (freeable >> priority) * 4 // s.seeks
            nr = min(delta, 2 * freeable)
            if nr <= 0:
                continue
            self.vmstat["slabs_scanned"] += nr
            freed += max(0, s.scan_objects(nr))
        return freed

    def _shrink_node_steps(self, zones: list[Zone], sc: ScanControl) -> Generator[ReclaimWork, None, None]:
        """``shrink_node``: passes over the lists while ``should_continue_reclaim`` says so."""
        while True:
            before = sc.nr_reclaimed
            yield from self._shrink_node_pass(zones, sc)
            if not self._should_continue_reclaim(zones, sc, sc.nr_reclaimed - before):
                return

    def _should_continue_reclaim(self, zones: list[Zone], sc: ScanControl, nr_reclaimed: int) -> bool:
        """``should_continue_reclaim``: in reclaim/compaction mode (a costly order, or priority below
        DEF_PRIORITY - 2, with ``__GFP_IO``), go on while the last pass reclaimed something, no zone
        can serve the order or start compaction at the min watermark, and the inactive lists still
        hold more than ``compact_gap(order)`` pages."""
        node = self.node
        if not (sc.order and sc.gfp & _GFP_IO and node.compaction is not None
                and (sc.order > PAGE_ALLOC_COSTLY_ORDER or sc.priority < DEF_PRIORITY - 2)):
            return False
        if not nr_reclaimed:
            return False
        threshold = node.compaction.extfrag_threshold
        for z in zones:
            if not z.managed:
                continue
            if node.zone_watermark_ok(z, sc.order, z.wmark(0), sc.reclaim_idx, 0):
                return False
            if compaction_suitable(node, z, sc.order, sc.reclaim_idx, threshold):
                return False
        inactive = sum(self._pages[2 * self.zones.index(z)] for z in zones)
        return inactive > compact_gap(sc.order)

    def _shrink_node_pass(self, zones: list[Zone], sc: ScanControl) -> Generator[ReclaimWork, None, None]:
        """One ``shrink_node`` pass (``shrink_lruvec``): each list scanned ``size >> priority`` in
        32-page batches until ``nr_to_reclaim``, then the shrinkers.

        Direct reclaim at DEF_PRIORITY does not stop at ``nr_to_reclaim`` (``proportional_reclaim``:
        "direct reclaiming implies that kswapd is not keeping up and it is best to do a batch of
        work at once") but scans the whole target; with order-9 page-cache folios each batch takes
        one folio, so an inactive list of 400-500 k pages gives the 2,048-page stalls of the
        kernel's j_pressure_stock trace (four batches, four folios)."""
        zidx = [self.zones.index(z) for z in zones if z.managed]
        proportional = not sc.is_kswapd and sc.priority == DEF_PRIORITY
        if self._nxt is not None:
            # get_scan_count: lruvec_lru_size of the eligible zones >> priority, per list
            t = [sum(self._pages[2 * zi + active] for zi in zidx) >> sc.priority for active in (0, 1)]
            # prepare_scan_control: deactivate when the inactive list is low, or when refaults were
            # activated since the last reclaim ended ("a new workingset is being established")
            may_deactivate = (self._inactive_is_low()
                              or self.vmstat["workingset_activate_file"] != self._refaults_snap)
            reclaimed0 = sc.nr_reclaimed
            while t[0] or t[1]:
                step_scanned = step_reclaimed = step_folios = 0
                for active in (0, 1):  # for_each_evictable_lru: inactive file, then active file
                    nr = min(t[active], SWAP_CLUSTER_MAX)
                    if not nr:
                        continue
                    t[active] -= nr
                    if active:
                        if may_deactivate:
                            self._shrink_active_list(nr, sc.reclaim_idx)
                    else:
                        s, r, f = self._shrink_inactive_list(nr, sc)
                        step_scanned += s
                        step_reclaimed += r
                        step_folios += f
                sc.nr_scanned += step_scanned
                sc.nr_reclaimed += step_reclaimed
                self._count_scan(sc, step_scanned, step_reclaimed)
                if step_scanned:
                    yield ReclaimWork(step_scanned, step_reclaimed, 0, step_folios)
                if sc.nr_reclaimed - reclaimed0 >= sc.nr_to_reclaim and not proportional:
                    break  # no anonymous LRU to keep proportional: stop (the kernel's !nr_anon)
        freed = self._shrink_slab(sc.priority)
        if freed:
            sc.nr_reclaimed += freed
            yield ReclaimWork(0, 0, freed)
        if sc.nr_reclaimed:
            self.kswapd_failures = 0

    def _count_scan(self, sc: ScanControl, scanned: int, reclaimed: int) -> None:
        v = self.vmstat
        if sc.is_kswapd:
            v["pgscan_kswapd"] += scanned
            v["pgsteal_kswapd"] += reclaimed
        else:
            v["pgscan_direct"] += scanned
            v["pgsteal_direct"] += reclaimed
        v["pgscan_file"] += scanned
        v["pgsteal_file"] += reclaimed

    def shrink_node(self, zones: list[Zone], nr_to_reclaim: int, priority: int = DEF_PRIORITY,
                    is_kswapd: bool = False) -> int:
        """One ``shrink_node`` pass over ``zones`` at ``priority``; returns pages reclaimed."""
        sc = ScanControl(nr_to_reclaim, 0, max(z.idx for z in zones), is_kswapd)
        sc.priority = priority
        for _ in self._shrink_node_steps(zones, sc):
            pass
        return sc.nr_reclaimed

    # ---------------------------------------------------- direct reclaim
    def _compaction_ready(self, zone: Zone, sc: ScanControl) -> bool:
        """``compaction_ready``: enough free memory for compaction of a costly order; stop reclaiming.

        6.15+: the order already passes min, or ``compaction_suitable`` passes at the high
        watermark (high + compact_gap + (low - min), fragmentation index included)."""
        node = self.node
        if node.zone_watermark_ok(zone, sc.order, zone.wmark(0), sc.reclaim_idx, 0):
            return True
        threshold = getattr(node.compaction, "extfrag_threshold", 500)
        return compaction_suitable(node, zone, sc.order, sc.reclaim_idx, threshold, zone.wmark(2))

    def direct_reclaim(self, node: Node, zonelist: list[Zone], order: int, gfp: int) -> int:
        """``try_to_free_pages`` / ``do_try_to_free_pages``: SWAP_CLUSTER_MAX pages, priority 12 down to 0.

        Returns pages reclaimed, or 1 when nothing was reclaimed because
        compaction is ready for a costly order (as the kernel does).
        """
        if not zonelist:
            self.last_work = ReclaimWork()
            return 0
        # sc.reclaim_idx = gfp_zone(gfp): the request's zone even where the node lacks it
        reclaim_idx = node.highest_zoneidx(gfp) if gfp else max(z.idx for z in zonelist)
        sc = ScanControl(SWAP_CLUSTER_MAX, order, reclaim_idx, False, gfp)
        name = _ZONE_VMSTAT.get(self._zone_name(reclaim_idx), "allocstall_normal")
        self.vmstat[name] += 1
        eligible = [z for z in self.zones if z.idx <= reclaim_idx and z.managed]
        slab = folios = 0
        for priority in range(DEF_PRIORITY, -1, -1):
            sc.priority = priority
            # shrink_zones: the node is shrunk unless every zonelist zone is ready for compaction
            shrink = True
            if order > PAGE_ALLOC_COSTLY_ORDER and node.compaction is not None:
                ready = [self._compaction_ready(z, sc) for z in zonelist if z.managed]
                if any(ready):
                    sc.compaction_ready = True
                shrink = not all(ready)
            if shrink:
                for w in self._shrink_node_steps(eligible, sc):
                    slab += w.slab_freed
                    folios += w.folios
            if sc.nr_reclaimed >= sc.nr_to_reclaim or sc.compaction_ready:
                break
        self.last_work = ReclaimWork(sc.nr_scanned, sc.nr_reclaimed - slab, slab, folios)
        self._refaults_snap = self.vmstat["workingset_activate_file"]  # snapshot_refaults
        if sc.nr_reclaimed:
            return sc.nr_reclaimed
        return 1 if sc.compaction_ready else 0

    def _zone_name(self, idx: int) -> str:
        for z in self.zones:
            if z.idx == idx:
                return z.name
        return "Normal"

    # -------------------------------------------------------------- kswapd
    def balance_pgdat_steps(self, order: int, highest_zoneidx: int) -> Generator[ReclaimWork, None, int]:
        """``balance_pgdat``: kswapd reclaims until the node is balanced; yields the work of each batch.

        Returns the order kswapd stopped reclaiming at (0 after
        ``compact_gap(order)`` pages for a high-order wake-up).
        """
        node = self.node
        v = self.vmstat
        v["pageoutrun"] += 1
        eligible = [z for z in self.zones if z.idx <= highest_zoneidx and z.managed]
        zone_boosts = {id(z): z.watermark_boost for z in eligible}
        nr_boost_reclaim = sum(zone_boosts.values())
        boosted = nr_boost_reclaim
        sc = ScanControl(0, order, highest_zoneidx, True, G.GFP_KERNEL)  # balance_pgdat: .gfp_mask = GFP_KERNEL
        balanced_out = False
        while True:  # restart:
            for z in eligible:
                z.flags |= ZONE_RECLAIM_ACTIVE
            sc.priority = DEF_PRIORITY
            restart = False
            while True:
                reclaimed_before = sc.nr_reclaimed
                raise_priority = True
                balanced = pgdat_balanced(node, sc.order, highest_zoneidx)
                if not balanced and nr_boost_reclaim:
                    nr_boost_reclaim = 0
                    restart = True
                    break
                if not nr_boost_reclaim and balanced:
                    balanced_out = True
                    break
                if nr_boost_reclaim and sc.priority == DEF_PRIORITY - 2:
                    raise_priority = False
                # boosted reclaim does no writeback
                sc.may_writepage = not nr_boost_reclaim
                # kswapd_shrink_node
                sc.nr_to_reclaim = sum(max(z.wmark(2), SWAP_CLUSTER_MAX) for z in eligible)
                scanned_before = sc.nr_scanned
                yield from self._shrink_node_steps(eligible, sc)
                if sc.order and sc.nr_reclaimed >= compact_gap(sc.order):
                    sc.order = 0
                if max(sc.nr_scanned - scanned_before, sc.nr_reclaimed - reclaimed_before) >= sc.nr_to_reclaim:
                    raise_priority = False
                nr_reclaimed = sc.nr_reclaimed - reclaimed_before
                nr_boost_reclaim -= min(nr_boost_reclaim, nr_reclaimed)
                if nr_boost_reclaim and not nr_reclaimed:
                    break
                if raise_priority or not nr_reclaimed:
                    sc.priority -= 1
                if sc.priority < 1:
                    break
            if restart:
                continue
            break
        self._refaults_snap = self.vmstat["workingset_activate_file"]  # snapshot_refaults
        if not balanced_out and not sc.nr_reclaimed:
            self.kswapd_failures += 1
        for z in eligible:
            z.flags &= ~ZONE_RECLAIM_ACTIVE
        if boosted:
            for z in eligible:
                z.watermark_boost -= min(z.watermark_boost, zone_boosts[id(z)])
            if node.compaction is not None:
                node.compaction.wakeup_kcompactd(PAGEBLOCK_ORDER, highest_zoneidx)
        return sc.order

    def balance_pgdat(self, order: int, highest_zoneidx: int) -> int:
        """Run :meth:`balance_pgdat_steps` to the end (no time); returns the reclaim order."""
        steps = self.balance_pgdat_steps(order, highest_zoneidx)
        while True:
            try:
                next(steps)
            except StopIteration as stop:
                return stop.value

    def kswapd_hopeless(self) -> bool:
        """``kswapd_test_hopeless``: MAX_RECLAIM_RETRIES balance runs reclaimed nothing."""
        return self.kswapd_failures >= MAX_RECLAIM_RETRIES

    def prepare_kswapd_sleep(self, order: int, highest_zoneidx: int) -> bool:
        """``prepare_kswapd_sleep``: hopeless, or balanced at ``order``."""
        return self.kswapd_hopeless() or pgdat_balanced(self.node, order, highest_zoneidx)
