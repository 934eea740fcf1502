"""Report generation on a run directory the size of a 3 M-event replay.

Target (issue 6): the single-run HTML report of a 3 M-event replay is written in under
10 s and stays under 10 MB.  The run directory is synthetic (tests/report/_fake_run.py,
RUNDIR.md format) but sized like a long replay: 20,000 samples (1 ms sampling over 20 s),
3 zones of a 16 GiB machine (8,192 pageblocks, 12 pagemap snapshots), 150 slab caches,
100,000 failure rows (the writer's cap), 3 M events in the summary.  Also times a
comparison of 3 replicas x 2 configurations of that size.

Run: .venv/bin/python benchmarks/bench_report.py [--samples N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from kmemdes.report.compare import write_comparison  # noqa: E402
from kmemdes.report.html import write_report  # noqa: E402
from tests.report._fake_run import make_run  # noqa: E402

ZONES_16G = (("DMA", 8), ("DMA32", 1520), ("Normal", 6664))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=20_000)
    ap.add_argument("--keep", metavar="DIR", help="keep the run directories and reports in DIR")
    args = ap.parse_args()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="kmemdes-bench-report-"))
    base.mkdir(parents=True, exist_ok=True)
    from _machine import describe

    print(f"machine: {describe()}")
    try:
        t0 = time.perf_counter()
        run = make_run(base / "big", name="replay-3M", kind="replay", samples=args.samples, sample_ns=1_000_000,
                       zones=ZONES_16G, caches=150, events=3_000_000, severity=1.0)
        t_fix = time.perf_counter() - t0
        rows = sum(__import__("polars").read_parquet(f).height for f in (run / "metrics").glob("*.parquet"))
        print(f"fixture: {args.samples:,} samples, {sum(n for _, n in ZONES_16G):,} pageblocks, 150 caches; "
              f"{rows:,} metric rows; written in {t_fix:.1f} s")
        t0 = time.perf_counter()
        out = write_report(run, base / "big-report.html")
        t_rep = time.perf_counter() - t0
        size = out.stat().st_size
        ok = t_rep < 10 and size < 10_000_000
        print(f"report: {t_rep:.2f} s, {size / 1e6:.2f} MB (targets: < 10 s, < 10 MB) -> {'OK' if ok else 'MISSED'}")

        dirs = []
        for cfg, sev in (("default", 1.0), ("defrag_mode", 0.6)):
            for seed in (1, 2, 3):
                d = make_run(base / f"cmp-{cfg}-s{seed}", name="replay-3M", kind="replay", samples=args.samples,
                             sample_ns=1_000_000, zones=ZONES_16G, caches=150, events=3_000_000, severity=sev,
                             seed=seed, policy_fallback=cfg, snapshots=4)
                dirs.append(d)
        t0 = time.perf_counter()
        cmp_out = write_comparison(dirs, base / "compare.html")
        t_cmp = time.perf_counter() - t0
        print(f"compare (6 runs of that size, 2 configurations x 3 seeds): {t_cmp:.2f} s, "
              f"{cmp_out.stat().st_size / 1e6:.2f} MB")
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
