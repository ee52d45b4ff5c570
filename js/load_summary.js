// LoadSummaryView: the front end of lmsext.widgets.LoadSummaryWidget (anywidget ES module, no build step).
//
// Renders the synced `summary` trait (built by the kernel from a LoadResult, see
// lmsext/widgets/summary.py): the model, every effective load setting next to what was requested —
// a setting llama.cpp applied differently is highlighted and its note says why —, memory and load time.

const STYLE_ID = "lmsext-summary-style";
const CSS = `
.lmsext-summary { font-family: var(--jp-ui-font-family, sans-serif); font-size: 13px; line-height: 1.4; }
.lmsext-summary-header { font-weight: 600; margin-bottom: 4px; }
.lmsext-summary table { border-collapse: collapse; margin: 2px 0 8px 0; }
.lmsext-summary th, .lmsext-summary td { text-align: left; padding: 1px 12px 1px 4px; vertical-align: top; }
.lmsext-summary th { font-weight: 600; border-bottom: 1px solid var(--jp-border-color2, #ddd); }
.lmsext-summary .lmsext-muted { color: var(--jp-ui-font-color2, #888); }
.lmsext-summary .lmsext-llama { color: var(--jp-ui-font-color2, #888); font-size: 11px; }
.lmsext-summary tr.lmsext-differs td { background: rgba(255, 152, 0, 0.16); }
.lmsext-summary tr.lmsext-differs td.lmsext-effective { color: #b35900; font-weight: 600; }
.lmsext-summary tr.lmsext-as-requested td.lmsext-effective { color: #2e7d32; }
.lmsext-summary .lmsext-notes li { color: #b35900; }
.lmsext-summary details summary { cursor: pointer; }
`;

function ensureStyle(doc) {
  if (doc.getElementById(STYLE_ID)) return;
  const style = doc.createElement("style");
  style.id = STYLE_ID;
  style.textContent = CSS;
  doc.head.appendChild(style);
}

function cell(doc, tag, text, className) {
  const el = doc.createElement(tag);
  el.textContent = text === undefined || text === null ? "" : String(text);
  if (className) el.className = className;
  return el;
}

/** Build the summary element for `data` (the `summary` trait); an empty div when there is none. */
export function renderSummary(data, doc = document) {
  const root = doc.createElement("div");
  root.className = "lmsext-summary";
  if (!data || !data.config) {
    root.appendChild(cell(doc, "div", "no model loaded yet", "lmsext-muted"));
    return root;
  }
  root.appendChild(cell(doc, "div", data.header, "lmsext-summary-header"));

  const config = doc.createElement("table");
  config.className = "lmsext-config";
  const head = doc.createElement("tr");
  for (const title of ["setting (REST name)", "requested", "applied", "llama.cpp"]) {
    head.appendChild(cell(doc, "th", title));
  }
  config.appendChild(head);
  for (const row of data.config) {
    const tr = doc.createElement("tr");
    tr.dataset.key = row.key;
    const requested = row.requested !== "" && row.requested !== null && row.requested !== undefined;
    if (row.differs) tr.className = "lmsext-differs";
    else if (requested) tr.className = "lmsext-as-requested";
    const name = cell(doc, "td", "");
    const code = cell(doc, "code", row.key);
    if (row.rest) code.style.fontWeight = "600";
    name.appendChild(code);
    if (row.differs) name.appendChild(doc.createTextNode(" ⚠"));
    tr.appendChild(name);
    const requestedClass = requested ? "lmsext-requested" : "lmsext-requested lmsext-muted";
    tr.appendChild(cell(doc, "td", requested ? row.requested : "default", requestedClass));
    tr.appendChild(cell(doc, "td", row.effective, "lmsext-effective"));
    tr.appendChild(cell(doc, "td", row.llama || "", "lmsext-llama"));
    config.appendChild(tr);
  }
  root.appendChild(config);

  if (data.notes && data.notes.length) {
    root.appendChild(cell(doc, "div", "Applied differently / notes", "lmsext-summary-header"));
    const ul = doc.createElement("ul");
    ul.className = "lmsext-notes";
    for (const note of data.notes) ul.appendChild(cell(doc, "li", note));
    root.appendChild(ul);
  }
  const memory = doc.createElement("div");
  memory.className = "lmsext-memory";
  memory.append(cell(doc, "b", "Memory "), doc.createTextNode(`${data.memory || ""}  `), cell(doc, "b", "Load time "),
    doc.createTextNode(data.load_time || ""));
  root.appendChild(memory);

  if (data.model && data.model.length) {
    const details = doc.createElement("details");
    details.appendChild(cell(doc, "summary", "model", "lmsext-muted"));
    const table = doc.createElement("table");
    for (const [key, value] of data.model) {
      const tr = doc.createElement("tr");
      tr.append(cell(doc, "td", key, "lmsext-muted"), cell(doc, "td", value));
      table.appendChild(tr);
    }
    details.appendChild(table);
    root.appendChild(details);
  }
  return root;
}

/** anywidget entry point. */
export function render({ model, el }) {
  const doc = el.ownerDocument || document;
  ensureStyle(doc);
  const draw = () => el.replaceChildren(renderSummary(model.get("summary"), doc));
  draw();
  model.on("change:summary", draw);
  return () => model.off("change:summary", draw);
}

export default { render };
