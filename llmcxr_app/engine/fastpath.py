"""The fast generation path: a static KV cache sized to the request and a compiled decode step.

Eager Hugging Face decoding spends ~30 ms per token on Python and kernel launches on a GPU (docs/BENCHMARKS.md,
reference measurements). Here the prompt is prefilled eagerly into a transformers ``StaticCache`` and every
following token runs one compiled function (``torch.compile(mode="reduce-overhead")``: CUDA graphs). It is compiled as one graph
(``fullgraph=True``) when it can be, else with graph breaks allowed (transformers' own default), else not.

- Caches come in power-of-two buckets (256, 512, ... up to the context length), so only a few shapes are
  ever compiled; a prefill picks the bucket holding the prompt plus ``reserve`` tokens, and a cache that
  fills up grows to the next bucket (its contents copied). Caches are pooled and reused across requests:
  the CUDA graphs keep pointing at the same memory.
- bitsandbytes 4-bit: transformers' ``generate`` refuses to compile such models (``hf_quantizer.is_compileable``
  is False). That check lives only in ``generate``; we call ``torch.compile`` on our own step function, so it
  does not apply. Forcing the compile measured 6x eager on an H100 (docs/BENCHMARKS.md).
- If compiling (or a compiled call) raises with every option, the path logs one warning and decodes eagerly
  with the same static cache from then on: answers stay identical, only slower.
- ``generate_image`` is generation.generate_image on this cache, copying sampled ids to the host once per
  grid row (what previews need), not once per token.
- On CPU the defaults are the plain eager functions of engine/steps.py. Measured on the demo-size model
  (docs/BENCHMARKS.md): a static cache is no faster there; compiling is 1.3x faster per token but costs
  20 s to 2 min at every start for ~0.2 s per X-ray. Opt in with FastPathConfig(static_cache=True, compile=True).

The ``prefill`` and ``step`` methods plug into generation.py's ``prefill_fn`` / ``step`` seams, and
``generate_image`` runs generation.py's one image loop on them.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from llmcxr_app.config import RuntimeConfig, SamplingConfig
from llmcxr_app.engine import generation
from llmcxr_app.engine.generation import ImageProgress
from llmcxr_app.engine.steps import decode_step, prefill
from llmcxr_app.protocol import TokenLayout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FastPathConfig:
    """How the fast path runs. ``None`` fields are decided by the device (CUDA: on; CPU: off, as measured)."""

    static_cache: bool | None = None  # decode with a StaticCache; None = on CUDA only
    compile: bool | None = None  # torch.compile the decode step (needs the static cache); None = on CUDA only
    backend: str = "inductor"  # torch.compile backend; "eager" traces with dynamo but generates no code
    mode: str = "reduce-overhead"  # inductor mode; "reduce-overhead" replays each step as a CUDA graph
    fullgraph: bool | None = (
        None  # None = one graph per step, else allow graph breaks (bitsandbytes may need them)
    )
    min_bucket: int = 256  # smallest cache length; larger caches double up to the context length
    reserve: int = 258  # tokens a prefill leaves room for: one image (256 ids, "<", ">") officially
    cache_budget: int | None = None  # most tokens the pooled caches hold together; None = the context length
    sync_every: int = 0  # generate_image copies ids to the host every this many tokens; 0 = one grid row


def bucket_sizes(context_length: int, min_bucket: int = 256) -> list[int]:
    """Cache lengths in use: powers of two from ``min_bucket`` below ``context_length``, then the context.

    E.g. 2048 -> [256, 512, 1024, 2048]; 600 -> [256, 512, 600]; 100 -> [100].
    """
    if context_length < 1 or min_bucket < 1:
        raise ValueError("context_length and min_bucket must be positive.")
    sizes, n = [], min_bucket
    while n < context_length:
        sizes.append(n)
        n *= 2
    return [*sizes, context_length]


def _bucket_for(n: int, sizes: Sequence[int]) -> int:
    for size in sizes:
        if size >= n:
            return size
    raise ValueError(f"{n} tokens do not fit the model's context of {sizes[-1]} tokens.")


def _decode_logits(model: Any, token: torch.Tensor, cache: Any) -> torch.Tensor:
    """One cached decode step: token [1, 1] -> logits [1, V] float32. The function that gets compiled.

    Positions come from the cache's own device-side length, so no host value enters the graph.
    """
    out = model(input_ids=token, past_key_values=cache, use_cache=True)
    return out.logits[:, -1, :].float()


class _Slot:
    """The ``past`` handed to generation.py: a pooled StaticCache and how many positions it holds."""

    def __init__(self, cache: Any, capacity: int):
        self.cache = cache  # transformers StaticCache, max_cache_len == capacity
        self.capacity = capacity  # positions it can hold
        self.length = 0  # positions filled (host-side copy of the cache's cumulative_length)


class FastPath:
    """Static-cache, compiled decoding for one model. Not thread-safe: one request at a time (Studio's lock)."""

    def __init__(self, model: Any, *, context_length: int, config: FastPathConfig = FastPathConfig()):
        self.model = model
        self.config = config
        self.device = next(model.parameters()).device
        on_cuda = self.device.type == "cuda"
        self.static = on_cuda if config.static_cache is None else config.static_cache
        wants_compile = on_cuda if config.compile is None else config.compile
        if wants_compile and not self.static:
            raise ValueError("Compiling the decode step needs the static cache (static_cache=True).")
        self.sizes = bucket_sizes(context_length, config.min_bucket)
        self.budget = config.cache_budget or context_length
        # capacity -> StaticCache, least recently used first
        self._pool: OrderedDict[int, Any] = OrderedDict()
        self._cudagraphs = on_cuda and config.backend == "inductor" and config.mode == "reduce-overhead"
        self.fallback_reason: str | None = None  # why compiling was abandoned (logged once)
        self.fullgraph: bool | None = None  # the graph option of the current compiled step
        self._graph_options = [True, False] if config.fullgraph is None else [config.fullgraph]
        self._compiled: Any = None
        if wants_compile:
            self._compile_next(None)

    @property
    def reachable_sizes(self) -> list[int]:
        """The buckets a request can land in: a prefill of n >= 1 ids asks for n + ``reserve`` positions, and a
        full cache only grows upwards, so buckets below the one for 1 + reserve are never used (with the
        258-id reserve, 256). Warming those up would only cost start-up time (~40 s a bucket measured at the
        official shape on an H200)."""
        smallest = _bucket_for(min(1 + self.config.reserve, self.sizes[-1]), self.sizes)
        return [s for s in self.sizes if s >= smallest]

    @property
    def pool_bytes(self) -> int:
        """Bytes the pooled caches hold: keys and values of every layer, of every pooled bucket."""
        layers = [layer for cache in self._pool.values() for layer in cache.layers]
        return sum(t.numel() * t.element_size() for layer in layers for t in (layer.keys, layer.values))

    @property
    def mode(self) -> str:
        """ "compiled", "static" (static cache, eager) or "eager" (engine/steps.py's DynamicCache functions)."""
        return "compiled" if self._compiled is not None else "static" if self.static else "eager"

    # -----------------------------------------------------------------------------------------------------
    # Compilation and fallback

    def _compile_next(self, failure: BaseException | None) -> None:
        """Compile with the next graph option; once the last has failed, decode eagerly (warned once)."""
        kwargs: dict[str, Any] = {"backend": self.config.backend, "dynamic": False}
        if self.config.backend == "inductor":
            kwargs["mode"] = self.config.mode
        self._compiled = None
        while True:
            if failure is not None:
                reason = f"{type(failure).__name__}: {(str(failure).splitlines() or [''])[0]}"
                if not self._graph_options:
                    self.fallback_reason = reason
                    log.warning(
                        "Fast path: compiling the decode step failed (%s); decoding eagerly with the static "
                        "cache instead (same answers, slower).",
                        reason,
                    )
                    return
                log.warning(
                    "Fast path: the decode step does not compile as one graph (%s); allowing breaks.", reason
                )
            fullgraph = self._graph_options.pop(0)
            try:
                # dynamic=False: each cache bucket gets its own static-shape graph (a few, made at warm-up).
                self._compiled = torch.compile(_decode_logits, fullgraph=fullgraph, **kwargs)
                self.fullgraph = fullgraph
                return
            except Exception as exc:  # noqa: BLE001 - any failure means "try the next option, then eager"
                failure = exc

    # -----------------------------------------------------------------------------------------------------
    # Caches

    def _cache(self, capacity: int) -> Any:
        """A reset StaticCache of ``capacity`` positions, from the pool or newly allocated (evicting LRU)."""
        cache = self._pool.pop(capacity, None)
        if cache is None:
            from transformers import StaticCache

            while self._pool and sum(self._pool) + capacity > self.budget:
                self._pool.popitem(last=False)
            cfg = self.model.config
            heads = cfg.num_attention_heads
            cache = StaticCache(config=cfg, max_cache_len=capacity)
            # Allocate now (not lazily inside a forward) so the tensors get their fixed addresses up front.
            cache.early_initialization(
                batch_size=1,
                num_heads=heads,
                head_dim=cfg.hidden_size // heads,
                dtype=self.model.get_input_embeddings().weight.dtype,
                device=self.device,
            )
        else:
            cache.reset()
        self._pool[capacity] = cache
        return cache

    def _grow(self, slot: _Slot) -> None:
        """Move a full slot into the next bucket (copying what it holds)."""
        capacity = _bucket_for(slot.capacity + 1, self.sizes)
        cache, n = self._cache(capacity), slot.length
        for old, new in zip(slot.cache.layers, cache.layers, strict=True):
            new.keys[:, :, :n].copy_(old.keys[:, :, :n])
            new.values[:, :, :n].copy_(old.values[:, :, :n])
            new.cumulative_length.fill_(n)
        slot.cache, slot.capacity = cache, capacity

    def _forward(self, token: torch.Tensor, slot: _Slot) -> torch.Tensor:
        """Feed token [1, 1] at position slot.length; returns logits [1, V] float32 (owned by the caller)."""
        if slot.length >= slot.capacity:
            self._grow(slot)
        logits = None
        while logits is None and self._compiled is not None:
            try:
                if self._cudagraphs:
                    torch.compiler.cudagraph_mark_step_begin()
                logits = self._compiled(self.model, token, slot.cache)
                if self._cudagraphs:
                    logits = logits.clone()  # the graph's output buffer is overwritten by the next replay
            except Exception as exc:  # noqa: BLE001 - compile errors surface on the first call
                for layer in slot.cache.layers:  # undo a partial update before redoing the step
                    layer.cumulative_length.fill_(slot.length)
                self._compile_next(exc)
        if logits is None:
            logits = _decode_logits(self.model, token, slot.cache)
        slot.length += 1
        return logits

    # -----------------------------------------------------------------------------------------------------
    # generation.py seams

    @torch.inference_mode()
    def prefill(
        self, model: Any, input_ids: torch.Tensor, *, capacity: int | None = None, **inputs: torch.Tensor
    ) -> tuple[torch.Tensor, Any]:
        """steps.prefill into a pooled StaticCache of ``capacity`` (default: bucket of prompt + reserve).

        input_ids: LongTensor [1, T]. Returns (logits [1, V] float32, past). Eager (prompt lengths vary).
        Without the static cache this is steps.prefill, ``inputs`` included (a guided drawing's pair).
        """
        if not self.static:
            return prefill(model, input_ids, **inputs)
        if inputs:
            raise ValueError("The static cache holds one prompt; it takes no further inputs.")
        n = input_ids.shape[1]
        if capacity is None:
            capacity = _bucket_for(min(n + self.config.reserve, self.sizes[-1]), self.sizes)
        if capacity < n + 1:
            capacity = _bucket_for(n + 1, self.sizes)
        slot = _Slot(self._cache(capacity), capacity)
        out = model(
            input_ids=input_ids.to(self.device), past_key_values=slot.cache, use_cache=True, logits_to_keep=1
        )
        slot.length = n
        return out.logits[:, -1, :].float(), slot

    @torch.inference_mode()
    def step(
        self, model: Any, token_id: int | torch.Tensor, past: Any, position: int
    ) -> tuple[torch.Tensor, Any]:
        """steps.decode_step on the static cache (compiled when enabled). Returns (logits [1, V], past).

        ``token_id``: an int or a device tensor holding one id (the image loop feeds its ids from the device).
        """
        if not isinstance(past, _Slot):
            return decode_step(model, token_id, past, position)
        if position != past.length:
            raise ValueError(f"Decode position {position} but the cache holds {past.length} positions.")
        token = torch.as_tensor(token_id, dtype=torch.long, device=self.device).reshape(1, 1)
        return self._forward(token, past), past

    def generate_image(
        self,
        model: Any,
        layout: TokenLayout,
        prompt_ids: Sequence[int] | torch.Tensor,
        grid_tokens: int,
        sampling: SamplingConfig,
        cancel: threading.Event | None = None,
        context_length: int | None = None,
        *,
        prefill_fn: generation.PrefillFn | None = None,
        step: generation.StepFn | None = None,
        negative_ids: Sequence[int] | torch.Tensor | None = None,
        split_width: int | None = None,
    ) -> Iterator[ImageProgress]:
        """generation.generate_image on this path's cache, copying ids to the host once per grid row.

        Same arguments, checks and ids; with the static cache the ids stay on the device between copies
        (every ``sync_every`` ids, default one grid row), without it every id is yielded as in eager mode.
        Without the static cache the loop gets the plain eager step, so a guided drawing runs its prompt
        and negative as one batch of two; with it, the negative runs eagerly beside this path's cache
        (generation._ImageScores).
        """
        every = (self.config.sync_every or max(1, math.isqrt(grid_tokens))) if self.static else 1
        if not self.static and step in (None, self.step):  # then this path's step is the plain eager one:
            step = decode_step  # said so, the loop runs a guided drawing's two prompts as one batch
        yield from generation.generate_image(
            model,
            layout,
            prompt_ids,
            grid_tokens,
            sampling,
            cancel,
            context_length,
            prefill_fn=prefill_fn or self.prefill,
            step=step or self.step,
            sync_every=every,
            negative_ids=negative_ids,
            split_width=split_width,
        )

    # -----------------------------------------------------------------------------------------------------
    # Start-up

    @torch.inference_mode()
    def warmup(self, layout: TokenLayout, *, buckets: Sequence[int] | None = None, steps: int = 3) -> dict:
        """Compile (and capture CUDA graphs) for each bucket a request can reach (``reachable_sizes``, unless
        ``buckets`` names others): a 4-id prefill, then ``steps`` decode steps.

        Largest bucket first, so the pool ends up holding the small, common ones. ``steps`` >= 3 because
        CUDA graph trees run a step eagerly, then record, then replay. Returns {"s": seconds, "mode", "buckets"}.
        """
        t = time.perf_counter()
        buckets = list(self.reachable_sizes if buckets is None else buckets)
        if self.static:
            prompt = torch.full((1, 4), layout.image_open_id, dtype=torch.long, device=self.device)
            token = torch.full((1, 1), layout.image_open_id, dtype=torch.long, device=self.device)
            for capacity in sorted(buckets, reverse=True):
                t_bucket = time.perf_counter()
                _, slot = self.prefill(self.model, prompt, capacity=capacity)
                for _ in range(min(steps, capacity - 4)):
                    self._forward(token, slot)
                log.info("warm-up: cache bucket %d ready in %.1f s", capacity, time.perf_counter() - t_bucket)
        else:
            logits, past = prefill(self.model, torch.tensor([[layout.image_open_id] * 4]))
            for i in range(steps):
                logits, past = decode_step(self.model, layout.image_open_id, past, 4 + i)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return {"s": time.perf_counter() - t, "mode": self.mode, "buckets": buckets if self.static else []}


def fast_path_for(
    llm: Any, runtime: RuntimeConfig, config: FastPathConfig = FastPathConfig()
) -> FastPath | None:
    """The fast path for a weights.LoadedLLM, or None when ``runtime.fast_path`` is off (use generation.py's
    eager functions then)."""
    if not runtime.fast_path:
        return None
    return FastPath(llm.model, context_length=llm.context_length, config=config)
