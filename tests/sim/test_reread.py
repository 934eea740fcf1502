"""Page-cache hits of re-read files inferred from readahead misses (kmemdes.sim.reread).

The rules are mm/swap.c's ``folio_mark_accessed`` (referenced on the first access, active on the
second) and mm/workingset.c's refault test (distance within the active file list); the file-order
bookkeeping is the module's own inference, checked here on hand-built reads."""

from __future__ import annotations

from kmemdes.mm import gfp as g
from kmemdes.mm.mm_init import build_node, parse_size
from kmemdes.mm.reclaim import Reclaim
from kmemdes.sim.reread import LAST_MIN_SHARE, RereadHits


def setup(readers=None):
    node = build_node("x86_64", parse_size("256M"), cpus=1)
    rec = Reclaim(node)
    r = RereadHits(readers or {1: "cat", 2: "cat", 3: "cat", 9: "grep"}, rec)
    return node, rec, r


def folio(node, rec, order=0):
    p = node.alloc_pages(g.GFP_HIGHUSER_MOVABLE, order)
    assert p >= 0
    rec.add_file_pages([p], order, owner=None)
    return p


def active(node, rec):
    return sum(rec.lru_pages(z, True) for z in node.zones if z.managed)


def test_a_second_reader_hits_what_the_first_left_cached_and_activates_it():
    node, rec, r = setup()
    first = [folio(node, rec) for _ in range(8)]
    for p in first:
        assert r.read(1, 0, [p]) == 0  # the first reader: misses, each marked accessed once
    assert active(node, rec) == 0 and rec.vmstat["pgactivate"] == 0
    # the second reader misses the first page (evicted meanwhile, say), then hits the seven cached
    rec.remove_file_pages([first[0]])
    r.dropped(first[0])
    assert r.read(2, 0, [folio(node, rec)]) == 7
    assert rec.vmstat["pgactivate"] == 7 and active(node, rec) == 7 and r.rereads == 1
    # another command's reader does not read cat's file; an unknown task reads nothing
    assert r.read(9, 0, [folio(node, rec)]) == 0 and r.read(77, 0, [folio(node, rec)]) == 0


def test_hits_stop_at_a_folio_the_model_no_longer_holds():
    node, rec, r = setup()
    first = [folio(node, rec) for _ in range(6)]
    for p in first:
        r.read(1, 0, [p])
    rec.remove_file_pages([first[3]])
    r.dropped(first[3])
    assert r.read(2, 0, [folio(node, rec)]) == 2  # pages 1, 2; page 3 must be read from disk
    assert r.read(2, 0, [folio(node, rec)]) == 2  # the next miss covers page 3: then 4, 5
    assert rec.vmstat["pgactivate"] == 4


def test_a_miss_over_an_evicted_folio_is_a_refault():
    """The model's reclaim evicted the first reader's oldest pages; the second reader's miss over one
    of them is a refault, started active while the distance (pages evicted or activated since) is
    within the active list."""
    node, rec, r = setup()

    class Owner:  # what PolicyPages does in a replay: tells the inference of each eviction
        def reclaim_page(self, pfn, order):
            r.evicted(pfn)

    owner = Owner()
    first = []
    for _ in range(40):
        p = node.alloc_pages(g.GFP_HIGHUSER_MOVABLE, 0)
        rec.add_file_pages([p], 0, owner=owner)
        first.append(p)
        r.read(1, 0, [p])
    for _ in range(40):  # an unrelated hot set: 40 active pages (the clock ages by 40)
        p = folio(node, rec)
        rec.mark_page_accessed(p)
        rec.mark_page_accessed(p)
    assert rec.nonresident_age == 40
    assert rec.shrink_node(node.zones, 4, priority=0) == 32  # one batch: first[:32], evicted at ages 40..71
    assert len(r.shadow) == 32 and rec.nonresident_age == 72
    assert r.read(2, 0, [folio(node, rec)]) == 0  # covers first[0]: distance 72 - 40 = 32 <= 40 active
    assert rec.vmstat["workingset_refault_file"] == 1 and rec.vmstat["workingset_activate_file"] == 1
    assert r.refault_pages == 1 and active(node, rec) == 41


def test_the_last_request_of_a_re_reader_hits_the_rest_but_not_a_small_read_of_another_file():
    node, rec, r = setup()
    first = [folio(node, rec) for _ in range(2 * LAST_MIN_SHARE)]
    for p in first:
        r.read(1, 0, [p])
    for p in first[2:5]:  # holes the model's reclaim made
        rec.remove_file_pages([p])
        r.dropped(p)
    # a small read by another cat (a log file): its only request covers 1/128 of the file
    assert r.read(2, 0, [folio(node, rec)], last=True) == 1  # first[1], up to the hole
    # a third reader re-reads: two misses (1/64 of the file), the last one: every cached page after
    # (its file: cat 2's miss, first[1] it hit, then first[2:]); the first miss hits first[1] up to the
    # hole at first[2], the second covers first[2], and as the last it hits first[5:] past the hole first[4]
    hits = r.read(3, 0, [folio(node, rec)]) + r.read(3, 0, [folio(node, rec)], last=True)
    assert hits == 1 + (2 * LAST_MIN_SHARE - 5), hits


def test_the_model_moving_or_splitting_a_folio_keeps_its_place_in_the_file():
    node, rec, r = setup()
    a, b = folio(node, rec, 9), folio(node, rec, 9)
    r.read(1, 9, [a])
    r.read(1, 9, [b])
    new = node.alloc_pages(g.GFP_HIGHUSER_MOVABLE, 9)
    rec.migrate_page(b, new, 9)  # compaction moved the second folio
    r.moved(b, new)
    assert r.read(2, 9, [folio(node, rec, 9)]) == 512  # the moved copy is hit
    assert rec.is_page_cache(new) and active(node, rec) == 512
