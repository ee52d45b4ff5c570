"""The widgets in a real browser: JupyterLab 4 on loopback, driven by Playwright with Debian's chromium.

One notebook, run cell by cell in the page: ``%lm_load`` shows the summary widget (context length),
dragging the prediction panel's temperature slider changes the kernel-side session default,
``%%lm_respond`` streams (the text grows across at least three observations, then the stats), the
panel's Stop ends an endless generation running on a background thread with ``userStopped``, and the
stream view's Stop interrupts an endless ``%%lm_complete`` cell (``userStopped`` too). Screenshots
go to ``tests/artifacts/``. Without chromium or Playwright the test skips locally; in CI (CI=true)
that is a failure, since ``.ci/run`` installs both.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

import labserver

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

CELLS = [
    "%load_ext lmsext\nimport lmsext",                                               # 0
    "%lm_load stories260K --context-length 1000",                                     # 1
    "p = %lm_panel predict",                                                          # 2
    "from lmsext.session import get_session\n"
    "print('temperature =', get_session().prediction_config.temperature)",            # 3
    "%%lm_respond --max-tokens 4000 --temperature 0.8 --seed 1\nTell me a long story",  # 4
    "%lm_config predict maxTokens=False contextOverflowPolicy=rollingWindow temperature=0.8",  # 5
    "print('panel:', p.result.stats.stop_reason, p.result.stats.predicted_tokens_count)",     # 6
    "%%lm_complete --seed 2\nOnce upon a time",                                       # 7
    "print('cell:', _lm.stats.stop_reason, _lm.stats.predicted_tokens_count)",        # 8
    "%lm_panel load",                                                                 # 9
    "print('loaded:', lmsext.default_client().llm.get('stories260K').get_context_length())",  # 10
    "from lmsext.widgets import NextTokenExplorer\n"
    "x = NextTokenExplorer('stories260K', 'Once upon a time')\nx",                    # 11
    "print('top_p =', round(x.top_p, 2), 'top_k =', x.top_k)",                         # 12
    "%lm_chat view --chat lab",                                                       # 13
    "from lmsext.session import get_session\n"
    "m = get_session().chats['lab'].messages\nprint('lab chat:', [x['role'] for x in m], len(m[-1]['content']))",  # 14
    "lmsext.default_client().llm.unload_all()\nq = %lm_panel predict",                 # 15
    "print('picked:', [m.identifier for m in lmsext.default_client().llm.list_loaded()], get_session().model)",  # 16
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, stories_path):
    """A JupyterLab server on 127.0.0.1 (token off) with the test notebook; yields its URL."""
    labserver.require_browser()
    import nbformat
    home = tmp_path_factory.mktemp("lab")
    root = home / "notebooks"
    root.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nbformat.write(nb, root / "widgets.ipynb")
    labserver.write_settings(home / "settings")
    with labserver.jupyterlab(home, root, home / "settings", stories_path.parent,
                              JUPYTER_DATA_DIR=str(home / "data")) as url:
        yield url


@pytest.fixture(scope="module")
def page(lab):
    from playwright.sync_api import sync_playwright
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=labserver.CHROMIUM, args=labserver.CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.goto(f"{lab}/lab/tree/widgets.ipynb")
            page.wait_for_function("""() => {
                const app = window.jupyterapp;
                const panel = app && app.shell.currentWidget;
                const kernel = panel && panel.sessionContext && panel.sessionContext.session
                    && panel.sessionContext.session.kernel;
                return kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle'
                    && document.querySelectorAll('.jp-Notebook .jp-Cell').length >= %d;
            }""" % len(CELLS), timeout=60_000)
            yield page
        finally:
            browser.close()


RUN_CELL = """async ([index, wait]) => {
    const app = window.jupyterapp;
    const notebook = app.shell.currentWidget.content;
    notebook.activeCellIndex = index;
    notebook.deselectAll();
    const done = app.commands.execute('notebook:run-cell');
    if (wait) await done;
}"""


ACTIVE_CELL = "() => window.jupyterapp.shell.currentWidget.content.activeCellIndex"


def run_cell(page, index: int, wait: bool = True) -> None:
    """Run cell ``index`` in the page (as Shift+Enter would); ``wait`` = until it finished."""
    page.evaluate(RUN_CELL, [index, wait])


def cell(page, index: int):
    return page.locator(".jp-Notebook .jp-Cell").nth(index)


def cell_text(page, index: int) -> str:
    return cell(page, index).locator(".jp-OutputArea-output").all_inner_texts().__str__()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"browser-{name}.png"), full_page=False)


WATCH_STREAM = """async (index) => {
    const seen = [];
    const t0 = performance.now();
    while (performance.now() - t0 < 30000) {
        const c = document.querySelectorAll('.jp-Notebook .jp-Cell')[index];
        const root = c && c.querySelector('.lmsext-stream');
        if (root) {
            const length = root.querySelector('.lmsext-stream-text').textContent.length;
            if (root.dataset.done === 'true') return {seen, done: true};
            if (length && (!seen.length || seen[seen.length - 1] !== length)) seen.push(length);
        }
        await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return {seen, done: false};
}"""


def wait_growing(locator, minimum: int = 200, timeout: float = 20.0) -> int:
    """Wait until ``locator``'s text has at least ``minimum`` characters; returns its length."""
    deadline = time.monotonic() + timeout
    length = 0
    while time.monotonic() < deadline:
        length = len(locator.text_content() or "")
        if length >= minimum:
            return length
        time.sleep(0.05)
    raise AssertionError(f"the stream did not grow past {minimum} characters (got {length})")


def drag_to_minimum(page, panel, label: str) -> None:
    """Drag the handle of ``panel``'s slider labelled ``label`` past the left end of its track, with the mouse."""
    slider = panel.locator(".widget-slider").filter(has=page.locator(".widget-label", has_text=re.compile(
        f"^{re.escape(label)}$"))).first
    handle, track = slider.locator(".noUi-handle").first, slider.locator(".noUi-target").first
    handle.scroll_into_view_if_needed()
    hb, tb = handle.bounding_box(), track.bounding_box()
    page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
    page.mouse.down()
    page.mouse.move(tb["x"] - 30, hb["y"] + hb["height"] / 2, steps=8)
    page.mouse.up()


def test_widgets_in_jupyterlab(page):
    started = time.monotonic()
    run_cell(page, 0)

    # %lm_load → the LoadSummaryView shows the context length: requested 1000, applied 1024 (highlighted).
    run_cell(page, 1)
    row = cell(page, 1).locator('.lmsext-summary tr[data-key="context_length"]')
    row.wait_for()
    assert row.locator(".lmsext-effective").inner_text() == "1024"
    assert row.locator(".lmsext-requested").inner_text() == "1000"
    assert row.get_attribute("class") == "lmsext-differs"
    assert "1000 → 1024" in cell(page, 1).locator(".lmsext-notes").inner_text()
    assert "Memory" in cell(page, 1).locator(".lmsext-memory").inner_text()
    shot(page, "1-load-summary")

    # The prediction panel: drag the temperature slider to its left end → the kernel's default is 0.
    run_cell(page, 2)
    panel = cell(page, 2).locator(".lmsext-prediction-panel")
    panel.wait_for()
    drag_to_minimum(page, panel, "temperature")
    page.wait_for_timeout(300)
    run_cell(page, 3)
    assert "temperature = 0.0" in cell_text(page, 3)
    # …and the arrow keys move a focused slider (ipywidgets' own: Lab's ArrowUp does not select the previous cell)
    temperature = panel.locator(".widget-slider").filter(has=page.locator(".widget-label", has_text=re.compile(
        r"^temperature$"))).first
    temperature.locator(".noUi-handle").first.focus()
    active = page.evaluate(ACTIVE_CELL)
    for key in ("ArrowUp", "ArrowUp", "ArrowRight", "ArrowDown"):
        page.keyboard.press(key)
    page.wait_for_function("(el) => el.textContent.trim() === '0.02'",
                           arg=temperature.locator(".widget-readout").element_handle())
    assert page.evaluate(ACTIVE_CELL) == active
    page.wait_for_timeout(300)
    run_cell(page, 3)
    assert "temperature = 0.02" in cell_text(page, 3), cell_text(page, 3)
    shot(page, "2-prediction-panel")

    # %%lm_respond streams into the StreamView: the text grows across ≥ 3 observations, then the stats.
    page.evaluate(RUN_CELL, [4, False])
    watched = page.evaluate(WATCH_STREAM, 4)
    assert watched["done"], watched
    seen = watched["seen"]
    assert len(seen) >= 3 and all(a < b for a, b in zip(seen, seen[1:])), seen
    stream = cell(page, 4).locator(".lmsext-stream")
    stats = stream.locator(".lmsext-stream-stats").inner_text()
    assert re.search(r"4000 tokens · [\d.]+ tok/s · first token .+ · "
                     r"stop: maxPredictedTokensReached \(hit the token limit\)", stats), stats
    # each fact once: the stats line (the kernel's, plain words beside LM Studio's name) replaces the badge and counters
    assert not stream.locator(".lmsext-badge").is_visible() and not stream.locator(".lmsext-rate").is_visible()
    page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                           " || window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'")
    shot(page, "3-respond-stream")

    # %lm_config moves the panel's slider back; Send an endless generation, then the panel's Stop.
    run_cell(page, 5)
    readout = panel.locator(".widget-slider").filter(has=page.locator(".widget-label", has_text=re.compile(
        r"^temperature$"))).first.locator(".widget-readout")
    page.wait_for_function("(el) => el.textContent.trim() === '0.80'", arg=readout.element_handle())
    panel.locator("textarea.widget-input").fill("Tell me a story")
    panel.locator("button.widget-button", has_text="Send").click()
    panel_text = panel.locator(".lmc-msg.live .lmc-text")  # respond mode: the reply streams into the last bubble
    wait_growing(panel_text)
    assert not panel.locator(".lmsext-stream").is_visible()  # the bubbles replace the one-reply view
    shot(page, "4-panel-running")
    panel.locator("button.widget-button", has_text="Stop").click()
    conversation_status = panel.locator(".lmc-status")
    page.wait_for_function("(el) => el.textContent.includes('userStopped')", arg=conversation_status.element_handle(),
                           timeout=15_000)
    assert panel.locator(".lmc-msg.assistant").count() >= 1 and panel.locator(".lmc-msg.live").count() == 0
    run_cell(page, 6)
    assert re.search(r"panel: userStopped \d+", cell_text(page, 6)), cell_text(page, 6)
    shot(page, "5-panel-stopped")

    # An endless %%lm_complete cell: the stream view's Stop interrupts the kernel → userStopped.
    page.evaluate(RUN_CELL, [7, False])
    cell_stream = cell(page, 7).locator(".lmsext-stream")
    wait_growing(cell_stream.locator(".lmsext-stream-text"))
    stop = cell_stream.locator("button.lmsext-stop")
    assert stop.is_visible()
    assert not panel.locator(".lmsext-stop").is_visible()  # the panel's stream view has no Stop of its own
    stop.click()
    page.wait_for_function(
        "(i) => { const c = document.querySelectorAll('.jp-Notebook .jp-Cell')[i];"
        " const b = c && c.querySelector('.lmsext-stream[data-done=\"true\"] .lmsext-stream-stats');"
        " return b && b.textContent.includes('stop: userStopped (stopped by the user)'); }", arg=7, timeout=15_000)
    assert cell(page, 7).locator(".lmsext-stream-prompt").inner_text().endswith("Once upon a time")
    assert not stop.is_visible()
    run_cell(page, 8)
    assert re.search(r"cell: userStopped \d+", cell_text(page, 8)), cell_text(page, 8)
    shot(page, "6-cell-stopped")

    # The load panel after %lm_load: it edits the loaded instance (its settings and summary, not the
    # defaults); drag the context slider to 256 → the estimate drops; Load reloads with it.
    run_cell(page, 9)
    load_panel = cell(page, 9).locator(".lmsext-load-panel")
    load_panel.wait_for()
    load_panel.locator(".widget-html", has_text="editing stories260K").wait_for()
    assert "no model loaded yet" not in load_panel.inner_text()
    instance_row = load_panel.locator('.lmsext-summary tr[data-key="context_length"]')
    assert instance_row.locator(".lmsext-effective").inner_text() == "1024"  # the instance %lm_load loaded
    estimate = load_panel.locator(".widget-html", has_text="Memory estimate").first
    before = estimate.inner_text()
    drag_to_minimum(page, load_panel, "context length")
    assert "KV cache 640 KiB" in before, before  # the instance's context (1000 asked → 1024), not the default 2048
    page.wait_for_function("(el) => el.innerText.includes('KV cache 160 KiB')", arg=estimate.element_handle())
    load_panel.locator("button.widget-button", has_text=re.compile(r"^\s*Load$")).click()
    load_panel.locator(".widget-html", has_text="loaded as 'stories260K'").wait_for()
    summary_row = load_panel.locator('.lmsext-summary tr[data-key="context_length"]')
    page.wait_for_function("(el) => el.textContent === '256'",
                           arg=summary_row.locator(".lmsext-effective").element_handle())
    run_cell(page, 10)
    assert "loaded: 256" in cell_text(page, 10), cell_text(page, 10)
    summary_row.scroll_into_view_if_needed()
    shot(page, "7-load-panel")

    # The explorer: a focused slider moves with the arrow keys, which do not reach the notebook's shortcuts.
    run_cell(page, 11)
    explorer = cell(page, 11).locator(".lmx")
    explorer.wait_for()
    top_p = explorer.locator("input[name=top_p]")
    top_p.focus()
    active = page.evaluate(ACTIVE_CELL)
    for key in ("ArrowLeft", "ArrowLeft", "ArrowDown", "ArrowUp", "ArrowLeft"):
        page.keyboard.press(key)  # 0.95 → 0.92
    assert page.evaluate(ACTIVE_CELL) == active
    assert page.evaluate("() => document.activeElement && document.activeElement.name") == "top_p"
    entry = explorer.locator("input[name=top_k_entry]")
    entry.fill("150")
    entry.press("Enter")
    page.wait_for_function("(el) => el.value === '0.92'", arg=explorer.locator("input[name=top_p_entry]").element_handle())
    page.wait_for_timeout(300)
    run_cell(page, 12)
    assert "top_p = 0.92 top_k = 150" in cell_text(page, 12), cell_text(page, 12)
    shot(page, "8-explorer-keys")

    # The chat view (%lm_chat view): a message streams into the last bubble (endless: maxTokens unset),
    # Stop ends it with userStopped, and the exchange is in the session chat %%lm_respond --chat lab continues.
    run_cell(page, 13)
    view = cell(page, 13).locator(".lmsext-chat-view")
    view.wait_for()
    view.locator("textarea").fill("Tell me a story")
    view.locator("textarea").press("Enter")
    live = view.locator(".lmc-msg.live .lmc-text")
    seen = page.evaluate("""async (el) => {
        const seen = [];
        const t0 = performance.now();
        while (performance.now() - t0 < 15000 && seen.length < 4) {
            const live = el.querySelector('.lmc-msg.live .lmc-text');
            const n = live ? live.textContent.length : 0;
            if (n && (!seen.length || seen[seen.length - 1] !== n)) seen.push(n);
            await new Promise((resolve) => setTimeout(resolve, 10));
        }
        return seen;
    }""", view.element_handle())
    assert len(seen) >= 4 and all(a < b for a, b in zip(seen, seen[1:])), seen
    assert view.locator(".lmc-msg.user").last.inner_text().endswith("Tell me a story")
    shot(page, "9-chat-view-streaming")
    view.locator("button[name=stop]").click()
    page.wait_for_function("(el) => el.dataset.busy === 'false' && !el.querySelector('.lmc-msg.live')",
                           arg=view.element_handle(), timeout=15_000)
    assert "userStopped" in view.locator(".lmc-status").inner_text()
    assert view.locator(".lmc-msg").count() == 2 and live.count() == 0
    run_cell(page, 14)
    assert re.search(r"lab chat: \['user', 'assistant'\] [1-9]\d*", cell_text(page, 14)), cell_text(page, 14)
    shot(page, "10-chat-view-stopped")

    # The model picker (in the prediction panel): pick stories260K in the dropdown, see its estimate, Load it.
    run_cell(page, 15)
    picker = cell(page, 15).locator(".lmsext-model-picker")
    picker.wait_for()
    assert "no model loaded" in cell(page, 15).inner_text()
    select = picker.locator("select").first
    labels = select.locator("option").all_inner_texts()
    select.select_option(index=next(i for i, label in enumerate(labels) if label.startswith("stories260K")))
    picker.locator(".widget-html", has_text="memory estimate").wait_for()
    picker.locator("button.widget-button", has_text=re.compile(r"^\s*Load$")).click()
    picker.locator(".widget-html", has_text="loaded as 'stories260K'").wait_for()
    cell(page, 15).locator(".widget-html", has_text="model: stories260K").wait_for()
    run_cell(page, 16)
    assert "picked: ['stories260K'] stories260K" in cell_text(page, 16), cell_text(page, 16)
    shot(page, "11-model-picker")
    elapsed = time.monotonic() - started
    print(f"\nbrowser steps took {elapsed:.1f} s")
