"""demo/train/grid_rope.py and the recipes' grid_rope stage, checked with transformers' own GPT-NeoX rotary
embedding (its inverse frequencies and apply_rotary_pos_emb), not with a formula of ours."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, GPTNeoXConfig
from transformers.models.gpt_neox.modeling_gpt_neox import (
    GPTNeoXRotaryEmbedding,
    apply_rotary_pos_emb,
)

from llmcxr_app.demo.train import recipe
from llmcxr_app.demo.train.grid_rope import rotary_dims, set_grid_rope
from llmcxr_app.modeling.builders import DEMO_LLM, LLMShape, make_llm
from llmcxr_app.modeling.rope import grid_rope_theta, rope_settings


def _rotary(hidden: int, heads: int, fraction: float, theta: float) -> GPTNeoXRotaryEmbedding:
    config = GPTNeoXConfig(
        hidden_size=hidden,
        num_attention_heads=heads,
        rope_parameters={"rope_type": "default", "rope_theta": theta, "partial_rotary_factor": fraction},
    )
    return GPTNeoXRotaryEmbedding(config)


@pytest.mark.parametrize(
    ("hidden", "heads", "fraction", "width", "pair"),
    [(256, 4, 0.25, 16, 1), (2560, 32, 0.25, 16, 1), (64, 2, 1.0, 16, 2), (256, 4, 0.25, 32, 1)],
)
def test_the_tuned_pair_turns_once_per_grid_row(hidden, heads, fraction, width, pair):
    dims = int(hidden // heads * fraction)
    theta = grid_rope_theta(dims, width, pair)
    inv_freq = _rotary(hidden, heads, fraction, theta).inv_freq.double()
    torch.testing.assert_close(inv_freq[pair] * width, torch.tensor(2 * math.pi, dtype=torch.double))
    assert inv_freq[0] == 1.0  # pair 0 is not moved by the base


def test_the_demo_shape_gets_its_base():
    dims = rotary_dims({"hidden_size": 256, "num_attention_heads": 4, "rotary_pct": 0.25})
    assert dims == DEMO_LLM.hidden_size // DEMO_LLM.num_heads // 4 == 16
    assert grid_rope_theta(dims, 16) == pytest.approx(1768.16, abs=0.01)


def test_a_score_against_the_image_start_depends_on_the_column_alone():
    """One query/key pair living in rotary pair 1: its score against a key at the image's first position
    repeats every grid row under the tuned base, and does not at the default base."""
    width, n = 16, 256
    position_ids = torch.arange(n)[None]

    def scores(theta: float) -> torch.Tensor:
        rotary = _rotary(256, 4, 0.25, theta)
        q = torch.zeros(1, 1, n, 64)
        q[..., 1] = 1.0  # pair 1 is dims (1, 9) of the 16 rotated dims
        q[..., 9] = 0.5
        cos, sin = rotary(q, position_ids)
        k = q.clone()
        q_rot, k_rot = apply_rotary_pos_emb(q, k, cos, sin)
        return (q_rot[0, 0] @ k_rot[0, 0, 0]).reshape(n // width, width)  # [row, column]

    tuned = scores(grid_rope_theta(16, width))
    torch.testing.assert_close(tuned, tuned[:1].expand_as(tuned), atol=1e-4, rtol=0)
    assert tuned[0].max() - tuned[0].min() > 1.0  # and it does vary across the columns
    default = scores(10000.0)
    assert (default - default[:1]).abs().max() > 0.5


@pytest.mark.parametrize(("dims", "width", "pair"), [(15, 16, 1), (16, 16, 0), (16, 16, 8), (16, 6, 1)])
def test_impossible_bases_are_refused(dims, width, pair):
    with pytest.raises(ValueError):
        grid_rope_theta(dims, width, pair)


def _saved_model(tmp_path):
    shape = LLMShape(num_layers=2, hidden_size=64, num_heads=2, intermediate_size=64, max_positions=64)
    model = make_llm(40, 8, shape, seed=2).eval()
    (tmp_path / "vqgan").mkdir()
    save_file({"w": torch.ones(2)}, tmp_path / "vqgan" / "demo-vqgan.safetensors")
    model.save_pretrained(tmp_path / "llm")
    (tmp_path / "training.json").write_text(json.dumps({"lm_steps_run": 3}))
    return model


def test_grid_rope_stage_rewrites_only_the_config(tmp_path):
    model = _saved_model(tmp_path)
    record = recipe.grid_rope_folder(tmp_path, 16)
    assert record["grid_rope"]["from"] == 10000.0
    saved = json.loads((tmp_path / "training.json").read_text())
    assert saved == {**record, "previous_rounds": [{"lm_steps_run": 3}]}
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "llm", dtype=torch.float32).eval()
    dims = rotary_dims(loaded.config.to_dict())
    theta = grid_rope_theta(dims, 16)
    assert loaded.config.rope_parameters["rope_theta"] == pytest.approx(theta) == record["grid_rope"]["to"]
    inv_freq = loaded.gpt_neox.rotary_emb.inv_freq.double()
    torch.testing.assert_close(inv_freq[1] * 16, torch.tensor(2 * math.pi, dtype=torch.double))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    ids = torch.randint(0, 48, (1, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # same weights, new positions: the logits move
        assert not torch.allclose(loaded(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-3)


@pytest.mark.parametrize(
    "config",
    [
        {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 2},
        {
            "model_type": "gpt_neox",
            "hidden_size": 64,
            "num_attention_heads": 2,
            "rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
        },
    ],
)
def test_grid_rope_refuses_other_models_and_scaled_ropes(tmp_path, config):
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError):
        set_grid_rope(tmp_path, 16)
    assert json.loads((tmp_path / "config.json").read_text()) == config  # left as it was


def test_make_llm_builds_a_grid_tuned_llm_from_its_shape():
    shape = LLMShape(num_layers=1, hidden_size=64, num_heads=2, intermediate_size=64, rope_grid_width=16)
    model = make_llm(40, 8, shape)
    inv_freq = model.gpt_neox.rotary_emb.inv_freq.double()  # 32-wide heads, 0.25: 8 rotary dims
    torch.testing.assert_close(inv_freq[1] * 16, torch.tensor(2 * math.pi, dtype=torch.double))
    plain = make_llm(40, 8, LLMShape(num_layers=1, hidden_size=64, num_heads=2, intermediate_size=64))
    assert plain.config.rope_parameters["rope_theta"] == 10000.0
    assert plain.config.rope_parameters["partial_rotary_factor"] == 0.25


def test_a_scratch_stage_takes_llm_keys_and_others_refuse_them(tmp_path):
    stage = {"name": "s", "mode": "scratch", "preset": "tiny", "llm": {"rope_grid_width": 16}}
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"stages": [stage]}))
    assert recipe.load(str(path)).stages[0].config.llm.rope_grid_width == 16
    for bad, match in [({"rope_width": 16}, "unknown llm keys"), ({"num_layers": 6}, None)]:
        stages = [{**stage, "llm": bad}]
        if match is None:  # a further round loads its LLM, so shape keys would be silently ignored
            stages = [stage, {"name": "c", "mode": "continue_llm", "llm": bad}]
            match = "only a scratch or new_llm stage"
        path.write_text(json.dumps({"stages": stages}))
        with pytest.raises(ValueError, match=match):
            recipe.load(str(path))


def test_a_new_llm_stage_builds_the_llm_it_names_on_the_vqgan_it_finds(tmp_path):
    """new_llm: a new tokenizer and LLM (here 2 layers, grid-tuned) trained on OUT's VQ-GAN, left byte for
    byte as the stage before made it."""
    config = {"n_phantoms": 8, "threads": 1}
    stages = [
        {"name": "scratch", "mode": "scratch", "preset": "tiny", "config": config},
        {
            "name": "new",
            "mode": "new_llm",
            "preset": "tiny",
            "config": {**config, "seed": 5},
            "llm": {"num_layers": 2, "rope_grid_width": 16},
        },
    ]
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"stages": stages}))
    loaded = recipe.load(str(path))
    out = tmp_path / "out"
    recipe.run_recipe(replace(loaded, stages=loaded.stages[:1]), out)
    vqgan = (out / "vqgan" / "demo-vqgan.safetensors").read_bytes()
    first = json.loads((out / "llm" / "config.json").read_text())
    records = recipe.run_recipe(replace(loaded, stages=loaded.stages[1:]), out)
    assert (out / "vqgan" / "demo-vqgan.safetensors").read_bytes() == vqgan
    config_json = json.loads((out / "llm" / "config.json").read_text())
    assert first["num_hidden_layers"] == 1 and config_json["num_hidden_layers"] == 2
    theta = grid_rope_theta(rotary_dims(config_json), 16)
    assert config_json["rope_parameters"]["rope_theta"] == pytest.approx(theta)
    assert records[0]["config"]["seed"] == 5 and "previous_rounds" not in records[0]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"rope_parameters": {"partial_rotary_factor": 0.5, "rope_theta": 1768.0}}, (0.5, 1768.0)),
        ({"rotary_pct": 1.0, "rotary_emb_base": 500.0}, (1.0, 500.0)),  # the older spelling
        ({"rope_parameters": {"rope_theta": 99.0}, "rotary_pct": 0.5, "rotary_emb_base": 7.0}, (0.5, 99.0)),
        ({}, (0.25, 10000.0)),  # GPT-NeoX's defaults
    ],
)
def test_rope_settings_reads_either_spelling(config, expected):
    assert rope_settings(config) == expected


def test_rope_settings_agrees_with_transformers_config():
    config = GPTNeoXConfig(rotary_pct=0.5, rotary_emb_base=321.0)
    assert rope_settings(config.to_dict()) == (0.5, 321.0)
    assert rope_settings(GPTNeoXConfig().to_dict()) == (0.25, 10000.0)
