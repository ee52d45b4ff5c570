"""The built wheel carries the embedded default model, its provenance and licence, and the widgets' front end."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

from lmsext.models import embedded_model_path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_contains_the_model_and_its_licence(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(REPO)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [wheel] = tmp_path.glob("lmsext-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert {"lmsext/models/stories260K.gguf", "lmsext/models/MODELS.md", "lmsext/models/LICENSE-stories260K",
                "lmsext/models/__init__.py", "lmsext/widgets/static/stream.js"} <= names
        model = z.read("lmsext/models/stories260K.gguf")
        assert hashlib.sha256(model).hexdigest() == hashlib.sha256(embedded_model_path().read_bytes()).hexdigest()
        assert "MIT" in z.read("lmsext/models/LICENSE-stories260K").decode()
        assert not [n for n in names if n.endswith(".gguf") and n != "lmsext/models/stories260K.gguf"]
