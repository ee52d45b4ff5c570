"""``%%lm_respond --template FILE|NAME``: a prompt template (``promptTemplate``) named on the magic's line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError

from ..config.prompt_template import BUILTIN_TEMPLATES

#: A template file larger than this is refused (a template is a few KB; a wrong path must not read a disk image).
MAX_TEMPLATE_FILE = 1024 * 1024


def template_option(value: str) -> Any:
    """The ``promptTemplate`` for ``--template``: a built-in's name (chatml, llama3, alpaca, plain), a ``.json``
    file holding a promptTemplate dict, or any other file holding a Jinja chat template."""
    if value in BUILTIN_TEMPLATES:
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise UsageError(f"--template {value!r}: neither a built-in template ({', '.join(BUILTIN_TEMPLATES)}) "
                         "nor a file")
    if path.stat().st_size > MAX_TEMPLATE_FILE:
        raise UsageError(f"--template {value!r}: the file is larger than {MAX_TEMPLATE_FILE:,} bytes")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--template {value!r}: cannot read it as UTF-8 text ({type(exc).__name__})") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise UsageError(f"--template {value!r}: not valid JSON ({exc})") from None
    return {"type": "jinja", "jinjaPromptTemplate": {"template": text}}
