"""What a trace tells about the physical state before it started.

/proc snapshots give counts (free blocks per order and migratetype, pageblocks
per type, pages on per-CPU lists) but not *where*.  The first event that
touches each page says what the page was when tracing started (KERNEL.md 15):

=================================  ==================================================================
first event on the page            state at the start
=================================  ==================================================================
``mm_page_alloc_zone_locked``      free in the buddy lists, on the list of the printed migratetype
``mm_page_alloc_extfrag``          free, inside the fallback block ``pfn & ~(2^fallback_order - 1)``
                                   of ``fallback_migratetype`` (a whole block taken by a claim/steal)
``mm_page_alloc`` (pcp order)      on a per-CPU list of that CPU (no refill line preceded it)
``mm_page_pcpu_drain``             on a per-CPU list, whose CPU is unknown (``drain_all_pages``
                                   drains other CPUs' lists from the calling CPU since 6.0:
                                   ``drain_pages_zone(cpu, zone)``): ``cpu`` is
                                   :data:`PCP_CPU_UNKNOWN`
``mm_page_free`` / ``_batched``    allocated
=================================  ==================================================================

:func:`start_hints` computes this with Polars (one row per page touched, first
event by file order) and returns free blocks (runs of free pages split into
maximal aligned buddy blocks), per-CPU list blocks and allocated pages, which
:func:`kmemdes.mm.mm_init.node_from_snapshot` uses to place the snapshot's
counts where the trace shows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from kmemdes.trace.schema import EventKind

__all__ = ["StartHints", "start_hints", "aligned_blocks", "PCP_CPU_UNKNOWN"]

#: ``pcp_blocks`` cpu of a block first seen drained: the list's owner is not the printing CPU
PCP_CPU_UNKNOWN = -1

_ZL = int(EventKind.MM_PAGE_ALLOC_ZONE_LOCKED)
_EXT = int(EventKind.MM_PAGE_ALLOC_EXTFRAG)
_ALLOC = int(EventKind.MM_PAGE_ALLOC)
_DRAIN = int(EventKind.MM_PAGE_PCPU_DRAIN)
_FREE = int(EventKind.MM_PAGE_FREE)
_BATCHED = int(EventKind.MM_PAGE_FREE_BATCHED)


@dataclass
class StartHints:
    free_blocks: list[tuple[int, int, int]] = field(default_factory=list)  # (pfn, order, migratetype)
    pcp_blocks: list[tuple[int, int, int, int]] = field(default_factory=list)  # (pfn, order, migratetype, cpu)
    busy: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # pfns allocated at the start
    busy_ts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # when the trace frees each
    taken: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # pfns first taken off buddy lists
    taken_ts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # when the trace takes each
    pageblock_types: dict[int, int] = field(default_factory=dict)  # pageblock -> migratetype seen on its free lists


def aligned_blocks(start: int, end: int, max_order: int = 10) -> list[tuple[int, int]]:
    """Split [start, end) into maximal aligned power-of-two blocks (the buddy decomposition).

    >>> aligned_blocks(3, 12)
    [(3, 0), (4, 2), (8, 2)]
    """
    out = []
    p = start
    while p < end:
        o = max_order if p == 0 else min(max_order, (p & -p).bit_length() - 1)
        while p + (1 << o) > end:
            o -= 1
        out.append((p, o))
        p += 1 << o
    return out


def start_hints(events: pl.DataFrame) -> StartHints:
    """First-touch states of every page the trace touches (see the module docstring)."""
    kinds = [_ZL, _EXT, _ALLOC, _DRAIN, _FREE, _BATCHED]
    # extfrag: the whole fallback block was free, of the fallback type; an event on the same block
    # as an earlier one touches no page first: only the first event of each block is kept
    pow2 = lambda c: pl.lit(2, pl.Int64).pow(pl.col(c).fill_null(0).cast(pl.Int64))  # noqa: E731
    ext = pl.col("kind") == _EXT
    both = events.lazy().filter(pl.col("kind").is_in(kinds) & (pl.col("pfn") >= 0)).select(
        "kind", "cpu",
        ts=pl.col("ts").fill_null(0) if "ts" in events.columns else pl.lit(0, pl.Int64),
        start=pl.when(ext).then((pl.col("pfn") // pow2("fallback_order")) * pow2("fallback_order"))
        .otherwise(pl.col("pfn")),
        n=pl.when(ext).then(pow2("fallback_order")).otherwise(pow2("order")),
        order="order",
        migratetype=pl.when(ext).then(pl.col("fallback_migratetype")).otherwise(pl.col("migratetype")),
    ).filter(pl.struct("start", "n").is_first_distinct()).collect()
    if both.height == 0:
        return StartHints()
    # the first event touching each page, with numpy over (event, page) pairs: a big trace has
    # millions of page events, nearly all of order 0
    n = both["n"].to_numpy()
    row = np.repeat(np.arange(both.height), n)
    page = both["start"].to_numpy()[row] + (np.arange(row.size) - np.repeat(np.cumsum(n) - n, n))
    at = pl.Series(page).is_first_distinct().arg_true().to_numpy()  # first pair of each page, in event order
    first = both[row[at]].select(pl.Series("page", page[at]), "kind", "cpu", "start", "order", "migratetype", "n",
                                 "ts")
    h = StartHints()
    free = first.filter(pl.col("kind").is_in([_ZL, _EXT])).sort("page")
    h.taken = free["page"].to_numpy().astype(np.int64)
    h.taken_ts = free["ts"].to_numpy().astype(np.int64)
    # types of pageblocks from free-list evidence
    pbt = free.group_by(pl.col("page") // 512).agg(pl.col("migratetype").mode().min())
    h.pageblock_types = {int(a): int(b) for a, b in pbt.iter_rows()}
    # runs of consecutive free pages of one type -> aligned buddy blocks
    if free.height:
        pg = free["page"].to_numpy()
        mt = free["migratetype"].to_numpy()
        brk = np.nonzero((np.diff(pg) != 1) | (np.diff(mt) != 0) | ((pg[1:] % 512) == 0))[0] + 1
        starts = np.concatenate([[0], brk])
        ends = np.concatenate([brk, [len(pg)]])
        for s, e in zip(starts.tolist(), ends.tolist()):
            m = int(mt[s])
            for p, o in aligned_blocks(int(pg[s]), int(pg[e - 1]) + 1):
                h.free_blocks.append((p, o, m))
    pcp = first.filter(pl.col("kind").is_in([_ALLOC, _DRAIN]) & (pl.col("page") == pl.col("start")))
    pcp = pcp.filter((pl.col("order") <= 3) | (pl.col("order") == 9))
    h.pcp_blocks = [(int(p), int(o), int(m) if m is not None and m < 3 else 1,
                     PCP_CPU_UNKNOWN if k == _DRAIN else int(c or 0))
                    for p, o, m, c, k in pcp.select("page", "order", "migratetype", "cpu", "kind").iter_rows()]
    freed = first.filter(pl.col("kind").is_in([_FREE, _BATCHED]))
    h.busy = freed["page"].to_numpy().astype(np.int64)
    h.busy_ts = freed["ts"].to_numpy().astype(np.int64)
    return h
