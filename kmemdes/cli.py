"""Command-line entry point: parses arguments, calls the library, prints.

Thin on purpose: every command is a few lines that call into ``kmemdes.mm``,
``kmemdes.trace``, ``kmemdes.sim``, ``kmemdes.report`` or ``kmemdes.sweep``.
User errors (:class:`kmemdes.errors.KmemdesError`) are printed as one line on
stderr with exit status 2; ``--debug`` (anywhere on the command line) shows
the traceback instead.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import List, Optional

import click

from kmemdes import __version__
from kmemdes.errors import Interrupted, KmemdesError
from kmemdes.outpath import check_file_output, scratch_dir

__all__ = ["app", "main"]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "--version", "-V", prog_name="kmemdes", message="%(prog)s %(version)s")
def app() -> None:
    """Discrete-event simulator of Linux kernel memory allocation (buddy, SLUB, vmalloc).

    Add --debug anywhere to see a traceback on errors.
    """


# ---------------------------------------------------------------------------
# Each command below is a thin wrapper; keep one function per command and put
# the work in the library.  Commands are grouped by the module that owns them.
# ---------------------------------------------------------------------------


# --- mm/slub.py -------------------------------------------------------------
@app.command("slab", context_settings={"ignore_unknown_options": True})
@click.option("--cpus", "cpus", metavar="N", default=None,
              help="CPU count the slab order depends on (default: the nproc file next to --slabinfo; "
                   "without --slabinfo, or with --slabinfo /proc/slabinfo, this machine's CPUs).")
@click.option("--slabinfo", "slabinfo_file", metavar="FILE", default=None,
              help="A real /proc/slabinfo: reprint it with the model's objperslab/pagesperslab.")
@click.option("--kmalloc", "kmalloc_sizes", is_flag=True,
              help="Followed by sizes: the cache and bytes_alloc of kmalloc(size) for each.")
@click.option("--gfp", default="GFP_KERNEL", show_default=True, help="GFP mask for --kmalloc (family).")
@click.argument("sizes", nargs=-1, metavar="[SIZE]...")
def slab_cmd(cpus: Optional[str], slabinfo_file: Optional[str], kmalloc_sizes: bool, gfp: str,
             sizes: tuple[str, ...]) -> None:
    """SLUB slab geometry (calculate_order) and kmalloc size classes of Linux 6.18.

    \b
    --slabinfo FILE: every cache line of FILE in /proc/slabinfo's layout, objperslab and
    pagesperslab computed by the model from objsize and --cpus; object and slab counts are
    the file's.  Caches whose real geometry differs are listed on stderr.
    --kmalloc SIZE...: for each size, the cache kmalloc() uses and the bytes_alloc a kmalloc
    trace event reports (sizes above 8 KiB go to the page allocator).
    Neither: the kmalloc caches' geometry for --cpus (default: this machine's CPUs).

    \b
    Example:

    \b
      kmemdes slab --cpus 2 --kmalloc 100 4000 9000
      kmemdes slab --slabinfo traces/a_idle_stream/before/slabinfo
    """
    from kmemdes.mm import gfp as gfp_mod
    from kmemdes.mm import slabinfo, slub

    if sizes and not kmalloc_sizes:
        raise KmemdesError(f"unexpected argument {sizes[0]!r} (sizes follow --kmalloc)")
    if kmalloc_sizes and not sizes:
        raise KmemdesError("--kmalloc: give at least one size, e.g. --kmalloc 100 4000 9000")
    slab_text = None
    if slabinfo_file is not None:
        from kmemdes.trace.snapshot import read_text

        slab_text = read_text(slabinfo_file)  # a missing or unreadable file is the first thing to report
    live = slabinfo_file is None or Path(slabinfo_file).resolve() == Path("/proc/slabinfo")
    if cpus is None and not live and (Path(slabinfo_file).parent / "nproc").is_file():
        cpus = (Path(slabinfo_file).parent / "nproc").read_text().strip()
    if cpus is None and live:
        import os

        cpus = str(len(os.sched_getaffinity(0)))  # what `kmemdes capture` stores as nproc
    ncpus = None
    if cpus is not None:
        try:
            ncpus = int(cpus)
        except ValueError:
            raise KmemdesError(f"--cpus: {cpus!r} is not a whole number") from None
        if ncpus < 1:
            raise KmemdesError(f"--cpus: must be at least 1, got {ncpus}")
    try:
        gfp_mask = gfp_mod.parse_gfp(gfp)
    except ValueError as e:
        raise KmemdesError(f"--gfp: {e}") from None
    if kmalloc_sizes:
        values = [slabinfo.parse_kmalloc_size(s) for s in sizes]
        click.echo(slabinfo.KMALLOC_CLASS_HEADER)
        for v in values:
            click.echo(slabinfo.kmalloc_class(v, gfp_mask).format())
    if slabinfo_file is not None or not kmalloc_sizes:
        if slabinfo_file is None:
            click.echo(slabinfo.format_slabinfo(slabinfo.kmalloc_geometry(ncpus, slub.kmalloc_type(gfp_mask))), nl=False)
            return
        if ncpus is None:
            raise KmemdesError(f"--cpus: required: {slabinfo_file} has no nproc file next to it "
                               "(the slab order depends on the CPU count of the machine it came from)")
        from kmemdes.trace.snapshot import parse_slabinfo

        rows = parse_slabinfo(slab_text, slabinfo_file)
        model = slabinfo.model_slabinfo(rows, ncpus)
        click.echo(slabinfo.format_slabinfo(model), nl=False)
        diff = [r.name for r, m in zip(rows, model) if (r.objperslab, r.pagesperslab) != (m.objperslab, m.pagesperslab)]
        if diff:
            click.echo(f"kmemdes: model geometry differs from {slabinfo_file} for {len(diff)} of {len(rows)} "
                       f"caches: {', '.join(diff)}", err=True)


# --- demo.py ----------------------------------------------------------------
@app.command("demo")
@click.option("--seed", default="0", show_default=True, metavar="N", help="Seed of the background load.")
@click.option("--part", type=click.Choice(["1", "2", "all"]), default="all", show_default=True,
              help="1: addresses of kmalloc/vmalloc/malloc; 2: failure rate and latency over time.")
@click.option("--seconds", default="30", show_default=True, metavar="N",
              help="Simulated seconds of each part-2 run (one 1 MB request per second).")
@click.option("-o", "--output", "root", metavar="DIR", default="runs", show_default=True,
              help="Folder for part 2's run directories DIR/demo-part2-kmalloc and DIR/demo-part2-vmalloc.")
def demo_cmd(seed: str, part: str, seconds: str, root: str) -> None:
    """kmalloc vs vmalloc vs malloc on a 32-bit x86 machine with 160 MB of RAM.

    \b
    Part 1: a module calls __get_free_page(GFP_KERNEL), kmalloc(100) and vmalloc(1000000),
    a user program calls malloc(1000000): each address, its region, offset from PAGE_OFFSET,
    physical address (or why there is none) and the page frames behind it.
    Part 2: a 1 MB buffer every simulated second under a fragmenting background, with
    kmalloc and with vmalloc: failure rate and (estimated) latency.
    Deterministic for a seed; prints to stdout.  Part 1 writes no files; part 2 writes its
    two runs to runs/demo-part2-kmalloc and runs/demo-part2-vmalloc (replacing earlier ones;
    -o DIR puts them under DIR) for `kmemdes report`.

    \b
    Example:

    \b
      kmemdes demo
      kmemdes demo --seed 7 --part 1
    """
    from kmemdes import demo

    values = {}
    for opt, text in (("--seed", seed), ("--seconds", seconds)):
        try:
            values[opt] = int(text)
        except ValueError:
            raise KmemdesError(f"{opt}: {text!r} is not a whole number") from None
    if values["--seconds"] < 1:
        raise KmemdesError(f"--seconds: must be at least 1, got {values['--seconds']}")
    demo.run_demo(seed=values["--seed"], out=click.echo, part=part, seconds=values["--seconds"], root=root)


# --- mm/page_alloc.py, mm/mm_init.py, mm/vmstat.py, mm/frag.py ---------------
_SHOW = ("buddyinfo", "pagetypeinfo", "zoneinfo", "unusable_index", "extfrag_index", "layout")


@app.command("machine")
@click.option("--arch", type=click.Choice(["x86_64", "x86_32"]), default="x86_64", show_default=True,
              help="Architecture (x86_32 is PAE with the 3G/1G split).")
@click.option("--mem", default="4G", show_default=True, metavar="SIZE",
              help="RAM of a freshly booted machine: 160M, 4G, 64G, 1T ...")
@click.option("--cpus", type=click.IntRange(1, 4096), default=2, show_default=True, help="Online CPUs.")
@click.option("--from-snapshot", "snapshot", metavar="DIR", default=None,
              help="Build the state from a capture's snapshot folder (buddyinfo, pagetypeinfo, zoneinfo).")
@click.option("--show", type=click.Choice(_SHOW), default="buddyinfo", show_default=True,
              help="Which kernel file to print for the model's state.")
def machine_cmd(arch: str, mem: str, cpus: int, snapshot: Optional[str], show: str) -> None:
    """Build a machine model and print its state in the kernel's own text layout.

    \b
    A fresh machine (--mem) has its zones laid out as an x86 kernel would and its
    memory freed at boot; --from-snapshot DIR rebuilds a state consistent with a real
    /proc snapshot (a capture's before/ or after/ folder): --show buddyinfo and
    --show pagetypeinfo then print the input's numbers back.

    \b
    Example:

    \b
      kmemdes machine --mem 64G --show zoneinfo
      kmemdes machine --from-snapshot traces/a_idle_stream/before --show pagetypeinfo
      kmemdes machine --arch x86_32 --mem 160M --show layout
    """
    from kmemdes.mm import vmstat
    from kmemdes.mm.mm_init import build_node, node_from_snapshot, parse_size

    if show == "layout":
        from kmemdes.mm import layout as layout_mod

        if snapshot is not None:
            raise KmemdesError("--show layout describes a fresh machine: use --arch/--mem, not --from-snapshot")
        text = layout_mod.format_layout(layout_mod.build_layout(arch, parse_size(mem), nr_cpus=cpus))
        click.echo(text, nl=not text.endswith("\n"))
        return
    if snapshot is not None:
        from kmemdes.trace.snapshot import read_snapshot

        node, notes = node_from_snapshot(read_snapshot(snapshot), cpus=None)
        for note in notes:
            click.echo(f"kmemdes: note: {note}", err=True)
    else:
        node = build_node(arch, parse_size(mem), cpus=cpus)
    text = {"buddyinfo": vmstat.buddyinfo, "pagetypeinfo": vmstat.pagetypeinfo, "zoneinfo": vmstat.zoneinfo,
            "unusable_index": vmstat.unusable_index, "extfrag_index": vmstat.extfrag_index}[show](node)
    click.echo(text, nl=False)


@app.command("frag")
@click.argument("buddyinfo", required=False, metavar="[BUDDYINFO_FILE]")
@click.option("--index", type=click.Choice(["unusable", "extfrag"]), default="unusable", show_default=True,
              help="unusable: debugfs extfrag/unusable_index; extfrag: extfrag/extfrag_index.")
def frag_cmd(buddyinfo: Optional[str], index: str) -> None:
    """Fragmentation indices of a /proc/buddyinfo state, exactly as debugfs prints them.

    \b
    Reads BUDDYINFO_FILE (- for stdin; the live /proc/buddyinfo when omitted) and prints
    the text of debugfs extfrag/unusable_index (default) or extfrag/extfrag_index for that
    state, computed with the kernel's integer arithmetic (mm/vmstat.c).

    \b
    Example:

    \b
      kmemdes frag traces/a_idle_stream/before/buddyinfo
      kmemdes frag --index extfrag
      cat /proc/buddyinfo | kmemdes frag -
    """
    from kmemdes.mm.vmstat import format_index_file
    from kmemdes.trace.snapshot import parse_buddyinfo, read_text

    path = buddyinfo or "/proc/buddyinfo"
    rows = parse_buddyinfo(read_text(path), path)
    click.echo(format_index_file([(r.node, r.zone, r.nr_free) for r in rows], index), nl=False)


# --- trace/capture.py -------------------------------------------------------
@app.command("capture", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-o", "--output", "output", required=True, metavar="DIR",
              help="Capture folder to create (must not exist; written as DIR.tmp-PID, then renamed).")
@click.option("--raw-pointers", is_flag=True, help="nohash-ptr in the instance: real addresses instead of hashed ids.")
@click.option("--buffer-kb", type=int, default=65536, show_default=True, help="Ring buffer per CPU, in KiB.")
@click.option("--events", default="kmem,vmalloc,compaction,vmscan,pagemap/mm_lru_activate", show_default=True,
              help="Event groups or group/event names, comma separated (kmem = the allocator events; "
                   "pagemap/mm_lru_activate: the folios the workload touched again, for policy replay's LRU).")
@click.option("--kpageflags", is_flag=True, help="Also store /proc/kpageflags (zstd) in before/ and after/.")
@click.option("--keep-partial", is_flag=True, help="Keep DIR.tmp-PID when the capture fails or is interrupted.")
@click.option("--name", default=None, help="Capture name in markers and meta.txt (default: DIR's name).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- COMMAND...")
def capture_cmd(output: str, raw_pointers: bool, buffer_kb: int, events: str, kpageflags: bool,
                keep_partial: bool, name: Optional[str], command: tuple[str, ...]) -> int:
    """Record the local kernel's kmem/vmalloc/compaction events while COMMAND runs.

    \b
    Needs root and tracefs.  Records into a private ftrace instance (instances/kmemdes_PID)
    on private tracefs/debugfs mounts, streams its trace_pipe into DIR/trace.txt.zst, writes
    capture_start/capture_end markers, snapshots /proc and debugfs allocator state into
    DIR/before and DIR/after, and writes meta.txt and manifest.json.  The instance and mounts
    are removed and the global tracing state is left unchanged, also on Ctrl-C or failure.

    \b
    Exit status (like time and perf stat): COMMAND's own when the capture was written, so a
    failing command fails the script that captured it (128+N when a signal N killed it; the
    capture is kept either way); 2 when the capture itself could not be made.

    \b
    Example:

    \b
      kmemdes capture -o traces/my_build -- make -j2
      kmemdes capture -o /tmp/c1 --raw-pointers --buffer-kb 4096 -- sleep 1
    """
    from kmemdes.trace.capture import capture

    groups = [g for g in events.split(",") if g.strip()]
    m = capture(output, command, raw_pointers=raw_pointers, buffer_kb=buffer_kb, events=groups,
                kpageflags=kpageflags, keep_partial=keep_partial, name=name,
                log=lambda msg: click.echo(f"kmemdes capture: {msg}", err=True))
    meta = m["meta"]
    for w in m["warnings"]:
        click.echo(f"kmemdes capture: warning: {w}", err=True)
    click.echo(f"{output}: {meta['traced_seconds']} s traced, {m['trace_bytes_uncompressed']} bytes of trace text, "
               f"workload rc={meta['workload_rc']}, lost {meta['lost_total']}, "
               f"global tracing state restored: {meta['global_tracing_state_restored']}")
    return workload_exit_status(meta["workload_rc"])


def workload_exit_status(rc: object) -> int:
    """The exit status of ``kmemdes capture`` for the workload's return code (``Popen.returncode``):
    the command's own status, 128+N for a command killed by signal N (as a shell reports it).

    >>> workload_exit_status("0"), workload_exit_status("3"), workload_exit_status(-9)
    (0, 3, 137)
    """
    try:
        n = int(str(rc))
    except ValueError:
        return 1
    return 128 - n if n < 0 else min(n, 255)


# --- trace/reader.py, kmt.py, stats.py ---------------------------------------
@app.command("convert")
@click.argument("trace", metavar="TRACE")
@click.option("-o", "--output", "output", required=True, metavar="OUT.kmt|OUT.parquet",
              help="Output file; the extension chooses the container (.kmt, or .parquet/.pq).")
@click.option("--strict", is_flag=True, help="Stop at the first bad line (FILE:LINE: what) instead of counting it.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def convert_cmd(trace: str, output: str, strict: bool, force: bool) -> None:
    """Convert a trace into kmemdes's .kmt container (fast to load) or Parquet.

    \b
    TRACE is a trace file (ftrace/trace_pipe text, trace-cmd report, perf script, plain or
    zstd/gzip/xz-compressed; trace.dat; .kmt; Parquet) or a capture folder.  The output keeps
    the event table exactly, plus the capture facts, snapshots and parse problems.  It is
    written to a temporary name and renamed when complete.

    \b
    Example:

    \b
      kmemdes convert traces/a_idle_stream -o /tmp/a.kmt
      kmemdes convert traces/h_perf_sample -o /tmp/h.parquet
    """
    from kmemdes.progress import progress_for
    from kmemdes.trace.kmt import convert_trace

    suffix = Path(output).suffix.lower()
    if suffix not in (".kmt", ".parquet", ".pq"):
        raise KmemdesError(f"{output}: unknown output format (use a .kmt or .parquet name)")
    check_file_output(output, force=force)
    with progress_for(True) as progress:
        path, t, rows = convert_trace(trace, output, strict=strict, progress=progress)
    nprob = sum(p["count"] for p in t.problems.values())
    click.echo(f"{path}: {rows:,} events from {t.meta.get('source')} ({t.meta.get('format')}), "
               f"{nprob:,} problems, {path.stat().st_size:,} bytes")


@app.command("stats")
@click.argument("trace", metavar="TRACE")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (all sections) instead of tables.")
@click.option("--slab", is_flag=True, help="Slab tables: per event type and per cache.")
@click.option("--page", is_flag=True, help="Page tables: order x migratetype, GFP, extfrag events.")
@click.option("--caller", is_flag=True, help="Top slab call sites (perf kmem --caller).")
@click.option("--strict", is_flag=True, help="Stop at the first bad line (FILE:LINE: what) instead of counting it.")
def stats_cmd(trace: str, as_json: bool, slab: bool, page: bool, caller: bool, strict: bool) -> None:
    """Statistics of a trace: what `perf kmem stat` gives, and the matching a replay needs.

    \b
    Counts every event record by name, the time span, LOST markers and lost events, and
    input problems by kind (with first line numbers).  Slab: allocations and frees per event
    type and per cache, bytes requested/allocated and internal fragmentation, cross-CPU
    frees, frees of pre-trace objects, kfree(NULL), re-allocations of live pointers, double
    frees, call sites.  Page: order x migratetype (4.4+ labels), GFP masks, failures, frees
    matched/unmatched, free_batched after free, live pages, extfrag events.  vmalloc: areas,
    lazy frees, purges.  --json always includes every section.

    \b
    Example:

    \b
      kmemdes stats traces/a_idle_stream
      kmemdes stats traces/b_compile_head --slab --page --caller
      kmemdes stats traces/h_perf_sample --json
    """
    from kmemdes.progress import progress_for
    from kmemdes.trace.reader import read_trace
    from kmemdes.trace.stats import format_stats, stats_json, trace_stats

    with progress_for(True) as progress:
        t = read_trace(trace, strict=strict, progress=progress)
        progress.stage("statistics")
        st = trace_stats(t)
    if as_json:
        click.echo(stats_json(st))
    else:
        click.echo(format_stats(st, slab=slab, page=page, caller=caller), nl=False)


# --- sim/engine.py ------------------------------------------------------------
def _print_run(out: Path, summary: dict) -> None:
    """The few lines a user wants after a run: where it went and the headline numbers."""
    click.echo(f"run directory: {out}")
    if "events" in summary:
        q = sum(summary.get("quirks", {}).values())
        click.echo(f"events: {summary['events']:,} ({summary['events_replayed']:,} replayed + {q:,} handled by "
                   f"named rules, see summary.json quirks)")
    else:
        click.echo(f"requests: {summary['requests']:,}" if summary["requests"] else
                   "requests: none (no workload asked for pages: the initial state and the kernel daemons only)")
    fails = {o: v for o, v in summary["requests_by_order"].items() if v["failures"]}
    if fails:
        click.echo("failures: " + ", ".join(f"order {o}: {v['failures']}/{v['attempts']}" for o, v in fails.items()))
    fb = summary["fallbacks"]
    click.echo(f"fallbacks: {fb['claim']} claims, {fb['steal']} steals ({fb['pollute']} polluting)")
    if summary.get("wall_s"):
        rate = f" ({summary['events_per_s']:,} events/s)" if summary.get("events_per_s") else ""
        click.echo(f"wall time: {summary['wall_s']:.2f} s{rate}")
    click.echo(f"report: kmemdes report {out}")


@app.command("replay")
@click.argument("trace", metavar="TRACE")
@click.option("-o", "--output", "out", metavar="RUN_DIR", default=None,
              help="Run directory to write (default runs/<trace>-<mode>).")
@click.option("--mode", type=click.Choice(["mirror", "policy"]), default="mirror", show_default=True,
              help="mirror: apply the kernel's placements; policy: let the model place the trace's requests.")
@click.option("--config", "config_path", metavar="CONFIG.toml", default=None,
              help="Policies, costs and sampling for the replay (its workloads are ignored).")
@click.option("--from-snapshot", "snapshot", metavar="DIR", default=None,
              help="Initial state (default: the capture's before/ folder when the trace is in one).")
@click.option("--strict", is_flag=True, help="Stop at the first malformed trace line.")
@click.option("--force", is_flag=True, help="Replace an existing output (a run directory only if it is a kmemdes one).")
def replay_cmd(trace: str, out: Optional[str], mode: str, config_path: Optional[str], snapshot: Optional[str],
               strict: bool, force: bool) -> None:
    """Replay a captured trace through the models and write a run directory.

    \b
    TRACE is anything `kmemdes stats` reads: a capture folder, ftrace / trace-cmd / perf
    text (plain or compressed), trace.dat, .kmt or Parquet.  A capture folder with
    before/kpageflags.zst starts from the kernel's exact free-page layout; in policy mode
    the models then re-decide reclaim and compaction too, under the policy the capture
    recorded (its vm sysctls and THP settings) unless --config sets another.  Every event is accounted for:
    replayed, or handled by a named rule (pre-trace objects, batched frees, zone growth...)
    counted in summary.json.

    \b
    Example:

    \b
      kmemdes replay traces/b_compile_head -o runs/compile-mirror
      kmemdes replay traces/b_compile_head --mode policy --config experiments/replay-what-if.toml
    """
    from kmemdes.config import load_config
    from kmemdes.sim.engine import replay_trace

    from kmemdes.sim.kpageflags import kpageflags_pair

    cfg = load_config(config_path) if config_path else None
    # a capture with before/kpageflags.zst starts from the kernel's exact free-page layout
    kpf = kpageflags_pair(trace) if snapshot is None and Path(trace).is_dir() else None
    path, summary = replay_trace(trace, out, mode=mode, cfg=cfg, snapshot=snapshot, strict=strict,
                                 kpageflags=kpf[0] if kpf else None, force=force)
    _print_run(path, summary)


def _config_with_sets(config_path: str, sets: tuple[str, ...]):
    """The config file with each ``--set KEY=VALUE`` applied (run, lab)."""
    from kmemdes.config import load_config, parse_value, set_dotted

    cfg = load_config(config_path)
    for item in sets:
        if "=" not in item:
            raise KmemdesError(f"--set {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        cfg = set_dotted(cfg, key.strip(), parse_value(value.strip()), f"--set {key.strip()}")
    return cfg


@app.command("run")
@click.argument("config_path", metavar="CONFIG.toml")
@click.option("-o", "--output", "out", metavar="RUN_DIR", default=None,
              help="Run directory to write (default runs/<name>-run).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config value by its dotted key (repeatable), e.g. --set policy.fallback=defrag_mode.")
@click.option("--print-config", is_flag=True, help="Print the resolved config with every default, and exit.")
@click.option("--force", is_flag=True, help="Replace an existing output (a run directory only if it is a kmemdes one).")
def run_cmd(config_path: str, out: Optional[str], sets: tuple[str, ...], print_config: bool, force: bool) -> None:
    """Run an experiment config: synthetic workloads and/or trace replays over simulated time.

    \b
    Example:

    \b
      kmemdes run experiments/frag-pattern.toml
      kmemdes run experiments/thp-decay.toml --set policy.fallback=defrag_mode -o runs/thp-strict
      kmemdes run experiments/thp-decay.toml --print-config
    """
    from kmemdes.config import dump_toml
    from kmemdes.sim.engine import run_config

    cfg = _config_with_sets(config_path, sets)
    if print_config:
        click.echo(dump_toml(cfg), nl=False)
        return
    path, summary = run_config(cfg, out, force=force)
    _print_run(path, summary)


# --- report/html.py, report/compare.py ----------------------------------------
@app.command("report")
@click.argument("run_dir", metavar="RUN_DIR")
@click.option("-o", "--output", "out", metavar="FILE", default=None,
              help="HTML file to write (default: RUN_DIR/report.html, replaced if there).")
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
def report_cmd(run_dir: str, out: Optional[str], force: bool) -> None:
    """Write a self-contained HTML report of a run directory.

    \b
    One file that works offline (plotly.js embedded once): requests and failure rate per
    order and GFP class, latency percentiles, the fallback matrix, compaction, fragmentation
    indices and free blocks over time, pageblocks per migratetype, a physical memory map
    with a slider over time, slab, vmalloc, latency and size distributions, and the
    resolved config, quirk counts and log.

    \b
    Example:

    \b
      kmemdes report runs/compile-mirror
      kmemdes report runs/thp-decay -o reports/thp-decay.html
    """
    from kmemdes.progress import progress_for
    from kmemdes.report.html import write_report

    if out is not None:
        check_file_output(out, force=force)
    with progress_for(True) as progress:
        progress.stage(f"report of {run_dir}")
        path = write_report(run_dir, out)
    click.echo(f"{path}: {path.stat().st_size / 1e6:.1f} MB, self-contained (open it in a browser; works offline)")


@app.command("compare")
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR...")
@click.option("-o", "--output", "out", metavar="FILE", default=None,
              help="File to write (default: compare.html for html; stdout for md and text).")
@click.option("--format", "fmt", type=click.Choice(["html", "md", "text"]), default="html", show_default=True,
              help="html: self-contained page with overlaid time series; md: Markdown tables (pull requests); "
                   "text: fixed-width tables (mailing lists).")
@click.option("--baseline", metavar="RUN_DIR", default=None,
              help="The run whose configuration is the reference column (default: the first RUN_DIR).")
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
def compare_cmd(run_dirs: tuple[str, ...], out: Optional[str], fmt: str, baseline: Optional[str],
                force: bool) -> None:
    """Compare runs side by side (mmtests compare-kernels.sh style).

    \b
    Config differences first, then one row per headline metric (failure rate and latency
    per order, fallbacks, compaction, final unusable index at orders 3/9/10, mixed
    pageblocks, counters, events/s) and one column per configuration with its difference
    to the baseline in %.  Runs whose configs differ only in seed are replicas: shown as
    mean ± 95% confidence interval, and a difference is marked * when Welch's t-test
    between the replicas gives p < 0.05.

    \b
    Example:

    \b
      kmemdes compare runs/thp-default runs/thp-strict
      kmemdes compare sweeps/thp-decay/*/ --baseline sweeps/thp-decay/policy.fallback=default,seed=1 --format md
    """
    from kmemdes.report.compare import render_comparison, write_comparison
    from kmemdes.report.html import atomic_write

    if fmt == "html":
        path = write_comparison(run_dirs, out or "compare.html", "html", baseline, force=force)
        click.echo(f"{path}: {path.stat().st_size / 1e6:.1f} MB, self-contained (open it in a browser; works offline)")
        return
    text = render_comparison(run_dirs, fmt, baseline)
    if out:
        atomic_write(check_file_output(out, force=force), text)
        click.echo(f"{out}: written")
    else:
        click.echo(text, nl=False)


# --- sweep.py -----------------------------------------------------------------
@app.command("sweep")
@click.argument("config_path", metavar="CONFIG.toml")
@click.option("--set", "sets", multiple=True, metavar="KEY=V1,V2,...",
              help="A dotted config key and its values (repeatable; the sweep is the cartesian product). "
                   "Comma lists and inclusive integer ranges: --set seed=1..10.")
@click.option("-o", "--output", "out", metavar="DIR", default=None,
              help="Sweep folder: one run directory per combination, sweep.json, compare.html "
                   "(default sweeps/<config name>).")
@click.option("--workers", type=int, metavar="N", default=None,
              help="Runs at a time on the local process pool (default: the number of CPUs).")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="Submit the runs to a Dask distributed scheduler (tcp://HOST:PORT) instead of the local pool.")
@click.option("--resume", is_flag=True,
              help="Continue the sweep stored in DIR/sweep.json (its --set values may be left out).")
def sweep_cmd(config_path: str, sets: tuple[str, ...], out: Optional[str], workers: Optional[int],
              scheduler: Optional[str], resume: bool) -> int:
    """Run a config over the cartesian product of --set values, locally or on a Dask cluster.

    \b
    Every combination is validated before anything runs, then runs as an ordinary run
    directory DIR/<key=value,...>.  Complete runs (summary.json present, same resolved
    config) are skipped, so re-running the command, or --resume, only redoes what is
    missing or was interrupted.  A failing run is reported and the others go on (exit
    status 1).  DIR/compare.html compares every completed run; runs differing only in
    seed are replicas (mean and 95% CI).  Dask workers need only kmemdes installed
    (e.g. `dask worker tcp://HOST:8786 --nthreads 1 --nworkers 4`).

    \b
    Example:

    \b
      kmemdes sweep experiments/thp-decay.toml --set policy.fallback=default,defrag_mode --set seed=1..5
      kmemdes sweep experiments/thp-decay.toml --set seed=1..50 --scheduler tcp://10.0.0.1:8786
    """
    from kmemdes.sweep import load_plan, plan_sweep, run_sweep

    if scheduler and workers is not None:
        raise KmemdesError("--workers applies to the local pool; with --scheduler the cluster's workers run the sweep")
    plan = load_plan(config_path, out, sets) if resume else plan_sweep(config_path, sets, out)
    result = run_sweep(plan, workers=workers, scheduler=scheduler)
    for r in plan.runs:
        if r.status == "failed":
            click.echo(f"failed: {r.name}: {r.error}", err=True)
    if result.compare_error:
        click.echo(f"kmemdes: error: compare: {result.compare_error}", err=True)
    click.echo(result.line())
    return 0 if result.ok else 1


# --- lab/ -------------------------------------------------------------------------
@app.command("lab")
@click.argument("config_path", metavar="CONFIG.toml", required=False)
@click.option("-o", "--output", "out", metavar="RUN_DIR", default=None,
              help="Run directory to write (default runs/<name>-lab; with --replicas a folder of runs).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config value by its dotted key (repeatable), e.g. --set policy.fallback=defrag_mode.")
@click.option("--replicas", type=click.IntRange(1, 100), default=None, metavar="N",
              help="N replicas of each lab.compare variant, alternated A B A B; prints the difference with its 95% CI.")
@click.option("--capture", is_flag=True, help="Also record a full kmemdes capture (with kpageflags) for validate.")
@click.option("--calibrate", is_flag=True, help="Measure the cost model's paths on this kernel and print a [cost] table.")
@click.option("--write-cost", metavar="FILE.toml", default=None, help="With --calibrate: write the [cost] table there.")
@click.option("--from", "from_runs", multiple=True, metavar="RUN_DIR",
              help="With --calibrate: also fit direct compaction/reclaim from these lab runs' traced intervals.")
@click.option("--force", is_flag=True, help="Replace an existing RUN_DIR / FILE.")
def lab_cmd(config_path: Optional[str], out: Optional[str], sets: tuple[str, ...], replicas: Optional[int],
            capture: bool, calibrate: bool, write_cost: Optional[str], from_runs: tuple[str, ...], force: bool) -> None:
    """Run an experiment's [lab] recipe on this machine's real kernel (root) into a run directory.

    \b
    The config's [policy] is applied to the kernel (vm.defrag_mode, THP enabled/defrag,
    compaction_proactiveness, watermarks...), lab.free of memory is left available by a
    hugetlb reservation, and lab.workloads run lab.cycles times.  Recorded: /proc/vmstat
    deltas per cycle, buddyinfo/pagetypeinfo/zoneinfo every sample_interval, the kernel's
    direct reclaim / direct compaction / kswapd latencies from tracepoints (private ftrace
    instance), the workloads' own timings.  The run directory has the simulator's format
    (kind "lab"): kmemdes report and kmemdes compare read it beside simulated runs.
    Every setting is restored on exit (Ctrl-C and SIGTERM too); a killed run's leftovers
    (state file /run/kmemdes-lab.PID.json) are undone by the next lab run.  A watchdog
    releases the reservation and kills the workload if MemAvailable falls below
    lab.min_available (never below 1 GiB).

    \b
    Example:

    \b
      kmemdes lab experiments/thp-decay.toml -o runs/thp-decay-lab
      kmemdes lab experiments/thp-decay.toml --replicas 3 -o runs/thp-decay-ab
      kmemdes lab --calibrate --write-cost cost-this-machine.toml
    """
    if calibrate:
        from kmemdes.lab.calibrate import calibrate as do_calibrate, cost_toml, format_calibration

        if config_path or replicas or capture or sets:
            raise KmemdesError("--calibrate takes no CONFIG.toml, --set, --replicas or --capture")
        if write_cost and Path(write_cost).exists() and not force:
            raise KmemdesError(f"{write_cost}: already exists (use --force to replace it)")
        for d in from_runs:
            if not (Path(d) / "summary.json").is_file():
                raise KmemdesError(f"--from {d}: not a run directory (no summary.json)")
        res = do_calibrate(from_runs, log=lambda msg: click.echo(f"kmemdes lab: {msg}", err=True))
        click.echo(format_calibration(res), nl=False)
        if write_cost:
            from kmemdes.report.html import atomic_write

            atomic_write(Path(write_cost), cost_toml(res))
            click.echo(f"{write_cost}: written")
        return
    if write_cost or from_runs:
        raise KmemdesError("--write-cost and --from go with --calibrate")
    if not config_path:
        raise KmemdesError("give CONFIG.toml (an experiment with a [lab] table), or --calibrate")
    from kmemdes.lab.run import lab_preflight, run_lab

    cfg = _config_with_sets(config_path, sets)
    if cfg.lab is None:
        raise KmemdesError(f"{config_path}: no [lab] table (the recipe for the real kernel)")
    lab_preflight()
    log = lambda msg: click.echo(f"kmemdes lab: {msg}", err=True)  # noqa: E731
    target = Path(out) if out else Path("runs") / f"{cfg.name}-lab"
    if replicas:
        from kmemdes.lab.replicas import format_replicas, run_replicas

        res = run_replicas(cfg, target, replicas, force=force, capture=capture, log=log)
        click.echo(format_replicas(res), nl=False)
        click.echo(f"runs: {target}/*/ (kmemdes compare {target}/*/); numbers: {target}/lab.json")
        return
    path, summary = run_lab(cfg, target, force=force, capture=capture, log=log)
    lab = summary["lab"]
    click.echo(f"run directory: {path}")
    for c in lab["cycles"]:
        v = c["vmstat"]
        burst = f", burst {c['burst_huge']}/{c['burst_ranges']} huge" if "burst_huge" in c else ""
        click.echo(f"cycle {c['cycle']} ({c['seconds']} s): thp {v['thp_fault_alloc']}/{v['thp_fault_fallback']} "
                   f"alloc/fallback{burst}; compact {v['compact_success']}/{v['compact_stall']} success/stall; "
                   f"direct reclaim {v['pgsteal_direct']} pages")
    kl = lab["kernel_latency_ns"]
    for k in ("direct_reclaim", "direct_compaction", "kswapd_awake"):
        if kl[k].get("n"):
            click.echo(f"{k}: n={kl[k]['n']} p50 {kl[k]['p50'] / 1e3:.1f} us, p99 {kl[k]['p99'] / 1e3:.1f} us")
    click.echo(f"restored: {lab['restored']}")
    click.echo(f"report: kmemdes report {path}")


def _predict_seeds(capture: str, sets: tuple[str, ...], n: int) -> dict:
    """``validate --predict --seeds N``: N replays of ``capture`` (seeds from ``--set seed=K``, else the
    config's, on) in a spawn-context process pool of at most this machine's cores and one worker per
    3.5 GiB of MemAvailable, combined (:func:`kmemdes.sim.predict.combine_predictions`)."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from kmemdes.config import Config
    from kmemdes.lab.run import meminfo
    from kmemdes.progress import progress_for
    from kmemdes.sim.predict import apply_sets, check_prediction_inputs, combine_predictions, predict_capture
    from kmemdes.sweep import die_with_parent, stop_pool

    base = Config.model_fields["seed"].default
    rest = []
    for item in sets:
        key, _, value = item.partition("=")
        if key.strip() == "seed":
            try:
                base = int(value)
            except ValueError:
                raise KmemdesError(f"--set {item!r}: seed must be an integer") from None
        else:
            rest.append(item)
    rest_sets = tuple(rest)
    # the capture and the --set keys are checked here first, so that errors come once, before any worker
    check_prediction_inputs(Path(capture))
    apply_sets(Config(name="check"), rest_sets)
    # a what-if is compared with the capture's own policy under the same seeds (paired draws)
    variants = [rest_sets, ()] if rest_sets else [rest_sets]
    tasks = [(v, base + i) for i in range(n) for v in variants]
    # as many at a time as the cores allow and the memory: a replay of the 6 M-event pressure captures
    # peaks at 2.4-3.1 GB, so each worker counts 3.5 GiB of MemAvailable (never a load that risks the
    # OOM killer on a many-core machine with little memory)
    avail_kb = meminfo().get("MemAvailable")
    by_memory = max(1, avail_kb // (7 << 19)) if avail_kb else len(tasks)
    workers = max(1, min(len(tasks), os.cpu_count() or 1, by_memory))
    done: dict = {v: [] for v in variants}
    t0 = time.monotonic()
    with progress_for(True) as bar, ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        bar.stage(f"replaying {Path(capture).name}: {len(tasks)} replays ({workers} at a time)", len(tasks))
        try:
            futures = {pool.submit(predict_capture, str(capture), v, seed=seed): v for v, seed in tasks}
            for k, f in enumerate(as_completed(futures), 1):
                done[futures[f]].append(f.result())
                bar.update(k)
        except BaseException:  # an error in one replay, Ctrl-C, SIGTERM: the others stop now too
            stop_pool(pool)
            raise
    for v in variants:
        done[v].sort(key=lambda r: r["seed"])
    wall = time.monotonic() - t0
    res = combine_predictions(done[rest_sets])
    res["sets"] = list(sets)
    # the whole command's replay time and throughput: all the replays, side by side
    res["wall_s"] = round(wall, 3)
    res["events_per_s"] = int(sum(r["events"] or 0 for rs in done.values() for r in rs) / wall) if wall else None
    if rest_sets:
        own = combine_predictions(done[()])
        res["baseline"] = {"sets": [], "predicted": own["predicted"], "spread": own.get("spread", {}),
                           "per_seed": own.get("per_seed", [])}
        res["difference"] = _whatif_difference(done[rest_sets], done[()])
    return res


def _whatif_rates(pred: dict) -> dict:
    """The figures a what-if is judged on, from one replay's predicted column (rates in %)."""
    a9 = int(pred["attempts_by_order"].get("9", 0))
    thp = int(pred["thp_fault_alloc"]) + int(pred["thp_fault_fallback"])
    out = {"order9_failure_pct": 100.0 * int(pred["failures_by_order"].get("9", 0)) / a9 if a9 else None,
           "thp_success_pct": 100.0 * int(pred["thp_fault_alloc"]) / thp if thp else None}
    for key in ("compact_stall", "compact_success", "pgmigrate_success", "pgsteal_direct", "pgsteal_kswapd",
                "extfrag_fallbacks"):
        out[key] = float(pred[key])
    return out


def _whatif_difference(whatif: list[dict], own: list[dict]) -> dict:
    """What-if minus own policy, seed by seed (the same seeds): mean with its 95 % CI per figure
    (:func:`kmemdes.report.stats.paired_difference`)."""
    from kmemdes.report.stats import paired_difference

    a = [_whatif_rates(r["predicted"]) for r in own]
    b = [_whatif_rates(r["predicted"]) for r in whatif]
    return {key: paired_difference([x[key] for x in a], [y[key] for y in b]) for key in a[0]}


def _format_difference(res: dict) -> str:
    """The paired what-if difference as text lines (empty without one)."""
    diff = res.get("difference")
    if not diff:
        return ""
    lines = ["", f"what-if ({' '.join(s for s in res['sets'] if not s.startswith('seed='))}) minus the "
                 f"capture's own policy, same seeds {', '.join(map(str, res['seeds']))} (mean, 95 % CI):"]
    for key, d in diff.items():
        if d is None:
            continue
        hw = "" if d["half_width"] is None else f" ± {d['half_width']:,.1f}"
        lines.append(f"  {key:<22}{d['mean']:>+14,.1f}{hw}")
    return "\n".join(lines) + "\n"


# --- sim/validate.py ----------------------------------------------------------
@app.command("validate")
@click.argument("capture", required=False, metavar="[CAPTURE_DIR]")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("-o", "--output", "out", metavar="REPORT.html", default=None,
              help="Also write the tables as a self-contained HTML page.")
@click.option("--live", is_flag=True, help="Capture COMMAND on the local kernel first, then validate that capture.")
@click.option("--kpageflags", is_flag=True,
              help="With --live: also snapshot /proc/kpageflags (exact start layout; layout and placement "
                   "agreement). Without --live: require the capture's kpageflags snapshots.")
@click.option("--keep", "keep", metavar="DIR", default=None, help="With --live: keep the capture in DIR.")
@click.option("--force", is_flag=True, help="Replace REPORT.html if it exists.")
@click.option("--predict", is_flag=True,
              help="Replay in policy mode from the exact start state (kpageflags) and print the models' "
                   "outcomes beside the kernel's: failures per order, THP, compaction, reclaim, fallbacks, end state.")
@click.option("--set", "sets", multiple=True, metavar="policy.KEY=VALUE",
              help="With --predict: predict under another policy (the what-if), e.g. --set policy.fallback=defrag_mode.")
@click.option("--seeds", type=click.IntRange(min=1), default=1, metavar="N",
              help="With --predict: replay under N seeds (the config's seed and the N-1 after it, on this "
                   "machine's cores) and print each figure's median and range; with a --set what-if, also "
                   "the capture's own policy under the same seeds and the difference with its 95 % CI.")
@click.argument("command", nargs=-1, metavar="[-- COMMAND...]")
def validate_cmd(capture: Optional[str], as_json: bool, out: Optional[str], live: bool, kpageflags: bool,
                 keep: Optional[str], force: bool, predict: bool, sets: tuple[str, ...], seeds: int,
                 command: tuple[str, ...]) -> None:
    """How closely the models follow the real kernel: replay a capture, compare with its after/ snapshot.

    \b
    The capture's trace is replayed in mirror mode from its before/ snapshot and the
    model's end state is compared with after/: free blocks per zone and order, free pages
    per migratetype, pageblocks per migratetype, slab objects of the caches the trace
    touched, vmalloc areas; then what the model could not know (pcp contents, untraced
    bulk allocations, deferred init), with its size in pages.

    \b
    Captures with before/ and after/kpageflags.zst (kmemdes capture --kpageflags,
    or --live --kpageflags here) start from the exact free-page layout and also
    report layout agreement (per pfn the trace touched: free in the buddy
    allocator or not, model vs after/kpageflags) and placement agreement (the
    model deciding each page allocation itself vs the kernel's pfn).

    \b
    Example:

    \b
      kmemdes validate ../shared/traces/b_compile_nohash
      kmemdes validate traces/a_idle_stream --json
      kmemdes validate --live -- sh -c 'for i in 1 2 3; do cc -O2 -c x.c; done'
      kmemdes validate --live --kpageflags -- sh -c 'head -c 2000000 /dev/zero | cat > /dev/null'
      kmemdes validate ../shared/traces/j_pressure_stock --predict
      kmemdes validate ../shared/traces/j_pressure_stock --predict --set policy.fallback=defrag_mode --json
      kmemdes validate ../shared/traces/j_pressure_stock --predict --seeds 4
    """
    import json as _json

    from kmemdes.sim.validate import format_validation, validate_capture

    if out:
        check_file_output(out, force=force)
    if live:
        if capture is not None:
            command = (capture,) + command
        if not command:
            raise KmemdesError("--live: give the command to capture after --, e.g. validate --live -- make")
        from kmemdes.trace.capture import capture as do_capture

        tmp = None
        if keep is None:
            tmp = scratch_dir("kmemdes_validate_live_")
            target = Path(tmp.name) / "capture"
        else:
            target = Path(keep)
        # traced for 0.3 s after the command: its deferred frees (RCU, kworkers) belong to the comparison
        do_capture(target, list(command), kpageflags=kpageflags, settle=0.3)
        capture = str(target)
    elif capture is None:
        raise KmemdesError("give a capture folder, or --live -- COMMAND")
    if kpageflags:
        from kmemdes.sim.kpageflags import kpageflags_pair

        if Path(capture).is_dir() and kpageflags_pair(capture) is None:
            raise KmemdesError(f"--kpageflags: {capture} has no before/kpageflags.zst and after/kpageflags.zst "
                               "(capture with --kpageflags)")
    if sets and not predict:
        raise KmemdesError("--set applies to --predict (the policy the capture is replayed under)")
    if seeds > 1 and not predict:
        raise KmemdesError("--seeds applies to --predict (the replays whose figures are combined)")
    if predict:
        from kmemdes.sim.predict import format_prediction, predict_capture, write_prediction_html

        res = _predict_seeds(capture, sets, seeds) if seeds > 1 else predict_capture(capture, sets, progress=True)
        if as_json:
            doc = {"predicted": res["predicted"], "kernel": res["kernel"],
                   "targets": res["targets"], "policy": res["policy"], "sets": res["sets"],
                   "replay": {k: res[k] for k in ("events", "events_replayed", "wall_s", "events_per_s", "replays_wall_s")
                              if k in res}}
            doc.update({k: res[k] for k in ("seeds", "spread", "per_seed", "baseline", "difference",
                                            "compaction_attempts") if k in res})
            click.echo(_json.dumps(doc, indent=1))
        else:
            click.echo(format_prediction(res) + _format_difference(res), nl=False)
        if out:
            write_prediction_html(res, Path(out))
            if not as_json:
                click.echo(f"report: {out}")
        return
    from kmemdes.progress import progress_for

    with progress_for(True) as progress:
        res = validate_capture(capture, progress=progress)
    if as_json:
        click.echo(_json.dumps(res, indent=1, default=str))
    else:
        click.echo(format_validation(res), nl=False)
    if out:
        from kmemdes.sim.validate import write_validation_html

        write_validation_html(res, Path(out))
        if not as_json:
            click.echo(f"report: {out}")


def _param_name(param: click.Parameter) -> str:
    """How the user writes ``param``: its long option name, or an argument's metavar."""
    if isinstance(param, click.Option):
        return max(param.opts, key=len)
    return param.metavar or (param.name or "").upper()


def usage_error_line(e: click.exceptions.UsageError) -> str:
    """One line for a command-line usage error, in the form of the other errors: ``WHERE: what``.

    >>> opt = click.Option(["-c", "--cpus"], type=click.IntRange(1))
    >>> usage_error_line(click.BadParameter("0 is not in the range x>=1.", param=opt))
    '--cpus: 0 is not in the range x>=1'
    >>> usage_error_line(click.UsageError("No such option '--cpu'.\\nDid you mean '--cpus'?"))
    "no such option '--cpu'. Did you mean '--cpus'?"
    """
    param = getattr(e, "param", None)
    if isinstance(e, click.exceptions.MissingParameter) and param is not None:
        usage = e.ctx.get_usage().replace("Usage: ", "usage: ", 1) if e.ctx is not None else ""
        what = "required option" if isinstance(param, click.Option) else "missing argument"
        text = f"{_param_name(param)}: {what}" + (f" ({usage})" if usage else "")
    elif isinstance(e, click.BadParameter) and param is not None:
        text = f"{_param_name(param)}: {e.message}"
    else:
        text = e.format_message()
        text = text[:1].lower() + text[1:]
    return " ".join(text.split()).rstrip(".")


def main(argv: Optional[List[str]] = None) -> int:
    """Run the CLI; return the exit status (used by the console script)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args = [a for a in args if a != "--debug"]
    try:
        rv = app(args=args, prog_name="kmemdes", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.NoArgsIsHelpError as e:
        e.show()
        return 0
    except click.exceptions.UsageError as e:
        print(f"kmemdes: error: {usage_error_line(e)}", file=sys.stderr)
        return e.exit_code
    except click.exceptions.ClickException as e:
        e.show()
        return e.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("kmemdes: interrupted", file=sys.stderr)
        return 130
    except Interrupted as e:
        print("kmemdes: interrupted" + (f" by {e}" if e.signum != 2 else ""), file=sys.stderr)
        return 128 + e.signum
    except KmemdesError as e:
        if debug:
            raise
        print(f"kmemdes: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except BaseException as e:  # noqa: BLE001 - last line of defence (a Rust panic is a BaseException)
        if debug or isinstance(e, (SystemExit, GeneratorExit)):
            raise
        print(
            f"kmemdes: internal error: {type(e).__name__}: {e} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


def entry() -> None:
    """The console script (and ``python -m kmemdes.cli``): :func:`main`, then the process
    ends without tearing the interpreter down.  Once Polars is loaded, that teardown (freeing
    every module's objects one by one) takes 0.05-0.1 s of each command, while nothing of
    it is needed: the ``atexit`` handlers still run (logging, thread pools, temporary
    directories) and the standard streams are flushed first."""
    import atexit
    import os

    rc = main()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # a closed pipe (``| head``), a closed stream
            pass
    os._exit(rc)


if __name__ == "__main__":
    entry()
