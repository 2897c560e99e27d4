"""`python -m llmcxr_app.convert llava` on a tiny checkpoint written in the original LLaVA key layout.

The source is what LLaVA-Med's training code saves for a Mistral LLM: a MistralForCausalLM state dict
(model.embed_tokens, model.layers.*, model.norm, lm_head) plus model.mm_projector.{0,2}, a config.json with
model_type llava_mistral and the mm_* fields, and a CLIP vision tower in a directory of its own.
"""

from __future__ import annotations

import json

import pytest
import torch
from llava_tiny import vision_config
from PIL import Image
from safetensors.torch import save_file

from llmcxr_app.config import ModelLocation, SamplingConfig
from llmcxr_app.loading.checkpoint_io import WeightsError
from llmcxr_app.loading.convert import main
from llmcxr_app.loading.convert_llava import CHAT_TEMPLATES, map_keys
from llmcxr_app.loading.llava import load_llava
from llmcxr_app.studio.adapter import AdapterStudio

HIDDEN = 64  # llava_tiny's width (bitsandbytes' CPU packing needs 64)


@pytest.fixture(scope="module")
def original(tmp_path_factory, tiny_tokenizer):
    """(LLaVA-layout dir, CLIP dir, the parts as modules: mistral LM, projector, CLIP tower)."""
    from transformers import CLIPImageProcessor, CLIPVisionModel, MistralConfig, MistralForCausalLM

    root = tmp_path_factory.mktemp("original")
    src, clip = root / "llava-med-tiny", root / "clip-tiny"
    torch.manual_seed(1)
    text = MistralConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=tiny_tokenizer.eos_token_id,
        bos_token_id=tiny_tokenizer.eos_token_id,
    )
    lm = MistralForCausalLM(text).eval()
    vision = vision_config()
    tower = CLIPVisionModel(vision).eval()
    projector = torch.nn.Sequential(
        torch.nn.Linear(vision.hidden_size, HIDDEN), torch.nn.GELU(), torch.nn.Linear(HIDDEN, HIDDEN)
    )
    with torch.no_grad():
        for p in [*lm.parameters(), *tower.parameters(), *projector.parameters()]:
            p.add_(torch.randn_like(p) * 0.02)
    sd = dict(lm.state_dict())
    sd.update({f"model.mm_projector.{k}": v for k, v in projector.state_dict().items()})
    src.mkdir()
    save_file({k: v.contiguous() for k, v in sd.items()}, src / "model.safetensors")
    cfg = {
        **text.to_dict(),
        "model_type": "llava_mistral",
        "architectures": ["LlavaMistralForCausalLM"],
        "mm_vision_tower": "openai/clip-vit-large-patch14-336",
        "mm_projector_type": "mlp2x_gelu",
        "mm_hidden_size": vision.hidden_size,
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "image_aspect_ratio": "pad",
        "use_mm_proj": True,
        "tune_mm_mlp_adapter": False,
    }
    (src / "config.json").write_text(json.dumps(cfg))
    tiny_tokenizer.save_pretrained(src)
    tower.save_pretrained(clip)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        clip
    )
    return src, clip, lm, projector, tower


def test_key_mapping_names_every_hf_parameter():
    names = map_keys(
        {
            k: torch.zeros(1)
            for k in (
                "model.embed_tokens.weight",
                "model.layers.0.self_attn.q_proj.weight",
                "model.norm.weight",
                "lm_head.weight",
                "model.mm_projector.0.weight",
                "model.mm_projector.2.bias",
                "model.vision_tower.vision_tower.vision_model.post_layernorm.weight",
            )
        }
    )
    assert sorted(names) == sorted(
        [
            "model.language_model.embed_tokens.weight",
            "model.language_model.layers.0.self_attn.q_proj.weight",
            "model.language_model.norm.weight",
            "lm_head.weight",
            "model.multi_modal_projector.linear_1.weight",
            "model.multi_modal_projector.linear_2.bias",
            "model.vision_tower.post_layernorm.weight",
        ]
    )
    with pytest.raises(WeightsError, match="Unexpected key"):
        map_keys({"vision_tower.x": torch.zeros(1)})


def _direct_build(loaded, lm, projector, tower):
    """The same weights put into transformers' LlavaForConditionalGeneration module by module."""
    from transformers import LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration(loaded.model.config).eval()
    rows = lm.model.embed_tokens.weight.shape[0]
    with torch.no_grad():
        lm_sd = {k: v for k, v in lm.model.state_dict().items() if k != "embed_tokens.weight"}
        model.model.language_model.load_state_dict(lm_sd, strict=False)
        model.model.language_model.embed_tokens.weight[:rows] = lm.model.embed_tokens.weight
        model.lm_head.weight[:rows] = lm.lm_head.weight
        model.model.multi_modal_projector.linear_1.load_state_dict(projector[0].state_dict())
        model.model.multi_modal_projector.linear_2.load_state_dict(projector[2].state_dict())
        model.model.vision_tower.load_state_dict(tower.state_dict())
    return model, rows


def test_converted_checkpoint_serves_and_equals_a_direct_build(original, tmp_path, capsys):
    src, clip, lm, projector, tower = original
    dst = tmp_path / "llava-med-hf"
    assert main(["llava", str(src), str(clip), str(dst)]) == 0
    assert "MB" in capsys.readouterr().out
    cfg = json.loads((dst / "config.json").read_text())
    assert cfg["model_type"] == "llava" and cfg["text_config"]["model_type"] == "mistral"
    assert json.loads((dst / "processor_config.json").read_text())["image_processor"]["do_pad"] is True
    loaded = load_llava(dst, quantization="fp32", device="cpu")
    studio = AdapterStudio(loaded, ModelLocation(str(dst), "", "", name="converted"))
    greedy = SamplingConfig(temperature=0.0, max_new_tokens=4)
    assert (
        studio.finish(studio.describe(studio.prepare(Image.new("L", (40, 30), 99)), sampling=greedy)).text
        is not None
    )
    assert loaded.processor.chat_template == CHAT_TEMPLATES["mistral_instruct"]
    direct, rows = _direct_build(loaded, lm, projector, tower)
    prompt = loaded.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}],
        add_generation_prompt=True,
    )
    assert prompt.startswith("[INST] <image>\nDescribe. [/INST]")
    inputs = loaded.processor(
        images=Image.new("RGB", (40, 30), (90, 40, 10)), text=prompt, return_tensors="pt"
    )
    with torch.no_grad():
        a = loaded.model(**inputs).logits
        b = direct(**inputs).logits
    assert torch.equal(a[..., :rows], b[..., :rows])  # every row of the source vocabulary, bit for bit
    # The one appended row (<image>) is the mean of the source's LM-head rows; the backend masks it.
    head = loaded.model.lm_head.weight
    assert head.shape[0] == rows + 1 and torch.allclose(head[rows], lm.lm_head.weight.mean(0), atol=1e-6)
    # The text part is the source LLM itself: its logits over the original vocabulary, without an image.
    ids = inputs["input_ids"][:, :1]
    with torch.no_grad():
        assert torch.allclose(
            loaded.model(input_ids=ids).logits[..., :rows], lm(input_ids=ids).logits, atol=1e-5
        )


def test_refuses_what_the_format_cannot_hold(original, tmp_path, capsys):
    src, clip, *_ = original
    bad = tmp_path / "linear"
    bad.mkdir()
    cfg = json.loads((src / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "mm_projector_type": "linear"}))
    assert main(["llava", str(bad), str(clip), str(tmp_path / "out")]) == 2
    assert "Linear-GELU-Linear" in capsys.readouterr().err
    assert main(["llava", str(clip), str(clip), str(tmp_path / "out2")]) == 2  # a CLIP dir is no LLaVA
    assert "not an original-layout LLaVA checkpoint" in capsys.readouterr().err


def test_the_original_layout_is_refused_with_the_conversion_command(original):
    from llmcxr_app.config import ModelLocation, RuntimeConfig, Settings
    from llmcxr_app.studio.build import load_studio

    src = original[0]
    with pytest.raises(ValueError, match="llava_mistral.*convert llava"):
        load_studio(Settings(model=ModelLocation(str(src), "", ""), runtime=RuntimeConfig(device="cpu")))
    with pytest.raises(WeightsError, match="original LLaVA layout.*convert llava"):
        load_llava(src, device="cpu")
