"""``/proc/slabinfo`` rows and the kmalloc size-class table, as the kernel prints them.

Follows mm/slab_common.c (``cache_show``, ``slabinfo_show``) for the file, and the
kmalloc rules of KERNEL.md section 10 for :func:`kmalloc_class`; the geometry comes
from :mod:`kmemdes.mm.slub`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

from kmemdes.errors import KmemdesError
from kmemdes.mm import gfp as G
from kmemdes.mm.slub import (
    KMALLOC_MAX_CACHE_SIZE,
    KMALLOC_NORMAL,
    MAX_PAGE_ORDER,
    PAGE_SIZE,
    calculate_order,
    get_order,
    kmalloc_bytes_alloc,
    kmalloc_cache_name,
    kmalloc_size,
    kmalloc_slab_name,
    slab_geometry,
)

__all__ = ["SLABINFO_HEADER", "SlabinfoRow", "format_slabinfo", "model_slabinfo", "kmalloc_geometry",
           "KmallocClass", "kmalloc_class", "KMALLOC_CLASS_HEADER", "parse_kmalloc_size"]

SLABINFO_HEADER = (
    "slabinfo - version: 2.1\n"
    "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>"
    " : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>"
)


@dataclass(frozen=True)
class SlabinfoRow:
    """One /proc/slabinfo cache line (SLUB: tunables 0, sharedavail 0)."""

    name: str
    active_objs: int
    num_objs: int
    objsize: int
    objperslab: int
    pagesperslab: int
    active_slabs: int
    num_slabs: int

    def format(self) -> str:
        """``cache_show`` (mm/slab_common.c): ``"%-17s %6lu %6lu %6u %4u %4d"`` + tunables + slabdata.

        >>> print(SlabinfoRow("kmalloc-96", 13398, 13398, 96, 42, 1, 319, 319).format())
        kmalloc-96         13398  13398     96   42    1 : tunables    0    0    0 : slabdata    319    319      0
        """
        return (
            f"{self.name:<17s} {self.active_objs:6d} {self.num_objs:6d} {self.objsize:6d} "
            f"{self.objperslab:4d} {self.pagesperslab:4d} : tunables {0:4d} {0:4d} {0:4d}"
            f" : slabdata {self.active_slabs:6d} {self.num_slabs:6d} {0:6d}"
        )


def model_slabinfo(rows: Iterable[SlabinfoRow], nr_cpus: int) -> list[SlabinfoRow]:
    """The rows with ``objperslab``/``pagesperslab`` recomputed by :func:`calculate_order`
    from each cache's ``objsize`` (``s->size``) and the CPU count; object and slab counts
    are the file's.

    >>> r = SlabinfoRow("kmalloc-512", 10, 32, 512, 8, 1, 4, 4)
    >>> model_slabinfo([r], 2)[0].format()[:48]
    'kmalloc-512           10     32    512   16    2'
    """
    out = []
    for r in rows:
        if r.objsize <= 0:
            raise KmemdesError(f"slabinfo: cache {r.name} has objsize {r.objsize}")
        order = calculate_order(r.objsize, nr_cpus)
        out.append(SlabinfoRow(r.name, r.active_objs, r.num_objs, r.objsize,
                               (PAGE_SIZE << order) // r.objsize, 1 << order, r.active_slabs, r.num_slabs))
    return out


def kmalloc_geometry(nr_cpus: int, ktype: int = KMALLOC_NORMAL) -> list[SlabinfoRow]:
    """Geometry of one kmalloc family on an idle machine (no objects), as slabinfo rows.

    >>> [(r.name, r.objperslab, r.pagesperslab) for r in kmalloc_geometry(2)][-4:]
    [('kmalloc-1k', 16, 4), ('kmalloc-2k', 16, 8), ('kmalloc-4k', 8, 8), ('kmalloc-8k', 4, 8)]
    """
    rows = []
    for idx in (3, 4, 5, 6, 1, 7, 2, 8, 9, 10, 11, 12, 13):
        size = kmalloc_size(idx)
        geo = slab_geometry(size, nr_cpus, align=size & -size)
        rows.append(SlabinfoRow(kmalloc_cache_name(idx, ktype), 0, 0, geo.size, geo.objects, 1 << geo.order, 0, 0))
    return rows


@dataclass(frozen=True)
class KmallocClass:
    """Where ``kmalloc(size, gfp)`` lands and what its trace event reports."""

    size: int
    cache: Optional[str]  # kmalloc cache name, None for page-allocator sizes / 0
    bytes_alloc: int
    order: Optional[int]  # page order of a large kmalloc
    note: str

    def format(self) -> str:
        where = self.cache or (f"pages order {self.order}" if self.order is not None else "ZERO_SIZE_PTR")
        waste = self.bytes_alloc - self.size if self.bytes_alloc else 0
        return f"{self.size:>10d}  {where:<18s} {self.bytes_alloc:>11d} {waste:>9d}  {self.note}".rstrip()


KMALLOC_CLASS_HEADER = f"{'bytes_req':>10s}  {'cache':<18s} {'bytes_alloc':>11s} {'waste':>9s}  note"


def parse_kmalloc_size(text: str, what: str = "--kmalloc") -> int:
    """A request size in bytes: a non-negative integer with an optional K/M/G suffix
    (binary).  Errors name the option.

    >>> parse_kmalloc_size("100"), parse_kmalloc_size("4M"), parse_kmalloc_size("0")
    (100, 4194304, 0)
    >>> parse_kmalloc_size("-5")
    Traceback (most recent call last):
    ...
    kmemdes.errors.KmemdesError: --kmalloc: size '-5' is negative
    """
    t = str(text).strip()
    mult = 1
    if t[-1:].upper() in ("K", "M", "G"):
        mult = 1 << (10 * ("KMG".index(t[-1].upper()) + 1))
        t = t[:-1]
    try:
        value = int(t, 0) if t.lower().startswith("0x") else int(t)
    except ValueError:
        raise KmemdesError(f"{what}: size {text!r} is not a number of bytes") from None
    if value < 0:
        raise KmemdesError(f"{what}: size {text!r} is negative")
    return value * mult


def kmalloc_class(size: int, gfp: int = G.GFP_KERNEL) -> KmallocClass:
    """The cache and ``bytes_alloc`` of ``kmalloc(size, gfp)`` (KERNEL.md section 10).

    >>> kmalloc_class(100).format()
    '       100  kmalloc-128                128        28'
    >>> kmalloc_class(9000).format()
    '      9000  pages order 2            16384      7384  page allocator (__GFP_COMP)'
    """
    if size < 0:
        raise KmemdesError(f"kmalloc size {size} is negative")
    if size == 0:
        return KmallocClass(0, None, 0, None, "ZERO_SIZE_PTR (0x10), no trace event")
    if size <= KMALLOC_MAX_CACHE_SIZE:
        return KmallocClass(size, kmalloc_slab_name(size, gfp), kmalloc_bytes_alloc(size), None, "")
    order = get_order(size)
    if order > MAX_PAGE_ORDER:
        return KmallocClass(size, None, PAGE_SIZE << order, order,
                            "> KMALLOC_MAX_SIZE (4 MiB): NULL and a WARN")
    return KmallocClass(size, None, PAGE_SIZE << order, order, "page allocator (__GFP_COMP)")


def format_slabinfo(rows: Iterable[SlabinfoRow]) -> str:
    """The whole file: the two header lines, then one line per row."""
    return "\n".join([SLABINFO_HEADER] + [r.format() for r in rows]) + "\n"
