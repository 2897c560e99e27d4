"""Token generation around a Hugging Face causal LM: prefill, decode step, sampling, constraints, streaming.

Small functions in the style of gpt-fast. ``generate_text`` and ``generate_image`` drive the loop; the model
work happens in two swappable callables, ``prefill_fn(model, input_ids) -> (logits, past)`` and
``step(model, token_id, past, position) -> (logits, past)``. The defaults (engine/steps.py) run eagerly with
the model's ``DynamicCache``; a faster pair (static cache + torch.compile) can be passed in without touching
the loop.

Logits are float32 [1, V] where V is the LM head width (len(tokenizer) + codebook size, or more if padded).
Constraints (docs/PROTOCOL.md): text mode masks every id >= len(tokenizer), so text never holds image
ids; image mode forces ``<``, samples exactly ``grid_tokens`` image ids, then forces ``>`` and stops.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from llmcxr_app.config import SamplingConfig
from llmcxr_app.engine.steps import decode_pair_step, decode_step, device_of, pair_inputs, prefill
from llmcxr_app.protocol import TokenLayout

PrefillFn = Callable[..., tuple[torch.Tensor, Any]]  # (model, input_ids [B, T], **inputs) -> (logits, past)
StepFn = Callable[[Any, "int | torch.Tensor", Any, int], tuple[torch.Tensor, Any]]

REPLACEMENT_CHAR = "\ufffd"  # what a decoder emits for an incomplete UTF-8 sequence


@dataclass(frozen=True)
class PlainTextLayout:
    """The ids ``generate_text`` needs of a model without image ids in its vocabulary (the adapter family);
    a protocol.TokenLayout serves the token family."""

    vocab_size: int  # len(tokenizer): ids >= this (padded LM-head rows) are masked in text
    end_id: int  # generation stops here (the tokenizer's eos or the chat template's end-of-turn id)


class GenerationCancelled(Exception):
    """The caller set the cancel event; generation stopped before the next model call."""


@dataclass(frozen=True)
class TextPiece:
    """One generated text token, as streamed by ``generate_text``."""

    delta: str  # new text since the previous piece ("" while a multi-byte character is incomplete)
    text: str  # all text so far, stripped; equals the concatenation of every delta so far
    tokens: int  # generated tokens so far (the stop token excluded)
    token_id: int  # the id sampled at this step (the stop id itself on a piece with stop "end")
    stop: str | None = None  # on the last piece only: "end" (### End or eos), "length" (max_new_tokens)


@dataclass(frozen=True)
class ImageProgress:
    """State after each sampled image id, as streamed by ``generate_image``."""

    codes: list[int]  # VQ codes so far (0..codebook_size-1), row-major over the latent grid
    probs: list[float]  # probability of each sampled id (see ``sample_on_device``), same order as codes
    total: int  # codes in a complete image (grid_tokens)

    @property
    def done(self) -> bool:
        return len(self.codes) == self.total


# ---------------------------------------------------------------------------------------------------------
# Constraints and sampling


def mask_logits(
    logits: torch.Tensor, allowed: Literal["text", "image"], layout: TokenLayout | PlainTextLayout
) -> torch.Tensor:
    """Set disallowed ids to -inf (returns a new tensor).

    text: ids >= len(tokenizer) are masked (image ids and any padded LM-head rows).
    image: everything outside [len(tokenizer), len(tokenizer) + codebook_size) is masked.
    """
    out = torch.full_like(logits, float("-inf"))
    if allowed == "text":
        out[..., : layout.vocab_size] = logits[..., : layout.vocab_size]
    elif allowed == "image":
        lo, hi = layout.vocab_size, layout.total_vocab
        if logits.shape[-1] < hi:
            raise ValueError(f"The LM head has {logits.shape[-1]} outputs; image ids need {hi}.")
        out[..., lo:hi] = logits[..., lo:hi]
    else:
        raise ValueError(f"allowed must be 'text' or 'image', got {allowed!r}.")
    return out


def sample_on_device(
    logits: torch.Tensor,
    *,
    temperature: float,
    top_p: float = 1.0,
    top_k: int = 0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick the next id from logits [1, V] (or [V]) without leaving the device: (token id, prob), tensors [1].

    temperature 0 = greedy (argmax; top_p/top_k and the generator are unused). Otherwise the order is
    HF's: divide by temperature, keep the top_k largest (0 = all), keep the smallest set of ids whose mass
    reaches top_p (1.0 = all), renormalise, draw with ``generator``.

    prob is the chosen id's probability under the temperature-scaled softmax over the logits as given
    (masked ids have probability 0), BEFORE top-k/top-p truncation: that is the model's own confidence,
    where the truncated, renormalised value would read 1.0 for any id that dominates the nucleus. Greedy
    reports the plain softmax (temperature 1).

    No host sync: the top-p cut is a mask scattered back through the sort order (a boolean index would
    need the host to know how many ids survive), and lookups use gather (indexing with a tensor would read
    it on the host), so a loop can sample many steps before it reads any id.
    """
    logits = logits.reshape(-1).float()
    if temperature == 0:
        token = torch.argmax(logits).reshape(1)
        return token, torch.softmax(logits, -1).gather(0, token)
    scaled = logits / temperature
    full = torch.softmax(scaled, -1)
    if top_k > 0 and top_k < scaled.numel():
        kth = torch.topk(scaled, top_k).values[-1]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    if top_p < 1.0:
        probs, order = torch.sort(torch.softmax(scaled, -1), descending=True)
        drop_sorted = (torch.cumsum(probs, -1) - probs) >= top_p  # the first id (mass before 0) stays
        drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
        scaled = scaled.masked_fill(drop, float("-inf"))
    token = torch.multinomial(torch.softmax(scaled, -1), 1, generator=generator)
    return token, full.gather(0, token)


def guide(cond: torch.Tensor, negative: torch.Tensor, scale: float) -> torch.Tensor:
    """Guided scores from two masked logit rows [1, V] (-inf where disallowed): the log-probabilities of
    ``cond`` moved ``scale`` times as far from those of ``negative`` as they are, u + scale * (c - u), so
    scale 1 returns log_softmax(cond) (the same distribution) and masked ids stay -inf."""
    c, u = torch.log_softmax(cond, -1), torch.log_softmax(negative, -1)
    return torch.where(torch.isfinite(c), u + scale * (c - u), c)


def make_generator(model: Any, seed: int | None) -> torch.Generator | None:
    """A torch.Generator on the model's device seeded with ``seed`` (None = no generator: global RNG)."""
    if seed is None:
        return None
    gen = torch.Generator(device=device_of(model))
    gen.manual_seed(int(seed))
    return gen


def check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise GenerationCancelled("Generation was cancelled.")


def _as_input(model: Any, prompt_ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
    ids = torch.as_tensor(prompt_ids, dtype=torch.long).reshape(1, -1)
    if ids.shape[1] == 0:
        raise ValueError("The prompt is empty.")
    return ids.to(device_of(model))


# ---------------------------------------------------------------------------------------------------------
# Generation loops


def _shown(decoded: str, emitted: str, *, final: bool) -> tuple[str, str]:
    """(new delta, text shown so far) after a decode: held back while it ends in U+FFFD (an incomplete
    multi-byte character) or, until the end, in whitespace that may turn out to be trailing."""
    if not final and decoded.endswith(REPLACEMENT_CHAR):
        return "", emitted
    text = decoded.strip() if final else decoded.lstrip().rstrip()
    if text.startswith(emitted):
        return text[len(emitted) :], text
    return "", emitted


def _answer_limit(max_new_tokens: int, n_prompt: int, context_length: int | None) -> int:
    """Most ids an answer may have: max_new_tokens, clamped so prompt + answer fit the context."""
    limit = max_new_tokens if context_length is None else min(max_new_tokens, context_length - n_prompt)
    if limit < 1:
        raise ValueError(f"The prompt ({n_prompt} tokens) leaves no room for an answer in the context.")
    return limit


def _step_ahead(
    step: StepFn, model: Any, token: torch.Tensor, past: Any, position: int
) -> tuple[int, torch.Tensor, Any]:
    """Launch ``step`` on a sampled id still on the device, then read that id: (id, logits, past).

    On CUDA the id's copy to pinned host memory is queued before the step, and an event marks it, so the
    read waits for the sampling kernels only: the GPU runs the step while the host streams the id. Elsewhere
    the id is read first (the step would finish before the read anyway)."""
    if not token.is_cuda:
        token_id = int(token)
        return (token_id, *step(model, token_id, past, position))
    host = torch.empty(token.shape, dtype=token.dtype, pin_memory=True)
    host.copy_(token, non_blocking=True)
    copied = torch.cuda.Event()
    copied.record()
    logits, past = step(model, token, past, position)
    copied.synchronize()
    return int(host), logits, past


@torch.inference_mode()
def generate_text(
    model: Any,
    layout: TokenLayout | PlainTextLayout,
    tokenizer: Any,
    prompt_ids: Sequence[int] | torch.Tensor,
    sampling: SamplingConfig,
    cancel: threading.Event | None = None,
    context_length: int | None = None,
    *,
    prefill_fn: PrefillFn = prefill,
    step: StepFn = decode_step,
    lookahead: bool | None = None,
) -> Iterator[TextPiece]:
    """Stream a text answer, one TextPiece per generated token. Image ids are masked. Stops at ``### End`` or
    the tokenizer's eos (neither is part of the text) or after max_new_tokens, clamped so prompt + answer fit
    ``context_length``. Text is the decode of all generated ids with special tokens skipped, stripped; a
    delta is held back while the decode ends in U+FFFD (an incomplete multi-byte character) or in whitespace
    that may turn out to be trailing. ``cancel`` is checked before every model call (GenerationCancelled).

    ``lookahead`` (None = on CUDA): each sampled id is fed to ``step`` before the host reads it
    (``_step_ahead``); same ids, and one step more than needed when the answer ends at a stop id."""
    ids = _as_input(model, prompt_ids)
    n_prompt = ids.shape[1]
    limit = _answer_limit(sampling.max_new_tokens, n_prompt, context_length)
    eos = getattr(tokenizer, "eos_token_id", None)
    stop_ids = {layout.end_id} | ({int(eos)} if eos is not None else set())
    generator = make_generator(model, sampling.seed)
    ahead = ids.is_cuda if lookahead is None else lookahead

    check_cancel(cancel)
    logits, past = prefill_fn(model, ids)
    out_ids, emitted = [], ""
    while True:
        sampled, _ = sample_on_device(
            mask_logits(logits, "text", layout),
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            generator=generator,
        )
        position = n_prompt + len(out_ids)  # where the sampled id goes in the cache
        launched = ahead and len(out_ids) + 1 < limit  # the step after it may be needed
        if launched:
            check_cancel(cancel)
            token, logits, past = _step_ahead(step, model, sampled, past, position)
        else:
            token = int(sampled)
        stop = "end" if token in stop_ids else None
        if stop is None:
            out_ids.append(token)
            if len(out_ids) >= limit:
                stop = "length"
        decoded = tokenizer.decode(out_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        delta, emitted = _shown(decoded, emitted, final=stop is not None)
        yield TextPiece(delta=delta, text=emitted, tokens=len(out_ids), token_id=token, stop=stop)
        if stop is not None:
            return
        if not launched:
            check_cancel(cancel)
            logits, past = step(model, token, past, position)


def _check_image_fits(n_prompt: int, grid_tokens: int, context_length: int | None) -> None:
    if context_length is not None and n_prompt + grid_tokens + 2 > context_length:
        raise ValueError(
            f"The prompt ({n_prompt} tokens) plus an image ({grid_tokens + 2} tokens) exceeds the "
            f"context of {context_length} tokens."
        )


class _ImageScores:
    """The image loop's model side: prefills the prompt (and, guided, a negative prompt), then for each
    fed token returns the scores [1, V] of the next image id (masked logits; guided: ``guide``'s scores).

    Guided on the eager path (``step`` is steps.decode_step, so ``prefill_fn`` fills a DynamicCache and
    takes a pair's inputs), the two prompts run as one batch of two (pair_inputs, decode_pair_step): one
    forward per id instead of two. A fast path's cache holds one sequence, so there the negative runs
    beside it in an eager cache of its own. With ``split_width`` the two swap roles in the second half of
    every grid row (generate_image).
    """

    def __init__(
        self,
        model: Any,
        layout: TokenLayout,
        ids: torch.Tensor,
        prefill_fn: PrefillFn,
        step: StepFn,
        split_width: int | None = None,
    ):
        self.model, self.layout, self.step, self.n_prompt = model, layout, step, ids.shape[1]
        self.ids, self.prefill_fn, self.split_width = ids, prefill_fn, split_width
        self.past: Any = None
        self.negative: Any = None  # the negative's own cache (fast path, guided)
        self.pair_mask: torch.Tensor | None = None  # the batch of two's attention mask (eager, guided)

    def start(self, negative_ids: Any, scale: float | None, grid_tokens: int, context: int | None) -> None:
        """Prefill the prompt, and the negative prompt when scale != 1 (ValueError without one); scale 1
        or None (a checkpoint default the caller did not resolve) is unguided."""
        self.scale = 1.0 if scale is None else scale
        if self.scale == 1.0:
            _, self.past = self.prefill_fn(self.model, self.ids)  # its logits would choose "<": forced
            return
        if negative_ids is None:
            raise ValueError("Guidance needs negative_ids (the prompt it guides away from).")
        negative = _as_input(self.model, negative_ids)
        _check_image_fits(negative.shape[1], grid_tokens, context)
        if self.step is decode_step:  # the eager DynamicCache: both prompts go in one batch of two
            pair = pair_inputs(self.ids, negative)
            _, self.past = self.prefill_fn(self.model, **pair)
            self.pair_mask = pair["attention_mask"]
            return
        _, self.past = self.prefill_fn(self.model, self.ids)
        _, self.negative = prefill(self.model, negative)
        self.n_negative = negative.shape[1]

    def __call__(self, token: torch.Tensor, i: int) -> torch.Tensor:
        if self.pair_mask is not None:
            both, self.past, self.pair_mask = decode_pair_step(self.model, token, self.past, self.pair_mask)
            cond, other = both[:1], both[1:]
        else:
            cond, self.past = self.step(self.model, token, self.past, self.n_prompt + i)
            if self.negative is None:
                return mask_logits(cond, "image", self.layout)
            other, self.negative = decode_step(self.model, token, self.negative, self.n_negative + i)
        if self.split_width and i % self.split_width >= self.split_width // 2:
            cond, other = other, cond  # the row's second half is the negative's: guided away from the prompt
        masked = mask_logits(cond, "image", self.layout)
        return guide(masked, mask_logits(other, "image", self.layout), self.scale)


@torch.inference_mode()
def generate_image(
    model: Any,
    layout: TokenLayout,
    prompt_ids: Sequence[int] | torch.Tensor,
    grid_tokens: int,
    sampling: SamplingConfig,
    cancel: threading.Event | None = None,
    context_length: int | None = None,
    *,
    prefill_fn: PrefillFn = prefill,
    step: StepFn = decode_step,
    sync_every: int = 1,
    negative_ids: Sequence[int] | torch.Tensor | None = None,
    split_width: int | None = None,
) -> Iterator[ImageProgress]:
    """Stream an image answer shaped like the training targets: ``<``, grid_tokens image ids, ``>``.

    ``<`` is forced (fed without sampling), then each of the grid_tokens ids is sampled from the image ids
    only, and ``>`` is forced as the end; it is never fed, as nothing follows it. Model calls: one prefill
    plus grid_tokens steps. max_new_tokens does not apply (an image is always complete). ``cancel`` is
    checked before every model call; when set, GenerationCancelled is raised.

    Sampled ids stay on the model's device and are fed back from there; they are copied to the host after
    the first id, every ``sync_every`` ids and at the end, with one ImageProgress yielded per copy (the last
    has ``done`` True). ``sync_every`` 1 (eager default) yields after every id; a fast path passes one grid
    row, so the device never waits for the host within a row. The ids do not depend on it.

    With ``sampling.guidance`` > 1, ``negative_ids`` (the prompt to guide away from) runs beside the
    prompt and each id is sampled from ``guide``'s scores (eager: the two as one batch of two; a fast
    path: one more prefill and grid_tokens more eager steps); guidance None is 1. ``split_width`` (the
    grid's width W): ids in columns >= W // 2 are guided by the negative away from the prompt instead
    (studio/guidance.py "sides": each half of the image drawn from the findings on its side).
    """
    ids = _as_input(model, prompt_ids)
    _check_image_fits(ids.shape[1], grid_tokens, context_length)
    generator = make_generator(model, sampling.seed)
    sampled = torch.empty(grid_tokens, dtype=torch.long, device=ids.device)
    sampled_probs = torch.empty(grid_tokens, dtype=torch.float32, device=ids.device)
    codes, probs = [], []  # on the host: the ids (as codes) and their probabilities copied so far
    check_cancel(cancel)
    scores = _ImageScores(model, layout, ids, prefill_fn, step, split_width)
    scores.start(negative_ids, sampling.guidance, grid_tokens, context_length)
    token = torch.full((1, 1), layout.image_open_id, dtype=torch.long, device=ids.device)
    for i in range(grid_tokens):
        check_cancel(cancel)
        tok, prob = sample_on_device(
            scores(token, i),
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            generator=generator,
        )
        sampled[i : i + 1], sampled_probs[i : i + 1] = tok, prob
        token = tok.reshape(1, 1)
        n = i + 1
        if n == 1 or n % sync_every == 0 or n == grid_tokens:
            start = len(codes)
            codes.extend(c - layout.vocab_size for c in sampled[start:n].tolist())
            probs.extend(sampled_probs[start:n].tolist())
            yield ImageProgress(codes=list(codes), probs=list(probs), total=grid_tokens)
