"""Validation against the real kernel: replay a capture in mirror mode and compare with its after/ snapshot.

For a capture folder (as in ../shared/traces, or written by ``kmemdes capture``):
the trace is replayed from the ``before/`` snapshot (placed with the trace's
start-state hints, :mod:`kmemdes.sim.hints`) and the model's end state is
compared with ``after/``: free blocks per zone and order (buddyinfo) and per
migratetype (pagetypeinfo), pageblocks per migratetype, slab objects of the
caches the trace touched (slabinfo), vmalloc areas (vmallocinfo).  What the
model could not know is listed with its size, so model error can be told from
missing information: pages on per-CPU lists (in use for /proc), memory handed
over by deferred init, pages freed that were never seen allocated, the kernel's
untraced bulk allocations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from kmemdes.errors import KmemdesError
from kmemdes.outpath import scratch_dir
from kmemdes.trace.snapshot import (
    parse_buddyinfo,
    parse_pagetypeinfo,
    parse_slabinfo,
    parse_vmallocinfo,
    parse_zoneinfo,
)

__all__ = ["validate_capture", "format_validation", "read_vmstat"]

#: issue 13's mirror target under pressure counts the Normal orders where the kernel has at least this many blocks
NORMAL_MIN_BLOCKS = 20


def _rel(model: int, kernel: int) -> Optional[float]:
    if kernel == 0:
        return None if model == 0 else float("inf")
    return (model - kernel) / kernel


def validate_capture(capture: str | Path, run_dir: Optional[str | Path] = None, progress: bool = False) -> dict:
    """Replay ``capture`` (mirror mode) and compare the model's end state with ``capture/after``."""
    from kmemdes.sim.engine import replay_trace
    from kmemdes.sim.rundir import load_run

    cap = Path(capture)
    if not cap.is_dir():
        raise KmemdesError(f"{cap}: not a capture folder (expected trace + before/ + after/)")
    for need in ("before", "after"):
        if not (cap / need / "buddyinfo").exists():
            raise KmemdesError(f"{cap}: no {need}/buddyinfo (validation needs the capture's before and after snapshots)")
    tmp = None
    if run_dir is None:
        tmp = scratch_dir("kmemdes_validate_")
        run_dir = Path(tmp.name) / "run"
    # with kpageflags snapshots (kmemdes capture --kpageflags): start from the exact free-page layout
    from kmemdes.sim.kpageflags import kpageflags_pair

    kpf = kpageflags_pair(cap)
    out, summary = replay_trace(cap, run_dir, mode="mirror", progress=progress,
                                kpageflags=kpf[0] if kpf else None)
    run = load_run(out, metrics=("slab", "vmalloc", "score"))
    after = cap / "after"
    before = cap / "before"
    kb = {z.zone: z.nr_free for z in parse_buddyinfo((after / "buddyinfo").read_text(), str(after / "buddyinfo"))}
    mb = {z.zone: z.nr_free for z in parse_buddyinfo(summary["final"]["buddyinfo"], "model")}
    per_order = []
    tot_model = tot_kernel = 0
    for zone, kc in kb.items():
        mc = mb.get(zone, [0] * 11)
        for o in range(11):
            per_order.append({"zone": zone, "order": o, "model": mc[o], "kernel": kc[o], "error": mc[o] - kc[o],
                              "rel_error": _rel(mc[o], kc[o])})
        tot_model += sum(c << o for o, c in enumerate(mc))
        tot_kernel += sum(c << o for o, c in enumerate(kc))
    res: dict = {"capture": str(cap), "events": summary["events"], "events_replayed": summary["events_replayed"],
                 "quirks": summary["quirks"], "per_order": per_order,
                 "total_free_pages": {"model": tot_model, "kernel": tot_kernel},
                 "total_free_pages_error": tot_model - tot_kernel,
                 "total_free_pages_rel_error": _rel(tot_model, tot_kernel)}
    # per migratetype (pagetypeinfo): free pages per (zone, type), and pageblocks per type
    if (after / "pagetypeinfo").exists():
        kp = parse_pagetypeinfo((after / "pagetypeinfo").read_text(), str(after / "pagetypeinfo"))
        mp = parse_pagetypeinfo(summary["final"]["pagetypeinfo"], "model")
        rows = []
        for (zone, t), kc in kp.free.items():
            mc = mp.free.get((zone, t), [0] * 11)
            km = sum(c << o for o, c in enumerate(kc))
            mm = sum(c << o for o, c in enumerate(mc))
            if km or mm:
                rows.append({"zone": zone, "migratetype": t, "model_pages": mm, "kernel_pages": km,
                             "rel_error": _rel(mm, km),
                             "per_order": {"model": mc, "kernel": kc}})
        res["per_migratetype"] = rows
        pbs = []
        for zone, kc in kp.blocks.items():
            mc = mp.blocks.get(zone, [0] * len(kc))
            for t, k, m in zip(kp.types, kc, mc):
                if k or m:
                    pbs.append({"zone": zone, "migratetype": t, "model": m, "kernel": k, "error": m - k})
        res["pageblocks"] = pbs
    # slab: active objects of the caches the trace touched = before + the trace's net change
    if (before / "slabinfo").exists() and (after / "slabinfo").exists():
        sb = {r.name: r for r in parse_slabinfo((before / "slabinfo").read_text(), str(before / "slabinfo"))}
        sa = {r.name: r for r in parse_slabinfo((after / "slabinfo").read_text(), str(after / "slabinfo"))}
        slab = run.metrics.get("slab")
        net: dict[str, int] = {}
        if slab is not None and slab.height:
            last = slab.filter(slab["t_ns"] == slab["t_ns"].max())
            net = dict(zip(last["cache"].to_list(), last["active_objs"].to_list()))
        rows = []
        for cache, delta in sorted(net.items()):
            if cache not in sb or cache not in sa:
                continue
            model = sb[cache].active_objs + delta
            kernel = sa[cache].active_objs
            rows.append({"cache": cache, "before": sb[cache].active_objs, "trace_net": delta, "model": model,
                         "kernel": kernel, "rel_error": _rel(model, kernel),
                         "kernel_slabs": sa[cache].num_slabs, "before_slabs": sb[cache].num_slabs})
        res["slab"] = rows
    # vmalloc: live areas = before + allocations - frees seen in the trace
    if (before / "vmallocinfo").exists() and (after / "vmallocinfo").exists():
        vb = [v for v in parse_vmallocinfo((before / "vmallocinfo").read_text()) if "unpurged" not in v.flags]
        va = [v for v in parse_vmallocinfo((after / "vmallocinfo").read_text()) if "unpurged" not in v.flags]
        vm = run.metrics.get("vmalloc")
        first = vm.row(0, named=True) if vm is not None and vm.height else {"areas": 0, "va_bytes": 0}
        lastv = vm.row(vm.height - 1, named=True) if vm is not None and vm.height else {"areas": 0, "va_bytes": 0}
        d_areas = lastv["areas"] - first["areas"]
        d_bytes = lastv["va_bytes"] - first["va_bytes"]
        res["vmalloc"] = {"before_areas": len(vb), "kernel_areas": len(va), "model_areas": len(vb) + d_areas,
                          "before_bytes": sum(v.size for v in vb), "kernel_bytes": sum(v.size for v in va),
                          "model_bytes": sum(v.size for v in vb) + d_bytes,
                          "areas_freed_before_trace": summary["quirks"].get("vfree_of_untraced_area", 0)}
    # what the model could not know
    unknown = []
    zb = {z.name: z for z in parse_zoneinfo((before / "zoneinfo").read_text())} if (before / "zoneinfo").exists() else {}
    za = {z.name: z for z in parse_zoneinfo((after / "zoneinfo").read_text())} if (after / "zoneinfo").exists() else {}
    for name, z in za.items():
        if not z.present:
            continue
        pcp_after = sum(p.get("count", 0) for p in z.pagesets)
        if pcp_after:
            unknown.append({"what": f"{name}: pages on per-CPU lists at the end (in use for /proc; their "
                                    "identity follows the trace only as far as it shows refills and drains)",
                            "pages": pcp_after})
        if name in zb and zb[name].managed != z.managed:
            unknown.append({"what": f"{name}: memory handed to the buddy allocator without events (deferred init)",
                            "pages": z.managed - zb[name].managed})
    # the kernel's own page counters over the capture against what the trace shows
    counters = _vmstat_deltas(before / "vmstat", after / "vmstat")
    shown = summary.get("trace_pages")
    if counters is not None and shown is not None:
        kc = {"pgalloc": counters["pgalloc"], "pgfree": counters["pgfree"],
              "trace_allocated": shown["allocated"], "trace_freed": shown["freed"],
              "untraced_allocated": counters["pgalloc"] - shown["allocated"],
              "untraced_freed": counters["pgfree"] - shown["freed"]}
        res["kernel_counters"] = kc
        if kc["untraced_allocated"] > 0:
            unknown.append({"what": "pages allocated that the trace does not show (vmstat pgalloc_* minus traced): "
                                    "bulk allocations, and allocations while tracing was off around the snapshots",
                            "pages": kc["untraced_allocated"], "rule": "vmstat_pgalloc"})
        if kc["untraced_freed"] > 0:
            unknown.append({"what": "pages freed that the trace does not show (vmstat pgfree minus traced): frees "
                                    "while tracing was off around the snapshots (process exit, RCU callbacks)",
                            "pages": kc["untraced_freed"], "rule": "vmstat_pgfree"})
    qp = summary.get("quirk_pages", {})
    for rule, why in (("free_of_untraced_page", "pages freed that the trace never showed allocated "
                                                "(pre-trace or untraced bulk allocations)"),
                      ("free_after_untraced_bulk_alloc", "pages the bulk allocator took from pcp lists "
                                                         "without an event (vmalloc, page_pool), seen when freed"),
                      ("drain_of_untraced_pcp_page", "pcp pages drained that the trace never showed arriving"),
                      ("free_of_page_free_in_model", "frees of pages the model held free (state mismatch)"),
                      ("alloc_of_page_not_free_in_model", "allocations of pages the model held in use"),
                      ("zone_locked_of_page_not_free_in_model", "buddy takes of pages the model held in use"),
                      ("zone_growth", "pages onlined when the trace touched offline memory"),
                      ("compaction_isolate_not_free_in_model", "pages the kernel's compaction isolated or used as "
                                                               "migration targets that the model did not hold free")):
        if qp.get(rule):
            unknown.append({"what": why, "pages": qp[rule], "rule": rule})
    res["unknown"] = unknown
    res["notes"] = summary.get("notes", [])
    res["targets"] = _targets(res)
    res["run_dir"] = str(out) if tmp is None else None
    if tmp is not None:
        tmp.cleanup()
    if kpf:
        # layout agreement and placement agreement against after/kpageflags (sim/kpageflags.py)
        from kmemdes.sim.kpageflags import kpageflags_validation

        res.update(kpageflags_validation(cap))
        la = res.get("layout_agreement") or {}
        if la.get("touched_share") is not None:
            res["targets"]["layout_99pct"] = {"share": la["touched_share"], "met": la["touched_share"] >= 0.99}
    return res


def _within(rows: list[dict], tol: float, keys: tuple[str, ...]) -> dict:
    """How many ``rows`` have ``|rel_error| <= tol``: ``{"met", "of", "missed"}``, each missed row as its
    ``keys`` and ``rel_error``."""
    miss = [r for r in rows if abs(r["rel_error"]) > tol]
    return {"met": len(rows) - len(miss), "of": len(rows),
            "missed": [{**{k: r[k] for k in keys}, "rel_error": r["rel_error"]} for r in miss]}


def _targets(res: dict) -> dict:
    """The issue's targets as measured: free blocks per (zone, order) within 10 % (orders where the
    kernel has blocks), active objects of each touched cache within 5 %."""
    out = {"per_order_10pct": _within([r for r in res["per_order"] if r["kernel"] > 0], 0.10, ("zone", "order"))}
    # issue 13's target for captures under pressure: Normal only, the orders where the kernel has at least
    # NORMAL_MIN_BLOCKS blocks (a count of a few blocks moves by tens of percent with one block)
    normal = [r for r in res["per_order"] if r["zone"] == "Normal" and r["kernel"] >= NORMAL_MIN_BLOCKS]
    if normal:
        out["normal_10pct"] = _within(normal, 0.10, ("zone", "order"))
    out["slab_5pct"] = _within([r for r in res.get("slab", []) if r["kernel"] > 0], 0.05, ("cache",))
    return out


def read_vmstat(path: Path) -> dict[str, int]:
    """``/proc/vmstat`` as ``{name: value}``."""
    out = {}
    for line in path.read_text().splitlines():
        k, _, v = line.partition(" ")
        if v.strip().lstrip("-").isdigit():
            out[k] = int(v)
    return out


def _vmstat_deltas(before: Path, after: Path) -> Optional[dict]:
    """Pages allocated (``pgalloc_*``, every zone) and freed (``pgfree``) between two /proc/vmstat
    readings (mm/vmstat.c; counted per page in ``rmqueue``, the bulk allocator and every free path)."""
    if not (before.exists() and after.exists()):
        return None
    b, a = read_vmstat(before), read_vmstat(after)
    if "pgfree" not in a or "pgfree" not in b:
        return None
    pgalloc = sum(a[k] - b.get(k, 0) for k in a if k.startswith("pgalloc_"))
    return {"pgalloc": pgalloc, "pgfree": a["pgfree"] - b["pgfree"]}


def _pct(x: Optional[float]) -> str:
    if x is None:
        return "-"
    if x == float("inf"):
        return "inf"
    return f"{100 * x:+.1f}%"


SLAB_ROWS = 25  # rows of the slab table in the text output (the caches the trace changed most)


def format_validation(res: dict) -> str:
    """The accuracy tables as aligned text."""
    lines = [f"capture: {res['capture']}",
             f"events: {res['events']:,} ({res['events_replayed']:,} replayed, "
             f"{sum(res['quirks'].values()):,} by named rules)", ""]
    zones = sorted({r["zone"] for r in res["per_order"]}, key=[r["zone"] for r in res["per_order"]].index)
    lines.append("free blocks per order (buddyinfo): model / kernel (relative error)")
    lines.append(f"{'zone':<8}" + "".join(f"{o:>17}" for o in range(11)))
    for zone in zones:
        rows = [r for r in res["per_order"] if r["zone"] == zone]
        lines.append(f"{zone:<8}" + "".join(f"{r['model']:>7}/{r['kernel']:<6}{'':>3}" for r in rows))
        lines.append(f"{'':<8}" + "".join(f"{_pct(r['rel_error']):>17}" for r in rows))
    t = res["total_free_pages"]
    lines.append(f"total free pages: model {t['model']:,}, kernel {t['kernel']:,} "
                 f"({_pct(res['total_free_pages_rel_error'])})")
    if res.get("pageblocks"):
        lines += ["", "pageblocks per migratetype: model / kernel"]
        for r in res["pageblocks"]:
            lines.append(f"  {r['zone']:<8} {r['migratetype']:<12} {r['model']:>7} / {r['kernel']:<7} ({r['error']:+d})")
    if res.get("per_migratetype"):
        lines += ["", "free pages per migratetype: model / kernel"]
        for r in res["per_migratetype"]:
            lines.append(f"  {r['zone']:<8} {r['migratetype']:<12} {r['model_pages']:>9,} / {r['kernel_pages']:<9,} "
                         f"({_pct(r['rel_error'])})")
    if res.get("slab"):
        lines += ["", "slab active objects of the caches the trace touched: before + trace = model / kernel"]
        for r in sorted(res["slab"], key=lambda r: -abs(r["trace_net"]))[:SLAB_ROWS]:
            lines.append(f"  {r['cache']:<24} {r['before']:>8} {r['trace_net']:+8d} = {r['model']:>8} / "
                         f"{r['kernel']:<8} ({_pct(r['rel_error'])})")
        if len(res["slab"]) > SLAB_ROWS:
            lines.append(f"  ... {len(res['slab']) - SLAB_ROWS} more caches not shown (the {SLAB_ROWS} the trace "
                         f"changed most are; --json lists all {len(res['slab'])})")
    if res.get("vmalloc"):
        v = res["vmalloc"]
        lines += ["", f"vmalloc areas: model {v['model_areas']} / kernel {v['kernel_areas']} "
                      f"(before {v['before_areas']}); bytes model {v['model_bytes']:,} / kernel {v['kernel_bytes']:,}"]
    if res.get("kernel_counters"):
        k = res["kernel_counters"]
        lines += ["", "pages over the capture, kernel counters (/proc/vmstat) / the trace:",
                  f"  allocated  {k['pgalloc']:>9,} / {k['trace_allocated']:<9,} ({k['untraced_allocated']:+,} untraced)",
                  f"  freed      {k['pgfree']:>9,} / {k['trace_freed']:<9,} ({k['untraced_freed']:+,} untraced)"]
    if res.get("unknown"):
        lines += ["", "what the model could not know (pages):"]
        for u in res["unknown"]:
            lines.append(f"  {u['pages']:>9,}  {u['what']}")
    if res.get("layout_agreement") or res.get("placement_agreement"):
        from kmemdes.sim.kpageflags import format_kpageflags

        lines.append(format_kpageflags(res).rstrip("\n"))
    t = res.get("targets")
    if t:
        po, sl = t["per_order_10pct"], t["slab_5pct"]
        missed = ", ".join(f"{m['zone']} {m['order']}: {_pct(m['rel_error'])}" for m in po["missed"])
        lines += ["", "targets:",
                  f"  free blocks per zone and order within 10 %: {po['met']} of {po['of']}"
                  + (f" (missed: {missed})" if missed else ""),
                  f"  slab active objects per touched cache within 5 %: {sl['met']} of {sl['of']}"]
        if "normal_10pct" in t:
            nt = t["normal_10pct"]
            nmissed = ", ".join(f"{m['order']}: {_pct(m['rel_error'])}" for m in nt["missed"])
            lines.append(f"  Normal free blocks within 10 % at every order with at least {NORMAL_MIN_BLOCKS} blocks: "
                         f"{nt['met']} of {nt['of']}" + (f" (missed orders {nmissed})" if nmissed else " (met)"))
        if "layout_99pct" in t:
            la = t["layout_99pct"]
            lines.append(f"  layout agreement on touched pfns >= 99 %: {100 * la['share']:.2f} % "
                         f"({'met' if la['met'] else 'missed'})")
    return "\n".join(lines) + "\n"


def write_validation_html(res: dict, path: Path) -> Path:
    """The validation tables as one self-contained HTML page (escaped, no scripts), written atomically."""
    import html

    from kmemdes.outpath import atomic_write

    esc = html.escape
    text = format_validation(res)
    rows = []
    for r in res["per_order"]:
        rel = _pct(r["rel_error"])
        bad = r["rel_error"] not in (None,) and r["rel_error"] != float("inf") and abs(r["rel_error"]) > 0.10
        rows.append(f"<tr><td>{esc(r['zone'])}</td><td>{r['order']}</td><td>{r['model']}</td><td>{r['kernel']}</td>"
                    f"<td class='{'bad' if bad else ''}'>{esc(rel)}</td></tr>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>kmemdes validate: {esc(res['capture'])}</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:2px 8px;text-align:right}} .bad{{color:#b00}}
pre{{background:#f6f6f6;padding:1em}}</style></head><body>
<h1>Model vs kernel: {esc(res['capture'])}</h1>
<p>The trace was replayed in mirror mode from the capture's <code>before/</code> snapshot; the model's end state is
compared with <code>after/</code>. Red: more than 10 % off (the target).</p>
<h2>Free blocks per zone and order</h2>
<table><tr><th>zone</th><th>order</th><th>model</th><th>kernel</th><th>error</th></tr>{''.join(rows)}</table>
<h2>All tables</h2><pre>{esc(text)}</pre></body></html>
"""
    atomic_write(path, lambda f: f.write(page.encode("utf-8")))
    return path
