// ChatView's front end (anywidget ES module; plain DOM, no build step).
//
// Python holds the conversation (the session chat %%lm_respond continues) and streams the reply:
//   traits   messages [{role, content, reasoning}], live {user, content, reasoning} while generating,
//            busy, status, markdown (what Export saves), chat_name, model_name, compose
//   messages to Python: {action: "send", text} | {action: "stop"} | {action: "new"}

const CSS = `
.lmc { font-family: var(--jp-ui-font-family, system-ui, sans-serif); font-size: 13px; max-width: 820px;
  color: var(--jp-ui-font-color1, #222); }
.lmc-head { display: flex; gap: 8px; align-items: center; margin-bottom: 4px; }
.lmc-title { flex: 1; color: var(--jp-ui-font-color2, #666); }
.lmc-log { display: flex; flex-direction: column; gap: 6px; max-height: 420px; overflow-y: auto; padding: 4px;
  border: 1px solid var(--jp-border-color2, #ddd); border-radius: 6px; }
.lmc-empty { color: var(--jp-ui-font-color2, #888); font-style: italic; padding: 6px; }
.lmc-msg { max-width: 80%; padding: 6px 10px; border-radius: 12px; white-space: pre-wrap; word-break: break-word; }
.lmc-msg.user { align-self: flex-end; background: #d8ecff; border-bottom-right-radius: 3px; }
.lmc-msg.assistant { align-self: flex-start; background: var(--jp-layout-color2, #f0f0f0); border-bottom-left-radius: 3px; }
.lmc-msg.system { align-self: center; background: #fff4d6; font-size: 12px; }
.lmc-msg.live::after { content: "▍"; color: #2f7ed8; }
.lmc-role { font-size: 11px; color: var(--jp-ui-font-color2, #666); margin-bottom: 2px; }
.lmc-reasoning { font-size: 12px; color: var(--jp-ui-font-color2, #666); margin-bottom: 4px; }
.lmc-reasoning summary { cursor: pointer; }
.lmc-compose { display: flex; gap: 6px; margin-top: 6px; align-items: flex-end; }
.lmc-compose textarea { flex: 1; min-height: 38px; resize: vertical; font: inherit; }
.lmc button { cursor: pointer; padding: 2px 10px; }
.lmc-status { color: var(--jp-ui-font-color2, #666); font-size: 12px; margin-top: 3px; min-height: 1em; }
`;

const ROLES = { user: "You", assistant: "Assistant", system: "System", tool: "Tool" };

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "className") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** One message as a bubble: role, folded reasoning (when there is some), the text. */
export function bubble(message, live = false) {
  const role = message.role || "assistant";
  const reasoning = message.reasoning
    ? h("details", { className: "lmc-reasoning" }, h("summary", {}, "reasoning"), message.reasoning)
    : null;
  return h("div", { className: `lmc-msg ${role}${live ? " live" : ""}`, "data-role": role },
    h("div", { className: "lmc-role" }, ROLES[role] || role), reasoning,
    h("div", { className: "lmc-text" }, message.content || ""));
}

/** The bubbles: the recorded messages, then the exchange generating now (its reply marked live). */
export function bubbles(messages, live) {
  const out = (messages || []).map((m) => bubble(m));
  if (live && live.user !== undefined) {
    out.push(bubble({ role: "user", content: live.user }));
    out.push(bubble({ role: "assistant", content: live.content, reasoning: live.reasoning }, true));
  }
  return out;
}

/** A data: URL holding ``text`` as a Markdown file (what Export's link downloads). */
export function markdownHref(text) {
  return `data:text/markdown;charset=utf-8,${encodeURIComponent(text || "")}`;
}

function render({ model, el }) {
  const root = h("div", { className: "lmc lmsext-chat-view" });
  root.append(h("style", {}, CSS));
  // Typing here is the view's own: keep the keys from JupyterLab's notebook shortcuts.
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  for (const type of ["keydown", "keypress", "keyup"]) root.addEventListener(type, (e) => e.stopPropagation());

  const title = h("span", { className: "lmc-title" });
  const newChat = h("button", { name: "new", title: "forget the conversation (%lm_chat reset)",
                                onclick: () => model.send({ action: "new" }) }, "New chat");
  const exportLink = h("a", { className: "lmc-export", title: "save the conversation as Markdown" }, "Export .md");
  exportLink.addEventListener("click", () => {
    exportLink.setAttribute("href", markdownHref(model.get("markdown")));
    exportLink.setAttribute("download", `chat-${model.get("chat_name") || "default"}.md`);
  });
  const log = h("div", { className: "lmc-log" });
  const input = h("textarea", { name: "message", placeholder: "Message (Enter sends, Shift+Enter: new line)" });
  const sendButton = h("button", { name: "send" }, "Send");
  const stopButton = h("button", { name: "stop", onclick: () => model.send({ action: "stop" }) }, "Stop");
  const compose = h("div", { className: "lmc-compose" }, input, sendButton);
  const status = h("div", { className: "lmc-status" });
  root.append(h("div", { className: "lmc-head" }, title, stopButton, newChat, exportLink), log, compose, status);
  el.append(root);

  const send = () => {
    const text = input.value;
    if (!text.trim() || model.get("busy")) return;
    model.send({ action: "send", text });
    input.value = "";
  };
  sendButton.addEventListener("click", send);
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      send();
    }
  });

  function drawLog() {
    const list = bubbles(model.get("messages"), model.get("live"));
    log.replaceChildren(...(list.length ? list : [h("div", { className: "lmc-empty" }, "no messages yet")]));
    log.scrollTop = log.scrollHeight;
  }

  function drawState() {
    const busy = !!model.get("busy");
    const modelName = model.get("model_name");
    title.textContent = `chat '${model.get("chat_name")}'${modelName ? ` · ${modelName}` : ""}`;
    root.dataset.busy = String(busy);
    stopButton.disabled = !busy;
    sendButton.disabled = busy;
    newChat.disabled = busy;
    // without compose the view sits in the prediction panel, whose own Send, Stop and New chat drive it
    const own = model.get("compose") ? "" : "none";
    compose.style.display = own;
    stopButton.style.display = own;
    newChat.style.display = own;
    status.textContent = model.get("status") || "";
  }

  const handlers = [
    ["change:messages", drawLog],
    ["change:live", drawLog],
    ["change:busy", drawState],
    ["change:status", drawState],
    ["change:model_name", drawState],
    ["change:chat_name", drawState],
    ["change:compose", drawState],
  ];
  for (const [event, fn] of handlers) model.on(event, fn);
  drawLog();
  drawState();
  return () => {
    for (const [event, fn] of handlers) model.off(event, fn);
  };
}

export default { render };
