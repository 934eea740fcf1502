"""One self-contained HTML page: sections, tables, captions and Plotly figures, offline.

Plotly's JavaScript is embedded once in a ``<script>`` element; every figure is stored as
JSON in a ``<script type="application/json">`` element and drawn with ``Plotly.newPlot``
when the page loads (no CDN, no web fonts, no network).  Numeric arrays travel as
Plotly's base64 typed arrays, which keeps a long run's report small.

Escaping, the rule of this module: every string that comes from a run (trace comm, call
site, cache and workload names, config values, notes) goes through :func:`esc` before it
is written into HTML and through :func:`ptext` before it is put into a figure (Plotly
renders a subset of HTML in labels and decodes entities, so escaped text is shown
literally and never interpreted).  Figure JSON has ``<``, ``>``, ``&`` and the JavaScript
line separators written as ``\\uXXXX`` escapes, so no data can close the ``<script>``
element it lives in.  Trusted markup built here is wrapped in :class:`Raw`.

A small error hook records JavaScript errors (and failed figures) into the element
``#kmemdes-js-errors``, visible on the page, which the browser test reads.

>>> esc('<script>alert(1)</script>')
'&lt;script&gt;alert(1)&lt;/script&gt;'
>>> fig_json({"data": [{"name": "</script>"}]})
'{"data":[{"name":"\\\\u003c/script\\\\u003e"}]}'
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from kmemdes import __version__

__all__ = ["Raw", "Page", "esc", "ptext", "fig_json", "table_html", "fmt_num", "plotly_js"]

_PLOTLY_JS: Optional[str] = None


def plotly_js() -> str:
    """The plotly.js bundle shipped with the plotly package (cached)."""
    global _PLOTLY_JS
    if _PLOTLY_JS is None:
        from plotly.offline import get_plotlyjs

        _PLOTLY_JS = get_plotlyjs()
    return _PLOTLY_JS


class Raw(str):
    """Markup produced by this package: written as is (everything else is escaped)."""


def esc(value: Any) -> str:
    """HTML-escape any value for element content or a quoted attribute (Raw passes through)."""
    if isinstance(value, Raw):
        return str(value)
    return html.escape("" if value is None else str(value), quote=True)


def ptext(value: Any) -> str:
    """A string for a Plotly label/hover text: HTML-escaped, so Plotly shows it literally."""
    return html.escape("" if value is None else str(value), quote=False)


def _typed(a: np.ndarray) -> Any:
    if a.dtype == object or a.dtype.kind in "USO":
        return a.tolist()
    if a.dtype.kind == "b":
        a = a.astype(np.uint8)
    if a.dtype.kind in "iu" and a.dtype.itemsize == 8:
        if a.size == 0 or (a.min() >= -(2 ** 31) and a.max() < 2 ** 31):
            a = a.astype(np.int32)
        else:
            a = a.astype(np.float64)
    code = {"i1": "i1", "u1": "u1", "i2": "i2", "u2": "u2", "i4": "i4", "u4": "u4", "f4": "f4", "f8": "f8"}[
        a.dtype.str[1:]]
    spec = {"dtype": code, "bdata": base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")}
    if a.ndim > 1:
        spec["shape"] = ", ".join(str(s) for s in a.shape)
    return spec


def _default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return _typed(o)
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"cannot encode {type(o).__name__} in a figure")


_JSON_ESC = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def fig_json(fig: Any) -> str:
    """Compact JSON of a Plotly figure (go.Figure or dict), safe inside a ``<script>`` element.

    NaN becomes ``null`` (JSON has no NaN); the default template is dropped (plotly.js's
    own defaults apply) to keep every figure small.
    """
    d = fig.to_plotly_json() if hasattr(fig, "to_plotly_json") else fig
    if isinstance(d.get("layout"), dict):
        d["layout"].pop("template", None)
    s = json.dumps(_clean(d), default=_default, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return s.translate(_JSON_ESC)


def _clean(o: Any) -> Any:
    """Non-finite Python floats -> None (numpy arrays keep NaN: plotly.js reads it as a gap)."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, float) and not np.isfinite(o):
        return None
    return o


def fmt_num(v: Any, digits: int = 3) -> str:
    """A number for a table cell: integers with thousands separators, floats to ``digits`` significant digits.

    >>> fmt_num(1234567), fmt_num(0.123456), fmt_num(12.5), fmt_num(None), fmt_num(3.0)
    ('1,234,567', '0.123', '12.5', '–', '3')
    """
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if f == int(f) and abs(f) < 1e15:
            return f"{int(f):,}"
        if abs(f) >= 10 ** digits:
            return f"{f:,.0f}"
        return f"{f:.{digits}g}"
    return str(v)


def table_html(headers: Optional[Sequence[Any]], rows: Iterable[Sequence[Any]], *, cls: str = "",
               numeric_from: int = 1, title: Any = None) -> Raw:
    """An HTML table; cells are escaped unless :class:`Raw`; columns from ``numeric_from`` right-aligned.

    ``headers`` None: no header row (a key/value table).
    """
    out = [f'<table class="{esc(cls)}">']
    if title is not None:
        out.append(f"<caption>{esc(title)}</caption>")
    if headers:
        out.append("<thead><tr>" + "".join(f'<th{" class=num" if i >= numeric_from else ""}>{esc(h)}</th>'
                                            for i, h in enumerate(headers)) + "</tr></thead>")
    out.append("<tbody>")
    for r in rows:
        out.append("<tr>" + "".join(
            f'<td{" class=num" if i >= numeric_from else ""}>{c if isinstance(c, Raw) else esc(fmt_num(c) if not isinstance(c, str) else c)}</td>'
            for i, c in enumerate(r)) + "</tr>")
    out.append("</tbody></table>")
    return Raw("".join(out))


_CSS = """
:root{--fg:#1d2330;--muted:#5b6475;--line:#d9dee7;--bg:#ffffff;--soft:#f4f6fa;--accent:#2f5fb3;--bad:#b3261e;--good:#1e7a3a}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--bg)}
header{padding:18px 28px;border-bottom:1px solid var(--line);background:var(--soft)}
header h1{margin:0 0 4px;font-size:22px}
header .sub{color:var(--muted)}
nav{padding:8px 28px;border-bottom:1px solid var(--line);font-size:14px;position:sticky;top:0;background:#fff;z-index:10}
nav a{margin-right:14px;color:var(--accent);text-decoration:none;white-space:nowrap}
main{padding:8px 28px 40px;max-width:1500px}
section{margin:18px 0 30px}
h2{font-size:19px;border-bottom:2px solid var(--line);padding-bottom:4px;margin:26px 0 10px}
h3{font-size:16px;margin:18px 0 6px}
p.lead{color:var(--muted);margin:4px 0 10px}
.fig{border:1px solid var(--line);border-radius:6px;padding:6px 8px 8px;margin:14px 0}
.fig .title{font-weight:600;margin:2px 4px}
.fig .how{color:var(--muted);font-size:13.5px;margin:2px 4px 4px}
.fig .note{color:#7a4b00;background:#fff6e0;border-radius:4px;font-size:12.5px;margin:4px;padding:2px 6px;display:inline-block}
.plot{width:100%;min-height:200px}
table{border-collapse:collapse;margin:8px 0 14px;font-size:13.5px}
caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border:1px solid var(--line);padding:3px 8px;vertical-align:top}
th{background:var(--soft);text-align:left}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.bad{color:var(--bad);font-weight:600}
td.good{color:var(--good);font-weight:600}
.kv td:first-child{color:var(--muted)}
details{border:1px solid var(--line);border-radius:6px;padding:6px 10px;margin:10px 0}
summary{cursor:pointer;font-weight:600}
pre{background:var(--soft);padding:8px;overflow:auto;font:12.5px/1.35 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;max-height:480px}
.warn{background:#fff6e0;border-left:4px solid #e0a100;padding:6px 10px;margin:10px 0}
#kmemdes-js-errors{background:#fde7e7;color:var(--bad);border:1px solid var(--bad);padding:6px 10px;margin:10px 28px;white-space:pre-wrap}
#kmemdes-js-errors:empty{display:none}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:10px}
footer{color:var(--muted);font-size:12.5px;padding:10px 28px;border-top:1px solid var(--line)}
"""

# Installed before plotly.js: errors of any later script land in #kmemdes-js-errors.
_ERROR_HOOK = """
(function(){
  function rec(msg){var el=document.getElementById('kmemdes-js-errors');
    if(el){el.textContent+=msg+'\\n';} else {(window.kmemdesPending=window.kmemdesPending||[]).push(msg);}}
  window.kmemdesRecordError=rec;
  window.addEventListener('error',function(e){rec('JS error: '+(e.message||e.type)+(e.filename?' at '+e.filename+':'+e.lineno:''));});
  window.addEventListener('unhandledrejection',function(e){rec('JS error (promise): '+(e.reason&&e.reason.message||e.reason));});
})();
"""

_RENDER = """
(function(){
  var rec=window.kmemdesRecordError;
  (window.kmemdesPending||[]).forEach(rec);
  var divs=document.querySelectorAll('div.plot[data-fig]');
  var done=0, failed=0;
  function finish(){ if(done+failed===divs.length){document.body.setAttribute('data-kmemdes-rendered', String(done));
    document.body.setAttribute('data-kmemdes-failed', String(failed));} }
  if(typeof Plotly==='undefined'){rec('plotly.js did not load');return;}
  divs.forEach(function(div){
    try{
      var spec=JSON.parse(document.getElementById(div.getAttribute('data-fig')).textContent);
      var cfg={responsive:true,displaylogo:false,modeBarButtonsToRemove:['sendDataToCloud'],toImageButtonOptions:{format:'png',scale:2}};
      Plotly.newPlot(div,spec.data,spec.layout||{},cfg).then(function(){done++;finish();},
        function(err){failed++;rec('figure '+div.id+' failed: '+err);finish();});
    }catch(err){failed++;rec('figure '+div.id+' failed: '+err);finish();}
  });
  if(divs.length===0){finish();}
})();
"""


@dataclass
class Page:
    """An HTML page under construction: call the add_* methods in reading order, then :meth:`render`."""

    title: str
    subtitle: str = ""
    _body: list[str] = field(default_factory=list)
    _nav: list[tuple[str, str]] = field(default_factory=list)
    _nfig: int = 0

    def section(self, anchor: str, title: str, lead: str = "") -> None:
        """Start a section (listed in the navigation bar)."""
        if self._nav:
            self._body.append("</section>")
        self._nav.append((anchor, title))
        self._body.append(f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>')
        if lead:
            self._body.append(f'<p class="lead">{esc(lead)}</p>')

    def h3(self, text: str) -> None:
        self._body.append(f"<h3>{esc(text)}</h3>")

    def html(self, markup: Raw) -> None:
        """Append trusted markup (built with :func:`esc` / :func:`table_html`)."""
        if not isinstance(markup, Raw):
            raise TypeError("Page.html takes Raw markup; escape untrusted text with esc()")
        self._body.append(str(markup))

    def text(self, text: str, cls: str = "") -> None:
        """Append a paragraph of (escaped) text."""
        self._body.append(f'<p class="{esc(cls)}">{esc(text)}</p>')

    def figure(self, fig: Any, title: str, how: str, note: str = "", height: Optional[int] = None) -> None:
        """A figure with its title, a one-line explanation of how to read it, and an optional note
        (downsampling, truncation) shown next to it."""
        self._nfig += 1
        fid = f"fig{self._nfig}"
        if height is None:
            h = fig.layout.height if hasattr(fig, "layout") else None
            height = int(h) if h else 420
        parts = [f'<div class="fig"><div class="title">{esc(title)}</div><div class="how">{esc(how)}</div>']
        if note:
            parts.append(f'<div class="note">{esc(note)}</div>')
        parts.append(f'<div class="plot" id="{fid}" data-fig="{fid}-data" style="height:{height}px"></div>')
        parts.append(f'<script type="application/json" id="{fid}-data">{fig_json(fig)}</script></div>')
        self._body.append("".join(parts))

    def details(self, summary: str, markup: Raw, open_: bool = False) -> None:
        """A collapsible block."""
        self._body.append(f'<details{" open" if open_ else ""}><summary>{esc(summary)}</summary>{esc(markup)}</details>')

    @property
    def figures(self) -> int:
        return self._nfig

    def render(self) -> str:
        """The whole page as one string (deterministic: no dates, no random ids)."""
        body = list(self._body)
        if self._nav:
            body.append("</section>")
        nav = " ".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t in self._nav)
        return "".join([
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<meta name=\"generator\" content=\"kmemdes {esc(__version__)}\">",
            f"<title>{esc(self.title)}</title><style>{_CSS}</style>",
            f"<script>{_ERROR_HOOK}</script></head>\n<body>",
            '<div id="kmemdes-js-errors"></div>',
            f"<header><h1>{esc(self.title)}</h1><div class=\"sub\">{esc(self.subtitle)}</div></header>",
            f"<nav>{nav}</nav><main>\n",
            "\n".join(body),
            f"\n</main><footer>Generated by kmemdes {esc(__version__)}. Self-contained: works offline; "
            "plotly.js is embedded below. Hover a figure for values; drag to zoom, double-click to reset.</footer>\n",
            f"<script>{plotly_js()}</script>\n<script>{_RENDER}</script>\n</body></html>\n",
        ])
