"""demo/train/training.py and demo/data/samples.py: a smoke training run in the official layout, and the shipped weights."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from llmcxr_app import protocol
from llmcxr_app.config import DEMO_MODEL, RuntimeConfig, SamplingConfig, Settings, resolve_location
from llmcxr_app.demo.data import samples as data
from llmcxr_app.demo.train import recipe
from llmcxr_app.demo.train.config import PRESETS
from llmcxr_app.demo.train.outputs import save_llm
from llmcxr_app.demo.train.training import declared, run
from llmcxr_app.loading.weights import DRAW_GUIDANCE_KEY, load_model


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    cfg = replace(PRESETS["tiny"], n_phantoms=8, threads=1)
    record = run(cfg, out)
    return out, record


def test_smoke_run_writes_the_official_layout(smoke_run):
    out, record = smoke_run
    for rel in (
        "vqgan/demo-vqgan.yaml",
        "vqgan/demo-vqgan.safetensors",
        "llm/config.json",
        "llm/tokenizer.json",
    ):
        assert (out / rel).is_file(), rel
    assert json.loads((out / "training.json").read_text())["n_examples"] == record["n_examples"] > 0
    assert record["timings"]["total_s"] > 0


def test_smoke_model_loads_through_the_official_path(smoke_run):
    out, _ = smoke_run
    from llmcxr_app.config import ModelLocation

    loc = ModelLocation(
        llm=str(out / "llm"),
        vqgan_config=str(out / "vqgan/demo-vqgan.yaml"),
        vqgan_ckpt=str(out / "vqgan/demo-vqgan.safetensors"),
    )
    llm, vqgan = load_model(
        loc, RuntimeConfig(device="cpu", quantization="fp32", fast_path=False, warmup=False)
    )
    assert llm.layout.codebook_size == vqgan.n_embed == PRESETS["tiny"].vqgan.n_embed
    assert llm.model.get_input_embeddings().weight.shape[0] == len(llm.tokenizer) + vqgan.n_embed
    # The weights were stored in fp16 (shrink) and come back in the requested precision.
    assert next(llm.model.parameters()).dtype == torch.float32
    # A demo model learns the template language, so its config.json says it draws from the reading.
    assert llm.draw_prompt == PRESETS["tiny"].draw_prompt == "canonical"
    assert llm.question_prompt == PRESETS["tiny"].question_prompt == "canonical"


def test_examples_mask_the_prompt_and_keep_the_response(tiny_tokenizer):
    samples = [
        data.Sample(seed=i, pixels=np.zeros((32, 32), np.uint8), findings=f, report="Heart size is normal.")
        for i, f in enumerate(
            [data.make_phantom(s, size=16).findings for s in range(3)]  # findings only; pixels unused
        )
    ]
    codes = [[i % 32 for i in range(256)]] * len(samples)
    ex = data.build_examples(
        tiny_tokenizer, samples, codes, codebook_size=32, grid_tokens=256, rng=np.random.default_rng(0)
    )
    assert {e.task for e in ex} >= {protocol.TASK_DRAW, protocol.TASK_REPORT, protocol.TASK_VQA}
    layout = protocol.token_layout(tiny_tokenizer, 32)
    for e in ex:
        assert e.ids[e.n_prompt - 1] == layout.response_key_id and e.ids[-1] == layout.end_id
    draw = next(e for e in ex if e.task == protocol.TASK_DRAW)
    body = draw.ids[draw.n_prompt :]
    assert body[0] == layout.image_open_id and body[257] == layout.image_close_id
    assert layout.unshift(body[1:257]) == codes[0]
    ids, mask, labels = data.collate(ex[:3], pad_id=tiny_tokenizer.pad_token_id)
    for i, e in enumerate(ex[:3]):
        assert (labels[i, : e.n_prompt] == -100).all()
        assert labels[i, e.n_prompt : len(e.ids)].tolist() == e.ids[e.n_prompt :]
        assert (labels[i, len(e.ids) :] == -100).all() and mask[i].sum() == len(e.ids)


def test_length_batches_cover_examples_once():
    ex = [data.Example(ids=[1] * n, n_prompt=1, task="x") for n in range(5, 69)]
    batches = data.length_batches(ex, 8, np.random.default_rng(0))
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat)) == 64 and all(len(b) == 8 for b in batches)


def test_the_shipped_demo_model_is_the_default_and_draws(monkeypatch):
    for var in ("LLMCXR_LLM", "LLMCXR_VQGAN_CONFIG", "LLMCXR_VQGAN_CKPT"):
        monkeypatch.delenv(var, raising=False)
    loc = resolve_location()
    if loc != DEMO_MODEL:
        pytest.skip("official weights are installed in weights/official; the default is not the demo model")
    from llmcxr_app.studio.facade import Studio

    studio = Studio.from_settings(
        Settings(model=DEMO_MODEL, runtime=RuntimeConfig(device="cpu", fast_path=False, warmup=False))
    )
    assert studio.info.is_demo and studio.info.grid == 16
    result = Studio.finish(studio.draw("Large left pleural effusion.", sampling=SamplingConfig(seed=3)))
    assert len(result.codes) == 256 and all(0 <= c < studio.info.codebook_size for c in result.codes)
    assert result.image.size == (studio.info.resolution, studio.info.resolution)
    # Its config declares the guidance the recipe's last stage writes: a default drawing is guided.
    assert studio.info.draw_guidance == recipe.load("demo").stages[-1].config.draw_guidance == 2.0
    assert (  # a one-sided finding: each lung drawn from its own findings
        result.provenance["guided_away_from"] == "sides" and result.provenance["sampling"]["guidance"] == 2
    )


def test_a_round_writes_its_draw_guidance_and_a_later_round_resets_it(smoke_run, tmp_path):
    from transformers import AutoTokenizer, GPTNeoXForCausalLM

    out, _ = smoke_run
    llm, tokenizer = (
        GPTNeoXForCausalLM.from_pretrained(out / "llm"),
        AutoTokenizer.from_pretrained(out / "llm"),
    )
    assert DRAW_GUIDANCE_KEY not in json.loads((out / "llm" / "config.json").read_text())  # 1: not written
    shutil.copytree(out / "vqgan", tmp_path / "vqgan")  # a round's folder holds both
    codebook = PRESETS["tiny"].vqgan.n_embed
    save_llm(llm, tokenizer, tmp_path, codebook, declared(replace(PRESETS["tiny"], draw_guidance=2.5)))
    assert json.loads((tmp_path / "llm" / "config.json").read_text())[DRAW_GUIDANCE_KEY] == 2.5
    again = GPTNeoXForCausalLM.from_pretrained(tmp_path / "llm")  # a further round starts from it
    save_llm(again, tokenizer, tmp_path, codebook, declared(PRESETS["tiny"]))
    assert DRAW_GUIDANCE_KEY not in json.loads((tmp_path / "llm" / "config.json").read_text())


def test_a_further_round_with_the_attribute_contrast_trains_on_pairs(smoke_run, tmp_path, capsys):
    out, _ = smoke_run
    for part in ("vqgan", "llm"):
        shutil.copytree(out / part, tmp_path / part)
    (tmp_path / "training.json").write_text((out / "training.json").read_text())
    cfg = replace(PRESETS["tiny"], n_phantoms=8, threads=1, side_contrast=1.0, contrast_pairs=2)
    record = run(cfg, tmp_path, reuse_vqgan=True, continue_llm=True)
    said = capsys.readouterr().out
    n_pairs = int(said.split(" contrast pairs")[0].rsplit("] ", 1)[1])
    findings = [data.make_phantom(seed, size=16).findings for seed in range(8)]
    lateral = [f for f in findings if f.swapped() != f]
    assert n_pairs == len(lateral) >= 2
    assert "contrast margin" in said and np.isfinite(record["contrast_margin_last50"])
    assert record["config"]["side_contrast"] == 1.0
    assert "contrast_margin_last50" not in json.loads((out / "training.json").read_text())


def test_a_preference_round_trains_on_pairs_of_its_own_drawings(smoke_run, tmp_path, capsys):
    out, _ = smoke_run
    for part in ("vqgan", "llm"):
        shutil.copytree(out / part, tmp_path / part)
    (tmp_path / "training.json").write_text((out / "training.json").read_text())
    kw = {"side_contrast": 1.0, "contrast_pairs": 1, "contrast_beta": 0.1, "critic_steps": 150}
    cfg = replace(
        PRESETS["tiny"], n_phantoms=8, threads=1, preference_prompts=4, preference_candidates=4, **kw
    )
    record = run(cfg, tmp_path, reuse_vqgan=True, continue_llm=True)
    said = record["preference"]
    findings = [data.make_phantom(seed, size=16).findings for seed in range(8)]
    placeable = [f for f in findings if f.swapped() != f]
    assert said["prompts"] == min(4, len(placeable)) and said["candidates"] == 4 * said["prompts"]
    assert 1 <= said["pairs"] <= said["prompts"]
    assert said["agreement_worst_mean"] < said["agreement_best_mean"] <= 11
    assert said["critic"]["n_phantoms"] == 8 and said["critic"]["steps"] == 150  # the round's own phantoms
    assert "not the evaluation reader" in said["critic"]["role"]
    assert np.isfinite(record["contrast_margin_last50"]) and "preference: " in capsys.readouterr().out
    with pytest.raises(ValueError, match="continue_llm"):  # it draws with the model it continues
        run(cfg, tmp_path / "fresh")


def test_the_finding_weight_falls_on_the_cells_the_round_names():
    from llmcxr_app.demo.data.pairs import contrast_cells
    from llmcxr_app.demo.train.training import focus_of

    rendered = data.render_samples(range(6), 128)
    cfg = replace(PRESETS["demo"], finding_weight=8.0)
    assert focus_of(replace(cfg, finding_weight=1.0), rendered, 16) is None
    own = focus_of(cfg, rendered, 16)
    wider = focus_of(replace(cfg, focus_cells="contrast"), rendered, 16)
    assert own == [data.finding_cells(s, 16) for s in rendered]
    assert wider == [list(contrast_cells(s, 16)) for s in rendered]
    against = focus_of(replace(cfg, focus_cells="contrast", contrast_against="negative"), rendered, 16)
    assert against == [list(contrast_cells(s, 16, "negative")) for s in rendered]
    assert all(set(a) <= set(b) for a, b in zip(own, wider, strict=True)) and own != wider
    with pytest.raises(ValueError, match="focus_cells"):
        focus_of(replace(cfg, focus_cells="everywhere"), rendered, 16)
