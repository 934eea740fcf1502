"""kmemdes/report/metrics.py: derived numbers against independent arithmetic on the same files."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from kmemdes.mm.frag import unusable_free_index
from kmemdes.report.load import load_run_dir
from kmemdes.report.metrics import (downsample, fallback_matrix, final_frag, headline_metrics, hist_quantile,
                                    latency_table, main_zone, requests_table, zone_order)


def _bucket(v: float) -> int:
    return 0 if v < 1 else 1 << int(np.floor(np.log2(v)))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.5, 1e7), min_size=1, max_size=300), st.sampled_from([0.5, 0.9, 0.99]))
def test_histogram_quantile_is_within_the_bucket_of_the_exact_quantile(samples, q):
    b = [_bucket(v) for v in samples]
    ub, cnt = np.unique(b, return_counts=True)
    got = hist_quantile(ub, cnt, q)
    exact = float(np.quantile(samples, q, method="inverted_cdf"))
    lo = _bucket(exact)
    hi = 1 if lo == 0 else 2 * lo
    assert lo <= got <= hi, (got, exact)


def test_latency_table_per_order_and_path(small_run):
    run = load_run_dir(small_run)
    lt = latency_table(run.latency)
    for order, path, count, p50, p99, mx in lt.iter_rows():
        sub = run.latency.filter(pl.col("order") == order)
        if path != "all":
            sub = sub.filter(pl.col("path") == path)
        assert count == sub["count"].sum()
        top = int(sub.filter(pl.col("count") > 0)["bucket_ns"].max())
        assert mx == (2 * top if top else 1)
        assert p50 <= p99 <= mx


def test_requests_table_against_plain_sums(small_run):
    run = load_run_dir(small_run)
    tot: dict = {}
    for order, cls, path, _wl, count in pl.read_parquet(small_run / "metrics" / "requests.parquet").iter_rows():
        t = tot.setdefault(order, {"n": 0, "f": 0, "reclaim": [0, 0], "atomic": [0, 0]})
        t["n"] += count
        t[cls][0] += count
        if path == "failed":
            t["f"] += count
            t[cls][1] += count
    rt = requests_table(run.requests)
    assert rt["order"].to_list() == sorted(tot)
    for r in rt.iter_rows(named=True):
        t = tot[r["order"]]
        assert (r["requests"], r["failures"]) == (t["n"], t["f"])
        assert r["failure_rate"] == t["f"] / t["n"]
        assert r["atomic_failure_rate"] == t["atomic"][1] / t["atomic"][0]
        assert r["reclaim_requests"] == t["reclaim"][0]
    # the summary the fixture wrote agrees
    for o, v in run.summary["requests_by_order"].items():
        assert (v["attempts"], v["failures"]) == (tot[int(o)]["n"], tot[int(o)]["f"])


def test_fallback_matrix_and_pollution(small_run):
    run = load_run_dir(small_run)
    fb = fallback_matrix(run.fallbacks)
    claim = steal = pollute = 0
    for a, f, kind, _frag, c in run.fallbacks.iter_rows():
        if kind == "claim":
            claim += c
            assert fb["claim"][a, f] >= c
        else:
            steal += c
            pollute += c if a != 1 else 0
    assert (fb["claim_total"], fb["steal_total"], fb["pollute"]) == (claim, steal, pollute)
    assert fb["pollute"] == run.summary["fallbacks"]["pollute"]


def test_final_frag_is_the_kernel_index_of_the_final_buddy_state(replay_run):
    """On an engine-written run: the last frag sample equals unusable_free_index (mm/vmstat.c) of the last
    buddy sample, and the summary's final_unusable_by_order."""
    run = load_run_dir(replay_run)
    ff = final_frag(run.frag)
    last = run.buddy.filter(pl.col("t_ns") == run.buddy["t_ns"].max())
    for z in zone_order(ff["zone"].unique().to_list()):
        nr_free = [int(last.filter((pl.col("zone") == z) & (pl.col("order") == o))["nr_free"].sum()) for o in range(11)]
        got = ff.filter(pl.col("zone") == z).sort("order")["unusable"].to_list()
        assert got == [unusable_free_index(nr_free, o) for o in range(11)], z
        assert got == run.summary["final_unusable_by_order"][z], z
    assert main_zone(run) == "Normal"


def test_headline_metrics_values(small_run):
    run = load_run_dir(small_run)
    m = {x.key: x for x in headline_metrics(run)}
    req = pl.read_parquet(small_run / "metrics" / "requests.parquet")
    o9 = req.filter(pl.col("order") == 9)
    assert abs(m["fail.o9"].value - 100 * o9.filter(pl.col("path") == "failed")["count"].sum() / o9["count"].sum()) < 1e-9
    assert m["fail.o9"].better == "lower" and m["fail.o9"].unit == "%"
    assert m["unusable.Normal.o9"].value == run.summary["final_unusable_by_order"]["Normal"][9] / 1000
    pb = pl.read_parquet(small_run / "metrics" / "pageblocks.parquet")
    assert m["mixed.end"].value == pb.filter(pl.col("t_ns") == pb["t_ns"].max())["mixed"].sum()
    assert m["compact.attempts"].value == run.summary["compaction"]["attempts"]
    assert "counter.kswapd_wakeups" in m and "lat.o0.p99" in m
    # orders without requests get no failure-rate row
    assert "fail.o5" not in m


@settings(max_examples=40, deadline=None)
@given(st.integers(5, 400), st.integers(2, 50), st.sampled_from(["mean", "last"]))
def test_downsample_equal_width_bins(n, max_points, how):
    rng = np.random.default_rng(n * 31 + max_points)
    t = np.cumsum(rng.integers(1, 1000, n)).astype(np.int64)
    v = rng.integers(-100, 100, n)
    df = pl.DataFrame({"t_ns": t, "v": v})
    out, ns, bins = downsample(df, [], ["v"], max_points, how)
    assert ns == n and out.height == bins <= max(max_points, 1) if n > max_points else out.height == n
    if n <= max_points:
        assert out["v"].to_list() == v.tolist()
        return
    width = (t[-1] - t[0]) / max_points
    idx = np.minimum(np.floor((t - t[0]) / width).astype(int), max_points - 1)
    for row, b in zip(out.iter_rows(named=True), np.unique(idx)):
        vals = v[idx == b]
        ref = vals.mean() if how == "mean" else vals[-1]
        assert abs(row["v"] - ref) < 1e-9
        assert row["v_min"] == vals.min() and row["v_max"] == vals.max()
        assert abs(row["t_s"] - (t[0] + b * width) / 1e9) < 1e-12


def test_vmalloc_requests_are_labelled_vmalloc_and_compaction_split(tmp_path):
    """A vmalloc driver's calls are recorded under get_order(size) but named as vmalloc calls in the
    headline rows and the HTML report; compaction rows say direct compaction and show kcompactd."""
    from kmemdes.config import Config
    from kmemdes.demo import part2_config
    from kmemdes.report.html import render_report
    from kmemdes.report.metrics import request_labels
    from kmemdes.sim.engine import run_config

    cfg = part2_config("vmalloc", 3, 0)
    size = cfg["workloads"][0]["size"]
    assert size == 1 << 20
    order = (size - 1).bit_length() - 12  # get_order(1 MiB) = 8
    out, _ = run_config(Config.model_validate(cfg), tmp_path / "vm", progress=False)
    run = load_run_dir(out)
    assert request_labels(run)[order] == "vmalloc 1 MiB" and request_labels(run)[0] == "order 0"
    m = {x.key: x for x in headline_metrics(run)}
    assert m[f"fail.o{order}"].label == "failure rate vmalloc 1 MiB"
    assert m[f"lat.o{order}.p50"].label == "latency p50 vmalloc 1 MiB"
    assert not any(x.label.endswith(f"order {order}") for x in m.values())
    counters = pl.read_parquet(out / "metrics" / "counters.parquet").sort("t_ns")
    last = {n: v for n, v in counters.group_by("name").agg(pl.col("value").last()).iter_rows()}
    assert m["compact.attempts"].label == "direct compaction attempts"
    assert m["compact.attempts"].value == last["compact_stall"]
    assert m["compact.kcompactd_wake"].value == last["compact_daemon_wake"]
    assert m["compact.proactive_runs"].value == last["compact_proactive_runs"]
    html = render_report(run)
    assert f"vmalloc 1 MiB (recorded as order {order})" in html and "kcompactd wakeups" in html
