"""Command-line entry point: parses arguments, calls the library, prints.

Thin on purpose: every command is a few lines that call into ``kmemdes.mm``,
``kmemdes.trace``, ``kmemdes.sim``, ``kmemdes.report`` or ``kmemdes.sweep``.
User errors (:class:`kmemdes.errors.KmemdesError`) are printed as one line on
stderr with exit status 2; ``--debug`` (anywhere on the command line) shows
the traceback instead.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import click

from kmemdes import __version__
from kmemdes.errors import KmemdesError

__all__ = ["app", "main"]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "--version", "-V", prog_name="kmemdes", message="%(prog)s %(version)s")
def app() -> None:
    """Discrete-event simulator of Linux kernel memory allocation (buddy, SLUB, vmalloc).

    Add --debug anywhere to see a traceback on errors.
    """


# ---------------------------------------------------------------------------
# Each command below is a thin wrapper; keep one function per command and put
# the work in the library.  Commands are grouped by the module that owns them.
# ---------------------------------------------------------------------------


# --- mm/slub.py -------------------------------------------------------------
@app.command("slab", context_settings={"ignore_unknown_options": True})
@click.option("--cpus", "cpus", metavar="N", default=None,
              help="CPU count the slab order depends on (default: the nproc file next to --slabinfo).")
@click.option("--slabinfo", "slabinfo_file", metavar="FILE", default=None,
              help="A real /proc/slabinfo: reprint it with the model's objperslab/pagesperslab.")
@click.option("--kmalloc", "kmalloc_sizes", is_flag=True,
              help="Followed by sizes: the cache and bytes_alloc of kmalloc(size) for each.")
@click.option("--gfp", default="GFP_KERNEL", show_default=True, help="GFP mask for --kmalloc (family).")
@click.argument("sizes", nargs=-1, metavar="[SIZE]...")
def slab_cmd(cpus: Optional[str], slabinfo_file: Optional[str], kmalloc_sizes: bool, gfp: str,
             sizes: tuple[str, ...]) -> None:
    """SLUB slab geometry (calculate_order) and kmalloc size classes of Linux 6.18.

    \b
    --slabinfo FILE: every cache line of FILE in /proc/slabinfo's layout, objperslab and
    pagesperslab computed by the model from objsize and --cpus; object and slab counts are
    the file's.  Caches whose real geometry differs are listed on stderr.
    --kmalloc SIZE...: for each size, the cache kmalloc() uses and the bytes_alloc a kmalloc
    trace event reports (sizes above 8 KiB go to the page allocator).
    Neither: the kmalloc caches' geometry for --cpus.

    \b
    Example:

    \b
      kmemdes slab --cpus 2 --kmalloc 100 4000 9000
      kmemdes slab --slabinfo traces/a_idle_stream/before/slabinfo
    """
    from kmemdes.mm import gfp as gfp_mod
    from kmemdes.mm import slub

    if sizes and not kmalloc_sizes:
        raise KmemdesError(f"unexpected argument {sizes[0]!r} (sizes follow --kmalloc)")
    if kmalloc_sizes and not sizes:
        raise KmemdesError("--kmalloc: give at least one size, e.g. --kmalloc 100 4000 9000")
    if cpus is None and slabinfo_file is not None and (Path(slabinfo_file).parent / "nproc").is_file():
        cpus = (Path(slabinfo_file).parent / "nproc").read_text().strip()
    ncpus = None
    if cpus is not None:
        try:
            ncpus = int(cpus)
        except ValueError:
            raise KmemdesError(f"--cpus: {cpus!r} is not a whole number") from None
        if ncpus < 1:
            raise KmemdesError(f"--cpus: must be at least 1, got {ncpus}")
    try:
        gfp_mask = gfp_mod.parse_gfp(gfp)
    except ValueError as e:
        raise KmemdesError(f"--gfp: {e}") from None
    if kmalloc_sizes:
        values = [slub.parse_kmalloc_size(s) for s in sizes]
        click.echo(slub.KMALLOC_CLASS_HEADER)
        for v in values:
            click.echo(slub.kmalloc_class(v, gfp_mask).format())
    if slabinfo_file is not None or not kmalloc_sizes:
        if ncpus is None:
            raise KmemdesError("--cpus: required (the slab order depends on the CPU count)")
        if slabinfo_file is None:
            click.echo(slub.format_slabinfo(slub.kmalloc_geometry(ncpus, slub.kmalloc_type(gfp_mask))), nl=False)
            return
        rows = slub.parse_slabinfo(Path(slabinfo_file))
        model = slub.model_slabinfo(rows, ncpus)
        click.echo(slub.format_slabinfo(model), nl=False)
        diff = [r.name for r, m in zip(rows, model) if (r.objperslab, r.pagesperslab) != (m.objperslab, m.pagesperslab)]
        if diff:
            click.echo(f"kmemdes: model geometry differs from {slabinfo_file} for {len(diff)} of {len(rows)} "
                       f"caches: {', '.join(diff)}", err=True)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the CLI; return the exit status (used by the console script)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args = [a for a in args if a != "--debug"]
    try:
        rv = app(args=args, prog_name="kmemdes", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.NoArgsIsHelpError as e:
        e.show()
        return 0
    except click.exceptions.ClickException as e:
        e.show()
        return e.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("kmemdes: interrupted", file=sys.stderr)
        return 130
    except KmemdesError as e:
        if debug:
            raise
        print(f"kmemdes: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except Exception as e:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if debug:
            raise
        print(
            f"kmemdes: internal error: {type(e).__name__}: {e} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
