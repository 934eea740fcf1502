"""Fuzz test of the CLI on corrupted versions of every shipped trace format (tests/_fuzz.py).

A fixed seed, 204 inputs (34 per format: ftrace, trace-cmd report, perf script, trace.dat, .kmt,
Parquet), both replay modes, each input limited to 30 s: every input exits 0, or 2 with one line
on stderr and no traceback; none hangs.  ``make fuzz`` runs the same with 10,000 inputs.
"""

from __future__ import annotations

from tests._fuzz import FORMATS, fuzz, judge


def test_judge_accepts_only_success_or_one_line_errors():
    assert judge(0, "") is None
    assert judge(2, "kmemdes: error: x.kmt: .kmt file damaged (CRC-32 mismatch)\n") is None
    assert judge(1, "kmemdes: internal error: TypeError: x (run with --debug for the traceback)\n")
    assert judge(2, "Traceback (most recent call last):\n  File ...\nkmemdes: error: x\n")
    assert judge(2, "kmemdes: error: a\nkmemdes: error: b\n")


def test_fuzz_every_format_both_modes(tmp_path):
    res = fuzz(34 * len(FORMATS), seed=15, limit=30.0, workdir=tmp_path)
    assert res.count == 204
    assert not res.failures, "\n".join("input %d (%s, %s): %s -> %s" % f for f in res.failures[:20])
    assert res.outcomes.get("exit 0", 0) > 20 and res.outcomes.get("exit 2", 0) > 20, res.outcomes
