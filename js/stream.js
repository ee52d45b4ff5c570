// StreamView: the front end of lmsext.widgets.StreamWidget (an anywidget ES module, no build step).
//
// While a prediction runs the kernel sends custom messages {seq, delta, tokens, elapsed}, coalesced
// to at most ~20 per second: `delta` is only the new text, `seq` counts messages from 0 in each run,
// `tokens`/`elapsed` feed the live counters. Each message appends one text node (O(delta) work).
// At the end the kernel sets the synced traits `text`, `stats`, `stats_line`, `stop_reason` and `done`: the
// view then shows the full text (as Markdown unless turned off) and the kernel's stats line — the plain view's,
// LM Studio's stop reason with plain words beside it — and says each fact once: the running badge and the live
// counters go (the line has them). `prompt` (a completion's prompt) is shown greyed before the text, which then
// stays plain text (it continues the prompt). A new run (the `run` trait changes) starts from an empty view.
//
// Stop: `stop_mode` "message" sends {type: "stop", run} to the kernel (generations on a background
// thread, e.g. the prediction panel's); "interrupt" asks the Jupyter server to interrupt the kernel
// (a generation running in a cell: the engine turns SIGINT into stop reason userStopped).

const STYLE_ID = "lmsext-stream-style";
const CSS = `
.lmsext-stream { font-family: var(--jp-ui-font-family, sans-serif); font-size: 13px; }
.lmsext-stream-bar { display: flex; gap: 10px; align-items: center; font-size: 11px;
  color: var(--jp-ui-font-color2, #666); margin-bottom: 4px; min-height: 20px; }
.lmsext-stream-bar .lmsext-counter b { color: var(--jp-ui-font-color1, #222); font-weight: 600; }
.lmsext-badge { border-radius: 8px; padding: 0 7px; font-size: 11px; line-height: 16px; color: #fff; background: #888; }
.lmsext-badge[data-reason="eosFound"], .lmsext-badge[data-reason="stopStringFound"] { background: #2e7d32; }
.lmsext-badge[data-reason="maxPredictedTokensReached"],
.lmsext-badge[data-reason="contextLengthReached"] { background: #1565c0; }
.lmsext-badge[data-reason="userStopped"] { background: #b35900; }
.lmsext-badge[data-reason="failed"] { background: #c62828; }
.lmsext-badge.lmsext-running { background: #6a1b9a; }
.lmsext-stop { font-size: 11px; padding: 0 8px; cursor: pointer; }
.lmsext-stop[hidden] { display: none !important; }
.lmsext-stream-text { white-space: pre-wrap; max-height: 24em; overflow-y: auto; line-height: 1.45; }
.lmsext-stream-text.lmsext-markdown { white-space: normal; }
.lmsext-stream-text .lmsext-drafted { background: #c8f0c8; }
.lmsext-stream-text.lmsext-markdown p { margin: 0 0 0.6em 0; }
.lmsext-stream-text.lmsext-markdown pre { background: var(--jp-layout-color2, #f3f3f3); padding: 4px 6px;
  overflow-x: auto; }
.lmsext-stream-stats { color: var(--jp-ui-font-color2, #888); font-size: 11px; margin-top: 4px; }
.lmsext-stream-prompt { color: var(--jp-ui-font-color3, #999); }
.lmsext-stream-bar[hidden] { display: none !important; }
.lmsext-stream-error { color: #c62828; }
`;

/** Inject the stylesheet once per document. */
export function ensureStyle(doc = document) {
  if (doc.getElementById(STYLE_ID)) return;
  const style = doc.createElement("style");
  style.id = STYLE_ID;
  style.textContent = CSS;
  doc.head.appendChild(style);
}

/** HTML-escape a string. */
export function escapeHtml(text) {
  const entities = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  return String(text).replace(/[&<>"']/g, (c) => entities[c]);
}

function inline(text) {
  // `text` is already escaped: only our own tags are added.
  return text
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>")
    .replace(/\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g, '<a href="$2" target="_blank" rel="noopener">$1</a>');
}

/** A small, safe Markdown renderer (everything is escaped first): headings, lists, quotes, code, emphasis, links. */
export function renderMarkdown(source) {
  const lines = escapeHtml(source).split("\n");
  const out = [];
  let para = [];
  let list = null;
  const flushPara = () => {
    if (para.length) out.push(`<p>${inline(para.join("<br>"))}</p>`);
    para = [];
  };
  const flushList = () => {
    if (list) out.push(`<${list.tag}>${list.items.map((i) => `<li>${inline(i)}</li>`).join("")}</${list.tag}>`);
    list = null;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (/^\s*```/.test(line)) {
      flushPara();
      flushList();
      const code = [];
      for (i++; i < lines.length && !/^\s*```/.test(lines[i]); i++) code.push(lines[i]);
      out.push(`<pre><code>${code.join("\n")}</code></pre>`);
      continue;
    }
    let m;
    if ((m = /^(#{1,6})\s+(.*)$/.exec(line))) {
      flushPara();
      flushList();
      out.push(`<h${m[1].length}>${inline(m[2])}</h${m[1].length}>`);
    } else if ((m = /^\s*(?:[-*+]|(\d+)[.)])\s+(.*)$/.exec(line))) {
      flushPara();
      const tag = m[1] ? "ol" : "ul";
      if (list && list.tag !== tag) flushList();
      if (!list) list = { tag, items: [] };
      list.items.push(m[2]);
    } else if ((m = /^&gt;\s?(.*)$/.exec(line))) {
      flushPara();
      flushList();
      out.push(`<blockquote>${inline(m[1])}</blockquote>`);
    } else if (!line.trim()) {
      flushPara();
      flushList();
    } else {
      flushList();
      para.push(line);
    }
  }
  flushPara();
  flushList();
  return out.join("");
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  return value < 1 ? `${(value * 1000).toFixed(1)} ms` : `${value.toFixed(2)} s`;
}

/** A stats line from the stats alone, for a widget state saved before the kernel sent its own `stats_line`:
 * "50 tokens · 5117.0 tok/s · first token 2.0 ms · stop: eosFound". */
export function statsLine(stats) {
  if (!stats || stats.predicted_tokens_count === undefined) return "";
  const parts = [`${stats.predicted_tokens_count} tokens`];
  parts.push(stats.tokens_per_second ? `${stats.tokens_per_second.toFixed(1)} tok/s` : "– tok/s");
  parts.push(`first token ${seconds(stats.time_to_first_token_sec)}`);
  let stop = `stop: ${stats.stop_reason}`;
  if (stats.stop_string !== null && stats.stop_string !== undefined) stop += ` (${JSON.stringify(stats.stop_string)})`;
  parts.push(stop);
  if (stats.used_draft_model_key !== null && stats.used_draft_model_key !== undefined) {
    parts.push(`accepted ${stats.accepted_draft_tokens_count}/${stats.total_draft_tokens_count} draft tokens ` +
      `(${stats.used_draft_model_key})`);
  }
  if (stats.error) parts.push(`error: ${stats.error}`);
  return parts.join(" · ");
}

/**
 * The final text as HTML with the `[start, end)` character ranges in `drafted` (text a draft proposed and
 * the model accepted: speculative decoding) in `<span class="lmsext-drafted">`, the rest plain.
 */
export function draftedHtml(text, drafted) {
  let out = "";
  let at = 0;
  for (const [start, end] of drafted) {
    if (start < at || end <= start) continue;
    out += escapeHtml(text.slice(at, start)) + `<span class="lmsext-drafted">${escapeHtml(text.slice(start, end))}</span>`;
    at = end;
  }
  return out + escapeHtml(text.slice(at));
}

/**
 * The view's bookkeeping for one run: which message comes next and the live counters.
 * `apply(msg)` returns the text to append ("" for a duplicate), O(delta).
 */
export class StreamState {
  constructor() {
    this.reset();
  }

  reset() {
    this.nextSeq = 0;
    this.tokens = 0;
    this.elapsed = 0;
    this.firstTokenAt = null;
    this.gaps = 0;
    this.length = 0;
  }

  apply(msg) {
    if (typeof msg.seq !== "number" || typeof msg.delta !== "string") return "";
    if (msg.seq < this.nextSeq) return ""; // already shown (e.g. a snapshot covered it)
    if (msg.seq > this.nextSeq) this.gaps += 1; // lost messages: the final `text` trait repairs the view
    this.nextSeq = msg.seq + 1;
    if (typeof msg.tokens === "number") this.tokens = msg.tokens;
    if (typeof msg.elapsed === "number") this.elapsed = msg.elapsed;
    if (this.firstTokenAt === null && msg.delta) this.firstTokenAt = this.elapsed;
    this.length += msg.delta.length;
    return msg.delta;
  }

  /** Live tokens per second after the first token (null until it can be measured). */
  get tokensPerSecond() {
    if (this.firstTokenAt === null || this.tokens < 2 || this.elapsed <= this.firstTokenAt) return null;
    return (this.tokens - 1) / (this.elapsed - this.firstTokenAt);
  }
}

/** Read the Jupyter page config (base URL, token) the way JupyterLab and Notebook 7 publish it. */
export function jupyterPageConfig(doc = document) {
  const el = doc.getElementById("jupyter-config-data");
  if (!el) return null;
  try {
    return JSON.parse(el.textContent || "{}");
  } catch {
    return null;
  }
}

function cookie(doc, name) {
  const m = (doc.cookie || "").match(new RegExp(`(?:^|;\\s*)${name}=([^;]*)`));
  return m ? decodeURIComponent(m[1]) : null;
}

/** Ask the Jupyter server to interrupt `kernelId` (what the toolbar's ■ does). Resolves to true on success. */
export async function interruptKernel(kernelId, { doc = document, fetchFn = globalThis.fetch } = {}) {
  const config = jupyterPageConfig(doc);
  if (!config || !kernelId || !fetchFn) return false;
  let base = config.baseUrl || "/";
  if (!base.endsWith("/")) base += "/";
  const headers = { "Content-Type": "application/json" };
  if (config.token) headers.Authorization = `token ${config.token}`;
  const xsrf = cookie(doc, "_xsrf");
  if (xsrf) headers["X-XSRFToken"] = xsrf;
  try {
    const response = await fetchFn(`${base}api/kernels/${encodeURIComponent(kernelId)}/interrupt`, {
      method: "POST", headers, credentials: "same-origin",
    });
    return response.ok;
  } catch {
    return false;
  }
}

function element(doc, tag, className, text) {
  const el = doc.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

/** anywidget entry point: render the stream into `el`; returns the cleanup function. */
export function render({ model, el }) {
  const doc = el.ownerDocument || document;
  ensureStyle(doc);
  const state = new StreamState();
  const root = element(doc, "div", "lmsext-stream");
  const bar = element(doc, "div", "lmsext-stream-bar");
  const badge = element(doc, "span", "lmsext-badge");
  const tokens = element(doc, "span", "lmsext-counter lmsext-tokens");
  const rate = element(doc, "span", "lmsext-counter lmsext-rate");
  const ttft = element(doc, "span", "lmsext-counter lmsext-ttft");
  const stop = element(doc, "button", "lmsext-stop jupyter-button", "■ Stop");
  stop.type = "button";
  const body = element(doc, "div", "lmsext-stream-text");
  const footer = element(doc, "div", "lmsext-stream-stats");
  bar.append(badge, tokens, rate, ttft, stop);
  root.append(bar, body, footer);
  el.appendChild(root);

  const counters = () => {
    tokens.innerHTML = `<b>${state.tokens}</b> tokens`;
    const tps = state.tokensPerSecond;
    rate.innerHTML = `<b>${tps === null ? "–" : tps.toFixed(1)}</b> tok/s`;
    ttft.innerHTML = `first token <b>${seconds(state.firstTokenAt)}</b>`;
  };

  const resetBody = (text) => {
    body.textContent = "";
    const prompt = model.get("prompt") || "";
    if (prompt) body.appendChild(element(doc, "span", "lmsext-stream-prompt", prompt)); // greyed, not the reply
    if (text) body.appendChild(doc.createTextNode(text));
  };

  const appendText = (text) => {
    if (!text) return;
    const atBottom = body.scrollHeight - body.scrollTop - body.clientHeight < 24;
    body.appendChild(doc.createTextNode(text)); // O(delta): earlier text is never touched
    if (atBottom) body.scrollTop = body.scrollHeight;
  };

  const showFinal = () => {
    const stats = model.get("stats") || {};
    const reason = model.get("stop_reason") || stats.stop_reason || "";
    const text = model.get("text") || "";
    const error = model.get("error") || "";
    const line = model.get("stats_line") || statsLine(stats);
    root.dataset.done = "true";
    root.dataset.reason = reason || (error ? "failed" : "");
    badge.classList.remove("lmsext-running");
    badge.textContent = reason || (error ? "failed" : "done");
    badge.dataset.reason = reason || (error ? "failed" : "");
    bar.hidden = Boolean(line); // the stats line says the tokens, the rate, the first token and the stop reason
    if (stats.predicted_tokens_count !== undefined) {
      state.tokens = stats.predicted_tokens_count;
      if (stats.time_to_first_token_sec !== undefined) state.firstTokenAt = stats.time_to_first_token_sec;
    }
    counters();
    if (stats.tokens_per_second) rate.innerHTML = `<b>${stats.tokens_per_second.toFixed(1)}</b> tok/s`;
    const drafted = model.get("drafted") || [];
    if (drafted.length) {  // the teaching view of speculative decoding: accepted draft tokens coloured
      body.classList.remove("lmsext-markdown");
      body.innerHTML = draftedHtml(text, drafted);
    } else if (model.get("markdown") && !model.get("prompt")) {
      body.classList.add("lmsext-markdown");
      body.innerHTML = renderMarkdown(text);
    } else {
      body.classList.remove("lmsext-markdown");
      resetBody(text);
    }
    footer.textContent = line;
    footer.classList.toggle("lmsext-stream-error", Boolean(error));
    if (error && !line.includes(error)) footer.textContent = line ? `${line} · ${error}` : error;
    stop.hidden = true;
  };

  const showRunning = () => {
    root.dataset.done = "false";
    bar.hidden = false;
    badge.textContent = model.get("running") ? "generating…" : "waiting";
    badge.dataset.reason = "";
    badge.classList.add("lmsext-running");
    stop.hidden = !model.get("running") || model.get("stop_mode") === "none";
    stop.disabled = false;
    stop.textContent = "■ Stop";
    footer.textContent = "";
    counters();
  };

  const startRun = () => {
    state.reset();
    root.style.display = model.get("run") ? "" : "none"; // nothing to show before the first prediction
    body.classList.remove("lmsext-markdown");
    resetBody("");
    const partial = model.get("text") || "";
    if (model.get("done")) {
      showFinal();
    } else {
      appendText(partial);
      showRunning();
    }
  };

  const onMessage = (msg) => {
    if (!msg || model.get("done")) return;
    if (msg.type === "snapshot") {
      if (typeof msg.seq === "number" && msg.seq >= state.nextSeq) {
        resetBody(msg.text || "");
        state.nextSeq = msg.seq + 1;
        if (typeof msg.tokens === "number") state.tokens = msg.tokens;
        counters();
      }
      return;
    }
    appendText(state.apply(msg));
    counters();
  };

  stop.addEventListener("click", async () => {
    stop.disabled = true;
    stop.textContent = "stopping…";
    const mode = model.get("stop_mode");
    if (mode === "interrupt") {
      const ok = await interruptKernel(model.get("kernel_id"), { doc });
      if (!ok) {
        stop.textContent = "use the kernel's interrupt (■)";
        model.send({ type: "stop", run: model.get("run") }); // handled once the kernel is free
      }
    } else {
      model.send({ type: "stop", run: model.get("run") });
    }
  });

  const onRun = () => startRun();
  const onDone = () => (model.get("done") ? showFinal() : showRunning());
  const onRunning = () => { if (!model.get("done")) showRunning(); };
  const onMarkdown = () => { if (model.get("done")) showFinal(); };
  model.on("msg:custom", onMessage);
  model.on("change:run", onRun);
  model.on("change:done", onDone);
  model.on("change:running", onRunning);
  model.on("change:markdown", onMarkdown);
  startRun();
  if (!model.get("done") && model.get("running")) model.send({ type: "sync" }); // catch up if we joined late

  return () => {
    model.off("msg:custom", onMessage);
    model.off("change:run", onRun);
    model.off("change:done", onDone);
    model.off("change:running", onRunning);
    model.off("change:markdown", onMarkdown);
  };
}

export default { render };
