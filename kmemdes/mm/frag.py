"""Fragmentation metrics with the kernel's integer arithmetic (mm/vmstat.c, mm/compaction.c).

Every function takes ``nr_free``: free blocks per order 0..10 over all
migratetypes (``zone->free_area[order].nr_free``, the numbers of one
/proc/buddyinfo line), so they work the same on the model and on snapshots.

>>> nr_free = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 3]   # the DMA zone of the reference machine
>>> [unusable_free_index(nr_free, o) for o in (8, 9, 10)]   # debugfs printed 0.000 0.066 0.200
[0, 66, 200]
>>> format_index(-1000), format_index(-500), format_index(397)
('-1.000', '0.-500', '0.397')
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

__all__ = [
    "ContigPageInfo",
    "fill_contig_page_info",
    "unusable_free_index",
    "fragmentation_index",
    "extfrag_for_order",
    "fragmentation_score_zone",
    "fragmentation_score_node",
    "format_index",
    "COMPACTION_HPAGE_ORDER",
]

NR_PAGE_ORDERS = 11
COMPACTION_HPAGE_ORDER = 9  # HPAGE_PMD_ORDER on x86-64 with THP


class ContigPageInfo(NamedTuple):
    """``struct contig_page_info``."""

    free_pages: int
    free_blocks_total: int
    free_blocks_suitable: int


def fill_contig_page_info(nr_free: Sequence[int], suitable_order: int) -> ContigPageInfo:
    """``fill_contig_page_info``: free pages, free blocks, and blocks usable at ``suitable_order``.

    >>> fill_contig_page_info([1, 0, 1] + [0] * 8, 1)
    ContigPageInfo(free_pages=5, free_blocks_total=2, free_blocks_suitable=2)
    """
    free_pages = total = suitable = 0
    for order, blocks in enumerate(nr_free):
        total += blocks
        free_pages += blocks << order
        if order >= suitable_order:
            suitable += blocks << (order - suitable_order)
    return ContigPageInfo(free_pages, total, suitable)


def unusable_free_index(nr_free: Sequence[int], order: int) -> int:
    """``unusable_free_index``: thousandths of free memory unusable for an ``order`` request.

    >>> unusable_free_index([0] * 11, 3)
    1000
    """
    info = fill_contig_page_info(nr_free, order)
    if info.free_pages == 0:
        return 1000
    return (info.free_pages - (info.free_blocks_suitable << order)) * 1000 // info.free_pages


def fragmentation_index(nr_free: Sequence[int], order: int) -> int:
    """``__fragmentation_index``: 0 = failure from lack of memory, 1000 = from fragmentation.

    -1000 when a block of ``order`` is free (the request would succeed).

    >>> fragmentation_index([0] * 11, 2), fragmentation_index([4] + [0] * 10, 2)   # 1000 - (1000 + 1000) // 4
    (0, 500)
    >>> fragmentation_index([40] + [0] * 10, 2), fragmentation_index([0, 0, 1] + [0] * 8, 2)
    (725, -1000)
    """
    if order > NR_PAGE_ORDERS - 1:
        return 0
    info = fill_contig_page_info(nr_free, order)
    if not info.free_blocks_total:
        return 0
    if info.free_blocks_suitable:
        return -1000
    requested = 1 << order
    return 1000 - (1000 + info.free_pages * 1000 // requested) // info.free_blocks_total


def extfrag_for_order(nr_free: Sequence[int], order: int) -> int:
    """``extfrag_for_order``: percent of free memory not in blocks of at least ``order``."""
    info = fill_contig_page_info(nr_free, order)
    if info.free_pages == 0:
        return 0
    return (info.free_pages - (info.free_blocks_suitable << order)) * 100 // info.free_pages


def fragmentation_score_zone(nr_free: Sequence[int]) -> int:
    """``fragmentation_score_zone``: ``extfrag_for_order`` at the THP order (0..100)."""
    return extfrag_for_order(nr_free, COMPACTION_HPAGE_ORDER)


def fragmentation_score_node(zones: Sequence[tuple[int, Sequence[int]]]) -> int:
    """``fragmentation_score_node``: sum of zone scores weighted by present pages.

    ``zones`` is ``[(present_pages, nr_free), ...]``; proactive compaction runs
    while this is above ``fragmentation_score_wmark(false)``.

    >>> fragmentation_score_node([(1000, [512] + [0] * 10), (0, [0] * 11)])
    99
    """
    node_present = sum(p for p, _ in zones)
    score = 0
    for present, nr_free in zones:
        score += present * fragmentation_score_zone(nr_free) // (node_present + 1)
    return score


def fragmentation_score_wmark(proactiveness: int, low: bool) -> int:
    """``fragmentation_score_wmark``: proactive compaction stops at low, starts above high.

    >>> fragmentation_score_wmark(20, True), fragmentation_score_wmark(20, False)
    (80, 90)
    """
    wmark_low = max(100 - proactiveness, 5)
    return wmark_low if low else min(wmark_low + 10, 100)


def _c_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def format_index(index: int) -> str:
    """Print an index as debugfs does: ``"%d.%03d"`` of C's truncating ``/`` and ``%``."""
    q = _c_div(index, 1000)
    r = index - q * 1000
    # C's "%03d" pads to width 3 including the sign: -5 -> "-05"
    return f"{q}.{r:03d}" if r >= 0 else f"{q}.-{-r:02d}"
