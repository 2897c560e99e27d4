"""Load the model a Settings names, with the backend its checkpoint's config asks for.

The family is read from the LLM directory's config.json (`model_type`), never guessed from a path:
GPT-NeoX with image tokens is served by the token Studio (facade.py), Hugging Face LLaVA checkpoints by the
adapter Studio (adapter.py). New backends register here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from llmcxr_app.config import Settings
from llmcxr_app.studio.adapter import AdapterStudio
from llmcxr_app.studio.facade import Studio
from llmcxr_app.studio.types import ChatModel

# model_type in config.json -> the loader of the backend that serves it.
BACKENDS: dict[str, Callable[..., ChatModel]] = {
    "gpt_neox": Studio.from_settings,
    "llava": AdapterStudio.from_settings,  # Hugging Face LLaVA format: vision tower + projector + LLM
}


def model_type_of(llm: str) -> str:
    """`model_type` of a local LLM directory's config.json; "gpt_neox" (the token family) when the
    directory is not local (a Hub id: the token loader reports what is missing)."""
    config = Path(llm) / "config.json"
    if not config.is_file():
        return "gpt_neox"
    try:
        return str(json.loads(config.read_text(encoding="utf-8")).get("model_type", ""))
    except (OSError, ValueError):
        return "gpt_neox"  # an unreadable config: the token loader names the broken file


def load_studio(settings: Settings, *, background_warm_up: bool = False) -> ChatModel:
    """The loaded model for ``settings.model``, served by the backend its config names.

    Raises ValueError for a model_type no backend serves (naming the ones that are served); the
    backends raise loading.weights.WeightsError for missing or mismatched files.
    """
    kind = model_type_of(settings.model.llm)
    no_config = not (Path(settings.model.llm) / "config.json").is_file()
    if no_config and not settings.model.vqgan_ckpt:  # an adapter location (no VQ-GAN) not there yet:
        kind = "llava"  # its loader names the missing directory, not a VQ-GAN nobody asked for
    try:
        load = BACKENDS[kind]
    except KeyError:
        served = ", ".join(sorted(BACKENDS))
        hint = " Convert it with `python -m llmcxr_app.convert llava`." if kind.startswith("llava_") else ""
        raise ValueError(
            f"{settings.model.llm}: model_type {kind!r} is not served by this app (served: {served}).{hint}"
        ) from None
    return load(settings, background_warm_up=background_warm_up)
