"""MkDocs hook: write the magics reference from the magics' own argparse help.

The page ``reference/magics.md`` holds the marker ``<!-- magics -->``; this hook loads the extension
into a plain IPython shell and replaces the marker with each ``%lm_*`` magic's docstring, which
``IPython.core.magic_arguments`` completes with the usage and the flags. The reference therefore
cannot drift from what ``%lm_load?`` prints in a notebook.
"""

from __future__ import annotations

import inspect

MARKER = "<!-- magics -->"


def magics_markdown() -> str:
    """Markdown for every ``%lm_*`` line and cell magic, in name order."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "lmsext")
    found: dict[str, tuple[str, object]] = {}
    for kind, prefix in (("line", "%"), ("cell", "%%")):
        for name, func in shell.magics_manager.magics[kind].items():
            if name.startswith("lm_") and name not in found:
                found[name] = (prefix, func)
    parts = []
    for name in sorted(found):
        prefix, func = found[name]
        doc = inspect.cleandoc(getattr(func, "__doc__", None) or "(no help)")
        doc = doc.removeprefix("::").strip("\n")  # magic_arguments writes the usage as an RST literal block
        parts.append(f"## `{prefix}{name}`\n\n```text\n{doc}\n```\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 (MkDocs hook signature)
    """Replace the marker on the magics reference page."""
    if MARKER in markdown:
        return markdown.replace(MARKER, magics_markdown())
    return markdown
