"""Parameter sweeps: the cartesian product of ``--set`` values, run on a local process pool or a Dask cluster.

``kmemdes sweep CONFIG.toml --set policy.fallback=default,defrag_mode --set seed=1..3`` plans six
runs, validates every resolved config before anything runs, and writes one ordinary run
directory per combination under the sweep folder, named from its settings
(``policy.fallback=defrag_mode,seed=2``), plus ``sweep.json`` (the plan and each run's status)
and ``compare.html`` (the comparison over every completed run; runs differing only in ``seed``
are replicas, shown as mean and 95 % confidence interval).

Runs are independent, so the sweep is resumable by construction: a run is complete when its
directory holds ``summary.json`` (run directories are renamed into place only when whole) and
its ``config.toml`` equals the planned resolved config.  Re-running the same command skips the
complete runs, removes the temporary directories an interrupted run left behind
(``.NAME.tmp-*``) and redoes the rest.  A run that fails is recorded with a one-line error
and the others go on.

Execution: a local :class:`concurrent.futures.ProcessPoolExecutor` (``spawn`` context, so it is
safe whatever threads the parent has) or, with ``scheduler="tcp://HOST:PORT"``, an existing
Dask distributed cluster.  Workers run :func:`run_packed`, a top-level function taking the
resolved config as TOML text, and send the run directory back as a tar archive, so they need
only kmemdes installed (same version) and no shared filesystem; configs that replay traces
need the trace at the same absolute path on the workers.

>>> parse_set("policy.fallback=default,defrag_mode")
Axis(key='policy.fallback', values=['default', 'defrag_mode'], spec='default,defrag_mode')
>>> parse_set("seed=1..3,7").values
[1, 2, 3, 7]
>>> run_name({"policy.fallback": "defrag_mode", "seed": 2})
'policy.fallback=defrag_mode,seed=2'
>>> run_name({"initial.snapshot": "/x/before"})
'initial.snapshot=_x_before~a6245ba8'
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import itertools
import json
import multiprocessing
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import traceback
import uuid
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from kmemdes import __version__
from kmemdes.config import Config, dump_toml, load_config, parse_config, parse_value, set_dotted
from kmemdes.errors import KmemdesError

__all__ = ["Axis", "SweepRun", "Plan", "SweepResult", "parse_set", "run_name", "plan_sweep", "load_plan",
           "run_one", "run_packed", "run_sweep", "default_workers", "PLAN_FILE", "COMPARE_FILE"]

PLAN_FILE = "sweep.json"
COMPARE_FILE = "compare.html"
_LOCK_FILE = ".sweep.lock"
_MAX_NAME = 200          # bytes of a run directory name before it is shortened (NAME_MAX is 255)
_RANGE = re.compile(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+@%-]")


# ----------------------------------------------------------------------------------- planning

@dataclass
class Axis:
    """One ``--set KEY=V1,V2,...``: a dotted config key and its values (parsed like TOML)."""

    key: str
    values: list
    spec: str


@dataclass
class SweepRun:
    """One combination: its settings (key -> value, in --set order), directory name and resolved config."""

    name: str
    settings: dict
    config_text: str
    status: str = "pending"          # pending | done | failed
    error: Optional[str] = None
    traceback: Optional[str] = None  # internal errors only (not KmemdesError)

    @property
    def config_sha256(self) -> str:
        return hashlib.sha256(self.config_text.encode()).hexdigest()


@dataclass
class Plan:
    """A whole sweep: the base config, the axes, the runs and the folder they go to."""

    config_path: str
    name: str
    axes: list[Axis]
    runs: list[SweepRun]
    out: Path


def _split_values(text: str) -> list[str]:
    """Split at commas outside brackets and quotes (``[1, 2],[3]`` is two values)."""
    parts, cur, depth, quote = [], [], 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def _fmt(v: Any) -> str:
    """A value as it appears in a run name: ``true``, ``3``, ``0.5``, ``defrag_mode``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    return repr(v) if isinstance(v, float) else str(v)


def parse_set(item: str) -> Axis:
    """Parse one ``--set KEY=V1,V2,...``: comma lists, inclusive integer ranges ``a..b``, TOML values.

    >>> parse_set("policy.thp_enabled=always,never").values
    ['always', 'never']
    >>> parse_set("machine.mem=256M").values, parse_set("policy.kswapd=true,false").values
    (['256M'], [True, False])
    >>> parse_set("seed=3..1")
    Traceback (most recent call last):
    ...
    kmemdes.errors.KmemdesError: --set seed=3..1: empty range 3..1 (ranges are inclusive, low..high)
    """
    if "=" not in item:
        raise KmemdesError(f"--set {item!r}: expected KEY=V1,V2,... (e.g. --set policy.fallback=default,defrag_mode)")
    key, spec = (s.strip() for s in item.split("=", 1))
    where = f"--set {key}={spec}"
    if not key:
        raise KmemdesError(f"--set {item!r}: missing the key before '='")
    values: list = []
    for text in _split_values(spec):
        if text == "":
            raise KmemdesError(f"{where}: empty value (values are separated by single commas)")
        m = _RANGE.match(text)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if lo > hi:
                raise KmemdesError(f"{where}: empty range {lo}..{hi} (ranges are inclusive, low..high)")
            values.extend(range(lo, hi + 1))
        else:
            values.append(parse_value(text))
    seen: set = set()
    for v in values:
        tag = (type(v).__name__, _fmt(v))
        if tag in seen:
            raise KmemdesError(f"{where}: value {_fmt(v)} given twice")
        seen.add(tag)
    return Axis(key, values, spec)


def run_name(settings: dict) -> str:
    """The run directory name of a combination: ``key=value`` joined by commas, safe as a file name.

    Keys keep their ``--set`` order except ``seed``, which always comes last, so the replicas of
    one configuration share everything up to ``seed=`` (the comparison groups and labels them).
    Characters other than letters, digits and ``._=,+@%-`` become ``_``; a name that had to change
    (or is too long) gets ``~`` and 8 hex digits of the SHA-1 of the exact settings, so two
    combinations never share a directory.

    >>> run_name({"seed": 1}), run_name({}), run_name({"seed": 3, "policy.kswapd": False})
    ('seed=1', 'base', 'policy.kswapd=false,seed=3')
    >>> run_name({"workloads.0.gfp": "GFP_KERNEL|__GFP_COMP"})
    'workloads.0.gfp=GFP_KERNEL___GFP_COMP~85a92898'
    """
    if not settings:
        return "base"
    items = [(k, v) for k, v in settings.items() if k != "seed"] + [(k, v) for k, v in settings.items() if k == "seed"]
    raw = ",".join(f"{k}={_fmt(v)}" for k, v in items)
    safe = _UNSAFE.sub("_", raw)
    if safe != raw or len(safe.encode()) > _MAX_NAME:
        safe = safe[:_MAX_NAME] + "~" + hashlib.sha1(raw.encode()).hexdigest()[:8]
    return safe


def _resolved_text(cfg: Config) -> str:
    """The config.toml a worker will write for ``cfg`` (dump, parse again, dump: a fixed point)."""
    text = dump_toml(cfg)
    return dump_toml(parse_config(text, "<resolved config>"))


def _default_out(name: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".") or "sweep"
    return Path("sweeps") / safe


def plan_sweep(config_path: str | Path, sets: Sequence[str], out: Optional[str | Path] = None) -> Plan:
    """Expand the cartesian product of ``sets`` over the config and validate every combination.

    Nothing runs here: a bad key or value in any combination raises :class:`KmemdesError`
    naming the ``--set`` and the key, before a single run starts.  The first ``--set`` varies
    slowest, the last fastest (``itertools.product`` order); run order is plan order.
    """
    base = load_config(config_path)
    axes = [parse_set(s) for s in sets]
    keys: dict[str, str] = {}
    for a in axes:
        if a.key in keys:
            raise KmemdesError(f"--set {a.key}: given twice (put all its values in one --set {a.key}=V1,V2,...)")
        keys[a.key] = a.spec
    # each value alone first: the error then names the one --set at fault
    for a in axes:
        for v in a.values:
            set_dotted(base, a.key, v, f"--set {a.key}={a.spec}")
    runs: list[SweepRun] = []
    names: dict[str, dict] = {}
    for combo in itertools.product(*(a.values for a in axes)):
        cfg = base
        settings = {}
        for a, v in zip(axes, combo):
            where = f"--set {a.key}={a.spec}"
            if settings:
                where += " (with " + ", ".join(f"{k}={_fmt(x)}" for k, x in settings.items()) + ")"
            cfg = set_dotted(cfg, a.key, v, where)
            settings[a.key] = v
        name = run_name(settings)
        if name in names:
            raise KmemdesError(f"--set: {settings} and {names[name]} give the same run directory name {name!r}")
        names[name] = settings
        runs.append(SweepRun(name, settings, _resolved_text(cfg)))
    dest = Path(out) if out is not None else _default_out(base.name)
    return Plan(str(Path(config_path).resolve()), base.name, axes, runs, dest)


def load_plan(config_path: str | Path, out: Optional[str | Path] = None, sets: Sequence[str] = ()) -> Plan:
    """``--resume``: the plan of an earlier sweep from ``DIR/sweep.json`` (its --set axes, re-validated).

    ``sets``, when given, must be the same axes as the stored plan's.
    """
    base = load_config(config_path)
    dest = Path(out) if out is not None else _default_out(base.name)
    pf = dest / PLAN_FILE
    try:
        stored = json.loads(pf.read_text())
        stored_axes = [f"{a['key']}={a['spec']}" for a in stored["axes"]]
        stored_config = stored["config"]
    except FileNotFoundError:
        raise KmemdesError(f"{pf}: no sweep to resume (run the sweep once without --resume)") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise KmemdesError(f"{pf}: not a sweep plan ({type(e).__name__}: {e})") from None
    if str(Path(config_path).resolve()) != stored_config:
        raise KmemdesError(f"--resume: {pf} is a sweep of {stored_config}, not of {Path(config_path).resolve()}")
    if sets:
        given = [f"{a.key}={a.spec}" for a in (parse_set(s) for s in sets)]
        if given != stored_axes:
            raise KmemdesError(f"--resume: --set {' --set '.join(given)} differs from the stored plan "
                               f"(--set {' --set '.join(stored_axes)}); drop --resume to start a new sweep")
    return plan_sweep(config_path, stored_axes, dest)


# ----------------------------------------------------------------------------------- one run

def _one_line(e: BaseException) -> str:
    if isinstance(e, KmemdesError):
        msg = str(e)
    else:
        msg = f"{type(e).__name__}: {e}"
    return " ".join(msg.split()) or type(e).__name__


def run_one(config_text: str, out: str) -> dict:
    """Run one resolved config (TOML text) into the run directory ``out``; never raises.

    What a process-pool worker executes.  Returns ``{"ok": True, "wall_s": ...}`` or
    ``{"ok": False, "error": one line, "traceback": text or None}``.
    """
    from kmemdes.sim.engine import run_config

    t0 = time.perf_counter()
    try:
        cfg = parse_config(config_text, f"{out}/config.toml")
        run_config(cfg, out, progress=False, force=True)  # the sweep's own run directory (an older config)
    except Exception as e:  # noqa: BLE001 - a failing run is reported, the sweep goes on
        tb = None if isinstance(e, KmemdesError) else traceback.format_exc()
        return {"ok": False, "error": _one_line(e), "traceback": tb, "wall_s": time.perf_counter() - t0}
    return {"ok": True, "error": None, "traceback": None, "wall_s": time.perf_counter() - t0}


def run_packed(config_text: str, name: str) -> dict:
    """Run one resolved config in a private temporary folder and return the run directory as a tar archive.

    What a Dask worker executes: the result travels back to the client (key ``"tar"``), so
    workers need no filesystem shared with the client.
    """
    tmp = tempfile.mkdtemp(prefix="kmemdes-sweep-")
    try:
        res = run_one(config_text, os.path.join(tmp, name))
        if res["ok"]:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                tar.add(os.path.join(tmp, name), arcname="run")
            res["tar"] = buf.getvalue()
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _worker_version() -> str:
    return __version__


def _install(tmp: Path, out: Path) -> None:
    """Rename a complete run directory into place, replacing an outdated one (as rundir.write_run does)."""
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, old / "run")
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)


def _unpack(data: bytes, out: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
            tar.extractall(tmp, filter="data")
        os.chmod(tmp / "run", 0o755)
        _install(tmp / "run", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------- the sweep

@dataclass
class SweepResult:
    plan: Plan
    done: int = 0        # run now
    skipped: int = 0     # already complete
    failed: int = 0
    compare: Optional[Path] = None
    compare_error: Optional[str] = None
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.compare_error is None

    def line(self) -> str:
        """The final summary line."""
        n = len(self.plan.runs)
        where = (f"compare: {self.compare}" if self.compare else
                 f"compare: not written ({self.compare_error or 'no completed run'})")
        return (f"sweep {self.plan.out}: {n} runs: {self.done} done, {self.skipped} skipped, "
                f"{self.failed} failed in {self.wall_s:.1f} s; {where}")


def default_workers() -> int:
    """The number of CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def _complete(run: SweepRun, out: Path) -> bool:
    d = out / run.name
    try:
        return (d / "summary.json").is_file() and (d / "config.toml").read_text() == run.config_text
    except (OSError, UnicodeDecodeError):
        return False


def _clean_leftovers(plan: Plan) -> int:
    """Remove ``.NAME.tmp-*`` / ``.NAME.old-*`` left by interrupted runs of this plan; return how many."""
    names = {r.name for r in plan.runs}
    n = 0
    for p in plan.out.iterdir():
        m = re.match(r"^\.(.+)\.(tmp|old)-[^/]*$", p.name)
        if m and m.group(1) in names and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            n += 1
        elif p.name.startswith(f".{PLAN_FILE}.tmp-") and p.is_file():
            p.unlink(missing_ok=True)
            n += 1
    return n


def _plan_json(plan: Plan) -> str:
    doc = {
        "kmemdes_version": __version__,
        "config": plan.config_path,
        "name": plan.name,
        "axes": [{"key": a.key, "spec": a.spec, "values": a.values} for a in plan.axes],
        "runs": [{"dir": r.name, "settings": r.settings, "config_sha256": r.config_sha256, "status": r.status,
                  "error": r.error, **({"traceback": r.traceback} if r.traceback else {})} for r in plan.runs],
        "compare": COMPARE_FILE,
    }
    return json.dumps(doc, indent=1, default=str) + "\n"


def _write_plan(plan: Plan) -> None:
    dest = plan.out / PLAN_FILE
    tmp = plan.out / f".{PLAN_FILE}.tmp-{os.getpid()}"
    tmp.write_text(_plan_json(plan))
    os.replace(tmp, dest)


@contextlib.contextmanager
def _locked(out: Path):
    """One sweep at a time per folder (flock on DIR/.sweep.lock)."""
    fd = os.open(out / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KmemdesError(f"{out}: another sweep is running in this folder") from None
        yield
    finally:
        os.close(fd)


class _Reporter:
    """Progress over runs on stderr: a rich bar (``mode`` True, or None on a terminal), one line per
    finished run (None elsewhere), or nothing (False)."""

    def __init__(self, total: int, mode: Optional[bool]):
        self.total, self.count = total, 0
        self.quiet = mode is False
        self.bar = None
        if (mode or (mode is None and sys.stderr.isatty())) and total:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.description}"),
                                console=Console(stderr=True), transient=False)
            self.task = self.bar.add_task("", total=total)
            self.bar.start()

    def __call__(self, run: SweepRun, what: str, detail: str = "") -> None:
        self.count += 1
        text = f"[{self.count}/{self.total}] {what} {run.name}" + (f": {detail}" if detail else "")
        if self.quiet:
            return
        if self.bar is not None:
            if what == "failed":
                self.bar.console.print(text, markup=False, highlight=False)
            self.bar.update(self.task, advance=1, description=run.name)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _record(plan: Plan, run: SweepRun, res: dict, report: _Reporter, result: SweepResult) -> None:
    if res.get("ok"):
        run.status, run.error, run.traceback = "done", None, None
        result.done += 1
        report(run, "done", f"{res.get('wall_s', 0):.1f} s")
    else:
        run.status, run.error, run.traceback = "failed", res.get("error") or "unknown error", res.get("traceback")
        result.failed += 1
        report(run, "failed", run.error)
    _write_plan(plan)


def die_with_parent(parent_pid: int) -> None:
    """Pool worker initializer: the worker is killed when the sweep process dies (``prctl(PR_SET_PDEATHSIG,
    SIGKILL)`` on Linux), and exits at once if its parent is already gone (the race before the prctl).
    SIGTERM (:func:`stop_pool`) exits through ``SystemExit`` so that the task's ``finally`` blocks
    remove its temporary files; Ctrl-C is the parent's to handle."""
    import ctypes
    import signal

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass  # not Linux: the parent-pid check below still runs
    if os.getppid() != parent_pid:
        os._exit(1)


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a process pool's work now (Ctrl-C, SIGTERM): its workers terminated, its queued tasks
    cancelled, nothing left running."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            proc.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def _run_local(plan: Plan, todo: list[SweepRun], workers: int, runner: Callable[[str, str], dict],
               record: Callable[[SweepRun, dict], None]) -> None:
    """Run ``todo`` on a spawn-context process pool, at most ``workers`` at a time.

    If a worker process dies (killed, out of memory), the pool is broken and every run in flight
    fails with it; those runs are retried one at a time in a fresh pool, so only a run that kills
    its worker when it runs alone is recorded as failed.
    """
    ctx = multiprocessing.get_context("spawn")
    queue: deque[SweepRun] = deque(todo)
    suspects: deque[SweepRun] = deque()
    while queue or suspects:
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=die_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            inflight: dict = {}
            broken = False
            try:
                while (queue or suspects or inflight) and not broken:
                    try:
                        if suspects:
                            if not inflight:
                                r = suspects[0]
                                inflight[pool.submit(runner, r.config_text, str(plan.out / r.name))] = (r, True)
                                suspects.popleft()
                        else:
                            while queue and len(inflight) < workers:
                                r = queue[0]
                                inflight[pool.submit(runner, r.config_text, str(plan.out / r.name))] = (r, False)
                                queue.popleft()
                    except BrokenProcessPool:
                        # a worker died before its future said so: the run not submitted stays queued
                        broken = True
                        if not inflight:
                            break
                    finished, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                    for f in finished:
                        r, alone = inflight.pop(f)
                        try:
                            res = f.result()
                        except BrokenProcessPool:
                            broken = True
                            if alone:
                                record(r, {"ok": False, "error": "the worker process died running this config "
                                                                 "(killed, or out of memory?)"})
                            else:
                                suspects.append(r)
                        except Exception as e:  # noqa: BLE001 - e.g. a result that cannot be unpickled
                            record(r, {"ok": False, "error": _one_line(e), "traceback": traceback.format_exc()})
                        else:
                            record(r, res)
                if broken:
                    for f, (r, alone) in inflight.items():
                        (suspects.append(r) if not alone else
                         record(r, {"ok": False, "error": "the worker process died (killed, or out of memory?)"}))
            except BaseException:  # Ctrl-C: stop the runs in flight now (resume redoes them)
                stop_pool(pool)
                raise


_ADDRESS = re.compile(r"^(?:[a-z]+://)?(?:\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):\d{1,5}$")


def _connect(address: str):
    """A Dask client on the scheduler at ``address``, with at least one worker running this kmemdes."""
    try:
        from distributed import Client
    except ImportError:
        raise KmemdesError("--scheduler: dask.distributed is not installed (pip install distributed)") from None
    try:
        client = Client(address, timeout="15s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise KmemdesError(f"--scheduler {address}: cannot connect ({_one_line(e)})") from None
    try:
        client.wait_for_workers(1, timeout=60)
    except (TimeoutError, OSError) as e:
        client.close()
        raise KmemdesError(f"--scheduler {address}: no worker joined the cluster within 60 s ({_one_line(e)})") from None
    try:
        versions = set(client.run(_worker_version).values())
    except Exception as e:  # noqa: BLE001 - a worker that cannot import kmemdes fails to unpickle the function
        client.close()
        raise KmemdesError(f"--scheduler {address}: the workers cannot run kmemdes ({_one_line(e)}); "
                           f"install kmemdes {__version__} on every worker") from None
    if versions != {__version__}:
        client.close()
        raise KmemdesError(f"--scheduler {address}: workers run kmemdes {', '.join(sorted(versions))}, "
                           f"this is {__version__}; install the same version on every worker")
    return client


def _run_dask(plan: Plan, todo: list[SweepRun], client, record: Callable[[SweepRun, dict], None]) -> None:
    """Submit ``todo`` to the Dask cluster of ``client`` (from :func:`_connect`); unpack each run
    directory as it comes back.  The caller closes the client."""
    from distributed import as_completed

    tag = uuid.uuid4().hex[:8]
    futures: dict = {}
    try:
        for r in todo:
            f = client.submit(run_packed, r.config_text, r.name, key=f"kmemdes-sweep-{tag}-{r.name}", pure=False)
            futures[f] = r
        for f in as_completed(list(futures), loop=client.loop):
            r = futures.pop(f)
            try:
                res = f.result()
            except Exception as e:  # noqa: BLE001 - KilledWorker, lost connection ...
                res = {"ok": False, "error": f"dask: {_one_line(e)}"}
            f.release()
            if res.get("ok"):
                try:
                    _unpack(res.pop("tar"), plan.out / r.name)
                except (OSError, tarfile.TarError) as e:
                    res = {"ok": False, "error": f"cannot install the run directory: {_one_line(e)}"}
            record(r, res)
    finally:
        for f in futures:
            f.cancel()


def run_sweep(plan: Plan, workers: Optional[int] = None, scheduler: Optional[str] = None,
              progress: Optional[bool] = None, runner: Callable[[str, str], dict] = run_one,
              compare: bool = True) -> SweepResult:
    """Run a planned sweep: skip complete runs, clean leftovers, run the rest, write sweep.json and compare.html.

    ``workers``: local pool size (default: the CPUs available); ``scheduler``: the address of a
    Dask distributed scheduler instead (``tcp://HOST:PORT``).  ``progress``: True a rich bar, False
    silent, None a bar when stderr is a terminal and one line per run otherwise.  ``runner`` is what local workers execute (a top-level function
    ``(config_text, out) -> dict`` like :func:`run_one`).  Failed runs are counted in the result,
    never raised; Ctrl-C stops the workers and leaves sweep.json with the runs done so far.
    """
    t0 = time.perf_counter()
    if workers is not None and workers < 1:
        raise KmemdesError(f"--workers {workers}: must be at least 1")
    if scheduler is not None and not _ADDRESS.match(scheduler):
        raise KmemdesError(f"--scheduler {scheduler}: expected a scheduler address such as tcp://HOST:8786")
    out = plan.out
    client = None
    if scheduler is not None and not all(_complete(r, out) for r in plan.runs):
        # connect before creating anything: a sweep that cannot start leaves no folder, sweep.json or lock behind
        client = _connect(scheduler)
    try:
        return _run_sweep(plan, workers, scheduler, client, progress, runner, compare, t0)
    finally:
        if client is not None:
            client.close()


def _run_sweep(plan: Plan, workers: Optional[int], scheduler: Optional[str], client, progress: Optional[bool],
               runner: Callable[[str, str], dict], compare: bool, t0: float) -> SweepResult:
    out = plan.out
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise KmemdesError(f"{out}: exists and is not a folder (a sweep folder is created there)")
        if any(p.name not in (PLAN_FILE, _LOCK_FILE) for p in out.iterdir()) and not (out / PLAN_FILE).is_file():
            raise KmemdesError(f"{out}: exists and is not a kmemdes sweep folder (no {PLAN_FILE}): not used")
    else:
        # only the last component is created (and the default sweeps/ folder)
        if not out.parent.is_dir() and out.parent != Path("sweeps"):
            raise KmemdesError(f"{out}: folder {out.parent} does not exist")
        try:
            out.mkdir(parents=out.parent == Path("sweeps"))
        except OSError as e:
            raise KmemdesError(f"{out}: cannot create the sweep folder ({e.strerror})") from None
    result = SweepResult(plan)
    with _locked(out):
        _clean_leftovers(plan)
        todo = []
        for r in plan.runs:
            if _complete(r, out):
                r.status, r.error = "done", None
                result.skipped += 1
            else:
                r.status, r.error = "pending", None
                todo.append(r)
        _write_plan(plan)
        report = _Reporter(len(plan.runs), progress)
        try:
            for r in plan.runs:
                if r.status == "done":
                    report(r, "skipped", "already complete")

            def record(r: SweepRun, res: dict) -> None:
                _record(plan, r, res, report, result)

            if todo and scheduler:
                own = client is None  # runs became incomplete since run_sweep looked
                if own:
                    client = _connect(scheduler)
                try:
                    _run_dask(plan, todo, client, record)
                finally:
                    if own:
                        client.close()
            elif todo:
                _run_local(plan, todo, min(workers or default_workers(), len(todo)), runner, record)
        finally:
            report.close()
            _write_plan(plan)
        if compare:
            complete = [out / r.name for r in plan.runs if r.status == "done"]
            dest = out / COMPARE_FILE
            if complete:
                from kmemdes.report.compare import write_comparison

                try:
                    result.compare = write_comparison(complete, dest, "html")
                except Exception as e:  # noqa: BLE001 - the runs are kept; say why there is no comparison
                    result.compare_error = _one_line(e)
            else:
                dest.unlink(missing_ok=True)
    result.wall_s = time.perf_counter() - t0
    return result
