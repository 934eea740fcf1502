"""Slab object accounting of a trace, vectorised with Polars (no per-event Python).

Object events (``kmalloc``, ``kmem_cache_alloc``, ``kfree``, ``kmem_cache_free``)
are matched per pointer in file order: an allocation opens an object, the next
free of that pointer closes it.  The replay rules of traces/README.md follow
from the previous event of the same pointer:

======================  =================================================================
rule                    condition
======================  =================================================================
kfree_null              a free of NULL or ZERO_SIZE_PTR (``kfree(NULL)`` is traced)
alloc_of_live_pointer   an allocation whose pointer's previous event is an allocation: the
                        free was not traced (kfree_rcu batching, sheaves): closed implicitly
free_of_untraced_object a free whose pointer has no open allocation (allocated before the
                        trace, or freed twice in the trace's view)
======================  =================================================================

Everything else is replayed: allocations (including failed ones, ptr NULL) and
matched frees.  Live objects and bytes per cache at each of the monitor's sample
times are then running sums of the deltas (each counted from the first sample at or
after it).

>>> import polars as pl
>>> from kmemdes.trace.schema import conform
>>> ev = conform(pl.DataFrame({"line": [1, 2, 3, 4, 5], "ts": [0, 10, 20, 30, 40], "kind": [11, 11, 13, 13, 12],
...     "event": ["kmem_cache_alloc"] * 2 + ["kmem_cache_free"] * 2 + ["kfree"],
...     "ptr": [7, 7, 7, 9, 0], "cache": ["filp"] * 4 + [None], "bytes_req": [184, 184, None, None, None],
...     "bytes_alloc": [192, 192, None, None, None]}))
>>> s = object_stats(ev, t0=0)
>>> s.replayed, s.quirks
(2, {'alloc_of_live_pointer': 1, 'free_of_untraced_object': 1, 'kfree_null': 1})
>>> s.live_by_cache.row(0)
('filp', 0, 0, 0, 2, 2)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from kmemdes.trace.schema import EventKind

__all__ = ["ObjectStats", "object_stats", "OBJECT_KINDS"]

OBJECT_KINDS = (int(EventKind.KMALLOC), int(EventKind.KMEM_CACHE_ALLOC), int(EventKind.KFREE),
                int(EventKind.KMEM_CACHE_FREE))
_ALLOC_KINDS = OBJECT_KINDS[:2]
# one row per object opened (+1) or closed (-1); narrow types: a big trace has millions
_DELTAS = {"t_ns": pl.Int64, "cache": pl.Categorical, "d_objs": pl.Int8, "d_req": pl.Int32, "d_alloc": pl.Int32}


@dataclass
class ObjectStats:
    replayed: int = 0
    quirks: dict = field(default_factory=dict)
    deltas: pl.DataFrame = field(default_factory=pl.DataFrame)  # _DELTAS: t_ns, cache, d_objs, d_req, d_alloc
    live_by_cache: pl.DataFrame = field(default_factory=pl.DataFrame)  # final: cache, objs, req, alloc, allocs, frees
    sizes: dict = field(default_factory=dict)  # ("kmalloc"|"kmem_cache", bucket) -> count

    def sample(self, times: list[int]) -> pl.DataFrame:
        """Live objects and bytes per cache at each of ``times`` (rows for caches that had traffic)."""
        if self.deltas.height == 0 or not times:
            return pl.DataFrame(schema={"t_ns": pl.Int64, "cache": pl.String, "active_objs": pl.Int64,
                                        "num_objs": pl.Int64, "slabs": pl.Int64, "pages": pl.Int64,
                                        "bytes_req": pl.Int64, "bytes_alloc": pl.Int64})
        # each delta counts from the first sample time at or after it: sum per (cache, sample), then a
        # running sum over the samples (the value at T is every delta with t_ns <= T)
        uniq = np.unique(np.asarray(times, dtype=np.int64))
        d = self.deltas
        j = np.searchsorted(uniq, d["t_ns"].to_numpy(), side="left")
        per = (d.lazy().with_columns(j=pl.Series(j, dtype=pl.Int64)).filter(pl.col("j") < len(uniq))
               .group_by("cache", "j").agg(pl.col("d_objs").cast(pl.Int64).sum(),
                                           pl.col("d_req").cast(pl.Int64).sum(),
                                           pl.col("d_alloc").cast(pl.Int64).sum())
               .with_columns(pl.col("cache").cast(pl.String)).collect())
        caches = d.select(pl.col("cache").unique().cast(pl.String)).sort("cache")
        grid = caches.join(pl.DataFrame({"j": np.arange(len(uniq))}, schema={"j": pl.Int64}), how="cross")
        cum = (grid.join(per, on=["cache", "j"], how="left").sort("cache", "j")
               .with_columns(pl.col("d_objs", "d_req", "d_alloc").fill_null(0).cum_sum().over("cache")))
        at = pl.DataFrame({"t_ns": times, "j": np.searchsorted(uniq, np.asarray(times, dtype=np.int64))},
                          schema={"t_ns": pl.Int64, "j": pl.Int64})
        out = caches.join(at, how="cross").join(cum, on=["cache", "j"], how="left")
        return out.select(
            "t_ns", "cache",
            pl.col("d_objs").fill_null(0).alias("active_objs"), pl.col("d_objs").fill_null(0).alias("num_objs"),
            pl.lit(0, pl.Int64).alias("slabs"), pl.lit(0, pl.Int64).alias("pages"),
            pl.col("d_req").fill_null(0).alias("bytes_req"), pl.col("d_alloc").fill_null(0).alias("bytes_alloc"),
        ).sort("t_ns", "cache")


def _cache_names(ev: pl.DataFrame) -> pl.Series:
    """The cache of each object event (categorical): kmalloc events carry no cache name, so theirs is
    the size class of bytes_alloc, in the GFP's family.  The strings are built for the kmalloc rows
    only (a few percent of a trace's object events) and scattered into the categorical cache column."""
    from kmemdes.mm.gfp import __GFP_ACCOUNT as ACC, __GFP_DMA as DMA, __GFP_RECLAIMABLE as RCL  # noqa: N811

    size = pl.col("bytes_alloc")
    sz = (pl.when(size == 1024).then(pl.lit("1k")).when(size == 2048).then(pl.lit("2k"))
          .when(size == 4096).then(pl.lit("4k")).when(size == 8192).then(pl.lit("8k"))
          .otherwise(size.cast(pl.String)))
    gfp = pl.col("gfp").fill_null(0)
    fam = (pl.when((gfp & DMA) != 0).then(pl.lit("dma-kmalloc-"))
           .when((gfp & RCL) != 0).then(pl.lit("kmalloc-rcl-"))
           .when((gfp & ACC) != 0).then(pl.lit("kmalloc-cg-"))
           .otherwise(pl.lit("kmalloc-")))
    kmalloc_name = pl.when(size > 8192).then(pl.lit("kmalloc-large")).otherwise(fam + sz)
    names = ev.select(pl.col("cache").cast(pl.Categorical).fill_null("?")).to_series()
    is_kmalloc = ev["kind"] == int(EventKind.KMALLOC)
    if is_kmalloc.any():
        km = ev.filter(is_kmalloc).select(kmalloc_name.cast(pl.Categorical)).to_series()
        names = names.scatter(is_kmalloc.arg_true(), km)
    return names.alias("name")


def object_stats(events: pl.DataFrame, t0: int) -> ObjectStats:
    """Match the object events of a trace; counts by rule, cache deltas over time, final live objects.

    One lazy query over narrow columns (cache names categorical): a big trace has millions of
    object events, and this runs before the replay holds its own state.
    """
    ev = events.lazy().filter(pl.col("kind").is_in(OBJECT_KINDS)).select(
        "ts", "kind", "ptr", "cache", "bytes_req", "bytes_alloc", "gfp").collect()
    out = ObjectStats()
    if ev.height == 0:
        out.deltas = pl.DataFrame(schema=_DELTAS)
        out.live_by_cache = pl.DataFrame(schema={"cache": pl.String, "objs": pl.Int64, "bytes_req": pl.Int64,
                                                 "bytes_alloc": pl.Int64, "allocs": pl.Int64, "frees": pl.Int64})
        return out
    ev = ev.with_row_index("seq").lazy().select(
        "seq", "kind", "ptr",
        is_alloc=pl.col("kind").is_in(_ALLOC_KINDS),
        t_ns=(pl.col("ts") - t0),
        name=_cache_names(ev),
        req=pl.col("bytes_req").fill_null(0).cast(pl.Int32),
        alloc=pl.col("bytes_alloc").fill_null(0).cast(pl.Int32),
    ).with_columns(null_free=(~pl.col("is_alloc")) & pl.col("ptr").is_in([0, 0x10]),
                   failed=pl.col("is_alloc") & (pl.col("ptr") == 0)).collect()
    tracked = ev.lazy().filter(~pl.col("null_free") & ~pl.col("failed")).select(
        "seq", "t_ns", "ptr", "is_alloc", "name", "req", "alloc").sort("ptr", maintain_order=True)  # then seq
    same = pl.col("ptr") == pl.col("ptr").shift(1)  # one sort, then plain shifts (no per-group windows)
    tracked = tracked.with_columns(
        prev_alloc=pl.when(same).then(pl.col("is_alloc").shift(1)),
        prev_name=pl.when(same).then(pl.col("name").shift(1)),
        prev_req=pl.when(same).then(pl.col("req").shift(1)),
        prev_alloc_bytes=pl.when(same).then(pl.col("alloc").shift(1)),
    ).drop("ptr")
    live_alloc = pl.col("is_alloc") & (pl.col("prev_alloc") == True)  # noqa: E712
    matched_free = (~pl.col("is_alloc")) & (pl.col("prev_alloc") == True)  # noqa: E712
    untraced_free = (~pl.col("is_alloc")) & (pl.col("prev_alloc").is_null() | (pl.col("prev_alloc") == False))  # noqa: E712
    tracked = tracked.with_columns(live_alloc=live_alloc, matched_free=matched_free,
                                   untraced_free=untraced_free).collect()
    counts = tracked.select(
        live=pl.col("live_alloc").sum(), matched=pl.col("matched_free").sum(), untraced=pl.col("untraced_free").sum(),
        allocs=pl.col("is_alloc").sum()).row(0, named=True)
    n_null = int(ev["null_free"].sum())
    n_failed = int(ev["failed"].sum())
    out.quirks = {k: v for k, v in (("alloc_of_live_pointer", counts["live"]),
                                    ("free_of_untraced_object", counts["untraced"]),
                                    ("kfree_null", n_null)) if v}
    out.replayed = int(counts["allocs"] - counts["live"] + counts["matched"] + n_failed)
    # deltas: +1 per allocation, -1 per close (matched free, or implicit close by a live re-allocation)
    plus = tracked.lazy().filter(pl.col("is_alloc")).select(
        "t_ns", pl.col("name").alias("cache"), pl.lit(1, pl.Int8).alias("d_objs"),
        pl.col("req").alias("d_req"), pl.col("alloc").alias("d_alloc"), "seq")
    minus = tracked.lazy().filter(pl.col("matched_free") | pl.col("live_alloc")).select(
        "t_ns", pl.col("prev_name").alias("cache"), pl.lit(-1, pl.Int8).alias("d_objs"),
        (-pl.col("prev_req")).alias("d_req"), (-pl.col("prev_alloc_bytes")).alias("d_alloc"), "seq")
    del tracked
    # in event order, a close before the allocation of the same event (a live pointer re-allocated)
    out.deltas = pl.concat([minus, plus]).sort("seq", maintain_order=True).drop("seq").cast(_DELTAS).collect()
    deltas = out.deltas.lazy()
    allocs = plus.group_by("cache").agg(allocs=pl.len())
    closes = minus.group_by("cache").agg(frees=pl.len())
    out.live_by_cache = (deltas.group_by("cache").agg(objs=pl.col("d_objs").cast(pl.Int64).sum(),
                                                      bytes_req=pl.col("d_req").cast(pl.Int64).sum(),
                                                      bytes_alloc=pl.col("d_alloc").cast(pl.Int64).sum())
                         .join(allocs, on="cache", how="left").join(closes, on="cache", how="left")
                         .with_columns(pl.col("cache").cast(pl.String),
                                       pl.col("allocs").fill_null(0).cast(pl.Int64),
                                       pl.col("frees").fill_null(0).cast(pl.Int64))
                         .sort("cache").collect())
    sizes = (ev.lazy().filter(pl.col("is_alloc") & (pl.col("req") > 0))
             .with_columns(kindname=pl.when(pl.col("kind") == int(EventKind.KMALLOC)).then(pl.lit("kmalloc"))
                           .otherwise(pl.lit("kmem_cache")),
                           bucket=pl.lit(2.0).pow(pl.col("req").cast(pl.Float64).log(2).ceil()).cast(pl.Int64))
             .group_by("kindname", "bucket").len().sort("kindname", "bucket").collect())
    out.sizes = {(k, int(b)): int(c) for k, b, c in sizes.iter_rows()}
    return out
