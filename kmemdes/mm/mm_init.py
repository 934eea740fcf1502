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
from array import array

from kmemdes.errors import KmemdesError
from kmemdes.mm.gfp import ZoneType
from kmemdes.mm.layout import x86_32_max_low_pfn, x86_32_pae
from kmemdes.mm.page_alloc import (
    MAX_PAGE_ORDER,
    MIGRATE_TYPES,
    NO_ORDER,
    NOLIST,
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

__all__ = ["build_node", "parse_size", "MIN_MEM", "add_zone", "STRUCT_PAGE_SIZE", "node_from_page_layout", "mem_for_pfns",
           "pcp_owners"]

# x86-64 RAM above 3 GiB is remapped above 4 GiB (the PCI hole): pfns
_X64_HOLE_START, _X64_HIGH_RAM = 0xC0000, 0x100000

_SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


MIN_MEM = 16 << 20  # the smallest machine build_node lays out (DMA zone, kernel image at 16 MiB)


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
    for pb in range(start >> PAGEBLOCK_ORDER, ((end - 1) >> PAGEBLOCK_ORDER) + 1):
        if node.pb_zone[pb] is None:
            node.pb_zone[pb] = z
    return z


#: struct page size per architecture (vmemmap cost of each 4 KiB page)
STRUCT_PAGE_SIZE = {"x86_64": 64, "x86_32": 32}
KERNEL_IMAGE_BYTES = {"x86_64": 48 << 20, "x86_32": 8 << 20}


def mem_for_pfns(arch: str, top_pfn: int) -> int:
    """Bytes of RAM a fresh :func:`build_node` machine of ``arch`` needs so that every pfn below
    ``top_pfn`` exists (on x86-64 the RAM above 3 GiB sits above 4 GiB).

    >>> mem_for_pfns("x86_64", 0x40000) >> 20, mem_for_pfns("x86_64", 0x140000) >> 30
    (1024, 4)
    """
    if arch == "x86_64" and top_pfn > _X64_HOLE_START:
        return (max(top_pfn, _X64_HIGH_RAM) - _X64_HIGH_RAM + _X64_HOLE_START) << PAGE_SHIFT
    return top_pfn << PAGE_SHIFT


def build_node(arch: str = "x86_64", mem_bytes: int = 1 << 30, cpus: int = 2,
               policy: Policy | None = None, debug: bool = False, nr_cpus_config: int = 8) -> Node:
    """A freshly booted machine: zones laid out as the kernel does for ``arch``, memory freed at boot.

    x86_64: RAM at 4 KiB-640 KiB, 1 MiB-min(mem, 3 GiB), and above 4 GiB for the rest (the PCI hole);
    zones DMA (< 16 MiB), DMA32 (< 4 GiB), Normal.  x86_32 (3G/1G; PAE only above 4 GiB,
    :func:`~kmemdes.mm.layout.x86_32_pae`): DMA (< 16 MiB), Normal (lowmem) up to ``max_low_pfn``,
    HighMem above.  ``max_low_pfn`` is :func:`~kmemdes.mm.layout.x86_32_max_low_pfn` (the kernel's
    ``find_low_pfn_range``: ``MAXMEM_PFN`` ~880 MiB, not the classic 896 MiB; ``zone_sizes_init``
    ends ZONE_NORMAL there), the same limit the address layout maps; CONFIG_NR_CPUS, which moves
    MAXMEM, is ``max(nr_cpus_config, cpus)`` as in :class:`kmemdes.mm.kernel.Kernel`.
    Reserved before the buddy allocator starts: the first MiB,
    the kernel image at 16 MiB, and the memmap (struct pages) at the top of lowmem, as memblock
    allocates top-down.  Everything else is freed in max-order blocks to list tails
    (``memblock_free_all`` -> ``__free_pages_core``), so allocation starts at low addresses.
    """
    if arch not in ("x86_64", "x86_32"):
        raise KmemdesError(f"unknown arch {arch!r}: use x86_64 or x86_32")
    if mem_bytes < MIN_MEM:
        raise KmemdesError(f"memory size {mem_bytes} too small: at least 16M")
    if arch == "x86_32" and mem_bytes > (64 << 30):
        raise KmemdesError("x86_32 (PAE) supports at most 64G")
    pages = mem_bytes >> PAGE_SHIFT
    ranges: list[tuple[int, int]] = []  # RAM pfn ranges [start, end)
    if arch == "x86_64":
        low_end = min(pages, _X64_HOLE_START)  # 3 GiB
        ranges = [(1, 0x9F), (0x100, low_end)]
        if pages > _X64_HOLE_START:
            ranges.append((_X64_HIGH_RAM, _X64_HIGH_RAM + pages - _X64_HOLE_START))
    else:
        ranges = [(1, 0x9F), (0x100, pages)]
    max_pfn = ranges[-1][1]
    node = Node(arch, max_pfn, cpus, policy)
    node.debug = debug
    if arch == "x86_64":
        bounds = [("DMA", ZoneType.DMA, 0, 0, 0x1000), ("DMA32", ZoneType.DMA32, 1, 0x1000, 0x100000),
                  ("Normal", ZoneType.NORMAL, 2, 0x100000, 1 << 40)]
    else:
        lowmem_end = x86_32_max_low_pfn(max_pfn, nr_cpus=max(nr_cpus_config, cpus), pae=x86_32_pae(mem_bytes))
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
    top = max_pfn if arch == "x86_64" else lowmem_end
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
        node.free_pages_core(zone, pfn, stop)
        pfn = stop


# ---------------------------------------------------------------------------
# A machine consistent with a /proc snapshot
# ---------------------------------------------------------------------------

_ZONE_TYPES = {"DMA": ZoneType.DMA, "DMA32": ZoneType.DMA32, "Normal": ZoneType.NORMAL,
               "HighMem": ZoneType.HIGHMEM, "Movable": ZoneType.MOVABLE}
_MT_BY_NAME = {"Unmovable": 0, "Movable": 1, "Reclaimable": 2, "HighAtomic": 3, "Isolate": 4}


def node_from_snapshot(snap, cpus: int | None = None, policy: Policy | None = None,
                       hints=None) -> tuple[Node, list[str]]:
    """Build a model state consistent with a snapshot folder (see :func:`kmemdes.trace.snapshot.read_snapshot`).

    Zones (start_pfn, spanned, present, managed, watermarks, protection, pcp
    limits) come from ``zoneinfo``; free blocks per (zone, migratetype, order)
    and pageblocks per migratetype from ``pagetypeinfo`` (``buddyinfo`` alone:
    every block Movable).  /proc does not say *where* the free blocks are, so
    they are laid out deterministically: the zone's online pageblocks are the
    first ones of the zone (the low end of a zone with deferred init); types are
    given in runs (Unmovable, Reclaimable, HighAtomic, Isolate, Movable, low to
    high addresses); free pageblocks and order-10 pairs sit at the end of their
    type's run; smaller free blocks are spread over the other pageblocks of
    their type in aligned slots whose buddies keep at least one page allocated,
    so nothing would merge.  Pages of per-CPU lists (zoneinfo ``count:``) are
    allocated in the model.  Returns the node and notes on what had to be assumed.
    """
    notes: list[str] = []
    zi = {z.name: z for z in (snap.zoneinfo or []) if z.present or z.managed}
    bi = {b.zone: b for b in snap.buddyinfo}
    pti = snap.pagetypeinfo
    names = [b.zone for b in snap.buddyinfo]
    missing = [n for n in names if snap.zoneinfo is not None and n not in zi]
    if missing:
        raise KmemdesError(f"{snap.path}/zoneinfo: no populated zone {', '.join(missing)} (truncated?)")
    arch = "x86_64" if "DMA32" in names or not ("HighMem" in names or "HighMem" in zi) else "x86_32"
    order_idx = (["DMA", "DMA32", "Normal", "Movable"] if arch == "x86_64" else ["DMA", "Normal", "HighMem", "Movable"])
    if cpus is None:
        cpus = snap.nproc or max((len(z.pagesets) for z in zi.values()), default=0) or 1
    # per-zone free counts per type and pageblock counts per type
    free: dict[str, list[list[int]]] = {}
    blocks: dict[str, list[int]] = {}
    for name in names:
        if pti is not None and any((name, t) in pti.free for t in pti.types):
            free[name] = [pti.free.get((name, t), [0] * NR_PAGE_ORDERS) for t in pti.types]
            blocks[name] = list(pti.blocks.get(name, [0] * len(pti.types)))
            tot = [sum(c[o] for c in free[name]) for o in range(NR_PAGE_ORDERS)]
            if tot != bi[name].nr_free:
                notes.append(f"zone {name}: buddyinfo and pagetypeinfo disagree (read at different instants); "
                             f"following pagetypeinfo (order diffs {[a - b for a, b in zip(bi[name].nr_free, tot)]})")
            if pti.free_capped and any(k[0] == name for k in pti.free_capped):
                notes.append(f"zone {name}: pagetypeinfo counts capped at 100000 ('>'); using the cap")
        else:
            types = list(_MT_BY_NAME)
            free[name] = [[0] * NR_PAGE_ORDERS for _ in types]
            free[name][1] = list(bi[name].nr_free)
            blocks[name] = []
            notes.append(f"zone {name}: no pagetypeinfo; every free block assumed Movable")
    type_names = pti.types if pti is not None else list(_MT_BY_NAME)
    mts = [_MT_BY_NAME.get(t, -1) for t in type_names]
    if -1 in mts:
        raise KmemdesError(f"{snap.path}/pagetypeinfo: unknown migratetype in {type_names} (CMA kernels are not modelled)")
    # zone layout
    layout = []
    for name in names:
        z = zi.get(name)
        if z is not None and z.start_pfn is not None:
            start, spanned, present, managed = z.start_pfn, z.spanned, z.present, z.managed
        else:
            nb = sum(blocks[name]) or -(-sum(bi[name].nr_free[o] << o for o in range(NR_PAGE_ORDERS)) // PAGEBLOCK_NR_PAGES)
            start = {"DMA": 1, "DMA32": 0x1000, "Normal": 0x100000 if arch == "x86_64" else 0x1000}.get(name, 0)
            if layout:
                start = max(start, layout[-1][1] + layout[-1][2])
            spanned = present = managed = nb * PAGEBLOCK_NR_PAGES
            notes.append(f"zone {name}: no zoneinfo; zone span guessed from its pageblock count")
        if name not in order_idx:
            raise KmemdesError(f"{snap.path}: unknown zone {name!r}")
        layout.append((name, start, spanned, present, managed))
    max_pfn = max(s + sp for _, s, sp, _, _ in layout)
    node = Node(arch, max_pfn, cpus, policy)
    node.page_mt[:] = b"\xfe" * max_pfn  # reserved / not online until placed
    for name, start, spanned, present, managed in layout:
        zone = add_zone(node, name, _ZONE_TYPES[name], order_idx.index(name), start, start + spanned, present)
        zone.managed = managed
        nblocks = sum(blocks[name]) if blocks[name] else -(-present // PAGEBLOCK_NR_PAGES)
        first_pb = start >> PAGEBLOCK_ORDER
        last_pb = (start + spanned - 1) >> PAGEBLOCK_ORDER
        nblocks = min(nblocks, last_pb - first_pb + 1)
        pbs = list(range(first_pb, first_pb + nblocks))
        counts = blocks[name] if blocks[name] else None
        _lay_out_zone(node, zone, pbs, counts, free[name], mts, notes, hints)
    # watermarks, reserves and pcp limits: as printed, where zoneinfo has them
    setup_per_zone_wmarks(node)
    for zone in node.zones:
        z = zi.get(zone.name)
        if z is None:
            continue
        # zoneinfo prints wmark_pages(): _watermark + watermark_boost (zoneinfo_show_print)
        zone._watermark = [w - z.boost for w in (z.min, z.low, z.high, z.promo)]
        zone.watermark_boost = z.boost
        if z.protection:
            zone.lowmem_reserve = list(z.protection) + [0] * (node.nr_zone_types - len(z.protection))
        for pcp, ps in zip(zone.pcp, z.pagesets):
            pcp.batch = ps.get("batch", pcp.batch)
            pcp.high_min = ps.get("high_min", pcp.high_min)
            pcp.high_max = ps.get("high_max", pcp.high_max)
            pcp.high = ps.get("high", pcp.high)
        pcp_pages = sum(ps.get("count", 0) for ps in z.pagesets)
        if pcp_pages:
            notes.append(f"zone {zone.name}: {pcp_pages} pages sat on per-CPU lists (contents unknown: "
                         "allocated in the model)")
        zone.nr_reserved_highatomic = node.pageblock_counts(zone)[3] * PAGEBLOCK_NR_PAGES
    node.min_free_kbytes = sum(z.min_wmark for z in node.zones) << (PAGE_SHIFT - 10)
    if hints is not None and hints.pcp_blocks:
        placed = 0
        for pfn, order, mt, cpu in pcp_owners(node, snap, hints.pcp_blocks):
            n = 1 << order
            if pfn + n > node.max_pfn or node.page_mt.count(0xFF, pfn, pfn + n) or not node.pb_valid[pfn >> PAGEBLOCK_ORDER]:
                continue
            zone = node.zone_of(pfn)
            if not zone.pcp:
                continue
            pcp = zone.pcp[cpu % node.cpus]
            node.page_mt[pfn:pfn + n] = b"\xff" * n
            node._list_add_tail(pcp.lid0 + node.order_to_pindex(mt, order), pfn)
            pcp.count += n
            placed += n
        notes.append(f"{placed} pages placed on per-CPU lists where the trace shows them there at the start")
    return node, notes


def _lay_out_zone(node: Node, zone: Zone, pbs: list[int], counts: list[int] | None,
                  free: list[list[int]], mts: list[int], notes: list[str], hints=None) -> None:
    """Assign pageblock types and place free blocks (see :func:`node_from_snapshot`)."""
    from collections import deque

    n = len(pbs)
    for pb in pbs:
        node.pb_valid[pb] = 1
    if counts is None:
        counts = [0] * len(mts)
        counts[mts.index(1)] = n
    left = {mt: counts[mts.index(mt)] for mt in mts}
    remaining = [list(f) for f in free]  # per type index, per order
    pbset = set(pbs)
    lo, hi = zone.start_pfn, zone.end_pfn
    blocked = set()  # pageblocks holding pages in use or on pcp lists at the start: no guessed free block there
    soft = set()  # pageblocks holding only free blocks the trace shows (they may have been larger)
    # 1. pageblock types the trace saw on free lists
    assigned: dict[int, int] = {}
    if hints is not None:
        for pb, mt in sorted(hints.pageblock_types.items()):
            if pb in pbset and mt in left and left[mt] > 0:
                assigned[pb] = mt
                left[mt] -= 1
        import numpy as np

        busy = hints.busy
        if len(busy):
            inzone = busy[(busy >= lo) & (busy < hi)]
            blocked.update(np.unique(inzone >> PAGEBLOCK_ORDER).tolist())
        blocked.update(p >> PAGEBLOCK_ORDER for p, _, _, _ in hints.pcp_blocks if lo <= p < hi)
    # 2. the rest in runs (Unmovable, Reclaimable, HighAtomic, Isolate, Movable, low to high)
    rest = [pb for pb in pbs if pb not in assigned]
    cur = 0
    for mt in (0, 2, 3, 4, 1):
        if mt not in left:
            continue
        for pb in rest[cur:cur + left[mt]]:
            assigned[pb] = mt
        cur += left[mt]
    if cur < len(rest):
        notes.append(f"zone {zone.name}: {len(rest) - cur} pageblocks without a type count; left Movable")
        for pb in rest[cur:]:
            assigned[pb] = 1
    for pb, mt in assigned.items():
        node.pb_mt[pb] = mt
    per_type: dict[int, list[int]] = {}
    for pb in pbs:
        per_type.setdefault(assigned[pb], []).append(pb)
    # 3. free blocks the trace shows, consuming the snapshot's counts
    mismatch = 0
    if hints is not None:
        for pfn, order, _ in hints.free_blocks:
            if not (lo <= pfn and pfn + (1 << order) <= hi) or (pfn >> PAGEBLOCK_ORDER) not in pbset:
                continue
            mt = node.pb_mt[pfn >> PAGEBLOCK_ORDER]
            mismatch += _place_counted(node, zone, pfn, order, mt, remaining[mts.index(mt)])
            soft.add(pfn >> PAGEBLOCK_ORDER)
        if mismatch:
            notes.append(f"zone {zone.name}: {mismatch} free blocks seen in the trace exceed the snapshot's counts")
    # 4. the snapshot's remaining counts, where the trace says nothing
    for mt, blocks_of_type in per_type.items():
        f = remaining[mts.index(mt)]
        avail = [pb for pb in blocks_of_type if pb not in blocked and pb not in soft]
        # pageblocks with only trace-shown free blocks can still hold a whole free pageblock
        # (the trace took part of it): they come first in the scans below, which go from the end
        avail = [pb for pb in blocks_of_type if pb in soft and pb not in blocked] + avail
        n10, n9 = f[MAX_PAGE_ORDER], f[PAGEBLOCK_ORDER]
        whole: list[tuple[int, int]] = []
        i = len(avail) - 1
        while n10 and i >= 1:
            a, b = avail[i - 1], avail[i]
            if b == a + 1 and a % 2 == 0 and a << PAGEBLOCK_ORDER >= lo and (b + 1) << PAGEBLOCK_ORDER <= hi:
                whole.append((a << PAGEBLOCK_ORDER, MAX_PAGE_ORDER))
                del avail[i - 1:i + 1]
                n10 -= 1
                i -= 2
            else:
                i -= 1
        if n10:
            notes.append(f"zone {zone.name}: {n10} order-10 free blocks of type {mt} found no place "
                         "(the trace shows those pageblocks in use)")
        i = len(avail) - 1
        while n9 and i >= 0:
            pb = avail[i]
            buddy_free = node._buddy_order((pb ^ 1) << PAGEBLOCK_ORDER) == PAGEBLOCK_ORDER \
                or any(p == (pb ^ 1) << PAGEBLOCK_ORDER for p, _ in whole)
            if pb << PAGEBLOCK_ORDER < lo or (pb + 1) << PAGEBLOCK_ORDER > hi or (
                    buddy_free and node.pb_mt[pb ^ 1] == mt):
                i -= 1
                continue
            whole.append((pb << PAGEBLOCK_ORDER, PAGEBLOCK_ORDER))
            del avail[i]
            n9 -= 1
            i -= 1
        if n9:
            notes.append(f"zone {zone.name}: {n9} order-9 free blocks of type {mt} found no place "
                         "(the trace shows those pageblocks in use)")
        for pfn, order in whole:
            for pb in range(pfn >> PAGEBLOCK_ORDER, (pfn >> PAGEBLOCK_ORDER) + (1 << (order - PAGEBLOCK_ORDER))):
                if pb in soft:  # the trace-shown pieces were part of this whole block
                    _unplace_range(node, zone, pb << PAGEBLOCK_ORDER, f)
            _place_free(node, zone, pfn, order, mt)
        f[MAX_PAGE_ORDER] = f[PAGEBLOCK_ORDER] = 0
        unplaced = [0] * NR_PAGE_ORDERS
        holes: list[deque] = [deque() for _ in range(NR_PAGE_ORDERS)]
        for pb in avail:
            if pb not in soft:
                holes[PAGEBLOCK_ORDER].append(pb << PAGEBLOCK_ORDER)
        for order in range(PAGEBLOCK_ORDER - 1, -1, -1):
            for _ in range(f[order]):
                base = _take_hole(holes, order, lo, hi)
                if base < 0:
                    unplaced[order] += 1
                    continue
                _place_free(node, zone, base, order, mt)
        if any(unplaced) and hints is not None:
            unplaced = _place_around_evidence(node, zone, [pb for pb in blocks_of_type if pb in blocked],
                                              unplaced, mt, hints)
        if any(unplaced):
            notes.append(f"zone {zone.name}: free blocks of type {mt} that found no place, by order: {unplaced}")
        # pages of this type's pageblocks that are not free are allocated with the block's type
        fill = mt if mt < 3 else 0
        to_fill = bytes(b if b == 0xFF else fill for b in range(256))  # free pages stay free
        for pb in blocks_of_type:
            s0 = pb << PAGEBLOCK_ORDER
            seg = node.page_mt[s0:s0 + PAGEBLOCK_NR_PAGES]
            if seg.count(0xFE):
                node.page_mt[s0:s0 + PAGEBLOCK_NR_PAGES] = seg.translate(to_fill)


def _place_around_evidence(node: Node, zone: Zone, pbs: list[int], unplaced: list[int], mt: int,
                           hints) -> list[int]:
    """Place leftover free blocks in pageblocks the trace touched, page by page around the evidence:
    a block may not cover a page in use or on a pcp list at the start, nor a free page, nor sit
    next to a free buddy of its order (they would have merged).  Blocks go round-robin over the
    pageblocks, largest first."""
    import numpy as np

    lo, hi = zone.start_pfn, zone.end_pfn
    busy = bytearray(hi - lo)
    b = hints.busy
    b = b[(b >= lo) & (b < hi)] - lo
    if len(b):
        arr = np.frombuffer(busy, dtype=np.uint8)
        arr[b] = 1
    page_mt = node.page_mt
    left = list(unplaced)
    for order in range(PAGEBLOCK_ORDER - 1, -1, -1):
        if not left[order] or not pbs:
            continue
        size = 1 << order
        cursors = {pb: 0 for pb in pbs}
        active = list(pbs)
        while left[order] and active:
            nxt = []
            for pb in active:
                if not left[order]:
                    break
                base0 = pb << PAGEBLOCK_ORDER
                off = cursors[pb]
                placed = False
                while off < PAGEBLOCK_NR_PAGES:
                    p = base0 + off
                    off += size
                    if p < lo or p + size > hi or busy.count(1, p - lo, p - lo + size):
                        continue
                    if page_mt.count(0xFF, p, p + size):
                        continue
                    if node._buddy_order(p ^ size) == order:
                        continue
                    _place_free(node, zone, p, order, mt)
                    left[order] -= 1
                    placed = True
                    break
                cursors[pb] = off
                if placed or off < PAGEBLOCK_NR_PAGES:
                    nxt.append(pb)
            active = nxt
    return left


def _unplace_range(node: Node, zone: Zone, start: int, counts: list[int]) -> None:
    """Take back the free blocks placed in one pageblock (their counts return to ``counts``)."""
    pfn = start
    while pfn < start + PAGEBLOCK_NR_PAGES:
        o = node._buddy_order(pfn)
        if o >= 0:
            node._del_from_free_list(zone, pfn, o)
            counts[o] += 1
            pfn += 1 << o
        else:
            pfn += 1
    node.page_mt[start:start + PAGEBLOCK_NR_PAGES] = b"\xfe" * PAGEBLOCK_NR_PAGES


def _place_counted(node: Node, zone: Zone, pfn: int, order: int, mt: int, counts: list[int]) -> int:
    """Place a free block the trace shows, taking it from the snapshot's count of its order, or
    splitting it into halves while that count is used up; returns 1 if it had to exceed the counts."""
    if node.page_mt.count(0xFF, pfn, pfn + (1 << order)):
        return 0
    if counts[order] > 0 or order == 0:
        over = int(counts[order] <= 0)
        counts[order] -= 1
        _place_free(node, zone, pfn, order, mt)
        return over
    half = 1 << (order - 1)
    return _place_counted(node, zone, pfn, order - 1, mt, counts) + \
        _place_counted(node, zone, pfn + half, order - 1, mt, counts)


def _take_hole(holes: list, order: int, lo: int, hi: int) -> int:
    """Take a restricted hole for an ``order`` free block inside [lo, hi); -1 if none fits.

    A restricted hole of order r is an aligned region that must keep at least
    one allocated page; the block takes one half of an order+1 region and the
    other half stays a (smaller) restricted hole, so no two free blocks merge.
    """
    for r in range(order + 1, PAGEBLOCK_ORDER + 1):
        tries = len(holes[r])
        while tries:
            tries -= 1
            base = holes[r].popleft()
            if base + (1 << r) <= lo or base >= hi:
                continue  # entirely outside the zone: drop it
            while r > order + 1:
                r -= 1
                lower_in = base >= lo and base + (1 << r) <= hi
                if lower_in:
                    holes[r].append(base + (1 << r))
                else:
                    holes[r].append(base)
                    base += 1 << r
            half = 1 << order
            if base >= lo and base + half <= hi:
                holes[order].append(base + half)
                return base
            if base + half >= lo and base + 2 * half <= hi:
                holes[order].append(base)
                return base + half
            return _take_hole(holes, order, lo, hi)
    return -1


def _place_free(node: Node, zone: Zone, pfn: int, order: int, mt: int) -> None:
    n = 1 << order
    node.page_mt[pfn:pfn + n] = b"\xff" * n
    node._add_to_free_list(zone, pfn, order, mt, tail=True)


# ---------------------------------------------------------------------------
# A machine with an exact free-page layout (from /proc/kpageflags)
# ---------------------------------------------------------------------------


def pcp_owners(node: Node, snap, pcp_blocks) -> list[tuple[int, int, int, int]]:
    """``pcp_blocks`` with a CPU for every block whose list is unknown (cpu < 0: first seen drained,
    possibly from another CPU): the CPU of its zone with the most pages the snapshot's zoneinfo
    counts on its list (``pagesets``' ``count``) and the known blocks do not account for yet;
    CPU 0 when the snapshot has no per-CPU counts.

    >>> from kmemdes.mm.mm_init import build_node, parse_size
    >>> from types import SimpleNamespace as NS
    >>> node = build_node("x86_64", parse_size("256M"), cpus=2)
    >>> snap = NS(zoneinfo=[NS(name="DMA32", pagesets=[{"count": 1}, {"count": 6}])])
    >>> pcp_owners(node, snap, [(8192, 0, 1, 0), (8200, 2, 1, -1), (8204, 0, 1, -1)])
    [(8192, 0, 1, 0), (8200, 2, 1, 1), (8204, 0, 1, 1)]
    """
    counts = {z.name: [ps.get("count", 0) for ps in z.pagesets] for z in (getattr(snap, "zoneinfo", None) or [])}
    deficit: dict[str, list[int]] = {}
    for zone in node.zones:
        c = (counts.get(zone.name) or [])[:node.cpus]
        deficit[zone.name] = c + [0] * (node.cpus - len(c))

    def zone_name(pfn: int) -> str | None:
        try:
            return node.zone_of(pfn).name
        except KmemdesError:
            return None

    for pfn, order, _, cpu in pcp_blocks:
        name = zone_name(pfn) if cpu >= 0 else None
        if name is not None:
            deficit[name][cpu % node.cpus] -= 1 << order
    out = []
    for pfn, order, mt, cpu in pcp_blocks:
        if cpu < 0:
            name = zone_name(pfn)
            d = deficit[name] if name is not None else [0]
            cpu = max(range(len(d)), key=lambda c: (d[c], -c))
            d[cpu] -= 1 << order
        out.append((pfn, order, mt, cpu))
    return out


def node_from_page_layout(snap, free_pfn, free_order, page_mt, pb_mt, cpus: int | None = None,
                          policy: Policy | None = None, pcp_blocks=()) -> tuple[Node, list[str]]:
    """A model state whose free buddy blocks are exactly ``free_pfn`` / ``free_order``.

    Zones, watermarks, lowmem reserves and per-CPU list limits come from the
    snapshot as in :func:`node_from_snapshot`; then the free lists are emptied
    and rebuilt from a page-exact layout (``kmemdes.sim.kpageflags`` derives it
    from ``/proc/kpageflags``):

    - ``free_pfn``, ``free_order``: every free buddy block (head pfn, order), in
      increasing pfn order; each goes to the tail of ``free_area[order]`` of its
      pageblock's migratetype, so a list is taken lowest pfn first (the kernel's
      order inside a list is not visible from user space);
    - ``page_mt``: per pfn (bytes-like, at least ``max_pfn`` long) the migratetype
      of an allocated page, or ``PAGE_RESERVED`` (0xFE) for a page the buddy
      allocator never owned; entries of free pages are overwritten;
    - ``pb_mt``: per pageblock (bytes-like) its migratetype; pageblocks holding a
      free block become online (``pb_valid``) even past the snapshot's count;
    - ``pcp_blocks``: ``(pfn, order, migratetype, cpu)`` on per-CPU lists at the
      start (appended in the given order).  A block free in the layout is taken
      off its buddy list first (the layout is older than the trace: a refill
      came in between); blocks partly free or reserved are skipped.

    Returns the node and notes on what was assumed.
    """
    node, notes = node_from_snapshot(snap, cpus=cpus, policy=policy)
    notes = [n for n in notes if "per-CPU lists" not in n]
    n = node.max_pfn
    # empty every buddy and per-CPU list
    node.lhead[:] = [-1] * len(node.lhead)
    node.ltail[:] = [-1] * len(node.ltail)
    node.lcount[:] = [0] * len(node.lcount)
    node.lid[:] = array("H", [NOLIST]) * n
    node.alloc_order[:] = bytes([NO_ORDER]) * n
    for zone in node.zones:
        zone.nr_free = [0] * NR_PAGE_ORDERS
        zone.free_pages = 0
        zone.free_by_mt = [0] * MIGRATE_TYPES
        for pcp in zone.pcp:
            pcp.count = 0
    pm = bytes(page_mt[:n])
    if len(pm) < n:
        pm += b"\xfe" * (n - len(pm))
    node.page_mt[:] = pm
    npb = len(node.pb_mt)
    node.pb_mt[:] = bytes(pb_mt[:npb]) + bytes(node.pb_mt[len(pb_mt):npb])
    grown = 0
    page = node.page_mt
    pb_valid = node.pb_valid
    outside = 0
    for pfn, order in zip(free_pfn, free_order):
        pfn = int(pfn)
        order = int(order)
        size = 1 << order
        pb = pfn >> PAGEBLOCK_ORDER
        zone = node.pb_zone[pb] if pb < npb else None
        if zone is None or pfn < zone.start_pfn or pfn + size > zone.end_pfn:
            outside += 1
            continue
        for q in range(pb, pb + max(1, size >> PAGEBLOCK_ORDER)):
            if not pb_valid[q]:
                pb_valid[q] = 1
                grown += 1
        page[pfn:pfn + size] = b"\xff" * size
        node._add_to_free_list(zone, pfn, order, node.pb_mt[pb], tail=True)
    if outside:
        notes.append(f"{outside} free blocks outside every zone were left out")
    if grown:
        notes.append(f"{grown} pageblocks beyond the snapshot's pageblock counts hold free pages: made online")
    placed = moved = 0
    for pfn, order, mt, cpu in pcp_owners(node, snap, pcp_blocks):
        size = 1 << order
        if pfn < 0 or pfn + size > n or pfn & (size - 1) or page[pfn] == 0xFE \
                or not pb_valid[pfn >> PAGEBLOCK_ORDER]:
            continue
        zone = node.zone_of(pfn)
        if not zone.pcp:
            continue
        nfree = page.count(0xFF, pfn, pfn + size)
        if nfree:
            # free in the layout, on a pcp list when the trace starts: a refill in between took it
            if nfree != size or node.take_block(pfn, order) != 0:
                continue
            moved += size
        pcp = zone.pcp[cpu % node.cpus]
        page[pfn:pfn + size] = b"\xff" * size
        node._list_add_tail(pcp.lid0 + node.order_to_pindex(mt if mt < 3 else 1, order), pfn)
        pcp.count += size
        placed += size
    if pcp_blocks:
        notes.append(f"{placed} pages placed on per-CPU lists at the start"
                     + (f" ({moved} of them free in the layout: taken off the buddy lists)" if moved else ""))
    for zone in node.zones:
        zone.nr_reserved_highatomic = node.pageblock_counts(zone)[3] * PAGEBLOCK_NR_PAGES
    return node, notes
