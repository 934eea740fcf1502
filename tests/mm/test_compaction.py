"""Compaction against the rules of mm/compaction.c (KERNEL.md section 7).

Expected values are derived by hand from the kernel's rules (deferral
arithmetic, compact_gap, the fragmentation index formula, scanner
directions, capture) on machines built with ``build_node``, never read back
from the model.  The scenarios place pages explicitly: every free page of a
zone is taken as an order-0 allocation, then chosen pages are freed.
"""

from __future__ import annotations

import pytest

from kmemdes.mm import frag
from kmemdes.mm import gfp as g
from kmemdes.mm.compaction import (
    COMPACT_COMPLETE,
    COMPACT_DEFERRED,
    COMPACT_MAX_DEFER_SHIFT,
    COMPACT_PARTIAL_SKIPPED,
    COMPACT_SKIPPED,
    COMPACT_SUCCESS,
    MIGRATE_ASYNC,
    MIGRATE_SYNC_LIGHT,
    CompactControl,
    Compaction,
    compact_gap,
    compaction_defer_reset,
    compaction_deferred,
    compaction_restarting,
    compaction_suitable,
    defer_compaction,
    fragmentation_score_node,
    run_to_completion,
)
from kmemdes.mm.mm_init import build_node, parse_size
from kmemdes.mm.page_alloc import (
    ALLOC_WMARK_MIN,
    COMPACT_PRIO_ASYNC,
    COMPACT_PRIO_SYNC_FULL,
    COMPACT_PRIO_SYNC_LIGHT,
    MIGRATE_MOVABLE,
    MIGRATE_UNMOVABLE,
    NOLIST,
    PAGEBLOCK_NR_PAGES,
    PATH_COMPACT,
    PATH_FAILED,
)
from kmemdes.mm.gfp import MIGRATE_TYPES

THP = g.GFP_TRANSHUGE  # movable, direct reclaim, __GFP_IO
# 256M x86_64 machine (mm_init): DMA32 spans pfn 4096..65535; 16 MiB..64 MiB is the kernel image,
# the memmap takes the top 1024 pages, so the buddy pages are 16384..64511 (94 pageblocks)
FIRST_FREE_BLOCK = 16384
TOP_FREE_BLOCK = 64000  # last pageblock with buddy pages
ZONE_END_BLOCK = 65024  # pageblock_start_pfn(zone_end_pfn - 1)


class Owner:
    """A workload's movable pages (head pfn -> order); follows migrations as an rmap walk would."""

    def __init__(self):
        self.pages: dict[int, int] = {}
        self.migrations: list[tuple[int, int, int]] = []

    def migrate_page(self, old: int, new: int, order: int) -> None:
        assert self.pages.pop(old) == order, f"migration of pfn {old:#x} that the owner does not hold"
        self.pages[new] = order
        self.migrations.append((old, new, order))

    def split_folio(self, pfn: int, order: int) -> bool:
        assert self.pages.pop(pfn) == order
        self.pages.update(dict.fromkeys(range(pfn, pfn + (1 << order)), 0))
        return True


class OwnerWithoutSplit(Owner):
    """An owner that cannot follow a split (no ``split_folio``)."""

    split_folio = None


def occupy_zone(node, zone, mt: int, owner: Owner | None = None) -> list[int]:
    """Take every free page of ``zone`` as an order-0 allocation of migratetype ``mt``.

    With an owner the pages are registered in ``node.rmap`` (movable, LRU-like).
    """
    node.drain_all_pages()
    taken = []
    for order in range(10, -1, -1):
        for fmt in range(MIGRATE_TYPES):
            for pfn in zone.free_list(order, fmt):
                assert node.take_block(pfn, order) == 0
                n = 1 << order
                node.page_mt[pfn:pfn + n] = bytes((mt,)) * n
                for p in range(pfn, pfn + n):
                    node.alloc_order[p] = 0
                taken.extend(range(pfn, pfn + n))
    if owner is not None:
        for p in taken:
            node.rmap[p] = owner
            owner.pages[p] = 0
    assert zone.free_pages == 0
    return sorted(taken)


def release(node, pfns, owner: Owner | None = None) -> None:
    """Free order-0 pages (dropping them from the owner and rmap), then drain the pcp lists."""
    for pfn in pfns:
        if owner is not None:
            del node.rmap[pfn]
            del owner.pages[pfn]
        node.free_pages(pfn, 0)
    node.drain_all_pages()


def machine(**kw):
    node = build_node("x86_64", parse_size("256M"), cpus=2)
    comp = Compaction(node, **kw)
    return node, comp, node.zones[0], node.zones[1]


def fragmented(polluted: bool = False, **kw):
    """The fragmenting pattern: DMA32 full of movable registered pages, 3/4 of every pageblock freed.

    Every fourth page is kept, 4k + 3, so the free pieces are an order-1 block at 4k and an order-0
    page at 4k + 2: the free scanner's sampling stride (a power of two from a pageblock start, see
    ``isolate_freepages``) lands on the order-1 blocks.  (Keeping 4k instead would hide every free
    page from a stride of 4 or more, as it would from the kernel's.)
    DMA is taken by unmovable pages so that it cannot serve high orders.
    ``polluted``: one kept page per pageblock is unmovable (no rmap entry).
    """
    node, comp, dma, dma32 = machine(**kw)
    occupy_zone(node, dma, MIGRATE_UNMOVABLE)
    owner = Owner()
    pages = occupy_zone(node, dma32, MIGRATE_MOVABLE, owner)
    release(node, [p for p in pages if p % 4 != 3], owner)
    if polluted:
        for pb in range(FIRST_FREE_BLOCK, TOP_FREE_BLOCK + 1, PAGEBLOCK_NR_PAGES):
            p = pb + 259
            del node.rmap[p]
            del owner.pages[p]
            node.page_mt[p] = MIGRATE_UNMOVABLE
    node.check()
    return node, comp, owner, dma32



def fragmented_page_cache():
    """:func:`fragmented` with its kept pages as page cache instead (a Reclaim model attached; the
    lowest pfns at the inactive tail): returns node, comp, zone and the page-cache pfns."""
    from kmemdes.mm.reclaim import Reclaim

    node, comp, owner, zone = fragmented(pin_fraction=0.0, async_skip_fraction=0.0)
    pfns = sorted(owner.pages)
    for p in pfns:
        del node.rmap[p]
    Reclaim(node).add_file_pages(pfns, 0, owner=None)
    return node, comp, zone, pfns

# --------------------------------------------------------------- deferral
def test_deferral_arithmetic_follows_defer_compaction():
    node, comp, _, zone = machine()
    # struct zone starts zeroed
    assert (zone.compact_considered, zone.compact_defer_shift, zone.compact_order_failed) == (0, 0, 0)
    assert compaction_deferred(zone, 9) is False  # ++considered (1) >= 1 << 0
    assert zone.compact_considered == 1
    defer_compaction(zone, 9)
    assert (zone.compact_considered, zone.compact_defer_shift, zone.compact_order_failed) == (0, 1, 0)
    for shift in range(1, COMPACT_MAX_DEFER_SHIFT + 1):
        if shift > 1:
            defer_compaction(zone, 9)
        assert zone.compact_defer_shift == shift
        answers = [compaction_deferred(zone, 9) for _ in range(1 << shift)]
        # 2^shift - 1 attempts skipped, then one allowed; considered saturates at the limit
        assert answers == [True] * ((1 << shift) - 1) + [False]
        assert zone.compact_considered == 1 << shift
    defer_compaction(zone, 9)  # the shift is capped at COMPACT_MAX_DEFER_SHIFT
    assert zone.compact_defer_shift == 6
    assert sum(compaction_deferred(zone, 9) for _ in range(64)) == 63
    assert compaction_restarting(zone, 9) is True
    compaction_defer_reset(zone, 9, True)  # success: order_failed = order + 1
    assert (zone.compact_considered, zone.compact_defer_shift, zone.compact_order_failed) == (0, 0, 10)
    assert compaction_restarting(zone, 9) is False
    for _ in range(3):  # below order_failed: never deferred, considered untouched
        assert compaction_deferred(zone, 5) is False
    assert zone.compact_considered == 0
    defer_compaction(zone, 5)
    assert (zone.compact_defer_shift, zone.compact_order_failed) == (1, 5)
    compaction_defer_reset(zone, 3, False)  # expected success below order_failed: nothing changes
    assert (zone.compact_defer_shift, zone.compact_order_failed) == (1, 5)
    compaction_defer_reset(zone, 7, False)
    assert (zone.compact_defer_shift, zone.compact_order_failed) == (1, 8)
    assert compaction_deferred(zone, 4) is False and compaction_deferred(zone, 8) is True


# ------------------------------------------------------------ suitability
def _take_down_to(node, zone, target: int) -> None:
    """Allocate (as unmovable) free pages of ``zone`` until exactly ``target`` pages stay free."""
    node.drain_all_pages()
    while zone.free_pages > target:
        excess = zone.free_pages - target
        for order in range(10, -1, -1):
            heads = [p for mt in range(MIGRATE_TYPES) for p in zone.free_list(order, mt)]
            if heads and (1 << order) <= excess:
                pfn, take = heads[0], order
                break
        else:  # only blocks larger than the excess: take one page out of the smallest
            order = next(o for o in range(11) if zone.nr_free[o])
            pfn = next(p for mt in range(MIGRATE_TYPES) for p in zone.free_list(order, mt))
            take = 0
        assert node.take_block(pfn, take) == 0
        n = 1 << take
        node.page_mt[pfn:pfn + n] = bytes((MIGRATE_UNMOVABLE,)) * n
        node.alloc_order[pfn] = take
    assert zone.free_pages == target


@pytest.mark.parametrize("order", [9, 3])
def test_compaction_suitable_needs_watermark_plus_compact_gap(order):
    node, comp, _, zone = machine()
    hz = zone.idx
    # __compaction_suitable: order-0 check against (order > 3 ? low : min) + (2 << order),
    # free strictly greater than mark + lowmem_reserve (0 for the zone's own index)
    mark = (zone._watermark[1] if order > 3 else zone._watermark[0]) + (2 << order)
    assert compact_gap(order) == 2 << order
    _take_down_to(node, zone, mark)
    assert compaction_suitable(node, zone, order, hz) is False
    assert comp.compact_zone_order(zone, order, THP, COMPACT_PRIO_SYNC_LIGHT, ALLOC_WMARK_MIN, hz)[0] in (
        COMPACT_SKIPPED, COMPACT_SUCCESS)
    # one more free page (free memory stays in large blocks: fragindex -1000, "would succeed")
    pfn = next(p for p in range(zone.start_pfn, zone.end_pfn)
               if node.page_mt[p] == MIGRATE_UNMOVABLE and node.alloc_order[p] == 0)
    node.free_pages(pfn, 0)
    node.drain_all_pages()
    assert zone.free_pages == mark + 1
    assert compaction_suitable(node, zone, order, hz) is True


def test_fragindex_at_or_below_extfrag_threshold_is_not_suitable():
    node, comp, dma, zone = machine()
    pages = occupy_zone(node, zone, MIGRATE_UNMOVABLE)
    # free the lower half of 40 pageblocks: 40 free order-8 blocks = 10240 pages, nothing larger
    blocks = range(FIRST_FREE_BLOCK, FIRST_FREE_BLOCK + 40 * PAGEBLOCK_NR_PAGES, PAGEBLOCK_NR_PAGES)
    release(node, [p for b in blocks for p in range(b, b + 256)])
    assert zone.nr_free == [0] * 8 + [40, 0, 0]
    # __fragmentation_index(9) = 1000 - (1000 + 10240 * 1000 / 512) / 40 = 1000 - 21000 / 40 = 475
    assert frag.fragmentation_index(zone.nr_free, 9) == 475
    assert zone.free_pages > zone._watermark[1] + 1024  # the watermark part passes
    assert compaction_suitable(node, zone, 9, zone.idx) is False  # 0 <= 475 <= 500: lack of memory
    assert compaction_suitable(node, zone, 9, zone.idx, extfrag_threshold=474) is True
    assert compaction_suitable(node, zone, 3, zone.idx) is True  # fragindex ignored for order <= 3
    comp.extfrag_threshold = 500
    assert comp.compact_zone_order(zone, 9, THP, COMPACT_PRIO_SYNC_LIGHT, ALLOC_WMARK_MIN, zone.idx)[0] == \
        COMPACT_SKIPPED
    # the same 10240 pages as order-0 pieces: index 1000 - 21000 / 10240 = 998 -> suitable
    node2, _, _, zone2 = machine()
    pages2 = occupy_zone(node2, zone2, MIGRATE_UNMOVABLE)
    release(node2, pages2[1:2 * 10240:2])
    assert zone2.nr_free[0] == 10240 and frag.fragmentation_index(zone2.nr_free, 9) == 998
    assert compaction_suitable(node2, zone2, 9, zone2.idx) is True
    del pages


# --------------------------------------------------------------- scanners
def test_scanners_meet_reset_cached_positions_and_defer():
    node, comp, dma, zone = machine(pin_fraction=0.0, async_skip_fraction=0.0)
    occupy_zone(node, dma, MIGRATE_UNMOVABLE)
    pages = occupy_zone(node, zone, MIGRATE_UNMOVABLE)  # nothing migratable
    release(node, [p for p in pages if p % 4])
    status, captured, cc = comp.compact_zone_order(zone, 9, THP, COMPACT_PRIO_SYNC_FULL, ALLOC_WMARK_MIN, 1)
    assert (status, captured) == (COMPACT_COMPLETE, -1)  # whole-zone pass ended by the scanners meeting
    assert comp.run_summary() == {"direct": {"complete": 1}, "kcompactd": {}}  # as mm_compaction_end prints it
    assert cc.free_pfn >> 9 <= cc.migrate_pfn >> 9
    assert cc.total_migrate_scanned > 0 and cc.nr_migrated == 0
    # reset_cached_positions: migrate at the zone start, free at pageblock_start_pfn(zone_end - 1)
    assert zone.cached_migrate_pfn == zone.start_pfn == 4096
    assert zone.cached_free_pfn == ZONE_END_BLOCK
    # through try_to_compact_pages: a failed sync run defers the zone
    zl = [zone]
    rc, cap = comp.try_to_compact_pages(node, THP, 9, ALLOC_WMARK_MIN, 1, COMPACT_PRIO_SYNC_LIGHT, zl)
    assert rc in (COMPACT_COMPLETE, COMPACT_PARTIAL_SKIPPED) and cap == -1
    assert (zone.compact_defer_shift, zone.compact_considered, zone.compact_order_failed) == (1, 0, 0)
    assert comp.vmstat["compact_stall"] == 1 and comp.vmstat["compact_fail"] == 0
    comp.direct_compact_outcome(node, cap, 9)  # the slow path's freelist retry found nothing either
    assert comp.vmstat["compact_fail"] == 1 and comp.vmstat["compact_success"] == 0
    rc, _ = comp.try_to_compact_pages(node, THP, 9, ALLOC_WMARK_MIN, 1, COMPACT_PRIO_SYNC_LIGHT, zl)
    assert rc == COMPACT_DEFERRED  # considered 1 < 1 << 1
    assert comp.vmstat["compact_deferred"] == 1 and comp.vmstat["compact_stall"] == 2
    # async failures do not defer
    rc, _ = comp.try_to_compact_pages(node, THP, 9, ALLOC_WMARK_MIN, 1, COMPACT_PRIO_ASYNC, zl)
    assert zone.compact_defer_shift == 1
    # GFP_NOIO cannot compact at all
    assert comp.try_to_compact_pages(node, THP & ~g.__GFP_IO, 9, ALLOC_WMARK_MIN, 1,
                                     COMPACT_PRIO_SYNC_FULL, zl) == (COMPACT_SKIPPED, -1)


def test_capture_and_migration_through_rmap():
    node, comp, dma, zone = machine(pin_fraction=0.0, async_skip_fraction=0.0)
    occupy_zone(node, dma, MIGRATE_UNMOVABLE)
    owner = Owner()
    pages = occupy_zone(node, zone, MIGRATE_MOVABLE, owner)
    keep = FIRST_FREE_BLOCK + 5  # the only page left in the first free pageblock
    release(node, [p for p in pages if (p >> 9 == FIRST_FREE_BLOCK >> 9 and p != keep)
                   or (p >> 9 != FIRST_FREE_BLOCK >> 9 and p % 4)], owner)
    assert zone.nr_free[9] == zone.nr_free[10] == 0
    status, captured, cc = comp.compact_zone_order(zone, 9, THP, COMPACT_PRIO_SYNC_LIGHT, ALLOC_WMARK_MIN, 1)
    # fast_find_migrateblock sends the migrate scanner to the block first: its order-8 free block
    # (16640) is on the Movable list and below high_pfn = pageblock_start(4096 + (65024 - 4096) / 2).
    # The free scanner starts a pass (free_pfn = 65024 = compact_init_free_pfn), so
    # fast_isolate_freepages searches the Movable lists of orders 8..0 from their tails for a block
    # at or above low_pfn = pageblock_start(65024 - (65024 - 16896) / 4) = 52736, or at least
    # min_pfn = pageblock_start(65024 - (65024 - 16896) / 2) = 40960.  Orders 8..2 only hold the
    # first block's pieces; the order-1 and order-0 lists were freed in ascending pfn order, so
    # their tails (256 then 128 entries read, the limit halving) hold pfns below 18000.  Nothing
    # found and nothing seen above min_pfn: direct compaction takes the pageblock at min_pfn, and
    # fast_isolate_around (not async) isolates its first free page, 40961.  The freed source sits
    # on the per-CPU list until the scanner leaves the block (check_drain); the drain merges the
    # block to order 9 and compaction_capture takes it.  compact_finished does not look at the
    # capture, so one more round (32 pages of the next block) runs before the post-migration check
    # stops it.
    assert (status, captured) == (COMPACT_SUCCESS, FIRST_FREE_BLOCK)
    assert owner.migrations[0] == (keep, 40960 + 1, 0)
    nxt = FIRST_FREE_BLOCK + PAGEBLOCK_NR_PAGES
    assert [old for old, _, _ in owner.migrations[1:]] == list(range(nxt, nxt + 128, 4))
    assert node.rmap[40960 + 1] is owner and keep not in node.rmap
    assert node.page_mt[40960 + 1] == MIGRATE_MOVABLE and node.alloc_order[40960 + 1] == 0
    assert node.alloc_order[keep] == 0xFF
    # the captured block is off the free lists, still marked free
    blk = range(FIRST_FREE_BLOCK, FIRST_FREE_BLOCK + PAGEBLOCK_NR_PAGES)
    assert all(node.lid[p] == NOLIST for p in blk)
    assert node.page_mt.count(0xFF, blk.start, blk.stop) == PAGEBLOCK_NR_PAGES
    assert node.capc is None
    # the allocator marks it allocated; the state is then consistent
    node.page_mt[blk.start:blk.stop] = bytes((MIGRATE_MOVABLE,)) * PAGEBLOCK_NR_PAGES
    node.alloc_order[blk.start] = 9
    node.check()
    # every owner page is still allocated, movable and mapped in rmap
    assert all(node.rmap[p] is owner and node.alloc_order[p] == 0 and node.page_mt[p] == MIGRATE_MOVABLE
               for p in owner.pages)


def _folio_in_fragmented_zone(owner_cls):
    """:func:`fragmented`'s zone (free pieces of orders 0 and 1 only) with the first free pageblock's
    first four pages made one order-2 folio of an ``owner_cls`` owner, isolated for migration by an
    async direct compaction whose migrate scanner has left that pageblock."""
    node, comp, owner, zone = fragmented(pin_fraction=0.0, async_skip_fraction=0.0)
    folio = FIRST_FREE_BLOCK
    for p, o in ((folio, 1), (folio + 2, 0)):  # the order-1 and order-0 pieces freed there
        assert node.take_block(p, o) == 0
    node.page_mt[folio:folio + 4] = bytes((MIGRATE_MOVABLE,)) * 4
    del node.rmap[folio + 3], owner.pages[folio + 3]
    node.alloc_order[folio:folio + 4] = bytes((2, 0xFF, 0xFF, 0xFF))
    new = owner_cls()
    new.pages, new.migrations = owner.pages, owner.migrations
    for p in owner.pages:
        node.rmap[p] = new
    new.pages[folio] = 2
    node.rmap[folio] = new
    node.check()
    cc = CompactControl(zone, 9, THP, MIGRATE_ASYNC, ALLOC_WMARK_MIN, 1, direct_compaction=True)
    cc.migrate_pfn, cc.free_pfn = FIRST_FREE_BLOCK + PAGEBLOCK_NR_PAGES, ZONE_END_BLOCK
    cc.migratepages, cc.nr_migratepages = [folio], 4
    return node, comp, new, zone, cc, folio


def test_a_large_folio_without_a_target_of_its_order_is_split_and_its_pages_moved():
    # migrate_pages_batch: compaction_alloc finds no order-2 target (the free lists hold orders 0-1,
    # which the free scanner isolates at their order), -ENOMEM for a large folio -> try_split_folio,
    # then the split folios are migrated after the rest, each to an order-0 target
    node, comp, owner, zone, cc, folio = _folio_in_fragmented_zone(Owner)
    assert comp._migrate_pages(cc) == 0  # every page moved: migrate_pages returns 0
    assert [old for old, _, _ in owner.migrations] == [folio, folio + 1, folio + 2, folio + 3]
    assert all(o == 0 for _, _, o in owner.migrations) and cc.nr_migrated == 4 and cc.nr_failed == 0
    assert sorted(cc.pending_free) == [(folio + i, 0) for i in range(4)]
    for _, new, _ in owner.migrations:
        assert node.rmap[new] is owner and node.alloc_order[new] == 0
    assert not any(p in node.rmap for p in range(folio, folio + 4))
    comp._drain_pending(cc)
    comp._release_freepages(cc)
    node.check()


def test_a_folio_its_owner_cannot_split_ends_the_pass_with_enomem():
    node, comp, owner, zone, cc, folio = _folio_in_fragmented_zone(OwnerWithoutSplit)
    assert comp._migrate_pages(cc) == -12  # -ENOMEM: compact_zone ends COMPACT_CONTENDED
    assert owner.migrations == [] and node.alloc_order[folio] == 2 and node.rmap[folio] is owner
    assert cc.nr_migrated == 0 and cc.nr_migratepages == 0
    comp._release_freepages(cc)
    node.check()


def test_slow_path_gets_the_captured_block():
    node, comp, owner, zone = fragmented(pin_fraction=0.0, async_skip_fraction=0.0)
    node.debug = True
    pfn = node.alloc_pages(THP | g.__GFP_RETRY_MAYFAIL, 9)
    assert pfn >= 0 and pfn % PAGEBLOCK_NR_PAGES == 0 and node.last_path == PATH_COMPACT
    assert node.alloc_order[pfn] == 9
    assert comp.vmstat["compact_success"] == 1 and comp.vmstat["compact_stall"] >= 1
    assert zone.compact_order_failed == 10  # compaction_defer_reset(zone, 9, true)


def _movable_zone_with_free(pfns_orders):
    """DMA32 full of movable registered pages, then the given (pfn, order) blocks freed.

    The six lowest pageblocks (16384..19455) are freed too, as order-10 blocks that no search below
    order 9 looks at, so that the zone stays above min + the block (2406 + 1 pages), the watermark
    ``__isolate_free_page`` checks.
    """
    node, comp, dma, zone = machine(pin_fraction=0.0, async_skip_fraction=0.0)
    occupy_zone(node, dma, MIGRATE_UNMOVABLE)
    owner = Owner()
    occupy_zone(node, zone, MIGRATE_MOVABLE, owner)
    release(node, range(FIRST_FREE_BLOCK, FIRST_FREE_BLOCK + 6 * PAGEBLOCK_NR_PAGES), owner)
    assert zone.nr_free[10] == 3 and zone.free_pages == 3072  # they merge to order 10
    for pfn, order in pfns_orders:
        release(node, range(pfn, pfn + (1 << order)), owner)
    node.check()
    return node, comp, owner, zone


@pytest.mark.parametrize("gfp, prios", [
    (THP, [COMPACT_PRIO_ASYNC, COMPACT_PRIO_SYNC_LIGHT]),  # INIT_, then DEF_COMPACT_PRIORITY after reclaim
    (THP | g.__GFP_NORETRY, [COMPACT_PRIO_ASYNC, COMPACT_PRIO_ASYNC]),  # __GFP_NORETRY stays async
    (THP | g.__GFP_NORETRY | g.__GFP_THISNODE, [COMPACT_PRIO_ASYNC]),  # a THP fault's local try only compacts
])
def test_slow_path_compaction_priorities(gfp, prios):
    """__alloc_pages_slowpath: the first compaction runs at INIT_COMPACT_PRIORITY (async), the one
    after direct reclaim at DEF_COMPACT_PRIORITY (sync light) unless __GFP_NORETRY keeps it async
    (the kernel's trace of j_pressure_stock shows GFP_TRANSHUGE at priority=1 81 times)."""
    node, comp, owner, zone = fragmented(polluted=True)
    seen = []
    orig = comp.try_to_compact_pages

    def spy(node_, gfp_, order, flags, hz, prio, zonelist):
        seen.append(prio)
        return orig(node_, gfp_, order, flags, hz, prio, zonelist)

    comp.try_to_compact_pages = spy
    assert node.alloc_pages(gfp, 9) == -1  # polluted blocks: compaction cannot make an order-9 block
    assert seen == prios


def test_fast_isolate_freepages_takes_from_the_free_lists():
    """fast_isolate_freepages: a block in the top quarter of the scan space is taken from the Movable
    free list whatever the pageblock's skip bit; without one, the highest candidate in the top half."""
    # free_pfn 64000, migrate_pfn 16384: distance 47616, low_pfn = pageblock_start(64000 - 11904)
    # = 51712, min_pfn = pageblock_start(64000 - 23808) = 39936; not the start of a pass (free_pfn
    # below compact_init_free_pfn 65024), so limit = max(1, (32 + 1) >> 1) = 16
    for free, taken in (((20001, 45001, 55001), 55001), ((20001, 45001), 45001)):
        node, comp, owner, zone = _movable_zone_with_free([(p, 0) for p in free])
        comp.pb_skip[55001 >> 9] = 1  # the linear scanner would not look at this block
        cc = CompactControl(zone, 9, THP, MIGRATE_ASYNC, direct_compaction=True)
        cc.migrate_pfn, cc.free_pfn, cc.nr_migratepages = 16384, 64000, 1
        comp._isolate_freepages(cc)
        assert list(cc.freepages[0]) == [taken] and cc.nr_freepages == 1
        # only a block at or above low_pfn sets the order the next search starts at; a candidate
        # taken is no failed search either way
        assert cc.search_order == (0 if taken >= 51712 else 8) and cc.fast_search_fail == 0
        assert cc.free_pfn == 64000  # the linear scanner did not run
        assert node.lid[taken] == NOLIST and node.page_mt[taken] == 0xFE  # isolated, reserved
        assert zone.nr_free[0] == len(free) - 1


def test_fast_isolate_freepages_starting_a_pass_moves_the_free_scanner():
    """Starting a pass with no candidate above min_pfn, direct compaction starts the linear
    scanner at min_pfn (``fast_isolate_freepages``'s pessimistic fallback)."""
    node, comp, owner, zone = _movable_zone_with_free([(20001, 0), (20005, 0)])
    cc = CompactControl(zone, 9, THP, MIGRATE_SYNC_LIGHT, direct_compaction=True)
    # free_pfn 65024 = compact_init_free_pfn: a pass starts; migrate_pfn 16896
    # min_pfn = pageblock_start(65024 - (65024 - 16896) / 2) = pageblock_start(40960) = 40960
    cc.migrate_pfn, cc.free_pfn, cc.nr_migratepages = 16896, ZONE_END_BLOCK, 1
    comp._fast_isolate_freepages(cc)
    assert cc.nr_freepages == 0 and cc.fast_search_fail == 1
    assert cc.free_pfn == 40960
    assert zone.nr_free[0] == 2


def test_async_free_scanner_samples_with_a_stride():
    """isolate_freepages_block with the async stride of COMPACT_CLUSTER_MAX looks at every 32nd page:
    a free page at block + 5 is not seen; sync compaction (stride 1) takes it."""
    node, comp, owner, zone = _movable_zone_with_free([(TOP_FREE_BLOCK + 5, 0)])
    cc = CompactControl(zone, 9, THP, MIGRATE_ASYNC, direct_compaction=True)
    cc.nr_migratepages = 1
    assert comp._isolate_freepages_block(cc, TOP_FREE_BLOCK, TOP_FREE_BLOCK + 512, 32) == (0, TOP_FREE_BLOCK + 512)
    assert cc.total_free_scanned == 16
    assert comp._isolate_freepages_block(cc, TOP_FREE_BLOCK, TOP_FREE_BLOCK + 512, 1) == (1, TOP_FREE_BLOCK + 6)
    assert list(cc.freepages[0]) == [TOP_FREE_BLOCK + 5]


def test_fast_find_migrateblock_starts_at_a_block_with_free_pages():
    """fast_find_migrateblock: a pageblock with a free block of order 3..8 on the Movable list below
    high_pfn becomes the migrate scanner's start; a block marked skip is passed over."""
    # migrate_pfn at the zone start 4096, free_pfn 65024: high_pfn =
    # pageblock_start(4096 + (65024 - 4096) / 2) = pageblock_start(34560) = 34304
    for skip in (False, True):
        node, comp, owner, zone = _movable_zone_with_free([(30208, 3), (40960, 4)])
        if skip:
            comp.pb_skip[30208 >> 9] = 1
        cc = CompactControl(zone, 9, THP, MIGRATE_SYNC_LIGHT, direct_compaction=True)
        cc.migrate_pfn, cc.free_pfn = zone.start_pfn, ZONE_END_BLOCK
        pfn = comp._fast_find_migrateblock(cc)
        if not skip:  # 40960 (order 4) is above high_pfn; 30208 (order 3) is taken
            assert (pfn, cc.fast_start_pfn, cc.fast_search_fail) == (30208, 30208, 0)
            assert comp._isolate_migratepages(cc) == 2  # ISOLATE_SUCCESS from that block
            assert all(p >> 9 == 30208 >> 9 for p in cc.migratepages) and len(cc.migratepages) == 32
        else:
            assert (pfn, cc.fast_start_pfn, cc.fast_search_fail) == (zone.start_pfn, 0, 1)


def test_reset_isolation_suitable_samples_blocks_and_keeps_persistent_ones():
    """__reset_isolation_suitable: the zone is walked from both ends (migrate side from 4096 up,
    target side from 65535 down, one pageblock each per step, meeting near 34816); a block marked
    skip is cleared when every 8th page sampled shows an LRU page (source side) or a free buddy
    head (target side); a block one order-9 folio fills keeps its mark (pageblock_skip_persistent)."""
    node, comp, owner, zone = _movable_zone_with_free([(50000, 0)])
    unmovable = 25088  # a block of pages that are not on the LRU
    for p in range(unmovable, unmovable + PAGEBLOCK_NR_PAGES):
        del node.rmap[p]
        del owner.pages[p]
    thp = 40960  # one order-9 folio
    for p in range(thp, thp + PAGEBLOCK_NR_PAGES):
        del node.rmap[p]
        del owner.pages[p]
        node.alloc_order[p] = 0xFF
    node.alloc_order[thp] = 9
    assert comp.mark_persistent_skip() == 1 and comp.pb_skip[thp >> 9] == 1
    for pb in (unmovable, 30208, 49664):
        comp.pb_skip[pb >> 9] = 1
    comp._reset_isolation_suitable(zone)  # no whole-zone pass finished: nothing happens
    assert sum(comp.pb_skip) == 4
    comp._zs(zone).blockskip_flush = True
    comp._reset_isolation_suitable(zone)
    assert comp._zs(zone).blockskip_flush is False
    assert [comp.pb_skip[pb >> 9] for pb in (unmovable, 30208, 49664, thp)] == [1, 0, 0, 1]
    # the lowest block with a sampled LRU page: 19456 (the kernel image and the free blocks below
    # have none); the highest with a sampled buddy head: 50000's block, met from 65535 at step 30
    zs = comp._zs(zone)
    assert zs.init_migrate_pfn == zs.cached_migrate_pfn[0] == zs.cached_migrate_pfn[1] == 19456
    assert zs.init_free_pfn == zone.cached_free_pfn == 65535 - 30 * PAGEBLOCK_NR_PAGES == 50175


def test_async_direct_compaction_skips_blocks_of_other_types():
    """suitable_migration_source: async direct compaction for a movable request skips non-movable blocks."""
    def scenario():
        node, comp, dma, zone = machine(pin_fraction=0.0, async_skip_fraction=0.0)
        occupy_zone(node, dma, MIGRATE_UNMOVABLE)
        owner = Owner()
        pages = occupy_zone(node, zone, MIGRATE_MOVABLE, owner)
        mid = 40448  # pageblocks below: claimed as Unmovable, holding movable pages (3/4 freed)
        for p in pages:
            if p >= mid:  # targets above: Movable blocks of unmovable pages with 1/4 free
                del node.rmap[p]
                del owner.pages[p]
                node.page_mt[p] = MIGRATE_UNMOVABLE
        for pb in range(FIRST_FREE_BLOCK >> 9, mid >> 9):
            node.pb_mt[pb] = MIGRATE_UNMOVABLE
        for p in pages:
            if (p < mid and p % 4) or (p >= mid and p % 4 == 1):
                if p in node.rmap:
                    del node.rmap[p]
                    del owner.pages[p]
                node.free_pages(p, 0)
        node.drain_all_pages()
        node.check()
        return node, comp, owner, zone

    node, comp, owner, zone = scenario()
    status, captured, cc = comp.compact_zone_order(zone, 9, THP, COMPACT_PRIO_ASYNC, ALLOC_WMARK_MIN, 1)
    assert captured == -1 and status != COMPACT_SUCCESS
    assert owner.migrations == [] and cc.nr_migrated == 0 and cc.nr_isolated == 0
    # the Unmovable blocks were not even scanned: at most one pfn per Movable block (skip_on_failure)
    movable_blocks = sum(1 for pb in range(zone.start_pfn >> 9, zone.end_pfn >> 9) if node.pb_mt[pb] == MIGRATE_MOVABLE)
    assert cc.total_migrate_scanned <= movable_blocks

    node, comp, owner, zone = scenario()
    status, captured, cc = comp.compact_zone_order(zone, 9, THP, COMPACT_PRIO_SYNC_LIGHT, ALLOC_WMARK_MIN, 1)
    # sync compaction scans the Unmovable block too: its 128 movable pages move, the block is
    # captured at the drain (plus the kernel's one extra 32-page round from the next block)
    assert (status, captured) == (COMPACT_SUCCESS, FIRST_FREE_BLOCK)
    assert len(owner.migrations) == 128 + 32
    assert all(old >> 9 == FIRST_FREE_BLOCK >> 9 for old, _, _ in owner.migrations[:128])
    assert all(old >> 9 == (FIRST_FREE_BLOCK >> 9) + 1 for old, _, _ in owner.migrations[128:])
    assert all(new >= 40448 for _, new, _ in owner.migrations)


READAHEAD = g.parse_gfp("GFP_NOFS|__GFP_HIGHMEM|__GFP_MOVABLE|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_HARDWALL")


@pytest.mark.parametrize("page_cache, gfp, moves", [
    (False, READAHEAD, True),  # anonymous pages: any context may move them
    (True, THP, True),  # page cache: a __GFP_FS context (GFP_TRANSHUGE has it) may move it
    (True, READAHEAD, False),  # page cache under GFP_NOFS (readahead's mask): isolate_fail
])
def test_gfp_nofs_compaction_moves_anonymous_pages_only(page_cache, gfp, moves):
    """``isolate_migratepages_block``: "Only allow to migrate anonymous pages in GFP_NOFS context
    because those do not depend on fs locks" (``!(cc->gfp_mask & __GFP_FS) && mapping``).  The
    pressure captures show it: k_pressure_defrag's readahead (``cat``, GFP_NOFS) ran 173 direct
    compactions that migrated 544 pages in all, while the THP faults' 60 migrated 25,012."""
    if page_cache:
        node, comp, zone, pfns = fragmented_page_cache()
    else:
        node, comp, owner, zone = fragmented(pin_fraction=0.0, async_skip_fraction=0.0)
    assert gfp & g.__GFP_IO and bool(gfp & g.__GFP_FS) == (gfp == THP)
    status, captured, cc = comp.compact_zone_order(zone, 9, gfp, COMPACT_PRIO_SYNC_LIGHT, ALLOC_WMARK_MIN, 1)
    if moves:
        assert cc.nr_migrated > 0 and COMPACT_SUCCESS in (status,) and captured >= 0
    else:
        # nothing can be isolated: the migrate scanner crosses the zone and meets the free scanner
        assert (cc.nr_migrated, cc.nr_isolated, captured) == (0, 0, -1)
        assert status == COMPACT_COMPLETE
        assert all(node.rmap[p] is node.reclaim for p in pfns)


def test_pinned_pages_fail_migration_and_keep_the_block():
    node, comp, owner, zone = fragmented(pin_fraction=1.0, async_skip_fraction=0.0)
    rc, cap = comp.try_to_compact_pages(node, THP, 9, ALLOC_WMARK_MIN, 1, COMPACT_PRIO_SYNC_FULL, [zone])
    assert cap == -1 and rc == COMPACT_COMPLETE
    assert comp.vmstat["pgmigrate_success"] == 0
    assert comp.vmstat["pgmigrate_fail"] == len(owner.pages)  # every page isolated once, every migration failed
    assert owner.migrations == []
    node.check()


# ----------------------------------------------------------- end to end
def test_sync_compaction_restores_order9_but_not_on_polluted_blocks():
    # (a) the fragmenting pattern on movable pages: kcompactd's SYNC_LIGHT work makes an order-9 block
    node, comp, owner, zone = fragmented()
    assert not node.zone_watermark_ok(zone, 9, zone._watermark[0], zone.idx, 0)
    assert fragmentation_score_node(node) > 90
    assert comp.wakeup_kcompactd(9, zone.idx) is False  # recorded; no daemon sleeping
    assert comp.kcompactd_max_order == 9
    run_to_completion(comp.kcompactd_do_work())
    assert comp.vmstat["compact_daemon_wake"] == 1 and comp.kcompactd_max_order == 0
    # one compact_zone run past the suitability check (mm_compaction_begin / _end), kcompactd's
    assert sum(comp.run_summary()["kcompactd"].values()) == 1 and not comp.run_summary()["direct"]
    assert node.zone_watermark_ok(zone, 9, zone._watermark[0], zone.idx, 0)
    assert node.alloc_pages(THP, 9) >= 0
    node.check()
    # (b) one unmovable page in every pageblock: async direct compaction cannot succeed
    node, comp, owner, zone = fragmented(polluted=True)
    pfn = node.alloc_pages(THP, 9)
    assert pfn == -1 and node.last_path == PATH_FAILED
    assert comp.vmstat["compact_stall"] >= 1 and comp.vmstat["compact_success"] == 0
    # ... and neither can any other mode: the migrate scanner cannot empty a polluted block
    for prio in (COMPACT_PRIO_SYNC_LIGHT, COMPACT_PRIO_SYNC_FULL):
        status, captured, _ = comp.compact_zone_order(zone, 9, THP, prio, ALLOC_WMARK_MIN, 1)
        assert captured == -1 and status != COMPACT_SUCCESS
    assert not node.zone_watermark_ok(zone, 9, zone._watermark[0], zone.idx, 0)
    node.check()


def test_proactive_compaction_stops_at_the_low_score_mark():
    node, comp, owner, zone = fragmented()
    assert frag.fragmentation_score_zone(zone.nr_free) == 100
    cc = CompactControl(zone, -1, g.GFP_KERNEL, MIGRATE_SYNC_LIGHT, whole_zone=True, ignore_skip_hint=True,
                        proactive_compaction=True)
    steps = comp.compact_zone(cc)
    scores = []
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            result = stop.value
            break
        scores.append(frag.fragmentation_score_zone(zone.nr_free))
    low = 100 - comp.proactiveness  # fragmentation_score_wmark(low) = max(100 - 20, 5)
    assert result == COMPACT_SUCCESS
    # the step that got the score down is the last that worked: only the final compact_finished
    # check (one more priced step, no pages moved) comes after it
    first = next(i for i, sc in enumerate(scores) if sc <= low)
    assert low < min(scores[:first]) and len(scores) - first <= 2 and scores[-1] <= low
    assert 0 < cc.nr_migrated < len(owner.pages)  # stopped early, not a whole-zone compaction
    node.check()


def test_proactive_trigger_uses_the_high_score_mark():
    node, comp, owner, zone = fragmented()
    assert comp.should_proactive_compact_node()  # node score > 90
    comp.proactiveness = 0
    assert not comp.should_proactive_compact_node()
    node2, comp2, _, _ = machine()
    assert fragmentation_score_node(node2) <= 90 and not comp2.should_proactive_compact_node()


def test_finish_test_accepts_a_claimable_fallback_block():
    """__compact_finished: an unmovable order-4 request is done once a claimable movable block >= 4 is free.

    Such a block is not captured (compaction_capture keeps movable blocks below pageblock order for
    movable requests), so only the fallback test at the pageblock boundary ends the run: after the
    first pageblock (128 migrated pages), not at the end of the zone.
    """
    node, comp, owner, zone = fragmented(pin_fraction=0.0, async_skip_fraction=0.0)
    status, captured, cc = comp.compact_zone_order(zone, 4, g.GFP_KERNEL, COMPACT_PRIO_SYNC_LIGHT,
                                                   ALLOC_WMARK_MIN, 1)
    assert (status, captured) == (COMPACT_SUCCESS, -1)
    assert cc.nr_migrated == 128
    assert cc.migrate_pfn == FIRST_FREE_BLOCK + PAGEBLOCK_NR_PAGES
    assert zone.free_list_count(4, MIGRATE_UNMOVABLE) == 0 and zone.nr_free[9] == 1


@pytest.mark.parametrize("kw", [{"proactiveness": 101}, {"extfrag_threshold": -1}, {"pin_fraction": 1.5},
                                {"async_skip_fraction": -0.1}])
def test_bad_settings_are_user_errors(kw):
    from kmemdes.errors import KmemdesError
    node = build_node("x86_64", parse_size("64M"), cpus=1)
    with pytest.raises(KmemdesError):
        Compaction(node, **kw)
