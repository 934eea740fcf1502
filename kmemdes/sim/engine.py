"""The simulation engine: builds a machine, runs SimPy processes over simulated time, writes a run directory.

Time is integer nanoseconds.  Processes: one per trace replay, one per
synthetic workload stream, kswapd and kcompactd, and the monitor; never one per
allocation (DESIGN.md "Time").  :func:`replay_trace` and :func:`run_config` are
the two entry points the CLI calls.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import polars as pl
import simpy

from kmemdes import __version__
from kmemdes.config import Config, ReplayWorkload, dump_toml
from kmemdes.errors import KmemdesError
from kmemdes.mm import vmstat
from kmemdes.mm.frag import unusable_free_index
from kmemdes.mm.mm_init import build_node, mem_for_pfns, node_from_snapshot, parse_size
from kmemdes.mm.page_alloc import NR_PAGE_ORDERS, PAGE_FREE, PATH_NAMES, STALL_RECLAIM, Node, Policy
from kmemdes.progress import Progress, progress_for
from kmemdes.outpath import check_run_dir_output
from kmemdes.sim.cost import CostModel, LatencyHistogram
from kmemdes.sim.reread import REREAD_NOTE
from kmemdes.sim.monitor import Monitor
from kmemdes.sim.replay import POLICY_TICK_NS, Replayer
from kmemdes.sim.rundir import write_run

if TYPE_CHECKING:
    from kmemdes.sim.stalls import StallLatency

__all__ = ["policy_from_config", "make_node", "replay_trace", "run_config", "Sim"]

MAX_FAILURE_ROWS = 100_000
AUTO_MEM_MAX = 256 << 30  # a replay without snapshot sizes its machine to the trace's pfns, up to this (~0.9 GB RSS)


def policy_from_config(cfg: Config) -> Policy:
    p = cfg.policy
    return Policy(
        watermark_scale_factor=p.watermark_scale_factor,
        watermark_boost_factor=p.watermark_boost_factor,
        min_free_kbytes=p.min_free_kbytes or None,
        defrag_mode=p.fallback == "defrag_mode",
        group_by_mobility=p.group_by_mobility,
        thp_enabled=p.thp_enabled,
        fallback_version=p.fallback_version,
        nofragment=p.nofragment,
    )


#: the capture's /proc/sys/vm values a policy replay starts from (config key -> sysctl)
CAPTURE_SYSCTLS = {"watermark_scale_factor": "watermark_scale_factor",
                   "watermark_boost_factor": "watermark_boost_factor",
                   "compaction_proactiveness": "compaction_proactiveness",
                   "extfrag_threshold": "extfrag_threshold", "min_free_kbytes": "min_free_kbytes"}


def capture_policy(cfg: Config, cap: Path, notes: list, before: Optional[Path] = None) -> Config:
    """``cfg`` with every ``[policy]`` knob it does not set itself taken from the capture: the vm
    sysctls (``before/vm_sysctls``, or the corpus' ``vm_sysctls_during``) and the THP settings
    (``before/thp_enabled``, ``before/thp_defrag``) the kernel ran under.  ``before``: the snapshot
    folder (default ``cap/before``)."""
    from kmemdes.trace.snapshot import parse_thp_setting, parse_vm_sysctls

    before = cap / "before" if before is None else before
    src = next((p for p in (before / "vm_sysctls", cap / "vm_sysctls_during") if p.exists()), None)
    vm = parse_vm_sysctls(src.read_text()) if src else {}
    given = cfg.policy.model_fields_set
    upd: dict = {}
    if "fallback" not in given and vm.get("defrag_mode", "").isdigit():
        upd["fallback"] = "defrag_mode" if int(vm["defrag_mode"]) else "default"
    for key, name in CAPTURE_SYSCTLS.items():
        if key not in given and vm.get(name, "").isdigit():
            upd[key] = int(vm[name])
    for key in ("thp_enabled", "thp_defrag"):
        f = before / key
        if key not in given and f.exists():
            upd[key] = parse_thp_setting(f.read_text())
    if not upd:
        return cfg
    try:
        policy = type(cfg.policy).model_validate({**cfg.policy.model_dump(exclude_unset=True), **upd})
    except Exception as e:  # noqa: BLE001 - a value the schema refuses
        raise KmemdesError(f"{src or cap}: a policy value the config cannot hold: {e}") from None
    notes.append(f"policy from the capture ({src.name if src else 'before/'}): "
                 + ", ".join(f"{k}={v}" for k, v in sorted(upd.items())))
    return cfg.model_copy(update={"policy": policy})


def make_node(cfg: Config, snapshot: Optional[str | Path] = None, notes: Optional[list] = None) -> Node:
    """The initial machine of a run: a fresh boot, or a state consistent with a snapshot folder."""
    policy = policy_from_config(cfg)
    snap_dir = snapshot or (cfg.initial.snapshot if cfg.initial.state == "snapshot" else None)
    if snap_dir:
        from kmemdes.trace.snapshot import read_snapshot

        node, snap_notes = node_from_snapshot(read_snapshot(snap_dir), policy=policy)
        if notes is not None:
            notes.extend(snap_notes)
        return node
    return build_node(cfg.machine.arch, parse_size(cfg.machine.mem), cpus=cfg.machine.cpus, policy=policy)


#: counted by every workload that faults THPs (do_huge_pmd_anonymous_page), summed over them
THP_FAULT_COUNTERS = ("thp_fault_alloc", "thp_fault_fallback")


class Sim:
    """One simulation: a node, a SimPy environment, a monitor and the processes that drive them."""

    def __init__(self, cfg: Config, node: Node, notes: list[str]):
        self.cfg = cfg
        self.node = node
        self.notes = notes
        self.env = simpy.Environment()
        self.cost = CostModel.from_overrides(cfg.cost.model_extra or {})
        self.hist = LatencyHistogram()
        self.replayers: list[Replayer] = []
        self.monitor: Optional[Monitor] = None
        self.workloads: list = []
        self._kernel = None
        self.fragmenter_owner = None
        self.stalls: Optional[StallLatency] = None  # with reclaim/compaction models (attach_daemons)
        self.trace_stalls: Optional[dict] = None  # a policy replay's: the trace's own stalls, as the kernel timed them
        self.trace_compaction_runs: Optional[dict] = None  # a policy replay's: how the kernel's compact_zone runs ended
        #: a policy replay's: the kernel's direct compaction stalls by requester and outcome (``attempt_table``)
        self.trace_compaction_attempts: Optional[dict] = None

    def kernel(self):
        """The SLUB / vmalloc / user-space models on this node (created on first use)."""
        if self._kernel is None:
            from kmemdes.mm.kernel import Kernel

            m = self.cfg.machine
            self._kernel = Kernel(m.arch, m.mem, cpus=self.node.cpus, seed=self.cfg.seed, node=self.node,
                                  thp=self.cfg.policy.thp_enabled)
        return self._kernel

    def attach_daemons(self) -> None:
        """Reclaim and compaction models on the node, and the kswapd / kcompactd processes."""
        from kmemdes.mm.compaction import Compaction
        from kmemdes.mm.reclaim import Reclaim
        from kmemdes.sim.daemons import DaemonCosts, start_daemons
        from kmemdes.sim.stalls import StallLatency

        p = self.cfg.policy
        Reclaim(self.node)
        if p.compaction:
            Compaction(self.node, proactiveness=p.compaction_proactiveness, extfrag_threshold=p.extfrag_threshold,
                       seed=self.cfg.seed)
        costs = DaemonCosts()
        self.stalls = StallLatency(costs)
        self.node.stall_log = self.stalls.log
        if p.kswapd:
            start_daemons(self.env, self.node, costs, seed=self.cfg.seed)
        elif self.node.compaction is not None:
            from kmemdes.sim.daemons import kcompactd

            self.env.process(kcompactd(self.env, self.node, costs))

    def adopt_start(self, adopt: tuple, owner) -> None:
        """Hand the movable folios in use at a snapshot's start (:func:`kpageflags_start`) to ``owner``
        (a policy replay's pages, or a :class:`~kmemdes.sim.workloads.PageOwner`), so that the reclaim
        and compaction models can reclaim and move them; pageblocks one hugetlb page fills start
        marked skip."""
        node = self.node
        if node.compaction is not None:
            n = node.compaction.mark_persistent_skip()
            if n:
                self.notes.append(f"{n:,} pageblocks filled by one hugetlb page start marked skip (compaction "
                                  "passed them before the trace and never clears that mark)")
        owner.adopt(node, *adopt)
        self.notes.append(f"{len(adopt[0]):,} movable pages in use at the start ({sum(map(bool, adopt[2])):,} "
                          "page cache) adopted by the models' reclaim and compaction")

    def stall_mark(self) -> int:
        """Where the stall log stands: give it to :meth:`stall_work` after a request."""
        return len(self.stalls.log) if self.stalls is not None else 0

    def stall_ns(self, mark: int) -> int:
        """How long the direct reclaim and compaction stalls logged since ``mark`` took (their work priced
        as :mod:`kmemdes.sim.stalls` prices it)."""
        return self.stalls.price(self.stalls.log[mark:]) if self.stalls is not None else 0

    def stall_work(self, mark: int) -> tuple[int, int, int]:
        """(pages reclaimed, pages migrated, pfns scanned) by the direct reclaim and direct compaction
        stalls logged since ``mark``: a request's own work, not what kswapd reclaimed beside it."""
        if self.stalls is None:
            return (0, 0, 0)
        reclaimed = migrated = scanned = 0
        for entry in self.stalls.log[mark:]:
            w = entry[1]
            if entry[0] == STALL_RECLAIM:
                reclaimed += w.reclaimed
            else:
                migrated += w.migrated
                scanned += w.migrate_scanned + w.free_scanned
        return reclaimed, migrated, scanned

    def add_replay(self, events: pl.DataFrame, mode: str, name: str, events_by_type: dict | None = None,
                   kernel_ops: pl.DataFrame | None = None, sanitized=None) -> Replayer:
        r = Replayer(self.node, events, mode=mode, cost=self.cost, hist=self.hist, workload=name,
                     events_by_type=events_by_type, kernel_ops=kernel_ops, sanitized=sanitized,
                     kernel=self.kernel() if mode == "policy" else None,
                     tick_ns=POLICY_TICK_NS if mode == "policy" else 1_000_000)
        self.replayers.append(r)
        self.env.process(r.process(self.env))
        return r

    def _slab_rows(self):
        rows = []
        for w in self.workloads:
            if hasattr(w, "slab_rows"):
                rows.extend(w.slab_rows())
        return rows

    def _vmalloc_row(self):
        tot = [0, 0, 0, 0, 0]
        for src in list(self.replayers) + [w for w in self.workloads if hasattr(w, "vmalloc_row")]:
            for i, v in enumerate(src.vmalloc_row()):
                tot[i] += v
        return tuple(tot)

    def run(self, until_ns: int, progress: bool | Progress = True, label: str = "simulating") -> None:
        """Run to ``until_ns``; ``progress``: a :class:`~kmemdes.progress.Progress`, or True for a bar
        on a terminal's stderr (closed at the end)."""
        sample_ns = self.cfg.sample_ns
        self.monitor = Monitor(self.node, duration_ns=until_ns, slab_sampler=self._slab_rows,
                               vmalloc_sampler=self._vmalloc_row, counter_sampler=self._counters)
        bar = progress_for(progress)
        bar.stage(label, until_ns)

        def monitor_proc(env):
            self.monitor.sample(0)
            while True:
                # an idle gap (a trace whose timestamps jump by hours) is skipped to its last sample time
                # in one step: nothing but the daemons acts before the next event of the workloads
                nxt = self._next_activity(env)
                gap = sample_ns if nxt == simpy.core.Infinity else nxt - env.now
                yield env.timeout(max(sample_ns, min(gap, until_ns - env.now) // sample_ns * sample_ns))
                if env.now >= until_ns:
                    return
                self.monitor.sample(env.now)
                bar.update(env.now)

        self.env.process(monitor_proc(self.env))
        try:
            self.env.run(until=until_ns)
        finally:
            if bar is not progress:
                bar.close()
        self.monitor.sample(until_ns, final=True)
        for r in self.replayers:
            r.finalize()

    def _next_activity(self, env) -> float:
        """When the workloads act next: the next tick of a replay with events left (synthetic workloads and,
        without replays, anything scheduled: ``env.peek()``).  kswapd and kcompactd wake on timers through
        an idle gap of a trace; what they do there is sampled at the gap's end."""
        if self.workloads or not self.replayers:
            return env.peek()
        t = simpy.core.Infinity
        for r in self.replayers:
            if r.pos < r.n:
                t = min(t, int(r._ts[r.pos]) // r.tick_ns * r.tick_ns)
        return max(t, env.now)

    def _counters(self) -> dict:
        out = {}
        for model in (self.node.compaction, self.node.reclaim):
            if model is not None:
                out.update(model.vmstat)
        # /proc/vmstat's THP fault counters are the node's: every workload's faults add up
        for key in THP_FAULT_COUNTERS:
            out.setdefault(key, 0)
        for w in self.workloads:
            if hasattr(w, "counters"):
                for key, v in w.counters().items():
                    out[key] = out[key] + v if key in THP_FAULT_COUNTERS else v
        return out

    # ------------------------------------------------------------ outputs
    def metrics(self) -> dict[str, pl.DataFrame]:
        frames = self.monitor.frames()
        if self.replayers:
            times = frames["score"]["t_ns"].unique().sort().to_list()
            frames["slab"] = pl.concat([frames["slab"]] + [r.objects.sample(times) for r in self.replayers],
                                       how="vertical_relaxed").sort("t_ns", "cache")
        req_rows: dict[tuple, int] = {}
        failures: list[tuple] = []
        sizes: dict = {}
        fallbacks: dict = {}
        direct: dict[tuple, int] = {}
        for r in self.replayers:
            for (order, cls, path), c in r.stats.requests.items():
                key = (order, cls, PATH_NAMES[path], r.workload)
                req_rows[key] = req_rows.get(key, 0) + c
                if r.mode == "policy":  # these went through node.alloc_pages too
                    direct[(order, cls, path)] = direct.get((order, cls, path), 0) + c
            failures.extend((t, o, g, r.workload) for t, o, g in r.stats.failures)
            for k, v in r.stats.sizes.items():
                sizes[k] = sizes.get(k, 0) + v
            for k, v in r.stats.fallbacks.items():
                fallbacks[k] = fallbacks.get(k, 0) + v
        for w in self.workloads:
            for (order, cls, path, name), c in w.requests.items():
                key = (order, cls, PATH_NAMES[path], name)
                req_rows[key] = req_rows.get(key, 0) + c
                dk = (order, cls, path)
                direct[dk] = direct.get(dk, 0) + c
            failures.extend(w.failures)
            for k, v in getattr(w, "sizes", {}).items():
                sizes[k] = sizes.get(k, 0) + v
        if self.workloads or any(r.mode == "policy" for r in self.replayers):
            # page allocations the models made on the workloads' behalf (slab pages, page faults,
            # page tables, vmalloc backing): node counts minus what workloads recorded themselves
            npath = len(PATH_NAMES)
            for idx, c in enumerate(self.node.nr_req):
                if not c:
                    continue
                atomic = idx & 1
                order, path = divmod(idx >> 1, npath)
                cls = "atomic" if atomic else "reclaim"
                rest = c - direct.get((order, cls, path), 0)
                if rest > 0:
                    key = (order, cls, PATH_NAMES[path], "(via models)")
                    req_rows[key] = rest
                    self.hist.add_n(order, path, self.cost.page_alloc(order, path, False), rest)
        if not self.replayers or self.replayers[0].mode == "policy" or self.workloads:
            fallbacks = {}
            for (a, f, kind, frag), c in self.node.extfrag.items():
                key = (a, f, kind, bool(frag))
                fallbacks[key] = fallbacks.get(key, 0) + c
        rq = sorted(req_rows.items())
        frames["requests"] = pl.DataFrame(
            {"order": [k[0] for k, _ in rq], "gfp_class": [k[1] for k, _ in rq], "path": [k[2] for k, _ in rq],
             "workload": [k[3] for k, _ in rq], "count": [c for _, c in rq]},
            schema={"order": pl.Int8, "gfp_class": pl.String, "path": pl.String, "workload": pl.String,
                    "count": pl.Int64})
        lat = self.hist.rows()
        frames["latency"] = pl.DataFrame(
            {"order": [r[0] for r in lat], "path": [r[1] for r in lat], "bucket_ns": [r[2] for r in lat],
             "count": [r[3] for r in lat]},
            schema={"order": pl.Int8, "path": pl.String, "bucket_ns": pl.Int64, "count": pl.Int64})
        sz = sorted(sizes.items())
        frames["sizes"] = pl.DataFrame({"kind": [k[0] for k, _ in sz], "bucket_bytes": [k[1] for k, _ in sz],
                                        "count": [c for _, c in sz]},
                                       schema={"kind": pl.String, "bucket_bytes": pl.Int64, "count": pl.Int64})
        fb = sorted(fallbacks.items())
        frames["fallbacks"] = pl.DataFrame(
            {"alloc_mt": [k[0] for k, _ in fb], "fallback_mt": [k[1] for k, _ in fb], "kind": [k[2] for k, _ in fb],
             "fragmenting": [bool(k[3]) for k, _ in fb], "count": [c for _, c in fb]},
            schema={"alloc_mt": pl.Int8, "fallback_mt": pl.Int8, "kind": pl.String, "fragmenting": pl.Boolean,
                    "count": pl.Int64})
        failures.sort()
        failures = failures[:MAX_FAILURE_ROWS]
        frames["failures"] = pl.DataFrame(
            {"t_ns": [f[0] for f in failures], "order": [f[1] for f in failures],
             "gfp_flags": [f[2] for f in failures], "workload": [f[3] for f in failures]},
            schema={"t_ns": pl.Int64, "order": pl.Int8, "gfp_flags": pl.String, "workload": pl.String})
        return frames

    def summary(self, frames: dict, kind: str, mode: str, name: str, sim_ns: int, wall_s: float) -> dict:
        node = self.node
        req = frames["requests"]
        by_order: dict[str, dict] = {}
        for order in range(NR_PAGE_ORDERS):
            sub = req.filter(pl.col("order") == order)
            if sub.height == 0:
                continue
            attempts = int(sub["count"].sum())
            failures = int(sub.filter(pl.col("path") == "failed")["count"].sum())
            fallbacks = int(sub.filter(pl.col("path").is_in(["fallback_claim", "fallback_steal"]))["count"].sum())
            by_order[str(order)] = {"attempts": attempts, "failures": failures, "fallbacks": fallbacks}
        latency = {}
        for order in range(NR_PAGE_ORDERS):
            q = self.hist.quantiles(order)
            if q:
                latency[str(order)] = q
        fb = frames["fallbacks"]
        claims = int(fb.filter(pl.col("kind") == "claim")["count"].sum()) if fb.height else 0
        steals = int(fb.filter(pl.col("kind") == "steal")["count"].sum()) if fb.height else 0
        pollute = int(fb.filter((pl.col("kind") == "steal") & (pl.col("alloc_mt") != 1))["count"].sum()) if fb.height else 0
        counters = self._counters()
        attempts = counters.get("compact_stall", 0)
        success = counters.get("compact_success", 0)
        events_by_type: dict[str, int] = {}
        quirks: dict[str, int] = {}
        replayed = 0
        notes = list(self.notes)
        for r in self.replayers:
            for k, v in r.events_by_type.items():
                events_by_type[k] = events_by_type.get(k, 0) + v
            for k, v in r.stats.quirks.items():
                quirks[k] = quirks.get(k, 0) + v
            replayed += r.stats.replayed
            notes.extend(r.stats.notes)
            if r.stats.online_pages:
                notes.append(f"{r.stats.online_pages} pages handed to the buddy allocator by deferred init "
                             "(zone growth without trace events)")
        requests = int(req["count"].sum())
        rows = vmstat.node_zone_rows(node)
        out = {
            "kmemdes_version": __version__,
            "kind": kind,
            "name": name,
            "mode": mode,
            "seed": self.cfg.seed,
            "sim_ns": sim_ns,
        }
        if self.replayers:
            out["events"] = sum(r.n_total for r in self.replayers)
            out["events_replayed"] = replayed
            out["events_by_type"] = dict(sorted(events_by_type.items()))
            out["quirks"] = dict(sorted(quirks.items()))
            qp: dict[str, int] = {}
            for r in self.replayers:
                for k, v in r.stats.quirk_pages.items():
                    qp[k] = qp.get(k, 0) + v
            out["quirk_pages"] = dict(sorted(qp.items()))
            tr: dict[str, int] = {}
            for r in self.replayers:
                for k, v in r.sanitized.time_repairs.items():
                    tr[k] = tr.get(k, 0) + v
            out["time_repairs"] = dict(sorted(tr.items()))
            out["trace_pages"] = {k: sum(r.trace_pages[k] for r in self.replayers) for k in ("allocated", "freed")}
        out["requests"] = requests
        out["requests_by_order"] = by_order
        out["failure_rate_by_order"] = {o: (v["failures"] / v["attempts"] if v["attempts"] else None)
                                        for o, v in by_order.items()}
        out["latency_ns"] = latency
        out["compaction"] = {"attempts": attempts, "success": success,
                             "success_rate": (success / attempts) if attempts else None}
        if self.stalls is not None:
            out["stall_latency_ns"] = self.stalls.summary()
            from kmemdes.sim.stalls import attempt_table

            out["compaction_attempts"] = attempt_table(self.stalls.attempts())
        if self.trace_compaction_attempts is not None:
            out["trace_compaction_attempts"] = self.trace_compaction_attempts
        if self.trace_stalls is not None:
            out["trace_stall_latency_ns"] = self.trace_stalls
        comp = getattr(self.node, "compaction", None)
        if comp is not None and comp.run_ends:
            out["compaction_runs"] = comp.run_summary()
        if self.trace_compaction_runs is not None:
            out["trace_compaction_runs"] = self.trace_compaction_runs
        out["fallbacks"] = {"claim": claims, "steal": steals, "pollute": pollute}
        if counters:
            out["vmstat"] = {k: int(v) for k, v in sorted(counters.items())}
        pages = [r.pages for r in self.replayers if r.pages is not None]
        if pages:
            p = pages[0]
            out["policy_requests"] = {
                "attempts_by_order": {str(o): n for o, n in enumerate(p.attempts) if n},
                "failures_by_order": {str(o): n for o, n in enumerate(p.failures) if p.attempts[o]},
                **p.counts}
            out["trace_requests"] = self.replayers[0].trace_requests
            if p.reread is not None:
                out["policy_requests"]["reread_hit_pages"] = p.reread.hit_pages
                notes.append(f"{REREAD_NOTE} (no mm_lru_activate events in the trace; kmemdes.sim.reread): "
                             f"{p.reread.rereads} re-reads, {p.reread.hit_pages:,} pages hit, "
                             f"{p.reread.refault_pages:,} refaulted")
        out["final"] = {"buddyinfo": vmstat.buddyinfo(node), "pagetypeinfo": vmstat.pagetypeinfo(node),
                        "unusable_index": vmstat.unusable_index(node), "extfrag_index": vmstat.extfrag_index(node)}
        out["final_unusable_by_order"] = {z: [unusable_free_index(nr, o) for o in range(NR_PAGE_ORDERS)]
                                          for _, z, nr in rows}
        out["final_unusable_unit"] = "thousandths (debugfs extfrag/unusable_index x 1000)"
        out["notes"] = notes
        out["wall_s"] = round(wall_s, 3)
        total_events = out.get("events", requests)
        out["events_per_s"] = int(total_events / wall_s) if wall_s > 0 else None
        return out


def _log_text(summary: dict) -> str:
    lines = [f"kmemdes {summary['kmemdes_version']} {summary['kind']} {summary['name']} ({summary['mode']})"]
    for n in summary.get("notes", []):
        lines.append(f"note: {n}")
    for k, v in summary.get("quirks", {}).items():
        lines.append(f"quirk {k}: {v}")
    for k, v in summary.get("time_repairs", {}).items():
        lines.append(f"time repair {k}: {v}")
    return "\n".join(lines) + "\n"


def _default_out(name: str, mode: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "run"
    return Path("runs") / f"{safe}-{mode}"


def replay_trace(trace_path: str | Path, out: Optional[str | Path] = None, mode: str = "mirror",
                 cfg: Optional[Config] = None, snapshot: Optional[str | Path] = None,
                 progress: bool | Progress = True, strict: bool = False,
                 kpageflags: Optional[str | Path] = None, force: bool = False) -> tuple[Path, dict]:
    """``kmemdes replay``: replay a trace (any format ``read_trace`` reads) and write a run directory.

    ``progress``: a :class:`~kmemdes.progress.Progress` (reading, replaying, writing), or True for a
    bar on a terminal's stderr.

    ``kpageflags``: a ``kpageflags.zst`` taken with the capture's ``before/``
    snapshot; the initial state then has its exact free-page layout
    (:func:`kmemdes.sim.kpageflags.node_from_kpageflags`).
    """
    t_start = time.perf_counter()
    bar = progress_for(progress)
    try:
        return _replay_trace(trace_path, out, mode, cfg, snapshot, bar, strict, kpageflags, t_start, force)
    finally:
        if bar is not progress:
            bar.close()


def _replay_trace(trace_path, out, mode, cfg, snapshot, progress: Progress, strict, kpageflags, t_start, force):
    from kmemdes.trace.reader import read_trace
    from kmemdes.trace.snapshot import snapshot_from_texts

    from kmemdes.sim.replay import POLICY_READ_COLUMNS, READ_COLUMNS, slim_events
    from kmemdes.sim.sanitize import cut_end_snapshot, sanitize_events

    name = Path(str(trace_path).rstrip("/")).name
    for ext in (".zst", ".gz", ".xz", ".kmt", ".parquet", ".dat", ".txt"):  # trace.txt.zst -> trace
        if name.endswith(ext) and len(name) > len(ext):
            name = name[: -len(ext)]
    # refused before any work: an existing file or folder that is not a run directory, a missing parent
    out = check_run_dir_output(out if out else _default_out(name, mode), force=force, make_parents=out is None)
    # only the columns a replay reads (a .kmt or Parquet decodes no others): the strings of a big trace
    # are hundreds of MB
    trace = read_trace(trace_path, strict=strict, columns=POLICY_READ_COLUMNS if mode == "policy" else READ_COLUMNS,
                       progress=progress)
    progress.stage("preparing the replay")
    # fields no kernel prints and timestamps out of place, before anything indexes rows or orders
    # (the start hints, the kernel ops keyed by the slimmed frame's rows)
    events, fix = sanitize_events(trace.events)
    trace.events = None
    events = cut_end_snapshot(events, fix)
    marks = None
    if kpageflags is not None:
        from kmemdes.sim.kpageflags import trace_marks

        marks = trace_marks(events)  # when before/kpageflags was read (the slimmed rows drop their text)
    kernel_attempts = None
    if mode == "policy":
        from kmemdes.trace.pressure import compaction_attempts

        kernel_attempts = compaction_attempts(events)  # needs the compaction events' text, which slimming drops
    events, by_type, ops = slim_events(events, decided=mode == "policy")
    for ev_name, n in fix.dropped_by_event.items():  # the skipped rows are events of the trace too
        by_type[ev_name] = by_type.get(ev_name, 0) + n
    cfg = cfg or Config(name=name)
    if cfg.name == Config.model_fields["name"].default:  # a --config without its own name: the trace's
        cfg = cfg.model_copy(update={"name": name})
    if not any(isinstance(w, ReplayWorkload) for w in cfg.workloads):
        cfg = cfg.model_copy(update={"workloads": list(cfg.workloads) + [ReplayWorkload(kind="replay",
                                                                                        trace=str(trace_path),
                                                                                        mode=mode)]})
    notes: list[str] = []
    cap_dir = trace.meta.get("capture_dir")
    if mode == "policy" and cap_dir:
        cfg = capture_policy(cfg, Path(cap_dir), notes)
    adopt = None
    if kpageflags is not None:
        node, adopt = _node_from_kpageflags(trace, events, cfg, mode, kpageflags, notes, marks)
    elif snapshot is not None:
        node = make_node(cfg, snapshot, notes)
        notes.append(f"initial state from {snapshot}")
    elif trace.meta.get("before"):
        from kmemdes.sim.hints import start_hints

        snap = snapshot_from_texts(trace.meta["before"], Path(trace.meta.get("capture_dir", ".")) / "before")
        hints = start_hints(events) if mode == "mirror" else None
        node, snap_notes = node_from_snapshot(snap, policy=policy_from_config(cfg), hints=hints)
        notes.extend(snap_notes)
        notes.append("initial state from the capture's before/ snapshot")
    else:
        # no snapshot: a fresh machine, large enough for every pfn the trace names
        top = events.filter(pl.col("pfn") >= 0).select(
            (pl.col("pfn") + pl.lit(2, pl.Int64).pow(pl.col("order").fill_null(0).cast(pl.Int64))).max()).item()
        need = mem_for_pfns(cfg.machine.arch, int(top or 0))
        if need > max(AUTO_MEM_MAX, parse_size(cfg.machine.mem)):
            notes.append(f"the trace names pfns up to {int(top) - 1:#x}: the machine is capped at "
                         f"{AUTO_MEM_MAX >> 30} GiB (set machine.mem for a larger one); page events beyond it "
                         "are counted as pfn_outside_memory")
            need = AUTO_MEM_MAX
        if need > parse_size(cfg.machine.mem):
            gib = -(-need // (1 << 30))
            cfg = cfg.model_copy(update={"machine": cfg.machine.model_copy(update={"mem": f"{gib}G"})})
        node = make_node(cfg, None, notes)
        notes.append(f"no snapshot: a freshly booted {cfg.machine.mem} {cfg.machine.arch} machine")
    for kind, p in trace.problems.items():
        notes.append(f"trace problem {kind}: {p.get('count')} (first at line {(p.get('lines') or ['?'])[0]})")
    sim = Sim(cfg, node, notes)
    if mode == "policy":
        from kmemdes.sim.stalls import attempt_table, trace_stalls
        from kmemdes.trace.pressure import compaction_runs

        sim.attach_daemons()  # the kernel's reclaim and compaction are the models' to decide
        sim.trace_stalls = trace_stalls(events["ts"], ops)  # what the models' stalls are compared with
        sim.trace_compaction_runs = compaction_runs(ops)
        sim.trace_compaction_attempts = attempt_table(kernel_attempts)
    sim.add_replay(events, mode, name, by_type, ops, sanitized=fix)
    del events
    r = sim.replayers[0]
    if adopt is not None and r.pages is not None:
        sim.adopt_start(adopt, r.pages)
    end = (r.t_max // 1_000_000 + 1) * 1_000_000
    sim.run(end, progress=progress, label=f"replaying {name}")
    progress.stage("writing the run directory")
    frames = sim.metrics()
    wall = time.perf_counter() - t_start
    summary = sim.summary(frames, "replay", mode, name, end, wall)
    write_run(out, dump_toml(cfg), summary, _log_text(summary), frames, force=force, make_parents=True)
    return out, summary


def _node_from_kpageflags(trace, events: pl.DataFrame, cfg: Config, mode: str, kpageflags: str | Path,
                          notes: list, marks: Optional[list] = None) -> tuple[Node, Optional[tuple]]:
    """The initial state of a replay from the capture's ``before/`` snapshot and a kpageflags file, and
    (policy mode) the movable folios in use then (:func:`kpageflags_start`); ``marks``: the trace's
    markers (when kpageflags was read)."""
    from kmemdes.sim.hints import start_hints
    from kmemdes.sim.kpageflags import trace_pageblock_types
    from kmemdes.trace.snapshot import snapshot_from_texts

    if not trace.meta.get("before"):
        raise KmemdesError(f"{kpageflags}: a kpageflags layout needs the capture's before/ snapshot "
                           "(zoneinfo, pagetypeinfo) beside the trace")
    snap = snapshot_from_texts(trace.meta["before"], Path(trace.meta.get("capture_dir", ".")) / "before")
    # both modes start from what the trace shows of the start: pages in use, pages free on per-CPU lists
    # (kpageflags shows those as neither buddy nor anything else; before/zoneinfo counts them: 18,711 Normal
    # pages on k_pressure_defrag's, 4,323 on j_pressure_stock's), pages taken or freed while kpageflags was
    # read, and the pageblock types (the free list a page came off, the type a drain printed; blocks a
    # fallback re-typed left out): with counts alone every free page of the 7 December captures' Normal
    # started a prediction on a Movable list, where pagetypeinfo counts 252 Unmovable and 10,387
    # Reclaimable free pages (n2_defrag), and the models' first unmovable refills failed within 0.4 s
    hints = start_hints(events)
    evidence = trace_pageblock_types(events)
    node, adopt = kpageflags_start(snap, kpageflags, cfg, notes, hints, evidence, movable=mode == "policy",
                                   marks=marks)
    notes.append(f"initial state from the capture's before/ snapshot and {kpageflags}")
    return node, adopt


def kpageflags_start(snap, kpageflags: str | Path, cfg: Config, notes: list, hints=None, evidence=None,
                     movable: bool = True, marks: Optional[list] = None) -> tuple[Node, Optional[tuple]]:
    """A node with the exact page layout of ``snap`` and its ``kpageflags`` file
    (:func:`kmemdes.sim.kpageflags.node_from_kpageflags`) and, with ``movable``, the movable folios
    in use then (:func:`kmemdes.sim.kpageflags.movable_folios`: head pfns, orders, LRU state) for
    :meth:`Sim.adopt_start`; the hugetlb pages in use are compound pages (``alloc_order`` set), as
    compaction's scanners see them."""
    from kmemdes.sim.kpageflags import (hugetlb_folios, movable_folios, node_from_kpageflags, pcp_thp_blocks,
                                        read_kpageflags)

    kpf = read_kpageflags(kpageflags)
    if hints is None:
        # no trace to show the per-CPU lists: PMD-order pages waiting there have no flag at all
        from kmemdes.sim.hints import StartHints

        pcp = pcp_thp_blocks(kpf, snap)
        if pcp:
            hints = StartHints(pcp_blocks=pcp, pageblock_types={p >> 9: 1 for p, _, _, _ in pcp})
            notes.append(f"{len(pcp):,} pageblocks with no page flag, within their zone's per-CPU list counts: "
                         "free PMD-order pages on per-CPU lists")
    node, kp_notes, _ = node_from_kpageflags(snap, kpf, policy=policy_from_config(cfg), hints=hints,
                                             evidence=evidence, marks=marks)
    notes.extend(kp_notes)
    if not movable:
        return node, None
    # hugetlb pages are compound pages in use: compaction's scanners step over them whole
    heads, orders = hugetlb_folios(kpf, node.max_pfn)
    ao = node.alloc_order
    for pfn, order in zip(heads, orders):
        if node.page_mt.count(PAGE_FREE, pfn, pfn + (1 << order)) == 0:
            ao[pfn] = order
    if heads:
        notes.append(f"{len(heads):,} hugetlb pages in use at the start (compound, not migratable)")
    return node, movable_folios(kpf, node.max_pfn)


def initial_node(cfg: Config, notes: list) -> tuple[Node, Optional[tuple], Config]:
    """The machine a ``kmemdes run`` starts from: a fresh boot (:func:`make_node`), or with
    ``initial.state = "snapshot"`` a snapshot folder's state; with its ``kpageflags.zst`` (and
    ``initial.kpageflags``) the exact page layout and the movable folios in use then, for
    :meth:`Sim.adopt_start`.  A capture's ``before/`` also gives the policy knobs the config leaves
    unset (:func:`capture_policy`: the sysctls and THP settings the kernel ran under)."""
    ini = cfg.initial
    if ini.state != "snapshot":
        return make_node(cfg, None, notes), None, cfg
    from kmemdes.trace.snapshot import read_snapshot

    folder = Path(ini.snapshot)
    snap = read_snapshot(folder)  # a one-line error for a missing folder or buddyinfo
    cfg = capture_policy(cfg, folder.resolve().parent, notes, before=folder)
    kpf = folder / "kpageflags.zst"
    adopt = None
    if ini.kpageflags and kpf.exists():
        node, adopt = kpageflags_start(snap, kpf, cfg, notes)
        notes.append(f"initial state from {folder} and its kpageflags.zst")
    else:
        node = make_node(cfg, folder, notes)
        notes.append(f"initial state from {folder}" + (" (no kpageflags.zst: a layout consistent with its "
                                                         "buddyinfo)" if ini.kpageflags else ""))
    if "mem" in cfg.machine.model_fields_set:
        # the snapshot's machine is the one simulated: a config's own size that disagrees gives way
        want = parse_size(cfg.machine.mem)
        have = sum(z.managed for z in node.zones) << 12
        if abs(have - want) > want // 20:
            notes.append(f"machine.mem = {cfg.machine.mem} not used: the snapshot is a machine of "
                         f"{have / 2**30:.1f} GiB managed memory")
    return node, adopt, cfg


def run_config(cfg: Config, out: Optional[str | Path] = None, progress: bool = True,
               force: bool = False) -> tuple[Path, dict]:
    """``kmemdes run``: simulate a config's workloads over its duration and write a run directory
    (an existing one is replaced only with ``force``, :func:`kmemdes.outpath.check_run_dir_output`)."""
    from kmemdes.sim.workloads import make_workloads, prepare_initial_state

    out = check_run_dir_output(out if out else _default_out(cfg.name, "run"), force=force, make_parents=out is None)
    t_start = time.perf_counter()
    notes: list[str] = []
    node, adopt, cfg = initial_node(cfg, notes)
    sim = Sim(cfg, node, notes)
    prepare_initial_state(sim)
    sim.attach_daemons()
    if adopt is not None:
        from kmemdes.sim.workloads import PageOwner

        sim.adopt_start(adopt, PageOwner())  # the models' rmap and LRU keep it
    make_workloads(sim)
    duration = cfg.duration_ns
    sim.run(duration, progress=progress, label=f"running {cfg.name}")
    frames = sim.metrics()
    wall = time.perf_counter() - t_start
    kind_mode = "mirror" if any(r.mode == "mirror" for r in sim.replayers) else (
        "policy" if sim.replayers else "synthetic")
    summary = sim.summary(frames, "run", kind_mode, cfg.name, duration, wall)
    write_run(out, dump_toml(cfg), summary, _log_text(summary), frames, force=force, make_parents=True)
    return out, summary
