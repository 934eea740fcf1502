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
