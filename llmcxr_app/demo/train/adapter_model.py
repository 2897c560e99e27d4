"""The networks and files of the demo adapter model, in Hugging Face's LLaVA format.

A CLIPVisionModel (vision tower), LLaVA's two-layer projector and a GPT-NeoX LLM, assembled as
LlavaForConditionalGeneration; the tokenizer is the token demo's byte-level BPE plus one `<image>` token,
which LlavaProcessor expands into one id per image patch (64 at 128 px, patch 16). The prompt is the token
demo's Dolly format (protocol.format_prompt) with `<image>` as the input; the saved chat template renders
exactly that, so a server only calls the processor's apply_chat_template.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmcxr_app import protocol
from llmcxr_app.config import DEMO_LLM_DIR
from llmcxr_app.demo.train.adapter_recipe import VisionShape
from llmcxr_app.modeling.builders import LLMShape, make_llm

IMAGE_TOKEN = protocol.IMAGE_PLACEHOLDER  # "<image>": one added special token in the adapter's tokenizer
PIXEL_MEAN = 0.5  # the processor maps pixels in [0, 1] to [-1, 1] (as the token demo's VQ-GAN input)
PIXEL_STD = 0.5

# Renders one user message (text, optionally one image) as protocol.format_prompt does, an assistant
# message as the trained response ("{answer}\n\n### End"). String concatenation keeps whitespace exact.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{%- set ns = namespace(text='', image=false) -%}"
    "{%- if message['content'] is string -%}{%- set ns.text = message['content'] -%}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{%- set ns.image = true -%}"
    "{%- elif part['type'] == 'text' -%}{%- set ns.text = ns.text + part['text'] -%}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '" + protocol.INTRO_BLURB + "\\n\\n" + protocol.INSTRUCTION_KEY + "\\n' + ns.text + '\\n\\n' -}}"
    "{%- if ns.image -%}{{- '" + protocol.INPUT_KEY + "\\n" + IMAGE_TOKEN + "\\n\\n' -}}{%- endif -%}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- '" + protocol.RESPONSE_KEY + "\\n' + message['content'] + '\\n\\n" + protocol.END_KEY + "' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '" + protocol.RESPONSE_KEY + "\\n' -}}{%- endif -%}"
)


def base_tokenizer(source: Path = DEMO_LLM_DIR) -> Any:
    """The token demo's byte-level BPE tokenizer (1088 ids, LLM-CXR's special tokens), without image rows."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source)


def adapter_tokenizer(base: Any) -> Any:
    """A copy of `base` with `<image>` added as one special token (id len(base)), and "### End" as its
    end-of-sequence token: answers end there (as the token model's), and a server stops at the eos."""
    import copy

    tok = copy.deepcopy(base)
    tok.add_tokens([IMAGE_TOKEN], special_tokens=True)
    tok.eos_token = protocol.END_KEY
    if len(tok.encode(IMAGE_TOKEN, add_special_tokens=False)) != 1:
        raise ValueError("The adapter tokenizer does not hold '<image>' as one id.")
    return tok


def make_base_lm(tokenizer: Any, shape: LLMShape, seed: int) -> torch.nn.Module:
    """A random GPT-NeoX with one embedding row per tokenizer id (no image rows): the shared base LM."""
    return make_llm(len(tokenizer), 0, shape, seed=seed)


def vision_config(shape: VisionShape) -> Any:
    """CLIPVisionConfig of the vision tower."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_channels=3,
        image_size=shape.image_size,
        patch_size=shape.patch_size,
        projection_dim=shape.embed_dim,
    )


def n_image_tokens(shape: VisionShape) -> int:
    """Image ids per image in the LLM's input: one per patch (LLaVA's "default" drops the CLS token)."""
    return (shape.image_size // shape.patch_size) ** 2


def pixels_to_tensor(pixels: np.ndarray | list[np.ndarray]) -> torch.Tensor:
    """uint8 [R, R] grayscale (or a list) -> float [B, 3, R, R], normalised as the saved processor does."""
    arr = np.stack(pixels) if isinstance(pixels, list) else pixels[None]
    x = (torch.from_numpy(arr.astype(np.float32)) / 255 - PIXEL_MEAN) / PIXEL_STD
    return x[:, None].expand(-1, 3, -1, -1).contiguous()


def assemble(vision: torch.nn.Module, base_lm: torch.nn.Module, tokenizer: Any, shape: VisionShape) -> Any:
    """LlavaForConditionalGeneration from a trained vision tower and base LM (embeddings grown by `<image>`).

    The projector is LLaVA's (linear, GELU, linear) at its random init; the vision tower's last layer is read
    (vision_feature_layer -1: the layer the contrastive loss trained), CLS dropped.
    """
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    text_config = base_lm.config.to_dict()
    text_config["vocab_size"] = len(tokenizer)
    config = LlavaConfig(
        vision_config=vision.config.to_dict(),
        text_config=text_config,
        image_token_index=image_id,
        image_seq_length=n_image_tokens(shape),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
    )
    model = LlavaForConditionalGeneration(config)
    model.model.vision_tower.load_state_dict(vision.state_dict())
    _copy_lm(model, base_lm, len(tokenizer))
    return model


def _copy_lm(model: Any, base_lm: torch.nn.Module, n_rows: int) -> None:
    """Every GPT-NeoX tensor into the LLaVA model (body under model.language_model, head as lm_head), the
    embedding and head grown to n_rows (the new `<image>` row: the mean row). Raises on any tensor left over,
    so a renamed key cannot leave a random layer behind."""
    body = dict(model.model.language_model.named_parameters())
    heads = {"embed_out.weight", "lm_head.weight"}  # the head's name differs between transformers versions
    with torch.no_grad():
        for name, tensor in base_lm.state_dict().items():
            if name in heads or name.endswith("embed_in.weight"):
                tensor = torch.cat([tensor, tensor.mean(0, keepdim=True).expand(n_rows - len(tensor), -1)])
            key = name.removeprefix("gpt_neox.")
            if name in heads:
                model.lm_head.weight.copy_(tensor)
            elif key in body:
                body.pop(key).copy_(tensor)
            elif "rotary" not in key and "masked_bias" not in key and not key.endswith(".bias_mask"):
                raise KeyError(f"base LM tensor {name!r} has no place in the LLaVA model")
    if body:
        raise KeyError(f"LLaVA language-model parameters not copied from the base LM: {sorted(body)[:5]}")


def make_processor(tokenizer: Any, shape: VisionShape) -> Any:
    """LlavaProcessor: CLIPImageProcessor (grayscale given as RGB, resize + centre crop, [-1, 1]), the
    tokenizer, one `<image>` -> n_image_tokens ids, and the Dolly-format chat template."""
    from transformers import CLIPImageProcessor, LlavaProcessor

    images = CLIPImageProcessor(
        size={"shortest_edge": shape.image_size},
        crop_size={"height": shape.image_size, "width": shape.image_size},
        image_mean=[PIXEL_MEAN] * 3,
        image_std=[PIXEL_STD] * 3,
        do_convert_rgb=True,
    )
    return LlavaProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        patch_size=shape.patch_size,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,
    )


def user_message(text: str, with_image: bool) -> list[dict]:
    """The chat messages a server sends for one request (one image, one text)."""
    content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": text}]
    return [{"role": "user", "content": content}]
