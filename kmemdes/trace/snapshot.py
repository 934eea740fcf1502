"""Readers of /proc and debugfs snapshots: buddyinfo, pagetypeinfo, zoneinfo, slabinfo, vmallocinfo.

Each reader takes the file's text and its path (for error messages) and
returns plain data; a garbled or truncated file raises
:class:`~kmemdes.errors.KmemdesError` naming the file and line.  The layouts are
those of mm/vmstat.c, mm/slab_common.c and mm/vmalloc.c in Linux 6.18.

>>> parse_buddyinfo("Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3 \\n")
[BuddyinfoLine(node=0, zone='DMA', nr_free=[0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 3])]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from kmemdes.errors import KmemdesError
from kmemdes.mm.slabinfo import SlabinfoRow

__all__ = [
    "parse_vm_sysctls",
    "parse_thp_setting",
    "BuddyinfoLine",
    "Pagetypeinfo",
    "ZoneinfoZone",
    "VmallocinfoLine",
    "Snapshot",
    "parse_buddyinfo",
    "parse_pagetypeinfo",
    "parse_zoneinfo",
    "parse_slabinfo",
    "parse_vmallocinfo",
    "parse_index_file",
    "read_snapshot",
    "read_text",
    "snapshot_from_texts",
]

NR_PAGE_ORDERS = 11


def read_text(path: str | Path) -> str:
    """Read a snapshot file (``-`` is stdin) or fail with one clear line."""
    import sys

    if str(path) == "-":
        return sys.stdin.read()
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise KmemdesError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise KmemdesError(f"{path}: is a directory, expected a file") from None
    except PermissionError:
        raise KmemdesError(f"{path}: permission denied (this file needs root)") from None
    except OSError as e:
        raise KmemdesError(f"{path}: {e.strerror}") from None
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise KmemdesError(f"{path}:{line}: not a text snapshot (binary data)") from None


class BuddyinfoLine(NamedTuple):
    node: int
    zone: str
    nr_free: list[int]


_ZONE_HDR = re.compile(r"^Node\s+(\d+), zone\s+(\S+)")


def parse_buddyinfo(text: str, path: str = "buddyinfo") -> list[BuddyinfoLine]:
    """``/proc/buddyinfo``: ``Node N, zone NAME`` then 11 free-block counts (orders 0..10)."""
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _ZONE_HDR.match(line)
        if not m:
            raise KmemdesError(f"{path}:{i}: expected 'Node N, zone NAME counts...', got {line[:60]!r}")
        fields = line[m.end():].split()
        if len(fields) != NR_PAGE_ORDERS:
            raise KmemdesError(f"{path}:{i}: expected {NR_PAGE_ORDERS} free-block counts, got {len(fields)}")
        try:
            counts = [int(f) for f in fields]
        except ValueError:
            raise KmemdesError(f"{path}:{i}: free-block counts must be integers: {line[m.end():].strip()!r}") from None
        if any(c < 0 for c in counts):
            raise KmemdesError(f"{path}:{i}: negative free-block count")
        out.append(BuddyinfoLine(int(m.group(1)), m.group(2), counts))
    if not out:
        raise KmemdesError(f"{path}: no zone lines (empty or not a buddyinfo file)")
    return out


def parse_index_file(text: str, path: str = "unusable_index") -> list[tuple[int, str, list[str]]]:
    """debugfs ``extfrag/unusable_index`` or ``extfrag_index``: the 11 printed values, as text."""
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _ZONE_HDR.match(line)
        fields = line[m.end():].split() if m else []
        if not m or len(fields) != NR_PAGE_ORDERS:
            raise KmemdesError(f"{path}:{i}: expected 'Node N, zone NAME' and 11 index values")
        out.append((int(m.group(1)), m.group(2), fields))
    return out


@dataclass
class Pagetypeinfo:
    """``/proc/pagetypeinfo``: free blocks per (zone, type, order) and pageblocks per (zone, type)."""

    pageblock_order: int
    types: list[str]
    free: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (zone, type) -> counts
    free_capped: set = field(default_factory=set)  # (zone, type, order) printed with '>' (>= 100000)
    blocks: dict[str, list[int]] = field(default_factory=dict)  # zone -> counts per type
    zones: list[str] = field(default_factory=list)


def parse_pagetypeinfo(text: str, path: str = "pagetypeinfo") -> Pagetypeinfo:
    """``/proc/pagetypeinfo`` as printed by ``pagetypeinfo_show`` (mm/vmstat.c)."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("Page block order:"):
        raise KmemdesError(f"{path}:1: expected 'Page block order: N' (not a pagetypeinfo file)")
    try:
        pb_order = int(lines[0].split(":")[1])
    except (IndexError, ValueError):
        raise KmemdesError(f"{path}:1: bad page block order") from None
    info = Pagetypeinfo(pb_order, [])
    section = None
    free_re = re.compile(r"^Node\s+(\d+), zone\s+(\S+), type\s+(\S+)\s(.*)$")
    for i, line in enumerate(lines[1:], 2):
        if not line.strip() or line.startswith("Pages per block:"):
            continue
        if line.startswith("Free pages count per migrate type"):
            section = "free"
            continue
        if line.startswith("Number of blocks type"):
            section = "blocks"
            info.types = line[len("Number of blocks type"):].split()
            continue
        if line.startswith("Number of mixed blocks"):
            section = "mixed"
            continue
        if section == "free":
            m = free_re.match(line)
            if not m:
                raise KmemdesError(f"{path}:{i}: expected 'Node N, zone Z, type T counts...'")
            vals = m.group(4).split()
            if len(vals) != NR_PAGE_ORDERS:
                raise KmemdesError(f"{path}:{i}: expected {NR_PAGE_ORDERS} counts, got {len(vals)}")
            counts = []
            for o, v in enumerate(vals):
                if v.startswith(">"):
                    info.free_capped.add((m.group(2), m.group(3), o))
                    v = v[1:]
                if not v.isdigit():
                    raise KmemdesError(f"{path}:{i}: count {v!r} is not a number")
                counts.append(int(v))
            info.free[(m.group(2), m.group(3))] = counts
            if m.group(2) not in info.zones:
                info.zones.append(m.group(2))
        elif section == "blocks":
            m = _ZONE_HDR.match(line)
            vals = line[m.end():].split() if m else []
            if not m or len(vals) != len(info.types) or not all(v.isdigit() for v in vals):
                raise KmemdesError(f"{path}:{i}: expected 'Node N, zone Z' and {len(info.types)} block counts")
            info.blocks[m.group(2)] = [int(v) for v in vals]
        elif section == "mixed":
            continue
        else:
            raise KmemdesError(f"{path}:{i}: unexpected line {line[:60]!r}")
    if not info.free:
        raise KmemdesError(f"{path}: no free-count table (truncated?)")
    if not info.blocks:
        raise KmemdesError(f"{path}: no 'Number of blocks type' table (truncated?)")
    missing = [z for z in info.zones if z not in info.blocks]
    if missing:
        raise KmemdesError(f"{path}: block counts missing for zone(s) {', '.join(missing)} (truncated?)")
    return info


@dataclass
class ZoneinfoZone:
    """One zone of ``/proc/zoneinfo`` (the fields kmemdes uses; others in ``stats``)."""

    node: int
    name: str
    free: int = 0
    boost: int = 0
    min: int = 0
    low: int = 0
    high: int = 0
    promo: int = 0
    spanned: int = 0
    present: int = 0
    managed: int = 0
    cma: int = 0
    protection: list[int] = field(default_factory=list)
    start_pfn: int | None = None
    pagesets: list[dict] = field(default_factory=list)  # per CPU: count, high, batch, high_min, high_max
    stats: dict[str, int] = field(default_factory=dict)


def parse_zoneinfo(text: str, path: str = "zoneinfo") -> list[ZoneinfoZone]:
    """``/proc/zoneinfo`` (``zoneinfo_show_print``)."""
    zones: list[ZoneinfoZone] = []
    cur: ZoneinfoZone | None = None
    pcp: dict | None = None
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        m = _ZONE_HDR.match(line)
        if m:
            cur = ZoneinfoZone(int(m.group(1)), m.group(2))
            zones.append(cur)
            pcp = None
            continue
        if cur is None:
            raise KmemdesError(f"{path}:{i}: data before the first 'Node N, zone NAME' line")
        try:
            if s.startswith("pages free"):
                cur.free = int(s.split()[2])
            elif s.startswith("protection:"):
                inner = s[s.index("(") + 1: s.index(")")]
                cur.protection = [int(x) for x in inner.split(",")]
            elif s.startswith("cpu:"):
                pcp = {"cpu": int(s.split()[1])}
                cur.pagesets.append(pcp)
            elif pcp is not None and s.split(":")[0] in ("count", "high", "batch", "high_min", "high_max"):
                k, v = s.split(":")
                pcp[k] = int(v)
            elif s.startswith("start_pfn:"):
                cur.start_pfn = int(s.split()[1])
            elif s.startswith(("per-node stats", "pagesets", "vm stats threshold", "node_unreclaimable")):
                continue
            else:
                parts = s.split()
                if len(parts) == 2 and parts[0] in ("boost", "min", "low", "high", "promo", "spanned",
                                                    "present", "managed", "cma"):
                    setattr(cur, parts[0], int(parts[1]))
                elif len(parts) == 2:
                    cur.stats[parts[0]] = int(parts[1])
                else:
                    raise ValueError
        except (ValueError, IndexError):
            raise KmemdesError(f"{path}:{i}: cannot read {s[:60]!r}") from None
    if not zones:
        raise KmemdesError(f"{path}: no zones (empty or not a zoneinfo file)")
    for z in zones:
        if (z.present or z.managed) and z.start_pfn is None:
            raise KmemdesError(f"{path}: zone {z.name} ends before its 'start_pfn:' line (truncated?)")
    return zones


def parse_slabinfo(text: str, path: str = "slabinfo") -> list[SlabinfoRow]:
    """``/proc/slabinfo`` version 2.1 (``cache_show``) as :class:`kmemdes.mm.slabinfo.SlabinfoRow` rows."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("slabinfo - version:"):
        raise KmemdesError(f"{path}:1: not a /proc/slabinfo file (no 'slabinfo - version:' line)")
    out = []
    for i, line in enumerate(lines[1:], 2):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        # name a n size objper pages : tunables l b s : slabdata act num shared
        if len(parts) != 16 or parts[6] != ":" or parts[7] != "tunables" or parts[11] != ":" or parts[12] != "slabdata":
            raise KmemdesError(f"{path}:{i}: malformed slabinfo line: {line.strip()[:60]!r}")
        try:
            nums = [int(parts[k]) for k in (1, 2, 3, 4, 5, 13, 14)]
        except ValueError:
            raise KmemdesError(f"{path}:{i}: malformed slabinfo line: {line.strip()[:60]!r}") from None
        out.append(SlabinfoRow(parts[0], *nums))
    return out


class VmallocinfoLine(NamedTuple):
    start: int
    end: int
    size: int
    caller: str
    pages: int
    flags: tuple


def parse_vmallocinfo(text: str, path: str = "vmallocinfo") -> list[VmallocinfoLine]:
    """``/proc/vmallocinfo`` (``vmalloc_info_show``); addresses may be hashed (%pK)."""
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            start_s, end_s = parts[0].split("-")
            start, end = int(start_s, 16), int(end_s, 16)
            size = int(parts[1])
        except (ValueError, IndexError):
            raise KmemdesError(f"{path}:{i}: expected '0xSTART-0xEND SIZE ...', got {line[:60]!r}") from None
        caller = parts[2] if len(parts) > 2 and "=" not in parts[2] else ""
        pages = 0
        flags = []
        for p in parts[2:]:
            if p.startswith("pages="):
                pages = int(p[6:])
            elif p != caller:
                flags.append(p)
        out.append(VmallocinfoLine(start, end, size, caller, pages, tuple(flags)))
    return out


@dataclass
class Snapshot:
    """The allocator state files of one snapshot folder (``before/`` or ``after/`` of a capture)."""

    path: Path
    buddyinfo: list[BuddyinfoLine]
    pagetypeinfo: Pagetypeinfo | None
    zoneinfo: list[ZoneinfoZone] | None
    nproc: int | None
    texts: dict[str, str]


def read_snapshot(folder: str | Path) -> Snapshot:
    """Read a snapshot folder: buddyinfo (required), pagetypeinfo, zoneinfo, nproc when present."""
    folder = Path(folder)
    if not folder.is_dir():
        raise KmemdesError(f"{folder}: not a snapshot folder")
    if not (folder / "buddyinfo").exists():
        raise KmemdesError(f"{folder}: no buddyinfo file (is this a capture's before/ or after/ folder?)")
    texts = {}
    for name in ("buddyinfo", "pagetypeinfo", "zoneinfo", "nproc", "slabinfo", "vmallocinfo"):
        f = folder / name
        if f.exists():
            texts[name] = read_text(f)
    bi = parse_buddyinfo(texts["buddyinfo"], str(folder / "buddyinfo"))
    pti = parse_pagetypeinfo(texts["pagetypeinfo"], str(folder / "pagetypeinfo")) if "pagetypeinfo" in texts else None
    zi = parse_zoneinfo(texts["zoneinfo"], str(folder / "zoneinfo")) if "zoneinfo" in texts else None
    nproc = None
    if "nproc" in texts:
        try:
            nproc = int(texts["nproc"].strip())
        except ValueError:
            raise KmemdesError(f"{folder / 'nproc'}:1: expected a CPU count") from None
    return Snapshot(folder, bi, pti, zi, nproc, texts)


def snapshot_from_texts(texts: dict[str, str], path: str | Path = "before") -> Snapshot:
    """A :class:`Snapshot` from file texts already in memory (a trace's ``meta["before"]``)."""
    path = Path(path)
    if "buddyinfo" not in texts:
        raise KmemdesError(f"{path}: no buddyinfo in the snapshot")
    bi = parse_buddyinfo(texts["buddyinfo"], str(path / "buddyinfo"))
    pti = parse_pagetypeinfo(texts["pagetypeinfo"], str(path / "pagetypeinfo")) if "pagetypeinfo" in texts else None
    zi = parse_zoneinfo(texts["zoneinfo"], str(path / "zoneinfo")) if "zoneinfo" in texts else None
    nproc = None
    if texts.get("nproc", "").strip().isdigit():
        nproc = int(texts["nproc"].strip())
    return Snapshot(path, bi, pti, zi, nproc, dict(texts))


def parse_vm_sysctls(text: str) -> dict[str, str]:
    """``sysctl vm`` / ``/proc/sys/vm/*`` as ``name = value`` lines (a capture's ``vm_sysctls``).

    >>> parse_vm_sysctls("defrag_mode = 1\\nlowmem_reserve_ratio = 256\\t256\\t32\\t0\\t0\\n")["defrag_mode"]
    '1'
    """
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            out[name.strip().removeprefix("vm.")] = value.strip()
    return out


def parse_thp_setting(text: str) -> str:
    """The selected value of a ``/sys/kernel/mm/transparent_hugepage`` file (the one in brackets).

    >>> parse_thp_setting("always defer defer+madvise [madvise] never")
    'madvise'
    """
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return text.strip()
