"""Comparison of runs side by side: HTML, Markdown and plain text (mmtests compare-kernels.sh style).

Runs are grouped into configurations: runs whose resolved configs differ only in ``seed``
are replicas of one configuration.  The baseline configuration comes first; every other
column shows its value and the difference to the baseline in percent.  With replicas a
cell shows the mean ± the half-width of the 95 % confidence interval (Student t), and a
difference is marked ``*`` when it is beyond run-to-run noise: Welch's t-test between the
two configurations' replicas gives p < 0.05 (so both need at least two replicas).

The config differences (dotted keys whose values differ between configurations) are
listed first, then the headline metrics (:func:`kmemdes.report.metrics.headline_metrics`),
then, in HTML, overlaid time series and distributions.

>>> _pct_diff(110.0, 100.0), _pct_diff(0.0, 0.0), _pct_diff(5.0, 0.0)
(10.0, 0.0, None)
>>> _common_label(["thp-seed1", "thp-seed2", "thp-seed3"])
'thp'
>>> _common_label(["policy.fallback=default,seed=1", "policy.fallback=default,seed=2"])
'policy.fallback=default'
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import plotly.graph_objects as go
import polars as pl

from kmemdes.errors import KmemdesError
from kmemdes.outpath import check_file_output
from kmemdes.report import figures as F
from kmemdes.report.load import RunData, flatten_config, load_run_dir
from kmemdes.report.metrics import Metric, downsample, headline_metrics, main_zone, request_labels, requests_table
from kmemdes.report.page import Page, Raw, esc, ptext, table_html
from kmemdes.report.stats import Summary, summarize, welch_p

__all__ = ["Group", "Comparison", "build_comparison", "render_comparison", "write_comparison", "FORMATS"]

FORMATS = ("html", "md", "text")
P_LIMIT = 0.05
_GROUP_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                 "#7f7f7f", "#bcbd22"]
LEGEND = ("Columns are configurations; runs whose configs differ only in seed are replicas (n = number of runs). "
          "With replicas a cell is the mean ± the half-width of its 95% confidence interval (Student t). "
          "(+x%) is the difference to the baseline's mean. * marks a difference beyond run-to-run noise: Welch's "
          "t-test p < 0.05 between the replicas of the two configurations (needs at least 2 replicas on both "
          "sides; without replicas nothing can be marked).")


@dataclass
class Group:
    """One configuration: its replica runs and a short label."""

    label: str
    runs: list[RunData]
    config: dict[str, Any]      # flattened config without seed (of the first run)

    @property
    def seeds(self) -> list:
        return [r.summary.get("seed", r.config.get("seed")) for r in self.runs]


@dataclass
class Row:
    """One metric across the configurations."""

    metric: Metric                  # of the first run that has it (label, unit, direction)
    values: list[list[float]]       # per group: the replicas' values
    summaries: list[Optional[Summary]]
    diffs: list[Optional[float]]    # % to the baseline mean (None for the baseline / undefined)
    pvalues: list[Optional[float]]


@dataclass
class Comparison:
    groups: list[Group]
    config_diff: list[tuple[str, list[str]]]
    rows: list[Row]


def _pct_diff(v: float, base: float) -> Optional[float]:
    if base == 0:
        return 0.0 if v == 0 else None
    return 100.0 * (v - base) / abs(base)


def _common_label(names: Sequence[str]) -> str:
    prefix = os.path.commonprefix(list(names))
    prefix = re.sub(r"[-_.,=]*(seed|rep|run|s|r)?[-_.,=]*$", "", prefix, flags=re.I)
    return prefix


def _config_key(run: RunData) -> tuple:
    if not run.config:
        return ("__path__", str(run.path))
    flat = flatten_config(run.config)
    flat.pop("seed", None)
    return tuple(sorted((k, repr(v)) for k, v in flat.items()))


def _group(runs: list[RunData], baseline: Optional[RunData]) -> list[Group]:
    keys: dict[tuple, list[RunData]] = {}
    for r in runs:
        keys.setdefault(_config_key(r), []).append(r)
    groups = []
    for k, rs in keys.items():
        flat = flatten_config(rs[0].config) if rs[0].config else {}
        flat.pop("seed", None)
        if len(rs) == 1:
            label = rs[0].label
        else:
            label = _common_label([r.label for r in rs]) or rs[0].label
            label = f"{label} (n={len(rs)})"
        groups.append(Group(label, rs, flat))
    if baseline is not None:
        bkey = _config_key(baseline)
        groups.sort(key=lambda g: 0 if _config_key(g.runs[0]) == bkey else 1)
    seen: dict[str, int] = {}
    for g in groups:
        if g.label in seen:
            seen[g.label] += 1
            g.label = f"{g.label} #{seen[g.label]}"
        else:
            seen[g.label] = 1
    return groups


def _fmt_value(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return str(v)


def _config_diff(groups: list[Group]) -> list[tuple[str, list[str]]]:
    keys: list[str] = []
    for g in groups:
        for k in g.config:
            if k not in keys:
                keys.append(k)
    out = []
    for k in keys:
        vals = [_fmt_value(g.config.get(k)) if k in g.config else "(absent)" for g in groups]
        if len(set(vals)) > 1:
            out.append((k, vals))
    # seed, like every key, only when it differs: between the columns, or within the one column of replicas
    seeds = [", ".join(_fmt_value(s) for s in g.seeds) for g in groups]
    if len(set(seeds)) > 1 or (len(groups) == 1 and len(set(map(str, groups[0].seeds))) > 1):
        out.append(("seed", seeds))
    return out


def _merge_labels(labels: list[str]) -> str:
    """One row label for a metric the runs name differently, their common words said once.

    >>> _merge_labels(["failure rate order 8", "failure rate vmalloc 1 MiB"])
    'failure rate order 8 / vmalloc 1 MiB'
    """
    words = [lb.split(" ") for lb in labels]
    n = 0
    while all(len(w) > n + 1 and w[n] == words[0][n] for w in words):
        n += 1
    return " ".join(words[0][:n] + [" / ".join(" ".join(w[n:]) for w in words)])


def build_comparison(runs: list[RunData], baseline: Optional[RunData] = None) -> Comparison:
    """Group ``runs`` into configurations and compute every comparison row."""
    groups = _group(runs, baseline)
    per_run = {id(r): {m.key: m for m in headline_metrics(r)} for g in groups for r in g.runs}
    keys: list[str] = []
    first: dict[str, Metric] = {}
    for g in groups:
        for r in g.runs:
            for k, m in per_run[id(r)].items():
                if k not in first:
                    first[k] = m
                    keys.append(k)
    # keep metric families together in the order of the first run's list
    order = {k: i for i, k in enumerate(keys)}
    group_rank: dict[str, int] = {}
    for k in keys:
        group_rank.setdefault(first[k].group, len(group_rank))
    keys.sort(key=lambda k: (group_rank[first[k].group], order[k]))
    rows = []
    for k in keys:
        labels = list(dict.fromkeys(per_run[id(r)][k].label for g in groups for r in g.runs if k in per_run[id(r)]))
        if len(labels) > 1:  # e.g. order 8 of a kmalloc run, vmalloc 1 MiB of a vmalloc run: say both
            first[k] = replace(first[k], label=_merge_labels(labels))
        values = [[float(per_run[id(r)][k].value) for r in g.runs
                   if k in per_run[id(r)] and per_run[id(r)][k].value is not None] for g in groups]
        sums = [summarize(v) for v in values]
        base = sums[0]
        diffs: list[Optional[float]] = [None]
        pvals: list[Optional[float]] = [None]
        for v, s in zip(values[1:], sums[1:]):
            diffs.append(None if (s is None or base is None) else _pct_diff(s.mean, base.mean))
            pvals.append(welch_p(values[0], v))
        rows.append(Row(first[k], values, sums, diffs, pvals))
    return Comparison(groups, _config_diff(groups), rows)


# ---------------------------------------------------------------------------- cells

def _num(v: Optional[float]) -> str:
    """A metric value: integers with thousands separators, other values to 4 significant digits.

    >>> _num(239571.0), _num(13.514), _num(0.001234), _num(1234.5), _num(None)
    ('239,571', '13.51', '0.001234', '1,234', '–')
    """
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    a = abs(v)
    if float(v).is_integer() or a >= 1000:
        return f"{v:,.0f}"
    return f"{v:.4g}"


def _pm(mean: float, hw: float) -> str:
    """``mean ± half-width`` with the half-width to two significant digits and the mean to the same decimals.

    >>> _pm(239929.7, 6243.3), _pm(13.514, 0.5852), _pm(3.0, 0.0)
    ('239,930 ± 6,243', '13.51 ± 0.59', '3 ± 0')
    """
    if hw <= 0 or not math.isfinite(hw):
        return f"{_num(mean)} ± 0"
    d = min(max(0, 1 - math.floor(math.log10(hw))), 8)
    return f"{mean:,.{d}f} ± {hw:,.{d}f}"


def _value_cell(s: Optional[Summary]) -> str:
    if s is None:
        return "–"
    if s.n > 1:
        return _pm(s.mean, s.half_width)
    return _num(s.mean)


def _diff_cell(d: Optional[float], p: Optional[float]) -> str:
    if d is None:
        return ""
    mark = "*" if (p is not None and p < P_LIMIT) else ""
    return f"({d:+.2f}%){mark}"


def _cells(c: Comparison) -> list[tuple[str, list[str]]]:
    out = []
    for row in c.rows:
        m = row.metric
        label = f"{m.label} ({m.unit})" if m.unit else m.label
        cells = []
        for i, (s, d, p) in enumerate(zip(row.summaries, row.diffs, row.pvalues)):
            cell = _value_cell(s)
            if i > 0 and s is not None:
                dc = _diff_cell(d, p)
                cell = f"{cell} {dc}" if dc else cell
            cells.append(cell)
        out.append((label, cells))
    return out


# ---------------------------------------------------------------------------- text and markdown

def _clean(s: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f]", " ", str(s))


def _text_table(headers: list[str], rows: list[list[str]], left: int = 1) -> str:
    rows = [[_clean(c) for c in r] for r in rows]
    headers = [_clean(h) for h in headers]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i < left else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths))).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    return "\n".join(lines)


def _md_escape(s: str) -> str:
    if isinstance(s, Raw):
        return str(s)
    return _clean(s).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;") \
        .replace("*", "\\*") if s else s


def _md_table(headers: list[str], rows: list[list[str]], left: int = 1) -> str:
    out = ["| " + " | ".join(_md_escape(h) for h in headers) + " |",
           "|" + "|".join("---" if i < left else "---:" for i in range(len(headers))) + "|"]
    for r in rows:
        out.append("| " + " | ".join(_md_escape(c) for c in r) + " |")
    return "\n".join(out)


def _runs_rows(c: Comparison) -> list[list[str]]:
    rows = []
    for i, g in enumerate(c.groups):
        rows.append([g.label + (" (baseline)" if i == 0 else ""), str(len(g.runs)),
                     ", ".join(str(r.path) for r in g.runs)])
    return rows


def render_text(c: Comparison, markdown: bool = False) -> str:
    """The comparison as plain text (fixed-width columns) or GitHub Markdown tables."""
    heads = [g.label for g in c.groups]
    table = _md_table if markdown else _text_table
    parts = []
    title = f"kmemdes compare: {len(c.groups)} configuration(s), {sum(len(g.runs) for g in c.groups)} run(s); " \
            f"baseline {c.groups[0].label}"
    parts.append("# " + _md_escape(title) if markdown else _clean(title))
    parts.append(("## Runs" if markdown else "Runs\n----"))
    parts.append(table(["configuration", "runs", "run directories"], _runs_rows(c), left=99))
    parts.append("## Config differences" if markdown else "Config differences\n------------------")
    if c.config_diff:
        parts.append(table(["key"] + heads, [[k] + v for k, v in c.config_diff], left=99))
    else:
        parts.append("(the configs are identical)")
    parts.append("## Metrics" if markdown else "Metrics\n-------")
    cur = None
    rows: list[list[str]] = []
    blocks = []
    for (label, cells), row in zip(_cells(c), c.rows):
        if row.metric.group != cur:
            if rows:
                blocks.append((cur, rows))
            cur, rows = row.metric.group, []
        rows.append([label] + cells)
    if rows:
        blocks.append((cur, rows))
    if markdown:
        allrows = []
        for grp, rs in blocks:
            allrows.append([Raw(f"**{_md_escape(grp)}**")] + [""] * len(heads))
            allrows.extend(rs)
        parts.append(_md_table(["metric"] + heads, allrows))
    else:
        allrows = []
        for grp, rs in blocks:
            allrows.append([f"[{grp}]"] + [""] * len(heads))
            allrows.extend([["  " + r[0]] + r[1:] for r in rs])
        parts.append(_text_table(["metric"] + heads, allrows))
    parts.append(("_" + LEGEND + "_") if markdown else LEGEND)
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------------------- HTML

def _html_metric_table(c: Comparison) -> Raw:
    heads = ["metric"] + [g.label for g in c.groups]
    out = ['<table class="cmp"><thead><tr>' + "".join(
        f'<th{" class=num" if i else ""}>{esc(h)}</th>' for i, h in enumerate(heads)) + "</tr></thead><tbody>"]
    cur = None
    for (label, cells), row in zip(_cells(c), c.rows):
        if row.metric.group != cur:
            cur = row.metric.group
            out.append(f'<tr><th colspan="{len(heads)}">{esc(cur)}</th></tr>')
        tds = []
        for i, cell in enumerate(cells):
            cls = "num"
            p, d = row.pvalues[i], row.diffs[i]
            if i > 0 and p is not None and p < P_LIMIT and d and row.metric.better:
                good = (d < 0) == (row.metric.better == "lower")
                cls += " good" if good else " bad"
            title = ""
            if i > 0 and p is not None:
                title = f' title="Welch p = {p:.3g}"'
            tds.append(f'<td class="{cls}"{title}>{esc(cell)}</td>')
        out.append(f"<tr><td>{esc(label)}</td>{''.join(tds)}</tr>")
    out.append("</tbody></table>")
    return Raw("".join(out))


def _overlay(c: Comparison, series, ytitle: str, how: str = "mean", log: bool = False):
    """Overlaid time series: ``series(run) -> (frame with t_ns and v) | None``; one colour per configuration."""
    fig = go.Figure()
    notes = set()
    for gi, g in enumerate(c.groups):
        color = _GROUP_COLORS[gi % len(_GROUP_COLORS)]
        for ri, r in enumerate(g.runs):
            df = series(r)
            if df is None or df.height == 0:
                continue
            ds, n, bins = downsample(df, [], ["v"], F.MAX_POINTS, how)
            if n > bins:
                notes.add(f"{n:,} samples shown as {bins:,} time bins")
            name = ptext(g.label) if len(g.runs) == 1 else f"{ptext(g.label)} seed {ptext(g.seeds[ri])}"
            fig.add_trace(go.Scatter(**F._tx(ds["t_s"]), y=F._f8(ds["v"]), mode="lines", name=name,
                                     legendgroup=f"g{gi}", line=dict(color=color, width=1.8 if len(g.runs) == 1 else 1.1,
                                                                     dash=["solid", "dot", "dash", "dashdot"][ri % 4]),
                                     hovertemplate="%{y:,.4g}<extra>" + name + "</extra>"))
    if not fig.data:
        return None
    F._layout(fig, xtitle="simulated time (s)", ytitle=ytitle)
    if log:
        fig.update_yaxes(type="log")
    note = ("Downsampled for size: " + "; ".join(sorted(notes)) + f" ({'mean' if how == 'mean' else 'last value'} "
            "per bin).") if notes else ""
    return fig, note


def _fail_rate_bars(c: Comparison):
    fig = go.Figure()
    orders: list[int] = []
    per_group = []
    for g in c.groups:
        vals: dict[int, list[float]] = {}
        for r in g.runs:
            for row in requests_table(r.requests).iter_rows(named=True):
                if row["failure_rate"] is not None:
                    vals.setdefault(row["order"], []).append(100.0 * row["failure_rate"])
        per_group.append(vals)
        orders = sorted(set(orders) | set(vals))
    orders = [o for o in orders if any(max(v.get(o, [0])) > 0 for v in per_group)]
    if not orders:
        return None
    names: dict[int, list[str]] = {}
    for g in c.groups:
        for r in g.runs:
            for o, lb in request_labels(r).items():
                names.setdefault(o, [])
                if lb not in names[o]:
                    names[o].append(lb)
    xs = [" / ".join(names.get(o) or [f"order {o}"]) for o in orders]
    for gi, (g, vals) in enumerate(zip(c.groups, per_group)):
        sums = [summarize(vals.get(o, [])) for o in orders]
        fig.add_trace(go.Bar(x=xs, y=F._f8([s.mean if s else np.nan for s in sums]),
                             name=ptext(g.label), marker_color=_GROUP_COLORS[gi % len(_GROUP_COLORS)],
                             error_y=dict(type="data", array=F._f8([s.half_width if s else 0 for s in sums]),
                                          visible=any(s is not None and s.n > 1 for s in sums)),
                             hovertemplate="%{y:.3g}%<extra>" + ptext(g.label) + "</extra>"))
    F._layout(fig, height=360, ytitle="failed requests (%)", barmode="group")
    return fig, ""


def _latency_cdf(c: Comparison):
    fig = go.Figure()
    for gi, g in enumerate(c.groups):
        for ri, r in enumerate(g.runs):
            if r.latency.height == 0:
                continue
            xy = F._cdf_xy(r.latency.group_by("bucket_ns").agg(pl.col("count").sum()))
            if xy is None:
                continue
            x, y, tot = xy
            name = ptext(g.label) if len(g.runs) == 1 else f"{ptext(g.label)} seed {ptext(g.seeds[ri])}"
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=name, legendgroup=f"g{gi}",
                                     marker=dict(size=4), line=dict(color=_GROUP_COLORS[gi % len(_GROUP_COLORS)],
                                                                    dash=["solid", "dot", "dash", "dashdot"][ri % 4]),
                                     hovertemplate="%{y:.2f}% within %{x:,} ns<extra>" + name + "</extra>"))
    if not fig.data:
        return None
    F._layout(fig, xtitle="latency (ns, log scale)", ytitle="requests completed within (%)")
    fig.update_xaxes(type="log")
    fig.update_yaxes(range=[0, 101])
    return fig, ""


def _unusable9(r: RunData):
    z = main_zone(r)
    if r.frag.height == 0 or z is None:
        return None
    return r.frag.filter((pl.col("zone") == z) & (pl.col("order") == 9)).select(
        "t_ns", (pl.col("unusable") / 1000.0).alias("v"))


def _free_mib(r: RunData):
    if r.score.height == 0:
        return None
    return r.score.group_by("t_ns").agg((pl.col("free_pages").sum() * 4096 / 2 ** 20).alias("v")).sort("t_ns")


def _mixed(r: RunData):
    if r.pageblocks.height == 0:
        return None
    return r.pageblocks.group_by("t_ns").agg(pl.col("mixed").sum().cast(pl.Float64).alias("v")).sort("t_ns")


def _slab_mib(r: RunData):
    if r.slab.height == 0:
        return None
    return r.slab.group_by("t_ns").agg((pl.col("pages").sum() * 4096 / 2 ** 20).alias("v")).sort("t_ns")


def _failures_cum(r: RunData):
    if r.failures.height == 0:
        return None
    f = r.failures.sort("t_ns").with_columns(v=pl.int_range(1, pl.len() + 1).cast(pl.Float64))
    return f.group_by("t_ns").agg(pl.col("v").max()).sort("t_ns")


def render_html(c: Comparison) -> str:
    """The comparison as one self-contained HTML page."""
    nruns = sum(len(g.runs) for g in c.groups)
    page = Page(title=f"kmemdes comparison: {' vs '.join(g.label for g in c.groups)}",
                subtitle=f"{len(c.groups)} configuration(s), {nruns} run(s); baseline: {c.groups[0].label}")
    page.section("config", "Config differences", "The dotted config keys whose values differ between the "
                 "configurations (everything else is identical); read these first.")
    if c.config_diff:
        page.html(table_html(["key"] + [g.label for g in c.groups], [[k] + v for k, v in c.config_diff],
                             numeric_from=99))
    else:
        page.text("The resolved configs are identical.")
    page.details("Runs", table_html(["configuration", "runs", "run directories"], _runs_rows(c), numeric_from=99),
                 open_=True)
    page.section("metrics", "Headline metrics", LEGEND)
    page.html(_html_metric_table(c))
    page.text("Colours: green = significantly better than the baseline, red = significantly worse (only for "
              "metrics with a preferred direction).", "lead")
    page.section("series", "Over time and distributions",
                 "One colour per configuration; replicas share the colour with different dashes.")
    for built, title, how in (
            (_fail_rate_bars(c), "Failure rate per order",
             "Share of page-allocator requests of each order that failed; error bars: 95% confidence interval over "
             "replicas."),
            (_overlay(c, _unusable9, "unusable free space index, order 9"), "Unusable free space index at order 9",
             "Share of free memory (largest zone) in blocks smaller than a 2 MiB pageblock: 0 good, 1 bad."),
            (_overlay(c, _free_mib, "free memory (MiB, all zones)"), "Free memory",
             "Free pages of all zones, in MiB."),
            (_overlay(c, _mixed, "mixed pageblocks"), "Mixed pageblocks",
             "Pageblocks holding pages of another mobility (e.g. unmovable pages in movable blocks); lower is better."),
            (_overlay(c, _failures_cum, "failures so far", how="last"), "Allocation failures over time",
             "Cumulative count of failed requests (from failures.parquet)."),
            (_overlay(c, _slab_mib, "slab memory (MiB)"), "Slab memory", "Pages held by all slab caches, in MiB."),
            (_latency_cdf(c), "Allocation latency (CDF, all orders and paths)",
             "Share of requests that completed within a given time; further left is faster.")):
        if built is None:
            page.text(f"{title}: no data in these runs.", "lead")
        else:
            page.figure(built[0], title, how, built[1])
    page.section("text", "As text")
    page.details("Markdown (for a pull request)", Raw(f"<pre>{esc(render_text(c, markdown=True))}</pre>"))
    page.details("Plain text (for a mailing list)", Raw(f"<pre>{esc(render_text(c))}</pre>"))
    return page.render()


# ---------------------------------------------------------------------------- entry points

def _load(run_dirs: Sequence[str | Path], baseline: Optional[str | Path]) -> tuple[list[RunData], Optional[RunData]]:
    if not run_dirs:
        raise KmemdesError("compare: give at least one run directory")
    runs: list[RunData] = []
    seen: dict[Path, RunData] = {}
    for d in run_dirs:
        key = Path(d).resolve()
        if key in seen:
            continue
        seen[key] = load_run_dir(d)
        runs.append(seen[key])
    base = None
    if baseline is not None:
        key = Path(baseline).resolve()
        if key not in seen:
            seen[key] = load_run_dir(baseline)
            runs.insert(0, seen[key])
        base = seen[key]
    return runs, base


def render_comparison(run_dirs: Sequence[str | Path], fmt: str = "html", baseline: Optional[str | Path] = None) -> str:
    """The comparison of ``run_dirs`` as a string in ``fmt`` (html, md or text)."""
    if fmt not in FORMATS:
        raise KmemdesError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    runs, base = _load(run_dirs, baseline)
    c = build_comparison(runs, base)
    if fmt == "html":
        return render_html(c)
    return render_text(c, markdown=(fmt == "md"))


def write_comparison(run_dirs: Sequence[str | Path], out: str | Path, fmt: str = "html",
                     baseline: Optional[str | Path] = None, force: bool = True) -> Path:
    """Write the comparison of ``run_dirs`` to ``out`` (atomically); replicas (configs differing only in
    seed) are shown as mean and 95% confidence interval.  Returns the path written."""
    from kmemdes.report.html import atomic_write

    text = render_comparison(run_dirs, fmt, baseline)
    dest = check_file_output(out, force=force)  # after the inputs were read: their errors come first
    atomic_write(dest, text)
    return dest
