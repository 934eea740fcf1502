"""Parse time of a real trace.dat: kmemdes' reader vs ``trace-cmd report``, side by side.

Target: :func:`kmemdes.trace.tracedat.read_tracedat` (bytes -> canonical Polars
table) faster than ``trace-cmd report -i trace.dat > /dev/null`` on the corpus'
``g_tracecmd_compile/trace.dat`` (version 7, 1,144,643 events).  trace-cmd is
optional: without it only our time is printed.  The whole ``kmemdes convert`` to a
``.kmt`` is timed too (issue 16: >= 2x faster than the peer as a fresh process).  trace-cmd runs in a private
mount namespace (``unshare -m`` when available), because libtracefs mounts
tracefs on /sys/kernel/tracing when it finds none.

Run: ``.venv/bin/python benchmarks/bench_tracedat.py [FILE]``
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kmemdes.trace.tracedat import read_tracedat  # noqa: E402

CORPUS = Path(os.environ.get("KMEMDES_CORPUS", ROOT.parent / "shared" / "traces"))


def _best(fn, n=3):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = fn()
        times.append(time.perf_counter() - t0)
    return min(times), r


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else CORPUS / "g_tracecmd_compile" / "trace.dat"
    if not path.exists():
        path = ROOT / "traces" / "tracedat_small" / "trace.dat"
        print(f"corpus not found; using the shipped fixture {path}")
    ours, t = _best(lambda: read_tracedat(path))
    n = t.events.height
    print(f"{path}: {n:,} events, {path.stat().st_size / 2**20:.1f} MiB")
    print(f"kmemdes read_tracedat (in process, best of 3): {ours:.3f} s  ({n / ours / 1e6:.2f} M events/s)")
    script = f"from kmemdes.trace.tracedat import read_tracedat; read_tracedat({str(path)!r})"
    cold, _ = _best(lambda: subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT))
    print(f"kmemdes as a fresh process (imports included, best of 3): {cold:.3f} s")
    tc = shutil.which("trace-cmd")
    if tc is None:
        print("trace-cmd is not installed: no side-by-side figure (install it only to compare)")
        return 0
    cmd = [tc, "report", "-i", str(path)]
    if shutil.which("unshare") and os.geteuid() == 0:
        cmd = ["unshare", "-m"] + cmd
    def run_tc():
        with open(os.devnull, "wb") as null:
            subprocess.run(cmd, stdout=null, stderr=null, check=True)
    theirs, _ = _best(run_tc)
    print(f"trace-cmd report > /dev/null (best of 3):       {theirs:.3f} s  ({n / theirs / 1e6:.2f} M events/s)")
    verdict = "faster" if max(ours, cold) < theirs else "SLOWER"
    print(f"kmemdes is {theirs / ours:.1f}x trace-cmd in process, {theirs / cold:.1f}x as a fresh process: {verdict}")
    out = Path(tempfile.mkdtemp(prefix="kmemdes_bench_")) / "g.kmt"
    conv, _ = _best(lambda: subprocess.run([sys.executable, "-m", "kmemdes.cli", "convert", str(path), "-o", str(out),
                                            "--force"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL))
    shutil.rmtree(out.parent, ignore_errors=True)
    print(f"kmemdes convert -o .kmt as a fresh process (best of 3): {conv:.3f} s: {theirs / conv:.2f}x trace-cmd "
          f"(issue 16 target >= 2x: {'met' if theirs / conv >= 2 else 'not met'})")
    return 0 if verdict == "faster" else 1


if __name__ == "__main__":
    sys.exit(main())
