"""The model's /proc views reproduce real files byte for byte."""

from __future__ import annotations

import glob
from pathlib import Path


from kmemdes.mm import vmstat
from kmemdes.mm.mm_init import build_node, node_from_snapshot, parse_size
from kmemdes.trace.snapshot import parse_zoneinfo, read_snapshot


def _snapshots(root):
    return [Path(d) for d in sorted(glob.glob(str(root / "*" / "before")) + glob.glob(str(root / "*" / "after")))
            if (Path(d) / "pagetypeinfo").exists()]


def _roundtrip(folder: Path):
    snap = read_snapshot(folder)
    node, notes = node_from_snapshot(snap)
    node.check()
    assert vmstat.pagetypeinfo(node) == snap.texts["pagetypeinfo"]
    consistent = not any("disagree" in n for n in notes)
    if consistent:
        assert vmstat.buddyinfo(node) == snap.texts["buddyinfo"]
    # zoneinfo: every field the model prints equals the real file's
    real = {z.name: z for z in parse_zoneinfo(snap.texts["zoneinfo"])}
    ours = {z.name: z for z in parse_zoneinfo(vmstat.zoneinfo(node))}
    assert set(ours) == set(real)
    for name, z in ours.items():
        r = real[name]
        for f in ("min", "low", "high", "promo", "spanned", "present", "managed", "boost", "protection",
                  "start_pfn"):
            assert getattr(z, f) == getattr(r, f), (folder, name, f)
        if consistent:
            # 'pages free' is read at another instant: a zone serving allocations may have moved
            # (Normal; DMA32 too when Normal is short, as in the pressure captures j and k)
            assert z.free == r.free or name in ("Normal", "DMA32")
        for ours_p, real_p in zip(z.pagesets, r.pagesets):
            assert {k: ours_p[k] for k in ("batch", "high_min", "high_max", "high")} == \
                   {k: real_p[k] for k in ("batch", "high_min", "high_max", "high")}
    return consistent


def test_snapshot_roundtrip_shipped(shipped):
    for folder in _snapshots(shipped):
        _roundtrip(folder)


def test_snapshot_roundtrip_corpus(corpus):
    folders = _snapshots(corpus)
    assert len(folders) >= 10
    consistent = sum(_roundtrip(f) for f in folders)
    assert consistent >= len(folders) - 2  # c_fschurn/before and d_net_loopback/before were read apart


def test_zoneinfo_vm_stats_threshold_and_layout(shipped):
    real = (shipped / "a_idle_stream" / "before" / "zoneinfo").read_text()
    node, _ = node_from_snapshot(read_snapshot(shipped / "a_idle_stream" / "before"))
    ours = vmstat.zoneinfo(node)
    for needle in ("  vm stats threshold: 4\n", "  vm stats threshold: 24\n", "  vm stats threshold: 20\n",
                   "  start_pfn:           1048576\n", "Node 0, zone  Movable\n", "Node 0, zone   Device\n",
                   "        protection: (0, 3019, 4683, 4683, 4683)\n"):
        assert needle in real and needle in ours


def test_fresh_machine_dma_zone_matches_the_reference_boot():
    # the reference machine's DMA zone: 0..0xff reserved, 3840 managed, buddyinfo 0 ... 1 1 3
    node = build_node("x86_64", parse_size("24G"))
    text = vmstat.buddyinfo(node)
    assert text.splitlines()[0] == "Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3 "
    assert node.zones[0].managed == 3840 and node.zones[0].present == 3998 and node.zones[0].spanned == 4095


def test_pagetypeinfo_caps_long_lists_with_a_marker():
    node = build_node("x86_64", parse_size("1T"))
    text = vmstat.pagetypeinfo(node)
    line = [l for l in text.splitlines() if "Normal, type      Movable" in l][0]
    assert line.split()[-1] == ">100000"
