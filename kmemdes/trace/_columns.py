"""Full-length event-table columns filled from numpy arrays, event type by event type.

The trace.dat reader (:mod:`kmemdes.trace.tracedat`) decodes the records of one event id
at a time; each decoded field is scattered into a column of every row of the table, with
a validity mask, and a string column is kept as codes into a list of distinct values
(formatted once per value) until the table is built.  :func:`factorize` gives those codes.
The table is built either as a Polars frame (:meth:`Columns.frame`) or, for
:class:`kmemdes.trace.kmt.KmtWriter`, as :class:`Table` blocks of rows that share the
columns' memory (:meth:`Columns.table`), handed over while later rows are decoded.
"""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl

from kmemdes.trace.schema import EVENT_SCHEMA, conform

__all__ = ["Columns", "Table", "factorize", "join_tables", "string_codes"]

_TABLE_SPAN = 1 << 23  # values spanning less (and less than twice their count) go through a lookup table

_NP_DTYPE = {
    pl.Int8(): np.int8, pl.Int16(): np.int16, pl.Int32(): np.int32, pl.Int64(): np.int64,
    pl.UInt8(): np.uint8, pl.UInt32(): np.uint32, pl.UInt64(): np.uint64, pl.Boolean(): np.bool_,
}


def factorize(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values in ascending order, code of each element): a lookup table when the
    values span a range shorter than 2**23 and than twice their count, else a hash table
    (Polars' ``unique`` and ``replace_strict``).

    >>> u, c = factorize(np.array([7, 3, 7, 2**40, 3], np.int64))
    >>> u.tolist(), c.tolist()
    ([3, 7, 1099511627776], [1, 0, 1, 2, 0])
    >>> u, c = factorize(np.array([-5, 9, -5], np.int64)); u.tolist(), c.tolist()
    ([-5, 9], [0, 1, 0])
    """
    v = np.asarray(v)
    if v.dtype == np.bool_:
        v = v.view(np.uint8)
    if v.size == 0:
        return v[:0].copy(), np.zeros(0, np.int64)
    lo, hi = v.min(), v.max()
    if v.dtype.kind in "iu" and int(hi) - int(lo) < min(_TABLE_SPAN, 2 * v.size + 4096):
        rel = (v - lo).astype(np.intp) if v.dtype.kind == "u" else v.astype(np.intp) - int(lo)
        seen = np.zeros(int(hi) - int(lo) + 1, np.bool_)
        seen[rel] = True
        present = np.flatnonzero(seen)
        code = np.zeros(len(seen), np.int64)
        code[present] = np.arange(len(present))
        uniq = present.astype(v.dtype) + lo if v.dtype.kind == "u" else (present + int(lo)).astype(v.dtype)
        return uniq, code[rel]
    s = pl.Series("v", v)
    uniq = np.sort(s.unique().to_numpy())
    codes = s.replace_strict(pl.Series("u", uniq), pl.Series("c", np.arange(len(uniq), dtype=np.int64)))
    return uniq, codes.to_numpy(writable=True)


class Columns:
    """Full-length column arrays with validity masks, filled event type by event type
    (and then, for :meth:`table`, block of rows by block of rows)."""

    def __init__(self, n: int):
        self.n = n
        self.num: dict = {}
        self.valid: dict = {}
        self.strings: dict = {}  # column -> _Strings

    def put_all(self, col: str, values: np.ndarray) -> None:
        """``values`` of every row of numeric column ``col`` (not filled before)."""
        self.num[col] = values.astype(_NP_DTYPE[EVENT_SCHEMA[col]], copy=False)
        self.valid[col] = None

    def put(self, col: str, idx: np.ndarray, values: np.ndarray) -> None:
        """``values`` (numbers of any width, or one number) at rows ``idx`` of numeric column ``col``."""
        values = np.asarray(values)
        if col not in self.num:
            self.num[col] = np.zeros(self.n, _NP_DTYPE[EVENT_SCHEMA[col]])
            self.valid[col] = np.zeros(self.n, np.bool_)
        arr = self.num[col]
        if values.dtype != arr.dtype:
            values = values.view(np.uint64) if arr.dtype == np.uint64 and values.dtype == np.int64 else values.astype(arr.dtype)
        arr[idx] = values
        self.valid[col][idx] = True

    def put_str(self, col: str, idx: np.ndarray, codes: np.ndarray, values: list) -> None:
        """Strings ``values[codes]`` (``codes`` an array or one code) at rows ``idx`` of string
        column ``col``; a ``values`` list put before (the same object) is not copied again."""
        if col not in self.strings:
            self.strings[col] = _Strings(self.n)
        self.strings[col].put(idx, codes, values)

    def frame(self, keep: np.ndarray | None = None) -> pl.DataFrame:
        """The event table (canonical schema; columns never filled are null); ``keep``: only
        the rows where it is true, ``line`` numbered again from 1."""
        data = {}
        exprs = []
        for col, arr in self.num.items():
            data[col] = arr
            v = self.valid[col]
            if v is None or v.all():
                exprs.append(pl.col(col))
            else:
                data["_v_" + col] = v
                exprs.append(pl.when(pl.col("_v_" + col)).then(pl.col(col)).alias(col))
        df = pl.DataFrame(data, height=self.n).select(exprs) if data else pl.DataFrame(height=self.n)
        strs = {col: _strings(col, sc.codes, sc.values) for col, sc in self.strings.items()}
        df = conform(df.with_columns(**strs) if strs else df)
        if keep is not None and not keep.all():
            df = df.filter(pl.Series(keep)).with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("line"))
        return df

    def table(self, keep: np.ndarray | None = None, start: int = 0, stop: int | None = None) -> "Table":
        """Rows ``start:stop`` as a :class:`Table` (string columns as codes into their distinct
        strings), ``keep`` applied as :meth:`frame` applies it (``line`` counts the kept rows
        before ``start``).  The table shares memory with the columns: later puts may fill
        other rows, not these."""
        stop = self.n if stop is None else stop
        kept = None if keep is None else keep[start:stop]
        if kept is not None and kept.all():
            kept = None
        num: dict = {}
        for col, arr in self.num.items():
            v = self.valid[col]
            a, v = arr[start:stop], None if v is None else v[start:stop]
            if kept is not None:
                a, v = a[kept], None if v is None else v[kept]
            num[col] = (a, None if v is None or v.all() else v)
        if "line" in num:
            first = 1 + (start if keep is None else int(np.count_nonzero(keep[:start])))
            num["line"] = (np.arange(first, first + len(num["line"][0]), dtype=np.int64), None)
        codes: dict = {}
        for col, sc in self.strings.items():
            remap, names = sc.distinct()
            c = sc.codes[start:stop]
            codes[col] = (c if kept is None else c[kept], remap, names)
        n = stop - start if kept is None else int(np.count_nonzero(kept))
        return Table(n, num, codes)


class _Strings:
    """One string column of :class:`Columns`: codes of every row (-1: null) into ``values``,
    the lists put, one after the other (a string may come in several)."""

    def __init__(self, n: int):
        self.codes = np.full(n, -1, np.int32 if n < (1 << 31) else np.int64)
        self.values: list = []
        self._base: dict = {}  # id of a list put -> (the list, its first code)
        self._names: list = []  # the distinct strings, in order of first put
        self._first: dict = {}  # string -> its index in _names
        self._remap = np.full(1, -1, np.int64)  # code -> index in _names (-1: null; last: code -1)

    def put(self, idx: np.ndarray, codes: np.ndarray, values: list) -> None:
        seen = self._base.get(id(values))
        if seen is None:
            seen = self._base[id(values)] = (values, len(self.values))
            self.values.extend(values)
        self.codes[idx] = codes + seen[1]

    def distinct(self) -> tuple[np.ndarray, list]:
        """(the index in the distinct strings of each code, last entry for code -1 (null); the
        distinct strings), for the lists put so far."""
        done = len(self._remap) - 1
        if done < len(self.values):
            first, names = self._first, self._names
            add = [-1 if v is None else first.setdefault(v, len(first)) for v in self.values[done:]]
            names.extend(itertools.islice(first, len(names), None))
            self._remap = np.concatenate((self._remap[:-1], np.array(add, np.int64), [-1]))
        return self._remap, self._names


class Table:
    """The event table as numpy columns: what :class:`kmemdes.trace.kmt.KmtWriter` encodes
    without building a Polars frame.  Numeric columns are (values of every row, 0 where
    null; validity mask or None), string columns (codes, their index in the distinct strings
    (-1: null), the distinct strings), codes -1 where null; a column of neither is null in
    every row."""

    def __init__(self, n: int, num: dict, codes: dict):
        self.height = n
        self.num = num
        self.codes = codes

    def numbers(self, col: str, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(values, validity or None) of rows ``start:stop`` of numeric column ``col``, or None."""
        if col not in self.num:
            return None
        arr, v = self.num[col]
        return arr[start:stop], None if v is None else v[start:stop]

    def strings(self, col: str, start: int, stop: int) -> tuple[np.ndarray, list] | None:
        """(codes, distinct strings) of rows ``start:stop`` of string column ``col``, or None."""
        if col not in self.codes:
            return None
        c, remap, names = self.codes[col]
        return remap[c[start:stop]], names


def string_codes(s: pl.Series) -> tuple[np.ndarray, list]:
    """(codes, values) of a String series: ``values[codes[i]]`` is its i-th string (None: null).

    >>> string_codes(pl.Series(["b", None, "a", "b"]))
    (array([0, 2, 1, 0]), ['b', 'a', None])
    """
    cats = s.drop_nulls().unique(maintain_order=True)
    codes = s.cast(pl.Enum(cats)).to_physical().cast(pl.Int64).fill_null(cats.len()).to_numpy()
    return codes, cats.to_list() + [None]


def join_tables(pieces: list) -> Table:
    """One :class:`Table` of the rows ``(table, start, stop)`` of each piece in turn."""
    if len(pieces) == 1 and pieces[0][1] == 0 and pieces[0][2] == pieces[0][0].height:
        return pieces[0][0]
    n = sum(stop - start for _, start, stop in pieces)
    num: dict = {}
    for col in dict.fromkeys(c for t, _, _ in pieces for c in t.num):
        vals, valid = [], []
        for t, start, stop in pieces:
            part = t.numbers(col, start, stop)
            if part is None:  # null in this piece
                part = (np.zeros(stop - start, _NP_DTYPE[EVENT_SCHEMA[col]]), np.zeros(stop - start, np.bool_))
            vals.append(part[0])
            valid.append(np.ones(stop - start, np.bool_) if part[1] is None else part[1])
        v = np.concatenate(valid)
        num[col] = (np.concatenate(vals), None if v.all() else v)
    codes: dict = {}
    for col in dict.fromkeys(c for t, _, _ in pieces for c in t.codes):
        first: dict = {}
        parts = []
        for t, start, stop in pieces:
            part = t.strings(col, start, stop)
            if part is None:
                parts.append(np.full(stop - start, -1, np.int64))
                continue
            c, names = part
            remap = np.array([first.setdefault(v, len(first)) for v in names] + [-1], np.int64)
            parts.append(remap[c])
        codes[col] = (np.concatenate(parts), np.append(np.arange(len(first)), -1), list(first))  # the codes as they are
    return Table(n, num, codes)


def _strings(col: str, codes: np.ndarray, values: list) -> pl.Series:
    """``values[codes]`` (-1: null) as a String series."""
    dictionary = pl.Series(col, values + [None], dtype=pl.String)
    codes[codes < 0] = len(values)
    return dictionary.gather(pl.Series(codes.view(np.uint32) if codes.dtype == np.int32 else codes.astype(np.uint32)))
