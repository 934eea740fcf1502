"""The single-run experiment report: one self-contained HTML file per run directory.

``kmemdes report RUN_DIR`` calls :func:`write_report`.  The page has, in reading order:
the run's identity and headline tables (requests and failure rate per order and GFP
class, latency percentiles per order and path, the fallback matrix, compaction, final
fragmentation indices), time series (free blocks per order, watermarks, fragmentation
indices, failures, pageblocks per migratetype), the physical memory map, slab, vmalloc
and counters, latency and size distributions, and the resolved config, quirk counts and
log in collapsible sections.  Every figure has a title and a one-line "how to read it".
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import polars as pl

from kmemdes.errors import KmemdesError
from kmemdes.mm.frag import format_index
from kmemdes.outpath import atomic_write as write_atomically
from kmemdes.report import figures as F
from kmemdes.report.load import RunData, load_run_dir
from kmemdes.report.metrics import (compaction, fallback_matrix, final_counters, final_frag, latency_table,
                                    main_zone, request_labels, requests_table, workload_table, zone_order)
from kmemdes.report.page import Page, Raw, esc, fmt_num, table_html

__all__ = ["render_report", "write_report", "atomic_write"]

_LOG_LIMIT = 200_000


def _pct(v: Optional[float]) -> str:
    return "–" if v is None else f"{100.0 * v:.3g}%"


def _ns(v: Optional[float]) -> str:
    if v is None:
        return "–"
    return F._ns_label(float(f"{v:.3g}"))


def _kv(rows) -> Raw:
    return table_html(None, rows, cls="kv", numeric_from=99)


def _add(page: Page, built, title: str, how: str) -> None:
    if built is None:
        page.text(f"{title}: no data in this run.", "lead")
        return
    fig, note = built
    page.figure(fig, title, how, note)


def _headline(page: Page, run: RunData) -> None:
    """Who ran what, the key numbers, and the notes of the run, side by side."""
    s = run.summary
    sim_s = (s.get("sim_ns") or 0) / 1e9
    rows = [("name", s.get("name", run.label)), ("run directory", str(run.path)),
            ("kind / mode", f"{s.get('kind', '?')} / {s.get('mode', '?')}"), ("seed", s.get("seed", "?")),
            ("simulated time", f"{sim_s:,.3f} s")]
    if s.get("events_replayed") is not None:
        rows.append(("events replayed", fmt_num(s["events_replayed"])))
    if s.get("wall_s") is not None:
        rows.append(("wall-clock time", f"{s['wall_s']:.3g} s"
                     + (f" ({fmt_num(s['events_per_s'])} events/s)" if s.get("events_per_s") else "")))
    rt = requests_table(run.requests)
    nreq, nfail = int(rt["requests"].sum()) if rt.height else 0, int(rt["failures"].sum()) if rt.height else 0
    what = request_labels(run)
    failing = [what.get(o, f"order {o}") for o, f in zip(rt["order"].to_list(), rt["failures"].to_list()) if f]
    fb = fallback_matrix(run.fallbacks)
    cp = compaction(run)
    key = [("page allocator requests", fmt_num(nreq)),
           ("failed", f"{fmt_num(nfail)} ({_pct(nfail / nreq) if nreq else '–'})"
                      + (f": {', '.join(failing)}" if failing else "")),
           ("fallbacks", f"{fmt_num(fb['claim_total'])} claims, {fmt_num(fb['steal_total'])} steals, "
                         f"{fmt_num(fb['pollute'])} pollutions"),
           ("direct compaction", f"{fmt_num(cp['attempts'])} attempts, success rate {_pct(cp['success_rate'])}")]
    if cp["kcompactd_wakeups"] is not None or cp["proactive_runs"] is not None:
        key.append(("kcompactd (background)",
                    ", ".join(f"{fmt_num(v)} {what_}" for v, what_ in ((cp["kcompactd_wakeups"], "wakeups"),
                                                                      (cp["proactive_runs"], "proactive runs"))
                              if v is not None)))
    ff = final_frag(run.frag)
    z = main_zone(run)
    if ff.height and z is not None:
        u = ff.filter((pl.col("zone") == z) & (pl.col("order").is_in([3, 9, 10]))).sort("order")
        if u.height:
            key.append((f"final unusable index, {z}",
                        ", ".join(f"order {o}: {format_index(int(v))}" for o, v in u.select("order", "unusable").iter_rows())))
    notes = s.get("notes") or []
    right = _kv(key)
    if notes:
        right = Raw(right + "<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    page.html(Raw(f'<div class="grid2"><div>{_kv(rows)}</div><div>{right}</div></div>'))
    if run.missing:
        page.html(Raw(f'<div class="warn">Missing from the run directory (shown as "no data"): '
                      f'{esc(", ".join(run.missing))}</div>'))

    page.h3("Requests and failures per order")
    page.html(table_html(
        ["order", "requests", "failures", "failure rate", "may reclaim: requests", "failure rate",
         "atomic: requests", "failure rate"],
        [(_order_cell(r["order"], what), r["requests"], r["failures"], _pct(r["failure_rate"]),
          r["reclaim_requests"], _pct(r["reclaim_failure_rate"]), r["atomic_requests"], _pct(r["atomic_failure_rate"]))
         for r in rt.iter_rows(named=True)]))
    page.text("\"May reclaim\" requests carry __GFP_DIRECT_RECLAIM (GFP_KERNEL, GFP_HIGHUSER_MOVABLE...): they can "
              "wait for reclaim and compaction. \"Atomic\" requests (GFP_ATOMIC, GFP_NOWAIT) cannot, so they fail "
              "first when free memory is fragmented.", "lead")
    if ff.height:
        page.h3("Final fragmentation indices")
        body = []
        for zz in zone_order(ff["zone"].unique().to_list()):
            d = ff.filter(pl.col("zone") == zz).sort("order")
            body.append((f"{zz}: unusable", *[format_index(int(v)) for v in d["unusable"]]))
            body.append((f"{zz}: extfrag", *[format_index(int(v)) for v in d["extfrag"]]))
        page.html(table_html(["zone / index"] + [f"order {o}" for o in range(11)], body))
        page.text("As debugfs extfrag/unusable_index and extfrag_index print them. Unusable free space index: share "
                  "of free memory in blocks too small for an order-N request (0 good, 1 bad). Extfrag index: near 0 a "
                  "failure would come from lack of memory, near 1 from fragmentation; -1.000 means an order-N block "
                  "is free (the request would succeed).", "lead")


def _paths(page: Page, run: RunData) -> None:
    """Allocation paths, latency, fallbacks, compaction: how the allocator got there."""
    _add(page, F.fig_path_shares(run.requests), "Where the page allocator served each order",
         "Share of each order's requests by path: per-CPU lists (pcp), the buddy free lists, a fallback to another "
         "migratetype (claim/steal), the slow path after reclaim or compaction, or failure (red).")
    wt = workload_table(run.requests)
    if wt.height > 1:
        page.h3("Requests per workload")
        page.html(table_html(["workload", "requests", "failures", "failure rate"],
                             [(r["workload"], r["requests"], r["failures"], _pct(r["failure_rate"]))
                              for r in wt.iter_rows(named=True)]))

    page.h3("Latency per order")
    lt = latency_table(run.latency)
    page.html(table_html(["order", "requests", "p50", "p99", "max (≤)"],
                         [(r["order"], r["count"], _ns(r["p50"]), _ns(r["p99"]), _ns(r["max"]))
                          for r in lt.filter(pl.col("path") == "all").iter_rows(named=True)]))
    page.text("Simulated latency of the allocation (cost model), from power-of-two histograms: p50/p99 are "
              "interpolated inside their bucket (exact within a factor of 2); max is the upper edge of the highest "
              "bucket.", "lead")
    page.details("Latency per order and path", table_html(
        ["order", "path", "requests", "p50", "p99", "max (≤)"],
        [(r["order"], r["path"], r["count"], _ns(r["p50"]), _ns(r["p99"]), _ns(r["max"]))
         for r in lt.filter(pl.col("path") != "all").iter_rows(named=True)], numeric_from=2))

    page.h3("Migratetype fallbacks")
    fb = fallback_matrix(run.fallbacks)
    page.html(table_html(["claims", "steals", "pollutions", "fragmenting fallbacks"],
                         [(fb["claim_total"], fb["steal_total"], fb["pollute"], fb["fragmenting"])], numeric_from=0))
    _add(page, F.fig_fallbacks(run.fallbacks), "Fallback matrix: requested type × type of the block used",
         "When the free lists of the requested migratetype are empty the allocator falls back to another type "
         "(mm/page_alloc.c). Claims take the whole pageblock over; steals take a page and leave the block's type, so a "
         "non-movable steal (a pollution) puts an unmovable page in a movable block, which compaction cannot move.")

    page.h3("Compaction and reclaim")
    cp = compaction(run)
    fc = final_counters(run.counters)
    rows = [("direct compaction attempts", fmt_num(cp["attempts"])), ("successes", fmt_num(cp["success"])),
            ("success rate", _pct(cp["success_rate"]))]
    if cp["kcompactd_wakeups"] is not None:
        rows.append(("kcompactd wakeups", fmt_num(cp["kcompactd_wakeups"])))
    if cp["proactive_runs"] is not None:
        rows.append(("proactive compaction runs", fmt_num(cp["proactive_runs"])))
    rows += [(f"{k} (final counter)", fmt_num(v)) for k, v in fc.items()]
    page.html(_kv(rows))


def _order_cell(order: int, what: dict) -> str:
    """``8 (1 MiB)`` for a page allocator order; vmalloc calls recorded under get_order(size) are
    named as such (``vmalloc 1 MiB (recorded as order 8)``)."""
    label = what.get(order, f"order {order}")
    if label == f"order {order}":
        return f"{order} ({F.size_label(4096 << order)})"
    return f"{label} (recorded as order {order})"


def render_report(run: RunData) -> str:
    """The HTML report of a loaded run, as a string (deterministic for a given run directory)."""
    s = run.summary
    name = str(s.get("name", run.label))
    page = Page(title=f"kmemdes report: {name}",
                subtitle=f"{s.get('kind', 'run')} · {s.get('mode', '')} · seed {s.get('seed', '?')} · "
                         f"{(s.get('sim_ns') or 0) / 1e9:,.3f} s simulated · {run.path.name}")
    page.section("summary", "Summary", "What ran, and the numbers that decide whether it went well.")
    _headline(page, run)

    page.section("map", "Physical memory map and pageblocks",
                 "Where free memory and unmovable pages are: the picture behind the fragmentation numbers.")
    _add(page, F.fig_pagemap(run), "Physical memory map",
         "Each cell is a 2 MiB pageblock, rows in physical address order (top = lowest). Colour = migratetype, "
         "red = movable block polluted by unmovable/reclaimable pages; shade = how full (light = free, dark = full). "
         "Left: start of the run; right: the snapshot picked with the slider (default: the end). "
         "Hover a cell of the first or last snapshot for its page counts; pfn = physical address / 4 KiB.")
    _add(page, F.fig_pageblocks(run), "Pageblocks per migratetype",
         "Number of 2 MiB pageblocks of each type (all zones); dotted: blocks of that type holding pages of "
         "another mobility (e.g. unmovable pages in a movable block), which defeat compaction.")

    page.section("frag", "Fragmentation over time",
                 "Per zone: use the zone menu at the top left of a figure (default: Normal).")
    _add(page, F.fig_frag(run, "unusable"), "Unusable free space index per order",
         "Share of free memory in blocks too small for an order-N request: 0 = all free memory is usable at that "
         "order (good), 1 = none is (bad). One line per order; orders 9-10 (2-4 MiB) degrade first.")
    _add(page, F.fig_failures(run), "Allocation failures on the timeline",
         "One marker per failed page-allocator request at its simulated time, by order; hover for GFP flags and "
         "workload. Compare with the unusable index above at the same time.")
    _add(page, F.fig_frag(run, "extfrag"), "External fragmentation index per order",
         "Why an order-N request would fail: near 0 = lack of memory, near 1 = fragmentation; -1 means a free block "
         "of that order exists (the request would succeed).")

    page.section("free", "Free memory over time",
                 "How free memory is split into blocks of each order (the buddy allocator's free_area), per zone.")
    _add(page, F.fig_free_heatmap(run), "Free blocks per order (heatmap)",
         "Each row is an order (a block of 2^order contiguous pages); colour = number of free blocks of that order "
         "(log scale; dark = none). High orders going dark means large contiguous requests will start failing.")
    _add(page, F.fig_buddyinfo(run), "Free blocks per order (/proc/buddyinfo over time)",
         "The numbers /proc/buddyinfo prints, sampled over the run: one line per order, log scale.")
    _add(page, F.fig_watermarks(run), "Free memory and watermarks",
         "Free memory of the zone against its watermarks: below low, kswapd is woken to reclaim; below min, "
         "allocations reclaim or compact directly (slow path).")
    _add(page, F.fig_score(run), "Proactive compaction score",
         "fragmentation_score_zone (mm/compaction.c): % of a zone's free memory not in pageblock-sized (order-9) "
         "blocks. kcompactd compacts proactively when the node score (zones weighted by size) rises above the upper "
         "dashed line, until it falls to the lower one (both set by compaction_proactiveness).")

    page.section("paths", "Allocation paths, latency, fallbacks, compaction")
    _paths(page, run)

    page.section("slab", "Slab (SLUB)")
    _add(page, F.fig_slab(run, "memory"), "Slab memory by cache",
         "Pages held by each kmem_cache's slabs, in MiB (top caches by peak; the rest summed).")
    _add(page, F.fig_slab(run, "waste"), "Internal fragmentation by cache",
         "Bytes allocated minus bytes requested for live objects (size-class rounding and object alignment), MiB.")
    if run.slab.height:
        last = run.slab.filter(pl.col("t_ns") == run.slab["t_ns"].max()).sort("pages", descending=True)
        page.details(f"All {last.height} caches at the end of the run", table_html(
            ["cache", "active objs", "objs", "slabs", "MiB", "requested MiB", "allocated MiB", "waste"],
            [(r["cache"], r["active_objs"], r["num_objs"], r["slabs"], r["pages"] * 4096 / 2 ** 20,
              r["bytes_req"] / 2 ** 20, r["bytes_alloc"] / 2 ** 20,
              _pct((r["bytes_alloc"] - r["bytes_req"]) / r["bytes_alloc"]) if r["bytes_alloc"] else "–")
             for r in last.iter_rows(named=True)]))

    page.section("vmalloc", "vmalloc and counters")
    _add(page, F.fig_vmalloc(run), "vmalloc usage",
         "Virtual address space of live vmap_areas and the pages backing them; freed areas wait for a lazy purge "
         "(one TLB flush for many areas).")
    _add(page, F.fig_counters(run), "Event counters",
         "Cumulative counts (/proc/vmstat style): kswapd wake-ups, direct reclaim, compaction stalls/successes, "
         "per-CPU list drains...; log scale.")

    page.section("dist", "Distributions")
    _add(page, F.fig_latency_cdf(run.latency, "order"), "Allocation latency by order (CDF)",
         "Share of requests that completed within a given time, per order (all paths); a curve further left is "
         "faster; the tail at the top right is the slow path.")
    _add(page, F.fig_latency_cdf(run.latency, "path"), "Allocation latency by path (CDF)",
         "The same per allocator path (all orders): pcp hits take tens of ns, compaction micro- to milliseconds.")
    _add(page, F.fig_sizes(run.sizes), "Allocation sizes",
         "How many allocations of each size, per allocator (kmalloc, page allocator, vmalloc, user space); "
         "power-of-two buckets, log scale.")

    page.section("config", "Config, quirks, log")
    page.details("Resolved config (config.toml)", Raw(f"<pre>{esc(run.config_text or '(no config.toml)')}</pre>"),
                 open_=False)
    quirks = s.get("quirks") or {}
    page.details(f"Trace quirks handled ({sum(int(v) for v in quirks.values() if isinstance(v, (int, float))):,} "
                 f"events, {len(quirks)} rules)",
                 table_html(["rule", "events"], sorted(quirks.items())) if quirks else Raw("<p>none</p>"),
                 open_=bool(quirks))
    ebt = s.get("events_by_type") or {}
    if ebt:
        page.details("Events by type", table_html(["event", "count"], sorted(ebt.items())))
    final = s.get("final") or {}
    for key, label in (("buddyinfo", "/proc/buddyinfo"), ("pagetypeinfo", "/proc/pagetypeinfo"),
                       ("unusable_index", "debugfs extfrag/unusable_index"),
                       ("extfrag_index", "debugfs extfrag/extfrag_index")):
        if final.get(key):
            page.details(f"Final {label} (model)", Raw(f"<pre>{esc(final[key])}</pre>"))
    log = run.log
    if log:
        cut = len(log) > _LOG_LIMIT
        page.details(f"Run log{' (first 200 kB)' if cut else ''}",
                     Raw(f"<pre>{esc(log[:_LOG_LIMIT])}{esc(chr(10) + '[truncated]') if cut else ''}</pre>"))
    return page.render()


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to a temporary name next to ``path``, then rename it into place
    (:func:`kmemdes.outpath.atomic_write`)."""
    write_atomically(Path(path), lambda f: f.write(text.encode("utf-8")))


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the HTML report of ``run_dir`` to ``out`` (default ``RUN_DIR/report.html``); return its path."""
    run = load_run_dir(run_dir)
    dest = Path(out) if out is not None else Path(run_dir) / "report.html"
    if dest.is_dir():
        raise KmemdesError(f"{dest}: is a directory (give a file name with -o)")
    atomic_write(dest, render_report(run))
    return dest
