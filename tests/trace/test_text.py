"""kmemdes.trace.text: every format generation of KERNEL.md section 14, field by field.

Expected values come from the lines themselves as the kernel printed them
(KERNEL.md section 14, traces/README.md section 4), decoded by hand:
hex addresses, GFP masks from the bit values listed in KERNEL.md section 2,
``page = vmemmap_base + 64 * pfn`` on the reference machine.
"""

from __future__ import annotations

import random

import polars as pl
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmemdes.errors import KmemdesError
from kmemdes.trace import text
from kmemdes.trace.schema import EVENT_SCHEMA, EventKind
from kmemdes.trace.text import DROPPING_PROBLEMS, TextParser, detect_text_format, parse_text

# GFP bits (KERNEL.md section 2)
GFP_KERNEL = 0xCC0
GFP_KERNEL_ACCOUNT = 0x400CC0
__GFP_ZERO = 0x100
__GFP_COMP = 0x40000
__GFP_NOWARN = 0x2000
__GFP_RETRY_MAYFAIL = 0x4000
__GFP_NOMEMALLOC = 0x80000
GFP_TRANSHUGE = 0x1C24CA
__GFP_NORETRY = 0x10000
__GFP_THISNODE = 0x200000
GFP_HIGHUSER = 0x100CC2
__GFP_ACCOUNT = 0x400000
VMEMMAP = 0xFFFFEA0000000000


def one(line: str, **kw) -> dict:
    """Parse a single line; return its row as a dict (and check there are no problems)."""
    ev, meta, problems = parse_text([(line + "\n").encode()], "t.txt", **kw)
    assert problems == {}, problems
    assert ev.height == 1
    assert ev.schema == pl.Schema(EVENT_SCHEMA)
    return ev.row(0, named=True)


# --------------------------------------------------------------------------- 6.18 trace_pipe


def test_mm_page_alloc_raw_pointer_618():
    r = one(
        "            bash-12948   [001] .....  1968.174923: mm_page_alloc: page=ffffea00053e27c0 pfn=0x14f89f "
        "order=0 migratetype=0 gfp_flags=GFP_KERNEL_ACCOUNT|__GFP_ZERO|__GFP_COMP"
    )
    assert (r["line"], r["ts"], r["cpu"], r["pid"], r["comm"], r["flags"]) == (1, 1968174923000, 1, 12948, "bash", ".....")
    assert r["kind"] == EventKind.MM_PAGE_ALLOC and r["event"] == "mm_page_alloc"
    assert (r["pfn"], r["order"], r["migratetype"]) == (0x14F89F, 0, 0)
    assert r["gfp"] == GFP_KERNEL_ACCOUNT | __GFP_ZERO | __GFP_COMP
    assert r["gfp_flags"] == "GFP_KERNEL_ACCOUNT|__GFP_ZERO|__GFP_COMP"
    # raw page= is the struct page address: vmemmap_base + 64 * pfn (README section 2)
    assert r["page"] == 0xFFFFEA00053E27C0 == VMEMMAP + 64 * r["pfn"]
    assert r["ptr"] is None and r["args"] is None


def test_kmem_cache_alloc_618():
    r = one(
        "            bash-12948   [001] .....  1968.174898: kmem_cache_alloc: call_site=alloc_empty_file+0x3c/0x110 "
        "ptr=ffff88815a369180 name=filp bytes_req=184 bytes_alloc=192 gfp_flags=GFP_KERNEL node=-1 accounted=true"
    )
    assert r["kind"] == EventKind.KMEM_CACHE_ALLOC
    assert r["call_site"] == "alloc_empty_file+0x3c/0x110"
    assert r["ptr"] == 0xFFFF88815A369180 and r["cache"] == "filp"
    assert (r["bytes_req"], r["bytes_alloc"], r["gfp"], r["node"], r["accounted"]) == (184, 192, GFP_KERNEL, -1, True)


def test_kmalloc_and_kfree_null_618():
    r = one(
        "           <...>-11978   [001] .....  1947.381613: kmalloc: call_site=tracing_mark_open+0xe4/0x230 "
        "ptr=00000000da238e49 bytes_req=16 bytes_alloc=16 gfp_flags=GFP_KERNEL node=-1 accounted=false"
    )
    assert (r["comm"], r["pid"], r["kind"], r["ptr"], r["cache"], r["accounted"]) == (
        "<...>", 11978, EventKind.KMALLOC, 0xDA238E49, None, False)
    r = one("            bash-12948   [001] .....  1968.174924: kfree: call_site=ida_alloc_range+0x39b/0x400 ptr=0000000000000000")
    assert (r["kind"], r["ptr"], r["call_site"]) == (EventKind.KFREE, 0, "ida_alloc_range+0x39b/0x400")


def test_page_events_618():
    r = one("            bash-13015   [001] d..3.  1968.185721: mm_page_alloc_zone_locked: page=ffffea00053e30c0 "
            "pfn=0x14f8c3 order=0 migratetype=0 percpu_refill=1")
    assert (r["kind"], r["flags"], r["pfn"], r["order"], r["migratetype"], r["percpu_refill"]) == (
        EventKind.MM_PAGE_ALLOC_ZONE_LOCKED, "d..3.", 0x14F8C3, 0, 0, 1)
    r = one("             cat-12989   [001] d..3.  1972.804060: mm_page_alloc_extfrag: page=ffffea0005470000 "
            "pfn=0x151c00 alloc_order=0 fallback_order=10 pageblock_order=9 alloc_migratetype=0 "
            "fallback_migratetype=1 fragmenting=0 change_ownership=1")
    assert (r["pfn"], r["order"], r["fallback_order"], r["migratetype"], r["fallback_migratetype"]) == (0x151C00, 0, 10, 0, 1)
    assert (r["fragmenting"], r["change_ownership"], r["page"]) == (0, 1, VMEMMAP + 64 * 0x151C00)
    r = one("              rm-14126   [001] d..3.  2018.470952: mm_page_pcpu_drain: page=0000000040a1a01b "
            "pfn=0x142300 order=1 migratetype=1")
    assert (r["kind"], r["pfn"], r["order"], r["migratetype"], r["page"]) == (
        EventKind.MM_PAGE_PCPU_DRAIN, 0x142300, 1, 1, 0x40A1A01B)
    r = one("         python3-15541   [001] .....  2151.066474: mm_page_alloc: page=000000005daaa95f pfn=0x15f800 "
            "order=9 migratetype=1 gfp_flags=GFP_TRANSHUGE|__GFP_NORETRY|__GFP_THISNODE")
    assert (r["order"], r["gfp"]) == (9, GFP_TRANSHUGE | __GFP_NORETRY | __GFP_THISNODE)
    r = one("            bash-14052   [000] ...4.  2017.821813: mm_page_free_batched: page=00000000f7c4f065 pfn=0x10c310 order=0")
    assert (r["kind"], r["pfn"], r["order"]) == (EventKind.MM_PAGE_FREE_BATCHED, 0x10C310, 0)


def test_failed_page_alloc_is_pfn_minus_one():
    # mm_page_alloc of a NULL page prints page=NULL and pfn 0 (include/trace/events/kmem.h)
    r = one("            bash-12948   [001] .....  1968.174923: mm_page_alloc: page=0000000000000000 pfn=0x0 "
            "order=10 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_COMP")
    assert (r["pfn"], r["page"], r["order"]) == (-1, 0, 10)


def test_vmalloc_events():
    r = one("            bash-12948   [001] .....  1968.174914: alloc_vmap_area: va_start: 18446683600664117248 "
            "size=20480 align=16384 vstart=0xffffc90000000000 vend=0xffffe8ffffffffff failed=0")
    # README 4.1: the decimal va_start 18446683600664117248 is 0xffffc900059bc000
    assert r["va_start"] == 0xFFFFC900059BC000
    assert (r["size"], r["align"], r["vstart"], r["vend"], r["failed"]) == (
        20480, 16384, 0xFFFFC90000000000, 0xFFFFE8FFFFFFFFFF, 0)
    r = one("     kworker/0:1-11      [000] .....  2071.595763: free_vmap_area_noflush: va_start=0xffffc90001978000 "
            "nr_lazy=9232 nr_lazy_max=16384")
    assert (r["comm"], r["pid"], r["va_start"], r["nr_lazy"], r["nr_lazy_max"]) == (
        "kworker/0:1", 11, 0xFFFFC90001978000, 9232, 16384)
    r = one("     kworker/1:0-3081    [001] .....  2073.639745: purge_vmap_area_lazy: start=0xffffc900000c4000 "
            "end=0xffffc900095b9000 num_purged=3058")
    assert (r["kind"], r["va_start"], r["va_end"], r["npurged"]) == (
        EventKind.PURGE_VMAP_AREA_LAZY, 0xFFFFC900000C4000, 0xFFFFC900095B9000, 3058)


def test_compaction_marker_and_other_events_keep_args():
    r = one("      kcompactd0-36      [000] .....  1968.447404: mm_compaction_kcompactd_sleep: nid=0")
    assert (r["kind"], r["nid"], r["args"]) == (EventKind.COMPACTION, 0, "nid=0")
    # zone=%-8s pads the zone name (KERNEL.md section 14)
    r = one("      kcompactd0-36      [000] .....  1968.447404: mm_compaction_suitable: node=0 zone=Normal   "
            "order=9 ret=continue")
    assert (r["nid"], r["order"], r["args"]) == (0, 9, "node=0 zone=Normal   order=9 ret=continue")
    r = one("            bash-12948   [001] ...1.  1968.174905: tracing_mark_write: capture_start name=b_compile_nohash")
    assert (r["kind"], r["args"], r["flags"]) == (EventKind.MARKER, "capture_start name=b_compile_nohash", "...1.")


def test_comm_with_spaces_dashes_brackets_and_colons():
    body = ": kfree: call_site=x+0x1/0x2 ptr=ffff888100000000"
    cases = {
        "     Web Content-4321    [001] .....  1968.200000": ("Web Content", 4321),
        " pyenv-version-f-17105   [001] .....  1968.200000": ("pyenv-version-f", 17105),
        "           a [b]-77      [000] .....  1968.200000": ("a [b]", 77),
        "      evil: name-88      [000] .....  1968.200000": ("evil: name", 88),
        "    kworker/u8:2-123     [000] .....  1968.200000": ("kworker/u8:2", 123),
    }
    text = "".join(h + body + "\n" for h in cases)
    ev, _, problems = parse_text([text.encode()], "t.txt")
    assert problems == {}
    assert list(zip(ev["comm"], ev["pid"])) == list(cases.values())
    assert ev["ptr"].to_list() == [0xFFFF888100000000] * 5


def test_record_tgid_column():
    # the record-tgid option adds "(tgid)" after the pid (KERNEL.md section 14)
    r = one("            bash-12948   (  12940) [001] .....  1968.174924: kfree: call_site=a+0x1/0x2 ptr=0000000000000000")
    assert (r["comm"], r["pid"], r["cpu"], r["flags"], r["ts"]) == ("bash", 12948, 1, ".....", 1968174924000)


# --------------------------------------------------------------------------- older kernels


def test_3x_kmalloc_hex_call_site_four_flag_columns():
    r = one("        dropbear-1465  [000] ...1 18154.620753: kmalloc: call_site=ffffffff816650d4 ptr=ffff8800729c3000 "
            "bytes_req=2048 bytes_alloc=2048 gfp_flags=GFP_KERNEL")
    assert (r["comm"], r["pid"], r["flags"], r["ts"]) == ("dropbear", 1465, "...1", 18154620753000)
    assert (r["call_site"], r["ptr"], r["bytes_req"], r["bytes_alloc"], r["gfp"]) == (
        "ffffffff816650d4", 0xFFFF8800729C3000, 2048, 2048, GFP_KERNEL)
    assert r["node"] is None and r["accounted"] is None


def test_4x_kfree_padded_null():
    r = one("   syz-executor0-2711  [000] ....    17.295150: kfree: call_site=ffffffff816a1b7d ptr=          (null)")
    assert (r["comm"], r["pid"], r["ts"], r["ptr"]) == ("syz-executor0", 2711, 17295150000, 0)


def test_46_decimal_pfn_and_old_gfp_names():
    r = one("         netperf-3887  [032] ....   393.246420: mm_page_alloc: page=ffffea0021272200 pfn=8690824 order=3 "
            "migratetype=0 gfp_flags=GFP_KERNEL|__GFP_NOWARN|__GFP_REPEAT|__GFP_COMP|__GFP_NOMEMALLOC|__GFP_NOTRACK")
    assert (r["cpu"], r["pfn"], r["order"]) == (32, 8690824, 3)
    assert r["page"] == VMEMMAP + 64 * 8690824
    # __GFP_REPEAT became __GFP_RETRY_MAYFAIL; __GFP_NOTRACK no longer exists
    assert r["gfp"] == GFP_KERNEL | __GFP_NOWARN | __GFP_RETRY_MAYFAIL | __GFP_COMP | __GFP_NOMEMALLOC


def test_26_mm_page_free_direct_no_flags_column():
    r = one("  gnome-terminal-1567  [000]  4415.246466: mm_page_free_direct: page=ffffea0003db9f40 pfn=1155800 order=0")
    assert (r["comm"], r["pid"], r["flags"], r["ts"]) == ("gnome-terminal", 1567, None, 4415246466000)
    assert (r["kind"], r["event"], r["pfn"], r["order"]) == (EventKind.MM_PAGE_FREE, "mm_page_free_direct", 1155800, 0)


def test_53_kmem_cache_free_without_name():
    # KERNEL.md shows this 5.3/5.4 line with its comm trimmed; <idle>-0 added
    r = one("          <idle>-0     [002] ....   808.188931: kmem_cache_free: call_site=put_cred_rcu+0x88/0xa0 "
            "ptr=0000000058d74ef8")
    assert (r["comm"], r["pid"], r["cpu"], r["ptr"], r["cache"]) == ("<idle>", 0, 2, 0x58D74EF8, None)


def test_pagevec_free_cold_and_node_variants():
    # print formats of the 2.6.3x/3.x events (KERNEL.md version history)
    r = one("            bash-1000  [000] ....   100.000001: mm_pagevec_free: page=ffffea0003db9f40 pfn=1155800 order=0 cold=1")
    assert (r["kind"], r["pfn"], r["args"]) == (EventKind.MM_PAGE_FREE_BATCHED, 1155800, "page=ffffea0003db9f40 pfn=1155800 order=0 cold=1")
    r = one("            bash-1000  [000] ....   100.000001: kmalloc_node: call_site=ffffffff816650d4 ptr=ffff8800729c3000 "
            "bytes_req=100 bytes_alloc=128 gfp_flags=GFP_KERNEL|GFP_ZERO node=1")
    assert (r["kind"], r["event"], r["node"], r["gfp"]) == (EventKind.KMALLOC, "kmalloc_node", 1, GFP_KERNEL | __GFP_ZERO)


# --------------------------------------------------------------------------- trace-cmd, perf


TRACE_CMD = """cpus=2
corpus_tc_16594:             bash-16594 [001]  2990.210243: kmem_cache_alloc:     (getname_flags.part.0+0x24) call_site=getname_flags.part.0+0x24 ptr=0xffff88810087e000 name=names_cache bytes_req=4096 bytes_alloc=4096 gfp_flags=GFP_KERNEL node=-1 accounted=false
corpus_tc_16594:             bash-16594 [001]  2990.210278: kfree:                (ida_alloc_range+0x39b) call_site=ida_alloc_range+0x39b ptr=(nil)
corpus_tc_16594:             bash-16594 [001]  2990.210278: mm_page_alloc:        page=0x123348 pfn=0x123348 order=0 migratetype=0 gfp_flags=GFP_KERNEL_ACCOUNT|__GFP_ZERO|__GFP_COMP
corpus_tc_16594:             bash-16594 [001]  2990.210288: rss_stat:             mm_id=4198009788 curr=0 type=MM_ANONPAGES size=16384B
corpus_tc_16594:             bash-16642 [001]  2990.214210: alloc_vmap_area:      va_start: 18446683600599252992 size=20480 align=16384 vstart=0xffffc90000000000 vend=0xffffe8ffffffffff failed=0
"""


def test_trace_cmd_report():
    assert detect_text_format(TRACE_CMD) == "trace-cmd-report"
    ev, meta, problems = parse_text([TRACE_CMD.encode()], "r.txt")
    assert problems == {} and meta["format"] == "trace-cmd-report" and meta["cpus"] == 2
    assert ev["line"].to_list() == [2, 3, 4, 5, 6]
    assert ev["comm"].unique().to_list() == ["bash"] and ev["flags"].null_count() == 5
    a, f, p, r, v = ev.iter_rows(named=True)
    assert (a["call_site"], a["ptr"], a["cache"], a["ts"]) == ("getname_flags.part.0+0x24", 0xFFFF88810087E000, "names_cache", 2990210243000)
    assert (f["ptr"], f["call_site"]) == (0, "ida_alloc_range+0x39b")
    assert (p["page"], p["pfn"], p["gfp"]) == (0x123348, 0x123348, GFP_KERNEL_ACCOUNT | __GFP_ZERO | __GFP_COMP)
    assert (r["kind"], r["args"]) == (EventKind.OTHER, "mm_id=4198009788 curr=0 type=MM_ANONPAGES size=16384B")
    assert (v["pid"], v["va_start"], v["size"]) == (16642, 18446683600599252992, 20480)


PERF = """            perf 17091 [001]  3023.261506:                 kmem:kmem_cache_alloc: call_site=getname_flags.part.0+0x24 ptr=0xffff888100879000 name=names_cache bytes_req=4096 bytes_alloc=4096 gfp_flags=GFP_KERNEL node=-1 accounted=false
            perf 17091 [001]  3023.261561:                    kmem:mm_page_alloc: page=0x1013f5 pfn=0x1013f5 order=0 migratetype=0 gfp_flags=GFP_HIGHUSER|__GFP_ACCOUNT
       perf-exec 17092 [000]  3023.261653:                            kmem:kfree: call_site=ext4_fname_free_filename+0x12 ptr=(nil)
            bash 17092 [000]  3023.263560:               vmalloc:alloc_vmap_area: va_start: 18446683600586571776 size=20480 align=16384 vstart=0xffffc90000000000 vend=0xffffe8ffffffffff failed=0
             :-1    -1 [001]  3023.263600:                            kmem:kfree: call_site=skb_release_data+0x16b ptr=0xffff888166740900
"""


def test_perf_script():
    assert detect_text_format(PERF) == "perf-script"
    ev, meta, problems = parse_text([PERF.encode()], "p.txt")
    assert problems == {} and meta["format"] == "perf-script"
    assert ev["event"].to_list() == ["kmem_cache_alloc", "mm_page_alloc", "kfree", "alloc_vmap_area", "kfree"]
    assert list(zip(ev["comm"], ev["pid"], ev["cpu"])) == [
        ("perf", 17091, 1), ("perf", 17091, 1), ("perf-exec", 17092, 0), ("bash", 17092, 0), (":-1", -1, 1)]
    assert ev["ptr"].to_list() == [0xFFFF888100879000, None, 0, None, 0xFFFF888166740900]
    assert ev["gfp"][1] == GFP_HIGHUSER | __GFP_ACCOUNT
    assert ev["va_start"][3] == 18446683600586571776 and ev["flags"].null_count() == 5


# --------------------------------------------------------------------------- headers, LOST, blanks


def test_trace_file_header_lost_marker_blank_line():
    text = (
        "# tracer: nop\n#\n# entries-in-buffer/entries-written: 3/45   #P:2\n#\n"
        "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n"
        "#              | |         |   |||||     |         |\n"
        "            bash-12948   [001] .....  1968.174924: kfree: call_site=a+0x1/0x2 ptr=0000000000000000\n"
        "CPU:1 [LOST 42 EVENTS]\n"
        "\n"
        "            bash-12948   [001] .....  1968.174930: kfree: call_site=a+0x1/0x2 ptr=0000000000000000\n"
    )
    p = TextParser("t.txt")
    p.feed(text.encode())
    ev, meta, problems = p.finish()
    assert problems == {} and meta["cpus"] == 2 and meta["tracer"] == "nop"
    assert meta["lines"] == {"total": 10, "rows": 3, "blank": 1, "header": 6, "dropped": 0, "slow_path": 0}
    lost = ev.row(1, named=True)
    assert (lost["line"], lost["kind"], lost["event"], lost["cpu"], lost["npurged"]) == (8, EventKind.LOST, "LOST", 1, 42)
    assert lost["ts"] == 1968174924000  # the previous record's time


# --------------------------------------------------------------------------- problems

GOOD = "            bash-12948   [001] .....  1968.%06d: mm_page_free: page=ffffea00053e27c0 pfn=0x14f89f order=0\n"


def _problem_trace(bad: str) -> bytes:
    return (GOOD % 1 + bad + "\n" + GOOD % 3).encode()


@pytest.mark.parametrize(
    "bad, kind, kept",
    [
        ("            bash-12948   [001] .....  1968.000002: mm_page_free: page=ffffea00053e27c0 pfn=0x14f89f order=abc",
         "bad_field", True),
        ("            bash-12948   [001] .....  1968.000002: mm_page_alloc: page=ffffea00053e27c0 pfn=0x14f89f order=0 migr",
         "truncated_line", True),
        ("            bash-12948   [001] .....  1968.000002: sched_switch: prev_comm=bash prev_pid=1 next_pid=0",
         "unknown_event", True),
        ("            bash-12948   [001] .....  1968.000002: mm_page_alloc: page=ffffea00053e27c0 pfn=0x14f89f order=0 "
         "migratetype=0 gfp_flags=GFP_KERNEL|__GFP_BOGUS", "unknown_gfp", True),
        ("            bash-12948   [001] .....  1967.000002: mm_page_free: page=ffffea00053e27c0 pfn=0x14f89f order=0",
         "time_backwards", True),
        ("            bash-12948   [001] .....", "unparsed_line", False),
        ("\x00\x01binary\xff\xfe garbage", "binary_garbage", False),
    ],
)
def test_problems_are_counted_with_line_numbers_and_strict_raises(bad, kind, kept):
    data = _problem_trace(bad)
    ev, meta, problems = parse_text([data], "t.txt")
    assert list(problems) == [kind], problems
    assert problems[kind]["count"] == 1 and problems[kind]["lines"] == [2]
    assert ev.height == (3 if kept else 2)
    assert (2 in ev["line"].to_list()) == kept
    c = meta["lines"]
    assert c["rows"] + c["blank"] + c["header"] + c["dropped"] == c["total"] == 3
    with pytest.raises(KmemdesError, match=r"^t\.txt:2: "):
        parse_text([data], "t.txt", strict=True)


def test_bad_field_row_keeps_other_fields():
    ev, _, problems = parse_text([_problem_trace(
        "            bash-12948   [001] .....  1968.000002: mm_page_free: page=ffffea00053e27c0 pfn=0x14f89f order=abc")])
    r = ev.row(1, named=True)
    assert (r["pfn"], r["order"], r["page"]) == (0x14F89F, None, 0xFFFFEA00053E27C0)
    assert "order=abc" in problems["bad_field"]["example"]


def test_chunking_does_not_change_the_result(shipped):
    raw = zstandard.ZstdDecompressor().decompress(
        (shipped / "a_idle_stream" / "trace.txt.zst").read_bytes(), max_output_size=1 << 30)
    whole, meta, _ = parse_text([raw], "a")
    lines = raw.split(b"\n")
    rng = random.Random(1)
    chunks, i = [], 0
    while i < len(lines) - 1:
        j = min(len(lines) - 1, i + rng.randint(1, 3000))
        chunks.append(b"\n".join(lines[i:j]) + b"\n")
        i = j
    parts, meta2, _ = parse_text(chunks, "a")
    assert parts.equals(whole) and meta2 == meta and whole.height == 16177


# --------------------------------------------------------------------------- property: nothing is lost silently


def _snippet(path, n):
    raw = zstandard.ZstdDecompressor().decompress(path.read_bytes(), max_output_size=1 << 30)
    return b"\n".join(raw.split(b"\n")[:n]) + b"\n"


@pytest.fixture(scope="module")
def snippets(shipped):
    return [
        _snippet(shipped / "a_idle_stream" / "trace.txt.zst", 120),
        _snippet(shipped / "h_perf_sample" / "report_head.txt.zst", 120),
        _snippet(shipped / "tracedat_small" / "report.txt.zst", 120),
    ]


_corruption = st.tuples(
    st.sampled_from(["flip", "cut", "truncate", "insert", "dupline"]),
    st.floats(0, 1), st.floats(0, 1), st.binary(min_size=1, max_size=12),
)


def _corrupt(data: bytes, ops) -> bytes:
    for op, a, b, blob in ops:
        i = int(a * len(data))
        if op == "flip" and data:
            i = min(i, len(data) - 1)
            data = data[:i] + bytes([data[i] ^ (1 + int(b * 254))]) + data[i + 1:]
        elif op == "cut":
            j = min(len(data), i + 1 + int(b * 200))
            data = data[:i] + data[j:]
        elif op == "truncate":
            data = data[:i]
        elif op == "insert":
            data = data[:i] + blob + data[i:]
        elif op == "dupline":
            lines = data.split(b"\n")
            k = min(len(lines) - 1, int(b * len(lines)))
            lines.insert(k, lines[k])
            data = b"\n".join(lines)
    return data


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 2), ops=st.lists(_corruption, min_size=1, max_size=5))
def test_corrupted_traces_account_for_every_line(snippets, which, ops):
    data = _corrupt(snippets[which], ops)
    total = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    ev, meta, problems = parse_text([data], "c.txt")
    c = meta["lines"]
    assert c["total"] == total
    assert c["rows"] == ev.height
    assert c["rows"] + c["blank"] + c["header"] + c["dropped"] == total
    assert c["dropped"] == sum(p["count"] for k, p in problems.items() if k in DROPPING_PROBLEMS)
    assert ev.schema == pl.Schema(EVENT_SCHEMA)
    assert ev["line"].is_sorted() and ev["line"].n_unique() == ev.height
    try:
        parse_text([data], "c.txt", strict=True)
    except KmemdesError as e:
        assert str(e).startswith("c.txt:")
        assert problems, "strict mode raised although lenient mode found no problem"
    else:
        assert not problems


def _plain_parse(data: bytes) -> tuple:
    """parse_text without the shortcuts: no express path, no constant-offset
    header query and no per-distinct-tail body parse (all must give the same
    result)."""
    saved = (text._TAIL_MIN_ROWS, TextParser._learn_ts_width, text._EXPRESS)
    text._TAIL_MIN_ROWS, TextParser._learn_ts_width, text._EXPRESS = 1 << 62, lambda self, frame: None, False
    try:
        return parse_text([data], "c.txt")
    finally:
        text._TAIL_MIN_ROWS, TextParser._learn_ts_width, text._EXPRESS = saved


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 2), ops=st.lists(_corruption, min_size=0, max_size=5))
def test_shortcuts_do_not_change_the_result(snippets, which, ops):
    data = _corrupt(snippets[which], ops)
    saved = text._TAIL_MIN_ROWS
    text._TAIL_MIN_ROWS = 0  # the tail path even for the few rows of a snippet
    try:
        ev, meta, problems = parse_text([data], "c.txt")
    finally:
        text._TAIL_MIN_ROWS = saved
    ev0, meta0, problems0 = _plain_parse(data)
    assert ev.equals(ev0) and meta == meta0 and problems == problems0


def test_header_shortcut_falls_back_line_by_line():
    # timestamps of another width, a comm with ": ", a body with ": ": the
    # constant-offset query takes the usual lines, the general one the rest
    good = "            bash-12948   [001] .....  1968.%06d: kfree: call_site=x+0x1/0x2 ptr=ffff888100000000\n"
    lines = [good % i for i in range(40)]
    lines[5] = "      evil: name-88      [000] .....  1968.000005: kfree: call_site=x+0x1/0x2 ptr=0\n"
    lines[9] = "            bash-12948   [001] ..... 11968.000009: kfree: call_site=x+0x1/0x2 ptr=0\n"
    lines[11] = "            bash-12948   [001] .....  1968.000011: tracing_mark_write: a: b: c\n"
    lines[13] = "            bash-12948   [001] .....  1968.00013: kfree: call_site=x+0x1/0x2 ptr=0\n"
    data = "".join(lines).encode()
    ev, meta, problems = parse_text([data], "t.txt")
    ev0, meta0, problems0 = _plain_parse(data)
    assert ev.equals(ev0) and meta == meta0 and problems == problems0
    assert meta["lines"]["slow_path"] == 1  # only the 5-digit fraction needs the regular expression
    assert ev.filter(pl.col("line") == 6)["comm"].to_list() == ["evil: name"]
    assert ev.filter(pl.col("line") == 10)["ts"].to_list() == [11968000009000]
    assert ev.filter(pl.col("line") == 12)["args"].to_list() == ["a: b: c"]


@pytest.mark.parametrize("path, fmt", [
    ("a_idle_stream/trace.txt.zst", "ftrace"),
    ("tracedat_small/report.txt.zst", "trace-cmd-report"),
    ("h_perf_sample/report_head.txt.zst", "perf-script"),
])
def test_real_lines_take_the_fast_path(shipped, path, fmt):
    raw = zstandard.ZstdDecompressor().decompress((shipped / path).read_bytes(), max_output_size=1 << 30)
    ev, meta, problems = parse_text([raw], path)
    assert meta["format"] == fmt and problems == {}
    assert meta["lines"]["slow_path"] == 0 and meta["lines"]["rows"] == ev.height > 1000


def test_utf8_comm_and_marker_text():
    # the kernel pads comm to 16 *bytes*; a marker carries any text
    comm = "café".encode()
    head = b" " * (16 - len(comm)) + comm + b"-4321    [001] .....  1968.200000: "
    data = (head + b"tracing_mark_write: na\xc3\xafve \xc3\xbcnicode: text\n"
            + head + b"kfree: call_site=x+0x1/0x2 ptr=ffff888100000000\n")
    ev, meta, problems = parse_text([data], "u.txt")
    assert problems == {}
    assert ev["comm"].to_list() == ["café", "café"] and ev["pid"].to_list() == [4321, 4321]
    assert ev["args"][0] == "naïve ünicode: text" and ev["ptr"][1] == 0xFFFF888100000000


def test_a_gfp_number_wider_than_gfp_t_is_an_unknown_gfp_problem():
    # gfp_t is an unsigned int: 0x1_0000_0000 and beyond are no mask (this raised a TypeError)
    line = "            bash-12948   [001] .....  1968.000001: mm_page_alloc: page=ffffea00053e27c0 pfn=0x14f89f order=0 migratetype=0 gfp_flags=%s"
    ev, meta, problems = parse_text([(line % "0x100000000" + "\n" + line % "0xcc0" + "\n").encode()], "t.txt")
    assert ev["gfp"].to_list() == [None, GFP_KERNEL] and ev["gfp_flags"][0] == "0x100000000"
    assert problems["unknown_gfp"]["lines"] == [1]


def test_a_numeric_field_under_another_key_is_a_problem():
    """Fields are taken by position, but each must still carry its key: ``xyz=`` where the layout has
    ``pfn=`` is a bad field at its line, not a pfn."""
    ok = ("            bash-12948   [001] .....  1968.174923: mm_page_alloc: page=ffffea00053e27c0 pfn=0x14f89f "
          "order=0 migratetype=0 gfp_flags=GFP_KERNEL\n")
    bad = ok.replace("pfn=0x14f89f", "xyz=0x14f89f")
    ev, _, problems = parse_text([(ok * 300 + bad + ok * 10).encode()], "t.txt")
    assert ev.height == 311 and ev["pfn"].null_count() == 1
    assert problems["bad_field"]["count"] == 1 and problems["bad_field"]["lines"] == [301]
