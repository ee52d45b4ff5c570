"""GPU placement measured from llama.cpp, and the GPU settings' edge cases — on the real engine.

Every test asserts what THIS build reports (``gpu_devices()``: the GPUs llama.cpp enumerated, none on a
CPU-only build), so the same file holds on the CPU build here and on a CUDA build
(``scripts/gpu-check.sh`` runs it there).
"""

from __future__ import annotations

import llama_cpp
import pytest

from lmsext.backend import MemoryEstimate
from lmsext.config import LoadModelConfig
from lmsext.engine import EngineModel, read_model_info
from lmsext.engine.devices import (RAM, all_devices, buffer_device, favor_main_split, gpu_devices, layer_devices,
                                   read_placement, tensor_layer)
from lmsext.engine.estimate import check_fits, estimate_memory
from lmsext.engine.params import plan_load
from lmsext.engine.validate import validate_gguf
from lmsext.errors import ConfigError, InsufficientMemoryError
from lmsext.models import embedded_model_path
from lmsext.render.html import format_setting

STORIES = embedded_model_path()
GPUS = gpu_devices()
N_GPU = len(GPUS)


def load(config):
    return EngineModel.load(STORIES, LoadModelConfig.parse(config))


# ------------------------------------------------------------------------------ the device registry

def test_devices_come_from_ggmls_registry():
    devices = all_devices()
    assert any(d.kind == "CPU" for d in devices)  # every build has the CPU device
    assert all(d.total_bytes >= d.free_bytes >= 0 for d in devices)
    cpu = next(d for d in devices if d.kind == "CPU")
    assert cpu.total_bytes > 0 and cpu.description
    assert [d.index for d in GPUS] == list(range(N_GPU))  # mainGpu / disabledGpus indexes
    assert (N_GPU > 0) <= bool(llama_cpp.llama_supports_gpu_offload())  # GPUs only on a GPU build
    assert N_GPU < int(llama_cpp.llama_max_devices()) or N_GPU == 0  # not the compile-time maximum


# ------------------------------------------------------------------------------ measured placement

def test_load_reports_the_placement_llama_cpp_made():
    engine, report = load({"gpu": 0.5, "contextLength": 256})
    try:
        gpu = report.plan.effective["gpu"]
        assert {"ratio", "layers", "total_layers", "main_gpu", "split_strategy", "disabled_gpus"} <= set(gpu)
        assert gpu["layers_requested"] == 3 == report.plan.model_params["n_gpu_layers"]
        assert [d["name"] for d in gpu["devices"]] == [d.name for d in GPUS]
        on_gpus = sum(d["layers"] for d in gpu["devices"])
        assert gpu["layers"] == on_gpus == (3 if GPUS else 0)
        assert gpu["ram"]["layers"] + on_gpus == gpu["total_layers"] == 6  # 5 blocks + the output layer
        kv = gpu["ram"]["kv_bytes"] + sum(d["kv_bytes"] for d in gpu["devices"])
        assert abs(kv - report.plan.kv_cache_bytes()) <= 20_000  # llama.cpp prints MiB to 0.01
        assert gpu["ram"]["model_bytes"] > 0  # token_embd always stays in RAM
        assert gpu["ram"]["compute_bytes"] > 0
        text = format_setting("gpu", gpu)
        assert text.startswith("3 of 6 layers on GPU" if GPUS else "0 of 6 layers (no GPU backend)")
    finally:
        engine.close()


def test_placement_parser_reads_llama_cpp_gpu_log_lines():
    # llama.cpp's own format strings (llama-model.cpp, llama-kv-cache.cpp, llama-context.cpp) on a CUDA build
    lines = [f"load_tensors: layer {i:3d} assigned to device {'CPU' if i < 3 else 'CUDA0'}, is_swa = 0"
             for i in range(6)]
    lines += [f"llama_kv_cache: layer {i:3d}: dev = {'CPU' if i < 3 else 'CUDA0'}" for i in range(5)]
    lines += ["load_tensors: offloaded 3/6 layers to GPU",
              "load_tensors:        CUDA0 model buffer size =   100.00 MiB",
              "load_tensors:   CPU_Mapped model buffer size =    50.50 MiB",
              "llama_kv_cache:      CUDA0 KV buffer size =     4.00 MiB",
              "llama_kv_cache:        CPU KV buffer size =     6.00 MiB",
              "sched_reserve:      CUDA0 compute buffer size =    30.00 MiB",
              "sched_reserve:  CUDA_Host compute buffer size =     2.00 MiB",
              "resolve_fused_ops: Flash Attention enabled"]
    p = read_placement(lines, ["CUDA0"])
    assert p.devices["CUDA0"].layers == 3 and p.devices[RAM].layers == 3 and p.gpu_layers() == 3
    assert p.kv_layers() == (2, 3) and p.offloaded_line == (3, 6) and p.flash_attention is True
    assert p.devices["CUDA0"].model_bytes == 100 * 2**20 and p.devices[RAM].model_bytes == int(50.5 * 2**20)
    assert p.devices["CUDA0"].compute_bytes == 30 * 2**20 and p.devices[RAM].compute_bytes == 2 * 2**20
    assert buffer_device("CUDA_Host", ["CUDA0"]) == RAM and buffer_device("CPU_REPACK", ["CUDA0"]) == RAM


# ------------------------------------------------------------------------------ edge cases

def test_disabled_gpus_are_checked_against_the_gpus_present():
    info = read_model_info(STORIES)
    cfg = LoadModelConfig.parse({"gpu": {"ratio": 1, "disabledGpus": [N_GPU]}})
    if GPUS:  # one past the last GPU present: refused in one line naming how many there are
        with pytest.raises(ConfigError, match=rf"^gpu\.disabledGpus=\[{N_GPU}\]: llama.cpp sees {N_GPU} GPU"):
            plan_load(cfg, info)
    else:  # no GPU: nothing to disable, no phantom tensor_split
        plan = plan_load(cfg, info)
        assert "tensor_split" not in plan.model_params
        assert any("0 of 6 layers offloaded" in n for n in plan.notes)


def test_tensor_split_has_one_entry_per_real_gpu():
    info = read_model_info(STORIES)
    if N_GPU < 2:
        plan = plan_load(LoadModelConfig.parse({"gpu": {"ratio": 1, "splitStrategy": "favorMainGpu"}}), info)
        assert len(plan.model_params.get("tensor_split", [])) == N_GPU
        return
    plan = plan_load(LoadModelConfig.parse({"gpu": {"ratio": 1, "disabledGpus": [0]}}), info)
    assert len(plan.model_params["tensor_split"]) == N_GPU and plan.model_params["tensor_split"][0] == 0


def test_main_gpu_is_range_checked():
    cfg = LoadModelConfig.parse({"gpu": {"ratio": 1, "mainGpu": N_GPU}})
    if GPUS:
        with pytest.raises(ConfigError, match=rf"^gpu\.mainGpu={N_GPU}: llama.cpp sees {N_GPU} GPU") as err:
            plan_load(cfg, read_model_info(STORIES))
        assert "\n" not in str(err.value)
    else:
        engine, report = load({"gpu": {"ratio": 1, "mainGpu": 0}, "contextLength": 256})
        engine.close()
        assert report.plan.effective["gpu"]["main_gpu"] == 0


def test_favor_main_gpu_fills_the_main_gpu_then_spills_evenly():
    assert favor_main_split([10, 10, 10], main=1, need=5) == [0.0, 1.0, 0.0]  # fits: all on the main GPU
    assert favor_main_split([10, 10, 10], main=1, need=20) == [5.5, 9.0, 5.5]  # 90 % of main, rest shared
    assert favor_main_split([10, 0, 10], main=0, need=20) == [9.0, 0.0, 11.0]  # a disabled GPU takes none
    # split by layer (SPLIT_MODE_NONE would never spill), the weights cut layers as llama.cpp does
    plan = plan_load(LoadModelConfig.parse({"gpu": {"ratio": 1, "splitStrategy": "favorMainGpu"}}),
                     read_model_info(STORIES))
    assert plan.model_params["split_mode"] == llama_cpp.LLAMA_SPLIT_MODE_LAYER
    assert layer_devices(5, 6, [5.5, 9.0, 5.5]) == [0, 0, 1, 1, 1, 2]


def test_offload_kv_is_reported_per_the_real_placement():
    engine, report = load({"gpu": 0.5, "offloadKVCacheToGpu": True, "contextLength": 256})
    engine.close()
    gpu, eff = report.plan.effective["gpu"], report.plan.effective
    kv_on_gpu = sum(d["kv_layers"] for d in gpu["devices"])
    assert kv_on_gpu + gpu["ram"]["kv_layers"] == 5
    assert kv_on_gpu == (2 if GPUS else 0)  # 3 layers offloaded: the output layer (no KV) and 2 blocks
    assert eff["offload_kv_cache_to_gpu"] is False  # 3 of 5 layers' KV stay in RAM
    assert any("offload_kv_cache_to_gpu" in n and "RAM" in n for n in report.plan.notes)
    estimate = estimate_memory(report.plan.info, report.plan)  # the CPU layers' KV counted in RAM
    assert estimate.kv_cache == pytest.approx(report.plan.kv_cache_bytes() * gpu["ram"]["kv_layers"] / 5, rel=0.01)


def test_token_embd_is_never_counted_as_offloaded():
    assert tensor_layer("token_embd.weight", 5) is None
    assert tensor_layer("blk.3.attn_q.weight", 5) == 3 and tensor_layer("output.weight", 5) == 5
    info = read_model_info(STORIES)
    embd = next(t.nbytes for t in validate_gguf(STORIES).tensors if t.name == "token_embd.weight")
    estimate = estimate_memory(info, plan_load(LoadModelConfig.parse({"gpu": "max"}), info))
    assert estimate.weights >= embd  # in RAM whatever the offload
    assert (estimate.weights == validate_gguf(STORIES).tensor_bytes) is (not GPUS)


def test_flash_attention_is_auto_where_layers_go_to_a_gpu():
    engine, report = load({"contextLength": 256})
    engine.close()
    fa = report.plan.context_params["flash_attn_type"]
    if GPUS:
        assert fa == llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO
        assert report.plan.effective["flash_attention"] in (True, False)  # what llama.cpp resolved
    else:  # off on CPU: measured slower there (docs/settings.md)
        assert fa == llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED and report.plan.effective["flash_attention"] is False


def test_gpu_strict_vram_cap_says_what_it_does():
    plan = plan_load(LoadModelConfig.parse({"gpuStrictVramCap": True}), read_model_info(STORIES))
    note = next(n for n in plan.notes if n.startswith("gpu_strict_vram_cap"))
    if llama_cpp.llama_supports_gpu_offload():
        assert "llama.cpp enforces no VRAM cap" in note and "guardrail" in note
    else:
        assert "no GPU backend" in note


def test_vram_estimate_and_the_per_device_guardrail():
    info = read_model_info(STORIES)
    estimate = estimate_memory(info, plan_load(LoadModelConfig.parse({"gpu": "max"}), info))
    assert set(estimate.vram) == {d.name for d in GPUS}  # a share on every GPU, none without
    assert ("VRAM: none" in estimate.describe_vram()) is (not GPUS)
    over = MemoryEstimate(weights=1, kv_cache=1, compute=1, overhead=1, available=2**40,
                          vram={"CUDA0": 2 * 2**30}, vram_free={"CUDA0": 2**30})
    assert over.fits is False and over.vram_over == ["CUDA0"]
    with pytest.raises(InsufficientMemoryError, match=r"^not loading m\.gguf: its share on CUDA0 needs about 2") as err:
        check_fits(over, "m.gguf")
    assert "\n" not in str(err.value)
    check_fits(over, "m.gguf", force=True)  # the guardrail is off when forced


def test_load_panel_shows_the_vram_line():
    from lmsext.widgets.load_panel import _estimate_html
    info = read_model_info(STORIES)
    estimate = estimate_memory(info, plan_load(LoadModelConfig.parse({"gpu": "max"}), info))
    assert estimate.describe_vram() in _estimate_html(estimate)


def test_summary_and_lm_ps_show_the_measured_gpu_row(ip):
    from magic_runner import run
    lr, cap = run(ip, "%lm_load stories260K --new --identifier gpu-row --context-length 256 --gpu 0.5")
    try:
        row = format_setting("gpu", lr.config["gpu"])
        assert row == ("0 of 6 layers (no GPU backend)" if not GPUS else row)
        assert row.startswith(f"{lr.config['gpu']['layers']} of 6 layers")
        assert row in str(lr)  # the load summary's gpu row
        _, cap = run(ip, "%lm_ps")
        text = " ".join(cap.outputs[0].data["text/plain"].split())  # the details wrap at 100 columns
        layers = lr.config["gpu"]["layers"]
        assert f" · {f'GPU {layers}/6 layers' if layers else 'CPU'} · " in text  # the card's line
        assert f"gpu={row}" in text  # %lm_ps's details: the same measured row
    finally:
        run(ip, "%lm_unload gpu-row")


def test_gpu_benchmark_smoke_run(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--layers", "1", "--prompt", "64", "--tokens", "8",
                           "--reps", "1", "--ratios", "0,1", "--out", str(out)],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    off, full = report["results"]
    assert off["layers_on_gpu"] == 0 and full["layers_on_gpu"] == (full["total_layers"] if GPUS else 0)
    for r in (off, full):
        assert r["prompt_tokens"] >= 64 and r["ttft_s"] > 0 and r["abort_s"] >= 0
        assert all(v > 0 for v in r["decode_tok_s"].values()), r["decode_tok_s"]
    assert "where the time went" in proc.stdout


def test_estimate_places_each_weight_on_its_layers_device():
    """llama.cpp's split replayed over two GPUs of equal free memory (plain data: no GPU needed to check the sums)."""
    from lmsext.engine.devices import Device
    from lmsext.engine.estimate import split_by_device
    info = read_model_info(STORIES)
    plan = plan_load(LoadModelConfig.parse({"gpu": 0.5, "contextLength": 256}), info)
    plan.gpu_layers_offloaded = 3  # what a GPU build plans: blocks 3 and 4, then the output layer
    gpus = [Device(0, "GPU0", "test", "GPU", 2**34, 2**34), Device(1, "GPU1", "test", "GPU", 2**34, 2**34)]
    tensors = validate_gguf(STORIES).tensors
    size = {t.name: t.nbytes for t in tensors}
    ram, kv_ram, vram, free = split_by_device(validate_gguf(STORIES), info, plan, compute=1000, gpus=gpus)
    on = lambda *blocks: sum(b for n, b in size.items() if any(n.startswith(f"blk.{i}.") for i in blocks))  # noqa: E731
    kv_layer = plan.kv_cache_bytes() // 5
    assert ram == size["token_embd.weight"] + on(0, 1, 2)  # the input layer never leaves RAM
    assert vram["GPU0"] == on(3, 4) + 2 * kv_layer + 1000  # layers 3, 4 (fractions 0, 1/3 < 1/2) with their KV
    assert vram["GPU1"] == size["output.weight"] + size["output_norm.weight"] + 1000  # the output layer: no KV
    assert kv_ram == plan.kv_cache_bytes() - 2 * kv_layer and free == {"GPU0": 2**34, "GPU1": 2**34}


def test_gpu_index_rules_on_two_gpus():
    """The rules check_indexes applies on a GPU build, on a two-GPU list (plain data): one line each."""
    from lmsext.engine.devices import Device, check_indexes
    two = [Device(0, "CUDA0", "a", "GPU", 1, 1), Device(1, "CUDA1", "b", "GPU", 1, 1)]
    check_indexes(1, [0], two)  # fine: main GPU 1, GPU 0 disabled
    for main, disabled, pattern in ((2, [], r"^gpu\.mainGpu=2: llama.cpp sees 2 GPU\(s\) here \(0=CUDA0, 1=CUDA1\)"),
                                    (None, [2], r"^gpu\.disabledGpus=\[2\]: .*2 is not one of them"),
                                    (None, [0, 1], r"every GPU is disabled; use gpu='off'"),
                                    (0, [0], r"^gpu\.mainGpu=0 is also in gpu\.disabledGpus=\[0\]")):
        with pytest.raises(ConfigError, match=pattern) as err:
            check_indexes(main, disabled, two)
        assert "\n" not in str(err.value)


def test_summary_memory_line_names_the_vram_of_each_gpu():
    from lmsext.render.gpu_row import vram_text
    gpu = {"layers": 3, "total_layers": 6, "ratio": 0.5, "devices": [
        {"name": "CUDA0", "layers": 3, "kv_layers": 2, "model_bytes": 2**20, "kv_bytes": 2**20, "compute_bytes": 2**20}],
        "ram": {"layers": 3, "kv_layers": 3}}
    assert vram_text(gpu) == " · VRAM CUDA0 3 MiB" and vram_text({**gpu, "devices": []}) == ""
    assert format_setting("gpu", gpu) == ("3 of 6 layers on GPU (ratio 0.5): CUDA0 3 layers, KV 2 layers, VRAM 3 MiB"
                                          " · KV cache of 3 layers in RAM")
