"""Ring-buffer sub-buffer pages of a trace.dat, walked with numpy.

Follows libtraceevent's ``src/kbuffer-parse.c`` and the kernel's
``kernel/trace/ring_buffer.c``: every page of a CPU stream is walked at once (one
step per event slot, all pages in lock step), then the records' fields are read by
gathers over the file bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from kmemdes.trace._datfile import _FIELD_RE, _MAX_PROBLEM_LINES, _Bad, _Field, _File, _problem

# ring-buffer event header (kernel/trace/ring_buffer.c, kbuffer-parse.c)
_TYPE_PADDING, _TYPE_TIME_EXTEND, _TYPE_TIME_STAMP = 29, 30, 31
_TS_SHIFT = 27
_TS_MSB = np.uint64(0xF8 << 56)
_MISSING_EVENTS = 1 << 31
_MISSING_STORED = 1 << 30
_COMMIT_MASK = (1 << 27) - 1

# --------------------------------------------------------------------------- ring buffer pages


@dataclass
class _PageLayout:
    """Where the timestamp, commit word and data sit in a sub-buffer page (header_page)."""

    ts_off: int = 0
    commit_off: int = 8
    commit_size: int = 8
    data_off: int = 16


def _page_layout(tf: _File) -> _PageLayout:
    lay = _PageLayout(commit_size=tf.long_size, data_off=8 + tf.long_size)
    for m in _FIELD_RE.finditer(tf.header_page):
        name = m.group(1).split()[-1]
        off, size = int(m.group(2)), int(m.group(3))
        if name == "timestamp":
            lay.ts_off = off
        elif name == "commit":
            lay.commit_off, lay.commit_size = off, size
        elif name == "data":
            lay.data_off = off
    he = tf.header_event
    for key, want in (("padding", _TYPE_PADDING), ("time_extend", _TYPE_TIME_EXTEND), ("time_stamp", _TYPE_TIME_STAMP)):
        m = re.search(rf"{key}\s*:\s*type\s*==\s*(\d+)", he)
        if m and int(m.group(1)) != want:
            raise _Bad(0, f"header_event: {key} type {m.group(1)} is not the {want} this reader knows")
    m = re.search(r"type_len\s*:\s*(\d+)\s*bits", he)
    if he and (m is None or int(m.group(1)) != 5):
        raise _Bad(0, "header_event: ring-buffer event header is not the 5-bit type_len / 27-bit delta form")
    return lay


@dataclass
class _Records:
    """Decoded ring-buffer records in report order (parallel arrays)."""

    off: np.ndarray  # byte offset of the payload in the big buffer
    size: np.ndarray  # payload bytes
    ts: np.ndarray  # ns
    cpu: np.ndarray  # cpu number
    lost: np.ndarray  # >0: a LOST row (n events), -1 unknown count, 0 a real record


def _walk_pages(buf: np.ndarray, big: bool, lay: _PageLayout, pages: np.ndarray, stream: np.ndarray, problems: dict):
    """Walk every page at once (``kbuffer_load_subbuffer`` / ``kbuffer_next_event``).

    Returns per-record arrays in page order (payload offset, payload length,
    timestamp, page index, lost count): a page flagged MISSING_EVENTS gets a
    LOST entry (count, or -1 when not stored) before its first record.
    """
    u32 = buf.view(">u4" if big else "<u4")
    npg = len(pages)
    ts = _read_uint(buf, pages + lay.ts_off, 8, big)
    page_ts0 = ts.copy()
    commit = _read_uint(buf, pages + lay.commit_off, lay.commit_size, big).astype(np.int64)
    size = commit & _COMMIT_MASK
    page_size = lay.page_size_total
    data0 = pages + lay.data_off
    maxdata = page_size - lay.data_off
    over = size > maxdata
    if over.any():
        for i in np.flatnonzero(over)[:_MAX_PROBLEM_LINES]:
            pass
        _problem(problems, "page_commit_too_large", int(pages[np.argmax(over)]), f"commit {int(size[np.argmax(over)])} > {maxdata}", int(over.sum()))
        size = np.where(over, 0, size)
    end = data0 + size
    # lost events (MISSING_EVENTS, MISSING_STORED: the count is a long after the data)
    missing = (commit & _MISSING_EVENTS) != 0
    lost_pages = np.flatnonzero(missing)
    lost_n = np.full(len(lost_pages), -1, np.int64)
    stored = ((commit[lost_pages] & _MISSING_STORED) != 0) & (size[lost_pages] + lay.commit_size <= maxdata)
    if stored.any():
        lp = lost_pages[stored]
        lost_n[stored] = _read_uint(buf, end[lp], lay.commit_size, big).astype(np.int64)
    pos = data0.copy()
    act = np.flatnonzero(pos < end)
    offs, lens, tss, pgs, ranks = [], [], [], [], []
    filled = np.zeros(npg, np.int64)  # records emitted so far per page
    bad_pages = []
    while act.size:
        p = pos[act]
        k = p >> 2
        w = u32[k].astype(np.uint64)
        a0 = u32[k + 1].astype(np.int64)
        tl = (w & np.uint64(31)).astype(np.int64)
        delta = w >> np.uint64(5)
        t = ts[act]
        ext = (a0.astype(np.uint64) << np.uint64(_TS_SHIFT)) + delta
        is_stamp = tl == _TYPE_TIME_STAMP
        is_ext = tl == _TYPE_TIME_EXTEND
        t = np.where(is_stamp, ext | (t & _TS_MSB), t + np.where(is_ext, ext, delta))
        is_data = tl <= 28
        big_ev = tl == 0
        plen = np.where(big_ev, (a0 - 4 + 3) & ~3, tl * 4)
        poff = np.where(big_ev, p + 8, p + 4)
        nxt = np.where(is_data, poff + plen, np.where(tl == _TYPE_PADDING, p + 4 + a0, p + 8))
        e = end[act]
        bad = (nxt <= p) | ((nxt & 3) != 0) | (is_data & ((big_ev & (a0 < 4)) | (nxt > e)))
        bad |= (~is_data) & (tl != _TYPE_PADDING) & (p + 8 > e)
        good = is_data & ~bad
        if good.any():
            offs.append(poff[good])
            lens.append(plen[good])
            tss.append(t[good])
            gp = act[good]
            pgs.append(gp)
            ranks.append(filled[gp])
            filled[gp] += 1
        ts[act] = t
        pos[act] = np.where(bad, e, nxt)
        if bad.any():
            bad_pages.append(act[bad])
        act = act[pos[act] < e]
    if bad_pages:
        bp = np.concatenate(bad_pages)
        _problem(problems, "corrupt_ring_buffer_event", int(pages[bp[0]]), "event header points outside its page", len(bp))
    cat = (lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt))
    off, ln, rts, pg, rank = cat(offs, np.int64), cat(lens, np.int64), cat(tss, np.uint64), cat(pgs, np.int64), cat(ranks, np.int64)
    # place every record at its page-order slot; a page's LOST entry goes first
    has_lost = np.zeros(npg, np.int64)
    has_lost[lost_pages] = 1
    start = np.concatenate(([0], np.cumsum(filled + has_lost)[:-1])) if npg else np.zeros(0, np.int64)
    total = int(filled.sum() + has_lost.sum())
    o_off, o_len, o_ts = np.zeros(total, np.int64), np.zeros(total, np.int64), np.zeros(total, np.uint64)
    o_pg, o_lost = np.zeros(total, np.int64), np.zeros(total, np.int64)
    dest = start[pg] + has_lost[pg] + rank
    o_off[dest], o_len[dest], o_ts[dest], o_pg[dest] = off, ln, rts, pg
    if lost_pages.size:
        ld = start[lost_pages]
        o_ts[ld] = page_ts0[lost_pages]
        o_pg[ld] = lost_pages
        o_lost[ld] = np.where(lost_n == 0, -1, lost_n)
    return o_off, o_len, o_ts, o_pg, o_lost


def _view(buf: np.ndarray, size: int, big: bool, signed: bool = False) -> np.ndarray:
    """``buf`` seen as ``size``-byte integers starting at every byte: ``_view(...)[o]`` is
    the integer at byte offset ``o``, so one gather reads a field at any alignment."""
    dt = np.dtype(f"{'>' if big else '<'}{'i' if signed else 'u'}{size}")
    return np.ndarray((max(len(buf) - size + 1, 0),), dt, buffer=buf, strides=(1,))


def _read_native(buf: np.ndarray, off: np.ndarray, size: int, big: bool, signed: bool = False) -> np.ndarray:
    """Integers of ``size`` (1, 2, 4 or 8) bytes at byte offsets ``off``, in their own width
    and signedness (``int32``, ``uint16``...), native byte order."""
    v = _view(buf, size, big, signed)[np.asarray(off, np.int64)]
    return v.astype(v.dtype.newbyteorder("=")) if big else v


def _read_uint(buf: np.ndarray, off: np.ndarray, size: int, big: bool) -> np.ndarray:
    """Unsigned integers of ``size`` bytes at byte offsets ``off`` (any alignment), as uint64."""
    off = np.asarray(off, np.int64)
    if off.size == 0:
        return np.zeros(0, np.uint64)
    if size in (1, 2, 4, 8):
        return _read_native(buf, off, size, big).astype(np.uint64, copy=False)
    acc = np.zeros(off.shape, np.uint64)
    for i in range(size):
        b = buf[off + i].astype(np.uint64)
        sh = (size - 1 - i) * 8 if big else i * 8
        acc |= b << np.uint64(sh)
    return acc


def _read_field(buf: np.ndarray, off: np.ndarray, f: _Field, big: bool) -> np.ndarray:
    """Field values of the records at payload offsets ``off``, in the field's own width and
    signedness (``uint32`` for an unsigned 4-byte field, ``int64`` for a long...)."""
    if f.size not in (1, 2, 4, 8):
        raise ValueError(f"field {f.name} has size {f.size}")
    return _read_native(buf, np.asarray(off, np.int64) + f.offset, f.size, big, f.signed)


def _read_strings(buf: np.ndarray, rec_off: np.ndarray, rec_size: np.ndarray, f: _Field, big: bool, problems: dict):
    """Decode a string field (``__data_loc``/``__rel_loc`` char[] or a static char array).

    Returns (codes, values): ``values[codes[i]]`` is record i's string (None
    when its location is outside the record).
    """
    n = len(rec_off)
    if f.data_loc or f.rel_loc:
        loc = _read_uint(buf, rec_off + f.offset, 4, big)
        start = (loc & np.uint64(0xFFFF)).astype(np.int64)
        length = (loc >> np.uint64(16)).astype(np.int64)
        if f.rel_loc:
            start = start + f.offset + f.size
    elif f.size == 0:  # char buf[]: the rest of the record
        start = np.full(n, f.offset, np.int64)
        length = np.maximum(rec_size - f.offset, 0)
    else:
        start = np.full(n, f.offset, np.int64)
        length = np.full(n, f.size, np.int64)
    ok = (start >= 0) & (start + length <= rec_size)
    if not ok.all():
        _problem(problems, "string_outside_record", int(rec_off[np.argmin(ok)]), f"field {f.name}", int((~ok).sum()))
        length = np.where(ok, length, 0)
    codes = np.zeros(n, np.int64)
    values: list = []
    if n == 0:
        return codes, values
    at = rec_off + start
    nw = max(1, min((int(length.max()) + 3) // 4, 1024))
    # the string bytes as 32-bit words (bytes past the length masked), grouped exactly
    words = np.zeros((n, nw), np.uint32)
    for j in range(nw):
        rem = np.clip(length - 4 * j, 0, 4)
        if not rem.any():
            break
        w = _read_uint(buf, np.where(rem > 0, at + 4 * j, 0), 4, False).astype(np.uint32)
        keep = np.where(rem >= 4, np.uint32(0xFFFFFFFF), ((np.uint64(1) << (rem.astype(np.uint64) * np.uint64(8))) - np.uint64(1)).astype(np.uint32))
        words[:, j] = w & keep
    order = np.lexsort(words.T[::-1]) if nw > 1 else np.argsort(words[:, 0], kind="stable")
    sw = words[order]
    newgrp = np.ones(n, np.bool_)
    newgrp[1:] = (sw[1:] != sw[:-1]).any(axis=1)
    grp = np.cumsum(newgrp) - 1
    codes[order] = grp
    for r in order[newgrp]:
        raw = words[r].tobytes()
        values.append(raw.split(b"\0", 1)[0].decode("utf-8", "replace"))
    if not ok.all():
        values.append(None)
        codes[~ok] = len(values) - 1
    return codes, values
