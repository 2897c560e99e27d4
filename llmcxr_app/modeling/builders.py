"""Build small LLM-CXR models in the official formats: a GPT-NeoX-style tokenizer and a GPT-NeoX LLM, and
write trained ones in the official layouts (taming YAML + weights for the VQ-GAN; fp16 for shipping).

Used by the demo-model trainer and by the tests (which need tiny models laid out exactly like the official
checkpoint: tokenizer with the three special tokens, embedding rows = len(tokenizer) + codebook size).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llmcxr_app.protocol import IMAGE_PLACEHOLDER, SPECIAL_TOKENS

if TYPE_CHECKING:
    from llmcxr_app.modeling.vqgan import VQGAN

EOS_TOKEN = "<|endoftext|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2000):
    """Train a byte-level BPE tokenizer (GPT-NeoX style) and add LLM-CXR's special tokens.

    Returns a transformers ``PreTrainedTokenizerFast`` with eos = pad = ``<|endoftext|>`` and the additional
    special tokens ``### End``, ``### Instruction:``, ``### Response:\\n``. Image ids are NOT tokens: they
    follow the vocabulary (id = code + len(tokenizer)), as in the official model.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # The placeholder's middle word must be one token, as in GPT-NeoX's vocabulary.
    tok.train_from_iterator([*texts, *[IMAGE_PLACEHOLDER] * 1000], trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
    )
    fast.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    if len(fast.encode(IMAGE_PLACEHOLDER, add_special_tokens=False)) != 3:
        raise ValueError("The trained tokenizer does not split '<image>' into three ids; add more text.")
    return fast


@dataclass(frozen=True)
class LLMShape:
    """Size of a GPT-NeoX LLM (dolly-v2-3b is 32 layers, hidden 2560, 32 heads, context 2048)."""

    num_layers: int = 4  # transformer blocks
    hidden_size: int = 256  # model width
    num_heads: int = 4  # attention heads
    intermediate_size: int = 1024  # MLP width
    max_positions: int = 512  # context length in tokens
    rotary_pct: float = 0.25  # fraction of each head's dims that get rotary embeddings (dolly: 0.25)


DOLLY_V2_3B = LLMShape(
    num_layers=32, hidden_size=2560, num_heads=32, intermediate_size=10240, max_positions=2048
)


def make_llm(vocab_size: int, codebook_size: int, shape: LLMShape = LLMShape(), seed: int = 0):
    """A randomly initialised ``GPTNeoXForCausalLM`` whose embedding holds vocab_size + codebook_size rows."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    config = GPTNeoXConfig(
        vocab_size=vocab_size + codebook_size,
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        intermediate_size=shape.intermediate_size,
        max_position_embeddings=shape.max_positions,
        rotary_pct=shape.rotary_pct,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(seed)
    return GPTNeoXForCausalLM(config)


def save_vqgan(model: VQGAN, out: Path) -> None:
    """Official layout: a taming YAML (model.params) and the autoencoder weights (safetensors, no loss.*)."""
    import yaml
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    doc = {"model": {"target": "taming.models.vqgan.VQModel", "params": model.config.to_params()}}
    (out / "demo-vqgan.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    save_file(
        {k: v.contiguous().cpu() for k, v in model.state_dict().items()}, out / "demo-vqgan.safetensors"
    )


def shrink(out: Path) -> None:
    """Store the trained weights in fp16 (half the size; the loader upcasts to the runtime precision).

    The shipped model must stay small (weights/demo <= 30 MB); evaluation runs on these fp16 files.
    """
    from safetensors.torch import load_file, save_file

    for path in [out / "vqgan" / "demo-vqgan.safetensors", *sorted((out / "llm").glob("*.safetensors"))]:
        tensors = {k: (v.half() if v.is_floating_point() else v) for k, v in load_file(path).items()}
        save_file(tensors, path, metadata={"format": "pt"})
    cfg_path = out / "llm" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["dtype"] = "float16"
    cfg_path.write_text(json.dumps(cfg, indent=2))
