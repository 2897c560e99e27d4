"""Convert the official LLM-CXR release into files a Space downloads quickly and loads safely.

    python -m llmcxr_app.convert llm SRC DST [--quantize nf4] [--dtype bf16] [--shard-size 2GB]
    python -m llmcxr_app.convert vqgan CONFIG CKPT DST [--name vqgan]
    python -m llmcxr_app.convert llava SRC VISION DST [--chat-template NAME]   (loading/convert_llava.py)

`llm`: the official directory (config.json, tokenizer, an 11 GB fp32 pytorch_model.bin) -> sharded
safetensors, optionally pre-quantized to bitsandbytes 4-bit NF4 (~2 GB), tokenizer files copied byte for byte.
`vqgan`: the Lightning .ckpt (weights plus training-only `loss.*` discriminator/LPIPS weights) ->
`<name>.safetensors` without `loss.*` plus `<name>.yaml`. Both outputs are loaded back through weights.py and
checked against the source before the command reports success. Docs: docs/DEPLOY.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import warnings
from pathlib import Path

import torch
import yaml

from llmcxr_app import __version__
from llmcxr_app.loading import weights as w
from llmcxr_app.loading.files import llm_weight_files
from llmcxr_app.loading.runtime import resolve_device
from llmcxr_app.protocol import token_layout

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
)
# The probe the output is checked with: a few ids spread over text and image ids, batch 1.
PROBE_LENGTH = 24


def infer_codebook_size(src: str | Path) -> int:
    """Image codes in an LLM directory: embedding rows (config vocab_size) minus tokenizer entries."""
    from transformers import AutoTokenizer

    src = Path(src)
    try:
        rows = int(json.loads((src / "config.json").read_text())["vocab_size"])
        tokens = len(AutoTokenizer.from_pretrained(src))
    except (OSError, ValueError, KeyError) as exc:
        raise w.WeightsError(f"{src}: cannot read config.json and the tokenizer ({exc}).") from exc
    if rows <= tokens:
        raise w.WeightsError(
            f"{src}: {rows} embedding rows for {tokens} tokenizer entries leaves no room for image codes; "
            "this is not an LLM-CXR checkpoint."
        )
    return rows - tokens


def _refuse_overwrite(dst: Path, names: list[str], patterns: tuple[str, ...] = ()) -> None:
    clash = [n for n in names if (dst / n).exists()] + [p.name for pat in patterns for p in dst.glob(pat)]
    if clash:
        raise w.WeightsError(f"{dst} already holds {sorted(set(clash))[:5]}; choose an empty output folder.")


def _check_source(src: Path, codebook_size: int | None) -> tuple[list[Path], int]:
    """load_llm's checks before reading weights, so a wrong folder fails in seconds, not after 11 GB.

    Returns the weight files and the codebook size (inferred when None).
    """
    from transformers import AutoTokenizer

    if not (src / "config.json").is_file():
        raise w.WeightsError(f"{src} holds no config.json; pass the official LLM directory.")
    hf_config = json.loads((src / "config.json").read_text())
    if hf_config.get("model_type") != "gpt_neox":
        raise w.WeightsError(f"{src} is a {hf_config.get('model_type')!r} model; LLM-CXR is GPT-NeoX.")
    if hf_config.get("quantization_config"):
        raise w.WeightsError(f"{src} is already quantized; convert from the original full-precision weights.")
    files = llm_weight_files(src)
    codebook_size = codebook_size or infer_codebook_size(src)
    try:
        token_layout(AutoTokenizer.from_pretrained(src), codebook_size)
    except (OSError, ValueError) as exc:  # special tokens missing, or no tokenizer at all
        raise w.WeightsError(f"Tokenizer in {src}: {exc}") from exc
    return files, codebook_size


def _probe_ids(vocab: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, vocab, (1, PROBE_LENGTH), generator=g)


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids.to(model.device)).logits.float().cpu()


def convert_llm(
    src: str | Path,
    dst: str | Path,
    *,
    quantize: str | None = None,
    dtype: str | None = None,
    shard_size: str = "2GB",
    device: str = "cpu",
    codebook_size: int | None = None,
) -> list[Path]:
    """Write ``src`` (an LLM-CXR directory) to ``dst`` as safetensors shards of at most ``shard_size``.

    ``quantize``: None or "nf4" (bitsandbytes 4-bit, the format load_llm uses on CUDA). ``dtype``: storage
    dtype of the tensors that stay unquantized and, for nf4, also the dtype the weights are cast to before
    quantizing and the compute dtype; default fp32 (lossless) without quantization, bf16 with nf4 (the recipe
    load_llm uses on a bf16 GPU). ``device``: where the conversion runs
    (cpu needs no GPU; bitsandbytes quantizes there too). Returns the files written.
    """
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    dtype = _check_options(quantize, dtype, shard_size)
    if not src.is_dir():
        raise w.WeightsError(f"LLM directory not found: {src}.")
    if dst.resolve() == src.resolve():
        raise w.WeightsError("The output folder must differ from the source folder.")
    _refuse_overwrite(dst, ["config.json", *TOKENIZER_FILES], ("model*.safetensors*", "pytorch_model*"))
    files, codebook_size = _check_source(src, codebook_size)
    dev = resolve_device(device)
    ids, reference = _save_model(src, dst, dev, DTYPES[dtype], quantize, shard_size)
    _copy_tokenizer(src, dst)
    _write_provenance(dst, src, files, quantize, dtype, codebook_size)
    _verify_reload(dst, ids, reference, quantize or dtype, dev, codebook_size)
    return sorted(p for p in dst.iterdir() if p.is_file())


def _check_options(quantize: str | None, dtype: str | None, shard_size: str) -> str:
    """ValueError on an unknown quantization, dtype or shard size; returns the dtype to use."""
    from transformers.utils.hub import convert_file_size_to_int

    if quantize not in (None, "nf4"):
        raise ValueError(f"quantize must be None or 'nf4', got {quantize!r}.")
    dtype = dtype or ("bf16" if quantize else "fp32")
    if dtype not in DTYPES or (dtype == "fp16" and not quantize):
        raise ValueError(f"dtype must be fp32 or bf16 (or fp16 with nf4), got {dtype!r}.")
    try:
        convert_file_size_to_int(shard_size)
    except ValueError as exc:
        raise ValueError(f"shard size {shard_size!r}: use an integer and a unit, e.g. 2GB or 500MB.") from exc
    return dtype


def _save_model(
    src: Path, dst: Path, dev: torch.device, torch_dtype: torch.dtype, quantize: str | None, shard_size: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load `src` (quantized when asked), save it to `dst` as shards; returns (probe ids, their logits)."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict = {"dtype": torch_dtype, "device_map": {"": str(dev)}}
    if quantize:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch_dtype
        )
    model = AutoModelForCausalLM.from_pretrained(src, **kwargs).eval()
    dst.mkdir(parents=True, exist_ok=True)
    # Saved before any forward: on a CPU with AVX512-BF16, bitsandbytes repacks each 4-bit layer on its first
    # forward (absmax cast to bf16, a blocked layout) and undoes it only in part when saving. Saved first, the
    # file is the portable layout on every machine, and the check below compares like with like: the model
    # in memory and the reloaded one both start from the saved state and take the same first forward.
    model.save_pretrained(dst, max_shard_size=shard_size)
    ids = _probe_ids(model.get_input_embeddings().weight.shape[0])
    reference = _logits(model, ids)
    del model
    gc.collect()
    return ids, reference


def _copy_tokenizer(src: Path, dst: Path) -> None:
    for name in TOKENIZER_FILES:  # byte for byte: a re-saved tokenizer may differ in ways load_llm checks
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)


def _verify_reload(
    dst: Path,
    ids: torch.Tensor,
    reference: torch.Tensor,
    quantization: str,
    dev: torch.device,
    codebook_size: int,
) -> None:
    """Load the result the way the app does; it must compute exactly what the model that was saved computed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "nf4 is slow on CPU": known, and irrelevant to a check
        llm = w.load_llm(dst, quantization=quantization, device=dev, codebook_size=codebook_size)
    delta = (_logits(llm.model, ids) - reference).abs().max().item()
    if delta != 0.0:
        raise w.WeightsError(f"{dst}: reloaded logits differ from the converted model's by {delta:.3g}.")
    print(
        f"verified: loads through weights.load_llm ({llm.quantization}); max |logit difference| {delta:.3g}"
    )


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _write_provenance(
    dst: Path, src: Path, files: list[Path], quantize: str | None, dtype: str, codebook_size: int
) -> None:
    """conversion.json: where the weights came from (the source folder name and hash only, no local paths)."""
    import transformers

    info = {
        "tool": "python -m llmcxr_app.convert llm",
        "app_version": __version__,
        "source": src.name,
        "source_weight_hash": w.weight_hash(files),
        "quantize": quantize,
        "dtype": dtype,
        "codebook_size": codebook_size,
        "transformers": transformers.__version__,
        "bitsandbytes": _version("bitsandbytes") if quantize else None,
    }
    (dst / "conversion.json").write_text(json.dumps(info, indent=2) + "\n")


def convert_vqgan(
    config: str | Path | None, ckpt: str | Path, dst: str | Path, *, name: str = "vqgan"
) -> tuple[Path, Path]:
    """Write ``dst/<name>.yaml`` and ``dst/<name>.safetensors`` (fp32, no ``loss.*``) from a taming VQ-GAN.

    ``config``: its YAML (copied unchanged), or None to infer the architecture from the checkpoint and write
    a YAML for it. Returns (yaml, safetensors).
    """
    from safetensors.torch import save_file

    dst = Path(dst).expanduser()
    yaml_out, st_out = dst / f"{name}.yaml", dst / f"{name}.safetensors"
    _refuse_overwrite(dst, [yaml_out.name, st_out.name])
    model = w.load_vqgan(config or None, ckpt)  # strict: every key but loss.* must match the config
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    dst.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(st_out), metadata={"format": "pt", "source": Path(ckpt).name})
    if config:
        shutil.copyfile(Path(config).expanduser(), yaml_out)
    else:
        doc = {"model": {"target": "taming.models.vqgan.VQModel", "params": model.config.to_params()}}
        yaml_out.write_text(yaml.safe_dump(doc, sort_keys=False))

    back = w.load_vqgan(yaml_out, st_out)
    differ = [k for k, v in back.state_dict().items() if not torch.equal(v, sd[k])]
    if differ or back.config != model.config:
        raise w.WeightsError(f"{st_out}: reloaded VQ-GAN differs from the source (first keys {differ[:3]}).")
    print(f"verified: {len(sd)} tensors reload bit for bit through weights.load_vqgan")
    return yaml_out, st_out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m llmcxr_app.convert",
        description="Convert official LLM-CXR checkpoints to safetensors (optionally NF4) for serving.",
    )
    sub = p.add_subparsers(dest="what", required=True)
    llm = sub.add_parser("llm", help="LLM directory -> sharded safetensors (optionally pre-quantized NF4)")
    llm.add_argument("src", help="official LLM directory (config.json, tokenizer, pytorch_model.bin)")
    llm.add_argument("dst", help="output folder (new or empty of model files)")
    llm.add_argument("--quantize", choices=["nf4"], help="pre-quantize to bitsandbytes 4-bit NF4 (~2 GB)")
    llm.add_argument(
        "--dtype",
        choices=list(DTYPES),
        help="unquantized tensors (and nf4 compute); default fp32, or bf16 with --quantize (fp16 for a T4)",
    )
    llm.add_argument("--shard-size", default="2GB", help="largest safetensors shard (default 2GB)")
    llm.add_argument("--device", default="cpu", help="where to convert: cpu (default), cuda, cuda:N")
    llm.add_argument("--codebook-size", type=int, help="VQ-GAN codebook entries (default: inferred; 1024)")
    lv = sub.add_parser("llava", help="original-LLaVA-layout checkpoint + CLIP tower -> Hugging Face LLaVA")
    lv.add_argument("src", help="LLaVA / LLaVA-Med checkpoint (config.json with mm_vision_tower, weights)")
    lv.add_argument("vision", help="the CLIP directory its mm_vision_tower names")
    lv.add_argument("dst", help="output folder (new or empty)")
    lv.add_argument("--chat-template", help="mistral_instruct or vicuna_v1 (default: by the LLM's family)")
    vq = sub.add_parser("vqgan", help="VQ-GAN Lightning .ckpt -> safetensors without loss.* plus YAML")
    vq.add_argument("config", help="taming YAML of the checkpoint, or '-' to infer it from the weights")
    vq.add_argument("ckpt", help="Lightning .ckpt (or .safetensors)")
    vq.add_argument("dst", help="output folder")
    vq.add_argument("--name", default="vqgan", help="output file stem (default vqgan)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.what == "llm":
            out = convert_llm(
                args.src,
                args.dst,
                quantize=args.quantize,
                dtype=args.dtype,
                shard_size=args.shard_size,
                device=args.device,
                codebook_size=args.codebook_size,
            )
        elif args.what == "llava":
            from llmcxr_app.loading.convert_llava import convert_llava

            out = convert_llava(args.src, args.vision, args.dst, chat_template=args.chat_template)
        else:
            out = list(
                convert_vqgan(
                    None if args.config == "-" else args.config, args.ckpt, args.dst, name=args.name
                )
            )
    except (w.WeightsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    total = sum(p.stat().st_size for p in out)
    for p in out:
        print(f"{p.stat().st_size / 1e6:10.1f} MB  {p}")
    print(f"{total / 1e9:10.2f} GB  in {len(out)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
