"""One simulated kernel: the page allocator, SLUB, vmalloc and user processes on one machine.

Ties :mod:`kmemdes.mm.page_alloc` (a freshly booted node from
:func:`kmemdes.mm.mm_init.build_node`), :mod:`kmemdes.mm.layout`,
:mod:`kmemdes.mm.slub`, :mod:`kmemdes.mm.vmalloc` and :mod:`kmemdes.mm.user`
behind the calls a driver or a test makes: ``kmalloc``/``kfree``,
``kmem_cache_create``/``kmem_cache_alloc``/``kmem_cache_free``,
``alloc_pages``/``__get_free_pages``/``free_pages``, ``vmalloc``/``vfree``,
``kvmalloc``/``kvfree``, and user processes (``spawn``).  With ``trace=True``
every call leaves the event the real kernel would trace (``kmalloc``,
``mm_page_alloc``, ``alloc_vmap_area``, ...) in :attr:`Kernel.events`, except the
bulk page allocations of vmalloc, which the kernel does not trace either.

>>> k = Kernel("x86_32", "160M", cpus=1, seed=0)
>>> a = k.kmalloc(100); k.layout.region_of(a), k.ksize(a)
('lowmem', 128)
>>> v = k.vmalloc(1000000); k.layout.region_of(v), len(k.vmalloc_pfns(v))
('vmalloc', 245)
>>> k.kfree(a); k.vfree(v)
"""

from __future__ import annotations

from collections import Counter
from typing import Optional, Union

from kmemdes.errors import KmemdesError
from kmemdes.mm import gfp as G
from kmemdes.mm.layout import Layout, build_layout, x86_32_pae
from kmemdes.mm.mm_init import build_node, parse_size
from kmemdes.mm.page_alloc import MAX_PAGE_ORDER, PATH_NAMES, Node
from kmemdes.mm.slub import KmemCache, SlabAllocator
from kmemdes.mm.user import Process
from kmemdes.mm.vmalloc import Vmalloc

__all__ = ["Kernel"]

_GFP_HIGHMEM = G.__GFP_HIGHMEM
_GFP_NOWARN = G.__GFP_NOWARN


class Kernel:
    """A booted machine: ``arch`` (x86_64 or x86_32), ``mem`` (bytes or "160M"), ``cpus``."""

    def __init__(self, arch: str = "x86_64", mem: Union[int, str] = "1G", cpus: int = 2, seed: int = 0,
                 trace: bool = False, thp: str = "madvise", node: Optional[Node] = None,
                 slab: Optional[SlabAllocator] = None, nr_cpus_config: int = 8) -> None:
        mem_bytes = parse_size(mem) if isinstance(mem, str) else int(mem)
        if cpus < 1:
            raise KmemdesError(f"cpus must be >= 1, got {cpus}")
        self.arch = arch
        self.cpus = cpus
        self.seed = seed
        self.thp = thp
        self.node: Node = node if node is not None else build_node(arch, mem_bytes, cpus=cpus,
                                                                    nr_cpus_config=nr_cpus_config)
        highmem = [z.start_pfn for z in self.node.zones if z.name == "HighMem"]
        # lowmem ends where the page allocator's HighMem zone begins (slab pages must have an address).
        # build_node and build_layout both take it from layout.x86_32_max_low_pfn, so this only
        # matters for a node given from outside (e.g. built from a snapshot).
        self.layout: Layout = build_layout(arch, mem_bytes, nr_cpus=max(nr_cpus_config, cpus),
                                           pae=arch == "x86_32" and x86_32_pae(mem_bytes),
                                           max_low_pfn=highmem[0] if highmem else None)
        self.events: Optional[list[tuple[str, dict]]] = [] if trace else None
        self.warnings: Counter[str] = Counter()
        self.slab = slab if slab is not None else SlabAllocator(
            self.alloc_pages, self.free_pages_pfn, self.layout.pfn_to_virt, self.layout.virt_to_pfn,
            nr_cpus=cpus, seed=seed)
        if trace:
            self.slab.trace = self._trace
        self.vmalloc_model = Vmalloc(self.layout, self.slab, self.alloc_pages, self.free_pages_pfn, cpus,
                                     totalram_pages=self.totalram_pages(), trace=self._trace if trace else None,
                                     alloc_pages_bulk=self._alloc_pages_untraced)
        self.processes: dict[int, Process] = {}
        self._next_pid = 1000

    # ---- events -----------------------------------------------------------------------
    def _trace(self, event: str, **fields) -> None:
        if self.events is not None:
            self.events.append((event, fields))

    # ---- page allocator ---------------------------------------------------------------
    def totalram_pages(self) -> int:
        return sum(z.managed for z in self.node.zones)

    def alloc_pages(self, gfp: int, order: int, cpu: int = 0) -> int:
        """``alloc_pages``: a head pfn or -1; traced as ``mm_page_alloc`` (failures too)."""
        pfn = self.node.alloc_pages(gfp, order, cpu % self.cpus)
        if self.events is not None:
            self.events.append(("mm_page_alloc", {"pfn": pfn, "order": order, "gfp": gfp,
                                                  "migratetype": G.gfp_migratetype(gfp),
                                                  "path": PATH_NAMES[self.node.last_path]}))
        return pfn

    def _alloc_pages_untraced(self, gfp: int, order: int, cpu: int = 0) -> int:
        """The bulk allocator's pages (``alloc_pages_bulk``): no ``mm_page_alloc`` event."""
        return self.node.alloc_pages(gfp, order, cpu % self.cpus)

    def free_pages_pfn(self, pfn: int, order: int, cpu: int = 0) -> None:
        """``__free_pages`` (by pfn): traced as ``mm_page_free``."""
        if self.events is not None:
            self.events.append(("mm_page_free", {"pfn": pfn, "order": order}))
        self.node.free_pages(pfn, order, cpu % self.cpus)

    def get_free_pages(self, gfp: int = G.GFP_KERNEL, order: int = 0, cpu: int = 0) -> int:
        """``__get_free_pages`` (also reachable under that name): lowmem pages
        (``__GFP_HIGHMEM`` is masked off) at their direct-map address, 0 on failure."""
        if order < 0 or order > MAX_PAGE_ORDER:
            self.warnings["__get_free_pages: order > MAX_PAGE_ORDER"] += not gfp & _GFP_NOWARN
            return 0
        pfn = self.alloc_pages(gfp & ~_GFP_HIGHMEM, order, cpu)
        return 0 if pfn < 0 else self.layout.pfn_to_virt(pfn)

    def get_free_page(self, gfp: int = G.GFP_KERNEL, cpu: int = 0) -> int:
        """``__get_free_page``: one lowmem page."""
        return self.get_free_pages(gfp, 0, cpu)

    def free_pages(self, addr: int, order: int = 0, cpu: int = 0) -> None:
        """``free_pages(addr, order)``: give back pages from ``__get_free_pages`` (0 is a no-op)."""
        if addr:
            self.free_pages_pfn(self.layout.virt_to_pfn(addr), order, cpu)

    # ---- slab -------------------------------------------------------------------------
    def kmalloc(self, size: int, gfp: int = G.GFP_KERNEL, cpu: int = 0) -> int:
        """``kmalloc``: an address (direct map), ZERO_SIZE_PTR for 0, or 0 (NULL)."""
        return self.slab.kmalloc(size, gfp, cpu)[0]

    def kzalloc(self, size: int, gfp: int = G.GFP_KERNEL, cpu: int = 0) -> int:
        return self.kmalloc(size, gfp | G.__GFP_ZERO, cpu)

    def kfree(self, addr: int, cpu: int = 0) -> None:
        """``kfree``."""
        self.slab.kfree(addr, cpu)

    def ksize(self, addr: int) -> int:
        return self.slab.ksize(addr)

    def kmem_cache_create(self, name: str, size: int, align: int = 0, flags: int = 0, ctor: bool = False,
                          usersize: int = 0, sheaf_capacity: int = 0) -> KmemCache:
        """``kmem_cache_create`` (may return a merged cache: its ``name`` is the owner's)."""
        return self.slab.kmem_cache_create(name, size, align, flags, ctor=ctor, usersize=usersize,
                                           sheaf_capacity=sheaf_capacity)

    def _cache(self, cache: Union[str, KmemCache]) -> KmemCache:
        return self.slab.lookup(cache) if isinstance(cache, str) else cache

    def kmem_cache_alloc(self, cache: Union[str, KmemCache], gfp: int = G.GFP_KERNEL, cpu: int = 0) -> int:
        return self.slab.kmem_cache_alloc(self._cache(cache), gfp, cpu)

    def kmem_cache_free(self, cache: Union[str, KmemCache], addr: int, cpu: int = 0) -> None:
        self.slab.kmem_cache_free(self._cache(cache), addr, cpu)

    # ---- vmalloc ----------------------------------------------------------------------
    def vmalloc(self, size: int, gfp: int = G.GFP_KERNEL, cpu: int = 0, caller: str = "vmalloc") -> int:
        """``vmalloc``: an address in the vmalloc area or 0."""
        return self.vmalloc_model.vmalloc(size, gfp, 1, caller=caller, cpu=cpu)

    def vfree(self, addr: int, cpu: int = 0) -> None:
        self.vmalloc_model.vfree(addr, cpu)

    def kvmalloc(self, size: int, gfp: int = G.GFP_KERNEL, cpu: int = 0) -> int:
        """``kvmalloc``: kmalloc, falling back to vmalloc above a page."""
        return self.vmalloc_model.kvmalloc(size, gfp, cpu)[0]

    def kvfree(self, addr: int, cpu: int = 0) -> None:
        self.vmalloc_model.kvfree(addr, cpu)

    def vmalloc_pfns(self, addr: int) -> list[int]:
        """The pfns behind a vmalloc area (``vmalloc_to_page`` for each page), in VA order."""
        vm = self.vmalloc_model.vms.get(addr)
        if vm is None:
            raise KmemdesError(f"vmalloc_pfns({addr:#x}): not the start of a live vmalloc area")
        return list(vm.pages)

    def vmalloc_to_pfn(self, addr: int) -> int:
        return self.vmalloc_model.vmalloc_to_pfn(addr)

    # ---- user space -------------------------------------------------------------------
    def spawn(self, name: str = "a.out", cpu: int = 0) -> Process:
        """A new process (fork+exec): empty address space, its PGD allocated."""
        pid = self._next_pid
        self._next_pid += 1
        p = Process(self.alloc_pages, self.free_pages_pfn, self.arch, name=name, pid=pid,
                    seed=self.seed * 7919 + pid, thp=self.thp, cpu=cpu % self.cpus)
        self.processes[pid] = p
        return p

    def exit(self, p: Process) -> int:
        self.processes.pop(p.pid, None)
        return p.exit()

    # ---- observables ------------------------------------------------------------------
    def all_warnings(self) -> Counter[str]:
        """Every counted WARN of the models (slab, vmalloc, kernel calls, page allocator)."""
        out = Counter(self.warnings)
        out.update(self.slab.warnings)
        out.update(self.vmalloc_model.warnings)
        if self.node.nr_warn:
            out["page allocator: order > MAX_PAGE_ORDER"] += self.node.nr_warn
        return out

    def zone_name(self, pfn: int) -> str:
        return self.node.zone_of(pfn).name


# the kernel's own spellings (double underscores cannot be written inside the class body)
setattr(Kernel, "__get_free_pages", Kernel.get_free_pages)
setattr(Kernel, "__get_free_page", Kernel.get_free_page)
