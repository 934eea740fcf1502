"""The express path of the text parser: the ordinary lines of a chunk in one pass.

Nearly every line of a kmem trace is one of a handful of events
(``kmem_cache_alloc``, ``kmem_cache_free``, ``kfree``, ``kmalloc``,
``mm_page_alloc``, ``mm_page_free``, ``mm_page_free_batched``, ...), and each
of them prints two fields that change from line to line -- ``call_site= ptr=``
(``TP_printk`` of ``kmem_cache_alloc``/``kfree`` in
include/trace/events/kmem.h) or ``page= pfn=`` (``mm_page``) -- followed by a
*tail* that repeats (``name= bytes_req= ... accounted=``, ``order=
migratetype= gfp_flags=``).  So, for an ASCII ftrace chunk whose header
layout and timestamp width are known (:class:`kmemdes.trace.text.TextParser`):

1. every line is cut at constant offsets -- prefix, timestamp -- and the rest
   is split at its first three spaces: event name, field 1, field 2, tail;
2. fields 1 and 2 are converted for the whole chunk at once, once per pair of
   learnt ``key=`` prefixes (a column of one conversion per kind of event,
   not one query per event);
3. each distinct (event, tail) pair is parsed once per file, with the
   event's learnt key order, and gathered back (so is each distinct line
   prefix: comm, pid, CPU, flags).

A line is taken only if everything checks: its header, its event (one whose
layout the parser has learnt and whose every field has a column), each
field's ``key=`` and value, the number of fields.  The rows stay in line
order, so no scatter is needed.  Every other line -- and with it every
problem -- goes to the general path (:meth:`TextParser._parse_rows`), which
gives the same columns for the lines this path takes (a property test checks
this on random corruptions of real traces).
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl

from kmemdes.trace.schema import EVENT_SCHEMA, EventKind, conform
from kmemdes.trace.text import (
    _CONV, _FAMILY, _HEADER_RE, _INT, _LAYOUT_SAMPLE, _STR, _base, _column_of, _failed_alloc_pfn, _fields_table,
    _TS_MAX_S, _Interned, _ts_ns, _ts_seconds,
)

__all__ = ["express_rows", "merge_rows"]

#: the per-line fields of the events this path takes: (key of field 1, key of field 2)
_HEADS = frozenset({("call_site", "ptr"), ("page", "pfn")})

#: lines at the start of the first chunk from which layouts are learnt ahead
_AHEAD = 65536

#: lines left in a chunk up to which the rows are merged as slices (more: one gather)
_MAX_PIECES = 64


def _events(parser) -> list[tuple[str, tuple, tuple]]:
    """``(name, family, layout)`` of the learnt events this path can take."""
    out = []
    for name, layout in parser._body_layouts.items():
        family = _FAMILY.get(name)
        if layout is None or family is None:
            continue
        keys = layout[0]
        if len(keys) >= 2 and tuple(keys[:2]) in _HEADS and all(_column_of(k, family) for k in keys):
            out.append((name, family, layout))
    return out


def _parse_tails(parser, event: tuple, strings: list) -> pl.DataFrame:
    """Typed tail columns and ``_ok`` of tails of one event (None: no tail)."""
    name, family, (keys, prefixes) = event
    if len(keys) == 2:  # call_site= ptr= and nothing more
        return pl.DataFrame({"_ok": [s is None for s in strings]})
    table = _fields_table(family, keys[2:], prefixes[2:], strings)
    if "gfp_flags" in table.columns:
        table = table.with_columns(gfp=parser._gfp_bits(table["gfp_flags"]))
    return table


class _Tails:
    """The distinct tails of a file and their parse per event, kept from
    chunk to chunk (a trace has a few hundred: caches, sizes, flags)."""

    def __init__(self) -> None:
        self.interned = _Interned()  # tail id -> text
        self.rows: dict[tuple[str, int], int] = {}  # (event, tail id; -1: none) -> row of ``table``
        self.table = pl.DataFrame({"_ok": []}, schema={"_ok": pl.Boolean})

    def ids(self, tail: pl.Series) -> np.ndarray:
        """The tail id of each line (-1 where it has no tail)."""
        return self.interned.ids(tail).cast(pl.Int64).fill_null(-1).to_numpy()

    def lookup(self, parser, events: list, pairs: np.ndarray, width: int) -> np.ndarray:
        """Row of ``table`` of each pair ``code * width + tail id + 1``,
        parsing the pairs not met before."""
        codes, tids = (pairs // width).tolist(), (pairs % width - 1).tolist()
        missing: dict[int, list[int]] = {}
        for c, t in zip(codes, tids):
            if (events[c][0], t) not in self.rows:
                missing.setdefault(c, []).append(t)
        if missing:
            parts, n = [self.table], self.table.height
            for c, ts in missing.items():
                parts.append(_parse_tails(parser, events[c], [self.interned.strings[t] if t >= 0 else None for t in ts]))
                for t in ts:
                    self.rows[(events[c][0], t)] = n
                    n += 1
            self.table = pl.concat(parts, how="diagonal_relaxed", rechunk=True)
        return np.array([self.rows[(events[c][0], t)] for c, t in zip(codes, tids)], dtype=np.uint32)


def _head_values(events: list) -> tuple[list[list[pl.Expr]], pl.Expr]:
    """Stages of expressions (each a ``with_columns``) giving the typed
    columns of fields 1 and 2 (``_f1``, ``_f2``) of every line by its event
    (``_code``), and the expression that then checks them: each field starts
    with the event's learnt ``key=`` prefix and, but for a call site,
    converts (as :func:`kmemdes.trace.text._positional`).

    Each field is cut after its per-line prefix and converted once per base
    for the whole chunk; each column then takes the value on the lines of
    the events that have it."""
    code = pl.col("_code")
    names = [e[0] for e in events]
    cut: list[pl.Expr] = []
    convert: list[pl.Expr] = []
    values: list[pl.Expr] = []
    checks: list[pl.Expr] = []
    for i, src in enumerate(("_f1", "_f2")):
        prefix = pl.lit(pl.Series([e[2][1][i] for e in events], dtype=pl.String)).gather(code)
        raw = f"_r{i}"
        cut.append(pl.col(src).str.strip_prefix(prefix).alias(raw))
        by_col: dict[str, list[int]] = {}
        base_of: dict[int, int] = {}
        for c, (_, family, (keys, prefixes)) in enumerate(events):
            col = _column_of(keys[i], family)
            by_col.setdefault(col, []).append(c)
            if _CONV.get(col, _INT) != _STR:
                base_of[c] = _base(prefixes[i], _CONV.get(col, _INT))
        # every field must start with its key= (a bare number would convert without it)
        cut.append(pl.col(src).str.starts_with(prefix).alias(f"_p{i}"))
        checks.append(pl.col(f"_p{i}"))
        for b in sorted(set(base_of.values())):
            convert.append(pl.col(raw).str.to_integer(base=b, dtype=pl.UInt64, strict=False).alias(f"_v{i}_{b}"))
        for col, codes in by_col.items():
            if _CONV.get(col, _INT) == _STR:
                values.append(pl.when(code.is_in(codes)).then(pl.col(raw)).alias(col))
                continue
            v = None
            for b in sorted({base_of[c] for c in codes}):
                inside = code.is_in([c for c in codes if base_of[c] == b])
                v = (pl.when(inside) if v is None else v.when(inside)).then(pl.col(f"_v{i}_{b}"))
            v = v.cast(EVENT_SCHEMA[col], strict=False)
            if col == "pfn" and "mm_page_alloc" in names:
                v = _failed_alloc_pfn(v, code == names.index("mm_page_alloc"))
            values.append(v.alias(col))
            checks.append(pl.col(col).is_not_null() | ~code.is_in(codes))
    return [cut, convert, values], pl.all_horizontal(checks)


def _learn_ahead(parser, frame: pl.DataFrame) -> None:
    """Learn, from the first lines of the first chunk, the layouts of the
    events that have a whole sample there -- their first rows in the chunk,
    the sample the general path would learn them from -- so that the express
    path can take the first chunk too.  Nothing is learnt if an event line
    there needs the general path's header parse by regular expression, which
    would join that sample."""
    head = frame.head(_AHEAD)
    whole = head.height == frame.height  # every event's sample is in the head
    fast = parser._fast_header(head)
    rx = re.compile(_HEADER_RE[parser.fmt])
    if any(s is not None and rx.match(s) for s in fast.filter(~pl.col("_ok"))["l"].to_list()):
        return
    firsts = fast.filter(pl.col("_ok")).select("ev", "body").filter(pl.int_range(pl.len()).over("ev") < _LAYOUT_SAMPLE)
    seen = set()
    for (raw,), part in firsts.partition_by("ev", as_dict=True, maintain_order=True).items():
        # the general path learns an event from the first of its printed names to appear
        # ("kmem:kfree", "kfree"): that group's sample, or nothing ahead
        name = parser._event_name(raw)
        if name in seen:
            continue
        seen.add(name)
        family = _FAMILY.get(name)
        if (family is None or tuple(family[0][:2]) not in _HEADS or name in parser._body_layouts
                or (part.height < _LAYOUT_SAMPLE and not whole)):
            continue
        parser._learn_from(name, family, part)


def express_rows(parser, frame: pl.DataFrame) -> tuple[pl.DataFrame | None, pl.DataFrame]:
    """``(rows, lines left)``: the conformed typed rows of every line of the
    chunk (rows of the lines this path does not take hold anything) with a
    boolean ``_ok`` marking those it takes, or None if it takes none; and
    the ``l, line`` frame of the lines it does not take."""
    if not parser._body_layouts:
        _learn_ahead(parser, frame)
    events = _events(parser)
    if not events:
        return None, frame
    lay = parser._layout
    d0, w = lay.ts_start, parser._ts_width
    names = [e[0] for e in events]
    l = pl.col("l")
    f = pl.col("_f").struct
    tsf = pl.col("_tsf")
    sep = pl.col("_sep")  # ".usecs: " after the seconds
    cut = (
        frame.lazy()
        .select(
            "line",
            _pre=l.str.slice(0, d0),
            _tsf=_ts_seconds(l.str.slice(d0, w)),
            _sep=l.str.slice(d0 + w - 7, 9),
            _f=l.str.slice(d0 + w + 2).str.splitn(" ", 4),
        )
        .select(
            "line", "_pre",
            ts=_ts_ns(tsf),
            _hok=(sep.str.starts_with(".") & sep.str.ends_with(": ") & (tsf >= 0) & (tsf < _TS_MAX_S)).fill_null(False),
            _code=f.field("field_0").cast(pl.Enum([n + ":" for n in names]), strict=False).to_physical(),
            _f1=f.field("field_1"), _f2=f.field("field_2"), _tail=f.field("field_3"),
        )
        .collect()
    )
    # the tail: one parse per distinct (event, tail) pair of the file
    if parser._express_tails is None or parser._express_tails.interned.full:
        parser._express_tails = _Tails()
    tails = parser._express_tails
    tid = tails.ids(cut["_tail"])
    width = len(tails.interned.strings) + 1
    codes_np = cut["_code"].cast(pl.Int64).fill_null(-1).to_numpy()
    known = codes_np >= 0
    pair = np.where(known, codes_np * width + tid + 1, 0)
    pairs = np.flatnonzero(np.bincount(pair[known], minlength=len(events) * width))
    if not pairs.size:
        return None, frame
    lut = np.zeros(len(events) * width, dtype=np.uint32)
    lut[pairs] = tails.lookup(parser, events, pairs, width)
    at = pl.Series(lut[pair])
    table = tails.table
    tail_cols = [table[c].gather(at) for c in table.columns if c != "_ok"]
    tail_ok = table["_ok"].gather(at)

    stages, head_ok = _head_values(events)
    kinds = pl.Series([int(EventKind.from_name(n)) for n in names], dtype=pl.UInt8)
    lf = cut.lazy().select("line", "ts", "_code", "_hok", "_f1", "_f2")
    for stage in stages:
        lf = lf.with_columns(stage)
    out = (
        lf.select(
            "line", "ts", *[e.meta.output_name() for e in stages[-1]],
            kind=pl.lit(kinds).gather(pl.col("_code")),
            event=pl.lit(pl.Series(names, dtype=pl.String)).gather(pl.col("_code")),
            _ok=(pl.col("_hok") & pl.col("_code").is_not_null() & head_ok).fill_null(False),
        )
        .collect()
    )
    out = out.with_columns(*parser._prefix_fields(cut["_pre"]), *tail_cols)
    ok = (out["_ok"] & tail_ok & out["_pok"]).fill_null(False)
    if not ok.any():
        return None, frame
    out = conform(out.drop("_ok", "_pok")).with_columns(_ok=ok)
    return out, frame.filter(~ok) if not ok.all() else frame.clear()


def merge_rows(express: pl.DataFrame, other: pl.DataFrame | None) -> pl.DataFrame:
    """The rows ``express`` takes (``_ok``) and the rows of the lines it left
    (``other``, parsed by the general path), in line order.

    The lines left are usually few (events of other kinds, problems), so
    the result is put together from slices of ``express`` around them,
    without copying (the frame then holds a few more chunks)."""
    ok = express["_ok"]
    express = express.drop("_ok")
    if other is None or not other.height:
        return express if ok.all() else express.filter(ok)
    ok_np = ok.to_numpy()
    lines = express["line"].to_numpy()
    bad = np.flatnonzero(~ok_np)
    if bad.size > _MAX_PIECES:  # one gather of the rows taken and the others, in line order
        taken = np.flatnonzero(ok_np)
        at = np.searchsorted(lines[taken], other["line"].to_numpy()) + np.arange(other.height)
        order = np.empty(taken.size + other.height, dtype=np.int64)
        slot = np.ones(order.size, dtype=bool)
        slot[at] = False
        order[slot], order[at] = taken, express.height + np.arange(other.height)
        return pl.concat([express, other], rechunk=False)[pl.Series(order)]
    other_lines = other["line"].to_numpy()
    at = np.searchsorted(other_lines, lines[bad])  # the row of ``other`` for each line left, if any
    parts, start = [], 0
    for i, j in zip(bad.tolist(), at.tolist()):
        parts.append(express.slice(start, i - start))
        if j < other_lines.size and other_lines[j] == lines[i]:
            parts.append(other.slice(j, 1))
        start = i + 1
    parts.append(express.slice(start))
    return pl.concat(parts, rechunk=False)
