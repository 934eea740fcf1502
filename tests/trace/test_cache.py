"""kmemdes.trace.cache: a text trace parsed once is loaded from its .kmt, exactly as parsed."""

from __future__ import annotations

import os
import shutil

import pytest

from kmemdes.trace import cache as C
from kmemdes.trace import reader as R
from kmemdes.trace.reader import read_trace

COLUMNS = ("ts", "kind", "cpu", "pfn", "order", "gfp", "cache", "ptr", "pid")


@pytest.fixture
def cached(tmp_path, monkeypatch):
    """A cache folder under tmp_path that takes every trace (no size floor)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("KMEMDES_CACHE", str(folder))
    monkeypatch.setattr(C, "MIN_BYTES", 0)
    return folder


def _capture(shipped, tmp_path):
    dst = tmp_path / "a_idle_stream"
    shutil.copytree(shipped / "a_idle_stream", dst)
    return dst


def _parses(monkeypatch) -> list:
    calls = []
    real = R._read_text

    def counting(*a, **k):
        calls.append(a[0])
        return real(*a, **k)

    monkeypatch.setattr(R, "_read_text", counting)
    return calls


@pytest.mark.parametrize("columns", [None, COLUMNS])
def test_hit_is_the_parse(shipped, tmp_path, monkeypatch, cached, columns):
    cap = _capture(shipped, tmp_path)
    calls = _parses(monkeypatch)
    a = read_trace(cap, columns=columns)
    assert len(calls) == 1 and len(list(cached.glob("*.kmt"))) == 1
    b = read_trace(cap, columns=columns)
    assert len(calls) == 1  # loaded, not parsed
    assert b.events.equals(a.events) and b.events.schema == a.events.schema
    assert b.meta == a.meta and b.problems == a.problems


def test_key(shipped, tmp_path, monkeypatch, cached):
    """Other columns, strict, or a changed file are other entries; a damaged entry is parsed again."""
    cap = _capture(shipped, tmp_path)
    calls = _parses(monkeypatch)
    read_trace(cap, columns=COLUMNS)
    read_trace(cap)
    read_trace(cap, strict=True)
    assert len(calls) == 3 and len(list(cached.glob("*.kmt"))) == 3
    f = R.find_capture_trace(cap)
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    read_trace(cap)
    assert len(calls) == 4
    entry = C.entry_path(f, None, False)
    entry.write_bytes(entry.read_bytes()[:-40])  # cut short
    t = read_trace(cap)
    assert len(calls) == 5 and t.events.height > 0
    read_trace(cap)
    assert len(calls) == 5  # stored again, good


def test_off_and_small(shipped, tmp_path, monkeypatch):
    cap = _capture(shipped, tmp_path)
    monkeypatch.setenv("KMEMDES_CACHE", "off")
    assert C.cache_dir() is None
    monkeypatch.setenv("KMEMDES_CACHE", str(tmp_path / "c"))
    read_trace(cap)  # the shipped trace is under MIN_BYTES: parsed, not kept
    assert not (tmp_path / "c").exists()


def test_eviction(shipped, tmp_path, monkeypatch, cached):
    cap = _capture(shipped, tmp_path)
    monkeypatch.setattr(C, "MAX_ENTRIES", 2)
    for cols in (COLUMNS, COLUMNS[:3], COLUMNS[:4]):
        read_trace(cap, columns=cols)
    assert len(list(cached.glob("*.kmt"))) == 2
