"""Latency of each allocation path, in nanoseconds (KERNEL.md section 17).

The defaults are **estimates derived from published figures, not
measurements** (sources below); every value can be overridden in a config's
``[cost]`` table by its field name.

==========================  =====  ==================================================================
field                       ns     source (KERNEL.md 17)
==========================  =====  ==================================================================
pcp_hit                     50     order-0 alloc+free 115-231 cycles (page_bench01, 2016-2023): ~40-60 ns
pcp_refill_per_block        45     buddy refill of 63 pages 2-5 us under one zone-lock hold
buddy_base                  150    order-3 alloc+free ~500 cycles (Brouer, LKML 2016): 150-250 ns
buddy_per_order             40     grows with the split depth (order-9 from a free list 1-2 us)
fallback_claim              800    extra work to move a pageblock's free pages (move_freepages_block)
fallback_steal              300    extra fallback scan
slowpath                    1000   waking kswapd, recomputing flags, second freelist pass
zero_per_page               330    2 MiB clear in ~85-170 us (folio_zero_user, 2026): ~330 ns / 4 KiB
reclaim_per_page            1000   direct reclaim of clean page cache (coarse; LRU isolate + unmap + free)
compact_per_migrated_page   2000   compaction ~1-3 us per migrated 4 KiB page
compact_per_scanned_page    20     scanner cost per page looked at
compact_base                5000   one direct compaction attempt (setup, draining, zone lock)
kmalloc_fast                15     SLUB fast path 10.5-12 ns per alloc+free pair (2015), rounded up
kmalloc_slow                200    partial-list refill 100-300 ns
new_slab_per_object         75     new slab: page allocation + 50-100 ns per object initialised
vmalloc_base                400    vmalloc+vfree of 1 page ~0.43 us (test_vmalloc, 2020)
vmalloc_per_page            100    +100 ns per extra page
vfree                       200    vfree without the lazy purge
purge_tlb_flush             20000  one lazy purge: global TLB flush IPI, 2-50 us
page_fault                  1000   anon 4 KiB minor fault median ~1 us (6.6, low authority)
==========================  =====  ==================================================================

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
    """Per-path latency estimates in ns; see the module docstring for sources."""

    pcp_hit: int = 50
    pcp_refill_per_block: int = 45
    buddy_base: int = 150
    buddy_per_order: int = 40
    fallback_claim: int = 800
    fallback_steal: int = 300
    slowpath: int = 1000
    zero_per_page: int = 330
    reclaim_per_page: int = 1000
    compact_per_migrated_page: int = 2000
    compact_per_scanned_page: int = 20
    compact_base: int = 5000
    kmalloc_fast: int = 15
    kmalloc_slow: int = 200
    new_slab_per_object: int = 75
    vmalloc_base: int = 400
    vmalloc_per_page: int = 100
    vfree: int = 200
    purge_tlb_flush: int = 20000
    page_fault: int = 1000

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
