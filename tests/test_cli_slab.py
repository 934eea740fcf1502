"""``kmemdes slab``: geometry against every real /proc/slabinfo snapshot, kmalloc classes against
every kmalloc event of the real traces."""

from __future__ import annotations

from pathlib import Path

import pytest

from kmemdes.cli import main
from tests._tracescan import scan

#: Caches whose real geometry depends on something /proc/slabinfo does not show (an explicit
#: order or min_objects at creation).  None on the 6.18 reference: every cache follows
#: calculate_order() from its objsize.  Keep this list explicit: a new exception needs a reason.
GEOMETRY_EXCEPTIONS: dict[str, str] = {}


def _rows(text: str) -> dict[str, tuple[int, int]]:
    out = {}
    for line in text.splitlines()[2:]:
        f = line.split()
        out[f[0]] = (int(f[4]), int(f[5]))
    return out


def _check_snapshot(path: Path, cpus: int, capsys) -> int:
    assert main(["slab", "--cpus", str(cpus), "--slabinfo", str(path)]) == 0
    out = capsys.readouterr()
    real = path.read_text()
    model, want = _rows(out.out), _rows(real)
    assert list(model) == list(want)
    bad = {n: (model[n], want[n]) for n in want if model[n] != want[n] and n not in GEOMETRY_EXCEPTIONS}
    assert not bad, f"{path}: model (objperslab, pagesperslab) differs: {bad}"
    if not GEOMETRY_EXCEPTIONS:
        assert out.out == real  # byte for byte: same layout, same numbers
        assert out.err == ""
    return len(want)


def test_shipped_slabinfo_snapshots(shipped, capsys):
    n = 0
    # capture folders (NAME/before/slabinfo) and pressure_start/NAME/slabinfo (a before/ folder itself)
    for path in sorted(shipped.glob("*/*/slabinfo")):
        nproc = path.parent / "nproc"
        cpus = int((nproc if nproc.exists() else path.parent.parent / "before" / "nproc").read_text())
        n += _check_snapshot(path, cpus, capsys)
    assert n >= 3 * 230


@pytest.mark.corpus
def test_corpus_slabinfo_snapshots(corpus, capsys):
    paths = sorted(corpus.glob("*/before/slabinfo")) + sorted(corpus.glob("*/after/slabinfo"))
    assert len(paths) >= 10
    n = 0
    for path in paths:
        cpus = int((path.parent.parent / "before" / "nproc").read_text())
        n += _check_snapshot(path, cpus, capsys)
    print(f"slabinfo geometry: {n} cache lines on {len(paths)} snapshots, all equal")


def test_geometry_depends_on_cpus(shipped, capsys):
    """KERNEL.md section 10 table: kmalloc-512 is order 0 x8 on 1 CPU, order 2 x32 on 8 CPUs."""
    path = shipped / "a_idle_stream" / "before" / "slabinfo"
    for cpus, want in ((1, (8, 1)), (2, (16, 2)), (8, (32, 4)), (64, (32, 4))):
        assert main(["slab", "--cpus", str(cpus), "--slabinfo", str(path)]) == 0
        out = capsys.readouterr()
        assert _rows(out.out)["kmalloc-512"] == want
        if cpus != 2:
            assert "differs" in out.err


def _kmalloc_cli(sizes, capsys) -> dict[int, tuple[str, int]]:
    assert main(["slab", "--cpus", "2", "--kmalloc", *map(str, sizes)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["bytes_req", "cache", "bytes_alloc"]
    out = {}
    for line in lines[1:]:
        f = line.split()
        if f[1] == "pages":
            out[int(f[0])] = (f"order-{f[3]}", int(f[4]))
        else:
            out[int(f[0])] = (f[1], int(f[2]))
    return out


def test_kmalloc_examples(capsys):
    got = _kmalloc_cli([100, 4000, 9000, 8, 9, 24, 96, 97, 192, 193, 8192, 8193, 16384, 16385, 2 << 20, 4 << 20, 0], capsys)
    assert got[100] == ("kmalloc-128", 128)
    assert got[9000] == ("order-2", 16384)
    assert got[4000] == ("kmalloc-4k", 4096)
    assert got[24] == ("kmalloc-32", 32)  # no 24-byte class
    assert got[96] == ("kmalloc-96", 96) and got[97] == ("kmalloc-128", 128)
    assert got[192] == ("kmalloc-192", 192) and got[193] == ("kmalloc-256", 256)
    assert got[8192] == ("kmalloc-8k", 8192) and got[8193] == ("order-2", 16384)
    assert got[16385] == ("order-3", 32768)
    assert got[2 << 20] == ("order-9", 2 << 20) and got[4 << 20] == ("order-10", 4 << 20)
    assert got[0] == ("ZERO_SIZE_PTR", 0)


def test_kmalloc_family_from_gfp(capsys):
    assert main(["slab", "--cpus", "2", "--gfp", "GFP_KERNEL_ACCOUNT", "--kmalloc", "100"]) == 0
    assert "kmalloc-cg-128" in capsys.readouterr().out
    assert main(["slab", "--cpus", "2", "--gfp", "GFP_KERNEL|__GFP_RECLAIMABLE", "--kmalloc", "1000"]) == 0
    assert "kmalloc-rcl-1k" in capsys.readouterr().out
    assert main(["slab", "--cpus", "2", "--gfp", "GFP_DMA|__GFP_RECLAIMABLE", "--kmalloc", "64"]) == 0
    assert "dma-kmalloc-64" in capsys.readouterr().out


_KMALLOC = rb"kmalloc: [^\n]*?bytes_req=(\d+) bytes_alloc=(\d+)"


def _check_trace_pairs(path: Path, capsys) -> tuple[int, int]:
    pairs: dict[tuple[int, int], int] = {}
    for m in scan(path, _KMALLOC):
        key = (int(m[1]), int(m[2]))
        pairs[key] = pairs.get(key, 0) + 1
    assert pairs, path
    got = _kmalloc_cli(sorted({r for r, _ in pairs}), capsys)
    bad = {(r, a): got[r] for r, a in pairs if got[r][1] != a}
    assert not bad, f"{path}: (bytes_req, bytes_alloc) pairs the model gets wrong: {bad}"
    return sum(pairs.values()), len(pairs)


def test_kmalloc_events_of_shipped_traces(shipped, capsys):
    n1, _ = _check_trace_pairs(shipped / "a_idle_stream" / "trace.txt.zst", capsys)
    n2, _ = _check_trace_pairs(shipped / "b_compile_head" / "trace.txt.zst", capsys)
    assert n1 == 100  # README: 100 kmalloc events in a_idle_stream
    assert n2 > 700


@pytest.mark.corpus
@pytest.mark.slow
def test_kmalloc_events_of_corpus(corpus, capsys):
    files = [corpus / d / "trace.txt.zst" for d in ("a_idle_stream", "b_compile_nohash", "c_fschurn", "d_net_loopback")]
    files.append(corpus / "g_tracecmd_compile" / "report.txt.zst")
    expected = {"a_idle_stream": 100, "b_compile_nohash": 9546, "c_fschurn": 175749,
                "d_net_loopback": 9510, "g_tracecmd_compile": 3353}  # README section 6 event counts
    report = []
    for f in files:
        n, distinct = _check_trace_pairs(f, capsys)
        assert n == expected[f.parent.name], f
        report.append(f"{f.parent.name}: {n} kmalloc events, {distinct} distinct pairs, all equal")
    print("\n".join(report))


@pytest.mark.parametrize(
    "args, message",
    [
        (["slab", "--cpus", "0"], "--cpus: must be at least 1"),
        (["slab", "--cpus", "two"], "--cpus: 'two' is not a whole number"),
        (["slab", "--cpus", "-3"], "--cpus: must be at least 1"),
        (["slab", "--cpus", "2", "--kmalloc", "-5"], "--kmalloc: size '-5' is negative"),
        (["slab", "--cpus", "2", "--kmalloc", "12x"], "--kmalloc: size '12x' is not a number"),
        (["slab", "--cpus", "2", "--kmalloc"], "--kmalloc: give at least one size"),
        (["slab", "--cpus", "2", "100"], "unexpected argument '100'"),
        (["slab", "--cpus", "2", "--gfp", "GFP_BOGUS", "--kmalloc", "8"], "--gfp: unknown GFP flag"),
        (["slab", "--cpus", "2", "--slabinfo", "/nonexistent/slabinfo"], "/nonexistent/slabinfo: no such file"),
        (["slab", "--slabinfo", "/nonexistent/slabinfo"], "/nonexistent/slabinfo: no such file"),
    ],
)
def test_bad_arguments_one_line_exit_2(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_bad_slabinfo_file(tmp_path, capsys):
    f = tmp_path / "slabinfo"
    f.write_text("slabinfo - version: 2.1\n# name ...\nkmalloc-8 1 2 three 4 5 : tunables 0 0 0 : slabdata 1 1 0\n")
    assert main(["slab", "--cpus", "2", "--slabinfo", str(f)]) == 2
    assert f"{f}:3: malformed slabinfo line" in capsys.readouterr().err
    f.write_text("MemTotal: 1 kB\n")
    assert main(["slab", "--cpus", "2", "--slabinfo", str(f)]) == 2
    assert "not a /proc/slabinfo file" in capsys.readouterr().err


def test_help_ends_with_example(capsys):
    assert main(["slab", "--help"]) == 0
    out = capsys.readouterr().out
    assert "kmemdes slab --cpus 2 --kmalloc 100 4000 9000" in out


def test_without_cpus(tmp_path, capsys):
    """No --cpus: this machine's CPUs without --slabinfo; a slabinfo file with no nproc next to it needs --cpus."""
    import os

    ncpus = len(os.sched_getaffinity(0))
    assert main(["slab", "--cpus", str(ncpus)]) == 0
    expected = capsys.readouterr().out
    assert main(["slab"]) == 0
    assert capsys.readouterr().out == expected
    f = tmp_path / "slabinfo"
    f.write_text("slabinfo - version: 2.1\n")
    assert main(["slab", "--slabinfo", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--cpus: required: {f} has no nproc file next to it" in err
