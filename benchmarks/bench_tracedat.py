"""Parse time of a real trace.dat: kmemdes' reader vs ``trace-cmd report``, side by side.

Target: :func:`kmemdes.trace.tracedat.read_tracedat` (bytes -> canonical Polars
table) faster than ``trace-cmd report -i trace.dat > /dev/null`` on the corpus'
``g_tracecmd_compile/trace.dat`` (version 7, 1,144,643 events).  trace-cmd is
optional: without it only our time is printed.  The whole ``kmemdes convert`` to a
``.kmt`` is timed too (issue 16: >= 2x faster than the peer as a fresh process).  trace-cmd runs in a private
mount namespace (``unshare -m`` when available), because libtracefs mounts
tracefs on /sys/kernel/tracing when it finds none.

The whole commands are timed side by side, interleaved (convert, trace-cmd, convert,
trace-cmd, ...; ``BENCH_REPS`` rounds, default 5), best and median of each, with their CPU
time and the load average at the start and the end: on a shared machine, read the ratio
of the best runs.  ``BENCH_BASE=DIR`` adds the convert of another kmemdes tree (``DIR``
holding its ``kmemdes`` package, e.g. ``git archive main kmemdes | tar -x -C DIR``) to each
round, for a before/after comparison in the same run.

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


def _load() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def _timed(cmd: list, env: dict | None = None) -> tuple[float, float]:
    """(wall, CPU seconds: user + system) of one fresh process, output discarded."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tempfile.gettempdir(),
                         env={**os.environ, **(env or {})})
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"bench_tracedat: {' '.join(map(str, cmd))} failed")
    return wall, ru.ru_utime + ru.ru_stime


def _whole_commands(path: Path, tc_cmd: list) -> None:
    """``kmemdes convert`` of ``path`` vs ``trace-cmd report`` as fresh processes, interleaved."""
    import statistics

    reps = int(os.environ.get("BENCH_REPS", "5"))
    out = Path(tempfile.mkdtemp(prefix="kmemdes_bench_"))
    convert = [sys.executable, "-m", "kmemdes.cli", "convert", str(path.resolve()), "--force", "-o"]
    jobs = {"kmemdes convert": (convert + [str(out / "g.kmt")], {"PYTHONPATH": str(ROOT)})}
    base = os.environ.get("BENCH_BASE")
    if base:
        jobs[f"kmemdes convert ({base})"] = (convert + [str(out / "base.kmt")], {"PYTHONPATH": base})
    jobs["trace-cmd report"] = (tc_cmd, None)
    print(f"whole commands, {reps} interleaved rounds; load average {_load()} at the start")
    runs: dict = {name: [] for name in jobs}
    for _ in range(reps):
        for name, (cmd, env) in jobs.items():
            runs[name].append(_timed(cmd, env))
    print(f"load average {_load()} at the end")
    for name, r in runs.items():
        walls = [w for w, _ in r]
        print(f"  {name:40s} best {min(walls):6.3f} s, median {statistics.median(walls):6.3f} s, "
              f"CPU best {min(c for _, c in r):6.3f} s")
    shutil.rmtree(out, ignore_errors=True)
    peer = min(w for w, _ in runs["trace-cmd report"])
    for name in jobs:
        if name.startswith("kmemdes"):
            ratio = peer / min(w for w, _ in runs[name])
            print(f"{name}: {ratio:.2f}x trace-cmd report, best of each (issue 16 target >= 2x: "
                  f"{'met' if ratio >= 2 else 'not met'})")


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else CORPUS / "g_tracecmd_compile" / "trace.dat"
    if not path.exists():
        path = ROOT / "traces" / "tracedat_small" / "trace.dat"
        print(f"corpus not found; using the shipped fixture {path}")
    path = path.resolve()
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
    _whole_commands(path, cmd)
    return 0 if verdict == "faster" else 1


if __name__ == "__main__":
    sys.exit(main())
