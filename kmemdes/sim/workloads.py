"""Synthetic workloads: SimPy processes that generate allocation traffic against the models.

One process per workload stream, never one per allocation: each process
sleeps until its next operation time and then performs every operation due,
so a 50,000-packet/s network burst costs one timeout per millisecond tick.
Requests that had to reclaim or compact make the (closed-loop) workload wait
for the priced latency, as slow paths slow a real workload.

================  ==========================================================================
kind              what it does
================  ==========================================================================
driver            a driver asking for a physically contiguous buffer every ``interval``
                  (``alloc_pages`` order-N, ``kmalloc``, ``vmalloc`` or ``kvmalloc`` of
                  ``size``), holding it for ``hold``: the request whose failure rate matters
anon              user processes that malloc ``size``, optionally MADV_HUGEPAGE, touch it
                  (demand paging, THP faults), live ``lifetime``, exit
file_cache        page-cache growth: movable, reclaimable pages at ``rate_pages``/s,
                  a share truncated after ``lifetime``, the rest left to reclaim; with
                  ``folio_order`` as readahead's large folios (falling back to base pages)
network           skbuff objects and GFP_ATOMIC order-0..3 data pages at ``rate``/s,
                  freed after ``lifetime``
vmalloc_churn     vmalloc areas (thread stacks by default) at ``rate``/s
compile           a kernel-build-like mix fitted from the real compile trace
                  (:mod:`kmemdes.sim.compilefit`)
replay            a real trace (:mod:`kmemdes.sim.replay`)
================  ==========================================================================

The initial ``fragmented`` state fills free memory with movable pages and
frees all but ``keep_per_block`` pages of every pageblock ("free 3/4 of every
2 MiB block" with the default 128).
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from itertools import chain
from typing import TYPE_CHECKING

from kmemdes.config import (
    AnonWorkload,
    CompileWorkload,
    DriverWorkload,
    FileCacheWorkload,
    NetworkWorkload,
    ReplayWorkload,
    VmallocWorkload,
    parse_duration,
    size_or_zero,
)
from kmemdes.errors import KmemdesError
from kmemdes.mm import gfp as G
from kmemdes.mm.mm_init import parse_size
from kmemdes.mm.page_alloc import (
    PAGEBLOCK_NR_PAGES,
    PAGEBLOCK_ORDER,
    PATH_FAILED,
    PATH_SLOWPATH,
)

if TYPE_CHECKING:  # pragma: no cover
    from kmemdes.sim.engine import Sim

__all__ = ["Workload", "make_workloads", "prepare_initial_state", "reserve_hugetlb", "PageOwner"]

TICK_NS = 1_000_000
_GFP_ZERO = G.__GFP_ZERO
_GFP_COMP = G.__GFP_COMP
_GFP_DIRECT_RECLAIM = G.__GFP_DIRECT_RECLAIM
GFP_PAGECACHE = G.GFP_HIGHUSER_MOVABLE  # page-cache folios (mapping_gfp_mask of a regular file)
#: readahead_gfp_mask (mapping mask | __GFP_NORETRY | __GFP_NOWARN) under ext4's memalloc_nofs: what the
#: pressure captures show for readahead folios of every order (filemap_alloc_folio adds __GFP_COMP)
GFP_READAHEAD = (GFP_PAGECACHE & ~G.__GFP_FS) | G.__GFP_NORETRY | G.__GFP_NOWARN


class PageOwner:
    """Owner of movable pages: follows migration (compaction) and reclaim through ``node.rmap``.

    Allocations are known by a token that survives migration: ``add``/``add_cache`` return it,
    ``free`` takes it (a page reclaimed meanwhile is simply gone).  Anonymous pages (``add``)
    are movable; page-cache pages (``add_cache``) are also reclaimable, and the reclaim model
    holds their rmap entry and tells the owner.  A large folio compaction splits keeps its token,
    which then stands for the folio's base pages (:meth:`split_folio`).
    """

    def __init__(self) -> None:
        self.pages: dict[int, int] = {}  # current pfn -> order
        self._tok: dict[int, int] = {}  # current pfn -> token
        self._pfn: dict[int, int] = {}  # token -> current pfn (of the folio, or of one page of a split one)
        self._split: dict[int, list[int]] = {}  # token of a split folio -> the current pfns of its pages
        self._cache: set[int] = set()  # tokens of page-cache pages
        self._next = 1

    def _new(self, pfn: int, order: int) -> int:
        tok = self._next
        self._next += 1
        self.pages[pfn] = order
        self._tok[pfn] = tok
        self._pfn[tok] = pfn
        return tok

    def pfns(self, tok: int) -> list[int]:
        """The current pfns of a live allocation: its folio, or the pages of a split one."""
        split = self._split.get(tok)
        if split is not None:
            return split
        pfn = self._pfn.get(tok)
        return [] if pfn is None else [pfn]

    def nr_pages(self, tok: int) -> int:
        """Pages a live allocation still holds (0 once reclaimed)."""
        split = self._split.get(tok)
        if split is not None:
            return len(split)
        pfn = self._pfn.get(tok)
        return 0 if pfn is None else 1 << self.pages[pfn]

    def add(self, node, pfn: int, order: int) -> int:
        """An anonymous (movable, unreclaimable without swap) page."""
        node.rmap[pfn] = self
        return self._new(pfn, order)

    def add_cache(self, node, pfn: int, order: int) -> int:
        """A page-cache page: reclaimable; the reclaim model owns its rmap entry and tells us."""
        tok = self._new(pfn, order)
        self._cache.add(tok)
        if node.reclaim is not None:
            node.reclaim.add_file_pages([pfn], order, self)
        else:
            node.rmap[pfn] = self
        return tok

    def adopt(self, node, pfns, orders, file) -> None:
        """Folios in use at a snapshot's start (:func:`kmemdes.sim.engine.kpageflags_start`), handed
        to the models as :func:`~kmemdes.sim.policy_pages.adopt_folios` does; the workloads never free
        them, reclaim and compaction may."""
        from kmemdes.sim.policy_pages import adopt_folios

        for pfn, order, cache in adopt_folios(node, pfns, orders, file, self):
            tok = self._new(pfn, order)
            if cache:
                self._cache.add(tok)

    def free(self, node, tok: int, cpu: int = 0) -> bool:
        """Free an allocation by token (truncate for page cache); False if reclaim already took it."""
        pfns = self.pfns(tok)
        if not pfns:
            return False
        self._pfn.pop(tok, None)
        self._split.pop(tok, None)
        cache = tok in self._cache
        self._cache.discard(tok)
        for pfn in pfns:
            order = self.pages.pop(pfn)
            del self._tok[pfn]
            if cache and node.reclaim is not None:
                node.reclaim.remove_file_pages([pfn], free=False)
            else:
                node.rmap.pop(pfn, None)
            node.free_pages(pfn, order, cpu)
        return True

    def migrate_page(self, old: int, new: int, order: int) -> None:
        """Called by compaction (or by the reclaim model for page cache) after moving ``old`` to ``new``."""
        tok = self._tok.pop(old, None)
        if tok is None:
            return
        self.pages.pop(old, None)
        self.pages[new] = order
        self._tok[new] = tok
        split = self._split.get(tok)
        if split is not None:
            split[split.index(old)] = new
            if self._pfn[tok] == old:
                self._pfn[tok] = new
        else:
            self._pfn[tok] = new

    def split_folio(self, pfn: int, order: int) -> bool:
        """Compaction split the large folio at ``pfn`` (no target of its order): its token now stands
        for its base pages, which the workload frees, and reclaim and compaction take, one by one."""
        tok = self._tok.get(pfn)
        if tok is None:
            return False
        del self.pages[pfn]
        pages = list(range(pfn, pfn + (1 << order)))
        for p in pages:
            self.pages[p] = 0
            self._tok[p] = tok
        self._split[tok] = pages
        return True

    def reclaim_page(self, pfn: int, order: int) -> None:
        """Called by the reclaim model before it frees one of our page-cache pages."""
        tok = self._tok.pop(pfn, None)
        self.pages.pop(pfn, None)
        if tok is None:
            return
        split = self._split.get(tok)
        if split is not None:
            split.remove(pfn)
            if split:
                if self._pfn[tok] == pfn:
                    self._pfn[tok] = split[0]
                return
            del self._split[tok]
        self._pfn.pop(tok, None)
        self._cache.discard(tok)


class Workload:
    """Base: counters every workload keeps, and the priced page allocation all of them use."""

    def __init__(self, sim: "Sim", spec, index: int):
        self.sim = sim
        self.node = sim.node
        self.spec = spec
        self.name = spec.name or f"{spec.kind}{index}"
        self.rng = random.Random(f"{sim.cfg.seed}:{index}:{spec.kind}")
        self.start_ns = parse_duration(spec.start)
        stop = parse_duration(spec.stop)
        self.stop_ns = stop if stop else sim.cfg.duration_ns
        self.cpu_rr = 0
        self.requests: dict[tuple, int] = {}
        self.failures: list[tuple] = []
        self.sizes: dict[tuple, int] = {}
        self.nr_requests = 0

    def cpu(self) -> int:
        if self.spec.cpu >= 0:
            return self.spec.cpu % self.node.cpus
        self.cpu_rr = (self.cpu_rr + 1) % self.node.cpus
        return self.cpu_rr

    def record(self, order: int, gfp: int, path: int, ns: int) -> None:
        key = (order, "reclaim" if gfp & _GFP_DIRECT_RECLAIM else "atomic", path, self.name)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.nr_requests += 1
        self.sim.hist.add(order, path, ns)
        if path == PATH_FAILED and len(self.failures) < 100_000:
            self.failures.append((self.sim.env.now, order, G.format_gfp(gfp), self.name))

    def alloc_pages(self, gfp: int, order: int) -> tuple[int, int]:
        """``alloc_pages`` with its latency: (pfn or -1, ns)."""
        node = self.node
        zl0 = node.nr_zone_locked
        mark = self.sim.stall_mark()
        pfn = node.alloc_pages(gfp, order, self.cpu())
        path = node.last_path
        migrated = scanned = reclaimed = 0
        if path >= PATH_SLOWPATH:
            reclaimed, migrated, scanned = self.sim.stall_work(mark)
        ns = self.sim.cost.page_alloc(order, path, bool(gfp & _GFP_ZERO), node.nr_zone_locked - zl0,
                                      reclaimed, migrated, scanned)
        self.record(order, gfp, path, ns)
        return pfn, ns

    def active(self, now: int) -> bool:
        return self.start_ns <= now < self.stop_ns

    def process(self, env):  # pragma: no cover - overridden
        yield env.timeout(0)

    def counters(self) -> dict:
        return {}


class DriverLoad(Workload):
    """A driver requesting a physically contiguous buffer every ``interval`` and holding it for ``hold``."""

    def __init__(self, sim, spec: DriverWorkload, index):
        super().__init__(sim, spec, index)
        self.gfp = G.parse_gfp(spec.gfp)
        self.interval = parse_duration(spec.interval)
        self.hold = parse_duration(spec.hold)
        if self.interval <= 0:
            raise KmemdesError(f"workloads[{index}].interval: must be > 0")
        self.kernel = sim.kernel() if spec.api != "alloc_pages" else None

    def _get(self) -> tuple[object, int]:
        spec = self.spec
        if spec.api == "alloc_pages":
            pfn, ns = self.alloc_pages(self.gfp, spec.order)
            return (pfn if pfn >= 0 else None), ns
        size = spec.size or (4096 << spec.order)
        k = self.kernel
        node = self.node
        path0 = node.nr_path[:]
        mark = self.sim.stall_mark()
        order = max(0, (size - 1).bit_length() - 12)
        cost = self.sim.cost
        if spec.api == "kmalloc":
            addr = k.kmalloc(size, self.gfp, self.cpu())
            ns = cost.kmalloc_fast
        elif spec.api == "vmalloc":
            addr = k.vmalloc(size, self.gfp, self.cpu())
            ns = cost.vmalloc_base + cost.vmalloc_per_page * ((size + 4095) // 4096 - 1)
        else:
            addr = k.kvmalloc(size, self.gfp, self.cpu())
            ns = cost.kmalloc_fast
            if addr and k.layout.region_of(addr) == "vmalloc":
                ns += cost.vmalloc_base + cost.vmalloc_per_page * ((size + 4095) // 4096 - 1)
        # price the page allocations the call made: the slowest path it took, with the reclaim and
        # compaction work done on the way (a failed costly kmalloc went through both before failing)
        paths = [i for i, (a, b) in enumerate(zip(path0, node.nr_path)) if b > a]
        # the call succeeded (kvmalloc through its vmalloc fallback, too): its worst successful path
        worst = max((p for p in paths if p != PATH_FAILED or not addr), default=0)
        reclaimed, migrated, scanned = self.sim.stall_work(mark)
        if spec.api in ("kmalloc", "kvmalloc") and size > 8192:
            ns += cost.page_alloc(order, worst, bool(self.gfp & _GFP_ZERO), 0, reclaimed, migrated, scanned)
        elif migrated or scanned or reclaimed:
            ns += cost.page_alloc(0, PATH_SLOWPATH, False, 0, reclaimed, migrated, scanned)
        path = PATH_FAILED if not addr else worst
        self.record(order, self.gfp, path, ns)
        _inc(self.sizes, (spec.api if spec.api != "alloc_pages" else "page", size))
        return (addr if addr else None), ns

    def _put(self, handle) -> None:
        spec = self.spec
        if spec.api == "alloc_pages":
            self.node.free_pages(handle, spec.order, self.cpu())
        elif spec.api == "kmalloc":
            self.kernel.kfree(handle)
        elif spec.api == "vmalloc":
            self.kernel.vfree(handle)
        else:
            self.kernel.kvfree(handle)

    def process(self, env):
        held: deque = deque()
        t = self.start_ns
        while t < self.stop_ns:
            if t > env.now:
                yield env.timeout(t - env.now)
            while held and held[0][0] <= env.now:
                self._put(held.popleft()[1])
            handle, ns = self._get()
            if handle is not None:
                held.append((env.now + ns + self.hold, handle))
            t += self.interval
            if ns > TICK_NS:
                yield env.timeout(ns)  # the driver waited for reclaim/compaction
            # release what is due before the next request
            while held and held[0][0] <= min(t, self.stop_ns):
                due, h = held[0]
                if due > env.now:
                    yield env.timeout(due - env.now)
                held.popleft()
                self._put(h)


class AnonLoad(Workload):
    """User processes: malloc, (MADV_HUGEPAGE), touch, live, exit."""

    def __init__(self, sim, spec: AnonWorkload, index):
        super().__init__(sim, spec, index)
        self.kernel = sim.kernel()
        self.size = parse_size(spec.size)
        self.lifetime = parse_duration(spec.lifetime)
        self.interval = parse_duration(spec.interval)
        self.touch_time = parse_duration(spec.touch_time)
        self.thp_attempts = 0
        self.thp_success = 0

    def process(self, env):
        from kmemdes.mm.user import MADV_HUGEPAGE

        k = self.kernel
        node = self.node
        live: list = []
        t = self.start_ns
        while t < self.stop_ns:
            if t > env.now:
                yield env.timeout(t - env.now)
            while live and live[0][0] <= env.now:
                _, _, p = heapq.heappop(live)
                k.exit(p)
            waited = 0
            for _ in range(self.spec.processes):
                p = k.spawn("anon", self.cpu())
                before = node.nr_path[:]
                mark0 = self.sim.stall_mark()
                addr = p.malloc(self.size)
                if addr and self.spec.madvise_hugepage:
                    p.madvise(addr & ~((2 << 20) - 1), self.size + (2 << 20), MADV_HUGEPAGE)
                touched = int(self.size * self.spec.touch) & ~4095
                if addr and touched and self.touch_time:
                    # 2 MiB (one THP fault or 512 base-page faults) per step, the steps spread over
                    # touch_time; a step's slow-path allocations (compaction, reclaim) add their time
                    steps = range(addr, addr + touched, 2 << 20)
                    dt = self.touch_time // len(steps)
                    for a in steps:
                        before_step = node.nr_path[:]
                        mark = self.sim.stall_mark()
                        p.touch(a, min(2 << 20, addr + touched - a))
                        yield env.timeout(max(dt, self._slow_ns(before_step, mark)))
                elif addr and touched:
                    p.touch(addr, touched)
                # per fault, as thp_fault_alloc / thp_fault_fallback count (a fault may try twice)
                self.thp_attempts += p.stat["thp_faults"] + p.stat["thp_fallback"]
                self.thp_success += p.stat["thp_faults"]
                if not self.touch_time:  # (a spread touch has already spent its slow-path time)
                    waited += self._slow_ns(before, mark0)
                # ties in expiry go by spawn order (an id() tie-break would follow memory addresses)
                heapq.heappush(live, (env.now + self.lifetime, p.pid, p))
            t += self.interval
            if waited > TICK_NS:
                yield env.timeout(waited)
        # the last processes still live out their lifetime; those due after the run's end stay
        end = self.sim.cfg.duration_ns
        while live and live[0][0] <= end:
            due, _, p = heapq.heappop(live)
            if due > env.now:
                yield env.timeout(due - env.now)
            k.exit(p)

    def _slow_ns(self, before: list[int], mark: int) -> int:
        """Time the process spent in slow-path allocations during its faults: each request's slow-path
        base price (the node counts the requests), plus the direct reclaim and compaction stalls they
        took, as long as their work took (:meth:`Sim.stall_ns`)."""
        node = self.node
        cost = self.sim.cost
        total = self.sim.stall_ns(mark)
        for path in range(PATH_SLOWPATH, len(before)):
            n = node.nr_path[path] - before[path]
            if n:
                total += cost.page_alloc(0, path, True) * n
        return total

    def counters(self) -> dict:
        fb = self.thp_attempts - self.thp_success
        return {"thp_fault_alloc": self.thp_success, "thp_fault_fallback": fb,
                f"{self.name}_thp_fault_alloc": self.thp_success, f"{self.name}_thp_fault_fallback": fb}


class FileCacheLoad(Workload):
    """Page-cache growth: files of ``pages_per_file`` movable, reclaimable pages, each with a dentry
    and an ext4 inode (reclaimable slab objects, SLAB_RECLAIM_ACCOUNT); a share of the files is
    deleted after ``lifetime`` (pages truncated, objects freed), the rest stays: its pages for
    reclaim to take, its dentry and inode for good (no shrinker pressure in the model)."""

    def __init__(self, sim, spec: FileCacheWorkload, index):
        super().__init__(sim, spec, index)
        self.owner = PageOwner()
        self.lifetime = parse_duration(spec.lifetime)
        self.kernel = sim.kernel() if spec.pages_per_file and not spec.file_pages else None
        if self.kernel is not None:
            from kmemdes.mm.slub import SLAB_RECLAIM_ACCOUNT

            slab = self.kernel.slab
            self.caches = []
            for name, size in (("dentry", 192), ("ext4_inode_cache", 1120)):
                try:
                    self.caches.append(slab.lookup(name))
                except KmemdesError:
                    self.caches.append(self.kernel.kmem_cache_create(name, size, 8, SLAB_RECLAIM_ACCOUNT))
        self.files = 0
        self.folios_large = self.folios_fallback = 0
        self.ra_debt = 0  # base pages of failed folios' readahead windows still to read (file_pages: as ranges)
        self.hits = 0  # file_pages: pages found in the page cache when the file was read again

    def process(self, env):
        if self.spec.file_pages:
            yield from self._read_file(env)
            return
        node = self.node
        per_tick = self.spec.rate_pages * TICK_NS / 1e9
        ppf = self.spec.pages_per_file
        acc = 0.0
        pending: deque = deque()
        current: list = []  # tokens of the file being written
        t = self.start_ns
        while t < self.stop_ns:
            if t > env.now:
                yield env.timeout(t - env.now)
            while pending and pending[0][0] <= env.now:
                self._delete(pending.popleft()[1])
            acc += per_tick
            fo = self.spec.folio_order
            # the rest of a readahead window whose large folio failed is read with base pages first
            small = min(int(acc), self.ra_debt)
            self.ra_debt -= small
            acc -= small
            n = int(acc) >> fo
            acc -= n << fo
            waited = 0
            for pfn, order, ns in chain(self._base_pages(small), self._folios(n, fo)):
                if ns > TICK_NS:
                    waited += ns
                if pfn < 0:
                    continue
                tok = self.owner.add_cache(node, pfn, order)
                if not ppf:
                    if self.rng.random() < self.spec.truncate_share:
                        pending.append((env.now + self.lifetime, ([tok], ())))
                    continue
                current.append(tok)
                if len(current) >= ppf:
                    objs = tuple(self.kernel.kmem_cache_alloc(c, G.GFP_KERNEL, self.cpu()) for c in self.caches)
                    self.files += 1
                    if self.rng.random() < self.spec.truncate_share:
                        pending.append((env.now + self.lifetime, (current, objs)))
                    current = []
            t += TICK_NS
            if waited:
                yield env.timeout(waited)

    def _read_file(self, env):
        """``file_pages``: ``cat`` of one file every ``interval``, its folios (``folio_order``) in index order.

        A folio-sized range whose pages are all still cached is a hit (``filemap_read`` finds them:
        ``folio_mark_accessed``, no allocation, no time); a range with missing pages is read at
        ``rate_pages`` as ``page_cache_ra_order`` reads an empty range (one large folio; where it fails,
        this range and the rest of the readahead window, ``ra_fallback_pages``, with base pages), and a
        range of which reclaim took only some base pages gets those back as base pages.  The pages of
        the file stay in the page cache until reclaim takes them.  Pages allocated while the read
        stalls in reclaim or compaction are caught up afterwards (the device's rate is the limit).
        """
        node = self.node
        spec = self.spec
        fo = spec.folio_order
        step = 1 << fo
        n = spec.file_pages
        slots: list = [None] * (-(-n // step))  # tokens of each folio-sized range of the file
        owner = self.owner
        alive = owner._pfn
        per_tick = spec.rate_pages * TICK_NS / 1e9
        interval = parse_duration(spec.interval)
        reclaim = node.reclaim
        start = self.start_ns
        while start < self.stop_ns:
            t = start
            acc = 0.0
            small = 0  # ranges still to read with base pages (the rest of a failed folio's window)
            i = 0
            while i < len(slots) and t < self.stop_ns:
                if t > env.now:
                    yield env.timeout(t - env.now)
                acc += per_tick
                waited = 0
                while i < len(slots):
                    size = min(step, n - i * step)
                    toks = [tok for tok in (slots[i] or ()) if tok in alive]
                    have = sum(map(owner.nr_pages, toks))
                    if have >= size:  # a hit
                        self.hits += size
                        if reclaim is not None:
                            for tok in toks:
                                for pfn in owner.pfns(tok):
                                    reclaim.mark_page_accessed(pfn)
                        i += 1
                        continue
                    need = size - have
                    if acc < need:
                        break
                    acc -= need
                    large = not (have or size < step or small)
                    if small and not have:
                        small -= 1
                    for pfn, order, ns in (self._folios(1, fo) if large else self._base_pages(need)):
                        if ns > TICK_NS:
                            waited += ns
                        if pfn >= 0:
                            toks.append(self.owner.add_cache(node, pfn, order))
                    if self.ra_debt:  # the folio failed: the rest of its readahead window, base pages
                        small, self.ra_debt = self.ra_debt // step, 0
                    slots[i] = toks
                    i += 1
                t += TICK_NS
                if waited:
                    yield env.timeout(waited)
            if not interval:
                return
            start += interval

    def _folios(self, n: int, order: int):
        """``n`` page-cache folios of ``order``: (pfn or -1, order, ns) per allocation.  Base pages with
        the mapping's mask; large folios as ``page_cache_ra_order`` allocates them (the readahead mask,
        ``__GFP_COMP``), and where one fails, its range read with order-0 folios of the same mask
        (``do_page_cache_ra``) until one of those fails."""
        if not order:
            for _ in range(n):
                pfn, ns = self.alloc_pages(GFP_PAGECACHE, 0)
                yield pfn, 0, ns
            return
        for _ in range(n):
            pfn, ns = self.alloc_pages(GFP_READAHEAD | _GFP_COMP, order)
            if pfn >= 0:
                self.folios_large += 1
                yield pfn, order, ns
                continue
            self.folios_fallback += 1
            # the rest of the readahead window beyond this folio's range comes in the next ticks
            self.ra_debt += max(0, self.spec.ra_fallback_pages - (1 << order))
            yield from self._base_pages(1 << order)

    def _base_pages(self, n: int):
        """``do_page_cache_ra`` after a failed large folio: ``n`` order-0 folios with the readahead mask,
        until one of them fails."""
        for _ in range(n):
            pfn, ns = self.alloc_pages(GFP_READAHEAD, 0)
            yield pfn, 0, ns
            if pfn < 0:
                break

    def _delete(self, f) -> None:
        """unlink: truncate the pages (those reclaim has not taken), free the dentry and inode."""
        toks, objs = f
        for tok in toks:
            self.owner.free(self.node, tok, self.cpu())
        for cache, addr in zip(self.caches if objs else (), objs):
            if addr:
                self.kernel.kmem_cache_free(cache, addr, self.cpu())

    def counters(self) -> dict:
        out = {f"{self.name}_files": self.files}
        if self.spec.folio_order:
            out[f"{self.name}_large_folios"] = self.folios_large
            out[f"{self.name}_large_folio_fallbacks"] = self.folios_fallback
        if self.spec.file_pages:
            out[f"{self.name}_cache_hits"] = self.hits
        return out


class NetworkLoad(Workload):
    """skbuff heads and GFP_ATOMIC order-0..3 data pages at a packet rate, freed after ``lifetime``."""

    def __init__(self, sim, spec: NetworkWorkload, index):
        super().__init__(sim, spec, index)
        self.gfp = G.parse_gfp(spec.gfp)
        self.lifetime = parse_duration(spec.lifetime)
        w = spec.order_weights
        tot = sum(w) or 1.0
        self.cum = []
        acc = 0.0
        for x in w:
            acc += x / tot
            self.cum.append(acc)
        self.kernel = sim.kernel()
        self.skb_cache = self.kernel.kmem_cache_create("skbuff_head_cache", 232, align=64)

    def process(self, env):
        node = self.node
        k = self.kernel
        per_tick = self.spec.rate * TICK_NS / 1e9
        acc = 0.0
        inflight: deque = deque()
        t = self.start_ns
        while t < self.stop_ns:
            if t > env.now:
                yield env.timeout(t - env.now)
            while inflight and inflight[0][0] <= env.now:
                _, skb, pfn, order, cpu = inflight.popleft()
                if pfn >= 0:
                    node.free_pages(pfn, order, cpu)
                if skb:
                    k.kmem_cache_free(self.skb_cache, skb, cpu)
            acc += per_tick
            n = int(acc)
            acc -= n
            for _ in range(n):
                r = self.rng.random()
                order = next(i for i, c in enumerate(self.cum) if r <= c) if self.cum else 0
                cpu = self.cpu()
                skb = k.kmem_cache_alloc(self.skb_cache, G.GFP_ATOMIC, cpu)
                pfn, _ = self.alloc_pages(self.gfp, order)
                _inc(self.sizes, ("page", 4096 << order))
                inflight.append((env.now + self.lifetime, skb, pfn, order, cpu))
            t += TICK_NS


class VmallocLoad(Workload):
    """vmalloc areas (thread stacks by default) at a rate, vfree'd after ``lifetime``."""

    def __init__(self, sim, spec: VmallocWorkload, index):
        super().__init__(sim, spec, index)
        self.kernel = sim.kernel()
        self.size = parse_size(spec.size)
        self.lifetime = parse_duration(spec.lifetime)

    def process(self, env):
        k = self.kernel
        node = self.node
        per_tick = self.spec.rate * TICK_NS / 1e9
        acc = 0.0
        live: deque = deque()
        cost = self.sim.cost
        t = self.start_ns
        while t < self.stop_ns:
            if t > env.now:
                yield env.timeout(t - env.now)
            while live and live[0][0] <= env.now:
                k.vfree(live.popleft()[1])
            acc += per_tick
            n = int(acc)
            acc -= n
            for _ in range(n):
                before = node.nr_path[:]
                addr = k.vmalloc(self.size, G.GFP_KERNEL, self.cpu())
                paths = [i for i, (a, b) in enumerate(zip(before, node.nr_path)) if b > a]
                ns = cost.vmalloc_base + cost.vmalloc_per_page * ((self.size + 4095) // 4096 - 1)
                order = max(0, (self.size - 1).bit_length() - 12)
                self.record(order, G.GFP_KERNEL, PATH_FAILED if not addr else max(paths or [0]), ns)
                _inc(self.sizes, ("vmalloc", self.size))
                if addr:
                    live.append((env.now + self.lifetime, addr))
            t += TICK_NS

    def vmalloc_row(self) -> tuple:
        vm = self.kernel.vmalloc_model
        areas = len(vm.vms)
        va_bytes = sum(v.size for v in vm.vms.values()) if hasattr(next(iter(vm.vms.values()), None), "size") else 0
        pages = sum(len(v.pages) for v in vm.vms.values())
        lazy = getattr(vm, "nr_lazy", 0)
        purges = getattr(vm, "nr_purges", 0)
        return (areas, va_bytes, pages, lazy, purges)


def _inc(d: dict, k, n: int = 1) -> None:
    d[k] = d.get(k, 0) + n


_KINDS = {
    "driver": DriverLoad,
    "anon": AnonLoad,
    "file_cache": FileCacheLoad,
    "network": NetworkLoad,
    "vmalloc_churn": VmallocLoad,
}


def make_workloads(sim: "Sim") -> None:
    """Create one SimPy process per configured workload (replays read their trace here)."""
    for i, spec in enumerate(sim.cfg.workloads):
        if isinstance(spec, ReplayWorkload):
            from kmemdes.trace.reader import read_trace

            trace = read_trace(spec.trace)
            sim.add_replay(trace.events, spec.mode, spec.name or f"replay{i}")
            continue
        if isinstance(spec, CompileWorkload):
            from kmemdes.sim.compilefit import CompileLoad

            w = CompileLoad(sim, spec, i)
        else:
            w = _KINDS[spec.kind](sim, spec, i)
        sim.workloads.append(w)
        sim.env.process(w.process(sim.env))


#: alloc_buddy_hugetlb_folio: htlb_alloc_mask (2 MiB pages are movable-capable) | __GFP_COMP |
#: __GFP_RETRY_MAYFAIL | __GFP_NOWARN
GFP_HUGETLB = G.GFP_HIGHUSER_MOVABLE | G.__GFP_COMP | G.__GFP_RETRY_MAYFAIL | G.__GFP_NOWARN


def prepare_initial_state(sim: "Sim") -> None:
    """Apply ``initial.state = "fragmented"`` (:func:`_fragment`), then ``initial.hugetlb_leave``
    (:func:`reserve_hugetlb`)."""
    if sim.cfg.initial.state == "fragmented":
        _fragment(sim)
    leave = size_or_zero(sim.cfg.initial.hugetlb_leave)
    if leave:
        reserve_hugetlb(sim, leave)


def reserve_hugetlb(sim: "Sim", leave: int) -> int:
    """``echo N > /proc/sys/vm/nr_hugepages`` until ``leave`` bytes stay free: order-9 pages taken one
    by one (``alloc_pool_huge_folio``, the zonelist's highest zone first), held for the whole run,
    in no rmap (neither compaction nor reclaim moves them).  Returns the pages reserved.

    >>> from kmemdes.config import parse_config
    >>> from kmemdes.sim.engine import Sim, make_node
    >>> cfg = parse_config('[machine]\\nmem = "512M"\\n[initial]\\nhugetlb_leave = "64M"\\n')
    >>> sim = Sim(cfg, make_node(cfg), [])
    >>> prepare_initial_state(sim)
    >>> 64 << 8 <= sim.node.nr_free_pages() < (64 << 8) + 512, sim.notes[-1].split(":")[0]
    (True, 'hugetlb')
    """
    node = sim.node
    want = leave >> 12
    n = 0
    node.drain_all_pages()  # pages parked on per-CPU lists count as free (MemAvailable)
    short = ""
    while node.nr_free_pages() - PAGEBLOCK_NR_PAGES >= want:
        if node.alloc_pages(GFP_HUGETLB, PAGEBLOCK_ORDER, 0) < 0:
            short = " (no further 2 MiB block above the watermarks)"
            break
        n += 1
    node.drain_all_pages()
    node.reset_counters()
    sim.notes.append(f"hugetlb: {n} pages of 2 MiB reserved ({n * 2} MiB), {node.nr_free_pages() * 4 // 1024} MiB "
                     f"left free{short}")
    return n


def _fragment(sim: "Sim") -> None:
    """``initial.state = "fragmented"``: fill, then keep ``keep_per_block`` pages per pageblock."""
    cfg = sim.cfg.initial
    node = sim.node
    rng = random.Random(f"{sim.cfg.seed}:fragmenter")
    owner = PageOwner()
    sim.fragmenter_owner = owner
    total_free = node.nr_free_pages()
    target = int(total_free * cfg.fill)
    taken: list[int] = []
    gfp = G.GFP_HIGHUSER_MOVABLE
    for _ in range(target):
        pfn = node.alloc_pages(gfp, 0, rng.randrange(node.cpus))
        if pfn < 0:
            break
        taken.append(pfn)
    # free all but keep_per_block pages of every pageblock (the kept ones spread evenly)
    by_block: dict[int, list[int]] = {}
    for pfn in taken:
        by_block.setdefault(pfn >> PAGEBLOCK_ORDER, []).append(pfn)
    keep = cfg.keep_per_block
    stride = max(PAGEBLOCK_NR_PAGES // keep, 1)
    kept = 0
    unmovable = 0
    for pb in sorted(by_block):
        for pfn in sorted(by_block[pb]):
            if (pfn & (PAGEBLOCK_NR_PAGES - 1)) % stride == 0:
                if rng.random() < cfg.unmovable_share:
                    node.page_mt[pfn] = G.MIGRATE_UNMOVABLE  # pinned: not migratable, not in rmap
                    unmovable += 1
                else:
                    owner.add(node, pfn, 0)
                kept += 1
            else:
                node.free_pages(pfn, 0, 0)
    node.drain_all_pages()
    node.reset_counters()
    sim.notes.append(f"initial state fragmented: filled {len(taken)} pages, kept {kept} "
                     f"({keep} of every {PAGEBLOCK_NR_PAGES}; {unmovable} pinned)")
