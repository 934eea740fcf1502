"""Fields no kernel prints, and timestamps out of place: found before a replay, counted by name.

A corrupted or hand-edited trace can name values the models cannot index
(``order=99``, ``order=-1`` on a page event, ``pfn=-5``, ``migratetype=-3``) or
timestamps that jump thousands of seconds (a stray ``0.000000``, a flipped
digit).  :func:`sanitize_events` finds them in one vectorised pass over the
replay's columns, before anything is simulated:

======================  =====================================================================
rule                    what happened and what the replay does
======================  =====================================================================
bad_page_field          a page event (``mm_page_alloc`` ... ``mm_page_alloc_extfrag``) whose
                        ``order`` / ``fallback_order`` is not 0..MAX_PAGE_ORDER, whose pfn is
                        missing or negative (a free, or below the -1 of a failed allocation),
                        or whose migratetype is negative: no kernel prints it (skipped)
bad_object_field        a slab allocation that succeeded with ``bytes_req`` or ``bytes_alloc``
                        outside 0..KMALLOC_MAX_SIZE (skipped; a failed one keeps no size)
timestamp_out_of_order  one event more than a second away from both neighbours, which agree
                        (or a timestamp that could not be read): replayed at the previous
                        event's time
timestamp_step_back     the clock steps back by more than a second and stays there: the events
                        after it are replayed in file order at the time already reached
idle_gap_shortened      the clock jumps forward by more than MAX_GAP_NS (a damaged trace.dat page,
                        a flipped digit that persists): the gap is shortened to MAX_GAP_NS, so the
                        daemons' timers (kswapd, kcompactd every 500 ms) do not tick through years
end_snapshot_read       (:func:`cut_end_snapshot`, replays only) the rows after a capture's
                        ``after_buddyinfo`` marker: ``kmemdes capture --kpageflags`` keeps tracing
                        while it reads after/, so the end state to compare with after/buddyinfo is
                        the one where it was read (validate's layout agreement uses the rows, per
                        pfn, up to the moment /proc/kpageflags read it)
======================  =====================================================================

``bad_page_field`` and ``bad_object_field`` are rules of the replay (the event is not replayed; it counts
in ``summary.json`` ``quirks``).  The two timestamp rules repair an event's time
and the event itself is still replayed (and counted by the replay's own rules),
so they are counted apart, in ``summary.json`` ``time_repairs``.

Compaction events keep their ``order``: the kernel prints ``order=-1`` for
proactive compaction (a whole zone, no requested order), and only page events
are checked.

>>> ev = pl.DataFrame({"ts": [1, 2, 3, 3_000_000_000_000, 5, 6], "kind": [20, 21, 20, 20, 40, 20],
...                    "pfn": [10, 10, 12, 14, None, -5], "order": [0, 0, 11, 0, -1, 0]})
>>> clean, fix = sanitize_events(ev)
>>> clean["ts"].to_list(), clean["order"].to_list(), fix.quirks, fix.time_repairs
([1, 2, 2, 5], [0, 0, 0, -1], {'bad_page_field': 2}, {'timestamp_out_of_order': 1})
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from kmemdes.trace.schema import KMALLOC_MAX_SIZE, EventKind, bad_object_event, bad_page_event

__all__ = ["Sanitized", "sanitize_events", "cut_end_snapshot", "JUMP_NS", "MAX_GAP_NS"]

JUMP_NS = 1_000_000_000  # a timestamp this far from its neighbours is out of place (real inversions: < 100 us)
MAX_GAP_NS = 60_000_000_000  # longer idle gaps are shortened to this (no capture of the corpus has one)

@dataclass
class Sanitized:
    """What :func:`sanitize_events` found: per-event rules (skipped events), time repairs, notes."""

    quirks: dict = field(default_factory=dict)
    time_repairs: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    dropped: int = 0
    dropped_by_event: dict = field(default_factory=dict)  # event name -> skipped rows (frames with ``event``)


def sanitize_events(events: pl.DataFrame) -> tuple[pl.DataFrame, Sanitized]:
    """``events`` without the page events of rule ``bad_page_field`` and with out-of-place timestamps
    repaired, and what was found (see the module docstring)."""
    out = Sanitized()
    if events.height == 0:
        return events, out
    for rule, bad, keys in (("bad_page_field", bad_page_event(events.columns), ("order", "pfn")),
                            ("bad_object_field", bad_object_event(events.columns), ("bytes_req", "bytes_alloc"))):
        nbad = int(events.select(bad.sum()).item() or 0)
        if not nbad:
            continue
        first = events.with_row_index("_i").filter(bad).row(0, named=True)
        if "event" in events.columns:
            for name, c in events.filter(bad).group_by("event").len().iter_rows():
                out.dropped_by_event[name] = out.dropped_by_event.get(name, 0) + c
        events = events.filter(~bad)
        out.dropped += nbad
        out.quirks[rule] = nbad
        what = ", ".join(f"{k}={first[k]}" for k in keys if k in first)
        out.notes.append(f"{nbad} events with fields no kernel prints skipped ({rule}; the first is event "
                         f"{first['_i']}: {what})")
    # a failed slab allocation (ptr 0) may print any size: it holds nothing, its size is dropped
    for c in ("bytes_req", "bytes_alloc"):
        if c in events.columns:
            events = events.with_columns(pl.when((pl.col(c) < 0) | (pl.col(c) > KMALLOC_MAX_SIZE))
                                         .then(None).otherwise(pl.col(c)).alias(c))
    ts = pl.col("ts")
    quick = _clock_checks(events)
    if quick is None:
        prev, nxt = ts.shift(1), ts.shift(-1)
        # one event far from both neighbours, which are close to each other: a corrupted timestamp
        spike = (((ts - prev).abs() > JUMP_NS) & ((nxt - ts).abs() > JUMP_NS)
                 & ((nxt - prev).abs() <= JUMP_NS)).fill_null(False) | (ts.is_null() & (pl.len() > 1))
        flags = events.select(spike=spike)["spike"]
    else:
        flags = pl.Series("spike", quick[0])
    nspike = int(flags.sum())
    if nspike:
        events = events.with_columns(ts=pl.when(flags).then(None).otherwise(ts)).with_columns(
            ts=pl.col("ts").forward_fill().backward_fill())
        out.time_repairs["timestamp_out_of_order"] = nspike
        out.notes.append(f"{nspike} events with a timestamp out of place (more than 1 s from both neighbours, "
                         "or unreadable) replayed at the previous event's time (timestamp_out_of_order)")
    if quick is None or nspike:
        nback = int(events.select(((ts - ts.shift(1)) < -JUMP_NS).sum()).item() or 0)
    else:
        nback = quick[1]
    if nback:
        # the replay applies an event that steps back at the time already reached: so does its clock
        events = events.with_columns(ts=ts.cum_max())
        out.time_repairs["timestamp_step_back"] = nback
        out.notes.append(f"the clock steps back by more than 1 s {nback} times: the events after each step are "
                         "replayed in file order at the time already reached (timestamp_step_back)")
    gap = (ts - ts.shift(1)).fill_null(0)
    if quick is None or nspike or nback:
        ngap = int(events.select((gap > MAX_GAP_NS).sum()).item() or 0)
    else:
        ngap = quick[2]
    if ngap:
        excess = pl.when(gap > MAX_GAP_NS).then(gap - MAX_GAP_NS).otherwise(0)
        events = events.with_columns(ts=ts - excess.cum_sum())
        out.time_repairs["idle_gap_shortened"] = ngap
        out.notes.append(f"{ngap} gaps of more than {MAX_GAP_NS // 10**9} s between events shortened to "
                         f"{MAX_GAP_NS // 10**9} s (idle_gap_shortened)")
    return events, out


def _clock_checks(events: pl.DataFrame) -> tuple[np.ndarray, int, int] | None:
    """The three timestamp checks of :func:`sanitize_events` on the trace's own clock in one numpy pass
    over its differences: ``(timestamp_out_of_order flags, steps back, long gaps)``; ``None`` when
    a timestamp is missing (the Polars expressions then decide)."""
    col = events["ts"]
    if col.dtype != pl.Int64 or col.null_count():
        return None
    t = col.to_numpy()
    d = np.diff(t)
    spike = np.zeros(len(t), dtype=bool)
    if len(t) >= 3:  # the first and last events have one neighbour: never out of place
        spike[1:-1] = (np.abs(d[:-1]) > JUMP_NS) & (np.abs(d[1:]) > JUMP_NS) & (np.abs(t[2:] - t[:-2]) <= JUMP_NS)
    return spike, int(np.count_nonzero(d < -JUMP_NS)), int(np.count_nonzero(d > MAX_GAP_NS))


def cut_end_snapshot(events: pl.DataFrame, out: Sanitized) -> pl.DataFrame:
    """``events`` up to the capture's ``after_buddyinfo`` marker (written as soon as after/buddyinfo was
    read), or its ``kpageflags_after`` marker (just before it); the rest is rule ``end_snapshot_read``,
    counted in ``out``.

    >>> ev = pl.DataFrame({"ts": [1, 2, 3, 4], "kind": [20, 1, 20, 21], "event": ["a", "m", "a", "b"],
    ...                    "args": [None, "kpageflags_after", None, None]})
    >>> fix = Sanitized()
    >>> cut_end_snapshot(ev, fix)["ts"].to_list(), fix.quirks, fix.dropped_by_event
    ([1], {'end_snapshot_read': 3}, {'m': 1, 'a': 1, 'b': 1})
    >>> ev = ev.with_columns(kind=pl.Series([20, 1, 1, 21]),
    ...                      args=pl.Series([None, "kpageflags_after", "after_buddyinfo", None]))
    >>> cut_end_snapshot(ev, Sanitized())["ts"].to_list()
    [1, 2]
    """
    if "args" not in events.columns or events.height == 0:
        return events
    at = None
    for name in ("after_buddyinfo", "kpageflags_after"):  # the first where the capture has it
        at = events.select(((pl.col("kind") == int(EventKind.MARKER)) & (pl.col("args") == name))
                           .arg_true().first()).item()
        if at is not None:
            break
    if at is None:
        return events
    n = events.height - at
    if "event" in events.columns:
        for name, c in events.slice(at).group_by("event", maintain_order=True).len().iter_rows():
            out.dropped_by_event[name] = out.dropped_by_event.get(name, 0) + c
    out.dropped += n
    out.quirks["end_snapshot_read"] = n
    out.notes.append(f"{n} events from the capture's {name} marker on (recorded while it read after/) not "
                     "replayed: after/buddyinfo is compared with the state where it was read (end_snapshot_read)")
    return events.slice(0, at)
