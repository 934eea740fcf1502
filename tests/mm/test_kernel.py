"""The composed kernel: boot layouts, the calls a driver makes, events, and no leaks."""

from __future__ import annotations

import pytest

from kmemdes.errors import KmemdesError
from kmemdes.mm import gfp as G
from kmemdes.mm.kernel import Kernel
from kmemdes.mm.slub import ZERO_SIZE_PTR


def _free_total(k):
    return sum(z.free_pages + z.pcp_count() for z in k.node.zones)


def test_x86_32_160m_is_all_lowmem():
    k = Kernel("x86_32", "160M", cpus=1)
    assert [z.name for z in k.node.zones] == ["DMA", "Normal"]  # HighMem empty: not even listed
    assert k.layout.high_memory == 0xCA000000 and k.layout.vmalloc_start == 0xCA800000
    page = getattr(k, "__get_free_pages")(G.GFP_KERNEL, 0)
    assert k.layout.region_of(page) == "lowmem" and k.layout.virt_to_phys(page) == page - 0xC0000000
    k.free_pages(page, 0)


def test_get_free_pages_never_returns_highmem():
    k = Kernel("x86_32", "2G", cpus=1)
    for _ in range(200):
        addr = k.get_free_pages(G.GFP_HIGHUSER, 1)  # __GFP_HIGHMEM is masked off
        assert k.layout.is_lowmem_addr(addr)
        assert k.zone_name(k.layout.virt_to_pfn(addr)) in ("DMA", "Normal")
    assert k.get_free_pages(G.GFP_KERNEL, 11) == 0 and sum(k.all_warnings().values()) == 1


def test_events_follow_the_kernel():
    k = Kernel("x86_64", "1G", cpus=2, trace=True)
    k.events.clear()
    assert k.kmalloc(0) == ZERO_SIZE_PTR and k.events == []  # kmalloc(0): no event
    a = k.kmalloc(100)
    kinds = [e for e, _ in k.events]
    assert kinds[-1] == "kmalloc" and k.events[-1][1]["bytes_alloc"] == 128
    assert "mm_page_alloc" in kinds  # a new slab for kmalloc-128
    k.events.clear()
    k.kfree(0)
    assert k.events == [("kfree", {"ptr": 0})]  # kfree(NULL) is traced
    k.kfree(a)
    big = k.kmalloc(9000)
    e = [f for x, f in k.events if x == "mm_page_alloc"][-1]
    assert e["order"] == 2 and e["gfp"] == G.GFP_KERNEL | G.__GFP_COMP and e["migratetype"] == 0
    k.kfree(big)
    assert k.events[-1] == ("mm_page_free", {"pfn": e["pfn"], "order": 2})


def test_kmem_cache_api_and_merging():
    k = Kernel("x86_64", "1G", cpus=2)
    c = k.kmem_cache_create("my_objs", 200)
    d = k.kmem_cache_create("other_objs", 196)  # ALIGN(196, 8) = 200: merges
    assert d is c and d.name == "my_objs"
    x = k.kmem_cache_alloc("other_objs")
    assert k.ksize(x) == 200
    k.kmem_cache_free("my_objs", x)
    with pytest.raises(KmemdesError):
        k.kmem_cache_alloc("no_such_cache")


def test_kvmalloc_dispatch_and_no_leak():
    k = Kernel("x86_64", "1G", cpus=2)
    boot = _free_total(k)
    small = k.kvmalloc(1000)
    large = k.kvmalloc(1 << 20)  # order 8 available on a fresh machine: kmalloc
    assert k.layout.region_of(small) == k.layout.region_of(large) == "direct map"
    v = k.vmalloc(3 << 20)
    p = k.spawn("prog")
    m = p.malloc(5 << 20)
    p.touch(m, 5 << 20)
    for a in (small, large, v):
        k.kvfree(a)
    k.exit(p)
    k.vmalloc_model.va.purge()  # frees the vmap_area objects
    for s in k.slab.caches:
        k.slab.kmem_cache_shrink(s)
    kept = k.vmalloc_model.stat["pgtable_pages"]  # vmalloc page tables are never freed
    assert _free_total(k) == boot - kept
    k.node.check()


def test_slab_pages_and_object_addresses_agree():
    k = Kernel("x86_64", "1G", cpus=2)
    objs = [k.kmalloc(n) for n in (8, 96, 192, 700, 3000, 8000) for _ in range(50)]
    for a in objs:
        pfn = k.layout.virt_to_pfn(a)
        slab = k.slab.slab_of_page[pfn]
        assert k.node.page_mt[slab.pfn] == slab.cache.migratetype
        assert k.node.alloc_order[slab.pfn] == slab.order


def test_bad_boot_arguments():
    with pytest.raises(KmemdesError):
        Kernel("x86_64", "12Q")
    with pytest.raises(KmemdesError):
        Kernel("sparc", "1G")
    with pytest.raises(KmemdesError):
        Kernel("x86_64", "1G", cpus=0)
