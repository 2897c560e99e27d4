"""Load an adapter-family checkpoint: a directory in Hugging Face's LLaVA format.

Layout (what `LlavaForConditionalGeneration.save_pretrained` plus `LlavaProcessor.save_pretrained` write):
config.json with model_type "llava" (vision_config, text_config, image_token_index), the weights, a
tokenizer holding the image token, processor_config.json (image processor, patch size) and a chat template
(chat_template.jinja / .json, or inside tokenizer_config.json). Every failure a user can cause raises
WeightsError naming the missing piece. Precision as for the token model (weights.py): auto = NF4 on CUDA,
fp32 on CPU; the vision tower stays out of 4-bit, as upstream LLaVA's own 4-bit serving loads it apart in
half precision (its builder quantizes the LLM and projector only).
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llmcxr_app.loading.checkpoint_io import WeightsError
from llmcxr_app.loading.files import README, llm_weight_files, weight_hash
from llmcxr_app.loading.hub import local_path
from llmcxr_app.loading.runtime import resolve_device, resolve_quantization
from llmcxr_app.loading.weights import _from_pretrained_kwargs, _prequantized

# Modules kept in full precision under 4-bit/8-bit: the vision tower (upstream LLaVA loads it apart, in
# half precision) and the LM head (transformers' own default skip, kept since naming a list replaces it).
UNQUANTIZED_MODULES = ("model.vision_tower", "lm_head")  # transformers matches names from the start
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


@dataclass(frozen=True)
class LoadedAdapter:
    """A LLaVA-format model ready to generate."""

    model: Any  # transformers LlavaForConditionalGeneration in eval mode, KV cache on
    processor: Any  # its LlavaProcessor: image processor, tokenizer, chat template
    tokenizer: Any  # processor.tokenizer
    image_token_id: int  # id of the image placeholder (config.image_token_index), expanded by the processor
    quantization: str  # "nf4", "int8", "bf16" or "fp32" (resolved, never "auto")
    device: torch.device  # where the weights live
    context_length: int  # tokens the LLM attends over (text_config.max_position_embeddings)
    resolution: int  # side in pixels of the image the vision tower receives (the processor's crop)
    llm_hash: str  # 12 hex chars, files.weight_hash of the weight files (LLM, projector, vision tower)
    weight_files: tuple[Path, ...] = ()  # the files llm_hash read


def read_llava_config(root: Path) -> dict[str, Any]:
    """config.json of a LLaVA directory, checked (raises WeightsError with the fix)."""
    if not root.is_dir():
        raise WeightsError(f"Model directory not found: {root}. See {README}.")
    file = root / "config.json"
    if not file.is_file():
        raise WeightsError(f"{root} holds no config.json, so it is not a model directory. See {README}.")
    try:
        hf_config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{file} is not valid JSON: {exc}.") from exc
    if "mm_vision_tower" in hf_config:  # the original LLaVA / LLaVA-Med layout, also "llava" in name
        raise WeightsError(
            f"{root} is in the original LLaVA layout (mm_vision_tower in config.json); convert it with "
            f"`python -m llmcxr_app.convert llava {root} CLIP_DIR OUT_DIR`. See {README}."
        )
    if hf_config.get("model_type") != "llava":
        raise WeightsError(
            f"{root} is a {hf_config.get('model_type')!r} model; the adapter backend serves Hugging Face "
            "LLaVA checkpoints (model_type 'llava'). An original-LLaVA-layout checkpoint (mm_projector keys, "
            f"mm_vision_tower in its config) converts with `python -m llmcxr_app.convert llava`. See {README}."
        )
    for part in ("vision_config", "text_config"):
        if not isinstance(hf_config.get(part), dict):
            raise WeightsError(f"{file} lacks its {part}: not a complete LLaVA config.")
    return hf_config


def _has_chat_template(root: Path, processor: Any) -> bool:
    if getattr(processor, "chat_template", None) or getattr(processor.tokenizer, "chat_template", None):
        return True
    return any((root / n).is_file() for n in CHAT_TEMPLATE_FILES)


def load_processor(root: Path, image_token_id: int) -> Any:
    """The LlavaProcessor, checked: processor config, image token = config.image_token_index, a chat template."""
    from transformers import AutoProcessor

    if not (root / "processor_config.json").is_file() and not (root / "preprocessor_config.json").is_file():
        raise WeightsError(
            f"{root} has no processor_config.json / preprocessor_config.json (the image processor); "
            "save the LlavaProcessor next to the model."
        )
    try:
        processor = AutoProcessor.from_pretrained(root)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise WeightsError(f"Cannot read the processor in {root}: {str(exc)[:200]}") from exc
    if not hasattr(processor, "image_processor") or not hasattr(processor, "tokenizer"):
        raise WeightsError(f"{root}: the processor is a {type(processor).__name__}, not a LLaVA processor.")
    token = getattr(processor, "image_token", "<image>")
    found = processor.tokenizer.convert_tokens_to_ids(token)
    if found is None or found == processor.tokenizer.unk_token_id or found != image_token_id:
        raise WeightsError(
            f"{root}: the tokenizer has no image token {token!r} with id {image_token_id} (config.json "
            f"image_token_index; the tokenizer gives {found}). The tokenizer and model do not belong together."
        )
    if getattr(processor, "patch_size", None) is None:
        raise WeightsError(f"{root}: processor_config.json lacks patch_size (needed to count image tokens).")
    if not _has_chat_template(root, processor):
        raise WeightsError(
            f"{root} has no chat template (chat_template.jinja): the backend cannot know how the model "
            "expects a conversation; add the template the model was trained with."
        )
    if not getattr(processor, "chat_template", None):  # a template kept with the tokenizer only
        processor.chat_template = processor.tokenizer.chat_template
    return processor


def crop_side(image_processor: Any) -> int:
    """Side in pixels of the square the vision tower receives (crop_size, else size)."""
    for attr in ("crop_size", "size"):
        size = getattr(image_processor, attr, None) or {}
        if isinstance(size, dict) and "height" in size:
            return int(size["height"])
        if hasattr(size, "height") and size.height:
            return int(size.height)
    size = getattr(image_processor, "size", None) or {}
    return int(size.get("shortest_edge", 0) if isinstance(size, dict) else getattr(size, "shortest_edge", 0))


def _precision(root: Path, hf_config: dict, quantization: str, dev: torch.device) -> tuple[str, dict]:
    """(resolved quantization, from_pretrained kwargs), the vision tower kept out of 4-bit/8-bit."""
    stored = _prequantized(root, hf_config)
    if stored is not None:
        if str(quantization).lower() not in ("auto", stored):
            raise WeightsError(f"{root} holds weights pre-quantized to {stored}; use --quantization auto.")
        return resolve_quantization(stored, dev), {"device_map": {"": str(dev)}, "dtype": "auto"}
    quant = resolve_quantization(quantization, dev)
    kwargs = _from_pretrained_kwargs(quant, dev)
    if "quantization_config" in kwargs:
        kwargs["quantization_config"].llm_int8_skip_modules = list(UNQUANTIZED_MODULES)
    return quant, kwargs


def _read_model(root: Path, kwargs: dict[str, Any]) -> Any:
    from transformers import LlavaForConditionalGeneration

    try:
        return LlavaForConditionalGeneration.from_pretrained(root, **kwargs)
    except torch.OutOfMemoryError:
        raise
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise WeightsError(
            f"Cannot read the LLaVA weights in {root} ({type(exc).__name__}: {str(exc)[:200]}). A truncated "
            "download is the usual cause: compare the file sizes with the release."
        ) from exc


def load_llava(
    path: str | os.PathLike, *, quantization: str = "auto", device: str | torch.device = "auto"
) -> LoadedAdapter:
    """Load a Hugging Face LLaVA directory (config, weights, processor, chat template), checked first.

    The checks that need no weights (config, weight files, processor, image token, chat template) run before
    the weights are read. ``llm_hash`` fingerprints every weight file (files.weight_hash).
    """
    root = local_path(path)
    hf_config = read_llava_config(root)
    try:
        files = llm_weight_files(root)
    except WeightsError:
        raise WeightsError(
            f"{root} holds no weights (model.safetensors or its index). See {README}."
        ) from None
    image_token_id = int(hf_config.get("image_token_index", hf_config.get("image_token_id", -1)))
    processor = load_processor(root, image_token_id)
    dev = resolve_device(device)
    quant, kwargs = _precision(root, hf_config, quantization, dev)
    model = _read_model(root, kwargs)
    tokenizer = processor.tokenizer
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.use_cache = True
    model.eval()
    text = hf_config["text_config"]
    return LoadedAdapter(
        model=model,
        processor=processor,
        tokenizer=tokenizer,
        image_token_id=image_token_id,
        quantization=quant,
        device=dev,
        context_length=int(text.get("max_position_embeddings", 2048)),
        resolution=crop_side(processor.image_processor),
        llm_hash=weight_hash(files),
        weight_files=tuple(files),
    )
