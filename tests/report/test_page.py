"""kmemdes/report/page.py: escaping, figure JSON, the self-contained page shell."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import plotly.graph_objects as go
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmemdes.report.page import Page, Raw, esc, fig_json, plotly_js, ptext, table_html

EVIL = "<script>alert(1)</script>"


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_figure_json_cannot_close_its_script_element_and_round_trips(s):
    js = fig_json({"data": [{"name": s, "x": [1, 2]}], "layout": {"title": {"text": s}}})
    assert "<" not in js and ">" not in js and "&" not in js and "\u2028" not in js and "\u2029" not in js
    back = json.loads(js)
    assert back["data"][0]["name"] == s and back["layout"]["title"]["text"] == s


def test_numpy_arrays_travel_as_typed_arrays():
    a = np.array([1.5, np.nan, -2.0], dtype=np.float32)
    big = np.array([0, 2 ** 40], dtype=np.int64)
    small = np.array([3, 4], dtype=np.int64)
    d = json.loads(fig_json({"data": [{"y": a, "x": big, "z": small, "t": np.array(["a<b"], dtype=object)}],
                             "layout": {"v": float("nan")}}))
    y = d["data"][0]["y"]
    assert y["dtype"] == "f4"
    dec = np.frombuffer(base64.b64decode(y["bdata"]), dtype=np.float32)
    assert dec[0] == 1.5 and np.isnan(dec[1]) and dec[2] == -2.0
    assert d["data"][0]["x"]["dtype"] == "f8"      # beyond int32: no JS Int64Array, so float64
    assert d["data"][0]["z"]["dtype"] == "i4"
    assert d["data"][0]["t"] == ["a<b"]
    assert d["layout"]["v"] is None


def test_plotly_figure_template_is_dropped():
    js = fig_json(go.Figure(go.Scatter(x=[1], y=[2])))
    assert '"template"' not in js


def test_escaping_helpers():
    assert esc(EVIL) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert esc('a"b') == "a&quot;b"
    assert esc(Raw("<b>x</b>")) == "<b>x</b>"
    assert ptext("<b>x</b> & y") == "&lt;b&gt;x&lt;/b&gt; &amp; y"
    t = table_html(["h<1>"], [[EVIL, 1234567, Raw("<i>ok</i>")]])
    assert EVIL not in t and "&lt;script&gt;" in t and "1,234,567" in t and "<i>ok</i>" in t


def test_page_refuses_unescaped_markup():
    p = Page("t")
    with pytest.raises(TypeError):
        p.html("<b>not Raw</b>")


def test_page_is_self_contained_with_plotly_once():
    p = Page(EVIL, EVIL)
    p.section("s", EVIL, EVIL)
    p.figure(go.Figure(go.Scatter(x=[1, 2], y=[3, 4], name=ptext(EVIL))), EVIL, EVIL, EVIL)
    p.details(EVIL, Raw(f"<pre>{esc(EVIL)}</pre>"))
    html = p.render()
    assert html.count(plotly_js()) == 1
    assert EVIL not in html
    assert html.count("<script") == html.count("</script>")
    # no external resources: no src/href to another document, no <link>, no @import / url()
    assert not re.search(r"<script[^>]*\bsrc=", html)
    assert "<link" not in html
    head = html[: html.index(plotly_js())]
    assert not re.search(r"(src|href)=\"(?!#)", head)
    assert "@import" not in head and "url(" not in head
    assert 'id="kmemdes-js-errors"' in html
    assert Page("x").render() == Page("x").render()
