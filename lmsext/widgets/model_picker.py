"""``ModelPicker``: a dropdown of the loaded and downloaded models (``%lm_ps`` and ``%lm_ls`` in one list), the
memory estimate of the selection before it loads, Load, and a Download box for a Hugging Face repository.

Everything is the public API: ``client.llm.list_loaded()`` / ``list_downloaded()`` for the list,
``client.llm.estimate(path, config)`` for the estimate (the session's load defaults: what Load uses, the
numbers ``%lm_load --estimate-only`` shows), ``client.llm.load`` and ``client.llm.download_job`` (the planned
download the REST server runs too: offline or an unknown repository is one line). Load and Download run on a
background thread, so the kernel stays free. Loading sets the session's current model, which the magics and
the prediction panel then use.

``on_select(model)`` is called with the selection — a loaded :class:`~lmsext.LLM` or a
:class:`~lmsext.backend.DownloadedModel` — when it changes (the load panel follows it); ``load_button=False``
leaves out Load (the load panel has its own).
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import ipywidgets as w

from ..errors import LmsextError
from ..render import esc
from ..session import Session, get_session
from ..units import format_bytes

#: How often a running download's progress bar is updated (seconds).
DOWNLOAD_POLL = 0.1


class ModelPicker(w.VBox):
    """Pick a loaded or downloaded model, see its memory estimate, load it; download one by repository name."""

    def __init__(self, *, client: Any = None, session: Session | None = None,
                 on_select: Callable[[Any], None] | None = None, load_button: bool = True,
                 selected: str | None = None) -> None:
        from ..client import default_client
        self.client = client or default_client()
        self.session = session or get_session()
        self.on_select = on_select
        #: called with the :class:`~lmsext.LLM` after Load (the session's model may already have had its name)
        self.on_load: Callable[[Any], None] | None = None
        self.choices: dict[str, Any] = {}
        self._quiet = False
        self._thread: threading.Thread | None = None
        self.job: Any = None
        self.dropdown = w.Dropdown(description="model", style={"description_width": "72px"},
                                   layout=w.Layout(width="440px"))
        self.refresh_button = w.Button(icon="refresh", tooltip="list the models again", layout=w.Layout(width="36px"))
        self.load_button = w.Button(description="Load", button_style="primary", icon="play",
                                    tooltip="load the selection with the session's load settings")
        self.estimate = w.HTML()
        self.status = w.HTML()
        self.progress = w.FloatProgress(min=0.0, max=1.0, layout=w.Layout(width="200px", display="none"))
        self.repo = w.Text(placeholder="owner/repo-GGUF", description="download", style={"description_width": "72px"},
                           layout=w.Layout(width="330px"))
        self.quant = w.Text(placeholder="quant (Q4_K_M)", layout=w.Layout(width="120px"))
        self.download_button = w.Button(description="Download", icon="download",
                                        tooltip="fetch a GGUF from Hugging Face into the model folder (online only)")
        self.dropdown.observe(self._selected, names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.load_button.on_click(lambda _: self.start(self.load))
        self.download_button.on_click(lambda _: self.start(self.download))
        row = [self.dropdown, self.refresh_button] + ([self.load_button] if load_button else [])
        super().__init__([w.HBox(row), self.estimate, w.HBox([self.repo, self.quant, self.download_button]),
                          w.HBox([self.progress, self.status])])
        self.add_class("lmsext-model-picker")
        self.refresh(selected)

    # -- the list ------------------------------------------------------------------------------

    def refresh(self, selected: str | None = None) -> None:
        """List the models again, keeping the selection (or selecting the choice ``selected``: none when it is
        not listed). Does not call ``on_select``: only the user's picks do."""
        keep = selected or self.dropdown.value
        choices: dict[str, Any] = {}
        labels = []
        for llm in self.client.llm.list_loaded():
            choices[f"loaded:{llm.identifier}"] = llm
            labels.append((f"● {llm.identifier} (loaded)", f"loaded:{llm.identifier}"))
        for model in self.client.llm.list_downloaded():
            if model.error:
                continue  # not loadable: %lm_ls says why
            choices[f"file:{model.model_key}"] = model
            labels.append((f"{model.model_key} · {format_bytes(model.size_bytes)}", f"file:{model.model_key}"))
        self.choices = choices
        if keep in choices:
            value = keep
        else:
            value = None if selected or not labels else labels[0][1]
        self._quiet = True
        try:
            self.dropdown.options = labels
            self.dropdown.value = value
        finally:
            self._quiet = False
        self._show_estimate()

    @property
    def selection(self) -> Any:
        """The selected loaded instance (:class:`~lmsext.LLM`) or downloaded model, None when there is none."""
        return self.choices.get(self.dropdown.value)

    def select(self, choice: str) -> None:
        """Select ``choice`` ("loaded:<identifier>" or "file:<model key>", or a bare model key)."""
        if choice not in self.choices:
            choice = f"file:{choice}"
        if choice not in self.choices:
            raise LmsextError(f"{choice.split(':', 1)[1]!r} is not in the list: refresh it, or download it")
        self.dropdown.value = choice

    def _selected(self, change: Any = None) -> None:
        if self._quiet:
            return
        self._show_estimate()
        if self.on_select is not None and self.selection is not None:
            try:
                self.on_select(self.selection)
            except (LmsextError, OSError, ValueError) as exc:
                self._say(str(exc), error=True)

    def _show_estimate(self) -> None:
        """The memory the selection takes (loaded) or would take with the session's load defaults."""
        picked = self.selection
        if picked is None:
            self.estimate.value = "<span style='color:#888'>no models found</span>"
            return
        if hasattr(picked, "identifier"):
            memory = picked.load_result.memory
            used = sum(v for v in memory.values() if isinstance(v, int))
            self.estimate.value = f"loaded: takes <b>{format_bytes(used)}</b> (weights and KV cache)"
            return
        try:
            memory = self.client.llm.estimate(str(picked.path), self.session.load_config, allow_download=False)
        except LmsextError as exc:
            self.estimate.value = f"<span style='color:#c62828'>{esc(exc)}</span>"
            return
        verdict = ("" if memory.fits is None else " — <span style='color:#2e7d32'>fits</span>" if memory.fits
                   else " — <span style='color:#c62828'><b>does NOT fit</b></span>")
        self.estimate.value = (f"memory estimate (session load settings): <b>{format_bytes(memory.total)}</b>"
                               f"{verdict}")

    # -- Load and Download ---------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while a Load or Download started here runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, action: Callable[[], Any]) -> threading.Thread | None:
        """Run ``action`` (:meth:`load`, :meth:`download`) on a background thread; errors show in the status."""
        if self.busy:
            return None

        def run() -> None:
            try:
                action()
            except LmsextError as exc:
                self._say(str(exc), error=True)
            finally:
                self.load_button.disabled = self.download_button.disabled = False

        self.load_button.disabled = self.download_button.disabled = True
        self._thread = threading.Thread(target=run, name="lmsext-model-picker", daemon=True)
        self._thread.start()
        return self._thread

    def join(self, timeout: float | None = None) -> None:
        """Wait for a Load or Download started here."""
        if self._thread is not None:
            self._thread.join(timeout)

    def load(self):
        """Load the selection with the session's load defaults (a loaded one is used as it is) and make it
        the session's current model; returns the :class:`~lmsext.LLM`."""
        picked = self.selection
        if picked is None:
            raise LmsextError("no model selected")
        if hasattr(picked, "identifier"):
            llm = picked
            self._say(f"using '{esc(llm.identifier)}' (already loaded)")
        else:
            self._say(f"loading {esc(picked.model_key)}…")
            self.progress.layout.display, self.progress.value = None, 0.0
            llm = self.client.llm.load(picked.model_key, config=self.session.load_config,
                                       on_load_progress=self._on_progress)
            self.progress.value = 1.0
            self._say(f"loaded as '{esc(llm.identifier)}' in {llm.load_result.load_time_seconds:.2f} s")
        self.session.model = llm.identifier
        self.refresh(f"loaded:{llm.identifier}")
        if self.on_load is not None:
            self.on_load(llm)
        return llm

    def _on_progress(self, fraction: float) -> None:
        self.progress.value = min(max(fraction, 0.0), 1.0)

    def download(self):
        """Download the repository in the Download box (its quantization box: which file), then list and select
        it; returns the :class:`~lmsext.backend.DownloadedModel`."""
        repo = self.repo.value.strip()
        if not repo:
            raise LmsextError("type a Hugging Face repository (owner/repo-GGUF) to download")
        self._say(f"asking the hub about {esc(repo)}…")
        job = self.job = self.client.llm.download_job(repo, self.quant.value.strip() or None, progress_bar=False)
        self.progress.layout.display, self.progress.value = None, 0.0
        done = threading.Event()
        runner = threading.Thread(target=_run_job, args=(job, done), name="lmsext-download", daemon=True)
        runner.start()
        while not done.wait(DOWNLOAD_POLL):
            total = job.total_size_bytes or 0
            self.progress.value = job.downloaded_bytes / total if total else 0.0
            self._say(f"downloading {esc(repo)}: {format_bytes(job.downloaded_bytes)}"
                      + (f" of {format_bytes(total)}" if total else ""))
        if job.error or job.status not in ("completed", "already_downloaded"):
            raise LmsextError(job.error or f"download of {repo} {job.status}")
        self.progress.value = 1.0
        key = job.plan.model_key
        self._say(f"downloaded {esc(key)}" if job.status != "already_downloaded" else f"{esc(key)}: already downloaded")
        self.refresh(f"file:{key}")
        return self.selection

    def _say(self, text: str, error: bool = False) -> None:
        self.status.value = f"<span style='color:#c62828'>{esc(text)}</span>" if error else text


def _run_job(job: Any, done: threading.Event) -> None:
    """Run a download job, then set ``done``; its one-line error stays in ``job.error``."""
    try:
        job.run()
    except LmsextError:
        pass
    finally:
        done.set()


__all__ = ["ModelPicker"]
