import { beforeEach, describe, expect, it, vi } from "vitest";
import { draftedHtml, interruptKernel, render, renderMarkdown, statsLine, StreamState } from "./stream.js";
import { fakeModel } from "./test/fake_model.js";

const initial = () => ({
  run: 1, text: "", stats: {}, stop_reason: "", done: false, running: true, error: "", markdown: true,
  stop_mode: "message", kernel_id: "", stats_line: "", prompt: "",
});

function mount(state = initial()) {
  const model = fakeModel(state);
  const el = document.createElement("div");
  document.body.appendChild(el);
  const cleanup = render({ model, el });
  return { model, el, cleanup, body: el.querySelector(".lmsext-stream-text") };
}

const FINAL_STATS = {
  predicted_tokens_count: 7, tokens_per_second: 1234.5, time_to_first_token_sec: 0.002, stop_reason: "userStopped",
  stop_string: null, error: null,
};

const KERNEL_LINE = "7 tokens · 1234.5 tok/s · first token 2.0 ms · stop: userStopped (stopped by the user)";

beforeEach(() => {
  document.body.innerHTML = "";
  document.head.innerHTML = "";
});

describe("StreamState", () => {
  it("applies deltas in order, ignores duplicates and counts gaps", () => {
    const s = new StreamState();
    expect(s.apply({ seq: 0, delta: "Once", tokens: 1, elapsed: 0.01 })).toBe("Once");
    expect(s.apply({ seq: 0, delta: "Once", tokens: 1, elapsed: 0.01 })).toBe("");
    expect(s.apply({ seq: 2, delta: " time", tokens: 5, elapsed: 0.11 })).toBe(" time");
    expect(s.gaps).toBe(1);
    expect(s.nextSeq).toBe(3);
    expect(s.firstTokenAt).toBe(0.01);
    expect(s.tokensPerSecond).toBeCloseTo(40);
    expect(s.apply({ delta: "no seq" })).toBe("");
  });
});

describe("StreamView", () => {
  it("appends each delta as a new text node: earlier text is never rewritten", () => {
    const { model, body } = mount();
    model.emit("msg:custom", { seq: 0, delta: "Once", tokens: 1, elapsed: 0.002 });
    const first = body.firstChild;
    model.emit("msg:custom", { seq: 1, delta: " upon", tokens: 2, elapsed: 0.05 });
    model.emit("msg:custom", { seq: 2, delta: " a time", tokens: 4, elapsed: 0.1 });
    expect(body.textContent).toBe("Once upon a time");
    expect(body.childNodes.length).toBe(3);
    expect(body.firstChild).toBe(first); // untouched: O(delta) per update
    expect(body.firstChild.data).toBe("Once");
  });

  it("shows live counters: tokens, tok/s and time to first token", () => {
    const { model, el } = mount();
    model.emit("msg:custom", { seq: 0, delta: "a", tokens: 1, elapsed: 0.5 });
    model.emit("msg:custom", { seq: 1, delta: "bcd", tokens: 11, elapsed: 1.5 });
    expect(el.querySelector(".lmsext-tokens").textContent).toBe("11 tokens");
    expect(el.querySelector(".lmsext-rate").textContent).toBe("10.0 tok/s");
    expect(el.querySelector(".lmsext-ttft").textContent).toBe("first token 500.0 ms");
    expect(el.querySelector(".lmsext-badge").textContent).toBe("generating…");
  });

  it("sets the final text (as Markdown) and the kernel's stats line, each fact said once", () => {
    const { model, el, body } = mount();
    model.emit("msg:custom", { seq: 0, delta: "# Ti", tokens: 1, elapsed: 0.01 });
    expect(el.querySelector(".lmsext-stream-bar").hidden).toBe(false); // live counters while it runs
    model.update({ text: "# Title\n\nSome **bold** <b>raw</b>", stats: FINAL_STATS, stop_reason: "userStopped",
      stats_line: KERNEL_LINE, running: false, done: true });
    expect(body.querySelector("h1").textContent).toBe("Title");
    expect(body.querySelector("strong").textContent).toBe("bold");
    expect(body.querySelector("b")).toBeNull(); // raw HTML from the model is escaped
    // the kernel's line, plain words beside LM Studio's name; the badge and counters it repeats are gone
    expect(el.querySelector(".lmsext-stream-stats").textContent).toBe(KERNEL_LINE);
    expect(el.querySelector(".lmsext-stream-bar").hidden).toBe(true);
    expect(el.querySelector(".lmsext-stream").dataset.reason).toBe("userStopped");
    const shown = el.cloneNode(true);
    shown.querySelectorAll("[hidden]").forEach((hidden) => hidden.remove());
    expect(shown.textContent.split("userStopped").length - 1).toBe(1); // the stop reason shown once
    expect(el.querySelector(".lmsext-stop").hidden).toBe(true);
    model.emit("msg:custom", { seq: 1, delta: "late", tokens: 2, elapsed: 0.02 }); // after done: ignored
    expect(body.textContent).not.toContain("late");
  });

  it("renders plain text when markdown is off", () => {
    const { model, body } = mount({ ...initial(), markdown: false });
    model.update({ text: "**x**", stats: FINAL_STATS, stop_reason: "eosFound", done: true, running: false });
    expect(body.textContent).toBe("**x**");
    model.set("markdown", true);
    expect(body.querySelector("strong").textContent).toBe("x");
  });

  it("colours the text a draft proposed and the model accepted, and counts it in the stats line", () => {
    const { model, body, el } = mount();
    const stats = { ...FINAL_STATS, used_draft_model_key: "lookup", accepted_draft_tokens_count: 2,
                    total_draft_tokens_count: 3 };
    model.update({ text: "a <b>cd", drafted: [[2, 5], [6, 7]], stats, stop_reason: "eosFound", done: true,
                   running: false });
    const spans = [...body.querySelectorAll(".lmsext-drafted")].map((s) => s.textContent);
    expect(spans).toEqual(["<b>", "d"]);
    expect(body.textContent).toBe("a <b>cd");
    expect(el.textContent).toContain("accepted 2/3 draft tokens (lookup)");
    expect(draftedHtml("xyz", [])).toBe("xyz");
  });

  it("a saved or re-rendered finished widget shows its final state straight away", () => {
    const { el, body } = mount({ ...initial(), text: "The end.", stats: FINAL_STATS, stop_reason: "eosFound",
      done: true, running: false });
    expect(body.textContent).toBe("The end.");
    // saved before the kernel sent its line: one built from the stats
    expect(el.querySelector(".lmsext-stream-stats").textContent).toBe(
      "7 tokens · 1234.5 tok/s · first token 2.0 ms · stop: userStopped");
    expect(el.querySelector(".lmsext-stream").dataset.reason).toBe("eosFound");
  });

  it("shows a completion's prompt greyed before the text that continues it, kept through the end", () => {
    const { model, el, body } = mount({ ...initial(), prompt: "Once upon a time" });
    model.emit("msg:custom", { seq: 0, delta: ", there", tokens: 1, elapsed: 0.01 });
    expect(body.querySelector(".lmsext-stream-prompt").textContent).toBe("Once upon a time");
    expect(body.textContent).toBe("Once upon a time, there");
    model.update({ text: ", there was a **cat**.", stats: FINAL_STATS, stop_reason: "eosFound",
      stats_line: "7 tokens · stop: eosFound (the model ended its reply)", done: true, running: false });
    expect(body.querySelector(".lmsext-stream-prompt").textContent).toBe("Once upon a time");
    expect(body.textContent).toBe("Once upon a time, there was a **cat**."); // plain text: it continues the prompt
    model.emit("msg:custom", { type: "snapshot", seq: 9, text: "x", tokens: 1 }); // after done: ignored
    model.update({ run: 2, prompt: "", text: "", stats: {}, stats_line: "", stop_reason: "", done: false, running: true });
    expect(body.querySelector(".lmsext-stream-prompt")).toBeNull();
    expect(el.querySelector(".lmsext-stream-bar").hidden).toBe(false);
  });

  it("an error is said once: not again when the stats line has it", () => {
    const { model, el } = mount();
    model.update({ stats: { ...FINAL_STATS, error: "boom" }, error: "boom", done: true, running: false,
      stats_line: "7 tokens · stop: failed (failed) · error: boom" });
    expect(el.querySelector(".lmsext-stream-stats").textContent).toBe("7 tokens · stop: failed (failed) · error: boom");
    model.update({ run: 2, stats: {}, stats_line: "", error: "", done: false, running: true });
    model.update({ error: "the model was unloaded", done: true, running: false });
    expect(el.querySelector(".lmsext-stream-stats").textContent).toBe("the model was unloaded");
    expect(el.querySelector(".lmsext-badge").textContent).toBe("failed");
  });

  it("a new run starts from an empty view", () => {
    const { model, body } = mount();
    model.emit("msg:custom", { seq: 0, delta: "old", tokens: 1, elapsed: 0.01 });
    model.update({ text: "old", stats: FINAL_STATS, stop_reason: "eosFound", done: true, running: false });
    model.update({ run: 2, text: "", stats: {}, stop_reason: "", done: false, running: true });
    expect(body.textContent).toBe("");
    model.emit("msg:custom", { seq: 0, delta: "new", tokens: 1, elapsed: 0.01 });
    expect(body.textContent).toBe("new");
  });

  it("a view that joins late asks for a snapshot and takes it", () => {
    const { model, body } = mount();
    expect(model.sent).toEqual([{ type: "sync" }]);
    model.emit("msg:custom", { type: "snapshot", seq: 4, text: "so far", tokens: 9 });
    model.emit("msg:custom", { seq: 4, delta: "dup", tokens: 9, elapsed: 0.1 });
    model.emit("msg:custom", { seq: 5, delta: " more", tokens: 10, elapsed: 0.1 });
    expect(body.textContent).toBe("so far more");
  });

  it("Stop sends {type: stop, run} in message mode", () => {
    const { model, el } = mount();
    const stop = el.querySelector(".lmsext-stop");
    expect(stop.hidden).toBe(false);
    stop.click();
    expect(model.sent.at(-1)).toEqual({ type: "stop", run: 1 });
    expect(stop.disabled).toBe(true);
  });

  it("Stop interrupts the kernel through the Jupyter server in interrupt mode", async () => {
    const config = document.createElement("script");
    config.id = "jupyter-config-data";
    config.type = "application/json";
    config.textContent = JSON.stringify({ baseUrl: "/base/", token: "" });
    document.body.appendChild(config);
    document.cookie = "_xsrf=abc123";
    const fetchFn = vi.fn(async () => ({ ok: true }));
    vi.stubGlobal("fetch", fetchFn);
    const { model, el } = mount({ ...initial(), stop_mode: "interrupt", kernel_id: "k-1" });
    el.querySelector(".lmsext-stop").click();
    await vi.waitFor(() => expect(fetchFn).toHaveBeenCalled());
    const [url, options] = fetchFn.mock.calls[0];
    expect(url).toBe("/base/api/kernels/k-1/interrupt");
    expect(options.method).toBe("POST");
    expect(options.headers["X-XSRFToken"]).toBe("abc123");
    expect(model.sent.filter((m) => m.type === "stop")).toEqual([]);
    vi.unstubAllGlobals();
  });

  it("shows nothing before the first prediction", () => {
    const { model, el } = mount({ ...initial(), run: 0, running: false });
    const root = el.querySelector(".lmsext-stream");
    expect(root.style.display).toBe("none");
    model.update({ run: 1, running: true });
    expect(root.style.display).toBe("");
  });

  it("hides Stop when nothing runs or stopping is not offered", () => {
    expect(mount({ ...initial(), running: false }).el.querySelector(".lmsext-stop").hidden).toBe(true);
    expect(mount({ ...initial(), stop_mode: "none" }).el.querySelector(".lmsext-stop").hidden).toBe(true);
  });

  it("cleanup removes every listener", () => {
    const { model, cleanup } = mount();
    cleanup();
    for (const name of ["msg:custom", "change:run", "change:done", "change:running", "change:markdown"]) {
      expect(model.listeners(name)).toBe(0);
    }
  });
});

describe("interruptKernel", () => {
  it("is false without a Jupyter page config or kernel id", async () => {
    expect(await interruptKernel("k", { fetchFn: async () => ({ ok: true }) })).toBe(false);
  });

  it("sends the token when the page has one", async () => {
    const config = document.createElement("script");
    config.id = "jupyter-config-data";
    config.type = "application/json";
    config.textContent = JSON.stringify({ baseUrl: "/", token: "secret" });
    document.body.appendChild(config);
    const fetchFn = vi.fn(async () => ({ ok: false }));
    expect(await interruptKernel("k 2", { fetchFn })).toBe(false);
    expect(fetchFn.mock.calls[0][0]).toBe("/api/kernels/k%202/interrupt");
    expect(fetchFn.mock.calls[0][1].headers.Authorization).toBe("token secret");
  });
});

describe("renderMarkdown", () => {
  it("renders headings, lists, code, quotes, links and escapes everything else", () => {
    const html = renderMarkdown("## Hi\n- one\n- *two*\n1. first\n\n```\n<x> & y\n```\n> quoted\n"
      + "[site](https://example.org) [bad](javascript:alert(1))\nline `code`");
    expect(html).toContain("<h2>Hi</h2>");
    expect(html).toContain("<ul><li>one</li><li><em>two</em></li></ul><ol><li>first</li></ol>");
    expect(html).toContain("<pre><code>&lt;x&gt; &amp; y</code></pre>");
    expect(html).toContain("<blockquote>quoted</blockquote>");
    expect(html).toContain('<a href="https://example.org" target="_blank" rel="noopener">site</a>');
    expect(html).not.toContain('href="javascript');
    expect(html).toContain("<code>code</code>");
  });

  it("keeps single newlines inside a paragraph as line breaks", () => {
    expect(renderMarkdown("a\nb\n\nc")).toBe("<p>a<br>b</p><p>c</p>");
  });
});

describe("statsLine", () => {
  it("matches the kernel's plain stats line", () => {
    expect(statsLine({ ...FINAL_STATS, stop_reason: "stopStringFound", stop_string: "\n" })).toBe(
      '7 tokens · 1234.5 tok/s · first token 2.0 ms · stop: stopStringFound ("\\n")');
    expect(statsLine({})).toBe("");
  });
});
