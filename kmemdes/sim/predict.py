"""Prediction checked against the kernel: a capture replayed in policy mode, its outcomes beside the kernel's.

``kmemdes validate CAPTURE --predict`` replays the capture's trace in policy
mode (:mod:`kmemdes.sim.policy_pages`) from its exact start state
(``before/kpageflags.zst``), with the policy the capture ran under (its vm
sysctls and THP settings) unless ``--set policy.KEY=VALUE`` asks for another
(the what-if), and puts what the models decided beside what the kernel did:

- page allocation attempts and failures per order: the trace's ``mm_page_alloc``
  events (``pfn=0``: failed), the same requests the models replay;
- THP faults served and fallen back, direct compaction stalls / successes /
  failures, pages migrated, direct reclaim stalls and pages, kswapd pages, pages
  activated and deactivated on the LRU: the kernel's ``/proc/vmstat`` after minus
  before (a capture with ``mm_lru_activate`` events hands the kernel's activations,
  the workload's page-cache hits, to the model's LRU; without them the model sees
  no hit and its page cache stays inactive);
- fragmenting fallbacks: the trace's ``mm_page_alloc_extfrag`` events;
- the end state per zone and order: ``after/buddyinfo``.

The targets of the pressure work are checked on the result (:func:`prediction_targets`).

A single replay is one draw: the models' random choices (which folio an isolation
attempt fails on, which async block is skipped) change, through the feedback of
reclaim and compaction, how many THP faults and readahead folios find a free block,
by tens of percent on the pressure captures.  ``--seeds N`` replays the capture
under N seeds and reports, per figure, the median and the range
(:func:`combine_predictions`); the targets are checked on the medians.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from kmemdes.errors import KmemdesError
from kmemdes.outpath import scratch_dir
from kmemdes.sim.reread import REREAD_NOTE
from kmemdes.trace.snapshot import parse_buddyinfo

__all__ = ["predict_capture", "check_prediction_inputs", "combine_predictions", "format_prediction", "prediction_targets", "KEYS"]

#: the figures compared, in the order they are printed (the JSON keys of "predicted" and "kernel")
KEYS = ("attempts_by_order", "failures_by_order", "thp_fault_alloc", "thp_fault_fallback", "compact_stall",
        "compact_success", "compact_fail", "pgmigrate_success", "allocstall", "pgsteal_direct", "pgsteal_kswapd",
        "pgactivate", "pgdeactivate", "pageoutrun", "compact_daemon_wake", "extfrag_fallbacks", "buddyinfo")
_VMSTAT = ("thp_fault_alloc", "thp_fault_fallback", "compact_stall", "compact_success", "compact_fail",
           "pgmigrate_success", "pgsteal_direct", "pgsteal_kswapd", "pgactivate", "pgdeactivate", "pageoutrun",
           "compact_daemon_wake")


def _buddyinfo(text: str, where: str) -> dict[str, list[int]]:
    return {z.zone: list(z.nr_free) for z in parse_buddyinfo(text, where)}


def kernel_figures(cap: Path, summary: dict) -> dict:
    """What the kernel did over the capture: the trace's requests, /proc/vmstat deltas, after/buddyinfo."""
    from kmemdes.sim.validate import read_vmstat

    before, after = read_vmstat(cap / "before" / "vmstat"), read_vmstat(cap / "after" / "vmstat")
    d = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    tr = summary.get("trace_requests", {})
    out = {"attempts_by_order": tr.get("attempts_by_order", {}), "failures_by_order": tr.get("failures_by_order", {})}
    out.update({k: d.get(k, 0) for k in _VMSTAT})
    out["allocstall"] = sum(v for k, v in d.items() if k.startswith("allocstall_"))
    out["extfrag_fallbacks"] = summary.get("events_by_type", {}).get("mm_page_alloc_extfrag", 0)
    out["buddyinfo"] = _buddyinfo((cap / "after" / "buddyinfo").read_text(), str(cap / "after" / "buddyinfo"))
    return out


def predicted_figures(summary: dict) -> dict:
    """What the models decided, from a policy replay's ``summary.json``."""
    pr = summary.get("policy_requests", {})
    vm = summary.get("vmstat", {})
    out = {"attempts_by_order": pr.get("attempts_by_order", {}), "failures_by_order": pr.get("failures_by_order", {}),
           "thp_fault_alloc": pr.get("thp_fault_alloc", 0), "thp_fault_fallback": pr.get("thp_fault_fallback", 0)}
    out.update({k: vm.get(k, 0) for k in _VMSTAT if not k.startswith("thp_")})
    out["allocstall"] = sum(v for k, v in vm.items() if k.startswith("allocstall_"))
    fb = summary.get("fallbacks", {})
    out["extfrag_fallbacks"] = fb.get("claim", 0) + fb.get("steal", 0)
    out["buddyinfo"] = _buddyinfo(summary["final"]["buddyinfo"], "model")
    return out


def _within(pred: int, kern: int) -> bool:
    """The issue's tolerance: within 30 %, or within 20 in absolute terms when the kernel's count is below 60."""
    return abs(pred - kern) <= (20 if kern < 60 else 0.3 * kern)


def prediction_targets(res: dict) -> dict:
    """Same-policy targets: order-9 failures, THP fallbacks, compaction stalls and successes and
    pgsteal_direct within 30 % (or 20 when the kernel's count is below 60); no order-0 failures
    where the kernel had none beyond 0.1 % of order-0 requests."""
    p, k = res["predicted"], res["kernel"]
    out = {}
    for key in ("order9_failures", "thp_fault_fallback", "compact_stall", "compact_success", "pgsteal_direct"):
        if key == "order9_failures":
            pv, kv = int(p["failures_by_order"].get("9", 0)), int(k["failures_by_order"].get("9", 0))
        else:
            pv, kv = int(p[key]), int(k[key])
        out[key] = {"predicted": pv, "kernel": kv, "met": _within(pv, kv)}
    f0, n0 = int(p["failures_by_order"].get("0", 0)), int(p["attempts_by_order"].get("0", 0))
    k0 = int(k["failures_by_order"].get("0", 0))
    out["order0_failures"] = {"predicted": f0, "kernel": k0, "met": k0 > 0 or f0 <= 0.001 * max(n0, 1)}
    return out


def apply_sets(cfg, sets: tuple[str, ...]):
    """The config with ``--set KEY=VALUE`` items applied (a one-line error naming a bad one)."""
    from kmemdes.config import parse_value, set_dotted

    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise KmemdesError(f"--set {item!r}: expected KEY=VALUE")
        cfg = set_dotted(cfg, key.strip(), parse_value(value.strip()), f"--set {key.strip()}")
    return cfg


def check_prediction_inputs(cap: Path) -> tuple[Path, Path]:
    """The one-line error of a capture ``--predict`` cannot use; else its kpageflags pair
    (:func:`kmemdes.sim.kpageflags.kpageflags_pair`)."""
    from kmemdes.sim.kpageflags import kpageflags_pair

    if not cap.is_dir():
        raise KmemdesError(f"{cap}: not a capture folder (expected trace + before/ + after/)")
    kpf = kpageflags_pair(cap)
    if kpf is None:
        raise KmemdesError(f"{cap}: --predict needs the exact start state: before/kpageflags.zst "
                           "(capture with kmemdes capture --kpageflags)")
    for need in ("before/buddyinfo", "after/buddyinfo", "before/vmstat", "after/vmstat"):
        if not (cap / need).exists():
            raise KmemdesError(f"{cap}: no {need} (--predict compares with the capture's before and after snapshots)")
    return kpf


def predict_capture(capture: str | Path, sets: tuple[str, ...] = (), progress: bool = False,
                    run_dir: Optional[str | Path] = None, seed: Optional[int] = None) -> dict:
    """Replay ``capture`` in policy mode from its kpageflags start state; predicted vs kernel figures.

    ``seed``: the replay's seed (else the config's, after ``sets``)."""
    from kmemdes.config import Config
    from kmemdes.sim.engine import capture_policy, replay_trace

    cap = Path(capture)
    kpf = check_prediction_inputs(cap)
    notes: list[str] = []
    cfg = apply_sets(capture_policy(Config(name=cap.name), cap, notes), sets)  # the kernel's policy, then the what-if
    if seed is not None:
        cfg = cfg.model_copy(update={"seed": seed})
    tmp = None
    if run_dir is None:
        tmp = scratch_dir("kmemdes_predict_")
        run_dir = Path(tmp.name) / "run"
    try:
        out, summary = replay_trace(cap, run_dir, mode="policy", cfg=cfg, progress=progress, kpageflags=kpf[0])
        resolved = (Path(out) / "config.toml").read_text()
    finally:
        if tmp is not None:
            tmp.cleanup()
    res = {"capture": str(cap), "sets": list(sets), "predicted": predicted_figures(summary),
           "kernel": kernel_figures(cap, summary), "events": summary.get("events"),
           "events_replayed": summary.get("events_replayed"), "quirks": summary.get("quirks", {}),
           "quirk_pages": summary.get("quirk_pages", {}),
           "policy": _policy_lines(resolved), "notes": notes + summary.get("notes", []),
           "wall_s": summary.get("wall_s"), "events_per_s": summary.get("events_per_s"), "seed": cfg.seed}
    kernel_stalls = summary.get("trace_stall_latency_ns") or {}
    if kernel_stalls.get("direct_compaction"):  # the attempts without an mm_compaction_end: deferred
        dc = kernel_stalls["direct_compaction"]
        dc["deferred"] = max(0, res["kernel"]["compact_stall"] - dc.get("n", 0))
    res["stall_latency_ns"] = {"predicted": summary.get("stall_latency_ns") or {}, "kernel": kernel_stalls}
    res["compaction_runs"] = {"predicted": summary.get("compaction_runs") or {},
                              "kernel": summary.get("trace_compaction_runs") or {}}
    res["compaction_attempts"] = {"predicted": summary.get("compaction_attempts") or {},
                                  "kernel": summary.get("trace_compaction_attempts") or {}}
    res["targets"] = prediction_targets(res)
    return res


def _median(values: list) -> int:
    """The median of counts, as a count (the lower middle one for an even number of draws).

    >>> _median([3, 1, 2]), _median([4, 1, 3, 2])
    (2, 2)
    """
    v = sorted(values)
    return v[(len(v) - 1) // 2]


def combine_predictions(results: list[dict]) -> dict:
    """Predictions of one capture under several seeds as one: ``predicted`` holds each figure's median
    (per order, per zone and order), ``spread`` each count's [min, max], ``per_seed`` the seeds'
    own counts; the targets are checked on the medians.  ``replays_wall_s`` is the sum of the
    replays' own times (``wall_s`` stays the first replay's until the caller sets the whole run's).

    >>> r = [{"predicted": {"failures_by_order": {"9": f}, "attempts_by_order": {"9": 100}, "thp_fault_alloc": a,
    ...                     "buddyinfo": {"Normal": [f, 0]}}, "kernel": {}, "seed": s, "wall_s": 1.0}
    ...      for s, f, a in ((1, 10, 5), (2, 30, 7), (3, 20, 6))]
    >>> c = combine_predictions(r)
    >>> c["predicted"]["failures_by_order"], c["predicted"]["thp_fault_alloc"], c["spread"]["order9_failures"]
    ({'9': 20}, 6, [10, 30])
    >>> c["seeds"], c["predicted"]["buddyinfo"]
    ([1, 2, 3], {'Normal': [20, 0]})
    """
    if len(results) == 1:
        return results[0]
    preds = [r["predicted"] for r in results]
    out = dict(results[0])
    med: dict = {}
    spread: dict = {}
    for key, first in preds[0].items():
        if isinstance(first, dict) and key == "buddyinfo":
            med[key] = {z: [_median([p[key].get(z, [0] * len(c))[o] for p in preds]) for o in range(len(c))]
                        for z, c in first.items()}
        elif isinstance(first, dict):
            orders = sorted({o for p in preds for o in p[key]}, key=int)
            med[key] = {o: _median([int(p[key].get(o, 0)) for p in preds]) for o in orders}
        else:
            vals = [int(p[key]) for p in preds]
            med[key] = _median(vals)
            spread[key] = [min(vals), max(vals)]
    o9 = [int(p.get("failures_by_order", {}).get("9", 0)) for p in preds]
    spread["order9_failures"] = [min(o9), max(o9)]
    out["predicted"] = med
    out["spread"] = spread
    out["seeds"] = [r["seed"] for r in results]
    out["per_seed"] = [{"seed": r["seed"], "order9_failures": int(r["predicted"].get("failures_by_order", {}).get("9", 0)),
                        **{k: v for k, v in r["predicted"].items() if not isinstance(v, dict)}} for r in results]
    # each replay's own time; the caller that ran them side by side knows the wall time of all
    out["replays_wall_s"] = round(sum(r["wall_s"] or 0 for r in results), 3)
    if "kernel" in out and out["kernel"]:
        out["targets"] = prediction_targets(out)
    return out



def _policy_lines(config_toml: str) -> dict:
    """The ``[policy]`` table of a resolved config, as a dict."""
    import tomllib

    return tomllib.loads(config_toml).get("policy", {})


_RULES = {
    "fallback_to_base_pages_in_model": "THP faults and readahead folios the model failed, served with base pages",
    "reclaim_free": "frees by the kernel's reclaim of pages the model does not hold (its own reclaim decides)",
    "compaction_free": "frees by the kernel's compaction (released free pages, migration sources) of pages the "
                       "model does not hold",
    "slab_page_by_model": "slab pages the SLUB model makes itself instead of the trace's",
    "free_of_untraced_page": "frees of pages the model never gave out (untraced or pre-trace allocations)",
    "free_of_page_moved_by_kernel_compaction": "frees of the kernel's migration targets: the model frees the "
                                               "page it had for the source",
    "free_of_page_from_before_trace": "frees of pages in use since the start, at their own pfn",
    "free_of_page_reclaimed_by_model": "frees of pages the model's reclaim had already taken",
    "lru_activate_not_in_model": "the kernel's activations (mm_lru_activate) of folios the model does not hold "
                                 "as page cache",
}


def _err(p: int, k: int) -> str:
    if k == 0:
        return "-" if p == 0 else "new"
    return f"{100 * (p - k) / k:+.0f}%"


def _attempt_lines(res: dict) -> list[str]:
    """The direct compaction stalls by requester and outcome (``compaction_attempts``), predicted / kernel."""
    from kmemdes.sim.stalls import REQUESTERS

    att = res.get("compaction_attempts") or {}
    pa, ka = att.get("predicted") or {}, att.get("kernel") or {}
    if not pa and not ka:
        return []
    lines = ["", "direct compaction stalls by requester and how the last compact_zone run ended (none: no zone "
             "ran; deferred: one was), then whether the allocation got its page right after (compact_success) "
             "or not, predicted / kernel" + (f" (seed {res['seeds'][0]})" if res.get("seeds") else ""),
             f"  {'':<28}{'got the page':>16}{'no page':>16}"]
    for who in REQUESTERS:
        p_who, k_who = pa.get(who) or {}, ka.get(who) or {}
        for ended in sorted(set(p_who) | set(k_who)):
            p, k = p_who.get(ended, [0, 0]), k_who.get(ended, [0, 0])
            lines.append(f"  {who + ' ' + ended:<28}{f'{p[0]:,} / {k[0]:,}':>16}{f'{p[1]:,} / {k[1]:,}':>16}")
    return lines


def format_prediction(res: dict) -> str:
    """Predicted vs kernel as aligned text."""
    p, k = res["predicted"], res["kernel"]
    pol = res.get("policy", {})
    lines = [f"capture: {res['capture']}",
             "policy: " + ", ".join(f"{key}={pol[key]}" for key in ("fallback", "thp_enabled", "thp_defrag",
                                                                    "compaction_proactiveness", "watermark_scale_factor",
                                                                    "watermark_boost_factor", "extfrag_threshold")
                                    if key in pol)
             + (f"  (what-if: {' '.join(res['sets'])}; the kernel column is still the capture's)" if res["sets"] else ""),
             f"events: {res['events']:,} ({res['events_replayed']:,} replayed), {res['wall_s']} s"
             + (f"; seeds {', '.join(map(str, res['seeds']))}: the predicted column is each figure's median"
                if res.get("seeds") else ""), "",
             f"{'':<34}{'predicted':>20}{'kernel':>20}{'error':>9}"]
    spread = res.get("spread", {})
    orders = sorted({int(o) for o in k["attempts_by_order"]} | {int(o) for o in p["attempts_by_order"]})
    for o in orders:
        pa, ka = int(p["attempts_by_order"].get(str(o), 0)), int(k["attempts_by_order"].get(str(o), 0))
        pf, kf = int(p["failures_by_order"].get(str(o), 0)), int(k["failures_by_order"].get(str(o), 0))
        lo_hi = spread.get("order9_failures") if o == 9 else None
        lines.append(f"{f'order {o}: failures / attempts':<34}{f'{pf:,} / {pa:,}':>20}{f'{kf:,} / {ka:,}':>20}"
                     f"{_err(pf, kf):>9}" + (f"   seeds: {lo_hi[0]:,}-{lo_hi[1]:,}" if lo_hi else ""))
    labels = {"thp_fault_alloc": "THP faults served", "thp_fault_fallback": "THP faults fallen back",
              "compact_stall": "direct compaction stalls", "compact_success": "  successes",
              "compact_fail": "  failures", "pgmigrate_success": "pages migrated",
              "allocstall": "direct reclaim stalls", "pgsteal_direct": "  pages reclaimed directly",
              "pgsteal_kswapd": "kswapd pages reclaimed", "pgactivate": "pages activated (LRU)",
              "pgdeactivate": "  deactivated", "pageoutrun": "kswapd runs (balance_pgdat)",
              "compact_daemon_wake": "kcompactd wake-ups", "extfrag_fallbacks": "fragmenting fallbacks (extfrag)"}
    spread = res.get("spread", {})
    for key, label in labels.items():
        lo_hi = spread.get(key)
        lines.append(f"{label:<34}{p[key]:>20,}{k[key]:>20,}{_err(p[key], k[key]):>9}"
                     + (f"   seeds: {lo_hi[0]:,}-{lo_hi[1]:,}" if lo_hi else ""))
    lines += [f"  ({n})" for n in res.get("notes", []) if n.startswith(REREAD_NOTE)]
    st = res.get("stall_latency_ns") or {}
    ps, ks = st.get("predicted") or {}, st.get("kernel") or {}
    if ps or ks:
        lines += ["", "stall latency, p50 / p99 (us): the models' stalls priced as their work, the kernel's from its "
                  "tracepoint pairs" + (f" (seed {res['seeds'][0]})" if res.get("seeds") else "")]
        for kind, label in (("direct_reclaim", "direct reclaim"), ("direct_compaction", "direct compaction")):
            cells = []
            for d in (ps.get(kind) or {}, ks.get(kind) or {}):
                cells.append(f"{d['p50'] / 1e3:,.0f} / {d['p99'] / 1e3:,.0f}  (n={d['n']:,})" if d.get("n") else "-")
            lines.append(f"{label:<34}{cells[0]:>26}  {cells[1]:>26}")
    runs = res.get("compaction_runs") or {}
    pr, kr = runs.get("predicted") or {}, runs.get("kernel") or {}
    if any(pr.get(w) or kr.get(w) for w in ("direct", "kcompactd")):
        lines += ["", "compaction runs by how they ended (mm_compaction_end), predicted / kernel"
                  + (f" (seed {res['seeds'][0]})" if res.get("seeds") else "")
                  + "; contended: no migration target before the scanners met (the kernel's async runs also on"
                  " lock contention or need_resched, which the models do not have)"]
        for who in ("direct", "kcompactd"):
            p_who, k_who = pr.get(who) or {}, kr.get(who) or {}
            cells = [f"{s} {p_who.get(s, 0):,}/{k_who.get(s, 0):,}" for s in sorted(set(p_who) | set(k_who))]
            lines.append(f"  {who:<10}" + ("  ".join(cells) if cells else "-"))
    lines += _attempt_lines(res)
    lines += ["", "end state, free blocks per order: predicted / kernel"]
    for zone, kc in k["buddyinfo"].items():
        pc = p["buddyinfo"].get(zone, [0] * 11)
        lines.append(f"  {zone:<8}" + " ".join(f"{a}/{b}" for a, b in zip(pc, kc)))
    qp, q = res.get("quirk_pages", {}), res.get("quirks", {})
    if qp:
        lines += ["", "what the prediction could not follow, or decided apart from the trace (pages, events):"]
        for rule, pages in sorted(qp.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {pages:>10,} {q.get(rule, 0):>10,}  {rule}: {_RULES.get(rule, '')}".rstrip())
    rule = "within 30 %, or 20 when the kernel's count is below 60"
    checks = [(f"targets (same policy: {rule}):", res["targets"])]
    if res["sets"]:
        checks = [("the what-if beside the capture's kernel (for reference: the targets hold for the kernel's "
                   "own policy):", res["targets"])]
        if res.get("baseline"):
            checks.append((f"targets, on the capture's own policy replayed under the same seeds ({rule}):",
                           prediction_targets({"predicted": res["baseline"]["predicted"], "kernel": k})))
    for title, t in checks:
        lines += ["", title]
        for key, v in t.items():
            lines.append(f"  {key:<20} {v['predicted']:>8,} vs {v['kernel']:<8,} {'met' if v['met'] else 'missed'}")
    return "\n".join(lines) + "\n"


def write_prediction_html(res: dict, path: Path) -> Path:
    """The prediction tables as one self-contained HTML page (escaped, no scripts), written atomically."""
    import html

    from kmemdes.outpath import atomic_write

    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>kmemdes predict: {html.escape(res['capture'])}"
            "</title><style>body{font-family:sans-serif;margin:2em} pre{background:#f6f6f6;padding:1em}</style>"
            f"</head><body><h1>Predicted vs kernel: {html.escape(res['capture'])}</h1>"
            f"<pre>{html.escape(format_prediction(res))}</pre>"
            f"<h2>JSON</h2><pre>{html.escape(json.dumps({'predicted': res['predicted'], 'kernel': res['kernel']}, indent=1))}"
            "</pre></body></html>\n")
    atomic_write(path, lambda f: f.write(page.encode("utf-8")))
    return path
