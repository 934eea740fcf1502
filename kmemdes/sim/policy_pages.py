"""Policy-mode page requests: the trace's requests placed by the models, the kernel's own decisions re-made.

In policy mode (DESIGN.md "Replay modes") the trace keeps what the *workload*
asked for and gave back: each ``mm_page_alloc`` (order, GFP, CPU) and the frees
that end them.  Everything the kernel decided by itself is left to the models:
placement, pcp refills and drains, fallbacks, watermarks, kswapd and direct
reclaim, compaction.  So:

- a free the kernel made while reclaiming (kswapd, a direct-reclaim window) or
  compacting (kcompactd, a compaction run) is not the workload's: the model keeps
  the page (reclaim is the model's to decide; a page the kernel reclaimed stays
  on the model's page-cache LRU), and a page the kernel's compaction migrated keeps
  its model page, whose trace identity moves to the migration target (learnt when
  the workload frees a target the trace never showed allocated);
- a page the model's reclaim frees (``reclaim_page``) or its compaction moves
  (``migrate_page``) is followed in the trace-pfn map;
- an outcome may differ: a request the kernel served but the model fails falls back
  as the kernel's callers do (a THP fault retries without ``__GFP_THISNODE``, then
  takes base pages; a page-cache large folio falls back to order-0 folios, as
  readahead does, and so do the rest of its readahead window's folios, which the
  model does not try at their order); a request the kernel failed but the model
  served is freed at once (the trace goes on as after a failure);
- pages that were in use before the trace have their own pfn as trace identity
  (the start state is the kernel's exact layout): their frees free them;
- pages the trace shows on per-CPU lists at its start (the first event on them
  allocates them from a pcp list, or drains them) start on the model's pcp lists:
  kpageflags shows them as neither buddy nor in use, and they are the kernel's
  reserve of free pages (before/zoneinfo's pcp counts: 18,711 Normal pages on
  k_pressure_defrag's, 4,323 on j_pressure_stock's), so counting them in use
  would start the model short of free memory.

Movable allocations become page cache (on the reclaim LRU) when they are not
zeroed (anonymous and THP faults are ``__GFP_ZERO``), and are otherwise registered
in ``node.rmap`` so compaction can migrate them.  Page-cache hits have no
allocation event: a capture with ``mm_lru_activate`` hands the kernel's activations
to the model's copies (:meth:`PolicyPages.activate`); one without infers the hits of
files read again from the readahead misses (:meth:`PolicyPages.enable_reread`,
:mod:`kmemdes.sim.reread`).
"""

from __future__ import annotations

from collections import deque

import polars as pl

from kmemdes.mm import gfp as G
from kmemdes.mm.page_alloc import NO_ORDER, NR_PAGE_ORDERS, PAGE_FREE, PAGE_RESERVED, Node
from kmemdes.sim.reread import RereadHits
from kmemdes.trace.pressure import BY_COMPACTION, BY_RECLAIM

__all__ = ["PolicyPages", "adopt_folios", "is_thp_fault", "is_readahead", "is_readahead_folio", "readahead_expr", "LRU_INACTIVE", "LRU_REFERENCED", "LRU_ACTIVE", "LRU_MAPPED",
           "NOT_TRIED", "RA_WINDOW_GAP_NS"]

#: the page-cache state :meth:`PolicyPages.adopt` takes per page (0: not page cache): LRU_INACTIVE,
#: plus the snapshot's KPF_REFERENCED / KPF_ACTIVE / KPF_MMAP
LRU_INACTIVE, LRU_REFERENCED, LRU_ACTIVE, LRU_MAPPED = 1, 2, 4, 8

_MOVABLE = G.__GFP_MOVABLE
_ZERO = G.__GFP_ZERO
_THISNODE = G.__GFP_THISNODE
_NORETRY = G.__GFP_NORETRY
_NOMEMALLOC = G.__GFP_NOMEMALLOC
_COMP = G.__GFP_COMP
_IN_USE = bytes(0 if b in (PAGE_FREE, PAGE_RESERVED) else 1 for b in range(256))  # page_mt -> in use
_THP_BITS = _COMP | _NOMEMALLOC | _MOVABLE
_MAX_FOLIO_ORDER = 18  # the largest block alloc_order can hold: a 1 GiB hugetlb page (x86_64 PUD order)
#: :meth:`PolicyPages.alloc`'s answer for a request the model did not make at its order (the rest of a
#: readahead window after a failed folio, served as base pages; a THP fault's retry where the model's
#: first attempt served the fault)
NOT_TRIED = -2
#: the folios of one readahead window follow each other within this gap (``page_cache_ra_order``
#: allocates them back to back, then starts the reads): between one task's order-9 readahead requests on
#: k_pressure_defrag, 1,912 gaps are 1-100 us, 5 are 100-316 us and 504 are 0.3-30 ms (the next window)
RA_WINDOW_GAP_NS = 200_000
_RA_BITS = _MOVABLE | _NORETRY | _COMP  # readahead_gfp_mask's __GFP_NORETRY, filemap_alloc_folio's __GFP_COMP


def is_thp_fault(gfp: int, order: int) -> bool:
    """A THP fault's allocation (``GFP_TRANSHUGE[_LIGHT]``: compound, movable, ``__GFP_NOMEMALLOC``)."""
    return order >= 9 and gfp & _THP_BITS == _THP_BITS


def is_readahead(gfp: int, order: int) -> bool:
    """A readahead folio of any order (``readahead_gfp_mask``: movable, ``__GFP_NORETRY``, compound; not
    zeroed, not a THP fault)."""
    return gfp & _RA_BITS == _RA_BITS and not gfp & _ZERO and not is_thp_fault(gfp, order)


def readahead_expr(gfp: str = "gfp", order: str = "order") -> pl.Expr:
    """:func:`is_readahead` over an event table's columns.

    >>> df = pl.DataFrame({"gfp": [G.GFP_HIGHUSER_MOVABLE | _NORETRY | _COMP, G.GFP_TRANSHUGE], "order": [0, 9]})
    >>> df.select(readahead_expr())["gfp"].to_list()
    [True, False]
    """
    g, o = pl.col(gfp), pl.col(order)
    thp = (o >= 9) & ((g & _THP_BITS) == _THP_BITS)
    return ((g & _RA_BITS) == _RA_BITS) & ((g & _ZERO) == 0) & ~thp


def is_readahead_folio(gfp: int, order: int) -> bool:
    """A readahead large folio (:func:`is_readahead`, order above 0)."""
    return order > 0 and is_readahead(gfp, order)


def adopt_folios(node: Node, pfns, orders, file, owner, busy: bytes | bytearray | None = None) -> list[tuple[int, int, bool]]:
    """Movable folios in use at a snapshot's start (identity: their own pfn) handed to ``owner``:
    page cache (``file``: its LRU state as the snapshot shows it, ``LRU_*`` of
    :func:`kmemdes.sim.kpageflags.movable_folios`) goes on the reclaim model's lists (active pages on
    the active list; mapped ones kept while page tables reference them), the others become
    migratable (``node.rmap``).  A folio not wholly in use in the model (``busy``, from ``page_mt``
    by default: free on a per-CPU list when the snapshot was read) is left out.  Returns the
    adopted ``(pfn, order, is_page_cache)``."""
    reclaim = node.reclaim
    ao = node.alloc_order
    if busy is None:
        busy = node.page_mt.translate(_IN_USE)
    done = []
    for pfn, order, f in zip(pfns, orders, file):
        if busy.count(1, pfn, pfn + (1 << order)) != 1 << order:
            continue
        ao[pfn] = order
        cache = bool(f) and reclaim is not None
        if cache:
            f = int(f)
            reclaim.add_file_pages((pfn,), order, owner=owner, referenced=bool(f & LRU_REFERENCED),
                                   active=bool(f & LRU_ACTIVE), mapped=bool(f & LRU_MAPPED))
        else:
            node.rmap[pfn] = owner
        done.append((pfn, order, cache))
    return done


class PolicyPages:
    """The trace's page requests through the models (see the module docstring)."""

    def __init__(self, node: Node, quirk):
        self.node = node
        self.quirk = quirk
        self.t2m: dict[int, tuple] = {}  # trace pfn -> (model pfn, order), or (-1, [base pfns]) after a fallback or split
        self.m2t: dict[int, int] = {}  # model pfn -> trace pfn; -1: kept after the kernel reclaimed or moved it
        self.migrating = [deque() for _ in range(NR_PAGE_ORDERS)]  # model pages the kernel's compaction moved
        self.migrating_pfns: set[int] = set()  # the same pfns, for membership
        self.reclaimed_t: set[int] = set()  # trace pfns whose model page the model's reclaim freed
        self.thp_fault: dict[int, bool] = {}  # pid -> the model served its open THP fault
        self.ra_window: dict[int, int] = {}  # pid -> when its readahead window, failed in the model, last asked
        self.counts = {"thp_fault_alloc": 0, "thp_fault_fallback": 0, "fallback_pages": 0}
        self.attempts = [0] * NR_PAGE_ORDERS
        self.failures = [0] * NR_PAGE_ORDERS
        self.exact_start = False  # the start state is the kernel's layout (kpageflags): pfns are identities
        self.start_busy = bytearray()
        self.reread: RereadHits | None = None  # page-cache hits inferred for files read again
        self.ra_left: dict[int, int] = {}  # pid -> its readahead requests still to come (reread)

    def enable_reread(self, readers: dict[int, tuple[str, int]]) -> None:
        """Infer the page-cache hits of files read again (:mod:`kmemdes.sim.reread`) for a trace without
        ``mm_lru_activate`` events; ``readers``: pid -> (command, readahead requests the kernel served)
        of the tasks making readahead requests."""
        self.reread = RereadHits({pid: c for pid, (c, _) in readers.items()}, self.node.reclaim)
        self.ra_left = {pid: n for pid, (_, n) in readers.items()}
        self.alloc = self._alloc_reread  # the instance's alloc: one more step after each request

    def _alloc_reread(self, tpfn: int, order: int, gfp: int, cpu: int, pid: int, ts: int = 0) -> int:
        """:meth:`alloc`, then a readahead request the kernel served is a miss of a (maybe re-read) file."""
        pfn = PolicyPages.alloc(self, tpfn, order, gfp, cpu, pid, ts)
        if tpfn >= 0 and is_readahead(gfp, order):
            left = self.ra_left.get(pid, 1) - 1
            self.ra_left[pid] = left
            ent = self.t2m.get(tpfn)
            if ent is not None:
                self.reread.read(pid, order, [ent[0]] if ent[0] >= 0 else ent[1], last=left == 0)
        return pfn

    # ----------------------------------------------------------- ownership
    def adopt(self, node, pfns, orders, file) -> None:
        """Pages in use before the trace (identity: their own pfn), handed to the models
        (:func:`adopt_folios`).  ``node`` is this pool's node (the signature of
        :meth:`kmemdes.sim.workloads.PageOwner.adopt`)."""
        self.exact_start = True
        # pages in use at the start: a trace free may name them once (model decisions clear them)
        self.start_busy = busy = bytearray(node.page_mt.translate(_IN_USE))
        adopt_folios(node, pfns, orders, file, self, busy)

    def _own(self, pfn: int, order: int, gfp: int) -> None:
        if not gfp & _MOVABLE or self.node.alloc_order[pfn] != order:
            return
        reclaim = self.node.reclaim
        if reclaim is not None and reclaim.is_page_cache(pfn):
            self.quirk("model_page_cache_state_reused")  # defensive: a stale LRU mark
            reclaim.remove_file_pages((pfn,), free=False)
        if not gfp & _ZERO and reclaim is not None and not is_thp_fault(gfp, order):
            reclaim.add_file_pages((pfn,), order, owner=self)
        else:
            self.node.rmap[pfn] = self

    def _release(self, pfn: int, order: int, cpu: int) -> None:
        """Free a model page (out of the page cache or the rmap first)."""
        node = self.node
        self.m2t.pop(pfn, None)
        order = node.alloc_order[pfn]  # the model's block (the kernel's may have been split otherwise)
        page_mt = node.page_mt
        if (order == NO_ORDER or (page_mt[pfn] >= PAGE_RESERVED if order == 0 else (
                page_mt.count(PAGE_FREE, pfn, pfn + (1 << order))
                or page_mt.count(PAGE_RESERVED, pfn, pfn + (1 << order))))):
            # free already, isolated by the model's compaction, or no block the model placed
            self.quirk("free_of_page_not_held_by_model")
            return
        reclaim = node.reclaim
        if reclaim is not None and reclaim.is_page_cache(pfn):
            reclaim.remove_file_pages((pfn,), free=False)
            if self.reread is not None:
                self.reread.dropped(pfn)
        else:
            node.rmap.pop(pfn, None)
        node.free_pages(pfn, order, cpu)

    def migrate_page(self, old: int, new: int, order: int) -> None:
        """The model's compaction moved a page: its trace identity follows."""
        if self.reread is not None:
            self.reread.moved(old, new)
        t = self.m2t.pop(old, None)
        if t is None:  # a page from before the trace: its identity is its pfn
            t = old
            self.t2m.setdefault(old, (old, order))
            if self.exact_start:
                self.start_busy[old:old + (1 << order)] = bytes(1 << order)
        self.m2t[new] = t
        ent = self.t2m.get(t) if t >= 0 else None
        if ent is not None:
            if ent[0] == old:
                self.t2m[t] = (new, order)
            elif ent[0] < 0 and old in ent[1]:  # one of the base pages of a fallback
                ent[1][ent[1].index(old)] = new
        if t == -1 and old in self.migrating_pfns:
            for q in (self.migrating[order], *self.migrating):
                try:
                    q.remove(old)
                except ValueError:
                    continue
                q.append(new)
                self.migrating_pfns.discard(old)
                self.migrating_pfns.add(new)
                break

    def split_folio(self, pfn: int, order: int) -> bool:
        """The model's compaction split a large folio it found no target for: its base pages keep
        the folio's trace identity, as a fallback's base pages do (the trace's free of the folio
        frees them all).  Refused (False) for a folio the kernel's own compaction moved (its identity
        is still to be learnt from the trace)."""
        if pfn in self.migrating_pfns:
            return False
        n = 1 << order
        t = self.m2t.pop(pfn, None)
        if t is None:  # a page from before the trace: its identity is its pfn
            t = pfn
            if self.exact_start:
                self.start_busy[pfn:pfn + n] = bytes(n)
        pages = list(range(pfn, pfn + n))
        if self.reread is not None:
            self.reread.split(pfn, pages)
        for p in pages:
            self.m2t[p] = t
        if t >= 0:
            self.t2m[t] = (-1, pages)
        return True

    def reclaim_page(self, pfn: int, order: int) -> None:
        """The model's reclaim freed a page-cache page: a later free of it in the trace is void."""
        if self.reread is not None:
            self.reread.evicted(pfn)
        t = self.m2t.pop(pfn, None)
        if t is None:
            t = pfn  # a page from before the trace
            if self.exact_start:
                self.start_busy[pfn:pfn + (1 << order)] = bytes(1 << order)
        if t >= 0:
            ent = self.t2m.get(t)
            if ent is not None and ent[0] < 0:  # one of the base pages of a fallback
                if pfn in ent[1]:
                    ent[1].remove(pfn)
                if ent[1]:
                    return
            self.t2m.pop(t, None)
            self.reclaimed_t.add(t)
        elif t == -1 and pfn in self.migrating_pfns:
            self.migrating_pfns.discard(pfn)
            for q in self.migrating:
                try:
                    q.remove(pfn)
                    break
                except ValueError:
                    pass

    # -------------------------------------------------------------- events
    def alloc(self, tpfn: int, order: int, gfp: int, cpu: int, pid: int, ts: int = 0) -> int:
        """``mm_page_alloc`` of the trace (``tpfn`` < 0: the kernel failed it) at ``ts``; returns the
        model's pfn, -1 when the model failed it, :data:`NOT_TRIED` when the model did not ask at this order
        (or at all: the kernel's retry of a THP fault the model's first attempt served).

        Readahead stops at the first folio it cannot allocate (``page_cache_ra_order``: ``if (err)
        break``) and reads the rest of the window as order-0 folios (``do_page_cache_ra``): after the
        model failed a readahead folio the kernel served, the task's next folios of that window
        (:data:`RA_WINDOW_GAP_NS`) become base pages without an attempt at their order, as the
        kernel's own failures are followed in its traces by 1-4 k order-0 requests."""
        node = self.node
        thp = is_thp_fault(gfp, order)
        readahead = is_readahead_folio(gfp, order)
        if readahead and tpfn >= 0:
            last = self.ra_window.get(pid)
            if last is not None:
                if ts - last <= RA_WINDOW_GAP_NS:
                    self.ra_window[pid] = ts
                    self._fallback(tpfn, order, gfp, cpu)
                    return NOT_TRIED
                del self.ra_window[pid]
        retry = thp and not gfp & _THISNODE and pid in self.thp_fault
        if retry and self.thp_fault[pid]:
            # the kernel retried without __GFP_THISNODE because its first attempt failed; the model's did not
            self.end_thp_fault(pid)
            self.quirk("thp_retry_not_needed_in_model")
            return NOT_TRIED  # no request of the model's: neither an attempt nor a failure
        pfn = node.alloc_pages(gfp, order, cpu)
        self.attempts[order] += 1
        if pfn < 0:
            self.failures[order] += 1
        if thp:
            if not retry:
                self.end_thp_fault(pid)  # a new fault
            self.thp_fault[pid] = pfn >= 0
        if pfn >= 0:
            if tpfn < 0:
                node.free_pages(pfn, order, cpu)  # the kernel failed it: the trace goes on without it
            else:
                self._map(tpfn, pfn, order, gfp)
            return pfn
        if tpfn >= 0 and gfp & _MOVABLE and order > 0:
            if thp and gfp & _THISNODE:  # alloc_pages_mpol: retry without __GFP_THISNODE / __GFP_NORETRY
                pfn = node.alloc_pages(gfp & ~(_THISNODE | _NORETRY), order, cpu)
                self.attempts[order] += 1  # an mm_page_alloc of its own in the kernel
                if pfn < 0:
                    self.failures[order] += 1
                if pfn >= 0:
                    self.thp_fault[pid] = True
                    self._map(tpfn, pfn, order, gfp)
                    return pfn
            if readahead:
                self.ra_window[pid] = ts  # the rest of this readahead window: base pages
            self._fallback(tpfn, order, gfp, cpu)
        return -1

    def end_thp_fault(self, pid: int) -> None:
        ok = self.thp_fault.pop(pid, None)
        if ok is not None:
            self.counts["thp_fault_alloc" if ok else "thp_fault_fallback"] += 1

    def finish(self) -> None:
        for pid in list(self.thp_fault):
            self.end_thp_fault(pid)

    def _fallback(self, tpfn: int, order: int, gfp: int, cpu: int) -> None:
        """The kernel's caller falls back to base pages: a THP fault maps 4 KiB pages, readahead
        allocates order-0 folios (``page_cache_ra_order`` -> ``do_page_cache_ra``).

        Readahead keeps its mask: ``readahead_gfp_mask`` is the mapping's mask with
        ``__GFP_NORETRY | __GFP_NOWARN`` and ``filemap_alloc_folio`` adds ``__GFP_COMP``, so
        the order-0 folios are tried once (one direct reclaim round, no retry loop) and
        readahead stops at the first that fails (the traces show these order-0 requests with
        the same flags).  A THP fault's base pages are plain anonymous faults."""
        node = self.node
        thp = is_thp_fault(gfp, order)
        if thp:
            base = gfp & ~(_COMP | _THISNODE | _NORETRY | _NOMEMALLOC)
        else:
            base = gfp & ~_THISNODE
        own_gfp = base | (_ZERO if thp else 0)  # a THP fault's base pages are anonymous
        pages = []
        # mapped before the loop: a base page's own direct reclaim may reclaim the earlier ones
        # (reclaim_page then takes them out of this list)
        self.t2m[tpfn] = (-1, pages)
        for _ in range(1 << order):
            p = node.alloc_pages(base, 0, cpu)
            if p < 0:
                break
            pages.append(p)
            self.m2t[p] = tpfn
            self._own(p, 0, own_gfp)
        self.counts["fallback_pages"] += len(pages)
        self.t2m[tpfn] = (-1, pages)
        self.reclaimed_t.discard(tpfn)
        self.quirk("fallback_to_base_pages_in_model", 1 << order)

    def _map(self, tpfn: int, pfn: int, order: int, gfp: int) -> None:
        old = self.t2m.get(tpfn)
        if old is not None:  # the kernel freed it without an event: the model frees it now
            self._drop(old, 0)
            self.quirk("alloc_of_mapped_pfn")
        self.t2m[tpfn] = (pfn, order)
        self.m2t[pfn] = tpfn
        self.reclaimed_t.discard(tpfn)
        self._own(pfn, order, gfp)

    def _drop(self, ent: tuple, cpu: int) -> None:
        pfn, order = ent
        if pfn >= 0:
            self._release(pfn, order, cpu)
        else:
            for p in order:
                self._release(p, 0, cpu)

    def free(self, tpfn: int, order: int, cpu: int, decided: int) -> int:
        """A trace free; ``decided``: :data:`~kmemdes.trace.pressure.BY_RECLAIM` /
        ``BY_COMPACTION`` when the kernel made it while reclaiming or compacting.  Returns 1 if the
        model applied the workload's free, else 0 (counted under a rule)."""
        ent = self.t2m.pop(tpfn, None)
        if decided == BY_RECLAIM or decided == BY_COMPACTION:
            self._kernel_free(tpfn, ent, order, decided)
            return 0
        if ent is not None:
            self._drop(ent, cpu)
            return 1
        if tpfn in self.reclaimed_t:
            self.reclaimed_t.discard(tpfn)
            self.quirk("free_of_page_reclaimed_by_model", 1 << order)
            return 0
        if self._pretrace(tpfn, order):
            self._release(tpfn, order, cpu)
            self.quirk("free_of_page_from_before_trace", 1 << order)
            return 0
        q = self.migrating[order]
        if q:  # a target of the kernel's compaction: the model page of its source
            p = q.popleft()
            self.migrating_pfns.discard(p)
            self._release(p, order, cpu)
            self.quirk("free_of_page_moved_by_kernel_compaction", 1 << order)
            return 0
        self.quirk("free_of_untraced_page", 1 << order)
        return 0

    def activate(self, tpfn: int) -> int:
        """The kernel's ``mm_lru_activate`` of the folio at trace pfn ``tpfn``: the workload touched it
        again (a page-cache hit, which has no allocation event), so the model's copy of it goes to the
        active list as ``folio_mark_accessed`` would put it (:meth:`~kmemdes.mm.reclaim.Reclaim.folio_activate`).
        The model's copy is the page the trace's allocation got in the model (or the base pages it fell
        back to), or for a page in use since the start its own pfn while no model decision has touched
        it.  Returns 1 when applied (also when the model's copy is already active), else 0, counted under
        ``lru_activate_not_in_model`` (pages: the kernel's folio, as far as the model knows its order)."""
        reclaim = self.node.reclaim
        ent = self.t2m.get(tpfn)
        if ent is not None:
            pfn, order = ent
            pages = [pfn] if pfn >= 0 else list(order)
        elif (self.exact_start and tpfn not in self.m2t and 0 <= tpfn < len(self.start_busy)
              and self.start_busy[tpfn]):
            pages = [tpfn]
        else:
            pages = []
        done = False
        if reclaim is not None:
            for p in pages:
                if reclaim.is_page_cache(p):
                    reclaim.folio_activate(p)
                    done = True
        if done:
            return 1
        order = self.node.alloc_order[pages[0]] if pages else NO_ORDER
        self.quirk("lru_activate_not_in_model", 1 << order if order != NO_ORDER else 1)
        return 0

    def _pretrace(self, tpfn: int, order: int) -> bool:
        """``tpfn`` names a block in use since the start that no model decision has touched: it is
        still the kernel's own page at its own pfn (claimed once; its order set).

        Not when the block is part of a bigger one the model holds (a tail of a folio adopted at
        the start, of a hugetlb page, of a block claimed before) or holds one of its own inside:
        the kernel's pages there are not the model's block (its frees name pieces of a folio it
        split, or that kpageflags, read after the trace started, showed whole), and claiming
        the piece would make two model blocks of the same pages (the piece freed, reclaimed or
        migrated while its folio is still in use: a double free).  Such a free is counted as one
        the model does not hold (``compaction_free``, ``reclaim_free``,
        ``free_of_untraced_page``), as a free naming the folio's head at another order already is."""
        node = self.node
        n = 1 << order
        if (not self.exact_start or tpfn < 0 or tpfn + n > node.max_pfn or tpfn in self.m2t
                or self.start_busy.count(1, tpfn, tpfn + n) != n):
            return False
        alloc_order = node.alloc_order
        ao = alloc_order[tpfn]
        if ao not in (NO_ORDER, order) or node.page_mt.count(PAGE_FREE, tpfn, tpfn + n) or \
                node.page_mt.count(PAGE_RESERVED, tpfn, tpfn + n):
            return False
        if n > 1 and alloc_order.count(NO_ORDER, tpfn + 1, tpfn + n) != n - 1:
            return False  # a block the model holds starts inside
        for o in range(1, _MAX_FOLIO_ORDER + 1):
            head = tpfn & -(1 << o)
            if head != tpfn and alloc_order[head] != NO_ORDER and head + (1 << alloc_order[head]) > tpfn:
                return False  # inside a block the model holds at another head
        self.start_busy[tpfn:tpfn + n] = bytes(n)
        alloc_order[tpfn] = order
        return True

    def _kernel_free(self, tpfn: int, ent, order: int, decided: int) -> None:
        """A free the kernel's reclaim or compaction made: the model keeps its page."""
        pretrace = False
        if ent is None and self._pretrace(tpfn, order):
            ent = (tpfn, order)
            pretrace = True
        elif ent is None and decided == BY_RECLAIM and self.migrating[order]:
            ent = (self.migrating[order].popleft(), order)
            self.migrating_pfns.discard(ent[0])
        if ent is None:
            # compaction releasing isolated free pages, or a page the model never had
            self.quirk("compaction_free" if decided == BY_COMPACTION else "reclaim_free", 1 << order)
            return
        pfn, o = ent
        pages = [(pfn, o)] if pfn >= 0 else [(p, 0) for p in o]
        node = self.node
        reclaim = node.reclaim
        for p, _ in pages:
            po = node.alloc_order[p]
            if node.page_mt[p] >= PAGE_RESERVED or po == NO_ORDER:  # not a block the model holds
                continue
            self.m2t[p] = -1
            if decided == BY_COMPACTION:
                self.migrating[po].append(p)
                self.migrating_pfns.add(p)
            elif reclaim is not None and not reclaim.is_page_cache(p):
                # page cache from before the trace that the kernel's reclaim took: it was at the
                # kernel's inactive tail, so it is the oldest on the model's lists too
                node.rmap.pop(p, None)
                reclaim.add_file_pages((p,), po, owner=self, oldest=pretrace)
        self.quirk("redecided_by_policy")
