"""User space: a process address space with glibc-like malloc and demand paging.

Kernel side (mm/memory.c ``do_anonymous_page``, ``do_wp_page``; mm/huge_memory.c
``do_huge_pmd_anonymous_page``; mm/mmap.c top-down ``get_unmapped_area``; mm/swap.c
``free_unref_folios``): nothing is backed until first touch; a first *write* to an
anonymous page allocates an order-0 movable page
``GFP_HIGHUSER_MOVABLE|__GFP_ZERO|__GFP_COMP``, a first *read* maps the shared zero
page (no allocation, a later write copies: same mask); in a MADV_HUGEPAGE range
(THP ``enabled=madvise``) a fault whose 2 MiB-aligned block lies inside the VMA
allocates order 9 ``GFP_TRANSHUGE|__GFP_NORETRY|__GFP_THISNODE`` (``defrag=madvise``)
and falls back to order 0 (``enabled=always``: every VMA not MADV_NOHUGEPAGE, with
``GFP_TRANSHUGE_LIGHT`` unless madvised).  Page-table pages (``GFP_KERNEL_ACCOUNT|__GFP_ZERO|__GFP_COMP``):
one PTE page per 2 MiB (4 MiB on non-PAE x86-32) of touched VA, one PMD page per
1 GiB and one PUD page per 512 GiB on x86-64.  munmap and exit free the pages in
batches (one ``mm_page_free`` per folio, in address order).  KERNEL.md section 13.

glibc side (malloc/malloc.c, 2.26+; simplified): requests below M_MMAP_THRESHOLD
(128 KiB, dynamic: raised to the size of a freed mmapped chunk up to 32 MiB on
64-bit, 512 KiB on 32-bit; trim threshold twice that) come from the brk heap,
grown by ``sbrk(nb + M_TOP_PAD)`` page-rounded and trimmed when the top chunk
exceeds the trim threshold; larger ones get their own anonymous mmap of
``ALIGN_UP(nb + SIZE_SZ, PAGE_SIZE)``, the pointer 2*SIZE_SZ past the mapping start.
The first malloc allocates the tcache (``tcache_perthread_struct``) chunk.  Bins are
reduced to an address-ordered best fit over free heap chunks with coalescing; tcache
and fastbin caching of freed chunks is not modelled.

>>> from kmemdes.mm.mm_init import build_node, parse_size
>>> node = build_node("x86_64", parse_size("1G"))
>>> p = Process(node.alloc_pages, node.free_pages, "x86_64", seed=1)
>>> a = p.malloc(1000000); (a - 16) % 4096, p.rss_pages
(0, 0)
>>> p.touch(a, 10000), p.rss_pages   # 3 pages faulted in (+ page tables)
(3, 3)
"""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right, insort
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Optional

from kmemdes.errors import KmemdesError
from kmemdes.mm import gfp as G

__all__ = [
    "PAGE_SIZE",
    "GFP_ANON",
    "GFP_THP_MADVISE",
    "GFP_THP_LIGHT",
    "GFP_PGTABLE_USER",
    "MADV_HUGEPAGE",
    "MADV_NOHUGEPAGE",
    "Vma",
    "Process",
]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
HPAGE_ORDER = 9
HPAGE_SIZE = PAGE_SIZE << HPAGE_ORDER

#: first write to anonymous memory (vma_alloc_zeroed_movable_folio, 6.x)
GFP_ANON = G.GFP_HIGHUSER_MOVABLE | G.__GFP_ZERO | G.__GFP_COMP
#: THP fault under defrag=madvise in a MADV_HUGEPAGE VMA, first (local-node) try
GFP_THP_MADVISE = G.GFP_TRANSHUGE | G.__GFP_NORETRY | G.__GFP_THISNODE
#: THP fault under defrag=madvise outside a MADV_HUGEPAGE VMA (thp enabled=always)
GFP_THP_LIGHT = G.GFP_TRANSHUGE_LIGHT | G.__GFP_NORETRY | G.__GFP_THISNODE
#: what alloc_pages_mpol adds for the first, local-node-only THP try (and drops for its retry)
_THP_LOCAL_TRY = G.__GFP_NORETRY | G.__GFP_THISNODE
_GFP_DIRECT_RECLAIM = G.__GFP_DIRECT_RECLAIM
#: user page tables (GFP_PGTABLE_USER, folio allocation)
GFP_PGTABLE_USER = G.GFP_KERNEL_ACCOUNT | G.__GFP_ZERO | G.__GFP_COMP

GFP_PGD = G.GFP_KERNEL_ACCOUNT | G.__GFP_ZERO

MADV_HUGEPAGE = 14
MADV_NOHUGEPAGE = 15

AllocPages = Callable[[int, int, int], int]
FreePages = Callable[[int, int, int], None]


@dataclass
class Vma:
    """``vm_area_struct`` of an anonymous mapping (``[heap]`` or an mmap)."""

    start: int
    end: int
    name: str = ""
    hugepage: bool = False  # VM_HUGEPAGE (MADV_HUGEPAGE)
    nohugepage: bool = False  # VM_NOHUGEPAGE (MADV_NOHUGEPAGE)

    def __contains__(self, addr: int) -> bool:
        return self.start <= addr < self.end


class Process:
    """One process: VMAs, resident pages, page tables, and a glibc-like malloc.

    ``alloc_pages``/``free_pages`` are the page allocator's; ``thp`` is the THP
    ``enabled`` mode (``always``, ``madvise``, ``never``).  Deterministic for a seed
    (the seed randomises the mmap base and brk start as ASLR would).
    """

    def __init__(self, alloc_pages: AllocPages, free_pages: FreePages, arch: str = "x86_64",
                 name: str = "a.out", pid: int = 1000, seed: int = 0, thp: str = "madvise",
                 cpu: int = 0) -> None:
        if arch not in ("x86_64", "x86_32"):
            raise KmemdesError(f"unknown arch {arch!r}")
        if thp not in ("always", "madvise", "never"):
            raise KmemdesError(f"THP mode {thp!r}: use always, madvise or never")
        self._alloc_pages = alloc_pages
        self._free_pages = free_pages
        self.arch = arch
        self.name = name
        self.pid = pid
        self.cpu = cpu
        self.thp = thp if arch == "x86_64" else "never"
        rng = random.Random(seed)
        self.size_sz = 8 if arch == "x86_64" else 4
        self.malloc_align = 16  # MALLOC_ALIGNMENT (also on i386 since glibc 2.26)
        self.minsize = 4 * self.size_sz if arch == "x86_64" else 16
        if arch == "x86_64":
            self.task_size = 0x7FFFFFFFF000
            self.mmap_base = (self.task_size - (128 << 20) - (rng.randrange(1 << 28) << PAGE_SHIFT)) & ~(PAGE_SIZE - 1)
            self.brk_start = 0x555555554000 + (rng.randrange(1 << 20) << PAGE_SHIFT) + 0x5000
            self.mmap_threshold_max = 32 << 20
            self.pte_shift, self.levels = 21, ((30, "pmd"), (39, "pud"))
        else:
            self.task_size = 0xC0000000
            self.mmap_base = (self.task_size - (128 << 20) - (rng.randrange(1 << 8) << PAGE_SHIFT)) & ~(PAGE_SIZE - 1)
            self.brk_start = 0x0804C000 + (rng.randrange(1 << 13) << PAGE_SHIFT)
            self.mmap_threshold_max = 512 << 10
            self.pte_shift, self.levels = 22, ()
        self.vmas: list[Vma] = []  # sorted by start
        self._vma_starts: list[int] = []
        self.pte: dict[int, int] = {}  # virtual page number -> pfn (order-0 pages)
        self.thp_map: dict[int, int] = {}  # huge page number (va >> 21) -> head pfn (order 9)
        self.zero_mapped: set[int] = set()  # vpns mapping the shared zero page
        self.pgtables: dict[tuple[str, int], int] = {}  # (level, index) -> pfn
        self.pgd_pfn = self._alloc_pages(GFP_PGD, 0, cpu)  # pgd_alloc
        self._last_pte = -1
        self.stat: Counter[str] = Counter()
        # glibc state
        self.mmap_threshold = 128 << 10
        self.trim_threshold = 128 << 10
        self.top_pad = 128 << 10
        self.brk = self.brk_start
        self.heap_top = self.brk_start  # start of the top chunk
        self.heap_free: list[tuple[int, int]] = []  # free chunks (start, size), address order
        self.chunks: dict[int, tuple[int, int, bool]] = {}  # user ptr -> (chunk start, chunk size, mmapped)
        self._tcache_done = False
        self.exited = False

    # ---- address space ----------------------------------------------------------------
    @property
    def rss_pages(self) -> int:
        """Resident anonymous pages (RSS without page tables)."""
        return len(self.pte) + (len(self.thp_map) << HPAGE_ORDER)

    def find_vma(self, addr: int) -> Optional[Vma]:
        i = bisect_right(self._vma_starts, addr) - 1
        if i >= 0 and addr < self.vmas[i].end:
            return self.vmas[i]
        return None

    def _insert_vma(self, vma: Vma) -> None:
        i = bisect_left(self._vma_starts, vma.start)
        self._vma_starts.insert(i, vma.start)
        self.vmas.insert(i, vma)

    def _remove_vma(self, vma: Vma) -> None:
        i = self.vmas.index(vma)
        del self.vmas[i], self._vma_starts[i]

    def _get_unmapped_area(self, length: int) -> int:
        """Top-down ``vm_unmapped_area`` below ``mmap_base``: the highest gap that fits."""
        top = self.mmap_base
        for vma in reversed(self.vmas):
            if vma.start >= self.mmap_base or vma.end > top:
                top = min(top, vma.start)
                continue
            if top - vma.end >= length:
                return top - length
            top = vma.start
        floor = max(self.brk, PAGE_SIZE << 4)
        return top - length if top - length >= floor else -1

    def mmap(self, length: int, name: str = "") -> int:
        """Anonymous private ``mmap``: page-rounded, placed top-down; no page is allocated.
        Returns the address or -1 (ENOMEM)."""
        if length <= 0:
            return -1
        length = (length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        addr = self._get_unmapped_area(length)
        if addr < 0:
            self.stat["mmap_enomem"] += 1
            return -1
        self._insert_vma(Vma(addr, addr + length, name))
        self.stat["mmap"] += 1
        return addr

    def madvise(self, addr: int, length: int, advice: int) -> None:
        """``madvise(MADV_HUGEPAGE / MADV_NOHUGEPAGE)`` on whole VMAs inside the range."""
        for vma in self.vmas:
            if vma.start < addr + length and vma.end > addr:
                vma.hugepage = advice == MADV_HUGEPAGE
                vma.nohugepage = advice == MADV_NOHUGEPAGE

    def munmap(self, addr: int, length: int) -> int:
        """``munmap``: drop the VMAs in [addr, addr+length) (whole VMAs or their ends) and free
        their pages in one batch; page tables no longer covering any VMA are freed.
        Returns the number of base pages freed."""
        end = addr + ((length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1))
        freed = 0
        for vma in [v for v in self.vmas if v.start < end and v.end > addr]:
            s, e = max(vma.start, addr), min(vma.end, end)
            freed += self._zap_range(s, e)
            self._remove_vma(vma)
            if vma.start < s:
                self._insert_vma(Vma(vma.start, s, vma.name, vma.hugepage, vma.nohugepage))
            if e < vma.end:
                self._insert_vma(Vma(e, vma.end, vma.name, vma.hugepage, vma.nohugepage))
        self._free_pgtables(addr, end)
        self.stat["munmap"] += 1
        return freed

    def _zap_range(self, s: int, e: int) -> int:
        """``zap_page_range`` + ``free_unref_folios``: folios freed in address order."""
        freed = 0
        cpu = self.cpu
        for hpn in sorted(h for h in self.thp_map if s <= (h << 21) < e):
            pfn = self.thp_map.pop(hpn)
            if (hpn << 21) + HPAGE_SIZE > e:  # partial unmap of a THP: split (kept simple: free all)
                self.stat["thp_split"] += 1
            self._free_pages(pfn, HPAGE_ORDER, cpu)
            freed += 1 << HPAGE_ORDER
        lo, hi = s >> PAGE_SHIFT, e >> PAGE_SHIFT
        if hi - lo < len(self.pte):
            vpns = [v for v in range(lo, hi) if v in self.pte]
        else:
            vpns = sorted(v for v in self.pte if lo <= v < hi)
        for v in vpns:
            self._free_pages(self.pte.pop(v), 0, cpu)
        freed += len(vpns)
        self.zero_mapped.difference_update(range(lo, hi)) if hi - lo < 1 << 16 else None
        self.stat["pages_freed"] += freed
        return freed

    def _covered(self, start: int, end: int) -> bool:
        return any(v.start < end and v.end > start for v in self.vmas)

    def _free_pgtables(self, s: int, e: int) -> None:
        """``free_pgtables``: page-table pages whose whole span has no VMA left."""
        for key in [k for k in self.pgtables]:
            level, idx = key
            shift = {"pte": self.pte_shift, "pmd": 30, "pud": 39}[level]
            lo, hi = idx << shift, (idx + 1) << shift
            if lo < e and hi > s and not self._covered(lo, hi):
                self._free_pages(self.pgtables.pop(key), 0, self.cpu)
                self.stat["pgtable_freed"] += 1

    # ---- faults -----------------------------------------------------------------------
    def _pgtable(self, level: str, idx: int) -> None:
        if (level, idx) not in self.pgtables:
            pfn = self._alloc_pages(GFP_PGTABLE_USER, 0, self.cpu)
            if pfn >= 0:
                self.pgtables[(level, idx)] = pfn
                self.stat["pgtable_pages"] += 1

    def _walk_alloc(self, addr: int) -> None:
        idx = addr >> self.pte_shift
        if idx == self._last_pte and ("pte", idx) in self.pgtables:
            return
        for shift, level in self.levels:  # __pud_alloc, __pmd_alloc
            self._pgtable(level, addr >> shift)
        self._pgtable("pte", idx)  # __pte_alloc (THP: deposited page table)
        self._last_pte = idx

    def fault(self, addr: int, write: bool = True) -> int:
        """``handle_mm_fault`` for an anonymous address; returns the pfn mapped (-1: zero page
        on a read, -2: SIGSEGV outside any VMA, -3: OOM)."""
        vma = self.find_vma(addr)
        if vma is None:
            self.stat["segv"] += 1
            return -2
        vpn = addr >> PAGE_SHIFT
        pfn = self.pte.get(vpn)
        if pfn is not None:
            return pfn
        hpn = addr >> 21
        if hpn in self.thp_map:
            return self.thp_map[hpn] + (vpn & 511)
        self._walk_alloc(addr)
        if not write and vpn not in self.zero_mapped:
            self.zero_mapped.add(vpn)  # do_anonymous_page: read fault maps the zero page
            self.stat["zero_page_faults"] += 1
            return -1
        if not write:
            return -1
        hstart = hpn << 21
        thp_ok = vma.hugepage if self.thp == "madvise" else (self.thp == "always" and not vma.nohugepage)
        if (thp_ok and vpn not in self.zero_mapped
                and vma.start <= hstart and hstart + HPAGE_SIZE <= vma.end
                and not any(v in self.pte for v in range(hstart >> PAGE_SHIFT, (hstart >> PAGE_SHIFT) + 512))):
            # defrag=madvise (vma_thp_gfp_mask): madvised VMAs may direct-reclaim/compact, others get
            # the light mask; the first try is local-node only with NORETRY (mempolicy)
            gfp = GFP_THP_MADVISE if vma.hugepage else GFP_THP_LIGHT
            pfn = self._alloc_pages(gfp, HPAGE_ORDER, self.cpu)
            if pfn < 0 and gfp & _GFP_DIRECT_RECLAIM:
                # alloc_pages_mpol: a madvised VMA retries the failed local try allowing remote
                # memory "with both reclaim and compact" (no __GFP_NORETRY / __GFP_THISNODE)
                pfn = self._alloc_pages(gfp & ~_THP_LOCAL_TRY, HPAGE_ORDER, self.cpu)
            if pfn >= 0:
                self.thp_map[hpn] = pfn
                self.stat["thp_faults"] += 1
                return pfn + (vpn & 511)
            self.stat["thp_fallback"] += 1
        pfn = self._alloc_pages(GFP_ANON, 0, self.cpu)
        if pfn < 0:
            self.stat["oom"] += 1
            return -3
        if vpn in self.zero_mapped:
            self.zero_mapped.discard(vpn)
            self.stat["cow_faults"] += 1
        self.pte[vpn] = pfn
        self.stat["faults"] += 1
        return pfn

    def touch(self, addr: int, length: int, write: bool = True) -> int:
        """Access every page of [addr, addr+length); returns the number of pages allocated."""
        before = self.rss_pages
        first, last = addr >> PAGE_SHIFT, (addr + max(length, 1) - 1) >> PAGE_SHIFT
        pte, fault = self.pte, self.fault
        for vpn in range(first, last + 1):
            if vpn in pte:
                continue
            if fault(vpn << PAGE_SHIFT, write) == -2:
                raise KmemdesError(f"{self.name}[{self.pid}]: SIGSEGV at {vpn << PAGE_SHIFT:#x}")
        return self.rss_pages - before

    def read(self, addr: int, length: int) -> int:
        """Read every page: untouched anonymous pages map the zero page; returns pages allocated (0)."""
        return self.touch(addr, length, write=False)

    def resident(self, addr: int, length: int) -> list[int]:
        """pfn behind each page of the range (-1: not present / zero page)."""
        out = []
        for vpn in range(addr >> PAGE_SHIFT, ((addr + max(length, 1) - 1) >> PAGE_SHIFT) + 1):
            pfn = self.pte.get(vpn)
            if pfn is None and (vpn >> 9) in self.thp_map:
                pfn = self.thp_map[vpn >> 9] + (vpn & 511)
            out.append(-1 if pfn is None else pfn)
        return out

    # ---- glibc malloc -----------------------------------------------------------------
    def _request2size(self, n: int) -> int:
        mask = self.malloc_align - 1
        return max(self.minsize, (n + self.size_sz + mask) & ~mask)

    def _sbrk(self, incr: int) -> bool:
        """``brk``: grow (or shrink) the ``[heap]`` VMA."""
        new = self.brk + incr
        if new < self.brk_start:
            return False
        heap = self.find_vma(self.brk_start) if self.brk > self.brk_start else None
        nxt = [v for v in self.vmas if v.start >= self.brk and v is not heap]
        if incr > 0 and (new > self.task_size - PAGE_SIZE
                         or nxt and nxt[0].start < ((new + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1))):
            return False
        end = (new + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        if heap is None and end > self.brk_start:
            self._insert_vma(Vma(self.brk_start, end, "[heap]"))
        elif heap is not None:
            if end < heap.end:
                self._zap_range(end, heap.end)
                if end == heap.start:
                    self._remove_vma(heap)
                else:
                    heap.end = end
                self._free_pgtables(end, heap.end if end > heap.start else end + PAGE_SIZE)
            else:
                heap.end = end
        self.brk = new
        self.stat["brk"] += 1
        return True

    def _heap_alloc(self, nb: int) -> int:
        """Best fit over free heap chunks (address order breaks ties), else the top chunk,
        growing the heap with sbrk(nb + top_pad) when needed.  Returns the chunk start or -1."""
        best = -1
        for i, (s, size) in enumerate(self.heap_free):
            if size >= nb and (best < 0 or size < self.heap_free[best][1]):
                best = i
                if size == nb:
                    break
        if best >= 0:
            s, size = self.heap_free.pop(best)
            if size - nb >= self.minsize:
                insort(self.heap_free, (s + nb, size - nb))
                size = nb
            return s | (size << 64)  # packed: start, real chunk size
        top_size = self.brk - self.heap_top
        if top_size < nb + self.minsize:
            grow = nb + self.top_pad + self.minsize - top_size
            grow = (grow + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
            if not self._sbrk(grow):
                return -1
        s = self.heap_top
        self.heap_top += nb
        return s | (nb << 64)

    def malloc(self, n: int) -> int:
        """glibc ``malloc``: a user pointer or 0 (ENOMEM).  ``n >= mmap_threshold`` gets an mmap."""
        if n < 0 or n > (1 << (63 if self.arch == "x86_64" else 31)) - 1:
            self.stat["malloc_enomem"] += 1
            return 0
        if not self._tcache_done:  # tcache_init(): the first chunk of the heap
            self._tcache_done = True
            tsize = self._request2size(64 * (2 + self.size_sz))
            packed = self._heap_alloc(tsize)
            if packed >= 0:
                self.chunks[-1] = (packed & ((1 << 64) - 1), packed >> 64, False)
        nb = self._request2size(n)
        if nb >= self.mmap_threshold:
            size = (nb + self.size_sz + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
            addr = self.mmap(size, name="malloc")
            if addr >= 0:
                ptr = addr + 2 * self.size_sz
                self.chunks[ptr] = (addr, size, True)
                self.stat["malloc_mmap"] += 1
                return ptr
            # sysmalloc falls back to the heap when mmap fails
        packed = self._heap_alloc(nb)
        if packed < 0:
            self.stat["malloc_enomem"] += 1
            return 0
        start, size = packed & ((1 << 64) - 1), packed >> 64
        ptr = start + 2 * self.size_sz
        self.chunks[ptr] = (start, size, False)
        self.stat["malloc_brk"] += 1
        return ptr

    def free(self, ptr: int) -> None:
        """glibc ``free``: munmap an mmapped chunk (raising the dynamic threshold), else
        coalesce into the heap and trim the top beyond ``trim_threshold``."""
        if ptr == 0:
            return
        rec = self.chunks.pop(ptr, None)
        if rec is None:
            raise KmemdesError(f"{self.name}[{self.pid}]: free(): invalid pointer {ptr:#x}")
        start, size, mmapped = rec
        if mmapped:
            if self.mmap_threshold < size <= self.mmap_threshold_max:
                self.mmap_threshold = size
                self.trim_threshold = 2 * size
                self.stat["threshold_raised"] += 1
            self.munmap(start, size)
            return
        # coalesce with free neighbours and with top
        i = bisect_left(self.heap_free, (start, 0))
        if i > 0 and sum(self.heap_free[i - 1]) == start:
            start, size = self.heap_free[i - 1][0], self.heap_free[i - 1][1] + size
            del self.heap_free[i - 1]
            i -= 1
        if i < len(self.heap_free) and self.heap_free[i][0] == start + size:
            size += self.heap_free[i][1]
            del self.heap_free[i]
        if start + size == self.heap_top:
            self.heap_top = start
            top = self.brk - self.heap_top
            if top > self.trim_threshold:  # systrim: keep top_pad, whole pages only
                extra = ((top - self.top_pad - 1) // PAGE_SIZE) * PAGE_SIZE
                if extra > 0:
                    self._sbrk(-extra)
                    self.stat["trim"] += 1
        else:
            insort(self.heap_free, (start, size))

    # ---- exit -------------------------------------------------------------------------
    def exit(self) -> int:
        """``exit_mmap``: every VMA unmapped (pages freed in batches), then page tables and the
        PGD.  Returns the number of base pages freed (page tables included)."""
        if self.exited:
            return 0
        freed = 0
        for vma in list(self.vmas):
            freed += self._zap_range(vma.start, vma.end)
        self.vmas.clear()
        self._vma_starts.clear()
        for key in sorted(self.pgtables):
            self._free_pages(self.pgtables.pop(key), 0, self.cpu)
            freed += 1
        if self.pgd_pfn >= 0:
            self._free_pages(self.pgd_pfn, 0, self.cpu)
            freed += 1
        self.exited = True
        return freed
