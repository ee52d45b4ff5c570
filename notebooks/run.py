"""Execute a notebook headless on this environment's Python (the kernel nbval uses too) and print its outputs.

    python notebooks/run.py notebooks/quickstart.ipynb [--out build/notebooks] [--in-place] [--quiet]

The executed copy goes to ``--out`` (default ``build/notebooks/``), or back into the file with
``--in-place`` (how ``build.py`` records the reference outputs nbval checks). Exit code 1 if a cell fails.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class CurrentEnvKernelSpecs(KernelSpecManager):
    """Every kernel name means this environment's ipykernel (like ``pytest --nbval-current-env``)."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        import ipykernel.kernelspec as spec
        return KernelSpec(resource_dir=spec.RESOURCES, **spec.get_kernel_dict())


def execute(path: Path, timeout: int = 600, widget_state: bool = True) -> tuple[nbformat.NotebookNode, float]:
    """Run every cell of ``path`` (working directory: the notebook's folder); returns (notebook, seconds).

    The kernel's own stderr (start-up warnings) is kept out of the way and shown only if a cell fails.
    """
    nb = nbformat.read(path, as_version=4)
    km = KernelManager(kernel_name="python3", kernel_spec_manager=CurrentEnvKernelSpecs())
    client = NotebookClient(nb, km=km, timeout=timeout, resources={"metadata": {"path": str(path.parent)}},
                            store_widget_state=widget_state, coalesce_streams=True)  # one stdout output per cell, as Lab shows it
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as kernel_log:
        try:
            client.execute(stderr=kernel_log)
        except BaseException:
            kernel_log.seek(0)
            sys.stderr.write(kernel_log.read()[-4000:])
            raise
    return nb, time.perf_counter() - t0


def cell_text(cell: nbformat.NotebookNode) -> str:
    """The plain-text outputs of a code cell (widgets as a one-line placeholder)."""
    out = []
    for o in cell.get("outputs", []):
        if o.output_type == "stream":
            out.append(o.text)
        elif o.output_type in ("display_data", "execute_result"):
            text = o.data.get("text/plain", "")
            if "application/vnd.jupyter.widget-view+json" in o.data and not text:
                text = "[widget]"
            out.append(text + "\n")
        elif o.output_type == "error":
            out.append(f"{o.ename}: {o.evalue}\n")
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--out", type=Path, default=Path("build/notebooks"))
    parser.add_argument("--in-place", action="store_true", help="write the outputs back into the notebook")
    parser.add_argument("--quiet", action="store_true", help="do not print the outputs")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--no-widget-state", action="store_true",
                        help="do not save the widgets' state in the notebook (small files, stable diffs)")
    args = parser.parse_args(argv)
    try:
        nb, seconds = execute(args.notebook, args.timeout, not args.no_widget_state)
    except CellExecutionError as exc:
        print(f"error: a cell of {args.notebook} failed:\n{exc}", file=sys.stderr)
        return 1
    dest = args.notebook if args.in_place else args.out / args.notebook.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)
    if not args.quiet:
        color = sys.stdout.isatty()
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                title = next((line for line in cell.source.splitlines() if line.startswith("#")), None)
                if title:
                    print(f"\n{title}")
                continue
            first = cell.source.splitlines()[0] if cell.source else ""
            print(f"\n>>> {first}" + (" …" if "\n" in cell.source else ""))
            text = cell_text(cell).rstrip()
            if text:
                print(text if color else ANSI.sub("", text))
    print(f"\n{args.notebook.name}: {len(nb.cells)} cells ran in {seconds:.1f} s; executed copy: {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
