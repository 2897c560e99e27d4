"""demo/train/init_from_base.py: the token demo's LLM started from a text-only base LM (issue #20, fair
comparison with the adapter demo): same text behaviour exactly, new image rows, loud failures."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from llmcxr_app import protocol
from llmcxr_app.config import DEMO_ADAPTER_DIR
from llmcxr_app.demo.train.config import PRESETS
from llmcxr_app.demo.train.init_from_base import copy_base_weights, init_from_base, load_base
from llmcxr_app.demo.train.training import run
from llmcxr_app.modeling.builders import LLMShape, make_llm

SHAPE = PRESETS["tiny"].llm  # the tiny token preset's GPT-NeoX shape, so the tiny run can start from it
CODEBOOK = 32


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny text-only base LM (rows = len(tokenizer), no image rows), saved as the adapter trainer does,
    with non-trivial weights (a random init has near-zero biases and unit norms)."""
    out = tmp_path_factory.mktemp("base")
    base = make_llm(len(tiny_tokenizer), 0, SHAPE, seed=3)
    with torch.no_grad():
        for p in base.parameters():
            p.add_(0.05 * torch.randn_like(p))
    base.save_pretrained(out)
    tiny_tokenizer.save_pretrained(out)
    return out


def _text_ids(tokenizer) -> torch.Tensor:
    """A text-only Dolly-format prompt (no image ids) as token ids [1, T]."""
    text = protocol.format_prompt("Is there a pleural effusion?")
    return torch.tensor([tokenizer.encode(text, add_special_tokens=False)])


def test_text_logits_equal_the_base_exactly(base_dir):
    tokenizer, model = init_from_base(base_dir, CODEBOOK, SHAPE)
    base_tokenizer, base = load_base(base_dir)
    assert len(tokenizer) == len(base_tokenizer) == base.config.vocab_size
    assert tokenizer.get_vocab() == base_tokenizer.get_vocab()  # text ids mean the same strings
    ids = _text_ids(tokenizer)
    with torch.no_grad():
        got = model.eval()(input_ids=ids).logits
        want = base.eval()(input_ids=ids).logits
    assert got.shape[-1] == len(tokenizer) + CODEBOOK  # image id = code + len(tokenizer)
    torch.testing.assert_close(got[..., : len(tokenizer)], want, rtol=0, atol=0)


def test_image_rows_are_new_finite_and_distinct(base_dir):
    tokenizer, model = init_from_base(base_dir, CODEBOOK, SHAPE)
    _, base = load_base(base_dir)
    n = len(tokenizer)
    for mine, theirs in (
        (model.get_input_embeddings().weight, base.get_input_embeddings().weight),
        (model.get_output_embeddings().weight, base.get_output_embeddings().weight),
    ):
        assert mine.shape == (n + CODEBOOK, SHAPE.hidden_size)
        assert torch.equal(mine[:n], theirs)
        image = mine[n:]
        assert torch.isfinite(image).all()
        assert torch.unique(image, dim=0).shape[0] == CODEBOOK  # the noise makes every code distinct
        # Near the text rows' mean: within a few noise stds, far closer than a typical text row.
        dist = (image - theirs.mean(0)).norm(dim=1)
        assert dist.max() < (theirs - theirs.mean(0)).norm(dim=1).mean()


def test_a_missing_or_extra_tensor_raises(base_dir):
    _, base = load_base(base_dir)
    target = make_llm(base.config.vocab_size, CODEBOOK, SHAPE)
    state = base.state_dict()
    del state["gpt_neox.final_layer_norm.weight"]

    class Stub(torch.nn.Module):  # a base whose state dict lacks one tensor
        def state_dict(self, *a, **k):
            return state

    before = target.gpt_neox.layers[0].mlp.dense_h_to_4h.weight.clone()
    with pytest.raises(KeyError, match="final_layer_norm"):
        copy_base_weights(target, Stub())
    assert torch.equal(target.gpt_neox.layers[0].mlp.dense_h_to_4h.weight, before)  # nothing copied
    deeper = make_llm(base.config.vocab_size, CODEBOOK, replace(SHAPE, num_layers=2))
    with pytest.raises(KeyError, match="layers.1"):
        copy_base_weights(deeper, base)


def test_an_incompatible_shape_is_refused_clearly(base_dir):
    with pytest.raises(ValueError, match="max_positions: base 1024, token model 512"):
        init_from_base(base_dir, CODEBOOK, replace(SHAPE, max_positions=512))
    with pytest.raises(ValueError, match="rotary_pct"):
        init_from_base(base_dir, CODEBOOK, replace(SHAPE, rotary_pct=0.5))
    with pytest.raises(ValueError, match="rope_theta: base 10000.0"):  # the grid base would be ignored
        init_from_base(base_dir, CODEBOOK, replace(SHAPE, rope_grid_width=16))
    with pytest.raises(FileNotFoundError, match="No base LM"):
        init_from_base(base_dir / "absent", CODEBOOK, SHAPE)


def test_a_tiny_training_run_starts_from_the_base(tmp_path, base_dir):
    cfg = replace(PRESETS["tiny"], n_phantoms=8, threads=1, init_llm=str(base_dir))
    record = run(cfg, tmp_path)
    assert record["lm_steps_run"] == cfg.lm_steps and record["config"]["init_llm"] == str(base_dir)
    saved = json.loads((tmp_path / "llm" / "config.json").read_text())
    assert saved["vocab_size"] == len(load_base(base_dir)[0]) + cfg.vqgan.n_embed
    assert (tmp_path / "llm" / "tokenizer.json").read_text() == (base_dir / "tokenizer.json").read_text()


def test_the_budget_matched_recipe_matches_the_adapter():
    """1170 steps x 16 = stage 1 + both pilots + stage 2 of the shipped adapter, from the shipped base."""
    adapter = json.loads((DEMO_ADAPTER_DIR / "training.json").read_text())["recipe"]
    cfg = PRESETS["base-matched"]
    stages = adapter["stage1"]["steps"] + 2 * adapter["pilot_steps"] + adapter["stage2"]["steps"]
    assert cfg.lm_steps == stages and cfg.lm_batch == adapter["stage2"]["batch"] == adapter["stage1"]["batch"]
    assert cfg.init_llm == "weights/demo-base-lm" and cfg.n_phantoms == adapter["n_phantoms"]
    assert cfg.llm == LLMShape(**adapter["llm"])
