"""Command-line usage errors (click's own: bad choice, out of range, missing argument, unknown option)
are one line on stderr in the form of every other error, exit status 2; --help still works."""

from __future__ import annotations

import pytest

from kmemdes.cli import main


@pytest.mark.parametrize("args, message", [
    (["machine", "--cpus", "0"], "kmemdes: error: --cpus: 0 is not in the range"),
    (["demo", "--part", "3"], "kmemdes: error: --part: '3' is not one of '1', '2', 'all'"),
    (["replay", "--mode", "mirrror", "x"], "kmemdes: error: --mode: 'mirrror' is not one of 'mirror', 'policy'"),
    (["compare", "--format", "pdf", "a", "b"], "kmemdes: error: --format: 'pdf' is not one of 'html', 'md', 'text'"),
    (["capture", "-o", "/nonexistent/x"], "kmemdes: error: -- COMMAND...: missing argument"),
    (["capture", "--", "true"], "kmemdes: error: --output: required option"),
    (["replay"], "kmemdes: error: TRACE: missing argument"),
    (["machine", "--nosuch"], "kmemdes: error: no such option '--nosuch'"),
    (["nosuchcommand"], "kmemdes: error: no such command 'nosuchcommand'"),
    (["sweep", "x.toml", "--workers", "two"], "kmemdes: error: --workers: 'two' is not a valid integer"),
])
def test_usage_errors_are_one_line_exit_2(capsys, args, message):
    rc = main(args)
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1, err
    assert "Usage:" not in err and "Try '" not in err


@pytest.mark.parametrize("args", [["--help"], ["machine", "--help"], ["capture", "-h"], ["demo", "--help"]])
def test_help_still_works(capsys, args):
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Usage: kmemdes") and err == ""


def test_compare_help_example_names_a_real_sweep_run(capsys):
    from kmemdes.sweep import run_name

    assert main(["compare", "--help"]) == 0
    out = capsys.readouterr().out
    assert f"sweeps/thp-decay/{run_name({'policy.fallback': 'default', 'seed': 1})}" in out
