"""`kmemdes capture` exits with the captured command's status (like time / perf stat), after writing
the capture; the capture itself is mocked here (the live captures are tested in tests/trace)."""

from __future__ import annotations

import pytest

import kmemdes.trace.capture as capture_mod
from kmemdes.cli import main


def _fake_capture(rc):
    def capture(output, command, **kw):
        return {"meta": {"traced_seconds": "0.100", "workload_rc": str(rc), "lost_total": "overrun=0",
                         "global_tracing_state_restored": "yes"},
                "warnings": [], "trace_bytes_uncompressed": 10}
    return capture


@pytest.mark.parametrize("rc, status", [(0, 0), (1, 1), (3, 3), (-15, 128 + 15)])
def test_exit_status_is_the_commands(monkeypatch, capsys, tmp_path, rc, status):
    monkeypatch.setattr(capture_mod, "capture", _fake_capture(rc))
    assert main(["capture", "-o", str(tmp_path / "c"), "--", "false"]) == status
    assert f"workload rc={rc}," in capsys.readouterr().out


def test_help_documents_the_exit_status(capsys):
    assert main(["capture", "--help"]) == 0
    assert "Exit status" in capsys.readouterr().out
