"""Property tests: random allocation/free sequences keep every allocator invariant.

After each operation ``Node.check`` verifies that free counts equal list
contents, blocks are aligned and do not overlap, no two free buddies are left
unmerged, free blocks sit on their pageblock type's list and pcp counts match.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmemdes.mm import gfp as g
from kmemdes.mm.mm_init import build_node, parse_size
from kmemdes.mm.page_alloc import Policy

GFPS = [g.GFP_KERNEL, g.GFP_HIGHUSER_MOVABLE, g.GFP_KERNEL | g.__GFP_RECLAIMABLE, g.GFP_ATOMIC,
        g.GFP_NOWAIT, g.GFP_KERNEL | g.__GFP_DMA, g.GFP_TRANSHUGE_LIGHT]

ops = st.lists(
    st.one_of(
        st.tuples(st.just("alloc"), st.sampled_from(GFPS), st.sampled_from([0, 0, 0, 1, 2, 3, 4, 6, 9, 10]),
                  st.integers(0, 1)),
        st.tuples(st.just("free"), st.integers(0, 10_000), st.integers(0, 1), st.just(0)),
        st.tuples(st.just("drain"), st.just(0), st.just(0), st.just(0)),
    ),
    min_size=1, max_size=60,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops, defrag=st.booleans(), grouping=st.booleans())
def test_random_sequences_keep_the_invariants(ops, defrag, grouping):
    node = build_node("x86_64", parse_size("64M"), cpus=2,
                      policy=Policy(defrag_mode=defrag, group_by_mobility=grouping))
    # a small zone: make watermarks bite sometimes
    live: list[tuple[int, int]] = []
    for op, a, b, c in ops:
        if op == "alloc":
            pfn = node.alloc_pages(a, b, cpu=c)
            if pfn >= 0:
                assert pfn % (1 << b) == 0
                assert all(pfn + (1 << b) <= s or pfn >= s + (1 << o) for s, o in live), "overlapping allocations"
                live.append((pfn, b))
        elif op == "free" and live:
            pfn, order = live.pop(a % len(live))
            node.free_pages(pfn, order, cpu=b)
        elif op == "drain":
            node.drain_all_pages()
        node.check()
    total_free = node.nr_free_pages() + sum(z.pcp_count() for z in node.zones)
    assert total_free + sum(1 << o for _, o in live) == sum(z.managed for z in node.zones)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seq=st.lists(st.integers(0, 3), min_size=50, max_size=400), seed=st.integers(0, 2**16))
def test_fill_and_drain_returns_to_the_boot_layout(seq, seed):
    """Allocating then freeing everything (and draining pcp) merges back to the boot free lists."""
    import random

    node = build_node("x86_64", parse_size("32M"), cpus=1)
    before = [list(z.nr_free) for z in node.zones]
    rnd = random.Random(seed)
    live = []
    for order in seq:
        pfn = node.alloc_pages(g.GFP_KERNEL if rnd.random() < 0.5 else g.GFP_HIGHUSER_MOVABLE, order)
        if pfn >= 0:
            live.append((pfn, order))
    rnd.shuffle(live)
    for pfn, order in live:
        node.free_pages(pfn, order)
    node.drain_all_pages()
    node.check()
    assert [list(z.nr_free) for z in node.zones] == before
