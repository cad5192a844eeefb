// gpt2-engine explain report: draws the four views from the JSON in #report-data (engine/report.py
// writes it). Token texts only ever become text nodes (never innerHTML). Test hooks are data-*
// attributes: saliency tokens carry data-score, factor tokens data-factor and data-value, the
// attention canvas data-layer, data-head and its geometry (data-left, data-top, data-cell).
(function () {
  "use strict";

  const D = JSON.parse(document.getElementById("report-data").textContent);
  const N = D.tokens.length;
  const P = D.promptLength;
  const G = N - P;
  const rootStyle = getComputedStyle(document.documentElement);
  const SALIENCY_RGB = cssTriple("--saliency");
  const HEAT_RGB = cssTriple("--heat");
  // Tableau 10: distinct and readable under dark text; more factors get golden-angle hues.
  const PALETTE = [[78, 121, 167], [242, 142, 43], [225, 87, 89], [118, 183, 178], [89, 161, 79],
                   [237, 201, 72], [176, 122, 161], [255, 157, 167], [156, 117, 95], [186, 176, 172]];

  // ------------------------------------------------------------------------------------------
  // Helpers

  function cssTriple(name) {
    return rootStyle.getPropertyValue(name).trim().split(/\s*,\s*/).map(Number);
  }

  function rgba(rgb, alpha) {
    return "rgba(" + rgb[0] + ", " + rgb[1] + ", " + rgb[2] + ", " + (+alpha.toFixed(4)) + ")";
  }

  function factorColour(f) {
    if (f < PALETTE.length) return PALETTE[f];
    return hslToRgb((f * 137.508) % 360, 0.55, 0.55);
  }

  function hslToRgb(h, s, l) {
    const a = s * Math.min(l, 1 - l);
    const channel = (n) => {
      const k = (n + h / 30) % 12;
      return Math.round(255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
    };
    return [channel(0), channel(8), channel(4)];
  }

  // Create an element: props are attributes, except class, text, on<event>; children are nodes or strings.
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function svgEl(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    return node;
  }

  // A token as it reads in a label: newlines and tabs as symbols, an all-space token as ␣.
  function label(text) {
    const shown = text.replace(/\r/g, "␍").replace(/\n/g, "↵").replace(/\t/g, "⇥");
    return shown.trim() === "" ? shown.replace(/ /g, "␣") : shown;
  }

  // A token in running text: its text with each line break it makes shown as ↵ (inside the token,
  // so it can be shaded), then the line breaks themselves after it, outside the token's box.
  function appendToken(box, node, text) {
    const lines = text.split("\n");
    lines.forEach((line, i) => {
      if (i > 0) node.append(el("span", { class: "mark", "aria-hidden": "true", text: "↵" }));
      if (line) node.append(line);
    });
    box.append(node);
    if (lines.length > 1) box.append("\n".repeat(lines.length - 1));
  }

  function quoted(text) {
    return el("span", { class: "tokname", text: label(text) });
  }

  function number(x, digits) {
    const d = digits === undefined ? 2 : digits;
    const text = x !== 0 && Math.abs(x) < Math.pow(10, -d) ? x.toExponential(1) : x.toFixed(d);
    return text.replace("-", "−");
  }

  function percent(p) {
    return (p >= 0.1 ? (100 * p).toFixed(0) : (100 * p).toFixed(1)) + "%";
  }

  function setChildren(node, ...children) {
    node.replaceChildren(...children.filter((c) => c !== null && c !== undefined));
  }

  function legend(node, title, rgb, ticks, reverse) {
    const from = rgba(rgb, reverse ? 1 : 0), to = rgba(rgb, reverse ? 0 : 1);
    const ramp = el("div", { class: "ramp" });
    ramp.style.background = "linear-gradient(to right, " + from + ", " + to + "), #fff";
    setChildren(node, el("span", { class: "title", text: title }), ramp,
      el("div", { class: "ticks" }, ...ticks.map((t) => el("span", { text: t }))));
  }

  // Arrow keys, Home and End move focus among the cells of a table (one tab stop per table).
  function gridKeys(table, onFocusCell) {
    table.addEventListener("keydown", (event) => {
      const cell = event.target.closest("td[data-r]");
      if (!cell) return;
      let r = +cell.dataset.r, c = +cell.dataset.c;
      const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
      if (moves[event.key]) { r += moves[event.key][0]; c += moves[event.key][1]; }
      else if (event.key === "Home") c = 0;
      else if (event.key === "End") c = Infinity;
      else return;
      event.preventDefault();
      const cells = table.querySelectorAll("td[data-r='" + Math.max(0, r) + "']");
      const rowCells = cells.length ? cells : table.querySelectorAll("td[data-r='" + cell.dataset.r + "']");
      const next = rowCells[Math.max(0, Math.min(c, rowCells.length - 1))];
      if (next) {
        cell.tabIndex = -1;
        next.tabIndex = 0;
        next.focus();
      }
    });
    table.addEventListener("focusin", (event) => {
      const cell = event.target.closest("td[data-r]");
      if (cell) onFocusCell(cell);
    });
    table.addEventListener("mouseover", (event) => {
      const cell = event.target.closest("td[data-r]");
      if (cell) onFocusCell(cell);
    });
  }

  // ------------------------------------------------------------------------------------------
  // Header

  function drawFacts() {
    const c = D.config;
    const of = D.saliency.of === "prob" ? "p" : "log p";
    const facts = [
      ["Model", el("code", { text: D.model })],
      ["Shape", c.n_layer + " layers · " + c.n_head + " heads · " + c.n_embd + " wide · MLP " + c.mlp_width],
      ["Tokens", P + " prompt + " + G + " generated" + (D.finishReason ? " (stopped: " + D.finishReason + ")" : "")],
      ["Attributed", of + " of each generated token"],
    ];
    setChildren(document.getElementById("facts"),
      ...facts.flatMap(([term, value]) => [el("dt", { text: term }), el("dd", {}, value)]));
  }

  // ------------------------------------------------------------------------------------------
  // Saliency: hover, tap or focus a generated token; its earlier tokens take their scores.

  function setUpSaliency() {
    const S = D.saliency;
    const box = document.getElementById("saliency-tokens");
    const methodsBox = document.getElementById("saliency-methods");
    const readout = document.getElementById("saliency-readout");
    const legendBox = document.getElementById("saliency-legend");
    let method = 0;
    let selected = G > 0 ? G - 1 : null;  // the pinned generated token (index into the generated ones)

    S.methods.forEach((m, i) => {
      const input = el("input", { type: "radio", name: "saliency-method", value: m.name });
      input.checked = i === method;
      input.addEventListener("change", () => { method = i; show(selected); });
      methodsBox.append(el("label", {}, input, m.label));
    });

    const nodes = D.tokens.map((text, i) => {
      const g = i - P;
      const node = i < P
        ? el("span", { class: "tok", "data-index": i })
        : el("button", {
            type: "button", class: "tok generated", "data-index": i, "data-generated": g,
            "aria-pressed": "false", tabindex: g === selected ? 0 : -1,
            "aria-label": "Generated token " + (g + 1) + " of " + G + ": " + label(text),
          });
      appendToken(box, node, text);
      if (i >= P) {
        node.addEventListener("mouseenter", () => show(g));
        node.addEventListener("mouseleave", () => show(selected));
        node.addEventListener("click", () => select(g, false));
        node.addEventListener("focus", () => select(g, false));
        node.addEventListener("keydown", (event) => {
          const to = { ArrowLeft: g - 1, ArrowUp: g - 1, ArrowRight: g + 1, ArrowDown: g + 1, Home: 0, End: G - 1 }[event.key];
          if (to === undefined) return;
          event.preventDefault();
          select(Math.max(0, Math.min(G - 1, to)), true);
        });
      }
      return node;
    });

    function select(g, moveFocus) {
      selected = g;
      nodes.forEach((node, i) => {
        if (i < P) return;
        node.setAttribute("aria-pressed", String(i - P === g));
        node.tabIndex = i - P === g ? 0 : -1;
      });
      if (moveFocus) nodes[P + g].focus();
      show(g);
    }

    function show(g) {
      if (g === null || !S.methods.length) {
        setChildren(readout, G ? "No saliency methods in this result." : "Nothing was generated, so there is nothing to attribute.");
        return;
      }
      const m = S.methods[method];
      const scores = m.scores[g];
      const position = P + g;  // the generated token; tokens before it are its inputs
      let largest = 0;
      for (let i = 0; i < position; i++) largest = Math.max(largest, scores[i]);
      nodes.forEach((node, i) => {
        if (i < position) {
          node.style.backgroundColor = rgba(SALIENCY_RGB, largest > 0 ? scores[i] / largest : 0);
          node.dataset.score = String(scores[i]);
          node.title = m.label + ": " + number(scores[i], 3);
          node.classList.remove("after");
        } else {
          node.style.backgroundColor = "";
          delete node.dataset.score;
          node.removeAttribute("title");
          node.classList.toggle("after", i > position);
        }
        node.classList.toggle("target", i === position);
      });
      legend(legendBox, "score (" + m.label.toLowerCase() + ")", SALIENCY_RGB, ["0", number(largest / 2), number(largest)]);

      const order = [...Array(position).keys()].sort((a, b) => scores[b] - scores[a]).slice(0, 3);
      const parts = [quoted(D.tokens[position]), " (token " + position + "): " + (S.of === "prob" ? "p" : "log p") +
        " = " + number(S.targetValues[g], 3) + ". Most salient: "];
      order.forEach((i, n) => parts.push(n ? ", " : "", quoted(D.tokens[i]), " " + number(scores[i])));
      parts.push(".");
      if (m.name === "integrated_gradients" && S.igSum) {
        parts.push(" Completeness (" + S.igSteps + " steps): attributions sum to " + number(S.igSum[g], 4) +
          ", f(input) − f(baseline) = " + number(S.igDifference[g], 4) + ".");
      }
      if (m.name === "erasure" && S.erasureDrops && order.length) {
        parts.push(" Erasing ", quoted(D.tokens[order[0]]), " changes f by " + number(-S.erasureDrops[g][order[0]], 3) + ".");
      }
      setChildren(readout, ...parts);
    }

    if (!G) box.append(el("span", { class: "note", text: "  (nothing generated)" }));
    show(selected);
    if (selected !== null) nodes[P + selected].setAttribute("aria-pressed", "true");
  }

  // ------------------------------------------------------------------------------------------
  // Neuron factors: tokens coloured by their dominant factor, a sparkline per factor.

  function setUpFactors() {
    const layerSelect = document.getElementById("factor-layers");
    const box = document.getElementById("factor-tokens");
    const list = document.getElementById("factor-list");
    const note = document.getElementById("factor-note");
    const readout = document.getElementById("factor-readout");
    let set = D.factors.length - 1;  // all layers side by side, when there are several
    let factor = -1;  // -1: every token in its dominant factor's colour

    D.factors.forEach((s, i) => {
      const name = s.layers.length === 1 ? "layer " + s.layers[0] : "all layers, side by side";
      layerSelect.append(el("option", { value: i, text: name }));
    });
    layerSelect.value = String(set);
    layerSelect.addEventListener("change", () => { set = +layerSelect.value; build(); });

    const nodes = D.tokens.map((text, i) => {
      const node = el("span", { class: "tok", "data-index": i });
      appendToken(box, node, text);
      return node;
    });

    function build() {
      const s = D.factors[set];
      const acts = s.activations;  // [k][N]
      const peaks = acts.map((row) => Math.max(0, ...row));
      if (factor >= acts.length) factor = -1;
      note.textContent = acts.length + (acts.length === 1 ? " factor of " : " factors of ") + (s.layers.length * D.config.mlp_width) +
        " neurons; reconstruction error " + (100 * s.error).toFixed(0) + "%";

      const rows = [radioRow(-1, el("span", { class: "swatch", style: "background: conic-gradient(" +
        acts.map((_, f) => rgba(factorColour(f), 1) + " " + (100 * f / acts.length) + "% " + (100 * (f + 1) / acts.length) + "%").join(", ") + ")" }),
        el("span", { class: "name", text: "All factors: each token in its dominant one" }))];
      rows[0].classList.add("all-factors");
      acts.forEach((row, f) => {
        const top = [...row.keys()].sort((a, b) => row[b] - row[a]).slice(0, 3).filter((t) => row[t] > 0);
        rows.push(radioRow(f,
          el("span", { class: "swatch", style: "background: " + rgba(factorColour(f), 1) }),
          el("span", { class: "name", text: "Factor " + (f + 1) }),
          sparkline(row, peaks[f], factorColour(f), f),
          el("span", { class: "fires" }, ...(top.length ? ["fires on ", ...top.map((t) => quoted(D.tokens[t]))] : ["silent"]))));
      });
      setChildren(list, el("legend", { text: "Factor" }), ...rows);
      colour();

      function radioRow(f, ...content) {
        const input = el("input", { type: "radio", name: "factor", value: f, "aria-label": f < 0 ? "All factors" : "Factor " + (f + 1) });
        input.checked = f === factor;
        input.addEventListener("change", () => { factor = f; colour(); });
        return el("label", { class: "factor-row", "data-factor": f }, input, ...content);
      }

      function colour() {
        nodes.forEach((node, t) => {
          let f = factor;
          if (f < 0) {  // the dominant factor: the largest activation on this token
            f = 0;
            for (let j = 1; j < acts.length; j++) if (acts[j][t] > acts[f][t]) f = j;
          }
          const value = peaks[f] > 0 ? Math.max(0, acts[f][t]) / peaks[f] : 0;
          node.style.backgroundColor = rgba(factorColour(f), value);
          node.dataset.factor = String(f);
          node.dataset.value = String(value);
          node.title = "factor " + (f + 1) + ": " + number(acts[f][t], 3);
        });
        if (factor < 0) {
          setChildren(readout, "Pick a factor to see where it fires and which neurons make it up.");
          return;
        }
        const row = acts[factor];
        const top = [...row.keys()].sort((a, b) => row[b] - row[a]).slice(0, 5);
        const parts = ["Factor " + (factor + 1) + " fires most on "];
        top.forEach((t, n) => parts.push(n ? ", " : "", quoted(D.tokens[t]), " (" + t + ")"));
        parts.push(". Top neurons: " + s.topNeurons[factor].slice(0, 6).map(([layer, neuron], n) =>
          "L" + layer + "·" + neuron + " (" + number(s.topLoadings[factor][n], 2) + ")").join(", ") + ".");
        setChildren(readout, ...parts);
      }
    }

    function sparkline(row, peak, rgb, f) {
      const width = Math.max(1, N - 1);
      const svg = svgEl("svg", { viewBox: "0 -0.05 " + width + " 1.1", preserveAspectRatio: "none", "aria-hidden": "true", "data-factor": f });
      const points = row.map((v, t) => t + "," + (1 - (peak > 0 ? Math.max(0, v) / peak : 0)).toFixed(4));
      if (N === 1) points.push("1," + points[0].split(",")[1]);
      if (P > 0 && G > 0) {
        svg.append(svgEl("line", { x1: P - 0.5, x2: P - 0.5, y1: 0, y2: 1, stroke: "#c3c9d4", "stroke-dasharray": "3 3", "vector-effect": "non-scaling-stroke" }));
      }
      svg.append(svgEl("polygon", { points: "0,1 " + points.join(" ") + " " + width + ",1", fill: rgba(rgb, 0.18) }));
      svg.append(svgEl("polyline", { points: points.join(" "), fill: "none", stroke: rgba(rgb, 1), "stroke-width": 2,
        "stroke-linejoin": "round", "vector-effect": "non-scaling-stroke" }));
      return svg;
    }

    build();
  }

  // ------------------------------------------------------------------------------------------
  // Logit lens: top token per reading and position; ranks of the tokens that came next.

  function setUpLens() {
    const L = D.lens;
    const readout = document.getElementById("lens-readout");
    const R = L.layers.length;
    const piece = (id) => D.pieces[String(id)];
    const layerName = (r) => L.layers[r] + (r === R - 1 && R > 1 ? " (output)" : "");

    const head = el("tr", {}, el("th", { class: "row", scope: "col", text: "at token →" }),
      ...D.tokens.map((text, t) => el("th", { scope: "col", class: t >= P ? "generated" : null, title: "position " + t, text: label(text) })));
    const body = [];
    for (let r = 0; r < R; r++) {
      const cells = D.tokens.map((_, t) => {
        const id = L.topIds[r][t][0], p = L.topProbs[r][t][0];
        const hit = t < N - 1 && id === L.targets[t];
        const cell = el("td", { "data-r": r, "data-c": t, tabindex: r === 0 && t === 0 ? 0 : -1,
          class: (hit ? "hit " : "") + (p > 0.55 ? "dark" : "") }, label(piece(id)), el("span", { class: "p", text: percent(p) }));
        cell.style.backgroundColor = rgba(HEAT_RGB, p);
        return cell;
      });
      body.push(el("tr", {}, el("th", { class: "row", scope: "row", text: layerName(r) }), ...cells));
    }
    body.push(el("tr", { class: "actual" }, el("th", { class: "row", scope: "row", text: "came next" }),
      ...D.tokens.map((_, t) => el("td", { text: t < N - 1 ? label(D.tokens[t + 1]) : "…" }))));
    const table = el("table", { class: "grid", "aria-label": "Logit lens: top prediction per layer and position" },
      el("thead", {}, head), el("tbody", {}, ...body));
    setChildren(document.getElementById("lens-scroll"), table);
    gridKeys(table, (cell) => {
      const r = +cell.dataset.r, t = +cell.dataset.c;
      const parts = ["At ", quoted(D.tokens[t]), " (position " + t + "), " + L.layers[r] + ": "];
      L.topIds[r][t].forEach((id, n) => parts.push(n ? ", " : "", quoted(piece(id)), " " + percent(L.topProbs[r][t][n])));
      const target = t < N - 1 ? "came next" : "the model's choice";
      parts.push(". ", quoted(piece(L.targets[t])), " (" + target + ") ranks " + L.targetRanks[r][t] + ".");
      setChildren(readout, ...parts);
    });

    // Ranks: the generated tokens (or, with none, every token after the first).
    const columns = [];
    for (let t = G > 0 ? P - 1 : 0; t < N - 1; t++) columns.push(t);  // predicted at t: token t + 1
    const rankAlpha = (rank) => 1 - Math.min(Math.log10(rank), 3) / 3;  // 1 -> 1, 10 -> 2/3, >= 1000 -> 0
    const rankHead = el("tr", {}, el("th", { class: "row", scope: "col", text: "token →" }),
      ...columns.map((t) => el("th", { scope: "col", class: t + 1 >= P ? "generated" : null, title: "position " + (t + 1), text: label(D.tokens[t + 1]) })));
    const rankRows = [];
    for (let r = 0; r < R; r++) {
      rankRows.push(el("tr", {}, el("th", { class: "row", scope: "row", text: layerName(r) }),
        ...columns.map((t, n) => {
          const rank = L.targetRanks[r][t];
          const cell = el("td", { "data-r": r, "data-c": n, "data-rank": rank, tabindex: r === 0 && n === 0 ? 0 : -1,
            class: rankAlpha(rank) > 0.55 ? "dark" : null, text: String(rank) });
          cell.style.backgroundColor = rgba(HEAT_RGB, rankAlpha(rank));
          return cell;
        })));
    }
    const ranks = el("table", { class: "grid", "aria-labelledby": "ranks-title" }, el("thead", {}, rankHead), el("tbody", {}, ...rankRows));
    setChildren(document.getElementById("ranks-scroll"), columns.length ? ranks : el("p", { class: "note", text: "  One token: nothing was predicted." }));
    gridKeys(ranks, (cell) => {
      const r = +cell.dataset.r, t = columns[+cell.dataset.c];
      setChildren(readout, quoted(D.tokens[t + 1]), " (position " + (t + 1) + ") ranks " + L.targetRanks[r][t] +
        " after " + L.layers[r] + " (p = " + number(L.targetProbs[r][t], 3) + ").");
    });
    legend(document.getElementById("ranks-legend"), "rank", HEAT_RGB, ["1", "10", "100", "≥1000"], true);
  }

  // ------------------------------------------------------------------------------------------
  // Attention: a query x key heatmap of one layer and head (or the mean over heads).

  function halfToFloat(h) {
    const sign = h & 0x8000 ? -1 : 1, exponent = (h >> 10) & 0x1f, fraction = h & 0x3ff;
    if (exponent === 0) return sign * fraction * Math.pow(2, -24);
    if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
    return sign * (1 + fraction / 1024) * Math.pow(2, exponent - 15);
  }

  function setUpAttention() {
    const A = D.attention;
    const T = N * (N + 1) / 2;  // lower-triangle values per head
    const bytes = atob(A.float16);
    const values = new Float32Array(A.layers * A.heads * T);
    for (let i = 0; i < values.length; i++) values[i] = halfToFloat(bytes.charCodeAt(2 * i) | (bytes.charCodeAt(2 * i + 1) << 8));

    const layerSelect = document.getElementById("attention-layer");
    const headSelect = document.getElementById("attention-head");
    const canvas = document.getElementById("attention-map");
    const box = document.getElementById("attention-map-box");
    const readout = document.getElementById("attention-readout");
    for (let l = 0; l < A.layers; l++) layerSelect.append(el("option", { value: l, text: String(l) }));
    for (let h = 0; h < A.heads; h++) headSelect.append(el("option", { value: h, text: String(h) }));
    headSelect.append(el("option", { value: -1, text: "mean of heads" }));
    let cursor = null;  // [query, key] under the pointer or the keyboard
    let geometry = null;

    function attention(layer, head, q, k) {
      if (k > q) return 0;
      const offset = q * (q + 1) / 2 + k;
      if (head >= 0) return values[(layer * A.heads + head) * T + offset];
      let sum = 0;
      for (let h = 0; h < A.heads; h++) sum += values[(layer * A.heads + h) * T + offset];
      return sum / A.heads;
    }

    function draw() {
      const layer = +layerSelect.value, head = +headSelect.value;
      const ratio = window.devicePixelRatio || 1;
      const ctx = canvas.getContext("2d");
      const available = Math.max(120, box.clientWidth);
      ctx.font = "11px " + rootStyle.getPropertyValue("--mono");
      const labels = D.tokens.map(label);
      const widest = Math.min(96, Math.ceil(Math.max(...labels.map((s) => ctx.measureText(s).width))) + 8);
      const cell = Math.max(3, Math.min(22, Math.floor((available - widest - 4) / N)));
      const showLabels = cell >= 8;
      const left = showLabels ? widest : 0, top = showLabels ? widest : 0;
      const width = left + N * cell + 2, height = top + N * cell + 2;
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
      canvas.style.width = width + "px";
      canvas.style.height = height + "px";
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.fillStyle = "#ffffff";
      ctx.fillRect(0, 0, width, height);
      for (let q = 0; q < N; q++) {
        for (let k = 0; k < N; k++) {
          ctx.fillStyle = k > q ? "#eef0f4" : rgba(HEAT_RGB, attention(layer, head, q, k));
          ctx.fillRect(left + k * cell, top + q * cell, cell, cell);
        }
      }
      if (showLabels) {
        const fontSize = Math.min(11, cell);
        ctx.font = fontSize + "px " + rootStyle.getPropertyValue("--mono");
        ctx.fillStyle = "#39414f";
        ctx.textBaseline = "middle";
        ctx.textAlign = "right";
        labels.forEach((text, q) => {
          ctx.fillStyle = q >= P ? "#7c3aed" : "#39414f";
          ctx.fillText(text, left - 4, top + (q + 0.5) * cell, widest - 6);
        });
        ctx.save();
        ctx.rotate(-Math.PI / 2);
        ctx.textAlign = "left";
        labels.forEach((text, k) => {
          ctx.fillStyle = k >= P ? "#7c3aed" : "#39414f";
          ctx.fillText(text, -top + 4, left + (k + 0.5) * cell, widest - 6);
        });
        ctx.restore();
      }
      if (cursor) {
        ctx.strokeStyle = "#111827";
        ctx.lineWidth = 2;
        ctx.strokeRect(left + cursor[1] * cell + 1, top + cursor[0] * cell + 1, cell - 2, cell - 2);
      }
      geometry = { left, top, cell };
      Object.assign(canvas.dataset, { layer, head, left, top, cell });
      canvas.setAttribute("aria-label", "Attention of layer " + layer + ", " + (head >= 0 ? "head " + head : "mean of all heads") +
        ": rows are query tokens, columns key tokens. Arrow keys move the cursor.");
      describe();
    }

    function describe() {
      if (!cursor) {
        setChildren(readout, "Hover a cell, or focus the map and use the arrow keys.");
        return;
      }
      const [q, k] = cursor, layer = +layerSelect.value, head = +headSelect.value;
      setChildren(readout, "Layer " + layer + ", " + (head >= 0 ? "head " + head : "mean of heads") + ": ",
        quoted(D.tokens[q]), " (query " + q + ") attends to ", quoted(D.tokens[k]), " (key " + k + ") with " +
        number(attention(layer, head, q, k), 3) + ".");
    }

    canvas.addEventListener("mousemove", (event) => {
      if (!geometry) return;
      const rect = canvas.getBoundingClientRect();
      const k = Math.floor((event.clientX - rect.left - geometry.left) / geometry.cell);
      const q = Math.floor((event.clientY - rect.top - geometry.top) / geometry.cell);
      if (q < 0 || k < 0 || q >= N || k > q) return;
      if (!cursor || cursor[0] !== q || cursor[1] !== k) { cursor = [q, k]; draw(); }
    });
    canvas.addEventListener("keydown", (event) => {
      const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
      if (!moves[event.key]) return;
      event.preventDefault();
      const [q0, k0] = cursor || [0, 0];
      const q = Math.max(0, Math.min(N - 1, q0 + moves[event.key][0]));
      const k = Math.max(0, Math.min(q, k0 + moves[event.key][1]));
      cursor = [q, k];
      draw();
    });
    canvas.addEventListener("focus", () => { if (!cursor) { cursor = [N - 1, 0]; draw(); } });
    layerSelect.addEventListener("change", draw);
    headSelect.addEventListener("change", draw);
    const step = (by) => {
      const options = headSelect.options.length;
      headSelect.selectedIndex = (headSelect.selectedIndex + by + options) % options;
      draw();
    };
    document.getElementById("head-previous").addEventListener("click", () => step(-1));
    document.getElementById("head-next").addEventListener("click", () => step(1));
    legend(document.getElementById("attention-legend"), "attention probability", HEAT_RGB, ["0", "0.5", "1"]);
    if (typeof ResizeObserver === "function") {
      let lastWidth = -1;
      new ResizeObserver(() => { if (box.clientWidth !== lastWidth) { lastWidth = box.clientWidth; draw(); } }).observe(box);
    }
    draw();
  }

  // ------------------------------------------------------------------------------------------

  drawFacts();
  setUpSaliency();
  setUpFactors();
  setUpLens();
  setUpAttention();

  // Inside a notebook's iframe (srcdoc, same origin), grow the frame to the page's height.
  if (window.frameElement && typeof ResizeObserver === "function") {
    const fit = () => { window.frameElement.style.height = document.documentElement.scrollHeight + 2 + "px"; };
    new ResizeObserver(fit).observe(document.body);
    fit();
  }
})();
