"""Shared fixtures: the test model folder on LMSEXT_MODELS_PATH, the stories260K path, a clean default client."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: ``../shared/models`` beside the project checkout (holds stories260K.gguf).
MODELS_DIR = Path(__file__).resolve().parents[2] / "shared" / "models"

if not os.environ.get("LMSEXT_MODELS_PATH"):
    os.environ["LMSEXT_MODELS_PATH"] = str(MODELS_DIR)


@pytest.fixture(scope="session")
def stories_path() -> Path:
    """Path of stories260K.gguf (skips the test when the shared model folder is missing)."""
    path = MODELS_DIR / "stories260K.gguf"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture
def unload_all():
    """Unload every instance of ``lmsext.default_client()`` after the test."""
    yield
    from lmsext.client import default_client
    default_client().llm.unload_all()


@pytest.fixture
def shared_models_only(monkeypatch):
    """Only ``../shared/models`` on LMSEXT_MODELS_PATH, whatever the caller's environment says."""
    monkeypatch.setenv("LMSEXT_MODELS_PATH", str(MODELS_DIR))


@pytest.fixture
def client(shared_models_only):
    """A fresh ``lmsext.Client`` whose instances are unloaded after the test."""
    import lmsext
    c = lmsext.Client()
    yield c
    c.llm.unload_all()


@pytest.fixture
def model(client):
    """stories260K loaded in :func:`client` with a 1024-token context."""
    return client.llm.model("stories260K", config={"contextLength": 1024})


@pytest.fixture(scope="module")
def module_client():
    """A ``lmsext.Client`` shared by a module's tests; its instances are unloaded after the module."""
    import lmsext
    c = lmsext.Client()
    yield c
    c.llm.unload_all()


@pytest.fixture(scope="module")
def module_model(module_client):
    """stories260K with a 512-token context, shared by a module's tests."""
    return module_client.llm.load(str(MODELS_DIR / "stories260K.gguf"), config={"contextLength": 512})


@pytest.fixture(scope="session")
def shell():
    """IPython's global test shell (``start_ipython()`` returns None once it was started, hence the fallback)."""
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython
    return start_ipython() or get_ipython()


@pytest.fixture(scope="module")
def ip(shell):
    """The test shell with ``%load_ext lmsext`` for the module's tests."""
    shell.run_line_magic("load_ext", "lmsext")
    yield shell
    shell.run_line_magic("unload_ext", "lmsext")
