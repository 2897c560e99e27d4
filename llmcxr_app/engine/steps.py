"""The model's steps for generation: prefill a prompt, feed one token; and the same for two prompts run as
one batch of two (a guided drawing's prompt and its negative: pair_inputs, decode_pair_step).

Pure functions (no state outside their arguments and results), in the style of gpt-fast. Logits are float32
[B, V] for the next token, V the LM head width; the cache is the model's ``DynamicCache``.
"""

from __future__ import annotations

from typing import Any

import torch


def device_of(model: Any) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def prefill(model: Any, input_ids: torch.Tensor, **inputs: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """Run the prompt through the model with a fresh DynamicCache.

    input_ids: LongTensor [B, T] (B = 1, or 2 for a pair: pair_inputs). ``inputs``: further inputs of the
    prompt, moved to the model's device (a pair's attention_mask and position_ids; an adapter model's
    pixel_values [1, 3, H, W], bound with functools.partial to get a PrefillFn).
    Returns (logits [B, V] float32 for the next token, past_key_values).
    """
    from transformers import DynamicCache

    device = device_of(model)
    input_ids = input_ids.to(device)
    extra = {k: v.to(device) for k, v in inputs.items()}
    past = DynamicCache(config=model.config)
    # The checkpoint's generation_config may say use_cache=False (training leftover): always pass it.
    out = model(input_ids=input_ids, past_key_values=past, use_cache=True, logits_to_keep=1, **extra)
    return out.logits[:, -1, :].float(), out.past_key_values


@torch.inference_mode()
def decode_step(
    model: Any, token_id: int | torch.Tensor, past: Any, position: int
) -> tuple[torch.Tensor, Any]:
    """Feed one token at sequence index ``position`` (0-based; = ids already in the cache).

    ``token_id``: an int, or a tensor holding one id on the model's device (the image loop keeps its
    sampled ids there). Returns (logits [1, V] float32 for the following token, past_key_values).
    """
    device = device_of(model)
    ids = torch.as_tensor(token_id, dtype=torch.long, device=device).reshape(1, 1)
    pos = torch.tensor([[position]], dtype=torch.long, device=device)
    out = model(input_ids=ids, past_key_values=past, position_ids=pos, use_cache=True)
    return out.logits[:, -1, :].float(), out.past_key_values


def pair_inputs(first: torch.Tensor, second: torch.Tensor) -> dict[str, torch.Tensor]:
    """Two prompts (LongTensors [1, Ta] and [1, Tb]) as one batch of two for ``prefill``: the shorter
    left-padded, behind an attention mask, each row at its own positions.

    Returns {"input_ids": [2, T], "attention_mask": [2, T] (0 over the padding), "position_ids": [2, T]}
    with T = max(Ta, Tb). ``prefill(model, **pair_inputs(a, b))`` gives each row the logits ``prefill``
    gives that prompt alone (to float rounding); ``decode_pair_step`` goes on from its cache.
    """
    width = max(first.shape[1], second.shape[1])
    ids = torch.zeros((2, width), dtype=torch.long)
    mask = torch.zeros((2, width), dtype=torch.long)
    for row, prompt in enumerate((first, second)):
        ids[row, width - prompt.shape[1] :] = prompt[0].cpu()
        mask[row, width - prompt.shape[1] :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": positions}


@torch.inference_mode()
def decode_pair_step(
    model: Any, token_id: torch.Tensor, past: Any, mask: torch.Tensor
) -> tuple[torch.Tensor, Any, torch.Tensor]:
    """Feed the same token (a tensor holding one id) to both rows of a pair's cache (``pair_inputs``).

    ``mask``: the pair's attention mask so far [2, T] (pair_inputs' to begin with). Returns (logits [2, V]
    float32, past_key_values, the mask grown by the fed token [2, T + 1]); each row's token sits at the
    position after its own ids.
    """
    device = device_of(model)
    ids = torch.as_tensor(token_id, dtype=torch.long, device=device).reshape(1, 1).expand(2, 1)
    mask = mask.to(device)  # pair_inputs builds it on the host; later steps hand back the device's
    positions = mask.sum(-1, keepdim=True)  # ids so far in each row = the new token's 0-based position
    mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
    out = model(
        input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=past, use_cache=True
    )
    return out.logits[:, -1, :].float(), out.past_key_values, mask
