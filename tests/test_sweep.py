"""kmemdes sweep: expansion, naming, validation, local pool, resume, failures, and a real Dask cluster."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import tomllib
from pathlib import Path

import pytest

from kmemdes.cli import main
from kmemdes.errors import KmemdesError
from kmemdes.sweep import parse_set, plan_sweep, run_name, run_one, run_sweep

CONFIG = """\
name = "sweeptest"
duration = "0.2s"
[machine]
mem = "128M"
[initial]
state = "fragmented"
[[workloads]]
kind = "driver"
order = 9
interval = "50ms"
"""
SETS = ["--set", "policy.fallback=default,defrag_mode", "--set", "seed=1..2"]
NAMES = ["policy.fallback=default,seed=1", "policy.fallback=default,seed=2",
         "policy.fallback=defrag_mode,seed=1", "policy.fallback=defrag_mode,seed=2"]
VOLATILE = ("wall_s", "events_per_s")


def _children() -> set[int]:
    """Live child processes of this test process (except multiprocessing's resource tracker)."""
    import psutil

    out = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if "resource_tracker" not in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                out.add(p.pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _mtimes(d: Path) -> dict[str, int]:
    return {n: (d / n / "summary.json").stat().st_mtime_ns for n in NAMES if (d / n).exists()}


def _summary(run_dir: Path) -> dict:
    s = json.loads((run_dir / "summary.json").read_text())
    return {k: v for k, v in s.items() if k not in VOLATILE}


def _crashing_runner(config_text: str, out: str) -> dict:
    """A pool worker that dies (like an OOM kill) on the defrag_mode seed=1 run and runs the others."""
    if out.endswith("policy.fallback=defrag_mode,seed=1"):
        os._exit(9)
    return run_one(config_text, out)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("cfg") / "sweeptest.toml"
    p.write_text(CONFIG)
    return p


@pytest.fixture(scope="module")
def local_sweep(config, tmp_path_factory):
    """The 4-run sweep on a 2-worker local pool, run once: (dir, exit code, stdout, stderr, summaries)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("sweep") / "s"
    before = _children()
    # through the console entry point in a child process, as a user runs it
    p = subprocess.run([sys.executable, "-m", "kmemdes.cli", "sweep", str(config), *SETS, "-o", str(out),
                        "--workers", "2"], capture_output=True, text=True, timeout=300)
    assert _children() <= before
    return out, p.returncode, p.stdout, p.stderr, {n: _summary(out / n) for n in NAMES if (out / n).is_dir()}


@pytest.fixture
def sweep_copy(local_sweep, tmp_path) -> Path:
    dest = tmp_path / "s"
    shutil.copytree(local_sweep[0], dest)
    return dest


# ----------------------------------------------------------------------------------- expansion, names

def test_parse_set_lists_ranges_and_toml_values():
    assert parse_set("seed=1..10").values == list(range(1, 11))
    assert parse_set("seed=-1..1,5").values == [-1, 0, 1, 5]
    assert parse_set("policy.kswapd=true,false").values == [True, False]
    assert parse_set("initial.fill=0.5, 0.75").values == [0.5, 0.75]
    assert parse_set("x=[1, 2],[3]").values == [[1, 2], [3]]
    assert parse_set('name="a,b",c').values == ["a,b", "c"]
    assert parse_set("duration=100ms,2s").values == ["100ms", "2s"]
    for bad, msg in [("seed", "expected KEY=V1,V2"), ("=1", "missing the key"), ("seed=1,,2", "empty value"),
                     ("seed=5..2", "empty range"), ("seed=1,1", "given twice"), ("seed=1..3,2", "given twice")]:
        with pytest.raises(KmemdesError, match=msg):
            parse_set(bad)


def test_run_names_are_safe_and_distinct():
    assert run_name({"policy.fallback": "defrag_mode", "seed": 2}) == "policy.fallback=defrag_mode,seed=2"
    assert run_name({"policy.kswapd": False, "initial.fill": 0.5}) == "policy.kswapd=false,initial.fill=0.5"
    raw = "initial.snapshot=/a/b c"
    assert run_name({"initial.snapshot": "/a/b c"}) == "initial.snapshot=_a_b_c~" + hashlib.sha1(raw.encode()).hexdigest()[:8]
    # '/' and ' ' map to the same '_' but the names still differ
    assert run_name({"k": "a/b"}) != run_name({"k": "a b"})
    # seed comes last whatever the --set order, so replicas share the prefix up to "seed="
    assert run_name({"seed": 2, "policy.fallback": "defrag_mode"}) == "policy.fallback=defrag_mode,seed=2"
    long = run_name({"description": "x" * 1000})
    assert len(long.encode()) <= 255 and "/" not in long and not long.startswith(".")


def test_plan_is_the_cartesian_product_in_set_order(config, tmp_path):
    plan = plan_sweep(config, ["policy.fallback=default,defrag_mode", "seed=1..3", "policy.kswapd=true,false"],
                      tmp_path / "o")
    combos = list(itertools.product(["default", "defrag_mode"], [1, 2, 3], [True, False]))
    assert len(plan.runs) == 12
    assert [tuple(r.settings.values()) for r in plan.runs] == combos
    assert len({r.name for r in plan.runs}) == 12
    for r, (fb, seed, kswapd) in zip(plan.runs, combos):
        cfg = tomllib.loads(r.config_text)     # the full resolved config, every default written out
        assert (cfg["policy"]["fallback"], cfg["seed"], cfg["policy"]["kswapd"]) == (fb, seed, kswapd)
        assert cfg["machine"]["mem"] == "128M" and cfg["policy"]["watermark_scale_factor"] == 10
    assert not (tmp_path / "o").exists()     # planning writes nothing


def test_run_one_reports_internal_errors_without_raising(config, tmp_path, monkeypatch):
    import kmemdes.sim.engine as engine

    def boom(cfg, out, progress=False, force=False):
        raise ZeroDivisionError("boom\nsecond line")

    monkeypatch.setattr(engine, "run_config", boom)
    res = run_one(config.read_text(), str(tmp_path / "r"))
    assert res["ok"] is False and res["error"] == "ZeroDivisionError: boom second line"
    assert "ZeroDivisionError" in res["traceback"] and "boom" in res["traceback"]
    bad = run_one("name = 3\n", str(tmp_path / "r"))   # a user error: one line, no traceback
    assert bad["ok"] is False and bad["traceback"] is None and "name" in bad["error"]


def test_default_folder_is_sweeps_config_name(config):
    assert plan_sweep(config, ["seed=1"]).out == Path("sweeps") / "sweeptest"


@pytest.mark.parametrize("sets, msg", [
    (["policy.fallback=default,bogus"], "--set policy.fallback=default,bogus: policy.fallback: Input should be"),
    (["policy.fallbak=default"], "--set policy.fallbak=default: policy.fallbak: unknown key"),
    (["seed=1..2", "machine.mem=256M,12Q"], "--set machine.mem=256M,12Q: machine.mem: bad size"),
    (["workloads.4.order=3"], "--set workloads.4.order=3: workloads.4.order: no element"),
    (["seed=1", "seed=2"], "--set seed: given twice"),
])
def test_bad_set_is_one_line_exit_2_before_anything_runs(config, tmp_path, capsys, sets, msg):
    out = tmp_path / "o"
    args = []
    for s in sets:
        args += ["--set", s]
    assert main(["sweep", str(config), *args, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kmemdes: error: ") and msg in err and err.count("\n") == 1
    assert not out.exists()


# ----------------------------------------------------------------------------------- local pool

def test_local_sweep_writes_runs_plan_and_comparison(local_sweep, config):
    out, rc, stdout, stderr, summaries = local_sweep
    assert rc == 0, stderr
    assert "4 runs: 4 done, 0 skipped, 0 failed" in stdout and str(out / "compare.html") in stdout
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        NAMES + ["compare.html", "sweep.json"])
    for n in NAMES:
        cfg = tomllib.loads((out / n / "config.toml").read_text())
        fb, seed = n.split(",")
        assert cfg["policy"]["fallback"] == fb.split("=")[1] and cfg["seed"] == int(seed.split("=")[1])
        assert summaries[n]["seed"] == cfg["seed"] and summaries[n]["kind"] == "run"
        assert (out / n / "metrics" / "buddy.parquet").is_file()
    plan = json.loads((out / "sweep.json").read_text())
    assert plan["config"] == str(config.resolve())
    assert [(a["key"], a["values"]) for a in plan["axes"]] == [("policy.fallback", ["default", "defrag_mode"]),
                                                             ("seed", [1, 2])]
    assert [r["dir"] for r in plan["runs"]] == NAMES
    assert all(r["status"] == "done" and r["error"] is None for r in plan["runs"])
    assert plan["runs"][3]["settings"] == {"policy.fallback": "defrag_mode", "seed": 2}
    html = (out / "compare.html").read_text()
    assert html.count("(n=2)") >= 2        # two configurations, each with 2 seed replicas (mean and CI)
    assert not list(out.glob(".*.tmp-*"))
    # different seeds really differ, different configs too (the runs are not copies of each other)
    assert summaries[NAMES[0]] != summaries[NAMES[1]]


def test_rerun_skips_complete_runs(sweep_copy, config, capsys):
    before = _mtimes(sweep_copy)
    assert main(["sweep", str(config), *SETS, "-o", str(sweep_copy)]) == 0
    cap = capsys.readouterr()
    assert "4 runs: 0 done, 4 skipped, 0 failed" in cap.out
    assert cap.err.count("skipped") == 4
    assert _mtimes(sweep_copy) == before


def test_resume_redoes_only_the_missing_run(sweep_copy, config, capsys, local_sweep):
    before = _mtimes(sweep_copy)
    shutil.rmtree(sweep_copy / NAMES[2])
    # --resume takes the axes from sweep.json
    assert main(["sweep", str(config), "--resume", "-o", str(sweep_copy), "--workers", "2"]) == 0
    cap = capsys.readouterr()
    assert "4 runs: 1 done, 3 skipped, 0 failed" in cap.out
    after = _mtimes(sweep_copy)
    assert {n for n in NAMES if after[n] != before.get(n)} == {NAMES[2]}
    assert _summary(sweep_copy / NAMES[2]) == local_sweep[4][NAMES[2]]   # same run, same numbers


def test_resume_refuses_other_axes(sweep_copy, config, capsys):
    assert main(["sweep", str(config), "--set", "seed=1..3", "--resume", "-o", str(sweep_copy)]) == 2
    assert "differs from the stored plan" in capsys.readouterr().err


def test_interrupted_and_outdated_runs_are_redone(sweep_copy, config, capsys, local_sweep):
    before = _mtimes(sweep_copy)
    # an interrupted run: its temporary directory is left, the final one was never renamed into place
    shutil.rmtree(sweep_copy / NAMES[0])
    leftover = sweep_copy / f".{NAMES[0]}.tmp-xyz"
    (leftover / "metrics").mkdir(parents=True)
    (leftover / "config.toml").write_text("partial")
    # a run whose config is not the planned one (the base config changed since)
    cfgfile = sweep_copy / NAMES[3] / "config.toml"
    cfgfile.write_text(cfgfile.read_text().replace('mem = "128M"', 'mem = "64M"'))
    unrelated = sweep_copy / ".not-ours.tmp-1"
    unrelated.mkdir()
    (sweep_copy / ".sweep.json.tmp-123").write_text("{")
    assert main(["sweep", str(config), *SETS, "-o", str(sweep_copy)]) == 0
    assert "4 runs: 2 done, 2 skipped, 0 failed" in capsys.readouterr().out
    assert not leftover.exists() and unrelated.exists() and not (sweep_copy / ".sweep.json.tmp-123").exists()
    after = _mtimes(sweep_copy)
    assert {n for n in NAMES if after[n] != before.get(n)} == {NAMES[0], NAMES[3]}
    assert 'mem = "128M"' in cfgfile.read_text()
    assert _summary(sweep_copy / NAMES[0]) == local_sweep[4][NAMES[0]]


def test_failing_run_is_reported_and_the_others_complete(config, tmp_path, capsys):
    out = tmp_path / "f"
    # state=snapshot with a missing snapshot folder passes validation and fails when the run starts
    rc = main(["sweep", str(config), "--set", "initial.state=fragmented,snapshot",
               "--set", "initial.snapshot=/nonexistent/before", "-o", str(out), "--workers", "2"])
    cap = capsys.readouterr()
    assert rc == 1
    assert "2 runs: 1 done, 0 skipped, 1 failed" in cap.out
    plan = json.loads((out / "sweep.json").read_text())
    ok, bad = plan["runs"]
    assert ok["status"] == "done" and (out / ok["dir"] / "summary.json").is_file()
    assert bad["status"] == "failed" and bad["error"] == "/nonexistent/before: not a snapshot folder"
    assert f"failed: {bad['dir']}: /nonexistent/before: not a snapshot folder" in cap.err
    assert not (out / bad["dir"]).exists() and not list(out.glob(".*.tmp-*"))
    assert (out / "compare.html").is_file()


def test_a_worker_that_dies_fails_only_its_run(config, tmp_path, local_sweep):
    plan = plan_sweep(config, ["policy.fallback=default,defrag_mode", "seed=1..2"], tmp_path / "c")
    before = _children()
    res = run_sweep(plan, workers=2, progress=False, runner=_crashing_runner, compare=False)
    assert _children() <= before
    assert (res.done, res.failed) == (3, 1)
    status = {r.name: (r.status, r.error) for r in plan.runs}
    assert status.pop(NAMES[2]) == ("failed", "the worker process died running this config (killed, or out of memory?)")
    assert all(s == ("done", None) for s in status.values())
    for n in status:
        assert _summary(tmp_path / "c" / n) == local_sweep[4][n]



def test_a_pool_that_breaks_between_submissions_loses_no_run(config, tmp_path, monkeypatch, local_sweep):
    """A worker can die after an earlier run's result came back and before its own future says so:
    the next ``submit`` then raises BrokenProcessPool.  That run stays queued and runs in a fresh pool."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    import kmemdes.sweep as sw

    calls = {"submit": 0}

    class _Pool:  # runs each job at submit time; the third submit finds the pool broken
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, fn, *args):
            calls["submit"] += 1
            if calls["submit"] == 3:
                raise BrokenProcessPool("a child process terminated abruptly")
            f = Future()
            f.set_result(fn(*args))
            return f

    monkeypatch.setattr(sw, "ProcessPoolExecutor", _Pool)
    plan = plan_sweep(config, ["policy.fallback=default,defrag_mode", "seed=1..2"], tmp_path / "c")
    res = run_sweep(plan, workers=2, progress=False, compare=False)
    assert (res.done, res.failed) == (4, 0) and calls["submit"] == 5
    for n in NAMES:
        assert _summary(tmp_path / "c" / n) == local_sweep[4][n]

# ----------------------------------------------------------------------------------- Dask

def test_dask_cluster_gives_the_local_results(config, tmp_path, capsys, local_sweep):
    try:
        from distributed import LocalCluster
    except ImportError:
        pytest.skip("dask.distributed is not installed")
    before = _children()
    try:
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                               host="127.0.0.1", protocol="tcp")
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"dask.distributed cannot start a local cluster here: {type(e).__name__}: {e}")
    try:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        out = tmp_path / "d"
        rc = main(["sweep", str(config), "--set", "policy.fallback=default,defrag_mode", "--set", "seed=1",
                   "-o", str(out), "--scheduler", cluster.scheduler_address])
        cap = capsys.readouterr()
        assert rc == 0, cap.err
        assert "2 runs: 2 done, 0 skipped, 0 failed" in cap.out
        local = local_sweep[0]
        for n in (NAMES[0], NAMES[2]):
            assert _summary(out / n) == local_sweep[4][n]
            assert (out / n / "config.toml").read_text() == (local / n / "config.toml").read_text()
            for f in sorted((local / n / "metrics").iterdir()):     # byte-identical metrics
                assert (out / n / "metrics" / f.name).read_bytes() == f.read_bytes(), f.name
        assert (out / "compare.html").is_file() and not list(out.glob(".*.tmp-*"))
        # and again: nothing is resubmitted
        assert main(["sweep", str(config), "--set", "policy.fallback=default,defrag_mode", "--set", "seed=1",
                     "-o", str(out), "--scheduler", cluster.scheduler_address]) == 0
        assert "0 done, 2 skipped" in capsys.readouterr().out
    finally:
        cluster.close()
    assert _children() <= before, "dask processes left running"


def test_scheduler_and_workers_are_exclusive(config, tmp_path, capsys):
    assert main(["sweep", str(config), "--set", "seed=1", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1",
                 "-o", str(tmp_path / "x")]) == 2
    assert "--workers applies to the local pool" in capsys.readouterr().err


def test_bad_scheduler_address_is_refused_before_anything(config, tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["sweep", str(config), "--set", "seed=1", "--scheduler", "localhost", "-o", str(out)]) == 2
    assert "--scheduler localhost: expected a scheduler address such as tcp://HOST:8786" in capsys.readouterr().err
    assert not out.exists()


def test_one_sweep_at_a_time_per_folder(config, tmp_path):
    from kmemdes.sweep import _locked

    plan = plan_sweep(config, ["seed=1"], tmp_path / "l")
    (tmp_path / "l").mkdir()
    with _locked(tmp_path / "l"):
        with pytest.raises(KmemdesError, match="another sweep is running in this folder"):
            run_sweep(plan, workers=1, progress=False)


def test_unreachable_scheduler_leaves_nothing_behind(config, tmp_path, capsys, monkeypatch):
    """A sweep that cannot reach its scheduler fails before it creates the folder, sweep.json or the lock."""
    import kmemdes.sweep as sweep_mod

    def refuse(address):
        raise KmemdesError(f"--scheduler {address}: cannot connect (refused)")

    monkeypatch.setattr(sweep_mod, "_connect", refuse)
    out = tmp_path / "x"
    assert main(["sweep", str(config), "--set", "seed=1", "--scheduler", "tcp://127.0.0.1:1", "-o", str(out)]) == 2
    assert "--scheduler tcp://127.0.0.1:1: cannot connect" in capsys.readouterr().err
    assert not out.exists()


def test_pool_workers_die_with_their_parent():
    # a middle process starts a worker that calls die_with_parent (the pool initializer), then is
    # SIGKILLed: the worker must not live on (it would go on writing run directories)
    import signal
    import subprocess
    import sys
    import time

    code = ("import subprocess, sys, time\n"
            "w = subprocess.Popen([sys.executable, '-c', 'import os, sys, time; from kmemdes.sweep import "
            "die_with_parent; die_with_parent(int(sys.argv[1])); print(os.getpid(), flush=True); time.sleep(120)', "
            "str(__import__('os').getpid())], stdout=subprocess.PIPE, text=True)\n"
            "print(w.stdout.readline().strip(), flush=True)\n"
            "time.sleep(120)\n")
    mid = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    worker = int(mid.stdout.readline())
    assert Path(f"/proc/{worker}").exists()
    mid.send_signal(signal.SIGKILL)
    mid.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{worker}").exists() and \
            "Z" not in Path(f"/proc/{worker}/stat").read_text().split()[2]:
        time.sleep(0.05)
    alive = Path(f"/proc/{worker}").exists() and "Z" not in Path(f"/proc/{worker}/stat").read_text().split()[2]
    assert not alive
