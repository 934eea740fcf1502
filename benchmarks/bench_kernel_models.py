"""Throughput of the SLUB, vmalloc and user-space models, and the demo's run time.

Targets (issue 3): slab alloc+free >= 1 M pairs/s on the CPU fast path (the replay budget is
~1 M events/s for the whole model); kmalloc/kfree with random lifetimes (about half the
allocations take the slow path: CPU partial, node partial, new slabs) >= 200 k pairs/s;
vmalloc+vfree of 4 pages >= 20 k pairs/s; first-touch page faults >= 100 k/s (the page
allocator's fast path is most of that cost); ``kmemdes demo`` part 1 under 2 s.
Figures on the 2-core development VM (idle): 1.4 M, 260 k, 30 k, 180 k/s, 0.02 s.

    .venv/bin/python benchmarks/bench_kernel_models.py
"""

from __future__ import annotations

import random
import time

from _machine import describe

from kmemdes.demo import part1
from kmemdes.mm.kernel import Kernel


def _rate(n: int, t: float) -> str:
    return f"{n / t / 1e3:8.0f} k/s"


def main() -> None:
    print(describe())
    k = Kernel("x86_64", "8G", cpus=2)
    s = k.slab.lookup("kmalloc-64")
    alloc, free = k.slab.kmem_cache_alloc, k.slab.kmem_cache_free
    x = alloc(s)
    free(s, x)
    n = 300_000
    t = time.perf_counter()
    for _ in range(n):
        free(s, alloc(s))
    print(f"kmem_cache_alloc+free (CPU freelist)     {_rate(n, time.perf_counter() - t)}  target >= 1000 k/s")

    rng = random.Random(0)
    sizes = [rng.choice((16, 64, 96, 200, 500, 1000, 3000, 6000)) for _ in range(200_000)]
    live: list[int] = []
    t = time.perf_counter()
    for i, size in enumerate(sizes):
        live.append(k.kmalloc(size))
        if i % 3 == 2:
            k.kfree(live.pop(rng.randrange(len(live))))
            k.kfree(live.pop(rng.randrange(len(live))))
    for a in live:
        k.kfree(a)
    print(f"kmalloc/kfree, mixed sizes, refills      {_rate(len(sizes), time.perf_counter() - t)}  target >= 200 k/s")

    n = 20_000
    t = time.perf_counter()
    for _ in range(n):
        k.vfree(k.vmalloc(16384))
    dt = time.perf_counter() - t
    print(f"vmalloc(16 KiB)+vfree                    {_rate(n, dt)}  target >= 20 k/s "
          f"({k.vmalloc_model.va.stat['purge']} purges)")

    p = k.spawn("bench")
    a = p.malloc(512 << 20)
    t = time.perf_counter()
    pages = p.touch(a, 256 << 20)
    print(f"first-touch anon faults                  {_rate(pages, time.perf_counter() - t)}  target >= 100 k/s")
    t = time.perf_counter()
    k.exit(p)
    print(f"exit (free {pages} pages)                {_rate(pages, time.perf_counter() - t)}")

    t = time.perf_counter()
    part1(0, lambda line: None)
    print(f"kmemdes demo part 1                      {time.perf_counter() - t:8.2f} s    target < 2 s")


if __name__ == "__main__":
    main()
