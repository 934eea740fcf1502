"""``kmemdes lab``: an experiment's ``[lab]`` recipe on the local kernel, written as a run directory.

One lab run, in order (every step after the state file is undone in ``finally``, Ctrl-C, SIGTERM and
SIGHUP included; a SIGKILLed run is undone by the next one, :func:`kmemdes.lab.state.recover_leftovers`):

1. refuse without root or tracefs (one line, exit 2); undo leftovers of killed lab runs;
2. record the original value of every knob the run will change in ``/run/kmemdes-lab.<pid>.json``;
3. start the memory watchdog (``/proc/meminfo`` every 100 ms: below ``lab.min_available`` it releases
   the hugetlb reservation and kills the workload's process tree);
4. apply the config's ``[policy]`` and ``lab.sysctls`` to the kernel, write the ``stream`` files,
   ``sync; drop_caches``, reserve hugetlb pages so that ``lab.free`` stays available (``MemAvailable``);
5. trace the latency events in a private instance (:mod:`kmemdes.lab.ktrace`), sample
   buddyinfo/pagetypeinfo/zoneinfo/vmstat every ``sample_interval``, run the cycles
   (:mod:`kmemdes.lab.driver`; with ``capture=True`` inside a full ``kmemdes capture``);
6. restore, verify, and write the run directory: the simulator's ``summary.json`` fields where the
   kernel measures them, ``metrics/*.parquet`` from /proc, plus ``metrics/lab_cycles.parquet``,
   ``metrics/lab_intervals.parquet`` (kernel latencies) and ``metrics/lab_user.parquet`` (user-space
   timings), and ``summary.json`` ``lab`` (kernel, machine, recipe, per-cycle vmstat deltas).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import polars as pl

from kmemdes import __version__
from kmemdes.config import Config, PolicyConfig, dump_toml, parse_duration, size_or_zero
from kmemdes.errors import KmemdesError
from kmemdes.lab.ktrace import LatencyTrace, intervals, parse_lines
from kmemdes.lab.state import KernelState, kill_tree, read_knob, recover_leftovers, starttime, sync_and_drop_caches
from kmemdes.mm.frag import fragmentation_index, fragmentation_score_zone, unusable_free_index
from kmemdes.mm.gfp import MIGRATETYPE_NAMES, gfp_class, parse_gfp
from kmemdes.mm.mm_init import parse_size
from kmemdes.mm.page_alloc import NR_PAGE_ORDERS, PATH_BUDDY, PATH_FAILED
from kmemdes.mm.vmstat import format_index_file
from kmemdes.sim.cost import LatencyHistogram
from kmemdes.sim.stalls import duration_quantiles, interval_stalls
from kmemdes.outpath import check_run_dir_output
from kmemdes.sim.rundir import write_run
from kmemdes.trace.capture import (_install_interrupt_handlers, _Interrupted, _read, _restore_handlers, _signals_blocked,
                                    _tracefs_available, _uname)
from kmemdes.trace.snapshot import parse_buddyinfo, parse_pagetypeinfo, parse_zoneinfo

__all__ = ["run_lab", "lab_preflight", "policy_knobs", "reservation_keep_kb", "COUNTER_PREFIXES", "GIB"]

GIB = 1 << 30
WATCHDOG_INTERVAL = 0.1
#: /proc/vmstat counters recorded (cumulative, as deltas from the start of the run)
COUNTER_PREFIXES = ("thp_", "compact_", "pgmigrate_", "allocstall_", "pgsteal_", "pgscan_", "kswapd_", "pgalloc_",
                    "pgfree", "pageoutrun", "oom_kill", "pgmajfault", "pgfault", "drop_pagecache", "htlb_buddy_alloc_")
#: the counters whose per-cycle and total deltas are printed and summarised
HEADLINE_COUNTERS = ("thp_fault_alloc", "thp_fault_fallback", "compact_stall", "compact_success", "compact_fail",
                     "pgmigrate_success", "allocstall_normal", "allocstall_movable", "pgsteal_direct",
                     "pgsteal_kswapd", "pgscan_direct", "pgscan_kswapd")
_DEFAULT_POLICY = PolicyConfig()


def policy_knobs(policy: PolicyConfig) -> dict[str, str]:
    """The kernel knobs a config's ``[policy]`` sets (raises for policies a live kernel cannot take).

    >>> policy_knobs(PolicyConfig(fallback="defrag_mode"))["vm.defrag_mode"]
    '1'
    >>> policy_knobs(PolicyConfig(group_by_mobility=False))
    Traceback (most recent call last):
    ...
    kmemdes.errors.KmemdesError: policy.group_by_mobility = False: a model-only policy; a live kernel cannot be switched to it
    """
    for k in ("fallback_version", "nofragment", "group_by_mobility", "kvmalloc_fallback", "compaction", "kswapd"):
        v = getattr(policy, k)
        if v != getattr(_DEFAULT_POLICY, k):
            raise KmemdesError(f"policy.{k} = {v}: a model-only policy; a live kernel cannot be switched to it")
    out = {"vm.defrag_mode": "1" if policy.fallback == "defrag_mode" else "0",
           "thp.enabled": policy.thp_enabled, "thp.defrag": policy.thp_defrag,
           "vm.compaction_proactiveness": str(policy.compaction_proactiveness),
           "vm.extfrag_threshold": str(policy.extfrag_threshold),
           "vm.watermark_scale_factor": str(policy.watermark_scale_factor),
           "vm.watermark_boost_factor": str(policy.watermark_boost_factor)}
    if policy.min_free_kbytes:
        out["vm.min_free_kbytes"] = str(policy.min_free_kbytes)
    return out


def lab_preflight() -> None:
    """One-line refusals before anything is touched."""
    if os.geteuid() != 0:
        raise KmemdesError("lab: must run as root (it sets vm sysctls, reserves hugetlb pages and traces)")
    if not _tracefs_available():
        raise KmemdesError("lab: this kernel has no tracefs (CONFIG_TRACING off?)")


def meminfo() -> dict[str, int]:
    """/proc/meminfo in kB."""
    out = {}
    for line in _read("/proc/meminfo").splitlines():
        k, _, v = line.partition(":")
        p = v.split()
        if p and p[0].isdigit():
            out[k] = int(p[0])
    return out


class Watchdog(threading.Thread):
    """Polls MemAvailable; below ``min_kb`` releases the reservation and kills the workload tree."""

    def __init__(self, min_kb: int, log: Callable[[str], None]):
        super().__init__(name="kmemdes-lab-watchdog", daemon=True)
        self.min_kb = min_kb
        self.log = log
        self.fired: Optional[str] = None
        self.lowest_kb: Optional[int] = None
        self.driver_pid: Optional[int] = None
        self.pid_file: Optional[Path] = None
        self._stop_ev = threading.Event()

    def stop(self) -> None:
        self._stop_ev.set()

    def kill_workload(self) -> None:
        """Kill the cycle driver and everything it started (its pid from Popen or from its pid file)."""
        pid = self.driver_pid
        if pid is None and self.pid_file is not None:
            try:
                pid = int(self.pid_file.read_text())
            except (OSError, ValueError):
                pid = None
        if pid:
            kill_tree(pid)

    def run(self) -> None:
        while not self._stop_ev.wait(WATCHDOG_INTERVAL):
            avail = meminfo().get("MemAvailable")
            if avail is None:
                continue
            if self.lowest_kb is None or avail < self.lowest_kb:
                self.lowest_kb = avail
            if avail < self.min_kb or self.fired:
                if not self.fired:
                    self.fired = f"MemAvailable fell to {avail // 1024} MiB (< {self.min_kb // 1024} MiB)"
                    try:
                        with open("/proc/sys/vm/nr_hugepages", "w") as f:
                            f.write("0\n")
                    except OSError:
                        pass
                    self.log(f"watchdog: {self.fired}: hugetlb reservation released, workload killed")
                self.kill_workload()  # and whatever the run still starts, until it stops


class Sampler(threading.Thread):
    """Reads buddyinfo, pagetypeinfo, zoneinfo and vmstat every ``interval`` seconds (texts, parsed later)."""

    FILES = ("buddyinfo", "pagetypeinfo", "zoneinfo", "vmstat")

    def __init__(self, interval: float, t0_ns: int):
        super().__init__(name="kmemdes-lab-sampler", daemon=True)
        self.interval, self.t0_ns = interval, t0_ns
        self.samples: list[tuple[int, dict[str, str]]] = []
        self._stop_ev = threading.Event()

    def sample(self) -> None:
        t = time.monotonic_ns() - self.t0_ns
        self.samples.append((t, {f: _read(f"/proc/{f}") for f in self.FILES}))

    def stop(self) -> None:
        self._stop_ev.set()

    def run(self) -> None:
        nxt = time.monotonic()
        while True:
            self.sample()
            nxt += self.interval
            if self._stop_ev.wait(max(0.0, nxt - time.monotonic())):
                return


def _vmstat(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if v.strip().lstrip("-").isdigit():
            out[k] = int(v)
    return out


def _counter(name: str) -> bool:
    return name.startswith(COUNTER_PREFIXES)


def _frames(samples, ivs: dict, user: list[dict], t0_ns: int = 0) -> dict[str, pl.DataFrame]:
    """The run directory's metrics frames from the /proc samples, the traced intervals and the user timings."""
    buddy = {k: [] for k in ("t_ns", "zone", "order", "migratetype", "nr_free")}
    frag = {k: [] for k in ("t_ns", "zone", "order", "unusable", "extfrag")}
    score = {k: [] for k in ("t_ns", "zone", "score", "free_pages", "managed", "wmark_min", "wmark_low",
                             "wmark_high", "boost", "pcp_pages")}
    pbs = {k: [] for k in ("t_ns", "zone", "migratetype", "blocks", "mixed")}
    counters = {k: [] for k in ("t_ns", "name", "value")}
    v0 = _vmstat(samples[0][1]["vmstat"]) if samples else {}
    for t, texts in samples:
        try:
            bi = parse_buddyinfo(texts["buddyinfo"])
            pti = parse_pagetypeinfo(texts["pagetypeinfo"])
            zi = {z.name: z for z in parse_zoneinfo(texts["zoneinfo"])}
        except KmemdesError:
            continue  # a read torn by a concurrent change: skip the sample
        nr_free_by_zone = {}
        for row in bi:
            nr_free_by_zone[row.zone] = row.nr_free
            for o in range(NR_PAGE_ORDERS):
                frag["t_ns"].append(t)
                frag["zone"].append(row.zone)
                frag["order"].append(o)
                frag["unusable"].append(unusable_free_index(row.nr_free, o))
                frag["extfrag"].append(fragmentation_index(row.nr_free, o))
            z = zi.get(row.zone)
            if z is not None:
                score["t_ns"].append(t)
                score["zone"].append(row.zone)
                score["score"].append(fragmentation_score_zone(row.nr_free))
                score["free_pages"].append(z.free)
                score["managed"].append(z.managed)
                score["wmark_min"].append(z.min)
                score["wmark_low"].append(z.low)
                score["wmark_high"].append(z.high)
                score["boost"].append(z.boost)
                score["pcp_pages"].append(sum(p.get("count", 0) for p in z.pagesets))
        for (zone, mtname), counts in pti.free.items():
            if mtname not in MIGRATETYPE_NAMES:
                continue
            mt = MIGRATETYPE_NAMES.index(mtname)
            for o, n in enumerate(counts):
                if n or mt < 3:
                    buddy["t_ns"].append(t)
                    buddy["zone"].append(zone)
                    buddy["order"].append(o)
                    buddy["migratetype"].append(mt)
                    buddy["nr_free"].append(n)
        for zone, blocks in pti.blocks.items():
            if zone not in nr_free_by_zone:
                continue
            for name, n in zip(pti.types, blocks):
                if name in MIGRATETYPE_NAMES:
                    pbs["t_ns"].append(t)
                    pbs["zone"].append(zone)
                    pbs["migratetype"].append(MIGRATETYPE_NAMES.index(name))
                    pbs["blocks"].append(n)
                    pbs["mixed"].append(0)
        v = _vmstat(texts["vmstat"])
        for k in sorted(v):
            if _counter(k):
                counters["t_ns"].append(t)
                counters["name"].append(k)
                counters["value"].append(v[k] - v0.get(k, 0))
    i64, i32, i8, s = pl.Int64, pl.Int32, pl.Int8, pl.String
    frames = {
        "buddy": pl.DataFrame(buddy, schema={"t_ns": i64, "zone": s, "order": i8, "migratetype": i8, "nr_free": i64}),
        "frag": pl.DataFrame(frag, schema={"t_ns": i64, "zone": s, "order": i8, "unusable": i32, "extfrag": i32}),
        "score": pl.DataFrame(score, schema={"t_ns": i64, "zone": s, "score": i32, "free_pages": i64, "managed": i64,
                                             "wmark_min": i64, "wmark_low": i64, "wmark_high": i64, "boost": i64,
                                             "pcp_pages": i64}),
        "pageblocks": pl.DataFrame(pbs, schema={"t_ns": i64, "zone": s, "migratetype": i8, "blocks": i64,
                                                "mixed": i64}),
        "counters": pl.DataFrame(counters, schema={"t_ns": i64, "name": s, "value": i64}),
    }
    fb: dict[tuple, int] = {}
    for e in ivs.get("extfrag", []):
        key = (e["alloc_mt"], e["fallback_mt"], "claim" if e["claim"] else "steal", bool(e["fragmenting"]))
        fb[key] = fb.get(key, 0) + 1
    rows = sorted(fb.items())
    frames["fallbacks"] = pl.DataFrame(
        {"alloc_mt": [k[0] for k, _ in rows], "fallback_mt": [k[1] for k, _ in rows], "kind": [k[2] for k, _ in rows],
         "fragmenting": [k[3] for k, _ in rows], "count": [c for _, c in rows]},
        schema={"alloc_mt": i8, "fallback_mt": i8, "kind": s, "fragmenting": pl.Boolean, "count": i64})
    iv_rows = [(kind, r["t_ns"] - t0_ns, r["dur_ns"], r.get("order", -1), r.get("pages", r.get("migrated", 0)),
                str(r.get("status", "")), int(r["pid"])) for kind in ("direct_reclaim", "direct_compaction",
                                                                       "compact_zone", "kswapd_awake",
                                                                       "memcg_reclaim")
               for r in ivs.get(kind, [])]
    frames["lab_intervals"] = pl.DataFrame(
        iv_rows, orient="row", schema={"kind": s, "t_ns": i64, "dur_ns": i64, "order": i8, "pages": i64,
                                       "status": s, "pid": i64})
    u_rows = [(u["cycle"], u["workload"], u["what"], int(u["ns"]), u.get("huge")) for u in user]
    frames["lab_user"] = pl.DataFrame(u_rows, orient="row", schema={"cycle": pl.Int32, "workload": s, "what": s,
                                                                     "ns": i64, "huge": pl.Boolean})
    return frames


def bpf_map_what(size: int) -> str:
    """The ``lab_user`` row name of a ``bpf_maps`` create of ``size`` value bytes.

    >>> bpf_map_what(28 << 10), bpf_map_what(1 << 20), bpf_map_what(1000)
    ('bpf_map_create_28K', 'bpf_map_create_1M', 'bpf_map_create_1000B')
    """
    for unit, shift in (("M", 20), ("K", 10)):
        if size % (1 << shift) == 0:
            return f"bpf_map_create_{size >> shift}{unit}"
    return f"bpf_map_create_{size}B"


def _user_rows(cycles: list[dict]) -> list[dict]:
    """Per-measurement rows of the builtins' timings (THP first touches, 4 KiB faults, streams)."""
    out = []
    for c in cycles:
        for w in c["workloads"]:
            m = w.get("measured") or {}
            kind = m.get("workload")
            if kind == "thp_burst":
                huge = m.get("range_huge") or [None] * len(m["first_touch_ns"])
                for ns, h in zip(m["first_touch_ns"], huge):
                    out.append({"cycle": c["cycle"], "workload": w["name"], "what": "thp_first_touch", "ns": ns,
                                "huge": h})
                out.append({"cycle": c["cycle"], "workload": w["name"], "what": "thp_burst_total",
                            "ns": m["touch_ns"], "huge": None})
            elif kind == "touch":
                ov = int(m.get("overhead_ns", 0))
                for ns in m["fault_ns"]:
                    out.append({"cycle": c["cycle"], "workload": w["name"], "what": "fault_4k",
                                "ns": max(ns - ov, 0), "huge": None})
            elif kind == "stream":
                out.append({"cycle": c["cycle"], "workload": w["name"], "what": "stream", "ns": m["ns"], "huge": None})
            elif kind == "bpf_maps":
                what = bpf_map_what(m["size"])
                for ns in m["create_ns"]:
                    out.append({"cycle": c["cycle"], "workload": w["name"], "what": what, "ns": ns, "huge": None})
    return out


def _plan(cfg: Config) -> tuple[dict, list[tuple[int, str]]]:
    """The driver's plan (argv per workload) and the stream files it needs (size, path)."""
    lab = cfg.lab
    streams = []
    ws = []
    for i, w in enumerate(lab.workloads):
        name = w.name or (w.builtin or "command") + str(i)
        argv = None
        py = [sys.executable, "-m", "kmemdes.lab.work"]
        if w.builtin == "thp_burst":
            argv = py + ["thp_burst", str(parse_size(w.size))]
        elif w.builtin == "touch":
            argv = py + ["touch", str(parse_size(w.size))]
        elif w.builtin == "stream":
            size = parse_size(w.size)
            path = f"/var/tmp/kmemdes-lab-stream-{size >> 20}M"
            streams.append((size, path))
            argv = py + ["stream", str(size), path]
        elif w.builtin == "compile":
            argv = py + ["compile", str(parse_duration(w.seconds) / 1e9), str(w.jobs)]
        elif w.builtin == "net":
            argv = py + ["net", str(parse_duration(w.seconds) / 1e9), str(w.jobs)]
        elif w.builtin == "bpf_maps":
            argv = py + ["bpf_maps", str(parse_duration(w.seconds) / 1e9), str(parse_size(w.size)), str(w.jobs)]
        elif w.builtin == "sleep":
            argv = py + ["sleep", str(parse_duration(w.seconds) / 1e9)]
        ws.append({"name": name, "argv": argv, "command": w.command, "start_s": parse_duration(w.start) / 1e9,
                   "timeout_s": parse_duration(w.timeout) / 1e9})
    plan = {"cycles": lab.cycles, "settle_s": parse_duration(lab.settle) / 1e9, "workloads": ws}
    return plan, streams


def _reserve(state: KernelState, keep_kb: int, log) -> dict:
    """Reserve hugetlb pages so that ``keep_kb`` of MemAvailable stays; returns what happened."""
    mi = meminfo()
    avail = mi.get("MemAvailable", 0)
    hp_kb = mi.get("Hugepagesize", 2048)
    want = max(0, (avail - keep_kb) // hp_kb)
    cur = int(read_knob("vm.nr_hugepages"))
    if want <= 0:
        return {"hugepages": cur, "asked": 0, "available_before_kb": avail, "available_after_kb": avail}
    log(f"reserving {want} hugetlb pages ({want * hp_kb // 1024} MiB) to leave {keep_kb // 1024} MiB available")
    got = int(state.set("vm.nr_hugepages", cur + want)) - cur
    after = meminfo().get("MemAvailable", 0)
    return {"hugepages": got, "asked": want, "hugepage_kb": hp_kb, "available_before_kb": avail,
            "available_after_kb": after}


#: ``kmemdes lab --capture``'s ring buffer per CPU (capture_pressure.sh's BUF_KB)
_CAPTURE_BUFFER_KB = 131072


def reservation_keep_kb(lab, capture: bool, ncpus: int) -> int:
    """The MemAvailable (KiB) the hugetlb reservation leaves: ``lab.free`` (at least ``min_available``
    and 1 GiB), plus with ``capture`` the capture's per-CPU ring buffers, which are allocated after the
    reservation, out of what it leaves (capture_pressure.sh subtracts them the same way); 0 without
    ``lab.free`` (no reservation).

    >>> from kmemdes.config import LabConfig
    >>> lab = LabConfig(free="1536M", workloads=[])
    >>> reservation_keep_kb(lab, False, 2) // 1024, reservation_keep_kb(lab, True, 2) // 1024
    (1536, 1792)
    """
    free = size_or_zero(lab.free)
    if not free:
        return 0
    keep_kb = max(free, parse_size(lab.min_available), GIB) // 1024
    if capture:
        keep_kb += _CAPTURE_BUFFER_KB * ncpus
    return keep_kb


def run_lab(cfg: Config, out, *, force: bool = False, capture: bool = False, log=None,
            seed: Optional[int] = None) -> tuple[Path, dict]:
    """Run ``cfg``'s ``[lab]`` recipe on this kernel and write the run directory ``out``."""
    log = log or (lambda msg: None)
    if cfg.lab is None:
        raise KmemdesError(f"{cfg.name}: the config has no [lab] table (a recipe for the real kernel)")
    lab = cfg.lab
    if not lab.workloads:
        raise KmemdesError(f"{cfg.name}: lab.workloads: the recipe runs no workload")
    out = check_run_dir_output(out, force=force)  # refused before the kernel is touched
    knobs = policy_knobs(cfg.policy)
    knobs.update({k: str(v) for k, v in lab.sysctls.items()})
    keep_kb = reservation_keep_kb(lab, capture, len(os.sched_getaffinity(0)))
    min_kb = max(parse_size(lab.min_available), GIB) // 1024
    lab_preflight()
    for k in knobs:
        read_knob(k)  # a knob this kernel lacks is refused before anything changes
    notes = recover_leftovers()
    for n in notes:
        log(n)
    plan, streams = _plan(cfg)
    sample_s = parse_duration(cfg.sample_interval) / 1e9
    timeout_s = parse_duration(lab.timeout) / 1e9

    state = KernelState()
    state.record(sorted(set(knobs) | {"vm.nr_hugepages"}))
    work = Path(tempfile.mkdtemp(prefix="kmemdes_lab."))
    state.note("workdir", str(work))
    watchdog = Watchdog(min_kb, log)
    sampler: Optional[Sampler] = None
    tracer: Optional[LatencyTrace] = None
    driver: Optional[subprocess.Popen] = None
    warnings: list[str] = []
    result = None
    reservation: dict = {}
    applied: dict = {}
    t_wall = time.perf_counter()
    machine = {"kernel": os.uname().release, "uname": _uname(), "nproc": len(os.sched_getaffinity(0)),
               "mem_total_kb": meminfo().get("MemTotal"), "hostname": os.uname().nodename}

    old_handlers = _install_interrupt_handlers()
    restored: list[str] = ["not run"]
    lost = {}
    try:
        watchdog.start()
        for k, v in knobs.items():
            applied[k] = state.set(k, v)
        log("set " + " ".join(f"{k}={v}" for k, v in applied.items()))
        from kmemdes.lab.work import prepare_stream

        for size, path in streams:
            prepare_stream(size, path)
        if lab.drop_caches:
            sync_and_drop_caches()
        if keep_kb:
            reservation = _reserve(state, keep_kb, log)
            if watchdog.fired:
                raise KmemdesError(f"lab: watchdog: {watchdog.fired} while reserving hugetlb pages; "
                                   "released, nothing run")
        tracefs = state.mount("tracefs")
        if tracefs is None:
            raise KmemdesError("lab: cannot mount tracefs")
        tracer = LatencyTrace(state, tracefs, work / "latency.txt.zst")
        for m in tracer.missing:
            warnings.append(f"event {m} not available: its latency is not measured")
        plan_path, res_path = work / "plan.json", work / "result.json"
        plan["pid_file"] = str(work / "driver.pid")
        for w in plan["workloads"]:
            w["workdir"] = str(work)
        watchdog.pid_file = work / "driver.pid"
        plan_path.write_text(json.dumps(plan))
        argv = [sys.executable, "-m", "kmemdes.lab.driver", str(plan_path), str(res_path)]
        t0_ns = time.monotonic_ns()
        if watchdog.fired:
            raise KmemdesError(f"lab: watchdog: {watchdog.fired}; hugetlb reservation released, nothing run")
        sampler = Sampler(sample_s, t0_ns)
        sampler.start()
        log(f"running {lab.cycles} cycle(s) of {len(plan['workloads'])} workload(s)")
        if capture:
            from kmemdes.trace.capture import DEFAULT_EVENTS, capture as do_capture

            cap_dir = work / "capture"
            timer = threading.Timer(timeout_s, watchdog.kill_workload)
            timer.start()
            try:
                do_capture(cap_dir, argv, kpageflags=True, raw_pointers=True, buffer_kb=_CAPTURE_BUFFER_KB,
                           events=DEFAULT_EVENTS, name=cfg.name, log=log)
            finally:
                timer.cancel()
        else:
            driver = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            watchdog.driver_pid = driver.pid
            state.note("driver", {"pid": driver.pid, "starttime": starttime(driver.pid)})
            try:
                _, err = driver.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                kill_tree(driver.pid)
                driver.wait()
                raise KmemdesError(f"lab: the recipe ran longer than lab.timeout = {lab.timeout}; stopped") from None
            if driver.returncode != 0 and not watchdog.fired:
                raise KmemdesError(f"lab: the cycle driver failed (rc={driver.returncode}): "
                                   f"{(err or '').strip().splitlines()[-1:] or ''}")
            driver = None
        sampler.stop()
        sampler.join()
        sampler.sample()
        if watchdog.fired:
            raise KmemdesError(f"lab: watchdog: {watchdog.fired}; hugetlb reservation released, workload killed, "
                               "no run directory written")
        if not res_path.exists():
            raise KmemdesError(f"lab: the cycles did not finish (stopped at lab.timeout = {lab.timeout}, or the "
                               "driver failed); nothing written")
        result = json.loads(res_path.read_text())
        lost = tracer.stop()
    except _Interrupted as e:
        log(f"interrupted by {e}; restoring the kernel's settings")
        raise KeyboardInterrupt(str(e)) from None
    finally:
        _signals_blocked(True)
        try:
            if driver is not None and driver.poll() is None:
                kill_tree(driver.pid)
                driver.wait()
            if sampler is not None:
                sampler.stop()
            if tracer is not None and tracer.reader.is_alive():
                tracer.reader.stop(abort=True)
                tracer.reader.join(10)
            watchdog.stop()
            restored = state.restore()
            if result is None:
                shutil.rmtree(work, ignore_errors=True)
        finally:
            _restore_handlers(old_handlers)
            _signals_blocked(False)
        if restored:
            log("could not restore: " + "; ".join(restored))
    try:
        lines = _trace_lines(work / "latency.txt.zst")
        ivs = intervals(parse_lines(lines))
        cap_dir = work / "capture"
        wall_s = time.perf_counter() - t_wall
        summary, frames = _summarize(cfg, result, sampler.samples, ivs, machine, reservation, applied, lost,
                                     watchdog, warnings, notes, wall_s, seed, tuple(tracer.enabled),
                                     t0_ns)
        summary["lab"]["restored"] = "yes" if not restored else restored
        config_text = dump_toml(cfg) + _lab_run_table(machine)
        path = write_run(out, config_text, summary, _log_text(summary), frames, force=force)
        if capture and cap_dir.exists():
            shutil.move(str(cap_dir), str(path / "capture"))
        return path, summary
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _trace_lines(path: Path) -> list[str]:
    import zstandard

    if not path.exists():
        return []
    with open(path, "rb") as f:
        data = zstandard.ZstdDecompressor().stream_reader(f).read()
    return data.decode(errors="replace").splitlines()


def _lab_run_table(machine: dict) -> str:
    """``[lab_run]``: what makes a lab run differ from a simulated run of the same config in ``compare``."""
    from kmemdes.config import _toml_value

    return "\n[lab_run]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in
                                     (("kernel", machine["kernel"]), ("hostname", machine["hostname"]),
                                      ("mem_total_kb", machine["mem_total_kb"] or 0), ("nproc", machine["nproc"])))


def _log_text(summary: dict) -> str:
    lines = [f"kmemdes {summary['kmemdes_version']} lab {summary['name']} on {summary['lab']['machine']['uname']}"]
    lines += [f"note: {n}" for n in summary.get("notes", [])]
    for c in summary["lab"]["cycles"]:
        lines.append(f"cycle {c['cycle']}: " + " ".join(f"{k} {c['vmstat'].get(k, 0)}" for k in HEADLINE_COUNTERS))
    return "\n".join(lines) + "\n"


def _high_order_table(req) -> dict:
    """{order: {gfp_class: {"attempts", "failures"}}} of the traced high-order requests.

    >>> _high_order_table([(3, "atomic", "buddy", "w", 9), (3, "atomic", "failed", "w", 1)])
    {'3': {'atomic': {'attempts': 10, 'failures': 1}}}
    """
    out: dict = {}
    for o, cls, path, _, c in req:
        d = out.setdefault(str(o), {}).setdefault(cls, {"attempts": 0, "failures": 0})
        d["attempts"] += c
        if path == "failed":
            d["failures"] += c
    return out


def _summarize(cfg: Config, result: dict, samples, ivs: dict, machine: dict, reservation: dict, applied: dict,
               lost: dict, watchdog: Watchdog, warnings: list, notes: list, wall_s: float,
               seed: Optional[int], enabled: tuple = (), t0_trace_ns: int = 0) -> tuple[dict, dict]:
    cycles = result["cycles"]
    user = _user_rows(cycles)
    frames = _frames(samples, ivs, user, t0_trace_ns)
    total: dict[str, int] = {}
    for c in cycles:
        for k, v in c["vmstat_delta"].items():
            total[k] = total.get(k, 0) + v
    # requests: THP faults by /proc/vmstat (thp_fault_alloc served, thp_fault_fallback failed)
    hist = LatencyHistogram()
    for u in user:
        if u["what"] == "thp_first_touch":
            hist.add(9, PATH_FAILED if u["huge"] is False else PATH_BUDDY, int(u["ns"]))
    lat = hist.rows()
    frames["latency"] = pl.DataFrame({"order": [r[0] for r in lat], "path": [r[1] for r in lat],
                                      "bucket_ns": [r[2] for r in lat], "count": [r[3] for r in lat]},
                                     schema={"order": pl.Int8, "path": pl.String, "bucket_ns": pl.Int64,
                                             "count": pl.Int64})
    alloc, fallback = total.get("thp_fault_alloc", 0), total.get("thp_fault_fallback", 0)
    traced = "kmem/mm_page_alloc" in enabled
    failures = []
    if traced:  # every high-order request, traced (order-0 ones are not)
        counts: dict[tuple, int] = {}
        for e in ivs.get("high_order", []):
            try:
                cls = gfp_class(parse_gfp(e["gfp_flags"]))
            except ValueError:
                cls = "reclaim"
            key = (e["order"], cls, "failed" if e["failed"] else "buddy", "traced (order > 0)")
            counts[key] = counts.get(key, 0) + 1
            if e["failed"]:
                failures.append((e["t_ns"] - t0_trace_ns, e["order"], e["gfp_flags"], e["comm"]))
        req = [k + (c,) for k, c in sorted(counts.items())]
    else:
        req = [(9, "reclaim", "buddy", "thp faults (vmstat)", alloc), (9, "reclaim", "failed", "thp faults (vmstat)", fallback)]
        req = [r for r in req if r[4]]
    frames["requests"] = pl.DataFrame({"order": [r[0] for r in req], "gfp_class": [r[1] for r in req],
                                       "path": [r[2] for r in req], "workload": [r[3] for r in req],
                                       "count": [r[4] for r in req]},
                                      schema={"order": pl.Int8, "gfp_class": pl.String, "path": pl.String,
                                              "workload": pl.String, "count": pl.Int64})
    by_order: dict[str, dict] = {}
    for o, _, path, _, c in req:
        d = by_order.setdefault(str(o), {"attempts": 0, "failures": 0, "fallbacks": 0})
        d["attempts"] += c
        d["failures"] += c if path == "failed" else 0
    fb = frames["fallbacks"]
    claims = int(fb.filter(pl.col("kind") == "claim")["count"].sum()) if fb.height else 0
    steals = int(fb.filter(pl.col("kind") == "steal")["count"].sum()) if fb.height else 0
    pollute = int(fb.filter((pl.col("kind") == "steal") & (pl.col("alloc_mt") != 1))["count"].sum()) if fb.height else 0
    stall, success = total.get("compact_stall", 0), total.get("compact_success", 0)
    last = samples[-1][1] if samples else {}
    bi = parse_buddyinfo(last["buddyinfo"]) if last else []
    rows = [(r.node, r.zone, r.nr_free) for r in bi]
    latency = {}
    q = hist.quantiles(9)
    if q:
        latency["9"] = q
    stalls = interval_stalls(ivs, stall)  # direct reclaim and direct compaction, as a simulated run has them
    kernel_lat = dict(stalls)
    for kind in ("compact_zone", "kswapd_awake"):
        items = ivs.get(kind, [])
        if kind == "compact_zone":
            items = [i for i in items if not i["kcompactd"]]
        kernel_lat[kind] = duration_quantiles([i["dur_ns"] for i in items])
    user_t = {}
    whats = ["thp_first_touch", "fault_4k", "thp_burst_total", "stream"]
    whats += sorted({u["what"] for u in user} - set(whats))  # bpf_map_create_<size>
    for what in whats:
        vals = [int(u["ns"]) for u in user if u["what"] == what]
        if vals:
            user_t[what] = duration_quantiles(vals)
    huge_known = [u["huge"] for u in user if u["what"] == "thp_first_touch" and u["huge"] is not None]
    per_cycle = []
    for c in cycles:
        row = {"cycle": c["cycle"], "seconds": round((c["end_epoch_ns"] - c["start_epoch_ns"]) / 1e9, 3),
               "vmstat": {k: c["vmstat_delta"].get(k, 0) for k in HEADLINE_COUNTERS}}
        a, f = row["vmstat"]["thp_fault_alloc"], row["vmstat"]["thp_fault_fallback"]
        row["thp_success"] = a / (a + f) if a + f else None
        bursts = [w["measured"] for w in c["workloads"] if (w.get("measured") or {}).get("workload") == "thp_burst"]
        if bursts:
            row["burst_huge"] = sum(b["huge"] for b in bursts)
            row["burst_ranges"] = sum(b["ranges"] for b in bursts)
        row["workloads"] = [{k: w.get(k) for k in ("name", "rc", "seconds", "timed_out")} for w in c["workloads"]]
        per_cycle.append(row)
    frames["lab_cycles"] = pl.DataFrame(
        [(r["cycle"], k, v) for r in per_cycle for k, v in r["vmstat"].items()], orient="row",
        schema={"cycle": pl.Int32, "name": pl.String, "delta": pl.Int64})
    failures.sort()
    frames["failures"] = pl.DataFrame(failures[:100_000], orient="row",
                                      schema={"t_ns": pl.Int64, "order": pl.Int8, "gfp_flags": pl.String,
                                              "workload": pl.String})
    for name in ("slab", "vmalloc", "sizes", "pagemap"):
        frames.pop(name, None)
    lab_notes: list[str] = []
    for kind, d in kernel_lat.items():  # the lab's own numbers, in the notes every report shows
        if d.get("n"):
            extra = "".join(f", {k} {d[k]:,}" for k in ("pages", "migrated", "success") if k in d)
            lab_notes.append(f"kernel latency {kind} (tracepoints): n={d['n']:,}, p50 {d['p50'] / 1e3:,.1f} us, "
                         f"p99 {d['p99'] / 1e3:,.1f} us, max {d['max'] / 1e3:,.1f} us{extra}")
        else:
            lab_notes.append(f"kernel latency {kind} (tracepoints): none happened")
    for what, d in user_t.items():
        lab_notes.append(f"user-space {what}: n={d['n']:,}, p50 {d['p50'] / 1e3:,.1f} us, p99 {d['p99'] / 1e3:,.1f} us")
    for c in per_cycle:
        v = c["vmstat"]
        lab_notes.append(f"cycle {c['cycle']}: thp_fault_alloc {v['thp_fault_alloc']}, thp_fault_fallback "
                     f"{v['thp_fault_fallback']}, compact_stall {v['compact_stall']}, compact_success "
                     f"{v['compact_success']}, pgsteal_direct {v['pgsteal_direct']}, pgsteal_kswapd {v['pgsteal_kswapd']}"
                     + (f", burst {c['burst_huge']}/{c['burst_ranges']} huge" if "burst_huge" in c else ""))
    sim_ns = samples[-1][0] if samples else 0
    all_notes = list(notes) + list(warnings) + [
        "kind lab: measured on the local kernel, system-wide (other processes' allocations count too); "
        + ("requests are the high-order (order > 0) page allocations traced by mm_page_alloc (order-0 ones are "
           "not traced)" if traced else "requests are THP faults by /proc/vmstat (thp_fault_alloc served, "
                                        "thp_fault_fallback failed)")
        + "; order-9 latency is the user-space time of each 2 MiB first touch of the THP burst (THP fault incl. "
          "clearing; a fallback range's is its 4 KiB fault)",
        "mixed pageblocks are not measurable from /proc (page_owner would be needed): reported as 0",
        f"machine: {machine['uname']}; MemTotal {machine['mem_total_kb']} kB; config machine.mem ignored"] + lab_notes
    summary = {
        "kmemdes_version": __version__, "kind": "lab", "name": cfg.name, "mode": "lab",
        "seed": cfg.seed if seed is None else seed, "sim_ns": sim_ns,
        "requests": sum(r[4] for r in req), "requests_by_order": dict(sorted(by_order.items(), key=lambda x: int(x[0]))),
        "failure_rate_by_order": {o: (v["failures"] / v["attempts"] if v["attempts"] else None)
                                  for o, v in by_order.items()},
        "latency_ns": latency,
        "compaction": {"attempts": stall, "success": success, "success_rate": (success / stall) if stall else None},
        # the stalls' durations under the simulated runs' key (kmemdes.sim.stalls)
        "stall_latency_ns": stalls,
        "fallbacks": {"claim": claims, "steal": steals, "pollute": pollute},
        "final": {"buddyinfo": last.get("buddyinfo", ""), "pagetypeinfo": last.get("pagetypeinfo", ""),
                  "unusable_index": format_index_file(rows, "unusable"),
                  "extfrag_index": format_index_file(rows, "extfrag")},
        "final_unusable_by_order": {z: [unusable_free_index(nr, o) for o in range(NR_PAGE_ORDERS)]
                                    for _, z, nr in rows},
        "final_unusable_unit": "thousandths (debugfs extfrag/unusable_index x 1000)",
        "notes": all_notes,
        "wall_s": round(wall_s, 3),
        "events_per_s": None,
        "lab": {
            "machine": machine, "applied": applied, "reservation": reservation,
            "watchdog": {"min_available_kb": watchdog.min_kb, "lowest_available_kb": watchdog.lowest_kb,
                         "fired": watchdog.fired},
            "trace_lost": lost,
            "vmstat_total": {k: total.get(k, 0) for k in HEADLINE_COUNTERS},
            "thp_success": alloc / (alloc + fallback) if alloc + fallback else None,
            "high_order": _high_order_table(req),
            "thp_ranges_huge": (sum(huge_known), len(huge_known)) if huge_known else None,
            "kernel_latency_ns": kernel_lat, "user_ns": user_t, "cycles": per_cycle,
        },
    }
    return summary, frames
