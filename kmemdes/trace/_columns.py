"""Full-length event-table columns filled from numpy arrays, event type by event type.

The trace.dat reader (:mod:`kmemdes.trace.tracedat`) decodes the records of one event id
at a time; each decoded field is scattered into a column of every row of the table, with
a validity mask, and a string column is kept as codes into a list of distinct values
(formatted once per value) until the table is built.  :func:`factorize` gives those codes.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from kmemdes.trace.schema import EVENT_SCHEMA, conform

__all__ = ["Columns", "factorize"]

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
    """Full-length column arrays with validity masks, filled event type by event type."""

    def __init__(self, n: int):
        self.n = n
        self.num: dict = {}
        self.valid: dict = {}
        self.strcodes: dict = {}  # column -> (codes int32 with -1 = null, values list)
        self.series: dict = {}  # column -> [(row indices, pl.Series of String)]

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
        """Strings ``values[codes]`` (``codes`` an array or one code) at rows ``idx`` of string column ``col``."""
        if col not in self.strcodes:
            self.strcodes[col] = (np.full(self.n, -1, np.int32 if self.n < (1 << 31) else np.int64), [])
        allc, allv = self.strcodes[col]
        base = len(allv)
        allv.extend(values)
        allc[idx] = codes + base

    def put_series(self, col: str, idx: np.ndarray, values: pl.Series) -> None:
        """The strings of ``values`` at rows ``idx`` of string column ``col`` (no other source)."""
        self.series.setdefault(col, []).append((idx, values))

    def frame(self, encoded: bool = False) -> pl.DataFrame:
        """The event table (canonical schema; columns never filled are null).  ``encoded``:
        string columns as an ``Enum`` of their distinct strings instead of ``String``
        (the same values, for :class:`kmemdes.trace.kmt.KmtWriter`)."""
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
        strs = {}
        for col, (codes, values) in self.strcodes.items():
            if encoded:  # an Enum needs distinct categories
                first: dict = {}
                remap = np.array([-1 if v is None else first.setdefault(v, len(first)) for v in values] + [-1], codes.dtype)
                codes, values = remap[codes], list(first)
            strs[col] = _strings(col, codes, values, encoded)
        for col, parts in self.series.items():
            where = np.full(self.n, -1, np.int64)
            at = 0
            for idx, s in parts:
                where[idx] = np.arange(at, at + len(idx))
                at += len(idx)
            values = pl.concat([s.cast(pl.String) for _, s in parts])
            if encoded:
                cats = values.drop_nulls().unique(maintain_order=True)
                values = values.cast(pl.Enum(cats)).append(pl.Series([None], dtype=pl.Enum(cats)))
            else:
                values = values.append(pl.Series([None], dtype=pl.String))
            where[where < 0] = at
            strs[col] = values.gather(pl.Series(where.astype(np.uint32))).alias(col)
        if not encoded:
            return conform(df.with_columns(**strs) if strs else df)
        df = conform(df)  # string columns all null; the encoded ones replace them
        return df.with_columns(**strs) if strs else df


def _strings(col: str, codes: np.ndarray, values: list, encoded: bool) -> pl.Series:
    """``values[codes]`` (-1: null) as a String series, or an Enum of ``values`` (distinct)."""
    dtype = pl.Enum(values) if encoded else pl.String
    dictionary = pl.Series(col, values + [None], dtype=dtype)
    codes[codes < 0] = len(values)
    return dictionary.gather(pl.Series(codes.view(np.uint32) if codes.dtype == np.int32 else codes.astype(np.uint32)))
