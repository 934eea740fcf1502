"""Mirror replay of the kernel's own compaction, from what its tracepoints report.

Compaction moves pages without allocation events (traces/README.md §8): the free
scanners take free blocks off the buddy lists (``isolate_freepages_block``,
``fast_isolate_freepages``), ``migrate_pages`` copies each isolated folio into a
target carved from them (``compaction_alloc``) and frees the source, and
``release_free_list`` gives the unused isolated blocks back with ``__free_pages``.
The sources' and the leftovers' frees are ``mm_page_free`` events; the isolation
and the targets are not.  This module applies them to a mirrored node:

- ``mm_compaction_isolate_freepages range=(a ~ b) nr_taken=k``: the scan ran over
  exactly ``[a, b)`` and took every free buddy block it met, in pfn order, until
  ``k`` pages; the model takes its buddy blocks there the same way;
- ``mm_compaction_fast_isolate_freepages range=(min ~ free_pfn) nr_taken=2^o``: one
  block of order ``o`` from the MOVABLE free list, searched from the tail for the
  first pfn at or above ``low_pfn`` (the upper quarter between the scanners), else
  the highest candidate at or above ``min``; the list is rotated so the search
  starts after it next time (``move_freelist_head``);
- ``mm_compaction_migratepages nr_migrated=m``: ``m`` pages of targets are carved
  from the isolated blocks as ``compaction_alloc`` does (6.10+: the smallest
  sufficient order, first in its list, split with the upper halves kept), one per
  source folio in migration order (the sources' frees just before, on the same CPU,
  within the migrate scanner's range, give their orders);
- the leftovers stay allocated in the model until their ``mm_page_free`` events.

Isolated pages are held allocated (MOVABLE, ``alloc_order`` = their block's
order), so the later frees of targets and leftovers apply as ordinary frees.
Pages the kernel isolated that the model does not hold free are counted
(``compaction_isolate_not_free_in_model``), never invented.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from kmemdes.mm.compaction import split_isolated_freepage
from kmemdes.mm.page_alloc import (
    MIGRATE_MOVABLE,
    MIGRATE_TYPES,
    NOLIST,
    NR_PAGE_ORDERS,
    PAGE_FREE,
    PAGEBLOCK_NR_PAGES,
    Node,
)
from kmemdes.trace.pressure import OP_BEGIN, OP_END, OP_FAST_FREE, OP_ISO_FREE, OP_ISO_MIGRATE, OP_MIGRATE

__all__ = ["TracedCompaction"]

_MOVABLE = bytes((MIGRATE_MOVABLE,))


class _Run:
    """One compaction run of one task (``struct compact_control`` as its events show it)."""

    __slots__ = ("freepages", "migrate_pfn", "mig_lo", "mig_hi")

    def __init__(self, migrate_pfn: int = 0):
        self.freepages = [deque() for _ in range(NR_PAGE_ORDERS)]
        self.migrate_pfn = migrate_pfn
        self.mig_lo = self.mig_hi = 0


_STRIDES = (1, 2, 4, 8, 16, 32)  # isolate_freepages: COMPACT_CLUSTER_MAX (32) for async, 1 after a hit


class TracedCompaction:
    """The compaction runs of a trace, applied to a mirrored :class:`Node`, keyed by task pid."""

    def __init__(self, node: Node, next_event=None):
        self.node = node
        self.next_event = next_event  # (pfns, pos) -> per pfn the next page event: 1 a free, 0 another, -1 none
        self.pos = 0  # the loop position of the op being applied (for next_event)
        self.runs: dict[int, _Run] = {}
        self.isolated = 0  # free pages the free scanners took
        self.targets = 0  # pages carved as migration targets
        self.not_free = 0  # pages the kernel isolated that the model did not hold free

    def _run(self, pid: int) -> _Run:
        r = self.runs.get(pid)
        if r is None:
            r = self.runs[pid] = _Run()
        return r

    def apply(self, op: int, a: int, b: int, n1: int, n2: int, pid: int, sources=()) -> int:
        """Apply one op of :func:`kmemdes.trace.pressure.kernel_ops`; returns pages isolated (or
        carved) that the model could not find free.  ``sources``: the orders of the folios the
        migration freed, in migration order (for ``OP_MIGRATE``)."""
        if op == OP_ISO_FREE:
            return self._isolate_freepages_block(self._run(pid), a, b, n2, n1)
        if op == OP_FAST_FREE:
            return self._fast_isolate_freepages(self._run(pid), a, b, n2)
        if op == OP_MIGRATE:
            return self._carve_targets(self._run(pid), n1, sources)
        if op == OP_ISO_MIGRATE:
            r = self._run(pid)
            r.migrate_pfn, r.mig_lo, r.mig_hi = b, a, b
        elif op == OP_BEGIN:
            self.runs[pid] = _Run(a)
        elif op == OP_END:
            self.runs.pop(pid, None)
        return 0

    def migrate_range(self, pid: int) -> tuple[int, int]:
        """The pfn range the task's migrate scanner last isolated from (where its sources are)."""
        r = self.runs.get(pid)
        return (r.mig_lo, r.mig_hi) if r is not None else (0, 0)

    # ------------------------------------------------------------ isolation
    def _hold(self, run: _Run, pfn: int, order: int) -> None:
        """An isolated block: off the free lists (done by the caller), held allocated by compaction."""
        node = self.node
        n = 1 << order
        node.page_mt[pfn:pfn + n] = _MOVABLE * n
        node.alloc_order[pfn] = order
        run.freepages[order].append(pfn)
        self.isolated += n

    def _isolate_freepages_block(self, run: _Run, start: int, end: int, nr_taken: int, nr_scanned: int = -1) -> int:
        """``isolate_freepages_block`` over exactly ``[start, end)`` (the traced range).

        The kernel's free scanner looks at every ``stride``-th pfn (``isolate_freepages``: 32 for
        async compaction, back to 1 after a pageblock where it isolated something, doubling again
        after each where it did not) and isolates the free block whose head it lands on, whole.
        The stride is not traced: the one whose scan of the model's range gives the traced
        ``nr_scanned`` and ``nr_taken`` best is used (:meth:`_scan`)."""
        if nr_taken <= 0:
            return 0
        node = self.node
        end = min(end, node.max_pfn)
        best = None
        for stride in (_STRIDES if nr_scanned >= 0 else (1,)):
            heads, scanned = self._scan(start, end, stride)
            taken = sum(1 << o for _, o in heads)
            miss = abs(taken - nr_taken) + (4 * abs(scanned - nr_scanned) if nr_scanned >= 0 else 0)
            if best is None or miss < best[0]:
                best = (miss, heads)
        taken = 0
        for pfn, order in best[1]:
            node.take_block(pfn, order)
            self._hold(run, pfn, order)
            taken += 1 << order
        if taken < nr_taken:
            # the kernel found free blocks the model holds merged into a larger block (or on a
            # per-CPU list): take the model's free pages in the range page by page
            page_mt = node.page_mt
            pfn = start
            while pfn < end and taken < nr_taken:
                if page_mt[pfn] == PAGE_FREE and node.take_block(pfn, 0) >= 0:
                    self._hold(run, pfn, 0)
                    taken += 1
                pfn += 1
        missing = max(0, nr_taken - taken)
        self.not_free += missing
        return missing

    def _scan(self, start: int, end: int, stride: int) -> tuple[list, int]:
        """The free blocks ``isolate_freepages_block`` with ``stride`` would isolate from the model's
        ``[start, end)``, and its ``nr_scanned``.  The scan stops where the trace says it did (``end``:
        the kernel had enough pages, or the pageblock ended), so every free block it meets before is
        taken, even beyond the traced ``nr_taken`` (pages the model holds free there that the kernel
        did not: counted by the caller)."""
        node = self.node
        lid, lbo = node.lid, node.l_buddy_order
        heads = []
        scanned = 0
        pfn = start
        while pfn < end:
            scanned += 1
            li = lid[pfn]
            if li != NOLIST and lbo[li] >= 0:
                order = lbo[li]
                while pfn + (1 << order) > end and order:  # the kernel's block ended inside the range
                    order -= 1
                heads.append((pfn, order))
                n = 1 << order
                scanned += n - 1
                pfn += n - 1
            pfn += stride
        return heads, scanned

    def _fast_isolate_freepages(self, run: _Run, min_pfn: int, free_pfn: int, nr_taken: int) -> int:
        """``fast_isolate_freepages``: one block of order log2(nr_taken) from the MOVABLE free list."""
        if nr_taken <= 0:
            return 0
        node = self.node
        order = nr_taken.bit_length() - 1
        if 1 << order != nr_taken or order >= NR_PAGE_ORDERS:
            self.not_free += nr_taken
            return nr_taken
        zone = node.zone_of(min(free_pfn, node.max_pfn - 1))
        distance = free_pfn - run.migrate_pfn if run.migrate_pfn else 0
        low_pfn = (free_pfn - (distance >> 2)) & ~(PAGEBLOCK_NR_PAGES - 1) if distance > 0 else min_pfn
        lid = zone.lid0 + order * MIGRATE_TYPES + MIGRATE_MOVABLE
        prv = node.prv
        page = high = -1
        pfn = node.ltail[lid]
        while pfn >= 0:  # list_for_each_entry_reverse
            if pfn >= low_pfn:
                page = pfn
                break
            if pfn >= min_pfn and pfn > high:
                high = pfn
            pfn = prv[pfn]
        if page < 0:
            page = high
        nxt_ev = self.next_event
        page_next = nxt_ev((page,), self.pos)[0] if nxt_ev is not None and page >= 0 else None
        if nxt_ev is not None and page_next != 1:
            # the trace tells which block it was: the kernel's isolated block is freed next (a
            # target's or a leftover's free), a block left on the free lists is allocated next
            cands = self._candidates(zone, order, min_pfn, free_pfn, low_pfn)
            if cands:
                nxt = nxt_ev(cands, self.pos)
                hit = np.flatnonzero(nxt == 1)
                if not len(hit) and (page < 0 or page_next == 0):
                    # a target kept to the end has no next event; a block allocated next stayed free
                    hit = np.flatnonzero(nxt == -1)
                if len(hit):
                    page = cands[int(hit[0])]
        if page < 0:
            # no MOVABLE candidate in the model: any free block of that order in the range
            for mt in range(MIGRATE_TYPES):
                for p in zone.free_list(order, mt):
                    if min_pfn <= p < free_pfn:
                        page = p
                        break
                if page >= 0:
                    break
        if page < 0 and nxt_ev is not None:
            # the model holds the kernel's block broken up (a few of its pages in use or isolated
            # elsewhere): take what it holds free of the aligned range the trace points at
            head = self._window(zone, order, min_pfn, free_pfn)
            if head >= 0:
                taken = self._take_range(run, head, head + nr_taken)
                self.not_free += nr_taken - taken
                return nr_taken - taken
        if page < 0:
            self.not_free += nr_taken
            return nr_taken
        # move_freelist_head: it becomes the head (the entries after it come first next time)
        if node.lid[page] == lid:
            while node.ltail[lid] != page:
                t = node.ltail[lid]
                node._list_del(t)
                node._list_add(lid, t)
        node.take_block(page, order)
        self._hold(run, page, order)
        return 0

    def _window(self, zone, order: int, min_pfn: int, free_pfn: int) -> int:
        """The aligned ``2^order`` range between the scanners that the kernel's fast search most likely
        isolated when the model has no free block of that order there: of the ranges where the model
        holds the most pages free, the one whose pages the trace frees next (targets and leftovers
        are freed, pages left on the free lists are allocated next).  -1 if none fits."""
        node = self.node
        n = 1 << order
        lo = max((min_pfn + n - 1) & ~(n - 1), zone.start_pfn)
        hi = min(free_pfn, zone.end_pfn, node.max_pfn) & ~(n - 1)
        if hi <= lo:
            return -1
        free = np.frombuffer(node.page_mt, dtype=np.uint8)[lo:hi] == PAGE_FREE
        counts = free.reshape(-1, n).sum(axis=1)
        top = np.flatnonzero(counts)
        if not len(top):
            return -1
        top = top[np.argsort(-counts[top], kind="stable")][:32]
        heads = lo + top * n
        nxt = self.next_event((heads[:, None] + np.arange(n)[None, :]).ravel(), self.pos).reshape(-1, n)
        score = np.where((nxt == 0).any(axis=1), 0, (nxt == 1).sum(axis=1))
        best = int(np.argmax(score))
        return int(heads[best]) if score[best] > 0 else -1

    def _take_range(self, run: _Run, start: int, end: int) -> int:
        """Isolate every free block the model holds in ``[start, end)`` (buddy or per-CPU); pages taken."""
        node = self.node
        lid, lbo, l_order = node.lid, node.l_buddy_order, node.l_order
        page_mt = node.page_mt
        taken = 0
        pfn = start
        while pfn < end:
            li = lid[pfn]
            if li != NOLIST:
                order = lbo[li] if lbo[li] >= 0 else l_order[li]
                if pfn + (1 << order) <= end and node.take_block(pfn, order) >= 0:
                    self._hold(run, pfn, order)
                    taken += 1 << order
                    pfn += 1 << order
                    continue
            if page_mt[pfn] == PAGE_FREE and node.take_block(pfn, 0) >= 0:  # inside a larger block
                self._hold(run, pfn, 0)
                taken += 1
            pfn += 1
        return taken

    def _candidates(self, zone, order: int, min_pfn: int, free_pfn: int, low_pfn: int) -> list[int]:
        """Free blocks of ``order`` between the scanners, in the order the fast search would prefer
        them: the MOVABLE list from its tail at or above ``low_pfn``, then the rest of the range."""
        node = self.node
        movable = [p for p in reversed(zone.free_list(order, MIGRATE_MOVABLE)) if min_pfn <= p < free_pfn]
        out = [p for p in movable if p >= low_pfn] + [p for p in movable if p < low_pfn]
        for mt in range(MIGRATE_TYPES):
            if mt != MIGRATE_MOVABLE and node.lcount[zone.lid0 + order * MIGRATE_TYPES + mt]:
                out.extend(p for p in zone.free_list(order, mt) if min_pfn <= p < free_pfn)
        return out

    # ------------------------------------------------------------ migration
    def _carve_targets(self, run: _Run, nr_migrated: int, sources) -> int:
        """``compaction_alloc`` for each migrated folio: targets carved from the isolated blocks."""
        node = self.node
        freepages = run.freepages
        alloc_order = node.alloc_order
        orders = list(sources)
        left = nr_migrated - sum(1 << o for o in orders)
        orders.extend([0] * max(0, left))
        missing = 0
        done = 0
        for order in orders:
            if done >= nr_migrated:
                break
            for start in range(order, NR_PAGE_ORDERS):
                if freepages[start]:
                    break
            else:
                missing += (1 << order)
                continue
            pfn = split_isolated_freepage(freepages, start, order)
            for o in range(order, start):  # the split-off halves, one at the head of each lower order
                alloc_order[freepages[o][0]] = o
            alloc_order[pfn] = order
            done += 1 << order
            self.targets += 1 << order
        self.not_free += missing
        return missing
