"""Whole commands as a user runs them, side by side with the peer tools, in one run.

Every figure is a fresh process (start-up and imports included), timed by wall clock,
with its peak RSS (``ru_maxrss`` of the child from ``wait4``; this parent imports
nothing big, so the child's own mark is what is left).  Each command runs ``REPS``
times (default 3, ``BENCH_REPS``), interleaved with the others so that the load of a
shared machine spreads over all of them, and the best run is kept; ratios between
figures of the same run are more telling than seconds.

Corpus (../shared/traces, or ``KMEMDES_CORPUS``; skipped when absent):

- b_compile_nohash/trace.txt.zst (ftrace text, 2.69 M lines): ``kmemdes convert``
  with 1 parsing thread pinned to one core (``taskset``), 1, 2 and 4 threads,
  ``kmemdes stats``, ``kmemdes replay`` (mirror) from the text and from the .kmt;
  peer: ``zstdcat | wc -l``;
- g_tracecmd_compile/trace.dat (1.14 M events): ``kmemdes convert``; peer:
  ``trace-cmd report > /dev/null`` (in a private mount namespace, as
  bench_tracedat.py does); ``perf kmem stat`` needs a perf.data, which the corpus
  does not have: reported as skipped.

Targets (issue 16): text >= 2 M lines/s end to end, scaling with cores; trace.dat
conversion >= 2x faster than ``trace-cmd report``; mirror replay from .kmt
>= 1.5 M events/s; a text replay of b_compile_nohash <= 1 GiB peak.

    .venv/bin/python benchmarks/bench_commands.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
CORPUS = Path(os.environ.get("KMEMDES_CORPUS", ROOT.parent / "shared" / "traces"))
KMEMDES = [sys.executable, "-m", "kmemdes.cli"]


def _run(cmd, env: dict | None = None, shell: bool = False) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one run of ``cmd`` (output discarded)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, shell=shell, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env={**os.environ, **(env or {})}, cwd=tempfile.gettempdir())
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        sys.exit(f"bench_commands: {cmd if isinstance(cmd, str) else ' '.join(map(str, cmd))} failed:\n"
                 f"{err.decode(errors='replace')[-2000:]}")
    return wall, ru.ru_maxrss / 1024


def _load() -> str:
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"


def main() -> None:
    from _machine import describe

    b = CORPUS / "b_compile_nohash"
    g = CORPUS / "g_tracecmd_compile" / "trace.dat"
    if not b.exists():
        print(f"bench_commands: skipped, {b} not found (set KMEMDES_CORPUS)")
        return
    reps = int(os.environ.get("BENCH_REPS", "3"))
    cpus = len(os.sched_getaffinity(0))
    print(f"machine: {describe()}; {cpus} CPUs for this process; load average {_load()} at the start")
    zst = b / "trace.txt.zst"
    lines = int(subprocess.run(f"zstdcat {zst} | wc -l", shell=True, capture_output=True, text=True).stdout)
    tmp = Path(tempfile.mkdtemp(prefix="kmemdes_bench_"))
    kmt = tmp / "b.kmt"
    subprocess.run([*KMEMDES, "convert", str(b), "-o", str(kmt)], check=True, capture_output=True)
    tc = shutil.which("trace-cmd")
    tc_cmd = None
    if tc and g.exists():
        tc_cmd = [tc, "report", "-i", str(g)]
        if shutil.which("unshare") and os.geteuid() == 0:
            tc_cmd = ["unshare", "-m"] + tc_cmd
    pin = ["taskset", "-c", str(min(os.sched_getaffinity(0)))] if shutil.which("taskset") else None

    jobs: dict[str, tuple] = {  # name -> (command, env, shell, units, unit name)
        "zstdcat | wc -l (peer)": (f"zstdcat {zst} | wc -l", None, True, lines, "lines"),
    }
    if pin:
        jobs["convert text, 1 thread, 1 core"] = (
            [*pin, *KMEMDES, "convert", str(b), "-o", str(tmp / "p.kmt")], {"KMEMDES_WORKERS": "1"}, False, lines,
            "lines")
    for w in (1, 2, 4):
        jobs[f"convert text, {w} thread{'s' if w > 1 else ''}"] = (
            [*KMEMDES, "convert", str(b), "-o", str(tmp / f"c{w}.kmt")], {"KMEMDES_WORKERS": str(w)}, False, lines,
            "lines")
    jobs["stats text"] = ([*KMEMDES, "stats", str(b)], None, False, lines, "lines")
    jobs["replay text (mirror)"] = ([*KMEMDES, "replay", str(b), "-o", str(tmp / "rt")], None, False, lines, "lines")
    jobs["replay .kmt (mirror)"] = ([*KMEMDES, "replay", str(kmt), "-o", str(tmp / "rk")], None, False, lines,
                                    "events")
    if g.exists():
        jobs["convert trace.dat"] = ([*KMEMDES, "convert", str(g), "-o", str(tmp / "g.kmt")], None, False,
                                     1_144_643, "events")
    if tc_cmd:
        jobs["trace-cmd report (peer)"] = (tc_cmd, None, False, 1_144_643, "events")
    best: dict[str, tuple[float, float]] = {}
    for _ in range(reps):
        for name, (cmd, env, shell, _, _) in jobs.items():
            wall, rss = _run(cmd, env, shell)
            old = best.get(name)
            best[name] = (min(wall, old[0]) if old else wall, max(rss, old[1]) if old else rss)
    print(f"load average {_load()} at the end; best of {reps} runs each")
    print(f"{'command':34s} {'wall s':>7s} {'M units/s':>10s} {'peak RSS':>9s}")
    for name, (wall, rss) in best.items():
        units, unit = jobs[name][3], jobs[name][4]
        print(f"{name:34s} {wall:7.2f} {units / wall / 1e6:7.2f} M {unit:6s} {rss:6.0f} MiB")
    print("perf kmem stat (peer): skipped (needs a perf.data; the corpus has perf script text only)")
    one = best["convert text, 1 thread"][0]
    for w in (2, 4):
        print(f"convert text, {w} threads vs 1: {one / best[f'convert text, {w} threads'][0]:.2f}x faster"
              f"{' (more threads than the ' + str(cpus) + ' CPUs)' if w > cpus else ''}")
    print(f"convert text vs zstdcat | wc -l: {best['convert text, 2 threads'][0] / best['zstdcat | wc -l (peer)'][0]:.1f}x "
          "the time")
    rate = lines / min(best[f"convert text, {w} thread{'s' if w > 1 else ''}"][0] for w in (1, 2, 4)) / 1e6
    print(f"target text >= 2 M lines/s end to end: {'met' if rate >= 2 else 'NOT met'} ({rate:.2f})")
    if tc_cmd:
        r = best["trace-cmd report (peer)"][0] / best["convert trace.dat"][0]
        print(f"target trace.dat convert >= 2x faster than trace-cmd report: {'met' if r >= 2 else 'NOT met'} "
              f"({r:.2f}x)")
    rk = lines / best["replay .kmt (mirror)"][0] / 1e6
    print(f"target mirror replay from .kmt >= 1.5 M events/s (whole command): {'met' if rk >= 1.5 else 'NOT met'} "
          f"({rk:.2f})")
    rt = best["replay text (mirror)"][1]
    print(f"target text replay peak RSS <= 1 GiB: {'met' if rt <= 1024 else 'NOT met'} ({rt:.0f} MiB)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
