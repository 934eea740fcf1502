"""Latency of each allocation path, in nanoseconds (KERNEL.md section 17).

Five defaults are **measured on the reference machine** (Linux 6.18.44, 2-vCPU AMD EPYC VM, 24 GiB;
``kmemdes lab --calibrate``, median of four calibrations on 2026-12-04, of the last three for
``reclaim_per_page`` and ``vmalloc_per_page`` whose method was refined after the first, the spread in brackets; how
each is measured: :mod:`kmemdes.lab.calibrate`); the others are **estimates derived from published
figures** (sources below), which stay as the cross-check column.  Every value can be overridden in a
config's ``[cost]`` table by its field name, or with ``include = ["cost.toml"]`` of a file that
``kmemdes lab --calibrate --write-cost cost.toml`` wrote on another machine.

==========================  =====  =====================================================  =====  ==========================================================
field                       ns     measured on the reference machine (lab --calibrate)    lit.   literature source (KERNEL.md 17)
==========================  =====  =====================================================  =====  ==========================================================
pcp_hit                     50     not measurable from user space                         50     order-0 alloc+free 115-231 cycles (page_bench01, 2016-2023): ~40-60 ns
pcp_refill_per_block        45     not measurable                                         45     buddy refill of 63 pages 2-5 us under one zone-lock hold
buddy_base                  150    not measurable                                         150    order-3 alloc+free ~500 cycles (Brouer, LKML 2016): 150-250 ns
buddy_per_order             40     not measurable                                         40     grows with the split depth (order-9 from a free list 1-2 us)
fallback_claim              800    not measurable                                         800    extra work to move a pageblock's free pages (move_freepages_block)
fallback_steal              300    not measurable                                         300    extra fallback scan
slowpath                    1000   not measurable                                         1000   waking kswapd, recomputing flags, second freelist pass
zero_per_page               510    THP first touch / 512 [490-557]: an upper bound        330    2 MiB clear in ~85-170 us (folio_zero_user, 2026): ~330 ns / 4 KiB
reclaim_per_page            580    memcg limit reclaim of 4 KiB page-cache folios          1000   direct reclaim of clean page cache (coarse; LRU isolate + unmap + free)
                                   [507-646]; large folios 400-600 per 4 KiB page
compact_per_migrated_page   3900   compact_memory, per migrated page, scanning incl.       2000   compaction ~1-3 us per migrated 4 KiB page
                                   [2754-6499]
compact_per_scanned_page    20     not measured (in the per-migrated figure above)        20     scanner cost per page looked at
compact_base                5000   needs direct compaction under pressure (``--from``)    5000   one direct compaction attempt (setup, draining, zone lock)
kmalloc_fast                15     no syscall isolates it                                 15     SLUB fast path 10.5-12 ns per alloc+free pair (2015), rounded up
kmalloc_slow                200    not measurable                                         200    partial-list refill 100-300 ns
new_slab_per_object         75     not measurable                                         75     new slab: page allocation + 50-100 ns per object initialised
vmalloc_base                400    bpf map create intercept: 0.3-20 us, bimodal (lazy      400    vmalloc+vfree of 1 page ~0.43 us (test_vmalloc, 2020)
                                   vmap purges land in it): literature value kept
vmalloc_per_page            155    bpf(BPF_MAP_CREATE) 64 KiB-1 MiB slope [92-204]        100    +100 ns per extra page
vfree                       200    deferred to a workqueue by bpf: not measurable         200    vfree without the lazy purge
purge_tlb_flush             20000  not measurable                                         20000  one lazy purge: global TLB flush IPI, 2-50 us
page_fault                  1270   4 KiB anonymous first-touch fault [1215-1299]          1000   anon 4 KiB minor fault median ~1 us (6.6, low authority)
==========================  =====  =====================================================  =====  ==========================================================

The THP first touch on this VM (250-290 us per 2 MiB, about 490-560 ns per 4 KiB) is slower than the
published bare-metal clear (85-170 us): the guest's memory is backed by the host on first use, so
fresh guest pages cost a host fault too; the measured values include that, as a workload here pays it.

>>> c = CostModel()
>>> c.page_alloc(0, 0, zero=False), c.page_alloc(3, 2, zero=False)
(50, 270)
>>> CostModel.from_overrides({"pcp_hit": 60}).pcp_hit
60
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from kmemdes.errors import KmemdesError
from kmemdes.mm.page_alloc import (
    PATH_CLAIM,
    PATH_COMPACT,
    PATH_FAILED,
    PATH_NAMES,
    PATH_PCP,
    PATH_PCP_REFILL,
    PATH_SLOWPATH,
    PATH_STEAL,
)

__all__ = ["CostModel", "LatencyHistogram", "NR_BUCKETS"]

NR_BUCKETS = 48  # power-of-two latency buckets: [0,1), [1,2), [2,4) ... up to ~1.4e14 ns


@dataclass
class CostModel:
    """Per-path latency in ns: measured on the reference machine where possible, else estimates
    (see the module docstring for how each was measured and the literature cross-check)."""

    pcp_hit: int = 50
    pcp_refill_per_block: int = 45
    buddy_base: int = 150
    buddy_per_order: int = 40
    fallback_claim: int = 800
    fallback_steal: int = 300
    slowpath: int = 1000
    zero_per_page: int = 510
    reclaim_per_page: int = 580
    compact_per_migrated_page: int = 3900
    compact_per_scanned_page: int = 20
    compact_base: int = 5000
    kmalloc_fast: int = 15
    kmalloc_slow: int = 200
    new_slab_per_object: int = 75
    vmalloc_base: int = 400
    vmalloc_per_page: int = 155
    vfree: int = 200
    purge_tlb_flush: int = 20000
    page_fault: int = 1270

    @classmethod
    def from_overrides(cls, overrides: dict) -> "CostModel":
        """Defaults with a config's ``[cost]`` values; unknown names are an error."""
        names = {f.name for f in fields(cls)}
        bad = [k for k in overrides if k not in names]
        if bad:
            raise KmemdesError(f"cost.{bad[0]}: unknown cost (allowed: {', '.join(sorted(names))})")
        for k, v in overrides.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise KmemdesError(f"cost.{k}: must be a whole number of ns >= 0, got {v!r}")
        return cls(**overrides)

    def page_alloc(self, order: int, path: int, zero: bool, refill_blocks: int = 0,
                   reclaimed: int = 0, migrated: int = 0, scanned: int = 0) -> int:
        """Latency of one ``alloc_pages`` call that took ``path`` (a ``PATH_*`` of page_alloc)."""
        if path == PATH_PCP:
            ns = self.pcp_hit
        elif path == PATH_PCP_REFILL:
            ns = self.pcp_hit + self.pcp_refill_per_block * max(refill_blocks, 1)
        else:
            ns = self.buddy_base + self.buddy_per_order * order
            if path == PATH_CLAIM:
                ns += self.fallback_claim
            elif path == PATH_STEAL:
                ns += self.fallback_steal
            elif path >= PATH_SLOWPATH:
                ns += self.slowpath
            if reclaimed:
                ns += self.reclaim_per_page * reclaimed
            if path == PATH_COMPACT or migrated or scanned:
                ns += self.compact_base + self.compact_per_migrated_page * migrated \
                    + self.compact_per_scanned_page * scanned
        if zero and path != PATH_FAILED:
            ns += self.zero_per_page << order
        return ns


class LatencyHistogram:
    """Power-of-two latency histogram per (order, path), flat counters for the hot path.

    >>> h = LatencyHistogram(); h.add(0, 0, 50); h.add(0, 0, 60); h.add(9, 3, 5000)
    >>> h.rows()
    [(0, 'pcp', 32, 2), (9, 'fallback_claim', 4096, 1)]
    >>> h.quantiles(0)
    {'p50': 48, 'p99': 60, 'max': 60}
    """

    def __init__(self) -> None:
        self.counts = [0] * (11 * len(PATH_NAMES) * NR_BUCKETS)
        self.max_by_order = [0] * 11

    def add(self, order: int, path: int, ns: int) -> None:
        b = ns.bit_length()
        if b >= NR_BUCKETS:
            b = NR_BUCKETS - 1
        self.counts[(order * len(PATH_NAMES) + path) * NR_BUCKETS + b] += 1
        if ns > self.max_by_order[order]:
            self.max_by_order[order] = ns

    def add_n(self, order: int, path: int, ns: int, n: int) -> None:
        """``n`` requests of the same latency."""
        b = min(ns.bit_length(), NR_BUCKETS - 1)
        self.counts[(order * len(PATH_NAMES) + path) * NR_BUCKETS + b] += n
        if ns > self.max_by_order[order]:
            self.max_by_order[order] = ns

    def rows(self) -> list[tuple[int, str, int, int]]:
        """(order, path, bucket lower bound ns, count) for non-empty buckets."""
        out = []
        npath = len(PATH_NAMES)
        for i, c in enumerate(self.counts):
            if c:
                b = i % NR_BUCKETS
                op = i // NR_BUCKETS
                out.append((op // npath, PATH_NAMES[op % npath], 0 if b == 0 else 1 << (b - 1), c))
        return out

    def quantiles(self, order: int) -> dict | None:
        """p50/p99 over all paths of one order, interpolated linearly inside their power-of-two
        bucket (Prometheus' ``histogram_quantile`` rule, as the reports use); ``max`` is exact."""
        npath = len(PATH_NAMES)
        per_bucket = [0] * NR_BUCKETS
        for p in range(npath):
            base = (order * npath + p) * NR_BUCKETS
            for b in range(NR_BUCKETS):
                per_bucket[b] += self.counts[base + b]
        total = sum(per_bucket)
        if not total:
            return None
        out = {}
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            need = q * total
            acc = 0
            for b, c in enumerate(per_bucket):
                if c and acc + c >= need:
                    lo = 0 if b == 0 else 1 << (b - 1)
                    hi = 1 if b == 0 else 2 * lo
                    out[name] = min(int(round(lo + (hi - lo) * (need - acc) / c)), self.max_by_order[order])
                    break
                acc += c
        out["max"] = self.max_by_order[order]
        return out
