"""The canonical event table's constants (``kmemdes.trace.schema``)."""

from kmemdes.mm import page_alloc, slub
from kmemdes.trace import schema


def test_max_page_order_is_the_allocator_models():
    """schema keeps its own MAX_PAGE_ORDER (reading a trace imports no allocator model): the same value."""
    assert schema.MAX_PAGE_ORDER == page_alloc.MAX_PAGE_ORDER == slub.MAX_PAGE_ORDER
    assert schema.KMALLOC_MAX_SIZE == 1 << (page_alloc.MAX_PAGE_ORDER + page_alloc.PAGE_SHIFT)
