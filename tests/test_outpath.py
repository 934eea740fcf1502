"""kmemdes/outpath.py: no file or folder of the user's replaced without --force, leftovers removed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kmemdes.errors import KmemdesError
from kmemdes.outpath import (atomic_write, check_file_output, check_folder_output, check_run_dir_output, clean_stale, is_run_dir,
                             pid_alive)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _run_dir(path):
    path.mkdir()
    (path / "summary.json").write_text("{}")
    (path / "config.toml").write_text("")
    return path


def test_file_outputs(tmp_path):
    f = tmp_path / "a.kmt"
    assert check_file_output(f) == f
    f.write_text("mine")
    with pytest.raises(KmemdesError, match="a.kmt: exists \\(use --force"):
        check_file_output(f)
    assert check_file_output(f, force=True) == f
    with pytest.raises(KmemdesError, match="is a directory"):
        check_file_output(tmp_path, force=True)
    with pytest.raises(KmemdesError, match="folder .*/x/y does not exist"):
        check_file_output(tmp_path / "x" / "y" / "a.html")
    assert not (tmp_path / "x").exists()
    assert check_file_output(tmp_path / "x" / "a.html", make_parents=True).parent.is_dir()


def test_run_dir_outputs(tmp_path):
    assert check_run_dir_output(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    assert check_run_dir_output(tmp_path / "empty")
    user = tmp_path / "user"
    user.mkdir()
    (user / "thesis.tex").write_text("x")
    for force in (False, True):
        with pytest.raises(KmemdesError, match="not a kmemdes run directory"):
            check_run_dir_output(user, force=force)
    run = _run_dir(tmp_path / "run")
    assert is_run_dir(run)
    with pytest.raises(KmemdesError, match="run directory exists \\(use --force"):
        check_run_dir_output(run)
    assert check_run_dir_output(run, force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(KmemdesError, match="exists and is not a folder"):
        check_run_dir_output(tmp_path / "file", force=True)
    with pytest.raises(KmemdesError, match="/nonexistent/a does not exist"):
        check_run_dir_output("/nonexistent/a/b")


def test_atomic_write_and_stale_leftovers(tmp_path):
    target = tmp_path / "r"
    dead, live = _dead_pid(), os.getppid()
    (tmp_path / f".r.tmp-{dead}").mkdir()
    (tmp_path / f".r.tmp-{live}").mkdir()
    (tmp_path / f".other.tmp-{dead}").mkdir()
    assert not pid_alive(dead) and pid_alive(live)
    assert [p.name for p in clean_stale(target)] == [f".r.tmp-{dead}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f".r.tmp-{live}", f".other.tmp-{dead}"])
    atomic_write(tmp_path / "f.txt", lambda f: f.write(b"ok"))
    assert (tmp_path / "f.txt").read_bytes() == b"ok"
    with pytest.raises(KmemdesError, match="/proc/x.kmt: cannot write"):
        atomic_write("/proc/x.kmt", lambda f: f.write(b"x"))


def test_a_folder_of_runs_is_replaced_only_when_it_is_one(tmp_path):
    """``kmemdes lab --replicas -o DIR``: DIR holds run directories and ``lab.json``."""
    d = tmp_path / "lab"
    assert check_folder_output(d, "lab.json") == d  # absent
    d.mkdir()
    assert check_folder_output(d, "lab.json") == d  # empty
    (d / "mine.txt").write_text("x")
    with pytest.raises(KmemdesError, match="not a kmemdes folder of runs \\(no lab.json\\): not replaced, even with"):
        check_folder_output(d, "lab.json", force=True)
    (d / "mine.txt").unlink()
    (d / "lab.json").write_text("{}")
    with pytest.raises(KmemdesError, match="folder of runs exists \\(use --force"):
        check_folder_output(d, "lab.json")
    assert check_folder_output(d, "lab.json", force=True) == d


def test_scratch_dir_removes_what_a_killed_command_left(tmp_path, monkeypatch):
    """A command killed by SIGKILL never runs its cleanup: the next one removes the scratch directories of
    dead pids with its prefix, and leaves live ones and other names alone."""
    import subprocess
    import tempfile

    from pathlib import Path

    from kmemdes.outpath import scratch_dir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen(["true"])  # a pid that has exited
    dead.wait()
    left = tmp_path / f"kmemdes_predict_{dead.pid}_abc"
    (left / "run").mkdir(parents=True)
    alive = tmp_path / "kmemdes_predict_1_xyz"  # pid 1 is alive
    alive.mkdir()
    other = tmp_path / "kmemdes_predict_notapid"
    other.mkdir()
    with scratch_dir("kmemdes_predict_") as d:
        assert Path(d).name.startswith(f"kmemdes_predict_{os.getpid()}_") and Path(d).parent == tmp_path
        assert not left.exists() and alive.exists() and other.exists()
    assert not Path(d).exists()
