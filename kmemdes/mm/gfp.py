"""GFP flags: parse the kernel's printed form, and what a mask asks of the allocator.

Follows include/linux/gfp_types.h (bits), include/trace/events/mmflags.h
(``show_gfp_flags``, the printed names and their order) and include/linux/gfp.h
(``gfp_zone``, ``gfp_migratetype``) of Linux 6.18.  Traces print masks as names
joined by ``|``; they are decoded into bits here and never compared as strings.

>>> hex(parse_gfp("GFP_KERNEL|__GFP_ZERO|__GFP_COMP"))
'0x40dc0'
>>> format_gfp(0x40dc0)
'GFP_KERNEL|__GFP_ZERO|__GFP_COMP'
>>> gfp_migratetype(parse_gfp("GFP_HIGHUSER_MOVABLE"))
1
>>> gfp_zone(parse_gfp("GFP_KERNEL")).name
'NORMAL'
"""

from __future__ import annotations

import enum
from functools import lru_cache

__all__ = [
    "GFP_BITS",
    "GFP_COMPOSITES",
    "ZoneType",
    "parse_gfp",
    "format_gfp",
    "gfp_zone",
    "gfp_migratetype",
    "gfpflags_allow_blocking",
    "gfp_class",
    "MIGRATE_UNMOVABLE",
    "MIGRATE_MOVABLE",
    "MIGRATE_RECLAIMABLE",
    "MIGRATE_HIGHATOMIC",
    "MIGRATE_ISOLATE",
    "MIGRATE_TYPES",
    "MIGRATETYPE_NAMES",
]

# --- bits (include/linux/gfp_types.h, 6.18; bit 24 as the 6.18 format files print it)
__GFP_DMA = 0x1
__GFP_HIGHMEM = 0x2
__GFP_DMA32 = 0x4
__GFP_MOVABLE = 0x8
__GFP_RECLAIMABLE = 0x10
__GFP_HIGH = 0x20
__GFP_IO = 0x40
__GFP_FS = 0x80
__GFP_ZERO = 0x100
__GFP_DIRECT_RECLAIM = 0x400
__GFP_KSWAPD_RECLAIM = 0x800
__GFP_WRITE = 0x1000
__GFP_NOWARN = 0x2000
__GFP_RETRY_MAYFAIL = 0x4000
__GFP_NOFAIL = 0x8000
__GFP_NORETRY = 0x10000
__GFP_MEMALLOC = 0x20000
__GFP_COMP = 0x40000
__GFP_NOMEMALLOC = 0x80000
__GFP_HARDWALL = 0x100000
__GFP_THISNODE = 0x200000
__GFP_ACCOUNT = 0x400000
__GFP_ZEROTAGS = 0x800000
__GFP_NO_OBJ_EXT = 0x1000000

#: single-bit names in bit order, as ``show_gfp_flags`` prints leftovers
GFP_BITS: dict[str, int] = {
    "__GFP_DMA": __GFP_DMA,
    "__GFP_HIGHMEM": __GFP_HIGHMEM,
    "__GFP_DMA32": __GFP_DMA32,
    "__GFP_MOVABLE": __GFP_MOVABLE,
    "__GFP_RECLAIMABLE": __GFP_RECLAIMABLE,
    "__GFP_HIGH": __GFP_HIGH,
    "__GFP_IO": __GFP_IO,
    "__GFP_FS": __GFP_FS,
    "__GFP_ZERO": __GFP_ZERO,
    "__GFP_DIRECT_RECLAIM": __GFP_DIRECT_RECLAIM,
    "__GFP_KSWAPD_RECLAIM": __GFP_KSWAPD_RECLAIM,
    "__GFP_WRITE": __GFP_WRITE,
    "__GFP_NOWARN": __GFP_NOWARN,
    "__GFP_RETRY_MAYFAIL": __GFP_RETRY_MAYFAIL,
    "__GFP_NOFAIL": __GFP_NOFAIL,
    "__GFP_NORETRY": __GFP_NORETRY,
    "__GFP_MEMALLOC": __GFP_MEMALLOC,
    "__GFP_COMP": __GFP_COMP,
    "__GFP_NOMEMALLOC": __GFP_NOMEMALLOC,
    "__GFP_HARDWALL": __GFP_HARDWALL,
    "__GFP_THISNODE": __GFP_THISNODE,
    "__GFP_ACCOUNT": __GFP_ACCOUNT,
    "__GFP_ZEROTAGS": __GFP_ZEROTAGS,
    "__GFP_NO_OBJ_EXT": __GFP_NO_OBJ_EXT,
}

__GFP_RECLAIM = __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM
GFP_ATOMIC = __GFP_HIGH | __GFP_KSWAPD_RECLAIM
GFP_KERNEL = __GFP_RECLAIM | __GFP_IO | __GFP_FS
GFP_KERNEL_ACCOUNT = GFP_KERNEL | __GFP_ACCOUNT
GFP_NOWAIT = __GFP_KSWAPD_RECLAIM | __GFP_NOWARN
GFP_NOIO = __GFP_RECLAIM
GFP_NOFS = __GFP_RECLAIM | __GFP_IO
GFP_USER = GFP_KERNEL | __GFP_HARDWALL
GFP_DMA = __GFP_DMA
GFP_DMA32 = __GFP_DMA32
GFP_HIGHUSER = GFP_USER | __GFP_HIGHMEM
GFP_HIGHUSER_MOVABLE = GFP_HIGHUSER | __GFP_MOVABLE
GFP_TRANSHUGE_LIGHT = (
    GFP_HIGHUSER_MOVABLE | __GFP_COMP | __GFP_NOMEMALLOC | __GFP_NOWARN
) & ~__GFP_RECLAIM
GFP_TRANSHUGE = GFP_TRANSHUGE_LIGHT | __GFP_DIRECT_RECLAIM

#: composite names in the order ``show_gfp_flags`` tries them (6.18)
GFP_COMPOSITES: dict[str, int] = {
    "GFP_TRANSHUGE": GFP_TRANSHUGE,
    "GFP_TRANSHUGE_LIGHT": GFP_TRANSHUGE_LIGHT,
    "GFP_HIGHUSER_MOVABLE": GFP_HIGHUSER_MOVABLE,
    "GFP_HIGHUSER": GFP_HIGHUSER,
    "GFP_USER": GFP_USER,
    "GFP_KERNEL_ACCOUNT": GFP_KERNEL_ACCOUNT,
    "GFP_KERNEL": GFP_KERNEL,
    "GFP_NOFS": GFP_NOFS,
    "GFP_ATOMIC": GFP_ATOMIC,
    "GFP_NOIO": GFP_NOIO,
    "GFP_NOWAIT": GFP_NOWAIT,
    "GFP_DMA": GFP_DMA,
    "GFP_DMA32": GFP_DMA32,
    "__GFP_RECLAIM": __GFP_RECLAIM,
}

# Names printed by older kernels (KERNEL.md section 2, 14): mapped to the 6.x
# bits that mean the same, or to 0 where the flag no longer exists.
_OLD_NAMES: dict[str, int] = {
    "__GFP_WAIT": __GFP_RECLAIM,
    "__GFP_REPEAT": __GFP_RETRY_MAYFAIL,
    "__GFP_NOTRACK": 0,
    "__GFP_COLD": 0,
    "__GFP_ATOMIC": 0,
    "__GFP_OTHER_NODE": 0,
    "__GFP_NOACCOUNT": 0,
    "__GFP_NO_KSWAPD": 0,
    "__GFP_NOLOCKDEP": 0,
    "__GFP_SKIP_ZERO": 0,
    "__GFP_SKIP_KASAN": 0,
    "__GFP_SKIP_KASAN_POISON": 0,
    "__GFP_SKIP_KASAN_UNPOISON": 0,
    "__GFP_UNMAPPED": 0,
    "GFP_TEMPORARY": GFP_KERNEL | __GFP_RECLAIMABLE,
    "GFP_IOFS": __GFP_IO | __GFP_FS,
    "GFP_NOTRACK": 0,
}

_NAMES: dict[str, int] = {**GFP_BITS, **GFP_COMPOSITES, **_OLD_NAMES}


@lru_cache(maxsize=4096)
def parse_gfp(text: str) -> int:
    """Decode a printed GFP mask (``show_gfp_flags`` output) into its bits.

    Accepts the names of any kernel era (``__GFP_`` names, the old forms
    without underscores such as ``GFP_NOWARN``), ``none``, and numeric masks
    (``0xcc0``, ``3264``).  Unknown names raise :class:`ValueError`.

    >>> hex(parse_gfp("GFP_NOWAIT|__GFP_IO|__GFP_FS"))
    '0x28c0'
    >>> parse_gfp("none"), parse_gfp("0xcc0"), parse_gfp("GFP_ZERO") == 0x100
    (0, 3264, True)
    """
    text = text.strip()
    if not text or text == "none":
        return 0
    mask = 0
    for token in text.split("|"):
        token = token.strip()
        bits = _NAMES.get(token)
        if bits is None:
            if token.startswith("GFP_") and "__" + token in _NAMES:
                bits = _NAMES["__" + token]  # old kernels: GFP_ZERO, GFP_NOWARN
            elif token[:2] in ("0x", "0X"):
                try:
                    bits = int(token, 16)
                except ValueError:
                    raise ValueError(f"bad GFP token {token!r}") from None
            elif token.isdigit():
                bits = int(token)
            else:
                raise ValueError(f"unknown GFP flag {token!r}")
        mask |= bits
    return mask


def format_gfp(mask: int) -> str:
    """Print a mask the way ``show_gfp_flags`` (6.18) does.

    Composites are taken first, in the kernel's order, when all their bits are
    present; the remaining bits follow in bit order.

    >>> format_gfp(0x2cc0 & ~0x400)
    'GFP_NOWAIT|__GFP_IO|__GFP_FS'
    >>> format_gfp(0)
    'none'
    """
    if mask == 0:
        return "none"
    parts = []
    rest = mask
    for name, bits in GFP_COMPOSITES.items():
        if bits and rest & bits == bits:
            parts.append(name)
            rest &= ~bits
    for name, bit in GFP_BITS.items():
        if rest & bit:
            parts.append(name)
            rest &= ~bit
    if rest:
        parts.append(hex(rest))
    return "|".join(parts)


class ZoneType(enum.IntEnum):
    """Zone types in address order (not the kernel's per-arch zone index)."""

    DMA = 0
    DMA32 = 1
    NORMAL = 2
    HIGHMEM = 3
    MOVABLE = 4


def gfp_zone(mask: int) -> ZoneType:
    """The highest zone a request may use (``gfp_zone``, include/linux/gfp.h).

    The zonelist is then walked downwards from it.  ``__GFP_MOVABLE`` with
    ``__GFP_HIGHMEM`` names ZONE_MOVABLE; machines without it fall back to
    HIGHMEM or NORMAL (the machine decides, :mod:`kmemdes.mm.page_alloc`).

    >>> gfp_zone(0x1), gfp_zone(0x4), gfp_zone(0xa).name, gfp_zone(0x8).name
    (<ZoneType.DMA: 0>, <ZoneType.DMA32: 1>, 'MOVABLE', 'NORMAL')
    """
    if mask & __GFP_DMA:
        return ZoneType.DMA
    if mask & __GFP_DMA32:
        return ZoneType.DMA32
    if mask & __GFP_HIGHMEM:
        return ZoneType.MOVABLE if mask & __GFP_MOVABLE else ZoneType.HIGHMEM
    return ZoneType.NORMAL


# --- migratetypes (include/linux/mmzone.h, 4.4+ numbering, no CMA: Isolate is 4)
MIGRATE_UNMOVABLE = 0
MIGRATE_MOVABLE = 1
MIGRATE_RECLAIMABLE = 2
MIGRATE_HIGHATOMIC = 3
MIGRATE_ISOLATE = 4
MIGRATE_TYPES = 5
MIGRATE_PCPTYPES = 3
MIGRATETYPE_NAMES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")


def gfp_migratetype(mask: int) -> int:
    """``gfp_migratetype``: (mask & (RECLAIMABLE|MOVABLE)) >> 3.

    >>> gfp_migratetype(0xcc0), gfp_migratetype(0xcd0), gfp_migratetype(0x100cca)
    (0, 2, 1)
    """
    mt = (mask & (__GFP_RECLAIMABLE | __GFP_MOVABLE)) >> 3
    if mt == 3:
        raise ValueError(f"GFP mask {mask:#x} is both movable and reclaimable")
    return mt


def gfpflags_allow_blocking(mask: int) -> bool:
    """``gfpflags_allow_blocking``: may the caller sleep (direct reclaim)?

    >>> gfpflags_allow_blocking(GFP_KERNEL), gfpflags_allow_blocking(GFP_ATOMIC)
    (True, False)
    """
    return bool(mask & __GFP_DIRECT_RECLAIM)


def gfp_class(mask: int) -> str:
    """The coarse class reports group by: ``atomic`` (cannot reclaim) or ``reclaim``.

    >>> gfp_class(GFP_ATOMIC), gfp_class(GFP_KERNEL)
    ('atomic', 'reclaim')
    """
    return "reclaim" if mask & __GFP_DIRECT_RECLAIM else "atomic"
