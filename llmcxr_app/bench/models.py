"""The models the benchmark measures: trained weights loaded as the app loads them, or random models with
the demo's or dolly-v2-3b's shapes (so the official architecture can be timed without its weights).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from llmcxr_app import config as cfg
from llmcxr_app import protocol
from llmcxr_app.loading.weights import load_model
from llmcxr_app.modeling.builders import (
    DEMO_LLM,
    DEMO_VOCAB,
    DEMO_VQGAN,
    DOLLY_V2_3B,
    OFFICIAL_VOCAB,
    OFFICIAL_VQGAN,
    LLMShape,
    make_llm,
    train_tokenizer,
)
from llmcxr_app.modeling.vqgan import VQGAN, VQGANConfig

FINDINGS = "Moderate right pleural effusion with compressive atelectasis. The left lung is clear. Heart size is normal."
# 16 x 16 grid (256 ids, as officially) at almost no cost
TINY_VQGAN = VQGANConfig(
    embed_dim=8,
    n_embed=32,
    ch=32,
    ch_mult=(1, 1),
    num_res_blocks=1,
    attn_resolutions=(),
    z_channels=8,
    resolution=32,
)


@dataclass(frozen=True)
class BenchModel:
    """A model to benchmark, loaded or built."""

    model: Any  # GPTNeoXForCausalLM, eval mode
    tokenizer: Any  # encode/decode/len/eos_token_id
    layout: protocol.TokenLayout
    vqgan: VQGAN  # on the LLM's device
    device: torch.device  # where both run
    context_length: int  # tokens
    quantization: str  # resolved
    source: str  # "weights:PATH" or "random:SHAPE"


class _WideTokenizer:
    """A small trained tokenizer that reports a larger vocabulary (the official 50281, or the demo model's), so
    random models get the real id layout and LM-head width. Ids beyond the small vocabulary decode to nothing."""

    def __init__(self, base: Any, size: int):
        self.base, self.size, self.eos_token_id = base, size, base.eos_token_id

    def __len__(self) -> int:
        return self.size

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.base.encode(text, add_special_tokens=add_special_tokens)

    def decode(self, ids: list[int], **kwargs: Any) -> str:
        return self.base.decode([i for i in ids if i < len(self.base)], **kwargs)


def build_random(
    shape: str, *, device: torch.device, quantization: str, layers: int | None = None
) -> BenchModel:
    """tiny | demo-random (the demo model's shapes) | official (dolly-v2-3b + f16 VQ-GAN); random weights."""
    if shape == "tiny":
        llm_shape, vq, vocab = LLMShape(2, 64, 4, 128, 512), TINY_VQGAN, 400
    elif shape == "demo-random":
        llm_shape, vq, vocab = DEMO_LLM, DEMO_VQGAN, DEMO_VOCAB
    elif shape == "official":
        llm_shape, vq, vocab = DOLLY_V2_3B, OFFICIAL_VQGAN, 2000
    else:
        raise ValueError(f"Unknown shape {shape!r}.")
    if layers is not None:
        llm_shape = replace(llm_shape, num_layers=layers)
    texts = [
        protocol.INTRO_BLURB,
        *protocol.REPORT_TO_CXR_INSTRUCTIONS,
        *protocol.CXR_TO_REPORT_INSTRUCTIONS,
        FINDINGS,
    ]
    tokenizer = train_tokenizer(texts * 5, vocab_size=vocab)
    if shape == "official":
        tokenizer = _WideTokenizer(tokenizer, OFFICIAL_VOCAB)
    elif (
        shape == "demo-random"
    ):  # the demo trainer's BPE reaches its vocab_size on the full corpus, plus 3 specials
        tokenizer = _WideTokenizer(tokenizer, vocab + len(protocol.SPECIAL_TOKENS))
    layout = protocol.token_layout(tokenizer, vq.n_embed)
    with torch.device(device):  # initialise on the device: 2.8 B parameters initialise slowly on a CPU
        model = make_llm(len(tokenizer), vq.n_embed, llm_shape, seed=0).eval()
    if quantization in ("bf16", "fp32"):
        model = model.to(torch.bfloat16 if quantization == "bf16" else torch.float32)
    else:
        model = _quantized(model, quantization, device)
    torch.manual_seed(0)
    vqgan = VQGAN(vq).eval().to(device)
    return BenchModel(
        model, tokenizer, layout, vqgan, device, llm_shape.max_positions, quantization, f"random:{shape}"
    )


def _quantized(model: Any, quantization: str, device: torch.device) -> Any:
    """Round-trip through disk, so bitsandbytes quantizes exactly as weights.load_llm's from_pretrained does."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    # The compute dtypes weights.load_llm uses: bf16 (fp16 on GPUs without it) on CUDA, fp32 on CPU.
    if device.type == "cuda":
        half = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        half = torch.float32
    if quantization == "nf4":
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=half)
    else:
        q = BitsAndBytesConfig(load_in_8bit=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.to(half).save_pretrained(tmp)
        del model
        out = AutoModelForCausalLM.from_pretrained(
            tmp, quantization_config=q, dtype=half, device_map={"": str(device)}
        )
    return out.eval()


def load_weights(spec: str, *, device: str, quantization: str) -> BenchModel:
    """``demo`` = weights/demo; otherwise a directory laid out like it (llm/, vqgan/*.yaml + weights)."""
    if spec == "demo":
        root = cfg.DEMO_DIR
        if not (cfg.DEMO_LLM_DIR / "config.json").is_file():
            raise SystemExit(
                f"No demo model in {root}: train it (python -m llmcxr_app.demo.train --out weights/demo) "
                "or benchmark its architecture with random weights: --shape demo-random."
            )
    else:
        root = Path(spec)
    vq_dir = root / "vqgan"
    yamls = sorted(vq_dir.glob("*.yaml"))
    ckpts = sorted(vq_dir.glob("*.safetensors")) + sorted(vq_dir.glob("*.ckpt"))
    if not (root / "llm").is_dir() or not ckpts:
        raise SystemExit(f"{root} is not laid out like weights/demo (llm/ and vqgan/ with the VQ-GAN files).")
    location = cfg.ModelLocation(str(root / "llm"), str(yamls[0]) if yamls else "", str(ckpts[0]), root.name)
    llm, vqgan = load_model(location, cfg.RuntimeConfig(device=device, quantization=quantization))
    return BenchModel(
        llm.model,
        llm.tokenizer,
        llm.layout,
        vqgan,
        llm.device,
        llm.context_length,
        llm.quantization,
        f"weights:{root}",
    )
