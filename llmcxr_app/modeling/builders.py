"""Build LLM-CXR-shaped models in memory: a GPT-NeoX-style tokenizer and a randomly initialised GPT-NeoX LLM,
with the architectures this project builds (dolly-v2-3b's, the demo model's, a tiny one for tests).

Used by the demo-model trainer, the benchmark (random models with real shapes) and the tests (which need tiny
models laid out exactly like the official checkpoint: tokenizer with the three special tokens, embedding
rows = len(tokenizer) + codebook size). No file I/O: loading/writers.py writes trained models.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from llmcxr_app.modeling.rope import DEFAULT_ROPE_THETA, grid_rope_theta
from llmcxr_app.modeling.vqgan import VQGANConfig
from llmcxr_app.protocol import IMAGE_PLACEHOLDER, SPECIAL_TOKENS

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
    rope_grid_width: int = 0  # > 0: rotary base tuned so one rotary pair turns once per this many ids (a
    #                           grid row; modeling/rope.py); 0: GPT-NeoX's default base 10000 (dolly's)


DOLLY_V2_3B = LLMShape(
    num_layers=32, hidden_size=2560, num_heads=32, intermediate_size=10240, max_positions=2048
)
OFFICIAL_VQGAN = VQGANConfig()  # taming's f16 defaults = the official architecture
OFFICIAL_VOCAB = 50281  # len(tokenizer) of the official checkpoint (docs/PROTOCOL.md)

# The embedded demo model (demo/train's "demo" preset; the benchmark's "demo-random" shape).
DEMO_LLM = LLMShape()
DEMO_VQGAN = VQGANConfig(
    embed_dim=64,
    n_embed=256,
    ch=32,
    ch_mult=(1, 2, 2, 4),
    num_res_blocks=1,
    attn_resolutions=(),
    z_channels=64,
    resolution=128,
)  # f8 at 128 px -> the official 16 x 16 grid
DEMO_VOCAB = 1200  # BPE vocabulary before the three special tokens


def rotary_dims(hidden_size: int, num_heads: int, rotary_pct: float) -> int:
    """Dims per attention head that GPT-NeoX rotates (as transformers computes them)."""
    return int(hidden_size // num_heads * rotary_pct)


def rope_theta(shape: LLMShape) -> float:
    """The rotary base of an LLM of this shape: the default, or tuned to its image grid's width."""
    if shape.rope_grid_width <= 0:
        return DEFAULT_ROPE_THETA
    dims = rotary_dims(shape.hidden_size, shape.num_heads, shape.rotary_pct)
    return grid_rope_theta(dims, shape.rope_grid_width)


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
        rope_parameters={
            "rope_type": "default",
            "rope_theta": rope_theta(shape),
            "partial_rotary_factor": shape.rotary_pct,
        },
        use_parallel_residual=True,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(seed)
    return GPTNeoXForCausalLM(config)
