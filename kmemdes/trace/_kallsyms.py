"""Kernel symbols of a trace.dat (its kallsyms section): address -> ``func+0xoff``.

:mod:`kmemdes.trace.tracedat` prints ``call_site`` with it, and
:mod:`kmemdes.trace.printfmt` the ``%pS`` / ``%ps`` conversions of print formats.
"""

from __future__ import annotations

import numpy as np
import polars as pl

__all__ = ["Kallsyms"]

_HEX = np.full(256, 255, np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX[_c] = 10 + _i
_SPACE = np.zeros(256, np.bool_)
_SPACE[list(b" \t\n\v\f\r")] = True  # regex \s of ASCII text


class Kallsyms:
    """Address -> ``func+0xoff`` as libtraceevent ``print_function`` prints ``%pS``.

    ``tep_parse_kallsyms`` drops absolute symbols (``a``/``A``) and names
    starting with ``$``; the lookup (``func_bcmp``) takes the symbol whose
    address is <= addr and whose successor is > addr; the last symbol matches
    only its exact address; a miss prints ``0x<hex>``.  Among symbols at one
    address the first in the file wins (glibc's stable qsort of a list built
    in reverse, then the bsearch rule above).

    A line is ``<hex address> <type> <name>`` (then anything after whitespace);
    lines of 19 bytes or fewer are skipped.  When every longer line has a
    16-digit address (an ASCII file of a 64-bit kernel) the file is read with
    byte arrays and names are decoded only when printed; otherwise with
    Polars regular expressions, which give the same table.

    >>> k = Kallsyms(b"ffffffff81000000 T _stext\\nffffffff81000000 T _text\\nffffffff81000100 t foo\\t[m]\\n"
    ...              b"ffffffff81000200 A abs_sym\\nffffffff81000300 T $x\\nffffffff81000400 T last_one\\n")
    >>> k.format(np.array([0xffffffff81000005, 0xffffffff81000123, 0xffffffff81000401, 0x10], np.uint64))
    ['_stext+0x5', 'foo+0x23', '0xffffffff81000401', '0x10']
    >>> k.format_one(0xffffffff81000400), k.format_one(0xffffffff81000123, offset=False)
    ('last_one+0x0', 'foo')
    """

    def __init__(self, text: bytes):
        self._names: list | None = None
        self._text = text
        if not text:
            self.addr = np.zeros(0, np.uint64)
            self._names = []
            return
        if not self._read_fixed(text):
            self._read_regex(text)

    def _read_fixed(self, text: bytes) -> bool:
        """The byte-array reading; False when a line does not have the fixed layout."""
        b = np.frombuffer(text, np.uint8)
        if b.max() >= 0x80:
            return False
        space = np.flatnonzero(b <= 32)
        space = space[_SPACE[b[space]]]  # the whitespace bytes, \n among them
        ends = space[b[space] == 10]
        starts = np.concatenate(([0], ends + 1))
        ends = np.concatenate((ends, [len(b)]))
        s = starts[ends - starts > 19]
        pad = np.concatenate((b, np.zeros(16, np.uint8)))
        view8 = np.ndarray((len(b) + 9,), ">u8", buffer=pad, strides=(1,))
        words = np.empty((len(s), 2), ">u8")  # the 16 address bytes of each line, in text order
        words[:, 0], words[:, 1] = view8[s], view8[s + 8]
        digits = _HEX[words.view(np.uint8)]
        if (digits == 255).any() or (b[s + 16] != 32).any():
            return False
        addr = ((digits[:, 0::2] << 4) | digits[:, 1::2]).copy().view(">u8").ravel().astype(np.uint64)
        kind, name0 = b[s + 17], b[s + 19]
        # the end of each name: the first whitespace at or after its start (a line's \n at the latest)
        space = np.concatenate((space, [len(b)]))
        name_end = space[np.searchsorted(space, s + 19)]
        ok = ~_SPACE[kind] & (b[s + 18] == 32) & (name_end > s + 19)
        ok &= (kind != ord("a")) & (kind != ord("A")) & (name0 != ord("$"))
        s, addr, name_end = s[ok], addr[ok], name_end[ok]
        order = np.arange(len(s) - 1, -1, -1)[np.argsort(addr[::-1], kind="stable")]  # by address, first-in-file last
        self.addr = addr[order]
        self._name_start, self._name_end = s[order] + 19, name_end[order]
        return True

    def _read_regex(self, text: bytes) -> None:
        lines = pl.Series("l", text.decode("utf-8", "replace").split("\n"))
        df = pl.DataFrame({"l": lines}).filter(pl.col("l").str.len_bytes() > 19)
        df = df.select(
            pl.col("l").str.extract(r"^([0-9a-fA-F]+) ", 1).str.to_integer(base=16, dtype=pl.UInt64, strict=False).alias("addr"),
            pl.col("l").str.extract(r"^[0-9a-fA-F]+ (\S) ", 1).alias("t"),
            pl.col("l").str.extract(r"^[0-9a-fA-F]+ \S (\S+)", 1).alias("name"),
        ).filter(
            pl.col("addr").is_not_null()
            & pl.col("name").is_not_null()
            & ~pl.col("t").is_in(["a", "A"])
            & ~pl.col("name").str.starts_with("$")
        )
        df = df.with_row_index("i").sort(["addr", "i"], descending=[False, True])  # first-in-file last
        self.addr = df["addr"].to_numpy()
        self._names = df["name"].to_list()

    def _name(self, i: int) -> str:
        if self._names is not None:
            return self._names[i]
        return self._text[int(self._name_start[i]) : int(self._name_end[i])].decode("ascii")

    def format_one(self, addr: int, offset: bool = True) -> str:
        """One address as ``%pS`` (``offset``) or ``%ps`` prints it."""
        s = self.format(np.array([addr], np.uint64))[0]
        return s if offset or s.startswith("0x") else s.rsplit("+", 1)[0]

    def format(self, addrs: np.ndarray) -> list:
        """``func+0xoff`` (or ``0x<hex>``) of each address."""
        out = []
        n = len(self.addr)
        idx = np.searchsorted(self.addr, addrs, side="right") - 1 if n else np.full(len(addrs), -1)
        for a, i in zip(addrs.tolist(), idx.tolist()):
            if i < 0 or (i == n - 1 and a != int(self.addr[i])):
                out.append(f"0x{a:x}")
            else:
                out.append(f"{self._name(i)}+0x{a - int(self.addr[i]):x}")
        return out
