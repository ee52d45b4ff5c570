"""Model downloads on the real huggingface_hub code path, against a loopback hub (tests/hf_hub_server.py).

HF_ENDPOINT points at the loopback server, which serves GGUF models generated here (lmsext.synth):
progress, the choice among several quantizations, resume after an interrupted transfer, cancel,
a corrupt file, 404 and offline — each leaving the catalog and the loaded models as they should be.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest
from hf_hub_server import HubServer

from lmsext import synth
from lmsext.engine.downloads import DownloadCancelled, parse_model_ref, pick_file
from lmsext.errors import DownloadError, ModelNotFoundError

REPO = "lmsext-test/tiny-GGUF"
MULTI = "lmsext-test/multi-GGUF"
CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory) -> dict[str, bytes]:
    """Three generated GGUF models of increasing size (random weights)."""
    folder = tmp_path_factory.mktemp("gen")
    return {name: synth.random_model(folder / f"{name}.gguf", n_params_target=n, dtype="f32").read_bytes()
            for name, n in (("small", 60_000), ("mid", 150_000), ("big", 400_000))}


@pytest.fixture
def hub(ggufs, monkeypatch, isolated_models):
    from huggingface_hub import constants
    # huggingface_hub reads (and reports progress, checks our cancel flag) in chunks of 10 MiB; the
    # generated models are ~1 MB, so read them in 64 KiB chunks to see the transfer move
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", CHUNK)
    with HubServer() as server:
        server.add(REPO, "tiny.gguf", ggufs["mid"])
        server.add(MULTI, "multi.Q2_K.gguf", ggufs["small"])
        server.add(MULTI, "multi.Q4_K_M.gguf", ggufs["mid"])
        server.add(MULTI, "multi.Q8_0.gguf", ggufs["big"])
        server.add(MULTI, "README.md", b"# multi\n")
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield server


def gguf_files(folder: Path) -> list[str]:
    """Every file under ``folder``, hidden folders included (a half download would show here)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_download_lists_and_loads_the_model_with_progress(client, hub, ggufs, isolated_models, capsys):
    jobs = []
    got = client.llm.download(REPO, on_job=jobs.append)
    out, err = capsys.readouterr()
    assert got.model_key == f"{REPO}/tiny" and Path(got.path) == isolated_models / REPO / "tiny.gguf"
    assert Path(got.path).read_bytes() == ggufs["mid"] and got.architecture == "llama"
    assert f"downloading {REPO}/tiny.gguf (the repository's only GGUF file)" in out
    assert f"downloaded {REPO}/tiny.gguf" in out and f"as model key {REPO}/tiny" in out
    assert "100%" in err  # tqdm's bar (a widget in a notebook)
    [job] = jobs
    rest = job.to_rest()
    assert rest["status"] == "completed" and rest["downloaded_bytes"] == rest["total_size_bytes"] == len(ggufs["mid"])
    assert rest["completed_at"] and rest["started_at"] and rest["job_id"].startswith("job_")
    assert gguf_files(isolated_models) == [f"{REPO}/tiny.gguf"]  # nothing staged left behind
    assert f"{REPO}/tiny" in [m.model_key for m in client.llm.list_downloaded()]
    model = client.llm.model(f"{REPO}/tiny", config={"contextLength": 256})
    assert model.complete("a", config={"maxTokens": 3}).stats.predicted_tokens_count == 3
    gets = len(hub.requests)
    again = client.llm.download(REPO)
    assert again.path == got.path and "already downloaded" in capsys.readouterr().out
    assert not [r for r in hub.requests[gets:] if r[0] == "GET" and "/resolve/" in r[1]]


def test_quantization_picks_the_file_and_says_which(client, hub, isolated_models, capsys):
    got = client.llm.download(MULTI)
    assert got.model_key == f"{MULTI}/multi.Q4_K_M"  # smallest of at least 4 bits (Q2_K is smaller)
    assert "the smallest of 3 GGUF files with at least 4 bits (has: Q2_K, Q4_K_M, Q8_0" in capsys.readouterr().out
    assert client.llm.download(MULTI, quantization="q8_0").model_key == f"{MULTI}/multi.Q8_0"
    assert client.llm.download(f"{MULTI}@Q2_K").model_key == f"{MULTI}/multi.Q2_K"
    with pytest.raises(ModelNotFoundError) as e:
        client.llm.download(MULTI, quantization="Q5_K_M")
    assert str(e.value) == f"{MULTI} has no Q5_K_M GGUF file (it has: Q2_K, Q4_K_M, Q8_0)"
    assert gguf_files(isolated_models) == sorted(f"{MULTI}/multi.{q}.gguf" for q in ("Q2_K", "Q4_K_M", "Q8_0"))


def test_interrupted_transfer_resumes_with_a_range_request(client, hub, ggufs, isolated_models):
    chunk = CHUNK  # huggingface_hub keeps what it received in whole chunks
    half = len(ggufs["big"]) // 2
    hub.add(REPO, "big.gguf", ggufs["big"], drop_at=half)
    got = client.llm.download(f"{REPO}/big.gguf", progress_bar=False)
    assert hub.repos[REPO]["big.gguf"].dropped
    kept = half - half % chunk
    assert kept > 0 and hub.ranges("big.gguf") == [f"bytes={kept}-"], hub.requests  # resumed where it broke
    data = Path(got.path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(ggufs["big"]).hexdigest()


def test_cancelled_download_leaves_no_half_file(client, hub, ggufs, isolated_models):
    hub.add(REPO, "slow.gguf", ggufs["big"], delay=0.05)

    def cancel_when_started(job):
        def watch():
            while job.downloaded_bytes == 0 and not job.wait(0.01):
                pass
            job.cancel()
        threading.Thread(target=watch, daemon=True).start()

    t0 = time.monotonic()
    with pytest.raises(DownloadCancelled, match="cancelled; nothing was kept"):
        client.llm.download(f"{REPO}/slow.gguf", progress_bar=False, on_job=cancel_when_started)
    assert time.monotonic() - t0 < 20
    assert gguf_files(isolated_models) == []  # not even in the hidden staging folder
    assert not (isolated_models / ".lmsext-downloads").exists()
    assert all(not m.model_key.endswith("slow") for m in client.llm.list_downloaded())


def test_corrupt_file_is_refused_and_not_listed(client, hub, isolated_models):
    hub.add(REPO, "broken.gguf", b"this is not a GGUF file\n" * 200)
    with pytest.raises(DownloadError) as e:
        client.llm.download(f"{REPO}/broken.gguf", progress_bar=False)
    assert "is not a valid GGUF model" in str(e.value) and "\n" not in str(e.value)
    assert gguf_files(isolated_models) == []
    assert "broken" not in " ".join(m.model_key for m in client.llm.list_downloaded())


def test_unknown_repo_file_offline_say_so_in_one_line(client, hub, monkeypatch, model):
    cases = [("nobody/nothing-GGUF", ModelNotFoundError, "Hugging Face repository not found: nobody/nothing-GGUF"),
             (f"{REPO}/missing.Q4_K_M.gguf", ModelNotFoundError, "Hugging Face file not found"),
             ("not a repo", DownloadError, "is not a Hugging Face repository id")]
    for ref, kind, text in cases:
        with pytest.raises(kind) as e:
            client.llm.download(ref)
        assert text in str(e.value) and "\n" not in str(e.value), str(e.value)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: connection refused
    with pytest.raises(DownloadError, match=r"^cannot reach the Hugging Face hub at http://127.0.0.1:9 \(offline\?\)"):
        client.llm.download(REPO)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE is set"):
        client.llm.download(REPO)
    assert model.complete("Once", config={"maxTokens": 2}).stats.predicted_tokens_count == 2  # nothing lost


def test_model_references_and_the_pick_rule():
    assert parse_model_ref("https://huggingface.co/o/r-GGUF/blob/main/x.Q4_K_M.gguf") == ("o/r-GGUF", "x.Q4_K_M.gguf", None)
    assert parse_model_ref("https://huggingface.co/o/r-GGUF") == ("o/r-GGUF", None, None)
    assert parse_model_ref("o/r@Q8_0") == ("o/r", None, "Q8_0")
    files = {"m.IQ2_XS.gguf": 10, "m.Q3_K_M.gguf": 20, "m.Q4_K_S.gguf": 30, "m.Q4_K_M.gguf": 32, "m.F16.gguf": 90,
             "m-00002-of-00002.gguf": 5, "mmproj-f16.gguf": 4}
    assert pick_file(files, None, "o/r")[0] == "m.Q4_K_S.gguf"
    assert pick_file(files, "f16", "o/r")[0] == "m.F16.gguf"


def test_rest_download_pair(hub, ggufs, isolated_models):
    import httpx

    import lmsext
    from lmsext import server as rest
    hub.add(MULTI, "multi.Q8_0.gguf", ggufs["big"], delay=0.01)  # ~1 s: statuses while it downloads
    c = lmsext.Client()
    with rest.serve(port=0, client=c) as handle, httpx.Client(base_url=handle.url, timeout=30) as http:
        r = http.post("/api/v1/models/download", json={"model": MULTI, "quantization": "Q8_0"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "downloading" and body["total_size_bytes"] == len(ggufs["big"]) and body["started_at"]
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = http.get(f"/api/v1/models/download/status/{body['job_id']}").json()
            seen.append(status)
            if status["status"] != "downloading":
                break
            time.sleep(0.1)
        assert status["status"] == "completed", status
        assert status["downloaded_bytes"] == status["total_size_bytes"] == len(ggufs["big"]) and status["completed_at"]
        moving = [s for s in seen if s["status"] == "downloading" and s["downloaded_bytes"] > 0]
        assert moving and all({"bytes_per_second", "estimated_completion"} <= set(s) for s in moving)
        assert f"{MULTI}/multi.Q8_0" in [m["key"] for m in http.get("/api/v1/models").json()["models"]]
        again = http.post("/api/v1/models/download", json={"model": f"{MULTI}/multi.Q8_0.gguf"}).json()
        assert again["status"] == "already_downloaded"
        r = http.post("/api/v1/models/download", json={"model": "nobody/nothing-GGUF"})
        assert r.status_code == 404 and r.json()["error"]["type"] == "model_not_found"
        r = http.post("/api/v1/models/download", json={"model": MULTI, "size": 1})
        assert r.status_code == 400 and r.json()["error"]["param"] == "size"
        paths = http.get("/openapi.json").json()["paths"]
        assert "post" in paths["/api/v1/models/download"] and "get" in paths["/api/v1/models/download/status/{job_id}"]
        r = http.get("/api/v1/models/download/status/job_nope")
        assert r.status_code == 404 and r.json()["error"]["param"] == "job_id"
        hub.add(REPO, "broken.gguf", b"not GGUF" * 100)
        job = http.post("/api/v1/models/download", json={"model": f"{REPO}/broken.gguf"}).json()
        for _ in range(100):
            status = http.get(f"/api/v1/models/download/status/{job['job_id']}").json()
            if status["status"] != "downloading":
                break
            time.sleep(0.1)
        assert status["status"] == "failed" and "is not a valid GGUF model" in status["error"]
    assert gguf_files(isolated_models) == [f"{MULTI}/multi.Q8_0.gguf"]


def test_lm_get_magic(ip, hub, isolated_models, unload_all):
    from magic_runner import run
    value, cap = run(ip, f"%lm_get {MULTI} --quant Q2_K")
    texts = [o.data["text/plain"] for o in cap.outputs]
    assert texts[0].startswith(f"downloading {MULTI}/multi.Q2_K.gguf (matches quantization Q2_K) to ")
    assert texts[-1] == f"%lm_load {MULTI}/multi.Q2_K loads it" and value.model_key == f"{MULTI}/multi.Q2_K"
    value, cap = run(ip, "%lm_get nobody/nothing-GGUF")
    [out] = cap.outputs
    assert value is None and "%lm_get: Hugging Face repository not found: nobody/nothing-GGUF" in out.data["text/plain"]


def test_loading_a_hub_id_downloads_from_hf_endpoint_read_at_call_time(client, hub, ggufs, monkeypatch, tmp_path):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))  # huggingface_hub's own cache
    llm = client.llm.load(REPO, config={"contextLength": 256})  # not in the model folders: fetched from the hub
    assert llm.load_result.path.startswith(str(tmp_path / "hf-cache"))
    assert any(m == "GET" and p.endswith("/tiny.gguf") for m, p, _ in hub.requests)
