"""What a lab run changes on the kernel, recorded before it changes it, and put back on every exit path.

Knobs are named ``vm.NAME`` (``/proc/sys/vm/NAME``) or ``thp.enabled`` / ``thp.defrag``
(``/sys/kernel/mm/transparent_hugepage/``, whose current value is the bracketed word).
:class:`KernelState` writes a state file ``/run/kmemdes-lab.<pid>.json`` with the original value of
every knob it is about to change (and, as they are made, its private mounts and its tracing
instance) **before** changing anything; :meth:`KernelState.restore` writes the originals back
(``vm.nr_hugepages`` first, releasing the reservation), removes the instance, unmounts, verifies
and deletes the state file.  A run killed with SIGKILL cannot do that: :func:`recover_leftovers`,
called by the next lab run, restores from the state files of runs whose process is gone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from kmemdes.errors import KmemdesError
from kmemdes.trace.capture import _mount, _read, _rmdir_retry, _umount, _write

__all__ = ["KernelState", "recover_leftovers", "knob_path", "read_knob", "kill_tree", "starttime", "STATE_DIR"]


STATE_DIR = Path(os.environ.get("KMEMDES_LAB_STATE_DIR", "/run"))
THP_DIR = "/sys/kernel/mm/transparent_hugepage"


def knob_path(key: str) -> str:
    """>>> knob_path("vm.defrag_mode"), knob_path("thp.defrag")
    ('/proc/sys/vm/defrag_mode', '/sys/kernel/mm/transparent_hugepage/defrag')"""
    if key.startswith("vm.") and key[3:] and "/" not in key and ".." not in key:
        return f"/proc/sys/vm/{key[3:]}"
    if key in ("thp.enabled", "thp.defrag"):
        return f"{THP_DIR}/{key[4:]}"
    raise KmemdesError(f"{key}: not a knob the lab can set (vm.NAME, thp.enabled, thp.defrag)")


def read_knob(key: str) -> str:
    """The knob's current value as the kernel prints it (THP files: the bracketed choice)."""
    path = knob_path(key)
    try:
        text = open(path).read().strip()
    except FileNotFoundError:
        raise KmemdesError(f"{key}: this kernel has no {path}") from None
    if "[" in text:
        return text[text.index("[") + 1: text.index("]")]
    return text


def _state_file(pid: int) -> Path:
    return STATE_DIR / f"kmemdes-lab.{pid}.json"


def starttime(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: tells a recycled pid from the process that wrote a state file."""
    text = _read(f"/proc/{pid}/stat", None)
    if not text:
        return None
    fields = text.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # killed, not yet reaped: as good as gone
        return None
    return fields[19]


class KernelState:
    """The knobs, mounts and tracing instance one lab run changed, with their original values."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.path = _state_file(self.pid)
        self.data = {"pid": self.pid, "starttime": starttime(self.pid), "started_epoch": time.time(),
                     "original": {}, "mounts": [], "instances": []}

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        os.replace(tmp, self.path)

    def record(self, keys) -> None:
        """Remember the original values of ``keys`` (state file written before anything changes)."""
        for k in keys:
            if k not in self.data["original"]:
                self.data["original"][k] = read_knob(k)
        self._save()

    def set(self, key: str, value) -> str:
        """Set a knob (its original recorded first); returns the value read back."""
        self.record([key])
        try:
            _write(knob_path(key), f"{value}\n")
        except OSError as e:
            raise KmemdesError(f"{key}={value}: the kernel refused it ({e.strerror})") from None
        return read_knob(key)

    def note(self, key: str, value) -> None:
        """Record something else the run made (``workdir``, ``driver`` pid) for a later recovery."""
        self.data[key] = value
        self._save()

    def mount(self, fstype: str) -> str | None:
        mnt = _mount(fstype, f"kmemdes_lab_{fstype}.")
        if mnt:
            self.data["mounts"].append(mnt)
            self._save()
        return mnt

    def add_instance(self, tracefs: str, name: str) -> str:
        inst = os.path.join(tracefs, "instances", name)
        self.data["instances"].append(name)
        self._save()
        os.mkdir(inst)
        return inst

    def restore(self) -> list[str]:
        """Put everything back; returns the problems (empty when all is restored and verified)."""
        return _restore(self.data, self.path)


def _restore(data: dict, path: Path) -> list[str]:
    problems: list[str] = []
    orig = data.get("original", {})
    keys = sorted(orig, key=lambda k: k != "vm.nr_hugepages")  # release the reservation first
    for k in keys:
        try:
            _write(knob_path(k), f"{orig[k]}\n")
        except (OSError, KmemdesError) as e:
            problems.append(f"cannot restore {k}={orig[k]}: {e}")
    for k in keys:
        try:
            now = read_knob(k)
        except KmemdesError as e:
            problems.append(str(e))
            continue
        if now.split() != str(orig[k]).split():
            problems.append(f"{k} is {now!r} after restoring {orig[k]!r}")
    if data.get("instances"):
        problems += _remove_instances(data["instances"], data.get("mounts", []))
    for mnt in reversed(data.get("mounts", [])):
        if os.path.isdir(mnt) and _is_mounted(mnt):
            err = _umount(mnt)
            if err:
                problems.append(err)
        elif os.path.isdir(mnt):
            try:
                os.rmdir(mnt)
            except OSError:
                pass
    if not problems:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    return problems


def _is_mounted(mnt: str) -> bool:
    return any(ln.split()[1:2] == [mnt] for ln in _read("/proc/mounts").splitlines())


def _remove_instances(names: list[str], mounts: list[str]) -> list[str]:
    tracefs = next((m for m in mounts if "tracefs" in m and _is_mounted(m)), None)
    own = None
    if tracefs is None:
        own = _mount("tracefs", "kmemdes_lab_tracefs.")
        if own is None:
            return [f"cannot mount tracefs to remove instance(s) {', '.join(names)}"]
        tracefs = own
    problems = []
    try:
        for name in names:
            inst = os.path.join(tracefs, "instances", name)
            if not os.path.isdir(inst):
                continue
            try:
                _write(os.path.join(inst, "tracing_on"), "0")
            except OSError:
                pass
            if not _rmdir_retry(inst):
                problems.append(f"cannot remove tracing instance instances/{name}")
    finally:
        if own:
            err = _umount(own)
            if err:
                problems.append(err)
    return problems


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc/*/stat ppid)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = _read(f"/proc/{d}/stat")
        try:
            ppid = int(st.rsplit(")", 1)[1].split()[1])
        except (IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and its descendants (leaves first)."""
    for p in reversed(_descendants(pid)):
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


def recover_leftovers() -> list[str]:
    """Undo what lab runs that were killed (SIGKILL, power cut of the process) left changed.

    Only state files whose process is gone (or whose pid now belongs to another process) are
    used; returns one note per recovered run.  Raises when a leftover cannot be undone, and when
    another lab run is alive (its changed values would be taken for the originals).
    """
    notes = []
    for f in sorted(STATE_DIR.glob("kmemdes-lab.*.json")):
        try:
            data = json.loads(f.read_text())
            pid = int(data["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if pid == os.getpid():
            continue
        if starttime(pid) is not None and starttime(pid) == data.get("starttime"):
            raise KmemdesError(f"another kmemdes lab run (pid {pid}) is running; its state file is {f}")
        drv = data.get("driver") or {}
        if drv.get("pid"):
            if starttime(drv["pid"]) == drv.get("starttime"):
                kill_tree(drv["pid"])
            try:  # workloads outliving the driver keep its process group (a pgid in use is never a new pid)
                os.killpg(drv["pid"], signal.SIGKILL)
            except OSError:
                pass
        if data.get("workdir", "").startswith(tempfile.gettempdir() + "/kmemdes_lab."):
            shutil.rmtree(data["workdir"], ignore_errors=True)
        cg = data.get("cgroup", "")
        if os.path.basename(cg).startswith("kmemdes_lab_") and os.path.isdir(cg):  # --calibrate's memory cgroup
            for p in _read(os.path.join(cg, "cgroup.procs")).split():
                kill_tree(int(p))
            if not _rmdir_retry(cg):
                raise KmemdesError(f"{f}: cannot remove the memory cgroup {cg} of a killed calibration")
        problems = _restore(data, f)
        if problems:
            raise KmemdesError(f"{f}: a killed lab run (pid {pid}) left changes that could not be undone: "
                               + "; ".join(problems))
        what = ", ".join(f"{k}={v}" for k, v in data.get("original", {}).items()) or "nothing"
        notes.append(f"restored what the killed lab run pid {pid} had changed ({what}; "
                     f"{len(data.get('instances', []))} tracing instance(s), {len(data.get('mounts', []))} mount(s))")
    return notes


def sync_and_drop_caches() -> None:
    """``sync; echo 3 > /proc/sys/vm/drop_caches`` (nothing to restore: the page cache refills)."""
    subprocess.run(["sync"], check=False)
    _write("/proc/sys/vm/drop_caches", "3\n")
