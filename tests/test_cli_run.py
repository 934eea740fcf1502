"""``kmemdes run``: the few lines printed after a run."""

from __future__ import annotations

import tomllib
from pathlib import Path

from kmemdes.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_a_run_without_workloads_says_so(tmp_path, capsys):
    # frag-pattern has no workload: the fragmented initial state and kcompactd only
    cfg = ROOT / "experiments" / "frag-pattern.toml"
    assert not tomllib.loads(cfg.read_text()).get("workloads")
    assert main(["run", str(cfg), "--set", "duration=1s", "-o", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "requests: none (no workload asked for pages" in out
    assert "events/s" not in out and "run directory: " in out


# --------------------------------------------------------------- reliability (issue 15)

import json  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

SHIPPED = ROOT / "traces"


def _head(tmp_path, n=400) -> list[str]:
    import zstandard

    with open(SHIPPED / "a_idle_stream" / "trace.txt.zst", "rb") as f:
        text = zstandard.ZstdDecompressor().stream_reader(f).read(1 << 22).decode()
    return text.splitlines(keepends=True)[:n]


def _first(lines, event):
    return next(i for i, ln in enumerate(lines) if f" {event}: " in ln)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kmemdes: error: "), err
    return err[0]


@pytest.mark.parametrize("edit, rule", [
    (("mm_page_alloc", r"order=0", "order=-1"), "bad_page_field"),
    (("mm_page_free", r"order=0", "order=-1"), "bad_page_field"),
    (("mm_page_alloc", r"order=0", "order=99"), "bad_page_field"),
    (("mm_page_alloc", r"order=0", "order=11"), "bad_page_field"),
    (("mm_page_free", r"order=0", "order=20"), "bad_page_field"),
    # the parser's bad_field (stats: a problem) is skipped by the replay too
    (("mm_page_alloc", r"pfn=0x[0-9a-f]+", "pfn=-5"), "bad_page_field"),
    (("mm_page_alloc", r"pfn=0x[0-9a-f]+", "pfn=0xffffffffffffffff"), "bad_page_field"),
    (("mm_compaction_kcompactd_sleep", r"mm_compaction_kcompactd_sleep: nid=0",
      "mm_compaction_finished: node=0 zone=Normal   order=-1 ret=complete"), None),
])
@pytest.mark.parametrize("mode", ["mirror", "policy"])
def test_replay_of_fields_no_kernel_prints(tmp_path, capsys, edit, rule, mode):
    lines = _head(tmp_path, 3000)
    ev, old, new = edit
    i = _first(lines, ev)
    lines[i] = re.sub(old, new, lines[i], count=1)
    src = tmp_path / "t.txt"
    src.write_text("".join(lines))
    assert main(["replay", str(src), "--mode", mode, "-o", str(tmp_path / "r")]) == 0, capsys.readouterr().err
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["events_replayed"] + sum(s["quirks"].values()) == s["events"] == len(lines)
    assert sum(s["events_by_type"].values()) == s["events"]
    if rule:
        assert s["quirks"][rule] == 1
    else:
        assert "bad_page_field" not in s["quirks"]


@pytest.mark.parametrize("stamp, repair", [("0.000000", "timestamp_out_of_order"),
                                           ("18446744073709551615.999999", "timestamp_out_of_order"),
                                           ("9947.381637", "timestamp_out_of_order")])
def test_replay_of_timestamps_far_out_of_place_is_quick(tmp_path, capsys, stamp, repair):
    lines = _head(tmp_path)
    lines[50] = re.sub(r"\d+\.\d{6}:", stamp + ":", lines[50], count=1)
    src = tmp_path / "t.txt"
    src.write_text("".join(lines))
    t = time.monotonic()
    assert main(["replay", str(src), "-o", str(tmp_path / "r")]) == 0
    assert time.monotonic() - t < 20  # was minutes: 1 ms ticks and 100 ms samples through the jump
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["time_repairs"] == {repair: 1} and s["sim_ns"] < 10 * 10**9


@pytest.mark.parametrize("mode", ["mirror", "policy"])  # policy: kswapd and kcompactd tick through the hour
def test_replay_of_a_trace_with_an_idle_hour_skips_it(tmp_path, capsys, mode):
    lines = _head(tmp_path)
    shifted = [re.sub(r"(\d+)\.(\d{6}):", lambda m: f"{int(m.group(1)) + 3600}.{m.group(2)}:", ln, count=1)
               for ln in lines[200:]]
    src = tmp_path / "t.txt"
    src.write_text("".join(lines[:200] + shifted))
    t = time.monotonic()
    assert main(["replay", str(src), "--mode", mode, "-o", str(tmp_path / "r")]) == 0
    assert time.monotonic() - t < 30
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    # shortened to a minute: kswapd and kcompactd would otherwise wake 7,200 times in the hour
    assert 60 * 10**9 < s["sim_ns"] < 70 * 10**9 and s["time_repairs"] == {"idle_gap_shortened": 1}


def test_outputs_are_never_replaced_without_force(tmp_path, capsys):
    src = tmp_path / "t.txt"
    src.write_text("".join(_head(tmp_path, 200)))
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("x")
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    for cmd in ("replay", "run"):
        arg = str(src) if cmd == "replay" else str(ROOT / "experiments" / "frag-pattern.toml")
        extra = [] if cmd == "replay" else ["--set", "duration=1s"]
        for out, force, what in ((user, True, "not a kmemdes run directory"), (afile, False, "not a folder"),
                                 (tmp_path / "no" / "such", False, "does not exist"),
                                 (tmp_path / "proc" / "x", False, "does not exist")):
            assert main([cmd, arg, *extra, "-o", str(out)] + (["--force"] if force else [])) == 2
            assert what in _one_line_error(capsys)
        run = tmp_path / f"{cmd}-run"
        assert main([cmd, arg, *extra, "-o", str(run)]) == 0
        capsys.readouterr()
        assert main([cmd, arg, *extra, "-o", str(run)]) == 2
        assert "use --force" in _one_line_error(capsys)
        assert main([cmd, arg, *extra, "-o", str(run), "--force"]) == 0
    assert (user / "notes.txt").read_text() == "x" and afile.read_text() == "x"
    kmt = tmp_path / "a.kmt"
    assert main(["convert", str(src), "-o", str(kmt)]) == 0
    for cmd in (["convert", str(src), "-o", str(kmt)], ["report", str(tmp_path / "run-run"), "-o", str(afile)],
                ["compare", str(tmp_path / "run-run"), "-o", str(afile)]):
        capsys.readouterr()
        assert main(cmd) == 2
        assert "exists (use --force" in _one_line_error(capsys)
    assert main(["convert", str(src), "-o", "/proc/x.kmt"]) == 2
    assert "/proc/x.kmt: cannot write" in _one_line_error(capsys)


def test_a_killed_runs_leftover_is_removed_by_the_next_run(tmp_path, capsys):
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    left = tmp_path / f".r.tmp-{p.pid}"
    left.mkdir()
    (left / "summary.json").write_text("{")
    src = tmp_path / "t.txt"
    src.write_text("".join(_head(tmp_path, 100)))
    assert main(["replay", str(src), "-o", str(tmp_path / "r")]) == 0
    assert sorted(x.name for x in tmp_path.iterdir()) == ["r", "t.txt"]
