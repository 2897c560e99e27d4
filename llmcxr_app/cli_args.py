"""Command-line flags shared by app.py and `python -m llmcxr_app`: where the weights are and how they run."""

from __future__ import annotations

import argparse
import os

from llmcxr_app.config import (
    ENV_DEVICE,
    ENV_LLM,
    ENV_QUANTIZATION,
    ENV_THREADS,
    ENV_VQGAN_CKPT,
    ENV_VQGAN_CONFIG,
    QUANTIZATIONS,
    RuntimeConfig,
    Settings,
    resolve_location,
)


def add_weight_args(parser: argparse.ArgumentParser) -> None:
    """Add --llm, --vqgan-config, --vqgan-ckpt, --quantization, --device, --threads, --no-fast-path."""
    g = parser.add_argument_group(
        "weights",
        "Flags override the environment variables, which override weights/official/ (when complete), "
        "which overrides the embedded demo model in weights/demo/.",
    )
    g.add_argument(
        "--llm",
        "--model-path",
        dest="llm",
        metavar="DIR",
        help=f"LLM directory in Hugging Face format, or a Hub repo id (env {ENV_LLM})",
    )
    g.add_argument(
        "--vqgan-config",
        "--vqgan-config-path",
        dest="vqgan_config",
        metavar="YAML",
        help=f"VQ-GAN taming YAML config (env {ENV_VQGAN_CONFIG})",
    )
    g.add_argument(
        "--vqgan-ckpt",
        "--vqgan-ckpt-path",
        dest="vqgan_ckpt",
        metavar="FILE",
        help=f"VQ-GAN weights, Lightning .ckpt or .safetensors (env {ENV_VQGAN_CKPT})",
    )
    g.add_argument(
        "--quantization",
        choices=QUANTIZATIONS,
        help=f"LLM precision; auto = nf4 on CUDA, the fastest measured on CPU (env {ENV_QUANTIZATION})",
    )
    g.add_argument(
        "--device", metavar="DEV", help=f"auto, cpu, cuda or cuda:N (env {ENV_DEVICE}; default auto)"
    )
    g.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help=f"CPU threads for torch (env {ENV_THREADS}; default: one per core; 1 on a busy shared CPU)",
    )
    g.add_argument(
        "--no-fast-path",
        action="store_true",
        help="run the plain eager model (no static cache or torch.compile)",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from parsed flags, falling back to environment variables and the default weights.

    Raises ValueError (with the flag or variable to fix) for incomplete custom weights or a bad quantization.
    """
    location = resolve_location(args.llm, args.vqgan_config, args.vqgan_ckpt)
    quantization = args.quantization or os.environ.get(ENV_QUANTIZATION) or "auto"
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"{ENV_QUANTIZATION}={quantization!r} is not one of {', '.join(QUANTIZATIONS)}.")
    device = args.device or os.environ.get(ENV_DEVICE) or "auto"
    raw = str(args.threads) if args.threads is not None else os.environ.get(ENV_THREADS, "0")
    threads = int(raw) if raw.strip().isdigit() else -1
    if threads < 0:
        raise ValueError(
            f"--threads / {ENV_THREADS} = {raw!r} must be a whole number >= 0 (0 = one per core)."
        )
    runtime = RuntimeConfig(
        device=device, quantization=quantization, fast_path=not args.no_fast_path, cpu_threads=threads
    )
    return Settings(model=location, runtime=runtime)
