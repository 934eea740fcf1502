"""``kmemdes convert`` and ``kmemdes stats`` end to end on the shipped real traces."""

from __future__ import annotations

import json

import pytest
import zstandard

from kmemdes.cli import main


def test_stats_json_counts_equal_grep(shipped, capsys):
    assert main(["stats", str(shipped / "a_idle_stream"), "--json"]) == 0
    out = capsys.readouterr()
    st = json.loads(out.out)
    assert out.err == ""
    for key in ("events", "span_s", "lost", "problems", "slab", "page", "vmalloc"):
        assert key in st
    text = zstandard.ZstdDecompressor().decompress(
        (shipped / "a_idle_stream" / "trace.txt.zst").read_bytes(), max_output_size=1 << 30)
    for name, n in st["events"].items():
        assert text.count(b": %s: " % name.encode()) == n, name
    assert sum(st["events"].values()) == text.count(b"\n") == 16177
    assert st["span_s"] == 5.006 and st["problems"] == {} and st["lost"]["markers"] == 0
    # README section 6 (a_idle_stream): kfree(NULL) 232, missed frees 8 (maple_node)
    assert st["slab"]["summary"]["kfree_null"] == 232
    assert st["slab"]["alloc_of_live_ptr_by_cache"] == {"maple_node": 8}


def test_stats_text_tables(shipped, capsys):
    assert main(["stats", str(shipped / "b_compile_head"), "--slab", "--page", "--caller"]) == 0
    out = capsys.readouterr().out
    for needle in ("event  ", "kmem_cache_alloc", "SLAB by event:", "SLAB by cache:", "SLAB call sites",
                   "PAGE allocations, order x migratetype", "Unmovable", "Movable", "PAGE allocations by GFP:",
                   "problems: none", "maple_node"):
        assert needle in out, needle
    plain = capsys.readouterr()
    assert main(["stats", str(shipped / "b_compile_head")]) == 0
    plain = capsys.readouterr().out
    assert "SLAB by cache:" not in plain and "slab:" in plain and "page:" in plain and "vmalloc:" in plain


def test_convert_then_stats_is_identical(shipped, tmp_path, capsys):
    for ext in ("kmt", "parquet"):
        out = tmp_path / f"h.{ext}"
        assert main(["convert", str(shipped / "h_perf_sample"), "-o", str(out)]) == 0
        msg = capsys.readouterr().out
        assert msg.startswith(f"{out}: 20,000 events from ") and "(perf-script)" in msg
        assert main(["stats", str(shipped / "h_perf_sample"), "--json"]) == 0
        a = json.loads(capsys.readouterr().out)
        assert main(["stats", str(out), "--json"]) == 0
        b = json.loads(capsys.readouterr().out)
        for d in (a, b):
            d.pop("source"), d.pop("format")
        assert a == b
        # README 4.3: the perf sample's event counts
        assert a["events"] == {"kmem_cache_alloc": 5595, "kmem_cache_free": 4547, "rss_stat": 3187, "kfree": 2194,
                               "mm_page_alloc": 1669, "mm_page_free": 1112, "mm_page_free_batched": 972,
                               "kmalloc": 719, "alloc_vmap_area": 5}


def test_bad_input_lenient_and_strict(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text(
        "            bash-12948   [001] .....  1968.174923: mm_page_free: page=ffffea00053e27c0 pfn=0x14f89f order=0\n"
        "            bash-12948   [001] .....  1968.174924: mm_page_free: page=ffffea00053e27c0 pfn=0x14f89f order=abc\n"
        "garbage line\n"
    )
    assert main(["stats", str(bad), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["problems"]["bad_field"]["lines"] == [2] and st["problems"]["unparsed_line"]["lines"] == [3]
    assert main(["stats", str(bad)]) == 0
    assert "bad_field" in capsys.readouterr().out
    for cmd in (["stats", str(bad), "--strict"], ["convert", str(bad), "-o", str(tmp_path / "x.kmt"), "--strict"]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"kmemdes: error: {bad}:2: mm_page_free: bad value order='abc'")
        assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.kmt").exists()


def test_errors_are_one_line(tmp_path, shipped, capsys):
    cases = [
        (["stats", str(tmp_path / "missing")], "no such file"),
        (["convert", str(shipped / "a_idle_stream"), "-o", str(tmp_path / "a.csv")], "unknown output format"),
        (["convert", str(shipped / "a_idle_stream"), "-o", str(tmp_path / "nodir" / "a.kmt")], "nodir does not exist"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("cmd", ["stats", "convert"])
def test_help_ends_with_example(cmd, capsys):
    assert main([cmd, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Example:" in out and f"kmemdes {cmd} traces/" in out
