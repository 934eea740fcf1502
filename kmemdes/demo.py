"""The kmalloc vs vmalloc vs malloc demonstration (``kmemdes demo``, ``make demo``).

A 32-bit x86 machine with 160 MB of RAM (3G/1G split, one CPU) boots, runs a
seeded background load for a while, then a "module" calls
``__get_free_page(GFP_KERNEL)``, ``kmalloc(100, GFP_KERNEL)`` and
``vmalloc(1000000)`` and a user program calls ``malloc(1000000)``.  For each
returned address the demo prints the region, the offset from PAGE_OFFSET, the
physical address (or why there is none) and the page frames behind it, so that a
kernel newcomer sees that kmalloc memory is physically contiguous and lives in the
direct map, that vmalloc memory is only virtually contiguous, and that malloc
memory has no page at all until it is touched.

Part 2 (a 1 MB buffer requested every simulated second under a fragmenting load,
kmalloc vs vmalloc failure rate and latency) runs on the simulation engine
(:mod:`kmemdes.sim`); :func:`part2` says so if the engine is not available.

Everything is deterministic for a seed; part 1 runs in well under a second, part 2
in a few seconds (two 30-second simulations).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Callable, Iterable, Optional

from kmemdes.errors import KmemdesError

from kmemdes.mm import gfp as G
from kmemdes.mm.kernel import Kernel
from kmemdes.mm.layout import AddressError, format_layout

__all__ = ["run_demo", "part1", "part2", "part2_config", "pfn_runs", "format_runs", "warm_up"]

MB = 1 << 20
PAGE = 4096


def pfn_runs(pfns: Iterable[int]) -> list[tuple[int, int]]:
    """Runs of consecutive pfns, in the given order: [(first, count), ...].

    >>> pfn_runs([5, 6, 7, 9, 3, 4])
    [(5, 3), (9, 1), (3, 2)]
    """
    runs: list[tuple[int, int]] = []
    for p in pfns:
        if runs and runs[-1][0] + runs[-1][1] == p:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((p, 1))
    return runs


def format_runs(runs: list[tuple[int, int]], limit: int = 12) -> str:
    """``0x1a00-0x1a3e (63)  0x2000 (1) ...`` for the first ``limit`` runs.

    >>> format_runs([(0x10, 3), (0x20, 1)])
    '0x10-0x12 (3), 0x20 (1)'
    """
    parts = [f"{s:#x}-{s + n - 1:#x} ({n})" if n > 1 else f"{s:#x} (1)" for s, n in runs[:limit]]
    if len(runs) > limit:
        parts.append(f"... {len(runs) - limit} more runs")
    return ", ".join(parts)


def warm_up(k: Kernel, rng: random.Random, rounds: int = 400) -> dict[str, int]:
    """A seeded stand-in for "the machine has been up for a while": processes start and
    exit (page tables, 8 KiB kernel stacks, pipe buffers, touched heap and mmap memory),
    and drivers kmalloc and kfree buffers of random sizes with random lifetimes.  Freed
    pages go back to the per-CPU lists and the buddy lists in a mixed order, as they do
    on a real system."""
    live_pages: list[tuple[int, int]] = []
    live_k: list[int] = []
    procs = []
    stats = {"processes": 0, "page_allocs": 0, "kmallocs": 0, "user_pages": 0}
    for _ in range(rounds):
        r = rng.random()
        if r < 0.15:
            p = k.spawn(f"job{stats['processes']}")
            stats["processes"] += 1
            stack = k.alloc_pages(G.GFP_KERNEL_ACCOUNT, 1)  # THREAD_SIZE 8 KiB on x86-32
            n = rng.choice((16 << 10, 64 << 10, 300 << 10, 1 << 20))
            a = p.malloc(n)
            stats["user_pages"] += p.touch(a, rng.randrange(PAGE, n + 1))
            procs.append((p, stack))
        elif r < 0.25 and procs:
            p, stack = procs.pop(rng.randrange(len(procs)))
            k.exit(p)
            k.free_pages_pfn(stack, 1)
        elif r < 0.55:
            pfn = k.alloc_pages(G.GFP_HIGHUSER | G.__GFP_ACCOUNT, 0)  # pipe buffer / misc kernel page
            live_pages.append((pfn, 0))
            stats["page_allocs"] += 1
        elif r < 0.85:
            live_k.append(k.kmalloc(rng.choice((64, 200, 700, 2000, 4000, 6000))))
            stats["kmallocs"] += 1
        elif live_pages and rng.random() < 0.6:
            pfn, order = live_pages.pop(rng.randrange(len(live_pages)))
            k.free_pages_pfn(pfn, order)
        elif live_k:
            k.kfree(live_k.pop(rng.randrange(len(live_k))))
    # a random half of what is left goes, like a system settling down
    rng.shuffle(live_pages)
    for pfn, order in live_pages[: len(live_pages) // 2]:
        k.free_pages_pfn(pfn, order)
    rng.shuffle(live_k)
    for a in live_k[: len(live_k) // 2]:
        k.kfree(a)
    return stats


_PATH_TEXT = {
    "pcp": "this CPU's list of free pages (pcp)",
    "pcp_refill": "this CPU's free-page list (pcp), refilled from the buddy lists",
    "buddy": "the buddy free lists",
}


def _where(k: Kernel, addr: int) -> str:
    lay = k.layout
    off = (addr - lay.page_offset) / MB
    sign = "+" if off >= 0 else "-"
    return f"{lay.region_of(addr)}, PAGE_OFFSET {sign} {abs(off):.1f} MB"


def part1(seed: int = 0, out: Callable[[str], None] = print) -> dict:
    """The address-space demonstration; prints to ``out`` and returns the numbers shown."""
    rng = random.Random(seed)
    k = Kernel("x86_32", "160M", cpus=1, seed=seed, trace=True)
    lay = k.layout
    res: dict = {}
    w = out
    w("kmemdes demo: kmalloc vs vmalloc vs malloc on a 32-bit x86 machine with 160 MB of RAM")
    w("=" * 86)
    w("")
    w("The machine: x86 32-bit, 3G/1G split, 160 MB RAM, 1 CPU (Linux 6.18 allocators).")
    zones = ", ".join(f"{z.name} pfn {z.start_pfn:#x}-{z.end_pfn - 1:#x}" for z in k.node.zones)
    w(f"  zones: {zones}; HighMem: none")
    w(f"  All of RAM is 'lowmem': the kernel maps lowmem 1:1 from PAGE_OFFSET = {lay.page_offset:#010x},")
    w(f"  so virtual = PAGE_OFFSET + physical up to high_memory = {lay.high_memory:#010x}.  Lowmem can be at")
    w(f"  most ~{(lay.vmalloc_end - lay.page_offset - (128 << 20)) >> 20} MB (MAXMEM); a machine with more RAM gets HighMem pages, which")
    w("  have no permanent kernel address at all.  vmalloc space starts 8 MB above high_memory.")
    w("")
    for line in format_layout(lay).splitlines():
        w("  " + line)
    w("")
    stats = warm_up(k, rng)
    w(f"Before the module loads, a seeded background load runs ({stats['processes']} processes started, "
      f"{stats['kmallocs']} kmallocs,")
    w(f"{stats['page_allocs']} kernel pages, {stats['user_pages']} user pages touched; part of it freed again),"
      " so free pages are mixed up")
    w("as on a machine that has been up for a while.")
    w("")
    k.events.clear()

    # 1. __get_free_page -------------------------------------------------------------
    page = getattr(k, "__get_free_page")(G.GFP_KERNEL)
    pfn = lay.virt_to_pfn(page)
    path = [e[1]["path"] for e in k.events if e[0] == "mm_page_alloc"][-1]
    path = _PATH_TEXT.get(path, path)
    w("1. module: __get_free_page(GFP_KERNEL)")
    w(f"   -> {page:#010x}   {_where(k, page)}")
    w(f"      physical {lay.virt_to_phys(page):#010x} = virtual - PAGE_OFFSET (virt_to_phys is a subtraction),"
      f" pfn {pfn:#x}, zone {k.zone_name(pfn)}")
    w(f"      one page straight from the page allocator (order 0, taken from {path}).")
    w("")
    res["page"] = {"addr": page, "phys": lay.virt_to_phys(page), "pfn": pfn}

    # 2. kmalloc(100) ----------------------------------------------------------------------
    k.events.clear()
    obj = k.kmalloc(100, G.GFP_KERNEL)
    opfn = lay.virt_to_pfn(obj)
    slab = k.slab.slab_of_page[opfn]
    s = slab.cache
    w("2. module: kmalloc(100, GFP_KERNEL)")
    w(f"   -> {obj:#010x}   {_where(k, obj)}")
    w(f"      physical {lay.virt_to_phys(obj):#010x}, pfn {opfn:#x}, zone {k.zone_name(opfn)}")
    w(f"      SLUB rounds 100 up to the {s.name} size class: {s.size} bytes handed out, "
      f"{s.size - 100} wasted (internal fragmentation).")
    w(f"      The object sits in a slab of {s.name}: pfn {slab.pfn:#x}, order {slab.order}, "
      f"{slab.objects} objects of {s.size} bytes,")
    w(f"      object #{(obj - slab.base) // s.size} at slab base {slab.base:#010x} + {obj - slab.base}.  "
      "The 100 bytes are inside one page frame: physically contiguous.")
    big = k.kmalloc(20000, G.GFP_KERNEL)
    bpfn = lay.virt_to_pfn(big)
    order = k.slab.large[bpfn]
    w(f"      (A bigger kmalloc(20000) bypasses the caches: one order-{order} block from the buddy allocator,"
      f" pfns {bpfn:#x}-{bpfn + (1 << order) - 1:#x},")
    w("       physically contiguous by construction; that is why large kmallocs fail on a fragmented machine.)")
    k.kfree(big)
    w("")
    res["kmalloc"] = {"addr": obj, "phys": lay.virt_to_phys(obj), "pfn": opfn, "cache": s.name,
                      "bytes_alloc": s.size, "large_pfn": bpfn, "large_order": order}

    # 3. vmalloc(1000000) ------------------------------------------------------------------
    k.events.clear()
    v = k.vmalloc(1000000, G.GFP_KERNEL, caller="demo_module_init+0x2a/0x80 [demo]")
    vm = k.vmalloc_model.vms[v]
    pfns = k.vmalloc_pfns(v)
    runs = pfn_runs(pfns)
    try:
        lay.virt_to_phys(v)
        refused = "(accepted?!)"
    except AddressError as e:
        refused = str(e).split(": ", 1)[1]
    new_pt = sum(1 for e in k.events if e[0] == "mm_page_alloc" and e[1]["gfp"] == G.GFP_KERNEL | G.__GFP_ZERO)
    pages_arr = vm.pages_addr
    w("3. module: vmalloc(1000000)")
    w(f"   -> {v:#010x}   {_where(k, v)}  (above high_memory: not the direct map)")
    w(f"      virt_to_phys({v:#x}) is refused:")
    w(f"        {refused}.")
    w(f"      The area: {vm.addr:#010x}-{vm.addr + vm.size:#010x}, {len(pfns)} pages "
      f"(1000000 rounded up to {len(pfns) * PAGE}) + 1 unmapped guard page.")
    w(f"      vmalloc_to_page() for each page, as runs of consecutive pfns: {len(runs)} runs")
    w(f"        {format_runs(runs, 8)}")
    contiguous = len(runs) == 1
    w(f"      => virtually contiguous, physically {'contiguous only by luck' if contiguous else 'scattered'}: "
      "vmalloc takes single pages")
    w("         wherever they are (it adds __GFP_HIGHMEM: on a bigger machine they would come from HighMem)")
    w("         and stitches them together with page-table entries.")
    w(f"      Bookkeeping: a 40-byte vm_struct, a vmap_area, the pages[] array ({len(pfns)} x 4 bytes, kmalloc'ed at "
      f"{pages_arr:#010x}),")
    w(f"      and {new_pt} new kernel page-table page(s) for this part of the vmalloc space (never freed).")
    w("      /proc/vmallocinfo line:")
    w("        " + k.vmalloc_model.vmallocinfo(numa=False).splitlines()[-1])
    w("")
    res["vmalloc"] = {"addr": v, "pfns": pfns, "runs": runs, "pgtables": new_pt}

    # 4. malloc(1000000) ------------------------------------------------------------------
    k.events.clear()
    p = k.spawn("demo_user")
    ptr = p.malloc(1000000)
    vma = p.find_vma(ptr)
    w("4. user program: malloc(1000000)")
    w(f"   -> {ptr:#010x}   user space, PAGE_OFFSET - {(lay.page_offset - ptr) / MB:.1f} MB")
    w("      1000000 >= the mmap threshold (128 KiB), so glibc asked the kernel for an anonymous mmap:")
    w(f"      VMA {vma.start:#010x}-{vma.end:#010x} ({vma.end - vma.start} bytes); the pointer is 8 bytes past its "
      "start (chunk header).")
    w(f"      physical: none.  The kernel only reserved address space: resident pages now "
      f"{p.rss_pages} of {(vma.end - vma.start) // PAGE}.")
    k.events.clear()
    touched = p.touch(ptr, 100 * 1024)
    faults = [e[1] for e in k.events if e[0] == "mm_page_alloc"]
    anon = [f for f in faults if f["gfp"] == G.GFP_HIGHUSER_MOVABLE | G.__GFP_ZERO | G.__GFP_COMP]
    upfns = [x for x in p.resident(ptr, 100 * 1024) if x >= 0]
    w(f"      Write the first 100 KB: {len(anon)} page faults, each one an order-0 allocation:")
    if anon:
        f = anon[0]
        w(f"        mm_page_alloc: pfn={f['pfn']:#x} order=0 migratetype={f['migratetype']} "
          f"gfp_flags={G.format_gfp(f['gfp'])}")
    nruns = len(pfn_runs(upfns))
    w(f"        (+ {len(faults) - len(anon)} page-table page(s));  resident now {p.rss_pages} pages, pfns: "
      f"{nruns} run{'s' if nruns != 1 else ''} of consecutive frames")
    w(f"        {format_runs(pfn_runs(upfns), 6)}")
    k.events.clear()
    p.read(ptr + 100 * 1024, 100 * 1024)
    reads = sum(1 for e in k.events if e[0] == "mm_page_alloc")
    w(f"      Read the next 100 KB: every page maps the shared zero page: {reads} allocations, "
      f"resident still {p.rss_pages}.")
    w("")
    res["malloc"] = {"addr": ptr, "vma": (vma.start, vma.end), "touched": touched, "faults": len(anon),
                     "read_allocs": reads, "pfns": upfns}

    # summary -----------------------------------------------------------------------------
    w("Summary")
    w(f"  {'call':<24} {'address':<11} {'region':<8} {'from PAGE_OFFSET':>17}  {'physical':<22} {'pages':>5}  phys. contiguous")
    rows = [
        ("__get_free_page", page, f"{lay.virt_to_phys(page):#010x}", "1", "yes"),
        ("kmalloc(100)", obj, f"{lay.virt_to_phys(obj):#010x}", "1", "yes (one page)"),
        ("vmalloc(1000000)", v, "none: vmalloc_to_page()", str(len(pfns)),
         f"no ({len(runs)} runs)" if not contiguous else "by luck"),
        ("malloc(1000000)", ptr, "none until touched", f"{len(upfns)}",
         f"not guaranteed ({len(pfn_runs(upfns))} run{'s' if len(pfn_runs(upfns)) != 1 else ''})"),
    ]
    for name, addr, phys, npages, cont in rows:
        off = (addr - lay.page_offset) / MB
        w(f"  {name:<24} {addr:#010x}  {lay.region_of(addr):<8} {off:>+14.1f} MB  {phys:<22} {npages:>5}  {cont}")
    w("")
    w("kmalloc: direct map, physically contiguous, limited to what the buddy allocator can find in one piece.")
    w("vmalloc: its own address range, page by page, built from page tables; slower, rarely fails for size.")
    w("malloc:  address space only; the pages come one fault at a time when the program touches them.")
    warnings = k.all_warnings()
    if warnings:
        w(f"(warnings counted: {dict(warnings)})")
    k.vfree(v)
    k.kfree(obj)
    k.free_pages(page)
    p.free(ptr)
    k.exit(p)
    res["kernel"] = k
    return res


PART2_BACKGROUND = [
    {"kind": "anon", "processes": 2, "size": "8M", "lifetime": "2s", "interval": "1s", "madvise_hugepage": False},
    {"kind": "file_cache", "rate_pages": 1000, "lifetime": "3s", "truncate_share": 1.0},
    {"kind": "network", "rate": 1500, "lifetime": "2s"},
]


def part2_config(api: str, seconds: int = 30, seed: int = 0) -> dict:
    """The experiment of part 2 as a ``kmemdes run`` config (a dict for :class:`kmemdes.config.Config`):
    the 160 MB x86-32 machine starts fragmented (every free page taken, then all but 64 of every
    512 freed again, 30 % of the kept ones pinned), a background of short-lived processes, page
    cache and network buffers runs, and a driver asks for a 1 MB buffer every second with ``api``
    and keeps it 5 s."""
    return {
        "name": f"demo-part2-{api}", "seed": seed, "duration": f"{seconds}s", "sample_interval": "1s",
        "machine": {"arch": "x86_32", "mem": "160M", "cpus": 1},
        "initial": {"state": "fragmented", "fill": 1.0, "keep_per_block": 64, "unmovable_share": 0.3},
        "workloads": [{"kind": "driver", "name": "driver", "api": api, "size": 1 << 20, "interval": "1s",
                       "hold": "5s"}] + PART2_BACKGROUND,
    }


def _run_part2(api: str, seconds: int, seed: int, root: str | Path = "runs") -> dict:
    import polars as pl

    from kmemdes.config import Config
    from kmemdes.sim.engine import run_config

    cfg = Config.model_validate(part2_config(api, seconds, seed))
    # replaces an earlier demo run (a kmemdes run directory), never anything else
    out, summary = run_config(cfg, Path(root) / f"demo-part2-{api}", progress=False, force=True)
    req = pl.read_parquet(out / "metrics" / "requests.parquet").filter(pl.col("workload") == "driver")
    lat = summary["latency_ns"].get("8", {})  # the driver's 1 MB (order-8) requests
    return {"api": api, "requests": int(req["count"].sum()),
            "failures": int(req.filter(pl.col("path") == "failed")["count"].sum()),
            "latency_ns": lat, "run_dir": str(out)}


def part2(out: Callable[[str], None] = print, seconds: int = 30, seed: int = 0,
          root: str | Path = "runs") -> Optional[dict]:
    """kmalloc vs vmalloc of a 1 MB buffer every simulated second under a fragmenting background,
    on the simulation engine (:mod:`kmemdes.sim`): failure rate and latency of each.  Latencies
    are priced by the engine's cost model (kmemdes.sim.cost: vmalloc's per-page cost measured on
    the reference machine by ``kmemdes lab --calibrate``, the rest estimates from KERNEL.md
    section 17).  The two runs are written to ``root/demo-part2-kmalloc`` and
    ``root/demo-part2-vmalloc`` (replacing earlier ones).  Returns None (and says why) when the
    engine is not available."""
    try:
        try:
            Path(root).mkdir(exist_ok=True)  # the last component only, as every output
        except OSError as e:
            raise KmemdesError(f"{root}: cannot create folder ({e.strerror})") from None
        results = [_run_part2(api, seconds, seed, root) for api in ("kmalloc", "vmalloc")]
    except (ImportError, AttributeError, TypeError) as e:  # engine missing or its API changed
        out("Part 2 (kmalloc vs vmalloc of a 1 MB buffer every simulated second under a fragmenting load:")
        out(f"failure rate and latency) needs the simulation engine (kmemdes.sim): not available ({e}).")
        return None
    w = out
    w("Part 2: the consequence over time")
    w("-" * 86)
    w("Same machine, started fragmented (free memory scattered in small pieces between pinned pages),")
    w("with short-lived processes, page cache and network buffers in the background.  A driver asks for")
    w(f"a 1 MB buffer every second for {seconds} simulated seconds and keeps each one 5 s; once with kmalloc")
    w("(one order-8 block: 256 physically contiguous pages), once with vmalloc (256 single pages).")
    w("")
    w(f"  {'api':<8} {'requests':>8} {'failed':>7} {'failure rate':>13}   latency p50 / p99 / max (cost model)")
    for r in results:
        q = r["latency_ns"]
        lat = " / ".join(_ns(q.get(k)) for k in ("p50", "p99", "max")) if q else "-"
        rate = r["failures"] / r["requests"] if r["requests"] else 0.0
        w(f"  {r['api']:<8} {r['requests']:>8} {r['failures']:>7} {rate:>12.0%}   {lat}")
    w("")
    w("kmalloc needs 256 free pages in one aligned block, which a fragmented machine rarely has;")
    w("vmalloc only needs 256 free pages anywhere, at the price of page-table work on every call.")
    w("(Latencies are priced by the cost model, kmemdes.sim.cost: vmalloc's per-page cost measured on the "
      "reference machine, the rest estimates.)")
    w("")
    w("Run directories (time series, memory maps; `kmemdes report DIR` turns one into an HTML page):")
    for r in results:
        w(f"  {r['run_dir']}")
    return {r["api"]: r for r in results}


def _ns(v: Optional[int]) -> str:
    if v is None:
        return "-"
    return f"{v / 1000:.1f} us" if v >= 1000 else f"{v} ns"


def run_demo(seed: int = 0, out: Callable[[str], None] = print, part: str = "all", seconds: int = 30,
             root: str | Path = "runs") -> dict:
    """``kmemdes demo``: part 1, then part 2 (``seconds`` simulated seconds per run; its two run
    directories go under ``root``)."""
    res = part1(seed, out) if part in ("1", "all") else {}
    if part in ("2", "all"):
        out("")
        res["part2"] = part2(out, seconds=seconds, seed=seed, root=root)
    return res
