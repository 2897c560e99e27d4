"""The adapter-family facade: a LLaVA-format model (vision tower + projector + LLM) behind describe / ask.

It satisfies studio.types.ChatModel like the token Studio (facade.py): one request at a time (a lock that a
queued request can leave when cancelled), a warm-up gate, streamed Updates whose last one carries the Result
with provenance and timings. Prompts go through the checkpoint's own chat template; the answer comes from
the one text loop of engine/generation.py, whose prefill here also feeds the image's pixel values. It
cannot draw: images are not in its vocabulary.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from llmcxr_app import __version__, protocol
from llmcxr_app.config import NAMED_MODELS, ModelLocation, SamplingConfig, Settings
from llmcxr_app.engine.generation import PlainTextLayout, generate_text
from llmcxr_app.engine.steps import decode_step, prefill
from llmcxr_app.imaging import processor_view
from llmcxr_app.imaging.images import LoadedImage
from llmcxr_app.loading.llava import LoadedAdapter, load_llava
from llmcxr_app.studio import requests
from llmcxr_app.studio.timings import timed_prefill, timings_of
from llmcxr_app.studio.types import PreparedImage, Result, StudioInfo, StudioInputError, Update
from llmcxr_app.studio.warmup import WarmUpGate

logger = logging.getLogger(__name__)

MIN_ANSWER_TOKENS = 16  # a prompt must leave at least this much of the context for the answer
DEFAULT_SAMPLING = SamplingConfig()  # the same defaults as the token model, so the two compare fairly
WARM_UP_SAMPLING = SamplingConfig(temperature=0.0, max_new_tokens=2)
TOKEN_MODELS = ", ".join(name for name, loc in NAMED_MODELS.items() if loc.vqgan_ckpt)


@dataclass(frozen=True, eq=False)
class AdapterImage(PreparedImage):
    """A PreparedImage that also keeps the processor's output, so a request feeds exactly these values."""

    pixel_values: torch.Tensor | None = None  # [1, 3, side, side] float32, normalised, on CPU
    processing: str = ""  # fingerprint of the image processor settings that made pixel_values


class AdapterStudio:
    """Owns a loaded LLaVA-format model; serves describe (CXR -> report) and ask (VQA / instruction)."""

    def __init__(self, loaded: LoadedAdapter, location: ModelLocation):
        self.llm = loaded
        self.processor = loaded.processor
        settings = loaded.processor.image_processor.to_json_string().encode()
        self._processing = hashlib.sha256(settings).hexdigest()[:12]  # another model's images re-process
        self.location = location
        self._lock = threading.Lock()
        self._gate = WarmUpGate()  # closed while a background warm-up runs: requests wait for it
        self.ready = self._gate.ready
        tokenizer = loaded.tokenizer
        if tokenizer.eos_token_id is None:
            raise ValueError("The tokenizer has no end-of-sequence token: answers would never stop.")
        # Text answers: every tokenizer id but the image placeholder (masked in _masked); padded LM-head rows
        # beyond len(tokenizer) are masked by the loop itself.
        self.layout = PlainTextLayout(vocab_size=len(tokenizer), end_id=int(tokenizer.eos_token_id))
        self.info = StudioInfo(
            model_name=location.name,
            is_demo=location.is_demo,
            device=str(loaded.device),
            quantization=loaded.quantization,
            weight_hash=loaded.llm_hash,  # one set of files: the vision tower is inside the checkpoint
            resolution=loaded.resolution,
            grid=0,
            codebook_size=0,
            context_length=loaded.context_length,
            app_version=__version__,
            llm_hash=loaded.llm_hash,
            family="adapter",
            can_draw=False,
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, background_warm_up: bool = False) -> AdapterStudio:
        """Load the LLaVA directory ``settings.model.llm`` names (raises loading.weights.WeightsError with the
        fix); warm up before returning, or in a thread with ``background_warm_up``."""
        if settings.runtime.cpu_threads > 0:  # process-wide, before any model work
            torch.set_num_threads(settings.runtime.cpu_threads)
        t = time.perf_counter()
        runtime = settings.runtime
        loaded = load_llava(settings.model.llm, quantization=runtime.quantization, device=runtime.device)
        logger.info("Adapter weights loaded in %.1f s: %s", time.perf_counter() - t, loaded.llm_hash)
        studio = cls(loaded, settings.model)
        if runtime.warmup and background_warm_up:
            studio.start_warm_up()
        elif runtime.warmup:
            studio.warm_up()
        return studio

    def start_warm_up(self) -> threading.Thread:
        """Run warm_up in a daemon thread; requests wait for it (studio/warmup.py)."""
        return self._gate.start(self.warm_up)

    def warm_up(self) -> dict:
        """One tiny greedy answer about a grey image, so no user request pays for first-call set-up.

        Returns {"compile_s": 0.0, "draw_s": seconds, "mode": "eager"} (no compiled fast path here).
        """
        t = time.perf_counter()
        grey = Image.new("L", (self.info.resolution,) * 2, 128)
        self.finish(self.ask("Warm-up.", self.prepare(grey), sampling=WARM_UP_SAMPLING))
        return {"compile_s": 0.0, "draw_s": time.perf_counter() - t, "mode": "eager"}

    # -----------------------------------------------------------------------------------------------------
    # Inputs

    def prepare(self, image: Image.Image | LoadedImage) -> AdapterImage:
        """Run the checkpoint's image processor; keep what the vision tower receives and where it lies.

        No lock: the processor does not touch the model. ``model_input`` and ``reconstruction`` are both the
        tower's RGB input (resolution x resolution): an adapter model has no codes to decode.
        """
        source = image if isinstance(image, LoadedImage) else None
        pil = image.image if isinstance(image, LoadedImage) else image
        if not isinstance(pil, Image.Image):
            raise StudioInputError("Expected an image (PIL image or imaging.LoadedImage).")
        rgb = pil.convert("RGB")
        processed = self.processor.image_processor(images=rgb, return_tensors="pt")
        pixel_values = processed["pixel_values"].to(torch.float32)
        view = processor_view.tower_view(self.processor.image_processor, pixel_values)
        box = processor_view.crop_box(self.processor.image_processor, *rgb.size)
        if source is not None:  # the display copy may be smaller than the upload: boxes are in its pixels
            sx, sy = source.size[0] / rgb.size[0], source.size[1] / rgb.size[1]
            box = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
        return AdapterImage(
            codes=[],
            model_input=view,
            reconstruction=view,
            crop_box=box,
            source=source,
            pixel_values=pixel_values,
            processing=self._processing,
        )

    def _pixels(self, image: PreparedImage) -> torch.Tensor:
        """The pixel values of a prepared image; one prepared by another model (Compare mode) is processed
        again, from its upload when it has one."""
        if isinstance(image, AdapterImage) and image.processing == self._processing:
            return image.pixel_values
        return self.prepare(image.source if image.source is not None else image.model_input).pixel_values

    def _inputs(self, text: str, image: PreparedImage | None) -> tuple[list[int], torch.Tensor | None]:
        """(prompt ids with the image placeholder expanded, pixel values or None) of one user turn."""
        token = getattr(self.processor, "image_token", "<image>")
        if token in text:
            raise StudioInputError(f"The text may not contain {token!r}: it is the image's placeholder.")
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        if image is not None:
            content.insert(0, {"type": "image"})
        messages = [{"role": "user", "content": content}]
        try:
            prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except (ValueError, TypeError, KeyError) as exc:  # a template error names the checkpoint's fault
            raise StudioInputError(f"The model's chat template failed on this message: {exc}") from None
        if image is None:
            return self.processor(text=prompt, return_tensors="pt")["input_ids"][0].tolist(), None
        pixel_values = self._pixels(image)
        encoded = self.processor(images=image.model_input, text=prompt, return_tensors="pt")
        return encoded["input_ids"][0].tolist(), pixel_values

    def _check_fits(self, ids: list[int], what: str) -> None:
        if len(ids) + MIN_ANSWER_TOKENS > self.info.context_length:
            raise StudioInputError(
                f"The {what} is too long for the model: the prompt takes {len(ids)} tokens, and the "
                f"{self.info.context_length}-token context must leave {MIN_ANSWER_TOKENS} for the answer. "
                "Please shorten it."
            )

    # -----------------------------------------------------------------------------------------------------
    # Requests

    def describe(
        self,
        image: PreparedImage | None,
        *,
        sampling: SamplingConfig = DEFAULT_SAMPLING,
        cancel: threading.Event | None = None,
    ) -> Iterator[Update]:
        """CXR -> free-text report: the token model's report instruction, through this model's chat template."""
        if image is None:
            raise StudioInputError("Writing a report needs a chest X-ray: please upload an image first.")
        instruction = protocol.CXR_TO_REPORT_INSTRUCTIONS[0]
        ids, pixel_values = self._inputs(instruction, image)
        self._check_fits(ids, "image prompt")
        return self._text_stream(protocol.TASK_REPORT, ids, pixel_values, sampling, cancel, instruction)

    def ask(
        self,
        question: str,
        image: PreparedImage | None = None,
        *,
        sampling: SamplingConfig = DEFAULT_SAMPLING,
        cancel: threading.Event | None = None,
        verbatim: bool = True,
    ) -> Iterator[Update]:
        """A question about an image (VQA), or a plain instruction without one when ``image`` is None.
        The question always goes as typed (``verbatim`` is accepted for the facades' common calls)."""
        question = (question or "").strip()
        if not question:
            raise StudioInputError("The question is empty: please type a question.")
        ids, pixel_values = self._inputs(question, image)
        self._check_fits(ids, "question")
        task = protocol.TASK_INSTRUCT if image is None else protocol.TASK_VQA
        return self._text_stream(task, ids, pixel_values, sampling, cancel, None)

    def draw(self, findings: str, **kwargs: Any) -> Iterator[Update]:
        """Refused: an adapter model reads images but cannot write them (raises StudioInputError)."""
        raise StudioInputError(
            f"{self.info.model_name} cannot draw: an adapter model (vision encoder + projector + LLM) reads "
            "X-rays but has no image tokens to write one. Drawing needs a token-family model such as LLM-CXR "
            f"(--weights {TOKEN_MODELS})."
        )

    @staticmethod
    def finish(updates: Iterator[Update]) -> Result:
        """Drain a stream and return its Result."""
        return requests.finish(updates)

    # -----------------------------------------------------------------------------------------------------
    # Internals

    def _masked(self, fn: Any) -> Any:
        """A model step whose logits never choose the image placeholder (it would need pixels to follow)."""
        banned = self.llm.image_token_id

        def run(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, Any]:
            logits, past = fn(*args, **kwargs)
            if 0 <= banned < logits.shape[-1]:
                logits[..., banned] = float("-inf")
            return logits, past

        return run

    def _text_stream(
        self,
        task: str,
        ids: list[int],
        pixel_values: torch.Tensor | None,
        sampling: SamplingConfig,
        cancel: threading.Event | None,
        instruction: str | None,
    ) -> Iterator[Update]:
        sampling = requests.seeded(sampling)
        provenance = requests.provenance(self.info, task, sampling, instruction)
        extra = {} if pixel_values is None else {"pixel_values": pixel_values}
        first_step = self._masked(functools.partial(prefill, **extra))
        marks: dict = {}
        queued = time.perf_counter()
        with requests.acquire(self._lock, self._gate, cancel):
            t0 = time.perf_counter()
            marks["queue_s"] = t0 - queued
            first, last = None, None
            stream = generate_text(
                self.llm.model,
                self.layout,
                self.llm.tokenizer,
                ids,
                sampling,
                cancel,
                self.info.context_length,
                prefill_fn=timed_prefill(first_step, torch.device(self.info.device), marks),
                step=self._masked(decode_step),
            )
            for last in stream:
                first = first or time.perf_counter()
                if last.delta:
                    yield Update(text=last.text, image=None, rows_done=0)
            timings = timings_of(marks, t0, first, last.tokens, len(ids))
        provenance["stop_reason"] = last.stop
        result = Result(task, last.text, None, None, None, provenance, timings)
        yield Update(text=result.text, image=None, rows_done=0, result=result)
