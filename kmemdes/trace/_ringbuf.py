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

from kmemdes.trace._columns import factorize
from kmemdes.trace._datfile import _FIELD_RE, _MAX_PROBLEM_LINES, _Bad, _Field, _File, _problem

# ring-buffer event header (kernel/trace/ring_buffer.c, kbuffer-parse.c)
_TYPE_PADDING, _TYPE_TIME_EXTEND, _TYPE_TIME_STAMP = 29, 30, 31
_TS_SHIFT = 27
_TS_MSB = np.uint64(0xF8 << 56)
_MISSING_EVENTS = 1 << 31
_MISSING_STORED = 1 << 30
_COMMIT_MASK = (1 << 27) - 1
_HASH_MUL = np.uint64(0x100000001B3)  # FNV-1a's prime: mixes a string's words into one number
_BYTES_MASK = np.array([0, 0xFF, 0xFFFF, 0xFFFFFF, 0xFFFFFFFF], np.uint32)  # the first k bytes of a little-endian word

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


# bytes from a slot's header to the next slot, by type_len (0 and padding depend on the next word)
_STEP = np.array([0] + [4 + 4 * t for t in range(1, 29)] + [0, 8, 8], np.int64)
_STEP_WORDS = _STEP >> 2


def _walk_pages(buf: np.ndarray, big: bool, lay: _PageLayout, pages: np.ndarray, stream: np.ndarray, problems: dict):
    """Walk every page at once (``kbuffer_load_subbuffer`` / ``kbuffer_next_event``).

    Returns per-record arrays in page order (payload offset, payload length,
    timestamp, page index, lost count): a page flagged MISSING_EVENTS gets a
    LOST entry (count, or -1 when not stored) before its first record.

    The walk finds where each slot (event header) of every page is, one slot
    per page per step; what the slots hold (type, payload, time deltas) is then
    read for all slots at once, and the timestamps are running sums per page.
    """
    u32 = buf.view(">u4" if big else "<u4")
    npg = len(pages)
    page_ts = _read_uint(buf, pages + lay.ts_off, 8, big)
    commit = _read_uint(buf, pages + lay.commit_off, lay.commit_size, big).astype(np.int64)
    size = commit & _COMMIT_MASK
    page_size = lay.page_size_total
    data0 = pages + lay.data_off
    maxdata = page_size - lay.data_off
    over = size > maxdata
    if over.any():
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
    # the walk: slot positions (in 4-byte words), step by step; a bad slot ends its page.
    # Step k's row holds the k-th slot of every page (-1: the page has ended)
    act = np.flatnonzero(data0 < end)
    p, e = data0[act] >> 2, end[act]
    ew = (e + 3) >> 2  # a slot starting at or after the end of the data is not read
    wtype = np.int32 if len(u32) < (1 << 31) else np.int64
    p = p.astype(wtype)
    rows = []
    nslot = np.zeros(npg, np.int64)
    while act.size:
        w = u32[p]
        nxt = p + _STEP_WORDS[w & 31].astype(wtype)
        odd = np.flatnonzero(nxt == p)  # type_len 0 and padding: the length is in the next word
        if odd.size:
            po = p[odd].astype(np.int64)
            a0 = u32[po + 1].astype(np.int64)
            pad = (w[odd] & 31) == _TYPE_PADDING
            bad = np.where(pad, (a0 & 3) != 0, a0 < 4)
            nxt[odd] = np.where(bad, ew[odd], np.where(pad, po + 1 + (a0 >> 2), po + 2 + ((a0 - 1) >> 2)))
        row = np.full(npg, -1, wtype)
        row[act] = p
        rows.append(row)
        nslot[act] += 1
        more = (nxt.astype(np.int64) << 2) < e
        if not more.all():
            act, nxt, e, ew = act[more], nxt[more], e[more], ew[more]
        p = nxt
    # slots in page order
    words = np.stack(rows).T.ravel() if rows else np.zeros(0, wtype)
    sp = words[words >= 0].astype(np.int64) << 2
    spg = np.repeat(np.arange(npg), nslot)
    first = np.concatenate(([0], np.cumsum(nslot)[:-1])) if npg else np.zeros(0, np.int64)
    w = u32[sp >> 2]
    tl = (w & 31).astype(np.int8)
    # only the last slot of a page can be bad (the walk stopped there)
    lp = np.flatnonzero(nslot)
    last = first[lp] + nslot[lp] - 1
    ltl, la0 = tl[last], u32[(sp[last] >> 2) + 1].astype(np.int64)
    lbig, lpad = ltl == 0, ltl == _TYPE_PADDING
    lnxt = sp[last] + np.where(lbig, 8 + ((la0 - 4 + 3) & ~3), np.where(lpad, 4 + la0, _STEP[ltl]))
    lbad = ((lnxt > end[lp]) & ~lpad) | (lbig & (la0 < 4)) | (lpad & ((la0 & 3) != 0))
    if lbad.any():
        bp = lp[lbad]  # found at step nslot - 1; the first one found is reported
        firstbad = bp[np.lexsort((bp, nslot[bp]))[0]]
        _problem(problems, "corrupt_ring_buffer_event", int(pages[firstbad]), "event header points outside its page", len(bp))
    # timestamps: running sums per page of the slots' deltas (a TIME_EXTEND adds its long
    # delta, a TIME_STAMP sets the time)
    inc = (w >> 5).astype(np.uint64)
    special = np.flatnonzero(tl >= _TYPE_TIME_EXTEND)
    ext = (u32[(sp[special] >> 2) + 1].astype(np.uint64) << np.uint64(_TS_SHIFT)) + inc[special]
    stamped = tl[special] == _TYPE_TIME_STAMP
    inc[special] = np.where(stamped, np.uint64(0), ext)
    csum = np.cumsum(inc, dtype=np.uint64)
    page_base = page_ts.copy()
    page_base[lp] -= csum[first[lp]] - inc[first[lp]]  # time = page_base + running sum
    isrec = tl <= 28
    isrec[last[lbad]] = False
    rec = np.flatnonzero(isrec)
    pg = spg[rec]
    rts = csum[rec] + page_base[pg]
    if stamped.any():  # the slots of the pages with a TIME_STAMP, walked again
        spages = np.unique(spg[special[stamped]])
        lens = nslot[spages]
        sub_first = np.concatenate(([0], np.cumsum(lens)[:-1]))
        sel = np.repeat(first[spages] - sub_first, lens) + np.arange(int(lens.sum()))
        stamp = np.zeros(len(sel), np.bool_)
        at = np.searchsorted(sel, special[stamped])
        stamp[at] = True
        sub_ext = np.zeros(len(sel), np.uint64)
        sub_ext[at] = ext[stamped]
        c = csum[sel]
        ts = _stamped(c + page_base[spg[sel]], stamp, sub_ext, c, c - inc[sel], np.repeat(sub_first, lens), page_ts[spg[sel]])
        where = np.minimum(np.searchsorted(rec, sel), max(len(rec) - 1, 0))
        is_rec = rec[where] == sel if len(rec) else np.zeros(len(sel), np.bool_)
        rts[where[is_rec]] = ts[is_rec]
    off = sp[rec] + 4
    ln = tl[rec].astype(np.int64) * 4
    big = np.flatnonzero(ln == 0)  # type_len 0: the length is the next word
    if big.size:
        off[big] += 4
        ln[big] = (u32[(sp[rec[big]] >> 2) + 1].astype(np.int64) - 4 + 3) & ~3
    if not lost_pages.size:
        return off, ln, rts, pg, np.zeros(len(rec), np.int64)
    # place every record at its page-order slot; a page's LOST entry goes first
    has_lost = np.zeros(npg, np.int64)
    has_lost[lost_pages] = 1
    shift = np.cumsum(has_lost)
    total = len(rec) + len(lost_pages)
    o_off, o_len, o_ts = np.zeros(total, np.int64), np.zeros(total, np.int64), np.zeros(total, np.uint64)
    o_pg, o_lost = np.zeros(total, np.int64), np.zeros(total, np.int64)
    dest = np.arange(len(rec)) + shift[pg]
    o_off[dest], o_len[dest], o_ts[dest], o_pg[dest] = off, ln, rts, pg
    ld = np.searchsorted(pg, lost_pages) + shift[lost_pages] - 1
    o_ts[ld] = page_ts[lost_pages]
    o_pg[ld] = lost_pages
    o_lost[ld] = np.where(lost_n == 0, -1, lost_n)
    return o_off, o_len, o_ts, o_pg, o_lost


def _stamped(ts, stamp, ext, csum, before, page_first, base):
    """Timestamps of a page walk with TIME_STAMP slots: a stamp sets the time to its
    value (keeping the top 5 bits of the time before it), later slots add to it.
    Stamps are applied in page order, the k-th stamp of every page at step k."""
    idx = np.arange(len(ts))
    last = np.maximum.accumulate(np.where(stamp, idx, -1))  # the last stamp at or before each slot
    last = np.where(last >= page_first, last, -1)
    sidx = np.flatnonzero(stamp)
    prev = last[np.maximum(sidx - 1, 0)]  # the stamp before each stamp, in its page (-1: none)
    prev = np.where((sidx > 0) & (sidx - 1 >= page_first[sidx]), prev, -1)
    value = np.zeros(len(ts), np.uint64)  # time set at each stamp
    todo = np.ones(len(sidx), np.bool_)
    while todo.any():
        ready = todo & ((prev < 0) | ~np.isin(prev, sidx[todo]))
        j = sidx[ready]
        pj = prev[ready]
        t_before = np.where(pj < 0, base[j] + (before[j] - before[page_first[j]]), value[np.maximum(pj, 0)] + (before[j] - csum[np.maximum(pj, 0)]))
        value[j] = ext[j] | (t_before & _TS_MSB)
        todo &= ~ready
    seg = last >= 0
    li = last[seg]
    ts = ts.copy()
    ts[seg] = value[li] + (csum[seg] - csum[li])
    return ts


def _view(buf: np.ndarray, size: int, big: bool, signed: bool = False, at: int = 0) -> np.ndarray:
    """``buf`` seen as ``size``-byte integers starting at every byte from ``at`` on:
    ``_view(...)[o]`` is the integer at byte offset ``at + o``, so one gather reads a field
    at any alignment."""
    dt = np.dtype(f"{'>' if big else '<'}{'i' if signed else 'u'}{size}")
    at = min(at, len(buf))
    return np.ndarray((max(len(buf) - at - size + 1, 0),), dt, buffer=buf, offset=at, strides=(1,))


def _read_native(buf: np.ndarray, off: np.ndarray, size: int, big: bool, signed: bool = False, at: int = 0) -> np.ndarray:
    """Integers of ``size`` (1, 2, 4 or 8) bytes at byte offsets ``at + off``, in their own
    width and signedness (``int32``, ``uint16``...), native byte order."""
    v = _view(buf, size, big, signed, at)[np.asarray(off, np.int64)]
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
    return _read_native(buf, off, f.size, big, f.signed, f.offset)


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
    # the string bytes as 32-bit words (bytes past the length masked), grouped exactly: by a
    # hash of the words, checked against each group's first row (sorted when a hash collides)
    words = np.zeros((n, nw), np.uint32, order="F")  # filled a column (a word of every string) at a time
    h = np.zeros(n, np.uint64)
    for j in range(nw):
        rem = np.clip(length - 4 * j, 0, 4)
        if not rem.any():
            break
        w = _read_native(buf, np.where(rem > 0, at + 4 * j, 0), 4, False)
        words[:, j] = w & _BYTES_MASK[rem]
        h = h * _HASH_MUL + words[:, j]
    _, codes = factorize(h)
    _, reps = np.unique(codes, return_index=True)
    if not (words == words[reps[codes]]).all():
        order = np.lexsort(words.T[::-1]) if nw > 1 else np.argsort(words[:, 0], kind="stable")
        sw = words[order]
        newgrp = np.ones(n, np.bool_)
        newgrp[1:] = (sw[1:] != sw[:-1]).any(axis=1)
        codes[order] = np.cumsum(newgrp) - 1
        reps = order[newgrp]
    for r in reps:
        raw = words[r].tobytes()
        values.append(raw.split(b"\0", 1)[0].decode("utf-8", "replace"))
    if not ok.all():
        values.append(None)
        codes[~ok] = len(values) - 1
    return codes, values
