"""Virtual address-space layouts: x86-64 (4-level paging) and 32-bit x86 (3G/1G split).

Models where the kernel puts its address regions and the conversions that only
hold inside the direct map: ``__pa``/``virt_to_phys``, ``__va``/``phys_to_virt``,
``virt_to_page``, ``pfn_to_page``, ``page_to_pfn``.  Like a kernel built with
CONFIG_DEBUG_VIRTUAL they *refuse* an address outside the direct map (a vmalloc
address needs ``vmalloc_to_page``, a highmem page has no permanent mapping).

Sources: arch/x86/include/asm/page_64_types.h, pgtable_64_types.h,
Documentation/arch/x86/x86_64/mm.rst (x86-64); arch/x86/include/asm/page_32_types.h,
pgtable_32_areas.h, fixmap.h, cpu_entry_area.h, arch/x86/mm/init_32.c
(x86-32: ``VMALLOC_START = high_memory + VMALLOC_OFFSET``, ``MAXMEM``, the old
"virtual kernel memory layout" boot message).  KERNEL.md section 12.

x86-32 assumptions (the exact top of the address space depends on the build):
``CONFIG_NR_CPUS=8`` (the 32-bit SMP default), HIGHMEM4G (no PAE: PMD 4 MiB,
LAST_PKMAP 1024), KMAP_LOCAL with KM_MAX_IDX 16, local APIC and IO-APIC
(MAX_IO_APICS 64 on 32-bit), PCI_MMCONFIG, no PARAVIRT_XXL/GHES/TXT, a
40-page ``struct cpu_entry_area`` per CPU (gdt, entry stack, 5-page TSS with I/O
bitmaps, Intel debug store + 128 KiB BTS/PEBS buffers), FIXADDR_TOP
0xfffff000, ``__VMALLOC_RESERVE`` 128 MiB.  That gives PKMAP_BASE 0xff000000,
VMALLOC_END 0xfeffe000 and a lowmem limit (MAXMEM) of 0x36ffe000 (~880 MiB;
0x375fe000, ~886 MiB, with PAE).  "896 MiB" is the classic figure of the 2.4/2.6
era, when ``MAXMEM`` was ``-PAGE_OFFSET - VMALLOC_RESERVE`` (4G - 3G - 128M) and the
fixmap came out of the vmalloc reserve.  :func:`x86_32_max_low_pfn` is the one
definition of the lowmem end: the direct map here *and* the Normal/HighMem zone
boundary of :func:`kmemdes.mm.mm_init.build_node` (the kernel's ``zone_sizes_init``
sets ``max_zone_pfns[ZONE_NORMAL] = max_low_pfn``).  ``mem_map``
(FLATMEM) is placed at the top of lowmem with 32-byte ``struct page``.

>>> lay = build_layout("x86_64", 24 << 30)
>>> hex(lay.virt_to_phys(0xffff88814f89f000)), hex(lay.pfn_to_page(0x14f89f))
('0x14f89f000', '0xffffea00053e27c0')
>>> l32 = build_layout("x86_32", 160 << 20)
>>> hex(l32.high_memory), hex(l32.vmalloc_start), hex(l32.vmalloc_end)
('0xca000000', '0xca800000', '0xfeffe000')
>>> l32.region_of(0xcb000000)
'vmalloc'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from kmemdes.errors import KmemdesError

__all__ = [
    "PAGE_SIZE",
    "PAGE_SHIFT",
    "AddressError",
    "Region",
    "Layout",
    "build_layout",
    "format_layout",
    "x86_32_maxmem",
    "x86_32_max_low_pfn",
    "x86_32_pae",
    "ARCHES",
]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
ARCHES = ("x86_64", "x86_32")

_KiB = 1 << 10
_MiB = 1 << 20
_GiB = 1 << 30
_TiB = 1 << 40


class AddressError(KmemdesError, ValueError):
    """A conversion the kernel refuses (``VIRTUAL_BUG_ON`` under CONFIG_DEBUG_VIRTUAL).

    >>> build_layout("x86_64", 1 << 30).virt_to_phys(0xffffc90000001000)
    Traceback (most recent call last):
    ...
    kmemdes.mm.layout.AddressError: virt_to_phys(0xffffc90000001000): a vmalloc address is not in the direct map; its pages are scattered: use vmalloc_to_page()
    """


@dataclass(frozen=True)
class Region:
    """One virtual region: ``[start, end)`` and what lives there."""

    name: str
    start: int
    end: int  # exclusive
    what: str

    @property
    def size(self) -> int:
        return self.end - self.start


# --- x86-64 4-level constants (Documentation/arch/x86/x86_64/mm.rst) -----------------
_X64_PAGE_OFFSET = 0xFFFF888000000000
_X64_DIRECT_END = 0xFFFFC88000000000  # 64 TiB of direct map
_X64_VMALLOC_START = 0xFFFFC90000000000
_X64_VMALLOC_END = 0xFFFFE8FFFFFFFFFF  # inclusive, as the kernel defines it
_X64_VMEMMAP = 0xFFFFEA0000000000
_X64_VMEMMAP_END = 0xFFFFEB0000000000
_X64_CPU_ENTRY = 0xFFFFFE0000000000
_X64_CPU_ENTRY_END = 0xFFFFFE8000000000
_X64_START_KERNEL_MAP = 0xFFFFFFFF80000000
# MODULES_VADDR = __START_KERNEL_map + KERNEL_IMAGE_SIZE (pgtable_64_types.h); KERNEL_IMAGE_SIZE is
# 1 GiB with CONFIG_RANDOMIZE_BASE=y, as in the reference 6.18 config (512 MiB without it, the
# 0xffffffffa0000000 of mm.rst's table) -- page_64_types.h
_X64_MODULES = 0xFFFFFFFFC0000000
_X64_MODULES_END = 0xFFFFFFFFFF000000
_X64_FIXMAP_END = 0xFFFFFFFFFF600000
_X64_TASK_SIZE = 0x00007FFFFFFFF000
_X64_PHYS_START = 0x1000000  # CONFIG_PHYSICAL_START 16 MiB: _text = 0xffffffff81000000

# --- x86-32 constants ------------------------------------------------------------------
_X32_PAGE_OFFSET = 0xC0000000
_X32_VMALLOC_OFFSET = 8 * _MiB
_X32_VMALLOC_RESERVE = 128 * _MiB
_X32_FIXADDR_TOP = 0xFFFFF000


def _x32_fixmap_pages(nr_cpus: int, pae: bool = False) -> tuple[int, int]:
    """``__end_of_permanent_fixed_addresses`` and ``__end_of_fixed_addresses``.

    Walks ``enum fixed_addresses`` (arch/x86/include/asm/fixmap.h) for the
    assumed configuration (module docstring).  The boot-time btmap slots are
    moved up to a 512-slot boundary when they would cross a page table
    (``& -PTRS_PER_PTE``: 1024 entries without PAE, 512 with).

    >>> _x32_fixmap_pages(8), _x32_fixmap_pages(26), _x32_fixmap_pages(26, pae=True)
    ((197, 710), (485, 998), (485, 1025))
    """
    idx = 1  # FIX_HOLE
    idx += 1  # FIX_DBGP_BASE
    idx += 1  # FIX_EARLYCON_MEM_BASE
    idx += 1  # FIX_APIC_BASE
    idx += 64  # FIX_IO_APIC_BASE_0 .. + MAX_IO_APICS - 1
    idx += 16 * nr_cpus  # FIX_KMAP_BEGIN .. FIX_KMAP_END (KM_MAX_IDX * NR_CPUS)
    idx += 1  # FIX_PCIE_MCFG
    permanent = idx
    total_btmaps = 64 * 8  # NR_FIX_BTMAPS * FIX_BTMAPS_SLOTS
    if (permanent ^ (permanent + total_btmaps - 1)) & -(512 if pae else 1024):  # -PTRS_PER_PTE
        btmap_end = permanent + total_btmaps - (permanent & (total_btmaps - 1))
    else:
        btmap_end = permanent
    btmap_begin = btmap_end + total_btmaps - 1
    end = btmap_begin + 1  # FIX_WP_TEST
    end += 1  # __end_of_fixed_addresses
    return permanent, end


@dataclass(frozen=True)
class Layout:
    """Kernel virtual layout of one machine; addresses are ints, ends exclusive
    unless the name says otherwise (``vmalloc_end`` is the kernel's VMALLOC_END:
    inclusive on x86-64, the first address past the range on x86-32, both used
    as ``vend`` bound for ``va_end``)."""

    arch: str
    mem_bytes: int
    page_offset: int
    high_memory: int  # end of the direct-mapped lowmem (x86-64: end of RAM)
    max_low_pfn: int
    max_pfn: int
    direct_map_end: int  # end of the direct-map *region* (x86-64: 64 TiB)
    vmalloc_start: int
    vmalloc_end: int
    page_array: int  # vmemmap (x86-64) or mem_map (x86-32)
    struct_page_size: int
    task_size: int
    pkmap_base: int = 0
    last_pkmap: int = 0
    fixaddr_start: int = 0
    fixaddr_top: int = 0
    cpu_entry_start: int = 0
    cpu_entry_end: int = 0
    ldt_base: int = 0
    modules_vaddr: int = 0
    modules_end: int = 0
    kernel_text: int = 0
    nr_cpus: int = 0
    pae: bool = False
    regions: tuple[Region, ...] = field(default=(), compare=False)

    # ---- predicates ------------------------------------------------------------------
    @property
    def bits(self) -> int:
        return 64 if self.arch == "x86_64" else 32

    def is_vmalloc_addr(self, va: int) -> bool:
        """``is_vmalloc_addr``: VMALLOC_START <= va < VMALLOC_END (mm/vmalloc.c).

        >>> build_layout("x86_32", 160 << 20).is_vmalloc_addr(0xca800000)
        True
        """
        end = self.vmalloc_end + 1 if self.arch == "x86_64" else self.vmalloc_end
        return self.vmalloc_start <= va < end

    def is_lowmem_addr(self, va: int) -> bool:
        """A direct-map address backed by RAM: PAGE_OFFSET <= va < high_memory."""
        return self.page_offset <= va < self.high_memory

    def region_of(self, va: int) -> str:
        """Name of the region holding ``va`` (``"unmapped"`` for holes/guards).

        >>> build_layout("x86_64", 1 << 30).region_of(0xffffea0000000040)
        'vmemmap'
        """
        for r in self.regions:
            if r.start <= va < r.end:
                return r.name
        return "unmapped"

    def vmalloc_vend(self) -> int:
        """Upper bound for a vmap area's end, as ``alloc_vmap_area`` gets it (``vend``)."""
        return self.vmalloc_end

    # ---- conversions (include/linux/mm.h, arch/x86/include/asm/page.h) ------------------
    def _refuse(self, fn: str, va: int) -> AddressError:
        width = 16 if self.bits == 64 else 8
        where = f"{fn}(0x{va:0{width}x})"
        if self.is_vmalloc_addr(va):
            return AddressError(
                f"{where}: a vmalloc address is not in the direct map; its pages are "
                f"scattered: use vmalloc_to_page()"
            )
        region = self.region_of(va)
        if self.arch == "x86_32" and self.high_memory <= va < self.vmalloc_start:
            region = "the VMALLOC_OFFSET gap above high_memory"
        return AddressError(f"{where}: not a direct-map (lowmem) address ({region})")

    def virt_to_phys(self, va: int) -> int:
        """``__pa`` / ``virt_to_phys``: ``va - PAGE_OFFSET`` for direct-map addresses
        (x86-64 kernel-image addresses: ``va - __START_KERNEL_map + phys_base``, phys_base 0).

        >>> hex(build_layout("x86_32", 160 << 20).virt_to_phys(0xc0100000))
        '0x100000'
        """
        if self.arch == "x86_64":
            if self.page_offset <= va < self.direct_map_end:
                return va - self.page_offset
            if _X64_START_KERNEL_MAP <= va < _X64_MODULES:
                return va - _X64_START_KERNEL_MAP
        elif self.is_lowmem_addr(va):
            return va - self.page_offset
        raise self._refuse("virt_to_phys", va)

    __pa = virt_to_phys

    def phys_to_virt(self, pa: int) -> int:
        """``__va`` / ``phys_to_virt``: ``PAGE_OFFSET + pa``; refused for highmem
        (x86-32 pages above ``max_low_pfn`` have no permanent mapping: kmap them).

        >>> build_layout("x86_64", 1 << 30).phys_to_virt(0x14f89f000) == 0xffff88814f89f000
        True
        """
        if pa < 0:
            raise AddressError(f"phys_to_virt({pa:#x}): negative physical address")
        limit = self.direct_map_end - self.page_offset
        if self.arch == "x86_32":
            limit = self.max_low_pfn << PAGE_SHIFT
        if pa >= limit:
            raise AddressError(
                f"phys_to_virt({pa:#x}): a highmem page has no permanent kernel mapping "
                f"(lowmem ends at {limit:#x}); use kmap_local_page()"
            )
        return self.page_offset + pa

    def virt_to_pfn(self, va: int) -> int:
        """``virt_to_pfn``: ``__pa(va) >> PAGE_SHIFT``."""
        return self.virt_to_phys(va) >> PAGE_SHIFT

    def pfn_to_virt(self, pfn: int) -> int:
        """``pfn_to_virt`` / ``page_address`` of a lowmem page."""
        return self.phys_to_virt(pfn << PAGE_SHIFT)

    def pfn_to_page(self, pfn: int) -> int:
        """``pfn_to_page``: address of the ``struct page`` (vmemmap + 64 * pfn on x86-64).

        >>> hex(build_layout("x86_64", 24 << 30).pfn_to_page(0x14f89f))
        '0xffffea00053e27c0'
        """
        if not 0 <= pfn < self.max_pfn:
            raise AddressError(f"pfn_to_page({pfn:#x}): no such pfn (max_pfn {self.max_pfn:#x})")
        return self.page_array + self.struct_page_size * pfn

    def page_to_pfn(self, page: int) -> int:
        """``page_to_pfn``: inverse of :meth:`pfn_to_page` (refuses unaligned pointers).

        >>> hex(build_layout("x86_64", 24 << 30).page_to_pfn(0xffffea00053e27c0))
        '0x14f89f'
        """
        off = page - self.page_array
        if off < 0 or off % self.struct_page_size or off // self.struct_page_size >= self.max_pfn:
            raise AddressError(f"page_to_pfn({page:#x}): not a struct page of this machine")
        return off // self.struct_page_size

    def virt_to_page(self, va: int) -> int:
        """``virt_to_page``: ``pfn_to_page(__pa(va) >> PAGE_SHIFT)``; direct map only."""
        return self.pfn_to_page(self.virt_to_pfn(va))


def _x64_layout(mem_bytes: int, nr_cpus: int) -> Layout:
    max_pfn = mem_bytes >> PAGE_SHIFT
    po = _X64_PAGE_OFFSET
    regions = (
        Region("user", 0, _X64_TASK_SIZE, "user space (TASK_SIZE_MAX)"),
        Region("direct map", po, _X64_DIRECT_END, "direct mapping of all physical memory (page_offset_base)"),
        Region("vmalloc", _X64_VMALLOC_START, _X64_VMALLOC_END + 1, "vmalloc/ioremap space (vmalloc_base)"),
        Region("vmemmap", _X64_VMEMMAP, _X64_VMEMMAP_END, "virtual memory map: struct page array (vmemmap_base)"),
        Region("cpu_entry", _X64_CPU_ENTRY, _X64_CPU_ENTRY_END, "cpu_entry_area mapping"),
        Region("kernel text", _X64_START_KERNEL_MAP, _X64_MODULES, "kernel image mapping (__START_KERNEL_map)"),
        Region("modules", _X64_MODULES, _X64_MODULES_END, "module mapping space"),
        Region("fixmap", _X64_MODULES_END, _X64_FIXMAP_END, "kernel-internal fixmap range"),
    )
    return Layout(
        arch="x86_64",
        mem_bytes=mem_bytes,
        page_offset=po,
        high_memory=po + (max_pfn << PAGE_SHIFT),
        max_low_pfn=max_pfn,
        max_pfn=max_pfn,
        direct_map_end=_X64_DIRECT_END,
        vmalloc_start=_X64_VMALLOC_START,
        vmalloc_end=_X64_VMALLOC_END,
        page_array=_X64_VMEMMAP,
        struct_page_size=64,
        task_size=_X64_TASK_SIZE,
        fixaddr_start=_X64_MODULES_END,
        fixaddr_top=_X64_FIXMAP_END,
        cpu_entry_start=_X64_CPU_ENTRY,
        cpu_entry_end=_X64_CPU_ENTRY_END,
        modules_vaddr=_X64_MODULES,
        modules_end=_X64_MODULES_END,
        kernel_text=_X64_START_KERNEL_MAP + _X64_PHYS_START,
        nr_cpus=nr_cpus,
        regions=regions,
    )


def _config_nr_cpus(nr_cpus: int) -> int:
    """CONFIG_NR_CPUS of the modelled x86-32 build: 8 (the 32-bit SMP default), or more if
    the machine has more CPUs.  It sizes the fixmap and cpu_entry_area, hence MAXMEM."""
    return max(8, nr_cpus)


def x86_32_pae(mem_bytes: int) -> bool:
    """Whether the modelled x86-32 kernel is built with X86_PAE (HIGHMEM64G): only when RAM
    reaches above 4 GiB, which a non-PAE kernel cannot address (``MAX_NONPAE_PFN``); otherwise
    HIGHMEM4G.  PAE halves the PMD (2 MiB) and LAST_PKMAP (512), which moves VMALLOC_END.

    >>> x86_32_pae(4 << 30), x86_32_pae(6 << 30)
    (False, True)
    """
    return mem_bytes > 4 * _GiB


def _x32_areas(nr_cpus: int, pae: bool) -> tuple[int, int, int, int, int, int, int, int]:
    """The top of the x86-32 address space (arch/x86/include/asm/pgtable_32_areas.h):
    ``(pmd_mask, last_pkmap, fixaddr_start, cea_base, cea_end, ldt_base, pkmap_base, vmalloc_end)``
    for CONFIG_NR_CPUS ``nr_cpus`` (already :func:`_config_nr_cpus`)."""
    pmd_mask = ~((2 * _MiB if pae else 4 * _MiB) - 1) & 0xFFFFFFFF
    last_pkmap = 512 if pae else 1024
    permanent, total = _x32_fixmap_pages(nr_cpus, pae)
    fixaddr_top = _X32_FIXADDR_TOP
    fixaddr_start = fixaddr_top - (permanent << PAGE_SHIFT)
    fixaddr_tot_start = fixaddr_top - (total << PAGE_SHIFT)
    cea_pages = nr_cpus * 40  # CPU_ENTRY_AREA_PAGES (40-page cpu_entry_area, see module doc)
    cea_base = (fixaddr_tot_start - PAGE_SIZE * (cea_pages + 1)) & pmd_mask
    cea_end = cea_base + PAGE_SIZE + cea_pages * PAGE_SIZE  # CPU_ENTRY_AREA_MAP_SIZE
    ldt_base = (cea_base - PAGE_SIZE) & pmd_mask
    pkmap_base = (ldt_base - PAGE_SIZE) & pmd_mask
    vmalloc_end = pkmap_base - 2 * PAGE_SIZE  # CONFIG_HIGHMEM: VMALLOC_END = PKMAP_BASE - 2 pages
    return pmd_mask, last_pkmap, fixaddr_start, cea_base, cea_end, ldt_base, pkmap_base, vmalloc_end


def x86_32_maxmem(nr_cpus: int = 8, pae: bool = False) -> int:
    """``MAXMEM`` (arch/x86/include/asm/pgtable_32_areas.h), in bytes: the most RAM the 3G/1G
    kernel maps directly, ``VMALLOC_END - PAGE_OFFSET - __VMALLOC_RESERVE`` with
    ``__VMALLOC_RESERVE = 128 << 20`` (arch/x86/mm/pgtable_32.c; ``vmalloc=`` is not modelled).
    VMALLOC_END sits below PKMAP, the LDT remap, the cpu_entry_area and the fixmap, so MAXMEM is a
    little under the classic 896 MiB.  ``nr_cpus`` as for :func:`build_layout`.

    >>> hex(x86_32_maxmem()), hex(x86_32_maxmem(pae=True))
    ('0x36ffe000', '0x375fe000')
    """
    vmalloc_end = _x32_areas(_config_nr_cpus(nr_cpus), pae)[-1]
    return vmalloc_end - _X32_PAGE_OFFSET - _X32_VMALLOC_RESERVE


def x86_32_max_low_pfn(max_pfn: int, nr_cpus: int = 8, pae: bool = False) -> int:
    """``max_low_pfn`` as ``find_low_pfn_range`` (arch/x86/mm/init_32.c) sets it without a
    ``highmem=`` boot option: ``lowmem_pfn_init`` keeps ``max_pfn`` when ``max_pfn <= MAXMEM_PFN``,
    else ``highmem_pfn_init`` sets ``MAXMEM_PFN`` (``PFN_DOWN(MAXMEM)``, asm/setup.h).

    The one lowmem limit of the model: ``high_memory = __va(max_low_pfn << PAGE_SHIFT)`` in
    :func:`build_layout`, and the end of ZONE_NORMAL / start of ZONE_HIGHMEM in
    :func:`kmemdes.mm.mm_init.build_node` (``zone_sizes_init``: ``max_zone_pfns[ZONE_NORMAL] =
    max_low_pfn``).  Not pageblock aligned: the two zones share one pageblock, as on real kernels.

    >>> hex(x86_32_max_low_pfn((2 << 30) >> PAGE_SHIFT)), x86_32_max_low_pfn(40960)
    ('0x36ffe', 40960)
    """
    maxmem_pfn = x86_32_maxmem(nr_cpus, pae) >> PAGE_SHIFT  # MAXMEM_PFN
    return max_pfn if max_pfn <= maxmem_pfn else maxmem_pfn


def _x32_layout(mem_bytes: int, nr_cpus: int, pae: bool, low_limit: Optional[int] = None) -> Layout:
    pmd_mask, last_pkmap, fixaddr_start, cea_base, cea_end, ldt_base, pkmap_base, vmalloc_end = \
        _x32_areas(nr_cpus, pae)
    fixaddr_top = _X32_FIXADDR_TOP
    max_pfn = mem_bytes >> PAGE_SHIFT
    if low_limit is None:
        max_low_pfn = x86_32_max_low_pfn(max_pfn, nr_cpus, pae)
    else:
        max_low_pfn = min(max_pfn, low_limit)
    high_memory = _X32_PAGE_OFFSET + (max_low_pfn << PAGE_SHIFT)
    vmalloc_start = high_memory + _X32_VMALLOC_OFFSET
    if vmalloc_start >= vmalloc_end:
        raise KmemdesError("x86_32 layout: no room left for vmalloc")
    sp = 32
    mem_map = (high_memory - max_pfn * sp) & ~(PAGE_SIZE - 1)  # memblock: top of lowmem
    regions = (
        Region("user", 0, _X32_PAGE_OFFSET, "user space (TASK_SIZE, 3 GiB)"),
        Region("lowmem", _X32_PAGE_OFFSET, high_memory, "direct mapping of lowmem (PAGE_OFFSET..high_memory)"),
        Region("vmalloc gap", high_memory, vmalloc_start, "VMALLOC_OFFSET hole: catches overruns past lowmem"),
        Region("vmalloc", vmalloc_start, vmalloc_end, "vmalloc/ioremap and modules (VMALLOC_START..VMALLOC_END)"),
        Region("pkmap", pkmap_base, pkmap_base + last_pkmap * PAGE_SIZE, "persistent kmap of highmem pages"),
        Region("ldt", ldt_base, ldt_base + (pmd_mask ^ 0xFFFFFFFF) + 1, "LDT remap"),
        Region("cpu_entry", cea_base, cea_end, "cpu_entry_area (GDT, TSS, entry stacks)"),
        Region("fixmap", fixaddr_start, fixaddr_top, "fixmap: compile-time fixed addresses, kmap_local slots"),
    )
    return Layout(
        arch="x86_32",
        mem_bytes=mem_bytes,
        page_offset=_X32_PAGE_OFFSET,
        high_memory=high_memory,
        max_low_pfn=max_low_pfn,
        max_pfn=max_pfn,
        direct_map_end=high_memory,
        vmalloc_start=vmalloc_start,
        vmalloc_end=vmalloc_end,
        page_array=mem_map,
        struct_page_size=sp,
        task_size=_X32_PAGE_OFFSET,
        pkmap_base=pkmap_base,
        last_pkmap=last_pkmap,
        fixaddr_start=fixaddr_start,
        fixaddr_top=fixaddr_top,
        cpu_entry_start=cea_base,
        cpu_entry_end=cea_end,
        ldt_base=ldt_base,
        modules_vaddr=vmalloc_start,
        modules_end=vmalloc_end,
        kernel_text=_X32_PAGE_OFFSET + 16 * _MiB,
        nr_cpus=nr_cpus,
        pae=pae,
        regions=regions,
    )


def build_layout(arch: str = "x86_64", mem_bytes: int = 1 << 30, nr_cpus: int = 8, pae: bool = False,
                 max_low_pfn: Optional[int] = None) -> Layout:
    """The layout of a machine with ``mem_bytes`` of RAM from physical address 0.

    CONFIG_NR_CPUS, which sizes the x86-32 fixmap and cpu_entry_area, is taken as
    ``max(8, nr_cpus)`` (the 32-bit SMP default, or more if the machine has more CPUs),
    so the layout does not change with the number of online CPUs below 8.
    ``pae`` selects X86_PAE on x86-32 (:func:`x86_32_pae` is the rule the composed kernel uses).
    The x86-32 lowmem end is :func:`x86_32_max_low_pfn`; ``max_low_pfn`` overrides it for a
    page-allocator model whose Normal/HighMem split comes from elsewhere (a snapshot).
    A 160 MiB x86-32 machine is all lowmem:

    >>> l = build_layout("x86_32", 160 << 20); l.max_low_pfn == l.max_pfn
    True
    >>> hex(build_layout("x86_32", 2 << 30).high_memory)
    '0xf6ffe000'
    """
    if arch not in ARCHES:
        raise KmemdesError(f"--arch: unknown architecture {arch!r} (choose from {', '.join(ARCHES)})")
    if mem_bytes < 16 * _MiB:
        raise KmemdesError(f"--mem: {mem_bytes} bytes is too small (at least 16M)")
    nr_cpus = _config_nr_cpus(nr_cpus)
    if arch == "x86_64":
        if mem_bytes > 64 * _TiB:
            raise KmemdesError("--mem: x86_64 4-level paging maps at most 64T")
        return _x64_layout(mem_bytes, nr_cpus)
    if mem_bytes > (64 * _GiB if pae else 4 * _GiB):
        raise KmemdesError(f"--mem: x86_32 {'PAE ' if pae else ''}addresses at most {'64G' if pae else '4G'}")
    return _x32_layout(mem_bytes, nr_cpus, pae, max_low_pfn)


def _size_text(size: int, unit: str) -> str:
    div = {"kB": _KiB, "MB": _MiB, "GB": _GiB, "TB": _TiB}[unit]
    return f"({size // div:4d} {unit})"


def _unit_for(size: int) -> str:
    for unit, div in (("TB", _TiB), ("GB", _GiB), ("MB", _MiB)):
        if size >= 16 * div:
            return unit
    return "kB"


def format_layout(layout: Layout) -> str:
    """The layout as the x86-32 boot log printed it (``mem_init``, arch/x86/mm/init_32.c
    up to 5.x: ``"    fixmap  : 0x%08lx - 0x%08lx   (%4ld kB)"`` and so on, top down).

    x86-64 never printed this block; the same style is used with 64-bit addresses
    and a unit that suits each region.

    >>> print(format_layout(build_layout("x86_32", 160 << 20)))
    virtual kernel memory layout:
        fixmap  : 0xfff3a000 - 0xfffff000   ( 788 kB)
      cpu_entry : 0xff800000 - 0xff941000   (1284 kB)
        pkmap   : 0xff000000 - 0xff400000   (4096 kB)
        vmalloc : 0xca800000 - 0xfeffe000   ( 839 MB)
        lowmem  : 0xc0000000 - 0xca000000   ( 160 MB)
    """
    lines = ["virtual kernel memory layout:"]
    if layout.arch == "x86_32":
        rows = [
            ("    fixmap  ", layout.fixaddr_start, layout.fixaddr_top, "kB"),
            ("  cpu_entry ", layout.cpu_entry_start, layout.cpu_entry_end, "kB"),
            ("    pkmap   ", layout.pkmap_base, layout.pkmap_base + layout.last_pkmap * PAGE_SIZE, "kB"),
            ("    vmalloc ", layout.vmalloc_start, layout.vmalloc_end, "MB"),
            ("    lowmem  ", layout.page_offset, layout.high_memory, "MB"),
        ]
        for name, start, end, unit in rows:
            lines.append(f"{name}: 0x{start:08x} - 0x{end:08x}   {_size_text(end - start, unit)}")
        return "\n".join(lines)
    rows64 = [
        ("    fixmap  ", layout.fixaddr_start, layout.fixaddr_top),
        ("    modules ", layout.modules_vaddr, layout.modules_end),
        ("     .text  ", _X64_START_KERNEL_MAP, _X64_MODULES),
        ("  cpu_entry ", layout.cpu_entry_start, layout.cpu_entry_end),
        ("    vmemmap ", layout.page_array, _X64_VMEMMAP_END),
        ("    vmalloc ", layout.vmalloc_start, layout.vmalloc_end + 1),
        ("  direct map", layout.page_offset, layout.direct_map_end),
        ("    (RAM)   ", layout.page_offset, layout.high_memory),
        ("    user    ", 0, layout.task_size),
    ]
    for name, start, end in rows64:
        lines.append(f"{name}: 0x{start:016x} - 0x{end:016x}   {_size_text(end - start, _unit_for(end - start))}")
    return "\n".join(lines)
