"""Reclaim without swap against the rules of mm/vmscan.c (KERNEL.md sections 5-7).

Expected numbers are worked out by hand from the kernel's scan arithmetic
(``lru_size >> priority`` in SWAP_CLUSTER_MAX batches, ``do_shrink_slab``'s
``(freeable >> priority) * 4 / seeks``, ``balance_pgdat``'s boost and
balance rules), not read back from the model.
"""

from __future__ import annotations

import pytest

from kmemdes.errors import KmemdesError
from kmemdes.mm import gfp as g
from kmemdes.mm.compaction import Compaction
from kmemdes.mm.mm_init import build_node, parse_size
from kmemdes.mm.page_alloc import MIGRATE_MOVABLE, MIGRATE_UNMOVABLE, ZONE_RECLAIM_ACTIVE
from kmemdes.mm.reclaim import Reclaim, ReclaimWork, pgdat_balanced
from tests.mm.test_compaction import Owner, fragmented, occupy_zone


class CacheOwner(Owner):
    """A file system's page cache: learns about reclaimed pages."""

    def __init__(self):
        super().__init__()
        self.reclaimed: list[int] = []

    def reclaim_page(self, pfn: int, order: int) -> None:
        self.reclaimed.append(pfn)
        del self.pages[pfn]


def cache_node(nr_pages: int, cpus: int = 1):
    node = build_node("x86_64", parse_size("256M"), cpus=cpus)
    rec = Reclaim(node)
    owner = CacheOwner()
    pfns = [node.alloc_pages(g.GFP_HIGHUSER_MOVABLE, 0) for _ in range(nr_pages)]
    assert min(pfns) >= 0
    rec.add_file_pages(pfns, 0, owner)
    owner.pages.update((p, 0) for p in pfns)
    return node, rec, owner, pfns


def test_page_cache_accounting_and_truncate():
    node, rec, owner, pfns = cache_node(1000)
    dma, dma32 = node.zones
    assert all(node.zone_of(p) is dma32 for p in pfns)  # DMA32 first (zonelist highest first)
    assert rec.nr_file_pages() == 1000 and dma32.reclaimable == 1000 and dma.reclaimable == 0
    assert all(node.rmap[p] is rec for p in pfns)
    free0 = node.nr_free_pages() + sum(z.pcp_count() for z in node.zones)
    rec.remove_file_pages(pfns[:100])
    assert rec.nr_file_pages() == 900 and dma32.reclaimable == 900
    assert pfns[0] not in node.rmap and node.page_mt[pfns[0]] == 0xFF
    assert node.nr_free_pages() + sum(z.pcp_count() for z in node.zones) == free0 + 100
    with pytest.raises(KmemdesError):
        rec.remove_file_pages([pfns[0]])
    with pytest.raises(KmemdesError):
        rec.add_file_pages([pfns[0]], 0, owner)  # a free page cannot become page cache
    node.check()


def test_direct_reclaim_takes_32_pages_oldest_first_with_rising_priority():
    node, rec, owner, pfns = cache_node(40000)
    reclaimed = rec.direct_reclaim(node, node._zonelist_for(2), 0, g.GFP_KERNEL)
    # priority 12: 40000 >> 12 = 9 pages; 11: 39991 >> 11 = 19 (28 in all); 10: 39972 >> 10 = 39,
    # whose first 32-page batch brings the total to 60 >= SWAP_CLUSTER_MAX: stop
    assert reclaimed == 60
    v = rec.vmstat
    assert (v["pgscan_direct"], v["pgsteal_direct"], v["pgscan_kswapd"]) == (60, 60, 0)
    assert v["allocstall_normal"] == 1  # counted on gfp_zone(GFP_KERNEL), even without a Normal zone
    assert owner.reclaimed == pfns[:60]  # FIFO: the oldest page cache goes first
    assert rec.last_work == ReclaimWork(60, 60, 0, 60)  # 60 base folios (shrink_folio_list works per folio)
    assert node.zones[1].reclaimable == 40000 - 60
    node.check()


def test_direct_reclaim_at_def_priority_scans_its_whole_target():
    """shrink_lruvec's proportional_reclaim: global direct reclaim at DEF_PRIORITY does not stop at
    nr_to_reclaim (32) but scans the whole lru_size >> 12 target; kswapd stops after the batch
    that reaches its target."""
    node = build_node("x86_64", parse_size("1G"), cpus=1)
    rec = Reclaim(node)
    owner = CacheOwner()
    pfns = [node.alloc_pages(g.GFP_HIGHUSER_MOVABLE, 0) for _ in range(200_000)]
    assert min(pfns) >= 0
    rec.add_file_pages(pfns, 0, owner)
    owner.pages.update((p, 0) for p in pfns)
    # 200000 >> 12 = 48 pages: batches of 32 and 16, both taken although the first reached 32
    assert rec.direct_reclaim(node, node._zonelist_for(2), 0, g.GFP_KERNEL) == 48
    assert owner.reclaimed == pfns[:48]
    # kswapd (not proportional): 199952 >> 12 = 48 again, but it stops after the first 32-page batch
    assert rec.shrink_node([z for z in node.zones if z.managed], 32, is_kswapd=True) == 32
    node.check()


def test_dirty_pages_are_rotated_by_direct_reclaim_and_written_by_kswapd():
    node = build_node("x86_64", parse_size("256M"), cpus=1)
    rec = Reclaim(node)
    dirty = [node.alloc_pages(g.GFP_HIGHUSER_MOVABLE, 0) for _ in range(100)]
    clean = [node.alloc_pages(g.GFP_HIGHUSER_MOVABLE, 0) for _ in range(100)]
    rec.add_file_pages(dirty, 0, None, dirty=True)
    rec.add_file_pages(clean, 0, None)
    zones = node.zones
    # 4 batches of 32 from the tail: 100 dirty rotated + 28 clean freed; a 5th batch frees 32 more
    assert rec.shrink_node(zones, 32, priority=0) == 60
    assert rec.vmstat["pgscan_direct"] == 160 and rec.vmstat["nr_vmscan_write"] == 0
    assert all(rec.is_page_cache(p) for p in dirty)
    # kswapd starts writeback of the dirty pages it meets (pageout); they are reclaimable afterwards
    assert rec.shrink_node(zones, 200, priority=0, is_kswapd=True) == 40
    assert rec.vmstat["nr_vmscan_write"] == 100
    assert rec.shrink_node(zones, 200, priority=0, is_kswapd=True) == 100
    assert rec.nr_file_pages() == 0
    node.check()


def test_accessed_pages_are_activated_and_aged_back():
    node, rec, owner, pfns = cache_node(10)
    for _ in range(2):
        rec.mark_page_accessed(pfns[0])  # referenced, then activated
    zone = node.zones[1]
    assert rec.lru_pages(zone, True) == 1 and rec.vmstat["pgactivate"] == 1
    assert rec.shrink_node(node.zones, 32, priority=0) == 9  # inactive_is_low is false (9 > 1)
    assert rec.is_page_cache(pfns[0]) and rec.vmstat["pgdeactivate"] == 0
    # inactive empty, active 1: inactive_is_low -> the active page is deactivated, reclaimed next pass
    assert rec.shrink_node(node.zones, 32, priority=0) == 0 and rec.vmstat["pgdeactivate"] == 1
    assert rec.shrink_node(node.zones, 32, priority=0) == 1 and rec.nr_file_pages() == 0


def test_pgactivate_counts_pages_as_lru_activate_does():
    """``lru_activate`` counts PGACTIVATE by ``folio_nr_pages``: a 2 MiB page-cache folio activated
    on its second access counts 512, and an active folio is not activated again."""
    node = build_node("x86_64", parse_size("256M"), cpus=1)
    rec = Reclaim(node)
    folio = node.alloc_pages(g.GFP_HIGHUSER_MOVABLE, 9)
    rec.add_file_pages([folio], 9, None)
    rec.mark_page_accessed(folio)
    assert rec.vmstat["pgactivate"] == 0  # referenced only
    rec.mark_page_accessed(folio)
    assert rec.vmstat["pgactivate"] == 512 and rec.lru_pages(node.zone_of(folio), True) == 512
    assert rec.folio_activate(folio) == 0 and rec.vmstat["pgactivate"] == 512
    node.check()


def test_mapped_pages_are_kept_once_then_activated_and_active_ones_start_active():
    """``folio_check_references``: a mapped folio whose page tables reference it is kept
    (FOLIOREF_KEEP, PG_referenced set) the first time reclaim reaches it and activated the second
    (referenced_folio); a folio the start snapshot shows active (KPF_ACTIVE) starts on the active
    list, one shown referenced (KPF_REFERENCED) starts with PG_referenced."""
    node = build_node("x86_64", parse_size("256M"), cpus=1)
    rec = Reclaim(node)
    pages = [node.alloc_pages(g.GFP_HIGHUSER_MOVABLE, 0) for _ in range(40)]
    mapped, mapped_ref, active, plain = pages[:10], pages[10:15], pages[15:20], pages[20:]
    rec.add_file_pages(mapped, 0, None, mapped=True)  # the oldest: at the inactive tail
    rec.add_file_pages(mapped_ref, 0, None, mapped=True, referenced=True)
    rec.add_file_pages(active, 0, None, active=True)
    rec.add_file_pages(plain, 0, None)
    zone = node.zones[1]
    assert (rec.lru_pages(zone, False), rec.lru_pages(zone, True)) == (35, 5)
    # priority 0 scans all 35 inactive pages (batches of 32 and 3): the 10 mapped are kept (now
    # referenced) at the inactive head, the 5 mapped and referenced activated, the 20 plain reclaimed
    assert rec.shrink_node(node.zones, 32, priority=0) == 20
    assert rec.vmstat["pgactivate"] == 5 and (rec.lru_pages(zone, False), rec.lru_pages(zone, True)) == (10, 10)
    assert all(rec.is_page_cache(p) for p in mapped + mapped_ref + active)
    # the next pass: the 10 kept pages come round still referenced and are activated, nothing is
    # reclaimed (inactive_is_low was false when the pass began: 10 inactive, 10 active)
    assert rec.shrink_node(node.zones, 32, priority=0) == 0
    assert rec.vmstat["pgactivate"] == 15 and rec.vmstat["pgdeactivate"] == 0
    assert (rec.lru_pages(zone, False), rec.lru_pages(zone, True)) == (0, 20)
    node.check()

def test_shrinker_scan_follows_do_shrink_slab():
    node = build_node("x86_64", parse_size("256M"), cpus=1)
    rec = Reclaim(node)
    pool = {"pages": 1000}

    def count():
        return pool["pages"]

    def scan(nr):
        freed = min(nr, pool["pages"])
        pool["pages"] -= freed
        return freed

    rec.register_shrinker("dentry", count, scan)
    got = rec.direct_reclaim(node, node._zonelist_for(2), 0, g.GFP_KERNEL)
    # (freeable >> prio) * 4 / 2 per priority: 12..10 give 0; 9: (1000 >> 9) * 2 = 2;
    # 8: (998 >> 8) * 2 = 6; 7: (992 >> 7) * 2 = 14; 6: (978 >> 6) * 2 = 30 -> 52 >= 32: stop
    assert got == 52 and rec.vmstat["slabs_scanned"] == 52 and pool["pages"] == 948
    assert rec.last_work == ReclaimWork(0, 0, 52)


def test_direct_reclaim_stops_when_compaction_is_ready():
    node, comp, owner, zone = fragmented()
    rec = Reclaim(node)
    cache = sorted(owner.pages)[:1000]
    rec.add_file_pages(cache, 0, owner)
    # free pages far above high + compact_gap(9) and fragindex ~1000: compaction_ready, return 1
    assert zone.free_pages > zone._watermark[2] + 1024
    assert rec.direct_reclaim(node, [zone], 9, g.GFP_KERNEL | g.__GFP_DMA32) == 1
    assert rec.vmstat["pgscan_direct"] == 0 and rec.vmstat["allocstall_dma32"] == 1
    # an order-0 request does reclaim
    assert rec.direct_reclaim(node, [zone], 0, g.GFP_KERNEL | g.__GFP_DMA32) >= 32


def test_boosted_kswapd_reclaims_the_boost_and_clears_it():
    node, rec, owner, pfns = cache_node(40000)
    comp = Compaction(node)
    dma, zone = node.zones
    zone.watermark_boost = 512
    assert pgdat_balanced(node, 0, zone.idx)  # already above high + boost
    order = rec.balance_pgdat(0, zone.idx)
    # balanced but boosted: reclaim nr_boost_reclaim = 512 pages (priority held at DEF_PRIORITY - 2,
    # 39xxx >> 10 = 39 pages per pass), then drop the boost and wake kcompactd at pageblock order
    stolen = rec.vmstat["pgsteal_kswapd"]
    assert order == 0 and 512 <= stolen < 512 + (40000 >> 10)
    assert zone.watermark_boost == 0
    assert comp.kcompactd_max_order == 9
    assert not zone.flags & ZONE_RECLAIM_ACTIVE and rec.vmstat["pageoutrun"] == 1
    node.check()


def test_kswapd_reclaims_until_a_zone_meets_high_plus_boost():
    node = build_node("x86_64", parse_size("256M"), cpus=1)
    pfns = []
    while (p := node.alloc_pages(g.GFP_HIGHUSER_MOVABLE, 0)) >= 0:  # fill to the min watermarks
        pfns.append(p)
    rec = Reclaim(node)
    rec.add_file_pages(pfns, 0, None)
    dma, zone = node.zones
    zone.watermark_boost = 1024
    boost = {id(dma): 0, id(zone): 1024}
    hz = zone.idx

    def balanced():  # pgdat_balanced by hand: free > high + boost + lowmem_reserve[hz], any zone
        return any(z.free_pages - z.nr_free_highatomic > z._watermark[2] + boost[id(z)] + z.lowmem_reserve[hz]
                   for z in node.zones)

    assert not balanced()
    assert rec.balance_pgdat(0, hz) == 0
    assert balanced() and zone.watermark_boost == 0
    assert rec.vmstat["pgsteal_kswapd"] > 0 and rec.kswapd_failures == 0
    node.check()


def test_high_order_kswapd_falls_back_to_order0_after_compact_gap():
    node = build_node("x86_64", parse_size("256M"), cpus=1)
    rec = Reclaim(node)
    dma, zone = node.zones
    cache = []
    for z in node.zones:  # every other page is page cache, the rest unmovable: reclaim frees lone pages
        pages = occupy_zone(node, z, MIGRATE_UNMOVABLE)
        for p in pages[::2]:
            node.page_mt[p] = MIGRATE_MOVABLE
            cache.append(p)
    rec.add_file_pages(cache, 0, None)
    assert rec.balance_pgdat(9, zone.idx) == 0  # never balanced at order 9: dropped to order 0
    assert rec.vmstat["pgsteal_kswapd"] >= 1024  # compact_gap(9) = 2 << 9
    assert zone.nr_free[1:] == [0] * 10 and dma.nr_free[1:] == [0] * 10
    assert pgdat_balanced(node, 0, zone.idx)
    node.check()


def test_kswapd_failures_make_the_node_hopeless():
    node = build_node("x86_64", parse_size("256M"), cpus=1)
    while node.alloc_pages(g.GFP_KERNEL, 0) >= 0:  # unmovable, nothing reclaimable
        pass
    rec = Reclaim(node)
    for i in range(16):
        assert not rec.kswapd_hopeless()
        rec.balance_pgdat(0, 1)
    assert rec.kswapd_failures == 16 and rec.kswapd_hopeless() and rec.prepare_kswapd_sleep(0, 1)


def test_compaction_migrates_page_cache_and_the_lru_follows():
    node, comp, owner, zone = fragmented(pin_fraction=0.0, async_skip_fraction=0.0)
    rec = Reclaim(node)
    cache = CacheOwner()
    pfns = sorted(owner.pages)
    for p in pfns:  # hand the pages over to the page cache (the reclaim model proxies rmap)
        del node.rmap[p]
    owner.pages.clear()
    rec.add_file_pages(pfns, 0, cache)
    cache.pages.update((p, 0) for p in pfns)
    rc, captured = comp.try_to_compact_pages(node, g.GFP_TRANSHUGE, 9, 0, zone.idx, 1, [zone])
    assert captured >= 0 and cache.migrations
    moved = {new for _, new, _ in cache.migrations}
    assert all(rec.is_page_cache(p) and node.rmap[p] is rec for p in moved)
    assert rec.nr_file_pages() == len(pfns) == zone.reclaimable
    # reclaim order is still the insertion order, with migrated pages in their old places
    order = [p for p in pfns]
    for old, new, _ in cache.migrations:
        order[order.index(old)] = new
    got = rec.shrink_node([zone], len(pfns), priority=0)
    assert got == len(pfns) and cache.reclaimed == order


def test_a_split_page_cache_folio_keeps_its_place_and_flags_and_its_pages_go_one_by_one():
    # __split_folio_to_order + lru_add_split_folio: the tail pages join the list beside the folio
    # (list_add_tail(&new->lru, &folio->lru)) with its flags; reclaim then frees them one page each
    node = build_node("x86_64", parse_size("256M"), cpus=1)
    rec = Reclaim(node)
    cache = CacheOwner()
    older = node.alloc_pages(g.GFP_HIGHUSER_MOVABLE, 0)
    folio = node.alloc_pages(g.GFP_HIGHUSER_MOVABLE, 2)
    newer = node.alloc_pages(g.GFP_HIGHUSER_MOVABLE, 0)
    rec.add_file_pages([older, folio, newer], [0, 2, 0], cache)
    cache.pages.update({older: 0, folio: 2, newer: 0})
    rec.mark_page_accessed(folio)  # PG_referenced
    zone = node.zone_of(folio)
    before = zone.reclaimable
    cache.split_folio = None  # an owner that cannot follow a split: nothing is done
    assert rec.split_folio(folio, 2) is False
    assert rec.lru_pages(zone, False) == 6 and node.rmap[folio] is rec and cache.pages[folio] == 2
    del cache.split_folio  # Owner.split_folio: the pages become the owner's base pages
    assert rec.split_folio(folio, 2) is True
    node.alloc_order[folio:folio + 4] = bytes(4)  # the node's side of the split (Compaction.split_folio)
    for p in range(folio + 1, folio + 4):
        node.rmap[p] = rec
    assert zone.reclaimable == before and rec.lru_pages(zone, False) == 6
    assert all(rec.is_page_cache(p) for p in range(folio, folio + 4))
    # oldest first: the page added first, then the folio's pages (their flags say referenced:
    # unmapped clean page cache is freed all the same), then the newest
    assert rec.shrink_node([zone], 6, priority=0) == 6
    assert cache.reclaimed[0] == older and sorted(cache.reclaimed[1:5]) == list(range(folio, folio + 4))
    assert cache.reclaimed[5] == newer
    node.check()


def test_defrag_mode_balances_on_free_pageblocks_only():
    node, comp, owner, zone = fragmented()  # 36096 free pages, all in order-0 and order-1 blocks
    assert zone.nr_free[1] > 0 and sum(zone.nr_free[9:]) == 0
    assert pgdat_balanced(node, 1, zone.idx)  # an order-1 block and free > high
    node.policy.defrag_mode = True
    # 6.15+ defrag_mode: for order > 0 the high watermark must be met in whole free pageblocks
    # (NR_FREE_PAGES_BLOCKS), which are none here; order 0 still counts every free page
    assert not pgdat_balanced(node, 1, zone.idx)
    assert pgdat_balanced(node, 0, zone.idx)


def _two_zone_cache(first_dma: bool):
    """Page cache in both zones of a 256 MiB node: 100 DMA pages and 400 DMA32 pages, one zone's
    pages added (older) before the other's."""
    node = build_node("x86_64", parse_size("256M"), cpus=1)
    rec = Reclaim(node)
    owner = CacheOwner()
    dma_pfns = [node.alloc_pages(g.GFP_DMA | g.__GFP_MOVABLE, 0) for _ in range(100)]
    dma32_pfns = [node.alloc_pages(g.GFP_HIGHUSER_MOVABLE, 0) for _ in range(400)]
    assert all(node.zone_of(p) is node.zones[0] for p in dma_pfns)
    assert all(node.zone_of(p) is node.zones[1] for p in dma32_pfns)
    for pfns in ((dma_pfns, dma32_pfns) if first_dma else (dma32_pfns, dma_pfns)):
        rec.add_file_pages(pfns, 0, owner)
        owner.pages.update((p, 0) for p in pfns)
    return node, rec, owner, dma_pfns, dma32_pfns


def test_one_node_lru_reclaims_the_oldest_page_cache_whatever_its_zone():
    # mm/vmscan.c since 4.8 ("mm, vmscan: move LRU lists to node"): one lruvec per node, so
    # reclaim takes the oldest folios of every eligible zone in age order, not a share per zone
    node, rec, owner, dma_pfns, dma32_pfns = _two_zone_cache(first_dma=True)
    assert rec.shrink_node(node.zones, 32, priority=0) == 32  # one SWAP_CLUSTER_MAX batch
    assert owner.reclaimed == dma_pfns[:32]  # the oldest 32: all in DMA, none of the younger DMA32
    dma, dma32 = node.zones
    assert (dma.reclaimable, dma32.reclaimable) == (68, 400)
    assert (rec.lru_pages(dma, False), rec.lru_pages(dma32, False)) == (68, 400)
    node.check()


def test_folios_of_zones_above_reclaim_idx_are_skipped_and_go_to_the_head():
    # isolate_lru_folios: a folio of a zone above sc->reclaim_idx is not isolated nor counted as
    # scanned; the skipped folios are spliced back to the head of the list (the youngest end)
    node, rec, owner, dma_pfns, dma32_pfns = _two_zone_cache(first_dma=False)
    dma, dma32 = node.zones
    assert rec.shrink_node([dma], 32, priority=0) == 32  # reclaim_idx = ZONE_DMA
    assert owner.reclaimed == dma_pfns[:32] and dma32.reclaimable == 400
    assert rec.vmstat["pgscan_file"] == 32  # the skipped DMA32 pages were not counted as scanned
    # the 400 skipped DMA32 pages are now younger than the DMA pages left: a node-wide reclaim
    # takes those 68 DMA pages first
    assert rec.shrink_node(node.zones, 68, priority=0) >= 68
    assert owner.reclaimed[32:100] == dma_pfns[32:]
    node.check()


def test_page_cache_known_to_be_oldest_goes_to_the_inactive_tail():
    # a page the kernel's own reclaim took was at its inactive tail (isolate_lru_folios takes from
    # the tail): added with oldest=True it is the next folio the model's reclaim takes
    node, rec, owner, pfns = cache_node(100)
    extra = node.alloc_pages(g.GFP_HIGHUSER_MOVABLE, 0)
    rec.add_file_pages([extra], 0, owner, oldest=True)
    owner.pages[extra] = 0
    assert rec.shrink_node(node.zones, 1, priority=0) == 32  # one SWAP_CLUSTER_MAX batch
    assert owner.reclaimed == [extra] + pfns[:31]
    node.check()


def test_a_recent_refault_starts_active_and_a_distant_one_inactive():
    """mm/workingset.c: the refault distance is the pages evicted or activated since the eviction
    (``nonresident_age``); within the active file list (no swap: ``NR_ACTIVE_FILE``) the refaulting
    folio starts active, counted by ``workingset_activate_file`` but not ``pgactivate``."""
    node, rec, owner, pfns = cache_node(40)
    for p in pfns[:4]:
        rec.mark_page_accessed(p)
        rec.mark_page_accessed(p)  # 4 active pages; the clock ages by 4
    assert rec.nonresident_age == 4
    assert rec.shrink_node(node.zones, 32, priority=0) == 32  # 36 inactive: the 32 oldest evicted
    assert rec.nonresident_age == 36 and rec.vmstat["pgactivate"] == 4
    # two of the evicted pages come back (refaults) at new pfns
    a, b = (node.alloc_pages(g.GFP_HIGHUSER_MOVABLE, 0) for _ in range(2))
    rec.add_file_pages([a, b], 0, owner)
    owner.pages.update({a: 0, b: 0})
    assert rec.workingset_refault(a, 36 - 4)  # distance 4 <= 4 active pages
    assert not rec.workingset_refault(b, 36 - 6)  # distance 6 + 1 (a's activation aged it) > 5 active
    zone = node.zone_of(a)
    assert rec.lru_pages(zone, True) == 5
    assert rec.vmstat["workingset_refault_file"] == 2 and rec.vmstat["workingset_activate_file"] == 1
    assert rec.vmstat["pgactivate"] == 4 and rec.nonresident_age == 37


def test_refault_activations_make_the_next_reclaim_deactivate():
    """``prepare_scan_control``: the active list is aged when the inactive one is low, or when refaults
    were activated since the last reclaim ended (``snapshot_refaults``), "a new workingset is being
    established"."""
    node, rec, owner, pfns = cache_node(64)
    for p in pfns[:16]:
        rec.mark_page_accessed(p)
        rec.mark_page_accessed(p)  # 16 active, 48 inactive: inactive_is_low is false (48 > 16)
    zone = node.zones[1]
    rec.direct_reclaim(node, node.zones, 0, g.GFP_KERNEL)
    assert rec.vmstat["pgdeactivate"] == 0
    new = node.alloc_pages(g.GFP_HIGHUSER_MOVABLE, 0)
    rec.add_file_pages([new], 0, owner)
    owner.pages[new] = 0
    assert rec.workingset_refault(new, rec.nonresident_age)  # distance 0: activated
    active = rec.lru_pages(zone, True)
    rec.direct_reclaim(node, node.zones, 0, g.GFP_KERNEL)
    assert rec.vmstat["pgdeactivate"] > 0 and rec.lru_pages(zone, True) < active
    # the snapshot was taken at the end of that reclaim: no new refault, no more aging
    before = rec.vmstat["pgdeactivate"]
    rec.direct_reclaim(node, node.zones, 0, g.GFP_KERNEL)
    assert rec.vmstat["pgdeactivate"] == before
