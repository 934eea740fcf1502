"""Text chunks parsed on a thread pool, taken in file order: the same table,
meta and problems as :meth:`kmemdes.trace.text.TextParser.feed` one chunk at
a time, whatever the number of workers.

Threads, not processes: nearly all of a chunk's parse is Polars queries,
which run without the GIL (a profile of the compile trace: 2.0 of 3.0 s in
``LazyFrame.collect``, most of the rest in other Polars kernels), and a
chunk's rows stay in this process (a process pool would copy them back).
Threads end with the process, so a killed command leaves no worker behind.

The parser learns from the first chunks: the text format and header layout
(the first chunk with lines), each event's field layout (the first rows of
the first chunk where the event appears).  Chunks are parsed here on the
main parser until it has learnt a format, a header layout and at least one
event layout; then each chunk goes to a worker, a :meth:`TextParser.fork`
with the event layouts the main parser knew when the chunk was handed out.
A worker that meets an event its layouts lack learns it from its own chunk,
as the main parser would if no earlier chunk had the event.  Results are
taken in file order (:meth:`TextParser.absorb`, :meth:`TextParser.accept`);
a chunk whose worker learnt an event that an earlier chunk has taught the
main parser meanwhile is parsed again on the main parser, so that every
chunk is parsed with exactly the layouts the one-thread path would use.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable

from kmemdes.trace.text import TextParser

__all__ = ["default_workers", "parse_chunks"]


def default_workers() -> int:
    """Parsing threads: the CPUs this process may run on, or ``KMEMDES_WORKERS``."""
    env = os.environ.get("KMEMDES_WORKERS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _lines_in(chunk: bytes) -> int:
    """Lines of a chunk as :meth:`TextParser.parse_chunk` numbers them (the
    last line may lack its newline)."""
    return chunk.count(b"\n") + (0 if chunk.endswith(b"\n") else 1)


def parse_chunks(parser: TextParser, chunks: Iterable, workers: int | None = None,
                 done: Callable[[int], None] | None = None) -> object:
    """Feed ``chunks`` (bytes, whole lines) to ``parser`` on ``workers``
    threads (default :func:`default_workers`); one worker, or a strict
    parser (which stops at the first problem), parses on this thread.

    An item of ``chunks`` that is not bytes ends the parse: it is returned
    after every chunk before it has been taken (None at the end of input).
    ``done(nbytes)`` is called after each chunk is taken, in file order.
    """
    workers = default_workers() if workers is None else workers
    if workers <= 1 or parser.problems.strict:
        for chunk in chunks:
            if not isinstance(chunk, (bytes, bytearray)):
                return chunk
            parser.feed(chunk)
            if done is not None:
                done(len(chunk))
        return None
    local = threading.local()

    def parse(chunk: bytes, base: int, layouts: dict):
        fork = getattr(local, "fork", None)
        if fork is None:
            fork = local.fork = parser.fork()
        fork._body_layouts = dict(layouts)
        rows = fork.parse_chunk(chunk, base)
        learnt = {k: v for k, v in fork._body_layouts.items() if k not in layouts}
        # the text is kept only for a chunk that may have to be parsed again
        return rows, fork.tallies(), learnt, chunk if learnt else None

    def take(nbytes: int, base: int, nlines: int, future) -> None:
        rows, tallies, learnt, chunk = future.result()
        if any(k in parser._body_layouts for k in learnt):  # an earlier chunk taught it: parse again
            rows = parser.parse_chunk(chunk, base)
        else:
            parser.absorb(tallies, learnt)
        if parser.line_counts["total"] != base + nlines:  # pragma: no cover - a bug, not bad input
            raise RuntimeError(f"parallel parse: line count {parser.line_counts['total']} after the chunk "
                               f"of lines {base + 1}.., expected {base + nlines}")
        parser.accept(rows)
        if done is not None:
            done(nbytes)

    pending: deque = deque()
    base = parser.line_counts["total"]
    end = None
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kmemdes-parse") as pool:
        try:
            for chunk in chunks:
                if not isinstance(chunk, (bytes, bytearray)):
                    end = chunk
                    break
                if not chunk:
                    continue
                if not (parser.fmt and parser._layout_tried and parser._body_layouts):
                    parser.feed(chunk)  # still learning: on this thread (nothing is pending yet)
                    if done is not None:
                        done(len(chunk))
                    base = parser.line_counts["total"]
                    continue
                nlines = _lines_in(chunk)
                pending.append((len(chunk), base, nlines, pool.submit(parse, chunk, base, dict(parser._body_layouts))))
                base += nlines
                chunk = None
                while len(pending) >= workers:  # (one more in flight costs a chunk's memory, not time)
                    take(*pending.popleft())
            while pending:
                take(*pending.popleft())
        finally:
            for *_, f in pending:
                f.cancel()
    return end
