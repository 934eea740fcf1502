"""SLUB: kmem_cache geometry, kmalloc size classes, cache merging, and the slab runtime.

Follows mm/slub.c (``calculate_sizes``, ``calculate_order``, ``set_cpu_partial``,
``set_min_partial``, ``allocate_slab``, ``shuffle_freelist``, ``___slab_alloc``,
``get_partial_node``, ``put_cpu_partial``, ``__put_partials``, ``__slab_free``,
``deactivate_slab``, sheaves) and mm/slab_common.c (``calculate_alignment``,
``find_mergeable``, ``kmalloc_size_index``, ``kmalloc_type``, ``new_kmalloc_cache``,
``__do_kmalloc_node``) of Linux 6.18.  KERNEL.md section 10.

Geometry is plain functions of integers; the runtime keeps one small
:class:`Slab` record per slab (never one object per allocated object): a slab's
free objects are a list of addresses used LIFO, as the kernel's freelist is.

>>> calculate_order(512, nr_cpus=2), calculate_order(1024, 2), calculate_order(8192, 2)
(1, 2, 3)
>>> kmalloc_slab_name(100), kmalloc_slab_name(9000)
('kmalloc-128', None)
>>> kmalloc_bytes_alloc(9000), kmalloc_bytes_alloc(192), kmalloc_bytes_alloc(193)
(16384, 192, 256)
"""

from __future__ import annotations

import csv
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from kmemdes.errors import KmemdesError
from kmemdes.mm import gfp as G

if TYPE_CHECKING:
    from kmemdes.mm.slabinfo import SlabinfoRow

__all__ = [
    "PAGE_SIZE",
    "ZERO_SIZE_PTR",
    "KMALLOC_MIN_SIZE",
    "KMALLOC_MAX_CACHE_SIZE",
    "KMALLOC_MAX_SIZE",
    "MAX_PAGE_ORDER",
    "SLUB_MAX_ORDER",
    "MIN_PARTIAL",
    "MAX_PARTIAL",
    "SLAB_HWCACHE_ALIGN",
    "SLAB_CACHE_DMA",
    "SLAB_CACHE_DMA32",
    "SLAB_RECLAIM_ACCOUNT",
    "SLAB_ACCOUNT",
    "SLAB_TYPESAFE_BY_RCU",
    "SLAB_POISON",
    "SLAB_RED_ZONE",
    "SLAB_STORE_USER",
    "SLAB_NO_MERGE",
    "SLAB_KMALLOC",
    "SLAB_PANIC",
    "KMALLOC_NORMAL",
    "KMALLOC_RECLAIM",
    "KMALLOC_CGROUP",
    "KMALLOC_DMA",
    "get_order",
    "calculate_alignment",
    "calculate_order",
    "min_partial_for",
    "cpu_partial_for",
    "kmalloc_index",
    "kmalloc_size",
    "kmalloc_type",
    "kmalloc_cache_name",
    "kmalloc_slab_name",
    "kmalloc_bytes_alloc",
    "slab_alloc_gfp",
    "SlabGeometry",
    "slab_geometry",
    "KmemCache",
    "Slab",
    "SlabAllocator",
    "create_unique_id",
]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
MAX_PAGE_ORDER = 10
ZERO_SIZE_PTR = 16  # ((void *)16)
KMALLOC_MIN_SIZE = 8  # KMALLOC_SHIFT_LOW 3
KMALLOC_SHIFT_HIGH = PAGE_SHIFT + 1
KMALLOC_MAX_CACHE_SIZE = 1 << KMALLOC_SHIFT_HIGH  # 8192
KMALLOC_MAX_SIZE = 1 << (MAX_PAGE_ORDER + PAGE_SHIFT)  # 4 MiB
SLUB_MIN_ORDER = 0
SLUB_MAX_ORDER = 3  # PAGE_ALLOC_COSTLY_ORDER
MIN_PARTIAL = 5
MAX_PARTIAL = 10
CACHE_LINE_SIZE = 64
ARCH_SLAB_MINALIGN = 8  # __alignof__(unsigned long long)
MAX_FULL_SHEAVES = 10  # barn limits (mm/slub.c, 6.18; unverified constants)
MAX_EMPTY_SHEAVES = 10

# --- SLAB_* flags (include/linux/slab.h); values are this model's own bits ----------------
SLAB_CONSISTENCY_CHECKS = 1 << 0
SLAB_RED_ZONE = 1 << 1
SLAB_POISON = 1 << 2
SLAB_KMALLOC = 1 << 3
SLAB_HWCACHE_ALIGN = 1 << 4
SLAB_CACHE_DMA = 1 << 5
SLAB_CACHE_DMA32 = 1 << 6
SLAB_STORE_USER = 1 << 7
SLAB_PANIC = 1 << 8
SLAB_TYPESAFE_BY_RCU = 1 << 9
SLAB_TRACE = 1 << 10
SLAB_NOLEAKTRACE = 1 << 11
SLAB_NO_MERGE = 1 << 12
SLAB_FAILSLAB = 1 << 13
SLAB_ACCOUNT = 1 << 14
SLAB_RECLAIM_ACCOUNT = 1 << 15

SLAB_NEVER_MERGE = (
    SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER | SLAB_TRACE | SLAB_TYPESAFE_BY_RCU
    | SLAB_NOLEAKTRACE | SLAB_FAILSLAB | SLAB_NO_MERGE
)
SLAB_MERGE_SAME = SLAB_RECLAIM_ACCOUNT | SLAB_CACHE_DMA | SLAB_CACHE_DMA32 | SLAB_ACCOUNT

# --- kmalloc cache types (enum kmalloc_cache_type, no random caches) ------------------
KMALLOC_NORMAL = 0
KMALLOC_RECLAIM = 1
KMALLOC_CGROUP = 2
KMALLOC_DMA = 3
_TYPE_PREFIX = {KMALLOC_NORMAL: "kmalloc-", KMALLOC_RECLAIM: "kmalloc-rcl-",
                KMALLOC_CGROUP: "kmalloc-cg-", KMALLOC_DMA: "dma-kmalloc-"}

# kmalloc_size_index[(size - 1) / 8] for sizes 1..192 (mm/slab_common.c)
_SIZE_INDEX = (3, 4, 5, 5, 6, 6, 6, 6, 1, 1, 1, 1, 7, 7, 7, 7,
               2, 2, 2, 2, 2, 2, 2, 2)
#: kmalloc_index(size) for 0..8192 (index 0 unused), precomputed for the fast path
_KMALLOC_INDEX = (0,) + tuple(_SIZE_INDEX[(n - 1) // 8] if n <= 192 else (n - 1).bit_length()
                              for n in range(1, (1 << 13) + 1))

# GFP bits (single underscore: class bodies would mangle G.__GFP_*)
_GFP_ACCOUNT = G.__GFP_ACCOUNT
_GFP_COMP = G.__GFP_COMP
_GFP_DIRECT_RECLAIM = G.__GFP_DIRECT_RECLAIM
_GFP_DMA = G.__GFP_DMA
_GFP_DMA32 = G.__GFP_DMA32
_GFP_FS = G.__GFP_FS
_GFP_HARDWALL = G.__GFP_HARDWALL
_GFP_HIGH = G.__GFP_HIGH
_GFP_HIGHMEM = G.__GFP_HIGHMEM
_GFP_IO = G.__GFP_IO
_GFP_KSWAPD_RECLAIM = G.__GFP_KSWAPD_RECLAIM
_GFP_MEMALLOC = G.__GFP_MEMALLOC
_GFP_NOFAIL = G.__GFP_NOFAIL
_GFP_NOMEMALLOC = G.__GFP_NOMEMALLOC
_GFP_NORETRY = G.__GFP_NORETRY
_GFP_NOWARN = G.__GFP_NOWARN
_GFP_RECLAIMABLE = G.__GFP_RECLAIMABLE
_GFP_RETRY_MAYFAIL = G.__GFP_RETRY_MAYFAIL
_GFP_THISNODE = G.__GFP_THISNODE

# GFP_RECLAIM_MASK | GFP_CONSTRAINT_MASK (mm/internal.h): what new_slab() keeps of the caller's mask
_GFP_RECLAIM_MASK = (
    _GFP_DIRECT_RECLAIM | _GFP_KSWAPD_RECLAIM | _GFP_HIGH | _GFP_IO | _GFP_FS
    | _GFP_NOWARN | _GFP_RETRY_MAYFAIL | _GFP_NOFAIL | _GFP_NORETRY
    | _GFP_MEMALLOC | _GFP_NOMEMALLOC
)
_GFP_CONSTRAINT_MASK = _GFP_HARDWALL | _GFP_THISNODE
#: flags that leave the kmalloc fast path (another family, or GFP_SLAB_BUG_MASK)
_GFP_NOT_NORMAL_FAST = _GFP_DMA | _GFP_RECLAIMABLE | _GFP_ACCOUNT | _GFP_HIGHMEM | _GFP_DMA32
_GFP_RECLAIM = _GFP_DIRECT_RECLAIM | _GFP_KSWAPD_RECLAIM


# =====================================================================================
# Geometry
# =====================================================================================

def get_order(size: int) -> int:
    """``get_order``: smallest order with ``PAGE_SIZE << order >= size`` (size >= 1).

    >>> get_order(1), get_order(4096), get_order(4097), get_order(8193), get_order(2 << 20)
    (0, 0, 1, 2, 9)
    """
    return max(0, (size - 1) >> PAGE_SHIFT).bit_length()


def _align(x: int, a: int) -> int:
    return (x + a - 1) & ~(a - 1)


def calculate_alignment(flags: int, align: int, size: int, cache_line: int = CACHE_LINE_SIZE) -> int:
    """``calculate_alignment`` (mm/slab_common.c): HWCACHE_ALIGN takes the cache line,
    halved while the object fits in half of it; at least ARCH_SLAB_MINALIGN; a multiple of 8.

    >>> calculate_alignment(SLAB_HWCACHE_ALIGN, 0, 184), calculate_alignment(SLAB_HWCACHE_ALIGN, 0, 24)
    (64, 32)
    >>> calculate_alignment(0, 0, 96)
    8
    """
    if flags & SLAB_HWCACHE_ALIGN:
        ralign = cache_line
        while size <= ralign // 2:
            ralign //= 2
        align = max(align, ralign)
    align = max(align, ARCH_SLAB_MINALIGN)
    return _align(align, 8)


def _fls(x: int) -> int:
    return x.bit_length()


def calculate_order(size: int, nr_cpus: int, slub_min_objects: int = 0,
                    slub_min_order: int = SLUB_MIN_ORDER, slub_max_order: int = SLUB_MAX_ORDER) -> int:
    """``calculate_order`` (mm/slub.c, 6.8+): the smallest order whose slab wastes at most
    1/16 (then 1/8, 1/4, 1/2) with at least ``4 * (fls(nr_cpus) + 1)`` objects if they fit.

    ``nr_cpus`` is num_present_cpus() (1 CPU: nr_cpu_ids, taken as 1 here).

    >>> [calculate_order(s, 2) for s in (8, 192, 256, 512, 1024, 2048, 4096, 8192)]
    [0, 0, 0, 1, 2, 3, 3, 3]
    >>> calculate_order(256, 8), calculate_order(192, 16), calculate_order(51488, 2)
    (1, 1, 4)
    """
    if size <= 0:
        raise ValueError(f"slab object size must be positive, got {size}")
    nr = max(1, nr_cpus)
    min_objects = slub_min_objects or 4 * (_fls(nr) + 1)
    max_objects = max((PAGE_SIZE << slub_max_order) // size, 1)
    min_objects = min(min_objects, max_objects)
    min_order = max(slub_min_order, get_order(min_objects * size))
    for fraction in (16, 8, 4, 2):
        for order in range(min_order, slub_max_order + 1):
            slab = PAGE_SIZE << order
            if slab % size <= slab // fraction:
                return order
    return get_order(size)


def min_partial_for(size: int) -> int:
    """``set_min_partial(s, ilog2(s->size) / 2)`` clamped to [MIN_PARTIAL, MAX_PARTIAL].

    >>> min_partial_for(256), min_partial_for(4096), min_partial_for(51488)
    (5, 6, 7)
    """
    return min(MAX_PARTIAL, max(MIN_PARTIAL, (size.bit_length() - 1) // 2))


def cpu_partial_for(size: int, objects: int) -> tuple[int, int]:
    """``set_cpu_partial``: (cpu_partial objects, cpu_partial_slabs = DIV_ROUND_UP(2 * n, objects)).

    >>> cpu_partial_for(192, 21), cpu_partial_for(512, 16), cpu_partial_for(2048, 16), cpu_partial_for(4096, 8)
    ((120, 12), (52, 7), (24, 3), (6, 2))
    """
    if size >= PAGE_SIZE:
        n = 6
    elif size >= 1024:
        n = 24
    elif size >= 256:
        n = 52
    else:
        n = 120
    return n, -(-(n * 2) // max(1, objects))


@dataclass(frozen=True)
class SlabGeometry:
    """What ``calculate_sizes`` decides for a cache (``s->size``, ``s->offset``, oo, min)."""

    object_size: int
    size: int  # s->size: object stride in the slab
    align: int
    offset: int  # free pointer offset inside the object stride
    order: int  # oo_order(s->oo)
    objects: int  # oo_objects(s->oo)
    min_order: int  # oo_order(s->min) = get_order(size)
    min_objects: int
    min_partial: int
    cpu_partial: int
    cpu_partial_slabs: int

    @property
    def waste(self) -> int:
        """Bytes at the end of a slab that no object uses."""
        return (PAGE_SIZE << self.order) - self.objects * self.size


def slab_geometry(object_size: int, nr_cpus: int, align: int = 0, flags: int = 0,
                  ctor: bool = False, size: Optional[int] = None) -> SlabGeometry:
    """``calculate_sizes`` without debugging: ``size = ALIGN(object_size, 8)``; the free
    pointer goes after the object (size += 8) for a ctor, TYPESAFE_BY_RCU or POISON
    cache, else mid-object; ``s->size = ALIGN(size, align)``.  ``align`` here is the
    already-computed cache alignment (``calculate_alignment``).  ``size`` overrides the
    computed stride (a cache known from /proc/slabinfo or sysfs).

    >>> g = slab_geometry(96, 2, align=8, flags=SLAB_TYPESAFE_BY_RCU, ctor=True)   # anon_vma
    >>> g.size, g.order, g.objects
    (104, 0, 39)
    >>> g = slab_geometry(1568, 2, align=64); (g.size, g.order, g.objects)            # mm_struct
    (1600, 3, 20)
    """
    align = max(align, ARCH_SLAB_MINALIGN)
    if size is None:
        s = _align(object_size, 8)
        if (flags & (SLAB_TYPESAFE_BY_RCU | SLAB_POISON)) or ctor:
            offset = s
            s += 8
        else:
            offset = (object_size // 2) & ~7
        size = _align(s, align)
    else:
        offset = (object_size // 2) & ~7
    order = calculate_order(size, nr_cpus)
    objects = (PAGE_SIZE << order) // size
    min_order = get_order(size)
    cpu_partial, cpu_partial_slabs = cpu_partial_for(size, objects)
    return SlabGeometry(
        object_size=object_size, size=size, align=align, offset=offset, order=order,
        objects=objects, min_order=min_order, min_objects=(PAGE_SIZE << min_order) // size,
        min_partial=min_partial_for(size), cpu_partial=cpu_partial, cpu_partial_slabs=cpu_partial_slabs,
    )


def slab_alloc_gfp(cache_flags: int, gfp: int, order: int, min_order: int) -> tuple[int, int]:
    """The two masks ``allocate_slab`` uses: (first try at ``oo``, fallback at ``s->min``).

    ``new_slab`` keeps only GFP_RECLAIM_MASK|GFP_CONSTRAINT_MASK of the caller's mask, adds
    ``s->allocflags`` (__GFP_COMP, DMA/DMA32, __GFP_RECLAIMABLE); the first try adds
    NOWARN|NORETRY, drops NOFAIL, and for orders above the minimum that may reclaim
    also adds NOMEMALLOC and drops both reclaim bits.

    >>> a, b = slab_alloc_gfp(0, G.GFP_KERNEL_ACCOUNT, 0, 0); G.format_gfp(a)
    'GFP_KERNEL|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP'
    >>> G.format_gfp(slab_alloc_gfp(0, G.GFP_KERNEL, 3, 1)[0])
    '__GFP_IO|__GFP_FS|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_NOMEMALLOC'
    """
    flags = gfp & (_GFP_RECLAIM_MASK | _GFP_CONSTRAINT_MASK)
    flags |= _GFP_COMP
    if cache_flags & SLAB_CACHE_DMA:
        flags |= _GFP_DMA
    if cache_flags & SLAB_CACHE_DMA32:
        flags |= _GFP_DMA32
    if cache_flags & SLAB_RECLAIM_ACCOUNT:
        flags |= _GFP_RECLAIMABLE
    first = (flags | _GFP_NOWARN | _GFP_NORETRY) & ~_GFP_NOFAIL
    if (first & _GFP_DIRECT_RECLAIM) and order > min_order:
        first = (first | _GFP_NOMEMALLOC) & ~_GFP_RECLAIM
    return first, flags


# =====================================================================================
# kmalloc size classes
# =====================================================================================

def kmalloc_index(size: int) -> int:
    """``kmalloc_index``/``kmalloc_size_index``: cache index of a kmalloc size (1..8192).

    1 is the 96-byte cache, 2 the 192-byte cache, k >= 3 the 2^k cache.

    >>> [kmalloc_index(s) for s in (1, 8, 9, 24, 33, 65, 96, 97, 129, 193, 4097, 8192)]
    [3, 3, 4, 5, 6, 1, 1, 7, 2, 8, 13, 13]
    """
    if size <= 0 or size > KMALLOC_MAX_CACHE_SIZE:
        raise ValueError(f"no kmalloc cache for size {size}")
    if size <= 192:
        return _SIZE_INDEX[(size - 1) // 8]
    return _fls(size - 1)


def kmalloc_size(index: int) -> int:
    """Object size of kmalloc cache ``index`` (``kmalloc_info[i].size``)."""
    return 96 if index == 1 else 192 if index == 2 else 1 << index


def kmalloc_type(gfp: int, memcg: bool = True) -> int:
    """``kmalloc_type``: DMA > RECLAIMABLE > ACCOUNT; else the normal family.

    >>> kmalloc_type(G.GFP_KERNEL), kmalloc_type(G.GFP_KERNEL_ACCOUNT), kmalloc_type(G.GFP_KERNEL | 0x10)
    (0, 2, 1)
    """
    if gfp & _GFP_DMA:
        return KMALLOC_DMA
    if gfp & _GFP_RECLAIMABLE:
        return KMALLOC_RECLAIM
    if gfp & _GFP_ACCOUNT and memcg:
        return KMALLOC_CGROUP
    return KMALLOC_NORMAL


def kmalloc_cache_name(index: int, ktype: int = KMALLOC_NORMAL) -> str:
    """``kmalloc-96``, ``kmalloc-rcl-1k``, ``dma-kmalloc-8k`` ... (``kmalloc_info`` names).

    >>> kmalloc_cache_name(10), kmalloc_cache_name(1, KMALLOC_CGROUP)
    ('kmalloc-1k', 'kmalloc-cg-96')
    """
    size = kmalloc_size(index)
    text = f"{size >> 10}k" if size >= 1024 else str(size)
    return _TYPE_PREFIX[ktype] + text


def kmalloc_slab_name(size: int, gfp: int = G.GFP_KERNEL) -> Optional[str]:
    """Name of the cache ``kmalloc(size, gfp)`` uses; None above 8 KiB (page allocator)
    or for size 0 (ZERO_SIZE_PTR)."""
    if size <= 0 or size > KMALLOC_MAX_CACHE_SIZE:
        return None
    return kmalloc_cache_name(kmalloc_index(size), kmalloc_type(gfp))


def kmalloc_bytes_alloc(size: int) -> int:
    """``bytes_alloc`` of the ``kmalloc`` event: the cache's ``s->size`` or ``PAGE_SIZE << order``.

    kmalloc caches are never merged (usercopy), so ``s->size`` is the class size.
    0 for ``kmalloc(0)`` (no event at all).
    """
    if size <= 0:
        return 0
    if size <= KMALLOC_MAX_CACHE_SIZE:
        return kmalloc_size(kmalloc_index(size))
    return PAGE_SIZE << get_order(size)


def create_unique_id(flags: int, size: int) -> str:
    """The sysfs name of a mergeable cache (``create_unique_id``): ``:[d][D][a][F][A]-%07u``.

    >>> create_unique_id(SLAB_ACCOUNT, 64), create_unique_id(0, 512), create_unique_id(SLAB_RECLAIM_ACCOUNT | SLAB_ACCOUNT, 16)
    (':A-0000064', ':0000512', ':aA-0000016')
    """
    tag = ""
    if flags & SLAB_CACHE_DMA:
        tag += "d"
    if flags & SLAB_CACHE_DMA32:
        tag += "D"
    if flags & SLAB_RECLAIM_ACCOUNT:
        tag += "a"
    if flags & SLAB_CONSISTENCY_CHECKS:
        tag += "F"
    if flags & SLAB_ACCOUNT:
        tag += "A"
    return ":" + (tag + "-" if tag else "") + f"{size:07d}"


# =====================================================================================
# Runtime: caches and slabs
# =====================================================================================

# where a slab is (the lists of mm/slub.c)
FULL, CPU_SLAB, CPU_PARTIAL, NODE_PARTIAL = 0, 1, 2, 3


class Slab:
    """One slab: a 2^order page block and the free objects of its own freelist.

    ``inuse`` follows the kernel: objects not on ``slab->freelist`` (objects on a CPU's
    ``c->freelist`` count as in use while the slab is that CPU's slab).
    """

    __slots__ = ("cache", "pfn", "order", "base", "objects", "freelist", "inuse", "where",
                 "cpu", "prev", "next")

    def __init__(self, cache: "KmemCache", pfn: int, order: int, base: int, objects: int) -> None:
        self.cache = cache
        self.pfn = pfn
        self.order = order
        self.base = base
        self.objects = objects
        self.freelist: list[int] = []
        self.inuse = 0
        self.where = FULL
        self.cpu = -1
        self.prev: Optional[Slab] = None
        self.next: Optional[Slab] = None


class _PartialList:
    """``kmem_cache_node.partial``: intrusive doubly linked list of slabs (O(1) ends/removal)."""

    __slots__ = ("head", "tail", "nr")

    def __init__(self) -> None:
        self.head: Optional[Slab] = None
        self.tail: Optional[Slab] = None
        self.nr = 0

    def add(self, slab: Slab, tail: bool) -> None:
        slab.where = NODE_PARTIAL
        if self.head is None:
            slab.prev = slab.next = None
            self.head = self.tail = slab
        elif tail:
            slab.prev, slab.next = self.tail, None
            self.tail.next = slab  # type: ignore[union-attr]
            self.tail = slab
        else:
            slab.prev, slab.next = None, self.head
            self.head.prev = slab
            self.head = slab
        self.nr += 1

    def remove(self, slab: Slab) -> None:
        if slab.prev is None:
            self.head = slab.next
        else:
            slab.prev.next = slab.next
        if slab.next is None:
            self.tail = slab.prev
        else:
            slab.next.prev = slab.prev
        slab.prev = slab.next = None
        slab.where = FULL
        self.nr -= 1

    def __iter__(self):
        s = self.head
        while s is not None:
            nxt = s.next
            yield s
            s = nxt


class _CpuCache:
    """``kmem_cache_cpu`` plus the 6.18 per-CPU sheaves (``slub_percpu_sheaves``)."""

    __slots__ = ("slab", "freelist", "partial", "main", "spare")

    def __init__(self) -> None:
        self.slab: Optional[Slab] = None
        self.freelist: list[int] = []
        self.partial: list[Slab] = []  # LIFO: last = c->partial head
        self.main: list[int] = []
        self.spare: Optional[list[int]] = None


class KmemCache:
    """``struct kmem_cache``: geometry, flags, per-CPU state, one node's partial list, counters."""

    def __init__(self, name: str, object_size: int, geometry: SlabGeometry, flags: int,
                 nr_cpus: int, rng: random.Random, ctor: bool = False, usersize: int = 0,
                 sheaf_capacity: int = 0, random_freelist: bool = True) -> None:
        self.name = name
        self.object_size = object_size
        self.geo = geometry
        self.size = geometry.size
        self.align = geometry.align
        self.flags = flags
        self.ctor = ctor
        self.usersize = usersize
        self.sheaf_capacity = sheaf_capacity
        self.refcount = 1
        self.aliases: list[str] = []
        self.cpus = [_CpuCache() for _ in range(max(1, nr_cpus))]
        self.partial = _PartialList()
        self.barn_full: list[list[int]] = []
        self.barn_empty: int = 0
        self.migratetype = G.MIGRATE_RECLAIMABLE if flags & SLAB_RECLAIM_ACCOUNT else G.MIGRATE_UNMOVABLE
        self.random_seq: Optional[list[int]] = None
        if random_freelist and geometry.objects > 1:
            seq = list(range(geometry.objects))  # cache_random_seq_create: Fisher-Yates
            for i in range(len(seq) - 1, 0, -1):
                j = rng.randrange(i + 1)
                seq[i], seq[j] = seq[j], seq[i]
            self.random_seq = seq
        # counters (kmem_cache_node nr_slabs/total_objects, plus the model's own)
        self.nr_slabs = 0
        self.total_objects = 0
        self.nr_live = 0  # objects handed out and not freed
        self.stat: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"<kmem_cache {self.name} size={self.size} order={self.geo.order} objs={self.geo.objects}>"

    @property
    def order(self) -> int:
        return self.geo.order

    @property
    def objects_per_slab(self) -> int:
        return self.geo.objects

    def unmergeable(self) -> bool:
        """``slab_unmergeable``: NEVER_MERGE flags, ctor, usercopy region, sheaves, refcount < 0."""
        return bool(
            self.flags & SLAB_NEVER_MERGE or self.ctor or self.usersize or self.sheaf_capacity or self.refcount < 0
        )

    # ---- observables -------------------------------------------------------------------
    def node_partial_free(self) -> int:
        """Free objects on the node partial list (``count_partial(n, count_free)``)."""
        return sum(s.objects - s.inuse for s in self.partial)

    def free_slabs(self) -> int:
        """Empty slabs held by the cache (node partial, CPU partial, CPU slabs)."""
        n = sum(1 for s in self.partial if s.inuse == 0)
        for c in self.cpus:
            n += sum(1 for s in c.partial if s.inuse == 0)
            if c.slab is not None and c.slab.inuse - len(c.freelist) == 0:
                n += 1
        return n

    def slabinfo(self) -> tuple[int, int, int]:
        """(active_objs, num_objs, num_slabs) as ``get_slabinfo`` computes them."""
        return self.total_objects - self.node_partial_free(), self.total_objects, self.nr_slabs

    def occupancy(self) -> float:
        """Live objects over object slots in this cache's slabs (1.0 when no slabs)."""
        return self.nr_live / self.total_objects if self.total_objects else 1.0


AllocPages = Callable[[int, int, int], int]  # (gfp, order, cpu) -> pfn or -1
FreePages = Callable[[int, int, int], None]  # (pfn, order, cpu)
PfnToVirt = Callable[[int], int]
VirtToPfn = Callable[[int], int]


class SlabAllocator:
    """All kmem_caches of one kernel and the allocation paths of mm/slub.c.

    Pages come from ``alloc_pages(gfp, order, cpu) -> pfn`` (-1 on failure) and go back
    through ``free_pages(pfn, order, cpu)``; ``pfn_to_virt`` gives a slab's direct-map
    address and ``virt_to_pfn`` maps an object back to its page (``virt_to_slab``).
    Caches are kept in creation order (``slab_caches``): merging picks the oldest
    compatible cache.
    """

    def __init__(self, alloc_pages: AllocPages, free_pages: FreePages, pfn_to_virt: PfnToVirt,
                 virt_to_pfn: VirtToPfn, nr_cpus: int = 2, seed: int = 0, memcg: bool = True,
                 merge: bool = True, random_freelist: bool = True, kmalloc_caches: bool = True) -> None:
        self._alloc_pages = alloc_pages
        self._free_pages = free_pages
        self._pfn_to_virt = pfn_to_virt
        self._addr_pfn = virt_to_pfn
        self._page_offset = pfn_to_virt(0)  # direct map: virt = page_offset + (pfn << 12)
        self.nr_cpus = max(1, nr_cpus)
        self.rng = random.Random(seed)
        self.memcg = memcg
        self.merge = merge
        self.random_freelist = random_freelist
        self.caches: list[KmemCache] = []  # creation order
        self.by_name: dict[str, KmemCache] = {}  # every name, aliases included
        self.kmalloc_caches: dict[tuple[int, int], KmemCache] = {}
        self.slab_of_page: dict[int, Slab] = {}  # pfn of every slab page -> slab (virt_to_slab)
        self.large: dict[int, int] = {}  # head pfn -> order of large kmalloc buffers
        self.live: dict[int, int] = {}  # live object address -> bytes_req
        self.bytes_req_live = 0  # sum of bytes_req of live objects
        self.bytes_alloc_live = 0  # sum of bytes_alloc of live objects
        self.stat: Counter[str] = Counter()
        self.warnings: Counter[str] = Counter()
        #: event hook ``trace(event, **fields)`` (kmalloc, kmem_cache_alloc, kfree, kmem_cache_free)
        self.trace: Optional[Callable[..., None]] = None
        # boot caches (kmem_cache_init -> create_boot_cache): refcount -1, never merged
        for name, size in (("kmem_cache_node", 72), ("kmem_cache", 232)):
            self.kmem_cache_create(name, size, 0, SLAB_HWCACHE_ALIGN).refcount = -1
        if kmalloc_caches:
            self.create_kmalloc_caches()
        self._index_kmalloc_caches()

    def _index_kmalloc_caches(self) -> None:
        """kmalloc-N caches by index, for the fast path of :meth:`kmalloc`."""
        self._normal_caches = [self.kmalloc_caches.get((KMALLOC_NORMAL, i)) for i in range(KMALLOC_SHIFT_HIGH + 1)]

    # ---- cache creation ----------------------------------------------------------------
    def find_mergeable(self, size: int, align: int, flags: int, ctor: bool = False,
                       usersize: int = 0, sheaf_capacity: int = 0) -> Optional[KmemCache]:
        """``find_mergeable`` (mm/slab_common.c): the oldest cache that can host objects of
        ``size``: not unmergeable, same RECLAIM_ACCOUNT/DMA/DMA32/ACCOUNT flags, ``s->size``
        >= the new aligned size and less than 8 bytes larger, alignment compatible."""
        if not self.merge or ctor or usersize or sheaf_capacity or flags & SLAB_NEVER_MERGE:
            return None
        size = _align(size, 8)
        align = calculate_alignment(flags, align, size)
        size = _align(size, align)
        for s in self.caches:  # list_for_each_entry_reverse: oldest first
            if s.unmergeable():
                continue
            if size > s.size:
                continue
            if (flags & SLAB_MERGE_SAME) != (s.flags & SLAB_MERGE_SAME):
                continue
            if s.size & ~(align - 1) != s.size:
                continue
            if s.size - size >= 8:
                continue
            return s
        return None

    def kmem_cache_create(self, name: str, size: int, align: int = 0, flags: int = 0,
                          ctor: bool = False, usersize: int = 0, sheaf_capacity: int = 0,
                          stride: Optional[int] = None) -> KmemCache:
        """``kmem_cache_create``: alias an existing cache (``__kmem_cache_alias``:
        refcount++, object_size = max) or create a new one (``create_cache``).

        ``stride`` forces ``s->size`` (a cache whose layout is known from the kernel rather
        than from its creation flags).
        """
        if not name or " " in name:
            raise KmemdesError(f"kmem_cache_create: bad cache name {name!r}")
        if size <= 0 or size > KMALLOC_MAX_SIZE:
            raise KmemdesError(f"kmem_cache_create({name}): bad object size {size}")
        if name in self.by_name:
            raise KmemdesError(f"kmem_cache_create: a cache named {name!r} exists")
        s = None if stride is not None else self.find_mergeable(size, align, flags, ctor, usersize, sheaf_capacity)
        if s is not None:
            s.refcount += 1
            s.object_size = max(s.object_size, size)
            s.aliases.append(name)
            self.by_name[name] = s
            return s
        a = calculate_alignment(flags, align, size)
        geo = slab_geometry(size, self.nr_cpus, align=a, flags=flags, ctor=ctor, size=stride)
        cache = KmemCache(name, size, geo, flags, self.nr_cpus, self.rng, ctor=ctor, usersize=usersize,
                          sheaf_capacity=sheaf_capacity, random_freelist=self.random_freelist)
        self.caches.append(cache)
        self.by_name[name] = cache
        return cache

    def create_kmalloc_caches(self) -> None:
        """``create_kmalloc_caches``/``new_kmalloc_cache``: the four families, indices
        1, 2, 3..13; align = largest power of two dividing the size; usercopy whole object."""
        for ktype in (KMALLOC_NORMAL, KMALLOC_RECLAIM, KMALLOC_CGROUP, KMALLOC_DMA):
            if ktype == KMALLOC_CGROUP and not self.memcg:
                continue
            flags = SLAB_KMALLOC
            if ktype == KMALLOC_RECLAIM:
                flags |= SLAB_RECLAIM_ACCOUNT
            elif ktype == KMALLOC_CGROUP:
                flags |= SLAB_ACCOUNT
            elif ktype == KMALLOC_DMA:
                flags |= SLAB_CACHE_DMA
            elif self.memcg:
                flags |= SLAB_NO_MERGE
            for idx in (3, 4, 5, 6, 1, 7, 2, 8, 9, 10, 11, 12, 13):
                size = kmalloc_size(idx)
                align = size & -size  # 1 << (ffs(size) - 1)
                name = kmalloc_cache_name(idx, ktype)
                if name in self.by_name:
                    continue
                self.kmalloc_caches[(ktype, idx)] = self.kmem_cache_create(
                    name, size, align, flags, usersize=size
                )

    def kmalloc_slab(self, size: int, gfp: int) -> KmemCache:
        """``kmalloc_slab``: the cache for 1 <= size <= 8192."""
        ktype = kmalloc_type(gfp, self.memcg)
        return self.kmalloc_caches[(ktype, kmalloc_index(size))]

    def lookup(self, name: str) -> KmemCache:
        """A cache by any of its names (aliases resolve to the owner)."""
        try:
            return self.by_name[name]
        except KeyError:
            raise KmemdesError(f"no slab cache named {name!r}") from None

    @classmethod
    def from_sysfs_dump(cls, tsv: Path, aliases: Path, slabinfo: Path, nr_cpus: int,
                        alloc_pages: AllocPages, free_pages: FreePages, pfn_to_virt: PfnToVirt,
                        virt_to_pfn: VirtToPfn, seed: int = 0) -> "SlabAllocator":
        """The cache table of a real machine: ``/sys/kernel/slab`` geometry (slab_caches.tsv),
        alias symlinks (slab_aliases.txt) and ``/proc/slabinfo`` (which names each merged
        group's owner, the name trace events carry).  Geometry is recomputed by the
        model from the stride; members resolve to the owner.
        """
        owners = {line.split(None, 1)[0] for line in _read_lines(slabinfo)[2:] if line.strip()}
        members: dict[str, list[str]] = {}
        for n, line in enumerate(_read_lines(aliases), 1):
            if not line.strip():
                continue
            parts = line.split(" -> ")
            if len(parts) != 2:
                raise KmemdesError(f"{aliases}:{n}: expected 'name -> :group'")
            members.setdefault(parts[1].strip(), []).append(parts[0].strip())
        alloc = cls(alloc_pages, free_pages, pfn_to_virt, virt_to_pfn, nr_cpus=nr_cpus, seed=seed, kmalloc_caches=False)
        alloc.caches.clear()
        alloc.by_name.clear()
        with open(tsv, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        for n, r in enumerate(rows, 2):
            try:
                sysname, object_size, stride = r["cache"], int(r["object_size"]), int(r["slab_size"])
                align, reclaim = int(r["align"]), r["reclaim_account"] == "1"
                sheaf = int(r.get("sheaf_capacity") or 0)
            except (KeyError, ValueError, TypeError) as e:
                raise KmemdesError(f"{tsv}:{n}: bad slab_caches row ({e})") from None
            flags = SLAB_RECLAIM_ACCOUNT if reclaim else 0
            if sysname.startswith(":"):
                tag = sysname[1:].split("-")[0] if "-" in sysname else ""
                flags |= SLAB_ACCOUNT if "A" in tag else 0
                flags |= SLAB_CACHE_DMA if "d" in tag else 0
                names = members.get(sysname, [])
                owner = [m for m in names if m in owners]
                if len(owner) != 1:
                    raise KmemdesError(f"{tsv}:{n}: group {sysname} has {len(owner)} owners in {slabinfo}")
                cache = alloc.kmem_cache_create(owner[0], object_size, align, flags, stride=stride)
                for m in names:
                    if m != owner[0]:
                        cache.aliases.append(m)
                        cache.refcount += 1
                        alloc.by_name[m] = cache
            else:
                if sysname.startswith("kmalloc-cg-"):
                    flags |= SLAB_ACCOUNT
                elif sysname.startswith("dma-kmalloc-"):
                    flags |= SLAB_CACHE_DMA
                cache = alloc.kmem_cache_create(sysname, object_size, align, flags, stride=stride,
                                                sheaf_capacity=sheaf, usersize=1)
                if sysname.startswith(("kmalloc-", "dma-kmalloc-")):
                    cache.flags |= SLAB_KMALLOC
                    prefix, _, sz = sysname.rpartition("-")
                    ktype = {"kmalloc": KMALLOC_NORMAL, "kmalloc-rcl": KMALLOC_RECLAIM,
                             "kmalloc-cg": KMALLOC_CGROUP, "dma-kmalloc": KMALLOC_DMA}.get(prefix)
                    size = int(sz[:-1]) << 10 if sz.endswith("k") else int(sz)
                    if ktype is not None:
                        alloc.kmalloc_caches[(ktype, kmalloc_index(size))] = cache
        alloc._index_kmalloc_caches()
        return alloc

    # ---- slab pages --------------------------------------------------------------------
    def _new_slab(self, s: KmemCache, gfp: int, cpu: int) -> Optional[Slab]:
        """``new_slab``/``allocate_slab``: pages at ``oo`` with the light flags, else at
        ``s->min`` with the caller's; freelist in ``shuffle_freelist`` order."""
        geo = s.geo
        first, fallback = slab_alloc_gfp(s.flags, gfp, geo.order, geo.min_order)
        order, objects = geo.order, geo.objects
        pfn = self._alloc_pages(first, order, cpu)
        if pfn < 0:
            order, objects = geo.min_order, geo.min_objects
            pfn = self._alloc_pages(fallback, order, cpu)
            if pfn < 0:
                s.stat["alloc_slab_fail"] += 1
                return None
            s.stat["order_fallback"] += 1
        base = self._pfn_to_virt(pfn)
        slab = Slab(s, pfn, order, base, objects)
        size = s.size
        seq = s.random_seq
        if seq is not None:
            n = len(seq)
            pos = self.rng.randrange(n)
            order_idx = [i for i in seq[pos:] + seq[:pos] if i < objects]
        else:
            order_idx = range(objects)
        fl = [base + i * size for i in order_idx]
        fl.reverse()  # pop() from the end hands out the first object first
        slab.freelist = fl
        for p in range(pfn, pfn + (1 << order)):
            self.slab_of_page[p] = slab
        s.nr_slabs += 1
        s.total_objects += objects
        s.stat["alloc_slab"] += 1
        return slab

    def _discard_slab(self, s: KmemCache, slab: Slab, cpu: int) -> None:
        """``discard_slab``: pages back to the page allocator (``mm_page_free order=oo``)."""
        for p in range(slab.pfn, slab.pfn + (1 << slab.order)):
            del self.slab_of_page[p]
        s.nr_slabs -= 1
        s.total_objects -= slab.objects
        s.stat["free_slab"] += 1
        slab.where = -1
        self._free_pages(slab.pfn, slab.order, cpu)

    # ---- allocation --------------------------------------------------------------------
    def _put_cpu_partial(self, s: KmemCache, slab: Slab, cpu: int, drain: bool) -> None:
        """``put_cpu_partial``: push on this CPU's partial list; with ``drain``, a list that
        already holds ``cpu_partial_slabs`` slabs is first flushed to the node."""
        c = s.cpus[cpu]
        if drain and len(c.partial) >= s.geo.cpu_partial_slabs:
            old, c.partial = c.partial, []
            self._put_partials(s, old, cpu)
            s.stat["cpu_partial_drain"] += 1
        slab.where = CPU_PARTIAL
        slab.cpu = cpu
        c.partial.append(slab)

    def _put_partials(self, s: KmemCache, slabs: list[Slab], cpu: int) -> None:
        """``__put_partials``: unfreeze a CPU partial list onto the node list (tail); empty
        slabs are discarded while the node holds >= min_partial partial slabs."""
        n = s.partial
        for slab in reversed(slabs):  # from the list head (most recent) down
            if slab.inuse == 0 and n.nr >= s.geo.min_partial:
                self._discard_slab(s, slab, cpu)
            else:
                n.add(slab, tail=True)

    def _slab_alloc_slow(self, s: KmemCache, gfp: int, cpu: int) -> int:
        """``___slab_alloc``: refill ``c->freelist`` from the CPU slab, the CPU partial list,
        the node partial list (``get_partial_node``) or a new slab."""
        c = s.cpus[cpu]
        slab = c.slab
        if slab is not None:
            if slab.freelist:  # get_freelist: remote frees while it was ours
                c.freelist, slab.freelist = slab.freelist, []
                slab.inuse = slab.objects
                return c.freelist.pop()
            slab.where = FULL  # full: on no list
            slab.cpu = -1
            c.slab = None
        while c.partial:
            slab = c.partial.pop()
            s.stat["cpu_partial_alloc"] += 1
            if slab.freelist:
                return self._load_slab(c, slab, cpu)
        n = s.partial
        if n.head is not None:
            first = None
            taken = 0
            for slab in n:
                n.remove(slab)
                if first is None:
                    first = slab
                    s.stat["alloc_from_partial"] += 1
                    if s.geo.cpu_partial == 0:
                        break
                else:
                    self._put_cpu_partial(s, slab, cpu, drain=False)
                    taken += 1
                    if taken > s.geo.cpu_partial_slabs // 2:
                        break
            return self._load_slab(c, first, cpu)  # type: ignore[arg-type]
        slab = self._new_slab(s, gfp, cpu)
        if slab is None:
            return 0
        return self._load_slab(c, slab, cpu)

    @staticmethod
    def _load_slab(c: _CpuCache, slab: Slab, cpu: int) -> int:
        c.slab = slab
        slab.where = CPU_SLAB
        slab.cpu = cpu
        c.freelist, slab.freelist = slab.freelist, []
        slab.inuse = slab.objects
        return c.freelist.pop()

    def _slab_alloc_objects(self, s: KmemCache, gfp: int, cpu: int) -> int:
        """``__slab_alloc_node``: the lockless fast path, else the slow path."""
        c = s.cpus[cpu]
        if c.freelist:
            return c.freelist.pop()
        return self._slab_alloc_slow(s, gfp, cpu)

    def _cache_alloc(self, s: KmemCache, gfp: int, cpu: int) -> int:
        """``slab_alloc_node``: sheaves first for caches that have them, then the CPU freelist,
        then the slow path.  Returns the object address or 0."""
        if s.sheaf_capacity:
            obj = self._alloc_from_pcs(s, gfp, cpu)
        else:
            c = s.cpus[cpu]
            obj = c.freelist.pop() if c.freelist else self._slab_alloc_slow(s, gfp, cpu)
        if obj:
            s.nr_live += 1
        else:
            s.stat["alloc_fail"] += 1
        return obj

    def kmem_cache_alloc(self, s: KmemCache, gfp: int = G.GFP_KERNEL, cpu: int = 0) -> int:
        """``kmem_cache_alloc``: an object address, or 0 (NULL) when no slab page could be had.

        The trace event would print ``bytes_req=s->object_size bytes_alloc=s->size`` and the
        name of the cache that owns a merged group.
        """
        obj = self._cache_alloc(s, gfp, cpu % len(s.cpus))
        if obj:
            self._track(obj, s.object_size, s.size)
        if self.trace is not None:
            self.trace("kmem_cache_alloc", ptr=obj, cache=s.name, bytes_req=s.object_size, bytes_alloc=s.size,
                       gfp=gfp)
        return obj

    def _track(self, obj: int, req: int, alloc: int) -> None:
        self.live[obj] = req
        self.bytes_req_live += req
        self.bytes_alloc_live += alloc

    # ---- kmalloc (mm/slab_common.c, mm/slub.c) -----------------------------------------
    def kmalloc(self, size: int, gfp: int = G.GFP_KERNEL, cpu: int = 0) -> tuple[int, int]:
        """``kmalloc``: (address, bytes_alloc); emits the ``kmalloc`` event (not for size 0).

        ``kmalloc(0)`` is ZERO_SIZE_PTR with no event; up to 8 KiB from the size-class cache
        of the GFP family; above, ``get_order(size)`` pages with ``__GFP_COMP``
        (``__kmalloc_large_node``); above KMALLOC_MAX_SIZE the page allocator refuses the
        order: NULL and a warning (unless __GFP_NOWARN), counted.  A negative size is a huge
        ``size_t``: NULL with a warning.
        """
        if 0 < size <= KMALLOC_MAX_CACHE_SIZE and not gfp & _GFP_NOT_NORMAL_FAST:  # the common case
            s = self._normal_caches[_KMALLOC_INDEX[size]]
            c = s.cpus[cpu % self.nr_cpus]
            if c.freelist and not s.sheaf_capacity:
                obj = c.freelist.pop()
                s.nr_live += 1
            else:
                obj = self._cache_alloc(s, gfp, cpu % self.nr_cpus)
            if obj:
                self.live[obj] = size
                self.bytes_req_live += size
                self.bytes_alloc_live += s.size
            bytes_alloc = s.size
        else:
            obj, bytes_alloc = self._kmalloc(size, gfp, cpu)
        if self.trace is not None and size:
            self.trace("kmalloc", ptr=obj, bytes_req=size, bytes_alloc=bytes_alloc, gfp=gfp)
        return obj, bytes_alloc

    def _kmalloc(self, size: int, gfp: int = G.GFP_KERNEL, cpu: int = 0) -> tuple[int, int]:
        """:meth:`kmalloc` for every case (families, large, zero, bad sizes), no event."""
        if size == 0:
            return ZERO_SIZE_PTR, 0
        if size < 0:
            self._warn("kmalloc: negative size (huge size_t)", gfp)
            return 0, 0
        if gfp & (_GFP_HIGHMEM | _GFP_DMA32):  # GFP_SLAB_BUG_MASK: kmalloc_fix_flags
            self._warn("kmalloc: unexpected gfp (__GFP_HIGHMEM/__GFP_DMA32 cleared)", 0)
            gfp &= ~(_GFP_HIGHMEM | _GFP_DMA32)
        cpu %= self.nr_cpus
        if size <= KMALLOC_MAX_CACHE_SIZE:
            s = self.kmalloc_caches[(kmalloc_type(gfp, self.memcg), _KMALLOC_INDEX[size])]
            obj = self._cache_alloc(s, gfp, cpu)
            if obj:
                self._track(obj, size, s.size)
            return obj, s.size
        order = get_order(size)
        bytes_alloc = PAGE_SIZE << order
        if order > MAX_PAGE_ORDER:
            self._warn("kmalloc: size > KMALLOC_MAX_SIZE (order > MAX_PAGE_ORDER)", gfp)
            return 0, bytes_alloc
        pfn = self._alloc_pages(gfp | _GFP_COMP, order, cpu)
        if pfn < 0:
            self.stat["kmalloc_large_fail"] += 1
            return 0, bytes_alloc
        addr = self._pfn_to_virt(pfn)
        self.large[pfn] = order
        self.stat["kmalloc_large"] += 1
        self._track(addr, size, bytes_alloc)
        return addr, bytes_alloc

    def _warn(self, what: str, gfp: int) -> None:
        """A kernel WARN: counted by text (suppressed by __GFP_NOWARN, still counted as 'nowarn')."""
        self.warnings[what if not gfp & _GFP_NOWARN else what + " [nowarn]"] += 1

    def ksize(self, addr: int) -> int:
        """``ksize``/``__ksize``: usable bytes behind a live kmalloc/slab address (0 if none)."""
        slab = self._slab_of(addr)
        if slab is not None:
            return slab.cache.size
        pfn = self._pfn_or_none(addr)
        return PAGE_SIZE << self.large[pfn] if pfn in self.large else 0

    def _pfn_or_none(self, addr: int) -> Optional[int]:
        try:
            return self._addr_pfn(addr)
        except KmemdesError:
            return None

    def _slab_of(self, addr: int) -> Optional[Slab]:
        pfn = self._pfn_or_none(addr)
        return None if pfn is None else self.slab_of_page.get(pfn)

    def kfree(self, addr: int, cpu: int = 0) -> int:
        """``kfree`` (emits the ``kfree`` event, NULL included); see :meth:`_free_obj`."""
        if self.trace is not None:
            self.trace("kfree", ptr=addr)
        return self._free_obj(addr, cpu)

    def _free_obj(self, addr: int, cpu: int = 0) -> int:
        """``kfree``: NULL and ZERO_SIZE_PTR are no-ops; a slab object goes back to its cache
        (whatever cache, as ``virt_to_slab`` finds it); a large kmalloc frees its pages
        (``free_large_kmalloc``).  Returns the bytes freed (``bytes_alloc``), 0 for a no-op.
        An address that is not live is counted as an invalid free, never a crash.
        """
        if addr == 0 or addr == ZERO_SIZE_PTR:
            return 0
        req = self.live.pop(addr, None)
        if req is None:
            self._warn("kfree: invalid or double free", 0)
            return 0
        cpu %= self.nr_cpus
        pfn = (addr - self._page_offset) >> PAGE_SHIFT  # a live object: a direct-map address
        slab = self.slab_of_page.get(pfn)
        if slab is not None:
            s = slab.cache
            self.bytes_req_live -= req
            self.bytes_alloc_live -= s.size
            s.nr_live -= 1
            if s.sheaf_capacity:
                self._free_to_pcs(s, addr, cpu)
            else:
                c = s.cpus[cpu]
                if slab is c.slab:  # do_slab_free fast path
                    c.freelist.append(addr)
                else:
                    self._slab_free(s, slab, addr, cpu)
            return s.size
        order = self.large.pop(pfn)
        self.bytes_req_live -= req
        self.bytes_alloc_live -= PAGE_SIZE << order
        self._free_pages(pfn, order, cpu)
        return PAGE_SIZE << order

    # ---- sheaves (6.18) ----------------------------------------------------------------
    def _alloc_from_pcs(self, s: KmemCache, gfp: int, cpu: int) -> int:
        """``alloc_from_pcs``: pop the main sheaf; when empty swap in a full spare, or a full
        sheaf from the barn, or refill the main sheaf in bulk from slabs."""
        c = s.cpus[cpu]
        if not c.main:
            if c.spare:
                c.main, c.spare = c.spare, c.main
            elif s.barn_full:
                full = s.barn_full.pop()  # barn_replace_empty_sheaf
                if s.barn_empty < MAX_EMPTY_SHEAVES:
                    s.barn_empty += 1
                c.main = full
                s.stat["barn_get"] += 1
            else:
                cap = s.sheaf_capacity
                refill = []
                for _ in range(cap):  # refill_sheaf -> __kmem_cache_alloc_bulk
                    obj = self._slab_alloc_objects(s, gfp, cpu)
                    if not obj:
                        break
                    refill.append(obj)
                s.stat["sheaf_refill"] += 1
                if not refill:
                    return 0
                refill.reverse()
                c.main = refill
        return c.main.pop()

    def _free_to_pcs(self, s: KmemCache, obj: int, cpu: int) -> None:
        """``free_to_pcs``: push on the main sheaf; a full main is swapped with an empty
        spare, or parked full in the barn (an empty one taken back), or flushed to slabs."""
        c = s.cpus[cpu]
        cap = s.sheaf_capacity
        if len(c.main) >= cap:
            if c.spare is not None and not c.spare:
                c.main, c.spare = c.spare, c.main
            elif c.spare is None:
                c.spare, c.main = c.main, []
            elif len(s.barn_full) < MAX_FULL_SHEAVES:
                s.barn_full.append(c.main)
                if s.barn_empty:
                    s.barn_empty -= 1
                c.main = []
                s.stat["barn_put"] += 1
            else:
                flush, c.main = c.main, []  # sheaf_flush_main -> __kmem_cache_free_bulk
                for o in flush:
                    self._slab_free(s, self.slab_of_page[self._addr_pfn(o)], o, cpu)
                s.stat["sheaf_flush"] += 1
        c.main.append(obj)

    # ---- free --------------------------------------------------------------------------
    def _slab_free(self, s: KmemCache, slab: Slab, obj: int, cpu: int) -> None:
        """``do_slab_free`` fast path (object of this CPU's slab) or ``__slab_free``."""
        c = s.cpus[cpu]
        if slab is c.slab:
            c.freelist.append(obj)
            return
        prior = bool(slab.freelist)
        slab.freelist.append(obj)
        slab.inuse -= 1
        where = slab.where
        if where == CPU_SLAB:  # frozen on another CPU
            s.stat["free_frozen"] += 1
            return
        if not prior:  # was full
            if s.geo.cpu_partial:
                self._put_cpu_partial(s, slab, cpu, drain=True)
                s.stat["cpu_partial_free"] += 1
                return
            if slab.inuse == 0 and s.partial.nr >= s.geo.min_partial:
                self._discard_slab(s, slab, cpu)
            else:
                s.partial.add(slab, tail=True)
            return
        if where != NODE_PARTIAL:  # on a CPU partial list: leave it there
            return
        if slab.inuse == 0 and s.partial.nr >= s.geo.min_partial:
            s.partial.remove(slab)
            self._discard_slab(s, slab, cpu)

    def kmem_cache_free(self, s: KmemCache, obj: int, cpu: int = 0) -> None:
        """``kmem_cache_free``: give ``obj`` back.  An object of another cache (the kernel's
        ``cache_from_obj`` warning) or not live (double free) is counted and ignored."""
        if self.trace is not None:
            self.trace("kmem_cache_free", ptr=obj, cache=s.name)
        # a live object is a direct-map address (see _free_obj)
        slab = self.slab_of_page.get((obj - self._page_offset) >> PAGE_SHIFT) if obj in self.live else None
        if slab is None or slab.cache is not s:
            self._warn("kmem_cache_free: wrong cache, invalid or double free", 0)
            return
        self._free_obj(obj, cpu)

    # ---- flushing / shrinking ----------------------------------------------------------
    def _deactivate_slab(self, s: KmemCache, c: _CpuCache, cpu: int) -> None:
        """``deactivate_slab``: merge ``c->freelist`` back; empty and node >= min_partial:
        discard; with free objects: node list (tail after remote frees, else head)."""
        slab = c.slab
        if slab is None:
            return
        tail = bool(slab.freelist)
        slab.freelist.extend(c.freelist)
        slab.inuse -= len(c.freelist)
        c.freelist = []
        c.slab = None
        slab.cpu = -1
        if slab.inuse == 0 and s.partial.nr >= s.geo.min_partial:
            slab.where = FULL
            self._discard_slab(s, slab, cpu)
        elif slab.freelist:
            s.partial.add(slab, tail=tail)
        else:
            slab.where = FULL

    def flush_cpu_slab(self, s: KmemCache, cpu: int) -> None:
        """``flush_slab`` + ``put_partials`` + sheaf flush of one CPU (``flush_cpu_slab``)."""
        c = s.cpus[cpu]
        if s.sheaf_capacity:
            objs = c.main + (c.spare or [])
            c.main, c.spare = [], None
            for o in objs:
                self._slab_free(s, self.slab_of_page[self._addr_pfn(o)], o, cpu)
        self._deactivate_slab(s, c, cpu)
        old, c.partial = c.partial, []
        self._put_partials(s, old, cpu)

    def kmem_cache_shrink(self, s: KmemCache) -> int:
        """``__kmem_cache_shrink``: flush every CPU, then free every empty slab on the node
        list; returns the number of slabs freed."""
        before = s.stat["free_slab"]
        if s.sheaf_capacity:
            for full in s.barn_full:
                for o in full:
                    self._slab_free(s, self.slab_of_page[self._addr_pfn(o)], o, 0)
            s.barn_full.clear()
        for cpu in range(len(s.cpus)):
            self.flush_cpu_slab(s, cpu)
        for slab in list(s.partial):
            if slab.inuse == 0:
                s.partial.remove(slab)
                self._discard_slab(s, slab, 0)
        return s.stat["free_slab"] - before

    # ---- reports -----------------------------------------------------------------------
    def slabinfo_rows(self) -> list[SlabinfoRow]:
        """One row per cache (owners only), in creation order."""
        from kmemdes.mm.slabinfo import SlabinfoRow

        rows = []
        for s in self.caches:
            active, num, slabs = s.slabinfo()
            rows.append(SlabinfoRow(s.name, active, num, s.size, s.geo.objects, 1 << s.geo.order, slabs, slabs))
        return rows


def _read_lines(path: Path) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError as e:
        raise KmemdesError(f"{path}: cannot read ({e.strerror})") from None
