"""kmemdes.lab / ``kmemdes lab``: recipes, refusals, and on the real kernel a short run and its restoration.

Kernel tests need root and tracefs and skip with a message elsewhere.  They are mild: no hugetlb
reservation beyond what leaves at least 8 GiB available (none on a smaller or busier machine), a few
MiB of THP burst and 4 KiB faults, a short compile-free cycle; afterwards every knob, the hugetlb pool,
the tracing instances and the mount table must be as before, and no state file may be left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from kmemdes.cli import main
from kmemdes.config import dump_toml, parse_config
from kmemdes.errors import KmemdesError

KMEMDES = [sys.executable, "-m", "kmemdes.cli"]
#: the test workloads' sleep: a duration nothing else on a shared machine sleeps for, so pgrep finds only ours
SLEEP = 19.731
KNOBS = ("vm.nr_hugepages", "vm.defrag_mode", "vm.compaction_proactiveness", "vm.extfrag_threshold",
         "vm.watermark_scale_factor", "vm.watermark_boost_factor", "vm.min_free_kbytes", "thp.enabled", "thp.defrag")

RECIPE = """
name = "lab-test"
sample_interval = "100ms"
[policy]
compaction_proactiveness = {pro}
[lab]
free = "{free}"
min_available = "{min_available}"
cycles = 2
settle = "0.1s"
drop_caches = false
timeout = "60s"
sysctls = {{"vm.extfrag_threshold" = {ext}}}
[[lab.workloads]]
builtin = "thp_burst"
size = "8M"
[[lab.workloads]]
builtin = "touch"
size = "4M"
[[lab.workloads]]
command = "echo cycle {{cycle}}; sleep {sleep}"
start = "0.05s"
"""


# ---------------------------------------------------------------------------- no kernel needed
def test_lab_schema_round_trip_and_errors():
    cfg = parse_config(RECIPE.format(pro=20, free="0", min_available="1G", ext=500, sleep=0.1), "r.toml")
    assert cfg.lab.cycles == 2 and cfg.lab.workloads[2].command.startswith("echo")
    assert parse_config(dump_toml(cfg)) == cfg
    assert "[lab]" not in dump_toml(parse_config('name = "x"\n'))  # configs without [lab] write as before
    for text, msg in [
        ('[lab]\nfre = "1G"', "r.toml: lab.fre: unknown key (allowed: free, min_available"),
        ('[lab]\n[[lab.workloads]]\nsize = "1M"', "r.toml: lab.workloads[0]: give exactly one of command"),
        ('[lab]\n[[lab.workloads]]\nbuiltin = "dd"', "r.toml: lab.workloads[0].builtin: Input should be"),
        ('[lab]\nsysctls = {"kernel.x" = 1}', "r.toml: lab.sysctls: 'kernel.x': only vm.* sysctls"),
        ('[lab]\nfree = "lots"', "r.toml: lab.free: bad size"),
    ]:
        with pytest.raises(KmemdesError) as e:
            parse_config(text, "r.toml")
        assert str(e.value).startswith(msg), str(e.value)


def test_policy_knobs_and_model_only_policies():
    from kmemdes.config import PolicyConfig
    from kmemdes.lab.run import policy_knobs

    k = policy_knobs(PolicyConfig(fallback="defrag_mode", thp_defrag="always", min_free_kbytes=65536))
    assert k["vm.defrag_mode"] == "1" and k["thp.defrag"] == "always" and k["vm.min_free_kbytes"] == "65536"
    assert "vm.min_free_kbytes" not in policy_knobs(PolicyConfig())
    with pytest.raises(KmemdesError, match="fallback_version = 6.14: a model-only policy"):
        policy_knobs(PolicyConfig(fallback_version="6.14"))


def test_cli_refusals(tmp_path, capsys, monkeypatch):
    plain = tmp_path / "plain.toml"
    plain.write_text('name = "x"\n')
    assert main(["lab", str(plain)]) == 2
    assert capsys.readouterr().err.strip() == f"kmemdes: error: {plain}: no [lab] table (the recipe for the real kernel)"
    assert main(["lab"]) == 2
    assert "give CONFIG.toml" in capsys.readouterr().err
    assert main(["lab", "--write-cost", str(tmp_path / "c.toml")]) == 2
    assert "--write-cost and --from go with --calibrate" in capsys.readouterr().err
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(pro=20, free="0", min_available="1G", ext=500, sleep=0.1))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["lab", str(recipe), "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kmemdes: error: lab: must run as root"), err
    assert not (tmp_path / "run").exists()


def test_replica_difference():
    from kmemdes.lab.replicas import lab_metrics, paired_difference

    d = paired_difference([80.0, 84.0, None], [94.0, 96.0, 95.0])
    assert d["n"] == 2 and d["mean"] == 13.0 and d["half_width"] > 0
    assert paired_difference([None], [1.0]) is None
    m = lab_metrics({"lab": {"thp_success": 0.5, "vmstat_total": {"compact_stall": 4, "allocstall_normal": 1,
                                                                  "allocstall_movable": 2}},
                     "compaction": {"success_rate": 0.25}})
    assert m["thp_success_pct"] == 50.0 and m["compact_success_pct"] == 25.0 and m["allocstall"] == 3


def test_stale_state_file_of_a_dead_process_is_recovered(tmp_path, monkeypatch):
    """The recovery logic alone, on a knob-free state file (no kernel change needed)."""
    from kmemdes.lab import state as st

    monkeypatch.setattr(st, "STATE_DIR", tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    work = Path(tempfile.mkdtemp(prefix="kmemdes_lab."))
    (tmp_path / f"kmemdes-lab.{dead.pid}.json").write_text(json.dumps(
        {"pid": dead.pid, "starttime": "1", "original": {}, "mounts": [], "instances": [], "workdir": str(work)}))
    notes = st.recover_leftovers()
    assert len(notes) == 1 and f"pid {dead.pid}" in notes[0]
    assert not list(tmp_path.iterdir()) and not work.exists()
    # a live one (this very test process, under another pid file name) is refused
    (tmp_path / "kmemdes-lab.1.json").write_text(json.dumps(
        {"pid": os.getppid(), "starttime": st.starttime(os.getppid()), "original": {}}))
    with pytest.raises(KmemdesError, match="another kmemdes lab run"):
        st.recover_leftovers()


# ---------------------------------------------------------------------------- the real kernel
def _kernel_skip() -> str | None:
    if os.geteuid() != 0:
        return "not root"
    if "tracefs" not in Path("/proc/filesystems").read_text():
        return "no tracefs in /proc/filesystems"
    if not Path("/sys/kernel/mm/transparent_hugepage/enabled").exists():
        return "no THP"
    return None


kernel = pytest.mark.skipif(_kernel_skip() is not None, reason=f"needs the real kernel (root, tracefs): {_kernel_skip()}")


def _kernel_state() -> dict:
    from kmemdes.lab.state import read_knob

    mnt = tempfile.mkdtemp(prefix="test_tracefs.")
    subprocess.run(["mount", "-t", "tracefs", "nodev", mnt], check=True)
    try:
        # lab instances only (kmemdes_<pid>_lab): other sessions' captures may come and go meanwhile
        inst = sorted(i for i in os.listdir(os.path.join(mnt, "instances")) if i.startswith("kmemdes_") and i.endswith("_lab"))
    finally:
        subprocess.run(["umount", mnt], check=True)
        os.rmdir(mnt)
    knobs = {}
    for k in KNOBS:
        try:
            knobs[k] = read_knob(k)
        except KmemdesError:
            pass
    mounts = [ln for ln in Path("/proc/mounts").read_text().splitlines()
              if ln.split()[2] in ("tracefs", "debugfs") and "/kmemdes_lab_" in ln.split()[1]]
    return {"knobs": knobs, "instances": inst, "mounts": mounts,
            "state_files": sorted(str(p) for p in Path("/run").glob("kmemdes-lab.*.json")),
            "work_dirs": sorted(str(p) for p in Path(tempfile.gettempdir()).glob("kmemdes_lab.*"))}


def _mild_free() -> str:
    """A reservation that leaves all but 512 MiB of what is available, when that is still >= 8 GiB; else none."""
    from kmemdes.lab.run import meminfo

    avail = meminfo()["MemAvailable"] * 1024
    keep = avail - (512 << 20)
    return f"{keep >> 20}M" if keep >= 8 << 30 else "0"


@kernel
@pytest.mark.kernel
def test_live_lab_run_restores_everything(tmp_path):
    before = _kernel_state()
    pro = int(before["knobs"]["vm.compaction_proactiveness"])
    ext = int(before["knobs"]["vm.extfrag_threshold"])
    recipe = tmp_path / "r.toml"
    free = _mild_free()
    recipe.write_text(RECIPE.format(pro=(pro + 1) % 100, free=free, min_available="1G", ext=ext + 1, sleep=0.3))
    out = tmp_path / "run"
    r = subprocess.run(KMEMDES + ["lab", str(recipe), "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert _kernel_state() == before
    s = json.loads((out / "summary.json").read_text())
    lab = s["lab"]
    assert s["kind"] == "lab" and lab["restored"] == "yes"
    assert lab["applied"]["vm.compaction_proactiveness"] == str((pro + 1) % 100)
    assert lab["applied"]["vm.extfrag_threshold"] == str(ext + 1)
    if free != "0" and lab["reservation"]["asked"] > 0:  # (MemAvailable moves with the machine's other load)
        assert lab["reservation"]["hugepages"] > 0
    assert len(lab["cycles"]) == 2 and all(c["burst_ranges"] == 4 for c in lab["cycles"])
    assert lab["user_ns"]["fault_4k"]["n"] == 2 * 1024 and lab["user_ns"]["thp_first_touch"]["n"] == 8
    assert lab["watchdog"]["fired"] is None and lab["watchdog"]["lowest_available_kb"] > 0
    # the simulator's readers take it as it is: report and compare beside a simulated run
    from kmemdes.report.load import load_run_dir

    run = load_run_dir(out)
    assert run.buddy.height and run.frag.height and run.score.height and run.counters.height
    assert set(run.counters["name"].unique().to_list()) >= {"thp_fault_alloc", "compact_stall", "pgsteal_direct"}
    assert main(["report", str(out), "-o", str(tmp_path / "lab.html")]) == 0
    sim = tmp_path / "sim"
    cfg = parse_config(recipe.read_text().replace('sample_interval = "100ms"', 'duration = "1s"\nmachine.mem = "256M"'))
    from kmemdes.sim.engine import run_config

    run_config(cfg, sim, progress=False)
    assert main(["compare", str(sim), str(out), "--format", "md", "-o", str(tmp_path / "c.md")]) == 0
    md = (tmp_path / "c.md").read_text()
    assert "lab_run.kernel" in md and "direct compaction attempts" in md


@kernel
@pytest.mark.kernel
def test_live_watchdog_releases_and_stops(tmp_path):
    """A watchdog threshold above what is available fires at once: the lab stops the workload, restores,
    exits 2 with one line, writes no run directory."""
    before = _kernel_state()
    recipe = tmp_path / "r.toml"
    pro = int(before["knobs"]["vm.compaction_proactiveness"])
    recipe.write_text(RECIPE.format(pro=pro, free="0", min_available="100T",
                                    ext=before["knobs"]["vm.extfrag_threshold"], sleep=SLEEP))
    t0 = time.monotonic()
    r = subprocess.run(KMEMDES + ["lab", str(recipe), "-o", str(tmp_path / "run")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and time.monotonic() - t0 < 15
    assert r.stderr.strip().splitlines()[-1].startswith("kmemdes: error: lab: watchdog: MemAvailable fell to")
    assert not (tmp_path / "run").exists()
    assert _kernel_state() == before
    assert not subprocess.run(["pgrep", "-f", f"sleep {SLEEP}"], capture_output=True).stdout


@kernel
@pytest.mark.kernel
def test_live_sigkill_leftovers_undone_by_next_run(tmp_path):
    """SIGKILL cannot be caught: the next lab run finds the state file and puts everything back."""
    from kmemdes.lab.state import recover_leftovers

    before = _kernel_state()
    pro = int(before["knobs"]["vm.compaction_proactiveness"])
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(pro=(pro + 1) % 100, free=_mild_free(), min_available="1G",
                                    ext=before["knobs"]["vm.extfrag_threshold"], sleep=SLEEP))
    p = subprocess.Popen(KMEMDES + ["lab", str(recipe), "-o", str(tmp_path / "run")], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    state_file = Path(f"/run/kmemdes-lab.{p.pid}.json")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until the instance exists and the cycle runs
            if state_file.exists() and json.loads(state_file.read_text() or "{}").get("driver"):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the lab run did not reach its cycles")
        time.sleep(0.3)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    try:
        changed = _kernel_state()
        assert changed["knobs"]["vm.compaction_proactiveness"] == str((pro + 1) % 100)
        assert changed["instances"] and changed["state_files"] == [str(state_file)]
    finally:
        notes = recover_leftovers()
    assert len(notes) == 1 and f"pid {p.pid}" in notes[0]
    assert _kernel_state() == before
    time.sleep(0.2)
    assert not subprocess.run(["pgrep", "-f", f"sleep {SLEEP}"], capture_output=True).stdout  # no workload left


def test_config_include_merges_a_cost_table(tmp_path):
    """``include = [FILE]``: what ``kmemdes lab --calibrate --write-cost FILE`` writes, under the config's own values."""
    from kmemdes.config import load_config

    (tmp_path / "cost.toml").write_text("# kmemdes lab --calibrate\n[cost]\npage_fault = 1270  # measured\n"
                                        "zero_per_page = 510\n")
    (tmp_path / "x.toml").write_text('include = ["cost.toml"]\nname = "x"\n[cost]\nzero_per_page = 400\n')
    cfg = load_config(tmp_path / "x.toml")
    assert cfg.cost.model_extra == {"page_fault": 1270, "zero_per_page": 400}
    (tmp_path / "bad.toml").write_text('include = ["missing.toml"]\n')
    with pytest.raises(KmemdesError, match=r"bad.toml: include: missing.toml: no such file"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "bad2.toml").write_text('include = ["cost2.toml"]\n')
    (tmp_path / "cost2.toml").write_text("[cost]\nbogus = 1\n")
    with pytest.raises(KmemdesError, match=r"bad2.toml: cost.bogus: unknown key"):
        load_config(tmp_path / "bad2.toml")


def test_trace_lines_to_intervals_and_requests():
    """Tracepoint text as the kernel prints it (6.18 formats) to the lab's intervals."""
    from kmemdes.lab.ktrace import intervals, parse_lines

    text = """\
             cat-20284   [001] .....  1138.436000: mm_page_alloc: page=0000000000000000 pfn=0x0 order=9 migratetype=1 gfp_flags=GFP_NOFS|__GFP_NORETRY|__GFP_COMP
           cc1-7   [000] .....  10.000000000: mm_vmscan_direct_reclaim_begin: order=9 gfp_flags=GFP_TRANSHUGE
           cc1-7   [000] .....  10.000100000: mm_vmscan_direct_reclaim_end: nr_reclaimed=64
           cc1-7   [000] .....  10.000200000: mm_compaction_try_to_compact_pages: order=9 gfp_mask=GFP_TRANSHUGE priority=1
           cc1-7   [000] .....  10.000210000: mm_compaction_begin: zone_start=0x100000 migrate_pfn=0x100000 free_pfn=0x5ffe00 zone_end=0x640000, mode=async
           cc1-7   [000] .....  10.000300000: mm_compaction_migratepages: nr_migrated=31 nr_failed=1
           cc1-7   [000] .....  10.000700000: mm_compaction_end: zone_start=0x100000 migrate_pfn=0x101000 free_pfn=0x5ffe00 zone_end=0x640000, mode=async status=success
         kswapd0-80    [001] .....  11.000000000: mm_vmscan_kswapd_wake: nid=0 order=0
         kswapd0-80    [001] .....  11.002000000: mm_vmscan_kswapd_sleep: nid=0
"""
    iv = intervals(parse_lines(text.splitlines()))
    assert iv["high_order"] == [{"t_ns": 1138436000000, "order": 9, "failed": True,
                                 "gfp_flags": "GFP_NOFS|__GFP_NORETRY|__GFP_COMP", "comm": "cat"}]
    assert iv["direct_reclaim"][0]["dur_ns"] == 100_000 and iv["direct_reclaim"][0]["pages"] == 64
    dc = iv["direct_compaction"][0]
    assert (dc["dur_ns"], dc["migrated"], dc["failed"], dc["status"]) == (500_000, 31, 1, "success")
    assert iv["compact_zone"][0]["migrated"] == 31 and not iv["compact_zone"][0]["kcompactd"]
    assert iv["kswapd_awake"][0]["dur_ns"] == 2_000_000


@kernel
@pytest.mark.kernel
def test_live_watchdog_kills_a_running_workload_tree():
    """Mid-run: below the threshold the watchdog releases the pool and kills the driver and its children."""
    from kmemdes.lab.run import Watchdog
    from kmemdes.lab.state import read_knob

    if read_knob("vm.nr_hugepages") != "0":
        pytest.skip("a hugetlb pool is reserved by someone else: the watchdog would release it")
    drv = subprocess.Popen(["sh", "-c", f"sleep {SLEEP} & sleep {SLEEP}; wait"])
    time.sleep(0.2)
    wd = Watchdog(min_kb=1 << 50, log=lambda m: None)
    wd.driver_pid = drv.pid
    wd.start()
    try:
        drv.wait(timeout=5)
        assert wd.fired and wd.fired.startswith("MemAvailable fell to")
        time.sleep(0.3)
        assert not subprocess.run(["pgrep", "-f", f"sleep {SLEEP}"], capture_output=True).stdout
    finally:
        wd.stop()
        wd.join()


def test_a_capture_keeps_lab_free_beside_its_ring_buffers():
    """``lab --capture``: the capture allocates 128 MiB of ring buffer per CPU after the hugetlb
    reservation; the reservation leaves lab.free plus that (7 December: without it the stock
    thp-pressure run's watchdog fired at 1,020 MiB of MemAvailable)."""
    from kmemdes.config import LabConfig
    from kmemdes.lab.run import reservation_keep_kb

    lab = LabConfig(free="1536M", workloads=[])
    assert reservation_keep_kb(lab, False, 2) == 1536 * 1024
    assert reservation_keep_kb(lab, True, 2) == (1536 + 2 * 128) * 1024
    assert reservation_keep_kb(LabConfig(free="512M", workloads=[]), False, 2) == 1024 * 1024  # at least 1 GiB
    assert reservation_keep_kb(LabConfig(free="0", workloads=[]), True, 2) == 0  # free "0": no reservation


def test_bpf_maps_builtin_in_a_recipe():
    """``builtin = "bpf_maps"``: the driver runs ``python -m kmemdes.lab.work bpf_maps SECONDS SIZE HOLD``,
    and each create becomes a ``lab_user`` row named by the map's size."""
    from kmemdes.config import LAB_BUILTINS
    from kmemdes.lab.run import _plan, _user_rows

    cfg = parse_config('[lab]\n[[lab.workloads]]\nbuiltin = "bpf_maps"\nsize = "28K"\nseconds = "2s"\njobs = 4\n',
                       "r.toml")
    assert "bpf_maps" in LAB_BUILTINS
    plan, streams = _plan(cfg)
    assert plan["workloads"][0]["argv"][-4:] == ["bpf_maps", "2.0", str(28 << 10), "4"] and not streams
    cycles = [{"cycle": 1, "workloads": [{"name": "m", "measured": {"workload": "bpf_maps", "size": 28 << 10,
                                                                   "create_ns": [30_000, 40_000], "errors": {}}}]}]
    assert [(u["what"], u["ns"]) for u in _user_rows(cycles)] == [("bpf_map_create_28K", 30_000),
                                                                   ("bpf_map_create_28K", 40_000)]


def _bpf_skip():
    if os.uname().machine != "x86_64":
        return "bpf syscall number known for x86-64 only"
    if os.geteuid() != 0:
        return "bpf(BPF_MAP_CREATE) needs root"
    return None


@pytest.mark.skipif(_bpf_skip() is not None, reason=f"needs the real kernel's bpf(): {_bpf_skip()}")
@pytest.mark.kernel
def test_live_bpf_maps_workload():
    """On the local kernel: array maps of 28 KiB (bpf_map_area_alloc's kmalloc, an order-3 page allocation)
    and 1 MiB (vmalloc) are created and timed; nothing stays open."""
    out = {}
    for size in (28 << 10, 1 << 20):
        p = subprocess.run([sys.executable, "-m", "kmemdes.lab.work", "bpf_maps", "0.2", str(size), "2"],
                           capture_output=True, text=True, timeout=60)
        if p.returncode == 1 and "bpf(BPF_MAP_CREATE)" in p.stderr:
            pytest.skip(p.stderr.strip())
        assert p.returncode == 0, p.stderr
        m = json.loads(p.stdout.split("KMEMDES_LAB ", 1)[1])
        assert m["workload"] == "bpf_maps" and m["size"] == size and not m["errors"], m
        assert 5 <= len(m["create_ns"]) <= 25, m  # one create per 10 ms for 0.2 s
        out[size] = sorted(m["create_ns"])[len(m["create_ns"]) // 2]
    # the 1 MiB map is 256 vmalloc'ed, zeroed pages, the 28 KiB one 8 kmalloc'ed pages
    assert out[1 << 20] > out[28 << 10], out
