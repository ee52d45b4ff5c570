"""Write the three notebooks from the cells below and record their reference outputs.

    .venv/bin/python notebooks/build.py            # write + execute all (what is committed)
    .venv/bin/python notebooks/build.py --no-run   # only write the cells (outputs empty)

Cells marked ``# NBVAL_CHECK_OUTPUT`` (or tagged ``nbval-check-output``) are the deterministic ones
(temperature 0 or a fixed seed): ``pytest --nbval-lax`` compares their outputs with the ones recorded
here, after the replacements of ``notebooks/nbval.cfg`` (timings, paths). Everything else only has to
run. Re-run this script after changing a cell, or when the engine's output legitimately changes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
CHECK = "# NBVAL_CHECK_OUTPUT\n"

SETUP = """\
# The model: stories260K, the default model embedded in lmsext (add yours with LMSEXT_MODELS_PATH)
import lmsext
from lmsext import synth

%load_ext lmsext
client = lmsext.default_client()"""


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(src: str, *, check: bool = False, tags: tuple[str, ...] = ()):
    src = src.strip("\n")
    cell = new_code_cell((CHECK + src) if check and not src.startswith("%%") else src)
    tags = tags + (("nbval-check-output",) if check and src.startswith("%%") else ())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


# ----------------------------------------------------------------------------------- quickstart

QUICKSTART = [
    md("""
# lmsext quickstart

LM Studio's model-loading and prediction API inside this Jupyter kernel, on an in-kernel llama.cpp
engine. This notebook uses **stories260K** — a 260K-parameter base model trained on TinyStories (no chat
template), the default model embedded in lmsext (`lmsext/models/MODELS.md`: source, MIT licence) — and
small models that `lmsext.synth` generates from it, so every cell runs offline on a laptop CPU in
milliseconds. Put any GGUF model key, path or Hugging Face id in their place: `%lm_get owner/repo-GGUF`
(or `client.llm.download`) downloads one into your model folders.
"""),
    code(SETUP),
    md("""
## Load a model — and see what llama.cpp really runs with

`%lm_load` loads a model (or reuses the loaded instance, LM Studio's JIT semantics) and shows the
load-config summary: the model, every effective setting under its REST name, what was requested, what
was applied differently and why, memory and load time.
"""),
    code("%lm_load stories260K --context-length 1024"),
    md("The same through the Python API, which mirrors LM Studio's SDK:"),
    code("""
model = client.llm.model("stories260K")  # JIT: the instance loaded above
lr = model.load_result
print({key: lr.config[key] for key in ("context_length", "eval_batch_size", "num_experts")})
# flash_attention and offload_kv_cache_to_gpu depend on the GPU: they say what llama.cpp did (the gpu row)
print("KV cache where the layers are:", lr.config["offload_kv_cache_to_gpu"] == bool(lr.config["gpu"]["devices"]))
print("chat template:", lr.chat_template)""", check=True),
    md("""
## Respond

`%%lm_respond` streams a reply to the cell. `{variables}` are filled in from the notebook; `--out`
keeps the result. stories260K has no chat template, so lmsext uses a plain `User:`/`Assistant:`
fallback (the summary above says so).
"""),
    code("""
%%lm_respond --temperature 0 --max-tokens 40 --no-history --out story
Tell me a story about a cat."""),
    code("""
print(story.stats.stop_reason, "after", story.stats.predicted_tokens_count, "tokens")
story  # the PredictionResult: its text and the stats line""", check=True),
    md("""
## Complete, with stop strings

`%%lm_complete` continues raw text (no chat template). A stop string ends the prediction and is not part of
the text; the stats say which one was found.
"""),
    code("""
%%lm_complete --temperature 0 --max-tokens 100 --stop . --out done
Once upon a time"""),
    code("""
print(repr(done.content), "→", done.stats.stop_reason, repr(done.stats.stop_string))
r = model.complete("One day, a little dog", config={"temperature": 0, "maxTokens": 100, "stopStrings": ["!", "."]})
print(repr(r.content), "→", r.stats.stop_reason, repr(r.stats.stop_string))""", check=True),
    md("""
## Structured output with a pydantic model

`structured` turns the model's JSON schema into a grammar that constrains sampling, so even a
260K-parameter story model writes valid JSON; `result.parsed` is the validated instance.
"""),
    code("""
from typing import Literal

from pydantic import BaseModel, Field


class Pet(BaseModel):
    name: str = Field(max_length=12)
    kind: Literal["cat", "dog", "bird"]
    friendly: bool


result = model.respond("Describe a pet.", config={"structured": Pet, "temperature": 0, "maxTokens": 80})
print(result.content)
result.parsed""", check=True),
    md("The magics take it too: `--structured Pet` names a notebook variable."),
    code("""
%%lm_respond --structured Pet --temperature 0.7 --seed 3 --no-history
Describe a bird."""),
    md("""
## A multi-turn chat

`synth.chatml_model()` writes (once; it is cached) a copy of stories260K with a ChatML chat template.
Consecutive `%%lm_respond` cells continue a chat; `--chat NAME` keeps several and `%lm_chat show` prints one.
"""),
    code("""
storyteller = client.llm.load(str(synth.chatml_model()), identifier="storyteller", config={"contextLength": 1024})
lr = storyteller.load_result
print(f"{lr.path} loaded in {lr.load_time_seconds:.3f} s")
print(storyteller.apply_prompt_template([{"role": "user", "content": "Hi"}]))""", check=True),
    code("""
%%lm_respond --model storyteller --chat pets --system "You are a storyteller." --temperature 0 --max-tokens 48
Tell me about a dog."""),
    code("""
%%lm_respond --model storyteller --chat pets --temperature 0 --max-tokens 48
What did the dog do next?"""),
    code("%lm_chat show --chat pets"),
    md("The same conversation through the API — a `lmsext.Chat` holds the history:"),
    code("""
chat = lmsext.Chat("You are a storyteller.")
for question in ("Tell me about a dog.", "What did the dog do next?"):
    chat.add_user_message(question)
    reply = storyteller.respond(chat, config={"temperature": 0, "maxTokens": 48})
    chat.add_assistant_response(reply.content)
    print(f"> {question}\\n{reply.content}\\n")""", check=True),
    md("""
## Your own chat format: a prompt template

stories260K is a base model: it has no chat template of its own. A `promptTemplate` (LM Studio's
`LLMPromptTemplate`) chooses the format `respond()` puts the chat in — here a manual one: the strings
before and after each role's message, and a stop string for where the model would start the next turn.
`type: "jinja"` takes a Jinja template instead; `chatml`, `llama3`, `alpaca` and `plain` are built in.
"""),
    code("""
qa = {"type": "manual", "stopStrings": ["\\nQuestion:"], "manualPromptTemplate": {
    "beforeSystem": "", "afterSystem": "\\n\\n", "beforeUser": "Question: ", "afterUser": "\\n",
    "beforeAssistant": "Answer:", "afterAssistant": "\\n"}}
print(model.apply_prompt_template("Who is Lily?", {"promptTemplate": qa}))
reply = model.respond("Who is Lily?", {"promptTemplate": qa, "temperature": 0, "maxTokens": 40})
print(reply.content, "|", reply.stats.stop_reason)""", check=True),
    md("`%%lm_respond --template` takes a built-in name or a file (a `.json` promptTemplate, or a Jinja template):"),
    code("""
%%lm_respond --template alpaca --no-history --temperature 0 --max-tokens 40
Tell me about a cat."""),
    md("""
## Tools and `act()`

`model.act()` is LM Studio's tool loop: the model's reply is parsed for tool calls, the Python functions
run, their results go back into the chat, and the model is asked again — until it answers without a
call, or `max_prediction_rounds` (the last round offers no tools). A function's name, docstring and type
hints make its definition. `rawTools.force` constrains each reply to one well-formed call (a grammar from
the tools' JSON schemas), so even this tiny story model calls the tool; a real chat model does not need it.
`ActView` shows each round — call, arguments, result — as it happens.
"""),
    code("""
from lmsext.tools import ActView


def add(a: int, b: int) -> int:
    \"\"\"Add two integers.\"\"\"
    return a + b


view = ActView()
result = model.act("What is 2 + 3?", [add], max_prediction_rounds=2, **view.callbacks(),
                   config={"rawTools": {"type": "toolArray", "force": True}, "temperature": 0, "maxTokens": 100})"""),
    code("""
print(f"{result.rounds} rounds; the tool ran with {result.tool_calls[0].request.arguments} -> {result.tool_calls[0].result}")
for message in result.chat.messages:
    print(message)""", check=True),
    md("""
## The panels

`LoadPanel` puts every load setting of a model on sliders (ranges from its GGUF metadata) with a live
memory estimate and a Load button; `PredictionPanel` does the same for the prediction settings, with a
prompt, Send and Stop. Both edit the session defaults the magics use.
"""),
    code("""
from IPython.display import display

try:
    from lmsext.widgets import LoadPanel, PredictionPanel
except ImportError as exc:  # an lmsext without the panels
    print(f"the panels are not available here: {exc}")
else:
    display(LoadPanel("stories260K"), PredictionPanel(model))"""),
    md("""
## Where next

- `%lm_ps` lists the loaded instances, `%lm_ls` the models on disk, `%lm_config` the session defaults.
- [load_config.ipynb](load_config.ipynb): what each load setting does, measured live.
- [sampling_lab.ipynb](sampling_lab.ipynb): temperature, top-k, top-p, min-p and repeat penalty on the
  real next-token distribution, and token probabilities of generated text.
"""),
    code("%lm_ps"),
]

# ----------------------------------------------------------------------------------- load_config

LOAD_CONFIG = [
    md("""
# What each load setting does — measured live

Every cell loads a model with one setting changed and measures the effect: llama.cpp's own report of
what it allocated, the timings of a real prediction, the model's output. The models are tiny
(stories260K and `lmsext.synth` models), so the absolute numbers are small — the trends are the point.
"""),
    code(SETUP + """

import re
import time

from lmsext.engine.logs import capture_logs


def load(model, identifier, **config):
    \"\"\"Load a new instance; returns (LLM, llama.cpp's log lines of the load).\"\"\"
    with capture_logs() as records:
        llm = client.llm.load(str(model), identifier=identifier, config=config)
    return llm, [r.getMessage() for r in records]


def kv_reported(lines):
    \"\"\"What llama.cpp says it allocated for the KV cache, in MiB.\"\"\"
    for line in lines:
        m = re.search(r"llama_kv_cache: size = +([0-9.]+) MiB", line)
        if m:
            return float(m.group(1))


def kib(n):
    return f"{n / 1024:8.1f} KiB\""""),
    md("""
## Context length vs KV-cache memory

The KV cache keeps a key and a value vector per layer for every position of the context, so its size
is linear in `contextLength`: 2 × layers × context × KV heads × head size × bytes per element.
lmsext's estimate (in the load summary) and llama.cpp's own allocation:
"""),
    code("""
for n_ctx in (256, 512, 1024, 2048):
    llm, lines = load("stories260K", f"ctx{n_ctx}", contextLength=n_ctx)
    print(f"contextLength {n_ctx:>5}: lmsext {kib(llm.load_result.memory['kv_cache'])} · "
          f"llama.cpp {kv_reported(lines):.2f} MiB")
    llm.unload()""", check=True),
    md("""
Context lengths are rounded up to what llama.cpp allocates (a multiple of 256), and the summary says so:
"""),
    code("""
llm, _ = load("stories260K", "ctx1000", contextLength=1000)
print(llm.load_result.config["context_length"], llm.load_result.notes)
llm.unload()""", check=True),
    md("""
## K/V cache quantization

`llamaKCacheQuantizationType` / `llamaVCacheQuantizationType` store the cache in 8 or 4 bits instead of
16. Block formats need a head size that is a multiple of 32 — stories260K's heads are 8 wide, so lmsext
refuses before llama.cpp would fail:
"""),
    code("""
try:
    client.llm.load("stories260K", identifier="q8", config={"llamaKCacheQuantizationType": "q8_0"})
except lmsext.ConfigError as exc:
    print("ConfigError:", exc)"""),
    md("""
`synth.random_model()` writes a ~2M-parameter model with 64-wide heads. A quantized V cache also needs
flash attention:
"""),
    code("""
wide = synth.random_model()
for k, v, fa in (("f16", "f16", False), ("q8_0", "f16", False), ("q8_0", "q8_0", True), ("q4_0", "q4_0", True)):
    llm, lines = load(wide, f"kv-{k}-{v}", contextLength=2048, flashAttention=fa,
                      llamaKCacheQuantizationType=k, llamaVCacheQuantizationType=v)
    print(f"K {k:<5} V {v:<5} flash attention {fa!s:<5}: lmsext {kib(llm.load_result.memory['kv_cache'])} · "
          f"llama.cpp {kv_reported(lines):.3f} MiB")
    llm.unload()""", check=True),
    code("""
try:
    client.llm.load(str(wide), identifier="v-no-fa", config={"llamaVCacheQuantizationType": "q8_0",
                                                             "flashAttention": False})
except lmsext.ConfigError as exc:
    print("ConfigError:", exc)"""),
    md("""
## Flash attention

Flash attention fuses the attention computation. On a GPU it saves memory and time; on a CPU with tiny
models it mostly costs time (which is why lmsext defaults it off). Measured on the same prompt:
"""),
    code("""
prompt = "Once upon a time, " * 60
for fa in (False, True):
    llm, _ = load(wide, f"fa-{fa}", contextLength=1024, flashAttention=fa)
    llm.complete(prompt, config={"maxTokens": 1})  # warm up
    llm.complete("x", config={"maxTokens": 1})     # and drop the cached prompt
    r = llm.complete(prompt, config={"maxTokens": 64, "temperature": 0})
    print(f"flashAttention {fa!s:<5}: prompt {r.stats.time_to_first_token_sec * 1000:6.1f} ms · "
          f"generation {r.stats.tokens_per_second:7.0f} tok/s")
    llm.unload()"""),
    md("""
## Eval batch size vs prompt speed

`evalBatchSize` is how many prompt tokens llama.cpp processes per forward pass. Bigger batches use the
matrix units better, until the batch no longer fits the caches:
"""),
    code("""
prompt = "The little dog ran to the park and played with the ball. " * 40
for batch in (8, 32, 128, 512):
    llm, _ = load(wide, f"batch{batch}", contextLength=1024, evalBatchSize=batch)
    times = []
    for _ in range(3):
        llm.complete("x", config={"maxTokens": 1})  # drop the cached prompt
        r = llm.complete(prompt, config={"maxTokens": 1})
        times.append(r.stats.time_to_first_token_sec)
    n = r.stats.prompt_tokens_count
    print(f"evalBatchSize {batch:>4}: {n} prompt tokens in {min(times) * 1000:6.1f} ms "
          f"({n / min(times):8.0f} tok/s)")
    llm.unload()"""),
    md("""
## Active experts on a mixture-of-experts model

`synth.moe_model()` is a Mixtral-style copy of stories260K with 4 experts per layer, 2 used per token.
`numExperts` overrides how many are used: more experts, more compute per token — and a different model.
"""),
    code("""
moe = synth.moe_model()
for n in (1, 2, 4):
    llm, _ = load(moe, f"moe{n}", contextLength=512, numExperts=n)
    r = llm.complete("Once upon a time", config={"temperature": 0, "maxTokens": 24})
    print(f"numExperts {n}: llama.cpp override {llm.load_result.llama_params['kv_overrides']} → {r.content!r}")
    llm.unload()""", check=True),
    code("""
for n in (1, 2, 4):
    llm, _ = load(moe, f"moe{n}", contextLength=512, numExperts=n)
    llm.complete("Once upon a time", config={"maxTokens": 8})  # warm up
    r = llm.complete("Once upon a time", config={"temperature": 0, "maxTokens": 200})
    print(f"numExperts {n}: {r.stats.tokens_per_second:7.0f} tok/s")
    llm.unload()"""),
    md("On a dense model the setting is refused:"),
    code("""
try:
    client.llm.load("stories260K", identifier="dense", config={"numExperts": 2})
except lmsext.ConfigError as exc:
    print("ConfigError:", exc)"""),
    md("""
## Parallel predictions

`maxParallelPredictions` (`%lm_load --parallel N`) lets N predictions run at once: one scheduler decodes one
token of each in a single llama.cpp batch (continuous batching), more wait in a queue. `complete_many` /
`respond_many` send a list through it with a progress bar and return the results in input order:
"""),
    code("""
par, _ = load("stories260K", "parallel", contextLength=2048, maxParallelPredictions=4)
names = ["Lily", "Tom", "Sam", "Mia", "Ben", "Anna", "Max", "Sue", "Tim", "Lucy",
         "Jack", "Emma", "Leo", "Zoe", "Dan", "Kim", "Joe", "Amy", "Bob", "Eva"]
prompts = [f"Once upon a time, {name}" for name in names]
results = par.complete_many(prompts, config={"temperature": 0, "maxTokens": 48})
print(results.summary)"""),
    code("""
solo, _ = load("stories260K", "solo", contextLength=2048)
same = sum(r.content == solo.complete(p, config={"temperature": 0, "maxTokens": 48}).content
           for p, r in zip(prompts, results))
print(f"parallel {par.load_result.to_rest()['config']['parallel']}: {same} of {len(prompts)} replies equal the "
      f"prompt run alone, in input order")
print(repr(results[1].content[:60]))
par.unload(); solo.unload()""", check=True),
    md("""
## GPU offload

`gpu.ratio` maps to `n_gpu_layers = round(ratio × (layers + 1))`. The summary reports how many layers
were really offloaded — 0 on a CPU-only build, with the reason — and `offloadKVCacheToGpu` is reported
false when nothing is on a GPU.
"""),
    code("%lm_load stories260K --new --identifier gpu --gpu max --offload-kv-cache-to-gpu"),
    code("""
import llama_cpp

gpu = client.llm.get("gpu").load_result
print("this llama.cpp build offloads to a GPU:", bool(llama_cpp.llama_supports_gpu_offload()))
print("gpu:", gpu.config["gpu"])
print("offload_kv_cache_to_gpu:", gpu.config["offload_kv_cache_to_gpu"])
print(*gpu.notes, sep="\\n")"""),
    code("%lm_unload --all"),
]

# ----------------------------------------------------------------------------------- sampling_lab

SAMPLING_LAB = [
    md("""
# Sampling lab

A language model gives a probability to every token of its vocabulary; **samplers** decide which of
them may come next and how likely each is. This notebook looks at the real next-token distribution of a
real model (stories260K) through the same llama.cpp sampler chain that generates text — LM Studio's order:
repeat penalty → top-k → top-p → min-p → temperature → draw.

Each section starts with a short **teacher's guide** (goal, what to ask, what to try, time); the
45-minute lesson plan built on this notebook is in `docs/teach.md` ("Teach with lmsext").
"""),
    code(SETUP + """

import math

import matplotlib.pyplot as plt
import numpy as np

model = client.llm.model("stories260K", config={"contextLength": 1024})"""),
    md("""
## 1. The next-token explorer

The bars are the most likely next tokens: grey is the model's own probability, blue the probability the
engine samples with after the samplers. Move the sliders: tokens a sampler cuts are greyed (hover for
which one and the probability after each stage). **Step** appends a sampled token, clicking a bar appends
that token, **Back** rewinds, **Sample 100** draws 100 tokens with the seed and shows the histogram
beside the theory.
"""),
    md("""
> **Teacher's guide** — *Goal:* a model does not "know" the next word, it gives every token a probability. *Ask:* "which
token will come next — and how sure is the model?" before pressing **Step**. *Try:* edit the prompt
(**Use prompt**), switch the axis to **log** to see the long tail, read the entropy line ("≈ N effective
choices"), **Play** 20 steps; after **Back**, **Step** gives the same token again (the seed is fixed by
position) — switch the seed to **random** to show chance at work. Arrow keys move a focused slider; the
boxes beside the sliders take typed values. *Time:* 10 min.
"""),
    code("""
from lmsext.widgets import NextTokenExplorer

explorer = NextTokenExplorer(model, "Once upon a time, there was a little", top_n=12)
explorer"""),
    md("Everything the widget shows is also plain Python: the candidates, what cut them, and the stages."),
    code("print(explorer.dist)", check=True),
    code("""
explorer.temperature = 1.0
explorer.top_k = 3
explorer.top_p = 1.0   # off
explorer.min_p = 0.0   # off
print(explorer.dist)""", check=True),
    md("Step, click (pick), Back — every Step is seeded by the explorer's seed and the position, so it replays:"),
    code("""
first = explorer.step()
explorer.step()
print(repr(explorer.text))
explorer.back()
explorer.back()
assert explorer.step() == first
explorer.pick(explorer.candidates[2].token)   # what a click on the third bar does
print(repr(explorer.text))""", check=True),
    code("""
counts = explorer.sample(100)
for c in explorer.candidates:
    if c.final_prob > 0 or counts.get(c.token):
        print(f"{c.text!r:>10}  theory {c.final_prob:6.1%}   sampled {counts.get(c.token, 0):3d} / 100")""",
         check=True),
    md("""
## 2. What each sampler cuts

With LM Studio's defaults (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, repeat penalty 1.1):
"""),
    md("""
> **Teacher's guide** — *Goal:* each sampler removes tokens for a different reason (a count, a share of the
probability, a ratio to the best token) and the repeat penalty lowers the tokens already used. *Ask:* "which
sampler cut the most here, and how much probability did it throw away?" *Try:* in the explorer, a token
"lowered by repeat penalty, then cut by top-p" vs one only "cut by top-p". *Time:* 5 min.
"""),

    code("""
d = model.next_token_distribution("She saw a big", top_n=10)
for stage in d.stages:
    print(f"{stage.name:<10} {stage.setting:<48} {stage.kept:>4} tokens left  "
          f"(cut {stage.removed}, {stage.removed_mass:.1%} of the model's probability)")
print()
print(d)""", check=True),
    md("""
## 3. Greedy vs sampled, at a fixed seed

Temperature 0 always takes the most likely token. Sampling draws from the distribution: different seeds
give different stories, the same seed the same story.
"""),
    md("""
> **Teacher's guide** — *Goal:* randomness in generation is reproducible: a seed fixes it. *Ask:* "will seed 1 give the
same story twice?" — then run it. *Try:* a seed of each student's choice. *Time:* 5 min.
"""),

    code("""
prompt = "Once upon a time"
greedy = model.complete(prompt, config={"temperature": 0, "maxTokens": 30})
print(f"greedy      : {greedy.content!r}")
sampled = {}
for seed in (1, 2, 3):
    sampled[seed] = model.complete(prompt, config={"temperature": 0.8, "seed": seed, "maxTokens": 30}).content
    print(f"seed {seed}, T 0.8: {sampled[seed]!r}")
again = model.complete(prompt, config={"temperature": 0.8, "seed": 1, "maxTokens": 30})
print("seed 1 again gives the same text:", again.content == sampled[1])""",
         check=True),
    md("""
## 4. Temperature sweeps

Temperature divides the logits before the softmax: below 1 it sharpens the distribution, above 1 it
flattens it. With the other samplers off, the entropy says how many "equally likely choices" the model
effectively has:
"""),
    md("""
> **Teacher's guide** — *Goal:* temperature is one dial from "always the same" to "anything goes". *Ask:* "how many
choices does the model really have at T 1?" (the effective choices, `2 ** entropy`). *Try:* the plot below,
then the stories at rising temperature. *Time:* 8 min.
"""),

    code("""
off = {"topKSampling": 0, "topPSampling": False, "minPSampling": False, "repeatPenalty": False}
for t in (0.25, 0.5, 0.8, 1.0, 1.5, 2.0):
    d = model.next_token_distribution("She saw a big", {**off, "temperature": t})
    p = d.probs[d.probs > 0]
    entropy = float(-(p * np.log2(p)).sum())
    top = d.candidates[0]
    print(f"T {t:<4}: top token {top.text!r} {top.final_prob:6.1%} · entropy {entropy:5.2f} bits "
          f"≈ {2 ** entropy:6.1f} equally likely choices")""", check=True),
    md("The same sweep as a picture: entropy and effective choices against temperature (the other samplers off)."),
    code("""
temperatures = np.round(np.linspace(0.1, 2.0, 20), 2)
sweep = [model.next_token_distribution("She saw a big", {**off, "temperature": float(t)}, top_n=1) for t in temperatures]
entropy_bits = [float(-(d.probs[d.probs > 0] * np.log2(d.probs[d.probs > 0])).sum()) for d in sweep]
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
left.plot(temperatures, entropy_bits, marker="o")
left.set(xlabel="temperature", ylabel="entropy (bits)", title="Temperature vs entropy")
right.plot(temperatures, [2 ** h for h in entropy_bits], marker="o", color="tab:orange")
right.set(xlabel="temperature", ylabel="effective choices (2^entropy)", yscale="log", title="…as a number of choices")
fig.tight_layout()
plt.show()"""),
    code("""
assert all(a < b for a, b in zip(entropy_bits, entropy_bits[1:]))  # hotter: always more spread out
print(" ".join(f"T{t:g}:{h:.2f}" for t, h in zip(temperatures[::4], entropy_bits[::4])))""", check=True),
    md("The same seed at rising temperatures — from dull to unhinged:"),
    code("""
for t in (0.2, 0.6, 1.0, 1.4, 2.0):
    r = model.complete("Once upon a time", config={**off, "temperature": t, "seed": 11, "maxTokens": 30})
    print(f"T {t}: {r.content!r}")""", check=True),
    md("…and how top-p / min-p tame a high temperature (same seed):"),
    code("""
for extra in ({}, {"topPSampling": 0.9}, {"minPSampling": 0.1}):
    r = model.complete("Once upon a time", config={**off, **extra, "temperature": 2.0, "seed": 11, "maxTokens": 30})
    print(f"T 2.0 {extra or 'no filter'}: {r.content!r}")""", check=True),
    md("""
## 5. Does the explorer tell the truth?

The distribution above is computed by running llama.cpp's sampler chain stage by stage on the last
position's logits. The check: 1000 one-token predictions through the ordinary API, each with its own
seed, against that distribution (Pearson's chi-square and the total-variation distance).
"""),
    md("""
> **Teacher's guide** — *Goal (for a technical class):* a picture of the sampler is only worth something if it matches what
the generator does; here is the statistical test. *Ask:* "what would a wrong explorer look like in these
numbers?" *Time:* 3 min, or skip.
"""),

    code("""
from lmsext.engine.distribution import chi_square, total_variation

config = {"temperature": 1.2, "repeatPenalty": 1.3, "topKSampling": 20, "topPSampling": 0.98}
theory = model.next_token_distribution("She saw a big", config)
counts = {}
for seed in range(1000):
    token = model.complete("She saw a big", config={**config, "seed": seed, "maxTokens": 1, "logProbs": 1}).logprobs[0].token
    counts[token] = counts.get(token, 0) + 1
stat, df, p = chi_square(counts, theory.probs)
print(f"{len(theory.support)} tokens can be sampled · chi-square {stat:.1f} on {df} degrees of freedom · "
      f"p = {p:.2f} · total variation {total_variation(counts, theory.probs):.3f}")""", check=True),
    md("""
## 6. Token probabilities of generated text

`--probs N` (or `logProbs: N` in a config) returns, for every generated token, its probability and the
top-N alternatives — the model's own (`logprob`, LM Studio's and OpenAI's `logprobs`) — and the probability it
was *drawn* with (`sampled_probability`: after the repeat penalty, top-k, top-p, min-p and temperature; 1 at
temperature 0). The reply is shown with each token coloured by the drawn probability — red unlikely, green
likely — and the model's own probability and alternatives on hover.
"""),
    md("""
> **Teacher's guide** — *Goal:* a generated text is a path of choices, some sure, some lucky. *Ask:* "where did the story
take an unlikely turn?" (the red tokens; hover for what else could have come). *Note:* the colour is the
probability the token was drawn with, after the samplers reshaped the model's distribution (temperature 0.9 here);
the hover shows the model's own — compare them to see what the samplers did. *Time:* 5 min.
"""),

    code("""
%%lm_complete --model stories260K --probs 5 --temperature 0.9 --seed 7 --max-tokens 40
Once upon a time"""),
    code("""
storyteller = client.llm.load(str(synth.chatml_model()), identifier="storyteller", config={"contextLength": 1024})"""),
    code("""
%%lm_respond --model storyteller --probs 3 --temperature 0.7 --seed 1 --max-tokens 40 --no-history
Tell me a story about a frog."""),
    md("The numbers behind the colours:"),
    code("""
r = model.complete("Once upon a time", config={"temperature": 0.9, "seed": 7, "maxTokens": 12, "logProbs": 3})
for lp in r.logprobs:
    alternatives = "  ".join(f"{text!r} {math.exp(logprob):.0%}" for _, text, logprob in lp.top)
    print(f"{lp.text!r:>10} drawn {lp.sampled_probability:6.1%} · model {math.exp(lp.logprob):6.1%}   | {alternatives}")""",
         check=True),
    md("The coloured view of any result made with `logProbs` (what `--probs` shows):"),
    code("""
from IPython.display import display

from lmsext.render import token_probs_bundle

display(token_probs_bundle(r), raw=True)""", check=True),
    md("""
## 7. The top token as top-p moves

top-p keeps the smallest set of most likely tokens whose probabilities add up to p, then renormalises.
As p falls, fewer tokens survive and the top token's share grows until it is the only one left.
"""),
    md("""
> **Teacher's guide** — *Goal:* top-p adapts to the model's confidence: a sure model keeps few tokens, an unsure one many.
*Ask:* "at which p does the top token become certain?" *Try:* another prompt where the model is unsure.
*Time:* 5 min.
"""),
    code("""
top_ps = np.round(np.linspace(0.05, 1.0, 20), 2)
by_p = [model.next_token_distribution("She saw a big", {**off, "temperature": 1.0, "topPSampling": float(p)}, top_n=1)
        for p in top_ps]
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
left.plot(top_ps, [d.candidates[0].final_prob for d in by_p], marker="o")
left.set(xlabel="top-p", ylabel="P(top token)", ylim=(0, 1.05), title=f"Top token {by_p[0].candidates[0].text!r}")
right.plot(top_ps, [len(d.support) for d in by_p], marker="o", color="tab:green")
right.set(xlabel="top-p", ylabel="tokens left", yscale="log", title="Tokens that can be sampled")
fig.tight_layout()
plt.show()"""),
    code("""
print(" ".join(f"p{p:g}:{d.candidates[0].final_prob:.2f}/{len(d.support)}" for p, d in zip(top_ps[::4], by_p[::4])))""",
         check=True),
    md("""
## 8. Tokens: what the model sees

The model never sees letters or words, only token ids from its vocabulary. stories260K has a tiny
vocabulary (512 tokens), so words split into several pieces; large models have 32K–262K tokens and split less.
"""),
    md("""
> **Teacher's guide** — *Goal:* "tokens" are not words. *Ask:* "how many tokens is your name?" — type it below. *Try:*
a rare word vs a common one, a number, a word with a capital letter. *Time:* 4 min.
"""),
    code("""
from html import escape

from IPython.display import HTML


BOS = model.tokenize("")  # the start-of-text token the model puts first: [1]


def pieces(text):
    \"\"\"The token ids of ``text``, without the start-of-text token.\"\"\"
    return model.tokenize(text)[len(BOS):]


def show_tokens(text):
    \"\"\"Each token of ``text`` as a box: its text (spaces as ␣) and its id.\"\"\"
    ids = pieces(text)
    boxes = "".join(
        f'<span style="display:inline-block;margin:2px;padding:2px 4px;border-radius:4px;'
        f'background:hsl({(i * 67) % 360},70%,88%);font-family:monospace;text-align:center">'
        f'{escape(model.token_text(t).replace(" ", "␣")) or "∅"}<br><small>{t}</small></span>'
        for i, t in enumerate(ids))
    return HTML(f"<div>{len(text)} characters → {len(ids)} tokens</div><div>{boxes}</div>")


show_tokens("Once upon a time, a curious hippopotamus found 42 shiny pebbles.")"""),
    code("""
for word in ("cat", "hippopotamus", "Lily", "42"):
    print(f"{word!r:>16} → {[model.token_text(t) for t in pieces(word)]}")""", check=True),
]

NOTEBOOKS = {"quickstart.ipynb": QUICKSTART, "load_config.ipynb": LOAD_CONFIG, "sampling_lab.ipynb": SAMPLING_LAB}


def write(name: str, cells: list) -> Path:
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    })
    path = HERE / name
    nbformat.write(nb, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="which notebooks (default: all)")
    parser.add_argument("--no-run", action="store_true", help="write the cells only")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import run
    for name, cells in NOTEBOOKS.items():
        if args.names and name not in args.names and name.removesuffix(".ipynb") not in args.names:
            continue
        path = write(name, cells)
        if not args.no_run:
            code = run.main([str(path), "--in-place", "--quiet", "--no-widget-state"])
            if code:
                return code
        else:
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
