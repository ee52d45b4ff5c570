"""Shared fixtures: model folders that hold nothing but what the tests generate (the embedded default
model stories260K is always in the catalog), the stories260K path, a clean default client."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from lmsext.models import embedded_model_path

#: An empty model folder for the whole run: the tests see the embedded model through the catalog, never
#: the caller's own folders (unless LMSEXT_MODELS_PATH is set: then those, as a user's).
EMPTY_MODELS_DIR = Path(tempfile.mkdtemp(prefix="lmsext-test-models-"))
atexit.register(shutil.rmtree, EMPTY_MODELS_DIR, True)

if not os.environ.get("LMSEXT_MODELS_PATH"):
    os.environ["LMSEXT_MODELS_PATH"] = str(EMPTY_MODELS_DIR)


@pytest.fixture(scope="session")
def stories_path() -> Path:
    """Path of stories260K.gguf: the embedded default model shipped inside the package."""
    path = embedded_model_path()
    assert path.is_file(), f"the embedded default model is missing: {path}"
    return path


@pytest.fixture
def models_dir(tmp_path) -> Path:
    """An empty model folder, the only one on LMSEXT_MODELS_PATH for this test (see :func:`isolated_models`)."""
    folder = tmp_path / "models"
    folder.mkdir()
    return folder


def unload_new(client, before) -> None:
    """Unload the instances ``client`` sees that are not among ``before``: every ``Client()`` shares the
    kernel's instances (lmsext.registry), so a test unloads what it loaded, not a module fixture's model."""
    for llm in client.llm.list_loaded():
        if llm not in before:
            llm.unload()


@pytest.fixture(autouse=True, scope="module")
def _no_instances_across_modules():
    """Nothing one test module left loaded in the kernel's shared registry reaches the next module."""
    yield
    from lmsext.registry import LOCAL, registry
    for llm in list(registry(LOCAL).instances.values()):  # (no engine started for a module that used none)
        llm.unload()


@pytest.fixture
def unload_all():
    """Unload the instances loaded during the test (by any client: they share the kernel's registry) after it;
    a module fixture's model stays."""
    from lmsext.client import default_client
    before = default_client().llm.list_loaded()
    yield
    unload_new(default_client(), before)


@pytest.fixture
def isolated_models(monkeypatch, models_dir):
    """Only an empty folder (:func:`models_dir`) on LMSEXT_MODELS_PATH, whatever the caller's environment says:
    the catalog is the embedded default model plus what the test writes into ``models_dir``."""
    monkeypatch.setenv("LMSEXT_MODELS_PATH", str(models_dir))
    return models_dir


@pytest.fixture
def shared_models_only(isolated_models):
    """The former name of :func:`isolated_models` (kept for the modules that use it)."""
    return isolated_models


@pytest.fixture
def client(isolated_models):
    """A fresh ``lmsext.Client``; what the test loaded is unloaded after it."""
    import lmsext
    c = lmsext.Client()
    before = c.llm.list_loaded()
    yield c
    unload_new(c, before)
    c.close()


@pytest.fixture
def model(client):
    """stories260K loaded in :func:`client` with a 1024-token context."""
    return client.llm.model("stories260K", config={"contextLength": 1024})


@pytest.fixture(scope="module")
def module_client():
    """A ``lmsext.Client`` shared by a module's tests; what the module loaded is unloaded after it."""
    import lmsext
    c = lmsext.Client()
    before = c.llm.list_loaded()
    yield c
    unload_new(c, before)
    c.close()


@pytest.fixture(scope="module")
def module_model(module_client):
    """stories260K with a 512-token context, shared by a module's tests."""
    return module_client.llm.load(str(embedded_model_path()), config={"contextLength": 512})


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
