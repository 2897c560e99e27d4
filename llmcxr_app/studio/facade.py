"""The one facade the UI and the CLI use: tokenizer + LLM + VQ-GAN behind describe / ask / draw.

A Studio serves one request at a time (a lock; queued requests can be cancelled while they wait). Each
request method validates its input at call time (raising StudioInputError with a message for the user)
and returns a stream of Updates; the last Update carries the Result with provenance and timings. Drain or
close a stream to release the model. Nothing here imports Gradio.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from PIL import Image

from llmcxr_app import __version__, protocol
from llmcxr_app.config import ModelLocation, SamplingConfig, Settings
from llmcxr_app.engine import fastpath
from llmcxr_app.engine.generation import (
    PrefillFn,
    StepFn,
    decode_step,
    generate_image,
    generate_text,
    prefill,
)
from llmcxr_app.imaging import images as imaging
from llmcxr_app.imaging.images import LoadedImage
from llmcxr_app.loading.weights import load_model
from llmcxr_app.modeling.vqgan import VQGAN
from llmcxr_app.studio import guidance, requests
from llmcxr_app.studio.reading import canonical_text, opposite_answer, read_findings, read_question
from llmcxr_app.studio.timings import timed_prefill, timings_of
from llmcxr_app.studio.types import PreparedImage, Result, StudioInfo, StudioInputError, Update
from llmcxr_app.studio.warmup import WarmUpGate

__all__ = ["PreparedImage", "Result", "Studio", "StudioInfo", "StudioInputError", "Update"]

logger = logging.getLogger(__name__)

MIN_ANSWER_TOKENS = 16  # a text prompt must leave at least this much of the context for the answer
PREVIEW_GREY = 128  # preview pixels of grid rows not generated yet
DEFAULT_SAMPLING = SamplingConfig()  # upstream's defaults (frozen, so safe to share)


class Studio:
    """Owns a loaded LLM-CXR model; serves describe (CXR -> report), ask (VQA / instruction), draw (report -> CXR)."""

    def __init__(
        self,
        llm: Any,
        vqgan: VQGAN,
        location: ModelLocation,
        *,
        prefill_fn: PrefillFn = prefill,
        step: StepFn = decode_step,
        image_loop: Callable[..., Iterator[Any]] = generate_image,
    ):
        if llm.layout.codebook_size != vqgan.n_embed:
            raise ValueError(
                f"The LLM expects {llm.layout.codebook_size} image tokens but the VQ-GAN has {vqgan.n_embed} "
                "codebook entries: the two checkpoints do not belong together."
            )
        self.llm = llm  # weights.LoadedLLM
        self.vqgan = vqgan.eval()
        self.location = location
        self._prefill = prefill_fn  # swappable model steps (eager by default; a fast path may replace them)
        self._step = step
        self._image_loop = image_loop  # generation.generate_image, or a fast path's device-side loop
        self._lock = threading.Lock()
        self._gate = WarmUpGate()  # closed while a background warm-up runs: requests wait for it
        self.ready = self._gate.ready  # set when no warm-up runs
        self.info = StudioInfo(
            model_name=location.name,
            is_demo=location.is_demo,
            device=str(llm.device),
            quantization=llm.quantization,
            weight_hash=llm.weight_hash,
            resolution=vqgan.resolution,
            grid=vqgan.grid,
            codebook_size=vqgan.n_embed,
            context_length=llm.context_length,
            app_version=__version__,
            llm_hash=getattr(llm, "llm_hash", ""),  # "" for a model not read from files
            vqgan_hash=getattr(llm, "vqgan_hash", ""),
            draw_prompt=getattr(llm, "draw_prompt", "verbatim"),  # a LoadedLLM-like test double may lack it
            question_prompt=getattr(llm, "question_prompt", "verbatim"),
            draw_guidance=getattr(llm, "draw_guidance", 1.0),
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, background_warm_up: bool = False) -> Studio:
        """Load the weights named by ``settings`` (raises loading.weights.WeightsError with the fix when they fail);
        warm up (runtime.warmup) before returning, or in a thread (start_warm_up) with ``background_warm_up``."""
        if settings.runtime.cpu_threads > 0:  # process-wide, before any model work
            torch.set_num_threads(settings.runtime.cpu_threads)
        t = time.perf_counter()
        llm, vqgan = load_model(settings.model, settings.runtime)
        hashes = f"LLM {llm.llm_hash}, VQ-GAN {llm.vqgan_hash}"
        logger.info("Weights loaded in %.1f s: %s", time.perf_counter() - t, hashes)
        fast = fastpath.fast_path_for(llm, settings.runtime)
        fns = (
            {}
            if fast is None
            else {"prefill_fn": fast.prefill, "step": fast.step, "image_loop": fast.generate_image}
        )
        studio = cls.from_parts(llm, vqgan, settings.model, **fns)
        if settings.runtime.warmup and background_warm_up:
            studio.start_warm_up(fast)
        elif settings.runtime.warmup:  # compile and run once now, not in a user's first request
            studio.warm_up(fast)
        return studio

    def start_warm_up(self, fast: fastpath.FastPath | None) -> threading.Thread:
        """Run warm_up in a daemon thread; until it ends `ready` is clear and every request waits for it in
        line (a cancelled one leaves). A failed warm-up is logged; the model still serves (studio/warmup.py)."""
        return self._gate.start(lambda: self.warm_up(fast))

    def warm_up(self, fast: fastpath.FastPath | None, findings: str = "Heart size is normal.") -> dict:
        """Compile every cache bucket of ``fast``, then draw one image (LLM steps, sampling, VQ-GAN decode on
        its device), so no user request pays for compilation or first-call set-up. Returns {"compile_s",
        "draw_s", "mode"}; ``fast`` None (fast path off) skips the compile part."""
        report = fast.warmup(self.llm.layout) if fast is not None else {"s": 0.0, "mode": "eager"}
        t = time.perf_counter()
        self.finish(self.draw(findings, sampling=SamplingConfig(temperature=0.0), preview_every=0))
        return {"compile_s": report["s"], "draw_s": time.perf_counter() - t, "mode": report["mode"]}

    @classmethod
    def from_parts(
        cls,
        llm: Any,
        vqgan: VQGAN,
        location: ModelLocation,
        *,
        prefill_fn: PrefillFn = prefill,
        step: StepFn = decode_step,
        image_loop: Callable[..., Iterator[Any]] = generate_image,
    ) -> Studio:
        """Wrap an already loaded weights.LoadedLLM and VQ-GAN (optionally with other model step functions)."""
        return cls(llm, vqgan, location, prefill_fn=prefill_fn, step=step, image_loop=image_loop)

    # -----------------------------------------------------------------------------------------------------
    # Inputs

    def prepare(self, image: Image.Image | LoadedImage) -> PreparedImage:
        """Crop and encode an image as upstream does; also decode its codes to show what the model sees.

        Runs only the VQ-GAN, without the request lock (it does not touch the LLM).
        """
        source = image if isinstance(image, LoadedImage) else None
        pil = image.image if isinstance(image, LoadedImage) else image
        if not isinstance(pil, Image.Image):
            raise StudioInputError("Expected an image (PIL image or imaging.LoadedImage).")
        view = imaging.model_view(image if source is not None else pil, self.vqgan)  # an upload's own crop
        return PreparedImage(
            codes=[int(c) for c in view.codes.tolist()],
            model_input=view.model_input.image,
            reconstruction=view.reconstruction,
            crop_box=view.model_input.crop_box,
            source=source,
        )

    def _prompt(
        self, instruction: str, *, input_text: str | None = None, image: PreparedImage | None = None
    ) -> list[int]:
        try:
            return protocol.build_prompt_ids(
                self.llm.tokenizer,
                instruction,
                input_text=input_text,
                image_codes=None if image is None else image.codes,
                codebook_size=self.info.codebook_size,
                grid_tokens=self.vqgan.grid_tokens,
            )
        except ValueError as exc:
            raise StudioInputError(str(exc)) from None

    def _check_fits(self, ids: list[int], user_text: str, what: str, needed: int, purpose: str) -> None:
        """Raise when the prompt leaves fewer than ``needed`` tokens of the context; name the limit in words."""
        room = self.info.context_length - len(ids)
        if room >= needed:
            return
        n_tok = max(1, len(self.llm.tokenizer.encode(user_text, add_special_tokens=False)))
        n_words = max(1, len(user_text.split()))
        max_tok = max(0, n_tok - (needed - room))
        max_words = int(max_tok * n_words / n_tok)
        raise StudioInputError(
            f"The {what} is too long for the model: {n_tok} tokens (about {n_words} words), but the "
            f"{self.info.context_length}-token context leaves room for at most {max_tok} tokens (about "
            f"{max_words} words) once {purpose} is included. Please shorten it."
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
        """CXR -> free-text report (upstream's first CXR-to-report instruction)."""
        if image is None:
            raise StudioInputError("Writing a report needs a chest X-ray: please upload an image first.")
        instruction = protocol.CXR_TO_REPORT_INSTRUCTIONS[0]
        ids = self._prompt(instruction, image=image)
        if len(ids) + MIN_ANSWER_TOKENS > self.info.context_length:
            raise StudioInputError(
                f"This model's context ({self.info.context_length} tokens) is too short for an image prompt "
                f"({len(ids)} tokens) plus an answer."
            )
        return self._text_stream(protocol.TASK_REPORT, ids, sampling, cancel, instruction)

    def ask(
        self,
        question: str,
        image: PreparedImage | None = None,
        *,
        sampling: SamplingConfig = DEFAULT_SAMPLING,
        cancel: threading.Event | None = None,
        verbatim: bool = False,
    ) -> Iterator[Update]:
        """A question about an image (VQA: the question is the instruction, the image the input), or a plain
        instruction without input when ``image`` is None.

        A checkpoint that learned the template questions (StudioInfo.question_prompt "canonical") is asked
        the template question that `reading.read_question` reads from a question about an image, unless
        ``verbatim`` or nothing is read safely. A question whose yes means absent ("Is the heart size
        normal?") is asked as the presence question and answered with the opposite yes / no of the model's
        reply (kept as ``model_answer``). The provenance says which (``asked``: None or the template
        question, the app's own fixed text; ``opposite``)."""
        question = (question or "").strip()
        if not question:
            raise StudioInputError("The question is empty: please type a question.")
        read = None
        if image is not None and not verbatim and self.info.question_prompt == "canonical":
            read = read_question(question)
        asked = read.canonical if read is not None else question
        ids = self._prompt(asked, image=image)
        purpose = "the answer" if image is None else "the image and the answer"
        self._check_fits(ids, asked, "question", MIN_ANSWER_TOKENS, purpose)
        task = protocol.TASK_INSTRUCT if image is None else protocol.TASK_VQA
        extra = {"asked": None if read is None else asked, "opposite": read is not None and read.opposite}
        final = opposite_answer if extra["opposite"] else None
        return self._text_stream(task, ids, sampling, cancel, None, extra, final)

    def draw(
        self,
        findings: str,
        *,
        sampling: SamplingConfig = DEFAULT_SAMPLING,
        cancel: threading.Event | None = None,
        preview_every: int = 2,
        verbatim: bool = False,
    ) -> Iterator[Update]:
        """Report -> CXR. Yields an Update per completed grid row, with a preview image every
        ``preview_every`` rows (0 = no previews), then the final image with the codes and their probabilities.

        A checkpoint that learned to draw from the template words (StudioInfo.draw_prompt "canonical") is
        given the labeler's reading of ``findings`` as its template report (studio/reading.py), unless
        ``verbatim``; any other model gets the text as typed. The reading goes into the provenance either
        way. ``sampling.guidance`` None is the checkpoint's scale; studio/guidance.py says what it avoids."""
        findings = (findings or "").strip()
        if not findings:
            raise StudioInputError("The findings are empty: please type the report text to draw from.")
        if preview_every < 0:
            raise StudioInputError(f"preview_every must be >= 0, got {preview_every}.")
        reading = read_findings(findings)
        canonical = self.info.draw_prompt == "canonical" and not verbatim
        model_text = canonical_text(reading) if canonical else findings
        instruction = protocol.REPORT_TO_CXR_INSTRUCTIONS[0]
        sampling, negative, said = guidance.plan(
            sampling, self.info.draw_guidance, findings, reading, canonical
        )
        split = negative is not None and negative.right is not None  # "sides": the prompt holds the right's
        ids = self._prompt(instruction, input_text=negative.right if split else model_text)
        negative_ids = self._prompt(instruction, input_text=negative.text) if negative else None
        n_image = self.vqgan.grid_tokens + 2
        longest = max(ids, negative_ids or [], key=len)  # a guided drawing's negative runs beside it
        self._check_fits(longest, model_text, "findings text", n_image, f"the image ({n_image} tokens)")
        # Only the labeler's fixed vocabulary, never the user's own words (provenance holds no user text).
        drawn_from = {
            "draw_prompt": "canonical" if canonical else "verbatim",
            "read_as": reading.summary(),
            "model_findings": model_text if canonical else None,
            **said,
        }
        return self._image_stream(
            ids, sampling, cancel, preview_every, instruction, drawn_from, negative_ids, split
        )

    finish = staticmethod(requests.finish)  # drain a stream and return its Result

    # -----------------------------------------------------------------------------------------------------
    # Internals

    def _acquire(self, cancel: threading.Event | None):
        """Hold the model; a request cancelled while it waits in line (for the warm-up or the lock) leaves."""
        return requests.acquire(self._lock, self._gate, cancel)

    def _text_stream(
        self,
        task: str,
        ids: list[int],
        sampling: SamplingConfig,
        cancel: threading.Event | None,
        instruction: str | None,
        extra: dict | None = None,
        final: Callable[[str], str | None] | None = None,
    ) -> Iterator[Update]:
        """Generate text, streaming it; with ``final``, the answer is final(reply) (the reply is kept in the
        provenance as model_answer; None from final keeps the reply) and nothing is streamed before it."""
        sampling = requests.seeded(sampling)
        provenance = {**requests.provenance(self.info, task, sampling, instruction), **(extra or {})}
        marks: dict = {}
        queued = time.perf_counter()
        with self._acquire(cancel):
            t0 = time.perf_counter()
            marks["queue_s"] = t0 - queued
            first, last = None, None
            stream = generate_text(
                self.llm.model,
                self.llm.layout,
                self.llm.tokenizer,
                ids,
                sampling,
                cancel,
                self.info.context_length,
                prefill_fn=timed_prefill(self._prefill, torch.device(self.info.device), marks),
                step=self._step,
            )
            for last in stream:
                first = first or time.perf_counter()
                if last.delta and final is None:
                    yield Update(text=last.text, image=None, rows_done=0)
            timings = timings_of(marks, t0, first, last.tokens, len(ids))
        provenance["stop_reason"] = last.stop
        text = last.text
        if final is not None:
            provenance["model_answer"] = last.text
            text = final(last.text) or last.text
        result = Result(task, text, None, None, None, provenance, timings)
        yield Update(text=result.text, image=None, rows_done=0, result=result)

    def _decode(self, codes: list[int]) -> Image.Image:
        return imaging.codes_to_image(torch.tensor(codes, dtype=torch.long), self.vqgan)

    def preview(self, codes: list[int]) -> Image.Image:
        """Decode a partial grid: complete rows as the VQ-GAN draws them, rows not generated yet mid grey.

        Missing codes are filled by repeating the last complete row (a smoother neighbour for the decoder than
        any fixed code), then the pixels of the missing rows are replaced by grey: their content is not real.
        """
        g, side = self.vqgan.grid, self.vqgan.resolution
        rows = len(codes) // g
        if rows == 0:
            return Image.new("L", (side, side), PREVIEW_GREY)
        known = list(codes[: rows * g])
        filled = known + known[-g:] * (g - rows)
        image = self._decode(filled)
        top = rows * side // g
        if top < side:
            image.paste(PREVIEW_GREY, (0, top, side, side))
        return image

    def _image_stream(
        self,
        ids: list[int],
        sampling: SamplingConfig,
        cancel: threading.Event | None,
        preview_every: int,
        instruction: str,
        drawn_from: dict,
        negative: list[int] | None,
        split: bool,  # the negative guides the second half of each grid row (guidance "sides")
    ) -> Iterator[Update]:
        sampling = requests.seeded(sampling)
        provenance = requests.provenance(self.info, protocol.TASK_DRAW, sampling, instruction) | drawn_from
        g = self.vqgan.grid
        marks: dict = {}
        queued = time.perf_counter()
        with self._acquire(cancel):
            t0 = time.perf_counter()
            marks["queue_s"] = t0 - queued
            first, last = None, None
            stream = self._image_loop(
                self.llm.model,
                self.llm.layout,
                ids,
                self.vqgan.grid_tokens,
                sampling,
                cancel,
                self.info.context_length,
                prefill_fn=timed_prefill(self._prefill, torch.device(self.info.device), marks),
                step=self._step,
                negative_ids=negative,
                split_width=g if split else None,
            )
            for last in stream:
                first = first or time.perf_counter()
                n = len(last.codes)
                if n % g or last.done:
                    continue
                rows = n // g
                show = preview_every > 0 and rows % preview_every == 0
                yield Update(text="", image=self.preview(last.codes) if show else None, rows_done=rows)
            image = self._decode(last.codes)
            timings = timings_of(marks, t0, first, len(last.codes), len(ids))
        provenance["stop_reason"] = "image"
        result = Result(
            protocol.TASK_DRAW, "", image, list(last.codes), list(last.probs), provenance, timings
        )
        yield Update(text="", image=image, rows_done=g, result=result)
