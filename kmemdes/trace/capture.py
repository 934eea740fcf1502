"""Live capture of the local kernel's allocation events while a command runs.

Does what the corpus' ``capture.sh`` does (streaming mode), in Python: mount
tracefs and debugfs on private temporary directories, record into a private
ftrace instance ``instances/kmemdes_<pid>`` (so the global tracing state is
never touched), stream the instance's ``trace_pipe`` through a zstd
compressor in a reader thread of ours into ``trace.txt.zst``, bracket the
command with ``capture_start`` / ``capture_end`` markers written to the
instance's ``trace_marker``, snapshot allocator state before and after, and
clean everything up (instance, mounts, partial output) even when the command
fails or the capture is interrupted (SIGINT, SIGTERM, SIGHUP).

Output folder (same layout as the corpus captures, so ``kmemdes stats`` and
``convert`` read it): ``meta.txt`` (the corpus keys), ``manifest.json`` (the
same facts, machine-readable), ``trace.txt.zst``, ``before/`` and ``after/``
(``/proc`` and debugfs snapshots; with ``kpageflags=True`` also
``kpageflags.zst`` followed by ``buddyinfo_after_kpageflags``),
``percpu_stats/cpuN.stats``, ``tracing_state_{before,after}.txt`` and
``workload.log``.  With ``kpageflags=True`` tracing stays on while both
kpageflags snapshots are read (markers ``kpageflags_before``,
``kpageflags_after``, ``after_buddyinfo`` as soon as after/buddyinfo is read,
``kpageflags_read pfn=N`` before each 4 MiB of /proc/kpageflags, and
``kpageflags_after_done``), so what the kernel does meanwhile is in the
trace.  It is written to ``DIR.tmp-<pid>`` and renamed at the end.

The kernel interfaces are those of kernel/trace/trace.c (instances,
``buffer_size_kb``, ``trace_options``, ``trace_clock``, ``trace_pipe``,
``trace_marker``, ``per_cpu/cpuN/stats``) and fs/proc/page.c (``kpageflags``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from kmemdes.errors import Interrupted, KmemdesError

__all__ = ["capture", "DEFAULT_EVENTS", "KMEM_EVENTS", "event_specs"]

#: /proc/kpageflags is read into memory before compressing up to this size (32 M pfns: 128 GiB of RAM)
_KPAGEFLAGS_IN_MEMORY = 256 << 20

#: the kmem events capture.sh records (rss_stat and the zone-setup events are left out)
KMEM_EVENTS = (
    "kmem/kmalloc kmem/kfree kmem/kmem_cache_alloc kmem/kmem_cache_free kmem/mm_page_alloc kmem/mm_page_free "
    "kmem/mm_page_free_batched kmem/mm_page_pcpu_drain kmem/mm_page_alloc_extfrag kmem/mm_page_alloc_zone_locked"
).split()
#: the groups ``kmemdes capture`` records by default; ``pagemap/mm_lru_activate`` (``lru_activate``: a page-cache
#: or anonymous folio moved to the active LRU, one event per folio) tells a policy replay which folios the
#: workload touched again (page-cache hits make no allocation event)
DEFAULT_EVENTS = ("kmem", "vmalloc", "compaction", "vmscan", "pagemap/mm_lru_activate")
_PROC_SNAPSHOTS = ("buddyinfo", "pagetypeinfo", "zoneinfo", "slabinfo", "vmallocinfo", "meminfo", "vmstat")
_STATE_KEYS = ("tracing_on", "buffer_size_kb", "buffer_total_size_kb", "current_tracer", "trace_clock", "events_enable", "set_event", "instances", "trace_options")
#: keys whose change means we disturbed global tracing (instances of other users may come and go)
_RESTORE_KEYS = ("tracing_on", "buffer_size_kb", "buffer_total_size_kb", "current_tracer", "trace_clock", "events_enable", "set_event", "trace_options")


class _Interrupted(BaseException):
    """Raised in the main thread by our SIGINT/SIGTERM/SIGHUP handler."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.signum = signum


def event_specs(groups) -> list[str]:
    """Expand ``--events`` items into ``group/event`` globs.

    ``kmem`` means the allocator events capture.sh records (:data:`KMEM_EVENTS`);
    any other bare group means ``group/*``; ``group/event`` is kept.

    >>> event_specs(["vmalloc", "kmem/rss_stat"])
    ['vmalloc/*', 'kmem/rss_stat']
    >>> len(event_specs(["kmem"]))
    10
    """
    out: list[str] = []
    for g in groups:
        g = g.strip()
        if not g:
            continue
        if "/" in g:
            out.append(g)
        elif g == "kmem":
            out.extend(KMEM_EVENTS)
        else:
            out.append(f"{g}/*")
    return out


# ------------------------------------------------------------------ small file helpers


def _read(path, default: str = "") -> str:
    try:
        with open(path, "r", errors="replace") as f:
            return f.read()
    except OSError:
        return default


def _one_line(value) -> str:
    """A meta.txt value on one line (line breaks escaped as ``\\n``, ``\\r``)."""
    return str(value).replace("\r", "\\r").replace("\n", "\\n")


def _write(path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _tracefs_available() -> bool:
    return "tracefs" in _read("/proc/filesystems")


_MOUNT_RE = re.compile(r"^kmemdes_(?:tracefs|debugfs)\.(\d+)\.")


def _mount(fstype: str, prefix: str) -> str | None:
    """Mount ``fstype`` on a private temporary folder whose name carries our pid
    (``kmemdes_tracefs.PID.XXXX``), so a later capture can tell an orphan from a live one."""
    mnt = tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}.")
    r = subprocess.run(["mount", "-t", fstype, "nodev", mnt], capture_output=True, text=True)
    if r.returncode != 0:
        os.rmdir(mnt)
        return None
    return mnt


def _umount(mnt: str | None) -> str | None:
    """Unmount and remove a private mount point; returns an error text or None."""
    if not mnt:
        return None
    r = subprocess.run(["umount", mnt], capture_output=True, text=True)
    if r.returncode != 0:
        r = subprocess.run(["umount", "-l", mnt], capture_output=True, text=True)
        if r.returncode != 0:
            return f"cannot unmount {mnt}: {r.stderr.strip()}"
    try:
        os.rmdir(mnt)
    except OSError as e:
        return f"cannot remove {mnt}: {e}"
    return None


def _global_state(tr: str) -> dict:
    """The top-level tracing state capture.sh compares before and after."""
    one = lambda name: _read(os.path.join(tr, name)).strip()  # noqa: E731
    try:
        instances = sorted(os.listdir(os.path.join(tr, "instances")))
    except OSError:
        instances = []
    return {
        "tracing_on": one("tracing_on"),
        "buffer_size_kb": one("buffer_size_kb"),
        "buffer_total_size_kb": one("buffer_total_size_kb"),
        "current_tracer": one("current_tracer"),
        "trace_clock": one("trace_clock"),
        "events_enable": one("events/enable"),
        "set_event": "[" + " ".join(one("set_event").split()) + (" ]" if one("set_event") else "]"),
        "instances": "[" + "".join(i + " " for i in instances) + "]",
        "trace_options": "[" + "".join(o + " " for o in one("trace_options").split()) + "]",
    }


def _state_text(state: dict) -> str:
    return "".join(f"{k}={state[k]}\n" for k in _STATE_KEYS)


def _uname() -> str:
    try:
        r = subprocess.run(["uname", "-a"], capture_output=True, text=True, timeout=5)
        if r.returncode == 0:
            return r.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    u = os.uname()
    return f"{u.sysname} {u.nodename} {u.release} {u.version} {u.machine}"


def _vm_sysctls() -> str:
    """Every /proc/sys/vm value as ``name = value`` lines (the policy the kernel ran under)."""
    lines = []
    base = Path("/proc/sys/vm")
    for p in sorted(base.iterdir()) if base.is_dir() else ():
        try:
            value = p.read_text(errors="replace").strip()
        except OSError:  # write-only (drop_caches, compact_memory) or not readable
            continue
        lines.append(f"{p.name} = {value}")
    return "\n".join(lines) + "\n"


def _snapshot(d: Path, debugfs: str | None, mark=None) -> None:
    """``snap`` of capture.sh: /proc, debugfs extfrag, THP, every vm sysctl, uname, nproc, uptime, epoch.
    ``mark(text)`` is told ``after_buddyinfo`` as soon as /proc/buddyinfo has been read."""
    d.mkdir(parents=True, exist_ok=True)
    for f in _PROC_SNAPSHOTS:
        text = _read(f"/proc/{f}", None)
        if mark is not None and f == "buddyinfo":
            mark("after_buddyinfo")
        if text is not None:
            _write(d / f, text)
    if debugfs:
        for f in ("extfrag_index", "unusable_index"):
            text = _read(os.path.join(debugfs, "extfrag", f), None)
            if text is not None:
                _write(d / f, text)
    for f in ("enabled", "defrag"):
        text = _read(f"/sys/kernel/mm/transparent_hugepage/{f}", None)
        if text is not None:
            _write(d / f"thp_{f}", text)
    _write(d / "vm_sysctls", _vm_sysctls())
    _write(d / "uname", _uname() + "\n")
    _write(d / "nproc", f"{len(os.sched_getaffinity(0))}\n")
    _write(d / "uptime", _read("/proc/uptime"))
    ns = time.time_ns()
    _write(d / "date_epoch", f"{ns // 10**9}.{ns % 10**9:09d}\n")


def _snapshot_kpageflags(d: Path, mark=None) -> dict:
    """/proc/kpageflags (8 bytes per pfn, fs/proc/page.c) zstd-compressed, then buddyinfo again.
    ``mark(text)`` (the instance's trace_marker) is told ``kpageflags_read pfn=N`` before each
    4 MiB read, so the trace shows when each range of pfns was read."""
    import zstandard

    t0 = time.monotonic()
    # up to _KPAGEFLAGS_IN_MEMORY: read whole first, compress after (the read is the window in which
    # the layout drifts); a bigger machine streams through the compressor
    in_memory = os.sysconf("SC_PHYS_PAGES") * 8 <= _KPAGEFLAGS_IN_MEMORY
    buf = bytearray()
    raw = 0
    with open("/proc/kpageflags", "rb", buffering=0) as src, open(d / "kpageflags.zst", "wb") as dst:
        z = zstandard.ZstdCompressor(level=3)
        w = None if in_memory else z.stream_writer(dst, closefd=False)
        while True:
            if mark is not None:
                mark(f"kpageflags_read pfn={raw // 8}")
            b = src.read(1 << 22)
            if not b:
                break
            raw += len(b)
            if w is None:
                buf += b
            else:
                w.write(b)
        read_s = time.monotonic() - t0
        _write(d / "buddyinfo_after_kpageflags", _read("/proc/buddyinfo"))
        if w is None:
            dst.write(z.compress(buf))
        else:
            w.close()
    return {"bytes": raw, "pfns": raw // 8, "seconds": round(read_s, 3),
            "compress_seconds": round(time.monotonic() - t0 - read_s, 3)}


def _percpu_stats(inst: str) -> dict:
    out = {}
    base = os.path.join(inst, "per_cpu")
    for c in sorted(os.listdir(base), key=lambda s: int(s[3:]) if s[3:].isdigit() else 0):
        out[c] = _read(os.path.join(base, c, "stats"))
    return out


def _stat_value(text: str, key: str) -> int:
    for line in text.splitlines():
        if line.startswith(key + ":"):
            try:
                return int(line.split(":", 1)[1].split()[0])
            except (ValueError, IndexError):
                return 0
    return 0


# ------------------------------------------------------------------ the trace_pipe reader


class _PipeReader(threading.Thread):
    """Reads the instance's trace_pipe (non-blocking, every 100 ms) into a zstd stream.

    Its native thread id is what the kernel records as ``pid`` for the
    allocations the reader itself makes, so it goes into the manifest.
    """

    def __init__(self, inst: str, out: Path, level: int = 1, drain_timeout: float = 60.0):
        super().__init__(name="kmemdes-trace-pipe", daemon=True)
        self.inst, self.out, self.level, self.drain_timeout = inst, out, level, drain_timeout
        self.tid = 0
        self.nbytes = 0
        self.interval = 0.1
        self.error: str | None = None
        self.stop_at: float | None = None
        self.ready = threading.Event()
        self._stopping = threading.Event()
        self._abort = threading.Event()

    def stop(self, abort: bool = False) -> None:
        """Finish after draining what is left (or at once with ``abort``)."""
        self.stop_at = time.monotonic()
        if abort:
            self._abort.set()
        self._stopping.set()

    def _entries_left(self) -> int:
        try:
            return sum(_stat_value(t, "entries") for t in _percpu_stats(self.inst).values())
        except OSError:
            return 0

    def run(self) -> None:
        import zstandard

        self.tid = threading.get_native_id()
        fd = -1
        try:
            fd = os.open(os.path.join(self.inst, "trace_pipe"), os.O_RDONLY | os.O_NONBLOCK)
            self.ready.set()
            # Read until the buffer is empty, then sleep: every read makes a few events
            # of its own (the reader's syscalls allocate), so polling for "readable" would
            # feed on itself.  64 KiB reads stay below malloc's mmap threshold, so the
            # reader does not fault in fresh pages for each chunk.
            with open(self.out, "wb") as f, zstandard.ZstdCompressor(level=self.level).stream_writer(f) as w:
                while not self._abort.is_set():
                    try:
                        b = os.read(fd, 1 << 16)
                    except BlockingIOError:
                        b = b""
                    if b:
                        w.write(b)
                        self.nbytes += len(b)
                        continue
                    if self._stopping.is_set():
                        if self._entries_left() == 0 or time.monotonic() - self.stop_at > self.drain_timeout:
                            break
                        time.sleep(0.02)
                    else:
                        self._stopping.wait(self.interval)
        except OSError as e:
            self.error = f"trace_pipe reader: {e}"
        finally:
            self.ready.set()
            if fd >= 0:
                os.close(fd)


# ------------------------------------------------------------------ capture


def capture(
    out,
    command,
    *,
    raw_pointers: bool = False,
    buffer_kb: int = 65536,
    events=DEFAULT_EVENTS,
    kpageflags: bool = False,
    keep_partial: bool = False,
    name: str | None = None,
    log=None,
    settle: float = 0.0,
) -> dict:
    """Record allocation events of the local kernel while ``command`` runs; return the manifest.

    ``settle``: seconds to keep tracing after the command ends (before the after/ snapshot), so
    that frees the command left to RCU callbacks and kworkers are in the trace.

    ``command`` is an argv list (run without a shell).  Raises
    :class:`KmemdesError` for refusals (not root, no tracefs, output exists,
    no event could be enabled); re-raises ``KeyboardInterrupt`` after cleanup
    when interrupted.  The instance and mounts are always removed; the partial
    folder too unless ``keep_partial``.
    """
    out = Path(out)
    command = list(command)
    log = log or (lambda msg: None)
    if not command:
        raise KmemdesError("capture: no command given (put it after --)")
    if buffer_kb < 4:
        raise KmemdesError(f"capture: --buffer-kb {buffer_kb}: must be at least 4")
    if os.geteuid() != 0:
        raise KmemdesError("capture: must run as root (tracing needs CAP_SYS_ADMIN)")
    if not _tracefs_available():
        raise KmemdesError("capture: this kernel has no tracefs (CONFIG_TRACING off?)")
    if out.exists():
        raise KmemdesError(f"capture: {out}: already exists; refusing to overwrite")
    if not out.parent.is_dir():
        raise KmemdesError(f"capture: {out.parent}: no such directory")
    name = name or out.name
    pid = os.getpid()
    tmp = out.parent / f"{out.name}.tmp-{pid}"
    specs = event_specs(events)

    st = {"tracefs": None, "debugfs": None, "inst": None, "reader": None, "child": None, "enabled": []}
    warnings: list[str] = []
    meta: list[tuple[str, str]] = []
    manifest: dict = {"name": name, "warnings": warnings}
    old_handlers = _install_interrupt_handlers()
    ok = False
    try:
        _remove_orphan_mounts(warnings)
        _remove_orphan_outputs(out, warnings)
        tmp.mkdir()
        for sub in ("before", "after", "percpu_stats"):
            (tmp / sub).mkdir()
        st["tracefs"] = _mount("tracefs", "kmemdes_tracefs.")
        if st["tracefs"] is None:
            raise KmemdesError("capture: cannot mount tracefs")
        st["debugfs"] = _mount("debugfs", "kmemdes_debugfs.")
        if st["debugfs"] is None:
            warnings.append("cannot mount debugfs: extfrag_index/unusable_index snapshots missing")
        tr = st["tracefs"]
        state_before = _global_state(tr)
        _write(tmp / "tracing_state_before.txt", _state_text(state_before))
        mounts_before = _tracing_mounts()

        _remove_orphan_instances(os.path.join(tr, "instances"), warnings)
        inst = os.path.join(tr, "instances", f"kmemdes_{pid}")
        os.mkdir(inst)
        st["inst"] = inst
        _write(os.path.join(inst, "tracing_on"), "0")  # a new instance starts with tracing on
        try:
            _write(os.path.join(inst, "buffer_size_kb"), str(buffer_kb))
        except OSError as e:
            raise KmemdesError(f"capture: --buffer-kb {buffer_kb}: the kernel refused it ({e.strerror})") from None
        _write(os.path.join(inst, "trace"), "")
        _write(os.path.join(inst, "trace_options"), "nohash-ptr" if raw_pointers else "hash-ptr")
        _write(os.path.join(inst, "trace_clock"), "local")
        evroot = os.path.join(inst, "events")
        for spec in specs:
            matched = _glob_events(evroot, spec)
            if not matched:
                warnings.append(f"event {spec} not available")
            for e in matched:
                try:
                    _write(os.path.join(evroot, e, "enable"), "1")
                    st["enabled"].append(e)
                except OSError as ex:
                    warnings.append(f"cannot enable {e}: {ex.strerror}")
        if not st["enabled"]:
            raise KmemdesError(f"capture: none of the events {','.join(events)} could be enabled")
        log(f"enabled {len(st['enabled'])} events in instances/kmemdes_{pid}")

        clock = _read(os.path.join(inst, "trace_clock"))
        clock = clock[clock.find("[") + 1 : clock.find("]")] if "[" in clock else clock.strip()
        workload = shlex.join(command)
        meta += [
            ("name", name),
            ("workload", workload),
            ("kernel", os.uname().release),
            ("uname", _uname()),
            ("nproc", str(len(os.sched_getaffinity(0)))),
            ("instance", f"instances/kmemdes_{pid}"),
            ("buffer_size_kb_per_cpu", _read(os.path.join(inst, "buffer_size_kb")).strip()),
            ("hashed_pointers", "no" if raw_pointers else "yes"),
            ("read_mode", "streaming"),
            ("trace_clock", clock),
            ("events", " ".join(st["enabled"])),
            ("capture_script_pid", str(pid)),
        ]
        reader = _PipeReader(inst, tmp / "trace.txt.zst")
        st["reader"] = reader
        reader.start()
        reader.ready.wait(10)
        if reader.error:
            raise KmemdesError(f"capture: {reader.error}")
        meta.append(("reader_pid", str(reader.tid)))

        def mark(text: str) -> None:
            _write(os.path.join(inst, "trace_marker"), text)

        _snapshot(tmp / "before", st["debugfs"])
        t0 = time.time_ns()
        _write(os.path.join(inst, "tracing_on"), "1")
        if kpageflags:
            # traced while /proc/kpageflags is read: a page that changes during the read is in the
            # trace (replaying it again where the read already saw it is a counted no-op), not lost
            mark("kpageflags_before")
            manifest["kpageflags_before"] = _snapshot_kpageflags(tmp / "before", mark)
        _write(os.path.join(inst, "trace_marker"), f"capture_start name={name}")
        with open(tmp / "workload.log", "wb") as wlog:
            try:
                child = subprocess.Popen(command, stdout=wlog, stderr=subprocess.STDOUT)
            except OSError as e:
                raise KmemdesError(f"capture: cannot run {command[0]!r}: {e.strerror}") from None
            st["child"] = child
            meta.append(("workload_pid", str(child.pid)))
            rc = child.wait()
        st["child"] = None
        _write(os.path.join(inst, "trace_marker"), f"capture_end name={name} rc={rc}")
        if settle > 0:
            # the command's deferred frees (RCU callbacks of process exit, kworkers) land in the trace
            time.sleep(settle)
            _write(os.path.join(inst, "trace_marker"), f"settled seconds={settle}")
        if kpageflags:
            # traced while after/ and /proc/kpageflags are read, as at the start: what the kernel does
            # meanwhile (per-CPU lists drained by vmstat_update's pcp-high decay, kworkers' frees) is in
            # the trace; replays stop at after_buddyinfo, and validate's layout agreement leaves out the
            # pages that changed after their range of /proc/kpageflags was read
            mark("kpageflags_after")
            _snapshot(tmp / "after", st["debugfs"], mark)
            manifest["kpageflags_after"] = _snapshot_kpageflags(tmp / "after", mark)
            mark("kpageflags_after_done")
        _write(os.path.join(inst, "tracing_on"), "0")
        t1 = time.time_ns()
        if not kpageflags:
            _snapshot(tmp / "after", st["debugfs"])
        meta += [
            ("workload_rc", str(rc)),
            ("start_epoch", f"{t0 // 10**9}.{t0 % 10**9:09d}"),
            ("end_epoch", f"{t1 // 10**9}.{t1 % 10**9:09d}"),
            ("traced_seconds", f"{(t1 - t0) / 1e9:.3f}"),
        ]
        log(f"workload finished rc={rc}; draining")
        d0 = time.monotonic()
        reader.stop()
        reader.join()
        if reader.error:
            raise KmemdesError(f"capture: {reader.error}")
        meta.append(("drain_seconds", f"{time.monotonic() - d0:.0f}"))
        stats = _percpu_stats(inst)
        tot = [0, 0, 0]
        lost = {}
        for cpu, text in stats.items():
            _write(tmp / "percpu_stats" / f"{cpu}.stats", text)
            o, co, dr = _stat_value(text, "overrun"), _stat_value(text, "commit overrun"), _stat_value(text, "dropped events")
            tot = [tot[0] + o, tot[1] + co, tot[2] + dr]
            lost[cpu] = {"overrun": o, "commit_overrun": co, "dropped": dr}
            meta.append((f"lost_{cpu}", f"overrun={o} commit_overrun={co} dropped={dr}"))
        meta.append(("lost_total", f"overrun={tot[0]} commit_overrun={tot[1]} dropped={tot[2]}"))
        meta.append(("trace_file", "trace.txt.zst"))
        manifest.update(
            {
                "lost": lost,
                "lost_total": dict(zip(("overrun", "commit_overrun", "dropped"), tot)),
                "trace_bytes_uncompressed": reader.nbytes,
                "command": command,
                "events": st["enabled"],
                "mounts_before": mounts_before,
            }
        )
        ok = True
    except _Interrupted as e:
        warnings.append(f"interrupted by {e}")
        log(f"interrupted by {e}; cleaning up")
        raise Interrupted(e.signum, str(e)) from None
    finally:
        _signals_blocked(True)
        try:
            _cleanup(st, warnings)
            if ok:
                restored = _finish_state(tmp, state_before, st, warnings, meta, manifest)
                manifest["mounts_after"] = _tracing_mounts()
                meta.append(("global_tracing_state_restored", restored))
        finally:
            for mnt in ("debugfs", "tracefs"):
                err = _umount(st[mnt])
                if err:
                    warnings.append(err)
            _restore_handlers(old_handlers)
            _signals_blocked(False)
        if ok:
            manifest["meta"] = dict(meta)
            # one key=value per line: a value with line breaks (a ``python -c`` script as the workload)
            # has them escaped; manifest.json keeps the exact text
            _write(tmp / "meta.txt", "".join(f"{k}={_one_line(v)}\n" for k, v in meta))
            _write(tmp / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            os.rename(tmp, out)
        elif tmp.exists() and not keep_partial:
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _install_interrupt_handlers() -> dict:
    """SIGINT/SIGTERM/SIGHUP raise :class:`_Interrupted` in the main thread (so ``finally`` blocks clean
    up); returns the previous handlers for :func:`_restore_handlers` (none outside the main thread)."""
    def on_signal(signum, frame):
        raise _Interrupted(signum)

    old = {}
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            old[s] = signal.signal(s, on_signal)
    return old


def _restore_handlers(old: dict) -> None:
    for s, h in old.items():
        signal.signal(s, h)


def _rmdir_retry(path: str, tries: int = 50) -> bool:
    """rmdir, retried for 5 s while it fails (EBUSY: a tracing instance whose trace_pipe a reader still
    holds, a cgroup whose last task is still exiting); True once the directory is gone."""
    for _ in range(tries):
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError:
            time.sleep(0.1)
    return False


def _signals_blocked(block: bool) -> None:
    """Hold SIGINT/SIGTERM/SIGHUP while cleaning up, so a second Ctrl-C cannot cut it short."""
    if threading.current_thread() is not threading.main_thread():
        return
    how = signal.SIG_BLOCK if block else signal.SIG_UNBLOCK
    signal.pthread_sigmask(how, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


def _glob_events(evroot: str, spec: str) -> list[str]:
    group, _, ev = spec.partition("/")
    gdir = os.path.join(evroot, group)
    if not os.path.isdir(gdir):
        return []
    if ev in ("*", ""):
        return sorted(f"{group}/{e}" for e in os.listdir(gdir) if os.path.isfile(os.path.join(gdir, e, "enable")))
    return [f"{group}/{ev}"] if os.path.isfile(os.path.join(gdir, ev, "enable")) else []


def _tracing_mounts() -> list[str]:
    return [ln for ln in _read("/proc/mounts").splitlines() if ln.split()[2:3] in (["tracefs"], ["debugfs"])]


def _remove_orphan_mounts(warnings: list) -> None:
    """Unmount and remove the private tracefs/debugfs mount points of captures that were killed
    (SIGKILL leaves them: no handler runs); a mount point whose pid is alive is left alone."""
    tmp = os.path.realpath(tempfile.gettempdir())
    points = [ln.split()[1] for ln in _read("/proc/mounts").splitlines() if len(ln.split()) > 2]
    seen = set()
    for mnt in points + [os.path.join(tmp, n) for n in os.listdir(tmp)]:
        mnt = mnt.replace("\\040", " ")
        m = _MOUNT_RE.match(os.path.basename(mnt))
        if mnt in seen or os.path.dirname(mnt) != tmp or not m or os.path.exists(f"/proc/{m.group(1)}"):
            continue
        seen.add(mnt)
        if mnt in points:
            err = _umount(mnt)
            warnings.append(err or f"removed the mount {mnt} of a capture that was killed")
        else:
            try:
                os.rmdir(mnt)
            except OSError:
                pass


def _remove_orphan_outputs(out: Path, warnings: list) -> None:
    """Remove ``NAME.tmp-PID`` capture folders next to ``out`` whose capture was killed (the pid is
    gone): only folders with a capture's own layout (before/, after/, percpu_stats/)."""
    try:
        entries = list(out.parent.iterdir())
    except OSError:
        return
    for e in entries:
        m = re.match(r"^.+\.tmp-(\d+)$", e.name)
        if not m or not e.is_dir() or e.is_symlink() or os.path.exists(f"/proc/{m.group(1)}"):
            continue
        if not all((e / sub).is_dir() for sub in ("before", "after", "percpu_stats")):
            continue
        shutil.rmtree(e, ignore_errors=True)
        warnings.append(f"removed {e}, left by a capture that was killed")


def _remove_orphan_instances(instances: str, warnings: list) -> None:
    """Remove ``kmemdes_<pid>`` instances whose capture process is gone (killed with SIGKILL, which
    no handler can catch): they would keep their ring buffers and enabled events forever."""
    try:
        names = os.listdir(instances)
    except OSError:
        return
    for name in names:
        if not name.startswith("kmemdes_") or not name[8:].isdigit():
            continue
        if os.path.exists(f"/proc/{name[8:]}"):
            continue  # a capture (or a recycled pid) is alive: leave it
        try:
            _write(os.path.join(instances, name, "tracing_on"), "0")
            os.rmdir(os.path.join(instances, name))
            warnings.append(f"removed the orphaned instance instances/{name} of a capture that was killed")
        except OSError as e:
            warnings.append(f"cannot remove the orphaned instance instances/{name}: {e.strerror}")


def _cleanup(st: dict, warnings: list) -> None:
    """Stop the workload and reader, disable our events, remove the instance."""
    child = st.get("child")
    if child is not None and child.poll() is None:
        warnings.append(f"workload pid {child.pid} still running; terminated")
        child.terminate()
        try:
            child.wait(5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    inst = st.get("inst")
    if inst:
        try:
            _write(os.path.join(inst, "tracing_on"), "0")
        except OSError as e:
            warnings.append(f"cannot stop tracing in {inst}: {e}")
    reader = st.get("reader")
    if reader is not None and reader.is_alive():
        reader.stop(abort=True)
        reader.join(10)
    if inst and os.path.isdir(inst):
        for e in reversed(st["enabled"]):
            try:
                _write(os.path.join(inst, "events", e, "enable"), "0")
            except OSError:
                pass
        try:
            _write(os.path.join(inst, "trace"), "")
        except OSError:
            pass
        if not _rmdir_retry(inst):
            warnings.append(f"could not remove instance {inst}")


def _finish_state(tmp: Path, before: dict, st: dict, warnings: list, meta: list, manifest: dict) -> str:
    after = _global_state(st["tracefs"])
    _write(tmp / "tracing_state_after.txt", _state_text(after))
    manifest["tracing_state_before"] = before
    manifest["tracing_state_after"] = after
    ours = f"kmemdes_{os.getpid()}"
    diff = [k for k in _RESTORE_KEYS if before[k] != after[k]]
    if ours in after["instances"].strip("[]").split():
        diff.append("instances")
    if diff:
        warnings.append("global tracing state differs: " + ", ".join(diff))
        return f"DIFFERS({','.join(diff)}; see tracing_state_*.txt)"
    return "yes"
