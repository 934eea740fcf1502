"""kmemdes/sim/bulk.py: vmalloc's untraced bulk allocations taken off the pcp list at alloc_vmap_area."""

from __future__ import annotations

import polars as pl

from kmemdes.mm import gfp as g
from kmemdes.sim.replay import Replayer
from tests.sim.test_replay import events, small_node


def _trace(rows, sizes):
    """``events(rows)`` with alloc_vmap_area sizes (row -> bytes, guard page included)."""
    ev = events(rows)
    size = [sizes.get(i) for i in range(ev.height)]
    return ev.with_columns(size=pl.Series(size, dtype=pl.Int64), failed=pl.Series([0] * ev.height, dtype=pl.Int8))


def test_untraced_vmalloc_pages_leave_the_pcp_list_at_the_area_allocation():
    node = small_node()
    refill = [("mm_page_alloc_zone_locked", 0, dict(pfn=p, order=0, migratetype=0, percpu_refill=1))
              for p in range(16, 20)]
    # a 3-page area (16 KiB with its guard page): alloc_pages_bulk pops 16, 17, 18 untraced;
    # vfree later frees them (mm_page_free, as in traces/README.md 5.4)
    rows = refill + [("alloc_vmap_area", 0, {})] + [("mm_page_free", 1, dict(pfn=p, order=0)) for p in (16, 17, 18)]
    r = Replayer(node, _trace(rows, {4: 16384}))
    zone = node.zones[0]
    lid = zone.pcp[0].lid0 + node.order_to_pindex(0, 0)
    r.run_until(4000 + 1)  # up to the area
    assert list(node._walk(lid)) == [19] and node.page_mt[16] == 0 and node.alloc_order[16] == 0
    r.run_until(10**9)
    assert r.stats.quirk_pages.get("bulk_alloc_untraced") == 3
    assert "free_after_untraced_bulk_alloc" not in r.stats.quirks and r.stats.replayed == len(rows)
    node.check()


def test_traced_vmalloc_pages_are_not_taken_twice():
    # __GFP_ACCOUNT callers (BPF maps) get one mm_page_alloc per page: no bulk take
    node = small_node()
    gfp = g.parse_gfp("GFP_KERNEL_ACCOUNT|__GFP_HIGHMEM|__GFP_ZERO")
    rows = [("mm_page_alloc_zone_locked", 0, dict(pfn=p, order=0, migratetype=0, percpu_refill=1))
            for p in range(16, 20)]
    rows += [("alloc_vmap_area", 0, {})] + [("mm_page_alloc", 0, dict(pfn=p, order=0, migratetype=0, gfp=gfp))
                                            for p in (16, 17, 18)]
    r = Replayer(node, _trace(rows, {4: 16384}))
    r.run_until(10**9)
    assert "bulk_alloc_untraced" not in r.stats.quirk_pages and r.stats.replayed == len(rows)
    node.check()


def test_pages_a_refill_brings_are_taken_after_it():
    node = small_node()
    rows = [("mm_page_alloc_zone_locked", 0, dict(pfn=16, order=0, migratetype=0, percpu_refill=1)),
            ("alloc_vmap_area", 0, {}),  # 2 pages; the list has one: the bulk allocator refills
            ("mm_page_alloc_zone_locked", 0, dict(pfn=17, order=0, migratetype=0, percpu_refill=1)),
            ("mm_page_alloc_zone_locked", 0, dict(pfn=18, order=0, migratetype=0, percpu_refill=1))]
    r = Replayer(node, _trace(rows, {1: 12288}))
    r.run_until(10**9)
    lid = node.zones[0].pcp[0].lid0 + node.order_to_pindex(0, 0)
    assert list(node._walk(lid)) == [18] and r.stats.quirk_pages["bulk_alloc_untraced"] == 2
    node.check()
