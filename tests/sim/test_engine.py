"""The engine's start states: a run from a capture's own squeezed machine (``initial.state = "snapshot"``
with the folder's kpageflags)."""

from __future__ import annotations

import polars as pl
import pytest

from kmemdes.config import parse_config
from kmemdes.errors import KmemdesError
from kmemdes.mm.page_alloc import NO_ORDER, PAGE_FREE
from kmemdes.sim.engine import Sim, initial_node, run_config
from kmemdes.sim.workloads import PageOwner
from kmemdes.trace.snapshot import parse_buddyinfo

K = "pressure_start/k_pressure_defrag"


def _meminfo(folder) -> dict[str, int]:
    out = {}
    for line in (folder / "meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        out[key] = int(rest.split()[0])
    return out


def _snapshot_cfg(folder, extra: str = "") -> str:
    return extra + f'\n[initial]\nstate = "snapshot"\nsnapshot = "{folder}"\n'


def test_a_snapshot_start_is_the_kernels_page_layout(shipped):
    folder = shipped / K
    notes: list[str] = []
    node, adopt, cfg = initial_node(parse_config(_snapshot_cfg(folder)), notes)
    # the policy the capture ran under (vm_sysctls: defrag_mode = 1, min_free_kbytes = 67584)
    assert cfg.policy.fallback == "defrag_mode" and cfg.policy.min_free_kbytes == 67584
    # kpageflags was read between buddyinfo and buddyinfo_after_kpageflags: the zones that did not
    # move meanwhile are the kernel's block for block, the busy Normal zone lies between the two reads
    before = {b.zone: b.nr_free for b in parse_buddyinfo((folder / "buddyinfo").read_text())}
    after = {b.zone: b.nr_free for b in parse_buddyinfo((folder / "buddyinfo_after_kpageflags").read_text())}
    zones = {z.name: z for z in node.zones}
    for name in ("DMA", "DMA32"):
        assert zones[name].nr_free == after[name], name
    normal = zones["Normal"].nr_free
    for order in range(5, 11):
        lo, hi = sorted((before["Normal"][order], after["Normal"][order]))
        assert lo <= normal[order] <= hi, (order, normal[order], lo, hi)
    # every hugetlb page of the squeeze is an order-9 compound page in use, outside any rmap
    mem = _meminfo(folder)
    assert 9 not in adopt[1]  # (no THP or large page-cache folio was in use: AnonHugePages 0)
    hugetlb = sum(1 for p in range(0, node.max_pfn, 512)
                  if node.alloc_order[p] == 9 and node.page_mt[p] != PAGE_FREE and p not in node.rmap)
    assert hugetlb == mem["HugePages_Total"] == 11_065
    # the page cache handed to reclaim is the kernel's file LRU (Active(file) + Inactive(file))
    cache_pages = sum(1 << o for o, f in zip(adopt[1], adopt[2]) if f)
    lru_file = (mem["Active(file)"] + mem["Inactive(file)"]) // 4
    assert abs(cache_pages - lru_file) <= 0.02 * lru_file, (cache_pages, lru_file)


def test_a_run_from_a_snapshot_reclaims_the_kernels_page_cache(shipped, tmp_path):
    # 2 GiB of readahead folios in 4 s into 1.3 GiB free: kswapd must reclaim, and the file pages that
    # were in use when the snapshot was taken are reclaimable like the stream's own
    cfg = parse_config(_snapshot_cfg(shipped / K, """
name = "t"
duration = "4s"
sample_interval = "1s"
[[workloads]]
kind = "file_cache"
rate_pages = 131072
truncate_share = 0
lifetime = "60s"
pages_per_file = 0
folio_order = 9
"""))
    out, s = run_config(cfg, tmp_path / "r", progress=False)
    v = s["vmstat"]
    assert v["pgsteal_kswapd"] + v["pgsteal_direct"] > 0
    assert any("adopted by the models' reclaim and compaction" in n for n in s["notes"])
    assert any("policy from the capture" in n for n in s["notes"])
    # the run's first buddy sample is the kernel's start, not a fresh boot's
    buddy = pl.read_parquet(out / "metrics" / "buddy.parquet")
    t0 = (buddy.filter((pl.col("t_ns") == 0) & (pl.col("zone") == "DMA32"))
          .group_by("order").agg(pl.col("nr_free").sum()).sort("order"))
    kernel = next(b for b in parse_buddyinfo((shipped / K / "buddyinfo_after_kpageflags").read_text())
                  if b.zone == "DMA32")
    assert t0["nr_free"].to_list() == kernel.nr_free


def test_start_folios_reclaimed_leave_their_owner(shipped):
    notes: list[str] = []
    cfg = parse_config(_snapshot_cfg(shipped / K))
    node, adopt, cfg = initial_node(cfg, notes)
    sim = Sim(cfg, node, notes)
    sim.attach_daemons()
    owner = PageOwner()
    sim.adopt_start(adopt, owner)
    n_cache = len(owner._cache)
    assert n_cache > 0 and len(owner.pages) > n_cache
    # reclaim what it can: every page-cache folio it takes leaves the owner and is free in the node
    held = dict(owner.pages)
    got = node.reclaim.direct_reclaim(node, [z for z in reversed(node.zones) if z.managed], 0, 0)
    gone = held.keys() - owner.pages.keys()
    assert got > 0 and len(owner._cache) == n_cache - len(gone) and gone
    assert sum(1 << held[p] for p in gone) == got
    assert all(node.page_mt[p] == PAGE_FREE and node.alloc_order[p] == NO_ORDER for p in gone)
    assert all(node.alloc_order[p] == o for p, o in owner.pages.items())


def test_a_missing_snapshot_folder_is_one_line(tmp_path):
    cfg = parse_config(_snapshot_cfg(tmp_path / "nope"))
    with pytest.raises(KmemdesError, match="nope"):
        initial_node(cfg, [])


def test_a_config_machine_size_that_disagrees_with_the_snapshot_is_noted(shipped):
    # k_pressure_defrag: 6,170,916 managed pages (zoneinfo: DMA 3,840 + DMA32 772,818 + Normal 5,394,258)
    folder = shipped / K
    for mem, noted in (("24G", False), ("1G", True)):
        notes: list[str] = []
        node, _, _ = initial_node(parse_config(_snapshot_cfg(folder, f'[machine]\nmem = "{mem}"\n')), notes)
        assert sum(z.managed for z in node.zones) == 3_840 + 772_818 + 5_394_258
        assert any(n.startswith(f"machine.mem = {mem} not used") for n in notes) == noted, notes


def test_pmd_order_pages_on_per_cpu_lists_are_free_at_a_snapshot_start(shipped):
    # k's zoneinfo counts 18,711 Normal pages on per-CPU lists; kpageflags shows 29 Normal pageblocks
    # with no flag on any page. The trace's first order-9 allocations from Normal (readahead, at
    # 1157.386-1157.462, with no free event in those blocks before them) took such blocks:
    first_normal_o9 = (0x1F8C00, 0x571200, 0x126A00, 0x1E1800, 0x123200, 0x219C00)
    folder = shipped / K
    notes: list[str] = []
    node, _, _ = initial_node(parse_config(_snapshot_cfg(folder)), notes)
    normal = next(z for z in node.zones if z.name == "Normal")
    assert sum(p.count for p in normal.pcp) == 29 * 512 <= 18_711
    for pfn in first_normal_o9:
        assert node.page_mt[pfn:pfn + 512].count(PAGE_FREE) == 512, hex(pfn)
    assert any("29 pageblocks with no page flag" in n for n in notes)
