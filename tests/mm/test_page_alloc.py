"""The buddy allocator model against the rules of mm/page_alloc.c (KERNEL.md sections 3-6, 19).

Expected values come from the kernel's rules and the reference machine's /proc
files, never from the model's own output.
"""

from __future__ import annotations

import pytest

from kmemdes.errors import KmemdesError
from kmemdes.mm import gfp as g
from kmemdes.mm.mm_init import add_zone, build_node, parse_size
from kmemdes.mm.page_alloc import (
    ALLOC_HIGHATOMIC,
    ALLOC_MIN_RESERVE,
    ALLOC_NOFRAGMENT,
    ALLOC_NON_BLOCK,
    ALLOC_OOM,
    ALLOC_WMARK_LOW,
    MIGRATE_HIGHATOMIC,
    MIGRATE_ISOLATE,
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    NR_PCP_LISTS,
    PAGEBLOCK_NR_PAGES,
    PATH_FAILED,
    PATH_PCP,
    PATH_PCP_REFILL,
    PATH_STEAL,
    Node,
    Policy,
    setup_per_zone_wmarks,
)
from kmemdes.mm.gfp import ZoneType

GFP_KERNEL = g.GFP_KERNEL
GFP_ATOMIC = g.GFP_ATOMIC
GFP_HIGHUSER_MOVABLE = g.GFP_HIGHUSER_MOVABLE
GFP_KERNEL_RECLAIMABLE = g.GFP_KERNEL | g.__GFP_RECLAIMABLE


def one_zone_node(nr_pages: int = 8192, free: list[tuple[int, int]] | None = None,
                  types: dict[int, int] | None = None, policy: Policy | None = None) -> Node:
    """A node with one Normal zone [0, nr_pages) and no DMA32 (so no ALLOC_NOFRAGMENT).

    ``free``: (pfn, order) blocks given to the buddy allocator at the list tails, in order;
    ``types``: pageblock index -> migratetype (default Movable).
    """
    node = Node("x86_64", nr_pages, cpus=1, policy=policy or Policy(min_free_kbytes=128))
    zone = add_zone(node, "Normal", ZoneType.NORMAL, 2, 0, nr_pages, nr_pages)
    for pb, mt in (types or {}).items():
        node.pb_mt[pb] = mt
    for pb in range(nr_pages // PAGEBLOCK_NR_PAGES):
        node.pb_valid[pb] = 1
    for pfn, order in free if free is not None else [(p, 10) for p in range(0, nr_pages, 1024)]:
        node.page_mt[pfn:pfn + (1 << order)] = b"\xff" * (1 << order)
        zone.managed += 1 << order
        node.free_one_page(zone, pfn, order, to_tail=True)
    setup_per_zone_wmarks(node)
    for z in node.zones:  # watermarks out of the way unless a test sets them
        z._watermark = [0, 0, 0, 0]
    node.debug = True
    node.check()
    return node


def lists(node: Node, order: int, mt: int) -> list[int]:
    return node.zones[0].free_list(order, mt)


# ---------------------------------------------------------------- split & free

def test_rmqueue_smallest_splits_keeping_the_lowest_piece_and_queueing_upper_halves_at_heads():
    # KERNEL.md 3 / 19.1: order 0 from an order-3 block at P returns P and queues P+4 (o2), P+2 (o1), P+1 (o0)
    P = 1024
    node = one_zone_node(2048, free=[(P, 3)], types={2: MIGRATE_UNMOVABLE})
    zone = node.zones[0]
    assert node._rmqueue_smallest(zone, 0, MIGRATE_UNMOVABLE) == P
    assert lists(node, 2, MIGRATE_UNMOVABLE) == [P + 4]
    assert lists(node, 1, MIGRATE_UNMOVABLE) == [P + 2]
    assert lists(node, 0, MIGRATE_UNMOVABLE) == [P + 1]
    # repeated order-0 takes from one block give ascending pfns (real traces: P+1, P+2, P+3 ...)
    taken = [node._rmqueue_smallest(zone, 0, MIGRATE_UNMOVABLE) for _ in range(7)]
    assert taken == [P + 1, P + 2, P + 3, P + 4, P + 5, P + 6, P + 7]
    assert node._rmqueue_smallest(zone, 0, MIGRATE_UNMOVABLE) == -1


def test_rmqueue_smallest_takes_the_head_and_only_the_requested_type():
    node = one_zone_node(4096, free=[(1024, 2), (2048, 2), (3072, 2)],
                         types={2: MIGRATE_UNMOVABLE, 4: MIGRATE_UNMOVABLE})
    zone = node.zones[0]
    # boot frees go to the tail: the list is 1024, 2048 (unmovable) and 3072 is movable
    assert lists(node, 2, MIGRATE_UNMOVABLE) == [1024, 2048]
    assert node._rmqueue_smallest(zone, 2, MIGRATE_UNMOVABLE) == 1024
    assert node._rmqueue_smallest(zone, 2, MIGRATE_UNMOVABLE) == 2048
    assert node._rmqueue_smallest(zone, 2, MIGRATE_UNMOVABLE) == -1
    assert node._rmqueue_smallest(zone, 2, MIGRATE_MOVABLE) == 3072


def test_free_merges_with_buddy_pfn_xor_and_the_merged_block_starts_at_pfn_and_buddy():
    node = one_zone_node(2048, free=[])
    zone = node.zones[0]
    node.page_mt[0:1024] = bytes([MIGRATE_MOVABLE]) * 1024
    zone.managed = 1024
    # free 0..7 as order 0 except 5; then free 5: everything merges into one order-3 block at 0
    for pfn in (0, 1, 2, 3, 4, 6, 7):
        node.page_mt[pfn] = 0xFF
        node._free_one_page(zone, pfn, 0, MIGRATE_MOVABLE)
    assert zone.nr_free[:3] == [1, 1, 1]  # 4 (o0), 6 (o1), 0 (o2)
    assert lists(node, 2, MIGRATE_MOVABLE) == [0] and lists(node, 1, MIGRATE_MOVABLE) == [6]
    node.page_mt[5] = 0xFF
    node._free_one_page(zone, 5, 0, MIGRATE_MOVABLE)
    assert lists(node, 3, MIGRATE_MOVABLE) == [0]
    assert zone.nr_free[:3] == [0, 0, 0] and zone.free_pages == 8
    node.check()


def test_free_goes_to_the_tail_when_the_parent_buddy_is_free():
    # buddy_merge_likely: an order-o block whose order-(o+1) parent's buddy is free goes to the tail
    node = one_zone_node(2048, free=[(0, 1), (4, 2)])
    zone = node.zones[0]
    # freeing pfn 3 (buddy 2 not free): parent of 3 at order 1 is 2..3; its buddy 0..1 is a free order-1 block
    node.page_mt[3] = 0xFF
    node._free_one_page(zone, 3, 0, MIGRATE_MOVABLE)
    node.page_mt[16] = 0xFF  # pfn 16: parent 16..17 whose buddy 18..19 is allocated -> head
    node._free_one_page(zone, 16, 0, MIGRATE_MOVABLE)
    assert lists(node, 0, MIGRATE_MOVABLE) == [16, 3]
    node.check()


def test_free_at_max_order_never_merges_and_order_9_merging_retypes_the_buddy():
    node = one_zone_node(4096, free=[(512, 9)], types={1: MIGRATE_UNMOVABLE})
    zone = node.zones[0]
    node.page_mt[0:512] = b"\xff" * 512
    zone.managed += 512
    node._free_one_page(zone, 0, 9, MIGRATE_MOVABLE)  # freed into a movable pageblock
    # buddy (pfn 512, unmovable pageblock) adopts the freed type; result is one order-10 movable block
    assert lists(node, 10, MIGRATE_MOVABLE)[0] == 0 or 0 in lists(node, 10, MIGRATE_MOVABLE)
    assert node.pb_mt[1] == MIGRATE_MOVABLE


@pytest.mark.parametrize("other", [MIGRATE_HIGHATOMIC, MIGRATE_ISOLATE])
def test_highatomic_and_isolate_pageblocks_never_merge_with_others_at_order_9(other):
    node = one_zone_node(2048, free=[(512, 9)], types={1: other})
    zone = node.zones[0]
    node.page_mt[0:512] = b"\xff" * 512
    node._free_one_page(zone, 0, 9, MIGRATE_MOVABLE)
    assert zone.nr_free[9] == 2 and zone.nr_free[10] == 0
    assert node.pb_mt[1] == other


def test_free_of_a_block_larger_than_a_pageblock_goes_back_one_pageblock_at_a_time():
    node = one_zone_node(2048, free=[], types={1: MIGRATE_UNMOVABLE})
    zone = node.zones[0]
    node.page_mt[0:1024] = b"\x01" * 1024
    zone.managed = 1024
    # split_large_buddy: pageblock 0 is freed as movable, then pageblock 1 as unmovable; the
    # second merges with its free buddy, which adopts the freed type: one unmovable order-10 block
    node.free_pages(0, 10)
    assert lists(node, 10, MIGRATE_UNMOVABLE) == [0] and zone.nr_free[9] == 0
    assert node.pb_mt[0] == node.pb_mt[1] == MIGRATE_UNMOVABLE


# ---------------------------------------------------------------- fallback

def test_unmovable_claim_of_an_order_10_movable_block_retypes_two_pageblocks():
    # KERNEL.md 19.3 / real trace: alloc_order=0 fallback_order=10 alloc_mt=0 fallback_mt=1
    # fragmenting=0 change_ownership=1, and no zone_locked line for that page
    node = one_zone_node(4096)
    zone = node.zones[0]
    zl = node.nr_zone_locked
    pfn = node._rmqueue(zone, 0, MIGRATE_UNMOVABLE, ALLOC_WMARK_LOW, [0])
    assert pfn == 0
    assert node.pb_mt[0] == MIGRATE_UNMOVABLE and node.pb_mt[1] == MIGRATE_UNMOVABLE
    assert node.pb_mt[2] == MIGRATE_MOVABLE
    assert node.extfrag == {(MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, "claim", 0): 1}
    assert node.nr_zone_locked == zl
    # the rest of the block went onto the unmovable lists: o9..o0 upper halves
    assert [zone.free_list_count(o, MIGRATE_UNMOVABLE) for o in range(10)] == [1] * 10
    # and the next take is a plain __rmqueue_smallest (zone_locked), pfn 1
    assert node._rmqueue(zone, 0, MIGRATE_UNMOVABLE, ALLOC_WMARK_LOW, [0]) == 1
    assert node.nr_zone_locked == zl + 1


def test_claim_takes_the_largest_fallback_block():
    node = one_zone_node(4096, free=[(2048, 10), (16, 2)], types={0: MIGRATE_MOVABLE})
    zone = node.zones[0]
    assert node._rmqueue(zone, 0, MIGRATE_RECLAIMABLE, ALLOC_WMARK_LOW, [0]) == 2048


def test_partial_claim_moves_the_free_pages_retypes_and_boosts_the_watermark():
    # An order-4 movable free block in a pageblock whose other pages are free or unmovable
    # (alike for an unmovable request): free + alike >= 256 -> claim the pageblock.
    free = [(0, 4), (64, 6), (128, 7)]  # 16 + 64 + 128 = 208 free pages in pageblock 0
    node = one_zone_node(4 * 512 + 512, free=free)
    zone = node.zones[0]
    zone.managed = 5 * 512
    zone._watermark = [0, 0, 1000, 1000]
    # the other 304 pages of pageblock 0 are allocated and not movable (slab, say)
    for s, e in ((16, 64), (256, 512)):
        node.page_mt[s:e] = bytes([MIGRATE_UNMOVABLE]) * (e - s)
    pfn = node._rmqueue_claim(zone, 0, MIGRATE_UNMOVABLE, ALLOC_WMARK_LOW)
    assert pfn == 0  # largest fallback block is order 7 at 128; the claim then takes the smallest: 0
    assert node.pb_mt[0] == MIGRATE_UNMOVABLE
    assert zone.free_by_mt[MIGRATE_MOVABLE] == 0
    assert node.extfrag == {(MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, "claim", 1): 1}
    # boost_watermark: min(boost + 512, max(512, high * 15000 // 10000))
    assert zone.watermark_boost == 512
    node.page_mt[0] = MIGRATE_UNMOVABLE  # what alloc_pages marks for the caller
    node.check()


def test_partial_claim_refused_below_half_a_pageblock_then_steal():
    free = [(0, 4)]  # 16 free pages; 496 movable (LRU) pages: not alike for an unmovable request
    node = one_zone_node(1024, free=free)
    zone = node.zones[0]
    node.page_mt[16:512] = bytes([MIGRATE_MOVABLE]) * 496
    assert node._rmqueue_claim(zone, 0, MIGRATE_UNMOVABLE, ALLOC_WMARK_LOW) == -1
    pfn = node._rmqueue(zone, 0, MIGRATE_UNMOVABLE, ALLOC_WMARK_LOW, [0])
    assert pfn == 0 and node.last_path == PATH_STEAL
    assert node.pb_mt[0] == MIGRATE_MOVABLE  # steal: no retype
    # remainder stays on the fallback type's lists (freelist hygiene)
    assert zone.free_by_mt[MIGRATE_MOVABLE] == 15
    assert (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, "steal", 1) in node.extfrag


def test_movable_small_requests_claim_only_blocks_of_order_4_and_up_else_steal_the_smallest():
    # should_try_claim_block: fallback blocks below order 4 are not claimed for movable requests;
    # the claim scan stops there (-2) and the steal scans up from the requested order
    node = one_zone_node(4096, free=[(1024, 2), (2048, 3)],
                         types={2: MIGRATE_UNMOVABLE, 4: MIGRATE_UNMOVABLE})
    zone = node.zones[0]
    pfn = node._rmqueue(zone, 1, MIGRATE_MOVABLE, ALLOC_WMARK_LOW, [0])
    assert pfn == 1024 and node.last_path == PATH_STEAL
    assert node.pb_mt[2] == MIGRATE_UNMOVABLE
    # a fallback block of order >= 4 is claimed even for a movable order-1 request
    node2 = one_zone_node(4096, free=[(0, 10), (2048, 3)],
                          types={0: MIGRATE_UNMOVABLE, 1: MIGRATE_UNMOVABLE, 4: MIGRATE_UNMOVABLE})
    assert node2._rmqueue(node2.zones[0], 1, MIGRATE_MOVABLE, ALLOC_WMARK_LOW, [0]) == 0
    assert node2.pb_mt[0] == node2.pb_mt[1] == MIGRATE_MOVABLE


def test_nofragment_first_pass_claims_only_whole_pageblocks():
    free = [(0, 8), (1024, 10)]
    node = one_zone_node(2048, free=free, types={0: MIGRATE_MOVABLE})
    zone = node.zones[0]
    node.page_mt[256:512] = bytes([MIGRATE_UNMOVABLE]) * 256
    # with NOFRAGMENT the order-8 block (more than half free+alike) is not considered
    pfn = node._rmqueue(zone, 0, MIGRATE_UNMOVABLE, ALLOC_WMARK_LOW | ALLOC_NOFRAGMENT, [0])
    assert pfn == 1024 and node.pb_mt[2] == MIGRATE_UNMOVABLE


def test_nofragment_never_steals():
    node = one_zone_node(1024, free=[(0, 4)])
    zone = node.zones[0]
    node.page_mt[16:512] = bytes([MIGRATE_MOVABLE]) * 496
    assert node._rmqueue(zone, 0, MIGRATE_UNMOVABLE, ALLOC_WMARK_LOW | ALLOC_NOFRAGMENT, [0]) == -1


def test_fallback_table_is_the_6_18_order():
    from kmemdes.mm.page_alloc import FALLBACKS

    assert FALLBACKS[MIGRATE_UNMOVABLE] == (MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE)
    assert FALLBACKS[MIGRATE_MOVABLE] == (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE)
    assert FALLBACKS[MIGRATE_RECLAIMABLE] == (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE)


def test_reclaimable_request_prefers_unmovable_blocks():
    node = one_zone_node(4096, free=[(0, 10), (1024, 10)], types={2: MIGRATE_UNMOVABLE, 3: MIGRATE_UNMOVABLE})
    zone = node.zones[0]
    assert node._rmqueue(zone, 0, MIGRATE_RECLAIMABLE, ALLOC_WMARK_LOW, [0]) == 1024
    assert node.extfrag == {(MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE, "claim", 0): 1}


def test_strict_defrag_mode_fails_instead_of_stealing_without_reclaim():
    # defrag_mode: NOFRAGMENT kept; with no reclaim/compaction model attached the final
    # "last resort" pass may still fall back (kernel: after reclaim and compaction failed)
    free = [(0, 4)]
    node = one_zone_node(1024, free=free, policy=Policy(min_free_kbytes=128, defrag_mode=True))
    node.page_mt[16:512] = bytes([MIGRATE_MOVABLE]) * 496
    # GFP_ATOMIC cannot reclaim and never reaches the last resort: it fails
    assert node.alloc_pages(GFP_ATOMIC & ~g.__GFP_HIGH, 0) == -1
    # GFP_KERNEL reaches the last resort pass and steals
    node2 = one_zone_node(1024, free=free, policy=Policy(min_free_kbytes=128, defrag_mode=True))
    node2.page_mt[16:512] = bytes([MIGRATE_MOVABLE]) * 496
    assert node2.alloc_pages(GFP_KERNEL, 0) == 0


def test_default_policy_steals_on_the_fast_path_when_nofragment_pass_fails():
    free = [(0, 4)]
    node = one_zone_node(1024, free=free)
    node.page_mt[16:512] = bytes([MIGRATE_MOVABLE]) * 496
    assert node.alloc_pages(GFP_ATOMIC & ~g.__GFP_HIGH, 0) == 0


# ---------------------------------------------------------------- pcp

def test_pcp_refill_appends_nr_pcp_alloc_blocks_in_take_order_and_pops_the_first():
    # KERNEL.md 19.4: refill = n zone_locked takes with ascending pfns, mm_page_alloc of the first
    node = build_node("x86_64", parse_size("24G"), cpus=2)
    normal = node.zones[2]
    pcp = normal.pcp[0]
    zl = node.nr_zone_locked
    pfn = node.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, cpu=0)
    assert node.last_path == PATH_PCP_REFILL
    # nr_pcp_alloc: high = high_min, batch 63 << alloc_factor 0; high += batch; cap = high - count - batch
    taken = node.nr_zone_locked - zl
    assert taken == min(63, max(pcp.high_min + 63 - 0 - 63, 63))
    lid = pcp.lid0 + node.order_to_pindex(MIGRATE_MOVABLE, 0)
    rest = list(node._walk(lid))
    assert rest == list(range(pfn + 1, pfn + taken))  # ascending, in take order, first one popped
    assert pcp.count == taken - 1
    # next allocation is a pcp hit, LIFO head
    assert node.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, cpu=0) == pfn + 1
    assert node.last_path == PATH_PCP


def test_pcp_is_lifo_on_free():
    node = build_node("x86_64", parse_size("2G"), cpus=1)
    a = node.alloc_pages(GFP_KERNEL, 0)
    b = node.alloc_pages(GFP_KERNEL, 0)
    node.free_pages(a, 0)
    node.free_pages(b, 0)
    assert node.alloc_pages(GFP_KERNEL, 0) == b
    assert node.alloc_pages(GFP_KERNEL, 0) == a


def test_pcp_orders_are_0_to_3_and_9():
    node = build_node("x86_64", parse_size("2G"), cpus=1)
    for order, via_pcp in ((0, True), (3, True), (4, False), (8, False), (9, True), (10, False)):
        node.alloc_pages(GFP_HIGHUSER_MOVABLE, order)
        assert (node.last_path in (PATH_PCP, PATH_PCP_REFILL)) == via_pcp, order


def test_pcp_flush_when_count_reaches_high_drains_from_list_tails():
    node = build_node("x86_64", parse_size("2G"), cpus=1)
    z = node.zones[1]
    pcp = z.pcp[0]
    pcp.high_min = pcp.high_max = pcp.high = 8  # fixed high (percpu_pagelist_high_fraction)
    pcp.batch = 4
    pfns = [node.alloc_pages(GFP_KERNEL, 0) for _ in range(12)]
    node.drain_all_pages()
    drained = node.nr_pcpu_drain
    for p in pfns[:7]:
        node.free_pages(p, 0)
    assert pcp.count == 7 and node.nr_pcpu_drain == drained
    node.free_pages(pfns[7], 0)  # count 8 >= high 8: nr_pcp_free = clamp(free_count, batch, high - batch)
    # free_count after 8 frees = 8 -> min(max(8, 4), 8 - 4) = 4 pages drained from the tail
    assert node.nr_pcpu_drain - drained == 4
    lid = pcp.lid0 + node.order_to_pindex(MIGRATE_UNMOVABLE, 0)
    assert list(node._walk(lid)) == [pfns[7], pfns[6], pfns[5], pfns[4]]


def test_pcp_limits_follow_zone_batchsize_and_zone_highsize():
    # zoneinfo of the 6.18 reference: DMA batch 1 / high_min 33 / high_max 240,
    # DMA32 63 / 6785 / 48307, Normal 63 / 3740 / 26624 (2 CPUs)
    node = reference_node(425984)
    got = {z.name: (z.pcp[0].batch, z.pcp[0].high_min, z.pcp[0].high_max) for z in node.zones}
    assert got == {"DMA": (1, 33, 240), "DMA32": (63, 6785, 48307), "Normal": (63, 3740, 26624)}
    assert len(node.zones[0].pcp) == 2
    node2 = reference_node(1081344)
    assert (node2.zones[2].pcp[0].high_min, node2.zones[2].pcp[0].high_max) == (6145, 67584)


def test_decay_lowers_high_by_an_eighth_and_drains_the_excess():
    node = build_node("x86_64", parse_size("2G"), cpus=1)
    z = node.zones[1]
    pcp = z.pcp[0]
    pfns = [node.alloc_pages(GFP_KERNEL, 0) for _ in range(200)]
    node.drain_all_pages()
    pcp.high = pcp.high_min + 800
    for p in pfns:
        node.free_pages(p, 0)
    count, high = pcp.count, pcp.high
    node.decay_pcp_high(z, 0)
    expect_high = max(count - (pcp.batch << 5), high - high // 8, pcp.high_min)
    assert pcp.high == expect_high
    assert pcp.count == min(count, expect_high)


# ---------------------------------------------------------------- watermarks

def reference_node(normal_managed: int) -> Node:
    """Zones with the managed counts of the 6.18 reference machine (THP madvise, 2 CPUs)."""
    node = Node("x86_64", 0x100000 + 5505024, cpus=2, policy=Policy(thp_enabled="madvise"))
    for name, zt, idx, start, spanned, present, managed in (
            ("DMA", ZoneType.DMA, 0, 1, 4095, 3998, 3840),
            ("DMA32", ZoneType.DMA32, 1, 0x1000, 1044480, 782336, 772915),
            ("Normal", ZoneType.NORMAL, 2, 0x100000, 5505024, 5505024, normal_managed)):
        z = add_zone(node, name, zt, idx, start, start + spanned, present)
        z.managed = managed
    setup_per_zone_wmarks(node)
    return node


def test_watermarks_and_lowmem_reserve_equal_the_reference_zoneinfo():
    # KERNEL.md 5 worked example (observed zoneinfo of the reference machine)
    node = reference_node(425984)
    assert node.min_free_kbytes == 67584  # raised by THP: 16896 pages
    wm = {z.name: z._watermark for z in node.zones}
    assert wm["Normal"] == [5984, 7480, 8976, 10472]
    assert wm["DMA32"] == [10857, 13571, 16285, 18999]
    assert wm["DMA"] == [53, 66, 79, 92]
    prot = {z.name: z.lowmem_reserve for z in node.zones}
    assert prot == {"DMA": [0, 3019, 4683, 4683, 4683], "DMA32": [0, 0, 1664, 1664, 1664],
                    "Normal": [0, 0, 0, 0, 0]}
    node2 = reference_node(1081344)
    wm2 = {z.name: z._watermark[:3] for z in node2.zones}
    assert wm2 == {"Normal": [9832, 12290, 14748], "DMA32": [7028, 8785, 10542], "DMA": [34, 42, 50]}
    assert node2.zones[0].lowmem_reserve == [0, 3019, 7243, 7243, 7243]


def test_min_free_kbytes_without_thp_is_int_sqrt_of_16_lowmem_kb():
    node = Node("x86_64", 1 << 20, cpus=1, policy=Policy(thp_enabled="never"))
    z = add_zone(node, "DMA32", ZoneType.DMA32, 1, 0, 1 << 20, 1 << 20)
    z.managed = 1 << 20  # 4 GiB: int_sqrt(16 * 4194304) = 8192
    setup_per_zone_wmarks(node)
    assert node.min_free_kbytes == 8192
    assert z._watermark[0] == 2048


def wm_node(free_pages_blocks, mark=100, reserve=0):
    node = one_zone_node(8192, free=free_pages_blocks)
    z = node.zones[0]
    z._watermark = [mark, mark, mark, mark]
    z.lowmem_reserve = [0, 0, reserve, reserve, 0]
    return node, z


def test_watermark_ok_needs_free_strictly_above_min_plus_reserve():
    node, z = wm_node([(0, 6), (64, 5), (96, 2), (100, 2)])  # 64 + 32 + 4 + 4 = 104 free
    assert not node.zone_watermark_ok(z, 0, 104, 2)
    assert node.zone_watermark_ok(z, 0, 103, 2)
    z.lowmem_reserve[2] = 4
    assert not node.zone_watermark_ok(z, 0, 100, 2)  # 104 <= 100 + 4
    assert node.zone_watermark_ok(z, 0, 99, 2)


def test_watermark_for_order_subtracts_2_pow_order_minus_1_and_needs_a_block():
    node, z = wm_node([(0, 6), (64, 5), (96, 2), (100, 2)])  # 104 free, largest block order 6
    # order 6: free - 63 = 41 > 40; a block of order >= 6 exists
    assert node.zone_watermark_ok(z, 6, 40, 2)
    assert not node.zone_watermark_ok(z, 6, 41, 2)
    # order 7: free - 127 < 0 -> fails whatever the blocks
    assert not node.zone_watermark_ok(z, 7, 0, 2)


def test_watermark_order_check_ignores_highatomic_blocks_unless_allowed():
    node, z = wm_node([(0, 3), (512, 6)])
    node.pb_mt[1] = MIGRATE_HIGHATOMIC
    node._move_freepages_block(z, 512, MIGRATE_HIGHATOMIC)
    node.check()
    # 72 free of which 64 highatomic: without reserves they are not usable at all
    assert not node.zone_watermark_ok(z, 4, 0, 2, 0)
    assert node.zone_watermark_ok(z, 4, 0, 2, ALLOC_HIGHATOMIC)
    assert node.zone_watermark_ok(z, 4, 0, 2, ALLOC_OOM)


def test_atomic_requests_may_go_down_to_three_eighths_of_min():
    node, z = wm_node([(0, 6)])  # 64 free
    flags = ALLOC_MIN_RESERVE | ALLOC_NON_BLOCK
    # min 160: 160 - 80 = 80; 80 - 20 = 60 -> 64 > 60 passes; 0.375 * 160 = 60
    assert node.zone_watermark_ok(z, 0, 160, 2, flags)
    assert not node.zone_watermark_ok(z, 0, 171, 2, flags)  # 171-85=86; 86-21=65 -> 64 <= 65
    assert not node.zone_watermark_ok(z, 0, 160, 2, ALLOC_MIN_RESERVE)  # 80 >= 64


def test_gfp_to_alloc_flags_for_atomic_and_kernel():
    node = one_zone_node(1024)
    f = node.gfp_to_alloc_flags(GFP_ATOMIC, 1)
    assert f & ALLOC_MIN_RESERVE and f & ALLOC_NON_BLOCK and f & ALLOC_HIGHATOMIC
    f0 = node.gfp_to_alloc_flags(GFP_ATOMIC, 0)
    assert not f0 & ALLOC_HIGHATOMIC
    fk = node.gfp_to_alloc_flags(GFP_KERNEL, 3)
    assert not fk & (ALLOC_MIN_RESERVE | ALLOC_NON_BLOCK | ALLOC_HIGHATOMIC)
    fn = node.gfp_to_alloc_flags(g.GFP_NOWAIT, 0)
    assert fn & ALLOC_NON_BLOCK and not fn & ALLOC_MIN_RESERVE


def test_allocation_fails_below_the_watermark_and_atomic_dips_into_reserves():
    node = one_zone_node(2048, free=[(0, 7)])  # 128 free pages
    z = node.zones[0]
    z._watermark = [150, 200, 250, 300]
    assert node.alloc_pages(GFP_KERNEL, 0) == -1
    assert node.last_path == PATH_FAILED
    assert node.kswapd_wakeups >= 1
    # GFP_ATOMIC: min 150 * 0.375 = 56.25 -> 150-75=75, 75-18=57; 128 free > 57
    assert node.alloc_pages(GFP_ATOMIC, 0) >= 0


def test_ALLOC_NOFRAGMENT_is_set_when_the_preferred_zone_is_normal_and_dma32_exists():
    node = build_node("x86_64", parse_size("24G"))
    normal = node.zones[2]
    assert node.alloc_flags_nofragment(normal, GFP_KERNEL) & ALLOC_NOFRAGMENT
    assert not node.alloc_flags_nofragment(node.zones[1], GFP_KERNEL) & ALLOC_NOFRAGMENT
    small = build_node("x86_64", parse_size("2G"))  # no Normal zone
    assert not small.alloc_flags_nofragment(small.zones[-1], GFP_KERNEL) & ALLOC_NOFRAGMENT


def test_zonelist_falls_back_from_normal_to_dma32_to_dma():
    node = build_node("x86_64", parse_size("8G"))
    assert [z.name for z in node._zonelist_for(node.highest_zoneidx(GFP_KERNEL))] == ["Normal", "DMA32", "DMA"]
    assert [z.name for z in node._zonelist_for(node.highest_zoneidx(g.GFP_DMA32))] == ["DMA32", "DMA"]
    assert [z.name for z in node._zonelist_for(node.highest_zoneidx(g.__GFP_DMA))] == ["DMA"]
    pfn = node.alloc_pages(g.GFP_KERNEL | g.__GFP_DMA, 0)
    assert 0 < pfn < 0x1000


def test_highatomic_reserve_after_a_high_order_atomic_success():
    node = build_node("x86_64", parse_size("24G"))
    normal = node.zones[2]
    pfn = node.alloc_pages(GFP_ATOMIC, 2)
    # fast path succeeds without ALLOC_HIGHATOMIC (only the slow path sets it): no reservation
    assert normal.nr_reserved_highatomic == 0 and pfn >= 0
    # through the slow path (fast path refused by a raised low watermark)
    for z in node.zones:
        z._watermark[1] = z.free_pages  # low: fast path fails; min 0 in the slow path
        z._watermark[2] = max(z._watermark[2], z.free_pages)
    pfn = node.alloc_pages(GFP_ATOMIC, 2)
    assert pfn >= 0
    z = node.zone_of(pfn)
    assert node.pb_mt[pfn >> 9] == MIGRATE_HIGHATOMIC
    assert z.nr_reserved_highatomic == PAGEBLOCK_NR_PAGES
    node.check()


def test_orders_above_max_fail_and_warn():
    node = build_node("x86_64", parse_size("1G"))
    assert node.alloc_pages(GFP_KERNEL, 11) == -1
    assert node.nr_warn == 1
    assert node.alloc_pages(GFP_KERNEL | g.__GFP_NOWARN, 11) == -1
    assert node.nr_warn == 1


def test_double_free_is_refused():
    node = build_node("x86_64", parse_size("1G"))
    pfn = node.alloc_pages(GFP_KERNEL, 0)
    node.free_pages(pfn, 0)
    with pytest.raises(KmemdesError, match="double free"):
        node.free_pages(pfn, 0)


# ---------------------------------------------------------------- mirror helpers

def test_take_block_splits_a_larger_free_block_around_the_pfn():
    node = one_zone_node(2048, free=[(0, 10)])
    assert node.take_block(5, 0) == 0
    zone = node.zones[0]
    # pieces of 0..1023 without 5: 0 (o2), 4 (o0), 6 (o1), 8 (o3), 16 (o4) ... 512 (o9)
    assert zone.nr_free == [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]
    assert zone.free_pages == 1023
    node.page_mt[5] = MIGRATE_MOVABLE
    node.check()
    assert node.take_block(5, 0) == -1


def test_take_block_from_a_pcp_list():
    node = build_node("x86_64", parse_size("1G"), cpus=1)
    pfn = node.alloc_pages(GFP_KERNEL, 0)
    nxt = pfn + 1  # on the pcp list after the refill
    assert node.take_block(nxt, 0) == 1
    node.page_mt[nxt] = 0
    node.check()


def test_online_pages_grows_a_zone_with_max_order_blocks_at_the_tail():
    node = one_zone_node(8192, free=[(0, 10)])
    zone = node.zones[0]
    node.page_mt[1024:4096] = b"\xfe" * 3072
    node.online_pages(2048, 2048)
    assert zone.managed == 1024 + 2048
    assert lists(node, 10, MIGRATE_MOVABLE) == [0, 2048, 3072]


def test_machine_memory_arrays_are_flat():
    node = build_node("x86_64", parse_size("8G"))
    per_page = (node.nxt.itemsize + node.prv.itemsize + node.lid.itemsize + 2)
    assert per_page == 12
    assert len(node.nxt) == node.max_pfn and NR_PCP_LISTS == 14


def test_614_fallback_steals_one_page_from_the_largest_block_when_it_cannot_claim():
    # 5.0-6.14 __rmqueue_fallback: the largest fallback block (order 7 here); an unmovable request
    # that cannot claim its pageblock (mostly movable pages) takes a single page from it, and the
    # pageblock stays movable (pollution); 6.15+ would steal from the smallest block (order 2)
    free = [(0, 2), (128, 7)]
    pol = Policy(min_free_kbytes=128, fallback_version="6.14")
    node = one_zone_node(1024, free=free, policy=pol)
    zone = node.zones[0]
    node.page_mt[4:128] = bytes([MIGRATE_MOVABLE]) * 124
    node.page_mt[256:512] = bytes([MIGRATE_MOVABLE]) * 256
    pfn = node._rmqueue(zone, 0, MIGRATE_UNMOVABLE, ALLOC_WMARK_LOW, [0])
    assert pfn == 128 and node.pb_mt[0] == MIGRATE_MOVABLE
    assert node.extfrag == {(MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, "steal", 1): 1}
    node6 = one_zone_node(1024, free=free)
    node6.page_mt[4:128] = bytes([MIGRATE_MOVABLE]) * 124
    node6.page_mt[256:512] = bytes([MIGRATE_MOVABLE]) * 256
    assert node6._rmqueue(node6.zones[0], 0, MIGRATE_UNMOVABLE, ALLOC_WMARK_LOW, [0]) == 0
