"""Run directories for the report tests: synthetic ones in the RUNDIR.md format, and one real replay.

The synthetic run directories come from ``tests/report/_fake_run.py`` (see its docstring);
``replay_run`` is written by the engine itself (``kmemdes replay`` on the shipped
compile trace), so the reports are also checked on what the simulator really writes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.report._fake_run import make_run


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    """3 zones (DMA, DMA32, Normal; 1,024 pageblocks), orders 0..10, 300 samples, 12 caches, 12 pagemap snapshots."""
    return make_run(tmp_path_factory.mktemp("runs") / "small", name="small", seed=1)


@pytest.fixture(scope="session")
def long_run(tmp_path_factory) -> Path:
    """3,000 samples: more than one time bin per pixel, so the report downsamples."""
    return make_run(tmp_path_factory.mktemp("runs") / "long", name="long", samples=3000, sample_ns=10_000_000,
                    snapshots=12)


@pytest.fixture(scope="session")
def evil_run(tmp_path_factory) -> Path:
    """Cache, workload, run names, a GFP string, notes, log and config values are ``<script>alert(1)</script>``."""
    return make_run(tmp_path_factory.mktemp("runs") / "evil", evil=True, samples=120)


@pytest.fixture(scope="session")
def replica_runs(tmp_path_factory) -> dict[str, list[Path]]:
    """Two configurations x 3 seeds (replicas) and one single run of a third configuration.

    ``base``: policy.fallback = default, severity 1.0; ``strict``: defrag_mode, severity 0.5
    (half the fragmentation, so about half the high-order failures); ``single``: severity 1.2.
    """
    root = tmp_path_factory.mktemp("cmp")
    out: dict[str, list[Path]] = {"base": [], "strict": [], "single": []}
    for seed in (1, 2, 3):
        out["base"].append(make_run(root / f"base-seed{seed}", name="thp", seed=seed, samples=150))
        out["strict"].append(make_run(root / f"strict-seed{seed}", name="thp", seed=seed, samples=150, severity=0.5,
                                      policy_fallback="defrag_mode"))
    out["single"].append(make_run(root / "single", name="thp", seed=1, samples=150, severity=1.2,
                                  policy_fallback="defrag_mode"))
    return out


@pytest.fixture(scope="session")
def replay_run(tmp_path_factory, shipped) -> Path:
    """A run directory written by the engine: ``kmemdes replay traces/b_compile_head`` (mirror mode)."""
    from kmemdes.cli import main

    out = tmp_path_factory.mktemp("replay") / "compile-mirror"
    rc = main(["replay", str(shipped / "b_compile_head"), "-o", str(out)])
    if rc != 0:
        pytest.fail(f"kmemdes replay traces/b_compile_head failed (rc={rc}): the engine cannot write a run directory")
    return out


@pytest.fixture
def run_copy(tmp_path, small_run) -> Path:
    """A private copy of small_run that a test may damage."""
    dst = tmp_path / "copy"
    shutil.copytree(small_run, dst)
    return dst
