"""Timing helpers of the Studio facade: device sync and the timings dict every Result carries."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch


def sync(device: torch.device) -> None:
    """Wait for queued device work, so wall-clock marks measure it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_prefill(fn: Callable[..., Any], device: torch.device, marks: dict) -> Callable[..., Any]:
    """``fn`` (a prefill: (model, input_ids [B, T], **inputs) -> (logits, past)) that also records its wall
    seconds, the device's queued work included, as marks["prompt_s"]."""

    def run(model: Any, input_ids: torch.Tensor, **inputs: torch.Tensor) -> Any:
        t = time.perf_counter()
        out = fn(model, input_ids, **inputs)
        sync(device)
        marks["prompt_s"] = time.perf_counter() - t
        return out

    return run


def timings_of(marks: dict, t0: float, first: float | None, tokens: int, n_prompt: int) -> dict:
    """Seconds and counts of one request: marks holds queue_s / prompt_s; t0 and first are perf_counter()."""
    total = time.perf_counter() - t0
    first_s = first - t0 if first is not None else None
    decode_s = total - (first_s or 0.0)
    return {
        "queue_s": marks.get("queue_s"),
        "prompt_s": marks.get("prompt_s"),
        "first_token_s": first_s,
        "total_s": total,
        "prompt_tokens": n_prompt,
        "tokens": tokens,
        # Decode rate after the first token (the first one's latency is first_token_s).
        "tokens_per_s": (tokens - 1) / decode_s if tokens > 1 and decode_s > 0 else None,
    }
