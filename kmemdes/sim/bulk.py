"""vmalloc's bulk page allocations, which the trace does not show, taken where the kernel takes them.

``vm_area_alloc_pages`` fills an area of order-0 pages with ``alloc_pages_bulk`` (callers without
``__GFP_ACCOUNT``: thread stacks, most vmalloc users), which pops them off the CPU's per-CPU list
with ``__rmqueue_pcplist`` and emits no ``mm_page_alloc`` (traces/README.md 5.4); only the refills
it needs on the way (``rmqueue_bulk``: ``mm_page_alloc_zone_locked``) are traced.  The trace does
announce each area: ``alloc_vmap_area`` (its ``size`` includes the guard page) comes right before
the pages are allocated.  :func:`bulk_areas` finds the areas whose pages are not traced (no
order-0 ``mm_page_alloc`` with ``__GFP_HIGHMEM`` and without ``__GFP_MOVABLE``, vmalloc's GFP, on
that CPU right after), and :func:`take_pcp_pages` takes the pages off the head of the CPU's
Unmovable order-0 per-CPU list as the bulk allocator does; pages a refill has still to bring
are taken after the next refills on that CPU.  Their later ``mm_page_free`` then finds them
allocated (ordinary frees) instead of on a pcp list (``free_after_untraced_bulk_alloc``).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from kmemdes.mm import gfp as G
from kmemdes.mm.page_alloc import MIGRATE_UNMOVABLE, NOLIST, Node
from kmemdes.trace.schema import EventKind

__all__ = ["bulk_areas", "take_pcp_pages", "PAGE_SIZE"]

PAGE_SIZE = 4096
_VMAP, _ALLOC = int(EventKind.ALLOC_VMAP_AREA), int(EventKind.MM_PAGE_ALLOC)
_VMALLOC_GFP, _USER_GFP = G.__GFP_HIGHMEM, G.__GFP_MOVABLE


def bulk_areas(events: pl.DataFrame) -> dict[int, int]:
    """Row -> pages of each ``alloc_vmap_area`` whose pages the bulk allocator takes untraced.

    ``events``: the replay's rows (``kind``, ``cpu``, ``order``, ``gfp``, ``size``, ``failed``).

    >>> ev = pl.DataFrame({"kind": [30, 20, 20, 30, 20], "cpu": [0, 0, 1, 1, 0], "order": [None, 0, 0, None, 0],
    ...                    "gfp": [None, 0xcc2 | 2, 0xcc0, None, 0], "size": [12288, None, None, 20480, None],
    ...                    "failed": [0, None, None, 0, None]})
    >>> bulk_areas(ev)  # row 0: its 2 pages are traced (row 1 has __GFP_HIGHMEM); row 3: 4 untraced
    {3: 4}
    """
    kind = events["kind"].to_numpy()
    rows = np.flatnonzero(kind == _VMAP)
    if not rows.size:
        return {}
    cpu = events["cpu"].fill_null(0).to_numpy()
    size = events["size"].fill_null(0).to_numpy()
    failed = events["failed"].fill_null(0).to_numpy()
    gfp = events["gfp"].fill_null(0).to_numpy().astype(np.int64)
    order = events["order"].fill_null(-1).to_numpy()
    vm_page = (kind == _ALLOC) & (order == 0) & ((gfp & _VMALLOC_GFP) != 0) & ((gfp & _USER_GFP) == 0)
    out = {}
    for j in rows.tolist():
        n = int(size[j]) // PAGE_SIZE - 1
        if failed[j] or n <= 0:
            continue
        w = slice(j + 1, j + 1 + 4 * n + 32)
        traced = int(np.count_nonzero(vm_page[w] & (cpu[w] == cpu[j])))
        if traced * 2 < n:
            out[j] = n
    return out


def take_pcp_pages(node: Node, cpu: int, n: int) -> list[int]:
    """``alloc_pages_bulk`` on ``cpu``: up to ``n`` order-0 pages off the head of its Unmovable pcp
    list (the Normal zone's first, as GFP_KERNEL's zonelist), marked allocated; returns their pfns."""
    taken: list[int] = []
    for zone in reversed(node.zones):
        if not zone.present or not zone.pcp:
            continue
        pcp = zone.pcp[cpu % node.cpus]
        lid = pcp.lid0 + node.order_to_pindex(MIGRATE_UNMOVABLE, 0)
        while len(taken) < n:
            pfn = node.lhead[lid]
            if pfn < 0 or node.lid[pfn] == NOLIST:
                break
            node._list_del(pfn)
            pcp.count -= 1
            node.page_mt[pfn] = MIGRATE_UNMOVABLE
            node.alloc_order[pfn] = 0
            taken.append(pfn)
        if len(taken) >= n:
            break
    return taken
