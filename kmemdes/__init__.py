"""kmemdes: a discrete-event simulator of Linux kernel memory allocation.

Models of the buddy page allocator, SLUB and vmalloc (``kmemdes.mm``), trace
ingestion (``kmemdes.trace``), simulated time (``kmemdes.sim``) and reports
(``kmemdes.report``).  See README.md for the command-line tour.
"""

__version__ = "0.1.0"

from kmemdes.errors import KmemdesError

__all__ = ["KmemdesError", "__version__"]
