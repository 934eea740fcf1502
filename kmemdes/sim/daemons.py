"""kswapd and kcompactd as SimPy processes (mm/vmscan.c ``kswapd``, mm/compaction.c ``kcompactd``).

Each daemon is one generator function taking the SimPy environment first;
time is in integer nanoseconds.  The daemons never re-decide what the models
decide: kswapd drives :meth:`kmemdes.mm.reclaim.Reclaim.balance_pgdat_steps`
and kcompactd drives :meth:`kmemdes.mm.compaction.Compaction.kcompactd_do_work`
and ``proactive_compact_node``; between the models' steps they advance
simulated time by the price of the work done (:class:`DaemonCosts`), in
chunks of at least ``quantum_ns`` so that a long reclaim or compaction run
interleaves with the workload without one SimPy event per page.

kswapd (``kswapd`` / ``kswapd_try_to_sleep`` / ``wakeup_kswapd``)
    Woken through ``node.on_wakeup_kswapd`` (the page allocator's slow path
    and the boost flag).  A wake-up is ignored while kswapd runs (the request
    is recorded and read at its next loop), when the node is hopeless (16
    runs without progress) or already balanced and not boosted (a caller
    that cannot direct-reclaim then wakes kcompactd, when the allocator
    passes the gfp mask).  After balancing it resets compaction's skip hints,
    wakes kcompactd at the order it was asked for, naps HZ/10 (100 ms) and
    sleeps fully if still balanced (``kswapd_low/high_wmark_hit_quickly``
    otherwise).  While it reclaims, ``node.reclaim.kswapd_running`` is True
    (proactive compaction backs off).

kcompactd
    Sleeps on a 500 ms timer (HPAGE_FRAG_CHECK_INTERVAL_MSEC; forever when
    proactiveness is 0) or until ``wakeup_kcompactd`` finds a suitable zone.
    With work requested it runs ``kcompactd_do_work``; on a timer expiry it
    runs proactive compaction when the node score exceeds the high mark,
    and backs the timer off to 500 ms << 6 (32 s) when the score did not
    improve.

>>> import simpy
>>> from kmemdes.mm.mm_init import build_node, parse_size
>>> from kmemdes.mm.compaction import Compaction
>>> from kmemdes.mm.reclaim import Reclaim
>>> node = build_node("x86_64", parse_size("256M"), cpus=1)
>>> rec, comp = Reclaim(node), Compaction(node)
>>> env = simpy.Environment()
>>> log = []
>>> procs = start_daemons(env, node, log=log)
>>> env.run(until=2 * 10**9)
>>> [e for e in log if e[1] == "kswapd_sleep"][:1]     # balanced at boot: a 100 ms nap, then a full sleep
[(100000000, 'kswapd_sleep')]
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Generator, Optional

from kmemdes.errors import KmemdesError
from kmemdes.mm import gfp as _gfp
from kmemdes.mm.compaction import (
    COMPACT_MAX_DEFER_SHIFT,
    HPAGE_FRAG_CHECK_INTERVAL_MSEC,
    CompactWork,
    fragmentation_score_node,
)
from kmemdes.mm.page_alloc import Node
from kmemdes.mm.reclaim import ReclaimWork, pgdat_balanced, pgdat_watermark_boosted

__all__ = ["DaemonCosts", "kswapd", "kcompactd", "start_daemons", "run_priced"]

_NS_PER_S = 1_000_000_000

#: from ``wakeup_kswapd`` (``mm_vmscan_wakeup_kswapd``: kswapd was waiting and is woken) to kswapd starting
#: ``balance_pgdat`` (the next ``mm_vmscan_kswapd_wake``), quantiles 0, 5, ..., 100 % of the 429 wake-ups of the
#: pressure captures k_pressure_defrag and j_pressure_stock (2 vCPUs kept busy by two compilers, a stream
#: and a THP burst): three in four start within 0.1 ms, the rest wait 0.4-8 ms for a CPU
KSWAPD_WAKE_LATENCY_NS = (4_000, 10_000, 13_800, 21_000, 27_000, 31_000, 39_000, 43_000, 47_000, 50_000, 55_000,
                          58_000, 62_000, 72_199, 98_199, 433_000, 868_400, 1_419_800, 2_573_599, 3_287_799,
                          8_058_000)


def draw_quantile(q: tuple, u: float) -> int:
    """Inverse CDF of evenly spaced quantiles ``q`` (0 %, ..., 100 %) at ``u`` in [0, 1), linear between them.

    >>> draw_quantile((0, 10, 100), 0.25), draw_quantile((0, 10, 100), 0.75)
    (5, 55)
    """
    x = u * (len(q) - 1)
    i = int(x)
    return int(q[i] + (q[i + 1] - q[i]) * (x - i))


@dataclass
class DaemonCosts:
    """Per-page costs of reclaim and compaction work, in ns (override any field).

    Compaction (KERNEL.md section 17: "~1-3 us per migrated 4 KiB page, a
    zone scan ms to s"): ``migrate_ns`` 2000 is the middle of 1-3 us.  The
    scanner costs follow Mel Gorman's compaction cost model (commit "mm:
    compaction: Add scanned and isolated counters for compaction", 2012):
    scanning a pfn costs one ``struct page`` access, Ca = 64 B / 8 = 8 words,
    a migrated page copy Cmc = 2 (Ca + 4096 / 8) = 1040 words, a failed
    migration Cmf = 2 Ca; so scanning ~ 2000 * 8 / 1040 = 15 ns, a failure
    ~ 30 ns, isolation ~ Ca plus a lock round trip ~ 50 ns.  A full scan of a
    16 GiB zone (4 M pfns) then costs ~60 ms, inside the "ms to s" range.

    Each migrate-scanner step costs ``compact_step_ns`` on top: one
    ``compact_finished`` check with the pageblock's isolation, the free-list
    searches and the finish test.  Fitted by least squares on the pressure
    captures' 521 compaction runs (``mm_compaction_begin`` to ``_end``, against
    their ``mm_compaction_finished`` events, scanned pfns and migrated pages):
    19.9 us per step, 2.9 us per migrated page, the scans in the noise.  Their
    readahead compactions (GFP_NOFS, page cache not movable) scan ~124 blocks
    and migrate nothing in 2.4 ms, which per-pfn prices alone put at ~60 us.
    A pageblock the migrate scanner passes over (marked skip, offline or not a
    suitable source: ``isolate_migratepages``' ``continue``, with its
    ``pageblock_pfn_to_page`` and skip-bit read) costs ``skip_block_ns`` 35:
    k_pressure_defrag's 10,750 pageblocks that one hugetlb page fills each are
    marked skip for good, and the quickest tenth of its direct compactions
    that ended ``complete`` (scanners met: every block passed) took 395 us or
    more, 37 ns per block.  Without it such a pass cost the model 20-40 us, and
    its direct compactions' median was 40-80 us against the kernel's 0.6-1.1 ms
    (``mm_compaction_try_to_compact_pages`` to ``mm_compaction_end``, j and k).

    Reclaim (no swap: clean page cache and slab), measured on the pressure
    captures: kswapd's runs (``mm_vmscan_kswapd_wake`` to its last
    ``mm_vmscan_lru_shrink_inactive`` before the next wake or sleep; the run
    time includes what the 2-vCPU machine's workload took of kswapd's CPU),
    their durations regressed on the base pages and the order-9 folios they
    reclaimed: k_pressure_defrag (383 runs, 338,726 base pages, 1,530 order-9
    folios) 0.84 us per base page and 28 us per order-9 folio;
    j_pressure_stock (45 runs, 155 order-9 folios) 0.72 us and 82 us.
    ``shrink_folio_list`` works per *folio* (isolating it,
    ``__remove_mapping``, one buddy free): ``reclaim_pages_per_s`` prices
    each reclaimed folio and ``reclaim_tail_page_ns`` 60 every further page
    of a large folio (28 us ~ 0.8 us + 511 x 53 ns), so a 512-page
    readahead folio costs ~16 times a base page, not 512 times.  The price of
    a base folio stays at the earlier estimate of 2 us (500,000 per s): the
    measured 0.8 us makes the stock replay (j_pressure_stock) serve THP
    faults far better than the kernel did (94 % vs 80 %), so something else
    (CPU contention with the workload, LRU order) is still missing there.  A scanned
    page that is kept (dirty, rotated) costs ``reclaim_scan_ns`` 100; a slab
    page a shrinker frees costs ``slab_page_ns`` (dentries/inodes are freed
    object by object).
    """

    migrate_ns: int = 2_000
    migrate_scan_ns: int = 15
    free_scan_ns: int = 15
    isolate_ns: int = 50
    migrate_fail_ns: int = 30
    compact_step_ns: int = 20_000
    skip_block_ns: int = 35
    reclaim_pages_per_s: int = 500_000
    reclaim_scan_ns: int = 100
    reclaim_tail_page_ns: int = 60
    slab_page_ns: int = 2_000
    kswapd_nap_ns: int = _NS_PER_S // 10  # HZ/10
    kswapd_wake_latency_ns: tuple = KSWAPD_WAKE_LATENCY_NS
    kcompactd_interval_ns: int = HPAGE_FRAG_CHECK_INTERVAL_MSEC * 1_000_000
    quantum_ns: int = 1_000_000  # daemons advance time in chunks of at least this

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if name == "kswapd_wake_latency_ns":
                if (not isinstance(value, tuple) or len(value) < 2 or any(not isinstance(v, int) or v < 0 for v in value)
                        or list(value) != sorted(value)):
                    raise KmemdesError("daemon cost kswapd_wake_latency_ns must be ascending non-negative integer "
                                       f"quantiles, got {value!r}")
                continue
            if not isinstance(value, int) or value < 0:
                raise KmemdesError(f"daemon cost {name} must be a non-negative integer, got {value!r}")
        if self.reclaim_pages_per_s <= 0:
            raise KmemdesError("daemon cost reclaim_pages_per_s must be positive")

    @property
    def reclaim_ns_per_page(self) -> int:
        return _NS_PER_S // self.reclaim_pages_per_s

    def reclaim_ns(self, work: ReclaimWork) -> int:
        """Price of reclaim work: reclaimed pages, pages scanned and kept, slab pages freed.

        >>> DaemonCosts().reclaim_ns(ReclaimWork(scanned=40, reclaimed=32, slab_freed=1))
        66800
        >>> DaemonCosts().reclaim_ns(ReclaimWork(scanned=512, reclaimed=512, folios=1))  # one order-9 folio
        32660
        """
        kept = max(0, work.scanned - work.reclaimed)
        folios = work.folios or work.reclaimed  # 0: one folio per page
        return folios * self.reclaim_ns_per_page + (work.reclaimed - folios) * self.reclaim_tail_page_ns + \
            kept * self.reclaim_scan_ns + work.slab_freed * self.slab_page_ns

    def compaction_ns(self, work: CompactWork) -> int:
        """Price of compaction work (Gorman's model with the defaults above).

        >>> DaemonCosts().compaction_ns(CompactWork(migrate_scanned=512, free_scanned=512, isolated=64,
        ...                                         migrated=32, failed=1, steps=1))
        102590
        """
        return (work.migrate_scanned * self.migrate_scan_ns + work.free_scanned * self.free_scan_ns
                + work.isolated * self.isolate_ns + work.migrated * self.migrate_ns
                + work.failed * self.migrate_fail_ns + work.steps * self.compact_step_ns
                + work.skipped * self.skip_block_ns)


def run_priced(env, steps: Generator, price: Callable[[object], int], quantum_ns: int):
    """Drive a model's step generator, advancing time by the price of its work; returns its result.

    Use as ``result = yield from run_priced(env, steps, price, quantum)``
    inside a SimPy process.
    """
    acc = 0
    while True:
        try:
            work = next(steps)
        except StopIteration as stop:
            if acc:
                yield env.timeout(acc)
            return stop.value
        acc += price(work)
        if acc >= quantum_ns:
            yield env.timeout(acc)
            acc = 0


def _run_shared(env, run: list, price: Callable[[object], int], quantum_ns: int):
    """:func:`run_priced` for a run that a stalled task also drives (kswapd beside a direct
    compaction): ``run`` is [steps, done, result, time owed]; the time others spent on its steps is
    added to its own before it goes on."""
    acc = 0
    while True:
        if not run[1]:
            try:
                work = next(run[0])
            except StopIteration as stop:
                run[1], run[2] = True, stop.value
            else:
                acc += price(work)
                if acc < quantum_ns:
                    continue
        acc += run[3]
        run[3] = 0
        if acc:
            yield env.timeout(acc)
            acc = 0
        if run[1] and not run[3]:
            return run[2]


class _Waker:
    """A sleeping daemon's wait queue: one SimPy event per sleep."""

    def __init__(self, env):
        self.env = env
        self.event = None
        self.sleeping = False

    def sleep(self):
        self.event = self.env.event()
        self.sleeping = True
        return self.event

    def wake(self) -> None:
        if self.sleeping and self.event is not None and not self.event.triggered:
            self.event.succeed()

    def woken(self) -> bool:
        return self.event is not None and self.event.triggered


def _log(log: Optional[list], *entry) -> None:
    if log is not None:
        log.append(entry)


def kswapd(env, node: Node, costs: Optional[DaemonCosts] = None, log: Optional[list] = None, seed: int = 0):
    """The kswapd process of ``node`` (needs ``node.reclaim``; uses ``node.compaction`` if attached).

    A wake-up takes effect after a scheduling delay drawn (``seed``) from
    ``costs.kswapd_wake_latency_ns``: on a machine whose CPUs are busy the woken kswapd waits for one.
    """
    rec = node.reclaim
    if rec is None or not hasattr(rec, "balance_pgdat_steps"):
        raise KmemdesError("kswapd needs a reclaim model: attach kmemdes.mm.reclaim.Reclaim(node) first")
    costs = costs or DaemonCosts()
    comp = node.compaction
    waker = _Waker(env)
    managed = [z.idx for z in node.zones if z.managed]
    top_zone = max(managed) if managed else 0
    req = {"order": 0, "hz": None}  # pgdat->kswapd_order / kswapd_highest_zoneidx (None = MAX_NR_ZONES)
    rng = random.Random(seed)
    lat_q = costs.kswapd_wake_latency_ns
    wake_at = [0]  # when the last wake-up lets kswapd run (the scheduling delay after wake_up_interruptible)

    def requested_zoneidx(default: int) -> int:
        """``kswapd_highest_zoneidx``: the requests' highest zone index, else ``default``."""
        return default if req["hz"] is None else req["hz"]

    def on_wakeup_kswapd(_node, order: int, highest_zoneidx: int, gfp: Optional[int] = None) -> None:
        """``wakeup_kswapd`` after the allocator recorded the request."""
        if req["hz"] is None or req["hz"] < highest_zoneidx:
            req["hz"] = highest_zoneidx
        if req["order"] < order:
            req["order"] = order
        if not waker.sleeping:
            return
        if rec.kswapd_hopeless() or (pgdat_balanced(node, order, highest_zoneidx)
                                     and not pgdat_watermark_boosted(node, highest_zoneidx)):
            if gfp is not None and not gfp & _gfp.__GFP_DIRECT_RECLAIM and comp is not None:
                comp.wakeup_kcompactd(order, highest_zoneidx)
            return
        _log(log, env.now, "kswapd_wakeup", order, highest_zoneidx)
        if not waker.woken():
            wake_at[0] = env.now + draw_quantile(lat_q, rng.random())
        waker.wake()

    node.on_wakeup_kswapd = on_wakeup_kswapd
    price = costs.reclaim_ns

    # the balance_pgdat run of the kswapd process: [steps, done, reclaim_order, time owed]
    run: list = [None, False, 0, 0]
    stall: list = [None, 0]  # the run a direct compaction drives (kswapd's own or one it starts), time owed
    # a run a stall started while the kswapd process waited for its CPU, for the process to take over:
    # [steps, done, reclaim_order, time owed, its order, its highest_zoneidx] (+ True: it napped in the stall)
    handover: list = [None]

    def on_stall(work: CompactWork) -> None:
        """One step of a direct compaction took its task the price of the step's work; kswapd, on
        another CPU, reclaims meanwhile, so the next ``compact_finished`` check and the task's
        free-list retry see what it freed.  A kswapd already reclaiming goes on with its run (the
        time it spends here is owed: its process sleeps it off, as the CPU was busy); one woken by
        the same slow path (``wake_all_kswapds`` comes first) but not yet running starts a run
        here and goes on after the compaction ends: kswapd is its own thread, and its
        ``balance_pgdat`` ends when the node is balanced, not when the task's compaction does, so
        the kswapd process takes the run over (:data:`handover`) when it next gets a CPU, then
        naps and resets the skip bits (``reset_isolation_suitable``) as after any run.  Its frees
        are not the task's to capture (``capture_control`` is per task).
        The pressure captures show both ends of it: j_pressure_stock's first readahead compactions
        ended "success" after a few blocks while kswapd reclaimed order-9 folios beside them, and 132
        of k_pressure_defrag's 134 readahead compactions that ran to completion without forming a
        block (GFP_NOFS moves no page cache) were followed by a successful allocation, from a DMA32
        block: kswapd had lifted DMA32 above its watermark and lowmem reserve during the stall (0.7-6.5 ms,
        10th to 90th percentile)."""
        r = stall[0]
        if r is None:
            stall[1] = 0
            if run[0] is not None and not run[1]:
                r = stall[0] = run
            elif handover[0] is not None and not handover[0][1]:
                r = stall[0] = handover[0]  # the run an earlier stall started, not yet taken over
                stall[1] = min(0, env.now - wake_at[0])
            elif (waker.woken() and not rec.kswapd_running and handover[0] is None) or (
                    handover[0] is not None and would_wake(req["order"], requested_zoneidx(top_zone))):
                # woken by this slow path; or the run an earlier stall started ended there (kswapd then
                # napped, see below) and this slow path's wake_all_kswapds wakes it from the nap
                order, hz = req["order"], requested_zoneidx(top_zone)
                r = stall[0] = [rec.balance_pgdat_steps(order, hz), False, 0, 0, order, hz]
                handover[0] = r
                rec.kswapd_running = True
                stall[1] = min(0, env.now - wake_at[0])  # still waiting for a CPU
            else:
                stall[0] = False  # asleep and not asked
                return
        elif r is False or r[1]:
            return
        budget = stall[1] + costs.compaction_ns(work)
        capc, node.capc = node.capc, None
        try:
            while budget > 0:
                cost = price(next(r[0]))
                budget -= cost
                r[3] += cost
        except StopIteration as stop:  # balanced: balance_pgdat ended on its own
            r[1], r[2] = True, stop.value
            if r is not run:
                rec.kswapd_running = False
                # kswapd_try_to_sleep at once, as the kswapd thread goes on to it: the nap resets the
                # skip bits the compactions left (the next one rescans the zone) and wakes kcompactd
                if rec.prepare_kswapd_sleep(r[2], r[5]):
                    if comp is not None:
                        comp.reset_isolation_suitable()
                        comp.wakeup_kcompactd(r[4], r[5])
                    r.append(True)  # napped
        finally:
            node.capc = capc
        stall[1] = budget

    def would_wake(order: int, highest_zoneidx: int) -> bool:
        """``wakeup_kswapd``'s test: a napping kswapd is woken unless hopeless or balanced and unboosted."""
        return not rec.kswapd_hopeless() and not (pgdat_balanced(node, order, highest_zoneidx)
                                                  and not pgdat_watermark_boosted(node, highest_zoneidx))

    def on_stall_end() -> None:
        """try_to_compact_pages returned: kswapd's run goes on (a run started for the stall waits in
        :data:`handover` for the kswapd process)."""
        stall[0] = None

    node.on_stall = on_stall
    node.on_stall_end = on_stall_end
    v = rec.vmstat
    alloc_order = reclaim_order = req["order"]
    hz = requested_zoneidx(top_zone)
    napped = False  # the last run ended in a stall and kswapd_try_to_sleep's nap work was done there
    while True:
        # kswapd_try_to_sleep
        remaining = False
        if rec.prepare_kswapd_sleep(reclaim_order, hz):
            if comp is not None and not napped:
                comp.reset_isolation_suitable()
                comp.wakeup_kcompactd(alloc_order, hz)
            ev = waker.sleep()
            yield env.timeout(costs.kswapd_nap_ns) | ev
            waker.sleeping = False
            remaining = ev.triggered
            if remaining and wake_at[0] > env.now:
                yield env.timeout(wake_at[0] - env.now)
            if remaining:  # woken prematurely: keep the request, at least this run's order
                if req["hz"] is None:
                    req["hz"] = hz
                req["order"] = max(req["order"], reclaim_order)
        if not remaining and rec.prepare_kswapd_sleep(reclaim_order, hz):
            _log(log, env.now, "kswapd_sleep")
            yield waker.sleep()
            waker.sleeping = False
            if wake_at[0] > env.now:
                yield env.timeout(wake_at[0] - env.now)
        elif remaining:
            v["kswapd_low_wmark_hit_quickly"] += 1
        else:
            v["kswapd_high_wmark_hit_quickly"] += 1
        napped = False
        h, handover[0] = handover[0], None
        if h is not None and len(h) > 6:  # it ended in the stall, and kswapd napped there: nap on
            alloc_order, reclaim_order, hz = h[4], h[2], h[5]
            napped = True
            continue
        if h is not None:  # the run a stall started (with the request it read then)
            alloc_order, hz = h[4], h[5]
        else:
            alloc_order = req["order"]
            hz = requested_zoneidx(hz)
        req["order"], req["hz"] = 0, None
        _log(log, env.now, "kswapd_wake", alloc_order, hz)
        rec.kswapd_running = True
        run[:] = h[:4] if h is not None else [rec.balance_pgdat_steps(alloc_order, hz), False, 0, 0]
        try:
            reclaim_order = yield from _run_shared(env, run, price, costs.quantum_ns)
        finally:
            rec.kswapd_running = False
            run[0] = None
        _log(log, env.now, "kswapd_balanced", reclaim_order)
        if reclaim_order < alloc_order:
            continue  # goto kswapd_try_sleep with the orders of this run
        alloc_order = reclaim_order = req["order"]
        hz = requested_zoneidx(hz)


def kcompactd(env, node: Node, costs: Optional[DaemonCosts] = None, log: Optional[list] = None):
    """The kcompactd process of ``node`` (needs ``node.compaction``)."""
    comp = node.compaction
    if comp is None or not hasattr(comp, "kcompactd_do_work"):
        raise KmemdesError("kcompactd needs a compaction model: attach kmemdes.mm.compaction.Compaction(node) first")
    costs = costs or DaemonCosts()
    waker = _Waker(env)

    def on_wakeup_kcompactd() -> None:
        _log(log, env.now, "kcompactd_wakeup", comp.kcompactd_max_order)
        waker.wake()

    comp.on_wakeup_kcompactd = on_wakeup_kcompactd
    price = costs.compaction_ns
    default_timeout = costs.kcompactd_interval_ns
    timeout = default_timeout
    while True:
        if not comp.proactiveness:
            timeout = 0  # MAX_SCHEDULE_TIMEOUT
        if not comp.kcompactd_work_requested():
            ev = waker.sleep()
            comp.kcompactd_sleeping = True
            yield (env.timeout(timeout) | ev) if timeout else ev
            comp.kcompactd_sleeping = False
            waker.sleeping = False
        if comp.kcompactd_work_requested() and not comp.proactive_compact_trigger:
            _log(log, env.now, "kcompactd_wake", comp.kcompactd_max_order, comp.kcompactd_highest_zoneidx)
            yield from run_priced(env, comp.kcompactd_do_work(), price, costs.quantum_ns)
            timeout = default_timeout
            continue
        timeout = default_timeout
        if comp.should_proactive_compact_node():
            prev_score = fragmentation_score_node(node)
            yield from run_priced(env, comp.proactive_compact_node(), price, costs.quantum_ns)
            score = fragmentation_score_node(node)
            _log(log, env.now, "kcompactd_proactive", prev_score, score)
            if score >= prev_score:
                timeout = default_timeout << COMPACT_MAX_DEFER_SHIFT
        comp.proactive_compact_trigger = False


def start_daemons(env, node: Node, costs: Optional[DaemonCosts] = None, log: Optional[list] = None,
                  seed: int = 0) -> list:
    """Start kswapd (if ``node.reclaim``) and kcompactd (if ``node.compaction``); returns the processes."""
    procs = []
    if node.reclaim is not None:
        procs.append(env.process(kswapd(env, node, costs, log, seed)))
    if node.compaction is not None:
        procs.append(env.process(kcompactd(env, node, costs, log)))
    return procs
