"""Experiment configs: a TOML schema validated with pydantic, errors that name the key path.

A config says which machine to simulate, which kernel policies apply, what
state memory starts in, which workloads run (synthetic generators or trace
replays), for how long, with which seed, and how often metrics are sampled.
Every field has a default; ``kmemdes run CONFIG --print-config`` shows the
resolved config with all of them written out (:func:`dump_toml`).

>>> cfg = parse_config('name = "x"\\n[machine]\\nmem = "1G"\\n[[workloads]]\\nkind = "driver"\\norder = 4\\n')
>>> cfg.machine.mem, cfg.workloads[0].order, cfg.policy.fallback
('1G', 4, 'default')
>>> parse_config('[machine]\\nmemory = "1G"\\n', "x.toml")
Traceback (most recent call last):
...
kmemdes.errors.KmemdesError: x.toml: machine.memory: unknown key (allowed: arch, mem, cpus, kernel)
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kmemdes.errors import KmemdesError

__all__ = [
    "Config",
    "Machine",
    "PolicyConfig",
    "Initial",
    "CostConfig",
    "LabConfig",
    "LabWorkload",
    "LAB_BUILTINS",
    "WORKLOAD_KINDS",
    "load_config",
    "parse_config",
    "size_or_zero",
    "dump_toml",
    "parse_duration",
    "set_dotted",
    "parse_value",
]

_UNITS_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "min": 60_000_000_000,
             "h": 3_600_000_000_000}


def parse_duration(value: Any) -> int:
    """A duration as integer nanoseconds: ``"1.5s"``, ``"100ms"``, ``"20us"``, ``"2min"``, or a number of seconds.

    >>> parse_duration("100ms"), parse_duration("2s"), parse_duration(0.5), parse_duration("1h") // 10**9
    (100000000, 2000000000, 500000000, 3600)
    """
    if isinstance(value, bool):
        raise ValueError("a duration such as '100ms', '2s' or a number of seconds")
    if isinstance(value, (int, float)):
        ns = int(round(value * 1e9))
    else:
        s = str(value).strip()
        for unit in sorted(_UNITS_NS, key=len, reverse=True):
            if s.endswith(unit):
                num = s[: -len(unit)].strip()
                try:
                    ns = int(round(float(num) * _UNITS_NS[unit]))
                except ValueError:
                    raise ValueError(f"bad duration {value!r}: use e.g. '100ms', '2s', '5min'") from None
                break
        else:
            raise ValueError(f"bad duration {value!r}: use e.g. '100ms', '2s', '5min'")
    if ns < 0:
        raise ValueError(f"duration {value!r} is negative")
    return ns


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _check_size(v: str) -> str:
    from kmemdes.mm.mm_init import parse_size

    try:
        parse_size(v)
    except KmemdesError as e:
        raise ValueError(str(e)) from None
    return v


def _check_size_or_zero(v: str) -> str:
    return v if str(v).strip() == "0" else _check_size(v)


def size_or_zero(v: str) -> int:
    """Bytes of a size field that may be ``"0"`` (none)."""
    from kmemdes.mm.mm_init import parse_size

    return 0 if str(v).strip() == "0" else parse_size(v)


def _check_duration(v: Any) -> Any:
    parse_duration(v)
    return v


def _check_positive_duration(v: Any) -> Any:
    if parse_duration(v) <= 0:
        raise ValueError(f"must be longer than 0 (got {v!r})")
    return v


def _check_mem(v: Any) -> Any:
    """``machine.mem``: a size text (``"4G"``) or a plain number of bytes (``268435456``), at least 16 MiB."""
    from kmemdes.mm.mm_init import MIN_MEM, parse_size

    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise ValueError(f"a size such as \"4G\" or a number of bytes, got {v!r}")
    try:
        n = parse_size(str(v))
    except KmemdesError as e:
        raise ValueError(str(e)) from None
    if n < MIN_MEM:
        raise ValueError(f"{v!r} is too small: at least 16M")
    return v


def _check_gfp(v: str) -> str:
    from kmemdes.mm.gfp import parse_gfp

    parse_gfp(v)
    return v


class Machine(_Strict):
    """The simulated machine (or, with ``initial.state = "snapshot"``, the snapshot's)."""

    arch: Literal["x86_64", "x86_32"] = "x86_64"
    mem: Union[int, str] = Field("4G", description="a size (160M, 4G) or a number of bytes")
    cpus: int = Field(2, ge=1, le=1024)
    kernel: Literal["6.18"] = "6.18"

    _mem = field_validator("mem", mode="before")(_check_mem)

    @model_validator(mode="after")
    def _pae_limit(self):
        from kmemdes.mm.mm_init import parse_size

        if self.arch == "x86_32" and parse_size(str(self.mem)) > (64 << 30):
            raise ValueError(f"mem: {self.mem!r}: x86_32 (PAE) supports at most 64G")
        return self


class PolicyConfig(_Strict):
    """Kernel policies: data the models read (KERNEL.md sections 3, 5, 7, 11, 13)."""

    fallback: Literal["default", "defrag_mode"] = "default"
    fallback_version: Literal["6.18", "6.14"] = "6.18"
    nofragment: bool = Field(True, description="ALLOC_NOFRAGMENT on the fast path (5.0+); false with "
                                               "fallback_version 6.14 is the 4.x behaviour")
    group_by_mobility: bool = True
    thp_enabled: Literal["always", "madvise", "never"] = "madvise"
    thp_defrag: Literal["always", "defer", "defer+madvise", "madvise", "never"] = "madvise"
    compaction_proactiveness: int = Field(20, ge=0, le=100)
    extfrag_threshold: int = Field(500, ge=0, le=1000)
    watermark_scale_factor: int = Field(10, ge=1, le=3000)
    watermark_boost_factor: int = Field(15000, ge=0)
    min_free_kbytes: int = Field(0, ge=0, description="0: computed at boot as the kernel does")
    kvmalloc_fallback: bool = True
    compaction: bool = True
    kswapd: bool = True


class Initial(_Strict):
    """Initial memory state."""

    state: Literal["boot", "snapshot", "fragmented"] = "boot"
    snapshot: str = Field("", description="state = \"snapshot\": a snapshot folder (a capture's before/ or after/, "
                          "or `kmemdes snapshot`'s); its kpageflags.zst, when present, gives the exact page layout")
    kpageflags: bool = Field(True, description="state = \"snapshot\": use the folder's kpageflags.zst (every page "
                             "in use or free at its pfn, page cache and anonymous memory handed to reclaim and "
                             "compaction); false: a layout consistent with buddyinfo/pagetypeinfo only")
    # fragmenter: fill a share of free memory with movable pages, then free all but
    # keep_per_block pages of every 2 MiB pageblock (the fragmentation pattern of KERNEL.md 19 / exp. frag-pattern)
    fill: float = Field(0.9, gt=0, le=1.0)
    keep_per_block: int = Field(128, ge=1, le=511)
    unmovable_share: float = Field(0.0, ge=0, le=1.0)
    hugetlb_leave: str = Field("0", description="reserve 2 MiB hugetlb pages (vm.nr_hugepages) until only this "
                               "much memory is free, as `kmemdes lab` and the corpus pressure captures squeeze a "
                               "machine; \"0\": none")

    _h = field_validator("hugetlb_leave")(_check_size_or_zero)


class CostConfig(_Strict):
    """Latency model overrides in ns (defaults in :mod:`kmemdes.sim.cost`, cited from KERNEL.md 17)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)


class _Workload(_Strict):
    name: str = ""
    start: Any = 0
    stop: Any = 0  # 0: until the end of the run
    cpu: int = Field(-1, ge=-1, description="-1: round-robin over CPUs")

    _start = field_validator("start", "stop")(_check_duration)


class DriverWorkload(_Workload):
    """A driver asking for physically contiguous buffers at a rate: the request whose failure rate matters."""

    kind: Literal["driver"]
    api: Literal["alloc_pages", "kmalloc", "vmalloc", "kvmalloc"] = "alloc_pages"
    order: int = Field(4, ge=0, le=10)
    size: int = Field(0, ge=0, description="bytes; overrides order for kmalloc/vmalloc/kvmalloc")
    gfp: str = "GFP_KERNEL"
    interval: Any = "1s"
    hold: Any = "100ms"

    _gfp = field_validator("gfp")(_check_gfp)
    _d = field_validator("hold")(_check_duration)
    _i = field_validator("interval")(_check_positive_duration)

    @model_validator(mode="after")
    def _size_for_api(self):
        if self.api != "alloc_pages" and not self.size and "order" not in self.model_fields_set:
            raise ValueError(f"size: required for api = {self.api!r}: the bytes of each request "
                             "(or an order for 4096 << order bytes)")
        return self


class AnonWorkload(_Workload):
    """User processes that malloc and touch anonymous memory (demand paging, THP)."""

    kind: Literal["anon"]
    processes: int = Field(4, ge=1)
    size: str = "64M"
    touch: float = Field(1.0, ge=0, le=1)
    madvise_hugepage: bool = True
    lifetime: Any = "2s"
    interval: Any = "500ms"
    touch_time: Any = Field("0s", description="how long each process's first touch of its memory takes, 2 MiB "
                            "at a time while the other workloads go on (a 256 MiB MADV_HUGEPAGE burst took "
                            "0.17-0.83 s on the corpus machine); 0: all at one instant")

    _size = field_validator("size")(_check_size)
    _d = field_validator("lifetime", "touch_time")(_check_duration)
    _i = field_validator("interval")(_check_positive_duration)


class FileCacheWorkload(_Workload):
    """Page-cache growth (reclaimable, movable pages) with truncation."""

    kind: Literal["file_cache"]
    rate_pages: int = Field(20000, ge=1, description="pages per second")
    truncate_share: float = Field(0.5, ge=0, le=1)
    lifetime: Any = "5s"
    pages_per_file: int = Field(4, ge=0, description="0: pages only; else a dentry and an inode per file")
    folio_order: int = Field(0, ge=0, le=9, description="readahead's large folios (ext4: up to order 9, "
                             "PMD size); 0: base pages")
    ra_fallback_pages: int = Field(0, ge=0, description="folio_order > 0: pages read as base pages when a "
                                   "large folio fails (do_page_cache_ra reads the rest of the readahead "
                                   "window: 2,943 and 3,459 per failure in the pressure captures j, k); "
                                   "0: the failed folio's own range")
    file_pages: int = Field(0, ge=0, description="> 0: the stream is one file of this many pages, read from "
                            "its start to its end (`cat`) every `interval`: pages still in the page cache are "
                            "hits (marked accessed, no allocation), the others are read at rate_pages; the "
                            "file's pages stay cached until reclaim takes them (truncate_share, lifetime and "
                            "pages_per_file do not apply)")
    interval: Any = Field("0s", description="file_pages > 0: read the file again every interval from start "
                          "(0: once)")

    _d = field_validator("lifetime", "interval")(_check_duration)


class NetworkWorkload(_Workload):
    """A network burst: skbuff objects and GFP_ATOMIC order-0..3 pages."""

    kind: Literal["network"]
    rate: int = Field(50000, ge=1, description="packets per second")
    order_weights: list[float] = Field(default_factory=lambda: [0.7, 0.1, 0.1, 0.1])
    gfp: str = "GFP_ATOMIC|__GFP_NOWARN|__GFP_COMP"
    lifetime: Any = "2ms"

    _gfp = field_validator("gfp")(_check_gfp)
    _d = field_validator("lifetime")(_check_duration)


class VmallocWorkload(_Workload):
    """vmalloc churn: thread stacks and module-like areas."""

    kind: Literal["vmalloc_churn"]
    rate: int = Field(200, ge=1, description="areas per second")
    size: str = "16K"
    lifetime: Any = "200ms"

    _size = field_validator("size")(_check_size)
    _d = field_validator("lifetime")(_check_duration)


class CompileWorkload(_Workload):
    """A kernel-build-like mix fitted from the real compile trace (see kmemdes.sim.workloads)."""

    kind: Literal["compile"]
    jobs: int = Field(2, ge=1)
    scale: float = Field(1.0, gt=0, description="multiplies the fitted event rates")
    thp_bursts: bool = False
    cycle: Any = "0s"

    _d = field_validator("cycle")(_check_duration)


class ReplayWorkload(_Workload):
    """A real trace replayed through the models."""

    kind: Literal["replay"]
    trace: str
    mode: Literal["mirror", "policy"] = "mirror"


LAB_BUILTINS = ("thp_burst", "touch", "stream", "compile", "net", "bpf_maps", "sleep")


class LabWorkload(_Strict):
    """One command of a ``[lab]`` recipe, started ``start`` into every cycle (``kmemdes lab``).

    Either ``command`` (a shell command line, run with ``/bin/sh -c``; ``{cycle}`` is replaced by the
    cycle number) or ``builtin``, one of kmemdes's own measured workloads (``python -m kmemdes.lab.work``):
    ``thp_burst`` (map ``size`` with MADV_HUGEPAGE, touch it, time each 2 MiB first touch, count huge
    pages), ``touch`` (map ``size`` with MADV_NOHUGEPAGE, time each 4 KiB first-touch fault), ``stream``
    (read a ``size`` file through the page cache), ``compile`` (``jobs`` loops of gcc -O2 over real C
    files for ``seconds``), ``net`` (TCP over loopback for ``seconds`` with ``jobs`` connections: order-3
    non-blocking page-frag allocations), ``bpf_maps`` (``bpf(BPF_MAP_CREATE)`` of array maps with ``size``
    value bytes for ``seconds``, ``jobs`` of them held open: ``bpf_map_area_alloc`` kmallocs up to 32 KiB
    with ``__GFP_NORETRY`` and falls back to vmalloc, above that vmalloc; each create timed), ``sleep``.
    """

    name: str = ""
    command: str = ""
    builtin: Literal["", "thp_burst", "touch", "stream", "compile", "net", "bpf_maps", "sleep"] = ""
    size: str = "256M"
    seconds: Any = "6s"
    jobs: int = Field(2, ge=1, le=64)
    start: Any = 0
    timeout: Any = "120s"

    _size = field_validator("size")(_check_size)
    _d = field_validator("seconds", "start", "timeout")(_check_duration)

    @model_validator(mode="after")
    def _one_of(self) -> "LabWorkload":
        if bool(self.builtin) == bool(self.command.strip()):
            raise ValueError("give exactly one of command (a shell command) and builtin "
                             f"({', '.join(LAB_BUILTINS)})")
        return self


class LabConfig(_Strict):
    """``[lab]``: how ``kmemdes lab`` runs the experiment on the local kernel (root).

    The config's ``[policy]`` is applied to the kernel (``fallback`` -> ``vm.defrag_mode``,
    ``thp_enabled``/``thp_defrag`` -> transparent_hugepage, ``compaction_proactiveness``,
    ``extfrag_threshold``, ``watermark_scale_factor``, ``watermark_boost_factor``, ``min_free_kbytes``
    -> ``vm.*``); ``sysctls`` sets further ``vm.*`` values.  ``free``: the memory to leave available
    (``MemAvailable``) by reserving the rest as hugetlb pages ("0": no reservation); never less than
    ``min_available`` (1 GiB at least), which a watchdog also enforces during the run.
    """

    free: str = "1536M"
    min_available: str = "1G"
    cycles: int = Field(1, ge=1, le=1000)
    settle: Any = "1s"
    drop_caches: bool = True
    timeout: Any = "10min"
    sysctls: dict[str, int] = Field(default_factory=dict)
    compare: list[str] = Field(default_factory=list, description="--set KEY=V items that --replicas alternates")
    workloads: list[LabWorkload] = Field(default_factory=list)

    _size = field_validator("min_available")(_check_size)
    _free = field_validator("free")(_check_size_or_zero)
    _d = field_validator("settle", "timeout")(_check_duration)

    @field_validator("sysctls")
    @classmethod
    def _vm_only(cls, v: dict) -> dict:
        for k in v:
            name = k[3:] if k.startswith("vm.") else ""
            if not name or not all(c.isalnum() or c == "_" for c in name):
                raise ValueError(f"{k!r}: only vm.* sysctls (e.g. vm.defrag_mode)")
        return v

    @field_validator("compare")
    @classmethod
    def _sets(cls, v: list) -> list:
        for item in v:
            if "=" not in item:
                raise ValueError(f"{item!r}: expected KEY=VALUE (as for --set)")
        return v


Workload = Annotated[
    Union[DriverWorkload, AnonWorkload, FileCacheWorkload, NetworkWorkload, VmallocWorkload,
          CompileWorkload, ReplayWorkload],
    Field(discriminator="kind"),
]
WORKLOAD_KINDS = ("driver", "anon", "file_cache", "network", "vmalloc_churn", "compile", "replay")


class Config(_Strict):
    """A whole experiment."""

    name: str = "experiment"
    description: str = ""
    seed: int = 1
    duration: Any = "10s"
    sample_interval: Any = "100ms"
    machine: Machine = Field(default_factory=Machine)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    initial: Initial = Field(default_factory=Initial)
    cost: CostConfig = Field(default_factory=CostConfig)
    workloads: list[Workload] = Field(default_factory=list)
    lab: Optional[LabConfig] = None

    _d = field_validator("duration")(_check_duration)
    _s = field_validator("sample_interval")(_check_positive_duration)

    @model_validator(mode="after")
    def _sample_within_duration(self):
        if self.workloads and not all(w.kind == "replay" for w in self.workloads) \
                and parse_duration(self.sample_interval) > parse_duration(self.duration):
            raise ValueError(f"sample_interval: {self.sample_interval!r} is longer than duration "
                             f"{self.duration!r} (no sample would be taken between start and end)")
        return self

    @property
    def duration_ns(self) -> int:
        return parse_duration(self.duration)

    @property
    def sample_ns(self) -> int:
        return parse_duration(self.sample_interval)


def _format_error(err: dict, source: str, data: dict) -> str:
    loc = tuple(err["loc"])
    # drop the discriminator tag pydantic inserts for tagged unions ("workloads", 0, "driver", "order")
    clean: list = []
    for i, part in enumerate(loc):
        if i >= 2 and loc[0] == "workloads" and isinstance(loc[1], int) and i == 2 and part in WORKLOAD_KINDS:
            continue
        clean.append(part)
    path = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in clean).replace(".[", "[")
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(clean, data)
        return f"{source}: {path}: unknown key (allowed: {', '.join(allowed)})"
    if err["type"] == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag", "?")
        return f"{source}: {path}.kind: unknown workload kind {tag!r} (allowed: {', '.join(WORKLOAD_KINDS)})"
    if err["type"] == "union_tag_not_found":
        return f"{source}: {path}.kind: missing (allowed: {', '.join(WORKLOAD_KINDS)})"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
        key = re.match(r"^([a-z_]+): (.*)$", msg)
        if key and (not clean or clean[-1] != key.group(1)):  # a check across keys names its key first
            path, msg = (f"{path}.{key.group(1)}" if path else key.group(1)), key.group(2)
    return f"{source}: {path}: {msg}"


def _allowed_keys(loc: list, data: dict) -> list[str]:
    model: Any = Config
    node: Any = data
    for part in loc[:-1]:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else {}
            if model is _WORKLOAD_LIST:
                kind = node.get("kind") if isinstance(node, dict) else None
                model = _WORKLOAD_BY_KIND.get(kind, _Workload)
            continue
        node = node.get(part, {}) if isinstance(node, dict) else {}
        if model is Config and part == "workloads":
            model = _WORKLOAD_LIST
            continue
        f = model.model_fields.get(part)
        model = _model_of(f.annotation) if f is not None else None
        if model is None or not hasattr(model, "model_fields"):
            return []
    return list(model.model_fields) if hasattr(model, "model_fields") else []


def _model_of(annotation: Any) -> Any:
    """The pydantic model inside ``Optional[M]`` or ``list[M]`` (or ``annotation`` itself)."""
    import typing

    if hasattr(annotation, "model_fields"):
        return annotation
    for arg in typing.get_args(annotation):
        if hasattr(arg, "model_fields"):
            return arg
    return annotation


_WORKLOAD_LIST = object()
_WORKLOAD_BY_KIND = {
    "driver": DriverWorkload, "anon": AnonWorkload, "file_cache": FileCacheWorkload, "network": NetworkWorkload,
    "vmalloc_churn": VmallocWorkload, "compile": CompileWorkload, "replay": ReplayWorkload,
}


def parse_config(text: str, source: str = "<config>") -> Config:
    """Parse and validate TOML text; errors name ``source``, the key path and the allowed values."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise KmemdesError(f"{source}: not valid TOML: {e}") from None
    _check_not_empty(data, source)
    return config_from_dict(data, source)


def _check_not_empty(data: dict, source: str) -> None:
    if not data:
        raise KmemdesError(f"{source}: empty config (nothing to run: give at least [[workloads]]; "
                           "`kmemdes run CONFIG --print-config` shows every key)")


def config_from_dict(data: dict, source: str = "<config>") -> Config:
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        raise KmemdesError(_format_error(e.errors()[0], source, data)) from None
    _check_costs(cfg.cost.model_extra or {}, source)
    return cfg


def _check_costs(overrides: dict, source: str) -> None:
    """``[cost]`` keys are the fields of :class:`kmemdes.sim.cost.CostModel`, in whole ns >= 0."""
    from dataclasses import fields

    from kmemdes.sim.cost import CostModel

    names = sorted(f.name for f in fields(CostModel))
    for k, v in overrides.items():
        if k not in names:
            raise KmemdesError(f"{source}: cost.{k}: unknown key (allowed: {', '.join(names)})")
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise KmemdesError(f"{source}: cost.{k}: must be a whole number of ns >= 0, got {v!r}")


def load_config(path: str | Path) -> Config:
    """Read and validate a config file."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise KmemdesError(f"{path}: no such file") from None
    except (IsADirectoryError, UnicodeDecodeError):
        raise KmemdesError(f"{path}: not a TOML text file") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise KmemdesError(f"{path}: not valid TOML: {e}") from None
    _check_not_empty(data, str(path))
    base = p.resolve().parent
    data = _with_includes(data, base, str(path))
    cfg = config_from_dict(data, str(path))
    _resolve_paths(cfg, base)
    return cfg


def _with_includes(data: dict, base: Path, source: str) -> dict:
    """``include = ["cost-this-machine.toml", ...]``: tables of other TOML files (relative to the config)
    merged under the config's own values (the config wins, table by table); one level, no nesting.
    ``kmemdes lab --calibrate --write-cost FILE`` writes such a file."""
    inc = data.pop("include", None)
    if inc is None:
        return data
    if isinstance(inc, str):
        inc = [inc]
    if not isinstance(inc, list) or not all(isinstance(x, str) for x in inc):
        raise KmemdesError(f"{source}: include: expected a list of file names")
    merged: dict = {}
    for name in inc:
        f = Path(name) if Path(name).is_absolute() else base / name
        try:
            extra = tomllib.loads(f.read_text())
        except FileNotFoundError:
            raise KmemdesError(f"{source}: include: {name}: no such file") from None
        except (OSError, UnicodeDecodeError):
            raise KmemdesError(f"{source}: include: {name}: not a TOML text file") from None
        except tomllib.TOMLDecodeError as e:
            raise KmemdesError(f"{source}: include: {name}: not valid TOML: {e}") from None
        if "include" in extra:
            raise KmemdesError(f"{source}: include: {name}: includes cannot be nested")
        _merge(merged, extra)
    _merge(merged, data)
    return merged


def _merge(into: dict, new: dict) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def _resolve_paths(cfg: Config, base: Path) -> None:
    """Relative trace/snapshot paths are taken relative to the config file, then to the cwd."""
    def fix(value: str) -> str:
        if not value or Path(value).is_absolute() or Path(value).exists():
            return value
        cand = base / value
        return str(cand) if cand.exists() else value

    cfg.initial.snapshot = fix(cfg.initial.snapshot)
    for w in cfg.workloads:
        if isinstance(w, ReplayWorkload):
            w.trace = fix(w.trace)


def set_dotted(cfg: Config, key: str, value: Any, source: str = "--set") -> Config:
    """A copy of ``cfg`` with a dotted key (``policy.fallback``, ``workloads.0.order``) set and revalidated.

    A value parsed as a number where the key wants text (``policy.fallback_version=6.14``) is
    retried as the text it was written as.

    >>> set_dotted(Config(), "policy.fallback_version", 6.14).policy.fallback_version
    '6.14'
    """
    try:
        return _set_dotted(cfg, key, value, source)
    except KmemdesError:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return _set_dotted(cfg, key, repr(value) if isinstance(value, float) else str(value), source)
            except KmemdesError:
                pass
        raise


def _set_dotted(cfg: Config, key: str, value: Any, source: str) -> Config:
    data = cfg.model_dump(mode="python")
    node: Any = data
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            try:
                node = node[int(part)]
            except (ValueError, IndexError):
                raise KmemdesError(f"{source}: {key}: no element {part!r}") from None
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KmemdesError(f"{source}: {key}: unknown key {part!r}")
    last = parts[-1]
    if isinstance(node, list):
        raise KmemdesError(f"{source}: {key}: cannot replace a whole list element")
    if last not in node and not isinstance(node, dict):
        raise KmemdesError(f"{source}: {key}: unknown key")
    node[last] = value
    return config_from_dict(data, source)


# ---------------------------------------------------------------- TOML writer

def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dump_toml(cfg: Config) -> str:
    """The resolved config as TOML, every default written out, keys in schema order."""
    data = cfg.model_dump(mode="python")
    lines: list[str] = []
    scalars = {k: v for k, v in data.items() if k != "lab" and (not isinstance(v, (dict, list)) or (isinstance(v, list) and k != "workloads"))}
    for k, v in scalars.items():
        lines.append(f"{k} = {_toml_value(v)}")
    for k, v in data.items():
        if isinstance(v, dict) and k != "lab":
            lines.append("")
            lines.append(f"[{k}]")
            for kk, vv in v.items():
                lines.append(f"{kk} = {_toml_value(vv)}")
    lab = data.pop("lab", None)
    for w in data.get("workloads", []):
        lines.append("")
        lines.append("[[workloads]]")
        kind = w.pop("kind")
        lines.append(f"kind = {_toml_value(kind)}")
        unused = _unused_driver_key(w) if kind == "driver" else None
        for kk, vv in w.items():
            note = f"  # not used: {unused[1]}" if unused and kk == unused[0] else ""
            lines.append(f"{kk} = {_toml_value(vv)}{note}")
    if lab is not None:
        lines += ["", "[lab]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in lab.items() if k not in ("sysctls", "workloads")]
        lines.append("sysctls = {" + ", ".join(f"{_toml_value(k)} = {_toml_value(v)}" for k, v in lab["sysctls"].items()) + "}")
        for w in lab["workloads"]:
            lines += ["", "[[lab.workloads]]"] + [f"{k} = {_toml_value(v)}" for k, v in w.items()]
    return "\n".join(lines) + "\n"


def _unused_driver_key(w: dict) -> tuple[str, str] | None:
    """The driver key its request does not read, and why: ``order`` when a
    kmalloc/vmalloc/kvmalloc driver has a ``size``, ``size`` for alloc_pages."""
    if w.get("api") == "alloc_pages":
        return ("size", "alloc_pages asks for order") if w.get("size") else None
    if w.get("size"):
        return "order", f"{w['api']} asks for size bytes"
    return None


def parse_value(text: str) -> Any:
    """A command-line value as TOML would read it: ``3`` -> 3, ``true`` -> True, ``defrag_mode`` -> str.

    >>> parse_value("3"), parse_value("0.5"), parse_value("true"), parse_value("defrag_mode"), parse_value('"x"')
    (3, 0.5, True, 'defrag_mode', 'x')
    """
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
