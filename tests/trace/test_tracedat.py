"""kmemdes.trace.tracedat: the native trace.dat reader, checked against trace-cmd's own output.

Expected values come from text written by other programs from the same binary
files: ``trace-cmd report`` (``report.txt.zst``, parsed here with a plain regex)
and, for the shipped fixture, the kernel's own ``trace`` text read from the
instance just before ``trace-cmd extract`` (``trace.txt.zst``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmemdes.errors import KmemdesError
from kmemdes.trace.schema import EVENT_SCHEMA, EventKind
from kmemdes.trace._ringbuf import _PageLayout, _walk_pages
from kmemdes.trace.tracedat import _merge_order, read_tracedat

REPORT_LINE = re.compile(
    r"^(?:(?P<inst>[\w.-]+): )?\s*(?P<comm>.*)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<s>\d+)\.(?P<us>\d{6}): (?P<event>\w+):\s+(?P<body>.*)$"
)
KERNEL_LINE = re.compile(r"^\s*(?P<comm>.*)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\] (?P<flags>\S{5})\s+(?P<s>\d+)\.(?P<us>\d{6}): (?P<event>\w+): (?P<body>.*)$")


def _zst_lines(path: Path) -> list[str]:
    with open(path, "rb") as f:
        data = zstandard.ZstdDecompressor(max_window_size=1 << 31).stream_reader(f).read()
    return data.decode().split("\n")


def _report_events(lines: list[str]) -> list[str]:
    return [ln for ln in lines if ln and not ln.startswith("cpus=")]


def _num(text: str) -> int:
    if text == "(nil)":
        return 0
    return int(text, 16) if text.startswith("0x") else int(text)


def _check_row(row: dict, line: str) -> None:
    """Every value of one of our rows equals the value printed in its report line."""
    m = REPORT_LINE.match(line)
    assert m, line
    assert row["comm"] == m["comm"].strip(), line
    assert row["pid"] == int(m["pid"]) and row["cpu"] == int(m["cpu"]), line
    assert (row["ts"] + 500) // 1000 == int(m["s"]) * 1_000_000 + int(m["us"]), line  # report rounds to us
    assert row["event"] == m["event"], line
    body = m["body"]
    kv = dict(re.findall(r"(\w+)=(\S+)", body))
    ev = row["event"]
    if ev in ("kmalloc", "kmem_cache_alloc", "kfree", "kmem_cache_free"):
        assert body.startswith(f"({row['call_site']}) "), line  # the kmem plugin's prefix
        assert row["call_site"] == kv["call_site"], line
        assert row["ptr"] == _num(kv["ptr"]), line
        if "name" in kv:
            assert row["cache"] == kv["name"], line
        if ev in ("kmalloc", "kmem_cache_alloc"):
            assert row["bytes_req"] == int(kv["bytes_req"]) and row["bytes_alloc"] == int(kv["bytes_alloc"]), line
            assert row["gfp_flags"] == kv["gfp_flags"] and row["node"] == int(kv["node"]), line
            assert row["accounted"] == (kv["accounted"] == "true"), line
    elif ev.startswith("mm_page"):
        assert row["page"] == _num(kv["page"]) and max(row["pfn"], 0) == _num(kv["pfn"]), line
        assert row["order"] == int(kv.get("order", kv.get("alloc_order", "0"))), line
        for col in ("migratetype", "percpu_refill", "gfp_flags"):
            if col in kv:
                assert str(row[col]) == kv[col], line
    elif ev == "alloc_vmap_area":
        assert row["va_start"] == int(re.search(r"va_start: (\d+)", body).group(1)), line  # decimal
        for col in ("size", "align", "vstart", "vend", "failed"):
            assert row[col] == _num(kv[col]), line
    elif ev == "free_vmap_area_noflush":
        assert (row["va_start"], row["nr_lazy"], row["nr_lazy_max"]) == tuple(_num(kv[k]) for k in ("va_start", "nr_lazy", "nr_lazy_max")), line
    else:
        assert row["args"] == body, line


# ------------------------------------------------------------------ the shipped fixture


@pytest.fixture(scope="module")
def small(shipped):
    d = shipped / "tracedat_small"
    return d, read_tracedat(d / "trace.dat")


def test_fixture_meta_and_schema(small):
    d, t = small
    assert t.events.schema == pl.Schema(EVENT_SCHEMA)
    assert t.meta["format"] == "trace.dat-v7" and t.meta["cpus"] == 2 and t.meta["trace_clock"] == "local"
    assert t.meta["uname"].startswith("Linux") and t.problems == {}
    assert t.events["line"].to_list() == list(range(1, t.events.height + 1))


def test_fixture_v6_equals_v7(small):
    d, t = small
    t6 = read_tracedat(d / "trace.v6.dat.zst")  # zstd-compressed as a whole file
    assert t6.meta["format"] == "trace.dat-v6"
    assert t6.events.equals(t.events)


def test_fixture_every_row_equals_report(small):
    d, t = small
    lines = _report_events(_zst_lines(d / "report.txt.zst"))
    assert len(lines) == t.events.height
    for row, line in zip(t.events.iter_rows(named=True), lines):
        _check_row(row, line[line.index(": ") + 2 :])


def test_fixture_every_row_equals_kernel_text(small):
    """The kernel's own text of the same buffer: flags, ts, pid, cpu and values agree."""
    d, t = small
    lines = [ln for ln in _zst_lines(d / "trace.txt.zst") if ln and not ln.startswith("#")]
    assert len(lines) == t.events.height
    for row, line in zip(t.events.iter_rows(named=True), lines):
        m = KERNEL_LINE.match(line)
        assert m, line
        assert (row["pid"], row["cpu"], row["flags"]) == (int(m["pid"]), int(m["cpu"]), m["flags"]), line
        assert (row["ts"] + 500) // 1000 == int(m["s"]) * 1_000_000 + int(m["us"]), line
        body = m["body"] + " "
        if m["event"] == "tracing_mark_write":
            assert row["kind"] == EventKind.MARKER and row["args"] == "tracing_mark_write: " + m["body"], line
            continue
        assert row["event"] == m["event"], line
        if row["call_site"] is not None:
            assert f"call_site={row['call_site']}/0x" in body, line  # the kernel adds /0xsize
        if row["ptr"] is not None:
            assert f"ptr={row['ptr']:016x} " in body, line  # nohash-ptr: raw pointers
        if row["pfn"] is not None:
            assert f"pfn=0x{row['pfn']:x} " in body, line
        if row["gfp_flags"] is not None:
            assert f"gfp_flags={row['gfp_flags']} " in body, line
        if row["cache"] is not None:
            assert f"name={row['cache']} " in body, line


def test_fixture_counts_and_markers(small):
    d, t = small
    text = "\n".join(_zst_lines(d / "report.txt.zst"))
    counts = dict(t.events.group_by("event").len().iter_rows())
    for ev, n in counts.items():
        assert text.count(f": {ev}:") == n, ev
    marks = t.events.filter(kind=EventKind.MARKER)["args"].to_list()
    assert marks == ["tracing_mark_write: capture_start name=tracedat_small", "tracing_mark_write: capture_end name=tracedat_small rc=0"]


def test_not_a_tracedat(tmp_path):
    p = tmp_path / "x.dat"
    p.write_bytes(b"# tracer: nop\n")
    with pytest.raises(KmemdesError, match=r"x.dat: byte 0: not a trace-cmd data file"):
        read_tracedat(p)
    with pytest.raises(KmemdesError, match="cannot read"):
        read_tracedat(tmp_path / "missing.dat")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_files_never_traceback(shipped, tmp_path, data):
    """Random truncations and byte flips: a Trace (problems counted) or one KmemdesError."""
    raw = bytearray((shipped / "tracedat_small" / "trace.dat").read_bytes())
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 8))):
            # flips in the ring-buffer pages (second half) and in the metadata
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= data.draw(st.integers(1, 255))
    p = tmp_path / "damaged.dat"
    p.write_bytes(bytes(raw))
    strict = data.draw(st.booleans())
    try:
        t = read_tracedat(p, strict=strict)
    except KmemdesError as e:
        assert str(e).startswith(f"{p}: byte "), str(e)
        return
    assert set(t.events.columns) == set(EVENT_SCHEMA)
    if strict:
        assert t.problems == {}


def test_damaged_page_counted_not_fatal(shipped, tmp_path):
    """A corrupted event header inside the ring-buffer data is a counted problem (strict: an error)."""
    raw = bytearray((shipped / "tracedat_small" / "trace.v6.dat.zst").read_bytes())
    plain = zstandard.ZstdDecompressor().stream_reader(bytes(raw)).read()
    good = read_tracedat(shipped / "tracedat_small" / "trace.v6.dat.zst")
    # the v6 file keeps its pages uncompressed: break the first event header of the last page
    bad = bytearray(plain)
    last_page = (len(bad) // 4096 - 1) * 4096
    bad[last_page + 16 : last_page + 20] = (0xFFFFFFE0).to_bytes(4, "little")  # type_len 0, length 0
    p = tmp_path / "bad.dat"
    p.write_bytes(bytes(bad))
    t = read_tracedat(p)
    assert "corrupt_ring_buffer_event" in t.problems and t.events.height < good.events.height
    with pytest.raises(KmemdesError, match=r"bad.dat: byte \d+: corrupt_ring_buffer_event"):
        read_tracedat(p, strict=True)


def _greedy(streams):
    """tracecmd_iterate_events_multi: take the smallest head, the first stream on ties."""
    heads = [0] * len(streams)
    out = []
    while True:
        best = None
        for s, ts in enumerate(streams):
            if heads[s] < len(ts) and (best is None or ts[heads[s]] < streams[best][heads[best]]):
                best = s
        if best is None:
            return out
        out.append((best, heads[best]))
        heads[best] += 1


@given(st.lists(st.lists(st.integers(0, 20), max_size=12), min_size=1, max_size=4), st.booleans())
def test_merge_order_is_greedy_merge(streams, monotonic):
    if monotonic:
        streams = [sorted(s) for s in streams]
    ts = np.array([x for s in streams for x in s], np.uint64)
    sid = np.array([i for i, s in enumerate(streams) for _ in s], np.int64)
    base = np.cumsum([0] + [len(s) for s in streams])
    want = [base[s] + k for s, k in _greedy(streams)]
    assert _merge_order(ts, sid).tolist() == want


def _walk_one_by_one(data: bytes, big: bool, page_size: int, npages: int):
    """kbuffer_next_event, one slot at a time: (payload offset, length, ts, page, lost) per row,
    a LOST row first on a page flagged MISSING_EVENTS, and the offsets of the bad pages."""
    order = "big" if big else "little"
    u = lambda at, n: int.from_bytes(data[at : at + n], order)  # noqa: E731
    rows, bad = [], []
    for pg in range(npages):
        base = pg * page_size
        t = u(base, 8)
        commit = u(base + 8, 8)
        size = commit & ((1 << 27) - 1)
        if size > page_size - 16:
            size = 0
        if commit & (1 << 31):
            n = u(base + 16 + size, 8) if commit & (1 << 30) and size + 8 <= page_size - 16 else -1
            n -= (1 << 64) if n >= 1 << 63 else 0  # an int64 column
            rows.append((0, 0, t, pg, -1 if n == 0 else n))
        p, end = base + 16, base + 16 + size
        while p < end:
            w, a0 = u(p, 4), u(p + 4, 4)
            tl, delta = w & 31, w >> 5
            ext = (a0 << 27) + delta
            if tl == 31:
                t = ext | (t & (0xF8 << 56))
            else:
                t = (t + (ext if tl == 30 else delta)) & ((1 << 64) - 1)
            if tl <= 28:
                off, ln = (p + 8, (a0 - 4 + 3) & ~3) if tl == 0 else (p + 4, 4 * tl)
                nxt = off + ln
                if (tl == 0 and a0 < 4) or nxt > end:
                    bad.append(base)
                    break
                rows.append((off, ln, t, pg, 0))
            elif tl == 29:
                nxt = p + 4 + a0
                if a0 & 3:
                    bad.append(base)
                    break
            else:
                nxt = p + 8
                if nxt > end:
                    bad.append(base)
                    break
            p = nxt
    return rows, bad


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans())
def test_page_walk_equals_one_by_one(seed, big):
    """The lock-step page walk gives the rows a slot-by-slot walk gives, on random pages
    with every kind of slot (data, long data, padding, TIME_EXTEND, TIME_STAMP, garbage)."""
    rnd = np.random.default_rng(seed)
    order = "big" if big else "little"
    ps, npages = 256, int(rnd.integers(1, 6))
    pages = []
    for _ in range(npages):
        body = b""
        while len(body) < ps - 24 and rnd.random() < 0.95:
            kind, delta = rnd.random(), int(rnd.integers(0, 1 << 27))
            if kind < 0.5:
                tl = int(rnd.integers(1, 6))
                body += ((delta << 5) | tl).to_bytes(4, order) + bytes(4 * tl)
            elif kind < 0.8:
                tl = int(rnd.choice([0, 29, 30, 31]))
                a0 = int(rnd.choice([0, 3, 4, 8, 12, int(rnd.integers(0, 40))]))
                body += ((delta << 5) | tl).to_bytes(4, order) + a0.to_bytes(4, order) + bytes(max(0, a0 - 4) if tl in (0, 29) else 0)
            else:
                body += int(rnd.integers(0, 1 << 32)).to_bytes(4, order)
        commit = len(body) if rnd.random() < 0.8 else int(rnd.integers(0, ps))
        commit |= int(rnd.choice([0, 0, 0, 1 << 31, 3 << 30]))
        head = int(rnd.integers(0, 1 << 62)).to_bytes(8, order) + commit.to_bytes(8, order)
        pages.append((head + body[: ps - 16]).ljust(ps, b"\0"))
    data = b"".join(pages) + bytes(16)
    lay = _PageLayout(0, 8, 8, 16)
    lay.page_size_total = ps
    problems: dict = {}
    got = _walk_pages(np.frombuffer(data, np.uint8), big, lay, np.arange(npages) * ps, np.zeros(npages, np.int64), problems)
    rows, bad = _walk_one_by_one(data, big, ps, npages)
    want = [list(c) for c in zip(*rows)] if rows else [[]] * 5
    assert [g.tolist() for g in got] == want
    assert problems.get("corrupt_ring_buffer_event", {}).get("count", 0) == len(bad)


# ------------------------------------------------------------------ the corpus (g_tracecmd_compile)


@pytest.fixture(scope="module")
def g_trace(corpus):
    return corpus / "g_tracecmd_compile", read_tracedat(corpus / "g_tracecmd_compile" / "trace.dat")


@pytest.mark.corpus
@pytest.mark.slow
def test_g_counts_equal_report(g_trace):
    d, t = g_trace
    text = "\n".join(_zst_lines(d / "report.txt.zst"))
    counts = dict(t.events.group_by("event").len().iter_rows())
    assert sum(counts.values()) == t.events.height == 1_144_643
    for ev, n in counts.items():
        assert text.count(f": {ev}:") == n, ev
    assert t.problems == {}


@pytest.mark.corpus
@pytest.mark.slow
def test_g_v6_equals_v7(g_trace):
    d, t = g_trace
    assert read_tracedat(d / "trace.v6.dat.zst").events.equals(t.events)


@pytest.mark.corpus
@pytest.mark.slow
def test_g_sampled_rows_equal_report(g_trace):
    d, t = g_trace
    lines = _report_events(_zst_lines(d / "report.txt.zst"))
    assert len(lines) == t.events.height
    ev = t.events
    idx = sorted(set(range(0, ev.height, 1000)) | set(np.flatnonzero((ev["event"] == "alloc_vmap_area").to_numpy()).tolist()))
    rows = ev[idx].iter_rows(named=True)
    for i, row in zip(idx, rows):
        line = lines[i]
        assert line.startswith("corpus_tc_16594: ")
        _check_row(row, line[len("corpus_tc_16594: ") :])
