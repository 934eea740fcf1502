"""Test helper: parse each real trace once per session and keep only small results.

``TraceResults(path)`` reads a trace with :func:`kmemdes.trace.read_trace`,
computes its statistics and a .kmt round trip, and computes *independent*
event counts by scanning the decompressed text with ``bytes.count`` (no
parser involved).  The big event tables are dropped right away, so the
session holds a few dicts, not gigabytes.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import zstandard

from kmemdes.trace.kmt import read_kmt, write_kmt
from kmemdes.trace.reader import read_trace
from kmemdes.trace.stats import trace_stats

def independent_counts(path: Path, fmt: str, names) -> tuple[dict[str, int], int]:
    """Event records per name, counted like ``zstdcat FILE | grep -c``: plain
    ``bytes.count`` of ``": NAME: "`` (ftrace), ``": NAME:"`` (trace-cmd) or
    ``":NAME: "`` (perf) over the decompressed text; and the number of lines
    that are neither empty nor headers (``#...``, ``cpus=N``)."""
    pat = {"ftrace": b": %s: ", "trace-cmd-report": b": %s:", "perf-script": b":%s: "}[fmt]
    counts = dict.fromkeys(names, 0)
    lines = 0
    with open(path, "rb") as fh, zstandard.ZstdDecompressor(max_window_size=1 << 31).stream_reader(fh) as r:
        tail = b"\n"  # every line of buf starts after a newline
        while True:
            block = r.read(1 << 26)
            buf = tail + block
            if block:
                cut = buf.rfind(b"\n") + 1
                buf, tail = buf[:cut], buf[cut - 1:]
            elif not buf.endswith(b"\n"):
                buf += b"\n"
            for n in counts:
                counts[n] += buf.count(pat % n.encode())
            lines += buf.count(b"\n") - 1 - buf.count(b"\n\n") - buf.count(b"\n#") - buf.count(b"\ncpus=")
            if not block:
                break
    return counts, lines


class TraceResults:
    """Small facts about one real trace, computed once."""

    def __init__(self, path: Path):
        t0 = time.perf_counter()
        trace = read_trace(path)
        self.parse_s = time.perf_counter() - t0
        self.meta = {k: v for k, v in trace.meta.items() if k not in ("before", "after")}
        self.snapshot_names = {side: sorted(trace.meta.get(side, {})) for side in ("before", "after")}
        self.problems = trace.problems
        self.rows = trace.events.height
        self.stats = trace_stats(trace)
        with tempfile.TemporaryDirectory() as d:
            k = write_kmt(trace, Path(d) / "t.kmt")
            t0 = time.perf_counter()
            back = read_kmt(k)
            self.kmt_load_s = time.perf_counter() - t0
            self.kmt_equal = back.events.equals(trace.events)
            self.kmt_meta_equal = {x: v for x, v in back.meta.items() if x not in ("format", "source", "source_format", "converted_from")} == {
                x: v for x, v in trace.meta.items() if x not in ("format", "source")}
        del trace, back
        src = Path(self.meta["source"])
        names = set(self.stats["events"]) - {"LOST"}
        self.independent, self.independent_lines = independent_counts(src, self.meta["format"], sorted(names))


_CACHE: dict[str, TraceResults] = {}


def results(path: Path) -> TraceResults:
    key = str(Path(path).resolve())
    if key not in _CACHE:
        _CACHE[key] = TraceResults(Path(path))
    return _CACHE[key]
