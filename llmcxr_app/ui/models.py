"""The models a chat app serves: one (the usual case, no picker) or several (`python app.py --models a,b`).

`Models` holds them by a short name (the --models entry: "demo", "demo-adapter", a directory's name) in the
order given; the first answers unless the user picks another. The chat never asks which family a model is
(token or adapter): it calls the ChatModel protocol (studio/types.py) and reads `info.can_draw` and
`info.family` only to say what a model cannot do and to label its answers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmcxr_app.config import SamplingConfig, ServerConfig
from llmcxr_app.studio.errors import StudioInputError
from llmcxr_app.studio.types import ChatModel, PreparedImage, Result, StudioInfo, Update

FAMILY_NAMES = {"token": "token family", "adapter": "adapter family"}  # how labels name a family


@dataclass(frozen=True)
class Models:
    """The loaded models by short name, in their --models order; the first is the default."""

    by_name: Mapping[str, ChatModel]  # short name -> loaded model (a token Studio or an adapter backend)

    @classmethod
    def of(cls, models: ChatModel | Mapping[str, ChatModel]) -> Models:
        """One loaded model (named by its info.model_name) or a mapping of several."""
        if isinstance(models, Mapping):
            if not models:
                raise ValueError("at least one model is needed")
            return cls(dict(models))
        return cls({models.info.model_name: models})

    @property
    def names(self) -> list[str]:
        return list(self.by_name)

    @property
    def default(self) -> str:
        return self.names[0]

    @property
    def several(self) -> bool:
        """Whether the page offers a model picker and Compare."""
        return len(self.by_name) > 1

    @property
    def any_demo(self) -> bool:
        return any(m.info.is_demo for m in self.by_name.values())

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Every model's input side in px (load_image makes each one's input from the full decode)."""
        return tuple(sorted({m.info.resolution for m in self.by_name.values()}))

    @property
    def draw_guidance(self) -> float:
        """The guidance the settings start at: that of the first model that draws (1 when none does)."""
        drawing = [m.info.draw_guidance for m in self.by_name.values() if m.info.can_draw]
        return drawing[0] if drawing else 1.0

    def name_of(self, name: str | None) -> str:
        """`name` when loaded, the default for None or ""; raises StudioInputError for another name."""
        if not name:
            return self.default
        if name not in self.by_name:
            raise StudioInputError(
                f"No model called {name!r} is loaded here: pick one of {', '.join(self.names)}."
            )
        return name

    def get(self, name: str | None) -> ChatModel:
        return self.by_name[self.name_of(name)]

    def label(self, name: str) -> str:
        """How answers name a model: "demo (token family)"."""
        family = self.get(name).info.family
        return f"{name} ({FAMILY_NAMES.get(family, family + ' family')})"

    def ready(self) -> bool:
        return all(m.ready.is_set() for m in self.by_name.values())


def cannot_draw(name: str, info: StudioInfo) -> str:
    """The message refusing a drawing to a model that cannot draw."""
    return (
        f"{name} cannot draw X-rays: it is an {info.family}-family model, which reads "
        "images but has no image tokens to write. Pick a token-family model (LLM-CXR) in Model to draw, or "
        "ask a question about the X-ray."
    )


@dataclass(frozen=True)
class ModelHost:
    """The chat app seen through one of its models: what the Draw flow uses (ui/draw.py DrawHost), so a
    drawing runs on the model its request picked."""

    app: Any  # the ui/chat.py ChatApp
    name: str  # the model's short name

    @property
    def studio(self) -> ChatModel:
        return self.app.models.get(self.name)

    @property
    def server(self) -> ServerConfig:
        return self.app.server

    @property
    def tag(self) -> str:
        return self.app.tag

    def stream(
        self,
        task: str,
        text: str,
        image: PreparedImage | None,
        sampling: SamplingConfig,
        cancel: threading.Event | None,
    ) -> Iterator[Update]:
        return self.app.stream(task, text, image, sampling, cancel, self.name)

    def cancel_event(self, cancel: threading.Event | None) -> threading.Event | None:
        return self.app.cancel_event(cancel)

    def add_details(self, session: Any, result: Result, files: list[Path], note: str = "") -> None:
        self.app.add_details(session, result, files, note, model=self.name)
