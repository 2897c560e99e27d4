"""Original-LLaVA-layout checkpoint (+ its CLIP vision tower) -> the Hugging Face LLaVA format we serve.

    python -m llmcxr_app.convert llava SRC VISION DST [--chat-template mistral_instruct|vicuna_v1]

SRC is a checkpoint as the LLaVA / LLaVA-Med training code saves it: one causal-LM directory whose
config.json (model_type llava, llava_llama or llava_mistral) carries the mm_* fields and names the vision
tower (mm_vision_tower) instead of holding it, with keys model.embed_tokens / model.layers.* / model.norm /
lm_head of the LLM and model.mm_projector.{0,2} of the two-layer GELU projector. VISION is the CLIP
directory that name refers to (config, weights, preprocessor_config.json). The output holds config.json
(model_type llava), safetensors, the tokenizer with an ``<image>`` token added, the image processor (padded to
a square with the mean colour when the source says image_aspect_ratio "pad", as LLaVA does) and a chat
template of the conversation format the checkpoint was trained with. Only key names change; no weight is
altered except the one embedding row appended for ``<image>`` (its input row is never read: the image
features replace it; its output row is masked by the backend).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from llmcxr_app.loading.checkpoint_io import WeightsError, read_state_dict
from llmcxr_app.loading.files import llm_weight_files

ORIGINAL_TYPES = {"llava": "llama", "llava_llama": "llama", "llava_mistral": "mistral"}
IMAGE_TOKEN = "<image>"
# The conversation formats of upstream's conversation.py (LLaVA-Med: mistral_instruct for v1.5 Mistral,
# vicuna_v1 for the Llama/Vicuna ones), as chat templates: the image goes first in the user's first turn.
_USER = (
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
)
_ANSWER = "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
CHAT_TEMPLATES = {
    "mistral_instruct": (
        "{% for m in messages %}{% if m['role'] == 'user' %}[INST] " + _USER + " [/INST]"
        "{% else %} " + _ANSWER + " </s>{% endif %}{% endfor %}"
    ),
    "vicuna_v1": (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
        "helpful, detailed, and polite answers to the user's questions."
        "{% for m in messages %}{% if m['role'] == 'user' %} USER: "
        + _USER
        + "{% else %} ASSISTANT: "
        + _ANSWER
        + "</s>{% endif %}{% endfor %}{% if add_generation_prompt %} ASSISTANT:{% endif %}"
    ),
}
DEFAULT_TEMPLATE = {"mistral": "mistral_instruct", "llama": "vicuna_v1"}


def read_original_config(src: Path) -> dict[str, Any]:
    """config.json of an original-layout LLaVA checkpoint, checked to be convertible (WeightsError if not)."""
    try:
        cfg = json.loads((src / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{src}: cannot read config.json ({exc}).") from exc
    kind = cfg.get("model_type")
    if kind not in ORIGINAL_TYPES or "mm_vision_tower" not in cfg or "text_config" in cfg:
        raise WeightsError(
            f"{src} is not an original-layout LLaVA checkpoint (model_type {kind!r}; expected one of "
            f"{sorted(ORIGINAL_TYPES)} with mm_vision_tower and no text_config)."
        )
    projector = cfg.get("mm_projector_type", "linear")
    if projector != "mlp2x_gelu":
        raise WeightsError(
            f"{src}: projector {projector!r}; the Hugging Face LLaVA model has exactly one projector shape, "
            "Linear-GELU-Linear (mlp2x_gelu), so this checkpoint cannot be expressed in it."
        )
    if cfg.get("mm_use_im_start_end") or cfg.get("mm_use_im_patch_token"):
        raise WeightsError(
            f"{src} was trained with image start/end or patch tokens (mm_use_im_start_end / "
            "mm_use_im_patch_token); this converter handles only the plain <image> placeholder."
        )
    if cfg.get("mm_vision_select_feature", "patch") not in ("patch", "cls_patch"):
        raise WeightsError(f"{src}: unknown mm_vision_select_feature {cfg['mm_vision_select_feature']!r}.")
    return cfg


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a model directory (single file or shards), on CPU."""
    sd: dict[str, torch.Tensor] = {}
    for file in llm_weight_files(folder):
        if not file.name.endswith(".index.json"):
            sd.update(read_state_dict(file))
    return sd


def map_keys(original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original LLaVA key names -> transformers' LlavaForConditionalGeneration names (tensors unchanged)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in original.items():
        if key.startswith("model.mm_projector."):
            index, rest = key[len("model.mm_projector.") :].split(".", 1)
            layer = {"0": "linear_1", "2": "linear_2"}.get(index)
            if layer is None:
                raise WeightsError(f"Unexpected projector key {key} (expected mm_projector.0 and .2).")
            out[f"model.multi_modal_projector.{layer}.{rest}"] = value
        elif key.startswith("model.vision_tower.vision_tower."):  # a tower saved with the checkpoint
            rest = key[len("model.vision_tower.vision_tower.") :]
            out["model.vision_tower." + rest.removeprefix("vision_model.")] = value
        elif key.startswith("model."):
            out["model.language_model." + key[len("model.") :]] = value
        elif key == "lm_head.weight":
            out[key] = value
        else:
            raise WeightsError(f"Unexpected key {key} in an original-layout LLaVA checkpoint.")
    return out


def _vision(vision: Path) -> tuple[Any, dict[str, torch.Tensor], Any]:
    """(CLIPVisionConfig, the tower's tensors under the LLaVA model's names, the image processor).

    The tower is read by transformers itself (CLIPVisionModel, from a CLIPModel or a CLIPVisionModel
    directory), so whichever key layout its files use, the names are the ones the LLaVA model holds.
    """
    from transformers import AutoImageProcessor, CLIPVisionModel

    try:
        tower = CLIPVisionModel.from_pretrained(vision, dtype=torch.float32)
        processor = AutoImageProcessor.from_pretrained(vision)
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{vision}: not a CLIP model directory with its image processor ({exc}).") from exc
    sd = {"model.vision_tower." + k: v for k, v in tower.state_dict().items()}
    return tower.config, sd, processor


def _text_config(cfg: dict[str, Any], vocab_size: int) -> Any:
    """The LLM's own config (Llama or Mistral) from the fields of the combined one."""
    from transformers import CONFIG_MAPPING

    cls = CONFIG_MAPPING[ORIGINAL_TYPES[cfg["model_type"]]]
    known = set(cls().to_dict())
    fields = {k: v for k, v in cfg.items() if k in known and k not in ("model_type", "architectures")}
    return cls(**{**fields, "vocab_size": vocab_size})


def _add_image_token(tokenizer: Any, sd: dict[str, torch.Tensor]) -> int:
    """Add ``<image>`` to the tokenizer and, where needed, one embedding and LM-head row (their means)."""
    tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    for key in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        rows = sd[key]
        if rows.shape[0] < len(tokenizer):
            extra = rows.float().mean(0, keepdim=True).to(rows.dtype)
            extra = extra.expand(len(tokenizer) - rows.shape[0], -1)
            sd[key] = torch.cat([rows, extra])
    return int(tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))


def _processor(image_processor: Any, tokenizer: Any, cfg: dict, vision_config: Any, template: str) -> Any:
    from transformers import LlavaImageProcessor, LlavaProcessor

    if cfg.get("image_aspect_ratio") == "pad":  # LLaVA's expand2square: pad with the mean colour first
        settings = {k: v for k, v in image_processor.to_dict().items() if not k.startswith("image_processor")}
        image_processor = LlavaImageProcessor(**{**settings, "do_pad": True})
    strategy = "full" if cfg.get("mm_vision_select_feature") == "cls_patch" else "default"
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=vision_config.patch_size,
        vision_feature_select_strategy=strategy,
        num_additional_image_tokens=1,  # CLIP's CLS position
        chat_template=CHAT_TEMPLATES[template],
    )


def convert_llava(
    src: str | Path, vision: str | Path, dst: str | Path, *, chat_template: str | None = None
) -> list[Path]:
    """Write the Hugging Face LLaVA directory ``dst`` from ``src`` + ``vision``; returns the files written."""
    from transformers import AutoTokenizer, LlavaConfig

    src, vision, dst = Path(src), Path(vision), Path(dst)
    cfg = read_original_config(src)
    template = chat_template or DEFAULT_TEMPLATE[ORIGINAL_TYPES[cfg["model_type"]]]
    if template not in CHAT_TEMPLATES:
        raise ValueError(f"Unknown chat template {template!r}; choose one of {', '.join(CHAT_TEMPLATES)}.")
    if dst.exists() and any(dst.iterdir()):
        raise WeightsError(f"{dst} is not empty; choose an empty output folder.")
    vision_config, sd, image_processor = _vision(vision)
    sd.update(map_keys(read_weights(src)))  # a tower saved in the checkpoint wins over VISION's
    tokenizer = AutoTokenizer.from_pretrained(src)
    image_id = _add_image_token(tokenizer, sd)
    rows = sd["model.language_model.embed_tokens.weight"].shape[0]
    config = LlavaConfig(
        vision_config=vision_config.to_dict(),
        text_config=_text_config(cfg, rows).to_dict(),
        image_token_index=image_id,
        image_seq_length=(vision_config.image_size // vision_config.patch_size) ** 2,
        vision_feature_layer=int(cfg.get("mm_vision_select_layer", -2)),
        vision_feature_select_strategy=(
            "full" if cfg.get("mm_vision_select_feature") == "cls_patch" else "default"
        ),
        projector_hidden_act="gelu",
    )
    _save(config, sd, dst)
    _processor(image_processor, tokenizer, cfg, vision_config, template).save_pretrained(dst)
    return sorted(p for p in dst.iterdir() if p.is_file())


def _save(config: Any, sd: dict[str, torch.Tensor], dst: Path) -> None:
    """Put the tensors into transformers' model (no random init: built on the meta device) and save it
    the way transformers writes and reads it; every parameter must come from the sources."""
    from transformers import LlavaForConditionalGeneration

    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    try:
        model.load_state_dict(sd, strict=True, assign=True)
    except RuntimeError as exc:
        raise WeightsError(f"The sources do not fill the LLaVA model: {str(exc)[:400]}") from exc
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dst, max_shard_size="2GB")
