"""Deferred init handing memory to the buddy allocator while a trace runs (``CONFIG_DEFERRED_STRUCT_PAGE_INIT``).

On a freshly booted machine with ``deferred_init=lazy`` the Normal zone receives its memory in
steps while the workload allocates (traces/README.md, 5.12).  The hand-over frees each block
through ``deferred_free_pages`` -> ``__free_pages_core`` -> ``__free_pages_ok`` ->
``free_pages_prepare``, which fires ``mm_page_free`` (order up to MAX_PAGE_ORDER): the trace shows
grown memory block by block, as it enters the free lists.  :func:`online_freed_block` makes such a
block enter the model exactly then (its pageblocks become valid, the zone's managed pages grow,
the block is freed to the tail of its list, FPI_TO_TAIL), instead of onlining a whole
163,840-page step at the first touch (which made every later block of the step a "free of pages
the model held free" and the model's free total run ahead of the kernel's).
"""

from __future__ import annotations

from kmemdes.mm.page_alloc import MIGRATE_MOVABLE, PAGEBLOCK_ORDER, Node

__all__ = ["online_freed_block"]


def online_freed_block(node: Node, pfn: int, order: int) -> bool:
    """``mm_page_free`` of ``[pfn, pfn + 2^order)`` whose pageblocks are all still offline, inside one
    zone's span: deferred init handing it over.  Online it as a free block and return True; return
    False (nothing done) for any other block.

    >>> from kmemdes.mm.mm_init import build_node
    >>> node = build_node("x86_64", 1 << 30)
    >>> z = node.zones[-1]
    >>> top = 0x20000  # a free order-10 block of DMA32
    >>> node.take_block(top, 10) >= 0  # as if never handed over: not free, not managed, offline
    True
    >>> z.managed -= 1024; node.pb_valid[top >> 9] = node.pb_valid[(top >> 9) + 1] = 0
    >>> before = (z.managed, z.nr_free[10])
    >>> online_freed_block(node, top, 10), z.managed - before[0], z.nr_free[10] - before[1]
    (True, 1024, 1)
    >>> node.check()
    >>> online_freed_block(node, top, 10)  # online already: not a hand-over
    False
    """
    n = 1 << order
    end = pfn + n
    if pfn < 0 or end > node.max_pfn:
        return False
    first, last = pfn >> PAGEBLOCK_ORDER, (end - 1) >> PAGEBLOCK_ORDER
    if any(node.pb_valid[pb] for pb in range(first, last + 1)):
        return False
    zone = None
    for z in node.zones:
        if z.start_pfn <= pfn and end <= z.start_pfn + z.spanned:
            zone = z
    if zone is None:
        return False
    for pb in range(first, last + 1):
        node.pb_mt[pb] = MIGRATE_MOVABLE
        node.pb_valid[pb] = 1
    node.free_pages_core(zone, pfn, end)
    node._invalidate_zonelists()
    return True
