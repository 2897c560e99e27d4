"""Request plumbing a model facade shares: holding the model, seeding, provenance, draining a stream.

Used by both facades: the token Studio (facade.py) and the adapter Studio (adapter.py).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import datetime, timezone

from llmcxr_app import __version__
from llmcxr_app.config import SamplingConfig
from llmcxr_app.engine.generation import GenerationCancelled
from llmcxr_app.studio.types import Result, StudioInfo, Update
from llmcxr_app.studio.warmup import WarmUpGate


@contextmanager
def acquire(lock: threading.Lock, gate: WarmUpGate, cancel: threading.Event | None) -> Iterator[None]:
    """Hold the model; a request cancelled while it waits in line (for a warm-up or for the lock) leaves
    without running (GenerationCancelled)."""
    gate.wait(cancel)
    while not lock.acquire(timeout=0.05):
        if cancel is not None and cancel.is_set():
            raise GenerationCancelled("Generation was cancelled while waiting for the model.")
    try:
        yield
    finally:
        lock.release()


def seeded(sampling: SamplingConfig) -> SamplingConfig:
    """``sampling`` with a fresh random seed when it has none, so every answer can be reproduced."""
    return sampling if sampling.seed is not None else replace(sampling, seed=secrets.randbelow(2**31))


def provenance(info: StudioInfo, task: str, sampling: SamplingConfig, instruction: str | None) -> dict:
    """What made an answer: model, family, fingerprints, precision, device, seed, sampling, task, time.

    No user text: a question may hold patient details (``instruction`` is the app's own fixed text or None).
    """
    return {
        "app": "LLM-CXR Studio",
        "app_version": __version__,
        "task": task,
        "model": info.model_name,
        "family": info.family,
        "is_demo": info.is_demo,
        "weight_hash": info.weight_hash,
        "llm_hash": info.llm_hash,
        "vqgan_hash": info.vqgan_hash,
        "quantization": info.quantization,
        "device": info.device,
        "seed": sampling.seed,
        "sampling": asdict(sampling),
        "instruction": instruction,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def finish(updates: Iterator[Update]) -> Result:
    """Drain a stream and return its Result."""
    result = None
    for update in updates:
        result = update.result or result
    if result is None:
        raise RuntimeError("The stream ended without a result.")
    return result
