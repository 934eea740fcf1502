"""Output paths: what a command may write where, written atomically, leftovers of killed commands removed.

Every command that writes (``run``, ``replay``, ``convert``, ``report``, ``compare``, ``sweep``,
``demo``, ``validate``, ``capture``) follows the same rules:

- an existing file is never replaced unless the user passes ``--force``; a folder named as an
  output file is refused;
- an existing run directory is replaced only with ``--force``, and only when it is a kmemdes run
  directory (it holds ``summary.json`` and ``config.toml``); an empty folder may be used;
- the folder an output goes into must exist: only the last component is created (``-o a/b/c``
  with no ``a/b`` is an error, not three new folders);
- outputs are written under a temporary name ``.NAME.tmp-PID`` next to the target and renamed
  into place when complete; a later command writing next to it removes the temporary names whose
  process is dead (a killed run leaves one behind);
- an ``OSError`` (``/proc/x``, a read-only folder) is a one-line error naming the path.

>>> import tempfile
>>> d = Path(tempfile.mkdtemp())
>>> atomic_write(d / "a.txt", lambda f: f.write(b"x"))
>>> try:
...     check_file_output(d / "a.txt")
... except KmemdesError as e:
...     print(str(e).replace(str(d), "D"))
D/a.txt: exists (use --force to replace it)
>>> check_file_output(d / "a.txt", force=True).name
'a.txt'
>>> try:
...     check_file_output(d / "no" / "such" / "b.txt")
... except KmemdesError as e:
...     print(str(e).replace(str(d), "D"))
D/no/such/b.txt: folder D/no/such does not exist
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from kmemdes.errors import KmemdesError

__all__ = ["RUN_DIR_FILES", "is_run_dir", "check_file_output", "check_run_dir_output",
           "check_folder_output", "atomic_write",
           "tmp_name", "clean_stale", "pid_alive", "scratch_dir"]

RUN_DIR_FILES = ("summary.json", "config.toml")


def is_run_dir(path: str | Path) -> bool:
    """A kmemdes run directory: a folder with ``summary.json`` and ``config.toml``."""
    p = Path(path)
    return p.is_dir() and all((p / f).is_file() for f in RUN_DIR_FILES)


def scratch_dir(prefix: str) -> tempfile.TemporaryDirectory:
    """A private temporary directory ``<tmp>/<prefix><pid>_<random>`` for a command's intermediate run
    directory.  The ones a dead process left with the same prefix (a command killed by SIGKILL, whose
    ``finally`` never ran) are removed first, so a killed command leaves nothing the next one does
    not clean."""
    for d in Path(tempfile.gettempdir()).glob(f"{prefix}*_*"):
        pid = d.name[len(prefix):].split("_", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
    return tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}_")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (signal 0)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def tmp_name(path: Path, pid: int | None = None) -> Path:
    """The temporary name of an output while it is written: ``.NAME.tmp-PID`` next to it."""
    return path.with_name(f".{path.name}.tmp-{os.getpid() if pid is None else pid}")


def clean_stale(path: Path) -> list[Path]:
    """Remove ``.NAME.tmp-PID`` and ``.NAME.old-PID`` next to ``path`` whose process is dead
    (left by a killed command); return what was removed.  Our own pid's are leftovers too."""
    parent = path.parent
    pat = re.compile(rf"^\.{re.escape(path.name)}\.(?:tmp|old)-(\d+)$")
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for e in entries:
        m = pat.match(e.name)
        if not m:
            continue
        pid = int(m.group(1))
        if pid != os.getpid() and pid_alive(pid):
            continue
        try:
            if e.is_dir() and not e.is_symlink():
                shutil.rmtree(e)
            else:
                e.unlink()
            removed.append(e)
        except OSError:
            pass
    return removed


def _check_parent(path: Path, make_parents: bool) -> None:
    parent = path.parent
    if not parent.exists():
        if not make_parents:
            raise KmemdesError(f"{path}: folder {parent} does not exist")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise KmemdesError(f"{parent}: cannot create folder ({e.strerror})") from None
    elif not parent.is_dir():
        raise KmemdesError(f"{path}: {parent} is not a folder")
    # a probe: permissions, a read-only file system and /proc answer only to a real attempt
    probe = parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except FileExistsError:
        pass  # our own leftover: clean_stale removes it before writing
    except OSError as e:
        raise KmemdesError(f"{path}: cannot write in {parent} ({e.strerror or e})") from None


def check_file_output(path: str | Path, force: bool = False, make_parents: bool = False) -> Path:
    """An output file may be written at ``path`` (see the module docstring); raise :class:`KmemdesError` if not.
    ``make_parents``: create missing folders (only for the commands' default locations)."""
    p = Path(path)
    if p.is_dir():
        raise KmemdesError(f"{p}: is a directory (give a file name)")
    if (p.exists() or p.is_symlink()) and not force:
        raise KmemdesError(f"{p}: exists (use --force to replace it)")
    _check_parent(p, make_parents)
    return p


def _check_folder(p: Path, ours: bool, what: str, no: str, force: bool, make_parents: bool) -> Path:
    """An output folder at ``p``: absent, empty, or (with ``force``) ``ours`` (else ``no`` says why not)."""
    if p.exists() or p.is_symlink():
        if not p.is_dir() or p.is_symlink():
            raise KmemdesError(f"{p}: exists and is not a folder (a {what} is created there; give a new name)")
        try:
            empty = not any(p.iterdir())
        except OSError as e:
            raise KmemdesError(f"{p}: cannot read ({e.strerror})") from None
        if not empty:
            if not ours:
                raise KmemdesError(f"{p}: exists and is not a kmemdes {what} ({no}): not replaced, even with --force")
            if not force:
                raise KmemdesError(f"{p}: {what} exists (use --force to replace it)")
    _check_parent(p, make_parents)
    return p


def check_run_dir_output(path: str | Path, force: bool = False, make_parents: bool = False) -> Path:
    """A run directory may be written at ``path``: it does not exist, is an empty folder, or (with
    ``force``) is a kmemdes run directory.  Raise :class:`KmemdesError` otherwise."""
    p = Path(path)
    return _check_folder(p, is_run_dir(p), "run directory", "no summary.json and config.toml", force, make_parents)


def check_folder_output(path: str | Path, marker: str, force: bool = False, make_parents: bool = False) -> Path:
    """A folder of run directories (``kmemdes lab --replicas``) may be written at ``path``: it does not
    exist, is empty, or (with ``force``) is one such folder, recognised by its ``marker`` file.
    Raise :class:`KmemdesError` otherwise."""
    p = Path(path)
    return _check_folder(p, (p / marker).is_file(), "folder of runs", f"no {marker}", force, make_parents)


def atomic_write(path: str | Path, write: Callable) -> None:
    """Write through ``write(binary_file)`` to ``.NAME.tmp-PID``, then rename to ``path``.
    An ``OSError`` becomes a one-line :class:`KmemdesError` naming ``path``."""
    path = Path(path)
    clean_stale(path)
    tmp = tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise KmemdesError(f"{path}: cannot write ({e.strerror or e})") from None
        raise
