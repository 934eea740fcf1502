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
import re
from pathlib import Path

from kmemdes.trace.capture import _glob_events, _PipeReader, _read, _write

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

_LINE = re.compile(r"^\s*(.+?)-(\d+)\s+\[(\d+)\][^:]*?\s(\d+)\.(\d+):\s+(\w+):\s?(.*)$")
_KV = re.compile(r"(\w+)=(\S+)")


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


def parse_lines(lines) -> list[tuple[int, int, str, str, dict]]:
    """(t_ns, pid, comm, event, fields) of trace text lines (the ``key=value`` fields as text).

    >>> parse_lines(["  cc1-42  [001] ..... 12.000000500: mm_vmscan_direct_reclaim_end: nr_reclaimed=7"])
    [(12000000500, 42, 'cc1', 'mm_vmscan_direct_reclaim_end', {'nr_reclaimed': '7'})]
    """
    out = []
    for ln in lines:
        m = _LINE.match(ln)
        if not m:
            continue
        comm, pid, _, sec, frac, ev, rest = m.groups()
        t = int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])
        out.append((t, int(pid), comm.strip(), ev, dict(_KV.findall(rest))))
    return out


def intervals(events) -> dict[str, list[dict]]:
    """The measured intervals by kind: ``direct_reclaim``, ``direct_compaction``, ``compact_zone``,
    ``kswapd_awake``; plus ``extfrag`` (one dict per fallback event).

    >>> ev = [(100, 5, "a", "mm_vmscan_direct_reclaim_begin", {"order": "9"}),
    ...       (400, 5, "a", "mm_vmscan_direct_reclaim_end", {"nr_reclaimed": "32"}),
    ...       (500, 5, "a", "mm_compaction_try_to_compact_pages", {"order": "9"}),
    ...       (510, 5, "a", "mm_compaction_begin", {}),
    ...       (600, 5, "a", "mm_compaction_migratepages", {"nr_migrated": "3", "nr_failed": "0"}),
    ...       (900, 5, "a", "mm_compaction_end", {"status": "success"}),
    ...       (1000, 5, "a", "mm_vmscan_direct_reclaim_begin", {"order": "0"})]
    >>> iv = intervals(ev)
    >>> iv["direct_reclaim"][0]["dur_ns"], iv["direct_reclaim"][0]["pages"]
    (300, 32)
    >>> c = iv["direct_compaction"][0]; c["dur_ns"], c["migrated"], c["status"]
    (400, 3, 'success')
    """
    out: dict[str, list[dict]] = {"direct_reclaim": [], "direct_compaction": [], "compact_zone": [],
                                  "kswapd_awake": [], "extfrag": [], "memcg_reclaim": [], "high_order": []}
    reclaim: dict[int, tuple] = {}
    zone: dict[int, tuple] = {}
    attempt: dict[int, dict] = {}
    kswapd: dict[int, int] = {}

    def close_attempt(pid: int) -> None:
        a = attempt.pop(pid, None)
        if a is not None and a.get("end") is not None:
            out["direct_compaction"].append({"t_ns": a["t0"], "dur_ns": a["end"] - a["t0"], "order": a["order"],
                                             "migrated": a["migrated"], "failed": a["failed"],
                                             "status": a["status"], "pid": pid})

    def num(f, k, default=0):
        try:
            return int(f.get(k, default), 0)
        except ValueError:
            return default

    for t, pid, comm, ev, f in events:
        if ev in ("mm_vmscan_direct_reclaim_begin", "mm_vmscan_memcg_reclaim_begin"):
            if ev == "mm_vmscan_direct_reclaim_begin":
                close_attempt(pid)
            reclaim[pid] = (t, num(f, "order"))
        elif ev in ("mm_vmscan_direct_reclaim_end", "mm_vmscan_memcg_reclaim_end") and pid in reclaim:
            t0, order = reclaim.pop(pid)
            kind = "direct_reclaim" if ev == "mm_vmscan_direct_reclaim_end" else "memcg_reclaim"
            out[kind].append({"t_ns": t0, "dur_ns": t - t0, "order": order, "pages": num(f, "nr_reclaimed"),
                              "pid": pid})
        elif ev == "mm_compaction_try_to_compact_pages":
            close_attempt(pid)
            attempt[pid] = {"t0": t, "order": num(f, "order"), "migrated": 0, "failed": 0, "end": None,
                            "status": ""}
        elif ev == "mm_compaction_begin":
            zone[pid] = (t, comm, 0)
        elif ev == "mm_compaction_migratepages":
            if pid in zone:
                zone[pid] = (zone[pid][0], zone[pid][1], zone[pid][2] + num(f, "nr_migrated"))
            if pid in attempt:
                attempt[pid]["migrated"] += num(f, "nr_migrated")
                attempt[pid]["failed"] += num(f, "nr_failed")
        elif ev == "mm_compaction_end":
            if pid in zone:
                t0, c, migrated = zone.pop(pid)
                out["compact_zone"].append({"t_ns": t0, "dur_ns": t - t0, "kcompactd": c.startswith("kcompactd"),
                                            "migrated": migrated, "status": f.get("status", ""), "pid": pid})
            if pid in attempt:
                attempt[pid]["end"] = t
                attempt[pid]["status"] = f.get("status", "")
        elif ev == "mm_vmscan_kswapd_wake":
            kswapd.setdefault(pid, t)
        elif ev == "mm_vmscan_kswapd_sleep" and pid in kswapd:
            t0 = kswapd.pop(pid)
            out["kswapd_awake"].append({"t_ns": t0, "dur_ns": t - t0, "pid": pid})
        elif ev == "mm_page_alloc":
            out["high_order"].append({"t_ns": t, "order": num(f, "order"), "failed": f.get("pfn") == "0x0",
                                      "gfp_flags": f.get("gfp_flags", ""), "comm": comm})
        elif ev == "mm_page_alloc_extfrag":
            out["extfrag"].append({"t_ns": t, "alloc_order": num(f, "alloc_order"),
                                   "fallback_order": num(f, "fallback_order"),
                                   "alloc_mt": num(f, "alloc_migratetype"),
                                   "fallback_mt": num(f, "fallback_migratetype"),
                                   "fragmenting": num(f, "fragmenting"),
                                   "claim": num(f, "change_ownership")})
    for pid in list(attempt):
        close_attempt(pid)
    return out
