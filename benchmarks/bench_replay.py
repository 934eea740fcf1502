"""Replay throughput and peak memory on the real compile trace (mirror and policy modes).

Runs on ../shared/traces/b_compile_nohash (2.69 M events); skips with a message when the
corpus is absent.  Each measurement runs in a fresh child process (its own peak RSS):

1. mirror replay end to end from the compressed text capture (parse + hints + replay + run dir);
2. mirror replay end to end from a .kmt of the same trace;
3. policy replay from the .kmt;
4. the replay loop alone (events already in memory), mirror mode.

Targets (issue 5): mirror >= 1 M events/s end to end on one core, policy >= 500 k events/s,
peak RSS <= 1 GiB.  The kernel produced these events at about 270 k events/s (2.69 M in 9.96 s).

    .venv/bin/python benchmarks/bench_replay.py [CAPTURE_DIR]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
CORPUS = Path(os.environ.get("KMEMDES_CORPUS", ROOT.parent / "shared" / "traces"))


def _child(phase: str, capture: str, kmt: str, out: str) -> None:
    from _machine import peak_rss_mb

    from kmemdes.sim.engine import replay_trace

    t0 = time.perf_counter()
    if phase == "text-mirror":
        _, s = replay_trace(capture, out, mode="mirror", progress=False)
    elif phase == "kmt-mirror":
        _, s = replay_trace(kmt, out, mode="mirror", progress=False)
    elif phase == "kmt-policy":
        _, s = replay_trace(kmt, out, mode="policy", progress=False)
    else:  # loop only
        from kmemdes.mm.mm_init import node_from_snapshot
        from kmemdes.sim.hints import start_hints
        from kmemdes.sim.replay import READ_COLUMNS, Replayer, slim_events
        from kmemdes.trace.reader import read_trace
        from kmemdes.trace.snapshot import snapshot_from_texts

        tr = read_trace(kmt, columns=READ_COLUMNS)
        events, by_type, comp = slim_events(tr.events)
        tr.events = None
        node, _ = node_from_snapshot(snapshot_from_texts(tr.meta["before"]), hints=start_hints(events))
        t0 = time.perf_counter()
        r = Replayer(node, events, events_by_type=by_type, kernel_ops=comp)
        t1 = time.perf_counter()
        r.run_until(1 << 62)
        r.finalize()  # the mirror loop's request keys are counted here (vectorised)
        s = {"events": r.n_total, "loop_events": r.n, "prep_s": t1 - t0, "loop_s": time.perf_counter() - t1}
    wall = time.perf_counter() - t0
    print(json.dumps({"wall": wall, "rss_mb": peak_rss_mb(),
                      "events": s["events"], **{k: s[k] for k in ("loop_events", "prep_s", "loop_s") if k in s}}))


def _run(phase, capture, kmt, out):
    r = subprocess.run([sys.executable, __file__, "--child", phase, str(capture), str(kmt), str(out)],
                       capture_output=True, text=True, env={**os.environ, "POLARS_MAX_THREADS": "1"})
    if r.returncode:
        sys.exit(f"bench_replay: {phase} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    from _machine import describe

    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(*sys.argv[2:6])
        return
    cap = Path(sys.argv[1]) if len(sys.argv) > 1 else CORPUS / "b_compile_nohash"
    if not cap.exists():
        print(f"bench_replay: skipped, {cap} not found (set KMEMDES_CORPUS)")
        return
    print(f"machine: {describe()} (POLARS_MAX_THREADS=1: one core)")
    with tempfile.TemporaryDirectory() as d:
        from kmemdes.trace.kmt import write_kmt
        from kmemdes.trace.reader import read_trace

        kmt = Path(d) / "t.kmt"
        write_kmt(read_trace(cap), kmt)
        rows = [(p, _run(p, cap, kmt, Path(d) / p)) for p in ("text-mirror", "kmt-mirror", "kmt-policy", "loop")]
    real = 2_691_985 / 9.96
    for name, r in rows:
        if name == "loop":
            print(f"{'replay loop only (mirror)':34s} prep {r['prep_s']:5.2f} s, loop {r['loop_s']:5.2f} s for "
                  f"{r['loop_events']:,} page/vmalloc events ({r['loop_events'] / r['loop_s'] / 1e6:.2f} M/s); "
                  f"whole replay {r['events'] / (r['prep_s'] + r['loop_s']) / 1e6:.2f} M events/s")
            continue
        eps = r["events"] / r["wall"]
        print(f"{name:34s} {r['wall']:6.2f} s  {eps / 1e6:5.2f} M events/s  ({eps / real:4.1f}x real time)  "
              f"peak RSS {r['rss_mb']:5.0f} MiB")
    d = dict(rows)
    print(f"targets: mirror >= 1 M events/s end to end -> text {d['text-mirror']['events'] / d['text-mirror']['wall'] / 1e6:.2f}, "
          f".kmt {d['kmt-mirror']['events'] / d['kmt-mirror']['wall'] / 1e6:.2f}; policy >= 0.5 M/s -> "
          f"{d['kmt-policy']['events'] / d['kmt-policy']['wall'] / 1e6:.2f}; RSS <= 1024 MiB -> "
          f"max {max(r['rss_mb'] for _, r in rows):.0f}")


if __name__ == "__main__":
    main()
