"""How long the requests' direct reclaim and direct compaction stalls took: the kernel's own latencies.

A task that enters ``__alloc_pages_direct_reclaim`` or ``__alloc_pages_direct_compact`` stalls for the
time ``shrink_node`` or ``compact_zone`` takes to do its work; the kernel's tracepoint pairs measure it
(``mm_vmscan_direct_reclaim_begin`` / ``_end``, ``mm_compaction_try_to_compact_pages`` ... ``mm_compaction_end``,
as ``kmemdes lab`` and :mod:`kmemdes.lab.ktrace` read them).  The page allocator model logs each stall's
work (``Node.stall_log``: pages scanned, reclaimed and their folios; pfns scanned, pages isolated and
migrated, ``compact_finished`` checks); :class:`StallLatency` prices it as the daemons' work is priced
(:class:`~kmemdes.sim.daemons.DaemonCosts`, fitted to the pressure captures' ``compact_zone`` and kswapd
runs: the same clock kswapd runs on beside the stall) and gives the same quantiles as the lab reports,
so a simulated run and a run on the kernel compare row by row.

As in the kernel's trace, a direct compaction whose every zone was deferred (``compaction_deferred``:
counted in ``compact_stall``, but no ``compact_zone`` ran, so no ``mm_compaction_end``) has no duration;
it is counted under ``deferred``.

>>> from kmemdes.mm.compaction import CompactWork
>>> from kmemdes.mm.reclaim import ReclaimWork
>>> from kmemdes.mm.page_alloc import STALL_COMPACT, STALL_RECLAIM
>>> s = StallLatency()
>>> s.log += [(STALL_RECLAIM, ReclaimWork(scanned=32, reclaimed=32), 32),
...           (STALL_COMPACT, CompactWork(migrate_scanned=512, migrated=32, steps=2), 5, False),
...           (STALL_COMPACT, CompactWork(), 2, False)]
>>> d = s.summary()
>>> d["direct_reclaim"]["p50"], d["direct_reclaim"]["pages"]
(64000, 32)
>>> d["direct_compaction"]["p50"], d["direct_compaction"]["deferred"], d["direct_compaction"]["success"]
(111680, 1, 0)
"""

from __future__ import annotations

from typing import Optional

import polars as pl

from kmemdes.mm.compaction import ATTEMPT_NO_RUN, COMPACT_DEFERRED, COMPACT_SUCCESS
from kmemdes.mm.page_alloc import STALL_RECLAIM
from kmemdes.sim.daemons import DaemonCosts
from kmemdes.sim.policy_pages import is_readahead, is_thp_fault
from kmemdes.trace.pressure import (COMPACT_STATUS_NAMES, OP_BEGIN, OP_DR_BEGIN, OP_DR_END, OP_END, OP_MIGRATE, OP_TRY,
                                    intervals)

__all__ = ["StallLatency", "duration_quantiles", "interval_stalls", "trace_stalls", "attempt_table", "requester",
           "REQUESTERS"]

#: who asked for the pages a direct compaction was for (:func:`requester`)
REQUESTERS = ("thp", "readahead", "other")


def requester(gfp: int, order: int) -> str:
    """``thp`` (a THP fault, :func:`~kmemdes.sim.policy_pages.is_thp_fault`), ``readahead`` (a page-cache
    folio, :func:`~kmemdes.sim.policy_pages.is_readahead`) or ``other``.

    >>> from kmemdes.mm import gfp as G
    >>> requester(G.GFP_TRANSHUGE, 9), requester(G.GFP_NOFS | G.__GFP_HIGHMEM | G.__GFP_MOVABLE | G.__GFP_NORETRY
    ...                                           | G.__GFP_COMP, 9), requester(G.GFP_KERNEL | G.__GFP_COMP, 3)
    ('thp', 'readahead', 'other')
    """
    if is_thp_fault(gfp, order):
        return "thp"
    return "readahead" if is_readahead(gfp, order) else "other"


def attempt_table(attempts) -> dict:
    """Direct compaction stalls by requester and by how their last ``compact_zone`` run ended, each
    ``[got the page right after, did not]``: {requester: {ended: [page, no page]}}.

    ``attempts``: ``(gfp, order, ended, page)`` per ``try_to_compact_pages``, the kernel's from its
    trace (:func:`kmemdes.trace.pressure.compaction_attempts`) or the models' (:meth:`StallLatency.attempts`).
    An attempt in which no zone ran, none was deferred and no page came was skipped (COMPACT_SKIPPED:
    no ``compact_stall``) and is left out, so the pages sum to ``compact_success`` and the whole table to
    ``compact_stall``.

    >>> from kmemdes.mm import gfp as G
    >>> attempt_table([(G.GFP_TRANSHUGE, 9, "complete", False), (G.GFP_TRANSHUGE, 9, "complete", True),
    ...                (G.GFP_TRANSHUGE, 9, "none", False), (G.GFP_TRANSHUGE, 9, "none", True)])
    {'thp': {'complete': [1, 1], 'none': [1, 0]}}
    """
    out: dict = {}
    for gfp, order, ended, page in attempts:
        if ended == ATTEMPT_NO_RUN and not page:
            continue
        cell = out.setdefault(requester(gfp, order), {}).setdefault(ended, [0, 0])
        cell[0 if page else 1] += 1
    return {who: dict(sorted(out[who].items())) for who in REQUESTERS if who in out}


def duration_quantiles(values: list[int]) -> dict:
    """n, p50, p90, p99, max and mean of durations in ns (the nearest-rank quantile: the value at
    ``int(q * n)`` of the sorted list), as ``kmemdes lab`` reports the kernel's.

    >>> duration_quantiles([5, 1, 3, 2, 4])
    {'n': 5, 'p50': 3, 'p90': 5, 'p99': 5, 'max': 5, 'mean': 3}
    >>> duration_quantiles([])
    {'n': 0}
    """
    if not values:
        return {"n": 0}
    v = sorted(values)
    n = len(v)
    return {"n": n, "p50": v[min(n - 1, int(0.5 * n))], "p90": v[min(n - 1, int(0.9 * n))],
            "p99": v[min(n - 1, int(0.99 * n))], "max": v[-1], "mean": int(sum(v) / n)}


class StallLatency:
    """The run's stalls: ``log`` is what the node appends to (``Node.stall_log``); :meth:`summary` prices it."""

    def __init__(self, costs: Optional[DaemonCosts] = None) -> None:
        self.costs = costs or DaemonCosts()
        self.log: list = []

    def duration(self, entry: tuple) -> int:
        """How long one stall (a log entry) took; a compaction deferred in every zone took nothing."""
        if entry[0] == STALL_RECLAIM:
            return self.costs.reclaim_ns(entry[1])
        return 0 if entry[2] == COMPACT_DEFERRED else self.costs.compaction_ns(entry[1])

    def price(self, entries: list) -> int:
        """The total duration of some stalls (log entries)."""
        return sum(map(self.duration, entries))

    def durations(self) -> tuple[list[tuple[int, int]], list[tuple[int, int, bool]], int]:
        """(direct reclaims as (ns, pages), direct compactions that ran as (ns, migrated, whether it
        ended ``COMPACT_SUCCESS``: ``mm_compaction_end status=success``), compactions deferred in every zone)."""
        reclaim, compact, deferred = [], [], 0
        for entry in self.log:
            if entry[0] == STALL_RECLAIM:
                reclaim.append((self.duration(entry), entry[2]))
            elif entry[2] == COMPACT_DEFERRED:
                deferred += 1
            else:
                compact.append((self.duration(entry), entry[1].migrated, entry[2] == COMPACT_SUCCESS))
        return reclaim, compact, deferred

    def attempts(self) -> list[tuple[int, int, str, bool]]:
        """The logged direct compaction stalls as :func:`attempt_table` takes them."""
        return [(e[4], e[5], e[6], e[3]) for e in self.log if e[0] != STALL_RECLAIM and len(e) > 6]

    def summary(self) -> dict:
        """``{"direct_reclaim": {n, p50, p90, p99, max, mean, pages}, "direct_compaction": {..., migrated,
        success, deferred}}``, durations in ns (the keys of a lab run's ``kernel_latency_ns``)."""
        reclaim, compact, deferred = self.durations()
        r = duration_quantiles([ns for ns, _ in reclaim])
        r["pages"] = sum(p for _, p in reclaim)
        c = duration_quantiles([ns for ns, _, _ in compact])
        c["migrated"] = sum(m for _, m, _ in compact)
        c["success"] = sum(1 for *_, ok in compact if ok)
        c["deferred"] = deferred
        return {"direct_reclaim": r, "direct_compaction": c}


def interval_stalls(iv: dict, compact_stall: Optional[int] = None) -> dict:
    """The kernel's stalls in :meth:`StallLatency.summary`'s form, from the tracepoint pairs
    :func:`kmemdes.trace.pressure.intervals` found; ``compact_stall`` (the vmstat delta) gives how many
    attempts had no ``mm_compaction_end`` (deferred in every zone)."""
    dr, dc = iv.get("direct_reclaim", []), iv.get("direct_compaction", [])
    r = duration_quantiles([i["dur_ns"] for i in dr])
    r["pages"] = sum(i["pages"] for i in dr)
    c = duration_quantiles([i["dur_ns"] for i in dc])
    c["migrated"] = sum(i["migrated"] for i in dc)
    c["success"] = sum(1 for i in dc if i["status"] == "success")
    if compact_stall is not None:
        c["deferred"] = max(0, compact_stall - len(dc))
    return {"direct_reclaim": r, "direct_compaction": c}


_OP_EVENTS = {OP_DR_BEGIN: ("mm_vmscan_direct_reclaim_begin", "order", None),
              OP_DR_END: ("mm_vmscan_direct_reclaim_end", "nr_reclaimed", None),
              OP_TRY: ("mm_compaction_try_to_compact_pages", "order", "priority"),
              OP_BEGIN: ("mm_compaction_begin", None, None),
              OP_MIGRATE: ("mm_compaction_migratepages", "nr_migrated", "nr_failed"),
              OP_END: ("mm_compaction_end", None, "status")}


def trace_stalls(ts: pl.Series, ops: pl.DataFrame, compact_stall: Optional[int] = None) -> dict:
    """The stalls of a replayed trace as the kernel timed them: ``ops`` are its typed compaction and
    vmscan events (:func:`kmemdes.trace.pressure.kernel_ops`, keyed by row ``seq``), ``ts`` the rows'
    timestamps (ns).

    >>> ops = pl.DataFrame({"seq": [0, 1], "op": [OP_DR_BEGIN, OP_DR_END], "n1": [9, 81], "n2": [0, 0],
    ...                     "pid": [42, 42]})
    >>> trace_stalls(pl.Series([1_000, 78_000]), ops)["direct_reclaim"]["p50"]
    77000
    """
    sel = ops.filter(pl.col("op").is_in(list(_OP_EVENTS)))
    rows = []
    for (op, n1, n2, pid), t in zip(sel.select("op", "n1", "n2", "pid").iter_rows(), ts.gather(sel["seq"])):
        name, k1, k2 = _OP_EVENTS[op]
        f = {}
        if k1:
            f[k1] = str(n1)
        if k2 == "status":
            f[k2] = COMPACT_STATUS_NAMES.get(n2, "")
        elif k2:
            f[k2] = str(n2)
        rows.append((t, pid, "", name, f))
    return interval_stalls(intervals(rows), compact_stall)
