"""/proc/kpageflags: the exact physical page state of a capture, and how closely the model follows it.

``kmemdes capture --kpageflags`` stores ``before/kpageflags.zst`` and
``after/kpageflags.zst``: one little-endian u64 per pfn (fs/proc/page.c,
``kpageflags_read`` -> ``stable_page_flags``), zstd-compressed.  Bits are those
of include/uapi/linux/kernel-page-flags.h (0-26) and the "kernel hacking"
bits of include/linux/kernel-page-flags.h (32-42, e.g. ``KPF_RESERVED``).

What the flags say, checked on the Linux 6.18 reference kernel:

- ``KPF_BUDDY`` is set on **every** page of a free buddy block, not only on its
  head: ``stable_page_flags`` sets it for ``PageBuddy(page)`` (the head) and for
  ``page_count(page) == 0 && is_free_buddy_page(page)`` (every page covered by a
  free block's head of a large enough order).  Measured: the number of BUDDY
  pages equals ``sum(nr_free[o] << o)`` of /proc/buddyinfo, not ``sum(nr_free)``.
- So each free block's order is recovered from the pfns alone: free blocks are
  aligned, and two free buddies of the same order below ``pageblock_order``
  always merge (``__free_one_page``), so the free blocks are exactly the
  *maximal aligned fully free* power-of-two ranges, capped at
  ``MAX_PAGE_ORDER`` (:func:`buddy_blocks`).  Measured: the per-order counts
  equal /proc/buddyinfo read around the same instant for every order of every
  zone (drift aside).  The one exception the kernel allows — two free order-9
  buddies of pageblocks that cannot merge (HighAtomic or Isolate against
  another type) — shows up as an order-10 block here (a note says so when the
  snapshot's pagetypeinfo has such blocks).
- Pages on per-CPU lists are not PageBuddy: they look allocated (flags 0).
  /proc/zoneinfo gives their number, not which they are; the trace's first
  touch tells for some (:mod:`kmemdes.sim.hints`).
- Allocated pages are classified by flags (:func:`page_classes`): ``KPF_SLAB``
  (slab; such pages may also show ANON/KSM bits, which mean nothing there),
  ``KPF_PGTABLE`` (page tables: unmovable), LRU / anonymous / swap-backed /
  mapped (movable: what ``prep_move_freepages_block`` counts as movable is
  PageLRU), ``KPF_RESERVED`` (never given to the buddy allocator), and the rest
  (kernel allocations, pages on pcp lists: unmovable as far as flags tell).
  Reclaimable slab (dentries, inodes) cannot be told from unmovable slab by its
  flags: pageblock types come from the snapshot's pagetypeinfo counts instead
  (:func:`assign_pageblock_types`).
- ``kpageflags_read`` walks the pfns while the machine runs (~0.5 s for 6.5 M
  pfns here), so a snapshot is not one instant; the capture reads buddyinfo
  again right after it (``buddyinfo_after_kpageflags``) to measure the drift.

On top of that, this module measures the model against the kernel
(:func:`kpageflags_validation`, used by ``kmemdes validate``): the trace is
replayed in mirror mode from the exact ``before/`` layout, and

- **layout agreement**: for the pfns the trace touched, the share whose end
  state (free in the buddy allocator or not) in the model equals the kernel's
  ``after/kpageflags``; and over every online pfn;
- **placement agreement**: before each page allocation of the trace is applied,
  the model decides it by itself from the synchronised state
  (``Node.alloc_pages`` run on a journal of the node's arrays and rolled back
  exactly, :class:`PlacementPeek`), and its pfn is compared with the kernel's.

The replay stays synchronised with the kernel by two rules beyond mirror mode:
a free reported by ``mm_page_free`` and ``mm_page_free_batched`` takes effect
at the second line (:func:`frees_at_batched_line`), and blocks above the page
a kernel's per-CPU pop took (or on a list the kernel refilled, so found empty)
leave the model's list (:func:`_resync_pcp`: the bulk allocator takes pages
from pcp lists without events).  What stays out of reach: the order of the
blocks *inside* each free list (``kpageflags`` shows which blocks are free, not
in which order they sit on ``free_area[order][mt]``; on the reference machine
the blocks a refill takes are scattered over the whole pfn range, unrelated to
pfn order), so predictions of refills and buddy takes are a guess (the model
takes the lowest pfn first), while per-CPU hits — most allocations — are
LIFO pops the model follows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from kmemdes.errors import KmemdesError
from kmemdes.sim.policy_pages import LRU_ACTIVE, LRU_INACTIVE, LRU_MAPPED, LRU_REFERENCED

__all__ = [
    "movable_folios",
    "hugetlb_folios",
    "KPF_NAMES", "KPF_LOCKED", "KPF_ERROR", "KPF_REFERENCED", "KPF_UPTODATE", "KPF_DIRTY", "KPF_LRU", "KPF_ACTIVE",
    "KPF_SLAB", "KPF_WRITEBACK", "KPF_RECLAIM", "KPF_BUDDY", "KPF_MMAP", "KPF_ANON", "KPF_SWAPCACHE",
    "KPF_SWAPBACKED", "KPF_COMPOUND_HEAD", "KPF_COMPOUND_TAIL", "KPF_HUGE", "KPF_UNEVICTABLE", "KPF_HWPOISON",
    "KPF_NOPAGE", "KPF_KSM", "KPF_THP", "KPF_OFFLINE", "KPF_ZERO_PAGE", "KPF_IDLE", "KPF_PGTABLE", "KPF_RESERVED",
    "PC_FREE", "PC_RESERVED", "PC_SLAB", "PC_PGTABLE", "PC_MOVABLE", "PC_OTHER", "PC_HOLE", "PC_NAMES",
    "read_kpageflags", "decode_flags", "kpf_bit", "page_classes", "buddy_blocks", "zone_free_blocks", "pcp_thp_blocks",
    "assign_pageblock_types", "trace_pageblock_types", "allocated_migratetypes", "node_from_kpageflags",
    "touched_pfns", "end_read_pfns", "start_read_ends", "trace_marks", "model_buddy_mask", "layout_agreement", "PlacementPeek",
    "frees_at_batched_line", "prepared_events",
    "placement_replay", "placement_agreement", "kpageflags_pair", "kpageflags_validation", "format_kpageflags",
]

# include/uapi/linux/kernel-page-flags.h
KPF_LOCKED = 0
KPF_ERROR = 1
KPF_REFERENCED = 2
KPF_UPTODATE = 3
KPF_DIRTY = 4
KPF_LRU = 5
KPF_ACTIVE = 6
KPF_SLAB = 7
KPF_WRITEBACK = 8
KPF_RECLAIM = 9
KPF_BUDDY = 10
KPF_MMAP = 11
KPF_ANON = 12
KPF_SWAPCACHE = 13
KPF_SWAPBACKED = 14
KPF_COMPOUND_HEAD = 15
KPF_COMPOUND_TAIL = 16
KPF_HUGE = 17
KPF_UNEVICTABLE = 18
KPF_HWPOISON = 19
KPF_NOPAGE = 20
KPF_KSM = 21
KPF_THP = 22
KPF_OFFLINE = 23
KPF_ZERO_PAGE = 24
KPF_IDLE = 25
KPF_PGTABLE = 26
# include/linux/kernel-page-flags.h ("kernel hacking assistances")
KPF_RESERVED = 32
KPF_MLOCKED = 33
KPF_OWNER_2 = 34
KPF_PRIVATE = 35
KPF_PRIVATE_2 = 36
KPF_OWNER_PRIVATE = 37
KPF_ARCH = 38
KPF_UNCACHED = 39
KPF_SOFTDIRTY = 40
KPF_ARCH_2 = 41
KPF_ARCH_3 = 42

KPF_NAMES = {v: k[4:].lower() for k, v in dict(globals()).items() if k.startswith("KPF_") and isinstance(v, int)}

# page classes (what an allocated page is, as far as its flags tell)
PC_FREE = 0  # in a free buddy block (KPF_BUDDY)
PC_RESERVED = 1  # PG_reserved: memblock-reserved, never given to the buddy allocator
PC_SLAB = 2  # slab page: unmovable or reclaimable (flags cannot tell which)
PC_PGTABLE = 3  # page table: unmovable
PC_MOVABLE = 4  # LRU, anonymous, swap-backed or mapped: movable
PC_OTHER = 5  # no telling flag: kernel allocations, pages on per-CPU lists
PC_HOLE = 6  # KPF_NOPAGE: no struct page (a hole)
PC_NAMES = ("free", "reserved", "slab", "pgtable", "movable", "other", "hole")

_MAX_ORDER = 10
_PB_ORDER = 9
_PB_PAGES = 1 << _PB_ORDER


# ---------------------------------------------------------------------------------------------- reading
def read_kpageflags(path: str | Path) -> np.ndarray:
    """The flags of every pfn as a uint64 array indexed by pfn.

    ``path`` is a ``kpageflags.zst`` of a capture (zstd, streamed) or an
    uncompressed file such as ``/proc/kpageflags`` itself (read in 1 MiB
    chunks: the kernel wants reads of whole 8-byte entries).
    """
    path = Path(path)
    buf = bytearray()
    try:
        with open(path, "rb", buffering=0) as f:
            if path.suffix == ".zst":
                import zstandard

                try:
                    with zstandard.ZstdDecompressor().stream_reader(f) as r:
                        while True:
                            b = r.read(1 << 22)
                            if not b:
                                break
                            buf += b
                except zstandard.ZstdError as e:
                    raise KmemdesError(f"{path}: not a valid zstd stream ({e})") from None
            else:
                while True:
                    b = f.read(1 << 20)
                    if not b:
                        break
                    buf += b
    except OSError as e:
        raise KmemdesError(f"{path}: cannot read ({e.strerror})") from None
    if not buf:
        raise KmemdesError(f"{path}: empty (expected 8 bytes per pfn)")
    if len(buf) % 8:
        raise KmemdesError(f"{path}: {len(buf)} bytes is not a whole number of 8-byte entries (truncated?)")
    return np.frombuffer(bytes(buf), dtype="<u8")


def kpf_bit(kpf: np.ndarray, bit: int) -> np.ndarray:
    """Boolean array: pages with flag ``bit`` set."""
    return ((kpf >> np.uint64(bit)) & np.uint64(1)).astype(bool)


def decode_flags(value: int) -> list[str]:
    """Names of the flags set in one kpageflags entry.

    >>> decode_flags((1 << KPF_SLAB) | (1 << KPF_COMPOUND_HEAD))
    ['slab', 'compound_head']
    >>> decode_flags(1 << KPF_RESERVED)
    ['reserved']
    """
    return [KPF_NAMES.get(b, f"bit{b}") for b in range(64) if (value >> b) & 1]


def page_classes(kpf: np.ndarray) -> np.ndarray:
    """Per pfn, a ``PC_*`` class (uint8), first match wins: hole, free, reserved, slab, pgtable, movable, other.

    >>> f = np.array([1 << KPF_BUDDY, 1 << KPF_RESERVED, (1 << KPF_SLAB) | (1 << KPF_ANON),
    ...               1 << KPF_PGTABLE, 1 << KPF_LRU, 0, 1 << KPF_NOPAGE], dtype=np.uint64)
    >>> [PC_NAMES[c] for c in page_classes(f)]
    ['free', 'reserved', 'slab', 'pgtable', 'movable', 'other', 'hole']
    """
    cls = np.full(len(kpf), PC_OTHER, dtype=np.uint8)

    def anyof(*bits: int) -> np.ndarray:
        return (kpf & np.uint64(sum(1 << b for b in bits))) != 0

    # lowest priority first: later assignments win
    cls[anyof(KPF_LRU, KPF_ANON, KPF_SWAPBACKED, KPF_MMAP)] = PC_MOVABLE
    cls[anyof(KPF_PGTABLE)] = PC_PGTABLE
    cls[anyof(KPF_SLAB)] = PC_SLAB
    cls[anyof(KPF_RESERVED)] = PC_RESERVED
    cls[anyof(KPF_BUDDY)] = PC_FREE
    cls[anyof(KPF_NOPAGE)] = PC_HOLE
    return cls


def _folio_orders(kpf: np.ndarray, select: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head pfns of the selected pages that are not compound tails, their orders (a compound head
    spans the tails after it) and whether the span is a power of two (a folio the model can hold)."""
    tail = kpf_bit(kpf, KPF_COMPOUND_TAIL)
    heads = np.flatnonzero(select & ~tail)
    not_tail = np.flatnonzero(~tail)
    nxt = np.searchsorted(not_tail, heads + 1)
    ends = np.where(nxt < len(not_tail), not_tail[np.minimum(nxt, len(not_tail) - 1)], len(kpf))
    size = np.where(kpf_bit(kpf[heads], KPF_COMPOUND_HEAD), ends - heads, 1)
    orders = np.minimum(np.log2(np.maximum(size, 1)).astype(np.int64), _MAX_ORDER)
    return heads, orders, (1 << orders) == size


def movable_folios(kpf: np.ndarray, max_pfn: int) -> tuple[list, list, list]:
    """The movable folios in use (``PC_MOVABLE``, not hugetlb): head pfns, orders (from the
    compound head/tail flags) and, for a policy replay's reclaim and compaction models, whether
    each is page cache (on the LRU and not anonymous or swap-backed): 0, or ``LRU_INACTIVE`` with
    ``LRU_REFERENCED`` / ``LRU_ACTIVE`` / ``LRU_MAPPED`` added for ``KPF_REFERENCED`` /
    ``KPF_ACTIVE`` / ``KPF_MMAP``.

    >>> f = np.array([1 << KPF_LRU, (1 << KPF_ANON) | (1 << KPF_COMPOUND_HEAD), 1 << KPF_COMPOUND_TAIL,
    ...               1 << KPF_BUDDY, (1 << KPF_LRU) | (1 << KPF_ACTIVE) | (1 << KPF_MMAP)], dtype=np.uint64)
    >>> movable_folios(f, 5)
    ([0, 1, 4], [0, 1, 0], [1, 0, 13])
    """
    kpf = kpf[:max_pfn]
    mov = (page_classes(kpf) == PC_MOVABLE) & ~kpf_bit(kpf, KPF_HUGE)
    heads, orders, ok = _folio_orders(kpf, mov)
    f = kpf[heads]
    file = kpf_bit(f, KPF_LRU) & ~kpf_bit(f, KPF_ANON) & ~kpf_bit(f, KPF_SWAPBACKED)
    lru = file * (LRU_INACTIVE + LRU_REFERENCED * kpf_bit(f, KPF_REFERENCED) + LRU_ACTIVE * kpf_bit(f, KPF_ACTIVE)
                  + LRU_MAPPED * kpf_bit(f, KPF_MMAP))
    return heads[ok].tolist(), orders[ok].tolist(), lru[ok].astype(np.int64).tolist()


def hugetlb_folios(kpf: np.ndarray, max_pfn: int) -> tuple[list, list]:
    """The hugetlb pages in use (``KPF_HUGE`` compound heads): head pfns and orders.

    A reserved hugetlb page is one compound page for the buddy allocator: compaction steps over it
    whole (``PageCompound``) and skips a pageblock it fills (``pageblock_skip_persistent``).

    >>> h = (1 << KPF_HUGE) | (1 << KPF_COMPOUND_HEAD); t = (1 << KPF_HUGE) | (1 << KPF_COMPOUND_TAIL)
    >>> f = np.array([1 << KPF_BUDDY, 0, h, t, 1 << KPF_LRU, 0, 0, 0], dtype=np.uint64)
    >>> hugetlb_folios(f, 8)
    ([2], [1])
    """
    kpf = kpf[:max_pfn]
    heads, orders, ok = _folio_orders(kpf, kpf_bit(kpf, KPF_HUGE) & kpf_bit(kpf, KPF_COMPOUND_HEAD))
    return heads[ok].tolist(), orders[ok].tolist()


# ------------------------------------------------------------------------------------- free blocks
def buddy_blocks(free: np.ndarray, lo: int, hi: int, max_order: int = _MAX_ORDER) -> tuple[np.ndarray, np.ndarray]:
    """The free buddy blocks of the pfn range [lo, hi): maximal aligned fully free ranges, orders <= max_order.

    ``free`` is a boolean array indexed by pfn (every page of a free block
    marked, as ``KPF_BUDDY`` is).  Returns ``(pfns, orders)`` sorted by pfn.
    Two free buddies of one order always merge in ``__free_one_page``, so a
    free range decomposes into blocks only one way (see the module docstring).

    >>> free = np.zeros(32, bool); free[3:12] = True; free[16:32] = True
    >>> p, o = buddy_blocks(free, 0, 32)
    >>> list(zip(p.tolist(), o.tolist()))
    [(3, 0), (4, 2), (8, 2), (16, 4)]
    >>> p, o = buddy_blocks(free, 0, 32, max_order=3)
    >>> list(zip(p.tolist(), o.tolist()))[-2:]
    [(16, 3), (24, 3)]
    """
    lo = max(int(lo), 0)
    hi = min(int(hi), len(free))
    if hi <= lo:
        return np.zeros(0, np.int64), np.zeros(0, np.int8)
    cs = np.zeros(hi - lo + 1, dtype=np.int64)
    np.cumsum(free[lo:hi], out=cs[1:])
    out_p, out_o = [], []
    prev_first = prev_full = None
    for o in range(max_order, -1, -1):
        n = 1 << o
        first = -(-lo // n) * n
        m = max(0, (hi - first) // n)  # aligned slots of order o inside [lo, hi)
        off = first - lo
        full = (cs[off + n:off + n + m * n:n] - cs[off:off + m * n:n]) == n
        block = full
        if prev_full is not None and m:
            # the parent (order o+1) slot of slot k: slots pair up from prev_first on
            pfull = np.zeros(m, dtype=bool)
            j0 = (prev_first - first) // n
            rep = np.repeat(prev_full, 2)
            take = max(0, min(len(rep), m - j0))
            pfull[j0:j0 + take] = rep[:take]
            block = full & ~pfull
        idx = np.nonzero(block)[0]
        out_p.append(first + n * idx.astype(np.int64))
        out_o.append(np.full(len(idx), o, dtype=np.int8))
        prev_first, prev_full = first, full
    pfns = np.concatenate(out_p)
    orders = np.concatenate(out_o)
    idx = np.argsort(pfns, kind="stable")
    return pfns[idx], orders[idx]


def _zone_ranges(snap) -> list[tuple[str, int, int]]:
    """(name, start_pfn, end_pfn) of the populated zones of a snapshot (zoneinfo)."""
    out = []
    for z in snap.zoneinfo or []:
        if (z.present or z.managed) and z.start_pfn is not None:
            out.append((z.name, int(z.start_pfn), int(z.start_pfn) + int(z.spanned)))
    if not out:
        raise KmemdesError(f"{snap.path}/zoneinfo: no zone with start_pfn (a /proc/kpageflags layout needs the "
                           "zone spans)")
    return out


def zone_free_blocks(kpf: np.ndarray, snap) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Free buddy blocks per zone (``{zone: (pfns, orders)}``) of a kpageflags array."""
    free = kpf_bit(kpf, KPF_BUDDY)
    return {name: buddy_blocks(free, lo, hi) for name, lo, hi in _zone_ranges(snap)}


def pcp_thp_blocks(kpf: np.ndarray, snap) -> list[tuple[int, int, int, int]]:
    """Free THP-order pages on per-CPU lists at the snapshot, found without a trace:
    ``(pfn, 9, MIGRATE_MOVABLE, -1)`` per pageblock whose pages carry no flag at all and that no
    free buddy block covers, in a zone whose per-CPU lists (zoneinfo ``pagesets``' ``count``) can
    hold all such pageblocks; none in a zone where they could not all be there.

    Since 6.x the per-CPU lists also hold PMD-order pages (``pcp_allowed_order``): a freed THP or
    2 MiB page-cache folio waits there, off the buddy lists, with its flags cleared, so kpageflags
    shows 512 pages with no flag.  On k_pressure_defrag's start Normal has 29 such pageblocks and
    18,711 pages on its per-CPU lists, and the first 15 order-9 allocations the trace shows from
    Normal took 15 of those 29 pageblocks with no free event before them.  A non-compound order-9
    kernel allocation looks the same: 5 of those 29 pageblocks are flagless in j_pressure_stock's
    start too and neither trace ever touches them, so they are probably kernel memory taken for
    free here (10 MiB of 24 GiB).  The CPU is left to :func:`kmemdes.mm.mm_init.pcp_owners` (-1).
    """
    blocks = zone_free_blocks(kpf, snap)
    counts = {z.name: sum(ps.get("count", 0) for ps in z.pagesets) for z in snap.zoneinfo or []}
    out: list[tuple[int, int, int, int]] = []
    for name, lo, hi in _zone_ranges(snap):
        first, last = -(-lo // _PB_PAGES), min(hi, len(kpf)) // _PB_PAGES
        if last <= first:
            continue
        bare = np.nonzero((kpf[first * _PB_PAGES:last * _PB_PAGES].reshape(-1, _PB_PAGES) == 0).all(axis=1))[0] + first
        pfns, orders = blocks.get(name, (np.zeros(0, np.int64), np.zeros(0, np.int8)))
        # a free block above pageblock order has only its first page marked (PageBuddy)
        covered = set()
        for p, o in zip(pfns.tolist(), orders.tolist()):
            if o > 9:
                covered.update(range((p >> 9) + 1, (p + (1 << o)) >> 9))
        cand = [int(pb) for pb in bare if int(pb) not in covered]
        if cand and len(cand) * _PB_PAGES <= counts.get(name, 0):
            out.extend((pb * _PB_PAGES, 9, 1, -1) for pb in cand)
    return out


def _nr_free(orders: np.ndarray) -> list[int]:
    return np.bincount(orders.astype(np.int64), minlength=_MAX_ORDER + 1)[:_MAX_ORDER + 1].tolist()


# -------------------------------------------------------------------------------- pageblock types
_MT_NAMES = {"Unmovable": 0, "Movable": 1, "Reclaimable": 2, "HighAtomic": 3, "Isolate": 4}


def assign_pageblock_types(cls: np.ndarray, blocks: dict, snap, evidence: Optional[dict] = None
                           ) -> tuple[np.ndarray, list[str]]:
    """A migratetype per pageblock consistent with the snapshot's pagetypeinfo counts (uint8, per pageblock).

    /proc/kpageflags has no migratetype.  Per zone, the online pageblocks (the
    first ones of the zone, as many as pagetypeinfo counts) get types so that
    the number of pageblocks of each type equals pagetypeinfo's:

    1. pageblocks whose type the trace shows (``evidence``, e.g.
       :func:`trace_pageblock_types`) get that type, while the counts last
       and, for a non-movable type, while the free pages of the pageblocks
       given it stay within pagetypeinfo's free pages of that type;
    2. free order-9 / order-10 blocks of a non-movable type (pagetypeinfo's
       counts per type) are given to wholly free pageblocks nearest to
       pageblocks full of non-movable pages;
    3. the other non-movable pageblocks are those with the largest share of
       non-movable pages (slab, page tables, unflagged kernel pages) among
       their allocated pages;
    4. they are split between Reclaimable / HighAtomic / Isolate and Unmovable
       by matching pagetypeinfo's free block counts per order (greedy), since
       reclaimable slab cannot be told from flags; the rest is Movable.

    Both halves of a free order-10 block get one type (merging makes them so).
    """
    notes: list[str] = []
    npb = (len(cls) + _PB_PAGES - 1) >> _PB_ORDER
    pb_mt = np.full(npb, 1, dtype=np.uint8)
    pti = snap.pagetypeinfo
    hint_types = dict(evidence or {})
    for name, lo, hi in _zone_ranges(snap):
        first_pb = lo >> _PB_ORDER
        last_pb = (hi - 1) >> _PB_ORDER
        if pti is None or name not in pti.blocks:
            notes.append(f"zone {name}: no pagetypeinfo; every pageblock assumed Movable")
            continue
        counts = {_MT_NAMES[t]: c for t, c in zip(pti.types, pti.blocks[name]) if t in _MT_NAMES}
        nb = min(sum(counts.values()), last_pb - first_pb + 1)
        if nb <= 0:
            continue
        pbs = np.arange(first_pb, first_pb + nb)
        seg = np.full(nb * _PB_PAGES, PC_HOLE, dtype=np.uint8)
        s0, s1 = first_pb * _PB_PAGES, min((first_pb + nb) * _PB_PAGES, len(cls))
        seg[:s1 - s0] = cls[s0:s1]
        seg = seg.reshape(nb, _PB_PAGES)
        nfree = (seg == PC_FREE).sum(1)
        nres = ((seg == PC_RESERVED) | (seg == PC_HOLE)).sum(1)
        nmov = (seg == PC_MOVABLE).sum(1)
        nslab = (seg == PC_SLAB).sum(1)
        alloc = _PB_PAGES - nfree - nres
        nonmov = alloc - nmov
        score = np.where(alloc > 0, nonmov / np.maximum(alloc, 1), 0.0)
        # free blocks per pageblock and order
        bp, bo = blocks.get(name, (np.zeros(0, np.int64), np.zeros(0, np.int8)))
        hist = np.zeros((nb, _MAX_ORDER + 1), dtype=np.int64)
        rel = (bp >> _PB_ORDER) - first_pb
        inside = (rel >= 0) & (rel < nb)
        np.add.at(hist, (rel[inside], bo[inside].astype(np.int64)), 1)
        whole9 = hist[:, 9] > 0
        pair10 = np.zeros(nb, dtype=np.int64) - 1  # index of the other half of an order-10 block
        heads10 = np.nonzero(hist[:, 10] > 0)[0]
        heads10 = heads10[heads10 + 1 < nb]
        pair10[heads10] = heads10 + 1
        pair10[heads10 + 1] = heads10
        wholefree = whole9 | (pair10 >= 0)
        target = {mt: np.array(pti.free.get((name, t), [0] * (_MAX_ORDER + 1)), dtype=np.int64)
                  for t, mt in _MT_NAMES.items() if t in pti.types}
        left = dict(counts)
        mt_of = np.full(nb, -1, dtype=np.int64)

        def give(i: int, mt: int) -> None:
            mt_of[i] = mt
            left[mt] = left.get(mt, 0) - 1
            j = pair10[i]
            if j >= 0 and mt_of[j] < 0:
                mt_of[j] = mt
                left[mt] = left.get(mt, 0) - 1

        # 1. trace evidence; a non-movable type only while its free pages stay within pagetypeinfo's count
        #    of that type's free pages (weak evidence, a page of a per-CPU list allocated by a request of
        #    another type, would otherwise put free pages on Unmovable lists pagetypeinfo shows empty)
        room = {mt: int((target[mt] << np.arange(_MAX_ORDER + 1)).sum()) for mt in target}
        freep = (hist << np.arange(_MAX_ORDER + 1)[None, :]).sum(1)
        for pb, mt in sorted(hint_types.items()):
            i = pb - first_pb
            if 0 <= i < nb and mt_of[i] < 0 and left.get(mt, 0) > 0:
                if mt != 1 and mt in room:
                    if freep[i] > room[mt]:
                        continue
                    room[mt] -= int(freep[i])
                give(i, mt)
        # 2. wholly free pageblocks of non-movable types (pagetypeinfo's order-9/10 counts)
        nonmov_pbs = np.nonzero(score > 0.5)[0]
        for mt in (0, 2, 3, 4):
            if mt not in target:
                continue
            need10 = int(target[mt][10]) - int(sum(1 for i in heads10 if mt_of[i] == mt))
            need9 = int(target[mt][9]) - int(np.count_nonzero(whole9 & (mt_of == mt)))
            for need, units in ((need10, heads10), (need9, np.nonzero(whole9)[0])):
                units = np.array([u for u in units if mt_of[u] < 0], dtype=np.int64)
                if need <= 0 or not len(units) or left.get(mt, 0) <= 0:
                    continue
                if len(nonmov_pbs):
                    pos = np.searchsorted(nonmov_pbs, units)
                    d1 = np.abs(units - nonmov_pbs[np.clip(pos, 0, len(nonmov_pbs) - 1)])
                    d0 = np.abs(units - nonmov_pbs[np.clip(pos - 1, 0, len(nonmov_pbs) - 1)])
                    order = np.argsort(np.minimum(d0, d1), kind="stable")
                else:
                    order = np.arange(len(units))
                for u in units[order][:need]:
                    if left.get(mt, 0) > 0:
                        give(int(u), mt)
        # 3. the most non-movable pageblocks
        k = sum(max(0, left.get(mt, 0)) for mt in (0, 2, 3, 4))
        cand = np.nonzero((mt_of < 0) & ~wholefree)[0]
        rank = np.lexsort((cand, -nonmov[cand], -score[cand]))
        chosen = cand[rank[:k]]
        # 4. split them by matching free counts per order (orders 0-8)
        residual = {mt: target[mt][:9] - hist[mt_of == mt, :9].sum(0) for mt in target}
        pool = np.sort(chosen)
        slab_share = nslab / np.maximum(alloc, 1)
        for mt in (2, 3, 4):
            while left.get(mt, 0) > 0 and len(pool):
                r = residual[mt]
                gain = np.abs(r).sum() - np.abs(r[None, :] - hist[pool, :9]).sum(1)
                best = int(pool[np.lexsort((-slab_share[pool], -gain))[0]])
                pool = pool[pool != best]
                give(best, mt)
                residual[mt] = r - hist[best, :9]
        for i in pool.tolist():
            if mt_of[i] < 0:
                give(i, 0)
        rest = mt_of < 0
        mt_of[rest] = 1
        left[1] = left.get(1, 0) - int(rest.sum())
        off = {t: -c for t, c in left.items() if c}
        if off:
            names = {v: k for k, v in _MT_NAMES.items()}
            notes.append(f"zone {name}: pageblock types differ from pagetypeinfo's counts by "
                         + ", ".join(f"{names[t]} {d:+d}" for t, d in sorted(off.items())))
        pb_mt[pbs] = mt_of.astype(np.uint8)
        if any(int(target[mt][10]) for mt in (3, 4) if mt in target) or any(
                int(target[mt][9]) for mt in (3, 4) if mt in target):
            notes.append(f"zone {name}: free HighAtomic/Isolate blocks of order 9-10 exist; two such order-9 "
                         "buddies that the kernel keeps apart look like one order-10 block in kpageflags")
    return pb_mt, notes


def trace_pageblock_types(events) -> dict[int, int]:
    """Pageblock types the trace shows (``{pageblock: migratetype}``).

    A page comes off the free list (buddy or per-CPU) of its pageblock's type,
    and a freed page goes to the per-CPU list of its pageblock's type.  The
    evidence, strongest first (per pageblock: the strongest kind present, then
    its most frequent type, then the earliest):

    0. ``mm_page_pcpu_drain`` prints the pageblock's type
       (``get_pfnblock_migratetype`` in ``free_pcppages_bulk``), and
       ``mm_page_alloc_zone_locked`` the type of the buddy list;
    1. an ``mm_page_alloc`` of a page the trace saw freed just before: it sat on
       the per-CPU list of its pageblock's type and the request took it from the
       list of its own type;
    2. an ``mm_page_alloc`` of a page already on a per-CPU list at the start:
       weaker, since a page stolen by a refill of another type sits on that
       type's list while its pageblock keeps its type.

    Pageblocks that a fallback (``mm_page_alloc_extfrag``) touched are left out:
    their type changed during the trace.
    """
    import polars as pl

    from kmemdes.trace.schema import EventKind as E

    K_ALLOC, K_FREE, K_BATCHED = int(E.MM_PAGE_ALLOC), int(E.MM_PAGE_FREE), int(E.MM_PAGE_FREE_BATCHED)
    K_ZL, K_DRAIN, K_EXT = int(E.MM_PAGE_ALLOC_ZONE_LOCKED), int(E.MM_PAGE_PCPU_DRAIN), int(E.MM_PAGE_ALLOC_EXTFRAG)
    ext = events.filter((pl.col("kind") == K_EXT) & (pl.col("pfn") >= 0))
    changed = set((ext["pfn"] // _PB_PAGES).to_list()) if ext.height else set()
    ev = (events.with_row_index("seq")
          .filter(pl.col("pfn").is_not_null() & (pl.col("pfn") >= 0)
                  & pl.col("kind").is_in([K_ALLOC, K_FREE, K_BATCHED, K_ZL, K_DRAIN]))
          .sort("pfn", "seq")
          .with_columns(prev=pl.col("kind").shift(1).over("pfn")))
    ev = ev.filter(pl.col("migratetype").is_not_null()).with_columns(
        rank=pl.when(pl.col("kind").is_in([K_ZL, K_DRAIN]) & (pl.col("migratetype") <= 3)).then(0)
        .when((pl.col("kind") == K_ALLOC) & (pl.col("migratetype") < 3)
              & pl.col("prev").is_in([K_FREE, K_BATCHED])).then(1)
        .when((pl.col("kind") == K_ALLOC) & (pl.col("migratetype") < 3) & pl.col("prev").is_null()).then(2)
        .otherwise(None),
        pb=pl.col("pfn") // _PB_PAGES).filter(pl.col("rank").is_not_null())
    if not ev.height:
        return {}
    best = (ev.filter(pl.col("rank") == pl.col("rank").min().over("pb"))
            .group_by("pb", "migratetype").agg(n=pl.len(), first=pl.col("seq").min())
            .sort("pb", "n", "first", descending=[False, True, False])
            .unique(subset="pb", keep="first", maintain_order=True))
    return {int(pb): int(mt) for pb, mt in best.select("pb", "migratetype").iter_rows() if pb not in changed}


def allocated_migratetypes(cls: np.ndarray, pb_mt: np.ndarray) -> np.ndarray:
    """Per pfn the model's ``page_mt`` of the allocated pages: Movable for movable pages (what
    ``prep_move_freepages_block`` counts as movable), Reclaimable for slab pages in Reclaimable
    pageblocks, Unmovable for the rest; ``PAGE_RESERVED`` (0xFE) for reserved pages and holes,
    ``PAGE_FREE`` (0xFF) for free pages."""
    blk = np.repeat(pb_mt, _PB_PAGES)[:len(cls)]
    out = np.zeros(len(cls), dtype=np.uint8)
    out[cls == PC_MOVABLE] = 1
    out[(cls == PC_SLAB) & (blk == 2)] = 2
    out[(cls == PC_RESERVED) | (cls == PC_HOLE)] = 0xFE
    out[cls == PC_FREE] = 0xFF
    return out


_NEVER = np.iinfo(np.int64).max


def trace_marks(events) -> list[tuple[int, str]]:
    """The trace's markers (``tracing_mark_write`` / ``print``) as (timestamp, text), in file order:
    ``kmemdes capture`` marks when it read each snapshot (:func:`start_read_ends`, :func:`end_read_pfns`)."""
    import polars as pl

    from kmemdes.trace.schema import EventKind as E

    if "args" not in events.columns:
        return []
    m = events.filter((pl.col("kind") == int(E.MARKER)) & pl.col("ts").is_not_null() & pl.col("args").is_not_null())
    return list(zip(m["ts"].to_list(), m["args"].to_list()))


def start_read_ends(pfns, marks: list[tuple[int, str]]) -> np.ndarray:
    """When ``before/kpageflags`` had read each of ``pfns`` (the events' clock): ``kmemdes capture``
    marks ``kpageflags_before``, then ``kpageflags_read pfn=N`` before each 4 MiB of /proc/kpageflags
    (read in pfn order), and the next marker after the last chunk (``capture_start``) follows the
    read; a pfn's flags were read by the marker after its chunk's.  Without chunk markers (captures
    before they were written) every pfn was read by the first marker after ``kpageflags_before``;
    without that marker the time is unknown (the largest int64: "after everything").

    >>> marks = [(10, "kpageflags_before"), (11, "kpageflags_read pfn=0"), (20, "kpageflags_read pfn=100"),
    ...          (30, "capture_start name=x"), (90, "kpageflags_after")]
    >>> start_read_ends([5, 150], marks).tolist()
    [20, 30]
    >>> start_read_ends([5, 150], [(10, "kpageflags_before"), (30, "capture_start name=x")]).tolist()
    [30, 30]
    """
    pfns = np.asarray(pfns, dtype=np.int64)
    before = [i for i, (_, text) in enumerate(marks) if text == "kpageflags_before"]
    if not before:
        return np.full(len(pfns), _NEVER, dtype=np.int64)
    chunks: list[tuple[int, int]] = []
    end = _NEVER
    for t, text in marks[before[0] + 1:]:
        if text.startswith("kpageflags_read pfn="):
            chunks.append((int(text.split("=", 1)[1]), t))
        else:
            end = t
            break
    if not chunks:
        return np.full(len(pfns), end, dtype=np.int64)
    first = np.array([c[0] for c in chunks], dtype=np.int64)
    ends = np.array([c[1] for c in chunks[1:]] + [end], dtype=np.int64)
    return ends[np.maximum(np.searchsorted(first, pfns, side="right") - 1, 0)]


def node_from_kpageflags(snap, kpf: np.ndarray, policy=None, hints=None, cpus: Optional[int] = None,
                         evidence: Optional[dict] = None, marks: Optional[list] = None):
    """A model state with the exact free-page layout of a kpageflags snapshot.

    Every free buddy block at its pfn and order (:func:`buddy_blocks`) on the
    list of its pageblock's type; pageblock types from pagetypeinfo's counts
    (:func:`assign_pageblock_types`, with ``evidence`` — e.g.
    :func:`trace_pageblock_types` — and ``hints.pageblock_types`` first); allocated pages marked with a migratetype
    guessed from their flags; pages the trace shows on per-CPU lists at its
    start (``hints.pcp_blocks``, when they are not free in kpageflags) on those
    lists.  Returns ``(node, notes, info)``; ``info`` holds the reconstructed
    free block counts per zone and order (``nr_free``) and the page class
    counts.

    ``marks``: the trace's markers (:func:`trace_marks`).  kpageflags is read while tracing runs,
    so a page it shows free whose first trace event is a free was in use when the trace started if
    that free came before the read reached the page (:func:`start_read_ends`); a free after it is of
    a page that was free at the start and was taken without an allocation event meanwhile:
    compaction's free scanner isolates free pages and takes migration targets that way, and its
    release of the unused ones (or reclaim of a target) is the first event naming them.  The other way
    round, a page it shows taken whose first trace event takes it off the buddy lists (a pcp refill, a
    buddy allocation: ``hints.taken``) was free at the start when that take came before the read reached
    it (on the captures of 7 December, 11 k Normal pages: ``kmemdes capture``'s own allocations while it
    reads kpageflags).
    """
    from kmemdes.mm.mm_init import node_from_page_layout

    notes_busy = []
    if hints is not None and len(hints.busy):
        ok = hints.busy < len(kpf)
        busy, busy_ts = hints.busy[ok], (hints.busy_ts[ok] if len(hints.busy_ts) == len(ok) else None)
        free = kpf_bit(kpf[busy], KPF_BUDDY)
        busy = busy[free]
        if busy_ts is not None and marks:
            early = busy_ts[free] < start_read_ends(busy, marks)
            if not early.all():
                notes_busy.append(f"{int((~early).sum()):,} pages free in kpageflags that the trace frees after "
                                  "the read reached them (taken meanwhile without an allocation event, as "
                                  "compaction's free scanner takes pages): free at its start")
            busy = busy[early]
        if len(busy):
            kpf = kpf.copy()
            kpf[busy] &= ~np.uint64(1 << KPF_BUDDY)
            notes_busy.append(f"{len(busy):,} pages free in kpageflags that the trace frees first: in use at its "
                              "start (kpageflags is read while tracing runs)")
    if hints is not None and len(hints.taken) and len(hints.taken_ts) == len(hints.taken) and marks:
        # the other way round: a page whose first event takes it off the buddy lists (a refill or a buddy
        # allocation) was free when the trace started; kpageflags shows it taken when the take came before
        # the read reached it (the capture's own allocations while it reads kpageflags are such takes)
        ok = hints.taken < len(kpf)
        taken, taken_ts = hints.taken[ok], hints.taken_ts[ok]
        shown = ~kpf_bit(kpf[taken], KPF_BUDDY) & ~kpf_bit(kpf[taken], KPF_NOPAGE)
        early = shown & (taken_ts < start_read_ends(taken, marks))
        if early.any():
            kpf = kpf.copy()
            kpf[taken[early]] = np.uint64(1 << KPF_BUDDY)
            notes_busy.append(f"{int(early.sum()):,} pages taken in kpageflags that the trace takes off the buddy "
                              "lists before the read reached them: free at its start")
    cls = page_classes(kpf)
    blocks = zone_free_blocks(kpf, snap)
    ev = dict(hints.pageblock_types) if hints is not None else {}
    ev.update(evidence or {})
    pb_mt, notes = assign_pageblock_types(cls, blocks, snap, ev)
    page_mt = allocated_migratetypes(cls, pb_mt)
    fp = np.concatenate([b[0] for b in blocks.values()]) if blocks else np.zeros(0, np.int64)
    fo = np.concatenate([b[1] for b in blocks.values()]) if blocks else np.zeros(0, np.int8)
    pcp = hints.pcp_blocks if hints is not None else ()
    node, more = node_from_page_layout(snap, fp.tolist(), fo.tolist(), page_mt, pb_mt, cpus=cpus, policy=policy,
                                       pcp_blocks=pcp)
    notes = notes_busy + notes + more
    info = {"nr_free": {z: _nr_free(o) for z, (_, o) in blocks.items()},
            "page_classes": {PC_NAMES[c]: int(n) for c, n in enumerate(np.bincount(cls, minlength=len(PC_NAMES)))}}
    notes.append("initial free-page layout from /proc/kpageflags (exact); order inside each free list unknown: "
                 "lowest pfn first")
    return node, notes, info


# ------------------------------------------------------------------------------ layout agreement
def _touches(kind, pfn, order) -> tuple[np.ndarray, np.ndarray]:
    """The pfns of each page event (:func:`touched_pfns`) and the row each comes from."""
    from kmemdes.trace.schema import EventKind as E

    kinds = [int(E.MM_PAGE_ALLOC), int(E.MM_PAGE_FREE), int(E.MM_PAGE_FREE_BATCHED),
             int(E.MM_PAGE_ALLOC_ZONE_LOCKED), int(E.MM_PAGE_PCPU_DRAIN), int(E.MM_PAGE_ALLOC_EXTFRAG)]
    kind = np.asarray(kind, dtype=np.int64)
    pfn = np.asarray(pfn, dtype=np.int64)
    order = np.asarray(order, dtype=np.int64)
    m = np.isin(kind, kinds) & (pfn >= 0) & (order >= 0) & (order <= _MAX_ORDER)
    rows = np.nonzero(m)[0]
    p, n = pfn[m], np.int64(1) << order[m]
    if not len(p):
        return np.zeros(0, np.int64), rows
    starts = np.repeat(p - np.concatenate([[0], np.cumsum(n)[:-1]]), n)
    return starts + np.arange(int(n.sum()), dtype=np.int64), np.repeat(rows, n)


def touched_pfns(kind, pfn, order) -> np.ndarray:
    """Every pfn a page event touched (``mm_page_alloc``, ``_free``, ``_free_batched``,
    ``_alloc_zone_locked``, ``_pcpu_drain``, ``_alloc_extfrag``: pages [pfn, pfn + 2^order)), sorted, unique."""
    return np.unique(_touches(kind, pfn, order)[0])


def end_read_pfns(kind, pfn, order, ts, marks: list[tuple[int, str]]) -> np.ndarray:
    """The pfns a page event touched after ``after/kpageflags`` had started reading them.

    ``marks``: the trace's markers (timestamp in the events' clock, text).  ``kmemdes capture``
    writes ``kpageflags_after`` before the end snapshots and ``kpageflags_read pfn=N`` before each
    4 MiB read of /proc/kpageflags (fs/proc/page.c reads pfns in order), so pfn p was read after the
    last chunk marker at or below it.  Without chunk markers every pfn counts as read from
    ``kpageflags_after`` on; without that marker (tracing stopped before after/) none is.

    >>> from kmemdes.trace.schema import EventKind as E
    >>> a = int(E.MM_PAGE_ALLOC)
    >>> marks = [(10, "kpageflags_after"), (20, "kpageflags_read pfn=0"), (30, "kpageflags_read pfn=100")]
    >>> end_read_pfns([a, a, a], [5, 150, 160], [0, 0, 1], [25, 25, 35], marks).tolist()
    [5, 160, 161]
    """
    after = [t for t, text in marks if text == "kpageflags_after"]
    if not after:
        return np.zeros(0, np.int64)
    chunks = sorted((int(text.split("=", 1)[1]), t) for t, text in marks
                    if t >= after[-1] and text.startswith("kpageflags_read pfn="))
    ts = np.asarray(ts, dtype=np.int64)
    late = np.nonzero(ts >= after[-1])[0]
    pfns, rows = _touches(np.asarray(kind)[late], np.asarray(pfn)[late], np.asarray(order)[late])
    when = ts[late][rows]
    if chunks:
        first = np.array([c[0] for c in chunks], dtype=np.int64)
        start = np.array([c[1] for c in chunks], dtype=np.int64)
        read_at = start[np.maximum(np.searchsorted(first, pfns, side="right") - 1, 0)]
        pfns = pfns[when >= read_at]
    return np.unique(pfns)


def model_buddy_mask(node) -> np.ndarray:
    """Boolean per pfn: the page is in a free buddy block of the model (what ``KPF_BUDDY`` shows)."""
    lid = np.frombuffer(node.lid, dtype=np.uint16)
    lbo = np.array(list(node.l_buddy_order) + [-1] * (0x10000 - len(node.l_buddy_order)), dtype=np.int64)
    heads = np.nonzero(lid != 0xFFFF)[0]
    bo = lbo[lid[heads]]
    heads, bo = heads[bo >= 0], bo[bo >= 0]
    d = np.zeros(node.max_pfn + 1, dtype=np.int32)
    np.add.at(d, heads, 1)
    np.add.at(d, heads + (np.int64(1) << bo), -1)
    return np.cumsum(d[:-1]) > 0


def _fit(a: np.ndarray, n: int, fill=False) -> np.ndarray:
    if len(a) >= n:
        return a[:n]
    return np.concatenate([a, np.full(n - len(a), fill, dtype=a.dtype)])


def layout_agreement(node, kpf_before: np.ndarray, kpf_after: np.ndarray, touched: np.ndarray,
                     end_read: Optional[np.ndarray] = None) -> dict:
    """How the model's end state (free in the buddy allocator or not, per pfn) matches ``after/kpageflags``.

    ``touched``: the pfns the trace touched (:func:`touched_pfns`).  ``end_read``: pfns the trace
    shows changing after their range of ``after/kpageflags`` had started being read
    (:func:`end_read_pfns`: whether the read saw them before or after is unknown); they are left out
    of the touched figures and counted as ``touched_during_end_read``.  Also given:
    the same share for a model that did nothing (``before`` vs ``after``), the
    share over every online pfn, and how many untouched pfns changed state
    between the two snapshots (changes the trace could not show: the moments
    between the snapshots and tracing, and the snapshots' own reading time).
    """
    n = node.max_pfn
    model = model_buddy_mask(node)
    kb = _fit(kpf_bit(kpf_before, KPF_BUDDY), n)
    ka = _fit(kpf_bit(kpf_after, KPF_BUDDY), n)
    online = np.repeat(np.frombuffer(node.pb_valid, dtype=np.uint8).astype(bool), _PB_PAGES)[:n]
    t = touched[(touched >= 0) & (touched < n)]
    nread = 0
    if end_read is not None and len(end_read):
        keep = ~np.isin(t, end_read)
        nread = int((~keep).sum())
        t = t[keep]
    eq_t = model[t] == ka[t]
    tmask = np.zeros(n, dtype=bool)
    tmask[t] = True
    eq_all = (model == ka) & online
    nt = len(t)
    share = lambda a, b: (a / b) if b else None  # noqa: E731
    return {
        "touched_pfns": nt,
        "touched_equal": int(eq_t.sum()),
        "touched_share": share(int(eq_t.sum()), nt),
        "touched_model_free_kernel_not": int((model[t] & ~ka[t]).sum()),
        "touched_kernel_free_model_not": int((~model[t] & ka[t]).sum()),
        "touched_baseline_share": share(int((kb[t] == ka[t]).sum()), nt),
        "touched_during_end_read": nread,
        "online_pfns": int(online.sum()),
        "all_equal": int(eq_all.sum()),
        "all_share": share(int(eq_all.sum()), int(online.sum())),
        "all_baseline_share": share(int(((kb == ka) & online).sum()), int(online.sum())),
        "untouched_changed": int(((kb != ka) & ~tmask & online).sum()),
        "touched_changed": int((kb[t] != ka[t]).sum()),
        "model_free_pages": int(model.sum()),
        "kernel_free_pages": int(ka.sum()),
    }


# --------------------------------------------------------------------------- placement agreement
class _Journal:
    """A write-logging view of a flat array (array / bytearray): item and slice writes are undone by rollback."""

    __slots__ = ("a", "log")

    def __init__(self, a):
        self.a = a
        self.log: list = []

    def __getitem__(self, k):
        return self.a[k]

    def __setitem__(self, k, v):
        self.log.append((k, self.a[k]))
        self.a[k] = v

    def __len__(self) -> int:
        return len(self.a)

    def count(self, *args) -> int:
        return self.a.count(*args)

    def find(self, *args) -> int:
        return self.a.find(*args)

    def rollback(self) -> None:
        a = self.a
        for k, old in reversed(self.log):
            a[k] = old
        self.log.clear()


class PlacementPeek:
    """What ``node.alloc_pages(gfp, order, cpu)`` would return now, leaving the node exactly as it was.

    The model's own allocation path runs (``__alloc_pages`` and everything it
    calls: pcp pop or refill, ``__rmqueue_smallest``, claim/steal, watermarks,
    highatomic reserve), with the node's per-page arrays (``nxt``, ``prv``,
    ``lid``, ``page_mt``, ``alloc_order``, ``pb_mt``, ``pb_valid``) swapped for
    write-logging journals, and its list heads, counters, zone and per-CPU
    fields copied before; afterwards every write is undone in reverse order and
    the copies are put back in place.  Cost: one allocation plus a copy of a few
    hundred list heads, so peeking at every allocation of a trace stays cheap.
    (Reclaim and compaction models must not be attached: their effects are
    not journaled.)
    """

    ARRAYS = ("nxt", "prv", "lid", "page_mt", "alloc_order", "pb_mt", "pb_valid")
    _FIXED = frozenset({"arch", "max_pfn", "cpus", "policy", "zones", "nr_zone_types", "l_order", "l_mt", "l_zone",
                        "l_buddy_order", "l_pcp", "pb_zone", "reclaim", "compaction", "rmap", "on_wakeup_kswapd",
                        "on_stall", "on_stall_end", "debug", "_zonelists", "_legacy_fallback"})

    def __init__(self, node):
        if node.reclaim is not None or node.compaction is not None:
            raise ValueError("PlacementPeek: detach the reclaim and compaction models first")
        self.node = node

    def _save(self):
        node = self.node
        saved = []
        for k, v in vars(node).items():
            if k in self.ARRAYS or k in self._FIXED:
                continue
            if isinstance(v, list):
                saved.append((k, v, list(v)))
            elif isinstance(v, dict):
                saved.append((k, v, dict(v)))
            else:
                saved.append((k, v, None))
        zones = []
        for z in node.zones:
            vals = []
            for s in z.__slots__:
                if s in ("node", "pcp", "name", "zone_type"):
                    continue
                v = getattr(z, s)
                vals.append((s, v, list(v) if isinstance(v, list) else None))
            zones.append((z, vals, [(p, dict(vars(p))) for p in z.pcp]))
        return saved, zones

    def _restore(self, state) -> None:
        node = self.node
        saved, zones = state
        for k, obj, copy in saved:
            if copy is None:
                setattr(node, k, obj)
            elif isinstance(copy, list):
                obj[:] = copy
                setattr(node, k, obj)
            else:
                obj.clear()
                obj.update(copy)
                setattr(node, k, obj)
        for z, vals, pcps in zones:
            for s, obj, copy in vals:
                if copy is not None:
                    obj[:] = copy
                setattr(z, s, obj)
            for p, d in pcps:
                vars(p).update(d)

    def __call__(self, gfp: int, order: int, cpu: int) -> tuple[int, int]:
        """(pfn or -1, ``PATH_*`` of the model's decision)."""
        node = self.node
        state = self._save()
        swapped = []
        for name in self.ARRAYS:
            a = getattr(node, name)
            j = _Journal(a)
            setattr(node, name, j)
            swapped.append((name, a, j))
        try:
            pfn = node.alloc_pages(gfp, order, cpu)
            path = node.last_path
        finally:
            for name, a, j in swapped:
                setattr(node, name, a)
                j.rollback()
            self._restore(state)
        return pfn, path


_KPATHS = ("pcp", "pcp_refill", "buddy", "fallback")


def _kernel_groups(kind: np.ndarray, cpu: np.ndarray, refill: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each ``mm_page_alloc`` (index into the event arrays): the index where its decision started and
    the kernel's path.

    The kernel prints ``mm_page_alloc_zone_locked`` (refill or buddy take) and
    ``mm_page_alloc_extfrag`` (fallback) before the ``mm_page_alloc`` they serve,
    on the same CPU: the decision point of an allocation is the first of the
    run of such events right before it in its CPU's sequence of page events.
    Path codes index ``_KPATHS``: 0 pcp hit, 1 pcp refill, 2 buddy, 3 fallback.
    """
    from kmemdes.trace.schema import EventKind as E

    K_ALLOC, K_ZL, K_EXT = int(E.MM_PAGE_ALLOC), int(E.MM_PAGE_ALLOC_ZONE_LOCKED), int(E.MM_PAGE_ALLOC_EXTFRAG)
    page_kinds = [K_ALLOC, int(E.MM_PAGE_FREE), int(E.MM_PAGE_FREE_BATCHED), K_ZL, K_EXT, int(E.MM_PAGE_PCPU_DRAIN)]
    allocs = np.nonzero(kind == K_ALLOC)[0]
    decision = allocs.copy()
    kpath = np.zeros(len(allocs), dtype=np.int8)
    where = {int(a): i for i, a in enumerate(allocs)}
    page = np.isin(kind, page_kinds)
    for c in np.unique(cpu[page]):
        idx = np.nonzero(page & (cpu == c))[0]
        k = kind[idx]
        pre = (k == K_ZL) | (k == K_EXT)
        pos = np.arange(len(idx))
        last_nonpre = np.maximum.accumulate(np.where(~pre, pos, -1))
        apos = np.nonzero(k == K_ALLOC)[0]
        start = np.where(apos > 0, last_nonpre[np.maximum(apos - 1, 0)] + 1, 0)
        for a, s in zip(apos.tolist(), start.tolist()):
            i = where[int(idx[a])]
            if s < a:
                grp = idx[s:a]
                decision[i] = idx[s]
                gk = kind[grp]
                if (gk == K_EXT).any():
                    kpath[i] = 3
                elif (refill[grp] > 0).any():
                    kpath[i] = 1
                else:
                    kpath[i] = 2
    return allocs, decision, kpath


def _quantiles(x: np.ndarray) -> dict:
    if not len(x):
        return {}
    q = np.percentile(x, [50, 90, 99])
    return {"p50": float(q[0]), "p90": float(q[1]), "p99": float(q[2]), "max": int(x.max())}


def frees_at_batched_line(events):
    """Move each ``mm_page_free`` that an ``mm_page_free_batched`` of the same pfn follows to that line.

    ``free_unref_folios`` prints ``mm_page_free`` for the whole batch first (in
    ``free_pages_prepare``), then, page by page, ``mm_page_free_batched`` right
    before ``free_frozen_page_commit`` puts the page at the head of the per-CPU
    list (KERNEL.md 15).  The replay counts the pair as one free at the first
    line; for the order of pcp lists (which page the next allocation pops) the
    second line is when it happened.  Returns the events and the number of
    frees moved.
    """
    import polars as pl

    from kmemdes.trace.schema import EventKind as E

    K_FREE, K_BATCHED = int(E.MM_PAGE_FREE), int(E.MM_PAGE_FREE_BATCHED)
    ev = events.with_row_index("_seq")
    pe = ev.filter(pl.col("kind").is_in([K_FREE, K_BATCHED]) & (pl.col("pfn") >= 0)).sort("pfn", "_seq")
    pairs = pe.with_columns(prev_kind=pl.col("kind").shift(1), prev_pfn=pl.col("pfn").shift(1),
                            prev_seq=pl.col("_seq").shift(1), prev_order=pl.col("order").shift(1)).filter(
        (pl.col("kind") == K_BATCHED) & (pl.col("prev_kind") == K_FREE) & (pl.col("prev_pfn") == pl.col("pfn")))
    if not pairs.height:
        return events, 0
    moved = pairs.select(pl.col("_seq"), pl.col("prev_order").alias("_order"))
    out = (ev.filter(~pl.col("_seq").is_in(pairs["prev_seq"].implode()))
           .join(moved, on="_seq", how="left")
           .with_columns(kind=pl.when(pl.col("_order").is_not_null()).then(pl.lit(K_FREE, ev.schema["kind"]))
                         .otherwise(pl.col("kind")),
                         order=pl.when(pl.col("_order").is_not_null()).then(pl.col("_order"))
                         .otherwise(pl.col("order")))
           .sort("_seq").drop("_seq", "_order"))
    return out, pairs.height


def _resync_pcp(node, cpu: int, order: int, mt: int, kernel_pfn: int, refill: bool) -> int:
    """Drop from the model's per-CPU list what the kernel's LIFO pop shows was not on its list.

    ``rmqueue_pcplist`` pops the head, and refills only an empty list: so when
    the kernel pops ``kernel_pfn`` from below the model's head, the blocks above
    it had left the kernel's list without an event (the bulk allocator takes
    pages from pcp lists untraced, KERNEL.md 4), and when it refills, nothing was
    on its list.  Those blocks are taken off the model's list and marked in use
    (allocated with the list's type).  Returns the pages dropped.
    """
    from kmemdes.mm.page_alloc import NOLIST, PAGE_ALLOC_COSTLY_ORDER, PAGEBLOCK_ORDER

    if not (order <= PAGE_ALLOC_COSTLY_ORDER or order == PAGEBLOCK_ORDER) or not 0 <= kernel_pfn < node.max_pfn:
        return 0
    zone = node.pb_zone[kernel_pfn >> _PB_ORDER]
    if zone is not None and kernel_pfn - zone.start_pfn >= zone.spanned:  # a pageblock of two zones (x86-32)
        zone = node.zone_of(kernel_pfn)
    if zone is None or not zone.pcp:
        return 0
    pcp = zone.pcp[cpu % node.cpus]
    lid = pcp.lid0 + node.order_to_pindex(mt if mt < 3 else 1, order)
    if not refill and node.lid[kernel_pfn] != lid:
        return 0
    drop = []
    p = node.lhead[lid]
    while p >= 0 and p != kernel_pfn:
        drop.append(p)
        p = node.nxt[p]
    if not refill and p != kernel_pfn:
        return 0
    size = 1 << order
    fill = bytes((mt if mt < 3 else 1,)) * size
    for p in drop:
        node._list_del(p)
        pcp.count -= size
        node.page_mt[p:p + size] = fill
    assert all(node.lid[p] == NOLIST for p in drop)
    return len(drop) * size


def prepared_events(events, batched_line: bool = True):
    """The trace's rows as the mirror replay takes them: sanitized, frees moved to their batched line
    (:func:`frees_at_batched_line`), then slimmed and numbered, in that order, because the kernel ops
    (compaction, vmscan) are keyed by the final row numbers.  Returns ``(events, by_type, ops,
    sanitized, frees_moved)``."""
    from kmemdes.sim.replay import slim_events
    from kmemdes.sim.sanitize import sanitize_events

    events, fix = sanitize_events(events)
    nmoved = 0
    if batched_line:
        events, nmoved = frees_at_batched_line(events)
    events, by_type, ops = slim_events(events)
    for name, n in fix.dropped_by_event.items():
        by_type[name] = by_type.get(name, 0) + n
    if nmoved:  # the mm_page_free lines merged into their batched line are events of the trace too
        by_type["mm_page_free"] = by_type.get("mm_page_free", 0) + nmoved
    return events, by_type, ops, fix, nmoved


def placement_replay(capture: str | Path, kpageflags: Optional[str | Path] = None, policy=None,
                     peek: bool = True):
    """Mirror replay of a capture from its exact ``before/kpageflags`` layout, asking the model before
    each page allocation where it would place it.

    Returns a dict: ``node`` (the end state), ``notes``, ``info`` (start
    layout facts), ``replay`` (the :class:`~kmemdes.sim.replay.Replayer`),
    ``touched`` (pfns), ``end_read`` (:func:`end_read_pfns`), and, with
    ``peek``, per allocation: ``kernel_pfn``,
    ``model_pfn``, ``model_path``, ``kernel_path``, ``order``, ``start_pcp``
    (the kernel's page sat on a per-CPU list at the start, which only the
    trace itself shows).
    """
    from kmemdes.sim.hints import start_hints
    from kmemdes.sim.replay import READ_COLUMNS, Replayer
    from kmemdes.trace.reader import read_trace
    from kmemdes.trace.schema import EventKind as E
    from kmemdes.trace.snapshot import snapshot_from_texts

    cap = Path(capture)
    kpath = Path(kpageflags) if kpageflags else cap / "before" / "kpageflags.zst"
    if not kpath.exists():
        raise KmemdesError(f"{cap}: no {kpath.name} in before/ (capture with --kpageflags)")
    trace = read_trace(cap, columns=READ_COLUMNS)  # only what a replay reads (the strings are GBs)
    if not trace.meta.get("before"):
        raise KmemdesError(f"{cap}: no before/ snapshot")
    marks = trace_marks(trace.events)
    events, by_type, comp, fix, nmoved = prepared_events(trace.events, batched_line=peek)
    trace.events = None
    snap = snapshot_from_texts(trace.meta["before"], cap / "before")
    hints = start_hints(events)
    node, notes, info = node_from_kpageflags(snap, read_kpageflags(kpath), policy=policy, hints=hints,
                                             evidence=trace_pageblock_types(events), marks=marks)
    if nmoved:
        notes.append(f"{nmoved} batched frees applied at their mm_page_free_batched line (where "
                     "free_unref_folios puts the page on the per-CPU list)")
    r = Replayer(node, events, mode="mirror", events_by_type=by_type, kernel_ops=comp, window=None, sanitized=fix)
    kind = np.asarray(r.c_kind, dtype=np.int64)
    cpu = np.asarray(r.c_cpu, dtype=np.int64)
    pfn = np.asarray(r.c_pfn, dtype=np.int64)
    order = np.asarray(r.c_order, dtype=np.int64)
    out = {"node": node, "notes": notes, "info": info, "replay": r, "touched": touched_pfns(kind, pfn, order),
           "end_read": end_read_pfns(kind, pfn, order, r.c_t, [(t - r.t0, text) for t, text in marks])}
    if not peek:
        r._mirror(0, r.n)
        return out
    refill = np.zeros(len(kind), dtype=np.int8)
    for i, row in r.rare.items():
        if kind[i] == int(E.MM_PAGE_ALLOC_ZONE_LOCKED):
            refill[i] = 1 if row[0] else 0
    allocs, decision, kp = _kernel_groups(kind, cpu, refill)
    # pages on pcp lists at the start: the first event on them is this allocation (their order
    # on the lists comes from the trace itself, so these predictions are reported apart)
    pcp_start = {p for p, _, _, _ in hints.pcp_blocks}
    first_touch: dict[int, int] = {}
    page_ev = np.nonzero(np.isin(kind, [int(E.MM_PAGE_ALLOC), int(E.MM_PAGE_FREE), int(E.MM_PAGE_FREE_BATCHED),
                                        int(E.MM_PAGE_ALLOC_ZONE_LOCKED), int(E.MM_PAGE_PCPU_DRAIN)]) & (pfn >= 0))[0]
    for i in page_ev[::-1].tolist():
        first_touch[int(pfn[i])] = i
    start_pcp = np.array([int(pfn[a]) in pcp_start and first_touch.get(int(pfn[a])) == a for a in allocs.tolist()],
                         dtype=bool)
    model_pfn = np.full(len(allocs), -2, dtype=np.int64)  # -2: not asked (the kernel failed it)
    model_path = np.full(len(allocs), -1, dtype=np.int8)
    gfp = r.c_gfp
    ask = PlacementPeek(node)
    seq = np.argsort(decision, kind="stable")
    pos = 0
    dropped = 0
    for i in seq.tolist():
        d = int(decision[i])
        if d > pos:
            r._mirror(pos, d)
            pos = d
        a = int(allocs[i])
        if pfn[a] < 0:
            continue
        mp, path = ask(int(gfp[a]), int(order[a]), int(cpu[a]))
        model_pfn[i] = mp
        model_path[i] = path
        if kp[i] <= 1:
            dropped += _resync_pcp(node, int(cpu[a]), int(order[a]), int(r.c_mt[a]), int(pfn[a]), kp[i] == 1)
    r._mirror(pos, r.n)
    if dropped:
        notes.append(f"{dropped} pages dropped from the model's per-CPU lists where the kernel's pops and refills "
                     "show they had left its lists untraced (bulk allocations)")
    out["pcp_dropped_pages"] = dropped
    out.update(kernel_pfn=pfn[allocs], model_pfn=model_pfn, model_path=model_path, kernel_path=kp,
               order=order[allocs], start_pcp=start_pcp)
    return out


def placement_agreement(res: dict, node) -> dict:
    """Summary of :func:`placement_replay`'s per-allocation answers."""
    from kmemdes.mm.page_alloc import PATH_NAMES

    kp, mp = res["kernel_pfn"], res["model_pfn"]
    asked = mp != -2
    main = asked & ~res["start_pcp"]
    hit = (kp == mp)

    def part(m: np.ndarray) -> dict:
        n = int(m.sum())
        k = int((hit & m).sum())
        return {"n": n, "matched": k, "share": (k / n) if n else None}

    out = part(main)
    out["by_kernel_path"] = {name: part(main & (res["kernel_path"] == i)) for i, name in enumerate(_KPATHS)
                             if (main & (res["kernel_path"] == i)).any()}
    out["by_order"] = {str(o): part(main & (res["order"] == o)) for o in np.unique(res["order"][main]).tolist()}
    out["by_model_path"] = {PATH_NAMES[p]: part(main & (res["model_path"] == p))
                            for p in np.unique(res["model_path"][main]).tolist() if p >= 0}
    miss = main & ~hit
    failed = miss & (mp < 0)
    ok = miss & (mp >= 0)
    d = np.abs(mp[ok] - kp[ok])
    pb_same = (mp[ok] >> _PB_ORDER) == (kp[ok] >> _PB_ORDER)
    zone_same = np.array([node.zone_of(int(a)) is node.zone_of(int(b)) for a, b in zip(mp[ok], kp[ok])], dtype=bool) \
        if ok.any() else np.zeros(0, bool)
    out["misses"] = {"n": int(miss.sum()), "model_failed": int(failed.sum()),
                     "same_pageblock_share": float(pb_same.mean()) if len(d) else None,
                     "same_zone_share": float(zone_same.mean()) if len(d) else None,
                     "distance_pages": _quantiles(d)}
    out["start_pcp"] = part(asked & res["start_pcp"])
    out["all"] = part(asked)
    out["kernel_failed"] = int((~asked).sum())
    out["method"] = ("mirror replay from the exact before/kpageflags layout; before each mm_page_alloc (at the "
                     "first zone_locked/extfrag line of its group on its CPU) the model runs alloc_pages on the "
                     "synchronised state and is rolled back; then the kernel's choice is applied")
    return out


# ------------------------------------------------------------------------------- validation
def _zone_diffs(model: dict, kernel_text: Optional[str], path: str) -> Optional[dict]:
    from kmemdes.trace.snapshot import parse_buddyinfo

    if kernel_text is None:
        return None
    out = {}
    for z in parse_buddyinfo(kernel_text, path):
        m = model.get(z.zone, [0] * (_MAX_ORDER + 1))
        out[z.zone] = {"model": m, "kernel": list(z.nr_free), "diff": [a - b for a, b in zip(m, z.nr_free)],
                       "free_pages_diff": sum((a - b) << o for o, (a, b) in enumerate(zip(m, z.nr_free)))}
    return out


def kpageflags_pair(capture: str | Path) -> Optional[tuple[Path, Path]]:
    """``(before/kpageflags.zst, after/kpageflags.zst)`` of a capture, or None when it lacks either."""
    cap = Path(capture)
    b, a = cap / "before" / "kpageflags.zst", cap / "after" / "kpageflags.zst"
    return (b, a) if b.exists() and a.exists() else None


def kpageflags_validation(capture: str | Path, policy=None) -> dict:
    """The kpageflags part of ``kmemdes validate``: layout and placement agreement (see the module docstring).

    Keys: ``layout_agreement`` (:func:`layout_agreement`), ``placement_agreement``
    (:func:`placement_agreement`), ``kpageflags_start`` / ``kpageflags_end``
    (free blocks per zone and order reconstructed from ``before/`` and
    ``after/kpageflags`` against the buddyinfo read right after each; the
    difference is what the machine did while kpageflags was being read),
    ``kpageflags_notes``.
    """
    from kmemdes.trace.snapshot import read_text

    pair = kpageflags_pair(capture)
    if pair is None:
        raise KmemdesError(f"{capture}: no before/kpageflags.zst and after/kpageflags.zst "
                           "(capture with --kpageflags)")
    cap = Path(capture)
    res = placement_replay(cap, pair[0], policy=policy)
    node = res["node"]
    kb, ka = read_kpageflags(pair[0]), read_kpageflags(pair[1])
    out: dict = {"layout_agreement": layout_agreement(node, kb, ka, res["touched"], res["end_read"]),
                 "placement_agreement": placement_agreement(res, node)}

    def text(p: Path) -> Optional[str]:
        return read_text(p) if p.exists() else None

    out["kpageflags_start"] = {
        "after_kpageflags": _zone_diffs(res["info"]["nr_free"], text(cap / "before" / "buddyinfo_after_kpageflags"),
                                        str(cap / "before" / "buddyinfo_after_kpageflags")),
        "before_kpageflags": _zone_diffs(res["info"]["nr_free"], text(cap / "before" / "buddyinfo"),
                                         str(cap / "before" / "buddyinfo")),
    }
    from kmemdes.trace.snapshot import read_snapshot

    snap_after = read_snapshot(cap / "after")
    end = {z: _nr_free(o) for z, (_, o) in zone_free_blocks(ka, snap_after).items()}
    out["kpageflags_end"] = {
        "after_kpageflags": _zone_diffs(end, text(cap / "after" / "buddyinfo_after_kpageflags"),
                                        str(cap / "after" / "buddyinfo_after_kpageflags")),
        "before_kpageflags": _zone_diffs(end, text(cap / "after" / "buddyinfo"), str(cap / "after" / "buddyinfo")),
    }
    out["kpageflags_notes"] = list(res["notes"])
    out["kpageflags_replay_quirks"] = dict(sorted(res["replay"].stats.quirks.items()))
    return out


def _p(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def format_kpageflags(res: dict) -> str:
    """The kpageflags sections of ``kmemdes validate`` as text ('' when the result has none)."""
    la, pa = res.get("layout_agreement"), res.get("placement_agreement")
    if not la and not pa:
        return ""
    lines: list[str] = []
    if la:
        lines += ["", "layout agreement with after/kpageflags (per pfn: free in the buddy allocator or not)",
                  f"  pfns the trace touched: {la['touched_pfns']:,}; model = kernel for {_p(la['touched_share'])} "
                  f"(target 99%); a model that did nothing: {_p(la['touched_baseline_share'])}",
                  f"    model free, kernel not: {la['touched_model_free_kernel_not']:,}; kernel free, model not: "
                  f"{la['touched_kernel_free_model_not']:,}"
                  + (f"; left out, changed while after/kpageflags was read: {la['touched_during_end_read']:,}"
                     if la.get("touched_during_end_read") else ""),
                  f"  every online pfn ({la['online_pfns']:,}): {_p(la['all_share'])} (did nothing: "
                  f"{_p(la['all_baseline_share'])}); untouched pfns that changed between the snapshots "
                  f"(outside the trace): {la['untouched_changed']:,}"]
    if pa:
        lines += ["", "placement agreement (the model deciding each page allocation itself from the synchronised "
                      "state, policy mode)",
                  f"  {pa['n']:,} allocations: the kernel's pfn for {_p(pa['share'])}"]
        parts = [f"{k} {v['n']:,} {_p(v['share'])}" for k, v in pa.get("by_kernel_path", {}).items()]
        if parts:
            lines.append("    by kernel path: " + ", ".join(parts))
        parts = [f"{k}: {v['n']:,} {_p(v['share'])}" for k, v in pa.get("by_order", {}).items()]
        if parts:
            lines.append("    by order: " + ", ".join(parts))
        m = pa["misses"]
        if m["n"]:
            d = m["distance_pages"]
            lines.append(f"  misses: {m['n']:,} (model failed {m['model_failed']:,}); same pageblock "
                         f"{_p(m['same_pageblock_share'])}, same zone {_p(m['same_zone_share'])}"
                         + (f"; |model - kernel| pages p50 {d['p50']:,.0f}, p90 {d['p90']:,.0f}, "
                            f"p99 {d['p99']:,.0f}, max {d['max']:,}" if d else ""))
        sp = pa["start_pcp"]
        if sp["n"]:
            lines.append(f"  apart: {sp['n']:,} allocations of pages on per-CPU lists at the start (their order "
                         f"there is taken from the trace): {_p(sp['share'])}; all {pa['all']['n']:,}: "
                         f"{_p(pa['all']['share'])}")
    st = res.get("kpageflags_start", {}).get("after_kpageflags")
    if st:
        diffs = {z: v["diff"] for z, v in st.items() if any(v["diff"])}
        lines += ["", "start layout from before/kpageflags vs the buddyinfo read right after it: "
                  + ("equal in every zone and order" if not diffs else
                     "; ".join(f"{z} block diffs by order {d}" for z, d in diffs.items()))]
    return "\n".join(lines) + "\n"
