"""Experiment configs: validation errors name the file, the key path and the allowed values."""

from __future__ import annotations

import pytest

from kmemdes.config import dump_toml, load_config, parse_config, parse_duration, parse_value, set_dotted
from kmemdes.errors import KmemdesError


@pytest.mark.parametrize("text, message", [
    ('[machine]\nmemory = "1G"\n', "e.toml: machine.memory: unknown key (allowed: arch, mem, cpus, kernel)"),
    ('[policy]\nfallback = "strict"\n', "e.toml: policy.fallback: Input should be 'default' or 'defrag_mode'"),
    ('[[workloads]]\nkind = "drive"\n', "e.toml: workloads[0].kind: unknown workload kind 'drive' (allowed: driver,"),
    ('[[workloads]]\nkind = "driver"\nordr = 3\n', "e.toml: workloads[0].ordr: unknown key (allowed: name, start"),
    ('[[workloads]]\nkind = "driver"\norder = 11\n', "e.toml: workloads[0].order: Input should be less than or equal to 10"),
    ('duration = "3x"\n', "e.toml: duration: bad duration '3x'"),
    ('[machine]\nmem = "12Q"\n', "e.toml: machine.mem: bad size '12Q'"),
    ('[[workloads]]\nkind = "replay"\n', "e.toml: workloads[0].trace: Field required"),
    ('[[workloads]]\nkind = "driver"\ngfp = "GFP_KERNAL"\n', "e.toml: workloads[0].gfp: unknown GFP flag 'GFP_KERNAL'"),
    ('seed = \n', "e.toml: not valid TOML"),
    ('[cost]\nbogus_ns = 5\n', "e.toml: cost.bogus_ns: unknown key (allowed: buddy_base, "),
    ('[cost]\npcp_hit = -1\n', "e.toml: cost.pcp_hit: must be a whole number of ns >= 0, got -1"),
    # gaps found by issue 15: each names the file and the key
    ("", "e.toml: empty config"),
    ("\n# only a comment\n", "e.toml: empty config"),
    ('[[workloads]]\nkind = "driver"\napi = "kmalloc"\n', "e.toml: workloads[0].size: required for api = 'kmalloc'"),
    ('[[workloads]]\nkind = "driver"\ninterval = "0s"\n', "e.toml: workloads[0].interval: must be longer than 0"),
    ('sample_interval = "0s"\n[[workloads]]\nkind = "anon"\n', "e.toml: sample_interval: must be longer than 0"),
    ('duration = "1s"\nsample_interval = "5s"\n[[workloads]]\nkind = "anon"\n',
     "e.toml: sample_interval: '5s' is longer than duration '1s'"),
    ('[machine]\nmem = "4K"\n', "e.toml: machine.mem: '4K' is too small: at least 16M"),
    ('[machine]\narch = "x86_32"\nmem = "128G"\n', "e.toml: machine.mem: '128G': x86_32 (PAE) supports at most 64G"),
])
def test_errors_name_the_key_path(text, message, tmp_path, monkeypatch):
    with pytest.raises(KmemdesError) as e:
        parse_config(text, "e.toml")
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)
    # the same through a file, as `kmemdes run e.toml` reads it (includes, relative paths)
    (tmp_path / "e.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KmemdesError) as e:
        load_config("e.toml")
    assert str(e.value).startswith(message)


def test_resolved_config_round_trips_with_every_default():
    cfg = parse_config('name = "x"\n[[workloads]]\nkind = "anon"\n')
    text = dump_toml(cfg)
    assert "watermark_scale_factor = 10" in text and "[[workloads]]" in text and 'madvise_hugepage = true' in text
    assert parse_config(text) == cfg


@pytest.mark.parametrize("driver, note", [
    ('api = "vmalloc"\nsize = 1048576', 'order = 4  # not used: vmalloc asks for size bytes'),
    ('api = "kmalloc"\nsize = 20000', 'order = 4  # not used: kmalloc asks for size bytes'),
    ('api = "alloc_pages"\norder = 9\nsize = 4096', 'size = 4096  # not used: alloc_pages asks for order'),
    ('api = "vmalloc"\norder = 3', None),  # no size: 4096 << order bytes
])
def test_resolved_config_marks_the_driver_key_the_request_does_not_read(driver, note):
    cfg = parse_config(f'[[workloads]]\nkind = "driver"\n{driver}\n')
    text = dump_toml(cfg)
    assert (note in text) if note else ("not used" not in text)
    assert parse_config(text) == cfg


def test_set_dotted_revalidates():
    cfg = parse_config('[[workloads]]\nkind = "driver"\n')
    cfg2 = set_dotted(cfg, "policy.fallback", "defrag_mode")
    assert cfg2.policy.fallback == "defrag_mode" and cfg.policy.fallback == "default"
    assert set_dotted(cfg, "workloads.0.order", 9).workloads[0].order == 9
    with pytest.raises(KmemdesError, match="policy.fallback: Input should be"):
        set_dotted(cfg, "policy.fallback", "nope")
    with pytest.raises(KmemdesError, match="unknown key 'polcy'"):
        set_dotted(cfg, "polcy.fallback", "x")


def test_durations_and_values():
    assert parse_duration("1.5s") == 1_500_000_000 and parse_duration("250us") == 250_000
    assert parse_value("2") == 2 and parse_value("false") is False and parse_value("a,b") == "a,b"


def test_load_config_missing_file():
    with pytest.raises(KmemdesError, match="nope.toml: no such file"):
        load_config("nope.toml")


def test_mem_as_a_plain_number_of_bytes():
    cfg = parse_config('[machine]\nmem = 268435456\n', "x.toml")
    assert cfg.machine.mem == 268435456
    assert parse_config(dump_toml(cfg)) == cfg
