"""Start the token demo's LLM from a text-only base LM (`weights/demo-base-lm`) instead of random weights.

The adapter demo's LLM starts from that base (demo/train/adapter.py stage 0); `--init-llm DIR` gives the token
trainer the same starting point, so the two families differ only in how the X-ray reaches the LLM.

Vocabulary: the token model uses the base's own tokenizer, so every text id means the same string in both
(the shipped base's tokenizer is the token demo's byte-level BPE: the same 1088 ids, merges and special
tokens as weights/demo/llm). A LLM-CXR special token the base lacks is added after its ids; the image ids
follow the whole text vocabulary as protocol.py requires: id = code + len(tokenizer).

Weights: every base tensor is copied (every layer, every text row of the input embedding and of the output
head); a tensor missing on either side, or of another shape, raises (no silent partial copy). The new rows
(added special tokens and the image codes) start at the mean of the base's text rows plus small noise: the
mean keeps their input vectors inside the distribution the trained layers have seen (a fresh random row has
a different scale from trained rows), and as output rows it gives the new ids the average logit, so the
model's text predictions barely move at step 0; the noise makes the 256 codes distinct from the start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from llmcxr_app import protocol
from llmcxr_app.config import REPO_ROOT
from llmcxr_app.modeling.builders import LLMShape, make_llm, rope_theta
from llmcxr_app.modeling.rope import rope_settings

NEW_ROW_NOISE = 0.1  # noise std of a new row, as a fraction of the per-dimension std of the base's text rows
# [vocab, hidden] tensors grown by the new rows: the input embedding and the output head (named embed_out or
# lm_head depending on the transformers version).
_ROW_TENSORS = ("gpt_neox.embed_in.weight", "embed_out.weight", "lm_head.weight")


def _shape_of(config: Any) -> dict[str, Any]:
    """The LLMShape fields of a GPT-NeoX config; its rotary base stands for rope_grid_width, which a config
    does not record."""
    rotary, theta = rope_settings(config.to_dict())
    return {
        "num_layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "num_heads": config.num_attention_heads,
        "intermediate_size": config.intermediate_size,
        "max_positions": config.max_position_embeddings,
        "rotary_pct": rotary,
        "rope_theta": theta,
    }


def check_compatible(config: Any, shape: LLMShape, folder: Path | str = "the base LM") -> None:
    """Raise ValueError naming every field where the base's config differs from the token model's shape
    (layers, widths, heads, context length, rotary fraction and base): its weights would not fit, or would be
    read with another context or rotary layout than they were trained with."""
    if getattr(config, "model_type", None) != "gpt_neox":
        raise ValueError(
            f"{folder} is a {config.model_type!r} model; the token trainer needs a GPT-NeoX base."
        )
    base = _shape_of(config)
    want = {k: getattr(shape, k) for k in base if k != "rope_theta"} | {"rope_theta": rope_theta(shape)}
    wrong = [f"{k}: base {base[k]}, token model {want[k]}" for k in base if base[k] != want[k]]
    if wrong:
        raise ValueError(
            f"The base LM in {folder} does not fit the token model's LLM shape ({'; '.join(wrong)}). "
            "Train the token model with the base's shape, or train a base of this shape."
        )


def load_base(folder: Path | str) -> tuple[Any, torch.nn.Module]:
    """(tokenizer, GPTNeoXForCausalLM in float32) of a base LM directory, with a clear error when absent."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    if not folder.is_absolute() and not folder.exists():  # a recipe's "weights/..." from another directory
        folder = REPO_ROOT / folder
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"No base LM in {folder} (no config.json); expected e.g. weights/demo-base-lm."
        )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return tokenizer, model


def token_tokenizer(base_tokenizer: Any) -> Any:
    """The base's tokenizer with any missing LLM-CXR special token added after its ids (checked by
    protocol.token_layout). Existing ids are untouched, so text ids mean the same strings in both models."""
    import copy

    tok = copy.deepcopy(base_tokenizer)
    have = set(tok.all_special_tokens)
    missing = [t for t in protocol.SPECIAL_TOKENS if t not in have]
    if missing:
        extra = list(tok.additional_special_tokens) + missing
        tok.add_special_tokens({"additional_special_tokens": extra})
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    protocol.token_layout(tok, 1)  # raises if a special token is not one id or <image> is not three
    return tok


def _grown(rows: torch.Tensor, n_rows: int, generator: torch.Generator) -> torch.Tensor:
    """rows [n_base, H] -> [n_rows, H]: the base rows, then new rows = mean + NEW_ROW_NOISE * std * N(0, 1)."""
    n_new = n_rows - rows.shape[0]
    noise = torch.randn(n_new, rows.shape[1], generator=generator, dtype=rows.dtype)
    new = rows.mean(0, keepdim=True) + NEW_ROW_NOISE * rows.std(0, keepdim=True) * noise
    return torch.cat([rows, new])


def copy_base_weights(target: torch.nn.Module, base: torch.nn.Module, seed: int = 0) -> None:
    """Copy every tensor of `base` into `target` (same architecture, more embedding/head rows).

    Raises KeyError when a tensor exists on one side only and ValueError on any other shape difference,
    before anything is written."""
    src, dst = base.state_dict(), target.state_dict()
    if set(src) != set(dst):
        raise KeyError(
            f"Base LM and token LLM tensors differ: only in the base {sorted(set(src) - set(dst))[:5]}, "
            f"only in the token LLM {sorted(set(dst) - set(src))[:5]}."
        )
    for name, tensor in src.items():
        rows_ok = name in _ROW_TENSORS and tensor.shape[1:] == dst[name].shape[1:]
        if tensor.shape != dst[name].shape and not (rows_ok and tensor.shape[0] <= dst[name].shape[0]):
            raise ValueError(f"{name}: base shape {tuple(tensor.shape)}, token LLM {tuple(dst[name].shape)}.")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in src.items():
            value = tensor.float()
            if name in _ROW_TENSORS:
                value = _grown(value, dst[name].shape[0], generator)
            dst[name].copy_(value)


def init_from_base(
    folder: Path | str, codebook_size: int, shape: LLMShape, seed: int = 0
) -> tuple[Any, torch.nn.Module]:
    """(tokenizer, GPT-NeoX with len(tokenizer) + codebook_size rows) initialised from the base in `folder`.

    On a text-only prompt its logits over the text ids equal the base's (the tests check it exactly)."""
    base_tokenizer, base = load_base(folder)
    check_compatible(base.config, shape, folder)
    if base.config.vocab_size != len(base_tokenizer):
        raise ValueError(
            f"The base LM in {folder} has {base.config.vocab_size} embedding rows for a tokenizer of "
            f"{len(base_tokenizer)} ids; they must match (its image ids would otherwise be misplaced)."
        )
    tokenizer = token_tokenizer(base_tokenizer)
    model = make_llm(len(tokenizer), codebook_size, shape, seed=seed)
    copy_base_weights(model, base, seed)
    return tokenizer, model
