"""The model's state in the kernel's own text layouts (mm/vmstat.c).

``/proc/buddyinfo`` (``frag_show_print``), ``/proc/pagetypeinfo``
(``pagetypeinfo_showfree_print``, ``pagetypeinfo_showblockcount_print``),
``/proc/zoneinfo`` (``zoneinfo_show_print``, the zone fields the model has) and
the debugfs ``extfrag/unusable_index`` and ``extfrag/extfrag_index`` files
(``unusable_show_print``, ``extfrag_show_print``), trailing spaces included.

>>> print(format_buddyinfo([(0, "DMA", [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 3])]), end="")
Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3 
>>> print(format_index_file([(0, "DMA", [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 3])], "unusable"), end="")
Node 0, zone      DMA 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.066 0.200 
"""

from __future__ import annotations

from typing import Iterable, Sequence

from kmemdes.mm.frag import format_index, fragmentation_index, unusable_free_index
from kmemdes.mm.gfp import MIGRATETYPE_NAMES

__all__ = [
    "format_buddyinfo",
    "format_index_file",
    "buddyinfo",
    "pagetypeinfo",
    "zoneinfo",
    "unusable_index",
    "extfrag_index",
    "node_zone_rows",
]

NR_PAGE_ORDERS = 11
PAGETYPEINFO_CAP = 100000  # the free-list walk stops here and prints '>'


def format_buddyinfo(rows: Iterable[tuple[int, str, Sequence[int]]]) -> str:
    """Lines of /proc/buddyinfo from ``(node, zone, nr_free)`` rows."""
    out = []
    for nid, name, nr_free in rows:
        out.append(f"Node {nid}, zone {name:>8} " + "".join(f"{n:6d} " for n in nr_free) + "\n")
    return "".join(out)


def format_index_file(rows: Iterable[tuple[int, str, Sequence[int]]], index: str = "unusable") -> str:
    """debugfs ``extfrag/unusable_index`` (``index="unusable"``) or ``extfrag/extfrag_index``."""
    fn = unusable_free_index if index == "unusable" else fragmentation_index
    out = []
    for nid, name, nr_free in rows:
        vals = "".join(format_index(fn(nr_free, o)) + " " for o in range(NR_PAGE_ORDERS))
        out.append(f"Node {nid}, zone {name:>8} {vals}\n")
    return "".join(out)


def node_zone_rows(node) -> list[tuple[int, str, list[int]]]:
    """``(node id, zone name, nr_free)`` for the populated zones (``walk_zones_in_node``)."""
    return [(0, z.name, list(z.nr_free)) for z in node.zones if z.present]


def buddyinfo(node) -> str:
    """/proc/buddyinfo of the model."""
    return format_buddyinfo(node_zone_rows(node))


def unusable_index(node) -> str:
    """debugfs extfrag/unusable_index of the model."""
    return format_index_file(node_zone_rows(node), "unusable")


def extfrag_index(node) -> str:
    """debugfs extfrag/extfrag_index of the model."""
    return format_index_file(node_zone_rows(node), "extfrag")


def pagetypeinfo(node) -> str:
    """/proc/pagetypeinfo of the model (no page_owner mixed-block table)."""
    from kmemdes.mm.page_alloc import MIGRATE_TYPES, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER

    out = [f"Page block order: {PAGEBLOCK_ORDER}\n", f"Pages per block:  {PAGEBLOCK_NR_PAGES}\n", "\n"]
    out.append(f"{'Free pages count per migrate type at order':<43} "
               + "".join(f"{o:6d} " for o in range(NR_PAGE_ORDERS)) + "\n")
    zones = [z for z in node.zones if z.present]
    for z in zones:
        for mt in range(MIGRATE_TYPES):
            cells = []
            for o in range(NR_PAGE_ORDERS):
                n = z.free_list_count(o, mt)
                cells.append(f">{PAGETYPEINFO_CAP:6d} " if n >= PAGETYPEINFO_CAP else f"{n:6d} ")
            out.append(f"Node {0:4d}, zone {z.name:>8}, type {MIGRATETYPE_NAMES[mt]:>12} " + "".join(cells) + "\n")
    out.append(f"\n{'Number of blocks type ':<23}" + "".join(f"{n:>12} " for n in MIGRATETYPE_NAMES) + "\n")
    for z in zones:
        out.append(f"Node 0, zone {z.name:>8} " + "".join(f"{c:12d} " for c in node.pageblock_counts(z)) + "\n")
    return "".join(out)


def _fls(x: int) -> int:
    return x.bit_length()


def calculate_normal_threshold(managed: int, cpus: int) -> int:
    """``calculate_normal_threshold``: the vmstat counter threshold printed in zoneinfo."""
    mem = managed >> (27 - 12)
    return min(125, 2 * _fls(cpus) * (1 + _fls(mem)))


def zoneinfo(node) -> str:
    """/proc/zoneinfo of the model: every zone type of the arch, modelled fields only.

    Node statistics and zone counters the model does not keep (LRU sizes, NUMA
    hits...) are left out; the layout of what is printed is the kernel's.
    """
    from kmemdes.mm.page_alloc import PAGEBLOCK_ORDER

    names = (["DMA", "DMA32", "Normal", "Movable", "Device"] if node.arch == "x86_64"
             else ["DMA", "Normal", "HighMem", "Movable"])
    by_name = {z.name: z for z in node.zones}
    out = []
    for idx, name in enumerate(names):
        z = by_name.get(name)
        out.append(f"Node 0, zone {name:>8}\n")
        if z is None:
            wmin = 32 if name in ("Movable", "HighMem") else 0
            wm = (wmin, wmin, wmin, wmin)
            out.append("  pages free     0\n")
            out.append("        boost    0\n")
            for label, v in zip(("min", "low", "high", "promo"), wm):
                out.append(f"        {label:<8} {v}\n")
            for label in ("spanned", "present", "managed", "cma"):
                out.append(f"        {label:<8} 0\n")
            out.append(f"        protection: ({', '.join(['0'] * node.nr_zone_types)})\n")
            continue
        out.append(f"  pages free     {z.free_pages}\n")
        out.append(f"        boost    {z.watermark_boost}\n")
        for i, label in enumerate(("min", "low", "high", "promo")):  # wmark_pages(): boost included
            out.append(f"        {label:<8} {z.wmark(i)}\n")
        out.append(f"        spanned  {z.spanned}\n")
        out.append(f"        present  {z.present}\n")
        out.append(f"        managed  {z.managed}\n")
        out.append("        cma      0\n")
        out.append(f"        protection: ({', '.join(str(v) for v in z.lowmem_reserve)})\n")
        out.append(f"      {'nr_free_pages':<12} {z.free_pages}\n")
        blocks = sum(n << o for o, n in enumerate(z.nr_free) if o >= PAGEBLOCK_ORDER)
        out.append(f"      {'nr_free_pages_blocks':<12} {blocks}\n")
        out.append("  pagesets\n")
        thr = calculate_normal_threshold(z.managed, node.cpus)
        for cpu, pcp in enumerate(z.pcp):
            out.append(f"    cpu: {cpu}\n")
            out.append(f"              count:    {pcp.count}\n")
            out.append(f"              high:     {pcp.high}\n")
            out.append(f"              batch:    {pcp.batch}\n")
            out.append(f"              high_min: {pcp.high_min}\n")
            out.append(f"              high_max: {pcp.high_max}\n")
            out.append(f"  vm stats threshold: {thr}\n")
        out.append("  node_unreclaimable:  0\n")
        out.append(f"  start_pfn:           {z.start_pfn}\n")
    return "".join(out)
