"""The compile fit: reproducible from the real trace, and sane on the shipped head of it."""

from __future__ import annotations


import pytest

from kmemdes.sim.compilefit import _slab_table, fit_trace, load_fit
from kmemdes.trace.reader import read_trace


def test_shipped_fit_describes_the_real_compile_trace():
    fit = load_fit()
    pages = {c["gfp_flags"]: c for c in fit["classes"] if c["kind"] == "page"}
    # anonymous page faults dominate a compile (traces/README.md: cc1 is 77 % of events)
    anon = pages["GFP_HIGHUSER_MOVABLE|__GFP_ZERO|__GFP_COMP"]
    assert anon["rate"] == max(c["rate"] for c in pages.values())
    # slab pages are not page classes: the SLUB model makes them
    assert not any("NORETRY" in f and "MOVABLE" not in f for f in pages)
    caches = {c["cache"]: c for c in fit["classes"] if c["kind"] == "cache"}
    assert caches["dentry"]["reclaim"] and not caches["filp"]["reclaim"]
    assert caches["filp"]["object_size"] == 184  # slab_caches.tsv of the reference machine
    assert all(len(c["lifetime_ns"]) == 21 and 0 <= c["persist"] <= 1 for c in fit["classes"])


def test_fit_of_the_shipped_head(shipped):
    tr = read_trace(shipped / "b_compile_head")
    fit = fit_trace(tr.events, 2, _slab_table(shipped / "system" / "slab_caches.tsv",
                                               shipped / "system" / "slab_aliases.txt"))
    names = {c.get("cache") for c in fit["classes"]}
    assert {"names_cache", "filp", "vm_area_struct"} <= names
    assert fit["covered_allocations"] <= fit["allocations"]


@pytest.mark.slow
def test_shipped_fit_is_reproducible_from_the_corpus(corpus, shipped):
    tr = read_trace(corpus / "b_compile_nohash")
    cap = tr.meta["capture"]
    pids = tuple(int(cap[k]) for k in ("capture_script_pid", "reader_cat_pid", "reader_zstd_pid"))
    fit = fit_trace(tr.events, 2, _slab_table(shipped / "system" / "slab_caches.tsv",
                                               shipped / "system" / "slab_aliases.txt"), exclude_pids=pids)
    shipped_fit = load_fit()
    assert fit["classes"] == shipped_fit["classes"]
