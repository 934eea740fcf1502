"""The kernel's own latencies during a lab run, from tracepoint pairs in a private ftrace instance.

Events (all rare next to page allocations, so a small buffer holds them):

=======================================================  ==============================================
pair                                                     what it measures
=======================================================  ==============================================
``mm_vmscan_direct_reclaim_begin`` / ``_end`` (same pid) one direct reclaim (``nr_reclaimed`` pages)
``mm_compaction_try_to_compact_pages`` ... last           one direct compaction attempt
``mm_compaction_end`` of that pid                        (``__alloc_pages_direct_compact``), with the
                                                         pages ``mm_compaction_migratepages`` migrated
``mm_compaction_begin`` / ``_end`` (same pid)            one ``compact_zone`` (direct or kcompactd)
``mm_vmscan_kswapd_wake`` / ``mm_vmscan_kswapd_sleep``   kswapd awake
``mm_page_alloc_extfrag``                                fallbacks: claim (``change_ownership=1``) or
                                                         steal, fragmenting or not
``mm_page_alloc`` (filter ``order > 0``)                 every high-order request and whether it failed
                                                         (``pfn=0x0``), with its GFP flags
=======================================================  ==============================================

The instance is recorded in the lab's state file before it is created (so a killed run's
instance is removed by the next run); the trace_pipe reader is capture's.
"""

from __future__ import annotations

import os
from pathlib import Path

from kmemdes.trace.capture import _glob_events, _PipeReader, _read, _write
from kmemdes.trace.pressure import intervals, parse_lines  # the lab's names for them

__all__ = ["LAB_EVENTS", "LatencyTrace", "parse_lines", "intervals"]

LAB_EVENTS = (
    "vmscan/mm_vmscan_direct_reclaim_begin", "vmscan/mm_vmscan_direct_reclaim_end",
    "vmscan/mm_vmscan_kswapd_wake", "vmscan/mm_vmscan_kswapd_sleep",
    "compaction/mm_compaction_try_to_compact_pages", "compaction/mm_compaction_begin",
    "compaction/mm_compaction_end", "compaction/mm_compaction_migratepages",
    "kmem/mm_page_alloc_extfrag", "kmem/mm_page_alloc",
)
#: in-kernel event filters: only high-order page allocations are traced (order-0 ones would be millions)
LAB_FILTERS = {"kmem/mm_page_alloc": "order > 0"}
#: memcg limit reclaim (``try_to_free_mem_cgroup_pages``, in the charging task): what ``--calibrate`` prices
#: reclaim with, since it needs no machine-wide memory pressure
MEMCG_EVENTS = ("vmscan/mm_vmscan_memcg_reclaim_begin", "vmscan/mm_vmscan_memcg_reclaim_end")



class LatencyTrace:
    """Start/stop the lab's events in ``instances/<name>`` of a tracefs mount ``tracefs``."""

    def __init__(self, state, tracefs: str, out: Path, buffer_kb: int = 4096, events=LAB_EVENTS):
        self.name = f"kmemdes_{os.getpid()}_lab"
        self.inst = state.add_instance(tracefs, self.name)
        _write(os.path.join(self.inst, "tracing_on"), "0")
        _write(os.path.join(self.inst, "buffer_size_kb"), str(buffer_kb))
        _write(os.path.join(self.inst, "trace_clock"), "mono")
        self.enabled: list[str] = []
        self.missing: list[str] = []
        evroot = os.path.join(self.inst, "events")
        for spec in events:
            found = _glob_events(evroot, spec)
            if not found:
                self.missing.append(spec)
            for e in found:
                try:
                    if e in LAB_FILTERS:
                        _write(os.path.join(evroot, e, "filter"), LAB_FILTERS[e])
                    _write(os.path.join(evroot, e, "enable"), "1")
                    self.enabled.append(e)
                except OSError:
                    self.missing.append(e)
        self.out = out
        self.reader = _PipeReader(self.inst, out)
        self.reader.start()
        self.reader.ready.wait(10)
        _write(os.path.join(self.inst, "tracing_on"), "1")

    def stop(self) -> dict:
        """Stop tracing, drain, disable the events; returns the lost-event counts."""
        _write(os.path.join(self.inst, "tracing_on"), "0")
        self.reader.stop()
        self.reader.join(30)
        lost = {"overrun": 0, "dropped": 0}
        base = os.path.join(self.inst, "per_cpu")
        for c in os.listdir(base):
            for line in _read(os.path.join(base, c, "stats")).splitlines():
                k, _, v = line.partition(":")
                if k in ("overrun", "dropped events"):
                    lost["overrun" if k == "overrun" else "dropped"] += int(v.split()[0] or 0)
        for e in self.enabled:
            try:
                _write(os.path.join(self.inst, "events", e, "enable"), "0")
            except OSError:
                pass
        return lost
