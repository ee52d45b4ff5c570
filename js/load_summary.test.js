import { beforeEach, describe, expect, it } from "vitest";
import { render, renderSummary } from "./load_summary.js";
import { fakeModel } from "./test/fake_model.js";

const SUMMARY = {
  header: "loaded stories260K as 'stories260K' in 0.010 s",
  model: [["architecture", "llama"], ["trained context", "2048 tokens"]],
  config: [
    { key: "context_length", effective: "1024", requested: "1000", differs: true, rest: true, llama: "n_ctx" },
    { key: "eval_batch_size", effective: "512", requested: "", differs: false, rest: true, llama: "n_batch" },
    { key: "seed", effective: "7", requested: "7", differs: false, rest: false, llama: "" },
  ],
  notes: ["context_length 1000 → 1024: llama.cpp allocates the KV cache in multiples of 256 tokens"],
  memory: "weights 1.12 MiB · KV cache 320 KiB · total 1.44 MiB",
  load_time: "0.010 s",
};

beforeEach(() => {
  document.body.innerHTML = "";
});

describe("renderSummary", () => {
  it("shows requested vs applied and highlights what was applied differently", () => {
    const el = renderSummary(SUMMARY);
    const row = (key) => el.querySelector(`tr[data-key="${key}"]`);
    expect(row("context_length").className).toBe("lmsext-differs");
    expect(row("context_length").querySelector(".lmsext-requested").textContent).toBe("1000");
    expect(row("context_length").querySelector(".lmsext-effective").textContent).toBe("1024");
    expect(row("context_length").textContent).toContain("⚠");
    expect(row("eval_batch_size").className).toBe("");
    expect(row("eval_batch_size").querySelector(".lmsext-requested").textContent).toBe("default");
    expect(row("seed").className).toBe("lmsext-as-requested");
    expect(el.querySelector(".lmsext-notes li").textContent).toContain("1000 → 1024");
    expect(el.querySelector(".lmsext-memory").textContent).toContain("KV cache 320 KiB");
    expect(el.querySelector(".lmsext-summary-header").textContent).toBe(SUMMARY.header);
    expect(el.querySelector("details").textContent).toContain("2048 tokens");
  });

  it("escapes everything (text nodes only)", () => {
    const el = renderSummary({ ...SUMMARY, header: "<img src=x onerror=alert(1)>" });
    expect(el.querySelector("img")).toBeNull();
  });

  it("says so when there is nothing to show", () => {
    expect(renderSummary({}).textContent).toBe("no model loaded yet");
  });
});

describe("LoadSummaryView", () => {
  it("redraws when the summary trait changes and cleans up", () => {
    const model = fakeModel({ summary: {} });
    const el = document.createElement("div");
    const cleanup = render({ model, el });
    expect(el.textContent).toBe("no model loaded yet");
    model.set("summary", SUMMARY);
    expect(el.querySelector('tr[data-key="context_length"]')).not.toBeNull();
    cleanup();
    expect(model.listeners("change:summary")).toBe(0);
  });
});
