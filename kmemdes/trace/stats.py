"""Trace statistics: what ``perf kmem stat`` reports (tools/perf/builtin-kmem.c),
and the matching a replayer needs (traces/README.md section 5).

Everything is computed on the event table with Polars: pointers and pfns are
matched by sorting each key's events in file order and looking at the previous
event of the same key (``shift`` inside the key), or with an as-of join, never
with a Python loop over events.

Matching rules (the same as ``analyze.py`` of the trace corpus, so the numbers
can be compared with each capture's ``analysis.json``):

- slab: an allocation (kmalloc, kmem_cache_alloc, ``*_node``) of a pointer
  makes it live; a free (kfree, kmem_cache_free) of a live pointer matches it,
  whatever the event types (``kfree`` also frees named-cache objects).  An
  allocation of a pointer that is still live is a *missed free* (an untraced
  free: RCU/sheaf/bulk paths); a free of a pointer allocated earlier in the
  trace but not live is *already freed*; a free of a pointer never allocated
  in the trace is a free of a *pre-trace* object.  ``kfree(NULL)`` is counted
  apart.  *Cross-CPU* frees are matched frees on another CPU than the
  allocation (perf kmem's "ping-pong").
- pages: an ``mm_page_alloc`` (pfn != -1) makes its block live; an
  ``mm_page_free`` matches it by head pfn, or falls inside a live
  higher-order block; otherwise it is *unmatched* (memory in use before the
  trace, bulk allocations).  ``mm_page_free_batched`` is an annotation: it
  normally follows an ``mm_page_free`` of the same pfn (``free_unref_folios``).
- vmalloc: ``alloc_vmap_area`` (not failed) makes ``va_start`` live;
  ``free_vmap_area_noflush`` matches it by address.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from kmemdes.mm.gfp import MIGRATETYPE_NAMES
from kmemdes.trace._trace import Trace
from kmemdes.trace.schema import EventKind, bad_page_event

__all__ = ["trace_stats", "slab_stats", "page_stats", "vmalloc_stats", "format_stats", "kmalloc_cache_names"]

_K = EventKind
_SLAB_ALLOC = (int(_K.KMALLOC), int(_K.KMEM_CACHE_ALLOC))
_SLAB_FREE = (int(_K.KFREE), int(_K.KMEM_CACHE_FREE))
_PAGE_HEAD = (int(_K.MM_PAGE_ALLOC), int(_K.MM_PAGE_FREE))
_MAX_ORDER = 10
_TOP = 20


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def _frag(req: int, alloc: int) -> float | None:
    """Internal fragmentation %, as perf kmem prints it: ``100 - 100*req/alloc``."""
    return round(100.0 - 100.0 * req / alloc, 3) if alloc else None


def kmalloc_cache_names(pairs: pl.DataFrame) -> dict[tuple, str]:
    """Cache name of each distinct (bytes_alloc, gfp) of kmalloc events:
    ``kmalloc_type()`` family and size class (``kmalloc-96``, ``kmalloc-cg-1k``),
    ``kmalloc-large`` above 8 KiB (served by the page allocator).

    >>> kmalloc_cache_names(pl.DataFrame({"bytes_alloc": [96, 16384, 64], "gfp": [0xcc0, 0xcc0, 0x400cc0]}))
    {(96, 3264): 'kmalloc-96', (16384, 3264): 'kmalloc-large', (64, 4197568): 'kmalloc-cg-64'}
    """
    from kmemdes.mm.slub import kmalloc_slab_name

    out = {}
    for ba, gfp in pairs.select("bytes_alloc", "gfp").unique(maintain_order=True).iter_rows():
        if ba is None:
            out[(ba, gfp)] = "kmalloc-?"
            continue
        name = kmalloc_slab_name(ba, gfp if gfp is not None else 0xCC0)
        out[(ba, gfp)] = name if name is not None else ("kmalloc-large" if ba > 0 else "kmalloc-0")
    return out


def _rows(frame: pl.DataFrame) -> list[dict]:
    return frame.to_dicts()


# --------------------------------------------------------------------------- slab


def slab_stats(events: pl.DataFrame, top: int = _TOP) -> dict:
    """Slab allocator statistics (``perf kmem stat --slab`` and the matching)."""
    s = events.select(
        "line", "kind", "event", "cpu", "ptr", "cache", "bytes_req", "bytes_alloc", "gfp", "call_site"
    ).filter(pl.col("kind").is_in(_SLAB_ALLOC + _SLAB_FREE))
    is_alloc = pl.col("kind").is_in(_SLAB_ALLOC)
    kmalloc = s.filter(pl.col("kind") == int(_K.KMALLOC))
    names = kmalloc_cache_names(kmalloc) if kmalloc.height else {}
    if names:
        keyed = pl.DataFrame(
            {
                "bytes_alloc": [k[0] for k in names],
                "gfp": [k[1] for k in names],
                "_kname": list(names.values()),
            },
            schema={"bytes_alloc": pl.Int64, "gfp": pl.UInt32, "_kname": pl.String},
        )
        s = s.join(keyed, on=["bytes_alloc", "gfp"], how="left", nulls_equal=True, maintain_order="left")
        s = s.with_columns(
            cache=pl.when(pl.col("kind") == int(_K.KMALLOC)).then(pl.col("_kname")).otherwise(pl.col("cache"))
        ).drop("_kname")
    by_event = {
        ev: {"count": n} for ev, n in s.group_by("event").len().sort("event").iter_rows()
    }
    null = pl.col("ptr") == 0
    null_counts = dict(s.filter(null).group_by("event").len().iter_rows())
    for ev, d in by_event.items():
        d["null_ptr"] = int(null_counts.get(ev, 0))

    m = (
        s.filter(~null & pl.col("ptr").is_not_null())
        .sort(["ptr", "line"])
        .with_columns(_a=is_alloc)
        .with_columns(
            _same=pl.col("ptr") == pl.col("ptr").shift(1),
            _pa=pl.col("_a").shift(1),
            _pcpu=pl.col("cpu").shift(1),
            _pcache=pl.col("cache").shift(1),
            _pev=pl.col("event").shift(1),
            _preq=pl.col("bytes_req").shift(1),
            _palloc=pl.col("bytes_alloc").shift(1),
            _pcs=pl.col("call_site").shift(1),
            _ever=(pl.col("_a").cast(pl.Int32).cum_sum().over("ptr") - pl.col("_a").cast(pl.Int32)) > 0,
            _last=(pl.col("ptr") != pl.col("ptr").shift(-1)).fill_null(True),
        )
        .with_columns(_live_before=(pl.col("_same") & pl.col("_pa")).fill_null(False))
    )
    allocs = m.filter(pl.col("_a"))
    frees = m.filter(~pl.col("_a")).with_columns(
        _matched=pl.col("_live_before"),
        _cross=(pl.col("_live_before") & (pl.col("cpu") != pl.col("_pcpu"))).fill_null(False),
    )
    missed = allocs.filter(pl.col("_live_before"))
    matched = frees.filter(pl.col("_matched"))
    already = frees.filter(~pl.col("_matched") & pl.col("_ever"))
    pretrace = frees.filter(~pl.col("_matched") & ~pl.col("_ever"))
    live_end = m.filter(pl.col("_last") & pl.col("_a"))

    # per event type: matched / unmatched frees, frees matched per allocating event
    for ev, d in by_event.items():
        f = frees.filter(pl.col("event") == ev)
        if f.height or d["null_ptr"] and ev in ("kfree", "kmem_cache_free"):
            d["nonnull"] = f.height
            d["matched_live"] = int(f["_matched"].sum()) if f.height else 0
            d["already_freed"] = int((~f["_matched"] & f["_ever"]).sum()) if f.height else 0
            d["pre_trace"] = int((~f["_matched"] & ~f["_ever"]).sum()) if f.height else 0
            d["cross_cpu"] = int(f["_cross"].sum()) if f.height else 0
            d["match_fraction"] = _ratio(d["matched_live"], d["nonnull"])
            d["matched_from"] = dict(
                f.filter(pl.col("_matched")).group_by("_pev").len().sort("_pev").iter_rows()
            )
        a = allocs.filter(pl.col("event") == ev)
        if a.height:
            d["alloc_of_live_ptr"] = int(a["_live_before"].sum())

    # per cache: allocations by the allocating event's cache; frees by the
    # cache of the object they free (kmem_cache_free's own name= when unmatched)
    alloc_rows = s.filter(is_alloc)
    per_alloc = alloc_rows.group_by("cache").agg(
        allocs=pl.len(),
        bytes_req=pl.col("bytes_req").sum(),
        bytes_alloc=pl.col("bytes_alloc").sum(),
    )
    free_cache = pl.when(pl.col("_matched")).then(pl.col("_pcache")).otherwise(pl.col("cache"))
    per_free = frees.group_by(free_cache.alias("cache")).agg(
        frees=pl.len(),
        frees_matched=pl.col("_matched").sum(),
        cross_cpu_frees=pl.col("_cross").sum(),
        bytes_freed=pl.when(pl.col("_matched")).then(pl.col("_palloc")).sum(),
    )
    per_missed = missed.group_by(pl.col("_pcache").alias("cache")).agg(alloc_of_live_ptr=pl.len())
    per_live = live_end.group_by("cache").agg(live_at_end=pl.len(), live_bytes=pl.col("bytes_alloc").sum())
    caches = (
        per_alloc.join(per_free, on="cache", how="full", coalesce=True, nulls_equal=True)
        .join(per_missed, on="cache", how="full", coalesce=True, nulls_equal=True)
        .join(per_live, on="cache", how="full", coalesce=True, nulls_equal=True)
        .with_columns(pl.col(c).fill_null(0) for c in (
            "allocs", "bytes_req", "bytes_alloc", "frees", "frees_matched", "cross_cpu_frees",
            "bytes_freed", "alloc_of_live_ptr", "live_at_end", "live_bytes",
        ))
        .with_columns(
            frag_pct=pl.when(pl.col("bytes_alloc") > 0)
            .then((100.0 - 100.0 * pl.col("bytes_req") / pl.col("bytes_alloc")).round(3))
            .otherwise(None),
            cache=pl.col("cache").fill_null("(unknown)"),
        )
        .sort(["allocs", "frees", "cache"], descending=[True, True, False])
    )
    # call sites (perf kmem --caller): allocations, bytes, frag, ping-pong
    sites = (
        alloc_rows.group_by("call_site")
        .agg(
            hits=pl.len(),
            bytes_req=pl.col("bytes_req").sum(),
            bytes_alloc=pl.col("bytes_alloc").sum(),
        )
        .join(
            matched.group_by(pl.col("_pcs").alias("call_site")).agg(
                freed=pl.len(), ping_pong=pl.col("_cross").sum()
            ),
            on="call_site",
            how="left",
            nulls_equal=True,
        )
        .with_columns(
            pl.col("freed").fill_null(0),
            pl.col("ping_pong").fill_null(0),
            frag_pct=pl.when(pl.col("bytes_alloc") > 0)
            .then((100.0 - 100.0 * pl.col("bytes_req") / pl.col("bytes_alloc")).round(3))
            .otherwise(None),
        )
        .sort(["hits", "call_site"], descending=[True, False])
    )
    req = int(alloc_rows["bytes_req"].sum() or 0)
    alc = int(alloc_rows["bytes_alloc"].sum() or 0)
    freed = int(matched["_palloc"].sum() or 0)
    n_alloc = alloc_rows.height
    n_free = s.height - n_alloc
    summary = {
        "allocs": n_alloc,
        "frees": n_free,
        "alloc_null_ptr": int(alloc_rows.filter(pl.col("ptr") == 0).height),
        "kfree_null": int(s.filter(null & ~is_alloc).height),
        "frees_nonnull": frees.height,
        "frees_matched_live": matched.height,
        "frees_pre_trace": pretrace.height,
        "frees_already_freed": already.height,
        "alloc_of_live_ptr": missed.height,
        "cross_cpu_frees": int(frees["_cross"].sum()) if frees.height else 0,
        "live_at_end": live_end.height,
        "bytes_requested": req,
        "bytes_allocated": alc,
        "bytes_freed": freed,
        "bytes_wasted": alc - req,
        "frag_pct": _frag(req, alc),
    }
    return {
        "summary": summary,
        "by_event": by_event,
        "alloc_of_live_ptr_by_cache": dict(
            per_missed.sort(["alloc_of_live_ptr", "cache"], descending=[True, False]).iter_rows()
        ),
        "caches": _rows(caches),
        "call_sites": _rows(sites.head(top)),
        "call_sites_total": sites.height,
    }


# --------------------------------------------------------------------------- pages


def page_stats(events: pl.DataFrame) -> dict:
    """Page allocator statistics (``perf kmem stat --page``, 4.4+ migratetype
    labels) and pfn matching."""
    kind = pl.col("kind")
    page_kinds = [int(k) for k in (_K.MM_PAGE_ALLOC, _K.MM_PAGE_FREE, _K.MM_PAGE_FREE_BATCHED,
                                   _K.MM_PAGE_ALLOC_EXTFRAG, _K.MM_PAGE_ALLOC_ZONE_LOCKED, _K.MM_PAGE_PCPU_DRAIN)]
    events = events.select(
        "line", "ts", "cpu", "pid", "comm", "kind", "event", "pfn", "order", "migratetype", "gfp_flags",
        "percpu_refill", "fallback_order", "fallback_migratetype", "fragmenting", "change_ownership",
    ).filter(kind.is_in(page_kinds))
    pa = events.filter(kind == int(_K.MM_PAGE_ALLOC)).select("line", "pfn", "order", "migratetype", "gfp_flags")
    failed = pa.filter(pl.col("pfn") == -1)
    mt_name = pl.col("migratetype").replace_strict(
        {i: n for i, n in enumerate(MIGRATETYPE_NAMES)}, default="mt" + pl.col("migratetype").cast(pl.String),
        return_dtype=pl.String,
    )
    pages = pl.lit(2, pl.Int64).pow(pl.col("order").cast(pl.Int64)).cast(pl.Int64)
    order_mt = (
        pa.group_by("order", "migratetype")
        .agg(allocs=pl.len(), pages=pages.sum(), failed=(pl.col("pfn") == -1).sum())
        .with_columns(migratetype_name=mt_name)
        .sort("order", "migratetype")
    )
    gfp = (
        pa.group_by("gfp_flags")
        .agg(allocs=pl.len(), pages=pages.sum(), failed=(pl.col("pfn") == -1).sum())
        .sort(["allocs", "gfp_flags"], descending=[True, False])
    )
    # pfn matching: alloc/free head events in file order, per pfn
    head = (
        events.filter(kind.is_in(_PAGE_HEAD) & (pl.col("pfn") != -1) & pl.col("pfn").is_not_null())
        .select("line", "pfn", "order", _a=kind == int(_K.MM_PAGE_ALLOC))
        .sort(["pfn", "line"])
        .with_columns(
            _same=pl.col("pfn") == pl.col("pfn").shift(1),
            _pa=pl.col("_a").shift(1),
            _porder=pl.col("order").shift(1),
            _last=(pl.col("pfn") != pl.col("pfn").shift(-1)).fill_null(True),
        )
        .with_columns(_live_before=(pl.col("_same") & pl.col("_pa")).fill_null(False))
    )
    frees = head.filter(~pl.col("_a"))
    matched_head = frees.filter(pl.col("_live_before"))
    order_differs = int((matched_head["order"] != matched_head["_porder"]).sum()) if matched_head.height else 0
    unmatched_head = frees.filter(~pl.col("_live_before"))
    # a free inside a live higher-order block: the last head event at the
    # aligned base of some order k >= 1 is an allocation of order >= k
    inside = 0
    if unmatched_head.height:
        by_line = head.select("line", "pfn", "order", "_a").sort("line")
        cand = (
            unmatched_head.select("line", "pfn")
            .join(pl.DataFrame({"k": list(range(1, _MAX_ORDER + 1))}, schema={"k": pl.Int64}), how="cross")
            .with_columns(base=pl.col("pfn") - (pl.col("pfn") % pl.lit(2, pl.Int64).pow(pl.col("k")).cast(pl.Int64)))
            .sort("line")
        )
        hit = cand.join_asof(
            by_line.rename({"pfn": "base", "line": "hline"}),
            left_on="line",
            right_on="hline",
            by="base",
            strategy="backward",
            allow_exact_matches=False,
            check_sortedness=False,
        ).filter(pl.col("_a").fill_null(False) & (pl.col("order") >= pl.col("k")))
        inside = hit.select(pl.col("line").n_unique()).item()
    n_free = frees.height
    unmatched = n_free - matched_head.height - inside
    missed = head.filter(pl.col("_a") & pl.col("_live_before")).height
    live = head.filter(pl.col("_last") & pl.col("_a"))
    # mm_page_free_batched after an mm_page_free of the same pfn
    bt = events.filter(kind == int(_K.MM_PAGE_FREE_BATCHED)).select("line", "pfn").sort("line")
    batched = {"count": bt.height}
    if bt.height:
        prev = bt.join_asof(
            head.select("line", "pfn", "_a").rename({"line": "hline"}).sort("hline"),
            left_on="line",
            right_on="hline",
            by="pfn",
            strategy="backward",
            allow_exact_matches=False,
            check_sortedness=False,
        )
        after_free = int((prev["_a"] == False).sum())  # noqa: E712 - polars boolean column
        live_no_free = int((prev["_a"] == True).sum())  # noqa: E712
        batched.update(
            after_free_same_pfn=after_free,
            live_without_free=live_no_free,
            unmatched=bt.height - after_free - live_no_free,
            after_free_fraction=_ratio(after_free, bt.height),
        )
    free_orders = (
        events.filter(kind.is_in((int(_K.MM_PAGE_FREE), int(_K.MM_PAGE_FREE_BATCHED))))
        .group_by("event", "order")
        .len()
        .sort("event", "order")
    )
    extfrag = events.filter(kind == int(_K.MM_PAGE_ALLOC_EXTFRAG)).select(
        "line", "ts", "cpu", "pid", "comm", "pfn",
        alloc_order="order", fallback_order="fallback_order",
        alloc_migratetype="migratetype", fallback_migratetype="fallback_migratetype",
        fragmenting="fragmenting", change_ownership="change_ownership",
    )
    zl = (
        events.filter(kind == int(_K.MM_PAGE_ALLOC_ZONE_LOCKED))
        .group_by("order", "migratetype", "percpu_refill")
        .len()
        .sort("order", "migratetype", "percpu_refill")
    )
    drain = (
        events.filter(kind == int(_K.MM_PAGE_PCPU_DRAIN)).group_by("order", "migratetype").len().sort("order", "migratetype")
    )
    return {
        "summary": {
            "allocs": pa.height,
            "alloc_pages": int(pa.select(pages.sum()).item() or 0),
            "failed": failed.height,
            "frees": n_free,
            "frees_matched_head": matched_head.height,
            "frees_matched_head_order_differs": order_differs,
            "frees_inside_live_block": int(inside),
            "frees_unmatched": int(unmatched),
            "free_match_fraction": _ratio(matched_head.height + inside, n_free),
            "alloc_of_live_pfn": missed,
            "live_at_end": live.height,
            "live_pages_at_end": int(live.select(pl.lit(2, pl.Int64).pow(pl.col("order").cast(pl.Int64)).cast(pl.Int64).sum()).item() or 0),
        },
        "batched": batched,
        "order_migratetype": _rows(order_mt),
        "gfp": _rows(gfp),
        "free_orders": _rows(free_orders.rename({"len": "count"})),
        "zone_locked": _rows(zl.rename({"len": "count"})),
        "pcpu_drain": _rows(drain.rename({"len": "count"})),
        "extfrag": _rows(extfrag),
    }


# --------------------------------------------------------------------------- vmalloc


def vmalloc_stats(events: pl.DataFrame) -> dict:
    """vmalloc: areas allocated/freed/purged, sizes, lazy-free accounting."""
    kind = pl.col("kind")
    vm_kinds = [int(_K.ALLOC_VMAP_AREA), int(_K.FREE_VMAP_AREA_NOFLUSH), int(_K.PURGE_VMAP_AREA_LAZY)]
    events = events.select("line", "kind", "va_start", "size", "failed", "nr_lazy", "nr_lazy_max", "npurged").filter(
        kind.is_in(vm_kinds)
    )
    al = events.filter(kind == int(_K.ALLOC_VMAP_AREA)).select("line", "va_start", "size", "failed")
    fr = events.filter(kind == int(_K.FREE_VMAP_AREA_NOFLUSH)).select("line", "va_start", "nr_lazy", "nr_lazy_max")
    pu = events.filter(kind == int(_K.PURGE_VMAP_AREA_LAZY)).select("npurged")
    ok = al.filter(pl.col("failed").fill_null(0) == 0)
    m = (
        pl.concat(
            [ok.select("line", "va_start", _a=pl.lit(True)), fr.select("line", "va_start", _a=pl.lit(False))]
        )
        .sort(["va_start", "line"])
        .with_columns(
            _live_before=((pl.col("va_start") == pl.col("va_start").shift(1)) & pl.col("_a").shift(1)).fill_null(False),
            _last=(pl.col("va_start") != pl.col("va_start").shift(-1)).fill_null(True),
        )
    )
    matched = m.filter(~pl.col("_a") & pl.col("_live_before")).height
    sizes = al.group_by("size").len().sort(["len", "size"], descending=[True, False])
    return {
        "allocs": al.height,
        "failed": al.height - ok.height,
        "alloc_bytes": int(ok["size"].sum() or 0),
        "frees": fr.height,
        "frees_matched": matched,
        "frees_unmatched": fr.height - matched,
        "live_at_end": m.filter(pl.col("_last") & pl.col("_a")).height,
        "purges": pu.height,
        "areas_purged": int(pu["npurged"].sum() or 0),
        "nr_lazy_max": int(fr["nr_lazy_max"].max()) if fr.height and fr["nr_lazy_max"].max() is not None else None,
        "nr_lazy_peak": int(fr["nr_lazy"].max()) if fr.height and fr["nr_lazy"].max() is not None else None,
        "sizes": {str(k): int(v) for k, v in sizes.head(_TOP).iter_rows()},
    }


# --------------------------------------------------------------------------- all


def trace_stats(trace: Trace, top: int = _TOP) -> dict:
    """All statistics of a trace as one JSON-able dict: ``events`` (count per
    event name as printed), ``span_s``, ``lost``, ``problems``, ``slab``,
    ``page``, ``vmalloc``.

    >>> from pathlib import Path
    >>> from kmemdes.trace.reader import read_trace
    >>> st = trace_stats(read_trace(Path(__file__).resolve().parents[2] / "traces" / "a_idle_stream"))
    >>> st["events"]["mm_page_alloc"], st["slab"]["summary"]["kfree_null"], st["span_s"]
    (1233, 232, 5.006)
    """
    ev = trace.events
    problems = trace.problems
    bad = bad_page_event(ev.columns)
    nbad = int(ev.select(bad.sum()).item() or 0)
    rows = ev.filter(bad & pl.col("pfn").is_not_null())  # an unreadable pfn is the parser's bad_field already
    if rows.height:  # page events no kernel prints: a problem, left out of the page tables
        first = rows.row(0, named=True)
        problems = dict(problems, bad_page_field={
            "count": rows.height, "lines": rows.head(10)["line"].to_list(),
            "example": f"{first['event']}: pfn={first['pfn']} order={first['order']}"})
    is_lost = pl.col("kind") == int(_K.LOST)
    recs = ev.select("kind", "event", "ts").filter(~is_lost)
    counts = dict(
        recs.group_by("event").len().sort(["len", "event"], descending=[True, False]).iter_rows()
    )
    ts = recs["ts"].drop_nulls()
    lost = ev.select("kind", "cpu", "npurged").filter(is_lost)
    out: dict[str, Any] = {
        "source": trace.meta.get("source"),
        "format": trace.meta.get("format"),
        "rows": ev.height,
        "events_total": recs.height,
        "events": counts,
        "first_ts": ts[0] / 1e9 if ts.len() else None,
        "last_ts": ts[-1] / 1e9 if ts.len() else None,
        "span_s": round((ts.max() - ts.min()) / 1e9, 6) if ts.len() else None,
        "lost": {
            "markers": lost.height,
            "events": int(lost["npurged"].sum() or 0),
            "by_cpu": {str(c): int(n) for c, n in lost.group_by("cpu").agg(pl.col("npurged").sum()).sort("cpu").iter_rows()},
        },
        "problems": problems,
        "slab": slab_stats(ev, top=top),
        "page": page_stats(ev.filter(~bad) if nbad else ev),
        "vmalloc": vmalloc_stats(ev),
    }
    if out["span_s"] is not None:
        out["span_s"] = round(out["span_s"], 3)
    cap = trace.meta.get("capture") or {}
    if cap:
        out["capture"] = {k: cap[k] for k in ("name", "workload", "kernel", "traced_seconds") if k in cap}
    return out


# --------------------------------------------------------------------------- text


def _table(headers: list[str], rows: list[list], align: str | None = None) -> list[str]:
    """Plain aligned text table: numbers right-aligned, text left-aligned."""
    cells = [[("" if v is None else f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)) for v in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in cells:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    if align is None:
        align = "".join("r" if rows and isinstance(rows[0][i], (int, float)) else "l" for i in range(len(headers)))

    def fmt(r):
        return "  ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(r, widths, align)).rstrip()

    out = [fmt(headers), fmt(["-" * w for w in widths])]
    out += [fmt(r) for r in cells]
    return out


def _or_na(value, unit: str = "") -> str:
    """A figure with its unit, or ``n/a`` where the trace has nothing to compute it from."""
    return "n/a" if value is None else f"{value}{unit}"


def format_stats(st: dict, slab: bool = False, page: bool = False, caller: bool = False) -> str:
    """Text report of :func:`trace_stats`; the flags add the detailed tables."""
    out: list[str] = []
    out.append(f"trace:   {st.get('source')}  ({st.get('format')})")
    out.append(
        f"events:  {st['events_total']:,} records, span {_or_na(st['span_s'], ' s')}"
        + (f"  [{st['first_ts']:.6f} .. {st['last_ts']:.6f}]" if st.get("first_ts") is not None else "")
    )
    lost = st["lost"]
    out.append(f"lost:    {lost['markers']} LOST markers, {lost['events']:,} events lost")
    out.append("")
    out += _table(["event", "count"], [[k, v] for k, v in st["events"].items()])
    out.append("")
    if st["problems"]:
        out.append("problems:")
        out += _table(
            ["kind", "count", "first lines", "example"],
            [[k, v["count"], " ".join(map(str, v["lines"])), v["example"][:70]] for k, v in st["problems"].items()],
            "lrll",
        )
    else:
        out.append("problems: none")
    s = st["slab"]["summary"]
    out.append("")
    out.append(
        f"slab:    {s['allocs']:,} allocs, {s['frees']:,} frees ({s['kfree_null']:,} of NULL); "
        f"{s['bytes_requested']:,} B requested / {s['bytes_allocated']:,} B allocated "
        f"(frag {_or_na(s['frag_pct'], '%')}); matched frees {s['frees_matched_live']:,}, pre-trace {s['frees_pre_trace']:,}, "
        f"already freed {s['frees_already_freed']:,}; re-allocated live pointers {s['alloc_of_live_ptr']:,}; "
        f"cross-CPU frees {s['cross_cpu_frees']:,}; live at end {s['live_at_end']:,}"
    )
    p = st["page"]["summary"]
    b = st["page"]["batched"]
    out.append(
        f"page:    {p['allocs']:,} allocs ({p['alloc_pages']:,} pages, {p['failed']:,} failed), {p['frees']:,} frees "
        f"(matched {p['frees_matched_head'] + p['frees_inside_live_block']:,}, unmatched {p['frees_unmatched']:,}); "
        f"{b['count']:,} free_batched ({b.get('after_free_same_pfn', 0):,} after mm_page_free of the pfn); "
        f"live at end {p['live_at_end']:,} blocks / {p['live_pages_at_end']:,} pages; "
        f"{len(st['page']['extfrag'])} extfrag"
    )
    v = st["vmalloc"]
    out.append(
        f"vmalloc: {v['allocs']:,} areas ({v['alloc_bytes']:,} B, {v['failed']} failed), {v['frees']:,} lazy frees "
        f"({v['frees_matched']} matched), {v['purges']} purges ({v['areas_purged']:,} areas)"
        + (f", nr_lazy peak {v['nr_lazy_peak']:,} of max {v['nr_lazy_max']:,}" if v["nr_lazy_max"] is not None else "")
    )
    if slab:
        out.append("")
        out.append("SLAB by event:")
        rows = []
        for ev, d in st["slab"]["by_event"].items():
            rows.append([ev, d["count"], d["null_ptr"], d.get("matched_live", ""), d.get("pre_trace", ""),
                         d.get("already_freed", ""), d.get("cross_cpu", ""), d.get("alloc_of_live_ptr", "")])
        out += _table(["event", "count", "NULL", "matched", "pre-trace", "freed-twice", "cross-CPU", "live-realloc"],
                      rows, "lrrrrrrr")
        out.append("")
        out.append("SLAB by cache:")
        rows = [[c["cache"], c["allocs"], c["frees"], c["bytes_req"], c["bytes_alloc"], c["frag_pct"],
                 c["cross_cpu_frees"], c["alloc_of_live_ptr"], c["live_at_end"]] for c in st["slab"]["caches"]]
        out += _table(["cache", "allocs", "frees", "bytes_req", "bytes_alloc", "frag%", "cross-CPU", "live-realloc",
                       "live"], rows, "lrrrrrrrr")
    if caller:
        out.append("")
        out.append(f"SLAB call sites (top {len(st['slab']['call_sites'])} of {st['slab']['call_sites_total']}):")
        rows = [[c["call_site"], c["hits"], c["bytes_alloc"], c["bytes_req"], c["frag_pct"], c["freed"],
                 c["ping_pong"]] for c in st["slab"]["call_sites"]]
        out += _table(["call_site", "hits", "total_alloc", "total_req", "frag%", "freed", "ping-pong"], rows,
                      "lrrrrrr")
    if page:
        out.append("")
        out.append("PAGE allocations, order x migratetype (4.4+ numbering):")
        names = sorted({r["migratetype"] for r in st["page"]["order_migratetype"] if r["migratetype"] is not None})
        label = {i: (MIGRATETYPE_NAMES[i] if 0 <= i < len(MIGRATETYPE_NAMES) else f"mt{i}") for i in names}
        grid: dict = {}
        for r in st["page"]["order_migratetype"]:
            grid.setdefault(r["order"], {})[r["migratetype"]] = r["allocs"]
        rows = [[o] + [grid[o].get(m, 0) for m in names] for o in sorted(k for k in grid if k is not None)]
        out += _table(["order"] + [label[m] for m in names], rows, "r" * (len(names) + 1))
        out.append("")
        out.append("PAGE allocations by GFP:")
        out += _table(["gfp_flags", "allocs", "pages", "failed"],
                      [[g["gfp_flags"], g["allocs"], g["pages"], g["failed"]] for g in st["page"]["gfp"][:_TOP]], "lrrr")
        if st["page"]["extfrag"]:
            out.append("")
            out.append("mm_page_alloc_extfrag:")
            out += _table(["line", "pfn", "alloc_order", "fallback_order", "alloc_mt", "fallback_mt", "fragmenting",
                           "change_ownership"],
                          [[e["line"], hex(e["pfn"]) if e["pfn"] is not None else None, e["alloc_order"],
                            e["fallback_order"], e["alloc_migratetype"], e["fallback_migratetype"], e["fragmenting"],
                            e["change_ownership"]] for e in st["page"]["extfrag"][:_TOP]], "rlrrrrrr")
    return "\n".join(out) + "\n"


def stats_json(st: dict) -> str:
    """The statistics as one JSON object (deterministic key order)."""
    return json.dumps(st, indent=1, sort_keys=False, default=str)
