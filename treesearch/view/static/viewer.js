/* treesearch tree viewer: hand-written vanilla JS + SVG (part of treesearch, Apache-2.0).
 * Data comes from <script type="application/json"> blocks; every text is shown with
 * textContent (never parsed as HTML); the page makes no network request. */
"use strict";
(function () {
  const SVGNS = "http://www.w3.org/2000/svg";
  const DX = 16, DY = 70;                       // layout units: leaf spacing, depth spacing
  const PALETTE = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const SERIES = ["#0969da", "#fb8c00", "#1a7f37", "#cf222e", "#8250df", "#bf3989",
                  "#57606a", "#1b7c83", "#9a6700", "#6e7781", "#0550ae", "#953800"];
  const KIND = { INNER: 0, ANSWER: 1, DEAD: 2 };
  const $ = (id) => document.getElementById(id);
  const meta = JSON.parse($("data-meta").textContent);
  const rounds = new Map();                     // round index -> parsed problem list
  const S = { round: -1, problems: [], rows: [], p: -1, t: null, part: null, selected: -1,
              k: 1, tx: 0, ty: 0 };

  // -- small helpers ------------------------------------------------------------------
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function svgEl(tag, attrs) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }
  function fmt(x) {
    if (x === null || x === undefined) return "–";
    if (typeof x !== "number") return String(x);
    if (Number.isInteger(x)) return String(x);
    return Math.abs(x) >= 100 ? x.toFixed(1) : x.toFixed(3);
  }
  function colour(v, lo, hi) {
    if (v === null || v === undefined) return "#d0d7de";
    let f = hi > lo ? (v - lo) / (hi - lo) : 0.5;
    f = Math.max(0, Math.min(1, f)) * (PALETTE.length - 1);
    const i = Math.min(PALETTE.length - 2, Math.floor(f)), w = f - i;
    const a = PALETTE[i], b = PALETTE[i + 1];
    return "rgb(" + [0, 1, 2].map((j) => Math.round(a[j] + (b[j] - a[j]) * w)).join(",") + ")";
  }
  function partLabel(key) {
    const p = meta.parts.find((x) => x.key === key);
    return p ? p.label : key;
  }

  // -- the tree -------------------------------------------------------------------------
  function buildTree(problem) {
    const c = problem.columns, n = c.parent.length;
    const start = new Int32Array(n + 1), list = new Int32Array(Math.max(n - 1, 0));
    for (let i = 1; i < n; i++) start[c.parent[i] + 1]++;
    for (let i = 0; i < n; i++) start[i + 1] += start[i];
    const fill = start.slice(0, n);
    for (let i = 1; i < n; i++) list[fill[c.parent[i]]++] = i;
    let maxVisits = 1, maxDepth = 0;
    for (let i = 0; i < n; i++) {
      if (c.visits[i] > maxVisits) maxVisits = c.visits[i];
      if (c.depth[i] > maxDepth) maxDepth = c.depth[i];
    }
    const t = { problem, c, n, start, list, maxVisits, maxDepth, chosen: problem.chosen,
                x: new Float64Array(n), visible: new Uint8Array(n),
                collapsed: new Uint8Array(n), onPath: new Uint8Array(n), circles: null };
    for (let i = problem.chosen; i >= 0; i = c.parent[i]) t.onPath[i] = 1;
    return t;
  }
  const kids = (t, i) => t.list.subarray(t.start[i], t.start[i + 1]);

  function collapseBelow(t, depth) {
    t.collapsed.fill(0);
    if (depth === null) return;
    for (let i = 0; i < t.n; i++) {
      if (t.c.depth[i] >= depth && t.start[i + 1] > t.start[i] && !t.onPath[i]) t.collapsed[i] = 1;
    }
  }
  function defaultDepth(t) {
    if (t.n <= meta.limit) return null;         // small enough: everything open
    const count = new Int32Array(t.maxDepth + 2);
    for (let i = 0; i < t.n; i++) count[t.c.depth[i]]++;
    let total = 0, d = 0;
    for (; d <= t.maxDepth; d++) {
      total += count[d];
      if (total > meta.limit) break;
    }
    return Math.max(0, d - 1);                  // open down to the deepest depth that fits
  }

  function layout(t) {
    t.visible.fill(0);
    const order = [], stack = [0];
    while (stack.length) {
      const i = stack.pop();
      order.push(i);
      t.visible[i] = 1;
      if (t.collapsed[i]) continue;
      const ks = kids(t, i);
      for (let j = ks.length - 1; j >= 0; j--) stack.push(ks[j]);
    }
    let leaf = 0;
    for (const i of order) if (t.collapsed[i] || t.start[i + 1] === t.start[i]) t.x[i] = leaf++;
    for (let o = order.length - 1; o >= 0; o--) {
      const i = order[o];
      if (t.collapsed[i] || t.start[i + 1] === t.start[i]) continue;
      const ks = kids(t, i);
      t.x[i] = (t.x[ks[0]] + t.x[ks[ks.length - 1]]) / 2;
    }
    t.order = order;
    t.leaves = leaf;
  }

  function nodeClass(t, i) {
    const c = t.c;
    let cls = "n";
    if (c.kind[i] === KIND.ANSWER) {
      cls += " answer";
      if (c.correct[i] === 1) cls += " right";
      else if (c.correct[i] === 0) cls += " wrong";
    } else if (c.kind[i] === KIND.DEAD) cls += " dead";
    if (t.collapsed[i]) cls += " collapsed";
    if (t.onPath[i]) cls += " onpath";
    if (i === t.chosen) cls += " chosen";
    if (i === S.selected) cls += " selected";
    return cls;
  }

  function partRange(t, key) {
    const v = t.c[key];
    let lo = Infinity, hi = -Infinity;
    if (v) for (let i = 0; i < t.n; i++) if (v[i] !== null) { if (v[i] < lo) lo = v[i]; if (v[i] > hi) hi = v[i]; }
    if (lo === Infinity) return [0, 1];
    if (lo >= 0 && hi <= 1) return [0, 1];      // scores and probabilities: a fixed scale
    return [lo, hi];
  }

  function draw() {
    const t = S.t, c = t.c;
    layout(t);
    const X = (i) => t.x[i] * DX, Y = (i) => c.depth[i] * DY;
    const edges = [];
    for (const i of t.order) if (i > 0) edges.push("M" + X(c.parent[i]) + " " + Y(c.parent[i]) + "L" + X(i) + " " + Y(i));
    $("edges").setAttribute("d", edges.join(""));
    const path = [];
    for (let i = t.chosen; i >= 0; i = c.parent[i]) if (t.visible[i]) path.push(X(i) + " " + Y(i));
    $("chosen-path").setAttribute("d", path.length > 1 ? "M" + path.join("L") : "");
    $("chosen-path").setAttribute("data-end", String(c.node[t.chosen]));
    const [lo, hi] = partRange(t, S.part);
    const values = c[S.part] || [];
    const g = $("nodes"), frag = document.createDocumentFragment();
    t.circles = new Array(t.n);
    for (const i of t.order) {
      const r = 3 + 9 * Math.sqrt(c.visits[i] / t.maxVisits);
      const e = svgEl("circle", { cx: X(i), cy: Y(i), r: r.toFixed(2), fill: colour(values[i], lo, hi),
                                  class: nodeClass(t, i), "data-i": i, "data-node": c.node[i] });
      t.circles[i] = e;
      frag.appendChild(e);
    }
    g.replaceChildren(frag);
    $("tree").setAttribute("data-drawn", String(t.order.length));
    $("tree").setAttribute("data-total", String(t.n));
    legend(lo, hi);
  }

  function recolour() {
    const t = S.t;
    if (!t) return;
    const [lo, hi] = partRange(t, S.part), values = t.c[S.part] || [];
    for (const i of t.order) t.circles[i].setAttribute("fill", colour(values[i], lo, hi));
    legend(lo, hi);
  }

  function legend(lo, hi) {
    const box = $("legend");
    const bar = el("span", null, "bar");
    bar.style.background = "linear-gradient(to right," + [0, .25, .5, .75, 1].map((f) => colour(lo + f * (hi - lo), lo, hi)).join(",") + ")";
    box.replaceChildren(el("span", fmt(lo)), bar, el("span", fmt(hi)),
                        el("span", " size: visits; ring: green right, red wrong, orange chosen"));
  }

  // -- pan and zoom ---------------------------------------------------------------------
  function applyView() {
    $("viewport").setAttribute("transform", "translate(" + S.tx + "," + S.ty + ") scale(" + S.k + ")");
  }
  // whole: the whole tree in view; otherwise, when the whole tree would be drawn too
  // small to read (a wide tree), its full depth around the chosen answer's path
  function fit(whole) {
    const t = S.t;
    if (!t) return;
    const box = $("tree").getBoundingClientRect();
    const w = Math.max(1, (t.leaves - 1) * DX), h = Math.max(1, t.maxDepth * DY);
    const m = 24, tall = (box.height - 2 * m) / h;
    S.k = Math.min(1.5, (box.width - 2 * m) / w, tall);
    if (!(S.k > 0)) S.k = 1;
    S.tx = (box.width - w * S.k) / 2;
    S.ty = m;
    if (whole !== true && S.k < 0.25) {
      S.k = Math.max(0.25, Math.min(1, tall));
      S.tx = box.width / 2 - t.x[t.chosen] * DX * S.k;
    }
    applyView();
  }
  function setupPanZoom() {
    const svg = $("tree");
    let drag = null;
    svg.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const box = svg.getBoundingClientRect(), px = ev.clientX - box.left, py = ev.clientY - box.top;
      const f = Math.exp(-ev.deltaY * 0.0015);
      S.tx = px - (px - S.tx) * f; S.ty = py - (py - S.ty) * f; S.k *= f;
      applyView();
    }, { passive: false });
    svg.addEventListener("pointerdown", (ev) => {
      drag = { x: ev.clientX, y: ev.clientY, tx: S.tx, ty: S.ty, moved: false };
    });
    window.addEventListener("pointermove", (ev) => {
      if (!drag) return;
      const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
      drag.moved = true;
      svg.classList.add("dragging");
      S.tx = drag.tx + dx; S.ty = drag.ty + dy;
      applyView();
    });
    window.addEventListener("pointerup", () => {
      if (drag && drag.moved) S.suppressClick = true;
      drag = null;
      svg.classList.remove("dragging");
    });
  }

  // -- node details and tooltip -----------------------------------------------------------
  function kindBadges(t, i) {
    const c = t.c, out = [];
    if (c.kind[i] === KIND.ANSWER) {
      if (c.correct[i] === 1) out.push(el("span", "answer: correct", "badge right"));
      else if (c.correct[i] === 0) out.push(el("span", "answer: wrong", "badge wrong"));
      else out.push(el("span", "answer", "badge"));
    } else if (c.kind[i] === KIND.DEAD) out.push(el("span", "dead end (no answer)", "badge"));
    if (i === t.chosen) out.push(el("span", "chosen", "badge chosen"));
    else if (t.onPath[i]) out.push(el("span", "on the chosen path", "badge chosen"));
    return out;
  }

  function showDetails(i) {
    const t = S.t, c = t.c, box = $("details");
    if (S.selected >= 0 && t.circles[S.selected]) t.circles[S.selected].classList.remove("selected");
    S.selected = i;
    if (t.circles[i]) t.circles[i].classList.add("selected");
    const head = el("h2", i === 0 ? "Root (the prompt)" : "Node " + c.node[i]);
    head.append(...kindBadges(t, i));
    const step = el("pre", i === 0 ? (t.problem.question || "(the prompt)") : c.text[i], "step");
    const table = el("table", null, "stats");
    const rows = [["depth", c.depth[i]], ["visits", c.visits[i]],
                  ["children", t.start[i + 1] - t.start[i]]];
    for (const p of meta.parts) rows.push([p.label, c[p.key] ? c[p.key][i] : null, p.key]);
    for (const [name, value, key] of rows) {
      const tr = el("tr");
      tr.setAttribute("data-key", key || name);
      tr.append(el("td", name), el("td", fmt(value)));
      table.append(tr);
    }
    const parts = [head, el("h3", "Step"), step, el("h3", "Statistics and critic parts"), table];
    if (t.start[i + 1] > t.start[i]) {
      const b = el("button", t.collapsed[i] ? "expand this node" : "collapse this node");
      b.type = "button";
      b.id = "toggle-node";
      b.addEventListener("click", () => toggle(i));
      parts.push(b);
    }
    const chain = [];
    for (let j = i; j >= 0; j = c.parent[j]) chain.push(j);
    chain.reverse();
    const ol = el("ol", null, "path");
    ol.append(Object.assign(el("li"), { className: "root" }));
    ol.lastChild.append(el("pre", t.problem.question || "(the prompt)"));
    for (const j of chain.slice(1)) {
      const li = el("li", null, j === i ? "here" : "");
      li.append(el("pre", c.text[j]));
      ol.append(li);
    }
    parts.push(el("h3", "Path from the root (" + (chain.length - 1) + " steps)"), ol);
    box.replaceChildren(...parts);
    box.setAttribute("data-node", String(c.node[i]));
  }

  function toggle(i) {
    const t = S.t;
    t.collapsed[i] = t.collapsed[i] ? 0 : 1;
    draw();
    showDetails(i);
  }

  function setupNodeEvents() {
    const g = $("nodes"), tip = $("tooltip"), pane = $("tree-pane");
    g.addEventListener("click", (ev) => {
      if (S.suppressClick) { S.suppressClick = false; return; }
      const i = ev.target.getAttribute && ev.target.getAttribute("data-i");
      if (i !== null && i !== undefined) showDetails(Number(i));
    });
    g.addEventListener("dblclick", (ev) => {
      const i = ev.target.getAttribute && ev.target.getAttribute("data-i");
      if (i !== null && i !== undefined && S.t.start[+i + 1] > S.t.start[+i]) toggle(Number(i));
    });
    g.addEventListener("mouseover", (ev) => {
      const a = ev.target.getAttribute && ev.target.getAttribute("data-i");
      if (a === null || a === undefined) return;
      const t = S.t, c = t.c, i = Number(a);
      const text = i === 0 ? "(the prompt)" : c.text[i];
      tip.textContent = "node " + c.node[i] + " · depth " + c.depth[i] + " · visits " + c.visits[i] +
        " · Q " + fmt(c.q[i]) + (S.part !== "q" ? " · " + partLabel(S.part) + " " + fmt((c[S.part] || [])[i]) : "") +
        "\n" + (text.length > 160 ? text.slice(0, 160) + "…" : text);
      const box = pane.getBoundingClientRect();
      tip.style.left = Math.min(ev.clientX - box.left + 12, box.width - 300) + "px";
      tip.style.top = (ev.clientY - box.top + 12) + "px";
      tip.hidden = false;
    });
    g.addEventListener("mouseout", () => { tip.hidden = true; });
  }

  // -- problems -----------------------------------------------------------------------------
  function loadRound(r) {
    if (!rounds.has(r)) rounds.set(r, JSON.parse($("data-round-" + r).textContent));
    return rounds.get(r);
  }

  function selectRound(r) {
    S.round = r;
    S.problems = loadRound(r);
    const info = meta.rounds[r];
    $("notes").textContent = [...meta.notes, info.note].filter(Boolean).join(" ");
    renderCharts();
    renderList();
    if (S.problems.length) selectProblem(0);
  }

  function renderList() {
    const q = $("search").value.trim().toLowerCase(), f = $("filter").value;
    const body = $("problem-list"), frag = document.createDocumentFragment();
    let shown = 0;
    S.rows = [];
    S.problems.forEach((p, idx) => {
      if (f === "solved" && p.solved !== true) return;
      if (f === "unsolved" && p.solved === true) return;
      if (q && ![p.id, p.question, p.answer].some((s) => s && String(s).toLowerCase().includes(q))) return;
      const tr = el("tr", null, "row" + (idx === S.p ? " active" : ""));
      tr.setAttribute("data-index", String(idx));
      tr.title = p.question || p.id;
      const ok = p.solved === true ? el("td", "✓", "ok") : p.solved === false ? el("td", "✗", "bad") : el("td", "·");
      tr.append(el("td", p.id), ok, el("td", p.tokens), el("td", p.answer === null ? "—" : p.answer));
      frag.append(tr);
      S.rows.push(tr);
      shown++;
    });
    body.replaceChildren(frag);
    const solved = S.problems.filter((p) => p.solved === true).length;
    const labelled = S.problems.some((p) => p.solved !== null);
    $("count").textContent = shown + " of " + S.problems.length + " problems" +
      (labelled ? "; " + solved + " solved" : "");
  }

  function selectProblem(idx) {
    S.p = idx;
    for (const tr of S.rows) tr.classList.toggle("active", Number(tr.getAttribute("data-index")) === idx);
    const p = S.problems[idx];
    const head = $("problem-head");
    const line = el("div", null, "q");
    line.append(el("b", p.id + (p.question ? ": " : "")), document.createTextNode(p.question || ""));
    const facts = [p.n + " nodes", p.tokens + " tokens", "chosen answer: " + (p.answer === null ? "none" : p.answer)];
    if (p.label !== null && p.label !== undefined) facts.push("label: " + p.label);
    const sub = el("div", facts.join(" · "));
    if (p.solved !== null) sub.append(" ", p.solved ? el("span", "solved", "ok") : el("span", "unsolved", "bad"));
    head.replaceChildren(line, sub);
    S.t = buildTree(p);
    const d = defaultDepth(S.t);
    $("depth").value = d === null ? "" : String(d);
    collapseBelow(S.t, d);
    S.selected = -1;
    draw();
    fit();
    $("details").replaceChildren(el("p", "Click a node to see its step, its statistics and the path to it.", "hint"));
  }

  // -- charts ---------------------------------------------------------------------------------
  function renderCharts() {
    const box = $("charts");
    const specs = [...meta.charts];
    const info = meta.rounds[S.round];
    if (info && info.reliability) specs.push(info.reliability);
    box.replaceChildren(...specs.map((s) => s.kind === "reliability" ? reliabilityChart(s) : lineChart(s)));
  }

  function frame(spec, xs, ys, xlabel, ylabel) {
    const W = 370, H = 190, L = 40, R = 8, T = 14, B = 30;
    let [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    if (x1 === x0) { x0 -= 1; x1 += 1; }
    if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
    const pad = (y1 - y0) * 0.08;
    y0 -= pad; y1 += pad;
    const sx = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
    const sy = (y) => H - B - (y - y0) / (y1 - y0) * (H - T - B);
    const svg = svgEl("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H });
    for (let k = 0; k <= 4; k++) {
      const y = y0 + (y1 - y0) * k / 4;
      svg.append(svgEl("line", { x1: L, x2: W - R, y1: sy(y), y2: sy(y), class: "grid" }));
      const tx = svgEl("text", { x: L - 4, y: sy(y) + 3, "text-anchor": "end" });
      tx.textContent = fmt(Number(y.toPrecision(3)));
      svg.append(tx);
    }
    const ticks = [...new Set(xs)].sort((a, b) => a - b);
    const every = Math.ceil(ticks.length / 8);
    ticks.forEach((x, k) => {
      if (k % every) return;
      const tx = svgEl("text", { x: sx(x), y: H - B + 13, "text-anchor": "middle" });
      tx.textContent = fmt(x);
      svg.append(tx);
    });
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
    svg.append(svgEl("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
    const xl = svgEl("text", { x: (L + W - R) / 2, y: H - 3, "text-anchor": "middle" });
    xl.textContent = xlabel || "";
    const yl = svgEl("text", { x: L + 4, y: T + 8, "text-anchor": "start" });
    yl.textContent = ylabel || "";
    svg.append(xl, yl);
    return { svg, sx, sy };
  }

  function chartBox(spec, svg, names) {
    const div = el("div", null, "chart");
    div.append(el("h4", spec.title), svg);
    const keys = el("div", null, "keys");
    names.forEach((name, k) => {
      const key = el("span");
      const sw = el("span", null, "swatch");
      sw.style.background = SERIES[k % SERIES.length];
      key.append(sw, document.createTextNode(name));
      keys.append(key);
    });
    div.append(keys);
    return div;
  }

  function lineChart(spec) {
    const pts = spec.series.map((s) => (s.x || spec.x).map((x, k) => [x, s.y[k]]).filter((p) => p[0] !== null && p[1] !== null));
    const all = pts.flat();
    if (!all.length) return el("div");
    const { svg, sx, sy } = frame(spec, all.map((p) => p[0]), all.map((p) => p[1]), spec.xlabel, spec.ylabel);
    pts.forEach((ps, k) => {
      const c = SERIES[k % SERIES.length];
      if (ps.length > 1) svg.append(svgEl("path", { d: "M" + ps.map((p) => sx(p[0]) + " " + sy(p[1])).join("L"), fill: "none", stroke: c, "stroke-width": 1.5 }));
      for (const p of ps) {
        const dot = svgEl("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.5, fill: c });
        const title = svgEl("title", {});
        title.textContent = spec.series[k].name + ": " + fmt(p[1]) + " at " + fmt(p[0]);
        dot.append(title);
        svg.append(dot);
      }
    });
    return chartBox(spec, svg, spec.series.map((s) => s.name));
  }

  function reliabilityChart(spec) {
    const { svg, sx, sy } = frame(spec, [0, 1], [0, 1], "critic's confidence", "observed frequency");
    svg.append(svgEl("line", { x1: sx(0), y1: sy(0), x2: sx(1), y2: sy(1), stroke: "#8c959f", "stroke-dasharray": "3 3" }));
    spec.series.forEach((s, k) => {
      const c = SERIES[k % SERIES.length];
      const ps = s.confidence.map((x, j) => [x, s.frequency[j], s.count[j]]).filter((p) => p[0] !== null && p[1] !== null);
      if (ps.length > 1) svg.append(svgEl("path", { d: "M" + ps.map((p) => sx(p[0]) + " " + sy(p[1])).join("L"), fill: "none", stroke: c, "stroke-width": 1.5 }));
      const most = Math.max(1, ...ps.map((p) => p[2]));
      for (const p of ps) {
        const dot = svgEl("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2 + 4 * Math.sqrt(p[2] / most), fill: c });
        const title = svgEl("title", {});
        title.textContent = s.name + ": " + p[2] + " held-out examples, confidence " + fmt(p[0]) + ", frequency " + fmt(p[1]);
        dot.append(title);
        svg.append(dot);
      }
    });
    return chartBox(spec, svg, spec.series.map((s) => s.name));
  }

  // -- start ------------------------------------------------------------------------------------
  function start() {
    $("title").textContent = meta.title;
    document.title = meta.title;
    const colourBox = $("colour");
    for (const p of meta.parts) {
      const o = el("option", p.label);
      o.value = p.key;
      colourBox.append(o);
    }
    S.part = meta.parts.length ? meta.parts[0].key : "q";
    colourBox.addEventListener("change", () => { S.part = colourBox.value; recolour(); });
    const roundBox = $("round");
    meta.rounds.forEach((r, k) => {
      const o = el("option", r.label + " (" + r.count + (r.solved !== null ? ", " + Math.round(100 * r.solved) + "% solved" : "") + ")");
      o.value = String(k);
      roundBox.append(o);
    });
    roundBox.disabled = meta.rounds.length < 2;
    roundBox.addEventListener("change", () => selectRound(Number(roundBox.value)));
    $("search").addEventListener("input", renderList);
    $("filter").addEventListener("change", renderList);
    $("problem-list").addEventListener("click", (ev) => {
      const tr = ev.target.closest("tr.row");
      if (tr) selectProblem(Number(tr.getAttribute("data-index")));
    });
    $("depth").addEventListener("change", () => {
      if (!S.t) return;
      const v = $("depth").value.trim();
      collapseBelow(S.t, v === "" ? null : Math.max(0, Math.floor(Number(v))));
      draw();
      if (S.selected >= 0 && S.t.visible[S.selected]) showDetails(S.selected);
    });
    $("expand-all").addEventListener("click", () => {
      if (!S.t) return;
      $("depth").value = "";
      collapseBelow(S.t, null);
      draw();
    });
    $("fit").addEventListener("click", () => fit(true));
    setupPanZoom();
    setupNodeEvents();
    if (meta.rounds.length) selectRound(0);
    else {
      $("notes").textContent = meta.notes.join(" ");
      $("problem-head").replaceChildren(el("div", "No search trees in this file.", "empty"));
      renderChartsOnly();
    }
    document.body.setAttribute("data-drawn-ms", performance.now().toFixed(1));
    requestAnimationFrame(() => setTimeout(() => {
      document.body.setAttribute("data-ready-ms", performance.now().toFixed(1));
      document.body.setAttribute("data-ready", "1");
    }, 0));
  }
  function renderChartsOnly() {
    $("charts").replaceChildren(...meta.charts.map(lineChart));
  }

  start();
})();
