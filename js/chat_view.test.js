// @vitest-environment jsdom
// ChatView's front end against a fake anywidget model (what Python would sync).
import { describe, expect, it } from "vitest";
import widget, { bubbles, markdownHref } from "./chat_view.js";
import { fakeModel } from "./test/fake_model.js";

const MESSAGES = [
  { role: "user", content: "Tell me a story", reasoning: "" },
  { role: "assistant", content: "Once upon a time", reasoning: "a story, then" },
];

function mount(overrides = {}) {
  const model = fakeModel({
    chat_name: "default", model_name: "stories260K", compose: true, messages: [], live: {}, busy: false,
    status: "", markdown: "# Chat 'default'\n", ...overrides,
  });
  const el = document.createElement("div");
  document.body.replaceChildren(el);
  const cleanup = widget.render({ model, el });
  return { model, el, cleanup };
}

describe("pure helpers", () => {
  it("one bubble per message, the live exchange last with its reply marked live", () => {
    const list = bubbles(MESSAGES, { user: "And then?", content: "The", reasoning: "" });
    expect(list.map((b) => b.dataset.role)).toEqual(["user", "assistant", "user", "assistant"]);
    expect(list[1].querySelector("details summary").textContent).toBe("reasoning");
    expect(list[1].querySelector("details").open).toBe(false); // folded
    expect(list[3].className).toContain("live");
    expect(bubbles(MESSAGES, {}).length).toBe(2);
  });
  it("exports Markdown as a data: URL", () => {
    expect(decodeURIComponent(markdownHref("# Chat\n\n### You").split(",")[1])).toBe("# Chat\n\n### You");
  });
});

describe("the widget", () => {
  it("draws the conversation and the streaming reply", () => {
    const { model, el } = mount({ messages: MESSAGES });
    expect(el.querySelectorAll(".lmc-msg").length).toBe(2);
    expect(el.querySelector(".lmc-title").textContent).toBe("chat 'default' · stories260K");
    model.update({ live: { user: "And then?", content: "The end", reasoning: "" }, busy: true });
    const live = el.querySelector(".lmc-msg.live .lmc-text");
    expect(live.textContent).toBe("The end");
    expect(el.querySelector("button[name=stop]").disabled).toBe(false);
    expect(el.querySelector("button[name=send]").disabled).toBe(true);
    model.update({ live: {}, busy: false, messages: MESSAGES.concat([{ role: "user", content: "And then?" }]) });
    expect(el.querySelector(".lmc-msg.live")).toBeNull();
    expect(el.querySelector("button[name=stop]").disabled).toBe(true);
  });
  it("Send, Enter, Stop and New chat send their actions", () => {
    const { model, el } = mount();
    const input = el.querySelector("textarea");
    input.value = "Hello";
    el.querySelector("button[name=send]").click();
    input.value = "Again";
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    input.value = "   ";
    el.querySelector("button[name=send]").click(); // empty: nothing sent
    model.update({ busy: true });
    el.querySelector("button[name=stop]").click();
    model.update({ busy: false });
    el.querySelector("button[name=new]").click();
    expect(model.sent).toEqual([{ action: "send", text: "Hello" }, { action: "send", text: "Again" },
      { action: "stop" }, { action: "new" }]);
    expect(input.value).toBe("   ");
  });
  it("keeps its key presses from the notebook and hides the message box without compose", () => {
    const { model, el } = mount({ compose: false });
    let seen = 0;
    const count = () => { seen += 1; };
    document.addEventListener("keydown", count);
    el.querySelector("textarea").dispatchEvent(new KeyboardEvent("keydown", { key: "a", bubbles: true }));
    document.removeEventListener("keydown", count);
    expect(seen).toBe(0);
    expect(el.querySelector(".lmc-compose").style.display).toBe("none");
    expect(el.querySelector("button[name=new]").style.display).toBe("none"); // the panel has its own
    expect(el.querySelector(".lmc-export").style.display).toBe("");
    model.update({ status: "12 tokens · stop: userStopped" });
    expect(el.querySelector(".lmc-status").textContent).toBe("12 tokens · stop: userStopped");
  });
  it("Export links the Markdown; cleans up its listeners", () => {
    const { model, el, cleanup } = mount({ markdown: "# Chat 'default'\n\n### You\n\nHi\n" });
    const link = el.querySelector(".lmc-export");
    link.addEventListener("click", (e) => e.preventDefault()); // jsdom cannot follow it; a browser downloads
    link.dispatchEvent(new MouseEvent("click"));
    expect(link.getAttribute("download")).toBe("chat-default.md");
    expect(decodeURIComponent(link.getAttribute("href").split(",")[1])).toContain("### You\n\nHi");
    cleanup();
    expect(model.listeners("change:messages")).toBe(0);
  });
});
