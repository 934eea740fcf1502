"""Policy-mode page requests: outcomes re-decided by the models, the kernel's own frees left to them."""

from __future__ import annotations

import pytest

from kmemdes.mm import gfp as g
from kmemdes.mm.compaction import Compaction
from kmemdes.mm.gfp import ZoneType
from kmemdes.mm.mm_init import add_zone
from kmemdes.mm.page_alloc import NO_ORDER, PAGE_FREE, Node, Policy, setup_per_zone_wmarks
from kmemdes.mm.reclaim import Reclaim
from kmemdes.sim.policy_pages import NOT_TRIED, RA_WINDOW_GAP_NS, PolicyPages, is_readahead_folio, is_thp_fault
from kmemdes.trace.pressure import BY_COMPACTION, BY_RECLAIM, BY_WORKLOAD

# GFP masks as the j_pressure_stock trace prints them
THP_FIRST = g.parse_gfp("GFP_TRANSHUGE|__GFP_NORETRY|__GFP_THISNODE")
THP_RETRY = g.parse_gfp("GFP_TRANSHUGE")
READAHEAD = g.parse_gfp("GFP_NOFS|__GFP_HIGHMEM|__GFP_MOVABLE|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_HARDWALL")
ANON = g.parse_gfp("GFP_HIGHUSER_MOVABLE|__GFP_ZERO")


def node(pages: int = 8192):
    n = Node("x86_64", pages, cpus=2, policy=Policy(min_free_kbytes=128))
    zone = add_zone(n, "Normal", ZoneType.NORMAL, 2, 0, pages, pages)
    for pb in range(pages >> 9):
        n.pb_valid[pb] = 1
        n.pb_mt[pb] = 1
    for pfn in range(0, pages, 1024):
        n.page_mt[pfn:pfn + 1024] = bytes([PAGE_FREE]) * 1024
        zone.managed += 1024
        n.free_one_page(zone, pfn, 10, to_tail=True)
    setup_per_zone_wmarks(n)
    Reclaim(n)
    Compaction(n)
    return n, zone


def quirks():
    seen = {}

    def quirk(rule, pages=0):
        seen[rule] = seen.get(rule, 0) + 1

    return seen, quirk


def policy_pages():
    """A node (:func:`node`), the rules its PolicyPages counted, and the PolicyPages."""
    n, _ = node()
    seen, quirk = quirks()
    return n, seen, PolicyPages(n, quirk)


def test_thp_faults_are_recognised_by_their_gfp_mask():
    assert is_thp_fault(THP_FIRST, 9) and is_thp_fault(THP_RETRY, 9)
    assert not is_thp_fault(READAHEAD, 9) and not is_thp_fault(THP_FIRST, 0)
    assert is_readahead_folio(READAHEAD, 9) and is_readahead_folio(READAHEAD, 2)
    assert not any(is_readahead_folio(m, 9) for m in (THP_FIRST, THP_RETRY, ANON)) and not is_readahead_folio(READAHEAD, 0)


def test_a_thp_fault_the_model_cannot_serve_falls_back_to_base_pages():
    n, zone = node()
    seen, quirk = quirks()
    pp = PolicyPages(n, quirk)
    # fragment: an order-0 page in use in every pageblock, so no order-9 block can form
    pinned = [pp.alloc(0x100000 + i, 0, ANON, 0, 1) for i in range(16)]
    for pfn in range(0, 8192, 512):
        if n.page_mt[pfn] == PAGE_FREE:
            n.take_block(pfn, 0)
            n.page_mt[pfn] = 1
    assert all(p >= 0 for p in pinned)
    free_before = zone.free_pages + sum(p.count for p in zone.pcp)
    # the kernel served this fault (tpfn 0x200000): the model retries without THISNODE, then maps 512 base pages
    assert pp.alloc(0x200000, 9, THP_FIRST, 0, 7) < 0
    assert pp.t2m[0x200000][0] == -1 and len(pp.t2m[0x200000][1]) == 512
    # two failed mm_page_alloc as the kernel would print them: the first attempt and the retry
    assert pp.attempts[9] == pp.failures[9] == 2 and seen["fallback_to_base_pages_in_model"] == 1
    pp.finish()
    assert pp.counts["thp_fault_fallback"] == 1 and pp.counts["thp_fault_alloc"] == 0
    # the workload frees the THP: the model frees its 512 base pages
    assert pp.free(0x200000, 9, 0, BY_WORKLOAD) == 1
    assert zone.free_pages + sum(p.count for p in zone.pcp) == free_before
    n.check()


def test_readahead_reads_the_rest_of_a_window_as_base_pages_after_a_failed_folio():
    """page_cache_ra_order stops at the first folio it cannot allocate and do_page_cache_ra reads the
    rest of the window as order-0 folios: after the model failed a readahead folio the kernel served,
    the task's next folios within RA_WINDOW_GAP_NS are base pages, with no attempt at order 9; a
    request after the gap (the next window) is tried again."""
    n, zone = node()
    seen, quirk = quirks()
    pp = PolicyPages(n, quirk)
    pinned = [pp.alloc(0x100000 + i, 0, ANON, 0, 1) for i in range(16)]  # no order-9 block can form
    for pfn in range(0, 8192, 512):
        if n.page_mt[pfn] == PAGE_FREE:
            n.take_block(pfn, 0)
            n.page_mt[pfn] = 1
    assert all(p >= 0 for p in pinned)
    assert pp.alloc(0x200000, 9, READAHEAD, 0, 7, ts=1_000) == -1  # the window's first folio fails
    assert pp.attempts[9] == pp.failures[9] == 1
    # the kernel's next folio of the window, 8 us later: base pages, not tried at order 9
    assert pp.alloc(0x200200, 9, READAHEAD, 0, 7, ts=9_000) == NOT_TRIED
    assert pp.attempts[9] == 1 and pp.t2m[0x200200][0] == -1 and len(pp.t2m[0x200200][1]) == 512
    # another task's readahead is its own window
    assert pp.alloc(0x300000, 9, READAHEAD, 1, 8, ts=10_000) == -1 and pp.attempts[9] == 2
    # task 7's next window, after the gap, is tried again
    assert pp.alloc(0x400000, 9, READAHEAD, 0, 7, ts=9_000 + RA_WINDOW_GAP_NS + 1) == -1
    assert pp.attempts[9] == 3
    # a THP fault is not readahead
    assert pp.alloc(0x500000, 9, THP_RETRY, 0, 7, ts=9_000 + RA_WINDOW_GAP_NS + 2) == -1 and pp.attempts[9] == 4
    n.check()


def test_the_kernels_retry_is_not_replayed_when_the_models_first_attempt_served_the_fault():
    n, seen, pp = policy_pages()
    assert pp.alloc(-1, 9, THP_FIRST, 0, 7) >= 0  # the kernel's first attempt failed, the model's did not
    # so the kernel's retry is not the model's: no attempt, no failure
    assert pp.alloc(0x200000, 9, THP_RETRY, 0, 7) == NOT_TRIED and pp.attempts[9] == 1 and pp.failures[9] == 0
    assert seen["thp_retry_not_needed_in_model"] == 1
    pp.finish()
    assert pp.counts == {"thp_fault_alloc": 1, "thp_fault_fallback": 0, "fallback_pages": 0}
    n.check()


def test_a_page_the_kernels_reclaim_freed_stays_for_the_models_reclaim():
    n, zone = node()
    seen, quirk = quirks()
    pp = PolicyPages(n, quirk)
    m = pp.alloc(0x300000, 0, READAHEAD & ~g.__GFP_COMP, 0, 1)
    assert m >= 0 and n.reclaim.is_page_cache(m)  # not zeroed, movable: page cache
    assert pp.free(0x300000, 0, 0, BY_RECLAIM) == 0  # kswapd freed it in the kernel
    assert n.page_mt[m] != PAGE_FREE and pp.m2t[m] == -1 and seen["redecided_by_policy"] == 1
    # the model's reclaim takes it when it decides to
    assert n.reclaim.shrink_node(n.zones, 32, priority=0) == 1
    assert n.page_mt[m] == PAGE_FREE and m not in pp.m2t
    n.check()


def test_a_source_the_kernels_compaction_moved_is_freed_with_its_target():
    n, seen, pp = policy_pages()
    m = pp.alloc(0x1a70df, 0, ANON, 0, 1)
    assert pp.free(0x1a70df, 0, 0, BY_COMPACTION) == 0  # migrated away in the kernel
    assert n.page_mt[m] != PAGE_FREE
    # the workload frees the target (a pfn the trace never showed allocated): the model frees its page
    pp.free(0x5f5900, 0, 0, BY_WORKLOAD)
    assert n.page_mt[m] == PAGE_FREE and seen["free_of_page_moved_by_kernel_compaction"] == 1
    n.check()


def test_pages_from_before_the_trace_are_their_own_pfns_only_with_the_kernels_layout():
    n, seen, pp = policy_pages()
    n.take_block(4096, 0)
    n.page_mt[4096] = 1
    pp.free(4096, 0, 0, BY_WORKLOAD)  # no exact start: the pfn is no identity
    assert n.page_mt[4096] != PAGE_FREE and seen["free_of_untraced_page"] == 1
    pp.adopt(n, [4096], [0], [True])  # the kernel's layout: a page-cache page in use at the start
    assert n.alloc_order[4096] == 0 and n.reclaim.is_page_cache(4096)
    pp.free(4096, 0, 0, BY_WORKLOAD)
    assert n.page_mt[4096] == PAGE_FREE and n.alloc_order[4096] == NO_ORDER
    assert seen["free_of_page_from_before_trace"] == 1
    n.check()


def test_frees_of_the_pieces_of_a_folio_from_before_the_trace_do_not_claim_them():
    """k_pressure_defrag's policy replay: kpageflags showed an order-2 page-cache folio at 0x243a14;
    the kernel's compaction freed its four pages one by one at order 0.  Each tail free used to
    claim its page as a block of its own inside the model's folio: the kernel's reclaim then handed
    one to the model's LRU, whose reclaim freed it and later the whole folio (a double free)."""
    n, seen, pp = policy_pages()
    n.take_block(4096, 2)
    n.page_mt[4096:4100] = bytes([1]) * 4
    n.take_block(4104, 3)  # in use at the start: an order-2 folio at 4108, kernel pages (no order) before it
    n.page_mt[4104:4112] = bytes([1]) * 8
    pp.adopt(n, [4096, 4108], [2, 2], [True, True])  # page cache in the kernel's layout
    for pfn in (4097, 4098, 4099, 4096):  # the kernel's compaction frees the pieces
        assert pp.free(pfn, 0, 0, BY_COMPACTION) == 0
    # a block that would hold the adopted folio at 4108 is no pre-trace block of its own either
    assert pp.free(4104, 3, 0, BY_WORKLOAD) == 0 and n.alloc_order[4104] == NO_ORDER
    # a free by the kernel's reclaim of a page the model does not hold: no piece for the model's LRU
    assert pp.free(0x400000, 0, 0, BY_RECLAIM) == 0
    # the model's reclaim frees each folio once, whole
    assert n.reclaim.shrink_node(n.zones, 32, priority=0) == 8
    assert n.page_mt.count(PAGE_FREE, 4096, 4100) == n.page_mt.count(PAGE_FREE, 4108, 4112) == 4
    assert n.page_mt.count(PAGE_FREE, 4104, 4108) == 0  # the kernel pages stay in use
    assert seen == {"compaction_free": 4, "free_of_untraced_page": 1, "reclaim_free": 1}
    n.check()


@pytest.mark.slow
@pytest.mark.corpus
@pytest.mark.parametrize("name", ["j_pressure_stock", "k_pressure_defrag"])
def test_a_policy_start_holds_the_kernels_per_cpu_pages(corpus, name):
    """The pages on the kernel's per-CPU lists when the trace starts are free, not in use: a policy
    replay's start state has them on its pcp lists (before/zoneinfo's pagesets count them)."""
    from pathlib import Path

    from kmemdes.config import Config
    from kmemdes.sim.engine import _node_from_kpageflags
    from kmemdes.sim.replay import READ_COLUMNS, slim_events
    from kmemdes.sim.sanitize import sanitize_events
    from kmemdes.trace.reader import read_trace
    from kmemdes.trace.snapshot import parse_zoneinfo

    cap = Path(corpus) / name
    trace = read_trace(cap, columns=READ_COLUMNS, progress=False)
    events, _ = sanitize_events(trace.events)
    events, _, _ = slim_events(events)
    node, adopt = _node_from_kpageflags(trace, events, Config(name=name), "policy", cap / "before" / "kpageflags.zst", [])
    kernel = {z.name: sum(ps.get("count", 0) for ps in z.pagesets)
              for z in parse_zoneinfo((cap / "before" / "zoneinfo").read_text())}
    assert kernel["Normal"] > 4000  # 4,323 (j) and 18,711 (k) pages
    for zone in node.zones:
        model = sum(p.count for p in zone.pcp)
        assert abs(model - kernel[zone.name]) <= 0.05 * kernel[zone.name] + 64, (zone.name, model, kernel[zone.name])
    # kpageflags is read after the trace started: some of those pages show as folios in use by then;
    # the models adopt only the folios that are in use in the start state
    heads = [p for p in adopt[0] if node.page_mt[p] == PAGE_FREE]
    assert heads
    pages = PolicyPages(node, lambda *a: None)
    pages.adopt(node, *adopt)
    assert all(node.alloc_order[p] == NO_ORDER and p not in node.rmap for p in heads)


def test_the_kernels_activation_moves_the_models_copy_to_the_active_list():
    """``mm_lru_activate`` names the folio the workload touched again (a page-cache hit): the model's
    copy goes to the active list, so the model's reclaim takes the untouched page cache first, as the
    kernel's did."""
    n, seen, pp = policy_pages()
    read = READAHEAD & ~g.__GFP_COMP
    first = pp.alloc(0x300000, 0, read, 0, 1)
    second = pp.alloc(0x300001, 0, read, 0, 1)
    assert pp.activate(0x300000) == 1 and n.reclaim.vmstat["pgactivate"] == 1
    assert pp.activate(0x300000) == 1 and n.reclaim.vmstat["pgactivate"] == 1  # already active: agrees
    # the older page is active: reclaim scanning the inactive list takes the newer one
    assert n.reclaim.shrink_node(n.zones, 32, priority=0) == 1
    assert n.page_mt[second] == PAGE_FREE and n.page_mt[first] != PAGE_FREE
    # a folio the model does not hold as page cache (anonymous here) is counted, not applied
    pp.alloc(0x400000, 0, ANON, 0, 1)
    assert pp.activate(0x400000) == 0 and pp.activate(0x500000) == 0
    assert seen["lru_activate_not_in_model"] == 2
    n.check()


def test_an_activated_folio_the_model_served_with_base_pages_activates_them_all():
    n, seen, pp = policy_pages()
    pfn = pp.alloc(0x200000, 2, READAHEAD, 0, 1)
    assert pfn >= 0 and pp.activate(0x200000) == 1 and n.reclaim.vmstat["pgactivate"] == 4  # its pages
    pp._fallback(0x210000, 2, READAHEAD, 0)  # the model failed this folio: four order-0 folios stand for it
    assert pp.t2m[0x210000][0] == -1 and len(pp.t2m[0x210000][1]) == 4
    assert pp.activate(0x210000) == 1 and n.reclaim.vmstat["pgactivate"] == 8
    # a page-cache page in use since the start is its own pfn while no model decision touched it
    n.take_block(4096, 0)
    n.page_mt[4096] = 1
    pp.adopt(n, [4096], [0], [True])
    assert pp.activate(4096) == 1 and n.reclaim.vmstat["pgactivate"] == 9
    assert "lru_activate_not_in_model" not in seen
    n.check()


def test_a_folio_the_models_compaction_split_is_freed_whole_by_the_traces_free():
    # migrate_pages_batch splits a large folio it has no target for; the trace's later free of the
    # folio (the kernel's, which may never have split it) frees every one of its base pages, wherever
    # compaction moved them and less those reclaim took
    n, seen, pp = policy_pages()
    free0 = n.nr_free_pages()
    pfn = pp.alloc(0x200000, 2, READAHEAD, 0, 1, ts=0)
    assert pfn >= 0 and n.reclaim.is_page_cache(pfn)
    assert n.compaction.split_folio(pfn) is True
    assert pp.t2m[0x200000] == (-1, [pfn, pfn + 1, pfn + 2, pfn + 3])
    assert all(n.alloc_order[p] == 0 and n.rmap[p] is n.reclaim for p in range(pfn, pfn + 4))
    # compaction moves one page, reclaim frees another
    dst = n.alloc_pages(ANON, 0)
    n.rmap.pop(pfn + 1)
    n.reclaim.migrate_page(pfn + 1, dst, 0)
    n.rmap[dst] = n.reclaim
    n.free_pages(pfn + 1, 0)
    pp.reclaim_page(pfn + 2, 0)
    n.reclaim.remove_file_pages([pfn + 2])
    assert pp.t2m[0x200000] == (-1, [pfn, dst, pfn + 3])
    assert pp.free(0x200000, 2, 0, BY_WORKLOAD) == 1
    n.drain_all_pages()
    assert n.nr_free_pages() == free0 and not n.rmap and seen == {}
    n.check()


def test_a_folio_the_kernels_compaction_moved_is_not_split():
    n, seen, pp = policy_pages()
    pfn = pp.alloc(0x200000, 2, READAHEAD, 0, 1, ts=0)
    pp.free(0x200000, 2, 0, BY_COMPACTION)  # the kernel migrated it: its identity is to be learnt
    assert pfn in pp.migrating_pfns and n.compaction.split_folio(pfn) is False
    assert n.alloc_order[pfn] == 2 and pp.m2t[pfn] == -1
    n.check()
