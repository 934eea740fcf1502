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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import polars as pl

from kmemdes.errors import KmemdesError
from kmemdes.outpath import check_run_dir_output, clean_stale, tmp_name

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


def write_run(out: Path, config_text: str, summary: dict, log: str, metrics: dict[str, pl.DataFrame],
              force: bool = False, make_parents: bool = False) -> Path:
    """Write a complete run directory at ``out`` atomically (``.NAME.tmp-PID``, then rename).

    An existing ``out`` is replaced only with ``force`` and only when it is a kmemdes run
    directory (:func:`kmemdes.outpath.check_run_dir_output`); temporary names left by killed
    runs next to it are removed (:func:`kmemdes.outpath.clean_stale`)."""
    out = Path(out)
    check_run_dir_output(out, force=force, make_parents=make_parents)
    parent = out.parent
    clean_stale(out)
    tmp = tmp_name(out)
    try:
        tmp.mkdir()
        (tmp / "config.toml").write_text(config_text)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=False) + "\n")
        (tmp / "log").write_text(log)
        (tmp / "metrics").mkdir()
        for name, frame in metrics.items():
            frame.write_parquet(tmp / "metrics" / f"{name}.parquet", compression="zstd", statistics=False)
        os.chmod(tmp, 0o755)
        if out.exists():
            check_run_dir_output(out, force=force)  # still what it was when the run started
            old = parent / f".{out.name}.old-{os.getpid()}"
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise KmemdesError(f"{out}: cannot write the run directory ({e.strerror or e})") from None
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
