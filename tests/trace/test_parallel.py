"""Chunks parsed on several threads give what one thread gives (kmemdes.trace._parallel)."""

from __future__ import annotations

from pathlib import Path

import pytest
import zstandard

from kmemdes.errors import KmemdesError
from kmemdes.trace._parallel import _lines_in, default_workers, parse_chunks
from kmemdes.trace.text import ProblemLog, TextParser

ROOT = Path(__file__).resolve().parents[2]


def _text(name: str) -> bytes:
    return zstandard.ZstdDecompressor().decompressobj().decompress((ROOT / "traces" / name / "trace.txt.zst").read_bytes())


def _chunks(data: bytes, size: int) -> list[bytes]:
    """Whole-line chunks of about ``size`` bytes (as the reader cuts them)."""
    out, i = [], 0
    while i < len(data):
        j = data.rfind(b"\n", i, i + size)
        j = len(data) - 1 if j < 0 or i + size >= len(data) else j
        out.append(data[i:j + 1])
        i = j + 1
    return out


def _parse(chunks: list[bytes], workers: int, columns=None):
    parser = TextParser("t.txt", columns=columns)
    end = parse_chunks(parser, iter(chunks), workers)
    assert end is None
    return parser.finish()


def _same(a, b) -> None:
    assert a[0].equals(b[0])
    assert a[1] == b[1]
    assert a[2] == b[2]


@pytest.mark.parametrize("workers", [2, 3])
def test_many_workers_give_the_one_thread_table(workers):
    # small chunks: events first met in different chunks, learnt by workers on their own
    chunks = _chunks(_text("b_compile_head"), 1 << 20)
    assert len(chunks) > 4
    _same(_parse(chunks, 1), _parse(chunks, workers))


def test_problems_meta_and_relearnt_events_match():
    data = _text("a_idle_stream").splitlines(keepends=True)
    kfree = [ln for ln in data if b" kfree: " in ln]
    rest = [ln for ln in data if b" kfree: " not in ln]
    bad = [b"garbage line without a header\n", b"\x01\x02 binary\n", b"# tracer: nop\n", b"\n"]
    # chunk 1 teaches kfree only; chunks 2 and 3 both meet the other events, so the worker of
    # chunk 3 learns them on its own while chunk 2 teaches the main parser: chunk 3 is parsed again
    chunks = [b"".join(kfree[:400]), b"".join(rest[:3000] + bad), b"".join(rest[3000:6000] + bad[::-1]),
              b"".join(kfree[400:] + rest[6000:])]
    one = _parse(chunks, 1)
    assert one[2]  # the bad lines are counted
    _same(one, _parse(chunks, 2))
    _same(one, _parse(chunks, 4))
    cols = ("ts", "kind", "pfn")
    _same(_parse(chunks, 1, cols), _parse(chunks, 2, cols))


def test_strict_stops_at_the_first_problem_and_an_end_item_is_returned():
    good = _text("a_idle_stream")[:20000]
    good = good[: good.rfind(b"\n") + 1]
    with pytest.raises(KmemdesError, match=r"t.txt:\d+: "):
        parse_chunks(TextParser("t.txt", strict=True), iter([good, b"not a trace line\n", good]), 4)
    parser = TextParser("t.txt")
    assert parse_chunks(parser, iter([good, good, "end", good]), 2) == "end"
    assert parser.line_counts["total"] == 2 * good.count(b"\n")


def test_lines_in_and_default_workers(monkeypatch):
    assert _lines_in(b"a\nb\n") == 2 and _lines_in(b"a\nb") == 2 and _lines_in(b"\n") == 1
    monkeypatch.setenv("KMEMDES_WORKERS", "3")
    assert default_workers() == 3
    monkeypatch.setenv("KMEMDES_WORKERS", "x")
    assert default_workers() >= 1


def test_problem_logs_merge_as_if_added_in_order():
    seq, a, b = ProblemLog("t"), ProblemLog("t"), ProblemLog("t")
    adds = [("bad_field", [5, 9], "e5"), ("unknown_gfp", [6], "g6"), ("bad_field", [2], "e2"),
            ("bad_field", [2, 30], "e2b"), ("unknown_gfp", [1], "g1")]
    for i, (k, lines, ex) in enumerate(adds):
        seq.add(k, lines, ex, f"m {ex}")
        (a if i < 2 else b).add(k, lines, ex, f"m {ex}")
    a.merge(b)
    assert a.as_dict() == seq.as_dict()
    assert a._first == seq._first
