"""``kmemdes lab --calibrate``: the cost model's paths measured on the local kernel.

What can be measured from user space or from tracepoints, without pushing the machine into
memory pressure (all of it bounded and undone like a lab run: state file, private tracing instance
and mount, a private memory cgroup):

=============================  =================================================================================
cost field                     how
=============================  =================================================================================
``page_fault``                 ``touch``: 64 MiB ``MADV_NOHUGEPAGE``, each 4 KiB first touch timed; median minus
                               the median of touching the same pages again (the timing's own cost)
``zero_per_page``              ``thp_burst``: median first touch of a 2 MiB range that got a huge page
                               (allocation + clearing 512 pages + pmd) / 512: an upper bound of clearing one page
``reclaim_per_page``           memcg limit reclaim (``mm_vmscan_memcg_reclaim_begin``/``_end``, the same
                               ``shrink_lruvec`` path as direct reclaim, in the charging task): a 256 MiB file
                               read in 4 KiB reads without readahead inside a 64 MiB memory cgroup (4 KiB folios,
                               as the model's page cache); sum of durations / sum of ``nr_reclaimed``.  Also
                               reported: the same with readahead (large folios), far cheaper per page
``compact_per_migrated_page``  ``/proc/sys/vm/compact_memory`` written by us: our ``compact_zone`` intervals
                               (``mm_compaction_begin``/``_end``) / the pages ``mm_compaction_migratepages``
                               migrated in them (scanning included)
``compact_base``               direct compaction attempts (``try_to_compact_pages`` .. last ``compact_end``) of
                               lab run directories given to ``--calibrate``: intercept of duration vs migrated
``vmalloc_base``,              ``bpf(BPF_MAP_CREATE)`` of a one-element array map of 64 KiB..1 MiB (above 32 KiB
``vmalloc_per_page``           ``bpf_map_area_alloc`` is ``__vmalloc_node_range``, zeroed): least-squares line of
                               the median create time vs pages; ``vmalloc_base`` = intercept minus the create of
                               a 4 KiB map (kmalloc'ed: the syscall and map setup without vmalloc)
=============================  =================================================================================

Not measurable this way and left at the literature values: ``pcp_hit``, ``pcp_refill_per_block``,
``buddy_base``, ``buddy_per_order``, fallbacks, ``slowpath``, ``kmalloc_*``, ``new_slab_per_object``,
``vfree`` (deferred to a workqueue when a map is freed), ``purge_tlb_flush``, ``compact_per_scanned_page``.
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
from dataclasses import fields
from pathlib import Path

from kmemdes.errors import KmemdesError
from kmemdes.lab.driver import die_with_parent
from kmemdes.lab.ktrace import LAB_EVENTS, MEMCG_EVENTS, LatencyTrace, intervals, parse_lines
from kmemdes.lab.state import KernelState, recover_leftovers
from kmemdes.lab.work import MARK, bpf_array_map_create, prepare_stream
from kmemdes.sim.cost import CostModel
from kmemdes.trace.capture import (_install_interrupt_handlers, _Interrupted, _read, _restore_handlers, _rmdir_retry,
                                    _signals_blocked, _uname, _write)

__all__ = ["calibrate", "cost_toml", "format_calibration", "fit_line"]

MEASURED = ("page_fault", "zero_per_page", "reclaim_per_page", "compact_per_migrated_page", "compact_base",
            "vmalloc_base", "vmalloc_per_page")
BPF_SIZES = (64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20)


def fit_line(xs, ys) -> tuple[float, float]:
    """Least-squares ``y = a + b x``: (a, b).

    >>> fit_line([1, 2, 3], [12, 14, 16])
    (10.0, 2.0)
    """
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return my - b * mx, b


def _median(v):
    v = sorted(v)
    return v[len(v) // 2] if v else None


def _work(args: list[str], preexec=None, timeout: float = 120) -> dict:
    """Run a built-in workload; its ``KMEMDES_LAB`` dict, with ``pid`` added (the tracepoints' pid)."""
    def setup():
        die_with_parent()
        if preexec is not None:
            preexec()

    p = subprocess.Popen([sys.executable, "-m", "kmemdes.lab.work"] + args, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, preexec_fn=setup)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    for line in out.splitlines():
        if line.startswith(MARK):
            return dict(json.loads(line[len(MARK):]), pid=p.pid)
    raise KmemdesError(f"calibrate: workload {args[0]} failed: {(err or out).strip()[-200:]}")


def _bpf_map_create_ns(value_size: int) -> int:
    """Time of one ``bpf(BPF_MAP_CREATE)`` of a 1-element BPF_MAP_TYPE_ARRAY (the fd closed after)."""
    fd, dt = bpf_array_map_create(value_size)()
    if fd < 0:
        raise OSError(-fd, os.strerror(-fd))
    os.close(fd)
    return dt


def _vmalloc(reps: int = 25) -> dict:
    if os.uname().machine != "x86_64":
        return {"skipped": "bpf syscall number known for x86-64 only"}
    try:
        for s in (4096,) + BPF_SIZES:  # warm up: the first creates also fault in the kernel's own caches
            for _ in range(3):
                _bpf_map_create_ns(s)
        base = _median([_bpf_map_create_ns(4096) for _ in range(reps)])
        med = {s: _median([_bpf_map_create_ns(s) for _ in range(reps)]) for s in BPF_SIZES}
    except OSError as e:
        return {"skipped": f"bpf(BPF_MAP_CREATE) refused: {e.strerror}"}
    a, b = fit_line([s // 4096 for s in BPF_SIZES], [med[s] for s in BPF_SIZES])
    return {"kmalloc_4k_map_ns": base, "median_ns_by_bytes": {str(s): v for s, v in med.items()},
            "intercept_ns": round(a), "per_page_ns": round(b), "vmalloc_base": max(round(a - base), 0),
            "vmalloc_per_page": round(b)}


def _memcg_root() -> tuple[str, str, str] | None:
    """(memory cgroup root, limit file, procs file) of cgroup v1's memory controller or of cgroup v2."""
    for line in _read("/proc/mounts").splitlines():
        p = line.split()
        if len(p) > 3 and p[2] == "cgroup" and "memory" in p[3].split(","):
            return p[1], "memory.limit_in_bytes", "cgroup.procs"
    for line in _read("/proc/mounts").splitlines():
        p = line.split()
        if len(p) > 2 and p[2] == "cgroup2" and "memory" in _read(os.path.join(p[1], "cgroup.controllers")).split():
            return p[1], "memory.max", "cgroup.procs"
    return None


def _reclaim(state: KernelState, work: Path, log) -> dict:
    root = _memcg_root()
    if root is None:
        return {"skipped": "no memory cgroup controller mounted"}
    base, limit_file, procs = root
    cg = os.path.join(base, f"kmemdes_lab_{os.getpid()}")
    state.note("cgroup", cg)
    os.mkdir(cg)
    try:
        _write(os.path.join(cg, limit_file), str(64 << 20))
        cgprocs = os.path.join(cg, procs)

        def enter():
            with open(cgprocs, "w") as f:
                f.write(str(os.getpid()))

        out = {}
        for mode, size in (("small", 256 << 20), ("large", 512 << 20)):
            path = str(work / f"stream-{mode}")
            prepare_stream(size, path)
            subprocess.run(["sync"], check=False)
            _write("/proc/sys/vm/drop_caches", "1\n")
            log(f"streaming {size >> 20} MiB inside a 64 MiB memory cgroup ({mode} folios): limit reclaim")
            out[mode] = _work(["stream", str(size), path] + (["small"] if mode == "small" else []), preexec=enter)
            os.unlink(path)
        return out
    finally:
        _rmdir_retry(cg)


def _compact(log) -> dict:
    log("writing /proc/sys/vm/compact_memory (one full compaction of every zone)")
    t0 = time.perf_counter_ns()
    _write("/proc/sys/vm/compact_memory", "1\n")
    return {"pid": os.getpid(), "tid": threading.get_native_id(), "wall_ns": time.perf_counter_ns() - t0}


def calibrate(run_dirs=(), log=None) -> dict:
    """Measure what can be measured; returns the raw measurements and the fitted values."""
    from kmemdes.lab.run import lab_preflight

    log = log or (lambda msg: None)
    lab_preflight()
    for n in recover_leftovers():
        log(n)
    state = KernelState()
    state.record([])
    work = Path(tempfile.mkdtemp(prefix="kmemdes_lab."))
    state.note("workdir", str(work))
    res: dict = {"machine": {"uname": _uname(), "kernel": os.uname().release,
                             "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}}
    old = _install_interrupt_handlers()
    tracer = None
    problems: list[str] = []
    try:
        tracefs = state.mount("tracefs")
        if tracefs is None:
            raise KmemdesError("calibrate: cannot mount tracefs")
        tracer = LatencyTrace(state, tracefs, work / "t.txt.zst", events=LAB_EVENTS + MEMCG_EVENTS)
        log("4 KiB first-touch faults (64 MiB)")
        t = _work(["touch", str(64 << 20)])
        res["fault_4k"] = {"n": t["pages"], "p50_ns": _median(t["fault_ns"]), "overhead_ns": t["overhead_ns"]}
        log("THP faults (3 bursts of 64 MiB)")
        firsts = []
        for i in range(3):
            b = _work(["thp_burst", str(64 << 20)])
            if i:  # the first burst also pays for memory the host has not backed yet
                firsts += [ns for ns, h in zip(b["first_touch_ns"], b["range_huge"]) if h]
        res["thp"] = {"n": len(firsts), "p50_ns": _median(firsts)}
        log("vmalloc via bpf(BPF_MAP_CREATE)")
        res["vmalloc"] = _vmalloc()
        res["reclaim"] = _reclaim(state, work, log)
        res["compact"] = _compact(log)
        time.sleep(0.2)
    except _Interrupted as e:
        raise KeyboardInterrupt(str(e)) from None
    finally:
        _signals_blocked(True)
        try:
            if tracer is not None:
                tracer.stop()
            problems = state.restore()
        finally:
            _restore_handlers(old)
            _signals_blocked(False)
    try:
        from kmemdes.lab.run import _trace_lines

        ivs = intervals(parse_lines(_trace_lines(work / "t.txt.zst")))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if problems:
        raise KmemdesError("calibrate: could not restore: " + "; ".join(problems))
    for mode in ("small", "large"):
        m = (res.get("reclaim") or {}).get(mode)
        if m:
            mr = [i for i in ivs["memcg_reclaim"] if i["pid"] == m["pid"]]
            m.update(intervals=len(mr), pages=sum(i["pages"] for i in mr), ns=sum(i["dur_ns"] for i in mr))
    ours = [z for z in ivs["compact_zone"] if z["pid"] == res.get("compact", {}).get("tid")]
    res["compact"]["zones"] = len(ours)
    res["compact"]["migrated"] = sum(z["migrated"] for z in ours)
    res["compact"]["ns"] = sum(z["dur_ns"] for z in ours)
    att = []
    for d in run_dirs:
        import polars as pl

        f = Path(d) / "metrics" / "lab_intervals.parquet"
        if f.exists():
            att += pl.read_parquet(f).filter(pl.col("kind") == "direct_compaction").select("pages", "dur_ns").rows()
        f_rec = Path(d) / "metrics" / "lab_intervals.parquet"
        if f_rec.exists():
            dr = pl.read_parquet(f_rec).filter(pl.col("kind") == "direct_reclaim")
            res.setdefault("direct_reclaim", {"n": 0, "pages": 0, "ns": 0})
            res["direct_reclaim"]["n"] += dr.height
            res["direct_reclaim"]["pages"] += int(dr["pages"].sum() or 0)
            res["direct_reclaim"]["ns"] += int(dr["dur_ns"].sum() or 0)
    if att:
        a, b = fit_line([p for p, _ in att], [ns for _, ns in att])
        res["direct_compaction"] = {"attempts": len(att), "intercept_ns": round(a), "per_migrated_ns": round(b),
                                    "p50_ns": _median([ns for _, ns in att])}
    res["fitted"], res["how"] = _fit(res)
    return res


def _fit(res: dict) -> tuple[dict, dict]:
    fit, how = {}, {}
    f = res.get("fault_4k") or {}
    if f.get("p50_ns"):
        fit["page_fault"] = max(f["p50_ns"] - f["overhead_ns"], 0)
        how["page_fault"] = f"median 4 KiB first-touch fault of {f['n']} pages minus {f['overhead_ns']} ns timing overhead"
    t = res.get("thp") or {}
    if t.get("p50_ns"):
        fit["zero_per_page"] = round(t["p50_ns"] / 512)
        how["zero_per_page"] = f"median THP first touch {t['p50_ns'] / 1e3:.0f} us ({t['n']} huge ranges) / 512"
    v = res.get("vmalloc") or {}
    if "vmalloc_base" in v:
        if v["intercept_ns"] > v["kmalloc_4k_map_ns"]:
            fit["vmalloc_base"] = v["vmalloc_base"]
            how["vmalloc_base"] = (f"bpf array map create, 64 KiB-1 MiB: intercept {v['intercept_ns']} ns minus a "
                                   f"4 KiB (kmalloc) map {v['kmalloc_4k_map_ns']} ns")
        fit["vmalloc_per_page"] = v["vmalloc_per_page"]
        how["vmalloc_per_page"] = "bpf array map create, 64 KiB-1 MiB: slope per 4 KiB page (allocated, zeroed, mapped)"
    dr = res.get("direct_reclaim") or {}
    r = res.get("reclaim") or {}
    if dr.get("pages"):
        fit["reclaim_per_page"] = round(dr["ns"] / dr["pages"])
        how["reclaim_per_page"] = f"direct reclaim of the lab runs given: {dr['n']} reclaims, {dr['pages']} pages"
    elif (r.get("small") or {}).get("pages"):
        sm, lg = r["small"], r.get("large") or {}
        fit["reclaim_per_page"] = round(sm["ns"] / sm["pages"])
        large = (f"; large folios (readahead): {round(lg['ns'] / lg['pages'])} ns/page" if lg.get("pages") else "")
        how["reclaim_per_page"] = (f"memcg limit reclaim of 4 KiB page-cache folios (256 MiB read in 4 KiB in a 64 MiB "
                                   f"cgroup): {sm['intervals']} reclaims, {sm['pages']} pages, "
                                   f"{sm['ns'] / 1e6:.1f} ms{large}")
    c = res.get("compact") or {}
    if c.get("migrated"):
        fit["compact_per_migrated_page"] = round(c["ns"] / c["migrated"])
        how["compact_per_migrated_page"] = (f"compact_memory: {c['zones']} compact_zone runs, {c['migrated']} pages "
                                            f"migrated in {c['ns'] / 1e6:.1f} ms (scanning included)")
    d = res.get("direct_compaction") or {}
    if d.get("attempts", 0) >= 5 and d["intercept_ns"] > 0:
        fit["compact_base"] = d["intercept_ns"]
        how["compact_base"] = f"direct compaction attempts of the lab runs given: {d['attempts']}, intercept of ns vs migrated"
    return fit, how


def format_calibration(res: dict) -> str:
    lit = CostModel()
    lines = [f"calibrated on {res['machine']['uname']} ({res['machine']['date']})", "",
             f"{'field':<28}{'measured ns':>12}{'shipped ns':>12}  how"]
    for name in MEASURED:
        v = res["fitted"].get(name)
        lines.append(f"{name:<28}{'–' if v is None else v:>12}{getattr(lit, name):>12}  "
                     f"{res['how'].get(name, 'not measured (see kmemdes/lab/calibrate.py)')}")
    lines += ["", cost_toml(res)]
    return "\n".join(lines)


def cost_toml(res: dict) -> str:
    """The fitted values as a ``[cost]`` table (a config includes it with ``include = ["FILE.toml"]``)."""
    names = {f.name for f in fields(CostModel)}
    out = [f"# kmemdes lab --calibrate on {res['machine']['uname']}", f"# {res['machine']['date']}", "[cost]"]
    for k, v in res["fitted"].items():
        if k in names:
            out.append(f"{k} = {int(v)}  # {res['how'][k]}")
    return "\n".join(out) + "\n"
