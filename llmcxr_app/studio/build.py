"""Load the model a Settings names, with the backend its checkpoint's config asks for.

The family is read from the LLM directory's config.json (`model_type`), never guessed from a path:
GPT-NeoX with image tokens is served by the token Studio (facade.py), Hugging Face LLaVA checkpoints by the
adapter Studio (adapter.py). New backends register here.
"""

from __future__ import annotations

from collections.abc import Callable

from llmcxr_app.config import Settings
from llmcxr_app.loading.files import checkpoint_model_type
from llmcxr_app.studio.adapter import AdapterStudio
from llmcxr_app.studio.facade import Studio
from llmcxr_app.studio.types import ChatModel

# model_type in config.json -> the loader of the backend that serves it.
BACKENDS: dict[str, Callable[..., ChatModel]] = {
    "gpt_neox": Studio.from_settings,
    "llava": AdapterStudio.from_settings,  # Hugging Face LLaVA format: vision tower + projector + LLM
}


def load_studio(settings: Settings, *, background_warm_up: bool = False) -> ChatModel:
    """The loaded model for ``settings.model``, served by the backend its config names.

    Raises ValueError for a model_type no backend serves (naming the ones that are served); the
    backends raise loading.weights.WeightsError for missing or mismatched files.
    """
    kind = checkpoint_model_type(settings.model.llm)
    if not kind and not settings.model.vqgan_ckpt:  # an adapter location (no VQ-GAN) not there yet:
        kind = "llava"  # its loader names the missing directory, not a VQ-GAN nobody asked for
    kind = kind or "gpt_neox"  # a Hub id or a missing directory: the token loader says what is wrong
    try:
        load = BACKENDS[kind]
    except KeyError:
        served = ", ".join(sorted(BACKENDS))
        hint = " Convert it with `python -m llmcxr_app.convert llava`." if kind.startswith("llava_") else ""
        raise ValueError(
            f"{settings.model.llm}: model_type {kind!r} is not served by this app (served: {served}).{hint}"
        ) from None
    return load(settings, background_warm_up=background_warm_up)
