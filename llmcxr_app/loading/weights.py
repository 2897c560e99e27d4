"""Find and load LLM-CXR checkpoints: the VQ-GAN (taming YAML + .ckpt/.safetensors) and the LLM (HF directory).

Every failure a user can cause (missing or misplaced files, a checkpoint from another model, a tokenizer that
does not match the LLM) raises WeightsError with the fix in its message. Official layout: weights/README.md.
Reading checkpoint files without running their pickled code: checkpoint_io.py.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from llmcxr_app import config as cfg
from llmcxr_app.loading.checkpoint_io import WeightsError, read_state_dict
from llmcxr_app.loading.files import README, llm_hint, llm_weight_files, model_hashes, rel, weight_hash
from llmcxr_app.loading.hub import local_path
from llmcxr_app.loading.runtime import resolve_device, resolve_quantization
from llmcxr_app.modeling.vqgan import VQGAN, VQGANConfig, autoencoder_prefixes
from llmcxr_app.protocol import TokenLayout, token_layout

# ---------------------------------------------------------------- VQ-GAN


def _hint_vqgan(path: Path, what: str, official: Path, flag: str, env: str) -> str:
    return (
        f"VQ-GAN {what} not found: {path}. The official one is {official.name}, inside "
        f"{official.parent.name}.tar from the LLM-CXR release; unpack it so the file is at {rel(official)} "
        f"(or pass {flag} / set {env}). See {README}."
    )


def infer_vqgan_config(state_dict: dict[str, torch.Tensor], resolution: int = 256) -> VQGANConfig:
    """Read a taming VQModel's architecture off its tensor shapes (for a .ckpt without its YAML).

    ``resolution`` (pixels) is not stored in the weights; it only decides which feature-map sizes the
    attention levels are reported at (official: 256 px, attention at 16).
    """
    sd = {k: v for k, v in state_dict.items() if not k.startswith("loss.")}
    try:
        n_embed, embed_dim = sd["quantize.embedding.weight"].shape
        ch, in_channels = sd["encoder.conv_in.weight"].shape[:2]
        z_channels = sd["decoder.conv_in.weight"].shape[1]
        levels = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.down."))
        ch_mult = tuple(sd[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] // ch for i in range(levels))
        num_res_blocks = 1 + max(int(k.split(".")[4]) for k in sd if k.startswith("encoder.down.0.block."))
        encoder_out = sd["encoder.conv_out.weight"].shape[0]
        out_ch = sd["decoder.conv_out.weight"].shape[0]
    except (KeyError, ValueError) as exc:
        raise WeightsError(
            f"Cannot read the VQ-GAN architecture from the checkpoint (missing {exc}); is it a taming VQModel?"
        ) from exc
    attn = tuple(resolution // 2**i for i in range(levels) if f"encoder.down.{i}.attn.0.q.weight" in sd)
    return VQGANConfig(
        embed_dim=int(embed_dim),
        n_embed=int(n_embed),
        ch=int(ch),
        ch_mult=ch_mult,
        num_res_blocks=num_res_blocks,
        attn_resolutions=attn,
        z_channels=int(z_channels),
        resolution=resolution,
        in_channels=int(in_channels),
        out_ch=int(out_ch),
        double_z=encoder_out == 2 * z_channels,
    )


def _read_vqgan_yaml(path: Path) -> VQGANConfig:
    try:
        doc = yaml.safe_load(path.read_text())
        params = doc["model"]["params"]
    except (yaml.YAMLError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise WeightsError(
            f"{path} is not a taming VQ-GAN YAML with model.params ({type(exc).__name__})."
        ) from exc
    try:
        return VQGANConfig.from_params(params)
    except ValueError as exc:
        raise WeightsError(f"{path}: {exc}") from exc


def _check_state_dict(path: Path, sd: dict[str, torch.Tensor], model: torch.nn.Module) -> None:
    """Strict key and shape check with a message naming the first offending keys."""
    want = model.state_dict()
    unexpected = [k for k in sd if k not in want]
    if unexpected:
        prefixes = sorted({k.split(".")[0] + "." for k in unexpected})
        raise WeightsError(
            f"{path} holds keys a VQ-GAN does not have, under {prefixes}; first: {unexpected[:5]}. Expected only "
            f"{list(autoencoder_prefixes())} (plus training-only 'loss.', dropped). A wrapper prefix such as "
            "'model.' or 'module.' must be stripped; other prefixes mean this is not a taming VQModel checkpoint."
        )
    missing = [k for k in want if k not in sd]
    if missing:
        raise WeightsError(
            f"{path} lacks {len(missing)} keys the config needs; first: {missing[:5]}. Does the YAML belong "
            "to this checkpoint?"
        )
    wrong = [
        f"{k}: checkpoint {list(sd[k].shape)} vs config {list(v.shape)}"
        for k, v in want.items()
        if sd[k].shape != v.shape
    ]
    if wrong:
        raise WeightsError(
            f"{path} does not match its config ({len(wrong)} shapes differ); first: {wrong[:5]}."
        )


def load_vqgan(
    config_path: str | os.PathLike | None,
    ckpt_path: str | os.PathLike,
    device: str | torch.device = "cpu",
    *,
    resolution: int = 256,
) -> VQGAN:
    """Load a VQ-GAN in eval mode, fp32, on ``device``.

    ``config_path``: taming YAML (``model.params``), or None to infer the architecture from the tensor shapes
    (then ``resolution`` in pixels, which the weights do not store). ``ckpt_path``: Lightning ``.ckpt`` or
    ``.safetensors``. ``loss.*`` keys are dropped; every other key must match the config exactly.
    """
    ckpt = local_path(ckpt_path)
    if not ckpt.is_file():
        raise WeightsError(
            _hint_vqgan(ckpt, "checkpoint", cfg.OFFICIAL_VQGAN_CKPT, "--vqgan-ckpt", cfg.ENV_VQGAN_CKPT)
        )
    if ckpt.name.endswith((".tar", ".tar.gz")):
        raise WeightsError(f"{ckpt} is the downloaded archive; unpack it and pass the .ckpt inside.")
    if ckpt.suffix in (".yaml", ".yml"):
        raise WeightsError(
            f"{ckpt} is a YAML file given as the checkpoint; pass the config first, then the .ckpt."
        )
    sd = {k: v for k, v in read_state_dict(ckpt).items() if not k.startswith("loss.")}
    if config_path in (None, ""):
        config = infer_vqgan_config(sd, resolution=resolution)
    else:
        path = local_path(config_path)
        if not path.is_file():
            raise WeightsError(
                _hint_vqgan(path, "config", cfg.OFFICIAL_VQGAN_CONFIG, "--vqgan-config", cfg.ENV_VQGAN_CONFIG)
            )
        config = _read_vqgan_yaml(path)
    with torch.device("meta"):  # no random init of 72 M parameters that are overwritten at once
        model = VQGAN(config)
    _check_state_dict(ckpt, sd, model)
    # clone: the checkpoint may be memory-mapped; the model must own its fp32 weights.
    sd = {k: v.to(torch.float32).clone() for k, v in sd.items()}
    model.load_state_dict(sd, strict=True, assign=True)
    return model.to(resolve_device(device)).eval()


# ---------------------------------------------------------------- LLM


@dataclass(frozen=True)
class LoadedLLM:
    """An LLM-CXR language model ready to generate."""

    model: Any  # transformers GPTNeoXForCausalLM in eval mode, KV cache on
    tokenizer: Any  # its tokenizer (pad = eos); image ids are NOT in it
    layout: TokenLayout  # protocol ids; layout.total_vocab == embedding rows
    quantization: str  # "nf4", "int8", "bf16" or "fp32" (resolved, never "auto")
    device: torch.device  # where the weights live
    weight_hash: str  # 12 hex chars, files.weight_hash (load_model: of the LLM and VQ-GAN files)
    context_length: int  # tokens the model attends over (config.max_position_embeddings)
    weight_files: tuple[Path, ...] = ()  # the files weight_hash read (files.llm_weight_files)
    llm_hash: str = ""  # files.weight_hash of weight_files alone ("" when not read from files)
    vqgan_hash: str = ""  # load_model: files.weight_hash of the VQ-GAN's checkpoint and config
    draw_prompt: str = "verbatim"  # what it draws from: the user's text or its reading (studio/reading.py)
    question_prompt: str = "verbatim"  # what it is asked: the user's question or the template one it reads as
    draw_guidance: float = 1.0  # its drawings' default guidance scale (DRAW_GUIDANCE_KEY; 1 = unguided)


DRAW_PROMPT_KEY = "llmcxr_draw_prompt"  # config.json key a checkpoint declares its drawing prompts with
QUESTION_PROMPT_KEY = "llmcxr_question_prompt"  # ... and its VQA questions with
PROMPT_STYLES = ("verbatim", "canonical")  # the values either may take (studio/reading.py explains both)
# config.json key with the guidance scale the checkpoint's drawings were measured best at (absent: 1, off)
DRAW_GUIDANCE_KEY = "llmcxr_draw_guidance"


def _prompt_style(root: Path, hf_config: dict[str, Any], key: str) -> str:
    """How the checkpoint learned its prompts (config.json ``key``; absent: from the text as written)."""
    value = hf_config.get(key, "verbatim")
    if value not in PROMPT_STYLES:
        raise WeightsError(
            f"{root}/config.json: {key} is {value!r}; this app knows {', '.join(PROMPT_STYLES)}."
        )
    return value


def _draw_guidance(root: Path, hf_config: dict[str, Any]) -> float:
    """The checkpoint's default guidance for drawings (config.json DRAW_GUIDANCE_KEY; absent: 1)."""
    value = hf_config.get(DRAW_GUIDANCE_KEY, 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1.0 <= value <= 5.0:
        raise WeightsError(
            f"{root}/config.json: {DRAW_GUIDANCE_KEY} is {value!r}; it must be a number in [1, 5]."
        )
    return float(value)


def _from_pretrained_kwargs(quantization: str, device: torch.device) -> dict[str, Any]:
    # Compute dtype of the quantized matmuls: bf16 on GPUs that have it (fp16 on older ones such as the
    # 1080 Ti upstream recommends), fp32 on CPU where bf16 is slow (see runtime.resolve_quantization).
    if device.type == "cuda":
        half = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        half = torch.float32
    kwargs: dict[str, Any] = {"device_map": {"": str(device)}}
    if quantization in ("nf4", "int8"):
        try:
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
        except ImportError as exc:
            raise WeightsError(
                f"{quantization} needs bitsandbytes (pip install bitsandbytes), or use bf16."
            ) from exc
        if quantization == "nf4":
            q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=half)
        else:
            q = BitsAndBytesConfig(load_in_8bit=True)
        return {**kwargs, "quantization_config": q, "dtype": half}
    return {**kwargs, "dtype": torch.bfloat16 if quantization == "bf16" else torch.float32}


def _prequantized(root: Path, hf_config: dict[str, Any]) -> str | None:
    """ "nf4" or "int8" when config.json carries a bitsandbytes quantization_config, else None."""
    q = hf_config.get("quantization_config")
    if not q:
        return None
    if (
        q.get("quant_method") == "bitsandbytes"
        and q.get("load_in_4bit")
        and q.get("bnb_4bit_quant_type") == "nf4"
    ):
        return "nf4"
    if q.get("quant_method") == "bitsandbytes" and q.get("load_in_8bit"):
        return "int8"
    raise WeightsError(
        f"{root}/config.json holds a {q.get('quant_method')!r} quantization this app does not load; use the "
        "original weights, or convert them with `python -m llmcxr_app.convert llm --quantize nf4`."
    )


def _read_hf_config(root: Path) -> dict[str, Any]:
    """config.json of an LLM directory, checked to be a GPT-NeoX (raises WeightsError with the fix)."""
    if root.is_file() and root.name.endswith((".tar", ".tar.gz", ".zip")):
        raise WeightsError(f"{root} is the downloaded archive; unpack it and pass the directory inside.")
    if not root.is_dir():
        raise WeightsError(f"LLM directory not found: {root}. {llm_hint()}")
    config_file = root / "config.json"
    if not config_file.is_file():
        inner = [p.parent.name for p in root.glob("*/config.json")]
        nested = f" It has a subdirectory with one: pass {root / inner[0]}." if inner else ""
        raise WeightsError(
            f"{root} holds no config.json, so it is not a model directory.{nested} {llm_hint()}"
        )
    try:
        hf_config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{config_file} is not valid JSON: {exc}.") from exc
    model_type = hf_config.get("model_type")
    if model_type != "gpt_neox":
        raise WeightsError(
            f"{root} is a {model_type!r} model ({hf_config.get('architectures')}); LLM-CXR is a GPT-NeoX "
            f"(GPTNeoXForCausalLM, fine-tuned dolly-v2-3b). {llm_hint()}"
        )
    return hf_config


def _load_tokenizer(root: Path, hf_config: dict[str, Any], codebook_size: int) -> tuple[Any, TokenLayout]:
    """The tokenizer and its protocol layout, checked against the embedding rows config.json declares."""
    from transformers import AutoTokenizer

    if not any((root / n).is_file() for n in ("tokenizer.json", "vocab.json")):
        raise WeightsError(f"{root} has no tokenizer (tokenizer.json). {llm_hint()}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(root)
        layout = token_layout(tokenizer, codebook_size)
    except (OSError, ValueError) as exc:
        raise WeightsError(f"Tokenizer in {root}: {exc}") from exc
    rows = hf_config.get("vocab_size")
    if rows != layout.total_vocab:
        raise WeightsError(
            f"The LLM in {root} has {rows} embedding rows, but its tokenizer holds {len(tokenizer)} tokens and "
            f"the VQ-GAN codebook {codebook_size} entries: {len(tokenizer)} + {codebook_size} = "
            f"{layout.total_vocab}. The tokenizer, the LLM and the VQ-GAN must come from the same release "
            "(officially 50281 + 1024 = 51305)."
        )
    return tokenizer, layout


def _precision(
    root: Path, hf_config: dict[str, Any], quantization: str, dev: torch.device
) -> tuple[str, dict[str, Any]]:
    """(resolved quantization, from_pretrained kwargs); pre-quantized weights load only as what they are."""
    stored = _prequantized(root, hf_config)
    if stored is None:
        quant = resolve_quantization(quantization, dev)
        return quant, _from_pretrained_kwargs(quant, dev)
    # written by `python -m llmcxr_app.convert llm --quantize nf4`
    if str(quantization).lower() not in ("auto", stored):
        raise WeightsError(
            f"{root} holds weights pre-quantized to {stored}, which load only as {stored} (use "
            f"--quantization auto); for {quantization}, convert the original weights instead."
        )
    # dtype "auto" = as stored: transformers 5.23 casts only some tensors of a pre-quantized checkpoint
    # to another dtype, and the mixed model then fails in its first layer norm.
    return resolve_quantization(stored, dev), {"device_map": {"": str(dev)}, "dtype": "auto"}


def _read_model(root: Path, kwargs: dict[str, Any], layout: TokenLayout) -> Any:
    """The GPT-NeoX weights, with a message naming the usual cause when they cannot be read."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(root, **kwargs)
    except torch.OutOfMemoryError:
        raise
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise WeightsError(
            f"Cannot read the LLM weights in {root} ({type(exc).__name__}: {str(exc)[:200]}). A truncated "
            "download is the usual cause: compare the file sizes with the release."
        ) from exc
    rows = model.get_input_embeddings().weight.shape[0]
    if rows != layout.total_vocab:  # config.json and the weight file disagree
        raise WeightsError(
            f"{root}: the weights hold {rows} embedding rows, config.json {layout.total_vocab}."
        )
    return model


def load_llm(
    path: str | os.PathLike,
    *,
    quantization: str = "auto",
    device: str | torch.device = "auto",
    codebook_size: int,
) -> LoadedLLM:
    """Load an LLM-CXR LLM from a Hugging Face directory and check it against the protocol.

    Checks before reading the weights: config.json is GPT-NeoX; the tokenizer holds the special tokens; the
    embedding has len(tokenizer) + codebook_size rows; the prompt styles config.json declares
    (DRAW_PROMPT_KEY, QUESTION_PROMPT_KEY) are known ones, and its DRAW_GUIDANCE_KEY is in [1, 5].
    ``codebook_size``: the VQ-GAN's n_embed. Its ``weight_hash`` covers the LLM's weight files only
    (load_model adds the VQ-GAN's).
    """
    root = local_path(path)
    hf_config = _read_hf_config(root)
    files = llm_weight_files(root)
    tokenizer, layout = _load_tokenizer(root, hf_config, codebook_size)
    draw_prompt = _prompt_style(root, hf_config, DRAW_PROMPT_KEY)
    question_prompt = _prompt_style(root, hf_config, QUESTION_PROMPT_KEY)
    draw_guidance = _draw_guidance(root, hf_config)
    dev = resolve_device(device)
    quant, kwargs = _precision(root, hf_config, quantization, dev)
    model = _read_model(root, kwargs, layout)
    if tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token  # upstream's choice; generation pads with eos
        model.generation_config.pad_token_id = tokenizer.eos_token_id
    # The official generation_config.json may carry use_cache: false from training; decoding needs the cache.
    model.generation_config.use_cache = True
    model.config.use_cache = True
    model.eval()
    return LoadedLLM(
        model=model,
        tokenizer=tokenizer,
        layout=layout,
        quantization=quant,
        device=dev,
        weight_hash=weight_hash(files),
        llm_hash=weight_hash(files),
        context_length=int(hf_config.get("max_position_embeddings", model.config.max_position_embeddings)),
        weight_files=tuple(files),
        draw_prompt=draw_prompt,
        question_prompt=question_prompt,
        draw_guidance=draw_guidance,
    )


def load_model(location: cfg.ModelLocation, runtime: cfg.RuntimeConfig) -> tuple[LoadedLLM, VQGAN]:
    """The LLM and VQ-GAN of one model, on one device. The VQ-GAN loads first (small; fixes the codebook size).

    The returned LLM's ``weight_hash`` fingerprints the whole model: the LLM's weight files and the VQ-GAN's
    checkpoint and YAML, so a swapped VQ-GAN (which changes every image answer) changes it too.
    """
    device = resolve_device(runtime.device)
    ckpt = local_path(location.vqgan_ckpt)
    config = local_path(location.vqgan_config) if location.vqgan_config else None
    vqgan = load_vqgan(config, ckpt, device=device)
    llm = load_llm(
        location.llm, quantization=runtime.quantization, device=device, codebook_size=vqgan.n_embed
    )
    vq_files = [ckpt] if config is None else [ckpt, config]
    hashes = model_hashes(llm.weight_files, vq_files)
    return replace(llm, weight_hash=hashes.combined, llm_hash=hashes.llm, vqgan_hash=hashes.vqgan), vqgan
