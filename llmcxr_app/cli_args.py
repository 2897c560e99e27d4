"""Command-line flags shared by app.py and `python -m llmcxr_app`: where the weights are and how they run."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

from llmcxr_app.config import (
    ENV_CONCURRENCY,
    ENV_DEVICE,
    ENV_FILES_DIR,
    ENV_LLM,
    ENV_QUANTIZATION,
    ENV_QUEUE_SIZE,
    ENV_SESSIONS_PER_CLIENT,
    ENV_THREADS,
    ENV_TTL,
    ENV_UPLOADS_PER_CLIENT,
    ENV_VQGAN_CKPT,
    ENV_VQGAN_CONFIG,
    NAMED_MODELS,
    QUANTIZATIONS,
    ModelLocation,
    RuntimeConfig,
    ServerConfig,
    Settings,
    location_by_name,
    resolve_location,
)
from llmcxr_app.loading.files import checkpoint_model_type

# (flag, ServerConfig field, environment variable, type, help) of the web server's limits.
SERVER_FLAGS = (
    (
        "--ttl",
        "delete_cache_s",
        ENV_TTL,
        float,
        "seconds every upload and output is kept; a sweep every TTL/4 deletes older ones",
    ),
    (
        "--files-dir",
        "files_dir",
        ENV_FILES_DIR,
        str,
        "folder for the app's files (one folder per server, removed at shutdown; default: the temp folder)",
    ),
    (
        "--queue-size",
        "queue_size",
        ENV_QUEUE_SIZE,
        int,
        "requests that may wait for the model; more are refused with a message to send again",
    ),
    ("--concurrency", "concurrency", ENV_CONCURRENCY, int, "requests the model answers at once"),
    (
        "--max-sessions-per-client",
        "max_sessions_per_client",
        ENV_SESSIONS_PER_CLIENT,
        int,
        "live conversations per client address; a new one evicts its oldest idle one",
    ),
    (
        "--max-uploads-per-client",
        "max_uploads_per_client",
        ENV_UPLOADS_PER_CLIENT,
        int,
        "uploads per client address per TTL; more are refused",
    ),
)


def add_weight_args(parser: argparse.ArgumentParser) -> None:
    """Add --llm, --vqgan-config, --vqgan-ckpt, --quantization, --device, --threads, --no-fast-path."""
    g = parser.add_argument_group(
        "weights",
        "Flags override the environment variables, which override weights/official/ (when complete), "
        "which overrides the embedded demo model in weights/demo/.",
    )
    g.add_argument(
        "--weights",
        metavar="NAME",
        help=f"a registered model: {', '.join(NAMED_MODELS)} (overridden by --llm and the VQ-GAN flags)",
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


def add_server_args(parser: argparse.ArgumentParser) -> None:
    """Add the web server's limits: --ttl, --files-dir, --queue-size, --concurrency,
    --max-sessions-per-client, --max-uploads-per-client (each also an environment variable)."""
    g = parser.add_argument_group("server limits", "Flags override the environment variables.")
    defaults = ServerConfig()
    for flag, name, env, kind, text in SERVER_FLAGS:
        metavar = "DIR" if kind is str else ("S" if kind is float else "N")
        g.add_argument(
            flag, dest=name, metavar=metavar, help=f"{text} (env {env}; default {getattr(defaults, name)!r})"
        )


def server_from_args(args: argparse.Namespace, server: ServerConfig) -> ServerConfig:
    """server with the limits given by flags, else by environment variables.

    Raises ValueError naming the flag and variable for a value that is not a number or is out of range.
    """
    changes = {}
    for flag, name, env, kind, _ in SERVER_FLAGS:
        raw = getattr(args, name, None)
        raw = raw if raw is not None else os.environ.get(env)
        if raw is None or (kind is not str and not str(raw).strip()):
            continue
        try:
            changes[name] = kind(raw)
        except ValueError:
            raise ValueError(f"{flag} / {env} = {raw!r} is not a number.") from None
    try:
        return replace(server, **changes)
    except ValueError as exc:
        raise ValueError(f"{exc} (flags {', '.join(f for f, *_ in SERVER_FLAGS)})") from None


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from parsed flags, falling back to environment variables and the default weights.

    Raises ValueError (with the flag or variable to fix) for incomplete custom weights or a bad quantization.
    """
    location = _location(args)
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


def _location(args: argparse.Namespace) -> ModelLocation:
    """--weights NAME as the base, with any explicit path flag (or environment variable) over it."""
    name = getattr(args, "weights", None)
    if not name:
        llm = args.llm or os.environ.get(ENV_LLM)
        if llm and not (args.vqgan_config or args.vqgan_ckpt) and checkpoint_model_type(llm) == "llava":
            return ModelLocation(llm, "", "", name=Path(llm).name or llm)  # an adapter needs no VQ-GAN
        return resolve_location(args.llm, args.vqgan_config, args.vqgan_ckpt)
    base = location_by_name(name)
    changes = {k: getattr(args, k) for k in ("llm", "vqgan_config", "vqgan_ckpt") if getattr(args, k)}
    return replace(base, **changes)


def parse_models(text: str) -> list[ModelLocation]:
    """`--models demo,demo-adapter`: registered names or LLM directories, comma-separated, in order.

    A token-family directory takes its VQ-GAN from the environment variables (an adapter checkpoint
    needs none). Raises ValueError for an empty list, a repeated entry or an unknown name that is no
    directory.
    """
    items = [t.strip() for t in (text or "").split(",") if t.strip()]
    if not items:
        raise ValueError("--models needs at least one name or directory, e.g. --models demo,demo-adapter.")
    if len(set(items)) != len(items):
        raise ValueError(f"--models lists a model twice: {text!r}.")
    out = []
    for item in items:
        if item in NAMED_MODELS or not Path(item).is_dir():
            out.append(location_by_name(item))
        else:
            vq_config = os.environ.get(ENV_VQGAN_CONFIG, "")
            vq_ckpt = os.environ.get(ENV_VQGAN_CKPT, "")
            out.append(ModelLocation(item, vq_config, vq_ckpt, name=Path(item).name or item))
    return out
