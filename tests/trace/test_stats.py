"""kmemdes.trace.stats: matching rules on hand-made traces, and every statistic
that the corpus's independent script (analyze.py -> analysis.json) also computed."""

from __future__ import annotations

import json

import pytest

from kmemdes.trace.reader import Trace
from kmemdes.trace.stats import format_stats, kmalloc_cache_names, trace_stats
from kmemdes.trace.text import parse_text

import polars as pl

H = "            bash-100     [%03d] .....  100.%06d: "


def _trace(lines: list[tuple[int, str]]) -> Trace:
    text = "".join((H % (cpu, i + 1)) + body + "\n" for i, (cpu, body) in enumerate(lines))
    ev, meta, problems = parse_text([text.encode()], "t.txt")
    assert problems == {}
    return Trace(ev, meta, problems)


A, B, C, D = "ffff888100000040", "ffff888100000080", "ffff8881000000c0", "ffff888100000100"


def test_slab_matching_rules():
    st = trace_stats(_trace([
        (0, f"kmalloc: call_site=f+0x1/0x9 ptr={A} bytes_req=72 bytes_alloc=96 gfp_flags=GFP_KERNEL node=-1 accounted=false"),
        (1, f"kfree: call_site=g+0x1/0x9 ptr={A}"),  # matched, freed on another CPU
        (1, f"kfree: call_site=g+0x1/0x9 ptr={A}"),  # already freed
        (0, f"kmem_cache_free: call_site=h+0x1/0x9 ptr={B} name=filp"),  # object from before the trace
        (0, f"kmem_cache_alloc: call_site=m+0x1/0x9 ptr={C} name=maple_node bytes_req=256 bytes_alloc=256 gfp_flags=GFP_KERNEL node=-1 accounted=false"),
        (0, f"kmem_cache_alloc: call_site=m+0x1/0x9 ptr={C} name=maple_node bytes_req=256 bytes_alloc=256 gfp_flags=GFP_NOWAIT node=-1 accounted=false"),
        (0, "kfree: call_site=g+0x1/0x9 ptr=0000000000000000"),
        (0, f"kmalloc: call_site=f+0x1/0x9 ptr={D} bytes_req=100 bytes_alloc=128 gfp_flags=GFP_KERNEL_ACCOUNT node=-1 accounted=true"),
    ]))
    s = st["slab"]["summary"]
    assert (s["allocs"], s["frees"], s["kfree_null"], s["frees_nonnull"]) == (4, 4, 1, 3)
    assert (s["frees_matched_live"], s["frees_already_freed"], s["frees_pre_trace"]) == (1, 1, 1)
    assert (s["alloc_of_live_ptr"], s["cross_cpu_frees"], s["live_at_end"]) == (1, 1, 2)
    assert (s["bytes_requested"], s["bytes_allocated"], s["bytes_freed"]) == (684, 736, 96)
    assert s["frag_pct"] == round(100 - 100 * 684 / 736, 3)
    assert st["slab"]["alloc_of_live_ptr_by_cache"] == {"maple_node": 1}
    caches = {c["cache"]: c for c in st["slab"]["caches"]}
    assert (caches["kmalloc-96"]["allocs"], caches["kmalloc-96"]["frees"], caches["kmalloc-96"]["cross_cpu_frees"]) == (1, 1, 1)
    assert caches["kmalloc-cg-128"]["live_at_end"] == 1  # __GFP_ACCOUNT: the memcg kmalloc family
    assert (caches["maple_node"]["allocs"], caches["maple_node"]["alloc_of_live_ptr"]) == (2, 1)
    # per cache: frees of objects (kfree(NULL) frees none); the double free has no live object
    assert caches["filp"]["frees"] == 1 and caches["(unknown)"]["frees"] == 1
    kf = st["slab"]["by_event"]["kfree"]
    assert (kf["count"], kf["null_ptr"], kf["matched_live"], kf["already_freed"], kf["matched_from"]) == (
        3, 1, 1, 1, {"kmalloc": 1})
    sites = {c["call_site"]: c for c in st["slab"]["call_sites"]}
    assert (sites["f+0x1/0x9"]["hits"], sites["f+0x1/0x9"]["ping_pong"], sites["m+0x1/0x9"]["hits"]) == (2, 1, 2)


def test_page_matching_rules():
    st = trace_stats(_trace([
        (0, "mm_page_alloc: page=ffffea0000004000 pfn=0x100 order=2 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE"),
        (0, "mm_page_free: page=ffffea0000004080 pfn=0x102 order=0"),  # inside the live order-2 block
        (0, "mm_page_free: page=ffffea0000004000 pfn=0x100 order=2"),  # matches the head
        (0, "mm_page_free_batched: page=ffffea0000004000 pfn=0x100 order=0"),  # after mm_page_free of its pfn
        (1, "mm_page_free: page=ffffea0000008000 pfn=0x200 order=0"),  # never allocated in the trace
        (1, "mm_page_alloc: page=0000000000000000 pfn=0x0 order=3 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE"),
        (1, "mm_page_alloc: page=ffffea000000c000 pfn=0x300 order=0 migratetype=0 gfp_flags=GFP_KERNEL"),
        (1, "mm_page_free_batched: page=ffffea0000010000 pfn=0x400 order=0"),
        (1, "mm_page_alloc_extfrag: page=ffffea0000010000 pfn=0x400 alloc_order=0 fallback_order=10 pageblock_order=9 alloc_migratetype=0 fallback_migratetype=1 fragmenting=0 change_ownership=1"),
    ]))
    p = st["page"]
    s = p["summary"]
    assert (s["allocs"], s["failed"], s["alloc_pages"]) == (3, 1, 4 + 8 + 1)
    assert (s["frees"], s["frees_matched_head"], s["frees_inside_live_block"], s["frees_unmatched"]) == (3, 1, 1, 1)
    assert (s["live_at_end"], s["live_pages_at_end"]) == (1, 1)
    assert p["batched"]["count"] == 2 and p["batched"]["after_free_same_pfn"] == 1 and p["batched"]["unmatched"] == 1
    om = {(r["order"], r["migratetype"]): (r["allocs"], r["failed"], r["migratetype_name"]) for r in p["order_migratetype"]}
    assert om == {(0, 0): (1, 0, "Unmovable"), (2, 1): (1, 0, "Movable"), (3, 1): (1, 1, "Movable")}
    e = p["extfrag"][0]
    assert (e["pfn"], e["alloc_order"], e["fallback_order"], e["alloc_migratetype"], e["fallback_migratetype"],
            e["change_ownership"]) == (0x400, 0, 10, 0, 1, 1)
    text = format_stats(st, page=True)
    # 4.4+ labels: migratetype 1 is Movable (perf kmem's pre-4.4 table would say RECLAIM)
    assert "order  Unmovable  Movable" in text and "mm_page_alloc_extfrag:" in text


def test_vmalloc_rules():
    st = trace_stats(_trace([
        (0, "alloc_vmap_area: va_start: 18446683600664117248 size=20480 align=16384 vstart=0xffffc90000000000 vend=0xffffe8ffffffffff failed=0"),
        (0, "alloc_vmap_area: va_start: 0 size=8192 align=4096 vstart=0xffffc90000000000 vend=0xffffe8ffffffffff failed=1"),
        (0, "free_vmap_area_noflush: va_start=0xffffc900059bc000 nr_lazy=5 nr_lazy_max=16384"),
        (0, "free_vmap_area_noflush: va_start=0xffffc90001978000 nr_lazy=9 nr_lazy_max=16384"),
        (0, "purge_vmap_area_lazy: start=0xffffc900000c4000 end=0xffffc900095b9000 num_purged=3058"),
    ]))
    v = st["vmalloc"]
    assert (v["allocs"], v["failed"], v["alloc_bytes"], v["frees"], v["frees_matched"], v["frees_unmatched"]) == (
        2, 1, 20480, 2, 1, 1)
    assert (v["purges"], v["areas_purged"], v["nr_lazy_peak"], v["nr_lazy_max"], v["live_at_end"]) == (1, 3058, 9, 16384, 0)


def test_kmalloc_cache_names_follow_kmalloc_type():
    names = kmalloc_cache_names(pl.DataFrame(
        {"bytes_alloc": [8, 192, 1024, 8192, 16384, 96], "gfp": [0xCC0, 0xCD0, 0xCC0, 0xCC1, 0xCC0, None]},
        schema={"bytes_alloc": pl.Int64, "gfp": pl.UInt32}))
    assert list(names.values()) == ["kmalloc-8", "kmalloc-rcl-192", "kmalloc-1k", "dma-kmalloc-8k", "kmalloc-large", "kmalloc-96"]


# --------------------------------------------------------------------------- vs analysis.json


def _check_vs_analysis(r, a, vmalloc=True):
    st = r.stats
    assert st["events"] == a["event_counts"]
    assert abs(st["span_s"] - a["span_s"]) <= 0.0011
    assert st["lost"] == {"markers": a["lost_markers_in_text"], "events": a["lost_events_in_text"], "by_cpu": {}}
    assert r.problems.get("time_backwards", {}).get("count", 0) == a["timestamp_regressions"]
    s, sa = st["slab"], a["slab"]
    assert s["summary"]["kfree_null"] == sa.get("kfree_null", 0)
    for ev in ("kfree", "kmem_cache_free"):
        d = s["by_event"].get(ev, {})
        assert d.get("nonnull", 0) == sa.get(f"{ev}_nonnull", 0)
        assert d.get("matched_live", 0) == sa.get(f"{ev}_matched_live", 0)
        assert d.get("pre_trace", 0) == sa.get(f"{ev}_unmatched(allocated before trace)", 0)
        assert d.get("already_freed", 0) == sa.get(f"{ev}_matched_earlier_not_live", 0)
        for src in ("kmalloc", "kmem_cache_alloc"):
            assert d.get("matched_from", {}).get(src, 0) == sa.get(f"{ev}_matched_live_from_{src}", 0)
    assert s["summary"]["alloc_of_live_ptr"] == sa.get("alloc_of_live_ptr(missed free)", 0)
    top = a["slab_missed_free_by_cache(top)"]
    assert {k: v for k, v in s["alloc_of_live_ptr_by_cache"].items() if k in top} == top
    assert s["summary"]["live_at_end"] == a["slab_live_at_end"]
    assert s["by_event"]["kfree"]["match_fraction"] == a["kfree_match_fraction"]
    assert s["by_event"]["kmem_cache_free"]["match_fraction"] == a["kmem_cache_free_match_fraction"]
    p, pa = st["page"], a["pages"]
    ps = p["summary"]
    assert ps["frees"] == pa["mm_page_free"]
    assert ps["frees_matched_head"] == pa.get("mm_page_free_matched_head", 0)
    assert ps["frees_inside_live_block"] == pa.get("mm_page_free_inside_live_block(split)", 0)
    assert ps["frees_unmatched"] == pa.get("mm_page_free_unmatched", 0)
    assert ps["free_match_fraction"] == a["page_free_match_fraction"]
    assert ps["live_at_end"] == a["pages_live_at_end"]
    assert p["batched"]["count"] == pa["mm_page_free_batched"]
    assert p["batched"]["after_free_same_pfn"] == pa["mm_page_free_batched_after_mm_page_free_same_pfn"]
    assert p["batched"]["after_free_fraction"] == a["page_free_batched_preceded_by_mm_page_free_fraction"]
    om = {f"order={r_['order']} mt={r_['migratetype']}({r_['migratetype_name']})": r_["allocs"] for r_ in p["order_migratetype"]}
    assert om == a["mm_page_alloc_order_migratetype"]
    gfp = {g["gfp_flags"]: g["allocs"] for g in p["gfp"]}
    assert {k: gfp[k] for k in a["mm_page_alloc_top_gfp"]} == a["mm_page_alloc_top_gfp"]
    zl = {f"order={z['order']} mt={z['migratetype']} percpu_refill={z['percpu_refill']}": z["count"] for z in p["zone_locked"]}
    assert zl == a["zone_locked_order_mt_refill"]
    ef = {}
    for e in p["extfrag"]:
        k = " ".join(str(e[c]) for c in ("alloc_order", "fallback_order", "alloc_migratetype", "fallback_migratetype", "change_ownership"))
        ef[k] = ef.get(k, 0) + 1
    assert ef == a["extfrag_alloc_fallback_allocmt_fallbackmt_chown"]
    if vmalloc:
        v, va = st["vmalloc"], a["vmalloc"]
        assert (v["allocs"], v["frees"]) == (va.get("alloc", 0), va.get("free_noflush", 0))
        assert v["frees_matched"] == va.get("free_noflush_matched", 0)
        assert v["frees_unmatched"] == va.get("free_noflush_unmatched(allocated before trace)", 0)
        assert (v["purges"], v["areas_purged"]) == (va.get("purge", 0), va.get("purged_areas", 0))
        assert v["live_at_end"] == a["vmalloc_live_at_end"]
        assert {k: v["sizes"][k] for k in a["vmalloc_top_sizes"]} == a["vmalloc_top_sizes"]


def test_shipped_idle_capture_vs_analysis_json(shipped, trace_results):
    a = json.loads((shipped / "a_idle_stream" / "analysis.json").read_text())
    _check_vs_analysis(trace_results(shipped / "a_idle_stream"), a)


@pytest.mark.slow
@pytest.mark.corpus
@pytest.mark.parametrize("name", ["a_idle_stream", "b_compile_nohash", "c_fschurn", "d_net_loopback", "g_tracecmd_compile"])
def test_corpus_vs_analysis_json(corpus, trace_results, name):
    folder = corpus / name
    if not (folder / "analysis.json").exists():
        pytest.skip(f"{folder} not in the corpus")
    a = json.loads((folder / "analysis.json").read_text())
    if name.startswith("g_"):
        r = trace_results(folder / "report.txt.zst")
        # analyze.py misses the space-padded alloc_vmap_area body of trace-cmd report;
        # README section 6: parsed directly, 6 of the 7 lazy frees match one of 10 allocations
        _check_vs_analysis(r, a, vmalloc=False)
        v = r.stats["vmalloc"]
        assert (v["allocs"], v["frees"], v["frees_matched"]) == (10, 7, 6)
    else:
        _check_vs_analysis(trace_results(folder), a)


def test_a_trace_with_no_events_says_n_a_not_none():
    ev, meta, problems = parse_text([b"# tracer: nop\n#\n"], "h.txt")
    text = format_stats(trace_stats(Trace(ev, {**meta, "source": "h.txt"}, problems)), slab=True, page=True, caller=True)
    assert "None" not in text
    assert "span n/a" in text and "(frag n/a)" in text and "nr_lazy" not in text
