"""Machine construction: zone layout, memblock reservations and the boot-time free (mm/mm_init.c).

A freshly booted machine (:func:`build_node`) lays out zones as the kernel does
for the architecture, reserves what memblock keeps for itself, and frees the
rest to the buddy allocator in maximal aligned blocks at the list tails
(``memblock_free_all`` -> ``__free_pages_core``), so that allocations start at
low addresses as on a real boot.

>>> node = build_node("x86_64", parse_size("24G"))   # spans like the 6.18 reference machine
>>> [(z.name, z.start_pfn, z.spanned) for z in node.zones]
[('DMA', 1, 4095), ('DMA32', 4096, 1044480), ('Normal', 1048576, 5505024)]
>>> node.zones[0].managed      # the first MiB is reserved, as on the reference machine
3840
"""

from __future__ import annotations

import math

from kmemdes.errors import KmemdesError
from kmemdes.mm.gfp import ZoneType
from kmemdes.mm.page_alloc import (
    MAX_PAGE_ORDER,
    MIGRATE_TYPES,
    NR_PAGE_ORDERS,
    PAGE_SHIFT,
    PAGE_SIZE,
    PAGEBLOCK_NR_PAGES,
    PAGEBLOCK_ORDER,
    Node,
    Policy,
    Zone,
    setup_per_zone_wmarks,
)

__all__ = ["build_node", "parse_size", "add_zone", "STRUCT_PAGE_SIZE"]

_SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """Parse a memory size such as ``160M``, ``4G``, ``64GiB``, ``1T`` or ``4096`` into bytes.

    >>> parse_size("160M"), parse_size("64G") >> 30, parse_size("1TiB") >> 40
    (167772160, 64, 1)
    >>> parse_size("12Q")
    Traceback (most recent call last):
    ...
    kmemdes.errors.KmemdesError: bad size '12Q': use a number with an optional K, M, G or T suffix (e.g. 160M, 64G)
    """
    s = str(text).strip().upper().replace("IB", "").rstrip("B") if str(text).strip() else ""
    num, unit = s, ""
    if s and s[-1] in "KMGT":
        num, unit = s[:-1], s[-1]
    try:
        value = float(num)
    except ValueError:
        value = -1.0
    if not num or value <= 0 or not math.isfinite(value):
        raise KmemdesError(
            f"bad size {text!r}: use a number with an optional K, M, G or T suffix (e.g. 160M, 64G)"
        )
    return int(value * _SIZE_UNITS[unit])


def add_zone(node: Node, name: str, zt: ZoneType, idx: int, start: int, end: int, present: int) -> Zone:
    z = Zone(node, name, zt, idx, start, end - start, present)
    z.lid0 = len(node.lhead)
    for order in range(NR_PAGE_ORDERS):
        for mt in range(MIGRATE_TYPES):
            node._new_list(z, order, mt, None)
    node.zones.append(z)
    return z


#: struct page size per architecture (vmemmap cost of each 4 KiB page)
STRUCT_PAGE_SIZE = {"x86_64": 64, "x86_32": 32}
KERNEL_IMAGE_BYTES = {"x86_64": 48 << 20, "x86_32": 8 << 20}
MAX_LOWMEM_32 = 896 << 20


def build_node(arch: str = "x86_64", mem_bytes: int = 1 << 30, cpus: int = 2,
               policy: Policy | None = None, debug: bool = False) -> Node:
    """A freshly booted machine: zones laid out as the kernel does for ``arch``, memory freed at boot.

    x86_64: RAM at 4 KiB-640 KiB, 1 MiB-min(mem, 3 GiB), and above 4 GiB for the rest (the PCI hole);
    zones DMA (< 16 MiB), DMA32 (< 4 GiB), Normal.  x86_32 (PAE, 3G/1G): DMA (< 16 MiB),
    Normal (lowmem, < 896 MiB), HighMem.  Reserved before the buddy allocator starts: the first MiB,
    the kernel image at 16 MiB, and the memmap (struct pages) at the top of lowmem, as memblock
    allocates top-down.  Everything else is freed in max-order blocks to list tails
    (``memblock_free_all`` -> ``__free_pages_core``), so allocation starts at low addresses.
    """
    if arch not in ("x86_64", "x86_32"):
        raise KmemdesError(f"unknown arch {arch!r}: use x86_64 or x86_32")
    if mem_bytes < (16 << 20):
        raise KmemdesError(f"memory size {mem_bytes} too small: at least 16M")
    if arch == "x86_32" and mem_bytes > (64 << 30):
        raise KmemdesError("x86_32 (PAE) supports at most 64G")
    pages = mem_bytes >> PAGE_SHIFT
    ranges: list[tuple[int, int]] = []  # RAM pfn ranges [start, end)
    if arch == "x86_64":
        low_end = min(pages, 0xC0000)  # 3 GiB
        ranges = [(1, 0x9F), (0x100, low_end)]
        if pages > 0xC0000:
            ranges.append((0x100000, 0x100000 + pages - 0xC0000))
    else:
        ranges = [(1, 0x9F), (0x100, pages)]
    max_pfn = ranges[-1][1]
    node = Node(arch, max_pfn, cpus, policy)
    node.debug = debug
    if arch == "x86_64":
        bounds = [("DMA", ZoneType.DMA, 0, 0, 0x1000), ("DMA32", ZoneType.DMA32, 1, 0x1000, 0x100000),
                  ("Normal", ZoneType.NORMAL, 2, 0x100000, 1 << 40)]
    else:
        lowmem_end = min(max_pfn, MAX_LOWMEM_32 >> PAGE_SHIFT)
        bounds = [("DMA", ZoneType.DMA, 0, 0, 0x1000), ("Normal", ZoneType.NORMAL, 1, 0x1000, lowmem_end),
                  ("HighMem", ZoneType.HIGHMEM, 2, lowmem_end, 1 << 40)]
    node_start = ranges[0][0]
    for name, zt, idx, lo, hi in bounds:
        zr = [(max(s, lo), min(e, hi)) for s, e in ranges if min(e, hi) > max(s, lo)]
        if not zr:
            continue
        # zone_spanned_pages_in_node: the arch zone limits clipped to the node's span
        start = max(lo, node_start)
        end = min(hi, max_pfn)
        present = sum(e - s for s, e in zr)
        add_zone(node, name, zt, idx, start, end, present)
    # memblock reservations
    reserved = bytearray(max_pfn)  # 1 = reserved
    reserved[0:0x100] = b"\x01" * 0x100
    k0 = (16 << 20) >> PAGE_SHIFT
    k1 = min(max_pfn, k0 + (KERNEL_IMAGE_BYTES[arch] >> PAGE_SHIFT))
    reserved[k0:k1] = b"\x01" * (k1 - k0)
    memmap_pages = -(-max_pfn * STRUCT_PAGE_SIZE[arch] // PAGE_SIZE)
    top = max_pfn if arch == "x86_64" else min(max_pfn, MAX_LOWMEM_32 >> PAGE_SHIFT)
    # memblock allocates top-down, below 4 GiB only for early users; keep the memmap at the top of RAM
    mm0 = max(k1, top - memmap_pages)
    reserved[mm0:top] = b"\x01" * (top - mm0)
    pb_valid = node.pb_valid
    for zone in node.zones:
        for s, e in ranges:
            s, e = max(s, zone.start_pfn), min(e, zone.end_pfn)
            if e <= s:
                continue
            for pb in range(s >> PAGEBLOCK_ORDER, ((e - 1) >> PAGEBLOCK_ORDER) + 1):
                pb_valid[pb] = 1
            _free_range_boot(node, zone, s, e, reserved)
    setup_per_zone_wmarks(node)
    if debug:
        node.check()
    return node


def _free_range_boot(node: Node, zone: Zone, s: int, e: int, reserved: bytearray) -> None:
    """Free the unreserved pages of [s, e) at boot, in the largest aligned blocks, to list tails."""
    pfn = s
    while pfn < e:
        if reserved[pfn]:
            nxt = reserved.find(b"\x00", pfn, e)
            pfn = e if nxt < 0 else nxt
            continue
        stop = reserved.find(b"\x01", pfn, e)
        stop = e if stop < 0 else stop
        while pfn < stop:
            order = MAX_PAGE_ORDER if pfn == 0 else min(MAX_PAGE_ORDER, (pfn & -pfn).bit_length() - 1)
            while pfn + (1 << order) > stop:
                order -= 1
            n = 1 << order
            node.page_mt[pfn:pfn + n] = b"\xff" * n
            zone.managed += n
            node.free_one_page(zone, pfn, order, to_tail=True)
            pfn += n
