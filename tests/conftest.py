"""Shared fixtures: where the real traces are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "traces"
CORPUS = Path(os.environ.get("KMEMDES_CORPUS", ROOT.parent / "shared" / "traces"))
# every test parses its traces (and writes nothing under ~/.cache): tests/trace/test_cache.py turns the cache
# of parsed text traces (kmemdes.trace.cache) on in a folder of its own
os.environ["KMEMDES_CACHE"] = "off"


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The big real-trace corpus (../shared/traces); tests using it skip where it is absent."""
    if not (CORPUS / "README.md").exists():
        pytest.skip(f"trace corpus not found at {CORPUS} (set KMEMDES_CORPUS)")
    return CORPUS


@pytest.fixture(scope="session")
def shipped() -> Path:
    """The small real traces shipped with the project in traces/."""
    return SHIPPED


@pytest.fixture(scope="session")
def trace_results():
    """``trace_results(path)``: a real trace parsed once per session, reduced to
    small facts (stats, problems, .kmt round trip, independent grep-like counts);
    see tests/trace/_results.py."""
    from tests.trace._results import results

    return results
