"""Throughput of the compaction and reclaim models on a fragmented 4 GiB machine (run by hand).

Fills every zone with order-0 movable pages registered in rmap, frees 3/4 of
every pageblock (the fragmenting pattern of tests/mm/test_compaction.py),
then times a whole-node proactive compaction, and kswapd's balance_pgdat on
page cache.  Targets (this 2-core box, unloaded): >= 0.5 M pfns scanned per
second by the migrate scanner, >= 100 k pages migrated per second, >= 150 k
pages reclaimed per second (about 90 % of reclaim time is the page
allocator's free path, ``free_pages`` -> pcp -> ``__free_one_page``).
"""

from __future__ import annotations

import time

from kmemdes.mm.compaction import Compaction, fragmentation_score_node, run_to_completion
from kmemdes.mm.gfp import MIGRATE_TYPES
from kmemdes.mm.mm_init import build_node, parse_size
from kmemdes.mm.page_alloc import MIGRATE_MOVABLE
from kmemdes.mm.reclaim import Reclaim


class _Owner:
    def migrate_page(self, old, new, order):
        pass


def _occupy(node, owner):
    node.drain_all_pages()
    pages = []
    for zone in node.zones:
        for order in range(10, -1, -1):
            for mt in range(MIGRATE_TYPES):
                for pfn in zone.free_list(order, mt):
                    node.take_block(pfn, order)
                    n = 1 << order
                    node.page_mt[pfn:pfn + n] = bytes((MIGRATE_MOVABLE,)) * n
                    for p in range(pfn, pfn + n):
                        node.alloc_order[p] = 0
                    pages.extend(range(pfn, pfn + n))
    return pages


def main() -> None:
    node = build_node("x86_64", parse_size("4G"), cpus=2)
    comp = Compaction(node)
    owner = _Owner()
    pages = _occupy(node, owner)
    for p in pages:
        if p % 4:
            node.free_pages(p, 0)
        else:
            node.rmap[p] = owner
    node.drain_all_pages()
    print(f"4G machine: {len(pages)} pages, node score {fragmentation_score_node(node)}")
    t = time.perf_counter()
    run_to_completion(comp.proactive_compact_node())
    dt = time.perf_counter() - t
    v = comp.vmstat
    print(f"proactive compaction: {dt:.2f} s, score -> {fragmentation_score_node(node)}, "
          f"{v['compact_migrate_scanned'] / dt / 1e6:.2f} M migrate-scanned pfn/s, "
          f"{v['pgmigrate_success'] / dt / 1e3:.0f} k migrated pages/s "
          f"({v['compact_migrate_scanned']} scanned, {v['pgmigrate_success']} migrated)")

    node = build_node("x86_64", parse_size("4G"), cpus=2)
    rec = Reclaim(node)
    pfns = []
    from kmemdes.mm.gfp import GFP_HIGHUSER_MOVABLE
    while (p := node.alloc_pages(GFP_HIGHUSER_MOVABLE, 0)) >= 0:
        pfns.append(p)
    t = time.perf_counter()
    rec.add_file_pages(pfns, 0, None)
    dt_add = time.perf_counter() - t
    for z in node.zones:
        z.watermark_boost = 4 * z.high_wmark  # make kswapd reclaim a lot
    t = time.perf_counter()
    rec.balance_pgdat(0, 3)
    dt = time.perf_counter() - t
    n = rec.vmstat["pgsteal_kswapd"]
    print(f"page cache: {len(pfns)} pages registered in {dt_add:.2f} s; balance_pgdat reclaimed {n} "
          f"in {dt:.3f} s = {n / dt / 1e3:.0f} k pages/s")


if __name__ == "__main__":
    main()
