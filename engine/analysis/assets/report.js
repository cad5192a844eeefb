// gpt2-engine explain report: draws the four views from the JSON in #report-data (engine/analysis/report.py
// writes it). Token texts only ever become text nodes (never innerHTML). The views share one selected
// token: selecting it in one view shows it in the others (its lens column, its attention row, its
// factor activations). Every shaded text gets the colour (its own, black or white) that keeps a
// contrast of 4.5:1 or more on its shade, in the light and the dark scheme. Test hooks are data-*
// attributes: saliency tokens carry data-score (and data-value, data-sign for signed methods),
// factor tokens data-factor and data-value, the attention canvas data-layer, data-head, data-row
// and its geometry (data-left, data-top, data-cell, data-labels).
(function () {
  "use strict";

  const D = JSON.parse(document.getElementById("report-data").textContent);
  const INPUTS = D.inputs.map(prepare);
  const MIN_CONTRAST = 4.6;  // a little above WCAG AA's 4.5, for the browser's rounding of blended colours
  // Tableau 10 for the factors; more factors get golden-angle hues.
  const PALETTE = [[78, 121, 167], [242, 142, 43], [225, 87, 89], [118, 183, 178], [89, 161, 79],
                   [237, 201, 72], [176, 122, 161], [255, 157, 167], [156, 117, 95], [186, 176, 172]];
  let current = 0;        // the input shown (several when explain ran over several prompts)
  let selected = null;    // the selected token of the current input, shared by the views
  const views = [];       // each: { input(), select(token, from), render() }

  // ------------------------------------------------------------------------------------------
  // Data

  function halfToFloat(h) {
    const sign = h & 0x8000 ? -1 : 1, exponent = (h >> 10) & 0x1f, fraction = h & 0x3ff;
    if (exponent === 0) return sign * fraction * Math.pow(2, -24);
    if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
    return sign * (1 + fraction / 1024) * Math.pow(2, exponent - 15);
  }

  function float16s(text) {  // base64 of little-endian float16 -> Float32Array
    const bytes = atob(text || "");
    const out = new Float32Array(bytes.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = halfToFloat(bytes.charCodeAt(2 * i) | (bytes.charCodeAt(2 * i + 1) << 8));
    return out;
  }

  // Saliency rows: row g (for each of J foils) holds the P + g tokens before new token g.
  function rows(text, P, J) {
    if (!text) return null;
    let flat = null;
    return (g, j) => {
      if (!flat) flat = float16s(text);
      const start = J * (g * P + g * (g - 1) / 2) + (j || 0) * (P + g);
      return flat.subarray(start, start + P + g);
    };
  }

  function prepare(X) {
    const N = X.tokens.length, P = X.promptLength, J = X.saliency.foils && X.saliency.foils.length ? X.saliency.foils[0].length : 0;
    X.N = N; X.P = P; X.G = N - P; X.J = J;
    X.saliency.methods.forEach((m) => {
      m.score = rows(m.scores, P, 1);
      m.value = rows(m.values, P, 1);
      m.contrastScore = rows(m.contrastScores, P, J);
      m.contrastValue = rows(m.contrastValues, P, J);
    });
    return X;
  }

  const piece = (id) => D.pieces[String(id)];
  const bytesOf = (id) => D.pieceBytes[String(id)];
  const byteText = (hex) => hex.split(" ").map((b) => "\\x" + b).join("");

  // The character a run of partial tokens spells: consecutive tokens that are only parts of UTF-8
  // characters, decoded together ("f0 9f" + "99 82" -> "🙂").
  function spelled(X, t) {
    if (!bytesOf(X.tokenIds[t])) return null;
    let a = t, b = t;
    while (a > 0 && bytesOf(X.tokenIds[a - 1])) a--;
    while (b < X.N - 1 && bytesOf(X.tokenIds[b + 1])) b++;
    const hex = X.tokenIds.slice(a, b + 1).map(bytesOf).join(" ").split(" ");
    const text = new TextDecoder().decode(new Uint8Array(hex.map((h) => parseInt(h, 16))));
    return { text, from: a, to: b };
  }

  // ------------------------------------------------------------------------------------------
  // Colour: the scheme's colours, blending, and text that keeps its contrast

  function cssValue(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function cssTriple(name) {
    return cssValue(name).split(/\s*,\s*/).map(Number);
  }

  function cssColour(name) {  // "#rrggbb" -> [r, g, b]
    const hex = cssValue(name).replace("#", "");
    return [0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16));
  }

  function rgba(rgb, alpha) {
    return "rgba(" + rgb[0] + ", " + rgb[1] + ", " + rgb[2] + ", " + (+alpha.toFixed(4)) + ")";
  }

  function rgbText(rgb) {
    return "rgb(" + rgb.map(Math.round).join(", ") + ")";
  }

  function blend(rgb, alpha, base) {
    const a = +alpha.toFixed(4);
    return base.map((b, i) => b + a * (rgb[i] - b));
  }

  function luminance(rgb) {
    const [r, g, b] = rgb.map((v) => {
      const c = v / 255;
      return c <= 0.04045 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  }

  function contrast(a, b) {
    const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05);
  }

  // The text colour for a background: the preferred one if it reads well, else black or white.
  function textOn(background, preferred) {
    if (preferred && contrast(background, preferred) >= MIN_CONTRAST) return preferred;
    return contrast(background, [0, 0, 0]) >= contrast(background, [255, 255, 255]) ? [0, 0, 0] : [255, 255, 255];
  }

  // Shade a node: background rgb at alpha over `backdrop`, and a text colour that reads on it
  // (alpha 0: the stylesheet's colours, which read on the backdrop).
  function paint(node, rgb, alpha, backdrop, preferred) {
    if (!(alpha > 0)) {
      node.style.backgroundColor = "";
      node.style.color = "";
      return;
    }
    node.style.backgroundColor = rgba(rgb, alpha);
    node.style.color = rgbText(textOn(blend(rgb, alpha, backdrop), preferred));
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

  // ------------------------------------------------------------------------------------------
  // Elements and text

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

  function setChildren(node, ...children) {
    node.replaceChildren(...children.filter((c) => c !== null && c !== undefined));
  }

  // A token as it reads in a label: its bytes when it holds part of a character; line breaks,
  // tabs and returns as symbols; a token of spaces only as ␣.
  function label(text, id) {
    const hex = id === undefined ? null : bytesOf(id);
    if (hex) return byteText(hex);
    const shown = text.replace(/\r/g, "␍").replace(/\n/g, "↵").replace(/\t/g, "⇥");
    return /^\s+$/.test(text) ? shown.replace(/ /g, "␣") : shown;
  }

  // A token in running text: as `label` shows it, except that each line break it makes is its
  // ↵ (inside the token, so it can be shaded) and then the break itself, outside the token's box.
  function appendToken(box, node, text, id) {
    const hex = bytesOf(id);
    if (hex) {
      node.append(el("span", { class: "bytes", text: byteText(hex) }));
      box.append(node);
      return;
    }
    const whitespace = /^\s+$/.test(text);
    if (whitespace) node.classList.add("ws");
    const lines = text.split("\n");
    lines.forEach((line, i) => {
      if (i > 0) node.append(el("span", { class: "mark", text: "↵" }));
      if (!line) return;
      let shown = line.replace(/\t/g, "⇥").replace(/\r/g, "␍");
      if (whitespace) shown = shown.replace(/ /g, "␣");
      node.append(shown);
    });
    box.append(node);
    if (lines.length > 1) box.append("\n".repeat(lines.length - 1));
  }

  function tokenTitle(X, t) {
    const run = spelled(X, t);
    const base = "token " + t;
    if (!run) return base;
    return base + ": bytes " + bytesOf(X.tokenIds[t]) + " of “" + run.text + "” (tokens " + run.from + "–" + run.to + ")";
  }

  function quoted(text, id) {
    return el("span", { class: "tokname", text: label(text, id) });
  }

  function quotedToken(X, t) {  // a token of the input, with its position
    const run = spelled(X, t);
    return [quoted(X.tokens[t], X.tokenIds[t]), " (" + t + (run ? ", part of “" + run.text + "”" : "") + ")"];
  }

  function number(x, digits) {
    const d = digits === undefined ? 2 : digits;
    const text = x !== 0 && Math.abs(x) < Math.pow(10, -d) ? x.toExponential(1) : x.toFixed(d);
    return text.replace("-", "−");
  }

  function signedNumber(x, digits) {
    return (x > 0 ? "+" : "") + number(x, digits);
  }

  // A probability as a percentage that never reads 0 when it is not: 63%, 4.2%, 0.37%, 0.0043%.
  function percent(p) {
    const x = 100 * p;
    if (x >= 9.5) return x.toFixed(0) + "%";
    if (x >= 0.95) return x.toFixed(1) + "%";
    if (x >= 0.0001) return x.toPrecision(2) + "%";
    return x > 0 ? "<0.0001%" : "0%";
  }

  function legend(node, title, gradient, ticks) {
    const ramp = el("div", { class: "ramp" });
    ramp.style.background = gradient;
    setChildren(node, el("span", { class: "title", text: title }), ramp,
      el("div", { class: "ticks" }, ...ticks.map((t) => el("span", { text: t }))));
  }

  function rampGradient(rgb, reverse) {
    const from = rgba(rgb, reverse ? 1 : 0), to = rgba(rgb, reverse ? 0 : 1);
    return "linear-gradient(to right, " + from + ", " + to + "), " + cssValue("--paper");
  }

  // Arrow keys, Home and End move focus among the cells of a table (one tab stop per table).
  function gridKeys(table, onRead, onChoose) {
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
      if (cell) { onRead(cell); onChoose(cell); }
    });
    table.addEventListener("click", (event) => {
      const cell = event.target.closest("td[data-r]");
      if (cell) onChoose(cell);
    });
    table.addEventListener("mouseover", (event) => {
      const cell = event.target.closest("td[data-r]");
      if (cell) onRead(cell);
    });
  }

  // Scroll a table's box sideways (never the page) so that a column is in view, beside the sticky labels.
  function scrollToColumn(box, cell) {
    if (!cell) return;
    const sticky = box.querySelector("th.row");
    const stickyWidth = sticky ? sticky.offsetWidth : 0;
    const left = cell.offsetLeft, right = left + cell.offsetWidth;
    if (left >= box.scrollLeft + stickyWidth && right <= box.scrollLeft + box.clientWidth) return;
    box.scrollLeft = Math.max(0, left - stickyWidth - (box.clientWidth - stickyWidth - cell.offsetWidth) / 2);
  }

  // ------------------------------------------------------------------------------------------
  // The shared selection, the input, the colour scheme

  function selectToken(t, from) {
    selected = t;
    views.forEach((view) => view.select(t, from));
  }

  function setInput(k) {
    if (k === current) return;
    current = k;
    selected = null;
    document.getElementById("input-picker").value = String(k);
    drawFacts();
    views.forEach((view) => view.input());
  }

  function describeSampling(s) {
    if (!(s.temperature > 0)) return "greedy (temperature 0)";
    const parts = ["temperature " + s.temperature];
    if (s.top_k !== null) parts.push("top-k " + s.top_k);
    if (s.top_p !== null) parts.push("top-p " + s.top_p);
    if (s.repetition_penalty !== 1) parts.push("repetition penalty " + s.repetition_penalty);
    if (s.no_repeat_ngram_size) parts.push("no repeated " + s.no_repeat_ngram_size + "-grams");
    parts.push("seed " + s.seed);
    return parts.join(", ");
  }

  function drawFacts() {
    const X = INPUTS[current], c = D.config;
    const of = X.saliency.of === "prob" ? "p" : "log p";
    let tokens = X.P + " prompt + " + X.G;
    if (X.given) tokens += " given (teacher forcing: analysed as if generated)";
    else tokens += " generated" + (X.finishReason ? " (stopped: " + X.finishReason + ")" : "");
    const facts = [
      ["Model", el("code", { text: D.model })],
      ["Shape", c.n_layer + " layers · " + c.n_head + " heads · " + c.n_embd + " wide · MLP " + c.mlp_width],
      ["Tokens", tokens],
      ["Sampling", X.generation ? describeSampling(X.generation) : X.given ? "none: the continuation was given" : "nothing was generated"],
      ["Attributed", of + " of each new token"],
    ];
    if (INPUTS.length > 1) facts.push(["Inputs", INPUTS.length + ", with one neuron factorisation over all of them"]);
    setChildren(document.getElementById("facts"),
      ...facts.flatMap(([term, value]) => [el("dt", { text: term }), el("dd", {}, value)]));
  }

  function setUpInputs() {
    if (INPUTS.length < 2) return;
    const picker = document.getElementById("input-picker");
    INPUTS.forEach((X, k) => {
      const prompt = X.prompt.replace(/\s+/g, " ").trim();
      picker.append(el("option", { value: k, text: (k + 1) + ": " + (prompt.length > 60 ? prompt.slice(0, 60) + "…" : prompt) }));
    });
    picker.addEventListener("change", () => setInput(+picker.value));
    document.getElementById("input-picker-box").hidden = false;
  }

  // ------------------------------------------------------------------------------------------
  // Saliency: hover, tap or focus a new token; its earlier tokens take their attributions.

  function setUpSaliency() {
    const box = document.getElementById("saliency-tokens");
    const methodsBox = document.getElementById("saliency-methods");
    const foilBox = document.getElementById("foil-box");
    const foilSelect = document.getElementById("saliency-foil");
    const readout = document.getElementById("saliency-readout");
    const legendBox = document.getElementById("saliency-legend");
    let X, nodes, method = 0, pinned = null, foil = -1, shown = null;

    foilSelect.addEventListener("change", () => { foil = +foilSelect.value; show(shown); });

    function input() {
      X = INPUTS[current];
      pinned = X.G > 0 ? X.G - 1 : null;
      method = Math.min(method, Math.max(0, X.saliency.methods.length - 1));
      const hasMethods = X.G > 0 && X.saliency.methods.length > 0;
      setChildren(methodsBox, el("legend", { text: "Method" }));
      X.saliency.methods.forEach((m, i) => {
        const radio = el("input", { type: "radio", name: "saliency-method", value: m.name });
        radio.checked = i === method;
        radio.addEventListener("change", () => { method = i; show(shown); });
        methodsBox.append(el("label", {}, radio, m.label));
      });
      methodsBox.hidden = !hasMethods;
      foilBox.hidden = !hasMethods || !X.J;
      document.getElementById("saliency-controls").hidden = !hasMethods;
      box.replaceChildren();
      nodes = X.tokens.map((text, i) => {
        const g = i - X.P;
        const node = i < X.P
          ? el("span", { class: "tok", "data-index": i, title: tokenTitle(X, i) })
          : el("button", {
              type: "button", class: "tok generated", "data-index": i, "data-generated": g,
              "aria-pressed": String(g === pinned), tabindex: g === pinned ? 0 : -1,
              "aria-label": "New token " + (g + 1) + " of " + X.G + ": " + label(text, X.tokenIds[i]), title: tokenTitle(X, i),
            });
        appendToken(box, node, text, X.tokenIds[i]);
        if (i >= X.P) {
          node.addEventListener("mouseenter", () => show(g));
          node.addEventListener("mouseleave", () => show(pinned));
          node.addEventListener("click", () => pin(g, false));
          node.addEventListener("focus", () => pin(g, false));
          node.addEventListener("keydown", (event) => {
            const to = { ArrowLeft: g - 1, ArrowUp: g - 1, ArrowRight: g + 1, ArrowDown: g + 1, Home: 0, End: X.G - 1 }[event.key];
            if (to === undefined) return;
            event.preventDefault();
            pin(Math.max(0, Math.min(X.G - 1, to)), true);
          });
        }
        return node;
      });
      if (!X.G) box.append(el("span", { class: "note", text: "  (no new tokens: nothing to attribute)" }));
      fillFoils();
      show(pinned);
    }

    function fillFoils() {
      const options = [el("option", { value: -1, text: "— (the token alone)" })];
      if (pinned !== null && X.J) {
        const of = X.saliency.of === "prob" ? "p" : "log p";
        X.saliency.foils[pinned].forEach((id, j) => options.push(el("option", {
          value: j, text: label(piece(id), id) + "  (" + of + " " + number(X.saliency.foilValues[pinned][j], 2) + ")" })));
      }
      setChildren(foilSelect, ...options);
      if (foil >= X.J) foil = -1;
      foilSelect.value = String(foil);
    }

    function pin(g, moveFocus) {
      pinned = g;
      nodes.forEach((node, i) => {
        if (i < X.P) return;
        node.setAttribute("aria-pressed", String(i - X.P === g));
        node.tabIndex = i - X.P === g ? 0 : -1;
      });
      if (moveFocus) nodes[X.P + g].focus();
      fillFoils();
      show(g);
      selectToken(X.P + g, "saliency");
    }

    function select(t, from) {
      nodes.forEach((node, i) => node.classList.toggle("linked", i === t && i !== (pinned === null ? -1 : X.P + pinned)));
      if (from !== "saliency" && t >= X.P && t - X.P !== pinned) {
        pinned = t - X.P;
        nodes.forEach((node, i) => {
          if (i < X.P) return;
          node.setAttribute("aria-pressed", String(i === t));
          node.tabIndex = i === t ? 0 : -1;
        });
        nodes[t].classList.remove("linked");
        fillFoils();
        show(pinned);
      }
    }

    function show(g) {
      shown = g;
      const methods = X.saliency.methods;
      if (g === null || !methods.length) {
        setChildren(legendBox);
        setChildren(readout, X.G ? "No saliency methods in this result." : "No new tokens, so there is nothing to attribute.");
        return;
      }
      const m = methods[method], S = X.saliency, P = X.P;
      const against = foil >= 0 ? X.saliency.foils[g][foil] : null;
      const scores = against === null ? m.score(g) : m.contrastScore(g, foil);  // [P + g]: the tokens before it
      const values = !m.signed ? null : against === null ? m.value(g) : m.contrastValue(g, foil);
      const position = P + g;
      const strip = cssColour("--strip"), SALIENCY = cssTriple("--saliency");
      const SUPPORT = cssTriple("--support"), AGAINST = cssTriple("--against");
      let largest = 0;
      for (let i = 0; i < position; i++) largest = Math.max(largest, values ? Math.abs(values[i]) : scores[i]);
      nodes.forEach((node, i) => {
        const preferred = cssColour(i >= P ? "--generated" : "--ink");
        if (i < position) {
          const v = values ? values[i] : scores[i];
          const alpha = largest > 0 ? Math.abs(v) / largest : 0;
          paint(node, values ? (v >= 0 ? SUPPORT : AGAINST) : SALIENCY, alpha, strip, preferred);
          node.dataset.score = String(scores[i]);
          if (values) {
            node.dataset.value = String(v);
            node.dataset.sign = v > 0 ? "support" : v < 0 ? "against" : "none";
          } else {
            delete node.dataset.value;
            delete node.dataset.sign;
          }
          node.title = tokenTitle(X, i) + " · " + m.label + ": " + (values ? signedNumber(v, 3) : number(scores[i], 3));
          node.classList.remove("after");
        } else {
          paint(node, SALIENCY, 0, strip, preferred);
          delete node.dataset.score;
          delete node.dataset.value;
          delete node.dataset.sign;
          node.title = tokenTitle(X, i);
          node.classList.toggle("after", i > position);
        }
        node.classList.toggle("target", i === position);
      });

      const f = S.of === "prob" ? "p" : "log p";
      const name = m.label.toLowerCase();
      if (values) {
        const gradient = "linear-gradient(to right, " + rgba(AGAINST, 1) + ", " + rgba(AGAINST, 0) + " 50%, " +
          rgba(SUPPORT, 0) + " 50%, " + rgba(SUPPORT, 1) + "), " + cssValue("--paper");
        legend(legendBox, "signed " + name + ": against ← → support", gradient,
          [signedNumber(-largest), "0", signedNumber(largest)]);
      } else {
        legend(legendBox, "score (" + name + ", magnitude)", rampGradient(SALIENCY), ["0", number(largest / 2), number(largest)]);
      }

      const parts = [quoted(X.tokens[position], X.tokenIds[position]), " (position " + position + "): " + f + " = " + number(S.targetValues[g], 3) + ". "];
      if (against !== null) {
        const w = S.foilValues[g][foil];
        parts.push("Rather than ", quoted(piece(against), against), " (" + f + " = " + number(w, 3) + "): the attribution of " +
          f + "(token) − " + f + "(", quoted(piece(against), against), ") = " + number(S.targetValues[g] - w, 3) + ". ");
      }
      const order = [...Array(position).keys()];
      if (values) {
        parts.push("Signed (" + m.label + "): ", el("span", { class: "support", text: "support" }),
          " raised " + f + (against !== null ? " of the token over the other" : "") + ", ",
          el("span", { class: "against", text: "against" }), " lowered it. ");
        const up = order.filter((i) => values[i] > 0).sort((a, b) => values[b] - values[a]).slice(0, 3);
        const down = order.filter((i) => values[i] < 0).sort((a, b) => values[a] - values[b]).slice(0, 3);
        parts.push("Most support: ");
        if (!up.length) parts.push("none");
        up.forEach((i, n) => parts.push(n ? ", " : "", ...quotedToken(X, i), " " + signedNumber(values[i])));
        parts.push("; most against: ");
        if (!down.length) parts.push("none");
        down.forEach((i, n) => parts.push(n ? ", " : "", ...quotedToken(X, i), " " + signedNumber(values[i])));
        parts.push(".");
      } else {
        parts.push("Magnitude only (" + m.label + "): how much each token mattered, not in which direction. Most salient: ");
        order.sort((a, b) => scores[b] - scores[a]).slice(0, 3).forEach((i, n) =>
          parts.push(n ? ", " : "", ...quotedToken(X, i), " " + number(scores[i])));
        parts.push(".");
      }
      if (m.name === "integrated_gradients" && S.igSum && against === null) {
        parts.push(" Completeness (" + S.igSteps + " steps): attributions sum to " + number(S.igSum[g], 4) +
          ", f(input) − f(baseline) = " + number(S.igDifference[g], 4) + ".");
      }
      setChildren(readout, ...parts);
    }

    return { input, select, render: () => show(shown) };
  }

  // ------------------------------------------------------------------------------------------
  // Neuron factors: every input's tokens coloured by their dominant factor, a sparkline per factor.

  function setUpFactors() {
    const layerSelect = document.getElementById("factor-layers");
    const texts = document.getElementById("factor-texts");
    const list = document.getElementById("factor-list");
    const note = document.getElementById("factor-note");
    const readout = document.getElementById("factor-readout");
    let set = D.factors.length - 1;  // all layers side by side, when there are several
    let factor = -1;  // -1: every token in its dominant factor's colour
    let strips = [];  // per input: its token nodes

    D.factors.forEach((s, i) => {
      const name = s.layers.length === 1 ? "layer " + s.layers[0] : "all layers, side by side";
      layerSelect.append(el("option", { value: i, text: name }));
    });
    layerSelect.value = String(set);
    layerSelect.addEventListener("change", () => { set = +layerSelect.value; build(); });

    INPUTS.forEach((X, k) => {
      const strip = el("div", { class: "factor-strip", "data-input": k });
      if (INPUTS.length > 1) strip.append(el("span", { class: "label", text: "Input " + (k + 1) }));
      const box = el("div", { class: "tokens", "aria-label": "Tokens of input " + (k + 1) + " coloured by factor" });
      strip.append(box);
      texts.append(strip);
      strips.push(X.tokens.map((text, t) => {
        const node = el("span", { class: "tok", "data-index": t, "data-input": k, title: tokenTitle(X, t) });
        node.addEventListener("click", () => { setInput(k); selectToken(t, "factors"); });
        appendToken(box, node, text, X.tokenIds[t]);
        return node;
      }));
    });

    // Each factor's peak over every input: one scale, so that inputs compare.
    function peaks(s) {
      return s.activations[0].map((_, f) => Math.max(0, ...s.activations.map((acts) => Math.max(...acts[f]))));
    }

    function build() {
      const s = D.factors[set], acts = s.activations[current], peak = peaks(s);
      const F = acts.length;
      if (factor >= F) factor = -1;
      note.textContent = F + (F === 1 ? " factor of " : " factors of ") + (s.layers.length * D.config.mlp_width) +
        " neurons" + (INPUTS.length > 1 ? ", fitted over the " + INPUTS.length + " inputs" : "") +
        "; reconstruction error " + (100 * s.error).toFixed(0) + "%";
      const rows = [radioRow(-1, el("span", { class: "swatch", style: "background: conic-gradient(" +
        acts.map((_, f) => rgba(factorColour(f), 1) + " " + (100 * f / F) + "% " + (100 * (f + 1) / F) + "%").join(", ") + ")" }),
        el("span", { class: "name", text: "All factors: each token in its dominant one" }))];
      rows[0].classList.add("all-factors");
      const X = INPUTS[current];
      acts.forEach((row, f) => {
        const top = [...row.keys()].sort((a, b) => row[b] - row[a]).slice(0, 3).filter((t) => row[t] > 0);
        rows.push(radioRow(f,
          el("span", { class: "swatch", style: "background: " + rgba(factorColour(f), 1) }),
          el("span", { class: "name", text: "Factor " + (f + 1) }),
          sparkline(row, peak[f], factorColour(f), f),
          el("span", { class: "fires" }, ...(top.length ? ["fires on ", ...top.map((t) => quoted(X.tokens[t], X.tokenIds[t]))] : ["silent"]))));
      });
      setChildren(list, el("legend", { text: "Factor" }), ...rows);
      colour();
    }

    function radioRow(f, ...content) {
      const radio = el("input", { type: "radio", name: "factor", value: f, "aria-label": f < 0 ? "All factors" : "Factor " + (f + 1) });
      radio.checked = f === factor;
      radio.addEventListener("change", () => { factor = f; colour(); });
      return el("label", { class: "factor-row", "data-factor": f }, radio, ...content);
    }

    function colour() {
      const s = D.factors[set], peak = peaks(s), strip = cssColour("--strip"), ink = cssColour("--ink");
      strips.forEach((nodes, k) => {
        const acts = s.activations[k];
        nodes.forEach((node, t) => {
          let f = factor;
          if (f < 0) {  // the dominant factor: the largest activation on this token
            f = 0;
            for (let j = 1; j < acts.length; j++) if (acts[j][t] > acts[f][t]) f = j;
          }
          const value = peak[f] > 0 ? Math.max(0, acts[f][t]) / peak[f] : 0;
          paint(node, factorColour(f), value, strip, ink);
          node.dataset.factor = String(f);
          node.dataset.value = String(value);
          node.title = tokenTitle(INPUTS[k], t) + " · factor " + (f + 1) + ": " + number(acts[f][t], 3);
          node.classList.toggle("linked", k === current && t === selected);
        });
        texts.children[k].classList.toggle("current", INPUTS.length > 1 && k === current);
      });
      marker();
      describe();
    }

    function describe() {
      const s = D.factors[set], acts = s.activations[current], X = INPUTS[current], peak = peaks(s);
      const parts = [];
      if (selected !== null) {
        const t = selected;
        const order = [...acts.keys()].sort((a, b) => acts[b][t] - acts[a][t]).slice(0, 3);
        parts.push(...quotedToken(X, t), ": ");
        order.forEach((f, n) => parts.push(n ? ", " : "", "factor " + (f + 1) + " " +
          number(peak[f] > 0 ? Math.max(0, acts[f][t]) / peak[f] : 0, 2)));
        parts.push(" of each factor's peak. ");
      }
      if (factor >= 0) {
        const row = acts[factor];
        const top = [...row.keys()].sort((a, b) => row[b] - row[a]).slice(0, 5);
        parts.push("Factor " + (factor + 1) + " fires most on ");
        top.forEach((t, n) => parts.push(n ? ", " : "", ...quotedToken(X, t)));
        parts.push(". Top neurons: " + s.topNeurons[factor].slice(0, 6).map(([layer, neuron], n) =>
          "L" + layer + "·" + neuron + " (" + number(s.topLoadings[factor][n], 2) + ")").join(", ") + ".");
      }
      if (!parts.length) parts.push("Pick a factor to see where it fires and which neurons make it up; click a token to read its factors.");
      setChildren(readout, ...parts);
    }

    function sparkline(row, peak, rgb, f) {
      const X = INPUTS[current], N = X.N;
      const width = Math.max(1, N - 1);
      const svg = svgEl("svg", { viewBox: "0 -0.05 " + width + " 1.1", preserveAspectRatio: "none", "aria-hidden": "true", "data-factor": f });
      const points = row.map((v, t) => t + "," + (1 - (peak > 0 ? Math.max(0, v) / peak : 0)).toFixed(4));
      if (N === 1) points.push("1," + points[0].split(",")[1]);
      if (X.P > 0 && X.G > 0) {
        svg.append(svgEl("line", { x1: X.P - 0.5, x2: X.P - 0.5, y1: 0, y2: 1, stroke: cssValue("--muted"), "stroke-dasharray": "3 3", "vector-effect": "non-scaling-stroke" }));
      }
      svg.append(svgEl("polygon", { points: "0,1 " + points.join(" ") + " " + width + ",1", fill: rgba(rgb, 0.18) }));
      svg.append(svgEl("polyline", { points: points.join(" "), fill: "none", stroke: rgba(rgb, 1), "stroke-width": 2,
        "stroke-linejoin": "round", "vector-effect": "non-scaling-stroke" }));
      svg.append(svgEl("line", { class: "marker", x1: 0, x2: 0, y1: -0.05, y2: 1.05, stroke: cssValue("--focus"), "stroke-width": 2,
        "vector-effect": "non-scaling-stroke", visibility: "hidden" }));
      return svg;
    }

    function marker() {
      list.querySelectorAll("svg line.marker").forEach((line) => {
        line.setAttribute("visibility", selected === null ? "hidden" : "visible");
        if (selected !== null) { line.setAttribute("x1", selected); line.setAttribute("x2", selected); }
      });
    }

    function select() {
      colour();
    }

    build();
    return { input: build, select, render: build };
  }

  // ------------------------------------------------------------------------------------------
  // Logit lens: top token per reading and position; ranks of the tokens that came next.

  function setUpLens() {
    const readout = document.getElementById("lens-readout");
    const lensBox = document.getElementById("lens-scroll"), ranksBox = document.getElementById("ranks-scroll");
    let X, lensTable = null, ranksTable = null, columns = [];

    function input() {
      X = INPUTS[current];
      const L = X.lens, R = L.layers.length, N = X.N, P = X.P;
      const layerName = (r) => L.layers[r] + (r === R - 1 && R > 1 ? " (output)" : "");
      const paper = cssColour("--paper"), ink = cssColour("--ink"), heat = cssTriple("--heat");
      const head = el("tr", {}, el("th", { class: "row", scope: "col", text: "at token →" }),
        ...X.tokens.map((text, t) => el("th", { scope: "col", "data-c": t, class: t >= P ? "generated" : null,
          title: tokenTitle(X, t), text: label(text, X.tokenIds[t]) })));
      const body = [];
      for (let r = 0; r < R; r++) {
        const cells = X.tokens.map((_, t) => {
          const id = L.topIds[r][t][0], p = L.topProbs[r][t][0];
          const hit = t < N - 1 && id === L.targets[t];
          const cell = el("td", { "data-r": r, "data-c": t, tabindex: r === 0 && t === 0 ? 0 : -1, class: hit ? "hit" : null },
            label(piece(id), id), el("span", { class: "p", text: percent(p) }));
          paint(cell, heat, p, paper, ink);
          return cell;
        });
        body.push(el("tr", {}, el("th", { class: "row", scope: "row", text: layerName(r) }), ...cells));
      }
      body.push(el("tr", { class: "actual" }, el("th", { class: "row", scope: "row", text: "came next" }),
        ...X.tokens.map((_, t) => el("td", { "data-c": t, text: t < N - 1 ? label(X.tokens[t + 1], X.tokenIds[t + 1]) : "…" }))));
      lensTable = el("table", { class: "grid", "aria-label": "Logit lens: top prediction per layer and position" },
        el("thead", {}, head), el("tbody", {}, ...body));
      setChildren(lensBox, lensTable);
      gridKeys(lensTable, (cell) => {
        const r = +cell.dataset.r, t = +cell.dataset.c;
        const parts = ["At ", ...quotedToken(X, t), ", " + L.layers[r] + ": "];
        L.topIds[r][t].forEach((id, n) => parts.push(n ? ", " : "", quoted(piece(id), id), " " + percent(L.topProbs[r][t][n])));
        const target = t < N - 1 ? "came next" : "the model's choice";
        parts.push(". ", quoted(piece(L.targets[t]), L.targets[t]), " (" + target + ") ranks " + L.targetRanks[r][t] + ".");
        setChildren(readout, ...parts);
      }, (cell) => { if (+cell.dataset.c !== selected) selectToken(+cell.dataset.c, "lens"); });

      // Ranks: the new tokens (or, with none, every token after the first).
      columns = [];
      for (let t = X.G > 0 ? P - 1 : 0; t < N - 1; t++) columns.push(t);  // predicted at t: token t + 1
      const rankAlpha = (rank) => 1 - Math.min(Math.log10(rank), 3) / 3;  // 1 -> 1, 10 -> 2/3, >= 1000 -> 0
      const rankHead = el("tr", {}, el("th", { class: "row", scope: "col", text: "token →" }),
        ...columns.map((t, n) => el("th", { scope: "col", "data-c": n, class: t + 1 >= P ? "generated" : null,
          title: tokenTitle(X, t + 1), text: label(X.tokens[t + 1], X.tokenIds[t + 1]) })));
      const rankRows = [];
      for (let r = 0; r < R; r++) {
        rankRows.push(el("tr", {}, el("th", { class: "row", scope: "row", text: layerName(r) }),
          ...columns.map((t, n) => {
            const rank = L.targetRanks[r][t];
            const cell = el("td", { "data-r": r, "data-c": n, "data-rank": rank, tabindex: r === 0 && n === 0 ? 0 : -1, text: String(rank) });
            paint(cell, heat, rankAlpha(rank), paper, ink);
            return cell;
          })));
      }
      ranksTable = el("table", { class: "grid", "aria-labelledby": "ranks-title" }, el("thead", {}, rankHead), el("tbody", {}, ...rankRows));
      setChildren(ranksBox, columns.length ? ranksTable : el("p", { class: "note", text: "  One token: nothing was predicted." }));
      gridKeys(ranksTable, (cell) => {
        const r = +cell.dataset.r, t = columns[+cell.dataset.c];
        setChildren(readout, ...quotedToken(X, t + 1), " ranks " + L.targetRanks[r][t] +
          " after " + L.layers[r] + " (p = " + number(L.targetProbs[r][t], 3) + ").");
      }, (cell) => { const t = columns[+cell.dataset.c] + 1; if (t !== selected) selectToken(t, "ranks"); });
      legend(document.getElementById("ranks-legend"), "rank", rampGradient(heat, true), ["1", "10", "100", "≥1000"]);
      if (selected !== null) select(selected, null);
    }

    function select(t, from) {
      for (const [table, box, column] of [[lensTable, lensBox, t], [ranksTable, ranksBox, columns.indexOf(t - 1)]]) {
        if (!table) continue;
        table.querySelectorAll(".selected").forEach((node) => node.classList.remove("selected"));
        if (column < 0) continue;
        const cells = table.querySelectorAll("[data-c='" + column + "']");
        cells.forEach((node) => node.classList.add("selected"));
        if (from !== "lens" && from !== "ranks") scrollToColumn(box, table.querySelector("th[data-c='" + column + "']"));
      }
    }

    return { input, select, render: input };
  }

  // ------------------------------------------------------------------------------------------
  // Attention: a query x key heatmap of one layer and head (or the mean over heads).

  function setUpAttention() {
    const A = D.attention;
    const layerSelect = document.getElementById("attention-layer");
    const headSelect = document.getElementById("attention-head");
    const canvas = document.getElementById("attention-map");
    const box = document.getElementById("attention-map-box");
    const readout = document.getElementById("attention-readout");
    const note = document.getElementById("attention-note");
    const H = A.mean ? 1 : A.heads.length;  // heads per layer in the data
    let X, values, T, cursor = null, geometry = null;

    if (A.note || !A.layers.length) {
      note.textContent = A.note || "This page carries no attention (explain or gpt2 report ran with attention left out).";
      note.hidden = false;
    }
    if (!A.layers.length) {
      for (const id of ["attention-controls", "attention-map-box"]) document.getElementById(id).hidden = true;
      setChildren(readout);
      return { input() {}, select() {}, render() {} };
    }
    A.layers.forEach((l, i) => layerSelect.append(el("option", { value: i, text: String(l) })));
    if (A.mean) headSelect.append(el("option", { value: -1, text: A.heads.length === D.attention.headCount ? "mean of heads" : "mean of heads " + A.heads.join(", ") }));
    else {
      A.heads.forEach((h, i) => headSelect.append(el("option", { value: i, text: String(h) })));
      if (H > 1) headSelect.append(el("option", { value: -1, text: "mean of heads" }));
    }

    function attention(layer, head, q, k) {
      if (k > q) return 0;
      const offset = q * (q + 1) / 2 + k;
      if (head >= 0 || A.mean) return values[(layer * H + Math.max(0, head)) * T + offset];
      let sum = 0;
      for (let h = 0; h < H; h++) sum += values[(layer * H + h) * T + offset];
      return sum / H;
    }

    function input() {
      X = INPUTS[current];
      T = X.N * (X.N + 1) / 2;
      values = float16s(X.attention.float16);
      cursor = null;
      draw();
    }

    const layerName = () => A.layers[+layerSelect.value];
    const headName = () => +headSelect.value >= 0 ? "head " + A.heads[+headSelect.value] : "mean of heads";

    function draw() {
      const N = X.N, P = X.P;
      const layer = +layerSelect.value, head = A.mean ? -1 : +headSelect.value;
      const ratio = window.devicePixelRatio || 1;
      const ctx = canvas.getContext("2d");
      const available = Math.max(120, box.clientWidth);
      const mono = cssValue("--mono");
      ctx.font = "11px " + mono;
      const labels = X.tokens.map((text, t) => label(text, X.tokenIds[t]));
      const widest = Math.min(96, Math.ceil(Math.max(...labels.map((s) => ctx.measureText(s).width))) + 8);
      // Cells stay big enough to carry their labels; a map wider than the screen scrolls in its box.
      const minimum = N <= 80 ? 9 : 3;
      const cell = Math.max(minimum, Math.min(22, Math.floor((available - widest - 4) / N)));
      const step = cell >= 9 ? 1 : Math.ceil(9 / cell);  // label every step-th token when cells are small
      const left = widest, top = widest;
      const width = left + N * cell + 2, height = top + N * cell + 2;
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
      canvas.style.width = width + "px";
      canvas.style.height = height + "px";
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      const paper = cssColour("--paper"), grid = cssValue("--grid"), heat = cssTriple("--heat");
      ctx.fillStyle = rgbText(paper);
      ctx.fillRect(0, 0, width, height);
      for (let q = 0; q < N; q++) {
        for (let k = 0; k < N; k++) {
          ctx.fillStyle = k > q ? grid : rgbText(blend(heat, attention(layer, head, q, k), paper));
          ctx.fillRect(left + k * cell, top + q * cell, cell, cell);
        }
      }
      const fontSize = step === 1 ? Math.min(11, cell) : 9;
      ctx.font = fontSize + "px " + mono;
      ctx.textBaseline = "middle";
      const ink = cssValue("--ink"), generated = cssValue("--generated");
      ctx.textAlign = "right";
      labels.forEach((text, q) => {
        if (q % step && q !== selected) return;
        ctx.fillStyle = q >= P ? generated : ink;
        ctx.fillText(text, left - 4, top + (q + 0.5) * cell, widest - 6);
      });
      ctx.save();
      ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "left";
      labels.forEach((text, k) => {
        if (k % step && k !== selected) return;
        ctx.fillStyle = k >= P ? generated : ink;
        ctx.fillText(text, -top + 4, left + (k + 0.5) * cell, widest - 6);
      });
      ctx.restore();
      const focus = cssValue("--focus");
      if (selected !== null && selected < N) {  // the selected token's row
        ctx.strokeStyle = focus;
        ctx.lineWidth = 2;
        ctx.setLineDash([4, 3]);
        ctx.strokeRect(1, top + selected * cell + 1, left + (selected + 1) * cell - 2, cell - 2);
        ctx.setLineDash([]);
      }
      if (cursor) {
        ctx.strokeStyle = ink;
        ctx.lineWidth = 2;
        ctx.strokeRect(left + cursor[1] * cell + 1, top + cursor[0] * cell + 1, cell - 2, cell - 2);
      }
      geometry = { left, top, cell };
      Object.assign(canvas.dataset, { layer: layerName(), head: A.mean ? -1 : head >= 0 ? A.heads[head] : -1, left, top, cell,
        labels: step === 1 ? "all" : "every " + step, row: selected === null ? "" : selected });
      canvas.setAttribute("aria-label", "Attention of layer " + layerName() + ", " + (head >= 0 ? headName() : "mean of heads") +
        ": rows are query tokens, columns key tokens. Arrow keys move the cursor.");
      describe();
    }

    function describe() {
      if (!cursor) {
        setChildren(readout, "Hover a cell, or focus the map and use the arrow keys.");
        return;
      }
      const [q, k] = cursor, layer = +layerSelect.value, head = A.mean ? -1 : +headSelect.value;
      setChildren(readout, "Layer " + layerName() + ", " + (head >= 0 ? headName() : "mean of heads") + ": ",
        quoted(X.tokens[q], X.tokenIds[q]), " (query " + q + ") attends to ", quoted(X.tokens[k], X.tokenIds[k]), " (key " + k + ") with " +
        number(attention(layer, head, q, k), 3) + ".");
    }

    function cellAt(event) {
      if (!geometry) return null;
      const rect = canvas.getBoundingClientRect();
      const k = Math.floor((event.clientX - rect.left - geometry.left) / geometry.cell);
      const q = Math.floor((event.clientY - rect.top - geometry.top) / geometry.cell);
      return q < 0 || k < 0 || q >= X.N || k > q ? null : [q, k];
    }

    canvas.addEventListener("mousemove", (event) => {
      const at = cellAt(event);
      if (at && (!cursor || cursor[0] !== at[0] || cursor[1] !== at[1])) { cursor = at; draw(); }
    });
    canvas.addEventListener("click", (event) => {
      const at = cellAt(event);
      if (at) { cursor = at; selectToken(at[0], "attention"); }
    });
    canvas.addEventListener("keydown", (event) => {
      const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
      if (!moves[event.key]) return;
      event.preventDefault();
      const [q0, k0] = cursor || [0, 0];
      const q = Math.max(0, Math.min(X.N - 1, q0 + moves[event.key][0]));
      const k = Math.max(0, Math.min(q, k0 + moves[event.key][1]));
      cursor = [q, k];
      draw();
    });
    canvas.addEventListener("focus", () => { if (!cursor) { cursor = [X.N - 1, 0]; draw(); } });
    layerSelect.addEventListener("change", draw);
    headSelect.addEventListener("change", draw);
    const stepHead = (by) => {
      const options = headSelect.options.length;
      headSelect.selectedIndex = (headSelect.selectedIndex + by + options) % options;
      draw();
    };
    document.getElementById("head-previous").addEventListener("click", () => stepHead(-1));
    document.getElementById("head-next").addEventListener("click", () => stepHead(1));
    const drawLegend = () => legend(document.getElementById("attention-legend"), "attention probability",
      rampGradient(cssTriple("--heat")), ["0", "0.5", "1"]);
    drawLegend();
    if (typeof ResizeObserver === "function") {
      let lastWidth = -1;
      new ResizeObserver(() => { if (box.clientWidth !== lastWidth) { lastWidth = box.clientWidth; draw(); } }).observe(box);
    }
    input();
    return { input, select: () => draw(), render: () => { drawLegend(); draw(); } };
  }

  // ------------------------------------------------------------------------------------------

  setUpInputs();
  drawFacts();
  views.push(setUpSaliency(), setUpFactors(), setUpLens(), setUpAttention());
  views[0].input();
  views[2].input();

  // The scheme can change while the page is open (a system switching to dark at dusk): redraw.
  if (window.matchMedia) {
    const scheme = window.matchMedia("(prefers-color-scheme: dark)");
    const redraw = () => {
      views.forEach((view) => view.render());
      document.documentElement.dataset.scheme = scheme.matches ? "dark" : "light";  // drawn for this scheme
    };
    document.documentElement.dataset.scheme = scheme.matches ? "dark" : "light";
    if (scheme.addEventListener) scheme.addEventListener("change", redraw);
  }

  // Inside a notebook's iframe (srcdoc, same origin), grow the frame to the page's height.
  if (window.frameElement && typeof ResizeObserver === "function") {
    const fit = () => { window.frameElement.style.height = document.documentElement.scrollHeight + 2 + "px"; };
    new ResizeObserver(fit).observe(document.body);
    fit();
  }
})();
