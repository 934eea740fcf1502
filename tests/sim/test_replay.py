"""Trace replay: every event accounted for, rules counted as an independent script counts them,
mirror mode following the kernel's list semantics on hand-made event sequences."""

from __future__ import annotations

import json

import polars as pl
import pytest

from kmemdes.mm import gfp as g
from kmemdes.mm.mm_init import add_zone
from kmemdes.mm.page_alloc import Node, Policy, setup_per_zone_wmarks
from kmemdes.mm.gfp import ZoneType
from kmemdes.sim.engine import replay_trace
from kmemdes.sim.replay import Replayer
from kmemdes.trace.schema import EventKind, conform


def _accounted(summary):
    return summary["events_replayed"] + sum(summary["quirks"].values()) == summary["events"]


@pytest.mark.parametrize("mode", ["mirror", "policy"])
def test_every_event_of_the_shipped_traces_is_accounted_for(tmp_path, shipped, mode):
    for name in ("a_idle_stream", "b_compile_head"):
        out, s = replay_trace(shipped / name, tmp_path / f"{name}-{mode}", mode=mode, progress=False)
        assert _accounted(s), (name, mode)
        assert s["events"] == sum(s["events_by_type"].values())
        assert (out / "metrics" / "buddy.parquet").exists() and (out / "config.toml").exists()


def _analysis_rules(analysis: dict) -> dict:
    """The replay rules as the independent analyze.py counted them (traces/README.md section 6)."""
    slab, pages, vm = analysis["slab"], analysis["pages"], analysis["vmalloc"]
    return {
        "kfree_null": slab.get("kfree_null", 0),
        "alloc_of_live_pointer": slab.get("alloc_of_live_ptr(missed free)", 0),
        "free_of_untraced_object": slab.get("kmem_cache_free_unmatched(allocated before trace)", 0)
        + slab.get("kfree_unmatched(allocated before trace)", 0)
        + slab.get("kmem_cache_free_matched_earlier_not_live", 0)
        + slab.get("kfree_matched_earlier_not_live", 0),
        "batched_after_free": pages.get("mm_page_free_batched_after_mm_page_free_same_pfn", 0),
        "vfree_of_untraced_area": vm.get("free_noflush_unmatched(allocated before trace)", 0),
    }


def test_rules_match_the_independent_analysis_of_the_idle_capture(tmp_path, shipped):
    _, s = replay_trace(shipped / "a_idle_stream", tmp_path / "a", progress=False)
    expect = _analysis_rules(json.loads((shipped / "a_idle_stream" / "analysis.json").read_text()))
    assert {k: s["quirks"].get(k, 0) for k in expect} == expect


@pytest.mark.slow
@pytest.mark.parametrize("name", ["b_compile_nohash", "c_fschurn", "d_net_loopback"])
def test_rules_match_the_independent_analysis_of_the_corpus(tmp_path, corpus, name):
    _, s = replay_trace(corpus / name, tmp_path / name, progress=False)
    assert _accounted(s)
    expect = _analysis_rules(json.loads((corpus / name / "analysis.json").read_text()))
    assert {k: s["quirks"].get(k, 0) for k in expect} == expect


def test_replay_is_deterministic(tmp_path, shipped):
    _, s1 = replay_trace(shipped / "a_idle_stream", tmp_path / "r1", progress=False)
    _, s2 = replay_trace(shipped / "a_idle_stream", tmp_path / "r2", progress=False)
    for k in ("wall_s", "events_per_s"):
        s1.pop(k), s2.pop(k)
    assert s1 == s2
    for f in sorted((tmp_path / "r1" / "metrics").iterdir()):
        assert f.read_bytes() == (tmp_path / "r2" / "metrics" / f.name).read_bytes(), f.name


# ---------------------------------------------------------------- hand-made mirror sequences

def small_node():
    node = Node("x86_64", 4096, cpus=2, policy=Policy(min_free_kbytes=128))
    zone = add_zone(node, "Normal", ZoneType.NORMAL, 2, 0, 4096, 4096)
    for pb in range(8):
        node.pb_valid[pb] = 1
    for pfn in range(0, 4096, 1024):
        node.page_mt[pfn:pfn + 1024] = b"\xff" * 1024
        zone.managed += 1024
        node.free_one_page(zone, pfn, 10, to_tail=True)
    setup_per_zone_wmarks(node)
    node.debug = True
    return node


def events(rows):
    """rows: (event, cpu, fields...) -> canonical frame."""
    cols = {k: [] for k in ("line", "ts", "cpu", "event", "kind", "pfn", "order", "migratetype", "gfp",
                            "percpu_refill", "fallback_order", "fallback_migratetype", "change_ownership", "pid")}
    for i, (event, cpu, f) in enumerate(rows):
        cols["line"].append(i + 1)
        cols["ts"].append(1000 * i)
        cols["cpu"].append(cpu)
        cols["event"].append(event)
        cols["kind"].append(int(EventKind.from_name(event)))
        for k in ("pfn", "order", "migratetype", "gfp", "percpu_refill", "fallback_order", "fallback_migratetype",
                  "change_ownership", "pid"):
            cols[k].append(f.get(k))
    return conform(pl.DataFrame(cols, strict=False))


def test_mirror_refill_then_alloc_then_free_then_drain_merges_back():
    node = small_node()
    zone = node.zones[0]
    rows = [("mm_page_alloc_zone_locked", 0, dict(pfn=p, order=0, migratetype=1, percpu_refill=1))
            for p in range(0, 4)]
    rows += [("mm_page_alloc", 0, dict(pfn=0, order=0, migratetype=1, gfp=g.GFP_HIGHUSER_MOVABLE))]
    r = Replayer(node, events(rows))
    r.run_until(10**9)
    # four blocks left the buddy lists; pfn 0 allocated, 1..3 on CPU 0's movable order-0 pcp list (take order)
    pcp = zone.pcp[0]
    lid = pcp.lid0 + node.order_to_pindex(1, 0)
    assert list(node._walk(lid)) == [1, 2, 3] and pcp.count == 3
    assert zone.free_pages == 4096 - 4
    node.check()
    # free pfn 0 on CPU 0: to the head of the pcp list (trace has drains below, so no model drain)
    rows2 = rows + [("mm_page_free", 0, dict(pfn=0, order=0))]
    rows2 += [("mm_page_pcpu_drain", 0, dict(pfn=p, order=0, migratetype=1)) for p in (3, 2, 1, 0)]
    node2 = small_node()
    r2 = Replayer(node2, events(rows2))
    r2.run_until(10**9)
    assert r2.stats.replayed == len(rows2)
    assert node2.zones[0].free_pages == 4096 and node2.zones[0].nr_free[10] == 4  # merged back
    node2.check()


def test_mirror_whole_block_claim_retypes_pageblocks_without_zone_locked():
    node = small_node()
    rows = [("mm_page_alloc_extfrag", 0, dict(pfn=1024, order=0, fallback_order=10, migratetype=0,
                                               fallback_migratetype=1, change_ownership=1)),
            ("mm_page_alloc", 0, dict(pfn=1024, order=0, migratetype=0, gfp=g.GFP_KERNEL))]
    r = Replayer(node, events(rows))
    r.run_until(10**9)
    assert node.pb_mt[2] == node.pb_mt[3] == 0 and node.pb_mt[0] == 1
    assert r.stats.fallbacks == {(0, 1, "claim", False): 1}
    r.finalize()
    assert r.stats.requests == {(0, "reclaim", 3): 1}  # PATH_CLAIM
    node.check()


def _requests_per_event(rows, ncpu):
    """The mirror loop's request keys counted event by event (its rule before the vectorised count)."""
    refill, fallback, out = [0] * ncpu, [0] * ncpu, {}
    for event, cpu, f in rows:
        order = f.get("order") or 0
        if event == "mm_page_alloc_zone_locked" and f.get("percpu_refill") and (order <= 3 or order == 9):
            refill[cpu] += 1
        elif event == "mm_page_alloc_extfrag":
            fallback[cpu] = 3 if f.get("change_ownership") else 4  # PATH_CLAIM / PATH_STEAL
        elif event == "mm_page_alloc":
            gfp = f.get("gfp") or 0
            if f.get("pfn", -1) < 0:
                path = 9  # PATH_FAILED
            elif fallback[cpu]:
                path = fallback[cpu]
            elif order <= 3 or order == 9:
                path = 1 if refill[cpu] else 0
            else:
                path = 2
            key = (order, gfp & g.__GFP_DIRECT_RECLAIM, path, gfp & g.__GFP_ZERO, refill[cpu])
            out[key] = out.get(key, 0) + 1
            refill[cpu] = fallback[cpu] = 0
    return out


def test_mirror_request_keys_counted_vectorised_equal_the_per_event_rule():
    """Path (failed, fallback, pcp refill, pcp, buddy) and refills per CPU since its previous allocation."""
    k, m, z = g.GFP_KERNEL, g.GFP_HIGHUSER_MOVABLE, g.GFP_KERNEL | g.__GFP_ZERO
    rows = [("mm_page_alloc_zone_locked", 0, dict(pfn=p, order=0, migratetype=1, percpu_refill=1)) for p in range(4)]
    rows += [("mm_page_alloc_zone_locked", 1, dict(pfn=64, order=4, migratetype=0, percpu_refill=1)),
             ("mm_page_alloc", 1, dict(pfn=64, order=4, migratetype=0, gfp=k)),
             ("mm_page_alloc_zone_locked", 0, dict(pfn=8, order=1, migratetype=1, percpu_refill=1)),
             ("mm_page_alloc", 0, dict(pfn=0, order=0, migratetype=1, gfp=m)),
             ("mm_page_alloc", 0, dict(pfn=1, order=0, migratetype=1, gfp=z)),
             ("mm_page_alloc_extfrag", 1, dict(pfn=1024, order=0, fallback_order=2, migratetype=0,
                                               fallback_migratetype=1, change_ownership=0)),
             ("mm_page_alloc", 0, dict(pfn=-1, order=3, gfp=k)),
             ("mm_page_alloc_zone_locked", 1, dict(pfn=2048, order=0, migratetype=0, percpu_refill=1)),
             ("mm_page_alloc", 1, dict(pfn=2048, order=0, migratetype=0, gfp=k)),
             ("mm_page_alloc", 1, dict(pfn=2, order=0, migratetype=1, gfp=m)),
             ("mm_page_alloc_zone_locked", 0, dict(pfn=512, order=9, migratetype=1, percpu_refill=1)),
             ("mm_page_alloc_extfrag", 0, dict(pfn=1536, order=0, fallback_order=10, migratetype=0,
                                               fallback_migratetype=1, change_ownership=1)),
             ("mm_page_alloc", 0, dict(pfn=1536, order=0, migratetype=0, gfp=k))]
    r = Replayer(small_node(), events(rows))
    r.run_until(10**9)
    assert r._mirror_requests(r.n) == _requests_per_event(rows, 2)
    # only the rows the loop has done
    r2 = Replayer(small_node(), events(rows))
    r2.run_until(8500)
    assert r2.mirrored == 9 and r2._mirror_requests(r2.mirrored) == _requests_per_event(rows[:9], 2)


def test_mirror_free_of_pages_allocated_before_the_trace_is_a_counted_rule():
    node = small_node()
    node.take_block(512, 0)
    node.page_mt[512] = 0  # in use before the trace (no alloc_order: not seen allocated)
    r = Replayer(node, events([("mm_page_free", 1, dict(pfn=512, order=0)),
                               ("mm_page_free", 1, dict(pfn=600, order=0))]))
    r.run_until(10**9)
    assert r.stats.quirks == {"free_of_untraced_page": 1, "free_of_page_free_in_model": 1}
    assert r.stats.replayed == 0
    node.check()


def test_batched_after_free_is_one_free():
    node = small_node()
    rows = [("mm_page_alloc_zone_locked", 0, dict(pfn=8, order=0, migratetype=1, percpu_refill=1)),
            ("mm_page_alloc", 0, dict(pfn=8, order=0, migratetype=1, gfp=g.GFP_HIGHUSER_MOVABLE)),
            ("mm_page_free", 0, dict(pfn=8, order=0)),
            ("mm_page_free_batched", 0, dict(pfn=8, order=0))]
    r = Replayer(node, events(rows))
    r.run_until(10**9)
    assert r.stats.quirks == {"batched_after_free": 1} and r.stats.replayed == 3
    node.check()


def test_policy_mode_drives_the_slub_model(tmp_path, shipped):
    """Policy mode: object events go through the SLUB model, which makes its own slab pages; the
    trace's slab pages (raw pointers: the pages holding traced objects) are left to it. The per-pointer
    rules counted by this loop equal those of the vectorised matcher used in mirror mode."""
    _, pol = replay_trace(shipped / "b_compile_head", tmp_path / "pol", mode="policy", progress=False)
    _, mir = replay_trace(shipped / "b_compile_head", tmp_path / "mir", mode="mirror", progress=False)
    assert _accounted(pol)
    for rule in ("kfree_null", "alloc_of_live_pointer", "free_of_untraced_object"):
        assert pol["quirks"][rule] == mir["quirks"][rule], rule
    assert pol["quirks"]["slab_page_by_model"] > 0
    # the model allocated slab pages itself: they are reported as requests made "(via models)"
    import polars as pl

    req = pl.read_parquet(tmp_path / "pol" / "metrics" / "requests.parquet")
    assert req.filter(pl.col("workload") == "(via models)")["count"].sum() > 0
    assert req.filter(pl.col("workload") == "(via models)")["order"].max() <= 3


@pytest.mark.parametrize("name", ["h_perf_sample", "tracedat_small"])
def test_traces_without_a_snapshot_replay_on_a_machine_sized_to_them(tmp_path, shipped, name):
    # perf script text and trace.dat, no before/ folder: a fresh machine covering every pfn named
    for mode in ("mirror", "policy"):
        _, s = replay_trace(shipped / name, tmp_path / f"{name}-{mode}", mode=mode, progress=False)
        assert _accounted(s) and "pfn_outside_memory" not in s["quirks"]
        assert any("no snapshot" in n for n in s["notes"])


def test_page_events_beyond_memory_are_a_counted_rule():
    node = small_node()  # 4096 pages
    rows = [("mm_page_alloc", 0, dict(pfn=1 << 20, order=0, migratetype=1, gfp=g.GFP_HIGHUSER_MOVABLE)),
            ("mm_page_free", 0, dict(pfn=4095, order=1))]  # runs past the end
    r = Replayer(node, events(rows))
    r.run_until(10**9)
    assert r.stats.quirks == {"pfn_outside_memory": 2} and r.stats.replayed == 0


@pytest.mark.parametrize("mode", ["mirror", "policy"])
def test_replay_in_windows_equals_replay_in_one_piece(shipped, mode):
    """The loop holds ``window`` rows as Python lists at a time; any window gives the same replay."""
    from kmemdes.mm.mm_init import node_from_snapshot
    from kmemdes.trace.reader import read_trace
    from kmemdes.trace.snapshot import snapshot_from_texts

    tr = read_trace(shipped / "a_idle_stream")
    out = []
    for window in (None, 1000, 7):
        node, _ = node_from_snapshot(snapshot_from_texts(tr.meta["before"]))
        r = Replayer(node, tr.events, mode=mode, window=window)
        for t in range(0, r.t_max + 2_000_000, 1_000_000):  # tick by tick, as the SimPy driver does
            r.run_until(t)
        node.check()
        r.finalize()  # mirror mode counts the requests here
        out.append((r.pos, r.stats.replayed, r.stats.events, dict(r.stats.quirks), dict(r.stats.requests),
                    [z.nr_free[:] for z in node.zones], bytes(node.page_mt)))
    assert r.pos == r.n and out[0] == out[1] == out[2]


# ------------------------------------------- page events beyond memory: mirror only, counted once

def test_policy_replay_places_page_events_whose_pfns_lie_beyond_memory():
    """Policy mode places pages itself (the trace's pfns only match a free to its allocation): pfns
    beyond the machine's memory are replayed, not counted as outside it."""
    node = small_node()  # 4096 pages
    big = 1 << 20
    rows = [("mm_page_alloc_zone_locked", 0, dict(pfn=big, order=0, migratetype=1, percpu_refill=1)),
            ("mm_page_alloc", 0, dict(pfn=big, order=0, migratetype=1, gfp=g.GFP_HIGHUSER_MOVABLE)),
            ("mm_page_alloc", 1, dict(pfn=big + 8, order=3, migratetype=0, gfp=g.GFP_KERNEL)),
            ("mm_page_free", 0, dict(pfn=big, order=0)),
            ("mm_page_free_batched", 0, dict(pfn=big, order=0)),
            ("mm_page_free", 1, dict(pfn=big + 8, order=3))]
    r = Replayer(node, events(rows), mode="policy")
    r.run_until(10**9)
    r.finalize()
    assert r.stats.quirks == {"redecided_by_policy": 1, "batched_after_free": 1}
    assert r.stats.replayed == 4  # two allocations placed by the model, two frees of them
    assert sum(r.stats.requests.values()) == 2 and not r.stats.failures
    zone = node.zones[0]
    assert not r.pages.t2m and zone.free_pages + sum(p.count for p in zone.pcp) == 4096  # both blocks given back
    node.check()


def test_a_thp_faults_retry_is_matched_by_its_task_not_its_cpu():
    """The kernel's THP fault tries the local node first (``__GFP_THISNODE|__GFP_NORETRY``) and, when
    that fails, retries without it; a compaction stall in between can move the task to another CPU
    (j_pressure_stock: 1 of 116 retries).  The retry belongs to the same fault: where the model
    served the first try, the kernel's retry is not the model's, on whichever CPU it comes."""
    node = small_node()
    first = g.parse_gfp("GFP_TRANSHUGE|__GFP_NORETRY|__GFP_THISNODE")
    rows = [("mm_page_alloc", 0, dict(pfn=0, order=9, migratetype=1, gfp=first, pid=4242)),  # failed locally
            ("mm_page_alloc", 1, dict(pfn=0x200, order=9, migratetype=1, gfp=g.parse_gfp("GFP_TRANSHUGE"),
                                      pid=4242)),
            ("mm_page_free", 1, dict(pfn=0x200, order=9))]
    r = Replayer(node, events(rows), mode="policy")
    r.run_until(10**9)
    r.finalize()
    assert r.stats.quirks.get("thp_retry_not_needed_in_model") == 1
    assert r.pages.counts["thp_fault_alloc"] + r.pages.counts["thp_fault_fallback"] == 1  # one fault
    # the retry the model did not need is neither a request nor a failure of the run's
    assert not r.stats.failures and sum(r.stats.requests.values()) == 1
    node.check()


def test_mirror_batched_free_beyond_memory_is_counted_once():
    """A batched free after mm_page_free of the same pfn is ``batched_after_free``; beyond memory it is
    not counted a second time as ``pfn_outside_memory``."""
    node = small_node()  # 4096 pages
    big = 1 << 20
    rows = [("mm_page_free", 0, dict(pfn=big, order=0)),
            ("mm_page_free_batched", 0, dict(pfn=big, order=0)),
            ("mm_page_free_batched", 0, dict(pfn=big + 1, order=0))]
    r = Replayer(node, events(rows))
    r.run_until(10**9)
    assert r.stats.quirks == {"batched_after_free": 1, "pfn_outside_memory": 2} and r.stats.replayed == 0
    assert r.stats.replayed + sum(r.stats.quirks.values()) == len(rows)


def _event_lines(path) -> dict:
    """Events per name in an ftrace text trace, counted with a regex over the decompressed lines
    (independent of kmemdes' parser)."""
    from collections import Counter

    from tests._tracescan import scan

    return dict(Counter(m.group(1).decode() for m in scan(
        path, rb"(?m)^ *\S.*?\[\d{3}\] \S+ +\d+\.\d+: (\w+): ")))


def _small_machine_config(trace, mode):
    from kmemdes.config import parse_config

    # the replay-what-if experiment's machine: 256 MiB, far below the pfns of the captures
    return parse_config(f'name = "small-{mode}"\nduration = "30s"\nseed = 1\n[machine]\nmem = "256M"\n'
                        f'[[workloads]]\nkind = "replay"\ntrace = "{trace}"\nmode = "{mode}"\n')


@pytest.mark.parametrize("mode", ["mirror", "policy"])
@pytest.mark.parametrize("name", ["b_compile_head", "a_idle_stream"])
def test_every_event_is_counted_exactly_once(tmp_path, shipped, name, mode):
    """replayed + the rule counts == the events of the trace, as a regex over its lines counts them:
    on the capture's own machine and on a 256 MiB one (where mirror mode counts pfns beyond memory)."""
    from kmemdes.sim.engine import run_config

    expect = _event_lines(shipped / name / "trace.txt.zst")
    n = sum(expect.values())
    assert n == {"b_compile_head": 200_000, "a_idle_stream": 16_177}[name]  # zstdcat | wc -l: one event a line
    _, own = replay_trace(shipped / name, tmp_path / "own", mode=mode, progress=False)
    _, small = run_config(_small_machine_config(shipped / name, mode), tmp_path / "small", progress=False)
    for s in (own, small):
        assert s["events_by_type"] == expect
        assert s["events"] == n
        assert s["events_replayed"] + sum(s["quirks"].values()) == n, s["quirks"]
    assert "pfn_outside_memory" not in own["quirks"]
    if mode == "mirror":
        assert small["quirks"]["pfn_outside_memory"] > 0
        # batched frees after mm_page_free of their pfn are that rule, whatever their pfn
        assert small["quirks"]["batched_after_free"] == own["quirks"]["batched_after_free"]
    else:
        # policy mode: the pfns are labels, the machine's size does not change what is replayed
        assert "pfn_outside_memory" not in small["quirks"]
        assert small["events_replayed"] == own["events_replayed"] and small["quirks"] == own["quirks"]


def test_mirror_free_in_the_pageblock_shared_by_normal_and_highmem_goes_to_highmem():
    # x86-32 with 1 GiB: lowmem ends at MAXMEM_PFN 0x36ffe (arch/x86/mm/init_32.c), inside a
    # pageblock; page_zone() of pfn 0x36ffe is HighMem, so its free goes to HighMem's pcp list
    from kmemdes.mm.kernel import Kernel
    from kmemdes.mm.layout import x86_32_max_low_pfn

    node = Kernel("x86_32", "1G", cpus=1, seed=1).node
    low = x86_32_max_low_pfn((1 << 30) >> 12)
    assert low == 0x36FFE and node.split_pageblocks() == {low >> 9}
    rows = [("mm_page_alloc", 0, dict(pfn=low, order=0, migratetype=1, gfp=g.GFP_HIGHUSER_MOVABLE)),
            ("mm_page_free", 0, dict(pfn=low, order=0)),
            # a drain in the trace: frees go to the pcp lists inline, as the trace shows them
            ("mm_page_alloc", 0, dict(pfn=0x10000, order=0, migratetype=1, gfp=g.GFP_HIGHUSER_MOVABLE)),
            ("mm_page_free", 0, dict(pfn=0x10000, order=0)),
            ("mm_page_pcpu_drain", 0, dict(pfn=0x10000, order=0, migratetype=1))]
    r = Replayer(node, events(rows))
    r.run_until(10**9)
    assert r.stats.replayed == len(rows)
    counts = {z.name: sum(p.count for p in z.pcp) for z in node.zones}
    assert counts == {"DMA": 0, "Normal": 0, "HighMem": 1}
    node.check()


@pytest.mark.parametrize("mode, applied", [("policy", 1), ("mirror", 2)])
def test_policy_mode_lets_the_daemons_act_every_100_us(mode, applied):
    """A replay applies a tick's events at the tick's start and kswapd/kcompactd run between ticks:
    policy mode's tick is 100 us (replay.POLICY_TICK_NS: the kernel's kswapd starts within tens of
    us of a wake-up, on the other CPU), mirror mode's 1 ms.  Two requests 550 us apart: at 450 us
    of simulated time policy mode has applied the first only (the second's tick starts at 500 us),
    mirror mode both (one tick from 0)."""
    from kmemdes.config import parse_config
    from kmemdes.sim.engine import Sim

    rows = [("mm_page_alloc", 0, dict(pfn=64, order=0, migratetype=1, gfp=g.GFP_HIGHUSER_MOVABLE)),
            ("mm_page_alloc", 0, dict(pfn=65, order=0, migratetype=1, gfp=g.GFP_HIGHUSER_MOVABLE))]
    ev = events(rows).with_columns(ts=pl.Series([0, 550_000], dtype=pl.Int64))
    sim = Sim(parse_config("[machine]\nmem = \"64M\"\n"), small_node(), [])
    r = sim.add_replay(ev, mode, "t")
    sim.env.run(until=450_000)
    assert r.pos == applied
    sim.env.run(until=1_000_001)
    assert r.pos == 2
