"""Reference implementations the tests compare the app against (never used by the app itself).

- ``hf_generate_greedy``: Hugging Face ``model.generate(do_sample=False)``, the eager baseline upstream uses.
- ``parse_response``: splits generated ids into text and image codes, written independently of the
  generation loops, so the tests can read a sequence back without trusting them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from llmcxr_app.protocol import OFFICIAL_CODEBOOK_SIZE, OFFICIAL_GRID_TOKENS, token_layout


@dataclass(frozen=True)
class Response:
    """A parsed model response."""

    text: str  # decoded text between the response key and "### End" (image ids excluded), stripped
    image_codes: list[int] | None  # exactly grid_tokens VQ codes, or None when the response is not an image


def parse_response(
    tokenizer: Any,
    generated_ids: Sequence[int],
    *,
    codebook_size: int = OFFICIAL_CODEBOOK_SIZE,
    grid_tokens: int = OFFICIAL_GRID_TOKENS,
) -> Response:
    """Split generated ids (prompt included or not) into the response text and image codes.

    Only ids after the last response key count (the whole sequence if there is none); the text stops at
    ``### End``. Image codes are returned only when exactly ``grid_tokens`` image ids follow the key.
    """
    layout = token_layout(tokenizer, codebook_size)
    ids = [int(i) for i in generated_ids]
    keys = [i for i, t in enumerate(ids) if t == layout.response_key_id]
    body = ids[keys[-1] + 1 :] if keys else ids
    if layout.end_id in body:
        body = body[: body.index(layout.end_id)]
    positions = [i for i, t in enumerate(body) if layout.is_image_id(t)]
    codes = layout.unshift([body[i] for i in positions]) if len(positions) == grid_tokens else None
    drop = set(positions)
    if codes is not None:
        # The image is framed as "<" ... ">" (how upstream trained it); the frame is not text.
        first, last = positions[0], positions[-1]
        if first > 0 and body[first - 1] == layout.image_open_id:
            drop.add(first - 1)
        if last + 1 < len(body) and body[last + 1] == layout.image_close_id:
            drop.add(last + 1)
    text_ids = [t for i, t in enumerate(body) if i not in drop and t < layout.vocab_size]
    text = tokenizer.decode(text_ids, skip_special_tokens=True).strip()
    return Response(text=text, image_codes=codes)


@torch.inference_mode()
def hf_generate_greedy(
    model: Any,
    prompt_ids: Sequence[int] | torch.Tensor,
    max_new_tokens: int,
    eos_id: int | Sequence[int],
    logits_processor: Any = None,
) -> list[int]:
    """Reference: HF ``model.generate(do_sample=False)`` with the cache on; returns the new ids only.

    The eager baseline upstream uses; tests compare generation.py's loops against it. ``logits_processor`` is an
    optional transformers LogitsProcessorList (e.g. the same constraint written independently).
    """
    ids = torch.as_tensor(prompt_ids, dtype=torch.long).reshape(1, -1).to(model.device)
    eos = [int(eos_id)] if isinstance(eos_id, int) else [int(e) for e in eos_id]
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        use_cache=True,
        eos_token_id=eos,
        pad_token_id=eos[0],
        logits_processor=logits_processor,
        temperature=None,
        top_p=None,
        top_k=None,
    )
    new = out[0, ids.shape[1] :].tolist()
    # generate pads nothing for batch 1, but it keeps the eos id it stopped on: drop it, as the loop does.
    if new and new[-1] in eos:
        new = new[:-1]
    return new
