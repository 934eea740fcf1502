"""kmemdes.trace.kmt: exact round trips (.kmt and Parquet), damaged files, atomic writes."""

from __future__ import annotations

import os
import stat
import zlib

import msgpack
import polars as pl
import pytest

from kmemdes.errors import KmemdesError
from kmemdes.trace import kmt as K
from kmemdes.trace.reader import KMT_MAGIC, Trace, read_trace
from kmemdes.trace.schema import EVENT_SCHEMA
from kmemdes.trace.text import parse_text


@pytest.fixture(scope="module")
def idle(shipped):
    return read_trace(shipped / "a_idle_stream")


def _odd_trace() -> Trace:
    """A trace with problems, LOST rows, nulls and extreme values in odd places."""
    text = (
        "            bash-12948   [001] .....  1968.174923: mm_page_alloc: page=ffffffffffffffff pfn=0x14f89f order=abc "
        "migratetype=0 gfp_flags=GFP_KERNEL|__GFP_NOPE\n"
        "CPU:0 [LOST 7 EVENTS]\n"
        "     Web Content-4321    [000] .....  1968.174924: kfree: call_site=x+0x1/0x2 ptr=ffffffffffffffff\n"
        "            bash-12948   [001] .....  1968.174925: sched_switch: prev_comm=a b c\n"
        "            bash-12948   [001] .....  1968.174926: alloc_vmap_area: va_start: 18446744073709551615 size=20480 "
        "align=16384 vstart=0xffffc90000000000 vend=0xffffe8ffffffffff failed=1\n"
    )
    ev, meta, problems = parse_text([text.encode()], "odd.txt")
    assert problems and ev.height == 5
    return Trace(ev, meta, problems)


@pytest.mark.parametrize("chunk_rows", [1 << 19, 3, 1])
def test_kmt_round_trip_is_exact(tmp_path, chunk_rows):
    t = _odd_trace()
    p = K.write_kmt(t, tmp_path / "odd.kmt", chunk_rows=chunk_rows)
    u = read_trace(p)
    assert u.events.equals(t.events) and u.events.schema == pl.Schema(EVENT_SCHEMA)
    assert u.problems == t.problems
    assert u.meta["format"] == "kmt" and u.meta["source_format"] == "ftrace" and u.meta["lines"] == t.meta["lines"]


def test_kmt_round_trip_capture_and_snapshots(tmp_path, idle):
    u = read_trace(K.write_kmt(idle, tmp_path / "a.kmt"))
    assert u.events.equals(idle.events)
    for k in ("capture", "before", "after", "uname", "cpus", "lines"):
        assert u.meta[k] == idle.meta[k], k
    assert u.meta["converted_from"] == idle.meta["source"]


def test_kmt_is_deterministic(tmp_path, idle):
    a = K.write_kmt(idle, tmp_path / "1.kmt").read_bytes()
    b = K.write_kmt(idle, tmp_path / "2.kmt").read_bytes()
    assert a == b and a.startswith(KMT_MAGIC)


def test_parquet_round_trip(tmp_path, idle):
    p = K.write_parquet(idle, tmp_path / "a.parquet")
    u = read_trace(p)
    assert u.meta["format"] == "parquet" and u.events.equals(idle.events)
    assert u.meta["capture"] == idle.meta["capture"] and u.meta["before"] == idle.meta["before"]
    t = _odd_trace()
    u = read_trace(K.write_parquet(t, tmp_path / "odd.parquet"))
    assert u.events.equals(t.events) and u.problems == t.problems


def test_damaged_kmt_files(tmp_path, idle):
    data = K.write_kmt(idle, tmp_path / "a.kmt", chunk_rows=4000).read_bytes()
    cut = tmp_path / "cut.kmt"
    for frac, what in ((0.9, "cut short after"), (0.1, "cannot read the .kmt header")):
        cut.write_bytes(data[: int(len(data) * frac)])
        with pytest.raises(KmemdesError, match=rf"cut\.kmt: .*{what}"):
            read_trace(cut)
    nohead = tmp_path / "h.kmt"
    nohead.write_bytes(KMT_MAGIC + b"\xc1")
    with pytest.raises(KmemdesError, match="h.kmt"):
        read_trace(nohead)
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0x55
    bad = tmp_path / "bad.kmt"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(KmemdesError, match="bad.kmt"):
        read_trace(bad)


def test_newer_kmt_version_is_refused(tmp_path, idle):
    head = K.header_of(idle)
    head["kmt"] = K.KMT_VERSION + 1
    p = tmp_path / "new.kmt"
    body = KMT_MAGIC + msgpack.packb(head)
    p.write_bytes(body + msgpack.packb({"end": True, "rows": 0, "crc32": zlib.crc32(body)}))
    with pytest.raises(KmemdesError, match="newer"):
        read_trace(p)


def test_every_flipped_header_byte_is_a_one_line_error(tmp_path, idle):
    # the CRC covers the header and is checked before the header is read (a flipped byte once gave
    # "TypeError: unhashable type: 'list'")
    data = K.write_kmt(idle, tmp_path / "a.kmt").read_bytes()
    head_end = len(KMT_MAGIC) + len(msgpack.packb(K.header_of(idle)))
    bad = tmp_path / "bad.kmt"
    for pos in range(len(KMT_MAGIC), min(head_end, len(KMT_MAGIC) + 400)):
        for bit in (0, 5):
            b = bytearray(data)
            b[pos] ^= 1 << bit
            bad.write_bytes(bytes(b))
            with pytest.raises(KmemdesError, match="bad.kmt: "):
                read_trace(bad)


def test_parquet_values_are_checked_against_their_digest(tmp_path, idle):
    p = K.write_parquet(idle, tmp_path / "a.parquet")
    kv = pl.read_parquet_metadata(p)
    # the same file with one value changed and the kmemdes metadata kept: what a flipped byte can do
    changed = idle.events.with_columns(pfn=pl.when(pl.int_range(pl.len()) == 7).then(123).otherwise(pl.col("pfn")))
    q = tmp_path / "b.parquet"
    changed.write_parquet(q, metadata=kv)
    with pytest.raises(KmemdesError, match="b.parquet: Parquet file damaged"):
        read_trace(q)
    assert read_trace(p).events.equals(idle.events)
    # a foreign Parquet file (no digest) is read as it is: what cannot be checked
    r = tmp_path / "c.parquet"
    changed.write_parquet(r)
    assert read_trace(r).events.height == idle.events.height


def test_a_parquet_reader_panic_is_a_one_line_error(tmp_path, idle, capfd):
    data = bytearray(K.write_parquet(idle, tmp_path / "a.parquet").read_bytes())
    bad = tmp_path / "bad.parquet"
    seen = 0
    for pos in range(200, len(data) - 2000, 997):  # flips in data pages: decoder errors and panics
        b = bytearray(data)
        b[pos] ^= 0x40
        bad.write_bytes(bytes(b))
        try:
            read_trace(bad)
        except KmemdesError as e:
            assert str(e).startswith(f"{bad}: ") and "\n" not in str(e)
            seen += 1
    assert seen
    assert "panicked" not in capfd.readouterr().err


def test_write_is_atomic(tmp_path, idle, monkeypatch):
    target = tmp_path / "a.kmt"
    real = K._encode_column
    calls = {"n": 0}

    def boom(s):
        calls["n"] += 1
        if calls["n"] > 20:
            raise OSError(28, "No space left on device")
        return real(s)

    monkeypatch.setattr(K, "_encode_column", boom)
    with pytest.raises(KmemdesError, match="No space left"):
        K.write_kmt(idle, target)
    assert list(tmp_path.iterdir()) == []


def test_written_files_get_the_umask_mode(tmp_path, idle):
    old = os.umask(0o022)
    try:
        for name in ("a.kmt", "a.parquet"):
            path = K.write_kmt(idle, tmp_path / name) if name.endswith(".kmt") else K.write_parquet(idle, tmp_path / name)
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    finally:
        os.umask(old)


def test_wrong_schema_is_refused(tmp_path, idle):
    with pytest.raises(KmemdesError, match="canonical schema"):
        K.write_kmt(Trace(idle.events.drop("args"), {}, {}), tmp_path / "x.kmt")


def test_shipped_kmt_loads_faster_than_text(shipped, trace_results):
    r = trace_results(shipped / "b_compile_head")
    assert r.kmt_equal and r.kmt_meta_equal


@pytest.mark.slow
@pytest.mark.corpus
@pytest.mark.parametrize("name", ["b_compile_nohash", "c_fschurn", "d_net_loopback", "g_tracecmd_compile/report.txt.zst"])
def test_corpus_kmt_round_trip(corpus, trace_results, name):
    path = corpus / name
    if not path.exists():
        pytest.skip(f"{path} not in the corpus")
    r = trace_results(path)
    assert r.kmt_equal and r.kmt_meta_equal


def test_column_projection_reads_only_the_columns_asked(tmp_path, idle):
    """``read_trace(columns=...)``: the same values as the full table's columns, from every container."""
    cols = ("ts", "kind", "pfn", "cache", "event")
    want = idle.events.select(cols)
    for path in (K.write_kmt(idle, tmp_path / "a.kmt"), K.write_parquet(idle, tmp_path / "a.parquet"),
                 idle.meta["source"]):
        u = read_trace(path, columns=cols)
        assert u.events.columns == list(cols) and u.events.equals(want), path
    with pytest.raises(ValueError, match="nope"):
        read_trace(tmp_path / "a.kmt", columns=("ts", "nope"))


def test_proactive_compaction_order_minus_one_survives_every_container(tmp_path):
    # kcompactd's proactive compaction prints order=-1 (no requested order): a legitimate value
    line = (b"      kcompactd0-36      [001] .....  1947.455422: mm_compaction_finished: node=0 zone=Normal   "
            b"order=-1 ret=complete\n"
            b"      kcompactd0-36      [001] .....  1947.455423: mm_compaction_suitable: node=0 zone=Normal   "
            b"order=9 ret=continue\n")
    ev, meta, problems = parse_text([line], "c.txt")
    assert ev["order"].to_list() == [-1, 9] and not problems
    t = Trace(ev, meta, problems)
    for back in (read_trace(K.write_kmt(t, tmp_path / "c.kmt")), read_trace(K.write_parquet(t, tmp_path / "c.parquet"))):
        assert back.events.equals(ev)


def test_dictionary_encoded_strings_write_the_same_bytes(tmp_path, idle):
    """Rows handed to the writer with Enum (dictionary-encoded) string columns, as the
    trace.dat reader hands them to ``kmemdes convert``, give the bytes of the String table."""
    events = idle.events
    strings = [c for c, t in EVENT_SCHEMA.items() if t == pl.String]
    encoded = events.with_columns(
        pl.col(c).cast(pl.Enum(events[c].drop_nulls().unique().sort(descending=True).to_list())) for c in strings)
    plain = K.write_kmt(idle, tmp_path / "plain.kmt", chunk_rows=4000)
    writer = K.KmtWriter(tmp_path / "enum.kmt", chunk_rows=4000)
    writer.add(encoded.slice(0, 5000))
    writer.add(encoded.slice(5000))
    writer.close(K.header_of(idle))
    assert (tmp_path / "enum.kmt").read_bytes() == plain.read_bytes()
    with pytest.raises(KmemdesError, match="canonical schema"):
        K.KmtWriter(tmp_path / "bad.kmt").add(encoded.with_columns(pl.lit("x", dtype=pl.Enum(["x"])).alias("pid")))


@pytest.mark.parametrize("damage", [0, 50])
@pytest.mark.parametrize("block_rows", [1 << 19, 3000])
def test_tracedat_table_writes_the_same_bytes(tmp_path, shipped, monkeypatch, damage, block_rows):
    """A trace.dat handed to the writer as numpy columns (``Table`` blocks, as ``kmemdes convert``
    does) gives the bytes of its Polars table, also when damaged records drop rows and when
    the writer's chunks span blocks."""
    import random

    import zstandard

    from kmemdes.trace import tracedat

    monkeypatch.setattr(tracedat, "_BLOCK_ROWS", block_rows)

    raw = bytearray(zstandard.ZstdDecompressor().stream_reader(
        (shipped / "tracedat_small" / "trace.v6.dat.zst").open("rb")).read())
    rnd = random.Random(4)
    for _ in range(damage):
        raw[rnd.randrange(len(raw) // 3, len(raw))] = rnd.randrange(256)
    src = tmp_path / "t.dat"
    src.write_bytes(bytes(raw))
    t = read_trace(src)
    assert bool(t.problems) == bool(damage)
    plain = K.write_kmt(t, tmp_path / "plain.kmt", chunk_rows=4000)
    writer = K.KmtWriter(tmp_path / "table.kmt", chunk_rows=4000)
    u = read_trace(src, sink=writer.add)
    assert u.events.height == 0 and u.problems == t.problems
    writer.close(K.header_of(t))
    assert writer.rows == t.events.height
    assert (tmp_path / "table.kmt").read_bytes() == plain.read_bytes()
