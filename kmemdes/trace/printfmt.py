"""Print an event's binary records with its ``print fmt``, as ``trace-cmd report`` does.

An event format file ends with ``print fmt: "<printf format>", <args>``
where the args are C expressions over the record (``REC->field``,
``__get_str(name)``, ``__print_symbolic(...)``, ``__print_flags(...)``,
ternaries, casts, arithmetic).  libtraceevent (``src/event-parse.c``:
``process_arg``, ``eval_num_arg``, ``print_str_arg``, ``pretty_print``)
parses and evaluates them per record; here the same expressions are evaluated
over all records of one event at once (numpy arrays), and each conversion is
formatted once per distinct value.  Used by :mod:`kmemdes.trace.tracedat` for
the ``args`` column of events without typed columns (``rss_stat``, zone
setup, compaction, markers).

>>> _split_args('"a=%d b=%s", REC->a, REC->b ? "x" : "y"')
('a=%d b=%s', ['REC->a', 'REC->b ? "x" : "y"'])
>>> _Parser("(1 << 3) | 2").parse().eval(None)
10
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl

from kmemdes.trace._columns import factorize

__all__ = ["render_print_fmt"]

_CONV_RE = re.compile(r"%([-+ #0]*)(\d+|\*)?(?:\.(\d+))?(hh|h|ll|l|z|j|t|L)?(?:(p)([SsFfBRrMmIiUhK]?)|([diouxXcsfFeEgG%]))")
_TOKEN_RE = re.compile(
    r"\s*(?:(0[xX][0-9a-fA-F]+|\d+)[uUlL]*|(\"(?:[^\"\\]|\\.)*\")|('(?:[^'\\]|\\.)')|"
    r"(->|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^~!<>?:(),{}\[\].])|([A-Za-z_][A-Za-z0-9_]*))"
)
_TYPE_WORDS = {
    "unsigned", "signed", "int", "long", "short", "char", "void", "struct", "const", "bool", "u8", "u16",
    "u32", "u64", "s8", "s16", "s32", "s64", "gfp_t", "size_t", "ssize_t", "pid_t", "__u8", "__u16", "__u32",
    "__u64", "__s8", "__s16", "__s32", "__s64", "uint8_t", "uint16_t", "uint32_t", "uint64_t", "int8_t",
    "int16_t", "int32_t", "int64_t", "dma_addr_t", "phys_addr_t", "loff_t", "ino_t", "dev_t", "sector_t",
}


class Unsupported(Exception):
    """The print format uses something this evaluator does not know."""


def _split_args(fmt: str):
    """Split ``"format", arg, arg`` at top-level commas."""
    fmt = fmt.strip()
    if not fmt.startswith('"'):
        raise Unsupported("print fmt does not start with a string")
    i, n = 1, len(fmt)
    while i < n and fmt[i] != '"':
        i += 2 if fmt[i] == "\\" else 1
    text = bytes(fmt[1:i], "utf-8").decode("unicode_escape")
    rest = fmt[i + 1 :]
    args, depth, cur, q = [], 0, [], None
    for ch in rest:
        if q:
            cur.append(ch)
            if ch == q and (len(cur) < 2 or cur[-2] != "\\"):
                q = None
            continue
        if ch in "\"'":
            q = ch
        elif ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        args.append("".join(cur).strip())
    if args and args[0] == "":
        args = args[1:]
    return text, args


# ------------------------------------------------------------------ expression tree


class _StrArray:
    """String values of records as codes into a list of distinct strings (``values[codes]``)."""

    def __init__(self, codes: np.ndarray, values: list):
        self.codes, self.values = codes, values

    @classmethod
    def of(cls, v, n: int) -> "_StrArray":
        return v if isinstance(v, _StrArray) else cls(np.zeros(n, np.int64), [v])

    def objects(self) -> np.ndarray:
        """The strings as an object array, one per record."""
        return np.asarray(self.values or [""], dtype=object)[self.codes]


def _objects(v):
    return v.objects() if isinstance(v, _StrArray) else v


class _Ctx:
    """Evaluation context: the records of one event."""

    def __init__(self, ev, buf, off, size, big, kallsyms, problems):
        self.ev, self.buf, self.off, self.size, self.big = ev, buf, off, size, big
        self.kallsyms, self.problems = kallsyms, problems
        self.n = len(off)


class _Num:
    def __init__(self, v, unsigned=False):
        self.v, self.unsigned = v, unsigned

    def eval(self, ctx):
        return self.v


class _Str:
    def __init__(self, s):
        self.s = s

    def eval(self, ctx):
        return self.s


class _Field:
    def __init__(self, name):
        self.name = name
        self.unsigned = True

    def eval(self, ctx):
        from kmemdes.trace._ringbuf import _read_field, _read_strings

        f = ctx.ev.fields.get(self.name) or ctx.ev.common.get(self.name)
        if f is None:
            raise Unsupported(f"no field {self.name}")
        if f.is_string or f.data_loc or f.rel_loc:
            codes, values = _read_strings(ctx.buf, ctx.off, ctx.size, f, ctx.big, ctx.problems)
            return _StrArray(codes, [("(null)" if x is None else x) for x in values])
        if f.elem or f.size not in (1, 2, 4, 8):
            raise Unsupported(f"array field {self.name}")
        self.unsigned = not f.signed
        v = _read_field(ctx.buf, ctx.off, f, ctx.big)
        return v.view(np.int64) if v.dtype == np.uint64 else v.astype(np.int64)


class _Unary:
    def __init__(self, op, a):
        self.op, self.a = op, a

    def eval(self, ctx):
        v = _objects(self.a.eval(ctx))
        if self.op == "-":
            return -v
        if self.op == "+":
            return v
        if self.op == "~":
            return ~v
        if self.op == "!":
            return _lnot(v)
        raise Unsupported(self.op)


def _lnot(v):
    return (v == 0).astype(np.int64) if isinstance(v, np.ndarray) else int(v == 0)


def _truth(v):
    if isinstance(v, _StrArray):
        return np.array([bool(x) for x in v.values] or [False])[v.codes]
    if isinstance(v, np.ndarray) and v.dtype == object:
        return np.array([bool(x) for x in v])
    return v != 0 if isinstance(v, np.ndarray) else bool(v)


_CMP = {"<": np.less, ">": np.greater, "<=": np.less_equal, ">=": np.greater_equal}


class _Bin:
    def __init__(self, op, a, b):
        self.op, self.a, self.b = op, a, b

    def eval(self, ctx):
        op = self.op
        a = self.a.eval(ctx)
        if op in ("&&", "||"):
            b = self.b.eval(ctx)
            r = (_truth(a) & _truth(b)) if op == "&&" else (_truth(a) | _truth(b))
            return r.astype(np.int64) if isinstance(r, np.ndarray) else int(r)
        a, b = _objects(a), _objects(self.b.eval(ctx))
        unsigned = getattr(self.a, "unsigned", False) or getattr(self.b, "unsigned", False)
        if op in _CMP or op in ("==", "!="):
            if unsigned:
                a, b = _u64(a), _u64(b)
            if op == "==":
                r = a == b
            elif op == "!=":
                r = a != b
            else:
                r = _CMP[op](a, b)
            return r.astype(np.int64) if isinstance(r, np.ndarray) else int(r)
        with np.errstate(all="ignore"):
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return a * b
            if op == "/":
                return _u64(a) // _u64(b) if unsigned else a // b
            if op == "%":
                return a % b
            if op == "&":
                return a & b
            if op == "|":
                return a | b
            if op == "^":
                return a ^ b
            if op == "<<":
                return _wrap(_u64(a) << _u64(b))
            if op == ">>":
                return _wrap(_u64(a) >> _u64(b)) if unsigned else a >> b
        raise Unsupported(op)


def _u64(v):
    if isinstance(v, np.ndarray):
        return v.astype(np.int64).view(np.uint64)
    return np.uint64(int(v) & 0xFFFFFFFFFFFFFFFF)


def _wrap(v):
    if isinstance(v, np.ndarray):
        return v.view(np.int64)
    v = int(v) & 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v >> 63 else v


class _Cond:
    def __init__(self, c, a, b):
        self.c, self.a, self.b = c, a, b
        self.unsigned = getattr(a, "unsigned", False)

    def eval(self, ctx):
        c = _truth(self.c.eval(ctx))
        a, b = self.a.eval(ctx), self.b.eval(ctx)
        if not isinstance(c, np.ndarray):
            return a if c else b
        if isinstance(a, _StrArray) or isinstance(b, _StrArray):
            if not all(isinstance(x, (_StrArray, str)) for x in (a, b)):
                return np.where(c, _objects(a), _objects(b))
            a, b = _StrArray.of(a, len(c)), _StrArray.of(b, len(c))
            return _StrArray(np.where(c, a.codes, b.codes + len(a.values)), a.values + b.values)
        return np.where(c, a, b)


class _Cast:
    _SIZES = {"char": 1, "short": 2, "int": 4, "long": 8, "u8": 1, "u16": 2, "u32": 4, "u64": 8, "s8": 1, "s16": 2, "s32": 4, "s64": 8}

    def __init__(self, words, a):
        self.words, self.a = words, a
        self.unsigned = "unsigned" in words or "*" in words or any(w.startswith(("u", "__u", "size_t", "gfp_t")) for w in words)

    def eval(self, ctx):
        v = self.a.eval(ctx)
        if "*" in self.words:
            return v
        v = _objects(v)
        if not isinstance(v, (np.ndarray, int)):
            return v
        size = next((self._SIZES[w] for w in self.words if w in self._SIZES), 8)
        if size < 8 and isinstance(v, (np.ndarray, int)):
            mask = (1 << (8 * size)) - 1
            v = v & mask
            if not self.unsigned:
                sign = 1 << (8 * size - 1)
                v = (v ^ sign) - sign
        return v


class _Call:
    def __init__(self, name, args):
        self.name, self.args = name, args
        self.unsigned = False

    def eval(self, ctx):
        if self.name in ("__get_str", "__get_rel_str"):
            return _Field(self.args[0].name if isinstance(self.args[0], _Field) else self.args[0].s).eval(ctx)
        raise Unsupported(self.name)


class _Symbolic:
    """``__print_symbolic`` / ``__print_flags`` (libtraceevent ``print_str_arg``)."""

    def __init__(self, kind, val, delim, table):
        self.kind, self.val, self.delim, self.table = kind, val, delim, table

    def eval(self, ctx):
        v = self.val.eval(ctx)
        v = _objects(v)
        vals = v if isinstance(v, np.ndarray) else np.full(ctx.n, v, np.int64)
        if vals.dtype.kind in "iu":
            uniq, codes = factorize(vals)
        else:
            uniq, codes = np.unique(vals, return_inverse=True)
            codes = codes.ravel()
        return _StrArray(codes, [self._one(int(x)) for x in uniq.tolist()])

    def _one(self, x: int) -> str:
        table = [(k.eval(None), s) for k, s in self.table]
        if self.kind == "__print_symbolic":
            for k, s in table:
                if k == x:
                    return s
            return f"0x{x & 0xFFFFFFFFFFFFFFFF:x}"
        parts = []
        rest = x & 0xFFFFFFFFFFFFFFFF
        for k, s in table:
            k &= 0xFFFFFFFFFFFFFFFF
            if k == 0 and x == 0:
                return s
            if k and rest & k == k:
                parts.append(s)
                rest &= ~k
        if rest:
            parts.append(f"0x{rest:x}")
        return self.delim.join(parts)


class _Parser:
    """Recursive descent over C expression tokens (the subset event formats use)."""

    def __init__(self, text: str):
        self.toks = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _TOKEN_RE.match(text, pos)
            if not m or m.end() == pos:
                if text[pos:].strip() == "":
                    break
                raise Unsupported(f"cannot tokenize {text[pos:pos + 20]!r}")
            pos = m.end()
            num, s, ch, op, ident = m.groups()
            if num is not None:
                full = m.group(0).strip()
                self.toks.append(("num", int(num, 0), "u" in full.lower() or num.lower().startswith("0x")))
            elif s is not None:
                self.toks.append(("str", bytes(s[1:-1], "utf-8").decode("unicode_escape")))
            elif ch is not None:
                self.toks.append(("num", ord(bytes(ch[1:-1], "utf-8").decode("unicode_escape")), False))
            elif op is not None:
                self.toks.append(("op", op))
            else:
                self.toks.append(("id", ident))
        self.i = 0

    def peek(self, k=0):
        return self.toks[self.i + k] if self.i + k < len(self.toks) else ("end", None)

    def take(self, want=None):
        t = self.peek()
        if want is not None and t[1] != want:
            raise Unsupported(f"expected {want!r}, got {t[1]!r}")
        self.i += 1
        return t

    def parse(self):
        e = self.ternary()
        if self.peek()[0] != "end":
            raise Unsupported(f"trailing {self.peek()[1]!r}")
        return e

    def ternary(self):
        c = self.binary(0)
        if self.peek() == ("op", "?"):
            self.take()
            a = self.ternary()
            self.take(":")
            b = self.ternary()
            return _Cond(c, a, b)
        return c

    _LEVELS = [("||",), ("&&",), ("|",), ("^",), ("&",), ("==", "!="), ("<", ">", "<=", ">="), ("<<", ">>"), ("+", "-"), ("*", "/", "%")]

    def binary(self, level):
        if level == len(self._LEVELS):
            return self.unary()
        a = self.binary(level + 1)
        while self.peek()[0] == "op" and self.peek()[1] in self._LEVELS[level]:
            op = self.take()[1]
            a = _Bin(op, a, self.binary(level + 1))
        return a

    def _is_cast(self):
        if self.peek() != ("op", "("):
            return False
        j = self.i + 1
        words = []
        while j < len(self.toks) and self.toks[j] != ("op", ")"):
            t = self.toks[j]
            if t[0] == "id" and (t[1] in _TYPE_WORDS or (words and words[-1] == "struct") or t[1].endswith("_t")):
                words.append(t[1])
            elif t == ("op", "*"):
                words.append("*")
            else:
                return False
            j += 1
        return bool(words) and j < len(self.toks)

    def unary(self):
        t = self.peek()
        if t[0] == "op" and t[1] in ("-", "+", "~", "!"):
            self.take()
            return _Unary(t[1], self.unary())
        if self._is_cast():
            self.take("(")
            words = []
            while self.peek() != ("op", ")"):
                words.append(self.take()[1])
            self.take(")")
            return _Cast(words, self.unary())
        return self.postfix()

    def postfix(self):
        t = self.take()
        if t[0] == "num":
            return _Num(t[1], t[2])
        if t[0] == "str":
            s = t[1]
            while self.peek()[0] == "str":
                s += self.take()[1]
            return _Str(s)
        if t == ("op", "("):
            e = self.ternary()
            self.take(")")
            return e
        if t[0] == "id":
            name = t[1]
            if name == "REC" and self.peek() == ("op", "->"):
                self.take()
                return _Field(self.take()[1])
            if self.peek() == ("op", "("):
                self.take()
                if name in ("__print_symbolic", "__print_flags"):
                    val = self.ternary()
                    self.take(",")
                    delim = ""
                    if name == "__print_flags":
                        delim = self.take()[1]
                        self.take(",")
                    table = []
                    while self.peek() == ("op", "{"):
                        self.take()
                        k = self.ternary()
                        self.take(",")
                        s = self.take()
                        self.take("}")
                        if s[0] == "str":
                            table.append((k, s[1]))
                        if self.peek() == ("op", ","):
                            self.take()
                    self.take(")")
                    return _Symbolic(name, val, delim, table)
                args = []
                while self.peek() != ("op", ")"):
                    args.append(self.ternary())
                    if self.peek() == ("op", ","):
                        self.take()
                self.take(")")
                return _Call(name, args)
            raise Unsupported(f"identifier {name}")
        raise Unsupported(f"unexpected {t[1]!r}")


# ------------------------------------------------------------------ formatting


def _fmt_one(conv: re.Match, v, kallsyms, long_size: int = 8) -> str:
    flags, width, prec, length, pch, ext, ch = conv.groups()
    ch = ch or pch
    spec = "%" + (flags or "") + (width or "") + ("." + prec if prec is not None else "")
    if ch == "s":
        return (spec + "s") % ("(null)" if v is None else v)
    if ch == "c":
        return (spec + "c") % chr(int(v) & 0xFF)
    x = int(v)
    bits = 64 if length in ("l", "ll", "z", "j", "t", "L") or ch == "p" else 16 if length == "h" else 8 if length == "hh" else 32
    x &= (1 << bits) - 1
    if ch == "p":
        if ext in ("S", "s", "F", "f", "B"):
            return kallsyms.format_one(x, offset=ext in ("S", "F", "B"))
        return (spec + "s") % (f"0x{x:x}" if x else "(nil)")
    if ch in "di":
        if x >> (bits - 1):
            x -= 1 << bits
        return (spec + "d") % x
    return (spec + ch) % x


def render_print_fmt(ev, buf, off, size, big, kallsyms, problems) -> pl.Series:
    """The printed body of each record (libtraceevent ``tep_print_event`` ``%s`` of INFO),
    as a String series.

    Falls back to ``field=value`` pairs (``trace-cmd report -R`` style) when the
    print format uses something not supported, counting a problem.
    """
    n = len(off)
    if n == 0:
        return pl.Series("s", [], dtype=pl.String)
    ctx = _Ctx(ev, buf, off, size, big, kallsyms, problems)
    try:
        text, args = _split_args(ev.print_fmt)
        exprs = [_Parser(a).parse() for a in args]
        pieces: list = []
        pos = 0
        ai = 0
        for m in _CONV_RE.finditer(text):
            pieces.append(text[pos : m.start()])
            pos = m.end()
            if m.group(7) == "%":
                pieces.append("%")
                continue
            if m.group(2) == "*":
                raise Unsupported("* width")
            if ai >= len(exprs):
                raise Unsupported("more conversions than args")
            v = exprs[ai].eval(ctx)
            ai += 1
            pieces.append(_format_column(m, v, kallsyms))
        pieces.append(text[pos:])
        cols = [pl.lit(p) if isinstance(p, str) else p for p in pieces if not (isinstance(p, str) and p == "")]
        if not cols:
            return pl.Series("s", [""] * n, dtype=pl.String)
        out = pl.select(pl.concat_str(cols).str.strip_suffix("\n").alias("s")).to_series()
        if out.len() == 1 and n > 1:
            out = out.new_from_index(0, n)
        return out
    except (Unsupported, ValueError, TypeError, OverflowError, IndexError, ZeroDivisionError) as e:
        problems.setdefault("print_fmt_unsupported", {"count": 0, "lines": [], "example": f"{ev.name}: {e}"})
        problems["print_fmt_unsupported"]["count"] += n
        return pl.Series("s", _raw_fields(ctx), dtype=pl.String)


_INT_BITS = {"hh": 8, "h": 16, None: 32}


def _format_column(m, v, kallsyms):
    """One conversion of every record: a string (the same for all) or a String series.

    Each distinct value is formatted once, in ascending order (as ``np.unique`` gives
    them); plain ``%d``/``%i``/``%u`` of integers are formatted by Polars.
    """
    if isinstance(v, _StrArray):
        strs = {x: _fmt_one(m, x, kallsyms) for x in sorted(set(v.values))}
        return pl.Series("s", [strs[x] for x in v.values], dtype=pl.String).gather(v.codes)
    if not isinstance(v, np.ndarray):
        return _fmt_one(m, v, kallsyms)
    flags, width, prec, length, _, _, ch = m.groups()
    if v.dtype.kind in "iub" and ch in ("d", "i", "u") and not flags and width is None and prec is None:
        x = v.astype(np.int64)  # uint64 wraps: the same bits
        bits = _INT_BITS.get(length, 64)
        if bits < 64:
            x &= (1 << bits) - 1
            if ch != "u":
                sign = 1 << (bits - 1)
                x = (x ^ sign) - sign
        elif ch == "u":
            x = x.view(np.uint64)
        return pl.Series("s", x).cast(pl.String)
    if v.dtype.kind in "iub":
        uniq, codes = factorize(v.astype(np.int64) if v.dtype.kind == "b" else v)
    else:
        uniq, codes = np.unique(v, return_inverse=True)
    strs = pl.Series("s", [_fmt_one(m, x, kallsyms) for x in uniq.tolist()], dtype=pl.String)
    return strs.gather(np.asarray(codes).ravel())


def _raw_fields(ctx) -> list:
    from kmemdes.trace._ringbuf import _read_field

    parts = []
    for f in ctx.ev.fields.values():
        if f.size in (1, 2, 4, 8) and not (f.elem or f.data_loc or f.rel_loc):
            parts.append((f.name, _read_field(ctx.buf, ctx.off, f, ctx.big).tolist()))
    return [" ".join(f"{name}={vals[i]}" for name, vals in parts) for i in range(ctx.n)]
