"""Test helper: fast scans of real .zst traces (zstandard stream + one bytes regex per chunk)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import zstandard


def scan(path: Path, pattern: bytes) -> Iterator[re.Match]:
    """Yield matches of ``pattern`` (which must not span lines) over a zstd-compressed text file."""
    pat = re.compile(pattern)
    with open(path, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as r:
        tail = b""
        while True:
            chunk = r.read(1 << 24)
            if not chunk:
                break
            buf = tail + chunk
            cut = buf.rfind(b"\n") + 1
            yield from pat.finditer(buf, 0, cut)
            tail = buf[cut:]
        if tail:
            yield from pat.finditer(tail)
