"""Model resolution (lmsext.engine.resolve) as a load uses it: the model key a load reports, and the
model folders listed once per load (the file and its key come from the same listing)."""

from __future__ import annotations

import os
import shutil

import pytest

import lmsext
from lmsext.engine import resolve
from lmsext.errors import ModelNotFoundError

FLAT = "flat"
NESTED = "pub/repo-GGUF/tiny-Q4_K_M"


@pytest.fixture
def folders(tmp_path, stories_path, monkeypatch):
    """``tmp/models`` as the only model folder (flat.gguf and LM Studio's publisher/repo/file layout), a
    file outside it, a link into it, and one fake Hugging Face cache entry; the working directory is ``tmp``."""
    models, elsewhere = tmp_path / "models", tmp_path / "elsewhere"
    (models / "pub" / "repo-GGUF").mkdir(parents=True)
    elsewhere.mkdir()
    for dest in (models / f"{FLAT}.gguf", models / f"{NESTED}.gguf", elsewhere / "outside.gguf",
                 elsewhere / "x.Q8_0.gguf"):
        shutil.copy(stories_path, dest)
    os.symlink(models / f"{FLAT}.gguf", elsewhere / "link.gguf")
    monkeypatch.setenv("LMSEXT_MODELS_PATH", str(models))
    monkeypatch.setattr(resolve, "LMSTUDIO_DIRS", ())
    hf = resolve.ModelFile(key="someone/repo/x.Q8_0.gguf", path=elsewhere / "x.Q8_0.gguf", folder=elsewhere, size=1)
    monkeypatch.setattr(resolve, "_hf_cache_files", lambda: [hf])
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def walks(monkeypatch):
    """How many times the model folders were listed (calls of the real ``model_folders``)."""
    calls = []
    real = resolve.model_folders

    def counted():
        calls.append(1)
        return real()

    monkeypatch.setattr(resolve, "model_folders", counted)
    return calls


@pytest.fixture
def client():
    c = lmsext.Client()
    yield c
    c.llm.unload_all()


CASES = [  # (name as given, model_key of the load); paths are relative to the fixture's tmp dir
    (FLAT, FLAT),
    ("FLAT", FLAT),  # keys are case-insensitive
    (NESTED, NESTED),
    ("pub/repo-GGUF", NESTED),  # Hugging Face-style publisher/repo: its GGUF
    ("tiny-Q4_K_M", NESTED),  # the file's stem
    ("tiny-Q4_K_M.gguf", NESTED),
    (f"models/{NESTED}.gguf", NESTED),  # a relative path into a model folder: its key there
    (f"./models/{FLAT}.gguf", FLAT),
    ("<tmp>/models/flat.gguf", FLAT),  # an absolute path into a model folder
    ("<tmp>/elsewhere/outside.gguf", "outside"),  # a file outside the folders: its stem
    ("<tmp>/elsewhere/link.gguf", FLAT),  # a link to a file in a folder: that file's key
    ("someone/repo", "x.Q8_0"),  # Hugging Face cache: the file's stem, as before
    ("someone/repo/x.Q8_0.gguf", "x.Q8_0"),
]


@pytest.mark.parametrize("how", ["load", "model"])
@pytest.mark.parametrize("name, key", CASES)
def test_a_load_lists_the_model_folders_once_and_reports_the_key(folders, walks, client, how, name, key):
    name = name.replace("<tmp>", str(folders))
    llm = getattr(client.llm, how)(name, config={"contextLength": 256})
    assert llm.model_key == key and llm.identifier == key
    assert llm.load_result.to_rest()["model_instance_id"] == key
    assert len(walks) == 1, f"{how}({name!r}) listed the model folders {len(walks)} times"


def test_rest_style_jit_load_lists_the_folders_once(folders, walks, client):
    llm = client.llm.model("pub/repo-GGUF", allow_download=False, allow_paths=False)
    assert llm.model_key == NESTED and len(walks) == 1
    walks.clear()
    again = client.llm.model(NESTED, allow_download=False, allow_paths=False)  # loaded: found by its key
    assert again is llm and walks == []


def test_a_second_load_of_a_loaded_file_gets_the_next_identifier(folders, walks, client):
    first = client.llm.load(FLAT, config={"contextLength": 256})
    second = client.llm.load(str(folders / "models" / "flat.gguf"), config={"contextLength": 256})
    assert (first.identifier, second.identifier) == (FLAT, f"{FLAT}:2") and second.model_key == FLAT
    assert len(walks) == 2  # one per load


def test_resolve_model_and_key(folders, walks):
    found = resolve.resolve_model_and_key("pub/repo-GGUF")
    assert found.path == folders / "models" / f"{NESTED}.gguf" and found.key == NESTED and len(walks) == 1
    assert resolve.resolve_model("pub/repo-GGUF") == found.path
    walks.clear()
    by_path = resolve.resolve_model_and_key(str(folders / "elsewhere" / "link.gguf"))
    assert walks == []  # a path needs no listing to be found; its key lists the folders (once) when asked for
    assert by_path.key == by_path.key == FLAT and len(walks) == 1
    with pytest.raises(ModelNotFoundError, match="only model keys"):
        resolve.resolve_model_and_key(str(folders / "models" / "flat.gguf"), allow_paths=False)
