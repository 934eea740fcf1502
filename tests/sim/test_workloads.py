"""Synthetic runs: determinism, the fragmentation pattern, driver failure rates, compile rates."""

from __future__ import annotations


import polars as pl
import pytest

from kmemdes.config import parse_config
from kmemdes.mm.frag import unusable_free_index
from kmemdes.sim.engine import Sim, make_node, run_config
from kmemdes.sim.workloads import prepare_initial_state

BASE = """
name = "t"
duration = "2s"
seed = {seed}
[machine]
mem = "256M"
[[workloads]]
kind = "driver"
order = 4
interval = "50ms"
[[workloads]]
kind = "network"
rate = 2000
[[workloads]]
kind = "anon"
processes = 1
size = "4M"
"""


def test_runs_are_deterministic(tmp_path):
    cfg = parse_config(BASE.format(seed=7))
    _, s1 = run_config(cfg, tmp_path / "a", progress=False)
    _, s2 = run_config(cfg, tmp_path / "b", progress=False)
    for s in (s1, s2):
        s.pop("wall_s"), s.pop("events_per_s")
    assert s1 == s2
    for f in sorted((tmp_path / "a" / "metrics").iterdir()):
        assert f.read_bytes() == (tmp_path / "b" / "metrics" / f.name).read_bytes(), f.name
    _, s3 = run_config(parse_config(BASE.format(seed=8)), tmp_path / "c", progress=False)
    assert s3["requests_by_order"] != s1["requests_by_order"] or s3["latency_ns"] != s1["latency_ns"]


def test_freeing_three_quarters_of_every_pageblock_leaves_no_order_9_block():
    # KERNEL.md 19 / experiment frag-pattern: 128 of every 512 pages kept -> 3/4 free, but no free
    # block of order >= 9 inside the filled pageblocks
    cfg = parse_config('[machine]\nmem = "256M"\n[initial]\nstate = "fragmented"\nfill = 1.0\nkeep_per_block = 128\n')
    node = make_node(cfg)
    sim = Sim(cfg, node, [])
    prepare_initial_state(sim)
    node.check()
    for z in node.zones:
        # every order-9/10 free block left is one the filler never reached (the watermark reserve)
        untouched = sum(c << o for o, c in enumerate(z.nr_free) if o >= 9)
        assert untouched <= z.wmark(2) + 1024, (z.name, untouched)
        assert unusable_free_index(z.nr_free, 9) >= 900 or z.free_pages < 4096
    dma32 = node.zones[1]
    assert dma32.free_pages > 0.70 * dma32.managed  # about 3/4 free


def test_driver_order_9_fails_on_fragmented_memory_without_compaction(tmp_path):
    cfg = parse_config("""
name = "frag"
duration = "1s"
[machine]
mem = "256M"
[policy]
compaction = false
[initial]
state = "fragmented"
fill = 1.0
[[workloads]]
kind = "driver"
order = 9
gfp = "GFP_KERNEL|__GFP_NORETRY"
interval = "10ms"
hold = "1s"
""")
    _, s = run_config(cfg, tmp_path / "r", progress=False)
    r9 = s["requests_by_order"]["9"]
    assert r9["attempts"] == 100
    assert r9["failures"] >= 90  # only the few untouched reserve blocks can serve


@pytest.mark.slow
def test_compile_workload_reproduces_the_fitted_page_rates(tmp_path):
    from kmemdes.sim.compilefit import load_fit

    fit = load_fit()
    cfg = parse_config('name = "c"\nduration = "1s"\n[machine]\nmem = "2G"\n[[workloads]]\nkind = "compile"\njobs = 2\n')
    out, s = run_config(cfg, tmp_path / "c", progress=False)
    req = pl.read_parquet(out / "metrics" / "requests.parquet").filter(pl.col("workload") == "compile0")
    expect = sum(c["rate"] for c in fit["classes"] if c["kind"] == "page") * 2  # per second, 2 jobs
    got = int(req["count"].sum())
    assert abs(got - expect) / expect < 0.05, (got, expect)


READAHEAD = """
name = "ra"
duration = "1s"
[machine]
mem = "256M"
[policy]
compaction = {compaction}
[initial]
state = "{state}"
[[workloads]]
kind = "file_cache"
rate_pages = 20480
pages_per_file = 0
folio_order = 9
"""


def test_readahead_large_folios_and_their_base_page_fallback(tmp_path):
    # page_cache_ra_order: PMD-size folios with readahead_gfp_mask (the pressure captures' ext4
    # readahead requests print GFP_NOFS|__GFP_HIGHMEM|__GFP_MOVABLE|__GFP_NOWARN|__GFP_NORETRY|
    # __GFP_COMP|__GFP_HARDWALL), 40 per second for 20,480 pages/s
    out, s = run_config(parse_config(READAHEAD.format(compaction="true", state="boot")), tmp_path / "a",
                        progress=False)
    req = pl.read_parquet(out / "metrics" / "requests.parquet").filter(pl.col("workload") == "file_cache0")
    r9 = s["requests_by_order"]["9"]
    assert r9["attempts"] == 40 and r9["failures"] == 0
    assert s["vmstat"]["file_cache0_large_folios"] == 40 and s["vmstat"]["file_cache0_large_folio_fallbacks"] == 0
    assert set(req["order"].to_list()) == {9}
    # fragmented memory, no compaction: once the few untouched reserve blocks are used, each large folio
    # fails (__GFP_NORETRY: one attempt) and its range is read with order-0 folios of the same mask
    # (do_page_cache_ra)
    out, s = run_config(parse_config(READAHEAD.format(compaction="false", state="fragmented")), tmp_path / "b",
                        progress=False)
    v = s["vmstat"]
    large, fell = v["file_cache0_large_folios"], v["file_cache0_large_folio_fallbacks"]
    assert large + fell == 40 and fell >= 10, (large, fell)
    assert s["requests_by_order"]["9"]["failures"] == fell
    assert s["requests_by_order"]["0"]["attempts"] == fell * 512  # no order-0 read failed here
    req = pl.read_parquet(out / "metrics" / "requests.parquet").filter(pl.col("workload") == "file_cache0")
    assert set(req["order"].to_list()) == {0, 9}


def test_hugetlb_reservation_squeezes_the_machine_from_the_highest_zone():
    # the lab's and the pressure captures' squeeze (echo N > nr_hugepages): order-9 pages from Normal
    # first (the zonelist order), held, in no rmap (compaction and reclaim leave them)
    cfg = parse_config('[machine]\nmem = "6G"\n[initial]\nhugetlb_leave = "1536M"\n')
    node = make_node(cfg)
    free0 = {z.name: z.free_pages for z in node.zones}
    sim = Sim(cfg, node, [])
    prepare_initial_state(sim)
    node.check()
    left = node.nr_free_pages()
    # the last 2 MiB blocks may not pass the watermarks (the boot layout's free ranges are not all aligned)
    assert 1536 << 8 <= left < (1536 << 8) + 4096, sim.notes[-1]
    taken = {z.name: free0[z.name] - z.free_pages for z in node.zones}
    normal = next(z for z in node.zones if z.name == "Normal")
    assert normal.free_pages < normal.managed // 20  # Normal is emptied before DMA32 is touched
    assert taken["DMA"] == 0
    n = int(sim.notes[-1].split()[1])
    assert sum(taken.values()) == n * 512
    assert not any(node.rmap.get(p) for p in range(node.max_pfn) if node.alloc_order[p] == 9)


ANON_BURST = """
name = "t"
duration = "1200ms"
sample_interval = "100ms"
[machine]
mem = "1G"
[[workloads]]
kind = "anon"
processes = 1
size = "128M"
start = "100ms"
lifetime = "10s"
interval = "10s"
touch_time = "{touch}"
[[workloads]]
kind = "anon"
processes = 1
size = "32M"
lifetime = "10s"
interval = "10s"
"""


def _free_pages_timeline(out) -> dict[int, int]:
    b = pl.read_parquet(out / "metrics" / "buddy.parquet")
    b = b.with_columns((pl.col("nr_free") * (2 ** pl.col("order").cast(pl.Int64))).alias("pages"))
    return dict(b.group_by("t_ns").agg(pl.col("pages").sum()).sort("t_ns").iter_rows())


def test_a_burst_first_touch_is_spread_over_touch_time(tmp_path):
    # a 256 MiB MADV_HUGEPAGE burst took 0.17-0.83 s on the corpus machine (cycles.log touch_s):
    # with touch_time its 2 MiB faults come one after the other, not at one instant
    out, s = run_config(parse_config(ANON_BURST.format(touch="800ms")), tmp_path / "spread", progress=False)
    free = _free_pages_timeline(out)
    used = {t: free[100_000_000] - f for t, f in free.items()}  # (anon1 touched its 32M at 0)
    whole = 128 << 8
    assert used[1_000_000_000] >= 0.95 * whole
    assert 0.25 * whole < used[500_000_000] < 0.75 * whole, used
    # /proc/vmstat's thp_fault_alloc is the node's: both workloads' faults add up
    v = s["vmstat"]
    assert v["thp_fault_alloc"] == v["anon0_thp_fault_alloc"] + v["anon1_thp_fault_alloc"]
    assert v["anon0_thp_fault_alloc"] >= 60 and v["anon1_thp_fault_alloc"] >= 14
    out, _ = run_config(parse_config(ANON_BURST.format(touch="0s")), tmp_path / "instant", progress=False)
    free = _free_pages_timeline(out)
    assert free[0] - free[100_000_000] >= 0.95 * whole  # all at its start (the sample follows it)


def test_a_failed_readahead_folio_leaves_the_rest_of_its_window_to_base_pages(tmp_path):
    # page_cache_ra_order -> do_page_cache_ra: after a failed large folio the rest of the readahead
    # window is read with base pages; the pressure captures show 2,943 (j) and 3,459 (k) base pages
    # per failed order-9 folio. The stream's page rate stays what it was: base pages take the place
    # of the folios that would have come next.
    cfg = READAHEAD.format(compaction="false", state="fragmented") + "ra_fallback_pages = 2048\n"
    _, s = run_config(parse_config(cfg), tmp_path / "w", progress=False)
    v = s["vmstat"]
    large, fell = v["file_cache0_large_folios"], v["file_cache0_large_folio_fallbacks"]
    base = s["requests_by_order"]["0"]["attempts"]
    assert fell >= 3
    assert fell * 512 < base <= fell * 2048  # the last window may end with the run
    assert large * 512 + base <= 20480 + 2048  # one second of the stream, whichever the folio size
    assert large + fell < 40  # windows read as base pages replace large folios


FILE_READ = """
name = "cat"
duration = "2s"
[machine]
mem = "256M"
[initial]
hugetlb_leave = "{leave}"
[[workloads]]
kind = "file_cache"
file_pages = {pages}
interval = "{interval}"
rate_pages = 40960
folio_order = 9
"""


def test_a_file_read_again_is_served_from_the_page_cache_while_it_fits(tmp_path):
    # `cat` of the same file every cycle (the pressure captures' 2 GiB stream): in j_pressure_stock
    # (2.4 GiB free) the file stayed cached and the second and third reads allocated 97 k and 31 k of its
    # 524 k pages; in k_pressure_defrag (1.5 GiB free) reclaim took it as it was read and every read
    # allocated it again (510 k, 509 k pages)
    _, s = run_config(parse_config(FILE_READ.format(leave="0", pages=4096, interval="500ms")), tmp_path / "fits",
                      progress=False)
    v = s["vmstat"]
    assert s["requests_by_order"]["9"]["attempts"] == 8  # read once: eight 2 MiB folios
    assert v["file_cache0_large_folios"] == 8 and v["file_cache0_cache_hits"] == 3 * 4096  # three re-reads
    # 160 MiB file on a machine squeezed to 64 MiB free: reclaim takes the file's oldest pages while the
    # rest is read, so the next read misses them again and allocates the file anew
    _, s = run_config(parse_config(FILE_READ.format(leave="64M", pages=40960, interval="1s")), tmp_path / "big",
                      progress=False)
    v = s["vmstat"]
    read = v["file_cache0_large_folios"] * 512 + s["requests_by_order"].get("0", {}).get("attempts", 0)
    assert v["file_cache0_cache_hits"] < 40960 // 4 and read >= 2 * 40960 - 40960 // 4
    assert v["pgsteal_kswapd"] + v.get("pgsteal_direct", 0) >= 40960


def test_a_file_read_once_stops_at_its_end(tmp_path):
    _, s = run_config(parse_config(FILE_READ.format(leave="0", pages=2048 + 100, interval="0s")), tmp_path / "once",
                      progress=False)
    v = s["vmstat"]
    # four 2 MiB folios, then the 100-page tail with base pages; no second read
    assert v["file_cache0_large_folios"] == 4 and s["requests_by_order"]["0"]["attempts"] >= 100
    assert v["file_cache0_cache_hits"] == 0


def test_a_burst_step_lasts_as_long_as_the_stalls_its_faults_took():
    """A THP fault that enters direct compaction holds its task for the compaction's duration: the
    next 2 MiB of the burst is touched after it (the corpus bursts took 0.17-0.83 s for 128 faults,
    far longer than their clearing alone). A readahead-like compaction over 120 pageblocks that moves
    nothing lasts k_pressure_defrag's 2.4 ms."""
    from kmemdes.mm.compaction import CompactWork
    from kmemdes.mm.page_alloc import STALL_COMPACT, STALL_RECLAIM
    from kmemdes.mm.reclaim import ReclaimWork
    from kmemdes.sim.engine import Sim, initial_node
    from kmemdes.sim.workloads import make_workloads

    cfg = parse_config(ANON_BURST.format(touch="800ms"))
    notes: list = []
    node, _, cfg = initial_node(cfg, notes)
    sim = Sim(cfg, node, notes)
    sim.attach_daemons()
    make_workloads(sim)
    burst = sim.workloads[0]
    before, mark = node.nr_path[:], sim.stall_mark()
    assert burst._slow_ns(before, mark) == 0
    sim.stalls.log.append((STALL_COMPACT, CompactWork(migrate_scanned=400, steps=120), 5, False))
    sim.stalls.log.append((STALL_COMPACT, CompactWork(), 2, False))  # deferred: no compact_zone ran
    sim.stalls.log.append((STALL_RECLAIM, ReclaimWork(scanned=32, reclaimed=32, folios=32), 32))
    ns = burst._slow_ns(before, mark)
    assert 2_000_000 <= ns - 32 * 2_000 <= 3_000_000
    assert burst._slow_ns(before, sim.stall_mark()) == 0


def test_page_owner_follows_a_split_folio_page_by_page():
    # the token of a folio compaction split stands for its base pages: moved, reclaimed and freed
    # one by one; the file's reads count the pages it still holds
    from kmemdes.mm.compaction import Compaction
    from kmemdes.mm.gfp import GFP_HIGHUSER_MOVABLE
    from kmemdes.mm.mm_init import build_node, parse_size
    from kmemdes.mm.reclaim import Reclaim
    from kmemdes.sim.workloads import PageOwner

    node = build_node("x86_64", parse_size("256M"), cpus=1)
    Reclaim(node)
    comp = Compaction(node)
    owner = PageOwner()
    free0 = node.nr_free_pages()
    pfn = node.alloc_pages(GFP_HIGHUSER_MOVABLE, 3)
    tok = owner.add_cache(node, pfn, 3)
    assert owner.nr_pages(tok) == 8 and owner.pfns(tok) == [pfn]
    assert comp.split_folio(pfn) is True
    assert owner.nr_pages(tok) == 8 and owner.pfns(tok) == list(range(pfn, pfn + 8))
    dst = node.alloc_pages(GFP_HIGHUSER_MOVABLE, 0)  # compaction moves the first page
    node.rmap.pop(pfn)
    node.reclaim.migrate_page(pfn, dst, 0)
    node.rmap[dst] = node.reclaim
    node.free_pages(pfn, 0)
    owner.reclaim_page(pfn + 5, 0)  # reclaim takes another
    node.reclaim.remove_file_pages([pfn + 5])
    assert owner.nr_pages(tok) == 7 and dst in owner.pfns(tok) and pfn + 5 not in owner.pfns(tok)
    assert owner.free(node, tok) is True and owner.nr_pages(tok) == 0 and owner.free(node, tok) is False
    node.drain_all_pages()
    assert node.nr_free_pages() == free0 and not node.rmap and not owner.pages
    node.check()
