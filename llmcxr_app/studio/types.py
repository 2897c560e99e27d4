"""The values the Studio facade hands out: what is loaded, a prepared image, streamed updates, the result.

Plain frozen dataclasses (and the input error, from errors.py), so the UI, the CLI and the tests can use
them without loading a model. facade.py re-exports them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from llmcxr_app.imaging.images import LoadedImage
from llmcxr_app.studio.errors import StudioInputError

__all__ = ["ChatModel", "PreparedImage", "Result", "StudioInfo", "StudioInputError", "Update"]


@dataclass(frozen=True)
class StudioInfo:
    """What is loaded, for the UI header and for provenance."""

    model_name: str  # ModelLocation.name
    is_demo: bool  # the embedded demo model trained on synthetic phantoms
    device: str  # torch device of the LLM, e.g. "cuda:0"
    quantization: str  # resolved: "nf4", "int8", "bf16" or "fp32"
    weight_hash: str  # 12 hex chars fingerprinting the LLM and VQ-GAN files (loading.files.weight_hash)
    resolution: int  # VQ-GAN image side in pixels (256 officially)
    grid: int  # side of the latent grid (16 officially)
    codebook_size: int  # VQ-GAN codebook entries = image tokens (1024 officially)
    context_length: int  # LLM context in tokens (2048 officially)
    app_version: str  # llmcxr_app.__version__
    llm_hash: str = ""  # 12 hex chars fingerprinting the LLM's weight files alone ("" when unknown)
    vqgan_hash: str = ""  # 12 hex chars fingerprinting the VQ-GAN's checkpoint and config ("" when unknown)
    family: str = "token"  # "token": image tokens in the LLM's vocabulary (LLM-CXR); "adapter": a vision
    #                        encoder whose features a projector feeds to the LLM (LLaVA format)
    can_draw: bool = True  # report -> CXR is served (only the token family can generate images)
    draw_prompt: str = "verbatim"  # what Draw gives the model: the findings as typed, or "canonical": the
    #                                labeler's reading in the template words it learned (studio/reading.py)
    question_prompt: str = "verbatim"  # what Ask gives it with an image: the question as typed, or
    #                                    "canonical": the template question it reads as (studio/reading.py)
    draw_guidance: float = 1.0  # the drawings' guidance scale when a request leaves it unset (checkpoint
    #                             config; 1 = the model's own distribution; studio/guidance.py)


@dataclass(frozen=True, eq=False)
class PreparedImage:
    """An image as the model sees it."""

    codes: list[int]  # grid * grid VQ codes, row-major (unshifted)
    model_input: Image.Image  # the resized, centre-cropped RGB image the VQ-GAN encoded (resolution px)
    reconstruction: Image.Image  # "L", the VQ-GAN decode of `codes`: what the LLM "sees"
    crop_box: tuple[float, float, float, float]  # (left, top, right, bottom) in original image pixels
    source: LoadedImage | None  # the upload it came from, when prepared from a LoadedImage


@dataclass(frozen=True, eq=False)
class Result:
    """The finished answer of one request."""

    task: str  # protocol.TASK_*
    text: str  # final text ("" for draw)
    image: Image.Image | None  # draw: decoded image, "L", model resolution, NOT yet marked synthetic
    codes: list[int] | None  # draw: grid * grid VQ codes, row-major
    probs: list[float] | None  # draw: probability of each sampled code (sample_on_device), same order
    provenance: dict  # model, weight_hash (llm_hash, vqgan_hash), quantization, device, seed, sampling, app_version, task, timestamp
    timings: dict  # seconds and counts: queue_s, prompt_s, first_token_s, total_s, tokens, tokens_per_s


@dataclass(frozen=True, eq=False)
class Update:
    """One streamed event."""

    text: str  # full answer text so far ("" in draw mode)
    image: (
        Image.Image | None
    )  # draw: a preview (rows not generated yet grey) or the final image; None = no change
    rows_done: int  # draw: complete grid rows so far (0..grid)
    result: Result | None = None  # set on the last Update only


class ChatModel(Protocol):
    """What the UI and the CLI need of a loaded model, whatever its family (studio/build.py loads one).

    Each request method validates its input at call time (raising StudioInputError) and returns a stream
    of Updates whose last one carries the Result. A model that cannot draw raises StudioInputError in draw.
    """

    info: StudioInfo  # what is loaded
    ready: threading.Event  # set once no warm-up runs; requests wait for it

    def prepare(self, image: Image.Image | LoadedImage) -> PreparedImage: ...

    def describe(self, image: PreparedImage | None, **kwargs) -> Iterator[Update]: ...

    def ask(self, question: str, image: PreparedImage | None = None, **kwargs) -> Iterator[Update]: ...

    def draw(self, findings: str, **kwargs) -> Iterator[Update]: ...
