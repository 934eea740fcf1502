"""The lab's own workloads, run as ``python -m kmemdes.lab.work NAME [args]`` (``builtin`` in a recipe).

Each one does what a user program does to the allocator and measures what it saw from user space,
then prints one line ``KMEMDES_LAB {json}`` that ``kmemdes lab`` collects into the run directory:

- ``thp_burst SIZE``: an anonymous mapping with ``MADV_HUGEPAGE``, touched page by page.  The first
  touch of each 2 MiB range is timed alone: it is the THP fault (``do_huge_pmd_anonymous_page``:
  allocation, direct compaction/reclaim if ``defrag`` asks, clearing 2 MiB) or, when the huge page
  could not be had, a 4 KiB fault after the failed attempt.  Whether each range got a huge page is
  read from ``/proc/self/pagemap`` and ``/proc/kpageflags`` (``KPF_THP``; root), else only the
  ``AnonHugePages`` total of ``/proc/self/smaps_rollup`` is known.
- ``touch SIZE``: the same with ``MADV_NOHUGEPAGE``: every 4 KiB first-touch fault timed, then every
  page touched again (no fault) to measure what the timing itself costs (``overhead_ns``).
- ``stream SIZE PATH [small]``: reads the file PATH (``prepare_stream`` writes it) through the page cache
  (``small``: 4 KiB reads without readahead, so the cache holds 4 KiB folios).
- ``compile SECONDS JOBS``: JOBS loops of ``gcc -O2 -c`` over the C examples Debian ships with
  zlib1g-dev and libpng-dev (the corpus' compile workload), for SECONDS.
- ``net SECONDS [CONNS]``: TCP over loopback, 64 KiB writes (order-3 non-blocking page-frag allocations).
- ``bpf_maps SECONDS SIZE [HOLD]``: ``bpf(BPF_MAP_CREATE)`` of one-element array maps with SIZE value
  bytes for SECONDS, one every 10 ms, HOLD of them open at a time, each create timed (a closed map's
  memory is freed later, by a workqueue after an RCU grace period, and vmalloc purges its areas
  lazily: at one 1 MiB map per 0.5 ms that backlog took 500 MiB of a squeezed machine).  The map's memory comes from
  ``bpf_map_area_alloc`` (kernel/bpf/syscall.c), the kernel's own kvmalloc: up to
  ``PAGE_SIZE << PAGE_ALLOC_COSTLY_ORDER`` (32 KiB) a ``kmalloc`` with ``__GFP_NORETRY`` (an order-3
  page allocation for 16-32 KiB), falling back to ``vmalloc`` when it fails; above that ``vmalloc``
  (``__GFP_RETRY_MAYFAIL``).  x86-64 only (the syscall number); root.
- ``sleep SECONDS``.

No imports beyond the standard library: these run under memory pressure and start fast.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import json
import mmap
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

PAGE = 4096
HPAGE = 2 << 20
KPF_THP = 22
MARK = "KMEMDES_LAB "


def _emit(d: dict) -> None:
    sys.stdout.write(MARK + json.dumps(d, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _pfn(pagemap, vaddr: int) -> int:
    pagemap.seek((vaddr // PAGE) * 8)
    b = pagemap.read(8)
    if len(b) < 8:
        return 0
    v = int.from_bytes(b, "little")
    return v & ((1 << 55) - 1) if v >> 63 else 0


def _is_thp(kpf, pfn: int) -> bool | None:
    if not pfn or kpf is None:
        return None
    kpf.seek(pfn * 8)
    b = kpf.read(8)
    return bool(int.from_bytes(b, "little") >> KPF_THP & 1) if len(b) == 8 else None


def _anon(size: int, advice: int):
    """An anonymous private mapping with ``size`` bytes starting on a 2 MiB boundary: (mmap, offset, address)."""
    m = mmap.mmap(-1, size + HPAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    m.madvise(advice)
    buf = ctypes.c_char.from_buffer(m)
    addr = ctypes.addressof(buf)
    del buf
    off = (-addr) % HPAGE
    return m, off, addr + off


def thp_burst(size: int) -> dict:
    n = max(size // HPAGE, 1)
    m, off, addr = _anon(n * HPAGE, mmap.MADV_HUGEPAGE)
    now = time.perf_counter_ns
    first = []
    t0 = now()
    for r in range(n):
        base = off + r * HPAGE
        a = now()
        m[base] = 1
        first.append(now() - a)
        for o in range(base + PAGE, base + HPAGE, PAGE):
            m[o] = 1
    total = now() - t0
    huge = []
    try:
        with open("/proc/self/pagemap", "rb", buffering=0) as pm, open("/proc/kpageflags", "rb", buffering=0) as kpf:
            huge = [_is_thp(kpf, _pfn(pm, addr + r * HPAGE)) for r in range(n)]
    except OSError:
        huge = [None] * n
    rollup = 0
    for line in open("/proc/self/smaps_rollup"):
        if line.startswith("AnonHugePages:"):
            rollup = int(line.split()[1]) // 2048
    m.close()
    return {"workload": "thp_burst", "ranges": n, "huge": rollup, "touch_ns": total, "first_touch_ns": first,
            "range_huge": huge}


def touch(size: int) -> dict:
    n = max(size // PAGE, 1)
    m, off, _ = _anon(n * PAGE, mmap.MADV_NOHUGEPAGE)
    now = time.perf_counter_ns
    lat = []
    for i in range(n):
        o = off + i * PAGE
        a = now()
        m[o] = 1
        lat.append(now() - a)
    again = []
    for i in range(n):
        o = off + i * PAGE
        a = now()
        m[o] = 2
        again.append(now() - a)
    m.close()
    again.sort()
    return {"workload": "touch", "pages": n, "fault_ns": lat, "overhead_ns": again[len(again) // 2]}


def prepare_stream(size: int, path: str) -> None:
    """Write the file ``stream`` reads (unless it already has ``size`` bytes); its pages are then
    dropped from the page cache by the lab's ``drop_caches``."""
    try:
        if os.path.getsize(path) == size:
            return
    except OSError:
        pass
    chunk = os.urandom(1 << 20)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        left = size
        while left > 0:
            f.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)
    os.rename(tmp, path)


def stream(size: int, path: str, small: bool = False) -> dict:
    """Read ``path`` through the page cache; ``small``: 4 KiB reads with readahead off
    (``POSIX_FADV_RANDOM``), so the page cache holds order-0 folios instead of large ones."""
    t0 = time.perf_counter_ns()
    n = 0
    with open(path, "rb", buffering=0) as f:
        if small:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
        while True:
            b = f.read(4096 if small else 1 << 20)
            if not b:
                break
            n += len(b)
    dt = time.perf_counter_ns() - t0
    return {"workload": "stream", "bytes": n, "ns": dt}


def net(seconds: float, conns: int = 2) -> dict:
    """TCP over 127.0.0.1 for ``seconds``: ``conns`` connections each sending 64 KiB writes to a
    draining reader.  The sender's skb data comes from ``skb_page_frag_refill``: order-3 pages asked
    with ``GFP_NOWAIT|__GFP_NORETRY`` (no direct reclaim: the non-blocking high-order load the
    corpus loopback capture shows 57 k of), falling back to order 0 when they fail."""
    import socket
    import threading

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(conns)
    port = srv.getsockname()[1]
    received = [0]

    def drain(c):
        with c:
            while True:
                b = c.recv(1 << 16)
                if not b:
                    return
                received[0] += len(b)

    def accept():
        for _ in range(conns):
            c, _ = srv.accept()
            threading.Thread(target=drain, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    end = time.monotonic() + seconds
    payload = os.urandom(1 << 16)
    sent = [0]

    def send():
        with socket.create_connection(("127.0.0.1", port)) as c:
            while time.monotonic() < end:
                c.sendall(payload)
                sent[0] += len(payload)

    ts = [threading.Thread(target=send) for _ in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    srv.close()
    return {"workload": "net", "bytes": sent[0], "seconds": seconds}


COMPILE_SOURCES = ("/usr/share/doc/zlib1g-dev/examples/*.[ch]", "/usr/share/doc/libpng-dev/examples/pngtest.c")


def compile_loop(seconds: float, jobs: int) -> dict:
    files = sorted(f for g in COMPILE_SOURCES for f in glob.glob(g))
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc or not any(f.endswith(".c") for f in files):
        return {"workload": "compile", "error": "needs gcc and the zlib1g-dev/libpng-dev examples"}
    work = tempfile.mkdtemp(prefix="cc.", dir=os.environ.get("KMEMDES_LAB_WORKDIR") or None)
    try:
        for f in files:
            shutil.copy(f, work)
        srcs = sorted(os.path.basename(f) for f in files if f.endswith(".c"))
        end = time.monotonic() + seconds
        done = 0
        running: list = []
        i = 0
        while time.monotonic() < end or running:
            while time.monotonic() < end and len(running) < jobs:
                s = srcs[i % len(srcs)]
                i += 1
                running.append(subprocess.Popen([cc, "-O2", "-c", s, "-o", f"{s}.{i}.o"], cwd=work,
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            still = []
            for p in running:
                if p.poll() is None:
                    still.append(p)
                else:
                    done += 1
            running = still
            time.sleep(0.005)
            for o in glob.glob(os.path.join(work, "*.o")):
                os.unlink(o)
        return {"workload": "compile", "files": done, "seconds": seconds, "jobs": jobs}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bpf_array_map_create(size: int):
    """A function that makes one ``bpf(BPF_MAP_CREATE)`` of a one-element BPF_MAP_TYPE_ARRAY with ``size``
    value bytes and returns ``(fd or -errno, ns it took)`` (x86-64: ``__NR_bpf`` 321)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    attr = struct.pack("IIIII", 2, 4, size, 1, 0) + bytes(108)  # map_type ARRAY, key 4, value size, 1 entry
    buf = ctypes.create_string_buffer(attr, len(attr))

    def create() -> tuple[int, int]:
        t0 = time.perf_counter_ns()
        fd = libc.syscall(321, 0, buf, len(attr))  # BPF_MAP_CREATE
        dt = time.perf_counter_ns() - t0
        return (fd if fd >= 0 else -ctypes.get_errno()), dt

    return create


def bpf_maps(seconds: float, size: int, hold: int = 8) -> dict:
    """Create one-element BPF array maps of ``size`` value bytes for ``seconds`` (a create every 10 ms,
    ``hold`` maps open, the oldest closed after each create); ``create_ns`` per successful create,
    ``errors`` by errno name (ENOMEM: neither kmalloc nor vmalloc could give the memory)."""
    if os.uname().machine != "x86_64":
        return {"workload": "bpf_maps", "size": size, "skipped": "bpf syscall number known for x86-64 only",
                "create_ns": [], "errors": {}}
    create = bpf_array_map_create(size)
    fds: list[int] = []
    create_ns: list[int] = []
    errors: dict[str, int] = {}
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            fd, dt = create()
            if fd < 0:
                e = -fd
                if e in (errno.EPERM, errno.EINVAL, errno.E2BIG, errno.ENOSYS) and not create_ns:
                    raise OSError(e, f"bpf(BPF_MAP_CREATE) of a {size}-byte array map: {os.strerror(e)}")
                name = errno.errorcode.get(e, str(e))
                errors[name] = errors.get(name, 0) + 1
            else:
                create_ns.append(dt)
                fds.append(fd)
                if len(fds) > hold:
                    os.close(fds.pop(0))
            time.sleep(0.01)
    finally:
        for fd in fds:
            os.close(fd)
    return {"workload": "bpf_maps", "size": size, "hold": hold, "create_ns": create_ns, "errors": errors}


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m kmemdes.lab.work thp_burst|touch|stream|compile|net|bpf_maps|sleep ARGS",
              file=sys.stderr)
        return 2
    name, args = argv[0], argv[1:]
    if name == "thp_burst":
        _emit(thp_burst(int(args[0])))
    elif name == "touch":
        _emit(touch(int(args[0])))
    elif name == "stream":
        _emit(stream(int(args[0]), args[1], small=args[2:3] == ["small"]))
    elif name == "compile":
        _emit(compile_loop(float(args[0]), int(args[1])))
    elif name == "net":
        _emit(net(float(args[0]), int(args[1]) if len(args) > 1 else 2))
    elif name == "bpf_maps":
        try:
            _emit(bpf_maps(float(args[0]), int(args[1]), int(args[2]) if len(args) > 2 else 8))
        except OSError as e:
            print(f"kmemdes.lab.work: {e.strerror}", file=sys.stderr)
            return 1
    elif name == "sleep":
        time.sleep(float(args[0]))
        _emit({"workload": "sleep", "seconds": float(args[0])})
    else:
        print(f"kmemdes.lab.work: unknown workload {name!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
