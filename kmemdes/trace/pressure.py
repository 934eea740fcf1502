"""The compaction and vmscan events of a trace, typed: what the kernel did when memory was short.

:func:`intervals` pairs them into the kernel's own latencies (direct reclaim, direct compaction
attempts, compact_zone runs, kswapd awake), which `kmemdes lab` and `validate --predict` report.

The event table keeps these events' fields as raw ``args`` text
(:mod:`kmemdes.trace.schema`); :func:`kernel_ops` turns the ones a replay or a
comparison needs into integers, in one vectorised pass over the (few) rows of
the two groups.  Formats follow include/trace/events/compaction.h and
include/trace/events/vmscan.h (6.18; KERNEL.md §13), and ``mm_lru_activate`` of
include/trace/events/pagemap.h (``lru_activate``: a folio the workload touched again moved to the
active LRU, which a replay's reclaim model must know since page-cache hits make no allocation event):

=========================================  ======  ================================================
event                                      op      a, b, n1, n2
=========================================  ======  ================================================
``mm_compaction_begin``                    BEGIN   migrate_pfn, free_pfn, zone_start, sync (0/1)
``mm_compaction_end``                      END     migrate_pfn, free_pfn, zone_start, status code
``mm_compaction_isolate_migratepages``     ISO_MIGRATE  range start, end, nr_scanned, nr_taken
``mm_compaction_isolate_freepages``        ISO_FREE     range start, end, nr_scanned, nr_taken
``mm_compaction_fast_isolate_freepages``   FAST_FREE    min_pfn, free_pfn, nr_scanned, nr_taken
``mm_compaction_migratepages``             MIGRATE      -, -, nr_migrated, nr_failed
``mm_compaction_try_to_compact_pages``     TRY          -, -, order, priority
``mm_compaction_kcompactd_wake``           KCOMPACTD    -, -, order, -
``mm_vmscan_direct_reclaim_begin``         DR_BEGIN     -, -, order, -
``mm_vmscan_direct_reclaim_end``           DR_END       -, -, nr_reclaimed, -
``mm_vmscan_kswapd_wake``                  KSWAPD_WAKE  -, -, order, -
``mm_vmscan_lru_shrink_inactive``          SHRINK       -, -, nr_scanned, nr_reclaimed
``mm_lru_activate``                        ACTIVATE     pfn, -, -, -
=========================================  ======  ================================================

>>> import polars as pl
>>> ev = pl.DataFrame({"pid": [7, 7], "cpu": [0, 0], "event": ["mm_compaction_isolate_freepages",
...     "mm_compaction_migratepages"], "args": ["range=(0x3f3800 ~ 0x3f3a00) nr_scanned=512 nr_taken=32",
...     "nr_migrated=32 nr_failed=0"]}, schema_overrides={"pid": pl.Int32, "cpu": pl.Int16})
>>> kernel_ops(ev).select("op", "a", "b", "n1", "n2").rows()
[(4, 4143104, 4143616, 512, 32), (6, 0, 0, 32, 0)]
"""

from __future__ import annotations

import re

import polars as pl

from kmemdes.mm.compaction import ATTEMPT_DEFERRED, ATTEMPT_NO_RUN, COMPACT_RESULT_NAMES

__all__ = ["kernel_ops", "decided_by_kernel", "intervals", "parse_lines", "compaction_runs", "compaction_attempts",
           "ATTEMPT_NO_RUN", "ATTEMPT_DEFERRED", "OP", "COMPACT_STATUS",
           "COMPACT_STATUS_NAMES", "BY_WORKLOAD", "BY_RECLAIM", "BY_COMPACTION"]

#: op codes of :func:`kernel_ops`
OP = {
    "mm_compaction_begin": 1,
    "mm_compaction_end": 2,
    "mm_compaction_isolate_migratepages": 3,
    "mm_compaction_isolate_freepages": 4,
    "mm_compaction_fast_isolate_freepages": 5,
    "mm_compaction_migratepages": 6,
    "mm_compaction_try_to_compact_pages": 7,
    "mm_compaction_kcompactd_wake": 8,
    "mm_vmscan_direct_reclaim_begin": 10,
    "mm_vmscan_direct_reclaim_end": 11,
    "mm_vmscan_kswapd_wake": 12,
    "mm_vmscan_lru_shrink_inactive": 13,
    "mm_lru_activate": 14,
}
OP_BEGIN, OP_END, OP_ISO_MIGRATE, OP_ISO_FREE, OP_FAST_FREE, OP_MIGRATE, OP_TRY, OP_KCOMPACTD = 1, 2, 3, 4, 5, 6, 7, 8
OP_DR_BEGIN, OP_DR_END, OP_KSWAPD_WAKE, OP_SHRINK, OP_ACTIVATE = 10, 11, 12, 13, 14

#: status code -> the name ``mm_compaction_end`` prints (``compaction_status_string``,
#: include/trace/events/compaction.h, 6.18): the compaction model's ``enum compact_result`` names
COMPACT_STATUS_NAMES = COMPACT_RESULT_NAMES
#: name -> status code
COMPACT_STATUS = {name: code for code, name in COMPACT_STATUS_NAMES.items()}


def _hex(pattern: str) -> pl.Expr:
    return pl.col("args").str.extract(pattern).str.to_integer(base=16, strict=False)


def _dec(pattern: str) -> pl.Expr:
    return pl.col("args").str.extract(pattern).str.to_integer(strict=False)


def kernel_ops(events: pl.DataFrame | pl.LazyFrame, index: str | None = None) -> pl.DataFrame:
    """The rows of ``events`` that are compaction / vmscan ops, typed (op, a, b, n1, n2, pid, cpu).

    ``index``: a column of ``events`` to keep as the row's key (a replay's row index).
    Events whose fields do not parse keep nulls as 0 (a damaged line is not an op the
    replay could apply; the parsers already counted it as a problem).
    """
    lf = events.lazy() if isinstance(events, pl.DataFrame) else events
    names = list(OP)
    ev = pl.col("event")
    keep = [index] if index else []
    rng_a = _hex(r"range=\(0x([0-9a-fA-F]+) ~")
    rng_b = _hex(r"~ 0x([0-9a-fA-F]+)\)")
    is_begin_end = ev.is_in(["mm_compaction_begin", "mm_compaction_end"])
    status = pl.col("args").str.extract(r"status=(\w+)").replace_strict(COMPACT_STATUS, default=-1,
                                                                          return_dtype=pl.Int64)
    out = (lf.filter(ev.is_in(names))
           .select(*keep,
                   op=ev.replace_strict(OP, return_dtype=pl.Int8),
                   a=pl.when(is_begin_end).then(_hex(r"migrate_pfn=0x([0-9a-fA-F]+)"))
                   .when(ev == "mm_lru_activate").then(_hex(r"pfn=0x([0-9a-fA-F]+)")).otherwise(rng_a),
                   b=pl.when(is_begin_end).then(_hex(r"free_pfn=0x([0-9a-fA-F]+)")).otherwise(rng_b),
                   n1=pl.when(is_begin_end).then(_hex(r"zone_start=0x([0-9a-fA-F]+)"))
                   .when(ev == "mm_compaction_migratepages").then(_dec(r"nr_migrated=(\d+)"))
                   .when(ev == "mm_vmscan_direct_reclaim_end").then(_dec(r"nr_reclaimed=(\d+)"))
                   .when(ev.is_in(["mm_compaction_try_to_compact_pages", "mm_compaction_kcompactd_wake",
                                   "mm_vmscan_direct_reclaim_begin", "mm_vmscan_kswapd_wake"]))
                   .then(_dec(r"order=(-?\d+)"))
                   .otherwise(_dec(r"nr_scanned=(\d+)")),
                   n2=pl.when(ev == "mm_compaction_begin").then(pl.col("args").str.contains("mode=sync").cast(pl.Int64))
                   .when(ev == "mm_compaction_end").then(status)
                   .when(ev == "mm_compaction_migratepages").then(_dec(r"nr_failed=(\d+)"))
                   .when(ev == "mm_compaction_try_to_compact_pages").then(_dec(r"priority=(-?\d+)"))
                   .when(ev == "mm_vmscan_lru_shrink_inactive").then(_dec(r"nr_reclaimed=(\d+)"))
                   .otherwise(_dec(r"nr_taken=(\d+)")),
                   pid=pl.col("pid"), cpu=pl.col("cpu"))
           .with_columns(pl.col("a", "b", "n1", "n2").fill_null(0).cast(pl.Int64)))
    return out.collect()



def compaction_runs(ops: pl.DataFrame) -> dict:
    """How the kernel's ``compact_zone`` runs ended (``mm_compaction_end`` status), by who ran them:
    ``kcompactd`` (the pids that print ``mm_compaction_kcompactd_wake``) or ``direct`` (a task
    compacting for its allocation).  {"direct" | "kcompactd": {status name: runs}}.

    >>> ops = pl.DataFrame({"op": [OP_KCOMPACTD, OP_END, OP_END, OP_END], "pid": [37, 37, 900, 900],
    ...                     "n2": [0, COMPACT_STATUS["complete"], COMPACT_STATUS["contended"],
    ...                            COMPACT_STATUS["contended"]]}, schema_overrides={"op": pl.Int8})
    >>> compaction_runs(ops)
    {'direct': {'contended': 2}, 'kcompactd': {'complete': 1}}
    """
    kcompactd = set(ops.filter(pl.col("op") == OP_KCOMPACTD)["pid"].to_list())
    out: dict = {"direct": {}, "kcompactd": {}}
    for pid, status in ops.filter(pl.col("op") == OP_END).select("pid", "n2").iter_rows():
        d = out["kcompactd" if pid in kcompactd else "direct"]
        name = COMPACT_STATUS_NAMES.get(status, str(status))
        d[name] = d.get(name, 0) + 1
    return {who: dict(sorted(d.items())) for who, d in out.items()}


_ATTEMPT_EVENTS = ("mm_compaction_try_to_compact_pages", "mm_compaction_deferred", "mm_compaction_end",
                   "mm_vmscan_direct_reclaim_begin")


def compaction_attempts(events: pl.DataFrame | pl.LazyFrame) -> list[tuple[int, int, str, bool]]:
    """The kernel's direct compaction attempts and what each gave its allocation:
    ``(gfp, order, ended, page)`` per ``mm_compaction_try_to_compact_pages``, in trace order.

    ``ended`` is how the attempt's last ``compact_zone`` run ended as ``mm_compaction_end`` prints it
    (``complete``, ``partial_skipped``, ``contended``, ``success``), else :data:`ATTEMPT_DEFERRED`
    (no zone ran, one was deferred: ``mm_compaction_deferred``) or :data:`ATTEMPT_NO_RUN`.  ``page``:
    whether the task's next step was its allocation succeeding at that order (``mm_page_alloc``
    with a page: the capture or the free-list retry of ``__alloc_pages_direct_compact``, which counts
    ``compact_success``), not a direct reclaim, another attempt or a failed ``mm_page_alloc``.  So an
    attempt is a ``compact_stall`` when a zone ran or was deferred, or when none ran and the page came
    (a zone already at its watermark: COMPACT_SUCCESS without a run); one with no run and no page was
    skipped (COMPACT_SKIPPED: not counted).  An attempt still open at the end of the trace is left out.
    ``events`` needs ``event``, ``args``, ``pid``, ``order``, ``pfn`` and ``gfp`` (the event table).

    >>> ev = pl.DataFrame({"event": ["mm_compaction_try_to_compact_pages", "mm_compaction_end",
    ...                              "mm_page_alloc", "mm_compaction_try_to_compact_pages",
    ...                              "mm_compaction_deferred", "mm_vmscan_direct_reclaim_begin"],
    ...                    "args": ["order=9 gfp_mask=GFP_TRANSHUGE priority=2", "status=complete", "",
    ...                             "order=9 gfp_mask=GFP_TRANSHUGE priority=1", "order=9", "order=9"],
    ...                    "pid": [5] * 6, "order": [9, None, 9, 9, 9, 9], "pfn": [None, None, 512, None, None, None],
    ...                    "gfp": [None, None, 0, None, None, None]})
    >>> [(order, ended, page) for _, order, ended, page in compaction_attempts(ev)]
    [(9, 'complete', True), (9, 'deferred', False)]
    """
    from kmemdes.mm.gfp import parse_gfp

    lf = events.lazy() if isinstance(events, pl.DataFrame) else events
    ev = pl.col("event")
    rows = (lf.filter(ev.is_in(_ATTEMPT_EVENTS) | ((ev == "mm_page_alloc") & (pl.col("order") > 0)))
            .select("pid", ev, pl.col("order").cast(pl.Int64), pl.col("pfn").cast(pl.Int64),
                    status=pl.col("args").str.extract(r"status=(\w+)"),
                    mask=pl.col("args").str.extract(r"gfp_mask=(\S+)"),
                    try_order=pl.col("args").str.extract(r"order=(-?\d+)").cast(pl.Int64, strict=False))
            .collect())
    out: list[tuple[int, int, str, bool]] = []
    open_: dict[int, list] = {}  # pid -> [gfp, order, last run status, deferred]

    def close(pid: int, page: bool) -> None:
        a = open_.pop(pid, None)
        if a is not None:
            out.append((a[0], a[1], a[2] or (ATTEMPT_DEFERRED if a[3] else ATTEMPT_NO_RUN), page))

    for pid, name, order, pfn, status, mask, try_order in rows.iter_rows():
        if name == "mm_page_alloc":
            a = open_.get(pid)
            if a is not None and a[1] == order:
                close(pid, pfn is not None and pfn >= 0)
        elif name == "mm_compaction_try_to_compact_pages":
            close(pid, False)
            try:
                gfp = parse_gfp(mask or "")  # cached per distinct mask (lru_cache)
            except ValueError:
                gfp = 0
            open_[pid] = [gfp, try_order if try_order is not None else -1, None, False]
        elif pid in open_:  # kcompactd's runs and deferrals belong to no attempt
            if name == "mm_compaction_end":
                open_[pid][2] = status
            elif name == "mm_compaction_deferred":
                open_[pid][3] = True
            else:  # direct reclaim: compaction gave no page
                close(pid, False)
    return out


#: :func:`decided_by_kernel` values
BY_WORKLOAD, BY_RECLAIM, BY_COMPACTION = 0, 1, 2


def decided_by_kernel(events: pl.DataFrame | pl.LazyFrame, ops: pl.DataFrame) -> pl.Series:
    """Per row of ``events`` (with ``seq`` and ``pid``): whether the task was inside the kernel's
    reclaim (1) or compaction (2) when the event happened, else 0.

    A free there is the kernel's own decision, not the workload's: reclaim frees page cache
    (kswapd's every event; a task between ``mm_vmscan_direct_reclaim_begin`` and ``_end``),
    compaction frees migrated sources and releases unused isolated pages (kcompactd's every
    event; a task between ``mm_compaction_begin`` and ``_end``).  kswapd and kcompactd are
    known by the pids that print ``mm_vmscan_kswapd_wake`` / ``mm_compaction_kcompactd_wake``.

    >>> ev = pl.DataFrame({"seq": [0, 1, 2, 3, 4], "pid": [5, 5, 5, 5, 9]})
    >>> ops = pl.DataFrame({"seq": [1, 3], "op": [OP_DR_BEGIN, OP_DR_END], "pid": [5, 5]},
    ...                    schema_overrides={"op": pl.Int8, "seq": pl.UInt32, "pid": pl.Int32})
    >>> decided_by_kernel(ev.with_columns(pl.col("seq").cast(pl.UInt32), pl.col("pid").cast(pl.Int32)), ops).to_list()
    [0, 1, 1, 0, 0]
    """
    lf = events.lazy() if isinstance(events, pl.DataFrame) else events
    kswapd = ops.filter(pl.col("op") == OP_KSWAPD_WAKE)["pid"].unique().implode()
    kcompactd = ops.filter(pl.col("op") == OP_KCOMPACTD)["pid"].unique().implode()
    marks = (ops.lazy().filter(pl.col("op").is_in([OP_DR_BEGIN, OP_DR_END, OP_BEGIN, OP_END]))
             .select("seq", "pid", state=pl.col("op").replace_strict(
                 {OP_DR_BEGIN: BY_RECLAIM, OP_DR_END: BY_WORKLOAD, OP_BEGIN: BY_COMPACTION, OP_END: BY_WORKLOAD},
                 return_dtype=pl.Int8))
             .sort("seq"))
    out = (lf.select(pl.col("seq").set_sorted(), "pid")
           .join_asof(marks, on="seq", by="pid", strategy="backward", check_sortedness=False)
           .select(pl.when(pl.col("pid").is_in(kswapd)).then(pl.lit(BY_RECLAIM, pl.Int8))
                   .when(pl.col("pid").is_in(kcompactd)).then(pl.lit(BY_COMPACTION, pl.Int8))
                   .otherwise(pl.col("state").fill_null(BY_WORKLOAD)).alias("decided"))
           .collect())
    return out["decided"]


# ------------------------------------------------------------------ the kernel's own latencies
_LINE = re.compile(r"^\s*(.+?)-(\d+)\s+\[(\d+)\][^:]*?\s(\d+)\.(\d+):\s+(\w+):\s?(.*)$")
_KV = re.compile(r"(\w+)=(\S+)")


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
