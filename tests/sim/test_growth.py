"""kmemdes/sim/growth.py: memory deferred init hands over during a trace enters the model block by block."""

from __future__ import annotations

import json
import shutil

import zstandard

from kmemdes.cli import main


def _capture_with_growth(shipped, tmp_path, blocks: int):
    """a_idle_stream's before/ snapshot (Normal managed: pfns 0x100000-0x167fff) and the head of its
    trace, then what deferred init does when the zone grows: one ``mm_page_free`` of order 10 per
    block handed over (free_pages_prepare fires it), and an allocation from the new memory."""
    cap = tmp_path / "cap"
    cap.mkdir(parents=True)
    shutil.copytree(shipped / "a_idle_stream" / "before", cap / "before")
    shutil.copy(shipped / "a_idle_stream" / "meta.txt", cap / "meta.txt")
    with open(shipped / "a_idle_stream" / "trace.txt.zst", "rb") as f:
        lines = zstandard.ZstdDecompressor().stream_reader(f).read(1 << 22).decode().splitlines(keepends=True)[:300]
    pre = "     kworker/0:1-11      [000] .....  1947.400000: "
    grow = [f"{pre}mm_page_free: page=0000000000000000 pfn={0x168000 + 1024 * i:#x} order=10\n"
            for i in range(blocks)]
    if blocks:
        grow.append(f"{pre}mm_page_alloc: page=0000000000000000 pfn=0x168000 order=0 migratetype=1 "
                    "gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO\n")
    (cap / "trace.txt.zst").write_bytes(zstandard.ZstdCompressor().compress("".join(lines + grow).encode()))
    return cap


def _normal_order10(summary) -> int:
    row = next(ln for ln in summary["final"]["buddyinfo"].splitlines() if "Normal" in ln)
    return int(row.split()[-1])


def test_grown_memory_enters_as_the_kernel_frees_it(shipped, tmp_path, capsys):
    base = _capture_with_growth(shipped, tmp_path / "a", 0)
    grown = _capture_with_growth(shipped, tmp_path / "b", 6)
    out = {}
    for name, cap in (("base", base), ("grown", grown)):
        assert main(["replay", str(cap), "-o", str(tmp_path / name)]) == 0, capsys.readouterr().err
        out[name] = json.loads((tmp_path / name / "summary.json").read_text())
    b, g = out["base"], out["grown"]
    # the six freed blocks, and nothing else of the 163,840-page step, became free memory
    assert g["quirks"]["zone_growth"] == 6 and g["quirk_pages"]["zone_growth"] == 6 * 1024
    assert g["quirks"].get("free_of_page_free_in_model", 0) == b["quirks"].get("free_of_page_free_in_model", 0)
    # one of them was split for the order-0 allocation (orders 0-9 gain one block each)
    assert _normal_order10(g) == _normal_order10(b) + 5
    assert "zone_growth" not in b["quirks"]
    assert g["events_replayed"] + sum(g["quirks"].values()) == g["events"]
