"""kmemdes.trace.reader: format detection, compression, capture folders, truncated
streams, and event counts against an independent grep-like count of every real trace."""

from __future__ import annotations

import gzip
import lzma
import shutil

import polars as pl
import pytest
import zstandard

from kmemdes.errors import KmemdesError
from kmemdes.trace import Trace, read_trace
from kmemdes.trace.reader import detect_file, find_capture_trace

SHIPPED_TEXT = ["a_idle_stream", "b_compile_head", "h_perf_sample"]
CORPUS_TEXT = ["a_idle_stream", "b_compile_nohash", "c_fschurn", "d_net_loopback", "g_tracecmd_compile/report.txt.zst"]


@pytest.fixture(scope="module")
def idle_text(shipped) -> bytes:
    return zstandard.ZstdDecompressor().decompress(
        (shipped / "a_idle_stream" / "trace.txt.zst").read_bytes(), max_output_size=1 << 30)


def test_compression_detected_by_magic_not_name(tmp_path, idle_text):
    ref = read_trace(tmp_path / "x" if False else _write(tmp_path / "plain.log", idle_text))
    variants = {
        "gz_named.zst": gzip.compress(idle_text),
        "xz_named.txt": lzma.compress(idle_text),
        "zstd_named.gz": zstandard.ZstdCompressor().compress(idle_text),
        "two_frames": zstandard.ZstdCompressor().compress(idle_text[:500_000])
        + zstandard.ZstdCompressor().compress(idle_text[500_000:]),
    }
    kinds = {"gz_named.zst": "gzip", "xz_named.txt": "xz", "zstd_named.gz": "zstd", "two_frames": "zstd"}
    for name, data in variants.items():
        p = _write(tmp_path / name, data)
        assert detect_file(p) == kinds[name]
        t = read_trace(p)
        assert t.problems == {} and t.meta["compression"] == kinds[name]
        assert t.events.equals(ref.events), name
    assert ref.events.height == 16177 and ref.meta["format"] == "ftrace"


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_capture_folder_meta_and_snapshots(shipped):
    folder = shipped / "a_idle_stream"
    t = read_trace(folder)
    assert isinstance(t, Trace)
    assert t.meta["source"].endswith("trace.txt.zst") and t.meta["capture_dir"] == str(folder)
    meta_txt = dict(ln.split("=", 1) for ln in (folder / "meta.txt").read_text().splitlines() if "=" in ln)
    assert t.meta["capture"] == meta_txt
    for side in ("before", "after"):
        files = sorted(p.name for p in (folder / side).iterdir())
        assert sorted(t.meta[side]) == files
        assert t.meta[side]["buddyinfo"] == (folder / side / "buddyinfo").read_text()
    assert t.meta["uname"] == meta_txt["uname"] and t.meta["cpus"] == 2
    # a file inside a capture folder brings the folder's facts too
    t2 = read_trace(folder / "trace.txt.zst")
    assert t2.meta["capture"] == meta_txt and t2.events.equals(t.events)


def test_folder_without_trace_and_missing_path(tmp_path):
    with pytest.raises(KmemdesError, match="no trace in this folder"):
        read_trace(tmp_path)
    with pytest.raises(KmemdesError, match="no such file"):
        read_trace(tmp_path / "nope")


def test_empty_file(tmp_path):
    t = read_trace(_write(tmp_path / "empty.txt", b""))
    assert t.events.height == 0 and t.problems == {} and t.events.columns[0] == "line"


def test_text_without_any_event_line_is_not_a_trace(tmp_path):
    # a README, or a file of garbage, is refused (one line, naming the file
    # and its first line); a trace file with only its header is an empty trace
    readme = _write(tmp_path / "README.md", b"# kmemdes\n\nA simulator.\n")
    with pytest.raises(KmemdesError, match=r"README.md: not a kernel trace: no event line, 1 unparsed line, the first at line 3: 'A simulator.'"):
        read_trace(readme)
    with pytest.raises(KmemdesError, match="not a kernel trace"):
        read_trace(_write(tmp_path / "g.txt", b"\x00\x01\x02 binary\n"))
    t = read_trace(_write(tmp_path / "h.txt", b"# tracer: nop\n#\n"))
    assert t.events.height == 0 and t.meta["lines"]["header"] == 2


def test_cut_zstd_stream_is_a_counted_problem(tmp_path, shipped, idle_text):
    comp = (shipped / "a_idle_stream" / "trace.txt.zst").read_bytes()
    cut = _write(tmp_path / "cut.zst", comp[: len(comp) // 2])
    t = read_trace(cut)
    assert t.problems["truncated_file"]["count"] == 1
    # every complete line before the cut is a row (independent: decompress what is there)
    partial = zstandard.ZstdDecompressor().decompressobj().decompress(comp[: len(comp) // 2])
    complete = partial.count(b"\n")
    assert complete > 1000
    assert t.events.filter(pl.col("line") <= complete).height == complete
    assert t.events.height - complete <= 1  # at most the cut last line, if it still parsed
    # strict: the first problem is the cut last line (or the cut stream itself)
    with pytest.raises(KmemdesError, match=r"cut\.zst:\d+: (truncated file|.*cut short)"):
        read_trace(cut, strict=True)


def test_corrupt_gzip_member(tmp_path, idle_text):
    data = bytearray(gzip.compress(idle_text))
    data[len(data) // 2] ^= 0xFF
    t = read_trace(_write(tmp_path / "bad.gz", bytes(data)))
    assert "truncated_file" in t.problems
    assert 0 < t.events.height < 16177


def test_tracedat_dispatch(shipped):
    p = shipped / "tracedat_small" / "trace.dat"
    t = read_trace(p)
    assert t.meta["format"] == "trace.dat-v7" and t.events.height > 0
    assert detect_file(p) == "trace.dat"
    # the zstd-compressed version-6 file is detected inside the compression
    t6 = read_trace(shipped / "tracedat_small" / "trace.v6.dat.zst")
    assert t6.meta["format"] == "trace.dat-v6" and t6.events.height == t.events.height


def test_trace_cmd_report_agrees_with_tracedat(shipped):
    """The same records read from the binary trace.dat (another reader) and from
    its `trace-cmd report` text (this one)."""
    d = shipped / "tracedat_small"
    rep = read_trace(d / "report.txt.zst")
    dat = read_trace(d / "trace.dat")
    assert rep.meta["format"] == "trace-cmd-report" and rep.problems == {}
    cols = ["cpu", "pid", "comm", "event", "kind", "pfn", "order", "migratetype", "gfp", "gfp_flags", "page", "ptr",
            "call_site", "bytes_req", "bytes_alloc", "cache", "node", "accounted", "percpu_refill", "va_start",
            "size", "vstart", "vend", "nr_lazy", "nr_lazy_max", "args"]
    # per-CPU streams keep their order in both; the report prints the ns time
    # rounded to the nearest microsecond
    a = rep.events.sort("cpu", "line").with_columns(us=pl.col("ts"))
    b = dat.events.sort("cpu", "line").with_columns(us=(pl.col("ts") + 500) // 1000 * 1000)
    assert a.height == b.height == 19039
    assert a.select(cols + ["us"]).equals(b.select(cols + ["us"]))


def test_find_capture_trace_prefers_ftrace_text(tmp_path, shipped):
    for name in ("report.txt.zst", "trace.dat", "trace.txt.zst"):
        shutil.copy(shipped / "tracedat_small" / name, tmp_path / name)
    assert find_capture_trace(tmp_path).name == "trace.txt.zst"
    (tmp_path / "trace.txt.zst").unlink()
    assert find_capture_trace(tmp_path).name == "trace.dat"


# --------------------------------------------------------------------------- counts vs grep


def _check_counts(r):
    assert r.stats["events"] == r.independent
    assert r.rows == r.independent_lines == r.stats["events_total"]


@pytest.mark.parametrize("name", SHIPPED_TEXT)
def test_shipped_counts_equal_independent_count(shipped, trace_results, name):
    r = trace_results(shipped / name)
    assert r.problems == {}
    _check_counts(r)


@pytest.mark.slow
@pytest.mark.corpus
@pytest.mark.parametrize("name", CORPUS_TEXT)
def test_corpus_counts_equal_independent_count(corpus, trace_results, name):
    path = corpus / name
    if not path.exists():
        pytest.skip(f"{path} not in the corpus")
    r = trace_results(path)
    _check_counts(r)
    # the only problem kind in the real corpus: d's 7 timestamp steps backwards (README 5.13)
    assert set(r.problems) <= {"time_backwards"}
