"""The demo adapter model's recipe (demo/train/adapter*.py): a tiny run builds a LLaVA directory that
transformers loads as is, whose chat template and processor give exactly the training prompt; the
contrastive pretraining learns; the shipped weights/demo-adapter keeps to the same format."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from llmcxr_app import protocol
from llmcxr_app.config import DEMO_ADAPTER_DIR
from llmcxr_app.demo.data import samples as data
from llmcxr_app.demo.data.phantoms import make_phantom
from llmcxr_app.demo.train import adapter, adapter_stages
from llmcxr_app.demo.train import adapter_data as ad
from llmcxr_app.demo.train import adapter_model as am
from llmcxr_app.demo.train.adapter_recipe import PRESETS, StageConfig
from llmcxr_app.imaging.images import to_model_input

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def tiny_adapter(tmp_path_factory) -> tuple[Path, Path, dict]:
    """(LLaVA directory, base LM directory, training record) of the tiny recipe."""
    root = tmp_path_factory.mktemp("adapter")
    record = adapter.run(TINY, root / "llava", root / "base", cache=None, log=lambda _m: None)
    return root / "llava", root / "base", record


def _load(folder: Path):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    return model, AutoProcessor.from_pretrained(folder)


def _check_format(folder: Path, image_size: int, n_image: int) -> None:
    """The saved directory as a server sees it: the rendered chat template is the training prompt, the
    processor's ids are the training ids, and the training forward equals LLaVA's own."""
    model, processor = _load(folder)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "llava"
    end = processor.tokenizer.convert_tokens_to_ids(protocol.END_KEY)
    assert (
        processor.tokenizer.eos_token_id == model.generation_config.eos_token_id == end
    )  # servers stop here
    question = "Is there a pleural effusion?"
    for with_image in (True, False):
        text = processor.apply_chat_template(
            am.user_message(question, with_image), add_generation_prompt=True, tokenize=False
        )
        assert text == protocol.format_prompt(question, am.IMAGE_TOKEN if with_image else None)
    image = to_model_input(make_phantom(1_000_003).image, image_size).image
    enc = processor(text=text_with_image(processor, question), images=image, return_tensors="pt")
    assert enc.input_ids[0].tolist() == ad.prompt_ids(processor.tokenizer, question, True, n_image)
    assert (enc.input_ids == model.config.image_token_index).sum() == n_image
    pixels = am.pixels_to_tensor(np.asarray(image.convert("L")))
    assert torch.allclose(enc.pixel_values, pixels)
    with torch.no_grad():
        ours = adapter_stages.llava_logits(model, enc.input_ids, enc.attention_mask, pixels, False)
        theirs = model(**enc).logits
    assert torch.allclose(ours, theirs, atol=1e-5)


def text_with_image(processor, question: str) -> str:
    return processor.apply_chat_template(
        am.user_message(question, True), add_generation_prompt=True, tokenize=False
    )


def test_tiny_recipe_builds_a_llava_directory_transformers_loads(tiny_adapter):
    folder, base, record = tiny_adapter
    _check_format(folder, TINY.vision.image_size, am.n_image_tokens(TINY.vision))
    assert record["stage2"]["vision_tower"] in ("frozen", "tuned")
    assert set(record["stage2"]["pilot"]) == {"frozen", "tuned"}
    assert json.loads((folder / "training.json").read_text())["recipe"]["seed"] == TINY.seed
    # The base LM is a plain GPT-NeoX with the token demo's tokenizer and no image rows.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = AutoModelForCausalLM.from_pretrained(base)
    tok = AutoTokenizer.from_pretrained(base)
    assert lm.config.model_type == "gpt_neox" and lm.config.vocab_size == len(tok) == len(am.base_tokenizer())


def test_greedy_generation_stops_at_end_key(tiny_adapter):
    folder, _, _ = tiny_adapter
    model, processor = _load(folder)
    end = processor.tokenizer.convert_tokens_to_ids(protocol.END_KEY)
    assert model.generation_config.eos_token_id == end
    enc = processor(
        text=text_with_image(processor, "Is there a pneumothorax?"),
        return_tensors="pt",
        images=make_phantom(1_000_004).image.convert("RGB"),
    )
    out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert out.shape[1] <= enc.input_ids.shape[1] + 5


def test_assembled_llava_keeps_the_base_lm():
    """Every base LM tensor lands in the LLaVA model: on text, its logits are the base LM's (plus `<image>`)."""
    from transformers import CLIPVisionModel

    tok = am.base_tokenizer()
    base = am.make_base_lm(tok, TINY.llm, seed=3).eval()
    model = am.assemble(
        CLIPVisionModel(am.vision_config(TINY.vision)), base, am.adapter_tokenizer(tok), TINY.vision
    )
    ids = torch.tensor([tok.encode("FINDINGS: The lungs are clear.")])
    with torch.no_grad():
        want, got = base(input_ids=ids).logits, model.eval()(input_ids=ids).logits
    assert got.shape[-1] == len(tok) + 1
    assert torch.allclose(got[..., : len(tok)], want, atol=1e-5)


def test_training_examples_mask_the_prompt_and_end_with_end_key():
    tok = am.adapter_tokenizer(am.base_tokenizer())
    ex = ad.make_example(tok, "Is the heart enlarged?", "No.", 0, protocol.TASK_VQA, 64)
    assert ex.ids[ex.n_prompt - 1] == tok.convert_tokens_to_ids(protocol.RESPONSE_KEY_NL)
    assert ex.ids[-1] == tok.convert_tokens_to_ids(protocol.END_KEY)
    assert ex.ids.count(tok.convert_tokens_to_ids(am.IMAGE_TOKEN)) == 64
    assert tok.decode(ex.ids[ex.n_prompt :], skip_special_tokens=False).startswith("No.")


def test_contrastive_loss_decreases_on_a_tiny_run():
    samples = data.render_samples(range(16), TINY.vision.image_size)
    tok = am.base_tokenizer()
    base = am.make_base_lm(tok, TINY.llm, seed=0)
    text = adapter_stages.text_embeddings(base, tok, [s.report for s in samples])
    from transformers import CLIPVisionModel

    torch.manual_seed(0)
    vision = CLIPVisionModel(am.vision_config(TINY.vision))
    cfg = StageConfig(steps=60, batch=16, lr=3e-3, warmup=1)
    groups = adapter_stages.finding_groups(samples)
    stats = adapter_stages.train_clip(vision, text, groups, samples, cfg, TINY.vision, 0, lambda _m: None)
    assert stats["loss_last10"] < 0.8 * stats["loss_first10"]


def test_clip_loss_treats_same_findings_as_positives():
    img, scale = torch.eye(3), torch.tensor(3.0)
    swapped = img[[1, 0, 2]]  # texts 0 and 1 exchanged
    shared, distinct = torch.tensor([0, 0, 2]), torch.tensor([0, 1, 2])
    # Phantoms 0 and 1 with the same findings: matching image 0 to text 1 costs what matching it to text 0 does.
    assert adapter_stages.clip_loss(img, swapped, shared, scale) == pytest.approx(
        adapter_stages.clip_loss(img, img, shared, scale), abs=1e-4
    )
    # With different findings the swap is an error.
    assert (
        adapter_stages.clip_loss(img, swapped, distinct, scale)
        > adapter_stages.clip_loss(img, img, distinct, scale) + 1
    )


@pytest.mark.skipif(not (DEMO_ADAPTER_DIR / "config.json").is_file(), reason="weights/demo-adapter not built")
def test_shipped_demo_adapter_is_small_and_in_format():
    size = sum(f.stat().st_size for f in DEMO_ADAPTER_DIR.iterdir() if f.is_file())
    assert size <= 30 * 2**20
    recipe = replace(PRESETS["demo-adapter"])
    _check_format(DEMO_ADAPTER_DIR, recipe.vision.image_size, am.n_image_tokens(recipe.vision))


# ------------------------------------------------------------------- one harness for both families

_EVAL_ARGS = ["--n", "2", "--qa-per-image", "1", "--max-new-tokens", "4", "--n-draw", "0", "--json"]


def _evaluate(weights: Path, capsys) -> dict:
    from llmcxr_app.demo.evaluate import evaluation as ev

    assert ev.main(["--weights", str(weights), *_EVAL_ARGS]) == 0
    return json.loads(capsys.readouterr().out)


def _check_text_scores(res: dict) -> None:
    m = res["metrics"]
    assert set(m) == {"report", "vqa"}  # --n-draw 0: no drawing, no reader
    assert m["report"]["n"] == 2 and m["vqa"]["n"] == 2 and 0 <= m["vqa"]["accuracy"] <= 1
    assert set(res["targets"]) == {"report_micro_f1", "vqa_accuracy"}
    assert res["seeds"]["report_vqa_reconstruction"] == [data.EVAL_SEED_START, data.EVAL_SEED_START + 2]


def test_harness_scores_the_token_family_without_drawing(tmp_path, tiny_location, capsys):
    import shutil

    from llmcxr_app.loading.weights import load_vqgan
    from llmcxr_app.loading.writers import save_vqgan

    shutil.copytree(tiny_location.llm, tmp_path / "llm")
    save_vqgan(load_vqgan(tiny_location.vqgan_config, tiny_location.vqgan_ckpt), tmp_path / "vqgan")
    res = _evaluate(tmp_path, capsys)
    _check_text_scores(res)
    assert res["model"]["family"] == "token"


def test_harness_scores_the_adapter_family(tiny_adapter, capsys):
    from llmcxr_app.studio.build import BACKENDS

    if "llava" not in BACKENDS:
        pytest.skip("the adapter backend (studio/adapter.py) is not merged yet")
    res = _evaluate(tiny_adapter[0], capsys)
    _check_text_scores(res)
    assert res["model"]["family"] == "adapter" and not res["model"]["can_draw"]
