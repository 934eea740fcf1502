"""Plotly figures of one run (and overlays of several), built from run-directory frames.

Each ``fig_*`` function returns ``(figure, note)`` or ``None`` when the run has no data
for it; ``note`` says how the data was reduced for the page (downsampling, top-N,
aggregation) or is empty.  Long time series are cut to at most ``MAX_POINTS`` time bins
(:func:`kmemdes.report.metrics.downsample`); every string from the run is passed
through :func:`kmemdes.report.page.ptext` before it reaches a label.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from kmemdes.report.load import RunData
from kmemdes.report.metrics import (bucket_upper, downsample, fallback_matrix, main_zone, migratetype_name,
                                    path_table, zone_order)
from kmemdes.report.page import ptext

__all__ = [
    "MAX_POINTS", "size_label", "fig_path_shares", "fig_fallbacks", "fig_free_heatmap", "fig_buddyinfo",
    "fig_watermarks", "fig_score", "fig_frag", "fig_failures", "fig_pageblocks", "fig_pagemap", "fig_slab",
    "fig_vmalloc", "fig_counters", "fig_latency_cdf", "fig_sizes", "ORDER_COLORS", "MT_COLORS",
]

MAX_POINTS = 1200   # time bins per series: about one per pixel of a full-width figure
PAGE = 4096
MIB = float(1 << 20)
ORDER_COLORS = ["#3a2f7a", "#456ee3", "#35a8f7", "#1fdbc0", "#4ff77d", "#a4fc3b", "#dbde36", "#f9ad33",
                "#f46b18", "#d33305", "#991001"]   # turbo: order 0 (dark blue) .. 10 (dark red)
MT_COLORS = {0: "#d95f02", 1: "#1f78b4", 2: "#33a02c", 3: "#6a3d9a", 4: "#7f7f7f", 5: "#e7298a"}
PATH_ORDER = ["pcp", "pcp_refill", "buddy", "highatomic", "fallback_claim", "fallback_steal", "slowpath",
              "after_reclaim", "after_compaction", "failed"]
PATH_COLORS = {"pcp": "#1b9e77", "pcp_refill": "#66c2a5", "buddy": "#3182bd", "highatomic": "#9e9ac8",
               "fallback_claim": "#fdae6b", "fallback_steal": "#e6550d", "slowpath": "#bcbddc",
               "after_reclaim": "#756bb1", "after_compaction": "#54278f", "failed": "#cb181d"}
_FONT = dict(family="system-ui, -apple-system, Segoe UI, Roboto, Helvetica Neue, Arial, sans-serif", size=12,
             color="#1d2330")
_AX = dict(showline=True, linecolor="#9aa3b2", gridcolor="#e8ebf0", zeroline=False, ticks="outside",
           tickcolor="#9aa3b2", automargin=True)


def _layout(fig: go.Figure, *, height: int = 420, xtitle: str = "", ytitle: str = "", legend: bool = True,
            **kw) -> go.Figure:
    fig.update_layout(height=height, font=_FONT, margin=dict(l=70, r=30, t=50, b=55), plot_bgcolor="#ffffff",
                      paper_bgcolor="#ffffff", showlegend=legend, hovermode="closest",
                      legend=dict(orientation="v", x=1.01, y=1, font=dict(size=11)), **kw)
    fig.update_xaxes(**_AX)
    fig.update_yaxes(**_AX)
    if xtitle:
        fig.update_xaxes(title_text=xtitle)
    if ytitle:
        fig.update_yaxes(title_text=ytitle)
    return fig


def _f4(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def _f8(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _tx(t_s) -> dict:
    """The x of a time series: ``x0``/``dx`` when the times are evenly spaced (no array to store), else ``x``.

    >>> _tx([0.0, 0.5, 1.0])
    {'x0': 0.0, 'dx': 0.5}
    >>> _tx([0.0, 0.5, 0.7])["x"].dtype
    dtype('float32')
    """
    t = np.asarray(t_s, dtype=np.float64)
    if len(t) >= 3:
        d = np.diff(t)
        if d[0] > 0 and np.all(np.abs(d - d[0]) <= 1e-9 * max(1.0, abs(t[-1]))):
            return {"x0": float(t[0]), "dx": float(d[0])}
    return {"x": t.astype(np.float32)}


def size_label(b: int) -> str:
    """Human label of a byte count that is a power of two (or any count).

    >>> size_label(512), size_label(4096), size_label(2 << 20), size_label(3 << 30)
    ('512 B', '4 KiB', '2 MiB', '3 GiB')
    """
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if b >= (1 << shift) and b % (1 << shift) == 0:
            return f"{b >> shift} {unit}"
    return f"{b} B"


def _ns_label(ns: float) -> str:
    for unit, div in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= div:
            return f"{ns / div:g} {unit}"
    return f"{ns:g} ns"


def _ds_note(n: int, bins: int, how: str = "mean per bin") -> str:
    if n <= bins:
        return ""
    return f"Downsampled for size: {n:,} samples shown as {bins:,} time bins ({how}; hover shows the binned value)."


def _zone_menu(fig: go.Figure, zones: Sequence[str], trace_zones: Sequence[Optional[str]], default: str) -> None:
    """Dropdown that shows one zone's traces (traces with zone None are always shown)."""
    if len(zones) < 2:
        return
    buttons = [dict(label=f"zone {ptext(z)}", method="restyle",
                    args=[{"visible": [tz is None or tz == z for tz in trace_zones]}]) for z in zones]
    fig.update_layout(updatemenus=[dict(buttons=buttons, active=list(zones).index(default), x=0.0, y=1.02,
                                        xanchor="left", yanchor="bottom", direction="down", showactive=True,
                                        font=dict(size=11))])


# ---------------------------------------------------------------------------- headline figures

def fig_path_shares(requests: pl.DataFrame):
    """Stacked bars: per order, the share of requests served by each allocator path."""
    if requests.height == 0:
        return None
    pt = path_table(requests)
    orders = sorted(pt["order"].unique().to_list())
    totals = {o: int(pt.filter(pl.col("order") == o)["count"].sum()) for o in orders}
    paths = [p for p in PATH_ORDER if p in set(pt["path"].to_list())] + \
        sorted(set(pt["path"].to_list()) - set(PATH_ORDER))
    fig = go.Figure()
    for p in paths:
        sub = dict(pt.filter(pl.col("path") == p).select("order", "count").iter_rows())
        cnt = np.array([sub.get(o, 0) for o in orders], dtype=np.int64)
        share = _f4([100.0 * c / totals[o] if totals[o] else 0 for c, o in zip(cnt, orders)])
        fig.add_trace(go.Bar(x=[f"order {o}" for o in orders], y=share, name=ptext(p), customdata=cnt,
                             marker_color=PATH_COLORS.get(p), hovertemplate=f"{ptext(p)}: %{{y:.2f}}% "
                             "(%{customdata:,} requests)<extra>%{x}</extra>"))
    _layout(fig, height=380, ytitle="share of the order's requests (%)", barmode="stack")
    fig.update_yaxes(range=[0, 100])
    return fig, ""


def fig_fallbacks(fallbacks: pl.DataFrame):
    """Heatmaps of the claim and steal matrices (requested type x type of the block used)."""
    if fallbacks.height == 0:
        return None
    fb = fallback_matrix(fallbacks)
    n = fb["types"]
    names = [migratetype_name(i) for i in range(n)]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("claim (block taken over: __rmqueue_claim)",
                                                        "steal (page taken, block keeps its type: __rmqueue_steal)"),
                        horizontal_spacing=0.14)
    zmax = max(int(fb["claim"].max()), int(fb["steal"].max()), 1)
    for col, kind in ((1, "claim"), (2, "steal")):
        m = fb[kind].astype(np.int64)
        fig.add_trace(go.Heatmap(z=m.astype(np.float32), x=names, y=names, zmin=0, zmax=zmax, colorscale="Blues",
                                 text=m.astype(str).tolist(), texttemplate="%{text}", showscale=(col == 2),
                                 colorbar=dict(title=dict(text="fallbacks"), x=1.02),
                                 hovertemplate=f"{kind}: %{{z:,}} requests for %{{y}} served from a %{{x}} block"
                                               "<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text="type of the block used", row=1, col=col)
        fig.update_yaxes(title_text="requested migratetype", row=1, col=col, autorange="reversed")
    _layout(fig, height=380, legend=False)
    fig.update_xaxes(showgrid=False)
    fig.update_yaxes(showgrid=False)
    return fig, ""


# ---------------------------------------------------------------------------- free memory

def _buddy_by_order(run: RunData) -> pl.DataFrame:
    """Free blocks per (sample, zone, order) over all migratetypes (computed once per run)."""
    if "buddy_by_order" not in run.cache:
        run.cache["buddy_by_order"] = run.buddy.group_by(["t_ns", "zone", "order"]).agg(pl.col("nr_free").sum())
    return run.cache["buddy_by_order"]


def _buddy_by_order_ds(run: RunData):
    """:func:`_buddy_by_order` downsampled for plotting, with its zones and the zone shown first.

    Shared by the heatmap and the buddyinfo lines, so it is computed once per run.
    """
    if "buddy_by_order_ds" not in run.cache:
        ds, n, bins = downsample(_buddy_by_order(run), ["zone", "order"], ["nr_free"], MAX_POINTS)
        zones = zone_order(ds["zone"].unique().to_list())
        default = main_zone(run) if main_zone(run) in zones else zones[-1]
        run.cache["buddy_by_order_ds"] = (ds, n, bins, zones, default)
    return run.cache["buddy_by_order_ds"]


def fig_free_heatmap(run: RunData):
    """Heatmap order x time of free blocks (log colour), one zone at a time."""
    if run.buddy.height == 0:
        return None
    ds, n, bins, zones, default = _buddy_by_order_ds(run)
    fig = go.Figure()
    tz = []
    for z in zones:
        d = ds.filter(pl.col("zone") == z)
        times = np.unique(d["t_s"].to_numpy())
        grid = np.full((11, len(times)), np.nan, dtype=np.float32)
        ti = np.searchsorted(times, d["t_s"].to_numpy())
        grid[d["order"].to_numpy().astype(int), ti] = d["nr_free"].to_numpy()
        fig.add_trace(go.Heatmap(
            z=np.log10(grid + 1).astype(np.float32), x=_f4(times), y=list(range(11)), customdata=grid,
            colorscale="Viridis", zmin=0, visible=(z == default), name=ptext(z),
            colorbar=dict(title=dict(text="free blocks"), tickvals=[0, 1, 2, 3, 4, 5, 6],
                          ticktext=["0", "9", "99", "999", "9,999", "99,999", "999,999"]),
            hovertemplate="t = %{x:.3f} s<br>order %{y}: %{customdata:,.0f} free blocks<extra>" + ptext(z) + "</extra>"))
        tz.append(z)
    _zone_menu(fig, zones, tz, default)
    _layout(fig, height=380, xtitle="simulated time (s)", ytitle="order (block = 2^order pages)", legend=False)
    fig.update_yaxes(dtick=1)
    return fig, _ds_note(n, bins)


def fig_buddyinfo(run: RunData):
    """/proc/buddyinfo over time: free blocks per order as lines (log scale), one zone at a time."""
    if run.buddy.height == 0:
        return None
    ds, n, bins, zones, default = _buddy_by_order_ds(run)
    fig = go.Figure()
    tz = []
    for z in zones:
        for o in range(11):
            d = ds.filter((pl.col("zone") == z) & (pl.col("order") == o))
            if d.height == 0:
                continue
            fig.add_trace(go.Scatter(**_tx(d["t_s"]), y=_f4(d["nr_free"]), mode="lines", name=f"order {o}",
                                     line=dict(color=ORDER_COLORS[o], width=1.6), visible=(z == default),
                                     legendgroup=f"o{o}",
                                     hovertemplate=f"order {o}: %{{y:,.0f}} blocks<extra>{ptext(z)}</extra>"))
            tz.append(z)
    _zone_menu(fig, zones, tz, default)
    _layout(fig, xtitle="simulated time (s)", ytitle="free blocks (log scale)")
    fig.update_yaxes(type="log")
    return fig, _ds_note(n, bins)


def fig_watermarks(run: RunData):
    """Free memory against the zone watermarks (min/low/high), one zone at a time."""
    s = run.score
    if s.height == 0:
        return None
    vals = ["free_pages", "wmark_min", "wmark_low", "wmark_high", "boost", "pcp_pages"]
    ds, n, bins = downsample(s, ["zone"], vals, MAX_POINTS)
    zones = zone_order(ds["zone"].unique().to_list())
    default = main_zone(run) if main_zone(run) in zones else zones[-1]
    fig = go.Figure()
    tz = []
    styles = {"free_pages": ("free", "#1f78b4", "solid", 2.2), "wmark_high": ("high watermark", "#2ca02c", "dash", 1.4),
              "wmark_low": ("low watermark (kswapd wakes)", "#ff7f0e", "dash", 1.4),
              "wmark_min": ("min watermark (direct reclaim)", "#d62728", "dash", 1.4),
              "boost": ("watermark boost", "#9467bd", "dot", 1.2), "pcp_pages": ("on per-CPU lists", "#8c564b", "dot", 1.2)}
    for z in zones:
        d = ds.filter(pl.col("zone") == z)
        for v in vals:
            label, color, dash, w = styles[v]
            fig.add_trace(go.Scatter(**_tx(d["t_s"]), y=_f4(d[v].to_numpy() * (PAGE / MIB)), mode="lines", name=label,
                                     line=dict(color=color, dash=dash, width=w), visible=(z == default),
                                     hovertemplate=f"{label}: %{{y:,.1f}} MiB<extra>{ptext(z)}</extra>"))
            tz.append(z)
    _zone_menu(fig, zones, tz, default)
    _layout(fig, xtitle="simulated time (s)", ytitle="MiB")
    return fig, _ds_note(n, bins)


def fig_score(run: RunData):
    """Proactive compaction score per zone (0..100) over time, with kcompactd's start/stop marks."""
    s = run.score
    if s.height == 0:
        return None
    ds, n, bins = downsample(s, ["zone"], ["score"], MAX_POINTS)
    fig = go.Figure()
    for i, z in enumerate(zone_order(ds["zone"].unique().to_list())):
        d = ds.filter(pl.col("zone") == z)
        fig.add_trace(go.Scatter(**_tx(d["t_s"]), y=_f4(d["score"]), mode="lines", name=ptext(z),
                                 hovertemplate="score %{y:.0f}<extra>" + ptext(z) + "</extra>"))
    pro = (run.config.get("policy") or {}).get("compaction_proactiveness")
    if isinstance(pro, int) and not isinstance(pro, bool) and pro > 0:
        from kmemdes.mm.frag import fragmentation_score_wmark

        for low, label in ((False, "kcompactd starts above"), (True, "and stops at")):
            v = fragmentation_score_wmark(pro, low)
            fig.add_hline(y=v, line=dict(color="#7f7f7f", dash="dash", width=1),
                          annotation_text=f"{label} {v}", annotation_position="top left" if not low else "bottom left",
                          annotation_font_size=10)
    _layout(fig, height=320, xtitle="simulated time (s)", ytitle="compaction score (0..100)")
    fig.update_yaxes(range=[0, 101])
    return fig, _ds_note(n, bins)


def fig_frag(run: RunData, column: str = "unusable"):
    """Unusable free space index or extfrag index per order over time, one zone at a time."""
    f = run.frag
    if f.height == 0:
        return None
    how = "mean" if column == "unusable" else "last"
    ds, n, bins = downsample(f.select("t_ns", "zone", "order", column), ["zone", "order"], [column], MAX_POINTS, how)
    zones = zone_order(ds["zone"].unique().to_list())
    default = main_zone(run) if main_zone(run) in zones else zones[-1]
    fig = go.Figure()
    tz = []
    for z in zones:
        for o in range(11):
            d = ds.filter((pl.col("zone") == z) & (pl.col("order") == o))
            if d.height == 0:
                continue
            fig.add_trace(go.Scatter(**_tx(d["t_s"]), y=_f4(d[column].to_numpy() / 1000.0), mode="lines",
                                     name=f"order {o}", line=dict(color=ORDER_COLORS[o], width=1.6),
                                     visible=(z == default), legendgroup=f"o{o}",
                                     hovertemplate=f"order {o}: %{{y:.3f}}<extra>{ptext(z)}</extra>"))
            tz.append(z)
    _zone_menu(fig, zones, tz, default)
    label = "unusable free space index" if column == "unusable" else "extfrag index"
    _layout(fig, xtitle="simulated time (s)", ytitle=label)
    fig.update_yaxes(range=[-0.02, 1.02] if column == "unusable" else [-1.05, 1.05])
    return fig, _ds_note(n, bins, "mean per bin" if how == "mean" else "last sample of each bin")


def fig_failures(run: RunData, max_markers: int = MAX_POINTS):
    """Failed requests on the timeline: one marker per failure (or per time bin and order when many)."""
    f = run.failures
    if f.height == 0:
        return None
    fig = go.Figure()
    orders = sorted(f["order"].unique().to_list())
    note = ""
    total = run.summary.get("requests_by_order") or {}
    if f.height <= max_markers:
        for o in orders:
            d = f.filter(pl.col("order") == o)
            cd = np.stack([np.array([ptext(x) for x in d["gfp_flags"].to_list()], dtype=object),
                           np.array([ptext(x) for x in d["workload"].to_list()], dtype=object)], axis=1)
            fig.add_trace(go.Scatter(x=_f8(d["t_ns"].to_numpy() / 1e9), y=np.full(d.height, o, dtype=np.int8),
                                     mode="markers", name=f"order {o}",
                                     marker=dict(symbol="x-thin", size=9, line=dict(width=1.6, color=ORDER_COLORS[min(o, 10)])),
                                     customdata=cd.tolist(),
                                     hovertemplate="t = %{x:.6f} s, order %{y}<br>gfp %{customdata[0]}<br>"
                                                   "workload %{customdata[1]}<extra></extra>"))
    else:
        t_end = max(int(f["t_ns"].max()), int(run.summary.get("sim_ns") or 0), 1)
        width = max(t_end // max(max_markers // max(len(orders), 1), 1), 1)
        agg = (f.with_columns(_b=pl.col("t_ns") // width).group_by(["order", "_b"])
               .agg(pl.len().alias("n"), pl.col("t_ns").min().alias("t0")).sort(["order", "_b"]))
        for o in orders:
            d = agg.filter(pl.col("order") == o)
            cnt = d["n"].to_numpy()
            fig.add_trace(go.Scatter(x=_f8((d["_b"].to_numpy() * width + width / 2) / 1e9),
                                     y=np.full(d.height, o, dtype=np.int8), mode="markers", name=f"order {o}",
                                     marker=dict(size=_f4(4 + 12 * np.sqrt(cnt / cnt.max())),
                                                 color=ORDER_COLORS[min(o, 10)], opacity=0.75),
                                     customdata=cnt, hovertemplate="%{customdata:,} order-%{y} failures around "
                                                                   "t = %{x:.3f} s<extra></extra>"))
        note = (f"{f.height:,} failures grouped into time bins of {width / 1e9:.4g} s per order "
                "(marker area grows with the count; hover for the number).")
    capped = sum(int(v.get("failures", 0)) for v in total.values()) if isinstance(total, dict) else 0
    if capped > f.height:
        note = (note + " " if note else "") + (f"failures.parquet holds {f.height:,} of {capped:,} failures "
                                               "(the run directory caps the list).")
    _layout(fig, height=300, xtitle="simulated time (s)", ytitle="order of the failed request")
    fig.update_yaxes(dtick=1, range=[-0.5, 10.5])
    sim_s = (run.summary.get("sim_ns") or 0) / 1e9
    if sim_s > 0:
        fig.update_xaxes(range=[0, sim_s])
    return fig, note


# ---------------------------------------------------------------------------- pageblocks

def fig_pageblocks(run: RunData):
    """Pageblocks per migratetype (all zones) and mixed pageblocks over time."""
    p = run.pageblocks
    if p.height == 0:
        return None
    tot = p.group_by(["t_ns", "migratetype"]).agg(pl.col("blocks").sum(), pl.col("mixed").sum())
    ds, n, bins = downsample(tot, ["migratetype"], ["blocks", "mixed"], MAX_POINTS)
    fig = go.Figure()
    for mt in sorted(ds["migratetype"].unique().to_list()):
        d = ds.filter(pl.col("migratetype") == mt)
        if d["blocks"].max() == 0 and d["mixed"].max() == 0:
            continue
        name = migratetype_name(mt)
        color = MT_COLORS.get(mt, "#444444")
        fig.add_trace(go.Scatter(**_tx(d["t_s"]), y=_f4(d["blocks"]), mode="lines", name=f"{name} blocks",
                                 line=dict(color=color, width=2), legendgroup=name,
                                 hovertemplate=f"{name}: %{{y:,.0f}} pageblocks<extra></extra>"))
        if d["mixed"].max() > 0:
            fig.add_trace(go.Scatter(**_tx(d["t_s"]), y=_f4(d["mixed"]), mode="lines", name=f"{name}, mixed",
                                     line=dict(color=color, width=1.6, dash="dot"), legendgroup=name,
                                     hovertemplate=f"{name} blocks holding other-mobility pages: %{{y:,.0f}}"
                                                   "<extra></extra>"))
    _layout(fig, xtitle="simulated time (s)", ytitle="pageblocks (2 MiB each)")
    return fig, _ds_note(n, bins)


# pagemap categories: (label, light colour, dark colour)
_PM_CATS = [("Unmovable", "#fde0c5", "#a04a00"), ("Movable", "#dbe9f6", "#08458c"),
            ("Movable holding unmovable/reclaimable pages", "#fcbba1", "#99000d"),
            ("Reclaimable", "#d9f0d3", "#1b6a31"), ("HighAtomic", "#e7d4e8", "#6a2577"),
            ("Isolate / other", "#e3e3e3", "#3d3d3d")]
_MAX_CELLS = 16384          # cells per snapshot before adjacent pageblocks are merged
_CELL_BUDGET = 140_000      # cells over all snapshots drawn (keeps the page small)


def _pm_colorscale() -> list:
    k = len(_PM_CATS)
    cs = []
    for i, (_, light, dark) in enumerate(_PM_CATS):
        cs.append([i / k, light])
        cs.append([(i + 1) / k - 1e-6 if i < k - 1 else 1.0, dark])
    return cs


def _pm_grid(d: pl.DataFrame, pb0: int, k: int, cells: int, width: int):
    """z (category + fill) and customdata grids of one pagemap snapshot."""
    rows = -(-cells // width)
    cell = ((d["pageblock"].to_numpy() - pb0) // k).astype(np.int64)
    if k == 1:
        free = d["free"].to_numpy().astype(np.int32)
        mov = d["movable"].to_numpy().astype(np.int32)
        unm = d["unmovable"].to_numpy().astype(np.int32)
        rec = d["reclaimable"].to_numpy().astype(np.int32)
        mt = d["migratetype"].to_numpy().astype(np.int32)
        nb = np.ones(len(cell), dtype=np.int32)
    else:
        g = (d.with_columns(_c=pl.Series(cell))
             .group_by("_c").agg(pl.col("free").cast(pl.Int32).sum(), pl.col("movable").cast(pl.Int32).sum(),
                                 pl.col("unmovable").cast(pl.Int32).sum(), pl.col("reclaimable").cast(pl.Int32).sum(),
                                 pl.col("migratetype").mode().min().alias("mt"), pl.len().alias("nb")).sort("_c"))
        cell = g["_c"].to_numpy()
        free, mov, unm, rec = (g[c].to_numpy() for c in ("free", "movable", "unmovable", "reclaimable"))
        mt, nb = g["mt"].to_numpy().astype(np.int32), g["nb"].to_numpy().astype(np.int32)
    cat = np.select([mt == 0, (mt == 1) & (unm + rec > 0), mt == 1, mt == 2, mt == 3], [0, 2, 1, 3, 4], 5)
    used = 1.0 - free / np.maximum(nb * 512, 1)
    z = np.full(rows * width, np.nan, dtype=np.float32)
    z[cell] = cat + 0.08 + 0.84 * np.clip(used, 0, 1)
    cd_dtype = np.int16 if k <= 32 else np.int32
    cd = np.full((rows * width, 5), -1, dtype=cd_dtype)
    cd[cell] = np.stack([free, mov, unm, rec, mt], axis=1)
    return z.reshape(rows, width), cd.reshape(rows, width, 5)


def fig_pagemap(run: RunData):
    """Physical memory map: every pageblock coloured by migratetype and fill, at the start and
    at a snapshot chosen with a slider (default: the end)."""
    pm = run.pagemap
    if pm.height == 0:
        return None
    snaps = sorted(pm["t_ns"].unique().to_list())
    pb0, pb1 = int(pm["pageblock"].min()), int(pm["pageblock"].max())
    span = pb1 - pb0 + 1
    k = 1
    while -(-span // k) > _MAX_CELLS:
        k *= 2
    cells = -(-span // k)
    width = 64 if cells <= 8192 else 128
    rows = -(-cells // width)
    keep = max(2, min(len(snaps), _CELL_BUDGET // max(cells, 1)))
    if keep < len(snaps):
        idx = sorted(set(np.linspace(0, len(snaps) - 1, keep).round().astype(int).tolist()))
        shown = [snaps[i] for i in idx]
    else:
        shown = snaps
    cell_mib = 2 * k
    y = _f8(pb0 * 2 + np.arange(rows) * width * cell_mib)   # row start address, MiB
    unit, ydiv = ("GiB", 1024.0) if (pb1 + 1) * 2 > 4096 else ("MiB", 1.0)
    y = y / ydiv
    x = np.arange(width, dtype=np.int16)
    grids = {}
    by_t = pm.partition_by("t_ns", as_dict=True, maintain_order=True)
    for t in shown:
        d = by_t[(t,)] if (t,) in by_t else by_t[t]
        grids[t] = _pm_grid(d, pb0, k, cells, width)
    ncat = len(_PM_CATS)
    cbar = dict(title=dict(text="type (shade: light = free, dark = full)", side="right"),
                tickvals=[i + 0.5 for i in range(ncat)], ticktext=[c[0] for c in _PM_CATS], len=1.0, y=0.5,
                tickfont=dict(size=10))
    cell_txt = "2 MiB pageblock" if k == 1 else f"{k} pageblocks ({cell_mib} MiB, summed)"
    where = ("%{y:,.3f} GiB" if unit == "GiB" else "%{y:,} MiB") + " + %{x}×" + f"{cell_mib}" + " MiB (" + cell_txt + ")"
    hover = (where + "<br>free %{customdata[0]} · movable %{customdata[1]} · unmovable %{customdata[2]} · "
             "reclaimable %{customdata[3]} pages<br>migratetype %{customdata[4]} (0 Unmovable, 1 Movable, "
             "2 Reclaimable, 3 HighAtomic, 4 Isolate)<extra></extra>")
    hover_bare = where + "<br>(page counts: hover the first or last snapshot)<extra></extra>"
    two = len(shown) > 1
    fig = make_subplots(rows=1, cols=2 if two else 1, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=(f"start (t = {shown[0] / 1e9:.3f} s)",
                                        f"t = {shown[-1] / 1e9:.3f} s (slider below)") if two else
                        (f"t = {shown[0] / 1e9:.3f} s",))
    common = dict(x=x, y=y, zmin=0, zmax=ncat, colorscale=_pm_colorscale(), xgap=0, ygap=0, hoverongaps=False)
    z0, c0 = grids[shown[0]]
    fig.add_trace(go.Heatmap(z=z0, customdata=c0, showscale=True, colorbar=cbar, hovertemplate=hover, **common),
                  row=1, col=1)
    if two:
        for i, t in enumerate(shown):
            z, c = grids[t]
            last = i == len(shown) - 1
            # page counts (customdata) only for the end snapshot here: they dominate the page size
            fig.add_trace(go.Heatmap(z=z, customdata=c if last else None, hovertemplate=hover if last else hover_bare,
                                     showscale=False, visible=last, **common), row=1, col=2)
        steps = []
        for i, t in enumerate(shown):
            vis = [True] + [j == i for j in range(len(shown))]
            steps.append(dict(method="update", label=f"{t / 1e9:.2f} s",
                              args=[{"visible": vis}, {"annotations[1].text": f"t = {t / 1e9:.3f} s (slider below)"}]))
        fig.update_layout(sliders=[dict(active=len(shown) - 1, steps=steps, x=0.5, len=0.5, xanchor="left", y=0,
                                        yanchor="top", pad=dict(t=30),
                                        currentvalue=dict(visible=False))])
    # zone boundaries: a dotted line above the row where a zone starts, its name left of the map
    if "zone" in pm.columns:
        first = pm.filter(pl.col("t_ns") == shown[0]).group_by("zone").agg(pl.col("pageblock").min()).sort("pageblock")
        by_row: dict[int, list[str]] = {}
        for zname, pb in first.iter_rows():
            by_row.setdefault(min((pb - pb0) // k // width, rows - 1), []).append(ptext(zname))
        for r, znames in sorted(by_row.items()):
            yy = float(y[r])
            if r > 0:
                for ci in range(1, 3 if two else 2):
                    fig.add_shape(type="line", xref=f"x{'' if ci == 1 else ci} domain", x0=0, x1=1, yref="y",
                                  y0=yy - width * cell_mib / 2 / ydiv, y1=yy - width * cell_mib / 2 / ydiv,
                                  line=dict(color="#222222", width=1, dash="dot"))
            fig.add_annotation(xref="paper", x=0, xanchor="right", yref="y", y=yy, text=", ".join(znames) + " ▸",
                               showarrow=False, font=dict(size=10), xshift=-72)
    row_px = max(4.0, min(28.0, 640.0 / rows))
    height = int(min(1200, max(400, rows * row_px + 150)))
    _layout(fig, height=height, legend=False)
    fig.update_layout(margin=dict(l=150, r=30, t=50, b=70 if two else 30))
    fig.update_yaxes(autorange="reversed", ticksuffix=f" {unit}", showgrid=False)
    fig.update_xaxes(showgrid=False, ticks="")
    notes = []
    if k > 1:
        notes.append(f"{span:,} pageblocks merged {k} per cell (counts summed, colour = the most common type).")
    if len(shown) < len(snaps):
        notes.append(f"{len(shown)} of {len(snaps)} snapshots shown (evenly spaced, first and last kept).")
    return fig, " ".join(notes)


# ---------------------------------------------------------------------------- slab, vmalloc, counters

def fig_slab(run: RunData, what: str = "memory", top: int = 10):
    """Slab memory (pages) or internal fragmentation (bytes_alloc - bytes_req) over time, top caches."""
    s = run.slab
    if s.height == 0:
        return None
    if what == "memory":
        s = s.with_columns(v=pl.col("pages") * PAGE / MIB)
        ylabel, hov = "slab memory (MiB)", "MiB in slabs"
    else:
        s = s.with_columns(v=(pl.col("bytes_alloc") - pl.col("bytes_req")) / MIB)
        ylabel, hov = "internal fragmentation (MiB)", "MiB allocated but not requested"
    peak = s.group_by("cache").agg(pl.col("v").max()).sort(["v", "cache"], descending=[True, False])
    ncache = peak.height
    names = peak["cache"].head(top).to_list()
    sel = s.filter(pl.col("cache").is_in(names)).select("t_ns", "cache", "v")
    if ncache > top:
        rest = (s.filter(~pl.col("cache").is_in(names)).group_by("t_ns").agg(pl.col("v").sum())
                .with_columns(cache=pl.lit(f"\x00other {ncache - top} caches")).select("t_ns", "cache", "v"))
        sel = pl.concat([sel, rest])
    ds, n, bins = downsample(sel, ["cache"], ["v"], MAX_POINTS)
    fig = go.Figure()
    for c in names + ([f"\x00other {ncache - top} caches"] if ncache > top else []):
        d = ds.filter(pl.col("cache") == c)
        label = ptext(c.lstrip("\x00"))
        fig.add_trace(go.Scatter(**_tx(d["t_s"]), y=_f4(d["v"]), mode="lines", name=label,
                                 line=dict(width=1.6, dash="dot" if c.startswith("\x00") else "solid"),
                                 hovertemplate=f"%{{y:,.2f}} {hov}<extra>{label}</extra>"))
    _layout(fig, xtitle="simulated time (s)", ytitle=ylabel)
    note = _ds_note(n, bins)
    if ncache > top:
        note = (f"Top {top} of {ncache} caches by peak; the others summed. " + note).strip()
    return fig, note


def fig_vmalloc(run: RunData):
    """vmalloc: virtual space in use and backing pages (MiB), areas and lazy purges (counts)."""
    v = run.vmalloc
    if v.height == 0:
        return None
    ds, n, bins = downsample(v, [], ["areas", "va_bytes", "pages", "lazy_pages", "purges"], MAX_POINTS)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    t = _tx(ds["t_s"])
    fig.add_trace(go.Scatter(**t, y=_f4(ds["va_bytes"].to_numpy() / MIB), name="virtual space of live areas (MiB)",
                             line=dict(color="#1f78b4", width=2), hovertemplate="%{y:,.2f} MiB<extra>va</extra>"))
    fig.add_trace(go.Scatter(**t, y=_f4(ds["pages"].to_numpy() * PAGE / MIB), name="backing pages (MiB)",
                             line=dict(color="#33a02c", width=2), hovertemplate="%{y:,.2f} MiB<extra>pages</extra>"))
    fig.add_trace(go.Scatter(**t, y=_f4(ds["lazy_pages"].to_numpy() * PAGE / MIB),
                             name="freed, awaiting lazy purge (MiB)", line=dict(color="#ff7f0e", width=1.4, dash="dot"),
                             hovertemplate="%{y:,.2f} MiB<extra>lazy</extra>"))
    fig.add_trace(go.Scatter(**t, y=_f4(ds["areas"]), name="live areas (count, right axis)",
                             line=dict(color="#6a3d9a", width=1.4, dash="dash"),
                             hovertemplate="%{y:,.0f} areas<extra></extra>"), secondary_y=True)
    fig.add_trace(go.Scatter(**t, y=_f4(ds["purges"]), name="lazy purges so far (right axis)",
                             line=dict(color="#7f7f7f", width=1.2, dash="dashdot"),
                             hovertemplate="%{y:,.0f} purges<extra></extra>"), secondary_y=True)
    _layout(fig, xtitle="simulated time (s)")
    fig.update_yaxes(title_text="MiB", secondary_y=False)
    fig.update_yaxes(title_text="count", secondary_y=True, showgrid=False)
    return fig, _ds_note(n, bins)


def fig_counters(run: RunData):
    """Cumulative event counters (kswapd, reclaim, compaction, ...) over time, log scale."""
    c = run.counters
    if c.height == 0:
        return None
    ds, n, bins = downsample(c, ["name"], ["value"], MAX_POINTS, how="last")
    fig = go.Figure()
    for name in sorted(ds["name"].unique().to_list()):
        d = ds.filter(pl.col("name") == name)
        if d["value"].max() <= 0:
            continue
        fig.add_trace(go.Scatter(**_tx(d["t_s"]), y=_f8(d["value"]), mode="lines", name=ptext(name),
                                 line=dict(width=1.6), hovertemplate="%{y:,.0f}<extra>" + ptext(name) + "</extra>"))
    if not fig.data:
        return None
    _layout(fig, xtitle="simulated time (s)", ytitle="events so far (log scale)")
    fig.update_yaxes(type="log")
    return fig, _ds_note(n, bins, "last value of each bin")


# ---------------------------------------------------------------------------- distributions

def _cdf_xy(g: pl.DataFrame):
    g = g.sort("bucket_ns")
    b, c = g["bucket_ns"].to_numpy(), g["count"].to_numpy().astype(np.float64)
    tot = c.sum()
    if tot <= 0:
        return None
    x = np.concatenate([[max(b[0], 1) if b[0] > 0 else 0.5], [bucket_upper(int(v)) for v in b]])
    y = np.concatenate([[0.0], np.cumsum(c) / tot])
    return _f8(x), _f4(100.0 * y), int(tot)


def fig_latency_cdf(latency: pl.DataFrame, by: str = "order"):
    """Cumulative distribution of allocation latency per order (all paths) or per path (all orders)."""
    if latency.height == 0:
        return None
    g = latency.group_by([by, "bucket_ns"]).agg(pl.col("count").sum())
    keys = sorted(g[by].unique().to_list(), key=(lambda p: (PATH_ORDER.index(p) if p in PATH_ORDER else 99, p))
                  if by == "path" else None)
    fig = go.Figure()
    for k in keys:
        xy = _cdf_xy(g.filter(pl.col(by) == k))
        if xy is None:
            continue
        x, y, tot = xy
        name = f"order {k}" if by == "order" else ptext(k)
        color = ORDER_COLORS[min(int(k), 10)] if by == "order" else PATH_COLORS.get(k)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=f"{name} ({tot:,})", marker=dict(size=4),
                                 line=dict(width=1.8, color=color),
                                 hovertemplate=f"{name}: %{{y:.2f}}% of requests took < %{{x:,}} ns<extra></extra>"))
    _layout(fig, xtitle="latency (ns, log scale; points at power-of-two bucket edges)",
            ytitle="requests completed within (%)")
    fig.update_xaxes(type="log")
    fig.update_yaxes(range=[0, 101])
    return fig, ""


def fig_sizes(sizes: pl.DataFrame):
    """Allocation-size histograms (power-of-two buckets) per kind, log count scale."""
    if sizes.height == 0:
        return None
    buckets = sorted(sizes["bucket_bytes"].unique().to_list())
    labels = [size_label(b) for b in buckets]
    fig = go.Figure()
    colors = {"kmalloc": "#1f78b4", "page": "#33a02c", "vmalloc": "#ff7f0e", "user": "#6a3d9a"}
    for kind in sorted(sizes["kind"].unique().to_list(), key=lambda k: (list(colors).index(k) if k in colors else 9, k)):
        d = dict(sizes.filter(pl.col("kind") == kind).group_by("bucket_bytes").agg(pl.col("count").sum()).iter_rows())
        y = np.array([d.get(b, 0) for b in buckets], dtype=np.float64)
        y[y == 0] = np.nan
        fig.add_trace(go.Bar(x=labels, y=y, name=ptext(kind), marker_color=colors.get(kind),
                             hovertemplate=f"{ptext(kind)}: %{{y:,}} allocations of %{{x}} up to twice that"
                                           "<extra></extra>"))
    _layout(fig, height=380, xtitle="allocation size (power-of-two bucket lower bound)",
            ytitle="allocations (log scale)", barmode="group")
    fig.update_yaxes(type="log")
    return fig, ""
