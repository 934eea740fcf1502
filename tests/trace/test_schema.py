"""The canonical event table's constants (``kmemdes.trace.schema``)."""

from kmemdes.mm import page_alloc, slub
from kmemdes.trace import schema


def test_max_page_order_is_the_allocator_models():
    """schema keeps its own MAX_PAGE_ORDER (reading a trace imports no allocator model): the same value."""
    assert schema.MAX_PAGE_ORDER == page_alloc.MAX_PAGE_ORDER == slub.MAX_PAGE_ORDER
    assert schema.KMALLOC_MAX_SIZE == 1 << (page_alloc.MAX_PAGE_ORDER + page_alloc.PAGE_SHIFT)


def test_event_kinds_by_name():
    """The groups a replay dispatches on; pagemap's LRU events (mm_lru_activate) are their own kind."""
    kind = schema.EventKind.from_name
    assert kind("mm_page_free_direct") == schema.EventKind.MM_PAGE_FREE
    assert kind("mm_compaction_end") == schema.EventKind.COMPACTION
    assert kind("mm_shrink_slab_start") == kind("mm_vmscan_kswapd_wake") == schema.EventKind.VMSCAN
    assert kind("mm_lru_activate") == kind("mm_lru_insertion") == schema.EventKind.LRU
    assert kind("rss_stat") == kind("sched_switch") == schema.EventKind.OTHER
