"""kmemdes.trace._express: the one-pass path for the ordinary lines of ftrace text.

The express path must give, for every line it takes, exactly the row the
general path gives (the expected tables come from the general path with the
express path switched off, itself checked field by field against the lines
as the kernel printed them in test_text.py), and must take nearly every line
of a real trace.
"""

from __future__ import annotations

import polars as pl
import pytest
import zstandard

from kmemdes.trace import _express, text
from kmemdes.trace.text import parse_text


def _plain(chunks: list[bytes]) -> tuple:
    saved = text._EXPRESS
    text._EXPRESS = False
    try:
        return parse_text(chunks, "t.txt")
    finally:
        text._EXPRESS = saved


@pytest.fixture
def taken(monkeypatch):
    """Counts of lines offered to and taken by the express path."""
    seen = {"offered": 0, "taken": 0}
    real = _express.express_rows

    def counting(parser, frame):
        rows, rest = real(parser, frame)
        seen["offered"] += frame.height
        seen["taken"] += 0 if rows is None else int(rows["_ok"].sum())
        return rows, rest

    monkeypatch.setattr(_express, "express_rows", counting)
    return seen


def _chunks(raw: bytes, n: int) -> list[bytes]:
    lines = raw.split(b"\n")[:-1]
    step = -(-len(lines) // n)
    return [b"\n".join(lines[i:i + step]) + b"\n" for i in range(0, len(lines), step)]


@pytest.mark.parametrize("trace, n_chunks, share", [
    ("b_compile_head/trace.txt.zst", 8, 0.99),
    ("a_idle_stream/trace.txt.zst", 20, 0.95),  # events are learnt in the first chunk they appear in
])
def test_real_trace_same_table_and_nearly_every_line_taken(shipped, taken, trace, n_chunks, share):
    raw = zstandard.ZstdDecompressor().decompress((shipped / trace).read_bytes(), max_output_size=1 << 30)
    chunks = _chunks(raw, n_chunks)
    ev, meta, problems = parse_text(chunks, "t.txt")
    ev0, meta0, problems0 = _plain(chunks)
    assert ev.equals(ev0) and meta == meta0 and problems == problems0
    assert taken["taken"] >= share * ev.height


LINE = "            bash-12948   [001] .....  1968.%06d: "
ALLOC = "kmem_cache_alloc: call_site=getname_flags+0x24/0x1f0 ptr=ffff88810087%04x name=names_cache " \
        "bytes_req=4096 bytes_alloc=4096 gfp_flags=GFP_KERNEL node=-1 accounted=false"
PAGE = "mm_page_alloc: page=ffffea00053e27c0 pfn=0x14f8%02x order=0 migratetype=0 gfp_flags=GFP_KERNEL"
SLEEP = "mm_compaction_kcompactd_sleep: nid=0"


@pytest.mark.parametrize("every", [2, 50])  # many lines left (merged by a sort), few (merged as slices)
def test_lines_left_are_merged_in_line_order(taken, every):
    lines = []
    for i in range(600):
        body = SLEEP if i % every == 1 else (ALLOC % i if i % 3 else PAGE % (i % 256))
        lines.append((LINE % i) + body)
    lines[6] = (LINE % 6) + "mm_page_alloc: page=ffffea00053e27c0 pfn=0x14f8zz order=0 migratetype=0 gfp_flags=GFP_KERNEL"
    lines[8] = (LINE % 8) + (ALLOC % 8)[:70]
    lines[10] = ""
    data = ("\n".join(lines) + "\n").encode()
    ev, meta, problems = parse_text([data], "t.txt")
    ev0, meta0, problems0 = _plain([data])
    assert ev.equals(ev0) and meta == meta0 and problems == problems0
    assert set(problems) == {"bad_field", "truncated_line"}
    assert ev["line"].is_sorted() and ev.height == 599
    assert taken["taken"] == sum(1 for i in range(600) if i % every != 1) - 3


def test_failed_page_alloc_and_null_pointer_take_the_general_path(taken):
    kfree = "kfree: call_site=x+0x1/0x2 ptr=ffff8881%08x"
    lines = [(LINE % i) + (PAGE % (i % 256) if i % 3 == 0 else kfree % i if i % 3 == 1 else ALLOC % i)
             for i in range(300)]
    lines[3] = (LINE % 3) + "mm_page_alloc: page=0000000000000000 pfn=0 order=9 migratetype=1 gfp_flags=GFP_KERNEL"
    lines[4] = (LINE % 4) + "kfree: call_site=x+0x1/0x2 ptr=(null)"
    data = ("\n".join(lines) + "\n").encode()
    ev, meta, problems = parse_text([data], "t.txt")
    assert ev.equals(_plain([data])[0]) and problems == {}
    assert ev.filter(pl.col("line") == 4)["pfn"].to_list() == [-1]
    assert ev.filter(pl.col("line") == 5)["ptr"].to_list() == [0]
    assert taken["taken"] == 298


def test_layouts_are_not_learnt_ahead_when_an_event_line_needs_the_general_header(taken):
    # a timestamp with a 5-digit fraction does not fit the learnt header
    # layout: that line takes the regular-expression header parse, so its
    # event's sample could differ; nothing is learnt ahead and the chunk goes
    # the general way.  A comm with ": " fits the layout: taken.
    lines = [(LINE % i) + (ALLOC % i) for i in range(300)]
    lines[0] = "            bash-12948   [001] .....  1968.00000: " + (ALLOC % 0)
    lines[1] = "      evil: name-88      [000] .....  1968.000001: " + (ALLOC % 1)
    data = ("\n".join(lines) + "\n").encode()
    ev, meta, problems = parse_text([data], "t.txt")
    assert ev.equals(_plain([data])[0]) and ev["comm"][1] == "evil: name"
    assert meta["lines"]["slow_path"] == 1 and taken["taken"] == 0
    ev, meta, problems = parse_text([data[data.index(b"\n") + 1:]], "t.txt")
    assert ev["comm"][0] == "evil: name" and taken["taken"] == 299


def test_only_whole_samples_are_learnt_ahead(taken, monkeypatch):
    # with a head of 100 lines, no event has its 256-row sample there: nothing
    # is learnt ahead, the first chunk goes the general way and teaches the
    # layouts, and the second chunk is taken
    monkeypatch.setattr(_express, "_AHEAD", 100)
    lines = [(LINE % i) + (ALLOC % i if i % 2 else PAGE % (i % 256)) for i in range(1200)]
    chunks = [("\n".join(lines[:600]) + "\n").encode(), ("\n".join(lines[600:]) + "\n").encode()]
    ev, meta, problems = parse_text(chunks, "t.txt")
    assert ev.equals(_plain(chunks)[0]) and problems == {}
    assert taken["taken"] == 600


@pytest.mark.parametrize("bad", [
    "kfree: call_site=x+0x1/0x2 1234",  # a bare number where ptr= belongs
    "mm_page_alloc: page=ffffea00053e27c0 0 order=0 migratetype=0 gfp_flags=GFP_KERNEL",  # bare pfn
    "mm_page_alloc: page=ffffea00053e27c0 pfn=12345 order=0 migratetype=0 gfp_flags=GFP_KERNEL",  # decimal under 0x
    "mm_page_alloc: page=ffffea00053e27c0 pfn=0x1 order=0 migratetype=0 gfp_flags=0x100000000",  # wider than gfp_t
])
def test_fields_without_their_key_or_out_of_range_are_the_general_paths(bad):
    # found by a differential fuzzer: the express path must check every key= (a bare number
    # converts without one) and leave every problem to the general path
    kfree = "kfree: call_site=x+0x1/0x2 ptr=ffff8881%08x"
    lines = [(LINE % i) + (PAGE % (i % 256) if i % 3 == 0 else kfree % i if i % 3 == 1 else ALLOC % i)
             for i in range(300)]
    lines[150] = (LINE % 150) + bad
    data = ("\n".join(lines) + "\n").encode()
    ev, meta, problems = parse_text([data], "t.txt")
    ev0, meta0, problems0 = _plain([data])
    assert ev.equals(ev0) and meta == meta0 and problems == problems0


def test_the_first_printed_name_of_an_event_decides_its_sample(monkeypatch):
    # "kmem:kfree" (1 row) comes before "kfree" (many): the general path learns kfree from the
    # first group, whose sample is not whole in the head, so nothing is learnt ahead
    monkeypatch.setattr(_express, "_AHEAD", 300)
    lines = [(LINE % 0) + "kmem:kfree: call_site=x ptr=1"]
    lines += [(LINE % i) + "kfree: call_site=x ptr=1 name=foo" for i in range(1, 600)]
    data = ("\n".join(lines) + "\n").encode()
    ev, meta, problems = parse_text([data], "t.txt")
    assert ev.equals(_plain([data])[0]) and problems == _plain([data])[2]


def test_interned_strings_start_again_past_their_bound(monkeypatch):
    # tails that never repeat (a new bytes_req on every line) must not make each chunk dearer
    monkeypatch.setattr(text, "_INTERN_MAX", 50)
    lines = [(LINE % i) + (ALLOC % i).replace("bytes_req=4096", f"bytes_req={i}") for i in range(400)]
    chunks = [("\n".join(lines[i:i + 40]) + "\n").encode() for i in range(0, 400, 40)]
    ev, meta, problems = parse_text(chunks, "t.txt")
    assert ev.equals(_plain(chunks)[0]) and ev["bytes_req"].to_list() == list(range(400))
