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

__all__ = ["Columns", "Table", "factorize"]

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
        strs = {col: _strings(col, codes, values) for col, (codes, values) in self.strcodes.items()}
        for col, parts in self.series.items():
            where, values = self._series_rows(parts)
            values = values.append(pl.Series([None], dtype=pl.String))
            where[where < 0] = len(values) - 1
            strs[col] = values.gather(pl.Series(where.astype(np.uint32))).alias(col)
        df = conform(df.with_columns(**strs) if strs else df)
        if keep is not None and not keep.all():
            df = df.filter(pl.Series(keep)).with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("line"))
        return df

    def _series_rows(self, parts: list) -> tuple[np.ndarray, pl.Series]:
        """(for each row, its position in ``values`` or -1; ``values``: the parts' strings in turn)."""
        where = np.full(self.n, -1, np.int64)
        at = 0
        for idx, s in parts:
            where[idx] = np.arange(at, at + len(idx))
            at += len(idx)
        return where, pl.concat([s.cast(pl.String) for _, s in parts])

    def table(self, keep: np.ndarray | None = None) -> "Table":
        """The columns as a :class:`Table`: every string column as codes into its distinct
        strings, ``keep`` applied as :meth:`frame` applies it.  Consumes the columns."""
        if keep is not None and keep.all():
            keep = None
        num: dict = {}
        codes: dict = {}
        for col, arr in self.num.items():
            v = self.valid.pop(col)
            if v is not None and v.all():
                v = None
            num[col] = (arr, v) if keep is None else (arr[keep], None if v is None else v[keep])
        for col, (c, values) in self.strcodes.items():
            first: dict = {}  # a value put twice (two event ids) keeps its first code
            remap = np.array([-1 if v is None else first.setdefault(v, len(first)) for v in values] + [-1], c.dtype)
            codes[col] = (remap[c], list(first))
        for col, parts in self.series.items():
            where, values = self._series_rows(parts)
            cats = values.drop_nulls().unique(maintain_order=True)
            vc = values.cast(pl.Enum(cats)).to_physical().cast(pl.Int64).fill_null(-1).to_numpy()
            c = np.full(self.n, -1, np.int64)
            c[where >= 0] = vc[where[where >= 0]]
            codes[col] = (c, cats.to_list())
        if keep is not None:
            codes = {col: (c[keep], values) for col, (c, values) in codes.items()}
        self.num, self.valid, self.strcodes, self.series = {}, {}, {}, {}
        n = self.n if keep is None else int(keep.sum())
        if "line" in num:
            num["line"] = (np.arange(1, n + 1, dtype=np.int64), None)
        return Table(n, num, codes)


class Table:
    """The event table as numpy columns: what :class:`kmemdes.trace.kmt.KmtWriter` encodes
    without building a Polars frame.  Numeric columns are (values of every row, 0 where
    null; validity mask or None), string columns (codes, distinct strings), codes -1 where
    null; a column of neither is null in every row."""

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
        c, values = self.codes[col]
        return c[start:stop], values


def _strings(col: str, codes: np.ndarray, values: list) -> pl.Series:
    """``values[codes]`` (-1: null) as a String series."""
    dictionary = pl.Series(col, values + [None], dtype=pl.String)
    codes[codes < 0] = len(values)
    return dictionary.gather(pl.Series(codes.view(np.uint32) if codes.dtype == np.int32 else codes.astype(np.uint32)))
