"""Address layouts: constants from KERNEL.md section 12 and real raw pointers from b_compile_head."""

from __future__ import annotations

import io
import re

import pytest
import zstandard

from kmemdes.mm import gfp as G
from kmemdes.mm.layout import AddressError, build_layout, format_layout, x86_32_max_low_pfn, x86_32_maxmem

MiB = 1 << 20


def test_roundtrip_reference_page():
    """KERNEL.md 19.11: page=ffffea00053e27c0 <-> pfn 0x14f89f <-> 0xffff88814f89f000."""
    lay = build_layout("x86_64", 24 << 30)
    assert lay.pfn_to_page(0x14F89F) == 0xFFFFEA00053E27C0
    assert lay.page_to_pfn(0xFFFFEA00053E27C0) == 0x14F89F
    assert lay.pfn_to_virt(0x14F89F) == 0xFFFF88814F89F000
    assert lay.virt_to_pfn(0xFFFF88814F89F000) == 0x14F89F
    assert lay.virt_to_page(0xFFFF88814F89F123) == 0xFFFFEA00053E27C0


def test_x86_64_bases():
    lay = build_layout("x86_64", 24 << 30)
    assert lay.page_offset == 0xFFFF888000000000
    assert lay.vmalloc_start == 0xFFFFC90000000000 and lay.vmalloc_end == 0xFFFFE8FFFFFFFFFF
    assert lay.vmalloc_end + 1 - lay.vmalloc_start == 32 << 40
    assert lay.page_array == 0xFFFFEA0000000000 and lay.struct_page_size == 64
    assert lay.region_of(0xFFFF88810087B000) == "direct map"
    assert lay.region_of(0xFFFFC900059BC000) == "vmalloc"
    # CONFIG_RANDOMIZE_BASE=y (reference config): KERNEL_IMAGE_SIZE 1 GiB, so the kernel image
    # mapping runs to __START_KERNEL_map + 1 GiB and modules start there (page_64_types.h)
    assert lay.region_of(0xFFFFFFFFA0001000) == "kernel text"
    assert lay.region_of(0xFFFFFFFFC0001000) == "modules"
    assert lay.region_of(0x7F0000000000) == "user"


def test_vmalloc_addresses_are_refused():
    lay = build_layout("x86_64", 24 << 30)
    va = 0xFFFFC900059BC000  # va_start of a real alloc_vmap_area (README 4.1)
    assert lay.is_vmalloc_addr(va)
    for fn in (lay.virt_to_phys, lay.virt_to_page, lay.virt_to_pfn):
        with pytest.raises(AddressError, match="vmalloc_to_page"):
            fn(va)
    l32 = build_layout("x86_32", 160 * MiB)
    with pytest.raises(AddressError, match="vmalloc_to_page"):
        l32.virt_to_phys(l32.vmalloc_start + 0x5000)
    with pytest.raises(AddressError, match="VMALLOC_OFFSET"):
        l32.virt_to_phys(l32.high_memory + 0x1000)  # the 8 MiB hole
    with pytest.raises(AddressError):
        l32.virt_to_phys(0x08048000)  # user space


def test_x86_32_small_machine_is_all_lowmem():
    lay = build_layout("x86_32", 160 * MiB)
    assert lay.page_offset == 0xC0000000
    assert lay.max_low_pfn == lay.max_pfn == (160 * MiB) >> 12
    assert lay.high_memory == 0xC0000000 + 160 * MiB
    assert lay.vmalloc_start - lay.high_memory == 8 * MiB  # VMALLOC_OFFSET
    assert lay.phys_to_virt(0x1234000) == 0xC1234000
    assert lay.virt_to_phys(0xC0100000) == 0x100000
    assert lay.region_of(lay.high_memory + MiB) == "vmalloc gap"


# MAXMEM = VMALLOC_END - PAGE_OFFSET - __VMALLOC_RESERVE (pgtable_32_areas.h, KERNEL.md section 12), with
# VMALLOC_END = PKMAP_BASE - 2 pages and PKMAP_BASE PMD-aligned below the LDT remap, the cpu_entry_area
# and the fixmap: MAXMEM = 896 MiB - (4 GiB - PKMAP_BASE) - 8 KiB.  For NR_CPUS 8 (the layout module's
# config) the fixmap + 321-page cpu_entry_area end below 0xff800000 (non-PAE, 4 MiB PMD: LDT 0xff400000,
# PKMAP 0xff000000) or 0xffa00000 (PAE, 2 MiB PMD: LDT 0xff800000, PKMAP 0xff600000).  Real dmesg of
# older kernels with a smaller fixmap shows PKMAP 0xff800000 -> MAXMEM 0x377fe000, also a bit below 896 MiB.
_PAGE_OFFSET, _VMALLOC_RESERVE = 0xC0000000, 128 * MiB
_MAXMEM = {False: (0xFF000000 - 2 * 4096) - _PAGE_OFFSET - _VMALLOC_RESERVE,  # 0x36ffe000, ~880 MiB
           True: (0xFF600000 - 2 * 4096) - _PAGE_OFFSET - _VMALLOC_RESERVE}  # 0x375fe000, ~886 MiB


def test_x86_32_maxmem_follows_the_kernel_formula():
    assert _MAXMEM[False] == 0x36FFE000 and _MAXMEM[True] == 0x375FE000
    for pae in (False, True):
        assert x86_32_maxmem(8, pae) == _MAXMEM[pae]
        maxmem_pfn = _MAXMEM[pae] >> 12  # MAXMEM_PFN = PFN_DOWN(MAXMEM)
        # find_low_pfn_range: lowmem_pfn_init keeps max_pfn up to MAXMEM_PFN, highmem_pfn_init caps it there
        assert x86_32_max_low_pfn(maxmem_pfn, 8, pae) == maxmem_pfn
        assert x86_32_max_low_pfn(maxmem_pfn + 1, 8, pae) == maxmem_pfn
        assert x86_32_max_low_pfn(40960, 8, pae) == 40960
        assert x86_32_max_low_pfn((896 * MiB) >> 12, 8, pae) == maxmem_pfn  # 896 MiB already has HighMem


def test_x86_32_big_machine_has_highmem():
    for pae, last_pkmap, pmd in ((False, 1024, 4 * MiB), (True, 512, 2 * MiB)):
        lay = build_layout("x86_32", 2 << 30, pae=pae)
        assert lay.max_low_pfn == _MAXMEM[pae] >> 12 and lay.high_memory == _PAGE_OFFSET + _MAXMEM[pae]
        assert lay.pkmap_base == (0xFF600000 if pae else 0xFF000000)
        assert lay.max_pfn > lay.max_low_pfn
        assert lay.vmalloc_start == lay.high_memory + 8 * MiB
        assert lay.vmalloc_end == lay.pkmap_base - 2 * 4096  # VMALLOC_END = PKMAP_BASE - 2 pages
        assert lay.pkmap_base % pmd == 0 and lay.last_pkmap == last_pkmap
        # MAXMEM = VMALLOC_END - PAGE_OFFSET - __VMALLOC_RESERVE (128 MiB): ~120 MiB of vmalloc left
        assert lay.vmalloc_end - lay.vmalloc_start == 120 * MiB
        assert lay.fixaddr_top == 0xFFFFF000
        assert lay.vmalloc_end < lay.pkmap_base < lay.ldt_base < lay.cpu_entry_start < lay.fixaddr_start
        with pytest.raises(AddressError, match="kmap"):
            lay.phys_to_virt(1 << 30)  # a highmem page


def test_format_layout_boot_log_style():
    text = format_layout(build_layout("x86_32", 160 * MiB))
    lines = text.splitlines()
    assert lines[0] == "virtual kernel memory layout:"
    pat = re.compile(r"^ *[a-z_]+ *: 0x[0-9a-f]{8} - 0x[0-9a-f]{8}   \( *\d+ (kB|MB)\)$")
    assert all(pat.match(x) for x in lines[1:]), lines
    assert "    vmalloc : 0xca800000 - 0xfeffe000" in text
    assert "    lowmem  : 0xc0000000 - 0xca000000   ( 160 MB)" in text


def test_bad_arguments():
    from kmemdes.errors import KmemdesError

    with pytest.raises(KmemdesError):
        build_layout("arm64", 1 << 30)
    with pytest.raises(KmemdesError):
        build_layout("x86_32", 8 << 30)
    with pytest.raises(KmemdesError):
        build_layout("x86_64", 1 << 20)


_LINE = re.compile(
    r"(?P<ev>mm_page_alloc|kmem_cache_alloc|kmalloc): (?:page=(?P<page>[0-9a-f]+) pfn=0x(?P<pfn>[0-9a-f]+) "
    r"order=(?P<order>\d+) migratetype=(?P<mt>\d+) gfp_flags=(?P<gfp>\S+)|.*?ptr=(?P<ptr>[0-9a-f]+).*?bytes_alloc=(?P<ba>\d+))"
)


def _events(path):
    with open(path, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as r:
        for line in io.TextIOWrapper(r, encoding="utf-8", errors="replace"):
            m = _LINE.search(line)
            if m:
                yield m


def test_raw_pointers_of_b_compile_head(shipped):
    """Raw ``page=`` values equal pfn_to_page(pfn), and raw slab pointers map (ptr - PAGE_OFFSET) >> 12
    onto pages the trace allocated with slab flags (__GFP_COMP, unmovable or reclaimable, not user pages)."""
    lay = build_layout("x86_64", 24 << 30)
    page_of = {}  # pfn -> (order, mt, gfp) of the last mm_page_alloc covering it
    n_pages = n_slab_ptr = n_hit = 0
    for m in _events(shipped / "b_compile_head" / "trace.txt.zst"):
        if m["ev"] == "mm_page_alloc":
            pfn, order = int(m["pfn"], 16), int(m["order"])
            if pfn == 0:
                continue
            assert lay.pfn_to_page(pfn) == int(m["page"], 16)
            assert lay.page_to_pfn(int(m["page"], 16)) == pfn
            n_pages += 1
            for p in range(pfn, pfn + (1 << order)):
                page_of[p] = (pfn, order, int(m["mt"]), G.parse_gfp(m["gfp"]))
        else:
            ptr = int(m["ptr"], 16)
            if ptr == 0 or int(m["ba"]) > 8192:
                continue
            assert lay.region_of(ptr) == "direct map"
            n_slab_ptr += 1
            hit = page_of.get(lay.virt_to_pfn(ptr))
            if hit is None:
                continue  # slab page allocated before the trace began
            head, order, mt, gfp = hit
            n_hit += 1
            assert gfp & G.__GFP_COMP and mt in (0, 2), (hex(ptr), hit)
            assert gfp & G.GFP_HIGHUSER_MOVABLE != G.GFP_HIGHUSER_MOVABLE
            assert head % (1 << order) == 0
    assert n_pages > 30000 and n_slab_ptr > 40000
    print("slab objects on in-trace slab pages:", n_hit)
    assert n_hit >= 20  # objects living in the 23 slab pages the 200k-line head allocates
