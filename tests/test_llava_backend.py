"""The adapter backend (studio/adapter.py, loading/llava.py) on tiny random LLaVA checkpoints.

Reference: transformers' own LlavaForConditionalGeneration.generate on the same processed input.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch
from llava_tiny import IMAGE_SIDE, IMAGE_TOKEN, write_tiny_llava
from PIL import Image

from llmcxr_app import protocol
from llmcxr_app.config import ModelLocation, RuntimeConfig, SamplingConfig, Settings
from llmcxr_app.engine.generation import GenerationCancelled
from llmcxr_app.loading.checkpoint_io import WeightsError
from llmcxr_app.loading.llava import load_llava
from llmcxr_app.studio import adapter as adapter_module
from llmcxr_app.studio.adapter import AdapterStudio
from llmcxr_app.studio.build import load_studio
from llmcxr_app.studio.types import StudioInputError

GREEDY = SamplingConfig(temperature=0.0, max_new_tokens=12)


@pytest.fixture(scope="module", params=["gpt_neox", "mistral"])
def llava_dir(request, tmp_path_factory, tiny_tokenizer):
    """One tiny checkpoint per text family; the Mistral one has 8 padded LM-head rows."""
    out = tmp_path_factory.mktemp(f"llava-{request.param}")
    write_tiny_llava(out, tiny_tokenizer, request.param, pad_rows=8 if request.param == "mistral" else 0)
    return out


def _studio(path, quantization: str = "fp32") -> AdapterStudio:
    location = ModelLocation(str(path), "", "", name="tiny llava")
    runtime = RuntimeConfig(device="cpu", quantization=quantization, warmup=False)
    studio = load_studio(Settings(model=location, runtime=runtime))
    assert isinstance(studio, AdapterStudio)
    return studio


@pytest.fixture(scope="module")
def studio(llava_dir):
    return _studio(llava_dir)


@pytest.fixture
def xray():
    """A non-square gray image with structure (so crop and resize matter)."""
    g = torch.linspace(0, 255, 48 * 40).reshape(48, 40).to(torch.uint8).numpy()
    g[10:20, 5:30] = 250
    return Image.fromarray(g, "L")


class Recorder:
    """Wraps the backend's real generate_text to record the ids it produces."""

    def __init__(self, monkeypatch):
        self.ids: list[int] = []
        real = adapter_module.generate_text

        def recording(*args, **kwargs):
            for piece in real(*args, **kwargs):
                self.ids.append(piece.token_id)
                yield piece

        monkeypatch.setattr(adapter_module, "generate_text", recording)


def _hf_generate(studio: AdapterStudio, text: str, image, max_new_tokens: int) -> list[int]:
    """transformers' own greedy generate on the processor's output, with the backend's two masks applied
    the documented way (suppress_tokens): the image placeholder and LM-head rows beyond the tokenizer."""
    proc, model = studio.processor, studio.llm.model
    content = [{"type": "text", "text": text}]
    if image is not None:
        content.insert(0, {"type": "image"})
    prompt = proc.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    kwargs = {"images": image.convert("RGB")} if image is not None else {}
    inputs = proc(text=prompt, return_tensors="pt", **kwargs)
    head = model.get_output_embeddings().weight.shape[0]
    banned = [studio.llm.image_token_id, *range(len(studio.llm.tokenizer), head)]
    out = model.generate(
        **inputs, max_new_tokens=max_new_tokens, do_sample=False, suppress_tokens=banned, pad_token_id=0
    )
    return out[0, inputs["input_ids"].shape[1] :].tolist()


def test_loads_as_adapter_family(studio, llava_dir):
    info = studio.info
    assert (info.family, info.can_draw, info.grid, info.codebook_size) == ("adapter", False, 0, 0)
    assert info.resolution == IMAGE_SIDE and info.context_length == 256
    assert info.quantization == "fp32" and info.device == "cpu"
    assert len(info.llm_hash) == 12 and info.weight_hash == info.llm_hash and info.vqgan_hash == ""


def test_describe_greedy_ids_equal_transformers_generate(studio, xray, monkeypatch):
    rec = Recorder(monkeypatch)
    result = studio.finish(studio.describe(studio.prepare(xray), sampling=GREEDY))
    hf = _hf_generate(studio, protocol.CXR_TO_REPORT_INSTRUCTIONS[0], xray, GREEDY.max_new_tokens)
    assert rec.ids == hf and len(hf) > 0
    answer = [i for i in hf if i != studio.llm.tokenizer.eos_token_id]
    assert result.text == studio.llm.tokenizer.decode(answer, skip_special_tokens=True).strip()
    assert result.task == protocol.TASK_REPORT and result.timings["tokens"] == len(answer)
    # The image's tokens are in the prompt: one per patch (CLS dropped by the "default" strategy).
    assert result.timings["prompt_tokens"] > (IMAGE_SIDE // 8) ** 2


def test_ask_with_and_without_image_equal_transformers_generate(studio, xray, monkeypatch):
    for image in (xray, None):
        rec = Recorder(monkeypatch)
        prepared = studio.prepare(image) if image is not None else None
        result = studio.finish(studio.ask("Is there a pleural effusion?", prepared, sampling=GREEDY))
        assert rec.ids == _hf_generate(studio, "Is there a pleural effusion?", image, GREEDY.max_new_tokens)
        assert result.task == (protocol.TASK_VQA if image is not None else protocol.TASK_INSTRUCT)


def test_the_image_changes_the_answer_logits(studio, xray):
    """The pixels reach the LLM: a different image gives different next-token logits."""
    from llmcxr_app.engine.steps import prefill

    ids, pv = studio._inputs("Describe.", studio.prepare(xray))
    _, pv2 = studio._inputs("Describe.", studio.prepare(Image.new("L", (40, 48), 30)))
    a, _ = prefill(studio.llm.model, torch.tensor([ids]), pixel_values=pv)
    b, _ = prefill(studio.llm.model, torch.tensor([ids]), pixel_values=pv2)
    assert not torch.allclose(a, b)


def test_streaming_ends_with_the_final_text(studio, xray):
    sampling = SamplingConfig(temperature=0.9, top_p=0.95, max_new_tokens=16, seed=3)
    updates = list(studio.describe(studio.prepare(xray), sampling=sampling))
    result = updates[-1].result
    assert result is not None and all(u.result is None for u in updates[:-1])
    texts = [u.text for u in updates[:-1]]
    assert all(result.text.startswith(t) for t in texts)  # each update extends the last
    assert texts == sorted(texts, key=len)


def test_seeded_sampling_is_reproducible(studio, xray):
    prepared = studio.prepare(xray)
    s = SamplingConfig(temperature=1.5, top_p=1.0, top_k=0, max_new_tokens=16, seed=11)
    a = studio.finish(studio.ask("Any effusion?", prepared, sampling=s))
    b = studio.finish(studio.ask("Any effusion?", prepared, sampling=s))
    assert a.text == b.text and a.provenance["seed"] == 11
    texts = {
        studio.finish(studio.ask("Any effusion?", prepared, sampling=replace(s, seed=k))).text
        for k in range(4)
    }
    assert len(texts) > 1  # the seed matters at this temperature


def test_provenance_names_the_family_and_no_user_text(studio, xray):
    result = studio.finish(studio.ask("Secret patient Jane Roe?", studio.prepare(xray), sampling=GREEDY))
    p = result.provenance
    assert p["family"] == "adapter" and p["model"] == "tiny llava" and p["llm_hash"] == studio.info.llm_hash
    assert p["quantization"] == "fp32" and p["device"] == "cpu" and p["task"] == protocol.TASK_VQA
    assert p["sampling"]["temperature"] == 0.0 and p["seed"] is not None and p["timestamp"]
    assert "Jane" not in repr(p)
    assert set(result.timings) >= {"queue_s", "prompt_s", "first_token_s", "total_s", "tokens"}


def test_cancel_stops_and_frees_the_model(studio, xray, monkeypatch):
    rec = Recorder(monkeypatch)
    cancel = threading.Event()
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=64)
    stream = studio.describe(studio.prepare(xray), sampling=sampling, cancel=cancel)
    with pytest.raises(GenerationCancelled):
        for _ in stream:
            cancel.set()  # after the first streamed update
    assert 1 <= len(rec.ids) < 64
    waiting = threading.Event()
    waiting.set()  # a request cancelled before it runs leaves without touching the model
    with pytest.raises(GenerationCancelled):
        list(studio.ask("Again?", None, sampling=GREEDY, cancel=waiting))
    assert studio.finish(studio.ask("Again?", None, sampling=GREEDY)).timings["tokens"] >= 1  # lock freed


def test_draw_is_refused_with_the_reason(studio):
    with pytest.raises(StudioInputError, match="cannot draw.*adapter model.*--weights demo"):
        studio.draw("Right pleural effusion.")


def test_bad_input(studio, xray):
    with pytest.raises(StudioInputError, match="needs a chest X-ray"):
        studio.describe(None)
    with pytest.raises(StudioInputError, match="question is empty"):
        studio.ask("  ", None)
    with pytest.raises(StudioInputError, match="placeholder"):
        studio.ask(f"What is {IMAGE_TOKEN}?", studio.prepare(xray))
    with pytest.raises(StudioInputError, match="too long"):
        studio.ask("effusion " * 400, None)


def test_prepare_shows_what_the_tower_sees(studio, xray):
    prepared = studio.prepare(xray)
    assert prepared.codes == [] and prepared.model_input.size == (IMAGE_SIDE, IMAGE_SIDE)
    assert prepared.reconstruction is prepared.model_input
    # 40 x 48 resized to 32 x 38, centre crop of 32 rows from row 3: in original pixels rows 3.79 to 44.2.
    left, top, right, bottom = prepared.crop_box
    assert (
        (left, right) == (0, 40)
        and top == pytest.approx(3 * 48 / 38)
        and bottom - top == pytest.approx(32 * 48 / 38)
    )
    # The crop of the original, resized, is the tower's input (up to resampling differences).
    crop = xray.convert("RGB").crop(prepared.crop_box).resize((IMAGE_SIDE, IMAGE_SIDE), Image.BICUBIC)
    diff = np.asarray(crop, dtype=np.float32) - np.asarray(prepared.model_input, dtype=np.float32)
    assert np.abs(diff).mean() < 12


def test_dispatch_reads_the_config_not_the_path(llava_dir, tmp_path):
    import shutil

    disguised = tmp_path / "llmcxr_mimic-cxr-256-txvloss-medvqa-stage1_2"  # the token model's folder name
    shutil.copytree(llava_dir, disguised)
    assert _studio(disguised).info.family == "adapter"


def test_missing_pieces_raise_weights_error(llava_dir, tmp_path):
    import json
    import shutil

    def broken(name, change):
        d = tmp_path / name
        shutil.copytree(llava_dir, d)
        change(d)
        return d

    no_weights = broken("w", lambda d: (d / "model.safetensors").unlink())
    with pytest.raises(WeightsError, match="holds no weights"):
        load_llava(no_weights, device="cpu")
    no_template = broken("t", lambda d: (d / "chat_template.jinja").unlink())
    with pytest.raises(WeightsError, match="no chat template"):
        load_llava(no_template, device="cpu")

    def other_token(d):
        cfg = json.loads((d / "config.json").read_text())
        cfg["image_token_index"] = 5
        (d / "config.json").write_text(json.dumps(cfg))

    with pytest.raises(WeightsError, match="no image token"):
        load_llava(broken("i", other_token), device="cpu")
    no_proc = broken("p", lambda d: (d / "processor_config.json").unlink())
    with pytest.raises(WeightsError, match="processor_config"):
        load_llava(no_proc, device="cpu")


def test_nf4_on_cpu_uses_4bit_layers_and_matches_its_own_generate(llava_dir, xray, monkeypatch):
    bnb = pytest.importorskip("bitsandbytes")
    with pytest.warns(UserWarning, match="slower than fp32"):
        studio = _studio(llava_dir, quantization="nf4")
    assert studio.info.quantization == "nf4"
    model = studio.llm.model
    lm = [
        m for n, m in model.named_modules() if "language_model.layers" in n and isinstance(m, torch.nn.Linear)
    ]
    tower = [m for n, m in model.named_modules() if "vision_tower" in n and isinstance(m, torch.nn.Linear)]
    projector = [
        m for n, m in model.named_modules() if "multi_modal_projector" in n and isinstance(m, torch.nn.Linear)
    ]
    assert lm and all(isinstance(m, bnb.nn.Linear4bit) for m in lm)
    assert all(isinstance(m, bnb.nn.Linear4bit) for m in projector)  # quantized, as upstream's builder does
    assert tower and not any(isinstance(m, bnb.nn.Linear4bit) for m in tower)  # kept out of 4-bit
    assert not isinstance(model.lm_head, bnb.nn.Linear4bit)
    rec = Recorder(monkeypatch)
    studio.finish(studio.describe(studio.prepare(xray), sampling=GREEDY))
    assert rec.ids == _hf_generate(
        studio, protocol.CXR_TO_REPORT_INSTRUCTIONS[0], xray, GREEDY.max_new_tokens
    )


def test_cli_describe_json_and_draw_refusal(llava_dir, xray, tmp_path):
    from test_cli import cli

    image = tmp_path / "cxr.png"
    xray.save(image)
    flags = ["--llm", str(llava_dir), "--device", "cpu", "--quantization", "fp32"]
    done = cli("describe", str(image), "--json", "--temperature", "0", "--max-new-tokens", "6", *flags)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["task"] == "report" and isinstance(payload["text"], str)
    assert payload["provenance"]["family"] == "adapter" and payload["input_codes"] == []
    assert payload["crop_box"][2] == 40 and payload["timings"]["tokens"] <= 6
    refused = cli("draw", "Right pleural effusion.", "--json", *flags)
    assert refused.returncode == 2 and "cannot draw" in refused.stderr and refused.stdout == ""


def test_a_missing_adapter_directory_is_named(tmp_path):
    location = ModelLocation(str(tmp_path / "demo-adapter"), "", "", name="missing")
    with pytest.raises(WeightsError, match="Model directory not found.*demo-adapter"):
        load_studio(Settings(model=location, runtime=RuntimeConfig(device="cpu", warmup=False)))


def test_images_prepared_by_another_model_are_processed_again(studio, xray, tiny_location):
    """Compare mode: one upload, two models. A token model's PreparedImage (VQ-GAN crop, codes) and an
    adapter image made with other processor settings both reach this model as its own processor makes them."""
    from llmcxr_app.studio.facade import Studio

    png = xray.convert("RGB")
    own = studio.prepare(png)
    token = Studio.from_settings(
        Settings(model=tiny_location, runtime=RuntimeConfig(device="cpu", warmup=False))
    )
    foreign = token.prepare(png)
    assert foreign.codes and not isinstance(foreign, type(own))
    assert torch.equal(studio._pixels(foreign), studio.prepare(foreign.model_input).pixel_values)
    other = replace(own, processing="other", pixel_values=torch.zeros_like(own.pixel_values))
    assert torch.equal(studio._pixels(other), own.pixel_values)  # re-processed from its model input view
    assert studio._pixels(own) is own.pixel_values


def test_background_warm_up_opens_the_gate(llava_dir):
    location = ModelLocation(str(llava_dir), "", "", name="tiny llava")
    runtime = RuntimeConfig(device="cpu", quantization="fp32", warmup=True)
    studio = load_studio(Settings(model=location, runtime=runtime), background_warm_up=True)
    assert studio.ready.wait(60) and studio._gate.thread is not None
    assert studio.finish(studio.ask("Hello?", None, sampling=GREEDY)).text is not None


def test_bf16_loads_and_answers(llava_dir, xray):
    studio = _studio(llava_dir, quantization="bf16")
    assert studio.info.quantization == "bf16" and studio.llm.model.dtype == torch.bfloat16
    result = studio.finish(studio.describe(studio.prepare(xray), sampling=GREEDY))
    assert result.provenance["quantization"] == "bf16" and result.timings["tokens"] >= 1
