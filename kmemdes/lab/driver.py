"""The cycles of a ``[lab]`` recipe, run as ``python -m kmemdes.lab.driver PLAN.json RESULT.json``.

A separate process, so that ``kmemdes lab --capture`` can hand it to :func:`kmemdes.trace.capture.capture`
as the traced command, and so that the lab's watchdog can stop it and everything it started by
process tree.  Per cycle: ``/proc/vmstat`` before and after, every workload started at its ``start``
offset in its own process group, stopped at its ``timeout``, its ``KMEMDES_LAB`` line collected.
Standard library only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

from kmemdes.lab.state import kill_tree
from kmemdes.lab.work import MARK


def read_vmstat() -> dict[str, int]:
    out = {}
    with open("/proc/vmstat") as f:
        for line in f:
            k, _, v = line.partition(" ")
            try:
                out[k] = int(v)
            except ValueError:
                pass
    return out


def die_with_parent() -> None:
    """PR_SET_PDEATHSIG(SIGKILL): this process dies when the thread that started it does (a lab
    run killed with SIGKILL then leaves no workload running)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _run_one(w: dict, cycle: int, res: dict, stop: threading.Event) -> None:
    time.sleep(max(0.0, w["start_s"]))
    if stop.is_set():
        res.update(rc=None, skipped=True)
        return
    argv = w["argv"] if w["argv"] else ["/bin/sh", "-c", w["command"].replace("{cycle}", str(cycle))]
    t0 = time.monotonic()
    env = dict(os.environ, KMEMDES_LAB_WORKDIR=w.get("workdir", ""))
    # in the driver's own process group: a killed lab's next run ends them all with one killpg
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=die_with_parent)
    try:
        out, _ = p.communicate(timeout=w["timeout_s"])
        res["timed_out"] = False
    except subprocess.TimeoutExpired:
        kill_tree(p.pid)
        out, _ = p.communicate()
        res["timed_out"] = True
    res["rc"] = p.returncode
    res["seconds"] = round(time.monotonic() - t0, 4)
    lines = out.splitlines()
    for ln in lines:
        if ln.startswith(MARK):
            res["measured"] = json.loads(ln[len(MARK):])
    res["output_tail"] = [ln for ln in lines if not ln.startswith(MARK)][-5:]


def run_plan(plan: dict) -> dict:
    cycles = []
    stop = threading.Event()
    for c in range(1, plan["cycles"] + 1):
        v0 = read_vmstat()
        t0 = time.time_ns()
        results = [{"name": w["name"]} for w in plan["workloads"]]
        threads = [threading.Thread(target=_run_one, args=(w, c, r, stop), daemon=True)
                   for w, r in zip(plan["workloads"], results)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t1 = time.time_ns()
        v1 = read_vmstat()
        cycles.append({"cycle": c, "start_epoch_ns": t0, "end_epoch_ns": t1,
                       "vmstat_delta": {k: v1[k] - v0.get(k, 0) for k in v1 if v1[k] != v0.get(k, 0)},
                       "workloads": results})
        if c < plan["cycles"]:
            time.sleep(plan["settle_s"])
    return {"cycles": cycles, "pid": os.getpid()}


def main(argv: list[str]) -> int:
    plan_path, result_path = argv
    die_with_parent()
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    with open(plan_path) as f:
        plan = json.load(f)
    if plan.get("pid_file"):
        with open(plan["pid_file"], "w") as f:
            f.write(f"{os.getpid()}\n")
    res = run_plan(plan)
    tmp = result_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f)
    os.rename(tmp, result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
