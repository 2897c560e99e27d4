"""Timing one generation path of the benchmark: text (first token, decode rate) and draw, with peak memory.

Wall time and this process's CPU time are both taken: on a shared machine the CPU time is the steadier one.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

from llmcxr_app import protocol
from llmcxr_app.bench.models import BenchModel
from llmcxr_app.config import SamplingConfig
from llmcxr_app.engine import generation, steps
from llmcxr_app.engine.fastpath import FastPath, FastPathConfig
from llmcxr_app.imaging import images


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to the current RSS
        except OSError:
            pass


def _peak_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _allocated_bytes(device: torch.device) -> int | None:
    return int(torch.cuda.memory_allocated(device)) if device.type == "cuda" else None


def _now() -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds): on a shared machine the second is the steadier figure."""
    return time.perf_counter(), time.process_time()


class _Clock:
    """A transformers streamer that only records when each put() arrives (the first put is the prompt)."""

    def __init__(self) -> None:
        self.times: list[tuple[float, float]] = []

    def put(self, value: Any) -> None:
        self.times.append(_now())

    def end(self) -> None:
        pass


class Mask:
    """A LogitsProcessor: ``<`` forced at the first new token, then image ids only (draw); or text ids
    without the stop ids (text)."""

    def __init__(self, layout: protocol.TokenLayout, n_prompt: int, kind: str, stop_ids: list[int]):
        self.layout, self.n_prompt, self.kind, self.stop_ids = layout, n_prompt, kind, stop_ids

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(scores, float("-inf"))
        lo, hi = self.layout.vocab_size, self.layout.total_vocab
        if self.kind == "text":
            out[:, :lo] = scores[:, :lo]
            out[:, self.stop_ids] = float("-inf")
        elif input_ids.shape[1] == self.n_prompt:
            out[:, self.layout.image_open_id] = 0.0
        else:
            out[:, lo:hi] = scores[:, lo:hi]
        return out


def _no_stop(fast: FastPath | None, stop_ids: list[int]) -> tuple[Any, Any]:
    """(prefill_fn, step) that mask the stop ids, so text runs for exactly max_new_tokens."""
    pre = fast.prefill if fast else steps.prefill
    stp = fast.step if fast else steps.decode_step

    def prefill_fn(model: Any, ids: torch.Tensor) -> tuple[torch.Tensor, Any]:
        logits, past = pre(model, ids)
        logits[:, stop_ids] = float("-inf")
        return logits, past

    def step(model: Any, token: int, past: Any, position: int) -> tuple[torch.Tensor, Any]:
        logits, past = stp(model, token, past, position)
        logits[:, stop_ids] = float("-inf")
        return logits, past

    return prefill_fn, step


def _stop_ids(bm: BenchModel) -> list[int]:
    eos = getattr(bm.tokenizer, "eos_token_id", None)
    return sorted({bm.layout.end_id} | ({int(eos)} if eos is not None else set()))


def _hf_run(
    bm: BenchModel, ids: list[int], kind: str, n_new: int
) -> tuple[list[int], list[tuple[float, float]]]:
    from transformers import LogitsProcessorList

    x = torch.tensor([ids], device=bm.device)
    clock, stop = _Clock(), _stop_ids(bm)
    _sync(bm.device)
    t0 = _now()
    out = bm.model.generate(
        input_ids=x,
        attention_mask=torch.ones_like(x),
        max_new_tokens=n_new,
        do_sample=False,
        use_cache=True,
        eos_token_id=stop,
        pad_token_id=stop[0],
        streamer=clock,
        temperature=None,
        top_p=None,
        top_k=None,
        logits_processor=LogitsProcessorList([Mask(bm.layout, len(ids), kind, stop)]),
    )
    return out[0, len(ids) :].tolist(), [t0, *clock.times[1:]]  # start, then one stamp per new id


FAST_CONFIGS = {
    "fast": FastPathConfig(),
    "eager": FastPathConfig(static_cache=False, compile=False),
    "static": FastPathConfig(static_cache=True, compile=False),
    "compiled": FastPathConfig(static_cache=True, compile=True),
}


def _text_run(
    bm: BenchModel, fast: FastPath | None, prompt: list[int], n_new: int
) -> tuple[list[int], list[float]]:
    """ids, [first-token s, tokens/s after it] in wall time, then the same in process CPU time."""
    if fast is None:
        new, stamps = _hf_run(bm, prompt, "text", n_new)
    else:
        pre, stp = _no_stop(fast, _stop_ids(bm))
        greedy = SamplingConfig(temperature=0.0, max_new_tokens=n_new)
        stamps, new = [_now()], []
        pieces = generation.generate_text(
            bm.model,
            bm.layout,
            bm.tokenizer,
            prompt,
            greedy,
            None,
            bm.context_length,
            prefill_fn=pre,
            step=stp,
        )
        for piece in pieces:
            stamps.append(_now())
            new.append(piece.token_id)
    figures = []
    for k in (0, 1):
        first, last = stamps[1][k] - stamps[0][k], stamps[-1][k] - stamps[1][k]
        figures += [first, (len(new) - 1) / max(last, 1e-9)]
    return new, figures


def _draw_run(bm: BenchModel, fast: FastPath | None, prompt: list[int]) -> tuple[list[int], list[float]]:
    """codes, [wall s, CPU s]: the LLM's image ids and the VQ-GAN decode."""
    grid_tokens = bm.vqgan.grid_tokens
    _sync(bm.device)
    t0 = _now()
    if fast is None:
        new, _ = _hf_run(bm, prompt, "draw", grid_tokens + 1)
        codes = bm.layout.unshift(new[1:])
    else:
        greedy = SamplingConfig(temperature=0.0)
        stream = fast.generate_image(
            bm.model, bm.layout, prompt, grid_tokens, greedy, None, bm.context_length
        )
        codes = list(stream)[-1].codes
    images.codes_to_image(torch.tensor(codes), bm.vqgan)  # ends with a copy to the host: synchronised
    t1 = _now()
    return codes, [t1[0] - t0[0], t1[1] - t0[1]]


def run_path(bm: BenchModel, path: str, prompts: dict, n_new: int, repeats: int) -> dict:
    """Warm up, then time one path; returns its figures (seconds, tokens/s, bytes) and generated ids."""
    fast, compile_s = None, None
    t = time.perf_counter()
    if path != "hf":
        fast = FastPath(bm.model, context_length=bm.context_length, config=FAST_CONFIGS[path])
        compile_s = fast.warmup(bm.layout)["s"]
    _text_run(bm, fast, prompts["image"], n_new)  # untimed first calls: allocator, kernels, lazy imports
    _draw_run(bm, fast, prompts["draw"])
    warmup_s = time.perf_counter() - t
    resident = _allocated_bytes(bm.device)
    _reset_peak(bm.device)
    texts = [_text_run(bm, fast, prompts["image"], n_new) for _ in range(repeats)]
    draws = [_draw_run(bm, fast, prompts["draw"]) for _ in range(repeats)]
    return {
        "mode": "hf-generate" if fast is None else fast.mode,
        "fallback": None if fast is None else fast.fallback_reason,
        "compile_s": compile_s,  # FastPath.warmup: compile and capture every cache bucket
        "warmup_s": warmup_s,  # compile_s plus one untimed text and draw run
        "first_token_s": statistics.median(r[1][0] for r in texts),
        "text_tok_s": statistics.median(r[1][1] for r in texts),
        "text_tokens": len(texts[0][0]),
        "draw_s": statistics.median(r[1][0] for r in draws),
        # The same in this process's CPU seconds (all its threads): steadier than wall time on a shared CPU.
        "first_token_cpu_s": statistics.median(r[1][2] for r in texts),
        "text_tok_per_cpu_s": statistics.median(r[1][3] for r in texts),
        "draw_cpu_s": statistics.median(r[1][1] for r in draws),
        "peak_bytes": _peak_bytes(bm.device),
        "allocated_after_warmup_bytes": resident,  # CUDA: what warm-up left allocated (None on a CPU)
        "cache_pool_bytes": None if fast is None else fast.pool_bytes,  # the fast path's pooled KV caches
        "_ids": {"text": texts[0][0], "draw": draws[0][0]},
    }
