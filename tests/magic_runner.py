"""Run an lmsext magic in the test shell and capture what it displays."""

from __future__ import annotations

from IPython.utils.capture import capture_output


def run(ip, line, cell=None):
    """Run a magic (``%name args`` or ``%%name args`` + cell) under capture_output; (value, captured)."""
    with capture_output() as cap:
        if line.startswith("%%"):
            name, _, args = line[2:].partition(" ")
            value = ip.run_cell_magic(name, args, cell or "")
        else:
            name, _, args = line.lstrip("%").partition(" ")
            value = ip.run_line_magic(name, args)
    return value, cap


def run_headless(tmp_path, monkeypatch, *sources: str, **client_options):
    """Execute ``sources`` as the code cells of a new notebook in a fresh kernel (nbclient; this checkout
    importable), save it under ``tmp_path`` and return the notebook as read back from disk."""
    import os
    from pathlib import Path

    import nbclient
    import nbformat

    repo = str(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbclient.NotebookClient(nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
                            **client_options).execute()
    path = tmp_path / "saved.ipynb"
    nbformat.write(nb, path)
    return nbformat.read(path, as_version=4)


class KernelOutput:
    """What an ipykernel would send to the front end while the shell runs, in order (a context manager).

    ``stream``: one message per flush of stdout, carrying what was written since the last one (as
    ipykernel's ``OutStream``); ``display_data`` / ``update_display_data`` / ``clear_output`` from the
    display publisher, which flushes stdout first (as ``ZMQDisplayPublisher``). ``messages`` holds
    ``(type, content, time)`` with ``clock``'s time; :meth:`outputs` is what the cell then shows.
    """

    def __init__(self, shell, clock=None) -> None:
        import time
        self.shell = shell
        self.clock = clock or time.monotonic
        self.messages: list[tuple[str, dict, float]] = []
        self.unflushed = ""

    def send(self, kind: str, content: dict) -> None:
        self.messages.append((kind, content, self.clock()))

    def __enter__(self) -> "KernelOutput":
        import io
        import sys

        from IPython.core.displaypub import DisplayPublisher
        out = self

        class Stdout(io.TextIOBase):
            def writable(self):
                return True

            def write(self, text):
                out.unflushed += text
                return len(text)

            def flush(self):
                if out.unflushed:
                    text, out.unflushed = out.unflushed, ""
                    out.send("stream", {"name": "stdout", "text": text})

        class Publisher(DisplayPublisher):
            def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
                sys.stdout.flush()
                out.send("update_display_data" if update else "display_data",
                         {"data": data, "metadata": metadata or {}, "transient": transient or {}})

            def clear_output(self, wait=False):
                sys.stdout.flush()
                out.send("clear_output", {"wait": wait})

        self._saved = (sys.stdout, self.shell.display_pub)
        sys.stdout, self.shell.display_pub = Stdout(), Publisher(shell=self.shell)
        return self

    def __exit__(self, *exc) -> None:
        import sys
        sys.stdout.flush()
        sys.stdout, self.shell.display_pub = self._saved

    def outputs(self) -> list[dict]:
        """The cell's outputs as a front end builds them: consecutive stream messages merged, updates
        applied by display id, ``clear_output(wait=True)`` clearing when the next output arrives."""
        outputs: list[dict] = []
        clear_pending = False
        for kind, content, _ in self.messages:
            if kind == "clear_output":
                if content["wait"]:
                    clear_pending = True
                else:
                    outputs = []
                continue
            if kind == "update_display_data":
                for o in outputs:
                    if o.get("display_id") == content["transient"].get("display_id"):
                        o["data"] = content["data"]
                continue
            if clear_pending:
                outputs, clear_pending = [], False
            if kind == "stream" and outputs and outputs[-1]["type"] == "stream":
                outputs[-1]["text"] += content["text"]
            elif kind == "stream":
                outputs.append({"type": "stream", "text": content["text"]})
            else:
                outputs.append({"type": "display_data", "data": content["data"],
                                "display_id": content["transient"].get("display_id")})
        return outputs
