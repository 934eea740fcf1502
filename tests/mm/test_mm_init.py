"""Boot-time zone layout (mm_init.build_node): the x86-32 Normal/HighMem boundary is max_low_pfn."""

from __future__ import annotations

import pytest

from kmemdes.errors import KmemdesError
from kmemdes.mm import gfp as G
from kmemdes.mm.kernel import Kernel
from kmemdes.mm.layout import AddressError
from kmemdes.mm.mm_init import build_node, parse_size

MiB = 1 << 20
# MAXMEM_PFN from the kernel formula (derivation in test_layout.py): PFN_DOWN(VMALLOC_END - PAGE_OFFSET -
# __VMALLOC_RESERVE) with VMALLOC_END = PKMAP_BASE - 2 pages; PKMAP_BASE 0xff000000 (non-PAE, NR_CPUS 8)
# or 0xff600000 (PAE, which the model uses only above 4 GiB).
MAXMEM_PFN = {False: (0xFF000000 - 0x2000 - 0xC0000000 - 128 * MiB) >> 12,  # 0x36ffe
              True: (0xFF600000 - 0x2000 - 0xC0000000 - 128 * MiB) >> 12}  # 0x375fe


def _zones(node):
    return {z.name: z for z in node.zones}


@pytest.mark.parametrize("mem, pae", [("2G", False), ("4G", False), ("6G", True)])
def test_x86_32_normal_ends_at_max_low_pfn(mem, pae):
    """zone_sizes_init: max_zone_pfns[ZONE_NORMAL] = max_low_pfn = MAXMEM_PFN (highmem_pfn_init)."""
    k = Kernel("x86_32", mem, cpus=1)
    z = _zones(k.node)
    assert z["Normal"].end_pfn == z["HighMem"].start_pfn == MAXMEM_PFN[pae]
    assert z["HighMem"].end_pfn == parse_size(mem) >> 12
    # the same limit in the address layout: lowmem is mapped exactly up to the zone boundary
    assert k.layout.max_low_pfn == MAXMEM_PFN[pae]
    assert k.layout.high_memory == 0xC0000000 + (MAXMEM_PFN[pae] << 12)
    assert k.layout.vmalloc_end - k.layout.vmalloc_start == 120 * MiB  # 128 MiB reserve - 8 MiB gap
    assert k.layout.pfn_to_virt(MAXMEM_PFN[pae] - 1) == k.layout.high_memory - 4096
    with pytest.raises(AddressError, match="kmap"):
        k.layout.pfn_to_virt(MAXMEM_PFN[pae])


def test_x86_32_between_maxmem_and_896m_has_highmem_and_every_normal_page_is_mapped():
    """890 MiB > MAXMEM (~880 MiB): the kernel takes highmem_pfn_init; with the old 896 MiB split the
    model had all of it in Normal while the layout mapped only up to MAXMEM."""
    k = Kernel("x86_32", "890M", cpus=1)
    z = _zones(k.node)
    assert z["HighMem"].start_pfn == MAXMEM_PFN[False] and z["HighMem"].end_pfn == (890 * MiB) >> 12
    normal = z["Normal"]
    for pfn in (normal.start_pfn, normal.end_pfn - 1):
        assert k.layout.region_of(k.layout.pfn_to_virt(pfn)) == "lowmem"


def test_x86_32_160m_is_all_lowmem_and_unchanged():
    node = build_node("x86_32", 160 * MiB, cpus=1)
    assert [(z.name, z.start_pfn, z.end_pfn) for z in node.zones] == [("DMA", 1, 0x1000), ("Normal", 0x1000, 0xA000)]


def test_x86_32_pageblock_shared_by_normal_and_highmem():
    """MAXMEM_PFN 0x36ffe is not pageblock aligned: pfns 0x36e00-0x36ffd are Normal, 0x36ffe-0x36fff
    HighMem; the two HighMem pages are freed at boot as one order-1 block of HighMem, and an
    allocation and a free of them stay in HighMem (page_zone per page, not per pageblock)."""
    node = build_node("x86_32", 900 * MiB, cpus=1)
    z = _zones(node)
    b = MAXMEM_PFN[False]
    assert b % 512 != 0
    assert node.zone_of(b - 1) is z["Normal"] and node.zone_of(b) is z["HighMem"]
    assert node.zone_of(b + 1) is z["HighMem"] and node.zone_of(b + 2) is z["HighMem"]
    assert node._buddy_order(b) == 1 and node.l_zone[node.lid[b]] is z["HighMem"]
    # the memmap (32-byte struct pages) is reserved at the top of lowmem, just below the boundary
    memmap_pages = -(-((900 * MiB) >> 12) * 32 // 4096)
    assert all(node._buddy_order(p) < 0 for p in range(b - memmap_pages, b))
    # drain HighMem (down to its watermark), then free it all again
    got = []
    while (pfn := node.alloc_pages(G.GFP_HIGHUSER_MOVABLE | G.__GFP_NOWARN, 0, 0)) >= 0:
        if node.zone_of(pfn) is not z["HighMem"]:
            node.free_pages(pfn, 0, 0)
            break
        got.append(pfn)
    assert b in got and all(b <= p < z["HighMem"].end_pfn for p in got)
    for pfn in got:
        node.free_pages(pfn, 0, 0)
    node.check()
    assert z["HighMem"].free_pages + z["HighMem"].pcp_count() == z["HighMem"].managed


def test_zone_of_outside_every_zone():
    node = build_node("x86_32", 160 * MiB, cpus=1)
    with pytest.raises(KmemdesError):
        node.zone_of(0xA000)


# ------------------------------------------------------------- from a snapshot
def test_snapshot_watermarks_exclude_the_boost_zoneinfo_prints_with_them(tmp_path):
    """zoneinfo prints ``wmark_pages()`` = ``_watermark + watermark_boost`` (zoneinfo_show_print):
    a boosted zone's printed min/low/high are the base plus the boost, so the model's base
    watermarks are the printed ones minus the boost."""
    import re
    import shutil
    from pathlib import Path

    from kmemdes.mm.mm_init import node_from_snapshot
    from kmemdes.trace.snapshot import read_snapshot

    src = Path(__file__).resolve().parents[2] / "traces" / "a_idle_stream" / "before"
    plain = _zones(node_from_snapshot(read_snapshot(src))[0])["Normal"]
    boosted_dir = tmp_path / "before"
    shutil.copytree(src, boosted_dir)
    text = (boosted_dir / "zoneinfo").read_text()
    head, sep, rest = text.partition("zone   Normal")
    part, sep2, tail = rest.partition("Node 0, zone")
    part = part.replace("boost    0", "boost    2560", 1)
    for w in ("min", "low", "high", "promo"):
        part = re.sub(rf"(\n\s+{w}\s+)(\d+)", lambda m: f"{m.group(1)}{int(m.group(2)) + 2560}", part, count=1)
    (boosted_dir / "zoneinfo").write_text(head + sep + part + sep2 + tail)
    boosted = _zones(node_from_snapshot(read_snapshot(boosted_dir))[0])["Normal"]
    assert boosted.watermark_boost == 2560
    assert boosted._watermark == plain._watermark
    assert boosted.wmark(0) == plain.min_wmark + 2560  # wmark_pages: what zoneinfo printed


def test_snapshot_watermarks_same_before_and_after_a_boost_decays(corpus):
    """k_pressure_defrag: before/zoneinfo has boost 2560 (min 17329), after/ boost 0 (min 14769);
    the zone's own watermarks did not change in between, and the model reads the same ones."""
    from kmemdes.mm.mm_init import node_from_snapshot
    from kmemdes.trace.snapshot import read_snapshot

    cap = corpus / "k_pressure_defrag"
    before = _zones(node_from_snapshot(read_snapshot(cap / "before"))[0])["Normal"]
    after = _zones(node_from_snapshot(read_snapshot(cap / "after"))[0])["Normal"]
    assert (before.watermark_boost, after.watermark_boost) == (2560, 0)
    assert before._watermark == after._watermark
    assert before.min_wmark == 14769
