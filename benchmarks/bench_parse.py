"""Text trace parsing throughput, peak memory, and .kmt load speed.

Runs on ../shared/traces/b_compile_nohash (2.69 M events, 395 MiB of trace_pipe
text, zstd-compressed); skips with a message when the corpus is absent.  Each
measurement runs in a fresh child process so that its peak RSS is its own:

1. ``read_trace`` of the capture with the default thread pool (wall clock);
2. the same with ``POLARS_MAX_THREADS=1`` (decompression in its own thread);
3. the same pinned to one core (``sched_setaffinity``: decompression shares it);
4. parsing alone, one thread: the text decompressed first, then fed to
   :class:`kmemdes.trace.text.TextParser` -- the "text to event table" figure;
5. the same with the express path switched off (the general path alone);
6. loading the ``.kmt`` written from it (and checking the round trip).

Targets (issue 4): >= 2 M lines/s on one core, bounded memory (a 400 MB text
must not need its size in RAM on top of the event table), .kmt >= 5x faster
than parsing the text.

    .venv/bin/python benchmarks/bench_parse.py [TRACE]

Measured on the 2-vCPU reference VM (AMD EPYC, quiet), b_compile_nohash:
parsing alone 1.54 s = 1.75 M lines/s (256 MiB/s) on one thread, the general
path alone 1.80 s (1.50 M lines/s; the express path 1.17x); from the .zst,
one Polars thread 1.69 s (1.59 M lines/s), pinned to one core 2.12 s
(1.27 M lines/s: zstd and chunking cost ~0.6 s of CPU), default threads
1.68 s.  Side by side with a worktree of the code before the express path
and the reader's single-copy chunks (2d58db8): parsing alone 1.83-1.95 s
against 1.54-1.60 s (1.2x), from the .zst with one Polars thread 2.09-2.16 s
against 1.69-1.79 s, pinned 2.48 s against 2.12-2.18 s.  Peak RSS (VmHWM)
0.95-0.97 GiB reading the .zst, for an event table of 0.76 GiB; .kmt 9.3 MiB,
written in 0.55 s, loaded in 0.25 s (6.6x).  The 2 M lines/s target is not
met: what is left is ~100 ms of Polars string kernels per 215 k-line chunk
(cutting the line, converting the fields, gathering repeated values), about
a third of it page faults and cache misses on fresh buffers.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
CORPUS = Path(os.environ.get("KMEMDES_CORPUS", ROOT.parent / "shared" / "traces"))


_WIDTH = {"Int8": 1, "UInt8": 1, "Int16": 2, "UInt16": 2, "Int32": 4, "UInt32": 4, "Int64": 8, "UInt64": 8}


def frame_bytes(df) -> int:
    """Memory of an event table as Polars holds it: fixed-width values and
    validity bitmaps, 16-byte string views plus the bytes of strings longer
    than 12 (``estimated_size`` leaves the views out)."""
    import polars as pl

    total = 0
    n = df.height
    for name, dtype in df.schema.items():
        s = df[name]
        if dtype == pl.String:
            lens = s.str.len_bytes()
            total += 16 * n + int(lens.filter(lens > 12).sum() or 0)
        elif dtype == pl.Boolean:
            total += n // 8
        else:
            total += _WIDTH[str(dtype)] * n
        total += n // 8
    return total


def _child(phase: str, path: str, kmt: str) -> None:
    """One measurement; prints a JSON line."""
    from _machine import peak_rss_mb

    from kmemdes.trace import text
    from kmemdes.trace.kmt import write_kmt
    from kmemdes.trace.reader import Trace, detect_file, find_capture_trace, iter_text_chunks, read_trace

    if phase == "pinned":  # every thread of the process, decompression included, on one core
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    if phase == "general":  # the general path only (the express path off), for comparison
        text._EXPRESS = False
    if phase in ("text-only", "general"):  # the text decompressed first: parsing alone is timed
        src = find_capture_trace(Path(path)) if Path(path).is_dir() else Path(path)
        chunks = list(iter_text_chunks(src, detect_file(src)))
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if phase in ("text-only", "general"):
        parser = text.TextParser(path)
        for c in chunks:
            parser.feed(c)
        t = Trace(*parser.finish())
        t.meta["text_bytes"] = sum(map(len, chunks))
    else:
        t = read_trace(kmt if phase == "kmt" else path)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    out = {
        "wall": wall,
        "cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
        "rss_mb": peak_rss_mb(),  # VmHWM: ru_maxrss would carry the parent's mark
        "rows": t.events.height,
        "lines": t.meta.get("lines", {}).get("total", t.events.height),
        "text_bytes": t.meta.get("text_bytes"),
        "frame_mb": frame_bytes(t.events) / 2**20,
        "problems": t.problems,
    }
    if phase == "parse":
        t1 = time.perf_counter()
        write_kmt(t, kmt)
        out["kmt_write"] = time.perf_counter() - t1
        out["kmt_mb"] = os.path.getsize(kmt) / 2**20
    if phase == "kmt":
        ref = read_trace(path)
        out["equal"] = ref.events.equals(t.events)
    print(json.dumps(out))


def _run(phase: str, path: Path, kmt: Path, env: dict | None = None) -> dict:
    res = subprocess.run(
        [sys.executable, __file__, "--child", phase, str(path), str(kmt)],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False,
    )
    if res.returncode:
        sys.exit(f"bench_parse: {phase} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    from _machine import describe

    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(*sys.argv[2:5])
        return
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else CORPUS / "b_compile_nohash"
    if not path.exists():
        print(f"bench_parse: skipped, {path} not found (set KMEMDES_CORPUS)")
        return
    print(f"machine: {describe()}; nproc {os.cpu_count()}")
    src = path / "trace.txt.zst" if path.is_dir() else path
    print(f"trace:   {path} ({src.stat().st_size / 2**20:.1f} MiB on disk)")
    with tempfile.TemporaryDirectory() as d:
        kmt = Path(d) / "t.kmt"
        one_thread = {"POLARS_MAX_THREADS": "1"}
        par = _run("parse", path, kmt)
        one = _run("one-core", path, Path(d) / "unused.kmt", one_thread)
        pinned = _run("pinned", path, Path(d) / "unused.kmt", one_thread)
        alone = _run("text-only", path, Path(d) / "unused.kmt", one_thread)
        general = _run("general", path, Path(d) / "unused.kmt", one_thread)
        load = _run("kmt", path, kmt)
    lines, mib = par["lines"], (par["text_bytes"] or 0) / 2**20
    print(f"lines:   {lines:,} ({mib:.0f} MiB of text), {par['rows']:,} rows, problems {par['problems'] or 'none'}")
    for name, r in (("read_trace (default threads)", par), ("read_trace (one Polars thread)", one),
                    ("read_trace (pinned to 1 core)", pinned), ("parse text (one thread)", alone),
                    ("  general path only", general)):
        print(
            f"{name:30s} {r['wall']:6.2f} s wall  {lines / r['wall'] / 1e6:5.2f} M lines/s  {mib / r['wall']:6.1f} MiB/s"
            f"  | {r['cpu']:6.2f} s CPU  {lines / r['cpu'] / 1e6:5.2f} M lines/CPU-s"
            f"  | peak RSS {r['rss_mb']:6.0f} MiB (event table {r['frame_mb']:.0f} MiB)"
        )
    print(f"{'.kmt write':30s} {par['kmt_write']:6.2f} s  ({par['kmt_mb']:.1f} MiB)")
    print(
        f"{'.kmt load':30s} {load['wall']:6.2f} s wall  | peak RSS {load['rss_mb']:6.0f} MiB"
        f"  | speedup vs text {par['wall'] / load['wall']:.1f}x (target >= 5x)  round trip exact: {load['equal']}"
    )
    print(f"express path vs general path alone: {general['wall'] / alone['wall']:.2f}x")
    print(
        "targets: >= 2.0 M lines/s parsing text on one core -> "
        f"{'met' if lines / alone['wall'] >= 2e6 else 'NOT met'} ({lines / alone['wall'] / 1e6:.2f}; "
        f"{lines / one['wall'] / 1e6:.2f} from the .zst with decompression on a second thread, "
        f"{lines / pinned['wall'] / 1e6:.2f} with decompression on the same core); "
        f"kmt >= 5x -> {'met' if par['wall'] / load['wall'] >= 5 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
