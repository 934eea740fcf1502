"""Synthetic run directories in the RUNDIR.md format, for the report tests and benchmark.

The simulator that writes real run directories is built in parallel; until its output can
be used, these fixtures follow /work/brief/RUNDIR.md exactly and keep the numbers
internally consistent (the fragmentation indices are computed from the buddy counts with
the kernel's formulas, the summary's totals from the metrics tables), so tests can check
the report against independent arithmetic on the same files.

``make_run(path, **knobs)`` writes one run directory and returns its path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

ZONES_SMALL = (("DMA", 8), ("DMA32", 504), ("Normal", 512))   # (zone, pageblocks): 16 MiB, ~1 GiB, 1 GiB
EVIL = "<script>alert(1)</script>"
NORMAL_CACHES = ["kmalloc-64", "kmalloc-128", "kmalloc-256", "kmalloc-1k", "dentry", "inode_cache",
                 "maple_node", "vm_area_struct", "anon_vma", "buffer_head", "radix_tree_node", "task_struct",
                 "skbuff_head_cache", "filp", "ext4_inode_cache", "kmalloc-4k", "kmalloc-8k", "sighand_cache"]
PATHS = ["pcp", "pcp_refill", "buddy", "fallback_claim", "fallback_steal", "slowpath", "after_reclaim",
         "after_compaction", "failed"]


def unusable_np(nr_free: np.ndarray, order: int) -> np.ndarray:
    """``unusable_free_index`` over the last axis (orders 0..10), vectorised (mm/vmstat.c)."""
    o = np.arange(11)
    free_pages = (nr_free << o).sum(-1)
    suitable = (nr_free[..., order:] << (o[order:] - order)).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(free_pages == 0, 1000, (free_pages - (suitable << order)) * 1000 // np.maximum(free_pages, 1))
    return v.astype(np.int32)


def extfrag_np(nr_free: np.ndarray, order: int) -> np.ndarray:
    """``__fragmentation_index`` over the last axis (mm/vmstat.c)."""
    o = np.arange(11)
    free_pages = (nr_free << o).sum(-1)
    total = nr_free.sum(-1)
    suitable = (nr_free[..., order:] << (o[order:] - order)).sum(-1)
    v = 1000 - (1000 + free_pages * 1000 // (1 << order)) // np.maximum(total, 1)
    v = np.where(suitable > 0, -1000, v)
    v = np.where(total == 0, 0, v)
    return v.astype(np.int32)


def _c_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _fmt_index(i: int) -> str:
    return f"{_c_div(i, 1000)}.{abs(i) % 1000 if i < 0 and i > -1000 else i - _c_div(i, 1000) * 1000:03d}"


def make_run(path: str | Path, *, name: str = "fixture", seed: int = 1, samples: int = 300,
             sample_ns: int = 100_000_000, zones=ZONES_SMALL, caches: int = 12, failures_cap: int = 100_000,
             snapshots: int = 12, severity: float = 1.0, noise: float = 0.03, evil: bool = False,
             policy_fallback: str = "default", events: int = 250_000, kind: str = "run",
             extra_config: str = "", wall_s: float = 2.0, quirks: dict | None = None) -> Path:
    """Write a run directory at ``path``.

    ``severity`` scales how fast memory fragments (and so failures, fallbacks, latency);
    ``seed`` adds replica-to-replica noise of relative size ``noise``; ``evil`` puts
    ``<script>alert(1)</script>`` into a cache name, a workload name, a failure's gfp
    string and config values.
    """
    p = Path(path)
    (p / "metrics").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed * 7919 + int(severity * 1000))
    jitter = lambda: 1.0 + noise * rng.standard_normal()  # noqa: E731 - replica noise
    n = samples
    t = (np.arange(n, dtype=np.int64) * sample_ns)
    x = np.linspace(0.0, 1.0, n)
    o = np.arange(11)
    wl_names = ["compile", "thp-driver"] + ([EVIL] if evil else [])

    # ---------------------------------------------------------------- buddy + frag + score
    buddy_parts, frag_parts, score_parts = [], [], []
    final_unusable: dict[str, list[int]] = {}
    buddy_lines = []
    for zone, nblocks in zones:
        managed = nblocks * 512
        free_share = 0.92 - 0.55 * x * min(severity, 1.4) * jitter()
        free_pages = (managed * np.clip(free_share, 0.02, 1)).astype(np.int64)
        # share of free memory at each order: starts in order-10 blocks, drifts to low orders
        shift = np.clip(x * 6.0 * severity * jitter(), 0, 9.5)
        w = np.exp(-0.5 * ((o[None, :] - (10 - shift[:, None])) / 1.6) ** 2) + 0.002
        w /= w.sum(1, keepdims=True)
        nr_free = np.floor(free_pages[:, None] * w / (1 << o)).astype(np.int64)
        if zone == "DMA":
            nr_free[:, :] = np.array([1, 1, 0, 1, 2, 1, 1, 0, 1, 1, 2])
        # split each order's blocks over migratetypes 0..2 (mostly movable)
        mt_share = np.array([0.08, 0.85, 0.07])
        for mt in range(3):
            cnt = np.floor(nr_free * mt_share[mt]).astype(np.int64)
            if mt == 1:
                cnt = nr_free - np.floor(nr_free * mt_share[0]).astype(np.int64) - np.floor(nr_free * mt_share[2]).astype(np.int64)
            buddy_parts.append(pl.DataFrame({
                "t_ns": np.repeat(t, 11), "zone": zone, "order": np.tile(o, n).astype(np.int8),
                "migratetype": np.int8(mt), "nr_free": cnt.reshape(-1)}))
        unus = np.stack([unusable_np(nr_free, k) for k in range(11)], 1)
        ext = np.stack([extfrag_np(nr_free, k) for k in range(11)], 1)
        frag_parts.append(pl.DataFrame({"t_ns": np.repeat(t, 11), "zone": zone, "order": np.tile(o, n).astype(np.int8),
                                        "unusable": unus.reshape(-1), "extfrag": ext.reshape(-1)}))
        final_unusable[zone] = [int(v) for v in unus[-1]]
        buddy_lines.append(f"Node 0, zone {zone:>8} " + "".join(f"{int(v):6d} " for v in nr_free[-1]) + "\n")
        fp = (nr_free << o).sum(1)
        wmin = max(managed // 256, 8)
        score_parts.append(pl.DataFrame({
            "t_ns": t, "zone": zone, "score": (unus[:, 9] // 10).astype(np.int32), "free_pages": fp,
            "managed": np.full(n, managed, np.int64), "wmark_min": np.full(n, wmin, np.int64),
            "wmark_low": np.full(n, wmin * 5 // 4, np.int64), "wmark_high": np.full(n, wmin * 3 // 2, np.int64),
            "boost": np.where(rng.random(n) < 0.05, wmin, 0).astype(np.int64),
            "pcp_pages": (rng.random(n) * 300).astype(np.int64)}))
    buddy = pl.concat(buddy_parts).sort(["t_ns", "zone", "order", "migratetype"], maintain_order=True)
    frag = pl.concat(frag_parts).sort(["t_ns", "zone", "order"], maintain_order=True)
    score = pl.concat(score_parts).sort(["t_ns", "zone"], maintain_order=True)

    # ---------------------------------------------------------------- pageblocks per type
    pb_parts = []
    for zone, nblocks in zones:
        unm = np.round(nblocks * (0.06 + 0.10 * x * severity)).astype(np.int64)
        rec = np.round(nblocks * (0.04 + 0.03 * x)).astype(np.int64)
        mov = nblocks - unm - rec
        mixed_mov = np.round(nblocks * 0.12 * x * severity * jitter()).clip(0).astype(np.int64)
        for mt, blocks, mixed in ((0, unm, unm // 5), (1, mov, np.minimum(mixed_mov, mov)), (2, rec, rec // 8),
                                  (3, np.zeros(n, np.int64), np.zeros(n, np.int64))):
            pb_parts.append(pl.DataFrame({"t_ns": t, "zone": zone, "migratetype": np.int8(mt), "blocks": blocks,
                                          "mixed": mixed}))
    pageblocks = pl.concat(pb_parts).sort(["t_ns", "zone", "migratetype"], maintain_order=True)

    # ---------------------------------------------------------------- slab
    names = (NORMAL_CACHES * (caches // len(NORMAL_CACHES) + 1))[:caches]
    names = [nm if i < len(NORMAL_CACHES) else f"{nm}-{i}" for i, nm in enumerate(names)]
    if evil:
        names[3] = EVIL
    slab_parts = []
    for i, cname in enumerate(names):
        size = [64, 128, 256, 1024, 192, 600, 256, 176, 88, 104, 576, 9000, 232, 256, 1200, 4096, 8192, 2100][i % 18]
        peak = int(2000 * (1 + i % 7) * (1 + severity) * jitter())
        objs = np.maximum((peak * (0.2 + 0.8 * x) * (1 + 0.1 * np.sin(x * 20 + i))).astype(np.int64), 1)
        per_slab = max(4096 * (2 if size > 1024 else 1) // size, 1)
        slabs = (objs + per_slab - 1) // per_slab
        pages = slabs * (2 if size > 1024 else 1)
        active = objs - (rng.random(n) * objs * 0.05).astype(np.int64)
        slab_parts.append(pl.DataFrame({
            "t_ns": t, "cache": cname, "active_objs": active, "num_objs": slabs * per_slab, "slabs": slabs,
            "pages": pages, "bytes_req": active * int(size * 0.7), "bytes_alloc": active * size}))
    slab = pl.concat(slab_parts).sort(["t_ns", "cache"], maintain_order=True)

    # ---------------------------------------------------------------- vmalloc, counters
    areas = (200 + 300 * x + 20 * np.sin(x * 30)).astype(np.int64)
    vmalloc = pl.DataFrame({"t_ns": t, "areas": areas, "va_bytes": areas * 20480, "pages": areas * 4,
                            "lazy_pages": ((np.arange(n) * 7) % 64).astype(np.int64),
                            "purges": (np.arange(n) // 64).astype(np.int64)})
    compact_stall = np.floor(np.cumsum(rng.random(n) < 0.05 * severity)).astype(np.int64)
    compact_success = (compact_stall * 0.6).astype(np.int64)
    cnt = {"kswapd_wakeups": np.floor(np.cumsum(rng.random(n) < 0.1 * severity)).astype(np.int64),
           "kswapd_reclaimed": np.floor(np.cumsum(rng.random(n) * 200 * severity)).astype(np.int64),
           "direct_reclaim": np.floor(np.cumsum(rng.random(n) < 0.02 * severity)).astype(np.int64),
           "compact_stall": compact_stall, "compact_success": compact_success,
           "compact_fail": compact_stall - compact_success,
           "compact_migrated": compact_success * 480, "kcompactd_runs": np.arange(n, dtype=np.int64) // 20,
           "pcp_drains": np.arange(n, dtype=np.int64) // 3, "oom": np.zeros(n, np.int64)}
    counters = pl.concat([pl.DataFrame({"t_ns": t, "name": k, "value": v}) for k, v in cnt.items()]) \
        .sort(["t_ns", "name"], maintain_order=True)

    # ---------------------------------------------------------------- requests, latency, sizes, fallbacks
    req_rows = []
    lat_rows = []
    fail_by_order: dict[int, int] = {}
    for order, base in ((0, events * 0.8), (1, events * 0.05), (2, events * 0.04), (3, events * 0.06),
                        (4, events * 0.01), (9, events * 0.002), (10, events * 0.0005)):
        fail_rate = {9: 0.12, 10: 0.35, 4: 0.002}.get(order, 0.0) * severity * jitter()
        fail_rate = min(max(fail_rate, 0.0), 0.95)
        for cls, share in (("reclaim", 0.7), ("atomic", 0.3)):
            for wl_i, wl in enumerate(wl_names):
                total = int(base * share * (0.8 if wl_i == 0 else 0.2 / max(len(wl_names) - 1, 1)) * jitter())
                if total <= 0:
                    continue
                failed = int(total * fail_rate * (1.5 if cls == "atomic" else 1.0))
                ok = total - failed
                split = {"pcp": 0.7, "pcp_refill": 0.1, "buddy": 0.1, "fallback_claim": 0.02,
                         "fallback_steal": 0.01, "slowpath": 0.04, "after_reclaim": 0.02, "after_compaction": 0.01} \
                    if order <= 3 else {"buddy": 0.6, "fallback_claim": 0.05, "slowpath": 0.15,
                                        "after_reclaim": 0.1, "after_compaction": 0.1}
                acc = 0
                for i, (path_, s) in enumerate(split.items()):
                    c = ok - acc if i == len(split) - 1 else int(ok * s)
                    acc += c
                    if c > 0:
                        req_rows.append((order, cls, path_, wl, c))
                if failed:
                    req_rows.append((order, cls, "failed", wl, failed))
                    fail_by_order[order] = fail_by_order.get(order, 0) + failed
    requests = pl.DataFrame(req_rows, schema={"order": pl.Int8, "gfp_class": pl.String, "path": pl.String,
                                              "workload": pl.String, "count": pl.Int64}, orient="row")
    per_path = requests.group_by(["order", "path"]).agg(pl.col("count").sum()).sort(["order", "path"])
    base_ns = {"pcp": 50, "pcp_refill": 3000, "buddy": 200, "fallback_claim": 900, "fallback_steal": 700,
               "slowpath": 20000, "after_reclaim": 200000, "after_compaction": 2_000_000, "failed": 5_000_000,
               "highatomic": 800}
    for order, path_, c in per_path.iter_rows():
        centre = base_ns.get(path_, 1000) * (1 + order / 3) * (1 + 0.3 * (severity - 1))
        samples_ = rng.lognormal(np.log(centre), 0.6, size=min(int(c), 20000))
        b = np.where(samples_ < 1, 0, 2 ** np.floor(np.log2(np.maximum(samples_, 1)))).astype(np.int64)
        ub, uc = np.unique(b, return_counts=True)
        uc = np.round(uc * (c / len(samples_))).astype(np.int64)
        for bb, cc in zip(ub, uc):
            if cc > 0:
                lat_rows.append((order, path_, int(bb), int(cc)))
    latency = pl.DataFrame(lat_rows, schema={"order": pl.Int8, "path": pl.String, "bucket_ns": pl.Int64,
                                             "count": pl.Int64}, orient="row").sort(["order", "path", "bucket_ns"])
    size_rows = []
    for kind_, lo, hi, tot in (("kmalloc", 3, 13, events * 0.5), ("page", 12, 22, events * 0.3),
                               ("vmalloc", 12, 24, events * 0.01), ("user", 12, 31, events * 0.1)):
        for k in range(lo, hi + 1):
            c = int(tot * np.exp(-0.5 * ((k - (lo + 2)) / 2.0) ** 2) / 5)
            if c:
                size_rows.append((kind_, 1 << k, c))
    sizes = pl.DataFrame(size_rows, schema={"kind": pl.String, "bucket_bytes": pl.Int64, "count": pl.Int64},
                         orient="row")
    fb_rows = [(0, 1, "claim", True, int(120 * severity * jitter())), (0, 1, "steal", True, int(40 * severity * jitter())),
               (2, 1, "claim", True, int(30 * severity)), (2, 1, "steal", True, int(12 * severity)),
               (1, 0, "claim", False, int(15 * severity)), (1, 2, "steal", False, int(5 * severity)),
               (0, 2, "claim", False, int(8 * severity))]
    fallbacks = pl.DataFrame([r for r in fb_rows if r[4] > 0],
                             schema={"alloc_mt": pl.Int8, "fallback_mt": pl.Int8, "kind": pl.String,
                                     "fragmenting": pl.Boolean, "count": pl.Int64}, orient="row")

    # ---------------------------------------------------------------- failures (one row per failed request, capped)
    forder = np.repeat(np.array(sorted(fail_by_order), dtype=np.int8),
                       [fail_by_order[k] for k in sorted(fail_by_order)]) if fail_by_order else np.zeros(0, np.int8)
    if len(forder) > failures_cap:
        forder = np.sort(rng.choice(forder, size=failures_cap, replace=False))
    nf = len(forder)
    ft = (rng.beta(3, 1.3, nf) * t[-1]).astype(np.int64)
    gfps = np.array(["GFP_KERNEL|__GFP_COMP|__GFP_NOWARN", "GFP_ATOMIC|__GFP_NOWARN",
                     "GFP_TRANSHUGE_LIGHT" if not evil else EVIL], dtype=object)
    fg = gfps[rng.integers(0, 3, nf)]
    fw = np.array(wl_names, dtype=object)[rng.integers(0, len(wl_names), nf)]
    failures_df = pl.DataFrame({"t_ns": ft, "order": forder, "gfp_flags": fg.tolist(), "workload": fw.tolist()},
                               schema={"t_ns": pl.Int64, "order": pl.Int8, "gfp_flags": pl.String,
                                       "workload": pl.String}).sort(["t_ns", "order"], maintain_order=True)

    # ---------------------------------------------------------------- pagemap
    snap_idx = np.unique(np.linspace(0, n - 1, snapshots).round().astype(int))
    pm_parts = []
    first_pb = 0
    zone_first = {}
    for zone, nblocks in zones:
        zone_first[zone] = first_pb
        first_pb += nblocks
    total_pb = first_pb
    pb = np.arange(total_pb, dtype=np.int64)
    zone_of = np.empty(total_pb, dtype=object)
    for zone, nblocks in zones:
        zone_of[zone_first[zone]:zone_first[zone] + nblocks] = zone
    u0 = rng.random(total_pb)
    u1 = rng.random(total_pb)
    base_mt = np.where(u0 < 0.06, 0, np.where(u0 < 0.10, 2, 1)).astype(np.int8)
    base_mt[:4] = 0
    for si in snap_idx:
        xs = x[si]
        used = np.clip(0.05 + xs * 0.6 * severity * (0.3 + u1), 0, 1)
        if si == snap_idx[-1]:
            used = np.clip(used + 0.05 * (pb % 97 == 0), 0, 1)
        mt = base_mt.copy()
        mt[(u0 > 0.10) & (u0 < 0.10 + 0.08 * xs * severity)] = 0       # blocks claimed by unmovable requests
        alloc = np.round(used * 512).astype(np.int64)
        free_ = 512 - alloc
        polluted = (mt == 1) & (u1 < 0.12 * xs * severity)
        unm = np.where(mt == 0, alloc * 9 // 10, np.where(polluted, np.maximum(alloc // 20, 1), 0))
        unm = np.minimum(unm, alloc)
        rec = np.where(mt == 2, alloc - unm, 0)
        mov = alloc - unm - rec
        pm_parts.append(pl.DataFrame({"t_ns": np.full(total_pb, t[si]), "zone": zone_of.tolist(), "pageblock": pb,
                                      "migratetype": mt, "free": free_.astype(np.int16), "movable": mov.astype(np.int16),
                                      "unmovable": unm.astype(np.int16), "reclaimable": rec.astype(np.int16)}))
    pagemap = pl.concat(pm_parts)

    for nm, df in (("buddy", buddy), ("frag", frag), ("score", score), ("pageblocks", pageblocks), ("slab", slab),
                   ("vmalloc", vmalloc), ("counters", counters), ("requests", requests), ("latency", latency),
                   ("sizes", sizes), ("fallbacks", fallbacks), ("failures", failures_df), ("pagemap", pagemap)):
        df.write_parquet(p / "metrics" / f"{nm}.parquet")

    # ---------------------------------------------------------------- summary, config, log
    by_order = requests.group_by("order").agg(
        pl.col("count").sum().alias("attempts"),
        pl.col("count").filter(pl.col("path") == "failed").sum().alias("failures"),
        pl.col("count").filter(pl.col("path").str.starts_with("fallback")).sum().alias("fallbacks")).sort("order")
    fbsum = fallbacks.group_by("kind").agg(pl.col("count").sum())
    fbd = dict(fbsum.iter_rows())
    pollute = int(fallbacks.filter((pl.col("kind") == "steal") & (pl.col("alloc_mt") != 1))["count"].sum())
    stall, succ = int(compact_stall[-1]), int(compact_success[-1])
    summary = {
        "kmemdes_version": "0.1.0", "kind": kind, "name": EVIL if evil else name,
        "mode": "synthetic" if kind == "run" else "mirror", "seed": seed, "sim_ns": int(t[-1]),
        "requests": int(requests["count"].sum()),
        "events_by_type": {"mm_page_alloc": events // 2, "mm_page_free": events // 2},
        "quirks": quirks if quirks is not None else {"free_of_untraced_page": 724, "batched_after_free": 4653},
        "requests_by_order": {str(a): {"attempts": int(b), "failures": int(c), "fallbacks": int(d)}
                              for a, b, c, d in by_order.iter_rows()},
        "failure_rate_by_order": {str(a): (c / b if b else 0.0) for a, b, c, d in by_order.iter_rows() if c},
        "latency_ns": {},
        "compaction": {"attempts": stall, "success": succ, "success_rate": succ / stall if stall else None},
        "fallbacks": {"claim": int(fbd.get("claim", 0)), "steal": int(fbd.get("steal", 0)), "pollute": pollute},
        "final": {"buddyinfo": "".join(buddy_lines), "pagetypeinfo": "", "unusable_index": "".join(
            f"Node 0, zone {z:>8} " + "".join(_fmt_index(v) + " " for v in final_unusable[z]) + "\n" for z, _ in zones),
            "extfrag_index": ""},
        "final_unusable_by_order": final_unusable,
        "notes": ["synthetic fixture for the report tests"] + ([EVIL] if evil else []),
        "wall_s": wall_s, "events_per_s": int(events / wall_s),
    }
    if kind == "replay":
        summary["events_replayed"] = events
    (p / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
    desc = EVIL if evil else f"report fixture, severity {severity}"
    cfg = (f'name = "{EVIL if evil else name}"\ndescription = "{desc}"\nseed = {seed}\nduration = "{n * sample_ns / 1e9}s"\n'
           f'sample_interval = "{sample_ns // 1_000_000}ms"\n{extra_config}\n'
           f'[machine]\narch = "x86_64"\nmem = "2G"\ncpus = 2\nkernel = "6.18"\n\n'
           f'[policy]\nfallback = "{policy_fallback}"\ncompaction_proactiveness = 20\nthp_enabled = "madvise"\n\n'
           + "".join(f'[[workloads]]\nkind = "driver"\nname = "{w}"\norder = 9\ninterval = "10ms"\n\n' for w in wl_names))
    from kmemdes.config import dump_toml, parse_config

    (p / "config.toml").write_text(dump_toml(parse_config(cfg, "fixture config")))  # resolved: every default written
    (p / "log").write_text(f"run {name} seed {seed}\nquirk rule free_of_untraced_page applied 724 times\n"
                           + (EVIL + "\n" if evil else ""))
    return p
