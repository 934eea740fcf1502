"""A kernel-build-like workload fitted from a real compile trace.

The fit (``kmemdes/data/compile_fit.json``) comes from ``b_compile_nohash``
(traces/README.md: two parallel ``gcc -O2`` loops for 10 s on the 6.18
reference machine, 2.69 M events).  Regenerate it with::

    python -m kmemdes.sim.compilefit ../shared/traces/b_compile_nohash --jobs 2 \\
        --slab-caches traces/system/slab_caches.tsv --slab-aliases traces/system/slab_aliases.txt \\
        -o kmemdes/data/compile_fit.json

What is fitted, per allocation class:

* **classes**: page allocations by (order, GFP mask) *excluding slab pages*
  (masks with ``__GFP_COMP``, ``__GFP_NOWARN`` and ``__GFP_NORETRY`` at orders <= 3
  that are not movable: the SLUB model makes those itself); slab objects by cache
  (``kmem_cache_alloc`` name, with the cache's object size, alignment and
  SLAB_RECLAIM_ACCOUNT from the machine's slab table); ``kmalloc`` by size class
  with the empirical request sizes; vmalloc areas by size (thread stacks).
* **rate**: allocations per second per job (the trace ran ``jobs`` parallel loops).
* **lifetime**: the time from an allocation to the free of the same pfn /
  pointer / area, as 21 quantiles (0, 5, ..., 100 %) of the matched pairs; the share
  of allocations never freed within the trace (``persist``) is kept and those
  objects live until the workload stops (a censored tail: the trace is 10 s
  long, so long-lived caches such as dentries and inodes accumulate).

Generation: per 1 ms tick, a Poisson number of allocations per class
(numpy, seeded), lifetimes drawn by inverse CDF (linear between quantiles),
frees bucketed by tick.  Anonymous pages (``GFP_HIGHUSER_MOVABLE|__GFP_ZERO``)
and page cache are movable pages owned in ``node.rmap`` (compaction can move
them; page cache is also reclaimable).  With ``thp_bursts``, every ``cycle``
a burst of MADV_HUGEPAGE anonymous memory (2 x 64 MiB per job) is faulted
in, as a build's link or test step would; THP successes and fallbacks are
counted (``thp_fault_alloc``, ``thp_fault_fallback``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Optional

import numpy as np
import polars as pl

from kmemdes.config import parse_duration
from kmemdes.errors import KmemdesError
from kmemdes.mm import gfp as G
from kmemdes.sim.workloads import TICK_NS, PageOwner, Workload
from kmemdes.trace.schema import EventKind

__all__ = ["fit_trace", "load_fit", "CompileLoad", "QUANTILES"]

QUANTILES = [i / 20 for i in range(21)]
_SLAB_PAGE = G.__GFP_COMP | G.__GFP_NOWARN | G.__GFP_NORETRY
_MOVABLE = G.__GFP_MOVABLE
_ZERO = G.__GFP_ZERO


def _lifetimes(frame: pl.DataFrame, key: str, alloc_kinds: list[int], free_kinds: list[int],
               realloc_ends: bool = False) -> pl.DataFrame:
    """Per allocation row (by ``line``): lifetime to the next free of the same key, null if never freed.

    ``realloc_ends``: a re-allocation of the same key also ends the previous life (the free was not
    traced: kfree_rcu batching, sheaves; traces/README.md behaviour 3).
    """
    f = frame.filter(pl.col("kind").is_in(alloc_kinds + free_kinds) & pl.col(key).is_not_null()).sort(key, "line")
    nxt_kind = pl.col("kind").shift(-1)
    same = pl.col(key).shift(-1) == pl.col(key)
    ends = nxt_kind.is_in(alloc_kinds + free_kinds) if realloc_ends else nxt_kind.is_in(free_kinds)
    return f.with_columns(
        life=pl.when(same & ends).then(pl.col("ts").shift(-1) - pl.col("ts"))
    ).filter(pl.col("kind").is_in(alloc_kinds)).select("line", "life")


def _quantiles(lives: pl.Series) -> tuple[list[int], float]:
    n = lives.len()
    done = lives.drop_nulls()
    persist = 1.0 - done.len() / n if n else 1.0
    if done.len() == 0:
        return [0] * len(QUANTILES), persist
    qs = [int(done.quantile(q, interpolation="linear")) for q in QUANTILES]
    return qs, round(persist, 6)


def _slab_table(tsv: Optional[Path], aliases: Optional[Path]) -> dict[str, dict]:
    """cache name -> {object_size, align, reclaim} from /sys/kernel/slab dumps (slab_caches.tsv + aliases)."""
    if tsv is None:
        return {}
    groups = {}
    with open(tsv, newline="") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            groups[r["cache"]] = {"object_size": int(r["object_size"]), "align": int(r["align"]),
                                  "reclaim": r["reclaim_account"] == "1"}
    out = {k: v for k, v in groups.items() if not k.startswith(":")}
    if aliases is not None:
        for line in Path(aliases).read_text().splitlines():
            if " -> " in line:
                name, grp = (x.strip() for x in line.split(" -> "))
                if grp in groups:
                    out[name] = groups[grp]
    return out


def fit_trace(events: pl.DataFrame, jobs: int, slab_table: dict[str, dict] | None = None,
              min_share: float = 1e-4, exclude_pids: tuple[int, ...] = ()) -> dict:
    """Fit allocation classes (rates per job, lifetime quantiles, persistence) to a trace's events.

    ``exclude_pids``: the capture tooling's own events (traces/README.md behaviour 10).
    """
    slab_table = slab_table or {}
    if exclude_pids:
        events = events.filter(~pl.col("pid").is_in(list(exclude_pids)))
    ev = events.select("line", "ts", "kind", "event", "pfn", "order", "gfp", "gfp_flags", "ptr", "cache",
                       "bytes_req", "bytes_alloc", "va_start", "size")
    span_s = (ev["ts"].max() - ev["ts"].min()) / 1e9
    K = EventKind
    classes = []
    total_allocs = ev.filter(pl.col("kind").is_in([int(K.MM_PAGE_ALLOC), int(K.KMEM_CACHE_ALLOC), int(K.KMALLOC),
                                                   int(K.ALLOC_VMAP_AREA)])).height
    # pages
    pl_life = _lifetimes(ev.filter(pl.col("pfn") >= 0), "pfn", [int(K.MM_PAGE_ALLOC)], [int(K.MM_PAGE_FREE)])
    pages = ev.filter((pl.col("kind") == int(K.MM_PAGE_ALLOC)) & (pl.col("pfn") >= 0)).join(pl_life, on="line")
    slab_page = ((pl.col("gfp") & _SLAB_PAGE) == _SLAB_PAGE) & (pl.col("order") <= 3) & ((pl.col("gfp") & _MOVABLE) == 0)
    pages = pages.filter(~slab_page)
    for (order, gfp, flags), grp in pages.group_by("order", "gfp", "gfp_flags", maintain_order=True):
        if grp.height < min_share * total_allocs:
            continue
        qs, persist = _quantiles(grp["life"])
        classes.append({"kind": "page", "order": int(order), "gfp": int(gfp), "gfp_flags": flags,
                        "rate": round(grp.height / span_s / jobs, 3), "lifetime_ns": qs, "persist": persist})
    # slab objects by cache
    ob_life = _lifetimes(ev.filter(pl.col("ptr") > 0x10), "ptr",
                         [int(K.KMEM_CACHE_ALLOC), int(K.KMALLOC)], [int(K.KMEM_CACHE_FREE), int(K.KFREE)],
                         realloc_ends=True)
    objs = ev.filter(pl.col("kind").is_in([int(K.KMEM_CACHE_ALLOC), int(K.KMALLOC)]) & (pl.col("ptr") > 0x10)
                     ).join(ob_life, on="line")
    for (cache,), grp in objs.filter(pl.col("kind") == int(K.KMEM_CACHE_ALLOC)).group_by("cache", maintain_order=True):
        if grp.height < min_share * total_allocs:
            continue
        qs, persist = _quantiles(grp["life"])
        info = slab_table.get(cache, {})
        classes.append({"kind": "cache", "cache": cache,
                        "object_size": info.get("object_size", int(grp["bytes_req"].max())),
                        "align": info.get("align", 8), "reclaim": info.get("reclaim", False),
                        "gfp": int(grp["gfp"].mode().sort()[0]),
                        "rate": round(grp.height / span_s / jobs, 3), "lifetime_ns": qs, "persist": persist})
    km = objs.filter(pl.col("kind") == int(K.KMALLOC))
    for (size,), grp in km.group_by("bytes_alloc", maintain_order=True):
        if grp.height < min_share * total_allocs:
            continue
        qs, persist = _quantiles(grp["life"])
        reqs = grp.group_by("bytes_req").len().sort("bytes_req")
        classes.append({"kind": "kmalloc", "bytes_alloc": int(size), "gfp": int(grp["gfp"].mode().sort()[0]),
                        "sizes": reqs["bytes_req"].to_list(), "weights": reqs["len"].to_list(),
                        "rate": round(grp.height / span_s / jobs, 3), "lifetime_ns": qs, "persist": persist})
    # vmalloc areas
    vm = ev.filter(pl.col("kind").is_in([int(K.ALLOC_VMAP_AREA), int(K.FREE_VMAP_AREA_NOFLUSH)]))
    if vm.height:
        v_life = _lifetimes(vm, "va_start", [int(K.ALLOC_VMAP_AREA)], [int(K.FREE_VMAP_AREA_NOFLUSH)])
        va = vm.filter(pl.col("kind") == int(K.ALLOC_VMAP_AREA)).join(v_life, on="line")
        for (size,), grp in va.group_by("size", maintain_order=True):
            qs, persist = _quantiles(grp["life"])
            classes.append({"kind": "vmalloc", "size": int(size) - 4096, "rate": round(grp.height / span_s / jobs, 3),
                            "lifetime_ns": qs, "persist": persist})
    classes.sort(key=lambda c: (c["kind"], -c["rate"], json.dumps(c, sort_keys=True)))
    covered = sum(c["rate"] for c in classes) * jobs * span_s
    return {"source": "b_compile_nohash: two parallel gcc -O2 loops, Linux 6.18.44 x86-64, 2 CPUs",
            "jobs": jobs, "span_s": round(span_s, 3), "allocations": total_allocs,
            "covered_allocations": int(covered), "quantiles": QUANTILES, "classes": classes}


def load_fit(path: Optional[str | Path] = None) -> dict:
    """The shipped fit (or another one)."""
    if path is None:
        text = resources.files("kmemdes").joinpath("data/compile_fit.json").read_text()
    else:
        text = Path(path).read_text()
    return json.loads(text)


class CompileLoad(Workload):
    """The fitted kernel-build mix: ``jobs`` parallel compile loops, rates times ``scale``."""

    def __init__(self, sim, spec, index: int, fit: Optional[dict] = None):
        super().__init__(sim, spec, index)
        self.fit = fit or load_fit()
        self.kernel = sim.kernel()
        self.np_rng = np.random.default_rng([sim.cfg.seed, index, 7])
        self.classes = self.fit["classes"]
        rate = np.array([c["rate"] for c in self.classes]) * spec.jobs * spec.scale
        self.lam = rate * TICK_NS / 1e9
        self.q = np.array([c["lifetime_ns"] for c in self.classes], dtype=np.float64)
        self.persist = np.array([c["persist"] for c in self.classes])
        self.caches = {}
        from kmemdes.mm.slub import SLAB_RECLAIM_ACCOUNT

        for i, c in enumerate(self.classes):
            if c["kind"] == "cache":
                name = c["cache"]
                try:
                    cache = self.kernel.slab.lookup(name)
                except KmemdesError:
                    cache = self.kernel.kmem_cache_create(name, c["object_size"], c["align"],
                                                          SLAB_RECLAIM_ACCOUNT if c["reclaim"] else 0)
                self.caches[i] = cache
        self.owner = PageOwner()
        self.cycle = parse_duration(spec.cycle)
        self.thp_attempts = 0
        self.thp_success = 0
        self.persistent = 0
        self.objects = 0
        self.object_failures = 0

    def _lifetimes(self, i: int, n: int) -> np.ndarray:
        u = self.np_rng.random(n)
        p = self.persist[i]
        out = np.full(n, -1, dtype=np.int64)
        live = u >= p
        if live.any():
            v = (u[live] - p) / (1 - p) * 20
            lo = np.floor(v).astype(int).clip(0, 19)
            frac = v - lo
            q = self.q[i]
            out[live] = (q[lo] + (q[lo + 1] - q[lo]) * frac).astype(np.int64)
        return out

    def process(self, env):
        free_at: dict[int, list] = {}
        t = self.start_ns
        next_burst = self.start_ns + self.cycle if self.spec.thp_bursts and self.cycle else None
        while t < self.stop_ns:
            if t > env.now:
                yield env.timeout(t - env.now)
            tick = t // TICK_NS
            for item in free_at.pop(tick, ()):
                self._free(*item)
            counts = self.np_rng.poisson(self.lam)
            waited = 0
            for i in np.nonzero(counts)[0]:
                n = int(counts[i])
                lives = self._lifetimes(i, n)
                c = self.classes[i]
                for life in lives:
                    handle, ns = self._alloc(i, c)
                    if ns > TICK_NS:
                        waited += ns
                    if handle is None:
                        continue
                    if life < 0:
                        self.persistent += 1
                        continue
                    free_at.setdefault(tick + 1 + int(life) // TICK_NS, []).append((i, handle))
            if next_burst is not None and env.now >= next_burst:
                waited += self._thp_burst()
                next_burst += self.cycle
            t += TICK_NS
            if waited:
                yield env.timeout(waited)

    def _alloc(self, i: int, c: dict):
        kind = c["kind"]
        k = self.kernel
        cpu = self.cpu()
        if kind == "page":
            pfn, ns = self.alloc_pages(c["gfp"], c["order"])
            if pfn < 0:
                return None, ns
            if c["gfp"] & _MOVABLE:
                if c["gfp"] & _ZERO:  # anonymous: movable, not reclaimable (no swap)
                    return ("owned", self.owner.add(self.node, pfn, c["order"])), ns
                return ("owned", self.owner.add_cache(self.node, pfn, c["order"])), ns  # page cache
            return (pfn, c["order"]), ns
        if kind == "cache":
            addr = k.kmem_cache_alloc(self.caches[i], c["gfp"], cpu)
            self.objects += 1
            self.object_failures += not addr
            return (addr if addr else None), self.sim.cost.kmalloc_fast
        if kind == "kmalloc":
            size = self.rng.choices(c["sizes"], c["weights"])[0]
            addr = k.kmalloc(size, c["gfp"], cpu)
            self.objects += 1
            self.object_failures += not addr
            return (addr if addr else None), self.sim.cost.kmalloc_fast
        addr = k.vmalloc(c["size"], G.GFP_KERNEL, cpu)
        ns = self.sim.cost.vmalloc_base + self.sim.cost.vmalloc_per_page * (c["size"] // 4096 - 1)
        return (addr if addr else None), ns

    def _free(self, i: int, handle) -> None:
        c = self.classes[i]
        kind = c["kind"]
        if kind == "page":
            a, b = handle
            if a == "owned":
                self.owner.free(self.node, b, self.cpu())  # wherever compaction moved it; no-op if reclaimed
            else:
                self.node.free_pages(a, b, self.cpu())
        elif kind == "cache":
            self.kernel.kmem_cache_free(self.caches[i], handle, self.cpu())
        elif kind == "kmalloc":
            self.kernel.kfree(handle, self.cpu())
        else:
            self.kernel.vfree(handle, self.cpu())

    def _thp_burst(self) -> int:
        """A THP-hungry step (link, test): 2 x 64 MiB of MADV_HUGEPAGE memory per job, faulted and released."""
        from kmemdes.mm.user import MADV_HUGEPAGE

        k = self.kernel
        waited = 0
        for _ in range(self.spec.jobs):
            p = k.spawn("ld", self.cpu())
            size = 128 << 20
            addr = p.malloc(size)
            if addr:
                p.madvise(addr & ~((2 << 20) - 1), size + (2 << 20), MADV_HUGEPAGE)
                p.touch(addr, size)
            # per fault, as thp_fault_alloc / thp_fault_fallback count (a fault may try twice)
            self.thp_attempts += p.stat["thp_faults"] + p.stat["thp_fallback"]
            self.thp_success += p.stat["thp_faults"]
            k.exit(p)
        return waited

    def counters(self) -> dict:
        return {"thp_fault_alloc": self.thp_success, "thp_fault_fallback": self.thp_attempts - self.thp_success,
                f"{self.name}_persistent_objects": self.persistent, f"{self.name}_slab_objects": self.objects,
                f"{self.name}_slab_failures": self.object_failures}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Fit the compile workload to a trace.")
    ap.add_argument("trace")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--slab-caches", type=Path, default=None)
    ap.add_argument("--slab-aliases", type=Path, default=None)
    ap.add_argument("-o", "--output", type=Path, required=True)
    a = ap.parse_args(argv)
    from kmemdes.trace.reader import read_trace

    tr = read_trace(a.trace)
    cap = tr.meta.get("capture", {})
    pids = tuple(int(cap[k]) for k in ("capture_script_pid", "reader_cat_pid", "reader_zstd_pid")
                 if str(cap.get(k, "")).isdigit())
    fit = fit_trace(tr.events, a.jobs, _slab_table(a.slab_caches, a.slab_aliases), exclude_pids=pids)
    fit["excluded_pids"] = list(pids)
    tmp = a.output.with_suffix(".tmp")
    tmp.write_text(json.dumps(fit, indent=1) + "\n")
    tmp.replace(a.output)
    print(f"{len(fit['classes'])} classes, {fit['covered_allocations']:,} of {fit['allocations']:,} allocations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
