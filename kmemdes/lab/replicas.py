"""``kmemdes lab --replicas N``: the recipe's compared policies alternated A B A B ..., and the real
difference between them with its 95 % confidence interval.

Variants come from ``lab.compare`` (``--set`` items, e.g. ``["policy.fallback=default",
"policy.fallback=defrag_mode"]``); without it every replica runs the config as it is.  Replica ``i`` of
variant ``v`` is the run directory ``OUT/<v>,seed=<i>`` (seed set to ``i``, so ``kmemdes compare OUT/*/``
groups replicas as it does a sweep's).  Alternating instead of running all A then all B keeps slow
drifts of the machine (page cache, deferred memory init, other load) out of the difference.  The
difference is paired (replica i of B minus replica i of A): mean ± t(0.975, n-1) sd / sqrt(n).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from kmemdes.config import Config, parse_value, set_dotted
from kmemdes.outpath import check_folder_output
from kmemdes.report.stats import paired_difference, summarize

__all__ = ["run_replicas", "lab_metrics", "paired_difference"]


def lab_metrics(summary: dict) -> dict[str, float | None]:
    """The headline numbers of one lab run (percentages, counts, ns)."""
    lab = summary.get("lab", {})
    vm = lab.get("vmstat_total", {})
    cp = summary.get("compaction", {})
    ft = (lab.get("user_ns") or {}).get("thp_first_touch") or {}
    pct = lambda x: None if x is None else 100.0 * x  # noqa: E731
    ho = lab.get("high_order") or {}

    def fail(order: str, cls: str):
        d = (ho.get(order) or {}).get(cls) or {}
        return 100.0 * d["failures"] / d["attempts"] if d.get("attempts") else None

    return {
        "fail_o3_atomic_pct": fail("3", "atomic"),
        "fail_o9_reclaim_pct": fail("9", "reclaim"),
        "thp_success_pct": pct(lab.get("thp_success")),
        "compact_success_pct": pct(cp.get("success_rate")),
        "compact_stall": vm.get("compact_stall"),
        "allocstall": (vm.get("allocstall_normal") or 0) + (vm.get("allocstall_movable") or 0),
        "pgsteal_direct": vm.get("pgsteal_direct"),
        "pgmigrate_success": vm.get("pgmigrate_success"),
        "thp_first_touch_p50_ns": ft.get("p50"),
    }


def run_replicas(cfg: Config, out, replicas: int, *, force: bool = False, capture: bool = False, log=None) -> dict:
    from kmemdes.lab.run import run_lab

    log = log or (lambda msg: None)
    out = check_folder_output(out, "lab.json", force=force)
    variants = list(cfg.lab.compare) if cfg.lab and cfg.lab.compare else [""]
    cfgs = {}
    for v in variants:
        c = cfg
        for item in filter(None, v.split(";")):
            key, value = item.split("=", 1)
            c = set_dotted(c, key.strip(), parse_value(value.strip()), f"lab.compare {item}")
        cfgs[v] = c
    out.mkdir(exist_ok=True)
    _write_json(out, {"config": cfg.name, "replicas": replicas, "variants": variants, "complete": False})
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for i in range(1, replicas + 1):
        for v in variants:  # A B A B ...
            c = cfgs[v].model_copy(update={"seed": i})
            name = f"{v},seed={i}" if v else f"seed={i}"
            log(f"replica {i}/{replicas}: {v or cfg.name}")
            _, summary = run_lab(c, out / name, force=force, capture=capture, log=log, seed=i)
            runs[v].append(lab_metrics(summary))
    res = {"config": cfg.name, "replicas": replicas, "variants": variants, "metrics": {}}
    keys = list(next(iter(runs.values()))[0]) if replicas else []
    for k in keys:
        row = {}
        for v in variants:
            vals = [r[k] for r in runs[v]]
            s = summarize(vals)
            row[v or "all"] = {"values": vals, "mean": s.mean if s else None, "half_width": s.half_width if s else None}
        if len(variants) == 2:
            row["difference"] = paired_difference([r[k] for r in runs[variants[0]]], [r[k] for r in runs[variants[1]]])
        res["metrics"][k] = row
    _write_json(out, res)
    return res


def _write_json(out: Path, res: dict) -> None:
    """``lab.json`` (it also marks the folder as a lab folder for a later ``--force``)."""
    tmp = out / f".lab.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(res, indent=1) + "\n")
    os.replace(tmp, out / "lab.json")


def format_replicas(res: dict) -> str:
    variants = res["variants"]
    head = ["metric"] + [v or "all" for v in variants] + (["difference (2nd - 1st), 95 % CI"] if len(variants) == 2 else [])
    rows = []
    for k, row in res["metrics"].items():
        cells = [k]
        for v in variants:
            c = row[v or "all"]
            cells.append("–" if c["mean"] is None else f"{c['mean']:.4g} ± {c['half_width']:.2g}")
        if len(variants) == 2:
            d = row.get("difference")
            cells.append("–" if not d else (f"{d['mean']:+.4g}" + (f" ± {d['half_width']:.2g}"
                                                                   if d["half_width"] is not None else "")))
        rows.append(cells)
    w = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in [head] + rows) + "\n"
