"""kswapd and kcompactd processes against the kernel's sleep/wake rules (KERNEL.md section 7).

Times are derived from the rules (HZ/10 nap, 500 ms kcompactd timer, the
<< 6 backoff) and from DaemonCosts applied to the work counters, which are
themselves checked against hand-computed values in tests/mm.
"""

from __future__ import annotations

import pytest
import simpy

from kmemdes.errors import KmemdesError
from kmemdes.mm import gfp as g
from kmemdes.mm.compaction import Compaction, CompactWork, fragmentation_score_node
from kmemdes.mm.mm_init import build_node, parse_size
from kmemdes.mm.page_alloc import MIGRATE_UNMOVABLE, PAGEBLOCK_NR_PAGES, ZONE_BOOSTED_WATERMARK, ZONE_RECLAIM_ACTIVE
from kmemdes.mm.reclaim import Reclaim, ReclaimWork, pgdat_balanced
from kmemdes.sim.daemons import (KSWAPD_WAKE_LATENCY_NS, DaemonCosts, draw_quantile, kcompactd, kswapd, run_priced,
                                 start_daemons)
from tests.mm.test_compaction import READAHEAD, fragmented, fragmented_page_cache, machine, occupy_zone, release

S = 1_000_000_000
MS = 1_000_000


def events(log, name):
    return [e for e in log if e[1] == name]


def fill_with_page_cache(node, rec):
    """Allocate movable pages down to the min watermarks and make them page cache."""
    pfns = []
    while (p := node.alloc_pages(g.GFP_HIGHUSER_MOVABLE, 0)) >= 0:
        pfns.append(p)
    rec.add_file_pages(pfns, 0, None)
    return pfns


def test_costs_defaults_and_validation():
    c = DaemonCosts()
    assert c.reclaim_ns_per_page == 2000 and c.kswapd_nap_ns == 100 * MS and c.kcompactd_interval_ns == 500 * MS
    assert 1000 <= c.migrate_ns <= 3000  # KERNEL.md section 17: ~1-3 us per migrated page
    assert c.compaction_ns(CompactWork(migrated=10)) == 10 * c.migrate_ns
    assert DaemonCosts(reclaim_pages_per_s=250_000).reclaim_ns(ReclaimWork(10, 10, 0)) == 40_000
    # shrink_folio_list works per folio: an order-9 folio costs one folio plus 511 cheap tail pages
    assert c.reclaim_ns(ReclaimWork(512, 512, 0, folios=1)) == c.reclaim_ns_per_page + 511 * c.reclaim_tail_page_ns
    assert c.reclaim_ns(ReclaimWork(512, 512, 0, folios=1)) < c.reclaim_ns(ReclaimWork(512, 512, 0)) // 10
    with pytest.raises(KmemdesError):
        DaemonCosts(migrate_ns=-1)
    with pytest.raises(KmemdesError):
        DaemonCosts(reclaim_pages_per_s=0)


def test_kswapd_wake_latency_follows_the_pressure_captures():
    """The scheduling delay of a woken kswapd is drawn from the 429 wake-ups of the pressure captures
    (``mm_vmscan_wakeup_kswapd`` -> next ``mm_vmscan_kswapd_wake``; traces/README.md): three in four
    within 0.1 ms, a quarter 0.4-8 ms; the same seed gives the same delays."""
    import random

    rng = random.Random(1)
    draws = sorted(draw_quantile(KSWAPD_WAKE_LATENCY_NS, rng.random()) for _ in range(20_000))
    assert draws[0] >= 4_000 and draws[-1] <= 8_058_000
    assert 0.70 <= sum(d < 100_000 for d in draws) / len(draws) <= 0.78
    assert 40_000 <= draws[len(draws) // 2] <= 70_000  # the captures' median: 55 us
    with pytest.raises(KmemdesError):
        DaemonCosts(kswapd_wake_latency_ns=(5, 1))

    def first_wake(seed):
        node = build_node("x86_64", parse_size("256M"), cpus=1)
        rec = Reclaim(node)
        env = simpy.Environment()
        log = []
        env.process(kswapd(env, node, log=log, seed=seed))

        def workload(env):
            yield env.timeout(1 * S)
            fill_with_page_cache(node, rec)

        env.process(workload(env))
        env.run(until=2 * S)
        return events(log, "kswapd_wake")[0][0]

    assert first_wake(3) == first_wake(3)
    assert len({first_wake(s) for s in range(6)}) > 1


def test_daemons_need_their_models():
    node = build_node("x86_64", parse_size("256M"), cpus=1)
    env = simpy.Environment()
    with pytest.raises(KmemdesError):
        next(kswapd(env, node))
    with pytest.raises(KmemdesError):
        next(kcompactd(env, node))
    assert start_daemons(env, node) == []


def test_run_priced_advances_time_by_the_work_in_quanta():
    env = simpy.Environment()
    out = {}

    def steps():
        for _ in range(10):
            yield 300_000
        return "done"

    def proc(env):
        out["r"] = yield from run_priced(env, steps(), lambda w: w, 1_000_000)
        out["t"] = env.now

    env.process(proc(env))
    env.run()
    assert out == {"r": "done", "t": 3_000_000}


def test_kswapd_naps_then_sleeps_on_a_balanced_node():
    node = build_node("x86_64", parse_size("256M"), cpus=1)
    Reclaim(node)
    env = simpy.Environment()
    log = []
    env.process(kswapd(env, node, log=log))
    env.run(until=10 * S)
    assert log == [(100 * MS, "kswapd_sleep")]  # kswapd_try_to_sleep: HZ/10 nap, then schedule()
    node.wakeup_kswapd(node.zones[1], 0, 1)  # balanced, not boosted: the wake-up is ignored
    env.run(until=11 * S)
    assert len(log) == 1 and node.kswapd_wakeups == 1


def test_kswapd_woken_by_the_allocator_reclaims_at_its_rate_then_sleeps():
    node = build_node("x86_64", parse_size("256M"), cpus=1)
    rec = Reclaim(node)
    env = simpy.Environment()
    log = []
    env.process(kswapd(env, node, log=log))

    def workload(env):
        yield env.timeout(1 * S)
        fill_with_page_cache(node, rec)  # the slow path wakes kswapd (wakeup_kswapd on the zonelist)

    env.process(workload(env))
    env.run(until=5 * S)
    assert node.kswapd_wakeups > 0
    assert events(log, "kswapd_wakeup")[0][0] == 1 * S
    wake = events(log, "kswapd_wake")[0]
    # it runs once a CPU is free: within the slowest wake-up the pressure captures show (8.06 ms)
    assert 1 * S < wake[0] <= 1 * S + KSWAPD_WAKE_LATENCY_NS[-1]
    assert wake[2:] == (0, 3)  # order 0; gfp_zone(GFP_HIGHUSER_MOVABLE) = ZONE_MOVABLE
    done = events(log, "kswapd_balanced")[0][0]
    v = rec.vmstat
    assert v["pgsteal_kswapd"] > 0
    # time spent = the price of the work (pages reclaimed at 500k/s, kept pages at 100 ns)
    assert done - wake[0] == DaemonCosts().reclaim_ns(ReclaimWork(v["pgscan_kswapd"], v["pgsteal_kswapd"], 0))
    assert events(log, "kswapd_sleep")[-1][0] == done + 100 * MS
    assert not rec.kswapd_running


def test_boost_flag_wakes_kswapd_which_clears_the_boost_and_wakes_kcompactd():
    node = build_node("x86_64", parse_size("256M"), cpus=1)
    rec = Reclaim(node)
    comp = Compaction(node)
    zone = node.zones[1]
    pfns = [node.alloc_pages(g.GFP_HIGHUSER_MOVABLE, 0) for _ in range(40000)]
    rec.add_file_pages(pfns, 0, None)
    env = simpy.Environment()
    log = []
    start_daemons(env, node, log=log)

    def workload(env):
        yield env.timeout(1 * S)
        # what a fragmenting fallback does (boost_watermark with ALLOC_KSWAPD)
        zone.watermark_boost = 512
        zone.flags |= ZONE_BOOSTED_WATERMARK
        assert node.alloc_pages(g.GFP_KERNEL, 0) >= 0  # rmqueue clears the flag and wakes kswapd

    env.process(workload(env))
    env.run(until=3 * S)
    assert not zone.flags & ZONE_BOOSTED_WATERMARK
    assert 1 * S < events(log, "kswapd_wake")[0][0] <= 1 * S + KSWAPD_WAKE_LATENCY_NS[-1]
    assert zone.watermark_boost == 0 and rec.vmstat["pgsteal_kswapd"] >= 512
    # balance_pgdat woke kcompactd at pageblock order; memory is not fragmented, so the request is
    # only recorded and kcompactd takes it at its next timer expiry (a multiple of 500 ms; the
    # 1 s expiry itself when the balance run priced under a quantum): nothing to compact
    kc = events(log, "kcompactd_wake")
    assert kc and kc[0][0] in (1000 * MS, 1500 * MS) and kc[0][2] == 9
    assert comp.vmstat["compact_daemon_wake"] == 1 and comp.vmstat["pgmigrate_success"] == 0
    assert comp.kcompactd_max_order == 0


def test_kcompactd_proactive_compaction_on_its_timer():
    node, comp, owner, zone = fragmented()
    Reclaim(node)
    before = fragmentation_score_node(node)
    assert before > 90  # above fragmentation_score_wmark(high) = 90
    env = simpy.Environment()
    log = []
    start_daemons(env, node, log=log)
    env.run(until=3 * S)
    runs = events(log, "kcompactd_proactive")
    assert len(runs) == 1  # the score fell to <= 90: later timer expiries do nothing
    t, _, prev, after = runs[0]
    assert prev == before and after < prev and after <= 90
    v = comp.vmstat
    cost = DaemonCosts().compaction_ns(CompactWork(v["compact_migrate_scanned"], v["compact_free_scanned"],
                                                   v["compact_isolated"], v["pgmigrate_success"],
                                                   v["pgmigrate_fail"], v["compact_steps"]))
    assert t == 500 * MS + cost and v["compact_proactive_runs"] == 1
    node.check()


def test_kcompactd_backs_off_when_proactive_compaction_makes_no_progress():
    node, comp, dma, zone = machine()
    Reclaim(node)
    occupy_zone(node, dma, MIGRATE_UNMOVABLE)
    pages = occupy_zone(node, zone, MIGRATE_UNMOVABLE)  # fragmented but nothing migratable
    release(node, [p for p in pages if p % 4])
    env = simpy.Environment()
    log = []
    start_daemons(env, node, log=log)
    env.run(until=40 * S)
    runs = events(log, "kcompactd_proactive")
    assert len(runs) == 2 and runs[0][2] == runs[0][3]  # no progress
    cost = runs[0][0] - 500 * MS
    assert cost > 0
    # next check after default_timeout << COMPACT_MAX_DEFER_SHIFT = 32 s
    assert runs[1][0] == runs[0][0] + 32 * S + cost


def test_kcompactd_woken_for_an_order_restores_it():
    node, comp, owner, zone = fragmented(proactiveness=0)  # no timer: sleeps until woken
    env = simpy.Environment()
    log = []
    env.process(kcompactd(env, node, log=log))
    woke = {}

    def waker(env):
        yield env.timeout(1 * S)
        woke["r"] = comp.wakeup_kcompactd(9, zone.idx)

    env.process(waker(env))
    env.run(until=60 * S)
    assert woke["r"] is True
    assert [e[0] for e in events(log, "kcompactd_wake")] == [1 * S]
    assert node.zone_watermark_ok(zone, 9, zone._watermark[0], zone.idx, 0)
    assert events(log, "kcompactd_proactive") == []
    # asleep again: a request that is already satisfied does not wake it
    assert comp.wakeup_kcompactd(9, zone.idx) is False


@pytest.mark.parametrize("seed", [0, 1])
def test_random_workload_with_both_daemons_keeps_every_invariant(seed):
    """A mixed workload (page cache, anonymous pages, kernel pages, THP) under pressure on 128 MiB.

    Direct reclaim, direct compaction, kswapd and kcompactd all run; afterwards the buddy
    invariants hold, every owner's view matches rmap, and the LRU counts match zone.reclaimable.
    """
    import random

    from tests.mm.test_compaction import Owner

    node = build_node("x86_64", parse_size("128M"), cpus=2)
    rec, comp = Reclaim(node), Compaction(node, seed=seed)
    env = simpy.Environment()
    log = []
    start_daemons(env, node, log=log)
    rng = random.Random(seed)
    anon = Owner()
    cache_pages: set[int] = set()

    class Cache(Owner):
        def migrate_page(self, old, new, order):
            super().migrate_page(old, new, order)
            cache_pages.discard(old)
            cache_pages.add(new)

        def reclaim_page(self, pfn, order):
            cache_pages.discard(pfn)
            del self.pages[pfn]

    cache = Cache()
    kern: list[tuple[int, int]] = []

    def workload(env):
        # fill (page cache, anon, some kernel pages) past the watermarks, then churn: frees of
        # anonymous memory and truncates leave scattered holes, THP requests need compaction
        for step in range(7000):
            yield env.timeout(rng.randrange(1_000, 50_000))
            fill = step < 3000
            r = rng.random()
            cpu = rng.randrange(2)
            if r < (0.5 if fill else 0.15):
                p = node.alloc_pages(g.GFP_HIGHUSER_MOVABLE, 0, cpu=cpu)
                if p >= 0:
                    rec.add_file_pages([p], 0, cache)
                    cache.pages[p] = 0
                    cache_pages.add(p)
            elif r < (0.85 if fill else 0.3):
                p = node.alloc_pages(g.GFP_HIGHUSER_MOVABLE, 0, cpu=cpu)
                if p >= 0:
                    node.rmap[p] = anon
                    anon.pages[p] = 0
            elif r < (0.95 if fill else 0.35):
                o = rng.choice([0, 1, 2, 3])
                p = node.alloc_pages(g.GFP_KERNEL, o, cpu=cpu)
                if p >= 0:
                    kern.append((p, o))
            elif r < (0.96 if fill else 0.45):
                flags = g.GFP_TRANSHUGE | (g.__GFP_RETRY_MAYFAIL if rng.random() < 0.3 else 0)
                p = node.alloc_pages(flags, 9, cpu=cpu)
                if p >= 0:
                    node.rmap[p] = anon
                    anon.pages[p] = 9
            elif r < 0.75 and anon.pages:
                p = rng.choice(sorted(anon.pages))
                o = anon.pages.pop(p)
                del node.rmap[p]
                node.free_pages(p, o, cpu=cpu)
            elif r < 0.95 and cache_pages:
                p = rng.choice(sorted(cache_pages))
                cache_pages.discard(p)
                del cache.pages[p]
                rec.remove_file_pages([p])
            elif kern:
                p, o = kern.pop(rng.randrange(len(kern)))
                node.free_pages(p, o, cpu=cpu)
            if step % 1000 == 999:
                node.check()

    env.process(workload(env))
    env.run(until=2 * S)
    node.check()
    assert set(cache.pages) == cache_pages
    assert all(node.rmap[p] is rec and rec.is_page_cache(p) for p in cache_pages)
    assert all(node.rmap[p] is anon and node.alloc_order[p] == o for p, o in anon.pages.items())
    assert len(node.rmap) == len(cache_pages) + len(anon.pages)
    assert rec.nr_file_pages() == len(cache_pages) == sum(z.reclaimable for z in node.zones)
    v = rec.vmstat
    assert v["pgsteal_direct"] + v["pgsteal_kswapd"] > 0  # memory pressure was reached
    assert v["pgsteal_kswapd"] <= v["pgscan_kswapd"] and v["pgsteal_direct"] <= v["pgscan_direct"]
    assert comp.vmstat["compact_stall"] > 0 and comp.vmstat["pgmigrate_success"] > 0
    assert not rec.kswapd_running


def _page_cache_with_kswapd(latency_ns: int = 0):
    """:func:`fragmented_page_cache` with a kswapd process (its wake-up delay ``latency_ns``; 0: a CPU
    free at once, the rule alone): node, comp, zone, pfns, env and kswapd's log."""
    node, comp, zone, pfns = fragmented_page_cache()  # the lowest pfns at the inactive tail: reclaimed first
    env = simpy.Environment()
    log = []
    env.process(kswapd(env, node, DaemonCosts(kswapd_wake_latency_ns=(latency_ns, latency_ns)), log=log))
    return node, comp, zone, pfns, env, log


@pytest.mark.parametrize("concurrent", [True, False])
def test_kswapd_reclaims_during_a_direct_compaction_stall(concurrent):
    """``node.on_stall``: each step of a direct compaction takes its task the price of its scans;
    kswapd, woken by the same slow path (``wake_all_kswapds`` runs first), reclaims on another CPU
    meanwhile, so the next ``compact_finished`` check and the task's free-list retry see the block
    kswapd's frees completed (k_pressure_defrag:
    110 readahead compactions ended "complete" and were followed by a successful order-9 allocation,
    most of them of a block kswapd's order-0 frees finished during the 2.4 ms stall).

    Here DMA32 holds one page-cache page in every four (the rest free in order-1/0 pieces); readahead's
    GFP_NOFS compaction cannot move page cache, so only reclaim can complete a block."""
    from kmemdes.mm.page_alloc import PATH_COMPACT

    node, comp, zone, pfns, env, log = _page_cache_with_kswapd()
    rec = node.reclaim
    got = []

    def workload(env):
        yield env.timeout(1 * S)
        assert events(log, "kswapd_sleep"), "kswapd sleeps on the balanced node before the request"
        if not concurrent:
            node.on_stall = node.on_stall_end = None
        got.append(node.alloc_pages(READAHEAD, 9))
        got.append(node.last_path)
        got.append(any(z.flags & ZONE_RECLAIM_ACTIVE for z in node.zones))

    env.process(workload(env))
    env.run(until=2 * S)
    v = comp.vmstat
    assert v["compact_stall"] >= 1
    if concurrent:
        # kswapd reclaimed from the tail (the lowest blocks) during the stall: the retry got one of them
        assert v["compact_success"] == 1 and got[1] == PATH_COMPACT
        assert got[0] >> 9 == pfns[0] >> 9
        assert rec.vmstat["pgsteal_kswapd"] >= PAGEBLOCK_NR_PAGES // 4
        # kswapd's balance_pgdat goes on after the compaction (its own thread): the zones are still
        # flagged, and the kswapd process takes the run over, ends it and naps
        assert got[2]
        assert not any(z.flags & ZONE_RECLAIM_ACTIVE for z in node.zones) and not rec.kswapd_running
        assert events(log, "kswapd_balanced")[-1][0] > 1 * S
        # one run, counted once: the kswapd process did not start another balance_pgdat of its own
        assert rec.vmstat["pageoutrun"] == len(events(log, "kswapd_wake"))
        # kswapd ran beside each step: the compaction stopped at the first compact_finished after a block
        # was whole (j_pressure_stock's first readahead compactions: "success" after a few blocks),
        # instead of scanning the zone's 120 pageblocks and marking them all skip
        assert v["compact_steps"] < 20
    else:
        assert v["compact_success"] == 0 and v["compact_fail"] >= 1
        assert v["compact_steps"] > 100


def test_a_stall_shorter_than_kswapds_run_hands_the_run_to_kswapd():
    """on_stall runs balance_pgdat only for the compaction steps' price; when the compaction returns
    (on_stall_end) the run is not over: kswapd is its own thread, so its balance_pgdat goes on
    (ZONE_RECLAIM_ACTIVE still set) until the kswapd process, once it has a CPU, ends it (the flag
    cleared, the node balanced) - one run, one ``pageoutrun``, then its nap."""
    def stall(latency_ns):
        node, comp, zone, pfns, env, log = _page_cache_with_kswapd(latency_ns)
        rec = node.reclaim
        seen = []

        def workload(env):
            yield env.timeout(1 * S)
            runs = rec.vmstat["pageoutrun"]
            node.wakeup_kswapd(zone, 9, 3, READAHEAD)  # the slow path's wake_all_kswapds
            node.on_stall(CompactWork(steps=1))  # one compaction step, 20 us: about ten pages' reclaim
            seen.append(rec.kswapd_running)  # running beside the compaction
            node.on_stall_end()  # try_to_compact_pages returned
            seen.append((rec.vmstat["pgsteal_kswapd"], any(z.flags & ZONE_RECLAIM_ACTIVE for z in node.zones),
                         rec.kswapd_running))
            yield env.timeout(S // 2)
            seen.append((rec.vmstat["pageoutrun"] - runs, any(z.flags & ZONE_RECLAIM_ACTIVE for z in node.zones),
                         rec.kswapd_running, pgdat_balanced(node, 0, 3)))

        env.process(workload(env))
        env.run(until=2 * S)
        return seen

    during, (stolen, flagged, running), after = stall(0)  # a CPU free at once
    assert during and 0 < stolen < PAGEBLOCK_NR_PAGES // 4 and flagged and running
    assert after == (1, False, False, True)
    # a kswapd still waiting for a CPU (the captures' slowest quarter: 0.4-8 ms) does nothing in 20 us,
    # (its balance_pgdat not begun: no zone flagged), and its run starts when it gets the CPU
    _, (stolen, flagged, running), after = stall(1_000_000)
    assert stolen == 0 and not flagged
    assert after == (1, False, False, True)


def test_a_run_that_ends_inside_the_stall_naps_there():
    """A run the stall started that balances the node before the compaction returns goes straight to
    kswapd_try_to_sleep, as the kswapd thread does: the nap resets the skip bits the direct
    compactions left (``compact_blockskip_flush``) and wakes kcompactd; the next slow path's wake-up
    (the node unbalanced at its order again) starts the next run in the next stall, one
    ``pageoutrun`` each, and the kswapd process does not run a third of its own."""
    node, comp, zone, pfns, env, log = _page_cache_with_kswapd()
    rec = node.reclaim
    seen = []

    def workload(env):
        yield env.timeout(1 * S)
        runs = rec.vmstat["pageoutrun"]
        comp._zs(zone).blockskip_flush = True  # a direct compaction's scanners met in Normal
        node.wakeup_kswapd(zone, 9, 3, READAHEAD)
        node.on_stall(CompactWork(steps=100_000))  # a long stall: kswapd balances the node within it
        seen.append((rec.vmstat["pageoutrun"] - runs, rec.kswapd_running, comp._zs(zone).blockskip_flush,
                     pgdat_balanced(node, 0, 3)))
        node.on_stall_end()
        # the readahead retry took the pages back: the node is short again, and the next slow path wakes kswapd
        while pgdat_balanced(node, 0, 3):
            if node.alloc_pages(g.GFP_NOWAIT | g.__GFP_MOVABLE, 0) < 0:
                break
        node.wakeup_kswapd(zone, 9, 3, READAHEAD)
        node.on_stall(CompactWork(steps=1))
        seen.append((rec.vmstat["pageoutrun"] - runs, rec.kswapd_running))
        node.on_stall_end()
        yield env.timeout(S // 2)
        seen.append(rec.vmstat["pageoutrun"] - runs)

    env.process(workload(env))
    env.run(until=2 * S)
    (runs, running, flush, balanced), (runs2, running2), runs3 = seen
    assert (runs, running, flush, balanced) == (1, False, False, True)  # ended, napped: skip bits reset
    assert (runs2, running2) == (2, True)  # the next stall's wake-up: a new run beside it
    assert runs3 == 2  # the kswapd process took that run over and ended it; no run of its own


def _kswapd_run_beside(stall: bool):
    """A kswapd run in 50 us slices (about 360 us in all), a direct compaction of five steps
    (100 us) starting just after it: pages it reclaimed during the stall, whether it still runs,
    when its run ended."""
    node, comp, zone, pfns = fragmented_page_cache()
    rec = node.reclaim
    env = simpy.Environment()
    log = []
    costs = DaemonCosts(quantum_ns=50_000, kswapd_wake_latency_ns=(0, 0))  # a CPU free at once
    env.process(kswapd(env, node, costs, log=log))
    seen = []

    def workload(env):
        yield env.timeout(1 * S)
        node.wakeup_kswapd(zone, 9, 3, READAHEAD)
        yield env.timeout(1)  # kswapd started its run (its first slice of work done ahead)
        assert rec.kswapd_running
        before = rec.vmstat["pgsteal_kswapd"]
        if stall:
            node.on_stall(CompactWork(steps=5))
            node.on_stall_end()
        seen.append((rec.vmstat["pgsteal_kswapd"] - before, rec.kswapd_running))

    env.process(workload(env))
    env.run(until=2 * S)
    (during, running), = seen
    return during, running, events(log, "kswapd_balanced")[0][0], costs


def test_a_running_kswapd_goes_on_during_a_stall_and_owes_the_time():
    """A kswapd already in ``balance_pgdat`` when a direct compaction starts keeps reclaiming beside
    it (k_pressure_defrag: kswapd0 freed ~1,600 DMA32 pages during each readahead compaction that
    ran to completion, 1.4 ms median, and the retry then got a DMA32 block).  The stall moves kswapd's
    work earlier, it adds no CPU: its process sleeps off the time the stall drove it, so its run ends
    when it would have ended without the stall."""
    during, running, end, costs = _kswapd_run_beside(True)
    assert running  # its own run goes on after the compaction
    assert during >= 100_000 // costs.reclaim_ns_per_page  # the stall's worth of base pages
    during0, _, end0, _ = _kswapd_run_beside(False)
    assert during0 == 0
    assert abs(end - end0) <= costs.quantum_ns
