"""SLUB model: geometry and kmalloc rules from KERNEL.md section 10 and the 6.18 reference machine
(system/slab_caches.tsv, slab_aliases.txt, slabinfo snapshots, real traces)."""

from __future__ import annotations

import csv
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmemdes.errors import KmemdesError
from kmemdes.mm import gfp as G
from kmemdes.mm import slub as S
from kmemdes.mm.layout import build_layout
from kmemdes.mm.mm_init import build_node, parse_size
from tests._tracescan import scan


# ------------------------------------------------------------------ geometry: KERNEL.md tables
@pytest.mark.parametrize(
    "size, by_cpus",
    [  # KERNEL.md section 10 "Order/objects by CPU count" (order, objects) for 1, 2, 4, 8, 16, 64 CPUs
        (8, [(0, 512)] * 6),
        (96, [(0, 42)] * 6),
        (128, [(0, 32)] * 6),
        (192, [(0, 21), (0, 21), (0, 21), (0, 21), (1, 42), (1, 42)]),
        (256, [(0, 16), (0, 16), (0, 16), (1, 32), (1, 32), (1, 32)]),
        (512, [(0, 8), (1, 16), (1, 16), (2, 32), (2, 32), (2, 32)]),
        (1024, [(1, 8), (2, 16), (2, 16), (3, 32), (3, 32), (3, 32)]),
        (2048, [(2, 8), (3, 16), (3, 16), (3, 16), (3, 16), (3, 16)]),
        (4096, [(3, 8)] * 6),
        (8192, [(3, 4)] * 6),
    ],
)
def test_calculate_order_table(size, by_cpus):
    for cpus, (order, objs) in zip((1, 2, 4, 8, 16, 64), by_cpus):
        o = S.calculate_order(size, cpus)
        assert (o, (4096 << o) // size) == (order, objs), (size, cpus)


def _tsv(shipped):
    with open(shipped / "system" / "slab_caches.tsv", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_geometry_of_every_reference_cache(shipped):
    """order, objs_per_slab, min_partial, cpu_partial of all 235 caches of the 6.18 machine (2 CPUs)."""
    rows = _tsv(shipped)
    assert len(rows) == 235
    for r in rows:
        size = int(r["slab_size"])
        geo = S.slab_geometry(int(r["object_size"]), 2, size=size)
        assert (geo.order, geo.objects) == (int(r["order"]), int(r["objs_per_slab"])), r["cache"]
        assert geo.min_partial == int(r["min_partial"]), r["cache"]
        assert geo.cpu_partial == int(r["cpu_partial"]), r["cache"]


@pytest.mark.parametrize(
    "name, object_size, align, flags, ctor, want_size",
    [  # creation flags from the kernel source, expected s->size from slab_caches.tsv
        ("anon_vma", 96, 0, S.SLAB_TYPESAFE_BY_RCU | S.SLAB_ACCOUNT, True, 104),
        ("inode_cache", 616, 0, S.SLAB_RECLAIM_ACCOUNT | S.SLAB_ACCOUNT, True, 624),
        ("radix_tree_node", 576, 0, S.SLAB_RECLAIM_ACCOUNT, True, 584),
        ("mm_struct", 1568, 64, S.SLAB_HWCACHE_ALIGN | S.SLAB_ACCOUNT, False, 1600),
        ("kmem_cache", 232, 0, S.SLAB_HWCACHE_ALIGN, False, 256),
        ("kmem_cache_node", 72, 0, S.SLAB_HWCACHE_ALIGN, False, 128),
        ("task_struct", 5888, 64, S.SLAB_ACCOUNT, False, 5888),
        ("bio-264", 264, 0, S.SLAB_HWCACHE_ALIGN, False, 320),
        ("skbuff_head_cache", 224, 0, S.SLAB_HWCACHE_ALIGN, False, 256),
        ("sighand_cache", 2080, 0, S.SLAB_HWCACHE_ALIGN | S.SLAB_TYPESAFE_BY_RCU | S.SLAB_ACCOUNT, True, 2112),
        ("ext4_inode_cache", 1120, 0, S.SLAB_RECLAIM_ACCOUNT | S.SLAB_ACCOUNT, True, 1128),
    ],
)
def test_object_layout(shipped, name, object_size, align, flags, ctor, want_size):
    row = {r["cache"]: r for r in _tsv(shipped)}[name]
    assert int(row["object_size"]) == object_size and int(row["slab_size"]) == want_size
    a = S.calculate_alignment(flags, align, object_size)
    geo = S.slab_geometry(object_size, 2, align=a, flags=flags, ctor=ctor)
    assert geo.size == want_size
    assert (geo.order, geo.objects) == (int(row["order"]), int(row["objs_per_slab"]))
    if ctor or flags & S.SLAB_TYPESAFE_BY_RCU:
        assert geo.offset == S._align(object_size, 8)  # free pointer after the object


def test_kmalloc_classes_all_sizes():
    """KERNEL.md: 1-8 -> 8, 9-16 -> 16, 17-32 -> 32 (no 24), 33-64, 65-96, 97-128, 129-192, 193-256, then 2^k."""
    bounds = [(8, 8), (16, 16), (32, 32), (64, 64), (96, 96), (128, 128), (192, 192), (256, 256),
              (512, 512), (1024, 1024), (2048, 2048), (4096, 4096), (8192, 8192)]
    lo = 1
    for hi, cls in bounds:
        for size in (lo, (lo + hi) // 2, hi):
            assert S.kmalloc_bytes_alloc(size) == cls, size
        lo = hi + 1
    names = {S.kmalloc_slab_name(s) for s in range(1, 8193)}
    assert names == {"kmalloc-8", "kmalloc-16", "kmalloc-32", "kmalloc-64", "kmalloc-96", "kmalloc-128",
                     "kmalloc-192", "kmalloc-256", "kmalloc-512", "kmalloc-1k", "kmalloc-2k", "kmalloc-4k",
                     "kmalloc-8k"}
    # large: 8193-16384 -> order 2, 16385-32768 -> 3, 2 MiB -> 9, 4 MiB -> 10
    assert [S.kmalloc_bytes_alloc(s) for s in (8193, 16384, 16385, 32768, 2 << 20, 4 << 20)] == [
        16384, 16384, 32768, 32768, 2 << 20, 4 << 20]


def test_kmalloc_cache_alignment_and_flags(shipped):
    """align = largest power of two dividing the size (96 -> 32, 192 -> 64); rcl caches reclaimable."""
    rows = {r["cache"]: r for r in _tsv(shipped)}
    alloc = _slab_allocator()
    for (ktype, idx), s in alloc.kmalloc_caches.items():
        r = rows[s.name]
        assert s.align == int(r["align"]), s.name
        assert (s.size, s.order, s.objects_per_slab) == (int(r["slab_size"]), int(r["order"]), int(r["objs_per_slab"]))
        assert (s.migratetype == G.MIGRATE_RECLAIMABLE) == (r["reclaim_account"] == "1"), s.name
        assert s.unmergeable()  # usercopy region: never merged, so they keep their names in the tsv
    assert len(alloc.kmalloc_caches) == 4 * 13


def test_slab_alloc_gfp_real_lines():
    """KERNEL.md: order 0 'GFP_KERNEL|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP'; order 3 first try
    '__GFP_IO|__GFP_FS|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_NOMEMALLOC'."""
    first, fb = S.slab_alloc_gfp(0, G.GFP_KERNEL, 0, 0)
    assert G.format_gfp(first) == "GFP_KERNEL|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP"
    first, fb = S.slab_alloc_gfp(0, G.GFP_KERNEL, 3, 1)
    assert G.format_gfp(first) == "__GFP_IO|__GFP_FS|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_NOMEMALLOC"
    assert G.format_gfp(fb) == "GFP_KERNEL|__GFP_COMP"
    first, _ = S.slab_alloc_gfp(S.SLAB_RECLAIM_ACCOUNT, G.GFP_NOFS, 2, 0)  # real b_compile line
    assert G.format_gfp(first) == "__GFP_RECLAIMABLE|__GFP_IO|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_NOMEMALLOC"
    first, _ = S.slab_alloc_gfp(S.SLAB_CACHE_DMA, G.GFP_ATOMIC | G.__GFP_NOFAIL, 1, 0)
    assert first & G.__GFP_DMA and not first & G.__GFP_NOFAIL and first & G.__GFP_KSWAPD_RECLAIM


# ------------------------------------------------------------------ merging
def _slab_allocator(nr_cpus=2, arch="x86_64", mem="1G", seed=0, **kw):
    node = build_node(arch, parse_size(mem), cpus=nr_cpus)
    lay = build_layout(arch, parse_size(mem))
    pages = []

    def alloc_pages(gfp, order, cpu):
        pfn = node.alloc_pages(gfp, order, cpu)
        pages.append((pfn, order, gfp))
        return pfn

    a = S.SlabAllocator(alloc_pages, node.free_pages, lay.pfn_to_virt, lay.virt_to_pfn,
                        nr_cpus=nr_cpus, seed=seed, **kw)
    a.node, a.layout, a.page_log = node, lay, pages
    return a


def _aliases(shipped):
    out = {}
    for line in (shipped / "system" / "slab_aliases.txt").read_text().splitlines():
        member, group = line.split(" -> ")
        out[member] = group
    return out


def test_find_mergeable_against_reference(shipped):
    """Caches created in boot order with their kernel definitions merge exactly as on the 6.18 machine:
    same groups as slab_aliases.txt, owner (the name in slabinfo and in events) = the first created."""
    a = _slab_allocator()
    defs = [  # (name, size, align, flags, ctor, usersize, sheaf) in boot order; sizes from the tsv / 6.18 structs
        ("pool_workqueue", 512, 256, 0, False, 0, 0),  # workqueue_init_early
        ("vmap_area", 72, 0, 0, False, 0, 0),  # vmalloc_init
        ("anon_vma", 96, 0, S.SLAB_TYPESAFE_BY_RCU | S.SLAB_ACCOUNT, True, 0, 0),  # anon_vma_init
        ("anon_vma_chain", 64, 0, S.SLAB_ACCOUNT, False, 0, 0),
        ("maple_node", 256, 256, 0, False, 0, 32),
        ("vm_area_struct", 192, 0, S.SLAB_HWCACHE_ALIGN | S.SLAB_TYPESAFE_BY_RCU | S.SLAB_ACCOUNT, False, 0, 32),
        ("task_struct", 5888, 64, S.SLAB_ACCOUNT, False, 5888, 0),
        ("fs_cache", 56, 0, S.SLAB_HWCACHE_ALIGN | S.SLAB_ACCOUNT, False, 0, 0),
        ("filp", 184, 0, S.SLAB_HWCACHE_ALIGN | S.SLAB_TYPESAFE_BY_RCU | S.SLAB_ACCOUNT, False, 0, 0),
        ("eventpoll_pwq", 64, 0, S.SLAB_ACCOUNT, False, 0, 0),
        ("skbuff_fclone_cache", 468, 0, S.SLAB_HWCACHE_ALIGN, False, 0, 0),
        ("sgpool-16", 512, 0, S.SLAB_HWCACHE_ALIGN, False, 0, 0),
    ]
    for name, size, align, flags, ctor, usersize, sheaf in defs:
        a.kmem_cache_create(name, size, align, flags, ctor=ctor, usersize=usersize, sheaf_capacity=sheaf)
    real_alias = _aliases(shipped)
    owners = {line.split()[0] for line in (shipped / "a_idle_stream/before/slabinfo").read_text().splitlines()[2:]}
    tsv_names = {r["cache"] for r in _tsv(shipped)}
    groups = defaultdict(set)
    for name, *_ in defs:
        s = a.lookup(name)
        if name in real_alias:  # merged on the real machine
            groups[real_alias[name]].add(name)
            assert s.name in owners and real_alias[s.name] == real_alias[name], name
            assert S.create_unique_id(s.flags, s.size) == real_alias[name]
        else:  # unmergeable: its own sysfs directory
            assert name in tsv_names and s.name == name and s.unmergeable(), name
    assert a.lookup("fs_cache").name == "anon_vma_chain" == a.lookup("eventpoll_pwq").name
    assert a.lookup("skbuff_fclone_cache").name == "pool_workqueue" == a.lookup("sgpool-16").name
    for group, members in groups.items():  # owner's object_size is the max (tsv object_size)
        s = a.lookup(next(iter(members)))
        row = {r["cache"]: r for r in _tsv(shipped)}[group]
        assert s.size == int(row["slab_size"]) and s.object_size == int(row["object_size"])


def test_merge_rules_unit():
    a = _slab_allocator()
    base = a.kmem_cache_create("base", 200, 0, 0)  # size 200
    assert a.kmem_cache_create("m1", 193, 0, 0) is base  # ALIGN(193, 8) = 200: diff 0
    assert a.kmem_cache_create("m2", 190, 0, 0) is not base  # 192: 200 - 192 = 8 >= 8
    assert a.kmem_cache_create("acct", 200, 0, S.SLAB_ACCOUNT) is not base  # MERGE_SAME flags differ
    assert a.kmem_cache_create("ctor", 200, 0, 0, ctor=True) is not base
    assert a.kmem_cache_create("rcu", 200, 0, S.SLAB_TYPESAFE_BY_RCU) is not base
    assert a.kmem_cache_create("big", 208, 0, 0) is not base  # bigger than s->size
    assert a.kmem_cache_create("aligned", 200, 16, 0) is not base  # 200 & ~15 != 200
    assert base.object_size == 200 and base.refcount == 2 and base.aliases == ["m1"]
    assert a.kmem_cache_create("kmalloc_like", 96, 0, 0).name == "kmalloc_like"  # kmalloc caches never host merges
    with pytest.raises(KmemdesError):
        a.kmem_cache_create("base", 8)
    with pytest.raises(KmemdesError):
        a.kmem_cache_create("zero", 0)


def _ref_allocator(shipped):
    lay = build_layout("x86_64", 24 << 30)
    return S.SlabAllocator.from_sysfs_dump(
        shipped / "system/slab_caches.tsv", shipped / "system/slab_aliases.txt",
        shipped / "a_idle_stream/before/slabinfo", 2,
        lambda g, o, c: -1, lambda p, o, c: None, lay.pfn_to_virt, lay.virt_to_pfn)


_KCA = rb"kmem_cache_alloc: [^\n]*? name=(\S+) bytes_req=(\d+) bytes_alloc=(\d+)"
_KCF = rb"kmem_cache_free: [^\n]*? name=(\S+)"


def _check_cache_events(alloc, path):
    seen = defaultdict(int)
    for m in scan(path, _KCA):
        seen[(m[1].decode(), int(m[2]), int(m[3]))] += 1
    bad = []
    for (name, req, ba), n in seen.items():
        s = alloc.lookup(name)
        if (s.name, s.object_size, s.size) != (name, req, ba):
            bad.append((name, req, ba, s.name, s.object_size, s.size))
    assert not bad, bad
    for m in scan(path, _KCF):
        assert alloc.lookup(m[1].decode()).name == m[1].decode()
    return sum(seen.values()), len({k[0] for k in seen})


def test_events_carry_owner_names_shipped(shipped):
    """Every kmem_cache_alloc event names the owner of its merged group, with bytes_req = the owner's
    (max) object_size and bytes_alloc = s->size (README behaviour 5)."""
    alloc = _ref_allocator(shipped)
    assert alloc.lookup("skbuff_fclone_cache").name == "pool_workqueue"
    assert alloc.lookup("fs_cache").name == "anon_vma_chain"
    n, caches = _check_cache_events(alloc, shipped / "a_idle_stream/trace.txt.zst")
    assert n == 1939  # README: kmem_cache_alloc events of a_idle_stream
    n, caches = _check_cache_events(alloc, shipped / "b_compile_head/trace.txt.zst")
    assert n > 40000 and caches >= 30


@pytest.mark.corpus
@pytest.mark.slow
def test_events_carry_owner_names_corpus(corpus, shipped):
    alloc = _ref_allocator(shipped)
    counts = {"b_compile_nohash": 553486, "c_fschurn": 726657, "d_net_loopback": 698818}
    for d, want in counts.items():
        n, _ = _check_cache_events(alloc, corpus / d / "trace.txt.zst")
        assert n == want


_PAGE_OR_OBJ = (rb"\[(\d+)\] [^\n]*?(?:mm_page_alloc: page=\S+ pfn=0x([0-9a-f]+) order=(\d+) migratetype=(\d+) "
                rb"gfp_flags=(\S+)|(kmem_cache_alloc|kmalloc): [^\n]*?ptr=([0-9a-f]+)(?: name=(\S+))?"
                rb" bytes_req=\d+ bytes_alloc=(\d+) gfp_flags=(\S+))")


def _check_new_slab_pages(shipped, trace) -> int:
    """Each slab page allocated in a raw-pointer trace: the first object handed out of it names the
    cache; the page order is the cache's order (oo) and its gfp is allocate_slab's first-try mask built
    from that allocation's gfp_flags and the cache flags.  Returns the number of pages checked."""
    alloc = _ref_allocator(shipped)
    lay = build_layout("x86_64", 24 << 30)
    pending = {}  # pfn -> (head, order, gfp) of a slab-looking page not yet claimed by an object
    checked = 0
    for m in scan(trace, _PAGE_OR_OBJ):
        if m[2] is not None:
            gfp = G.parse_gfp(m[5].decode())
            head, order = int(m[2], 16), int(m[3])
            for p in range(head, head + (1 << order)):
                pending.pop(p, None)
            if gfp & G.__GFP_COMP and not gfp & G.__GFP_MOVABLE and int(m[4]) in (0, 2) and gfp & G.__GFP_NORETRY:
                for p in range(head, head + (1 << order)):
                    pending[p] = (head, order, gfp)
            continue
        ptr = int(m[7], 16)
        if not ptr:
            continue
        hit = pending.get(lay.virt_to_pfn(ptr))
        if hit is None:
            continue
        head, order, gfp = hit
        for p in range(head, head + (1 << order)):
            pending.pop(p, None)
        caller = G.parse_gfp(m[10].decode())
        s = alloc.kmalloc_slab(int(m[9]), caller) if m[6] == b"kmalloc" else alloc.lookup(m[8].decode())
        first, _ = S.slab_alloc_gfp(s.flags, caller, s.geo.order, s.geo.min_order)
        assert order == s.geo.order, (s.name, order)
        if not s.sheaf_capacity:  # sheaves are refilled/prefilled earlier, under another caller's gfp
            assert gfp == first, (s.name, G.format_gfp(gfp), G.format_gfp(first))
        assert (ptr - lay.pfn_to_virt(head)) % s.size == 0  # object i at slab base + i * size
        checked += 1
    return checked


def test_new_slab_pages_of_b_compile_head(shipped):
    checked = _check_new_slab_pages(shipped, shipped / "b_compile_head/trace.txt.zst")
    assert checked >= 15
    print("new slab pages checked:", checked)


@pytest.mark.corpus
@pytest.mark.slow
def test_new_slab_pages_of_b_compile_nohash(corpus, shipped):
    checked = _check_new_slab_pages(shipped, corpus / "b_compile_nohash/trace.txt.zst")
    assert checked >= 40
    print("new slab pages checked (b_compile_nohash):", checked)


# ------------------------------------------------------------------ runtime
def test_lifo_reuse_and_address_arithmetic():
    a = _slab_allocator()
    s = a.lookup("kmalloc-64")
    x = a.kmem_cache_alloc(s)
    a.kmem_cache_free(s, x)
    assert a.kmem_cache_alloc(s) == x  # names_cache alloc/free/alloc returns the same pointer
    objs = [x] + [a.kmem_cache_alloc(s) for _ in range(200)]
    for o in objs:
        slab = a.slab_of_page[a.layout.virt_to_pfn(o)]
        assert (o - slab.base) % 64 == 0 and slab.base <= o < slab.base + (4096 << slab.order)
        assert slab.base == a.layout.pfn_to_virt(slab.pfn)
    last = objs[-5:]  # objects 196..200: all in the current CPU slab (64 per slab)
    assert {a.slab_of_page[a.layout.virt_to_pfn(o)] for o in last} == {s.cpus[0].slab}
    for o in reversed(last):
        a.kmem_cache_free(s, o)
    assert [a.kmem_cache_alloc(s) for _ in range(5)] == last  # LIFO


def test_freelist_random_permutation():
    a = _slab_allocator(seed=7)
    s = a.lookup("kmalloc-256")  # 16 objects per order-0 slab
    objs = [a.kmem_cache_alloc(s) for _ in range(16)]
    base = a.slab_of_page[a.layout.virt_to_pfn(objs[0])].base
    idx = [(o - base) // 256 for o in objs]
    assert sorted(idx) == list(range(16)) and idx != list(range(16))
    b = _slab_allocator(seed=7)
    assert [b.kmem_cache_alloc(b.lookup("kmalloc-256")) for _ in range(16)] == objs  # deterministic
    c = _slab_allocator(random_freelist=False)
    objs = [c.kmem_cache_alloc(c.lookup("kmalloc-256")) for _ in range(16)]
    assert [o - objs[0] for o in objs] == [256 * i for i in range(16)]


def test_slab_pages_use_cache_flags_and_migratetype():
    a = _slab_allocator()
    a.kmalloc(1000, G.GFP_KERNEL)  # kmalloc-1k: order 2 first try
    pfn, order, gfp = a.page_log[-1]
    assert order == 2 and G.format_gfp(gfp) == "__GFP_IO|__GFP_FS|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_NOMEMALLOC"
    assert a.node.page_mt[pfn] == G.MIGRATE_UNMOVABLE
    a.kmalloc(100, G.GFP_KERNEL | G.__GFP_RECLAIMABLE)  # kmalloc-rcl-128
    pfn, order, gfp = a.page_log[-1]
    assert gfp & G.__GFP_RECLAIMABLE and a.node.page_mt[pfn] == G.MIGRATE_RECLAIMABLE


def test_fallback_to_min_order():
    node = build_node("x86_64", parse_size("1G"), cpus=2)
    lay = build_layout("x86_64", parse_size("1G"))
    log = []

    def alloc_pages(gfp, order, cpu):
        log.append((order, gfp))
        return -1 if order == 3 else node.alloc_pages(gfp, order, cpu)

    a = S.SlabAllocator(alloc_pages, node.free_pages, lay.pfn_to_virt, lay.virt_to_pfn, nr_cpus=2)
    s = a.lookup("kmalloc-2k")  # oo order 3 x16, min order 0 x2
    objs = [a.kmem_cache_alloc(s) for _ in range(3)]
    assert all(objs) and log == [(3, log[0][1]), (0, G.GFP_KERNEL | G.__GFP_COMP)] * 2
    assert s.stat["order_fallback"] == 2 and s.total_objects == 4


def test_empty_slabs_kept_until_min_partial():
    """KERNEL.md: empty slabs are freed only when the node already holds >= min_partial partial slabs.
    kmalloc-4k: 8 objects/slab, cpu_partial_slabs 2, min_partial 6.  20 slabs filled, then every object
    freed in allocation order on the same CPU: slab k's first free puts it on the CPU partial list; every
    third slab finds the list full (2) and flushes it to the node, which keeps empty slabs until it holds 6.
    Left: 6 on the node, 1 on the CPU partial list, the CPU slab -> 12 slabs went back to the buddy."""
    a = _slab_allocator()
    s = a.lookup("kmalloc-4k")
    assert (s.objects_per_slab, s.geo.cpu_partial_slabs, s.geo.min_partial) == (8, 2, 6)
    objs = [a.kmem_cache_alloc(s) for _ in range(160)]
    assert s.nr_slabs == 20
    free_before = sum(z.free_pages + z.pcp_count() for z in a.node.zones)
    for o in objs:
        a.kmem_cache_free(s, o)
    assert s.partial.nr == 6 and len(s.cpus[0].partial) == 1 and s.cpus[0].slab is not None
    assert s.nr_slabs == 8 and s.stat["free_slab"] == 12 and s.free_slabs() == 8
    assert sum(z.free_pages + z.pcp_count() for z in a.node.zones) == free_before + 12 * 8  # order-3 slabs back
    assert a.kmem_cache_shrink(s) == 8 and s.nr_slabs == 0


def test_slabinfo_active_objs_rule():
    """active_objs = num_objs - free objects on node partial lists (CPU slab free objects count active)."""
    a = _slab_allocator()
    s = a.lookup("kmalloc-64")
    x = a.kmem_cache_alloc(s)
    assert s.slabinfo() == (64, 64, 1)
    a.flush_cpu_slab(s, 0)  # the slab goes to the node partial list
    assert s.slabinfo() == (1, 64, 1)
    assert s.occupancy() == 1 / 64
    row = [r for r in a.slabinfo_rows() if r.name == "kmalloc-64"][0]
    assert row.format().startswith("kmalloc-64             1     64     64   64    1 : tunables")
    a.kmem_cache_free(s, x)
    assert s.slabinfo() == (0, 64, 1)  # kept: node has fewer than min_partial partial slabs


def test_sheaves_refill_in_bulk():
    a = _slab_allocator()
    s = a.kmem_cache_create("maple_node", 256, 256, 0, sheaf_capacity=32)
    x = a.kmem_cache_alloc(s)
    assert s.nr_live == 1 and s.total_objects == 32 and s.nr_slabs == 2  # 32 objects pulled from 16-object slabs
    assert s.slabinfo()[0] == 32  # objects in sheaves are in use from the slabs' point of view
    a.kmem_cache_free(s, x)
    assert a.kmem_cache_alloc(s) == x  # the main sheaf is LIFO
    objs = [a.kmem_cache_alloc(s) for _ in range(100)]
    for o in objs:
        a.kmem_cache_free(s, o)
    assert s.stat["sheaf_refill"] >= 3 and s.nr_live == 1
    a.kmem_cache_shrink(s)
    assert s.slabinfo()[0] == 16 or s.nr_slabs <= 1


def test_kmalloc_large_zero_and_limits():
    a = _slab_allocator()
    assert a.kmalloc(0) == (S.ZERO_SIZE_PTR, 0) and a.page_log == []
    assert a.kfree(S.ZERO_SIZE_PTR) == 0 and a.kfree(0) == 0
    addr, ba = a.kmalloc(9000)
    pfn, order, gfp = a.page_log[-1]
    assert (ba, order) == (16384, 2) and gfp == G.GFP_KERNEL | G.__GFP_COMP
    assert addr == a.layout.pfn_to_virt(pfn) and a.ksize(addr) == 16384
    assert a.bytes_alloc_live - a.bytes_req_live == 16384 - 9000
    assert a.kfree(addr) == 16384 and a.bytes_alloc_live == 0
    assert a.kmalloc(5 << 20) == (0, 8 << 20)  # order 11: NULL, bytes_alloc as the event prints it
    assert a.kmalloc(5 << 20, G.GFP_KERNEL | G.__GFP_NOWARN)[0] == 0
    assert a.kmalloc(-1)[0] == 0
    assert sum(a.warnings.values()) == 3 and any("nowarn" in k for k in a.warnings)
    assert a.kmalloc(4 << 20)[1] == 4 << 20
    x, _ = a.kmalloc(100)
    assert a.bytes_alloc_live - a.bytes_req_live == (4 << 20) - (4 << 20) + 28  # internal fragmentation
    assert a.kfree(x) == 128 and a.kfree(x) == 0  # double free: counted, no crash
    assert a.warnings["kfree: invalid or double free"] == 1
    a.kmem_cache_free(a.lookup("kmalloc-64"), 0xFFFF888000001000)
    assert a.warnings["kmem_cache_free: wrong cache, invalid or double free"] == 1


def test_x86_32_kmalloc_comes_from_lowmem():
    a = _slab_allocator(arch="x86_32", mem="2G")
    zones = {z.name for z in a.node.zones}
    assert "HighMem" in zones
    for _ in range(3000):
        addr, _ = a.kmalloc(4000, G.GFP_KERNEL)
        assert a.layout.is_lowmem_addr(addr)
    for pfn, order, gfp in a.page_log:
        assert a.node.zone_of(pfn).name in ("Normal", "DMA")
    addr, _ = a.kmalloc(100, G.GFP_HIGHUSER)  # GFP_SLAB_BUG_MASK: fixed and warned
    assert addr and any("unexpected gfp" in k for k in a.warnings)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 9000), st.integers(0, 1)), min_size=1, max_size=300))
def test_random_kmalloc_kfree_keeps_accounting(ops):
    a = _slab_allocator()
    live = []
    for is_alloc, size, cpu in ops:
        if is_alloc or not live:
            addr, ba = a.kmalloc(size, G.GFP_KERNEL, cpu)
            assert addr and ba == S.kmalloc_bytes_alloc(size)
            live.append(addr)
        else:
            a.kfree(live.pop(size % len(live)), cpu)
    assert len(a.live) == len(live) and len(set(live)) == len(live)
    for s in a.caches:
        objs_free_in_lists = sum(len(sl.freelist) for sl in s.partial)
        assert s.slabinfo()[1] == s.total_objects >= s.nr_live
        assert objs_free_in_lists <= s.total_objects
    for addr in live:
        a.kfree(addr)
    assert a.bytes_alloc_live == 0 and a.bytes_req_live == 0
    for s in a.caches:
        a.kmem_cache_shrink(s)
        assert s.nr_slabs == 0
    assert not a.slab_of_page and not a.large
    a.node.check()
