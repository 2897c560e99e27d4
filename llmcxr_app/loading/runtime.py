"""Where and at what precision the model runs: device and quantization names resolved once, with checks.

Knows nothing of files or of the UI; weights.py, convert.py and the benchmark (bench/) ask it.
"""

from __future__ import annotations

import warnings

import torch

from llmcxr_app import config as cfg


def resolve_device(device: str | torch.device) -> torch.device:
    """Map "auto" to the current CUDA device if there is one, else CPU; "cuda" to "cuda:<current index>"."""
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"Unknown device {device!r}; use auto, cpu, cuda or cuda:N.") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"Device {device!r} asked for, but this machine has no CUDA GPU; use --device cpu."
            )
        index = torch.cuda.current_device() if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise ValueError(f"Device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here.")
        dev = torch.device("cuda", index)
    return dev


# CPU default fp32, not bf16: without native bf16 instructions bf16 matmuls are far slower. Measured
# 2026-11-23 on this project's 2-core AMD EPYC (AVX2, no avx512_bf16), torch 2.13, transformers 5.23: a
# GPT-NeoX of dolly-v2-3b width (modeling.builders.make_llm(50281, 1024, LLMShape(num_layers=2, hidden_size=2560,
# num_heads=32, intermediate_size=10240, max_positions=2048)), i.e. 2 of its 32 layers), a 300-id prompt,
# then 20 cached greedy decode steps, median of 3, run under `nice` on a shared machine:
#   prefill: fp32 1.8 s, bf16 21-27 s;  decode step: fp32 63-74 ms, bf16 97-175 ms.
# A 4-layer d256 toy decoded faster in bf16 (3.3 vs 4.5 ms/step, 50 steps): at that size per-op overhead
# dominates, so it says nothing about the real model. bf16 stays available on CPU: it halves the memory.
def resolve_quantization(quantization: str, device: str | torch.device) -> str:
    """Check a quantization name and resolve "auto": "nf4" on CUDA, "fp32" elsewhere.

    nf4 and int8 on CPU work (bitsandbytes) but warn: they are slow there.
    """
    quantization = str(quantization).lower()
    if quantization not in cfg.QUANTIZATIONS:
        raise ValueError(
            f"Unknown quantization {quantization!r}; choose one of {', '.join(cfg.QUANTIZATIONS)}."
        )
    on_cuda = resolve_device(device).type == "cuda"
    if quantization == "auto":
        return "nf4" if on_cuda else "fp32"
    if quantization in ("nf4", "int8") and not on_cuda:
        warnings.warn(
            f"{quantization} runs on CPU through bitsandbytes but is much slower than fp32 there; "
            "use it only to save memory.",
            stacklevel=2,
        )
    return quantization
