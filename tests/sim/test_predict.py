"""validate --predict: the models' outcomes beside the kernel's, on the real pressure capture."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kmemdes.sim.predict import KEYS, prediction_targets
from kmemdes.sim.validate import read_vmstat


def zstd_lines(path):
    import io

    import zstandard

    with open(path, "rb") as f:
        yield from io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8", errors="replace")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "kmemdes.cli", *args], capture_output=True, text=True)


def test_predict_needs_the_kernels_exact_start_state(shipped):
    r = _cli("validate", str(shipped / "a_idle_stream"), "--predict")
    assert r.returncode == 2 and "kpageflags" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_the_models_lru_follows_the_kernels_activations(shipped, tmp_path):
    """traces/lru_reread: ``cat`` read a 32 MiB file (dropped from the cache first) three times; the
    second read activated every folio of it (mm_lru_activate, PGACTIVATE 8,192 pages in the kernel's
    vmstat; a folio still in a CPU's lru_add batch is activated there without either).  The policy replay hands those activations to the model's copies of the folios, so the
    model's LRU has the same 8,192 pages active; mirror replay counts them under a rule."""
    from kmemdes.sim.predict import predict_capture

    cap = shipped / "lru_reread"
    before, after = read_vmstat(cap / "before" / "vmstat"), read_vmstat(cap / "after" / "vmstat")
    kernel = after["pgactivate"] - before["pgactivate"]
    assert kernel == 8192  # the file's pages, once each
    res = predict_capture(cap)
    assert res["kernel"]["pgactivate"] == kernel
    assert res["predicted"]["pgactivate"] == kernel
    assert res["quirks"].get("lru_activate_not_in_model", 0) == 0
    from kmemdes.sim.reread import REREAD_NOTE

    assert not any(n.startswith(REREAD_NOTE) for n in res["notes"])  # the kernel's own activations, no inference
    from kmemdes.sim.engine import replay_trace

    n_lines = sum(1 for ln in zstd_lines(cap / "trace.txt.zst") if " mm_lru_activate: " in ln)
    assert n_lines == 369
    _, summary = replay_trace(cap, tmp_path / "mirror", mode="mirror", kpageflags=cap / "before" / "kpageflags.zst")
    assert summary["quirks"]["lru_event"] == n_lines


def test_without_activation_events_a_fully_cached_re_read_is_not_seen(shipped, tmp_path):
    """The same capture without its mm_lru_activate lines: the hits are inferred from readahead misses
    (kmemdes.sim.reread), and the second and third cat found the whole file cached, so they made no
    readahead request (their 78-80 page allocations are not page cache): nothing shows the re-read,
    and the inference says so rather than invent it."""
    import shutil

    import zstandard

    from kmemdes.sim.predict import predict_capture
    from kmemdes.sim.reread import REREAD_NOTE

    cap = tmp_path / "lru_noact"
    shutil.copytree(shipped / "lru_reread", cap)
    (cap / "trace.txt.zst").chmod(0o644)
    text = "".join(ln for ln in zstd_lines(shipped / "lru_reread" / "trace.txt.zst") if " mm_lru_activate: " not in ln)
    (cap / "trace.txt.zst").write_bytes(zstandard.ZstdCompressor().compress(text.encode()))
    res = predict_capture(cap)
    note = [n for n in res["notes"] if n.startswith(REREAD_NOTE)]
    assert len(note) == 1 and "0 pages hit" in note[0], note
    assert res["predicted"]["pgactivate"] == 0 and res["kernel"]["pgactivate"] == 8192


def test_set_without_predict_is_a_usage_error(shipped):
    r = _cli("validate", str(shipped / "a_idle_stream"), "--set", "policy.fallback=defrag_mode")
    assert r.returncode == 2 and "--predict" in r.stderr


def test_the_targets_use_the_issues_tolerances():
    res = {"predicted": {"failures_by_order": {"9": 159, "0": 0}, "attempts_by_order": {"0": 1000},
                         "thp_fault_fallback": 95, "compact_stall": 485, "compact_success": 131, "pgsteal_direct": 10},
           "kernel": {"failures_by_order": {"9": 211, "0": 0}, "thp_fault_fallback": 77, "compact_stall": 460,
                      "compact_success": 133, "pgsteal_direct": 45}}
    t = prediction_targets(res)
    assert t["order9_failures"]["met"] and t["thp_fault_fallback"]["met"]  # -25 %, +23 %
    assert not t["pgsteal_direct"]["met"]  # 35 below a kernel count under 60: more than 20 off
    res["predicted"]["pgsteal_direct"] = 10
    res["kernel"]["pgsteal_direct"] = 30
    assert prediction_targets(res)["pgsteal_direct"]["met"]
    res["kernel"]["pgsteal_direct"] = 31
    assert not prediction_targets(res)["pgsteal_direct"]["met"]
    res["predicted"]["failures_by_order"]["0"] = 2
    assert not prediction_targets(res)["order0_failures"]["met"]


def _column(o9: int) -> dict:
    return {"attempts_by_order": {"0": 1000, "9": 300}, "failures_by_order": {"9": o9}, "thp_fault_alloc": 90,
            "thp_fault_fallback": 10, "compact_stall": 100, "compact_success": 40, "compact_fail": 60,
            "pgmigrate_success": 5000, "allocstall": 50, "pgsteal_direct": 9000, "pgsteal_kswapd": 90000,
            "pgactivate": 700, "pgdeactivate": 300, "pageoutrun": 40, "compact_daemon_wake": 20,
            "extfrag_fallbacks": 3, "buddyinfo": {"Normal": [0] * 11}}


def test_a_what_if_is_not_judged_by_the_same_policy_targets():
    """The targets hold for the capture's own policy: under --set the what-if's lines beside the
    kernel are for reference, and with --seeds the targets are checked on the own policy's replays."""
    from kmemdes.sim.predict import format_prediction

    res = {"capture": "k", "sets": [], "policy": {}, "events": 10, "events_replayed": 10, "wall_s": 1.0,
           "predicted": _column(200), "kernel": _column(100)}
    res["targets"] = prediction_targets(res)
    text = format_prediction(res)
    assert "targets (same policy" in text and "order9_failures           200 vs 100      missed" in text
    res["sets"] = ["policy.fallback=default"]
    text = format_prediction(res)
    assert "targets (same policy" not in text and "for reference" in text
    res["baseline"] = {"predicted": _column(110)}
    text = format_prediction(res)
    tail = text.split("own policy replayed under the same seeds")[1]
    assert "order9_failures           110 vs 100      met" in tail


def _vmstat_figures_are_the_captures(res: dict, cap) -> dict:
    """The kernel column's counters are after/vmstat minus before/vmstat of ``cap``; returns the column."""
    b, a = read_vmstat(cap / "before" / "vmstat"), read_vmstat(cap / "after" / "vmstat")
    k = res["kernel"]
    assert set(res["predicted"]) == set(k) == set(KEYS)
    for key in ("thp_fault_alloc", "thp_fault_fallback", "compact_stall", "compact_success", "pgsteal_direct",
                "pgsteal_kswapd", "pgmigrate_success"):
        assert k[key] == a[key] - b[key]
    return k


@pytest.fixture(scope="module")
def stock(corpus):
    from kmemdes.sim.predict import predict_capture

    return predict_capture(corpus / "j_pressure_stock")


@pytest.mark.slow
@pytest.mark.corpus
def test_kernel_figures_are_the_captures_own(stock, corpus):
    k = _vmstat_figures_are_the_captures(stock, corpus / "j_pressure_stock")
    # traces/README.md section 8: order-9 mm_page_alloc 1,646 attempts, 211 failed; THP 307 / 77
    assert (k["attempts_by_order"]["9"], k["failures_by_order"]["9"]) == (1646, 211)
    assert (k["thp_fault_alloc"], k["thp_fault_fallback"]) == (307, 77)
    assert stock["policy"]["fallback"] == "default"  # the capture's vm.defrag_mode=0


@pytest.mark.slow
@pytest.mark.corpus
def test_same_policy_prediction_on_the_stock_capture(stock):
    t = stock["targets"]
    # met on this capture (seed 1, since kswapd's run outlives the stall that started it, 7 December
    # night): order-9 failures, THP fallbacks, direct compaction stalls and pages reclaimed directly
    # within 30 %, no order-0 failures
    met = {k for k, v in t.items() if v["met"]}
    assert {"order9_failures", "thp_fault_fallback", "compact_stall", "pgsteal_direct", "order0_failures"} <= met, t
    # not met (issue #13): the models' THP compactions form the block less often than the kernel's
    # (66 successes vs 133); bounded so that a regression shows
    p, k = stock["predicted"], stock["kernel"]
    assert p["compact_success"] >= 0.35 * k["compact_success"], (p["compact_success"], k["compact_success"])
    # kswapd's balance_pgdat runs: the kernel's 46 (pageoutrun); 87 when a run a stall started ended
    # with the stall
    assert 0.7 * k["pageoutrun"] <= p["pageoutrun"] <= 1.5 * k["pageoutrun"], (p["pageoutrun"], k["pageoutrun"])
    # kswapd beside each direct compaction step (node.on_stall)
    assert 0.5 * k["pgsteal_kswapd"] <= p["pgsteal_kswapd"] <= 1.5 * k["pgsteal_kswapd"], (p, k)
    # the same requests were replayed (order 9 differs by the THP retries: the kernel's, the model's)
    p, k = stock["predicted"]["attempts_by_order"], stock["kernel"]["attempts_by_order"]
    assert all(p[o] == k[o] for o in k if o != "9")


@pytest.mark.slow
@pytest.mark.corpus
def test_the_hits_of_the_re_read_file_are_inferred(stock, defrag):
    """j's capture has no mm_lru_activate events; its kernel activated 507,047 pages (/proc/vmstat),
    the second pass over the streamed file finding ~1.7 GB of it cached (kmemdes.sim.reread).  The
    inference follows the model's own page cache: on k, whose kernel re-read the whole file from disk
    each pass (pgactivate 34,110), it must not invent the hits."""
    p, k = stock["predicted"], stock["kernel"]
    assert k["pgactivate"] == 507047
    assert 0.7 * k["pgactivate"] <= p["pgactivate"] <= 1.3 * k["pgactivate"], (p["pgactivate"], k["pgactivate"])
    from kmemdes.sim.predict import format_prediction

    assert "files read again inferred" in format_prediction(stock)
    p, k = defrag["predicted"], defrag["kernel"]
    assert k["pgactivate"] == 34110 and p["pgactivate"] <= 2 * k["pgactivate"], p["pgactivate"]


@pytest.fixture(scope="module")
def defrag(corpus):
    from kmemdes.sim.predict import predict_capture

    return predict_capture(corpus / "k_pressure_defrag")


@pytest.mark.slow
@pytest.mark.corpus
def test_kernel_figures_of_the_defrag_mode_capture(defrag, corpus):
    k = _vmstat_figures_are_the_captures(defrag, corpus / "k_pressure_defrag")
    # traces/README.md section 8: order-9 mm_page_alloc 2,881 attempts (the replay counts 2,871: ten
    # fall outside what it replays), 176 failed; THP 369 / 15; direct compaction 268 stalls / 139
    # successes; allocstall_movable 213
    assert 2871 <= k["attempts_by_order"]["9"] <= 2881 and k["failures_by_order"]["9"] == 176
    assert (k["thp_fault_alloc"], k["thp_fault_fallback"]) == (369, 15)
    assert (k["compact_stall"], k["compact_success"], k["allocstall"]) == (268, 139, 213)
    assert defrag["policy"]["fallback"] == "defrag_mode"  # the capture's vm.defrag_mode=1
    # the trace's mm_compaction_end lines by who printed them (kcompactd0 or a compacting task)
    runs = defrag["compaction_runs"]
    assert runs["kernel"] == {"direct": {"complete": 165, "contended": 18, "partial_skipped": 28, "success": 22},
                              "kcompactd": {"complete": 3, "partial_skipped": 1}}
    # issue #13, not met: the models' kcompactd runs far more often and most of its runs find no
    # migration target before the scanners meet (Normal at its min watermark); bounded to show a change
    assert sum(runs["predicted"]["kcompactd"].values()) > 4


def _table_sums(table: dict) -> tuple[int, int]:
    """(stalls, stalls that got their page) of a ``compaction_attempts`` table."""
    cells = [c for by_end in table.values() for c in by_end.values()]
    return sum(a + b for a, b in cells), sum(a for a, _ in cells)


@pytest.mark.slow
@pytest.mark.corpus
def test_compaction_stalls_by_requester_and_outcome(stock, defrag):
    """The direct compaction stalls read from the trace (each try_to_compact_pages, how its last
    compact_zone run ended, whether the allocation came next) add up to the kernel's own /proc/vmstat
    compact_stall and compact_success on both captures; the models' table adds up to their counters."""
    for res in (stock, defrag):
        k, p = res["kernel"], res["predicted"]
        att = res["compaction_attempts"]
        assert _table_sums(att["kernel"]) == (k["compact_stall"], k["compact_success"])
        assert _table_sums(att["predicted"]) == (p["compact_stall"], p["compact_success"])
    # k's kernel: 108 of its 139 successes are readahead compactions of Normal that ran to the end
    # without forming a block, after which the retry found one (in DMA32, refilled by kswapd meanwhile);
    # j's kernel got every success from a run that formed the block, and 202 stalls were deferred
    kd, kj = defrag["compaction_attempts"]["kernel"], stock["compaction_attempts"]["kernel"]
    assert kd["readahead"]["complete"] == [108, 26], kd
    assert sum(c[0] for w in kj.values() for e, c in w.items() if e == "success") == 130, kj
    assert sum(c[1] for w in kj.values() for e, c in w.items() if e == "deferred") == 202, kj
    from kmemdes.sim.predict import format_prediction

    assert "readahead complete" in format_prediction(defrag)


@pytest.mark.slow
@pytest.mark.corpus
def test_same_policy_prediction_on_the_defrag_mode_capture(defrag):
    t = defrag["targets"]
    # met on this capture (seed 1, since the start corrections of 7 December afternoon): order-9 failures
    # and pages reclaimed directly within 30 %, THP fallbacks (a kernel count under 60: within 20), no
    # order-0 failures beyond the kernel's
    met = {k for k, v in t.items() if v["met"]}
    assert {"order9_failures", "thp_fault_fallback", "order0_failures", "pgsteal_direct"} <= met, t
    # not yet met on seed 1 (issue #13): compaction successes (46 vs 139; 83 and 133 on seeds 2 and 3):
    # most of the kernel's are readahead passes followed by a DMA32 block kswapd freed meanwhile;
    # bounded so that a regression shows
    assert t["compact_stall"]["predicted"] >= 0.5 * t["compact_stall"]["kernel"], t["compact_stall"]
    assert t["compact_success"]["predicted"] >= 0.3 * t["compact_success"]["kernel"], t["compact_success"]
    p, k = defrag["predicted"], defrag["kernel"]
    assert p["allocstall"] <= 5 * k["allocstall"]
    assert 0.5 * k["pgsteal_kswapd"] <= p["pgsteal_kswapd"] <= 2 * k["pgsteal_kswapd"]
    # the same requests were replayed: every order-0 one; of the large folios, those of a readahead
    # window the model had failed earlier are read as base pages, not tried at their order
    pa, ka = p["attempts_by_order"], k["attempts_by_order"]
    assert pa["0"] == ka["0"]
    assert all(int(pa.get(o, 0)) <= ka[o] for o in ka if o != "9"), (pa, ka)


@pytest.mark.slow
@pytest.mark.corpus
def test_the_what_if_is_a_different_answer(stock, defrag, corpus):
    """The cross-policy what-if (issue #13: "exactly the same numbers" under both policies before).
    Each capture replayed under the other policy must give a different prediction, with the other
    policy's mechanisms at work: kcompactd compacting toward whole free pageblocks under defrag_mode
    (the kernel's k_pressure_defrag migrated 68 k pages, j_pressure_stock 52 k).  Order-9 failures and
    THP success move by less than one draw's spread: one seed's direction is noise, the median of four
    seeds moves the kernel's way from both starts (README, "Cross-policy"; 16 replays, too slow here)."""
    from kmemdes.sim.predict import predict_capture

    to_defrag = predict_capture(corpus / "j_pressure_stock", ("policy.fallback=defrag_mode",))
    assert to_defrag["policy"]["fallback"] == "defrag_mode"
    assert to_defrag["kernel"] == stock["kernel"]  # the kernel column stays the capture's
    p, own = to_defrag["predicted"], stock["predicted"]
    assert p != own
    # the kernel's defrag_mode capture migrated 1.32x what the stock one did (67,973 vs 51,520 pages)
    assert p["pgmigrate_success"] > 1.2 * own["pgmigrate_success"], (p, own)
    to_stock = predict_capture(corpus / "k_pressure_defrag", ("policy.fallback=default",))
    assert to_stock["policy"]["fallback"] == "default"
    assert to_stock["predicted"] != defrag["predicted"]


def test_seeds_without_predict_is_a_usage_error(shipped):
    r = _cli("validate", str(shipped / "a_idle_stream"), "--seeds", "3")
    assert r.returncode == 2 and "--seeds applies to --predict" in r.stderr
    r = _cli("validate", str(shipped / "a_idle_stream"), "--predict", "--seeds", "0")
    assert r.returncode == 2 and "--seeds" in r.stderr


def test_the_what_if_difference_is_paired_by_seed():
    from kmemdes.cli import _whatif_difference

    def run(seed, failed9, thp_ok, stall):
        return {"seed": seed, "predicted": {"attempts_by_order": {"9": 200}, "failures_by_order": {"9": failed9},
                                            "thp_fault_alloc": thp_ok, "thp_fault_fallback": 100 - thp_ok,
                                            "compact_stall": stall, "compact_success": 0, "pgmigrate_success": 0,
                                            "pgsteal_direct": 0, "pgsteal_kswapd": 0, "extfrag_fallbacks": 0}}
    own = [run(1, 20, 80, 100), run(2, 30, 82, 140)]
    whatif = [run(1, 10, 90, 90), run(2, 16, 96, 120)]
    d = _whatif_difference(whatif, own)
    assert d["order9_failure_pct"]["mean"] == pytest.approx(-6.0)  # (-5 % and -7 %) per seed
    assert d["thp_success_pct"]["mean"] == pytest.approx(12.0) and d["thp_success_pct"]["n"] == 2
    assert d["compact_stall"]["mean"] == pytest.approx(-15.0)
    # differences -10 and -20: sd 7.07, half-width t(0.975, 1) x sd / sqrt(2) = 12.706 x 5
    assert d["compact_stall"]["half_width"] == pytest.approx(12.706 * 5, rel=1e-3)


@pytest.mark.slow
@pytest.mark.corpus
def test_seeds_give_medians_ranges_and_the_paired_what_if(stock, corpus):
    """``--seeds 2`` with a what-if: four replays in worker processes (the what-if and the capture's own
    policy, seeds 1 and 2).  Seed 1 of the own policy is the in-process prediction exactly (same seed,
    same figures), every count's median lies in its range, and the difference is the what-if minus the
    own policy seed by seed."""
    import json

    r = _cli("validate", str(corpus / "j_pressure_stock"), "--predict", "--seeds", "2", "--json",
             "--set", "policy.fallback=defrag_mode")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["seeds"] == [1, 2] and doc["kernel"] == stock["kernel"] and doc["policy"]["fallback"] == "defrag_mode"
    base = doc["baseline"]
    first = base["per_seed"][0]
    assert first["seed"] == 1
    own = stock["predicted"]
    assert all(first[k] == own[k] for k in own if not isinstance(own[k], dict))
    assert first["order9_failures"] == own["failures_by_order"]["9"]
    for spread, pred in ((doc["spread"], doc["predicted"]), (base["spread"], base["predicted"])):
        for key, (lo, hi) in spread.items():
            med = pred["failures_by_order"]["9"] if key == "order9_failures" else pred[key]
            assert lo <= med <= hi, key
    assert doc["targets"]["order9_failures"]["predicted"] == doc["predicted"]["failures_by_order"]["9"]
    d = doc["difference"]["compact_stall"]
    per = [w["compact_stall"] - o["compact_stall"] for w, o in zip(doc["per_seed"], base["per_seed"])]
    assert d["n"] == 2 and d["mean"] == pytest.approx(sum(per) / 2)
    # the whole command's time: four replays side by side, not the sum of their own times
    rp = doc["replay"]
    assert rp["wall_s"] > 0 and rp["replays_wall_s"] > 0
    assert rp["events_per_s"] == pytest.approx(4 * rp["events"] / rp["wall_s"], rel=0.01)
