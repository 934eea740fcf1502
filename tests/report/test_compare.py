"""kmemdes/report/compare.py and `kmemdes compare`: grouping, statistics, the three formats."""

from __future__ import annotations

import json
import math
import re
import statistics

import polars as pl
import pytest

from kmemdes.cli import main
from kmemdes.report.compare import build_comparison, render_comparison, write_comparison
from kmemdes.report.load import load_run_dir

T975_DF2 = 4.303   # Student t table, two-sided 95 %, 2 degrees of freedom (3 replicas)


def _fail_rate(run_dir, order: int) -> float:
    r = pl.read_parquet(run_dir / "metrics" / "requests.parquet").filter(pl.col("order") == order)
    return 100.0 * r.filter(pl.col("path") == "failed")["count"].sum() / r["count"].sum()


def _all(replica_runs):
    return replica_runs["base"] + replica_runs["strict"] + replica_runs["single"]


def test_replicas_are_grouped_and_config_differences_come_first(replica_runs):
    c = build_comparison([load_run_dir(d) for d in _all(replica_runs)])
    assert [g.label for g in c.groups] == ["base (n=3)", "strict (n=3)", "single"]
    assert [len(g.runs) for g in c.groups] == [3, 3, 1]
    diff = dict(c.config_diff)
    assert diff["policy.fallback"] == ["default", "defrag_mode", "defrag_mode"]
    assert diff["seed"] == ["1, 2, 3", "1, 2, 3", "1"]
    assert set(diff) == {"policy.fallback", "description", "seed"}
    text = render_comparison(_all(replica_runs), "text")
    assert text.index("Config differences") < text.index("Metrics")


def test_mean_confidence_interval_and_difference_match_hand_computation(replica_runs):
    c = build_comparison([load_run_dir(d) for d in _all(replica_runs)])
    row = next(r for r in c.rows if r.metric.key == "fail.o9")
    base = [_fail_rate(d, 9) for d in replica_runs["base"]]
    strict = [_fail_rate(d, 9) for d in replica_runs["strict"]]
    for s, vals in ((row.summaries[0], base), (row.summaries[1], strict)):
        assert abs(s.mean - statistics.mean(vals)) < 1e-9
        assert abs(s.half_width - T975_DF2 * statistics.stdev(vals) / math.sqrt(3)) < 1e-3 * s.half_width
    assert abs(row.diffs[1] - 100 * (statistics.mean(strict) - statistics.mean(base)) / statistics.mean(base)) < 1e-9
    # half the fragmentation: the order-9 failure rate drops far beyond the replica noise
    assert row.pvalues[1] < 0.05 and row.diffs[1] < -30
    # a single run has no replicas: no test, no mark
    assert row.pvalues[2] is None
    # the DMA zone never changes in these runs: identical values, no mark
    dma = next(r for r in c.rows if r.metric.key == "unusable.DMA.o9")
    assert dma.pvalues[1] == 1.0 and dma.diffs[1] == 0.0


def test_text_format_marks_significant_differences(replica_runs):
    text = render_comparison(_all(replica_runs), "text")
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("failure rate order 9 (%)"))
    cells = re.split(r"\s{2,}", line.strip())
    assert len(cells) == 4
    assert cells[1].count("±") == 1 and "(" not in cells[1]          # baseline: value only
    assert re.fullmatch(r"[\d.]+ ± [\d.]+ \(-\d+\.\d\d%\)\*", cells[2])   # replicas: mean ± CI (diff)*
    assert re.fullmatch(r"[\d.]+ \([+-]\d+\.\d\d%\)", cells[3])           # single run: no CI, no mark
    dma = next(ln for ln in text.splitlines() if "final unusable index DMA order 9" in ln)
    assert "*" not in dma
    assert "Welch's t-test p < 0.05" in text
    # fixed-width: every metrics line is as wide as its header or shorter (right-aligned cells)
    block = text.split("Metrics\n-------\n\n")[1].split("\n\n")[0].splitlines()
    assert len({len(ln) for ln in block if not ln.lstrip().startswith("[")}) == 1


def test_baseline_option_puts_that_configuration_first(replica_runs):
    dirs = _all(replica_runs)
    c = build_comparison([load_run_dir(d) for d in dirs],
                         load_run_dir(replica_runs["strict"][1]))
    assert c.groups[0].label == "strict (n=3)"
    text = render_comparison(dirs[:3], "text", baseline=replica_runs["single"][0])
    assert "single (baseline)" in text      # added although not in the list


def test_markdown_tables_are_well_formed_and_escaped(replica_runs, evil_run):
    md = render_comparison(_all(replica_runs) + [evil_run], "md")
    tables = [blk for blk in md.split("\n\n") if blk.startswith("| ")]
    assert len(tables) == 3
    for t in tables:
        lines = t.splitlines()
        ncol = len(re.split(r"(?<!\\)\|", lines[0])) - 2
        assert re.fullmatch(r"\|(---:?\|)+", lines[1]) and lines[1].count("|") - 1 == ncol
        for ln in lines[2:]:
            assert len(re.split(r"(?<!\\)\|", ln)) - 2 == ncol, ln
    assert "<script>" not in md and "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "**Failures**" in md and r"\*" in md


def test_cli_compare_formats(capsys, replica_runs, tmp_path, monkeypatch):
    dirs = [str(d) for d in _all(replica_runs)]
    assert main(["compare", *dirs, "--format", "text"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("kmemdes compare: 3 configuration(s), 7 run(s); baseline base (n=3)")
    assert main(["compare", *dirs, "--format", "md", "-o", str(tmp_path / "c.md")]) == 0
    assert (tmp_path / "c.md").read_text().startswith("# kmemdes compare")
    monkeypatch.chdir(tmp_path)
    assert main(["compare", *dirs]) == 0
    out = capsys.readouterr().out
    assert "compare.html" in out and (tmp_path / "compare.html").stat().st_size > 1_000_000
    assert main(["compare", *dirs, "--format", "pdf"]) == 2
    assert main(["compare", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "nope: no such run directory" in err and "Traceback" not in err


def test_write_comparison_html_for_sweeps(replica_runs, tmp_path):
    out = write_comparison(_all(replica_runs), tmp_path / "c.html")
    text = out.read_text()
    assert not list(tmp_path.glob(".c.html.tmp-*"))
    specs = re.findall(r'<script type="application/json" id="fig\d+-data">(.*?)</script>', text, re.S)
    assert len(specs) == 7
    bars = json.loads(specs[0])["data"]
    assert [b["name"] for b in bars] == ["base (n=3)", "strict (n=3)", "single"]
    assert bars[0]["error_y"]["visible"] is True and bars[2]["error_y"]["visible"] is False
    overlay = json.loads(specs[1])["data"]
    assert len(overlay) == 7       # one line per run
    assert "Config differences" in text and text.index("Config differences") < text.index("Headline metrics")
    assert 'class="num good"' in text     # significant improvements are coloured


def test_identical_runs_compare_as_equal(small_run):
    text = render_comparison([small_run], "text")
    assert "(the configs are identical)" in text
    with pytest.raises(Exception, match="at least one run directory"):
        render_comparison([], "text")


def test_config_differences_list_only_keys_that_differ(replica_runs):
    """Two single runs with the same seed and different policies: the seed is not a difference."""
    base, strict = replica_runs["base"][0], replica_runs["strict"][0]   # both seed 1
    diff = dict(build_comparison([load_run_dir(base), load_run_dir(strict)]).config_diff)
    assert diff["policy.fallback"] == ["default", "defrag_mode"] and "seed" not in diff
    # replicas of one configuration differ only in seed: that is listed
    diff = dict(build_comparison([load_run_dir(d) for d in replica_runs["base"]]).config_diff)
    assert diff == {"seed": ["1, 2, 3"]}
    # two configurations with the same replica seeds: the seeds do not differ between the columns
    diff = dict(build_comparison([load_run_dir(d) for d in replica_runs["base"] + replica_runs["strict"]]).config_diff)
    assert "seed" not in diff and "policy.fallback" in diff
