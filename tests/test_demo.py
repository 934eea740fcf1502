"""``kmemdes demo``: the numbers it prints follow the kernel's rules; deterministic; CLI errors."""

from __future__ import annotations

from pathlib import Path

from kmemdes.cli import main
from kmemdes.demo import part1, pfn_runs, run_demo

PAGE_OFFSET = 0xC0000000


def _run(seed=0):
    lines = []
    res = part1(seed, lines.append)
    return res, "\n".join(lines)


def test_part1_addresses_and_regions():
    res, text = _run()
    k = res["kernel"]
    page, obj = res["page"], res["kmalloc"]
    assert PAGE_OFFSET <= page["addr"] < 0xCA000000 and page["phys"] == page["addr"] - PAGE_OFFSET
    assert obj["phys"] == obj["addr"] - PAGE_OFFSET and obj["cache"] == "kmalloc-128" and obj["bytes_alloc"] == 128
    assert obj["large_order"] == 3  # kmalloc(20000): get_order -> 3, one block
    v = res["vmalloc"]
    assert v["addr"] == 0xCA800000  # first vmalloc on the machine: lowest fit = VMALLOC_START = high_memory + 8 MB
    assert len(v["pfns"]) == 245 and len(set(v["pfns"])) == 245  # PAGE_ALIGN(1000000) / 4096
    assert len(v["runs"]) > 1 and sum(n for _, n in v["runs"]) == 245
    assert {k.zone_name(p) for p in v["pfns"]} == {"Normal"}  # HighMem is empty on 160 MB
    m = res["malloc"]
    assert m["addr"] < PAGE_OFFSET and (m["addr"] - 8) % 4096 == 0  # mmap chunk: 2 * SIZE_SZ header
    assert m["faults"] == 26 and m["read_allocs"] == 0  # 100 KB from offset 8 spans 26 pages; reads: zero page
    for needle in ("virt_to_phys(0xca800000) is refused", "vmalloc_to_page", "zero page",
                   "gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO|__GFP_COMP", "kmalloc-128",
                   "virtual kernel memory layout:", "malloc(1000000)", "PAGE_OFFSET + 168.0 MB"):
        assert needle in text, needle
    assert "Summary" in text


def test_deterministic_and_seeded(capsys):
    a = []
    b = []
    run_demo(0, a.append, part="1")
    run_demo(0, b.append, part="1")
    assert a == b
    c = []
    run_demo(1, c.append, part="1")
    assert c != a


def test_cli_demo(capsys):
    assert main(["demo", "--part", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("kmemdes demo: kmalloc vs vmalloc vs malloc") and "Summary" in out
    assert main(["demo", "--seconds", "0"]) == 2
    assert "--seconds: must be at least 1" in capsys.readouterr().err
    assert main(["demo", "--seed", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--seed" in err
    assert main(["demo", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "kmemdes demo" in help_text and "prints to stdout and writes no files" not in help_text
    assert "runs/demo-part2-kmalloc" in help_text


def test_part2_requests_and_failures(tmp_path, monkeypatch):
    """One 1 MB request per simulated second; kmalloc needs an order-8 block (get_order(1 MiB) = 8),
    vmalloc single pages: under the fragmented start kmalloc cannot fail less often than vmalloc.
    The two run directories go under ``root`` (tmp_path here), nothing into the working directory."""
    from kmemdes.demo import part2, part2_config

    cfg = part2_config("kmalloc", 5)
    assert cfg["machine"] == {"arch": "x86_32", "mem": "160M", "cpus": 1}
    assert cfg["workloads"][0]["size"] == 1 << 20 and cfg["workloads"][0]["interval"] == "1s"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    lines = []
    res = part2(lines.append, seconds=5, seed=0, root=tmp_path / "out")
    if res is None:  # engine unavailable: the hook says so
        assert "needs the simulation engine" in "\n".join(lines)
        return
    assert res["kmalloc"]["requests"] == res["vmalloc"]["requests"] == 5
    assert res["kmalloc"]["failures"] >= res["vmalloc"]["failures"]
    assert any(line.lstrip().startswith("kmalloc ") for line in lines)
    for api in ("kmalloc", "vmalloc"):
        d = tmp_path / "out" / f"demo-part2-{api}"
        assert res[api]["run_dir"] == str(d) and (d / "summary.json").is_file()
        assert f"  {d}" in lines
    assert list(cwd.iterdir()) == []


def test_make_demo_runs_it():
    assert "kmemdes demo" in (Path(__file__).resolve().parent.parent / "Makefile").read_text()


def test_pfn_runs():
    assert pfn_runs([]) == [] and pfn_runs([1, 2, 3]) == [(1, 3)]


def test_part2_runs_are_byte_identical(tmp_path):
    """The same config and seed give the same run, byte for byte, with processes, page cache and
    network buffers expiring at the same instants (their order must not follow memory addresses)."""
    from kmemdes.config import Config
    from kmemdes.demo import part2_config
    from kmemdes.sim.engine import run_config

    cfg = Config.model_validate(part2_config("kmalloc", 12, 0))
    runs = []
    for i in range(3):
        junk = [object() for _ in range(1000 * i)]  # shift the addresses the next objects get
        out, summary = run_config(cfg, tmp_path / f"r{i}", progress=False)
        del junk
        summary.pop("wall_s"), summary.pop("events_per_s", None)
        runs.append((summary, {p.name: p.read_bytes() for p in sorted((out / "metrics").glob("*.parquet"))}))
    assert runs[0] == runs[1] == runs[2]
