"""What the page sends with a message: the message box's value and the generation settings, checked."""

from __future__ import annotations

from llmcxr_app.config import SamplingConfig
from llmcxr_app.studio.errors import StudioInputError
from llmcxr_app.ui import render


def sampling_from(temperature, top_p, max_new_tokens, seed, guidance=None, away_from=None) -> SamplingConfig:
    """The generation settings as the sliders and the seed box send them (a blank seed = random). A call
    made before a setting existed sends none: guidance None is the model's own, away_from None the default.

    Raises StudioInputError with a readable message for a value SamplingConfig refuses.
    """
    try:
        return SamplingConfig(
            temperature=float(temperature),
            top_p=float(top_p),
            max_new_tokens=int(max_new_tokens),
            seed=render.parse_seed(seed),
            guidance=None if guidance is None else float(guidance),
            guide_away_from=str(away_from or SamplingConfig.guide_away_from),
        )
    except (TypeError, ValueError) as exc:
        raise StudioInputError(str(exc)) from None


def message_parts(message) -> tuple[str, str | None]:
    """(text, first file path or None) from a MultimodalTextbox value, as the UI or the API sends it."""
    if message is None:
        return "", None
    if isinstance(message, str):
        return message.strip(), None
    files = message.get("files") or []
    first = files[0] if files else None
    if isinstance(first, dict):
        first = first.get("path")
    return str(message.get("text") or "").strip(), first
