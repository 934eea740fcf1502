"""Validation: the comparison code on the real captures, and its accuracy against the targets."""

from __future__ import annotations

import json

import pytest

from kmemdes.cli import main
from kmemdes.sim.validate import format_validation, validate_capture


def test_validate_the_idle_capture(shipped, tmp_path, capsys):
    rc = main(["validate", str(shipped / "a_idle_stream"), "--json", "-o", str(tmp_path / "v.html")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    res = json.loads(out)
    # DMA and DMA32 did not move during the capture: exact
    for r in res["per_order"]:
        if r["zone"] in ("DMA", "DMA32"):
            assert r["model"] == r["kernel"], r
    assert abs(res["total_free_pages_rel_error"]) < 0.01
    assert res["events_replayed"] + sum(res["quirks"].values()) == res["events"] == 16177
    assert (tmp_path / "v.html").read_text().startswith("<!doctype html>")


def test_validate_needs_a_capture(capsys, tmp_path):
    rc = main(["validate", str(tmp_path)])
    assert rc == 2 and "no before/buddyinfo" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name, worst_order_error", [("b_compile_nohash", 0.20), ("c_fschurn", 0.20)])
def test_mirror_replay_reconstructs_the_after_snapshot(corpus, name, worst_order_error):
    """Issue target: per-order free blocks within 10 % (goal 2 %); measured worst orders are listed in the
    README's accuracy section. This test guards against regressions beyond the measured level."""
    res = validate_capture(corpus / name)
    normal = [r for r in res["per_order"] if r["zone"] == "Normal" and r["kernel"] >= 20]
    worst = max(abs(r["rel_error"]) for r in normal)
    assert worst <= worst_order_error, format_validation(res)
    within10 = sum(abs(r["rel_error"]) <= 0.10 for r in normal)
    assert within10 >= len(normal) - 3
    assert abs(res["total_free_pages_rel_error"]) < 0.01
    pbs = {(r["zone"], r["migratetype"]): r for r in res["pageblocks"]}
    assert abs(pbs[("Normal", "Movable")]["error"]) <= 10


def _vmstat(path):
    return {k: int(v) for k, v in (line.split() for line in path.read_text().splitlines())}


def test_kernel_counters_against_the_trace(shipped):
    """Pages allocated and freed over the capture: /proc/vmstat's pgalloc_* and pgfree deltas against the
    pages the trace shows, as the independent analyze.py counted them (analysis.json)."""
    cap = shipped / "a_idle_stream"
    res = validate_capture(cap)
    b, a = _vmstat(cap / "before" / "vmstat"), _vmstat(cap / "after" / "vmstat")
    an = json.loads((cap / "analysis.json").read_text())
    order = lambda k: int(k.split("order=")[1].split()[0])  # noqa: E731
    alloc = sum(n << order(k) for k, n in an["mm_page_alloc_order_migratetype"].items())
    freed = sum(n << order(k) for k, n in an["mm_page_free_orders"].items() if k.startswith("mm_page_free "))
    freed += an["pages"]["mm_page_free_batched"] - an["pages"]["mm_page_free_batched_after_mm_page_free_same_pfn"]
    pgalloc = sum(a[k] - b[k] for k in a if k.startswith("pgalloc_"))
    k = res["kernel_counters"]
    assert (k["pgalloc"], k["pgfree"]) == (pgalloc, a["pgfree"] - b["pgfree"])
    assert (k["trace_allocated"], k["trace_freed"]) == (alloc, freed)
    assert k["untraced_allocated"] == pgalloc - alloc and k["untraced_freed"] == a["pgfree"] - b["pgfree"] - freed
    text = format_validation(res)
    assert "kernel counters (/proc/vmstat)" in text


def test_targets_summary(shipped):
    """The target lines count every (zone, order) where the kernel's after/buddyinfo has blocks."""
    cap = shipped / "a_idle_stream"
    res = validate_capture(cap)
    nonzero = sum(int(n) > 0 for line in (cap / "after" / "buddyinfo").read_text().splitlines()
                  for n in line.split()[4:])
    po = res["targets"]["per_order_10pct"]
    assert po["of"] == nonzero and po["met"] + len(po["missed"]) == po["of"]
    assert all(abs(m["rel_error"]) > 0.10 for m in po["missed"])
    sl = res["targets"]["slab_5pct"]
    assert sl["met"] + len(sl["missed"]) == sl["of"] > 0
    assert "\ntargets:\n" in format_validation(res)


def test_normal_target_counts_orders_with_twenty_blocks(shipped):
    """The pressure target line counts the Normal orders where the kernel's after/buddyinfo has at least
    20 blocks, and misses exactly those more than 10 % off."""
    cap = shipped / "a_idle_stream"
    res = validate_capture(cap)
    normal = [int(n) for line in (cap / "after" / "buddyinfo").read_text().splitlines()
              if line.split()[3] == "Normal" for n in line.split()[4:]]
    nt = res["targets"]["normal_10pct"]
    assert nt["of"] == sum(n >= 20 for n in normal) > 0
    model = {r["order"]: r["model"] for r in res["per_order"] if r["zone"] == "Normal"}
    assert {m["order"] for m in nt["missed"]} == {o for o, n in enumerate(normal)
                                                 if n >= 20 and abs(model[o] - n) > 0.10 * n}
    assert f"Normal free blocks within 10 % at every order with at least 20 blocks: {nt['met']} of {nt['of']}" \
        in format_validation(res)


def test_text_output_says_how_many_slab_rows_are_left_out(shipped):
    """The slab table shows the caches the trace changed most and says how many it leaves out;
    the target lines carry no tracker reference."""
    res = validate_capture(shipped / "a_idle_stream")
    res["slab"] = [{"cache": f"cache{i}", "before": 100, "trace_net": i, "model": 100 + i, "kernel": 100 + i,
                    "rel_error": 0.0} for i in range(30)]
    text = format_validation(res)
    shown = [line for line in text.splitlines() if line.startswith("  cache")]
    assert len(shown) == 25 and shown[0].split()[0] == "cache29"  # largest |trace_net| first
    assert "... 5 more caches not shown" in text and "--json lists all 30" in text
    assert "\ntargets:\n" in text and "issue" not in text
    res["slab"] = res["slab"][:3]
    assert "not shown" not in format_validation(res)
