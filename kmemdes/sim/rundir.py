"""Run directories: written atomically by runs and replays, read by reports and sweeps.

Layout (see also README.md, "Run directories")::

    RUN_DIR/config.toml       resolved config, every default written out
    RUN_DIR/summary.json      headline numbers (deterministic except wall_s, events_per_s)
    RUN_DIR/log               notes, quirk rules applied, warnings
    RUN_DIR/metrics/*.parquet buddy, frag, score, pageblocks, slab, vmalloc, counters,
                              requests, latency, sizes, fallbacks, failures, pagemap

The directory is assembled under a temporary name next to the target and
renamed into place only when complete, so an interrupted run never leaves a
half-written run directory behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import polars as pl

from kmemdes.errors import KmemdesError

__all__ = ["Run", "write_run", "load_run", "METRICS"]

METRICS = ("buddy", "frag", "score", "pageblocks", "slab", "vmalloc", "counters", "requests", "latency",
           "sizes", "fallbacks", "failures", "pagemap")


@dataclass
class Run:
    """A run directory read back."""

    path: Path
    config_text: str
    summary: dict
    log: str
    metrics: dict[str, pl.DataFrame] = field(default_factory=dict)

    def __getattr__(self, name: str) -> pl.DataFrame:
        m = self.__dict__.get("metrics", {})
        if name in m:
            return m[name]
        raise AttributeError(name)


def write_run(out: Path, config_text: str, summary: dict, log: str, metrics: dict[str, pl.DataFrame]) -> Path:
    """Write a complete run directory at ``out`` atomically (temporary name, then rename)."""
    out = Path(out)
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise KmemdesError(f"{parent}: cannot create output folder: {e.strerror}") from None
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        (tmp / "config.toml").write_text(config_text)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=False) + "\n")
        (tmp / "log").write_text(log)
        (tmp / "metrics").mkdir()
        for name, frame in metrics.items():
            frame.write_parquet(tmp / "metrics" / f"{name}.parquet", compression="zstd", statistics=False)
        os.chmod(tmp, 0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            os.rename(out, old / "run")
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_run(path: str | Path, metrics: Optional[tuple[str, ...]] = None) -> Run:
    """Read a run directory (all metrics, or the named ones)."""
    p = Path(path)
    if not (p / "summary.json").is_file():
        raise KmemdesError(f"{path}: not a run directory (no summary.json)")
    try:
        summary = json.loads((p / "summary.json").read_text())
    except json.JSONDecodeError as e:
        raise KmemdesError(f"{p / 'summary.json'}:{e.lineno}: not valid JSON") from None
    cfg = (p / "config.toml").read_text() if (p / "config.toml").exists() else ""
    log = (p / "log").read_text() if (p / "log").exists() else ""
    frames = {}
    for name in metrics or METRICS:
        f = p / "metrics" / f"{name}.parquet"
        if f.exists():
            try:
                frames[name] = pl.read_parquet(f)
            except Exception as e:  # noqa: BLE001 - polars raises several kinds for damaged files
                raise KmemdesError(f"{f}: not a readable Parquet file ({type(e).__name__})") from None
    return Run(p, cfg, summary, log, frames)
