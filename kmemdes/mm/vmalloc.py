"""vmalloc: the vmap_area allocator, guard pages, lazy purge, backing pages, kvmalloc policy.

Follows mm/vmalloc.c of Linux 6.18 (``alloc_vmap_area``, ``__alloc_vmap_area``,
``find_vmap_lowest_match``, ``adjust_va_to_fit_type``, ``merge_or_add_vmap_area``,
``__get_vm_area_node``, ``__vmalloc_node_range``, ``__vmalloc_area_node``,
``vm_area_alloc_pages``, ``vfree``, ``free_vmap_area_noflush``,
``__purge_vmap_area_lazy``, ``lazy_max_pages``, ``vmalloc_info_show``) and
``__kvmalloc_node``/``kmalloc_gfp_adjust`` (mm/slub.c).  KERNEL.md section 11.

Free virtual space is a sorted list of ``[start, end)`` ranges (the kernel's
``free_vmap_area_root``/``free_vmap_area_list``); allocation is the lowest-address
first fit with alignment.  Not modelled: the 6.9+ per-node pools (``vmap_nodes``),
which make reuse size-class LIFO-ish; vm_map_ram/vmap blocks; KASAN shadow.

>>> v = VmapAreaAllocator(0x1000_0000, 0x2000_0000, nr_cpus=2)
>>> a = v.alloc(5 * 4096, 4096); b = v.alloc(5 * 4096, 16384)
>>> hex(a), hex(b), v.lazy_max_pages
('0x10000000', '0x10008000', 16384)
>>> v.free_noflush(a), v.nr_lazy, v.alloc(4096, 4096) == a + 5 * 4096
(5, 5, True)
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional

from kmemdes.mm import gfp as G

__all__ = [
    "PAGE_SIZE",
    "VM_IOREMAP",
    "VM_ALLOC",
    "VM_MAP",
    "VM_USERMAP",
    "VM_DMA_COHERENT",
    "VM_NO_GUARD",
    "VM_ALLOW_HUGE_VMAP",
    "VM_SPARSE",
    "THREAD_SIZE",
    "TLB_FLUSH_CEILING",
    "VmapAreaAllocator",
    "VmStruct",
    "Vmalloc",
    "kmalloc_gfp_adjust",
    "lazy_max_pages",
    "format_vmallocinfo_line",
]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
THREAD_SIZE = 16384  # x86-64 (THREAD_SIZE_ORDER 2)
TLB_FLUSH_CEILING = 33  # x86 tlb_single_page_flush_ceiling
INT_MAX = (1 << 31) - 1

# vm_struct flags (include/linux/vmalloc.h); this model's bit values
VM_IOREMAP = 0x1
VM_ALLOC = 0x2
VM_MAP = 0x4
VM_USERMAP = 0x8
VM_DMA_COHERENT = 0x10
VM_NO_GUARD = 0x40
VM_ALLOW_HUGE_VMAP = 0x400
VM_SPARSE = 0x1000

_GFP_DMA = G.__GFP_DMA
_GFP_DMA32 = G.__GFP_DMA32
_GFP_HIGHMEM = G.__GFP_HIGHMEM
_GFP_ZERO = G.__GFP_ZERO
_GFP_NOWARN = G.__GFP_NOWARN
_GFP_NOFAIL = G.__GFP_NOFAIL
_GFP_NORETRY = G.__GFP_NORETRY
_GFP_RETRY_MAYFAIL = G.__GFP_RETRY_MAYFAIL
_GFP_DIRECT_RECLAIM = G.__GFP_DIRECT_RECLAIM
_GFP_ACCOUNT = G.__GFP_ACCOUNT
_GFP_RECLAIM_MASK = (
    G.__GFP_DIRECT_RECLAIM | G.__GFP_KSWAPD_RECLAIM | G.__GFP_HIGH | G.__GFP_IO | G.__GFP_FS
    | G.__GFP_NOWARN | G.__GFP_RETRY_MAYFAIL | G.__GFP_NOFAIL | G.__GFP_NORETRY
    | G.__GFP_MEMALLOC | G.__GFP_NOMEMALLOC
)


def lazy_max_pages(nr_cpus: int) -> int:
    """``lazy_max_pages``: ``fls(num_online_cpus()) * (32 MiB / PAGE_SIZE)``.

    >>> lazy_max_pages(1), lazy_max_pages(2), lazy_max_pages(4), lazy_max_pages(64)
    (8192, 16384, 24576, 57344)
    """
    return max(1, nr_cpus).bit_length() * ((32 << 20) // PAGE_SIZE)


def kmalloc_gfp_adjust(gfp: int, size: int, era: str = "6.16") -> int:
    """``kmalloc_gfp_adjust``: the flags kvmalloc's kmalloc try uses.  Above a page: add
    NOWARN, drop NOFAIL, and (6.16+) drop DIRECT_RECLAIM unless RETRY_MAYFAIL (before:
    add NORETRY unless RETRY_MAYFAIL).

    >>> G.format_gfp(kmalloc_gfp_adjust(G.GFP_KERNEL, 8192))
    'GFP_NOWAIT|__GFP_IO|__GFP_FS'
    >>> G.format_gfp(kmalloc_gfp_adjust(G.GFP_KERNEL, 8192, era="6.15"))
    'GFP_KERNEL|__GFP_NOWARN|__GFP_NORETRY'
    >>> kmalloc_gfp_adjust(G.GFP_KERNEL, 4096) == G.GFP_KERNEL
    True
    """
    if size > PAGE_SIZE:
        gfp |= _GFP_NOWARN
        if not gfp & _GFP_RETRY_MAYFAIL:
            if era >= "6.16":
                gfp &= ~_GFP_DIRECT_RECLAIM
            else:
                gfp |= _GFP_NORETRY
        gfp &= ~_GFP_NOFAIL
    return gfp


class VmapAreaAllocator:
    """Virtual space of one range: free ranges, busy areas, the lazy (unpurged) list.

    ``vstart``/``vend`` bound every area (``va_end <= vend``), as ``alloc_vmap_area``'s
    arguments do.  Stats: purges, TLB flushes (one per purge; a full flush above
    ``TLB_FLUSH_CEILING`` pages), failures.
    """

    def __init__(self, vstart: int, vend: int, nr_cpus: int = 2) -> None:
        self.vstart = vstart
        self.vend = vend
        self._starts = [vstart]  # free ranges, sorted, non-adjacent
        self._ends = [vend]
        self.busy: dict[int, int] = {}  # va_start -> va_end
        self._busy_starts: list[int] = []  # sorted keys of busy (find_vmap_area)
        self.lazy: dict[int, int] = {}  # freed, not yet purged: va_start -> va_end
        self.nr_lazy = 0  # pages (guard pages included), vmap_lazy_nr
        self.lazy_max_pages = lazy_max_pages(nr_cpus)
        self.stat: Counter[str] = Counter()
        self.last_purge: Optional[tuple[int, int, int]] = None  # (start, end, npurged)
        self.on_purge: Optional[Callable[[int, int, int], None]] = None

    @property
    def free_bytes(self) -> int:
        return sum(e - s for s, e in zip(self._starts, self._ends))

    @property
    def nr_free_ranges(self) -> int:
        return len(self._starts)

    def largest_free(self) -> int:
        return max((e - s for s, e in zip(self._starts, self._ends)), default=0)

    def _find_lowest_match(self, size: int, align: int, vstart: int, vend: int) -> int:
        """``find_vmap_lowest_match`` + ``is_within_this_va``: the lowest free range where
        an ``align``-aligned start at or above ``vstart`` fits ``size``; -1 if none."""
        starts, ends = self._starts, self._ends
        i = bisect_right(ends, vstart)  # first range ending above vstart
        n = len(starts)
        mask = align - 1
        while i < n:
            s = starts[i]
            if s >= vend:
                break
            a = (max(s, vstart) + mask) & ~mask
            if a + size <= ends[i]:
                return -1 if a + size > vend else a
            i += 1
        return -1

    def _clip(self, a: int, size: int) -> None:
        """``adjust_va_to_fit_type``: full, left-edge, right-edge or no-edge fit."""
        i = bisect_right(self._starts, a) - 1
        s, e = self._starts[i], self._ends[i]
        end = a + size
        if s == a and e == end:  # FL_FIT_TYPE
            del self._starts[i], self._ends[i]
        elif s == a:  # LE_FIT_TYPE
            self._starts[i] = end
        elif e == end:  # RE_FIT_TYPE
            self._ends[i] = a
        else:  # NE_FIT_TYPE: split in two
            self._ends[i] = a
            self._starts.insert(i + 1, end)
            self._ends.insert(i + 1, e)

    def _insert_free(self, s: int, e: int) -> None:
        """``merge_or_add_vmap_area``: merge with the free neighbours."""
        starts, ends = self._starts, self._ends
        i = bisect_left(starts, s)
        if i > 0 and ends[i - 1] == s:
            if i < len(starts) and starts[i] == e:  # merge both sides
                ends[i - 1] = ends[i]
                del starts[i], ends[i]
            else:
                ends[i - 1] = e
        elif i < len(starts) and starts[i] == e:
            starts[i] = s
        else:
            starts.insert(i, s)
            ends.insert(i, e)

    def alloc(self, size: int, align: int = PAGE_SIZE, vstart: Optional[int] = None,
              vend: Optional[int] = None) -> int:
        """``alloc_vmap_area``: lowest-address first fit; on failure purge the lazy areas and
        retry once (``reclaim_and_purge_vmap_areas``).  Returns va_start or -1."""
        if size <= 0 or size & (PAGE_SIZE - 1) or align & (align - 1):
            self.stat["einval"] += 1
            return -1
        align = max(align, PAGE_SIZE)
        vstart = self.vstart if vstart is None else vstart
        vend = self.vend if vend is None else vend
        a = self._find_lowest_match(size, align, vstart, vend)
        if a < 0 and self.lazy:
            self.stat["purge_on_failure"] += 1
            self.purge()
            a = self._find_lowest_match(size, align, vstart, vend)
        if a < 0:
            self.stat["alloc_fail"] += 1
            return -1
        self._clip(a, size)
        self.busy[a] = a + size
        insort(self._busy_starts, a)
        self.stat["alloc"] += 1
        return a

    def free_noflush(self, va_start: int, purge: bool = True) -> int:
        """``free_vmap_area_noflush``: unlink a busy area onto the lazy list, add its pages to
        ``nr_lazy`` and (``purge``) purge when above ``lazy_max_pages`` (the kernel schedules
        ``drain_vmap_work``).  Returns ``nr_lazy`` as the trace event prints it (before the
        purge).  -1 for an unknown area."""
        end = self.busy.pop(va_start, None)
        if end is None:
            self.stat["free_unknown"] += 1
            return -1
        del self._busy_starts[bisect_left(self._busy_starts, va_start)]
        self.lazy[va_start] = end
        self.nr_lazy += (end - va_start) >> PAGE_SHIFT
        nr_lazy = self.nr_lazy
        if purge and nr_lazy > self.lazy_max_pages:  # schedule_work(&drain_vmap_work): at once here
            self.purge()
        return nr_lazy

    def purge(self) -> tuple[int, int, int]:
        """``__purge_vmap_area_lazy``: one TLB flush over [min start, max end] of the lazy
        areas, then every area goes back to the free space (merged).  Returns (start, end, n)."""
        if not self.lazy:
            return (0, 0, 0)
        start, end = min(self.lazy), max(self.lazy.values())
        npurged = len(self.lazy)
        pages = (end - start) >> PAGE_SHIFT
        self.stat["purge"] += 1
        self.stat["tlb_flush"] += 1
        self.stat["tlb_flush_full" if pages > TLB_FLUSH_CEILING else "tlb_flush_pages"] += 1
        self.stat["purged_areas"] += npurged
        for s, e in self.lazy.items():
            self._insert_free(s, e)
        self.lazy.clear()
        self.nr_lazy = 0
        self.last_purge = (start, end, npurged)
        if self.on_purge is not None:
            self.on_purge(start, end, npurged)
        return self.last_purge

    def find(self, addr: int) -> Optional[tuple[int, int]]:
        """The busy area holding ``addr`` (``find_vmap_area``)."""
        keys = self._busy_starts
        i = bisect_right(keys, addr) - 1
        if i >= 0:
            s = keys[i]
            if addr < self.busy[s]:
                return s, self.busy[s]
        return None


@dataclass
class VmStruct:
    """``struct vm_struct`` of a live area: its pages (pfns, order 0 after splitting),
    where pages[] lives, the page-table pages it made the kernel allocate."""

    addr: int
    size: int  # incl. guard page
    flags: int
    caller: str
    requested_size: int
    pages: list[int] = field(default_factory=list)
    page_order: int = 0
    pages_addr: int = 0  # address of the pages[] array (kmalloc or vmalloc)
    vm_struct_addr: int = 0
    vmap_area_addr: int = 0
    phys_addr: int = 0

    @property
    def nr_pages(self) -> int:
        return len(self.pages)


AllocPages = Callable[[int, int, int], int]
FreePages = Callable[[int, int, int], None]


def format_vmallocinfo_line(vm: VmStruct, is_vmalloc_addr: Callable[[int], bool], numa: bool = True,
                            width: int = 16) -> str:
    """One ``vmalloc_info_show`` line (real addresses, as with kptr_restrict=1 and CAP_SYSLOG).

    >>> vm = VmStruct(0xffffc90000100000, 20480, VM_ALLOC, "kernel_clone+0x94/0x3e0", 16384, [1, 2, 3, 4])
    >>> format_vmallocinfo_line(vm, lambda a: False)
    '0xffffc90000100000-0xffffc90000105000   20480 kernel_clone+0x94/0x3e0 pages=4 vmalloc N0=4'
    """
    s = f"0x{vm.addr:0{width}x}-0x{vm.addr + vm.size:0{width}x} {vm.size:7d}"
    if vm.caller:
        s += f" {vm.caller}"
    if vm.nr_pages:
        s += f" pages={vm.nr_pages}"
    if vm.phys_addr:
        s += f" phys=0x{vm.phys_addr:0{width}x}"
    for bit, text in ((VM_IOREMAP, " ioremap"), (VM_SPARSE, " sparse"), (VM_ALLOC, " vmalloc"), (VM_MAP, " vmap"),
                      (VM_USERMAP, " user"), (VM_DMA_COHERENT, " dma-coherent")):
        if vm.flags & bit:
            s += text
    if vm.pages_addr and is_vmalloc_addr(vm.pages_addr):
        s += " vpages"
    if numa and vm.nr_pages:
        s += f" N0={vm.nr_pages}"
    return s


class Vmalloc:
    """vmalloc/vfree/kvmalloc of one kernel, on a page allocator and a :class:`SlabAllocator`.

    ``alloc_pages``/``free_pages`` are the buddy model's (with the kernel's event hooks);
    ``slab`` provides kmalloc/kfree and the ``vmap_area`` cache; ``layout`` the range and
    address predicates.  ``totalram_pages`` bounds a request (``vmalloc error: size …,
    exceeds total pages``).  Warnings are counted in ``warnings``.
    """

    def __init__(self, layout, slab, alloc_pages: AllocPages, free_pages: FreePages, nr_cpus: int,
                 totalram_pages: int, trace: Optional[Callable[..., None]] = None,
                 alloc_pages_bulk: Optional[AllocPages] = None,
                 huge_vmalloc: bool = False, kvmalloc_era: str = "6.16",
                 kvmalloc_nonblocking_fallback: bool = False) -> None:
        self.layout = layout
        self.slab = slab
        self._alloc_pages = alloc_pages
        self._free_pages = free_pages
        self._alloc_pages_bulk = alloc_pages_bulk or alloc_pages  # the bulk allocator emits no event
        self.nr_cpus = max(1, nr_cpus)
        self.totalram_pages = totalram_pages
        self.trace = trace
        self.huge_vmalloc = huge_vmalloc
        self.kvmalloc_era = kvmalloc_era
        self.kvmalloc_nonblocking_fallback = kvmalloc_nonblocking_fallback
        self.ptr_size = 8 if layout.arch == "x86_64" else 4
        self.sizeof_vm_struct = 72 if layout.arch == "x86_64" else 40  # 6.18 x86-64; x86-32 assumed
        self.pte_shift = 21 if layout.arch == "x86_64" or layout.pae else 22  # VA covered by one PTE page
        self.va = VmapAreaAllocator(layout.vmalloc_start, layout.vmalloc_end, nr_cpus)
        self.va.on_purge = self._purged
        self.vms: dict[int, VmStruct] = {}  # va_start -> live vm_struct
        self._unpurged_va_struct: dict[int, int] = {}  # lazy va_start -> vmap_area object address
        self.pte_pages: dict[int, int] = {}  # VA >> pte_shift -> pfn of its page-table page
        self.pmd_pages: dict[int, int] = {}  # x86-64: VA >> 30 -> pfn of its PMD page
        self.nr_vmalloc_pages = 0
        self.stat: Counter[str] = Counter()
        self.warnings: Counter[str] = Counter()
        self.vmap_area_cache = slab.by_name.get("vmap_area") or slab.kmem_cache_create("vmap_area", 72)

    # ---- helpers ----------------------------------------------------------------------
    def _warn(self, what: str, gfp: int) -> None:
        self.warnings[what if not gfp & _GFP_NOWARN else what + " [nowarn]"] += 1

    def _emit(self, event: str, **fields) -> None:
        if self.trace is not None:
            self.trace(event, **fields)

    def _purged(self, start: int, end: int, npurged: int) -> None:
        for va in list(self._unpurged_va_struct):
            obj = self._unpurged_va_struct.pop(va)
            if obj:  # merged into the free tree: the vmap_area object is freed
                self.slab.kmem_cache_free(self.vmap_area_cache, obj)
        self._emit("purge_vmap_area_lazy", start=start, end=end, npurged=npurged)

    def _map_pages(self, va_start: int, nr_pages: int, cpu: int) -> int:
        """``vmap_pages_range``: a kernel PTE page per 2 MiB (4 MiB on non-PAE x86-32) of VA
        touched, and on x86-64 a PMD page per 1 GiB; never freed for vmalloc space.
        Returns the number of page-table pages allocated (0 if all existed)."""
        new = 0
        if not nr_pages:
            return 0
        end = va_start + (nr_pages << PAGE_SHIFT) - 1
        gfp = G.GFP_KERNEL | _GFP_ZERO  # GFP_PGTABLE_KERNEL
        tables = [(self.pte_pages, self.pte_shift)]
        if self.layout.arch == "x86_64":
            tables.insert(0, (self.pmd_pages, 30))
        for table, shift in tables:
            for k in range(va_start >> shift, (end >> shift) + 1):
                if k not in table:
                    pfn = self._alloc_pages(gfp, 0, cpu)
                    if pfn < 0:
                        self.stat["pgtable_fail"] += 1
                        continue
                    table[k] = pfn
                    new += 1
        self.stat["pgtable_pages"] += new
        return new

    # ---- vmalloc ----------------------------------------------------------------------
    def vmalloc(self, size: int, gfp: int = G.GFP_KERNEL, align: int = 1, vm_flags: int = VM_ALLOC,
                caller: str = "vmalloc", cpu: int = 0, vstart: Optional[int] = None,
                vend: Optional[int] = None) -> int:
        """``__vmalloc_node_range``: a VA with a guard page, pages[] (kmalloc, or vmalloc when
        larger than a page), order-0 backing pages (``__GFP_HIGHMEM`` added unless DMA),
        page tables.  Returns the address or 0 (NULL, with a counted warning)."""
        cpu %= self.nr_cpus
        if size <= 0:
            self._warn("vmalloc: size 0 (WARN_ON_ONCE(!size))" if size == 0 else "vmalloc: negative size", 0)
            return 0
        real_size = size
        size = (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        if (size >> PAGE_SHIFT) > self.totalram_pages:
            self._warn("vmalloc error: size exceeds total pages", gfp)
            return 0
        shift = PAGE_SHIFT
        if (self.huge_vmalloc and vm_flags & VM_ALLOW_HUGE_VMAP and self.layout.arch == "x86_64"
                and size >= (2 << 20)):
            shift = 21
            size = (size + (2 << 20) - 1) & ~((2 << 20) - 1)
            align = max(align, 2 << 20)
        vm = self._get_vm_area(size, align, vm_flags, gfp, caller, cpu, vstart, vend, real_size)
        if vm is None:
            return 0
        if not self._vmalloc_area_node(vm, gfp, shift, cpu):
            self._warn("vmalloc error: failed to allocate pages", gfp)
            self.vfree(vm.addr, cpu)
            return 0
        self.stat["vmalloc"] += 1
        return vm.addr

    def _get_vm_area(self, size: int, align: int, flags: int, gfp: int, caller: str, cpu: int,
                     vstart: Optional[int], vend: Optional[int], requested: int) -> Optional[VmStruct]:
        """``__get_vm_area_node``: kzalloc the vm_struct, add the guard page, ``alloc_vmap_area``."""
        vm_obj, _ = self.slab.kmalloc(self.sizeof_vm_struct, (gfp & _GFP_RECLAIM_MASK) | _GFP_ZERO, cpu)
        if not vm_obj:
            return None
        if not flags & VM_NO_GUARD:
            size += PAGE_SIZE
        va_obj = self.slab.kmem_cache_alloc(self.vmap_area_cache, gfp & _GFP_RECLAIM_MASK, cpu)
        if not va_obj:
            self.slab.kfree(vm_obj, cpu)
            return None
        vstart = self.va.vstart if vstart is None else vstart
        vend = self.va.vend if vend is None else vend
        addr = self.va.alloc(size, max(align, PAGE_SIZE), vstart, vend)
        self._emit("alloc_vmap_area", va_start=addr if addr >= 0 else 0, size=size, align=align,
                   vstart=vstart, vend=vend, failed=int(addr < 0))
        if addr < 0:
            self._warn("vmalloc_node_range: address range exhausted (alloc_vmap_area failed)", gfp)
            self.slab.kmem_cache_free(self.vmap_area_cache, va_obj, cpu)
            self.slab.kfree(vm_obj, cpu)
            return None
        vm = VmStruct(addr, size, flags, caller, requested, vm_struct_addr=vm_obj, vmap_area_addr=va_obj)
        self.vms[addr] = vm
        return vm

    def _vmalloc_area_node(self, vm: VmStruct, gfp: int, shift: int, cpu: int) -> bool:
        """``__vmalloc_area_node`` + ``vm_area_alloc_pages`` + ``vmap_pages_range``."""
        nr_small = (vm.size - (0 if vm.flags & VM_NO_GUARD else PAGE_SIZE)) >> PAGE_SHIFT
        nested_gfp = (gfp & _GFP_RECLAIM_MASK) | _GFP_ZERO
        if not gfp & (_GFP_DMA | _GFP_DMA32):
            gfp |= _GFP_HIGHMEM
        array_size = nr_small * self.ptr_size
        if array_size > PAGE_SIZE:
            vm.pages_addr = self.vmalloc(array_size, nested_gfp, 1, VM_ALLOC, vm.caller, cpu)
            self.stat["vpages"] += 1
        else:
            vm.pages_addr, _ = self.slab.kmalloc(array_size, nested_gfp, cpu)
        if not vm.pages_addr:
            return False
        page_gfp = gfp | _GFP_NOWARN
        order = shift - PAGE_SHIFT
        pages = vm.pages
        if order:
            hgfp = (page_gfp & ~_GFP_NOFAIL) | G.__GFP_COMP
            while len(pages) < nr_small:
                pfn = self._alloc_pages(hgfp, order, cpu)
                if pfn < 0:
                    break
                pages.extend(range(pfn, pfn + (1 << order)))  # split_page(): order-0 entries
                self.stat["huge_pages"] += 1
            vm.page_order = order if len(pages) == nr_small else 0
        single = self._alloc_pages if gfp & _GFP_ACCOUNT else self._alloc_pages_bulk
        while len(pages) < nr_small:  # bulk (<= 100 per call, untraced unless ACCOUNT) then single pages
            pfn = single(page_gfp, 0, cpu)
            if pfn < 0:
                break
            pages.append(pfn)
        self.stat["backing_pages"] += len(pages)
        self.stat["bulk_pages" if not gfp & _GFP_ACCOUNT else "traced_pages"] += len(pages)
        self.nr_vmalloc_pages += len(pages)
        if len(pages) < nr_small:
            return False
        self._map_pages(vm.addr, nr_small, cpu)
        return True

    def vfree(self, addr: int, cpu: int = 0) -> int:
        """``vfree``: NULL is a no-op; the VA goes to the lazy list (``free_vmap_area_noflush``),
        the backing pages go back at once (order 0 each), then pages[] and the vm_struct.
        Returns the number of pages freed; an unknown address is a counted WARN."""
        if not addr:
            return 0
        cpu %= self.nr_cpus
        vm = self.vms.pop(addr, None)
        if vm is None:
            self._warn("vfree: trying to vfree() nonexistent vm area", 0)
            return 0
        nr_lazy = self.va.free_noflush(vm.addr, purge=False)
        self._unpurged_va_struct[vm.addr] = vm.vmap_area_addr
        self._emit("free_vmap_area_noflush", va_start=vm.addr, nr_lazy=nr_lazy, nr_lazy_max=self.va.lazy_max_pages)
        if nr_lazy > self.va.lazy_max_pages:  # drain_vmap_work
            self.va.purge()
        for pfn in vm.pages:
            self._free_pages(pfn, 0, cpu)
        self.nr_vmalloc_pages -= len(vm.pages)
        if vm.pages_addr:
            self.kvfree(vm.pages_addr, cpu)
        self.slab.kfree(vm.vm_struct_addr, cpu)
        self.stat["vfree"] += 1
        return len(vm.pages)

    def vmalloc_to_pfn(self, addr: int) -> int:
        """``vmalloc_to_pfn``: the page-table walk; -1 for the guard page or an unmapped address."""
        vm = self._vm_of(addr)
        if vm is None:
            return -1
        i = (addr - vm.addr) >> PAGE_SHIFT
        return vm.pages[i] if i < len(vm.pages) else -1

    def _vm_of(self, addr: int) -> Optional[VmStruct]:
        hit = self.va.find(addr)
        return None if hit is None else self.vms.get(hit[0])

    # ---- kvmalloc ---------------------------------------------------------------------
    def kvmalloc(self, size: int, gfp: int = G.GFP_KERNEL, cpu: int = 0, caller: str = "kvmalloc") -> tuple[int, str]:
        """``kvmalloc``: kmalloc with :func:`kmalloc_gfp_adjust` flags; on failure, only for
        ``PAGE_SIZE < size <= INT_MAX`` and a caller that may sleep, vmalloc with
        VM_ALLOW_HUGE_VMAP.  Returns (address or 0, "kmalloc" | "vmalloc" | "failed")."""
        if size == 0:
            return self.slab.kmalloc(0, gfp, cpu)[0], "kmalloc"
        if size < 0:
            self._warn("kvmalloc: negative size", gfp)
            return 0, "failed"
        addr, _ = self.slab.kmalloc(size, kmalloc_gfp_adjust(gfp, size, self.kvmalloc_era), cpu)
        if addr or size <= PAGE_SIZE:
            return addr, ("kmalloc" if addr else "failed")
        if not gfp & _GFP_DIRECT_RECLAIM and not self.kvmalloc_nonblocking_fallback:
            self.stat["kvmalloc_nonblocking_null"] += 1
            return 0, "failed"
        if size > INT_MAX:
            self._warn("kvmalloc: size > INT_MAX", gfp)
            return 0, "failed"
        self.stat["kvmalloc_fallback"] += 1
        addr = self.vmalloc(size, gfp, 1, VM_ALLOC | VM_ALLOW_HUGE_VMAP, caller, cpu)
        return addr, ("vmalloc" if addr else "failed")

    def kvfree(self, addr: int, cpu: int = 0) -> None:
        """``kvfree``: vfree for vmalloc addresses (``is_vmalloc_addr``), else kfree."""
        if addr and self.layout.is_vmalloc_addr(addr):
            self.vfree(addr, cpu)
        else:
            self.slab.kfree(addr, cpu)

    # ---- /proc/vmallocinfo ------------------------------------------------------------
    def vmallocinfo(self, numa: bool = True) -> str:
        """The model's ``/proc/vmallocinfo``: busy areas in address order, then the lazy
        (``unpurged vm_area``) ones."""
        width = 16 if self.layout.arch == "x86_64" else 8
        lines = [format_vmallocinfo_line(self.vms[a], self.layout.is_vmalloc_addr, numa, width)
                 for a in sorted(self.vms)]
        for s in sorted(self.va.lazy):
            e = self.va.lazy[s]
            lines.append(f"0x{s:0{width}x}-0x{e:0{width}x} {e - s:7d} unpurged vm_area")
        return "".join(line + "\n" for line in lines)
