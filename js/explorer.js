// NextTokenExplorer's front end (anywidget ES module; plain DOM, no build step).
//
// Python computes everything (llama.cpp's own sampler chain, see lmsext/engine/distribution.py);
// this file draws it and sends the user's actions back:
//   sliders        -> model.set(<trait>, value) + save_changes()   (Python recomputes the distribution)
//   Step / Back / Sample / Reset buttons, a click on a bar -> model.send({action, ...})

export const SLIDERS = [
  { name: "temperature", label: "temperature", min: 0, max: 2, step: 0.05, off: null, zero: "greedy" },
  { name: "top_k", label: "top-k", min: 0, max: 200, step: 1, off: 0, int: true, wide: true },
  { name: "top_p", label: "top-p", min: 0.05, max: 1, step: 0.01, off: 1 },
  { name: "min_p", label: "min-p", min: 0, max: 0.5, step: 0.01, off: 0 },
  { name: "repeat_penalty", label: "repeat penalty", min: 0.5, max: 2, step: 0.05, off: 1 },
];

const STAGE_LABELS = {
  penalties: "repeat penalty",
  "top-k": "top-k",
  "top-p": "top-p",
  "min-p": "min-p",
  xtc: "XTC",
  temp: "temperature",
  greedy: "greedy",
  grammar: "structured",
};

const CSS = `
.lmx { font-family: var(--jp-ui-font-family, system-ui, sans-serif); font-size: 13px;
  color: var(--jp-ui-font-color1, #222); max-width: 860px; }
.lmx-context { font-family: var(--jp-code-font-family, monospace); white-space: pre-wrap; padding: 6px 8px;
  border: 1px solid var(--jp-border-color2, #ddd); border-radius: 4px; margin-bottom: 6px; max-height: 9em;
  overflow-y: auto; }
.lmx-prompt { color: var(--jp-ui-font-color2, #666); }
.lmx-gen { border-radius: 3px; padding: 0 1px; }
.lmx-gen.step { background: #d8ecff; }
.lmx-gen.pick { background: #ffe7b8; }
.lmx-controls { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap: 2px 16px;
  margin-bottom: 6px; }
.lmx-slider { display: flex; align-items: center; gap: 6px; }
.lmx-slider label { width: 100px; }
.lmx-slider input[type=range] { flex: 1; min-width: 80px; }
.lmx-slider.wide { grid-column: 1 / -1; }
.lmx-slider input[type=number] { width: 64px; font-variant-numeric: tabular-nums; }
.lmx-slider output { width: 44px; color: var(--jp-ui-font-color2, #666); font-size: 11px; }
.lmx-note { color: var(--jp-ui-font-color2, #666); font-size: 12px; }
.lmx-buttons { display: flex; gap: 6px; align-items: center; margin: 4px 0 6px 0; flex-wrap: wrap; }
.lmx-buttons button { cursor: pointer; padding: 2px 10px; }
.lmx-buttons input { width: 70px; }
.lmx-prompt-row textarea { flex: 1; font-family: var(--jp-code-font-family, monospace); resize: vertical; }
.lmx-stages { color: var(--jp-ui-font-color2, #666); font-size: 12px; margin-bottom: 4px; }
.lmx-row { display: grid; grid-template-columns: 120px 1fr 310px; gap: 8px; align-items: center; height: 20px;
  cursor: pointer; }
.lmx-row:hover { background: var(--jp-layout-color2, #f2f2f2); }
.lmx-row.others { cursor: default; color: var(--jp-ui-font-color2, #666); }
.lmx-tok { font-family: var(--jp-code-font-family, monospace); overflow: hidden; text-overflow: ellipsis;
  white-space: pre; }
.lmx-track { position: relative; height: 14px; background: var(--jp-layout-color2, #f0f0f0); border-radius: 2px; }
.lmx-model { position: absolute; left: 0; top: 0; height: 14px; background: #c9c9c9; border-radius: 2px; }
.lmx-final { position: absolute; left: 0; top: 3px; height: 8px; background: #2f7ed8; border-radius: 2px; }
.lmx-num { font-variant-numeric: tabular-nums; font-size: 12px; white-space: nowrap; }
.lmx-row.cut { opacity: 0.45; }
.lmx-row.cut .lmx-tok { text-decoration: line-through; }
.lmx-cut { color: #b35900; font-size: 11px; }
.lmx-hist { margin-top: 8px; }
.lmx-hist-title { font-weight: 600; margin-bottom: 2px; }
.lmx-hrow { display: grid; grid-template-columns: 120px 1fr 310px; gap: 8px; align-items: center; height: 18px; }
.lmx-hbars { display: flex; flex-direction: column; gap: 1px; }
.lmx-theory { height: 6px; background: #2f7ed8; border-radius: 2px; }
.lmx-seen { height: 6px; background: #e8833a; border-radius: 2px; }
.lmx-legend span { display: inline-block; width: 10px; height: 8px; margin: 0 3px 0 8px; border-radius: 2px; }
.lmx-error { color: #c00; margin-top: 4px; }
`;

/** How a token's text is shown: visible whitespace, never empty. */
export function tokenLabel(text, eog = false) {
  if (eog) return "⏹ end of text";
  if (text === undefined || text === null || text === "") return "∅";
  return String(text).replace(/ /g, "␣").replace(/\n/g, "↵").replace(/\t/g, "⇥");
}

/** A probability as a short percentage. */
export function formatPercent(p) {
  if (!(p > 0)) return "0%";
  if (p >= 0.1) return `${(p * 100).toFixed(1)}%`;
  if (p >= 0.001) return `${(p * 100).toFixed(2)}%`;
  if (p >= 0.00001) return `${(p * 100).toFixed(3)}%`;
  return "<0.001%";
}

/** A slider's value as shown next to it ("off" when the sampler is off). */
export function sliderText(spec, value) {
  if (spec.off !== null && Number(value) === spec.off) return "off";
  if (spec.zero && Number(value) === 0) return spec.zero;
  return spec.int ? String(Math.round(value)) : Number(value).toFixed(2);
}

/** A value typed in a slider's number box, clamped to what the setting takes; null when it is no number.
 * The box takes more than the slider (top-k up to the vocabulary), never less than the slider's minimum. */
export function parseEntry(spec, text) {
  const value = spec.int ? parseInt(text, 10) : parseFloat(text);
  if (!Number.isFinite(value)) return null;
  const high = spec.int ? Infinity : spec.max;
  return Math.min(Math.max(value, spec.min), high);
}

/** Index of the repeat-penalty stage in a distribution's stages (-1 when the penalty is off). */
function penaltyStage(stages) {
  return (stages || []).findIndex((s) => s.name === "penalties");
}

/** True when the repeat penalty lowered this candidate: its probability after the penalty stage is
 * clearly below the model's (renormalising alone only raises the probabilities of the others). */
export function loweredByPenalty(candidate, stages) {
  const i = penaltyStage(stages);
  const probs = candidate.stage_probs || [];
  return i >= 0 && i < probs.length && probs[i] < candidate.prob * 0.98;
}

/** What the samplers did to a candidate, in words: "cut by top-p", "lowered by repeat penalty, then cut
 * by top-p", "lowered by repeat penalty", or "" when it kept its chance. */
export function fateText(row) {
  const cut = row.cutBy ? `cut by ${STAGE_LABELS[row.cutBy] || row.cutBy}` : "";
  if (row.lowered && row.cutBy === "penalties") return "cut by repeat penalty";
  if (row.lowered) return cut ? `lowered by repeat penalty, then ${cut}` : "lowered by repeat penalty";
  return cut;
}

/** What Step does with the seed, in words (the replay after Back is no accident: it is seeded by position). */
export function stepNote(mode, seed, position) {
  if (mode === "random") return "Step draws with a fresh random seed each time: after Back, Step may give another token.";
  const s = (Number(seed) + Number(position)) % 2 ** 32;
  return `Step samples with seed ${seed} + position ${position} = ${s}: after Back, Step gives the same token `
    + "again (seed fixed; choose random for a fresh draw).";
}

/** Shannon entropy (nats) of the probabilities ``probs`` (zeros ignored). */
export function entropy(probs) {
  let h = 0;
  for (const p of probs) if (p > 0) h -= p * Math.log(p);
  return h;
}

/** A bar's width (%) for probability ``p`` on the axis ``scale``: "auto" (``top`` = full width), "fixed"
 * (0–100 %) or "log" (10⁻⁶ to 1, so that tiny probabilities still show). */
export function barWidth(p, scale, top) {
  if (!(p > 0)) return 0;
  if (scale === "fixed") return 100 * p;
  if (scale === "log") return Math.max(0, Math.min(100, (100 * (Math.log10(p) + 6)) / 6));
  return (100 * p) / top;
}

/** "entropy 2.31 bits ≈ 5.0 effective choices (the model alone: 4.10 bits ≈ 17.1)". */
export function entropyLine(dist) {
  if (!dist || dist.entropy_bits === undefined) return "";
  const n = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
  return `entropy ${dist.entropy_bits.toFixed(2)} bits ≈ ${n(dist.effective_choices)} effective choices `
    + `(the model alone: ${dist.model_entropy_bits.toFixed(2)} bits ≈ ${n(dist.model_effective_choices)})`;
}

/** The bar rows of a distribution: one per candidate, plus "others". */
export function barRows(dist, axis = "auto") {
  const candidates = (dist && dist.candidates) || [];
  const eog = new Set((dist && dist.eog) || []);
  const scale = Math.max(1e-12, ...candidates.map((c) => Math.max(c.prob, c.final_prob)));
  const rows = candidates.map((c) => ({
    token: c.token,
    label: tokenLabel(c.text, eog.has(c.token)),
    prob: c.prob,
    finalProb: c.final_prob,
    cutBy: c.cut_by,
    cut: !(c.final_prob > 0),
    lowered: loweredByPenalty(c, dist.stages),
    modelWidth: barWidth(c.prob, axis, scale),
    finalWidth: barWidth(c.final_prob, axis, scale),
    stageProbs: c.stage_probs || [],
  }));
  return { rows, others: dist ? dist.other_prob || 0 : 0, scale };
}

/** The histogram rows of "Sample N": theoretical probability and observed frequency per candidate. */
export function histogramRows(dist, hist) {
  if (!hist || !hist.n || !dist) return null;
  const counts = hist.counts || {};
  const n = hist.n;
  const shown = new Set();
  const rows = [];
  for (const c of dist.candidates || []) {
    const count = counts[String(c.token)] || 0;
    shown.add(String(c.token));
    if (!(c.final_prob > 0) && count === 0) continue;
    rows.push({ token: c.token, label: tokenLabel(c.text), expected: c.final_prob, count, observed: count / n });
  }
  let otherCount = 0;
  for (const [token, count] of Object.entries(counts)) if (!shown.has(token)) otherCount += count;
  if (otherCount > 0 || dist.other_prob > 0) {
    rows.push({ token: null, label: "(others)", expected: dist.other_prob || 0, count: otherCount,
                observed: otherCount / n });
  }
  const scale = Math.max(1e-12, ...rows.map((r) => Math.max(r.expected, r.observed)));
  return { rows, n, seed: hist.seed, scale };
}

/** A one-line summary of the sampler stages: "top-k=40: 40 left → top-p=0.95: 4 left → …". */
export function stagesLine(dist) {
  const stages = (dist && dist.stages) || [];
  if (!stages.length) return "no sampler shapes the distribution";
  return stages
    .map((s) => {
      const chance = s.chance < 1 ? ` (applies ${Math.round(s.chance * 100)}% of the time)` : "";
      const cut = s.removed ? `, cut ${s.removed} (${formatPercent(s.removed_mass)} of the model's mass)` : "";
      return `${STAGE_LABELS[s.name] || s.name}: ${s.kept} left${cut}${chance}`;
    })
    .join(" → ");
}

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "className") el.className = v;
    else if (k === "style") el.setAttribute("style", v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function tooltip(row, stages) {
  const lines = [`${row.label}  (token ${row.token})`, `model: ${formatPercent(row.prob)}`];
  stages.forEach((s, i) => {
    if (i < row.stageProbs.length) lines.push(`after ${STAGE_LABELS[s.name] || s.name}: ${formatPercent(row.stageProbs[i])}`);
  });
  if (row.lowered || row.cut) lines.push(fateText(row));
  if (!row.cut) lines.push(`sampled with ${formatPercent(row.finalProb)}`);
  lines.push("click to append this token");
  return lines.join("\n");
}

function render({ model, el }) {
  const root = h("div", { className: "lmx" });
  root.append(h("style", {}, CSS));
  const context = h("div", { className: "lmx-context" });
  const controls = h("div", { className: "lmx-controls" });
  const buttons = h("div", { className: "lmx-buttons" });
  const stages = h("div", { className: "lmx-stages" });
  const bars = h("div", { className: "lmx-bars" });
  const hist = h("div", { className: "lmx-hist" });
  const error = h("div", { className: "lmx-error" });
  const note = h("div", { className: "lmx-note" });
  const spread = h("div", { className: "lmx-note lmx-entropy" });
  const promptBox = h("textarea", { name: "prompt", rows: 2, "aria-label": "prompt" });
  const promptRow = h("div", { className: "lmx-buttons lmx-prompt-row" }, promptBox,
    h("button", { name: "set_prompt", title: "start again from this prompt",
                  onclick: () => model.send({ action: "prompt", text: promptBox.value }) }, "Use prompt"));
  root.append(promptRow, context, controls, buttons, note, spread, stages, bars, hist, error);
  el.append(root);
  // Keys typed in the explorer are its own: JupyterLab's notebook shortcuts (ArrowUp = previous cell,
  // A/B/D,D…) listen on the document, so the events must not bubble out (and Lumino skips marked nodes).
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  root.setAttribute("data-p-suppress-shortcuts", "true");
  for (const type of ["keydown", "keypress", "keyup"]) root.addEventListener(type, (e) => e.stopPropagation());

  const send = (msg) => model.send(msg);
  const inputs = {};
  const setValue = (spec, value) => {
    model.set(spec.name, value);
    model.save_changes();
  };
  for (const spec of SLIDERS) {
    const input = h("input", { type: "range", min: spec.min, max: spec.max, step: spec.step, name: spec.name,
                               "aria-label": spec.label });
    const entry = h("input", { type: "number", min: spec.min, step: spec.step, name: `${spec.name}_entry`,
                               "aria-label": `${spec.label} value` });
    if (!spec.int) entry.setAttribute("max", spec.max);
    const out = h("output", {});
    input.addEventListener("input", () => {
      const value = spec.int ? parseInt(input.value, 10) : parseFloat(input.value);
      entry.value = value;
      out.textContent = sliderText(spec, value);
      setValue(spec, value);
    });
    entry.addEventListener("change", () => {
      const value = parseEntry(spec, entry.value);
      if (value === null) entry.value = model.get(spec.name);
      else setValue(spec, value);
    });
    inputs[spec.name] = { input, entry, out, spec };
    controls.append(h("div", { className: `lmx-slider${spec.wide ? " wide" : ""}` },
      h("label", {}, spec.label), input, entry, out));
  }
  const seed = h("input", { type: "number", min: 0, step: 1, name: "seed" });
  const seedMode = h("select", { name: "seed_mode", title: "fixed: Step is replayable (seed + position); random: a fresh seed per Step" },
    h("option", { value: "fixed" }, "fixed"), h("option", { value: "random" }, "random"));
  seedMode.value = model.get("seed_mode") || "fixed";
  seedMode.addEventListener("change", () => {
    model.set("seed_mode", seedMode.value);
    model.save_changes();
  });
  seed.value = model.get("seed");
  seed.addEventListener("change", () => {
    const value = parseInt(seed.value, 10);
    if (Number.isFinite(value) && value >= 0) {
      model.set("seed", value);
      model.save_changes();
    }
  });
  const axis = h("select", { name: "scale", title: "the bars' axis" },
    h("option", { value: "auto" }, "axis: auto"), h("option", { value: "fixed" }, "axis: 0–100%"),
    h("option", { value: "log" }, "axis: log"));
  axis.addEventListener("change", () => { model.set("scale", axis.value); model.save_changes(); });
  const playN = h("input", { type: "number", min: 1, max: 500, step: 1, name: "play_n", "aria-label": "steps to play" });
  playN.addEventListener("change", () => {
    const n = parseInt(playN.value, 10);
    if (Number.isFinite(n) && n >= 1 && n <= 500) { model.set("play_n", n); model.save_changes(); }
  });
  const sampleButton = h("button", { name: "sample", onclick: () => send({ action: "sample", n: model.get("samples_n") }) });
  buttons.append(
    h("button", { name: "step", title: "append a token sampled from this distribution", onclick: () => send({ action: "step" }) }, "Step"),
    h("button", { name: "back", title: "remove the last appended token", onclick: () => send({ action: "back" }) }, "Back"),
    sampleButton,
    h("button", { name: "reset", title: "back to the prompt", onclick: () => send({ action: "reset" }) }, "Reset"),
    h("button", { name: "play", title: "Step this many times", onclick: () => send({ action: "play", n: model.get("play_n") }) }, "Play"),
    playN,
    axis,
    h("label", {}, "seed "),
    seedMode,
    seed,
  );

  function drawSliders() {
    for (const { input, entry, out, spec } of Object.values(inputs)) {
      const value = model.get(spec.name);
      if (Number(input.value) !== Number(value)) input.value = value;
      if (document.activeElement !== entry && Number(entry.value) !== Number(value)) entry.value = value;
      out.textContent = sliderText(spec, value);
    }
    if (Number(seed.value) !== Number(model.get("seed"))) seed.value = model.get("seed");
    seedMode.value = model.get("seed_mode") || "fixed";
    note.textContent = stepNote(seedMode.value, model.get("seed"), (model.get("generated") || []).length);
    sampleButton.textContent = `Sample ${model.get("samples_n")}`;
    if (document.activeElement !== playN) playN.value = model.get("play_n") || 20;
    axis.value = model.get("scale") || "auto";
  }

  function drawPrompt() {
    if (document.activeElement !== promptBox) promptBox.value = model.get("prompt_text") || "";
  }

  function drawContext() {
    context.replaceChildren(h("span", { className: "lmx-prompt" }, model.get("prompt_text")));
    for (const g of model.get("generated") || []) {
      context.append(h("span", { className: `lmx-gen ${g.how}`, title: `token ${g.token} · p=${formatPercent(g.prob)} · ${g.how === "pick" ? "picked" : "sampled"}` }, g.text));
    }
    context.scrollTop = context.scrollHeight;
  }

  function drawBars() {
    const dist = model.get("distribution") || {};
    stages.textContent = stagesLine(dist);
    spread.textContent = entropyLine(dist);
    const { rows, others } = barRows(dist, model.get("scale"));
    const list = rows.map((row) => {
      const fate = fateText(row);
      const num = row.cut
        ? h("span", { className: "lmx-num" }, `${formatPercent(row.prob)} `, h("span", { className: "lmx-cut" }, fate))
        : h("span", { className: "lmx-num", title: fate }, `${formatPercent(row.finalProb)}`,
            h("span", { className: "lmx-prompt" }, ` (model ${formatPercent(row.prob)})`),
            row.lowered ? h("span", { className: "lmx-cut" }, " ↓ penalty") : null);
      return h(
        "div",
        { className: `lmx-row${row.cut ? " cut" : ""}`, title: tooltip(row, dist.stages || []), "data-token": row.token,
          onclick: () => send({ action: "pick", token: row.token }) },
        h("span", { className: "lmx-tok" }, row.label),
        h("div", { className: "lmx-track" },
          h("div", { className: "lmx-model", style: `width:${row.modelWidth.toFixed(2)}%` }),
          h("div", { className: "lmx-final", style: `width:${row.finalWidth.toFixed(2)}%` })),
        num,
      );
    });
    if (rows.length) {
      const left = dist.support_size !== undefined ? `${dist.support_size} token(s) can be sampled` : "";
      list.push(h("div", { className: "lmx-row others" }, h("span", { className: "lmx-tok" }, "(others)"), h("span", { className: "lmx-prompt" }, left),
        h("span", { className: "lmx-num" }, formatPercent(others))));
    }
    bars.replaceChildren(...list);
  }

  function drawHistogram() {
    const data = histogramRows(model.get("distribution"), model.get("histogram"));
    if (!data) {
      hist.replaceChildren();
      return;
    }
    const title = h("div", { className: "lmx-hist-title" }, `${data.n} samples (seed ${data.seed})`,
      h("span", { className: "lmx-legend" }, h("span", { style: "background:#2f7ed8" }), "theory", h("span", { style: "background:#e8833a" }), "sampled"));
    const rows = data.rows.map((r) =>
      h("div", { className: "lmx-hrow", "data-token": r.token === null ? "others" : r.token },
        h("span", { className: "lmx-tok" }, r.label),
        h("div", { className: "lmx-hbars" },
          h("div", { className: "lmx-theory", style: `width:${((100 * r.expected) / data.scale).toFixed(2)}%` }),
          h("div", { className: "lmx-seen", style: `width:${((100 * r.observed) / data.scale).toFixed(2)}%` })),
        h("span", { className: "lmx-num" }, `${formatPercent(r.expected)} vs ${r.count}/${data.n}`)));
    hist.replaceChildren(title, ...rows);
  }

  function drawError() {
    error.textContent = model.get("error") || "";
  }

  const handlers = [
    ["change:distribution", () => { drawBars(); drawHistogram(); }],
    ["change:histogram", drawHistogram],
    ["change:generated", () => { drawContext(); drawSliders(); }],
    ["change:seed_mode", drawSliders],
    ["change:prompt_text", () => { drawContext(); drawPrompt(); }],
    ["change:scale", () => { drawSliders(); drawBars(); }],
    ["change:play_n", drawSliders],
    ["change:error", drawError],
    ["change:seed", drawSliders],
    ["change:samples_n", drawSliders],
    ...SLIDERS.map((s) => [`change:${s.name}`, drawSliders]),
  ];
  for (const [event, fn] of handlers) model.on(event, fn);
  drawSliders();
  drawContext();
  drawPrompt();
  drawBars();
  drawHistogram();
  drawError();
  return () => {
    for (const [event, fn] of handlers) model.off(event, fn);
  };
}

export default { render };
