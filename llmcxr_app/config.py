"""Configuration as small frozen dataclasses. Nothing here touches files, models or the UI."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_DIR = REPO_ROOT / "weights"
# Where weights/README.md tells users to put the official files (same names as upstream's release).
OFFICIAL_LLM_DIR = WEIGHTS_DIR / "official" / "llmcxr_mimic-cxr-256-txvloss-medvqa-stage1_2"
OFFICIAL_VQGAN_DIR = WEIGHTS_DIR / "official" / "vqgan_mimic-cxr-256-txvloss"
OFFICIAL_VQGAN_CONFIG = OFFICIAL_VQGAN_DIR / "2023-09-05T13-56-50_mimic-cxr-256-txvloss-project-compat.yaml"
OFFICIAL_VQGAN_CKPT = OFFICIAL_VQGAN_DIR / "2023-09-05T13-56-50_mimic-cxr-256-txvloss-4e-compat.ckpt"
# The embedded demo model trained by `python -m llmcxr_app.demo.train` (committed to the repository).
DEMO_DIR = WEIGHTS_DIR / "demo"
DEMO_LLM_DIR = DEMO_DIR / "llm"
DEMO_VQGAN_CONFIG = DEMO_DIR / "vqgan" / "demo-vqgan.yaml"
DEMO_VQGAN_CKPT = DEMO_DIR / "vqgan" / "demo-vqgan.safetensors"
# The embedded demo of the adapter family (vision encoder + projector + LLM, Hugging Face LLaVA format).
DEMO_ADAPTER_DIR = WEIGHTS_DIR / "demo-adapter"

# Environment variables that locate weights (below CLI flags, above the default folders).
ENV_LLM = "LLMCXR_LLM"
ENV_VQGAN_CONFIG = "LLMCXR_VQGAN_CONFIG"
ENV_VQGAN_CKPT = "LLMCXR_VQGAN_CKPT"
ENV_QUANTIZATION = "LLMCXR_QUANTIZATION"
ENV_DEVICE = "LLMCXR_DEVICE"
ENV_THREADS = "LLMCXR_THREADS"
# Environment variables of the web server's limits (below CLI flags, above ServerConfig's defaults).
ENV_TTL = "LLMCXR_TTL"
ENV_FILES_DIR = "LLMCXR_FILES_DIR"
ENV_QUEUE_SIZE = "LLMCXR_QUEUE_SIZE"
ENV_CONCURRENCY = "LLMCXR_CONCURRENCY"
ENV_SESSIONS_PER_CLIENT = "LLMCXR_SESSIONS_PER_CLIENT"
ENV_UPLOADS_PER_CLIENT = "LLMCXR_UPLOADS_PER_CLIENT"

QUANTIZATIONS = ("auto", "nf4", "int8", "bf16", "fp32")


@dataclass(frozen=True)
class ModelLocation:
    """Where one model lives on disk (or on the Hugging Face Hub). Which backend serves it is read from the
    checkpoint's own config (studio/build.py), never from these paths."""

    llm: str  # Hugging Face model directory (config.json, tokenizer, weights) or a Hub repo id
    vqgan_config: (
        str  # taming-style YAML with model.params {embed_dim, n_embed, ddconfig}; "" = none (adapter)
    )
    vqgan_ckpt: str  # Lightning .ckpt (state_dict) or .safetensors of the VQ-GAN; "" = none (adapter)
    name: str = "LLM-CXR"  # shown in the UI and in provenance
    is_demo: bool = False  # the embedded demo model trained on synthetic phantoms


DEMO_MODEL = ModelLocation(
    llm=str(DEMO_LLM_DIR),
    vqgan_config=str(DEMO_VQGAN_CONFIG),
    vqgan_ckpt=str(DEMO_VQGAN_CKPT),
    name="LLM-CXR demo (synthetic phantoms)",
    is_demo=True,
)
OFFICIAL_MODEL = ModelLocation(
    llm=str(OFFICIAL_LLM_DIR),
    vqgan_config=str(OFFICIAL_VQGAN_CONFIG),
    vqgan_ckpt=str(OFFICIAL_VQGAN_CKPT),
    name="LLM-CXR (mimic-cxr-256-txvloss-medvqa-stage1_2)",
)
DEMO_ADAPTER_MODEL = ModelLocation(
    llm=str(DEMO_ADAPTER_DIR),
    vqgan_config="",
    vqgan_ckpt="",
    name="Adapter demo (LLaVA-style, synthetic phantoms)",
    is_demo=True,
)
# The names `--weights NAME` and `--models a,b` accept (explicit, so a typo is an error, not a path).
NAMED_MODELS: dict[str, ModelLocation] = {
    "demo": DEMO_MODEL,
    "demo-adapter": DEMO_ADAPTER_MODEL,
    "official": OFFICIAL_MODEL,
}


def location_by_name(name: str) -> ModelLocation:
    """The registered model called ``name``; raises ValueError listing the known names."""
    try:
        return NAMED_MODELS[name.strip()]
    except KeyError:
        known = ", ".join(NAMED_MODELS)
        raise ValueError(f"Unknown model name {name!r}: use one of {known}, or --llm DIR.") from None


@dataclass(frozen=True)
class RuntimeConfig:
    """How the model runs."""

    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1"
    quantization: str = "auto"  # one of QUANTIZATIONS; auto = nf4 on CUDA, fp32 on CPU (measured fastest)
    fast_path: bool = True  # static KV cache + torch.compile where it measures faster; eager otherwise
    warmup: bool = True  # compile and run one tiny generation at start-up, not in a user's request
    cpu_threads: int = 0  # torch intra-op threads for CPU work; 0 = torch's default (one per core). On a
    #                       shared 2-core machine 1 thread measured 10-30x faster than 2 (docs/BENCHMARKS.md)


# SamplingConfig.guide_away_from: what a guided drawing avoids (studio/guidance.py)
GUIDE_AWAY_FROM = ("sides", "swapped", "normal")


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling settings of one request (upstream defaults)."""

    temperature: float = 1.0  # 0 = greedy
    top_p: float = 0.92  # nucleus sampling mass; 1.0 = off
    top_k: int = 0  # 0 = off
    max_new_tokens: int = 512  # text answers stop here at the latest
    seed: int | None = None  # None = a fresh random seed, reported in provenance
    # Drawings only. 1 = the model's own distribution (upstream); s > 1 samples each image id from
    # log p(x | findings) + (s - 1) * (log p(x | findings) - log p(x | negative)) (engine/generation.guide),
    # which costs a second sequence per drawing. None = the checkpoint's own (StudioInfo.draw_guidance).
    guidance: float | None = None
    # The negative prompt (studio/guidance.py): "sides" = each half of the image drawn from the findings on
    # its side of the chest, away from the other side's (pushes a one-sided finding onto its side; a text
    # with none, or a model given the text as typed, gets "swapped"); "swapped" = the same findings with
    # every stated side, size and zone swapped, a small effusion left out (pushes towards the attributes
    # asked for, and towards drawing a small effusion); "normal" = a normal chest (pushes towards
    # abnormality of any kind)
    guide_away_from: str = "sides"

    def __post_init__(self) -> None:
        if not 0.0 <= self.temperature <= 5.0:
            raise ValueError(f"temperature must be in [0, 5], got {self.temperature}.")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}.")
        if self.guidance is not None and not 1.0 <= self.guidance <= 5.0:
            raise ValueError(f"guidance must be in [1, 5], got {self.guidance}.")
        if self.guide_away_from not in GUIDE_AWAY_FROM:
            raise ValueError(
                f"guide_away_from must be one of {', '.join(GUIDE_AWAY_FROM)}, got {self.guide_away_from!r}."
            )
        if not 1 <= self.max_new_tokens <= 4096:
            raise ValueError(f"max_new_tokens must be in [1, 4096], got {self.max_new_tokens}.")


@dataclass(frozen=True)
class ServerConfig:
    """Limits and privacy settings of the web server."""

    host: str = "127.0.0.1"  # bind address; 0.0.0.0 inside a container or Space
    port: int = 7860  # HTTP port
    max_file_size: str = "25mb"  # uploads above this are refused by Gradio before reaching us
    delete_cache_s: float = (
        3600  # TTL: every file the app wrote (uploads, outputs) older than this is deleted
    )
    #                             by the sweeper (sweeper.py), which runs every TTL/4; the conversation then
    #                             shows an "expired" note where the file was
    files_dir: str = ""  # folder for the app's one root folder of files; "" = the system's temp folder
    queue_size: int = 16  # requests waiting for the model beyond this are refused with a message
    concurrency: int = 1  # requests the model serves at once (each holds the model for its whole answer)
    max_sessions_per_client: int = 8  # live conversations per client address; a new one evicts the
    #                                   oldest idle one, and is refused while all of them are busy
    max_uploads_per_client: int = 120  # uploads one client address may make per TTL; more are refused (429)
    trust_forwarded_for: bool = False  # count caps by X-Forwarded-For's first entry, not the TCP peer: only
    #                                    behind a proxy that writes it (app.py sets it on a Hugging Face Space)
    max_candidates: int = 4  # most images one Draw request may produce
    draw_self_check: bool = True  # read each drawing back and say what it sees (studio/selfcheck.py)

    def __post_init__(self) -> None:
        if self.delete_cache_s <= 0:
            raise ValueError(f"The file TTL must be > 0 seconds, got {self.delete_cache_s}.")
        for name in ("queue_size", "concurrency", "max_sessions_per_client", "max_uploads_per_client"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")


@dataclass(frozen=True)
class Settings:
    """Everything app.py and the CLI need to build a Studio."""

    model: ModelLocation = DEMO_MODEL  # which weights
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)  # device and precision
    server: ServerConfig = field(default_factory=ServerConfig)  # web server limits


def resolve_location(
    llm: str | None = None, vqgan_config: str | None = None, vqgan_ckpt: str | None = None
) -> ModelLocation:
    """Pick weights: explicit arguments, then environment variables, then weights/official, then the demo.

    Each of the three paths is resolved on its own, so a flag can override one file of an environment setup.
    The official default folder is used only when all its files are present.
    """
    explicit = {
        "llm": llm or os.environ.get(ENV_LLM),
        "vqgan_config": vqgan_config or os.environ.get(ENV_VQGAN_CONFIG),
        "vqgan_ckpt": vqgan_ckpt or os.environ.get(ENV_VQGAN_CKPT),
    }
    official_present = all(
        Path(p).exists() for p in (OFFICIAL_LLM_DIR, OFFICIAL_VQGAN_CONFIG, OFFICIAL_VQGAN_CKPT)
    )
    base = OFFICIAL_MODEL if official_present else DEMO_MODEL
    if not any(explicit.values()):
        return base
    missing = [k for k, v in explicit.items() if not v]
    if missing and not official_present:
        flags = ", ".join("--" + k.replace("_", "-") for k in missing)
        raise ValueError(
            f"Custom weights need all three locations; missing {flags} "
            f"(or the environment variables {ENV_LLM}, {ENV_VQGAN_CONFIG}, {ENV_VQGAN_CKPT})."
        )
    return ModelLocation(
        llm=explicit["llm"] or base.llm,
        vqgan_config=explicit["vqgan_config"] or base.vqgan_config,
        vqgan_ckpt=explicit["vqgan_ckpt"] or base.vqgan_ckpt,
        name=Path(str(explicit["llm"] or base.llm)).name or "LLM-CXR",
    )
