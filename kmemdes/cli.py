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
