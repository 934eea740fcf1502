"""Reading a run directory (the format of /work/brief/RUNDIR.md) for the reports.

A run directory holds ``config.toml``, ``summary.json``, ``log`` and ``metrics/*.parquet``
(written by ``kmemdes run`` / ``kmemdes replay``).  :func:`load_run_dir` reads all of it
into a :class:`RunData`: one Polars frame per metrics file (attribute named after the file,
columns cast to the documented dtypes), the summary and the config as dicts.  A metrics
file that is absent reads as an empty frame and is listed in ``RunData.missing`` so a
report can say "no data" instead of failing; a file that is present but unreadable or
lacks a documented column is a :class:`~kmemdes.errors.KmemdesError` naming the file.

The reports read run directories only: the engine's reader
:func:`kmemdes.sim.rundir.load_run` is the one thing they take from ``kmemdes.sim``.

>>> sorted(METRICS)[:4]
['buddy', 'counters', 'failures', 'fallbacks']
>>> METRICS["frag"]["unusable"]
Int32
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from kmemdes.errors import KmemdesError

__all__ = ["METRICS", "RunData", "load_run_dir", "flatten_config"]

_I8, _I16, _I32, _I64, _S, _B = pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.String, pl.Boolean

#: metrics/<name>.parquet -> column -> dtype, as documented in RUNDIR.md
METRICS: dict[str, dict[str, Any]] = {
    "buddy": {"t_ns": _I64, "zone": _S, "order": _I8, "migratetype": _I8, "nr_free": _I64},
    "frag": {"t_ns": _I64, "zone": _S, "order": _I8, "unusable": _I32, "extfrag": _I32},
    "score": {"t_ns": _I64, "zone": _S, "score": _I32, "free_pages": _I64, "managed": _I64, "wmark_min": _I64,
              "wmark_low": _I64, "wmark_high": _I64, "boost": _I64, "pcp_pages": _I64},
    "pageblocks": {"t_ns": _I64, "zone": _S, "migratetype": _I8, "blocks": _I64, "mixed": _I64},
    "slab": {"t_ns": _I64, "cache": _S, "active_objs": _I64, "num_objs": _I64, "slabs": _I64, "pages": _I64,
             "bytes_req": _I64, "bytes_alloc": _I64},
    "vmalloc": {"t_ns": _I64, "areas": _I64, "va_bytes": _I64, "pages": _I64, "lazy_pages": _I64, "purges": _I64},
    "counters": {"t_ns": _I64, "name": _S, "value": _I64},
    "requests": {"order": _I8, "gfp_class": _S, "path": _S, "workload": _S, "count": _I64},
    "latency": {"order": _I8, "path": _S, "bucket_ns": _I64, "count": _I64},
    "sizes": {"kind": _S, "bucket_bytes": _I64, "count": _I64},
    "fallbacks": {"alloc_mt": _I8, "fallback_mt": _I8, "kind": _S, "fragmenting": _B, "count": _I64},
    "failures": {"t_ns": _I64, "order": _I8, "gfp_flags": _S, "workload": _S},
    "pagemap": {"t_ns": _I64, "zone": _S, "pageblock": _I64, "migratetype": _I8, "free": _I16, "movable": _I16,
                "unmovable": _I16, "reclaimable": _I16},
}


@dataclass
class RunData:
    """One run directory in memory: the metrics frames, the summary, the resolved config.

    ``label`` is the name reports show for the run (the directory's name).
    """

    path: Path
    summary: dict
    config: dict
    config_text: str
    log: str
    buddy: pl.DataFrame
    frag: pl.DataFrame
    score: pl.DataFrame
    pageblocks: pl.DataFrame
    slab: pl.DataFrame
    vmalloc: pl.DataFrame
    counters: pl.DataFrame
    requests: pl.DataFrame
    latency: pl.DataFrame
    sizes: pl.DataFrame
    fallbacks: pl.DataFrame
    failures: pl.DataFrame
    pagemap: pl.DataFrame
    missing: list[str] = field(default_factory=list)
    cache: dict = field(default_factory=dict, repr=False, compare=False)  # derived frames shared by figures

    @property
    def label(self) -> str:
        return self.path.name or str(self.path)


def _empty(name: str) -> pl.DataFrame:
    return pl.DataFrame(schema=METRICS[name])


def _read_metrics(path: Path, name: str) -> pl.DataFrame:
    try:
        df = pl.read_parquet(path)
    except Exception as e:  # polars raises several types for damaged files
        raise KmemdesError(f"{path}: not a readable Parquet file ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    return _conform(df, path, name)


def _conform(df: pl.DataFrame, path: Path, name: str) -> pl.DataFrame:
    """The documented columns of a metrics frame, in order, with the documented dtypes."""
    schema = METRICS[name]
    absent = [c for c in schema if c not in df.columns]
    if absent:
        raise KmemdesError(f"{path}: missing column(s) {', '.join(absent)} (expected {', '.join(schema)})")
    try:
        return df.select([pl.col(c).cast(t, strict=True) for c, t in schema.items()])
    except Exception as e:
        raise KmemdesError(f"{path}: a column has the wrong type ({str(e).splitlines()[0]})") from None


def load_run_dir(path: str | Path) -> RunData:
    """Read the run directory ``path`` (see RUNDIR.md) with the engine's reader, then check it.

    :func:`kmemdes.sim.rundir.load_run` reads the files; this adds what the reports rely on:
    every documented column present and cast to its documented type, absent files as empty
    frames (listed in ``missing``), the config parsed, and one-line errors that name the file.
    """
    from kmemdes.sim.rundir import load_run  # the engine's reader: the only thing report/ takes from sim/

    p = Path(path)
    if not p.is_dir():
        raise KmemdesError(f"{path}: no such run directory")
    if not (p / "summary.json").is_file():
        raise KmemdesError(f"{path}: not a run directory (no summary.json; write one with kmemdes run or kmemdes replay)")
    try:
        run = load_run(p)
    except KmemdesError:
        raise
    except UnicodeDecodeError as e:
        raise KmemdesError(f"{path}: a text file of the run directory is not UTF-8 ({e.reason})") from None
    except Exception as e:  # a damaged Parquet file: find it and say which
        for name in METRICS:
            f = p / "metrics" / f"{name}.parquet"
            if f.is_file():
                _read_metrics(f, name)
        raise KmemdesError(f"{path}: cannot read the run directory ({type(e).__name__}: {e})") from None
    summary = run.summary
    if not isinstance(summary, dict):
        raise KmemdesError(f"{p / 'summary.json'}: expected a JSON object")
    ct = p / "config.toml"
    config: dict = {}
    if run.config_text:
        try:
            config = tomllib.loads(run.config_text)
        except tomllib.TOMLDecodeError as e:
            raise KmemdesError(f"{ct}: not valid TOML ({e})") from None
    frames: dict[str, pl.DataFrame] = {}
    missing: list[str] = [] if ct.is_file() else ["config.toml"]
    for name in METRICS:
        df = run.metrics.get(name)
        if df is None:
            frames[name] = _empty(name)
            missing.append(f"metrics/{name}.parquet")
        else:
            frames[name] = _conform(df, p / "metrics" / f"{name}.parquet", name)
    return RunData(path=p, summary=summary, config=config, config_text=run.config_text, log=run.log,
                   missing=missing, **frames)


def flatten_config(cfg: dict, prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a nested config: tables by name, arrays of tables by index.

    The key syntax is ``kmemdes run --set``'s (``workloads.0.order``).

    >>> flatten_config({"seed": 1, "policy": {"fallback": "default"}, "workloads": [{"kind": "driver", "order": 4}]})
    {'seed': 1, 'policy.fallback': 'default', 'workloads.0.kind': 'driver', 'workloads.0.order': 4}
    """
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_config(v, key + "."))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for i, x in enumerate(v):
                out.update(flatten_config(x, f"{key}.{i}."))
        else:
            out[key] = v
    return out
