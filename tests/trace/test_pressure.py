"""Compaction and vmscan events typed: fields as the real 6.18 kernel printed them (j_pressure_stock lines)."""

from __future__ import annotations

import polars as pl
import pytest

from kmemdes.trace.pressure import (
    BY_COMPACTION,
    BY_RECLAIM,
    BY_WORKLOAD,
    COMPACT_STATUS,
    OP_BEGIN,
    OP_DR_END,
    OP_END,
    OP_FAST_FREE,
    OP_ISO_FREE,
    OP_ISO_MIGRATE,
    OP_KSWAPD_WAKE,
    OP_MIGRATE,
    OP_ACTIVATE,
    OP_TRY,
    compaction_attempts,
    decided_by_kernel,
    kernel_ops,
)
from kmemdes.trace.reader import read_trace
from kmemdes.trace.schema import EventKind

# lines of ../shared/traces/j_pressure_stock/trace.txt.zst (cat-20284 direct compaction at 1138.433565)
LINES = """\
             cat-20284   [001] .....  1138.433565: mm_compaction_try_to_compact_pages: order=9 gfp_mask=GFP_NOFS|__GFP_HIGHMEM|__GFP_MOVABLE|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_HARDWALL priority=2
         kswapd0-47      [000] .....  1138.433567: mm_vmscan_kswapd_wake: nid=0 order=9
             cat-20284   [001] .....  1138.433568: mm_compaction_begin: zone_start=0x100000 migrate_pfn=0x101a00 free_pfn=0x63ffff zone_end=0x640000, mode=async
             cat-20284   [001] .....  1138.433628: mm_compaction_isolate_migratepages: range=(0x1a7000 ~ 0x1a70e0) nr_scanned=224 nr_taken=32
             cat-20284   [001] .....  1138.433630: mm_compaction_fast_isolate_freepages: range=(0x3f3800 ~ 0x63ffff) nr_scanned=262 nr_taken=256
         kswapd0-47      [000] .....  1138.433647: mm_page_free: page=ffffea0008391200 pfn=0x20e448 order=0
             cat-20284   [001] .....  1138.433709: mm_page_free: page=ffffea00069c37c0 pfn=0x1a70df order=0
             cat-20284   [001] .....  1138.434269: mm_compaction_migratepages: nr_migrated=32 nr_failed=0
             cat-20284   [001] .....  1138.435870: mm_page_free: page=ffffea0017d64800 pfn=0x5f5920 order=5
             cat-20284   [001] .....  1138.435872: mm_compaction_end: zone_start=0x100000 migrate_pfn=0x229400 free_pfn=0x63ffff zone_end=0x640000, mode=async status=contended
             cat-20284   [001] .....  1138.435876: mm_vmscan_direct_reclaim_begin: order=9 gfp_flags=GFP_NOFS|__GFP_HIGHMEM|__GFP_MOVABLE|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_HARDWALL
             cat-20284   [001] .....  1138.435900: mm_page_free: page=ffffea0017d64800 pfn=0x5f5a00 order=0
             cat-20284   [001] .....  1138.435957: mm_vmscan_direct_reclaim_end: nr_reclaimed=1
             cat-20284   [001] .....  1138.436000: mm_page_free: page=ffffea0017d64800 pfn=0x5f5a01 order=0
             cat-20284   [001] .....  1138.537895: mm_compaction_isolate_freepages: range=(0x581e00 ~ 0x581f00) nr_scanned=256 nr_taken=224
"""


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    p = tmp_path_factory.mktemp("pressure") / "trace.txt"
    p.write_text("# tracer: nop\n" + LINES)
    return read_trace(p).events


def test_ops_carry_the_printed_fields(events):
    ops = kernel_ops(events.with_row_index("seq"), "seq")
    got = {int(r["op"]): (r["a"], r["b"], r["n1"], r["n2"]) for r in ops.iter_rows(named=True)}
    assert got[OP_TRY] == (0, 0, 9, 2)
    assert got[OP_KSWAPD_WAKE][2] == 9
    assert got[OP_BEGIN] == (0x101a00, 0x63ffff, 0x100000, 0)  # mode=async
    assert got[OP_ISO_MIGRATE] == (0x1a7000, 0x1a70e0, 224, 32)
    assert got[OP_FAST_FREE] == (0x3f3800, 0x63ffff, 262, 256)
    assert got[OP_MIGRATE][2:] == (32, 0)
    assert got[OP_END] == (0x229400, 0x63ffff, 0x100000, COMPACT_STATUS["contended"])
    assert got[OP_DR_END][2] == 1
    assert got[OP_ISO_FREE] == (0x581e00, 0x581f00, 256, 224)
    # one op per compaction / vmscan line of the list above, none for the page events
    assert ops.height == sum(1 for line in LINES.splitlines() if "mm_page_free" not in line)
    assert set(ops["pid"].to_list()) == {20284, 47}


# pagemap's mm_lru_activate as the 6.18 kernel printed it (traces/lru_reread: cat reading a file again)
ACTIVATE = "             cat-1027    [001] d..2. 18735.730944: mm_lru_activate: folio=ffffea000f08a040 pfn=0x3c2281\n"


def test_an_activation_names_the_folios_pfn(tmp_path):
    p = tmp_path / "trace.txt"
    p.write_text("# tracer: nop\n" + ACTIVATE)
    t = read_trace(p)
    ev = t.events
    assert ev["kind"].to_list() == [int(EventKind.LRU)] and not t.problems  # a known event, not "unknown_event"
    ops = kernel_ops(ev.with_row_index("seq"), "seq")
    assert ops.select("op", "a").rows() == [(OP_ACTIVATE, 0x3c2281)]


def test_frees_inside_reclaim_and_compaction_are_the_kernels(events):
    ev = events.with_row_index("seq")
    ops = kernel_ops(ev, "seq")
    dec = ev.with_columns(decided=decided_by_kernel(ev, ops)).filter(pl.col("event") == "mm_page_free")
    by_pfn = dict(zip(dec["pfn"].to_list(), dec["decided"].to_list()))
    assert by_pfn[0x20e448] == BY_RECLAIM  # kswapd's
    assert by_pfn[0x1a70df] == BY_COMPACTION  # a migrated source, inside begin..end
    assert by_pfn[0x5f5920] == BY_COMPACTION  # an isolated block released before mm_compaction_end
    assert by_pfn[0x5f5a00] == BY_RECLAIM  # inside direct_reclaim_begin..end
    assert by_pfn[0x5f5a01] == BY_WORKLOAD  # after direct_reclaim_end


# k_pressure_defrag's cat-21687 at 1157.816: a readahead compaction of Normal runs to the end without a
# block, and the free-list retry gets one (from DMA32, which kswapd had refilled meanwhile); at 1157.541
# the zone was deferred and the request failed; then kswapd's and kcompactd's own events, which belong
# to no attempt
ATTEMPTS = """\
             cat-21687   [001] .....  1157.541882: mm_compaction_try_to_compact_pages: order=9 gfp_mask=GFP_NOFS|__GFP_HIGHMEM|__GFP_MOVABLE|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_HARDWALL priority=2
             cat-21687   [001] .....  1157.541883: mm_compaction_deferred: node=0 zone=Normal   order=9 order_failed=9 consider=1 limit=2
             cat-21687   [001] .....  1157.541885: mm_page_alloc: page=0000000000000000 pfn=0x0 order=9 migratetype=1 gfp_flags=GFP_NOFS|__GFP_HIGHMEM|__GFP_MOVABLE|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_HARDWALL
      kcompactd0-37      [000] .....  1157.634652: mm_compaction_deferred: node=0 zone=Normal   order=9 order_failed=9 consider=2 limit=4
             cat-21687   [000] .....  1157.816420: mm_compaction_try_to_compact_pages: order=9 gfp_mask=GFP_NOFS|__GFP_HIGHMEM|__GFP_MOVABLE|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_HARDWALL priority=2
             cat-21687   [000] .....  1157.816421: mm_compaction_suitable: node=0 zone=Normal   order=9 ret=continue
             cat-21687   [000] .....  1157.816422: mm_compaction_begin: zone_start=0x100000 migrate_pfn=0x100000 free_pfn=0x63fe00 zone_end=0x640000, mode=async
         kswapd0-47      [000] .....  1157.817501: mm_vmscan_kswapd_wake: nid=0 order=9
             cat-21687   [000] .....  1157.817955: mm_compaction_end: zone_start=0x100000 migrate_pfn=0x63fe00 free_pfn=0x63fe00 zone_end=0x640000, mode=async status=complete
             cat-21687   [000] .....  1157.817956: mm_compaction_defer_reset: node=0 zone=DMA32    order=9 order_failed=10 consider=0 limit=1
             cat-21687   [000] .....  1157.817958: mm_page_alloc: page=ffffea0002778000 pfn=0x9de00 order=9 migratetype=1 gfp_flags=GFP_NOFS|__GFP_HIGHMEM|__GFP_MOVABLE|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_HARDWALL
"""


def test_compaction_attempts_and_what_they_gave(tmp_path, events):
    from kmemdes.mm import gfp as G

    p = tmp_path / "trace.txt"
    p.write_text("# tracer: nop\n" + ATTEMPTS)
    got = compaction_attempts(read_trace(p).events)
    ra = G.parse_gfp("GFP_NOFS|__GFP_HIGHMEM|__GFP_MOVABLE|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_HARDWALL")
    assert got == [(ra, 9, "deferred", False), (ra, 9, "complete", True)]
    # j's cat-20284: a contended run, then direct reclaim: no page from the compaction
    assert [a[2:] for a in compaction_attempts(events)] == [("contended", False)]
