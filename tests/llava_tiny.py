"""Tiny random checkpoints in Hugging Face's LLaVA format, written through save_pretrained (never downloaded).

Two text families: GPT-NeoX (as the project's demo LLM) and Mistral (as LLaVA-Med v1.5), each with a tiny
CLIP vision tower, a CLIPImageProcessor, a tokenizer holding ``<image>`` and a LlavaProcessor with a chat
template in the style of the family's upstream conversation format.
"""

from __future__ import annotations

from pathlib import Path

import torch

IMAGE_TOKEN = "<image>"
IMAGE_SIDE = 32  # pixels the vision tower receives
PATCH = 8  # 4 x 4 patches + CLS; the "default" strategy drops CLS: 16 image tokens per image
# LLaVA-1.5 style (the demo's) and Mistral-instruct style (LLaVA-Med v1.5's conversation format).
TEMPLATES = {
    "gpt_neox": (
        "{% for m in messages %}{% if m['role'] == 'user' %}USER: {% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %} "
        "{% else %}ASSISTANT: {% for c in m['content'] %}{{ c['text'] }}{% endfor %}{{ eos_token }}"
        "{% endif %}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    ),
    "mistral": (
        "{% for m in messages %}{% if m['role'] == 'user' %}[INST] {% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %} [/INST]"
        "{% else %}{% for c in m['content'] %}{{ c['text'] }}{% endfor %}{{ eos_token }}{% endif %}"
        "{% endfor %}"
    ),
}


def vision_config():
    from transformers import CLIPVisionConfig

    # Widths of 64: bitsandbytes packs 4-bit weights for AVX512-BF16 CPUs at the first forward, in blocks
    # of 64 input features (a width of 32 fails there with a reshape error, in bitsandbytes).
    return CLIPVisionConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIDE,
        patch_size=PATCH,
        projection_dim=32,
    )


def text_config(family: str, vocab_size: int, eos_id: int):
    """A 2-layer text config of ``family`` ("gpt_neox" or "mistral") with ``vocab_size`` embedding rows."""
    from transformers import GPTNeoXConfig, MistralConfig

    common = dict(
        vocab_size=vocab_size,
        hidden_size=64,  # see vision_config
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=256,
        eos_token_id=eos_id,
        bos_token_id=eos_id,
    )
    if family == "gpt_neox":
        return GPTNeoXConfig(**common)
    return MistralConfig(**common, num_key_value_heads=2, sliding_window=None)


def tokenizer_with_image_token(base_tokenizer, out: Path):
    """A copy of ``base_tokenizer`` (saved and reloaded, so the original is untouched) plus ``<image>``."""
    from transformers import AutoTokenizer

    base_tokenizer.save_pretrained(out / "_base_tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(out / "_base_tokenizer")
    tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    return tokenizer


def processor_for(tokenizer, family: str):
    from transformers import CLIPImageProcessor, LlavaProcessor

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIDE}, crop_size={"height": IMAGE_SIDE, "width": IMAGE_SIDE}
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS
        chat_template=TEMPLATES[family],
    )


def llava_config(family: str, tokenizer, pad_rows: int = 0):
    """A LlavaConfig whose LM head has len(tokenizer) + ``pad_rows`` rows (padded heads exist upstream)."""
    from transformers import LlavaConfig

    eos = int(tokenizer.eos_token_id)
    text = text_config(family, len(tokenizer) + pad_rows, eos)
    n_image = (IMAGE_SIDE // PATCH) ** 2
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    return LlavaConfig(
        vision_config=vision_config(),
        text_config=text,
        image_token_index=image_id,
        image_seq_length=n_image,
    )


def write_tiny_llava(
    out: Path, base_tokenizer, family: str = "gpt_neox", *, pad_rows: int = 0, seed: int = 0
):
    """Write a random tiny LLaVA checkpoint with its processor to ``out``; returns the model (fp32, eval)."""
    from transformers import LlavaForConditionalGeneration

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer_with_image_token(base_tokenizer, out)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(llava_config(family, tokenizer, pad_rows)).eval()
    with torch.no_grad():  # default init leaves biases at 0 and norms at 1: make every weight count
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model.save_pretrained(out)
    processor_for(tokenizer, family).save_pretrained(out)
    return model
