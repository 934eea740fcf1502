"""kmemdes/sim/sanitize.py: fields no kernel prints and timestamps out of place, found and counted."""

from __future__ import annotations

import polars as pl

from kmemdes.sim.sanitize import JUMP_NS, MAX_GAP_NS, sanitize_events
from kmemdes.trace.schema import EventKind

A, F, C, KM = (int(EventKind.MM_PAGE_ALLOC), int(EventKind.MM_PAGE_FREE), int(EventKind.COMPACTION),
               int(EventKind.KMALLOC))


def _ev(rows):
    return pl.DataFrame(rows, schema={"ts": pl.Int64, "kind": pl.UInt8, "pfn": pl.Int64, "order": pl.Int8,
                                      "migratetype": pl.Int8, "ptr": pl.UInt64, "bytes_req": pl.Int64,
                                      "bytes_alloc": pl.Int64}, orient="row")


def test_page_and_object_fields_no_kernel_prints_are_skipped():
    ev = _ev([(1, A, 10, 0, 0, None, None, None),
              (2, A, 11, -1, 0, None, None, None),    # order=-1 on a page event
              (3, F, 12, 11, 0, None, None, None),    # order 11 > MAX_PAGE_ORDER
              (4, F, -1, 0, 0, None, None, None),     # a free cannot name pfn -1
              (5, A, -5, 0, 0, None, None, None),     # pfn=-5
              (6, A, 13, 0, -3, None, None, None),    # migratetype -3
              (7, C, None, -1, None, None, None, None),  # proactive compaction: order=-1 is the kernel's
              (8, KM, None, None, None, 0x10, 1 << 40, 64),  # a size beyond KMALLOC_MAX_SIZE
              (9, KM, None, None, None, 0, 1 << 40, 0),      # a failed kmalloc may print any size
              (10, A, -1, 9, 1, None, None, None)])   # a failed order-9 allocation
    clean, fix = sanitize_events(ev)
    assert clean["ts"].to_list() == [1, 7, 9, 10]
    assert fix.quirks == {"bad_page_field": 5, "bad_object_field": 1} and fix.dropped == 6
    assert clean.filter(pl.col("kind") == C)["order"].to_list() == [-1]
    assert clean.filter(pl.col("kind") == KM)["bytes_req"].to_list() == [None]


def test_timestamps_out_of_place():
    t = 1_947_000_000_000
    ts = [t, t + 1000, 0, t + 3000, t + 4000, t + 8000 * 10**9 + 5000, t + 6000, None, t + 8000]
    clean, fix = sanitize_events(_ev([(x, A, i, 0, 0, None, None, None) for i, x in enumerate(ts)]))
    assert clean["ts"].to_list() == [t, t + 1000, t + 1000, t + 3000, t + 4000, t + 4000, t + 6000, t + 6000, t + 8000]
    assert fix.time_repairs == {"timestamp_out_of_order": 3} and not fix.quirks
    # a lasting step back: those events are replayed at the time already reached
    ts = [t, t + 1000, t - 2 * JUMP_NS, t - 2 * JUMP_NS + 10, t - 2 * JUMP_NS + 20]
    clean, fix = sanitize_events(_ev([(x, A, i, 0, 0, None, None, None) for i, x in enumerate(ts)]))
    assert clean["ts"].to_list() == [t, t + 1000, t + 1000, t + 1000, t + 1000]
    assert fix.time_repairs == {"timestamp_step_back": 1}
    # a gap of a year (a damaged trace.dat page) is shortened to MAX_GAP_NS
    ts = [t, t + 1000, t + 365 * 86400 * 10**9, t + 365 * 86400 * 10**9 + 10]
    clean, fix = sanitize_events(_ev([(x, A, i, 0, 0, None, None, None) for i, x in enumerate(ts)]))
    assert clean["ts"].to_list() == [t, t + 1000, t + 1000 + MAX_GAP_NS, t + 1010 + MAX_GAP_NS]
    assert fix.time_repairs == {"idle_gap_shortened": 1}
    # small inversions (trace_pipe merging per-CPU buffers: tens of us) are the kernel's
    ts = [t, t + 50_000, t + 10_000, t + 60_000]
    assert sanitize_events(_ev([(x, A, i, 0, 0, None, None, None) for i, x in enumerate(ts)]))[1].time_repairs == {}
