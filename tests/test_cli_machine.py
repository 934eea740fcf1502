"""End-to-end: `kmemdes machine` and `kmemdes frag`, on real snapshots and on the live kernel."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from kmemdes.cli import main


def run(capsys, *args):
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_machine_from_snapshot_prints_the_input_back(capsys, shipped):
    snap = shipped / "a_idle_stream" / "before"
    for show in ("buddyinfo", "pagetypeinfo"):
        rc, out, err = run(capsys, "machine", "--from-snapshot", str(snap), "--show", show)
        assert rc == 0, err
        assert out == (snap / show).read_text()


def test_machine_fresh_64g_zoneinfo_layout(capsys):
    rc, out, err = run(capsys, "machine", "--mem", "64G", "--show", "zoneinfo")
    assert rc == 0, err
    assert out.startswith("Node 0, zone      DMA\n  pages free     3840\n")
    assert "Node 0, zone   Normal\n" in out and "Node 0, zone  Movable\n" in out
    # 64 GiB: the Normal zone spans 4 GiB .. 65 GiB (RAM above the 3 GiB PCI hole is remapped)
    assert "  start_pfn:           1048576\n" in out
    assert "        spanned  15990784\n" in out


@pytest.mark.parametrize("args, message", [
    (["machine", "--mem", "12Q"], "bad size '12Q'"),
    (["machine", "--from-snapshot", "/nonexistent"], "/nonexistent: not a snapshot folder"),
    (["frag", "/nonexistent/buddyinfo"], "/nonexistent/buddyinfo: no such file"),
])
def test_bad_input_is_one_line(capsys, args, message):
    rc, out, err = run(capsys, *args)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_garbled_and_truncated_snapshots_name_file_and_line(capsys, tmp_path, shipped):
    src = shipped / "a_idle_stream" / "before"
    for name in ("buddyinfo", "pagetypeinfo", "zoneinfo"):
        d = tmp_path / f"bad_{name}"
        d.mkdir()
        for f in ("buddyinfo", "pagetypeinfo", "zoneinfo", "nproc"):
            (d / f).write_text((src / f).read_text())
        text = (src / name).read_text()
        lines = text.splitlines(keepends=True)
        k = len(lines) // 2
        (d / name).write_text("".join(lines[:k]) + lines[k][:20] + "\n")  # cut in the middle of a line
        rc, out, err = run(capsys, "machine", "--from-snapshot", str(d), "--show", "buddyinfo")
        assert rc == 2, (name, err)
        assert f"{d / name}" in err and "Traceback" not in err and err.count("\n") == 1
    (tmp_path / "bi").write_bytes(b"\x00\x01garbage\xff")
    rc, out, err = run(capsys, "frag", str(tmp_path / "bi"))
    assert rc == 2 and "bi:1:" in err


def test_frag_of_a_snapshot(capsys, shipped):
    snap = shipped / "a_idle_stream" / "after"
    rc, out, err = run(capsys, "frag", str(snap / "buddyinfo"), "--index", "extfrag")
    assert rc == 0 and out == (snap / "extfrag_index").read_text()


def test_frag_reads_stdin(monkeypatch, capsys, shipped):
    import io

    text = (shipped / "a_idle_stream" / "after" / "buddyinfo").read_text()
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    rc, out, err = run(capsys, "frag", "-")
    assert rc == 0 and out.startswith("Node 0, zone      DMA 0.000")


@contextlib.contextmanager
def private_debugfs():
    """Mount debugfs on a private temporary directory; always unmount and remove it."""
    d = tempfile.mkdtemp(prefix="kmemdes_debugfs_")
    mounted = False
    try:
        r = subprocess.run(["mount", "-t", "debugfs", "none", d], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount debugfs: {r.stderr.decode().strip()}")
        mounted = True
        yield Path(d)
    finally:
        if mounted:
            subprocess.run(["umount", d], capture_output=True)
        os.rmdir(d)


@pytest.mark.kernel
def test_frag_equals_the_live_kernel_debugfs(capsys):
    if os.geteuid() != 0 or not Path("/proc/buddyinfo").exists():
        pytest.skip("needs root and /proc/buddyinfo")
    with private_debugfs() as dbg:
        ext = dbg / "extfrag"
        if not (ext / "unusable_index").exists():
            pytest.skip("debugfs has no extfrag/ (CONFIG_COMPACTION off?)")
        for kind, fname in (("unusable", "unusable_index"), ("extfrag", "extfrag_index")):
            for _ in range(200):  # read buddyinfo, debugfs, buddyinfo until nothing moved in between
                b1 = Path("/proc/buddyinfo").read_text()
                real = (ext / fname).read_text()
                b2 = Path("/proc/buddyinfo").read_text()
                if b1 == b2:
                    break
            else:
                pytest.skip("buddyinfo kept changing during 200 reads")
            buddy = Path(tempfile.mkstemp(prefix="kmemdes_bi_")[1])
            try:
                buddy.write_text(b1)
                rc, out, err = run(capsys, "frag", str(buddy), "--index", kind)
            finally:
                buddy.unlink()
            assert rc == 0, err
            assert out == real
