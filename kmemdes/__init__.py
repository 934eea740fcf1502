"""kmemdes: a discrete-event simulator of Linux kernel memory allocation.

Models of the buddy page allocator, SLUB and vmalloc (``kmemdes.mm``), trace
ingestion (``kmemdes.trace``), simulated time (``kmemdes.sim``) and reports
(``kmemdes.report``).  See README.md for the command-line tour.
"""

import os as _os

__version__ = "0.1.0"

# Polars allocates through its own jemalloc, which by default keeps freed pages for 10 s; parsing a
# big trace frees hundreds of MB of chunk buffers within a second or two.  Return them after 0.5 s
# (from jemalloc's background thread), and keep one arena per CPU rather than one per thread (the
# parsing threads then reuse each other's freed pages: a text replay peaks ~50 MB lower), unless the
# user configured it.  Read when Polars loads, so it takes effect when kmemdes is imported first
# (the CLI, the benchmarks).
_os.environ.setdefault("_RJEM_MALLOC_CONF",
                       "background_thread:true,percpu_arena:percpu,dirty_decay_ms:500,muzzy_decay_ms:0")

from kmemdes.errors import KmemdesError  # noqa: E402

__all__ = ["KmemdesError", "__version__"]
