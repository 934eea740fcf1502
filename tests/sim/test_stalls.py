"""kmemdes/sim/stalls.py: the requests' direct reclaim and compaction stalls, timed as the kernel's tracepoints time them."""

from __future__ import annotations

import json

from kmemdes.mm import gfp as g
from kmemdes.mm.compaction import COMPACT_DEFERRED
from kmemdes.mm.page_alloc import STALL_COMPACT, STALL_RECLAIM
from kmemdes.mm.reclaim import ReclaimWork
from kmemdes.sim.daemons import DaemonCosts
from kmemdes.sim.stalls import StallLatency, duration_quantiles
from tests.mm.test_compaction import READAHEAD, THP, fragmented, fragmented_page_cache

MS = 1_000_000


def test_every_counted_stall_is_logged_with_its_work_and_priced_as_the_daemons_work():
    """One log entry per compact_stall and per allocstall; each duration is DaemonCosts' price of that
    stall's own work. A readahead compaction (GFP_NOFS: page cache does not move) that walks DMA32's
    120 pageblocks without moving a page lasts as k_pressure_defrag's did: its readahead compactions
    scanned ~124 blocks and migrated nothing in 2.4 ms (mm_compaction_begin to _end)."""
    node, comp, zone, pfns = fragmented_page_cache()
    stalls = StallLatency()
    node.stall_log = stalls.log
    for _ in range(3):
        assert node.alloc_pages(READAHEAD, 9) < 0
    kinds = [e[0] for e in stalls.log]
    rv = node.reclaim.vmstat
    assert kinds.count(STALL_COMPACT) == comp.vmstat["compact_stall"] > 0
    assert kinds.count(STALL_RECLAIM) == sum(v for k, v in rv.items() if k.startswith("allocstall_")) > 0
    reclaim, compact, deferred = stalls.durations()
    costs = DaemonCosts()
    assert [ns for ns, _ in reclaim] == [costs.reclaim_ns(e[1]) for e in stalls.log if e[0] == STALL_RECLAIM]
    assert sum(p for _, p in reclaim) == rv["pgsteal_direct"]
    first = stalls.log[0]
    assert first[0] == STALL_COMPACT and first[1].steps >= 120 and first[1].migrated == 0
    assert 2.0 * MS <= compact[0][0] <= 3.0 * MS
    s = stalls.summary()
    assert s["direct_compaction"]["n"] == len(compact) and deferred == 0
    assert s["direct_compaction"]["max"] == compact[0][0]


def test_a_compaction_deferred_in_every_zone_has_no_duration():
    """compact_stall counts a deferred attempt (try_to_compact_pages returns COMPACT_DEFERRED), but no
    compact_zone ran, so the kernel's trace has no mm_compaction_end for it and the lab no duration."""
    node, comp, _, _ = fragmented(polluted=True)  # a pinned page in every block: THP compaction fails
    stalls = StallLatency()
    node.stall_log = stalls.log
    for _ in range(4):
        assert node.alloc_pages(THP, 9) < 0
    s = stalls.summary()["direct_compaction"]
    results = [e[2] for e in stalls.log]
    assert comp.vmstat["compact_stall"] == len(results) == s["n"] + s["deferred"]
    assert s["deferred"] == results.count(COMPACT_DEFERRED) == comp.vmstat["compact_deferred"] > 0
    assert s["migrated"] == comp.vmstat["pgmigrate_success"] and s["success"] == 0


def test_direct_reclaim_of_readahead_folios_is_priced_per_folio():
    """shrink_folio_list frees a large folio at about the cost of a few base pages: in k_pressure_defrag
    the median direct reclaim took 1,536 pages (three order-9 readahead folios) in 53 us, and in
    j_pressure_stock 81 pages (base folios) in 77 us; priced per page, the first would take 20 times
    longer than the second."""
    costs = DaemonCosts()
    three_folios = costs.reclaim_ns(ReclaimWork(scanned=1536, reclaimed=1536, folios=3))
    base = costs.reclaim_ns(ReclaimWork(scanned=81, reclaimed=81, folios=81))
    assert three_folios < 1.5 * base


def test_quantiles_are_the_labs_and_the_runs_report_them(tmp_path):
    """A simulated run's summary and a lab run's carry the same ``stall_latency_ns`` keys, so `kmemdes
    compare` shows them as the same rows."""
    from kmemdes.config import Config
    from kmemdes.demo import part2_config
    from kmemdes.report.load import load_run_dir
    from kmemdes.report.metrics import headline_metrics
    from kmemdes.sim.engine import run_config

    assert duration_quantiles([10, 20, 30, 40]) == {"n": 4, "p50": 30, "p90": 40, "p99": 40, "max": 40, "mean": 25}
    cfg = part2_config("kmalloc", 3, 0)  # the demo's squeezed 160 MB machine: kmalloc stalls in compaction
    out, summary = run_config(Config.model_validate(cfg), tmp_path / "k", progress=False)
    st = json.loads((out / "summary.json").read_text())["stall_latency_ns"]
    assert set(st) == {"direct_reclaim", "direct_compaction"}
    dc = st["direct_compaction"]
    assert dc["n"] + dc["deferred"] == summary["vmstat"]["compact_stall"]
    m = {x.key: x for x in headline_metrics(load_run_dir(out))}
    assert dc["n"] > 0
    assert m["stall.direct_compaction.p50"].value == dc["p50"] and m["stall.direct_compaction.p50"].group == "Latency"
    assert m["compact.deferred"].value == dc["deferred"]


def test_lab_summary_carries_the_kernels_stall_latencies():
    """A lab run's summary times the same stalls from the kernel's tracepoint pairs (j_pressure_stock's
    median direct reclaim: 81 pages in 77 us; its median direct compaction: 607 us), under the same key;
    compact_stall attempts without an mm_compaction_end are the deferred ones."""
    from kmemdes.config import Config
    from kmemdes.lab.ktrace import intervals, parse_lines
    from kmemdes.lab.run import Watchdog, _summarize

    zone = "zone_start=0x1000 migrate_pfn=0x1000 free_pfn=0x2000 zone_end=0x3000, mode=async"
    lines = ["  cc1-42  [001] ..... 12.000000500: mm_vmscan_direct_reclaim_begin: order=9 gfp_flags=GFP_KERNEL",
             "  cc1-42  [001] ..... 12.000077500: mm_vmscan_direct_reclaim_end: nr_reclaimed=81",
             "  cc1-42  [001] ..... 12.000100000: mm_compaction_try_to_compact_pages: order=9 gfp_mask=GFP_KERNEL "
             "priority=2",
             f"  cc1-42  [001] ..... 12.000110000: mm_compaction_begin: {zone}",
             f"  cc1-42  [001] ..... 12.000707000: mm_compaction_end: {zone} status=complete"]
    cycles = [{"cycle": 1, "vmstat_delta": {"compact_stall": 3}, "start_epoch_ns": 0, "end_epoch_ns": 10**9,
               "workloads": []}]
    summary, _ = _summarize(Config(name="t"), {"cycles": cycles}, [], intervals(parse_lines(lines)),
                            {"uname": "x", "mem_total_kb": 1}, {}, {}, {}, Watchdog(1, print), [], [], 1.0, 1)
    st = summary["stall_latency_ns"]
    assert (st["direct_reclaim"]["n"], st["direct_reclaim"]["p50"], st["direct_reclaim"]["pages"]) == (1, 77_000, 81)
    assert (st["direct_compaction"]["p50"], st["direct_compaction"]["deferred"]) == (607_000, 2)
    assert set(st) == set(StallLatency().summary())
