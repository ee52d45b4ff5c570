// @vitest-environment jsdom
// NextTokenExplorer's front end against a fake anywidget model (what Python would sync).
import { beforeEach, describe, expect, it } from "vitest";
import widget, {
  barRows, barWidth, entropy, entropyLine, fateText, formatPercent, histogramRows, loweredByPenalty, parseEntry, sliderText, SLIDERS, stagesLine,
  stepNote, tokenLabel,
} from "./explorer.js";

const DIST = {
  candidates: [
    { token: 298, text: " g", prob: 0.6, final_prob: 0.7, cut_by: null, stage_probs: [0.62, 0.7] },
    { token: 268, text: " b", prob: 0.25, final_prob: 0.3, cut_by: null, stage_probs: [0.24, 0.3] },
    { token: 2, text: "", prob: 0.1, final_prob: 0, cut_by: "top-k", stage_probs: [0.1, 0] },
    { token: 13, text: "\n", prob: 0.05, final_prob: 0, cut_by: "min-p", stage_probs: [0.04, 0] },
  ],
  stages: [
    { name: "penalties", setting: "repeat_penalty=1.1", kept: 512, removed: 0, removed_mass: 0, chance: 1 },
    { name: "top-k", setting: "top_k=2", kept: 2, removed: 510, removed_mass: 0.15, chance: 1 },
  ],
  other_prob: 0,
  support_size: 2,
  n_vocab: 512,
  eog: [2],
};

function fakeModel(overrides = {}) {
  const state = {
    temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.05, repeat_penalty: 1.1, seed: 0, samples_n: 100, play_n: 20,
    scale: "auto", seed_mode: "fixed",
    prompt_text: "Once upon a time", generated: [], distribution: DIST, histogram: {}, error: "",
    ...overrides,
  };
  const listeners = {};
  return {
    state,
    sent: [],
    saved: 0,
    listeners,
    get: (k) => state[k],
    set: (k, v) => { state[k] = v; },
    save_changes() { this.saved += 1; },
    send(msg) { this.sent.push(msg); },
    on(event, fn) { (listeners[event] ||= []).push(fn); },
    off(event, fn) { listeners[event] = (listeners[event] || []).filter((f) => f !== fn); },
    update(k, v) { state[k] = v; (listeners[`change:${k}`] || []).forEach((f) => f()); },
  };
}

describe("pure helpers", () => {
  it("shows whitespace and empty tokens", () => {
    expect(tokenLabel(" a\nb\t")).toBe("␣a↵b⇥");
    expect(tokenLabel("")).toBe("∅");
    expect(tokenLabel("x", true)).toBe("⏹ end of text");
  });
  it("formats percentages", () => {
    expect(formatPercent(0.5)).toBe("50.0%");
    expect(formatPercent(0.0123)).toBe("1.23%");
    expect(formatPercent(0)).toBe("0%");
    expect(formatPercent(0.00087)).toBe("0.087%");
    expect(formatPercent(1e-6)).toBe("<0.001%");
  });
  it("says when a sampler is off", () => {
    const [temp, topK, topP] = SLIDERS;
    expect(sliderText(topK, 0)).toBe("off");
    expect(sliderText(topK, 40)).toBe("40");
    expect(sliderText(topP, 1)).toBe("off");
    expect(sliderText(temp, 0)).toBe("greedy");
    expect(sliderText(temp, 0.8)).toBe("0.80");
  });
  it("scales bars to the largest probability and marks cut tokens", () => {
    const { rows, others } = barRows(DIST);
    expect(rows.map((r) => r.cut)).toEqual([false, false, true, true]);
    expect(rows[0].finalWidth).toBeCloseTo(100);
    expect(rows[1].modelWidth).toBeCloseTo((100 * 0.25) / 0.7);
    expect(rows[2].label).toBe("⏹ end of text");
    expect(others).toBe(0);
  });
  it("builds the histogram beside the theory", () => {
    const data = histogramRows(DIST, { n: 100, seed: 7, counts: { 298: 68, 268: 31, 999: 1 } });
    expect(data.rows.map((r) => [r.label, r.count])).toEqual([["␣g", 68], ["␣b", 31], ["(others)", 1]]);
    expect(data.rows[0].expected).toBe(0.7);
    expect(data.rows[0].observed).toBe(0.68);
    expect(histogramRows(DIST, {})).toBeNull();
  });
  it("tells a token the repeat penalty lowered from one a later sampler cut", () => {
    const [first, , eog, newline] = DIST.candidates;
    expect(loweredByPenalty(first, DIST.stages)).toBe(false); // renormalising raised it: not lowered
    expect(loweredByPenalty(eog, DIST.stages)).toBe(false);
    expect(loweredByPenalty(newline, DIST.stages)).toBe(true); // 5% → 4% after the penalty
    expect(loweredByPenalty(newline, DIST.stages.slice(1))).toBe(false); // penalty off: no penalties stage
    const rows = barRows(DIST).rows;
    expect(fateText(rows[2])).toBe("cut by top-k");
    expect(fateText(rows[3])).toBe("lowered by repeat penalty, then cut by min-p");
    expect(fateText({ ...rows[3], cut: false, cutBy: null })).toBe("lowered by repeat penalty");
    expect(fateText(rows[0])).toBe("");
  });
  it("reads a typed value, clamped to the setting", () => {
    const [temp, topK] = SLIDERS;
    expect(parseEntry(topK, "1000")).toBe(1000); // the box goes past the slider's end
    expect(parseEntry(topK, "-4")).toBe(0);
    expect(parseEntry(temp, "7")).toBe(2);
    expect(parseEntry(temp, "0.35")).toBe(0.35);
    expect(parseEntry(temp, "abc")).toBeNull();
  });
  it("says Step is seeded by position", () => {
    expect(stepNote("fixed", 5, 3)).toMatch(/seed 5 \+ position 3 = 8: after Back, Step gives the same token again/);
    expect(stepNote("random", 5, 3)).toMatch(/fresh random seed/);
  });
  it("draws the bars on an auto, fixed or log axis", () => {
    expect(barWidth(0.35, "auto", 0.7)).toBeCloseTo(50);
    expect(barWidth(0.35, "fixed", 0.7)).toBeCloseTo(35);
    expect(barWidth(1e-3, "log", 0.7)).toBeCloseTo(50); // 10⁻⁶ … 1: 10⁻³ is half way
    expect(barWidth(1e-9, "log", 0.7)).toBe(0);
    expect(barWidth(0, "fixed", 1)).toBe(0);
    expect(barRows(DIST, "fixed").rows[1].modelWidth).toBeCloseTo(25);
  });
  it("says the entropy and the effective choices", () => {
    expect(entropyLine({ entropy_bits: 2.3219, effective_choices: 5, model_entropy_bits: 4.1, model_effective_choices: 17.15 }))
      .toBe("entropy 2.32 bits ≈ 5.0 effective choices (the model alone: 4.10 bits ≈ 17.1)");
    expect(entropyLine({})).toBe("");
  });
  it("computes the entropy", () => {
    expect(entropy([1, 0])).toBe(0);
    expect(entropy([0.5, 0.5])).toBeCloseTo(Math.log(2));
  });
  it("summarises the stages", () => {
    expect(stagesLine(DIST)).toBe("repeat penalty: 512 left → top-k: 2 left, cut 510 (15.0% of the model's mass)");
    expect(stagesLine({ stages: [{ name: "xtc", kept: 512, removed: 1, removed_mass: 0.6, chance: 0.5 }] }))
      .toContain("applies 50% of the time");
    expect(stagesLine({})).toMatch(/no sampler/);
  });
});

describe("the widget", () => {
  let el;
  let model;
  let cleanup;
  beforeEach(() => {
    document.body.innerHTML = "";
    el = document.createElement("div");
    document.body.append(el);
    model = fakeModel();
    cleanup = widget.render({ model, el });
  });

  it("draws one bar per candidate plus others, greying the cut ones", () => {
    const rows = el.querySelectorAll(".lmx-row");
    expect(rows.length).toBe(5);
    const cut = el.querySelectorAll(".lmx-row.cut");
    expect([...cut].map((r) => r.dataset.token)).toEqual(["2", "13"]);
    expect(cut[0].textContent).toContain("cut by top-k");
    expect(cut[1].title).toContain("cut by min-p");
    expect(rows[0].title).toContain("after top-k: 70.0%");
    expect(rows[0].querySelector(".lmx-final").style.width).toBe("100%");
    expect(el.querySelector(".lmx-stages").textContent).toContain("top-k: 2 left");
  });

  it("clicking a bar picks that token", () => {
    el.querySelectorAll(".lmx-row")[1].click();
    expect(model.sent).toEqual([{ action: "pick", token: 268 }]);
  });

  it("the buttons send their actions", () => {
    for (const name of ["step", "back", "sample", "reset"]) el.querySelector(`button[name=${name}]`).click();
    expect(model.sent).toEqual([{ action: "step" }, { action: "back" }, { action: "sample", n: 100 }, { action: "reset" }]);
    expect(el.querySelector("button[name=sample]").textContent).toBe("Sample 100");
  });

  it("a slider sets its trait and saves", () => {
    const input = el.querySelector("input[name=top_k]");
    input.value = "5";
    input.dispatchEvent(new Event("input"));
    expect(model.state.top_k).toBe(5);
    expect(model.saved).toBe(1);
    expect(input.parentElement.querySelector("output").textContent).toBe("5");
    const temp = el.querySelector("input[name=temperature]");
    temp.value = "1.5";
    temp.dispatchEvent(new Event("input"));
    expect(model.state.temperature).toBe(1.5);
  });

  it("a number box beside each slider sets its trait, beyond the slider's end for top-k", () => {
    const entry = el.querySelector("input[name=top_k_entry]");
    expect(entry.value).toBe("40");
    entry.value = "150";
    entry.dispatchEvent(new Event("change"));
    expect(model.state.top_k).toBe(150);
    entry.value = "x";
    entry.dispatchEvent(new Event("change"));
    expect(model.state.top_k).toBe(150);
    const slider = el.querySelector("input[name=temperature]");
    slider.value = "1.2";
    slider.dispatchEvent(new Event("input"));
    expect(el.querySelector("input[name=temperature_entry]").value).toBe("1.2");
  });

  it("keeps its key presses from the notebook's shortcuts", () => {
    let seen = 0;
    const listener = () => { seen += 1; };
    document.addEventListener("keydown", listener);
    const slider = el.querySelector("input[name=top_p]");
    slider.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowUp", bubbles: true }));
    el.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowUp", bubbles: true }));
    document.removeEventListener("keydown", listener);
    expect(seen).toBe(1); // only the one from outside the explorer's root
    expect(el.querySelector(".lmx").getAttribute("data-lm-suppress-shortcuts")).toBe("true");
  });

  it("the seed toggle sets the seed mode and the note says what Step replays", () => {
    expect(el.querySelector(".lmx-note").textContent).toMatch(/seed 0 \+ position 0 = 0/);
    const mode = el.querySelector("select[name=seed_mode]");
    mode.value = "random";
    mode.dispatchEvent(new Event("change"));
    expect(model.state.seed_mode).toBe("random");
    model.update("seed_mode", "random");
    expect(el.querySelector(".lmx-note").textContent).toMatch(/fresh random seed/);
  });

  it("the prompt box, Play and the axis send their actions", () => {
    const box = el.querySelector("textarea[name=prompt]");
    expect(box.value).toBe("Once upon a time");
    box.value = "The dog";
    el.querySelector("button[name=set_prompt]").click();
    el.querySelector("button[name=play]").click();
    expect(model.sent).toEqual([{ action: "prompt", text: "The dog" }, { action: "play", n: 20 }]);
    const axis = el.querySelector("select[name=scale]");
    axis.value = "log";
    axis.dispatchEvent(new Event("change"));
    expect(model.state.scale).toBe("log");
    const playN = el.querySelector("input[name=play_n]");
    playN.value = "7";
    playN.dispatchEvent(new Event("change"));
    expect(model.state.play_n).toBe(7);
    model.update("distribution", { ...DIST, entropy_bits: 1, effective_choices: 2, model_entropy_bits: 2, model_effective_choices: 4 });
    expect(el.querySelector(".lmx-entropy").textContent).toContain("≈ 2.0 effective choices");
  });

  it("the seed box sets the seed", () => {
    const seed = el.querySelector("input[name=seed]");
    seed.value = "42";
    seed.dispatchEvent(new Event("change"));
    expect(model.state.seed).toBe(42);
    seed.value = "-3";
    seed.dispatchEvent(new Event("change"));
    expect(model.state.seed).toBe(42);
  });

  it("follows changes made in Python", () => {
    model.update("top_p", 1);
    expect(el.querySelector("input[name=top_p]").parentElement.querySelector("output").textContent).toBe("off");
    model.update("generated", [{ token: 298, text: " g", prob: 0.7, how: "step" }, { token: 13, text: "\n", prob: 0, how: "pick" }]);
    const gen = el.querySelectorAll(".lmx-gen");
    expect(gen.length).toBe(2);
    expect(gen[1].className).toContain("pick");
    expect(el.querySelector(".lmx-context").textContent).toBe("Once upon a time g\n");
    model.update("histogram", { n: 100, seed: 3, counts: { 298: 70, 268: 30 } });
    expect(el.querySelector(".lmx-hist-title").textContent).toContain("100 samples (seed 3)");
    expect(el.querySelectorAll(".lmx-hrow").length).toBe(2);
    model.update("histogram", {});
    expect(el.querySelectorAll(".lmx-hrow").length).toBe(0);
    model.update("error", "step: model is busy");
    expect(el.querySelector(".lmx-error").textContent).toBe("step: model is busy");
    model.update("distribution", { ...DIST, candidates: DIST.candidates.slice(0, 1), other_prob: 0.3 });
    expect(el.querySelectorAll(".lmx-row").length).toBe(2);
  });

  it("cleans up its listeners", () => {
    expect(model.listeners["change:distribution"].length).toBe(1);
    cleanup();
    expect(Object.values(model.listeners).every((l) => l.length === 0)).toBe(true);
  });
});
