"""demo/train/deepen.py and the recipes' deepen_llm stage: a deeper GPT-NeoX that computes what the trained
one computed, checked against transformers' own forward and generate on the original model."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, GPTNeoXConfig, GPTNeoXForCausalLM

from llmcxr_app.demo.train import recipe
from llmcxr_app.demo.train.deepen import deepen, layer_plan
from llmcxr_app.modeling.builders import LLMShape, make_llm

SHAPE = LLMShape(num_layers=3, hidden_size=32, num_heads=2, intermediate_size=64, max_positions=64)


def _trained_like(seed: int = 0) -> GPTNeoXForCausalLM:
    """A tiny GPT-NeoX whose biases and norms are not at their init values, as a trained model's are."""
    model = make_llm(40, 8, SHAPE, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model.eval()


def test_layer_plan_spreads_the_copies_and_keeps_the_order():
    assert layer_plan(4, 8) == [(i // 2, i % 2 == 1) for i in range(8)]
    assert layer_plan(4, 6) == [(0, False), (1, False), (1, True), (2, False), (3, False), (3, True)]
    assert layer_plan(2, 2) == [(0, False), (1, False)]
    plan = layer_plan(3, 10)
    assert [old for old, added in plan if not added] == [0, 1, 2] and len(plan) == 10
    assert [old for old, _ in plan] == sorted(old for old, _ in plan)
    with pytest.raises(ValueError):
        layer_plan(4, 3)


@pytest.mark.parametrize("layers", [4, 7])
def test_deeper_model_gives_the_same_logits_and_generation(layers):
    model = _trained_like()
    deeper = deepen(model, layers).eval()
    assert deeper.config.num_hidden_layers == layers and isinstance(deeper, GPTNeoXForCausalLM)
    ids = torch.randint(0, 48, (2, 30), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(deeper(input_ids=ids).logits, model(input_ids=ids).logits)
    prompt = ids[:1, :6]
    kw = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": 0}
    assert torch.equal(deeper.generate(prompt, **kw), model.generate(prompt, **kw))  # KV cache per layer


def test_added_layers_learn_and_the_old_weights_are_kept():
    model = _trained_like(seed=3)
    deeper = deepen(model, 5)
    old = model.state_dict()
    new = deeper.state_dict()
    assert torch.equal(
        new["gpt_neox.layers.2.attention.query_key_value.weight"],
        old["gpt_neox.layers.1.attention.query_key_value.weight"],
    )
    assert not new["gpt_neox.layers.2.attention.dense.weight"].any()  # layer 2 is the copy added after old 1
    ids = torch.randint(0, 48, (2, 20), generator=torch.Generator().manual_seed(2))
    deeper.train()
    deeper(input_ids=ids, labels=ids).loss.backward()
    grad = deeper.gpt_neox.layers[2].attention.dense.weight.grad
    assert grad is not None and grad.abs().sum() > 0  # the zero projection gets a gradient: it can move


def test_deepen_refuses_the_sequential_residual():
    config = GPTNeoXConfig(
        vocab_size=48,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        use_parallel_residual=False,
    )
    with pytest.raises(ValueError, match="parallel"):
        deepen(GPTNeoXForCausalLM(config), 3)


def test_deepen_stage_grows_the_saved_model_in_the_official_format(tmp_path):
    model = _trained_like(seed=5)
    (tmp_path / "vqgan").mkdir()  # a saved stage's layout: shrink() also halves the VQ-GAN file
    save_file({"w": torch.ones(2)}, tmp_path / "vqgan" / "demo-vqgan.safetensors")
    model.save_pretrained(tmp_path / "llm")
    (tmp_path / "training.json").write_text(json.dumps({"lm_steps_run": 7}))  # an earlier round's record
    record = recipe.deepen_folder(tmp_path, 5)
    assert record == {"deepened": {"from_layers": 3, "to_layers": 5}}
    saved = json.loads((tmp_path / "training.json").read_text())
    assert saved == {**record, "previous_rounds": [{"lm_steps_run": 7}]}
    assert json.loads((tmp_path / "llm" / "config.json").read_text())["dtype"] == "float16"
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "llm", dtype=torch.float32).eval()
    assert loaded.config.num_hidden_layers == 5
    ids = torch.randint(0, 48, (1, 16), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():  # the file is fp16, so equal to the fp16 rounding of the weights
        torch.testing.assert_close(
            loaded(input_ids=ids).logits, model(input_ids=ids).logits, atol=2e-2, rtol=0
        )


@pytest.mark.parametrize(
    ("mode", "key", "value"), [("deepen_llm", "layers", 3), ("grid_rope", "grid_width", 16)]
)
def test_a_stage_that_changes_the_llm_needs_its_parameter(tmp_path, mode, key, value):
    raw = {"start": None, "stages": [{"name": "s", "mode": "scratch", "preset": "tiny"}]}
    raw["stages"].append({"name": "d", "mode": mode})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=key):
        recipe.load(str(bad))
    raw["stages"][1][key] = value
    bad.write_text(json.dumps(raw))
    assert getattr(recipe.load(str(bad)).stages[1], key) == value


def test_the_rounds_that_change_the_llm_load_their_stages():
    deeper = recipe.load("round17")
    assert [s.mode for s in deeper.stages] == ["deepen_llm", "continue_llm"] and deeper.stages[0].layers == 8
    grid = recipe.load("round19")
    assert [s.mode for s in grid.stages] == ["grid_rope", "continue_llm"] and grid.stages[0].grid_width == 16
