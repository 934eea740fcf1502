"""User-space model: glibc malloc placement, demand paging, THP, page tables, munmap/exit (KERNEL.md 13)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmemdes.errors import KmemdesError
from kmemdes.mm import gfp as G
from kmemdes.mm.mm_init import build_node, parse_size
from kmemdes.mm.user import GFP_ANON, GFP_PGTABLE_USER, GFP_THP_LIGHT, GFP_THP_MADVISE, MADV_HUGEPAGE, Process
from tests._tracescan import scan

PAGE = 4096


class _Pages:
    """The buddy model plus a log of every allocation (gfp, order, pfn) and free."""

    def __init__(self, arch="x86_64", mem="2G", fail_order=None):
        self.node = build_node(arch, parse_size(mem), cpus=2)
        self.log = []
        self.freed = []
        self.fail_order = fail_order

    def alloc(self, gfp, order, cpu):
        pfn = -1 if order == self.fail_order else self.node.alloc_pages(gfp, order, cpu)
        self.log.append((gfp, order, pfn))
        return pfn

    def free(self, pfn, order, cpu):
        self.freed.append((pfn, order))
        self.node.free_pages(pfn, order, cpu)

    def free_total(self):
        return sum(z.free_pages + z.pcp_count() for z in self.node.zones)


def _proc(arch="x86_64", mem="2G", **kw):
    pages = _Pages(arch, mem, kw.pop("fail_order", None))
    return Process(pages.alloc, pages.free, arch, seed=3, **kw), pages


def test_fault_masks_are_the_real_ones(shipped):
    """The masks print exactly as the real traces / KERNEL.md show them."""
    assert G.format_gfp(GFP_ANON) == "GFP_HIGHUSER_MOVABLE|__GFP_ZERO|__GFP_COMP"
    assert G.format_gfp(GFP_THP_MADVISE) == "GFP_TRANSHUGE|__GFP_NORETRY|__GFP_THISNODE"
    assert G.format_gfp(GFP_PGTABLE_USER) == "GFP_KERNEL_ACCOUNT|__GFP_ZERO|__GFP_COMP"
    seen = {(m[1], m[2], m[3]) for m in scan(shipped / "b_compile_head/trace.txt.zst",
                                               rb"mm_page_alloc: \S+ \S+ order=(\d+) migratetype=(\d+) gfp_flags=(\S+)")}
    assert (b"0", b"1", G.format_gfp(GFP_ANON).encode()) in seen  # first-touch anon pages: order 0, movable
    assert (b"0", b"0", G.format_gfp(GFP_PGTABLE_USER).encode()) in seen  # page tables: order 0, unmovable


def test_small_malloc_uses_brk_large_uses_mmap():
    p, pages = _proc()
    a = p.malloc(100)
    assert p.find_vma(a).name == "[heap]" and p.brk_start <= a < p.brk
    assert a - p.brk_start == 0x290 + 0x10  # after the tcache_perthread_struct chunk (0x290), header 16
    b = p.malloc(1000000)
    vma = p.find_vma(b)
    assert vma.name == "malloc" and b == vma.start + 16 and vma.start % PAGE == 0
    assert vma.end - vma.start == (1000000 + 8 + 15 & ~15) + 8 + PAGE - 1 & ~(PAGE - 1)
    assert vma.start < p.mmap_base and vma.end <= p.mmap_base  # top-down below mmap_base
    c = p.malloc(128 << 10)  # exactly the threshold (request2size >= threshold): mmap
    assert p.find_vma(c).name == "malloc" and p.find_vma(c).end <= vma.start
    assert p.malloc((128 << 10) - 100) < p.brk  # below: heap
    assert [g for g, o, pfn in pages.log] == [G.GFP_KERNEL_ACCOUNT | G.__GFP_ZERO]  # only the PGD so far
    assert p.rss_pages == 0


def test_x86_32_malloc_pointer_and_threshold_max():
    p, _ = _proc("x86_32", "160M")
    b = p.malloc(1000000)
    assert b < 0xC0000000 and (b - 8) % PAGE == 0  # SIZE_SZ 4: 8-byte header
    assert p.mmap_threshold_max == 512 << 10


def test_demand_paging_write_read_cow():
    p, pages = _proc()
    a = p.malloc(1 << 20)
    n0 = len(pages.log)
    assert p.touch(a, 10 * PAGE) == 11  # a is 16 bytes into its page: 11 pages spanned
    new = pages.log[n0:]
    anon = [x for x in new if x[0] == GFP_ANON]
    assert len(anon) == 11 and all(o == 0 for _, o, _ in anon)
    assert all(pages.node.page_mt[pfn] == G.MIGRATE_MOVABLE for _, _, pfn in anon)
    assert {g for g, _, _ in new} - {GFP_ANON} == {GFP_PGTABLE_USER}  # + page tables
    n1 = len(pages.log)
    assert p.read(a + 20 * PAGE, 10 * PAGE) == 0 and len(pages.log) == n1  # zero page: nothing allocated
    assert p.stat["zero_page_faults"] == 11
    assert p.touch(a + 20 * PAGE, PAGE) >= 1 and p.stat["cow_faults"] >= 1  # write after read: COW copy
    assert pages.log[-1][0] == GFP_ANON
    assert p.resident(a, PAGE)[0] == anon[0][2]


def test_page_tables_per_2mib_and_levels():
    p, pages = _proc()
    base = p.mmap(8 << 20)
    p.touch(base, PAGE)
    first = sum(1 for g, _, _ in pages.log if g == GFP_PGTABLE_USER)
    assert first == 3  # PUD + PMD + PTE page for the first touch in a fresh 2 MiB / 1 GiB / 512 GiB
    p.touch(base + PAGE, PAGE)
    assert sum(1 for g, _, _ in pages.log if g == GFP_PGTABLE_USER) == 3
    start = (base + (2 << 20)) & ~((2 << 20) - 1)
    p.touch(start, PAGE)  # the next 2 MiB block: one more PTE page
    assert sum(1 for g, _, _ in pages.log if g == GFP_PGTABLE_USER) == 4


def test_thp_madvise_order9_and_fallback():
    p, pages = _proc()
    base = p.mmap(8 << 20)
    aligned = (base + (2 << 20) - 1) & ~((2 << 20) - 1)
    p.touch(aligned, PAGE)
    assert pages.log[-1][1] == 0  # no MADV_HUGEPAGE under enabled=madvise: order 0
    p.madvise(base, 8 << 20, MADV_HUGEPAGE)
    p.touch(aligned + (2 << 20), PAGE)
    g, order, pfn = pages.log[-1]
    assert (g, order) == (GFP_THP_MADVISE, 9) and p.rss_pages == 1 + 512
    assert p.resident(aligned + (2 << 20) + 5 * PAGE, PAGE) == [pfn + 5]
    q, qpages = _proc(fail_order=9)
    base = q.mmap(8 << 20)
    q.madvise(base, 8 << 20, MADV_HUGEPAGE)
    aligned = (base + (2 << 20) - 1) & ~((2 << 20) - 1)
    q.touch(aligned, PAGE)
    # alloc_pages_mpol: the local try (__GFP_THISNODE|__GFP_NORETRY) fails, a madvised VMA retries with
    # the VMA's own mask, then the fault falls back to a base page.  j_pressure_stock shows both: 384
    # order-9 GFP_TRANSHUGE|__GFP_NORETRY|__GFP_THISNODE requests (307 + 77 THP faults) and 116 retries
    # as GFP_TRANSHUGE
    assert [(g, o) for g, o, _ in qpages.log[-3:]] == [(GFP_THP_MADVISE, 9), (G.GFP_TRANSHUGE, 9), (GFP_ANON, 0)]
    assert q.stat["thp_fallback"] == 1 and q.stat["thp_faults"] == 0
    a, apages = _proc(thp="always")
    base = a.mmap(8 << 20)
    a.touch((base + (2 << 20) - 1) & ~((2 << 20) - 1), PAGE)
    assert apages.log[-1][:2] == (GFP_THP_LIGHT, 9)  # always, not madvised: the light mask (defrag=madvise)
    b, bpages = _proc(thp="always", fail_order=9)
    base = b.mmap(8 << 20)
    b.touch((base + (2 << 20) - 1) & ~((2 << 20) - 1), PAGE)
    # the light mask cannot reclaim: no retry, straight to a base page
    assert [(g, o) for g, o, _ in bpages.log[-2:]] == [(GFP_THP_LIGHT, 9), (GFP_ANON, 0)]
    r, rpages = _proc(thp="never")
    base = r.mmap(8 << 20)
    r.madvise(base, 8 << 20, MADV_HUGEPAGE)
    r.touch((base + (2 << 20) - 1) & ~((2 << 20) - 1), PAGE)
    assert rpages.log[-1][1] == 0


def test_dynamic_mmap_threshold():
    p, _ = _proc()
    a = p.malloc(1 << 20)
    size = p.chunks[a][1]
    p.free(a)
    assert p.mmap_threshold == size and p.trim_threshold == 2 * size  # raised to the freed chunk's size
    b = p.malloc(512 << 10)
    assert p.find_vma(b).name == "[heap]"  # now below the threshold: brk
    c = p.malloc(64 << 20)
    p.free(c)
    assert p.mmap_threshold == size  # above DEFAULT_MMAP_THRESHOLD_MAX (32 MiB): unchanged


def test_heap_reuse_and_trim():
    p, pages = _proc()
    a = p.malloc(1000)
    b = p.malloc(1000)  # keeps the chunk after a in use
    assert b != a
    p.free(a)
    assert p.malloc(900) == a  # best fit reuses the freed chunk
    big = [p.malloc(100 << 10) for _ in range(5)]  # 500 KiB of heap
    brk_high = p.brk
    for x in big:
        p.touch(x, 100 << 10)
    before = pages.free_total()
    for x in reversed(big):
        p.free(x)
    assert p.brk < brk_high and p.stat["trim"] >= 1  # top chunk above 128 KiB is given back
    assert pages.free_total() > before  # and the touched pages went back to the page allocator
    assert p.brk - p.heap_top < p.top_pad + PAGE  # systrim keeps M_TOP_PAD (+ less than a page)


def test_munmap_and_exit_free_everything():
    p, pages = _proc()
    before = pages.free_total()
    a = p.malloc(3 << 20)
    p.touch(a, 3 << 20)
    b = p.malloc(200)
    p.touch(b, 200)
    vma = p.find_vma(a)
    resident = [x for x in p.resident(vma.start, vma.end - vma.start) if x >= 0]
    n = len(pages.freed)
    p.free(a)
    batch = pages.freed[n:]
    anon = [pfn for pfn, order in batch if order == 0 and pfn in set(resident)]
    assert anon == resident and len(resident) == 769  # every folio once, in address order
    freed_total = p.exit()
    assert freed_total > 0 and not p.pte and not p.pgtables
    assert pages.free_total() == before + 1  # the PGD too (allocated before `before`)
    assert p.exit() == 0


def test_highmem_user_pages_on_x86_32():
    p, pages = _proc("x86_32", "2G")
    a = p.malloc(1 << 20)
    p.touch(a, 1 << 20)
    zones = {pages.node.zone_of(pfn).name for g, o, pfn in pages.log if g == GFP_ANON}
    assert zones == {"HighMem"}  # GFP_HIGHUSER_MOVABLE may use HighMem (no permanent mapping needed)


def test_bad_requests():
    p, _ = _proc()
    assert p.malloc(-1) == 0 and p.malloc(1 << 62) == 0  # ENOMEM, no crash
    assert p.malloc(0) != 0  # a minimum chunk
    with pytest.raises(KmemdesError, match="invalid pointer"):
        p.free(0x1234)
    with pytest.raises(KmemdesError, match="SIGSEGV"):
        p.touch(0x1000, 10)
    p.free(0)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 600_000)), min_size=1, max_size=60))
def test_random_programs_leave_no_pages(ops):
    p, pages = _proc()
    before = pages.free_total()
    live = []
    for op, n in ops:
        if op == 0 or not live:
            a = p.malloc(n)
            assert a
            live.append((a, n))
        elif op == 1:
            a, m = live[n % len(live)]
            p.touch(a, min(m, n))
        elif op == 2:
            a, m = live.pop(n % len(live))
            p.free(a)
        else:
            a, m = live[n % len(live)]
            p.read(a, m)
    assert p.rss_pages == len(p.pte) + 512 * len(p.thp_map)
    p.exit()
    assert pages.free_total() == before + 1
    pages.node.check()
