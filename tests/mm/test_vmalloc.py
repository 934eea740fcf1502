"""vmalloc model: rules from KERNEL.md section 11, checked against real vmallocinfo snapshots and traces."""

from __future__ import annotations

import re

import pytest

from kmemdes.mm import gfp as G
from kmemdes.mm.kernel import Kernel
from kmemdes.mm.layout import AddressError
from kmemdes.mm.vmalloc import (
    THREAD_SIZE,
    VM_ALLOC,
    VmapAreaAllocator,
    VmStruct,
    format_vmallocinfo_line,
    kmalloc_gfp_adjust,
    lazy_max_pages,
)
from tests._tracescan import scan

PAGE = 4096
_VMALLOC_LINE = re.compile(r"0x([0-9a-f]+)-0x([0-9a-f]+) +(\d+) (\S+) pages=(\d+) vmalloc( vpages)?( N0=(\d+))?$")


def _vmallocinfo_files(shipped, corpus=None):
    files = sorted(shipped.glob("*/*/vmallocinfo"))
    if corpus is not None:
        files += sorted(corpus.glob("*/*/vmallocinfo"))
    return files


def test_guard_page_and_vpages_rules_on_real_vmallocinfo(shipped):
    """Every real vmalloc area: size = (pages + 1) * 4096 (one guard page), ' vpages' exactly when
    pages[] (8 bytes a page) is larger than a page, N0 = pages; the model prints the same line."""
    n = 0
    for f in _vmallocinfo_files(shipped):
        for line in f.read_text().splitlines():
            m = _VMALLOC_LINE.match(line)
            if not m:
                continue
            n += 1
            size, pages = int(m[3]), int(m[5])
            assert size == (pages + 1) * PAGE, line
            assert bool(m[6]) == (pages * 8 > PAGE), line
            # the model's line for an area of that many pages, with the real (hashed) addresses
            start = int(m[1], 16)
            vm = VmStruct(start, size, VM_ALLOC, m[4], pages * PAGE, list(range(pages)),
                          pages_addr=1 if pages * 8 > PAGE else 2)
            model = format_vmallocinfo_line(vm, lambda a: a == 1, numa=True)
            assert model.split(" ", 1)[1].lstrip() == line.split(" ", 1)[1].lstrip(), (model, line)
    assert n > 200


def test_model_vmalloc_matches_real_rules():
    k = Kernel("x86_64", "2G", cpus=2)
    for pages in (1, 4, 511, 512, 513, 1000):
        v = k.vmalloc(pages * PAGE - 100)
        vm = k.vmalloc_model.vms[v]
        assert vm.size == (pages + 1) * PAGE and vm.nr_pages == pages
        assert k.layout.is_vmalloc_addr(vm.pages_addr) == (pages * 8 > PAGE)
        line = [x for x in k.vmalloc_model.vmallocinfo().splitlines() if x.startswith(f"0x{v:016x}")][0]
        m = _VMALLOC_LINE.match(line)
        assert m and int(m[5]) == pages and bool(m[6]) == (pages * 8 > PAGE)


def test_lazy_max_pages_equals_traced_nr_lazy_max(shipped):
    """KERNEL.md: fls(ncpus) * 8192 = 16384 with 2 CPUs, the nr_lazy_max of every real event."""
    assert [lazy_max_pages(n) for n in (1, 2, 3, 4, 8)] == [8192, 16384, 16384, 24576, 32768]
    for name in ("a_idle_stream", "b_compile_head"):
        d = shipped / name
        cpus = int((d / "before" / "nproc").read_text())
        seen = {int(m[1]) for m in scan(d / "trace.txt.zst", rb"nr_lazy_max=(\d+)")}
        assert seen == {lazy_max_pages(cpus)}


def test_real_alloc_vmap_area_events_follow_the_rules(shipped):
    """Stacks: size=20480 (16 KiB + guard) align=16384 and an aligned va_start; every size page-rounded.
    The model's stack-like vmalloc gives the same size, alignment and bounds."""
    events = [(int(m[1]), int(m[2]), int(m[3]), int(m[4], 16), int(m[5], 16))
              for m in scan(shipped / "b_compile_head/trace.txt.zst",
                            rb"alloc_vmap_area: va_start: (\d+) size=(\d+) align=(\d+) vstart=0x([0-9a-f]+) vend=0x([0-9a-f]+)")]
    assert events
    k = Kernel("x86_64", "2G", cpus=2, trace=True)
    for va, size, align, vstart, vend in events:
        assert size % PAGE == 0 and va % align == 0 and vstart <= va and va + size <= vend
        assert (vstart, vend) == (k.layout.vmalloc_start, k.layout.vmalloc_end)
    stack = k.vmalloc_model.vmalloc(THREAD_SIZE, G.GFP_KERNEL, THREAD_SIZE, caller="kernel_clone")
    ev = [f for e, f in k.events if e == "alloc_vmap_area"][-1]
    assert (ev["size"], ev["align"], ev["failed"]) == (20480, 16384, 0) and stack % 16384 == 0
    assert (ev["vstart"], ev["vend"]) == (0xFFFFC90000000000, 0xFFFFE8FFFFFFFFFF)


def test_event_sequence_of_a_stack_vmalloc_and_vfree():
    """Real trace order (b_compile, README behaviour 4): kmalloc vm_struct 72/96 (GFP_KERNEL|__GFP_ZERO),
    alloc_vmap_area, kmalloc pages[] 32/32; vfree: free_vmap_area_noflush (+5 pages), the pages freed
    order 0, kfree pages[], kfree vm_struct."""
    k = Kernel("x86_64", "2G", cpus=2, trace=True)
    k.events.clear()
    v = k.vmalloc_model.vmalloc(THREAD_SIZE, G.GFP_KERNEL, THREAD_SIZE, caller="kernel_clone")
    assert not any(e == "mm_page_alloc" and f["gfp"] & G.__GFP_HIGHMEM for e, f in k.events)  # bulk: untraced
    ev = [(e, f) for e, f in k.events if e in ("kmalloc", "alloc_vmap_area")]
    assert ev[0][0] == "kmalloc" and (ev[0][1]["bytes_req"], ev[0][1]["bytes_alloc"]) == (72, 96)
    assert G.format_gfp(ev[0][1]["gfp"]) == "GFP_KERNEL|__GFP_ZERO"
    assert ev[1][0] == "alloc_vmap_area"
    assert ev[2][0] == "kmalloc" and (ev[2][1]["bytes_req"], ev[2][1]["bytes_alloc"]) == (32, 32)
    pfns = k.vmalloc_pfns(v)
    k.events.clear()
    k.vfree(v)
    names = [e for e, _ in k.events if e != "mm_page_alloc"]
    assert names[0] == "free_vmap_area_noflush" and k.events[0][1]["nr_lazy"] == 5
    assert names[1:5] == ["mm_page_free"] * 4 and names[5:7] == ["kfree", "kfree"]
    assert [f["pfn"] for e, f in k.events if e == "mm_page_free"] == pfns


def test_lowest_first_fit_merge_and_lazy_purge():
    v = VmapAreaAllocator(0x100000, 0x200000, nr_cpus=1)  # 256 pages, lazy_max 8192
    a = v.alloc(0x3000)
    b = v.alloc(0x2000)
    c = v.alloc(0x4000, 0x4000)
    assert (a, b, c) == (0x100000, 0x103000, 0x108000)  # c skips the hole 0x105000-0x108000 (alignment)
    assert v.alloc(0x3000) == 0x105000  # lowest first fit takes the hole
    v.free_noflush(b)
    assert v.alloc(0x2000) != b  # lazily freed: not reusable before a purge
    assert v.nr_lazy == 2 and b in v.lazy
    start, end, n = v.purge()
    assert (start, end, n) == (b, b + 0x2000, 1) and v.stat["tlb_flush"] == 1
    assert v.alloc(0x2000) == b  # after the purge the lowest hole is back
    for s in list(v.busy):
        v.free_noflush(s)
    v.purge()
    assert v.nr_free_ranges == 1 and v.free_bytes == 0x100000  # everything merged back


def test_failure_forces_purge_and_retry():
    v = VmapAreaAllocator(0x100000, 0x110000, nr_cpus=1)  # 16 pages
    a = v.alloc(0x8000)
    b = v.alloc(0x8000)
    assert v.alloc(0x1000) == -1 and v.stat["alloc_fail"] == 1
    v.free_noflush(a)
    assert v.alloc(0x8000) == a and v.stat["purge_on_failure"] == 1 and v.stat["purge"] == 1
    assert b > 0


def test_nr_lazy_threshold_triggers_purge():
    v = VmapAreaAllocator(0xFFFFC90000000000, 0xFFFFE8FFFFFFFFFF, nr_cpus=2)
    stacks = [v.alloc(20480, 16384) for _ in range(3300)]
    printed = [v.free_noflush(s) for s in stacks]
    assert printed[:3] == [5, 10, 15]
    k = next(i for i, p in enumerate(printed) if p > 16384)
    assert k == 3276 and printed[k] == 16385 and v.stat["purge"] == 1  # the 3277th stack crosses 16384
    assert printed[k + 1] == 5 and v.last_purge[2] == k + 1


@pytest.mark.corpus
def test_nr_lazy_sequence_of_d_net_loopback(corpus):
    """d_net_loopback: 3,459 vfree'd stacks.  The model's nr_lazy after each free equals the traced value
    up to the kernel's (asynchronous) purge, except where two CPUs' events print out of order."""
    evs = [(m[1], m[2]) for m in scan(corpus / "d_net_loopback/trace.txt.zst",
                                      rb"(free_vmap_area_noflush|purge_vmap_area_lazy): [^\n]*?(?:nr_lazy=(\d+)|num_purged)")]
    frees = []
    for kind, n in evs:
        if kind == b"purge_vmap_area_lazy":
            break
        frees.append(int(n))
    assert len(frees) > 1400
    v = VmapAreaAllocator(0xFFFFC90000000000, 0xFFFFE8FFFFFFFFFF, nr_cpus=2)
    v.nr_lazy = frees[0] - 5
    v.lazy_max_pages = 1 << 40  # the kernel purges later, from a worker: compare before that
    model = [v.free_noflush(v.alloc(20480, 16384)) for _ in frees]
    same = sum(a == b for a, b in zip(model, frees))
    assert same >= 0.99 * len(frees) and model[-1] == frees[-1]
    assert max(frees) > lazy_max_pages(2)  # the real purge ran after crossing fls(2) * 8192


def test_backing_pages_highmem_and_page_tables():
    k = Kernel("x86_32", "2G", cpus=1)
    v = k.vmalloc(1 << 20)
    pfns = k.vmalloc_pfns(v)
    zones = {k.zone_name(p) for p in pfns}
    assert zones == {"HighMem"}  # vmalloc adds __GFP_HIGHMEM
    with pytest.raises(AddressError, match="highmem"):
        k.layout.pfn_to_virt(pfns[0])
    with pytest.raises(AddressError, match="vmalloc_to_page"):
        k.layout.virt_to_phys(v)
    assert k.vmalloc_to_pfn(v + 5 * PAGE + 123) == pfns[5]
    assert k.vmalloc_to_pfn(v + 256 * PAGE) == -1  # the guard page is not mapped
    # non-PAE: one PTE page per 4 MiB block of VA the 256 mapped pages touch (+ the pages[] area's)
    spans = {b for vm in k.vmalloc_model.vms.values() for b in range(vm.addr >> 22, ((vm.addr + vm.nr_pages * PAGE - 1) >> 22) + 1)}
    assert k.vmalloc_model.stat["pgtable_pages"] == len(spans) == len(k.vmalloc_model.pte_pages)
    small = Kernel("x86_32", "160M", cpus=1)
    assert {small.zone_name(p) for p in small.vmalloc_pfns(small.vmalloc(100000))} == {"Normal"}


def test_page_tables_per_2mib_never_freed():
    k = Kernel("x86_64", "1G", cpus=2)
    v = k.vmalloc(4 << 20)  # 1024 pages at the start of the range, then its 2-page pages[] area after it
    vms = list(k.vmalloc_model.vms.values())
    assert [vm.nr_pages for vm in vms] == [1024, 2] and vms[1].addr == v + (1025 << 12)
    blocks = {b for vm in vms for b in range(vm.addr >> 21, ((vm.addr + (vm.nr_pages << 12) - 1) >> 21) + 1)}
    assert len(blocks) == 3  # 2 MiB blocks 0, 1 (main area) and 2 (pages[] area)
    assert k.vmalloc_model.stat["pgtable_pages"] == 3 + 1  # + one PMD page for the first GiB
    k.vfree(v)
    k.vmalloc_model.va.purge()
    assert len(k.vmalloc_model.pte_pages) == 3 and len(k.vmalloc_model.pmd_pages) == 1  # never freed
    k.vmalloc(4 << 20)  # same VA range again: the tables exist
    assert k.vmalloc_model.stat["pgtable_pages"] == 4


def test_bad_sizes_are_null_with_counted_warnings():
    k = Kernel("x86_32", "2G", cpus=1)
    assert k.vmalloc(0) == 0
    assert k.vmalloc(-5) == 0
    assert k.vmalloc(3 << 30) == 0  # more than RAM
    assert k.vmalloc(200 << 20) == 0  # fits in RAM, not in the ~120 MiB vmalloc range
    w = k.all_warnings()
    assert sum(w.values()) == 4, w
    assert any("exceeds total pages" in x for x in w) and any("address range" in x for x in w)
    k.vfree(0)
    k.vfree(0xF9000000)  # not a vmalloc area: a counted WARN, no crash
    assert k.all_warnings()["vfree: trying to vfree() nonexistent vm area"] == 1
    assert k.vmalloc(100 << 20) != 0  # a large area that fits the range still works


def test_kmalloc_gfp_adjust_rules():
    assert kmalloc_gfp_adjust(G.GFP_KERNEL | G.__GFP_NOFAIL, 8192) & G.__GFP_NOFAIL == 0
    adj = kmalloc_gfp_adjust(G.GFP_KERNEL | G.__GFP_RETRY_MAYFAIL, 8192)
    assert adj & G.__GFP_DIRECT_RECLAIM and adj & G.__GFP_NOWARN
    assert kmalloc_gfp_adjust(G.GFP_KERNEL, 4096) == G.GFP_KERNEL


def _fragment(k: Kernel) -> list[int]:
    """Take every free page, then give back every other one: free memory is all order 0."""
    held = []
    for gfp in (G.GFP_KERNEL | G.__GFP_NORETRY, G.GFP_ATOMIC | G.__GFP_MEMALLOC):  # then the reserves too
        while True:
            pfn = k.node.alloc_pages(gfp | G.__GFP_NOWARN, 0)
            if pfn < 0:
                break
            held.append(pfn)
    held.sort()
    for pfn in held[::2]:
        k.node.free_pages(pfn, 0)
    return held[1::2]


def test_kvmalloc_fallback_policy():
    k = Kernel("x86_32", "160M", cpus=1, trace=True)
    a, how = k.vmalloc_model.kvmalloc(64 << 10)
    assert how == "kmalloc" and k.layout.is_lowmem_addr(a)  # unfragmented: kmalloc (order 4) works
    tried = [f for e, f in k.events if e == "mm_page_alloc" and f["order"] == 4][-1]
    assert tried["gfp"] & G.__GFP_NOWARN and not tried["gfp"] & G.__GFP_DIRECT_RECLAIM  # 6.16+ adjust
    k.kvfree(a)
    _fragment(k)
    a, how = k.vmalloc_model.kvmalloc(64 << 10)
    assert how == "vmalloc" and k.layout.is_vmalloc_addr(a)  # no order-4 block left: vmalloc fallback
    k.kvfree(a)
    assert k.vmalloc_model.vms == {}
    a, how = k.vmalloc_model.kvmalloc(64 << 10, G.GFP_ATOMIC)
    assert (a, how) == (0, "failed")  # non-blocking: no vmalloc fallback (6.12-era)
    a, how = k.vmalloc_model.kvmalloc(4096)
    assert how == "kmalloc" and a  # one page: order 0, still available
    assert k.vmalloc_model.kvmalloc(3 << 31)[1] == "failed"  # > INT_MAX


def test_vmallocinfo_view_lists_busy_then_unpurged():
    k = Kernel("x86_64", "1G", cpus=2)
    a = k.vmalloc(10000, caller="test_a+0x1/0x2")
    b = k.vmalloc(5 * PAGE, caller="test_b+0x1/0x2")
    k.vfree(a)
    text = k.vmalloc_model.vmallocinfo().splitlines()
    assert text[0] == f"0x{b:016x}-0x{b + 6 * PAGE:016x}   24576 test_b+0x1/0x2 pages=5 vmalloc N0=5"
    assert text[1] == f"0x{a:016x}-0x{a + 4 * PAGE:016x}   16384 unpurged vm_area"
