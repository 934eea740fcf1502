"""kmemdes/report/html.py and `kmemdes report`: the single-run report, end to end."""

from __future__ import annotations

import html as htmlmod
import json
import re
from html.parser import HTMLParser

import polars as pl

from kmemdes.cli import main
from kmemdes.report.figures import MAX_POINTS
from kmemdes.report.html import render_report, write_report
from kmemdes.report.load import load_run_dir
from kmemdes.report.page import plotly_js

EVIL = "<script>alert(1)</script>"


class _Tables(HTMLParser):
    """Every <table> as a list of rows of cell texts; every figure block's title/how/note texts."""

    def __init__(self):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.figs: list[dict] = []
        self._cell = None
        self._cls: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self._cls.append(a.get("class", ""))
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "div" and a.get("class") == "fig":
            self.figs.append({"title": "", "how": "", "note": ""})
        elif tag == "div" and a.get("class") in ("title", "how", "note") and self.figs:
            self._cell = None
            self._fig_part = a["class"]

    def handle_endtag(self, tag):
        if self._cls:
            self._cls.pop()
        if tag in ("td", "th") and self._cell is not None and self.tables and self.tables[-1]:
            self.tables[-1][-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        elif self._cls and self._cls[-1] in ("title", "how", "note") and self.figs:
            self.figs[-1][self._cls[-1]] += data


def _parse(text: str) -> _Tables:
    p = _Tables()
    p.feed(text)
    return p


def _table_with(p: _Tables, first_header: str) -> list[list[str]]:
    for t in p.tables:
        if t and t[0] and t[0][0] == first_header:
            return t
    raise AssertionError(f"no table starting with {first_header!r}")


def test_cli_report_writes_run_dir_report_html(capsys, run_copy):
    rc = main(["report", str(run_copy)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    dest = run_copy / "report.html"
    assert dest.is_file() and str(dest) in out and "MB" in out
    assert not list(run_copy.glob(".report.html.tmp-*"))


def test_cli_report_output_option_and_errors(capsys, small_run, tmp_path):
    rc = main(["report", str(small_run), "-o", str(tmp_path / "r.html")])
    assert rc == 0 and (tmp_path / "r.html").stat().st_size > 1_000_000
    capsys.readouterr()
    rc = main(["report", str(tmp_path / "missing")])
    out, err = capsys.readouterr()
    assert rc == 2 and err.strip() == f"kmemdes: error: {tmp_path / 'missing'}: no such run directory"
    rc = main(["report", str(small_run), "-o", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 2 and "is a directory" in err and "Traceback" not in err


def test_help_ends_with_an_example(capsys):
    for cmd in ("report", "compare"):
        assert main([cmd, "--help"]) == 0
        out = capsys.readouterr().out
        assert "Example:" in out and f"kmemdes {cmd} runs/" in out.split("Example:")[1]


def test_headline_tables_show_the_run_directory_numbers(small_run):
    text = render_report(load_run_dir(small_run))
    p = _parse(text)
    req = pl.read_parquet(small_run / "metrics" / "requests.parquet")
    rows = _table_with(p, "order")
    assert rows[0] == ["order", "requests", "failures", "failure rate", "may reclaim: requests", "failure rate",
                       "atomic: requests", "failure rate"]
    body = {r[0].split()[0]: r for r in rows[1:]}
    for o in sorted(req["order"].unique().to_list()):
        sub = req.filter(pl.col("order") == o)
        n, f = int(sub["count"].sum()), int(sub.filter(pl.col("path") == "failed")["count"].sum())
        assert body[str(o)][1] == f"{n:,}" and body[str(o)][2] == f"{f:,}"
        assert body[str(o)][3] == (f"{100 * f / n:.3g}%")
    # the final fragmentation table prints the last frag sample as debugfs does
    fr = _table_with(p, "zone / index")
    fin = pl.read_parquet(small_run / "metrics" / "frag.parquet")
    last = fin.filter((pl.col("t_ns") == fin["t_ns"].max()) & (pl.col("zone") == "Normal")).sort("order")
    row = next(r for r in fr if r[0] == "Normal: unusable")
    assert row[1:] == [f"{v // 1000}.{v % 1000:03d}" for v in last["unusable"].to_list()]
    # quirks from summary.json, in the collapsible config section
    quirks = _table_with(p, "rule")
    assert ["free_of_untraced_page", "724"] in quirks


def test_every_figure_has_a_title_an_explanation_and_data(small_run):
    text = render_report(load_run_dir(small_run))
    p = _parse(text)
    assert len(p.figs) == 18
    for f in p.figs:
        assert f["title"].strip() and len(f["how"].strip()) > 40, f
    specs = re.findall(r'<script type="application/json" id="fig\d+-data">(.*?)</script>', text, re.S)
    assert len(specs) == 18
    for s in specs:
        d = json.loads(s)
        assert d["data"], "figure without traces"
    for anchor in ("summary", "map", "frag", "free", "paths", "slab", "vmalloc", "dist", "config"):
        assert f'<section id="{anchor}">' in text and f'href="#{anchor}"' in text
    assert text.count(plotly_js()) == 1
    assert "<details><summary>Resolved config (config.toml)</summary>" in text


def test_long_series_are_downsampled_and_the_page_says_so(long_run, small_run):
    text = render_report(load_run_dir(long_run))
    notes = [f["note"] for f in _parse(text).figs if f["note"]]
    assert any(f"3,000 samples shown as {MAX_POINTS:,} time bins" in n for n in notes), notes
    specs = re.findall(r'<script type="application/json" id="fig\d+-data">(.*?)</script>', text, re.S)
    for s in specs:
        for tr in json.loads(s)["data"]:
            x = tr.get("x")
            if isinstance(x, dict) and tr.get("type") == "scatter":
                assert int(len(x["bdata"]) * 3 / 4 / 4) <= MAX_POINTS + 1
    small = render_report(load_run_dir(small_run))
    assert "Downsampled" not in small


def test_untrusted_text_is_shown_not_run(evil_run):
    text = render_report(load_run_dir(evil_run))
    assert EVIL not in text
    assert text.count("<script") == text.count("</script>")
    # visible as text: title, notes, config, log, cache and workload names (HTML-escaped)
    assert text.count(htmlmod.escape(EVIL)) >= 5
    # inside figure JSON, escaped for Plotly (&lt;) and for <script> (\u003c / \u0026)
    assert "\\u0026lt;script\\u0026gt;alert(1)\\u0026lt;/script\\u0026gt;" in text
    specs = re.findall(r'<script type="application/json" id="fig\d+-data">(.*?)</script>', text, re.S)
    names = [tr.get("name") for s in specs for tr in json.loads(s)["data"]]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in names


def test_report_is_deterministic(small_run, tmp_path):
    a = write_report(small_run, tmp_path / "a.html").read_bytes()
    b = write_report(small_run, tmp_path / "b.html").read_bytes()
    assert a == b


def test_missing_metrics_say_no_data(run_copy):
    for name in ("pagemap", "slab", "vmalloc", "failures"):
        (run_copy / "metrics" / f"{name}.parquet").unlink()
    text = render_report(load_run_dir(run_copy))
    assert "Physical memory map: no data in this run." in text
    assert "Slab memory by cache: no data in this run." in text
    assert "metrics/pagemap.parquet" in text
    assert len(_parse(text).figs) == 18 - 5   # map, 2 slab, vmalloc, failures


def test_engine_written_replay_report(replay_run, tmp_path):
    out = write_report(replay_run, tmp_path / "replay.html")
    text = out.read_text()
    p = _parse(text)
    summary = json.loads((replay_run / "summary.json").read_text())
    quirks = {r[0]: r[1] for r in _table_with(p, "rule")[1:]}
    assert quirks == {k: f"{v:,}" for k, v in sorted(summary["quirks"].items())}
    req = pl.read_parquet(replay_run / "metrics" / "requests.parquet")
    rows = _table_with(p, "order")
    assert sum(int(r[1].replace(",", "")) for r in rows[1:]) == req["count"].sum()
    assert len(p.figs) >= 14
    assert out.stat().st_size < 10_000_000
    # the memory map covers every online pageblock of the capture's machine
    pm = pl.read_parquet(replay_run / "metrics" / "pagemap.parquet")
    assert pm.filter(pl.col("t_ns") == 0).height == pm["pageblock"].n_unique()


def test_memory_map_cells_slider_and_polluted_blocks(small_run):
    """The map's cells follow pagemap.parquet: category from the migratetype (movable blocks holding
    unmovable/reclaimable pages apart), shade from the fill; one slider step per snapshot."""
    import base64

    import numpy as np

    text = render_report(load_run_dir(small_run))
    spec = next(json.loads(s) for s in re.findall(r'<script type="application/json" id="fig\d+-data">(.*?)</script>',
                                                  text, re.S) if '"sliders"' in s)
    pm = pl.read_parquet(small_run / "metrics" / "pagemap.parquet")
    snaps = sorted(pm["t_ns"].unique().to_list())
    heat = [t for t in spec["data"] if t["type"] == "heatmap"]
    assert len(heat) == 1 + len(snaps)
    steps = spec["layout"]["sliders"][0]["steps"]
    assert len(steps) == len(snaps)
    for i, st in enumerate(steps):
        vis = st["args"][0]["visible"]
        assert vis[0] is True and sum(vis) == 2 and vis[1 + i] is True

    def grid(tr):
        shape = [int(v) for v in tr["z"]["shape"].split(",")]
        return np.frombuffer(base64.b64decode(tr["z"]["bdata"]), dtype=np.float32).reshape(shape)

    pb0 = int(pm["pageblock"].min())
    for tr, t in ((heat[0], snaps[0]), (heat[-1], snaps[-1])):
        z = grid(tr)
        d = pm.filter(pl.col("t_ns") == t)
        seen = set()
        for pb, mt, free, mov, unm, rec in d.select("pageblock", "migratetype", "free", "movable", "unmovable",
                                                     "reclaimable").iter_rows():
            cat = {0: 0, 2: 3, 3: 4}.get(mt, 5) if mt != 1 else (2 if unm + rec > 0 else 1)
            seen.add(cat)
            v = z[(pb - pb0) // 64, (pb - pb0) % 64]
            assert int(v) == cat, (pb, mt, unm, rec, v)
            assert abs((v - cat - 0.08) / 0.84 - (1 - free / 512)) < 1e-4
        if t == snaps[-1]:
            assert 2 in seen, "the end snapshot of the fixture has polluted movable blocks"
    # page counts for hover: start and end only
    assert heat[0]["customdata"] and heat[-1]["customdata"] and "customdata" not in heat[1]


def test_a_run_directory_with_only_a_summary_still_gets_a_report(tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "summary.json").write_text('{"name": "bare", "kind": "run"}')
    text = write_report(bare).read_text()
    assert "Physical memory map: no data in this run." in text and "config.toml" in text
    assert len(_parse(text).figs) == 0
