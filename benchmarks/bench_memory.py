"""Memory of a freshly booted machine model: per-page state must stay in flat arrays.

Targets (issue 2): a 64 GiB machine in at most 300 MB of process RSS, a 256 GiB one in at
most 1 GiB; (issue 5) a synthetic run on a 64 GiB machine in at most 400 MB ("run64G").  Each size is built in its own subprocess and its peak RSS (VmHWM) read,
next to the RSS of the bare interpreter with kmemdes imported, in one run.

    .venv/bin/python benchmarks/bench_memory.py
"""

from __future__ import annotations

import json
import subprocess
import sys

from _machine import describe

CHILD = """
import json, resource, sys, time
t = time.perf_counter()
from kmemdes.mm.mm_init import build_node, parse_size
mem = sys.argv[1]
if mem == "run64G":  # a synthetic run on a 64 GiB machine (issue 5: <= 400 MB)
    from kmemdes.config import Config
    from kmemdes.sim.engine import run_config
    import tempfile
    cfg = Config.model_validate({"name": "m", "duration": "1s", "machine": {"mem": "64G"}, "workloads": [
        {"kind": "driver", "order": 9, "interval": "10ms"}, {"kind": "anon", "processes": 2, "size": "16M"}]})
    with tempfile.TemporaryDirectory() as d:
        run_config(cfg, d + "/run", progress=False)
    pages = 17039360
elif mem != "none":
    node = build_node("x86_64", parse_size(mem), cpus=8)
    pages = node.max_pfn
else:
    pages = 0
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")]  # not ru_maxrss (fork)
print(json.dumps({"mem": mem, "pfns": pages, "rss_kb": hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "build_s": time.perf_counter() - t}))
"""

TARGETS_MB = {"64G": 300, "256G": 1024, "run64G": 400}


def main() -> int:
    print(f"machine: {describe()}")
    rows = []
    for mem in ("none", "4G", "64G", "256G", "run64G"):
        out = subprocess.run([sys.executable, "-c", CHILD, mem], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout))
    base = rows[0]["rss_kb"] / 1024
    print(f"{'machine':>8} {'pfns':>12} {'peak RSS MB':>12} {'over import':>12} {'bytes/page':>11} {'build s':>8} {'target MB':>10}")
    ok = True
    for r in rows[1:]:
        rss = r["rss_kb"] / 1024
        per_page = (rss - base) * 1048576 / r["pfns"]
        target = TARGETS_MB.get(r["mem"])
        status = "" if target is None else ("ok" if rss <= target else "OVER")
        ok &= status != "OVER"
        print(f"{r['mem']:>8} {r['pfns']:>12,} {rss:>12.0f} {rss - base:>12.0f} {per_page:>11.1f} {r['build_s']:>8.2f} "
              f"{target or '':>10} {status}")
    print(f"(import of kmemdes.mm alone: {base:.0f} MB)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
