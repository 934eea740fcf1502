"""Time-weighted sampling of the models into columnar buffers (metrics/*.parquet of a run).

A :class:`Monitor` is called every ``sample_interval`` of simulated time (and
once at the start and end); each call appends plain Python values to lists,
turned into Polars frames only when the run ends.  Pageblock statistics use
numpy views of the node's per-page ``bytearray`` (no copies, no per-page Python).
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import polars as pl

from kmemdes.mm.frag import fragmentation_index, fragmentation_score_zone, unusable_free_index
from kmemdes.mm.page_alloc import MIGRATE_TYPES, NR_PAGE_ORDERS, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, Node

__all__ = ["Monitor", "PageblockCounts", "pageblock_stats"]

PAGE_FREE = 0xFF


_COUNTED = (PAGE_FREE, 0, 1, 2)  # the page_mt values of the free, unmovable, movable, reclaimable counts


def _zone_pages(node: Node, zone) -> np.ndarray:
    """The zone's pages' ``page_mt`` values, one row per pageblock (a view; padded with 0xFE, a value
    no count takes, when the last pageblock runs past the end of memory)."""
    first = zone.start_pfn >> PAGEBLOCK_ORDER
    last = (zone.end_pfn - 1) >> PAGEBLOCK_ORDER
    pm = np.frombuffer(node.page_mt, dtype=np.uint8)
    n_pb = last + 1 - first
    start = first << PAGEBLOCK_ORDER
    end = (last + 1) << PAGEBLOCK_ORDER
    if end <= len(pm):
        return pm[start:end].reshape(n_pb, PAGEBLOCK_NR_PAGES)
    padded = np.full(n_pb * PAGEBLOCK_NR_PAGES, 0xFE, dtype=np.uint8)
    padded[: len(pm) - start] = pm[start:]
    return padded.reshape(n_pb, PAGEBLOCK_NR_PAGES)


class PageblockCounts:
    """The free / unmovable / movable / reclaimable page counts of the pageblocks of one zone, recounted
    only in the online pageblocks whose pages changed since the last call: between two samples a
    replay touches a few percent of them, and comparing 8 pages at a time is several times cheaper
    than counting.  ``counts[:, b]`` always counts ``pages[b]``."""

    def __init__(self):
        self.first = -1  # the zone's first pageblock at the last call
        self.pages: np.ndarray | None = None  # the zone's page_mt when last counted (a copy)
        self.counts: np.ndarray | None = None  # [len(_COUNTED), pageblocks]

    def __call__(self, node: Node, zone, valid: np.ndarray) -> np.ndarray:
        """The counts of every pageblock of ``zone``, up to date where ``valid`` (online)."""
        cur = _zone_pages(node, zone)
        first = zone.start_pfn >> PAGEBLOCK_ORDER
        if self.pages is None or self.pages.shape != cur.shape or self.first != first:
            self.first = first
            self.pages = cur.copy()
            self.counts = np.stack([(cur == v).sum(axis=1) for v in _COUNTED])
            return self.counts
        words = PAGEBLOCK_NR_PAGES // 8
        now, was = cur.view(np.uint64).reshape(-1, words), self.pages.view(np.uint64).reshape(-1, words)
        # runs of online pageblocks, compared as slices (no copies)
        edges = np.flatnonzero(np.diff(valid.view(np.int8), prepend=0, append=0))
        changed = [s + np.flatnonzero((now[s:e] != was[s:e]).any(axis=1))
                   for s, e in zip(edges[::2].tolist(), edges[1::2].tolist())]
        changed = np.concatenate(changed) if changed else np.zeros(0, dtype=np.intp)
        if changed.size:
            rows = cur[changed]
            self.pages[changed] = rows
            for i, v in enumerate(_COUNTED):
                self.counts[i, changed] = (rows == v).sum(axis=1)
        return self.counts


def pageblock_stats(node: Node, zone, counts: PageblockCounts | None = None) -> dict[str, np.ndarray]:
    """Per online pageblock of ``zone``: index, type, and free / movable / unmovable / reclaimable page counts.

    Pages on per-CPU lists count as free (they are free memory the allocator holds).  ``counts``: the
    zone's :class:`PageblockCounts` of earlier calls (the counts are then recounted where pages changed).
    """
    first = zone.start_pfn >> PAGEBLOCK_ORDER
    last = (zone.end_pfn - 1) >> PAGEBLOCK_ORDER
    valid = np.frombuffer(node.pb_valid, dtype=np.uint8)[first:last + 1].astype(bool)
    if counts is None:
        block = _zone_pages(node, zone)[valid]  # only online rows
        free, unmovable, movable, reclaimable = ((block == v).sum(axis=1) for v in _COUNTED)
    else:
        free, unmovable, movable, reclaimable = counts(node, zone, valid)[:, valid]
    return {
        "pageblock": np.arange(first, last + 1)[valid],
        "migratetype": np.frombuffer(node.pb_mt, dtype=np.uint8)[first:last + 1][valid],
        "free": free,
        "unmovable": unmovable,
        "movable": movable,
        "reclaimable": reclaimable,
    }


class Monitor:
    """Collects the time series of one run.

    ``extra`` callables (e.g. the SLUB or vmalloc model) are sampled too:
    ``slab_sampler() -> list[(cache, active_objs, num_objs, slabs, pages, bytes_req, bytes_alloc)]``,
    ``vmalloc_sampler() -> (areas, va_bytes, pages, lazy_pages, purges)``,
    ``counter_sampler() -> dict[name, value]``.
    """

    def __init__(self, node: Node, pagemap_snapshots: int = 10, duration_ns: int = 0,
                 slab_sampler: Optional[Callable] = None, vmalloc_sampler: Optional[Callable] = None,
                 counter_sampler: Optional[Callable] = None):
        self.node = node
        self.buddy = {k: [] for k in ("t_ns", "zone", "order", "migratetype", "nr_free")}
        self.frag = {k: [] for k in ("t_ns", "zone", "order", "unusable", "extfrag")}
        self.score = {k: [] for k in ("t_ns", "zone", "score", "free_pages", "managed", "wmark_min", "wmark_low",
                                      "wmark_high", "boost", "pcp_pages")}
        self.pageblocks = {k: [] for k in ("t_ns", "zone", "migratetype", "blocks", "mixed")}
        self.slab = {k: [] for k in ("t_ns", "cache", "active_objs", "num_objs", "slabs", "pages", "bytes_req",
                                     "bytes_alloc")}
        self.vmalloc = {k: [] for k in ("t_ns", "areas", "va_bytes", "pages", "lazy_pages", "purges")}
        self.counters = {k: [] for k in ("t_ns", "name", "value")}
        self.pagemap: list[pl.DataFrame] = []
        self.slab_sampler = slab_sampler
        self.vmalloc_sampler = vmalloc_sampler
        self.counter_sampler = counter_sampler
        self.duration_ns = duration_ns
        self.pagemap_every = duration_ns // (pagemap_snapshots + 1) if duration_ns and pagemap_snapshots else 0
        self._next_pagemap = self.pagemap_every or -1
        self.samples = 0
        self._pb_counts: dict[str, PageblockCounts] = {}  # zone name -> its pageblocks' page counts

    # ----------------------------------------------------------- sampling
    def sample(self, t_ns: int, final: bool = False) -> None:
        node = self.node
        b, f, s, pb = self.buddy, self.frag, self.score, self.pageblocks
        lcount = node.lcount
        for z in node.zones:
            if not z.present:
                continue
            name = z.name
            for o in range(NR_PAGE_ORDERS):
                base = z.lid0 + o * MIGRATE_TYPES
                for mt in range(MIGRATE_TYPES):
                    n = lcount[base + mt]
                    if n or mt < 3:
                        b["t_ns"].append(t_ns)
                        b["zone"].append(name)
                        b["order"].append(o)
                        b["migratetype"].append(mt)
                        b["nr_free"].append(n)
            nr_free = z.nr_free
            for o in range(NR_PAGE_ORDERS):
                f["t_ns"].append(t_ns)
                f["zone"].append(name)
                f["order"].append(o)
                f["unusable"].append(unusable_free_index(nr_free, o))
                f["extfrag"].append(fragmentation_index(nr_free, o))
            s["t_ns"].append(t_ns)
            s["zone"].append(name)
            s["score"].append(fragmentation_score_zone(nr_free))
            s["free_pages"].append(z.free_pages)
            s["managed"].append(z.managed)
            s["wmark_min"].append(z._watermark[0])
            s["wmark_low"].append(z._watermark[1])
            s["wmark_high"].append(z._watermark[2])
            s["boost"].append(z.watermark_boost)
            s["pcp_pages"].append(z.pcp_count())
            counts = self._pb_counts.get(name)
            if counts is None:
                counts = self._pb_counts[name] = PageblockCounts()
            st = pageblock_stats(node, z, counts)
            mts = st["migratetype"]
            other = {0: st["movable"] + st["reclaimable"], 1: st["unmovable"] + st["reclaimable"],
                     2: st["unmovable"] + st["movable"]}
            for mt in range(MIGRATE_TYPES):
                sel = mts == mt
                pb["t_ns"].append(t_ns)
                pb["zone"].append(name)
                pb["migratetype"].append(mt)
                pb["blocks"].append(int(sel.sum()))
                pb["mixed"].append(int(((other[mt] > 0) & sel).sum()) if mt in other else 0)
            if final or t_ns == 0 or (self._next_pagemap > 0 and t_ns >= self._next_pagemap):
                self.pagemap.append(pl.DataFrame({
                    "t_ns": np.full(len(mts), t_ns, dtype=np.int64), "zone": [name] * len(mts),
                    "pageblock": st["pageblock"].astype(np.int64), "migratetype": mts.astype(np.int8),
                    "free": st["free"].astype(np.int16), "movable": st["movable"].astype(np.int16),
                    "unmovable": st["unmovable"].astype(np.int16),
                    "reclaimable": st["reclaimable"].astype(np.int16)}))
        if self._next_pagemap > 0 and t_ns >= self._next_pagemap:
            self._next_pagemap += self.pagemap_every
        if self.slab_sampler is not None:
            for row in self.slab_sampler():
                self.slab["t_ns"].append(t_ns)
                for k, v in zip(("cache", "active_objs", "num_objs", "slabs", "pages", "bytes_req", "bytes_alloc"), row):
                    self.slab[k].append(v)
        if self.vmalloc_sampler is not None:
            row = self.vmalloc_sampler()
            self.vmalloc["t_ns"].append(t_ns)
            for k, v in zip(("areas", "va_bytes", "pages", "lazy_pages", "purges"), row):
                self.vmalloc[k].append(v)
        counters = {
            "kswapd_wakeups": node.kswapd_wakeups, "pcp_drains": node.nr_pcpu_drain, "boosts": node.nr_boost,
            "oom": node.nr_oom, "zone_locked": node.nr_zone_locked,
        }
        if self.counter_sampler is not None:
            counters.update(self.counter_sampler())
        for k in sorted(counters):
            self.counters["t_ns"].append(t_ns)
            self.counters["name"].append(k)
            self.counters["value"].append(int(counters[k]))
        self.samples += 1

    # ------------------------------------------------------------- frames
    def frames(self) -> dict[str, pl.DataFrame]:
        """The collected series as Polars frames, with the run-directory dtypes."""
        i64, i32, i16, i8, s = pl.Int64, pl.Int32, pl.Int16, pl.Int8, pl.String
        out = {
            "buddy": pl.DataFrame(self.buddy, schema={"t_ns": i64, "zone": s, "order": i8, "migratetype": i8,
                                                       "nr_free": i64}),
            "frag": pl.DataFrame(self.frag, schema={"t_ns": i64, "zone": s, "order": i8, "unusable": i32,
                                                     "extfrag": i32}),
            "score": pl.DataFrame(self.score, schema={"t_ns": i64, "zone": s, "score": i32, "free_pages": i64,
                                                       "managed": i64, "wmark_min": i64, "wmark_low": i64,
                                                       "wmark_high": i64, "boost": i64, "pcp_pages": i64}),
            "pageblocks": pl.DataFrame(self.pageblocks, schema={"t_ns": i64, "zone": s, "migratetype": i8,
                                                                 "blocks": i64, "mixed": i64}),
            "slab": pl.DataFrame(self.slab, schema={"t_ns": i64, "cache": s, "active_objs": i64, "num_objs": i64,
                                                     "slabs": i64, "pages": i64, "bytes_req": i64,
                                                     "bytes_alloc": i64}),
            "vmalloc": pl.DataFrame(self.vmalloc, schema={"t_ns": i64, "areas": i64, "va_bytes": i64, "pages": i64,
                                                           "lazy_pages": i64, "purges": i64}),
            "counters": pl.DataFrame(self.counters, schema={"t_ns": i64, "name": s, "value": i64}),
        }
        if self.pagemap:
            out["pagemap"] = pl.concat(self.pagemap)
        else:
            out["pagemap"] = pl.DataFrame(schema={"t_ns": i64, "zone": s, "pageblock": i64, "migratetype": i8,
                                                  "free": i16, "movable": i16, "unmovable": i16, "reclaimable": i16})
        return out
