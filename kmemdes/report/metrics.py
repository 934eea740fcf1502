"""Derived numbers of a run: the tables and headline metrics both reports show.

Everything here is computed from the run directory's frames (:class:`~kmemdes.report.load.RunData`)
with Polars; the HTML report and the comparison format the same numbers.

Latency percentiles come from the power-of-two histograms of ``latency.parquet``: a bucket
with lower bound ``b`` holds values in ``[b, 2b)`` (``[0, 1)`` for ``b = 0``), and a quantile
is interpolated linearly inside its bucket (the rule of Prometheus' ``histogram_quantile``),
so it is exact to within a factor of two; ``max`` is the upper edge ``2b`` of the highest
non-empty bucket (an upper bound).

>>> hist_quantile([32, 64], [10, 10], 0.5)
64.0
>>> hist_quantile([32, 64], [10, 10], 0.75)
96.0
>>> hist_quantile([0, 1], [1, 3], 0.0)
0.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import polars as pl

from kmemdes.errors import KmemdesError
from kmemdes.mm.gfp import MIGRATETYPE_NAMES
from kmemdes.report.load import RunData

__all__ = [
    "Metric",
    "hist_quantile",
    "bucket_upper",
    "latency_table",
    "requests_table",
    "path_table",
    "workload_table",
    "fallback_matrix",
    "compaction",
    "vmalloc_workloads",
    "request_labels",
    "final_frag",
    "final_counters",
    "zone_order",
    "main_zone",
    "downsample",
    "headline_metrics",
    "migratetype_name",
    "HEADLINE_ORDERS",
]

HEADLINE_ORDERS = (3, 9, 10)  # costly-order boundary, THP/pageblock order, MAX_PAGE_ORDER
_ZONE_RANK = {"DMA": 0, "DMA32": 1, "Normal": 2, "HighMem": 3, "Movable": 4, "Device": 5}


def migratetype_name(mt: int) -> str:
    """Name of a migratetype number as /proc/pagetypeinfo prints it.

    >>> migratetype_name(1), migratetype_name(7)
    ('Movable', 'type 7')
    """
    return MIGRATETYPE_NAMES[mt] if 0 <= mt < len(MIGRATETYPE_NAMES) else f"type {mt}"


def bucket_upper(b: int) -> int:
    """Upper edge of a power-of-two latency/size bucket with lower bound ``b``.

    >>> bucket_upper(0), bucket_upper(1), bucket_upper(4096)
    (1, 2, 8192)
    """
    return 1 if b <= 0 else 2 * b


def hist_quantile(buckets: Sequence[int], counts: Sequence[int], q: float) -> Optional[float]:
    """Quantile ``q`` (0..1) of a power-of-two histogram, linear inside the bucket; None when empty."""
    b = np.asarray(buckets, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    order = np.argsort(b, kind="stable")
    b, c = b[order], c[order]
    total = c.sum()
    if total <= 0:
        return None
    target = q * total
    cum = np.cumsum(c)
    i = int(np.searchsorted(cum, target, side="left"))
    i = min(i, len(b) - 1)
    while c[i] == 0 and i < len(b) - 1:
        i += 1
    lo = b[i]
    hi = 1.0 if lo <= 0 else 2.0 * lo
    before = cum[i] - c[i]
    frac = 0.0 if c[i] == 0 else (target - before) / c[i]
    return float(lo + (hi - lo) * min(max(frac, 0.0), 1.0))


def latency_table(latency: pl.DataFrame) -> pl.DataFrame:
    """Per (order, path) and per order over all paths (``path = "all"``): count, p50, p99, max in ns."""
    rows = []
    if latency.height == 0:
        return pl.DataFrame(schema={"order": pl.Int8, "path": pl.String, "count": pl.Int64, "p50": pl.Float64,
                                    "p99": pl.Float64, "max": pl.Float64})
    allp = latency.group_by(["order", "bucket_ns"]).agg(pl.col("count").sum()).with_columns(path=pl.lit("all"))
    both = pl.concat([latency.select("order", "path", "bucket_ns", "count"), allp.select("order", "path", "bucket_ns", "count")])
    for (order, path), g in both.sort(["order", "path", "bucket_ns"]).group_by(["order", "path"], maintain_order=True):
        bk, ct = g["bucket_ns"].to_numpy(), g["count"].to_numpy()
        nz = bk[ct > 0]
        rows.append((order, path, int(ct.sum()), hist_quantile(bk, ct, 0.5), hist_quantile(bk, ct, 0.99),
                     float(bucket_upper(int(nz.max()))) if len(nz) else None))
    df = pl.DataFrame(rows, schema={"order": pl.Int8, "path": pl.String, "count": pl.Int64, "p50": pl.Float64,
                                    "p99": pl.Float64, "max": pl.Float64}, orient="row")
    # "all" first within each order, then paths alphabetically
    return df.with_columns(_k=pl.col("path") != "all").sort(["order", "_k", "path"]).drop("_k")


def requests_table(requests: pl.DataFrame) -> pl.DataFrame:
    """Per order: requests and failures overall and per GFP class (``reclaim`` may reclaim, ``atomic`` may not).

    Failure rates are fractions (0..1); NaN-free: a class without requests has rate null.
    """
    r = requests.with_columns(failed=pl.when(pl.col("path") == "failed").then(pl.col("count")).otherwise(0))
    aggs = [pl.col("count").sum().alias("requests"), pl.col("failed").sum().alias("failures")]
    for cls in ("reclaim", "atomic"):
        m = pl.col("gfp_class") == cls
        aggs += [pl.col("count").filter(m).sum().alias(f"{cls}_requests"),
                 pl.col("failed").filter(m).sum().alias(f"{cls}_failures")]
    df = r.group_by("order").agg(aggs).sort("order")

    def rate(n: str, f: str) -> pl.Expr:
        return pl.when(pl.col(n) > 0).then(pl.col(f) / pl.col(n)).otherwise(None)

    return df.with_columns(failure_rate=rate("requests", "failures"),
                           reclaim_failure_rate=rate("reclaim_requests", "reclaim_failures"),
                           atomic_failure_rate=rate("atomic_requests", "atomic_failures"))


def path_table(requests: pl.DataFrame) -> pl.DataFrame:
    """Requests per (order, path): where the page allocator served each order."""
    return requests.group_by(["order", "path"]).agg(pl.col("count").sum()).sort(["order", "path"])


def workload_table(requests: pl.DataFrame) -> pl.DataFrame:
    """Per workload: requests, failures, failure rate."""
    return (requests.with_columns(failed=pl.when(pl.col("path") == "failed").then(pl.col("count")).otherwise(0))
            .group_by("workload").agg(pl.col("count").sum().alias("requests"), pl.col("failed").sum().alias("failures"))
            .with_columns(failure_rate=pl.when(pl.col("requests") > 0).then(pl.col("failures") / pl.col("requests")))
            .sort("workload"))


def fallback_matrix(fallbacks: pl.DataFrame) -> dict:
    """The steal/claim matrix: ``{"claim": M, "steal": M, "types": n, "pollute": k, ...}``.

    ``M[a][f]`` counts fallbacks of requests for migratetype ``a`` served from a block of
    type ``f`` (``__rmqueue_claim`` / ``__rmqueue_steal``); ``pollute`` counts steals by
    non-movable requests (an unmovable or reclaimable page placed in another type's block).
    """
    ntypes = 3
    if fallbacks.height:
        ntypes = max(ntypes, int(fallbacks["alloc_mt"].max()) + 1, int(fallbacks["fallback_mt"].max()) + 1)
    out: dict = {"types": ntypes}
    for kind in ("claim", "steal"):
        m = np.zeros((ntypes, ntypes), dtype=np.int64)
        for a, f, c in fallbacks.filter(pl.col("kind") == kind).group_by(["alloc_mt", "fallback_mt"]) \
                .agg(pl.col("count").sum()).iter_rows():
            m[a, f] += c
        out[kind] = m
        out[f"{kind}_total"] = int(m.sum())
    out["pollute"] = int(fallbacks.filter((pl.col("kind") == "steal") & (pl.col("alloc_mt") != 1))["count"].sum())
    out["fragmenting"] = int(fallbacks.filter(pl.col("fragmenting"))["count"].sum())
    return out


def final_counters(counters: pl.DataFrame) -> dict[str, int]:
    """The last sampled value of every cumulative counter, by name (sorted)."""
    if counters.height == 0:
        return {}
    last = counters.sort("t_ns").group_by("name").agg(pl.col("value").last()).sort("name")
    return {k: int(v) for k, v in last.iter_rows()}


def compaction(run: RunData) -> dict:
    """Direct compaction attempts (compaction stalls), successes and success rate; and what
    kcompactd did (``compact_daemon_wake``, ``compact_proactive_runs``: None when the run has
    no such counter).

    Direct compaction from ``summary.json``'s ``compaction`` when present, else from the final
    ``compact_stall`` / ``compact_success`` counters (/proc/vmstat semantics).
    """
    c = run.summary.get("compaction") or {}
    fc = final_counters(run.counters)
    if "attempts" in c:
        att, suc = int(c.get("attempts") or 0), int(c.get("success") or 0)
    else:
        att, suc = fc.get("compact_stall", 0), fc.get("compact_success", 0)
    return {"attempts": att, "success": suc, "success_rate": (suc / att) if att else None,
            "kcompactd_wakeups": fc.get("compact_daemon_wake"), "proactive_runs": fc.get("compact_proactive_runs")}


def vmalloc_workloads(config: dict) -> dict[str, int]:
    """The workloads of a run config whose requests are vmalloc calls, by the name the run records
    them under (``name``, else kind and index), with their size in bytes.  The engine records a
    vmalloc of SIZE under get_order(SIZE), although it is no page allocator request of that order.

    >>> vmalloc_workloads({"workloads": [{"kind": "driver", "api": "vmalloc", "size": 1 << 20},
    ...                                  {"kind": "vmalloc_churn", "size": "16K"}, {"kind": "anon"}]})
    {'driver0': 1048576, 'vmalloc_churn1': 16384}
    """
    from kmemdes.config import DriverWorkload, VmallocWorkload
    from kmemdes.mm.mm_init import parse_size

    order0 = DriverWorkload.model_fields["order"].default  # the config's defaults, for keys a run left out
    size0 = VmallocWorkload.model_fields["size"].default
    out: dict[str, int] = {}
    for i, w in enumerate(config.get("workloads") or []):
        if not isinstance(w, dict):
            continue
        kind = w.get("kind")
        try:
            if kind == "driver" and w.get("api") == "vmalloc":
                size = int(w.get("size") or 0) or 4096 << int(w.get("order", order0))
            elif kind == "vmalloc_churn":
                size = parse_size(str(w.get("size", size0)))
            else:
                continue
        except (TypeError, ValueError, KmemdesError):
            continue
        out[str(w.get("name") or f"{kind}{i}")] = size
    return out


def _bytes(b: int) -> str:
    """>>> _bytes(1 << 20), _bytes(1000000)
    ('1 MiB', '1,000,000 B')"""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if b >= (1 << shift) and b % (1 << shift) == 0:
            return f"{b >> shift} {unit}"
    return f"{b:,} B"


def request_labels(run: RunData) -> dict[int, str]:
    """What to call the requests recorded under each order: ``order N`` for the page allocator,
    ``vmalloc 1 MiB`` for an order whose requests all come from vmalloc workloads, ``order N +
    vmalloc 1 MiB`` when both share it."""
    labels: dict[int, str] = {}
    vm = vmalloc_workloads(run.config or {})
    req = run.requests
    if vm and req.height:
        for o, names in req.group_by("order").agg(pl.col("workload").unique()).iter_rows():
            ours = sorted(n for n in names if n in vm)
            if not ours:
                continue
            v = "vmalloc " + ", ".join(_bytes(b) for b in sorted({vm[n] for n in ours}))
            labels[int(o)] = v if len(ours) == len(names) else f"order {o} + {v}"
    if req.height:
        for o in req["order"].unique().to_list():
            labels.setdefault(int(o), f"order {o}")
    if run.latency.height:
        for o in run.latency["order"].unique().to_list():
            labels.setdefault(int(o), f"order {o}")
    return labels


def zone_order(zones) -> list[str]:
    """Zones in physical order (DMA, DMA32, Normal, ...), unknown names last, alphabetically.

    >>> zone_order(["Normal", "DMA", "DMA32"])
    ['DMA', 'DMA32', 'Normal']
    """
    return sorted(set(zones), key=lambda z: (_ZONE_RANK.get(z, 99), z))


def main_zone(run: RunData) -> Optional[str]:
    """The zone a reader looks at first: Normal (where GFP_KERNEL and user allocations land first,
    being the highest zone of the zonelist on 64-bit), else the zone with the most managed pages."""
    zones = set(run.frag["zone"].unique().to_list()) | set(run.score["zone"].unique().to_list())
    if "Normal" in zones:
        return "Normal"
    if run.score.height:
        m = run.score.group_by("zone").agg(pl.col("managed").max()).sort(["managed", "zone"], descending=[True, False])
        return m["zone"][0]
    zs = zone_order(zones)
    return zs[-1] if zs else None


def final_frag(frag: pl.DataFrame) -> pl.DataFrame:
    """The last sample of the fragmentation indices: zone, order, unusable, extfrag (thousandths)."""
    if frag.height == 0:
        return frag
    last = frag["t_ns"].max()
    return frag.filter(pl.col("t_ns") == last).sort(["zone", "order"])


def downsample(df: pl.DataFrame, keys: Sequence[str], values: Sequence[str], max_points: int = 2000,
               how: str = "mean") -> tuple[pl.DataFrame, int, int]:
    """Bin a time series to at most ``max_points`` equal-width time bins per key.

    With more than ``max_points`` distinct sample times, the span from the first to the
    last sample is cut into ``max_points`` bins of equal width; each non-empty bin reports
    ``t_s`` (its start, seconds) and, per value column ``v``: ``v`` (mean, or the last value
    with ``how="last"`` for cumulative counters), ``v_min`` and ``v_max``.  Otherwise the
    samples are returned as they are.  Returns the frame sorted by (keys, t_s), the number
    of sample times and the number of bins.

    >>> df = pl.DataFrame({"t_ns": [0, 10**9, 2 * 10**9, 3 * 10**9], "v": [1, 3, 5, 7]})
    >>> out, n, b = downsample(df, [], ["v"], max_points=2)
    >>> out["v"].to_list(), out["v_max"].to_list(), out["t_s"].to_list(), n, b
    ([2.0, 6.0], [3, 7], [0.0, 1.5], 4, 2)
    """
    times = df.select(pl.col("t_ns").unique().sort())
    n = times.height
    if n <= max_points:
        out = df.with_columns(t_s=pl.col("t_ns") / 1e9)
        for v in values:
            out = out.with_columns(pl.col(v).alias(f"{v}_min"), pl.col(v).alias(f"{v}_max"))
        return out.sort([*keys, "t_s"]), n, n
    t0, t1 = int(times["t_ns"][0]), int(times["t_ns"][-1])
    width = (t1 - t0) / max_points
    binned = df.with_columns(
        _bin=((pl.col("t_ns") - t0).cast(pl.Float64) / width).floor().cast(pl.Int64).clip(0, max_points - 1))
    agg = []
    for v in values:
        main = pl.col(v).sort_by("t_ns").last() if how == "last" else pl.col(v).mean()
        agg += [main.alias(v), pl.col(v).min().alias(f"{v}_min"), pl.col(v).max().alias(f"{v}_max")]
    out = (binned.group_by([*keys, "_bin"]).agg(agg)
           .with_columns(t_s=(t0 + pl.col("_bin").cast(pl.Float64) * width) / 1e9).drop("_bin"))
    nbins = binned.select(pl.col("_bin").n_unique()).item()
    return out.sort([*keys, "t_s"]), n, int(nbins)


@dataclass(frozen=True)
class Metric:
    """One headline number of a run, as a row of the comparison table.

    ``better`` is ``"lower"``, ``"higher"`` or None (no preferred direction).
    """

    key: str
    label: str
    unit: str
    value: Optional[float]
    better: Optional[str] = "lower"
    group: str = ""


def headline_metrics(run: RunData) -> list[Metric]:
    """The comparison rows of one run (mmtests compare-kernels.sh style: one number per row).

    Failure rate and latency per order (orders with requests), fallbacks, compaction,
    final unusable index at orders 3, 9, 10 per zone, mixed pageblocks at the end, the final
    value of every cumulative counter, requests and events per second.
    """
    out: list[Metric] = []
    s = run.summary
    total_req = int(run.requests["count"].sum()) if run.requests.height else s.get("requests")
    out.append(Metric("requests", "page allocator requests", "", total_req, None, "Run"))
    if s.get("events_replayed") is not None:
        out.append(Metric("events", "events replayed", "", s.get("events_replayed"), None, "Run"))
    out.append(Metric("sim_s", "simulated time", "s", (s["sim_ns"] / 1e9) if s.get("sim_ns") is not None else None,
                      None, "Run"))
    out.append(Metric("events_per_s", "simulation speed (wall clock)", "events/s", s.get("events_per_s"), "higher", "Run"))
    rt = requests_table(run.requests)
    what = request_labels(run)  # "order 8", or "vmalloc 1 MiB" for vmalloc calls recorded under get_order(size)
    for row in rt.iter_rows(named=True):
        o = row["order"]
        fr = row["failure_rate"]
        out.append(Metric(f"fail.o{o}", f"failure rate {what[o]}", "%", None if fr is None else 100.0 * fr,
                          "lower", "Failures"))
    for row in rt.iter_rows(named=True):
        o = row["order"]
        for cls in ("reclaim", "atomic"):
            fr = row[f"{cls}_failure_rate"]
            if fr is not None and row["failures"]:
                out.append(Metric(f"fail.o{o}.{cls}", f"failure rate {what[o]} ({cls})", "%", 100.0 * fr,
                                  "lower", "Failures"))
    lt = latency_table(run.latency).filter(pl.col("path") == "all")
    for row in lt.iter_rows(named=True):
        o = row["order"]
        out.append(Metric(f"lat.o{o}.p50", f"latency p50 {what[o]}", "ns", row["p50"], "lower", "Latency"))
        out.append(Metric(f"lat.o{o}.p99", f"latency p99 {what[o]}", "ns", row["p99"], "lower", "Latency"))
    stalls = s.get("stall_latency_ns") or {}  # simulated (kmemdes.sim.stalls) or the lab's tracepoints
    for kind, label in (("direct_reclaim", "direct reclaim stall"), ("direct_compaction", "direct compaction stall")):
        d = stalls.get(kind) or {}
        if d.get("n"):
            out.append(Metric(f"stall.{kind}.p50", f"{label} p50", "ns", d["p50"], "lower", "Latency"))
            out.append(Metric(f"stall.{kind}.p99", f"{label} p99", "ns", d["p99"], "lower", "Latency"))
    for what, d in ((s.get("lab") or {}).get("user_ns") or {}).items():  # a lab run's user-space timings
        if what != "thp_first_touch" and d.get("n"):  # (the THP first touches are order 9's latency above)
            out.append(Metric(f"user.{what}.p50", f"{what} p50 (user space)", "ns", d["p50"], "lower",
                              "Latency"))
            out.append(Metric(f"user.{what}.p99", f"{what} p99 (user space)", "ns", d["p99"], "lower", "Latency"))
    fb = fallback_matrix(run.fallbacks)
    out.append(Metric("fb.claim", "fallback claims", "", fb["claim_total"], "lower", "Fallbacks"))
    out.append(Metric("fb.steal", "fallback steals", "", fb["steal_total"], "lower", "Fallbacks"))
    out.append(Metric("fb.pollute", "pollutions (non-movable steal)", "", fb["pollute"], "lower", "Fallbacks"))
    cp = compaction(run)
    out.append(Metric("compact.attempts", "direct compaction attempts", "", cp["attempts"], None, "Compaction"))
    sr = cp["success_rate"]
    out.append(Metric("compact.success_rate", "direct compaction success rate", "%",
                      None if sr is None else 100.0 * sr, "higher", "Compaction"))
    deferred = (stalls.get("direct_compaction") or {}).get("deferred")
    if deferred is not None:
        out.append(Metric("compact.deferred", "direct compactions deferred in every zone (no compact_zone)", "",
                          deferred, None, "Compaction"))
    if cp["kcompactd_wakeups"] is not None:
        out.append(Metric("compact.kcompactd_wake", "kcompactd wakeups (compact_daemon_wake)", "",
                          cp["kcompactd_wakeups"], None, "Compaction"))
    if cp["proactive_runs"] is not None:
        out.append(Metric("compact.proactive_runs", "proactive compaction runs (kcompactd)", "",
                          cp["proactive_runs"], None, "Compaction"))
    ff = final_frag(run.frag)
    for z in zone_order(ff["zone"].unique().to_list()) if ff.height else []:
        for o in HEADLINE_ORDERS:
            v = ff.filter((pl.col("zone") == z) & (pl.col("order") == o))["unusable"]
            out.append(Metric(f"unusable.{z}.o{o}", f"final unusable index {z} order {o}", "",
                              v[0] / 1000.0 if len(v) else None, "lower", "Fragmentation"))
    if run.pageblocks.height:
        last = run.pageblocks.filter(pl.col("t_ns") == run.pageblocks["t_ns"].max())
        out.append(Metric("mixed.end", "mixed pageblocks at the end", "", int(last["mixed"].sum()), "lower",
                          "Fragmentation"))
        mov_mixed = last.filter(pl.col("migratetype") == 1)["mixed"].sum()
        out.append(Metric("mixed.movable.end", "movable pageblocks holding unmovable pages at the end", "",
                          int(mov_mixed), "lower", "Fragmentation"))
    for name, v in final_counters(run.counters).items():
        better = "higher" if name in ("compact_success",) else ("lower" if name in (
            "oom", "direct_reclaim", "compact_stall", "compact_fail", "kswapd_wakeups") else None)
        out.append(Metric(f"counter.{name}", name, "", v, better, "Counters (final)"))
    return out
