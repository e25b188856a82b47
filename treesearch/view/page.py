"""The one self-contained HTML file: the viewer's script and styles inline, the data as
JSON in ``<script type="application/json">`` blocks (one per round, parsed when shown).

Every text that reaches the page (step texts are model output) goes in as JSON with
``<``, ``>`` and ``&`` written as ``\\u003c``/``\\u003e``/``\\u0026``, so no data can
close its script block; the script shows data with ``textContent`` only. A
Content-Security-Policy allows the one inline script (by its hash) and inline styles,
and nothing else: the page makes no network request.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from importlib import resources
from pathlib import Path

from treesearch.utils.atomic import write_text


def _asset(name: str) -> str:
    return resources.files("treesearch.view").joinpath("static", name).read_text(encoding="utf-8")


def embed_json(obj) -> str:
    """``obj`` as JSON safe inside a ``<script type="application/json">`` block."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def build_html(data: dict) -> str:
    """The page for ``treesearch.view.sources.page_data`` output."""
    script = _asset("viewer.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    csp = (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
           f"img-src data:; connect-src 'none'; form-action 'none'; base-uri 'none'")
    meta = {k: v for k, v in data.items() if k != "rounds"}
    meta["rounds"] = [{k: v for k, v in rnd.items() if k != "problems"} for rnd in data["rounds"]]
    blocks = [f'<script type="application/json" id="data-meta">{embed_json(meta)}</script>']
    for i, rnd in enumerate(data["rounds"]):
        blocks.append(f'<script type="application/json" id="data-round-{i}">'
                      f'{embed_json(rnd["problems"])}</script>')
    return _TEMPLATE.format(csp=html.escape(csp), title=html.escape(data["title"]),
                            css=_asset("viewer.css"), data="\n".join(blocks), script=script)


def write_html(data: dict, out) -> Path:
    """Build the page and write it to ``out`` atomically (nothing is written when
    building fails); returns the path."""
    text = build_html(data)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, text)
    return out


_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
{css}
</style>
</head>
<body>
<header>
  <h1 id="title"></h1>
  <label id="round-box">round <select id="round"></select></label>
  <label>colour by <select id="colour"></select></label>
  <label>collapse below depth <input id="depth" type="number" min="0" step="1"></label>
  <button id="expand-all" type="button">expand all</button>
  <button id="fit" type="button">fit whole tree</button>
  <span id="legend"></span>
</header>
<div id="notes"></div>
<main>
  <aside id="problems">
    <input id="search" type="search" placeholder="search id, question, answer">
    <select id="filter">
      <option value="all">all</option><option value="solved">solved</option>
      <option value="unsolved">unsolved</option>
    </select>
    <div id="count"></div>
    <table id="problem-table"><thead><tr><th>problem</th><th title="chosen answer correct">ok</th>
    <th title="tokens of every step in the tree">tokens</th><th>answer</th></tr></thead>
    <tbody id="problem-list"></tbody></table>
  </aside>
  <section id="tree-pane">
    <div id="problem-head"></div>
    <svg id="tree" xmlns="http://www.w3.org/2000/svg">
      <g id="viewport"><path id="edges"></path><path id="chosen-path"></path><g id="nodes"></g></g>
    </svg>
    <div id="tooltip" hidden></div>
  </section>
  <aside id="side">
    <div id="details"><p class="hint">Click a node to see its step, its statistics and the path to it.</p></div>
    <div id="charts"></div>
  </aside>
</main>
{data}
<script>{script}</script>
</body>
</html>
"""  # noqa: E501 (one long HTML line above; a break would change the page's bytes)
