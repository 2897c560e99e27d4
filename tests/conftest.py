"""Shared fixtures: tiny models written in the official LLM-CXR formats (built here, never downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from llmcxr_app import protocol
from llmcxr_app.config import ModelLocation
from llmcxr_app.modeling.vqgan import VQGAN, VQGANConfig

# Tiny models run faster on one thread (no OpenMP hand-offs), and CI machines have only two cores.
torch.set_num_threads(1)

# 32 px with one 2x downsample gives the official 16 x 16 = 256-code grid at a tiny cost.
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

TOKENIZER_TEXTS = [
    protocol.INTRO_BLURB,
    *protocol.REPORT_TO_CXR_INSTRUCTIONS,
    *protocol.CXR_TO_REPORT_INSTRUCTIONS,
    "Heart size is normal. No pleural effusion or pneumothorax. Lungs are clear.",
    "Moderate right pleural effusion with compressive atelectasis. The left lung is clear.",
    "Does the patient have lung opacity? Is there cardiomegaly? Yes. No. Left. Right. Café, naïve, 肺.",
    "What is deep learning? Write a short poem about the sea.",
]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from llmcxr_app.modeling.builders import train_tokenizer

    return train_tokenizer(TOKENIZER_TEXTS * 5, vocab_size=400)


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A GPT-NeoX directory in Hugging Face save format, embedding rows = len(tokenizer) + codebook size."""
    from llmcxr_app.modeling.builders import LLMShape, make_llm

    out = tmp_path_factory.mktemp("llm")
    model = make_llm(
        len(tiny_tokenizer),
        TINY_VQGAN.n_embed,
        LLMShape(num_layers=2, hidden_size=64, num_heads=4, intermediate_size=128, max_positions=512),
        seed=0,
    )
    model.save_pretrained(out)
    tiny_tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def model(tiny_llm_dir):
    """The tiny LLM loaded plainly (fp32, eval); one per test module, so no module sees another's changes."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_llm_dir).eval()


@pytest.fixture(scope="session")
def layout(tiny_tokenizer) -> protocol.TokenLayout:
    """The tiny model's token layout (special ids, image ids after the vocabulary)."""
    return protocol.token_layout(tiny_tokenizer, TINY_VQGAN.n_embed)


def write_lightning_ckpt(model: VQGAN, path: Path, extra_loss_keys: bool = True) -> None:
    """Save like Lightning does: a dict with `state_dict` (plus training-only `loss.*` keys) and bookkeeping."""
    sd = dict(model.state_dict())
    if extra_loss_keys:
        sd["loss.discriminator.main.0.weight"] = torch.zeros(4, 3, 4, 4)
        sd["loss.perceptual_loss.lin0.model.1.weight"] = torch.zeros(1, 64, 1, 1)
    torch.save({"epoch": 3, "global_step": 1234, "state_dict": sd, "optimizer_states": []}, path)


def write_vqgan_yaml(cfg: VQGANConfig, path: Path) -> None:
    doc = {
        "model": {
            "base_learning_rate": 4.5e-6,
            "target": "taming.models.vqgan.VQModel",
            "params": {
                **cfg.to_params(),
                "lossconfig": {"target": "taming.modules.losses.vqperceptual.DummyLoss"},
            },
        }
    }
    path.write_text(yaml.safe_dump(doc))


@pytest.fixture(scope="session")
def tiny_vqgan_files(tmp_path_factory) -> tuple[Path, Path]:
    """(YAML, Lightning .ckpt) of a tiny randomly initialised VQ-GAN in the official layout."""
    out = tmp_path_factory.mktemp("vqgan")
    torch.manual_seed(0)
    model = VQGAN(TINY_VQGAN)
    with torch.no_grad():
        model.quantize.embedding.weight.normal_()  # spread codes so encodings vary
    cfg_path, ckpt_path = out / "tiny-vqgan.yaml", out / "tiny-vqgan.ckpt"
    write_vqgan_yaml(TINY_VQGAN, cfg_path)
    write_lightning_ckpt(model, ckpt_path)
    return cfg_path, ckpt_path


@pytest.fixture(scope="session")
def tiny_location(tiny_llm_dir, tiny_vqgan_files) -> ModelLocation:
    cfg_path, ckpt_path = tiny_vqgan_files
    return ModelLocation(
        llm=str(tiny_llm_dir), vqgan_config=str(cfg_path), vqgan_ckpt=str(ckpt_path), name="tiny-test"
    )
