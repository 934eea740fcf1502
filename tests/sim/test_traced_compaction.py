"""Mirror replay of the kernel's compaction: the isolated blocks and carved targets leave exactly the
leftovers the kernel released (j_pressure_stock, cat-20284 at 1138.433630-1138.435871)."""

from __future__ import annotations

from kmemdes.mm.gfp import ZoneType
from kmemdes.mm.mm_init import add_zone
from kmemdes.mm.page_alloc import NO_ORDER, PAGE_FREE, Node, Policy, setup_per_zone_wmarks
from kmemdes.sim.traced_compaction import TracedCompaction
from kmemdes.trace.pressure import OP_BEGIN, OP_END, OP_FAST_FREE, OP_ISO_FREE, OP_ISO_MIGRATE, OP_MIGRATE

BASE = 0x5f5800  # a 1024-page region holding the kernel's order-8 block 0x5f5900


def node_with_free_region():
    """pfns [BASE, BASE + 1024) free (one order-10 block), the rest of the small zone in use."""
    node = Node("x86_64", BASE + 1024, cpus=2, policy=Policy(min_free_kbytes=128))
    zone = add_zone(node, "Normal", ZoneType.NORMAL, 2, 0, BASE + 1024, BASE + 1024)
    for pb in range(len(node.pb_valid)):
        node.pb_valid[pb] = 1
        node.pb_mt[pb] = 1
    zone.managed = BASE + 1024
    node.page_mt[BASE:BASE + 1024] = bytes([PAGE_FREE]) * 1024
    node.free_one_page(zone, BASE, 10, to_tail=True)
    setup_per_zone_wmarks(node)
    node.debug = True
    return node, zone


def test_fast_isolation_and_migration_leave_the_kernels_leftovers():
    node, zone = node_with_free_region()
    # split the model's order-10 block so that the kernel's block 0x5f5900 is a free order-8 block of its
    # own, as it was on the kernel's lists
    assert node.take_block(BASE, 8) == 0 and node.take_block(BASE + 0x200, 9) == 0
    node.page_mt[BASE:BASE + 0x100] = b"\x01" * 0x100
    node.page_mt[BASE + 0x200:BASE + 0x400] = b"\x01" * 0x200
    assert zone.free_list(8, 1) == [0x5f5900]
    tc = TracedCompaction(node)
    tc.apply(OP_BEGIN, 0x101a00, 0x63ffff, 0x100000, 0, 20284)
    tc.apply(OP_ISO_MIGRATE, 0x1a7000, 0x1a70e0, 224, 32, 20284)
    # range=(0x3f3800 ~ 0x63ffff) nr_taken=256: one order-8 block at or above low_pfn, from the list tail
    assert tc.apply(OP_FAST_FREE, 0x3f3800, 0x63ffff, 262, 256, 20284) == 0
    run = tc.runs[20284]
    assert list(run.freepages[8]) == [0x5f5900]
    # nr_migrated=32 order-0 sources: 32 targets carved from the lowest pages of the block
    assert tc.apply(OP_MIGRATE, 0, 0, 32, 0, 20284, sources=[0] * 32) == 0
    left = {o: list(q) for o, q in enumerate(run.freepages) if q}
    # the kernel's release frees before mm_compaction_end: 0x5f5920 order 5, 0x5f5940 order 6, 0x5f5980 order 7
    assert left == {5: [0x5f5920], 6: [0x5f5940], 7: [0x5f5980]}
    assert all(node.alloc_order[p] == o for o, ps in left.items() for p in ps)
    assert all(node.page_mt[p] != PAGE_FREE for p in range(0x5f5900, 0x5f5a00))  # held by compaction
    assert tc.targets == 32 and tc.isolated == 256 and tc.not_free == 0
    tc.apply(OP_END, 0x229400, 0x63ffff, 0x100000, 7, 20284)
    assert 20284 not in tc.runs
    node.check()


def test_linear_isolation_takes_the_free_blocks_of_exactly_the_traced_range():
    node, zone = node_with_free_region()
    tc = TracedCompaction(node)
    tc.apply(OP_BEGIN, 0, 0, 0, 0, 1)
    # range=(0x5f5800 ~ 0x5f5900) nr_taken=224 (a made-up count below the range's 256 free pages)
    missing = tc.apply(OP_ISO_FREE, BASE, BASE + 0x100, 256, 224, 1)
    assert missing == 0
    run = tc.runs[1]
    taken = sum(len(q) << o for o, q in enumerate(run.freepages))
    assert taken >= 224 and all(BASE <= p < BASE + 0x100 for q in run.freepages for p in q)
    assert all(node.page_mt[p] == PAGE_FREE for p in range(BASE + 0x100, BASE + 1024))  # nothing outside
    node.check()


def test_pages_the_model_does_not_hold_free_are_counted_not_invented():
    node, zone = node_with_free_region()
    node.take_block(BASE, 10)  # all in use in the model
    node.page_mt[BASE:BASE + 1024] = b"\x01" * 1024
    tc = TracedCompaction(node)
    assert tc.apply(OP_ISO_FREE, BASE, BASE + 0x200, 512, 64, 1) == 64
    assert tc.not_free == 64 and all(node.alloc_order[p] == NO_ORDER for p in range(BASE + 1, BASE + 64))


def _split_to_order0(node, zone, lo, hi):
    """Free pages [lo, hi) as separate order-0 blocks (each with its buddy held in use)."""
    node.take_block(BASE, 10)
    node.page_mt[BASE:BASE + 1024] = b"\x01" * 1024
    for p in range(lo, hi, 2):  # even pfns free, odd ones in use: no two free buddies
        node.alloc_order[p] = NO_ORDER
        node.page_mt[p] = PAGE_FREE
        node.free_one_page(zone, p, 0)


def test_async_free_scanner_looks_at_every_32nd_pfn():
    """isolate_freepages scans with stride COMPACT_CLUSTER_MAX (32) in async mode: over 512 pfns it
    looks at 16 and isolates the free pages it lands on; the traced nr_scanned says which stride."""
    node, zone = node_with_free_region()
    _split_to_order0(node, zone, BASE, BASE + 0x200)
    tc = TracedCompaction(node)
    tc.apply(OP_BEGIN, 0, 0, 0, 0, 1)
    # range=(BASE ~ BASE+0x200) nr_scanned=16 nr_taken=16: the pages at BASE + 32 k
    assert tc.apply(OP_ISO_FREE, BASE, BASE + 0x200, 16, 16, 1) == 0
    assert sorted(tc.runs[1].freepages[0]) == list(range(BASE, BASE + 0x200, 32))
    assert node.page_mt[BASE + 2] == PAGE_FREE  # not on the stride: left free
    node.check()


def test_the_scan_takes_every_free_page_before_where_it_stopped():
    """With stride 1 the kernel's scan isolates every free page up to where the trace says it stopped:
    the model takes them all, also when it holds more free there than the kernel isolated."""
    node, zone = node_with_free_region()
    _split_to_order0(node, zone, BASE, BASE + 0x40)
    tc = TracedCompaction(node)
    tc.apply(OP_BEGIN, 0, 0, 0, 0, 1)
    assert tc.apply(OP_ISO_FREE, BASE, BASE + 0x40, 0x40, 24, 1) == 0  # 32 free in the model, 24 in the kernel
    assert sorted(tc.runs[1].freepages[0]) == list(range(BASE, BASE + 0x40, 2))
    node.check()


def _next_events(frees=(), none=()):
    """A trace's next page events (the replay's ``next_event``): 1 for ``frees``, -1 for ``none``,
    0 (taken next) for every other pfn."""
    import numpy as np

    def next_event(pfns, pos):
        p = np.asarray(pfns, dtype=np.int64)
        out = np.zeros(len(p), dtype=np.int8)
        for lo, hi in frees:
            out[(p >= lo) & (p < hi)] = 1
        for lo, hi in none:
            out[(p >= lo) & (p < hi)] = -1
        return out

    return next_event


def test_fast_isolation_of_a_block_the_model_holds_broken_takes_its_free_pages():
    """The kernel's fast search took the order-8 block 0x5f5900 (its pages are freed next: targets and
    leftovers); in the model one of its pages is in use, so no order-8 block is free there.  The model
    takes the 255 pages it holds free in that range, not the free pages the trace allocates next."""
    node, zone = node_with_free_region()
    assert node.take_block(0x5f5910, 0) == 0
    node.page_mt[0x5f5910] = 1
    assert zone.free_list(8, 1) == [BASE] and zone.free_list(9, 1) == [0x5f5a00]
    assert node.take_block(BASE, 8) == 0  # in use too: no free order-8 block is left in the model
    node.page_mt[BASE:BASE + 0x100] = b"\x01" * 0x100
    tc = TracedCompaction(node, next_event=_next_events(frees=[(0x5f5900, 0x5f5a00)]))
    tc.apply(OP_BEGIN, 0x101a00, 0x63ffff, 0x100000, 0, 7)
    assert tc.apply(OP_FAST_FREE, BASE, BASE + 1024, 262, 256, 7) == 1  # the page in use: counted
    run = tc.runs[7]
    held = sorted(p + i for o, q in enumerate(run.freepages) for p in q for i in range(1 << o))
    assert held == [p for p in range(0x5f5900, 0x5f5a00) if p != 0x5f5910]
    assert all(node.page_mt[p] == PAGE_FREE for p in range(0x5f5a00, BASE + 1024))  # the rest stays free
    node.check()


def test_fast_isolation_prefers_a_page_the_trace_never_names_again_over_one_it_allocates_next():
    """An order-0 target the kernel kept to the end has no later event; a free page that the trace
    allocates next was still on the kernel's free list, so the fast search did not take it."""
    node, zone = node_with_free_region()
    _split_to_order0(node, zone, BASE + 0x100, BASE + 0x104)  # free: +0x100, +0x102
    assert zone.free_list(0, 1)[-1] == BASE + 0x100  # the list's tail: where the search starts
    tc = TracedCompaction(node, next_event=_next_events(none=[(BASE + 0x102, BASE + 0x103)]))
    tc.apply(OP_BEGIN, 0, 0, 0, 0, 3)
    assert tc.apply(OP_FAST_FREE, BASE, BASE + 1024, 4, 1, 3) == 0
    assert list(tc.runs[3].freepages[0]) == [BASE + 0x102]
    assert node.page_mt[BASE + 0x100] == PAGE_FREE
    node.check()
