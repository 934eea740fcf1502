"""kmemdes/report/load.py: reading run directories, on fixtures and on one the engine wrote."""

from __future__ import annotations

import json

import polars as pl
import pytest

from kmemdes.errors import KmemdesError
from kmemdes.report.load import METRICS, flatten_config, load_run_dir


def test_every_metric_has_the_documented_columns_and_types(small_run):
    run = load_run_dir(small_run)
    assert run.missing == []
    for name, schema in METRICS.items():
        df = getattr(run, name)
        assert dict(df.schema) == schema, name
        assert df.height == pl.read_parquet(small_run / "metrics" / f"{name}.parquet").height, name
    assert run.config["policy"]["fallback"] == "default"
    assert run.summary["kind"] == "run"
    assert run.label == "small"


def test_engine_written_run_directory_matches_the_contract(replay_run):
    run = load_run_dir(replay_run)
    assert run.missing == []
    assert run.summary["kind"] == "replay"
    for name, schema in METRICS.items():
        raw = pl.read_parquet(replay_run / "metrics" / f"{name}.parquet")
        assert set(schema) <= set(raw.columns), name
    assert run.requests["count"].sum() == run.summary["requests"]


def test_missing_metrics_file_reads_as_empty_and_is_listed(run_copy):
    (run_copy / "metrics" / "slab.parquet").unlink()
    run = load_run_dir(run_copy)
    assert run.missing == ["metrics/slab.parquet"]
    assert run.slab.height == 0 and dict(run.slab.schema) == METRICS["slab"]


def test_damaged_parquet_names_the_file(run_copy):
    (run_copy / "metrics" / "frag.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(KmemdesError, match=r"frag\.parquet: not a readable Parquet file"):
        load_run_dir(run_copy)


def test_missing_column_names_file_and_column(run_copy):
    f = run_copy / "metrics" / "latency.parquet"
    pl.read_parquet(f).drop("bucket_ns").write_parquet(f)
    with pytest.raises(KmemdesError, match=r"latency\.parquet: missing column\(s\) bucket_ns"):
        load_run_dir(run_copy)


def test_not_a_run_directory(tmp_path):
    with pytest.raises(KmemdesError, match="no such run directory"):
        load_run_dir(tmp_path / "nope")
    with pytest.raises(KmemdesError, match="not a run directory"):
        load_run_dir(tmp_path)


def test_bad_summary_json_names_file_and_line(run_copy):
    (run_copy / "summary.json").write_text('{\n "kind": "run",\n oops\n}')
    with pytest.raises(KmemdesError, match=r"summary\.json:3"):
        load_run_dir(run_copy)


def test_summary_must_be_an_object(run_copy):
    (run_copy / "summary.json").write_text(json.dumps([1, 2]))
    with pytest.raises(KmemdesError, match="expected a JSON object"):
        load_run_dir(run_copy)


def test_bad_config_toml(run_copy):
    (run_copy / "config.toml").write_text("name = \n")
    with pytest.raises(KmemdesError, match=r"config\.toml: not valid TOML"):
        load_run_dir(run_copy)


def test_flatten_config_uses_set_keys():
    flat = flatten_config({"a": {"b": {"c": 1}}, "w": [{"k": 1}, {"k": 2}], "l": [1, 2]})
    assert flat == {"a.b.c": 1, "w.0.k": 1, "w.1.k": 2, "l": [1, 2]}
