"""The chat's event handlers: route a message, stream the Studio's answer into the conversation.

All per-user data lives in a `Session` held in a gr.State (never in module globals), so one user's
conversation and files are never shown to another. ui.py lays out the page and wires these handlers.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from llmcxr_app import protocol
from llmcxr_app.config import SamplingConfig, ServerConfig
from llmcxr_app.engine.generation import GenerationCancelled
from llmcxr_app.imaging.exports import DISCLAIMER, answer_json, answer_text
from llmcxr_app.imaging.images import ImageLoadError, LoadedImage, load_image
from llmcxr_app.studio.facade import PreparedImage, Result, Studio, StudioInputError
from llmcxr_app.ui import render, zerogpu
from llmcxr_app.ui.draw import DrawFlow
from llmcxr_app.ui.routing import Route, route

logger = logging.getLogger(__name__)

PREVIEW_EVERY = 2  # grid rows between progressive previews of a drawing
STOP_WAIT_S = 5.0  # how long Stop waits for the generation thread to acknowledge
GENERIC_ERROR = "Something went wrong while generating; the conversation is kept. Please try again."


@dataclass(eq=False)
class CurrentXray:
    """The last uploaded X-ray of a session: what follow-up questions refer to."""

    loaded: LoadedImage  # the decoded upload (display image, safe metadata, warnings, DICOM window/histogram)
    prepared: PreparedImage  # the model's view: codes, crop, reconstruction
    chat_path: str  # display PNG shown in the user's message


class Session:
    """One browser session's private state: its temp folder, conversation, current X-ray and stop switch."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="llmcxr-session-"))
        self.history: list[dict] = []  # chat messages (role, content, optional metadata)
        self.current: CurrentXray | None = None
        self.cancel: threading.Event | None = None  # set by Stop; the running request polls it every token
        self.idle = threading.Event()  # clear while a request of this session runs
        self.idle.set()
        self._count = 0

    def path(self, stem: str, ext: str) -> Path:
        self._count += 1
        return self.workdir / f"{stem}-{self._count:03d}.{ext}"

    def prune(self, max_age_s: float) -> None:
        """Delete this session's files older than max_age_s (uploads and outputs live at most an hour)."""
        cutoff = time.time() - max_age_s
        for f in self.workdir.glob("*"):
            if f.stat().st_mtime < cutoff:
                f.unlink(missing_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def _delete_session(session: Session | None) -> None:
    if session is not None:
        session.close()


def _sampling(temperature, top_p, max_new_tokens, seed) -> SamplingConfig:
    try:
        return SamplingConfig(
            temperature=float(temperature),
            top_p=float(top_p),
            max_new_tokens=int(max_new_tokens),
            seed=render.parse_seed(seed),
        )
    except (TypeError, ValueError) as exc:
        raise StudioInputError(str(exc)) from None


def _message_parts(message) -> tuple[str, str | None]:
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


class ChatApp(DrawFlow):
    """Event handlers bound to one Studio. Holds no per-user data (that is in the Session argument)."""

    def __init__(self, studio: Studio, server: ServerConfig):
        self.studio = studio
        self.server = server
        # The model's work, on the GPU on ZeroGPU (zerogpu.py): there it runs in a worker process, so these
        # take and yield only picklable values and cannot see Stop's threading.Event (Stop still ends the
        # event for the user). Elsewhere they are the plain calls.
        self._prepare = zerogpu.gpu(30)(studio.prepare)
        self._stream = zerogpu.gpu()(self._model_stream)
        self.tag = "llmcxr-demo" if studio.info.is_demo else "llmcxr"  # every download name says "demo"

    # -- side panel -------------------------------------------------------------------------------------
    def panel(self, session: Session | None) -> tuple:
        """Updates for (empty note, overview image, summary, warnings, model input, reconstruction, histogram,
        forget button)."""
        cur = session.current if session else None
        if cur is None:
            return (
                gr.update(visible=True), gr.update(value=None, visible=False), gr.update(value=""),
                gr.update(value="", visible=False), gr.update(value=None), gr.update(value=None),
                gr.update(value=None, visible=False), gr.update(visible=False),
            )  # fmt: skip
        info = self.studio.info
        loaded, prep = cur.loaded, cur.prepared
        hist = None
        if loaded.histogram is not None:
            hist = render.histogram_plot(*loaded.histogram, loaded.window)
        warn = render.warnings_markdown(loaded.warnings)
        return (
            gr.update(visible=False),
            gr.update(value=render.crop_overlay(loaded.image, prep.crop_box), visible=True),
            gr.update(value=render.image_summary(loaded, prep.crop_box, info.resolution, info.grid)),
            gr.update(value=warn, visible=bool(warn)),
            gr.update(value=render.display_copy(prep.model_input, 256)),
            gr.update(value=render.display_copy(prep.reconstruction, 256)),
            gr.update(value=hist, visible=hist is not None),
            gr.update(visible=True),
        )

    # -- events -----------------------------------------------------------------------------------------
    def stage(self, message, session: Session | None):
        """Show the user's message at once (before the queue), clear the box, switch it to its Stop button."""
        session = session or Session()
        if not session.idle.is_set():
            raise gr.Error("The previous answer is still being generated: wait for it or press Stop.")
        text, path = _message_parts(message)
        # The raw upload is not echoed (a DICOM would show as a link with its file name): a placeholder
        # stands in until chat() replaces it with the decoded display copy.
        shown = session.history + (
            [{"role": "user", "content": "_(reading the attached image…)_"}] if path else []
        )
        if text:
            shown = shown + [{"role": "user", "content": text}]
        busy_box = gr.update(value=None, submit_btn=False, stop_btn=True)
        return message, busy_box, shown, session

    def forget(self, session: Session | None):
        if session is not None:
            session.current = None
        gr.Info("The current X-ray was forgotten; new questions are answered without an image.")
        return (session, *self.panel(session))

    def clear(self, session: Session | None):
        """The chat's trash button: stop any running answer, forget the conversation and the X-ray."""
        if session is not None:
            if session.cancel is not None:
                session.cancel.set()
            session.history.clear()
            session.current = None
        return (session, *self.panel(session))

    def stop(self, session: Session | None):
        """Stop this session's running request; the partial answer stays, marked "(stopped)"."""
        idle_box = gr.update(submit_btn=True, stop_btn=False)
        if session is None:
            return gr.skip(), idle_box
        if session.cancel is not None:
            session.cancel.set()
        session.idle.wait(STOP_WAIT_S)
        return list(session.history), idle_box

    def chat(
        self, message, mode, temperature, top_p, max_new_tokens, seed, candidates, session: Session | None
    ):
        """Answer one message: route it (see ui_routing), stream the answer into the conversation.

        Yields (chat messages, session, textbox, *panel updates). Input problems raise gr.Error with their
        message and put the text back in the box; the conversation is never lost.
        """
        session = session or Session()
        session.prune(self.server.delete_cache_s)
        skip_panel = (gr.skip(),) * 8
        text, path = _message_parts(message)
        try:
            sampling = _sampling(temperature, top_p, max_new_tokens, seed)
            n = max(1, min(int(candidates or 1), self.server.max_candidates))
            new = self._load(path, session) if path else None
            has_image = new is not None or session.current is not None
            plan = route(str(mode or "Auto"), text, new is not None, has_image)
            image = (
                new.prepared if new is not None else (session.current.prepared if session.current else None)
            )
            first = self._start(plan, image, sampling, None)  # validates the request before it is shown
        except (ImageLoadError, StudioInputError) as exc:
            keep = {"text": text, "files": [] if isinstance(exc, ImageLoadError) or not path else [path]}
            yield (list(session.history), session, gr.update(value=keep), *skip_panel)
            raise gr.Error(str(exc)) from None
        except Exception as exc:  # log the type only: messages may quote patient text
            logger.error("request setup failed: %s", type(exc).__name__)
            yield (list(session.history), session, gr.update(value={"text": text, "files": []}), *skip_panel)
            raise gr.Error(GENERIC_ERROR) from None
        if new is not None:
            session.current = new
            session.history.append({"role": "user", "content": {"path": new.chat_path}})
            for w in new.loaded.warnings:
                gr.Warning(w)
        if text:
            session.history.append({"role": "user", "content": text})
        session.cancel = cancel = threading.Event()
        session.idle.clear()
        try:
            panel = self.panel(session) if new is not None else skip_panel
            yield (list(session.history), session, gr.update(value=None), *panel)
            first.close()  # the validation stream never ran; real streams below carry the cancel event
            if plan.task == protocol.TASK_DRAW:
                answers = self._draw(session, plan.text, sampling, n, cancel)
            else:
                answers = self._text(session, plan, image, sampling, cancel)
            for _ in answers:
                yield (list(session.history), session, gr.skip(), *skip_panel)
        except GenerationCancelled:
            session.idle.set()
            yield (list(session.history), session, gr.skip(), *skip_panel)
        except Exception as exc:  # log the type only: messages may quote patient text
            logger.error("generation failed: %s", type(exc).__name__)
            session.history.append({"role": "assistant", "content": "_(interrupted by an error)_"})
            session.idle.set()
            yield (list(session.history), session, gr.skip(), *skip_panel)
            raise gr.Error(GENERIC_ERROR) from None
        finally:  # also when Gradio closes this generator (a cancelled event, a closed tab)
            cancel.set()  # a model step still running in another thread stops at the next token
            session.idle.set()

    # -- helpers ----------------------------------------------------------------------------------------
    def _load(self, path: str, session: Session) -> CurrentXray:
        loaded = load_image(path)
        prepared = self._prepare(loaded)
        chat_path = session.path("upload", "png")
        render.fit(loaded.image).save(chat_path)  # a display copy: the original upload is never served back
        return CurrentXray(loaded=loaded, prepared=prepared, chat_path=str(chat_path))

    def _start(self, plan: Route, image: PreparedImage | None, sampling: SamplingConfig, cancel):
        """The Studio stream for a plan; Studio validates its inputs here, before generation starts."""
        if plan.task == protocol.TASK_DRAW:
            return self.studio.draw(plan.text, sampling=sampling, cancel=cancel, preview_every=PREVIEW_EVERY)
        if plan.task == protocol.TASK_REPORT:
            return self.studio.describe(image, sampling=sampling, cancel=cancel)
        return self.studio.ask(
            plan.text, image if plan.task == protocol.TASK_VQA else None, sampling=sampling, cancel=cancel
        )

    @staticmethod
    def _cancel(cancel: threading.Event | None) -> threading.Event | None:
        """Stop's event for a stream, or None on ZeroGPU, whose worker process could not see it set."""
        return None if zerogpu.on_zerogpu() else cancel

    def _model_stream(
        self, task: str, text: str, image: PreparedImage | None, sampling: SamplingConfig, cancel
    ):
        """The Studio's update stream for one request (what zerogpu.gpu puts on the GPU)."""
        yield from self._start(Route(task=task, text=text), image, sampling, cancel)

    def _text(self, session: Session, plan: Route, image, sampling, cancel) -> Iterator[None]:
        msg: dict | None = None
        result: Result | None = None
        try:
            for update in self._stream(plan.task, plan.text, image, sampling, self._cancel(cancel)):
                if msg is None:
                    msg = {"role": "assistant", "content": ""}
                    session.history.append(msg)
                msg["content"] = update.text
                result = update.result or result
                yield
        except GenerationCancelled:
            if msg is None:
                session.history.append(
                    {"role": "assistant", "content": "_(stopped before the answer began)_"}
                )
            else:
                msg["content"] = f"{msg['content']} _(stopped)_"
            raise
        if msg is None:
            msg = {"role": "assistant", "content": ""}
            session.history.append(msg)
        msg["content"] = result.text or "_(the model gave an empty answer)_"
        json_path = session.path(f"{self.tag}-answer", "json")
        json_path.write_text(answer_json(result.text, None, result.provenance), encoding="utf-8")
        txt_path = session.path(f"{self.tag}-answer", "txt")
        txt_path.write_text(answer_text(result.text, result.provenance), encoding="utf-8")
        self._details(session, result, [json_path, txt_path])
        yield

    def _details(self, session: Session, result: Result, files: list[Path], note: str = "") -> None:
        """Collapsed provenance under an answer, then its downloads."""
        extra = f"{note}\n\n{DISCLAIMER}" if note else DISCLAIMER
        session.history.append(
            {
                "role": "assistant",
                "content": render.provenance_markdown(result.provenance, result.timings, extra),
                "metadata": {
                    "title": render.provenance_title(result.provenance, result.timings),
                    "status": "done",
                },
            }
        )
        session.history.append(
            {
                "role": "assistant",
                "content": gr.File(value=[str(f) for f in files], label="Downloads", show_label=False),
            }
        )
