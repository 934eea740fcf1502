"""A fuzzer of the CLI on corrupted versions of the shipped traces (tests/test_fuzz.py, ``make fuzz``).

Seeds are small real traces of every format kmemdes reads, cut from ``traces/``: ftrace text,
trace-cmd report text, perf script text, trace-cmd ``trace.dat``, ``.kmt`` and Parquet (the
last two converted from the ftrace head).  Each input is a seed with one to three mutations:
text formats get field values no kernel prints (``order=-1``, ``order=99``, ``pfn=-5``,
``pfn=0xffffffffffffffff``, a timestamp of ``18446744073709551615.999999`` or ``0.000000``, a
flipped digit), flipped bytes, dropped, duplicated or swapped lines, a cut; binary formats get
flipped bits, overwritten words and cuts.  Each input is replayed with ``kmemdes replay``
(mirror and policy modes alternately) in a worker process, with a time limit.

An input passes when the command exits 0, or exits 2 with exactly one line on stderr
(``kmemdes: error: ...``) and no traceback; anything else (an internal error, a traceback, a
time-out) is a failure.  ``python -m tests._fuzz --count N --seed S`` runs N inputs and prints
the counts (what ``make fuzz`` does).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing
import os
import random
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "traces"
FORMATS = ("ftrace", "tracecmd", "perf", "tracedat", "kmt", "parquet")
SEED_LINES = 200  # lines of each text seed: a replay of it takes ~0.1 s

_VALUES = {
    "order": ["-1", "99", "11", "20", "-128", "255", "1000000"],
    "pfn": ["-5", "0xffffffffffffffff", "0x7fffffffffffffff", "-1", "0x0", "0x10000000000"],
    "migratetype": ["-3", "99", "127"],
    "ptr": ["0", "(nil)", "ffffffffffffffff"],
    "bytes_req": ["-1", "99999999999999", "0"],
    "size": ["-4096", "0", "18446744073709551615"],
    "nr_lazy": ["-1"],
    "va_start": ["0", "18446744073709551615"],
}
_TIMES = ["18446744073709551615.999999", "0.000000", "9999999999.999999", "1.000000", "99999.999999"]


@dataclass
class Result:
    """Counts of a fuzz run and the failures (input kind, mutation, what happened)."""

    count: int = 0
    outcomes: dict = field(default_factory=dict)  # "exit 0", "exit 2" -> n
    failures: list = field(default_factory=list)
    seconds: float = 0.0
    slowest: float = 0.0
    workdir: str = ""

    def line(self) -> str:
        out = ", ".join(f"{k}: {v}" for k, v in sorted(self.outcomes.items()))
        return (f"{self.count} inputs in {self.seconds:.0f} s ({out}); {len(self.failures)} failures; "
                f"slowest input {self.slowest:.1f} s")


def _zstd_text(path: Path) -> bytes:
    import zstandard

    with open(path, "rb") as f:
        return zstandard.ZstdDecompressor().stream_reader(f).read(4 << 20)


def _head(text: bytes, n: int) -> bytes:
    return b"".join(text.splitlines(keepends=True)[:n])


def make_seeds(workdir: Path) -> dict[str, Path]:
    """The seed inputs of every format, written into ``workdir``."""
    from kmemdes.trace.kmt import write_kmt, write_parquet
    from kmemdes.trace.reader import read_trace

    workdir.mkdir(parents=True, exist_ok=True)
    seeds = {}
    texts = {"ftrace": _zstd_text(SHIPPED / "a_idle_stream" / "trace.txt.zst"),
             "tracecmd": _zstd_text(SHIPPED / "tracedat_small" / "report.txt.zst"),
             "perf": _zstd_text(SHIPPED / "h_perf_sample" / "report_head.txt.zst")}
    for name, text in texts.items():
        p = workdir / f"seed_{name}.txt"
        lines = text.splitlines(keepends=True)
        # the ftrace seed starts where page events are dense (frees, allocations, drains)
        start = 20 if name == "ftrace" else 0
        p.write_bytes(b"".join(lines[start:start + SEED_LINES]))
        seeds[name] = p
    seeds["tracedat"] = workdir / "seed.dat"
    shutil.copyfile(SHIPPED / "tracedat_small" / "trace.dat", seeds["tracedat"])
    t = read_trace(seeds["ftrace"])
    # the same bytes in every work folder (the header names its source): a seed gives the same inputs
    t.meta = {k: ("seed_ftrace.txt" if isinstance(v, str) and str(workdir) in v else v) for k, v in t.meta.items()}
    seeds["kmt"] = write_kmt(t, workdir / "seed.kmt")
    seeds["parquet"] = write_parquet(t, workdir / "seed.parquet")
    return seeds


# ------------------------------------------------------------------ mutations

def _mutate_text(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    lines = data.splitlines(keepends=True)
    what = rng.randrange(10)
    i = rng.randrange(len(lines))
    line = lines[i]
    if what <= 3:  # a field value no kernel prints
        keys = [k for k in _VALUES if re.search(rb"\b" + k.encode() + rb"[=:] ?", line)]
        if keys:
            k = rng.choice(keys)
            v = rng.choice(_VALUES[k])
            lines[i] = re.sub(rb"(\b" + k.encode() + rb"[=:] ?)[^ \n]+", lambda m: m.group(1) + v.encode(), line,
                              count=1)
            return b"".join(lines), f"line {i + 1}: {k}={v}"
        what = 4
    if what == 4:  # a timestamp
        v = rng.choice(_TIMES)
        lines[i] = re.sub(rb"\d+\.\d{6}:", v.encode() + b":", line, count=1)
        return b"".join(lines), f"line {i + 1}: timestamp {v}"
    if what == 5 and line.strip():  # a flipped digit or byte
        j = rng.randrange(len(line))
        b = bytearray(line)
        b[j] = ord(str(rng.randrange(10))) if chr(b[j]).isdigit() else b[j] ^ (1 << rng.randrange(8))
        lines[i] = bytes(b)
        return b"".join(lines), f"line {i + 1}: byte {j} changed"
    if what == 6:
        del lines[i]
        return b"".join(lines), f"line {i + 1} deleted"
    if what == 7:
        lines.insert(rng.randrange(len(lines) + 1), line)
        return b"".join(lines), f"line {i + 1} duplicated"
    if what == 8:
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return b"".join(lines), f"lines {i + 1} and {j + 1} swapped"
    cut = rng.randrange(len(data))
    return data[:cut], f"cut at byte {cut}"


def _mutate_binary(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    b = bytearray(data)
    what = rng.randrange(6)
    # half of the changes in the first 4 KiB: headers, metadata, the first chunk
    pos = rng.randrange(min(len(b), 4096)) if rng.random() < 0.5 else rng.randrange(len(b))
    if what <= 2:
        b[pos] ^= 1 << rng.randrange(8)
        return bytes(b), f"bit flipped at byte {pos}"
    if what == 3:
        w = rng.choice([b"\x00" * 8, b"\xff" * 8, b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00"])
        b[pos:pos + len(w)] = w
        return bytes(b[:len(data)]), f"word {w.hex()} at byte {pos}"
    if what == 4:
        n = rng.randrange(1, 64)
        b[pos:pos + n] = bytes(rng.randrange(256) for _ in range(n))
        return bytes(b[:len(data)]), f"{n} random bytes at {pos}"
    return bytes(b[:pos]), f"cut at byte {pos}"


def mutate(fmt: str, data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One input: ``data`` with one to three mutations, and their description."""
    fn = _mutate_text if fmt in ("ftrace", "tracecmd", "perf") else _mutate_binary
    whats = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if not data:
            break
        data, what = fn(data, rng)
        whats.append(what)
    return data, "; ".join(whats)


# ------------------------------------------------------------------ running

def run_cli(args: list[str]) -> tuple[int, str]:
    """``kmemdes ARGS`` in this process: (exit status, stderr)."""
    from kmemdes.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(args)
    return rc, err.getvalue()


def judge(rc: int, stderr: str) -> str | None:
    """Why an outcome is a failure (None: it passes)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    if "Traceback" in stderr:
        return "traceback"
    if rc == 0:
        return None
    if rc != 2:
        return f"exit {rc}: {lines[-1] if lines else ''}"
    if len(lines) != 1 or not lines[0].startswith("kmemdes: error: "):
        return f"exit 2 without a one-line error: {lines[:3]}"
    return None


def _worker(conn) -> None:
    """Worker process: replays the inputs the parent sends, answers (rc, stderr, seconds)."""
    while True:
        msg = conn.recv()
        if msg is None:
            return
        path, mode, out = msg
        t = time.perf_counter()
        # what native code writes to file descriptor 2 (a Rust panic) is part of the output judged
        with tempfile.TemporaryFile() as fd2:
            saved = os.dup(2)
            os.dup2(fd2.fileno(), 2)
            try:
                rc, err = run_cli(["replay", path, "--mode", mode, "-o", out])
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            fd2.seek(0)
            native = fd2.read().decode("utf-8", "replace")
        shutil.rmtree(out, ignore_errors=True)
        conn.send((rc, native + err, time.perf_counter() - t))


class _Pool:
    """One spawn-context worker at a time, replaced when an input runs past the time limit."""

    def __init__(self):
        self.ctx = multiprocessing.get_context("spawn")
        self.proc = None
        self.conn = None

    def start(self) -> None:
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child,), daemon=True)
        self.proc.start()

    def run(self, path: str, mode: str, out: str, limit: float) -> tuple[int, str, float] | None:
        if self.proc is None:
            self.start()
        self.conn.send((path, mode, out))
        if not self.conn.poll(limit):
            self.kill()
            return None
        try:
            return self.conn.recv()
        except EOFError:  # the worker died (a crash of native code)
            self.kill()
            return (-1, "worker process died", 0.0)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.join()
        self.proc = None

    def close(self) -> None:
        if self.proc is not None:
            self.conn.send(None)
            self.proc.join(5)
            self.kill()


def fuzz(count: int, seed: int = 0, limit: float = 30.0, workdir: Path | None = None,
         log=None) -> Result:
    """Run ``count`` mutated inputs (formats in turn, modes alternating); return the counts."""
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="kmemdes_fuzz_")) if own else workdir
    res = Result(workdir=str(workdir))
    pool = _Pool()
    t0 = time.perf_counter()
    try:
        seeds = {f: p.read_bytes() for f, p in make_seeds(workdir / "seeds").items()}
        suffix = {"ftrace": ".txt", "tracecmd": ".txt", "perf": ".txt", "tracedat": ".dat", "kmt": ".kmt",
                  "parquet": ".parquet"}
        rng = random.Random(seed)
        for n in range(count):
            fmt = FORMATS[n % len(FORMATS)]
            mode = ("mirror", "policy")[(n // len(FORMATS)) % 2]
            data, what = mutate(fmt, seeds[fmt], rng)
            path = workdir / f"input{suffix[fmt]}"
            path.write_bytes(data)
            got = pool.run(str(path), mode, str(workdir / "run"), limit)
            res.count += 1
            if got is None:
                res.outcomes["time-out"] = res.outcomes.get("time-out", 0) + 1
                res.failures.append((n, fmt, mode, what, f"no answer within {limit:.0f} s"))
                shutil.copyfile(path, workdir / f"failure{n}{suffix[fmt]}")
                continue
            rc, err, secs = got
            res.slowest = max(res.slowest, secs)
            key = f"exit {rc}"
            res.outcomes[key] = res.outcomes.get(key, 0) + 1
            why = judge(rc, err)
            if why:
                res.failures.append((n, fmt, mode, what, why))
                keep = workdir / f"failure{n}{suffix[fmt]}"
                shutil.copyfile(path, keep)
            if log and (n + 1) % 500 == 0:
                log(f"{n + 1} inputs, {len(res.failures)} failures, {time.perf_counter() - t0:.0f} s")
    finally:
        pool.close()
        res.seconds = time.perf_counter() - t0
        if own and not res.failures:
            shutil.rmtree(workdir, ignore_errors=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests._fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--limit", type=float, default=60.0, help="seconds per input before it counts as a hang")
    a = ap.parse_args(argv)
    res = fuzz(a.count, a.seed, a.limit, log=lambda m: print(m, file=sys.stderr, flush=True))
    for f in res.failures[:50]:
        print("FAIL input %d (%s, %s): %s -> %s" % f)
    if res.failures:
        print(f"failing inputs kept in {res.workdir}")
    print(res.line())
    return 1 if res.failures else 0


if __name__ == "__main__":
    os.environ.setdefault("POLARS_MAX_THREADS", "1")
    sys.exit(main())
