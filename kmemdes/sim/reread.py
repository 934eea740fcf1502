"""Page-cache hits of a file read again, for captures that do not trace them (no ``mm_lru_activate``).

A read that finds its folio in the page cache allocates nothing, so a trace of
``kmem`` events shows only the misses.  The hits matter under pressure: each one
is ``folio_mark_accessed`` (mm/swap.c), which sets PG_referenced on a folio's
first access and moves a referenced inactive folio to the active list on the
next, and reclaim scans only the inactive list (``shrink_lruvec`` targets each
list's size >> priority; direct reclaim at DEF_PRIORITY takes that whole
target).  On j_pressure_stock the workload streams one 2 GiB file three times:
the kernel read 2.67 GB from disk (``pgpgin``) of the 6 GiB read, the second
pass hit the ~1.7 GB still cached and activated it (``pgactivate`` 507,047
pages), and its direct reclaim in that cycle found an inactive list of ~90 k
pages and took 22-56 pages a stall (``mm_vmscan_lru_isolate``'s
``nr_requested``), where a model without the hits kept all 550 k pages
inactive and took 2,048 (four order-9 folios) a stall.  On k_pressure_defrag the
file did not stay cached (every pass re-read it from disk, 6.2 GB ``pgpgin``,
``pgactivate`` 34,110): there a second pass finds nothing to hit.

The inference (:class:`RereadHits`): a task whose command (``comm``) has read
before re-reads the file the previous reader of that command read, from its
start and in order (``cat``, ``cp``, a scan: readahead streams files
sequentially).  The previous reader's folios form the file, in the order they
were read; each readahead request of the new reader is a miss that covers as
many pages of it; after a miss, the folios that follow it and are still cached
in the model are hit at once (``folio_mark_accessed``), up to the next one that
is not (which the kernel must read, and the trace's next request of the task
covers).  After the reader's last request in the trace the kernel found the rest of the file
cached (it read on to the end without a miss): the rest that the model holds cached is hit then,
when the reader's misses covered enough of the file to be a re-read of it (:data:`LAST_MIN_SHARE`).
The file as the new reader leaves it (its misses, the folios it hit,
then what it did not reach) is what the next reader of the command re-reads.
Whether a folio is still cached is the model's own answer (its reclaim decided),
so a pass that the model's reclaim let run ahead of it finds nothing, as k's do.
The folios are followed as the model's pages (its reclaim evicts them, its
compaction moves and splits them, a workload free drops them), not by the
trace's pfns: the kernel's reclaim frees a pfn the model may still hold cached.
Every folio a reader reads is marked accessed once (PG_referenced: the read's
own ``folio_mark_accessed``).  A miss that covers a folio the model's reclaim
evicted is a refault (``workingset_refault``: the shadow entry holds the
eviction's ``nonresident_age``), and a recent one starts on the active list; the
kernel's reclaim then deactivates (``prepare_scan_control``), which on j turned
the active list over between the second pass and the third (``pgdeactivate``
340,224, ``workingset_activate_file`` 52,210).

Not covered: a re-read that finds the whole file cached (it makes no request: nothing in the
trace shows it), a reader that reads another file under the same command name (its
first miss then hits whatever of the earlier file follows it cached), random reads, and
hits by tasks of other commands; a capture with ``mm_lru_activate`` events
(``kmemdes capture``'s default events) has the kernel's own activations and does
not use this.

>>> from kmemdes.mm.mm_init import build_node, parse_size
>>> from kmemdes.mm.gfp import GFP_HIGHUSER_MOVABLE
>>> from kmemdes.mm.reclaim import Reclaim
>>> node = build_node("x86_64", parse_size("256M"), cpus=1)
>>> rec = Reclaim(node)
>>> def folio():                                          # a 2 MiB page-cache folio
...     p = node.alloc_pages(GFP_HIGHUSER_MOVABLE, 9)
...     rec.add_file_pages([p], 9, owner=None)
...     return [p]
>>> r = RereadHits({10: "cat", 11: "cat"}, rec)
>>> [r.read(10, 9, folio()) for _ in range(3)]            # the first reader: misses only
[0, 0, 0]
>>> r.read(11, 9, folio()), r.hit_pages                   # the next one misses the first folio, hits the rest
(1024, 1024)
>>> rec.vmstat["pgactivate"]                              # read twice: activated
1024
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["RereadHits", "PageCache", "LAST_MIN_SHARE", "REREAD_NOTE"]

#: how the replay's note on the inferred hits begins (``kmemdes validate --predict`` prints it)
REREAD_NOTE = "page-cache hits of files read again inferred"

#: a reader's last request hits the rest of the file only if its misses covered at least 1/64 of it: a
#: task of the same command reading a small file of its own (j's and k's last ``cat`` reads the
#: workload's log, 63 pages, after three passes over a 524,288-page file) is not a re-read
LAST_MIN_SHARE = 64


class PageCache(Protocol):
    """What :class:`RereadHits` asks of the page cache (:class:`kmemdes.mm.reclaim.Reclaim`), by model pfn."""

    nonresident_age: int  # mm/workingset.c's clock: pages evicted or activated so far

    def is_page_cache(self, pfn: int) -> bool: ...
    def folio_nr_pages(self, pfn: int) -> int: ...
    def mark_page_accessed(self, pfn: int) -> None: ...
    def workingset_refault(self, pfn: int, eviction: int) -> bool: ...


class _File:
    """One command's file as its last reader left it, and the reader now going through it."""

    __slots__ = ("pid", "old", "i", "off", "new", "done", "read")

    def __init__(self, pid: int):
        self.pid = pid  # the current reader
        self.old: list[tuple[int, int]] = []  # (read id, pages) in file order, as the last reader left it
        self.i = 0  # the current reader's position in ``old``: entry, pages of it covered
        self.off = 0
        self.new: list[tuple[int, int]] = []  # the file as the current reader leaves it
        self.done: set[int] = set()  # earlier readers (their late requests are plain reads)
        self.read = 0  # pages the current reader missed


class RereadHits:
    """Hits of re-read files inferred from the readahead misses (see the module docstring).

    ``readers``: pid -> command of the tasks that make readahead requests (the caller says which request
    is a task's last); ``cache``: the model's
    page cache (:class:`PageCache`).  The owner of the model's pages reports what happens to them
    (:meth:`evicted`, :meth:`dropped`, :meth:`moved`, :meth:`split`).
    """

    def __init__(self, readers: dict[int, str], cache: PageCache):
        self.readers = readers
        self.cache = cache
        self.files: dict[str, _File] = {}
        self.where: dict[int, list[int]] = {}  # read id -> the model pages holding that folio
        self.rid: dict[int, int] = {}  # model pfn -> read id
        self.shadow: dict[int, int] = {}  # read id -> nonresident_age when the model's reclaim evicted it
        self._ids = 0
        self.hit_pages = 0
        self.refault_pages = 0
        self.rereads = 0  # readers that found an earlier reader's file

    # ------------------------------------------------- the model's pages
    def _unlink(self, pfn: int):
        rid = self.rid.pop(pfn, None)
        if rid is not None:
            pages = self.where.get(rid)
            if pages is not None:
                pages.remove(pfn)
                if not pages:
                    del self.where[rid]
        return rid

    def evicted(self, pfn: int) -> None:
        """The model's reclaim evicted the page at ``pfn``: its shadow entry (``workingset_eviction``)."""
        rid = self._unlink(pfn)
        if rid is not None:
            self.shadow[rid] = self.cache.nonresident_age

    def dropped(self, pfn: int) -> None:
        """The page at ``pfn`` left the page cache otherwise (the workload freed it): no shadow."""
        self._unlink(pfn)

    def moved(self, old: int, new: int) -> None:
        """Compaction migrated the page at ``old`` to ``new``."""
        rid = self.rid.pop(old, None)
        if rid is not None:
            self.rid[new] = rid
            pages = self.where[rid]
            pages[pages.index(old)] = new

    def split(self, pfn: int, pages: list[int]) -> None:
        """The folio at ``pfn`` became the base pages ``pages``."""
        rid = self.rid.pop(pfn, None)
        if rid is not None:
            held = self.where[rid]
            held.remove(pfn)
            held.extend(pages)
            for p in pages:
                self.rid[p] = rid

    def _cached(self, rid: int) -> bool:
        return any(self.cache.is_page_cache(p) for p in self.where.get(rid, ()))

    def _accessed(self, rid: int) -> int:
        """``folio_mark_accessed`` on the model's pages of read ``rid``; the pages cached."""
        cache = self.cache
        n = 0
        for p in self.where.get(rid, ()):
            if cache.is_page_cache(p):
                cache.mark_page_accessed(p)
                n += cache.folio_nr_pages(p)
        return n

    # ------------------------------------------------------------ reads
    def read(self, pid: int, order: int, pages: list[int], last: bool = False) -> int:
        """A readahead request of ``pid`` the kernel served (at ``order``), held by the model's
        ``pages``: a miss; returns the pages hit after it.  ``last``: the task's last readahead
        request in the trace; the kernel's reader went on to the end of the file without another
        miss, so it found the rest cached, and the rest the model holds cached is hit now."""
        comm = self.readers.get(pid)
        if comm is None:
            return 0
        n = 1 << order
        f = self.files.get(comm)
        if f is None:
            f = self.files[comm] = _File(pid)
        elif f.pid != pid:
            if pid in f.done:  # an earlier reader still reading: its folio is read once
                self._read_once(pages)
                return 0
            # a new reader: the file as the last one left it (what it read, then what it did not reach)
            f.old = f.new + f.old[f.i:]
            f.new, f.i, f.off, f.read = [], 0, 0, 0
            f.done.add(f.pid)
            f.pid = pid
            if f.old:
                self.rereads += 1
        old = f.old
        shadow = self.shadow
        left = n  # the miss covers n pages of the file
        eviction = None  # the latest eviction among the folios it reads again (a refault)
        while left and f.i < len(old):
            rid, m = old[f.i]
            if f.off == 0 and rid in shadow:
                e = shadow.pop(rid)
                eviction = e if eviction is None else max(eviction, e)
            take = min(left, m - f.off)
            left -= take
            f.off += take
            if f.off >= m:
                f.i += 1
                f.off = 0
        f.new.append((self._read_once(pages), n))
        if eviction is not None:
            self.refault_pages += n
            for p in pages:
                self.cache.workingset_refault(p, eviction)
        # then what is still cached, up to the next miss (the rest of a folio the miss began in
        # included: the kernel read that range, the model still holds it whole)
        hit = 0
        while f.i < len(old):
            ent = old[f.i]
            if not self._cached(ent[0]):
                break
            hit += self._accessed(ent[0])
            if not f.off:
                f.new.append(ent)
            f.i += 1
            f.off = 0
        f.read += n
        if last and f.read * LAST_MIN_SHARE >= sum(m for _, m in old):
            for ent in old[f.i:]:
                if self._cached(ent[0]):
                    hit += self._accessed(ent[0])
            f.new.extend(old[f.i + (1 if f.off else 0):])
            f.i, f.off = len(old), 0
        self.hit_pages += hit
        return hit

    def _read_once(self, pages: list[int]) -> int:
        """A folio read from disk into the page cache (the model's ``pages``): a new read id; the
        read's own ``folio_mark_accessed`` (PG_referenced)."""
        self._ids += 1
        rid = self._ids
        held = []
        for p in pages:
            if self.cache.is_page_cache(p):
                old = self.rid.get(p)
                if old is not None:
                    self._unlink(p)
                self.rid[p] = rid
                held.append(p)
                self.cache.mark_page_accessed(p)
        if held:
            self.where[rid] = held
        return rid
